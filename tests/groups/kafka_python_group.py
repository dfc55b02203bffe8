#!/usr/bin/env python3
"""kafka-python 3.0.12 consumer group: two members, range assignment, commit, resume.

Usage: kafka_python_group.py BOOTSTRAP TOPIC GROUP

Run by crates/cli/tests/t71_group_clients.rs, which creates TOPIC with 4 partitions.

Two KafkaConsumer(group_id=GROUP) instances in threads (RangePartitionAssignor, auto-commit off,
auto_offset_reset=earliest) subscribe; each commits synchronously (commit()) after processing
every poll. Once each owns two partitions, 50 records per partition are produced; once
everything was consumed and committed both close. Then 5 more records per partition are produced
and a fresh member of the group resumes.
Checks (failures are listed in the RESULT line and make the exit status 1):
- each member owns two partitions, disjoint, covering all four;
- every produced record was consumed exactly once, by the member owning its partition;
- the committed offsets (KafkaConsumer.committed) are 50 on every partition after the close;
- the fresh member resumes at the committed offsets: exactly the 20 new records, nothing older.
Prints one `RESULT {json}` line.
"""
import json
import sys
import threading
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.coordinator.assignors.range import RangePartitionAssignor

PARTITIONS = 4
FIRST, MORE = 50, 5
STEP_TIMEOUT_S = 45

bootstrap, topic, group = sys.argv[1:4]
lock = threading.Lock()
failures = []


def log(msg):
    print(f"kafka-python-group: {msg}", flush=True)


def fail(msg):
    log(f"FAIL: {msg}")
    failures.append(msg)


class Member:
    def __init__(self, name):
        self.name = name
        self.assignment = set()
        self.got = []
        self.committed_to = {}
        self.stop = False
        self.error = None
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        try:
            c = KafkaConsumer(
                bootstrap_servers=bootstrap, group_id=group, client_id=self.name,
                partition_assignment_strategy=[RangePartitionAssignor],
                enable_auto_commit=False, auto_offset_reset="earliest",
                session_timeout_ms=6000, heartbeat_interval_ms=500,
                metadata_max_age_ms=2000)
            c.subscribe([topic])
            while not self.stop:
                polled = c.poll(timeout_ms=100)
                with lock:
                    self.assignment = {tp.partition for tp in c.assignment()}
                if not polled:
                    continue
                batch = []
                for tp, records in polled.items():
                    for r in records:
                        batch.append((tp.partition, r.offset))
                c.commit()
                with lock:
                    self.got.extend(batch)
                    for p, o in batch:
                        self.committed_to[p] = max(self.committed_to.get(p, 0), o + 1)
            c.close(autocommit=False)
        except Exception as e:  # noqa: BLE001
            self.error = repr(e)
            log(f"{self.name}: {e!r}")

    def close(self):
        self.stop = True
        self.thread.join(30)
        if self.error:
            fail(f"{self.name}: {self.error}")


def wait_for(what, cond, timeout=STEP_TIMEOUT_S):
    end = time.time() + timeout
    while time.time() < end:
        with lock:
            if cond():
                return True
        time.sleep(0.05)
    fail(f"timed out waiting for {what}")
    return False


def produce(start, n):
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for part in range(PARTITIONS):
        for i in range(start, start + n):
            p.send(topic, value=f"p{part}-{i}".encode(), partition=part)
    p.flush(30)
    p.close()


result = {}
a, b = Member("a"), Member("b")
ok = wait_for("two members with two partitions each", lambda: (
    len(a.assignment) == 2 and len(b.assignment) == 2
    and len(a.assignment | b.assignment) == PARTITIONS))
result["assignments"] = {"a": sorted(a.assignment), "b": sorted(b.assignment)}
if ok:
    produce(0, FIRST)
    wait_for("everything consumed and committed", lambda: all(
        any(m.committed_to.get(p, 0) >= FIRST for m in (a, b)) for p in range(PARTITIONS)))
owner = {p: m.name for m in (a, b) for p in m.assignment}
a.close()
b.close()
seen = {}
for m in (a, b):
    for p, o in m.got:
        seen[(p, o)] = seen.get((p, o), 0) + 1
        if owner.get(p) != m.name:
            fail(f"{m.name} consumed {p}@{o} owned by {owner.get(p)}")
dups = [k for k, n in seen.items() if n > 1]
if dups:
    fail(f"{len(dups)} records consumed twice, e.g. {dups[:5]}")
missing = [(p, o) for p in range(PARTITIONS) for o in range(FIRST) if (p, o) not in seen]
if missing:
    fail(f"{len(missing)} records never consumed, e.g. {missing[:5]}")
chk = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
committed = {p: chk.committed(TopicPartition(topic, p)) for p in range(PARTITIONS)}
chk.close(autocommit=False)
result["committed"] = committed
if any(committed[p] != FIRST for p in range(PARTITIONS)):
    fail(f"committed offsets {committed}, want {FIRST}")
produce(FIRST, MORE)
c = Member("fresh")
wait_for("the fresh member resumed", lambda: all(
    (p, o) in set(c.got) for p in range(PARTITIONS) for o in range(FIRST, FIRST + MORE)))
c.close()
old = [x for x in c.got if x[1] < FIRST]
if old:
    fail(f"fresh member re-consumed {len(old)} committed records, e.g. {old[:5]}")
result["fresh"] = len(c.got)
result["ok"] = not failures
result["failures"] = failures
print("RESULT " + json.dumps(result), flush=True)
sys.exit(0 if not failures else 1)
