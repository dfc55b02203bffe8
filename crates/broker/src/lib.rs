//! The Runnel broker: Kafka API handlers, the node's metadata image, partition hosting, and the
//! server runtime that connects them to sockets.
//!
//! Data flow of a produce: `server` takes a frame off a connection, `runnel_protocol::frame`
//! decodes it, `handlers::produce` finds each partition in the [`replica::ReplicaManager`] and
//! appends the batch through `runnel_storage`, whose errors become wire codes in [`error`] only.
//! A fetch reads raw batch bytes back from storage and, if there are fewer than `min_bytes`,
//! waits on the partitions' high-watermark channels until data arrives or `max_wait_ms` passes.
//!
//! This crate must never let a request panic the process or reach storage unvalidated.

pub mod config;
pub mod error;
pub mod group;
pub mod handlers;
pub mod metadata;
pub mod replica;
pub mod server;
pub mod topic_config;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub use config::{BrokerConfig, ConfigError};
pub use server::{run, BoundServer};

use config::HostPort;
use metadata::MetadataStore;
use replica::ReplicaManager;

/// Shared state of a running broker.
pub struct Broker {
    pub config: BrokerConfig,
    pub advertised: HostPort,
    pub metadata: MetadataStore,
    pub replicas: ReplicaManager,
    /// The group coordinator (every group, on a single node).
    pub groups: group::GroupCoordinator,
}

pub type SharedBroker = Arc<Broker>;

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
    Metadata(#[from] metadata::MetadataError),
    #[error("storage: {0}")]
    Storage(#[from] runnel_storage::StorageError),
    #[error("cannot listen on {addr}: {cause}")]
    Bind { addr: String, cause: std::io::Error },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
