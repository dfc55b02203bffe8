#!/usr/bin/env python3
"""confluent-kafka (librdkafka): can this client reach the broker with these settings?

Usage: probe.py BOOTSTRAP [KEY=VALUE...]   (keys: ../README.md)

Asks for cluster metadata (list_topics, one second at a time, for up to 15 s) and stops at the
first success or as soon as librdkafka reports an error. Prints one `RESULT {json}` line:
`ok` true with the broker count, or `ok` false with every distinct error librdkafka reported
and logged (`errors`, as "CODE_NAME: message" or "log: message"); exits 0 or 1 accordingly. The refusal tests assert on the
errors' text, which carries the broker's own message (e.g. a SASL failure) or librdkafka's hint
(e.g. "connecting to a PLAINTEXT broker listener?").
"""
import json
import logging
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import secargs  # noqa: E402
from roundtrip import client_config  # noqa: E402

from confluent_kafka import KafkaException  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402

TIMEOUT_S = 15


def main():
    bootstrap, settings = secargs.parse(sys.argv[1:], positional=("bootstrap",))
    settings["bootstrap"] = bootstrap
    errors = []
    conf = client_config(settings, errors)
    # Retry quickly: the probe wants librdkafka's first error, not its back-off.
    conf.update({"reconnect.backoff.ms": 100, "reconnect.backoff.max.ms": 500})
    # Some failures (a plaintext client on a TLS listener) are only logged, at level 6 (FAIL).
    logs = []

    class Collect(logging.Handler):
        def emit(self, record):
            logs.append(record.getMessage())

    logger = logging.getLogger("librdkafka")
    logger.addHandler(Collect())
    logger.setLevel(logging.INFO)
    logger.propagate = False
    conf["logger"] = logger
    admin = AdminClient(conf)
    deadline = time.time() + TIMEOUT_S
    result = None
    last = None
    while time.time() < deadline:
        try:
            md = admin.list_topics(timeout=1)
            result = {"ok": True, "brokers": len(md.brokers)}
            break
        except KafkaException as e:
            # Serves the error callback: its errors say why, list_topics's only that it failed.
            admin.poll(0.5)
            if errors or any("FAIL" in m for m in logs):
                break
            last = e.args[0]
    if result is None and not errors and last is not None:
        errors.append(last)
    if result is None:
        seen = []
        for text in [f"{e.name()}: {e.str()}" for e in errors] + [f"log: {m}" for m in logs]:
            if text not in seen:
                seen.append(text)
        result = {"ok": False, "errors": seen or [f"no answer within {TIMEOUT_S} s"]}
    print("RESULT " + json.dumps(result, sort_keys=True), flush=True)
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
