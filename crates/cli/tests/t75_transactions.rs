//! Level 75: Kafka transactions with real clients (confluent-kafka 2.16.1 with librdkafka, and
//! kafkajs 2.2.4).
//!
//! Each test runs subcommands of `tests/transactions/confluent_txn.py` against brokers started
//! here (the header of the program says exactly what each subcommand checks; each prints one
//! `RESULT {json}` line and exits non-zero on a failed check) and asserts on the result's
//! numbers besides:
//! - one node (`transaction.state.log.replication.factor=1`), one test per subcommand:
//!   `commit-abort` (A committed, B aborted, C committed; read_committed sees exactly A and C, in
//!   order, and the last stable offset holds at an open transaction), `send-offsets`
//!   (consume-transform-produce with `send_offsets_to_transaction`, every third transaction
//!   aborted: exactly one output copy per input record, committed offsets at the input's end),
//!   `fencing` (a second producer with the same transactional id fences the first, aborts its
//!   open transaction and rejects its later writes), `abort-on-timeout` (a transaction left open
//!   past `transaction.timeout.ms` is aborted by the coordinator, so read_committed consumers get
//!   past it), `abandoned` (a producer SIGKILLed with its transaction open holds the last stable
//!   offset until a new producer with its transactional id calls `init_transactions`, which
//!   aborts it at once, long before its 60 s timeout, and lets a waiting read_committed consumer
//!   past the abandoned records);
//! - one node, kafkajs 2.2.4 (`tests/transactions/kafkajs_txn.js`): a transactional producer
//!   commits a transaction over two topics, aborts one, commits one with `sendOffsets` for a
//!   consumer group (and aborts another): `readUncommitted: false` consumers see exactly the
//!   committed records, the group resumes at the committed offsets;
//! - three nodes (data topics RF=3, `min.insync.replicas=2`; `__transaction_state` RF=3, min
//!   ISR 2): `commit-abort` and `send-offsets` on one cluster;
//! - three nodes, `stream`: one producer commits (and every fifth time aborts) transactions over
//!   two topics for ~15 s while the leader of one data partition (one that is not the
//!   transaction coordinator, when there is such a partition) is SIGKILLed and restarted 8 s
//!   later. Every transaction the producer saw committed must be fully visible read_committed,
//!   every aborted one invisible, and the producer must have gone on committing while the node
//!   was down (through the partition's new leader) and after the restart;
//! - three nodes, `stream --watch` with the node coordinating the transactional id SIGKILLed
//!   after 5 commits and restarted 8 s later: the same checks, and besides a read_committed
//!   consumer reading all along never gets a record of an aborted transaction, nor one before
//!   its transaction's commit was requested, and what it gets is a prefix of the final read;
//!   the last stable offset of every partition (ListOffsets, READ_COMMITTED, sampled every
//!   250 ms) never goes back; FindCoordinator names another node while the coordinator is
//!   down, and transactions commit through it;
//! - three nodes, `ctp-stream` under the same coordinator kill: records fed to an input topic
//!   all along are copied to an output topic in transactions that carry the consumer group's
//!   offsets (every seventh aborted, the consumer rewound to the group's committed offsets after
//!   each abort, error or rebalance): the output holds exactly one copy of each input record and
//!   the group's committed offsets end at the input's end;
//! - three nodes, `eos` (exactly once through kills): two consume-transform-produce workers (one
//!   transactional id each, coordinated by different nodes, each copying its share of four input
//!   partitions to three output partitions so that every transaction spans output partitions)
//!   abort a random share of their transactions after a flush, while the leader of an output
//!   partition, then the coordinator of each worker's transactional id, is SIGKILLed and
//!   restarted 5 s later, one after the other in the same run. A read_committed consumer never
//!   gets an aborted record, during the run or at the end; every transaction is visible entirely
//!   or not at all across the output partitions; the output holds exactly one copy of each input
//!   record; the last stable offset of every output partition, sampled all along, never goes
//!   back. The workers' abort choices come from a seed the test prints (`RUNNEL_EOS_SEED`).
//!
//! The coordinator looks for timed-out transactions every 500 ms here
//! (`transaction.abort.timed.out.transaction.cleanup.interval.ms`; Kafka's default is 10 s), so
//! that `abort-on-timeout`'s 3 s transaction is aborted promptly.
//!
//! A missing client is a failure, not a skip (install it with `scripts/install-test-deps.sh`);
//! `RUNNEL_SKIP_CLIENTS=confluent` skips the confluent-kafka tests and `kafkajs` the kafkajs one,
//! as in `t71_group_clients`.

mod cluster;
mod common;

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kafka_protocol::messages::{ApiKey, FindCoordinatorRequest};
use kafka_protocol::protocol::StrBytes;
use serde_json::Value;

use cluster::Cluster;
use common::{create_topic, negotiate, repo_root, run_with_timeout, Conn, Server};

const PROGRAM: &str = "tests/transactions/confluent_txn.py";
const CLIENT: &str = "confluent";
const KAFKAJS_PROGRAM: &str = "tests/transactions/kafkajs_txn.js";
/// Bound on one program run; a passing run takes a few seconds (`stream` ~25 s).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// One node: a small transaction log on the single broker, quick group joins, and timed-out
/// transactions found within half a second.
const ONE_NODE: &[&str] = &[
    "group.initial.rebalance.delay.ms=300",
    "transaction.state.log.num.partitions=3",
    "transaction.state.log.replication.factor=1",
    "transaction.state.log.min.isr=1",
    "transaction.abort.timed.out.transaction.cleanup.interval.ms=500",
];

/// Three nodes: failover within a couple of seconds (as in t61), small internal topics (as in
/// t72), the transaction log on all three with a min ISR of 2.
const THREE_NODES: &[&str] = &[
    "broker.heartbeat.interval.ms=250",
    "broker.session.timeout.ms=2000",
    "controller.quorum.election.timeout.ms=500",
    "replica.lag.time.max.ms=3000",
    "group.initial.rebalance.delay.ms=300",
    "offsets.topic.num.partitions=3",
    "transaction.state.log.num.partitions=3",
    "transaction.state.log.replication.factor=3",
    "transaction.state.log.min.isr=2",
    "transaction.abort.timed.out.transaction.cleanup.interval.ms=500",
];
const DATA_TOPIC_CONFIGS: &[(&str, &str)] = &[("min.insync.replicas", "2")];

/// The `stream` test: the leader is killed once this many transactions are committed, stays down
/// this long (about twice what the partition's failover takes with these settings, so that
/// transactions must commit through the new leader), and the program gets this long after the
/// kill to finish.
const KILL_AFTER_COMMITS: i64 = 5;
const DOWN_FOR: Duration = Duration::from_secs(8);
const BEFORE_KILL_TIMEOUT: Duration = Duration::from_secs(60);
const AFTER_KILL_TIMEOUT: Duration = Duration::from_secs(90);
const STREAM_TXN_ID: &str = "txn-stream-producer";
/// The coordinator-kill tests: the transaction coordinator is SIGKILLed after
/// [`KILL_AFTER_COMMITS`] commits and restarted this long after (its `__transaction_state`
/// partitions fail over within a few seconds here).
const COORDINATOR_DOWN_FOR: Duration = Duration::from_secs(8);
const COORDINATOR_STREAM_TXN_ID: &str = "txn-coordinator-stream";
const COORDINATOR_CTP_TXN_ID: &str = "txn-coordinator-ctp";

/// False (with a message) when the confluent client is to be skipped; fails when python3 is
/// missing.
fn client_ready() -> bool {
    if common::client_skipped(CLIENT) {
        eprintln!("skipping {CLIENT}: listed in RUNNEL_SKIP_CLIENTS");
        return false;
    }
    common::require_tool("python3", CLIENT);
    true
}

/// `python3 confluent_txn.py SUBCOMMAND --bootstrap BOOTSTRAP args...` from the repository root.
fn program(subcommand: &str, bootstrap: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("python3");
    cmd.arg(PROGRAM)
        .arg(subcommand)
        .args(["--bootstrap", bootstrap])
        .args(args)
        .current_dir(repo_root())
        .env("PYTHONDONTWRITEBYTECODE", "1");
    cmd
}

/// The JSON of the program's `RESULT` line, if it printed one.
fn parse_result(output: &str) -> Option<Value> {
    output
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .map(|j| {
            serde_json::from_str(j).unwrap_or_else(|e| panic!("RESULT is not JSON ({e}): {j}"))
        })
}

/// Runs a subcommand to its end and returns its result; panics unless it exited 0 with
/// `"ok": true`. The brokers' logs are printed by their guards when the test panics.
fn run_program(subcommand: &str, bootstrap: &str, args: &[&str]) -> Value {
    let (ok, output) = run_with_timeout(&mut program(subcommand, bootstrap, args), CLIENT_TIMEOUT);
    println!("{output}");
    let result =
        parse_result(&output).unwrap_or_else(|| panic!("{subcommand}: no RESULT line:\n{output}"));
    assert!(
        ok && result["ok"] == Value::Bool(true),
        "{subcommand} failed: {}\n(full output above)",
        result["failures"]
    );
    result
}

/// An integer field of a result (-1 when absent, so that comparisons fail visibly).
fn int(r: &Value, key: &str) -> i64 {
    r[key].as_i64().unwrap_or(-1)
}

fn check_commit_abort(r: &Value) {
    assert_eq!(
        int(r, "read_committed"),
        20,
        "read_committed must see exactly the 20 records of the committed transactions A and C: {r}"
    );
    assert_eq!(
        int(r, "read_uncommitted"),
        30,
        "read_uncommitted must see all 30 records, the aborted transaction's too: {r}"
    );
    let open = r["open_c"].as_object().expect("open_c");
    assert!(
        !open.is_empty(),
        "no partition was checked while C was open: {r}"
    );
    for (tp, v) in open {
        assert_eq!(
            v["lso"], v["first"],
            "{tp}: the last stable offset must stop at the open transaction: {v}"
        );
    }
}

fn check_send_offsets(r: &Value, records: i64) {
    assert_eq!(
        int(r, "output_read_committed"),
        records,
        "the output must hold exactly one copy of each input record: {r}"
    );
    assert!(
        int(r, "aborted_transactions") >= 1 && int(r, "committed_transactions") >= 1,
        "both committed and aborted transactions must have run: {r}"
    );
    assert_eq!(
        int(r, "output_read_uncommitted"),
        records + int(r, "aborted_records"),
        "read_uncommitted sees the aborted copies as well: {r}"
    );
    assert_eq!(
        r["committed_offsets"], r["input_ends"],
        "the group's committed offsets must be the input's end offsets: {r}"
    );
}

// ---- one node ----

#[test]
fn commit_and_abort() {
    if !client_ready() {
        return;
    }
    let server = Server::start_with(ONE_NODE);
    for t in ["txn-ca-1", "txn-ca-2"] {
        create_topic(server.socket_addr(), t, 3).expect("create topic");
    }
    let r = run_program(
        "commit-abort",
        &server.addr(),
        &["--topics", "txn-ca-1,txn-ca-2"],
    );
    check_commit_abort(&r);
}

#[test]
fn send_offsets_consume_transform_produce() {
    if !client_ready() {
        return;
    }
    let server = Server::start_with(ONE_NODE);
    for t in ["txn-so-in", "txn-so-out"] {
        create_topic(server.socket_addr(), t, 4).expect("create topic");
    }
    let r = run_program(
        "send-offsets",
        &server.addr(),
        &[
            "--input",
            "txn-so-in",
            "--output",
            "txn-so-out",
            "--group",
            "txn-so-group",
            "--records",
            "100",
        ],
    );
    check_send_offsets(&r, 100);
}

#[test]
fn fencing_a_zombie_producer() {
    if !client_ready() {
        return;
    }
    let server = Server::start_with(ONE_NODE);
    create_topic(server.socket_addr(), "txn-fence", 2).expect("create topic");
    let r = run_program("fencing", &server.addr(), &["--topic", "txn-fence"]);
    let after = &r["p1_after_fence"];
    assert_eq!(
        after["commit"]["fenced"],
        Value::Bool(true),
        "the fenced producer's commit must fail with a fatal fenced error: {after}"
    );
    assert_eq!(
        int(after, "accepted"),
        0,
        "no write of the fenced producer may be accepted: {after}"
    );
    // 3 records per partition from each producer; only the second one's are committed.
    assert_eq!(int(&r, "read_committed"), 6, "{r}");
    assert_eq!(int(&r, "read_uncommitted"), 12, "{r}");
    eprintln!(
        "fenced producer: commit failed with {} (fatal {}), its produce after the fence got {} \
         (raised: {})",
        after["commit"]["name"],
        after["commit"]["fatal"],
        after["delivery_errors"],
        after["produce_raised"]
    );
}

#[test]
fn timed_out_transaction_is_aborted() {
    if !client_ready() {
        return;
    }
    let server = Server::start_with(ONE_NODE);
    create_topic(server.socket_addr(), "txn-timeout", 2).expect("create topic");
    let r = run_program(
        "abort-on-timeout",
        &server.addr(),
        &["--topic", "txn-timeout", "--timeout-ms", "3000"],
    );
    assert_eq!(
        int(&r, "read_committed"),
        6,
        "read_committed must get exactly the second producer's records: {r}"
    );
    assert!(
        int(&r, "second_visible_after_ms") >= 3000,
        "records committed after the open transaction were visible before it timed out: {r}"
    );
    assert_ne!(
        r["p1_commit"]["name"],
        Value::from("committed"),
        "the timed-out producer must not commit: {r}"
    );
    eprintln!(
        "abort-on-timeout: the later records were visible {} ms after the abandoned transaction \
         began (timeout 3000 ms, held back checked: {}); the abandoned producer's commit failed \
         with {}",
        r["second_visible_after_ms"], r["held_back_checked"], r["p1_commit"]["name"]
    );
}

#[test]
fn abandoned_transaction_aborted_by_successor() {
    if !client_ready() {
        return;
    }
    let server = Server::start_with(ONE_NODE);
    create_topic(server.socket_addr(), "txn-abandoned", 3).expect("create topic");
    let r = run_program("abandoned", &server.addr(), &["--topic", "txn-abandoned"]);
    let timeout = int(&r, "transaction_timeout_ms");
    let released = int(&r, "lso_released_after_init_ms");
    let done = int(&r, "waiting_consumer_done_after_init_ms");
    eprintln!(
        "abandoned: the successor's init_transactions took {} ms; the last stable offset \
         reached the high watermark {released} ms after its start; the waiting read_committed \
         consumer had the successor's records {done} ms after it (transaction timeout \
         {timeout} ms)",
        int(&r, "init_ms")
    );
    for (tp, v) in r["held"].as_object().expect("held") {
        assert_eq!(
            v["lso"], v["first"],
            "{tp}: the abandoned transaction must hold the last stable offset: {v}"
        );
    }
    assert!(
        (0..timeout / 4).contains(&released),
        "the successor's init_transactions must end the abandoned transaction, well before its \
         {timeout} ms timeout: {r}"
    );
    assert!(
        (0..timeout / 4).contains(&done),
        "the waiting read_committed consumer must get past the abandoned records well before \
         the timeout: {r}"
    );
    assert_eq!(int(&r, "waiting_consumer"), 9, "{r}");
    assert_eq!(int(&r, "read_committed"), 9, "{r}");
    assert_eq!(int(&r, "read_uncommitted"), 18, "{r}");
}

#[test]
fn kafkajs_transactions() {
    if common::client_skipped("kafkajs") {
        eprintln!("skipping kafkajs: listed in RUNNEL_SKIP_CLIENTS");
        return;
    }
    common::require_tool("node", "kafkajs");
    let server = Server::start_with(ONE_NODE);
    let topics = ["txn-kjs-1", "txn-kjs-2", "txn-kjs-in"];
    for t in topics {
        create_topic(server.socket_addr(), t, 3).expect("create topic");
    }
    let mut cmd = Command::new("node");
    cmd.arg(KAFKAJS_PROGRAM)
        .arg(server.addr())
        .args(topics)
        .arg("txn-kjs-group")
        .current_dir(repo_root());
    let (ok, output) = run_with_timeout(&mut cmd, CLIENT_TIMEOUT);
    println!("{output}");
    let r = parse_result(&output).unwrap_or_else(|| {
        panic!(
            "kafkajs: no RESULT line:\n{output}\n{}",
            server.stderr_tail()
        )
    });
    assert!(
        ok && r["ok"] == Value::Bool(true),
        "kafkajs transactions failed: {}\n(full output above)\n{}",
        r["failures"],
        server.stderr_tail()
    );
    // A: 12 records, C: 30 copies; B (12) and D (6) aborted.
    assert_eq!(int(&r, "read_committed"), 42, "{r}");
    assert_eq!(int(&r, "read_uncommitted"), 60, "{r}");
    assert_eq!(r["group_offsets_after_d"], r["input_ends"], "{r}");
    assert_eq!(int(&r, "group_resumed"), 3, "{r}");
}

// ---- three nodes ----

#[test]
fn three_nodes_commit_abort_and_send_offsets() {
    if !client_ready() {
        return;
    }
    let mut c = Cluster::start(3, THREE_NODES);
    for t in ["txn3-ca-1", "txn3-ca-2", "txn3-so-in", "txn3-so-out"] {
        c.create_topic_everywhere(t, 3, 3, DATA_TOPIC_CONFIGS);
    }
    let bootstrap = c.bootstrap();
    let r = run_program(
        "commit-abort",
        &bootstrap,
        &["--topics", "txn3-ca-1,txn3-ca-2"],
    );
    check_commit_abort(&r);
    let r = run_program(
        "send-offsets",
        &bootstrap,
        &[
            "--input",
            "txn3-so-in",
            "--output",
            "txn3-so-out",
            "--group",
            "txn3-so-group",
            "--records",
            "100",
        ],
    );
    check_send_offsets(&r, 100);
    for id in 1..=3 {
        c.assert_alive(id);
    }
}

/// Kills the program if the test panics.
struct Program(Child);

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_exit(p: &mut Program, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = p.0.try_wait().unwrap() {
            return Some(s);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The highest `committed=N` on a `progress` line.
fn committed_so_far(output: &str) -> i64 {
    output
        .lines()
        .filter(|l| l.starts_with("progress "))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("committed="))
                .and_then(|n| n.parse().ok())
        })
        .max()
        .unwrap_or(0)
}

/// Writes the current time (epoch ms) to `dir/name`, whole (written, then renamed).
fn mark(dir: &Path, name: &str) {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, ms.to_string()).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

/// The node that coordinates `transactional_id` (FindCoordinator, key type 1), as the first
/// running node that answers says.
fn transaction_coordinator(c: &Cluster, transactional_id: &str) -> Option<i32> {
    c.running().into_iter().find_map(|id| {
        let mut conn = Conn::connect(c.addr(id)).ok()?;
        let v = negotiate(&mut conn, ApiKey::FindCoordinator).ok()?.min(3);
        if v < 1 {
            return None;
        }
        let req = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(transactional_id.to_string()))
            .with_key_type(1);
        let resp = conn.request(v, &req).ok()?;
        (resp.error_code == 0).then_some(resp.node_id.0)
    })
}

/// A node killed by [`run_killing`], and what FindCoordinator said while it was down.
struct Kill {
    victim: i32,
    /// The first coordinator of the transactional id other than the victim that FindCoordinator
    /// named while the victim was down.
    coordinator_while_down: Option<i32>,
}

/// Runs `python3 confluent_txn.py SUBCOMMAND --bootstrap ... args --transactional-id TXN_ID
/// --control DIR`, a program that prints `progress ... committed=N` lines: once
/// [`KILL_AFTER_COMMITS`] transactions are committed, SIGKILLs the node `pick_victim` names
/// (it also returns a description for the log), restarts it `down_for` later (asking
/// FindCoordinator for `txn_id` meanwhile) and waits for the program's end. Returns its result;
/// panics unless it exited 0 with `"ok": true`.
fn run_killing(
    c: &mut Cluster,
    subcommand: &str,
    args: &[&str],
    txn_id: &str,
    down_for: Duration,
    pick_victim: impl FnOnce(&Cluster) -> (i32, String),
) -> (Value, Kill) {
    let control = tempfile::Builder::new()
        .prefix("runnel-txn-kill-")
        .tempdir()
        .unwrap();
    let out_path = control.path().join("output");
    let out = File::create(&out_path).unwrap();
    let mut all_args = args.to_vec();
    all_args.extend([
        "--transactional-id",
        txn_id,
        "--control",
        control.path().to_str().unwrap(),
    ]);
    let child = program(subcommand, &c.bootstrap(), &all_args)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run python3 {PROGRAM}: {e}"));
    let mut p = Program(child);
    let output = || std::fs::read_to_string(&out_path).unwrap_or_default();

    let deadline = Instant::now() + BEFORE_KILL_TIMEOUT;
    while committed_so_far(&output()) < KILL_AFTER_COMMITS {
        if let Some(s) = p.0.try_wait().unwrap() {
            panic!("{subcommand} exited ({s}) before the kill:\n{}", output());
        }
        assert!(
            Instant::now() < deadline,
            "fewer than {KILL_AFTER_COMMITS} transactions committed after \
             {BEFORE_KILL_TIMEOUT:?}:\n{}",
            output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let (victim, what) = pick_victim(c);
    c.kill(victim);
    let killed = Instant::now();
    mark(control.path(), "killed");
    eprintln!(
        "SIGKILLed node {victim}, {what}, after {} commits",
        committed_so_far(&output())
    );
    let mut coordinator_while_down = None;
    while killed.elapsed() < down_for {
        if coordinator_while_down.is_none() {
            coordinator_while_down = transaction_coordinator(c, txn_id).filter(|&id| id != victim);
            if let Some(id) = coordinator_while_down {
                eprintln!(
                    "{:?} after the kill, FindCoordinator names node {id} for {txn_id}",
                    killed.elapsed()
                );
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    c.restart(victim);
    mark(control.path(), "restarted");
    eprintln!(
        "restarted node {victim} after {} commits",
        committed_so_far(&output())
    );

    let status = wait_exit(&mut p, AFTER_KILL_TIMEOUT);
    let out = output();
    println!("{out}");
    let Some(status) = status else {
        panic!("{subcommand} did not finish within {AFTER_KILL_TIMEOUT:?} of the kill:\n{out}");
    };
    let r = parse_result(&out).unwrap_or_else(|| panic!("no RESULT ({status}):\n{out}"));
    eprintln!(
        "{subcommand}: {} transactions in {} s: {} committed ({} after the kill, {} of them while \
         the node was down, {} after the restart; first commit {} ms after the kill), {} aborted \
         on purpose, {} on errors, {} of unknown outcome; {} producers; errors {}",
        int(&r, "transactions"),
        r["seconds"],
        int(&r, "committed"),
        int(&r, "committed_after_kill"),
        int(&r, "committed_while_down"),
        int(&r, "committed_after_restart"),
        r["first_commit_after_kill_ms"],
        int(&r, "aborted_on_purpose"),
        int(&r, "aborted_on_error"),
        int(&r, "unknown"),
        int(&r, "producers"),
        r["errors"],
    );
    assert!(
        status.success() && r["ok"] == Value::Bool(true),
        "{subcommand} failed ({status}): {}\n(full output above)",
        r["failures"]
    );
    (
        r,
        Kill {
            victim,
            coordinator_while_down,
        },
    )
}

/// The checks common to the `stream` runs with a kill.
fn check_stream(r: &Value, down_for: Duration) {
    eprintln!(
        "stream: {} of unknown outcome were visible",
        int(r, "unknown_visible")
    );
    if !r["watch"].is_null() {
        eprintln!("stream: concurrent reader and LSO samples: {}", r["watch"]);
    }
    assert!(
        int(r, "committed_while_down") > 0,
        "no transaction committed in the {down_for:?} the node was down: {r}"
    );
    assert!(
        int(r, "committed_after_restart") > 0,
        "no transaction committed after the restart: {r}"
    );
    assert_eq!(int(r, "partial"), 0, "partly visible transactions: {r}");
    assert!(
        int(r, "read_committed") >= int(r, "committed_records"),
        "read_committed saw fewer records than were committed: {r}"
    );
}

#[test]
fn partition_leader_killed_during_transactions() {
    if !client_ready() {
        return;
    }
    let mut c = Cluster::start(3, THREE_NODES);
    let topics = ["txn-kill-1", "txn-kill-2"];
    for t in topics {
        c.create_topic_everywhere(t, 3, 3, DATA_TOPIC_CONFIGS);
    }
    let (r, _) = run_killing(
        &mut c,
        "stream",
        &["--topics", &topics.join(","), "--duration", "15"],
        STREAM_TXN_ID,
        DOWN_FOR,
        |c| {
            // A data partition's leader; one that is not also the transaction coordinator if
            // possible, so that what fails over is the partition, not the coordinator.
            let coordinator = transaction_coordinator(c, STREAM_TXN_ID);
            let view = c.controller_view().expect("a node answers Metadata");
            let leaders: Vec<(&str, i32, i32)> = topics
                .iter()
                .flat_map(|t| view.topics[*t].iter().map(move |(p, v)| (*t, *p, v.leader)))
                .filter(|(_, _, leader)| *leader >= 0)
                .collect();
            let (topic, partition, victim) = leaders
                .iter()
                .find(|(_, _, leader)| Some(*leader) != coordinator)
                .or(leaders.first())
                .copied()
                .expect("a data partition with a leader");
            (
                victim,
                format!("leader of {topic}/{partition} (transaction coordinator: {coordinator:?})"),
            )
        },
    );
    check_stream(&r, DOWN_FOR);
    for id in 1..=3 {
        c.assert_alive(id);
    }
}

/// The node coordinating `txn_id` now, for [`run_killing`].
fn coordinator_victim(c: &Cluster, txn_id: &str) -> (i32, String) {
    let victim = transaction_coordinator(c, txn_id)
        .unwrap_or_else(|| panic!("no node names a transaction coordinator for {txn_id}"));
    (victim, format!("the transaction coordinator of {txn_id}"))
}

/// Asserts that FindCoordinator named another node while the coordinator was down.
fn check_coordinator_moved(kill: &Kill, txn_id: &str) {
    let moved = kill.coordinator_while_down.unwrap_or_else(|| {
        panic!(
            "while node {} was down no other node coordinated {txn_id}",
            kill.victim
        )
    });
    assert_ne!(moved, kill.victim);
}

#[test]
fn transaction_coordinator_killed_during_transactions() {
    if !client_ready() {
        return;
    }
    let mut c = Cluster::start(3, THREE_NODES);
    let topics = ["txn-coord-1", "txn-coord-2"];
    for t in topics {
        c.create_topic_everywhere(t, 3, 3, DATA_TOPIC_CONFIGS);
    }
    let (r, kill) = run_killing(
        &mut c,
        "stream",
        &["--topics", &topics.join(","), "--duration", "12", "--watch"],
        COORDINATOR_STREAM_TXN_ID,
        COORDINATOR_DOWN_FOR,
        |c| coordinator_victim(c, COORDINATOR_STREAM_TXN_ID),
    );
    check_coordinator_moved(&kill, COORDINATOR_STREAM_TXN_ID);
    check_stream(&r, COORDINATOR_DOWN_FOR);
    let w = &r["watch"];
    assert!(
        int(w, "records") > 0,
        "the concurrent read_committed consumer got nothing: {w}"
    );
    assert_eq!(
        int(w, "aborted_seen"),
        0,
        "the concurrent read_committed consumer saw aborted records: {w}"
    );
    assert_eq!(
        int(w, "seen_before_commit"),
        0,
        "the concurrent read_committed consumer saw records before their commit: {w}"
    );
    assert!(
        int(w, "lso_samples") > 0 && int(w, "lso_regressions") == 0,
        "the last stable offset went backwards (or was never sampled): {w}"
    );
    for id in 1..=3 {
        c.assert_alive(id);
    }
}

#[test]
fn transaction_coordinator_killed_during_consume_transform_produce() {
    if !client_ready() {
        return;
    }
    let mut c = Cluster::start(3, THREE_NODES);
    for t in ["txn-coord-in", "txn-coord-out"] {
        c.create_topic_everywhere(t, 3, 3, DATA_TOPIC_CONFIGS);
    }
    let (r, kill) = run_killing(
        &mut c,
        "ctp-stream",
        &[
            "--input",
            "txn-coord-in",
            "--output",
            "txn-coord-out",
            "--group",
            "txn-coord-group",
            "--duration",
            "12",
        ],
        COORDINATOR_CTP_TXN_ID,
        COORDINATOR_DOWN_FOR,
        |c| coordinator_victim(c, COORDINATOR_CTP_TXN_ID),
    );
    check_coordinator_moved(&kill, COORDINATOR_CTP_TXN_ID);
    eprintln!(
        "ctp-stream: {} input records copied, {} rebalances, {} records of batches dropped on a \
         rebalance",
        int(&r, "input"),
        int(&r, "rebalances"),
        int(&r, "discarded_batch_records")
    );
    assert!(int(&r, "input") > 0, "no input: {r}");
    assert_eq!(
        int(&r, "output_read_committed"),
        int(&r, "input"),
        "the output must hold exactly one copy of each input record: {r}"
    );
    assert_eq!(
        r["committed_offsets"], r["input_ends"],
        "the group's committed offsets must be the input's end offsets: {r}"
    );
    assert!(
        int(&r, "committed_while_down") > 0 && int(&r, "committed_after_restart") > 0,
        "transactions must commit while the coordinator is down and after its restart: {r}"
    );
    for id in 1..=3 {
        c.assert_alive(id);
    }
}

// ---- exactly once through partition leader and coordinator kills ----

const EOS_INPUT: &str = "eos-in";
const EOS_OUTPUT: &str = "eos-out";
const EOS_GROUP: &str = "eos-group";
/// The workers: one transactional id each, chosen so that different nodes coordinate them.
const EOS_WORKERS: usize = 2;
/// What the exactly-once test kills, in order: the leader of an output partition (one that
/// coordinates neither worker's transactional id, when there is one), then the coordinator of
/// each worker's transactional id.
const EOS_KILLS: [EosVictim; 3] = [
    EosVictim::OutputLeader,
    EosVictim::Coordinator(0),
    EosVictim::Coordinator(1),
];
/// How long a killed node stays down: past the 2 s broker session timeout, so that its
/// partitions and `__transaction_state` partitions fail over and transactions go on through
/// their new leaders.
const EOS_DOWN_FOR: Duration = Duration::from_secs(5);
/// Transactions committed before the first kill, and after each restart before what comes next.
const EOS_COMMITS_BETWEEN: i64 = 4;
/// The whole test's bound (CI allows a fault test a minute; nextest terminates it then): every
/// wait ends by then with a message, the program's output and the nodes' logs. A passing run
/// takes about half of it.
const EOS_BUDGET: Duration = Duration::from_secs(56);
/// What the program is left of the budget once told to stop: to copy what is left of the input
/// and to read the output back.
const EOS_DRAIN_SECONDS: &str = "12";
const EOS_READ_SECONDS: &str = "8";
/// Longer than a failover takes here (a few seconds) by far.
const EOS_STALL_SECONDS: &str = "15";

#[derive(Clone, Copy, Debug)]
enum EosVictim {
    OutputLeader,
    Coordinator(usize),
}

/// `EOS_WORKERS` transactional ids (`eos-worker-N`) that FindCoordinator puts on different
/// nodes, as far as there are nodes.
fn eos_transactional_ids(c: &mut Cluster) -> Vec<String> {
    let mut ids: Vec<(String, i32)> = Vec::new();
    for n in 0.. {
        let id = format!("eos-worker-{n}");
        // The first FindCoordinator creates __transaction_state: wait for an answer.
        let node = c.wait_for(
            Duration::from_secs(30),
            &format!("FindCoordinator for {id}"),
            |c| transaction_coordinator(c, &id),
        );
        if ids.iter().all(|(_, other)| *other != node) || n >= 50 {
            ids.push((id, node));
        }
        if ids.len() == EOS_WORKERS {
            break;
        }
    }
    eprintln!("workers' transactional ids and their coordinators: {ids:?}");
    ids.into_iter().map(|(id, _)| id).collect()
}

/// The node to kill now, and a description for the log.
fn eos_victim(c: &mut Cluster, victim: EosVictim, txn_ids: &[String]) -> (i32, String) {
    let coordinators: Vec<i32> = txn_ids
        .iter()
        .map(|id| {
            c.wait_for(
                Duration::from_secs(15),
                &format!("FindCoordinator for {id}"),
                |c| transaction_coordinator(c, id),
            )
        })
        .collect();
    match victim {
        EosVictim::Coordinator(w) => (
            coordinators[w],
            format!(
                "the transaction coordinator of {} (coordinators: {coordinators:?})",
                txn_ids[w]
            ),
        ),
        EosVictim::OutputLeader => {
            let view = c.controller_view().expect("a node answers Metadata");
            let leaders: Vec<(i32, i32)> = view.topics[EOS_OUTPUT]
                .iter()
                .map(|(p, v)| (*p, v.leader))
                .filter(|(_, leader)| *leader >= 0)
                .collect();
            let (partition, leader) = leaders
                .iter()
                .find(|(_, leader)| !coordinators.contains(leader))
                .or(leaders.first())
                .copied()
                .expect("an output partition with a leader");
            (
                leader,
                format!(
                    "leader of {EOS_OUTPUT}/{partition} (transaction coordinators: \
                     {coordinators:?})"
                ),
            )
        }
    }
}

/// Waits until every partition of the test's topics and of the internal topics is led and has
/// its whole replica set in the ISR: the restarted node has caught up, so that the next kill
/// leaves every partition a quorum (`min.insync.replicas` 2).
fn eos_wait_healed(c: &mut Cluster, deadline: Instant) {
    c.wait_for(
        deadline.saturating_duration_since(Instant::now()),
        "every partition led with its whole replica set in the ISR",
        |c| {
            let view = c.controller_view()?;
            [
                EOS_INPUT,
                EOS_OUTPUT,
                "__transaction_state",
                "__consumer_offsets",
            ]
            .iter()
            .filter_map(|t| view.topics.get(*t))
            .flat_map(|parts| parts.values())
            .all(|p| p.error == 0 && p.leader >= 0 && p.isr.len() == p.replicas.len())
            .then_some(())
        },
    );
}

/// Waits until the program has printed `committed=N` for `n` or more transactions.
fn eos_wait_commits(
    p: &mut Program,
    output: &dyn Fn() -> String,
    n: i64,
    what: &str,
    deadline: Instant,
) {
    let started = Instant::now();
    while committed_so_far(&output()) < n {
        if let Some(s) = p.0.try_wait().unwrap() {
            panic!("eos exited ({s}) {what}:\n{}", output());
        }
        assert!(
            Instant::now() < deadline,
            "fewer than {n} transactions committed {what} after {:?}:\n{}",
            started.elapsed(),
            output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Consume-transform-produce exactly once while the leader of an output partition and the
/// coordinators of the workers' transactional ids are SIGKILLed and restarted, one after the
/// other, during one run (`confluent_txn.py eos`; its header lists the checks).
#[test]
fn exactly_once_through_leader_and_coordinator_kills() {
    if !client_ready() {
        return;
    }
    let started = Instant::now();
    let deadline = started + EOS_BUDGET;
    let mut c = Cluster::start(3, THREE_NODES);
    c.create_topic_everywhere(EOS_INPUT, 4, 3, DATA_TOPIC_CONFIGS);
    c.create_topic_everywhere(EOS_OUTPUT, 3, 3, DATA_TOPIC_CONFIGS);
    let txn_ids = eos_transactional_ids(&mut c);
    let seed: u64 = std::env::var("RUNNEL_EOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64
                % 1_000_000
        });
    eprintln!("abort seed {seed} (RUNNEL_EOS_SEED={seed} makes the workers abort the same way)");

    let control = tempfile::Builder::new()
        .prefix("runnel-eos-")
        .tempdir()
        .unwrap();
    let out_path = control.path().join("output");
    let out = File::create(&out_path).unwrap();
    let seed_arg = seed.to_string();
    let ids_arg = txn_ids.join(",");
    let max_seconds = deadline
        .saturating_duration_since(Instant::now())
        .as_secs()
        .to_string();
    let child = program(
        "eos",
        &c.bootstrap(),
        &[
            "--input",
            EOS_INPUT,
            "--output",
            EOS_OUTPUT,
            "--group",
            EOS_GROUP,
            "--transactional-ids",
            &ids_arg,
            "--seed",
            &seed_arg,
            "--control",
            control.path().to_str().unwrap(),
            "--max-seconds",
            &max_seconds,
            "--drain-seconds",
            EOS_DRAIN_SECONDS,
            "--read-seconds",
            EOS_READ_SECONDS,
            "--stall-seconds",
            EOS_STALL_SECONDS,
        ],
    )
    .stdin(Stdio::null())
    .stdout(out.try_clone().unwrap())
    .stderr(out)
    .spawn()
    .unwrap_or_else(|e| panic!("cannot run python3 {PROGRAM}: {e}"));
    let mut p = Program(child);
    let output = || std::fs::read_to_string(&out_path).unwrap_or_default();

    let mut target = EOS_COMMITS_BETWEEN;
    for (k, victim) in EOS_KILLS.iter().enumerate() {
        let k = k + 1;
        eos_wait_commits(
            &mut p,
            &output,
            target,
            &format!("before kill {k}"),
            deadline,
        );
        let (id, what) = eos_victim(&mut c, *victim, &txn_ids);
        c.kill(id);
        mark(control.path(), &format!("killed-{k}"));
        eprintln!(
            "{:?}: kill {k}: SIGKILLed node {id}, {what}, after {} commits",
            started.elapsed(),
            committed_so_far(&output())
        );
        std::thread::sleep(EOS_DOWN_FOR);
        c.restart(id);
        mark(control.path(), &format!("restarted-{k}"));
        let at_restart = committed_so_far(&output());
        eprintln!(
            "{:?}: restarted node {id} after {at_restart} commits",
            started.elapsed()
        );
        eos_wait_healed(&mut c, deadline);
        target = at_restart + EOS_COMMITS_BETWEEN;
    }
    eos_wait_commits(&mut p, &output, target, "after the last restart", deadline);
    mark(control.path(), "stop");
    let stopped = Instant::now();
    eprintln!("{:?}: stopped the input", started.elapsed());

    let status = wait_exit(&mut p, deadline.saturating_duration_since(Instant::now()));
    let out = output();
    println!("{out}");
    let Some(status) = status else {
        panic!(
            "eos did not finish within {EOS_BUDGET:?} of the test's start ({:?} after the \
             stop):\n{out}",
            stopped.elapsed()
        );
    };
    let r = parse_result(&out).unwrap_or_else(|| panic!("eos: no RESULT ({status}):\n{out}"));
    eprintln!(
        "eos: {} input records; {} transactions in {} s: {} committed, {} aborted on purpose \
         ({} records left in the log), {} on errors, {} of unknown outcome ({} visible; {} given \
         up on in a hung send_offsets_to_transaction); {} producers; kills {}; errors {}; \
         concurrent reader and LSO samples {}; {:?} in all",
        int(&r, "input"),
        int(&r, "transactions"),
        r["seconds"],
        int(&r, "committed"),
        int(&r, "aborted_on_purpose"),
        int(&r, "aborted_records_in_log"),
        int(&r, "aborted_on_error"),
        int(&r, "unknown"),
        int(&r, "unknown_visible"),
        int(&r, "send_offsets_hung"),
        int(&r, "producers"),
        r["kills"],
        r["errors"],
        r["watch"],
        started.elapsed(),
    );
    assert!(
        status.success() && r["ok"] == Value::Bool(true),
        "exactly once failed ({status}): {:#}\n(full output above)",
        r["failures"]
    );
    assert_eq!(
        r["kills"].as_array().map(|k| k.len()),
        Some(EOS_KILLS.len()),
        "the program did not see every kill and restart: {r}"
    );
    assert!(
        int(&r, "aborted_records_in_log") > 0 && int(&r, "committed") > 0,
        "both committed and aborted (flushed) transactions must have run: {r}"
    );
    assert_eq!(
        int(&r, "output_read_committed"),
        int(&r, "input"),
        "the output must hold exactly one copy of each input record: {r}"
    );
    let w = &r["watch"];
    assert!(
        int(w, "records") > 0 && int(w, "aborted_seen") == 0,
        "the concurrent read_committed consumer got nothing or aborted records: {w}"
    );
    assert!(
        int(w, "lso_samples") > 0 && int(w, "lso_regressions") == 0,
        "the last stable offset went backwards (or was never sampled): {w}"
    );
    for id in 1..=3 {
        c.assert_alive(id);
    }
}
