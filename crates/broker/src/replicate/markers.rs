//! The leader's side of end-transaction markers: append a transaction coordinator's marker to
//! a partition led here as an acks=all write and answer once its ISR has it. Serves the
//! `Replication.WriteTxnMarkers` RPC and the coordinator's own local partitions.

use std::time::Duration;

use kafka_protocol::error::ResponseError;
use runnel_protocol::batch::{encode_end_txn_marker, EndTxnMarker};

use crate::clock::now_ms;
use crate::replica::{AppendError, ReplicaManager};

/// How long a leader waits for a marker's replication before answering its error.
pub const MARKER_TIMEOUT: Duration = Duration::from_secs(10);

/// A partition by topic name and index.
pub type TopicPartition = (String, i32);

/// Told of each marker once it is replicated (the group coordinator applies or drops the
/// transactional offset commits it ends).
pub type MarkerHook = std::sync::Arc<dyn Fn(&str, i32, &EndTxnMarker) + Send + Sync>;

/// Appends `marker` to `topic`-`partition` (led here) as an acks=all write and waits until
/// the ISR has it. The errors are the partition's: NOT_LEADER_OR_FOLLOWER,
/// NOT_ENOUGH_REPLICAS(_AFTER_APPEND), REQUEST_TIMED_OUT, or the producer state's refusal
/// (INVALID_PRODUCER_EPOCH, TRANSACTION_COORDINATOR_FENCED).
pub async fn write_marker(
    partitions: &ReplicaManager,
    topic: &str,
    partition: i32,
    marker: &EndTxnMarker,
    timeout: Duration,
) -> Result<(), ResponseError> {
    let Some(part) = partitions
        .get_by(topic, partition)
        .filter(|p| p.leadership().is_leader)
    else {
        return Err(ResponseError::NotLeaderOrFollower);
    };
    crate::replicate::check_acks_all(&part).map_err(|e| e.error)?;
    let now = now_ms();
    let batch = encode_end_txn_marker(marker, now);
    let (outcome, epoch) = part.append(&batch, now).map_err(|e| match e {
        AppendError::NotLeader => ResponseError::NotLeaderOrFollower,
        AppendError::Storage(e) => crate::error::storage_error(&e),
    })?;
    let deadline = tokio::time::Instant::now() + timeout;
    crate::replicate::wait_for_ack(part, outcome.last_offset, epoch, deadline).await
}

/// Writes one marker to each of `partitions` (all led here), concurrently.
pub async fn write_markers(
    partitions: &ReplicaManager,
    marker: &EndTxnMarker,
    targets: &[TopicPartition],
    timeout: Duration,
    hook: Option<&MarkerHook>,
) -> Vec<(TopicPartition, Result<(), ResponseError>)> {
    let writes = targets.iter().map(|(t, p)| async move {
        let r = write_marker(partitions, t, *p, marker, timeout).await;
        if let (Ok(()), Some(hook)) = (&r, hook) {
            hook(t, *p, marker);
        }
        ((t.clone(), *p), r)
    });
    futures::future::join_all(writes).await
}
