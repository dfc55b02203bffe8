#!/usr/bin/env bash
# Replication benchmark, one run: produce throughput and latency on a single node and on a
# three-node cluster (RF=3, min.insync.replicas=2), acks=1 and acks=all, then the unavailability
# window after SIGKILLing a partition leader (scripts/failover-window.py).
#
#   bash scripts/bench-replication.sh            # RECORDS=500000 TRIALS=5 by default
#
# Uses target/release/runnel (built if missing). Results go to stdout; docs/benchmarks.md holds
# the numbers from a run on the project's VM.
set -euo pipefail
cd "$(dirname "$0")/.."
RECORDS=${RECORDS:-500000}
TRIALS=${TRIALS:-5}
[[ -x target/release/runnel ]] || cargo build --release -p runnel
BIN=$PWD/target/release/runnel
WORK=$(mktemp -d)
export RUNNEL_BIN=$BIN RUNNEL_CLUSTER_DIR=$WORK/cluster
cleanup() {
    [[ -n "${SINGLE_PID:-}" ]] && kill "$SINGLE_PID" 2>/dev/null || true
    bash scripts/cluster.sh stop >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

bench() { # bootstrap topic acks
    "$BIN" bench produce --bootstrap-server "$1" --topic "$2" --num-records "$RECORDS" \
        --record-size 1024 --acks "$3" 2>&1 | tail -n 1
}

echo "== single node (commit $(git rev-parse --short HEAD))"
"$BIN" server --data-dir "$WORK/single" --listen 127.0.0.1:29092 >"$WORK/single.log" 2>&1 &
SINGLE_PID=$!
for _ in $(seq 100); do "$BIN" topics --bootstrap-server 127.0.0.1:29092 --list >/dev/null 2>&1 && break; sleep 0.1; done
for acks in 1 all; do
    "$BIN" topics --bootstrap-server 127.0.0.1:29092 --create --topic "s$acks" --partitions 3 >/dev/null
    echo "single node, RF=1, acks=$acks: $(bench 127.0.0.1:29092 "s$acks" "$acks")"
done
kill "$SINGLE_PID"; wait "$SINGLE_PID" 2>/dev/null || true; SINGLE_PID=

echo "== three nodes"
bash scripts/cluster.sh start >/dev/null
for acks in 1 all; do
    "$BIN" topics --bootstrap-server 127.0.0.1:9092 --create --topic "r$acks" --partitions 3 \
        --replication-factor 3 --config min.insync.replicas=2 >/dev/null
    sleep 1
    echo "three nodes, RF=3, acks=$acks: $(bench 127.0.0.1:9092 "r$acks" "$acks")"
done

echo "== unavailability window after SIGKILL of the leader (default broker.session.timeout.ms)"
python3 scripts/failover-window.py --trials "$TRIALS" 2>/dev/null
