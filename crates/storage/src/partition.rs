//! The partition log: an ordered list of segments, the last one active.

use std::fs;
use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use runnel_protocol::batch::{self, BatchHeader, EndTxnMarker};
use runnel_protocol::record_stream;

use crate::cleaner::{self, CleanStats, CleanTask, Cleanable, CleanedLog, SegmentView};
use crate::epoch::{self, Checkpoint, EpochCache};
use crate::producer::{self, Check, CompletedTxn, ProducerState, TxnVerification};
use crate::segment::Segment;
use crate::txn_index::AbortedTxn;
use crate::{parse_file_name, LogConfig, StorageError};

const CLEAN_SHUTDOWN: &str = ".clean_shutdown";
const LOG_START_FILE: &str = "log-start-offset";
/// Producer-state snapshots kept on disk (older ones are deleted).
const SNAPSHOTS_KEPT: usize = 2;

/// Result of [`PartitionLog::append`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The timestamp written into the batch, or -1 unless `LogAppendTime`.
    pub log_append_time: i64,
    pub log_start_offset: i64,
    /// Idempotent retry: nothing appended, offsets are the original ones.
    pub duplicate: bool,
}

/// One producer's state on a partition (the fields of Kafka's DescribeProducers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveProducer {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// Sequence of the last record of its last remembered batch, -1 if none.
    pub last_sequence: i32,
    /// Max timestamp of its last remembered batch, -1 if none.
    pub last_timestamp: i64,
    /// Epoch of the coordinator that wrote its last marker, -1 if none.
    pub coordinator_epoch: i32,
    /// First offset of its open transaction, -1 if none.
    pub current_txn_start_offset: i64,
}

/// One partition's log in one directory. Appends and maintenance take `&mut self`; reads take
/// `&self` and use positional reads, so a caller may share it behind a read-write lock.
pub struct PartitionLog {
    dir: PathBuf,
    config: LogConfig,
    /// Ascending by base offset; never empty; the last one is active.
    segments: Vec<Segment>,
    log_start_offset: i64,
    producers: ProducerState,
    /// When idle producer ids were last looked for.
    producers_checked_ms: i64,
    /// Reused copy of the incoming batch, patched before writing.
    scratch: Vec<u8>,
    unflushed_messages: u64,
    first_unflushed_ms: Option<i64>,
    /// Files of rolled segments not fsynced yet. A roll does not fsync on the append path (a
    /// 1 GiB segment can take seconds); [`PartitionLog::take_pending_syncs`] hands them to a
    /// background task, and [`PartitionLog::flush`] syncs whatever is still here.
    pending_sync: Vec<fs::File>,
    /// The log end when the files in `pending_sync` were handed over: everything below it is
    /// durable once they are synced.
    pending_sync_through: i64,
    /// Everything below this offset is known to be on disk (synced): after an unclean
    /// shutdown only the segments at or above it need validating.
    recovery_point: i64,
    /// The leader epoch cache, mirrored to `leader-epoch-checkpoint` on every change.
    epochs: EpochCache,
    /// The cleaner's first dirty offset (`cleaner-offset-checkpoint`): records below it have
    /// been compacted.
    first_dirty: i64,
    /// When a tombstone the last clean kept may go (see [`CleanStats::next_tombstone_expiry`]);
    /// kept in the same checkpoint file.
    tombstone_expiry: Option<i64>,
    /// Tests: make the next swap of a clean stop after this step, as a crash would.
    #[cfg(test)]
    pub(crate) swap_crash_at: Option<u8>,
}

impl PartitionLog {
    /// Opens (creating if missing) the log in `dir`, recovering it after an unclean shutdown.
    pub fn open(dir: &Path, config: LogConfig, now_ms: i64) -> Result<PartitionLog, StorageError> {
        Self::open_from_recovery_point(dir, config, now_ms, None)
    }

    /// Opens the log; after an unclean shutdown every segment holding offsets at or above
    /// `recovery_point` (the offset below which everything was known flushed, Kafka's
    /// `recovery-point-offset-checkpoint`; `None` when unknown: every segment) is validated
    /// batch by batch, CRCs included. A segment cut at an invalid batch ends the log: the
    /// segments after it are deleted.
    pub fn open_from_recovery_point(
        dir: &Path,
        config: LogConfig,
        now_ms: i64,
        recovery_point: Option<i64>,
    ) -> Result<PartitionLog, StorageError> {
        fs::create_dir_all(dir)?;
        let marker = dir.join(CLEAN_SHUTDOWN);
        let clean = marker.exists();
        if clean {
            // Durably forget the marker before anything is written, or a later crash could be
            // mistaken for a clean shutdown.
            fs::remove_file(&marker)?;
            sync_dir(dir)?;
        }
        // Half-done log cleans: finish committed swaps, drop unfinished cleaned files.
        cleaner::recover(dir)?;
        let mut bases = Vec::new();
        let mut index_files = Vec::new();
        for e in fs::read_dir(dir)? {
            let e = e?;
            let Some(name) = e.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if let Some(b) = parse_file_name(&name, "log") {
                bases.push(b);
            } else if let Some(b) = parse_file_name(&name, "index")
                .or_else(|| parse_file_name(&name, "timeindex"))
                .or_else(|| parse_file_name(&name, crate::txn_index::EXT))
            {
                index_files.push((b, e.path()));
            } else if name.ends_with(".tmp") {
                let _ = fs::remove_file(e.path());
            }
        }
        bases.sort_unstable();
        // Indexes without a log file are leftovers of an interrupted deletion.
        for (b, path) in index_files {
            if bases.binary_search(&b).is_err() {
                let _ = fs::remove_file(path);
            }
        }
        let persisted_start = read_log_start(dir);
        let mut segments: Vec<Segment> = Vec::with_capacity(bases.len().max(1));
        let mut recovered = false;
        // Base of the first segment validated in recovery: producer state is replayed from at
        // or below it, which rebuilds the aborted-transaction indexes of the recovered part.
        let mut first_recovered: Option<i64> = None;
        for (i, &base) in bases.iter().enumerate() {
            // A segment holds offsets at or above the recovery point unless the next one
            // starts at or below it.
            let above = match (bases.get(i + 1), recovery_point) {
                (None, _) | (_, None) => true,
                (Some(&next), Some(rp)) => next > rp,
            };
            let recover = !clean && above;
            recovered |= recover;
            if recover {
                first_recovered.get_or_insert(base);
            }
            let seg = Segment::open(dir, base, recover, config.index_interval_bytes, now_ms)?;
            let cut = seg.truncated_in_recovery;
            segments.push(seg);
            if cut && i + 1 < bases.len() {
                // The log ends at the invalid batch: what follows it cannot be trusted.
                tracing::warn!(
                    dir = %dir.display(),
                    segment = base,
                    dropped = bases.len() - i - 1,
                    "deleting the segments after a segment cut in recovery"
                );
                for &later in bases[i + 1..].iter().rev() {
                    for ext in crate::segment::SEGMENT_FILES {
                        match fs::remove_file(crate::file_path(dir, later, ext)) {
                            Ok(()) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
                sync_dir(dir)?;
                break;
            }
        }
        if recovered {
            // What recovery kept is made durable, so the recovery point can be the log end.
            for seg in &segments {
                seg.sync()?;
            }
        }
        if segments.is_empty() {
            segments.push(Segment::create(dir, persisted_start.unwrap_or(0).max(0))?);
        }
        let log_end = segments.last().map_or(0, |s| s.next_offset);
        let first_base = segments[0].base_offset;
        let log_start_offset = persisted_start
            .unwrap_or(first_base)
            .max(first_base)
            .min(log_end);
        let mut log = PartitionLog {
            dir: dir.to_path_buf(),
            config,
            segments,
            log_start_offset,
            recovery_point: log_end,
            pending_sync_through: log_end,
            producers: ProducerState::default(),
            producers_checked_ms: 0,
            scratch: Vec::new(),
            unflushed_messages: 0,
            first_unflushed_ms: None,
            pending_sync: Vec::new(),
            epochs: EpochCache::default(),
            first_dirty: cleaner::read_checkpoint(dir)
                .0
                .unwrap_or(log_start_offset)
                .clamp(log_start_offset, log_end),
            tombstone_expiry: cleaner::read_checkpoint(dir).1,
            #[cfg(test)]
            swap_crash_at: None,
        };
        log.load_producer_state(first_recovered)?;
        log.load_epoch_cache()?;
        Ok(log)
    }

    /// Loads the leader epoch checkpoint, rebuilding it from the batch headers when it is
    /// missing (a log written before the cache existed) or unreadable, then fits it to the log:
    /// entries at or above the log end (records lost in recovery) go, and the log start offset
    /// cuts the front.
    fn load_epoch_cache(&mut self) -> Result<(), StorageError> {
        let mut dirty = match epoch::read_checkpoint(&self.dir)? {
            Checkpoint::Entries(entries) => {
                self.epochs = EpochCache::from_entries(entries.iter().copied());
                self.epochs.entries() != entries.as_slice()
            }
            other => {
                if let Checkpoint::Corrupt(why) = other {
                    tracing::warn!(
                        dir = %self.dir.display(),
                        reason = %why,
                        "rebuilding unreadable leader epoch checkpoint from the log"
                    );
                }
                let mut cache = EpochCache::default();
                for seg in &self.segments {
                    seg.for_each_header(seg.base_offset, |h| {
                        cache.assign(h.partition_leader_epoch, h.base_offset);
                    })?;
                }
                self.epochs = cache;
                true
            }
        };
        dirty |= self.epochs.truncate_from_end(self.log_end_offset());
        dirty |= self.epochs.truncate_from_start(self.log_start_offset);
        if dirty {
            self.persist_epochs()?;
        }
        Ok(())
    }

    fn persist_epochs(&self) -> Result<(), StorageError> {
        epoch::write_checkpoint(&self.dir, self.epochs.entries())
    }

    /// Records `epoch` as starting at `start_offset` if it is above the latest epoch, persisting
    /// the checkpoint before the records are written (as Kafka does: a crash in between leaves an
    /// entry at the log end, which opening drops).
    fn assign_epoch(&mut self, epoch: i32, start_offset: i64) -> Result<(), StorageError> {
        if self.epochs.assign(epoch, start_offset) {
            self.persist_epochs()?;
        }
        Ok(())
    }

    /// Sets a higher log start offset: persists it, then cuts the epoch cache's front.
    /// Producers are kept (their open transactions too); completed transactions whose marker
    /// is below it no longer hold the last stable offset.
    fn raise_log_start(&mut self, offset: i64) -> Result<(), StorageError> {
        self.log_start_offset = offset;
        self.producers.on_high_watermark(offset);
        write_log_start(&self.dir, offset)?;
        if self.epochs.truncate_from_start(offset) {
            self.persist_epochs()?;
        }
        Ok(())
    }

    /// Loads the newest valid snapshot at or below the log end (and at or below `replay_from`
    /// when there is one) and replays the log after it, markers included. The aborted-transaction
    /// indexes are rebuilt for the replayed part: their entries with a marker at or above the
    /// replay's start are dropped and written again as the replay completes transactions
    /// (the same entries an append wrote, since they depend only on the state replayed).
    fn load_producer_state(&mut self, replay_from: Option<i64>) -> Result<(), StorageError> {
        let leo = self.log_end_offset();
        let limit = replay_from.map_or(leo, |r| r.min(leo));
        let mut snaps = producer::list_snapshots(&self.dir)?;
        // Snapshots above the log end describe data that was truncated away.
        while snaps.last().is_some_and(|&s| s > leo) {
            if let Some(s) = snaps.pop() {
                producer::delete_snapshot(&self.dir, s)?;
            }
        }
        let newest_at_or_below = |limit: i64| {
            snaps.iter().rev().filter(|&&s| s <= limit).find_map(|&s| {
                let st = ProducerState::read_snapshot(&self.dir, s);
                if st.is_none() {
                    tracing::warn!(offset = s, "ignoring unreadable producer state snapshot");
                }
                st.map(|st| (s, st))
            })
        };
        // Without a snapshot at or below the first recovered segment (the recovery point lags
        // several rolls behind), the newest one is used rather than replaying the whole log:
        // the indexes of the recovered segments below it were already cut to their segment's
        // end on open.
        let found = newest_at_or_below(limit)
            .or_else(|| (limit < leo).then(|| newest_at_or_below(leo)).flatten());
        let (from, mut state) = match found {
            Some((s, st)) => (s, st),
            None => (self.segments[0].base_offset, ProducerState::default()),
        };
        for seg in &mut self.segments {
            seg.truncate_aborted_txns(from)?;
            if seg.next_offset <= from {
                continue;
            }
            let mut aborted = Vec::new();
            seg.for_each_producer_batch(from, |h, marker| {
                if let Some(c) = state.update(h, marker, h.max_timestamp) {
                    aborted.extend(aborted_entry(&c));
                }
            })?;
            for a in aborted {
                seg.add_aborted_txn(a)?;
            }
        }
        self.producers = state;
        let start = self.log_start_offset;
        self.producers.on_high_watermark(start);
        Ok(())
    }

    /// Indexes a transaction a marker just appended to the active segment completed.
    fn index_completed(&mut self, completed: Option<CompletedTxn>) -> Result<(), StorageError> {
        if let Some(a) = completed.as_ref().and_then(aborted_entry) {
            self.active_mut().add_aborted_txn(a)?;
        }
        Ok(())
    }

    fn active(&self) -> &Segment {
        &self.segments[self.segments.len() - 1]
    }

    fn active_mut(&mut self) -> &mut Segment {
        let n = self.segments.len();
        &mut self.segments[n - 1]
    }

    /// Appends exactly one client record batch (the Produce v3+ rule), assigning offsets from
    /// the log end. The partition leader epoch field is written as the client sent it.
    pub fn append(&mut self, batch: &[u8], now_ms: i64) -> Result<AppendOutcome, StorageError> {
        self.append_inner(batch, now_ms, None, TxnVerification::Off)
    }

    /// Like [`append`](Self::append), also stamping the batch's partition leader epoch (what a
    /// Kafka leader does, KIP-101).
    pub fn append_with_leader_epoch(
        &mut self,
        batch: &[u8],
        now_ms: i64,
        leader_epoch: i32,
    ) -> Result<AppendOutcome, StorageError> {
        self.append_inner(batch, now_ms, Some(leader_epoch), TxnVerification::Off)
    }

    /// Like [`append_with_leader_epoch`](Self::append_with_leader_epoch), for a client's batch
    /// under server-side partition verification (see [`TxnVerification`]).
    pub fn append_verified(
        &mut self,
        batch: &[u8],
        now_ms: i64,
        leader_epoch: i32,
        verification: TxnVerification,
    ) -> Result<AppendOutcome, StorageError> {
        self.append_inner(batch, now_ms, Some(leader_epoch), verification)
    }

    /// The guard to append `producer_id`'s transaction-opening batch with once its
    /// transaction coordinator has confirmed the partition is in the transaction; a marker
    /// written meanwhile invalidates it (the append is then refused).
    pub fn verification_guard(&mut self, producer_id: i64, now_ms: i64) -> u64 {
        self.producers.verification_guard(producer_id, now_ms)
    }

    fn append_inner(
        &mut self,
        batch: &[u8],
        now_ms: i64,
        leader_epoch: Option<i32>,
        verification: TxnVerification,
    ) -> Result<AppendOutcome, StorageError> {
        if batch.len() > self.config.max_message_bytes as usize {
            return Err(StorageError::RecordTooLarge {
                size: batch.len(),
                max: self.config.max_message_bytes,
            });
        }
        // Compacted topics refuse records without a key, as Kafka does (control batches carry
        // their own keys and are not checked).
        let need_keys = self.config.cleanup_compact
            && !batch::parse_header(batch).is_ok_and(|h| h.is_control());
        let header = batch::validate_batch_records(batch, |r| {
            if need_keys && r.key_len < 0 {
                return Err(batch::BatchError::InvalidRecord(
                    "compacted topic cannot accept a record without a key".into(),
                ));
            }
            Ok(())
        })?;
        if header.records_count == 0 {
            return Err(StorageError::InvalidRecord(
                "record batch has no records".into(),
            ));
        }
        // A control batch appended by a leader is an end-transaction marker (clients may not
        // write control batches; the broker refuses them before they get here).
        let marker = if header.is_control() {
            Some(batch::parse_end_txn_marker(batch)?)
        } else {
            None
        };
        if let Check::Duplicate(orig) =
            self.producers
                .check(&header, marker.as_ref(), verification)?
        {
            return Ok(AppendOutcome {
                base_offset: orig.first_offset,
                last_offset: orig.last_offset,
                log_append_time: if self.config.log_append_time {
                    orig.timestamp
                } else {
                    -1
                },
                log_start_offset: self.log_start_offset,
                duplicate: true,
            });
        }
        let base_offset = self.log_end_offset();
        let last_offset = base_offset + i64::from(header.last_offset_delta);
        self.maybe_roll(batch.len(), last_offset, now_ms)?;
        self.assign_epoch(
            leader_epoch.unwrap_or(header.partition_leader_epoch),
            base_offset,
        )?;
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        scratch.extend_from_slice(batch);
        let result = self.write_patched(&mut scratch, base_offset, now_ms, leader_epoch);
        self.scratch = scratch;
        let header = result?;
        let completed = self.producers.update(&header, marker.as_ref(), now_ms);
        self.index_completed(completed)?;
        self.count_unflushed(header.records_count, now_ms)?;
        Ok(AppendOutcome {
            base_offset,
            last_offset,
            log_append_time: if self.config.log_append_time {
                now_ms
            } else {
                -1
            },
            log_start_offset: self.log_start_offset,
            duplicate: false,
        })
    }

    fn write_patched(
        &mut self,
        buf: &mut [u8],
        base_offset: i64,
        now_ms: i64,
        leader_epoch: Option<i32>,
    ) -> Result<BatchHeader, StorageError> {
        batch::set_base_offset(buf, base_offset)?;
        if let Some(epoch) = leader_epoch {
            batch::set_partition_leader_epoch(buf, epoch)?;
        }
        if self.config.log_append_time {
            batch::set_log_append_time(buf, now_ms)?;
        }
        let header = batch::parse_header(buf)?;
        let interval = self.config.index_interval_bytes;
        self.active_mut().append(&header, buf, interval, now_ms)?;
        Ok(header)
    }

    /// Rolls before appending `len` bytes ending at `last_offset` when the active segment is
    /// full or older than `segment.ms`.
    fn maybe_roll(
        &mut self,
        len: usize,
        last_offset: i64,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let active = self.active();
        let elapsed = active
            .roll_clock_ms
            .is_some_and(|t| now_ms.saturating_sub(t) > self.config.segment_ms);
        if (elapsed && !active.is_empty())
            || active.needs_roll(
                len as u64,
                last_offset,
                self.config.segment_bytes,
                self.config.segment_index_bytes,
            )
        {
            self.roll()?;
        }
        Ok(())
    }

    /// Records appended messages for `flush.messages` / `flush.ms`, flushing when due.
    fn count_unflushed(&mut self, records: i32, now_ms: i64) -> Result<(), StorageError> {
        self.unflushed_messages = self
            .unflushed_messages
            .saturating_add(records.max(0) as u64);
        self.first_unflushed_ms.get_or_insert(now_ms);
        if self.unflushed_messages >= self.config.flush_messages {
            self.flush()?;
        }
        Ok(())
    }

    /// Starts a new active segment at the log end: seals the old one and snapshots producer
    /// state at the new base offset.
    fn roll(&mut self) -> Result<(), StorageError> {
        let base = self.log_end_offset();
        if self.active().is_empty() {
            return Ok(());
        }
        self.active_mut().finish()?;
        let handles = self.active().sync_handles()?;
        self.pending_sync.extend(handles);
        self.pending_sync_through = base;
        self.write_producer_snapshot(base)?;
        let seg = Segment::create(&self.dir, base)?;
        self.segments.push(seg);
        sync_dir(&self.dir)?;
        Ok(())
    }

    fn write_producer_snapshot(&self, offset: i64) -> Result<(), StorageError> {
        self.producers.write_snapshot(&self.dir, offset)?;
        let snaps = producer::list_snapshots(&self.dir)?;
        if snaps.len() > SNAPSHOTS_KEPT {
            for &s in &snaps[..snaps.len() - SNAPSHOTS_KEPT] {
                producer::delete_snapshot(&self.dir, s)?;
            }
        }
        Ok(())
    }

    /// Raw batch bytes starting at the batch containing `offset`, whole batches only, at most
    /// `max_bytes` (but at least one batch when `min_one`), never a batch whose base offset is
    /// `>= upper_bound` (the high watermark). `offset == log_end_offset` gives empty bytes;
    /// outside `[log_start_offset, log_end_offset]` is `OffsetOutOfRange`. One positional read
    /// per call; reads never span segments (a reader at a segment's end gets that segment's
    /// last batches and comes back for the next one).
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        upper_bound: i64,
        min_one: bool,
    ) -> Result<Bytes, StorageError> {
        let log_end = self.log_end_offset();
        if offset < self.log_start_offset || offset > log_end {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start: self.log_start_offset,
                log_end,
            });
        }
        if offset == log_end {
            return Ok(Bytes::new());
        }
        // Whole batches from the segment holding `offset`, then from the following segments
        // while there is room: a compacted log can have many segments holding one small (or
        // empty) batch each, and a response with no record in it makes librdkafka double its
        // fetch size until it gives up (MSG_SIZE_TOO_LARGE) after about ten of them.
        let first = self.segment_index_for(offset);
        let mut out: Vec<u8> = Vec::new();
        let mut next = offset;
        let mut budget = max_bytes;
        let mut need_one = min_one;
        for seg in &self.segments[first..] {
            let Some((start, h)) = seg.find(next)? else {
                continue;
            };
            let first_len = h.total_size();
            if h.base_offset >= upper_bound || (!need_one && first_len > budget) {
                break;
            }
            // End of the last batch whose base offset is below the upper bound, and whether
            // the bound falls in this segment.
            let (limit, bounded) = match seg.find(upper_bound)? {
                Some((pos, hb)) if hb.base_offset >= upper_bound => (pos, true),
                Some((pos, hb)) => (pos + hb.total_size() as u64, true),
                None => (seg.size, false),
            };
            let want = if need_one {
                budget.max(first_len)
            } else {
                budget
            };
            let len = (want as u64).min(limit.saturating_sub(start)) as usize;
            let buf = seg.read_at(start, len)?;
            // Cut at the last whole batch that fits.
            let mut end = 0;
            for r in batch::split_batches(&buf) {
                match r {
                    Ok((hb, range)) => {
                        end = range.end;
                        next = hb.last_offset() + 1;
                    }
                    Err(_) => break,
                }
            }
            if end == 0 {
                if out.is_empty() {
                    return Err(StorageError::CorruptRecord(format!(
                        "unreadable batch at offset {offset} in segment {}",
                        seg.base_offset
                    )));
                }
                break;
            }
            out.extend_from_slice(&buf[..end]);
            budget = budget.saturating_sub(end);
            need_one = false;
            if bounded || start + (end as u64) < seg.size || budget == 0 {
                break;
            }
        }
        Ok(Bytes::from(out))
    }

    /// Index of the segment whose range holds `offset` (the first one if below all).
    fn segment_index_for(&self, offset: i64) -> usize {
        self.segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1)
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset
    }

    /// First offset (>= log start) whose record timestamp is >= `ts`, with that timestamp.
    /// Finds the batch through the time and offset indexes, then looks at its records: walked
    /// in place when uncompressed, decoded with kafka-protocol when compressed; for
    /// `LogAppendTime` batches every record carries the batch max timestamp.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>, StorageError> {
        let first = self.segment_index_for(self.log_start_offset);
        for seg in &self.segments[first..] {
            if seg.max_timestamp < ts {
                continue;
            }
            let mut cur = seg.find_by_timestamp(ts)?;
            while let Some((pos, h)) = cur {
                if h.max_timestamp >= ts && h.last_offset() >= self.log_start_offset {
                    let bytes = seg.read_at(pos, h.total_size())?;
                    if let Some(found) =
                        first_record_at_or_after(&bytes, &h, ts, self.log_start_offset)
                    {
                        return Ok(Some(found));
                    }
                }
                let next = pos + h.total_size() as u64;
                cur = seg.header_at(next)?.map(|h| (next, h));
            }
        }
        Ok(None)
    }

    /// (largest record timestamp, offset of the first record carrying it), KIP-734.
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        let mut best: Option<&Segment> = None;
        for seg in &self.segments {
            if seg.max_timestamp >= 0 && best.is_none_or(|b| seg.max_timestamp > b.max_timestamp) {
                best = Some(seg);
            }
        }
        let seg = best?;
        let ts = seg.max_timestamp;
        let batch_offset = seg.max_timestamp_batch;
        let exact = (|| -> Result<Option<i64>, StorageError> {
            let Some((pos, h)) = seg.find(batch_offset)? else {
                return Ok(None);
            };
            let bytes = seg.read_at(pos, h.total_size())?;
            Ok(first_record_at_or_after(&bytes, &h, ts, i64::MIN).map(|(o, _)| o))
        })();
        Some((ts, exact.ok().flatten().unwrap_or(batch_offset)))
    }

    /// DeleteRecords: raises the log start offset and deletes segments wholly below it.
    pub fn delete_records_before(&mut self, offset: i64) -> Result<i64, StorageError> {
        let log_end = self.log_end_offset();
        if offset > log_end || offset < 0 {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start: self.log_start_offset,
                log_end,
            });
        }
        if offset <= self.log_start_offset {
            return Ok(self.log_start_offset);
        }
        self.raise_log_start(offset)?;
        if offset == log_end && !self.active().is_empty() {
            self.roll()?;
        }
        self.delete_segments_below_start()?;
        Ok(self.log_start_offset)
    }

    fn delete_segments_below_start(&mut self) -> Result<usize, StorageError> {
        let mut n = 0;
        while self.segments.len() > 1 && self.segments[1].base_offset <= self.log_start_offset {
            self.delete_oldest()?;
            n += 1;
        }
        Ok(n)
    }

    fn delete_oldest(&mut self) -> Result<(), StorageError> {
        let seg = self.segments.remove(0);
        tracing::info!(dir = %self.dir.display(), segment = seg.base_offset, "deleting segment");
        seg.delete(&self.dir)?;
        let first = self.segments[0].base_offset;
        if first > self.log_start_offset {
            self.raise_log_start(first)?;
        }
        Ok(())
    }

    /// Deletes whole non-active segments past `retention.ms` (by their largest timestamp) or
    /// beyond `retention.bytes`, oldest first, plus segments below the log start offset.
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<usize, StorageError> {
        let mut deleted = self.delete_segments_below_start()?;
        if !self.config.cleanup_delete {
            // `cleanup.policy=compact` alone: the cleaner, not retention, bounds the log.
            return Ok(deleted);
        }
        if self.config.retention_ms >= 0 {
            while self.segments.len() > 1 {
                let seg = &self.segments[0];
                let ts = if seg.max_timestamp >= 0 {
                    seg.max_timestamp
                } else {
                    seg.modified_ms()
                };
                if now_ms.saturating_sub(ts) > self.config.retention_ms {
                    self.delete_oldest()?;
                    deleted += 1;
                } else {
                    break;
                }
            }
        }
        if self.config.retention_bytes >= 0 {
            let mut excess = self.size_bytes() as i64 - self.config.retention_bytes;
            while self.segments.len() > 1 && excess - self.segments[0].size as i64 >= 0 {
                excess -= self.segments[0].size as i64;
                self.delete_oldest()?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// Periodic work: roll on `segment.ms` (and, for a compacted log, on
    /// `max.compaction.lag.ms`, so its records become cleanable), fsync on `flush.ms`.
    pub fn tick(&mut self, now_ms: i64) -> Result<(), StorageError> {
        let active = self.active();
        let roll_after = if self.config.cleanup_compact {
            self.config
                .segment_ms
                .min(self.config.max_compaction_lag_ms)
        } else {
            self.config.segment_ms
        };
        if !active.is_empty()
            && active
                .roll_clock_ms
                .is_some_and(|t| now_ms.saturating_sub(t) > roll_after)
        {
            self.roll()?;
        }
        if self
            .first_unflushed_ms
            .is_some_and(|t| now_ms.saturating_sub(t) >= self.config.flush_ms)
        {
            self.flush()?;
        }
        if now_ms.saturating_sub(self.producers_checked_ms)
            >= self.config.producer_id_expiration_check_interval_ms
        {
            self.producers_checked_ms = now_ms;
            let n = self
                .producers
                .expire(now_ms, self.config.producer_id_expiration_ms);
            if n > 0 {
                tracing::debug!(dir = %self.dir.display(), expired = n, "idle producer ids expired");
            }
        }
        Ok(())
    }

    /// fsyncs the active segment, its indexes and the directory.
    pub fn flush(&mut self) -> Result<(), StorageError> {
        for f in self.pending_sync.drain(..) {
            f.sync_data()?;
        }
        self.active().sync()?;
        sync_dir(&self.dir)?;
        self.recovery_point = self.recovery_point.max(self.log_end_offset());
        self.unflushed_messages = 0;
        self.first_unflushed_ms = None;
        Ok(())
    }

    /// Clean shutdown: seal + fsync, snapshot producer state, write the clean-shutdown marker.
    pub fn close(mut self) -> Result<(), StorageError> {
        self.active_mut().seal()?;
        let leo = self.log_end_offset();
        self.write_producer_snapshot(leo)?;
        self.flush()?;
        let f = fs::File::create(self.dir.join(CLEAN_SHUTDOWN))?;
        f.sync_all()?;
        sync_dir(&self.dir)?;
        Ok(())
    }

    /// Takes the files of rolled segments that still need an fsync, so the caller can sync them
    /// without holding this log (see the `pending_sync` field).
    pub fn take_pending_syncs(&mut self) -> Vec<fs::File> {
        std::mem::take(&mut self.pending_sync)
    }

    /// [`Self::take_pending_syncs`], with the offset below which everything is durable once
    /// the files are synced (report it with [`Self::mark_flushed`]).
    pub fn take_pending_syncs_through(&mut self) -> (Vec<fs::File>, i64) {
        (
            std::mem::take(&mut self.pending_sync),
            self.pending_sync_through,
        )
    }

    /// Everything below `offset` has been synced.
    pub fn mark_flushed(&mut self, offset: i64) {
        self.recovery_point = self.recovery_point.max(offset.min(self.log_end_offset()));
    }

    /// The offset below which everything is known to be on disk.
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }

    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Bytes of all segment log files.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of segments (for tests and metrics).
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Base offsets of the segments, ascending.
    pub fn segment_base_offsets(&self) -> Vec<i64> {
        self.segments.iter().map(|s| s.base_offset).collect()
    }

    #[cfg(test)]
    pub(crate) fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// A new leader records its epoch as starting at the log end before it appends anything
    /// (Kafka's `maybeAssignEpochStartOffset`), so that followers asking where the previous
    /// epoch ends get the offset where this one began. A no-op unless `epoch` is above the
    /// latest epoch.
    pub fn start_leader_epoch(&mut self, epoch: i32) -> Result<(), StorageError> {
        let leo = self.log_end_offset();
        self.assign_epoch(epoch, leo)
    }

    /// The latest leader epoch in the log's epoch cache, `-1` when it has none.
    pub fn latest_epoch(&self) -> i32 {
        self.epochs.latest_epoch()
    }

    /// The leader epoch cache: `(epoch, start offset)` pairs, ascending (KIP-101).
    pub fn epoch_entries(&self) -> Vec<(i32, i64)> {
        self.epochs.entries().to_vec()
    }

    /// OffsetForLeaderEpoch (Kafka's `LeaderEpochFileCache.endOffsetFor`): `(epoch, end offset)`
    /// for the largest epoch `<= requested` known here; the latest epoch ends at the log end
    /// offset; `(-1, -1)` when `requested` is above the latest epoch or the cache is empty; for a
    /// `requested` below the first epoch, `(requested, start offset of the first epoch)`.
    pub fn end_offset_for_epoch(&self, requested: i32) -> (i32, i64) {
        self.epochs.end_offset_for(requested, self.log_end_offset())
    }

    /// Appends record batches fetched from the leader exactly as they are (offsets, leader
    /// epochs and timestamps untouched): each must be valid (CRC32C) and start at the log end.
    /// Updates the idempotent-producer state and the epoch cache from the batches. Returns the
    /// first and last offset appended, `None` for empty input.
    ///
    /// All batches are checked before any is written, so a refused call leaves the log
    /// unchanged. A base offset below the log end (or below the previous batch's end) is
    /// `OffsetMismatch`; a base offset above it is accepted: a compacted leader log has gaps
    /// where the cleaner removed records, and empty batches (headers the cleaner kept), as
    /// Kafka's followers accept. `max.message.bytes` is not applied: the leader already
    /// accepted the batch (possibly under another config), and a follower that refused it
    /// could never catch up; this is Kafka's `appendAsFollower` (`ignoreRecordSize`).
    pub fn append_replicated(
        &mut self,
        batches: &[u8],
        now_ms: i64,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        if batches.is_empty() {
            return Ok(None);
        }
        let mut parsed = Vec::new();
        let mut expected = self.log_end_offset();
        for r in batch::split_batches(batches) {
            let (_, range) = r?;
            let bytes = &batches[range];
            // Compacted batches (records missing, empty headers) are valid here.
            let h = cleaner::validate_stored_batch(bytes)?;
            if h.base_offset < expected {
                return Err(StorageError::OffsetMismatch {
                    expected,
                    got: h.base_offset,
                });
            }
            expected = h.last_offset().saturating_add(1);
            parsed.push((h, bytes));
        }
        let Some(first) = parsed.first().map(|(h, _)| h.base_offset) else {
            return Ok(None);
        };
        let interval = self.config.index_interval_bytes;
        for (h, bytes) in parsed {
            self.maybe_roll(bytes.len(), h.last_offset(), now_ms)?;
            self.assign_epoch(h.partition_leader_epoch, h.base_offset)?;
            self.active_mut().append(&h, bytes, interval, now_ms)?;
            let marker = replicated_marker(&h, bytes);
            let completed = self.producers.update(&h, marker.as_ref(), now_ms);
            self.index_completed(completed)?;
            self.count_unflushed(h.records_count, now_ms)?;
        }
        Ok(Some((first, self.log_end_offset() - 1)))
    }

    /// Removes every record at and above `offset` (whole batches: a batch containing `offset`
    /// goes too), the epoch cache entries starting there, and rebuilds the producer state. A
    /// no-op when `offset >= log_end_offset`; refused below the log start offset.
    ///
    /// The truncated segment is fsynced, so a machine crash cannot bring the removed records
    /// back under later appends. If the removed batch straddled the log start offset (raised
    /// into the middle of a batch by DeleteRecords), the log start offset moves down to the new,
    /// empty, log end.
    pub fn truncate_to(&mut self, offset: i64) -> Result<(), StorageError> {
        let log_end = self.log_end_offset();
        if offset >= log_end {
            return Ok(());
        }
        if offset < self.log_start_offset {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start: self.log_start_offset,
                log_end,
            });
        }
        let i = self.segment_index_for(offset);
        let new_end = match self.segments[i].find(offset)? {
            Some((_, h)) => h.base_offset.min(offset),
            None => offset,
        };
        tracing::info!(dir = %self.dir.display(), offset, new_end, "truncating log");
        // Newest first, so a crash in between leaves a prefix of the log.
        while self.segments.len() > 1 && self.active().base_offset >= new_end {
            if let Some(seg) = self.segments.pop() {
                seg.delete(&self.dir)?;
            }
        }
        // The segment holding `new_end` (at worst the first one, emptied: `new_end` is never
        // below the first base offset).
        let interval = self.config.index_interval_bytes;
        self.active_mut().truncate_to(new_end, interval)?;
        sync_dir(&self.dir)?;
        let new_end = self.log_end_offset();
        self.recovery_point = self.recovery_point.min(new_end);
        self.pending_sync_through = self.pending_sync_through.min(new_end);
        if self.epochs.truncate_from_end(new_end) {
            self.persist_epochs()?;
        }
        if new_end < self.log_start_offset {
            self.log_start_offset = new_end;
            write_log_start(&self.dir, new_end)?;
        }
        if self.first_dirty > new_end {
            self.set_first_dirty(new_end)?;
        }
        // Drops the snapshots above the new end and replays from the newest one left (which
        // reopens the transactions whose markers were removed).
        self.load_producer_state(None)
    }

    /// Deletes the whole log and restarts it empty at `offset` (a follower whose fetch offset
    /// fell below the leader's log start offset).
    ///
    /// The steps are ordered so that a crash at any point leaves a consistent log: producer
    /// snapshots go first (without them state is replayed from the log), segments newest first
    /// (a prefix of the log remains), then the epoch cache, and the empty segment and log
    /// start offset last (a log without segments opens empty).
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<(), StorageError> {
        if offset < 0 {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start: self.log_start_offset,
                log_end: self.log_end_offset(),
            });
        }
        tracing::info!(dir = %self.dir.display(), offset, "truncating the whole log");
        for s in producer::list_snapshots(&self.dir)? {
            producer::delete_snapshot(&self.dir, s)?;
        }
        self.producers = ProducerState::default();
        while self.segments.len() > 1 {
            if let Some(seg) = self.segments.pop() {
                seg.delete(&self.dir)?;
            }
        }
        // The last segment's files go while it stays in place, so the log is never without a
        // segment even if creating the new one fails.
        self.segments[0].remove_files(&self.dir)?;
        sync_dir(&self.dir)?;
        self.epochs.clear();
        self.persist_epochs()?;
        self.segments[0] = Segment::create(&self.dir, offset)?;
        sync_dir(&self.dir)?;
        self.recovery_point = offset;
        self.pending_sync_through = offset;
        self.log_start_offset = offset;
        write_log_start(&self.dir, offset)?;
        self.set_first_dirty(offset)?;
        Ok(())
    }

    /// Number of idempotent producers with state (for tests and metrics).
    pub fn producer_count(&self) -> usize {
        self.producers.len()
    }

    /// The first offset of the oldest transaction that is open on this partition or completed
    /// with a marker at or above `high_watermark` (Kafka's first unstable offset), at least the
    /// log start offset; `None` when there is none.
    pub fn first_unstable_offset(&self, high_watermark: i64) -> Option<i64> {
        self.producers
            .first_unstable_offset(high_watermark)
            .map(|o| o.max(self.log_start_offset))
    }

    /// The last stable offset given the partition's `high_watermark`: the first unstable
    /// offset if it is below the high watermark, else the high watermark. Records below it
    /// belong to no open transaction and to no transaction whose marker is not yet below the
    /// high watermark; `read_committed` fetches read up to it.
    pub fn last_stable_offset(&self, high_watermark: i64) -> i64 {
        match self.first_unstable_offset(high_watermark) {
            Some(o) if o < high_watermark => o,
            _ => high_watermark,
        }
    }

    /// Tells the producer state that the high watermark is now `high_watermark`: completed
    /// transactions whose marker is below it are forgotten. [`last_stable_offset`](Self::last_stable_offset)
    /// is right without this call (it takes the high watermark); the call keeps the set of
    /// completed transactions small. Call it whenever the high watermark moves.
    pub fn on_high_watermark(&mut self, high_watermark: i64) {
        self.producers.on_high_watermark(high_watermark);
    }

    /// The open transactions as (producer id, first offset), oldest first.
    pub fn ongoing_transactions(&self) -> Vec<(i64, i64)> {
        self.producers.ongoing_transactions()
    }

    /// The aborted transactions a `read_committed` fetch from `fetch_offset` needs, as
    /// (producer id, first offset), in marker order: the entries of the aborted-transaction
    /// indexes, from the segment holding `fetch_offset` onward, whose marker is at or above
    /// `fetch_offset` and whose first offset is below `upper_bound_offset` (the offset just
    /// after the fetched records). The scan stops after the first entry whose last stable
    /// offset is at or above `upper_bound_offset`: no later abort can concern the fetched
    /// records.
    pub fn aborted_transactions(
        &self,
        fetch_offset: i64,
        upper_bound_offset: i64,
    ) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        let first = self.segment_index_for(fetch_offset);
        for seg in &self.segments[first..] {
            for t in seg.aborted_txns() {
                if t.last_offset >= fetch_offset && t.first_offset < upper_bound_offset {
                    out.push((t.producer_id, t.first_offset));
                }
                if t.last_stable_offset >= upper_bound_offset {
                    return out;
                }
            }
        }
        out
    }

    /// The state of every producer known to this partition (DescribeProducers), by producer
    /// id.
    pub fn active_producers(&self) -> Vec<ActiveProducer> {
        let mut out: Vec<ActiveProducer> = self
            .producers
            .entries()
            .map(|(pid, e)| ActiveProducer {
                producer_id: pid,
                producer_epoch: e.epoch,
                last_sequence: e.batches.back().map_or(-1, |b| b.last_seq),
                last_timestamp: e.batches.back().map_or(-1, |b| b.timestamp),
                coordinator_epoch: e.coordinator_epoch,
                current_txn_start_offset: e.current_txn_first_offset.unwrap_or(-1),
            })
            .collect();
        out.sort_by_key(|p| p.producer_id);
        out
    }

    /// The cleaner's first dirty offset: records below it have been compacted.
    pub fn first_dirty_offset(&self) -> i64 {
        self.first_dirty
    }

    fn set_first_dirty(&mut self, offset: i64) -> Result<(), StorageError> {
        self.first_dirty = offset;
        self.write_cleaner_checkpoint()
    }

    fn write_cleaner_checkpoint(&self) -> Result<(), StorageError> {
        write_text_file(
            &self.dir,
            cleaner::CHECKPOINT_FILE,
            &cleaner::checkpoint_text(self.first_dirty, self.tombstone_expiry),
        )
    }

    /// Number of leading segments the cleaner may rewrite: never the active segment, none
    /// ending above the last stable offset for the high watermark `upper_bound` (so none
    /// holding part of an open transaction), none holding a record newer than
    /// `min.compaction.lag.ms`.
    fn cleanable_segments(&self, upper_bound: i64, now_ms: i64) -> usize {
        let upper_bound = self.last_stable_offset(upper_bound);
        let lag = self.config.min_compaction_lag_ms;
        let mut end = 0;
        while end + 1 < self.segments.len() {
            let s = &self.segments[end];
            if s.next_offset > upper_bound {
                break;
            }
            if lag > 0 {
                let newest = if s.max_timestamp >= 0 {
                    s.max_timestamp
                } else {
                    s.modified_ms()
                };
                if now_ms.saturating_sub(newest) < lag {
                    break;
                }
            }
            end += 1;
        }
        end
    }

    /// How dirty this log is, for a compacted log (`None` unless `cleanup.policy` has
    /// `compact`). `upper_bound` is the offset nothing at or above may be cleaned (the
    /// broker passes the high watermark: a replica may still truncate above it); the log
    /// lowers it to the last stable offset for that high watermark itself, so that nothing of
    /// an undecided transaction is cleaned (callers may pass the last stable offset as well).
    pub fn cleanable(&self, upper_bound: i64, now_ms: i64) -> Option<Cleanable> {
        if !self.config.cleanup_compact {
            return None;
        }
        let end = self.cleanable_segments(upper_bound, now_ms);
        let first_dirty = self.first_dirty.max(self.segments[0].base_offset);
        let mut clean_bytes = 0;
        let mut dirty_bytes = 0;
        let mut first_dirty_seg = None;
        for s in &self.segments[..end] {
            if s.next_offset <= first_dirty {
                clean_bytes += s.size;
            } else {
                dirty_bytes += s.size;
                first_dirty_seg.get_or_insert(s);
            }
        }
        let total = clean_bytes + dirty_bytes;
        let dirty_ratio = if total == 0 {
            0.0
        } else {
            dirty_bytes as f64 / total as f64
        };
        let max_lag = self.config.max_compaction_lag_ms;
        let max_lag_exceeded = max_lag < i64::MAX
            && first_dirty_seg.is_some_and(|s| {
                let oldest = match s.find(first_dirty) {
                    Ok(Some((_, h))) if h.is_log_append_time() => h.max_timestamp,
                    Ok(Some((_, h))) => h.base_timestamp,
                    _ => -1,
                };
                oldest >= 0 && now_ms.saturating_sub(oldest) > max_lag
            });
        let tombstones_expired = end > 0 && self.tombstone_expiry.is_some_and(|t| now_ms > t);
        Some(Cleanable {
            first_dirty_offset: first_dirty,
            first_uncleanable_offset: self.segments[end].base_offset,
            clean_bytes,
            dirty_bytes,
            dirty_ratio,
            max_lag_exceeded,
            tombstones_expired,
            needs_cleaning: tombstones_expired
                || (dirty_bytes > 0
                    && (dirty_ratio >= self.config.min_cleanable_dirty_ratio || max_lag_exceeded)),
        })
    }

    /// Starts a clean of a compacted log (see [`cleaner`](crate::cleaner)): `None` when the
    /// log is not compacted or has no dirty cleanable segment. Cheap: takes duplicate handles
    /// of the cleanable segments; the returned task's [`CleanTask::run`] does the file work
    /// without this log, and [`finish_clean`](Self::finish_clean) swaps the result in. The
    /// key map is bounded by `max_map_bytes` (`log.cleaner.dedupe.buffer.size` per thread).
    /// Does not look at `min.cleanable.dirty.ratio`: [`cleanable`](Self::cleanable) does.
    /// Without dirty segments it still cleans when a kept tombstone has expired (the whole
    /// cleanable section, with an empty key map).
    pub fn prepare_clean(
        &self,
        upper_bound: i64,
        now_ms: i64,
        max_map_bytes: usize,
    ) -> Result<Option<CleanTask>, StorageError> {
        if !self.config.cleanup_compact {
            return Ok(None);
        }
        let end = self.cleanable_segments(upper_bound, now_ms);
        let first_dirty = self.first_dirty.max(self.segments[0].base_offset);
        let dirty = self.segments[..end]
            .iter()
            .any(|s| s.next_offset > first_dirty);
        let expired = self.tombstone_expiry.is_some_and(|t| now_ms > t);
        if end == 0 || !(dirty || expired) {
            return Ok(None);
        }
        let segments = self.segments[..end]
            .iter()
            .map(|s| {
                Ok(SegmentView {
                    base: s.base_offset,
                    size: s.size,
                    next_offset: s.next_offset,
                    modified_ms: s.modified_ms(),
                    file: s.log_handle()?,
                })
            })
            .collect::<Result<Vec<_>, StorageError>>()?;
        Ok(Some(CleanTask {
            dir: self.dir.clone(),
            config: self.config.clone(),
            segments,
            first_dirty,
            producer_last_batches: self.producers.last_batch_offsets(),
            marker_only_epochs: self.producers.marker_only_epochs(),
            aborted: {
                let end_offset = self.segments[end].base_offset;
                self.segments
                    .iter()
                    .flat_map(|s| s.aborted_txns().iter().copied())
                    .filter(|t| t.first_offset < end_offset)
                    .collect()
            },
            now_ms,
            max_map_bytes,
        }))
    }

    /// Swaps the segments a [`CleanTask`] wrote in for the ones it read, crash-safely (see
    /// [`cleaner`](crate::cleaner)), and advances the first dirty offset. `Ok(None)` when the
    /// log changed under the clean (retention, DeleteRecords, truncation): the cleaned files
    /// are deleted and nothing changes. Cheap: renames and deletes files.
    pub fn finish_clean(
        &mut self,
        cleaned: CleanedLog,
    ) -> Result<Option<CleanStats>, StorageError> {
        let stats = cleaned.stats;
        let n = self.segments.len();
        let unchanged = cleaned.groups.iter().all(|g| {
            let Some(i) = self
                .segments
                .iter()
                .position(|s| s.base_offset == g.old[0].0)
            else {
                return false;
            };
            i + g.old.len() < n
                && g.old.iter().enumerate().all(|(k, &(base, size, next))| {
                    let s = &self.segments[i + k];
                    s.base_offset == base && s.size == size && s.next_offset == next
                })
        });
        if !unchanged || cleaned.dir != self.dir {
            tracing::info!(dir = %self.dir.display(), "log changed during a clean; discarding the cleaned segments");
            cleaned.discard();
            return Ok(None);
        }
        #[cfg(test)]
        let crash_at = self.swap_crash_at.take();
        #[cfg(not(test))]
        let crash_at = None;
        let CleanedLog { dir, groups, .. } = cleaned;
        let mut groups = groups.into_iter();
        while let Some(g) = groups.next() {
            let base = g.old[0].0;
            let replaced: Vec<i64> = g.old.iter().map(|o| o.0).collect();
            if let Err(e) = cleaner::swap_files(&dir, base, &replaced, crash_at) {
                CleanedLog {
                    dir: dir.clone(),
                    groups: groups.collect(),
                    stats,
                }
                .discard();
                return Err(e);
            }
            let i = self
                .segments
                .iter()
                .position(|s| s.base_offset == base)
                .unwrap_or(0);
            // The replaced segments' files are gone (or renamed over); dropping them closes
            // their handles.
            drop(
                self.segments
                    .splice(i..i + replaced.len(), std::iter::once(g.seg))
                    .collect::<Vec<_>>(),
            );
        }
        self.first_dirty = self.first_dirty.max(stats.end_offset);
        self.tombstone_expiry = stats.next_tombstone_expiry;
        self.write_cleaner_checkpoint()?;
        Ok(Some(stats))
    }
}

/// The aborted-transaction index entry of a completed transaction, if it was aborted.
fn aborted_entry(c: &CompletedTxn) -> Option<AbortedTxn> {
    c.aborted.then_some(AbortedTxn {
        producer_id: c.producer_id,
        first_offset: c.first_offset,
        last_offset: c.last_offset,
        last_stable_offset: c.last_stable_offset,
    })
}

/// The marker of a replicated control batch; `None` (logged) when it has none readable. A
/// follower stores what its leader stored, so an unreadable control batch is kept, and closes
/// no transaction.
fn replicated_marker(h: &BatchHeader, bytes: &[u8]) -> Option<EndTxnMarker> {
    if !h.is_control() || h.records_count == 0 || h.producer_id < 0 {
        return None;
    }
    match batch::parse_end_txn_marker(bytes) {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!(offset = h.base_offset, error = %e, "replicated control batch without a readable marker");
            None
        }
    }
}

/// First record in `bytes` (one batch) with offset >= `min_offset` and timestamp >= `ts`.
fn first_record_at_or_after(
    bytes: &[u8],
    h: &BatchHeader,
    ts: i64,
    min_offset: i64,
) -> Option<(i64, i64)> {
    if h.is_log_append_time() {
        let off = h.base_offset.max(min_offset);
        return (h.max_timestamp >= ts && off <= h.last_offset()).then_some((off, h.max_timestamp));
    }
    if h.compression() == 0 {
        for rec in batch::records(bytes) {
            let rec = rec.ok()?;
            let off = h.base_offset.wrapping_add(i64::from(rec.offset_delta));
            let rts = h.base_timestamp.wrapping_add(rec.timestamp_delta);
            if off >= min_offset && rts >= ts {
                return Some((off, rts));
            }
        }
        return None;
    }
    // A compressed batch is read as a stream: a batch that decompresses to gigabytes costs
    // the decoder's window, not its size.
    let mut found = None;
    record_stream::scan_records(bytes, h, |r| {
        let off = h.base_offset.wrapping_add(i64::from(r.offset_delta));
        let rts = h.base_timestamp.wrapping_add(r.timestamp_delta);
        if off >= min_offset && rts >= ts {
            found = Some((off, rts));
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    })
    .ok()?;
    found
}

fn read_log_start(dir: &Path) -> Option<i64> {
    let s = fs::read_to_string(dir.join(LOG_START_FILE)).ok()?;
    s.trim().parse().ok()
}

fn write_log_start(dir: &Path, offset: i64) -> Result<(), StorageError> {
    write_text_file(dir, LOG_START_FILE, &format!("{offset}\n"))
}

/// Replaces `dir/name` with `text` via tmp + fsync + rename + directory fsync.
fn write_text_file(dir: &Path, name: &str, text: &str) -> Result<(), StorageError> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    fs::rename(&tmp, &path)?;
    sync_dir(dir)?;
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    fs::File::open(dir)?.sync_all()?;
    Ok(())
}
