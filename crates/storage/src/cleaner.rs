//! Log compaction (Kafka's log cleaner) for one partition log.
//!
//! A clean runs in three steps so that appends and reads are never blocked by the copy:
//!
//! 1. [`PartitionLog::prepare_clean`](crate::PartitionLog::prepare_clean), under the caller's
//!    lock: picks the cleanable segments (never the active one, none ending above the upper
//!    bound or the last stable offset, none holding a record newer than
//!    `min.compaction.lag.ms`) and takes duplicate handles of their `.log` files, and the
//!    aborted transactions that began in them, into a [`CleanTask`].
//! 2. [`CleanTask::run`], without the lock: builds the key -> latest offset map over the dirty
//!    segments (bounded by the dedupe buffer size; when it fills, only a prefix of the dirty
//!    segments is cleaned, as Kafka does; the first dirty segment is always taken whole, so
//!    the map can exceed the buffer by that one segment's keys), then rewrites every cleanable segment, in groups of
//!    consecutive segments whose sizes add up to at most `segment.bytes`, into
//!    `<base>.log.cleaned` files (with rebuilt offset and time indexes), fsynced.
//! 3. [`PartitionLog::finish_clean`](crate::PartitionLog::finish_clean), under the lock: checks
//!    that the replaced segments are still exactly the ones read (retention, DeleteRecords or
//!    truncation may have run meanwhile; then the work is thrown away) and swaps each group in.
//!
//! # What a clean keeps
//!
//! A record is dropped when a later record with the same key exists in the dirty section, when
//! it has no key (Kafka's cleaner drops those too), or when it is a tombstone (null value) whose
//! batch timestamp (its max timestamp, or the file's modification time when the batch has none)
//! is more than `delete.retention.ms` old at the time of the clean. That is a simpler rule
//! than Kafka's (which counts from the first clean of the segment holding the tombstone): a
//! consumer that starts reading a compacted log within `delete.retention.ms` of a tombstone
//! being produced sees it. With `CreateTime` a producer's clock therefore matters.
//!
//! Offsets never move: a rewritten batch keeps its base offset, last offset delta, base
//! timestamp, producer id, epoch and base sequence, leader epoch, attributes and compression
//! codec; the kept records are copied byte for byte (headers included) and recompressed with
//! the batch's own codec. A batch all of whose records
//! go is dropped, except (a) the latest batch of every idempotent producer known to the log and
//! (b) the last batch of every cleaned group: these are kept as an empty batch (a header with
//! no records, uncompressed, the original last offset delta and sequence numbers, both
//! timestamps set to the original max timestamp), as Kafka does. (a) keeps the producer's
//! sequence check right when its state is rebuilt from the log after a restart; (b) makes a
//! cleaned segment end at exactly the offset the segments it replaced ended at, which recovery
//! relies on.
//!
//! # Transactions
//!
//! Nothing at or above the last stable offset is cleaned, so every transaction with data in
//! the cleaned section is decided. A clean walks the log in offset order with the aborted
//! transactions of the aborted-transaction indexes (whose marker is at or after the walk's
//! start):
//!
//! - Transactional data of an aborted transaction is removed whatever its keys (kept as an
//!   empty batch under (a) or (b) above), and never enters the key map, so it cannot shadow an
//!   older committed record with the same key.
//! - Committed transactional data is cleaned by key like any other.
//! - An end-transaction marker is kept when a batch of its transaction (even one whose records
//!   all went) was seen in this clean; a kept ABORT marker's index entry is written to the
//!   cleaned segment's `.txnindex`. A clean always starts at the log's first segment, so a
//!   marker with no batch of its transaction seen has no data left before it: it is removed
//!   once its batch timestamp (the leader's clock when it was written) is more than
//!   `delete.retention.ms` old, the same rule as for tombstones (Kafka instead stamps a delete
//!   horizon into the batch on the first clean that finds it removable). Markers are kept
//!   anyway when they are a group's last batch, or when their producer has no data batch
//!   remembered in its current epoch and the marker is of that epoch (it may be the only
//!   record of that epoch, which fences older producers when state is rebuilt from the log).
//!   Control batches that are not readable markers are kept as they are.
//!
//! # Swap protocol and crash recovery
//!
//! For each group, with `B` the base offset of its first segment: `B.txnindex.cleaned` (always
//! written, possibly empty), `B.index.cleaned` and `B.timeindex.cleaned` are renamed to
//! `.swap`, then `B.log.cleaned` to `B.log.swap` and the directory is fsynced: that rename is
//! the commit point. Then the files of the group's other segments are deleted, and the `.swap`
//! files are renamed over `B.txnindex`, `B.index`, `B.timeindex` and (last) `B.log`. On open,
//! before any segment is read: every `*.cleaned` file is deleted (an unfinished clean); for
//! every `B.log.swap`, the segments with base offsets strictly between `B` and the swap file's
//! end offset are deleted, `B`'s offset and time index files are deleted (they are rebuilt
//! from the log), `B.txnindex.swap` is renamed to `B.txnindex` if it is still there (if not,
//! the `B.txnindex` in place is already the cleaned one) and the swap file is renamed to
//! `B.log`; other `.swap` files are deleted. A crash at any step therefore leaves either the
//! old segments or the cleaned one.
//!
//! The first dirty offset is kept in `cleaner-offset-checkpoint` (this partition's own file,
//! tmp + rename); it is written after the swap, so a crash in between only means cleaning the
//! same data again.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use runnel_protocol::batch::{
    self, BatchHeader, ATTRIBUTES_OFFSET, BASE_TIMESTAMP_OFFSET, BATCH_HEADER_LEN,
    BATCH_LENGTH_OFFSET, COMPRESSION_CODEC_MASK, CRC_OFFSET, LOG_OVERHEAD, MAX_TIMESTAMP_OFFSET,
    RECORDS_COUNT_OFFSET,
};
use runnel_protocol::kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};
use runnel_protocol::record_stream;

use crate::segment::{remove_if_exists, suffixed_path, Segment, SEGMENT_FILES};
use crate::txn_index::{self, AbortedTxn};
use crate::{file_path, parse_file_name, LogConfig, StorageError};

/// Suffix of a cleaned segment's files while they are written.
pub(crate) const CLEANED: &str = ".cleaned";
/// Suffix of a cleaned segment's files once the swap is committed.
pub(crate) const SWAP: &str = ".swap";
/// The first dirty offset of this partition (one decimal number).
pub(crate) const CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";
/// Memory charged per offset-map entry on top of the key bytes (hash table slot, boxed key,
/// offset).
const MAP_ENTRY_OVERHEAD: usize = 48;
/// The most a compressed batch may decompress to for the cleaner to rewrite it; a larger batch
/// (only a hostile client writes one) is kept as it is, uncleaned.
const MAX_DECOMPRESSED_BATCH: usize = 64 << 20;

/// How dirty a compacted log is, for the broker to pick the dirtiest one (see
/// [`PartitionLog::cleanable`](crate::PartitionLog::cleanable)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cleanable {
    /// Records below this offset have been cleaned.
    pub first_dirty_offset: i64,
    /// The cleanable section ends here (exclusive): the base offset of the first segment that
    /// may not be cleaned yet (the active one, one reaching the upper bound, or one holding a
    /// record newer than `min.compaction.lag.ms`).
    pub first_uncleanable_offset: i64,
    /// Bytes of the cleanable segments below the first dirty offset.
    pub clean_bytes: u64,
    /// Bytes of the cleanable segments at and above the first dirty offset.
    pub dirty_bytes: u64,
    /// `dirty_bytes / (clean_bytes + dirty_bytes)`, 0 when there is nothing cleanable.
    pub dirty_ratio: f64,
    /// The oldest dirty batch is older than `max.compaction.lag.ms`.
    pub max_lag_exceeded: bool,
    /// A tombstone the last clean kept has outlived `delete.retention.ms` since.
    pub tombstones_expired: bool,
    /// There are dirty bytes and the ratio reaches `min.cleanable.dirty.ratio`, or the maximum
    /// lag is exceeded, or kept tombstones have expired.
    pub needs_cleaning: bool,
}

/// What a clean did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanStats {
    /// Bytes of the segments read (the map pass and the copy).
    pub bytes_read: u64,
    /// Bytes of the cleaned segments written.
    pub bytes_written: u64,
    pub records_read: u64,
    pub records_kept: u64,
    /// Tombstones dropped because they were older than `delete.retention.ms`.
    pub tombstones_removed: u64,
    /// Records of aborted transactions removed.
    pub aborted_records_removed: u64,
    /// End-transaction markers removed (their transaction had no data left).
    pub markers_removed: u64,
    /// Entries in the key -> offset map.
    pub map_entries: u64,
    /// Segments replaced and segments written in their place.
    pub segments_replaced: u64,
    pub segments_written: u64,
    /// The first dirty offset before the clean, and the end of the section rewritten (the new
    /// first dirty offset unless it was already higher).
    pub first_dirty_offset: i64,
    pub end_offset: i64,
    /// When the earliest tombstone kept in the cleaned section may be removed (its batch time
    /// plus `delete.retention.ms`), if any was kept.
    pub next_tombstone_expiry: Option<i64>,
}

/// A read-only view of one segment, taken under the log's lock.
pub(crate) struct SegmentView {
    pub base: i64,
    pub size: u64,
    pub next_offset: i64,
    pub modified_ms: i64,
    pub file: File,
}

/// The file work of one clean, to run without holding the log (see the module docs).
pub struct CleanTask {
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    /// The cleanable segments, ascending.
    pub(crate) segments: Vec<SegmentView>,
    pub(crate) first_dirty: i64,
    /// Base offsets of the latest batch of every idempotent producer.
    pub(crate) producer_last_batches: HashSet<i64>,
    /// Producer id -> epoch of the producers whose last entry in the log may be a marker of
    /// that epoch (such markers are kept).
    pub(crate) marker_only_epochs: HashMap<i64, i16>,
    /// The aborted transactions that began below the end of the cleanable segments, from the
    /// log's aborted-transaction indexes.
    pub(crate) aborted: Vec<AbortedTxn>,
    pub(crate) now_ms: i64,
    pub(crate) max_map_bytes: usize,
}

/// One group of old segments and the cleaned segment that replaces it.
pub(crate) struct CleanedGroup {
    /// (base offset, size, next offset) of each replaced segment, as read.
    pub old: Vec<(i64, u64, i64)>,
    pub seg: Segment,
}

/// The result of [`CleanTask::run`], to hand to
/// [`PartitionLog::finish_clean`](crate::PartitionLog::finish_clean).
pub struct CleanedLog {
    pub(crate) dir: PathBuf,
    pub(crate) groups: Vec<CleanedGroup>,
    pub(crate) stats: CleanStats,
}

impl CleanedLog {
    pub fn stats(&self) -> &CleanStats {
        &self.stats
    }

    /// Deletes the cleaned files (the clean is abandoned).
    pub(crate) fn discard(self) {
        for g in self.groups {
            for ext in SEGMENT_FILES {
                let _ =
                    remove_if_exists(&suffixed_path(&self.dir, g.seg.base_offset, ext, CLEANED));
            }
        }
    }
}

/// One record of a batch's (decompressed) records section.
struct Rec<'a> {
    /// The whole record, length prefix included.
    bytes: &'a [u8],
    offset_delta: i32,
    timestamp_delta: i64,
    key: Option<&'a [u8]>,
    null_value: bool,
}

impl CleanTask {
    /// The dirty section this task would clean starts here.
    pub fn first_dirty_offset(&self) -> i64 {
        self.first_dirty
    }

    /// Builds the offset map and writes the cleaned segments. Reads only the duplicated file
    /// handles, so the log may be appended to (and read) meanwhile.
    pub fn run(self) -> Result<CleanedLog, StorageError> {
        let mut stats = CleanStats {
            first_dirty_offset: self.first_dirty,
            ..CleanStats::default()
        };
        let dirty_start = self
            .segments
            .iter()
            .position(|s| s.next_offset > self.first_dirty)
            .unwrap_or(self.segments.len());
        let mut map: HashMap<Box<[u8]>, i64> = HashMap::new();
        let mut map_bytes = 0usize;
        let mut end_idx = dirty_start;
        // Records of aborted transactions never enter the map: they must not win over an
        // earlier committed record with the same key.
        let mut txns = TxnFilter::new(
            &self.aborted,
            self.segments.get(dirty_start).map_or(i64::MAX, |s| s.base),
        );
        'segments: for (i, seg) in self.segments.iter().enumerate().skip(dirty_start) {
            let mut full = false;
            for_each_batch(seg, |h, bytes| {
                stats.bytes_read += bytes.len() as u64;
                let fate = txns.on_batch(h, bytes);
                if full || h.is_control() || h.records_count == 0 || fate == TxnFate::Aborted {
                    return Ok(());
                }
                let Some(records) = readable_records(bytes, h) else {
                    return Ok(());
                };
                for rec in parse_records(&records, h.records_count)? {
                    let Some(key) = rec.key else { continue };
                    let offset = h.base_offset + i64::from(rec.offset_delta);
                    if let Some(o) = map.get_mut(key) {
                        *o = offset;
                    } else {
                        map_bytes += key.len() + MAP_ENTRY_OVERHEAD;
                        map.insert(key.into(), offset);
                    }
                }
                if map_bytes > self.max_map_bytes && i > dirty_start {
                    full = true;
                }
                Ok(())
            })?;
            if full {
                // This segment does not fit: clean up to its start. Its keys already in the map
                // are later than everything cleaned, so dropping older records for them is
                // still right.
                break 'segments;
            }
            end_idx = i + 1;
            if map_bytes > self.max_map_bytes {
                if i == dirty_start {
                    tracing::warn!(
                        dir = %self.dir.display(),
                        segment = seg.base,
                        map_bytes,
                        max_map_bytes = self.max_map_bytes,
                        "one segment's keys exceed the dedupe buffer; cleaning it anyway"
                    );
                }
                break;
            }
        }
        stats.map_entries = map.len() as u64;
        if dirty_start == self.segments.len() {
            // Nothing dirty: a clean to drop expired tombstones from the cleaned section.
            end_idx = self.segments.len();
        }
        if end_idx == 0 {
            stats.end_offset = self.first_dirty;
            return Ok(CleanedLog {
                dir: self.dir,
                groups: Vec::new(),
                stats,
            });
        }
        stats.end_offset = self.segments[end_idx - 1].next_offset;
        let mut groups = Vec::new();
        let mut txns = TxnFilter::new(&self.aborted, self.segments[0].base);
        let result = (|| {
            for range in group_segments(&self.segments[..end_idx], self.config.segment_bytes) {
                let g = self.clean_group(&self.segments[range], &map, &mut txns, &mut stats)?;
                groups.push(g);
            }
            Ok::<(), StorageError>(())
        })();
        let cleaned = CleanedLog {
            dir: self.dir.clone(),
            groups,
            stats,
        };
        match result {
            Ok(()) => Ok(cleaned),
            Err(e) => {
                cleaned.discard();
                Err(e)
            }
        }
    }

    fn clean_group(
        &self,
        group: &[SegmentView],
        map: &HashMap<Box<[u8]>, i64>,
        txns: &mut TxnFilter,
        stats: &mut CleanStats,
    ) -> Result<CleanedGroup, StorageError> {
        let base = group[0].base;
        let interval = self.config.index_interval_bytes;
        // Remove a leftover of an earlier, abandoned attempt first.
        let mut seg = Segment::create_with_suffix(&self.dir, base, CLEANED)?;
        let last_idx = group.len() - 1;
        for (k, view) in group.iter().enumerate() {
            stats.segments_replaced += 1;
            let mut pos = 0u64;
            for_each_batch(view, |h, bytes| {
                stats.bytes_read += bytes.len() as u64;
                pos += bytes.len() as u64;
                let group_last = k == last_idx && pos == view.size;
                let must_keep = group_last
                    || (h.producer_id >= 0 && self.producer_last_batches.contains(&h.base_offset));
                let fate = txns.on_batch(h, bytes);
                if let TxnFate::KeepMarker(Some(aborted)) = fate {
                    seg.add_aborted_txn(aborted)?;
                }
                let out = self.filter_batch(view, h, bytes, map, fate, must_keep, stats)?;
                if let Some(out) = out {
                    let nh = batch::parse_header(&out)?;
                    seg.append(&nh, &out, interval, self.now_ms)?;
                    stats.bytes_written += out.len() as u64;
                }
                Ok(())
            })?;
        }
        seg.finish()?;
        seg.sync()?;
        stats.segments_written += 1;
        Ok(CleanedGroup {
            old: group
                .iter()
                .map(|v| (v.base, v.size, v.next_offset))
                .collect(),
            seg,
        })
    }

    /// The batch to write in place of `bytes`: itself, a rewritten copy with fewer records, an
    /// empty header, or nothing. `fate` is what the batch is to its transaction.
    #[allow(clippy::too_many_arguments)]
    fn filter_batch<'a>(
        &self,
        view: &SegmentView,
        h: &BatchHeader,
        bytes: &'a [u8],
        map: &HashMap<Box<[u8]>, i64>,
        fate: TxnFate,
        must_keep: bool,
        stats: &mut CleanStats,
    ) -> Result<Option<Cow<'a, [u8]>>, StorageError> {
        let batch_ts = if h.max_timestamp >= 0 {
            h.max_timestamp
        } else {
            view.modified_ms
        };
        if h.is_control() {
            if fate != TxnFate::DiscardableMarker
                || must_keep
                || self.marker_only_epochs.get(&h.producer_id) == Some(&h.producer_epoch)
            {
                return Ok(Some(Cow::Borrowed(bytes)));
            }
            // Kept for `delete.retention.ms` after it was written, like a tombstone, so that
            // a consumer that read the transaction's data also gets to read its marker.
            if self.now_ms.saturating_sub(batch_ts) > self.config.delete_retention_ms {
                stats.markers_removed += 1;
                return Ok(None);
            }
            let expiry = batch_ts.saturating_add(self.config.delete_retention_ms);
            stats.next_tombstone_expiry = Some(
                stats
                    .next_tombstone_expiry
                    .map_or(expiry, |e| e.min(expiry)),
            );
            return Ok(Some(Cow::Borrowed(bytes)));
        }
        if h.records_count == 0 {
            return Ok(must_keep.then_some(Cow::Borrowed(bytes)));
        }
        if fate == TxnFate::Aborted {
            let n = u64::try_from(h.records_count).unwrap_or(0);
            stats.records_read += n;
            stats.aborted_records_removed += n;
            return Ok(must_keep.then(|| Cow::Owned(empty_batch(bytes, h))));
        }
        let tombstones_expire =
            self.now_ms.saturating_sub(batch_ts) > self.config.delete_retention_ms;
        // A batch whose records cannot be read (accepted before the topic was compacted:
        // compressed batches are not decompressed on the produce path) is kept as it is.
        let Some(payload) = readable_records(bytes, h) else {
            return Ok(Some(Cow::Borrowed(bytes)));
        };
        let records = parse_records(&payload, h.records_count)?;
        stats.records_read += records.len() as u64;
        let mut kept = Vec::with_capacity(records.len());
        for rec in &records {
            let Some(key) = rec.key else { continue };
            let offset = h.base_offset + i64::from(rec.offset_delta);
            if map.get(key).is_some_and(|&latest| offset < latest) {
                continue;
            }
            if rec.null_value {
                if tombstones_expire {
                    stats.tombstones_removed += 1;
                    continue;
                }
                let expiry = batch_ts.saturating_add(self.config.delete_retention_ms);
                stats.next_tombstone_expiry = Some(
                    stats
                        .next_tombstone_expiry
                        .map_or(expiry, |e| e.min(expiry)),
                );
            }
            kept.push(rec);
        }
        stats.records_kept += kept.len() as u64;
        if kept.len() == records.len() {
            return Ok(Some(Cow::Borrowed(bytes)));
        }
        if kept.is_empty() {
            return Ok(must_keep.then(|| Cow::Owned(empty_batch(bytes, h))));
        }
        Ok(Some(Cow::Owned(rebuild_batch(bytes, h, &kept)?)))
    }
}

/// What a batch is to its transaction, as a clean walks the log in offset order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxnFate {
    /// Not transactional, or data of a transaction that was not aborted: cleaned by key.
    Normal,
    /// Data of an aborted transaction: every record goes.
    Aborted,
    /// A marker to keep: data of its transaction was seen in this clean (or it could not be
    /// read). With the aborted transaction it closes, to index in the cleaned segment.
    KeepMarker(Option<AbortedTxn>),
    /// A marker whose transaction has no data left in this clean, or an emptied control
    /// batch.
    DiscardableMarker,
}

/// Tracks, along one walk over the log, which producers are inside an aborted transaction
/// (from the aborted-transaction indexes) and which have kept transactional data whose
/// marker has not been reached.
struct TxnFilter {
    /// Aborted transactions not reached yet, by first offset, descending (popped from the end).
    pending: Vec<AbortedTxn>,
    /// Producer id -> its aborted transaction the walk is inside, and whether any of its
    /// batches was seen.
    aborted: HashMap<i64, (AbortedTxn, bool)>,
    /// Producers with transactional data kept since their last marker.
    kept: HashSet<i64>,
}

impl TxnFilter {
    /// A walk starting at offset `start`: aborted transactions whose marker is below it are
    /// not concerned.
    fn new(aborted: &[AbortedTxn], start: i64) -> TxnFilter {
        let mut pending: Vec<AbortedTxn> = aborted
            .iter()
            .filter(|t| t.last_offset >= start)
            .copied()
            .collect();
        pending.sort_by_key(|t| std::cmp::Reverse(t.first_offset));
        TxnFilter {
            pending,
            aborted: HashMap::new(),
            kept: HashSet::new(),
        }
    }

    fn on_batch(&mut self, h: &BatchHeader, bytes: &[u8]) -> TxnFate {
        while self
            .pending
            .last()
            .is_some_and(|t| t.first_offset <= h.last_offset())
        {
            if let Some(t) = self.pending.pop() {
                self.aborted.insert(t.producer_id, (t, false));
            }
        }
        let pid = h.producer_id;
        if pid < 0 || !h.is_transactional() {
            return TxnFate::Normal;
        }
        if !h.is_control() {
            if let Some((_, seen)) = self.aborted.get_mut(&pid) {
                *seen = true;
                return TxnFate::Aborted;
            }
            self.kept.insert(pid);
            return TxnFate::Normal;
        }
        let kept = self.kept.remove(&pid);
        let aborted = self.aborted.remove(&pid);
        if h.records_count == 0 {
            return TxnFate::DiscardableMarker;
        }
        let Ok(marker) = batch::parse_end_txn_marker(bytes) else {
            return TxnFate::KeepMarker(None);
        };
        match aborted {
            Some((t, true)) if !marker.commit => TxnFate::KeepMarker(Some(t)),
            Some((_, true)) => TxnFate::KeepMarker(None),
            _ if kept => TxnFate::KeepMarker(None),
            _ => TxnFate::DiscardableMarker,
        }
    }
}

/// Splits `segments` into runs of consecutive segments whose sizes add up to at most
/// `max_bytes` (each run has at least one segment) and whose offsets fit a segment's relative
/// offsets.
fn group_segments(segments: &[SegmentView], max_bytes: u64) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < segments.len() {
        let mut j = i + 1;
        let mut size = segments[i].size;
        while j < segments.len()
            && size + segments[j].size <= max_bytes.min(u64::from(u32::MAX))
            && segments[j].next_offset - segments[i].base <= i64::from(i32::MAX)
        {
            size += segments[j].size;
            j += 1;
        }
        out.push(i..j);
        i = j;
    }
    out
}

/// Visits every batch of a segment view in order (CRC-checked), with its bytes.
fn for_each_batch(
    view: &SegmentView,
    mut f: impl FnMut(&BatchHeader, &[u8]) -> Result<(), StorageError>,
) -> Result<(), StorageError> {
    let mut pos = 0u64;
    let mut buf = Vec::new();
    let mut expected = view.base;
    while pos < view.size {
        let corrupt = |what: &str| {
            StorageError::CorruptRecord(format!(
                "{what} at position {pos} of segment {} while cleaning",
                view.base
            ))
        };
        if pos + BATCH_HEADER_LEN as u64 > view.size {
            return Err(corrupt("truncated batch"));
        }
        let mut hdr = [0u8; BATCH_HEADER_LEN];
        view.file.read_exact_at(&mut hdr, pos)?;
        let h = batch::parse_header(&hdr)?;
        let len = h.total_size() as u64;
        if pos + len > view.size || h.base_offset < expected || h.last_offset_delta < 0 {
            return Err(corrupt("bad batch"));
        }
        buf.resize(len as usize, 0);
        view.file.read_exact_at(&mut buf, pos)?;
        let h = validate_stored_batch(&buf)?;
        f(&h, &buf)?;
        expected = h.last_offset() + 1;
        pos += len;
    }
    Ok(())
}

/// Validates a batch as stored in a log, possibly compacted: like
/// [`batch::validate_batch`] (exactly one whole batch, magic 2, CRC32C, codec, record framing
/// of uncompressed batches) except that records may be missing (`recordsCount` may be below
/// `lastOffsetDelta + 1`, down to zero; offset deltas only have to increase up to
/// `lastOffsetDelta`), which is what the cleaner writes.
pub(crate) fn validate_stored_batch(bytes: &[u8]) -> Result<BatchHeader, StorageError> {
    let h = batch::parse_header(bytes)?;
    if h.total_size() != bytes.len() {
        return Err(StorageError::CorruptRecord(format!(
            "batch of {} bytes in {} bytes",
            h.total_size(),
            bytes.len()
        )));
    }
    let actual = batch::compute_crc(bytes);
    if actual != h.crc {
        return Err(batch::BatchError::CorruptCrc {
            expected: h.crc,
            actual,
        }
        .into());
    }
    let invalid = |m: String| StorageError::InvalidRecord(m);
    if h.records_count < 0
        || h.last_offset_delta < 0
        || i64::from(h.records_count) > i64::from(h.last_offset_delta) + 1
    {
        return Err(invalid(format!(
            "{} records with last offset delta {}",
            h.records_count, h.last_offset_delta
        )));
    }
    if h.compression() > batch::MAX_COMPRESSION_CODEC {
        return Err(invalid(format!(
            "unknown compression codec {}",
            h.compression()
        )));
    }
    if h.compression() == 0 {
        let mut prev = -1i64;
        let mut n = 0;
        for rec in batch::records(bytes) {
            let d = i64::from(rec?.offset_delta);
            if d <= prev || d > i64::from(h.last_offset_delta) {
                return Err(invalid(format!("record offset delta {d} out of order")));
            }
            prev = d;
            n += 1;
        }
        if n != h.records_count {
            return Err(invalid(format!(
                "header says {} records, found {n}",
                h.records_count
            )));
        }
    }
    Ok(h)
}

/// The decompressed records section of a batch when its records parse, else `None` (logged).
fn readable_records<'a>(bytes: &'a [u8], h: &BatchHeader) -> Option<Cow<'a, [u8]>> {
    let ok = records_section(bytes, h).and_then(|p| {
        parse_records(&p, h.records_count)?;
        Ok(p)
    });
    match ok {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!(offset = h.base_offset, error = %e, "cleaner keeps a batch whose records cannot be read");
            None
        }
    }
}

/// The records section of a batch, decompressed (at most [`MAX_DECOMPRESSED_BATCH`] bytes).
fn records_section<'a>(bytes: &'a [u8], h: &BatchHeader) -> Result<Cow<'a, [u8]>, StorageError> {
    if h.compression() == 0 {
        return Ok(Cow::Borrowed(&bytes[BATCH_HEADER_LEN..]));
    }
    record_stream::decompress_records(bytes, h, MAX_DECOMPRESSED_BATCH)
        .map(Cow::Owned)
        .map_err(|e| StorageError::CorruptRecord(format!("cannot decompress batch: {e}")))
}

fn compress(codec: u8, data: &[u8], out: &mut BytesMut) -> Result<(), String> {
    let put = |b: &mut BytesMut| {
        b.extend_from_slice(data);
        Ok(())
    };
    let r = match codec {
        1 => <Gzip as Compressor<BytesMut>>::compress(out, put),
        2 => <Snappy as Compressor<BytesMut>>::compress(out, put),
        3 => <Lz4 as Compressor<BytesMut>>::compress(out, put),
        4 => <Zstd as Compressor<BytesMut>>::compress(out, put),
        c => return Err(format!("unknown compression codec {c}")),
    };
    r.map_err(|e| e.to_string())
}

fn parse_records(payload: &[u8], count: i32) -> Result<Vec<Rec<'_>>, StorageError> {
    let bad = |m: &str| StorageError::InvalidRecord(format!("malformed record: {m}"));
    let mut out = Vec::with_capacity(count.max(0) as usize);
    let mut pos = 0usize;
    for _ in 0..count.max(0) {
        let start = pos;
        let (len, p) = varint(payload, pos).ok_or_else(|| bad("length"))?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| p.checked_add(l))
            .filter(|&e| e <= payload.len())
            .ok_or_else(|| bad("length past the batch"))?;
        let body = &payload[..end];
        // attributes, then timestampDelta (varlong), offsetDelta, keyLength, key, valueLength.
        let (timestamp_delta, q) = varlong(body, p + 1).ok_or_else(|| bad("timestamp"))?;
        let (offset_delta, q) = varint(body, q).ok_or_else(|| bad("offset delta"))?;
        let (key_len, q) = varint(body, q).ok_or_else(|| bad("key length"))?;
        let (key, q) = if key_len < 0 {
            (None, q)
        } else {
            let e = q
                .checked_add(key_len as usize)
                .filter(|&e| e <= end)
                .ok_or_else(|| bad("key past the record"))?;
            (Some(&body[q..e]), e)
        };
        let (value_len, _) = varint(body, q).ok_or_else(|| bad("value length"))?;
        out.push(Rec {
            bytes: &payload[start..end],
            offset_delta,
            timestamp_delta,
            key,
            null_value: value_len < 0,
        });
        pos = end;
    }
    if pos != payload.len() {
        return Err(bad("bytes after the last record"));
    }
    Ok(out)
}

fn uvarint(buf: &[u8], mut pos: usize, max_bytes: usize) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for i in 0..max_bytes {
        let b = *buf.get(pos)?;
        pos += 1;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, pos));
        }
    }
    None
}

fn varint(buf: &[u8], pos: usize) -> Option<(i32, usize)> {
    let (v, p) = uvarint(buf, pos, 5)?;
    let v = v as u32;
    Some((((v >> 1) as i32) ^ -((v & 1) as i32), p))
}

fn varlong(buf: &[u8], pos: usize) -> Option<(i64, usize)> {
    let (v, p) = uvarint(buf, pos, 10)?;
    Some((((v >> 1) as i64) ^ -((v & 1) as i64), p))
}

fn put_i16(b: &mut [u8], at: usize, v: i16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}
fn put_i32(b: &mut [u8], at: usize, v: i32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}
fn put_i64(b: &mut [u8], at: usize, v: i64) {
    b[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

fn finish_header(out: &mut [u8]) {
    let len = (out.len() - LOG_OVERHEAD) as i32;
    put_i32(out, BATCH_LENGTH_OFFSET, len);
    let crc = batch::compute_crc(out);
    out[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}

/// The batch with only `kept` records (in order), recompressed with its own codec. Base
/// offset, last offset delta, base timestamp and producer fields stay; the max timestamp is
/// recomputed from the kept records unless the batch uses `LogAppendTime`.
fn rebuild_batch(
    bytes: &[u8],
    h: &BatchHeader,
    kept: &[&Rec<'_>],
) -> Result<Vec<u8>, StorageError> {
    let mut plain = Vec::new();
    for r in kept {
        plain.extend_from_slice(r.bytes);
    }
    let mut out = BytesMut::with_capacity(BATCH_HEADER_LEN + plain.len());
    out.extend_from_slice(&bytes[..BATCH_HEADER_LEN]);
    let codec = h.compression();
    if codec == 0 {
        out.extend_from_slice(&plain);
    } else {
        compress(codec, &plain, &mut out)
            .map_err(|e| StorageError::Io(std::io::Error::other(format!("recompressing: {e}"))))?;
    }
    let mut out = out.to_vec();
    put_i32(&mut out, RECORDS_COUNT_OFFSET, kept.len() as i32);
    if !h.is_log_append_time() {
        let max = kept
            .iter()
            .map(|r| h.base_timestamp.wrapping_add(r.timestamp_delta))
            .max()
            .unwrap_or(h.max_timestamp);
        put_i64(&mut out, MAX_TIMESTAMP_OFFSET, max);
    }
    finish_header(&mut out);
    Ok(out)
}

/// The header of `bytes` with no records: uncompressed, same offsets and producer fields,
/// base and max timestamp set to the original max timestamp (as Kafka writes it).
fn empty_batch(bytes: &[u8], h: &BatchHeader) -> Vec<u8> {
    let mut out = bytes[..BATCH_HEADER_LEN].to_vec();
    put_i16(
        &mut out,
        ATTRIBUTES_OFFSET,
        h.attributes & !COMPRESSION_CODEC_MASK,
    );
    put_i64(&mut out, BASE_TIMESTAMP_OFFSET, h.max_timestamp);
    put_i32(&mut out, RECORDS_COUNT_OFFSET, 0);
    finish_header(&mut out);
    out
}

/// The offset after the last valid batch of a segment file (its base when it has none).
fn file_end_offset(path: &Path, base: i64) -> Result<i64, StorageError> {
    let f = File::open(path)?;
    let len = f.metadata()?.len();
    let mut pos = 0u64;
    let mut end = base;
    let mut hdr = [0u8; BATCH_HEADER_LEN];
    while pos + BATCH_HEADER_LEN as u64 <= len {
        f.read_exact_at(&mut hdr, pos)?;
        let Ok(h) = batch::parse_header(&hdr) else {
            break;
        };
        if pos + h.total_size() as u64 > len || h.base_offset < end || h.last_offset_delta < 0 {
            break;
        }
        end = h.last_offset() + 1;
        pos += h.total_size() as u64;
    }
    Ok(end)
}

/// Finishes or discards half-done cleans in `dir` (see the module docs). Runs before the
/// segments are opened.
pub(crate) fn recover(dir: &Path) -> Result<(), StorageError> {
    let mut log_swaps = Vec::new();
    let mut other_swaps = Vec::new();
    let mut logs = Vec::new();
    for e in fs::read_dir(dir)? {
        let e = e?;
        let Some(name) = e.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if name.ends_with(CLEANED) {
            tracing::info!(dir = %dir.display(), file = %name, "deleting the file of an unfinished log clean");
            remove_if_exists(&e.path())?;
        } else if let Some(stem) = name.strip_suffix(SWAP) {
            match parse_file_name(stem, "log") {
                Some(b) => log_swaps.push(b),
                None => other_swaps.push(e.path()),
            }
        } else if let Some(b) = parse_file_name(&name, "log") {
            logs.push(b);
        }
    }
    if log_swaps.is_empty() && other_swaps.is_empty() {
        return Ok(());
    }
    log_swaps.sort_unstable();
    for b in log_swaps {
        let swap = suffixed_path(dir, b, "log", SWAP);
        let end = file_end_offset(&swap, b)?;
        tracing::info!(dir = %dir.display(), segment = b, end, "completing an interrupted log clean swap");
        for &old in logs.iter().filter(|&&o| o > b && o < end) {
            for ext in SEGMENT_FILES {
                remove_if_exists(&file_path(dir, old, ext))?;
            }
        }
        for ext in ["index", "timeindex"] {
            remove_if_exists(&file_path(dir, b, ext))?;
            remove_if_exists(&suffixed_path(dir, b, ext, SWAP))?;
        }
        // The aborted-transaction index cannot be rebuilt from the segment alone. It was
        // renamed to `.swap` before the commit point and into place before the log: without
        // its `.swap` file, the one in place is already the cleaned segment's.
        let txn_swap = suffixed_path(dir, b, txn_index::EXT, SWAP);
        if txn_swap.exists() {
            fs::rename(&txn_swap, file_path(dir, b, txn_index::EXT))?;
        }
        fs::rename(&swap, file_path(dir, b, "log"))?;
    }
    for p in other_swaps {
        remove_if_exists(&p)?;
    }
    fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Renames a cleaned group's files and deletes the replaced segments' (see the module docs).
/// `stop_after` (tests) returns an error after that many steps, leaving the files as a crash
/// there would.
pub(crate) fn swap_files(
    dir: &Path,
    base: i64,
    replaced: &[i64],
    stop_after: Option<u8>,
) -> Result<(), StorageError> {
    let stop = |step: u8| -> Result<(), StorageError> {
        if stop_after == Some(step) {
            return Err(StorageError::Io(std::io::Error::other(format!(
                "injected crash after swap step {step}"
            ))));
        }
        Ok(())
    };
    let sync_dir = || -> Result<(), StorageError> { Ok(fs::File::open(dir)?.sync_all()?) };
    // The log goes last in both rounds of renames: `B.log.swap` existing is what says the
    // clean is committed and not finished.
    let order = [txn_index::EXT, "index", "timeindex", "log"];
    stop(0)?;
    for ext in order {
        fs::rename(
            suffixed_path(dir, base, ext, CLEANED),
            suffixed_path(dir, base, ext, SWAP),
        )?;
    }
    sync_dir()?;
    stop(1)?;
    for &old in replaced.iter().rev().filter(|&&o| o != base) {
        for ext in SEGMENT_FILES {
            remove_if_exists(&file_path(dir, old, ext))?;
        }
    }
    stop(2)?;
    for ext in order {
        fs::rename(
            suffixed_path(dir, base, ext, SWAP),
            file_path(dir, base, ext),
        )?;
        if ext == "index" {
            stop(3)?;
        }
    }
    sync_dir()?;
    Ok(())
}

/// `(first dirty offset, next tombstone expiry)` from `cleaner-offset-checkpoint`: two lines,
/// the second `-1` when no kept tombstone is waiting to expire.
pub(crate) fn read_checkpoint(dir: &Path) -> (Option<i64>, Option<i64>) {
    let Ok(text) = fs::read_to_string(dir.join(CHECKPOINT_FILE)) else {
        return (None, None);
    };
    let mut lines = text.lines().map(|l| l.trim().parse::<i64>().ok());
    let first_dirty = lines.next().flatten();
    let expiry = lines.next().flatten().filter(|&e| e >= 0);
    (first_dirty, expiry)
}

pub(crate) fn checkpoint_text(first_dirty: i64, tombstone_expiry: Option<i64>) -> String {
    format!("{first_dirty}\n{}\n", tombstone_expiry.unwrap_or(-1))
}
