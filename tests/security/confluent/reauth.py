#!/usr/bin/env python3
"""confluent-kafka (librdkafka): SASL sessions outlive connections.max.reauth.ms (KIP-368).

Usage: reauth.py BOOTSTRAP TOPIC SECONDS [KEY=VALUE...]   (keys: ../README.md)

Against a broker with a short connections.max.reauth.ms, the broker tells the client the session
lifetime in SaslAuthenticate and closes a connection whose session expired; librdkafka (2.2 and
later) re-authenticates on the same connection before that. For SECONDS, one producer sends a
record every 250 ms while one consumer (assigned to every partition of TOPIC, which this program
creates with 1 partition) reads them.
Checks (each failure is listed in the RESULT line and makes the exit status 1):
- every record is acknowledged and read back, in order;
- no connection was dropped: librdkafka logged no "Disconnected" failure and reported no error.
Prints one `RESULT {json}` line.
"""
import logging
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import secargs  # noqa: E402
from roundtrip import client_config  # noqa: E402

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402


def main():
    bootstrap, topic, seconds, settings = secargs.parse(
        sys.argv[1:], positional=("bootstrap", "topic", "seconds"))
    settings["bootstrap"] = bootstrap
    run = secargs.Run("confluent-reauth")
    errors = []
    logs = []

    class Collect(logging.Handler):
        def emit(self, record):
            logs.append(record.getMessage())

    logger = logging.getLogger("librdkafka")
    logger.addHandler(Collect())
    logger.setLevel(logging.INFO)
    logger.propagate = False
    conf = {**client_config(settings, errors), "logger": logger}

    admin = AdminClient(conf)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic] \
            .result(timeout=30)
    except KafkaException as e:
        run.fail(f"create_topics: {e}")
        run.finish()

    producer = Producer({**conf, "acks": "all", "linger.ms": 0})
    consumer = Consumer({**conf, "group.id": f"{topic}-reader", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    acked, got = [], []

    def report(err, msg):
        if err is not None:
            run.fail(f"delivery: {err}")
        else:
            acked.append(msg.value().decode())

    end = time.time() + float(seconds)
    i = 0
    next_send = time.time()
    while time.time() < end:
        if time.time() >= next_send:
            producer.produce(topic, value=f"reauth-{i}".encode(), on_delivery=report)
            i += 1
            next_send += 0.25
        producer.poll(0)
        msg = consumer.poll(0.05)
        if msg is not None and not msg.error():
            got.append(msg.value().decode())
        elif msg is not None:
            run.fail(f"consume: {msg.error()}")
    if producer.flush(30):
        run.fail("records left undelivered")
    deadline = time.time() + 15
    while len(got) < len(acked) and time.time() < deadline:
        msg = consumer.poll(0.2)
        if msg is not None and not msg.error():
            got.append(msg.value().decode())
    consumer.close()
    admin.poll(0)

    run.facts.update({"sent": i, "acknowledged": len(acked), "consumed": len(got)})
    if len(acked) != i:
        run.fail(f"{len(acked)} of {i} records acknowledged")
    if got != acked:
        run.fail(f"read {len(got)} records back, {len(acked)} acknowledged (or out of order)")
    for err in errors:
        run.fail(f"error callback: {err}")
    dropped = [m for m in logs if "Disconnected" in m or "FAIL" in m]
    if dropped:
        run.fail(f"{len(dropped)} connection failures, first: {dropped[0]}")
    run.finish()


if __name__ == "__main__":
    main()
