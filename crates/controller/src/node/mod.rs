//! A running metadata-quorum member: the openraft instance on the sled store, the gRPC server
//! for Raft and broker-to-controller calls, the client side of those calls (with leader-hint
//! retries), the active controller's request loop that runs the managers, broker liveness and
//! fencing, and the broker lifecycle (registration and heartbeats) of the local broker.
//!
//! This is the only public surface the broker uses; everything routes to the active controller,
//! locally when this node is it and over gRPC otherwise.
//!
//! Quorum formation is static (`controller.quorum.voters`): on a fresh store every voter calls
//! openraft's `initialize` with the full voter set. openraft writes that membership as the entry
//! with the default log id (term 0, node 0, index 0) on each of them, so identical calls agree
//! by construction (openraft documents repeated identical `initialize` as safe; different voter
//! sets would split the cluster, which is why every voter must be given the same list). Nodes
//! without the controller role never initialise: they register as brokers and the active
//! controller adds them as non-voting learners, so they follow the metadata log.

mod active;
mod forward;
mod lifecycle;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::{BasicNode, Config, Raft, SnapshotPolicy};
use runnel_security::scram::{ScramCredential, ScramMechanism};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::api::{
    AdminRequest, AdminResponse, AllocateProducerIdsRequest, AlterPartitionRequest,
    BrokerHeartbeatRequest, BrokerHeartbeatResponse, ControllerError, PartitionState,
    ProducerIdBlock, QuorumInfo, RegisterBrokerRequest,
};
use crate::managers::{ManagerConfig, TopicConfigValidator};
use crate::records::{BrokerEndpoint, BrokerId};
use crate::rpc::client::Peers;
use crate::rpc::network::{AckTimes, Network};
use crate::rpc::tls::{RpcTls, RpcTlsConfig};
use crate::store::{self, TypeConfig};

pub use crate::store::AppliedImage;
pub(crate) use active::Active;

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
    /// Static voters (`controller.quorum.voters`): node id -> gRPC `host:port`. Every voter must
    /// be given the same map; a node is in it exactly when it has the controller role.
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
    /// How often the active controller moves leadership back to preferred replicas
    /// (`leader.imbalance.check.interval.seconds`); `None` disables the automatic rebalance
    /// (`auto.leader.rebalance.enable=false`).
    pub leader_imbalance_check_interval: Option<Duration>,
    /// SCRAM credentials (user, mechanism, credential) a new cluster starts with
    /// (`--add-scram`): written with the cluster id by the node that creates the cluster,
    /// ignored once the cluster exists.
    pub bootstrap_scram: Vec<(String, ScramMechanism, ScramCredential)>,
    /// Mutual TLS on the gRPC port and for this node's calls to other nodes (`rpc.ssl.*`);
    /// `None`: plaintext, no caller is authenticated.
    pub rpc_tls: Option<RpcTlsConfig>,
}

impl NodeConfig {
    /// Checks the quorum settings; [`ControllerNode::start`] calls it.
    pub fn validate(&self) -> Result<(), NodeError> {
        let err = |m: String| Err(NodeError::Config(m));
        if !self.roles.broker && !self.roles.controller {
            return err("process.roles must name broker, controller or both".into());
        }
        if self.voters.is_empty() {
            return err("controller.quorum.voters is empty".into());
        }
        if let Some(id) = self.voters.keys().find(|id| **id < 0) {
            return err(format!("voter id {id} is negative"));
        }
        if self.node_id < 0 {
            return err(format!("node.id {} is negative", self.node_id));
        }
        let is_voter = self.voters.contains_key(&self.node_id);
        if is_voter != self.roles.controller {
            return err(format!(
                "node {} {} in controller.quorum.voters but {} the controller role",
                self.node_id,
                if is_voter { "is" } else { "is not" },
                if self.roles.controller {
                    "has"
                } else {
                    "lacks"
                },
            ));
        }
        if self.rpc_listen.is_none() && (self.voters.len() > 1 || !self.roles.controller) {
            return err("a node of a multi-node quorum needs a gRPC listener (rpc_listen)".into());
        }
        if self.election_timeout <= self.raft_heartbeat_interval {
            return err(format!(
                "election timeout {:?} must exceed the raft heartbeat interval {:?}",
                self.election_timeout, self.raft_heartbeat_interval
            ));
        }
        if self.raft_heartbeat_interval.is_zero() || self.broker_heartbeat_interval.is_zero() {
            return err("heartbeat intervals must be positive".into());
        }
        if self.broker_session_timeout <= self.broker_heartbeat_interval {
            return err(format!(
                "broker.session.timeout.ms {:?} must exceed broker.heartbeat.interval.ms {:?}",
                self.broker_session_timeout, self.broker_heartbeat_interval
            ));
        }
        if self.snapshot_interval_entries == 0 {
            return err("metadata.snapshot.interval.entries must be positive".into());
        }
        if self.leader_imbalance_check_interval == Some(Duration::ZERO) {
            return err("leader.imbalance.check.interval.seconds must be positive".into());
        }
        for (user, mechanism, credential) in &self.bootstrap_scram {
            if let Err(m) =
                crate::managers::scram::check_bootstrap_credential(user, *mechanism, credential)
            {
                return err(format!("invalid --add-scram credential: {m}"));
            }
        }
        Ok(())
    }

    fn raft_config(&self) -> Result<Config, NodeError> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let election = ms(self.election_timeout);
        // openraft 0.9 also honours a leader lease of `election_timeout_max`: a follower that
        // heard from a leader waits lease + its random timeout (3x to 4x `election_timeout`
        // here) before campaigning, and refuses votes while the lease lasts. That, not the
        // timeout alone, is the failure-detection time of the controller quorum. openraft also
        // bounds each AppendEntries by `heartbeat_interval`, so the heartbeat must leave room
        // for an fsync'd append.
        Config {
            cluster_name: "runnel-metadata".into(),
            heartbeat_interval: ms(self.raft_heartbeat_interval),
            election_timeout_min: election,
            election_timeout_max: election.saturating_mul(2),
            // The whole image travels in one InstallSnapshot; allow it time on a busy machine.
            install_snapshot_timeout: 10_000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_interval_entries),
            // A follower that falls further behind than this is caught up by a snapshot
            // rather than by replaying the log: the log stays short.
            max_in_snapshot_log_to_keep: self.snapshot_interval_entries.min(100),
            ..Default::default()
        }
        .validate()
        .map_err(|e| NodeError::Config(e.to_string()))
    }
}

/// The local broker's standing with the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BrokerLifecycle {
    /// The controller accepted this incarnation's registration (and has not since forgotten it).
    pub registered: bool,
    /// Fenced by the controller OR unable to reach it for a session timeout
    /// (`broker.session.timeout.ms` without an answered heartbeat, after which the controller
    /// fences this broker and moves its leaderships away). While it is true the broker must
    /// refuse partition-leader and coordinator work. Also true before registration.
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

/// What a node asks the active controller (locally or over gRPC).
#[derive(Debug, Clone)]
pub(crate) enum Call {
    Admin(AdminRequest),
    Register(RegisterBrokerRequest),
    Heartbeat(BrokerHeartbeatRequest),
    AllocateProducerIds(AllocateProducerIdsRequest),
    AlterPartition(AlterPartitionRequest),
    DescribeQuorum,
}

/// The active controller's answer to a [`Call`] (same variant order).
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    Admin(AdminResponse, u64),
    /// The log index at which the registration was committed.
    Registered(u64),
    Heartbeat(BrokerHeartbeatResponse),
    ProducerIds(ProducerIdBlock),
    Partition(PartitionState),
    Quorum(QuorumInfo),
}

/// State shared by the public handle, the gRPC services and the background tasks.
pub(crate) struct Shared {
    pub(crate) cfg: NodeConfig,
    pub(crate) raft: Raft<TypeConfig>,
    image: watch::Receiver<Arc<AppliedImage>>,
    validator: Arc<dyn TopicConfigValidator>,
    /// The active controller's state; holding the lock is what makes requests run one at a time.
    active: tokio::sync::Mutex<Active>,
    /// Admin requests (topics, configs, ACLs, credentials) pass this gate one at a time before
    /// they queue for `active`, so at most one of them ever waits there: heartbeats,
    /// registrations, AlterPartition and the liveness rounds wait for at most two admin
    /// requests, however many clients flood the controller with them.
    admin_gate: tokio::sync::Mutex<()>,
    /// When each broker's latest heartbeat arrived, recorded before it waits for `active`: the
    /// liveness round counts a heartbeat from its arrival, so a heartbeat queued behind a slow
    /// request never lets its broker's session expire.
    heartbeat_arrivals: Mutex<BTreeMap<BrokerId, (Uuid, tokio::time::Instant)>>,
    peers: Peers,
    acks: AckTimes,
    /// This node's TLS material when the gRPC port runs mutual TLS.
    pub(crate) tls: Option<RpcTls>,
    incarnation: Uuid,
    /// The cluster id this node bootstraps a new cluster with.
    cluster_id: String,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    lifecycle: Mutex<Option<watch::Receiver<BrokerLifecycle>>>,
    /// Where the local broker's controlled shutdown stands; the lifecycle reads and answers it.
    controlled_shutdown: watch::Sender<ControlledShutdown>,
}

/// The local broker's controlled shutdown, as [`ControllerNode::controlled_shutdown`] and the
/// broker lifecycle see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ControlledShutdown {
    /// Not asked for: heartbeats do not want to shut down.
    NotRequested,
    /// Heartbeats carry `want_shut_down` until the controller says the broker may stop.
    Requested,
    /// The controller answered `should_shut_down` (or this incarnation leads nothing): the
    /// broker is fenced and may stop. Heartbeats have stopped.
    Granted,
}

/// A running node.
pub struct ControllerNode {
    shared: Arc<Shared>,
}

fn node_id(id: BrokerId) -> u64 {
    // Validated non-negative.
    u64::try_from(id).unwrap_or_default()
}

/// Opens the store, retrying for a while if the directory is still locked by a node of this
/// process that is shutting down (openraft drops the store a moment after `shutdown`).
async fn open_store(
    dir: &std::path::Path,
) -> Result<(store::LogStore, store::StateMachine), NodeError> {
    let mut attempts = 0u32;
    loop {
        match store::open(dir) {
            Ok(halves) => return Ok(halves),
            Err(store::StoreError::Io(error)) if attempts < 100 => {
                attempts += 1;
                tracing::debug!(dir = %dir.display(), %error, attempts, "metadata store busy, retrying");
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// A cluster id in Kafka's form: 16 random bytes, URL-safe base64 without padding (22 chars).
fn random_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let value = Uuid::new_v4().as_u128();
    // 22 six-bit groups cover 132 bits; the top group holds the last 2 bits.
    (0..22)
        .map(|i| {
            let shift = 128i32 - 6 * (i + 1);
            let group = if shift >= 0 {
                (value >> shift) & 0x3f
            } else {
                (value << -shift) & 0x3f
            };
            char::from(ALPHABET[group as usize])
        })
        .collect()
}

impl ControllerNode {
    /// Opens the store, binds the gRPC server, starts Raft (initialising the static voters on a
    /// new cluster) and the active-controller tasks.
    pub async fn start(
        cfg: NodeConfig,
        validator: Arc<dyn TopicConfigValidator>,
    ) -> Result<Arc<ControllerNode>, NodeError> {
        Self::start_with_services(cfg, validator, None).await
    }

    /// [`Self::start`], also serving the gRPC services `extra` adds on the node's gRPC server
    /// (the broker's replica fetch service). Without an `rpc_listen` there is no server and
    /// `extra` is dropped.
    pub async fn start_with_services(
        cfg: NodeConfig,
        validator: Arc<dyn TopicConfigValidator>,
        extra: Option<crate::rpc::ExtraServices>,
    ) -> Result<Arc<ControllerNode>, NodeError> {
        cfg.validate()?;
        let raft_config = Arc::new(cfg.raft_config()?);
        let tls = match &cfg.rpc_tls {
            Some(t) => Some(RpcTls::load(t, cfg.node_id).map_err(NodeError::Config)?),
            None => None,
        };
        match (&tls, cfg.rpc_listen) {
            (None, Some(addr)) if crate::rpc::tls::beyond_loopback(&addr) => {
                tracing::warn!(
                    node_id = cfg.node_id,
                    rpc_listen = %addr,
                    "THE INTER-NODE gRPC PORT IS NOT AUTHENTICATED: anyone who reaches it can vote in \
                     the metadata quorum, register as a broker, run admin requests and fetch \
                     partition data as a replica; set rpc.ssl.keystore.location and \
                     rpc.ssl.truststore.location for mutual TLS"
                );
            }
            (Some(_), Some(addr)) => {
                tracing::info!(node_id = cfg.node_id, rpc_listen = %addr, "inter-node gRPC port runs mutual TLS");
            }
            _ => {}
        }
        let (log, sm) = open_store(&cfg.metadata_dir).await?;
        let image = sm.subscribe();

        let listener = match cfg.rpc_listen {
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(|cause| {
                NodeError::Bind {
                    addr: addr.to_string(),
                    cause,
                }
            })?),
            None => None,
        };

        let acks = AckTimes::default();
        let network = Network {
            acks: acks.clone(),
            connect_timeout: cfg.election_timeout,
            tls: tls.clone(),
        };
        let raft = Raft::new(node_id(cfg.node_id), raft_config, network, log, sm)
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;

        let (shutdown, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            raft: raft.clone(),
            image,
            validator,
            active: tokio::sync::Mutex::new(Active::new()),
            admin_gate: tokio::sync::Mutex::new(()),
            heartbeat_arrivals: Mutex::new(BTreeMap::new()),
            peers: Peers::new(cfg.election_timeout, tls.clone()),
            acks,
            tls,
            incarnation: Uuid::new_v4(),
            cluster_id: cfg.cluster_id.clone().unwrap_or_else(random_cluster_id),
            shutdown,
            tasks: Mutex::new(Vec::new()),
            lifecycle: Mutex::new(None),
            controlled_shutdown: watch::channel(ControlledShutdown::NotRequested).0,
            cfg,
        });

        if let Some(listener) = listener {
            let task = crate::rpc::server::spawn(shared.clone(), listener, extra);
            shared.push_task(task);
        }

        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        if !initialized && shared.cfg.roles.controller {
            let members: BTreeMap<u64, BasicNode> = shared
                .cfg
                .voters
                .iter()
                .map(|(id, addr)| (node_id(*id), BasicNode::new(addr)))
                .collect();
            tracing::info!(node_id = shared.cfg.node_id, voters = ?members.keys().collect::<Vec<_>>(), "initialising a new metadata quorum");
            if let Err(e) = raft.initialize(members).await {
                // NotAllowed: a peer's log reached us first; the quorum formed without us.
                tracing::info!(node_id = shared.cfg.node_id, error = %e, "metadata quorum not initialised here");
            }
        }

        let ticker = tokio::spawn(active::run_ticker(shared.clone()));
        shared.push_task(ticker);
        if let Some(interval) = shared.cfg.leader_imbalance_check_interval {
            let rebalancer = tokio::spawn(active::run_rebalancer(shared.clone(), interval));
            shared.push_task(rebalancer);
        }
        tracing::info!(
            node_id = shared.cfg.node_id,
            incarnation_id = %shared.incarnation,
            rpc = ?shared.cfg.rpc_listen,
            "controller node started"
        );
        Ok(Arc::new(ControllerNode { shared }))
    }

    pub fn node_id(&self) -> BrokerId {
        self.shared.cfg.node_id
    }

    /// The locally applied image; changes whenever an entry is applied or a snapshot installed.
    /// Clone the `Arc` out of a borrow (`rx.borrow().clone()`) and never hold a borrow across
    /// an `.await` (that includes the guard `wait_for` returns): the state machine cannot
    /// publish the next image while a borrow is held.
    pub fn image(&self) -> watch::Receiver<Arc<AppliedImage>> {
        self.shared.image.clone()
    }

    /// Waits until the local image has applied `index`; false on timeout.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> bool {
        self.shared.wait_applied(index, timeout).await
    }

    /// The current active controller (Raft leader), if known.
    pub fn active_controller(&self) -> Option<BrokerId> {
        let leader = self.shared.raft.metrics().borrow().current_leader;
        leader.and_then(|id| BrokerId::try_from(id).ok())
    }

    /// Runs an admin request on the active controller; returns its response and the log index
    /// at which its records were committed (0 when nothing was written).
    pub async fn admin(
        &self,
        req: AdminRequest,
        timeout: Duration,
    ) -> Result<(AdminResponse, u64), ControllerError> {
        match self.shared.call(Call::Admin(req), timeout).await? {
            Reply::Admin(response, index) => Ok((response, index)),
            other => Err(mismatch(&other)),
        }
    }

    /// A new block of producer ids for the local broker.
    pub async fn allocate_producer_ids(
        &self,
        timeout: Duration,
    ) -> Result<ProducerIdBlock, ControllerError> {
        let req = AllocateProducerIdsRequest {
            broker_id: self.shared.cfg.node_id,
            incarnation_id: self.shared.incarnation,
        };
        match self
            .shared
            .call(Call::AllocateProducerIds(req), timeout)
            .await?
        {
            Reply::ProducerIds(block) => Ok(block),
            other => Err(mismatch(&other)),
        }
    }

    /// Proposes a new ISR for a partition this broker leads (replication).
    pub async fn alter_partition(
        &self,
        req: AlterPartitionRequest,
        timeout: Duration,
    ) -> Result<PartitionState, ControllerError> {
        match self.shared.call(Call::AlterPartition(req), timeout).await? {
            Reply::Partition(state) => Ok(state),
            other => Err(mismatch(&other)),
        }
    }

    /// Registers the local broker and keeps heartbeating until shutdown. The returned channel
    /// follows its registration and fencing. Calling it again returns the running lifecycle's
    /// channel (the endpoints of the first call stay in force).
    pub fn start_broker_lifecycle(
        &self,
        endpoints: Vec<BrokerEndpoint>,
        rack: Option<String>,
    ) -> watch::Receiver<BrokerLifecycle> {
        let mut slot = self
            .shared
            .lifecycle
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(rx) = slot.as_ref() {
            return rx.clone();
        }
        let (tx, rx) = watch::channel(BrokerLifecycle {
            registered: false,
            fenced: true,
        });
        let task = tokio::spawn(lifecycle::run(self.shared.clone(), endpoints, rack, tx));
        self.shared.push_task(task);
        *slot = Some(rx.clone());
        rx
    }

    /// Controlled shutdown of the local broker (KRaft's): from now on its heartbeats ask to shut
    /// down (the next one goes out at once), and the active controller moves every leadership
    /// of this broker to another in-sync replica, takes it out of the ISRs and never elects it
    /// again under this incarnation. Resolves `Ok` once the controller answers that the broker
    /// leads nothing and the other brokers have applied the hand-over; the broker is then
    /// fenced, its lifecycle publishes `fenced: true` and stops heartbeating, and the caller
    /// should stop serving and call [`Self::shutdown`]. `Err(Timeout)` when that did not happen
    /// within `timeout` (no controller, a lagging broker): the caller shuts down anyway, and the
    /// controller fences the broker when its session expires. `Ok` at once when no broker
    /// lifecycle runs on this node (nothing to hand over). Calling it again waits for the same
    /// outcome.
    pub async fn controlled_shutdown(&self, timeout: Duration) -> Result<(), ControllerError> {
        let running = self
            .shared
            .lifecycle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some();
        if !running {
            return Ok(());
        }
        let started = tokio::time::Instant::now();
        self.shared.controlled_shutdown.send_if_modified(|s| {
            let first = *s == ControlledShutdown::NotRequested;
            if first {
                *s = ControlledShutdown::Requested;
            }
            first
        });
        tracing::info!(
            node_id = self.shared.cfg.node_id,
            timeout_ms = timeout.as_millis() as u64,
            "controlled shutdown requested"
        );
        let mut rx = self.shared.controlled_shutdown.subscribe();
        let granted = tokio::select! {
            r = tokio::time::timeout(timeout, rx.wait_for(|s| *s == ControlledShutdown::Granted)) => {
                matches!(r, Ok(Ok(_)))
            }
            _ = self.shared.shutdown_signal() => false,
        };
        if granted {
            tracing::info!(
                node_id = self.shared.cfg.node_id,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "controlled shutdown granted"
            );
            Ok(())
        } else {
            tracing::warn!(
                node_id = self.shared.cfg.node_id,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "controlled shutdown not granted in time; shutting down anyway"
            );
            Err(ControllerError::Timeout(format!(
                "the controller did not grant a controlled shutdown within {timeout:?}"
            )))
        }
    }

    /// Waits until this node's Raft stops on a fatal error (its metadata store failed, say)
    /// and answers why; pends forever if it never does, or stops normally. A node whose quorum
    /// member has died must stop rather than go on half alive.
    pub async fn wait_fatal(&self) -> String {
        let mut metrics = self.shared.raft.metrics();
        loop {
            if let Err(fatal) = &metrics.borrow_and_update().running_state {
                return fatal.to_string();
            }
            if metrics.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// openraft's view of this node (term, log, snapshot, replication when leading): for
    /// diagnostics and tests.
    pub fn raft_metrics(&self) -> openraft::RaftMetrics<u64, BasicNode> {
        self.shared.raft.metrics().borrow().clone()
    }

    /// An endpoint for another node's gRPC server at `host:port`, over this node's mutual TLS
    /// when the port runs it (the broker's replica fetcher dials leaders with it).
    pub fn rpc_endpoint(
        &self,
        addr: &str,
    ) -> Result<tonic::transport::Endpoint, tonic::transport::Error> {
        crate::rpc::tls::endpoint(addr, self.shared.tls.as_ref())
    }

    /// Whether the gRPC port runs mutual TLS, so that its callers are authenticated nodes.
    pub fn rpc_tls_enabled(&self) -> bool {
        self.shared.tls.is_some()
    }

    /// This process's incarnation id (random per start).
    pub fn incarnation_id(&self) -> Uuid {
        self.shared.incarnation
    }

    /// The quorum as the active controller sees it (forwarded there when needed).
    pub async fn describe_quorum(&self, timeout: Duration) -> Result<QuorumInfo, ControllerError> {
        match self.shared.call(Call::DescribeQuorum, timeout).await? {
            Reply::Quorum(q) => Ok(q),
            other => Err(mismatch(&other)),
        }
    }

    /// Stops heartbeating, Raft and the gRPC server, and waits until the metadata store is
    /// released, so that the same directory can be opened again.
    pub async fn shutdown(&self) {
        let shared = &self.shared;
        if shared.shutdown.send_replace(true) {
            return; // already shut down
        }
        tracing::info!(
            node_id = shared.cfg.node_id,
            "controller node shutting down"
        );
        if let Err(error) = shared.raft.shutdown().await {
            tracing::warn!(node_id = shared.cfg.node_id, %error, "raft shutdown failed");
        }
        let tasks = std::mem::take(&mut *shared.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for mut task in tasks {
            // The tasks watch the shutdown flag; the server drains its connections first (a
            // request stuck waiting for a quorum would hold that up: it is cut off).
            if tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
            {
                tracing::warn!(
                    node_id = shared.cfg.node_id,
                    "a node task did not stop within 5 s; aborting it"
                );
                task.abort();
            }
        }
        // The state machine's image channel closes when openraft drops the state machine; the
        // store (and its directory lock) goes with it.
        let mut image = shared.image.clone();
        let released = tokio::time::timeout(Duration::from_secs(5), async {
            while image.changed().await.is_ok() {}
        })
        .await;
        if released.is_err() {
            tracing::warn!(
                node_id = shared.cfg.node_id,
                "metadata store still open 5 s after shutdown"
            );
        }
        tracing::info!(node_id = shared.cfg.node_id, "controller node stopped");
    }
}

impl Drop for ControllerNode {
    /// A node dropped without [`ControllerNode::shutdown`] still stops: its tasks see the flag
    /// and Raft is shut down in the background (if a runtime is still there to do it).
    fn drop(&mut self) {
        if self.shared.shutdown.send_replace(true) {
            return;
        }
        tracing::warn!(
            node_id = self.shared.cfg.node_id,
            "controller node dropped without shutdown"
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let raft = self.shared.raft.clone();
            runtime.spawn(async move {
                let _ = raft.shutdown().await;
            });
        }
    }
}

fn mismatch(reply: &Reply) -> ControllerError {
    ControllerError::Internal(format!("mismatched controller reply {reply:?}"))
}

impl Shared {
    fn push_task(&self, task: JoinHandle<()>) {
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(task);
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Resolves once shutdown has begun.
    pub(crate) async fn shutdown_signal(&self) {
        let mut rx = self.shutdown.subscribe();
        // An error means the sender is gone, which is shutdown too.
        let _ = rx.wait_for(|down| *down).await;
    }

    pub(crate) async fn wait_applied(&self, index: u64, timeout: Duration) -> bool {
        let mut image = self.image.clone();
        let reached = tokio::time::timeout(timeout, async move {
            image.wait_for(|a| a.index >= index).await.is_ok()
        })
        .await;
        reached.unwrap_or(false)
    }

    pub(crate) fn applied_index(&self) -> u64 {
        self.image.borrow().index
    }

    /// Whether the local broker was asked to shut down (granted or not).
    pub(crate) fn shutdown_requested(&self) -> bool {
        *self.controlled_shutdown.borrow() != ControlledShutdown::NotRequested
    }

    /// Resolves once the local broker is asked to shut down.
    pub(crate) async fn wait_shutdown_requested(&self) {
        let mut rx = self.controlled_shutdown.subscribe();
        let _ = rx
            .wait_for(|s| *s != ControlledShutdown::NotRequested)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> NodeConfig {
        NodeConfig {
            node_id: 1,
            roles: Roles {
                broker: true,
                controller: true,
            },
            metadata_dir: PathBuf::from("/nonexistent"),
            voters: BTreeMap::from([(1, "127.0.0.1:1".to_string())]),
            rpc_listen: None,
            rpc_advertised: "127.0.0.1:1".into(),
            cluster_id: None,
            managers: ManagerConfig::default(),
            broker_heartbeat_interval: Duration::from_millis(100),
            broker_session_timeout: Duration::from_millis(1500),
            election_timeout: Duration::from_millis(300),
            raft_heartbeat_interval: Duration::from_millis(100),
            snapshot_interval_entries: 1000,
            leader_imbalance_check_interval: None,
            bootstrap_scram: Vec::new(),
            rpc_tls: None,
        }
    }

    #[test]
    fn a_standalone_voter_is_valid() {
        cfg().validate().unwrap();
        let raft = cfg().raft_config().unwrap();
        assert_eq!(raft.election_timeout_min, 300);
        assert_eq!(raft.election_timeout_max, 600);
        assert_eq!(raft.max_in_snapshot_log_to_keep, 100);
    }

    #[test]
    fn voters_are_exactly_the_controllers() {
        let mut c = cfg();
        c.roles.controller = false;
        assert!(matches!(c.validate(), Err(NodeError::Config(_))));

        let mut c = cfg();
        c.node_id = 2;
        c.rpc_listen = Some("127.0.0.1:0".parse().unwrap());
        assert!(matches!(c.validate(), Err(NodeError::Config(_))));
        c.roles.controller = false;
        c.validate().unwrap();
    }

    #[test]
    fn multi_voter_quorums_need_a_listener() {
        let mut c = cfg();
        c.voters.insert(2, "127.0.0.1:2".into());
        assert!(matches!(c.validate(), Err(NodeError::Config(_))));
        c.rpc_listen = Some("127.0.0.1:0".parse().unwrap());
        c.validate().unwrap();
    }

    #[test]
    fn timeouts_are_ordered() {
        let mut c = cfg();
        c.election_timeout = c.raft_heartbeat_interval;
        assert!(matches!(c.validate(), Err(NodeError::Config(_))));
        let mut c = cfg();
        c.broker_session_timeout = c.broker_heartbeat_interval;
        assert!(matches!(c.validate(), Err(NodeError::Config(_))));
        let mut c = cfg();
        c.snapshot_interval_entries = 0;
        assert!(matches!(c.validate(), Err(NodeError::Config(_))));
        let mut c = cfg();
        c.leader_imbalance_check_interval = Some(Duration::ZERO);
        assert!(matches!(c.validate(), Err(NodeError::Config(_))));
        c.leader_imbalance_check_interval = Some(Duration::from_secs(300));
        c.validate().unwrap();
        let mut c = cfg();
        let credential =
            ScramCredential::from_password(ScramMechanism::Sha512, "pw", b"salt", 4096);
        c.bootstrap_scram = vec![("admin".into(), ScramMechanism::Sha512, credential.clone())];
        c.validate().unwrap();
        c.bootstrap_scram = vec![(String::new(), ScramMechanism::Sha512, credential)];
        assert!(matches!(c.validate(), Err(NodeError::Config(_))));
    }

    #[test]
    fn cluster_ids_look_like_kafkas() {
        let a = random_cluster_id();
        let b = random_cluster_id();
        assert_eq!(a.len(), 22);
        assert_ne!(a, b);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }
}
