#!/usr/bin/env python3
"""Transactional next to idempotent produce, and read_committed next to read_uncommitted
consume, through the same client (confluent-kafka, librdkafka) against one broker.

Usage: bench_transactions.py --bootstrap HOST:PORT [--records N] [--record-size B]
                             [--per-txn K] [--partitions P] [--runs R]

Per run, each mode gets a topic of its own (created with P partitions through the AdminClient):
- produce, idempotent: N records of B bytes, `enable.idempotence=true`, acks=all;
- produce, transactional: the same N records in transactions of K records each
  (begin, K x produce, commit), `transactional.id` set;
- consume, read_uncommitted and read_committed: a consumer assigned to every partition of the
  transactional topic from the beginning reads until it has N records.
Throughput is records / wall time from the first call to the last acknowledgement (produce)
or the last record received (consume). Prints one line per mode and run, then the medians and
the ratios the targets are stated in.
"""

import argparse
import statistics
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def create_topic(bootstrap, name, partitions):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    fs = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    for f in fs.values():
        f.result(30)
    time.sleep(0.5)


def produce(bootstrap, topic, n, size, per_txn):
    conf = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "batch.size": 1 << 20,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1 << 21,
    }
    if per_txn:
        conf["transactional.id"] = f"bench-{uuid.uuid4()}"
    p = Producer(conf)
    payload = b"x" * size
    if per_txn:
        p.init_transactions(30)
    start = time.monotonic()
    sent = 0
    while sent < n:
        k = min(per_txn or n, n - sent)
        if per_txn:
            p.begin_transaction()
        for _ in range(k):
            while True:
                try:
                    p.produce(topic, payload)
                    break
                except BufferError:
                    p.poll(0.01)
            p.poll(0)
        if per_txn:
            p.commit_transaction(60)
        sent += k
    left = p.flush(120)
    elapsed = time.monotonic() - start
    if left:
        sys.exit(f"{left} records not delivered")
    return n / elapsed


def consume(bootstrap, topic, partitions, n, isolation):
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4()}",
            "isolation.level": isolation,
            "enable.auto.commit": False,
            "fetch.max.bytes": 52428800,
            "max.partition.fetch.bytes": 10485760,
        }
    )
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got = 0
    start = time.monotonic()
    deadline = start + 300
    while got < n and time.monotonic() < deadline:
        for m in c.consume(10000, 1.0):
            if m.error() is None:
                got += 1
    elapsed = time.monotonic() - start
    c.close()
    if got < n:
        sys.exit(f"{isolation}: only {got} of {n} records")
    return n / elapsed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--record-size", type=int, default=1024)
    ap.add_argument("--per-txn", type=int, default=1000)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    results = {k: [] for k in ("idempotent", "transactional", "read_uncommitted", "read_committed")}
    for run in range(1, a.runs + 1):
        tag = uuid.uuid4().hex[:8]
        idem, txn = f"bench-idem-{tag}", f"bench-txn-{tag}"
        create_topic(a.bootstrap, idem, a.partitions)
        create_topic(a.bootstrap, txn, a.partitions)
        r = {
            "idempotent": produce(a.bootstrap, idem, a.records, a.record_size, 0),
            "transactional": produce(a.bootstrap, txn, a.records, a.record_size, a.per_txn),
        }
        r["read_uncommitted"] = consume(a.bootstrap, txn, a.partitions, a.records, "read_uncommitted")
        r["read_committed"] = consume(a.bootstrap, txn, a.partitions, a.records, "read_committed")
        for k, v in r.items():
            results[k].append(v)
            print(f"run {run}: {k:<17} {v:>10,.0f} records/s", flush=True)
    med = {k: statistics.median(v) for k, v in results.items()}
    print()
    for k, v in med.items():
        print(f"median {k:<17} {v:>10,.0f} records/s")
    print(f"transactional / idempotent:        {med['transactional'] / med['idempotent']:.2f}")
    print(f"read_committed / read_uncommitted: {med['read_committed'] / med['read_uncommitted']:.2f}")


if __name__ == "__main__":
    main()
