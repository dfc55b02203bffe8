//! The default `runnel server` without `--voters`: one voter, no gRPC server. It elects itself,
//! bootstraps a cluster id, serves requests, and keeps everything across a restart.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{assert_created, create_topic, endpoint, init_tracing, AnyConfig, REQUEST_TIMEOUT};
use runnel_controller::managers::ManagerConfig;
use runnel_controller::{ControllerNode, NodeConfig, NodeError, Roles};

fn standalone(dir: &std::path::Path, cluster_id: Option<String>) -> NodeConfig {
    NodeConfig {
        node_id: 0,
        roles: Roles {
            broker: true,
            controller: true,
        },
        metadata_dir: dir.join("__cluster_metadata-0"),
        voters: BTreeMap::from([(0, "localhost:9093".to_string())]),
        rpc_listen: None,
        rpc_advertised: "localhost:9093".into(),
        cluster_id,
        managers: ManagerConfig::default(),
        broker_heartbeat_interval: Duration::from_millis(100),
        broker_session_timeout: Duration::from_millis(1500),
        election_timeout: Duration::from_millis(300),
        raft_heartbeat_interval: Duration::from_millis(100),
        snapshot_interval_entries: 1000,
        leader_imbalance_check_interval: None,
        bootstrap_scram: Vec::new(),
        rpc_tls: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_voter_elects_itself_and_serves() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let node = ControllerNode::start(standalone(dir.path(), None), Arc::new(AnyConfig))
        .await
        .unwrap();
    let mut lifecycle = node.start_broker_lifecycle(endpoint(0), None);
    tokio::time::timeout(
        Duration::from_secs(5),
        lifecycle.wait_for(|s| s.registered && !s.fenced),
    )
    .await
    .expect("the standalone broker is unfenced")
    .unwrap();
    println!(
        "standalone node registered and unfenced {} ms after start",
        started.elapsed().as_millis()
    );
    assert_eq!(node.active_controller(), Some(0));
    let cluster_id = node
        .image()
        .borrow()
        .image
        .cluster_id()
        .map(str::to_string)
        .expect("bootstrapped a cluster id");
    assert_eq!(cluster_id.len(), 22, "{cluster_id}");

    let (resp, index) = node
        .admin(create_topic("solo", 2, 1), REQUEST_TIMEOUT)
        .await
        .unwrap();
    assert_created(&resp);
    assert!(node.wait_applied(index, Duration::from_secs(1)).await);
    let block = node.allocate_producer_ids(REQUEST_TIMEOUT).await.unwrap();
    assert!(block.size > 0);
    let quorum = node.describe_quorum(REQUEST_TIMEOUT).await.unwrap();
    assert_eq!(quorum.leader_id, 0);
    assert_eq!(quorum.voters.len(), 1);
    node.shutdown().await;
    drop(node);

    // Same directory, same process: the lock is free and the image is back.
    let node = ControllerNode::start(
        standalone(dir.path(), Some("ignored-for-an-existing-cluster".into())),
        Arc::new(AnyConfig),
    )
    .await
    .unwrap();
    let image = node.image().borrow().clone();
    assert!(image.image.topic_by_name("solo").is_some());
    assert_eq!(image.image.cluster_id(), Some(cluster_id.as_str()));
    // Producer ids go to registered incarnations only: this one registers first.
    let mut lifecycle = node.start_broker_lifecycle(endpoint(0), None);
    tokio::time::timeout(Duration::from_secs(5), lifecycle.wait_for(|s| s.registered))
        .await
        .expect("re-registered")
        .unwrap();
    let next = node.allocate_producer_ids(REQUEST_TIMEOUT).await.unwrap();
    assert!(
        next.first_producer_id >= block.first_producer_id + i64::from(block.size),
        "producer ids reused after restart: {block:?} then {next:?}"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_quorum_configs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = standalone(dir.path(), None);
    cfg.roles.controller = false;
    let err = ControllerNode::start(cfg, Arc::new(AnyConfig)).await.err();
    assert!(matches!(err, Some(NodeError::Config(_))), "{err:?}");

    let mut cfg = standalone(dir.path(), None);
    cfg.voters.insert(1, "localhost:9094".into());
    let err = ControllerNode::start(cfg, Arc::new(AnyConfig)).await.err();
    assert!(matches!(err, Some(NodeError::Config(_))), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_broker_shuts_down_leaving_its_partitions_leaderless() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let node = ControllerNode::start(standalone(dir.path(), None), Arc::new(AnyConfig))
        .await
        .unwrap();
    // No broker lifecycle yet: nothing to hand over.
    node.controlled_shutdown(Duration::from_millis(10))
        .await
        .unwrap();
    let mut lifecycle = node.start_broker_lifecycle(endpoint(0), None);
    tokio::time::timeout(
        Duration::from_secs(5),
        lifecycle.wait_for(|s| s.registered && !s.fenced),
    )
    .await
    .expect("the standalone broker is unfenced")
    .unwrap();
    let (resp, index) = node
        .admin(create_topic("solo", 2, 1), REQUEST_TIMEOUT)
        .await
        .unwrap();
    assert_created(&resp);
    assert!(node.wait_applied(index, Duration::from_secs(5)).await);

    // The only broker leads both partitions: they become leaderless (ISR kept) and it stops.
    node.controlled_shutdown(Duration::from_secs(5))
        .await
        .unwrap();
    assert!(lifecycle.borrow().fenced);
    let image = node.image().borrow().clone();
    let b = image.image.broker(0).unwrap();
    assert!(b.fenced && b.in_controlled_shutdown, "{b:?}");
    for (p, reg) in &image.image.topic_by_name("solo").unwrap().partitions {
        assert_eq!((reg.leader, reg.isr.clone()), (-1, vec![0]), "solo-{p}");
        assert_eq!(reg.leader_epoch, 1, "solo-{p}");
    }
    node.shutdown().await;

    // Restarted, the broker registers anew and leads its partitions again.
    let node = ControllerNode::start(standalone(dir.path(), None), Arc::new(AnyConfig))
        .await
        .unwrap();
    let mut lifecycle = node.start_broker_lifecycle(endpoint(0), None);
    tokio::time::timeout(
        Duration::from_secs(5),
        lifecycle.wait_for(|s| s.registered && !s.fenced),
    )
    .await
    .expect("the restarted broker is unfenced")
    .unwrap();
    let mut rx = node.image();
    tokio::time::timeout(
        Duration::from_secs(5),
        rx.wait_for(|a| {
            a.image
                .topic_by_name("solo")
                .is_some_and(|t| t.partitions.values().all(|p| p.leader == 0))
        }),
    )
    .await
    .expect("the partitions are led again")
    .unwrap();
    assert!(
        !node
            .image()
            .borrow()
            .image
            .broker(0)
            .unwrap()
            .in_controlled_shutdown
    );
    node.shutdown().await;
}
