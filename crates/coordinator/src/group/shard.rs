//! The group coordinator as a [`CoordinatorShard`]: the groups of one `__consumer_offsets`
//! partition ([`Groups`]), the offset commits appended there and waiting for the high
//! watermark, and the transactional offset commits waiting for their transaction's marker.
//!
//! An offset commit is validated and appended at once, but applied in memory (visible to
//! OffsetFetch) only once the runtime reports its write replicated, in write order. A
//! transactional one is held, once replicated, until its transaction's marker is: COMMIT applies
//! it ([`GroupShard::complete_txn`]), ABORT drops it. Replay does the same with the markers met in
//! the log.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::OnceLock;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

use super::records;
use super::state::{
    Completion, GroupConfig, Groups, JoinResult, OffsetCommit, SyncResult,
    MAX_OFFSET_METADATA_BYTES,
};
use super::write_error_code;
use crate::log::WriteError;
use crate::shard::{
    BatchKind, CoordinatorShard, KeyValue, LoadInfo, ReplayRecord, ShardCtx, WriteId,
};

/// Whether a topic partition exists (in one snapshot of the cluster's metadata).
pub type PartitionExists = Box<dyn Fn(&str, i32) -> bool>;

/// A source of [`PartitionExists`] snapshots.
pub type PartitionsSource = Box<dyn Fn() -> PartitionExists + Send + Sync>;

/// What every group shard reads.
pub struct GroupEnv {
    pub config: GroupConfig,
    partitions: OnceLock<PartitionsSource>,
}

impl GroupEnv {
    pub fn new(config: GroupConfig) -> GroupEnv {
        GroupEnv {
            config,
            partitions: OnceLock::new(),
        }
    }

    /// Ties the shards to the cluster's metadata (set once): which topic partitions exist,
    /// for the offsets of deleted topics that a load or an expiry sweep finds.
    pub fn set_partitions(&self, source: PartitionsSource) {
        let _ = self.partitions.set(source);
    }

    /// The topic partitions that exist now, if the metadata is known.
    pub fn partitions(&self) -> Option<PartitionExists> {
        self.partitions.get().map(|f| f())
    }
}

/// A parked JoinGroup or SyncGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupReply {
    Join(JoinResult),
    Sync(SyncResult),
}

/// An offset commit appended but not yet replicated to the whole ISR.
struct PendingCommit {
    group: String,
    commits: Vec<OffsetCommit>,
    now: i64,
    /// A transactional commit: the producer id and the records it wrote, which wait for the
    /// transaction's marker once replicated.
    txn: Option<(i64, Vec<KeyValue>)>,
}

/// What an accepted offset commit answers: the per-commit codes, and the indexes of the commits
/// that were written (their codes become the write's error if it fails).
pub type CommitCodes = (Vec<i16>, Vec<usize>);

/// The groups of one `__consumer_offsets` partition.
pub struct GroupShard {
    partition: i32,
    groups: Groups,
    /// Appended commits waiting for the high watermark, in write order.
    pending: VecDeque<(WriteId, PendingCommit)>,
    /// By producer id, the records of transactional offset commits that are replicated (or
    /// replayed) but whose transaction has not ended. OffsetFetch does not see them.
    pending_txn: HashMap<i64, Vec<KeyValue>>,
}

impl GroupShard {
    pub fn partition(&self) -> i32 {
        self.partition
    }

    pub fn groups(&self) -> &Groups {
        &self.groups
    }

    pub fn groups_mut(&mut self) -> &mut Groups {
        &mut self.groups
    }

    /// Hands the state machine's effects to the runtime: its records to append, its answers
    /// to deliver once they are replicated.
    pub fn flush(&mut self, ctx: &mut ShardCtx<Self>) {
        let effects = self.groups.take_effects();
        for p in effects.persist {
            ctx.record(p.key, p.value);
        }
        for c in effects.completions {
            match c {
                Completion::Join(w, r) => ctx.reply(w, GroupReply::Join(r)),
                Completion::Sync(w, r) => ctx.reply(w, GroupReply::Sync(r)),
            }
        }
    }

    /// OffsetCommit: the group-level check, then the accepted commits' records, applied once
    /// replicated.
    #[allow(clippy::too_many_arguments)]
    pub fn commit(
        &mut self,
        ctx: &mut ShardCtx<Self>,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        commits: &[OffsetCommit],
        now: i64,
    ) -> Result<CommitCodes, ResponseError> {
        self.groups
            .validate_commit(group_id, generation, member_id, instance_id, now)?;
        let (codes, accepted, records) = offset_records(group_id, commits, now);
        if !records.is_empty() {
            for (key, value) in records {
                ctx.record(key, value);
            }
            self.pending.push_back((
                ctx.write_id(),
                PendingCommit {
                    group: group_id.to_string(),
                    commits: accepted.iter().map(|i| commits[*i].clone()).collect(),
                    now,
                    txn: None,
                },
            ));
        }
        self.flush(ctx);
        Ok((codes, accepted))
    }

    /// TxnOffsetCommit: validated as an OffsetCommit and written as a transactional batch of
    /// producer `producer_id`/`producer_epoch`; once replicated it waits for the transaction's
    /// marker ([`Self::complete_txn`]).
    #[allow(clippy::too_many_arguments)]
    pub fn commit_txn(
        &mut self,
        ctx: &mut ShardCtx<Self>,
        group_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        commits: &[OffsetCommit],
        now: i64,
    ) -> Result<CommitCodes, ResponseError> {
        self.groups
            .validate_commit(group_id, generation, member_id, instance_id, now)?;
        let (codes, accepted, records) = offset_records(group_id, commits, now);
        if records.is_empty() {
            return Ok((codes, accepted));
        }
        ctx.batch_kind(BatchKind::Transactional {
            producer_id,
            producer_epoch,
        });
        for (key, value) in &records {
            ctx.record(key.clone(), value.clone());
        }
        self.pending.push_back((
            ctx.write_id(),
            PendingCommit {
                group: group_id.to_string(),
                commits: Vec::new(),
                now,
                txn: Some((producer_id, records)),
            },
        ));
        Ok((codes, accepted))
    }

    /// A marker of `producer_id` is replicated in this partition: its transactional offset
    /// commits here become committed offsets (COMMIT) or are dropped (ABORT). The runtime has
    /// applied every write the marker follows.
    pub fn complete_txn(&mut self, producer_id: i64, commit: bool, now: i64) {
        let records = self.pending_txn.remove(&producer_id).unwrap_or_default();
        if commit {
            for (key, value) in records {
                if let Err(e) = self.replay_record(&key, value.as_deref(), now) {
                    tracing::warn!(partition = self.partition, error = %e, "skipping a transactional offset commit");
                }
            }
        }
        // Applying records writes nothing and answers nobody.
        let _ = self.groups.take_effects();
    }

    /// Whether `group_id` has an offset commit of `topic`-`partition` not applied yet: waiting
    /// for the ISR, or for its transaction's marker.
    pub fn has_pending_offsets(&self, group_id: &str, topic: &str, partition: i32) -> bool {
        let key = records::offset_key(group_id, topic, partition);
        let in_txn = self
            .pending_txn
            .values()
            .any(|recs| recs.iter().any(|(k, _)| *k == key));
        in_txn
            || self.pending.iter().any(|(_, c)| {
                c.group == group_id
                    && (c
                        .commits
                        .iter()
                        .any(|o| o.topic == topic && o.partition == partition)
                        || c.txn
                            .as_ref()
                            .is_some_and(|(_, recs)| recs.iter().any(|(k, _)| *k == key)))
            })
    }

    /// DeleteGroups for one group; its tombstones supersede its pending commits.
    pub fn delete_group(
        &mut self,
        ctx: &mut ShardCtx<Self>,
        group_id: &str,
    ) -> Result<(), ResponseError> {
        let r = self.groups.delete_group(group_id);
        if r.is_ok() {
            self.drop_pending(group_id, None);
        }
        self.flush(ctx);
        r
    }

    /// OffsetDelete; the tombstones supersede the group's pending commits of `partitions`.
    pub fn delete_offsets(
        &mut self,
        ctx: &mut ShardCtx<Self>,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<i16>, ResponseError> {
        let r = self.groups.delete_offsets(group_id, partitions);
        if r.is_ok() {
            self.drop_pending(group_id, Some(partitions));
        }
        self.flush(ctx);
        r
    }

    /// Forgets pending commits of `group` (all of its partitions when `partitions` is `None`):
    /// a later tombstone in the log supersedes them.
    fn drop_pending(&mut self, group: &str, partitions: Option<&[(String, i32)]>) {
        for (_, c) in self.pending.iter_mut().filter(|(_, c)| c.group == group) {
            match partitions {
                None => c.commits.clear(),
                Some(ps) => c
                    .commits
                    .retain(|o| !ps.iter().any(|(t, n)| *t == o.topic && *n == o.partition)),
            }
        }
    }

    /// (group, topic, partition) of every commit still being replicated.
    fn pending_keys(&self) -> HashSet<(String, String, i32)> {
        self.pending
            .iter()
            .flat_map(|(_, c)| {
                c.commits
                    .iter()
                    .map(|o| (c.group.clone(), o.topic.clone(), o.partition))
            })
            .collect()
    }

    /// Removes the offsets of the topic partitions `gone` selects ([`Groups::remove_offsets`]);
    /// the pending commits of them are dropped (their tombstones come after them in the log).
    /// The tombstones go out with the next [`Self::flush`]. Returns how many were removed.
    pub fn remove_offsets(&mut self, gone: &dyn Fn(&str, i32) -> bool) -> usize {
        let pending = self.pending_keys();
        let removed = self.groups.remove_offsets(|_| true, gone, &pending);
        for (_, c) in self.pending.iter_mut() {
            c.commits.retain(|o| !gone(&o.topic, o.partition));
        }
        removed
    }

    /// Removes expired offsets ([`Groups::expire_offsets`]); their tombstones go out with the
    /// next [`Self::flush`]. Returns how many expired.
    pub fn expire_offsets(&mut self, now: i64, retention_ms: i64) -> usize {
        let pending = self.pending_keys();
        self.groups.expire_offsets(now, retention_ms, &pending)
    }

    fn replay_record(
        &mut self,
        key: &[u8],
        value: Option<&[u8]>,
        now: i64,
    ) -> Result<(), records::RecordError> {
        match records::decode_key(key)? {
            Some(k) => self.groups.replay(&k, value, now),
            None => Ok(()),
        }
    }
}

impl CoordinatorShard for GroupShard {
    type Env = GroupEnv;
    type Reply = GroupReply;
    type Action = std::convert::Infallible;

    fn new(info: &LoadInfo, env: &GroupEnv) -> Self {
        GroupShard {
            partition: info.partition,
            groups: Groups::new(env.config.clone()),
            pending: VecDeque::new(),
            pending_txn: HashMap::new(),
        }
    }

    /// Plain records apply where they are; a transaction's records wait for its marker and
    /// apply there if it commits.
    fn replay(&mut self, record: &ReplayRecord<'_>, now_ms: i64) -> Result<(), String> {
        match record {
            ReplayRecord::Data {
                producer_id,
                transactional: true,
                key,
                value,
                ..
            } => {
                self.pending_txn.entry(*producer_id).or_default().push((
                    Bytes::copy_from_slice(key),
                    value.map(Bytes::copy_from_slice),
                ));
                Ok(())
            }
            ReplayRecord::Data { key, value, .. } => self
                .replay_record(key, *value, now_ms)
                .map_err(|e| e.to_string()),
            ReplayRecord::Marker {
                producer_id,
                commit,
                ..
            } => {
                let records = self.pending_txn.remove(producer_id).unwrap_or_default();
                if *commit {
                    for (key, value) in records {
                        if let Err(e) = self.replay_record(&key, value.as_deref(), now_ms) {
                            tracing::warn!(partition = self.partition, error = %e, "skipping a transactional offset commit");
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// Offsets of topic partitions the metadata does not have (their topic was deleted while
    /// no coordinator had this partition loaded, or the tombstones written then were lost) are
    /// removed, with tombstones, so that a topic created later under the same name never sees
    /// them.
    fn on_loaded(&mut self, ctx: &mut ShardCtx<Self>, env: &GroupEnv) {
        // Replaying writes nothing and never answers.
        let _ = self.groups.take_effects();
        if let Some(exists) = env.partitions() {
            let removed = self.remove_offsets(&|t: &str, p: i32| !exists(t, p));
            if removed > 0 {
                tracing::info!(
                    partition = self.partition,
                    offsets = removed,
                    "removed committed offsets of deleted topics found while loading"
                );
                self.flush(ctx);
            }
        }
        tracing::info!(
            partition = self.partition,
            groups = self.groups.iter().count(),
            "coordinating the groups of __consumer_offsets partition"
        );
    }

    /// The groups leave memory; their parked members are told NOT_COORDINATOR.
    fn on_unloaded(&mut self, ctx: &mut ShardCtx<Self>) {
        let dropped = self.groups.unload(|_| true);
        let effects = self.groups.take_effects();
        for c in effects.completions {
            match c {
                Completion::Join(w, r) => ctx.reply(w, GroupReply::Join(r)),
                Completion::Sync(w, r) => ctx.reply(w, GroupReply::Sync(r)),
            }
        }
        tracing::info!(
            partition = self.partition,
            groups = dropped,
            "no longer coordinating the groups of __consumer_offsets partition"
        );
    }

    /// Applies, in write order, the commits the high watermark has passed.
    fn on_committed(&mut self, upto: WriteId) -> Vec<Self::Action> {
        while self.pending.front().is_some_and(|(id, _)| *id <= upto) {
            let (_, c) = self.pending.pop_front().expect("front exists");
            match c.txn {
                None => self.groups.apply_commit(&c.group, &c.commits, c.now),
                Some((pid, records)) => self.pending_txn.entry(pid).or_default().extend(records),
            }
        }
        Vec::new()
    }

    /// Nothing of the write was appended: its commits never apply. (The group state it
    /// carried stays in memory, ahead of the log, until the group's next write; the members
    /// waiting on it get the error and rejoin.)
    fn on_write_failed(&mut self, id: WriteId, error: &WriteError) {
        tracing::error!(partition = self.partition, error = %error, "writing to __consumer_offsets failed");
        self.pending.retain(|(w, _)| *w != id);
    }

    /// Session and rebalance deadlines.
    fn tick(&mut self, ctx: &mut ShardCtx<Self>, _env: &GroupEnv, now_ms: i64) {
        self.groups.tick(now_ms);
        self.flush(ctx);
    }

    fn fail_reply(reply: GroupReply, error: &WriteError) -> GroupReply {
        let e = write_error_code(error);
        match reply {
            GroupReply::Join(r) => GroupReply::Join(JoinResult::error(e, &r.member_id)),
            GroupReply::Sync(_) => GroupReply::Sync(SyncResult::error(e)),
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::BytesMut;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    use super::*;
    use crate::log::ShardLog;
    use crate::runtime::{CoordinatorRuntime, Written};
    use crate::testing::MemLog;

    fn runtime() -> CoordinatorRuntime<GroupShard> {
        CoordinatorRuntime::new(
            "__consumer_offsets",
            Arc::new(GroupEnv::new(GroupConfig {
                initial_rebalance_delay_ms: 0,
                ..Default::default()
            })),
            30_000,
            Arc::new(|_, a| match a {}),
        )
    }

    fn commit(topic: &str, partition: i32, offset: i64) -> OffsetCommit {
        OffsetCommit {
            topic: topic.into(),
            partition,
            offset,
            leader_epoch: 1,
            metadata: String::new(),
        }
    }

    fn committed(rt: &CoordinatorRuntime<GroupShard>, topic: &str, partition: i32) -> Option<i64> {
        rt.read(0, |s| {
            s.groups()
                .committed("g", topic, partition)
                .map(|c| c.offset)
        })
        .unwrap()
    }

    /// An end-transaction marker of `producer_id`, as a partition leader appends it.
    fn marker(producer_id: i64, commit: bool) -> Bytes {
        let r = Record {
            transactional: true,
            control: true,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: -1,
            timestamp: 1,
            key: Some(Bytes::from(vec![0, 0, 0, u8::from(commit)])),
            value: Some(Bytes::from(vec![0, 0, 0, 0, 0, 1])),
            headers: Default::default(),
        };
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            [r].iter(),
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .unwrap();
        buf.freeze()
    }

    #[tokio::test]
    async fn a_commit_applies_once_replicated_and_is_replayed() {
        let log = MemLog::new();
        let rt = runtime();
        rt.load(0, log.clone(), 1_000);
        let w = rt
            .write(0, 1_000, |s, ctx| {
                s.commit(ctx, "g", -1, "", None, &[commit("t", 0, 5)], 1_000)
            })
            .unwrap();
        let Written::Later(Ok((codes, accepted)), wait) = w else {
            panic!("a commit waits for the high watermark")
        };
        assert_eq!((codes, accepted), (vec![0], vec![0]));
        assert_eq!(committed(&rt, "t", 0), None);
        assert!(rt.read(0, |s| s.has_pending_offsets("g", "t", 0)).unwrap());
        log.replicate_all();
        wait.wait().await.unwrap();
        assert_eq!(committed(&rt, "t", 0), Some(5));
        rt.unload(0);
        rt.load(0, log, 1_001);
        assert_eq!(committed(&rt, "t", 0), Some(5));
    }

    #[tokio::test]
    async fn transactional_commits_apply_at_their_commit_marker_live_and_replayed() {
        let log = MemLog::new();
        let rt = runtime();
        rt.load(0, log.clone(), 1_000);
        for (pid, offset) in [(7, 10), (8, 20), (9, 30)] {
            let w = rt
                .write(0, 1_000, |s, ctx| {
                    s.commit_txn(
                        ctx,
                        "g",
                        pid,
                        0,
                        -1,
                        "",
                        None,
                        &[commit("t", 0, offset)],
                        1_000,
                    )
                })
                .unwrap();
            let Written::Later(Ok(_), wait) = w else {
                panic!("a transactional commit waits for the high watermark")
            };
            log.replicate_all();
            wait.wait().await.unwrap();
        }
        // Replicated, but invisible until the markers.
        assert_eq!(committed(&rt, "t", 0), None);
        assert!(rt.read(0, |s| s.has_pending_offsets("g", "t", 0)).unwrap());
        for (pid, commit) in [(7, true), (8, false)] {
            log.append(marker(pid, commit), 1_000).unwrap();
            log.replicate_all();
            rt.write_after_replicated(0, 1_000, |s, _| s.complete_txn(pid, commit, 1_000))
                .unwrap();
        }
        assert_eq!(committed(&rt, "t", 0), Some(10));
        // A new coordinator replays: the committed transaction's offset, not the aborted one's,
        // and the open one still waits.
        rt.unload(0);
        rt.load(0, log.clone(), 1_001);
        assert_eq!(committed(&rt, "t", 0), Some(10));
        assert!(rt.read(0, |s| s.has_pending_offsets("g", "t", 0)).unwrap());
        log.append(marker(9, true), 1_001).unwrap();
        log.replicate_all();
        rt.write_after_replicated(0, 1_001, |s, _| s.complete_txn(9, true, 1_001))
            .unwrap();
        assert_eq!(committed(&rt, "t", 0), Some(30));
        assert!(!rt.read(0, |s| s.has_pending_offsets("g", "t", 0)).unwrap());
    }
}
