#!/usr/bin/env python3
"""confluent-kafka (librdkafka) consumer group: three members, one leaves.

Usage: confluent_group.py BOOTSTRAP TOPIC GROUP STRATEGY   (STRATEGY: range | cooperative-sticky)

Run by crates/cli/tests/t71_group_clients.rs, which creates TOPIC with 6 partitions.

What it does (three consumers in threads, one Consumer each, manual commits):
- the first consumer joins alone and owns all six partitions; 20 records per partition are
  produced and it consumes and commits them; then the other two join while it still owns
  everything (cooperative-sticky: it must give up four partitions and keep two);
- the consumers subscribe with partition.assignment.strategy=STRATEGY, enable.auto.commit off;
  each thread polls batches and, after processing a batch, commits its offsets synchronously
  (so callbacks, which only run inside poll, never see processed-but-uncommitted records);
- once the group is stable with every member owning two partitions, 50 more per partition
  are produced and consumed;
- the third member (the leaver) then stops committing; 10 more records per partition are
  produced; once the leaver has processed its partitions to the end, it close()s (LeaveGroup);
- once the two remaining members own all six partitions, 10 more per partition are produced and
  consumed; then the remaining members close and a fresh consumer reads the committed offsets.
Checks (each failure is listed in the RESULT line and makes the exit status 1):
- while all three are in the group (stable), each owns exactly two partitions, disjointly;
- after the leave, the remaining two own three partitions each, all six together;
- cooperative-sticky only: while the others joined, the first member never had a partition it
  kept revoked; after the leave, the remaining members kept their original partitions (no revocation
  of a partition that did not move: no on_revoke naming one, and their assignment always
  included them) and got the leaver's partitions through incremental assigns;
- every produced offset was consumed at least once (nothing skipped);
- at-least-once bound: a record delivered twice is exactly one the leaver processed but did not
  commit; each such record was re-delivered; no record below a committed offset was re-delivered;
- the committed offsets afterwards are the partitions' end offsets.
Prints one `RESULT {json}` line.
"""
import json
import sys
import threading
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

PARTITIONS = 6
ZERO, FIRST, SECOND, THIRD = 20, 50, 10, 10
STEP_TIMEOUT_S = 45

bootstrap, topic, group, strategy = sys.argv[1:5]
lock = threading.Lock()
failures = []
deliveries = []  # (member, partition, offset, committed[partition] when delivered)
committed = {p: 0 for p in range(PARTITIONS)}  # highest acknowledged commit per partition


def log(msg):
    print(f"confluent-{strategy}: {msg}", flush=True)


def fail(msg):
    log(f"FAIL: {msg}")
    failures.append(msg)


class Member:
    def __init__(self, name):
        self.name = name
        self.assignment = set()
        self.events = []  # ("assign"|"revoke", [partitions], time)
        self.commit = True
        self.stop = False
        self.uncommitted = set()  # processed but never committed (partition, offset)
        self.positions = {}  # partition -> next offset processed
        self.commit_errors = []
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.error = None

    def on_assign(self, c, parts):
        with lock:
            self.events.append(("assign", sorted(p.partition for p in parts), time.time()))
            if strategy == "cooperative-sticky":
                self.assignment |= {p.partition for p in parts}
            else:
                self.assignment = {p.partition for p in parts}

    def on_revoke(self, c, parts):
        with lock:
            self.events.append(("revoke", sorted(p.partition for p in parts), time.time()))
            self.assignment -= {p.partition for p in parts}

    def on_lost(self, c, parts):
        with lock:
            self.events.append(("lost", sorted(p.partition for p in parts), time.time()))
            self.assignment -= {p.partition for p in parts}

    def run(self):
        try:
            c = Consumer({
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "client.id": self.name,
                "partition.assignment.strategy": strategy,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 500,
                "topic.metadata.refresh.interval.ms": 2000,
            })
            c.subscribe([topic], on_assign=self.on_assign, on_revoke=self.on_revoke,
                        on_lost=self.on_lost)
            while not self.stop:
                msgs = c.consume(num_messages=100, timeout=0.1)
                batch = {}
                for m in msgs:
                    if m.error():
                        log(f"{self.name}: consume error {m.error()}")
                        continue
                    with lock:
                        deliveries.append((self.name, m.partition(), m.offset(),
                                           committed[m.partition()]))
                    batch[m.partition()] = m.offset() + 1
                    self.positions[m.partition()] = m.offset() + 1
                    if not self.commit:
                        self.uncommitted.add((m.partition(), m.offset()))
                if batch and self.commit:
                    offs = [TopicPartition(topic, p, o) for p, o in batch.items()]
                    try:
                        res = c.commit(offsets=offs, asynchronous=False)
                        with lock:
                            for tp in res:
                                if tp.error:
                                    self.commit_errors.append(str(tp.error))
                                else:
                                    committed[tp.partition] = max(committed[tp.partition], tp.offset)
                    except KafkaException as e:
                        self.commit_errors.append(str(e))
                        log(f"{self.name}: commit failed: {e}")
            c.close()
            with lock:
                self.events.append(("closed", [], time.time()))
        except Exception as e:  # noqa: BLE001
            self.error = repr(e)
            log(f"{self.name}: {e!r}")


def wait_for(what, cond, timeout=STEP_TIMEOUT_S):
    end = time.time() + timeout
    while time.time() < end:
        with lock:
            if cond():
                return True
        time.sleep(0.05)
    fail(f"timed out waiting for {what}")
    return False


def produce(n, start):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for part in range(PARTITIONS):
        for i in range(n):
            p.produce(topic, value=f"p{part}-{start + i}".encode(), partition=part)
    if p.flush(30) != 0:
        fail("producer did not flush")


def seen_up_to(members, parts, end):
    """Every partition in parts was processed up to `end` by one of members."""
    return all(any(m.positions.get(p, 0) >= end for m in members) for p in parts)


def assignments(members):
    return {m.name: sorted(m.assignment) for m in members}


members = [Member(f"m{i}") for i in range(3)]
a, b, leaver = members
# The first member alone owns everything; the others join while it still owns its partitions.
a.thread.start()
if wait_for("the first member owning all partitions", lambda: len(a.assignment) == PARTITIONS):
    produce(ZERO, 0)
    wait_for("the first member consumed and committed",
             lambda: all(committed[p] >= ZERO for p in range(PARTITIONS)))
with lock:
    a_joined = len(a.events)
b.thread.start()
leaver.thread.start()


def stable_three():
    sets = [m.assignment for m in members]
    return all(len(s) == 2 for s in sets) and len(set().union(*sets)) == PARTITIONS


ok = wait_for("three members with two partitions each", stable_three)
original = {m.name: set(m.assignment) for m in members}
log(f"stable: {assignments(members)}")
if strategy == "cooperative-sticky":
    # Incremental: the first member gives up only the partitions that move.
    for kind, parts, t in a.events[a_joined:]:
        if kind in ("revoke", "lost") and set(parts) & original[a.name]:
            fail(f"{a.name} had {parts} revoked ({kind}) while others joined, kept "
                 f"{sorted(original[a.name])}")
t_leave = None
if ok:
    produce(FIRST, ZERO)
    ok = wait_for("first batch consumed and committed",
                  lambda: all(committed[p] >= ZERO + FIRST for p in range(PARTITIONS)))
if ok:
    leaver.commit = False
    produce(SECOND, ZERO + FIRST)
    ok = wait_for("leaver processed its partitions",
                  lambda: seen_up_to([leaver], original[leaver.name], ZERO + FIRST + SECOND))
if ok:
    with lock:
        before_leave = {m.name: len(m.events) for m in (a, b)}
    t_leave = time.time()
    leaver.stop = True
    leaver.thread.join(30)

    def stable_two():
        sets = [a.assignment, b.assignment]
        return all(len(s) == 3 for s in sets) and len(set().union(*sets)) == PARTITIONS

    ok = wait_for("two members with three partitions each", stable_two)
    log(f"after leave: {assignments([a, b])} ({time.time() - t_leave:.2f}s)")
if ok:
    produce(THIRD, ZERO + FIRST + SECOND)
    total = ZERO + FIRST + SECOND + THIRD
    ok = wait_for("everything consumed and committed",
                  lambda: all(committed[p] >= total for p in range(PARTITIONS)))
with lock:
    final_assignment = assignments([a, b])
    # close() revokes everything: only callbacks before it count.
    before_close = {m.name: len(m.events) for m in (a, b)}
for m in (a, b):
    m.stop = True
for m in members:
    m.thread.join(30)
    if m.error:
        fail(f"{m.name}: {m.error}")

total = ZERO + FIRST + SECOND + THIRD
# ---- checks ----
seen = {}
redelivered = []
for name, p, o, c_at in deliveries:
    if (p, o) in seen:
        redelivered.append((p, o))
        if o < c_at:
            fail(f"committed record p{p}@{o} re-delivered to {name} (committed {c_at})")
    seen.setdefault((p, o), []).append(name)
missing = [(p, o) for p in range(PARTITIONS) for o in range(total) if (p, o) not in seen]
if missing:
    fail(f"{len(missing)} produced records never consumed, e.g. {missing[:5]}")
allowed = set(leaver.uncommitted)
not_allowed = sorted(set(redelivered) - allowed)
if not_allowed:
    fail(f"{len(not_allowed)} re-deliveries outside the leaver's uncommitted records, "
         f"e.g. {not_allowed[:5]}")
not_redelivered = sorted(allowed - set(redelivered))
if ok and not_redelivered:
    fail(f"{len(not_redelivered)} records the leaver did not commit were not re-delivered, "
         f"e.g. {not_redelivered[:5]}")
if strategy == "cooperative-sticky" and t_leave is not None:
    for m in (a, b):
        for kind, parts, t in m.events[:before_close[m.name]]:
            if kind in ("revoke", "lost") and set(parts) & original[m.name]:
                fail(f"{m.name} had {parts} revoked ({kind}) though they stayed with it")
        if not original[m.name] <= set(final_assignment[m.name]):
            fail(f"{m.name} lost its original partitions")
        new = [parts for kind, parts, t in m.events[before_leave[m.name]:before_close[m.name]]
               if kind == "assign"]
        if any(set(parts) & original[m.name] for parts in new):
            fail(f"{m.name}: assign after the leave re-listed kept partitions: {new}")
# Final committed offsets, read by a fresh consumer of the group.
chk = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
got = chk.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=15)
final = {tp.partition: tp.offset for tp in got}
chk.close()
if any(final[p] != total for p in range(PARTITIONS)):
    fail(f"committed offsets {final}, want {total} everywhere")
commit_errors = {m.name: m.commit_errors for m in members if m.commit_errors}
result = {
    "ok": not failures,
    "strategy": strategy,
    "original": {k: sorted(v) for k, v in original.items()},
    "final_assignment": final_assignment,
    "leaver_uncommitted": len(leaver.uncommitted),
    "redelivered": len(redelivered),
    "deliveries": len(deliveries),
    "commit_errors": commit_errors,
    "events": {m.name: [(k, p) for k, p, _ in m.events] for m in members},
    "committed": final,
    "failures": failures,
}
print("RESULT " + json.dumps(result), flush=True)
sys.exit(0 if not failures else 1)
