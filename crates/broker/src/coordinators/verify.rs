//! Server-side partition verification, the partition leader's side: before a producer's
//! first transactional batch on a partition opens a transaction there, the leader asks the
//! transaction coordinator of the producer's transactional id (here, or over gRPC) whether the
//! partition is in the producer's open transaction. A late retry of a batch whose transaction
//! has ended is then refused instead of opening a transaction nothing would ever close (a
//! hanging transaction, which would hold the last stable offset back for good).

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use runnel_coordinator::txn::{TopicPartition, TRANSACTION_STATE_TOPIC};
use runnel_replication::pb;

use super::channels::{NodeChannels, NodeClient};
use super::txn::TxnService;
use crate::metadata::MetadataView;

/// How long a leader waits for the coordinator's answer before it answers the producer with a
/// retriable error.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(5);

/// What a leader needs to verify partitions with the transaction coordinators.
pub struct TxnVerifier {
    node_id: i32,
    txns: Arc<TxnService>,
    metadata: Arc<MetadataView>,
    channels: Arc<NodeChannels>,
}

/// Each partition's answer: `Ok` when it is in the producer's open transaction, else the
/// coordinator's error (or COORDINATOR_NOT_AVAILABLE when it could not be asked).
pub type Verified = Vec<(TopicPartition, Result<(), ResponseError>)>;

impl TxnVerifier {
    pub fn new(
        node_id: i32,
        txns: Arc<TxnService>,
        metadata: Arc<MetadataView>,
        channels: Arc<NodeChannels>,
    ) -> TxnVerifier {
        TxnVerifier {
            node_id,
            txns,
            metadata,
            channels,
        }
    }

    /// Asks the coordinator of `txn_id` whether `partitions` are in the open transaction of
    /// `producer_id` at `producer_epoch`.
    pub async fn verify(
        &self,
        txn_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[TopicPartition],
    ) -> Verified {
        let all = |e: ResponseError| partitions.iter().map(|p| (p.clone(), Err(e))).collect();
        let state_partition = self.txns.partition_of(txn_id);
        let coordinator = self
            .metadata
            .image()
            .image
            .topic_by_name(TRANSACTION_STATE_TOPIC)
            .and_then(|t| t.partitions.get(&state_partition))
            .map(|p| p.leader)
            .filter(|&l| l >= 0);
        let Some(coordinator) = coordinator else {
            return all(ResponseError::CoordinatorNotAvailable);
        };
        let answer = if coordinator == self.node_id {
            self.txns
                .verify(txn_id, producer_id, producer_epoch, partitions)
        } else {
            match self
                .remote(coordinator, txn_id, producer_id, producer_epoch, partitions)
                .await
            {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!(coordinator, transactional_id = %txn_id, error = %e, "cannot ask the transaction coordinator to verify partitions");
                    return all(ResponseError::CoordinatorNotAvailable);
                }
            }
        };
        match answer {
            Ok(results) => partitions
                .iter()
                .map(|p| {
                    let r = results
                        .iter()
                        .find(|(q, _)| q == p)
                        .map_or(Err(ResponseError::UnknownServerError), |(_, e)| {
                            e.map_or(Ok(()), Err)
                        });
                    (p.clone(), r)
                })
                .collect(),
            Err(e) => all(e),
        }
    }

    async fn remote(
        &self,
        coordinator: i32,
        txn_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[TopicPartition],
    ) -> Result<Result<Vec<(TopicPartition, Option<ResponseError>)>, ResponseError>, String> {
        let NodeClient { addr, mut client } = self.channels.client(coordinator).await?;
        let req = pb::VerifyTxnPartitionsRequest {
            transactional_id: txn_id.to_string(),
            producer_id,
            producer_epoch: i32::from(producer_epoch),
            partitions: partitions
                .iter()
                .map(|(t, p)| pb::PartitionRef {
                    topic: t.clone(),
                    partition: *p,
                })
                .collect(),
        };
        let resp =
            match tokio::time::timeout(VERIFY_TIMEOUT, client.verify_txn_partitions(req)).await {
                Ok(Ok(r)) => r.into_inner(),
                Ok(Err(s)) => {
                    self.channels.forget(&addr);
                    return Err(format!("VerifyTxnPartitions refused by {addr}: {s}"));
                }
                Err(_) => {
                    self.channels.forget(&addr);
                    return Err(format!("VerifyTxnPartitions to {addr} timed out"));
                }
            };
        let code = |c: i32| {
            ResponseError::try_from_code(c as i16).unwrap_or(ResponseError::UnknownServerError)
        };
        if resp.error_code != 0 {
            return Ok(Err(code(resp.error_code)));
        }
        Ok(Ok(resp
            .partitions
            .into_iter()
            .map(|e| {
                let r = (e.error_code != 0).then(|| code(e.error_code));
                ((e.topic, e.partition), r)
            })
            .collect()))
    }
}
