#!/usr/bin/env bash
# kcat (librdkafka) round trip against a Runnel broker.
#
# Usage: roundtrip.sh BOOTSTRAP TOPIC
#
# kcat has no admin API: the caller creates TOPIC with 3 partitions first (the Rust test does,
# with a CreateTopics request); this script checks metadata (-L -J) shows 3 partitions.
# Checks:
# - for each codec (-z none, gzip, snappy, lz4, zstd): 50 lines "key:value" (-K:, 5 keys) with two
#   headers (-H codec=..., -H run=...), acks=all with the idempotent producer; kcat exits 0 only
#   if every message was delivered.
# - consuming every partition from the beginning (-o beginning -e -J) returns exactly the
#   produced records: same key, value and headers for each, no duplicates, nothing extra; a
#   CreateTime timestamp within the send window; per partition the offsets are 0,1,2,...
#   without gaps (a fresh topic with a single non-transactional producer); each key's records in
#   send order. kcat prints no delivery offsets, so "offset matches the delivery report" is
#   checked by the other clients, not here.
# Prints one summary line per codec; exits non-zero on any mismatch.
set -euo pipefail
bootstrap=$1
topic=$2
codecs=(none gzip snappy lz4 zstd)
per_codec=50
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

kcat -b "$bootstrap" -L -J -t "$topic" -m 30 >"$work/meta.json"
python3 - "$work/meta.json" "$topic" <<'PY'
import json, sys
md = json.load(open(sys.argv[1]))
t = [t for t in md["topics"] if t["topic"] == sys.argv[2]]
if not t or t[0].get("error") or len(t[0]["partitions"]) != 3:
    sys.exit(f"kcat: FAIL: metadata for {sys.argv[2]}: {t}")
PY

t_start=$(date +%s%3N)
for codec in "${codecs[@]}"; do
    for i in $(seq 0 $((per_codec - 1))); do
        echo "key-$((i % 5)):$codec-$i-kcat"
    done >"$work/in-$codec"
    kcat -P -b "$bootstrap" -t "$topic" -K: -z "$codec" \
        -H "codec=$codec" -H "run=kcat-$t_start" \
        -X enable.idempotence=true -X acks=all -X message.timeout.ms=30000 \
        -l "$work/in-$codec"
done
t_end=$(date +%s%3N)

timeout 90 kcat -C -b "$bootstrap" -t "$topic" -o beginning -e -J -q >"$work/out.jsonl"

python3 - "$work/out.jsonl" "$t_start" "$t_end" "$per_codec" "${codecs[@]}" <<'PY'
import json, sys
path, t_start, t_end, per_codec, codecs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:]
def fail(msg):
    sys.exit(f"kcat: FAIL: {msg}")
msgs = [json.loads(l) for l in open(path) if l.strip()]
want = {}
for c in codecs:
    for i in range(per_codec):
        want[f"{c}-{i}-kcat"] = (c, i, f"key-{i % 5}")
seen = set()
next_off = {}
key_last = {}
counts = {c: 0 for c in codecs}
parts = {c: set() for c in codecs}
for m in msgs:
    p, off = m["partition"], m["offset"]
    if off != next_off.get(p, 0):
        fail(f"partition {p}: offset {off}, expected {next_off.get(p, 0)}")
    next_off[p] = off + 1
    v = m["payload"]
    if v not in want:
        fail(f"unexpected record {p}@{off}: {v!r}")
    if v in seen:
        fail(f"duplicate record {v!r} at {p}@{off}")
    seen.add(v)
    c, i, key = want[v]
    if m["key"] != key:
        fail(f"{v}: key {m['key']!r}, want {key!r}")
    h = m.get("headers")
    if isinstance(h, list):  # kcat prints headers as [name, value, name, value, ...]
        h = list(zip(h[0::2], h[1::2]))
    elif isinstance(h, dict):
        h = list(h.items())
    if not h or len(h) != 2 or h[0] != ("codec", c) or h[1][0] != "run":
        fail(f"{v}: headers {m.get('headers')!r}")
    if m["tstype"] != "create" or not (t_start - 5000 <= m["ts"] <= t_end + 5000):
        fail(f"{v}: timestamp {m['tstype']} {m['ts']} outside [{t_start}, {t_end}]")
    if i <= key_last.get((c, key), -1):
        fail(f"{c} {key}: seq {i} after {key_last[(c, key)]}")
    key_last[(c, key)] = i
    counts[c] += 1
    parts[c].add(p)
for c in codecs:
    if counts[c] != per_codec:
        fail(f"{c}: read {counts[c]} records, want {per_codec}")
    print(f"kcat codec={c}: {per_codec} records ok (partitions {sorted(parts[c])})")
PY
