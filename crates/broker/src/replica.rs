//! Partitions hosted by this node and their logs.
//!
//! A [`Partition`] wraps a storage [`PartitionLog`] behind a mutex (appends are serialised per
//! partition; reads take the lock briefly) and publishes its high watermark on a watch channel,
//! which wakes fetch requests that are long-polling for data. On a single node the high
//! watermark equals the log end offset; replication (a later issue) will separate the two.
//!
//! Which partitions are hosted, and whether this node leads them, follows the metadata image
//! (see [`crate::reconcile`]); handlers only serve a partition's data while it is led here.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use runnel_storage::{AppendOutcome, LogConfig, PartitionLog, StorageError};
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

pub struct Partition {
    pub tp: TopicPartition,
    pub topic_id: Uuid,
    log: Mutex<PartitionLog>,
    high_watermark: watch::Sender<i64>,
    leadership: RwLock<Leadership>,
    /// The topic config overrides the log's config was built from.
    overrides: Mutex<BTreeMap<String, String>>,
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

    /// Appends one batch as the leader (the batch's partition leader epoch is set to the
    /// current leader epoch); on success wakes fetchers waiting for data.
    pub fn append(&self, batch: &[u8], now_ms: i64) -> Result<AppendOutcome, StorageError> {
        let epoch = self.leadership.read().leader_epoch.max(0);
        let mut log = self.log.lock();
        let out = log.append_with_leader_epoch(batch, now_ms, epoch)?;
        if !out.duplicate {
            let leo = log.log_end_offset();
            drop(log);
            self.high_watermark.send_replace(leo);
        }
        Ok(out)
    }

    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<Bytes, StorageError> {
        let log = self.log.lock();
        let hw = log.log_end_offset();
        log.read(offset, max_bytes, hw, min_one)
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

    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.high_watermark.subscribe()
    }

    pub fn with_log<R>(&self, f: impl FnOnce(&mut PartitionLog) -> R) -> R {
        f(&mut self.log.lock())
    }

    pub fn size_bytes(&self) -> u64 {
        self.log.lock().size_bytes()
    }
}

/// All partitions on this node, keyed by topic and partition.
pub struct ReplicaManager {
    data_dir: PathBuf,
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
}

const PARTITION_METADATA: &str = "partition.metadata";

fn read_topic_id(dir: &Path) -> Option<Uuid> {
    let text = std::fs::read_to_string(dir.join(PARTITION_METADATA)).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("topic_id:"))
        .and_then(|v| Uuid::parse_str(v.trim()).ok())
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
        ReplicaManager {
            data_dir: data_dir.to_path_buf(),
            partitions: RwLock::new(HashMap::new()),
        }
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
        let dir = self.data_dir.join(tp.dir_name());
        if dir.exists() && read_topic_id(&dir) != Some(topic_id) {
            tracing::warn!(dir = %dir.display(), "partition directory belongs to another topic id; deleting it");
            self.delete_dir(&dir);
        }
        write_topic_id(&dir, topic_id)?;
        let log = PartitionLog::open(&dir, config, now_ms)?;
        let hw = log.log_end_offset();
        let (tx, _) = watch::channel(hw);
        let p = Arc::new(Partition {
            tp: tp.clone(),
            topic_id,
            log: Mutex::new(log),
            high_watermark: tx,
            leadership: RwLock::new(Leadership::NONE),
            overrides: Mutex::new(overrides),
        });
        self.partitions.write().insert(tp, p.clone());
        Ok(p)
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
        p.high_watermark.send_replace(-1);
        self.delete_dir(&dir);
    }

    fn delete_dir(&self, dir: &Path) {
        let doomed = dir.with_file_name(format!(
            "{}.{}-delete",
            dir.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("partition"),
            Uuid::new_v4().simple()
        ));
        match std::fs::rename(dir, &doomed) {
            Ok(()) => {
                if let Err(e) = std::fs::remove_dir_all(&doomed) {
                    tracing::warn!(dir = %doomed.display(), error = %e, "could not remove deleted partition directory");
                }
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "could not move partition directory aside")
            }
        }
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
            if name.ends_with("-delete") {
                let _ = std::fs::remove_dir_all(&path);
            } else if path.join(PARTITION_METADATA).exists() && !known(&name) {
                tracing::warn!(dir = %path.display(), "removing partition directory not assigned to this node");
                self.delete_dir(&path);
                removed.push(name);
            }
        }
        removed
    }

    /// Closes every log cleanly (flush, producer snapshot, clean-shutdown marker).
    pub fn close_all(&self) {
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
