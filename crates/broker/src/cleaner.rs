//! The log cleaner: compacts the logs of every partition hosted here whose topic has
//! `cleanup.policy=compact` (leaders and followers alike, each its own copy, as in Kafka).
//!
//! `log.cleaner.threads` workers each pick, in turn, the dirtiest log that needs cleaning
//! (dirty ratio at least its `min.cleanable.dirty.ratio`, or oldest dirty record older than
//! `max.compaction.lag.ms`, or a kept tombstone past `delete.retention.ms`; logs forced by age
//! first), never one another worker is cleaning, and clean it up to the partition's high
//! watermark (a replica may still truncate above it). The file work runs on the blocking pool;
//! the partition's log lock is held only to look at the log, to take the segment handles and to
//! swap the cleaned segments in (see `runnel_storage::cleaner`), so appends and fetches go on
//! during the copy. A worker that found nothing to do, or failed, waits `log.cleaner.backoff.ms`.
//! Each worker's key map is bounded by `log.cleaner.dedupe.buffer.size / log.cleaner.threads`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::clock::now_ms;
use crate::config::CleanerConfig;
use crate::replica::{Partition, ReplicaManager, TopicPartition};

/// Partitions a worker is cleaning.
type InProgress = Arc<Mutex<HashSet<TopicPartition>>>;

/// Runs the cleaner workers until `stop` turns true.
pub async fn run(partitions: Arc<ReplicaManager>, cfg: CleanerConfig, stop: watch::Receiver<bool>) {
    if !cfg.enable {
        info!(
            "log cleaner disabled (log.cleaner.enable=false): compacted topics are not compacted"
        );
        return;
    }
    let threads = cfg.threads.max(1);
    let map_bytes = usize::try_from(cfg.dedupe_buffer_size / threads as u64).unwrap_or(usize::MAX);
    info!(
        threads,
        backoff_ms = cfg.backoff_ms,
        map_bytes_per_thread = map_bytes,
        "log cleaner started"
    );
    let in_progress = InProgress::default();
    let workers: Vec<_> = (0..threads)
        .map(|id| {
            tokio::spawn(worker(
                partitions.clone(),
                stop.clone(),
                in_progress.clone(),
                id,
                map_bytes,
                Duration::from_millis(cfg.backoff_ms),
            ))
        })
        .collect();
    for w in workers {
        let _ = w.await;
    }
}

async fn worker(
    partitions: Arc<ReplicaManager>,
    mut stop: watch::Receiver<bool>,
    in_progress: InProgress,
    id: usize,
    map_bytes: usize,
    backoff: Duration,
) {
    loop {
        if *stop.borrow() {
            return;
        }
        let b = partitions.clone();
        let ip = in_progress.clone();
        // Below the data path's CPU priority, as Kafka's cleaner threads are background work.
        let cleaned = crate::background::run("runnel-cleaner", move || {
            clean_dirtiest(&b, &ip, id, map_bytes)
        })
        .await
        .unwrap_or(false);
        if !cleaned {
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
        }
    }
}

/// Removes a partition from the in-progress set when dropped.
struct Claim<'a> {
    set: &'a Mutex<HashSet<TopicPartition>>,
    tp: TopicPartition,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.set.lock().remove(&self.tp);
    }
}

/// Cleans the dirtiest log that needs it. `true` when a clean ran (look again at once).
fn clean_dirtiest(
    partitions: &ReplicaManager,
    in_progress: &InProgress,
    id: usize,
    map_bytes: usize,
) -> bool {
    let now = now_ms();
    let mut max_ratio: f64 = 0.0;
    let mut best: Option<(Arc<Partition>, bool, f64)> = None;
    for p in partitions.all() {
        let hw = p.high_watermark();
        let Some(c) = p.with_log(|l| l.cleanable(hw, now)) else {
            continue;
        };
        max_ratio = max_ratio.max(c.dirty_ratio);
        if !c.needs_cleaning || in_progress.lock().contains(&p.tp) {
            continue;
        }
        let forced = c.max_lag_exceeded || c.tombstones_expired;
        let better = best
            .as_ref()
            .is_none_or(|(_, f, r)| (forced, c.dirty_ratio) > (*f, *r));
        if better {
            best = Some((p, forced, c.dirty_ratio));
        }
    }
    metrics::gauge!("runnel_log_cleaner_max_dirty_ratio").set(max_ratio);
    let Some((p, _, ratio)) = best else {
        return false;
    };
    {
        let mut set = in_progress.lock();
        if !set.insert(p.tp.clone()) {
            return false;
        }
    }
    let _claim = Claim {
        set: in_progress,
        tp: p.tp.clone(),
    };
    let topic: &str = &p.tp.topic;
    let partition = p.tp.partition;
    let hw = p.high_watermark();
    let task = match p.with_log(|l| l.prepare_clean(hw, now, map_bytes)) {
        Ok(Some(t)) => t,
        Ok(None) => return false,
        Err(error) => {
            metrics::counter!("runnel_log_cleaner_errors_total").increment(1);
            warn!(topic, partition, %error, "log cleaner could not start cleaning");
            offline_on_io(&p, "preparing to clean a log", &error);
            return false;
        }
    };
    debug!(
        topic,
        partition,
        worker = id,
        dirty_ratio = ratio,
        first_dirty = task.first_dirty_offset(),
        upper_bound = hw,
        "cleaning log"
    );
    // The copy: without the partition's lock.
    let done = match task.run() {
        Ok(d) => d,
        Err(error) => {
            metrics::counter!("runnel_log_cleaner_errors_total").increment(1);
            warn!(topic, partition, %error, "log cleaning failed");
            offline_on_io(&p, "cleaning a log", &error);
            return false;
        }
    };
    let stats = *done.stats();
    metrics::counter!("runnel_log_cleaner_bytes_read_total").increment(stats.bytes_read);
    match p.with_log(|l| l.finish_clean(done)) {
        Ok(Some(stats)) => {
            metrics::counter!("runnel_log_cleaner_runs_total").increment(1);
            metrics::counter!("runnel_log_cleaner_bytes_written_total")
                .increment(stats.bytes_written);
            info!(
                topic,
                partition,
                worker = id,
                dirty_ratio = ratio,
                first_dirty = stats.first_dirty_offset,
                end_offset = stats.end_offset,
                bytes_read = stats.bytes_read,
                bytes_written = stats.bytes_written,
                records_read = stats.records_read,
                records_kept = stats.records_kept,
                tombstones_removed = stats.tombstones_removed,
                segments_replaced = stats.segments_replaced,
                segments_written = stats.segments_written,
                "log cleaned"
            );
            true
        }
        Ok(None) => {
            debug!(
                topic,
                partition, "log changed while it was cleaned; will clean again"
            );
            true
        }
        Err(error) => {
            metrics::counter!("runnel_log_cleaner_errors_total").increment(1);
            warn!(topic, partition, %error, "swapping cleaned segments in failed");
            offline_on_io(&p, "swapping cleaned segments in", &error);
            false
        }
    }
}

/// An I/O error while cleaning takes the log directory offline, as any other write's would.
fn offline_on_io(p: &Partition, what: &str, error: &runnel_storage::StorageError) {
    if let runnel_storage::StorageError::Io(e) = error {
        p.health().failed(what, e);
    }
}
