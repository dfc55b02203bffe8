//! The broker's channel to the metadata quorum: admin requests (answered once this broker
//! has applied their records), producer-id blocks, ISR changes and the quorum's description.
//! Handlers and the replication runtime reach the controller only through it.

use std::sync::Arc;
use std::time::Duration;

use runnel_controller::api::{
    AdminRequest, AdminResponse, AlterPartitionRequest, PartitionState, QuorumInfo,
};
use runnel_controller::{ControllerError, ControllerNode};

use crate::metadata::MetadataView;

/// The link from this broker to the active controller.
pub struct ControllerChannel {
    node: Arc<ControllerNode>,
    metadata: Arc<MetadataView>,
    producer_ids: tokio::sync::Mutex<ProducerIdRange>,
}

/// The unused part of the last producer-id block the controller handed out.
#[derive(Debug, Default)]
struct ProducerIdRange {
    next: i64,
    end: i64,
}

impl ControllerChannel {
    pub fn new(node: Arc<ControllerNode>, metadata: Arc<MetadataView>) -> ControllerChannel {
        ControllerChannel {
            node,
            metadata,
            producer_ids: tokio::sync::Mutex::new(ProducerIdRange::default()),
        }
    }

    /// This process's member of the metadata quorum (for start-up and shutdown).
    pub fn node(&self) -> &Arc<ControllerNode> {
        &self.node
    }

    /// Runs an admin request on the active controller, then waits (up to `timeout`) until this
    /// broker has applied its records.
    pub async fn admin(
        &self,
        req: AdminRequest,
        timeout: Duration,
    ) -> Result<AdminResponse, ControllerError> {
        let started = tokio::time::Instant::now();
        let (resp, index) = self.node.admin(req, timeout).await?;
        if index > 0 {
            let left = timeout.saturating_sub(started.elapsed());
            if !self.metadata.wait_reconciled(index, left).await {
                tracing::warn!(
                    index,
                    "admin change committed but not applied locally in time"
                );
            }
        }
        Ok(resp)
    }

    /// A fresh producer id from the local block, fetching a new block from the controller
    /// when it is used up. The whole call, waiting for the block's lock included, takes at
    /// most `timeout`: callers queued behind a slow allocation time out instead of waiting for
    /// every allocation ahead of them.
    pub async fn next_producer_id(&self, timeout: Duration) -> Result<i64, ControllerError> {
        take_producer_id(&self.producer_ids, timeout, |left| {
            self.node.allocate_producer_ids(left)
        })
        .await
    }

    /// Proposes a new ISR for a partition this broker leads.
    pub async fn alter_partition(
        &self,
        req: AlterPartitionRequest,
        timeout: Duration,
    ) -> Result<PartitionState, ControllerError> {
        self.node.alter_partition(req, timeout).await
    }

    /// The quorum as the active controller sees it.
    pub async fn describe_quorum(&self, timeout: Duration) -> Result<QuorumInfo, ControllerError> {
        self.node.describe_quorum(timeout).await
    }

    /// This process's incarnation id (random per start).
    pub fn incarnation_id(&self) -> uuid::Uuid {
        self.node.incarnation_id()
    }

    /// Whether the gRPC port runs mutual TLS, so that its callers are authenticated nodes.
    pub fn rpc_tls_enabled(&self) -> bool {
        self.node.rpc_tls_enabled()
    }

    /// The gRPC address of `node`, from the metadata quorum's membership (voters and
    /// learners).
    pub fn rpc_address(&self, node: i32) -> Option<String> {
        let metrics = self.node.raft_metrics();
        let addr = metrics
            .membership_config
            .membership()
            .nodes()
            .find(|(id, _)| **id == node as u64)
            .map(|(_, n)| n.addr.clone());
        addr
    }

    /// An endpoint for another node's gRPC server, over this node's mutual TLS when the port
    /// runs it.
    pub fn rpc_endpoint(
        &self,
        addr: &str,
    ) -> Result<tonic::transport::Endpoint, tonic::transport::Error> {
        self.node.rpc_endpoint(addr)
    }
}

/// [`ControllerChannel::next_producer_id`] over any block allocator (`allocate` gets the time left).
async fn take_producer_id<F, Fut>(
    range: &tokio::sync::Mutex<ProducerIdRange>,
    timeout: Duration,
    allocate: F,
) -> Result<i64, ControllerError>
where
    F: FnOnce(Duration) -> Fut,
    Fut: std::future::Future<
        Output = Result<runnel_controller::api::ProducerIdBlock, ControllerError>,
    >,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let work = async {
        let mut range = range.lock().await;
        if range.next >= range.end {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let block = allocate(left).await?;
            if block.size <= 0 || block.first_producer_id < 0 {
                return Err(ControllerError::Internal(format!(
                    "controller handed out an empty producer id block {block:?}"
                )));
            }
            range.next = block.first_producer_id;
            range.end = block.first_producer_id.saturating_add(block.size as i64);
            tracing::debug!(
                first = block.first_producer_id,
                size = block.size,
                "new producer id block"
            );
        }
        let id = range.next;
        range.next += 1;
        Ok(id)
    };
    match tokio::time::timeout_at(deadline, work).await {
        Ok(r) => r,
        Err(_) => {
            tracing::warn!(
                timeout_ms = timeout.as_millis() as u64,
                "producer id allocation timed out"
            );
            Err(ControllerError::Timeout(format!(
                "no producer id block within {}ms",
                timeout.as_millis()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runnel_controller::api::ProducerIdBlock;

    #[tokio::test]
    async fn producer_id_callers_queued_behind_a_slow_allocation_time_out() {
        let range = Arc::new(tokio::sync::Mutex::new(ProducerIdRange::default()));
        // One caller is stuck allocating (the controller does not answer).
        let stuck = {
            let range = range.clone();
            tokio::spawn(async move {
                take_producer_id(&range, Duration::from_secs(3600), |_| {
                    std::future::pending::<Result<ProducerIdBlock, ControllerError>>()
                })
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The next caller waits for the lock; its whole call is bounded by its timeout.
        let started = tokio::time::Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            take_producer_id(&range, Duration::from_millis(200), |_| async {
                Ok(ProducerIdBlock {
                    first_producer_id: 1000,
                    size: 10,
                })
            }),
        )
        .await
        .expect("the timeout must cover waiting for the lock");
        assert!(matches!(r, Err(ControllerError::Timeout(_))), "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
        stuck.abort();
        let _ = stuck.await;
        // Once free, ids come from the block, in order.
        for want in [1000, 1001] {
            let id = take_producer_id(&range, Duration::from_secs(1), |_| async {
                Ok(ProducerIdBlock {
                    first_producer_id: 1000,
                    size: 10,
                })
            })
            .await
            .unwrap();
            assert_eq!(id, want);
        }
    }
}
