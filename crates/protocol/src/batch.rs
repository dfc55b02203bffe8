//! Record batch (magic v2) header parsing, validation and in-place patching.
//!
//! A broker stores and serves the batch bytes a client produced as they are; it only rewrites
//! fields that are either outside the CRC (base offset, partition leader epoch) or that Kafka
//! itself rewrites (the timestamp type and max timestamp for `LogAppendTime`, after which the
//! CRC is recomputed). Header parsing and patching work on byte slices and never allocate.
//!
//! A client's batch is validated down to its records, compressed or not: they are read as a
//! stream ([`crate::record_stream`]), so validation holds a bounded amount of memory whatever
//! the batch decompresses to.

use std::ops::{ControlFlow, Range};

use crate::record_stream::{self, ScannedRecord};

/// Size of the fixed v2 batch header; records start right after it.
pub const BATCH_HEADER_LEN: usize = 61;
/// Bytes before and including `batchLength`; `total_size = LOG_OVERHEAD + batchLength`.
pub const LOG_OVERHEAD: usize = 12;

pub const BASE_OFFSET_OFFSET: usize = 0;
pub const BATCH_LENGTH_OFFSET: usize = 8;
pub const PARTITION_LEADER_EPOCH_OFFSET: usize = 12;
pub const MAGIC_OFFSET: usize = 16;
pub const CRC_OFFSET: usize = 17;
pub const ATTRIBUTES_OFFSET: usize = 21;
pub const LAST_OFFSET_DELTA_OFFSET: usize = 23;
pub const BASE_TIMESTAMP_OFFSET: usize = 27;
pub const MAX_TIMESTAMP_OFFSET: usize = 35;
pub const PRODUCER_ID_OFFSET: usize = 43;
pub const PRODUCER_EPOCH_OFFSET: usize = 51;
pub const BASE_SEQUENCE_OFFSET: usize = 53;
pub const RECORDS_COUNT_OFFSET: usize = 57;
pub const RECORDS_OFFSET: usize = 61;

/// The only record batch format this crate understands.
pub const MAGIC_V2: i8 = 2;

pub const COMPRESSION_CODEC_MASK: i16 = 0x07;
pub const TIMESTAMP_TYPE_MASK: i16 = 0x08;
pub const TRANSACTIONAL_FLAG_MASK: i16 = 0x10;
pub const CONTROL_FLAG_MASK: i16 = 0x20;

/// Highest compression codec id Kafka defines (zstd).
pub const MAX_COMPRESSION_CODEC: u8 = 4;

/// Why a batch was rejected. A broker maps `Truncated`/`CorruptCrc` to `CORRUPT_MESSAGE` and the
/// others to `INVALID_RECORD` / `UNSUPPORTED_VERSION`-like codes.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    #[error("record batch truncated")]
    Truncated,
    #[error("unsupported record batch magic {0}")]
    UnsupportedMagic(i8),
    #[error("record batch CRC mismatch: stored {expected:#010x}, computed {actual:#010x}")]
    CorruptCrc { expected: u32, actual: u32 },
    #[error("invalid record batch: {0}")]
    InvalidRecord(String),
    /// The records section cannot be decompressed (or asks for more memory than allowed).
    #[error("corrupt record batch: {0}")]
    Corrupt(String),
}

/// Decoded fixed header of a v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Bytes after the `batchLength` field.
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

impl BatchHeader {
    /// Compression codec id (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression(&self) -> u8 {
        (self.attributes & COMPRESSION_CODEC_MASK) as u8
    }

    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_MASK != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_FLAG_MASK != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_FLAG_MASK != 0
    }

    /// Whole batch size on the wire / on disk.
    pub fn total_size(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.max(0) as usize
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .wrapping_add(i64::from(self.last_offset_delta))
    }

    /// Sequence number of the last record. Kafka wraps sequences from `i32::MAX` to 0.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return self.base_sequence;
        }
        let last = i64::from(self.base_sequence) + i64::from(self.last_offset_delta);
        if last > i64::from(i32::MAX) {
            (last - i64::from(i32::MAX) - 1) as i32
        } else {
            last as i32
        }
    }
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// Parses the fixed header at the start of `buf` without checking the CRC or that the whole
/// batch is present. Fails on short input, magic != 2 and a batch length too small to hold the
/// header.
pub fn parse_header(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    if buf.len() < BATCH_HEADER_LEN {
        // Report a bad magic before a short read when we can see it: a v0/v1 message set can
        // be shorter than a v2 header.
        if buf.len() > MAGIC_OFFSET && buf[MAGIC_OFFSET] as i8 != MAGIC_V2 {
            return Err(BatchError::UnsupportedMagic(buf[MAGIC_OFFSET] as i8));
        }
        return Err(BatchError::Truncated);
    }
    let magic = buf[MAGIC_OFFSET] as i8;
    if magic != MAGIC_V2 {
        return Err(BatchError::UnsupportedMagic(magic));
    }
    let batch_length = be_i32(buf, BATCH_LENGTH_OFFSET);
    if batch_length < (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32 {
        return Err(BatchError::InvalidRecord(format!(
            "batch length {batch_length} is smaller than the v2 header"
        )));
    }
    Ok(BatchHeader {
        base_offset: be_i64(buf, BASE_OFFSET_OFFSET),
        batch_length,
        partition_leader_epoch: be_i32(buf, PARTITION_LEADER_EPOCH_OFFSET),
        magic,
        crc: be_u32(buf, CRC_OFFSET),
        attributes: be_i16(buf, ATTRIBUTES_OFFSET),
        last_offset_delta: be_i32(buf, LAST_OFFSET_DELTA_OFFSET),
        base_timestamp: be_i64(buf, BASE_TIMESTAMP_OFFSET),
        max_timestamp: be_i64(buf, MAX_TIMESTAMP_OFFSET),
        producer_id: be_i64(buf, PRODUCER_ID_OFFSET),
        producer_epoch: be_i16(buf, PRODUCER_EPOCH_OFFSET),
        base_sequence: be_i32(buf, BASE_SEQUENCE_OFFSET),
        records_count: be_i32(buf, RECORDS_COUNT_OFFSET),
    })
}

/// Iterates over consecutive batches in `buf` by header only (no CRC check). Yields the header
/// and the byte range of each batch; after the first error (e.g. a truncated tail) it stops.
pub fn split_batches(
    buf: &[u8],
) -> impl Iterator<Item = Result<(BatchHeader, Range<usize>), BatchError>> + '_ {
    let mut pos = 0usize;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || pos >= buf.len() {
            return None;
        }
        let rest = &buf[pos..];
        match parse_header(rest) {
            Ok(h) if h.total_size() <= rest.len() => {
                let range = pos..pos + h.total_size();
                pos = range.end;
                Some(Ok((h, range)))
            }
            Ok(_) => {
                failed = true;
                Some(Err(BatchError::Truncated))
            }
            Err(e) => {
                failed = true;
                Some(Err(e))
            }
        }
    })
}

/// CRC32C Kafka stores for a batch: over everything from `attributes` to the end.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[ATTRIBUTES_OFFSET.min(batch.len())..])
}

/// Fully validates one batch that must occupy the whole of `batch`: length, magic, CRC, record
/// count vs `lastOffsetDelta`, compression codec, and the records themselves, decompressed as a
/// stream with bounded memory ([`crate::record_stream`]): each record's framing, offset deltas
/// 0, 1, 2, ... and exactly `recordsCount` records.
pub fn validate_batch(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    validate_batch_records(batch, |_| Ok(()))
}

/// [`validate_batch`], also handing each record to `check` (which may refuse the batch).
pub fn validate_batch_records(
    batch: &[u8],
    mut check: impl FnMut(&ScannedRecord) -> Result<(), BatchError>,
) -> Result<BatchHeader, BatchError> {
    let h = parse_header(batch)?;
    let total = h.total_size();
    if total > batch.len() {
        return Err(BatchError::Truncated);
    }
    if total < batch.len() {
        return Err(BatchError::InvalidRecord(format!(
            "expected exactly one batch of {total} bytes, got {} bytes",
            batch.len()
        )));
    }
    let actual = compute_crc(batch);
    if actual != h.crc {
        return Err(BatchError::CorruptCrc {
            expected: h.crc,
            actual,
        });
    }
    if h.records_count < 0 {
        return Err(BatchError::InvalidRecord(format!(
            "negative record count {}",
            h.records_count
        )));
    }
    if h.records_count > 0 && h.last_offset_delta != h.records_count - 1 {
        return Err(BatchError::InvalidRecord(format!(
            "last offset delta {} does not match record count {}",
            h.last_offset_delta, h.records_count
        )));
    }
    if h.compression() > MAX_COMPRESSION_CODEC {
        return Err(BatchError::InvalidRecord(format!(
            "unknown compression codec {}",
            h.compression()
        )));
    }
    let mut refused = None;
    let mut n: i32 = 0;
    record_stream::scan_records(batch, &h, |rec| {
        let r = if rec.offset_delta != n {
            Err(BatchError::InvalidRecord(format!(
                "record {n} has offset delta {}",
                rec.offset_delta
            )))
        } else {
            check(rec)
        };
        n += 1;
        match r {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                refused = Some(e);
                ControlFlow::Break(())
            }
        }
    })?;
    match refused {
        Some(e) => Err(e),
        None => Ok(h),
    }
}

/// Position and leading fields of one record inside an uncompressed batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordInfo {
    pub offset_delta: i32,
    pub timestamp_delta: i64,
    /// Byte range of the record body (after its length prefix) within the batch slice.
    pub range: Range<usize>,
}

/// Walks the records of an UNCOMPRESSED batch (the caller checks the codec), yielding each
/// record's offset and timestamp deltas. Stops after `recordsCount` records or the first error;
/// it is an error for bytes to remain after the last record or for a record to leave the batch.
pub fn records(batch: &[u8]) -> impl Iterator<Item = Result<RecordInfo, BatchError>> + '_ {
    let header = parse_header(batch);
    let mut state: Option<(usize, usize, i32)> = None; // (pos, end, remaining)
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        if state.is_none() {
            match &header {
                Ok(h) => {
                    let end = h.total_size();
                    if end > batch.len() {
                        done = true;
                        return Some(Err(BatchError::Truncated));
                    }
                    state = Some((RECORDS_OFFSET, end, h.records_count.max(0)));
                }
                Err(e) => {
                    done = true;
                    return Some(Err(e.clone()));
                }
            }
        }
        let (pos, end, remaining) = state.as_mut()?;
        if *remaining == 0 {
            done = true;
            if *pos != *end {
                return Some(Err(BatchError::InvalidRecord(format!(
                    "{} bytes left after the last record",
                    *end - *pos
                ))));
            }
            return None;
        }
        let res = next_record(batch, *pos, *end);
        match res {
            Ok((info, next)) => {
                *pos = next;
                *remaining -= 1;
                Some(Ok(info))
            }
            Err(e) => {
                done = true;
                Some(Err(e))
            }
        }
    })
}

fn next_record(batch: &[u8], pos: usize, end: usize) -> Result<(RecordInfo, usize), BatchError> {
    let (len, p) = read_varint(batch, pos, end)?;
    if len < 0 {
        return Err(BatchError::InvalidRecord(format!(
            "negative record length {len}"
        )));
    }
    let rec_end = p
        .checked_add(len as usize)
        .filter(|&e| e <= end)
        .ok_or_else(|| BatchError::InvalidRecord("record extends past the batch".into()))?;
    // attributes (1 byte), then timestampDelta varlong and offsetDelta varint.
    if p >= rec_end {
        return Err(BatchError::InvalidRecord("empty record".into()));
    }
    let (timestamp_delta, q) = read_varlong(batch, p + 1, rec_end)?;
    let (offset_delta, _) = read_varint(batch, q, rec_end)?;
    Ok((
        RecordInfo {
            offset_delta,
            timestamp_delta,
            range: p..rec_end,
        },
        rec_end,
    ))
}

fn read_uvarint(
    buf: &[u8],
    mut pos: usize,
    end: usize,
    max_bytes: usize,
) -> Result<(u64, usize), BatchError> {
    let mut value: u64 = 0;
    for i in 0..max_bytes {
        if pos >= end || pos >= buf.len() {
            return Err(BatchError::InvalidRecord(
                "record varint runs past the record".into(),
            ));
        }
        let b = buf[pos];
        pos += 1;
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((value, pos));
        }
    }
    Err(BatchError::InvalidRecord("varint too long".into()))
}

fn read_varint(buf: &[u8], pos: usize, end: usize) -> Result<(i32, usize), BatchError> {
    let (v, p) = read_uvarint(buf, pos, end, 5)?;
    let v = v as u32;
    Ok((((v >> 1) as i32) ^ -((v & 1) as i32), p))
}

fn read_varlong(buf: &[u8], pos: usize, end: usize) -> Result<(i64, usize), BatchError> {
    let (v, p) = read_uvarint(buf, pos, end, 10)?;
    Ok((((v >> 1) as i64) ^ -((v & 1) as i64), p))
}

fn check_patchable(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let h = parse_header(buf)?;
    if h.total_size() > buf.len() {
        return Err(BatchError::Truncated);
    }
    Ok(h)
}

/// Sets the base offset. The field is outside the CRC, so the CRC stays valid.
pub fn set_base_offset(buf: &mut [u8], offset: i64) -> Result<(), BatchError> {
    check_patchable(buf)?;
    buf[BASE_OFFSET_OFFSET..BASE_OFFSET_OFFSET + 8].copy_from_slice(&offset.to_be_bytes());
    Ok(())
}

/// Sets the partition leader epoch (outside the CRC).
pub fn set_partition_leader_epoch(buf: &mut [u8], epoch: i32) -> Result<(), BatchError> {
    check_patchable(buf)?;
    buf[PARTITION_LEADER_EPOCH_OFFSET..PARTITION_LEADER_EPOCH_OFFSET + 4]
        .copy_from_slice(&epoch.to_be_bytes());
    Ok(())
}

/// Marks the batch as `LogAppendTime` with `timestamp` as its max timestamp (Kafka keeps the
/// base timestamp and record deltas; readers use the max timestamp for every record), then
/// recomputes the CRC over the batch.
pub fn set_log_append_time(buf: &mut [u8], timestamp: i64) -> Result<(), BatchError> {
    let h = check_patchable(buf)?;
    let attributes = h.attributes | TIMESTAMP_TYPE_MASK;
    buf[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attributes.to_be_bytes());
    buf[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8].copy_from_slice(&timestamp.to_be_bytes());
    let crc = compute_crc(&buf[..h.total_size()]);
    buf[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// Control record type of an end-transaction marker that aborts the transaction.
pub const CONTROL_TYPE_ABORT: i16 = 0;
/// Control record type of an end-transaction marker that commits the transaction.
pub const CONTROL_TYPE_COMMIT: i16 = 1;
/// Size of an end-transaction marker batch: the 61-byte header and one 17-byte record.
pub const END_TXN_MARKER_LEN: usize = 78;
/// Attributes of an end-transaction marker batch: transactional and control, uncompressed,
/// `CreateTime`.
pub const END_TXN_MARKER_ATTRIBUTES: i16 = TRANSACTIONAL_FLAG_MASK | CONTROL_FLAG_MASK;
/// Largest records section of a compressed control batch this module decompresses to read its
/// first record (a marker's is 17 bytes).
const MAX_CONTROL_RECORDS: usize = 64 << 10;

/// An end-transaction marker (the single record of a control batch a transaction coordinator
/// writes to every partition of a transaction when it commits or aborts it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndTxnMarker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// `true` for COMMIT, `false` for ABORT.
    pub commit: bool,
    /// Epoch of the coordinator that wrote the marker; a partition refuses markers from a
    /// coordinator older than the last one it heard from.
    pub coordinator_epoch: i32,
}

/// Encodes `marker` as a control batch: magic 2, attributes [`END_TXN_MARKER_ATTRIBUTES`],
/// base offset 0 and partition leader epoch -1 (a log assigns both on append), base sequence
/// -1, both timestamps `timestamp`, and one record whose key is `int16 version 0, int16 type`
/// and whose value is `int16 version 0, int32 coordinator epoch`. The result is
/// [`END_TXN_MARKER_LEN`] bytes with a valid CRC-32C.
pub fn encode_end_txn_marker(marker: &EndTxnMarker, timestamp: i64) -> Vec<u8> {
    let mut b = Vec::with_capacity(END_TXN_MARKER_LEN);
    b.extend_from_slice(&0i64.to_be_bytes()); // base offset
    b.extend_from_slice(&((END_TXN_MARKER_LEN - LOG_OVERHEAD) as i32).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
    b.push(MAGIC_V2 as u8);
    b.extend_from_slice(&0u32.to_be_bytes()); // CRC, set below
    b.extend_from_slice(&END_TXN_MARKER_ATTRIBUTES.to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes()); // last offset delta
    b.extend_from_slice(&timestamp.to_be_bytes());
    b.extend_from_slice(&timestamp.to_be_bytes());
    b.extend_from_slice(&marker.producer_id.to_be_bytes());
    b.extend_from_slice(&marker.producer_epoch.to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    b.extend_from_slice(&1i32.to_be_bytes()); // records count
                                              // The record: length 16 (zigzag 32), attributes 0, timestamp delta 0, offset delta 0,
                                              // key length 4 (zigzag 8), key, value length 6 (zigzag 12), value, no headers.
    let kind = if marker.commit {
        CONTROL_TYPE_COMMIT
    } else {
        CONTROL_TYPE_ABORT
    };
    b.extend_from_slice(&[32, 0, 0, 0, 8]);
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&kind.to_be_bytes());
    b.push(12);
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&marker.coordinator_epoch.to_be_bytes());
    b.push(0);
    debug_assert_eq!(b.len(), END_TXN_MARKER_LEN);
    let crc = compute_crc(&b);
    b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

/// Reads the end-transaction marker of a control batch (the whole batch at the start of
/// `batch`): producer id and epoch from the header, commit or abort from the first record's key,
/// the coordinator epoch from its value. Does not check the CRC (callers validate batches
/// first). Errors, never panics, on anything else: a short or non-v2 batch, a batch without the
/// control flag or without records, a malformed record, a key shorter than 4 bytes or with a
/// negative version, a control type other than ABORT (0) or COMMIT (1), a value shorter than 6
/// bytes or with a negative version. Versions above 0 are read as version 0.
pub fn parse_end_txn_marker(batch: &[u8]) -> Result<EndTxnMarker, BatchError> {
    let h = parse_header(batch)?;
    if h.total_size() > batch.len() {
        return Err(BatchError::Truncated);
    }
    let bad = |m: String| BatchError::InvalidRecord(m);
    if !h.is_control() {
        return Err(bad("not a control batch".into()));
    }
    if h.records_count < 1 {
        return Err(bad(format!(
            "control batch has {} records",
            h.records_count
        )));
    }
    let batch = &batch[..h.total_size()];
    let section: std::borrow::Cow<'_, [u8]> = if h.compression() == 0 {
        std::borrow::Cow::Borrowed(&batch[RECORDS_OFFSET..])
    } else {
        std::borrow::Cow::Owned(record_stream::decompress_records(
            batch,
            &h,
            MAX_CONTROL_RECORDS,
        )?)
    };
    let (key, value) = first_key_value(&section)?;
    let key = key.ok_or_else(|| bad("control record without a key".into()))?;
    if key.len() < 4 {
        return Err(bad(format!("control record key of {} bytes", key.len())));
    }
    let key_version = i16::from_be_bytes([key[0], key[1]]);
    if key_version < 0 {
        return Err(bad(format!("control record key version {key_version}")));
    }
    let commit = match i16::from_be_bytes([key[2], key[3]]) {
        CONTROL_TYPE_ABORT => false,
        CONTROL_TYPE_COMMIT => true,
        other => {
            return Err(bad(format!(
                "control record type {other} is not an end-transaction marker"
            )))
        }
    };
    let value = value.ok_or_else(|| bad("end-transaction marker without a value".into()))?;
    if value.len() < 6 {
        return Err(bad(format!(
            "end-transaction marker value of {} bytes",
            value.len()
        )));
    }
    let value_version = i16::from_be_bytes([value[0], value[1]]);
    if value_version < 0 {
        return Err(bad(format!(
            "end-transaction marker value version {value_version}"
        )));
    }
    Ok(EndTxnMarker {
        producer_id: h.producer_id,
        producer_epoch: h.producer_epoch,
        commit,
        coordinator_epoch: be_i32(value, 2),
    })
}

/// Key and value (`None` when null) of the first record of a records section.
type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

fn first_key_value(section: &[u8]) -> Result<KeyValue<'_>, BatchError> {
    let end = section.len();
    let (len, p) = read_varint(section, 0, end)?;
    let rec_end = usize::try_from(len)
        .ok()
        .filter(|&l| l > 0)
        .and_then(|l| p.checked_add(l))
        .filter(|&e| e <= end)
        .ok_or_else(|| BatchError::InvalidRecord(format!("record length {len}")))?;
    // attributes, timestamp delta, offset delta, key length, key, value length, value.
    let (_, q) = read_varlong(section, p + 1, rec_end)?;
    let (_, q) = read_varint(section, q, rec_end)?;
    let (key, q) = read_bytes(section, q, rec_end)?;
    let (value, _) = read_bytes(section, q, rec_end)?;
    Ok((key, value))
}

/// A varint-length-prefixed byte string (-1 = null) at `pos`, which must end by `end`.
fn read_bytes(buf: &[u8], pos: usize, end: usize) -> Result<(Option<&[u8]>, usize), BatchError> {
    let (len, p) = read_varint(buf, pos, end)?;
    if len == -1 {
        return Ok((None, p));
    }
    let e = usize::try_from(len)
        .ok()
        .and_then(|l| p.checked_add(l))
        .filter(|&e| e <= end)
        .ok_or_else(|| BatchError::InvalidRecord(format!("field length {len}")))?;
    Ok((Some(&buf[p..e]), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType,
    };
    use proptest::prelude::*;

    fn encode(
        values: &[Vec<u8>],
        base_ts: i64,
        compression: Compression,
        producer_id: i64,
        base_seq: i32,
    ) -> Vec<u8> {
        let records: Vec<Record> = values
            .iter()
            .enumerate()
            .map(|(i, v)| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id,
                producer_epoch: if producer_id >= 0 { 0 } else { -1 },
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // The encoder splits batches unless offset - sequence is constant.
                sequence: base_seq.wrapping_add(i as i32),
                timestamp: base_ts + i as i64,
                key: if i % 2 == 0 {
                    Some(Bytes::from_static(b"k"))
                } else {
                    None
                },
                value: Some(Bytes::from(v.clone())),
                headers: [(
                    StrBytes::from_static_str("h"),
                    Some(Bytes::from_static(b"v")),
                )]
                .into_iter()
                .collect(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            records.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .expect("encode");
        buf.to_vec()
    }

    fn compression_strategy() -> impl Strategy<Value = Compression> {
        prop_oneof![
            Just(Compression::None),
            Just(Compression::Gzip),
            Just(Compression::Snappy),
            Just(Compression::Lz4),
            Just(Compression::Zstd),
        ]
    }

    #[test]
    fn header_fields() {
        let b = encode(
            &[b"a".to_vec(), b"bb".to_vec(), b"c".to_vec()],
            1000,
            Compression::None,
            7,
            5,
        );
        let h = validate_batch(&b).unwrap();
        assert_eq!(h.base_offset, 0);
        assert_eq!(h.records_count, 3);
        assert_eq!(h.last_offset_delta, 2);
        assert_eq!(h.base_timestamp, 1000);
        assert_eq!(h.max_timestamp, 1002);
        assert_eq!(h.producer_id, 7);
        assert_eq!(h.base_sequence, 5);
        assert_eq!(h.last_sequence(), 7);
        assert_eq!(h.total_size(), b.len());
        assert_eq!(h.compression(), 0);
        assert!(!h.is_log_append_time() && !h.is_transactional() && !h.is_control());
        let recs: Vec<_> = records(&b).collect::<Result<_, _>>().unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[2].offset_delta, 2);
        assert_eq!(recs[2].timestamp_delta, 2);
    }

    #[test]
    fn last_sequence_wraps() {
        let b = encode(&[vec![1], vec![2], vec![3]], 0, Compression::None, 1, 0);
        let mut h = parse_header(&b).unwrap();
        h.base_sequence = i32::MAX - 1;
        assert_eq!(h.last_sequence(), 0);
        h.base_sequence = i32::MAX;
        assert_eq!(h.last_sequence(), 1);
    }

    #[test]
    fn short_and_bad_magic() {
        let mut b = encode(&[vec![1]], 0, Compression::None, -1, -1);
        assert_eq!(parse_header(&b[..20]), Err(BatchError::Truncated));
        assert_eq!(
            validate_batch(&b[..b.len() - 1]),
            Err(BatchError::Truncated)
        );
        b[MAGIC_OFFSET] = 1;
        assert_eq!(parse_header(&b), Err(BatchError::UnsupportedMagic(1)));
        b[MAGIC_OFFSET] = 2;
        b[BATCH_LENGTH_OFFSET..BATCH_LENGTH_OFFSET + 4].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(matches!(
            parse_header(&b),
            Err(BatchError::InvalidRecord(_))
        ));
    }

    #[test]
    fn two_batches_are_not_one() {
        let mut b = encode(&[vec![1]], 0, Compression::None, -1, -1);
        let one = b.clone();
        b.extend_from_slice(&one);
        assert!(matches!(
            validate_batch(&b),
            Err(BatchError::InvalidRecord(_))
        ));
        let parts: Vec<_> = split_batches(&b).collect::<Result<_, _>>().unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].1, one.len()..2 * one.len());
        let mut parts = split_batches(&b[..b.len() - 3]);
        assert!(parts.next().unwrap().is_ok());
        assert_eq!(parts.next().unwrap(), Err(BatchError::Truncated));
        assert!(parts.next().is_none());
    }

    #[test]
    fn count_mismatch_with_recomputed_crc_is_invalid() {
        let mut b = encode(&[vec![1], vec![2]], 0, Compression::None, -1, -1);
        b[RECORDS_COUNT_OFFSET..RECORDS_COUNT_OFFSET + 4].copy_from_slice(&3i32.to_be_bytes());
        b[LAST_OFFSET_DELTA_OFFSET..LAST_OFFSET_DELTA_OFFSET + 4]
            .copy_from_slice(&2i32.to_be_bytes());
        let crc = compute_crc(&b);
        b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            validate_batch(&b),
            Err(BatchError::InvalidRecord(_))
        ));
    }

    #[test]
    fn bad_codec_is_invalid() {
        let mut b = encode(&[vec![1]], 0, Compression::None, -1, -1);
        b[ATTRIBUTES_OFFSET + 1] |= 0x07;
        let crc = compute_crc(&b);
        b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            validate_batch(&b),
            Err(BatchError::InvalidRecord(_))
        ));
    }

    #[test]
    fn log_append_time_keeps_crc_valid() {
        let mut b = encode(&[vec![1], vec![2]], 100, Compression::Gzip, -1, -1);
        set_log_append_time(&mut b, 5_000).unwrap();
        let h = validate_batch(&b).unwrap();
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 5_000);
        assert_eq!(h.base_timestamp, 100);
        let set = RecordBatchDecoder::decode(&mut Bytes::from(b)).unwrap();
        assert_eq!(set.records[0].timestamp_type, TimestampType::LogAppend);
    }

    fn marker(commit: bool) -> EndTxnMarker {
        EndTxnMarker {
            producer_id: 4_000_000_000,
            producer_epoch: 7,
            commit,
            coordinator_epoch: 3,
        }
    }

    /// The same marker built by kafka-protocol's encoder from a record with a control key.
    fn reference_marker(m: &EndTxnMarker, ts: i64) -> Vec<u8> {
        let kind: i16 = if m.commit { 1 } else { 0 };
        let mut key = 0i16.to_be_bytes().to_vec();
        key.extend_from_slice(&kind.to_be_bytes());
        let mut value = 0i16.to_be_bytes().to_vec();
        value.extend_from_slice(&m.coordinator_epoch.to_be_bytes());
        let rec = Record {
            transactional: true,
            control: true,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: m.producer_id,
            producer_epoch: m.producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: -1,
            timestamp: ts,
            key: Some(Bytes::from(key)),
            value: Some(Bytes::from(value)),
            headers: Default::default(),
        };
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            [rec].iter(),
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .expect("encode");
        buf.to_vec()
    }

    #[test]
    fn end_txn_marker_layout_and_round_trip() {
        for commit in [false, true] {
            let m = marker(commit);
            let b = encode_end_txn_marker(&m, 1_700_000_000_123);
            assert_eq!(b.len(), END_TXN_MARKER_LEN);
            let h = validate_batch(&b).unwrap();
            assert_eq!(h.attributes, 0x30);
            assert!(h.is_control() && h.is_transactional());
            assert_eq!(h.records_count, 1);
            assert_eq!(h.last_offset_delta, 0);
            assert_eq!(h.base_sequence, -1);
            assert_eq!((h.producer_id, h.producer_epoch), (4_000_000_000, 7));
            assert_eq!(h.base_timestamp, 1_700_000_000_123);
            assert_eq!(h.max_timestamp, 1_700_000_000_123);
            assert_eq!(parse_end_txn_marker(&b), Ok(m));
            assert_eq!(b, reference_marker(&m, 1_700_000_000_123));
            let type_byte = b[RECORDS_OFFSET + 5 + 3];
            assert_eq!(type_byte, u8::from(commit));
        }
        // Patching the base offset and leader epoch (a log's append) keeps it readable.
        let mut b = encode_end_txn_marker(&marker(true), 5);
        set_base_offset(&mut b, 99).unwrap();
        set_partition_leader_epoch(&mut b, 4).unwrap();
        validate_batch(&b).unwrap();
        assert_eq!(parse_end_txn_marker(&b), Ok(marker(true)));
    }

    #[test]
    fn end_txn_marker_from_a_compressed_batch_and_later_versions() {
        let m = marker(false);
        let mut key = 3i16.to_be_bytes().to_vec();
        key.extend_from_slice(&0i16.to_be_bytes());
        key.push(9); // a later version may add fields
        let mut value = 2i16.to_be_bytes().to_vec();
        value.extend_from_slice(&m.coordinator_epoch.to_be_bytes());
        value.extend_from_slice(&[1, 2, 3]);
        let rec = Record {
            transactional: true,
            control: true,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: m.producer_id,
            producer_epoch: m.producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: -1,
            timestamp: 0,
            key: Some(Bytes::from(key)),
            value: Some(Bytes::from(value)),
            headers: Default::default(),
        };
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            [rec].iter(),
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::Gzip,
            },
        )
        .unwrap();
        assert_eq!(parse_end_txn_marker(&buf), Ok(m));
    }

    #[test]
    fn malformed_end_txn_markers_are_refused() {
        let good = encode_end_txn_marker(&marker(true), 0);
        let key_at = RECORDS_OFFSET + 5;
        let value_at = key_at + 5;
        let refused = |b: &[u8]| parse_end_txn_marker(b).is_err();
        // Not a control batch.
        let mut b = good.clone();
        b[ATTRIBUTES_OFFSET + 1] = 0x10;
        assert!(refused(&b));
        // No records.
        let mut b = good.clone();
        b[RECORDS_COUNT_OFFSET..RECORDS_COUNT_OFFSET + 4].copy_from_slice(&0i32.to_be_bytes());
        assert!(refused(&b));
        // Another control type (a KRaft leader change record, say).
        let mut b = good.clone();
        b[key_at + 3] = 2;
        assert!(matches!(
            parse_end_txn_marker(&b),
            Err(BatchError::InvalidRecord(m)) if m.contains("type 2")
        ));
        // Negative key and value versions.
        let mut b = good.clone();
        b[key_at] = 0xff;
        assert!(refused(&b));
        let mut b = good.clone();
        b[value_at] = 0x80;
        assert!(refused(&b));
        // A key too short to hold the type (key length 2).
        let mut b = good.clone();
        b[key_at - 1] = 4;
        assert!(refused(&b));
        // Truncated input.
        assert_eq!(
            parse_end_txn_marker(&good[..good.len() - 1]),
            Err(BatchError::Truncated)
        );
        assert!(refused(&good[..20]));
        assert!(refused(&[]));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn roundtrip_patch_and_decode(
            values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..20),
            compression in compression_strategy(),
            base_ts in 0i64..1 << 40,
            base_offset in 0i64..1 << 50,
            epoch in any::<i32>(),
            pid in -1i64..1000,
        ) {
            let seq = if pid >= 0 { 0 } else { -1 };
            let mut b = encode(&values, base_ts, compression, pid, seq);
            let h = validate_batch(&b).unwrap();
            prop_assert_eq!(h.records_count as usize, values.len());
            set_base_offset(&mut b, base_offset).unwrap();
            set_partition_leader_epoch(&mut b, epoch).unwrap();
            let h2 = validate_batch(&b).unwrap();
            prop_assert_eq!(h2.base_offset, base_offset);
            prop_assert_eq!(h2.partition_leader_epoch, epoch);
            prop_assert_eq!(h2.last_offset(), base_offset + values.len() as i64 - 1);
            let set = RecordBatchDecoder::decode(&mut Bytes::from(b)).unwrap();
            prop_assert_eq!(set.records.len(), values.len());
            for (i, r) in set.records.iter().enumerate() {
                prop_assert_eq!(r.offset, base_offset + i as i64);
                prop_assert_eq!(r.partition_leader_epoch, epoch);
                prop_assert_eq!(r.value.as_deref(), Some(&values[i][..]));
            }
        }

        #[test]
        fn any_single_byte_flip_after_crc_is_detected(
            values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..32), 1..8),
            pos in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let mut b = encode(&values, 0, Compression::None, -1, -1);
            let at = ATTRIBUTES_OFFSET + pos.index(b.len() - ATTRIBUTES_OFFSET);
            b[at] ^= flip;
            prop_assert!(validate_batch(&b).is_err());
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_header(&data);
            let _ = validate_batch(&data);
            for r in split_batches(&data) { let _ = r; }
            for r in records(&data) { let _ = r; }
            let mut d = data.clone();
            let _ = set_log_append_time(&mut d, 1);
            let _ = set_base_offset(&mut d, 1);
        }

        #[test]
        fn end_txn_marker_round_trips(
            pid in any::<i64>(),
            epoch in any::<i16>(),
            commit in any::<bool>(),
            coordinator_epoch in any::<i32>(),
            ts in any::<i64>(),
        ) {
            let m = EndTxnMarker { producer_id: pid, producer_epoch: epoch, commit, coordinator_epoch };
            let b = encode_end_txn_marker(&m, ts);
            prop_assert!(validate_batch(&b).is_ok());
            prop_assert_eq!(parse_end_txn_marker(&b), Ok(m));
            prop_assert_eq!(b, reference_marker(&m, ts));
        }

        #[test]
        fn end_txn_marker_parse_never_panics(
            data in proptest::collection::vec(any::<u8>(), 0..120),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
            cut in any::<prop::sample::Index>(),
        ) {
            let _ = parse_end_txn_marker(&data);
            // Damaged real markers, including their length and count fields.
            let mut b = encode_end_txn_marker(&marker(true), 1);
            for (at, v) in flips {
                let i = at.index(b.len());
                b[i] = v;
            }
            let _ = parse_end_txn_marker(&b);
            let _ = parse_end_txn_marker(&b[..cut.index(b.len() + 1)]);
        }

        #[test]
        fn garbage_records_with_valid_header_never_panic(
            tail in proptest::collection::vec(any::<u8>(), 0..100),
            count in -2i32..10,
        ) {
            let mut b = encode(&[vec![1]], 0, Compression::None, -1, -1);
            b.truncate(RECORDS_OFFSET);
            b.extend_from_slice(&tail);
            let len = (b.len() - LOG_OVERHEAD) as i32;
            b[BATCH_LENGTH_OFFSET..BATCH_LENGTH_OFFSET + 4].copy_from_slice(&len.to_be_bytes());
            b[RECORDS_COUNT_OFFSET..RECORDS_COUNT_OFFSET + 4].copy_from_slice(&count.to_be_bytes());
            b[LAST_OFFSET_DELTA_OFFSET..LAST_OFFSET_DELTA_OFFSET + 4]
                .copy_from_slice(&(count - 1).to_be_bytes());
            let crc = compute_crc(&b);
            b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
            let _ = validate_batch(&b);
        }
    }
}
