#!/usr/bin/env bash
# A local three-node Runnel cluster for development: three combined broker+controller nodes on
# 127.0.0.1 with Kafka ports 9092/9094/9096 and gRPC (Raft) ports 9093/9095/9097.
#
#   scripts/cluster.sh start          build (release) if needed, start all three nodes, wait
#   scripts/cluster.sh stop           SIGTERM all nodes and wait for them to exit
#   scripts/cluster.sh status         which nodes run, and the quorum as node 1..3 sees it
#   scripts/cluster.sh kill N         SIGKILL node N (1-3)
#   scripts/cluster.sh start-node N   start node N again with its data directory
#   scripts/cluster.sh clean          stop, then delete the data directories
#
# Environment: RUNNEL_BIN (a runnel binary; default: build target/release/runnel),
# RUNNEL_CLUSTER_DIR (data, logs and pid files; default ./runnel-cluster), RUNNEL_HOST
# (the address to listen on and advertise; default 127.0.0.1), RUNNEL_SET (extra broker
# properties for every node, space-separated key=value pairs, passed as --set).
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=${RUNNEL_CLUSTER_DIR:-$PWD/runnel-cluster}
HOST=${RUNNEL_HOST:-127.0.0.1}
VOTERS="1@$HOST:9093,2@$HOST:9095,3@$HOST:9097"

bin() {
    if [[ -n "${RUNNEL_BIN:-}" ]]; then
        echo "$RUNNEL_BIN"
        return
    fi
    if [[ ! -x target/release/runnel ]]; then
        cargo build --release -p runnel >&2
    fi
    echo "$PWD/target/release/runnel"
}

kafka_port() { echo $((9090 + 2 * $1)); }
rpc_port() { echo $((9091 + 2 * $1)); }
pid_of() { cat "$DIR/node$1.pid" 2>/dev/null || true; }
running() { local p; p=$(pid_of "$1"); [[ -n "$p" ]] && kill -0 "$p" 2>/dev/null; }

check_node() {
    [[ "$1" =~ ^[123]$ ]] || { echo "node must be 1, 2 or 3, got '$1'" >&2; exit 2; }
}

start_node() {
    local n=$1 b
    check_node "$n"
    if running "$n"; then
        echo "node $n already running (pid $(pid_of "$n"))"
        return
    fi
    b=$(bin)
    mkdir -p "$DIR/node$n"
    local sets=() kv
    for kv in ${RUNNEL_SET:-}; do sets+=(--set "$kv"); done
    "$b" server --node-id "$n" --data-dir "$DIR/node$n" \
        --listen "$HOST:$(kafka_port "$n")" --rpc-listen "$HOST:$(rpc_port "$n")" \
        --voters "$VOTERS" "${sets[@]}" >>"$DIR/node$n.log" 2>&1 &
    echo $! >"$DIR/node$n.pid"
    echo "node $n: pid $!, kafka $HOST:$(kafka_port "$n"), rpc $HOST:$(rpc_port "$n"), log $DIR/node$n.log"
}

wait_ready() {
    local b deadline=$((SECONDS + 60))
    b=$(bin)
    until "$b" metadata-quorum --bootstrap-server "$HOST:9092,$HOST:9094,$HOST:9096" \
        describe --status >/dev/null 2>&1; do
        if ((SECONDS > deadline)); then
            echo "the cluster did not elect a controller within 60 s; see $DIR/node*.log" >&2
            exit 1
        fi
        sleep 0.5
    done
}

case "${1:-}" in
start)
    mkdir -p "$DIR"
    for n in 1 2 3; do start_node "$n"; done
    wait_ready
    "$(bin)" metadata-quorum --bootstrap-server "$HOST:9092" describe --status
    echo "bootstrap servers: $HOST:9092,$HOST:9094,$HOST:9096"
    ;;
start-node)
    start_node "${2:-}"
    ;;
kill)
    check_node "${2:-}"
    if running "$2"; then kill -KILL "$(pid_of "$2")" && echo "node $2 killed"; else echo "node $2 is not running"; fi
    ;;
stop | clean)
    for n in 1 2 3; do
        if running "$n"; then kill -TERM "$(pid_of "$n")"; fi
    done
    for n in 1 2 3; do
        while running "$n"; do sleep 0.1; done
        rm -f "$DIR/node$n.pid"
    done
    echo "stopped"
    if [[ "$1" == clean ]]; then rm -rf "$DIR" && echo "removed $DIR"; fi
    ;;
status)
    for n in 1 2 3; do
        if running "$n"; then echo "node $n: running (pid $(pid_of "$n"))"; else echo "node $n: stopped"; fi
    done
    "$(bin)" metadata-quorum --bootstrap-server "$HOST:9092,$HOST:9094,$HOST:9096" describe --replication
    ;;
*)
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
