//! Routing a call to the active controller: run it here when this node leads, otherwise send it
//! to the leader over gRPC, following NOT_CONTROLLER hints and retrying through elections and
//! transport failures until the caller's deadline.

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
                    None => Err(SendError::Transport(format!(
                        "no address for node {target}"
                    ))),
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
                Err(SendError::Transport(e)) => {
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
