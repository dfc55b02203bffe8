//! Unit tests for the partition log.

use std::fs;

use bytes::{Bytes, BytesMut};
use runnel_protocol::batch;
use runnel_protocol::kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::{file_path, LogConfig, PartitionLog, StorageError, TxnVerification};

/// Builds one batch of `n` records with timestamps `ts, ts+1, ...` (or `timestamps` if given).
struct B {
    n: usize,
    ts: i64,
    timestamps: Option<Vec<i64>>,
    compression: Compression,
    pid: i64,
    epoch: i16,
    seq: i32,
    value_len: usize,
    transactional: bool,
    control: bool,
}

impl Default for B {
    fn default() -> Self {
        B {
            n: 1,
            ts: 1_000,
            timestamps: None,
            compression: Compression::None,
            pid: -1,
            epoch: -1,
            seq: -1,
            value_len: 10,
            transactional: false,
            control: false,
        }
    }
}

impl B {
    fn build(&self) -> Vec<u8> {
        let records: Vec<Record> = (0..self.n)
            .map(|i| Record {
                transactional: self.transactional,
                control: self.control,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: self.pid,
                producer_epoch: self.epoch,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: self.seq.wrapping_add(i as i32),
                timestamp: self
                    .timestamps
                    .as_ref()
                    .map_or(self.ts + i as i64, |t| t[i]),
                key: None,
                value: Some(Bytes::from(vec![b'x'; self.value_len])),
                headers: Default::default(),
            })
            .collect();
        encode_records(&records, self.compression)
    }
}

/// One v2 batch holding `records`.
fn encode_records(records: &[Record], compression: Compression) -> Vec<u8> {
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

fn simple(n: usize, ts: i64) -> Vec<u8> {
    B {
        n,
        ts,
        ..B::default()
    }
    .build()
}

fn idem(pid: i64, epoch: i16, seq: i32, n: usize) -> Vec<u8> {
    B {
        n,
        pid,
        epoch,
        seq,
        ..B::default()
    }
    .build()
}

fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 128,
        ..LogConfig::default()
    }
}

/// Decodes `bytes` and returns all record offsets.
fn offsets(bytes: &Bytes) -> Vec<i64> {
    let mut b = bytes.clone();
    RecordBatchDecoder::decode_all(&mut b)
        .expect("decode")
        .into_iter()
        .flat_map(|s| s.records.into_iter().map(|r| r.offset))
        .collect()
}

fn batch_headers(bytes: &[u8]) -> Vec<batch::BatchHeader> {
    batch::split_batches(bytes)
        .map(|r| r.expect("batch").0)
        .collect()
}

fn last_segment_log(log: &PartitionLog) -> std::path::PathBuf {
    let base = *log.segment_base_offsets().last().unwrap();
    file_path(log.dir(), base, "log")
}

/// Appends 100 batches of 1..=3 records; returns the (base, last) of each.
fn fill(log: &mut PartitionLog, count: usize) -> Vec<(i64, i64)> {
    (0..count)
        .map(|i| {
            let o = log
                .append(&simple(1 + i % 3, 1_000 + i as i64 * 10), 0)
                .unwrap();
            (o.base_offset, o.last_offset)
        })
        .collect()
}

#[test]
fn append_read_round_trip_across_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_segments(), 0).unwrap();
    assert_eq!(log.log_end_offset(), 0);
    let ranges = fill(&mut log, 100);
    let mut expected = 0;
    for (base, last) in &ranges {
        assert_eq!(*base, expected);
        expected = last + 1;
    }
    assert_eq!(log.log_end_offset(), expected);
    assert!(log.segment_count() > 3, "{} segments", log.segment_count());
    assert!(log.segments().iter().any(|s| s.index_len() > 0));
    // Reading everything, segment by segment, yields every offset exactly once.
    let mut next = 0;
    let mut seen = Vec::new();
    while next < log.log_end_offset() {
        let data = log.read(next, 1 << 20, i64::MAX, false).unwrap();
        assert!(!data.is_empty());
        for h in batch_headers(&data) {
            batch::validate_batch(&data[..]).ok();
            next = h.last_offset() + 1;
        }
        seen.extend(offsets(&data));
    }
    assert_eq!(seen, (0..expected).collect::<Vec<_>>());
    let leo = log.log_end_offset();
    assert!(log.read(leo, 100, i64::MAX, true).unwrap().is_empty());
    assert!(matches!(
        log.read(leo + 1, 100, i64::MAX, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn reads_continue_into_following_segments_within_max_bytes_and_the_upper_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_segments(), 0).unwrap();
    let end = fill(&mut log, 100).last().unwrap().1 + 1;
    assert!(log.segment_count() > 3);
    // One read returns every batch, across all segments.
    let all = log.read(0, 1 << 20, i64::MAX, false).unwrap();
    assert_eq!(offsets(&all), (0..end).collect::<Vec<_>>());
    for h in batch_headers(&all) {
        assert!(h.base_offset < end);
    }
    // Up to the upper bound only, even when it lies in a later segment.
    let bound = end - 5;
    let data = log.read(0, 1 << 20, bound, false).unwrap();
    let last = batch_headers(&data).last().unwrap().last_offset();
    assert!(batch_headers(&data).iter().all(|h| h.base_offset < bound));
    assert!(last + 1 >= bound - 3 && last < end, "stopped at {last}");
    // Within max_bytes: whole batches only, never more than asked (after the first).
    let seg0 = log.segments()[0].size as usize;
    let data = log.read(0, seg0 + 100, i64::MAX, false).unwrap();
    assert!(
        data.len() > seg0 && data.len() <= seg0 + 100,
        "{}",
        data.len()
    );
    assert_eq!(
        offsets(&data),
        (0..batch_headers(&data).last().unwrap().last_offset() + 1).collect::<Vec<_>>()
    );
}

#[test]
fn index_lookup_finds_the_batch_for_every_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_segments(), 0).unwrap();
    let ranges = fill(&mut log, 150);
    for (base, last) in ranges {
        for off in base..=last {
            // max_bytes 1 with min_one: exactly the batch containing `off`.
            let data = log.read(off, 1, i64::MAX, true).unwrap();
            let hs = batch_headers(&data);
            assert_eq!(hs.len(), 1, "offset {off}");
            assert_eq!((hs[0].base_offset, hs[0].last_offset()), (base, last));
            batch::validate_batch(&data).unwrap();
            // Without min_one nothing fits.
            assert!(log.read(off, 1, i64::MAX, false).unwrap().is_empty());
        }
    }
}

#[test]
fn read_respects_upper_bound_and_max_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
    for _ in 0..10 {
        log.append(&simple(2, 0), 0).unwrap();
    }
    let data = log.read(0, 1 << 20, 6, false).unwrap();
    assert_eq!(offsets(&data), (0..6).collect::<Vec<_>>());
    // High watermark at 0: nothing, even with min_one.
    assert!(log.read(0, 1 << 20, 0, true).unwrap().is_empty());
    let one = simple(2, 0).len();
    let data = log.read(3, one * 2 + 1, i64::MAX, false).unwrap();
    assert_eq!(offsets(&data), vec![2, 3, 4, 5]);
}

#[test]
fn recovery_from_truncated_tail() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_segments();
    let (leo_before_last, last_len) = {
        let mut log = PartitionLog::open(dir.path(), cfg.clone(), 0).unwrap();
        fill(&mut log, 40);
        let before = log.log_end_offset();
        let b = simple(3, 5_000);
        log.append(&b, 0).unwrap();
        let path = last_segment_log(&log);
        drop(log); // crash: no close()
        let len = fs::metadata(&path).unwrap().len();
        let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - (b.len() as u64 / 2)).unwrap();
        (before, b.len())
    };
    assert!(last_len > 0);
    let mut log = PartitionLog::open(dir.path(), cfg, 0).unwrap();
    assert_eq!(log.log_end_offset(), leo_before_last);
    let data = log.read(0, 1 << 20, i64::MAX, false).unwrap();
    assert_eq!(offsets(&data)[0], 0);
    let o = log.append(&simple(1, 6_000), 0).unwrap();
    assert_eq!(o.base_offset, leo_before_last);
    let data = log.read(o.base_offset, 1 << 20, i64::MAX, true).unwrap();
    assert_eq!(offsets(&data), vec![leo_before_last]);
}

/// Flips a byte in the middle of segment `i`'s log file.
fn corrupt_segment(log: &PartitionLog, i: usize) -> std::path::PathBuf {
    let base = log.segment_base_offsets()[i];
    let path = file_path(log.dir(), base, "log");
    let mut bytes = fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    fs::write(&path, &bytes).unwrap();
    path
}

#[test]
fn after_an_unclean_shutdown_every_segment_above_the_recovery_point_is_validated() {
    let cfg = small_segments();
    // A corrupt batch in a middle segment, with no recovery point known: the whole log is
    // validated, the log ends before the bad batch and the later segments are gone.
    let dir = tempfile::tempdir().unwrap();
    let (bases, segment_end) = {
        let mut log = PartitionLog::open(dir.path(), cfg.clone(), 0).unwrap();
        fill(&mut log, 60);
        let bases = log.segment_base_offsets();
        assert!(bases.len() >= 4, "{bases:?}");
        corrupt_segment(&log, 1);
        (bases.clone(), bases[2])
    };
    let log = PartitionLog::open_from_recovery_point(dir.path(), cfg.clone(), 0, None).unwrap();
    assert!(
        log.log_end_offset() < segment_end,
        "{} >= {segment_end}",
        log.log_end_offset()
    );
    assert!(log.log_end_offset() >= bases[1]);
    assert_eq!(log.segment_base_offsets(), bases[..2].to_vec());
    assert_eq!(log.recovery_point(), log.log_end_offset());
    for off in log.log_start_offset()..log.log_end_offset() {
        let data = log.read(off, 1, i64::MAX, true).unwrap();
        assert!(offsets(&data).contains(&off), "offset {off} unreadable");
    }
    drop(log);

    // The same damage below a known recovery point is not looked for (the point says those
    // segments were synced): only the segments from the one holding the point are validated.
    let dir = tempfile::tempdir().unwrap();
    let (bases, end) = {
        let mut log = PartitionLog::open(dir.path(), cfg.clone(), 0).unwrap();
        fill(&mut log, 60);
        log.flush().unwrap();
        assert_eq!(log.recovery_point(), log.log_end_offset());
        corrupt_segment(&log, 1);
        (log.segment_base_offsets(), log.log_end_offset())
    };
    let rp = bases[2];
    let log = PartitionLog::open_from_recovery_point(dir.path(), cfg.clone(), 0, Some(rp)).unwrap();
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(log.segment_base_offsets(), bases);
    drop(log);

    // A clean shutdown trusts everything.
    let dir = tempfile::tempdir().unwrap();
    let end = {
        let mut log = PartitionLog::open(dir.path(), cfg.clone(), 0).unwrap();
        fill(&mut log, 60);
        let end = log.log_end_offset();
        log.close().unwrap();
        end
    };
    let log = PartitionLog::open_from_recovery_point(dir.path(), cfg, 0, Some(0)).unwrap();
    assert_eq!(log.log_end_offset(), end);
}

#[test]
fn the_recovery_point_follows_flushes_and_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_segments(), 0).unwrap();
    assert_eq!(log.recovery_point(), 0);
    fill(&mut log, 60);
    // Rolled segments are synced by the caller, then reported.
    let (files, through) = log.take_pending_syncs_through();
    assert!(!files.is_empty());
    assert_eq!(through, *log.segment_base_offsets().last().unwrap());
    assert_eq!(log.recovery_point(), 0);
    for f in &files {
        f.sync_data().unwrap();
    }
    log.mark_flushed(through);
    assert_eq!(log.recovery_point(), through);
    log.flush().unwrap();
    assert_eq!(log.recovery_point(), log.log_end_offset());
    log.truncate_to(10).unwrap();
    assert!(log.recovery_point() <= 10);
}

#[test]
fn recovery_from_corrupted_tail() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_segments();
    let before = {
        let mut log = PartitionLog::open(dir.path(), cfg.clone(), 0).unwrap();
        fill(&mut log, 41);
        let before = log.log_end_offset();
        log.append(&simple(2, 5_000), 0).unwrap();
        let path = last_segment_log(&log);
        drop(log);
        let mut bytes = fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 3] ^= 0xff;
        fs::write(&path, bytes).unwrap();
        before
    };
    let mut log = PartitionLog::open(dir.path(), cfg, 0).unwrap();
    assert_eq!(log.log_end_offset(), before);
    for off in 0..before {
        let data = log.read(off, 1, i64::MAX, true).unwrap();
        assert!(offsets(&data).contains(&off));
    }
    assert_eq!(log.append(&simple(1, 0), 0).unwrap().base_offset, before);
}

#[test]
fn garbage_segment_contents_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = PartitionLog::open(dir.path(), small_segments(), 0).unwrap();
        fill(&mut log, 30);
        log.close().unwrap();
    }
    // Scribble over every file in the directory, clean marker kept.
    let mut seed = 12345u64;
    for e in fs::read_dir(dir.path()).unwrap() {
        let p = e.unwrap().path();
        let mut bytes = fs::read(&p).unwrap();
        for _ in 0..(bytes.len() / 50).max(1) {
            if bytes.is_empty() {
                break;
            }
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let i = (seed >> 33) as usize % bytes.len();
            bytes[i] ^= (seed >> 20) as u8 | 1;
        }
        fs::write(&p, bytes).unwrap();
    }
    // Either opens (with truncated/rebuilt data) or fails cleanly; never panics.
    if let Ok(mut log) = PartitionLog::open(dir.path(), small_segments(), 0) {
        let start = log.log_start_offset();
        let end = log.log_end_offset();
        for off in start..end {
            let _ = log.read(off, 1000, i64::MAX, true);
        }
        let _ = log.offset_for_timestamp(0);
        let _ = log.max_timestamp();
        let _ = log.append(&simple(1, 0), 0);
    }
}

#[test]
fn clean_shutdown_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_segments();
    let leo = {
        let mut log = PartitionLog::open(dir.path(), cfg.clone(), 0).unwrap();
        fill(&mut log, 50);
        let leo = log.log_end_offset();
        log.close().unwrap();
        leo
    };
    assert!(dir.path().join(".clean_shutdown").exists());
    let mut log = PartitionLog::open(dir.path(), cfg.clone(), 0).unwrap();
    assert!(!dir.path().join(".clean_shutdown").exists());
    assert_eq!(log.log_end_offset(), leo);
    assert_eq!(log.max_timestamp().map(|m| m.0), Some(1_000 + 49 * 10 + 1));
    assert_eq!(log.append(&simple(1, 0), 0).unwrap().base_offset, leo);
    // A lost index file on a clean open is rebuilt.
    let first = log.segment_base_offsets()[0];
    log.close().unwrap();
    fs::write(file_path(dir.path(), first, "index"), b"bad").unwrap();
    let log = PartitionLog::open(dir.path(), cfg, 0).unwrap();
    assert_eq!(log.log_end_offset(), leo + 1);
    for off in 0..leo + 1 {
        assert!(offsets(&log.read(off, 1, i64::MAX, true).unwrap()).contains(&off));
    }
}

#[test]
fn empty_dir_is_empty_log_and_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topic-0");
    let log = PartitionLog::open(&path, LogConfig::default(), 0).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    assert!(log.read(0, 100, i64::MAX, true).unwrap().is_empty());
    assert_eq!(log.offset_for_timestamp(0).unwrap(), None);
    assert_eq!(log.max_timestamp(), None);
    assert_eq!(log.size_bytes(), 0);
    assert_eq!(log.dir(), path.as_path());
}

#[test]
fn retention_by_time_deletes_only_old_inactive_segments() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        retention_ms: 1_000,
        ..small_segments()
    };
    let mut log = PartitionLog::open(dir.path(), cfg, 0).unwrap();
    for i in 0..60 {
        log.append(&simple(1, i * 100), 0).unwrap();
    }
    let segs = log.segment_count();
    assert!(segs > 3);
    // Nothing is older than 1s at t = 6_000 except segments whose max ts < 5_000.
    let deleted = log.enforce_retention(6_000).unwrap();
    assert!(deleted > 0 && deleted < segs);
    let start = log.log_start_offset();
    assert_eq!(start, log.segment_base_offsets()[0]);
    let (off, ts) = log.offset_for_timestamp(0).unwrap().unwrap();
    assert_eq!(off, start);
    assert!(ts >= 4_000 - 1_000, "ts {ts}");
    // Far in the future: everything but the active segment goes.
    log.enforce_retention(1_000_000).unwrap();
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.log_end_offset(), 60);
    assert!(matches!(
        log.read(0, 100, i64::MAX, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn retention_by_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        retention_ms: -1,
        retention_bytes: 2048,
        ..small_segments()
    };
    let mut log = PartitionLog::open(dir.path(), cfg, 0).unwrap();
    fill(&mut log, 100);
    let before = log.size_bytes();
    assert!(before > 4096);
    let deleted = log.enforce_retention(0).unwrap();
    assert!(deleted > 0);
    assert!(log.size_bytes() <= 2048 + 1024, "{}", log.size_bytes());
    // Deleting one more whole segment would go below retention.bytes.
    let oldest = log.segments()[0].size;
    assert!(log.size_bytes() - oldest < 2048 || log.segment_count() == 1);
    assert_eq!(log.log_start_offset(), log.segment_base_offsets()[0]);
    assert_eq!(log.enforce_retention(0).unwrap(), 0);
}

#[test]
fn delete_records_before_raises_start_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_segments();
    let mut log = PartitionLog::open(dir.path(), cfg.clone(), 0).unwrap();
    fill(&mut log, 60);
    let leo = log.log_end_offset();
    let segs = log.segment_count();
    let mid = leo / 2;
    assert_eq!(log.delete_records_before(mid).unwrap(), mid);
    assert!(log.segment_count() < segs);
    assert!(log.segment_base_offsets()[0] <= mid);
    assert!(matches!(
        log.read(mid - 1, 100, i64::MAX, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    // Reading from the new start returns the batch containing it.
    assert!(offsets(&log.read(mid, 1, i64::MAX, true).unwrap()).contains(&mid));
    // Lower values are no-ops; beyond the end is an error.
    assert_eq!(log.delete_records_before(1).unwrap(), mid);
    assert!(log.delete_records_before(leo + 1).is_err());
    // offset_for_timestamp never answers below the log start.
    assert!(log.offset_for_timestamp(0).unwrap().unwrap().0 >= mid);
    drop(log);
    let mut log = PartitionLog::open(dir.path(), cfg.clone(), 0).unwrap();
    assert_eq!(log.log_start_offset(), mid);
    // Deleting up to the end leaves one empty segment at the log end.
    assert_eq!(log.delete_records_before(leo).unwrap(), leo);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.size_bytes(), 0);
    assert_eq!(log.append(&simple(1, 0), 0).unwrap().base_offset, leo);
    log.close().unwrap();
    let log = PartitionLog::open(dir.path(), cfg, 0).unwrap();
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset()),
        (leo, leo + 1)
    );
}

#[test]
fn idempotent_producer_dedup_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
    log.append(&simple(2, 0), 0).unwrap(); // offsets 0, 1
    let a = log.append(&idem(7, 0, 0, 3), 0).unwrap();
    assert_eq!((a.base_offset, a.last_offset, a.duplicate), (2, 4, false));
    let b = log.append(&idem(7, 0, 3, 2), 0).unwrap();
    assert_eq!((b.base_offset, b.last_offset), (5, 6));
    // Retry of the first batch: original offsets, nothing appended.
    let dup = log.append(&idem(7, 0, 0, 3), 0).unwrap();
    assert!(dup.duplicate);
    assert_eq!((dup.base_offset, dup.last_offset), (2, 4));
    assert_eq!(log.log_end_offset(), 7);
    // Gap in sequence.
    assert!(matches!(
        log.append(&idem(7, 0, 9, 1), 0),
        Err(StorageError::OutOfOrderSequence(_))
    ));
    // Stale epoch after a bump.
    log.append(&idem(7, 1, 0, 1), 0).unwrap();
    assert!(matches!(
        log.append(&idem(7, 0, 5, 1), 0),
        Err(StorageError::InvalidProducerEpoch(_))
    ));
    // A new epoch must start at 0.
    assert!(matches!(
        log.append(&idem(7, 2, 4, 1), 0),
        Err(StorageError::OutOfOrderSequence(_))
    ));
    // Unknown producers may start anywhere.
    assert!(!log.append(&idem(8, 3, 1000, 1), 0).unwrap().duplicate);
    // Only the last 5 batches are remembered.
    for s in 1..=6 {
        log.append(&idem(7, 1, s, 1), 0).unwrap();
    }
    assert!(log.append(&idem(7, 1, 2, 1), 0).unwrap().duplicate);
    assert!(matches!(
        log.append(&idem(7, 1, 1, 1), 0),
        Err(StorageError::OutOfOrderSequence(_))
    ));
    assert_eq!(log.producer_count(), 2);
}

#[test]
fn idle_producer_ids_expire_and_stay_expired_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        producer_id_expiration_ms: 1_000,
        producer_id_expiration_check_interval_ms: 100,
        ..LogConfig::default()
    };
    let t0 = 1_700_000_000_000i64;
    let mut log = PartitionLog::open(dir.path(), config.clone(), t0).unwrap();
    log.append(&idem(1, 0, 0, 1), t0).unwrap();
    log.append(&idem(2, 0, 0, 1), t0 + 600).unwrap();
    log.tick(t0 + 999).unwrap();
    assert_eq!(log.producer_count(), 2);
    // The check runs at most once per interval: producer 1 is past its second, but not looked at.
    log.tick(t0 + 1_050).unwrap();
    assert_eq!(log.producer_count(), 2);
    // Producer 1 has been idle for 1.1 s; producer 2 for 500 ms.
    log.tick(t0 + 1_100).unwrap();
    assert_eq!(log.producer_count(), 1);
    // The expired producer's retry is no longer recognised: it is appended as new data.
    assert!(!log.append(&idem(1, 0, 0, 1), t0 + 1_150).unwrap().duplicate);
    assert_eq!(log.producer_count(), 2);
    // A snapshot keeps when each producer was last active.
    log.close().unwrap();
    let mut log = PartitionLog::open(dir.path(), config, t0 + 1_200).unwrap();
    assert_eq!(log.producer_count(), 2);
    log.tick(t0 + 1_600).unwrap();
    assert_eq!(log.producer_count(), 1);
    // Producer 1's state survived: its next sequence is accepted, a gap is not.
    assert!(log.append(&idem(1, 0, 1, 1), t0 + 1_650).is_ok());
    assert!(matches!(
        log.append(&idem(1, 0, 5, 1), t0 + 1_650),
        Err(StorageError::OutOfOrderSequence(_))
    ));
    log.tick(t0 + 2_700).unwrap();
    assert_eq!(log.producer_count(), 0);
}

#[test]
fn sequence_wraps_at_i32_max() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
    log.append(&idem(1, 0, i32::MAX - 1, 2), 0).unwrap();
    log.append(&idem(1, 0, 0, 1), 0).unwrap();
    assert!(log.append(&idem(1, 0, 0, 1), 0).unwrap().duplicate);
}

#[test]
fn producer_state_survives_clean_and_unclean_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_segments();
    {
        let mut log = PartitionLog::open(dir.path(), cfg.clone(), 0).unwrap();
        fill(&mut log, 20);
        log.append(&idem(5, 0, 0, 2), 0).unwrap();
        log.close().unwrap();
    }
    {
        let mut log = PartitionLog::open(dir.path(), cfg.clone(), 0).unwrap();
        let d = log.append(&idem(5, 0, 0, 2), 0).unwrap();
        assert!(d.duplicate);
        // More appends with rolls (snapshots at roll), then a crash.
        for s in 0..30 {
            log.append(&idem(5, 0, 2 + s, 1), 0).unwrap();
            log.append(&simple(3, 0), 0).unwrap();
        }
        drop(log);
    }
    let snaps = fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".snapshot")
        })
        .count();
    assert!((1..=2).contains(&snaps), "{snaps} snapshots");
    let mut log = PartitionLog::open(dir.path(), cfg.clone(), 0).unwrap();
    let leo = log.log_end_offset();
    let d = log.append(&idem(5, 0, 31, 1), 0).unwrap();
    assert!(d.duplicate);
    assert!(d.last_offset < leo);
    assert!(matches!(
        log.append(&idem(5, 0, 40, 1), 0),
        Err(StorageError::OutOfOrderSequence(_))
    ));
    assert!(!log.append(&idem(5, 0, 32, 1), 0).unwrap().duplicate);
    drop(log);
    // With every snapshot gone the state is rebuilt from the whole log.
    for e in fs::read_dir(dir.path()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "snapshot") {
            fs::remove_file(p).unwrap();
        }
    }
    let mut log = PartitionLog::open(dir.path(), cfg, 0).unwrap();
    assert!(log.append(&idem(5, 0, 32, 1), 0).unwrap().duplicate);
}

#[test]
fn truncation_drops_snapshot_beyond_log_end() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig::default();
    {
        let mut log = PartitionLog::open(dir.path(), cfg.clone(), 0).unwrap();
        log.append(&idem(9, 0, 0, 1), 0).unwrap();
        log.append(&idem(9, 0, 1, 1), 0).unwrap();
        log.close().unwrap();
    }
    // Simulate a crash that lost the last batch after the snapshot at offset 2 was written.
    fs::remove_file(dir.path().join(".clean_shutdown")).unwrap();
    let path = file_path(dir.path(), 0, "log");
    let len = fs::metadata(&path).unwrap().len();
    let one = idem(9, 0, 0, 1).len() as u64;
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - one + 5)
        .unwrap();
    let mut log = PartitionLog::open(dir.path(), cfg, 0).unwrap();
    assert_eq!(log.log_end_offset(), 1);
    // Sequence 1 is not a duplicate any more: it is the next expected one.
    let o = log.append(&idem(9, 0, 1, 1), 0).unwrap();
    assert!(!o.duplicate);
    assert_eq!(o.base_offset, 1);
}

#[test]
fn timestamps_exact_for_uncompressed_and_compressed() {
    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), small_segments(), 0).unwrap();
        // Batch k holds offsets 4k..4k+3 with timestamps 1000k + [5, 50, 20, 70].
        for k in 0..30i64 {
            let ts = vec![1000 * k + 5, 1000 * k + 50, 1000 * k + 20, 1000 * k + 70];
            let b = B {
                n: 4,
                timestamps: Some(ts),
                compression,
                ..B::default()
            }
            .build();
            log.append(&b, 0).unwrap();
        }
        assert!(log.segment_count() > 1 || compression != Compression::None);
        assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((0, 5)));
        assert_eq!(log.offset_for_timestamp(21).unwrap(), Some((1, 50)));
        assert_eq!(log.offset_for_timestamp(51).unwrap(), Some((3, 70)));
        assert_eq!(log.offset_for_timestamp(71).unwrap(), Some((4, 1005)));
        assert_eq!(
            log.offset_for_timestamp(17_030).unwrap(),
            Some((69, 17_050))
        );
        assert_eq!(
            log.offset_for_timestamp(29_070).unwrap(),
            Some((119, 29_070))
        );
        assert_eq!(log.offset_for_timestamp(29_071).unwrap(), None);
        assert_eq!(log.max_timestamp(), Some((29_070, 119)));
        // Compressed batches are stored as produced and decode with their assigned offsets.
        let mut all = Vec::new();
        let mut next = 0;
        while next < log.log_end_offset() {
            let data = log.read(next, 1 << 20, i64::MAX, true).unwrap();
            for h in batch_headers(&data) {
                assert_eq!(h.compression(), compression as u8);
                next = h.last_offset() + 1;
            }
            all.extend(offsets(&data));
        }
        assert_eq!(all, (0..120).collect::<Vec<_>>());
    }
}

#[test]
fn max_timestamp_picks_first_record_with_the_max() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
    log.append(&simple(3, 100), 0).unwrap();
    let b = B {
        n: 3,
        timestamps: Some(vec![50, 900, 900]),
        ..B::default()
    }
    .build();
    log.append(&b, 0).unwrap();
    log.append(&simple(2, 10), 0).unwrap();
    assert_eq!(log.max_timestamp(), Some((900, 4)));
    log.close().unwrap();
    let log = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
    assert_eq!(log.max_timestamp(), Some((900, 4)));
}

#[test]
fn log_append_time_patches_and_keeps_crc_valid() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        log_append_time: true,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(dir.path(), cfg, 0).unwrap();
    let o = log.append(&simple(3, 5), 77_000).unwrap();
    assert_eq!(o.log_append_time, 77_000);
    let o2 = log
        .append(
            &B {
                n: 2,
                compression: Compression::Lz4,
                ..B::default()
            }
            .build(),
            78_000,
        )
        .unwrap();
    assert_eq!(o2.base_offset, 3);
    let data = log.read(0, 1 << 20, i64::MAX, false).unwrap();
    let hs = batch_headers(&data);
    assert_eq!(hs.len(), 2);
    let first_len = hs[0].total_size();
    let h = batch::validate_batch(&data[..first_len]).unwrap();
    assert!(h.is_log_append_time());
    assert_eq!(h.max_timestamp, 77_000);
    assert!(batch::validate_batch(&data[first_len..])
        .unwrap()
        .is_log_append_time());
    let sets = RecordBatchDecoder::decode_all(&mut data.clone()).unwrap();
    assert_eq!(sets[0].records[0].timestamp_type, TimestampType::LogAppend);
    assert_eq!(log.offset_for_timestamp(77_500).unwrap(), Some((3, 78_000)));
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((0, 77_000)));
    assert_eq!(log.max_timestamp(), Some((78_000, 3)));
}

#[test]
fn rejects_bad_batches() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        max_message_bytes: 200,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(dir.path(), cfg, 0).unwrap();
    let big = B {
        value_len: 500,
        ..B::default()
    }
    .build();
    assert!(matches!(
        log.append(&big, 0),
        Err(StorageError::RecordTooLarge { max: 200, .. })
    ));
    let one = simple(1, 0);
    let mut two = one.clone();
    two.extend_from_slice(&one);
    assert!(matches!(
        log.append(&two, 0),
        Err(StorageError::InvalidRecord(_))
    ));
    let mut bad = one.clone();
    let n = bad.len();
    bad[n - 1] ^= 1;
    assert!(matches!(
        log.append(&bad, 0),
        Err(StorageError::CorruptRecord(_))
    ));
    assert!(matches!(
        log.append(&one[..n - 1], 0),
        Err(StorageError::CorruptRecord(_))
    ));
    let mut v1 = one.clone();
    v1[16] = 1;
    assert!(matches!(
        log.append(&v1, 0),
        Err(StorageError::InvalidRecord(_))
    ));
    assert!(log.append(&[], 0).is_err());
    assert_eq!(log.log_end_offset(), 0);
    // Garbage never panics.
    let mut seed = 7u64;
    for len in 0..300 {
        let g: Vec<u8> = (0..len)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                (seed >> 40) as u8
            })
            .collect();
        let _ = log.append(&g, 0);
    }
    assert_eq!(log.append(&one, 0).unwrap().base_offset, 0);
}

#[test]
fn compressed_batches_are_checked_down_to_their_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
    for compression in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let good = B {
            n: 3,
            compression,
            ..B::default()
        }
        .build();
        // A count (and last offset delta) that says 4 records where the batch holds 3.
        let mut lying = good.clone();
        lying[batch::RECORDS_COUNT_OFFSET..batch::RECORDS_COUNT_OFFSET + 4]
            .copy_from_slice(&4i32.to_be_bytes());
        lying[batch::LAST_OFFSET_DELTA_OFFSET..batch::LAST_OFFSET_DELTA_OFFSET + 4]
            .copy_from_slice(&3i32.to_be_bytes());
        let crc = batch::compute_crc(&lying);
        lying[batch::CRC_OFFSET..batch::CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        assert!(
            matches!(log.append(&lying, 0), Err(StorageError::InvalidRecord(_))),
            "{compression:?}"
        );
        // Compressed bytes that do not decode, with a valid CRC.
        let mut garbled = good.clone();
        let n = garbled.len();
        for b in &mut garbled[batch::BATCH_HEADER_LEN + 4..n] {
            *b = b.wrapping_mul(31).wrapping_add(7);
        }
        let crc = batch::compute_crc(&garbled);
        garbled[batch::CRC_OFFSET..batch::CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        assert!(
            matches!(
                log.append(&garbled, 0),
                Err(StorageError::CorruptRecord(_) | StorageError::InvalidRecord(_))
            ),
            "{compression:?}"
        );
        assert_eq!(log.log_end_offset(), 0, "{compression:?}");
    }
    let good = B {
        n: 3,
        compression: Compression::Zstd,
        ..B::default()
    }
    .build();
    log.append(&good, 0).unwrap();
    assert_eq!(log.log_end_offset(), 3);
}

#[test]
fn segment_ms_roll_and_flush_via_tick() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_ms: 1_000,
        flush_ms: 100,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(dir.path(), cfg, 0).unwrap();
    log.tick(10_000).unwrap(); // empty: no roll
    assert_eq!(log.segment_count(), 1);
    log.append(&simple(1, 0), 10_000).unwrap();
    log.tick(10_500).unwrap();
    assert_eq!(log.segment_count(), 1);
    log.tick(11_001).unwrap();
    assert_eq!(log.segment_base_offsets(), vec![0, 1]);
    // Time-based roll also happens on append.
    log.append(&simple(1, 0), 20_000).unwrap();
    log.append(&simple(1, 0), 21_500).unwrap();
    assert_eq!(log.segment_base_offsets(), vec![0, 1, 2]);
    let mut cfg = log.config().clone();
    cfg.flush_messages = 1;
    log.set_config(cfg);
    log.append(&simple(1, 0), 21_600).unwrap();
    assert_eq!(log.config().flush_messages, 1);
}

#[test]
fn index_full_rolls_segment() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        index_interval_bytes: 1,
        segment_index_bytes: 8 * 4,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(dir.path(), cfg, 0).unwrap();
    for _ in 0..20 {
        log.append(&simple(1, 0), 0).unwrap();
    }
    assert!(log.segment_count() >= 4);
    assert!(log.segments().iter().all(|s| s.index_len() <= 4));
    for off in 0..20 {
        assert_eq!(
            offsets(&log.read(off, 1, i64::MAX, true).unwrap()),
            vec![off]
        );
    }
}

#[test]
fn unclean_open_rebuilds_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_segments();
    {
        let mut log = PartitionLog::open(dir.path(), cfg.clone(), 0).unwrap();
        for _ in 0..8 {
            log.append(&simple(2, 0), 0).unwrap();
        }
    }
    let idx = file_path(dir.path(), 0, "index");
    fs::write(&idx, [0xffu8; 16]).unwrap();
    let log = PartitionLog::open(dir.path(), cfg, 0).unwrap();
    assert_eq!(fs::metadata(&idx).unwrap().len() % 8, 0);
    for off in 0..16 {
        assert!(offsets(&log.read(off, 1, i64::MAX, true).unwrap()).contains(&off));
    }
}

#[test]
fn leader_epoch_is_stamped() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
    log.append(&simple(1, 0), 0).unwrap();
    log.append_with_leader_epoch(&simple(2, 0), 0, 42).unwrap();
    let data = log.read(0, 1 << 20, i64::MAX, true).unwrap();
    let hs = batch_headers(&data);
    assert_eq!(hs[0].partition_leader_epoch, -1);
    assert_eq!(hs[1].partition_leader_epoch, 42);
    assert_eq!(hs[1].base_offset, 1);
    batch::validate_batch(&data[hs[0].total_size()..]).unwrap();
}

mod props {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Append(usize),
        Read(usize),
        CrashReopen,
        CleanReopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (1usize..5).prop_map(Op::Append),
            3 => any::<usize>().prop_map(Op::Read),
            1 => Just(Op::CrashReopen),
            1 => Just(Op::CleanReopen),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// The log agrees with a model of batch ranges across rolls, crashes and clean restarts.
        #[test]
        fn behaves_like_a_model(ops in proptest::collection::vec(op(), 1..60)) {
            let dir = tempfile::tempdir().unwrap();
            let cfg = LogConfig { segment_bytes: 600, index_interval_bytes: 100, ..LogConfig::default() };
            let mut log = Some(PartitionLog::open(dir.path(), cfg.clone(), 0).unwrap());
            let mut model: Vec<(i64, i64)> = Vec::new();
            for op in ops {
                let l = log.as_mut().unwrap();
                match op {
                    Op::Append(n) => {
                        let o = l.append(&simple(n, 0), 0).unwrap();
                        let base = model.last().map_or(0, |r| r.1 + 1);
                        prop_assert_eq!((o.base_offset, o.last_offset), (base, base + n as i64 - 1));
                        model.push((o.base_offset, o.last_offset));
                    }
                    Op::Read(i) => {
                        let leo = model.last().map_or(0, |r| r.1 + 1);
                        prop_assert_eq!(l.log_end_offset(), leo);
                        if leo > 0 {
                            let off = (i % leo as usize) as i64;
                            let data = l.read(off, 1, i64::MAX, true).unwrap();
                            let hs = batch_headers(&data);
                            let want = model.iter().find(|r| r.0 <= off && off <= r.1).unwrap();
                            prop_assert_eq!((hs[0].base_offset, hs[0].last_offset()), *want);
                        }
                    }
                    Op::CrashReopen => {
                        drop(log.take());
                        log = Some(PartitionLog::open(dir.path(), cfg.clone(), 0).unwrap());
                    }
                    Op::CleanReopen => {
                        log.take().unwrap().close().unwrap();
                        log = Some(PartitionLog::open(dir.path(), cfg.clone(), 0).unwrap());
                    }
                }
            }
        }

        /// Cutting the last segment anywhere recovers exactly the batches wholly before the cut.
        #[test]
        fn recovers_from_any_cut(sizes in proptest::collection::vec(1usize..4, 1..12), cut in any::<prop::sample::Index>()) {
            let dir = tempfile::tempdir().unwrap();
            let cfg = LogConfig::default();
            let mut ends = Vec::new(); // (file position after batch, next offset)
            {
                let mut log = PartitionLog::open(dir.path(), cfg.clone(), 0).unwrap();
                for n in &sizes {
                    let o = log.append(&simple(*n, 0), 0).unwrap();
                    ends.push((log.size_bytes(), o.last_offset + 1));
                }
            }
            let path = file_path(dir.path(), 0, "log");
            let total = fs::metadata(&path).unwrap().len();
            let at = cut.index(total as usize + 1) as u64;
            fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(at).unwrap();
            let want = ends.iter().rev().find(|e| e.0 <= at).map_or(0, |e| e.1);
            let mut log = PartitionLog::open(dir.path(), cfg, 0).unwrap();
            prop_assert_eq!(log.log_end_offset(), want);
            prop_assert_eq!(log.append(&simple(1, 0), 0).unwrap().base_offset, want);
        }
    }
}

#[test]
fn transactional_and_control_batches_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
    let txn = |seq: i32, n: usize| {
        B {
            n,
            pid: 3,
            epoch: 0,
            seq,
            transactional: true,
            ..B::default()
        }
        .build()
    };
    let a = log.append(&txn(0, 2), 0).unwrap();
    assert_eq!((a.base_offset, a.last_offset), (0, 1));
    // A commit marker: control batch from the coordinator, no sequence.
    let marker = batch::encode_end_txn_marker(
        &batch::EndTxnMarker {
            producer_id: 3,
            producer_epoch: 0,
            commit: true,
            coordinator_epoch: 0,
        },
        0,
    );
    let h = batch::validate_batch(&marker).unwrap();
    assert!(h.is_control() && h.is_transactional());
    assert_eq!(log.append(&marker, 0).unwrap().base_offset, 2);
    // Sequences continue across the marker; retries are still detected.
    assert_eq!(log.append(&txn(2, 1), 0).unwrap().base_offset, 3);
    assert!(log.append(&txn(2, 1), 0).unwrap().duplicate);
    let data = log.read(0, 1 << 20, i64::MAX, false).unwrap();
    let hs = batch_headers(&data);
    assert_eq!(hs.len(), 3);
    assert!(hs[1].is_control());
}

#[test]
fn roll_defers_fsync_of_the_old_segment_to_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_segments(), 0).unwrap();
    fill(&mut log, 40);
    assert!(log.segment_count() > 1, "the fill must roll segments");
    let pending = log.take_pending_syncs();
    // Three files (log, index, time index) per rolled segment.
    assert_eq!(pending.len(), 3 * (log.segment_count() - 1));
    for f in &pending {
        f.sync_data().unwrap();
    }
    assert!(
        log.take_pending_syncs().is_empty(),
        "taking them empties the queue"
    );
    fill(&mut log, 40);
    assert!(!log.take_pending_syncs().is_empty());
    fill(&mut log, 40);
    // flush() syncs whatever is still queued itself.
    log.flush().unwrap();
    assert!(log.take_pending_syncs().is_empty());
}

mod compaction;
mod replication;
mod transactions;
