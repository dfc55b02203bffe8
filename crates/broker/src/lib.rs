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

pub mod config;
pub mod error;
pub mod group;
pub mod handlers;
pub mod reconcile;
pub mod replica;
pub mod server;
pub mod topic_config;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use config::{BrokerConfig, ConfigError};
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
    /// The last image index the reconciler applied to the hosted partitions.
    reconciled: watch::Sender<u64>,
    pub replicas: ReplicaManager,
    /// The group coordinator (the groups of the `__consumer_offsets` partitions led here).
    pub groups: group::GroupCoordinator,
    producer_ids: tokio::sync::Mutex<ProducerIdRange>,
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
        Broker {
            images: controller.image(),
            config,
            advertised,
            controller,
            lifecycle,
            reconciled: watch::channel(0).0,
            replicas,
            groups,
            producer_ids: tokio::sync::Mutex::new(ProducerIdRange::default()),
        }
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
    /// when it is used up.
    pub async fn next_producer_id(&self, timeout: Duration) -> Result<i64, ControllerError> {
        let mut range = self.producer_ids.lock().await;
        if range.next >= range.end {
            let block = self.controller.allocate_producer_ids(timeout).await?;
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
