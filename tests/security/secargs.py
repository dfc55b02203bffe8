"""Arguments and result line shared by the Python security programs.

Every program takes `BOOTSTRAP TOPIC GROUP [KEY=VALUE...]` (see README.md for the keys) and
prints one `RESULT {json}` line; `Run.finish` exits 1 when a check failed.
"""
import json
import sys

KEYS = {
    "security.protocol",  # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    "sasl.mechanism",  # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
    "sasl.username",
    "sasl.password",
    "ssl.ca.location",  # PEM file of the CA that signed the broker's certificate
    "ssl.keystore.location",  # PEM file: private key + certificate chain (client certificate)
    "ssl.key.password",  # password of that key, if it is encrypted
    "admin",  # 1 (default): create TOPIC with the admin API; 0: the caller created it
}

RECORDS = 30
KEYS_PER_RUN = 5
STEP_TIMEOUT_S = 45


def parse(argv, positional=("bootstrap", "topic", "group")):
    """Returns (positional values..., settings) from argv (without the program name)."""
    if len(argv) < len(positional):
        sys.exit(f"usage: {' '.join(p.upper() for p in positional)} [KEY=VALUE...]")
    values = list(argv[: len(positional)])
    settings = {"security.protocol": "PLAINTEXT", "admin": "1"}
    for arg in argv[len(positional):]:
        key, sep, value = arg.partition("=")
        if not sep or key not in KEYS:
            sys.exit(f"unknown setting {arg!r}; known: {', '.join(sorted(KEYS))}")
        settings[key] = value
    settings["security.protocol"] = settings["security.protocol"].upper()
    return (*values, settings)


def uses_sasl(settings):
    return settings["security.protocol"].startswith("SASL_")


def uses_ssl(settings):
    return settings["security.protocol"] in ("SSL", "SASL_SSL")


def records(client):
    """The (key, value) pairs every program produces: 30 records over 5 keys."""
    return [(f"k{i % KEYS_PER_RUN}".encode(), f"{client}-{i}".encode()) for i in range(RECORDS)]


class Run:
    """Collects failures and facts, then prints the RESULT line."""

    def __init__(self, client):
        self.client = client
        self.failures = []
        self.facts = {}

    def log(self, msg):
        print(f"{self.client}: {msg}", flush=True)

    def fail(self, msg):
        self.log(f"FAIL: {msg}")
        self.failures.append(msg)

    def finish(self):
        result = {"client": self.client, "ok": not self.failures, "failures": self.failures}
        result.update(self.facts)
        print("RESULT " + json.dumps(result, sort_keys=True), flush=True)
        sys.exit(0 if not self.failures else 1)

    def check_consumed(self, produced, consumed):
        """produced: set of values acknowledged; consumed: list of values read by the group."""
        self.facts["produced"] = len(produced)
        self.facts["consumed"] = len(consumed)
        if len(produced) != RECORDS:
            self.fail(f"{len(produced)} of {RECORDS} records acknowledged")
        missing = produced - set(consumed)
        if missing:
            self.fail(f"{len(missing)} acknowledged records not consumed, e.g. {sorted(missing)[:3]}")
        extra = set(consumed) - produced
        if extra:
            self.fail(f"consumed records that were not produced: {sorted(extra)[:3]}")
        if len(consumed) != len(set(consumed)):
            self.fail("a record was consumed twice")
