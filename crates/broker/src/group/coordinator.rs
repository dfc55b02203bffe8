//! The group coordinator service: the `__consumer_offsets` shards ([`GroupShard`], one per
//! partition led here) on the coordinator runtime, and what the handlers and the reconciler
//! call: the group operations with their answers (now, or once what they wrote is replicated),
//! loading and unloading partitions, the timer, and the removal of deleted topics' offsets.
//!
//! Each partition's shard has its own lock. An operation runs the state machine under it and
//! the runtime appends its records (one batch per operation). Writes are acks=all, as Kafka's
//! coordinator makes them: an answer that depends on a record (a SyncGroup assignment, an
//! OffsetCommit) leaves only once the partition's high watermark has passed it, i.e. every
//! in-sync replica has it and a new coordinator elected from the ISR will load it. Offset
//! commits are validated first, appended, and applied in memory (visible to OffsetFetch) only
//! once replicated, in log order, so the memory never shows an offset a failover could lose.

use std::collections::HashSet;
use std::sync::atomic::{AtomicI32, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use indexmap::IndexMap;
use kafka_protocol::error::ResponseError;
use parking_lot::Mutex;
use runnel_controller::{AppliedImage, MetadataImage};
use runnel_coordinator::group::shard::{
    CommitCodes, GroupEnv, GroupReply, GroupShard, PartitionExists, PartitionsSource,
};
use runnel_coordinator::group::write_error_code;
use runnel_coordinator::log::ShardLog;
use runnel_coordinator::runtime::{CoordinatorRuntime, NotServing, ReplicationWait, Written};
use tokio::sync::{oneshot, watch};

use super::records;
use super::state::{
    GroupConfig, GroupDescription, JoinRequest, JoinResult, OffsetCommit, Outcome, SyncResult,
};
use super::{partition_for, OFFSETS_TOPIC};
use crate::clock::now_ms;
use crate::controller_channel::ControllerChannel;
use crate::metadata::MetadataView;

pub use crate::config::CoordinatorSettings;

/// An OffsetCommit's answer: now, or once its records are replicated
/// ([`CommitWait::finish`]).
pub enum CommitAnswer {
    Now(Vec<i16>),
    Replicating(CommitWait),
}

/// A commit waiting for the ISR.
pub struct CommitWait {
    wait: ReplicationWait,
    codes: Vec<i16>,
    accepted: Vec<usize>,
}

impl CommitWait {
    /// Waits (up to `offsets.commit.timeout.ms`) until the commit is replicated, which applies
    /// the replicated commits of its partition, and returns the per-partition codes.
    pub async fn finish(mut self) -> Vec<i16> {
        if let Err(e) = self.wait.wait().await {
            // The records stay in the log; if the high watermark passes them later they are
            // applied then, else a new coordinator decides from its own log.
            let code = write_error_code(&e).code();
            for i in &self.accepted {
                self.codes[*i] = code;
            }
        }
        self.codes
    }
}

/// Committed offsets by topic: (partition, offset if any), in request order.
pub type CommittedOffsets = IndexMap<String, Vec<(i32, Option<records::OffsetValue>)>>;

/// A JoinGroup / SyncGroup answer: now, or once the rebalance gets there.
pub enum Answer<T> {
    Now(T),
    Later(oneshot::Receiver<T>),
}

pub struct GroupCoordinator {
    runtime: CoordinatorRuntime<GroupShard>,
    /// Partitions of `__consumer_offsets`: the topic's count once it exists (set by the
    /// reconciler), `offsets.topic.num.partitions` before.
    num_partitions: AtomicI32,
    settings: Mutex<CoordinatorSettings>,
    /// When offsets were last checked for expiry (ms), over every partition.
    last_expiry_check: AtomicI64,
}

/// Reads the latest applied metadata image.
pub type ImageSource = Box<dyn Fn() -> Arc<AppliedImage> + Send + Sync>;

/// Whether `topic`-`partition` exists in `image`.
fn partition_exists(image: &MetadataImage, topic: &str, partition: i32) -> bool {
    image
        .topic_by_name(topic)
        .is_some_and(|t| t.partitions.contains_key(&partition))
}

fn not_serving(e: NotServing) -> ResponseError {
    match e {
        NotServing::NotCoordinator => ResponseError::NotCoordinator,
        NotServing::LoadInProgress => ResponseError::CoordinatorLoadInProgress,
    }
}

/// Forwards the parked answer of one kind to a receiver of its own.
fn forward<T: Send + 'static>(
    rx: oneshot::Receiver<GroupReply>,
    pick: fn(GroupReply) -> Option<T>,
) -> oneshot::Receiver<T> {
    let (tx, out) = oneshot::channel();
    tokio::spawn(async move {
        if let Some(r) = rx.await.ok().and_then(pick) {
            let _ = tx.send(r);
        }
    });
    out
}

/// The answer of a JoinGroup/SyncGroup: parked, or now once what it wrote is replicated (else
/// `fail(error)`).
fn answer<T: Send + 'static>(
    written: Written<(Outcome<T>, oneshot::Receiver<GroupReply>)>,
    pick: fn(GroupReply) -> Option<T>,
    fail: impl FnOnce(ResponseError) -> T + Send + 'static,
) -> Answer<T> {
    match written {
        Written::Now((Outcome::Pending, rx))
        | Written::Failed((Outcome::Pending, rx), _)
        | Written::Later((Outcome::Pending, rx), _) => Answer::Later(forward(rx, pick)),
        Written::Now((Outcome::Now(r), _)) => Answer::Now(r),
        Written::Failed((Outcome::Now(_), _), e) => Answer::Now(fail(write_error_code(&e))),
        Written::Later((Outcome::Now(r), _), wait) => {
            let (tx, rx) = oneshot::channel();
            tokio::spawn(async move {
                let r = match wait.wait().await {
                    Ok(()) => r,
                    Err(e) => fail(write_error_code(&e)),
                };
                let _ = tx.send(r);
            });
            Answer::Later(rx)
        }
    }
}

fn join_reply(r: GroupReply) -> Option<JoinResult> {
    match r {
        GroupReply::Join(r) => Some(r),
        GroupReply::Sync(_) => {
            tracing::error!("group answer of the wrong kind for its waiter");
            None
        }
    }
}

fn sync_reply(r: GroupReply) -> Option<SyncResult> {
    match r {
        GroupReply::Sync(r) => Some(r),
        GroupReply::Join(_) => {
            tracing::error!("group answer of the wrong kind for its waiter");
            None
        }
    }
}

/// The answer of an offset commit whose records the runtime took.
fn commit_answer(
    n: usize,
    written: Result<Written<Result<CommitCodes, ResponseError>>, NotServing>,
) -> CommitAnswer {
    let written = match written {
        Ok(w) => w,
        Err(e) => return CommitAnswer::Now(vec![not_serving(e).code(); n]),
    };
    match written {
        Written::Now(Err(e)) | Written::Failed(Err(e), _) | Written::Later(Err(e), _) => {
            CommitAnswer::Now(vec![e.code(); n])
        }
        Written::Now(Ok((codes, _))) => CommitAnswer::Now(codes),
        Written::Failed(Ok((mut codes, accepted)), e) => {
            let code = write_error_code(&e).code();
            for i in &accepted {
                codes[*i] = code;
            }
            CommitAnswer::Now(codes)
        }
        Written::Later(Ok((codes, accepted)), wait) => CommitAnswer::Replicating(CommitWait {
            wait,
            codes,
            accepted,
        }),
    }
}

impl GroupCoordinator {
    pub fn new(config: GroupConfig, num_partitions: i32) -> GroupCoordinator {
        let settings = CoordinatorSettings::default();
        let runtime = CoordinatorRuntime::new(
            OFFSETS_TOPIC,
            Arc::new(GroupEnv::new(config)),
            settings.commit_timeout_ms,
            Arc::new(|_, a| match a {}),
        );
        GroupCoordinator {
            runtime,
            num_partitions: AtomicI32::new(num_partitions.max(1)),
            settings: Mutex::new(settings),
            last_expiry_check: AtomicI64::new(0),
        }
    }

    /// Ties the coordinator to the broker's metadata image (set once, by the broker): which
    /// topic partitions exist, for the offsets of deleted topics that loading a partition or
    /// the expiry sweep finds.
    pub fn set_metadata(&self, image: ImageSource) {
        let source: PartitionsSource = Box::new(move || {
            let image = image();
            let exists: PartitionExists =
                Box::new(move |t: &str, p: i32| partition_exists(&image.image, t, p));
            exists
        });
        self.runtime.env().set_partitions(source);
    }

    pub fn set_settings(&self, settings: CoordinatorSettings) {
        *self.settings.lock() = settings;
        self.runtime
            .set_write_timeout_ms(settings.commit_timeout_ms);
    }

    /// Ties the coordinator to the broker's fencing (set once, by the broker): while the
    /// broker is fenced, no group is served (NOT_COORDINATOR).
    pub fn set_fence(&self, fence: Arc<crate::fence::Fence>) {
        self.runtime
            .set_serving(Arc::new(move || !fence.is_fenced()));
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
    pub fn check_group(&self, group_id: &str) -> Result<(), ResponseError> {
        self.runtime
            .status(self.partition_of(group_id))
            .map_err(not_serving)
    }

    /// This node became the leader of `__consumer_offsets` partition `p`, whose log is `log`:
    /// replays it from the start and then serves its groups (COORDINATOR_LOAD_IN_PROGRESS
    /// until then). Returns the number of records replayed.
    ///
    /// Offsets of topic partitions the current metadata image does not have (their topic was
    /// deleted while no coordinator had this partition loaded, or the tombstones written then
    /// were lost) are removed as the loading ends, with tombstones, so that a topic created
    /// later under the same name never sees them.
    pub fn load_partition(&self, p: i32, log: Arc<dyn ShardLog>, now: i64) -> usize {
        self.runtime.load(p, log, now)
    }

    /// This node no longer leads `__consumer_offsets` partition `partition`: its groups leave
    /// memory and their parked members are told NOT_COORDINATOR.
    pub fn unload_partition(&self, partition: i32) {
        self.runtime.unload(partition);
    }

    /// The partitions whose groups are loaded here.
    pub fn owned_partitions(&self) -> Vec<i32> {
        self.runtime.loaded_partitions()
    }

    pub fn join(&self, req: JoinRequest, now: i64) -> Answer<JoinResult> {
        let p = self.partition_of(&req.group_id);
        let member_id = req.member_id.clone();
        let written = self.runtime.write(p, now, |s, ctx| {
            let (waiter, rx) = ctx.park();
            let out = s.groups_mut().join(req, waiter, now);
            if let Outcome::Now(_) = out {
                ctx.unpark(waiter);
            }
            s.flush(ctx);
            (out, rx)
        });
        match written {
            Err(e) => Answer::Now(JoinResult::error(not_serving(e), &member_id)),
            Ok(w) => answer(w, join_reply, move |e| JoinResult::error(e, &member_id)),
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
        let p = self.partition_of(group_id);
        let written = self.runtime.write(p, now, |s, ctx| {
            let (waiter, rx) = ctx.park();
            let out = s.groups_mut().sync(
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
                ctx.unpark(waiter);
            }
            s.flush(ctx);
            (out, rx)
        });
        match written {
            Err(e) => Answer::Now(SyncResult::error(not_serving(e))),
            Ok(w) => answer(w, sync_reply, SyncResult::error),
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
        let p = self.partition_of(group_id);
        let written = self
            .runtime
            .write(p, now, |s, ctx| {
                let r = s
                    .groups_mut()
                    .heartbeat(group_id, generation, member_id, instance_id, now);
                s.flush(ctx);
                r
            })
            .map_err(not_serving)?;
        match written {
            Written::Now(r) | Written::Failed(r, _) | Written::Later(r, _) => r,
        }
    }

    /// Removes members; one result per (member id, instance id).
    pub fn leave(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
        now: i64,
    ) -> Vec<Option<ResponseError>> {
        let p = self.partition_of(group_id);
        let written = self.runtime.write(p, now, |s, ctx| {
            let out = members
                .iter()
                .map(|(m, i)| s.groups_mut().leave(group_id, m, i.as_deref(), now))
                .collect();
            s.flush(ctx);
            out
        });
        match written {
            Err(e) => vec![Some(not_serving(e)); members.len().max(1)],
            Ok(Written::Now(r) | Written::Failed(r, _) | Written::Later(r, _)) => r,
        }
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
        let p = self.partition_of(group_id);
        let written = self.runtime.write(p, now, |s, ctx| {
            s.commit(
                ctx,
                group_id,
                generation,
                member_id,
                instance_id,
                &commits,
                now,
            )
        });
        commit_answer(commits.len(), written)
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
        let p = self.partition_of(group_id);
        let written = self.runtime.write(p, now, |s, ctx| {
            s.commit_txn(
                ctx,
                group_id,
                producer_id,
                producer_epoch,
                generation,
                member_id,
                instance_id,
                &commits,
                now,
            )
        });
        commit_answer(commits.len(), written)
    }

    /// A transaction marker of `producer_id` is replicated in `__consumer_offsets` partition
    /// `partition`: its transactional offset commits there become committed offsets (COMMIT)
    /// or are dropped (ABORT). A partition not loaded here replays the marker when it loads.
    pub fn complete_txn(&self, partition: i32, producer_id: i64, commit: bool, now: i64) {
        let _ = self.runtime.write_after_replicated(partition, now, |s, _| {
            s.complete_txn(producer_id, commit, now)
        });
    }

    /// Whether `group_id` has transactional offset commits waiting for their transaction
    /// (OffsetFetch with `require_stable` answers UNSTABLE_OFFSET_COMMIT meanwhile).
    pub fn has_pending_txn_offsets(&self, group_id: &str, topic: &str, partition: i32) -> bool {
        self.runtime
            .read(self.partition_of(group_id), |s| {
                s.has_pending_offsets(group_id, topic, partition)
            })
            .unwrap_or(false)
    }

    /// Committed offsets: `None` topics means every partition the group has an offset for.
    pub fn fetch(
        &self,
        group_id: &str,
        topics: Option<&[(String, Vec<i32>)]>,
    ) -> Result<CommittedOffsets, ResponseError> {
        let p = self.partition_of(group_id);
        self.runtime
            .read(p, |s| {
                let groups = s.groups();
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
                                e.push((*p, groups.committed(group_id, t, *p).map(to_value)));
                            }
                        }
                    }
                    None => {
                        for ((t, p), c) in groups.all_committed(group_id) {
                            out.entry(t).or_default().push((p, Some(to_value(&c))));
                        }
                    }
                }
                out
            })
            .map_err(not_serving)
    }

    /// (group id, protocol type, state name) of every group.
    pub fn list(&self) -> Vec<(String, String, &'static str)> {
        let mut v: Vec<_> = self
            .runtime
            .read_each(|_, s| {
                s.groups()
                    .iter()
                    .map(|g| {
                        (
                            g.id.clone(),
                            g.protocol_type.clone().unwrap_or_default(),
                            g.state.name(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .into_iter()
            .flatten()
            .collect();
        v.sort();
        v
    }

    pub fn describe(&self, group_id: &str) -> Result<Option<GroupDescription>, ResponseError> {
        self.runtime
            .read(self.partition_of(group_id), |s| {
                s.groups().describe(group_id)
            })
            .map_err(not_serving)
    }

    pub fn delete_group(&self, group_id: &str) -> Result<(), ResponseError> {
        let p = self.partition_of(group_id);
        match self
            .runtime
            .write(p, now_ms(), |s, ctx| s.delete_group(ctx, group_id))
            .map_err(not_serving)?
        {
            Written::Now(r) | Written::Failed(r, _) | Written::Later(r, _) => r,
        }
    }

    pub fn delete_offsets(
        &self,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<i16>, ResponseError> {
        let p = self.partition_of(group_id);
        match self
            .runtime
            .write(p, now_ms(), |s, ctx| {
                s.delete_offsets(ctx, group_id, partitions)
            })
            .map_err(not_serving)?
        {
            Written::Now(r) | Written::Failed(r, _) | Written::Later(r, _) => r,
        }
    }

    /// Timers: commits replicated after their request gave up waiting, session and rebalance
    /// deadlines, and offset expiry (and the offsets of deleted topics) every
    /// `offsets.retention.check.interval.ms`.
    pub fn tick(&self, now: i64) {
        self.runtime.tick(now);
        let settings = *self.settings.lock();
        let last = self.last_expiry_check.load(Ordering::Relaxed);
        if now.saturating_sub(last) < settings.retention_check_interval_ms {
            return;
        }
        self.last_expiry_check.store(now, Ordering::Relaxed);
        // Offsets of topic partitions the latest image does not have: a commit that raced
        // with its topic's deletion, or tombstones that could not be written when the deletion
        // was seen.
        let exists = self.runtime.env().partitions();
        let (mut removed, mut expired) = (0usize, 0usize);
        self.runtime.write_all(now, |_, s, ctx| {
            if let Some(exists) = &exists {
                removed += s.remove_offsets(&|t: &str, p: i32| !exists(t, p));
            }
            expired += s.expire_offsets(now, settings.offsets_retention_ms);
            s.flush(ctx);
        });
        if removed > 0 {
            tracing::info!(
                offsets = removed,
                "removed committed offsets of deleted topics"
            );
        }
        if expired > 0 {
            tracing::info!(
                offsets = expired,
                retention_ms = settings.offsets_retention_ms,
                "expired committed offsets"
            );
        }
    }

    /// The partitions of the deleted topics, (name, partitions), lost their committed offsets
    /// (Kafka's `onPartitionsDeleted`): every loaded group's offsets of them are removed and
    /// tombstones written (acks=all, as every coordinator write), commits of them still being
    /// replicated included. Groups of partitions not loaded here are left to the coordinator
    /// that loads them ([`Self::load_partition`]). No rebalance starts. Returns the number of
    /// offsets removed.
    pub fn on_partitions_deleted(&self, deleted: &[(String, Vec<i32>)]) -> usize {
        if deleted.is_empty() {
            return 0;
        }
        let gone: HashSet<(&str, i32)> = deleted
            .iter()
            .flat_map(|(t, ps)| ps.iter().map(move |p| (t.as_str(), *p)))
            .collect();
        let mut removed = 0usize;
        self.runtime.write_all(now_ms(), |_, s, ctx| {
            removed += s.remove_offsets(&|t: &str, p: i32| gone.contains(&(t, p)));
            s.flush(ctx);
        });
        if removed > 0 {
            let topics: Vec<&str> = deleted.iter().map(|(t, _)| t.as_str()).collect();
            tracing::info!(
                ?topics,
                offsets = removed,
                "removed committed offsets of deleted topics"
            );
        }
        removed
    }
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
        assert_eq!(w2.finish().await, vec![0]);
        assert_eq!(committed(&c, "solo", "t", 0), Some(20));
        assert_eq!(w1.finish().await, vec![0]);
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
            w3.finish().await,
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
            w4.finish().await,
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
        assert_eq!(w.finish().await, vec![0]);
        assert_eq!(committed(&c, "g", "t", 0), None);
        // Reloaded from the log: the tombstone came last.
        part.follower_caught_up(2, 1_002);
        c.unload_partition(0);
        load(&c, &log, 0, 1_003);
        assert_eq!(committed(&c, "g", "t", 0), None);
    }
}
