"""Shared checks for the Python compat programs (kafka_python, aiokafka).

`sent` maps (partition, offset) from a delivery report to a Sent record; `got` is the list of
Got records read back from the beginning of every partition, in the order the consumer
returned them. `verify` exits non-zero with a message on the first mismatch and prints one
summary line per codec otherwise.
"""
import sys
from collections import namedtuple

Sent = namedtuple("Sent", "codec seq key value headers ts")
Got = namedtuple("Got", "partition offset key value headers create_time ts")


def fail(client, msg):
    print(f"{client}: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def make_record(client, codec, i, keys=5):
    key = f"key-{i % keys}".encode()
    value = f"{codec}-{i}-{client}".encode()
    headers = [("codec", codec.encode()), ("seq", str(i).encode()), ("bin", bytes([0, 255, i]))]
    return key, value, headers


def verify(client, codecs, per_codec, sent, got, t_start, t_end, check_exact_ts=True):
    if len(sent) != per_codec * len(codecs):
        fail(client, f"{len(sent)} distinct delivery offsets for {per_codec * len(codecs)} records")
    seen = set()
    last_off = {}
    key_last = {}
    counts = {c: 0 for c in codecs}
    for g in got:
        pos = (g.partition, g.offset)
        if pos in seen:
            fail(client, f"record at {pos} read twice")
        seen.add(pos)
        if g.offset <= last_off.get(g.partition, -1):
            fail(client, f"partition {g.partition}: offset {g.offset} after {last_off[g.partition]}")
        last_off[g.partition] = g.offset
        s = sent.get(pos)
        if s is None:
            fail(client, f"unexpected record at {pos}: {g.key!r}={g.value!r}")
        if g.key != s.key or g.value != s.value:
            fail(client, f"{pos}: got {g.key!r}={g.value!r}, want {s.key!r}={s.value!r}")
        if list(g.headers) != list(s.headers):
            fail(client, f"{pos}: headers {g.headers!r}, want {s.headers!r}")
        if not g.create_time:
            fail(client, f"{pos}: timestamp type is not CreateTime")
        if check_exact_ts and s.ts is not None and g.ts != s.ts:
            fail(client, f"{pos}: timestamp {g.ts}, delivery report said {s.ts}")
        if not (t_start - 5000 <= g.ts <= t_end + 5000):
            fail(client, f"{pos}: timestamp {g.ts} outside [{t_start}, {t_end}]")
        k = (s.codec, s.key)
        if s.seq <= key_last.get(k, -1):
            fail(client, f"{s.codec} key {s.key!r}: seq {s.seq} read after {key_last[k]}")
        key_last[k] = s.seq
        counts[s.codec] += 1
    missing = sorted(set(sent) - seen)
    if missing:
        fail(client, f"{len(missing)} acknowledged records not read back, e.g. {missing[:5]}")
    for codec in codecs:
        if counts[codec] != per_codec:
            fail(client, f"{codec}: read {counts[codec]}, want {per_codec}")
        parts = sorted({p for (p, _), s in sent.items() if s.codec == codec})
        print(f"{client} codec={codec}: {per_codec} records ok (partitions {parts})")
