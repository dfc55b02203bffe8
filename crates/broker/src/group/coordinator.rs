//! The runtime around [`Groups`]: parks delayed JoinGroup/SyncGroup answers on oneshot
//! channels, writes the state machine's records to `__consumer_offsets`, loads them back at
//! start-up, and drives the timers.
//!
//! One mutex guards the state machine and the waiters. A call takes the lock, runs the state
//! machine and appends its records (synchronously, through the partition log, in the order
//! they were produced). Writes are acks=all, as Kafka's coordinator makes them: an answer that
//! depends on a record (a SyncGroup assignment, an OffsetCommit) leaves only once the
//! partition's high watermark has passed it, i.e. every in-sync replica has it and a new
//! coordinator elected from the ISR will load it. Offset commits are validated first, appended,
//! and applied in memory (visible to OffsetFetch) only once replicated, in log order, so the
//! memory never shows an offset a failover could lose.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use indexmap::IndexMap;
use kafka_protocol::error::ResponseError;
use parking_lot::Mutex;
use runnel_controller::{AppliedImage, MetadataImage};
use runnel_coordinator::batch;
use runnel_coordinator::group::write_error_code;
use runnel_coordinator::log::ShardLog;
use runnel_coordinator::shard::{BatchKind, ReplayRecord};
use tokio::sync::{oneshot, watch};

use super::records;
use super::state::{
    Completion, GroupConfig, GroupDescription, Groups, JoinRequest, JoinResult, OffsetCommit,
    Outcome, Persist, SyncResult, WaiterId, MAX_OFFSET_METADATA_BYTES,
};
use super::{partition_for, OFFSETS_TOPIC};
use crate::clock::now_ms;
use crate::controller_channel::ControllerChannel;
use crate::metadata::MetadataView;

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
    /// Per `__consumer_offsets` partition, appended commits waiting for the high watermark, in
    /// log order.
    pending: HashMap<i32, VecDeque<PendingCommit>>,
    /// Per `__consumer_offsets` partition and producer id, the records of transactional offset
    /// commits that are replicated but whose transaction has not ended: applied when its
    /// COMMIT marker is, dropped on ABORT. OffsetFetch does not see them.
    pending_txn: HashMap<i32, OpenTxns>,
}

/// An offset commit in the log but not yet replicated to the whole ISR.
struct PendingCommit {
    part: Arc<dyn ShardLog>,
    /// The offset of its last record in `__consumer_offsets`.
    last_offset: i64,
    group: String,
    commits: Vec<OffsetCommit>,
    now: i64,
    /// A transactional commit: the producer id and the records it wrote, which wait for the
    /// transaction's marker once replicated.
    txn: Option<(i64, Vec<KeyValue>)>,
}

pub use crate::config::CoordinatorSettings;

/// A batch the coordinator appended: replicated once the partition's high watermark passes
/// `last_offset` in `epoch`.
#[derive(Clone)]
struct Appended {
    part: Arc<dyn ShardLog>,
    at: runnel_coordinator::log::Appended,
}

impl Appended {
    /// `None` while waiting, else whether it is replicated (or the coordinator error).
    fn check(&self) -> Option<Result<(), ResponseError>> {
        self.part
            .ack_status(self.at)
            .map(|r| r.map_err(|e| write_error_code(&e)))
    }

    async fn wait(&self, deadline: tokio::time::Instant) -> Result<(), ResponseError> {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        self.part
            .clone()
            .wait_replicated(self.at, left.as_millis() as u64)
            .await
            .map_err(|e| write_error_code(&e))
    }
}

/// Whether the records a flush wrote are replicated.
enum Durable {
    Now,
    Failed(ResponseError),
    Later(Vec<Appended>, tokio::time::Instant),
}

impl Durable {
    /// Waits for the records; Ok, or the coordinator error to answer with.
    async fn wait(waits: &[Appended], deadline: tokio::time::Instant) -> Result<(), ResponseError> {
        for a in waits {
            a.wait(deadline).await?;
        }
        Ok(())
    }

    /// `r` once the records are replicated, else `fail(error)`.
    fn answer<T: Send + 'static>(
        self,
        r: T,
        fail: impl FnOnce(ResponseError) -> T + Send + 'static,
    ) -> Answer<T> {
        match self {
            Durable::Now => Answer::Now(r),
            Durable::Failed(e) => Answer::Now(fail(e)),
            Durable::Later(waits, deadline) => {
                let (tx, rx) = oneshot::channel();
                tokio::spawn(async move {
                    let r = match Durable::wait(&waits, deadline).await {
                        Ok(()) => r,
                        Err(e) => fail(e),
                    };
                    let _ = tx.send(r);
                });
                Answer::Later(rx)
            }
        }
    }
}

/// An OffsetCommit's answer: now, or once its records are replicated
/// ([`CommitWait::finish`]).
pub enum CommitAnswer {
    Now(Vec<i16>),
    Replicating(CommitWait),
}

/// A commit waiting for the ISR.
pub struct CommitWait {
    appended: Appended,
    partition: i32,
    codes: Vec<i16>,
    accepted: Vec<usize>,
    deadline: tokio::time::Instant,
}

impl CommitWait {
    /// Waits (up to `offsets.commit.timeout.ms`) until the commit is replicated, applies the
    /// replicated commits of its partition, and returns the per-partition codes.
    pub async fn finish(mut self, coordinator: &GroupCoordinator) -> Vec<i16> {
        match self.appended.wait(self.deadline).await {
            Ok(()) => coordinator.apply_replicated(self.partition),
            Err(e) => {
                // The records stay in the log; if the high watermark passes them later they
                // are applied then, else a new coordinator decides from its own log.
                for i in &self.accepted {
                    self.codes[*i] = e.code();
                }
            }
        }
        self.codes
    }
}

/// A `__consumer_offsets` partition coordinated here.
enum Load {
    Loading,
    /// Serving, writing to the partition's log.
    Loaded(Arc<dyn ShardLog>),
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
    fence: std::sync::OnceLock<Arc<crate::fence::Fence>>,
    settings: Mutex<CoordinatorSettings>,
    /// When offsets were last checked for expiry (ms).
    last_expiry_check: std::sync::atomic::AtomicI64,
    /// The latest metadata image (set once, by the broker): which topic partitions exist, for
    /// the offsets of deleted topics that loading a partition or the expiry sweep finds.
    metadata: std::sync::OnceLock<ImageSource>,
}

/// Reads the latest applied metadata image.
pub type ImageSource = Box<dyn Fn() -> Arc<AppliedImage> + Send + Sync>;

/// Whether `topic`-`partition` exists in `image`.
fn partition_exists(image: &MetadataImage, topic: &str, partition: i32) -> bool {
    image
        .topic_by_name(topic)
        .is_some_and(|t| t.partitions.contains_key(&partition))
}

impl GroupCoordinator {
    pub fn new(config: GroupConfig, num_partitions: i32) -> GroupCoordinator {
        GroupCoordinator {
            inner: Mutex::new(Inner {
                groups: Groups::new(config),
                waiters: HashMap::new(),
                owned: HashMap::new(),
                pending: HashMap::new(),
                pending_txn: HashMap::new(),
            }),
            next_waiter: AtomicU64::new(1),
            num_partitions: AtomicI32::new(num_partitions.max(1)),
            fence: std::sync::OnceLock::new(),
            settings: Mutex::new(CoordinatorSettings::default()),
            last_expiry_check: std::sync::atomic::AtomicI64::new(0),
            metadata: std::sync::OnceLock::new(),
        }
    }

    /// Ties the coordinator to the broker's metadata image (set once, by the broker).
    pub fn set_metadata(&self, image: ImageSource) {
        let _ = self.metadata.set(image);
    }

    pub fn set_settings(&self, settings: CoordinatorSettings) {
        *self.settings.lock() = settings;
    }

    fn commit_deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_millis(self.settings.lock().commit_timeout_ms)
    }

    /// Ties the coordinator to the broker's fencing (set once, by the broker).
    pub fn set_fence(&self, fence: Arc<crate::fence::Fence>) {
        let _ = self.fence.set(fence);
    }

    pub fn num_partitions(&self) -> i32 {
        self.num_partitions.load(Ordering::Relaxed)
    }

    /// How `__consumer_offsets` is created when it does not exist yet.
    pub fn offsets_topic_settings(&self) -> OffsetsTopicSettings {
        OffsetsTopicSettings {
            partitions: self.num_partitions(),
            replication_factor: self.settings.lock().offsets_topic_replication_factor,
        }
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
            Some(Load::Loaded(_)) => Ok(()),
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
    ///
    /// Offsets of topic partitions the current metadata image does not have (their topic was
    /// deleted while no coordinator had this partition loaded, or the tombstones written then
    /// were lost) are removed as the loading ends, with tombstones written to `log`, so that a
    /// topic created later under the same name never sees them.
    pub fn load_partition(&self, p: i32, log: Arc<dyn ShardLog>, now: i64) -> usize {
        {
            let mut inner = self.inner.lock();
            inner.owned.insert(p, Load::Loading);
            inner.pending.remove(&p);
            inner.pending_txn.remove(&p);
        }
        let started = std::time::Instant::now();
        // Read outside the lock: nothing writes this partition while it is loading.
        let (records, open_txns, read_error) = read_offsets_partition(&*log);
        let mut inner = self.inner.lock();
        if !matches!(inner.owned.get(&p), Some(Load::Loading)) {
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
        // Replaying writes nothing and never answers.
        let _ = inner.groups.take_effects();
        if !open_txns.is_empty() {
            inner.pending_txn.insert(p, open_txns);
        }
        inner.owned.insert(p, Load::Loaded(log));
        if let Some(image) = self.metadata.get().map(|f| f()) {
            let n_parts = self.num_partitions();
            let removed = self.remove_offsets_locked(
                &mut inner,
                &|g: &str| partition_for(g, n_parts) == p,
                &|t: &str, q: i32| !partition_exists(&image.image, t, q),
            );
            if removed > 0 {
                tracing::info!(
                    partition = p,
                    offsets = removed,
                    "removed committed offsets of deleted topics found while loading"
                );
                self.flush_tombstones(&mut inner);
            }
        }
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
        inner.pending.remove(&partition);
        inner.pending_txn.remove(&partition);
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
            .filter(|(_, l)| matches!(l, Load::Loaded(_)))
            .map(|(p, _)| *p)
            .collect();
        v.sort_unstable();
        v
    }

    /// The log of `__consumer_offsets` partition `partition`, if its groups are served here.
    fn log_of(inner: &Inner, partition: i32) -> Result<Arc<dyn ShardLog>, ResponseError> {
        match inner.owned.get(&partition) {
            Some(Load::Loaded(log)) => Ok(log.clone()),
            _ => Err(ResponseError::NotCoordinator),
        }
    }

    fn waiter_id(&self) -> WaiterId {
        self.next_waiter.fetch_add(1, Ordering::Relaxed)
    }

    /// Writes pending records, then delivers pending answers once the records are replicated
    /// (at once when they already are, as with an ISR of one; from a task otherwise). If the
    /// write fails, the answers become that error. Called with the lock held; returns whether
    /// the records are replicated, for the caller's own answer.
    fn flush(&self, inner: &mut Inner) -> Durable {
        let effects = inner.groups.take_effects();
        let mut waits = Vec::new();
        let mut failed = None;
        if !effects.persist.is_empty() {
            match self.append(inner, &effects.persist) {
                Ok(appended) => {
                    for a in appended {
                        match a.check() {
                            Some(Ok(())) => {}
                            Some(Err(e)) => failed = Some(e),
                            None => waits.push(a),
                        }
                    }
                }
                Err((group, e)) => {
                    // The in-memory state is ahead of the log until the next write of this
                    // group; the members waiting on it get the error and rejoin.
                    tracing::error!(group = %group, error = ?e, "writing group metadata to __consumer_offsets failed");
                    failed = Some(e);
                }
            }
        }
        if let Some(e) = failed {
            for c in effects.completions {
                deliver(inner, fail(c, e));
            }
            return Durable::Failed(e);
        }
        if waits.is_empty() || tokio::runtime::Handle::try_current().is_err() {
            for c in effects.completions {
                deliver(inner, c);
            }
            return Durable::Now;
        }
        let deadline = self.commit_deadline();
        let ready: Vec<(Waiter, Completion)> = effects
            .completions
            .into_iter()
            .filter_map(|c| {
                let id = match &c {
                    Completion::Join(w, _) | Completion::Sync(w, _) => *w,
                };
                inner.waiters.remove(&id).map(|w| (w, c))
            })
            .collect();
        if !ready.is_empty() {
            let waits = waits.clone();
            tokio::spawn(async move {
                let r = Durable::wait(&waits, deadline).await;
                for (w, c) in ready {
                    let c = match &r {
                        Err(e) => fail(c, *e),
                        Ok(()) => c,
                    };
                    send(w, c);
                }
            });
        }
        Durable::Later(waits, deadline)
    }

    /// Appends records, one batch per `__consumer_offsets` partition, as an acks=all write:
    /// refused (COORDINATOR_NOT_AVAILABLE) while the partition's ISR is below its
    /// `min.insync.replicas`. Returns what to wait for.
    fn append(
        &self,
        inner: &Inner,
        persist: &[Persist],
    ) -> Result<Vec<Appended>, (String, ResponseError)> {
        let mut by_partition: BTreeMap<i32, Vec<&Persist>> = BTreeMap::new();
        for p in persist {
            by_partition
                .entry(self.partition_of(&p.group))
                .or_default()
                .push(p);
        }
        let now = now_ms();
        let mut out = Vec::with_capacity(by_partition.len());
        for (partition, recs) in by_partition {
            let group = recs[0].group.clone();
            let records: Vec<KeyValue> = recs
                .iter()
                .map(|p| (p.key.clone(), p.value.clone()))
                .collect();
            let batch = encode_batch(BatchKind::Plain, &records, now, -1)
                .map_err(|e| (group.clone(), e))?;
            let part = Self::log_of(inner, partition).map_err(|e| (group.clone(), e))?;
            if let Err(e) = part.check_writable() {
                return Err((group, write_error_code(&e)));
            }
            let at = part.append(batch, now).map_err(|e| {
                tracing::warn!(partition, error = %e, "append to __consumer_offsets failed");
                (group.clone(), write_error_code(&e))
            })?;
            out.push(Appended { part, at });
        }
        Ok(out)
    }

    /// Applies, in log order, the pending commits of `partition` that the high watermark has
    /// passed.
    fn apply_replicated(&self, partition: i32) {
        let mut inner = self.inner.lock();
        self.apply_replicated_locked(&mut inner, partition);
    }

    fn apply_replicated_locked(&self, inner: &mut Inner, partition: i32) {
        let Some(queue) = inner.pending.get_mut(&partition) else {
            return;
        };
        let mut ready = Vec::new();
        while let Some(front) = queue.front() {
            if front.last_offset >= front.part.high_watermark() {
                break;
            }
            ready.extend(queue.pop_front());
        }
        if queue.is_empty() {
            inner.pending.remove(&partition);
        }
        for c in ready {
            match c.txn {
                None => inner.groups.apply_commit(&c.group, &c.commits, c.now),
                Some((pid, records)) => inner
                    .pending_txn
                    .entry(partition)
                    .or_default()
                    .entry(pid)
                    .or_default()
                    .extend(records),
            }
        }
    }

    /// Forgets pending commits of `group` (all of its partitions when `partitions` is `None`):
    /// a later tombstone in the log supersedes them.
    fn drop_pending(&self, inner: &mut Inner, group: &str, partitions: Option<&[(String, i32)]>) {
        let p = self.partition_of(group);
        if let Some(queue) = inner.pending.get_mut(&p) {
            for c in queue.iter_mut().filter(|c| c.group == group) {
                match partitions {
                    None => c.commits.clear(),
                    Some(ps) => c
                        .commits
                        .retain(|o| !ps.iter().any(|(t, n)| *t == o.topic && *n == o.partition)),
                }
            }
        }
    }

    pub fn join(&self, req: JoinRequest, now: i64) -> Answer<JoinResult> {
        let waiter = self.waiter_id();
        let (tx, rx) = oneshot::channel();
        let mut inner = self.inner.lock();
        if let Err(e) = self.check(&inner, &req.group_id) {
            return Answer::Now(JoinResult::error(e, &req.member_id));
        }
        inner.waiters.insert(waiter, Waiter::Join(tx));
        let member_id = req.member_id.clone();
        let out = inner.groups.join(req, waiter, now);
        if let Outcome::Now(_) = out {
            inner.waiters.remove(&waiter);
        }
        let durable = self.flush(&mut inner);
        match out {
            Outcome::Now(r) => durable.answer(r, move |e| JoinResult::error(e, &member_id)),
            Outcome::Pending => Answer::Later(rx),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &self,
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
        let durable = self.flush(&mut inner);
        match out {
            Outcome::Now(r) => durable.answer(r, SyncResult::error),
            Outcome::Pending => Answer::Later(rx),
        }
    }

    pub fn heartbeat(
        &self,
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
        self.flush(&mut inner);
        r
    }

    /// Removes members; one result per (member id, instance id).
    pub fn leave(
        &self,
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
        self.flush(&mut inner);
        out
    }

    /// OffsetCommit: a group-level check, then one append for all partitions, answered once
    /// replicated. The codes are per commit, in order.
    #[allow(clippy::too_many_arguments)]
    pub fn commit(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        commits: Vec<OffsetCommit>,
        now: i64,
    ) -> CommitAnswer {
        let mut inner = self.inner.lock();
        if let Err(e) = self.check(&inner, group_id).and_then(|()| {
            inner
                .groups
                .validate_commit(group_id, generation, member_id, instance_id, now)
        }) {
            return CommitAnswer::Now(vec![e.code(); commits.len()]);
        }
        let (mut codes, accepted, records) = offset_records(group_id, &commits, now);
        let persist: Vec<Persist> = records
            .into_iter()
            .map(|(key, value)| Persist {
                group: group_id.to_string(),
                key,
                value,
            })
            .collect();
        if persist.is_empty() {
            self.flush(&mut inner);
            return CommitAnswer::Now(codes);
        }
        let appended = match self.append(&inner, &persist) {
            Ok(mut a) => a.remove(0),
            Err((_, e)) => {
                for i in &accepted {
                    codes[*i] = e.code();
                }
                return CommitAnswer::Now(codes);
            }
        };
        let partition = self.partition_of(group_id);
        inner
            .pending
            .entry(partition)
            .or_default()
            .push_back(PendingCommit {
                part: appended.part.clone(),
                last_offset: appended.at.last_offset,
                group: group_id.to_string(),
                commits: accepted.iter().map(|i| commits[*i].clone()).collect(),
                now,
                txn: None,
            });
        self.flush(&mut inner);
        match appended.check() {
            Some(Ok(())) => {
                self.apply_replicated_locked(&mut inner, partition);
                CommitAnswer::Now(codes)
            }
            Some(Err(e)) => {
                for i in &accepted {
                    codes[*i] = e.code();
                }
                CommitAnswer::Now(codes)
            }
            None => CommitAnswer::Replicating(CommitWait {
                appended,
                partition,
                codes,
                accepted,
                deadline: self.commit_deadline(),
            }),
        }
    }

    /// TxnOffsetCommit: validated as an OffsetCommit, written as a transactional batch of
    /// producer `producer_id`/`producer_epoch`, and held once replicated until the
    /// transaction's marker: applied on COMMIT, dropped on ABORT ([`Self::complete_txn`]).
    #[allow(clippy::too_many_arguments)]
    pub fn commit_txn(
        &self,
        group_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        commits: Vec<OffsetCommit>,
        now: i64,
    ) -> CommitAnswer {
        let mut inner = self.inner.lock();
        if let Err(e) = self.check(&inner, group_id).and_then(|()| {
            inner
                .groups
                .validate_commit(group_id, generation, member_id, instance_id, now)
        }) {
            return CommitAnswer::Now(vec![e.code(); commits.len()]);
        }
        let (mut codes, accepted, records) = offset_records(group_id, &commits, now);
        if records.is_empty() {
            return CommitAnswer::Now(codes);
        }
        let partition = self.partition_of(group_id);
        let fail = |codes: &mut Vec<i16>, e: ResponseError| {
            for i in &accepted {
                codes[*i] = e.code();
            }
        };
        let part = match Self::log_of(&inner, partition) {
            Ok(p) => p,
            Err(e) => {
                fail(&mut codes, e);
                return CommitAnswer::Now(codes);
            }
        };
        if let Err(e) = part.check_writable() {
            fail(&mut codes, write_error_code(&e));
            return CommitAnswer::Now(codes);
        }
        // The partition checks the producer's sequence like a client's: continue it.
        let base_sequence = part.next_sequence(producer_id, producer_epoch);
        let kind = BatchKind::Transactional {
            producer_id,
            producer_epoch,
        };
        let batch = match encode_batch(kind, &records, now, base_sequence) {
            Ok(b) => b,
            Err(e) => {
                fail(&mut codes, e);
                return CommitAnswer::Now(codes);
            }
        };
        let at = match part.append(batch, now) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(partition, error = %e, "transactional append to __consumer_offsets failed");
                fail(&mut codes, write_error_code(&e));
                return CommitAnswer::Now(codes);
            }
        };
        let appended = Appended { part, at };
        inner
            .pending
            .entry(partition)
            .or_default()
            .push_back(PendingCommit {
                part: appended.part.clone(),
                last_offset: appended.at.last_offset,
                group: group_id.to_string(),
                commits: Vec::new(),
                now,
                txn: Some((producer_id, records)),
            });
        match appended.check() {
            Some(Ok(())) => {
                self.apply_replicated_locked(&mut inner, partition);
                CommitAnswer::Now(codes)
            }
            Some(Err(e)) => {
                fail(&mut codes, e);
                CommitAnswer::Now(codes)
            }
            None => CommitAnswer::Replicating(CommitWait {
                appended,
                partition,
                codes,
                accepted,
                deadline: self.commit_deadline(),
            }),
        }
    }

    /// A transaction marker of `producer_id` is replicated in `__consumer_offsets` partition
    /// `partition`: its transactional offset commits there become committed offsets (COMMIT)
    /// or are dropped (ABORT).
    pub fn complete_txn(&self, partition: i32, producer_id: i64, commit: bool, now: i64) {
        let mut inner = self.inner.lock();
        if !matches!(inner.owned.get(&partition), Some(Load::Loaded(_))) {
            return; // replayed with the marker when the partition loads
        }
        // Every record before the marker is replicated now.
        self.apply_replicated_locked(&mut inner, partition);
        let records = inner
            .pending_txn
            .get_mut(&partition)
            .and_then(|m| m.remove(&producer_id))
            .unwrap_or_default();
        if !commit {
            return;
        }
        for (key, value) in records {
            match records::decode_key(&key) {
                Ok(Some(k)) => {
                    if let Err(e) = inner.groups.replay(&k, value.as_deref(), now) {
                        tracing::warn!(partition, error = %e, "skipping a transactional offset commit");
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(partition, error = %e, "skipping a transactional offset commit")
                }
            }
        }
        let _ = inner.groups.take_effects();
    }

    /// Whether `group_id` has transactional offset commits waiting for their transaction
    /// (OffsetFetch with `require_stable` answers UNSTABLE_OFFSET_COMMIT meanwhile).
    pub fn has_pending_txn_offsets(&self, group_id: &str, topic: &str, partition: i32) -> bool {
        let inner = self.inner.lock();
        let key = records::offset_key(group_id, topic, partition);
        let p = self.partition_of(group_id);
        let in_txn = inner
            .pending_txn
            .get(&p)
            .is_some_and(|m| m.values().any(|recs| recs.iter().any(|(k, _)| *k == key)));
        in_txn
            || inner.pending.get(&p).is_some_and(|q| {
                q.iter().any(|c| {
                    c.group == group_id
                        && (c
                            .commits
                            .iter()
                            .any(|o| o.topic == topic && o.partition == partition)
                            || c.txn
                                .as_ref()
                                .is_some_and(|(_, recs)| recs.iter().any(|(k, _)| *k == key)))
                })
            })
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

    pub fn delete_group(&self, group_id: &str) -> Result<(), ResponseError> {
        let mut inner = self.inner.lock();
        self.check(&inner, group_id)?;
        let r = inner.groups.delete_group(group_id);
        if r.is_ok() {
            self.drop_pending(&mut inner, group_id, None);
        }
        self.flush(&mut inner);
        r
    }

    pub fn delete_offsets(
        &self,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<i16>, ResponseError> {
        let mut inner = self.inner.lock();
        self.check(&inner, group_id)?;
        let r = inner.groups.delete_offsets(group_id, partitions);
        if r.is_ok() {
            self.drop_pending(&mut inner, group_id, Some(partitions));
        }
        self.flush(&mut inner);
        r
    }

    /// Removes the loaded groups' offsets of topic partitions the latest metadata image does
    /// not have: a commit that raced with its topic's deletion, or tombstones that could not
    /// be written when the deletion was seen.
    fn remove_offsets_of_missing_partitions(&self, inner: &mut Inner) {
        let Some(image) = self.metadata.get().map(|f| f()) else {
            return;
        };
        let removed = self.remove_offsets_locked(inner, &|_: &str| true, &|t: &str, p: i32| {
            !partition_exists(&image.image, t, p)
        });
        if removed > 0 {
            tracing::info!(
                offsets = removed,
                "removed committed offsets of deleted topics"
            );
        }
    }

    /// Timers: session and rebalance deadlines, commits replicated after their request gave
    /// up waiting, and offset expiry (and the offsets of deleted topics) every
    /// `offsets.retention.check.interval.ms`.
    pub fn tick(&self, now: i64) {
        let mut inner = self.inner.lock();
        inner.groups.tick(now);
        let partitions: Vec<i32> = inner.pending.keys().copied().collect();
        for p in partitions {
            self.apply_replicated_locked(&mut inner, p);
        }
        let settings = *self.settings.lock();
        let last = self.last_expiry_check.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= settings.retention_check_interval_ms {
            self.last_expiry_check.store(now, Ordering::Relaxed);
            self.remove_offsets_of_missing_partitions(&mut inner);
            self.expire_offsets(&mut inner, now, settings.offsets_retention_ms);
        }
        self.flush(&mut inner);
    }

    /// The partitions of the deleted topics, (name, partitions), lost their committed offsets
    /// (Kafka's `onPartitionsDeleted`): every loaded group's offsets of them are removed and
    /// tombstones written to `log` (acks=all, as every coordinator write), commits of them
    /// still being replicated included. Groups of partitions not loaded here are left to the
    /// coordinator that loads them ([`Self::load_partition`]). No rebalance starts. Returns
    /// the number of offsets removed.
    pub fn on_partitions_deleted(&self, deleted: &[(String, Vec<i32>)]) -> usize {
        if deleted.is_empty() {
            return 0;
        }
        let gone: HashSet<(&str, i32)> = deleted
            .iter()
            .flat_map(|(t, ps)| ps.iter().map(move |p| (t.as_str(), *p)))
            .collect();
        let mut inner = self.inner.lock();
        let removed =
            self.remove_offsets_locked(&mut inner, &|_: &str| true, &|t: &str, p: i32| {
                gone.contains(&(t, p))
            });
        if removed > 0 {
            let topics: Vec<&str> = deleted.iter().map(|(t, _)| t.as_str()).collect();
            tracing::info!(
                ?topics,
                offsets = removed,
                "removed committed offsets of deleted topics"
            );
        }
        self.flush_tombstones(&mut inner);
        removed
    }

    /// (group, topic, partition) of every commit still being replicated.
    fn pending_keys(inner: &Inner) -> HashSet<(String, String, i32)> {
        inner
            .pending
            .values()
            .flatten()
            .flat_map(|c| {
                c.commits
                    .iter()
                    .map(|o| (c.group.clone(), o.topic.clone(), o.partition))
            })
            .collect()
    }

    /// [`Groups::remove_offsets`], and the pending commits of the removed partitions are
    /// dropped (their tombstones come after them in the log). The tombstones go out with the
    /// next flush.
    fn remove_offsets_locked(
        &self,
        inner: &mut Inner,
        in_scope: &dyn Fn(&str) -> bool,
        gone: &dyn Fn(&str, i32) -> bool,
    ) -> usize {
        let pending = Self::pending_keys(inner);
        let removed = inner.groups.remove_offsets(in_scope, gone, &pending);
        for queue in inner.pending.values_mut() {
            for c in queue.iter_mut().filter(|c| in_scope(&c.group)) {
                c.commits.retain(|o| !gone(&o.topic, o.partition));
            }
        }
        removed
    }

    /// Flushes records that no request waits for, logging a write that fails.
    fn flush_tombstones(&self, inner: &mut Inner) {
        match self.flush(inner) {
            Durable::Now => {}
            Durable::Failed(e) => {
                tracing::warn!(error = ?e, "writing offset tombstones to __consumer_offsets failed")
            }
            Durable::Later(waits, deadline) => {
                if tokio::runtime::Handle::try_current().is_ok() {
                    tokio::spawn(async move {
                        if let Err(e) = Durable::wait(&waits, deadline).await {
                            tracing::warn!(error = ?e, "offset tombstones not replicated to the ISR in time");
                        }
                    });
                }
            }
        }
    }

    /// Removes expired offsets of the loaded groups ([`Groups::expire_offsets`]); their
    /// tombstones go out with the next flush.
    fn expire_offsets(&self, inner: &mut Inner, now: i64, retention_ms: i64) {
        let pending = Self::pending_keys(inner);
        let removed = inner.groups.expire_offsets(now, retention_ms, &pending);
        if removed > 0 {
            tracing::info!(offsets = removed, retention_ms, "expired committed offsets");
        }
    }
}

/// The same answer as the error `e`.
fn fail(c: Completion, e: ResponseError) -> Completion {
    match c {
        Completion::Join(w, r) => Completion::Join(w, JoinResult::error(e, &r.member_id)),
        Completion::Sync(w, _) => Completion::Sync(w, SyncResult::error(e)),
    }
}

/// Sends an answer to a waiter already taken out of the map.
fn send(w: Waiter, c: Completion) {
    match (w, c) {
        (Waiter::Join(tx), Completion::Join(_, r)) => {
            let _ = tx.send(r);
        }
        (Waiter::Sync(tx), Completion::Sync(_, r)) => {
            let _ = tx.send(r);
        }
        _ => tracing::error!("group answer of the wrong kind for its waiter"),
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

/// The records of an offset commit: the per-commit codes (OFFSET_METADATA_TOO_LARGE for
/// metadata over the limit, else 0), the indexes of the accepted commits, and their records.
fn offset_records(
    group_id: &str,
    commits: &[OffsetCommit],
    now: i64,
) -> (Vec<i16>, Vec<usize>, Vec<KeyValue>) {
    let mut codes = vec![0i16; commits.len()];
    let mut accepted = Vec::new();
    let mut out = Vec::new();
    for (i, c) in commits.iter().enumerate() {
        if c.metadata.len() > MAX_OFFSET_METADATA_BYTES {
            codes[i] = ResponseError::OffsetMetadataTooLarge.code();
            continue;
        }
        out.push((
            records::offset_key(group_id, &c.topic, c.partition),
            Some(records::offset_value(&records::OffsetValue {
                offset: c.offset,
                leader_epoch: c.leader_epoch,
                metadata: c.metadata.clone(),
                commit_timestamp: now,
            })),
        ));
        accepted.push(i);
    }
    (codes, accepted, out)
}

/// (offset, key, value) of every keyed record of one `__consumer_offsets` partition, from its
/// start, to replay in order: plain records where they are, transactional offset commits where
/// their COMMIT marker is (aborted ones not at all). Also the records of transactions still
/// open at the end, by producer id, and the read error that stopped it early, if any.
type OffsetsRecords = Vec<(i64, Bytes, Option<Bytes>)>;
/// A record's key and value (`None`: a tombstone).
type KeyValue = (Bytes, Option<Bytes>);
/// Records of transactions not ended yet, by producer id.
type OpenTxns = HashMap<i64, Vec<KeyValue>>;

fn read_offsets_partition(part: &dyn ShardLog) -> (OffsetsRecords, OpenTxns, Option<String>) {
    let mut out = Vec::new();
    let mut open: HashMap<i64, Vec<(i64, Bytes, Option<Bytes>)>> = HashMap::new();
    let mut offset = part.log_start_offset();
    let end = part.log_end_offset();
    let mut error = None;
    while offset < end {
        let buf = match part.read(offset, 1 << 20) {
            Ok(b) => b,
            Err(e) => {
                error = Some(e);
                break;
            }
        };
        if buf.is_empty() {
            break;
        }
        let next = batch::for_each_record(&buf, |r| match r {
            ReplayRecord::Marker {
                producer_id,
                commit,
                ..
            } => {
                let records = open.remove(producer_id).unwrap_or_default();
                if *commit {
                    out.extend(records);
                }
            }
            ReplayRecord::Data {
                offset,
                producer_id,
                transactional,
                key,
                value,
                ..
            } => {
                let rec = (
                    *offset,
                    Bytes::copy_from_slice(key),
                    value.map(Bytes::copy_from_slice),
                );
                if *transactional {
                    open.entry(*producer_id).or_default().push(rec);
                } else {
                    out.push(rec);
                }
            }
        });
        match next {
            Some(next) if next > offset => offset = next,
            _ => break,
        }
    }
    let open = open
        .into_iter()
        .map(|(pid, recs)| (pid, recs.into_iter().map(|(_, k, v)| (k, v)).collect()))
        .collect();
    (out, open, error)
}

/// One batch of `recs`, of `kind`; a transactional one continues its producer's sequence at
/// `base_sequence`.
fn encode_batch(
    kind: BatchKind,
    recs: &[KeyValue],
    now: i64,
    base_sequence: i32,
) -> Result<Bytes, ResponseError> {
    batch::encode_at(kind, recs, now, base_sequence).map_err(|e| {
        tracing::error!(error = %e, "cannot encode a __consumer_offsets batch");
        ResponseError::UnknownServerError
    })
}

/// Kafka's settings for `__consumer_offsets`: compacted (the log cleaner keeps the latest
/// record per group and per committed partition; `compact` alone never deletes by retention),
/// 100 MiB segments.
pub fn offsets_topic_configs() -> Vec<(String, Option<String>)> {
    [
        ("cleanup.policy", "compact"),
        ("segment.bytes", "104857600"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Some(v.to_string())))
    .collect()
}

/// Asks the controller to create `__consumer_offsets` (an internal topic, which clients may not
/// create) with `offsets.topic.num.partitions` partitions and a replication factor of
/// `offsets.topic.replication.factor` capped at the registered brokers (COORDINATOR_NOT_AVAILABLE
/// while fewer of them are live), and waits until this broker has applied it. Ok when it
/// exists afterwards, whoever created it.
pub async fn ensure_offsets_topic(
    metadata: &MetadataView,
    controller: &ControllerChannel,
    settings: OffsetsTopicSettings,
) -> Result<(), ResponseError> {
    crate::coordinators::topics::ensure_internal_topic(
        metadata,
        controller,
        &crate::coordinators::topics::InternalTopic {
            name: OFFSETS_TOPIC,
            partitions: settings.partitions,
            replication_factor: settings.replication_factor,
            configs: offsets_topic_configs(),
        },
    )
    .await
}

/// How `__consumer_offsets` is created: `offsets.topic.num.partitions` and
/// `offsets.topic.replication.factor`.
#[derive(Debug, Clone, Copy)]
pub struct OffsetsTopicSettings {
    pub partitions: i32,
    pub replication_factor: i16,
}

/// Session expiry and rebalance deadlines, every 100 ms until `stop`.
pub async fn run_timer(groups: Arc<GroupCoordinator>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {
                groups.tick(now_ms());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinators::shard_log::BrokerShardLog;
    use crate::replica::{Partition, ReplicaManager, TopicPartition};
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

    impl DirLog {
        fn part(&self, partition: i32) -> Arc<Partition> {
            let _ = self.id;
            self.replicas.get_by(OFFSETS_TOPIC, partition).unwrap()
        }
    }

    /// Loads `__consumer_offsets` partition `p` of `log`.
    fn load(c: &GroupCoordinator, log: &DirLog, p: i32, now: i64) -> usize {
        c.load_partition(p, Arc::new(BrokerShardLog(log.part(p))), now)
    }

    /// The coordinator leads every partition of `log`; returns the records loaded.
    fn lead_all(c: &GroupCoordinator, log: &DirLog, now: i64) -> usize {
        (0..log.n).map(|p| load(c, log, p, now)).sum()
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

    /// A commit on partitions led alone: replicated at once.
    #[allow(clippy::too_many_arguments)]
    fn commit_now(
        c: &GroupCoordinator,
        group: &str,
        generation: i32,
        member: &str,
        instance: Option<&str>,
        commits: Vec<OffsetCommit>,
        now: i64,
    ) -> Vec<i16> {
        match c.commit(group, generation, member, instance, commits, now) {
            CommitAnswer::Now(codes) => codes,
            CommitAnswer::Replicating(_) => panic!("an ISR of one waits for nothing"),
        }
    }

    /// A new static member `instance` of group "g" (range assignor, 10 s timeouts).
    fn static_join(instance: &str) -> JoinRequest {
        JoinRequest {
            group_id: "g".into(),
            member_id: String::new(),
            group_instance_id: Some(instance.into()),
            client_id: "cli".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"sub"))],
            require_known_member_id: true,
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
                commit_now(&c, "solo", -1, "", None, vec![commit("t", 0, 1)], now),
                vec![ResponseError::NotCoordinator.code()]
            );
            assert_eq!(lead_all(&c, &log, now), 0);
            // A standalone consumer commits, then overwrites one offset.
            let codes = commit_now(
                &c,
                "solo",
                -1,
                "",
                None,
                vec![commit("t", 0, 10), commit("t", 1, 20)],
                now,
            );
            assert_eq!(codes, vec![0, 0]);
            assert_eq!(
                commit_now(&c, "solo", -1, "", None, vec![commit("t", 0, 11)], now),
                vec![0]
            );
            // A group member joins, syncs, commits.
            let join = c.join(static_join("inst-1"), now);
            let Answer::Later(rx) = join else {
                panic!("join should wait")
            };
            let j = rx.await.unwrap();
            assert_eq!(j.error, 0);
            let Answer::Now(s) = c.sync(
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
            let codes = commit_now(
                &c,
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
                commit_now(&c, "gone", -1, "", None, vec![commit("t", 0, 1)], now),
                vec![0]
            );
            c.delete_group("gone").unwrap();
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
        let again = c.join(static_join("inst-1"), now + 10);
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
        assert!(load(&c, &log, pg, now + 20) > 0);
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
        let fence = Arc::new(crate::fence::Fence::new(rx));
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
            commit_now(&c, "g", -1, "", None, vec![commit("t", 0, 1)], 1_001),
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
            commit_now(&c, "g", -1, "", None, vec![commit("t", 0, 2)], 1_002),
            vec![ResponseError::NotCoordinator.code()]
        );
        // Unfenced again: the groups loaded before are served again.
        tx.send_replace(runnel_controller::BrokerLifecycle {
            registered: true,
            fenced: false,
        });
        assert!(c.fetch("g", None).unwrap().contains_key("t"));
    }

    /// The offset of `topic`-`partition` the coordinator serves for `group`, if any.
    fn committed(c: &GroupCoordinator, group: &str, topic: &str, partition: i32) -> Option<i64> {
        let f = c
            .fetch(group, Some(&[(topic.to_string(), vec![partition])]))
            .unwrap();
        f[topic][0].1.as_ref().map(|v| v.offset)
    }

    /// A transactional offset commit on partitions led alone.
    fn commit_txn_now(
        c: &GroupCoordinator,
        group: &str,
        pid: i64,
        commits: Vec<OffsetCommit>,
        now: i64,
    ) -> Vec<i16> {
        match c.commit_txn(group, pid, 0, -1, "", None, commits, now) {
            CommitAnswer::Now(codes) => codes,
            CommitAnswer::Replicating(_) => panic!("an ISR of one waits for nothing"),
        }
    }

    /// Appends a transaction marker to the group's partition and tells the coordinator, as the
    /// marker writer does.
    fn end_txn(c: &GroupCoordinator, log: &DirLog, group: &str, pid: i64, commit: bool, now: i64) {
        let p = c.partition_of(group);
        let marker = runnel_protocol::batch::EndTxnMarker {
            producer_id: pid,
            producer_epoch: 0,
            commit,
            coordinator_epoch: 1,
        };
        let batch = runnel_protocol::batch::encode_end_txn_marker(&marker, now);
        log.part(p).append(&batch, now).unwrap();
        c.complete_txn(p, pid, commit, now);
    }

    #[tokio::test]
    async fn transactional_commits_apply_only_at_their_commit_marker_live_and_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let id = uuid::Uuid::new_v4();
        let now = 1_000_000;
        {
            let log = DirLog::open(dir.path(), id, 3);
            let c = GroupCoordinator::new(cfg(), 3);
            lead_all(&c, &log, now);
            commit_now(&c, "g", -1, "", None, vec![commit("t", 0, 5)], now);
            // Committed in transaction 7: invisible until the marker.
            assert_eq!(
                commit_txn_now(&c, "g", 7, vec![commit("t", 0, 10)], now),
                vec![0]
            );
            assert_eq!(committed(&c, "g", "t", 0), Some(5));
            assert!(c.has_pending_txn_offsets("g", "t", 0));
            end_txn(&c, &log, "g", 7, true, now);
            assert_eq!(committed(&c, "g", "t", 0), Some(10));
            assert!(!c.has_pending_txn_offsets("g", "t", 0));
            // Transaction 8 aborts: its offsets never show.
            commit_txn_now(&c, "g", 8, vec![commit("t", 0, 20)], now);
            end_txn(&c, &log, "g", 8, false, now);
            assert_eq!(committed(&c, "g", "t", 0), Some(10));
            // Transaction 9 (a second batch of the same producer continues its sequence) is
            // still open when the coordinator goes away.
            commit_txn_now(&c, "g", 9, vec![commit("t", 1, 30)], now);
            assert_eq!(
                commit_txn_now(&c, "g", 9, vec![commit("t", 1, 31)], now),
                vec![0]
            );
            assert_eq!(committed(&c, "g", "t", 1), None);
        }
        // A new coordinator replays: the committed transaction's offset, not the aborted one's,
        // and the open one waits for its marker.
        let log = DirLog::open(dir.path(), id, 3);
        let c = GroupCoordinator::new(cfg(), 3);
        lead_all(&c, &log, now);
        assert_eq!(committed(&c, "g", "t", 0), Some(10));
        assert_eq!(committed(&c, "g", "t", 1), None);
        assert!(c.has_pending_txn_offsets("g", "t", 1));
        end_txn(&c, &log, "g", 9, true, now);
        assert_eq!(committed(&c, "g", "t", 1), Some(31));
    }

    #[tokio::test]
    async fn commits_and_assignments_wait_for_the_isr_and_apply_in_log_order() {
        let dir = tempfile::tempdir().unwrap();
        let log = DirLog::open(dir.path(), uuid::Uuid::new_v4(), 1);
        let part = log.part(0);
        // This node (1) leads with follower 2 in the ISR: nothing is replicated until 2 has it.
        part.lead_with(1, &[1, 2]);
        let c = GroupCoordinator::new(cfg(), 1);
        load(&c, &log, 0, 1_000);
        let wait = |a: CommitAnswer| match a {
            CommitAnswer::Replicating(w) => w,
            CommitAnswer::Now(codes) => panic!("answered before replication: {codes:?}"),
        };
        let w1 = wait(c.commit("solo", -1, "", None, vec![commit("t", 0, 10)], 1_000));
        let w2 = wait(c.commit("solo", -1, "", None, vec![commit("t", 0, 20)], 1_001));
        // Not replicated: not visible.
        assert_eq!(committed(&c, "solo", "t", 0), None);
        part.follower_caught_up(2, 1_002);
        // The later commit's answer first: both are applied, in log order.
        assert_eq!(w2.finish(&c).await, vec![0]);
        assert_eq!(committed(&c, "solo", "t", 0), Some(20));
        assert_eq!(w1.finish(&c).await, vec![0]);
        assert_eq!(committed(&c, "solo", "t", 0), Some(20));

        // A commit whose follower never fetches times out as COORDINATOR_NOT_AVAILABLE (the
        // client looks up the coordinator again and retries), stays invisible, and is applied
        // by the timer once the follower has it after all.
        c.set_settings(CoordinatorSettings {
            commit_timeout_ms: 50,
            ..CoordinatorSettings::default()
        });
        let w3 = wait(c.commit("solo", -1, "", None, vec![commit("t", 0, 30)], 1_003));
        assert_eq!(
            w3.finish(&c).await,
            vec![ResponseError::CoordinatorNotAvailable.code()]
        );
        assert_eq!(committed(&c, "solo", "t", 0), Some(20));
        part.follower_caught_up(2, 1_004);
        c.tick(1_005);
        assert_eq!(committed(&c, "solo", "t", 0), Some(30));

        // The group leader's SyncGroup answer (its assignment, written to the log) waits too.
        c.set_settings(CoordinatorSettings::default());
        let join = c.join(static_join("i"), 1_010);
        let j = match join {
            Answer::Later(rx) => rx.await.unwrap(),
            Answer::Now(j) => j,
        };
        assert_eq!(j.error, 0);
        let Answer::Later(mut rx) = c.sync(
            "g",
            j.generation_id,
            &j.member_id,
            Some("i"),
            None,
            None,
            vec![(j.member_id.clone(), Bytes::from_static(b"asg"))],
            1_011,
        ) else {
            panic!("the sync answer left before its group record was replicated")
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(rx.try_recv().is_err(), "answered before replication");
        part.follower_caught_up(2, 1_012);
        let s = tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((s.error, s.assignment), (0, Bytes::from_static(b"asg")));

        // Leadership lost while waiting: NOT_COORDINATOR.
        let w4 = wait(c.commit(
            "g",
            j.generation_id,
            &j.member_id,
            Some("i"),
            vec![commit("t", 1, 5)],
            1_013,
        ));
        part.set_leadership(crate::replica::Leadership {
            leader: 2,
            leader_epoch: 1,
            partition_epoch: 1,
            is_leader: false,
        });
        assert_eq!(
            w4.finish(&c).await,
            vec![ResponseError::NotCoordinator.code()]
        );
    }

    /// An image with `topics` (name, id, partitions), each partition led by node 1.
    fn image_of(topics: &[(&str, u128, i32)]) -> Arc<AppliedImage> {
        use runnel_controller::records::{PartitionRecord, Record, TopicRecord};
        let mut image = MetadataImage::new();
        for (name, id, n) in topics {
            let topic_id = uuid::Uuid::from_u128(*id);
            image
                .apply(&Record::Topic(TopicRecord {
                    name: name.to_string(),
                    topic_id,
                }))
                .unwrap();
            for p in 0..*n {
                image
                    .apply(&Record::Partition(PartitionRecord {
                        topic_id,
                        partition: p,
                        replicas: vec![1],
                        isr: vec![1],
                        leader: 1,
                        leader_epoch: 0,
                        partition_epoch: 0,
                    }))
                    .unwrap();
            }
        }
        Arc::new(AppliedImage { index: 1, image })
    }

    /// A coordinator whose metadata image is whatever `image` holds.
    fn with_image(n: i32, image: &Arc<Mutex<Arc<AppliedImage>>>) -> GroupCoordinator {
        let c = GroupCoordinator::new(cfg(), n);
        let image = image.clone();
        c.set_metadata(Box::new(move || image.lock().clone()));
        c
    }

    #[tokio::test]
    async fn offsets_of_deleted_topics_are_removed_and_stay_removed() {
        let dir = tempfile::tempdir().unwrap();
        let id = uuid::Uuid::new_v4();
        let now = 1_000_000;
        let image = Arc::new(Mutex::new(image_of(&[("t", 1, 3), ("u", 2, 2)])));
        {
            let log = DirLog::open(dir.path(), id, 3);
            let c = with_image(3, &image);
            lead_all(&c, &log, now);
            let solo = |g: &str, cs: Vec<OffsetCommit>| {
                assert!(commit_now(&c, g, -1, "", None, cs, now)
                    .iter()
                    .all(|e| *e == 0));
            };
            solo(
                "g",
                vec![commit("t", 0, 1), commit("t", 2, 9), commit("u", 0, 4)],
            );
            solo("only-t", vec![commit("t", 1, 3)]);
            // t is deleted (and recreated under a new id): its offsets go, u's stay.
            *image.lock() = image_of(&[("t", 3, 3), ("u", 2, 2)]);
            assert_eq!(
                c.on_partitions_deleted(&[("t".to_string(), vec![0, 1, 2])]),
                3
            );
            assert_eq!(committed(&c, "g", "t", 0), None);
            assert_eq!(committed(&c, "g", "t", 2), None);
            assert_eq!(committed(&c, "g", "u", 0), Some(4));
            assert!(c.describe("only-t").unwrap().is_none());
            // A commit to the recreated topic is kept.
            solo("g", vec![commit("t", 1, 2)]);
            log.replicas.close_all();
        }
        // The tombstones were written: a restarted coordinator loads none of t's old offsets.
        {
            let log = DirLog::open(dir.path(), id, 3);
            let c = with_image(3, &image);
            lead_all(&c, &log, now);
            let g = c.fetch("g", None).unwrap();
            assert_eq!(g["t"].iter().map(|(p, _)| *p).collect::<Vec<_>>(), vec![1]);
            assert_eq!(committed(&c, "g", "u", 0), Some(4));
            assert!(c.fetch("only-t", None).unwrap().is_empty());
            solo_commit(&c, "only-u", vec![commit("u", 1, 5)], now);
            log.replicas.close_all();
        }
        // u is deleted while no coordinator has the partitions loaded: loading finds its
        // offsets, removes them and writes their tombstones, so that a u recreated later does
        // not get them back either.
        *image.lock() = image_of(&[("t", 3, 3)]);
        {
            let log = DirLog::open(dir.path(), id, 3);
            let c = with_image(3, &image);
            lead_all(&c, &log, now);
            assert_eq!(committed(&c, "g", "u", 0), None);
            assert_eq!(committed(&c, "g", "t", 1), Some(2));
            assert!(c.describe("only-u").unwrap().is_none());
            log.replicas.close_all();
        }
        *image.lock() = image_of(&[("t", 3, 3), ("u", 4, 2)]);
        {
            let log = DirLog::open(dir.path(), id, 3);
            let c = with_image(3, &image);
            lead_all(&c, &log, now);
            assert_eq!(committed(&c, "g", "u", 0), None);
            assert!(c.fetch("only-u", None).unwrap().is_empty());
            assert_eq!(committed(&c, "g", "t", 1), Some(2));

            // A commit that lands after its topic's deletion was seen goes at the next expiry
            // sweep, which compares with the current image.
            solo_commit(&c, "late", vec![commit("u", 0, 7)], now);
            *image.lock() = image_of(&[("t", 3, 3)]);
            c.set_settings(CoordinatorSettings {
                retention_check_interval_ms: 1,
                ..CoordinatorSettings::default()
            });
            c.tick(now + 10);
            assert!(c.describe("late").unwrap().is_none());
            assert_eq!(committed(&c, "g", "t", 1), Some(2));
        }
    }

    fn solo_commit(c: &GroupCoordinator, group: &str, commits: Vec<OffsetCommit>, now: i64) {
        let codes = commit_now(c, group, -1, "", None, commits, now);
        assert!(codes.iter().all(|e| *e == 0), "{codes:?}");
    }

    #[tokio::test]
    async fn a_commit_replicating_when_its_topic_is_deleted_is_not_applied() {
        let dir = tempfile::tempdir().unwrap();
        let id = uuid::Uuid::new_v4();
        let image = Arc::new(Mutex::new(image_of(&[("t", 1, 1)])));
        let log = DirLog::open(dir.path(), id, 1);
        let part = log.part(0);
        part.lead_with(1, &[1, 2]);
        let c = with_image(1, &image);
        load(&c, &log, 0, 1_000);
        let CommitAnswer::Replicating(w) =
            c.commit("g", -1, "", None, vec![commit("t", 0, 10)], 1_000)
        else {
            panic!("answered before replication")
        };
        *image.lock() = image_of(&[("t", 2, 1)]);
        // Nothing was applied yet, but the commit in flight gets its tombstone after it.
        assert_eq!(c.on_partitions_deleted(&[("t".to_string(), vec![0])]), 1);
        part.follower_caught_up(2, 1_001);
        assert_eq!(w.finish(&c).await, vec![0]);
        assert_eq!(committed(&c, "g", "t", 0), None);
        // Reloaded from the log: the tombstone came last.
        part.follower_caught_up(2, 1_002);
        c.unload_partition(0);
        load(&c, &log, 0, 1_003);
        assert_eq!(committed(&c, "g", "t", 0), None);
    }
}
