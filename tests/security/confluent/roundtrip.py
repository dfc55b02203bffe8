#!/usr/bin/env python3
"""confluent-kafka (librdkafka) over a secured listener.

Usage: roundtrip.py BOOTSTRAP TOPIC GROUP [KEY=VALUE...]   (keys: ../README.md)

Mechanisms: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 (SASL_PLAINTEXT, SASL_SSL), and SSL with or
without a client certificate (an encrypted key with ssl.key.password).
Checks (each failure is listed in the RESULT line and makes the exit status 1):
- no error callback reports an authentication or TLS error;
- AdminClient.create_topics creates TOPIC (3 partitions) and list_topics shows it;
- an idempotent producer (InitProducerId, acks=all) gets all 30 records acknowledged;
- a consumer of GROUP (subscribe, earliest, manual commit) reads exactly those 30 records;
  its synchronous commit succeeds and committed() shows 30 records' worth of offsets.
Prints one `RESULT {json}` line.
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import secargs  # noqa: E402

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

PARTITIONS = 3
FATAL = {KafkaError._AUTHENTICATION, KafkaError._SSL, KafkaError.SASL_AUTHENTICATION_FAILED,
         KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED,
         KafkaError.CLUSTER_AUTHORIZATION_FAILED}


def client_config(settings, errors):
    """librdkafka properties for the settings."""
    conf = {
        "bootstrap.servers": settings["bootstrap"],
        "security.protocol": settings["security.protocol"],
        "error_cb": lambda err: errors.append(err),
    }
    if secargs.uses_sasl(settings):
        conf["sasl.mechanism"] = settings["sasl.mechanism"]
        conf["sasl.username"] = settings["sasl.username"]
        conf["sasl.password"] = settings["sasl.password"]
    if secargs.uses_ssl(settings):
        if "ssl.ca.location" in settings:
            conf["ssl.ca.location"] = settings["ssl.ca.location"]
        if "ssl.keystore.location" in settings:
            # The PEM file holds the key and the chain; librdkafka reads each from it.
            conf["ssl.certificate.location"] = settings["ssl.keystore.location"]
            conf["ssl.key.location"] = settings["ssl.keystore.location"]
        if "ssl.key.password" in settings:
            conf["ssl.key.password"] = settings["ssl.key.password"]
    return conf


def main():
    bootstrap, topic, group, settings = secargs.parse(sys.argv[1:])
    settings["bootstrap"] = bootstrap
    run = secargs.Run("confluent")
    errors = []

    def check_errors(stage):
        for err in errors:
            if err.code() in FATAL:
                run.fail(f"{stage}: {err}")
            else:
                run.log(f"{stage}: error callback (transient): {err}")
        errors.clear()
        if run.failures:
            run.finish()

    conf = client_config(settings, errors)

    if settings["admin"] == "1":
        admin = AdminClient(conf)
        fut = admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS,
                                            replication_factor=1)])[topic]
        try:
            fut.result(timeout=30)
        except KafkaException as e:
            run.fail(f"create_topics: {e}")
        check_errors("admin")
        md = admin.list_topics(timeout=30)
        if topic not in md.topics or len(md.topics[topic].partitions) != PARTITIONS:
            run.fail(f"list_topics does not show {topic} with {PARTITIONS} partitions")
        run.facts["admin"] = "create_topics, list_topics"

    producer = Producer({**conf, "acks": "all", "enable.idempotence": True,
                         "message.timeout.ms": 30000})
    produced = set()

    def report(err, msg):
        if err is not None:
            run.fail(f"delivery: {err}")
        else:
            produced.add(msg.value().decode())

    for key, value in secargs.records("confluent"):
        producer.produce(topic, key=key, value=value, on_delivery=report)
    left = producer.flush(60)
    if left:
        run.fail(f"{left} records not delivered within 60 s")
    check_errors("produce")

    consumer = Consumer({**conf, "group.id": group, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    consumer.subscribe([topic])
    consumed = []
    deadline = time.time() + secargs.STEP_TIMEOUT_S
    while time.time() < deadline and len(consumed) < len(produced):
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            run.fail(f"consume: {msg.error()}")
            break
        consumed.append(msg.value().decode())
    check_errors("consume")
    run.check_consumed(produced, consumed)
    try:
        consumer.commit(asynchronous=False)
        committed = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)],
                                       timeout=30)
        total = sum(tp.offset for tp in committed if tp.offset >= 0)
        if total != len(produced):
            run.fail(f"committed offsets add up to {total}, want {len(produced)}")
    except KafkaException as e:
        run.fail(f"commit: {e}")
    consumer.close()
    check_errors("commit")
    run.finish()


if __name__ == "__main__":
    main()
