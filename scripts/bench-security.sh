#!/usr/bin/env bash
# The cost of TLS and SASL on one node: produce and consume throughput of 1 KiB records over a
# PLAINTEXT, an SSL and a SASL_SSL (SCRAM-SHA-512) listener of the same server, side by side in
# one run, and the time to open an authenticated connection.
#
#   RUNNEL_BIN=target/release/runnel RECORDS=300000 TRIALS=3 bash scripts/bench-security.sh
#
# RUNNEL_BIN defaults to target/release/runnel (built if missing). Trials are interleaved
# (plaintext, ssl, sasl_ssl, plaintext, ...) so that a load change on the shared machine hits
# every protocol alike. Prints the `runnel bench` lines of every trial.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bin=${RUNNEL_BIN:-$root/target/release/runnel}
records=${RECORDS:-300000}
trials=${TRIALS:-3}
connections=${CONNECTIONS:-200}
base_port=${BASE_PORT:-29292}
if [ ! -x "$bin" ]; then
    cargo build --release -p runnel
fi
work=$(mktemp -d)
server_pid=
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

bash scripts/dev-certs.sh "$work/certs" 1 >/dev/null
plain=127.0.0.1:$base_port
ssl=127.0.0.1:$((base_port + 1))
sasl_ssl=127.0.0.1:$((base_port + 2))
cat >"$work/server.properties" <<EOF
log.dirs=$work/data
listeners=PLAINTEXT://$plain,SSL://$ssl,SASL_SSL://$sasl_ssl
ssl.keystore.location=$work/certs/node-1.pem
ssl.truststore.location=$work/certs/ca.pem
sasl.enabled.mechanisms=SCRAM-SHA-512
EOF
cat >"$work/ssl.properties" <<EOF
security.protocol=SSL
ssl.truststore.location=$work/certs/ca.pem
EOF
cat >"$work/sasl_ssl.properties" <<EOF
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="bench" password="bench-secret";
ssl.truststore.location=$work/certs/ca.pem
EOF
: >"$work/plaintext.properties"

RUST_LOG=warn "$bin" server --config "$work/server.properties" \
    --add-scram 'SCRAM-SHA-512=[name=bench,password=bench-secret]' >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
    "$bin" health --bootstrap-server "$plain" >/dev/null 2>&1 && break
    sleep 0.2
done

addr_of() {
    case $1 in
    plaintext) echo "$plain" ;;
    ssl) echo "$ssl" ;;
    sasl_ssl) echo "$sasl_ssl" ;;
    esac
}

echo "# $records records of 1 KiB per trial, acks=1, 3 partitions; $(nproc) cores"
for t in $(seq 1 "$trials"); do
    for p in plaintext ssl sasl_ssl; do
        topic="bench-$p-$t"
        echo "produce $p trial $t: $("$bin" bench produce --bootstrap-server "$(addr_of $p)" \
            --command-config "$work/$p.properties" --topic "$topic" --partitions 3 \
            --num-records "$records" --record-size 1024 --acks 1 | tail -n 1)"
        echo "consume $p trial $t: $("$bin" bench consume --bootstrap-server "$(addr_of $p)" \
            --command-config "$work/$p.properties" --topic "$topic" \
            --num-records "$records" | tail -n 1)"
    done
done
for p in plaintext ssl sasl_ssl; do
    echo "connect $p: $("$bin" bench connect --bootstrap-server "$(addr_of $p)" \
        --command-config "$work/$p.properties" --connections "$connections")"
done
