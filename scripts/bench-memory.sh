#!/usr/bin/env bash
# Resident memory of one broker under silent greedy fetchers: four connections pipeline 200
# Fetch requests each, listing one ~900 KiB partition 200 times with every limit at its maximum,
# and never read. Runs the workload of the resource-bounds test (crates/cli/tests/
# t31_resource_bounds.rs) RUNS times and prints baseline, peak, growth and the memory once the
# clients have gone, per run; then a small batch that decompresses to 256 MiB (see below).
# Results go to docs/benchmarks.md.
#   usage: scripts/bench-memory.sh [RUNS]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
cargo build -q -p runnel --tests
printf 'run\tbaseline_MiB\tpeak_MiB\tgrowth_MiB\tafter_MiB\tafter_ms\n'
for i in $(seq 1 "$runs"); do
    out=$(cargo nextest run -p runnel --test t31_resource_bounds silent_greedy_fetchers \
        --no-capture 2>&1 || true)
    line=$(grep -o 'baseline [0-9]* MiB, peak [0-9]* MiB, growth [0-9]* MiB' <<<"$out" || true)
    after=$(grep -o '[0-9]* MiB [0-9]* ms after the clients left' <<<"$out" || true)
    if [ -z "$line" ] || [ -z "$after" ]; then
        echo "run $i: no measurement" >&2
        echo "$out" | tail -20 >&2
        exit 1
    fi
    read -r _ b _ _ p _ _ g _ <<<"${line//,/}"
    read -r a _ ms _ <<<"$after"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$i" "$b" "$p" "$g" "$a" "$ms"
done

# A ~8 KB zstd batch holding a 256 MiB record, produced to a plain and a compacted topic and
# found by ListOffsets by timestamp past the big record (the records are read as a stream).
printf '\nrun\tbatch_bytes\tbaseline_MiB\tpeak_MiB\tgrowth_MiB\n'
for i in $(seq 1 "$runs"); do
    out=$(cargo nextest run -p runnel --test t31_resource_bounds a_small_batch_that_decompresses \
        --no-capture 2>&1 || true)
    line=$(grep -o 'baseline [0-9]* MiB, peak [0-9]* MiB, growth [0-9]* MiB' <<<"$out" || true)
    size=$(grep -o 'request batch: [0-9]* bytes' <<<"$out" || true)
    if [ -z "$line" ] || [ -z "$size" ]; then
        echo "run $i: no measurement" >&2
        echo "$out" | tail -20 >&2
        exit 1
    fi
    read -r _ b _ _ p _ _ g _ <<<"${line//,/}"
    read -r _ _ n _ <<<"$size"
    printf '%s\t%s\t%s\t%s\t%s\n' "$i" "$n" "$b" "$p" "$g"
done
