//! What the broker's multi-node tests share: two nodes in one process, topics created through
//! the controller, and a record batch to append.
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use runnel_broker::{BoundServer, Broker, BrokerConfig};
use runnel_controller::api::{AdminRequest, CreatableTopic, CreateTopicsRequest};

pub fn free_addrs(n: usize) -> Vec<std::net::SocketAddr> {
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners.iter().map(|l| l.local_addr().unwrap()).collect()
}

/// Nodes 1 and 2, both voters and brokers, each with `extra(id)` on top of fast-failure test
/// settings; with their gRPC addresses.
pub async fn start_nodes(
    root: &Path,
    extra: impl Fn(i32) -> Vec<(String, String)>,
) -> Vec<(BoundServer, String)> {
    let rpc = free_addrs(2);
    let voters = format!("1@{},2@{}", rpc[0], rpc[1]);
    let binds = [1, 2].map(|id| {
        let mut props: Vec<(String, String)> = [
            ("node.id", id.to_string()),
            (
                "log.dirs",
                root.join(format!("node-{id}")).display().to_string(),
            ),
            ("listeners", "PLAINTEXT://127.0.0.1:0".to_string()),
            ("controller.quorum.voters", voters.clone()),
            ("controller.quorum.election.timeout.ms", "300".to_string()),
            ("broker.heartbeat.interval.ms", "100".to_string()),
            ("broker.session.timeout.ms", "1500".to_string()),
            ("replica.fetch.wait.max.ms", "100".to_string()),
            ("replica.fetch.backoff.ms", "100".to_string()),
            ("offsets.topic.replication.factor", "1".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        props.extend(extra(id));
        BoundServer::bind(BrokerConfig::from_properties(&props).unwrap())
    });
    let [a, b] = binds;
    let (a, b) = tokio::join!(a, b);
    vec![
        (a.unwrap(), rpc[0].to_string()),
        (b.unwrap(), rpc[1].to_string()),
    ]
}

/// A topic of one partition on `replicas` (the first leads).
pub fn topic(name: &str, replicas: Vec<i32>) -> CreatableTopic {
    CreatableTopic {
        name: name.into(),
        num_partitions: -1,
        replication_factor: -1,
        assignments: [(0, replicas)].into_iter().collect(),
        configs: Vec::new(),
        internal: false,
    }
}

/// Creates `topics` through `broker`'s controller, retrying while the quorum forms.
pub async fn create_topics(broker: &Broker, topics: Vec<CreatableTopic>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let created = broker
            .controller()
            .admin(
                AdminRequest::CreateTopics(CreateTopicsRequest {
                    topics: topics.clone(),
                    validate_only: false,
                }),
                Duration::from_secs(10),
            )
            .await;
        match created {
            Ok(_) => return,
            Err(e) if Instant::now() < deadline => {
                eprintln!("create topics: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("create topics: {e}"),
        }
    }
}

/// One record batch (magic v2) holding the value `v`.
pub fn batch() -> Bytes {
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
        timestamp: 1_700_000_000_000,
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
