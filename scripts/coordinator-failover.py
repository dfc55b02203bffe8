#!/usr/bin/env python3
"""Measures how long a consumer group cannot commit after its coordinator is SIGKILLed.

Runs against the local three-node cluster of scripts/cluster.sh (which must be running; set
RUNNEL_HOST there and --host here alike to keep off ports in use). For each trial: a
confluent-kafka consumer in group G consumes an RF=3 topic that a producer keeps filling and
commits its position synchronously every 100 ms; the script finds the group's coordinator (the
leader of __consumer_offsets partition abs(javaHashCode(G)) % partitions), SIGKILLs it
(`scripts/cluster.sh kill N`) and reports the time from the kill to the first commit
acknowledged after it; then it restarts the node and waits until the offsets partition has a
full ISR again. It also checks that the committed offset did not go backwards across the
failover.

    python3 scripts/coordinator-failover.py --trials 5
"""

import argparse
import os
import subprocess
import threading
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OFFSETS = "__consumer_offsets"


def cluster(*args):
    subprocess.run(["bash", os.path.join(ROOT, "scripts/cluster.sh"), *args], check=True,
                   stdout=subprocess.DEVNULL)


def java_hash(s):
    h = 0
    for unit in s.encode("utf-16-be").hex(" ", 2).split():
        h = (31 * h + int(unit, 16)) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def offsets_partition(group, n):
    h = java_hash(group)
    return 0 if h == -(1 << 31) else abs(h) % n


def offsets_state(admin, group):
    md = admin.list_topics(topic=OFFSETS, timeout=5)
    t = md.topics.get(OFFSETS)
    if t is None or t.error is not None or not t.partitions:
        return None
    p = t.partitions[offsets_partition(group, len(t.partitions))]
    return p.leader, list(p.isrs)


def wait_for(what, f, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            v = f()
            if v:
                return v
        except KafkaException:
            pass
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--host", default=os.environ.get("RUNNEL_HOST", "127.0.0.1"))
    ap.add_argument("--topic", default="coordinator-failover")
    args = ap.parse_args()
    bootstrap = ",".join(f"{args.host}:{p}" for p in (9092, 9094, 9096))
    admin = AdminClient({"bootstrap.servers": bootstrap})
    fs = admin.create_topics([NewTopic(args.topic, 3, 3, config={"min.insync.replicas": "2"})])
    for f in fs.values():
        try:
            f.result()
        except KafkaException as e:
            if "TOPIC_ALREADY_EXISTS" not in str(e):
                raise

    stop = threading.Event()

    def produce():
        p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
        while not stop.is_set():
            p.produce(args.topic, b"x" * 100)
            p.poll(0)
            time.sleep(0.002)
        p.flush(30)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    results = []
    for trial in range(args.trials):
        group = f"failover-{int(time.time())}-{trial}"
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                      "enable.auto.commit": False, "auto.offset.reset": "earliest",
                      "session.timeout.ms": 30000})
        c.subscribe([args.topic])
        commits = []  # (time, {partition: offset})

        def commit_now():
            try:
                tps = c.commit(asynchronous=False)
                if tps:
                    commits.append((time.time(), {tp.partition: tp.offset for tp in tps}))
            except KafkaException:
                pass

        deadline = time.time() + 60
        while len(commits) < 5 and time.time() < deadline:
            c.poll(0.05)
            commit_now()
        if len(commits) < 5:
            raise SystemExit("the group never committed")
        coordinator, _ = wait_for("a coordinator", lambda: offsets_state(admin, group))
        before = commits[-1][1]
        killed = time.time()
        cluster("kill", str(coordinator))
        first = None
        last_try = 0.0
        while first is None and time.time() < killed + 120:
            c.poll(0.05)
            if time.time() - last_try >= 0.1:
                last_try = time.time()
                n = len(commits)
                commit_now()
                if len(commits) > n:
                    first = commits[-1]
        if first is None:
            raise SystemExit("no commit succeeded within 120 s of the kill")
        went_back = {p: (o, first[1].get(p)) for p, o in before.items()
                     if first[1].get(p) is not None and first[1][p] < o}
        ms = (first[0] - killed) * 1000
        new_leader = wait_for("a new coordinator",
                              lambda: (offsets_state(admin, group) or (-1, []))[0] >= 0
                              and offsets_state(admin, group)[0])
        print(f"trial {trial + 1}: killed coordinator {coordinator}, new coordinator "
              f"{new_leader}, first commit acknowledged {ms:.0f} ms after the kill"
              + (f"; WENT BACK: {went_back}" if went_back else ""), flush=True)
        results.append(ms)
        c.close()
        cluster("start-node", str(coordinator))
        wait_for("a full ISR on the offsets partition",
                 lambda: len((offsets_state(admin, group) or (-1, []))[1]) == 3)
    stop.set()
    producer.join()
    results.sort()
    print(f"coordinator failover, kill to first acknowledged commit: min {results[0]:.0f} ms, "
          f"median {results[len(results) // 2]:.0f} ms, max {results[-1]:.0f} ms "
          f"({len(results)} trials)")


if __name__ == "__main__":
    main()
