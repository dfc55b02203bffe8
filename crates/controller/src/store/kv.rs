//! The key-value boundary of the metadata store: the only module that knows about sled.
//!
//! Everything above it speaks in log indexes, named metadata keys and bytes. Swapping sled for
//! another embedded store (redb is the closest fit) means rewriting this file only, keeping its
//! contract: writes are visible immediately, durable only after [`Kv::flush`] returns, and a crash
//! loses at most a suffix of the writes made since the last flush.

use std::io;
use std::ops::Bound;
use std::path::Path;

/// Named single-value slots.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Slot {
    /// The last saved vote.
    Vote,
    /// The last committed log id openraft told us about.
    Committed,
    /// The id of the last purged log entry.
    LastPurged,
    /// The state machine: last applied id, last membership and the image, in one value.
    Applied,
    /// The latest snapshot (metadata and data).
    Snapshot,
}

impl Slot {
    fn key(self) -> &'static [u8] {
        match self {
            Slot::Vote => b"vote",
            Slot::Committed => b"committed",
            Slot::LastPurged => b"last_purged",
            Slot::Applied => b"applied",
            Slot::Snapshot => b"snapshot",
        }
    }

    fn in_state_machine(self) -> bool {
        matches!(self, Slot::Applied | Slot::Snapshot)
    }
}

/// A handle on one store directory. Clones share the same database.
#[derive(Clone)]
pub(crate) struct Kv {
    db: sled::Db,
    /// Log entries keyed by big-endian index, so key order is index order.
    log: sled::Tree,
    /// Vote, committed, last purged.
    meta: sled::Tree,
    /// State machine and snapshot.
    sm: sled::Tree,
    /// Writes not yet covered by a finished flush; lets unit tests check the flush-before-ack
    /// rule without a power-loss simulator.
    #[cfg(test)]
    unflushed: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

fn to_io(e: sled::Error) -> io::Error {
    match e {
        sled::Error::Io(e) => e,
        other => io::Error::other(other),
    }
}

fn index_of(key: &[u8]) -> io::Result<u64> {
    let bytes: [u8; 8] = key
        .try_into()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "log key is not 8 bytes"))?;
    Ok(u64::from_be_bytes(bytes))
}

/// How long [`Kv::open`] waits for the directory's file lock. sled finishes queued log writes on
/// its own background threads, which keep the database (and its lock) alive for a moment after
/// the last handle is dropped; reopening a directory in the same process right after closing it
/// (a restart in tests, a node restarted in-process) must wait for them rather than fail.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

fn open_db(dir: &Path) -> io::Result<sled::Db> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match sled::Config::new().path(dir).open() {
            Ok(db) => return Ok(db),
            // sled reports a held lock as an I/O error whose text names it.
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                tracing::debug!(dir = %dir.display(), "metadata store locked; waiting");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(to_io(e)),
        }
    }
}

impl Kv {
    pub(crate) fn open(dir: &Path) -> io::Result<Kv> {
        let db = open_db(dir)?;
        let log = db.open_tree("log").map_err(to_io)?;
        let meta = db.open_tree("meta").map_err(to_io)?;
        let sm = db.open_tree("state_machine").map_err(to_io)?;
        Ok(Kv {
            db,
            log,
            meta,
            sm,
            #[cfg(test)]
            unflushed: Default::default(),
        })
    }

    /// Makes every earlier write durable (fsync).
    pub(crate) async fn flush(&self) -> io::Result<()> {
        #[cfg(test)]
        let pending = self.unflushed.load(std::sync::atomic::Ordering::SeqCst);
        self.db.flush_async().await.map_err(to_io)?;
        #[cfg(test)]
        self.unflushed
            .fetch_sub(pending, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    fn wrote(&self) {
        #[cfg(test)]
        self.unflushed
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Number of writes made since the last finished flush began.
    #[cfg(test)]
    pub(crate) fn unflushed_writes(&self) -> u64 {
        self.unflushed.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn tree(&self, slot: Slot) -> &sled::Tree {
        if slot.in_state_machine() {
            &self.sm
        } else {
            &self.meta
        }
    }

    pub(crate) fn get(&self, slot: Slot) -> io::Result<Option<Vec<u8>>> {
        Ok(self
            .tree(slot)
            .get(slot.key())
            .map_err(to_io)?
            .map(|v| v.to_vec()))
    }

    pub(crate) fn put(&self, slot: Slot, value: Vec<u8>) -> io::Result<()> {
        self.wrote();
        self.tree(slot).insert(slot.key(), value).map_err(to_io)?;
        Ok(())
    }

    /// Writes all entries in one atomic batch.
    pub(crate) fn append(&self, entries: Vec<(u64, Vec<u8>)>) -> io::Result<()> {
        let mut batch = sled::Batch::default();
        for (index, bytes) in entries {
            batch.insert(&index.to_be_bytes(), bytes);
        }
        self.wrote();
        self.log.apply_batch(batch).map_err(to_io)
    }

    /// Entries with index in `(start, end)`, in index order.
    pub(crate) fn range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> io::Result<Vec<(u64, Vec<u8>)>> {
        let range = (start.map(u64::to_be_bytes), end.map(u64::to_be_bytes));
        self.log
            .range(range)
            .map(|kv| {
                let (k, v) = kv.map_err(to_io)?;
                Ok((index_of(&k)?, v.to_vec()))
            })
            .collect()
    }

    pub(crate) fn last_entry(&self) -> io::Result<Option<(u64, Vec<u8>)>> {
        match self.log.last().map_err(to_io)? {
            Some((k, v)) => Ok(Some((index_of(&k)?, v.to_vec()))),
            None => Ok(None),
        }
    }

    /// Removes the entries with index in `(start, end)` in one atomic batch.
    pub(crate) fn remove_range(&self, start: Bound<u64>, end: Bound<u64>) -> io::Result<()> {
        let range = (start.map(u64::to_be_bytes), end.map(u64::to_be_bytes));
        let mut batch = sled::Batch::default();
        for key in self.log.range(range).keys() {
            batch.remove(key.map_err(to_io)?);
        }
        self.wrote();
        self.log.apply_batch(batch).map_err(to_io)
    }
}
