//! The runtime around [`Groups`]: parks delayed JoinGroup/SyncGroup answers on oneshot
//! channels, writes the state machine's records to `__consumer_offsets`, loads them back at
//! start-up, and drives the timers.
//!
//! One mutex guards the state machine and the waiters. A call takes the lock, runs the state
//! machine, appends its records (synchronously, through the partition log, in the order they
//! were produced), then delivers completions, so no answer leaves before its record is in the
//! log. Offset commits are validated first and applied in memory only after their append
//! succeeded.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::error::ResponseError;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use parking_lot::Mutex;
use runnel_controller::api::{AdminRequest, AdminResponse, CreatableTopic, CreateTopicsRequest};
use runnel_controller::ControllerError;
use tokio::sync::{oneshot, watch};

use super::records;
use super::state::{
    Completion, GroupConfig, GroupDescription, Groups, JoinRequest, JoinResult, OffsetCommit,
    Outcome, Persist, SyncResult, WaiterId, MAX_OFFSET_METADATA_BYTES,
};
use super::{partition_for, OFFSETS_TOPIC};
use crate::replica::Partition;
use crate::{now_ms, SharedBroker};

/// Where the coordinator's records live: the partitions of `__consumer_offsets`.
pub trait OffsetsLog {
    /// The partition, if this node leads it (NOT_COORDINATOR otherwise).
    fn partition(&self, partition: i32) -> Result<Arc<Partition>, ResponseError>;
}

enum Waiter {
    Join(oneshot::Sender<JoinResult>),
    Sync(oneshot::Sender<SyncResult>),
}

struct Inner {
    groups: Groups,
    waiters: HashMap<WaiterId, Waiter>,
    /// The `__consumer_offsets` partitions this node coordinates (it leads them) and whether
    /// their groups are loaded yet.
    owned: HashMap<i32, Load>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Load {
    Loading,
    Loaded,
}

/// Committed offsets by topic: (partition, offset if any), in request order.
pub type CommittedOffsets = IndexMap<String, Vec<(i32, Option<records::OffsetValue>)>>;

/// A JoinGroup / SyncGroup answer: now, or once the rebalance gets there.
pub enum Answer<T> {
    Now(T),
    Later(oneshot::Receiver<T>),
}

pub struct GroupCoordinator {
    inner: Mutex<Inner>,
    next_waiter: AtomicU64,
    /// Partitions of `__consumer_offsets`: the topic's count once it exists (set by the
    /// reconciler), `offsets.topic.num.partitions` before.
    num_partitions: AtomicI32,
    /// While the broker is fenced, no group is served (NOT_COORDINATOR).
    fence: std::sync::OnceLock<Arc<crate::Fence>>,
}

impl GroupCoordinator {
    pub fn new(config: GroupConfig, num_partitions: i32) -> GroupCoordinator {
        GroupCoordinator {
            inner: Mutex::new(Inner {
                groups: Groups::new(config),
                waiters: HashMap::new(),
                owned: HashMap::new(),
            }),
            next_waiter: AtomicU64::new(1),
            num_partitions: AtomicI32::new(num_partitions.max(1)),
            fence: std::sync::OnceLock::new(),
        }
    }

    /// Ties the coordinator to the broker's fencing (set once, by the broker).
    pub fn set_fence(&self, fence: Arc<crate::Fence>) {
        let _ = self.fence.set(fence);
    }

    pub fn num_partitions(&self) -> i32 {
        self.num_partitions.load(Ordering::Relaxed)
    }

    /// Follows the partition count of `__consumer_offsets` as the image has it.
    pub fn set_num_partitions(&self, n: i32) {
        if n > 0 {
            let old = self.num_partitions.swap(n, Ordering::Relaxed);
            if old != n {
                tracing::info!(partitions = n, "__consumer_offsets partition count");
            }
        }
    }

    /// The `__consumer_offsets` partition that owns a group.
    pub fn partition_of(&self, group_id: &str) -> i32 {
        partition_for(group_id, self.num_partitions())
    }

    /// Whether this node may serve `group_id` now: NOT_COORDINATOR when it does not lead the
    /// group's partition or the broker is fenced, COORDINATOR_LOAD_IN_PROGRESS while that
    /// partition is loading.
    fn check(&self, inner: &Inner, group_id: &str) -> Result<(), ResponseError> {
        if self.fence.get().is_some_and(|f| f.is_fenced()) {
            return Err(ResponseError::NotCoordinator);
        }
        match inner.owned.get(&self.partition_of(group_id)) {
            Some(Load::Loaded) => Ok(()),
            Some(Load::Loading) => Err(ResponseError::CoordinatorLoadInProgress),
            None => Err(ResponseError::NotCoordinator),
        }
    }

    /// [`Self::check`] for handlers that answer before calling the coordinator.
    pub fn check_group(&self, group_id: &str) -> Result<(), ResponseError> {
        self.check(&self.inner.lock(), group_id)
    }

    /// This node became the leader of `__consumer_offsets` partition `partition.tp.partition`:
    /// replays it from the start and then serves its groups (COORDINATOR_LOAD_IN_PROGRESS
    /// until then). Returns the number of records replayed.
    pub fn load_partition(&self, partition: &Partition, now: i64) -> usize {
        let p = partition.tp.partition;
        self.inner.lock().owned.insert(p, Load::Loading);
        let started = std::time::Instant::now();
        // Read outside the lock: nothing writes this partition while it is loading.
        let (records, read_error) = read_offsets_partition(partition);
        let mut inner = self.inner.lock();
        if inner.owned.get(&p) != Some(&Load::Loading) {
            // Unloaded meanwhile.
            return 0;
        }
        let mut n = 0usize;
        for (offset, key, value) in &records {
            match records::decode_key(key) {
                Ok(Some(k)) => {
                    if let Err(e) = inner.groups.replay(&k, value.as_deref(), now) {
                        tracing::warn!(partition = p, offset, error = %e, "skipping record");
                    }
                    n += 1;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(partition = p, offset, error = %e, "skipping record"),
            }
        }
        // Loading may leave records to write or nothing; never answers.
        let _ = inner.groups.take_effects();
        inner.owned.insert(p, Load::Loaded);
        match read_error {
            None => tracing::info!(
                partition = p,
                records = n,
                load_ms = started.elapsed().as_millis() as u64,
                "coordinating the groups of __consumer_offsets partition"
            ),
            Some(e) => tracing::error!(
                partition = p,
                records = n,
                error = %e,
                "__consumer_offsets partition only partly readable; serving what was loaded"
            ),
        }
        n
    }

    /// This node no longer leads `__consumer_offsets` partition `partition`: its groups leave
    /// memory and their parked members are told NOT_COORDINATOR.
    pub fn unload_partition(&self, partition: i32) {
        let mut inner = self.inner.lock();
        if inner.owned.remove(&partition).is_none() {
            return;
        }
        let n = self.num_partitions();
        let dropped = inner.groups.unload(|g| partition_for(g, n) == partition);
        let effects = inner.groups.take_effects();
        for c in effects.completions {
            deliver(&mut inner, c);
        }
        tracing::info!(
            partition,
            groups = dropped,
            "no longer coordinating the groups of __consumer_offsets partition"
        );
    }

    /// The partitions whose groups are loaded here.
    pub fn owned_partitions(&self) -> Vec<i32> {
        let inner = self.inner.lock();
        let mut v: Vec<i32> = inner
            .owned
            .iter()
            .filter(|(_, l)| **l == Load::Loaded)
            .map(|(p, _)| *p)
            .collect();
        v.sort_unstable();
        v
    }

    fn waiter_id(&self) -> WaiterId {
        self.next_waiter.fetch_add(1, Ordering::Relaxed)
    }

    /// Writes pending records, then delivers pending answers. Called with the lock held.
    fn flush(&self, inner: &mut Inner, log: &dyn OffsetsLog) {
        let effects = inner.groups.take_effects();
        if !effects.persist.is_empty() {
            if let Err((group, e)) = self.append(log, &effects.persist) {
                // The in-memory state is ahead of the log until the next write of this group.
                tracing::error!(group = %group, error = ?e, "writing group metadata to __consumer_offsets failed");
            }
        }
        for c in effects.completions {
            deliver(inner, c);
        }
    }

    /// Appends records, one batch per `__consumer_offsets` partition.
    fn append(
        &self,
        log: &dyn OffsetsLog,
        persist: &[Persist],
    ) -> Result<(), (String, ResponseError)> {
        let mut by_partition: BTreeMap<i32, Vec<&Persist>> = BTreeMap::new();
        for p in persist {
            by_partition
                .entry(self.partition_of(&p.group))
                .or_default()
                .push(p);
        }
        let now = now_ms();
        for (partition, recs) in by_partition {
            let group = recs[0].group.clone();
            let batch = encode_batch(recs.iter().map(|p| (p.key.clone(), p.value.clone())), now)
                .map_err(|e| (group.clone(), e))?;
            let part = log.partition(partition).map_err(|e| (group.clone(), e))?;
            part.append(&batch, now).map_err(|e| {
                tracing::warn!(partition, error = %e, "append to __consumer_offsets failed");
                let code = match &e {
                    crate::replica::AppendError::NotLeader => ResponseError::NotCoordinator,
                    crate::replica::AppendError::Storage(e) => storage_to_coordinator_error(e),
                };
                (group.clone(), code)
            })?;
        }
        Ok(())
    }

    pub fn join(&self, log: &dyn OffsetsLog, req: JoinRequest, now: i64) -> Answer<JoinResult> {
        let waiter = self.waiter_id();
        let (tx, rx) = oneshot::channel();
        let mut inner = self.inner.lock();
        if let Err(e) = self.check(&inner, &req.group_id) {
            return Answer::Now(JoinResult::error(e, &req.member_id));
        }
        inner.waiters.insert(waiter, Waiter::Join(tx));
        let out = inner.groups.join(req, waiter, now);
        if let Outcome::Now(_) = out {
            inner.waiters.remove(&waiter);
        }
        self.flush(&mut inner, log);
        match out {
            Outcome::Now(r) => Answer::Now(r),
            Outcome::Pending => Answer::Later(rx),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &self,
        log: &dyn OffsetsLog,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now: i64,
    ) -> Answer<SyncResult> {
        let waiter = self.waiter_id();
        let (tx, rx) = oneshot::channel();
        let mut inner = self.inner.lock();
        if let Err(e) = self.check(&inner, group_id) {
            return Answer::Now(SyncResult::error(e));
        }
        inner.waiters.insert(waiter, Waiter::Sync(tx));
        let out = inner.groups.sync(
            group_id,
            generation,
            member_id,
            instance_id,
            protocol_type,
            protocol_name,
            assignments,
            waiter,
            now,
        );
        if let Outcome::Now(_) = out {
            inner.waiters.remove(&waiter);
        }
        self.flush(&mut inner, log);
        match out {
            Outcome::Now(r) => Answer::Now(r),
            Outcome::Pending => Answer::Later(rx),
        }
    }

    pub fn heartbeat(
        &self,
        log: &dyn OffsetsLog,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        now: i64,
    ) -> Result<(), ResponseError> {
        let mut inner = self.inner.lock();
        self.check(&inner, group_id)?;
        let r = inner
            .groups
            .heartbeat(group_id, generation, member_id, instance_id, now);
        self.flush(&mut inner, log);
        r
    }

    /// Removes members; one result per (member id, instance id).
    pub fn leave(
        &self,
        log: &dyn OffsetsLog,
        group_id: &str,
        members: &[(String, Option<String>)],
        now: i64,
    ) -> Vec<Option<ResponseError>> {
        let mut inner = self.inner.lock();
        if let Err(e) = self.check(&inner, group_id) {
            return vec![Some(e); members.len().max(1)];
        }
        let out = members
            .iter()
            .map(|(m, i)| inner.groups.leave(group_id, m, i.as_deref(), now))
            .collect();
        self.flush(&mut inner, log);
        out
    }

    /// OffsetCommit: a group-level check, then one append for all partitions. Returns the
    /// error code per commit, in order.
    #[allow(clippy::too_many_arguments)]
    pub fn commit(
        &self,
        log: &dyn OffsetsLog,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        commits: Vec<OffsetCommit>,
        now: i64,
    ) -> Vec<i16> {
        let mut inner = self.inner.lock();
        if let Err(e) = self.check(&inner, group_id).and_then(|()| {
            inner
                .groups
                .validate_commit(group_id, generation, member_id, instance_id, now)
        }) {
            return vec![e.code(); commits.len()];
        }
        let mut codes = vec![0i16; commits.len()];
        let mut accepted = Vec::new();
        let mut persist = Vec::new();
        for (i, c) in commits.iter().enumerate() {
            if c.metadata.len() > MAX_OFFSET_METADATA_BYTES {
                codes[i] = ResponseError::OffsetMetadataTooLarge.code();
                continue;
            }
            persist.push(Persist {
                group: group_id.to_string(),
                key: records::offset_key(group_id, &c.topic, c.partition),
                value: Some(records::offset_value(&records::OffsetValue {
                    offset: c.offset,
                    leader_epoch: c.leader_epoch,
                    metadata: c.metadata.clone(),
                    commit_timestamp: now,
                })),
            });
            accepted.push((i, c.clone()));
        }
        if !persist.is_empty() {
            if let Err((_, e)) = self.append(log, &persist) {
                for (i, _) in &accepted {
                    codes[*i] = e.code();
                }
                return codes;
            }
            let ok: Vec<OffsetCommit> = accepted.into_iter().map(|(_, c)| c).collect();
            inner.groups.apply_commit(group_id, &ok, now);
        }
        self.flush(&mut inner, log);
        codes
    }

    /// Committed offsets: `None` topics means every partition the group has an offset for.
    pub fn fetch(
        &self,
        group_id: &str,
        topics: Option<&[(String, Vec<i32>)]>,
    ) -> Result<CommittedOffsets, ResponseError> {
        let inner = self.inner.lock();
        self.check(&inner, group_id)?;
        let mut out = CommittedOffsets::new();
        let to_value = |c: &super::state::CommittedOffset| records::OffsetValue {
            offset: c.offset,
            leader_epoch: c.leader_epoch,
            metadata: c.metadata.clone(),
            commit_timestamp: c.commit_timestamp,
        };
        match topics {
            Some(ts) => {
                for (t, parts) in ts {
                    let e = out.entry(t.clone()).or_default();
                    for p in parts {
                        e.push((*p, inner.groups.committed(group_id, t, *p).map(to_value)));
                    }
                }
            }
            None => {
                for ((t, p), c) in inner.groups.all_committed(group_id) {
                    out.entry(t).or_default().push((p, Some(to_value(&c))));
                }
            }
        }
        Ok(out)
    }

    /// (group id, protocol type, state name) of every group.
    pub fn list(&self) -> Vec<(String, String, &'static str)> {
        let inner = self.inner.lock();
        let mut v: Vec<_> = inner
            .groups
            .iter()
            .map(|g| {
                (
                    g.id.clone(),
                    g.protocol_type.clone().unwrap_or_default(),
                    g.state.name(),
                )
            })
            .collect();
        v.sort();
        v
    }

    pub fn describe(&self, group_id: &str) -> Result<Option<GroupDescription>, ResponseError> {
        let inner = self.inner.lock();
        self.check(&inner, group_id)?;
        Ok(inner.groups.describe(group_id))
    }

    pub fn delete_group(&self, log: &dyn OffsetsLog, group_id: &str) -> Result<(), ResponseError> {
        let mut inner = self.inner.lock();
        self.check(&inner, group_id)?;
        let r = inner.groups.delete_group(group_id);
        self.flush(&mut inner, log);
        r
    }

    pub fn delete_offsets(
        &self,
        log: &dyn OffsetsLog,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<i16>, ResponseError> {
        let mut inner = self.inner.lock();
        self.check(&inner, group_id)?;
        let r = inner.groups.delete_offsets(group_id, partitions);
        self.flush(&mut inner, log);
        r
    }

    pub fn tick(&self, log: &dyn OffsetsLog, now: i64) {
        let mut inner = self.inner.lock();
        inner.groups.tick(now);
        self.flush(&mut inner, log);
    }
}

/// Answers a parked JoinGroup/SyncGroup.
fn deliver(inner: &mut Inner, c: Completion) {
    match c {
        Completion::Join(w, r) => {
            if let Some(Waiter::Join(tx)) = inner.waiters.remove(&w) {
                let _ = tx.send(r);
            }
        }
        Completion::Sync(w, r) => {
            if let Some(Waiter::Sync(tx)) = inner.waiters.remove(&w) {
                let _ = tx.send(r);
            }
        }
    }
}

/// (offset, key, value) of every keyed record of one `__consumer_offsets` partition, from its
/// start, and the read error that stopped it early, if any.
type OffsetsRecords = Vec<(i64, Bytes, Option<Bytes>)>;

fn read_offsets_partition(
    part: &Partition,
) -> (OffsetsRecords, Option<runnel_storage::StorageError>) {
    let p = part.tp.partition;
    let mut out = Vec::new();
    let mut offset = part.log_start_offset();
    let end = part.log_end_offset();
    while offset < end {
        let buf = match part.read_local(offset, 1 << 20, true) {
            Ok(b) => b,
            Err(e) => return (out, Some(e)),
        };
        if buf.is_empty() {
            break;
        }
        let mut next = offset;
        for b in runnel_protocol::batch::split_batches(&buf) {
            let Ok((h, range)) = b else {
                break;
            };
            next = h.last_offset() + 1;
            if h.is_control() {
                continue;
            }
            let mut slice = buf.slice(range);
            let set = match RecordBatchDecoder::decode(&mut slice) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(partition = p, offset = h.base_offset, error = %e, "skipping undecodable batch in __consumer_offsets");
                    continue;
                }
            };
            for r in set.records {
                if let Some(key) = r.key {
                    out.push((r.offset, key, r.value));
                }
            }
        }
        if next <= offset {
            break;
        }
        offset = next;
    }
    (out, None)
}

fn storage_to_coordinator_error(e: &runnel_storage::StorageError) -> ResponseError {
    // Kafka's GroupMetadataManager maps append failures this way: too large -> the commit is
    // too big, anything else -> the coordinator is (temporarily) unable to serve.
    match e {
        runnel_storage::StorageError::RecordTooLarge { .. } => {
            ResponseError::InvalidCommitOffsetSize
        }
        _ => ResponseError::CoordinatorNotAvailable,
    }
}

fn encode_batch(
    recs: impl Iterator<Item = (Bytes, Option<Bytes>)>,
    now: i64,
) -> Result<Bytes, ResponseError> {
    let records: Vec<Record> = recs
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // kafka-protocol starts a new batch when `offset - sequence` changes; this keeps
            // one batch with base sequence -1 (no producer id, so no sequence checks).
            sequence: i as i32 - 1,
            timestamp: now,
            key: Some(key),
            value,
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| {
        tracing::error!(error = %e, "cannot encode a __consumer_offsets batch");
        ResponseError::UnknownServerError
    })?;
    Ok(buf.freeze())
}

/// [`OffsetsLog`] over the broker's own partitions: only partitions led here.
pub struct BrokerOffsetsLog<'a>(pub &'a crate::Broker);

impl OffsetsLog for BrokerOffsetsLog<'_> {
    fn partition(&self, partition: i32) -> Result<Arc<Partition>, ResponseError> {
        self.0
            .replicas
            .get_by(OFFSETS_TOPIC, partition)
            .filter(|p| p.leadership().is_leader)
            .ok_or(ResponseError::NotCoordinator)
    }
}

/// Kafka's settings for `__consumer_offsets`: compacted, 100 MiB segments. Since the cleaner
/// does not exist yet, retention is disabled so committed offsets are never deleted by time or
/// size.
pub fn offsets_topic_configs() -> Vec<(String, Option<String>)> {
    [
        ("cleanup.policy", "compact"),
        ("retention.ms", "-1"),
        ("retention.bytes", "-1"),
        ("segment.bytes", "104857600"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Some(v.to_string())))
    .collect()
}

/// Asks the controller to create `__consumer_offsets` (an internal topic, which clients may not
/// create) with `offsets.topic.num.partitions` partitions and a replication factor of
/// `offsets.topic.replication.factor` capped at the live brokers, and waits until this broker
/// has applied it. Ok when it exists afterwards, whoever created it.
pub async fn ensure_offsets_topic(broker: &crate::Broker) -> Result<(), ResponseError> {
    if broker.image().image.topic_by_name(OFFSETS_TOPIC).is_some() {
        return Ok(());
    }
    let live = broker.image().image.brokers().filter(|b| !b.fenced).count();
    if live == 0 {
        return Err(ResponseError::CoordinatorNotAvailable);
    }
    let rf = (broker.config.offsets_topic_replication_factor as usize).min(live) as i16;
    let n = broker.groups.num_partitions();
    let req = AdminRequest::CreateTopics(CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: OFFSETS_TOPIC.to_string(),
            num_partitions: n,
            replication_factor: rf,
            assignments: BTreeMap::new(),
            configs: offsets_topic_configs(),
            internal: true,
        }],
        validate_only: false,
    });
    match broker.admin(req, OFFSETS_TOPIC_CREATE_TIMEOUT).await {
        Ok(AdminResponse::CreateTopics(r)) => match r.topics.into_iter().next() {
            Some((_, Ok(_))) => {
                tracing::info!(
                    partitions = n,
                    replication_factor = rf,
                    "created __consumer_offsets"
                );
            }
            Some((_, Err(ControllerError::TopicAlreadyExists(_)))) => {}
            Some((_, Err(e))) => {
                tracing::warn!(error = %e, "cannot create __consumer_offsets");
                return Err(ResponseError::CoordinatorNotAvailable);
            }
            None => return Err(ResponseError::CoordinatorNotAvailable),
        },
        Ok(other) => {
            tracing::error!(response = ?other, "unexpected controller response to CreateTopics");
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot create __consumer_offsets");
            return Err(ResponseError::CoordinatorNotAvailable);
        }
    }
    if broker.image().image.topic_by_name(OFFSETS_TOPIC).is_some() {
        Ok(())
    } else {
        Err(ResponseError::CoordinatorNotAvailable)
    }
}

/// How long a request that needs `__consumer_offsets` waits for its creation.
const OFFSETS_TOPIC_CREATE_TIMEOUT: Duration = Duration::from_secs(10);

/// Session expiry and rebalance deadlines, every 100 ms until `stop`.
pub async fn run_timer(broker: SharedBroker, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {
                broker.groups.tick(&BrokerOffsetsLog(&broker), now_ms());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::{ReplicaManager, TopicPartition};
    use runnel_storage::LogConfig;

    /// A `__consumer_offsets` made of plain partition logs in a directory.
    struct DirLog {
        replicas: ReplicaManager,
        id: uuid::Uuid,
        n: i32,
    }

    impl DirLog {
        fn open(dir: &std::path::Path, id: uuid::Uuid, n: i32) -> DirLog {
            let replicas = ReplicaManager::new(dir);
            for p in 0..n {
                replicas
                    .open_partition(
                        TopicPartition::new(OFFSETS_TOPIC, p),
                        id,
                        LogConfig::default(),
                        now_ms(),
                    )
                    .unwrap()
                    .lead_alone(1);
            }
            DirLog { replicas, id, n }
        }
    }

    impl OffsetsLog for DirLog {
        fn partition(&self, partition: i32) -> Result<Arc<Partition>, ResponseError> {
            let _ = self.id;
            self.replicas
                .get_by(OFFSETS_TOPIC, partition)
                .ok_or(ResponseError::NotCoordinator)
        }
    }

    /// The coordinator leads every partition of `log`; returns the records loaded.
    fn lead_all(c: &GroupCoordinator, log: &DirLog, now: i64) -> usize {
        (0..log.n)
            .map(|p| c.load_partition(&log.partition(p).unwrap(), now))
            .sum()
    }

    fn commit(topic: &str, partition: i32, offset: i64) -> OffsetCommit {
        OffsetCommit {
            topic: topic.into(),
            partition,
            offset,
            leader_epoch: 2,
            metadata: "meta".into(),
        }
    }

    fn cfg() -> GroupConfig {
        GroupConfig {
            initial_rebalance_delay_ms: 0,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn offsets_and_groups_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let id = uuid::Uuid::new_v4();
        let now = 1_000_000;
        {
            let log = DirLog::open(dir.path(), id, 5);
            let c = GroupCoordinator::new(cfg(), 5);
            // Before it leads the group's partition the coordinator serves nothing.
            assert_eq!(
                c.commit(&log, "solo", -1, "", None, vec![commit("t", 0, 1)], now),
                vec![ResponseError::NotCoordinator.code()]
            );
            assert_eq!(lead_all(&c, &log, now), 0);
            // A standalone consumer commits, then overwrites one offset.
            let codes = c.commit(
                &log,
                "solo",
                -1,
                "",
                None,
                vec![commit("t", 0, 10), commit("t", 1, 20)],
                now,
            );
            assert_eq!(codes, vec![0, 0]);
            assert_eq!(
                c.commit(&log, "solo", -1, "", None, vec![commit("t", 0, 11)], now),
                vec![0]
            );
            // A group member joins, syncs, commits.
            let join = c.join(
                &log,
                JoinRequest {
                    group_id: "g".into(),
                    member_id: String::new(),
                    group_instance_id: Some("inst-1".into()),
                    client_id: "cli".into(),
                    client_host: "/127.0.0.1".into(),
                    session_timeout_ms: 10_000,
                    rebalance_timeout_ms: 10_000,
                    protocol_type: "consumer".into(),
                    protocols: vec![("range".into(), Bytes::from_static(b"sub"))],
                    require_known_member_id: true,
                },
                now,
            );
            let Answer::Later(rx) = join else {
                panic!("join should wait")
            };
            let j = rx.await.unwrap();
            assert_eq!(j.error, 0);
            let Answer::Now(s) = c.sync(
                &log,
                "g",
                j.generation_id,
                &j.member_id,
                Some("inst-1"),
                None,
                None,
                vec![(j.member_id.clone(), Bytes::from_static(b"asg"))],
                now,
            ) else {
                panic!("leader sync answers at once")
            };
            assert_eq!(s.assignment, Bytes::from_static(b"asg"));
            let codes = c.commit(
                &log,
                "g",
                j.generation_id,
                &j.member_id,
                Some("inst-1"),
                vec![commit("t", 2, 7)],
                now,
            );
            assert_eq!(codes, vec![0]);
            // A deleted group leaves tombstones behind.
            assert_eq!(
                c.commit(&log, "gone", -1, "", None, vec![commit("t", 0, 1)], now),
                vec![0]
            );
            c.delete_group(&log, "gone").unwrap();
            log.replicas.close_all();
        }
        let log = DirLog::open(dir.path(), id, 5);
        let c = GroupCoordinator::new(cfg(), 5);
        assert!(lead_all(&c, &log, now + 5) >= 7);
        let solo = c.fetch("solo", None).unwrap();
        let t = &solo["t"];
        assert_eq!(t.len(), 2);
        let p0 = t.iter().find(|(p, _)| *p == 0).unwrap().1.clone().unwrap();
        assert_eq!(
            (p0.offset, p0.leader_epoch, p0.metadata.as_str()),
            (11, 2, "meta")
        );
        let g = c
            .fetch("g", Some(&[("t".to_string(), vec![2, 3])]))
            .unwrap();
        assert_eq!(g["t"][0].1.as_ref().map(|v| v.offset), Some(7));
        assert_eq!(g["t"][1].1, None);
        assert!(c.describe("gone").unwrap().is_none());
        let d = c.describe("g").unwrap().unwrap();
        assert_eq!(d.state.name(), "Stable");
        assert_eq!(d.members.len(), 1);
        assert_eq!(d.members[0].group_instance_id.as_deref(), Some("inst-1"));
        assert_eq!(d.members[0].assignment, Bytes::from_static(b"asg"));
        // The static member comes back after the restart with the same metadata: no rebalance.
        let again = c.join(
            &log,
            JoinRequest {
                group_id: "g".into(),
                member_id: String::new(),
                group_instance_id: Some("inst-1".into()),
                client_id: "cli".into(),
                client_host: "/127.0.0.1".into(),
                session_timeout_ms: 10_000,
                rebalance_timeout_ms: 10_000,
                protocol_type: "consumer".into(),
                protocols: vec![("range".into(), Bytes::from_static(b"sub"))],
                require_known_member_id: true,
            },
            now + 10,
        );
        let Answer::Now(j2) = again else {
            panic!("static rejoin answers at once")
        };
        assert_eq!(j2.error, 0);
        assert_eq!(j2.generation_id, 1);

        // Losing the leadership of g's partition drops g (and only the groups of that
        // partition) from memory; regaining it loads g back from the log.
        let pg = c.partition_of("g");
        c.unload_partition(pg);
        assert_eq!(c.describe("g").unwrap_err(), ResponseError::NotCoordinator);
        assert_eq!(
            c.fetch("g", None).unwrap_err(),
            ResponseError::NotCoordinator
        );
        if c.partition_of("solo") != pg {
            assert!(c.fetch("solo", None).unwrap().contains_key("t"));
        }
        assert!(!c.owned_partitions().contains(&pg));
        assert!(c.load_partition(&log.partition(pg).unwrap(), now + 20) > 0);
        assert_eq!(c.describe("g").unwrap().unwrap().members.len(), 1);
    }

    #[tokio::test]
    async fn a_fenced_broker_coordinates_no_group() {
        let dir = tempfile::tempdir().unwrap();
        let log = DirLog::open(dir.path(), uuid::Uuid::new_v4(), 2);
        let c = GroupCoordinator::new(cfg(), 2);
        let (tx, rx) = tokio::sync::watch::channel(runnel_controller::BrokerLifecycle {
            registered: true,
            fenced: false,
        });
        let fence = Arc::new(crate::Fence::new(rx));
        c.set_fence(fence.clone());
        fence.arm_when_unfenced();
        lead_all(&c, &log, 1_000);
        tokio::time::timeout(Duration::from_secs(5), async {
            while !fence.is_armed() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
        assert_eq!(
            c.commit(&log, "g", -1, "", None, vec![commit("t", 0, 1)], 1_001),
            vec![0]
        );
        assert!(c.check_group("g").is_ok());
        tx.send_replace(runnel_controller::BrokerLifecycle {
            registered: true,
            fenced: true,
        });
        assert_eq!(c.check_group("g"), Err(ResponseError::NotCoordinator));
        assert_eq!(
            c.fetch("g", None).unwrap_err(),
            ResponseError::NotCoordinator
        );
        assert_eq!(
            c.commit(&log, "g", -1, "", None, vec![commit("t", 0, 2)], 1_002),
            vec![ResponseError::NotCoordinator.code()]
        );
        // Unfenced again: the groups loaded before are served again.
        tx.send_replace(runnel_controller::BrokerLifecycle {
            registered: true,
            fenced: false,
        });
        assert!(c.fetch("g", None).unwrap().contains_key("t"));
    }
}
