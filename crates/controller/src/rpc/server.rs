//! The gRPC servers: openraft's RPCs, and the broker-to-controller service, which any node
//! answers (the active controller by doing the work, the others with NOT_CONTROLLER and a
//! leader hint).

use std::sync::Arc;

use openraft::Raft;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use super::convert;
use super::pb::controller as cpb;
use super::pb::controller::controller_server::Controller;
use super::pb::raft::raft_server;
use super::pb::raft::{raft_reply, RaftMessage, RaftReply};
use crate::api::ControllerError;
use crate::node::{Call, Reply, Shared};
use crate::store::TypeConfig;

pub(crate) struct RaftService {
    pub(crate) raft: Raft<TypeConfig>,
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
        let rpc = decode(request.into_inner())?;
        encode(self.raft.vote(rpc).await)
    }

    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftReply>, Status> {
        let rpc = decode(request.into_inner())?;
        encode(self.raft.append_entries(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftReply>, Status> {
        let rpc = decode(request.into_inner())?;
        encode(self.raft.install_snapshot(rpc).await)
    }
}

/// The broker-to-controller service. It only ever runs a request locally (never forwards):
/// forwarding is the caller's job, so a request cannot bounce between nodes.
pub(crate) struct ControllerService {
    pub(crate) node: Arc<Shared>,
}

impl ControllerService {
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
        _request: Request<cpb::DescribeQuorumRequest>,
    ) -> Result<Response<cpb::DescribeQuorumResponse>, Status> {
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
    let raft = raft_server::RaftServer::new(RaftService {
        raft: node.raft.clone(),
    })
    .max_decoding_message_size(super::MAX_MESSAGE_SIZE)
    .max_encoding_message_size(super::MAX_MESSAGE_SIZE);
    let controller =
        super::pb::controller::controller_server::ControllerServer::new(ControllerService {
            node: node.clone(),
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
        let served = tonic::transport::Server::builder()
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
