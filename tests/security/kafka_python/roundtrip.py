#!/usr/bin/env python3
"""kafka-python 3.0.12 over a secured listener.

Usage: roundtrip.py BOOTSTRAP TOPIC GROUP [KEY=VALUE...]   (keys: ../README.md)

Mechanisms: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 (SASL_PLAINTEXT, SASL_SSL), and SSL with or
without a client certificate (ssl_certfile/ssl_keyfile, ssl_password); the host name is checked.
Checks (each failure is listed in the RESULT line and makes the exit status 1):
- KafkaAdminClient.create_topics creates TOPIC (3 partitions) and list_topics shows it;
- a producer (acks=all) gets all 30 records acknowledged;
- a consumer of GROUP (subscribe, earliest, manual commit) reads exactly those 30 records and
  its synchronous commit succeeds; committed() then adds up to 30.
Prints one `RESULT {json}` line.
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import secargs  # noqa: E402

from kafka import KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402
from kafka.admin import KafkaAdminClient  # noqa: E402

PARTITIONS = 3


def client_config(bootstrap, settings):
    conf = {
        "bootstrap_servers": bootstrap,
        "security_protocol": settings["security.protocol"],
        "request_timeout_ms": 30000,
    }
    if secargs.uses_sasl(settings):
        conf["sasl_mechanism"] = settings["sasl.mechanism"]
        conf["sasl_plain_username"] = settings["sasl.username"]
        conf["sasl_plain_password"] = settings["sasl.password"]
    if secargs.uses_ssl(settings):
        conf["ssl_cafile"] = settings.get("ssl.ca.location")
        conf["ssl_check_hostname"] = True
        if "ssl.keystore.location" in settings:
            conf["ssl_certfile"] = settings["ssl.keystore.location"]
            conf["ssl_keyfile"] = settings["ssl.keystore.location"]
        if "ssl.key.password" in settings:
            conf["ssl_password"] = settings["ssl.key.password"]
    return conf


def main():
    bootstrap, topic, group, settings = secargs.parse(sys.argv[1:])
    run = secargs.Run("kafka-python")
    conf = client_config(bootstrap, settings)
    try:
        if settings["admin"] == "1":
            admin = KafkaAdminClient(**conf)
            admin.create_topics({topic: {"num_partitions": PARTITIONS, "replication_factor": 1}})
            if topic not in admin.list_topics():
                run.fail(f"list_topics does not show {topic}")
            admin.close()
            run.facts["admin"] = "create_topics, list_topics"

        producer = KafkaProducer(acks="all", **conf)
        sends = [(v, producer.send(topic, key=k, value=v))
                 for k, v in secargs.records("kafka-python")]
        producer.flush(60)
        produced = set()
        for value, future in sends:
            try:
                future.get(timeout=30)
                produced.add(value.decode())
            except Exception as e:  # noqa: BLE001 - every failure is reported
                run.fail(f"send: {e!r}")
        producer.close()

        consumer = KafkaConsumer(group_id=group, auto_offset_reset="earliest",
                                 enable_auto_commit=False, **conf)
        consumer.subscribe([topic])
        consumed = []
        deadline = time.time() + secargs.STEP_TIMEOUT_S
        while time.time() < deadline and len(consumed) < len(produced):
            for records in consumer.poll(timeout_ms=500).values():
                consumed.extend(r.value.decode() for r in records)
        run.check_consumed(produced, consumed)
        consumer.commit()
        total = sum(consumer.committed(TopicPartition(topic, p)) or 0 for p in range(PARTITIONS))
        if total != len(produced):
            run.fail(f"committed offsets add up to {total}, want {len(produced)}")
        consumer.close()
    except Exception as e:  # noqa: BLE001 - the error is the result
        run.fail(f"{type(e).__name__}: {e}")
    run.finish()


if __name__ == "__main__":
    main()
