//! The metadata log's openraft 0.9 storage (the v2 API: [`LogStore`] implements
//! `RaftLogStorage`, [`StateMachine`] implements `RaftStateMachine`) on one sled database.
//!
//! Durability: a vote save, a log append, a truncation and a purge return (and an append calls
//! openraft's flush callback) only after the database is flushed to disk. State-machine writes
//! are not flushed on apply: after a crash the state machine may be behind the log, and openraft
//! re-applies the committed entries on start-up. Installed and built snapshots are flushed
//! before they are reported, so a purge never outruns the state it relies on.
//!
//! Layout: one sled database per directory with three trees, `log` (entries as JSON keyed by
//! big-endian index), `meta` (vote, committed, last purged) and `state_machine` (last applied,
//! last membership and the image as one JSON value; the latest snapshot). Each `apply` call
//! rewrites the whole image value, which is fine for metadata of thousands of partitions and is
//! the first thing to change (one key per broker/topic) if it shows up in profiles. All sled
//! access goes through `kv`, so another embedded store can replace sled there alone.
//!
//! The state machine publishes its image ([`AppliedImage`]) on a watch channel after every apply
//! batch and snapshot install, and as loaded: [`StateMachine::subscribe`].
//!
//! A directory can be open once at a time (sled holds a file lock); it is released when both
//! halves returned by [`open`] and every clone of [`LogStore`] are dropped.

mod kv;
// openraft's `StorageError` (over 200 bytes) is the error type of every storage trait method;
// the helpers return it too rather than boxing and unboxing on the way out.
#[allow(clippy::result_large_err)]
mod log_store;
#[allow(clippy::result_large_err)]
mod state_machine;

use std::io;
use std::io::Cursor;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use log_store::LogStore;
pub use state_machine::{SnapshotBuilder, StateMachine};

use crate::image::{ApplyError, MetadataImage};
use crate::records::Record;
use kv::Kv;

/// The image as of a metadata log index, as the state machine publishes it.
#[derive(Debug, Clone, Default)]
pub struct AppliedImage {
    /// Raft log index of the last applied entry (0 before any).
    pub index: u64,
    pub image: MetadataImage,
}

/// The payload of one metadata log entry: records that are replayed in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataRequest {
    pub records: Vec<Record>,
}

/// What applying one entry did. `rejected` lists the records the image refused (by position in
/// the entry); the others were applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataResponse {
    pub rejected: Vec<RejectedRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedRecord {
    pub index: usize,
    pub error: ApplyError,
}

openraft::declare_raft_types!(
    /// The controller quorum's openraft type configuration.
    pub TypeConfig:
        D = MetadataRequest,
        R = MetadataResponse,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("metadata store I/O: {0}")]
    Io(#[from] io::Error),
    /// Boxed: openraft's error is over 200 bytes and would bloat every `Result` of `open`.
    #[error("metadata store: {0}")]
    Storage(Box<openraft::StorageError<u64>>),
}

impl From<openraft::StorageError<u64>> for StoreError {
    fn from(e: openraft::StorageError<u64>) -> Self {
        StoreError::Storage(Box::new(e))
    }
}

/// Opens (or creates) the store in `dir` and returns its two halves, which share the database.
/// Only one process (and one pair of halves) may have a directory open at a time.
pub fn open(dir: &Path) -> Result<(LogStore, StateMachine), StoreError> {
    let kv = Kv::open(dir)?;
    let log = LogStore::open(kv.clone())?;
    let sm = StateMachine::load(kv)?;
    Ok((log, sm))
}
