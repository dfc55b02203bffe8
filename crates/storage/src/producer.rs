//! Idempotent and transactional producer state of one partition: per producer id, its epoch
//! and the metadata of its last few batches, used to reject out-of-order or fenced appends and
//! to answer retries with the original offsets; the epoch of the transaction coordinator that
//! last wrote a marker for it and the first offset of its open transaction. Per partition, the
//! open transactions ordered by first offset and the completed ones whose marker may not be
//! replicated yet, which together give the first unstable offset (the last stable offset is
//! the smaller of it and the high watermark).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs;
use std::io::Write;
use std::path::Path;

use runnel_protocol::batch::{BatchHeader, EndTxnMarker};
use serde::{Deserialize, Serialize};

use crate::{file_path, parse_file_name, StorageError};

/// Kafka keeps the last 5 batches per producer (max.in.flight.requests.per.connection <= 5).
pub(crate) const BATCHES_PER_PRODUCER: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BatchMetadata {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub timestamp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<BatchMetadata>,
    /// When this producer last wrote (the broker's clock at the append; a batch's max timestamp
    /// when the log is replayed). 0 in snapshots written before it was kept.
    #[serde(default)]
    pub last_active_ms: i64,
    /// Epoch of the transaction coordinator that wrote this producer's last marker, -1 if none
    /// (and in snapshots written before it was kept).
    #[serde(default = "no_coordinator_epoch")]
    pub coordinator_epoch: i32,
    /// First offset of this producer's open transaction on this partition.
    #[serde(default)]
    pub current_txn_first_offset: Option<i64>,
}

fn no_coordinator_epoch() -> i32 {
    -1
}

impl ProducerEntry {
    fn last_active(&self) -> i64 {
        if self.last_active_ms > 0 {
            return self.last_active_ms;
        }
        self.batches.back().map_or(i64::MIN, |b| b.timestamp)
    }
}

/// A transaction that a marker closed on this partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CompletedTxn {
    pub producer_id: i64,
    /// Offset of the transaction's first batch on this partition.
    pub first_offset: i64,
    /// Offset of the marker.
    pub last_offset: i64,
    pub aborted: bool,
    /// The last stable offset right after the transaction completed, not counting the high
    /// watermark: the first offset of the oldest transaction still open, else the offset after
    /// the marker (what the aborted-transaction index stores).
    pub last_stable_offset: i64,
}

/// What a leader asks of a client's transactional batch that would open a transaction on the
/// partition (server-side partition verification, as Kafka's
/// `transaction.partition.verification.enable`): the producer's transaction coordinator must
/// have confirmed that the partition is in the transaction, so that a late retry of a batch
/// whose transaction has ended cannot open a transaction that nothing will ever close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnVerification {
    /// Nothing is asked (verification is off).
    Off,
    /// A batch that opens a transaction is refused with
    /// [`StorageError::TxnVerificationNeeded`] without a guard, and with
    /// [`StorageError::InvalidTxnState`] when the guard is no longer the producer's (a marker
    /// was written since it was taken, see [`crate::PartitionLog::verification_guard`]).
    Required(Option<u64>),
}

/// Producers being verified on one partition at most: a client that opens transactions under
/// many producer ids cannot grow the map without bound (the oldest guard is dropped, and its
/// append is refused as if a marker had ended the transaction).
const MAX_VERIFYING: usize = 1024;

/// Source of verification guards: unique across every partition of the process.
static NEXT_GUARD: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ProducerState {
    producers: HashMap<i64, ProducerEntry>,
    /// Open transactions: first offset -> producer id. Derived from the entries'
    /// `current_txn_first_offset`.
    ongoing: BTreeMap<i64, i64>,
    /// Completed transactions whose marker may not be below the high watermark yet: first
    /// offset -> marker offset.
    unreplicated: BTreeMap<i64, i64>,
    /// Producers whose coordinator is being asked whether this partition is in their
    /// transaction: producer id -> (guard, when it was taken). Not persisted: a verification
    /// does not outlive the leadership it started under.
    verifying: HashMap<i64, (u64, i64)>,
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    offset: i64,
    producers: Vec<(i64, ProducerEntry)>,
    /// Completed transactions whose marker may not be below the high watermark yet, as (first
    /// offset, marker offset). Empty in snapshots written before they were kept.
    #[serde(default)]
    unreplicated: Vec<(i64, i64)>,
}

pub(crate) enum Check {
    Append,
    Duplicate(BatchMetadata),
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

impl ProducerState {
    /// Kafka's idempotence and transaction rules for a batch about to be appended by a leader;
    /// `marker` is the end-transaction marker of a control batch. Markers carry no sequence
    /// numbers: only their producer epoch and coordinator epoch are checked.
    pub fn check(
        &self,
        h: &BatchHeader,
        marker: Option<&EndTxnMarker>,
        verification: TxnVerification,
    ) -> Result<Check, StorageError> {
        if h.producer_id < 0 {
            return Ok(Check::Append);
        }
        let Some(entry) = self.producers.get(&h.producer_id) else {
            if h.is_transactional() && !h.is_control() {
                self.check_verified(h.producer_id, verification)?;
            }
            return Ok(Check::Append);
        };
        if h.producer_epoch < entry.epoch {
            return Err(StorageError::InvalidProducerEpoch(format!(
                "producer {} epoch {} is older than current epoch {}",
                h.producer_id, h.producer_epoch, entry.epoch
            )));
        }
        if h.is_control() {
            if let Some(m) = marker {
                if m.coordinator_epoch < entry.coordinator_epoch {
                    return Err(StorageError::TransactionCoordinatorFenced(format!(
                        "marker for producer {} from coordinator epoch {}, older than {}",
                        h.producer_id, m.coordinator_epoch, entry.coordinator_epoch
                    )));
                }
            }
            return Ok(Check::Append);
        }
        let check = self.check_sequence(h, entry)?;
        if let Check::Append = check {
            match entry.current_txn_first_offset {
                Some(first) if !h.is_transactional() => {
                    return Err(StorageError::InvalidTxnState(format!(
                        "non-transactional batch from producer {} whose transaction from offset \
                         {first} is open",
                        h.producer_id
                    )));
                }
                None if h.is_transactional() => self.check_verified(h.producer_id, verification)?,
                _ => {}
            }
        }
        Ok(check)
    }

    /// A transactional batch that opens a transaction: is it verified as `verification` asks?
    fn check_verified(
        &self,
        producer_id: i64,
        verification: TxnVerification,
    ) -> Result<(), StorageError> {
        let TxnVerification::Required(guard) = verification else {
            return Ok(());
        };
        match (guard, self.verifying.get(&producer_id)) {
            (None, _) => Err(StorageError::TxnVerificationNeeded { producer_id }),
            (Some(g), Some(&(held, _))) if g == held => Ok(()),
            (Some(_), _) => Err(StorageError::InvalidTxnState(format!(
                "the transaction of producer {producer_id} ended while this partition was being \
                 verified"
            ))),
        }
    }

    /// The guard of a verification of `producer_id`'s transaction on this partition: the one
    /// already held, or a new one. A marker for the producer, or its first transactional
    /// batch, drops it.
    pub fn verification_guard(&mut self, producer_id: i64, now_ms: i64) -> u64 {
        if let Some(&(g, _)) = self.verifying.get(&producer_id) {
            return g;
        }
        if self.verifying.len() >= MAX_VERIFYING {
            if let Some(oldest) = self
                .verifying
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(&pid, _)| pid)
            {
                self.verifying.remove(&oldest);
            }
        }
        let g = NEXT_GUARD.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.verifying.insert(producer_id, (g, now_ms));
        g
    }

    fn check_sequence(
        &self,
        h: &BatchHeader,
        entry: &ProducerEntry,
    ) -> Result<Check, StorageError> {
        if h.producer_epoch > entry.epoch {
            if h.base_sequence != 0 {
                return Err(StorageError::OutOfOrderSequence(format!(
                    "producer {} new epoch {} must start at sequence 0, got {}",
                    h.producer_id, h.producer_epoch, h.base_sequence
                )));
            }
            return Ok(Check::Append);
        }
        let last_seq = h.last_sequence();
        if let Some(b) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == h.base_sequence && b.last_seq == last_seq)
        {
            return Ok(Check::Duplicate(*b));
        }
        match entry.batches.back() {
            None => Ok(Check::Append),
            Some(last) if next_seq(last.last_seq) == h.base_sequence => Ok(Check::Append),
            Some(last) => Err(StorageError::OutOfOrderSequence(format!(
                "producer {} epoch {}: expected sequence {}, got {}",
                h.producer_id,
                h.producer_epoch,
                next_seq(last.last_seq),
                h.base_sequence
            ))),
        }
    }

    /// Records an appended batch (also used when replaying the log and for replicated batches,
    /// without checks), written at `active_ms`. `marker` is the end-transaction marker of a
    /// control batch (`None` for a control batch without one: emptied by the cleaner, or not
    /// readable). A transactional data batch opens a transaction unless its producer has one
    /// open; a marker closes the producer's open transaction and returns it.
    pub fn update(
        &mut self,
        h: &BatchHeader,
        marker: Option<&EndTxnMarker>,
        active_ms: i64,
    ) -> Option<CompletedTxn> {
        if h.producer_id < 0 {
            return None;
        }
        let entry = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: h.producer_epoch,
                batches: VecDeque::new(),
                last_active_ms: 0,
                coordinator_epoch: -1,
                current_txn_first_offset: None,
            });
        entry.last_active_ms = entry.last_active_ms.max(active_ms);
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        if h.is_transactional() {
            self.verifying.remove(&h.producer_id);
        }
        if h.is_control() {
            let m = marker?;
            entry.coordinator_epoch = m.coordinator_epoch;
            let first_offset = entry.current_txn_first_offset.take()?;
            self.ongoing.remove(&first_offset);
            let last_offset = h.base_offset;
            self.unreplicated.insert(first_offset, last_offset);
            let last_stable_offset = self
                .ongoing
                .keys()
                .next()
                .copied()
                .unwrap_or(last_offset + 1);
            return Some(CompletedTxn {
                producer_id: h.producer_id,
                first_offset,
                last_offset,
                aborted: !m.commit,
                last_stable_offset,
            });
        }
        if h.is_transactional() && entry.current_txn_first_offset.is_none() {
            entry.current_txn_first_offset = Some(h.base_offset);
            self.ongoing.insert(h.base_offset, h.producer_id);
        }
        if h.base_sequence < 0 {
            return None;
        }
        if entry.batches.len() == BATCHES_PER_PRODUCER {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchMetadata {
            first_seq: h.base_sequence,
            last_seq: h.last_sequence(),
            first_offset: h.base_offset,
            last_offset: h.last_offset(),
            timestamp: h.max_timestamp,
        });
        None
    }

    /// The first offset of the oldest transaction that is open, or completed with its marker
    /// at or above `high_watermark`; not clamped to the log start offset. With `i64::MIN` for
    /// the high watermark, every completed transaction not yet pruned by
    /// [`on_high_watermark`](Self::on_high_watermark) counts.
    pub fn first_unstable_offset(&self, high_watermark: i64) -> Option<i64> {
        let ongoing = self.ongoing.keys().next().copied();
        let unreplicated = self
            .unreplicated
            .iter()
            .find(|(_, &last)| last >= high_watermark)
            .map(|(&first, _)| first);
        match (ongoing, unreplicated) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Forgets completed transactions whose marker is below `offset` (the high watermark, or
    /// the log start offset): they no longer hold the last stable offset.
    pub fn on_high_watermark(&mut self, offset: i64) {
        self.unreplicated.retain(|_, last| *last >= offset);
    }

    /// The open transactions as (producer id, first offset), oldest first.
    pub fn ongoing_transactions(&self) -> Vec<(i64, i64)> {
        self.ongoing
            .iter()
            .map(|(&first, &pid)| (pid, first))
            .collect()
    }

    /// Every producer with state, by producer id.
    pub fn entries(&self) -> impl Iterator<Item = (i64, &ProducerEntry)> {
        self.producers.iter().map(|(&pid, e)| (pid, e))
    }

    /// Base offsets of the latest batch of every producer (the cleaner keeps those batches).
    pub fn last_batch_offsets(&self) -> std::collections::HashSet<i64> {
        self.producers
            .values()
            .filter_map(|e| e.batches.back().map(|b| b.first_offset))
            .collect()
    }

    /// Producer id -> epoch of every producer that has no data batch remembered in its
    /// current epoch: its last entry in the log may be a marker, which then carries the epoch
    /// that fences older producers, so the cleaner keeps that producer's markers of this epoch.
    pub fn marker_only_epochs(&self) -> HashMap<i64, i16> {
        self.producers
            .iter()
            .filter(|(_, e)| e.batches.is_empty())
            .map(|(&pid, e)| (pid, e.epoch))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// Forgets producers that have not written for `expiration_ms` (Kafka's
    /// `producer.id.expiration.ms`); returns how many. A forgotten producer's next batch is
    /// accepted as a new producer's. A producer with an open transaction is never forgotten:
    /// its transaction holds the last stable offset until a marker closes it.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        self.verifying
            .retain(|_, (_, at)| now_ms.saturating_sub(*at) < expiration_ms);
        let before = self.producers.len();
        self.producers.retain(|_, e| {
            e.current_txn_first_offset.is_some()
                || now_ms.saturating_sub(e.last_active()) < expiration_ms
        });
        before - self.producers.len()
    }

    /// Writes `<offset>.snapshot` (crc32c BE of the JSON, then the JSON) via tmp + rename.
    pub fn write_snapshot(&self, dir: &Path, offset: i64) -> Result<(), StorageError> {
        let mut producers: Vec<(i64, ProducerEntry)> = self
            .producers
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        producers.sort_by_key(|p| p.0);
        let unreplicated = self.unreplicated.iter().map(|(&f, &l)| (f, l)).collect();
        let json = serde_json::to_vec(&Snapshot {
            offset,
            producers,
            unreplicated,
        })
        .map_err(|e| StorageError::Io(std::io::Error::other(e)))?;
        let path = file_path(dir, offset, "snapshot");
        let tmp = path.with_extension("snapshot.tmp");
        {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&crc32c::crc32c(&json).to_be_bytes())?;
            f.write_all(&json)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
        Ok(())
    }

    /// Reads a snapshot file; `None` if it is unreadable, corrupt or for another offset.
    pub fn read_snapshot(dir: &Path, offset: i64) -> Option<ProducerState> {
        let data = fs::read(file_path(dir, offset, "snapshot")).ok()?;
        if data.len() < 4 {
            return None;
        }
        let crc = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
        if crc32c::crc32c(&data[4..]) != crc {
            return None;
        }
        let snap: Snapshot = serde_json::from_slice(&data[4..]).ok()?;
        if snap.offset != offset {
            return None;
        }
        let mut state = ProducerState::default();
        for (pid, mut entry) in snap.producers {
            while entry.batches.len() > BATCHES_PER_PRODUCER {
                entry.batches.pop_front();
            }
            if let Some(first) = entry.current_txn_first_offset {
                state.ongoing.insert(first, pid);
            }
            state.producers.insert(pid, entry);
        }
        state.unreplicated = snap
            .unreplicated
            .into_iter()
            .filter(|&(_, last)| last < offset)
            .collect();
        Some(state)
    }
}

/// Offsets of the `.snapshot` files in `dir`, ascending.
pub(crate) fn list_snapshots(dir: &Path) -> Result<Vec<i64>, StorageError> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir)? {
        let e = e?;
        if let Some(off) = e
            .file_name()
            .to_str()
            .and_then(|n| parse_file_name(n, "snapshot"))
        {
            out.push(off);
        }
    }
    out.sort_unstable();
    Ok(out)
}

pub(crate) fn delete_snapshot(dir: &Path, offset: i64) -> Result<(), StorageError> {
    match fs::remove_file(file_path(dir, offset, "snapshot")) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_written_before_transactions_were_kept_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let json = br#"{"offset":7,"producers":[[3,{"epoch":2,"batches":[{"first_seq":0,"last_seq":1,"first_offset":5,"last_offset":6,"timestamp":9}],"last_active_ms":11}]]}"#;
        let mut data = crc32c::crc32c(json).to_be_bytes().to_vec();
        data.extend_from_slice(json);
        fs::write(file_path(dir.path(), 7, "snapshot"), data).unwrap();
        let state = ProducerState::read_snapshot(dir.path(), 7).unwrap();
        let (pid, e) = state.entries().next().unwrap();
        assert_eq!((pid, e.epoch, e.coordinator_epoch), (3, 2, -1));
        assert_eq!(e.current_txn_first_offset, None);
        assert!(state.ongoing_transactions().is_empty());
    }

    #[test]
    fn a_snapshot_keeps_open_transactions_and_coordinator_epochs() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = ProducerState::default();
        state.producers.insert(
            4,
            ProducerEntry {
                epoch: 1,
                batches: VecDeque::new(),
                last_active_ms: 3,
                coordinator_epoch: 6,
                current_txn_first_offset: Some(40),
            },
        );
        state.ongoing.insert(40, 4);
        state.unreplicated.insert(20, 30);
        state.write_snapshot(dir.path(), 50).unwrap();
        let read = ProducerState::read_snapshot(dir.path(), 50).unwrap();
        assert_eq!(read.ongoing_transactions(), vec![(4, 40)]);
        assert_eq!(read.first_unstable_offset(i64::MIN), Some(20));
        assert_eq!(read.first_unstable_offset(31), Some(40));
        assert_eq!(read.entries().next().unwrap().1.coordinator_epoch, 6);
    }
}
