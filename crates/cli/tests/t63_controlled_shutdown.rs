//! Level 63: controlled shutdown and preferred-leader election across real `runnel server`
//! processes.
//!
//! - Controlled shutdown: three nodes, a topic with 3 partitions, RF=3, `min.insync.replicas=2`,
//!   and an rdkafka producer (acks=all, idempotent) sending continuously. SIGTERM the node
//!   leading a partition: every partition it led must get another ISR member as leader well
//!   before `broker.session.timeout.ms` (10 s here, so fencing cannot be what moved it), the
//!   process must exit 0 on its own, no delivery may fail, and after a restart the node rejoins
//!   every ISR and every acknowledged record is in the log at its acknowledged offset, once.
//!   Once with a node that is not the active controller, once with the active controller.
//! - Preferred leader election: after such a shutdown and restart the node is in the ISR but
//!   leads nothing; `runnel leader-election --election-type preferred --all-topic-partitions`
//!   makes each partition's first replica its leader again, and a second run has nothing to do.
//! - Auto leader rebalance (`leader.imbalance.check.interval.seconds=1`): after a leader is
//!   SIGKILLed and restarted, leadership returns to it on its own once it is back in the ISR.
//!
//! Durations worth watching are printed to stderr (`t63:` lines). The nodes run one test at a
//! time (the `cluster` test group in .config/nextest.toml).

mod cluster;
mod common;
mod replication_util;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures::FutureExt;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

use cluster::{Cluster, PartitionView};
use replication_util::*;

const PARTITIONS: i32 = 3;
const SESSION_TIMEOUT_MS: u64 = 10_000;

/// Fast heartbeats (the controlled-shutdown hand-over rides on them) and Raft elections, but a
/// long broker session: a leadership that moves within a few seconds of SIGTERM was moved by
/// the controlled shutdown, not by fencing. No automatic rebalance: each test decides who leads.
const SHUTDOWN_SETTINGS: &[&str] = &[
    "broker.heartbeat.interval.ms=250",
    "broker.session.timeout.ms=10000",
    "controller.quorum.election.timeout.ms=500",
    "replica.fetch.backoff.ms=200",
    "auto.leader.rebalance.enable=false",
];

/// SIGTERM → a new leader in Metadata for every partition the node led: well below the session
/// timeout.
const MOVE_BOUND: Duration = Duration::from_millis(SESSION_TIMEOUT_MS / 2);
/// SIGTERM → process exit (the controlled shutdown itself may wait up to 30 s,
/// `controlled.shutdown.timeout.ms`; a shutdown that needs that long failed).
const EXIT_BOUND: Duration = Duration::from_secs(15);
/// Restart → back in every ISR.
const REJOIN_BOUND: Duration = Duration::from_secs(30);
/// Longest an acknowledged send may take from enqueue to acknowledgement. Waiting out a session
/// timeout (10 s) would exceed it. Typical: ~0.5 s (librdkafka re-routing a moved partition).
/// When the active controller shuts down, a leader sometimes proposes re-adding the departing
/// broker to an ISR just before the controller exits; the proposal stays in flight (and the
/// broker counts for the high watermark) until a new controller refuses it, so acks=all stalls
/// for about a Raft election (~1.5-2 s seen).
const MAX_DELIVERY_LATENCY: Duration = Duration::from_secs(5);
/// Acknowledgements to wait for in each phase (before, while down, after).
const PHASE_ACKS: u64 = 150;
const PHASE_BOUND: Duration = Duration::from_secs(30);

// ---- a continuous acks=all producer -------------------------------------------------------------

/// One send and its outcome.
#[derive(Debug, Clone)]
struct Sent {
    value: String,
    partition: i32,
    /// Since the producer started.
    sent: Duration,
    done: Duration,
    /// The acknowledged offset, or why the delivery failed.
    result: Result<i64, String>,
}

struct Traffic {
    /// The producer's clock: `Sent` times count from here.
    start: Instant,
    stop: Arc<AtomicBool>,
    /// Acknowledged sends per partition so far.
    acked: Arc<Vec<AtomicU64>>,
    failed: Arc<AtomicU64>,
    thread: Option<JoinHandle<Vec<Sent>>>,
}

/// Records a producer keeps in flight.
const WINDOW: usize = 60;
const MESSAGE_TIMEOUT_MS: u64 = 30_000;

impl Traffic {
    /// Starts an idempotent acks=all rdkafka producer sending `v<seq>` round-robin over the
    /// partitions of `topic`, about 200 records/s, until [`Self::finish`].
    fn start(bootstrap: &str, topic: &str) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(
            (0..PARTITIONS)
                .map(|_| AtomicU64::new(0))
                .collect::<Vec<_>>(),
        );
        let failed = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("message.timeout.ms", MESSAGE_TIMEOUT_MS.to_string())
            .set("request.timeout.ms", "10000")
            .set("retry.backoff.ms", "50")
            .set("retry.backoff.max.ms", "500")
            .set("reconnect.backoff.max.ms", "1000")
            .create()
            .expect("producer");
        let thread = {
            let (stop, acked, failed) = (stop.clone(), acked.clone(), failed.clone());
            let topic = topic.to_string();
            std::thread::spawn(move || {
                run_producer(producer, &topic, start, &stop, &acked, &failed)
            })
        };
        Traffic {
            start,
            stop,
            acked,
            failed,
            thread: Some(thread),
        }
    }

    /// Milliseconds on the producer's clock.
    fn now_ms(&self) -> u128 {
        self.start.elapsed().as_millis()
    }

    fn acked(&self) -> Vec<u64> {
        self.acked
            .iter()
            .map(|a| a.load(Ordering::SeqCst))
            .collect()
    }

    /// Waits until every partition has `n` more acknowledgements than now; panics (with the
    /// nodes' logs) after `PHASE_BOUND` or on any failed delivery.
    fn wait_progress(&self, c: &mut Cluster, n: u64, phase: &str) {
        let from = self.acked();
        let started = Instant::now();
        c.wait_for(
            PHASE_BOUND,
            &format!("{n} more acks=all deliveries on every partition ({phase})"),
            |_| {
                let failed = self.failed.load(Ordering::SeqCst);
                assert_eq!(failed, 0, "{phase}: {failed} deliveries failed");
                let now = self.acked();
                now.iter().zip(&from).all(|(a, b)| a - b >= n).then_some(())
            },
        );
        eprintln!(
            "t63: {phase}: {n} more acks on every partition in {} ms (acked so far {:?})",
            started.elapsed().as_millis(),
            self.acked()
        );
    }

    /// Stops sending, waits for every outstanding delivery and returns every send.
    fn finish(mut self) -> Vec<Sent> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .unwrap()
            .join()
            .expect("producer thread panicked")
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn run_producer(
    producer: FutureProducer,
    topic: &str,
    start: Instant,
    stop: &AtomicBool,
    acked: &[AtomicU64],
    failed: &AtomicU64,
) -> Vec<Sent> {
    let mut inflight: Vec<(String, i32, Duration, DeliveryFuture)> = Vec::new();
    let mut done = Vec::new();
    let mut seq = 0u64;
    let resolve = |inflight: &mut Vec<(String, i32, Duration, DeliveryFuture)>,
                   done: &mut Vec<Sent>| {
        let mut still = Vec::with_capacity(inflight.len());
        for (value, partition, sent, mut fut) in inflight.drain(..) {
            let result = match (&mut fut).now_or_never() {
                None => {
                    still.push((value, partition, sent, fut));
                    continue;
                }
                Some(Ok(Ok(d))) => {
                    assert_eq!(d.partition, partition, "{value} acknowledged elsewhere");
                    acked[partition as usize].fetch_add(1, Ordering::SeqCst);
                    Ok(d.offset)
                }
                Some(Ok(Err((e, _)))) => {
                    eprintln!("t63: producer: delivery of {value} to p{partition} failed: {e}");
                    failed.fetch_add(1, Ordering::SeqCst);
                    Err(e.to_string())
                }
                Some(Err(_)) => {
                    failed.fetch_add(1, Ordering::SeqCst);
                    Err("delivery report cancelled".into())
                }
            };
            done.push(Sent {
                value,
                partition,
                sent,
                done: start.elapsed(),
                result,
            });
        }
        *inflight = still;
    };
    while !stop.load(Ordering::SeqCst) {
        resolve(&mut inflight, &mut done);
        if let Some((code, reason)) = producer.client().fatal_error() {
            eprintln!("t63: producer: fatal error {code:?}: {reason}");
            failed.fetch_add(1, Ordering::SeqCst);
            break;
        }
        if inflight.len() >= WINDOW {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        let value = format!("v{seq}");
        let partition = (seq % PARTITIONS as u64) as i32;
        let record = FutureRecord::<(), str>::to(topic)
            .partition(partition)
            .payload(&value);
        match producer.send_result(record) {
            Ok(fut) => {
                inflight.push((value, partition, start.elapsed(), fut));
                seq += 1;
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {}
            Err((e, _)) => panic!("producer: enqueue failed: {e}"),
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = producer.flush(Duration::from_millis(MESSAGE_TIMEOUT_MS + 5_000));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !inflight.is_empty() && Instant::now() < deadline {
        resolve(&mut inflight, &mut done);
        std::thread::sleep(Duration::from_millis(10));
    }
    for (value, partition, sent, _) in inflight {
        failed.fetch_add(1, Ordering::SeqCst);
        done.push(Sent {
            value,
            partition,
            sent,
            done: start.elapsed(),
            result: Err("no delivery report after flush".into()),
        });
    }
    done
}

/// Asserts that no delivery failed and none took longer than `MAX_DELIVERY_LATENCY`; prints
/// the slowest delivery and the longest gap between acknowledgements of each partition (times
/// on the producer's clock, as the events printed by `shutdown_round`).
fn check_deliveries(c: &Cluster, sends: &[Sent], what: &str) {
    let failed: Vec<&Sent> = sends.iter().filter(|s| s.result.is_err()).collect();
    assert!(
        failed.is_empty(),
        "{what}: {} of {} deliveries failed, e.g. {:?}\n{}",
        failed.len(),
        sends.len(),
        &failed[..failed.len().min(5)],
        diag(c)
    );
    let slowest = sends
        .iter()
        .max_by_key(|s| s.done - s.sent)
        .expect("no sends");
    let mut gaps = Vec::new();
    for p in 0..PARTITIONS {
        let mut done: Vec<Duration> = sends
            .iter()
            .filter(|s| s.partition == p)
            .map(|s| s.done)
            .collect();
        done.sort();
        if let Some((from, to)) = done
            .windows(2)
            .map(|w| (w[0], w[1]))
            .max_by_key(|(a, b)| *b - *a)
        {
            gaps.push(format!(
                "p{p} {} ms (t={}..{})",
                (to - from).as_millis(),
                from.as_millis(),
                to.as_millis()
            ));
        }
    }
    eprintln!(
        "t63: {what}: {} deliveries, none failed; slowest {} ms ({} to p{}, sent at t={}); \
         longest gap between acks: {}",
        sends.len(),
        (slowest.done - slowest.sent).as_millis(),
        slowest.value,
        slowest.partition,
        slowest.sent.as_millis(),
        gaps.join(", ")
    );
    assert!(
        slowest.done - slowest.sent <= MAX_DELIVERY_LATENCY,
        "{what}: delivery of {} to p{} took {:?} (bound {MAX_DELIVERY_LATENCY:?})",
        slowest.value,
        slowest.partition,
        slowest.done - slowest.sent
    );
}

/// Reads every partition of `topic` from its leader (per node `via`) and checks that each
/// acknowledged send is at its acknowledged offset and that no value appears twice.
fn check_log(c: &mut Cluster, via: i32, topic: &str, sends: &[Sent]) {
    let mut seen: BTreeMap<String, Vec<(i32, i64)>> = BTreeMap::new();
    let mut logs = BTreeMap::new();
    for p in 0..PARTITIONS {
        let leader = wait_partition(c, via, topic, p, Duration::from_secs(10), "led", |v| {
            v.leader >= 0
        })
        .leader;
        let read = read_to_hw(c.addr(leader), topic, p)
            .unwrap_or_else(|e| panic!("read {topic}-{p} from leader {leader}: {e}\n{}", diag(c)));
        let mut by_offset = BTreeMap::new();
        for (offset, _epoch, value) in read.records {
            seen.entry(value.clone()).or_default().push((p, offset));
            by_offset.insert(offset, value);
        }
        eprintln!(
            "t63: {topic}-{p}: read {} records up to the high watermark {} from leader {leader}",
            by_offset.len(),
            read.high_watermark
        );
        logs.insert(p, by_offset);
    }
    let mut missing = Vec::new();
    for s in sends {
        if let Ok(offset) = s.result {
            let found = logs[&s.partition].get(&offset);
            if found != Some(&s.value) {
                missing.push(format!(
                    "{} acked at {}-{}@{offset}, log has {found:?}",
                    s.value, topic, s.partition
                ));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} acknowledged records are not at their offsets, e.g. {:?}\n{}",
        missing.len(),
        &missing[..missing.len().min(10)],
        diag(c)
    );
    let dups: Vec<_> = seen.iter().filter(|(_, at)| at.len() > 1).collect();
    assert!(
        dups.is_empty(),
        "{} values are in the log more than once (idempotent producer), e.g. {:?}",
        dups.len(),
        &dups[..dups.len().min(10)]
    );
    let acked = sends.iter().filter(|s| s.result.is_ok()).count();
    eprintln!("t63: all {acked} acknowledged records found at their offsets, none duplicated");
}

// ---- controlled shutdown ------------------------------------------------------------------------

/// What one SIGTERM → restart round measured.
struct Round {
    /// Partition → (time from SIGTERM to a new leader in Metadata, the partition then).
    moved: BTreeMap<i32, (Duration, PartitionView)>,
    exited_after: Duration,
    rejoined_after: Duration,
}

/// Polls Metadata at `addr` until every one of `partitions` of `topic` has a leader other than
/// `victim`, or `bound` passes; returns when each was first seen moved.
fn watch_moves(
    addr: SocketAddr,
    topic: String,
    victim: i32,
    partitions: Vec<i32>,
    t0: Instant,
    bound: Duration,
) -> JoinHandle<BTreeMap<i32, (Duration, PartitionView)>> {
    std::thread::spawn(move || {
        let mut moved = BTreeMap::new();
        while moved.len() < partitions.len() && t0.elapsed() < bound {
            if let Ok(v) = cluster::metadata(addr) {
                if let Some(t) = v.topics.get(&topic) {
                    for &p in &partitions {
                        if let Some(pv) = t.get(&p) {
                            if !moved.contains_key(&p) && pv.leader >= 0 && pv.leader != victim {
                                moved.insert(p, (t0.elapsed(), pv.clone()));
                            }
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        moved
    })
}

/// The first node other than `victim`.
fn other_than(c: &Cluster, victim: i32) -> i32 {
    c.nodes
        .iter()
        .map(|n| n.id)
        .find(|&id| id != victim)
        .unwrap()
}

/// SIGTERMs `victim` (which leads some partitions of `topic`) while `traffic` runs, checks the
/// hand-over, runs `while_down`, restarts it and waits until it is back in every ISR.
fn shutdown_round(
    c: &mut Cluster,
    topic: &str,
    victim: i32,
    traffic: &Traffic,
    while_down: impl FnOnce(&mut Cluster),
) -> Round {
    let watcher = other_than(c, victim);
    let before = c.view(watcher).expect("metadata").topics[topic].clone();
    let led: Vec<i32> = before
        .iter()
        .filter(|(_, p)| p.leader == victim)
        .map(|(&i, _)| i)
        .collect();
    assert!(!led.is_empty(), "node {victim} leads nothing: {before:?}");
    eprintln!(
        "t63: t={} SIGTERM node {victim}, leader of {topic} partitions {led:?}",
        traffic.now_ms()
    );

    let t0 = Instant::now();
    let observer = watch_moves(
        c.addr(watcher),
        topic.to_string(),
        victim,
        led.clone(),
        t0,
        Duration::from_secs(40),
    );
    let status = c.terminate(victim);
    let exited_after = t0.elapsed();
    let moved = observer.join().expect("metadata watcher panicked");
    let log = c.stderr(victim);
    eprintln!(
        "t63: node {victim} exited with {status} {} ms after SIGTERM",
        exited_after.as_millis()
    );
    for (p, (after, view)) in &moved {
        eprintln!(
            "t63: {topic}-{p}: leader {victim} -> {} {} ms after SIGTERM (epoch {}, ISR {:?})",
            view.leader,
            after.as_millis(),
            view.leader_epoch,
            view.isr
        );
    }
    let tail = || {
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    };
    for &p in &led {
        let Some((after, view)) = moved.get(&p) else {
            panic!(
                "{topic}-{p}: still led by {victim} (per node {watcher}) 40 s after SIGTERM\n\
                 ---- node {victim} ----\n{}\n{}",
                tail(),
                diag(c)
            );
        };
        assert!(
            *after <= MOVE_BOUND,
            "{topic}-{p}: leadership moved only {after:?} after SIGTERM (bound {MOVE_BOUND:?}; \
             session timeout {SESSION_TIMEOUT_MS} ms)\n---- node {victim} ----\n{}",
            tail()
        );
        assert!(
            before[&p].isr.contains(&view.leader) && view.isr.contains(&view.leader),
            "{topic}-{p}: new leader {} was not an ISR member: before {:?}, after {view:?}",
            view.leader,
            before[&p]
        );
    }
    assert!(
        status.success(),
        "node {victim} exited with {status} after SIGTERM\n{}",
        tail()
    );
    assert!(
        exited_after <= EXIT_BOUND,
        "node {victim} took {exited_after:?} to exit after SIGTERM\n{}",
        tail()
    );
    assert!(
        log.contains("controlled shutdown granted")
            && log.contains("no partition is led here any more")
            && !log.contains("controlled shutdown did not complete"),
        "node {victim}: the controlled shutdown did not complete\n{}",
        tail()
    );

    // Producing goes on while the node is down, to every partition, with an ISR of two.
    traffic.wait_progress(c, PHASE_ACKS, &format!("node {victim} down"));
    while_down(c);

    eprintln!("t63: t={} restarting node {victim}", traffic.now_ms());
    c.restart(victim);
    let t1 = Instant::now();
    for p in 0..PARTITIONS {
        wait_partition(
            c,
            watcher,
            topic,
            p,
            REJOIN_BOUND,
            &format!("restarted node {victim} back in the ISR"),
            |v| v.leader >= 0 && sorted(&v.isr) == sorted(&v.replicas),
        );
    }
    let rejoined_after = t1.elapsed();
    eprintln!(
        "t63: node {victim} restarted; back in every ISR of {topic} after {} ms",
        rejoined_after.as_millis()
    );
    traffic.wait_progress(c, PHASE_ACKS, &format!("node {victim} back"));
    Round {
        moved,
        exited_after,
        rejoined_after,
    }
}

/// Starts the cluster, creates `topic` and waits until every partition is led by its preferred
/// (first) replica; returns the active controller.
fn setup(c: &mut Cluster, topic: &str) -> i32 {
    let controller = c.wait_converged(3, Duration::from_secs(30)).controller;
    create_replicated(
        c,
        controller,
        topic,
        PARTITIONS,
        3,
        &[("min.insync.replicas", "2")],
    );
    for p in 0..PARTITIONS {
        wait_partition(
            c,
            controller,
            topic,
            p,
            Duration::from_secs(10),
            "led by its preferred replica",
            |v| v.leader == v.replicas[0],
        );
    }
    controller
}

/// The leader of partition 0, or when that is the active controller, of the first partition
/// led by another node.
fn leader_not_controller(c: &Cluster, topic: &str, controller: i32) -> i32 {
    let t = c.view(controller).expect("metadata").topics[topic].clone();
    t.values()
        .map(|p| p.leader)
        .find(|&l| l >= 0 && l != controller)
        .unwrap_or_else(|| panic!("every partition is led by the controller {controller}: {t:?}"))
}

fn controlled_shutdown_case(topic: &str, shut_down_controller: bool) {
    let mut c = Cluster::start(3, SHUTDOWN_SETTINGS);
    let controller = setup(&mut c, topic);
    let victim = if shut_down_controller {
        controller
    } else {
        leader_not_controller(&c, topic, controller)
    };
    eprintln!("t63: active controller {controller}; shutting down node {victim}");
    let traffic = Traffic::start(&c.bootstrap(), topic);
    traffic.wait_progress(&mut c, PHASE_ACKS, "before SIGTERM");
    let round = shutdown_round(&mut c, topic, victim, &traffic, |_| {});
    let sends = traffic.finish();
    check_deliveries(&c, &sends, topic);
    let via = other_than(&c, victim);
    check_log(&mut c, via, topic, &sends);
    let times: Vec<String> = round
        .moved
        .iter()
        .map(|(p, (t, _))| format!("p{p} {} ms", t.as_millis()))
        .collect();
    eprintln!(
        "t63: SUMMARY {topic}: SIGTERM -> new leader: {}; exit after {} ms; ISR rejoin after {} ms",
        times.join(", "),
        round.exited_after.as_millis(),
        round.rejoined_after.as_millis()
    );
}

#[test]
fn controlled_shutdown_of_a_leader_moves_leadership_without_failed_sends() {
    controlled_shutdown_case("cs-broker", false);
}

#[test]
fn controlled_shutdown_of_the_active_controller_moves_leadership_without_failed_sends() {
    controlled_shutdown_case("cs-controller", true);
}

// ---- preferred leader election ------------------------------------------------------------------

/// Runs the `runnel` binary with `args` (bounded): (success, stdout, stderr).
fn runnel(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out_path = dir.join("cli.stdout");
    let err_path = dir.join("cli.stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_runnel"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("spawn runnel");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("runnel {args:?} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap();
    let stderr = std::fs::read_to_string(&err_path).unwrap();
    eprintln!("t63: $ runnel {}  (exit {status})", args.join(" "));
    for l in stdout.lines() {
        eprintln!("t63:   {l}");
    }
    for l in stderr.lines() {
        eprintln!("t63:   [stderr] {l}");
    }
    (status.success(), stdout, stderr)
}

fn running_bootstrap(c: &Cluster) -> String {
    c.running()
        .iter()
        .map(|&id| c.addr(id).to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn preferred_leader_election_returns_leadership_to_the_restarted_node() {
    let topic = "pref";
    let mut c = Cluster::start(3, SHUTDOWN_SETTINGS);
    let controller = setup(&mut c, topic);
    let victim = leader_not_controller(&c, topic, controller);
    let cli_dir = tempfile::tempdir().unwrap();
    let traffic = Traffic::start(&c.bootstrap(), topic);
    traffic.wait_progress(&mut c, PHASE_ACKS, "before SIGTERM");

    let round = shutdown_round(&mut c, topic, victim, &traffic, |c| {
        // While the preferred replica is down, a preferred election for its partition fails.
        let p = *c.view(controller).unwrap().topics[topic]
            .iter()
            .find(|(_, v)| v.replicas[0] == victim)
            .expect("a partition preferring the victim")
            .0;
        let (ok, out, err) = runnel(
            cli_dir.path(),
            &[
                "leader-election",
                "--bootstrap-server",
                &running_bootstrap(c),
                "--election-type",
                "preferred",
                "--topic",
                topic,
                "--partition",
                &p.to_string(),
            ],
        );
        assert!(
            !ok,
            "a preferred election with the preferred replica down succeeded"
        );
        assert!(
            out.starts_with(&format!(
                "Error completing leader election (PREFERRED) for partition: {topic}-{p}: \
                 PREFERRED_LEADER_NOT_AVAILABLE"
            )),
            "stdout {out:?}, stderr {err:?}"
        );
    });

    // Back in every ISR, leading nothing: the controlled shutdown moved its leaderships and no
    // rebalance brings them back.
    let via = other_than(&c, victim);
    let before = c.view(via).unwrap().topics[topic].clone();
    assert!(
        before.values().all(|p| p.leader != victim),
        "restarted node {victim} leads again without an election: {before:?}"
    );
    let expected: Vec<String> = before
        .iter()
        .filter(|(_, p)| p.leader != p.replicas[0])
        .map(|(i, _)| format!("{topic}-{i}"))
        .collect();
    assert_eq!(
        expected,
        round
            .moved
            .keys()
            .map(|p| format!("{topic}-{p}"))
            .collect::<Vec<_>>(),
        "the partitions off their preferred leader are those the shutdown moved: {before:?}"
    );

    let bootstrap = c.bootstrap();
    let elect_all = [
        "leader-election",
        "--bootstrap-server",
        &bootstrap,
        "--election-type",
        "preferred",
        "--all-topic-partitions",
    ];
    eprintln!("t63: t={} preferred leader election", traffic.now_ms());
    let t0 = Instant::now();
    let (ok, out, err) = runnel(cli_dir.path(), &elect_all);
    assert!(ok, "leader-election failed: stdout {out:?} stderr {err:?}");
    assert_eq!(
        out,
        format!(
            "Successfully completed leader election (PREFERRED) for partitions {}\n",
            expected.join(", ")
        ),
        "stderr {err:?}"
    );
    for id in c.running() {
        for p in 0..PARTITIONS {
            wait_partition(
                &mut c,
                id,
                topic,
                p,
                Duration::from_secs(10),
                "led by its preferred replica after the election",
                |v| v.leader == v.replicas[0] && sorted(&v.isr) == sorted(&v.replicas),
            );
        }
    }
    eprintln!(
        "t63: preferred leaders back on every node {} ms after the command started",
        t0.elapsed().as_millis()
    );

    // Nothing left to elect: with --all-topic-partitions Kafka's tool (and Runnel's) lists no
    // partition at all; naming one says it already has a valid leader.
    let (ok, out, err) = runnel(cli_dir.path(), &elect_all);
    assert!(ok, "second leader-election failed: {out:?} {err:?}");
    assert_eq!(out, "", "second --all-topic-partitions run: stderr {err:?}");
    for p in 0..PARTITIONS {
        let (ok, out, err) = runnel(
            cli_dir.path(),
            &[
                "leader-election",
                "--bootstrap-server",
                &bootstrap,
                "--election-type",
                "preferred",
                "--topic",
                topic,
                "--partition",
                &p.to_string(),
            ],
        );
        assert!(ok, "leader-election {topic}-{p} failed: {out:?} {err:?}");
        assert_eq!(
            out,
            format!("Valid replica already elected for partitions {topic}-{p}\n"),
            "stderr {err:?}"
        );
    }

    // The moves back were graceful too.
    traffic.wait_progress(&mut c, PHASE_ACKS, "after the preferred election");
    let sends = traffic.finish();
    check_deliveries(&c, &sends, topic);
    check_log(&mut c, via, topic, &sends);
}

// ---- automatic leader rebalance -----------------------------------------------------------------

#[test]
fn auto_leader_rebalance_returns_leadership_to_the_preferred_replica() {
    let topic = "rebalance";
    let mut c = Cluster::start(
        3,
        &[
            "broker.heartbeat.interval.ms=250",
            "broker.session.timeout.ms=2000",
            "controller.quorum.election.timeout.ms=500",
            "replica.fetch.backoff.ms=200",
            "auto.leader.rebalance.enable=true",
            "leader.imbalance.check.interval.seconds=1",
        ],
    );
    let controller = setup(&mut c, topic);
    let victim = leader_not_controller(&c, topic, controller);
    let view = c.view(controller).unwrap().topics[topic].clone();
    let (&p, pv) = view.iter().find(|(_, v)| v.leader == victim).unwrap();
    assert_eq!(pv.replicas[0], victim, "{pv:?}");
    eprintln!("t63: active controller {controller}; SIGKILL node {victim}, leader of {topic}-{p}");

    let mut acked = Vec::new();
    for i in 0..5 {
        let v = format!("before-{i}");
        let o = produce_ok(&mut c, controller, topic, p, &v, -1);
        acked.push((o, v));
    }
    c.kill(victim);
    let t0 = Instant::now();
    wait_partition(
        &mut c,
        controller,
        topic,
        p,
        Duration::from_secs(20),
        &format!("led by another node after node {victim} was killed"),
        |v| v.leader >= 0 && v.leader != victim,
    );
    eprintln!(
        "t63: {topic}-{p}: new leader {} ms after SIGKILL",
        t0.elapsed().as_millis()
    );
    for i in 0..5 {
        let v = format!("down-{i}");
        let o = produce_ok(&mut c, controller, topic, p, &v, -1);
        acked.push((o, v));
    }
    // While the preferred replica is out of the ISR the rebalance must leave the partition alone.
    std::thread::sleep(Duration::from_secs(2));
    let pv = partition_view(&c, controller, topic, p).unwrap();
    assert!(
        pv.leader != victim && !pv.isr.contains(&victim),
        "{topic}-{p} while node {victim} is down: {pv:?}"
    );

    c.restart(victim);
    let t1 = Instant::now();
    let in_isr = wait_partition(
        &mut c,
        controller,
        topic,
        p,
        REJOIN_BOUND,
        &format!("restarted node {victim} back in the ISR"),
        |v| v.isr.contains(&victim),
    );
    let rejoined = t1.elapsed();
    let back = wait_partition(
        &mut c,
        controller,
        topic,
        p,
        Duration::from_secs(15),
        &format!("preferred replica {victim} leads again (auto rebalance)"),
        |v| v.leader == victim,
    );
    let total = t1.elapsed();
    eprintln!(
        "t63: SUMMARY {topic}-{p}: restart -> in ISR {} ms (leader then {}), -> preferred leader \
         again {} ms (rebalance {} ms after the ISR rejoin seen), epoch {}",
        rejoined.as_millis(),
        in_isr.leader,
        total.as_millis(),
        (total - rejoined).as_millis(),
        back.leader_epoch
    );
    assert!(back.isr.contains(&victim), "{back:?}");
    for q in 0..PARTITIONS {
        wait_partition(
            &mut c,
            controller,
            topic,
            q,
            Duration::from_secs(15),
            "led by its preferred replica",
            |v| v.leader == v.replicas[0],
        );
    }

    for i in 0..5 {
        let v = format!("after-{i}");
        let o = produce_ok(&mut c, controller, topic, p, &v, -1);
        acked.push((o, v));
    }
    let read = read_to_hw(c.addr(victim), topic, p)
        .unwrap_or_else(|e| panic!("read {topic}-{p} from node {victim}: {e}\n{}", diag(&c)));
    let log: BTreeMap<i64, String> = read.records.into_iter().map(|(o, _, v)| (o, v)).collect();
    for (o, v) in &acked {
        assert_eq!(
            log.get(o),
            Some(v),
            "acked {v} at {topic}-{p}@{o}; log {log:?}\n{}",
            diag(&c)
        );
    }
}
