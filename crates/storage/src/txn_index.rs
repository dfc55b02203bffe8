//! The aborted-transaction index of one segment (`<base>.txnindex`, Kafka's format): one
//! 34-byte big-endian entry per transaction aborted by a marker in that segment, in marker
//! order: `int16 version = 0`, `int64 producer id`, `int64 first offset`, `int64 last offset`
//! (the abort marker's), `int64 last stable offset` (right after the abort).
//!
//! The entries also live in memory. The file is created with the first entry (most segments
//! never have one), written with `pwrite` as entries are added and fsynced with its segment.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::segment::{remove_if_exists, suffixed_path};
use crate::StorageError;

pub(crate) const EXT: &str = "txnindex";
const ENTRY_LEN: usize = 34;
const VERSION: i16 = 0;

/// One aborted transaction, as stored in a `.txnindex` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    fn encode(&self) -> [u8; ENTRY_LEN] {
        let mut b = [0u8; ENTRY_LEN];
        b[..2].copy_from_slice(&VERSION.to_be_bytes());
        b[2..10].copy_from_slice(&self.producer_id.to_be_bytes());
        b[10..18].copy_from_slice(&self.first_offset.to_be_bytes());
        b[18..26].copy_from_slice(&self.last_offset.to_be_bytes());
        b[26..34].copy_from_slice(&self.last_stable_offset.to_be_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<AbortedTxn> {
        let i64_at = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[at..at + 8]);
            i64::from_be_bytes(a)
        };
        if b.len() != ENTRY_LEN || i16::from_be_bytes([b[0], b[1]]) != VERSION {
            return None;
        }
        Some(AbortedTxn {
            producer_id: i64_at(2),
            first_offset: i64_at(10),
            last_offset: i64_at(18),
            last_stable_offset: i64_at(26),
        })
    }
}

pub(crate) struct TxnIndex {
    /// Where the file is created when the first entry comes (`None` once it exists).
    create_at: Option<std::path::PathBuf>,
    file: Option<File>,
    entries: Vec<AbortedTxn>,
}

impl TxnIndex {
    /// An empty index of a new segment. With a `suffix` (a cleaned segment's temporary name)
    /// the file is created at once, so that renaming it along with the segment's other files
    /// always finds it; otherwise on the first entry. A stale file left at that name is removed.
    pub fn create(dir: &Path, base: i64, suffix: &str) -> Result<TxnIndex, StorageError> {
        let path = suffixed_path(dir, base, EXT, suffix);
        if suffix.is_empty() {
            remove_if_exists(&path)?;
            return Ok(TxnIndex {
                create_at: Some(path),
                file: None,
                entries: Vec::new(),
            });
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        Ok(TxnIndex {
            create_at: None,
            file: Some(file),
            entries: Vec::new(),
        })
    }

    /// An index with no file and no entries that never creates one (a placeholder).
    pub fn detached() -> TxnIndex {
        TxnIndex {
            create_at: None,
            file: None,
            entries: Vec::new(),
        }
    }

    /// Loads `<base>.txnindex` if it exists. The entries must be whole, of version 0, and
    /// ordered by strictly increasing last offset below `next_offset` (the segment's end); the
    /// file is cut at the first one that is not (a torn write, or markers lost with the log's
    /// tail).
    pub fn open(dir: &Path, base: i64, next_offset: i64) -> Result<TxnIndex, StorageError> {
        let path = suffixed_path(dir, base, EXT, "");
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(TxnIndex {
                    create_at: Some(path),
                    file: None,
                    entries: Vec::new(),
                })
            }
            Err(e) => return Err(e.into()),
        };
        let len = file.metadata()?.len();
        let mut buf = vec![0u8; len as usize];
        file.read_exact_at(&mut buf, 0)?;
        let mut entries: Vec<AbortedTxn> = Vec::with_capacity(buf.len() / ENTRY_LEN);
        for chunk in buf.chunks(ENTRY_LEN) {
            match AbortedTxn::decode(chunk) {
                Some(e)
                    if e.last_offset < next_offset
                        && e.last_offset >= base
                        && entries.last().is_none_or(|p| p.last_offset < e.last_offset) =>
                {
                    entries.push(e)
                }
                _ => break,
            }
        }
        let valid = (entries.len() * ENTRY_LEN) as u64;
        if valid < len {
            tracing::warn!(
                file = %path.display(),
                kept = entries.len(),
                "cutting an aborted-transaction index at its first invalid entry"
            );
            file.set_len(valid)?;
        }
        Ok(TxnIndex {
            create_at: None,
            file: Some(file),
            entries,
        })
    }

    pub fn entries(&self) -> &[AbortedTxn] {
        &self.entries
    }

    /// Adds an entry. Its last offset must be above every entry's (markers are appended in
    /// offset order); an entry that is not is left out and logged.
    pub fn append(&mut self, e: AbortedTxn) -> Result<(), StorageError> {
        if let Some(prev) = self.entries.last() {
            if prev.last_offset >= e.last_offset {
                tracing::warn!(
                    last = prev.last_offset,
                    new = e.last_offset,
                    "aborted-transaction index entry out of order; not added"
                );
                return Ok(());
            }
        }
        if self.file.is_none() {
            if let Some(path) = &self.create_at {
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(path)?;
                self.file = Some(f);
                self.create_at = None;
            }
        }
        let at = (self.entries.len() * ENTRY_LEN) as u64;
        if let Some(f) = &self.file {
            f.write_all_at(&e.encode(), at)?;
        }
        self.entries.push(e);
        Ok(())
    }

    /// Removes the entries whose marker is at or above `offset`.
    pub fn truncate_from(&mut self, offset: i64) -> Result<(), StorageError> {
        let keep = self.entries.partition_point(|e| e.last_offset < offset);
        if keep == self.entries.len() {
            return Ok(());
        }
        self.entries.truncate(keep);
        if let Some(f) = &self.file {
            f.set_len((keep * ENTRY_LEN) as u64)?;
        }
        Ok(())
    }

    pub fn sync(&self) -> io::Result<()> {
        match &self.file {
            Some(f) => f.sync_data(),
            None => Ok(()),
        }
    }

    /// A duplicate handle of the file, if it exists.
    pub fn handle(&self) -> io::Result<Option<File>> {
        self.file.as_ref().map(File::try_clone).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(last: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id: 7,
            first_offset: last - 3,
            last_offset: last,
            last_stable_offset: last + 1,
        }
    }

    #[test]
    fn entries_are_34_bytes_big_endian_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = TxnIndex::create(dir.path(), 100, "").unwrap();
        let path = crate::file_path(dir.path(), 100, EXT);
        assert!(!path.exists(), "created with the first entry");
        idx.append(txn(110)).unwrap();
        idx.append(txn(120)).unwrap();
        // Out of order: left out.
        idx.append(txn(115)).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 68);
        assert_eq!(&bytes[..2], &[0, 0]);
        assert_eq!(&bytes[2..10], &7i64.to_be_bytes());
        assert_eq!(&bytes[10..18], &107i64.to_be_bytes());
        assert_eq!(&bytes[18..26], &110i64.to_be_bytes());
        assert_eq!(&bytes[26..34], &111i64.to_be_bytes());
        let idx = TxnIndex::open(dir.path(), 100, 200).unwrap();
        assert_eq!(idx.entries(), &[txn(110), txn(120)]);
        // Markers beyond the segment's end (lost with its tail) are cut off.
        let mut idx = TxnIndex::open(dir.path(), 100, 120).unwrap();
        assert_eq!(idx.entries(), &[txn(110)]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 34);
        idx.truncate_from(110).unwrap();
        assert!(idx.entries().is_empty());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }

    #[test]
    fn torn_or_garbage_files_are_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = crate::file_path(dir.path(), 0, EXT);
        let mut bytes = txn(10).encode().to_vec();
        bytes.extend_from_slice(&txn(20).encode()[..30]);
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(
            TxnIndex::open(dir.path(), 0, 100).unwrap().entries(),
            &[txn(10)]
        );
        let mut bad = txn(10).encode();
        bad[1] = 1; // version 1
        std::fs::write(&path, bad).unwrap();
        assert!(TxnIndex::open(dir.path(), 0, 100)
            .unwrap()
            .entries()
            .is_empty());
    }
}
