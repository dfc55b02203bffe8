//! Level 60: a Jepsen-style failover test of partition replication.
//!
//! Three nodes; topic `jepsen` with 3 partitions, RF=3, `min.insync.replicas=2`. Three rdkafka
//! producers (acks=all, enable.idempotence=true) write unique values `p<producer>-<seq>`,
//! spread round-robin over the partitions, while a seeded nemesis repeatedly picks a partition,
//! SIGKILLs its current leader, waits 1-4 s, restarts it and waits (bounded) until it is back in
//! that partition's ISR. Every send's outcome is recorded: acknowledged at (partition, offset),
//! failed, or indeterminate. After healing, every partition is read twice from its log start to
//! its high watermark (rdkafka BaseConsumer, assign, no group, read_uncommitted), and
//! `jepsen::checker` looks for lost, conflicting, reordered, duplicated and never-sent records.
//!
//! The same run twice: over PLAINTEXT, and with security on (`jepsen_sasl_ssl_mtls`): every
//! client connection SASL_SSL (each node's certificate from `scripts/dev-certs.sh`, SASL users)
//! and every connection between nodes (Raft, registration, heartbeats, forwarded admin
//! requests, replica fetches) mutual TLS; the checker holds both runs to the same guarantees.
//!
//! The schedule is reproducible: `RUNNEL_JEPSEN_SEED=<n>` picks it (the seed in use is printed
//! first). The checker's own unit tests (injected anomalies) are in `jepsen/checker.rs` and run
//! in this binary too: `cargo test -p runnel --test t60_jepsen jepsen::`.

mod cluster;
mod common;
mod jepsen;
mod security_util;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use cluster::{Cluster, Node};
use jepsen::checker;
use jepsen::history::{value_of, Outcome, PartitionRead, ReadBack, SendOp};
use jepsen::Rng;
use security_util::{rpc_tls, Certs};

const TOPIC: &str = "jepsen";
const PARTITIONS: i32 = 3;
const PRODUCERS: u32 = 3;
/// Nemesis rounds (kill a leader, wait, restart, wait for ISR).
const ROUNDS: usize = 4;
/// The seed when RUNNEL_JEPSEN_SEED is not set.
const DEFAULT_SEED: u64 = 4_000_004;

/// Short timeouts so failover (fencing after `broker.session.timeout.ms`) and ISR changes
/// happen within seconds; as in t50_cluster, plus a 3 s replica lag bound.
const SETTINGS: &[&str] = &[
    "broker.heartbeat.interval.ms=250",
    "broker.session.timeout.ms=2000",
    "controller.quorum.election.timeout.ms=500",
    "replica.lag.time.max.ms=3000",
    "unclean.leader.election.enable=false",
];

/// A record not acknowledged within this long is indeterminate.
const MESSAGE_TIMEOUT_MS: u64 = 15_000;
/// Pause between a producer's sends (each producer: at most ~100 records/s).
const SEND_INTERVAL: Duration = Duration::from_millis(10);
/// Records a producer keeps in flight per partition; a partition without a leader stalls only
/// its own sends.
const WINDOW: usize = 40;
/// How long the nemesis waits for a restarted node to rejoin the partition's ISR.
const ISR_BOUND: Duration = Duration::from_secs(8);
/// How long healing waits for every partition's ISR to be full again.
const HEAL_BOUND: Duration = Duration::from_secs(10);
/// How long one read-back may take.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The SCRAM user every client of the secured run authenticates as (`runnel server
/// --add-scram`, written into the metadata by the node that creates the cluster).
const SASL_MECHANISM: &str = "SCRAM-SHA-512";
const SASL_USER: &str = "jepsen";
const SASL_PASSWORD: &str = "jepsen-secret";

/// How clients reach the cluster and how its nodes reach each other.
#[derive(Debug, Clone, Copy)]
enum Security {
    /// PLAINTEXT client listeners, plaintext gRPC between nodes.
    Plaintext,
    /// SASL_SSL client listeners (each node's own certificate; clients trust the development CA
    /// and authenticate with SCRAM-SHA-512 as `SASL_USER`) and mutual TLS between nodes
    /// (`rpc.ssl.*`, each node's certificate naming `urn:runnel:node:<id>`).
    SaslSslMtls,
}

/// Where every rdkafka client of a run connects, and its security settings.
#[derive(Clone)]
struct Clients {
    bootstrap: String,
    settings: Vec<(String, String)>,
}

impl Clients {
    fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        for (k, v) in &self.settings {
            config.set(k, v);
        }
        config
    }
}

/// Starts the three nodes with `security` and says how clients reach them.
///
/// Secured, each node has two listeners: `SASL_SSL` for the clients under test, and the
/// harness's PLAINTEXT listener (`SETUP`, on the node's `kafka_port`), through which the
/// test only watches Metadata and creates the topic, as `security_util` does.
fn start_cluster(security: Security) -> (Cluster, Clients) {
    match security {
        Security::Plaintext => {
            let c = Cluster::start(3, SETTINGS);
            let bootstrap = c.bootstrap();
            (
                c,
                Clients {
                    bootstrap,
                    settings: Vec::new(),
                },
            )
        }
        Security::SaslSslMtls => {
            let certs = Certs::get();
            let sasl_ports: BTreeMap<i32, u16> =
                (1..=3).map(|id| (id, common::free_port())).collect();
            let bootstrap = sasl_ports
                .values()
                .map(|port| format!("127.0.0.1:{port}"))
                .collect::<Vec<_>>()
                .join(",");
            let settings = [
                ("security.protocol", "SASL_SSL".to_string()),
                ("sasl.mechanisms", SASL_MECHANISM.to_string()),
                ("sasl.username", SASL_USER.to_string()),
                ("sasl.password", SASL_PASSWORD.to_string()),
                ("ssl.ca.location", certs.ca()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            let node_args = move |n: &Node| {
                let mut props = vec![
                    (
                        "listeners".to_string(),
                        format!(
                            "SETUP://127.0.0.1:{},SASL_SSL://127.0.0.1:{}",
                            n.kafka_port, sasl_ports[&n.id]
                        ),
                    ),
                    (
                        "listener.security.protocol.map".to_string(),
                        "SETUP:PLAINTEXT,SASL_SSL:SASL_SSL".to_string(),
                    ),
                    ("ssl.keystore.location".to_string(), certs.node(n.id)),
                    ("ssl.truststore.location".to_string(), certs.ca()),
                    (
                        "sasl.enabled.mechanisms".to_string(),
                        SASL_MECHANISM.to_string(),
                    ),
                ];
                props.extend(rpc_tls(&certs, &format!("node-{}.pem", n.id)));
                let mut args: Vec<String> = props
                    .into_iter()
                    .flat_map(|(k, v)| ["--set".to_string(), format!("{k}={v}")])
                    .collect();
                // Every node gets it: whichever creates the cluster writes it, the others and
                // every restart ignore it.
                args.push("--add-scram".to_string());
                args.push(format!(
                    "{SASL_MECHANISM}=[name={SASL_USER},password={SASL_PASSWORD}]"
                ));
                args
            };
            let c = Cluster::start_with_node_args(3, SETTINGS, node_args);
            (
                c,
                Clients {
                    bootstrap,
                    settings,
                },
            )
        }
    }
}

fn seed() -> u64 {
    match std::env::var("RUNNEL_JEPSEN_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("RUNNEL_JEPSEN_SEED={s:?} is not a u64")),
        Err(_) => DEFAULT_SEED,
    }
}

/// The nemesis's log of what it did, in milliseconds since the start of the run.
struct Timeline {
    start: Instant,
    events: Vec<(u64, String)>,
}

impl Timeline {
    fn ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn log(&mut self, what: String) {
        let t = self.ms();
        eprintln!("jepsen: t={t:>6} ms  {what}");
        self.events.push((t, what));
    }
}

impl std::fmt::Display for Timeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (t, e) in &self.events {
            writeln!(f, "  t={t:>6} ms  {e}")?;
        }
        Ok(())
    }
}

// ---- producers ---------------------------------------------------------------------------------

struct Pending {
    seq: u64,
    partition: i32,
    sent_ms: u64,
    fut: DeliveryFuture,
}

struct ProducerRun {
    ops: Vec<SendOp>,
    /// Times the producer hit a fatal error and was replaced by a new instance.
    restarts: u32,
}

fn new_producer(clients: &Clients) -> FutureProducer {
    clients
        .config()
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", MESSAGE_TIMEOUT_MS.to_string())
        .set("request.timeout.ms", "5000")
        .set("retry.backoff.ms", "100")
        .set("retry.backoff.max.ms", "500")
        .set("reconnect.backoff.max.ms", "1000")
        .set("topic.metadata.refresh.interval.ms", "5000")
        .create()
        .expect("producer")
}

/// What a delivery error says about whether the record was appended. Only errors the broker
/// returns before appending count as failed; with librdkafka's internal retries even those
/// may follow an earlier attempt that was appended, so the checker allows both to appear once.
fn classify(e: &KafkaError) -> Outcome {
    use RDKafkaErrorCode as C;
    match e {
        KafkaError::MessageProduction(
            code @ (C::NotEnoughReplicas
            | C::MessageSizeTooLarge
            | C::InvalidMessage
            | C::InvalidMessageSize
            | C::MessageBatchTooLarge
            | C::InvalidRequiredAcks
            | C::InvalidRecord
            | C::TopicAuthorizationFailed),
        ) => Outcome::Failed(format!("{code:?}")),
        KafkaError::MessageProduction(code) => Outcome::Indeterminate(format!("{code:?}")),
        other => Outcome::Indeterminate(other.to_string()),
    }
}

/// Moves finished sends from `inflight` to `ops`. With `wait`, waits for all of them, up to
/// `MESSAGE_TIMEOUT_MS` plus a margin; any still unresolved then are indeterminate.
fn collect(
    producer: u32,
    inflight: &mut [VecDeque<Pending>],
    ops: &mut Vec<SendOp>,
    start: Instant,
    wait: bool,
) {
    let deadline = Instant::now() + Duration::from_millis(MESSAGE_TIMEOUT_MS + 10_000);
    loop {
        for q in inflight.iter_mut() {
            let mut still = VecDeque::with_capacity(q.len());
            for mut p in q.drain(..) {
                let outcome = match (&mut p.fut).now_or_never() {
                    None => {
                        still.push_back(p);
                        continue;
                    }
                    Some(Ok(Ok(d))) => Outcome::Acked {
                        partition: d.partition,
                        offset: d.offset,
                    },
                    Some(Ok(Err((e, _)))) => classify(&e),
                    Some(Err(_canceled)) => {
                        Outcome::Indeterminate("delivery report cancelled".into())
                    }
                };
                ops.push(SendOp {
                    producer,
                    seq: p.seq,
                    partition: p.partition,
                    outcome,
                    sent_ms: p.sent_ms,
                    done_ms: start.elapsed().as_millis() as u64,
                });
            }
            *q = still;
        }
        let left: usize = inflight.iter().map(VecDeque::len).sum();
        if !wait || left == 0 {
            return;
        }
        if Instant::now() > deadline {
            for q in inflight.iter_mut() {
                for p in q.drain(..) {
                    ops.push(SendOp {
                        producer,
                        seq: p.seq,
                        partition: p.partition,
                        outcome: Outcome::Indeterminate("no delivery report".into()),
                        sent_ms: p.sent_ms,
                        done_ms: start.elapsed().as_millis() as u64,
                    });
                }
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One producer: sends `p<id>-<seq>` round-robin over the partitions until `stop`, then drains.
fn produce(id: u32, clients: Clients, start: Instant, stop: Arc<AtomicBool>) -> ProducerRun {
    let ms = || start.elapsed().as_millis() as u64;
    let mut producer = new_producer(&clients);
    let mut inflight: Vec<VecDeque<Pending>> = (0..PARTITIONS).map(|_| VecDeque::new()).collect();
    let mut ops = Vec::new();
    let mut restarts = 0;
    let mut seq = 0u64;
    let mut next = id as i32 % PARTITIONS;
    while !stop.load(Ordering::SeqCst) {
        collect(id, &mut inflight, &mut ops, start, false);
        if let Some((code, reason)) = producer.client().fatal_error() {
            // An idempotent producer that cannot continue (e.g. its sequence state was lost
            // with a leader): dropping it purges everything in flight, which resolves every
            // pending report; then carry on with a new producer id.
            eprintln!(
                "jepsen: t={} ms producer p{id}: fatal {code:?}: {reason}; replacing it",
                ms()
            );
            drop(producer);
            collect(id, &mut inflight, &mut ops, start, true);
            producer = new_producer(&clients);
            restarts += 1;
            continue;
        }
        let Some(partition) = (0..PARTITIONS)
            .map(|k| (next + k) % PARTITIONS)
            .find(|&p| inflight[p as usize].len() < WINDOW)
        else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        let value = value_of(id, seq);
        let record = FutureRecord::<(), str>::to(TOPIC)
            .partition(partition)
            .payload(&value);
        let sent_ms = ms();
        match producer.send_result(record) {
            Ok(fut) => {
                inflight[partition as usize].push_back(Pending {
                    seq,
                    partition,
                    sent_ms,
                    fut,
                });
                seq += 1;
                next = (partition + 1) % PARTITIONS;
            }
            // Not enqueued: nothing was sent, and the seq is used for the next attempt.
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err((e, _)) => {
                eprintln!("jepsen: producer p{id}: enqueue failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        std::thread::sleep(SEND_INTERVAL);
    }
    let _ = producer.flush(Duration::from_millis(MESSAGE_TIMEOUT_MS + 5_000));
    collect(id, &mut inflight, &mut ops, start, true);
    ProducerRun { ops, restarts }
}

// ---- read-back ---------------------------------------------------------------------------------

/// Reads every partition from its log start to its high watermark (as ListOffsets reported
/// them when the read began) with a fresh consumer: assign, no group membership, no commits,
/// read_uncommitted.
fn read_back(clients: &Clients, label: &str) -> ReadBack {
    let consumer: BaseConsumer = clients
        .config()
        // librdkafka's assign() needs a group id; it is never joined (no subscribe) and no
        // offset is committed.
        .set("group.id", format!("jepsen-{label}"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_uncommitted")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut read = ReadBack::default();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        let (low, high) = loop {
            match consumer.fetch_watermarks(TOPIC, p, Duration::from_secs(5)) {
                Ok(w) => break w,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("jepsen: {label}: watermarks of p{p}: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => panic!("{label}: no watermarks for p{p}: {e}"),
            }
        };
        read.partitions.insert(
            p,
            PartitionRead {
                log_start: low,
                high_watermark: high,
                records: Vec::new(),
            },
        );
        tpl.add_partition_offset(TOPIC, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    let mut errors = 0;
    loop {
        let unread: Vec<(i32, i64, i64)> = read
            .partitions
            .iter()
            .filter_map(|(&p, r)| {
                let next = r.records.last().map_or(r.log_start, |(o, _)| o + 1);
                (next < r.high_watermark).then_some((p, next, r.high_watermark))
            })
            .collect();
        if unread.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{label}: read-back incomplete after {READ_TIMEOUT:?}: (partition, next offset, \
             high watermark) {unread:?}"
        );
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(e)) => {
                errors += 1;
                if errors <= 10 {
                    eprintln!("jepsen: {label}: consume error: {e}");
                }
            }
            Some(Ok(m)) => {
                let value = match m.payload() {
                    Some(b) => String::from_utf8_lossy(b).into_owned(),
                    None => "<null>".to_string(),
                };
                read.partitions
                    .get_mut(&m.partition())
                    .expect("a partition we assigned")
                    .records
                    .push((m.offset(), value));
            }
        }
    }
    eprintln!("jepsen: {label}: {read}");
    read
}

// ---- the test ----------------------------------------------------------------------------------

/// One cluster at a time, also when the tests run as threads of one process (`cargo test`):
/// two would compete for the CPU and time out elections for reasons the test is not about.
static ONE_CLUSTER: Mutex<()> = Mutex::new(());

#[test]
fn acknowledged_writes_survive_leader_kills() {
    jepsen(Security::Plaintext);
}

#[test]
fn jepsen_sasl_ssl_mtls() {
    jepsen(Security::SaslSslMtls);
}

fn jepsen(security: Security) {
    let _one = ONE_CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let seed = seed();
    eprintln!("jepsen: {security:?}, seed {seed} (replay with RUNNEL_JEPSEN_SEED={seed})");
    let mut rng = Rng::new(seed);
    let (mut c, clients) = start_cluster(security);
    c.create_topic_everywhere(TOPIC, PARTITIONS, 3, &[("min.insync.replicas", "2")]);
    let start = Instant::now();
    let mut timeline = Timeline {
        start,
        events: Vec::new(),
    };
    timeline.log(format!(
        "topic {TOPIC} ready; starting {PRODUCERS} producers"
    ));

    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|id| {
            let (clients, stop) = (clients.clone(), stop.clone());
            std::thread::spawn(move || produce(id, clients, start, stop))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));

    // ---- nemesis ----
    for round in 0..ROUNDS {
        let first = rng.range(0, PARTITIONS as u64) as i32;
        let (partition, before) = c.wait_for(
            Duration::from_secs(20),
            "a partition of the topic with a running leader",
            |c| {
                let v = c.controller_view()?;
                let t = v.topics.get(TOPIC)?;
                let running = c.running();
                (0..PARTITIONS)
                    .map(|k| (first + k) % PARTITIONS)
                    .find_map(|p| {
                        t.get(&p)
                            .filter(|pv| pv.leader >= 0 && running.contains(&pv.leader))
                            .map(|pv| (p, pv.clone()))
                    })
            },
        );
        let victim = before.leader;
        c.kill(victim);
        timeline.log(format!(
            "round {round}: SIGKILL node {victim}, leader of p{partition} (epoch {}, isr {:?})",
            before.leader_epoch, before.isr
        ));
        let down = rng.range(1_000, 4_001);
        std::thread::sleep(Duration::from_millis(down));
        let after = c
            .controller_view()
            .and_then(|v| v.topics.get(TOPIC)?.get(&partition).cloned());
        c.restart(victim);
        timeline.log(format!(
            "round {round}: restart node {victim} after {down} ms down (p{partition} then: {})",
            after.map_or("unknown".to_string(), |pv| format!(
                "leader {} epoch {} isr {:?}",
                pv.leader, pv.leader_epoch, pv.isr
            ))
        ));
        // The restarted broker must register again (no two nodes are ever down at once: the
        // controller quorum needs two of three).
        c.wait_for(
            Duration::from_secs(30),
            &format!("node {victim} registered again"),
            |c| {
                c.running()
                    .iter()
                    .all(|&id| {
                        c.view(id)
                            .is_ok_and(|v| v.brokers.iter().any(|(b, _)| *b == victim))
                    })
                    .then_some(())
            },
        );
        timeline.log(format!("round {round}: node {victim} registered"));
        let waited = Instant::now();
        let rejoined = loop {
            let isr = c
                .controller_view()
                .and_then(|v| Some(v.topics.get(TOPIC)?.get(&partition)?.isr.clone()));
            if isr.as_ref().is_some_and(|isr| isr.contains(&victim)) {
                break true;
            }
            if waited.elapsed() > ISR_BOUND {
                break false;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        timeline.log(format!(
            "round {round}: node {victim} {} p{partition}'s ISR after {} ms",
            if rejoined { "back in" } else { "NOT back in" },
            waited.elapsed().as_millis()
        ));
        std::thread::sleep(Duration::from_millis(rng.range(500, 1_500)));
    }

    // ---- heal ----
    let waited = Instant::now();
    let full = loop {
        let v = c.controller_view();
        let t = v.as_ref().and_then(|v| v.topics.get(TOPIC));
        if t.is_some_and(|t| {
            t.len() == PARTITIONS as usize
                && t.values()
                    .all(|p| p.leader >= 0 && p.isr.len() == p.replicas.len())
        }) {
            break true;
        }
        if waited.elapsed() > HEAL_BOUND {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let healed = c.wait_for(
        Duration::from_secs(30),
        "every partition led after healing",
        |c| {
            let v = c.controller_view()?;
            let t = v.topics.get(TOPIC)?.clone();
            (t.len() == PARTITIONS as usize && t.values().all(|p| p.leader >= 0)).then_some(t)
        },
    );
    let healed_ms = timeline.ms();
    timeline.log(format!(
        "healed: ISR {} full; {}",
        if full { "is" } else { "NOT" },
        healed
            .iter()
            .map(|(p, v)| format!(
                "p{p} leader {} epoch {} isr {:?}",
                v.leader, v.leader_epoch, v.isr
            ))
            .collect::<Vec<_>>()
            .join("; ")
    ));
    // Keep writing for a moment on the healed cluster, then stop and drain.
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    let mut history = Vec::new();
    let mut restarts = Vec::new();
    for (id, h) in producers.into_iter().enumerate() {
        let run = h.join().expect("producer thread panicked");
        restarts.push((id, run.restarts));
        history.extend(run.ops);
    }
    timeline.log(format!(
        "producers stopped: {} sends; fatal-error restarts per producer {restarts:?}",
        history.len()
    ));

    // ---- read and check ----
    let reads = vec![read_back(&clients, "read 1"), read_back(&clients, "read 2")];
    let report = checker::check(&history, &reads);
    let acked_after_heal = history
        .iter()
        .filter(|op| op.outcome.is_acked() && op.done_ms > healed_ms)
        .count();
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for op in &history {
        match &op.outcome {
            Outcome::Failed(e) => *errors.entry(format!("failed {e}")).or_default() += 1,
            Outcome::Indeterminate(e) => {
                *errors.entry(format!("indeterminate {e}")).or_default() += 1
            }
            Outcome::Acked { .. } => {}
        }
    }
    let summary = format!(
        "{security:?}, seed {seed} (replay with RUNNEL_JEPSEN_SEED={seed})\n{report}\
         unacknowledged outcomes: {errors:?}\n\
         acknowledged after healing: {acked_after_heal}\n\
         timeline:\n{timeline}"
    );
    eprintln!("jepsen: result\n{summary}");
    assert!(report.is_valid(), "jepsen: anomalies found\n{summary}");
    assert!(
        acked_after_heal > 0,
        "jepsen: no write was acknowledged after the cluster healed\n{summary}"
    );
    assert!(
        report.stats.acked > 1_000,
        "jepsen: too few writes acknowledged for the run to mean much\n{summary}"
    );
    for id in 1..=3 {
        c.assert_alive(id);
    }
}
