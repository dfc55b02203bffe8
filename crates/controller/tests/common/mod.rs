//! An in-process cluster of controller nodes on 127.0.0.1 for the quorum tests.

#![allow(dead_code)] // each test file uses a different part of the harness

pub mod certs;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use runnel_controller::api::{AdminRequest, AdminResponse, CreatableTopic, CreateTopicsRequest};
use runnel_controller::managers::{ManagerConfig, TopicConfigValidator};
use runnel_controller::records::BrokerEndpoint;
use runnel_controller::{ControllerNode, NodeConfig, Roles};

/// Accepts every topic config.
pub struct AnyConfig;

impl TopicConfigValidator for AnyConfig {
    fn validate(&self, _name: &str, _value: &str) -> Result<(), String> {
        Ok(())
    }

    fn is_list(&self, _name: &str) -> bool {
        false
    }
}

pub const ELECTION: Duration = Duration::from_millis(300);
pub const RAFT_HEARTBEAT: Duration = Duration::from_millis(100);
pub const BROKER_HEARTBEAT: Duration = Duration::from_millis(100);
pub const SESSION: Duration = Duration::from_millis(1500);
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Free loopback ports: bound to port 0 and released. Another process could take one in
/// between; on a test machine that is rare enough.
pub fn free_addrs(n: usize) -> Vec<SocketAddr> {
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners.iter().map(|l| l.local_addr().unwrap()).collect()
}

/// Logs to the test output when `RUST_LOG` is set (e.g. `RUST_LOG=runnel_controller=debug`).
pub fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

pub struct Cluster {
    _root: tempfile::TempDir,
    pub configs: BTreeMap<i32, NodeConfig>,
    pub nodes: BTreeMap<i32, Arc<ControllerNode>>,
}

impl Cluster {
    /// `voters` combined broker+controller nodes (ids 1..) and `observers` broker-only nodes
    /// (ids after them); nothing started yet.
    pub fn new(voters: usize, observers: usize, snapshot_interval_entries: u64) -> Cluster {
        let root = tempfile::tempdir().unwrap();
        let addrs = free_addrs(voters + observers);
        let voter_map: BTreeMap<i32, String> = (0..voters)
            .map(|i| (i as i32 + 1, addrs[i].to_string()))
            .collect();
        let mut configs = BTreeMap::new();
        for (i, addr) in addrs.iter().enumerate() {
            let id = i as i32 + 1;
            let controller = i < voters;
            configs.insert(
                id,
                NodeConfig {
                    node_id: id,
                    roles: Roles {
                        broker: true,
                        controller,
                    },
                    metadata_dir: PathBuf::from(root.path()).join(format!("node-{id}")),
                    voters: voter_map.clone(),
                    rpc_listen: Some(*addr),
                    rpc_advertised: addr.to_string(),
                    cluster_id: Some("test-cluster-id-000001".into()),
                    managers: ManagerConfig {
                        default_replication_factor: 3.min((voters + observers) as i16),
                        ..ManagerConfig::default()
                    },
                    broker_heartbeat_interval: BROKER_HEARTBEAT,
                    broker_session_timeout: SESSION,
                    election_timeout: ELECTION,
                    raft_heartbeat_interval: RAFT_HEARTBEAT,
                    snapshot_interval_entries,
                    leader_imbalance_check_interval: None,
                    bootstrap_scram: Vec::new(),
                    rpc_tls: None,
                },
            );
        }
        Cluster {
            _root: root,
            configs,
            nodes: BTreeMap::new(),
        }
    }

    pub async fn start(&mut self, id: i32) -> Arc<ControllerNode> {
        let node = ControllerNode::start(self.configs[&id].clone(), Arc::new(AnyConfig))
            .await
            .unwrap_or_else(|e| panic!("node {id} did not start: {e}"));
        self.nodes.insert(id, node.clone());
        node
    }

    pub async fn start_all(&mut self) {
        let ids: Vec<i32> = self.configs.keys().copied().collect();
        // Concurrently: each voter initialises and then waits for the others' votes.
        let starts = ids.iter().map(|id| {
            ControllerNode::start(
                self.configs[id].clone(),
                Arc::new(AnyConfig) as Arc<dyn TopicConfigValidator>,
            )
        });
        let nodes = futures::future::join_all(starts).await;
        for (id, node) in ids.into_iter().zip(nodes) {
            self.nodes.insert(id, node.unwrap());
        }
    }

    pub async fn stop(&mut self, id: i32) {
        if let Some(node) = self.nodes.remove(&id) {
            node.shutdown().await;
        }
    }

    pub async fn stop_all(&mut self) {
        let ids: Vec<i32> = self.nodes.keys().copied().collect();
        for id in ids {
            self.stop(id).await;
        }
    }

    pub fn node(&self, id: i32) -> &Arc<ControllerNode> {
        &self.nodes[&id]
    }

    /// Waits until every running voter names the same running node as the active controller.
    pub async fn leader(&self, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            let seen: Vec<Option<i32>> = self
                .nodes
                .iter()
                .filter(|(id, _)| self.configs[id].roles.controller)
                .map(|(_, n)| n.active_controller())
                .collect();
            if let Some(Some(l)) = seen.first() {
                if seen.iter().all(|s| *s == Some(*l)) && self.nodes.contains_key(l) {
                    return *l;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader within {timeout:?}: {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts every running node's broker lifecycle and waits until all are registered and
    /// unfenced (every node's view of its own lifecycle).
    pub async fn register_brokers(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for (id, node) in &self.nodes {
            let mut rx = node.start_broker_lifecycle(endpoint(*id), None);
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::time::timeout(left, rx.wait_for(|s| s.registered && !s.fenced))
                .await
                .unwrap_or_else(|_| panic!("broker {id} not unfenced within {timeout:?}"))
                .unwrap();
        }
    }

    /// A running node other than `not`.
    pub fn other_than(&self, not: i32) -> i32 {
        *self.nodes.keys().find(|id| **id != not).unwrap()
    }
}

pub fn create_topic(name: &str, partitions: i32, replication_factor: i16) -> AdminRequest {
    AdminRequest::CreateTopics(CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: name.into(),
            num_partitions: partitions,
            replication_factor,
            assignments: BTreeMap::new(),
            configs: Vec::new(),
            internal: false,
        }],
        validate_only: false,
    })
}

/// Asserts that a CreateTopics response created every topic.
pub fn assert_created(resp: &AdminResponse) {
    let AdminResponse::CreateTopics(r) = resp else {
        panic!("not a CreateTopics response: {resp:?}");
    };
    for (name, result) in &r.topics {
        assert!(result.is_ok(), "topic {name} not created: {result:?}");
    }
}

pub fn endpoint(id: i32) -> Vec<BrokerEndpoint> {
    vec![BrokerEndpoint {
        name: "PLAINTEXT".into(),
        host: "127.0.0.1".into(),
        port: 9000 + id as u16,
    }]
}
