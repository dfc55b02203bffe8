#!/usr/bin/env python3
"""kafka-python 3.0.x round trip against a Runnel broker.

Usage: roundtrip.py BOOTSTRAP TOPIC

Checks:
- KafkaAdminClient.create_topics creates TOPIC with 3 partitions; the producer then sees 3.
- For each codec (none, gzip, snappy, lz4, zstd; snappy/lz4/zstd need python-snappy, lz4 and
  zstandard, installed by scripts/install-test-deps.sh: a missing one is a failure, not a skip):
  50 keyed records (5 keys) with three headers, values unique per codec, acks=all; every send
  future resolves to (partition, offset).
- Reading all partitions from the beginning (assign + seek_to_beginning) returns exactly those
  records at the acknowledged (partition, offset), with equal key, value, headers, a CreateTime
  timestamp equal to the one sent and within the send window; offsets strictly increase per
  partition; per-key send order holds; no duplicates, nothing extra (see ../pyverify.py).
Exits non-zero on any mismatch.
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from pyverify import Got, Sent, fail, make_record, verify  # noqa: E402

from kafka import KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402
from kafka.admin import KafkaAdminClient, NewTopic  # noqa: E402

CLIENT = "kafka_python"
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
PER_CODEC = 50
PARTITIONS = 3


def main():
    bootstrap, topic = sys.argv[1], sys.argv[2]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
    # kafka-python 3 raises on a topic error (raise_errors defaults to True).
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)],
                        wait_for_metadata=True)
    admin.close()

    sent = {}
    t_start = int(time.time() * 1000)
    for codec in CODECS:
        producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            compression_type=None if codec == "none" else codec,
            acks="all",
            linger_ms=50,
            request_timeout_ms=30000,
        )
        parts = producer.partitions_for(topic)
        if parts is None or len(parts) != PARTITIONS:
            fail(CLIENT, f"producer sees partitions {parts}, want {PARTITIONS}")
        futures = []
        for i in range(PER_CODEC):
            key, value, headers = make_record(CLIENT, codec, i)
            ts = int(time.time() * 1000)
            f = producer.send(topic, key=key, value=value, headers=headers, timestamp_ms=ts)
            futures.append((i, key, value, headers, ts, f))
        producer.flush(60)
        for i, key, value, headers, ts, f in futures:
            try:
                md = f.get(timeout=30)
            except Exception as e:  # noqa: BLE001 - any send failure fails the run
                fail(CLIENT, f"{codec}: send {i} failed: {e!r}")
            pos = (md.partition, md.offset)
            if pos in sent:
                fail(CLIENT, f"{codec}: two records acknowledged at {pos}")
            sent[pos] = Sent(codec, i, key, value, headers, ts)
        producer.close()
    t_end = int(time.time() * 1000)

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest", group_id=None)
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    got = []
    deadline = time.time() + 60
    while time.time() < deadline and len(got) < len(sent):
        for tp, recs in consumer.poll(timeout_ms=1000).items():
            for r in recs:
                got.append(Got(r.partition, r.offset, r.key, r.value, r.headers,
                               r.timestamp_type == 0, r.timestamp))
    # Anything beyond what was sent would show up in a short extra poll.
    for tp, recs in consumer.poll(timeout_ms=500).items():
        for r in recs:
            got.append(Got(r.partition, r.offset, r.key, r.value, r.headers,
                           r.timestamp_type == 0, r.timestamp))
    consumer.close()
    verify(CLIENT, CODECS, PER_CODEC, sent, got, t_start, t_end)


if __name__ == "__main__":
    main()
