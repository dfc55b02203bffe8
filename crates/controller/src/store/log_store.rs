//! The Raft log, vote and committed id.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, ErrorSubject, ErrorVerb, LogId, LogState, OptionalSend, RaftLogReader, StorageError,
    StorageIOError, Vote,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::kv::{Kv, Slot};
use super::TypeConfig;

type Entry = openraft::Entry<TypeConfig>;
type NodeId = u64;

pub(super) fn io_err(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    e: io::Error,
) -> StorageError<NodeId> {
    StorageError::from_io_error(subject, verb, e)
}

pub(super) fn json_err(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    e: serde_json::Error,
) -> StorageError<NodeId> {
    StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

pub(super) fn read_slot<T: DeserializeOwned>(
    kv: &Kv,
    slot: Slot,
    subject: ErrorSubject<NodeId>,
) -> Result<Option<T>, StorageError<NodeId>> {
    match kv
        .get(slot)
        .map_err(|e| io_err(subject.clone(), ErrorVerb::Read, e))?
    {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| json_err(subject, ErrorVerb::Read, e)),
        None => Ok(None),
    }
}

pub(super) fn write_slot<T: Serialize>(
    kv: &Kv,
    slot: Slot,
    value: &T,
    subject: ErrorSubject<NodeId>,
) -> Result<(), StorageError<NodeId>> {
    let bytes =
        serde_json::to_vec(value).map_err(|e| json_err(subject.clone(), ErrorVerb::Write, e))?;
    kv.put(slot, bytes)
        .map_err(|e| io_err(subject, ErrorVerb::Write, e))
}

/// The log half of the store. Clones share the database (openraft reads through a clone).
#[derive(Clone)]
pub struct LogStore {
    kv: Kv,
}

impl LogStore {
    /// Also finishes a purge that a crash interrupted (the purge point is written first).
    pub(crate) fn open(kv: Kv) -> Result<Self, StorageError<NodeId>> {
        let store = LogStore { kv };
        if let Some(purged) = store.last_purged()? {
            store
                .kv
                .remove_range(Bound::Unbounded, Bound::Included(purged.index))
                .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
        }
        Ok(store)
    }

    async fn flush(&self, subject: ErrorSubject<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.kv
            .flush()
            .await
            .map_err(|e| io_err(subject, ErrorVerb::Write, e))
    }

    fn last_purged(&self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        read_slot(&self.kv, Slot::LastPurged, ErrorSubject::Logs)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        let rows = self
            .kv
            .range(range.start_bound().cloned(), range.end_bound().cloned())
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
        rows.into_iter()
            .map(|(index, bytes)| {
                serde_json::from_slice(&bytes)
                    .map_err(|e| StorageIOError::read_log_at_index(index, AnyError::new(&e)).into())
            })
            .collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let last_purged_log_id = self.last_purged()?;
        let last = self
            .kv
            .last_entry()
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
        let last_log_id = match last {
            // An entry at or below the purge point is a leftover of an interrupted purge.
            Some((index, bytes)) if last_purged_log_id.is_none_or(|p| index > p.index) => {
                let entry: Entry = serde_json::from_slice(&bytes).map_err(|e| {
                    StorageError::from(StorageIOError::read_log_at_index(index, AnyError::new(&e)))
                })?;
                Some(entry.log_id)
            }
            _ => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        write_slot(&self.kv, Slot::Vote, vote, ErrorSubject::Vote)?;
        // A vote must never be forgotten: granting two votes in one term breaks election safety.
        self.flush(ErrorSubject::Vote).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        read_slot(&self.kv, Slot::Vote, ErrorSubject::Vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        // Not flushed: losing it only means re-applying fewer entries at start-up.
        write_slot(&self.kv, Slot::Committed, &committed, ErrorSubject::Store)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(
            read_slot::<Option<LogId<NodeId>>>(&self.kv, Slot::Committed, ErrorSubject::Store)?
                .flatten(),
        )
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut rows = Vec::new();
        for entry in entries {
            let bytes = serde_json::to_vec(&entry).map_err(|e| {
                StorageError::from(StorageIOError::write_log_entry(
                    entry.log_id,
                    AnyError::new(&e),
                ))
            })?;
            rows.push((entry.log_id.index, bytes));
        }
        let written = self.kv.append(rows);
        let result = match written {
            Ok(()) => self.kv.flush().await,
            Err(e) => Err(e),
        };
        // The callback tells openraft the entries are on disk; it is only ever called after
        // the flush, and with the error if anything failed.
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let err = io_err(
                    ErrorSubject::Logs,
                    ErrorVerb::Write,
                    io::Error::new(e.kind(), e.to_string()),
                );
                callback.log_io_completed(Err(e));
                Err(err)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.kv
            .remove_range(Bound::Included(log_id.index), Bound::Unbounded)
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
        self.flush(ErrorSubject::Logs).await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        // Record the purge point first: if we crash before the entries are gone, the log state
        // is still right and the leftover entries are simply never read.
        write_slot(&self.kv, Slot::LastPurged, &log_id, ErrorSubject::Logs)?;
        self.kv
            .remove_range(Bound::Unbounded, Bound::Included(log_id.index))
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
        self.flush(ErrorSubject::Logs).await
    }
}

#[cfg(test)]
mod tests {
    use openraft::storage::RaftLogStorageExt;
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;

    fn blank(index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    /// The rule the whole quorum's safety rests on: a vote save, an append (whose callback
    /// `blocking_append` waits for), a truncation and a purge all return with nothing unflushed.
    #[tokio::test]
    async fn every_log_mutation_is_flushed_before_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _sm) = crate::store::open(dir.path()).unwrap();
        let kv = log.kv.clone();

        log.save_committed(Some(blank(1).log_id)).await.unwrap();
        assert!(kv.unflushed_writes() > 0, "committed is written lazily");

        log.save_vote(&Vote::new(1, 1)).await.unwrap();
        assert_eq!(kv.unflushed_writes(), 0, "vote");
        log.blocking_append((1..=5).map(blank)).await.unwrap();
        assert_eq!(kv.unflushed_writes(), 0, "append");
        log.truncate(blank(4).log_id).await.unwrap();
        assert_eq!(kv.unflushed_writes(), 0, "truncate");
        log.purge(blank(2).log_id).await.unwrap();
        assert_eq!(kv.unflushed_writes(), 0, "purge");
    }
}
