//! The local broker's lifecycle: register with the active controller (retrying until it
//! works), then heartbeat every `broker.heartbeat.interval.ms`, re-registering when the
//! controller no longer knows this incarnation. Publishes [`BrokerLifecycle`].
//!
//! Registration of a new incarnation is refused (DUPLICATE_BROKER_REGISTRATION) while the
//! previous one is unfenced and its session live; the lifecycle retries until the controller
//! has let that session expire, so a broker restarted right after a crash is back within about
//! one `broker.session.timeout.ms`.
//!
//! Self-fencing: the active controller fences a broker whose heartbeats stop reaching it for
//! `broker.session.timeout.ms` and moves its leaderships away. A broker cut off from the
//! controller never hears about that, so it fences itself on the same clock: once no call it
//! sent in the last session timeout has been answered, it publishes `fenced: true` until a
//! heartbeat succeeds again. The session is measured from when the last answered call was
//! *sent*, which is no later than when the controller last saw this broker, so the broker
//! fences itself no later than the controller could.
//!
//! Controlled shutdown: once [`ControllerNode::controlled_shutdown`] asks for it, every heartbeat
//! carries `want_shut_down` (the first goes out at once, the next ones at a shorter interval)
//! until the controller answers `should_shut_down`; then the broker is fenced, heartbeats stop
//! and the request is granted. A broker asked to shut down before it is registered leads
//! nothing under this incarnation: the request is granted without registering.
//!
//! [`ControllerNode::controlled_shutdown`]: super::ControllerNode::controlled_shutdown

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::{BrokerLifecycle, Call, ControlledShutdown, Reply, Shared};
use crate::api::{BrokerHeartbeatRequest, ControllerError, RegisterBrokerRequest};
use crate::records::{BrokerEndpoint, BrokerId};

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
                // Unregistered: fenced whatever the clock says.
                let registered = tokio::select! {
                    r = register(&shared, &registration, call_timeout) => Some(r),
                    // Not registered (any more): this incarnation leads nothing to hand over.
                    _ = shared.wait_shutdown_requested() => None,
                };
                let Some((index, sent)) = registered else {
                    grant(&shared, broker_id, "not registered");
                    break;
                };
                let mut standing = Standing::new(broker_id, cfg.broker_session_timeout, sent);
                standing.publish(&tx, true);
                // Heartbeat as soon as this node has applied its own registration: that is what
                // the controller waits for before unfencing (or at once when shutting down).
                standing
                    .guard(&tx, async {
                        tokio::select! {
                            _ = shared.wait_applied(index, interval) => {}
                            _ = shared.wait_shutdown_requested() => {}
                        }
                    })
                    .await;
                let ended =
                    heartbeat_until_stale(&shared, &registration, &tx, &mut standing, call_timeout)
                        .await;
                if ended == Ended::ShutDown {
                    // Fenced by the controller; stays so until the node stops.
                    standing.controller_fenced = true;
                    standing.publish(&tx, true);
                    grant(&shared, broker_id, "the controller granted it");
                    break;
                }
                tx.send_replace(BrokerLifecycle { registered: false, fenced: true });
            }
            // Shut down: no more heartbeats; the node is about to stop.
            shared.shutdown_signal().await;
        } => {}
    }
    tracing::info!(broker_id, "broker lifecycle stopped");
}

/// Heartbeats while shutting down go out at least this often, so that the controller's
/// go-ahead is heard soon after the other brokers have caught up.
const SHUTDOWN_HEARTBEAT: Duration = Duration::from_millis(200);

fn grant(shared: &Shared, broker_id: BrokerId, why: &str) {
    tracing::info!(
        broker_id,
        why,
        "controlled shutdown complete; heartbeats stop"
    );
    shared
        .controlled_shutdown
        .send_replace(ControlledShutdown::Granted);
}

/// Why [`heartbeat_until_stale`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// The controller no longer knows this registration: register again.
    Stale,
    /// The controller answered `should_shut_down` to a heartbeat that wanted it.
    ShutDown,
}

/// Registers, retrying with back-off until it succeeds: the index the registration committed
/// at and when the successful attempt was sent (the controller's session starts after that).
async fn register(
    shared: &Shared,
    req: &RegisterBrokerRequest,
    timeout: Duration,
) -> (u64, Instant) {
    let mut backoff = Duration::from_millis(100);
    let cap = shared
        .cfg
        .broker_heartbeat_interval
        .max(Duration::from_millis(100));
    loop {
        let sent = Instant::now();
        match shared.call(Call::Register(req.clone()), timeout).await {
            Ok(Reply::Registered(index)) => {
                tracing::info!(broker_id = req.broker_id, incarnation_id = %req.incarnation_id, index, "registered with the controller");
                return (index, sent);
            }
            Ok(other) => {
                tracing::error!(broker_id = req.broker_id, reply = ?other, "unexpected registration reply")
            }
            Err(ControllerError::DuplicateBrokerRegistration(message)) => {
                // A restart before the previous incarnation's session expired (a crash, or a
                // stop without controlled shutdown): the controller fences it once its session
                // runs out, and the next attempt succeeds.
                tracing::info!(broker_id = req.broker_id, %message, "the previous incarnation of this broker is still live; retrying registration");
            }
            Err(error) => {
                tracing::warn!(broker_id = req.broker_id, %error, "broker registration failed; retrying")
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(cap);
    }
}

/// What the local broker knows of its session with the controller, for one registration.
#[derive(Debug)]
struct Standing {
    broker_id: BrokerId,
    session_timeout: Duration,
    /// When the last call the controller answered was sent.
    last_answered: Instant,
    /// The controller's last word on fencing.
    controller_fenced: bool,
    /// No call answered for a session timeout: the controller has fenced us, or will.
    cut_off: bool,
}

impl Standing {
    fn new(broker_id: BrokerId, session_timeout: Duration, sent: Instant) -> Self {
        Standing {
            broker_id,
            session_timeout,
            last_answered: sent,
            controller_fenced: true,
            cut_off: false,
        }
    }

    /// When the session runs out unless a call sent before then is answered.
    fn deadline(&self) -> Instant {
        self.last_answered + self.session_timeout
    }

    fn fenced(&self) -> bool {
        self.controller_fenced || self.cut_off
    }

    /// Publishes the current standing; `force` sends even when nothing changed (a fresh
    /// registration).
    fn publish(&self, tx: &watch::Sender<BrokerLifecycle>, force: bool) -> bool {
        let next = BrokerLifecycle {
            registered: true,
            fenced: self.fenced(),
        };
        if force {
            tx.send_replace(next);
            return true;
        }
        tx.send_if_modified(|s| {
            let changed = *s != next;
            *s = next;
            changed
        })
    }

    /// The controller answered a heartbeat sent at `sent`.
    fn answered(&mut self, tx: &watch::Sender<BrokerLifecycle>, sent: Instant, is_fenced: bool) {
        self.last_answered = self.last_answered.max(sent);
        self.controller_fenced = is_fenced;
        // An answer to a call sent more than a session ago does not end an outage.
        if self.cut_off && Instant::now() < self.deadline() {
            self.cut_off = false;
            tracing::info!(
                broker_id = self.broker_id,
                controller_fenced = is_fenced,
                "the controller is reachable again"
            );
        }
        if self.publish(tx, false) {
            tracing::info!(
                broker_id = self.broker_id,
                fenced = self.fenced(),
                "broker fencing changed"
            );
        }
    }

    /// Fences locally if the session ran out; logs once per outage.
    fn check_expired(&mut self, tx: &watch::Sender<BrokerLifecycle>) {
        let now = Instant::now();
        if self.cut_off || now < self.deadline() {
            return;
        }
        self.cut_off = true;
        tracing::warn!(
            broker_id = self.broker_id,
            silent_ms = now.duration_since(self.last_answered).as_millis() as u64,
            session_timeout_ms = self.session_timeout.as_millis() as u64,
            "no heartbeat answered by the controller for a session timeout; fencing this broker locally"
        );
        self.publish(tx, false);
    }

    /// Awaits `fut`, fencing locally the moment the session runs out meanwhile.
    async fn guard<F: Future>(&mut self, tx: &watch::Sender<BrokerLifecycle>, fut: F) -> F::Output {
        tokio::pin!(fut);
        loop {
            self.check_expired(tx);
            let deadline = self.deadline();
            tokio::select! {
                out = &mut fut => return out,
                _ = tokio::time::sleep_until(deadline), if !self.cut_off => {}
            }
        }
    }
}

/// Heartbeats until the controller says this registration is stale, or that the broker may
/// shut down (after it asked to).
async fn heartbeat_until_stale(
    shared: &Shared,
    reg: &RegisterBrokerRequest,
    tx: &watch::Sender<BrokerLifecycle>,
    standing: &mut Standing,
    timeout: Duration,
) -> Ended {
    let interval = shared.cfg.broker_heartbeat_interval;
    let mut first = true;
    loop {
        if !first {
            if shared.shutdown_requested() {
                let pause = interval.min(SHUTDOWN_HEARTBEAT);
                standing.guard(tx, tokio::time::sleep(pause)).await;
            } else {
                // A shutdown request sends the next heartbeat at once.
                standing
                    .guard(tx, async {
                        tokio::select! {
                            _ = tokio::time::sleep(interval) => {}
                            _ = shared.wait_shutdown_requested() => {}
                        }
                    })
                    .await;
            }
        }
        first = false;
        let want_shut_down = shared.shutdown_requested();
        let req = BrokerHeartbeatRequest {
            broker_id: reg.broker_id,
            incarnation_id: reg.incarnation_id,
            metadata_applied_index: shared.applied_index(),
            want_shut_down,
        };
        let sent = Instant::now();
        let outcome = standing
            .guard(tx, shared.call(Call::Heartbeat(req), timeout))
            .await;
        match outcome {
            Ok(Reply::Heartbeat(r)) => {
                standing.answered(tx, sent, r.is_fenced || r.should_shut_down);
                if r.should_shut_down {
                    if want_shut_down {
                        return Ended::ShutDown;
                    }
                    // A controlled shutdown of this incarnation that another request began
                    // (the controller fenced it); the next heartbeats unfence it again.
                    tracing::warn!(
                        broker_id = reg.broker_id,
                        "the controller ended a controlled shutdown this broker did not ask for"
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
                return Ended::Stale;
            }
            Err(error) => {
                tracing::warn!(broker_id = reg.broker_id, %error, "broker heartbeat failed")
            }
        }
        standing.check_expired(tx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION: Duration = Duration::from_millis(1500);

    fn fenced(rx: &watch::Receiver<BrokerLifecycle>) -> bool {
        rx.borrow().fenced
    }

    #[tokio::test(start_paused = true)]
    async fn a_broker_cut_off_for_a_session_timeout_fences_itself() {
        let (tx, rx) = watch::channel(BrokerLifecycle::default());
        let mut standing = Standing::new(7, SESSION, Instant::now());
        standing.publish(&tx, true);
        assert!(fenced(&rx), "registered but not yet unfenced");
        standing.answered(&tx, Instant::now(), false);
        assert!(!fenced(&rx));

        // A heartbeat that hangs: fenced as soon as the session is over, not when it returns.
        let start = Instant::now();
        let hung = tokio::time::sleep(SESSION * 3);
        standing
            .guard(&tx, async {
                let mut rx = rx.clone();
                // The guard fences while the hung call is still pending.
                tokio::select! {
                    _ = hung => panic!("not fenced while the call hung"),
                    _ = rx.wait_for(|s| s.fenced) => {}
                }
            })
            .await;
        assert_eq!(start.elapsed(), SESSION);
        assert!(fenced(&rx));

        // Failures keep it fenced; an answer (to a call sent now) publishes the controller's.
        standing.check_expired(&tx);
        assert!(fenced(&rx));
        standing.answered(&tx, Instant::now(), true);
        assert!(fenced(&rx), "the controller still fences it");
        standing.answered(&tx, Instant::now(), false);
        assert!(!fenced(&rx));
    }

    #[tokio::test(start_paused = true)]
    async fn the_session_runs_from_when_the_answered_call_was_sent() {
        let (tx, rx) = watch::channel(BrokerLifecycle::default());
        let registered = Instant::now();
        let mut standing = Standing::new(7, SESSION, registered);
        // Answered late: the controller saw it at most when it was sent.
        tokio::time::advance(Duration::from_millis(1000)).await;
        standing.answered(&tx, registered, false);
        assert!(!fenced(&rx));
        tokio::time::advance(Duration::from_millis(499)).await;
        standing.check_expired(&tx);
        assert!(!fenced(&rx));
        tokio::time::advance(Duration::from_millis(1)).await;
        standing.check_expired(&tx);
        assert!(fenced(&rx));
        // An answer to a call sent within the last session timeout ends the outage: the
        // controller heard from this broker then.
        let ms = Duration::from_millis;
        standing.answered(&tx, registered + ms(10), false);
        assert!(!fenced(&rx));
        assert_eq!(standing.deadline(), registered + SESSION + ms(10));
        // Out again; an answer to an older call neither ends the outage nor moves the session
        // back.
        tokio::time::advance(ms(10)).await;
        standing.check_expired(&tx);
        assert!(fenced(&rx));
        standing.answered(&tx, registered + ms(5), false);
        assert!(fenced(&rx));
        assert_eq!(standing.deadline(), registered + SESSION + ms(10));
        standing.answered(&tx, Instant::now(), false);
        assert!(!fenced(&rx));
    }
}
