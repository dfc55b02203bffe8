#!/usr/bin/env python3
"""aiokafka 0.14 round trip against a Runnel broker.

Usage: roundtrip.py BOOTSTRAP TOPIC

Checks:
- AIOKafkaAdminClient.create_topics creates TOPIC with 3 partitions; the producer sees 3.
- For each codec (none, gzip, snappy, lz4, zstd; the last three via cramjam, installed by
  scripts/install-test-deps.sh): 50 keyed records (5 keys) with three headers, values unique per
  codec, acks=all; every send resolves to (partition, offset, timestamp).
- Reading all partitions from the beginning returns exactly those records at the acknowledged
  (partition, offset), with equal key, value, headers, a CreateTime timestamp equal to the one
  sent and within the send window; offsets strictly increase per partition; per-key send order
  holds; no duplicates, nothing extra (see ../pyverify.py).
Exits non-zero on any mismatch.
"""
import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from pyverify import Got, Sent, fail, make_record, verify  # noqa: E402

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402

CLIENT = "aiokafka"
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
PER_CODEC = 50
PARTITIONS = 3


async def run(bootstrap, topic):
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
    await admin.start()
    try:
        resp = await admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS,
                                                   replication_factor=1)])
        for t in resp.topic_errors:
            if t[1] != 0:
                fail(CLIENT, f"create_topics: {t}")
    finally:
        await admin.close()

    sent = {}
    t_start = int(time.time() * 1000)
    for codec in CODECS:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap,
                                    compression_type=None if codec == "none" else codec,
                                    acks="all", linger_ms=50, request_timeout_ms=30000)
        await producer.start()
        try:
            parts = await producer.partitions_for(topic)
            if len(parts) != PARTITIONS:
                fail(CLIENT, f"producer sees partitions {parts}, want {PARTITIONS}")
            pending = []
            for i in range(PER_CODEC):
                key, value, headers = make_record(CLIENT, codec, i)
                ts = int(time.time() * 1000)
                fut = await producer.send(topic, key=key, value=value, headers=headers,
                                          timestamp_ms=ts)
                pending.append((i, key, value, headers, ts, fut))
            for i, key, value, headers, ts, fut in pending:
                try:
                    md = await asyncio.wait_for(fut, 30)
                except Exception as e:  # noqa: BLE001 - any send failure fails the run
                    fail(CLIENT, f"{codec}: send {i} failed: {e!r}")
                pos = (md.partition, md.offset)
                if pos in sent:
                    fail(CLIENT, f"{codec}: two records acknowledged at {pos}")
                sent[pos] = Sent(codec, i, key, value, headers, ts)
        finally:
            await producer.stop()
    t_end = int(time.time() * 1000)

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    got = []
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.time() + 60
        extra_poll = False
        while time.time() < deadline:
            batch = await consumer.getmany(timeout_ms=1000 if not extra_poll else 500)
            for tp, recs in batch.items():
                for r in recs:
                    got.append(Got(r.partition, r.offset, r.key, r.value, list(r.headers),
                                   r.timestamp_type == 0, r.timestamp))
            if extra_poll:
                break
            if len(got) >= len(sent):
                extra_poll = True  # one more poll: anything extra would show up here
    finally:
        await consumer.stop()
    verify(CLIENT, CODECS, PER_CODEC, sent, got, t_start, t_end)


def main():
    asyncio.run(run(sys.argv[1], sys.argv[2]))


if __name__ == "__main__":
    main()
