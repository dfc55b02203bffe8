//! An in-process three-node cluster: three brokers, each with its member of a three-voter
//! metadata quorum on loopback gRPC, driven through the handlers. It checks that the brokers
//! serve one cluster-wide truth: every broker sees the others, every replica hosts its
//! partitions, exactly one broker leads each partition and only it accepts produce requests,
//! and a deletion removes the logs on every replica.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    CreateTopicsRequest, DeleteTopicsRequest, MetadataRequest, ProduceRequest, ResponseKind,
    TopicName,
};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::{meta, produce, s, Reply};
use crate::{BoundServer, BrokerConfig, SharedBroker};

async fn reply(r: Reply) -> ResponseKind {
    match r {
        Reply::Now(k) => k,
        Reply::Later(f) => f.await,
        Reply::NoResponse => panic!("expected a response"),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn batch() -> Bytes {
    let records = [Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: crate::now_ms(),
        key: None,
        value: Some(Bytes::from_static(b"v")),
        headers: Default::default(),
    }];
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

async fn produce_code(b: &SharedBroker, topic: &str, partition: i32) -> (i16, i32) {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(s(topic)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch()))])]);
    let ResponseKind::Produce(r) = reply(produce::handle(b, req, 11)).await else {
        panic!()
    };
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.current_leader.leader_id.0)
}

/// Polls `cond` every 50 ms for up to 20 s.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_brokers_serve_one_cluster() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let voters = (1..=3)
        .map(|id| format!("{id}@127.0.0.1:{}", free_port()))
        .collect::<Vec<_>>()
        .join(",");
    let config = |i: usize| {
        let props: Vec<(String, String)> = [
            ("node.id", (i + 1).to_string()),
            ("log.dirs", dirs[i].path().display().to_string()),
            ("listeners", "PLAINTEXT://127.0.0.1:0".to_string()),
            ("controller.quorum.voters", voters.clone()),
            ("broker.heartbeat.interval.ms", "100".to_string()),
            ("broker.session.timeout.ms", "2000".to_string()),
            ("controller.quorum.election.timeout.ms", "300".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        BrokerConfig::from_properties(&props).unwrap()
    };
    let (a, b, c) = tokio::join!(
        BoundServer::bind(config(0)),
        BoundServer::bind(config(1)),
        BoundServer::bind(config(2))
    );
    let servers = [a.unwrap(), b.unwrap(), c.unwrap()];
    let brokers: Vec<SharedBroker> = servers.iter().map(|s| s.broker.clone()).collect();
    for b in &brokers {
        eventually("every broker sees three unfenced brokers", || {
            b.image().image.brokers().filter(|r| !r.fenced).count() == 3
        })
        .await;
    }

    // Metadata from any broker lists all three and the active controller.
    let ResponseKind::Metadata(md) = reply(meta::handle(
        &brokers[1],
        MetadataRequest::default().with_topics(Some(vec![])),
        12,
    ))
    .await
    else {
        panic!()
    };
    let mut ids: Vec<i32> = md.brokers.iter().map(|b| b.node_id.0).collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 2, 3]);
    assert!((1..=3).contains(&md.controller_id.0), "{md:?}");

    // A topic with three replicas per partition, created through broker 1.
    let create = CreateTopicsRequest::default()
        .with_timeout_ms(15_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(s("t")))
            .with_num_partitions(3)
            .with_replication_factor(3)]);
    let ResponseKind::CreateTopics(r) =
        reply(super::admin::create_topics(&brokers[0], create, 7)).await
    else {
        panic!()
    };
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0]);
    for b in &brokers {
        eventually("every replica hosts the three partitions", || {
            (0..3).all(|p| b.replicas.get_by("t", p).is_some())
        })
        .await;
    }
    for p in 0..3 {
        let leader = brokers[0]
            .image()
            .image
            .topic_by_name("t")
            .unwrap()
            .partitions[&p]
            .leader;
        assert!((1..=3).contains(&leader));
        for b in &brokers {
            let me = b.config.node_id;
            eventually("leadership follows the image", || {
                b.replicas.get_by("t", p).unwrap().leadership().is_leader == (me == leader)
            })
            .await;
            let (code, hint) = produce_code(b, "t", p).await;
            if me == leader {
                assert_eq!(code, 0, "the leader {me} accepts produce to t-{p}");
            } else {
                assert_eq!(
                    code,
                    ResponseError::NotLeaderOrFollower.code(),
                    "broker {me}, t-{p}"
                );
                assert_eq!(hint, leader, "KIP-951 leader hint");
            }
        }
    }

    // Deleting the topic through broker 3 removes its logs from every replica.
    let del = DeleteTopicsRequest::default()
        .with_timeout_ms(15_000)
        .with_topic_names(vec![TopicName(s("t"))]);
    let ResponseKind::DeleteTopics(r) =
        reply(super::admin::delete_topics(&brokers[2], del, 5)).await
    else {
        panic!()
    };
    assert_eq!(r.responses[0].error_code, 0, "{r:?}");
    for (i, b) in brokers.iter().enumerate() {
        eventually("every replica deletes the logs", || {
            b.replicas.all().is_empty() && !dirs[i].path().join("t-0").exists()
        })
        .await;
    }
    drop(brokers);
    for s in servers {
        s.close().await;
    }
}
