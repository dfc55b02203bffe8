//! The group coordinator service: Kafka's classic consumer-group rebalance protocol and
//! committed offsets. The protocol is `runnel_coordinator`'s I/O-free state machine
//! (`group::state`), kept per `__consumer_offsets` partition by its [`GroupShard`] in Kafka's own
//! record formats (`group::records`). This service runs those shards on the coordinator
//! runtime, one per partition led here, and is what the handlers and the reconciler call: the
//! group operations with their answers (now, or once what they wrote is replicated), loading
//! and unloading partitions, the timer, and the removal of deleted topics' offsets.
//!
//! Which node coordinates a group follows Kafka: partition
//! `abs(javaHashCode(group)) % partitions(__consumer_offsets)` of `__consumer_offsets`, led by
//! that partition's leader. The coordinator serves only the groups of partitions this node
//! leads (NOT_COORDINATOR otherwise): when the reconciler sees this node become a partition's
//! leader it loads that partition (COORDINATOR_LOAD_IN_PROGRESS meanwhile), and when the
//! leadership moves away the partition's groups leave memory.
//!
//! A deleted topic takes its committed offsets with it, as in Kafka: when the reconciler sees
//! topics leave the image it hands their partitions to
//! [`GroupCoordinator::on_partitions_deleted`], which writes offset tombstones for the groups
//! loaded here; a partition loaded later, and every expiry sweep, drops the offsets of topic
//! partitions the current image does not have.
//!
//! Each partition's shard has its own lock. An operation runs the state machine under it and
//! the runtime appends its records (one batch per operation). Writes are acks=all, as Kafka's
//! coordinator makes them: an answer that depends on a record (a SyncGroup assignment, an
//! OffsetCommit) leaves only once the partition's high watermark has passed it, i.e. every
//! in-sync replica has it and a new coordinator elected from the ISR will load it. Offset
//! commits are validated first, appended, and applied in memory (visible to OffsetFetch) only
//! once replicated, in log order, so the memory never shows an offset a failover could lose.
//!
//! Architecture invariant: the coordinator never answers an OffsetCommit before its records are
//! replicated to the partition's ISR, and delivers JoinGroup/SyncGroup answers only after the
//! group metadata written with them is.

use std::collections::HashSet;
use std::sync::atomic::{AtomicI32, AtomicI64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use indexmap::IndexMap;
use kafka_protocol::error::ResponseError;
use parking_lot::Mutex;
use runnel_controller::{AppliedImage, MetadataImage};
use runnel_coordinator::group::records;
use runnel_coordinator::group::shard::{
    CommitCodes, GroupEnv, GroupReply, GroupShard, PartitionExists, PartitionsSource,
};
use runnel_coordinator::group::state::{
    GroupConfig, GroupDescription, JoinRequest, JoinResult, OffsetCommit, Outcome, SyncResult,
};
use runnel_coordinator::group::write_error_code;
use runnel_coordinator::group::OFFSETS_TOPIC;
use runnel_coordinator::log::ShardLog;
pub use runnel_coordinator::partitioning::partition_for;
use runnel_coordinator::runtime::{CoordinatorRuntime, NotServing, ReplicationWait, Written};
use tokio::sync::oneshot;

use super::shard_log::BrokerShardLog;
use super::topics::InternalTopicSpec;
use super::InternalCoordinator;
use crate::clock::now_ms;
use crate::replica::Partition;

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
        // Nothing of the commit itself was written (every offset's metadata too large): its
        // answer does not wait for the group records written with it.
        Written::Later(Ok((codes, accepted)), _) if accepted.is_empty() => CommitAnswer::Now(codes),
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

    /// How `__consumer_offsets` is created when it does not exist yet:
    /// `offsets.topic.num.partitions` partitions and a replication factor of
    /// `offsets.topic.replication.factor` (capped at the registered brokers).
    pub fn topic_spec(&self) -> InternalTopicSpec {
        InternalTopicSpec {
            name: OFFSETS_TOPIC,
            partitions: self.num_partitions(),
            replication_factor: self.settings.lock().offsets_topic_replication_factor,
            configs: offsets_topic_configs(),
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
                let to_value =
                    |c: &runnel_coordinator::group::state::CommittedOffset| records::OffsetValue {
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

impl InternalCoordinator for GroupCoordinator {
    fn topic(&self) -> &'static str {
        OFFSETS_TOPIC
    }

    fn topic_spec(&self) -> InternalTopicSpec {
        GroupCoordinator::topic_spec(self)
    }

    fn set_num_partitions(&self, n: i32) {
        GroupCoordinator::set_num_partitions(self, n);
    }

    fn partition_of(&self, key: &str) -> i32 {
        GroupCoordinator::partition_of(self, key)
    }

    fn load(&self, partition: &Arc<Partition>) {
        self.load_partition(
            partition.tp.partition,
            Arc::new(BrokerShardLog(partition.clone())),
            now_ms(),
        );
    }

    fn unload(&self, partition: i32) {
        self.unload_partition(partition);
    }

    /// Session expiry and rebalance deadlines, commits replicated late, offset expiry.
    fn tick(&self) {
        GroupCoordinator::tick(self, now_ms());
    }
}
