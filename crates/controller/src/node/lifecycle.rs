//! The local broker's lifecycle: register with the active controller (retrying until it
//! works), then heartbeat every `broker.heartbeat.interval.ms`, re-registering when the
//! controller no longer knows this incarnation. Publishes [`BrokerLifecycle`].

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{BrokerLifecycle, Call, Reply, Shared};
use crate::api::{BrokerHeartbeatRequest, ControllerError, RegisterBrokerRequest};
use crate::records::BrokerEndpoint;

pub(crate) async fn run(
    shared: Arc<Shared>,
    endpoints: Vec<BrokerEndpoint>,
    rack: Option<String>,
    tx: watch::Sender<BrokerLifecycle>,
) {
    let cfg = &shared.cfg;
    let broker_id = cfg.node_id;
    let registration = RegisterBrokerRequest {
        broker_id,
        incarnation_id: shared.incarnation,
        endpoints,
        rack,
        rpc_address: cfg.rpc_advertised.clone(),
    };
    let interval = cfg.broker_heartbeat_interval;
    // Long enough to ride out an election; a heartbeat that takes longer is retried anyway.
    let call_timeout = interval.max(cfg.election_timeout * 3);
    tokio::select! {
        _ = shared.shutdown_signal() => {}
        _ = async {
            loop {
                let index = register(&shared, &registration, call_timeout).await;
                tx.send_replace(BrokerLifecycle { registered: true, fenced: true });
                // Heartbeat as soon as this node has applied its own registration: that is what
                // the controller waits for before unfencing.
                shared.wait_applied(index, interval).await;
                heartbeat_until_stale(&shared, &registration, &tx, call_timeout).await;
                tx.send_replace(BrokerLifecycle { registered: false, fenced: true });
            }
        } => {}
    }
    tracing::info!(broker_id, "broker lifecycle stopped");
}

/// Registers, retrying with back-off until it succeeds; the index the registration committed at.
async fn register(shared: &Shared, req: &RegisterBrokerRequest, timeout: Duration) -> u64 {
    let mut backoff = Duration::from_millis(100);
    let cap = shared
        .cfg
        .broker_heartbeat_interval
        .max(Duration::from_millis(100));
    loop {
        match shared.call(Call::Register(req.clone()), timeout).await {
            Ok(Reply::Registered(index)) => {
                tracing::info!(broker_id = req.broker_id, incarnation_id = %req.incarnation_id, index, "registered with the controller");
                return index;
            }
            Ok(other) => {
                tracing::error!(broker_id = req.broker_id, reply = ?other, "unexpected registration reply")
            }
            Err(error) => {
                tracing::warn!(broker_id = req.broker_id, %error, "broker registration failed; retrying")
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(cap);
    }
}

/// Heartbeats until the controller says this registration is stale.
async fn heartbeat_until_stale(
    shared: &Shared,
    reg: &RegisterBrokerRequest,
    tx: &watch::Sender<BrokerLifecycle>,
    timeout: Duration,
) {
    let interval = shared.cfg.broker_heartbeat_interval;
    let mut first = true;
    loop {
        if !first {
            tokio::time::sleep(interval).await;
        }
        first = false;
        let req = BrokerHeartbeatRequest {
            broker_id: reg.broker_id,
            incarnation_id: reg.incarnation_id,
            metadata_applied_index: shared.applied_index(),
        };
        match shared.call(Call::Heartbeat(req), timeout).await {
            Ok(Reply::Heartbeat(r)) => {
                let changed = tx.send_if_modified(|s| {
                    let changed = s.fenced != r.is_fenced;
                    s.fenced = r.is_fenced;
                    changed
                });
                if changed {
                    tracing::info!(
                        broker_id = reg.broker_id,
                        fenced = r.is_fenced,
                        "broker fencing changed"
                    );
                }
            }
            Ok(other) => {
                tracing::error!(broker_id = reg.broker_id, reply = ?other, "unexpected heartbeat reply")
            }
            Err(
                ControllerError::StaleBrokerEpoch(message)
                | ControllerError::UnknownBroker(message),
            ) => {
                tracing::warn!(broker_id = reg.broker_id, %message, "controller lost this registration; re-registering");
                return;
            }
            Err(error) => {
                tracing::warn!(broker_id = reg.broker_id, %error, "broker heartbeat failed")
            }
        }
    }
}
