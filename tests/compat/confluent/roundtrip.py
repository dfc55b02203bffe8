#!/usr/bin/env python3
"""confluent-kafka (librdkafka) round trip against a Runnel broker.

Usage: roundtrip.py BOOTSTRAP TOPIC

Checks:
- AdminClient.create_topics creates TOPIC with 3 partitions (and metadata then shows 3).
- For each codec librdkafka supports (none, gzip, snappy, lz4, zstd): 50 keyed records (5 keys)
  with two headers, values unique per codec, idempotent producer with acks=all; every delivery
  report succeeds.
- Reading every partition from the beginning returns exactly the produced records: each at the
  partition and offset its delivery report gave, with the same key, value and headers (order and
  bytes), a CreateTime timestamp equal to the one the producer set, and within a window around
  send time; offsets strictly increase per partition; each key's records come back in send order;
  nothing is duplicated and nothing extra appears.
Prints one summary line per codec; exits non-zero on any mismatch.
"""
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
PER_CODEC = 50
KEYS = 5
PARTITIONS = 3


def fail(msg):
    print(f"confluent: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    bootstrap, topic = sys.argv[1], sys.argv[2]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    fut = admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])[topic]
    try:
        fut.result(timeout=30)
    except KafkaException as e:
        fail(f"create_topics: {e}")
    md = admin.list_topics(topic=topic, timeout=30)
    if len(md.topics[topic].partitions) != PARTITIONS:
        fail(f"metadata shows {len(md.topics[topic].partitions)} partitions, want {PARTITIONS}")

    sent = {}  # (partition, offset) -> (codec, i, key, value, headers, ts)
    t_start = int(time.time() * 1000)
    for codec in CODECS:
        producer = Producer({
            "bootstrap.servers": bootstrap,
            "compression.type": codec,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 50,
            "message.timeout.ms": 30000,
        })
        errors = []

        def report(err, msg, codec=codec):
            if err is not None:
                errors.append(f"{codec}: {err}")
                return
            i = int(msg.value().decode().split("-")[1])
            key, value, headers, ts = produced[(codec, i)]
            if msg.key() != key or msg.value() != value:
                errors.append(f"{codec}: delivery report for {value!r} shows {msg.key()!r}={msg.value()!r}")
            pos = (msg.partition(), msg.offset())
            if pos in sent:
                errors.append(f"{codec}: two deliveries at {pos}")
            sent[pos] = (codec, i, key, value, headers, ts)

        produced = {}
        for i in range(PER_CODEC):
            key = f"key-{i % KEYS}".encode()
            value = f"{codec}-{i}-confluent".encode()
            headers = [("codec", codec.encode()), ("seq", str(i).encode()), ("bin", bytes([0, 255, i]))]
            ts = int(time.time() * 1000)
            # Delivery reports carry no headers, so what was sent is remembered here.
            produced[(codec, i)] = (key, value, headers, ts)
            producer.produce(topic, key=key, value=value, headers=headers,
                             timestamp=ts, on_delivery=report)
        left = producer.flush(60)
        if left:
            fail(f"{codec}: {left} records not delivered within 60s")
        if errors:
            fail("; ".join(errors[:5]))
    t_end = int(time.time() * 1000)

    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"{topic}-verify",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
    })
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    got = {}
    eof = set()
    deadline = time.time() + 60
    while time.time() < deadline and (len(got) < len(sent) or len(eof) < PARTITIONS):
        msg = consumer.poll(1.0)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == -191:  # _PARTITION_EOF
                eof.add(msg.partition())
                continue
            fail(f"consume: {msg.error()}")
        eof.discard(msg.partition())
        pos = (msg.partition(), msg.offset())
        if pos in got:
            fail(f"offset {pos} delivered twice")
        got[pos] = msg
    consumer.close()
    if len(got) != len(sent):
        fail(f"read {len(got)} records, produced {len(sent)}")

    last = {}
    key_last = {}
    per_codec = {c: 0 for c in CODECS}
    for pos in sorted(got):
        p, off = pos
        msg = got[pos]
        if pos not in sent:
            fail(f"unexpected record at {pos}: {msg.value()!r}")
        codec, i, key, value, headers, ts = sent[pos]
        if off <= last.get(p, -1):
            fail(f"partition {p}: offset {off} after {last[p]}")
        last[p] = off
        if msg.key() != key or msg.value() != value:
            fail(f"{pos}: got {msg.key()!r}={msg.value()!r}, want {key!r}={value!r}")
        if msg.headers() != headers:
            fail(f"{pos}: headers {msg.headers()!r}, want {headers!r}")
        tstype, got_ts = msg.timestamp()
        if tstype != 1 or got_ts != ts:  # 1 = TIMESTAMP_CREATE_TIME
            fail(f"{pos}: timestamp ({tstype},{got_ts}), want create time {ts}")
        if not (t_start - 5000 <= got_ts <= t_end + 5000):
            fail(f"{pos}: timestamp {got_ts} outside [{t_start}, {t_end}]")
        k = (codec, key)
        if i <= key_last.get(k, -1):
            fail(f"{codec} key {key!r}: seq {i} after {key_last[k]}")
        key_last[k] = i
        per_codec[codec] += 1
    for codec in CODECS:
        if per_codec[codec] != PER_CODEC:
            fail(f"{codec}: {per_codec[codec]} records read back, want {PER_CODEC}")
        parts = sorted({p for (p, _), v in sent.items() if v[0] == codec})
        print(f"confluent codec={codec}: {PER_CODEC} records ok (partitions {parts})")


if __name__ == "__main__":
    main()
