"""Floods a cluster with CreateTopics from one client for a number of seconds.

Keeps up to 200 CreateTopics requests (one new topic each, 1 partition, replication factor 3)
outstanding through one confluent-kafka AdminClient, and prints how many topics were created
and how many requests failed.

    python3 scripts/admin-flood.py BOOTSTRAP SECONDS
"""
import sys
import time
from concurrent.futures import wait, FIRST_COMPLETED

from confluent_kafka.admin import AdminClient, NewTopic


def main():
    bootstrap, seconds = sys.argv[1], float(sys.argv[2])
    admin = AdminClient({"bootstrap.servers": bootstrap})
    end = time.monotonic() + seconds
    pending, created, failed, n = set(), 0, 0, 0
    while time.monotonic() < end or pending:
        while time.monotonic() < end and len(pending) < 200:
            fs = admin.create_topics([NewTopic(f"flood-{n}", 1, 3)], request_timeout=30)
            pending.update(fs.values())
            n += 1
        done, pending = wait(pending, timeout=1, return_when=FIRST_COMPLETED)
        for f in done:
            try:
                f.result()
                created += 1
            except Exception:  # noqa: BLE001 - counted, not raised: the flood goes on
                failed += 1
    print(f"created {created} topics, {failed} requests failed, in {seconds:.0f} s")


if __name__ == "__main__":
    main()
