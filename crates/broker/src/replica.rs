//! Partitions hosted by this node and their logs.
//!
//! A [`Partition`] wraps a storage [`PartitionLog`] behind a mutex (appends are serialised per
//! partition; reads take the lock briefly), its replication [`Role`], and two watch channels:
//! the high watermark (what consumers may read; wakes long-polling consumer fetches and
//! acks=all produces) and the log end offset (wakes followers long-polling the leader).
//!
//! Which partitions are hosted, and whether this node leads them, follows the metadata image
//! (see [`crate::reconcile`] and [`crate::replicate`]); handlers only serve a partition's data
//! while it is led here.
//!
//! Lock order: the role lock may be held while taking the log lock, never the reverse.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use parking_lot::{Mutex, RwLock};
use runnel_replication::leader::LeaderState;
use runnel_storage::{AppendOutcome, LogConfig, PartitionLog, StorageError, TxnVerification};
use tokio::sync::watch;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: Arc<str>,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: &str, partition: i32) -> TopicPartition {
        TopicPartition {
            topic: Arc::from(topic),
            partition,
        }
    }
    pub fn dir_name(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }
}

/// A partition's leadership as the metadata image last said (set by the reconciler).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leadership {
    /// The leader's node id, `-1` when the partition has none.
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// Whether this node is the leader.
    pub is_leader: bool,
}

impl Leadership {
    /// Not led by anyone (the state of a partition the reconciler has not updated yet).
    pub const NONE: Leadership = Leadership {
        leader: -1,
        leader_epoch: -1,
        partition_epoch: -1,
        is_leader: false,
    };
}

/// A request's `current_leader_epoch` against this node's view of a partition it hosts
/// (Kafka's order: the epoch first, then leadership). `-1` means the client skips the check.
pub fn check_leader(l: Leadership, current_leader_epoch: i32) -> Result<(), ResponseError> {
    if current_leader_epoch >= 0 {
        if current_leader_epoch < l.leader_epoch {
            return Err(ResponseError::FencedLeaderEpoch);
        }
        if current_leader_epoch > l.leader_epoch {
            return Err(ResponseError::UnknownLeaderEpoch);
        }
    }
    if !l.is_leader {
        return Err(ResponseError::NotLeaderOrFollower);
    }
    Ok(())
}

/// Why a leader append failed.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("this node does not lead the partition")]
    NotLeader,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// This node's part in replicating a partition.
#[derive(Debug)]
pub enum Role {
    /// Not led here and not following anyone (no leader, or not set up yet).
    None,
    /// Leading: the followers' progress, the ISR and the high watermark.
    Leader(Box<LeaderState>),
    /// Following `leader` in `leader_epoch`: a fetcher copies its log.
    Follower { leader: i32, leader_epoch: i32 },
}

pub struct Partition {
    pub tp: TopicPartition,
    pub topic_id: Uuid,
    log: Mutex<PartitionLog>,
    high_watermark: watch::Sender<i64>,
    log_end: watch::Sender<i64>,
    leadership: RwLock<Leadership>,
    role: Mutex<Role>,
    /// The topic config overrides the log's config was built from.
    overrides: Mutex<BTreeMap<String, String>>,
    health: Arc<LogDirHealth>,
}

impl Partition {
    pub fn leadership(&self) -> Leadership {
        *self.leadership.read()
    }

    /// Records a leadership change and wakes long-polling fetchers, so that a fetch parked on a
    /// partition this node no longer leads answers NOT_LEADER_OR_FOLLOWER at once.
    pub fn set_leadership(&self, l: Leadership) {
        let changed = {
            let mut cur = self.leadership.write();
            let changed = *cur != l;
            *cur = l;
            changed
        };
        if changed {
            self.high_watermark.send_modify(|_| {});
            self.log_end.send_modify(|_| {});
        }
    }

    pub fn overrides(&self) -> BTreeMap<String, String> {
        self.overrides.lock().clone()
    }

    /// Applies new topic config overrides to the open log.
    pub fn set_overrides(&self, overrides: BTreeMap<String, String>, config: LogConfig) {
        self.log.lock().set_config(config);
        *self.overrides.lock() = overrides;
    }

    /// Appends one batch as the leader, stamped with the leader epoch of this node's
    /// [`LeaderState`]; the check and the append happen under the role lock, so a batch is
    /// never written after this node stopped leading, nor stamped with another leader's epoch.
    /// On success wakes followers waiting for data and, when the high watermark moves (an ISR
    /// of one), consumers. Returns the outcome and the leader epoch of the append.
    pub fn append(&self, batch: &[u8], now_ms: i64) -> Result<(AppendOutcome, i32), AppendError> {
        self.append_verified(batch, now_ms, TxnVerification::Off)
    }

    /// [`append`](Self::append) of a client's batch under server-side transaction
    /// verification (see [`TxnVerification`]).
    pub fn append_verified(
        &self,
        batch: &[u8],
        now_ms: i64,
        verification: TxnVerification,
    ) -> Result<(AppendOutcome, i32), AppendError> {
        let mut role = self.role.lock();
        let Role::Leader(st) = &mut *role else {
            return Err(AppendError::NotLeader);
        };
        let epoch = st.leader_epoch();
        self.health.refuse()?;
        let out = self
            .health
            .check(
                "appending to a partition log",
                self.log
                    .lock()
                    .append_verified(batch, now_ms, epoch.max(0), verification),
            )
            .map_err(AppendError::Storage)?;
        if !out.duplicate {
            let leo = self.log_end_offset();
            self.log_end.send_replace(leo);
            if let Some(hw) = st.on_leader_append(leo) {
                self.publish_hw(hw);
            }
        }
        Ok((out, epoch))
    }

    /// The guard a verified append of `producer_id`'s transaction-opening batch needs (see
    /// [`PartitionLog::verification_guard`]).
    pub fn verification_guard(&self, producer_id: i64, now_ms: i64) -> u64 {
        self.log.lock().verification_guard(producer_id, now_ms)
    }

    /// Makes this node the only replica and leader of the partition (tests of code that
    /// appends without a metadata image).
    #[cfg(test)]
    pub(crate) fn lead_alone(&self, node_id: i32) {
        self.lead_with(node_id, &[node_id]);
    }

    /// Makes this node the leader with `replicas` (itself first) all in the ISR (tests).
    #[cfg(test)]
    pub(crate) fn lead_with(&self, node_id: i32, replicas: &[i32]) {
        use runnel_replication::leader::LeaderConfig;
        let leo = self.log_end_offset();
        let st = LeaderState::new(
            node_id,
            0,
            0,
            replicas.to_vec(),
            replicas.to_vec(),
            leo,
            self.high_watermark(),
            0,
            LeaderConfig {
                replica_lag_time_max_ms: 30_000,
                min_insync_replicas: 1,
            },
        );
        *self.role.lock() = Role::Leader(Box::new(st));
        self.set_leadership(Leadership {
            leader: node_id,
            leader_epoch: 0,
            partition_epoch: 0,
            is_leader: true,
        });
    }

    /// A follower of this leader fetched at the leader's log end (tests): the HW may move.
    #[cfg(test)]
    pub(crate) fn follower_caught_up(&self, follower: i32, now_ms: i64) {
        let leo = self.log_end_offset();
        let mut role = self.role.lock();
        if let Role::Leader(st) = &mut *role {
            if let Some(hw) = st.on_follower_fetch(follower, leo, leo, now_ms) {
                self.publish_hw(hw);
            }
        }
    }

    /// Appends batches fetched from the leader, as they are (a follower).
    pub fn append_replicated(
        &self,
        batches: &[u8],
        now_ms: i64,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        self.health.refuse()?;
        let out = self.health.check(
            "appending replicated records",
            self.log.lock().append_replicated(batches, now_ms),
        )?;
        if out.is_some() {
            let leo = self.log_end_offset();
            self.log_end.send_replace(leo);
        }
        Ok(out)
    }

    /// A follower learned the leader's high watermark: its own is that, capped at its log end.
    pub fn set_follower_hw(&self, leader_hw: i64) {
        let hw = leader_hw.min(self.log_end_offset()).max(0);
        if hw != self.high_watermark() {
            self.publish_hw(hw);
        }
    }

    /// Truncates the log to `offset` (a follower whose log diverged from the leader's).
    pub fn truncate_to(&self, offset: i64) -> Result<(), StorageError> {
        self.health.refuse()?;
        let leo = {
            let mut log = self.log.lock();
            self.health
                .check("truncating a partition log", log.truncate_to(offset))?;
            log.log_end_offset()
        };
        self.after_truncation(leo);
        Ok(())
    }

    /// Empties the log and restarts it at `offset` (a follower below the leader's log start).
    pub fn truncate_fully_and_start_at(&self, offset: i64) -> Result<(), StorageError> {
        self.health.refuse()?;
        let leo = {
            let mut log = self.log.lock();
            self.health.check(
                "emptying a partition log",
                log.truncate_fully_and_start_at(offset),
            )?;
            log.log_end_offset()
        };
        self.after_truncation(leo);
        Ok(())
    }

    fn after_truncation(&self, leo: i64) {
        self.log_end.send_replace(leo);
        if self.high_watermark() > leo {
            self.publish_hw(leo);
        }
    }

    pub(crate) fn publish_hw(&self, hw: i64) {
        // Transactions completed below the high watermark stop holding the last stable offset.
        self.log.lock().on_high_watermark(hw);
        self.high_watermark.send_replace(hw);
    }

    /// The last stable offset: the high watermark, or the first offset of the earliest
    /// transaction still open (or completed above the high watermark), if lower.
    pub fn last_stable_offset(&self) -> i64 {
        let hw = self.high_watermark();
        self.log.lock().last_stable_offset(hw)
    }

    /// The aborted transactions a read_committed consumer reading `[fetch_offset, upper)`
    /// must filter out: (producer id, first offset).
    pub fn aborted_transactions(&self, fetch_offset: i64, upper: i64) -> Vec<(i64, i64)> {
        self.log.lock().aborted_transactions(fetch_offset, upper)
    }

    /// The committed ISR while leading, else empty.
    pub fn role_isr(&self) -> Vec<i32> {
        match &*self.role.lock() {
            Role::Leader(st) => st.isr().to_vec(),
            _ => Vec::new(),
        }
    }

    /// The replication role, locked (see the module's lock order).
    pub fn role(&self) -> parking_lot::MutexGuard<'_, Role> {
        self.role.lock()
    }

    /// Raw batches for a consumer: from `offset`, below the high watermark.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<Bytes, StorageError> {
        let hw = self.high_watermark();
        self.read_upto(offset, max_bytes, min_one, hw)
    }

    /// Raw batches from `offset`, none starting at or above `bound`.
    pub fn read_upto(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        bound: i64,
    ) -> Result<Bytes, StorageError> {
        self.log.lock().read(offset, max_bytes, bound, min_one)
    }

    /// Raw batches for a follower or for this node's own use: up to the log end.
    pub fn read_local(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<Bytes, StorageError> {
        self.read_upto(offset, max_bytes, min_one, i64::MAX)
    }

    pub fn high_watermark(&self) -> i64 {
        *self.high_watermark.borrow()
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log.lock().log_start_offset()
    }

    pub fn log_end_offset(&self) -> i64 {
        self.log.lock().log_end_offset()
    }

    /// The high watermark's channel (also poked on leadership changes).
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.high_watermark.subscribe()
    }

    /// The log end offset's channel (also poked on leadership changes).
    pub fn subscribe_log_end(&self) -> watch::Receiver<i64> {
        self.log_end.subscribe()
    }

    /// `(latest epoch, log end offset)` of the local log, read together.
    pub fn last_epoch_and_end(&self) -> (i32, i64) {
        let log = self.log.lock();
        (log.latest_epoch(), log.log_end_offset())
    }

    /// Records `epoch` as starting at the log end (a new leader, before its first append).
    pub fn start_leader_epoch(&self, epoch: i32) -> Result<(), StorageError> {
        self.health.refuse()?;
        self.health.check(
            "recording a leader epoch",
            self.log.lock().start_leader_epoch(epoch),
        )
    }

    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.log.lock().end_offset_for_epoch(epoch)
    }

    pub fn with_log<R>(&self, f: impl FnOnce(&mut PartitionLog) -> R) -> R {
        f(&mut self.log.lock())
    }

    /// The log directory's health (background work reports its I/O errors there).
    pub fn health(&self) -> &Arc<LogDirHealth> {
        &self.health
    }

    pub fn size_bytes(&self) -> u64 {
        self.log.lock().size_bytes()
    }
}

/// Whether the log directory still works. The first I/O error on it (a full disk, a failing
/// device, a failed fsync) takes it offline for good, as Kafka's log-directory failure
/// handling does: nothing is written to it any more, so no write is acknowledged that is not
/// wholly in the log, and the broker stops (see `server`) so that the controller moves its
/// leaderships.
pub struct LogDirHealth {
    dir: PathBuf,
    offline: std::sync::atomic::AtomicBool,
    reason: watch::Sender<Option<String>>,
}

impl LogDirHealth {
    pub fn new(dir: &Path) -> LogDirHealth {
        LogDirHealth {
            dir: dir.to_path_buf(),
            offline: std::sync::atomic::AtomicBool::new(false),
            reason: watch::channel(None).0,
        }
    }

    pub fn is_offline(&self) -> bool {
        self.offline.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Takes the directory offline because `what` failed with `e`.
    pub fn failed(&self, what: &str, e: &std::io::Error) {
        let reason = format!(
            "log directory {} is offline: {what} failed: {e}",
            self.dir.display()
        );
        if !self.offline.swap(true, std::sync::atomic::Ordering::AcqRel) {
            metrics::counter!("runnel_log_dir_failures_total").increment(1);
            tracing::error!(dir = %self.dir.display(), what, error = %e, os_error = ?e.raw_os_error(), "log directory failed; no more writes go to it");
            self.reason.send_replace(Some(reason));
        }
    }

    /// Checks a storage result: an I/O error takes the directory offline.
    pub fn check<T>(&self, what: &str, r: Result<T, StorageError>) -> Result<T, StorageError> {
        if let Err(StorageError::Io(e)) = &r {
            self.failed(what, e);
        }
        r
    }

    /// The error every write gets once the directory is offline.
    fn refuse(&self) -> Result<(), StorageError> {
        if self.is_offline() {
            return Err(StorageError::Io(std::io::Error::other(format!(
                "log directory {} is offline",
                self.dir.display()
            ))));
        }
        Ok(())
    }

    /// Changes to `Some(reason)` when the directory goes offline.
    pub fn watch(&self) -> watch::Receiver<Option<String>> {
        self.reason.subscribe()
    }
}

/// All partitions on this node, keyed by topic and partition.
pub struct ReplicaManager {
    data_dir: PathBuf,
    health: Arc<LogDirHealth>,
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    /// High watermarks read from `replication-offset-checkpoint` at start-up.
    checkpointed_hw: Mutex<HashMap<TopicPartition, i64>>,
    /// Recovery points read from `recovery-point-offset-checkpoint` at start-up.
    recovery_points: Mutex<HashMap<TopicPartition, i64>>,
}

/// Kafka's per-data-directory file of partition high watermarks.
pub const HW_CHECKPOINT: &str = "replication-offset-checkpoint";

/// Kafka's per-data-directory file of partition recovery points (same format): below a
/// partition's point everything was synced, so after an unclean shutdown only the segments
/// from the one holding it are validated.
pub const RECOVERY_POINT_CHECKPOINT: &str = "recovery-point-offset-checkpoint";

/// Parses Kafka's checkpoint format: a version line (`0`), a count line, then
/// `topic partition offset` lines. Malformed files give `None` (a missing high watermark only
/// delays consumers until the leader learns it again; it never loses data).
pub fn parse_hw_checkpoint(text: &str) -> Option<HashMap<TopicPartition, i64>> {
    let mut lines = text.lines();
    if lines.next()?.trim() != "0" {
        return None;
    }
    let count: usize = lines.next()?.trim().parse().ok()?;
    let mut out = HashMap::with_capacity(count.min(1 << 16));
    for _ in 0..count {
        let mut parts = lines.next()?.split_whitespace();
        let topic = parts.next()?;
        let partition: i32 = parts.next()?.parse().ok()?;
        let offset: i64 = parts.next()?.parse().ok()?;
        if parts.next().is_some() || partition < 0 || offset < 0 {
            return None;
        }
        out.insert(TopicPartition::new(topic, partition), offset);
    }
    Some(out)
}

pub fn format_hw_checkpoint(entries: &[(TopicPartition, i64)]) -> String {
    let mut s = format!("0\n{}\n", entries.len());
    for (tp, hw) in entries {
        s.push_str(&format!("{} {} {}\n", tp.topic, tp.partition, hw));
    }
    s
}

const PARTITION_METADATA: &str = "partition.metadata";

/// The topic id in a partition directory's `partition.metadata`: `Ok(None)` when the file does
/// not exist, an error when it cannot be read or parsed (the caller must then leave the
/// directory alone: an unreadable file says nothing about whose data it holds).
fn read_topic_id(dir: &Path) -> std::io::Result<Option<Uuid>> {
    let text = match std::fs::read_to_string(dir.join(PARTITION_METADATA)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix("topic_id:"))
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{PARTITION_METADATA} has no topic_id line"),
            )
        })?;
    Uuid::parse_str(value.trim()).map(Some).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{PARTITION_METADATA} has an invalid topic_id {value:?}: {e}"),
        )
    })
}

/// Whether `dir` holds a non-empty `.log` segment file (data that must not be lost).
fn has_log_data(dir: &Path) -> std::io::Result<bool> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let path = e.path();
        if path.extension().is_some_and(|x| x == "log") && e.metadata()?.len() > 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether `name` is the name of a partition directory this module creates: `<topic>-<n>` with a
/// valid topic name that is not reserved (the metadata log's `__cluster_metadata-0` is not one).
pub fn is_partition_dir_name(name: &str) -> bool {
    if name == crate::config::METADATA_DIR {
        return false;
    }
    let Some((topic, partition)) = name.rsplit_once('-') else {
        return false;
    };
    !partition.is_empty()
        && partition.len() <= 10
        && partition.bytes().all(|b| b.is_ascii_digit())
        && partition.parse::<i32>().is_ok()
        && crate::topics::validate_topic_name(topic).is_ok()
}

/// Whether `name` is a partition directory moved aside for deletion by [`ReplicaManager`]
/// (`<topic>-<n>.<32 hex digits>-delete`).
fn is_deleted_dir_name(name: &str) -> bool {
    let Some(rest) = name.strip_suffix("-delete") else {
        return false;
    };
    let Some((dir, id)) = rest.rsplit_once('.') else {
        return false;
    };
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) && is_partition_dir_name(dir)
}

fn write_topic_id(dir: &Path, id: Uuid) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let body = format!("version: 0\ntopic_id: {id}\n");
    write_atomic(&dir.join(PARTITION_METADATA), body.as_bytes())
}

/// Writes `bytes` to `path` atomically and durably (temporary file, fsync, rename, fsync of
/// the directory).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

impl ReplicaManager {
    pub fn new(data_dir: &Path) -> ReplicaManager {
        let read = |name: &str, what: &str| {
            let path = data_dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(text) => parse_hw_checkpoint(&text).unwrap_or_else(|| {
                    tracing::warn!(file = %path.display(), "ignoring a malformed {what} checkpoint");
                    HashMap::new()
                }),
                Err(_) => HashMap::new(),
            }
        };
        ReplicaManager {
            data_dir: data_dir.to_path_buf(),
            health: Arc::new(LogDirHealth::new(data_dir)),
            partitions: RwLock::new(HashMap::new()),
            checkpointed_hw: Mutex::new(read(HW_CHECKPOINT, "high watermark")),
            recovery_points: Mutex::new(read(RECOVERY_POINT_CHECKPOINT, "recovery point")),
        }
    }

    /// The log directory's health, shared with every partition.
    pub fn health(&self) -> &Arc<LogDirHealth> {
        &self.health
    }

    /// Writes every hosted partition's high watermark to `replication-offset-checkpoint`
    /// (atomically: temporary file, fsync, rename). A failure takes the directory offline.
    pub fn checkpoint_high_watermarks(&self) -> std::io::Result<()> {
        if self.health.is_offline() {
            return Ok(());
        }
        let r = self.write_hw_checkpoint();
        if let Err(e) = &r {
            self.health
                .failed("writing the high watermark checkpoint", e);
        }
        r
    }

    fn write_hw_checkpoint(&self) -> std::io::Result<()> {
        let mut points: Vec<(TopicPartition, i64)> = self
            .all()
            .into_iter()
            .map(|p| (p.tp.clone(), p.with_log(|l| l.recovery_point())))
            .collect();
        points.sort();
        write_atomic(
            &self.data_dir.join(RECOVERY_POINT_CHECKPOINT),
            format_hw_checkpoint(&points).as_bytes(),
        )?;
        let mut entries: Vec<(TopicPartition, i64)> = self
            .all()
            .into_iter()
            .map(|p| (p.tp.clone(), p.high_watermark()))
            .filter(|(_, hw)| *hw >= 0)
            .collect();
        entries.sort();
        write_atomic(
            &self.data_dir.join(HW_CHECKPOINT),
            format_hw_checkpoint(&entries).as_bytes(),
        )
    }

    /// Opens (or creates) the log of a partition. A directory left by an older topic of the same
    /// name (a different topic id) is moved aside and deleted, never reused.
    pub fn open_partition(
        &self,
        tp: TopicPartition,
        topic_id: Uuid,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<Arc<Partition>, StorageError> {
        self.open_partition_with(tp, topic_id, BTreeMap::new(), config, now_ms)
    }

    /// [`Self::open_partition`], remembering the topic overrides `config` was built from.
    pub fn open_partition_with(
        &self,
        tp: TopicPartition,
        topic_id: Uuid,
        overrides: BTreeMap<String, String>,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<Arc<Partition>, StorageError> {
        if let Some(p) = self.partitions.read().get(&tp) {
            return Ok(p.clone());
        }
        let name = tp.dir_name();
        if !is_partition_dir_name(&name) || tp.partition < 0 {
            tracing::error!(topic = %tp.topic, partition = tp.partition, "refusing to host a partition with a reserved or invalid name");
            return Err(StorageError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{name} is not a valid partition directory name"),
            )));
        }
        self.health.refuse()?;
        let dir = self.data_dir.join(&name);
        self.prepare_dir(&tp, &dir, topic_id)?;
        let recovery_point = self.recovery_points.lock().remove(&tp);
        let log = self.health.check(
            "opening a partition log",
            PartitionLog::open_from_recovery_point(&dir, config, now_ms, recovery_point),
        )?;
        let leo = log.log_end_offset();
        // The checkpointed high watermark, never above the log end; without one, the log
        // start (a leader with an ISR of one moves it to the log end at once).
        let hw = self
            .checkpointed_hw
            .lock()
            .get(&tp)
            .copied()
            .unwrap_or(log.log_start_offset())
            .clamp(log.log_start_offset(), leo);
        let (tx, _) = watch::channel(hw);
        let (end_tx, _) = watch::channel(leo);
        let p = Arc::new(Partition {
            tp: tp.clone(),
            topic_id,
            log: Mutex::new(log),
            high_watermark: tx,
            log_end: end_tx,
            leadership: RwLock::new(Leadership::NONE),
            role: Mutex::new(Role::None),
            overrides: Mutex::new(overrides),
            health: self.health.clone(),
        });
        self.partitions.write().insert(tp, p.clone());
        Ok(p)
    }

    /// Makes `dir` ready to open for `topic_id`. Data is deleted only when `partition.metadata`
    /// was read and names a different topic id; a directory without it is reused only when it
    /// holds no log data (a creation interrupted by a crash). Anything else fails the open and
    /// leaves the directory as it is.
    fn prepare_dir(
        &self,
        tp: &TopicPartition,
        dir: &Path,
        topic_id: Uuid,
    ) -> Result<(), StorageError> {
        let fail = |what: &str, e: std::io::Error| {
            tracing::error!(topic = %tp.topic, partition = tp.partition, dir = %dir.display(), %topic_id, error = %e, "{what}; leaving the directory alone");
            StorageError::Io(e)
        };
        match std::fs::symlink_metadata(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return write_topic_id(dir, topic_id).map_err(Into::into)
            }
            Err(e) => return Err(fail("cannot inspect the partition directory", e)),
            Ok(m) if !m.is_dir() => {
                return Err(fail(
                    "the partition directory is not a directory",
                    std::io::Error::other(format!("{} is not a directory", dir.display())),
                ))
            }
            Ok(_) => {}
        }
        match read_topic_id(dir) {
            Ok(Some(id)) if id == topic_id => Ok(()),
            Ok(Some(other)) => {
                tracing::warn!(topic = %tp.topic, partition = tp.partition, dir = %dir.display(), old_topic_id = %other, %topic_id, "partition directory belongs to another topic id; deleting it");
                self.delete_dir(dir)
                    .map_err(|e| fail("cannot delete the directory of the old topic", e))?;
                write_topic_id(dir, topic_id).map_err(Into::into)
            }
            Ok(None) => match has_log_data(dir) {
                Ok(false) => {
                    tracing::info!(topic = %tp.topic, partition = tp.partition, dir = %dir.display(), %topic_id, "reusing a partition directory without partition.metadata and without data");
                    write_topic_id(dir, topic_id).map_err(Into::into)
                }
                Ok(true) => Err(fail(
                    "partition directory holds data but no partition.metadata",
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "{} holds log data but no {PARTITION_METADATA}",
                            dir.display()
                        ),
                    ),
                )),
                Err(e) => Err(fail("cannot list the partition directory", e)),
            },
            Err(e) => Err(fail("cannot read partition.metadata", e)),
        }
    }

    pub fn get(&self, tp: &TopicPartition) -> Option<Arc<Partition>> {
        self.partitions.read().get(tp).cloned()
    }

    pub fn get_by(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        self.get(&TopicPartition::new(topic, partition))
    }

    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.partitions.read().values().cloned().collect()
    }

    /// Stops hosting a partition: it leaves the map (requests no longer find it), long-polling
    /// fetchers are woken, and its directory is removed. A request still holding the partition
    /// finishes against the open file handles of the moved-aside directory.
    pub fn remove_partition(&self, tp: &TopicPartition) {
        let Some(p) = self.partitions.write().remove(tp) else {
            return;
        };
        let dir = self.data_dir.join(p.tp.dir_name());
        p.set_leadership(Leadership::NONE);
        *p.role.lock() = Role::None;
        p.high_watermark.send_replace(-1);
        p.log_end.send_replace(-1);
        if let Err(e) = self.delete_dir(&dir) {
            tracing::warn!(topic = %p.tp.topic, partition = p.tp.partition, dir = %dir.display(), error = %e, "could not delete the partition directory");
        }
    }

    /// Moves a partition directory aside and removes it. Refuses anything that is not a
    /// partition directory name (the metadata log above all).
    fn delete_dir(&self, dir: &Path) -> std::io::Result<()> {
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !is_partition_dir_name(name) {
            tracing::error!(dir = %dir.display(), "refusing to delete a directory that is not a partition directory");
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{} is not a partition directory", dir.display()),
            ));
        }
        let doomed = dir.with_file_name(format!(
            "{}.{}-delete",
            dir.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("partition"),
            Uuid::new_v4().simple()
        ));
        std::fs::rename(dir, &doomed)?;
        if let Err(e) = std::fs::remove_dir_all(&doomed) {
            tracing::warn!(dir = %doomed.display(), error = %e, "could not remove deleted partition directory");
        }
        Ok(())
    }

    /// Removes leftovers of deletions interrupted by a crash, and partition directories that
    /// are not `known` (not assigned to this node by the metadata image). Returns the names of
    /// the partition directories removed.
    pub fn clean_stray_dirs(&self, known: &dyn Fn(&str) -> bool) -> Vec<String> {
        let mut removed = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.data_dir) else {
            return removed;
        };
        for e in entries.flatten() {
            let path = e.path();
            if !path.is_dir() {
                continue;
            }
            let name = e.file_name().to_string_lossy().to_string();
            if is_deleted_dir_name(&name) {
                if let Err(e) = std::fs::remove_dir_all(&path) {
                    tracing::warn!(dir = %path.display(), error = %e, "could not remove a partition directory left by an interrupted deletion");
                }
            } else if is_partition_dir_name(&name)
                && path.join(PARTITION_METADATA).exists()
                && !known(&name)
            {
                tracing::warn!(dir = %path.display(), "removing partition directory not assigned to this node");
                match self.delete_dir(&path) {
                    Ok(()) => removed.push(name),
                    Err(e) => {
                        tracing::warn!(dir = %path.display(), error = %e, "could not remove a stray partition directory")
                    }
                }
            }
        }
        removed
    }

    /// Closes every log cleanly (flush, producer snapshot, clean-shutdown marker), after a last
    /// high watermark checkpoint.
    /// With the log directory offline nothing is written: no flush, no snapshot and above all no
    /// clean-shutdown marker, so the next start validates what the failed writes left.
    pub fn close_all(&self) {
        if self.health.is_offline() {
            let n = self.partitions.write().drain().count();
            tracing::warn!(
                partitions = n,
                "log directory offline: logs closed without flushing or marking a clean shutdown"
            );
            return;
        }
        if let Err(e) = self.checkpoint_high_watermarks() {
            tracing::warn!(error = %e, "could not write the high watermark checkpoint");
        }
        let all: Vec<Arc<Partition>> = self.partitions.write().drain().map(|(_, p)| p).collect();
        for p in all {
            match Arc::try_unwrap(p) {
                Ok(p) => {
                    let tp = p.tp.clone();
                    if let Err(e) = p.log.into_inner().close() {
                        tracing::error!(topic = %tp.topic, partition = tp.partition, error = %e, "closing log failed");
                    }
                }
                Err(p) => {
                    // A request still holds it; flush at least.
                    if let Err(e) = p.log.lock().flush() {
                        tracing::error!(topic = %p.tp.topic, partition = p.tp.partition, error = %e, "flushing log failed");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(rm: &ReplicaManager, topic: &str, id: Uuid) -> Result<Arc<Partition>, StorageError> {
        rm.open_partition(
            TopicPartition::new(topic, 0),
            id,
            LogConfig::default(),
            crate::clock::now_ms(),
        )
    }

    fn with_data(dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("00000000000000000000.log"), b"precious").unwrap();
    }

    #[test]
    fn an_unreadable_partition_metadata_never_deletes_data() {
        let data = tempfile::tempdir().unwrap();
        let rm = ReplicaManager::new(data.path());
        let dir = data.path().join("t-0");
        with_data(&dir);
        // Garbage where the topic id should be: the open fails and the data stays.
        std::fs::write(
            dir.join(PARTITION_METADATA),
            b"version: 0\ntopic_id: nonsense\n",
        )
        .unwrap();
        assert!(open(&rm, "t", Uuid::new_v4()).is_err());
        assert_eq!(
            std::fs::read(dir.join("00000000000000000000.log")).unwrap(),
            b"precious"
        );
        // Unreadable (a directory where the file should be): the same.
        std::fs::remove_file(dir.join(PARTITION_METADATA)).unwrap();
        std::fs::create_dir(dir.join(PARTITION_METADATA)).unwrap();
        assert!(open(&rm, "t", Uuid::new_v4()).is_err());
        assert!(dir.join("00000000000000000000.log").exists());
        // No partition.metadata but log data: refused too.
        std::fs::remove_dir(dir.join(PARTITION_METADATA)).unwrap();
        assert!(open(&rm, "t", Uuid::new_v4()).is_err());
        assert!(dir.join("00000000000000000000.log").exists());
        assert!(rm.get_by("t", 0).is_none());
    }

    #[test]
    fn only_another_topic_id_replaces_a_directory() {
        let data = tempfile::tempdir().unwrap();
        let rm = ReplicaManager::new(data.path());
        let dir = data.path().join("t-0");
        let old = Uuid::new_v4();
        with_data(&dir);
        write_topic_id(&dir, old).unwrap();
        assert_eq!(read_topic_id(&dir).unwrap(), Some(old));
        let new = Uuid::new_v4();
        let p = open(&rm, "t", new).unwrap();
        assert_eq!(p.topic_id, new);
        assert_eq!(read_topic_id(&dir).unwrap(), Some(new));
        assert!(!dir.join("00000000000000000000.log").exists() || p.log_end_offset() == 0);
        assert_eq!(p.log_end_offset(), 0);
    }

    #[test]
    fn a_directory_left_by_an_interrupted_creation_is_reused() {
        let data = tempfile::tempdir().unwrap();
        let rm = ReplicaManager::new(data.path());
        let dir = data.path().join("t-0");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("00000000000000000000.log"), b"").unwrap();
        let id = Uuid::new_v4();
        open(&rm, "t", id).unwrap();
        assert_eq!(read_topic_id(&dir).unwrap(), Some(id));
    }

    #[test]
    fn the_metadata_log_directory_is_never_a_partition() {
        let data = tempfile::tempdir().unwrap();
        let rm = ReplicaManager::new(data.path());
        let meta = data.path().join(crate::config::METADATA_DIR);
        with_data(&meta);
        // Even with a partition.metadata in it, it is neither opened nor cleaned away.
        write_topic_id(&meta, Uuid::new_v4()).unwrap();
        assert!(open(&rm, "__cluster_metadata", Uuid::new_v4()).is_err());
        // Other directories that are not partition directories are left alone too.
        for other in ["lost+found", "t-x", "-3", "snapshots"] {
            let d = data.path().join(other);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(PARTITION_METADATA), b"version: 0\n").unwrap();
        }
        std::fs::create_dir_all(data.path().join("junk-delete")).unwrap();
        let stray = data.path().join("gone-0");
        with_data(&stray);
        write_topic_id(&stray, Uuid::new_v4()).unwrap();
        let leftover = data
            .path()
            .join(format!("gone-1.{}-delete", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&leftover).unwrap();
        let removed = rm.clean_stray_dirs(&|_| false);
        assert_eq!(removed, vec!["gone-0".to_string()]);
        assert!(!stray.exists());
        assert!(!leftover.exists());
        assert!(meta.join("00000000000000000000.log").exists());
        for other in ["lost+found", "t-x", "-3", "snapshots", "junk-delete"] {
            assert!(data.path().join(other).exists(), "{other}");
        }
        assert!(rm.delete_dir(&meta).is_err());
        assert!(meta.exists());
    }

    #[test]
    fn high_watermark_checkpoint_round_trip_and_malformed_files() {
        let entries = vec![
            (TopicPartition::new("a", 0), 10),
            (TopicPartition::new("my-topic", 12), 0),
        ];
        let text = format_hw_checkpoint(&entries);
        assert_eq!(text, "0\n2\na 0 10\nmy-topic 12 0\n");
        let parsed = parse_hw_checkpoint(&text).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[&TopicPartition::new("my-topic", 12)], 0);
        for bad in [
            "",
            "1\n0\n",
            "0\n2\na 0 10\n",
            "0\n1\na x 10\n",
            "0\n1\na 0 -5\n",
            "0\n1\na 0 5 extra\n",
            "0\nmany\n",
        ] {
            assert!(parse_hw_checkpoint(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn the_checkpointed_high_watermark_is_used_and_capped_at_the_log_end() {
        let data = tempfile::tempdir().unwrap();
        std::fs::write(
            data.path().join(HW_CHECKPOINT),
            format_hw_checkpoint(&[(TopicPartition::new("t", 0), 1_000)]),
        )
        .unwrap();
        let rm = ReplicaManager::new(data.path());
        let p = open(&rm, "t", Uuid::new_v4()).unwrap();
        // An empty log: the checkpoint says 1000, the log end is 0.
        assert_eq!(p.high_watermark(), 0);
        rm.checkpoint_high_watermarks().unwrap();
        let text = std::fs::read_to_string(data.path().join(HW_CHECKPOINT)).unwrap();
        assert_eq!(text, "0\n1\nt 0 0\n");
    }

    #[test]
    fn partition_directory_names() {
        assert!(is_partition_dir_name("t-0"));
        assert!(is_partition_dir_name("my-topic-12"));
        assert!(is_partition_dir_name("__consumer_offsets-49"));
        assert!(!is_partition_dir_name("__cluster_metadata-0"));
        assert!(!is_partition_dir_name("__cluster_metadata-1"));
        assert!(!is_partition_dir_name("t-"));
        assert!(!is_partition_dir_name("t-99999999999"));
        assert!(!is_partition_dir_name("meta.properties"));
        assert!(is_deleted_dir_name(&format!(
            "t-0.{}-delete",
            Uuid::new_v4().simple()
        )));
        assert!(!is_deleted_dir_name(
            "__cluster_metadata-0.0123456789abcdef0123456789abcdef-delete"
        ));
    }
}
