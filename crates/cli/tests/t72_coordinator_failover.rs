//! Level 72: group coordinator failover.
//!
//! Three nodes; `__consumer_offsets` with 3 partitions (RF=3), topic `busy` with 6 partitions,
//! RF=3, `min.insync.replicas=2`. An idempotent acks=all producer writes continuously while two
//! rdkafka group consumers (manual commits of their positions every 200 ms) consume the topic.
//! Once both have committed, the test SIGKILLs the broker that coordinates the group (the
//! leader of the group's `__consumer_offsets` partition) and restarts it 4 s later.
//!
//! Checked:
//! - before the kill only the coordinator answers for the group (the others: NOT_COORDINATOR);
//!   from then to the end a sampler asks every node every 50 ms and never finds two nodes
//!   answering for the group in one round (the restarted node must not serve it from its old
//!   state);
//! - a new coordinator is elected and commits succeed again (the time from the kill to the
//!   first acknowledged commit is printed: the coordinator failover time);
//! - committed offsets are intact: every commit acknowledged before the kill is in force at the
//!   new coordinator, and no record below such a commit is consumed again after the kill;
//! - consumption continued: the group processes every acknowledged record and its commits
//!   reach the end of every partition.

mod cluster;
mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{ApiKey, GroupId, OffsetFetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use cluster::Cluster;
use common::{negotiate, Conn};

const SETTINGS: &[&str] = &[
    "broker.heartbeat.interval.ms=250",
    "broker.session.timeout.ms=2000",
    "controller.quorum.election.timeout.ms=500",
    "replica.lag.time.max.ms=3000",
    "offsets.topic.num.partitions=3",
    "group.initial.rebalance.delay.ms=0",
];
const TOPIC: &str = "busy";
const GROUP: &str = "busy-group";
const PARTITIONS: i32 = 6;
const OFFSETS_TOPIC: &str = "__consumer_offsets";
const DOWN_FOR: Duration = Duration::from_secs(4);

/// When a sampler round ran, and which nodes answered for the group in it.
type Sample = (Instant, Vec<i32>);

#[derive(Default)]
struct Shared {
    /// (member, partition, offset, when)
    processed: Vec<(usize, i32, i64, Instant)>,
    /// Acknowledged commits: (when, partition -> next offset).
    commits: Vec<(Instant, BTreeMap<i32, i64>)>,
    failed_commits: Vec<(Instant, String)>,
    /// (partition, offset) of every acknowledged produce.
    acked: Vec<(i32, i64)>,
    produce_errors: u64,
}

fn consumer(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", GROUP)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "500")
        .set("reconnect.backoff.max.ms", "1000")
        .set("topic.metadata.refresh.interval.ms", "2000")
        .create()
        .expect("consumer")
}

fn run_member(
    idx: usize,
    bootstrap: String,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let c = consumer(&bootstrap);
        c.subscribe(&[TOPIC]).expect("subscribe");
        let mut last_commit = Instant::now();
        let mut positions: BTreeMap<i32, i64> = BTreeMap::new();
        let commit = |c: &BaseConsumer, positions: &BTreeMap<i32, i64>| {
            let assigned: HashSet<i32> = c
                .assignment()
                .map(|a| a.elements().iter().map(|e| e.partition()).collect())
                .unwrap_or_default();
            let mine: BTreeMap<i32, i64> = positions
                .iter()
                .filter(|(p, _)| assigned.contains(p))
                .map(|(p, o)| (*p, *o))
                .collect();
            if mine.is_empty() {
                return;
            }
            let mut tpl = TopicPartitionList::new();
            for (p, o) in &mine {
                tpl.add_partition_offset(TOPIC, *p, Offset::Offset(*o))
                    .expect("tpl");
            }
            let r = c.commit(&tpl, CommitMode::Sync);
            let now = Instant::now();
            let mut s = shared.lock().unwrap();
            match r {
                Ok(()) => s.commits.push((now, mine)),
                Err(e) => s.failed_commits.push((now, e.to_string())),
            }
        };
        while !stop.load(Ordering::Relaxed) {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
                positions.insert(m.partition(), m.offset() + 1);
                shared.lock().unwrap().processed.push((
                    idx,
                    m.partition(),
                    m.offset(),
                    Instant::now(),
                ));
            }
            if last_commit.elapsed() >= Duration::from_millis(200) {
                commit(&c, &positions);
                last_commit = Instant::now();
            }
        }
        commit(&c, &positions);
        drop(c);
    })
}

fn run_producer(
    bootstrap: String,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let p: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000")
            .set("request.timeout.ms", "5000")
            .set("reconnect.backoff.max.ms", "1000")
            .create()
            .expect("producer");
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let futs: Vec<_> = (0..50)
                .map(|_| {
                    n += 1;
                    let key = format!("k{}", n % 97);
                    let value = format!("v{n}");
                    p.send_result(FutureRecord::to(TOPIC).key(&key).payload(&value))
                        .map_err(|(e, _)| e)
                })
                .collect();
            for f in futs {
                let r = match f {
                    Ok(f) => futures::executor::block_on(f),
                    Err(_) => {
                        shared.lock().unwrap().produce_errors += 1;
                        continue;
                    }
                };
                let mut s = shared.lock().unwrap();
                match r {
                    Ok(Ok(d)) => s.acked.push((d.partition, d.offset)),
                    _ => s.produce_errors += 1,
                }
            }
            thread::sleep(Duration::from_millis(20));
        }
    })
}

/// The group's `__consumer_offsets` partition, as the broker computes it.
fn offsets_partition() -> i32 {
    runnel_broker::coordinators::group::partition_for(GROUP, 3)
}

/// Which node leads the group's offsets partition, per the first running node that answers.
fn coordinator_by_metadata(c: &Cluster) -> Option<i32> {
    let v = c.controller_view()?;
    let p = v.topics.get(OFFSETS_TOPIC)?.get(&offsets_partition())?;
    (p.leader >= 0).then_some(p.leader)
}

/// OffsetFetch for the group at `addr`: Ok(committed offsets) if it answers as the group's
/// coordinator, Err(error code, or -1 when unreachable) otherwise.
fn offset_fetch(addr: SocketAddr) -> Result<BTreeMap<i32, i64>, i16> {
    let mut conn = Conn::connect(addr).map_err(|_| -1i16)?;
    let v = negotiate(&mut conn, ApiKey::OffsetFetch)
        .map_err(|_| -1i16)?
        .min(7);
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partition_indexes((0..PARTITIONS).collect())]));
    let resp = conn.request(v, &req).map_err(|_| -1i16)?;
    if resp.error_code != 0 {
        return Err(resp.error_code);
    }
    let mut out = BTreeMap::new();
    for t in &resp.topics {
        for p in &t.partitions {
            if p.error_code != 0 {
                return Err(p.error_code);
            }
            if p.committed_offset >= 0 {
                out.insert(p.partition_index, p.committed_offset);
            }
        }
    }
    Ok(out)
}

const NOT_COORDINATOR: i16 = 16;

#[test]
fn coordinator_failover_keeps_commits_and_consumption() {
    let mut c = Cluster::start(3, SETTINGS);
    c.create_topic_everywhere(TOPIC, PARTITIONS, 3, &[("min.insync.replicas", "2")]);
    let bootstrap = c.bootstrap();
    let shared = Arc::new(Mutex::new(Shared::default()));
    let stop_producer = Arc::new(AtomicBool::new(false));
    let stop_members = Arc::new(AtomicBool::new(false));
    let producer = run_producer(bootstrap.clone(), shared.clone(), stop_producer.clone());
    let members: Vec<_> = (0..2)
        .map(|i| run_member(i, bootstrap.clone(), shared.clone(), stop_members.clone()))
        .collect();

    // Both members consume and commit; then find the coordinator.
    c.wait_for(Duration::from_secs(60), "both members commit", |_| {
        let s = shared.lock().unwrap();
        let members: HashSet<usize> = s.processed.iter().map(|(m, ..)| *m).collect();
        (members.len() == 2 && s.commits.len() >= 10).then_some(())
    });
    let coordinator = c.wait_for(
        Duration::from_secs(30),
        "__consumer_offsets is led",
        coordinator_by_metadata,
    );
    // Every node agrees: only the coordinator answers for the group.
    for id in c.running() {
        let r = offset_fetch(c.addr(id));
        if id == coordinator {
            assert!(r.is_ok(), "coordinator {id} answered {r:?}");
        } else {
            assert_eq!(r, Err(NOT_COORDINATOR), "node {id} is not the coordinator");
        }
    }

    // Sample every node for the rest of the test: never two coordinators in one round.
    let sampling = Arc::new(AtomicBool::new(true));
    let sample_log: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let ports: Vec<(i32, SocketAddr)> = c.nodes.iter().map(|n| (n.id, c.addr(n.id))).collect();
    let sampler = {
        let sampling = sampling.clone();
        let sample_log = sample_log.clone();
        let c_ports = ports.clone();
        thread::spawn(move || {
            let mut bad = Vec::new();
            while sampling.load(Ordering::Relaxed) {
                let mut answering = Vec::new();
                for (id, addr) in &c_ports {
                    if offset_fetch(*addr).is_ok() {
                        answering.push(*id);
                    }
                }
                if answering.len() > 1 {
                    bad.push(answering.clone());
                }
                sample_log.lock().unwrap().push((Instant::now(), answering));
                thread::sleep(Duration::from_millis(50));
            }
            bad
        })
    };

    let before_kill: BTreeMap<i32, i64> = {
        let s = shared.lock().unwrap();
        let mut m = BTreeMap::new();
        for (_, commit) in &s.commits {
            for (p, o) in commit {
                let e = m.entry(*p).or_insert(*o);
                *e = (*e).max(*o);
            }
        }
        m
    };
    let killed_at = Instant::now();
    c.kill(coordinator);
    eprintln!("killed coordinator node {coordinator}");

    // A new coordinator takes over and commits succeed again.
    let new_coordinator = c.wait_for(Duration::from_secs(30), "a new coordinator", |c| {
        coordinator_by_metadata(c).filter(|l| *l != coordinator)
    });
    let first_commit_after = c.wait_for(
        Duration::from_secs(60),
        "a commit acknowledged after the kill",
        |_| {
            let s = shared.lock().unwrap();
            s.commits
                .iter()
                .find(|(t, _)| *t > killed_at)
                .map(|(t, _)| *t)
        },
    );
    let failover = first_commit_after - killed_at;
    eprintln!(
        "coordinator failover: node {coordinator} -> {new_coordinator}; first commit acknowledged {} ms after the kill",
        failover.as_millis()
    );
    let after = offset_fetch(c.addr(new_coordinator)).expect("new coordinator answers");
    for (p, o) in &before_kill {
        assert!(
            after.get(p).is_some_and(|a| a >= o),
            "partition {p}: committed {o} before the kill, the new coordinator has {:?}",
            after.get(p)
        );
    }

    // The killed node returns as a follower (the preferred-leader rebalance runs only every
    // 300 s, so the coordinator stays where it is and the sampler's check stays exact).
    thread::sleep(DOWN_FOR.saturating_sub(killed_at.elapsed()));
    c.restart(coordinator);
    c.wait_for(
        Duration::from_secs(60),
        "the old coordinator rejoins the ISR",
        |c| {
            let v = c.controller_view()?;
            let p = v.topics.get(OFFSETS_TOPIC)?.get(&offsets_partition())?;
            p.isr.contains(&coordinator).then_some(())
        },
    );
    // Let the group run on for a while with the old coordinator back.
    let resumed = Instant::now();
    c.wait_for(Duration::from_secs(60), "commits after the restart", |_| {
        let s = shared.lock().unwrap();
        (resumed.elapsed() > Duration::from_secs(5)
            && s.commits.iter().filter(|(t, _)| *t > resumed).count() >= 5)
            .then_some(())
    });

    // Stop producing; the group drains everything acknowledged.
    stop_producer.store(true, Ordering::Relaxed);
    producer.join().expect("producer thread");
    let acked: Vec<(i32, i64)> = shared.lock().unwrap().acked.clone();
    assert!(
        acked.len() > 1000,
        "only {} records acknowledged",
        acked.len()
    );
    let ends: HashMap<i32, i64> = acked.iter().fold(HashMap::new(), |mut m, (p, o)| {
        let e = m.entry(*p).or_insert(0);
        *e = (*e).max(*o + 1);
        m
    });
    c.wait_for(
        Duration::from_secs(90),
        "the group consumed every acknowledged record",
        |_| {
            let s = shared.lock().unwrap();
            let seen: HashSet<(i32, i64)> =
                s.processed.iter().map(|(_, p, o, _)| (*p, *o)).collect();
            acked.iter().all(|r| seen.contains(r)).then_some(())
        },
    );
    // And commits reach the end.
    c.wait_for(Duration::from_secs(30), "commits reach the log end", |c| {
        let coord = coordinator_by_metadata(c)?;
        let committed = offset_fetch(c.addr(coord)).ok()?;
        ends.iter()
            .all(|(p, end)| committed.get(p).is_some_and(|o| o >= end))
            .then_some(())
    });
    stop_members.store(true, Ordering::Relaxed);
    for m in members {
        m.join().expect("member thread");
    }
    sampling.store(false, Ordering::Relaxed);
    let double = sampler.join().expect("sampler");

    let s = shared.lock().unwrap();
    // No record below a commit acknowledged before the kill was processed again after it.
    let mut regressions = Vec::new();
    for (_, p, o, t) in &s.processed {
        if *t > killed_at && before_kill.get(p).is_some_and(|c| o < c) {
            regressions.push((*p, *o));
        }
    }
    let mut counts: HashMap<(i32, i64), u32> = HashMap::new();
    for (_, p, o, _) in &s.processed {
        *counts.entry((*p, *o)).or_default() += 1;
    }
    let duplicates = counts.values().filter(|n| **n > 1).count();
    let samples = sample_log.lock().unwrap();
    let empty_rounds = samples.iter().filter(|(_, a)| a.is_empty()).count();
    eprintln!(
        "acked {} records, processed {} ({} processed more than once), {} commits ({} failed), \
         {} produce errors; sampler: {} rounds, {} with no coordinator answering",
        acked.len(),
        s.processed.len(),
        duplicates,
        s.commits.len(),
        s.failed_commits.len(),
        s.produce_errors,
        samples.len(),
        empty_rounds
    );
    assert!(
        regressions.is_empty(),
        "{} records below a pre-kill commit were consumed again after the kill, e.g. {:?}",
        regressions.len(),
        &regressions[..regressions.len().min(10)]
    );
    assert!(
        double.is_empty(),
        "two brokers answered for the group in one sample round: {double:?}"
    );
    let codes_seen: HashSet<&str> = s.failed_commits.iter().map(|(_, e)| e.as_str()).collect();
    eprintln!("failed commit errors: {codes_seen:?}");
}
