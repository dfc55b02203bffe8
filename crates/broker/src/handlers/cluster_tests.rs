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
use crate::context::RequestContext;
use crate::{BoundServer, BrokerConfig, SharedBroker};

async fn reply(r: Reply) -> ResponseKind {
    match r {
        Reply::Now(k) => k,
        Reply::Later(f) => f.await,
        Reply::LaterOrNone(f) => f.await.expect("expected a response"),
        Reply::Ordered(f, _) => f.await.expect("expected a response"),
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
        timestamp: crate::clock::now_ms(),
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

/// Metadata through the broker's own services.
fn metadata(b: &SharedBroker, ctx: &RequestContext, req: MetadataRequest, version: i16) -> Reply {
    let auto = meta::AutoCreate {
        enabled: b.config().auto_create_topics,
        offsets_topic: b.groups().topic_spec(),
    };
    meta::handle(
        b.metadata(),
        b.controller(),
        b.authorizer(),
        auto,
        ctx,
        req,
        version,
    )
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
    let svc = produce::ProduceServices {
        partitions: b.partitions().clone(),
        fence: b.fence().clone(),
        metadata: b.metadata().clone(),
        authorizer: b.authorizer().clone(),
        verifier: Some(b.txn_verifier().clone()),
    };
    let ResponseKind::Produce(r) = reply(produce::handle(
        &svc,
        &crate::context::RequestContext::internal(kafka_protocol::messages::ApiKey::Metadata, 0),
        req,
        11,
    ))
    .await
    else {
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
    let ResponseKind::Metadata(md) = reply(metadata(
        &brokers[1],
        &crate::context::RequestContext::internal(kafka_protocol::messages::ApiKey::Metadata, 0),
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
    let ResponseKind::CreateTopics(r) = reply(super::admin::create_topics(
        &super::AdminServices::new(&brokers[0]),
        &crate::context::RequestContext::internal(kafka_protocol::messages::ApiKey::Metadata, 0),
        create,
        7,
    ))
    .await
    else {
        panic!()
    };
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0]);
    for b in &brokers {
        eventually("every replica hosts the three partitions", || {
            (0..3).all(|p| b.partitions().get_by("t", p).is_some())
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
            let me = b.config().node_id;
            eventually("leadership follows the image", || {
                b.partitions()
                    .get_by("t", p)
                    .unwrap()
                    .leadership()
                    .is_leader
                    == (me == leader)
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
    let ResponseKind::DeleteTopics(r) = reply(super::admin::delete_topics(
        &super::AdminServices::new(&brokers[2]),
        &crate::context::RequestContext::internal(kafka_protocol::messages::ApiKey::Metadata, 0),
        del,
        5,
    ))
    .await
    else {
        panic!()
    };
    assert_eq!(r.responses[0].error_code, 0, "{r:?}");
    for (i, b) in brokers.iter().enumerate() {
        eventually("every replica deletes the logs", || {
            b.partitions().all().is_empty() && !dirs[i].path().join("t-0").exists()
        })
        .await;
    }
    drop(brokers);
    for s in servers {
        s.close().await;
    }
}

async fn standalone(
    dir: &std::path::Path,
    node_id: i32,
) -> Result<BoundServer, crate::BrokerError> {
    let props: Vec<(String, String)> = [
        ("log.dirs", dir.display().to_string()),
        ("listeners", "PLAINTEXT://127.0.0.1:0".to_string()),
        ("node.id", node_id.to_string()),
        ("offsets.topic.num.partitions", "2".to_string()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    BoundServer::bind(BrokerConfig::from_properties(&props).unwrap()).await
}

/// The metadata log's name is reserved everywhere, `__consumer_offsets` keeps its partition
/// count, and the data directory is tied to its node and cluster by `meta.properties`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_names_internal_partitions_and_the_data_directorys_identity() {
    let dir = tempfile::tempdir().unwrap();
    let server = standalone(dir.path(), 1).await.unwrap();
    let b = server.broker.clone();
    let meta_dir = b.config().metadata_dir();

    // CreateTopics and Metadata auto-creation refuse the metadata log's name.
    let create = CreateTopicsRequest::default()
        .with_timeout_ms(15_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(s("__cluster_metadata")))
            .with_num_partitions(1)
            .with_replication_factor(1)]);
    let ResponseKind::CreateTopics(r) = reply(super::admin::create_topics(
        &super::AdminServices::new(&b),
        &crate::context::RequestContext::internal(kafka_protocol::messages::ApiKey::Metadata, 0),
        create,
        7,
    ))
    .await
    else {
        panic!()
    };
    assert_eq!(
        r.topics[0].error_code,
        ResponseError::InvalidTopicException.code()
    );
    let req = MetadataRequest::default()
        .with_allow_auto_topic_creation(true)
        .with_topics(Some(vec![
            kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                .with_name(Some(TopicName(s("__cluster_metadata")))),
        ]));
    let ResponseKind::Metadata(m) = reply(metadata(
        &b,
        &crate::context::RequestContext::internal(kafka_protocol::messages::ApiKey::Metadata, 0),
        req,
        12,
    ))
    .await
    else {
        panic!()
    };
    assert_eq!(
        m.topics[0].error_code,
        ResponseError::InvalidTopicException.code()
    );
    assert!(b
        .image()
        .image
        .topic_by_name("__cluster_metadata")
        .is_none());
    // Produce to it finds no such partition, and the metadata log is untouched.
    assert_eq!(
        produce_code(&b, "__cluster_metadata", 0).await.0,
        ResponseError::UnknownTopicOrPartition.code()
    );
    assert!(std::fs::read_dir(&meta_dir).unwrap().next().is_some());

    // CreatePartitions on __consumer_offsets is refused by the broker.
    crate::coordinators::topics::ensure_internal_topic(
        b.metadata(),
        b.controller(),
        &b.groups().topic_spec(),
    )
    .await
    .unwrap();
    let req = kafka_protocol::messages::CreatePartitionsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![
            kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic::default()
                .with_name(TopicName(s("__consumer_offsets")))
                .with_count(5),
        ]);
    let ResponseKind::CreatePartitions(r) = reply(super::admin::create_partitions(
        &super::AdminServices::new(&b),
        &crate::context::RequestContext::internal(kafka_protocol::messages::ApiKey::Metadata, 0),
        req,
        3,
    ))
    .await
    else {
        panic!()
    };
    assert_eq!(
        r.results[0].error_code,
        ResponseError::InvalidRequest.code()
    );
    assert!(r.results[0]
        .error_message
        .as_deref()
        .is_some_and(|m| m.contains("internal topic")));
    assert_eq!(
        b.image()
            .image
            .topic_by_name("__consumer_offsets")
            .unwrap()
            .partitions
            .len(),
        2
    );
    // DeleteRecords on it is refused, as Kafka refuses it on internal topics.
    let req = kafka_protocol::messages::DeleteRecordsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![
            kafka_protocol::messages::delete_records_request::DeleteRecordsTopic::default()
                .with_name(TopicName(s("__consumer_offsets")))
                .with_partitions(vec![
                    kafka_protocol::messages::delete_records_request::DeleteRecordsPartition::default()
                        .with_partition_index(0)
                        .with_offset(-1),
                ]),
        ]);
    let r = super::admin::delete_records(
        b.partitions(),
        b.fence(),
        b.metadata(),
        b.authorizer(),
        &crate::context::RequestContext::internal(
            kafka_protocol::messages::ApiKey::DeleteRecords,
            2,
        ),
        req,
    );
    assert_eq!(
        r.topics[0].partitions[0].error_code,
        ResponseError::InvalidTopicException.code()
    );

    // A failed open (log data without partition.metadata) is retried without a new image.
    let blocked = dir.path().join("later-0");
    std::fs::create_dir_all(&blocked).unwrap();
    std::fs::write(blocked.join("00000000000000000000.log"), b"data").unwrap();
    let create = CreateTopicsRequest::default()
        .with_timeout_ms(15_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(s("later")))
            .with_num_partitions(1)
            .with_replication_factor(1)]);
    let ResponseKind::CreateTopics(r) = reply(super::admin::create_topics(
        &super::AdminServices::new(&b),
        &crate::context::RequestContext::internal(kafka_protocol::messages::ApiKey::Metadata, 0),
        create,
        7,
    ))
    .await
    else {
        panic!()
    };
    assert_eq!(r.topics[0].error_code, 0);
    assert!(b.partitions().get_by("later", 0).is_none());
    assert!(blocked.join("00000000000000000000.log").exists());
    // The operator moves the data away; the reconciler picks the partition up by itself.
    std::fs::remove_file(blocked.join("00000000000000000000.log")).unwrap();
    // The partition is in the map a moment before its leadership is set (NOT_LEADER meanwhile).
    eventually("the failed open is retried", || {
        b.partitions()
            .get_by("later", 0)
            .is_some_and(|p| p.leadership().is_leader)
    })
    .await;
    assert_eq!(produce_code(&b, "later", 0).await.0, 0);

    // meta.properties ties the directory to this node and cluster.
    let props = crate::meta_properties::read(dir.path()).unwrap().unwrap();
    let cluster_id = super::cluster_id(&b.image().image);
    assert_eq!(props.node_id, 1);
    assert_eq!(props.cluster_id, cluster_id);

    // A fenced broker serves no partition (and no group).
    assert!(b.fence().is_armed() || !b.fence().is_fenced());
    b.fence().fail("test: stop serving".into());
    assert_eq!(
        produce_code(&b, "later", 0).await.0,
        ResponseError::NotLeaderOrFollower.code()
    );
    drop(b);
    server.close().await;

    // Another node.id on this directory: refused.
    let err = standalone(dir.path(), 2).await.err().expect("must refuse");
    assert!(err.to_string().contains("node.id 1"), "{err}");
    // Another cluster: refused before any partition is touched.
    crate::meta_properties::write(
        dir.path(),
        &crate::meta_properties::MetaProperties {
            node_id: 1,
            cluster_id: "another-cluster".into(),
        },
    )
    .unwrap();
    let err = standalone(dir.path(), 1).await.err().expect("must refuse");
    assert!(err.to_string().contains("another-cluster"), "{err}");
    assert!(dir.path().join("later-0/partition.metadata").exists());
    // The metadata log is gone: refused, nothing deleted.
    std::fs::remove_dir_all(&meta_dir).unwrap();
    let err = standalone(dir.path(), 1).await.err().expect("must refuse");
    assert!(
        err.to_string().contains("the metadata log is missing"),
        "{err}"
    );
    assert!(dir.path().join("later-0/partition.metadata").exists());
    assert!(dir
        .path()
        .join("__consumer_offsets-0/partition.metadata")
        .exists());
}
