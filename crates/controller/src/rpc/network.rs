//! openraft's network over tonic: one lazily connected channel per peer, Raft messages as JSON.
//!
//! Every transport failure is reported as `Unreachable`, which makes openraft back off (see
//! [`PeerClient::backoff`]) instead of retrying in a tight loop; a Raft-level refusal from the
//! peer comes back as openraft's own `RemoteError`. Calls carry openraft's per-RPC deadline, so a
//! dead peer never holds a replication stream or an election for longer than that.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::Channel;

use super::pb::raft::raft_client::RaftClient;
use super::pb::raft::{raft_reply, RaftMessage, RaftReply};
use super::tls::RpcTls;
use super::MAX_MESSAGE_SIZE;
use crate::store::TypeConfig;

type NodeId = u64;
type Rpc<T, E = RaftError<NodeId>> = Result<T, RPCError<NodeId, BasicNode, E>>;

/// When each peer last acknowledged an AppendEntries from this node (milliseconds since the
/// epoch). openraft 0.9's metrics have no per-follower acknowledgement time, so the network
/// records it for DescribeQuorum's `last_fetch_timestamp`.
#[derive(Debug, Clone, Default)]
pub(crate) struct AckTimes(Arc<Mutex<BTreeMap<NodeId, i64>>>);

impl AckTimes {
    fn record(&self, peer: NodeId) {
        let mut acks = self.0.lock().unwrap_or_else(|e| e.into_inner());
        acks.insert(peer, now_ms());
    }

    pub(crate) fn get(&self, peer: NodeId) -> Option<i64> {
        let acks = self.0.lock().unwrap_or_else(|e| e.into_inner());
        acks.get(&peer).copied()
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A lazily connecting channel to `host:port` with the crate's limits (over this node's TLS
/// when it has any). The channel reconnects by itself after a failure.
pub(crate) fn channel(
    addr: &str,
    connect_timeout: Duration,
    tls: Option<&RpcTls>,
) -> Result<Channel, tonic::transport::Error> {
    Ok(super::tls::endpoint(addr, tls)?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .connect_lazy())
}

/// Builds a [`PeerClient`] per replication target.
pub(crate) struct Network {
    pub(crate) acks: AckTimes,
    /// Upper bound for connecting to a peer (the election timeout: a slower connect is useless).
    pub(crate) connect_timeout: Duration,
    /// This node's TLS material, when the gRPC port runs mutual TLS.
    pub(crate) tls: Option<RpcTls>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        let client = match channel(&node.addr, self.connect_timeout, self.tls.as_ref()) {
            Ok(ch) => Some(
                RaftClient::new(ch)
                    .max_decoding_message_size(MAX_MESSAGE_SIZE)
                    .max_encoding_message_size(MAX_MESSAGE_SIZE),
            ),
            Err(error) => {
                tracing::warn!(target_node = target, addr = %node.addr, %error, "bad peer address");
                None
            }
        };
        PeerClient {
            target,
            addr: node.addr.clone(),
            client,
            acks: self.acks.clone(),
        }
    }
}

/// openraft's connection to one peer.
pub(crate) struct PeerClient {
    target: NodeId,
    addr: String,
    client: Option<RaftClient<Channel>>,
    acks: AckTimes,
}

enum Method {
    Vote,
    AppendEntries,
    InstallSnapshot,
}

fn unreachable<E: std::error::Error>(
    error: impl std::error::Error + 'static,
) -> RPCError<NodeId, BasicNode, E> {
    RPCError::Unreachable(Unreachable::new(&error))
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Message(String);

impl PeerClient {
    async fn call<Req, Resp, E>(&mut self, method: Method, req: &Req, ttl: Duration) -> Rpc<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let Some(client) = self.client.as_mut() else {
            return Err(unreachable(Message(format!(
                "bad peer address {:?}",
                self.addr
            ))));
        };
        let data = serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut request = tonic::Request::new(RaftMessage { data });
        request.set_timeout(ttl);
        let reply = match method {
            Method::Vote => client.vote(request).await,
            Method::AppendEntries => client.append_entries(request).await,
            Method::InstallSnapshot => client.install_snapshot(request).await,
        };
        let reply: RaftReply = match reply {
            Ok(r) => r.into_inner(),
            Err(status) => {
                if matches!(
                    status.code(),
                    tonic::Code::PermissionDenied | tonic::Code::Unauthenticated
                ) {
                    tracing::warn!(target_node = self.target, addr = %self.addr, code = ?status.code(), message = status.message(), "a peer refused this node's certificate");
                } else {
                    tracing::debug!(target_node = self.target, addr = %self.addr, code = ?status.code(), message = status.message(), "raft rpc failed");
                }
                return Err(match status.code() {
                    tonic::Code::PermissionDenied
                    | tonic::Code::Unauthenticated
                    | tonic::Code::Unavailable
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::Cancelled
                    | tonic::Code::Unknown => unreachable(status),
                    _ => RPCError::Network(NetworkError::new(&status)),
                });
            }
        };
        match reply.result {
            Some(raft_reply::Result::Ok(bytes)) => {
                serde_json::from_slice(&bytes).map_err(|e| RPCError::Network(NetworkError::new(&e)))
            }
            Some(raft_reply::Result::Error(bytes)) => {
                let e: E = serde_json::from_slice(&bytes)
                    .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            None => Err(RPCError::Network(NetworkError::new(&Message(
                "empty raft reply".into(),
            )))),
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Rpc<AppendEntriesResponse<NodeId>> {
        let resp: AppendEntriesResponse<NodeId> = self
            .call(Method::AppendEntries, &rpc, option.hard_ttl())
            .await?;
        // Any answer (success, conflict, higher vote) shows the peer is fetching.
        self.acks.record(self.target);
        Ok(resp)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Rpc<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> {
        self.call(Method::InstallSnapshot, &rpc, option.hard_ttl())
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Rpc<VoteResponse<NodeId>> {
        self.call(Method::Vote, &rpc, option.hard_ttl()).await
    }

    /// Short and bounded: a restarted peer is caught up soon after it is back, while a dead one
    /// costs one failed connect per interval.
    fn backoff(&self) -> Backoff {
        let steps = [50u64, 100, 200, 400];
        Backoff::new(
            steps
                .into_iter()
                .chain(std::iter::repeat(500))
                .map(Duration::from_millis),
        )
    }
}
