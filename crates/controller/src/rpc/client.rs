//! The client side of the broker-to-controller service: sends one call to one node. Choosing
//! the node and retrying (leader hints, back-off, the caller's deadline) is the node's job.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tonic::transport::Channel;

use super::convert;
use super::network::channel;
use super::pb::controller as cpb;
use super::pb::controller::controller_client::ControllerClient;
use super::tls::RpcTls;
use super::MAX_MESSAGE_SIZE;
use crate::api::{BrokerHeartbeatResponse, ControllerError, ProducerIdBlock};
use crate::node::{Call, Reply};

/// Why a call got no answer from the controller logic of the node it was sent to.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The request never left this node (no connection to the target could be made): retrying
    /// it, there or elsewhere, cannot run it twice.
    Unsent(String),
    /// The node failed to answer after the request may have been sent: it may have run.
    Transport(String),
    /// The node answered with an error (NOT_CONTROLLER among them).
    Refused(ControllerError),
}

impl From<ControllerError> for SendError {
    fn from(e: ControllerError) -> Self {
        SendError::Refused(e)
    }
}

/// Channels to other nodes' gRPC servers by address, created on first use and kept: a tonic
/// channel reconnects by itself.
pub(crate) struct Peers {
    channels: Mutex<HashMap<String, Channel>>,
    connect_timeout: Duration,
    tls: Option<RpcTls>,
}

impl Peers {
    pub(crate) fn new(connect_timeout: Duration, tls: Option<RpcTls>) -> Self {
        Peers {
            channels: Mutex::new(HashMap::new()),
            connect_timeout,
            tls,
        }
    }

    fn client(&self, addr: &str) -> Result<ControllerClient<Channel>, SendError> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        let ch = match channels.get(addr) {
            Some(ch) => ch.clone(),
            None => {
                let ch = channel(addr, self.connect_timeout, self.tls.as_ref())
                    .map_err(|e| SendError::Unsent(format!("bad address {addr:?}: {e}")))?;
                channels.insert(addr.to_string(), ch.clone());
                ch
            }
        };
        Ok(ControllerClient::new(ch)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE))
    }

    /// Sends `call` to the node at `addr`, which runs it only if it is the active controller.
    pub(crate) async fn send(
        &self,
        addr: &str,
        call: &Call,
        timeout: Duration,
    ) -> Result<Reply, SendError> {
        let mut client = self.client(addr)?;
        fn req<T>(msg: T, timeout: Duration) -> tonic::Request<T> {
            let mut r = tonic::Request::new(msg);
            r.set_timeout(timeout);
            r
        }
        let transport = |s: tonic::Status| {
            let message = format!("{addr}: {:?}: {}", s.code(), s.message());
            if refused_identity(&s) {
                // The node did not run the request: it refused who this node is.
                tracing::warn!(addr, code = ?s.code(), message = s.message(), "a node refused this node's certificate");
                SendError::Refused(ControllerError::Internal(format!(
                    "refused by the node at {addr}: {}",
                    s.message()
                )))
            } else if never_sent(&s) {
                SendError::Unsent(message)
            } else {
                SendError::Transport(message)
            }
        };
        match call {
            Call::Admin(a) => {
                let request_json = serde_json::to_vec(a).map_err(|e| {
                    ControllerError::Internal(format!("cannot encode admin request: {e}"))
                })?;
                let r = client
                    .forward_admin(req(cpb::ForwardAdminRequest { request_json }, timeout))
                    .await
                    .map_err(transport)?
                    .into_inner();
                convert::check(r.error)?;
                let response = serde_json::from_slice(&r.response_json).map_err(|e| {
                    ControllerError::Internal(format!("undecodable admin response: {e}"))
                })?;
                Ok(Reply::Admin(response, r.commit_index))
            }
            Call::Register(r) => {
                let r = client
                    .register_broker(req(convert::register_to_pb(r), timeout))
                    .await
                    .map_err(transport)?
                    .into_inner();
                convert::check(r.error)?;
                Ok(Reply::Registered(r.registered_index))
            }
            Call::Heartbeat(h) => {
                let r = client
                    .broker_heartbeat(req(convert::heartbeat_to_pb(h), timeout))
                    .await
                    .map_err(transport)?
                    .into_inner();
                convert::check(r.error)?;
                Ok(Reply::Heartbeat(BrokerHeartbeatResponse {
                    is_fenced: r.is_fenced,
                    should_shut_down: r.should_shut_down,
                }))
            }
            Call::AllocateProducerIds(a) => {
                let r = client
                    .allocate_producer_ids(req(convert::allocate_to_pb(a), timeout))
                    .await
                    .map_err(transport)?
                    .into_inner();
                convert::check(r.error)?;
                Ok(Reply::ProducerIds(ProducerIdBlock {
                    first_producer_id: r.first_producer_id,
                    size: r.size,
                }))
            }
            Call::AlterPartition(a) => {
                let r = client
                    .alter_partition(req(convert::alter_partition_to_pb(a), timeout))
                    .await
                    .map_err(transport)?
                    .into_inner();
                convert::check(r.error.clone())?;
                Ok(Reply::Partition(convert::partition_state_from_pb(r)))
            }
            Call::DescribeQuorum => {
                let r = client
                    .describe_quorum(req(cpb::DescribeQuorumRequest {}, timeout))
                    .await
                    .map_err(transport)?
                    .into_inner();
                convert::check(r.error.clone())?;
                Ok(Reply::Quorum(convert::quorum_from_pb(r)))
            }
        }
    }
}

/// Whether the server refused the caller's identity (the inter-node TLS identity rule): the
/// request did not run, and sending it again cannot succeed.
fn refused_identity(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::PermissionDenied | tonic::Code::Unauthenticated
    )
}

/// Whether a failed call's request never left this node: tonic reports a failure to connect
/// (TCP connect refused, unreachable or timed out) as a status whose source chain holds a
/// [`tonic::ConnectError`]. Anything else (a broken connection, a deadline, an error status
/// from the server) may come after the server received the request.
fn never_sent(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if error.is::<tonic::ConnectError>() {
            return true;
        }
        source = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_connect_failures_count_as_unsent() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let status = tonic::Status::from_error(Box::new(tonic::ConnectError(Box::new(refused))));
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(never_sent(&status));
        // The same code from the server, a deadline, a reset stream: maybe sent.
        assert!(!never_sent(&tonic::Status::unavailable("shutting down")));
        assert!(!never_sent(&tonic::Status::cancelled("Timeout expired")));
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(!never_sent(&tonic::Status::from_error(Box::new(reset))));
    }

    #[tokio::test]
    async fn a_call_to_a_closed_port_is_unsent() {
        // Bind then drop: nothing listens on the port any more.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .to_string();
        let peers = Peers::new(Duration::from_secs(1), None);
        let call = Call::Admin(crate::api::AdminRequest::DeleteTopics(
            crate::api::DeleteTopicsRequest { topics: Vec::new() },
        ));
        match peers.send(&addr, &call, Duration::from_secs(2)).await {
            Err(SendError::Unsent(message)) => assert!(message.contains(&addr), "{message}"),
            other => panic!("expected an unsent failure, got {other:?}"),
        }
    }
}
