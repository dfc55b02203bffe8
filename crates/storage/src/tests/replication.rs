//! Tests of the follower side of the log: the leader epoch cache (KIP-101, KIP-279), appends of
//! replicated batches, truncation.

use super::*;
use crate::epoch::CHECKPOINT_FILE;

/// `bytes` with its partition leader epoch set (the field is outside the CRC).
fn with_epoch(mut bytes: Vec<u8>, epoch: i32) -> Vec<u8> {
    batch::set_partition_leader_epoch(&mut bytes, epoch).unwrap();
    bytes
}

/// `bytes` with its base offset and partition leader epoch set, as a leader stores it.
fn stored(mut bytes: Vec<u8>, base: i64, epoch: i32) -> Vec<u8> {
    batch::set_base_offset(&mut bytes, base).unwrap();
    with_epoch(bytes, epoch)
}

/// Every stored byte of `log` from its start, read segment by segment.
fn read_all(log: &PartitionLog) -> Vec<u8> {
    let mut out = Vec::new();
    let mut next = log.log_start_offset();
    while next < log.log_end_offset() {
        let data = log.read(next, 1 << 30, i64::MAX, true).unwrap();
        let hs = batch_headers(&data);
        next = hs.last().unwrap().last_offset() + 1;
        out.extend_from_slice(&data);
    }
    out
}

/// Copies `leader`'s log into `follower` the way a replica fetcher does: reads from the
/// follower's log end, appends what came back.
fn replicate(leader: &PartitionLog, follower: &mut PartitionLog) {
    while follower.log_end_offset() < leader.log_end_offset() {
        let data = leader
            .read(follower.log_end_offset(), 700, i64::MAX, true)
            .unwrap();
        let hs = batch_headers(&data);
        let got = follower.append_replicated(&data, 0).unwrap();
        assert_eq!(
            got,
            Some((hs[0].base_offset, hs.last().unwrap().last_offset()))
        );
    }
}

fn checkpoint_text(log: &PartitionLog) -> String {
    fs::read_to_string(log.dir().join(CHECKPOINT_FILE)).unwrap()
}

/// Checks that the segments, their indexes and `read` agree with `batches` (base, last): every
/// offset is found in its batch, the indexes point at batch starts inside the files.
fn assert_consistent(log: &PartitionLog, batches: &[(i64, i64)]) {
    let leo = batches.last().map_or(log.log_start_offset(), |b| b.1 + 1);
    assert_eq!(log.log_end_offset(), leo);
    for &(base, last) in batches {
        for off in [base, last] {
            if off < log.log_start_offset() {
                continue;
            }
            let data = log.read(off, 1, i64::MAX, true).unwrap();
            let hs = batch_headers(&data);
            assert_eq!((hs[0].base_offset, hs[0].last_offset()), (base, last));
            batch::validate_batch(&data).unwrap();
        }
    }
    assert!(log.read(leo, 100, i64::MAX, true).unwrap().is_empty());
    for seg in log.segments() {
        for &(rel, pos) in seg.index_entries() {
            let h = seg.header_at(u64::from(pos)).unwrap().unwrap();
            assert_eq!(h.base_offset, seg.base_offset + i64::from(rel));
        }
        for &(_, rel) in seg.time_index_entries() {
            assert!(seg.base_offset + i64::from(rel) < seg.next_offset);
        }
    }
    let mut on_disk: Vec<i64> = fs::read_dir(log.dir())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            crate::parse_file_name(&name, "log")
        })
        .collect();
    on_disk.sort_unstable();
    assert_eq!(on_disk, log.segment_base_offsets());
}

#[test]
fn leader_appends_record_epoch_starts() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
    assert_eq!(log.latest_epoch(), -1);
    assert_eq!(log.end_offset_for_epoch(0), (-1, -1));
    // A client batch without an epoch records nothing.
    log.append(&simple(2, 0), 0).unwrap(); // 0..=1
    assert!(log.epoch_entries().is_empty());
    log.append_with_leader_epoch(&simple(2, 0), 0, 1).unwrap(); // 2..=3
    log.append_with_leader_epoch(&simple(1, 0), 0, 1).unwrap(); // 4
    log.append_with_leader_epoch(&simple(3, 0), 0, 4).unwrap(); // 5..=7
                                                                // A stale leader epoch is stamped but does not enter the cache.
    log.append_with_leader_epoch(&simple(1, 0), 0, 2).unwrap(); // 8
                                                                // `append` takes the batch's own epoch.
    log.append(&with_epoch(simple(2, 0), 6), 0).unwrap(); // 9..=10
    assert_eq!(log.epoch_entries(), vec![(1, 2), (4, 5), (6, 9)]);
    assert_eq!(log.latest_epoch(), 6);
    assert_eq!(checkpoint_text(&log), "0\n3\n1 2\n4 5\n6 9\n");
    assert_eq!(log.end_offset_for_epoch(6), (6, 11));
    assert_eq!(log.end_offset_for_epoch(4), (4, 9));
    assert_eq!(log.end_offset_for_epoch(5), (4, 9));
    assert_eq!(log.end_offset_for_epoch(3), (1, 5));
    assert_eq!(log.end_offset_for_epoch(0), (0, 2));
    assert_eq!(log.end_offset_for_epoch(7), (-1, -1));
    assert_eq!(log.end_offset_for_epoch(-1), (-1, -1));
    // A duplicate idempotent retry appends nothing and records no epoch.
    log.append_with_leader_epoch(&idem(9, 0, 0, 1), 0, 7)
        .unwrap();
    assert!(
        log.append_with_leader_epoch(&idem(9, 0, 0, 1), 0, 8)
            .unwrap()
            .duplicate
    );
    assert_eq!(log.latest_epoch(), 7);
}

#[test]
fn epoch_cache_survives_clean_and_unclean_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_segments();
    let entries = {
        let mut log = PartitionLog::open(dir.path(), cfg.clone(), 0).unwrap();
        for e in 0..5 {
            for _ in 0..6 {
                log.append_with_leader_epoch(&simple(2, 0), 0, e * 2)
                    .unwrap();
            }
        }
        assert!(log.segment_count() > 1);
        log.epoch_entries()
    };
    assert_eq!(entries, vec![(0, 0), (2, 12), (4, 24), (6, 36), (8, 48)]);
    // Crash (no close).
    let log = PartitionLog::open(dir.path(), cfg.clone(), 0).unwrap();
    assert_eq!(log.epoch_entries(), entries);
    log.close().unwrap();
    let log = PartitionLog::open(dir.path(), cfg, 0).unwrap();
    assert_eq!(log.epoch_entries(), entries);
    assert_eq!(log.end_offset_for_epoch(8), (8, 60));
}

#[test]
fn epoch_cache_is_rebuilt_from_the_log_without_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_segments();
    let entries = {
        let mut log = PartitionLog::open(dir.path(), cfg.clone(), 0).unwrap();
        log.append(&simple(2, 0), 0).unwrap();
        for e in [3, 3, 5, 5, 5, 9] {
            for _ in 0..5 {
                log.append_with_leader_epoch(&simple(3, 0), 0, e).unwrap();
            }
        }
        assert!(log.segment_count() > 2);
        let entries = log.epoch_entries();
        log.close().unwrap();
        entries
    };
    assert_eq!(entries, vec![(3, 2), (5, 32), (9, 77)]);
    // A log written before the cache existed.
    fs::remove_file(dir.path().join(CHECKPOINT_FILE)).unwrap();
    let log = PartitionLog::open(dir.path(), cfg.clone(), 0).unwrap();
    assert_eq!(log.epoch_entries(), entries);
    assert_eq!(checkpoint_text(&log), "0\n3\n3 2\n5 32\n9 77\n");
    drop(log);
    // An unreadable checkpoint is rebuilt too.
    fs::write(dir.path().join(CHECKPOINT_FILE), "0\n7\n1 x\n").unwrap();
    let log = PartitionLog::open(dir.path(), cfg, 0).unwrap();
    assert_eq!(log.epoch_entries(), entries);
}

#[test]
fn epoch_cache_is_cut_to_the_recovered_log() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig::default();
    {
        let mut log = PartitionLog::open(dir.path(), cfg.clone(), 0).unwrap();
        log.append_with_leader_epoch(&simple(2, 0), 0, 1).unwrap(); // 0..=1
        log.append_with_leader_epoch(&simple(2, 0), 0, 2).unwrap(); // 2..=3
        log.append_with_leader_epoch(&simple(2, 0), 0, 3).unwrap(); // 4..=5
        assert_eq!(log.epoch_entries(), vec![(1, 0), (2, 2), (3, 4)]);
    }
    // The last batch is lost in a crash (written to the page cache, not to disk).
    let path = file_path(dir.path(), 0, "log");
    let len = fs::metadata(&path).unwrap().len();
    let last = simple(2, 0).len() as u64;
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - last)
        .unwrap();
    let log = PartitionLog::open(dir.path(), cfg.clone(), 0).unwrap();
    assert_eq!(log.log_end_offset(), 4);
    assert_eq!(log.epoch_entries(), vec![(1, 0), (2, 2)]);
    assert_eq!(checkpoint_text(&log), "0\n2\n1 0\n2 2\n");
    assert_eq!(log.end_offset_for_epoch(2), (2, 4));
    // A checkpoint written ahead of its batch (crash between the two) loses the entry.
    fs::write(dir.path().join(CHECKPOINT_FILE), "0\n3\n1 0\n2 2\n7 4\n").unwrap();
    drop(log);
    let mut log = PartitionLog::open(dir.path(), cfg, 0).unwrap();
    assert_eq!(log.epoch_entries(), vec![(1, 0), (2, 2)]);
    // The new leader epoch starts where the log ends.
    log.append_with_leader_epoch(&simple(1, 0), 0, 8).unwrap();
    assert_eq!(log.epoch_entries(), vec![(1, 0), (2, 2), (8, 4)]);
}

#[test]
fn rising_log_start_cuts_the_epoch_cache_front() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_segments();
    let mut log = PartitionLog::open(dir.path(), cfg.clone(), 0).unwrap();
    for e in [1, 1, 1, 2, 2, 2, 3, 3, 3] {
        for _ in 0..4 {
            log.append_with_leader_epoch(&simple(2, 0), 0, e).unwrap();
        }
    }
    assert_eq!(log.epoch_entries(), vec![(1, 0), (2, 24), (3, 48)]);
    // KIP-107 DeleteRecords into epoch 2: epoch 1 goes, epoch 2 now starts at the log start.
    log.delete_records_before(30).unwrap();
    assert_eq!(log.epoch_entries(), vec![(2, 30), (3, 48)]);
    assert_eq!(log.end_offset_for_epoch(1), (1, 30));
    assert_eq!(log.end_offset_for_epoch(2), (2, 48));
    log.delete_records_before(48).unwrap();
    assert_eq!(log.epoch_entries(), vec![(3, 48)]);
    drop(log);
    let log = PartitionLog::open(dir.path(), cfg, 0).unwrap();
    assert_eq!(log.epoch_entries(), vec![(3, 48)]);
    assert_eq!(log.log_start_offset(), 48);

    // Retention deleting whole segments raises the start the same way.
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        retention_bytes: 1,
        ..small_segments()
    };
    let mut log = PartitionLog::open(dir.path(), cfg, 0).unwrap();
    for e in [1, 1, 1, 1, 2, 2, 2, 2] {
        for _ in 0..4 {
            log.append_with_leader_epoch(&simple(2, 0), 0, e).unwrap();
        }
    }
    assert!(log.enforce_retention(0).unwrap() > 0);
    let start = log.log_start_offset();
    assert!(
        start > 32,
        "retention must reach into epoch 2: start {start}"
    );
    assert_eq!(log.epoch_entries(), vec![(2, start)]);
}

#[test]
fn append_replicated_round_trip_rebuilds_producer_state() {
    let leader_dir = tempfile::tempdir().unwrap();
    let follower_dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        log_append_time: true,
        ..small_segments()
    };
    let mut leader = PartitionLog::open(leader_dir.path(), cfg.clone(), 0).unwrap();
    // The follower's own max.message.bytes is not applied to what the leader accepted.
    let mut follower = PartitionLog::open(
        follower_dir.path(),
        LogConfig {
            max_message_bytes: 10,
            ..small_segments()
        },
        0,
    )
    .unwrap();
    let mut seq = 0;
    for i in 0..30i32 {
        let epoch = i / 10;
        if i % 3 == 0 {
            leader
                .append_with_leader_epoch(&idem(7, 0, seq, 2), 1_000 + i64::from(i), epoch)
                .unwrap();
            seq += 2;
        } else {
            leader
                .append_with_leader_epoch(&simple(1 + i as usize % 3, 0), 1_000, epoch)
                .unwrap();
        }
    }
    assert!(leader.segment_count() > 2);
    assert_eq!(follower.append_replicated(&[], 0).unwrap(), None);
    replicate(&leader, &mut follower);
    // Identical bytes: offsets, epochs and the leader's LogAppendTime timestamps untouched.
    assert_eq!(read_all(&follower), read_all(&leader));
    assert_eq!(follower.log_end_offset(), leader.log_end_offset());
    assert_eq!(follower.epoch_entries(), leader.epoch_entries());
    assert_eq!(follower.epoch_entries().len(), 3);
    assert_eq!(follower.producer_count(), 1);
    assert!(follower.segment_count() > 1, "replicated appends roll");
    let ranges: Vec<(i64, i64)> = batch_headers(&read_all(&leader))
        .iter()
        .map(|h| (h.base_offset, h.last_offset()))
        .collect();
    assert_consistent(&follower, &ranges);

    // The follower becomes leader (with the leader's config): a retry of the last idempotent batch is a duplicate with
    // its original offsets, a gap in sequence is refused.
    let last = leader
        .append_with_leader_epoch(&idem(7, 0, seq - 2, 2), 0, 2)
        .unwrap();
    assert!(last.duplicate);
    follower.set_config(small_segments());
    for reopen in [false, true] {
        if reopen {
            drop(follower);
            follower = PartitionLog::open(follower_dir.path(), small_segments(), 0).unwrap();
        }
        let dup = follower
            .append_with_leader_epoch(&idem(7, 0, seq - 2, 2), 0, 3)
            .unwrap();
        assert!(dup.duplicate, "reopen {reopen}");
        assert_eq!(
            (dup.base_offset, dup.last_offset),
            (last.base_offset, last.last_offset)
        );
        assert!(matches!(
            follower.append_with_leader_epoch(&idem(7, 0, seq + 1, 1), 0, 3),
            Err(StorageError::OutOfOrderSequence(_))
        ));
    }
    let next = follower
        .append_with_leader_epoch(&idem(7, 0, seq, 1), 0, 3)
        .unwrap();
    assert!(!next.duplicate);
    assert_eq!(next.base_offset, leader.log_end_offset());
    assert_eq!(follower.latest_epoch(), 3);
}

#[test]
fn append_replicated_refuses_a_base_offset_below_the_log_end_and_accepts_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
    log.append_replicated(&stored(simple(2, 0), 0, 1), 0)
        .unwrap();
    let before = (read_all(&log), log.size_bytes(), log.epoch_entries());
    for base in [0, 1] {
        let err = log
            .append_replicated(&stored(simple(1, 0), base, 2), 0)
            .unwrap_err();
        assert!(
            matches!(err, StorageError::OffsetMismatch { expected: 2, got } if got == base),
            "{err:?}"
        );
    }
    // Batches going back inside one call refuse the whole call.
    let mut two = stored(simple(2, 0), 2, 2);
    two.extend(stored(simple(1, 0), 3, 2));
    assert!(matches!(
        log.append_replicated(&two, 0),
        Err(StorageError::OffsetMismatch {
            expected: 4,
            got: 3
        })
    ));
    assert_eq!(log.log_end_offset(), 2);
    assert_eq!(
        (read_all(&log), log.size_bytes(), log.epoch_entries()),
        before
    );
    // Contiguous batches go in, in one call.
    let mut two = stored(simple(1, 0), 2, 2);
    two.extend(stored(simple(3, 0), 3, 3));
    assert_eq!(log.append_replicated(&two, 0).unwrap(), Some((2, 5)));
    assert_eq!(log.epoch_entries(), vec![(1, 0), (2, 2), (3, 3)]);
    // A gap (a compacted leader log) is accepted: offsets 6..=9 do not exist.
    let mut gap = stored(simple(1, 0), 10, 3);
    gap.extend(stored(simple(1, 0), 12, 3));
    assert_eq!(log.append_replicated(&gap, 0).unwrap(), Some((10, 12)));
    assert_eq!(log.log_end_offset(), 13);
    let hs = batch_headers(&log.read(6, 1 << 20, i64::MAX, true).unwrap());
    assert_eq!(hs[0].base_offset, 10);
    // Survives an unclean reopen (recovery accepts offset gaps).
    drop(log);
    let log = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
    assert_eq!(log.log_end_offset(), 13);
}

#[test]
fn append_replicated_refuses_corrupt_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
    let good = stored(simple(2, 0), 0, 1);
    let mut bad_crc = stored(simple(2, 0), 2, 1);
    let n = bad_crc.len();
    bad_crc[n - 2] ^= 0x40;
    // A good batch followed by a corrupt one: nothing is appended.
    let mut input = good.clone();
    input.extend(&bad_crc);
    assert!(matches!(
        log.append_replicated(&input, 0),
        Err(StorageError::CorruptRecord(_))
    ));
    // A truncated batch.
    assert!(matches!(
        log.append_replicated(&good[..good.len() - 1], 0),
        Err(StorageError::CorruptRecord(_))
    ));
    let mut input = good.clone();
    input.extend(&[0u8; 7]);
    assert!(log.append_replicated(&input, 0).is_err());
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.size_bytes(), 0);
    assert!(log.epoch_entries().is_empty());
    assert_eq!(log.append_replicated(&good, 0).unwrap(), Some((0, 1)));
}

/// Leader log of 3-record batches at epochs 1,1,1,2,2,2,... with an idempotent producer.
fn epoch_log(dir: &std::path::Path, cfg: LogConfig, batches: i32) -> PartitionLog {
    let mut log = PartitionLog::open(dir, cfg, 0).unwrap();
    for i in 0..batches {
        log.append_with_leader_epoch(&idem(5, 0, i * 3, 3), 0, 1 + i / 3)
            .unwrap();
    }
    log
}

#[test]
fn truncate_to_mid_segment() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        index_interval_bytes: 100,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(dir.path(), cfg.clone(), 0).unwrap();
    for i in 0..12 {
        // Timestamps rise with offsets: 100 * batch.
        let b = B {
            n: 3,
            ts: 100 * i,
            pid: 5,
            epoch: 0,
            seq: i as i32 * 3,
            ..B::default()
        }
        .build();
        log.append_with_leader_epoch(&b, 0, 1 + i as i32 / 3)
            .unwrap();
    }
    assert_eq!(log.segment_count(), 1);
    assert!(log.segments()[0].index_len() > 2);
    assert_eq!(log.epoch_entries(), vec![(1, 0), (2, 9), (3, 18), (4, 27)]);
    // Offset 22 is inside batch 21..=23: the whole batch goes.
    log.truncate_to(22).unwrap();
    assert_eq!(log.log_end_offset(), 21);
    let ranges: Vec<(i64, i64)> = (0..7).map(|b| (b * 3, b * 3 + 2)).collect();
    assert_consistent(&log, &ranges);
    assert_eq!(log.epoch_entries(), vec![(1, 0), (2, 9), (3, 18)]);
    assert_eq!(log.end_offset_for_epoch(3), (3, 21));
    assert_eq!(log.end_offset_for_epoch(4), (-1, -1));
    assert_eq!(checkpoint_text(&log), "0\n3\n1 0\n2 9\n3 18\n");
    // The time index forgot the removed batches.
    assert_eq!(log.max_timestamp(), Some((602, 20)));
    assert_eq!(log.offset_for_timestamp(650).unwrap(), None);
    assert_eq!(log.offset_for_timestamp(600).unwrap(), Some((18, 600)));
    // Producer state: sequence 21 was truncated away, so it is not a duplicate any more.
    assert!(matches!(
        log.append_with_leader_epoch(&idem(5, 0, 24, 3), 0, 5),
        Err(StorageError::OutOfOrderSequence(_))
    ));
    assert!(
        log.append_with_leader_epoch(&idem(5, 0, 18, 3), 0, 5)
            .unwrap()
            .duplicate
    );
    let o = log
        .append_with_leader_epoch(&idem(5, 0, 21, 3), 0, 5)
        .unwrap();
    assert!(!o.duplicate);
    assert_eq!((o.base_offset, o.last_offset), (21, 23));
    assert_eq!(log.epoch_entries(), vec![(1, 0), (2, 9), (3, 18), (5, 21)]);
    let mut ranges = ranges;
    ranges.push((21, 23));
    assert_consistent(&log, &ranges);
    // Reopen after a crash and after a clean close: the same log.
    drop(log);
    let log = PartitionLog::open(dir.path(), cfg.clone(), 0).unwrap();
    assert_consistent(&log, &ranges);
    assert_eq!(log.epoch_entries(), vec![(1, 0), (2, 9), (3, 18), (5, 21)]);
    log.close().unwrap();
    let mut log = PartitionLog::open(dir.path(), cfg, 0).unwrap();
    assert_consistent(&log, &ranges);
    assert!(
        log.append_with_leader_epoch(&idem(5, 0, 21, 3), 0, 5)
            .unwrap()
            .duplicate
    );
}

#[test]
fn truncate_to_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_segments();
    let mut log = epoch_log(dir.path(), cfg.clone(), 40);
    let segments = log.segment_base_offsets();
    assert!(segments.len() > 4, "{segments:?}");
    let snapshots_before = crate::producer::list_snapshots(dir.path()).unwrap();
    assert!(!snapshots_before.is_empty());
    // Truncate into the middle of the third segment, at a batch boundary.
    let target = segments[2] + 6;
    log.truncate_to(target).unwrap();
    assert_eq!(log.log_end_offset(), target);
    assert_eq!(log.segment_base_offsets(), segments[..3].to_vec());
    let ranges: Vec<(i64, i64)> = (0..target / 3).map(|b| (b * 3, b * 3 + 2)).collect();
    assert_consistent(&log, &ranges);
    let want: Vec<(i32, i64)> = (1..=1 + (target as i32 - 1) / 9)
        .map(|e| (e, i64::from(e - 1) * 9))
        .collect();
    assert_eq!(log.epoch_entries(), want);
    for s in crate::producer::list_snapshots(dir.path()).unwrap() {
        assert!(s <= target, "snapshot {s} above the new end {target}");
    }
    // Exactly at a segment base: the segment goes, the previous one becomes active.
    let at = segments[2];
    log.truncate_to(at).unwrap();
    assert_eq!(log.segment_base_offsets(), segments[..2].to_vec());
    assert_consistent(&log, &ranges[..(at / 3) as usize]);
    // Appends continue the producer and the log; the log rolls again.
    let next_seq = at as i32;
    for i in 0..20 {
        log.append_with_leader_epoch(&idem(5, 0, next_seq + i * 3, 3), 0, 20)
            .unwrap();
    }
    let ranges: Vec<(i64, i64)> = (0..at / 3 + 20).map(|b| (b * 3, b * 3 + 2)).collect();
    assert_consistent(&log, &ranges);
    assert!(log.segment_count() > 2);
    assert_eq!(log.latest_epoch(), 20);
    assert_eq!(log.end_offset_for_epoch(19).1, at);
    drop(log);
    let log = PartitionLog::open(dir.path(), cfg, 0).unwrap();
    assert_consistent(&log, &ranges);
    assert_eq!(log.end_offset_for_epoch(19).1, at);
}

#[test]
fn truncate_to_the_start_and_edge_cases() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_segments();
    let mut log = epoch_log(dir.path(), cfg.clone(), 20);
    let leo = log.log_end_offset();
    // At or above the log end: nothing happens.
    let before = read_all(&log);
    log.truncate_to(leo).unwrap();
    log.truncate_to(leo + 100).unwrap();
    assert_eq!(read_all(&log), before);
    // Below the log start: refused.
    log.delete_records_before(10).unwrap();
    assert!(matches!(
        log.truncate_to(9),
        Err(StorageError::OffsetOutOfRange { offset: 9, .. })
    ));
    assert_eq!(log.log_end_offset(), leo);
    assert_eq!(log.log_start_offset(), 10);
    assert_eq!(
        log.epoch_entries(),
        vec![(2, 10), (3, 18), (4, 27), (5, 36), (6, 45), (7, 54)]
    );
    // The log start is inside batch 9..=11: truncating there removes the batch and leaves an
    // empty log whose start moved down to its end.
    log.truncate_to(10).unwrap();
    assert_eq!(log.log_end_offset(), 9);
    assert_eq!(log.log_start_offset(), 9);
    assert!(log.read(9, 100, i64::MAX, true).unwrap().is_empty());
    assert!(log.epoch_entries().is_empty(), "{:?}", log.epoch_entries());
    assert_eq!(log.segment_count(), 1);
    let o = log.append_with_leader_epoch(&simple(1, 0), 0, 9).unwrap();
    assert_eq!(o.base_offset, 9);
    drop(log);
    let log = PartitionLog::open(dir.path(), cfg, 0).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (9, 10));
    assert_eq!(log.epoch_entries(), vec![(9, 9)]);
}

#[test]
fn truncate_fully_and_start_at_restarts_an_empty_log() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_segments();
    let mut log = epoch_log(dir.path(), cfg.clone(), 30);
    assert!(log.segment_count() > 2);
    assert!(log.producer_count() > 0);
    log.truncate_fully_and_start_at(500).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (500, 500));
    assert_eq!(log.segment_base_offsets(), vec![500]);
    assert!(log.epoch_entries().is_empty());
    assert_eq!(log.latest_epoch(), -1);
    assert_eq!(log.producer_count(), 0);
    assert!(crate::producer::list_snapshots(dir.path())
        .unwrap()
        .is_empty());
    assert_eq!(checkpoint_text(&log), "0\n0\n");
    assert_consistent(&log, &[]);
    assert!(matches!(
        log.read(0, 100, i64::MAX, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    // The follower continues from the leader's data at 500.
    assert_eq!(
        log.append_replicated(&stored(idem(5, 0, 900, 2), 500, 7), 0)
            .unwrap(),
        Some((500, 501))
    );
    assert_eq!(log.epoch_entries(), vec![(7, 500)]);
    for reopen_clean in [false, true] {
        if reopen_clean {
            log.close().unwrap();
        } else {
            drop(log);
        }
        log = PartitionLog::open(dir.path(), cfg.clone(), 0).unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (500, 502));
        assert_eq!(log.epoch_entries(), vec![(7, 500)]);
        assert_eq!(log.producer_count(), 1);
        assert_consistent(&log, &[(500, 501)]);
    }
    // Starting below the old start works too (the leader's log was itself truncated fully).
    log.truncate_fully_and_start_at(0).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    drop(log);
    let log = PartitionLog::open(dir.path(), cfg, 0).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    assert!(log.epoch_entries().is_empty());
    assert!(matches!(
        epoch_log(tempfile::tempdir().unwrap().path(), LogConfig::default(), 1)
            .truncate_fully_and_start_at(-1),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
}

mod props {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        /// Leader append of `n` records, the epoch raised by `bump` first.
        Leader(usize, i32),
        /// Follower append of batches of these sizes, the epoch raised by `bump` first.
        Replicated(Vec<usize>, i32),
        Truncate(usize),
        TruncateFully(i64),
        DeleteRecords(usize),
        Read(usize),
        CrashReopen,
        CleanReopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            5 => (1usize..5, 0i32..2).prop_map(|(n, b)| Op::Leader(n, b)),
            4 => (proptest::collection::vec(1usize..4, 1..4), 0i32..2)
                .prop_map(|(v, b)| Op::Replicated(v, b)),
            2 => any::<usize>().prop_map(Op::Truncate),
            1 => (-3i64..5).prop_map(Op::TruncateFully),
            1 => any::<usize>().prop_map(Op::DeleteRecords),
            3 => any::<usize>().prop_map(Op::Read),
            1 => Just(Op::CrashReopen),
            1 => Just(Op::CleanReopen),
        ]
    }

    /// A simple model: the batches (base, last, epoch) and the log start offset.
    #[derive(Default)]
    struct Model {
        batches: Vec<(i64, i64, i32)>,
        start: i64,
        /// Log end when there are no batches.
        empty_end: i64,
    }

    impl Model {
        fn end(&self) -> i64 {
            self.batches.last().map_or(self.empty_end, |b| b.1 + 1)
        }

        fn push(&mut self, n: usize, epoch: i32) -> i64 {
            let base = self.end();
            self.batches.push((base, base + n as i64 - 1, epoch));
            base
        }

        /// Batches still readable (ending at or above the start).
        fn live(&self) -> impl Iterator<Item = &(i64, i64, i32)> {
            self.batches.iter().filter(|b| b.1 >= self.start)
        }
    }

    fn check(log: &PartitionLog, m: &Model, read_all: bool) -> Result<(), TestCaseError> {
        prop_assert_eq!(log.log_end_offset(), m.end());
        prop_assert_eq!(log.log_start_offset(), m.start);
        if read_all {
            for &(base, last, epoch) in m.live() {
                let data = log.read(base.max(m.start), 1, i64::MAX, true).unwrap();
                let hs = batch_headers(&data);
                prop_assert_eq!(
                    (
                        hs[0].base_offset,
                        hs[0].last_offset(),
                        hs[0].partition_leader_epoch
                    ),
                    (base, last, epoch)
                );
            }
        }
        // The epoch cache describes the log: ascending, inside [start, end], every live
        // batch's epoch is the one in force at its first live offset, and each entry below the
        // end starts where its epoch's records start.
        let entries = log.epoch_entries();
        for w in entries.windows(2) {
            prop_assert!(w[0].0 < w[1].0 && w[0].1 < w[1].1, "{:?}", entries);
        }
        for &(epoch, start) in &entries {
            prop_assert!(start >= m.start && start <= m.end(), "{:?}", entries);
            if start < m.end() {
                let b = m.live().find(|b| b.1 >= start).unwrap();
                prop_assert!(b.0 == start || start == m.start, "{:?} {:?}", entries, b);
                prop_assert_eq!(b.2, epoch);
            }
        }
        for &(base, _, epoch) in m.live() {
            let at = base.max(m.start);
            let floor = entries.iter().rev().find(|e| e.1 <= at);
            prop_assert_eq!(floor.map(|e| e.0), Some(epoch), "{:?} at {}", entries, at);
        }
        for (i, &(epoch, _)) in entries.iter().enumerate() {
            let end = entries.get(i + 1).map_or(m.end(), |e| e.1);
            prop_assert_eq!(log.end_offset_for_epoch(epoch), (epoch, end));
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Leader and replicated appends, truncations, DeleteRecords and restarts keep reads,
        /// the log bounds and the epoch cache consistent with a model of the batches.
        #[test]
        fn truncation_keeps_the_log_consistent(ops in proptest::collection::vec(op(), 1..60)) {
            let dir = tempfile::tempdir().unwrap();
            let cfg = LogConfig { segment_bytes: 600, index_interval_bytes: 100, ..LogConfig::default() };
            let mut log = Some(PartitionLog::open(dir.path(), cfg.clone(), 0).unwrap());
            let mut m = Model::default();
            let mut epoch = 0;
            for op in ops {
                let l = log.as_mut().unwrap();
                let mut read_all = false;
                match op {
                    Op::Leader(n, bump) => {
                        epoch += bump;
                        let o = l.append_with_leader_epoch(&simple(n, 0), 0, epoch).unwrap();
                        prop_assert_eq!(o.base_offset, m.push(n, epoch));
                    }
                    Op::Replicated(sizes, bump) => {
                        epoch += bump;
                        let first = m.end();
                        let mut input = Vec::new();
                        for n in sizes {
                            let base = m.push(n, epoch);
                            input.extend(stored(simple(n, 0), base, epoch));
                        }
                        prop_assert_eq!(l.append_replicated(&input, 0).unwrap(), Some((first, m.end() - 1)));
                    }
                    Op::Truncate(i) => {
                        let span = (m.end() - m.start + 1) as usize;
                        let off = m.start + (i % span) as i64;
                        l.truncate_to(off).unwrap();
                        if let Some(k) = m.batches.iter().position(|b| b.1 >= off) {
                            let new_end = m.batches[k].0;
                            m.batches.truncate(k);
                            if m.batches.is_empty() {
                                m.empty_end = new_end;
                            }
                            m.start = m.start.min(new_end);
                        }
                        read_all = true;
                    }
                    Op::TruncateFully(d) => {
                        let off = (m.end() + d).max(0);
                        l.truncate_fully_and_start_at(off).unwrap();
                        m = Model { batches: Vec::new(), start: off, empty_end: off };
                        read_all = true;
                    }
                    Op::DeleteRecords(i) => {
                        let span = (m.end() - m.start + 1) as usize;
                        let off = m.start + (i % span) as i64;
                        l.delete_records_before(off).unwrap();
                        m.start = off;
                        if off == m.end() {
                            // Everything is gone: keep only the log end.
                            m.empty_end = off;
                            m.batches.clear();
                        }
                    }
                    Op::Read(i) => {
                        if m.end() > m.start {
                            let span = (m.end() - m.start) as usize;
                            let off = m.start + (i % span) as i64;
                            let data = l.read(off, 1, i64::MAX, true).unwrap();
                            let hs = batch_headers(&data);
                            let want = *m.batches.iter().find(|b| b.0 <= off && off <= b.1).unwrap();
                            prop_assert_eq!((hs[0].base_offset, hs[0].last_offset(), hs[0].partition_leader_epoch), want);
                        }
                    }
                    Op::CrashReopen => {
                        drop(log.take());
                        log = Some(PartitionLog::open(dir.path(), cfg.clone(), 0).unwrap());
                        read_all = true;
                    }
                    Op::CleanReopen => {
                        log.take().unwrap().close().unwrap();
                        log = Some(PartitionLog::open(dir.path(), cfg.clone(), 0).unwrap());
                        read_all = true;
                    }
                }
                check(log.as_ref().unwrap(), &m, read_all)?;
            }
        }
    }
}
