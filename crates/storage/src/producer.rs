//! Idempotent producer state of one partition: per producer id, its epoch and the metadata of
//! its last few batches, used to reject out-of-order or fenced appends and to answer retries
//! with the original offsets.

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::io::Write;
use std::path::Path;

use runnel_protocol::batch::BatchHeader;
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
}

impl ProducerEntry {
    fn last_active(&self) -> i64 {
        if self.last_active_ms > 0 {
            return self.last_active_ms;
        }
        self.batches.back().map_or(i64::MIN, |b| b.timestamp)
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ProducerState {
    producers: HashMap<i64, ProducerEntry>,
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    offset: i64,
    producers: Vec<(i64, ProducerEntry)>,
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
    /// Kafka's idempotence rules for a batch about to be appended.
    pub fn check(&self, h: &BatchHeader) -> Result<Check, StorageError> {
        if h.producer_id < 0 {
            return Ok(Check::Append);
        }
        let Some(entry) = self.producers.get(&h.producer_id) else {
            return Ok(Check::Append);
        };
        if h.producer_epoch < entry.epoch {
            return Err(StorageError::InvalidProducerEpoch(format!(
                "producer {} epoch {} is older than current epoch {}",
                h.producer_id, h.producer_epoch, entry.epoch
            )));
        }
        if h.is_control() {
            return Ok(Check::Append);
        }
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

    /// Records an appended batch (also used when replaying the log, without checks), written at
    /// `active_ms`.
    pub fn update(&mut self, h: &BatchHeader, active_ms: i64) {
        if h.producer_id < 0 {
            return;
        }
        let entry = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: h.producer_epoch,
                batches: VecDeque::new(),
                last_active_ms: 0,
            });
        entry.last_active_ms = entry.last_active_ms.max(active_ms);
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        if h.is_control() || h.base_sequence < 0 {
            return;
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
    }

    /// Base offsets of the latest batch of every producer (the cleaner keeps those batches).
    pub fn last_batch_offsets(&self) -> std::collections::HashSet<i64> {
        self.producers
            .values()
            .filter_map(|e| e.batches.back().map(|b| b.first_offset))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// Forgets producers that have not written for `expiration_ms` (Kafka's
    /// `producer.id.expiration.ms`); returns how many. A forgotten producer's next batch is
    /// accepted as a new producer's.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers
            .retain(|_, e| now_ms.saturating_sub(e.last_active()) < expiration_ms);
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
        let json = serde_json::to_vec(&Snapshot { offset, producers })
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
            state.producers.insert(pid, entry);
        }
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
