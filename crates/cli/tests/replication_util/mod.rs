//! Helpers for the replication process tests (`t62_replication.rs`): raw Kafka requests with an
//! explicit `acks` and timeout, reads of a whole partition up to the high watermark,
//! ListOffsets and OffsetForLeaderEpoch, topic creation with configs, waiting for partition
//! states in Metadata, and diagnostics drawn from the nodes' logs.
#![allow(dead_code)] // not every helper is used by every test

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Buf;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderEpochRequest, OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::produce_request::{
    PartitionProduceData, ProduceRequest, TopicProduceData,
};
use kafka_protocol::messages::{ApiKey, BrokerId, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder};

use crate::cluster::{Cluster, PartitionView};
use crate::common::{negotiate, record_batch, CResult, Conn};

pub const NONE: i16 = 0;
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
pub const LEADER_NOT_AVAILABLE: i16 = 5;
pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
pub const REQUEST_TIMED_OUT: i16 = 7;
pub const NOT_ENOUGH_REPLICAS: i16 = 19;
pub const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 = 20;
pub const TOPIC_ALREADY_EXISTS: i16 = 36;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// The answer to a one-partition Produce.
#[derive(Debug, Clone)]
pub struct Produced {
    pub error: i16,
    pub base_offset: i64,
    pub message: String,
    /// How long the broker took to answer.
    pub took: Duration,
}

/// Produces one batch of `values` to `topic`-`partition` at `addr` with the given `acks` and
/// `timeout_ms`.
pub fn produce(
    addr: SocketAddr,
    topic: &str,
    partition: i32,
    values: &[&str],
    acks: i16,
    timeout_ms: i32,
) -> CResult<Produced> {
    let mut conn = Conn::connect(addr)?;
    let v = negotiate(&mut conn, ApiKey::Produce)?.min(12); // v13 addresses topics by id
    let values: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
    let req = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(timeout_ms)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(record_batch(&values, Compression::None)))])]);
    let start = Instant::now();
    let resp = conn.request(v, &req)?;
    let took = start.elapsed();
    let p = resp
        .responses
        .first()
        .and_then(|t| t.partition_responses.first())
        .ok_or("empty produce response")?;
    Ok(Produced {
        error: p.error_code,
        base_offset: p.base_offset,
        message: p
            .error_message
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default(),
        took,
    })
}

pub use crate::cluster::create_topic_with_configs;

/// One Fetch answer for one partition.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub error: i16,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    /// (offset, partition leader epoch of its batch, value)
    pub records: Vec<(i64, i32, String)>,
}

/// One consumer Fetch (replica id -1) from `offset`.
pub fn fetch_once(addr: SocketAddr, topic: &str, partition: i32, offset: i64) -> CResult<Fetched> {
    let mut conn = Conn::connect(addr)?;
    let v = negotiate(&mut conn, ApiKey::Fetch)?.min(12); // v13+ address topics by id
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(16 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_current_leader_epoch(-1)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(8 << 20)])]);
    let resp = conn.request(v, &req)?;
    if resp.error_code != 0 {
        return Err(format!("fetch error {}", resp.error_code).into());
    }
    let p = resp
        .responses
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or("empty fetch response")?;
    let mut records = Vec::new();
    if let Some(mut bytes) = p.records.clone() {
        while bytes.has_remaining() {
            let set = RecordBatchDecoder::decode(&mut bytes)
                .map_err(|e| format!("decode fetched batch: {e}"))?;
            for r in set.records {
                let value = r
                    .value
                    .as_ref()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                records.push((r.offset, r.partition_leader_epoch, value));
            }
        }
    }
    Ok(Fetched {
        error: p.error_code,
        high_watermark: p.high_watermark,
        log_start_offset: p.log_start_offset,
        records,
    })
}

/// Reads the partition from offset 0 up to the high watermark of the first answer. Fails on a
/// partition error (e.g. NOT_LEADER_OR_FOLLOWER) or when a fetch below the high watermark
/// returns nothing.
pub fn read_to_hw(addr: SocketAddr, topic: &str, partition: i32) -> CResult<Fetched> {
    let first = fetch_once(addr, topic, partition, 0)?;
    if first.error != NONE {
        return Err(format!("fetch {topic}-{partition} from 0: error {}", first.error).into());
    }
    let hw = first.high_watermark;
    let mut out = Vec::new();
    let mut next = 0;
    let mut answer = first;
    loop {
        let before = next;
        for r in answer.records.drain(..) {
            // A batch comes back whole: skip records before the fetch offset.
            if r.0 >= next && r.0 < hw {
                next = r.0 + 1;
                out.push(r);
            }
        }
        if next >= hw {
            break;
        }
        if next == before {
            return Err(format!(
                "fetch {topic}-{partition} at {next} below the high watermark {hw} returned nothing"
            )
            .into());
        }
        answer = fetch_once(addr, topic, partition, next)?;
        if answer.error != NONE {
            return Err(format!(
                "fetch {topic}-{partition} from {next}: error {}",
                answer.error
            )
            .into());
        }
    }
    Ok(Fetched {
        error: NONE,
        high_watermark: hw,
        log_start_offset: answer.log_start_offset,
        records: out,
    })
}

/// ListOffsets(latest) with read_uncommitted: (error, offset, leader epoch). For a leader the
/// offset is its high watermark.
pub fn list_latest(addr: SocketAddr, topic: &str, partition: i32) -> CResult<(i16, i64, i32)> {
    let mut conn = Conn::connect(addr)?;
    let v = negotiate(&mut conn, ApiKey::ListOffsets)?;
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(0)
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_current_leader_epoch(-1)
                .with_timestamp(-1)])]);
    let resp = conn.request(v, &req)?;
    let p = resp
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or("empty ListOffsets response")?;
    Ok((p.error_code, p.offset, p.leader_epoch))
}

/// OffsetForLeaderEpoch as a consumer sends it: (error, leader epoch, end offset).
pub fn offset_for_leader_epoch(
    addr: SocketAddr,
    topic: &str,
    partition: i32,
    current_leader_epoch: i32,
    leader_epoch: i32,
) -> CResult<(i16, i32, i64)> {
    let mut conn = Conn::connect(addr)?;
    let v = negotiate(&mut conn, ApiKey::OffsetForLeaderEpoch)?;
    let req = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![OffsetForLeaderPartition::default()
                .with_partition(partition)
                .with_current_leader_epoch(current_leader_epoch)
                .with_leader_epoch(leader_epoch)])]);
    let resp = conn.request(v, &req)?;
    let p = resp
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or("empty OffsetForLeaderEpoch response")?;
    Ok((p.error_code, p.leader_epoch, p.end_offset))
}

/// Creates `topic` through node `via` (retrying while the quorum elects) and waits until node
/// `via` shows every partition led with all replicas in the ISR.
pub fn create_replicated(
    c: &mut Cluster,
    via: i32,
    topic: &str,
    partitions: i32,
    rf: i16,
    configs: &[(&str, &str)],
) -> BTreeMap<i32, PartitionView> {
    let addr = c.addr(via);
    c.wait_for(
        Duration::from_secs(20),
        &format!("create {topic} via node {via}"),
        |_| match create_topic_with_configs(addr, topic, partitions, rf, configs, 5_000) {
            Ok((NONE, _)) | Ok((TOPIC_ALREADY_EXISTS, _)) => Some(()),
            Ok((code, msg)) if code != REQUEST_TIMED_OUT && code != 41 => {
                panic!("CreateTopics {topic} {configs:?}: error {code}: {msg:?}")
            }
            _ => None,
        },
    );
    c.wait_for(
        Duration::from_secs(20),
        &format!("{topic}: every partition led, ISR = replicas (node {via})"),
        |c| {
            let v = c.view(via).ok()?;
            let t = v.topics.get(topic)?;
            (t.len() == partitions as usize
                && t.values().all(|p| {
                    p.error == NONE
                        && p.leader >= 0
                        && p.replicas.len() == rf as usize
                        && sorted(&p.isr) == sorted(&p.replicas)
                }))
            .then(|| t.clone())
        },
    )
}

/// `topic`-`partition` as node `via` describes it.
pub fn partition_view(c: &Cluster, via: i32, topic: &str, partition: i32) -> Option<PartitionView> {
    c.view(via)
        .ok()?
        .topics
        .get(topic)?
        .get(&partition)
        .cloned()
}

pub fn sorted(v: &[i32]) -> Vec<i32> {
    let mut v = v.to_vec();
    v.sort();
    v
}

/// Produces `value` alone through whichever node `via` names as the leader, retrying only on
/// errors that guarantee nothing was appended (unknown partition, no leader, not the leader,
/// NOT_ENOUGH_REPLICAS); any other error fails the test. Returns the offset.
pub fn produce_ok(
    c: &mut Cluster,
    via: i32,
    topic: &str,
    partition: i32,
    value: &str,
    acks: i16,
) -> i64 {
    let mut attempts = Vec::new();
    let r = c.wait_for(
        Duration::from_secs(20),
        &format!("produce {value:?} (acks={acks}) to the leader of {topic}-{partition}"),
        |c| {
            let leader = partition_view(c, via, topic, partition)?.leader;
            if leader < 0 {
                return None;
            }
            match produce(c.addr(leader), topic, partition, &[value], acks, 10_000) {
                Ok(r)
                    if matches!(
                        r.error,
                        UNKNOWN_TOPIC_OR_PARTITION
                            | LEADER_NOT_AVAILABLE
                            | NOT_LEADER_OR_FOLLOWER
                            | NOT_ENOUGH_REPLICAS
                    ) =>
                {
                    attempts.push(format!("leader {leader}: {} {}", r.error, r.message));
                    None
                }
                Ok(r) => Some((leader, r)),
                Err(e) => {
                    attempts.push(format!("leader {leader}: {e}"));
                    None
                }
            }
        },
    );
    let (leader, r) = r;
    assert_eq!(
        r.error,
        NONE,
        "produce {value:?} (acks={acks}) to leader {leader} failed after the append could have \
         happened: {r:?}; earlier attempts: {attempts:?}\n{}",
        diag(c)
    );
    r.base_offset
}

/// Waits until node `via` describes `topic`-`partition` so that `pred` holds.
pub fn wait_partition(
    c: &mut Cluster,
    via: i32,
    topic: &str,
    partition: i32,
    timeout: Duration,
    what: &str,
    mut pred: impl FnMut(&PartitionView) -> bool,
) -> PartitionView {
    let mut last = None;
    let deadline = Instant::now() + timeout;
    let r = loop {
        if let Some(p) = partition_view(c, via, topic, partition) {
            if pred(&p) {
                break Some(p);
            }
            last = Some(p);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    match r {
        Some(p) => p,
        None => panic!(
            "timed out after {timeout:?} waiting for {topic}-{partition} on node {via}: {what}; \
             last seen {last:?}\n{}",
            diag(c)
        ),
    }
}

/// Waits until the process of node `id` is really stopped (state `T` in /proc), so that
/// nothing it does races with what the test does next.
pub fn wait_stopped(c: &Cluster, id: i32) {
    let port = c.nodes[c.idx(id)].kafka_port;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(state) = process_state(port) {
            if state == 'T' || state == 't' {
                return;
            }
        }
        if Instant::now() > deadline {
            panic!(
                "node {id} did not stop after SIGSTOP (state {:?})",
                process_state(port)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The /proc state letter of the `runnel server` listening on 127.0.0.1:`port`.
fn process_state(port: u16) -> Option<char> {
    let listen = format!("127.0.0.1:{port}");
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let ours = args.iter().any(|a| *a == b"server")
            && args
                .windows(2)
                .any(|w| w[0] == b"--listen" && w[1] == listen.as_bytes());
        if !ours {
            continue;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let after = stat.rsplit_once(") ")?.1;
        return after.chars().next();
    }
    None
}

/// The lines of each node's current log that explain replication failures: panics (a
/// `todo!()` in a task does not stop the process) first, then the last replication, election
/// and warning lines.
pub fn diag(c: &Cluster) -> String {
    const KEYS: &[&str] = &[
        "ISR",
        "became leader",
        "following",
        "truncat",
        "diverged",
        "fenced",
        "WARN",
        "ERROR",
    ];
    let mut out = String::new();
    for n in &c.nodes {
        let log = c.stderr(n.id);
        let lines: Vec<&str> = log.lines().collect();
        out.push_str(&format!("==== node {} ====\n", n.id));
        let mut panics = 0;
        for (i, l) in lines.iter().enumerate() {
            if l.contains("panicked") && panics < 3 {
                panics += 1;
                out.push_str(&lines[i..(i + 2).min(lines.len())].join("\n"));
                out.push('\n');
            }
        }
        let picked: Vec<&str> = lines
            .iter()
            .filter(|l| KEYS.iter().any(|k| l.contains(k)))
            .copied()
            .collect();
        let from = picked.len().saturating_sub(15);
        for l in &picked[from..] {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}
