//! The transaction coordinator's side of end-transaction markers: write a transaction's markers
//! to every partition it touched (here, or on their leaders over gRPC, whose side is
//! [`crate::replicate::markers`]), then complete the transaction.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use runnel_coordinator::txn::shard::TxnAction;
use runnel_coordinator::txn::{MarkerJob, TopicPartition};
use runnel_protocol::batch::EndTxnMarker;
use runnel_replication::pb;
use tokio::sync::{mpsc, watch};

use super::channels::{NodeChannels, NodeClient};
use super::txn::TxnService;
use crate::metadata::MetadataView;
use crate::replica::ReplicaManager;
use crate::replicate::markers::{write_markers, MARKER_TIMEOUT};

/// How long a leader may take to answer a WriteTxnMarkers call (it waits up to
/// [`MARKER_TIMEOUT`] for each marker's replication).
const CALL_TIMEOUT: Duration = Duration::from_secs(MARKER_TIMEOUT.as_secs() + 5);

/// Pause before a transaction's markers are tried again after a retriable failure.
const RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// What the marker sender needs.
#[derive(Clone)]
pub struct MarkerContext {
    pub node_id: i32,
    pub txns: Arc<TxnService>,
    pub partitions: Arc<ReplicaManager>,
    pub metadata: Arc<MetadataView>,
    /// Told of each marker written here.
    pub hook: Option<crate::replicate::markers::MarkerHook>,
    pub channels: Arc<NodeChannels>,
}

/// Runs every marker job the transaction coordinators hand out until `stop`.
pub async fn run_sender(
    ctx: MarkerContext,
    mut jobs: mpsc::UnboundedReceiver<(i32, TxnAction)>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            job = jobs.recv() => match job {
                Some((p, TxnAction::SendMarkers(job))) => {
                    tokio::spawn(complete(ctx.clone(), p, job));
                }
                None => return,
            },
            _ = stop.changed() => return,
        }
    }
}

/// What became of one round of a job's markers.
enum Round {
    /// Some partitions still need their marker.
    Retry,
    /// The producer or coordinator was fenced at a partition, or the job is no longer the
    /// transaction's: a newer coordinator (or the same one, later) finishes it.
    Stop,
}

/// Writes a transaction's markers until every partition has one, then completes the
/// transaction (CompleteCommit/CompleteAbort). Stops when the job goes stale.
async fn complete(ctx: MarkerContext, partition: i32, job: MarkerJob) {
    let marker = EndTxnMarker {
        producer_id: job.producer_id,
        producer_epoch: job.producer_epoch,
        commit: job.commit,
        coordinator_epoch: job.coordinator_epoch,
    };
    let mut remaining: BTreeSet<TopicPartition> = job.partitions.clone();
    let mut attempts = 0u32;
    while !remaining.is_empty() {
        if !ctx.txns.is_current(partition, &job) {
            return;
        }
        match round(&ctx, &marker, &mut remaining).await {
            Round::Stop => {
                tracing::warn!(transactional_id = %job.txn_id, producer_id = job.producer_id, "transaction markers fenced; leaving the transaction to its current coordinator");
                return;
            }
            Round::Retry if remaining.is_empty() => {}
            Round::Retry => {
                attempts += 1;
                if attempts.is_multiple_of(50) {
                    tracing::warn!(transactional_id = %job.txn_id, remaining = remaining.len(), attempts, "transaction markers still not written");
                }
                tokio::time::sleep(RETRY_BACKOFF).await;
            }
        }
    }
    // Every marker is on its partition's ISR: the transaction completes. Retried while this
    // node still coordinates it (a failed write leaves it in Prepare*).
    loop {
        match ctx.txns.markers_written(partition, &job).await {
            Ok(()) => return,
            Err(ResponseError::NotCoordinator) => return,
            Err(e) => {
                tracing::warn!(transactional_id = %job.txn_id, error = ?e, "cannot complete the transaction yet");
                tokio::time::sleep(RETRY_BACKOFF).await;
                if !ctx.txns.is_current(partition, &job) {
                    return;
                }
            }
        }
    }
}

/// One attempt at every remaining partition, grouped by leader.
async fn round(
    ctx: &MarkerContext,
    marker: &EndTxnMarker,
    remaining: &mut BTreeSet<TopicPartition>,
) -> Round {
    let image = ctx.metadata.image();
    let mut by_leader: BTreeMap<i32, Vec<TopicPartition>> = BTreeMap::new();
    for tp in remaining.clone() {
        let Some(topic) = image.image.topic_by_name(&tp.0) else {
            // The topic is gone: nothing is left to mark.
            tracing::info!(topic = %tp.0, partition = tp.1, "dropping the marker of a deleted topic");
            remaining.remove(&tp);
            continue;
        };
        match topic.partitions.get(&tp.1) {
            None => {
                remaining.remove(&tp);
            }
            Some(reg) if reg.leader >= 0 => by_leader.entry(reg.leader).or_default().push(tp),
            Some(_) => {} // no leader now; next round
        }
    }
    drop(image);
    let sends = by_leader.into_iter().map(|(leader, tps)| async move {
        let results = if leader == ctx.node_id {
            write_markers(
                &ctx.partitions,
                marker,
                &tps,
                MARKER_TIMEOUT,
                ctx.hook.as_ref(),
            )
            .await
        } else {
            match remote(ctx, leader, marker, &tps).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(leader, error = %e, "cannot reach a partition leader for markers");
                    Vec::new()
                }
            }
        };
        results
    });
    let mut stop = false;
    for results in futures::future::join_all(sends).await {
        for (tp, r) in results {
            match r {
                Ok(()) => {
                    remaining.remove(&tp);
                }
                Err(ResponseError::InvalidProducerEpoch)
                | Err(ResponseError::TransactionCoordinatorFenced) => stop = true,
                Err(e) => {
                    tracing::debug!(topic = %tp.0, partition = tp.1, error = ?e, "marker not written; retrying");
                }
            }
        }
    }
    if stop {
        Round::Stop
    } else {
        Round::Retry
    }
}

/// The markers of `tps` written by their leader `leader` over the gRPC port.
async fn remote(
    ctx: &MarkerContext,
    leader: i32,
    marker: &EndTxnMarker,
    tps: &[TopicPartition],
) -> Result<Vec<(TopicPartition, Result<(), ResponseError>)>, String> {
    let NodeClient { addr, mut client } = ctx.channels.client(leader).await?;
    let req = pb::WriteTxnMarkersRequest {
        producer_id: marker.producer_id,
        producer_epoch: marker.producer_epoch as i32,
        commit: marker.commit,
        coordinator_epoch: marker.coordinator_epoch,
        partitions: tps
            .iter()
            .map(|(t, p)| pb::PartitionRef {
                topic: t.clone(),
                partition: *p,
            })
            .collect(),
        timeout_ms: MARKER_TIMEOUT.as_millis() as i32,
    };
    let call = tokio::time::timeout(CALL_TIMEOUT, client.write_txn_markers(req)).await;
    let resp = match call {
        Ok(Ok(r)) => r.into_inner(),
        Ok(Err(s)) => {
            ctx.channels.forget(&addr);
            return Err(format!("WriteTxnMarkers refused by {addr}: {s}"));
        }
        Err(_) => {
            ctx.channels.forget(&addr);
            return Err(format!("WriteTxnMarkers to {addr} timed out"));
        }
    };
    Ok(resp
        .partitions
        .into_iter()
        .map(|e| {
            let r = match e.error_code {
                0 => Ok(()),
                code => Err(ResponseError::try_from_code(code as i16)
                    .unwrap_or(ResponseError::UnknownServerError)),
            };
            ((e.topic, e.partition), r)
        })
        .collect())
}
