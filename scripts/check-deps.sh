#!/usr/bin/env bash
# Enforces the crate layering described in ARCHITECTURE.md: protocol <- storage <- broker <- cli
# (and later controller/replication beside broker's dependencies). Fails if a crate depends on a
# workspace crate it must not know about. Inside the broker crate, its modules must import each
# other without a cycle, and only the dispatcher, the reconciler and the server runtime may see
# the `Broker` (every other module is given narrow services).
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
    "runnel-coordinator": set(),
    "runnel-broker": {"runnel-protocol", "runnel-storage", "runnel-replication", "runnel-controller", "runnel-security",
                      "runnel-coordinator"},
    "runnel-client": {"runnel-protocol", "runnel-security"},
    "runnel": {"runnel-protocol", "runnel-storage", "runnel-replication", "runnel-controller", "runnel-broker",
               "runnel-security", "runnel-client", "runnel-coordinator"},
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
python3 - <<'PY'
import os, re, sys
root = "crates/broker/src"
# The `Broker` itself: only these may name it.
may_see_broker = {"broker.rs", "lib.rs", "server.rs", "connection.rs", "reconcile.rs", "handlers/mod.rs"}
# Names the crate root re-exports, by the module that defines them.
root_names = {"now_ms": "clock", "BrokerConfig": "config", "ConfigError": "config", "Fence": "fence",
              "Broker": "broker", "SharedBroker": "broker", "run": "server", "BoundServer": "server"}
edges, bad = {}, []
for dirpath, _, files in os.walk(root):
    for f in files:
        if not f.endswith(".rs"):
            continue
        path = os.path.join(dirpath, f)
        rel = os.path.relpath(path, root)
        if rel == "lib.rs" or rel.endswith("_tests.rs"):
            continue
        text = open(path).read()
        cut = re.search(r"^#\[cfg\(test\)\]\s*\nmod tests", text, re.M)
        if cut:
            text = text[:cut.start()]
        text = "\n".join(l.split("//")[0] for l in text.splitlines())
        top = rel.split("/")[0].removesuffix(".rs")
        used = set(re.findall(r"crate::([A-Za-z_]\w*)", text))
        for group in re.findall(r"crate::\{([^}]*)\}", text):
            used |= {g.strip().split("::")[0] for g in group.split(",") if g.strip()}
        used.discard("")
        mods = {root_names.get(u, u) for u in used}
        if "broker" in mods and rel not in may_see_broker:
            bad.append("%s uses the Broker; give it the services it needs instead" % rel)
        for m in mods:
            if m != top and (os.path.exists(os.path.join(root, m + ".rs")) or os.path.isdir(os.path.join(root, m))):
                edges.setdefault(top, set()).add(m)
# Any cycle among the modules?
state = {}
def visit(m, stack):
    state[m] = 1
    for n in sorted(edges.get(m, ())):
        if state.get(n) == 1:
            bad.append("import cycle in runnel-broker: " + " -> ".join(stack[stack.index(n):] + [n]))
        elif n not in state:
            visit(n, stack + [n])
    state[m] = 2
for m in sorted(edges):
    if m not in state:
        visit(m, [m])
for b in bad:
    print("check-deps:", b)
if bad:
    sys.exit(1)
print("check-deps: runnel-broker modules ok (%d modules, no cycle)" % len(set(edges) | {n for v in edges.values() for n in v}))
PY
