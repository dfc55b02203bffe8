//! A running metadata-quorum member: the openraft instance on the sled store, the gRPC server
//! for Raft and broker-to-controller calls, the client side of those calls (with leader-hint
//! retries), the active controller's request loop that runs the managers, broker liveness and
//! fencing, and the broker lifecycle (registration and heartbeats) of the local broker.
//!
//! This is the only public surface the broker uses; everything routes to the active controller,
//! locally when this node is it and over gRPC otherwise.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use uuid::Uuid;

use crate::api::{
    AdminRequest, AdminResponse, AlterPartitionRequest, ControllerError, PartitionState,
    ProducerIdBlock, QuorumInfo,
};
use crate::image::MetadataImage;
use crate::managers::{ManagerConfig, TopicConfigValidator};
use crate::records::{BrokerEndpoint, BrokerId};

/// `process.roles`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub broker: bool,
    pub controller: bool,
}

/// Everything a node needs to join the quorum.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub node_id: BrokerId,
    pub roles: Roles,
    /// Where the metadata log lives (`<log.dirs>/__cluster_metadata-0`).
    pub metadata_dir: PathBuf,
    /// Static voters (`controller.quorum.voters`): node id -> gRPC `host:port`.
    pub voters: BTreeMap<BrokerId, String>,
    /// Address the gRPC server binds; `None` runs no server (a standalone single voter).
    pub rpc_listen: Option<std::net::SocketAddr>,
    /// Address other nodes reach this node's gRPC server at.
    pub rpc_advertised: String,
    /// Cluster id for a new cluster (`None`: a random one).
    pub cluster_id: Option<String>,
    pub managers: ManagerConfig,
    /// `broker.heartbeat.interval.ms`.
    pub broker_heartbeat_interval: Duration,
    /// `broker.session.timeout.ms`.
    pub broker_session_timeout: Duration,
    /// `controller.quorum.election.timeout.ms` (randomised between 1x and 2x).
    pub election_timeout: Duration,
    /// Raft heartbeat (leader to followers) interval.
    pub raft_heartbeat_interval: Duration,
    /// Entries between metadata snapshots (`metadata.snapshot.interval.entries`).
    pub snapshot_interval_entries: u64,
}

/// The image as of a metadata log index.
#[derive(Debug, Clone, Default)]
pub struct AppliedImage {
    /// Raft log index of the last applied entry (0 before any).
    pub index: u64,
    pub image: MetadataImage,
}

/// The local broker's standing with the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BrokerLifecycle {
    pub registered: bool,
    pub fenced: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("invalid quorum configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("cannot listen on {addr}: {cause}")]
    Bind { addr: String, cause: std::io::Error },
    #[error("raft: {0}")]
    Raft(String),
}

/// A running node.
pub struct ControllerNode {
    _private: (),
}

impl ControllerNode {
    /// Opens the store, binds the gRPC server, starts Raft (initialising the static voters on a
    /// new cluster) and the active-controller tasks.
    pub async fn start(
        _cfg: NodeConfig,
        _validator: Arc<dyn TopicConfigValidator>,
    ) -> Result<Arc<ControllerNode>, NodeError> {
        todo!("helper B")
    }

    pub fn node_id(&self) -> BrokerId {
        todo!("helper B")
    }

    /// The locally applied image; changes whenever an entry is applied or a snapshot installed.
    pub fn image(&self) -> watch::Receiver<Arc<AppliedImage>> {
        todo!("helper B")
    }

    /// Waits until the local image has applied `index`; false on timeout.
    pub async fn wait_applied(&self, _index: u64, _timeout: Duration) -> bool {
        todo!("helper B")
    }

    /// The current active controller (Raft leader), if known.
    pub fn active_controller(&self) -> Option<BrokerId> {
        todo!("helper B")
    }

    /// Runs an admin request on the active controller; returns its response and the log index
    /// at which its records were committed (0 when nothing was written).
    pub async fn admin(
        &self,
        _req: AdminRequest,
        _timeout: Duration,
    ) -> Result<(AdminResponse, u64), ControllerError> {
        todo!("helper B")
    }

    /// A new block of producer ids for the local broker.
    pub async fn allocate_producer_ids(
        &self,
        _timeout: Duration,
    ) -> Result<ProducerIdBlock, ControllerError> {
        todo!("helper B")
    }

    /// Proposes a new ISR for a partition this broker leads (replication).
    pub async fn alter_partition(
        &self,
        _req: AlterPartitionRequest,
        _timeout: Duration,
    ) -> Result<PartitionState, ControllerError> {
        todo!("helper B")
    }

    /// Registers the local broker and keeps heartbeating until shutdown. The returned channel
    /// follows its registration and fencing.
    pub fn start_broker_lifecycle(
        &self,
        _endpoints: Vec<BrokerEndpoint>,
        _rack: Option<String>,
    ) -> watch::Receiver<BrokerLifecycle> {
        todo!("helper B")
    }

    /// This process's incarnation id (random per start).
    pub fn incarnation_id(&self) -> Uuid {
        todo!("helper B")
    }

    /// The quorum as the active controller sees it (forwarded there when needed).
    pub async fn describe_quorum(&self, _timeout: Duration) -> Result<QuorumInfo, ControllerError> {
        todo!("helper B")
    }

    /// Stops heartbeating, Raft and the gRPC server.
    pub async fn shutdown(&self) {
        todo!("helper B")
    }
}
