#!/usr/bin/env python3
"""confluent-kafka (librdkafka) static membership (KIP-345): restart within and after the
session timeout.

Usage: confluent_static.py BOOTSTRAP TOPIC GROUP

Run by crates/cli/tests/t71_group_clients.rs, which creates TOPIC with 4 partitions.

Two consumers in threads, group.instance.id `static-a` and `static-b`, range assignment,
session.timeout.ms=6000. librdkafka logs the coordinator's JoinGroup answers
(`JoinGroup response: GenerationId N, ..., LeaderId X (me), ..., member metadata count M`,
debug=cgrp); those give the generation, leader and member list each member was told.
- Both join; the group is stable when each owns two partitions; records reach both.
- The leader closes (a static member sends no LeaveGroup) and a new consumer with the same
  instance id joins at once, well within the session timeout; records produced to every
  partition must reach their owners, and DescribeGroups (AdminClient) must show the group
  Stable with both instance ids, the other member under its old member id. Then the same for
  the other (follower) member.
- The follower closes again; once the coordinator expired its session, the leader owns all
  four partitions; a new follower then joins and the two share the partitions again.
Checks (failures are listed in the RESULT line and make the exit status 1):
- restart within the session timeout (leader and follower): the new member gets exactly the
  old assignment, its JoinGroup answer carries the same generation as before and does not tell
  it to lead a group whose member list it does not get (librdkafka uses JoinGroup v5: the answer
  must name the old leader id, KIP-814), and the other member saw no revoke or assign callback
  and no new JoinGroup answer;
- restart after the session timeout: the remaining member saw a revoke and an assign, and the
  generation grew;
- every produced record was consumed by the member owning its partition.
Prints one `RESULT {json}` line.
"""
import json
import logging
import re
import sys
import threading
import time

from confluent_kafka import Consumer, ConsumerGroupState, Producer
from confluent_kafka.admin import AdminClient

PARTITIONS = 4
SESSION_MS = 6000
STEP_TIMEOUT_S = 40
GEN_RE = re.compile(r"JoinGroup response: GenerationId (-?\d+), .*LeaderId (\S+)( \(me\))?, "
                    r".*member metadata count (\d+)")

bootstrap, topic, group = sys.argv[1:4]
lock = threading.Lock()
failures = []


def log(msg):
    print(f"confluent-static: {msg}", flush=True)


def fail(msg):
    log(f"FAIL: {msg}")
    failures.append(msg)


class Capture(logging.Handler):
    def __init__(self, member):
        super().__init__()
        self.member = member

    def emit(self, record):
        m = GEN_RE.search(record.getMessage())
        if m:
            with lock:
                self.member.generations.append(int(m.group(1)))
                self.member.leader = m.group(3) is not None
                self.member.answers.append((int(m.group(1)), self.member.leader, int(m.group(4))))


class Member:
    def __init__(self, instance):
        self.instance = instance
        self.assignment = set()
        self.events = []
        self.generations = []
        self.leader = False
        self.answers = []  # (generation, told it leads, members listed) per JoinGroup answer
        self.consumed = set()
        self.stop = False
        self.error = None
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def on_assign(self, c, parts):
        with lock:
            self.events.append(("assign", sorted(p.partition for p in parts)))
            self.assignment = {p.partition for p in parts}

    def on_revoke(self, c, parts):
        with lock:
            self.events.append(("revoke", sorted(p.partition for p in parts)))
            self.assignment = set()

    def run(self):
        try:
            logger = logging.getLogger(f"rdkafka-{self.instance}-{id(self)}")
            logger.propagate = False
            logger.setLevel(logging.DEBUG)
            logger.addHandler(Capture(self))
            c = Consumer({
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "group.instance.id": self.instance,
                "client.id": self.instance,
                "partition.assignment.strategy": "range",
                "enable.auto.commit": True,
                "auto.commit.interval.ms": 200,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": SESSION_MS,
                "heartbeat.interval.ms": 500,
                "debug": "cgrp",
                "logger": logger,
            })
            c.subscribe([topic], on_assign=self.on_assign, on_revoke=self.on_revoke)
            while not self.stop:
                for m in c.consume(num_messages=100, timeout=0.1):
                    if not m.error():
                        with lock:
                            self.consumed.add((m.partition(), m.value().decode()))
            c.close()
        except Exception as e:  # noqa: BLE001
            self.error = repr(e)
            log(f"{self.instance}: {e!r}")

    def close(self):
        self.stop = True
        self.thread.join(30)
        if self.error:
            fail(f"{self.instance}: {self.error}")


def wait_for(what, cond, timeout=STEP_TIMEOUT_S):
    end = time.time() + timeout
    while time.time() < end:
        with lock:
            if cond():
                return True
        time.sleep(0.05)
    fail(f"timed out waiting for {what}")
    return False


def shared(x, y):
    return (len(x.assignment) == 2 and len(y.assignment) == 2
            and len(x.assignment | y.assignment) == PARTITIONS)


admin = AdminClient({"bootstrap.servers": bootstrap})


def describe():
    d = admin.describe_consumer_groups([group])[group].result(timeout=15)
    return d.state, {m.group_instance_id: m.member_id for m in d.members}


def produce_and_check(owners, tag):
    """Produces one record per partition; each must reach the member that owns it."""
    p = Producer({"bootstrap.servers": bootstrap})
    for part in range(PARTITIONS):
        p.produce(topic, value=f"{tag}-{part}".encode(), partition=part)
    p.flush(30)
    return wait_for(f"{tag} records consumed by their owners", lambda: all(
        any(part in m.assignment and (part, f"{tag}-{part}") in m.consumed for m in owners)
        for part in range(PARTITIONS)))


def restart_within_timeout(x, y, result):
    """Closes x (no LeaveGroup) and starts its replacement at once; y must not notice."""
    with lock:
        gen = x.generations[-1] if x.generations else None
        y_events, y_gens = len(y.events), len(y.generations)
        x_assignment = set(x.assignment)
        was_leader = x.leader
    _, ids1 = describe()
    t0 = time.time()
    x.close()
    x2 = Member(x.instance)
    ok = wait_for(f"restarted {x.instance} assigned", lambda: x2.assignment)
    result[f"restart_{x.instance}"] = {"was_leader": was_leader, "seconds": round(time.time() - t0, 3),
                                       "generations": list(x2.generations)}
    if ok:
        ok = produce_and_check([x2, y], f"after-restart-{x.instance}")
    state, ids2 = describe()
    with lock:
        if x2.assignment != x_assignment:
            fail(f"restarted {x.instance} got {sorted(x2.assignment)}, had {sorted(x_assignment)}")
        if x2.generations != [gen]:
            fail(f"restarted {x.instance} (leader: {was_leader}): its JoinGroup answers carried "
                 f"generations {x2.generations}, want [{gen}]")
        for gen_, leads, count in x2.answers[:1]:
            if leads and count != 2:
                fail(f"restarted {x.instance} was told it leads a group of {count} members "
                     f"(a stable group ignores its assignment: the answer must name the old "
                     f"leader, or list every member with SkipAssignment, KIP-814)")
        if len(y.events) != y_events:
            fail(f"{y.instance} saw callbacks during {x.instance}'s restart: {y.events[y_events:]}")
        if len(y.generations) != y_gens:
            fail(f"{y.instance} rejoined during {x.instance}'s restart: {y.generations[y_gens:]}")
    if state != ConsumerGroupState.STABLE:
        fail(f"group state {state} after {x.instance}'s restart")
    if set(ids2) != set(ids1) or ids2.get(y.instance) != ids1.get(y.instance):
        fail(f"members after {x.instance}'s restart {ids2}, before {ids1}")
    if ids2.get(x.instance) == ids1.get(x.instance):
        fail(f"restarted {x.instance} kept its old member id")
    return ok, x2


a = Member("static-a")
b = Member("static-b")
result = {}
ok = wait_for("both static members with two partitions", lambda: shared(a, b))
if ok:
    ok = produce_and_check([a, b], "warmup")
if ok:
    with lock:
        gen1 = a.generations[-1] if a.generations else None
        # Restart the leader first (the harder case: it must not recompute the assignment),
        # then the other member.
        leader, other = (a, b) if a.leader else (b, a)
    log(f"stable: generation {gen1}, a={sorted(a.assignment)} b={sorted(b.assignment)}, "
        f"leader {leader.instance}")
    result["generation_before"] = gen1
    ok, leader = restart_within_timeout(leader, other, result)
if ok:
    ok, other = restart_within_timeout(other, leader, result)
if ok:
    # Now stay away longer than the session timeout.
    x, y = other, leader
    with lock:
        y_events = len(y.events)
    t1 = time.time()
    x.close()
    ok = wait_for(f"{y.instance} owning all partitions after {x.instance}'s session expired",
                  lambda: len(y.assignment) == PARTITIONS, timeout=SESSION_MS / 1000 + 30)
    result["expiry_rebalance_s"] = round(time.time() - t1, 3)
    if ok and time.time() - t1 < SESSION_MS / 1000 * 0.9:
        fail(f"{x.instance}'s partitions moved after {time.time() - t1:.1f}s, before its "
             f"session timeout")
    if ok:
        x3 = Member(x.instance)
        ok = wait_for(f"{x.instance} back after the timeout", lambda: shared(x3, y))
        if ok:
            ok = produce_and_check([x3, y], "after-expiry")
        with lock:
            kinds = [k for k, _ in y.events[y_events:]]
            result["events_after_expiry"] = y.events[y_events:]
            if "revoke" not in kinds or "assign" not in kinds:
                fail(f"{y.instance} saw no rebalance after the session timeout: "
                     f"{y.events[y_events:]}")
            gens = x3.generations + y.generations
            result["generation_after"] = max(gens) if gens else None
            if not gens or gen1 is None or max(gens) <= gen1:
                fail(f"generation did not grow after the session timeout: {gens}")
        x3.close()
    y.close()
else:
    a.close()
    b.close()
result["ok"] = not failures
result["failures"] = failures
print("RESULT " + json.dumps(result, default=str), flush=True)
sys.exit(0 if not failures else 1)
