//! The gRPC servers: openraft's RPCs, and the broker-to-controller service, which any node
//! answers (the active controller by doing the work, the others with NOT_CONTROLLER and a
//! leader hint).
//!
//! With mutual TLS on the port every request is checked against the caller's node certificate
//! (the identity rule of [`super::identity`]) before it runs.

use std::sync::Arc;

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::Raft;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use super::convert;
use super::identity;
use super::pb::controller as cpb;
use super::pb::controller::controller_server::Controller;
use super::pb::raft::raft_server;
use super::pb::raft::{raft_reply, RaftMessage, RaftReply};
use crate::api::ControllerError;
use crate::node::{Call, Reply, Shared};
use crate::store::TypeConfig;

pub(crate) struct RaftService {
    pub(crate) raft: Raft<TypeConfig>,
    /// Whether the port runs mutual TLS (callers are then authenticated nodes).
    pub(crate) tls: bool,
}

/// A Raft node id as the identity check compares it.
fn claimed(id: Option<u64>) -> i64 {
    // No id (a vote for nobody) or one beyond any certificate's: never a match.
    id.and_then(|id| i64::try_from(id).ok()).unwrap_or(-1)
}

fn decode<T: DeserializeOwned>(msg: RaftMessage) -> Result<T, Status> {
    serde_json::from_slice(&msg.data)
        .map_err(|e| Status::invalid_argument(format!("undecodable raft message: {e}")))
}

fn encode<T: Serialize, E: Serialize>(result: Result<T, E>) -> Result<Response<RaftReply>, Status> {
    let result = match result {
        Ok(v) => raft_reply::Result::Ok(serde_json::to_vec(&v).map_err(internal)?),
        Err(e) => raft_reply::Result::Error(serde_json::to_vec(&e).map_err(internal)?),
    };
    Ok(Response::new(RaftReply {
        result: Some(result),
    }))
}

fn internal(e: serde_json::Error) -> Status {
    Status::internal(format!("cannot encode raft reply: {e}"))
}

#[tonic::async_trait]
impl raft_server::Raft for RaftService {
    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftReply>, Status> {
        let peer = identity::peer(&request, self.tls)?;
        let remote = request.remote_addr();
        let rpc: VoteRequest<u64> = decode(request.into_inner())?;
        let candidate = claimed(rpc.vote.leader_id().voted_for());
        identity::check_claim(peer, candidate, "candidate", remote)?;
        encode(self.raft.vote(rpc).await)
    }

    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftReply>, Status> {
        let peer = identity::peer(&request, self.tls)?;
        let remote = request.remote_addr();
        let rpc: AppendEntriesRequest<TypeConfig> = decode(request.into_inner())?;
        let leader = claimed(rpc.vote.leader_id().voted_for());
        identity::check_claim(peer, leader, "leader", remote)?;
        encode(self.raft.append_entries(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftReply>, Status> {
        let peer = identity::peer(&request, self.tls)?;
        let remote = request.remote_addr();
        let rpc: InstallSnapshotRequest<TypeConfig> = decode(request.into_inner())?;
        let leader = claimed(rpc.vote.leader_id().voted_for());
        identity::check_claim(peer, leader, "leader", remote)?;
        encode(self.raft.install_snapshot(rpc).await)
    }
}

/// The broker-to-controller service. It only ever runs a request locally (never forwards):
/// forwarding is the caller's job, so a request cannot bounce between nodes.
pub(crate) struct ControllerService {
    pub(crate) node: Arc<Shared>,
    /// Whether the port runs mutual TLS (callers are then authenticated nodes).
    pub(crate) tls: bool,
}

impl ControllerService {
    /// Refuses `request` unless its caller may speak for broker `broker_id`.
    fn authorize<T>(&self, request: &Request<T>, broker_id: i32) -> Result<(), Status> {
        identity::authorize(request, self.tls, i64::from(broker_id), "broker_id")
    }

    /// Refuses `request` unless its caller is an authenticated node (any node).
    fn authenticate<T>(&self, request: &Request<T>) -> Result<(), Status> {
        identity::peer(request, self.tls).map(|_| ())
    }

    async fn run(
        &self,
        call: Result<Call, ControllerError>,
    ) -> Result<Reply, cpb::ControllerError> {
        let call = call.map_err(|e| convert::error_to_pb(&e))?;
        self.node
            .handle_local(call)
            .await
            .map_err(|e| convert::error_to_pb(&e))
    }
}

fn unexpected(reply: &Reply) -> Status {
    Status::internal(format!("mismatched reply {reply:?}"))
}

#[tonic::async_trait]
impl Controller for ControllerService {
    async fn register_broker(
        &self,
        request: Request<cpb::RegisterBrokerRequest>,
    ) -> Result<Response<cpb::RegisterBrokerResponse>, Status> {
        self.authorize(&request, request.get_ref().broker_id)?;
        let call = convert::register_from_pb(request.into_inner()).map(Call::Register);
        let resp = match self.run(call).await {
            Ok(Reply::Registered(index)) => cpb::RegisterBrokerResponse {
                error: None,
                registered_index: index,
            },
            Ok(other) => return Err(unexpected(&other)),
            Err(error) => cpb::RegisterBrokerResponse {
                error: Some(error),
                registered_index: 0,
            },
        };
        Ok(Response::new(resp))
    }

    async fn broker_heartbeat(
        &self,
        request: Request<cpb::BrokerHeartbeatRequest>,
    ) -> Result<Response<cpb::BrokerHeartbeatResponse>, Status> {
        self.authorize(&request, request.get_ref().broker_id)?;
        let call = convert::heartbeat_from_pb(request.into_inner()).map(Call::Heartbeat);
        let resp = match self.run(call).await {
            Ok(Reply::Heartbeat(r)) => cpb::BrokerHeartbeatResponse {
                error: None,
                is_fenced: r.is_fenced,
                should_shut_down: r.should_shut_down,
            },
            Ok(other) => return Err(unexpected(&other)),
            Err(error) => cpb::BrokerHeartbeatResponse {
                error: Some(error),
                is_fenced: true,
                should_shut_down: false,
            },
        };
        Ok(Response::new(resp))
    }

    async fn allocate_producer_ids(
        &self,
        request: Request<cpb::AllocateProducerIdsRequest>,
    ) -> Result<Response<cpb::AllocateProducerIdsResponse>, Status> {
        self.authorize(&request, request.get_ref().broker_id)?;
        let call = convert::allocate_from_pb(request.into_inner()).map(Call::AllocateProducerIds);
        let resp = match self.run(call).await {
            Ok(Reply::ProducerIds(block)) => cpb::AllocateProducerIdsResponse {
                error: None,
                first_producer_id: block.first_producer_id,
                size: block.size,
            },
            Ok(other) => return Err(unexpected(&other)),
            Err(error) => cpb::AllocateProducerIdsResponse {
                error: Some(error),
                ..Default::default()
            },
        };
        Ok(Response::new(resp))
    }

    async fn alter_partition(
        &self,
        request: Request<cpb::AlterPartitionRequest>,
    ) -> Result<Response<cpb::AlterPartitionResponse>, Status> {
        self.authorize(&request, request.get_ref().broker_id)?;
        let call = convert::alter_partition_from_pb(request.into_inner()).map(Call::AlterPartition);
        let resp = match self.run(call).await {
            Ok(Reply::Partition(state)) => convert::partition_state_to_pb(&state),
            Ok(other) => return Err(unexpected(&other)),
            Err(error) => cpb::AlterPartitionResponse {
                error: Some(error),
                ..Default::default()
            },
        };
        Ok(Response::new(resp))
    }

    async fn describe_quorum(
        &self,
        request: Request<cpb::DescribeQuorumRequest>,
    ) -> Result<Response<cpb::DescribeQuorumResponse>, Status> {
        self.authenticate(&request)?;
        let resp = match self.run(Ok(Call::DescribeQuorum)).await {
            Ok(Reply::Quorum(q)) => convert::quorum_to_pb(&q),
            Ok(other) => return Err(unexpected(&other)),
            Err(error) => cpb::DescribeQuorumResponse {
                error: Some(error),
                ..Default::default()
            },
        };
        Ok(Response::new(resp))
    }

    async fn forward_admin(
        &self,
        request: Request<cpb::ForwardAdminRequest>,
    ) -> Result<Response<cpb::ForwardAdminResponse>, Status> {
        self.authenticate(&request)?;
        let call = serde_json::from_slice(&request.into_inner().request_json)
            .map(Call::Admin)
            .map_err(|e| {
                ControllerError::InvalidRequest(format!("undecodable admin request: {e}"))
            });
        let resp = match self.run(call).await {
            Ok(Reply::Admin(response, commit_index)) => cpb::ForwardAdminResponse {
                error: None,
                response_json: serde_json::to_vec(&response)
                    .map_err(|e| Status::internal(format!("cannot encode admin response: {e}")))?,
                commit_index,
            },
            Ok(other) => return Err(unexpected(&other)),
            Err(error) => cpb::ForwardAdminResponse {
                error: Some(error),
                ..Default::default()
            },
        };
        Ok(Response::new(resp))
    }
}

/// Serves both services on `listener` until the node shuts down (then drains connections).
pub(crate) fn spawn(
    node: Arc<Shared>,
    listener: tokio::net::TcpListener,
    extra: Option<super::ExtraServices>,
) -> tokio::task::JoinHandle<()> {
    let tls = node.tls.clone();
    let raft = raft_server::RaftServer::new(RaftService {
        raft: node.raft.clone(),
        tls: tls.is_some(),
    })
    .max_decoding_message_size(super::MAX_MESSAGE_SIZE)
    .max_encoding_message_size(super::MAX_MESSAGE_SIZE);
    let controller =
        super::pb::controller::controller_server::ControllerServer::new(ControllerService {
            node: node.clone(),
            tls: tls.is_some(),
        })
        .max_decoding_message_size(super::MAX_MESSAGE_SIZE)
        .max_encoding_message_size(super::MAX_MESSAGE_SIZE);
    let local = listener.local_addr().ok();
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tokio::spawn(async move {
        let node_id = node.cfg.node_id;
        let signal_node = node.clone();
        // The services hold the node; let go of it before waiting for the drain.
        drop(node);
        let mut routes = tonic::service::Routes::new(raft).add_service(controller);
        if let Some(extra) = extra {
            routes = extra(routes);
        }
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = &tls {
            builder = match builder.tls_config(tls.server_config()) {
                Ok(b) => b,
                Err(error) => {
                    tracing::error!(node_id, addr = ?local, %error, "grpc server TLS setup failed; not serving");
                    return;
                }
            };
        }
        let served = builder
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, async move {
                signal_node.shutdown_signal().await;
            })
            .await;
        match served {
            Ok(()) => tracing::info!(node_id, addr = ?local, "grpc server stopped"),
            Err(error) => tracing::error!(node_id, addr = ?local, %error, "grpc server failed"),
        }
    })
}
