//! Routing a call to the active controller: run it here when this node leads, otherwise send it
//! to the leader over gRPC, following NOT_CONTROLLER hints and retrying through elections and
//! transport failures until the caller's deadline.
//!
//! A failure after the request may have reached the leader is retried only for calls that are
//! safe to run twice: an admin request (CreateTopics, ...) is not, since its retry would report
//! e.g. TOPIC_ALREADY_EXISTS for a creation that succeeded. It fails with `Timeout` instead (the
//! outcome is unknown, as Kafka's REQUEST_TIMED_OUT says). A failure to connect is always
//! retried: the request never left this node.

use std::time::Duration;

use openraft::ServerState;
use tokio::time::Instant;

use super::{node_id, Call, Reply, Shared};
use crate::api::ControllerError;
use crate::records::BrokerId;
use crate::rpc::client::SendError;

/// 50 to 100 ms: long enough not to spin during an election, short against its duration.
fn backoff() -> Duration {
    let jitter = uuid::Uuid::new_v4().as_u128() % 50;
    Duration::from_millis(50 + jitter as u64)
}

impl Shared {
    /// The address of node `id`'s gRPC server: from the Raft membership (which also holds the
    /// learners), else from the configured voters.
    fn address_of(&self, id: u64) -> Option<String> {
        let from_membership = {
            let m = self.raft.metrics().borrow().clone();
            m.membership_config
                .membership()
                .get_node(&id)
                .map(|n| n.addr.clone())
        };
        from_membership.or_else(|| {
            BrokerId::try_from(id)
                .ok()
                .and_then(|b| self.cfg.voters.get(&b).cloned())
        })
    }

    /// Runs `call` on the active controller, wherever it is. `Timeout` when no active
    /// controller completed it within `timeout` (a minority partition, a long election).
    pub(crate) async fn call(
        &self,
        call: Call,
        timeout: Duration,
    ) -> Result<Reply, ControllerError> {
        let deadline = Instant::now() + timeout;
        let me = node_id(self.cfg.node_id);
        let voter_ids: Vec<u64> = self.cfg.voters.keys().map(|id| node_id(*id)).collect();
        let mut hint: Option<u64> = None;
        let mut next_voter = 0usize;
        let mut last_error = String::from("no active controller known");
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(ControllerError::Timeout(format!(
                    "no active controller answered within {timeout:?}: {last_error}"
                )));
            }
            if self.is_shut_down() {
                return Err(ControllerError::Timeout(
                    "the controller node is shutting down".into(),
                ));
            }
            let remaining = deadline - now;
            let (leader, state) = {
                let m = self.raft.metrics().borrow().clone();
                (m.current_leader, m.state)
            };
            let target = hint.take().or(leader).or_else(|| {
                // A node outside the quorum (a broker not yet a learner) learns of no leader
                // from Raft: ask the voters in turn, whose answers carry the hint.
                if state == ServerState::Learner
                    && !voter_ids.contains(&me)
                    && !voter_ids.is_empty()
                {
                    next_voter = (next_voter + 1) % voter_ids.len();
                    Some(voter_ids[next_voter])
                } else {
                    None
                }
            });
            let Some(target) = target else {
                tokio::time::sleep(backoff().min(remaining)).await;
                continue;
            };
            let outcome = if target == me {
                match tokio::time::timeout(remaining, self.handle_local(call.clone())).await {
                    Ok(r) => r.map_err(SendError::Refused),
                    Err(_) => Err(SendError::Transport("local request timed out".into())),
                }
            } else {
                match self.address_of(target) {
                    Some(addr) => self.peers.send(&addr, &call, remaining).await,
                    None => Err(SendError::Unsent(format!("no address for node {target}"))),
                }
            };
            match outcome {
                Ok(reply) => return Ok(reply),
                Err(SendError::Refused(ControllerError::NotController { leader })) => {
                    last_error = format!("node {target} is not the active controller");
                    let fresh = leader
                        .and_then(|l| u64::try_from(l).ok())
                        .filter(|l| *l != target);
                    match fresh {
                        // Follow a new hint at once; otherwise wait for the election.
                        Some(l) => hint = Some(l),
                        None => tokio::time::sleep(backoff().min(remaining)).await,
                    }
                }
                Err(SendError::Refused(e)) => return Err(e),
                Err(SendError::Transport(e)) if !retry_when_maybe_sent(&call) => {
                    tracing::warn!(
                        target_node = target,
                        error = %e,
                        "forwarded admin request failed after it may have been sent; not retrying"
                    );
                    return Err(ControllerError::Timeout(format!(
                        "the request to the active controller (node {target}) failed after it \
                         may have been sent, so it may or may not have been applied: {e}"
                    )));
                }
                Err(SendError::Transport(e) | SendError::Unsent(e)) => {
                    tracing::debug!(target_node = target, error = %e, "controller call failed; retrying");
                    last_error = e;
                    tokio::time::sleep(
                        backoff().min(deadline.saturating_duration_since(Instant::now())),
                    )
                    .await;
                }
            }
        }
    }
}

/// Whether `call` may be sent again after a failure that may have come after the leader ran it.
/// Registration (same incarnation), heartbeats and DescribeQuorum are idempotent; a second
/// producer-id block only skips ids; an AlterPartition retry is checked against the partition
/// epoch. An
/// admin request is not idempotent in what it reports.
fn retry_when_maybe_sent(call: &Call) -> bool {
    match call {
        Call::Admin(_) => false,
        Call::Register(_)
        | Call::Heartbeat(_)
        | Call::AllocateProducerIds(_)
        | Call::AlterPartition(_)
        | Call::DescribeQuorum => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AdminRequest, BrokerHeartbeatRequest, DeleteTopicsRequest};

    #[test]
    fn admin_requests_are_not_resent_after_a_maybe_sent_failure() {
        let admin = Call::Admin(AdminRequest::DeleteTopics(DeleteTopicsRequest {
            topics: Vec::new(),
        }));
        assert!(!retry_when_maybe_sent(&admin));
        let heartbeat = Call::Heartbeat(BrokerHeartbeatRequest {
            broker_id: 1,
            incarnation_id: uuid::Uuid::from_u128(1),
            metadata_applied_index: 0,
            want_shut_down: true,
        });
        assert!(retry_when_maybe_sent(&heartbeat));
        assert!(retry_when_maybe_sent(&Call::DescribeQuorum));
    }
}
