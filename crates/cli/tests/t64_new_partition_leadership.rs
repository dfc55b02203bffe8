//! Partitions right after their topic is created, on three real `runnel server` processes: a
//! node that a Metadata answer names leader of a partition serves it from then on.
//!
//! Every round creates a topic with replication factor 3 (CreateTopics to one node, or, every
//! other round, auto-creation by a Metadata request, as librdkafka's producer creates topics),
//! and at the same time, on every node: asks that node for Metadata until it lists the topic
//! with a leader for every partition, then sends ListOffsets, Produce and Fetch for every
//! partition to the leader it named, all in one burst (pipelined, one connection per leader).
//!
//! Nothing moves leadership here (no failures, no preferred-leader rebalancing), so
//! NOT_LEADER_OR_FOLLOWER (or a leader-epoch error) could only mean that the named leader had
//! not yet taken up a leadership the metadata already showed, which clients such as librdkafka
//! treat as final for ListOffsets. A node asked about a partition it named itself leader of
//! must answer without any error; a node named by another may at most not know the topic yet
//! (UNKNOWN_TOPIC_OR_PARTITION, or UNKNOWN_TOPIC_ID for Fetch by topic id: its metadata log is
//! behind, Kafka's answer of a lagging broker).

mod cluster;
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreateTopicsRequest, FetchRequest, ListOffsetsRequest, MetadataRequest,
    ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use runnel_client::consume::{fetch_request, FetchLimits};
use runnel_client::produce::{encode_batch, new_record, produce_request, ProducerIdentity};
use runnel_client::{ClientConfig, ClusterMeta, Connection, TopicMeta};

use cluster::Cluster;

const ROUNDS: usize = 30;
const PARTITIONS: i32 = 6;
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const UNKNOWN_TOPIC_ID: i16 = 100;

/// One partition's answer: which node named whom leader, and what the leader said.
#[derive(Clone)]
struct Answer {
    observer: i32,
    leader: i32,
    partition: i32,
    api: &'static str,
    code: i16,
}

/// The answer of a broker that has not applied the topic's creation yet (by name, or by topic id
/// for Fetch v13 and later).
fn unknown_topic(code: i16) -> bool {
    code == UNKNOWN_TOPIC_OR_PARTITION || code == UNKNOWN_TOPIC_ID
}

fn config() -> ClientConfig {
    ClientConfig::new("t64-new-partition-leadership")
}

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

async fn metadata(conn: &mut Connection, topic: &str, auto_create: bool) -> Result<ClusterMeta> {
    let mut req = MetadataRequest::default();
    let mut t = MetadataRequestTopic::default();
    t.name = Some(name(topic));
    req.topics = Some(vec![t]);
    req.allow_auto_topic_creation = auto_create;
    Ok(ClusterMeta::from_response(conn.request(&req).await?))
}

async fn create(addr: &str, topic: &str, auto: bool) -> Result<()> {
    let mut conn = Connection::connect(addr, &config()).await?;
    if auto {
        metadata(&mut conn, topic, true).await?;
        return Ok(());
    }
    let mut req = CreateTopicsRequest::default();
    req.topics = vec![CreatableTopic::default()
        .with_name(name(topic))
        .with_num_partitions(PARTITIONS)
        .with_replication_factor(3)];
    req.timeout_ms = 30_000;
    let resp = conn.request(&req).await?;
    let code = resp.topics.first().map_or(-1, |t| t.error_code);
    if code != 0 {
        bail!("CreateTopics {topic} on {addr}: error {code}");
    }
    Ok(())
}

/// Polls `observer` for Metadata until it shows `topic` with a leader for every partition.
async fn wait_listed(conn: &mut Connection, topic: &str) -> Result<TopicMeta> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let meta = metadata(conn, topic, false).await?;
        if let Some(t) = meta.topics.get(topic) {
            if t.error_code == 0
                && t.partitions.len() == PARTITIONS as usize
                && t.partitions
                    .iter()
                    .all(|p| p.error_code == 0 && p.leader >= 0)
            {
                return Ok(t.clone());
            }
        }
        if Instant::now() > deadline {
            bail!(
                "{} never listed {topic} with every partition led",
                conn.addr()
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// ListOffsets (latest), Produce (acks=1, one record) and Fetch (offset 0) for `partitions`,
/// written back to back on `conn` before any response is read.
async fn burst(
    conn: &mut Connection,
    observer: i32,
    leader: i32,
    topic: &TopicMeta,
    partitions: &[(i32, i32)],
) -> Result<Vec<Answer>> {
    let mut lt = ListOffsetsTopic::default();
    lt.name = name(&topic.name);
    lt.partitions = partitions
        .iter()
        .map(|&(p, epoch)| {
            let mut lp = ListOffsetsPartition::default();
            lp.partition_index = p;
            lp.current_leader_epoch = epoch;
            lp.timestamp = -1;
            lp
        })
        .collect();
    let mut list = ListOffsetsRequest::default();
    list.replica_id = BrokerId(-1);
    list.topics = vec![lt];

    let mut buf = BytesMut::new();
    let batches: Vec<(i32, Bytes)> = partitions
        .iter()
        .map(|&(p, _)| {
            let mut records = [new_record(
                None,
                Some(Bytes::from(format!("{observer}->{p}"))),
                runnel_client::produce::now_ms(),
            )];
            let batch = encode_batch(
                &mut buf,
                &mut records,
                ProducerIdentity::NONE,
                -1,
                Compression::None,
            )?;
            Ok((p, batch))
        })
        .collect::<Result<_>>()?;
    let produce = produce_request(topic, 1, 10_000, batches);

    let positions: Vec<(i32, i64)> = partitions.iter().map(|&(p, _)| (p, 0)).collect();
    let limits = FetchLimits {
        max_wait_ms: 0,
        ..FetchLimits::default()
    };
    let mut fetch = fetch_request(topic, &positions, &limits);
    for fp in &mut fetch.topics[0].partitions {
        fp.current_leader_epoch = partitions
            .iter()
            .find(|(p, _)| *p == fp.partition)
            .map_or(-1, |&(_, e)| e);
    }

    let lv = conn.version(ApiKey::ListOffsets)?;
    let pv = conn.version(ApiKey::Produce)?;
    let fv = conn.version(ApiKey::Fetch)?;
    let lc = conn.send(&list, lv).await?;
    let pc = conn.send(&produce, pv).await?;
    let fc = conn.send(&fetch, fv).await?;
    let mut out = Vec::new();
    let answer = |api, partition, code| Answer {
        observer,
        leader,
        partition,
        api,
        code,
    };
    for t in conn.recv::<ListOffsetsRequest>(lc, lv).await?.topics {
        for p in t.partitions {
            out.push(answer("ListOffsets", p.partition_index, p.error_code));
        }
    }
    for t in conn.recv::<ProduceRequest>(pc, pv).await?.responses {
        for p in t.partition_responses {
            out.push(answer("Produce", p.index, p.error_code));
        }
    }
    let resp = conn.recv::<FetchRequest>(fc, fv).await?;
    if resp.error_code != 0 {
        bail!("Fetch from {leader}: top-level error {}", resp.error_code);
    }
    for t in resp.responses {
        for p in t.partitions {
            out.push(answer("Fetch", p.partition_index, p.error_code));
        }
    }
    if out.len() != 3 * partitions.len() {
        bail!(
            "{leader} answered {} of {} partitions",
            out.len(),
            3 * partitions.len()
        );
    }
    Ok(out)
}

/// One node's part of a round: wait until it lists the topic, then a burst to every leader.
async fn probe(
    observer: i32,
    conns: &mut BTreeMap<i32, Connection>,
    topic: &str,
) -> Result<Vec<Answer>> {
    let own = conns
        .get_mut(&observer)
        .context("no connection to the observer")?;
    let meta = wait_listed(own, topic).await?;
    let mut by_leader: BTreeMap<i32, Vec<(i32, i32)>> = BTreeMap::new();
    for p in &meta.partitions {
        by_leader
            .entry(p.leader)
            .or_default()
            .push((p.index, p.leader_epoch));
    }
    let mut out = Vec::new();
    for (leader, parts) in by_leader {
        let conn = conns
            .get_mut(&leader)
            .with_context(|| format!("{topic}: unknown leader {leader}"))?;
        out.extend(burst(conn, observer, leader, &meta, &parts).await?);
    }
    Ok(out)
}

#[test]
fn a_node_named_leader_of_a_new_partition_serves_it() {
    let c = Cluster::start(
        3,
        &[
            "broker.heartbeat.interval.ms=250",
            "controller.quorum.election.timeout.ms=500",
            "auto.leader.rebalance.enable=false",
            &format!("num.partitions={PARTITIONS}"),
            "default.replication.factor=3",
        ],
    );
    let addrs: BTreeMap<i32, String> = c
        .nodes
        .iter()
        .map(|n| (n.id, c.addr(n.id).to_string()))
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let answers: Vec<Answer> = rt.block_on(async {
        // One connection from each observer to each node, kept for every round.
        let mut observers = Vec::new();
        for &observer in addrs.keys() {
            let mut conns = BTreeMap::new();
            for (&id, addr) in &addrs {
                conns.insert(id, Connection::connect(addr, &config()).await.unwrap());
            }
            observers.push((observer, conns));
        }
        let mut all = Vec::new();
        for round in 0..ROUNDS {
            let topic = format!("new-{round}");
            let auto = round % 2 == 1;
            let creator = addrs.values().nth(round % addrs.len()).unwrap().clone();
            let probes: Vec<_> = observers
                .drain(..)
                .map(|(observer, mut conns)| {
                    let topic = topic.clone();
                    tokio::spawn(async move {
                        let r = probe(observer, &mut conns, &topic).await;
                        (observer, conns, r)
                    })
                })
                .collect();
            create(&creator, &topic, auto)
                .await
                .unwrap_or_else(|e| panic!("round {round}: {e:#}"));
            for p in probes {
                let (observer, conns, r) = p.await.unwrap();
                all.extend(r.unwrap_or_else(|e| panic!("round {round}, node {observer}: {e:#}")));
                observers.push((observer, conns));
            }
        }
        all
    });
    let lagging: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.observer != a.leader && unknown_topic(a.code))
        .collect();
    let wrong: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.code != 0 && (a.observer == a.leader || !unknown_topic(a.code)))
        .collect();
    eprintln!(
        "{ROUNDS} rounds, {} answers in {:?}; {} from a leader whose metadata was behind, {} refused \
         (NOT_LEADER_OR_FOLLOWER: {})",
        answers.len(),
        started.elapsed(),
        lagging.len(),
        wrong.len(),
        wrong
            .iter()
            .filter(|a| a.code == NOT_LEADER_OR_FOLLOWER)
            .count()
    );
    let listed: Vec<String> = wrong
        .iter()
        .take(20)
        .map(|a| {
            format!(
                "node {} named {} leader of partition {}; {} answered error {}",
                a.observer, a.leader, a.partition, a.api, a.code
            )
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "a named leader refused its partition:\n{}",
        listed.join("\n")
    );
    assert_eq!(answers.len(), ROUNDS * 3 * 3 * PARTITIONS as usize);
}

/// The first FindCoordinator creates `__consumer_offsets`, whose 50 partitions each node takes
/// up one after the other. As soon as a coordinator is named, FindCoordinator is asked for 200
/// groups (every offsets partition several times) and each coordinator named gets OffsetFetch
/// for its groups, all pipelined. A coordinator its own metadata names must serve the group
/// (waiting, if need be, until it has taken up the partition): never NOT_COORDINATOR, which
/// sends clients back to FindCoordinator and a retry backoff (librdkafka's first JoinGroup lost
/// seconds that way).
#[test]
fn a_coordinator_named_for_a_new_offsets_topic_serves_its_groups() {
    use kafka_protocol::messages::{FindCoordinatorRequest, GroupId, OffsetFetchRequest};
    const NOT_COORDINATOR: i16 = 16;
    const GROUPS: usize = 200;
    let c = Cluster::start(
        3,
        &[
            "broker.heartbeat.interval.ms=250",
            "controller.quorum.election.timeout.ms=500",
            "auto.leader.rebalance.enable=false",
        ],
    );
    let addrs: BTreeMap<i32, String> = c
        .nodes
        .iter()
        .map(|n| (n.id, c.addr(n.id).to_string()))
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (answers, unnamed) = rt.block_on(async {
        let mut conns = BTreeMap::new();
        for (&id, addr) in &addrs {
            conns.insert(id, Connection::connect(addr, &config()).await.unwrap());
        }
        let find = |group: &str| {
            let mut req = FindCoordinatorRequest::default();
            req.key = StrBytes::from_string(group.to_string());
            req
        };
        // Until the offsets topic exists, FindCoordinator answers COORDINATOR_NOT_AVAILABLE.
        let asker = conns.get_mut(&1).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let resp = asker.request_at(&find("g-0"), 3).await.unwrap();
            if resp.error_code == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "no coordinator within 30 s");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let mut sent = Vec::new();
        for g in 0..GROUPS {
            sent.push((g, asker.send(&find(&format!("g-{g}")), 3).await.unwrap()));
        }
        let mut by_coordinator: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
        let mut unnamed = 0;
        for (g, corr) in sent {
            let resp = asker.recv::<FindCoordinatorRequest>(corr, 3).await.unwrap();
            if resp.error_code == 0 {
                by_coordinator.entry(resp.node_id.0).or_default().push(g);
            } else {
                unnamed += 1;
            }
        }
        let mut answers = Vec::new();
        for (node, groups) in by_coordinator {
            let conn = conns.get_mut(&node).expect("a known coordinator");
            let mut pending = Vec::new();
            for g in groups {
                let mut req = OffsetFetchRequest::default();
                req.group_id = GroupId(StrBytes::from_string(format!("g-{g}")));
                req.topics = None;
                pending.push(conn.send(&req, 7).await.unwrap());
            }
            for corr in pending {
                let resp = conn.recv::<OffsetFetchRequest>(corr, 7).await.unwrap();
                answers.push((node, resp.error_code));
            }
        }
        (answers, unnamed)
    });
    let refused: Vec<_> = answers.iter().filter(|(_, code)| *code != 0).collect();
    eprintln!(
        "{} groups named a coordinator ({unnamed} not yet), {} refused: {refused:?}",
        answers.len(),
        refused.len()
    );
    assert!(
        answers.len() >= GROUPS / 2,
        "{} groups named",
        answers.len()
    );
    assert!(
        !answers.iter().any(|(_, code)| *code == NOT_COORDINATOR),
        "a coordinator named by the metadata answered NOT_COORDINATOR: {refused:?}"
    );
}
