#!/usr/bin/env bash
# Transactional next to idempotent produce, and read_committed next to read_uncommitted consume,
# in one run against one node with a fresh data directory, through confluent-kafka
# (scripts/bench_transactions.py: 1 KiB records, 1,000 per transaction, 3 partitions).
# Results go to docs/benchmarks.md.
#   usage: scripts/bench-transactions.sh [RUNNEL_BIN] [RECORDS] [RUNS]
#   (defaults: target/release/runnel, 200000, 3; build it with cargo build --release -p runnel)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/runnel}
records=${2:-200000}
runs=${3:-3}
port=29392
dir=$(mktemp -d)
"$bin" server --data-dir "$dir" --listen "127.0.0.1:$port" >"$dir.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir" "$dir.log"' EXIT
for _ in $(seq 50); do
    "$bin" health --bootstrap-server "127.0.0.1:$port" >/dev/null 2>&1 && break
    sleep 0.2
done
python3 scripts/bench_transactions.py --bootstrap "127.0.0.1:$port" --records "$records" \
    --runs "$runs"
