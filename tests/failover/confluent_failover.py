#!/usr/bin/env python3
"""confluent-kafka (librdkafka) through a partition-leader SIGKILL.

Usage: confluent_failover.py BOOTSTRAP TOPIC CONTROL_DIR

Run by crates/cli/tests/t61_client_failover.rs, which creates TOPIC (1 partition, RF=3,
min.insync.replicas=2), waits until this program prints `progress ... acked=N` with N >= 100,
SIGKILLs the partition's leader and then writes the kill time (epoch ms) to CONTROL_DIR/killed.

What it does:
- an idempotent producer (acks=all) sends `confluent-<n>` to partition 0 every 10 ms, all the
  time polling a group consumer (subscribe, from the earliest offset) that reads the topic live;
- after the kill it keeps producing until at least 200 sends were acknowledged after the kill
  and 8 s have passed (or 45 s, whichever first), then flushes;
- the live consumer then gets up to 20 s to catch up with every acknowledged record;
- finally a fresh consumer (assign, no group) reads the partition from its log start to its
  high watermark.
Checks (each failure is listed in the result and makes the exit status 1):
- the producer continued: some sends were acknowledged after the kill;
- every acknowledged record is in the final read at the offset its delivery report gave, and
  no record appears twice (idempotence);
- the live consumer continued after the kill (it consumed records acknowledged after the
  kill) and consumed every acknowledged record.
Prints `progress ...` lines while producing and one `RESULT {json}` line at the end.
"""
import json
import os
import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

CLIENT = "confluent"
AFTER_KILL_ACKS = 200
MIN_AFTER_KILL_MS = 8_000
MAX_AFTER_KILL_MS = 45_000
MAX_WAIT_FOR_KILL_S = 120
SEND_INTERVAL_S = 0.01


def now_ms():
    return int(time.time() * 1000)


def ours(value, sent):
    """Whether `value` is one this program sent (`confluent-<n>`, n < sent)."""
    prefix, _, n = value.rpartition("-")
    return prefix == CLIENT and n.isdigit() and int(n) < sent


def log(msg):
    print(f"{CLIENT}: {msg}", flush=True)


def read_all(bootstrap, topic, deadline_s=60):
    """Partition 0 from its log start to its high watermark: ({value: [offsets]}, low, high)."""
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"{topic}-verify",  # never joined: assign() only, no commits
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "isolation.level": "read_uncommitted",
    })
    tp = TopicPartition(topic, 0)
    end = time.time() + deadline_s
    while True:
        try:
            low, high = c.get_watermark_offsets(tp, timeout=5)
            break
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            if time.time() > end:
                raise
            log(f"watermarks: {e}; retrying")
            time.sleep(0.5)
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    found = {}
    nxt = low
    while nxt < high and time.time() < end:
        for m in c.consume(num_messages=1000, timeout=0.5):
            if m.error():
                log(f"verify consumer: {m.error()}")
                continue
            found.setdefault(m.value().decode(), []).append(m.offset())
            nxt = max(nxt, m.offset() + 1)
    c.close()
    return found, low, high, nxt


def main():
    bootstrap, topic, control = sys.argv[1], sys.argv[2], sys.argv[3]
    kill_file = os.path.join(control, "killed")
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "message.timeout.ms": 30000,
        "retry.backoff.ms": 100,
        "retry.backoff.max.ms": 500,
        "reconnect.backoff.max.ms": 1000,
    })
    live = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"{topic}-live",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": True,
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 1000,
        "reconnect.backoff.max.ms": 1000,
    })
    live.subscribe([topic])

    acked = {}  # value -> (partition, offset, ack ms)
    failed = {}  # value -> error
    live_seen = {}  # value -> first consumed ms
    counters = {"after_kill": 0}
    state = {"kill_ms": None}
    live_errors = []

    def report(err, msg):
        v = msg.value().decode()
        if err is None:
            t = now_ms()
            acked[v] = (msg.partition(), msg.offset(), t)
            if state["kill_ms"] is not None and t > state["kill_ms"]:
                counters["after_kill"] += 1
        else:
            failed[v] = str(err)

    def poll_live(timeout=0):
        for m in live.consume(num_messages=500, timeout=timeout):
            if m.error():
                if len(live_errors) < 20:
                    live_errors.append(str(m.error()))
                continue
            live_seen.setdefault(m.value().decode(), now_ms())

    sent = 0
    started = time.time()
    last_progress = 0.0
    while True:
        if state["kill_ms"] is None and os.path.exists(kill_file):
            text = open(kill_file).read().strip()
            if text:
                state["kill_ms"] = int(text)
                log(f"leader killed at {state['kill_ms']} (acked so far {len(acked)})")
        kill_ms = state["kill_ms"]
        if kill_ms is None:
            if time.time() - started > MAX_WAIT_FOR_KILL_S:
                log("the test never killed the leader")
                sys.exit(2)
        else:
            since = now_ms() - kill_ms
            if (counters["after_kill"] >= AFTER_KILL_ACKS and since >= MIN_AFTER_KILL_MS) or (
                since >= MAX_AFTER_KILL_MS
            ):
                break
        value = f"{CLIENT}-{sent}"
        try:
            producer.produce(topic, value=value.encode(), partition=0, on_delivery=report)
            sent += 1
        except BufferError:
            pass
        producer.poll(0)
        poll_live()
        if time.time() - last_progress >= 0.5:
            last_progress = time.time()
            print(f"progress sent={sent} acked={len(acked)} failed={len(failed)} "
                  f"live={len(live_seen)}", flush=True)
        time.sleep(SEND_INTERVAL_S)

    unresolved = producer.flush(60)
    kill_ms = state["kill_ms"]
    # Let the live consumer catch up with everything acknowledged.
    end = time.time() + 20
    while time.time() < end and any(v not in live_seen for v in acked):
        poll_live(timeout=0.5)
    live.close()

    found, low, high, read_to = read_all(bootstrap, topic)

    missing = sorted((v for v in acked if v not in found), key=lambda v: int(v.rpartition("-")[2]))
    wrong_offset = [v for v, (_, o, _) in acked.items() if v in found and o not in found[v]]
    duplicates = [v for v, offs in found.items() if len(offs) > 1]
    never_sent = [v for v in found if not ours(v, sent)]
    live_missing = [v for v in acked if v not in live_seen]
    live_after_kill = sum(1 for v in live_seen if v in acked and acked[v][2] > kill_ms)
    after_acks = sorted(a for (_, _, a) in acked.values() if a > kill_ms)

    failures = []
    if counters["after_kill"] == 0:
        failures.append("no send was acknowledged after the leader was killed")
    if missing:
        failures.append(f"{len(missing)} acknowledged records missing from the log, e.g. {missing[:10]}")
    if wrong_offset:
        failures.append(f"{len(wrong_offset)} acknowledged records at another offset, e.g. {wrong_offset[:10]}")
    if duplicates:
        failures.append(f"{len(duplicates)} records appear twice, e.g. {duplicates[:10]}")
    if never_sent:
        failures.append(f"records never sent: {never_sent[:10]}")
    if read_to < high:
        failures.append(f"final read stopped at offset {read_to} below the high watermark {high}")
    if live_after_kill == 0:
        failures.append("the live consumer consumed nothing acknowledged after the kill")
    if live_missing:
        failures.append(f"the live consumer missed {len(live_missing)} acknowledged records, "
                        f"e.g. {sorted(live_missing)[:10]}")
    if unresolved:
        failures.append(f"{unresolved} sends had no delivery report after flush")

    result = {
        "client": CLIENT,
        "sent": sent,
        "acked": len(acked),
        "failed": len(failed),
        "failed_errors": sorted(set(failed.values()))[:5],
        "acked_after_kill": counters["after_kill"],
        "first_ack_after_kill_ms": (after_acks[0] - kill_ms) if after_acks else None,
        "final_read": sum(len(o) for o in found.values()),
        "log_start": low,
        "high_watermark": high,
        "missing": len(missing),
        "wrong_offset": len(wrong_offset),
        "duplicates": len(duplicates),
        "live_consumed": len(live_seen),
        "live_after_kill": live_after_kill,
        "live_missing": len(live_missing),
        "live_errors": live_errors[:5],
        "failures": failures,
    }
    print("RESULT " + json.dumps(result), flush=True)
    for f in failures:
        print(f"{CLIENT}: FAIL: {f}", file=sys.stderr, flush=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
