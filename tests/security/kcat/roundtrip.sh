#!/usr/bin/env bash
# kcat (librdkafka) over a secured listener.
#
# Usage: roundtrip.sh BOOTSTRAP TOPIC GROUP [KEY=VALUE...]   (keys: ../README.md)
#
# Mechanisms: everything librdkafka has (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, SSL with a client
# certificate), passed as -X properties. kcat has no admin API: the caller creates TOPIC with 3
# partitions first (`admin` is ignored).
# Checks (exit status 1 and a FAIL line on any failure):
# - metadata (-L -J) shows TOPIC with 3 partitions;
# - producing 30 keyed records (-K:, acks=all, idempotent) succeeds (kcat exits non-zero if a
#   record is not delivered);
# - a balanced consumer of GROUP (-G, earliest) reads exactly those 30 records (-c 30) and
#   commits on close; a second member of GROUP then reads nothing (-e: it resumed at the
#   committed offsets, the end).
# Prints one `RESULT {json}` line.
set -uo pipefail
# Under cargo's test runner LD_LIBRARY_PATH includes the build's native library directories,
# where the rdkafka crate's own librdkafka (built without OpenSSL) would shadow Debian's.
unset LD_LIBRARY_PATH
bootstrap=$1
topic=$2
group=$3
shift 3
args=(-b "$bootstrap")
for kv in "$@"; do
    key=${kv%%=*}
    value=${kv#*=}
    case "$key" in
    security.protocol | sasl.username | sasl.password | ssl.ca.location | ssl.key.password)
        args+=(-X "$key=$value")
        ;;
    sasl.mechanism) args+=(-X "sasl.mechanisms=$value") ;;
    # One PEM file with the key and the chain: librdkafka reads each from it.
    ssl.keystore.location) args+=(-X "ssl.certificate.location=$value" -X "ssl.key.location=$value") ;;
    admin) ;;
    *)
        echo "unknown setting $kv" >&2
        exit 2
        ;;
    esac
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=()
fail() {
    echo "kcat: FAIL: $*"
    failures+=("$*")
}
finish() {
    python3 - "$@" <<'PY'
import json, sys
failures = sys.argv[1:]
print("RESULT " + json.dumps({"client": "kcat", "ok": not failures, "failures": failures}))
PY
    [ ${#failures[@]} -eq 0 ]
    exit
}

if ! timeout 60 kcat "${args[@]}" -L -J -t "$topic" -m 30 >"$work/meta.json" 2>"$work/meta.err"; then
    fail "metadata: $(tail -n 3 "$work/meta.err")"
    finish "${failures[@]}"
fi
if ! python3 - "$work/meta.json" "$topic" <<'PY'; then
import json, sys
md = json.load(open(sys.argv[1]))
t = [t for t in md["topics"] if t["topic"] == sys.argv[2]]
if not t or t[0].get("error") or len(t[0]["partitions"]) != 3:
    sys.exit(f"metadata for {sys.argv[2]}: {t}")
PY
    fail "metadata does not show $topic with 3 partitions"
fi

for i in $(seq 0 29); do echo "k$((i % 5)):kcat-$i"; done >"$work/in"
if ! timeout 60 kcat "${args[@]}" -P -t "$topic" -K: -X acks=all -X enable.idempotence=true \
    -X message.timeout.ms=30000 -l "$work/in" 2>"$work/produce.err"; then
    fail "produce: $(tail -n 3 "$work/produce.err")"
    finish "${failures[@]}"
fi

if ! timeout 60 kcat "${args[@]}" -G "$group" -X auto.offset.reset=earliest -c 30 -f '%s\n' \
    -q "$topic" >"$work/out" 2>"$work/consume.err"; then
    fail "consume: $(tail -n 3 "$work/consume.err")"
fi
if ! python3 - "$work/out" <<'PY'; then
import sys
got = [l for l in open(sys.argv[1]).read().splitlines() if l]
want = {f"kcat-{i}" for i in range(30)}
if sorted(got) != sorted(want):
    sys.exit(f"consumed {len(got)} records, want the 30 produced: {sorted(set(got) ^ want)[:5]}")
PY
    fail "the group did not read exactly the produced records"
fi

if ! timeout 60 kcat "${args[@]}" -G "$group" -X auto.offset.reset=earliest -e -f '%s\n' \
    -q "$topic" >"$work/again" 2>"$work/again.err"; then
    fail "second member: $(tail -n 3 "$work/again.err")"
elif [ -s "$work/again" ]; then
    fail "a second member of the group read $(wc -l <"$work/again") records: the commit did not land"
fi
finish "${failures[@]+"${failures[@]}"}"
