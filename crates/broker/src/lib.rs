//! The Runnel broker: Kafka API handlers, partition hosting, and the server runtime that
//! connects them to sockets. Cluster metadata (brokers, topics, assignments, configs, producer
//! id blocks) belongs to the controller quorum (`runnel_controller`): the broker reads the
//! locally applied metadata image, forwards admin requests to the active controller, and makes
//! its hosted partitions follow the image ([`reconcile`]).
//!
//! Data flow of a produce: `server` takes a frame off a connection, `runnel_protocol::frame`
//! decodes it, `handlers::produce` finds each partition in the [`replica::ReplicaManager`],
//! checks that this node leads it, and appends the batch through `runnel_storage`, whose errors
//! become wire codes in [`error`] only. A fetch reads raw batch bytes back from storage and, if
//! there are fewer than `min_bytes`, waits on the partitions' high-watermark channels until
//! data arrives or `max_wait_ms` passes.
//!
//! This crate must never let a request panic the process or reach storage unvalidated, and
//! never serves a partition's data (or a group) that the image does not say this node leads.

pub mod auth;
pub mod cleaner;
pub mod config;
pub mod connection;
pub mod context;
pub mod error;
pub mod fence;
pub mod group;
pub mod handlers;
pub mod listener_security;
pub mod meta_properties;
pub mod reconcile;
pub mod replica;
pub mod replicate;
pub mod server;
pub mod topic_config;
pub mod topics;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use config::{BrokerConfig, ConfigError};
pub use fence::Fence;
pub use server::{run, BoundServer};

use config::HostPort;
use replica::ReplicaManager;
use runnel_controller::api::{AdminRequest, AdminResponse};
use runnel_controller::{AppliedImage, BrokerLifecycle, ControllerError, ControllerNode};
use tokio::sync::watch;

/// Shared state of a running broker.
pub struct Broker {
    pub config: BrokerConfig,
    pub advertised: HostPort,
    /// This process's member of the metadata quorum.
    pub controller: Arc<ControllerNode>,
    images: watch::Receiver<Arc<AppliedImage>>,
    /// The local broker's registration and fencing.
    pub lifecycle: watch::Receiver<BrokerLifecycle>,
    /// Whether this broker must stop serving partitions and groups (fenced, or its data
    /// directory belongs to another cluster); shared with the group coordinator.
    pub fence: Arc<Fence>,
    /// The last image index the reconciler applied to the hosted partitions.
    reconciled: watch::Sender<u64>,
    pub replicas: ReplicaManager,
    /// Follower fetchers and ISR bookkeeping (see [`replicate`]).
    pub replication: replicate::Replication,
    /// The group coordinator (the groups of the `__consumer_offsets` partitions led here).
    pub groups: group::GroupCoordinator,
    producer_ids: tokio::sync::Mutex<ProducerIdRange>,
    /// ACL authorization (see [`auth::authorizer`]).
    pub authorizer: auth::Authorizer,
    /// Derives the fake SCRAM salt of unknown users, so that a failed login does not reveal
    /// whether the user exists; random per process.
    pub scram_secret: [u8; 32],
    /// The cluster id `meta.properties` was checked against (or written with).
    verified_cluster: parking_lot::Mutex<Option<String>>,
}

/// The unused part of the last producer-id block the controller handed out.
#[derive(Debug, Default)]
struct ProducerIdRange {
    next: i64,
    end: i64,
}

pub type SharedBroker = Arc<Broker>;

impl Broker {
    pub(crate) fn new(
        config: BrokerConfig,
        advertised: HostPort,
        controller: Arc<ControllerNode>,
        lifecycle: watch::Receiver<BrokerLifecycle>,
        groups: group::GroupCoordinator,
    ) -> Broker {
        let replicas = ReplicaManager::new(&config.data_dir);
        let node_id = config.node_id;
        let fence = Arc::new(Fence::new(lifecycle.clone()));
        groups.set_fence(fence.clone());
        let mut scram_secret = [0u8; 32];
        if getrandom::fill(&mut scram_secret).is_err() {
            // Without OS randomness, the time still makes the fake salts unpredictable enough
            // not to be recognisable across brokers.
            let t = now_ms().to_le_bytes();
            scram_secret[..8].copy_from_slice(&t);
        }
        Broker {
            authorizer: auth::Authorizer::new(&config),
            scram_secret,
            images: controller.image(),
            config,
            advertised,
            controller,
            lifecycle,
            fence,
            reconciled: watch::channel(0).0,
            replicas,
            replication: replicate::Replication::new(node_id),
            groups,
            producer_ids: tokio::sync::Mutex::new(ProducerIdRange::default()),
            verified_cluster: parking_lot::Mutex::new(None),
        }
    }

    /// Whether `ctx`'s principal may do `op` on the resource, by the ACLs of the current
    /// image (a denial is logged; see [`auth::Authorizer::authorize`]).
    pub fn authorize(
        &self,
        ctx: &context::RequestContext,
        op: runnel_security::acl::AclOperation,
        resource_type: runnel_security::acl::ResourceType,
        name: &str,
    ) -> bool {
        self.authorizer
            .authorize(&self.image().image, ctx, op, resource_type, name)
    }

    /// The locally applied metadata image.
    pub fn image(&self) -> Arc<AppliedImage> {
        self.images.borrow().clone()
    }

    pub fn image_watch(&self) -> watch::Receiver<Arc<AppliedImage>> {
        self.images.clone()
    }

    /// Whether `image` shows this process's own registration unfenced. Its registration was
    /// appended after everything committed before it, so such an image has caught up with the
    /// metadata log as of this start: acting on it can no longer undo newer metadata (a topic
    /// recreated while this node was down, say).
    pub fn caught_up(&self, image: &AppliedImage) -> bool {
        image
            .image
            .broker(self.config.node_id)
            .is_some_and(|b| !b.fenced && b.incarnation_id == self.controller.incarnation_id())
    }

    /// Waits until the local image has caught up (see [`Self::caught_up`]); false on timeout.
    pub async fn wait_caught_up(&self, timeout: Duration) -> bool {
        let mut images = self.image_watch();
        tokio::time::timeout(timeout, images.wait_for(|i| self.caught_up(i)))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Ties the data directory to the image's cluster id ([`meta_properties::check_cluster`]);
    /// call only with a caught-up image. False (and the broker fails for good, see
    /// [`Fence::fail`]) when the data directory belongs to another cluster or the check cannot
    /// be made: then nothing may be opened or deleted.
    pub fn verify_cluster(&self, image: &AppliedImage) -> bool {
        if let Some(reason) = self.fence.fatal() {
            tracing::debug!(reason = %reason, "broker has failed; not reconciling");
            return false;
        }
        let Some(cluster_id) = image.image.cluster_id() else {
            // Not bootstrapped yet: nothing to tie the directory to.
            return true;
        };
        let mut verified = self.verified_cluster.lock();
        if verified.as_deref() == Some(cluster_id) {
            return true;
        }
        match meta_properties::check_cluster(&self.config.data_dir, self.config.node_id, cluster_id)
        {
            Ok(()) => {
                *verified = Some(cluster_id.to_string());
                true
            }
            Err(reason) => {
                tracing::error!(
                    node_id = self.config.node_id,
                    cluster_id,
                    data_dir = %self.config.data_dir.display(),
                    reason = %reason,
                    "data directory does not belong to this cluster"
                );
                self.fence.fail(reason);
                false
            }
        }
    }

    pub(crate) fn mark_reconciled(&self, index: u64) {
        self.reconciled.send_if_modified(|cur| {
            let newer = index > *cur;
            if newer {
                *cur = index;
            }
            newer
        });
    }

    /// Waits until the image has applied `index` and the hosted partitions follow it, so that
    /// a client's next request to this broker sees a change it just made. False on timeout.
    pub async fn wait_reconciled(&self, index: u64, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        if !self.controller.wait_applied(index, timeout).await {
            return false;
        }
        let mut rx = self.reconciled.subscribe();
        tokio::time::timeout_at(deadline, rx.wait_for(|i| *i >= index))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Runs an admin request on the active controller, then waits (up to `timeout`) until this
    /// broker has applied its records.
    pub async fn admin(
        &self,
        req: AdminRequest,
        timeout: Duration,
    ) -> Result<AdminResponse, ControllerError> {
        let started = tokio::time::Instant::now();
        let (resp, index) = self.controller.admin(req, timeout).await?;
        if index > 0 {
            let left = timeout.saturating_sub(started.elapsed());
            if !self.wait_reconciled(index, left).await {
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
            self.controller.allocate_producer_ids(left)
        })
        .await
    }
}

/// [`Broker::next_producer_id`] over any block allocator (`allocate` gets the time left).
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

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Controller(#[from] runnel_controller::NodeError),
    #[error("{0}")]
    Startup(String),
    #[error("storage: {0}")]
    Storage(#[from] runnel_storage::StorageError),
    #[error("cannot listen on {addr}: {cause}")]
    Bind { addr: String, cause: std::io::Error },
    #[error("{0}")]
    Io(#[from] std::io::Error),
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
