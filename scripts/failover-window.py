#!/usr/bin/env python3
"""Measures the unavailability window after a partition leader is SIGKILLed.

Runs against the local three-node cluster of scripts/cluster.sh (which must be running).
For each trial: a confluent-kafka producer (acks=all, idempotent) sends one record every
5 ms to partition 0 of an RF=3 topic; the script SIGKILLs that partition's leader
(`scripts/cluster.sh kill N`) and reports the time from the kill until the first record
*sent after the kill* is acknowledged; then it restarts the node and waits until the ISR is
full again before the next trial.

    python3 scripts/failover-window.py --trials 5
"""

import argparse
import os
import subprocess
import sys
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOOTSTRAP = "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"


def cluster(*args):
    subprocess.run(["bash", os.path.join(ROOT, "scripts/cluster.sh"), *args], check=True,
                   stdout=subprocess.DEVNULL)


def partition0(admin, topic):
    md = admin.list_topics(topic=topic, timeout=5)
    t = md.topics.get(topic)
    if t is None or t.error is not None or 0 not in t.partitions:
        return None
    p = t.partitions[0]
    return p.leader, list(p.isrs), list(p.replicas)


def wait_full_isr(admin, topic, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            st = partition0(admin, topic)
            if st and st[0] >= 0 and len(st[1]) == 3:
                return st
        except Exception:
            pass
        time.sleep(0.2)
    raise SystemExit(f"partition 0 of {topic} did not get a full ISR within {timeout}s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--topic", default="failover-window")
    args = ap.parse_args()

    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    fs = admin.create_topics([NewTopic(args.topic, num_partitions=1, replication_factor=3,
                                       config={"min.insync.replicas": "2"})])
    for f in fs.values():
        try:
            f.result()
        except Exception as e:  # already exists is fine
            if "TOPIC_ALREADY_EXISTS" not in str(e):
                raise
    windows = []
    for trial in range(1, args.trials + 1):
        leader, _, _ = wait_full_isr(admin, args.topic)
        controller = admin.list_topics(timeout=5).controller_id
        role = "leader and active controller" if controller == leader else "leader"
        acked = []  # (send time, ack time) of successful deliveries

        def on_delivery(err, msg, sent):
            if err is None:
                acked.append((sent, time.time()))

        p = Producer({"bootstrap.servers": BOOTSTRAP, "acks": "all", "enable.idempotence": True,
                      "linger.ms": 0, "message.timeout.ms": 60000,
                      "topic.metadata.refresh.interval.ms": 1000})
        # Steady traffic before the kill.
        start = time.time()
        while time.time() - start < 1.0:
            t = time.time()
            p.produce(args.topic, b"x", partition=0, on_delivery=lambda e, m, t=t: on_delivery(e, m, t))
            p.poll(0.005)
        killed_at = time.time()
        cluster("kill", str(leader))
        recovered = None
        while time.time() - killed_at < 60:
            t = time.time()
            p.produce(args.topic, b"y", partition=0, on_delivery=lambda e, m, t=t: on_delivery(e, m, t))
            p.poll(0.005)
            after = [a for (s, a) in acked if s > killed_at]
            if after:
                recovered = min(after)
                break
        p.flush(60)
        if recovered is None:
            print(f"trial {trial}: killed {role} node {leader}; no acknowledged produce within 60 s")
        else:
            w = (recovered - killed_at) * 1000
            windows.append(w)
            new_leader = partition0(admin, args.topic)
            print(f"trial {trial}: killed {role} node {leader}; produce succeeded again after "
                  f"{w:.0f} ms (new leader {new_leader[0] if new_leader else '?'})")
        cluster("start-node", str(leader))
    if windows:
        windows.sort()
        print(f"unavailability window over {len(windows)} trials: min {windows[0]:.0f} ms, "
              f"median {windows[len(windows) // 2]:.0f} ms, max {windows[-1]:.0f} ms")
    return 0 if len(windows) == args.trials else 1


if __name__ == "__main__":
    sys.exit(main())
