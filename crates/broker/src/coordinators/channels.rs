//! gRPC channels from this node to the other nodes' replication services, opened on first use
//! and kept (a channel multiplexes calls): the transaction coordinator's markers go out over
//! them, and partition leaders' transaction verifications come in to the coordinator.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use runnel_replication::pb::replication_client::ReplicationClient;
use tonic::transport::Channel;

use crate::controller_channel::ControllerChannel;

/// How long opening a channel may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The open channels, by address.
pub struct NodeChannels {
    controller: Arc<ControllerChannel>,
    open: parking_lot::Mutex<HashMap<String, Channel>>,
}

/// A client of one node's replication service, and the address it was opened for (to
/// [`NodeChannels::forget`] it after a failed call).
pub struct NodeClient {
    pub addr: String,
    pub client: ReplicationClient<Channel>,
}

impl NodeChannels {
    pub fn new(controller: Arc<ControllerChannel>) -> NodeChannels {
        NodeChannels {
            controller,
            open: parking_lot::Mutex::new(HashMap::new()),
        }
    }

    /// A client of `node`'s replication service (TLS as the quorum port is configured).
    pub async fn client(&self, node: i32) -> Result<NodeClient, String> {
        let addr = self
            .controller
            .rpc_address(node)
            .ok_or_else(|| format!("no gRPC address known for node {node}"))?;
        let cached = self.open.lock().get(&addr).cloned();
        let channel = match cached {
            Some(c) => c,
            None => {
                let c = self
                    .controller
                    .rpc_endpoint(&addr)
                    .map_err(|e| format!("bad address {addr}: {e}"))?
                    .connect_timeout(CONNECT_TIMEOUT)
                    .connect()
                    .await
                    .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
                self.open.lock().insert(addr.clone(), c.clone());
                c
            }
        };
        Ok(NodeClient {
            addr,
            client: ReplicationClient::new(channel),
        })
    }

    /// Drops the channel to `addr` after a failed call: the next call reconnects.
    pub fn forget(&self, addr: &str) {
        self.open.lock().remove(addr);
    }
}
