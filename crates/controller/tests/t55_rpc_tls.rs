//! Mutual TLS on the inter-node gRPC port: a quorum of three elects and commits over it, callers
//! without a certificate from the truststore's CA are refused every call, and a node's
//! certificate speaks only for that node.

mod common;

use std::time::Duration;

use common::certs::Pki;
use common::{assert_created, create_topic, init_tracing, Cluster, REQUEST_TIMEOUT};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::{SnapshotMeta, StoredMembership, Vote};
use runnel_controller::api::AdminRequest;
use runnel_controller::rpc::pb::controller as cpb;
use runnel_controller::rpc::pb::controller::controller_client::ControllerClient;
use runnel_controller::rpc::pb::raft::raft_client::RaftClient;
use runnel_controller::rpc::pb::raft::RaftMessage;
use runnel_controller::TypeConfig;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::Code;

/// A three-voter cluster whose gRPC ports run mutual TLS with certificates of `pki`.
fn tls_cluster(pki: &Pki) -> Cluster {
    let mut cluster = Cluster::new(3, 0, 1000);
    for (id, cfg) in cluster.configs.iter_mut() {
        cfg.rpc_tls = Some(pki.node_config(*id));
    }
    cluster
}

async fn connect(addr: &str, tls: Option<ClientTlsConfig>) -> Result<Channel, String> {
    let endpoint = match tls {
        Some(tls) => Endpoint::from_shared(format!("https://{addr}"))
            .unwrap()
            .tls_config(tls)
            .unwrap(),
        None => Endpoint::from_shared(format!("http://{addr}")).unwrap(),
    };
    endpoint
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

fn raft_message<T: serde::Serialize>(rpc: &T) -> RaftMessage {
    RaftMessage {
        data: serde_json::to_vec(rpc).unwrap(),
    }
}

fn vote_as(candidate: u64) -> RaftMessage {
    raft_message(&VoteRequest::<u64>::new(Vote::new(1_000, candidate), None))
}

fn append_as(leader: u64) -> RaftMessage {
    raft_message(&AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(1_000, leader),
        prev_log_id: None,
        entries: Vec::new(),
        leader_commit: None,
    })
}

fn snapshot_as(leader: u64) -> RaftMessage {
    raft_message(&InstallSnapshotRequest::<TypeConfig> {
        vote: Vote::new_committed(1_000, leader),
        meta: SnapshotMeta {
            last_log_id: None,
            last_membership: StoredMembership::default(),
            snapshot_id: "intruder".into(),
        },
        offset: 0,
        data: Vec::new(),
        done: true,
    })
}

fn register_as(broker_id: i32) -> cpb::RegisterBrokerRequest {
    cpb::RegisterBrokerRequest {
        broker_id,
        incarnation_id: Some(cpb::Uuid {
            value: uuid::Uuid::new_v4().as_bytes().to_vec(),
        }),
        endpoints: vec![cpb::BrokerEndpoint {
            name: "PLAINTEXT".into(),
            host: "127.0.0.1".into(),
            port: 9999,
        }],
        rack: None,
        rpc_address: "127.0.0.1:1".into(),
    }
}

fn forward_create(topic: &str) -> cpb::ForwardAdminRequest {
    cpb::ForwardAdminRequest {
        request_json: serde_json::to_vec(&create_topic(topic, 1, 1)).unwrap(),
    }
}

/// Every call of a stranger's channel fails with a transport error or an authentication
/// refusal; `who` names the stranger in failure messages.
async fn assert_all_refused(addr: &str, tls: Option<ClientTlsConfig>, who: &str) {
    let channel = match connect(addr, tls).await {
        // Refused during the handshake: nothing can be sent.
        Err(_) => return,
        Ok(channel) => channel,
    };
    let refused = |what: &str, result: Result<(), tonic::Status>| {
        let status = result.expect_err(&format!("{who}: {what} was served"));
        assert!(
            matches!(
                status.code(),
                Code::Unavailable
                    | Code::Unknown
                    | Code::Unauthenticated
                    | Code::Internal
                    | Code::Cancelled
            ),
            "{who}: {what}: unexpected {status:?}"
        );
    };
    let mut raft = RaftClient::new(channel.clone());
    refused("Vote", raft.vote(vote_as(1)).await.map(drop));
    refused(
        "AppendEntries",
        raft.append_entries(append_as(1)).await.map(drop),
    );
    refused(
        "InstallSnapshot",
        raft.install_snapshot(snapshot_as(1)).await.map(drop),
    );
    let mut controller = ControllerClient::new(channel);
    refused(
        "RegisterBroker",
        controller.register_broker(register_as(1)).await.map(drop),
    );
    refused(
        "ForwardAdmin",
        controller
            .forward_admin(forward_create("intruder"))
            .await
            .map(drop),
    );
    refused(
        "DescribeQuorum",
        controller
            .describe_quorum(cpb::DescribeQuorumRequest {})
            .await
            .map(drop),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_runs_over_mutual_tls_and_strangers_are_refused() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "cluster");
    let other = Pki::new(dir.path(), "other");
    let mut cluster = tls_cluster(&pki);
    cluster.start_all().await;
    let leader = cluster.leader(Duration::from_secs(15)).await;
    cluster.register_brokers(Duration::from_secs(15)).await;
    let follower = cluster.other_than(leader);

    // Forwarded from a follower to the active controller over TLS, committed everywhere.
    let (resp, index) = cluster
        .node(follower)
        .admin(create_topic("orders", 3, 3), REQUEST_TIMEOUT)
        .await
        .unwrap();
    assert_created(&resp);
    for (id, node) in &cluster.nodes {
        assert!(
            node.wait_applied(index, Duration::from_secs(5)).await,
            "node {id} did not apply index {index}"
        );
    }
    let quorum = cluster
        .node(follower)
        .describe_quorum(REQUEST_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(quorum.leader_id, leader);
    assert_eq!(quorum.voters.len(), 3);

    let addr = cluster.configs[&leader].rpc_advertised.clone();
    // Plaintext, TLS without a client certificate, and a certificate of another CA (naming
    // a real node id) are all refused, by the leader as by a follower.
    for target in [leader, follower] {
        let addr = &cluster.configs[&target].rpc_advertised;
        assert_all_refused(addr, None, "a plaintext client").await;
        assert_all_refused(
            addr,
            Some(pki.client(None)),
            "a client without a certificate",
        )
        .await;
        assert_all_refused(
            addr,
            Some(pki.client(Some(other.identity(1)))),
            "a client with another CA's certificate",
        )
        .await;
    }
    // A client of the right CA whose certificate names no node is refused UNAUTHENTICATED.
    let (cert, key) = pki.issue(&["127.0.0.1".to_string()]);
    let anonymous = tonic::transport::Identity::from_pem(cert, key);
    let channel = connect(&addr, Some(pki.client(Some(anonymous))))
        .await
        .unwrap();
    let status = ControllerClient::new(channel)
        .forward_admin(forward_create("intruder"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    // Nothing the strangers sent took effect: the leadership held, no topic was created.
    let (resp, _) = cluster
        .node(follower)
        .admin(
            AdminRequest::CreateTopics(runnel_controller::api::CreateTopicsRequest {
                topics: Vec::new(),
                validate_only: true,
            }),
            REQUEST_TIMEOUT,
        )
        .await
        .unwrap();
    drop(resp);
    assert_eq!(cluster.leader(Duration::from_secs(5)).await, leader);
    let image = cluster.node(leader).image().borrow().clone();
    assert!(image.image.topic_by_name("intruder").is_none());
    assert!(image.image.topic_by_name("orders").is_some());
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_certificate_speaks_only_for_its_node() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "cluster");
    let mut cluster = tls_cluster(&pki);
    cluster.start_all().await;
    let leader = cluster.leader(Duration::from_secs(15)).await;
    cluster.register_brokers(Duration::from_secs(15)).await;
    let term_before = cluster.node(leader).raft_metrics().current_term;

    // A caller holding node 2's certificate.
    let addr = cluster.configs[&leader].rpc_advertised.clone();
    let channel = connect(&addr, Some(pki.client(Some(pki.identity(2)))))
        .await
        .unwrap();
    let mut raft = RaftClient::new(channel.clone());
    let mut controller = ControllerClient::new(channel);
    let denied = |what: &str, status: tonic::Status| {
        assert_eq!(status.code(), Code::PermissionDenied, "{what}: {status:?}");
    };
    denied("Vote", raft.vote(vote_as(3)).await.unwrap_err());
    denied(
        "AppendEntries",
        raft.append_entries(append_as(3)).await.unwrap_err(),
    );
    denied(
        "InstallSnapshot",
        raft.install_snapshot(snapshot_as(3)).await.unwrap_err(),
    );
    denied(
        "RegisterBroker",
        controller
            .register_broker(register_as(3))
            .await
            .unwrap_err(),
    );
    let heartbeat = cpb::BrokerHeartbeatRequest {
        broker_id: 3,
        incarnation_id: Some(cpb::Uuid {
            value: cluster.node(3).incarnation_id().as_bytes().to_vec(),
        }),
        metadata_applied_index: 0,
        want_shut_down: true,
    };
    denied(
        "BrokerHeartbeat",
        controller.broker_heartbeat(heartbeat).await.unwrap_err(),
    );
    denied(
        "AllocateProducerIds",
        controller
            .allocate_producer_ids(cpb::AllocateProducerIdsRequest {
                broker_id: 3,
                incarnation_id: None,
            })
            .await
            .unwrap_err(),
    );
    denied(
        "AlterPartition",
        controller
            .alter_partition(cpb::AlterPartitionRequest {
                broker_id: 3,
                ..Default::default()
            })
            .await
            .unwrap_err(),
    );

    // As itself, node 2's certificate is served: admin requests need any node, and the
    // registration of node 2 under a new incarnation is answered by the controller (refused,
    // since node 2's own incarnation is live).
    let quorum = controller
        .describe_quorum(cpb::DescribeQuorumRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(quorum.error.is_none(), "{quorum:?}");
    let registered = controller
        .register_broker(register_as(2))
        .await
        .unwrap()
        .into_inner();
    let error = registered.error.expect("a live incarnation holds the id");
    assert_eq!(
        error.code,
        cpb::ErrorCode::DuplicateBrokerRegistration as i32,
        "{error:?}"
    );

    // Nothing changed: the same leader in the same term, node 3 still registered and unfenced.
    assert_eq!(cluster.leader(Duration::from_secs(5)).await, leader);
    assert_eq!(
        cluster.node(leader).raft_metrics().current_term,
        term_before
    );
    let image = cluster.node(leader).image().borrow().clone();
    let three = image.image.broker(3).unwrap();
    assert_eq!(three.incarnation_id, cluster.node(3).incarnation_id());
    assert!(!three.fenced && !three.in_controlled_shutdown);
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refuses_a_keystore_naming_another_node() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "cluster");
    let mut cluster = Cluster::new(1, 0, 1000);
    let mut tls = pki.node_config(2);
    cluster.configs.get_mut(&1).unwrap().rpc_tls = Some(tls.clone());
    let error = runnel_controller::ControllerNode::start(
        cluster.configs[&1].clone(),
        std::sync::Arc::new(common::AnyConfig),
    )
    .await
    .err()
    .expect("node 1 must not start with node 2's certificate");
    let message = error.to_string();
    assert!(
        message.contains("names node 2") && message.contains("node.id is 1"),
        "{message}"
    );
    // A keystore without a key is refused with the property's name.
    tls.keystore_location = tls.truststore_location.clone();
    cluster.configs.get_mut(&1).unwrap().rpc_tls = Some(tls);
    let error = runnel_controller::ControllerNode::start(
        cluster.configs[&1].clone(),
        std::sync::Arc::new(common::AnyConfig),
    )
    .await
    .err()
    .expect("a keystore without a key is refused");
    assert!(
        error.to_string().contains("rpc.ssl.keystore.location"),
        "{error}"
    );
}
