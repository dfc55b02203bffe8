//! Reads the records of one v2 batch, compressed or not, as a stream with bounded memory.
//!
//! A batch of a few kilobytes can decompress to gigabytes (a "decompression bomb"), and a single
//! record inside it can be hundreds of megabytes. Everything that looks inside records (produce
//! validation, the compacted-topic key check, ListOffsets by timestamp) reads them through
//! [`scan_records`]: the codec's decoder runs as a stream, each record's small fields are parsed
//! from a fixed buffer, and keys, values and headers are skipped over without being kept. The
//! memory held is the decoder's own state plus a few kilobytes, whatever the batch holds:
//!
//! - gzip: a 32 KiB window;
//! - snappy: one block at a time (xerial framing's blocks, or the whole input for raw snappy),
//!   at most [`SNAPPY_BLOCK_MAX`] decompressed;
//! - lz4 (frame format): the frame's block size, at most 4 MiB;
//! - zstd: the frame's window, at most 2^[`ZSTD_WINDOW_LOG_MAX`] bytes (zstd levels up to 20
//!   stay within it; a frame that asks for more is refused as corrupt).
//!
//! The scan also checks that the records agree with the batch: each record's fields fill exactly
//! its declared length, lengths are never negative (except -1 for a null key or value), and the
//! records section holds exactly `recordsCount` records and nothing after them.

use std::io::{self, BufRead, BufReader, Read};
use std::ops::ControlFlow;

use crate::batch::{BatchError, BatchHeader, BATCH_HEADER_LEN};

/// Largest zstd window (as a power of two) a batch may ask its decoder to allocate.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 25;
/// Largest decompressed size of one snappy block.
pub const SNAPPY_BLOCK_MAX: usize = 32 << 20;
/// Buffer between a decoder and the record parser.
const READ_BUFFER: usize = 16 << 10;
/// xerial's snappy framing (what Kafka's Java client writes): magic, then two 4-byte versions.
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const XERIAL_HEADER_LEN: usize = 16;

/// The fields of one record the scan hands out; keys, values and headers themselves are not
/// kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScannedRecord {
    pub offset_delta: i32,
    pub timestamp_delta: i64,
    /// -1 for a null key.
    pub key_len: i32,
    /// -1 for a null value.
    pub value_len: i32,
    pub header_count: i32,
}

/// Streams the records of `batch` (one whole batch, `h` its parsed header) to `visit`, in
/// order, and checks them against the batch as described in the module documentation. `visit`
/// may stop the scan early with `ControlFlow::Break`; the records after it are then not read or
/// checked. Returns the number of records visited.
///
/// Undecodable compressed data is [`BatchError::Corrupt`]; records that disagree with their
/// lengths or with the batch's count are [`BatchError::InvalidRecord`].
pub fn scan_records(
    batch: &[u8],
    h: &BatchHeader,
    visit: impl FnMut(&ScannedRecord) -> ControlFlow<()>,
) -> Result<usize, BatchError> {
    let end = h.total_size().min(batch.len());
    if end < BATCH_HEADER_LEN {
        return Err(BatchError::Truncated);
    }
    let raw = &batch[BATCH_HEADER_LEN..end];
    let count = usize::try_from(h.records_count)
        .map_err(|_| BatchError::InvalidRecord(format!("record count {}", h.records_count)))?;
    // Uncompressed records are parsed straight from the slice (no dynamic dispatch per byte).
    if h.compression() == 0 {
        let mut input = raw;
        return scan_stream(&mut input, count, visit);
    }
    let mut input = records_reader(raw, h.compression())?;
    scan_stream(&mut input, count, visit)
}

fn scan_stream<R: BufRead + ?Sized>(
    input: &mut R,
    count: usize,
    mut visit: impl FnMut(&ScannedRecord) -> ControlFlow<()>,
) -> Result<usize, BatchError> {
    for n in 0..count {
        let rec = match read_record(input) {
            Ok(Some(r)) => r,
            Ok(None) => {
                return Err(BatchError::InvalidRecord(format!(
                    "batch says {count} records, found {n}"
                )))
            }
            Err(e) => return Err(e),
        };
        if visit(&rec).is_break() {
            return Ok(n + 1);
        }
    }
    match input.fill_buf() {
        Ok([]) => Ok(count),
        Ok(_) => Err(BatchError::InvalidRecord(
            "bytes left after the last record".into(),
        )),
        Err(e) => Err(decode_error(e)),
    }
}

/// The records section of `batch` decompressed into memory, for code that rewrites records (the
/// log cleaner). Refused as [`BatchError::Corrupt`] when it would exceed `max_len` bytes, so a
/// decompression bomb costs at most `max_len`.
pub fn decompress_records(
    batch: &[u8],
    h: &BatchHeader,
    max_len: usize,
) -> Result<Vec<u8>, BatchError> {
    let end = h.total_size().min(batch.len());
    if end < BATCH_HEADER_LEN {
        return Err(BatchError::Truncated);
    }
    let raw = &batch[BATCH_HEADER_LEN..end];
    let input = records_reader(raw, h.compression())?;
    let mut out = Vec::with_capacity(raw.len().saturating_mul(4).min(max_len));
    input
        .take(max_len as u64 + 1)
        .read_to_end(&mut out)
        .map_err(decode_error)?;
    if out.len() > max_len {
        return Err(BatchError::Corrupt(format!(
            "records decompress to more than {max_len} bytes"
        )));
    }
    Ok(out)
}

/// The records section of a batch as a byte stream, decompressed by `codec`.
fn records_reader<'a>(raw: &'a [u8], codec: u8) -> Result<Box<dyn BufRead + 'a>, BatchError> {
    Ok(match codec {
        0 => Box::new(raw),
        1 => Box::new(BufReader::with_capacity(
            READ_BUFFER,
            flate2::read::MultiGzDecoder::new(raw),
        )),
        2 => Box::new(BufReader::with_capacity(
            READ_BUFFER,
            SnappyReader::new(raw),
        )),
        3 => Box::new(BufReader::with_capacity(
            READ_BUFFER,
            lz4::Decoder::new(raw).map_err(decode_error)?,
        )),
        4 => {
            let mut d = zstd::stream::read::Decoder::with_buffer(raw).map_err(decode_error)?;
            d.window_log_max(ZSTD_WINDOW_LOG_MAX)
                .map_err(decode_error)?;
            Box::new(BufReader::with_capacity(READ_BUFFER, d))
        }
        c => {
            return Err(BatchError::InvalidRecord(format!(
                "unknown compression codec {c}"
            )))
        }
    })
}

fn decode_error(e: io::Error) -> BatchError {
    BatchError::Corrupt(format!("cannot decompress the records: {e}"))
}

/// Reads one record, or `None` at a clean end of the stream (before its length).
fn read_record<R: BufRead + ?Sized>(input: &mut R) -> Result<Option<ScannedRecord>, BatchError> {
    let bad = |m: &str| BatchError::InvalidRecord(format!("malformed record: {m}"));
    if input.fill_buf().map_err(decode_error)?.is_empty() {
        return Ok(None);
    }
    let mut outer = Counted { input, left: 5 };
    let len = outer.varint().map_err(|e| e.or(bad("length")))?;
    if len < 1 {
        return Err(bad("length below one byte"));
    }
    let mut r = Counted {
        input: outer.input,
        left: len as u64,
    };
    r.skip(1).map_err(|e| e.or(bad("attributes")))?;
    let timestamp_delta = r.varlong().map_err(|e| e.or(bad("timestamp delta")))?;
    let offset_delta = r.varint().map_err(|e| e.or(bad("offset delta")))?;
    let key_len = r.varint().map_err(|e| e.or(bad("key length")))?;
    if key_len < -1 {
        return Err(bad("negative key length"));
    }
    r.skip(key_len.max(0) as u64)
        .map_err(|e| e.or(bad("key past the record")))?;
    let value_len = r.varint().map_err(|e| e.or(bad("value length")))?;
    if value_len < -1 {
        return Err(bad("negative value length"));
    }
    r.skip(value_len.max(0) as u64)
        .map_err(|e| e.or(bad("value past the record")))?;
    let header_count = r.varint().map_err(|e| e.or(bad("header count")))?;
    if header_count < 0 {
        return Err(bad("negative header count"));
    }
    for _ in 0..header_count {
        let k = r.varint().map_err(|e| e.or(bad("header key length")))?;
        if k < 0 {
            return Err(bad("negative header key length"));
        }
        r.skip(k as u64)
            .map_err(|e| e.or(bad("header key past the record")))?;
        let v = r.varint().map_err(|e| e.or(bad("header value length")))?;
        if v < -1 {
            return Err(bad("negative header value length"));
        }
        r.skip(v.max(0) as u64)
            .map_err(|e| e.or(bad("header value past the record")))?;
    }
    if r.left != 0 {
        return Err(bad("fields end before the record's length"));
    }
    Ok(Some(ScannedRecord {
        offset_delta,
        timestamp_delta,
        key_len,
        value_len,
        header_count,
    }))
}

/// A failure inside one record: the stream could not be decoded, or the field does not fit.
enum FieldError {
    Decode(BatchError),
    Short,
}

impl FieldError {
    fn or(self, fallback: BatchError) -> BatchError {
        match self {
            FieldError::Decode(e) => e,
            FieldError::Short => fallback,
        }
    }
}

/// Reads at most `left` more bytes from the stream (the rest of one record).
struct Counted<'r, R: BufRead + ?Sized> {
    input: &'r mut R,
    left: u64,
}

impl<R: BufRead + ?Sized> Counted<'_, R> {
    fn byte(&mut self) -> Result<u8, FieldError> {
        if self.left == 0 {
            return Err(FieldError::Short);
        }
        let buf = self
            .input
            .fill_buf()
            .map_err(|e| FieldError::Decode(decode_error(e)))?;
        let Some(&b) = buf.first() else {
            return Err(FieldError::Short);
        };
        self.input.consume(1);
        self.left -= 1;
        Ok(b)
    }

    fn uvarint(&mut self, max_bytes: u32) -> Result<u64, FieldError> {
        let mut v = 0u64;
        for i in 0..max_bytes {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(FieldError::Short)
    }

    fn varint(&mut self) -> Result<i32, FieldError> {
        let v = self.uvarint(5)? as u32;
        Ok(((v >> 1) as i32) ^ -((v & 1) as i32))
    }

    fn varlong(&mut self) -> Result<i64, FieldError> {
        let v = self.uvarint(10)?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    /// Skips `n` bytes without keeping them.
    fn skip(&mut self, n: u64) -> Result<(), FieldError> {
        if n > self.left {
            return Err(FieldError::Short);
        }
        let mut todo = n;
        while todo > 0 {
            let buf = self
                .input
                .fill_buf()
                .map_err(|e| FieldError::Decode(decode_error(e)))?;
            if buf.is_empty() {
                return Err(FieldError::Short);
            }
            let step = buf.len().min(usize::try_from(todo).unwrap_or(usize::MAX));
            self.input.consume(step);
            todo -= step as u64;
        }
        self.left -= n;
        Ok(())
    }
}

/// Snappy as Kafka's clients write it: xerial's framing (a header, then blocks each preceded by
/// its 4-byte length), or one raw snappy block. One block is held decompressed at a time.
struct SnappyReader<'a> {
    input: &'a [u8],
    framed: bool,
    started: bool,
    block: Vec<u8>,
    pos: usize,
    decoder: snap::raw::Decoder,
}

impl<'a> SnappyReader<'a> {
    fn new(input: &'a [u8]) -> Self {
        let framed = input.len() >= XERIAL_HEADER_LEN && input[..8] == XERIAL_MAGIC;
        SnappyReader {
            input: if framed {
                &input[XERIAL_HEADER_LEN..]
            } else {
                input
            },
            framed,
            started: false,
            block: Vec::new(),
            pos: 0,
            decoder: snap::raw::Decoder::new(),
        }
    }

    /// Decompresses the next block into `self.block`; false at the end of the input.
    fn next_block(&mut self) -> io::Result<bool> {
        let chunk = if self.framed {
            if self.input.is_empty() {
                return Ok(false);
            }
            if self.input.len() < 4 {
                return Err(invalid_data("truncated snappy block length"));
            }
            let len =
                u32::from_be_bytes([self.input[0], self.input[1], self.input[2], self.input[3]])
                    as usize;
            let rest = &self.input[4..];
            if len > rest.len() {
                return Err(invalid_data("snappy block past the end of the batch"));
            }
            let (chunk, after) = rest.split_at(len);
            self.input = after;
            chunk
        } else {
            if self.started {
                return Ok(false);
            }
            self.started = true;
            self.input
        };
        let n = snap::raw::decompress_len(chunk).map_err(|e| invalid_data(&e.to_string()))?;
        if n > SNAPPY_BLOCK_MAX {
            return Err(invalid_data(&format!(
                "snappy block of {n} bytes (at most {SNAPPY_BLOCK_MAX})"
            )));
        }
        self.block.clear();
        self.block.resize(n, 0);
        self.decoder
            .decompress(chunk, &mut self.block)
            .map_err(|e| invalid_data(&e.to_string()))?;
        self.pos = 0;
        Ok(true)
    }
}

fn invalid_data(m: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, m.to_string())
}

impl Read for SnappyReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.block.len() {
            if !self.next_block()? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.block.len() - self.pos);
        out[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
