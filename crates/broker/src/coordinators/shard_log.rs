//! [`ShardLog`] over one of this node's partitions: how the coordinator runtime reaches the log
//! of an internal topic's partition it leads.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use runnel_coordinator::log::{Appended, BoxFuture, ShardLog, WriteError};
use runnel_storage::StorageError;

use crate::replica::{AppendError, Partition};

/// A partition led here, as a coordinator's log.
pub struct BrokerShardLog(pub Arc<Partition>);

/// The class of a storage failure, for the coordinator protocols to pick their codes from.
pub fn storage_write_error(e: &StorageError) -> WriteError {
    match e {
        StorageError::RecordTooLarge { .. } => WriteError::RecordTooLarge,
        StorageError::InvalidProducerEpoch(_) => WriteError::InvalidProducerEpoch,
        other => WriteError::Storage(other.to_string()),
    }
}

/// The class of a replication answer ([`crate::replicate::ack_check`]'s errors).
pub fn replication_write_error(e: &ResponseError) -> WriteError {
    match e {
        ResponseError::NotLeaderOrFollower => WriteError::NotLeader,
        ResponseError::NotEnoughReplicas => WriteError::NotEnoughReplicas,
        ResponseError::NotEnoughReplicasAfterAppend => WriteError::NotEnoughReplicasAfterAppend,
        ResponseError::RequestTimedOut => WriteError::TimedOut,
        other => WriteError::Storage(format!("{other:?}")),
    }
}

impl ShardLog for BrokerShardLog {
    fn leader_epoch(&self) -> i32 {
        self.0.leadership().leader_epoch
    }

    fn log_start_offset(&self) -> i64 {
        self.0.log_start_offset()
    }

    fn log_end_offset(&self) -> i64 {
        self.0.log_end_offset()
    }

    fn high_watermark(&self) -> i64 {
        self.0.high_watermark()
    }

    fn read(&self, offset: i64, max_bytes: usize) -> Result<Bytes, String> {
        self.0
            .read_local(offset, max_bytes, true)
            .map_err(|e| e.to_string())
    }

    fn check_writable(&self) -> Result<(), WriteError> {
        crate::replicate::check_acks_all(&self.0).map_err(|e| {
            tracing::warn!(
                topic = %self.0.tp.topic,
                partition = self.0.tp.partition,
                reason = %e.message,
                "coordinator not writing"
            );
            replication_write_error(&e.error)
        })
    }

    fn next_sequence(&self, producer_id: i64, producer_epoch: i16) -> i32 {
        self.0.with_log(|l| {
            l.active_producers()
                .into_iter()
                .find(|a| a.producer_id == producer_id && a.producer_epoch == producer_epoch)
                .map_or(0, |a| a.last_sequence.wrapping_add(1).max(0))
        })
    }

    fn append(&self, batch: Bytes, now_ms: i64) -> Result<Appended, WriteError> {
        match self.0.append(&batch, now_ms) {
            Ok((outcome, leader_epoch)) => Ok(Appended {
                last_offset: outcome.last_offset,
                leader_epoch,
            }),
            Err(AppendError::NotLeader) => Err(WriteError::NotLeader),
            Err(AppendError::Storage(e)) => Err(storage_write_error(&e)),
        }
    }

    fn ack_status(&self, a: Appended) -> Option<Result<(), WriteError>> {
        crate::replicate::ack_check(&self.0, a.last_offset, a.leader_epoch)
            .map(|r| r.map_err(|e| replication_write_error(&e)))
    }

    fn wait_replicated(
        self: Arc<Self>,
        a: Appended,
        timeout_ms: u64,
    ) -> BoxFuture<Result<(), WriteError>> {
        let part = self.0.clone();
        Box::pin(async move {
            let deadline =
                tokio::time::Instant::now() + std::time::Duration::from_millis(timeout_ms);
            crate::replicate::wait_for_ack(part, a.last_offset, a.leader_epoch, deadline)
                .await
                .map_err(|e| replication_write_error(&e))
        })
    }
}
