#!/usr/bin/env bash
# Enforces the crate layering described in ARCHITECTURE.md: protocol <- storage <- broker <- cli
# (and later controller/replication beside broker's dependencies). Fails if a crate depends on a
# workspace crate it must not know about.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo metadata --format-version 1 --no-deps | python3 -c '
import json, sys
allowed = {
    "runnel-protocol": set(),
    "runnel-security": set(),
    "runnel-storage": {"runnel-protocol"},
    "runnel-replication": {"runnel-protocol", "runnel-storage"},
    "runnel-controller": {"runnel-protocol", "runnel-storage", "runnel-security"},
    "runnel-broker": {"runnel-protocol", "runnel-storage", "runnel-replication", "runnel-controller", "runnel-security"},
    "runnel-client": {"runnel-protocol", "runnel-security"},
    "runnel": {"runnel-protocol", "runnel-storage", "runnel-replication", "runnel-controller", "runnel-broker",
               "runnel-security", "runnel-client"},
}
meta = json.load(sys.stdin)
names = {p["name"] for p in meta["packages"]}
bad = []
for p in meta["packages"]:
    if p["name"] not in allowed:
        bad.append("%s: not in the layering table of scripts/check-deps.sh" % p["name"])
        continue
    for d in p["dependencies"]:
        if d["name"] in names and d.get("kind") in (None, "normal", "build") and d["name"] not in allowed[p["name"]]:
            bad.append("%s must not depend on %s" % (p["name"], d["name"]))
for b in bad:
    print("check-deps:", b)
if bad:
    sys.exit(1)
print("check-deps: layering ok (%d crates)" % len(meta["packages"]))
'
