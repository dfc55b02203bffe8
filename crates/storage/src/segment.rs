//! One log segment: a `.log` file of batches plus in-memory copies of its sparse indexes, which
//! are mirrored to `.index` / `.timeindex` files, and of its aborted-transaction index
//! (`.txnindex`, see [`crate::txn_index`]).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use runnel_protocol::batch::{self, BatchHeader, EndTxnMarker, BATCH_HEADER_LEN};

use crate::txn_index::{AbortedTxn, TxnIndex};
use crate::{file_path, StorageError};

const INDEX_ENTRY: u64 = 8;
const TIME_ENTRY: u64 = 12;
/// Largest control batch whose marker is read when replaying the log (a marker is 78 bytes);
/// a larger one is treated as unreadable.
const MAX_CONTROL_BATCH: usize = 64 << 10;

pub(crate) struct Segment {
    pub base_offset: i64,
    log: File,
    index_file: File,
    time_file: File,
    /// Transactions aborted by markers in this segment.
    txn_index: TxnIndex,
    /// Bytes of valid batches in the log file.
    pub size: u64,
    /// Offset after the last batch (= base offset when empty).
    pub next_offset: i64,
    /// (relative offset of a batch's base offset, file position of that batch).
    index: Vec<(u32, u32)>,
    index_persisted: usize,
    /// (max timestamp so far, relative offset of the batch that first reached it).
    time_index: Vec<(i64, u32)>,
    time_persisted: usize,
    /// Largest batch max timestamp in the segment, -1 if none.
    pub max_timestamp: i64,
    /// Base offset of the batch holding `max_timestamp`.
    pub max_timestamp_batch: i64,
    bytes_since_index: u64,
    /// Wall-clock time the `segment.ms` clock started (first append, or open).
    pub roll_clock_ms: Option<i64>,
    /// Set when opening with recovery cut the file at an invalid batch.
    pub truncated_in_recovery: bool,
}

/// Result of parsing a batch in the log, with its position.
struct Scanned {
    header: BatchHeader,
    pos: u64,
}

impl Segment {
    pub fn create(dir: &Path, base_offset: i64) -> Result<Segment, StorageError> {
        Segment::create_with_suffix(dir, base_offset, "")
    }

    /// Creates an empty segment whose files carry `suffix` after their extension
    /// (`<base>.log.cleaned`, ...): the cleaner writes a segment under temporary names and
    /// renames the files into place later; the open handles stay valid across the renames.
    pub fn create_with_suffix(
        dir: &Path,
        base_offset: i64,
        suffix: &str,
    ) -> Result<Segment, StorageError> {
        let open = |ext: &str| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(suffixed_path(dir, base_offset, ext, suffix))
        };
        Ok(Segment {
            base_offset,
            log: open("log")?,
            index_file: open("index")?,
            time_file: open("timeindex")?,
            txn_index: TxnIndex::create(dir, base_offset, suffix)?,
            size: 0,
            next_offset: base_offset,
            index: Vec::new(),
            index_persisted: 0,
            time_index: Vec::new(),
            time_persisted: 0,
            max_timestamp: -1,
            max_timestamp_batch: base_offset,
            bytes_since_index: 0,
            roll_clock_ms: None,
            truncated_in_recovery: false,
        })
    }

    /// Opens an existing segment. With `recover`, every batch is validated (length, CRC,
    /// contiguous offsets) and the file is truncated at the first bad one; otherwise the indexes
    /// are loaded and only the tail after the last index entry is checked, falling back to full
    /// recovery if anything looks wrong.
    pub fn open(
        dir: &Path,
        base_offset: i64,
        recover: bool,
        index_interval: u64,
        now_ms: i64,
    ) -> Result<Segment, StorageError> {
        let open = |ext: &str| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(file_path(dir, base_offset, ext))
        };
        let log = open("log")?;
        let size = log.metadata()?.len();
        let mut seg = Segment {
            base_offset,
            log,
            index_file: open("index")?,
            time_file: open("timeindex")?,
            // Loaded below, once the segment's end is known.
            txn_index: TxnIndex::detached(),
            size,
            next_offset: base_offset,
            index: Vec::new(),
            index_persisted: 0,
            time_index: Vec::new(),
            time_persisted: 0,
            max_timestamp: -1,
            max_timestamp_batch: base_offset,
            bytes_since_index: 0,
            roll_clock_ms: if size > 0 { Some(now_ms) } else { None },
            truncated_in_recovery: false,
        };
        if recover || !seg.try_load_indexes(index_interval)? {
            seg.recover(index_interval)?;
        }
        seg.txn_index = TxnIndex::open(dir, base_offset, seg.next_offset)?;
        Ok(seg)
    }

    /// Loads the index files and scans the tail after the last entry; returns false when the
    /// segment needs full recovery.
    fn try_load_indexes(&mut self, index_interval: u64) -> Result<bool, StorageError> {
        let idx_bytes = read_all(&self.index_file)?;
        let time_bytes = read_all(&self.time_file)?;
        if idx_bytes.len() % INDEX_ENTRY as usize != 0
            || time_bytes.len() % TIME_ENTRY as usize != 0
        {
            return Ok(false);
        }
        let index: Vec<(u32, u32)> = idx_bytes
            .chunks_exact(8)
            .map(|c| {
                (
                    u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                    u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
                )
            })
            .collect();
        let time_index: Vec<(i64, u32)> = time_bytes
            .chunks_exact(12)
            .map(|c| {
                let mut ts = [0u8; 8];
                ts.copy_from_slice(&c[..8]);
                (
                    i64::from_be_bytes(ts),
                    u32::from_be_bytes([c[8], c[9], c[10], c[11]]),
                )
            })
            .collect();
        let index_ok = index.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1)
            && index.last().is_none_or(|e| u64::from(e.1) < self.size);
        let time_ok = time_index
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1);
        if !index_ok || !time_ok {
            return Ok(false);
        }
        let (start_rel, start_pos) = index.last().copied().unwrap_or((0, 0));
        self.index_persisted = index.len();
        self.index = index;
        if let Some(&(ts, rel)) = time_index.last() {
            self.max_timestamp = ts;
            self.max_timestamp_batch = self.base_offset + i64::from(rel);
        }
        self.time_persisted = time_index.len();
        self.time_index = time_index;
        // Walk headers from the last indexed batch to the end of the file.
        let mut pos = u64::from(start_pos);
        let mut expected = self.base_offset + i64::from(start_rel);
        let mut first = true;
        while pos < self.size {
            let h = match self.read_header_at(pos)? {
                Some(h) => h,
                None => return Ok(false),
            };
            let end = pos + h.total_size() as u64;
            // An indexed batch starts exactly at its entry; after it (or from the segment base
            // when nothing is indexed) offsets may skip (compaction removed records) but never
            // go back. Empty batches are headers the cleaner kept (see `cleaner`).
            let exact = first && start_pos > 0;
            if end > self.size
                || (exact && h.base_offset != expected)
                || h.base_offset < expected
                || h.records_count < 0
                || h.last_offset_delta < 0
            {
                return Ok(false);
            }
            first = false;
            if h.max_timestamp > self.max_timestamp {
                self.max_timestamp = h.max_timestamp;
                self.max_timestamp_batch = h.base_offset;
            }
            expected = h.last_offset().saturating_add(1);
            self.bytes_since_index += h.total_size() as u64;
            pos = end;
        }
        // A large segment without index entries (lost or emptied index file) would make every
        // lookup a linear scan: rebuild instead.
        if self.index.is_empty() && self.size > index_interval.saturating_mul(2) {
            return Ok(false);
        }
        if time_index_last_rel(&self.time_index)
            .is_some_and(|rel| self.base_offset + i64::from(rel) >= expected)
        {
            return Ok(false);
        }
        self.next_offset = expected;
        Ok(true)
    }

    /// Full validation scan: truncate at the first invalid batch, rebuild both indexes.
    fn recover(&mut self, index_interval: u64) -> Result<(), StorageError> {
        let file_len = self.log.metadata()?.len();
        self.index.clear();
        self.time_index.clear();
        self.index_persisted = 0;
        self.time_persisted = 0;
        self.max_timestamp = -1;
        self.max_timestamp_batch = self.base_offset;
        self.bytes_since_index = 0;
        self.next_offset = self.base_offset;
        self.size = 0;
        let mut buf = Vec::new();
        let mut pos = 0u64;
        while pos < file_len {
            let h = match self.read_header_at_limit(pos, file_len)? {
                Some(h) => h,
                None => break,
            };
            let len = h.total_size() as u64;
            // Offsets may skip forward (a compacted segment) but never go back.
            if pos + len > file_len || h.base_offset < self.next_offset || h.last_offset_delta < 0 {
                break;
            }
            buf.resize(len as usize, 0);
            self.log.read_exact_at(&mut buf, pos)?;
            if crate::cleaner::validate_stored_batch(&buf).is_err() {
                break;
            }
            self.track(&Scanned { header: h, pos }, index_interval);
            self.size = pos + len;
            self.next_offset = h.last_offset().saturating_add(1);
            pos += len;
        }
        if self.size < file_len {
            tracing::warn!(
                segment = self.base_offset,
                valid = self.size,
                file_len,
                "truncating log segment at first invalid batch"
            );
            self.log.set_len(self.size)?;
            self.truncated_in_recovery = true;
        }
        self.index_file.set_len(0)?;
        self.time_file.set_len(0)?;
        self.persist_indexes()?;
        Ok(())
    }

    /// Updates the in-memory indexes for a batch written at `pos` (not yet counted in `size`).
    fn track(&mut self, s: &Scanned, index_interval: u64) {
        let h = &s.header;
        let rel = (h.base_offset - self.base_offset) as u32;
        let mut indexed = false;
        if self.bytes_since_index >= index_interval && s.pos > 0 {
            self.index.push((rel, s.pos as u32));
            self.bytes_since_index = 0;
            indexed = true;
        }
        self.bytes_since_index += h.total_size() as u64;
        if h.max_timestamp > self.max_timestamp {
            self.max_timestamp = h.max_timestamp;
            self.max_timestamp_batch = h.base_offset;
        }
        if indexed {
            self.push_time_entry();
        }
    }

    fn push_time_entry(&mut self) {
        if self.max_timestamp >= 0
            && self
                .time_index
                .last()
                .is_none_or(|e| e.0 < self.max_timestamp)
        {
            let rel = (self.max_timestamp_batch - self.base_offset) as u32;
            self.time_index.push((self.max_timestamp, rel));
        }
    }

    fn persist_indexes(&mut self) -> io::Result<()> {
        if self.index_persisted < self.index.len() {
            let mut out = Vec::with_capacity((self.index.len() - self.index_persisted) * 8);
            for (rel, pos) in &self.index[self.index_persisted..] {
                out.extend_from_slice(&rel.to_be_bytes());
                out.extend_from_slice(&pos.to_be_bytes());
            }
            self.index_file
                .write_all_at(&out, self.index_persisted as u64 * INDEX_ENTRY)?;
            self.index_persisted = self.index.len();
        }
        if self.time_persisted < self.time_index.len() {
            let mut out = Vec::with_capacity((self.time_index.len() - self.time_persisted) * 12);
            for (ts, rel) in &self.time_index[self.time_persisted..] {
                out.extend_from_slice(&ts.to_be_bytes());
                out.extend_from_slice(&rel.to_be_bytes());
            }
            self.time_file
                .write_all_at(&out, self.time_persisted as u64 * TIME_ENTRY)?;
            self.time_persisted = self.time_index.len();
        }
        Ok(())
    }

    /// Appends one already validated and patched batch.
    pub fn append(
        &mut self,
        header: &BatchHeader,
        bytes: &[u8],
        index_interval: u64,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let pos = self.size;
        if let Err(e) = self.log.write_all_at(bytes, pos) {
            // Drop a partial write so the file never holds bytes past `size`.
            let _ = self.log.set_len(pos);
            return Err(e.into());
        }
        self.track(
            &Scanned {
                header: *header,
                pos,
            },
            index_interval,
        );
        self.size += bytes.len() as u64;
        self.next_offset = header.last_offset().saturating_add(1);
        if self.roll_clock_ms.is_none() {
            self.roll_clock_ms = Some(now_ms);
        }
        self.persist_indexes()?;
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Whether appending `len` bytes ending at `last_offset` requires a new segment first.
    pub fn needs_roll(
        &self,
        len: u64,
        last_offset: i64,
        segment_bytes: u64,
        segment_index_bytes: u64,
    ) -> bool {
        if self.is_empty() {
            return false;
        }
        self.size + len > segment_bytes
            || self.size + len > u64::from(u32::MAX)
            || (self.index.len() as u64 + 1) * INDEX_ENTRY > segment_index_bytes
            || (self.time_index.len() as u64 + 1) * TIME_ENTRY > segment_index_bytes
            || last_offset - self.base_offset > i64::from(i32::MAX)
    }

    /// Makes the segment inactive: records the final max timestamp in the time index, fsyncs.
    pub fn seal(&mut self) -> Result<(), StorageError> {
        self.finish()?;
        self.sync()
    }

    /// Writes the final time-index entry and the index files, without fsync: the segment is
    /// complete, and [`Segment::sync_handles`] lets the caller fsync it later, off the append path.
    pub fn finish(&mut self) -> Result<(), StorageError> {
        self.push_time_entry();
        Ok(self.persist_indexes()?)
    }

    /// Duplicated handles of the segment's files, for an fsync that must not hold the log.
    pub fn sync_handles(&self) -> Result<Vec<File>, StorageError> {
        let mut out = vec![
            self.log.try_clone()?,
            self.index_file.try_clone()?,
            self.time_file.try_clone()?,
        ];
        out.extend(self.txn_index.handle()?);
        Ok(out)
    }

    pub fn sync(&self) -> Result<(), StorageError> {
        self.log.sync_data()?;
        self.index_file.sync_data()?;
        self.time_file.sync_data()?;
        self.txn_index.sync()?;
        Ok(())
    }

    /// Transactions aborted by markers in this segment, in marker order.
    pub fn aborted_txns(&self) -> &[AbortedTxn] {
        self.txn_index.entries()
    }

    /// Records a transaction aborted by a marker in this segment.
    pub fn add_aborted_txn(&mut self, txn: AbortedTxn) -> Result<(), StorageError> {
        self.txn_index.append(txn)
    }

    /// Forgets the aborted transactions whose marker is at or above `offset`.
    pub fn truncate_aborted_txns(&mut self, offset: i64) -> Result<(), StorageError> {
        self.txn_index.truncate_from(offset)
    }

    fn read_header_at(&self, pos: u64) -> Result<Option<BatchHeader>, StorageError> {
        self.read_header_at_limit(pos, self.size)
    }

    /// Reads and parses the batch header at `pos`; `None` if fewer than a header's bytes remain
    /// or the header does not parse.
    fn read_header_at_limit(
        &self,
        pos: u64,
        limit: u64,
    ) -> Result<Option<BatchHeader>, StorageError> {
        if pos + BATCH_HEADER_LEN as u64 > limit {
            return Ok(None);
        }
        let mut hdr = [0u8; BATCH_HEADER_LEN];
        self.log.read_exact_at(&mut hdr, pos)?;
        Ok(batch::parse_header(&hdr).ok())
    }

    /// Header of the batch at `pos` that must exist (a trusted position), else CorruptRecord.
    pub fn header_at(&self, pos: u64) -> Result<Option<BatchHeader>, StorageError> {
        if pos >= self.size {
            return Ok(None);
        }
        match self.read_header_at(pos)? {
            Some(h) if pos + h.total_size() as u64 <= self.size => Ok(Some(h)),
            _ => Err(StorageError::CorruptRecord(format!(
                "unreadable batch at position {pos} of segment {}",
                self.base_offset
            ))),
        }
    }

    /// Position and header of the batch containing `offset` (or the first batch after it).
    pub fn find(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>, StorageError> {
        let rel = offset - self.base_offset;
        let i = self.index.partition_point(|e| i64::from(e.0) <= rel);
        let mut pos = if i == 0 {
            0
        } else {
            u64::from(self.index[i - 1].1)
        };
        while let Some(h) = self.header_at(pos)? {
            if h.last_offset() >= offset {
                return Ok(Some((pos, h)));
            }
            pos += h.total_size() as u64;
        }
        Ok(None)
    }

    /// Position from which to scan for the first batch with max timestamp >= `ts`.
    pub fn find_by_timestamp(&self, ts: i64) -> Result<Option<(u64, BatchHeader)>, StorageError> {
        // Every batch before an entry's offset has a max timestamp below the entry's timestamp,
        // so starting at the last entry with timestamp < ts skips nothing that could match.
        let i = self.time_index.partition_point(|e| e.0 < ts);
        let start = if i == 0 {
            self.base_offset
        } else {
            self.base_offset + i64::from(self.time_index[i - 1].1)
        };
        let mut cur = self.find(start)?;
        while let Some((pos, h)) = cur {
            if h.max_timestamp >= ts {
                return Ok(Some((pos, h)));
            }
            let next = pos + h.total_size() as u64;
            cur = self.header_at(next)?.map(|h| (next, h));
        }
        Ok(None)
    }

    pub fn read_at(&self, pos: u64, len: usize) -> Result<Vec<u8>, StorageError> {
        let mut buf = vec![0u8; len];
        self.log.read_exact_at(&mut buf, pos)?;
        Ok(buf)
    }

    /// Visits batch headers with base offset >= `from` in order.
    pub fn for_each_header(
        &self,
        from: i64,
        mut f: impl FnMut(&BatchHeader),
    ) -> Result<(), StorageError> {
        let mut cur = self.find(from)?;
        while let Some((pos, h)) = cur {
            if h.base_offset >= from {
                f(&h);
            }
            let next = pos + h.total_size() as u64;
            cur = self.header_at(next)?.map(|h| (next, h));
        }
        Ok(())
    }

    /// Visits the batches with base offset >= `from` in order, handing a control batch's
    /// end-transaction marker along with its header (`None` for data batches and for control
    /// batches without a readable marker: emptied by the cleaner, or damaged).
    pub fn for_each_producer_batch(
        &self,
        from: i64,
        mut f: impl FnMut(&BatchHeader, Option<&EndTxnMarker>),
    ) -> Result<(), StorageError> {
        let mut cur = self.find(from)?;
        while let Some((pos, h)) = cur {
            if h.base_offset >= from {
                let marker = if h.is_control() && h.records_count > 0 && h.producer_id >= 0 {
                    self.read_marker(pos, &h)?
                } else {
                    None
                };
                f(&h, marker.as_ref());
            }
            let next = pos + h.total_size() as u64;
            cur = self.header_at(next)?.map(|h| (next, h));
        }
        Ok(())
    }

    fn read_marker(&self, pos: u64, h: &BatchHeader) -> Result<Option<EndTxnMarker>, StorageError> {
        if h.total_size() > MAX_CONTROL_BATCH {
            tracing::warn!(
                segment = self.base_offset,
                offset = h.base_offset,
                size = h.total_size(),
                "control batch too large to be a marker; ignored"
            );
            return Ok(None);
        }
        let bytes = self.read_at(pos, h.total_size())?;
        match batch::parse_end_txn_marker(&bytes) {
            Ok(m) => Ok(Some(m)),
            Err(e) => {
                tracing::warn!(segment = self.base_offset, offset = h.base_offset, error = %e, "unreadable control batch; ignored");
                Ok(None)
            }
        }
    }

    /// Removes the batch containing `offset` and everything after it (log, both indexes and
    /// the aborted-transaction entries of removed markers, fsynced), returning the new next
    /// offset. A no-op when no batch ends at or after `offset`.
    pub fn truncate_to(&mut self, offset: i64, index_interval: u64) -> Result<i64, StorageError> {
        let Some((pos, h)) = self.find(offset)? else {
            return Ok(self.next_offset);
        };
        self.txn_index.truncate_from(h.base_offset)?;
        let rel_end = h.base_offset - self.base_offset;
        self.log.set_len(pos)?;
        self.size = pos;
        self.index.retain(|e| u64::from(e.1) < pos);
        self.time_index.retain(|e| i64::from(e.1) < rel_end);
        self.index_file
            .set_len(self.index.len() as u64 * INDEX_ENTRY)?;
        self.time_file
            .set_len(self.time_index.len() as u64 * TIME_ENTRY)?;
        self.index_persisted = self.index.len();
        self.time_persisted = self.time_index.len();
        // Rebuild the derived state (next offset, max timestamp, bytes since the last index
        // entry) from the kept indexes and the batches after the last kept entry.
        self.next_offset = self.base_offset;
        self.max_timestamp = -1;
        self.max_timestamp_batch = self.base_offset;
        self.bytes_since_index = 0;
        if !self.try_load_indexes(index_interval)? {
            self.recover(index_interval)?;
        }
        if self.size == 0 {
            self.roll_clock_ms = None;
        }
        self.sync()?;
        Ok(self.next_offset)
    }

    #[cfg(test)]
    pub fn index_len(&self) -> usize {
        self.index.len()
    }

    #[cfg(test)]
    pub fn time_index_entries(&self) -> &[(i64, u32)] {
        &self.time_index
    }

    #[cfg(test)]
    pub fn index_entries(&self) -> &[(u32, u32)] {
        &self.index
    }

    /// A duplicate handle of the `.log` file, for the cleaner's reads without the log's lock.
    pub fn log_handle(&self) -> Result<File, StorageError> {
        Ok(self.log.try_clone()?)
    }

    pub fn delete(self, dir: &Path) -> Result<(), StorageError> {
        self.remove_files(dir)
    }

    /// Unlinks the segment's files; the open handles stay usable until the segment is dropped.
    pub fn remove_files(&self, dir: &Path) -> Result<(), StorageError> {
        for ext in SEGMENT_FILES {
            match std::fs::remove_file(file_path(dir, self.base_offset, ext)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    pub fn modified_ms(&self) -> i64 {
        self.log
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as i64)
            .unwrap_or(-1)
    }
}

/// Extensions of a segment's files. The `.txnindex` exists only once the segment has had an
/// aborted transaction (or, for a cleaned segment, always).
pub(crate) const SEGMENT_FILES: [&str; 4] = ["log", "index", "timeindex", crate::txn_index::EXT];

/// `<base>.<ext><suffix>` in `dir`.
pub(crate) fn suffixed_path(dir: &Path, base: i64, ext: &str, suffix: &str) -> PathBuf {
    let mut p = file_path(dir, base, ext).into_os_string();
    p.push(suffix);
    PathBuf::from(p)
}

/// Removes a file, treating "already gone" as done.
pub(crate) fn remove_if_exists(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn time_index_last_rel(t: &[(i64, u32)]) -> Option<u32> {
    t.last().map(|e| e.1)
}

fn read_all(f: &File) -> Result<Vec<u8>, StorageError> {
    let len = f.metadata()?.len();
    let mut buf = vec![0u8; len as usize];
    f.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}
