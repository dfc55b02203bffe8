//! Three voters over gRPC on loopback: one leader, requests through followers are forwarded
//! and committed on every node, the quorum is described from anywhere, and a minority cannot
//! commit (it times out instead of hanging).

mod common;

use std::time::{Duration, Instant};

use common::{assert_created, create_topic, init_tracing, Cluster, REQUEST_TIMEOUT};
use runnel_controller::api::AlterPartitionRequest;
use runnel_controller::rpc::pb::controller as pb;
use runnel_controller::rpc::pb::controller::controller_client::ControllerClient;
use runnel_controller::ControllerError;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_voters_elect_one_leader_forward_and_converge() {
    init_tracing();
    let mut cluster = Cluster::new(3, 0, 1000);
    cluster.start_all().await;
    let leader = cluster.leader(Duration::from_secs(10)).await;
    cluster.register_brokers(Duration::from_secs(10)).await;
    let follower = cluster.other_than(leader);

    // Sent to a follower: forwarded to the active controller and committed there.
    let (resp, index) = cluster
        .node(follower)
        .admin(create_topic("orders", 3, 3), REQUEST_TIMEOUT)
        .await
        .unwrap();
    assert_created(&resp);
    assert!(index > 0, "a created topic is written to the log");

    for (id, node) in &cluster.nodes {
        assert!(
            node.wait_applied(index, Duration::from_secs(5)).await,
            "node {id} did not apply index {index}"
        );
        let image = node.image().borrow().clone();
        let topic = image
            .image
            .topic_by_name("orders")
            .expect("topic replicated");
        assert_eq!(topic.partitions.len(), 3, "node {id}");
        assert_eq!(image.image.cluster_id(), Some("test-cluster-id-000001"));
    }
    // The images are the same replay of the same log.
    let first = cluster.node(1).image().borrow().image.clone();
    for id in [2, 3] {
        let node = cluster.node(id);
        node.wait_applied(index, Duration::from_secs(5)).await;
        assert_eq!(node.image().borrow().image, first, "node {id} diverged");
    }

    // The same name again is refused by the manager, not by the log.
    let (resp, again) = cluster
        .node(follower)
        .admin(create_topic("orders", 1, 1), REQUEST_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(again, 0, "a refused request writes nothing");
    let runnel_controller::api::AdminResponse::CreateTopics(r) = resp else {
        panic!("wrong response kind")
    };
    assert!(matches!(
        r.topics[0].1,
        Err(ControllerError::TopicAlreadyExists(_))
    ));

    // Producer ids and AlterPartition travel as typed protobuf from followers too.
    let first = cluster
        .node(follower)
        .allocate_producer_ids(REQUEST_TIMEOUT)
        .await
        .unwrap();
    let second = cluster
        .node(leader)
        .allocate_producer_ids(REQUEST_TIMEOUT)
        .await
        .unwrap();
    assert!(first.size > 0);
    assert!(
        second.first_producer_id >= first.first_producer_id + i64::from(first.size),
        "overlapping blocks {first:?} {second:?}"
    );

    let image = cluster.node(leader).image().borrow().clone();
    let topic = image.image.topic_by_name("orders").unwrap().clone();
    let (partition, reg) = topic
        .partitions
        .iter()
        .find(|(_, p)| p.leader != leader)
        .expect("some partition is led by a follower");
    let partition_leader = cluster.node(reg.leader).clone();
    let shrunk: Vec<i32> = vec![reg.leader];
    let state = partition_leader
        .alter_partition(
            AlterPartitionRequest {
                broker_id: reg.leader,
                incarnation_id: partition_leader.incarnation_id(),
                topic_id: topic.topic_id,
                partition: *partition,
                leader_epoch: reg.leader_epoch,
                partition_epoch: reg.partition_epoch,
                new_isr: shrunk.clone(),
            },
            REQUEST_TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(state.isr, shrunk);
    assert_eq!(state.leader, reg.leader);
    assert!(state.partition_epoch > reg.partition_epoch);
    // A stale partition epoch is refused with its own error kind, across the wire.
    let stale = partition_leader
        .alter_partition(
            AlterPartitionRequest {
                broker_id: reg.leader,
                incarnation_id: partition_leader.incarnation_id(),
                topic_id: topic.topic_id,
                partition: *partition,
                leader_epoch: reg.leader_epoch,
                partition_epoch: reg.partition_epoch,
                new_isr: reg.isr.clone(),
            },
            REQUEST_TIMEOUT,
        )
        .await;
    assert!(
        matches!(stale, Err(ControllerError::InvalidUpdateVersion(_))),
        "{stale:?}"
    );

    // On the wire, a follower refuses with a typed NOT_CONTROLLER naming the leader.
    let addr = &cluster.configs[&follower].rpc_advertised;
    let mut raw = ControllerClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let refused = raw
        .describe_quorum(pb::DescribeQuorumRequest {})
        .await
        .unwrap()
        .into_inner()
        .error
        .expect("a follower refuses");
    assert_eq!(refused.code, pb::ErrorCode::NotController as i32);
    assert_eq!(refused.leader_id, leader);
    let garbage = raw
        .forward_admin(pb::ForwardAdminRequest {
            request_json: b"{not json".to_vec(),
        })
        .await
        .unwrap()
        .into_inner()
        .error
        .expect("undecodable admin JSON is refused");
    assert_eq!(garbage.code, pb::ErrorCode::InvalidRequest as i32);

    // DescribeQuorum from a follower answers the leader's view.
    let quorum = cluster
        .node(follower)
        .describe_quorum(REQUEST_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(quorum.leader_id, leader);
    assert!(quorum.leader_epoch >= 1);
    assert!(quorum.high_watermark >= index as i64);
    let mut voters: Vec<i32> = quorum.voters.iter().map(|v| v.replica_id).collect();
    voters.sort();
    assert_eq!(voters, vec![1, 2, 3]);
    assert!(quorum.observers.is_empty());
    for v in &quorum.voters {
        assert!(v.log_end_offset >= index as i64, "{v:?} lags");
        assert!(v.last_fetch_timestamp > 0, "{v:?} never fetched");
    }
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_times_out_instead_of_committing() {
    init_tracing();
    let mut cluster = Cluster::new(3, 0, 1000);
    cluster.start_all().await;
    let leader = cluster.leader(Duration::from_secs(10)).await;
    cluster.register_brokers(Duration::from_secs(10)).await;
    let (resp, _) = cluster
        .node(leader)
        .admin(create_topic("before", 1, 1), REQUEST_TIMEOUT)
        .await
        .unwrap();
    assert_created(&resp);

    // Keep the old leader (worst case: it still believes it leads) and stop the other two.
    for id in [1, 2, 3] {
        if id != leader {
            cluster.stop(id).await;
        }
    }
    let timeout = Duration::from_millis(1500);
    let started = Instant::now();
    let result = cluster
        .node(leader)
        .admin(create_topic("after", 1, 1), timeout)
        .await;
    let elapsed = started.elapsed();
    assert!(
        matches!(result, Err(ControllerError::Timeout(_))),
        "a minority answered {result:?}"
    );
    assert!(
        elapsed < timeout + Duration::from_millis(500),
        "timed out late: {elapsed:?}"
    );
    assert!(
        cluster
            .node(leader)
            .image()
            .borrow()
            .image
            .topic_by_name("after")
            .is_none(),
        "a minority applied a write"
    );
    cluster.stop_all().await;
}
