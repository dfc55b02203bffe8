#!/usr/bin/env bash
# Admin flood: produce latency on a three-node cluster (RF=3, min.insync.replicas=2, acks=all)
# while idle, then while one client floods the cluster with CreateTopics for as long
# (scripts/admin-flood.py), how many brokers the controller fenced meanwhile, and again once
# the flood is over (with every topic it created still there).
#
#   bash scripts/bench-admin-flood.sh          # DURATION=10 seconds by default
#   MUTATION_RATE=20 bash scripts/bench-admin-flood.sh
#                                              # with a default controller_mutation_rate
#                                              # client quota (partitions/s) before the flood
#
# Uses target/release/runnel (built if missing) or RUNNEL_BIN. Results go to stdout;
# docs/benchmarks.md holds the numbers from a run on the project's VM.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
if [[ -z "${RUNNEL_BIN:-}" ]]; then
    [[ -x target/release/runnel ]] || cargo build --release -p runnel
    RUNNEL_BIN=$PWD/target/release/runnel
fi
BIN=$RUNNEL_BIN
WORK=$(mktemp -d)
export RUNNEL_BIN RUNNEL_CLUSTER_DIR=$WORK/cluster
trap 'bash scripts/cluster.sh stop >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
bash scripts/cluster.sh start >/dev/null
# Until all three brokers have registered, RF=3 is refused.
for i in $(seq 60); do
    "$BIN" topics --bootstrap-server 127.0.0.1:9092 --create --topic lat --partitions 3 \
        --replication-factor 3 --config min.insync.replicas=2 >/dev/null 2>&1 && break
    [[ $i == 60 ]] && { echo "cannot create the topic" >&2; exit 1; }
    sleep 0.5
done
sleep 1
bench() {
    "$BIN" bench produce --bootstrap-server 127.0.0.1:9092 --topic lat \
        --duration-secs "$DURATION" --record-size 1024 --acks all 2>&1 | tail -n 1
}
fenced() { cat "$RUNNEL_CLUSTER_DIR"/*.log 2>/dev/null | grep -c "session expired; fenced" || true; }
if [[ -n "${MUTATION_RATE:-}" ]]; then
    "$BIN" configs --bootstrap-server 127.0.0.1:9092 --alter --entity-type clients \
        --entity-default --add-config "controller_mutation_rate=$MUTATION_RATE" >/dev/null
    echo "default client quota: controller_mutation_rate=$MUTATION_RATE"
fi
echo "idle:  $(bench)"
before=$(fenced)
python3 scripts/admin-flood.py 127.0.0.1:9092 "$DURATION" >"$WORK/flood.out" 2>&1 &
flood=$!
echo "flood: $(bench)"
wait "$flood" || true
echo "flood client: $(tail -n 1 "$WORK/flood.out")"
echo "brokers fenced during the flood: $(($(fenced) - before))"
sleep 2
echo "after: $(bench)"
