//! The leader epoch cache of one partition (KIP-101, KIP-279): for every leader epoch that has
//! records in the log, the offset of its first record. Followers use it to find where their log
//! diverges from the leader's (OffsetForLeaderEpoch), and clients to validate their positions
//! after a leader change.
//!
//! Persisted as `leader-epoch-checkpoint` in Kafka's text format: a version line (`0`), an entry
//! count line, then one `<epoch> <start offset>` line per entry, ascending. Written with tmp file,
//! fsync, rename and directory fsync on every change.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use crate::StorageError;

pub(crate) const CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";
const CHECKPOINT_VERSION: u32 = 0;

/// `(epoch, start offset)` pairs, strictly ascending in both fields.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct EpochCache {
    entries: Vec<(i32, i64)>,
}

impl EpochCache {
    /// A cache built by assigning `entries` in order (so a malformed list is made monotonic).
    pub fn from_entries(entries: impl IntoIterator<Item = (i32, i64)>) -> EpochCache {
        let mut cache = EpochCache::default();
        for (epoch, start) in entries {
            cache.assign(epoch, start);
        }
        cache
    }

    pub fn entries(&self) -> &[(i32, i64)] {
        &self.entries
    }

    pub fn latest_epoch(&self) -> i32 {
        self.entries.last().map_or(-1, |e| e.0)
    }

    /// Records that `epoch` starts at `start`. Only an epoch above the latest is recorded; a
    /// stale or equal epoch, or a negative epoch or offset, is ignored. Entries starting at or
    /// above `start` are dropped first (they describe records that are no longer in the log), so
    /// start offsets stay ascending. Returns whether the cache changed.
    ///
    /// Kafka's `LeaderEpochFileCache.assign` also accepts a lower epoch (dropping every entry with
    /// an epoch at or above it); here the epochs of a log only grow, and the caller truncates the
    /// cache together with the log, so a lower epoch can only come from a misbehaving client and
    /// is ignored.
    pub fn assign(&mut self, epoch: i32, start: i64) -> bool {
        if epoch < 0 || start < 0 || epoch <= self.latest_epoch() {
            return false;
        }
        while self.entries.last().is_some_and(|e| e.1 >= start) {
            self.entries.pop();
        }
        self.entries.push((epoch, start));
        true
    }

    /// Kafka's `endOffsetFor`: `(epoch, end offset)` for the largest epoch `<= requested`, where
    /// an epoch ends where the next one starts and the latest one at `log_end`.
    pub fn end_offset_for(&self, requested: i32, log_end: i64) -> (i32, i64) {
        const UNDEFINED: (i32, i64) = (-1, -1);
        let Some(&(latest, _)) = self.entries.last() else {
            return UNDEFINED;
        };
        if requested == -1 {
            return UNDEFINED;
        }
        if requested == latest {
            return (latest, log_end);
        }
        // First entry with an epoch above `requested` (the ceiling).
        let i = self.entries.partition_point(|e| e.0 <= requested);
        let Some(&(_, ceiling_start)) = self.entries.get(i) else {
            return UNDEFINED;
        };
        match i.checked_sub(1).map(|f| self.entries[f]) {
            Some((floor_epoch, _)) => (floor_epoch, ceiling_start),
            // Below every known epoch: the data before the first entry is gone; the follower
            // may replicate from the first known start offset.
            None => (requested, ceiling_start),
        }
    }

    /// Kafka's `truncateFromEnd`: drops the entries starting at or above `end` (the new log end).
    pub fn truncate_from_end(&mut self, end: i64) -> bool {
        let before = self.entries.len();
        while self.entries.last().is_some_and(|e| e.1 >= end) {
            self.entries.pop();
        }
        self.entries.len() != before
    }

    /// Kafka's `truncateFromStart`: for a new log start offset `start`, drops the entries starting
    /// at or below it and keeps the latest of those as starting at `start` (its epoch still covers
    /// the records from `start` on).
    pub fn truncate_from_start(&mut self, start: i64) -> bool {
        let n = self.entries.partition_point(|e| e.1 <= start);
        if n == 0 {
            return false;
        }
        let epoch = self.entries[n - 1].0;
        let changed = n > 1 || self.entries[0].1 != start;
        self.entries.drain(..n - 1);
        self.entries[0] = (epoch, start);
        changed
    }

    pub fn clear(&mut self) -> bool {
        let changed = !self.entries.is_empty();
        self.entries.clear();
        changed
    }
}

/// What was found in a partition directory.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Checkpoint {
    Missing,
    /// The file exists but does not parse; the reason.
    Corrupt(String),
    Entries(Vec<(i32, i64)>),
}

pub(crate) fn read_checkpoint(dir: &Path) -> Result<Checkpoint, StorageError> {
    let text = match fs::read(dir.join(CHECKPOINT_FILE)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Checkpoint::Missing),
        Err(e) => return Err(e.into()),
    };
    let Ok(text) = String::from_utf8(text) else {
        return Ok(Checkpoint::Corrupt("not UTF-8".into()));
    };
    Ok(match parse_checkpoint(&text) {
        Ok(entries) => Checkpoint::Entries(entries),
        Err(why) => Checkpoint::Corrupt(why),
    })
}

fn parse_checkpoint(text: &str) -> Result<Vec<(i32, i64)>, String> {
    let mut lines = text.lines();
    let version = lines.next().ok_or("empty file")?.trim();
    if version != CHECKPOINT_VERSION.to_string() {
        return Err(format!("unsupported version {version:?}"));
    }
    let count: usize = lines
        .next()
        .ok_or("missing entry count")?
        .trim()
        .parse()
        .map_err(|e| format!("bad entry count: {e}"))?;
    let mut entries = Vec::new();
    for line in lines {
        if line.trim().is_empty() {
            continue;
        }
        let mut fields = line.split_whitespace();
        let (Some(epoch), Some(start), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(format!("bad entry line {line:?}"));
        };
        let epoch: i32 = epoch
            .parse()
            .map_err(|e| format!("bad epoch {epoch:?}: {e}"))?;
        let start: i64 = start
            .parse()
            .map_err(|e| format!("bad start offset {start:?}: {e}"))?;
        if epoch < 0 || start < 0 {
            return Err(format!("negative entry {line:?}"));
        }
        entries.push((epoch, start));
    }
    if entries.len() != count {
        return Err(format!("expected {count} entries, found {}", entries.len()));
    }
    Ok(entries)
}

/// Replaces the checkpoint atomically: tmp file, fsync, rename, directory fsync.
pub(crate) fn write_checkpoint(dir: &Path, entries: &[(i32, i64)]) -> Result<(), StorageError> {
    let mut text = format!("{CHECKPOINT_VERSION}\n{}\n", entries.len());
    for (epoch, start) in entries {
        text.push_str(&format!("{epoch} {start}\n"));
    }
    let path = dir.join(CHECKPOINT_FILE);
    let tmp = dir.join(format!("{CHECKPOINT_FILE}.tmp"));
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    fs::rename(&tmp, &path)?;
    fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> EpochCache {
        let c = EpochCache::from_entries(entries.iter().copied());
        assert_eq!(c.entries(), entries, "test entries must be monotonic");
        c
    }

    #[test]
    fn assign_rules() {
        let mut c = EpochCache::default();
        assert_eq!(c.latest_epoch(), -1);
        assert!(c.assign(0, 0));
        assert!(!c.assign(0, 5), "equal epoch is ignored");
        assert!(c.assign(2, 10));
        assert!(!c.assign(1, 20), "stale epoch is ignored");
        assert!(
            !c.assign(-1, 30) && !c.assign(7, -1),
            "negatives are ignored"
        );
        assert_eq!(c.entries(), &[(0, 0), (2, 10)]);
        // A new epoch starting at or below existing starts removes those entries
        // (KIP-279: entries for records no longer in the log).
        assert!(c.assign(3, 10));
        assert_eq!(c.entries(), &[(0, 0), (3, 10)]);
        assert!(c.assign(4, 5));
        assert_eq!(c.entries(), &[(0, 0), (4, 5)]);
        assert!(c.assign(5, 0));
        assert_eq!(c.entries(), &[(5, 0)]);
        assert_eq!(c.latest_epoch(), 5);
    }

    /// Kafka's `LeaderEpochFileCache.endOffsetFor` cases (KIP-101, KIP-279).
    #[test]
    fn end_offset_for_table() {
        let leo = 100;
        let empty = EpochCache::default();
        assert_eq!(empty.end_offset_for(0, leo), (-1, -1), "empty cache");
        assert_eq!(empty.end_offset_for(-1, leo), (-1, -1));
        let c = cache(&[(1, 0), (3, 20), (6, 50)]);
        let table = [
            (-1, (-1, -1)), // undefined epoch requested
            (6, (6, leo)),  // latest epoch ends at the log end
            (7, (-1, -1)),  // above the latest epoch
            (9, (-1, -1)),  // far above
            (3, (3, 50)),   // a known epoch ends where the next starts
            (1, (1, 20)),   // the first epoch
            (2, (1, 20)),   // unknown epoch between: floor epoch, ceiling start
            (4, (3, 50)),   // idem
            (5, (3, 50)),   // idem
            (0, (0, 0)),    // below the first epoch: requested, first start
            (-5, (-5, 0)),  // negative but not -1: treated as below the first
        ];
        for (requested, want) in table {
            assert_eq!(c.end_offset_for(requested, leo), want, "epoch {requested}");
        }
        let one = cache(&[(4, 10)]);
        assert_eq!(one.end_offset_for(4, 10), (4, 10));
        assert_eq!(one.end_offset_for(2, 10), (2, 10));
        assert_eq!(one.end_offset_for(5, 10), (-1, -1));
    }

    #[test]
    fn truncate_from_end_and_start() {
        let mut c = cache(&[(1, 0), (3, 20), (6, 50)]);
        assert!(!c.truncate_from_end(51));
        assert!(c.truncate_from_end(50), "an entry starting at the end goes");
        assert_eq!(c.entries(), &[(1, 0), (3, 20)]);
        assert!(c.truncate_from_end(5));
        assert_eq!(c.entries(), &[(1, 0)]);
        assert!(c.truncate_from_end(0));
        assert!(c.entries().is_empty());
        assert!(!c.truncate_from_end(0));

        let mut c = cache(&[(1, 0), (3, 20), (6, 50)]);
        assert!(!c.truncate_from_start(0), "nothing below the start");
        assert!(c.truncate_from_start(25), "the last epoch below moves up");
        assert_eq!(c.entries(), &[(3, 25), (6, 50)]);
        assert!(c.truncate_from_start(50));
        assert_eq!(c.entries(), &[(6, 50)]);
        assert!(!c.truncate_from_start(50), "unchanged: not rewritten");
        assert!(c.truncate_from_start(70));
        assert_eq!(c.entries(), &[(6, 70)]);
        let mut c = cache(&[(3, 20)]);
        assert!(
            !c.truncate_from_start(10),
            "exclusive of entries above the start"
        );
        assert_eq!(c.entries(), &[(3, 20)]);
        assert!(c.clear());
        assert!(!c.clear());
    }

    #[test]
    fn checkpoint_round_trip_and_format() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_checkpoint(dir.path()).unwrap(), Checkpoint::Missing);
        write_checkpoint(dir.path(), &[(0, 0), (4, 123)]).unwrap();
        let text = fs::read_to_string(dir.path().join(CHECKPOINT_FILE)).unwrap();
        assert_eq!(text, "0\n2\n0 0\n4 123\n");
        assert_eq!(
            read_checkpoint(dir.path()).unwrap(),
            Checkpoint::Entries(vec![(0, 0), (4, 123)])
        );
        assert!(!dir.path().join(format!("{CHECKPOINT_FILE}.tmp")).exists());
        write_checkpoint(dir.path(), &[]).unwrap();
        assert_eq!(
            read_checkpoint(dir.path()).unwrap(),
            Checkpoint::Entries(vec![])
        );
    }

    #[test]
    fn corrupt_checkpoints_are_reported_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [
            "",
            "1\n0\n",
            "0\n",
            "0\nx\n",
            "0\n2\n0 0\n",
            "0\n1\n0\n",
            "0\n1\n0 0 0\n",
            "0\n1\n-1 0\n",
            "0\n1\n0 -4\n",
            "0\n1\n99999999999 0\n",
        ] {
            fs::write(dir.path().join(CHECKPOINT_FILE), bad).unwrap();
            assert!(
                matches!(read_checkpoint(dir.path()).unwrap(), Checkpoint::Corrupt(_)),
                "{bad:?}"
            );
        }
        fs::write(dir.path().join(CHECKPOINT_FILE), [0xff, 0xfe]).unwrap();
        assert!(matches!(
            read_checkpoint(dir.path()).unwrap(),
            Checkpoint::Corrupt(_)
        ));
    }
}
