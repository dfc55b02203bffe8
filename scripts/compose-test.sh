#!/usr/bin/env bash
# The compose scenario: the three-node docker-compose.yml cluster survives losing a partition
# leader, with a real client on the host.
#
#   1. build the image offline (scripts/docker-offline-image.sh: debootstrap base if missing,
#      the host's runnel binary inside), `docker-compose up -d`, wait until all three are healthy;
#   2. create a topic (3 partitions, replication factor 3, min.insync.replicas=2) with
#      `runnel topics` inside a container;
#   3. from the host, produce 10,000 records with acks=all (confluent-kafka) while a consumer
#      reads along; after 3,000 acknowledgements `docker kill` the leader of partition 0;
#      `runnel topics --describe` in a surviving container must show a new leader;
#   4. `docker start` the killed node, wait until it is back in the ISR of every partition;
#   5. every acknowledged record must be readable exactly at its acknowledged offset.
# Always ends with `docker-compose down -v` (trap). Prints: up-to-healthy, docker kill to the
# first acknowledged produce on partition 0, and the image size.
#
# Without a reachable docker daemon it is skipped (exit 0) unless CI is set, where it fails.
# Environment: RUNNEL_BIN (the binary to package; default the debug build scripts/test.sh made,
# else the release one, else it builds), CARGO_TARGET_DIR, COMPOSE (the compose command;
# default docker-compose, else "docker compose"), RUNNEL_COMPOSE_KEEP=1 (leave the cluster up).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

log() { echo "compose-test: $*" >&2; }
t_start=$SECONDS

# ---- preconditions -------------------------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
    if [ -z "${CI:-}" ]; then
        log "SKIPPED: the docker daemon is not reachable (set CI=true to make this a failure)"
        exit 0
    fi
    log "FAILED: the docker daemon is not reachable and CI is set"
    exit 1
fi
if [ -n "${COMPOSE:-}" ]; then
    read -r -a compose <<<"$COMPOSE"
elif command -v docker-compose >/dev/null 2>&1; then
    compose=(docker-compose)
elif docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
else
    log "FAILED: neither docker-compose nor the docker compose plugin is installed"
    exit 1
fi
py=${PYTHON:-python3}
"$py" -c 'import confluent_kafka' 2>/dev/null || {
    log "FAILED: confluent-kafka is missing (bash scripts/install-test-deps.sh installs it)"
    exit 1
}

# The runtime stage of the root Dockerfile and Dockerfile.prebuilt must not drift apart.
runtime_of_root=$(sed -n '/^# --- the runtime stage/,$p' Dockerfile | sed '1d' |
    sed 's#^COPY --from=builder /usr/local/bin/runnel #COPY runnel #; s#^COPY deploy/docker/docker-entrypoint.sh#COPY docker-entrypoint.sh#')
runtime_of_prebuilt=$(sed -n '/^FROM /,$p' deploy/docker/Dockerfile.prebuilt | sed '1d')
if [ "$runtime_of_root" != "$runtime_of_prebuilt" ]; then
    log "FAILED: the runtime stages of Dockerfile and deploy/docker/Dockerfile.prebuilt differ:"
    diff <(echo "$runtime_of_root") <(echo "$runtime_of_prebuilt") >&2 || true
    exit 1
fi

# ---- 1. image and cluster ------------------------------------------------------------------------
target=${CARGO_TARGET_DIR:-$root/target}
if [ -z "${RUNNEL_BIN:-}" ]; then
    if [ -x "$target/debug/runnel" ]; then
        RUNNEL_BIN=$target/debug/runnel
    elif [ -x "$target/release/runnel" ]; then
        RUNNEL_BIN=$target/release/runnel
    else
        log "building the runnel binary (debug)"
        cargo build -p runnel --bin runnel
        RUNNEL_BIN=$target/debug/runnel
    fi
fi
export RUNNEL_BIN
export RUNNEL_IMAGE=${RUNNEL_IMAGE:-runnel:compose-test}
t0=$SECONDS
bash scripts/docker-offline-image.sh
t_image=$((SECONDS - t0))
image_bytes=$(docker image inspect -f '{{.Size}}' "$RUNNEL_IMAGE")

# Free host ports, so a cluster on 9092/9094/9096 (scripts/cluster.sh) does not collide.
read -r RUNNEL1_PORT RUNNEL2_PORT RUNNEL3_PORT < <("$py" - <<'PY'
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
)
export RUNNEL1_PORT RUNNEL2_PORT RUNNEL3_PORT
export RUNNEL_CREATE_TOPICS=init-check:1:3
project=runnel-compose-test-$$
dc() { "${compose[@]}" -p "$project" -f "$root/docker-compose.yml" "$@"; }

cleanup() {
    local rc=$?
    if [ "$rc" -ne 0 ]; then
        log "failed (exit $rc); last log lines of every service:"
        dc logs --no-color --tail=40 >&2 2>&1 || true
    fi
    if [ "${RUNNEL_COMPOSE_KEEP:-}" = 1 ]; then
        log "RUNNEL_COMPOSE_KEEP=1: leaving project $project up"
    else
        dc down -v --remove-orphans >/dev/null 2>&1 || log "docker-compose down -v failed"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "up: project $project, image $RUNNEL_IMAGE, host ports $RUNNEL1_PORT $RUNNEL2_PORT $RUNNEL3_PORT"
t_up0=$(date +%s.%N)
# Starts the three nodes and, once they are healthy (depends_on), the one-shot runnel-init.
dc up -d --no-build
declare -A cid
for n in 1 2 3; do cid[$n]=$(dc ps -q "runnel$n"); done
deadline=$((SECONDS + 120))
while :; do
    healthy=0
    for n in 1 2 3; do
        [ "$(docker inspect -f '{{.State.Health.Status}}' "${cid[$n]}")" = healthy ] && healthy=$((healthy + 1))
    done
    [ "$healthy" = 3 ] && break
    if ((SECONDS > deadline)); then
        log "FAILED: only $healthy of 3 nodes healthy after 120 s"
        exit 1
    fi
    sleep 0.2
done
t_healthy=$("$py" -c "import time; print(f'{time.time() - $t_up0:.1f}')")
log "all three nodes healthy ${t_healthy}s after docker-compose up"

# The one-shot init service created RUNNEL_CREATE_TOPICS and exits 0.
init_rc=$(timeout 150 docker wait "$(dc ps -a -q runnel-init)")
[ "$init_rc" = 0 ] || { log "FAILED: runnel-init exited $init_rc"; exit 1; }
docker exec "${cid[1]}" runnel topics --bootstrap-server runnel1:19092 --describe --topic init-check |
    grep -q 'ReplicationFactor: 3' || { log "FAILED: runnel-init did not create init-check"; exit 1; }

# ---- 2.-5. the scenario --------------------------------------------------------------------------
topic=scenario
docker exec "${cid[2]}" runnel topics --bootstrap-server runnel2:19092 --create --topic "$topic" \
    --partitions 3 --replication-factor 3 --config min.insync.replicas=2
docker exec "${cid[1]}" runnel topics --bootstrap-server runnel1:19092 --describe --topic "$topic"

results=$("$py" - "$topic" "localhost:$RUNNEL1_PORT,localhost:$RUNNEL2_PORT,localhost:$RUNNEL3_PORT" \
    "${cid[1]}" "${cid[2]}" "${cid[3]}" <<'PY'
import re
import subprocess
import sys
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition

topic, bootstrap = sys.argv[1], sys.argv[2]
containers = {1: sys.argv[3], 2: sys.argv[4], 3: sys.argv[5]}
TOTAL = 10_000
KILL_AFTER = 3_000
RATE = 400  # records per second, so the kill lands in the middle of the run
PARTITIONS = 3


def log(msg):
    print(f"scenario: {msg}", file=sys.stderr, flush=True)


def describe(node):
    """`runnel topics --describe` inside node's container: {partition: (leader, isr)} and text."""
    out = subprocess.run(
        ["docker", "exec", containers[node], "runnel", "topics", "--bootstrap-server",
         f"runnel{node}:19092", "--describe", "--topic", topic],
        capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        return None, out.stderr
    parts = {}
    for m in re.finditer(r"Partition: (\d+)\tLeader: (-?\d+|none)\tReplicas: ([\d,]*)\tIsr: ([\d,]*)", out.stdout):
        isr = {int(x) for x in m.group(4).split(",") if x}
        leader = -1 if m.group(2) == "none" else int(m.group(2))
        parts[int(m.group(1))] = (leader, isr)
    return parts, out.stdout


parts, text = describe(1)
if not parts or len(parts) != PARTITIONS:
    log(f"cannot describe the topic: {text}")
    sys.exit(1)
victim = parts[0][0]
survivor = next(n for n in containers if n != victim)
log(f"leader of partition 0 is node {victim}; describing from node {survivor} after the kill")

producer = Producer({
    "bootstrap.servers": bootstrap,
    "acks": "all",
    "enable.idempotence": True,
    "linger.ms": 5,
    "message.timeout.ms": 120000,
    "retry.backoff.ms": 100,
    "retry.backoff.max.ms": 500,
    "reconnect.backoff.max.ms": 1000,
    "topic.metadata.refresh.interval.ms": 1000,
})
live = Consumer({
    "bootstrap.servers": bootstrap,
    "group.id": f"{topic}-live",
    "enable.auto.commit": False,
    "reconnect.backoff.max.ms": 1000,
    "topic.metadata.refresh.interval.ms": 1000,
})
live.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])

acked = {}  # value -> (partition, offset)
send_ts = {}  # value -> monotonic time produce() was called
failed = {}
state = {"kill": None, "first_p0_after_kill": None, "live": 0, "live_after_kill": 0}


def on_delivery(err, msg):
    v = msg.value().decode()
    if err is not None:
        failed[v] = str(err)
        return
    acked[v] = (msg.partition(), msg.offset())
    k = state["kill"]
    if k is not None and msg.partition() == 0 and send_ts[v] > k and state["first_p0_after_kill"] is None:
        state["first_p0_after_kill"] = time.monotonic() - k


def poll_live():
    for m in live.consume(num_messages=1000, timeout=0):
        if m.error() is None:
            state["live"] += 1
            if state["kill"] is not None:
                state["live_after_kill"] += 1


new_leader = {}


def watch_leader():
    """Describes from a survivor until partition 0 has a leader other than the victim."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        parts, text = describe(survivor)
        if parts and parts[0][0] not in (victim, -1):
            new_leader["t"] = time.monotonic() - state["kill"]
            new_leader["leader"] = parts[0][0]
            new_leader["text"] = text
            return
        time.sleep(0.25)


watcher = None
t0 = time.monotonic()
for i in range(TOTAL):
    v = f"r{i}"
    while True:
        try:
            send_ts[v] = time.monotonic()
            producer.produce(topic, value=v.encode(), partition=i % PARTITIONS, on_delivery=on_delivery)
            break
        except BufferError:
            producer.poll(0.05)
    producer.poll(0)
    poll_live()
    if state["kill"] is None and len(acked) >= KILL_AFTER:
        subprocess.run(["docker", "kill", containers[victim]], check=True, capture_output=True)
        state["kill"] = time.monotonic()
        log(f"docker kill node {victim} after {len(acked)} acknowledged records")
        watcher = threading.Thread(target=watch_leader, daemon=True)
        watcher.start()
    # Pace the sends.
    ahead = (i + 1) / RATE - (time.monotonic() - t0)
    if ahead > 0:
        time.sleep(ahead)
left = producer.flush(150)
log(f"produced: {len(acked)} acknowledged, {len(failed)} failed, {left} unresolved "
    f"in {time.monotonic() - t0:.1f}s")
if watcher:
    watcher.join(100)
end = time.monotonic() + 30
while time.monotonic() < end and state["live"] < len(acked):
    poll_live()
    time.sleep(0.05)
live.close()

errors = []
if state["kill"] is None:
    errors.append("the leader was never killed")
if failed:
    errors.append(f"{len(failed)} records failed, e.g. {list(failed.items())[:3]}")
if left:
    errors.append(f"{left} records unresolved after flush")
if len(acked) != TOTAL:
    errors.append(f"only {len(acked)} of {TOTAL} records acknowledged")
if "leader" not in new_leader:
    errors.append("no new leader of partition 0 within 90 s of the kill")
else:
    log(f"new leader of partition 0: node {new_leader['leader']}, seen by describe "
        f"{new_leader['t']:.1f}s after the kill:\n{new_leader['text']}")
if state["first_p0_after_kill"] is None:
    errors.append("no record sent after the kill was acknowledged on partition 0")
if state["live_after_kill"] == 0:
    errors.append("the live consumer read nothing after the kill")
log(f"live consumer read {state['live']} records ({state['live_after_kill']} after the kill)")
if errors:
    for e in errors:
        log("FAILED: " + e)
    sys.exit(1)

# Bring the victim back and wait until it is in the ISR of every partition again.
t_start = time.monotonic()
subprocess.run(["docker", "start", containers[victim]], check=True, capture_output=True)
log(f"docker start node {victim}")
deadline = time.monotonic() + 120
rejoined = None
while time.monotonic() < deadline:
    parts, text = describe(survivor)
    if parts and len(parts) == PARTITIONS and all(victim in isr for _, isr in parts.values()):
        rejoined = time.monotonic() - t_start
        log(f"node {victim} back in the ISR of every partition {rejoined:.1f}s after docker start:\n{text}")
        break
    time.sleep(0.5)
if rejoined is None:
    log(f"FAILED: node {victim} not back in every ISR within 120 s:\n{text}")
    sys.exit(1)

# Every acknowledged record, exactly at its offset.
by_partition = {p: {} for p in range(PARTITIONS)}
for v, (p, o) in acked.items():
    by_partition[p][o] = v
reader = Consumer({
    "bootstrap.servers": bootstrap,
    "group.id": f"{topic}-verify",
    "enable.auto.commit": False,
    "enable.partition.eof": True,
})
reader.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
log_values = {p: {} for p in range(PARTITIONS)}
need = {p: (max(by_partition[p]) + 1 if by_partition[p] else 0) for p in range(PARTITIONS)}
deadline = time.monotonic() + 60
while time.monotonic() < deadline and any(
        (max(log_values[p]) + 1 if log_values[p] else 0) < need[p] for p in range(PARTITIONS)):
    for m in reader.consume(num_messages=1000, timeout=0.5):
        if m.error() is None:
            log_values[m.partition()][m.offset()] = m.value().decode()
reader.close()
wrong = [(v, p, o, log_values[p].get(o)) for p in by_partition for o, v in by_partition[p].items()
         if log_values[p].get(o) != v]
if wrong:
    log(f"FAILED: {len(wrong)} acknowledged records not at their offset, e.g. {wrong[:5]}")
    sys.exit(1)
log(f"verified: all {len(acked)} acknowledged records read back at their offsets")

print(f"victim={victim}")
print(f"kill_to_first_produce_p0={state['first_p0_after_kill']:.2f}")
print(f"kill_to_new_leader_in_describe={new_leader['t']:.2f}")
print(f"start_to_back_in_every_isr={rejoined:.1f}")
PY
)
echo "$results"
log "summary:"
log "  image build (offline script)          ${t_image}s"
log "  image size                            $image_bytes bytes ($((image_bytes / 1048576)) MiB, $RUNNEL_IMAGE)"
log "  docker-compose up -> 3 healthy        ${t_healthy}s"
log "  docker kill -> first produce on p0    $(sed -n 's/^kill_to_first_produce_p0=//p' <<<"$results")s"
log "  docker kill -> new leader in describe $(sed -n 's/^kill_to_new_leader_in_describe=//p' <<<"$results")s"
log "  docker start -> back in every ISR     $(sed -n 's/^start_to_back_in_every_isr=//p' <<<"$results")s"
log "  total                                 $((SECONDS - t_start))s"
log "passed"
