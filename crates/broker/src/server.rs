//! The server runtime: accept loop, per-connection request pipeline, background log tasks,
//! graceful shutdown.
//!
//! Per connection, a reader decodes frames in order and runs each request's handler up to the
//! point where it must wait (an append happens here, in request order, so pipelined produce
//! requests keep their order); the handler returns a future for the rest (a fetch long-poll).
//! A handler that must append in its future (after asking a transaction coordinator, or once
//! this node has taken up a leadership) holds the reader until it has appended.
//! A writer awaits those futures strictly in request order, so responses leave in the order
//! requests arrived, while the reader goes on decoding requests behind a long poll.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use runnel_protocol::frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use runnel_controller::records::BrokerEndpoint;
use runnel_controller::ControllerNode;

use crate::auth::sasl::SaslListener;
use crate::auth::tls::ListenerTls;
use crate::broker::{Broker, SharedBroker};
use crate::clock::now_ms;
use crate::config::{BrokerConfig, ConfigError};
use crate::connection::ClientConnection;
use crate::connection_limits::{ConnectionQuotas, ConnectionSlot, ResponseBudget, ResponsePermit};
use crate::context::{ConnectionContext, SecurityProtocol};
use crate::handlers::{self, PendingResponse};
use crate::topic_config::TopicConfigTable;

/// Requests decoded ahead of the response being written, per connection (their bytes are
/// bounded separately, by the connection's [`ResponseBudget`]).
const MAX_IN_FLIGHT: usize = 128;

/// Longest pause between two idleness checks of a connection.
const IDLE_CHECK_MAX: Duration = Duration::from_secs(10);

/// A connection's activity, shared by its reader and writer.
struct Activity {
    base: std::time::Instant,
    /// Milliseconds after `base` of the last complete request or written response.
    last_ms: AtomicU64,
    /// Responses queued and not yet written.
    queued: AtomicUsize,
    /// Milliseconds after `base` until which the client is throttled and not read.
    muted_until_ms: AtomicU64,
    /// Woken when a response has been written.
    written: tokio::sync::Notify,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            base: std::time::Instant::now(),
            last_ms: AtomicU64::new(0),
            queued: AtomicUsize::new(0),
            muted_until_ms: AtomicU64::new(0),
            written: tokio::sync::Notify::new(),
        }
    }
}

impl Activity {
    fn touch(&self) {
        let now = self.base.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(now, Ordering::Relaxed);
    }

    fn request_started(&self) {
        self.touch();
    }

    fn response_queued(&self) {
        self.queued.fetch_add(1, Ordering::Relaxed);
    }

    fn response_done(&self) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
        self.touch();
        self.written.notify_waiters();
    }

    /// Waits until every queued response has been written, then for the throttle those
    /// responses set.
    async fn written_and_unmuted(&self) {
        loop {
            let written = self.written.notified();
            if self.queued.load(Ordering::Relaxed) == 0 {
                break;
            }
            written.await;
        }
        if let Some(d) = self.muted_for() {
            tokio::time::sleep(d).await;
        }
    }

    /// Stops reading the client for `d` from now (a quota throttle).
    fn mute_for(&self, d: Duration) {
        let until = (self.base.elapsed() + d).as_millis() as u64;
        self.muted_until_ms.fetch_max(until, Ordering::Relaxed);
    }

    /// How long the client stays muted.
    fn muted_for(&self) -> Option<Duration> {
        let now = self.base.elapsed().as_millis() as u64;
        let until = self.muted_until_ms.load(Ordering::Relaxed);
        (until > now).then(|| Duration::from_millis(until - now))
    }

    /// No response pending and nothing complete for `idle`.
    fn idle_for(&self, idle: Duration) -> bool {
        let now = self.base.elapsed().as_millis() as u64;
        self.queued.load(Ordering::Relaxed) == 0
            && now.saturating_sub(self.last_ms.load(Ordering::Relaxed)) >= idle.as_millis() as u64
    }
}

/// What bounds one connection: its place among `max.connections`, its response budget, and
/// `connections.max.idle.ms`.
struct ConnectionBounds {
    _slot: ConnectionSlot,
    responses: ResponseBudget,
    idle: Duration,
}

/// A bound client listener with its security.
struct BoundListener {
    name: Arc<str>,
    socket: TcpListener,
    protocol: SecurityProtocol,
    /// SSL and SASL_SSL listeners.
    tls: Option<Arc<ListenerTls>>,
    /// SASL_PLAINTEXT and SASL_SSL listeners.
    sasl: Option<Arc<SaslListener>>,
}

/// How long a client has to complete its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a broker could not start or stopped with an error.
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

/// A broker bound to its listener, ready to serve.
pub struct BoundServer {
    pub broker: SharedBroker,
    /// The client listeners, in the order of `listeners` (the first is the primary).
    listeners: Vec<BoundListener>,
    stop_tx: watch::Sender<bool>,
    reconciler: tokio::task::JoinHandle<()>,
    /// The transaction coordinators' marker jobs, sent by [`crate::coordinators::markers`].
    marker_jobs:
        tokio::sync::mpsc::UnboundedReceiver<(i32, runnel_coordinator::txn::shard::TxnAction)>,
}

/// How long a standalone node waits for its own quorum to elect it and unfence its broker.
const STANDALONE_READY_TIMEOUT: Duration = Duration::from_secs(60);

impl BoundServer {
    /// Starts the node's member of the metadata quorum, binds the Kafka listener, registers
    /// the broker, and (once it has caught up with the metadata log) opens the partitions the
    /// image assigns here and loads the groups of the `__consumer_offsets` partitions it leads.
    ///
    /// A standalone node (no voters) waits until its quorum of one has elected it and unfenced
    /// its broker, so it is fully ready when this returns. A node of a multi-node quorum waits
    /// at most `broker.session.timeout.ms` for that: its peers may not be up yet, and the
    /// listener must not wait for them; it catches up in the background.
    pub async fn bind(config: BrokerConfig) -> Result<BoundServer, BrokerError> {
        let started = std::time::Instant::now();
        raise_open_file_limit(&config);
        let mut listeners = Vec::with_capacity(config.listeners.len());
        let mut endpoints = Vec::with_capacity(config.listeners.len());
        for l in &config.listeners {
            // Security first: a listener whose TLS or SASL settings are wrong refuses to
            // start rather than serve in the clear.
            let tls = if l.protocol.uses_tls() {
                Some(Arc::new(ListenerTls::new(l).map_err(BrokerError::Startup)?))
            } else {
                None
            };
            let sasl = if l.protocol.uses_sasl() {
                Some(Arc::new(
                    SaslListener::new(l).map_err(BrokerError::Startup)?,
                ))
            } else {
                None
            };
            let addr = l.listen.to_string();
            let listener = TcpListener::bind(&addr)
                .await
                .map_err(|cause| BrokerError::Bind {
                    addr: addr.clone(),
                    cause,
                })?;
            let port = listener.local_addr()?.port();
            let advertised =
                crate::config::resolve_listener_advertised(&l.listen, l.advertised.as_ref(), port);
            info!(
                listener = %l.name,
                protocol = %l.protocol,
                bound = %listener.local_addr()?,
                %advertised,
                sasl_mechanisms = ?sasl.as_ref().map(|s| s.mechanism_names()),
                "client listener"
            );
            endpoints.push(BrokerEndpoint {
                name: l.name.clone(),
                host: advertised.host.clone(),
                port: advertised.port,
            });
            listeners.push(BoundListener {
                name: Arc::<str>::from(l.name.as_str()),
                socket: listener,
                protocol: l.protocol,
                tls,
                sasl,
            });
        }
        let advertised = crate::config::HostPort {
            host: endpoints[0].host.clone(),
            port: endpoints[0].port,
        };
        std::fs::create_dir_all(&config.data_dir)?;
        refuse_pre_quorum_data_dir(&config)?;
        crate::meta_properties::check_at_startup(&config).map_err(|reason| {
            tracing::error!(node_id = config.node_id, data_dir = %config.data_dir.display(), reason = %reason, "refusing to start");
            BrokerError::Startup(reason)
        })?;
        let node_config = config.node_config();
        info!(
            node_id = config.node_id,
            voters = ?node_config.voters,
            rpc_listen = ?node_config.rpc_listen,
            rpc_advertised = %node_config.rpc_advertised,
            metadata_dir = %node_config.metadata_dir.display(),
            "starting the metadata quorum member"
        );
        // The replica fetch service shares the metadata quorum's gRPC server; it answers
        // UNAVAILABLE until the broker below exists.
        let cell: crate::replicate::service::ReplicationCell = Arc::default();
        let service = crate::replicate::service::ReplicationService::server(cell.clone());
        let controller = ControllerNode::start_with_services(
            node_config,
            Arc::new(TopicConfigTable),
            Some(Box::new(move |routes| routes.add_service(service))),
        )
        .await?;
        let lifecycle = controller.start_broker_lifecycle(endpoints, config.rack.clone());
        let groups = crate::coordinators::group::GroupCoordinator::new(
            config.group.clone(),
            config.offsets_topic_num_partitions,
        );
        groups.set_settings(config.offsets);
        let (txns, marker_jobs) = crate::coordinators::txn::TxnService::new(
            config.transactions,
            config.offsets.commit_timeout_ms,
        );
        let clustered = config.is_clustered();
        let ready_timeout = if clustered {
            Duration::from_millis(config.broker_session_timeout_ms)
        } else {
            STANDALONE_READY_TIMEOUT
        };
        let broker = Arc::new(Broker::new(
            config, advertised, controller, lifecycle, groups, txns,
        ));
        let _ = cell.set(Arc::downgrade(broker.replication()));
        let caught_up = broker.metadata().wait_caught_up(ready_timeout).await;
        if caught_up {
            let pass = crate::reconcile::reconcile_at_startup(&broker).await;
            if pass == crate::reconcile::Pass::Stopped {
                let reason = broker.fence().fatal().unwrap_or_default();
                broker.controller().node().shutdown().await;
                return Err(BrokerError::Startup(reason));
            }
        } else if clustered {
            warn!(
                waited_ms = ready_timeout.as_millis() as u64,
                "not yet registered and unfenced (is a quorum of voters up?); serving, and hosting partitions once caught up"
            );
        } else {
            broker.controller().node().shutdown().await;
            return Err(BrokerError::Startup(format!(
                "the standalone metadata quorum did not elect this node and unfence its broker within {}s",
                ready_timeout.as_secs()
            )));
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        let reconciler = tokio::spawn(crate::reconcile::run(broker.clone(), caught_up, stop_rx));
        let image = broker.image();
        info!(
            node_id = broker.config().node_id,
            cluster_id = %handlers::cluster_id(&image.image),
            listen = %listeners[0].socket.local_addr()?,
            advertised = %broker.advertised(),
            data_dir = %broker.config().data_dir.display(),
            metadata_index = image.index,
            partitions = broker.partitions().all().len(),
            ready = caught_up,
            startup_ms = started.elapsed().as_millis() as u64,
            "runnel broker started"
        );
        Ok(BoundServer {
            broker,
            listeners,
            stop_tx,
            reconciler,
            marker_jobs,
        })
    }

    /// The bound address of the first client listener.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listeners[0].socket.local_addr()
    }

    /// The bound address of every client listener, by name.
    pub fn listener_addrs(&self) -> std::io::Result<Vec<(String, SocketAddr)>> {
        self.listeners
            .iter()
            .map(|l| Ok((l.name.to_string(), l.socket.local_addr()?)))
            .collect()
    }

    /// Serves until `shutdown` completes, then closes every log cleanly and stops the quorum
    /// member.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), BrokerError> {
        let BoundServer {
            broker,
            listeners,
            stop_tx,
            reconciler,
            marker_jobs,
        } = self;
        let stop_rx = stop_tx.subscribe();
        let background = tokio::spawn(background_tasks(broker.clone(), stop_rx.clone()));
        let coordinator_timers = tokio::spawn(crate::coordinators::run_timers(
            broker.coordinators().clone(),
            stop_rx.clone(),
        ));
        let marker_sender = tokio::spawn(crate::coordinators::markers::run_sender(
            crate::coordinators::markers::MarkerContext {
                node_id: broker.config().node_id,
                txns: broker.txns().clone(),
                partitions: broker.partitions().clone(),
                metadata: broker.metadata().clone(),
                hook: broker.replication().marker_hook.get().cloned(),
                channels: broker.node_channels().clone(),
            },
            marker_jobs,
            stop_rx.clone(),
        ));
        let isr_ticker = tokio::spawn(broker.replication().clone().run_isr_ticker(stop_rx.clone()));
        let hw_checkpoint = tokio::spawn(
            broker
                .replication()
                .clone()
                .run_hw_checkpoint(stop_rx.clone()),
        );
        let log_cleaner = tokio::spawn(crate::cleaner::run(
            broker.partitions().clone(),
            broker.config().cleaner.clone(),
            stop_rx.clone(),
        ));
        let tls_reloader = tokio::spawn(crate::auth::tls::run_reloader(
            listeners.iter().filter_map(|l| l.tls.clone()).collect(),
            Duration::from_millis(broker.config().ssl_reload_interval_ms),
            stop_rx.clone(),
        ));
        let quotas = ConnectionQuotas::new(&broker.config().limits);
        let idle = Duration::from_millis(broker.config().limits.connections_max_idle_ms);
        let accept = {
            let loops = listeners.into_iter().map(|l| {
                let broker = broker.clone();
                let stop_rx = stop_rx.clone();
                let quotas = quotas.clone();
                async move {
                    loop {
                        // At max.connections, wait here: new connections stay in the listen
                        // queue until one closes.
                        let room = quotas.wait_for_room().await;
                        match l.socket.accept().await {
                            Ok((stream, peer)) => {
                                let Some(slot) = quotas.admit(peer.ip(), room) else {
                                    drop(stream);
                                    continue;
                                };
                                let _ = stream.set_nodelay(true);
                                let bounds = ConnectionBounds {
                                    _slot: slot,
                                    responses: quotas.response_budget(),
                                    idle,
                                };
                                tokio::spawn(accept_connection(
                                    broker.clone(),
                                    stream,
                                    peer,
                                    l.name.clone(),
                                    l.protocol,
                                    l.tls.clone(),
                                    l.sasl.clone(),
                                    bounds,
                                    stop_rx.clone(),
                                ));
                            }
                            Err(e) => {
                                warn!(listener = %l.name, error = %e, "accept failed");
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                    }
                }
            });
            async move {
                futures::future::join_all(loops).await;
            }
        };
        // A failed log directory stops the broker: it has only one.
        let mut log_dir = broker.partitions().health().watch();
        let fence = broker.fence().clone();
        let log_dir_watch = tokio::spawn(async move {
            if let Ok(reason) = log_dir.wait_for(|r| r.is_some()).await {
                let reason = reason.clone().unwrap_or_default();
                fence.fail_storage(reason);
            }
        });
        // So does the failure of this node's metadata quorum member (its store failed): a
        // broker whose controller has died must not go on half alive.
        let quorum = broker.controller().node().clone();
        let fence = broker.fence().clone();
        let quorum_watch = tokio::spawn(async move {
            let reason = quorum.wait_fatal().await;
            fence.fail(format!(
                "the metadata quorum stopped on this node: {reason}"
            ));
        });
        let mut fatal = broker.fence().fatal_watch();
        let failed = async move {
            match fatal.wait_for(|f| f.is_some()).await {
                Ok(reason) => reason.clone().unwrap_or_default(),
                Err(_) => std::future::pending().await,
            }
        };
        let mut failure = None;
        tokio::pin!(accept);
        let mut shut_down = false;
        tokio::select! {
            _ = &mut accept => {}
            _ = shutdown => shut_down = true,
            reason = failed => failure = Some(reason),
        }
        // After a log-directory failure the controller is still asked to move this broker's
        // leaderships at once (nothing here is served meanwhile), rather than waiting for the
        // broker's session to time out.
        let storage_failed = failure.is_some() && broker.fence().is_storage_failure();
        if shut_down || storage_failed {
            // Controlled shutdown: keep serving while the controller moves this broker's
            // leaderships away, so clients follow them without failed requests.
            let cfg = &broker.config().replication;
            if broker.config().is_clustered() && cfg.controlled_shutdown_enable {
                let timeout = Duration::from_millis(cfg.controlled_shutdown_timeout_ms);
                info!(
                    timeout_ms = cfg.controlled_shutdown_timeout_ms,
                    "controlled shutdown: asking the controller to move leaderships away"
                );
                let started = std::time::Instant::now();
                tokio::select! {
                    _ = &mut accept => {}
                    r = broker.controller().node().controlled_shutdown(timeout) => match r {
                        Ok(()) => info!(
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            "controlled shutdown: no partition is led here any more"
                        ),
                        Err(error) => warn!(
                            %error,
                            "controlled shutdown did not complete; shutting down anyway"
                        ),
                    },
                }
            }
        }
        if let Some(reason) = &failure {
            tracing::error!(reason = %reason, "broker failed; shutting down without touching any partition");
        }
        log_dir_watch.abort();
        quorum_watch.abort();
        info!("shutting down: closing connections and logs");
        let _ = stop_tx.send(true);
        let _ = background.await;
        let _ = coordinator_timers.await;
        let _ = marker_sender.await;
        let _ = isr_ticker.await;
        let _ = hw_checkpoint.await;
        let _ = log_cleaner.await;
        let _ = tls_reloader.await;
        let _ = reconciler.await;
        broker.replication().fetchers.stop_all();
        // Give in-flight handlers a moment to finish before the logs close.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let b = broker.clone();
        tokio::task::spawn_blocking(move || b.partitions().close_all())
            .await
            .map_err(|e| BrokerError::Io(std::io::Error::other(e)))?;
        broker.controller().node().shutdown().await;
        info!("shutdown complete");
        match failure {
            Some(reason) => Err(BrokerError::Startup(reason)),
            None => Ok(()),
        }
    }

    /// Stops without serving (tests that only use [`Self::broker`]).
    pub async fn close(self) {
        let _ = self.stop_tx.send(true);
        let _ = self.reconciler.await;
        self.broker.replication().fetchers.stop_all();
        let b = self.broker.clone();
        let _ = tokio::task::spawn_blocking(move || b.partitions().close_all()).await;
        self.broker.controller().node().shutdown().await;
    }
}

/// The metadata file of single-node Runnel before the controller quorum.
const LEGACY_METADATA_FILE: &str = "runnel-metadata.json";

/// A data directory written before the controller quorum keeps its topics in a JSON file the
/// quorum does not read: starting on it would treat every partition directory as a stray and
/// delete it. Refuse instead; there is no migration.
fn refuse_pre_quorum_data_dir(config: &BrokerConfig) -> Result<(), BrokerError> {
    let legacy = config.data_dir.join(LEGACY_METADATA_FILE);
    if legacy.exists() && !config.metadata_dir().exists() {
        return Err(BrokerError::Startup(format!(
            "{} was written by a single-node Runnel without a metadata quorum ({} exists);              this version cannot migrate it: start with an empty data directory",
            config.data_dir.display(),
            legacy.display()
        )));
    }
    Ok(())
}

/// Open files a broker wants at least: connections, segment files and indexes of its partitions,
/// and the metadata store. Below it, a warning says how to raise the limit.
const WANTED_OPEN_FILES: u64 = 65_536;

/// Raises the soft open-file limit to the hard limit (as Kafka's start scripts advise), and warns
/// when even that is low for the connections and log segments a broker keeps open.
fn raise_open_file_limit(config: &BrokerConfig) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            let wanted = WANTED_OPEN_FILES.min(config.limits.max_connections as u64 + 1024);
            if limit < wanted {
                warn!(
                    open_file_limit = limit,
                    wanted,
                    "the open-file limit is low for a broker's connections and log segments; raise it (ulimit -n, LimitNOFILE= in systemd, nofile in Docker)"
                );
            } else {
                debug!(open_file_limit = limit, "open-file limit");
            }
        }
        Err(error) => warn!(%error, "cannot read or raise the open-file limit"),
    }
}

/// Binds and serves until `shutdown` completes.
pub async fn run(
    config: BrokerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), BrokerError> {
    BoundServer::bind(config).await?.serve(shutdown).await
}

/// How often memory freed after a burst is given back to the operating system.
const MEMORY_RELEASE_INTERVAL: Duration = Duration::from_secs(3);

/// Periodic log maintenance (flush/roll checks and retention), and giving freed memory back.
async fn background_tasks(broker: SharedBroker, mut stop: watch::Receiver<bool>) {
    let mut flush = tokio::time::interval(Duration::from_millis(
        broker.config().flush_scheduler_interval_ms,
    ));
    let mut retention = tokio::time::interval(Duration::from_millis(
        broker.config().retention_check_interval_ms,
    ));
    let mut trim = tokio::time::interval(MEMORY_RELEASE_INTERVAL);
    trim.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = trim.tick() => {
                let _ = tokio::task::spawn_blocking(runnel_protocol::alloc_guard::release_free_memory).await;
            }
            _ = flush.tick() => {
                let b = broker.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    let now = now_ms();
                    for p in b.partitions().all() {
                        if p.health().is_offline() {
                            break;
                        }
                        let result = p.with_log(|l| l.tick(now).map(|()| l.take_pending_syncs_through()));
                        // fsync rolled segments without holding the partition, so appends go on;
                        // then everything below the last roll is durable.
                        let result = result.and_then(|(files, through)| {
                            files.iter().try_for_each(|f| f.sync_data())?;
                            if !files.is_empty() {
                                p.with_log(|l| l.mark_flushed(through));
                            }
                            Ok(())
                        });
                        if let Err(e) = result {
                            warn!(topic = %p.tp.topic, partition = p.tp.partition, error = %e, "log flush/roll failed");
                            // A failed fsync is never retried: the pages it should have written
                            // may be gone, so the directory goes offline.
                            let _ = p.health().check("flushing a partition log", Err::<(), _>(e));
                        }
                    }
                }).await;
            }
            _ = retention.tick() => {
                let b = broker.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    let now = now_ms();
                    for p in b.partitions().all() {
                        if p.health().is_offline() {
                            break;
                        }
                        match p.with_log(|l| l.enforce_retention(now)) {
                            Ok(0) => {}
                            Ok(n) => info!(topic = %p.tp.topic, partition = p.tp.partition, segments = n, "retention deleted segments"),
                            Err(e) => {
                                warn!(topic = %p.tp.topic, partition = p.tp.partition, error = %e, "retention failed");
                                let _ = p.health().check("deleting segments", Err::<(), _>(e));
                            }
                        }
                    }
                }).await;
            }
        }
    }
}

/// Sets up one accepted connection: the TLS handshake on TLS listeners (bounded in time; a
/// client certificate names the principal), then [`serve_connection`].
#[allow(clippy::too_many_arguments)]
async fn accept_connection(
    broker: SharedBroker,
    stream: TcpStream,
    peer: SocketAddr,
    listener: Arc<str>,
    protocol: SecurityProtocol,
    tls: Option<Arc<ListenerTls>>,
    sasl: Option<Arc<SaslListener>>,
    bounds: ConnectionBounds,
    stop: watch::Receiver<bool>,
) {
    metrics::counter!("runnel_connections_accepted_total").increment(1);
    let mut ctx = ConnectionContext::new(listener.clone(), protocol, peer);
    let Some(tls) = tls else {
        debug!(%peer, %listener, %protocol, "connection opened");
        let conn = ClientConnection::new(ctx, sasl);
        return serve_connection(broker, stream, conn, bounds, stop).await;
    };
    let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.acceptor().accept(stream));
    let stream = match handshake.await {
        Ok(Ok(s)) => s,
        Ok(Err(error)) => {
            metrics::counter!("runnel_tls_handshake_failures_total").increment(1);
            info!(%peer, %listener, %error, "TLS handshake failed");
            return;
        }
        Err(_) => {
            metrics::counter!("runnel_tls_handshake_failures_total").increment(1);
            info!(%peer, %listener, timeout_s = TLS_HANDSHAKE_TIMEOUT.as_secs(), "TLS handshake timed out");
            return;
        }
    };
    if !protocol.uses_sasl() {
        match tls.principal(stream.get_ref().1.peer_certificates()) {
            Ok(p) => ctx.principal = Arc::new(p),
            Err(error) => {
                metrics::counter!("runnel_failed_authentication_total").increment(1);
                info!(%peer, %listener, %error, "client certificate refused");
                return;
            }
        }
    }
    debug!(%peer, %listener, %protocol, principal = %ctx.principal, "TLS connection opened");
    let conn = ClientConnection::new(ctx, sasl);
    serve_connection(broker, stream, conn, bounds, stop).await
}

/// Serves one connection: the reader decodes frames and queues their responses in order, the
/// writer sends them. The reader stops reading while the connection's computed responses
/// exceed its budget (a client that does not read makes the broker stop reading it), and the
/// connection is closed after `connections.max.idle.ms` without a complete request or a
/// response.
async fn serve_connection<S>(
    broker: SharedBroker,
    stream: S,
    mut conn: ClientConnection,
    bounds: ConnectionBounds,
    mut stop: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let peer = conn
        .context()
        .peer
        .map(|p| p.to_string())
        .unwrap_or_default();
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<(PendingResponse, ResponsePermit)>(MAX_IN_FLIGHT);
    // Responses queued and not yet written, and when the writer last finished one.
    let activity = Arc::new(Activity::default());
    let writer_activity = activity.clone();
    let writer_peer = peer.clone();
    let writer = tokio::spawn(async move {
        let peer = writer_peer;
        while let Some((pending, permit)) = rx.recv().await {
            let (bytes, throttle) = pending.resolve().await;
            if throttle.ms > 0 {
                // A throttled client is not read for the throttle time (KIP-219); one that
                // does not back off by itself also gets its response only after it.
                let d = Duration::from_millis(throttle.ms);
                writer_activity.mute_for(d);
                if !throttle.client_backs_off {
                    tokio::time::sleep(d).await;
                }
            }
            if let Some(bytes) = bytes {
                if let Err(e) = crate::frame_writer::write_frame(&mut wr, &bytes).await {
                    debug!(%peer, error = %e, "write failed; closing connection");
                    return;
                }
            }
            drop(permit);
            writer_activity.response_done();
        }
        let _ = wr.shutdown().await;
    });

    let max = broker.config().socket_request_max_bytes;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    // One timer per connection (not one per read) checks for idleness.
    let check_every = bounds.idle.min(IDLE_CHECK_MAX);
    let mut idle_check =
        tokio::time::interval_at(tokio::time::Instant::now() + check_every, check_every);
    idle_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let reason: String = 'conn: loop {
        if let Some(d) = activity.muted_for() {
            tokio::select! {
                _ = tokio::time::sleep(d) => {}
                _ = stop.changed() => break 'conn "broker shutting down".into(),
            }
            continue;
        }
        loop {
            let frame = match frame::split_frame(&mut buf, conn.max_frame(max)) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => break 'conn e.to_string(),
            };
            activity.request_started();
            match conn.on_frame(&broker, frame) {
                Ok(Some(mut pending)) => {
                    let barrier = pending.read_barrier.take();
                    // Encoded bytes count against the budget until they are written.
                    let permit = tokio::select! {
                        p = bounds.responses.reserve(pending.held_bytes()) => p,
                        _ = stop.changed() => break 'conn "broker shutting down".into(),
                    };
                    let over_quota = pending.over_quota;
                    activity.response_queued();
                    if tx.send((pending, permit)).await.is_err() {
                        break 'conn "writer closed".into();
                    }
                    if let Some(barrier) = barrier {
                        // The request appends in its future: the next one waits for that.
                        tokio::select! {
                            _ = barrier => {}
                            _ = stop.changed() => break 'conn "broker shutting down".into(),
                        }
                    }
                    if over_quota {
                        // A client over its quota is served one request at a time: the next
                        // one, even if already received, waits for this response and its
                        // throttle.
                        tokio::select! {
                            _ = activity.written_and_unmuted() => {}
                            _ = stop.changed() => break 'conn "broker shutting down".into(),
                        }
                    }
                }
                Ok(None) => {}
                Err(reason) => break 'conn reason,
            }
            if let Some(reason) = conn.closing() {
                break 'conn reason.to_string();
            }
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
        tokio::select! {
            _ = idle_check.tick() => {
                if activity.idle_for(bounds.idle) {
                    metrics::counter!("runnel_connections_idle_closed_total").increment(1);
                    debug!(%peer, idle_ms = bounds.idle.as_millis() as u64, "closing idle connection");
                    break 'conn String::new();
                }
            }
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) => break 'conn String::new(),
                Ok(_) => {}
                // A TLS client that closes its socket without close_notify (most do).
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break 'conn String::new(),
                Err(e) => break 'conn format!("read error: {e}"),
            },
            _ = stop.changed() => break 'conn "broker shutting down".into(),
        }
    };
    if reason.is_empty() {
        debug!(%peer, "connection closed");
    } else {
        warn!(%peer, reason = %reason, "closing connection");
        metrics::counter!("runnel_connections_closed_on_error_total").increment(1);
    }
    // Responses already queued are still delivered, in order.
    drop(tx);
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_data_dir_from_before_the_quorum_is_refused_not_wiped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LEGACY_METADATA_FILE), b"{}").unwrap();
        std::fs::create_dir_all(dir.path().join("t-0")).unwrap();
        std::fs::write(dir.path().join("t-0/partition.metadata"), b"version: 0\n").unwrap();
        let props: Vec<(String, String)> = [
            ("log.dirs", dir.path().to_str().unwrap()),
            ("listeners", "PLAINTEXT://127.0.0.1:0"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let err = BoundServer::bind(BrokerConfig::from_properties(&props).unwrap())
            .await
            .err()
            .expect("must refuse");
        assert!(err.to_string().contains("cannot migrate"), "{err}");
        assert!(dir.path().join("t-0/partition.metadata").exists());
    }

    /// Sends one Metadata v12 request over `addr` and returns the brokers' (host, port).
    async fn metadata_brokers(addr: SocketAddr) -> Vec<(String, i32)> {
        use kafka_protocol::messages::{
            ApiKey, MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader,
        };
        use kafka_protocol::protocol::{Decodable, Encodable};
        let version = 12;
        let mut body = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(ApiKey::Metadata as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .encode(&mut body, ApiKey::Metadata.request_header_version(version))
            .unwrap();
        MetadataRequest::default()
            .encode(&mut body, version)
            .unwrap();
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_u32(body.len() as u32).await.unwrap();
        stream.write_all(&body).await.unwrap();
        let len = stream.read_u32().await.unwrap() as usize;
        let mut buf = vec![0u8; len];
        stream.read_exact(&mut buf).await.unwrap();
        let mut buf = bytes::Bytes::from(buf);
        let header =
            ResponseHeader::decode(&mut buf, ApiKey::Metadata.response_header_version(version))
                .unwrap();
        assert_eq!(header.correlation_id, 7);
        let resp = MetadataResponse::decode(&mut buf, version).unwrap();
        resp.brokers
            .iter()
            .map(|b| (b.host.to_string(), b.port))
            .collect()
    }

    /// Two named listeners: both are bound and registered, and a client is given the
    /// advertised address of the listener it connected through (the docker-compose layout:
    /// an internal name for the compose network, localhost for the host).
    #[tokio::test]
    async fn each_listener_advertises_its_own_address() {
        let dir = tempfile::tempdir().unwrap();
        let props: Vec<(String, String)> = [
            ("log.dirs", dir.path().to_str().unwrap()),
            ("listeners", "INTERNAL://127.0.0.1:0,EXTERNAL://127.0.0.1:0"),
            (
                "advertised.listeners",
                "INTERNAL://runnel1:19092,EXTERNAL://localhost:9092",
            ),
            (
                "listener.security.protocol.map",
                "INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT",
            ),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let server = BoundServer::bind(BrokerConfig::from_properties(&props).unwrap())
            .await
            .unwrap();
        let addrs = server.listener_addrs().unwrap();
        assert_eq!(
            addrs.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["INTERNAL", "EXTERNAL"]
        );
        assert_eq!(server.local_addr().unwrap(), addrs[0].1);
        assert_eq!(server.broker.advertised().to_string(), "runnel1:19092");
        let registered = server
            .broker
            .image()
            .image
            .broker(1)
            .unwrap()
            .endpoints
            .clone();
        assert_eq!(registered.len(), 2);
        // `serve` is not Send: drive it and the client side together on this task.
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let client = async move {
            let seen = (
                metadata_brokers(addrs[0].1).await,
                metadata_brokers(addrs[1].1).await,
            );
            let _ = stop_tx.send(());
            seen
        };
        let (served, (internal, external)) = tokio::join!(
            server.serve(async move {
                let _ = stop_rx.await;
            }),
            client
        );
        served.unwrap();
        assert_eq!(internal, [("runnel1".to_string(), 19092)]);
        assert_eq!(external, [("localhost".to_string(), 9092)]);
    }
}
