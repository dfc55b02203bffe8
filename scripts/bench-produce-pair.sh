#!/usr/bin/env bash
# Produce throughput of two server binaries side by side, uncompressed and zstd, alternating
# runs so that both see the same machine: one node, a fresh data directory per run, 1,000,000
# records of 1 KiB to 3 partitions, acks=1 (`runnel bench produce`; the client is the second
# binary). Results go to docs/benchmarks.md.
#   usage: scripts/bench-produce-pair.sh BEFORE_BIN AFTER_BIN [TRIALS]   (default 3)
set -uo pipefail
before=${1:?usage: $0 BEFORE_BIN AFTER_BIN [TRIALS]}
after=${2:?usage: $0 BEFORE_BIN AFTER_BIN [TRIALS]}
trials=${3:-3}
client=$after
port=29292
printf 'trial\tcodec\tserver\trecords_per_s\tp99_ms\n'
for trial in $(seq 1 "$trials"); do
    for codec in none zstd; do
        for which in before after; do
            bin=$before
            [ "$which" = after ] && bin=$after
            dir=$(mktemp -d)
            "$bin" server --data-dir "$dir" --listen "127.0.0.1:$port" \
                --rpc-listen "127.0.0.1:$((port + 1))" >/dev/null 2>&1 &
            pid=$!
            for _ in $(seq 50); do
                "$client" health --bootstrap-server "127.0.0.1:$port" >/dev/null 2>&1 && break
                sleep 0.2
            done
            line=$("$client" bench produce --bootstrap-server "127.0.0.1:$port" --topic b \
                --partitions 3 --num-records 1000000 --record-size 1024 --acks 1 \
                --compression "$codec" 2>&1 | grep -m1 'records/sec')
            rate=$(sed -E 's/.*, ([0-9.]+) records\/sec.*/\1/' <<<"$line")
            p99=$(sed -E 's/.*, ([0-9.]+) ms 99th.*/\1/' <<<"$line")
            printf '%s\t%s\t%s\t%s\t%s\n' "$trial" "$codec" "$which" "$rate" "$p99"
            kill "$pid"
            wait "$pid" 2>/dev/null
            rm -rf "$dir"
        done
    done
done
