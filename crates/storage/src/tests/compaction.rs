//! Tests of log compaction (the cleaner).

use std::collections::HashMap;

use runnel_protocol::kafka_protocol::protocol::StrBytes;

use super::*;
use crate::{CleanStats, Cleanable};

const NOW: i64 = 1_000_000_000;

/// One keyed record: key, value (`None` = tombstone).
type Kv<'a> = (&'a str, Option<&'a str>);

/// A batch of keyed records with timestamp `ts`.
struct K<'a> {
    recs: &'a [Kv<'a>],
    ts: i64,
    compression: Compression,
    pid: i64,
    epoch: i16,
    seq: i32,
    header: bool,
    transactional: bool,
}

impl Default for K<'_> {
    fn default() -> Self {
        K {
            recs: &[],
            ts: NOW,
            compression: Compression::None,
            pid: -1,
            epoch: -1,
            seq: -1,
            header: false,
            transactional: false,
        }
    }
}

impl K<'_> {
    fn build(&self) -> Vec<u8> {
        let records: Vec<Record> = self
            .recs
            .iter()
            .enumerate()
            .map(|(i, (k, v))| {
                let mut headers = indexmap_headers();
                if !self.header {
                    headers.clear();
                }
                Record {
                    transactional: self.transactional,
                    control: false,
                    delete_horizon: false,
                    partition_leader_epoch: -1,
                    producer_id: self.pid,
                    producer_epoch: self.epoch,
                    timestamp_type: TimestampType::Creation,
                    offset: i as i64,
                    sequence: self.seq.wrapping_add(i as i32),
                    timestamp: self.ts + i as i64,
                    key: Some(Bytes::from(k.as_bytes().to_vec())),
                    value: v.map(|v| Bytes::from(v.as_bytes().to_vec())),
                    headers,
                }
            })
            .collect();
        encode_records(&records, self.compression)
    }
}

fn indexmap_headers() -> runnel_protocol::kafka_protocol::indexmap::IndexMap<StrBytes, Option<Bytes>>
{
    let mut h = runnel_protocol::kafka_protocol::indexmap::IndexMap::new();
    h.insert(
        StrBytes::from_static_str("trace"),
        Some(Bytes::from_static(b"abc")),
    );
    h
}

fn kv(recs: &[Kv<'_>]) -> Vec<u8> {
    K {
        recs,
        ..K::default()
    }
    .build()
}

fn compact_config() -> LogConfig {
    LogConfig {
        segment_bytes: 600,
        index_interval_bytes: 100,
        cleanup_compact: true,
        cleanup_delete: false,
        delete_retention_ms: 1000,
        ..LogConfig::default()
    }
}

/// Cleans with no upper bound and a large key map; the stats, or `None` if nothing to do.
fn clean(log: &mut PartitionLog, upper: i64, now: i64) -> Option<CleanStats> {
    let task = log.prepare_clean(upper, now, 1 << 20).unwrap()?;
    let done = task.run().unwrap();
    log.finish_clean(done).unwrap()
}

/// (offset, key, value) of every record in the log, read through `read` from the log start.
type Row = (i64, Option<Vec<u8>>, Option<Vec<u8>>);

fn all_records(log: &PartitionLog) -> Vec<Row> {
    let mut out = Vec::new();
    let mut next = log.log_start_offset();
    while next < log.log_end_offset() {
        let data = log.read(next, 1 << 30, i64::MAX, true).unwrap();
        let hs = batch_headers(&data);
        assert!(!hs.is_empty(), "read at {next} returned nothing");
        assert!(hs[0].last_offset() >= next);
        next = hs.last().unwrap().last_offset() + 1;
        let mut b = data;
        for set in RecordBatchDecoder::decode_all(&mut b).unwrap() {
            for r in set.records {
                out.push((
                    r.offset,
                    r.key.map(|k| k.to_vec()),
                    r.value.map(|v| v.to_vec()),
                ));
            }
        }
    }
    out
}

fn all_batches(log: &PartitionLog) -> Vec<batch::BatchHeader> {
    let mut out = Vec::new();
    let mut next = log.log_start_offset();
    while next < log.log_end_offset() {
        let data = log.read(next, 1 << 30, i64::MAX, true).unwrap();
        let hs = batch_headers(&data);
        next = hs.last().unwrap().last_offset() + 1;
        out.extend(hs);
    }
    out
}

fn row(o: i64, k: &str, v: Option<&str>) -> Row {
    (
        o,
        Some(k.as_bytes().to_vec()),
        v.map(|v| v.as_bytes().to_vec()),
    )
}

/// Kafka's rule applied to `rows`: below `end`, only the latest record per key (tombstones
/// too, unless `drop_tombstones`); at and above `end`, everything.
fn model(rows: &[Row], end: i64, drop_tombstones: bool) -> Vec<Row> {
    let mut latest: HashMap<Vec<u8>, i64> = HashMap::new();
    for (o, k, _) in rows.iter().filter(|r| r.0 < end) {
        latest.insert(k.clone().unwrap(), *o);
    }
    rows.iter()
        .filter(|(o, k, v)| {
            *o >= end || (latest[k.as_ref().unwrap()] == *o && !(drop_tombstones && v.is_none()))
        })
        .cloned()
        .collect()
}

/// Appends `n` single-record batches cycling over `keys`, values `v<i>`; returns the rows.
fn append_updates(log: &mut PartitionLog, keys: &[&str], n: usize) -> Vec<Row> {
    (0..n)
        .map(|i| {
            let k = keys[i % keys.len()];
            let v = format!("v{i}");
            let o = log.append(&kv(&[(k, Some(&v))]), NOW).unwrap();
            row(o.base_offset, k, Some(&v))
        })
        .collect()
}

#[test]
fn keeps_the_latest_value_per_key_and_preserves_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), compact_config(), NOW).unwrap();
    let rows = append_updates(&mut log, &["a", "b", "c", "d"], 120);
    assert!(log.segment_count() > 4);
    let active_base = *log.segment_base_offsets().last().unwrap();
    let active_file = fs::read(file_path(dir.path(), active_base, "log")).unwrap();
    let size_before = log.size_bytes();
    let c = log.cleanable(i64::MAX, NOW).unwrap();
    assert_eq!(c.first_dirty_offset, 0);
    assert_eq!(c.first_uncleanable_offset, active_base);
    assert_eq!(c.clean_bytes, 0);
    assert!(c.dirty_ratio > 0.99 && c.needs_cleaning, "{c:?}");

    let stats = clean(&mut log, i64::MAX, NOW).unwrap();
    assert_eq!(stats.end_offset, active_base);
    assert!(stats.bytes_written < stats.bytes_read);
    assert!(log.size_bytes() < size_before);
    let got = all_records(&log);
    assert_eq!(got, model(&rows, active_base, false));
    // Below the active segment: exactly one record per key.
    assert_eq!(got.iter().filter(|r| r.0 < active_base).count(), 4);
    // The active segment is untouched.
    assert_eq!(
        fs::read(file_path(dir.path(), active_base, "log")).unwrap(),
        active_file
    );
    // The cleaned section is clean now.
    let c = log.cleanable(i64::MAX, NOW).unwrap();
    assert_eq!(c.first_dirty_offset, active_base);
    assert_eq!(c.dirty_bytes, 0);
    assert!(!c.needs_cleaning);
    assert!(clean(&mut log, i64::MAX, NOW).is_none());
    // Offsets that were removed read as the next batch; the log end and start are unchanged.
    assert_eq!(log.log_start_offset(), 0);
    assert_eq!(log.log_end_offset(), 120);
    let first_kept = got[0].0;
    for o in 0..=first_kept {
        let hs = batch_headers(&log.read(o, 1, i64::MAX, true).unwrap());
        assert!(hs[0].last_offset() >= o);
        assert!(hs[0].base_offset <= first_kept.max(o), "{o}: {:?}", hs[0]);
    }
    // ListOffsets by timestamp in a gap finds the next record.
    assert_eq!(
        log.offset_for_timestamp(0).unwrap().map(|x| x.0),
        Some(first_kept)
    );
    // The same after a clean and an unclean reopen (indexes of cleaned segments rebuilt).
    log.close().unwrap();
    let log = PartitionLog::open(dir.path(), compact_config(), NOW).unwrap();
    assert_eq!(all_records(&log), got);
    drop(log);
    for e in fs::read_dir(dir.path()).unwrap() {
        let p = e.unwrap().path();
        if p.extension()
            .is_some_and(|e| e == "index" || e == "timeindex")
        {
            fs::remove_file(p).unwrap();
        }
    }
    let log = PartitionLog::open(dir.path(), compact_config(), NOW).unwrap();
    assert_eq!(all_records(&log), got);
    assert_eq!(log.log_end_offset(), 120);
}

#[test]
fn each_cleaned_group_ends_where_the_replaced_segments_ended() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), compact_config(), NOW).unwrap();
    append_updates(&mut log, &["a"], 60);
    clean(&mut log, i64::MAX, NOW).unwrap();
    // The cleaned segments are small now; with new data they are merged by the next clean.
    append_updates(&mut log, &["a"], 60);
    let bases = log.segment_base_offsets();
    clean(&mut log, i64::MAX, NOW).unwrap();
    let after = log.segment_base_offsets();
    // Groups merged: fewer segments, each starting at an old base, the last one the same.
    assert!(after.len() < bases.len(), "{bases:?} -> {after:?}");
    assert!(after.iter().all(|b| bases.contains(b)));
    assert_eq!(after.last(), bases.last());
    // Every segment ends where the next begins (empty batch headers keep the last offsets).
    let segs = log.segments();
    for w in segs.windows(2) {
        assert_eq!(w[0].next_offset, w[1].base_offset);
    }
    let batches = all_batches(&log);
    assert!(batches.iter().any(|h| h.records_count == 0));
    let got = all_records(&log);
    assert_eq!(got.len(), 1 + 120 - *bases.last().unwrap() as usize);
}

#[test]
fn tombstones_are_kept_then_removed_after_delete_retention() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), compact_config(), NOW).unwrap();
    let mut rows = append_updates(&mut log, &["a", "b"], 20);
    let o = log.append(&kv(&[("a", None)]), NOW).unwrap();
    rows.push(row(o.base_offset, "a", None));
    rows.extend(append_updates(&mut log, &["c"], 30));
    let end = clean(&mut log, i64::MAX, NOW + 10).unwrap().end_offset;
    assert!(end > o.base_offset);
    let got = all_records(&log);
    assert_eq!(got, model(&rows, end, false));
    assert!(
        got.contains(&row(o.base_offset, "a", None)),
        "tombstone kept"
    );
    assert!(!got
        .iter()
        .any(|r| r.1.as_deref() == Some(b"a") && r.2.is_some()));
    // Not dirty, but the kept tombstone expires: the log asks to be cleaned again then.
    let c = log.cleanable(i64::MAX, NOW + 500).unwrap();
    assert!(!c.needs_cleaning && !c.tombstones_expired, "{c:?}");
    assert!(clean(&mut log, i64::MAX, NOW + 500).is_none());
    // The expiry survives a reopen (it is in the cleaner checkpoint).
    log.close().unwrap();
    let mut log = PartitionLog::open(dir.path(), compact_config(), NOW).unwrap();
    let c: Cleanable = log.cleanable(i64::MAX, NOW + 1001).unwrap();
    assert!(c.needs_cleaning && c.tombstones_expired, "{c:?}");
    let stats = clean(&mut log, i64::MAX, NOW + 1001).unwrap();
    assert_eq!(stats.tombstones_removed, 1);
    assert_eq!(all_records(&log), model(&rows, end, true));
    assert!(!log.cleanable(i64::MAX, NOW + 5000).unwrap().needs_cleaning);
}

#[test]
fn upper_bound_and_min_compaction_lag_limit_the_cleaned_section() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), compact_config(), NOW).unwrap();
    let rows = append_updates(&mut log, &["a", "b"], 100);
    let bases = log.segment_base_offsets();
    // The upper bound (a high watermark) falls inside the 4th segment: the first 3 are cleaned.
    let upper = bases[3] + 1;
    let c = log.cleanable(upper, NOW).unwrap();
    assert_eq!(c.first_uncleanable_offset, bases[3]);
    let stats = clean(&mut log, upper, NOW).unwrap();
    assert_eq!(stats.end_offset, bases[3]);
    assert_eq!(all_records(&log), model(&rows, bases[3], false));
    // min.compaction.lag.ms: nothing is old enough at NOW + 10.
    log.set_config(LogConfig {
        min_compaction_lag_ms: 60_000,
        ..compact_config()
    });
    // (The first segments are as new as the rest: nothing is cleanable.)
    assert_eq!(
        log.cleanable(i64::MAX, NOW + 10)
            .unwrap()
            .first_uncleanable_offset,
        0
    );
    assert!(clean(&mut log, i64::MAX, NOW + 10).is_none());
    assert_eq!(all_records(&log), model(&rows, bases[3], false));
    // Once it is, the rest (below the active segment) is cleaned.
    let active = *log.segment_base_offsets().last().unwrap();
    let stats = clean(&mut log, i64::MAX, NOW + 120_000).unwrap();
    assert_eq!(stats.end_offset, active);
    assert_eq!(all_records(&log), model(&rows, active, false));
}

#[test]
fn dirty_ratio_and_max_compaction_lag() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        min_cleanable_dirty_ratio: 0.9,
        max_compaction_lag_ms: 10_000,
        ..compact_config()
    };
    let mut log = PartitionLog::open(dir.path(), config, NOW).unwrap();
    append_updates(&mut log, &["a", "b", "c", "d", "e", "f", "g", "h"], 80);
    clean(&mut log, i64::MAX, NOW).unwrap();
    append_updates(&mut log, &["a"], 12);
    let c = log.cleanable(i64::MAX, NOW).unwrap();
    assert!(c.dirty_bytes > 0 && c.dirty_ratio < 0.9, "{c:?}");
    assert!(!c.needs_cleaning);
    let expected = c.dirty_bytes as f64 / (c.dirty_bytes + c.clean_bytes) as f64;
    assert!((c.dirty_ratio - expected).abs() < 1e-9);
    // The oldest dirty batch is older than max.compaction.lag.ms: clean anyway.
    let c = log.cleanable(i64::MAX, NOW + 20_000).unwrap();
    assert!(c.max_lag_exceeded && c.needs_cleaning, "{c:?}");
}

#[test]
fn compressed_batches_keep_their_codec_headers_and_producer_fields() {
    for compression in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), compact_config(), NOW).unwrap();
        let batch = K {
            recs: &[
                ("a", Some("1")),
                ("b", Some("1")),
                ("a", Some("2")),
                ("c", None),
                ("b", Some("2")),
            ],
            compression,
            header: true,
            pid: 9,
            epoch: 2,
            seq: 0,
            ..K::default()
        }
        .build();
        log.append_with_leader_epoch(&batch, NOW, 4).unwrap();
        // Another producer's later update of "b" and a roll.
        let later = K {
            recs: &[("b", Some("3"))],
            compression,
            ..K::default()
        }
        .build();
        log.append(&later, NOW).unwrap();
        let filler = "x".repeat(700);
        log.append(&kv(&[("z", Some(&filler))]), NOW).unwrap();
        log.append(&kv(&[("z", Some("y"))]), NOW).unwrap();
        assert!(log.segment_count() >= 2, "{compression:?}");
        clean(&mut log, i64::MAX, NOW).unwrap();
        let hs = all_batches(&log);
        let first = hs[0];
        assert_eq!(first.base_offset, 0);
        assert_eq!(first.last_offset_delta, 4, "last offset delta kept");
        assert_eq!(first.compression(), compression as u8, "{compression:?}");
        assert_eq!(
            (first.producer_id, first.producer_epoch, first.base_sequence),
            (9, 2, 0)
        );
        assert_eq!(first.partition_leader_epoch, 4);
        assert_eq!(first.base_timestamp, NOW);
        assert_eq!(first.records_count, 2);
        // a=2 (offset 2) and the tombstone c (offset 3) stay; a=1, b=1, b=2 go.
        let data = log.read(0, 1 << 20, i64::MAX, true).unwrap();
        let mut b = data.clone();
        let sets = RecordBatchDecoder::decode_all(&mut b).unwrap();
        let recs = &sets[0].records;
        assert_eq!(recs.len(), 2);
        assert_eq!(
            (recs[0].offset, recs[0].key.as_deref()),
            (2, Some(&b"a"[..]))
        );
        assert_eq!(recs[0].value.as_deref(), Some(&b"2"[..]));
        assert_eq!(recs[0].timestamp, NOW + 2);
        assert_eq!(recs[0].headers, indexmap_headers(), "headers kept");
        assert_eq!((recs[1].offset, recs[1].value.is_none()), (3, true));
        assert_eq!(
            first.max_timestamp,
            NOW + 3,
            "max timestamp of the kept records"
        );
        crate::cleaner::validate_stored_batch(&data[..first.total_size()]).unwrap();
        // Uncompressed: the kept records are the original bytes (the strict client check
        // refuses the gap, as it must for produce).
        assert!(batch::validate_batch(&data[..first.total_size()]).is_err());
    }
}

#[test]
fn keyless_records_are_refused_on_compacted_logs() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), compact_config(), NOW).unwrap();
    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let b = B {
            n: 2,
            compression,
            ..B::default()
        }
        .build();
        assert!(matches!(
            log.append(&b, NOW),
            Err(StorageError::InvalidRecord(_))
        ));
    }
    assert_eq!(log.log_end_offset(), 0);
    // Not compacted: accepted.
    log.set_config(LogConfig::default());
    log.append(&simple(2, NOW), NOW).unwrap();
}

#[test]
fn compact_alone_does_not_apply_time_or_size_retention() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_ms: 1,
        retention_bytes: 1,
        ..compact_config()
    };
    let mut log = PartitionLog::open(dir.path(), config.clone(), NOW).unwrap();
    append_updates(&mut log, &["a", "b"], 60);
    let n = log.segment_count();
    assert_eq!(log.enforce_retention(NOW + 1_000_000).unwrap(), 0);
    assert_eq!(log.segment_count(), n);
    log.set_config(LogConfig {
        cleanup_delete: true,
        ..config
    });
    assert!(log.enforce_retention(NOW + 1_000_000).unwrap() > 0);
}

#[test]
fn idempotent_producer_continues_after_clean_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), compact_config(), NOW).unwrap();
    let idem_kv = |seq: i32, k: &str| {
        K {
            recs: &[(k, Some("p"))],
            pid: 7,
            epoch: 0,
            seq,
            ..K::default()
        }
        .build()
    };
    // Producer 7: seq 0 writes "b" (stays the latest "b"), seq 1..=4 write "a".
    log.append(&idem_kv(0, "b"), NOW).unwrap();
    for seq in 1..=4 {
        log.append(&idem_kv(seq, "a"), NOW).unwrap();
    }
    let last = log.append(&idem_kv(4, "a"), NOW).unwrap();
    assert!(last.duplicate);
    // Another producer overwrites "a" many times (several segments).
    append_updates(&mut log, &["a"], 40);
    clean(&mut log, i64::MAX, NOW).unwrap();
    // Producer 7's seq 1..=3 batches are gone; its last one (seq 4) is an empty header.
    let hs = all_batches(&log);
    let p7: Vec<_> = hs.iter().filter(|h| h.producer_id == 7).collect();
    assert_eq!(p7.len(), 2, "{p7:?}");
    assert_eq!((p7[1].base_sequence, p7[1].records_count), (4, 0));
    assert_eq!(p7[1].base_offset, last.base_offset);
    // Lose the producer snapshots and crash: state is rebuilt from the cleaned log.
    drop(log);
    for e in fs::read_dir(dir.path()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|e| e == "snapshot") {
            fs::remove_file(p).unwrap();
        }
    }
    let mut log = PartitionLog::open(dir.path(), compact_config(), NOW).unwrap();
    let retry = log.append(&idem_kv(4, "a"), NOW).unwrap();
    assert!(retry.duplicate);
    assert_eq!(retry.base_offset, last.base_offset);
    let next = log.append(&idem_kv(5, "a"), NOW).unwrap();
    assert!(!next.duplicate);
}

#[test]
fn replicated_cleaned_batches_are_accepted_by_a_follower() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), compact_config(), NOW).unwrap();
    let rows = append_updates(&mut log, &["a", "b", "c"], 80);
    let end = clean(&mut log, i64::MAX, NOW).unwrap().end_offset;
    // A follower copies the cleaned leader log from the start, fetch by fetch.
    let fdir = tempfile::tempdir().unwrap();
    let mut follower = PartitionLog::open(fdir.path(), compact_config(), NOW).unwrap();
    while follower.log_end_offset() < log.log_end_offset() {
        let data = log
            .read(follower.log_end_offset(), 300, i64::MAX, true)
            .unwrap();
        follower.append_replicated(&data, NOW).unwrap();
    }
    assert_eq!(all_records(&follower), model(&rows, end, false));
    drop(follower);
    let follower = PartitionLog::open(fdir.path(), compact_config(), NOW).unwrap();
    assert_eq!(all_records(&follower), model(&rows, end, false));
}

#[test]
fn log_changed_during_the_clean_discards_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), compact_config(), NOW).unwrap();
    let rows = append_updates(&mut log, &["a", "b"], 60);
    let task = log.prepare_clean(i64::MAX, NOW, 1 << 20).unwrap().unwrap();
    // Appends go on while the task runs.
    let more = append_updates(&mut log, &["c"], 5);
    let done = task.run().unwrap();
    let bases = log.segment_base_offsets();
    log.delete_records_before(bases[1]).unwrap();
    assert!(log.finish_clean(done).unwrap().is_none());
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let mut all = rows;
    all.extend(more);
    let expected: Vec<Row> = all.into_iter().filter(|r| r.0 >= bases[1]).collect();
    assert_eq!(all_records(&log), expected);
}

#[test]
fn dedupe_buffer_too_small_cleans_a_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), compact_config(), NOW).unwrap();
    // Many distinct keys: each segment alone fills a small map.
    let keys: Vec<String> = (0..200).map(|i| format!("key-{i}")).collect();
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let rows = append_updates(&mut log, &key_refs, 200);
    let active = *log.segment_base_offsets().last().unwrap();
    let task = log.prepare_clean(i64::MAX, NOW, 300).unwrap().unwrap();
    let stats = log.finish_clean(task.run().unwrap()).unwrap().unwrap();
    assert!(stats.end_offset < active, "{stats:?}");
    assert_eq!(log.first_dirty_offset(), stats.end_offset);
    assert_eq!(all_records(&log), model(&rows, stats.end_offset, false));
    // Repeated cleans get through the whole log.
    for _ in 0..100 {
        let Some(task) = log.prepare_clean(i64::MAX, NOW, 300).unwrap() else {
            break;
        };
        log.finish_clean(task.run().unwrap()).unwrap();
    }
    assert_eq!(log.first_dirty_offset(), active);
    assert_eq!(all_records(&log), model(&rows, active, false));
}

/// Files a crash could leave behind.
fn leftover_clean_files(dir: &std::path::Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap"))
        .collect()
}

#[test]
fn a_crash_at_every_swap_step_recovers() {
    for step in 0..=3u8 {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), compact_config(), NOW).unwrap();
        let rows = append_updates(&mut log, &["a", "b", "c"], 90);
        let active = *log.segment_base_offsets().last().unwrap();
        clean(&mut log, i64::MAX, NOW).unwrap();
        let mut rows = model(&rows, active, false);
        rows.extend(append_updates(&mut log, &["a", "b", "c"], 90));
        let active = *log.segment_base_offsets().last().unwrap();
        log.swap_crash_at = Some(step);
        let task = log.prepare_clean(i64::MAX, NOW, 1 << 20).unwrap().unwrap();
        let done = task.run().unwrap();
        // Several groups, the first merging several segments: its swap stops at `step`.
        assert!(done.groups.len() >= 2, "{}", done.groups.len());
        assert!(
            done.groups[0].old.len() >= 2,
            "{}",
            done.groups[0].old.len()
        );
        assert!(log.finish_clean(done).is_err());
        // Leave the kind of junk an earlier crash could leave, too.
        fs::write(dir.path().join("00000000000000000001.log.cleaned"), b"junk").unwrap();
        drop(log); // a crash: no close
        let mut log = PartitionLog::open(dir.path(), compact_config(), NOW).unwrap();
        assert!(leftover_clean_files(dir.path()).is_empty(), "step {step}");
        let got = all_records(&log);
        let old = rows.clone();
        if step == 0 {
            assert_eq!(got, old, "step {step}: not committed, old log");
        } else {
            // The first group is swapped in; the rest is as it was.
            let first_end = log.segments()[0].next_offset;
            assert_eq!(log.segments()[1].base_offset, first_end);
            let mut expected = model(&rows, first_end, false);
            // The first group was cleaned against the map of the whole dirty section.
            let latest_at_end = model(&rows, active, false);
            expected.retain(|r| r.0 >= first_end || latest_at_end.contains(r));
            assert_eq!(got, expected, "step {step}");
        }
        assert_eq!(log.log_end_offset(), 180);
        for w in log.segments().windows(2) {
            assert_eq!(w[0].next_offset, w[1].base_offset, "step {step}");
        }
        // Cleaning again converges on the compacted log.
        clean(&mut log, i64::MAX, NOW).unwrap();
        assert_eq!(
            all_records(&log),
            model(&rows, active, false),
            "step {step}"
        );
        log.close().unwrap();
        let log = PartitionLog::open(dir.path(), compact_config(), NOW).unwrap();
        assert_eq!(
            all_records(&log),
            model(&rows, active, false),
            "step {step}"
        );
    }
}

#[test]
fn empty_batches_survive_unclean_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), compact_config(), NOW).unwrap();
    let rows = append_updates(&mut log, &["a"], 50);
    let active = *log.segment_base_offsets().last().unwrap();
    clean(&mut log, i64::MAX, NOW).unwrap();
    // Keep appending so the cleaned segments are followed by more data, then crash.
    drop(log);
    // Make every segment go through full recovery: delete all indexes.
    for e in fs::read_dir(dir.path()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|e| e == "index") {
            fs::remove_file(p).unwrap();
        }
    }
    let log = PartitionLog::open(dir.path(), compact_config(), NOW).unwrap();
    assert_eq!(log.log_end_offset(), 50);
    assert_eq!(all_records(&log), model(&rows, active, false));
}

mod props {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        /// Keys (0..4) of one batch, `true` = tombstone; old = timestamp far in the past.
        Append {
            recs: Vec<(u8, bool)>,
            old: bool,
            codec: u8,
        },
        /// Clean with the upper bound `log end - back`.
        Clean {
            back: u8,
        },
        Reopen {
            clean_shutdown: bool,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (proptest::collection::vec((0u8..5, proptest::bool::weighted(0.2)), 1..4), any::<bool>(), 0u8..5)
                .prop_map(|(recs, old, codec)| Op::Append { recs, old, codec }),
            2 => (0u8..20).prop_map(|back| Op::Clean { back }),
            1 => any::<bool>().prop_map(|clean_shutdown| Op::Reopen { clean_shutdown }),
        ]
    }

    fn codec(c: u8) -> Compression {
        match c {
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            _ => Compression::None,
        }
    }

    /// The model: the records the log must hold, and each record's batch timestamp.
    struct Model {
        rows: Vec<Row>,
        ts: HashMap<i64, i64>,
    }

    impl Model {
        /// Kafka's rule for a clean of `[.., end)` at `now`.
        fn clean(&mut self, end: i64, now: i64, retention: i64) {
            let mut latest: HashMap<Vec<u8>, i64> = HashMap::new();
            for (o, k, _) in self.rows.iter().filter(|r| r.0 < end) {
                latest.insert(k.clone().unwrap(), *o);
            }
            let ts = &self.ts;
            self.rows.retain(|(o, k, v)| {
                *o >= end
                    || (latest[k.as_ref().unwrap()] == *o
                        && !(v.is_none() && now - ts[o] > retention))
            });
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn reads_back_the_latest_value_per_key_below_the_cleaned_point(ops in proptest::collection::vec(op(), 1..60)) {
            let dir = tempfile::tempdir().unwrap();
            let config = LogConfig { segment_bytes: 300, ..compact_config() };
            let mut log = Some(PartitionLog::open(dir.path(), config.clone(), NOW).unwrap());
            let mut m = Model { rows: Vec::new(), ts: HashMap::new() };
            let mut now = NOW;
            let mut counter = 0;
            for op in ops {
                now += 100;
                let l = log.as_mut().unwrap();
                match op {
                    Op::Append { recs, old, codec: c } => {
                        let names: Vec<String> = recs.iter().map(|(k, _)| format!("k{k}")).collect();
                        let values: Vec<String> = recs.iter().map(|_| { counter += 1; format!("v{counter}") }).collect();
                        let kvs: Vec<Kv<'_>> = recs.iter().enumerate().map(|(i, (_, t))| {
                            (names[i].as_str(), if *t { None } else { Some(values[i].as_str()) })
                        }).collect();
                        let ts = if old { now - 10_000 } else { now };
                        let b = K { recs: &kvs, ts, compression: codec(c), ..K::default() }.build();
                        let out = l.append(&b, now).unwrap();
                        for (i, (k, v)) in kvs.iter().enumerate() {
                            let o = out.base_offset + i as i64;
                            m.rows.push(row(o, k, *v));
                            // One record per timestamp: the batch max is the last record's.
                            m.ts.insert(o, ts + kvs.len() as i64 - 1);
                        }
                    }
                    Op::Clean { back } => {
                        let upper = (l.log_end_offset() - i64::from(back)).max(0);
                        if let Some(stats) = clean(l, upper, now) {
                            prop_assert!(stats.end_offset <= upper);
                            m.clean(stats.end_offset, now, config.delete_retention_ms);
                        }
                    }
                    Op::Reopen { clean_shutdown } => {
                        let l = log.take().unwrap();
                        if clean_shutdown { l.close().unwrap(); } else { drop(l); }
                        log = Some(PartitionLog::open(dir.path(), config.clone(), now).unwrap());
                    }
                }
                prop_assert_eq!(all_records(log.as_ref().unwrap()), m.rows.clone());
            }
        }
    }
}

/// A transactional batch of keyed records from producer `pid` (epoch 0).
fn txn_kv(pid: i64, seq: i32, recs: &[Kv<'_>]) -> Vec<u8> {
    K {
        recs,
        pid,
        epoch: 0,
        seq,
        transactional: true,
        ..K::default()
    }
    .build()
}

fn end_marker(pid: i64, commit: bool, ts: i64) -> Vec<u8> {
    batch::encode_end_txn_marker(
        &batch::EndTxnMarker {
            producer_id: pid,
            producer_epoch: 0,
            commit,
            coordinator_epoch: 0,
        },
        ts,
    )
}

/// (producer id, base offset, commit?) of every end-transaction marker in the log.
fn markers(log: &PartitionLog) -> Vec<(i64, i64)> {
    all_batches(log)
        .iter()
        .filter(|h| h.is_control())
        .map(|h| (h.producer_id, h.base_offset))
        .collect()
}

#[test]
fn the_cleaner_never_passes_the_last_stable_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), compact_config(), NOW).unwrap();
    append_updates(&mut log, &["a", "b"], 20);
    let first = log
        .append(&txn_kv(9, 0, &[("a", Some("t"))]), NOW)
        .unwrap()
        .base_offset;
    let rows_after: Vec<Row> = append_updates(&mut log, &["a", "b"], 60);
    assert!(log.segment_count() > 4);
    // The caller passes the high watermark; the open transaction bounds the clean.
    let c = log.cleanable(i64::MAX, NOW).unwrap();
    assert!(c.first_uncleanable_offset <= first, "{c:?}");
    let stats = clean(&mut log, i64::MAX, NOW).unwrap();
    assert!(stats.end_offset <= first);
    let got = all_records(&log);
    assert!(got.contains(&row(first, "a", Some("t"))));
    for r in &rows_after {
        assert!(got.contains(r), "{r:?} was cleaned past the LSO");
    }
    // Once committed (and the marker below the high watermark) the rest is cleanable.
    let m = log
        .append(&end_marker(9, true, NOW), NOW)
        .unwrap()
        .base_offset;
    let leo = log.log_end_offset();
    // Committed, but with the marker not below the high watermark the bound is the same.
    assert_eq!(
        log.cleanable(m, NOW).unwrap().first_uncleanable_offset,
        c.first_uncleanable_offset
    );
    log.on_high_watermark(leo);
    let c = log.cleanable(leo, NOW).unwrap();
    assert!(c.first_uncleanable_offset > first, "{c:?}");
    clean(&mut log, leo, NOW).unwrap();
    let got = all_records(&log);
    assert!(
        !got.contains(&row(first, "a", Some("t"))),
        "superseded after commit"
    );
}

#[test]
fn aborted_data_is_removed_and_never_shadows_committed_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), compact_config(), NOW).unwrap();
    let a1 = log
        .append(&kv(&[("a", Some("v1"))]), NOW)
        .unwrap()
        .base_offset;
    let t1 = log
        .append(
            &txn_kv(1, 0, &[("a", Some("aborted")), ("b", Some("aborted"))]),
            NOW,
        )
        .unwrap()
        .base_offset;
    let c1 = log
        .append(&txn_kv(2, 0, &[("c", Some("committed"))]), NOW)
        .unwrap()
        .base_offset;
    let abort_at = log
        .append(&end_marker(1, false, NOW), NOW)
        .unwrap()
        .base_offset;
    let commit_at = log
        .append(&end_marker(2, true, NOW), NOW)
        .unwrap()
        .base_offset;
    append_updates(&mut log, &["x", "y"], 40);
    assert!(log.segment_count() > 2);
    assert_eq!(log.aborted_transactions(0, 10), vec![(1, t1)]);
    let stats = clean(&mut log, i64::MAX, NOW).unwrap();
    assert_eq!(stats.aborted_records_removed, 2);
    assert_eq!(stats.markers_removed, 0);
    let got = all_records(&log);
    assert!(got.contains(&row(a1, "a", Some("v1"))), "{got:?}");
    assert!(got.contains(&row(c1, "c", Some("committed"))));
    assert!(!got.iter().any(|r| r.2.as_deref() == Some(&b"aborted"[..])));
    // Producer 1's last batch stays as an empty header, so its abort marker stays, with its
    // index entry, in the cleaned segment.
    let empty = all_batches(&log)
        .into_iter()
        .find(|h| h.base_offset == t1)
        .unwrap();
    assert!(empty.records_count == 0 && empty.is_transactional());
    assert_eq!(markers(&log), vec![(1, abort_at), (2, commit_at)]);
    let leo = log.log_end_offset();
    assert_eq!(log.aborted_transactions(0, leo), vec![(1, t1)]);
    assert!(log.ongoing_transactions().is_empty());
    // The index entry is in the cleaned segment's file: a clean reopen (no replay) has it.
    log.close().unwrap();
    let log = PartitionLog::open(dir.path(), compact_config(), NOW).unwrap();
    assert_eq!(log.aborted_transactions(0, leo), vec![(1, t1)]);
    // A replay of the cleaned log from its start finds the same transactions.
    drop(log);
    for e in fs::read_dir(dir.path()).unwrap() {
        let p = e.unwrap().path();
        if p.extension()
            .is_some_and(|x| x == "snapshot" || x == "txnindex")
        {
            fs::remove_file(p).unwrap();
        }
    }
    let log = PartitionLog::open(dir.path(), compact_config(), NOW).unwrap();
    assert!(log.ongoing_transactions().is_empty());
    assert_eq!(log.last_stable_offset(leo), leo);
    assert_eq!(log.aborted_transactions(0, leo), vec![(1, t1)]);
}

#[test]
fn markers_go_after_delete_retention_once_their_transaction_has_no_data_left() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), compact_config(), NOW).unwrap();
    log.append(&txn_kv(1, 0, &[("k", Some("v1"))]), NOW)
        .unwrap();
    let first = log
        .append(&end_marker(1, true, NOW), NOW)
        .unwrap()
        .base_offset;
    log.append(&kv(&[("k", Some("v2"))]), NOW).unwrap();
    // A later transaction of the same producer holds its state (its last batch and marker).
    log.append(&txn_kv(1, 1, &[("j", Some("w"))]), NOW).unwrap();
    let second = log
        .append(&end_marker(1, true, NOW), NOW)
        .unwrap()
        .base_offset;
    append_updates(&mut log, &["x", "y"], 40);
    // First clean: k=v1 goes, but its batch was seen, so its marker stays.
    clean(&mut log, i64::MAX, NOW).unwrap();
    assert_eq!(markers(&log), vec![(1, first), (1, second)]);
    // Second clean, within delete.retention.ms of the marker: nothing of its transaction is
    // left, the marker waits for its expiry.
    append_updates(&mut log, &["x", "y"], 40);
    let stats = clean(&mut log, i64::MAX, NOW + 500).unwrap();
    assert_eq!(stats.markers_removed, 0);
    assert_eq!(stats.next_tombstone_expiry, Some(NOW + 1000));
    assert_eq!(markers(&log), vec![(1, first), (1, second)]);
    // After it: the marker goes (the clean is due because of that expiry alone).
    assert!(log.cleanable(i64::MAX, NOW + 2000).unwrap().needs_cleaning);
    let stats = clean(&mut log, i64::MAX, NOW + 2000).unwrap();
    assert_eq!(stats.markers_removed, 1);
    assert_eq!(markers(&log), vec![(1, second)]);
}

#[test]
fn the_aborted_transaction_index_survives_a_crash_at_every_swap_step() {
    for step in 0..=3u8 {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), compact_config(), NOW).unwrap();
        append_updates(&mut log, &["a", "b", "c"], 30);
        let t1 = log
            .append(&txn_kv(1, 0, &[("a", Some("aborted"))]), NOW)
            .unwrap()
            .base_offset;
        append_updates(&mut log, &["a", "b", "c"], 5);
        let m = log
            .append(&end_marker(1, false, NOW), NOW)
            .unwrap()
            .base_offset;
        append_updates(&mut log, &["a", "b", "c"], 60);
        // A first clean shrinks the segments; the marker and its index entry stay.
        clean(&mut log, i64::MAX, NOW).unwrap();
        assert_eq!(log.aborted_transactions(0, m + 1), vec![(1, t1)]);
        append_updates(&mut log, &["a", "b", "c"], 90);
        let leo = log.log_end_offset();
        log.swap_crash_at = Some(step);
        let task = log.prepare_clean(i64::MAX, NOW, 1 << 20).unwrap().unwrap();
        let done = task.run().unwrap();
        // The first group merges several segments, the marker's among them (not the first).
        let g = &done.groups[0].old;
        assert!(
            g[1..].iter().any(|&(base, _, next)| base <= m && m < next),
            "{g:?}, marker {m}"
        );
        assert!(log.finish_clean(done).is_err());
        drop(log); // a crash
        let log = PartitionLog::open(dir.path(), compact_config(), NOW).unwrap();
        assert!(leftover_clean_files(dir.path()).is_empty(), "step {step}");
        assert_eq!(
            log.aborted_transactions(0, leo),
            vec![(1, t1)],
            "step {step}"
        );
        // No index file outlives its segment.
        let bases = log.segment_base_offsets();
        for e in fs::read_dir(dir.path()).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            if let Some(stem) = name.strip_suffix(".txnindex") {
                assert!(
                    bases.contains(&stem.parse().unwrap()),
                    "step {step}: {name}"
                );
            }
        }
    }
}
