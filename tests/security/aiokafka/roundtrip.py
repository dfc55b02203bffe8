#!/usr/bin/env python3
"""aiokafka 0.14 over a secured listener.

Usage: roundtrip.py BOOTSTRAP TOPIC GROUP [KEY=VALUE...]   (keys: ../README.md)

Mechanisms: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 (SASL_PLAINTEXT, SASL_SSL), and SSL with or
without a client certificate (aiokafka.helpers.create_ssl_context, which checks the host name).
Checks (each failure is listed in the RESULT line and makes the exit status 1):
- AIOKafkaAdminClient.create_topics creates TOPIC (3 partitions) and list_topics shows it;
- a producer (acks=all) gets all 30 records acknowledged;
- a consumer of GROUP (subscribe, earliest, manual commit) reads exactly those 30 records and
  its commit succeeds; committed() then adds up to 30.
Prints one `RESULT {json}` line.
"""
import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import secargs  # noqa: E402

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402
from aiokafka.helpers import create_ssl_context  # noqa: E402

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
        keystore = settings.get("ssl.keystore.location")
        conf["ssl_context"] = create_ssl_context(
            cafile=settings.get("ssl.ca.location"), certfile=keystore, keyfile=keystore,
            password=settings.get("ssl.key.password"))
    return conf


async def main(run, bootstrap, topic, group, settings):
    conf = client_config(bootstrap, settings)
    if settings["admin"] == "1":
        admin = AIOKafkaAdminClient(**conf)
        await admin.start()
        try:
            resp = await admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS,
                                                       replication_factor=1)])
            for t in resp.topic_errors:
                if t[1] != 0:
                    run.fail(f"create_topics: {t}")
            if topic not in await admin.list_topics():
                run.fail(f"list_topics does not show {topic}")
        finally:
            await admin.close()
        run.facts["admin"] = "create_topics, list_topics"

    producer = AIOKafkaProducer(acks="all", **conf)
    await producer.start()
    produced = set()
    try:
        for key, value in secargs.records("aiokafka"):
            await producer.send_and_wait(topic, key=key, value=value)
            produced.add(value.decode())
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(topic, group_id=group, auto_offset_reset="earliest",
                                enable_auto_commit=False, **conf)
    await consumer.start()
    consumed = []
    try:
        deadline = time.time() + secargs.STEP_TIMEOUT_S
        while time.time() < deadline and len(consumed) < len(produced):
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                consumed.extend(r.value.decode() for r in records)
        run.check_consumed(produced, consumed)
        await consumer.commit()
        total = 0
        for p in range(PARTITIONS):
            total += await consumer.committed(TopicPartition(topic, p)) or 0
        if total != len(produced):
            run.fail(f"committed offsets add up to {total}, want {len(produced)}")
    finally:
        await consumer.stop()


if __name__ == "__main__":
    bootstrap, topic, group, settings = secargs.parse(sys.argv[1:])
    run = secargs.Run("aiokafka")
    try:
        asyncio.run(main(run, bootstrap, topic, group, settings))
    except Exception as e:  # noqa: BLE001 - the error is the result
        run.fail(f"{type(e).__name__}: {e}")
    run.finish()
