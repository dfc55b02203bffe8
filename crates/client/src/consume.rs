//! Consumer plumbing: ListOffsets, Fetch requests, decoding of fetched record bytes, committed offsets
//! (OffsetFetch / OffsetCommit), the consumer protocol's subscription and assignment bytes, the
//! range assignor, and [`GroupMember`], a classic-protocol group member (JoinGroup, SyncGroup,
//! background heartbeats, LeaveGroup).

use std::collections::{BTreeMap, HashMap, HashSet};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, BrokerId, ConsumerProtocolAssignment, ConsumerProtocolSubscription, FetchRequest,
    FetchResponse, GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest,
    ListOffsetsRequest, OffsetCommitRequest, OffsetFetchRequest, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use kafka_protocol::records::{Record, RecordBatchDecoder};

use crate::client::{
    backoff, check, codes, BrokerMeta, Client, Connection, KafkaError, Target, TopicMeta,
};

pub const EARLIEST: i64 = -2;
pub const LATEST: i64 = -1;

/// Kafka's `isolation.level` names.
pub fn parse_isolation(s: &str) -> Result<i8> {
    match s.trim() {
        "read_uncommitted" => Ok(0),
        "read_committed" => Ok(1),
        other => {
            bail!("invalid isolation level '{other}': expected read_uncommitted or read_committed")
        }
    }
}

/// Leader of each partition; `-1` when none.
pub fn leaders(topic: &TopicMeta) -> HashMap<i32, i32> {
    topic
        .partitions
        .iter()
        .map(|p| (p.index, p.leader))
        .collect()
}

/// Offsets at `timestamp` (EARLIEST / LATEST / a time in ms) for `partitions`, asked of each leader.
pub async fn list_offsets(
    client: &mut Client,
    topic: &TopicMeta,
    partitions: &[i32],
    timestamp: i64,
    isolation: i8,
) -> Result<HashMap<i32, i64>> {
    let leaders = leaders(topic);
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for p in partitions {
        let leader = leaders.get(p).copied().unwrap_or(-1);
        if leader < 0 {
            bail!("partition {}-{p} has no leader", topic.name);
        }
        by_leader.entry(leader).or_default().push(*p);
    }
    let mut out = HashMap::new();
    for (leader, parts) in by_leader {
        let mut t = ListOffsetsTopic::default();
        t.name = TopicName(StrBytes::from_string(topic.name.clone()));
        t.partitions = parts
            .iter()
            .map(|p| {
                let mut lp = ListOffsetsPartition::default();
                lp.partition_index = *p;
                lp.current_leader_epoch = -1;
                lp.timestamp = timestamp;
                lp
            })
            .collect();
        let mut req = ListOffsetsRequest::default();
        req.replica_id = BrokerId(-1);
        req.isolation_level = isolation;
        req.topics = vec![t];
        req.timeout_ms = 30_000;
        let resp = client.send_to(Target::Broker(leader), &req).await?;
        for t in resp.topics {
            for p in t.partitions {
                check(p.error_code, None).map_err(|e| {
                    anyhow!(e).context(format!(
                        "ListOffsets for {}-{}",
                        topic.name, p.partition_index
                    ))
                })?;
                out.insert(p.partition_index, p.offset);
            }
        }
    }
    for p in partitions {
        if !out.contains_key(p) {
            bail!("ListOffsets returned nothing for {}-{p}", topic.name);
        }
    }
    Ok(out)
}

/// Fetch limits, with the Java consumer's defaults.
#[derive(Debug, Clone, Copy)]
pub struct FetchLimits {
    pub max_wait_ms: i32,
    pub min_bytes: i32,
    pub max_bytes: i32,
    pub partition_max_bytes: i32,
    pub isolation: i8,
}

impl Default for FetchLimits {
    fn default() -> Self {
        FetchLimits {
            max_wait_ms: 500,
            min_bytes: 1,
            max_bytes: 52_428_800,
            partition_max_bytes: 1_048_576,
            isolation: 0,
        }
    }
}

/// A sessionless Fetch of `(partition, offset)` pairs of one topic.
pub fn fetch_request(
    topic: &TopicMeta,
    positions: &[(i32, i64)],
    limits: &FetchLimits,
) -> FetchRequest {
    let mut t = FetchTopic::default();
    t.topic = TopicName(StrBytes::from_string(topic.name.clone()));
    t.topic_id = topic.id;
    t.partitions = positions
        .iter()
        .map(|&(p, offset)| {
            let mut fp = FetchPartition::default();
            fp.partition = p;
            fp.current_leader_epoch = -1;
            fp.fetch_offset = offset;
            fp.last_fetched_epoch = -1;
            fp.log_start_offset = -1;
            fp.partition_max_bytes = limits.partition_max_bytes;
            fp
        })
        .collect();
    let mut req = FetchRequest::default();
    req.replica_id = BrokerId(-1);
    req.max_wait_ms = limits.max_wait_ms;
    req.min_bytes = limits.min_bytes;
    req.max_bytes = limits.max_bytes;
    req.isolation_level = limits.isolation;
    req.session_id = 0;
    req.session_epoch = -1;
    req.topics = vec![t];
    req
}

/// One partition's slice of a Fetch response.
pub struct FetchedPartition {
    pub partition: i32,
    pub error: Option<KafkaError>,
    pub records: Option<Bytes>,
    /// Aborted transactions `(producer_id, first_offset)` (read_committed fetches only).
    pub aborted: Vec<(i64, i64)>,
}

pub fn fetched_partitions(resp: FetchResponse, topic: &TopicMeta) -> Result<Vec<FetchedPartition>> {
    check(resp.error_code, None).map_err(|e| anyhow!(e).context("fetch failed"))?;
    Ok(resp
        .responses
        .into_iter()
        .filter(|t| {
            t.topic.0.as_str() == topic.name || (!t.topic_id.is_nil() && t.topic_id == topic.id)
        })
        .flat_map(|t| t.partitions)
        .map(|p| FetchedPartition {
            partition: p.partition_index,
            error: check(p.error_code, None).err(),
            records: p.records,
            aborted: p
                .aborted_transactions
                .unwrap_or_default()
                .iter()
                .map(|a| (a.producer_id.0, a.first_offset))
                .collect(),
        })
        .collect())
}

/// Decodes the record batches in `raw` (as a Fetch returns them), appending the data records
/// at or above `fetch_offset` to `out`. Control batches are skipped; a trailing partial batch is
/// ignored. With `aborted` (read_committed), transactional batches of aborted transactions are
/// dropped the way the Java consumer does: a producer's batches are skipped from the aborted
/// transaction's first offset until that producer's ABORT marker. Returns the offset to fetch
/// next (`fetch_offset` when nothing complete arrived).
pub fn decode_records(
    raw: &Bytes,
    fetch_offset: i64,
    aborted: Option<&[(i64, i64)]>,
    out: &mut Vec<Record>,
) -> Result<i64> {
    const HEADER: usize = 61; // v2 batch header size, through the record count
    let mut pending: Vec<(i64, i64)> = aborted.map(<[_]>::to_vec).unwrap_or_default();
    pending.sort_by_key(|a| std::cmp::Reverse(a.1));
    let mut aborting: HashSet<i64> = HashSet::new();
    let mut pos = 0usize;
    let mut next = fetch_offset;
    while raw.len() - pos >= 12 {
        let base_offset = i64::from_be_bytes(raw[pos..pos + 8].try_into()?);
        let len = i32::from_be_bytes(raw[pos + 8..pos + 12].try_into()?);
        if len < 0 {
            bail!("corrupt record batch at byte {pos}: negative length {len}");
        }
        let total = 12 + len as usize;
        if raw.len() - pos < total {
            break; // partial batch at the end of the response
        }
        if total < HEADER {
            bail!("corrupt record batch at offset {base_offset}: length {len} is too short");
        }
        let magic = raw[pos + 16];
        if magic != 2 {
            bail!("record batch at offset {base_offset} has magic {magic}; only v2 batches are supported");
        }
        let attributes = i16::from_be_bytes(raw[pos + 21..pos + 23].try_into()?);
        let last_offset_delta = i32::from_be_bytes(raw[pos + 23..pos + 27].try_into()?);
        let producer_id = i64::from_be_bytes(raw[pos + 43..pos + 51].try_into()?);
        let batch_next = base_offset + i64::from(last_offset_delta) + 1;
        let is_control = attributes & 0x20 != 0;
        let transactional = attributes & 0x10 != 0;
        let mut skip = is_control;
        if aborted.is_some() && transactional {
            while pending.last().is_some_and(|a| a.1 < batch_next) {
                if let Some((pid, _)) = pending.pop() {
                    aborting.insert(pid);
                }
            }
            if is_control {
                // The marker's key is (version: i16, type: i16); type 0 is ABORT.
                let mut slice = raw.slice(pos..pos + total);
                let set = RecordBatchDecoder::decode(&mut slice)?;
                let is_abort = set
                    .records
                    .first()
                    .and_then(|r| r.key.as_ref())
                    .is_some_and(|k| k.len() >= 4 && k[2..4] == [0, 0]);
                if is_abort {
                    aborting.remove(&producer_id);
                }
            } else if aborting.contains(&producer_id) {
                skip = true;
            }
        }
        if batch_next > fetch_offset && !skip {
            let mut slice = raw.slice(pos..pos + total);
            let set = RecordBatchDecoder::decode(&mut slice)?;
            out.extend(set.records.into_iter().filter(|r| r.offset >= fetch_offset));
        }
        next = next.max(batch_next);
        pos += total;
    }
    Ok(next)
}

// ---- Committed offsets ----

/// A topic partition, ordered by topic then partition.
pub type Tp = (String, i32);

/// The group's committed offsets: of `wanted` partitions, or of every partition when `None`.
/// Partitions without a committed offset are left out. Errors name the group; a group that
/// does not exist has no offsets (Kafka answers an empty list, not an error).
pub async fn fetch_committed(
    client: &mut Client,
    group: &str,
    wanted: Option<&BTreeMap<String, Vec<i32>>>,
) -> Result<BTreeMap<Tp, i64>> {
    let coordinator = client.coordinator(group).await?;
    let version = client
        .broker(coordinator)
        .await?
        .version(ApiKey::OffsetFetch)?;
    let mut req = OffsetFetchRequest::default();
    if version >= 8 {
        let mut g = OffsetFetchRequestGroup::default();
        g.group_id = GroupId(StrBytes::from_string(group.to_string()));
        g.member_epoch = -1;
        g.topics = wanted.map(|w| {
            w.iter()
                .map(|(t, ps)| {
                    let mut rt = OffsetFetchRequestTopics::default();
                    rt.name = TopicName(StrBytes::from_string(t.clone()));
                    rt.partition_indexes = ps.clone();
                    rt
                })
                .collect()
        });
        req.groups = vec![g];
    } else {
        req.group_id = GroupId(StrBytes::from_string(group.to_string()));
        req.topics = wanted.map(|w| {
            w.iter()
                .map(|(t, ps)| {
                    let mut rt = OffsetFetchRequestTopic::default();
                    rt.name = TopicName(StrBytes::from_string(t.clone()));
                    rt.partition_indexes = ps.clone();
                    rt
                })
                .collect()
        });
    }
    req.require_stable = version >= 7;
    let mut attempt = 0;
    loop {
        let resp = client
            .send_to_coordinator(group, &req, |r| {
                r.groups.first().map_or(r.error_code, |g| g.error_code)
            })
            .await?;
        // v8+ answers per group, older versions at the top level; the rows have one shape.
        macro_rules! rows {
            ($topics:expr) => {
                $topics
                    .into_iter()
                    .flat_map(|t| {
                        let name = t.name.0.to_string();
                        t.partitions.into_iter().map(move |p| {
                            (
                                name.clone(),
                                p.partition_index,
                                p.committed_offset,
                                p.error_code,
                            )
                        })
                    })
                    .collect::<Vec<(String, i32, i64, i16)>>()
            };
        }
        let (code, rows) = if version >= 8 {
            let g = resp
                .groups
                .into_iter()
                .next()
                .ok_or_else(|| anyhow!("OffsetFetch answered no group"))?;
            (g.error_code, rows!(g.topics))
        } else {
            (resp.error_code, rows!(resp.topics))
        };
        let unstable = code == codes::UNSTABLE_OFFSET_COMMIT
            || rows.iter().any(|r| r.3 == codes::UNSTABLE_OFFSET_COMMIT);
        if unstable && attempt < 50 {
            // A transaction is committing offsets for this group: wait for it to finish.
            tokio::time::sleep(backoff(attempt)).await;
            attempt += 1;
            continue;
        }
        check(code, None)
            .map_err(|e| anyhow!(e).context(format!("OffsetFetch for group '{group}'")))?;
        let mut out = BTreeMap::new();
        for (t, p, offset, code) in rows {
            if code == codes::UNKNOWN_TOPIC_OR_PARTITION {
                continue;
            }
            check(code, None).map_err(|e| {
                anyhow!(e).context(format!("OffsetFetch for group '{group}', {t}-{p}"))
            })?;
            if offset >= 0 {
                out.insert((t, p), offset);
            }
        }
        return Ok(out);
    }
}

/// Commits `offsets` for `group` as member `member_id` of `generation` (`-1` and `""` for an
/// admin commit to a group without members). Returns each partition's error code (0 = done).
pub async fn commit_offsets(
    client: &mut Client,
    group: &str,
    generation: i32,
    member_id: &str,
    offsets: &BTreeMap<Tp, i64>,
) -> Result<BTreeMap<Tp, i16>> {
    let mut by_topic: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for ((t, p), o) in offsets {
        let mut rp = OffsetCommitRequestPartition::default();
        rp.partition_index = *p;
        rp.committed_offset = *o;
        rp.committed_leader_epoch = -1;
        rp.committed_metadata = Some(StrBytes::default());
        by_topic.entry(t).or_default().push(rp);
    }
    let mut req = OffsetCommitRequest::default();
    req.group_id = GroupId(StrBytes::from_string(group.to_string()));
    req.generation_id_or_member_epoch = generation;
    req.member_id = StrBytes::from_string(member_id.to_string());
    req.retention_time_ms = -1;
    req.topics = by_topic
        .into_iter()
        .map(|(t, ps)| {
            let mut rt = OffsetCommitRequestTopic::default();
            rt.name = TopicName(StrBytes::from_string(t.to_string()));
            rt.partitions = ps;
            rt
        })
        .collect();
    let resp = client
        .send_to_coordinator(group, &req, |r| {
            r.topics
                .first()
                .and_then(|t| t.partitions.first())
                .map_or(0, |p| p.error_code)
        })
        .await?;
    let mut out = BTreeMap::new();
    for t in resp.topics {
        for p in t.partitions {
            out.insert((t.name.0.to_string(), p.partition_index), p.error_code);
        }
    }
    Ok(out)
}

// ---- The consumer protocol (protocol type "consumer") ----

/// The version of ConsumerProtocolSubscription / Assignment this client writes. Version 1 adds
/// nothing an eager assignor needs over 0 except owned partitions (left empty); every client
/// since Kafka 2.4 reads it.
const CONSUMER_PROTOCOL_VERSION: i16 = 1;

fn versioned<M: Encodable>(m: &M) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(CONSUMER_PROTOCOL_VERSION);
    // Encoding a message built here at a version it supports cannot fail.
    m.encode(&mut buf, CONSUMER_PROTOCOL_VERSION)
        .expect("consumer protocol encoding");
    buf.freeze()
}

/// Reads the version prefix; newer versions than kafka-protocol knows are read as the newest
/// known one (later versions only append fields, as Kafka's own reader assumes).
fn read_version(bytes: &mut Bytes, what: &str) -> Result<i16> {
    if bytes.len() < 2 {
        bail!("{what} is too short ({} bytes)", bytes.len());
    }
    let v = bytes.get_i16();
    if v < 0 {
        bail!("{what} has invalid version {v}");
    }
    Ok(v.min(3))
}

pub fn encode_subscription(topics: &[String]) -> Bytes {
    let mut sub = ConsumerProtocolSubscription::default();
    sub.topics = topics
        .iter()
        .map(|t| StrBytes::from_string(t.clone()))
        .collect();
    versioned(&sub)
}

/// The topics of a member's subscription metadata.
pub fn decode_subscription(bytes: &Bytes) -> Result<Vec<String>> {
    let mut b = bytes.clone();
    let v = read_version(&mut b, "consumer subscription")?;
    let sub = ConsumerProtocolSubscription::decode(&mut b, v)
        .map_err(|e| anyhow!("malformed consumer subscription: {e}"))?;
    Ok(sub.topics.iter().map(|t| t.to_string()).collect())
}

pub fn encode_assignment(assignment: &BTreeMap<String, Vec<i32>>) -> Bytes {
    let mut a = ConsumerProtocolAssignment::default();
    a.assigned_partitions = assignment
        .iter()
        .map(|(t, ps)| {
            let mut tp = consumer_protocol_assignment::TopicPartition::default();
            tp.topic = TopicName(StrBytes::from_string(t.clone()));
            tp.partitions = ps.clone();
            tp
        })
        .collect();
    versioned(&a)
}

/// A member's assignment, topic -> sorted partitions. Empty bytes are an empty assignment (what
/// a coordinator holds before the leader's SyncGroup).
pub fn decode_assignment(bytes: &Bytes) -> Result<BTreeMap<String, Vec<i32>>> {
    let mut out: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    if bytes.is_empty() {
        return Ok(out);
    }
    let mut b = bytes.clone();
    let v = read_version(&mut b, "consumer assignment")?;
    let a = ConsumerProtocolAssignment::decode(&mut b, v)
        .map_err(|e| anyhow!("malformed consumer assignment: {e}"))?;
    for tp in a.assigned_partitions {
        out.entry(tp.topic.0.to_string())
            .or_default()
            .extend(tp.partitions);
    }
    for ps in out.values_mut() {
        ps.sort_unstable();
        ps.dedup();
    }
    Ok(out)
}

/// The range assignor: for each topic, its subscribers sorted by member id each get a
/// contiguous range of partitions, the first `partitions % members` one more than the rest.
/// Every member appears in the result, possibly with nothing.
pub fn range_assign(
    subscriptions: &BTreeMap<String, Vec<String>>,
    partition_counts: &BTreeMap<String, i32>,
) -> BTreeMap<String, BTreeMap<String, Vec<i32>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<i32>>> = subscriptions
        .keys()
        .map(|m| (m.clone(), BTreeMap::new()))
        .collect();
    for (topic, &count) in partition_counts {
        let members: Vec<&String> = subscriptions
            .iter()
            .filter(|(_, topics)| topics.contains(topic))
            .map(|(m, _)| m)
            .collect();
        if members.is_empty() || count <= 0 {
            continue;
        }
        let n = members.len() as i32;
        let (per, extra) = (count / n, count % n);
        let mut next = 0;
        for (i, m) in members.into_iter().enumerate() {
            let len = per + i32::from((i as i32) < extra);
            if len > 0 {
                out.entry(m.clone())
                    .or_default()
                    .insert(topic.clone(), (next..next + len).collect());
            }
            next += len;
        }
    }
    out
}

// ---- A group member ----

/// A member's settings (the Java consumer's names in comments).
#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub group: String,
    pub topics: Vec<String>,
    /// session.timeout.ms (45000)
    pub session_timeout_ms: i32,
    /// max.poll.interval.ms (300000): the rebalance timeout sent in JoinGroup.
    pub rebalance_timeout_ms: i32,
    /// heartbeat.interval.ms (3000, never above a third of the session timeout)
    pub heartbeat_interval: Duration,
    pub client_id: String,
}

/// What the heartbeat task tells the consuming loop.
#[derive(Default)]
struct MemberFlags {
    /// Rejoin before consuming further (a rebalance started, or membership was lost).
    rejoin: AtomicBool,
    /// The coordinator no longer knows this member id or generation: join as a new member.
    reset_member: AtomicBool,
    /// The coordinator moved or its connection failed: find it again.
    coordinator_lost: AtomicBool,
}

enum JoinStep {
    Done(BTreeMap<String, Vec<i32>>),
    Retry,
    RetryNow,
}

/// A classic-protocol consumer group member with the `range` assignor.
pub struct GroupMember {
    cfg: GroupConfig,
    member_id: String,
    generation: i32,
    joined: bool,
    flags: Arc<MemberFlags>,
    heartbeat: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for GroupMember {
    fn drop(&mut self) {
        self.stop_heartbeat();
    }
}

impl GroupMember {
    pub fn new(cfg: GroupConfig) -> GroupMember {
        GroupMember {
            cfg,
            member_id: String::new(),
            generation: -1,
            joined: false,
            flags: Arc::default(),
            heartbeat: None,
        }
    }

    pub fn group(&self) -> &str {
        &self.cfg.group
    }

    /// True while this member holds an assignment of the current generation.
    pub fn is_joined(&self) -> bool {
        self.joined
    }

    /// True when the member must (re)join before it consumes further.
    pub fn needs_join(&self) -> bool {
        !self.joined || self.flags.rejoin.load(Ordering::Relaxed)
    }

    fn stop_heartbeat(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
    }

    /// Joins (or rejoins) the group and returns this member's assignment. Retries rebalances
    /// and coordinator moves with backoff; fails on errors no retry can fix.
    pub async fn join(&mut self, client: &mut Client) -> Result<BTreeMap<String, Vec<i32>>> {
        self.stop_heartbeat();
        self.joined = false;
        if self.flags.reset_member.swap(false, Ordering::Relaxed) {
            self.member_id.clear();
            self.generation = -1;
        }
        if self.flags.coordinator_lost.swap(false, Ordering::Relaxed) {
            client.forget_coordinator(&self.cfg.group);
        }
        self.flags.rejoin.store(false, Ordering::Relaxed);
        let mut attempt = 0;
        loop {
            match self.join_once(client).await? {
                JoinStep::Done(assignment) => {
                    self.joined = true;
                    self.start_heartbeat(client).await;
                    return Ok(assignment);
                }
                JoinStep::RetryNow => {}
                JoinStep::Retry => {
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }

    async fn join_once(&mut self, client: &mut Client) -> Result<JoinStep> {
        let group = self.cfg.group.clone();
        let coordinator = client.coordinator(&group).await?;
        let wait = Duration::from_millis(self.cfg.rebalance_timeout_ms.max(0) as u64)
            + Duration::from_secs(5);
        let mut req = JoinGroupRequest::default();
        req.group_id = GroupId(StrBytes::from_string(group.clone()));
        req.session_timeout_ms = self.cfg.session_timeout_ms;
        req.rebalance_timeout_ms = self.cfg.rebalance_timeout_ms;
        req.member_id = StrBytes::from_string(self.member_id.clone());
        req.protocol_type = StrBytes::from_static_str("consumer");
        let mut protocol = JoinGroupRequestProtocol::default();
        protocol.name = StrBytes::from_static_str("range");
        protocol.metadata = encode_subscription(&self.cfg.topics);
        req.protocols = vec![protocol];
        let resp = match self.coordinator_call(client, coordinator, &req, wait).await {
            Some(r) => r,
            None => return Ok(JoinStep::Retry),
        };
        match resp.error_code {
            0 => {}
            codes::MEMBER_ID_REQUIRED => {
                self.member_id = resp.member_id.to_string();
                return Ok(JoinStep::RetryNow);
            }
            codes::UNKNOWN_MEMBER_ID | codes::ILLEGAL_GENERATION | codes::FENCED_INSTANCE_ID => {
                self.member_id.clear();
                self.generation = -1;
                return Ok(JoinStep::RetryNow);
            }
            codes::REBALANCE_IN_PROGRESS => return Ok(JoinStep::Retry),
            c if codes::coordinator_moved(c) => {
                client.forget_coordinator(&group);
                return Ok(JoinStep::Retry);
            }
            c => {
                return Err(anyhow::Error::new(KafkaError::new(c, None))
                    .context(format!("JoinGroup for group '{group}' failed")))
            }
        }
        self.member_id = resp.member_id.to_string();
        self.generation = resp.generation_id;
        let protocol_name = resp
            .protocol_name
            .clone()
            .unwrap_or_else(|| StrBytes::from_static_str("range"));
        let assignments = if resp.leader == resp.member_id {
            self.lead(client, &resp.members).await?
        } else {
            Vec::new()
        };
        let mut sync = SyncGroupRequest::default();
        sync.group_id = GroupId(StrBytes::from_string(group.clone()));
        sync.generation_id = self.generation;
        sync.member_id = StrBytes::from_string(self.member_id.clone());
        sync.protocol_type = Some(StrBytes::from_static_str("consumer"));
        sync.protocol_name = Some(protocol_name);
        sync.assignments = assignments;
        let resp = match self
            .coordinator_call(client, coordinator, &sync, wait)
            .await
        {
            Some(r) => r,
            None => return Ok(JoinStep::Retry),
        };
        match resp.error_code {
            0 => Ok(JoinStep::Done(decode_assignment(&resp.assignment)?)),
            codes::REBALANCE_IN_PROGRESS => Ok(JoinStep::RetryNow),
            codes::UNKNOWN_MEMBER_ID | codes::ILLEGAL_GENERATION | codes::FENCED_INSTANCE_ID => {
                self.member_id.clear();
                self.generation = -1;
                Ok(JoinStep::RetryNow)
            }
            c if codes::coordinator_moved(c) => {
                client.forget_coordinator(&group);
                Ok(JoinStep::Retry)
            }
            c => Err(anyhow::Error::new(KafkaError::new(c, None))
                .context(format!("SyncGroup for group '{group}' failed"))),
        }
    }

    /// Sends one group request to the coordinator; `None` (after a warning) when the
    /// connection failed, so the caller finds the coordinator again and retries.
    async fn coordinator_call<R: Request>(
        &self,
        client: &mut Client,
        coordinator: i32,
        req: &R,
        wait: Duration,
    ) -> Option<R::Response> {
        let key = ApiKey::try_from(R::KEY).ok()?;
        let result = async {
            let conn = client.broker(coordinator).await?;
            let version = conn.version(key)?;
            conn.request_timeout(req, version, wait).await
        }
        .await;
        match result {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("WARN {key:?} to coordinator {coordinator} failed: {e:#}");
                client.drop_broker(coordinator);
                client.forget_coordinator(&self.cfg.group);
                None
            }
        }
    }

    /// The leader's work: the range assignment of every member's subscription.
    async fn lead(
        &self,
        client: &mut Client,
        members: &[JoinGroupResponseMember],
    ) -> Result<Vec<SyncGroupRequestAssignment>> {
        let mut subscriptions = BTreeMap::new();
        for m in members {
            let topics = decode_subscription(&m.metadata).unwrap_or_else(|e| {
                eprintln!("WARN member {}: {e:#}", m.member_id);
                Vec::new()
            });
            subscriptions.insert(m.member_id.to_string(), topics);
        }
        let all: Vec<String> = subscriptions
            .values()
            .flatten()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        client.refresh(Some(&all)).await?;
        let counts: BTreeMap<String, i32> = all
            .iter()
            .filter_map(|t| {
                let meta = client.meta.topics.get(t)?;
                (meta.error_code == 0).then(|| (t.clone(), meta.partitions.len() as i32))
            })
            .collect();
        Ok(range_assign(&subscriptions, &counts)
            .into_iter()
            .map(|(member, a)| {
                let mut sa = SyncGroupRequestAssignment::default();
                sa.member_id = StrBytes::from_string(member);
                sa.assignment = encode_assignment(&a);
                sa
            })
            .collect())
    }

    async fn start_heartbeat(&mut self, client: &mut Client) {
        let flags = self.flags.clone();
        let addr = match client.coordinator(&self.cfg.group).await {
            Ok(id) => client.meta.brokers.get(&id).map(BrokerMeta::addr),
            Err(_) => None,
        };
        let Some(addr) = addr else {
            flags.coordinator_lost.store(true, Ordering::Relaxed);
            flags.rejoin.store(true, Ordering::Relaxed);
            return;
        };
        let mut req = HeartbeatRequest::default();
        req.group_id = GroupId(StrBytes::from_string(self.cfg.group.clone()));
        req.generation_id = self.generation;
        req.member_id = StrBytes::from_string(self.member_id.clone());
        let interval = self.cfg.heartbeat_interval;
        let config = client.config().clone().with_client_id(&self.cfg.client_id);
        self.heartbeat = Some(tokio::spawn(async move {
            let lost = |flags: &MemberFlags| {
                flags.coordinator_lost.store(true, Ordering::Relaxed);
                flags.rejoin.store(true, Ordering::Relaxed);
            };
            let mut conn = match Connection::connect(&addr, &config).await {
                Ok(c) => c,
                Err(_) => return lost(&flags),
            };
            loop {
                tokio::time::sleep(interval).await;
                let code = match conn.request(&req).await {
                    Ok(r) => r.error_code,
                    Err(_) => return lost(&flags),
                };
                match code {
                    0 => continue,
                    codes::REBALANCE_IN_PROGRESS => {}
                    codes::UNKNOWN_MEMBER_ID
                    | codes::ILLEGAL_GENERATION
                    | codes::FENCED_INSTANCE_ID => {
                        flags.reset_member.store(true, Ordering::Relaxed);
                    }
                    c if codes::coordinator_moved(c) => return lost(&flags),
                    c => eprintln!("WARN heartbeat failed: {}", KafkaError::new(c, None)),
                }
                flags.rejoin.store(true, Ordering::Relaxed);
                return;
            }
        }));
    }

    /// Commits `offsets` as this member. Errors that mean the membership is gone or changing
    /// ask for a rejoin; the result says whether every partition was committed.
    pub async fn commit(&mut self, client: &mut Client, offsets: &BTreeMap<Tp, i64>) -> bool {
        if !self.joined || offsets.is_empty() {
            return offsets.is_empty();
        }
        let group = self.cfg.group.clone();
        let result =
            commit_offsets(client, &group, self.generation, &self.member_id, offsets).await;
        let codes = match result {
            Ok(c) => c,
            Err(e) => {
                eprintln!("WARN offset commit for group '{group}' failed: {e:#}");
                return false;
            }
        };
        let mut ok = true;
        for ((t, p), code) in codes {
            if code == 0 {
                continue;
            }
            ok = false;
            match code {
                codes::UNKNOWN_MEMBER_ID
                | codes::ILLEGAL_GENERATION
                | codes::FENCED_INSTANCE_ID => {
                    self.flags.reset_member.store(true, Ordering::Relaxed);
                    self.flags.rejoin.store(true, Ordering::Relaxed);
                }
                codes::REBALANCE_IN_PROGRESS => self.flags.rejoin.store(true, Ordering::Relaxed),
                _ => {}
            }
            eprintln!(
                "WARN offset commit for {t}-{p} failed: {}",
                KafkaError::new(code, None)
            );
        }
        ok
    }

    /// Leaves the group (LeaveGroup) so the others rebalance at once rather than after the
    /// session timeout.
    pub async fn leave(&mut self, client: &mut Client) {
        self.stop_heartbeat();
        if self.member_id.is_empty() {
            return;
        }
        let was_joined = std::mem::replace(&mut self.joined, false);
        let group = self.cfg.group.clone();
        let Ok(coordinator) = client.coordinator(&group).await else {
            return;
        };
        if !was_joined {
            // A join that was cancelled may have left its response unread on the connection.
            client.drop_broker(coordinator);
        }
        let version = match client.broker(coordinator).await {
            Ok(c) => c.version_of(ApiKey::LeaveGroup).unwrap_or(0),
            Err(_) => return,
        };
        let mut req = LeaveGroupRequest::default();
        req.group_id = GroupId(StrBytes::from_string(group.clone()));
        let member_id = StrBytes::from_string(std::mem::take(&mut self.member_id));
        if version >= 3 {
            let mut m = MemberIdentity::default();
            m.member_id = member_id;
            if version >= 5 {
                m.reason = Some(StrBytes::from_static_str("the consumer is being closed"));
            }
            req.members = vec![m];
        } else {
            req.member_id = member_id;
        }
        let code = match client.send_to(Target::Broker(coordinator), &req).await {
            Ok(r) if r.error_code != 0 => r.error_code,
            Ok(r) => r.members.first().map_or(0, |m| m.error_code),
            Err(e) => {
                eprintln!("WARN LeaveGroup for group '{group}' failed: {e:#}");
                return;
            }
        };
        if code != 0 {
            eprintln!(
                "WARN LeaveGroup for group '{group}' failed: {}",
                KafkaError::new(code, None)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::produce::{encode_batch, new_record, ProducerIdentity};
    use bytes::BytesMut;
    use kafka_protocol::records::Compression;

    fn batch(base: i64, values: &[&str], compression: Compression, control: bool) -> Bytes {
        let mut records: Vec<Record> = values
            .iter()
            .map(|v| {
                let mut r = new_record(None, Some(Bytes::from(v.to_string())), 1);
                r.control = control;
                r
            })
            .collect();
        let mut buf = BytesMut::new();
        let b = encode_batch(
            &mut buf,
            &mut records,
            ProducerIdentity::NONE,
            -1,
            compression,
        )
        .unwrap();
        let mut b = BytesMut::from(&b[..]);
        b[..8].copy_from_slice(&base.to_be_bytes());
        b.freeze()
    }

    #[test]
    fn decodes_batches_skips_control_old_and_partial() {
        let mut raw = BytesMut::new();
        raw.extend_from_slice(&batch(0, &["a", "b", "c"], Compression::None, false));
        raw.extend_from_slice(&batch(3, &["m"], Compression::None, true));
        raw.extend_from_slice(&batch(4, &["d", "e"], Compression::Lz4, false));
        let partial = batch(6, &["f", "g"], Compression::Snappy, false);
        raw.extend_from_slice(&partial[..partial.len() - 3]);
        let raw = raw.freeze();
        let mut out = Vec::new();
        let next = decode_records(&raw, 1, None, &mut out).unwrap();
        assert_eq!(next, 6);
        let got: Vec<(i64, Bytes)> = out
            .iter()
            .map(|r| (r.offset, r.value.clone().unwrap()))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, Bytes::from("b")),
                (2, Bytes::from("c")),
                (4, Bytes::from("d")),
                (5, Bytes::from("e")),
            ]
        );
        // Only a partial batch: nothing, and the position does not move.
        let mut out = Vec::new();
        assert_eq!(
            decode_records(&partial.slice(..20), 6, None, &mut out).unwrap(),
            6
        );
        assert!(out.is_empty());
        assert_eq!(decode_records(&Bytes::new(), 9, None, &mut out).unwrap(), 9);
    }

    fn txn_batch(base: i64, pid: i64, values: &[&str], marker: Option<i16>) -> Bytes {
        let mut records: Vec<Record> = values
            .iter()
            .map(|v| {
                let mut r = new_record(None, Some(Bytes::from(v.to_string())), 1);
                r.transactional = true;
                if let Some(kind) = marker {
                    r.control = true;
                    let mut key = 0i16.to_be_bytes().to_vec();
                    key.extend_from_slice(&kind.to_be_bytes());
                    r.key = Some(Bytes::from(key));
                }
                r
            })
            .collect();
        let mut buf = BytesMut::new();
        let producer = ProducerIdentity { id: pid, epoch: 0 };
        let b = encode_batch(&mut buf, &mut records, producer, 0, Compression::None).unwrap();
        let mut b = BytesMut::from(&b[..]);
        b[..8].copy_from_slice(&base.to_be_bytes());
        b.freeze()
    }

    #[test]
    fn read_committed_drops_aborted_transactions() {
        let mut raw = BytesMut::new();
        raw.extend_from_slice(&txn_batch(0, 7, &["aborted1", "aborted2"], None));
        raw.extend_from_slice(&txn_batch(2, 8, &["committed"], None));
        raw.extend_from_slice(&txn_batch(3, 7, &["abort-marker"], Some(0)));
        raw.extend_from_slice(&txn_batch(4, 8, &["commit-marker"], Some(1)));
        raw.extend_from_slice(&txn_batch(5, 7, &["later"], None));
        let raw = raw.freeze();
        let values = |out: &[Record]| -> Vec<Bytes> {
            out.iter().map(|r| r.value.clone().unwrap()).collect()
        };
        let mut out = Vec::new();
        let next = decode_records(&raw, 0, Some(&[(7, 0)]), &mut out).unwrap();
        assert_eq!(next, 6);
        assert_eq!(
            values(&out),
            vec![Bytes::from("committed"), Bytes::from("later")]
        );
        let mut out = Vec::new();
        decode_records(&raw, 0, None, &mut out).unwrap();
        assert_eq!(
            out.len(),
            4,
            "read_uncommitted keeps aborted data, drops markers"
        );
    }

    #[test]
    fn range_assignor_splits_each_topic_in_ranges() {
        let subs = BTreeMap::from([
            ("m-a".to_string(), vec!["t".to_string(), "u".to_string()]),
            ("m-b".to_string(), vec!["t".to_string()]),
            ("m-c".to_string(), vec!["t".to_string(), "u".to_string()]),
        ]);
        let counts = BTreeMap::from([("t".to_string(), 7), ("u".to_string(), 1)]);
        let got = range_assign(&subs, &counts);
        let of = |m: &str, t: &str| got[m].get(t).cloned().unwrap_or_default();
        assert_eq!(of("m-a", "t"), vec![0, 1, 2]);
        assert_eq!(of("m-b", "t"), vec![3, 4]);
        assert_eq!(of("m-c", "t"), vec![5, 6]);
        assert_eq!(of("m-a", "u"), vec![0]);
        assert!(of("m-b", "u").is_empty() && of("m-c", "u").is_empty());
        // More members than partitions: the last ones get nothing, but are listed.
        let subs: BTreeMap<String, Vec<String>> = (0..3)
            .map(|i| (format!("m{i}"), vec!["u".to_string()]))
            .collect();
        let got = range_assign(&subs, &BTreeMap::from([("u".to_string(), 2)]));
        assert_eq!(got.len(), 3);
        assert_eq!(got["m0"]["u"], vec![0]);
        assert_eq!(got["m1"]["u"], vec![1]);
        assert!(got["m2"].is_empty());
    }

    #[test]
    fn consumer_protocol_round_trips() {
        let sub = encode_subscription(&["a".to_string(), "b".to_string()]);
        assert_eq!(&sub[..2], &[0, 1], "version 1 prefix");
        assert_eq!(decode_subscription(&sub).unwrap(), vec!["a", "b"]);
        let a = BTreeMap::from([("a".to_string(), vec![2, 0]), ("b".to_string(), vec![1])]);
        let bytes = encode_assignment(&a);
        let back = decode_assignment(&bytes).unwrap();
        assert_eq!(back["a"], vec![0, 2]);
        assert_eq!(back["b"], vec![1]);
        assert!(decode_assignment(&Bytes::new()).unwrap().is_empty());
        // A newer version than kafka-protocol knows is read as the newest known one.
        let mut v9 = BytesMut::from(&bytes[..]);
        v9[..2].copy_from_slice(&9i16.to_be_bytes());
        assert_eq!(decode_assignment(&v9.freeze()).unwrap(), back);
        assert!(decode_assignment(&Bytes::from_static(&[0xff, 0xff])).is_err());
        assert!(decode_subscription(&Bytes::from_static(&[0])).is_err());
    }

    #[test]
    fn isolation_levels_parse() {
        assert_eq!(parse_isolation("read_committed").unwrap(), 1);
        assert_eq!(parse_isolation("read_uncommitted").unwrap(), 0);
        assert!(parse_isolation("dirty").is_err());
    }
}
