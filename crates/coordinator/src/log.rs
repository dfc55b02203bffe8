//! The seam between a coordinator and the partition log it keeps its state in.
//!
//! The broker implements [`ShardLog`] over one of its partitions (an internal topic's partition
//! this node leads); tests implement it in memory. A coordinator only ever appends with acks=all
//! semantics, so the trait speaks of the high watermark, never of followers.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

/// Where an appended batch landed: replicated once the high watermark passes `last_offset`
/// while the partition is still led in `leader_epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub last_offset: i64,
    pub leader_epoch: i32,
}

/// Why a coordinator write did not (or not yet) reach every in-sync replica. The broker
/// classifies its storage and replication failures into these; each coordinator protocol then
/// picks its own wire code (a consumer group answers NOT_COORDINATOR or
/// COORDINATOR_NOT_AVAILABLE, a transaction coordinator the same or its own codes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// This node no longer leads the partition (or leads it in a newer epoch).
    #[error("not the leader of the partition")]
    NotLeader,
    /// The in-sync replica set is below `min.insync.replicas`; nothing was appended.
    #[error("not enough in-sync replicas")]
    NotEnoughReplicas,
    /// Appended here, but the in-sync replica set shrank below `min.insync.replicas` before
    /// the write was replicated; it may still commit.
    #[error("not enough in-sync replicas after the append")]
    NotEnoughReplicasAfterAppend,
    /// Appended here, not replicated within the write timeout; it may still commit.
    #[error("timed out waiting for the in-sync replicas")]
    TimedOut,
    /// The partition refused a transactional batch: its producer epoch is stale.
    #[error("invalid producer epoch")]
    InvalidProducerEpoch,
    /// The batch is larger than the partition accepts.
    #[error("the batch is too large")]
    RecordTooLarge,
    /// Any other failure of the local log.
    #[error("storage error: {0}")]
    Storage(String),
}

impl WriteError {
    /// Whether the records may have been appended and may still be replicated later (the
    /// caller must not assume they are lost).
    pub fn is_indeterminate(&self) -> bool {
        matches!(
            self,
            WriteError::TimedOut | WriteError::NotEnoughReplicasAfterAppend
        )
    }
}

/// A boxed, sendable future (the runtime needs no other async machinery).
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// One partition of an internal topic, led by this node.
pub trait ShardLog: Send + Sync + 'static {
    /// The partition's current leader epoch; a coordinator's epoch is this value at load.
    fn leader_epoch(&self) -> i32;
    fn log_start_offset(&self) -> i64;
    fn log_end_offset(&self) -> i64;
    fn high_watermark(&self) -> i64;
    /// Record batches from `offset` on, up to about `max_bytes` (at least one whole batch),
    /// bounded by the log end (not the high watermark: a new leader replays everything it has).
    fn read(&self, offset: i64, max_bytes: usize) -> Result<Bytes, String>;
    /// Whether an acks=all write may start now (enough in-sync replicas, still the leader).
    fn check_writable(&self) -> Result<(), WriteError>;
    /// The sequence number a transactional batch of this producer (id and epoch) continues
    /// with: the one after the last the partition has from it, 0 if none.
    fn next_sequence(&self, _producer_id: i64, _producer_epoch: i16) -> i32 {
        0
    }
    /// Appends one record batch as the leader.
    fn append(&self, batch: Bytes, now_ms: i64) -> Result<Appended, WriteError>;
    /// `None` while `a` waits for the in-sync replicas; else whether it is replicated.
    fn ack_status(&self, a: Appended) -> Option<Result<(), WriteError>>;
    /// Resolves once `a` is replicated, fails, or `timeout_ms` passes
    /// ([`WriteError::TimedOut`]).
    fn wait_replicated(
        self: Arc<Self>,
        a: Appended,
        timeout_ms: u64,
    ) -> BoxFuture<Result<(), WriteError>>;
}
