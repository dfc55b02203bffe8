//! Tests of the transactional side of the log: producer transaction state, the last stable
//! offset, the aborted-transaction index, their recovery, truncation and replication.

use super::*;
use runnel_protocol::batch::EndTxnMarker;

/// A transactional data batch of `n` records.
fn txn(pid: i64, epoch: i16, seq: i32, n: usize) -> Vec<u8> {
    B {
        n,
        pid,
        epoch,
        seq,
        transactional: true,
        ..B::default()
    }
    .build()
}

fn marker(pid: i64, epoch: i16, commit: bool, coordinator_epoch: i32) -> Vec<u8> {
    batch::encode_end_txn_marker(
        &EndTxnMarker {
            producer_id: pid,
            producer_epoch: epoch,
            commit,
            coordinator_epoch,
        },
        5_000,
    )
}

fn commit(pid: i64, epoch: i16) -> Vec<u8> {
    marker(pid, epoch, true, 0)
}

fn abort(pid: i64, epoch: i16) -> Vec<u8> {
    marker(pid, epoch, false, 0)
}

fn base(log: &mut PartitionLog, batch: &[u8]) -> i64 {
    log.append(batch, 0).unwrap().base_offset
}

/// Every aborted-transaction index entry, segment by segment, as (segment base, producer id,
/// first offset, last offset, last stable offset).
fn index_entries(log: &PartitionLog) -> Vec<(i64, i64, i64, i64, i64)> {
    log.segments()
        .iter()
        .flat_map(|s| {
            s.aborted_txns().iter().map(|t| {
                (
                    s.base_offset,
                    t.producer_id,
                    t.first_offset,
                    t.last_offset,
                    t.last_stable_offset,
                )
            })
        })
        .collect()
}

#[test]
fn an_open_transaction_holds_the_last_stable_offset_until_its_marker_is_replicated() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
    log.append(&simple(2, 0), 0).unwrap(); // 0, 1
    assert_eq!(log.last_stable_offset(2), 2);
    assert_eq!(base(&mut log, &txn(10, 0, 0, 2)), 2); // 2, 3
    log.append(&simple(1, 0), 0).unwrap(); // 4: not transactional, still held back
    assert_eq!(log.ongoing_transactions(), vec![(10, 2)]);
    assert_eq!(log.first_unstable_offset(5), Some(2));
    assert_eq!(log.last_stable_offset(5), 2);
    // The LSO never passes the high watermark.
    assert_eq!(log.last_stable_offset(1), 1);
    // A second batch of the same transaction does not move its start.
    assert_eq!(base(&mut log, &txn(10, 0, 2, 1)), 5);
    assert_eq!(log.ongoing_transactions(), vec![(10, 2)]);
    assert_eq!(base(&mut log, &commit(10, 0)), 6);
    assert!(log.ongoing_transactions().is_empty());
    // Committed, but the marker is not below the high watermark yet.
    assert_eq!(log.last_stable_offset(6), 2);
    assert_eq!(log.last_stable_offset(7), 7);
    log.on_high_watermark(7);
    assert_eq!(log.first_unstable_offset(i64::MIN), None);
    // A commit is not an abort.
    assert!(log.aborted_transactions(0, 7).is_empty());
    assert!(index_entries(&log).is_empty());
    assert!(!file_path(dir.path(), 0, "txnindex").exists());
}

#[test]
fn aborted_transactions_are_indexed_with_their_first_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
    assert_eq!(base(&mut log, &txn(1, 0, 0, 1)), 0);
    assert_eq!(base(&mut log, &txn(2, 0, 0, 1)), 1);
    assert_eq!(base(&mut log, &txn(1, 0, 1, 1)), 2);
    assert_eq!(base(&mut log, &txn(3, 0, 0, 1)), 3);
    assert_eq!(log.last_stable_offset(4), 0);
    assert_eq!(base(&mut log, &abort(1, 0)), 4);
    assert_eq!(log.ongoing_transactions(), vec![(2, 1), (3, 3)]);
    assert_eq!(log.last_stable_offset(5), 1);
    assert_eq!(base(&mut log, &commit(3, 0)), 5);
    assert_eq!(base(&mut log, &abort(2, 0)), 6);
    assert_eq!(log.last_stable_offset(7), 7);
    // Producer 1's abort left producer 2's transaction open (LSO 1); producer 2's left none.
    assert_eq!(index_entries(&log), vec![(0, 1, 0, 4, 1), (0, 2, 1, 6, 7)]);
    assert_eq!(log.aborted_transactions(0, 7), vec![(1, 0), (2, 1)]);
    // From offset 5 only producer 2's abort (marker at 6) matters.
    assert_eq!(log.aborted_transactions(5, 7), vec![(2, 1)]);
    // Reading [0, 1): producer 1's entry is stable at 1, so the scan stops there.
    assert_eq!(log.aborted_transactions(0, 1), vec![(1, 0)]);
    // Reading [2, 3): both began before 3; the first's LSO (1) does not end the scan.
    assert_eq!(log.aborted_transactions(2, 3), vec![(1, 0), (2, 1)]);
    // The file holds Kafka's 34-byte entries.
    let bytes = fs::read(file_path(dir.path(), 0, "txnindex")).unwrap();
    assert_eq!(bytes.len(), 68);
    assert_eq!(&bytes[36..44], &2i64.to_be_bytes());
    assert_eq!(&bytes[44..52], &1i64.to_be_bytes());
    assert_eq!(&bytes[52..60], &6i64.to_be_bytes());
    assert_eq!(&bytes[60..68], &7i64.to_be_bytes());
}

#[test]
fn the_index_entry_goes_to_the_segment_holding_the_marker() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_segments(), 0).unwrap();
    assert_eq!(base(&mut log, &txn(1, 0, 0, 1)), 0);
    fill(&mut log, 30);
    let segs = log.segment_count();
    assert!(segs > 2, "the fill must roll segments");
    let m = base(&mut log, &abort(1, 0));
    let active = *log.segment_base_offsets().last().unwrap();
    assert_eq!(index_entries(&log), vec![(active, 1, 0, m, m + 1)]);
    // A fetch from any offset below the marker sees the abort; one after it does not.
    assert_eq!(log.aborted_transactions(5, m + 1), vec![(1, 0)]);
    assert_eq!(log.aborted_transactions(m + 1, m + 5), vec![]);
    // Nor does a fetch of later records.
    let tail = log.append(&simple(1, 0), 0).unwrap().base_offset;
    assert_eq!(log.aborted_transactions(tail, tail + 1), vec![]);
}

#[test]
fn markers_from_a_fenced_coordinator_or_producer_epoch_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
    log.append(&txn(1, 3, 0, 1), 0).unwrap();
    log.append(&marker(1, 3, true, 5), 0).unwrap();
    log.append(&txn(1, 3, 1, 1), 0).unwrap();
    let leo = log.log_end_offset();
    assert!(matches!(
        log.append(&marker(1, 3, false, 4), 0),
        Err(StorageError::TransactionCoordinatorFenced(_))
    ));
    assert!(matches!(
        log.append(&marker(1, 2, false, 5), 0),
        Err(StorageError::InvalidProducerEpoch(_))
    ));
    assert_eq!(log.log_end_offset(), leo, "nothing was appended");
    assert_eq!(log.ongoing_transactions(), vec![(1, 2)]);
    // The same coordinator epoch, or a newer one, is accepted.
    log.append(&marker(1, 3, false, 5), 0).unwrap();
    log.append(&txn(1, 3, 2, 1), 0).unwrap();
    log.append(&marker(1, 3, true, 9), 0).unwrap();
    assert!(log.ongoing_transactions().is_empty());
    // A marker for a producer the partition does not know is appended and closes nothing.
    log.append(&marker(77, 0, false, 0), 0).unwrap();
    assert_eq!(index_entries(&log).len(), 1);
}

#[test]
fn a_non_transactional_write_during_an_open_transaction_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
    log.append(&txn(1, 0, 0, 2), 0).unwrap();
    assert!(matches!(
        log.append(&idem(1, 0, 2, 1), 0),
        Err(StorageError::InvalidTxnState(_))
    ));
    // Other producers, and writers without a producer id, are not concerned.
    log.append(&idem(2, 0, 0, 1), 0).unwrap();
    log.append(&simple(1, 0), 0).unwrap();
    // A retry of the transactional batch is still recognised.
    assert!(log.append(&txn(1, 0, 0, 2), 0).unwrap().duplicate);
    log.append(&commit(1, 0), 0).unwrap();
    assert!(!log.append(&idem(1, 0, 2, 1), 0).unwrap().duplicate);
}

#[test]
fn a_control_batch_that_is_not_an_end_transaction_marker_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
    let not_a_marker = B {
        pid: 1,
        epoch: 0,
        transactional: true,
        control: true,
        ..B::default()
    }
    .build();
    assert!(matches!(
        log.append(&not_a_marker, 0),
        Err(StorageError::InvalidRecord(_))
    ));
    assert_eq!(log.log_end_offset(), 0);
}

#[test]
fn expiry_skips_producers_with_open_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        producer_id_expiration_ms: 1_000,
        producer_id_expiration_check_interval_ms: 1,
        ..LogConfig::default()
    };
    let t0 = 1_700_000_000_000i64;
    let mut log = PartitionLog::open(dir.path(), config, t0).unwrap();
    log.append(&txn(1, 0, 0, 1), t0).unwrap();
    log.append(&idem(2, 0, 0, 1), t0).unwrap();
    log.tick(t0 + 5_000).unwrap();
    assert_eq!(log.producer_count(), 1);
    assert_eq!(log.ongoing_transactions(), vec![(1, 0)]);
    assert_eq!(log.last_stable_offset(2), 0);
    log.append(&commit(1, 0), t0 + 5_000).unwrap();
    log.tick(t0 + 5_500).unwrap();
    assert_eq!(log.producer_count(), 1, "idle for 500 ms only");
    log.tick(t0 + 6_001).unwrap();
    assert_eq!(log.producer_count(), 0);
}

#[test]
fn transactions_and_the_index_survive_clean_and_unclean_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_segments();
    let (open_first, aborted, entries) = {
        let mut log = PartitionLog::open(dir.path(), cfg.clone(), 0).unwrap();
        log.append(&txn(1, 0, 0, 1), 0).unwrap();
        fill(&mut log, 15);
        let open_first = base(&mut log, &txn(2, 0, 0, 1));
        fill(&mut log, 15);
        log.append(&abort(1, 0), 0).unwrap();
        fill(&mut log, 15);
        assert!(log.segment_count() > 2);
        let aborted = log.aborted_transactions(0, log.log_end_offset());
        let entries = index_entries(&log);
        log.close().unwrap();
        (open_first, aborted, entries)
    };
    assert_eq!(aborted, vec![(1, 0)]);
    assert_eq!(
        entries[0].4, open_first,
        "LSO after the abort: producer 2's start"
    );
    let check = |log: &PartitionLog| {
        assert_eq!(log.ongoing_transactions(), vec![(2, open_first)]);
        assert_eq!(log.last_stable_offset(log.log_end_offset()), open_first);
        assert_eq!(index_entries(log), entries);
        assert_eq!(log.aborted_transactions(0, log.log_end_offset()), aborted);
    };
    // Clean reopen: the snapshot at the log end holds producer 2's open transaction.
    let log = PartitionLog::open(dir.path(), cfg.clone(), 0).unwrap();
    check(&log);
    drop(log); // crash
               // Unclean reopen with the index files gone and no snapshot: all rebuilt from the log.
    for e in fs::read_dir(dir.path()).unwrap() {
        let p = e.unwrap().path();
        if p.extension()
            .is_some_and(|x| x == "txnindex" || x == "snapshot")
        {
            fs::remove_file(p).unwrap();
        }
    }
    let mut log = PartitionLog::open(dir.path(), cfg.clone(), 0).unwrap();
    check(&log);
    // Closing producer 2's transaction after all that works as before.
    log.append(&abort(2, 0), 0).unwrap();
    assert!(log.ongoing_transactions().is_empty());
    let leo = log.log_end_offset();
    assert_eq!(
        log.aborted_transactions(0, leo),
        vec![(1, 0), (2, open_first)]
    );
}

#[test]
fn a_crash_that_loses_the_marker_reopens_the_transaction_and_drops_its_entry() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig::default();
    {
        let mut log = PartitionLog::open(dir.path(), cfg.clone(), 0).unwrap();
        log.append(&txn(1, 0, 0, 1), 0).unwrap();
        log.append(&abort(1, 0), 0).unwrap();
        log.close().unwrap();
    }
    // The abort marker's tail is lost (a machine crash), its index entry and the snapshot at
    // the log end were written.
    fs::remove_file(dir.path().join(".clean_shutdown")).unwrap();
    let path = file_path(dir.path(), 0, "log");
    let len = fs::metadata(&path).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    let log = PartitionLog::open(dir.path(), cfg, 0).unwrap();
    assert_eq!(log.log_end_offset(), 1);
    assert_eq!(log.ongoing_transactions(), vec![(1, 0)]);
    assert!(index_entries(&log).is_empty());
    assert_eq!(
        fs::metadata(file_path(dir.path(), 0, "txnindex"))
            .unwrap()
            .len(),
        0
    );
}

#[test]
fn truncation_below_a_marker_reopens_the_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_segments(), 0).unwrap();
    log.append(&txn(1, 0, 0, 1), 0).unwrap();
    fill(&mut log, 12);
    let m = base(&mut log, &abort(1, 0));
    fill(&mut log, 12);
    assert_eq!(index_entries(&log).len(), 1);
    log.truncate_to(m).unwrap();
    assert_eq!(log.log_end_offset(), m);
    assert_eq!(log.ongoing_transactions(), vec![(1, 0)]);
    assert_eq!(log.last_stable_offset(m), 0);
    assert!(index_entries(&log).is_empty());
    assert!(log.aborted_transactions(0, m).is_empty());
    // The coordinator writes the marker again; it may now be a commit.
    assert_eq!(base(&mut log, &commit(1, 0)), m);
    assert!(log.ongoing_transactions().is_empty());
    assert!(index_entries(&log).is_empty());
    // Truncating below the transaction's first batch removes it.
    log.truncate_to(0).unwrap();
    assert!(log.ongoing_transactions().is_empty());
    assert_eq!(log.first_unstable_offset(i64::MIN), None);
}

#[test]
fn a_follower_replicating_the_same_batches_has_the_same_transactions() {
    let ldir = tempfile::tempdir().unwrap();
    let fdir = tempfile::tempdir().unwrap();
    let cfg = small_segments();
    let mut leader = PartitionLog::open(ldir.path(), cfg.clone(), 0).unwrap();
    let mut follower = PartitionLog::open(fdir.path(), cfg.clone(), 0).unwrap();
    leader.append(&txn(1, 0, 0, 2), 0).unwrap();
    fill(&mut leader, 6);
    leader.append(&txn(2, 0, 0, 1), 0).unwrap();
    leader.append(&txn(3, 0, 0, 1), 0).unwrap();
    fill(&mut leader, 6);
    leader.append(&abort(1, 0), 0).unwrap();
    leader.append(&commit(3, 0), 0).unwrap();
    fill(&mut leader, 6);
    leader.append(&txn(4, 0, 0, 1), 0).unwrap();
    leader.append(&abort(4, 0), 0).unwrap();
    let copy = |leader: &PartitionLog, follower: &mut PartitionLog| {
        while follower.log_end_offset() < leader.log_end_offset() {
            let data = leader
                .read(follower.log_end_offset(), 500, i64::MAX, true)
                .unwrap();
            follower.append_replicated(&data, 0).unwrap();
        }
    };
    copy(&leader, &mut follower);
    let leo = leader.log_end_offset();
    let same = |leader: &PartitionLog, follower: &PartitionLog| {
        assert_eq!(
            follower.ongoing_transactions(),
            leader.ongoing_transactions()
        );
        for hw in [0, 5, leo / 2, leo] {
            assert_eq!(
                follower.last_stable_offset(hw),
                leader.last_stable_offset(hw)
            );
        }
        assert_eq!(index_entries(follower), index_entries(leader));
        assert_eq!(
            follower.aborted_transactions(0, leo),
            leader.aborted_transactions(0, leo)
        );
    };
    same(&leader, &follower);
    assert_eq!(leader.ongoing_transactions().len(), 1);
    assert_eq!(index_entries(&leader).len(), 2);
    // And after the follower restarts.
    drop(follower);
    let follower = PartitionLog::open(fdir.path(), cfg, 0).unwrap();
    same(&leader, &follower);
}

#[test]
fn deleting_segments_deletes_their_index_and_keeps_open_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_segments(), 0).unwrap();
    log.append(&txn(1, 0, 0, 1), 0).unwrap();
    log.append(&abort(1, 0), 0).unwrap();
    log.append(&txn(2, 0, 0, 1), 0).unwrap();
    fill(&mut log, 30);
    assert!(file_path(dir.path(), 0, "txnindex").exists());
    let second = log.segment_base_offsets()[1];
    log.delete_records_before(second).unwrap();
    assert!(!file_path(dir.path(), 0, "txnindex").exists());
    assert!(log
        .aborted_transactions(second, log.log_end_offset())
        .is_empty());
    // Producer 2's transaction started below the log start: the LSO is held at the start.
    assert_eq!(log.ongoing_transactions(), vec![(2, 2)]);
    assert_eq!(log.last_stable_offset(log.log_end_offset()), second);
}

#[test]
fn a_full_truncation_forgets_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
    log.append(&txn(1, 0, 0, 1), 0).unwrap();
    log.append(&abort(1, 0), 0).unwrap();
    log.append(&txn(1, 0, 1, 1), 0).unwrap();
    log.truncate_fully_and_start_at(100).unwrap();
    assert!(log.ongoing_transactions().is_empty());
    assert!(!file_path(dir.path(), 0, "txnindex").exists());
    assert_eq!(log.last_stable_offset(100), 100);
}

#[test]
fn active_producers_describe_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
    log.append(&txn(1, 2, 0, 3), 0).unwrap();
    log.append(&marker(1, 2, true, 7), 0).unwrap();
    log.append(&txn(1, 2, 3, 1), 0).unwrap();
    log.append(&idem(5, 0, 0, 1), 0).unwrap();
    let p = log.active_producers();
    assert_eq!(p.len(), 2);
    assert_eq!(
        (
            p[0].producer_id,
            p[0].producer_epoch,
            p[0].last_sequence,
            p[0].coordinator_epoch,
            p[0].current_txn_start_offset
        ),
        (1, 2, 3, 7, 4)
    );
    assert_eq!((p[1].producer_id, p[1].current_txn_start_offset), (5, -1));
}

/// Server-side partition verification: a batch that opens a transaction needs a guard the
/// coordinator's answer came back to; batches inside an open transaction do not; a marker
/// written while the coordinator is asked makes the guard stale, so a late retry of a batch
/// whose transaction has ended cannot open a new one.
#[test]
fn a_batch_that_opens_a_transaction_needs_a_guard_a_marker_has_not_made_stale() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
    let required = |g| TxnVerification::Required(g);
    // A new producer and a known one without an open transaction both need verification.
    for (pid, seq) in [(7, 0), (7, 0)] {
        let e = log
            .append_verified(&txn(pid, 0, seq, 1), 0, 0, required(None))
            .unwrap_err();
        assert!(
            matches!(e, StorageError::TxnVerificationNeeded { producer_id: 7 }),
            "{e:?}"
        );
    }
    assert!(log.ongoing_transactions().is_empty());
    let g = log.verification_guard(7, 0);
    assert_eq!(
        log.verification_guard(7, 0),
        g,
        "a second ask reuses the guard"
    );
    let out = log
        .append_verified(&txn(7, 0, 0, 1), 0, 0, required(Some(g)))
        .unwrap();
    assert_eq!(log.ongoing_transactions(), vec![(7, out.base_offset)]);
    // Inside the open transaction nothing more is asked.
    log.append_verified(&txn(7, 0, 1, 1), 0, 0, required(None))
        .unwrap();
    log.append(&commit(7, 0), 0).unwrap();
    // The next transaction needs verification again; the old guard is gone with the marker.
    let e = log
        .append_verified(&txn(7, 0, 2, 1), 0, 0, required(Some(g)))
        .unwrap_err();
    assert!(matches!(e, StorageError::InvalidTxnState(_)), "{e:?}");
    // A guard taken before a marker (the coordinator was asked, then the transaction ended).
    let g2 = log.verification_guard(7, 0);
    assert_ne!(g2, g);
    log.append(&abort(7, 0), 0).unwrap();
    let e = log
        .append_verified(&txn(7, 0, 2, 1), 0, 0, required(Some(g2)))
        .unwrap_err();
    assert!(matches!(e, StorageError::InvalidTxnState(_)), "{e:?}");
    assert!(log.ongoing_transactions().is_empty());
    // Off asks nothing; idempotent batches are never asked.
    log.append_verified(&txn(7, 0, 2, 1), 0, 0, TxnVerification::Off)
        .unwrap();
    log.append_verified(&simple(1, 0), 0, 0, required(None))
        .unwrap();
}

/// Guards of many producers are bounded: the oldest is dropped, and its append refused.
#[test]
fn verification_guards_are_bounded_per_partition() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
    let first = log.verification_guard(1_000, 0);
    for pid in 1_001..1_001 + 1_024 {
        log.verification_guard(pid, 1);
    }
    let e = log
        .append_verified(
            &txn(1_000, 0, 0, 1),
            0,
            0,
            TxnVerification::Required(Some(first)),
        )
        .unwrap_err();
    assert!(matches!(e, StorageError::InvalidTxnState(_)), "{e:?}");
    let last = log.verification_guard(2_024, 1);
    log.append_verified(
        &txn(2_024, 0, 0, 1),
        0,
        0,
        TxnVerification::Required(Some(last)),
    )
    .unwrap();
}
