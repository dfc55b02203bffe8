//! The server runtime: accept loop, per-connection request pipeline, background log tasks,
//! graceful shutdown.
//!
//! Per connection, a reader decodes frames in order and runs each request's handler up to the
//! point where it must wait (an append happens here, in request order, so pipelined produce
//! requests keep their order); the handler returns a future for the rest (a fetch long-poll).
//! A writer awaits those futures strictly in request order, so responses leave in the order
//! requests arrived, while the reader goes on decoding requests behind a long poll.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use runnel_protocol::frame::{self, RequestError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::metadata::MetadataStore;
use crate::replica::{ReplicaManager, TopicPartition};
use crate::{handlers, now_ms, topic_config, Broker, BrokerConfig, BrokerError, SharedBroker};

/// Requests decoded ahead of the response being written, per connection.
const MAX_IN_FLIGHT: usize = 128;

/// A response still being computed, in the connection's response queue. `None` means no
/// response is sent (Produce with acks=0).
pub type PendingResponse = BoxFuture<'static, Option<Bytes>>;

/// A broker bound to its listener, ready to serve.
pub struct BoundServer {
    pub broker: SharedBroker,
    listener: TcpListener,
}

impl BoundServer {
    /// Opens the data directory (recovering logs), binds the listener.
    pub async fn bind(config: BrokerConfig) -> Result<BoundServer, BrokerError> {
        let addr = config.listen.to_string();
        let listener = TcpListener::bind(&addr)
            .await
            .map_err(|cause| BrokerError::Bind {
                addr: addr.clone(),
                cause,
            })?;
        let port = listener.local_addr()?.port();
        let advertised = config.resolve_advertised(port);
        let metadata = MetadataStore::open(&config.data_dir, config.cluster_id.as_deref())?;
        let replicas = ReplicaManager::new(&config.data_dir);
        let topics = metadata.topics();
        replicas.clean_stray_dirs(&|dir: &str| {
            topics.iter().any(|t| {
                (0..t.partitions).any(|p| TopicPartition::new(&t.name, p).dir_name() == dir)
            })
        });
        let started = std::time::Instant::now();
        let now = now_ms();
        for t in &topics {
            let lc = topic_config::log_config(&t.configs, &config.log_defaults);
            for p in 0..t.partitions {
                replicas.open_partition(TopicPartition::new(&t.name, p), t.id, lc.clone(), now)?;
            }
        }
        let offsets_partitions = metadata
            .topic(crate::group::OFFSETS_TOPIC)
            .map(|t| t.partitions)
            .unwrap_or_else(|| crate::group::offsets_topic_partitions(&config));
        let groups = crate::group::GroupCoordinator::new(
            crate::group::group_config(&config),
            offsets_partitions,
        );
        info!(
            node_id = config.node_id,
            cluster_id = %metadata.cluster_id(),
            listen = %listener.local_addr()?,
            advertised = %advertised,
            data_dir = %config.data_dir.display(),
            topics = topics.len(),
            recovery_ms = started.elapsed().as_millis() as u64,
            "runnel broker started"
        );
        let broker = Arc::new(Broker {
            config,
            advertised,
            metadata,
            replicas,
            groups,
        });
        // Groups and committed offsets come back before any group request is served.
        let loaded = broker
            .groups
            .load(&crate::group::BrokerOffsetsLog(&broker), now_ms())?;
        if loaded > 0 {
            info!(
                records = loaded,
                "loaded groups and offsets from __consumer_offsets"
            );
        }
        Ok(BoundServer { broker, listener })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then closes every log cleanly.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), BrokerError> {
        let broker = self.broker;
        let (stop_tx, stop_rx) = watch::channel(false);
        let background = tokio::spawn(background_tasks(broker.clone(), stop_rx.clone()));
        let group_timer = tokio::spawn(crate::group::run_timer(broker.clone(), stop_rx.clone()));
        let accept = {
            let broker = broker.clone();
            let stop_rx = stop_rx.clone();
            async move {
                loop {
                    match self.listener.accept().await {
                        Ok((stream, peer)) => {
                            let _ = stream.set_nodelay(true);
                            tokio::spawn(serve_connection(
                                broker.clone(),
                                stream,
                                peer,
                                stop_rx.clone(),
                            ));
                        }
                        Err(e) => {
                            warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            }
        };
        tokio::select! {
            _ = accept => {}
            _ = shutdown => {}
        }
        info!("shutting down: closing connections and logs");
        let _ = stop_tx.send(true);
        let _ = background.await;
        let _ = group_timer.await;
        // Give in-flight handlers a moment to finish before the logs close.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let b = broker.clone();
        tokio::task::spawn_blocking(move || b.replicas.close_all())
            .await
            .map_err(|e| BrokerError::Io(std::io::Error::other(e)))?;
        info!("shutdown complete");
        Ok(())
    }
}

/// Binds and serves until `shutdown` completes.
pub async fn run(
    config: BrokerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), BrokerError> {
    BoundServer::bind(config).await?.serve(shutdown).await
}

/// Periodic log maintenance: flush/roll checks and retention.
async fn background_tasks(broker: SharedBroker, mut stop: watch::Receiver<bool>) {
    let mut flush = tokio::time::interval(Duration::from_millis(
        broker.config.flush_scheduler_interval_ms,
    ));
    let mut retention = tokio::time::interval(Duration::from_millis(
        broker.config.retention_check_interval_ms,
    ));
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = flush.tick() => {
                let b = broker.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    let now = now_ms();
                    for p in b.replicas.all() {
                        let result = p.with_log(|l| l.tick(now).map(|()| l.take_pending_syncs()));
                        // fsync rolled segments without holding the partition, so appends go on.
                        let result = result.and_then(|files| {
                            files.iter().try_for_each(|f| f.sync_data()).map_err(Into::into)
                        });
                        if let Err(e) = result {
                            warn!(topic = %p.tp.topic, partition = p.tp.partition, error = %e, "log flush/roll failed");
                        }
                    }
                }).await;
            }
            _ = retention.tick() => {
                let b = broker.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    let now = now_ms();
                    for p in b.replicas.all() {
                        match p.with_log(|l| l.enforce_retention(now)) {
                            Ok(0) => {}
                            Ok(n) => info!(topic = %p.tp.topic, partition = p.tp.partition, segments = n, "retention deleted segments"),
                            Err(e) => warn!(topic = %p.tp.topic, partition = p.tp.partition, error = %e, "retention failed"),
                        }
                    }
                }).await;
            }
        }
    }
}

async fn serve_connection(
    broker: SharedBroker,
    stream: TcpStream,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    debug!(%peer, "connection opened");
    metrics::counter!("runnel_connections_accepted_total").increment(1);
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<PendingResponse>(MAX_IN_FLIGHT);
    let writer = tokio::spawn(async move {
        while let Some(pending) = rx.recv().await {
            if let Some(bytes) = pending.await {
                if let Err(e) = wr.write_all(&bytes).await {
                    debug!(%peer, error = %e, "write failed; closing connection");
                    return;
                }
            }
        }
        let _ = wr.shutdown().await;
    });

    let max = broker.config.socket_request_max_bytes;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let reason: String = 'conn: loop {
        loop {
            let frame = match frame::split_frame(&mut buf, max) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => break 'conn e.to_string(),
            };
            match handlers::handle(&broker, frame) {
                Ok(Some(pending)) => {
                    if tx.send(pending).await.is_err() {
                        break 'conn "writer closed".into();
                    }
                }
                Ok(None) => {}
                Err(e) => break 'conn close_reason(&e),
            }
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
        tokio::select! {
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) => break 'conn String::new(),
                Ok(_) => {}
                Err(e) => break 'conn format!("read error: {e}"),
            },
            _ = stop.changed() => break 'conn "broker shutting down".into(),
        }
    };
    if reason.is_empty() {
        debug!(%peer, "connection closed by client");
    } else {
        warn!(%peer, reason = %reason, "closing connection");
        metrics::counter!("runnel_connections_closed_on_error_total").increment(1);
    }
    // Responses already queued are still delivered, in order.
    drop(tx);
    let _ = writer.await;
}

fn close_reason(e: &RequestError) -> String {
    e.to_string()
}

/// Helper for handlers: a response that is already complete.
pub fn ready(bytes: Option<Bytes>) -> PendingResponse {
    Box::pin(async move { bytes })
}
