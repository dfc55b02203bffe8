#!/usr/bin/env python3
"""Measures consumer-group rebalance times against a running broker (a measurement, not a test).

Usage: scripts/group-rebalance-time.py BOOTSTRAP [--trials N] [--strategy range|roundrobin|
       cooperative-sticky] [--heartbeat-ms MS] [--session-ms MS]

Each trial uses a fresh 6-partition topic (20 records per partition produced first) and a fresh
group of three confluent-kafka (librdkafka) consumers in threads, no commits,
auto.offset.reset=earliest:
- join-to-first-fetch: from the moment all three call subscribe() (and start polling) to each
  member's first record, once the group has settled with every member owning two partitions
  (a member that got records in an earlier generation counts its first record of the final
  one, so the number includes every rebalance the start-up took);
- leave-to-first-fetch: one member close()s (LeaveGroup); from the close to the moment each of
  its partitions has delivered a record to its new owner (the other two members re-read them
  from the earliest offset), and to the moment the two remaining members own all six
  partitions (leave-to-assignment).
The broker's `group.initial.rebalance.delay.ms` (default 3000) bounds the first number from
below; the members' heartbeat interval (how soon the others learn about the leave) dominates
the second. Prints every trial and min/median/max per measure.
"""
import argparse
import statistics
import sys
import threading
import time
import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

PARTITIONS = 6
PER_PARTITION = 20


class Member:
    def __init__(self, args, topic, group, name, start_evt):
        self.args, self.topic, self.group, self.name = args, topic, group, name
        self.start_evt = start_evt
        self.lock = threading.Lock()
        self.assignment = set()
        self.generation_start = None  # time of the last assignment
        self.first = {}  # partition -> time of the first record since it was (re)assigned
        self.stop = False
        self.t_subscribe = None
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def on_assign(self, c, parts):
        with self.lock:
            if self.args.strategy == "cooperative-sticky":
                self.assignment |= {p.partition for p in parts}
            else:
                self.assignment = {p.partition for p in parts}
            for p in parts:
                self.first.pop(p.partition, None)

    def on_revoke(self, c, parts):
        with self.lock:
            self.assignment -= {p.partition for p in parts}
            for p in parts:
                self.first.pop(p.partition, None)

    def run(self):
        c = Consumer({
            "bootstrap.servers": self.args.bootstrap,
            "group.id": self.group,
            "client.id": self.name,
            "partition.assignment.strategy": self.args.strategy,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": self.args.session_ms,
            "heartbeat.interval.ms": self.args.heartbeat_ms,
        })
        self.start_evt.wait()
        self.t_subscribe = time.time()
        c.subscribe([self.topic], on_assign=self.on_assign, on_revoke=self.on_revoke)
        while not self.stop:
            for m in c.consume(num_messages=100, timeout=0.05):
                if m.error():
                    continue
                now = time.time()
                with self.lock:
                    self.first.setdefault(m.partition(), now)
        c.close()

    def snapshot(self):
        with self.lock:
            return set(self.assignment), dict(self.first)


def wait_for(cond, timeout):
    end = time.time() + timeout
    while time.time() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.01)
    return None


def trial(args, n):
    topic = f"rebalance-time-{uuid.uuid4().hex[:8]}"
    group = f"{topic}-group"
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(30)
    p = Producer({"bootstrap.servers": args.bootstrap})
    for part in range(PARTITIONS):
        for i in range(PER_PARTITION):
            p.produce(topic, value=f"{i}".encode(), partition=part)
    p.flush(30)
    go = threading.Event()
    members = [Member(args, topic, group, f"m{i}", go) for i in range(3)]
    time.sleep(0.5)  # let the three clients bootstrap; the clock starts at subscribe
    t0 = time.time()
    go.set()

    def settled():
        snaps = [m.snapshot() for m in members]
        if all(len(a) == 2 for a, _ in snaps) and len(set().union(*(a for a, _ in snaps))) == 6 \
                and all(set(f) >= a for a, f in snaps):
            return snaps
        return None

    snaps = wait_for(settled, args.timeout)
    if not snaps:
        raise SystemExit(f"trial {n}: the group did not settle in {args.timeout}s")
    join = [max(f[p] for p in a) - t0 for a, f in snaps]
    leaver = members[2]
    moved = snaps[2][0]
    rest = members[:2]
    t_leave = time.time()
    leaver.stop = True

    def reassigned():
        s = [m.snapshot() for m in rest]
        return s if len(set().union(*(a for a, _ in s))) == 6 else None

    def moved_fetched():
        s = [m.snapshot() for m in rest]
        got = {}
        for a, f in s:
            for part in moved & a:
                if part in f:
                    got[part] = f[part]
        return got if set(got) == moved else None

    s = wait_for(reassigned, args.timeout)
    t_assigned = time.time()
    got = wait_for(moved_fetched, args.timeout)
    if not s or not got:
        raise SystemExit(f"trial {n}: no rebalance after the leave in {args.timeout}s")
    leave_fetch = max(got.values()) - t_leave
    leave_assign = t_assigned - t_leave
    for m in members:
        m.stop = True
    for m in members:
        m.thread.join(30)
    admin.delete_topics([topic])
    print(f"trial {n}: join-to-first-fetch " + " ".join(f"{x:.3f}" for x in join)
          + f" s; leave-to-assignment {leave_assign:.3f} s; leave-to-first-fetch "
          f"{leave_fetch:.3f} s", flush=True)
    return join, leave_assign, leave_fetch


def summary(name, xs):
    print(f"{name:24} min {min(xs):.3f}  median {statistics.median(xs):.3f}  max {max(xs):.3f} s"
          f"  (n={len(xs)})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("bootstrap")
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--strategy", default="range")
    ap.add_argument("--heartbeat-ms", type=int, default=3000)
    ap.add_argument("--session-ms", type=int, default=45000)
    ap.add_argument("--timeout", type=float, default=120)
    args = ap.parse_args()
    print(f"bootstrap {args.bootstrap}, strategy {args.strategy}, heartbeat.interval.ms "
          f"{args.heartbeat_ms}, session.timeout.ms {args.session_ms}, {args.trials} trials")
    joins, assigns, fetches = [], [], []
    for n in range(args.trials):
        j, a, f = trial(args, n)
        joins.extend(j)
        assigns.append(a)
        fetches.append(f)
    summary("join-to-first-fetch", joins)
    summary("leave-to-assignment", assigns)
    summary("leave-to-first-fetch", fetches)


if __name__ == "__main__":
    sys.exit(main())
