//! Segmented, crash-safe partition logs for Runnel.
//!
//! This crate owns the on-disk layout of one partition (a directory of Kafka-style segment files,
//! sparse offset and time indexes, aborted-transaction indexes, idempotent and transactional
//! producer state snapshots, the persisted log start offset, the leader epoch cache and a
//! clean-shutdown marker), offset assignment on append, appends of replicated batches and
//! truncation for followers, crash recovery on open, reads by offset and timestamp, the last
//! stable offset and the aborted transactions a `read_committed` fetch needs, retention and
//! compaction. It must never speak the network protocol, map
//! its errors to Kafka error codes (the broker does that), decide replication or leadership, use
//! `unsafe`, or panic on any file content or client-provided batch bytes: corrupt files end in
//! truncation at the last valid batch or a clear error.
//!
//! # Durability
//!
//! [`PartitionLog::append`] writes the batch with `pwrite` into the OS page cache before
//! returning, so an acknowledged append survives the process being killed (including SIGKILL)
//! but not a machine crash or power loss. Data is fsynced (log, indexes, directory) when
//! `flush.messages` records have accumulated since the last flush, when [`PartitionLog::tick`]
//! sees that the oldest unflushed append is at least `flush.ms` old, on [`PartitionLog::flush`],
//! and on [`PartitionLog::close`]. A rolled segment is not fsynced on the append path (that
//! could stall appends for seconds); its files are queued and handed out by
//! [`PartitionLog::take_pending_syncs`] to the caller's background task (the broker syncs them
//! within `log.flush.scheduler.interval.ms`), and any still queued are synced by `flush`. With Kafka's
//! defaults (`flush.messages = u64::MAX`, `flush.ms = i64::MAX`) durability across machine
//! crashes comes from replication, as in Kafka.
//!
//! [`PartitionLog::append_replicated`] (a follower copying the leader's batches) has the same
//! durability as `append`. The leader epoch checkpoint is replaced atomically and fsynced
//! whenever the cache changes: before the first batch of a new epoch is written (a crash in
//! between leaves an entry at the log end, which opening drops), on truncation and when the log
//! start offset rises. [`PartitionLog::truncate_to`] fsyncs the truncated segment, so a machine
//! crash cannot resurrect truncated records under later appends;
//! [`PartitionLog::truncate_fully_and_start_at`] orders its deletions so that a crash leaves
//! either a prefix of the old log or the new empty one.
//!
//! # Files in a partition directory
//!
//! - `<base offset, 20 digits>.log`: record batches exactly as produced (compressed batches stay
//!   compressed), with base offset, and for `LogAppendTime` the timestamp type and max timestamp,
//!   patched in place.
//! - `<base>.index`: sparse offset index, entries of (relative offset u32 BE, position u32 BE),
//!   one per `index.interval.bytes` of log.
//! - `<base>.timeindex`: entries of (max timestamp so far i64 BE, relative offset u32 BE) where
//!   the offset is the base offset of the batch that first reached that timestamp.
//! - `<base>.txnindex`: the transactions aborted by markers in that segment, in Kafka's format
//!   (34-byte big-endian entries: version 0, producer id, first offset, last offset = the
//!   marker's, last stable offset right after the abort). Created with its first entry.
//! - `<offset>.snapshot`: producer state as of `offset` (crc32c BE + JSON): per producer id its
//!   epoch, last five batches, last activity, the coordinator epoch of its last marker and the
//!   first offset of its open transaction; and the completed transactions whose marker may not
//!   be below the high watermark yet (they hold the last stable offset back until
//!   [`PartitionLog::on_high_watermark`] passes them). Older snapshots without these still load.
//! - `log-start-offset`: the log start offset raised by DeleteRecords/retention (written via
//!   tmp + rename).
//! - `leader-epoch-checkpoint`: the leader epoch cache in Kafka's format (`0`, the entry count,
//!   then `<epoch> <start offset>` lines). On open it is cut to the recovered log (entries at or
//!   above the log end go, the front is cut at the log start offset); when it is missing (a log
//!   written before the cache existed) or unreadable it is rebuilt from the batch headers.
//! - `cleaner-offset-checkpoint`: the log cleaner's first dirty offset and the time the
//!   earliest kept tombstone may go (see "Log compaction").
//! - `<base>.{log,index,timeindex,txnindex}.cleaned` / `.swap`: a clean in progress; finished
//!   or discarded on open.
//! - `.clean_shutdown`: written by [`PartitionLog::close`], removed on open. Without it every
//!   segment holding offsets at or above the partition's recovery point (the caller keeps it, in
//!   Kafka's `recovery-point-offset-checkpoint`; every segment when it is unknown) is fully
//!   re-validated (length + CRC of every batch) and truncated at the first bad batch, with its
//!   indexes rebuilt; the segments after a truncated one are deleted. The recovery point moves
//!   to the log end on [`PartitionLog::flush`] and to a roll's offset once the rolled segment is
//!   synced ([`PartitionLog::take_pending_syncs_through`], [`PartitionLog::mark_flushed`]).
//!
//! # Transactions
//!
//! A transactional data batch opens a transaction for its producer unless one is open; an
//! end-transaction marker (a control batch, see
//! [`runnel_protocol::batch::encode_end_txn_marker`]) closes it. On the leader path
//! ([`PartitionLog::append`]) a non-transactional batch from a producer with an open
//! transaction is refused with [`StorageError::InvalidTxnState`], a marker from an older
//! producer epoch with [`StorageError::InvalidProducerEpoch`] and one from an older
//! coordinator epoch with [`StorageError::TransactionCoordinatorFenced`]; a control batch that
//! is not a marker is [`StorageError::InvalidRecord`]. A marker for a producer without an open
//! transaction is appended and closes nothing. Follower appends apply the same state changes
//! without the checks. A producer with an open transaction is never expired.
//!
//! [`PartitionLog::last_stable_offset`] takes the high watermark (which this crate does not
//! know) and returns the smaller of it and the first offset of the oldest transaction that is
//! open or whose marker is not below the high watermark (at least the log start offset).
//! [`PartitionLog::on_high_watermark`] lets the log forget completed transactions as the high
//! watermark passes their markers. An aborted transaction is indexed in the `.txnindex` of the
//! segment its marker is written to; [`PartitionLog::aborted_transactions`] answers the
//! `aborted_transactions` of a `read_committed` fetch.
//!
//! Producer state is replayed from the newest snapshot (after an unclean shutdown, the newest at
//! or below the first segment validated in recovery) by reading batch headers and the bodies of
//! control batches; the replay rewrites the `.txnindex` entries of the part it covers, so they
//! match the log after recovery or truncation. Truncation below a marker reopens its
//! transaction.
//!
//! # Log compaction
//!
//! With `cleanup.policy=compact` the log is compacted by a cleaner the caller drives
//! ([`PartitionLog::cleanable`], [`PartitionLog::prepare_clean`], [`CleanTask::run`] without
//! the log's lock, [`PartitionLog::finish_clean`]); the `cleaner` module documents what it
//! keeps (latest record per key, tombstones for `delete.retention.ms` after their batch time,
//! empty batch headers for idempotent producers, transactions), the crash-safe swap and
//! recovery. Nothing at or above the last stable offset is cleaned. Offsets
//! never move, so a compacted log has offset gaps: reads and timestamp lookups at a removed
//! offset return the next batch, follower appends accept gaps and empty batches, and
//! recovery accepts them. Keyless records are refused on append to a compacted log
//! (`InvalidRecord`).
//!
//! # Known limits
//!
//! - Index contents live in memory (8 bytes per offset-index entry, 12 per time-index entry) and
//!   are mirrored to the index files; nothing is memory-mapped.
//! - Opening with the marker trusts the index files, checking only their shape and the batches
//!   after the last offset-index entry (the last batch must end at the file end); a wrong middle
//!   entry surfaces as a `CorruptRecord` error on read, not a panic.
//! - The cleaner removes a marker whose transaction has no data left once the marker is
//!   `delete.retention.ms` old, counted from its timestamp; Kafka counts from the first clean
//!   that found it removable and records that in the batch (attribute bit 6), which this crate
//!   never writes.
//! - KIP-890 produce verification (is the partition part of the producer's transaction?) is not
//!   done here; a transactional batch opens a transaction whatever the coordinator knows.
//! - Truncating into an older segment replays producer state from the newest snapshot at or
//!   below the new end; only the last two snapshots are kept, so that can mean reading batch
//!   headers back to the first segment.
//! - The `segment.ms` clock of the active segment restarts when the log is opened.
//! - `max_timestamp` may name a record below the log start offset until its segment is deleted.

mod cleaner;
mod epoch;
mod partition;
mod producer;
mod segment;
#[cfg(test)]
mod tests;
mod txn_index;

use std::path::PathBuf;

pub use cleaner::{CleanStats, CleanTask, Cleanable, CleanedLog};
pub use partition::{ActiveProducer, AppendOutcome, PartitionLog};
pub use producer::TxnVerification;

/// Per-partition log configuration, named after Kafka's topic configs.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes`: roll when the active segment would grow beyond this.
    pub segment_bytes: u64,
    /// `segment.ms`: roll when the active segment's first append is this old.
    pub segment_ms: i64,
    /// `segment.index.bytes`: max size of an index file; roll when the index is full.
    pub segment_index_bytes: u64,
    /// `index.interval.bytes`: bytes of log between two offset-index entries.
    pub index_interval_bytes: u64,
    /// `max.message.bytes`: largest batch accepted.
    pub max_message_bytes: u32,
    /// `retention.ms`; -1 = unlimited.
    pub retention_ms: i64,
    /// `retention.bytes`; -1 = unlimited.
    pub retention_bytes: i64,
    /// `message.timestamp.type = LogAppendTime`.
    pub log_append_time: bool,
    /// `flush.messages`: fsync after this many records.
    pub flush_messages: u64,
    /// `flush.ms`: fsync when the oldest unflushed append is this old.
    pub flush_ms: i64,
    /// `cleanup.policy` contains `delete`: [`PartitionLog::enforce_retention`] applies
    /// `retention.ms` and `retention.bytes`. Without it only segments below the log start
    /// offset are deleted.
    pub cleanup_delete: bool,
    /// `cleanup.policy` contains `compact`: the log is compacted by the cleaner
    /// ([`PartitionLog::prepare_clean`]) and every produced record must have a key.
    pub cleanup_compact: bool,
    /// `delete.retention.ms`: how long a tombstone (a record with a null value) is kept after
    /// its batch's timestamp (see the crate docs, "Log compaction").
    pub delete_retention_ms: i64,
    /// `min.cleanable.dirty.ratio`: dirty bytes / cleanable bytes above which the log is
    /// worth cleaning.
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms`: segments holding a record newer than this are not cleaned.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a log whose oldest dirty batch is older than this is cleaned
    /// whatever its dirty ratio, and its active segment is rolled once it is this old.
    pub max_compaction_lag_ms: i64,
    /// Idle producer ids are forgotten after this long (`producer.id.expiration.ms`).
    pub producer_id_expiration_ms: i64,
    /// How often idle producer ids are looked for
    /// (`producer.id.expiration.check.interval.ms`).
    pub producer_id_expiration_check_interval_ms: i64,
}

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * DAY_MS,
            segment_index_bytes: 10 * 1024 * 1024,
            index_interval_bytes: 4096,
            max_message_bytes: 1_048_588,
            retention_ms: 7 * DAY_MS,
            retention_bytes: -1,
            log_append_time: false,
            flush_messages: u64::MAX,
            flush_ms: i64::MAX,
            cleanup_delete: true,
            cleanup_compact: false,
            delete_retention_ms: DAY_MS,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            producer_id_expiration_ms: DAY_MS,
            producer_id_expiration_check_interval_ms: 10 * 60 * 1000,
        }
    }
}

/// Errors returned by the storage layer. The broker maps them to Kafka error codes.
#[derive(thiserror::Error, Debug)]
pub enum StorageError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Bad CRC or truncated batch (Kafka `CORRUPT_MESSAGE`).
    #[error("corrupt record: {0}")]
    CorruptRecord(String),
    /// Structurally wrong: more than one batch, magic != 2, bad counts (Kafka `INVALID_RECORD`).
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    RecordTooLarge { size: usize, max: u32 },
    #[error("out of order sequence: {0}")]
    OutOfOrderSequence(String),
    #[error("invalid producer epoch: {0}")]
    InvalidProducerEpoch(String),
    /// A non-transactional batch from a producer whose transaction on this partition is open
    /// (Kafka `INVALID_TXN_STATE`).
    #[error("invalid transaction state: {0}")]
    InvalidTxnState(String),
    /// A transactional batch that would open a transaction, appended without the verification
    /// its leader asked for ([`TxnVerification::Required`] without a guard): the caller asks
    /// the producer's transaction coordinator, then appends again with the guard.
    #[error("producer {producer_id}'s transaction on this partition needs verification")]
    TxnVerificationNeeded { producer_id: i64 },
    /// A marker from a transaction coordinator whose epoch is below the one of the last marker
    /// for that producer (Kafka `TRANSACTION_COORDINATOR_FENCED`).
    #[error("transaction coordinator fenced: {0}")]
    TransactionCoordinatorFenced(String),
    #[error("offset {offset} out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start: i64,
        log_end: i64,
    },
    /// A replicated batch does not start at the log end ([`PartitionLog::append_replicated`]):
    /// the follower's fetch position and its log disagree. Nothing was appended.
    #[error("replicated batch starts at offset {got}, the log ends at {expected}")]
    OffsetMismatch { expected: i64, got: i64 },
}

impl From<runnel_protocol::batch::BatchError> for StorageError {
    fn from(e: runnel_protocol::batch::BatchError) -> Self {
        use runnel_protocol::batch::BatchError;
        match e {
            BatchError::Truncated | BatchError::CorruptCrc { .. } | BatchError::Corrupt(_) => {
                StorageError::CorruptRecord(e.to_string())
            }
            BatchError::UnsupportedMagic(_) | BatchError::InvalidRecord(_) => {
                StorageError::InvalidRecord(e.to_string())
            }
        }
    }
}

pub(crate) fn file_name(offset: i64, ext: &str) -> String {
    format!("{offset:020}.{ext}")
}

pub(crate) fn file_path(dir: &std::path::Path, offset: i64, ext: &str) -> PathBuf {
    dir.join(file_name(offset, ext))
}

/// Parses `<20 digits>.<ext>` file names.
pub(crate) fn parse_file_name(name: &str, ext: &str) -> Option<i64> {
    let stem = name.strip_suffix(ext)?.strip_suffix('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}
