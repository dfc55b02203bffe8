//! Level 61: real clients through a partition-leader SIGKILL.
//!
//! Per client, a three-node cluster and a topic with 1 partition, RF=3,
//! `min.insync.replicas=2`. The client program from `tests/failover/` produces a steady stream
//! with acks=all while a group consumer reads the topic live; once 100 sends are acknowledged
//! this test SIGKILLs the partition's leader, tells the program when (a file in its control
//! directory), and restarts the node 4 s later. The program keeps producing, then reads the
//! partition back with a fresh consumer and prints one `RESULT {json}` line; see the header of
//! each program for exactly what it checks. Asserted here: the producer continued (sends were
//! acknowledged after the kill), every acknowledged record is in the log at its acknowledged
//! offset, and the live consumer continued and consumed every acknowledged record. The
//! unavailability window (kill to the first acknowledgement after it) is printed.
//!
//! Clients are found as in `t10_clients.rs`: `python3` with the `confluent_kafka` module, and
//! `node` with kafkajs in `tests/compat/kafkajs/node_modules` (both installed by
//! `scripts/install-test-deps.sh`). A missing client skips its test with a message on a dev
//! machine, and fails it when `CI` is set (CI=true); `RUNNEL_SKIP_CLIENTS=confluent,kafkajs`
//! skips explicitly, as in t10.

mod cluster;
mod common;

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cluster::Cluster;
use common::repo_root;

/// As in t50_cluster and t60_jepsen: failover within a couple of seconds.
const SETTINGS: &[&str] = &[
    "broker.heartbeat.interval.ms=250",
    "broker.session.timeout.ms=2000",
    "controller.quorum.election.timeout.ms=500",
    "replica.lag.time.max.ms=3000",
];
/// The leader is killed once the program has this many acknowledged sends.
const KILL_AFTER_ACKS: u64 = 100;
/// How long the killed node stays down.
const DOWN_FOR: Duration = Duration::from_secs(4);
/// Start to kill, and kill to the program's exit.
const BEFORE_KILL_TIMEOUT: Duration = Duration::from_secs(90);
const AFTER_KILL_TIMEOUT: Duration = Duration::from_secs(180);

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Whether the client can run here. Skips (returns false) only when it is listed in
/// RUNNEL_SKIP_CLIENTS, or is missing and this is not CI.
fn client_ready(client: &str, probe: &mut Command) -> bool {
    let listed = std::env::var("RUNNEL_SKIP_CLIENTS")
        .unwrap_or_default()
        .split([',', ' '])
        .any(|c| c.trim() == client);
    if listed {
        eprintln!("SKIPPED: {client} failover test: {client} is listed in RUNNEL_SKIP_CLIENTS");
        return false;
    }
    let why = match probe.stdin(Stdio::null()).output() {
        Ok(o) if o.status.success() => return true,
        // The last line says it (e.g. Python's "ModuleNotFoundError: ...").
        Ok(o) => String::from_utf8_lossy(&o.stderr)
            .trim()
            .lines()
            .last()
            .unwrap_or("no output")
            .to_string(),
        Err(e) => format!("cannot run {:?}: {e}", probe.get_program()),
    };
    assert!(
        !in_ci(),
        "{client} is not installed ({why}); CI must run this test: install it with \
         scripts/install-test-deps.sh"
    );
    eprintln!(
        "SKIPPED: {client} failover test: {client} is not installed ({why}). Run \
         scripts/install-test-deps.sh; with CI set this is a failure."
    );
    false
}

/// Kills the client program if the test panics.
struct Program(Child);

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The highest `acked=N` on a `progress` line.
fn acked_so_far(output: &str) -> u64 {
    output
        .lines()
        .filter(|l| l.starts_with("progress "))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("acked="))
                .and_then(|n| n.parse().ok())
        })
        .max()
        .unwrap_or(0)
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
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

fn run_failover(client: &str, program: &str, script: &str) {
    let mut c = Cluster::start(3, SETTINGS);
    let topic = format!("failover-{client}");
    c.create_topic_everywhere(&topic, 1, 3, &[("min.insync.replicas", "2")]);
    let control = tempfile::Builder::new()
        .prefix("runnel-failover-")
        .tempdir()
        .unwrap();
    let out_path = control.path().join("output");
    let out = File::create(&out_path).unwrap();
    let child = Command::new(program)
        .arg(script)
        .arg(c.bootstrap())
        .arg(&topic)
        .arg(control.path())
        .current_dir(repo_root())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program} {script}: {e}"));
    let mut p = Program(child);
    let output = || std::fs::read_to_string(&out_path).unwrap_or_default();

    // Steady traffic first.
    let deadline = Instant::now() + BEFORE_KILL_TIMEOUT;
    while acked_so_far(&output()) < KILL_AFTER_ACKS {
        if let Some(s) = p.0.try_wait().unwrap() {
            panic!(
                "{client} program exited ({s}) before the kill:\n{}",
                output()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{client}: fewer than {KILL_AFTER_ACKS} sends acknowledged after \
             {BEFORE_KILL_TIMEOUT:?}:\n{}",
            output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let view = c.controller_view().expect("a node answers Metadata");
    let before = view.topics[&topic][&0].clone();
    let leader = before.leader;
    assert!(leader >= 0, "partition 0 has no leader: {before:?}");
    c.kill(leader);
    let killed_at = now_ms();
    // Written then renamed, so the program never reads a half-written file.
    let tmp = control.path().join("killed.tmp");
    std::fs::write(&tmp, killed_at.to_string()).unwrap();
    std::fs::rename(&tmp, control.path().join("killed")).unwrap();
    eprintln!(
        "{client}: SIGKILLed node {leader}, leader of {topic}/0 (epoch {}, isr {:?})",
        before.leader_epoch, before.isr
    );
    std::thread::sleep(DOWN_FOR);
    c.restart(leader);
    eprintln!("{client}: restarted node {leader}");

    let status = wait_exit(&mut p, AFTER_KILL_TIMEOUT);
    let out = output();
    println!("{out}");
    let Some(status) = status else {
        panic!("{client} program did not finish within {AFTER_KILL_TIMEOUT:?} of the kill:\n{out}");
    };
    let result: serde_json::Value = out
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .map(|j| serde_json::from_str(j).expect("RESULT is JSON"))
        .unwrap_or_else(|| panic!("{client} program printed no RESULT ({status}):\n{out}"));
    let n = |k: &str| result[k].as_i64().unwrap_or(-1);
    eprintln!(
        "{client}: {} sends, {} acknowledged ({} after the kill), {} failed; first \
         acknowledgement {} ms after the kill; live consumer {} records ({} acknowledged after \
         the kill); final read {} records",
        n("sent"),
        n("acked"),
        n("acked_after_kill"),
        n("failed"),
        result["first_ack_after_kill_ms"],
        n("live_consumed"),
        n("live_after_kill"),
        n("final_read"),
    );

    let mut failures = Vec::new();
    if n("acked_after_kill") <= 0 {
        failures.push("the producer did not continue: nothing acknowledged after the kill".into());
    }
    if n("missing") != 0 || n("wrong_offset") != 0 {
        failures.push(format!(
            "acknowledged records lost: {} missing from the log, {} at another offset",
            n("missing"),
            n("wrong_offset")
        ));
    }
    if n("live_after_kill") <= 0 {
        failures.push("the live consumer did not continue after the kill".into());
    }
    if n("live_missing") != 0 {
        failures.push(format!(
            "the live consumer never got {} acknowledged records",
            n("live_missing")
        ));
    }
    // The program's own checks (e.g. no duplicates with idempotence) decide its exit status.
    if !status.success() {
        failures.push(format!(
            "{client} program failed ({status}): {}",
            result["failures"]
        ));
    }
    assert!(
        failures.is_empty(),
        "{client} through a leader kill:\n  {}\nresult: {result}\n(full output above)",
        failures.join("\n  ")
    );
    for id in 1..=3 {
        c.assert_alive(id);
    }
}

#[test]
fn confluent_kafka_producer_and_consumer_survive_a_leader_kill() {
    if !client_ready(
        "confluent",
        Command::new("python3").args(["-c", "import confluent_kafka"]),
    ) {
        return;
    }
    run_failover(
        "confluent",
        "python3",
        "tests/failover/confluent_failover.py",
    );
}

#[test]
fn kafkajs_producer_and_consumer_survive_a_leader_kill() {
    let kafkajs = repo_root().join("tests/compat/kafkajs/node_modules/kafkajs");
    if !client_ready(
        "kafkajs",
        Command::new("node")
            .args(["-e", "require(process.argv[1])"])
            .arg(Path::new(&kafkajs)),
    ) {
        return;
    }
    run_failover("kafkajs", "node", "tests/failover/kafkajs_failover.js");
}
