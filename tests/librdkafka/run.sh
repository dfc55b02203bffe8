#!/usr/bin/env bash
# Runs librdkafka's own integration tests against fresh three-node Runnel clusters.
#
#   tests/librdkafka/run.sh                 the allowlist, quick mode (-Q), as CI runs it
#   tests/librdkafka/run.sh --full          the allowlist in full mode (more iterations, more data)
#   tests/librdkafka/run.sh 0054 0113       only these allowlisted tests (numbers or full names)
#
# Every test runs in a runner process of its own (`TESTS=<number> test-runner -L -E`), two at a
# time, against a cluster started for its scenario (the librdkafka test clusters' settings: `num.partitions=4`,
# replication factor 3, auto-creation on, or off for the `noautocreate` scenario). A test counts
# as passed only when the runner exits 0 and its summary shows that test PASSED (a skipped test
# is a failure: an allowlisted test must apply). Exits non-zero if any test failed.
#
# Environment: RUNNEL_BIN (default target/debug/runnel, built if missing), LIBRDKAFKA_RUNNER (a
# test-runner to use instead of building one with build.sh), LIBRDKAFKA_TEST_TIMEOUT (seconds
# one runner may take, default 300), LIBRDKAFKA_JOBS (tests at a time, default 2; at 3 some
# group tests time out on a 2-core machine), LIBRDKAFKA_OUT (directory for the cluster and test
# logs, kept; default a temporary directory deleted after a successful run).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

mode=""
only=()
for a in "$@"; do
    case "$a" in
    --full) mode=full ;;
    -h | --help)
        sed -n '2,18p' "$0"
        exit 0
        ;;
    *) only+=("$a") ;;
    esac
done

log() { echo "librdkafka suite: $*" >&2; }

runner=${LIBRDKAFKA_RUNNER:-}
if [ -z "$runner" ]; then
    runner=$(bash "$here/build.sh") || { log "cannot build librdkafka's test runner"; exit 1; }
fi
# The runner links librdkafka's shared libraries from its own build tree.
tree=$(cd "$(dirname "$runner")/.." && pwd)
export LD_LIBRARY_PATH="$tree/src:$tree/src-cpp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
bin=${RUNNEL_BIN:-$root/target/debug/runnel}
if [ ! -x "$bin" ]; then
    (cd "$root" && cargo build -p runnel) || exit 1
fi
timeout_s=${LIBRDKAFKA_TEST_TIMEOUT:-300}

keep_out=0
if [ -n "${LIBRDKAFKA_OUT:-}" ]; then
    out=$LIBRDKAFKA_OUT
    keep_out=1
    mkdir -p "$out"
else
    out=$(mktemp -d "${TMPDIR:-/tmp}/runnel-librdkafka.XXXXXX")
fi

# ---- which tests -------------------------------------------------------------------------------
# Allowlist lines: `<test name> [noautocreate|rebalancedelay] [full] [subtests=TEXT]`; `#` starts a
# comment. `noautocreate`: the test needs a cluster without topic auto-creation;
# `rebalancedelay`: the test needs Kafka's default `group.initial.rebalance.delay.ms` (3000; the
# other clusters run with 0 to keep the suite short), because it lets several consumers join a
# new group's first generation together; `full`: the test does
# nothing in quick mode (all its subtests are full-mode ones), so it always runs in full mode;
# `subtests=TEXT`: run only the subtests whose name contains TEXT (librdkafka's SUBTESTS).
entries=()
while read -r name opts; do
    [ -z "$name" ] && continue
    scenario=default
    emode=quick
    subtests=""
    for o in $opts; do
        case "$o" in
        noautocreate) scenario=noautocreate ;;
        rebalancedelay) scenario=rebalancedelay ;;
        full) emode=full ;;
        subtests=*) subtests=${o#subtests=} ;;
        *) log "allowlist: unknown option '$o' for $name"; exit 2 ;;
        esac
    done
    entries+=("$name $scenario $emode ${subtests:--}")
done < <(sed 's/#.*//' "$here/allowlist")
if [ ${#only[@]} -gt 0 ]; then
    picked=()
    for e in "${entries[@]}"; do
        for o in "${only[@]}"; do
            [[ "$e" == "$o"* ]] && picked+=("$e")
        done
    done
    if [ ${#picked[@]} -eq 0 ]; then
        log "no allowlisted test matches: ${only[*]}"
        exit 2
    fi
    entries=("${picked[@]}")
fi

# ---- the cluster -------------------------------------------------------------------------------
pids=()
ports=()

free_ports() {
    python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

stop_cluster() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    pids=()
}
trap 'stop_cluster' EXIT

# start_cluster SCENARIO: three combined broker+controller nodes in a new directory $cdir under
# $out, which also gets the runner's test.conf and the test logs.
starts=0
cdir=""
start_cluster() {
    local scenario=$1 dir autocreate=true delay=0 n voters=""
    starts=$((starts + 1))
    cdir=$out/cluster$starts-$scenario
    dir=$cdir
    [ "$scenario" = noautocreate ] && autocreate=false
    [ "$scenario" = rebalancedelay ] && delay=3000
    read -r -a ports <<<"$(free_ports 6)"
    for n in 1 2 3; do
        voters+="${voters:+,}$n@127.0.0.1:${ports[$((2 * n - 1))]}"
    done
    mkdir -p "$dir"
    for n in 1 2 3; do
        "$bin" server --node-id "$n" --data-dir "$dir/node$n" \
            --listen "127.0.0.1:${ports[$((2 * n - 2))]}" \
            --rpc-listen "127.0.0.1:${ports[$((2 * n - 1))]}" --voters "$voters" \
            --set num.partitions=4 --set default.replication.factor=3 \
            --set auto.create.topics.enable=$autocreate \
            --set group.initial.rebalance.delay.ms=$delay \
            >"$dir/node$n.log" 2>&1 &
        pids+=($!)
    done
    local deadline=$((SECONDS + 60)) node id ok
    while :; do
        ok=1
        for node in 1 2 3; do
            for id in 1 2 3; do
                "$bin" health --bootstrap-server "127.0.0.1:${ports[$((2 * node - 2))]}" \
                    --node-id "$id" --timeout-ms 2000 >/dev/null 2>&1 || ok=0
            done
        done
        [ $ok = 1 ] && break
        if ((SECONDS > deadline)); then
            log "the $scenario cluster did not come up within 60 s; see $dir/node*.log"
            return 1
        fi
        sleep 0.5
    done
    mkdir -p "$dir/run"
    ln -sfn "$tree/src" "$dir/src"
    cat >"$dir/test.conf" <<EOF
bootstrap.servers=127.0.0.1:${ports[0]},127.0.0.1:${ports[2]},127.0.0.1:${ports[4]}
EOF
}

# ---- run ---------------------------------------------------------------------------------------
strip_colors() { sed 's/\x1b\[[0-9;]*m//g'; }

# run_one NAME SCENARIO MODE SUBTESTS: one runner process for the test's number, in $cdir/run
# (tests open files of librdkafka's tree as ../src/...); writes $cdir/NAME.result:
# "PASS|FAIL seconds detail". Without CI in its environment: the runner would skip some tests
# there (0055's latency checks), and an allowlisted test must run the same everywhere.
run_one() {
    local name=$1 scenario=$2 mode=$3 sub=$4 num=${1%%_*} tlog=$cdir/$1.log t0=$SECONDS
    local rc state detail args=(-L -E)
    [ "$mode" = quick ] && args+=(-Q)
    [ "$sub" = - ] && sub=""
    {
        (
            cd "$cdir/run" &&
                TESTS=$num SUBTESTS=$sub RDKAFKA_TEST_CONF="$cdir/test.conf" \
                    TEST_SCENARIO=${scenario/rebalancedelay/default} exec env -u CI \
                    timeout -k 10 "$timeout_s" "$runner" "${args[@]}"
        ) >"$tlog" 2>&1
    } 2>/dev/null
    rc=$?
    state=$(strip_colors <"$tlog" | awk -v n="$name" -F'|' '
        { gsub(/^ +| +$/, "", $2); gsub(/ /, "", $3) }
        $2 == n { s = $3 } END { print s }')
    if [ $rc = 0 ] && [ "$state" = PASSED ]; then
        echo "PASS $((SECONDS - t0)) $mode" >"$cdir/$name.result"
    else
        detail=$(strip_colors <"$tlog" | grep -m1 -A1 -E '^### Test' | tail -n 1 | cut -c1-160)
        echo "FAIL $((SECONDS - t0)) $mode, exit $rc, ${state:-no summary}: ${detail:-see $tlog}" \
            >"$cdir/$name.result"
    fi
}

nodes_alive() {
    local p
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || return 1; done
}

passed=()
failed=()
flaky=()
declare -A launched # name -> "scenario mode subtests", for a retry
# A test that fails is run once more on the same cluster: several group and timing tests are
# sensitive to a loaded 2-core machine. One that passes then counts as passed and is named at
# the end as flaky; one that fails twice fails the step.
report() {
    local name=$1 dir=$2 verdict secs rest first
    read -r verdict secs rest <"$dir/$name.result"
    if [ "$verdict" != PASS ] && [ -n "${launched[$name]:-}" ]; then
        first="${secs}s, $rest"
        log "FAIL $name ($first); running it once more"
        cp "$dir/$name.log" "$dir/$name.first.log" 2>/dev/null
        # shellcheck disable=SC2086
        run_one "$name" ${launched[$name]}
        read -r verdict secs rest <"$dir/$name.result"
        if [ "$verdict" = PASS ]; then
            flaky+=("$name")
            rest="$rest; failed once first: $first"
        fi
    fi
    if [ "$verdict" = PASS ]; then
        passed+=("$name")
        log "PASS $name (${secs}s, $rest)"
    else
        failed+=("$name")
        log "FAIL $name (${secs}s, $rest)"
    fi
}

# Tests of one scenario run $jobs at a time against one cluster (as librdkafka's own CI runs
# its suite: every test uses topics of its own).
jobs=${LIBRDKAFKA_JOBS:-2}
current=""
batch=()     # tests started on the current cluster
reported=()  # of those, the ones reported
running=()   # pids of the runners in flight
# Reports the tests of the batch that have finished, in the order they finished.
drain() {
    local n r seen
    for n in "${batch[@]}"; do
        [ -f "$cdir/$n.result" ] || continue
        seen=0
        for r in "${reported[@]}"; do [ "$r" = "$n" ] && seen=1; done
        [ $seen = 1 ] && continue
        report "$n" "$cdir"
        reported+=("$n")
    done
}
prune() {
    local p alive=()
    for p in "${running[@]}"; do kill -0 "$p" 2>/dev/null && alive+=("$p"); done
    running=("${alive[@]}")
}
finish_batch() {
    local p
    for p in "${running[@]}"; do wait "$p"; done
    running=()
    drain
    batch=()
    reported=()
}
t_all=$SECONDS
for e in "${entries[@]}"; do
    read -r name scenario emode sub <<<"$e"
    if [ "$scenario" != "$current" ] || ! nodes_alive; then
        if [ -n "$current" ] && ! nodes_alive; then
            log "a cluster node exited during: ${batch[*]}; see $cdir/node*.log"
            failed+=("cluster:$current")
        fi
        finish_batch
        stop_cluster
        log "starting a three-node cluster (scenario $scenario)"
        if ! start_cluster "$scenario"; then
            failed+=("cluster:$scenario")
            current=""
            continue
        fi
        current=$scenario
    fi
    prune
    while [ ${#running[@]} -ge "$jobs" ]; do
        wait -n "${running[@]}"
        prune
        drain
    done
    batch+=("$name")
    launched[$name]="$scenario ${mode:-$emode} ${sub:--}"
    run_one "$name" "$scenario" "${mode:-$emode}" "$sub" &
    running+=($!)
done
finish_batch
if [ -n "$current" ] && ! nodes_alive; then
    log "a cluster node exited; see $cdir/node*.log"
    failed+=("cluster:$current")
fi
stop_cluster

log "${#passed[@]} passed, ${#failed[@]} failed of ${#entries[@]} in $((SECONDS - t_all))s"
[ ${#flaky[@]} -gt 0 ] && log "passed only when run a second time: ${flaky[*]}"
if [ ${#failed[@]} -gt 0 ]; then
    log "failed: ${failed[*]}"
    log "logs: $out"
    exit 1
fi
[ $keep_out = 0 ] && rm -rf "$out"
exit 0
