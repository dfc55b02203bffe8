#!/usr/bin/env python3
"""Kafka transactions with confluent-kafka (librdkafka): transactional producers, read_committed
consumers, consume-transform-produce, zombie fencing, abandoned transactions and transaction
timeouts, and transactions through a broker's failure.

Usage: confluent_txn.py SUBCOMMAND --bootstrap BOOTSTRAP [--transactional-id ID] [options]

Run by crates/cli/tests/t75_transactions.rs, which creates the topics first. Every subcommand
prints one `RESULT {json}` line at the end ("ok" is false and "failures" lists each failed
check) and exits 1 if a check failed or a client call failed where it must succeed (the result
then names the call and the error). On a failure it also prints the last lines of librdkafka's
log of the transactional producers (debug context `eos`), which say what the broker answered.
Records are read back by consumers that assign every partition from the beginning (no group) and
stop on their own: once they have the expected number of records, or after 30 s, and then read on
for 2 s more to catch records that must not be there.

commit-abort --topics T1,T2 [--per-txn 10]
    One transactional producer: init_transactions; transaction A (10 records spread over every
    partition of both topics) committed, B (10 more) aborted, C (10 more) committed; each is
    flushed before it ends, so B's records are in the log.
    - while C is open, the read_committed end offset (the last stable offset, ListOffsets with
      isolation level) of each partition C wrote to is C's first offset there, and the
      read_uncommitted end offset (high watermark) is past C's records; after C's commit the two
      meet on every partition;
    - read_committed: exactly A's and C's 20 records, per partition in produce order, none twice,
      none of B's;
    - read_uncommitted: all 30, per partition in produce order, none twice.

send-offsets --input IN --output OUT --group G [--records 100] [--per-txn 10]
    Fills IN with plain records, then consume-transform-produce: a consumer (group G, manual
    commits, read_committed) and a transactional producer copy each batch of ~10 input records to
    the same partition of OUT (value prefixed `out-`) in one transaction, with
    send_offsets_to_transaction(consumer positions, consumer group metadata) before the end;
    every third transaction is aborted, after which the consumer seeks back to the group's
    committed offsets. IN and OUT must have the same number of partitions.
    - after each abort the group's committed offsets are those of the last committed transaction
      (the aborted transaction's offsets are discarded);
    - OUT read_committed holds exactly one copy of each input record, per partition in input
      order; read_uncommitted also holds every aborted copy (input + aborted records in all);
    - the group's committed offsets afterwards are IN's end offsets;
    - at least one transaction was aborted and one committed.

fencing --topic T [--per-partition 3]
    P1 (transactional id X) inits, begins, produces to every partition and flushes; P2 with the
    same id inits, which fences P1 and aborts its open transaction. P1 then produces again and
    commits; P2 produces and commits.
    - P1's commit fails with a fatal or fenced error (`_FENCED`, PRODUCER_FENCED or
      INVALID_PRODUCER_EPOCH; the result says which, and what P1's produce after the fence got);
    - none of P1's records produced after the fence is accepted by a partition;
    - read_committed: exactly P2's records; read_uncommitted: P1's first records, then P2's.

abort-on-timeout --topic T [--timeout-ms 3000]
    P1 (transaction.timeout.ms = timeout) begins, produces to every partition, flushes and then
    does nothing; P2 (another transactional id) then commits records to the same partitions.
    - a read_committed consumer gets past P1's abandoned records: it gets exactly P2's records
      and none of P1's, and not before P1's timeout has passed since P1 began (the last stable
      offset held P2's records back while P1's transaction was open);
    - P1's commit afterwards fails (the result says with what);
    - read_uncommitted: P1's records, then P2's.

abandoned --topic T [--per-partition 3]
    A child process (this program's `abandon-child`) with transactional id X
    (transaction.timeout.ms 60000) begins a transaction, produces to every partition, flushes and
    is SIGKILLed: no EndTxn.
    - while the transaction is abandoned, the last stable offset (AdminClient.list_offsets,
      READ_COMMITTED) of every partition is the abandoned transaction's first offset there, below
      the high watermark, and a read_committed consumer reading from the beginning gets nothing;
    - a new producer with id X calls init_transactions; soon after (the result says how soon;
      the test wants it well within the 60 s timeout) the last stable offsets reach the high
      watermarks;
    - the new producer commits records to every partition: the waiting read_committed consumer
      gets exactly those, none of the abandoned ones; read_committed from the beginning: exactly
      those; read_uncommitted: the abandoned records, then the new ones.

stream --topics T1,T2 [--duration 15] [--control DIR] [--max-seconds 45] [--watch]
    Commits transactions back to back for DURATION seconds: each has 2 records per partition of
    both topics; every fifth is aborted on purpose (after a flush). Retriable errors are retried;
    an abortable one aborts the transaction; a fatal one (or any other) replaces the producer
    with a new one of the same transactional id, whose init_transactions fences the old one, and
    the transaction's outcome is unknown. Prints `progress txns=N committed=C ...` lines. With
    --control, the test writes CONTROL/killed and CONTROL/restarted (epoch ms) when it kills and
    restarts a broker; the stream then goes on until at least 3 transactions were committed
    after the restart (at most MAX_SECONDS in all).
    - every transaction the producer saw committed is fully visible read_committed, every aborted
      one is invisible, every one of unknown outcome is all or nothing;
    - per partition, the visible records are exactly those of the visible transactions, in
      transaction order, none twice;
    - with a kill: transactions were committed after the kill and after the restart.
    With --watch, while the transactions run:
    - a read_committed consumer reads every partition from the beginning all along: it never gets
      a record of an aborted transaction, nor a record before its transaction's commit was
      requested (it only can once the producer has called commit_transaction), nor two different
      records at one offset, and what it got of each partition is a prefix of the final
      read_committed read;
    - the last stable offset of every partition is sampled every 250 ms (AdminClient.list_offsets
      with IsolationLevel.READ_COMMITTED, a new admin client after an error, as librdkafka's would
      go on sending a fenced leader epoch) and never goes below an earlier sample; each partition
      is sampled at least twice, and after the kill.

ctp-stream --input IN --output OUT --group G [--rate 100] [--per-txn 100] [--duration 15]
           [--control DIR] [--max-seconds 45]
    A feeder thread produces plain records `in-N` round-robin to IN (idempotent, acks=all) at
    RATE a second. A consumer of group G (read_committed, manual commits) and a transactional
    producer copy what the consumer gets (up to PER_TXN records, whatever arrived within 200 ms)
    to the same partition of OUT (value prefixed `out-`), with send_offsets_to_transaction, in
    one transaction each; every seventh is aborted on purpose. After an abort, an abortable
    error, a fatal one (the producer is replaced by a new one of the same transactional id; also
    when send_offsets_to_transaction has not returned within 6 s, as librdkafka can wait forever
    for a group coordinator it decommissioned) or a rebalance during a batch, the consumer seeks
    back to the group's committed offsets. Stops feeding as `stream` stops, then copies until
    the committed offsets reach IN's ends. Prints `progress` lines as `stream`; CONTROL/killed
    and CONTROL/restarted as there.
    - OUT read_committed holds exactly one copy of each record of IN, per partition in IN's
      order (IN read back holds exactly what was produced);
    - the group's committed offsets are IN's end offsets;
    - transactions were committed and aborted; with a kill, committed after it and after the
      restart.

eos --input IN --output OUT --group G --transactional-ids ID1,ID2,... [--rate 100]
    [--per-txn 50] [--abort-share 0.3] [--seed 1] [--control DIR] [--max-seconds 50]
    [--drain-seconds 60] [--read-seconds 30] [--stall-seconds 60]
    Exactly once through broker kills. A feeder produces `in-N` to IN as in `ctp-stream`; one
    worker per transactional id copies its share of IN's partitions (assigned, partition P to
    worker P mod WORKERS, starting at group G's committed offsets) as `ctp-stream` copies, but
    each record `in-N` goes to OUT's partition N mod |OUT| as `in-N/wW.T` (worker W's transaction
    T), so that every transaction spans several output partitions and every output partition
    interleaves both workers' transactions; a transaction is aborted on purpose, after a flush,
    with probability ABORT_SHARE (drawn from a random generator seeded with SEED and W). Prints
    `progress ... committed=C` lines (all workers). The test writes CONTROL/killed-K and
    CONTROL/restarted-K (epoch ms) around its K-th kill, and CONTROL/stop; then the feeder stops
    and the workers copy until their committed offsets reach IN's ends (within DRAIN_SECONDS;
    the reads back wait READ_SECONDS at most for the records they expect). Stops by itself after
    MAX_SECONDS without CONTROL/stop, and fails if no transaction commits for STALL_SECONDS
    (the failure says what each worker was doing).
    While it runs, a read_committed consumer reads every output partition from the beginning and
    the last stable offset of every output partition is sampled, as with `stream --watch`.
    1. no record of an aborted transaction is read_committed, neither by the concurrent consumer
       nor at the end (nor any record of no transaction); and the records of every transaction
       aborted after a flush are in the log (read_uncommitted), so this means something;
    2. every transaction is visible read_committed entirely or not at all across the output
       partitions: committed ones entirely, aborted ones not at all, those of unknown outcome
       (a fatal error replaced the producer) one or the other;
    3. OUT read_committed holds exactly one copy of each record of IN (the failure lists the
       missing and duplicated input records, with the transactions of their copies), and per
       output partition the copies of each input partition's records are in input order; the
       group's committed offsets end at IN's ends;
    4. the last stable offset of no output partition goes below an earlier sample; and the rest
       of `stream --watch`'s checks of the concurrent consumer (no record before its
       transaction's commit was requested, a prefix of the final read).
"""
import argparse
import collections
import concurrent.futures
import json
import logging
import os
import random
import subprocess
import sys
import threading
import time
import traceback

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

STEP_TIMEOUT_S = 30  # one transactional call: init, commit, abort, send_offsets, flush
READ_DEADLINE_S = 30  # a consumer reading back what was produced
GRACE_S = 2.0  # reading on after the expected count, for records that must not be there
FENCED = {"_FENCED", "PRODUCER_FENCED", "INVALID_PRODUCER_EPOCH"}
LOG_LINES = 40


class Stop(Exception):
    """A check failed in a way that makes the rest of the subcommand pointless."""


class _Tail(logging.Handler):
    """Keeps librdkafka's last log lines; a line repeating one of the last few is counted there
    instead (retry loops alternate between a handful of lines)."""

    def __init__(self, tail):
        super().__init__()
        self.tail = tail

    def emit(self, record):
        msg = record.getMessage()
        for entry in list(self.tail)[-4:]:
            if entry[0] == msg:
                entry[1] += 1
                return
        self.tail.append([msg, 1])


class Run:
    """Failures, result fields and librdkafka's log tail of one subcommand."""

    def __init__(self, command):
        self.command = command
        self.failures = []
        self.result = {"command": command}
        self.step = "start"
        self.log_tail = collections.deque(maxlen=LOG_LINES)
        self.logger = logging.getLogger("librdkafka")
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False
        self.logger.addHandler(_Tail(self.log_tail))
        self.clients = []
        self.client_errors = collections.Counter()

    def on_error(self, err):
        """error_cb of the transactional producers: client errors that are not fatal (fatal ones
        are raised by the calls, see CLIENT_ERRORS)."""
        self.log_tail.append([f"error_cb: {err.name()}: {err.str()} (fatal={err.fatal()})", 1])
        self.client_errors[err.name()] += 1

    def say(self, msg):
        print(f"{self.command}: {msg}", flush=True)

    def fail(self, msg):
        self.say(f"FAIL: {msg}")
        self.failures.append(msg)

    def call(self, what, fn, *args):
        """Calls a client method, naming the step for the report if it raises."""
        self.step = what
        return fn(*args)

    def finish(self):
        for c in self.clients:
            try:
                c.poll(0)  # hands over log lines still queued
            except Exception:  # noqa: BLE001 - a dead client has nothing more to say
                pass
        if self.client_errors:
            self.result["producer_errors"] = dict(self.client_errors)
        self.result["ok"] = not self.failures
        self.result["failures"] = self.failures
        print("RESULT " + json.dumps(self.result), flush=True)
        if self.failures:
            print(f"---- librdkafka log of the transactional producers (last {len(self.log_tail)} "
                  "lines) ----")
            for msg, n in self.log_tail:
                print(msg if n == 1 else f"{msg}  [x{n}]")
            print("----", flush=True)
            for f in self.failures:
                print(f"{self.command}: FAIL: {f}", file=sys.stderr, flush=True)
        sys.exit(1 if self.failures else 0)


def now_ms():
    return int(time.time() * 1000)


# What a client call raises on a client error. A fatal error is raised out of the call that
# serves the client's queue (poll, flush, the transactional calls); when a log line is handed to
# the Python logger in the same call, Python reports it as a SystemError caused by the
# KafkaException.
CLIENT_ERRORS = (KafkaException, SystemError)


def kafka_error(e):
    """The KafkaError an exception from a client call carries (directly or as its cause), or
    None."""
    while e is not None:
        if isinstance(e, KafkaException) and e.args and isinstance(e.args[0], KafkaError):
            return e.args[0]
        e = e.__cause__ or e.__context__
    return None


def describe(e):
    k = kafka_error(e)
    if k is None:
        return {"name": type(e).__name__, "message": str(e)}
    return {
        "name": k.name(),
        "code": k.code(),
        "message": k.str(),
        "fatal": k.fatal(),
        "retriable": k.retriable(),
        "abortable": k.txn_requires_abort(),
    }


def txn_producer(run, a, txn_id, name, extra=None):
    conf = {
        "bootstrap.servers": a.bootstrap,
        "transactional.id": txn_id,  # implies enable.idempotence and acks=all
        "client.id": name,
        "linger.ms": 5,
        "reconnect.backoff.max.ms": 1000,
        "debug": "eos",
        "logger": run.logger,
        "error_cb": run.on_error,
    }
    conf.update(extra or {})
    p = Producer(conf)
    run.clients.append(p)
    return p


def consumer(a, group, isolation, extra=None):
    conf = {
        "bootstrap.servers": a.bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": isolation,
        "reconnect.backoff.max.ms": 1000,
    }
    conf.update(extra or {})
    return Consumer(conf)


class Deliveries:
    """Delivery reports: value -> (topic, partition, offset), or value -> error name."""

    def __init__(self):
        self.ok = {}
        self.errors = {}

    def __call__(self, err, msg):
        v = msg.value().decode()
        if err is None:
            self.ok[v] = (msg.topic(), msg.partition(), msg.offset())
        else:
            self.errors[v] = err.name()


def partitions(a, topics):
    """Every (topic, partition) of `topics`, in order, from the brokers' metadata."""
    c = consumer(a, "txn-metadata", "read_uncommitted")
    deadline = time.time() + READ_DEADLINE_S
    try:
        while True:
            md = c.list_topics(timeout=10)
            out, missing = [], []
            for t in topics:
                tm = md.topics.get(t)
                if tm is None or tm.error is not None or not tm.partitions:
                    missing.append(t)
                else:
                    out += [(t, p) for p in sorted(tm.partitions)]
            if not missing:
                return out
            if time.time() > deadline:
                raise Stop(f"topics {missing} are not in the metadata after {READ_DEADLINE_S}s")
            time.sleep(0.2)
    finally:
        c.close()


def end_offsets(c, parts):
    """ListOffsets(latest) with the consumer's isolation level: the high watermark for
    read_uncommitted, the last stable offset for read_committed."""
    return {tp: c.get_watermark_offsets(TopicPartition(*tp), timeout=10, cached=False)[1]
            for tp in parts}


def read_back(run, a, topics, isolation, expect, label, deadline_s=READ_DEADLINE_S):
    """Reads every partition of `topics` from the beginning until `expect` records arrived (or the
    deadline), then GRACE_S more. Returns ({(topic, partition): [values in offset order]}, the
    time.time() the expected count was reached or None)."""
    c = consumer(a, f"txn-verify-{label}", isolation)
    parts = partitions(a, topics)
    c.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in parts])
    got = {tp: {} for tp in parts}
    count, reached, errors = 0, None, []
    deadline = time.time() + deadline_s
    while True:
        t = time.time()
        if (reached is None and t > deadline) or (reached is not None and t > reached + GRACE_S):
            break
        for m in c.consume(num_messages=1000, timeout=0.2):
            if m.error():
                if len(errors) < 5:
                    errors.append(str(m.error()))
                continue
            offsets = got.setdefault((m.topic(), m.partition()), {})
            if m.offset() not in offsets:
                count += 1
            offsets[m.offset()] = m.value().decode()
        if reached is None and count >= expect:
            reached = time.time()
    c.close()
    if errors:
        run.say(f"{label} consumer errors: {errors}")
    if reached is None:
        run.say(f"{label}: {count} records after {deadline_s}s, expected {expect}")
    return {tp: [v for _, v in sorted(offs.items())] for tp, offs in got.items()}, reached


def total(got):
    return sum(len(v) for v in got.values())


def compare(run, label, got, want):
    """Fails once per partition whose values (in offset order) differ from `want`'s."""
    same = True
    for tp in sorted(set(got) | set(want)):
        g, w = got.get(tp, []), want.get(tp, [])
        if g == w:
            continue
        same = False
        gs, ws = set(g), set(w)
        missing = [v for v in w if v not in gs]
        unexpected = [v for v in g if v not in ws]
        dups = sorted(v for v, n in collections.Counter(g).items() if n > 1)
        what = []
        if missing:
            what.append(f"{len(missing)} missing {missing[:6]}")
        if unexpected:
            what.append(f"{len(unexpected)} unexpected {unexpected[:6]}")
        if dups:
            what.append(f"{len(dups)} duplicated {dups[:6]}")
        if not what:
            what.append(f"out of order: got {g[:12]}, want {w[:12]}")
        run.fail(f"{label}: {tp[0]}/{tp[1]} has {len(g)} records, want {len(w)}: "
                 f"{'; '.join(what)}")
    return same


def produce_all(run, p, d, values, label):
    """Produces (topic, partition, value) triples and flushes; every one must be delivered."""
    run.step = f"produce {label}"
    for t, part, v in values:
        p.produce(t, value=v.encode(), partition=part, on_delivery=d)
    run.step = f"flush {label}"
    left = p.flush(STEP_TIMEOUT_S)
    if left:
        raise Stop(f"{label}: {left} records still undelivered after {STEP_TIMEOUT_S}s")
    failed = {v: d.errors[v] for _, _, v in values if v in d.errors}
    if failed:
        raise Stop(f"{label}: delivery failed: {dict(list(failed.items())[:6])}")


def spread(parts, label, count):
    """`count` records named LABEL-i, round-robin over `parts`: [(topic, partition, value)]."""
    return [(*parts[i % len(parts)], f"{label}-{i}") for i in range(count)]


def by_partition(values):
    out = collections.defaultdict(list)
    for t, part, v in values:
        out[(t, part)].append(v)
    return out


# ---- commit-abort ------------------------------------------------------------------------------

def cmd_commit_abort(run, a):
    topics = a.topics.split(",")
    parts = partitions(a, topics)
    if a.per_txn < len(parts):
        raise Stop(f"--per-txn {a.per_txn} cannot cover {len(parts)} partitions")
    run.result["partitions"] = len(parts)
    d = Deliveries()
    p = txn_producer(run, a, a.transactional_id or f"commit-abort-{topics[0]}", "txn-producer")
    run.call("init_transactions", p.init_transactions, STEP_TIMEOUT_S)
    rc = consumer(a, "txn-watermarks-rc", "read_committed")
    ru = consumer(a, "txn-watermarks-ru", "read_uncommitted")
    txns = {label: spread(parts, label, a.per_txn) for label in "ABC"}
    for label, commit in (("A", True), ("B", False), ("C", True)):
        run.call(f"begin_transaction {label}", p.begin_transaction)
        produce_all(run, p, d, txns[label], f"transaction {label}")
        if label == "C":
            first, last = {}, {}
            for _, _, v in txns["C"]:
                t, part, off = d.ok[v]
                first[(t, part)] = min(first.get((t, part), off), off)
                last[(t, part)] = max(last.get((t, part), off), off)
            run.step = "ListOffsets while C is open"
            lso, hw = end_offsets(rc, first), end_offsets(ru, first)
            run.result["open_c"] = {
                f"{t}/{part}": {"first": first[(t, part)], "lso": lso[(t, part)],
                                "high_watermark": hw[(t, part)]}
                for t, part in first
            }
            for tp in sorted(first):
                if lso[tp] != first[tp]:
                    run.fail(f"while C is open, the read_committed end offset of {tp[0]}/{tp[1]} "
                             f"is {lso[tp]}, want C's first offset there, {first[tp]}")
                if hw[tp] <= last[tp]:
                    run.fail(f"while C is open, the high watermark of {tp[0]}/{tp[1]} is "
                             f"{hw[tp]}, below C's delivered offset {last[tp]}")
        if commit:
            run.call(f"commit_transaction {label}", p.commit_transaction, STEP_TIMEOUT_S)
        else:
            run.call(f"abort_transaction {label}", p.abort_transaction, STEP_TIMEOUT_S)
        run.say(f"transaction {label} {'committed' if commit else 'aborted'}")
    # EndTxn answers before the markers are written: the last stable offset catches up after.
    run.step = "ListOffsets after C's commit"
    deadline = time.time() + 15
    while True:
        lso, hw = end_offsets(rc, parts), end_offsets(ru, parts)
        if lso == hw or time.time() > deadline:
            break
        time.sleep(0.1)
    if lso != hw:
        run.fail(f"15 s after the last commit the read_committed end offsets {lso} still differ "
                 f"from the high watermarks {hw}")
    rc.close()
    ru.close()

    want_rc = by_partition(txns["A"] + txns["C"])
    want_ru = by_partition(txns["A"] + txns["B"] + txns["C"])
    got, _ = read_back(run, a, topics, "read_committed", 2 * a.per_txn, "read_committed")
    run.result["read_committed"] = total(got)
    compare(run, "read_committed", got, want_rc)
    got, _ = read_back(run, a, topics, "read_uncommitted", 3 * a.per_txn, "read_uncommitted")
    run.result["read_uncommitted"] = total(got)
    compare(run, "read_uncommitted", got, want_ru)


# ---- send-offsets ------------------------------------------------------------------------------

def cmd_send_offsets(run, a):
    in_parts = partitions(a, [a.input])
    out_parts = partitions(a, [a.output])
    if len(in_parts) != len(out_parts):
        raise Stop(f"{a.input} has {len(in_parts)} partitions, {a.output} {len(out_parts)}")
    # The input: plain (non-transactional) records.
    fill = Producer({"bootstrap.servers": a.bootstrap, "enable.idempotence": True,
                     "linger.ms": 5})
    fd = Deliveries()
    inputs = [(a.input, i % len(in_parts), f"in-{i}") for i in range(a.records)]
    produce_all(run, fill, fd, inputs, "input")
    ends = {}
    for v, (_, part, off) in fd.ok.items():
        ends[part] = max(ends.get(part, 0), off + 1)
    run.result["input_ends"] = {str(k): v for k, v in sorted(ends.items())}

    c = consumer(a, a.group, "read_committed", {
        "client.id": "ctp-consumer",
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 1000,
    })
    c.subscribe([a.input])
    p = txn_producer(run, a, a.transactional_id or f"send-offsets-{a.group}", "ctp-producer")
    run.call("init_transactions", p.init_transactions, STEP_TIMEOUT_S)
    od = Deliveries()
    committed = {}  # partition -> offset committed by the last committed transaction
    n_txn = n_committed = n_aborted = aborted_records = 0
    deadline = time.time() + a.deadline
    while not all(committed.get(part, 0) >= end for part, end in ends.items()):
        if time.time() > deadline:
            raise Stop(f"after {a.deadline}s the committed transactions reached {committed}, "
                       f"want {ends}")
        batch = []
        fill_until = time.time() + 1.0
        while len(batch) < a.per_txn and time.time() < fill_until:
            for m in c.consume(num_messages=a.per_txn - len(batch), timeout=0.2):
                if m.error():
                    run.say(f"consumer: {m.error()}")
                    continue
                batch.append(m)
        if not batch:
            continue
        n_txn += 1
        abort = n_txn % 3 == 0
        run.call(f"begin_transaction {n_txn}", p.begin_transaction)
        run.step = f"produce in transaction {n_txn}"
        for m in batch:
            p.produce(a.output, value=b"out-" + m.value(), partition=m.partition(),
                      on_delivery=od)
        run.step = f"position in transaction {n_txn}"
        positions = [tp for tp in c.position(c.assignment()) if tp.offset >= 0]
        run.call(f"send_offsets_to_transaction {n_txn}", p.send_offsets_to_transaction,
                 positions, c.consumer_group_metadata(), STEP_TIMEOUT_S)
        if abort:
            run.step = f"flush before abort {n_txn}"
            left = p.flush(STEP_TIMEOUT_S)
            if left:
                raise Stop(f"transaction {n_txn}: {left} records undelivered before the abort")
            run.call(f"abort_transaction {n_txn}", p.abort_transaction, STEP_TIMEOUT_S)
            n_aborted += 1
            aborted_records += len(batch)
            # Rewind to what the group committed; the aborted offsets must not be in force.
            back = run.call(f"committed after abort {n_txn}", c.committed, c.assignment(),
                            STEP_TIMEOUT_S)
            now = {tp.partition: tp.offset for tp in back if tp.offset >= 0}
            if now != committed:
                raise Stop(f"after aborted transaction {n_txn} the group's committed offsets are "
                           f"{now}, want {committed} (those of the last committed transaction)")
            for tp in back:
                off = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
                run.call(f"seek after abort {n_txn}", c.seek,
                         TopicPartition(a.input, tp.partition, off))
        else:
            run.call(f"commit_transaction {n_txn}", p.commit_transaction, STEP_TIMEOUT_S)
            n_committed += 1
            committed.update({tp.partition: tp.offset for tp in positions})
    c.close()
    undelivered = {v: e for v, e in od.errors.items()}
    if undelivered:
        run.fail(f"output deliveries failed: {dict(list(undelivered.items())[:6])}")
    run.result.update({
        "transactions": n_txn,
        "committed_transactions": n_committed,
        "aborted_transactions": n_aborted,
        "aborted_records": aborted_records,
    })
    if n_aborted == 0 or n_committed == 0:
        run.fail(f"{n_committed} committed and {n_aborted} aborted transactions: both must occur")

    want = {(a.output, part): [f"out-{v}" for v in vals]
            for (_, part), vals in by_partition(inputs).items()}
    got, _ = read_back(run, a, [a.output], "read_committed", a.records, "output-read_committed")
    run.result["output_read_committed"] = total(got)
    compare(run, "output read_committed", got, want)
    got, _ = read_back(run, a, [a.output], "read_uncommitted", a.records + aborted_records,
                       "output-read_uncommitted")
    n = total(got)
    run.result["output_read_uncommitted"] = n
    known = {f"out-{v}" for _, _, v in inputs}
    foreign = [v for vals in got.values() for v in vals if v not in known]
    if n != a.records + aborted_records or foreign:
        run.fail(f"output read_uncommitted has {n} records, want {a.records} committed + "
                 f"{aborted_records} aborted; foreign values {foreign[:6]}")

    chk = consumer(a, a.group, "read_committed")
    final = run.call("committed offsets at the end", chk.committed,
                     [TopicPartition(a.input, part) for _, part in in_parts], STEP_TIMEOUT_S)
    chk.close()
    final = {tp.partition: tp.offset for tp in final}
    run.result["committed_offsets"] = {str(k): v for k, v in sorted(final.items())}
    if any(final.get(part) != end for part, end in ends.items()):
        run.fail(f"the group's committed offsets are {final}, want the input's ends {ends}")


# ---- fencing -----------------------------------------------------------------------------------

def cmd_fencing(run, a):
    parts = partitions(a, [a.topic])
    txn_id = a.transactional_id or f"fencing-{a.topic}"
    n = a.per_partition * len(parts)
    d1, d2 = Deliveries(), Deliveries()
    p1 = txn_producer(run, a, txn_id, "p1")
    run.call("p1 init_transactions", p1.init_transactions, STEP_TIMEOUT_S)
    run.call("p1 begin_transaction", p1.begin_transaction)
    before = spread(parts, "p1-before", n)
    produce_all(run, p1, d1, before, "p1 before the fence")

    p2 = txn_producer(run, a, txn_id, "p2")
    t = time.time()
    run.call("p2 init_transactions (fences p1)", p2.init_transactions, STEP_TIMEOUT_S)
    run.result["p2_init_ms"] = int((time.time() - t) * 1000)

    # The zombie carries on.
    after = spread(parts, "p1-after", n)
    zombie = {"produce_raised": None, "flush_raised": None}
    try:
        for tp_t, tp_p, v in after:
            p1.produce(tp_t, value=v.encode(), partition=tp_p, on_delivery=d1)
    except CLIENT_ERRORS as e:
        zombie["produce_raised"] = describe(e)
    try:
        p1.flush(10)
    except CLIENT_ERRORS as e:
        zombie["flush_raised"] = describe(e)
    accepted = [v for _, _, v in after if v in d1.ok]
    zombie["delivery_errors"] = sorted({d1.errors[v] for _, _, v in after if v in d1.errors})
    zombie["accepted"] = len(accepted)
    try:
        p1.commit_transaction(10)
        zombie["commit"] = {"name": "committed"}
        run.fail("the fenced producer's commit_transaction succeeded")
    except CLIENT_ERRORS as e:
        info = describe(e)
        info["fenced"] = bool(info.get("fatal")) or info["name"] in FENCED
        zombie["commit"] = info
        if not info["fenced"]:
            run.fail(f"the fenced producer's commit failed with {info['name']} "
                     f"(fatal={info.get('fatal')}), not a fatal fenced error")
    run.result["p1_after_fence"] = zombie
    run.say(f"p1 after the fence: {json.dumps(zombie)}")
    if accepted:
        run.fail(f"{len(accepted)} records of the fenced producer were accepted, e.g. "
                 f"{[(v, d1.ok[v]) for v in accepted[:4]]}")

    run.call("p2 begin_transaction", p2.begin_transaction)
    p2_values = spread(parts, "p2", n)
    produce_all(run, p2, d2, p2_values, "p2")
    run.call("p2 commit_transaction", p2.commit_transaction, STEP_TIMEOUT_S)

    got, _ = read_back(run, a, [a.topic], "read_committed", n, "read_committed")
    run.result["read_committed"] = total(got)
    compare(run, "read_committed", got, by_partition(p2_values))
    got, _ = read_back(run, a, [a.topic], "read_uncommitted", 2 * n, "read_uncommitted")
    run.result["read_uncommitted"] = total(got)
    compare(run, "read_uncommitted", got, by_partition(before + p2_values))


# ---- abort-on-timeout --------------------------------------------------------------------------

def cmd_abort_on_timeout(run, a):
    parts = partitions(a, [a.topic])
    base = a.transactional_id or f"timeout-{a.topic}"
    n = 3 * len(parts)
    d1, d2 = Deliveries(), Deliveries()
    # message.timeout.ms may not exceed transaction.timeout.ms.
    p1 = txn_producer(run, a, f"{base}-abandoned", "abandoned", {
        "transaction.timeout.ms": a.timeout_ms,
        "message.timeout.ms": a.timeout_ms,
    })
    p2 = txn_producer(run, a, f"{base}-second", "second")
    run.call("p1 init_transactions", p1.init_transactions, STEP_TIMEOUT_S)
    run.call("p2 init_transactions", p2.init_transactions, STEP_TIMEOUT_S)

    t0 = time.time()  # before P1's transaction starts at the coordinator
    run.call("p1 begin_transaction", p1.begin_transaction)
    abandoned = spread(parts, "abandoned", n)
    produce_all(run, p1, d1, abandoned, "p1 (abandoned)")
    run.call("p2 begin_transaction", p2.begin_transaction)
    second = spread(parts, "second", n)
    produce_all(run, p2, d2, second, "p2")
    run.call("p2 commit_transaction", p2.commit_transaction, STEP_TIMEOUT_S)
    committed_ms = int((time.time() - t0) * 1000)
    run.result["timeout_ms"] = a.timeout_ms
    run.result["p2_committed_after_ms"] = committed_ms
    # Whether P2 committed before P1 could have timed out, i.e. the consumer below had to wait.
    run.result["held_back_checked"] = committed_ms < a.timeout_ms

    got, reached = read_back(run, a, [a.topic], "read_committed", n, "read_committed",
                             deadline_s=READ_DEADLINE_S + a.timeout_ms / 1000)
    run.result["read_committed"] = total(got)
    visible_ms = int((reached - t0) * 1000) if reached is not None else None
    run.result["second_visible_after_ms"] = visible_ms
    compare(run, "read_committed", got, by_partition(second))
    if visible_ms is not None and visible_ms < a.timeout_ms:
        run.fail(f"P2's records were visible read_committed {visible_ms} ms after P1 began, "
                 f"before P1's transaction timeout of {a.timeout_ms} ms: the last stable offset "
                 "did not hold at P1's open transaction")

    try:
        p1.commit_transaction(10)
        run.result["p1_commit"] = {"name": "committed"}
        run.fail("the timed-out producer's commit_transaction succeeded")
    except CLIENT_ERRORS as e:
        run.result["p1_commit"] = describe(e)
    run.say(f"p1 commit after the timeout: {json.dumps(run.result['p1_commit'])}")

    got, _ = read_back(run, a, [a.topic], "read_uncommitted", 2 * n, "read_uncommitted")
    run.result["read_uncommitted"] = total(got)
    compare(run, "read_uncommitted", got, by_partition(abandoned + second))


# ---- abandoned ---------------------------------------------------------------------------------

ABANDONED_TIMEOUT_MS = 60000  # the abandoned transaction's transaction.timeout.ms


def cmd_abandon_child(run, a):
    """The abandoned producer (run in a child process by `abandoned`): begins a transaction,
    produces and flushes, prints `READY {value: [topic, partition, offset]}` and waits to be
    killed."""
    parts = partitions(a, [a.topic])
    d = Deliveries()
    p = txn_producer(run, a, a.transactional_id, "abandoned", {
        "transaction.timeout.ms": ABANDONED_TIMEOUT_MS,
    })
    run.call("init_transactions", p.init_transactions, STEP_TIMEOUT_S)
    run.call("begin_transaction", p.begin_transaction)
    produce_all(run, p, d, spread(parts, "abandoned", a.per_partition * len(parts)), "abandoned")
    print("READY " + json.dumps(d.ok), flush=True)
    time.sleep(3600)


def list_offsets(admin, parts, isolation):
    """ListOffsets(latest) of `parts` with an isolation level: {(topic, partition): offset}."""
    futures = admin.list_offsets({TopicPartition(t, p): OffsetSpec.latest() for t, p in parts},
                                 isolation_level=isolation, request_timeout=10)
    return {(tp.topic, tp.partition): f.result().offset for tp, f in futures.items()}


def cmd_abandoned(run, a):
    parts = partitions(a, [a.topic])
    txn_id = a.transactional_id or f"abandoned-{a.topic}"
    n = a.per_partition * len(parts)
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    run.result["transaction_timeout_ms"] = ABANDONED_TIMEOUT_MS

    run.step = "the abandoned producer"
    child = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "abandon-child", "--bootstrap", a.bootstrap,
         "--topic", a.topic, "--transactional-id", txn_id, "--per-partition",
         str(a.per_partition)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ready, lines = None, []
    deadline = time.time() + 2 * STEP_TIMEOUT_S
    try:
        for line in child.stdout:
            lines.append(line.rstrip())
            if line.startswith("READY "):
                ready = json.loads(line[len("READY "):])
                break
            if time.time() > deadline:
                break
    finally:
        child.kill()  # SIGKILL: no EndTxn, no goodbye
        child.wait()
    if ready is None:
        raise Stop("the abandoned producer did not get its records delivered: "
                   + " | ".join(lines[-12:]))
    abandoned = [(t, part, v) for v, (t, part, _) in sorted(ready.items(),
                                                            key=lambda kv: kv[1][2])]
    first = {}
    for t, part, off in ready.values():
        first[(t, part)] = min(first.get((t, part), off), off)
    run.say(f"the abandoned producer was killed with {len(ready)} records in its open transaction")

    # While nobody ends it, the open transaction holds the last stable offset.
    run.step = "ListOffsets while the transaction is abandoned"
    lso = list_offsets(admin, parts, IsolationLevel.READ_COMMITTED)
    hw = list_offsets(admin, parts, IsolationLevel.READ_UNCOMMITTED)
    run.result["held"] = {f"{t}/{part}": {"first": first.get((t, part)), "lso": lso[(t, part)],
                                          "high_watermark": hw[(t, part)]} for t, part in parts}
    for tp, off in sorted(first.items()):
        if lso[tp] != off or hw[tp] <= off:
            run.fail(f"with the transaction abandoned, {tp[0]}/{tp[1]} has last stable offset "
                     f"{lso[tp]} and high watermark {hw[tp]}; want the LSO at the abandoned "
                     f"transaction's first offset {off}, below the high watermark")

    # A read_committed consumer waiting at the open transaction, from the beginning.
    rc = consumer(a, "txn-abandoned-rc", "read_committed")
    rc.assign([TopicPartition(t, part, OFFSET_BEGINNING) for t, part in parts])
    early = [m.value().decode() for m in rc.consume(num_messages=1000, timeout=1.0)
             if not m.error()]
    if early:
        run.fail(f"read_committed got {len(early)} records while the transaction was open: "
                 f"{early[:6]}")

    # The same transactional id again: InitProducerId aborts the abandoned transaction.
    d2 = Deliveries()
    p2 = txn_producer(run, a, txn_id, "successor")
    t_init = time.time()
    run.call("successor init_transactions", p2.init_transactions, STEP_TIMEOUT_S)
    run.result["init_ms"] = int((time.time() - t_init) * 1000)
    run.step = "ListOffsets after the successor's init"
    released = None
    while time.time() - t_init < 2 * STEP_TIMEOUT_S:
        lso = list_offsets(admin, parts, IsolationLevel.READ_COMMITTED)
        hw = list_offsets(admin, parts, IsolationLevel.READ_UNCOMMITTED)
        if all(lso[tp] == hw[tp] and hw[tp] > first[tp] for tp in first):
            released = int((time.time() - t_init) * 1000)
            break
        time.sleep(0.05)
    run.result["lso_released_after_init_ms"] = released
    run.result["after_init"] = {f"{t}/{part}": {"lso": lso[(t, part)],
                                                "high_watermark": hw[(t, part)]}
                                for t, part in parts}
    if released is None:
        run.fail(f"after the successor's init_transactions the last stable offsets {lso} did "
                 f"not reach the high watermarks {hw}")

    # Nothing of the abandoned transaction reaches the waiting consumer; the successor's
    # committed records do.
    run.call("successor begin_transaction", p2.begin_transaction)
    second = spread(parts, "successor", n)
    produce_all(run, p2, d2, second, "successor")
    run.call("successor commit_transaction", p2.commit_transaction, STEP_TIMEOUT_S)
    got = []
    deadline = time.time() + READ_DEADLINE_S
    reached = None
    while time.time() < (deadline if reached is None else reached + GRACE_S):
        got += [m.value().decode() for m in rc.consume(num_messages=1000, timeout=0.2)
                if not m.error()]
        if reached is None and len(got) >= n:
            reached = time.time()
    rc.close()
    run.result["waiting_consumer"] = len(got)
    run.result["waiting_consumer_done_after_init_ms"] = (int((reached - t_init) * 1000)
                                                         if reached else None)
    if sorted(got) != sorted(v for _, _, v in second):
        stray = [v for v in got if v.startswith("abandoned")]
        run.fail(f"the waiting read_committed consumer got {len(got)} records, want the "
                 f"successor's {n}; of the abandoned transaction: {stray[:6]}")

    got, _ = read_back(run, a, [a.topic], "read_committed", n, "read_committed")
    run.result["read_committed"] = total(got)
    compare(run, "read_committed", got, by_partition(second))
    got, _ = read_back(run, a, [a.topic], "read_uncommitted", 2 * n, "read_uncommitted")
    run.result["read_uncommitted"] = total(got)
    compare(run, "read_uncommitted", got, by_partition(abandoned + second))


# ---- stream ------------------------------------------------------------------------------------

def marker(a, name):
    """The epoch ms the test wrote to CONTROL/NAME, or None (no --control, or not yet written)."""
    if not a.control:
        return None
    path = os.path.join(a.control, name)
    if not os.path.exists(path):
        return None
    text = open(path).read().strip()
    return int(text) if text else None


def init_txn_producer(run, a, txn_id, label, generation, errors):
    """A producer of `txn_id` (client id LABEL-N, N counted up in `generation[0]`), initialised:
    retriable errors of init_transactions are retried and a fatal one makes a new producer, for
    up to 2 * STEP_TIMEOUT_S; `errors` counts them."""
    deadline = time.time() + 2 * STEP_TIMEOUT_S
    while True:
        generation[0] += 1
        p = txn_producer(run, a, txn_id, f"{label}-{generation[0]}")
        while True:
            try:
                run.call(f"init_transactions ({label} producer {generation[0]})",
                         p.init_transactions, STEP_TIMEOUT_S)
                return p
            except CLIENT_ERRORS as e:
                k = kafka_error(e)
                if k is None or time.time() > deadline:
                    raise
                errors[f"init:{k.name()}"] += 1
                if k.fatal():
                    break  # a new producer
                if not k.retriable():
                    raise


class Watcher(threading.Thread):
    """A read_committed consumer that reads every partition from the beginning while the stream
    runs. Keeps, per partition, offset -> value and when the value was first received, and every
    offset that was received again with a different value."""

    def __init__(self, a, parts):
        super().__init__(daemon=True)
        self.a, self.parts = a, parts
        self.seen = {tp: {} for tp in parts}  # offset -> (value, time.time() first received)
        self.conflicts = []
        self.errors = collections.Counter()
        self.halt = threading.Event()
        self.failed = None

    def run(self):
        try:
            c = consumer(self.a, "txn-watch", "read_committed", {"client.id": "watcher"})
            c.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in self.parts])
            while not self.halt.is_set():
                for m in c.consume(num_messages=1000, timeout=0.2):
                    at = time.time()
                    if m.error():
                        self.errors[m.error().name()] += 1
                        continue
                    v = m.value().decode()
                    offsets = self.seen.setdefault((m.topic(), m.partition()), {})
                    old = offsets.get(m.offset())
                    if old is None:
                        offsets[m.offset()] = (v, at)
                    elif old[0] != v and len(self.conflicts) < 20:
                        self.conflicts.append(f"{m.topic()}/{m.partition()}@{m.offset()}: "
                                              f"{old[0]} then {v}")
            c.close()
        except Exception as e:  # noqa: BLE001 - reported as a failure of the run
            self.failed = f"{type(e).__name__}: {e}"

    def stop(self):
        self.halt.set()
        self.join(30)

    def records(self):
        return sum(len(v) for v in self.seen.values())


class LsoSampler(threading.Thread):
    """Samples the last stable offset of every partition (AdminClient.list_offsets, latest,
    IsolationLevel.READ_COMMITTED) every 250 ms while the stream runs; keeps each partition's
    samples in order and every sample below an earlier one of its partition."""

    def __init__(self, a, parts):
        super().__init__(daemon=True)
        self.a, self.parts = a, parts
        self.samples = {tp: [] for tp in parts}  # [(time.time() of the answer, offset)]
        self.regressions = []
        self.errors = collections.Counter()
        self.invalid = []  # (partition, epoch ms) of answers without an offset
        self.halt = threading.Event()
        self.failed = None

    def run(self):
        try:
            want = {TopicPartition(t, p): OffsetSpec.latest() for t, p in self.parts}
            admin = None
            while not self.halt.is_set():
                if admin is None:
                    admin = AdminClient({"bootstrap.servers": self.a.bootstrap,
                                         "reconnect.backoff.max.ms": 1000})
                futures = admin.list_offsets(want, isolation_level=IsolationLevel.READ_COMMITTED,
                                             request_timeout=5)
                for tp, f in futures.items():
                    try:
                        off = f.result().offset
                    except CLIENT_ERRORS as e:
                        k = kafka_error(e)
                        self.errors[k.name() if k else type(e).__name__] += 1
                        # The admin client does not refresh its metadata on FENCED_LEADER_EPOCH
                        # and would keep sending the stale leader epoch: a new one asks afresh.
                        admin = None
                        continue
                    at = time.time()
                    if off < 0:
                        # librdkafka leaves a partition at OFFSET_INVALID, without an error, when
                        # the request to its leader as a whole failed.
                        self.errors[f"offset {off}"] += 1
                        self.invalid.append((f"{tp.topic}/{tp.partition}", int(at * 1000)))
                        admin = None
                        continue
                    key = (tp.topic, tp.partition)
                    mine = self.samples[key]
                    top = max((o for _, o in mine), default=None)
                    if top is not None and off < top:
                        self.regressions.append({"partition": f"{key[0]}/{key[1]}", "from": top,
                                                 "to": off, "at_ms": int(at * 1000)})
                    mine.append((at, off))
                self.halt.wait(0.25)
        except Exception as e:  # noqa: BLE001 - reported as a failure of the run
            self.failed = f"{type(e).__name__}: {e}"

    def stop(self):
        self.halt.set()
        self.join(30)


def txn_name(t):
    return t.get("label") or f"#{t['n']}"


def check_watch(run, txn_of, got, watcher, sampler, kill_ms, restart_ms):
    """The checks of a concurrent read_committed consumer and last stable offset sampler against
    the transactions' outcomes (`txn_of(value)`: the transaction that produced a value, or None)
    and the final read_committed read (`got`: partition -> values in offset order)."""
    aborted, early, foreign = [], [], []
    for tp, offsets in watcher.seen.items():
        for off, (v, at) in sorted(offsets.items()):
            t = txn_of(v)
            where = f"{v} at {tp[0]}/{tp[1]}@{off}"
            if t is None:
                foreign.append(where)
            elif t["outcome"] == "aborted":
                aborted.append(where + (f" ({txn_name(t)} aborted on {t['reason']})"
                                        if t["reason"] else f" ({txn_name(t)} aborted)"))
            elif t["end_at"] is None or at < t["end_at"]:
                early.append(f"{where}, {int(((t['end_at'] or time.time()) - at) * 1000)} ms "
                             f"before {txn_name(t)}'s commit was requested")
        seq = [v for _, (v, _) in sorted(offsets.items())]
        final = got.get(tp, [])
        if seq != final[:len(seq)]:
            i = next(i for i, (x, y) in enumerate(zip(seq + [None], final + [None])) if x != y)
            then = seq[i] if i < len(seq) else None
            now = final[i] if i < len(final) else None
            run.fail(f"{tp[0]}/{tp[1]}: the concurrent read_committed consumer's records are not "
                     f"a prefix of the final read's: record {i} was {then} then, {now} at the end")
    if aborted:
        run.fail(f"the concurrent read_committed consumer got {len(aborted)} records of aborted "
                 f"transactions: {aborted[:6]}")
    if early:
        run.fail(f"the concurrent read_committed consumer got {len(early)} records before their "
                 f"transaction's commit was requested: {early[:6]}")
    if foreign:
        run.fail(f"the concurrent read_committed consumer got records of no transaction: "
                 f"{foreign[:6]}")
    if watcher.conflicts:
        run.fail(f"the concurrent read_committed consumer got different records at the same "
                 f"offset: {watcher.conflicts[:6]}")
    if watcher.failed:
        run.fail(f"the concurrent read_committed consumer failed: {watcher.failed}")
    if watcher.records() == 0:
        run.fail("the concurrent read_committed consumer got no record")
    if sampler.regressions:
        run.fail(f"the last stable offset went back {len(sampler.regressions)} times: "
                 f"{sampler.regressions[:6]}")
    if sampler.failed:
        run.fail(f"the last stable offset sampler failed: {sampler.failed}")
    def after(ms):
        return {f"{t}/{p}": sum(1 for at, _ in s if ms is not None and at * 1000 > ms)
                for (t, p), s in sampler.samples.items()}

    sampled = sum(1 for s in sampler.samples.values() if len(s) >= 2)
    if sampled < len(sampler.samples):
        run.fail(f"the last stable offset was sampled twice or more on only {sampled} of "
                 f"{len(sampler.samples)} partitions")
    unsampled = sorted(tp for tp, k in after(kill_ms).items() if k == 0)
    if kill_ms is not None and unsampled:
        run.fail(f"the last stable offset of {unsampled} was never sampled after the kill")
    run.result["watch"] = {
        "records": watcher.records(),
        "aborted_seen": len(aborted),
        "seen_before_commit": len(early),
        "consumer_errors": dict(watcher.errors),
        "lso_samples": sum(len(s) for s in sampler.samples.values()),
        "lso_regressions": len(sampler.regressions),
        "lso_errors": dict(sampler.errors.most_common(6)),
        "lso_final": {f"{t}/{p}": (s[-1][1] if s else None)
                      for (t, p), s in sampler.samples.items()},
        "lso_samples_after_kill": after(kill_ms),
        "lso_samples_after_restart": after(restart_ms),
        "lso_invalid": (sampler.invalid if len(sampler.invalid) <= 6
                        else sampler.invalid[:3] + sampler.invalid[-3:]),
    }


def cmd_stream(run, a):
    topics = a.topics.split(",")
    parts = partitions(a, topics)
    txn_id = a.transactional_id or f"stream-{topics[0]}"
    errors = collections.Counter()
    generation = [0]

    def fresh_producer():
        return init_txn_producer(run, a, txn_id, "stream", generation, errors)

    def end(p, commit):
        """Commits or aborts, retrying retriable errors; an abortable error turns a commit into an
        abort. Returns the outcome; raises on a fatal error."""
        deadline = time.time() + 2 * STEP_TIMEOUT_S
        reason = None
        while True:
            try:
                if commit:
                    p.commit_transaction(STEP_TIMEOUT_S)
                    return "committed", reason
                p.abort_transaction(STEP_TIMEOUT_S)
                return "aborted", reason
            except CLIENT_ERRORS as e:
                k = kafka_error(e)
                if k is None or k.fatal():
                    raise
                errors[f"{'commit' if commit else 'abort'}:{k.name()}"] += 1
                if commit and k.txn_requires_abort():
                    commit, reason = False, k.name()
                    continue
                if k.retriable() and time.time() < deadline:
                    continue
                raise

    def produce(p, t, part, v):
        while True:
            try:
                p.produce(t, value=v.encode(), partition=part)
                return
            except BufferError:
                p.poll(0.05)

    watcher = sampler = None
    if a.watch:
        watcher, sampler = Watcher(a, parts), LsoSampler(a, parts)
        watcher.start()
        sampler.start()
    p = fresh_producer()
    # {"n", "values": [(topic, partition, value)], "outcome", "reason", "at", "end_at"}
    txns = []
    started = time.time()
    kill_ms = restart_ms = None
    last_progress = 0.0
    n = 0

    def count(outcome, after=None):
        return sum(1 for t in txns
                   if t["outcome"] == outcome and (after is None or t["at"] > after))

    while True:
        if kill_ms is None:
            kill_ms = marker(a, "killed")
            if kill_ms is not None:
                run.say(f"a broker was killed at {kill_ms} ({count('committed')} committed)")
        if restart_ms is None and kill_ms is not None:
            restart_ms = marker(a, "restarted")
            if restart_ms is not None:
                run.say(f"it was restarted at {restart_ms} ({count('committed')} committed)")
        elapsed = time.time() - started
        if elapsed >= a.max_seconds:
            break
        if elapsed >= a.duration and (
                kill_ms is None or (restart_ms is not None
                                    and count("committed", restart_ms) >= 3)):
            break
        n += 1
        on_purpose = n % 5 == 0
        txn = {"n": n, "values": [], "outcome": None, "reason": None, "at": None,
               "end_at": None}
        txns.append(txn)
        try:
            run.step = f"transaction {n}"
            p.begin_transaction()
            for i in range(a.per_partition * len(parts)):
                t, part = parts[i % len(parts)]
                v = f"s{n}-{i}"
                produce(p, t, part, v)
                txn["values"].append((t, part, v))
            if on_purpose:
                p.flush(STEP_TIMEOUT_S)  # the aborted records reach the log
            txn["end_at"] = time.time()
            txn["outcome"], txn["reason"] = end(p, commit=not on_purpose)
            p.poll(0)
        except CLIENT_ERRORS as e:
            k = kafka_error(e)
            txn["outcome"], txn["reason"] = "unknown", k.name() if k else str(e)
            errors[f"fatal:{txn['reason']}"] += 1
            run.say(f"transaction {n}: {json.dumps(describe(e))}; replacing the producer")
            p = fresh_producer()
        txn["at"] = now_ms()
        if time.time() - last_progress >= 0.5:
            last_progress = time.time()
            print(f"progress txns={n} committed={count('committed')} "
                  f"aborted={count('aborted')} unknown={count('unknown')} "
                  f"producers={generation[0]}", flush=True)

    if watcher is not None:
        watcher.stop()
        sampler.stop()
    committed_records = sum(len(t["values"]) for t in txns if t["outcome"] == "committed")
    got, _ = read_back(run, a, topics, "read_committed", committed_records, "read_committed")
    if watcher is not None:
        by_n = {t["n"]: t for t in txns}
        check_watch(run,
                    lambda v: by_n.get(int(v[1:].split("-")[0])) if v.startswith("s") else None,
                    got, watcher, sampler, kill_ms, restart_ms)
    visible = collections.Counter(v for vals in got.values() for v in vals)
    bad = {"committed": [], "aborted": [], "unknown": []}
    for t in txns:
        k = sum(1 for _, _, v in t["values"] if v in visible)
        t["visible"] = k
        m = len(t["values"])
        if (t["outcome"] == "committed" and k != m) or (t["outcome"] == "aborted" and k) or (
                t["outcome"] == "unknown" and k not in (0, m)):
            bad[t["outcome"]].append(f"#{t['n']} {k}/{m}" + (f" ({t['reason']})"
                                                             if t["reason"] else ""))
    partial = bad["unknown"]
    if bad["committed"]:
        run.fail(f"{len(bad['committed'])} committed transactions are not fully visible "
                 f"read_committed (visible/records): {bad['committed'][:8]}")
    if bad["aborted"]:
        run.fail(f"{len(bad['aborted'])} aborted transactions have records visible "
                 f"read_committed (visible/records): {bad['aborted'][:8]}")
    if partial:
        run.fail(f"{len(partial)} transactions of unknown outcome are partly visible "
                 f"read_committed (visible/records): {partial[:8]}")
    want = by_partition([v for t in txns
                         if t["outcome"] == "committed" or (
                             t["outcome"] == "unknown" and t["values"]
                             and t["visible"] == len(t["values"]))
                         for v in t["values"]])
    compare(run, "read_committed", got, want)

    after_kill = [t for t in txns if kill_ms is not None and t["outcome"] == "committed"
                  and t["at"] > kill_ms]
    run.result.update({
        "transactional_id": txn_id,
        "transactions": len(txns),
        "committed": count("committed"),
        "aborted_on_purpose": sum(1 for t in txns
                                  if t["outcome"] == "aborted" and t["reason"] is None),
        "aborted_on_error": sum(1 for t in txns
                                if t["outcome"] == "aborted" and t["reason"] is not None),
        "unknown": count("unknown"),
        "unknown_visible": sum(1 for t in txns if t["outcome"] == "unknown"
                               and t["values"] and t["visible"] == len(t["values"])),
        "partial": len(partial),
        "producers": generation[0],
        "committed_records": committed_records,
        "read_committed": total(got),
        "kill_ms": kill_ms,
        "restart_ms": restart_ms,
        "committed_after_kill": len(after_kill),
        "committed_after_restart": (count("committed", restart_ms)
                                    if restart_ms is not None else 0),
        "committed_while_down": sum(1 for t in after_kill
                                    if restart_ms is None or t["at"] <= restart_ms),
        "first_commit_after_kill_ms": (min(t["at"] for t in after_kill) - kill_ms
                                       if after_kill else None),
        "errors": dict(errors.most_common(10)),
        "seconds": round(time.time() - started, 1),
    })
    if count("committed") == 0:
        run.fail("no transaction was committed")
    if kill_ms is not None:
        if not after_kill:
            run.fail("no transaction was committed after the kill")
        elif restart_ms is None or count("committed", restart_ms) == 0:
            run.fail("no transaction was committed after the restart")


# ---- ctp-stream --------------------------------------------------------------------------------

class Feeder(threading.Thread):
    """Produces plain records `in-N` (idempotent, acks=all) round-robin over IN's partitions,
    about `rate` a second, until stopped; then flushes."""

    def __init__(self, a, parts, rate):
        super().__init__(daemon=True)
        self.a, self.parts, self.rate = a, parts, rate
        self.produced = 0
        self.left = None
        self.deliveries = Deliveries()
        self.halt = threading.Event()
        self.failed = None

    def run(self):
        try:
            p = Producer({"bootstrap.servers": self.a.bootstrap, "enable.idempotence": True,
                          "linger.ms": 5, "reconnect.backoff.max.ms": 1000})
            started = time.time()
            while not self.halt.is_set():
                due = int((time.time() - started) * self.rate)
                while self.produced < due:
                    t, part = self.parts[self.produced % len(self.parts)]
                    p.produce(t, value=f"in-{self.produced}".encode(), partition=part,
                              on_delivery=self.deliveries)
                    self.produced += 1
                p.poll(0.02)
            self.left = p.flush(STEP_TIMEOUT_S)
        except Exception as e:  # noqa: BLE001 - reported as a failure of the run
            self.failed = f"{type(e).__name__}: {e}"


def stop_feeder(feeder):
    """Stops the feeder and returns IN's end offsets ({partition: end}) from its deliveries."""
    feeder.halt.set()
    feeder.join(STEP_TIMEOUT_S + 5)
    if feeder.failed or feeder.left or feeder.deliveries.errors:
        raise Stop(f"the input feeder failed ({feeder.failed}), left {feeder.left} "
                   f"undelivered, delivery errors "
                   f"{dict(list(feeder.deliveries.errors.items())[:6])}")
    ends = {}
    for _, part, off in feeder.deliveries.ok.values():
        ends[part] = max(ends.get(part, 0), off + 1)
    return ends


# How long a copier waits for send_offsets_to_transaction before it gives the call up. librdkafka
# (2.16) sends TxnOffsetCommit to the group coordinator it has cached; when that broker left the
# metadata while it was down, librdkafka decommissions it but keeps it cached, and the call then
# waits, past its own timeout, for a state change of that broker that never comes. Given up on,
# the transaction's outcome is unknown and the producer is replaced (its successor's
# init_transactions fences it and aborts the transaction), as after a fatal error.
SEND_OFFSETS_HANG_S = 6


class Hung(Exception):
    """A client call that did not return in time."""


class Copier:
    """Consume-transform-produce by one consumer `c` (read_committed, manual commits: its group's
    offsets move only with the transactions) and one transactional producer. Each step copies
    what the consumer got (up to PER_TXN records, whatever arrived within 200 ms) in one
    transaction: `route(message, label)` gives each copy's (topic, partition, value), LABEL
    naming the transaction (NAME.N), and `abort(n)` says whether transaction N is aborted on
    purpose, after a flush so that its records are in the log; send_offsets_to_transaction
    carries the consumer's positions. After an abort, an abortable error, a fatal one (the
    producer is replaced by a new one of the same transactional id, whose init_transactions
    fences the old one; the transaction's outcome is then unknown) or a rebalance during a batch,
    the consumer seeks back to the group's committed offsets. A send_offsets_to_transaction that
    has not returned after SEND_OFFSETS_HANG_S is given up on as a fatal error is (see there)."""

    def __init__(self, run, a, c, txn_id, name, route, abort):
        self.run, self.a, self.c = run, a, c
        self.txn_id, self.name = txn_id, name
        self.route, self.abort = route, abort
        self.errors = collections.Counter()
        self.generation = [0]
        self.rebalances = 0
        self.discarded = 0
        # {"n", "label", "values": [(topic, partition, value)], "outcome", "reason", "at" (epoch
        # ms it ended), "end_at" (time.time() its commit was requested)}
        self.txns = []
        self.committed = {}  # input partition -> the group's committed offset, as far as known
        self.p = None
        self.doing = "start"  # what the copier is doing, for the progress lines
        self.hung = []  # producers given up on inside send_offsets_to_transaction (kept alive)

    def call(self, what, fn, *args):
        self.doing = what
        return self.run.call(what, fn, *args)

    def on_rebalance(self, _consumer, _parts):
        self.rebalances += 1

    def count(self, outcome, after=None):
        return sum(1 for t in self.txns
                   if t["outcome"] == outcome and (after is None or t["at"] > after))

    def start(self):
        self.doing = "init_transactions"
        self.p = init_txn_producer(self.run, self.a, self.txn_id, self.name, self.generation,
                                   self.errors)

    def retrying(self, what, fn, *args):
        """Calls fn, retrying retriable errors for up to 2 * STEP_TIMEOUT_S; other errors are
        raised."""
        deadline = time.time() + 2 * STEP_TIMEOUT_S
        while True:
            try:
                return self.call(what, fn, *args)
            except CLIENT_ERRORS as e:
                k = kafka_error(e)
                if k is None or k.fatal() or k.txn_requires_abort() or not k.retriable() \
                        or time.time() > deadline:
                    raise
                self.errors[f"{what.split()[0]}:{k.name()}"] += 1

    def send_offsets(self, label, positions):
        """send_offsets_to_transaction (retrying retriable errors), in a thread of its own: raises
        Hung if it has not returned within SEND_OFFSETS_HANG_S."""
        box = {}

        def call():
            try:
                self.retrying(f"send_offsets_to_transaction {label}",
                              self.p.send_offsets_to_transaction, positions,
                              self.c.consumer_group_metadata(), STEP_TIMEOUT_S)
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                box["error"] = e

        th = threading.Thread(target=call, daemon=True)
        th.start()
        th.join(SEND_OFFSETS_HANG_S)
        if th.is_alive():
            self.hung.append((self.p, th))
            raise Hung(f"send_offsets_to_transaction {label} hung for {SEND_OFFSETS_HANG_S}s")
        if "error" in box:
            raise box["error"]

    def rewind(self):
        """Seeks every assigned partition back to the group's committed offset (what the last
        committed transaction sent)."""
        deadline = time.time() + 2 * STEP_TIMEOUT_S
        while True:
            try:
                back = self.call("rewind", self.c.committed, self.c.assignment(), STEP_TIMEOUT_S)
                for tp in back:
                    off = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
                    self.c.seek(TopicPartition(tp.topic, tp.partition, off))
                self.committed = {tp.partition: max(tp.offset, 0) for tp in back}
                return
            except CLIENT_ERRORS as e:
                k = kafka_error(e)
                self.errors[f"rewind:{k.name() if k else type(e).__name__}"] += 1
                if time.time() > deadline:
                    raise
                time.sleep(0.2)  # not poll: a record it returned would be lost to the copy

    def step(self):
        """Copies one batch, if the consumer gets one."""
        c, p = self.c, self.p
        seen_rebalances = self.rebalances
        self.doing = "consume"
        batch = []
        fill_until = time.time() + 0.2
        while len(batch) < self.a.per_txn and time.time() < fill_until:
            for m in c.consume(num_messages=self.a.per_txn - len(batch), timeout=0.05):
                if m.error():
                    self.errors[f"consume:{m.error().name()}"] += 1
                    continue
                batch.append(m)
        if self.rebalances != seen_rebalances:
            # The assignment changed under the batch: start again from the committed offsets.
            self.discarded += len(batch)
            self.rewind()
            return
        if not batch:
            return
        n = len(self.txns) + 1
        label = f"{self.name}.{n}"
        txn = {"n": n, "label": label, "values": [], "outcome": None, "reason": None,
               "at": None, "end_at": None}
        self.txns.append(txn)
        positions = []
        try:
            self.call(f"begin_transaction {label}", p.begin_transaction)
            for m in batch:
                t, part, v = self.route(m, label)
                while True:
                    try:
                        p.produce(t, value=v.encode(), partition=part)
                        break
                    except BufferError:
                        p.poll(0.05)
                txn["values"].append((t, part, v))
            positions = [tp for tp in c.position(c.assignment()) if tp.offset >= 0]
            try:
                self.send_offsets(label, positions)
                commit, reason = not self.abort(n), None
            except CLIENT_ERRORS as e:
                k = kafka_error(e)
                if k is None or not k.txn_requires_abort():
                    raise
                self.errors[f"send_offsets:{k.name()}"] += 1
                commit, reason = False, k.name()
            if not commit:
                self.call(f"flush before abort {label}", p.flush, STEP_TIMEOUT_S)
            if commit:
                try:
                    txn["end_at"] = time.time()
                    self.retrying(f"commit_transaction {label}", p.commit_transaction,
                                  STEP_TIMEOUT_S)
                    txn["outcome"] = "committed"
                except CLIENT_ERRORS as e:
                    k = kafka_error(e)
                    if k is None or not k.txn_requires_abort():
                        raise
                    self.errors[f"commit:{k.name()}"] += 1
                    commit, reason = False, k.name()
            if not commit:
                self.retrying(f"abort_transaction {label}", p.abort_transaction, STEP_TIMEOUT_S)
                txn["outcome"], txn["reason"] = "aborted", reason
        except CLIENT_ERRORS + (Hung,) as e:
            k = kafka_error(e)
            txn["outcome"], txn["reason"] = "unknown", k.name() if k else str(e)
            self.errors["send_offsets:hung" if isinstance(e, Hung)
                        else f"fatal:{txn['reason']}"] += 1
            self.run.say(f"transaction {label}: {json.dumps(describe(e))}; replacing the producer")
            self.doing = "init_transactions"
            self.p = init_txn_producer(self.run, self.a, self.txn_id, self.name, self.generation,
                                       self.errors)
        txn["at"] = now_ms()
        if txn["outcome"] == "committed":
            self.committed.update({tp.partition: tp.offset for tp in positions})
        else:
            self.rewind()


def check_group_offsets(run, a, in_parts, ends):
    """Fails unless group G's committed offsets are IN's end offsets; returns them."""
    chk = consumer(a, a.group, "read_committed")
    final = run.call("committed offsets at the end", chk.committed,
                     [TopicPartition(a.input, part) for _, part in in_parts], STEP_TIMEOUT_S)
    chk.close()
    final = {tp.partition: tp.offset for tp in final}
    if any(final.get(part) != end for part, end in ends.items()):
        run.fail(f"the group's committed offsets are {final}, want the input's ends {ends}")
    return final


def cmd_ctp_stream(run, a):
    """Consume-transform-produce while a broker is killed: see the header."""
    in_parts = partitions(a, [a.input])
    out_parts = partitions(a, [a.output])
    if len(in_parts) != len(out_parts):
        raise Stop(f"{a.input} has {len(in_parts)} partitions, {a.output} {len(out_parts)}")
    txn_id = a.transactional_id or f"ctp-{a.group}"

    feeder = Feeder(a, in_parts, a.rate)
    feeder.start()
    c = consumer(a, a.group, "read_committed", {
        "client.id": "ctp-consumer",
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 1000,
    })
    copier = Copier(run, a, c, txn_id, "ctp",
                    lambda m, _label: (a.output, m.partition(), "out-" + m.value().decode()),
                    lambda n: n % 7 == 0)
    c.subscribe([a.input], on_assign=copier.on_rebalance, on_revoke=copier.on_rebalance,
                on_lost=copier.on_rebalance)
    copier.start()
    count = copier.count
    started = time.time()
    kill_ms = restart_ms = None
    ends = None  # the input's end offsets once the feeder stopped
    drain_deadline = None
    last_progress = 0.0

    while True:
        if kill_ms is None:
            kill_ms = marker(a, "killed")
        if restart_ms is None and kill_ms is not None:
            restart_ms = marker(a, "restarted")
        elapsed = time.time() - started
        if ends is None and (elapsed >= a.max_seconds or (elapsed >= a.duration and (
                kill_ms is None or (restart_ms is not None
                                    and count("committed", restart_ms) >= 3)))):
            ends = stop_feeder(feeder)
            drain_deadline = time.time() + 2 * STEP_TIMEOUT_S
            run.say(f"input stopped at {feeder.produced} records, ends {ends}")
        if ends is not None:
            if all(copier.committed.get(part, 0) >= end for part, end in ends.items()):
                break
            if time.time() > drain_deadline:
                raise Stop(f"{2 * STEP_TIMEOUT_S}s after the input stopped the committed "
                           f"transactions reached {copier.committed}, want {ends}")
        if time.time() - last_progress >= 0.5:
            last_progress = time.time()
            print(f"progress txns={len(copier.txns)} committed={count('committed')} "
                  f"aborted={count('aborted')} unknown={count('unknown')} "
                  f"producers={copier.generation[0]} rebalances={copier.rebalances}", flush=True)
        copier.step()
    c.close()

    inputs, _ = read_back(run, a, [a.input], "read_uncommitted", sum(ends.values()), "input")
    if total(inputs) != feeder.produced:
        run.fail(f"the input holds {total(inputs)} records, {feeder.produced} were produced")
    want = {(a.output, part): [f"out-{v}" for v in vals] for (_, part), vals in inputs.items()}
    got, _ = read_back(run, a, [a.output], "read_committed", total(inputs),
                       "output-read_committed")
    compare(run, "output read_committed", got, want)
    final = check_group_offsets(run, a, in_parts, ends)

    txns = copier.txns
    after_kill = [t for t in txns if kill_ms is not None and t["outcome"] == "committed"
                  and t["at"] > kill_ms]
    run.result.update({
        "transactional_id": txn_id,
        "input": total(inputs),
        "output_read_committed": total(got),
        "input_ends": {str(k): v for k, v in sorted(ends.items())},
        "committed_offsets": {str(k): v for k, v in sorted(final.items())},
        "transactions": len(txns),
        "committed": count("committed"),
        "aborted_on_purpose": sum(1 for t in txns
                                  if t["outcome"] == "aborted" and t["reason"] is None),
        "aborted_on_error": sum(1 for t in txns
                                if t["outcome"] == "aborted" and t["reason"] is not None),
        "unknown": count("unknown"),
        "producers": copier.generation[0],
        "send_offsets_hung": len(copier.hung),
        "rebalances": copier.rebalances,
        "discarded_batch_records": copier.discarded,
        "kill_ms": kill_ms,
        "restart_ms": restart_ms,
        "committed_after_kill": len(after_kill),
        "committed_while_down": sum(1 for t in after_kill
                                    if restart_ms is None or t["at"] <= restart_ms),
        "committed_after_restart": (count("committed", restart_ms)
                                    if restart_ms is not None else 0),
        "first_commit_after_kill_ms": (min(t["at"] for t in after_kill) - kill_ms
                                       if after_kill else None),
        "errors": dict(copier.errors.most_common(10)),
        "seconds": round(time.time() - started, 1),
    })
    if count("committed") == 0:
        run.fail("no transaction was committed")
    if count("aborted") == 0:
        run.fail("no transaction was aborted")
    if kill_ms is not None:
        if not after_kill:
            run.fail("no transaction was committed after the kill")
        elif restart_ms is None or count("committed", restart_ms) == 0:
            run.fail("no transaction was committed after the restart")


# ---- eos ---------------------------------------------------------------------------------------

class CopierThread(threading.Thread):
    """Runs a Copier over its assigned input partitions until halted, or, once `ends` is set,
    until the group's committed offsets of its partitions reach them."""

    def __init__(self, copier, parts):
        super().__init__(daemon=True)
        self.copier, self.parts = copier, parts
        self.ends = None
        self.halt = threading.Event()
        self.drained = False
        self.failed = None

    def run(self):
        cp = self.copier
        try:
            cp.start()
            while not self.halt.is_set():
                ends = self.ends
                if ends is not None and all(cp.committed.get(part, 0) >= ends.get(part, 0)
                                            for part in self.parts):
                    self.drained = True
                    return
                cp.step()
        except Exception as e:  # noqa: BLE001 - reported as a failure of the run
            self.failed = f"{cp.run.step} raised {json.dumps(describe(e))}"
            traceback.print_exc(file=sys.stdout)


def cmd_eos(run, a):
    """Exactly once through broker kills: see the header."""
    in_parts = partitions(a, [a.input])
    out_parts = partitions(a, [a.output])
    txn_ids = a.transactional_ids.split(",")
    workers = len(txn_ids)
    if len(in_parts) < workers or len(out_parts) < 2:
        raise Stop(f"{len(in_parts)} input partitions for {workers} workers, {len(out_parts)} "
                   "output partitions: want a partition per worker and two outputs or more")

    def route(m, label):
        v = m.value().decode()
        t, part = out_parts[int(v.split("-")[1]) % len(out_parts)]
        return t, part, f"{v}/{label}"

    feeder = Feeder(a, in_parts, a.rate)
    watcher, sampler = Watcher(a, out_parts), LsoSampler(a, out_parts)
    threads = []
    for w, txn_id in enumerate(txn_ids):
        mine = [part for _, part in in_parts if part % workers == w]
        c = consumer(a, a.group, "read_committed", {"client.id": f"eos-consumer-{w}"})
        c.assign([TopicPartition(a.input, part) for part in mine])  # at the committed offsets
        rng = random.Random(f"{a.seed}/{w}")
        copier = Copier(run, a, c, txn_id, f"w{w}", route,
                        lambda _n, rng=rng: rng.random() < a.abort_share)
        threads.append(CopierThread(copier, mine))
    for th in [feeder, watcher, sampler] + threads:
        th.start()
    run.say(f"{workers} workers ({', '.join(txn_ids)}), seed {a.seed}, abort share "
            f"{a.abort_share}")

    def count(outcome, after=None):
        return sum(th.copier.count(outcome, after) for th in threads)

    def failed_worker():
        for th in threads:
            if th.failed:
                raise Stop(f"worker {th.copier.name} ({th.copier.txn_id}) failed: {th.failed}")

    def stalled(last):
        """Raises Stop when no transaction has committed for STALL_SECONDS; returns (count, when)
        of the last commit."""
        n = count("committed")
        if n != last[0]:
            return n, time.time()
        if time.time() - last[1] > a.stall_seconds:
            raise Stop(f"no transaction committed for {a.stall_seconds}s ({n} before), the "
                       "workers: " + "; ".join(
                           f"{th.copier.name} at {th.copier.doing}, last transactions "
                           f"{[(t['label'], t['outcome']) for t in th.copier.txns[-3:]]}, errors "
                           f"{dict(th.copier.errors)}" for th in threads))
        return last

    started = time.time()
    kills = []  # [kill ms, restart ms or None]
    last_progress = 0.0
    last_commit = (0, started)
    while marker(a, "stop") is None and time.time() - started < a.max_seconds:
        failed_worker()
        last_commit = stalled(last_commit)
        k = len(kills) + 1
        if kills and kills[-1][1] is None:
            kills[-1][1] = marker(a, f"restarted-{k - 1}")
        elif marker(a, f"killed-{k}") is not None:
            kills.append([marker(a, f"killed-{k}"), None])
        if time.time() - last_progress >= 0.5:
            last_progress = time.time()
            print(f"progress txns={sum(len(th.copier.txns) for th in threads)} "
                  f"committed={count('committed')} aborted={count('aborted')} "
                  f"unknown={count('unknown')} "
                  f"producers={sum(th.copier.generation[0] for th in threads)} "
                  + " ".join(f"{th.copier.name}[{th.copier.count('committed')} committed; "
                             f"{th.copier.doing}]" for th in threads), flush=True)
        time.sleep(0.05)
    if kills and kills[-1][1] is None:
        kills[-1][1] = marker(a, f"restarted-{len(kills)}")
    ends = stop_feeder(feeder)
    run.say(f"input stopped at {feeder.produced} records, ends {ends}")
    for th in threads:
        th.ends = ends
    deadline = time.time() + a.drain_seconds
    for th in threads:
        th.join(max(0.0, deadline - time.time()))
        failed_worker()
        if not th.drained:
            th.halt.set()
            raise Stop(f"{a.drain_seconds}s after the input stopped worker {th.copier.name}'s "
                       f"committed offsets were {th.copier.committed}, want {ends} (it was at "
                       f"{th.copier.doing}; its last transactions "
                       f"{[(t['label'], t['outcome']) for t in th.copier.txns[-3:]]})")
        th.copier.c.close()
    watcher.stop()
    sampler.stop()

    txns = [t for th in threads for t in th.copier.txns]
    by_label = {t["label"]: t for t in txns}

    def txn_of(v):
        return by_label.get(v.rsplit("/", 1)[-1]) if "/" in v else None

    # The input, the output read_committed and the output read_uncommitted, read at once.
    on_purpose = [t for t in txns if t["outcome"] == "aborted" and t["reason"] is None]
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        reads = [pool.submit(read_back, run, a, [topic], isolation, expect, label,
                             a.read_seconds)
                 for topic, isolation, expect, label in (
                     (a.input, "read_uncommitted", feeder.produced, "input"),
                     (a.output, "read_committed", feeder.produced, "output-read_committed"),
                     (a.output, "read_uncommitted",
                      feeder.produced + sum(len(t["values"]) for t in on_purpose),
                      "output-read_uncommitted"))]
        (inputs, _), (got, _), (logged, _) = [f.result() for f in reads]
    if total(inputs) != feeder.produced:
        run.fail(f"the input holds {total(inputs)} records, {feeder.produced} were produced")

    # 1. No aborted record is seen read_committed: neither at the end nor by the consumer that
    # read all along (check_watch, with 4., below).
    seen_aborted, foreign = [], []
    for (t, part), vals in sorted(got.items()):
        for v in vals:
            txn = txn_of(v)
            if txn is None:
                foreign.append(f"{v} in {t}/{part}")
            elif txn["outcome"] == "aborted":
                seen_aborted.append(f"{v} in {t}/{part} ({txn['label']} aborted"
                                    f"{' on ' + txn['reason'] if txn['reason'] else ''})")
    if seen_aborted:
        run.fail(f"read_committed returns {len(seen_aborted)} records of aborted transactions: "
                 f"{seen_aborted[:10]}")
    if foreign:
        run.fail(f"read_committed returns {len(foreign)} records of no transaction: "
                 f"{foreign[:10]}")
    # Aborted records really are in the log (else 1. proves nothing).
    in_log = {v for vals in logged.values() for v in vals}
    missing_aborted = [v for t in on_purpose for _, _, v in t["values"] if v not in in_log]
    if missing_aborted:
        run.fail(f"{len(missing_aborted)} records of transactions aborted after a flush are not "
                 f"in the log read_uncommitted: {missing_aborted[:10]}")

    # 2. Every transaction is visible entirely or not at all, across the output partitions;
    # committed ones entirely, aborted ones not at all.
    visible = {v for vals in got.values() for v in vals}
    bad = []
    for t in txns:
        shown = [x for x in t["values"] if x[2] in visible]
        k, m = len(shown), len(t["values"])
        if (t["outcome"] == "committed" and k != m) or (t["outcome"] == "aborted" and k) or (
                t["outcome"] == "unknown" and k not in (0, m)):
            hidden = collections.Counter(f"{x[0]}/{x[1]}" for x in t["values"]
                                         if x[2] not in visible)
            bad.append(f"{t['label']} ({t['outcome']}{', ' + t['reason'] if t['reason'] else ''}"
                       f"): {k}/{m} visible, hidden by partition {dict(hidden)}")
    if bad:
        run.fail(f"{len(bad)} transactions are not visible entirely or not at all "
                 f"read_committed: {bad[:10]}")

    # 3. Exactly one copy of each input record, and per output partition the copies of each
    # input partition's records in input order.
    copies = collections.defaultdict(list)
    for (t, part), vals in got.items():
        for v in vals:
            copies[v.rsplit("/", 1)[0]].append(f"{t}/{part} {v.rsplit('/', 1)[-1]}")
    want = [v for vals in inputs.values() for v in vals]
    missing = [v for v in want if v not in copies]
    dups = [f"{v}: {copies[v]}" for v in want if len(copies.get(v, [])) > 1]
    unknown_input = sorted(set(copies) - set(want))
    if missing:
        run.fail(f"{len(missing)} input records have no copy in the output: {missing[:10]}")
    if dups:
        run.fail(f"{len(dups)} input records have more than one copy in the output "
                 f"(partition, transaction): {dups[:10]}")
    if unknown_input:
        run.fail(f"the output holds copies of records not in the input: {unknown_input[:10]}")
    position = {v: (part, i) for (_, part), vals in inputs.items() for i, v in enumerate(vals)}
    for (t, part), vals in sorted(got.items()):
        last = {}
        for v in vals:
            src = position.get(v.rsplit("/", 1)[0])
            if src is None:
                continue
            if src[1] < last.get(src[0], (-1, None))[0]:
                run.fail(f"{t}/{part}: {v} comes after {last[src[0]][1]}, against the order of "
                         f"{a.input}/{src[0]}")
                break
            last[src[0]] = (src[1], v)

    # 4. (and the concurrent read_committed consumer's side of 1.)
    check_watch(run, txn_of, got, watcher, sampler, kills[0][0] if kills else None,
                kills[-1][1] if kills else None)
    final = check_group_offsets(run, a, in_parts, ends)

    def committed_between(lo, hi):
        return sum(1 for t in txns if t["outcome"] == "committed" and lo < t["at"]
                   and (hi is None or t["at"] <= hi))

    run.result.update({
        "transactional_ids": txn_ids,
        "seed": a.seed,
        "input": total(inputs),
        "output_read_committed": total(got),
        "output_read_uncommitted": total(logged),
        "input_ends": {str(k): v for k, v in sorted(ends.items())},
        "committed_offsets": {str(k): v for k, v in sorted(final.items())},
        "transactions": len(txns),
        "committed": count("committed"),
        "aborted_on_purpose": len(on_purpose),
        "aborted_records_in_log": sum(len(t["values"]) for t in on_purpose),
        "aborted_on_error": count("aborted") - len(on_purpose),
        "unknown": count("unknown"),
        "unknown_visible": sum(1 for t in txns if t["outcome"] == "unknown"
                               and t["values"] and all(x[2] in visible for x in t["values"])),
        "partial": len(bad),
        "duplicated": len(dups),
        "missing": len(missing),
        "producers": sum(th.copier.generation[0] for th in threads),
        "send_offsets_hung": sum(len(th.copier.hung) for th in threads),
        "kills": [{"kill_ms": k, "restart_ms": r,
                   "committed_while_down": committed_between(k, r),
                   "first_commit_after_kill_ms": next(
                       (t["at"] - k for t in sorted(txns, key=lambda t: t["at"])
                        if t["outcome"] == "committed" and t["at"] > k), None)}
                  for k, r in kills],
        "committed_after_last_restart": (committed_between(kills[-1][1], None)
                                         if kills and kills[-1][1] else None),
        "errors": dict(sum((th.copier.errors for th in threads), collections.Counter())
                       .most_common(10)),
        "seconds": round(time.time() - started, 1),
    })
    if count("committed") == 0 or not on_purpose:
        run.fail(f"{count('committed')} transactions committed and {len(on_purpose)} aborted on "
                 "purpose: both must occur")


COMMANDS = {
    "commit-abort": cmd_commit_abort,
    "send-offsets": cmd_send_offsets,
    "fencing": cmd_fencing,
    "abort-on-timeout": cmd_abort_on_timeout,
    "abandoned": cmd_abandoned,
    "abandon-child": cmd_abandon_child,
    "stream": cmd_stream,
    "ctp-stream": cmd_ctp_stream,
    "eos": cmd_eos,
}


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)

    def command(name):
        s = sub.add_parser(name)
        s.add_argument("--bootstrap", required=True)
        s.add_argument("--transactional-id", default=None)
        return s

    s = command("commit-abort")
    s.add_argument("--topics", required=True)
    s.add_argument("--per-txn", type=int, default=10)
    s = command("send-offsets")
    s.add_argument("--input", required=True)
    s.add_argument("--output", required=True)
    s.add_argument("--group", required=True)
    s.add_argument("--records", type=int, default=100)
    s.add_argument("--per-txn", type=int, default=10)
    s.add_argument("--deadline", type=float, default=60)
    s = command("fencing")
    s.add_argument("--topic", required=True)
    s.add_argument("--per-partition", type=int, default=3)
    s = command("abort-on-timeout")
    s.add_argument("--topic", required=True)
    s.add_argument("--timeout-ms", type=int, default=3000)
    s = command("abandoned")
    s.add_argument("--topic", required=True)
    s.add_argument("--per-partition", type=int, default=3)
    s = command("abandon-child")
    s.add_argument("--topic", required=True)
    s.add_argument("--per-partition", type=int, default=3)
    s = command("stream")
    s.add_argument("--topics", required=True)
    s.add_argument("--per-partition", type=int, default=2)
    s.add_argument("--duration", type=float, default=15)
    s.add_argument("--max-seconds", type=float, default=45)
    s.add_argument("--control", default=None)
    s.add_argument("--watch", action="store_true")
    s = command("ctp-stream")
    s.add_argument("--input", required=True)
    s.add_argument("--output", required=True)
    s.add_argument("--group", required=True)
    s.add_argument("--rate", type=float, default=100)
    s.add_argument("--per-txn", type=int, default=100)
    s.add_argument("--duration", type=float, default=15)
    s.add_argument("--max-seconds", type=float, default=45)
    s.add_argument("--control", default=None)
    s = command("eos")
    s.add_argument("--input", required=True)
    s.add_argument("--output", required=True)
    s.add_argument("--group", required=True)
    s.add_argument("--transactional-ids", required=True)
    s.add_argument("--rate", type=float, default=100)
    s.add_argument("--per-txn", type=int, default=50)
    s.add_argument("--abort-share", type=float, default=0.3)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--max-seconds", type=float, default=50)
    s.add_argument("--drain-seconds", type=float, default=2 * STEP_TIMEOUT_S)
    s.add_argument("--stall-seconds", type=float, default=2 * STEP_TIMEOUT_S)
    s.add_argument("--read-seconds", type=float, default=READ_DEADLINE_S)
    s.add_argument("--control", default=None)
    return ap.parse_args()


def main():
    a = parse_args()
    run = Run(a.command)
    try:
        COMMANDS[a.command](run, a)
    except Stop as e:
        run.fail(str(e))
    except Exception as e:  # noqa: BLE001 - reported as the failure of the step that raised
        run.fail(f"{run.step} raised {json.dumps(describe(e))}")
        traceback.print_exc(file=sys.stdout)
    run.finish()


if __name__ == "__main__":
    main()
