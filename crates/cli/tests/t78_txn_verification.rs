//! Level 78: server-side partition verification (`transaction.partition.verification.enable`)
//! against a real `runnel server`, with raw Kafka requests so that every step is the test's:
//!
//! - `a_late_batch_cannot_open_a_transaction`: a transactional batch to a partition that was
//!   never added to the producer's transaction is refused (INVALID_TXN_STATE before Produce v11,
//!   TRANSACTION_ABORTABLE from v11) and nothing is appended; once the partition is added, the
//!   batches of one request to two partitions are appended; after the commit, a late batch of
//!   the ended transaction is refused, so the last stable offset reaches the log end (no
//!   hanging transaction). A fenced producer's batch gets INVALID_PRODUCER_EPOCH. Three produce
//!   requests pipelined on one connection at the start of a transaction are appended in order
//!   (the first waits for the coordinator; the others must not overtake it). Clients may not
//!   write to `__transaction_state`.
//! - `a_leader_asks_a_coordinator_on_another_node`: three nodes; the partition's leader is not
//!   the transactional id's coordinator, so it asks over the gRPC links: an early batch is
//!   refused, three requests pipelined at the start of the transaction are appended in order
//!   (the first waits for the remote answer; the connection must not let the others overtake
//!   it), and after the commit the last stable offset reaches the log end.
//! - `without_verification_a_late_batch_hangs`: the same late batch with verification off is
//!   appended and leaves a transaction open that nothing will end (what `find-hanging` reports):
//!   the refusal above is verification's doing.

mod cluster;
mod common;

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::{create_topic, Conn, Server};
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, ApiKey, EndTxnRequest, FindCoordinatorRequest,
    InitProducerIdRequest, ListOffsetsRequest, ProduceRequest, ProduceResponse, ProducerId,
    TopicName, TransactionalId,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::records::Compression;
use runnel_client::produce::{encode_batch, new_record, now_ms, ProducerIdentity};

const TOPIC: &str = "verified";
const TXN_ID: &str = "verify-me";

const INVALID_PRODUCER_EPOCH: i16 = 47;
const INVALID_TXN_STATE: i16 = 48;
const TRANSACTION_ABORTABLE: i16 = 120;
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const NOT_COORDINATOR: i16 = 16;
const CONCURRENT_TRANSACTIONS: i16 = 51;
const NOT_ENOUGH_REPLICAS: i16 = 19;

/// One node with a one-replica transaction log.
const ONE_NODE: &[&str] = &[
    "transaction.state.log.num.partitions=2",
    "transaction.state.log.replication.factor=1",
    "transaction.state.log.min.isr=1",
];

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn txn_id() -> TransactionalId {
    TransactionalId(StrBytes::from_static_str(TXN_ID))
}

/// A transactional batch of one record from `producer` at sequence `seq`.
fn txn_batch(producer: ProducerIdentity, seq: i32, value: &str) -> Bytes {
    let mut records = vec![new_record(
        None,
        Some(Bytes::from(value.to_string())),
        now_ms(),
    )];
    records[0].transactional = true;
    encode_batch(
        &mut BytesMut::new(),
        &mut records,
        producer,
        seq,
        Compression::None,
    )
    .expect("encode batch")
}

/// A transactional Produce (acks=all) of `batches` as (partition, batch).
fn produce(batches: Vec<(i32, Bytes)>) -> ProduceRequest {
    ProduceRequest::default()
        .with_transactional_id(Some(txn_id()))
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(TOPIC))
            .with_partition_data(
                batches
                    .into_iter()
                    .map(|(p, b)| {
                        PartitionProduceData::default()
                            .with_index(p)
                            .with_records(Some(b))
                    })
                    .collect(),
            )])
}

/// Each partition's (error code, base offset) in a Produce response, in request order.
fn answers(r: &ProduceResponse) -> Vec<(i16, i64)> {
    r.responses[0]
        .partition_responses
        .iter()
        .map(|p| (p.error_code, p.base_offset))
        .collect()
}

/// Sends one transactional produce per sequence number of `seqs` to `partition`, all before
/// reading any answer; returns each partition answer in order.
fn pipelined(
    conn: &mut Conn,
    version: i16,
    partition: i32,
    producer: ProducerIdentity,
    seqs: std::ops::Range<i32>,
) -> Vec<(i16, i64)> {
    let mut sent = Vec::new();
    for seq in seqs {
        let (correlation, buf) = conn
            .encode_request(
                ApiKey::Produce,
                version,
                &produce(vec![(
                    partition,
                    txn_batch(producer, seq, &format!("p{seq}")),
                )]),
            )
            .unwrap();
        conn.write_frame(&buf).unwrap();
        sent.push(correlation);
    }
    let mut out = Vec::new();
    for correlation in sent {
        let mut body = conn.read_frame().unwrap().expect("a produce response");
        let header = kafka_protocol::messages::ResponseHeader::decode(
            &mut body,
            ApiKey::Produce.response_header_version(version),
        )
        .unwrap();
        assert_eq!(header.correlation_id, correlation);
        let r = ProduceResponse::decode(&mut body, version).unwrap();
        out.extend(answers(&r));
    }
    out
}

/// Retries `f` while the coordinator is loading or the transaction is still ending.
fn retry<T>(what: &str, mut f: impl FnMut() -> (i16, T)) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, out) = f();
        match code {
            0 => return out,
            COORDINATOR_LOAD_IN_PROGRESS
            | COORDINATOR_NOT_AVAILABLE
            | NOT_COORDINATOR
            | CONCURRENT_TRANSACTIONS
                if Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(100));
            }
            other => panic!("{what}: error {other}"),
        }
    }
}

fn init_producer(conn: &mut Conn) -> ProducerIdentity {
    // As clients do: the first FindCoordinator creates the transaction log.
    retry("FindCoordinator", || {
        let r = conn
            .request(
                4,
                &FindCoordinatorRequest::default()
                    .with_key_type(1)
                    .with_coordinator_keys(vec![StrBytes::from_static_str(TXN_ID)]),
            )
            .unwrap();
        (r.coordinators[0].error_code, ())
    });
    retry("InitProducerId", || {
        let r = conn
            .request(
                4,
                &InitProducerIdRequest::default()
                    .with_transactional_id(Some(txn_id()))
                    .with_transaction_timeout_ms(60_000)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
            )
            .unwrap();
        (
            r.error_code,
            ProducerIdentity {
                id: r.producer_id.0,
                epoch: r.producer_epoch,
            },
        )
    })
}

fn add_partitions(conn: &mut Conn, producer: ProducerIdentity, partitions: &[i32]) {
    retry("AddPartitionsToTxn", || {
        let r = conn
            .request(
                3,
                &AddPartitionsToTxnRequest::default()
                    .with_v3_and_below_transactional_id(txn_id())
                    .with_v3_and_below_producer_id(ProducerId(producer.id))
                    .with_v3_and_below_producer_epoch(producer.epoch)
                    .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                        .with_name(name(TOPIC))
                        .with_partitions(partitions.to_vec())]),
            )
            .unwrap();
        let codes: Vec<i16> = r.results_by_topic_v3_and_below[0]
            .results_by_partition
            .iter()
            .map(|p| p.partition_error_code)
            .collect();
        (codes.into_iter().find(|&c| c != 0).unwrap_or(0), ())
    })
}

fn end_txn(conn: &mut Conn, producer: ProducerIdentity, commit: bool) {
    retry("EndTxn", || {
        let r = conn
            .request(
                3,
                &EndTxnRequest::default()
                    .with_transactional_id(txn_id())
                    .with_producer_id(ProducerId(producer.id))
                    .with_producer_epoch(producer.epoch)
                    .with_committed(commit),
            )
            .unwrap();
        (r.error_code, ())
    })
}

/// Latest offset of `partition` under read_uncommitted (the high watermark) and
/// read_committed (the last stable offset).
fn latest(conn: &mut Conn, partition: i32) -> (i64, i64) {
    let mut out = [0i64; 2];
    for (i, isolation) in [0i8, 1].into_iter().enumerate() {
        let r = conn
            .request(
                4,
                &ListOffsetsRequest::default()
                    .with_replica_id(kafka_protocol::messages::BrokerId(-1))
                    .with_isolation_level(isolation)
                    .with_topics(vec![ListOffsetsTopic::default()
                        .with_name(name(TOPIC))
                        .with_partitions(vec![ListOffsetsPartition::default()
                            .with_partition_index(partition)
                            .with_timestamp(-1)])]),
            )
            .unwrap();
        let p = &r.topics[0].partitions[0];
        assert_eq!(p.error_code, 0, "ListOffsets {partition}: {p:?}");
        out[i] = p.offset;
    }
    (out[0], out[1])
}

/// Waits until the transaction's markers are written: the last stable offset of `partition`
/// reaches its high watermark `hw`.
fn wait_stable(conn: &mut Conn, partition: i32, hw: i64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (h, lso) = latest(conn, partition);
        if h == hw && lso == hw {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "partition {partition}: high watermark {h}, last stable offset {lso}, expected {hw}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a transaction on partitions 0 and 1 with one record each and commits it; returns the
/// producer and its next sequence on partition 0.
fn committed_transaction(conn: &mut Conn, version: i16) -> ProducerIdentity {
    let producer = init_producer(conn);
    // Partition 0 is not in the transaction yet: refused, nothing appended.
    let r = conn
        .request(
            version,
            &produce(vec![(0, txn_batch(producer, 0, "early"))]),
        )
        .unwrap();
    let refused = if version >= 11 {
        TRANSACTION_ABORTABLE
    } else {
        INVALID_TXN_STATE
    };
    assert_eq!(answers(&r), vec![(refused, -1)], "v{version}");
    assert_eq!(latest(conn, 0), (0, 0));
    add_partitions(conn, producer, &[0, 1]);
    let r = conn
        .request(
            version,
            &produce(vec![
                (0, txn_batch(producer, 0, "a")),
                (1, txn_batch(producer, 0, "b")),
            ]),
        )
        .unwrap();
    assert_eq!(answers(&r), vec![(0, 0), (0, 0)]);
    // The open transaction holds the last stable offset.
    assert_eq!(latest(conn, 0), (1, 0));
    end_txn(conn, producer, true);
    // Record 0 and the commit marker.
    wait_stable(conn, 0, 2);
    wait_stable(conn, 1, 2);
    producer
}

#[test]
fn a_late_batch_cannot_open_a_transaction() {
    let server = Server::start_with(ONE_NODE);
    create_topic(server.socket_addr(), TOPIC, 2).unwrap();
    let mut conn = Conn::connect(server.socket_addr()).unwrap();
    let version = 9;
    let producer = committed_transaction(&mut conn, version);

    // A retry of a batch of the ended transaction (the next sequence) arrives late.
    let r = conn
        .request(version, &produce(vec![(0, txn_batch(producer, 1, "late"))]))
        .unwrap();
    assert_eq!(answers(&r), vec![(INVALID_TXN_STATE, -1)]);
    assert_eq!(latest(&mut conn, 0), (2, 2), "no hanging transaction");

    // Produce v11 knows TRANSACTION_ABORTABLE.
    let r = conn
        .request(11, &produce(vec![(0, txn_batch(producer, 1, "late"))]))
        .unwrap();
    assert_eq!(answers(&r), vec![(TRANSACTION_ABORTABLE, -1)]);

    // Pipelined at the start of a transaction: three requests on one connection, sent before
    // any answer. The first waits for the coordinator; the others must not be appended first
    // (they would be out of sequence).
    add_partitions(&mut conn, producer, &[0]);
    let offsets = pipelined(&mut conn, version, 0, producer, 1..4);
    assert_eq!(offsets, vec![(0, 2), (0, 3), (0, 4)]);
    end_txn(&mut conn, producer, false);
    wait_stable(&mut conn, 0, 6);

    // A producer fenced by a newer incarnation gets INVALID_PRODUCER_EPOCH.
    let newer = init_producer(&mut conn);
    assert!(newer.epoch > producer.epoch);
    let r = conn
        .request(
            version,
            &produce(vec![(0, txn_batch(producer, 4, "zombie"))]),
        )
        .unwrap();
    assert_eq!(answers(&r), vec![(INVALID_PRODUCER_EPOCH, -1)]);
    assert_eq!(latest(&mut conn, 0), (6, 6));

    // Clients may not write to the transaction log (INVALID_TOPIC_EXCEPTION).
    let (code, _, msg) = common::produce_verbose(
        &mut conn,
        "__transaction_state",
        0,
        common::record_batch(&[b"x"], Compression::None),
    )
    .unwrap();
    assert_eq!(code, 17, "{msg}");
}

#[test]
fn without_verification_a_late_batch_hangs() {
    let mut sets = ONE_NODE.to_vec();
    sets.push("transaction.partition.verification.enable=false");
    let server = Server::start_with(&sets);
    create_topic(server.socket_addr(), TOPIC, 2).unwrap();
    let mut conn = Conn::connect(server.socket_addr()).unwrap();
    let producer = init_producer(&mut conn);
    add_partitions(&mut conn, producer, &[0]);
    let r = conn
        .request(9, &produce(vec![(0, txn_batch(producer, 0, "a"))]))
        .unwrap();
    assert_eq!(answers(&r), vec![(0, 0)]);
    end_txn(&mut conn, producer, true);
    wait_stable(&mut conn, 0, 2);
    let r = conn
        .request(9, &produce(vec![(0, txn_batch(producer, 1, "late"))]))
        .unwrap();
    assert_eq!(answers(&r), vec![(0, 2)], "appended without verification");
    // The late batch opened a transaction its coordinator does not know: it stays open.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(latest(&mut conn, 0), (3, 2));
}

#[test]
fn a_leader_asks_a_coordinator_on_another_node() {
    let mut c = cluster::Cluster::start(
        3,
        &[
            "broker.heartbeat.interval.ms=250",
            "controller.quorum.election.timeout.ms=500",
            "transaction.state.log.num.partitions=3",
        ],
    );
    let view = c.create_topic_everywhere(TOPIC, 3, 3, &[]);
    // The coordinator of the transactional id (FindCoordinator creates the transaction log).
    let first = c.running()[0];
    let mut any = Conn::connect(c.addr(first)).unwrap();
    let coordinator = retry("FindCoordinator", || {
        let r = any
            .request(
                4,
                &FindCoordinatorRequest::default()
                    .with_key_type(1)
                    .with_coordinator_keys(vec![StrBytes::from_static_str(TXN_ID)]),
            )
            .unwrap();
        (r.coordinators[0].error_code, r.coordinators[0].node_id.0)
    });
    let (partition, leader) = view.topics[TOPIC]
        .iter()
        .map(|(&p, v)| (p, v.leader))
        .find(|&(_, l)| l != coordinator)
        .expect("a partition led by another node than the coordinator");
    let mut coord = Conn::connect(c.addr(coordinator)).unwrap();
    let mut lead = Conn::connect(c.addr(leader)).unwrap();
    let producer = init_producer(&mut coord);
    let version = 9;
    // Until the leader's metadata names the coordinator, it answers NOT_ENOUGH_REPLICAS
    // (retriable).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = lead
            .request(
                version,
                &produce(vec![(partition, txn_batch(producer, 0, "early"))]),
            )
            .unwrap();
        if answers(&r) == vec![(NOT_ENOUGH_REPLICAS, -1)] && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        assert_eq!(answers(&r), vec![(INVALID_TXN_STATE, -1)]);
        break;
    }
    add_partitions(&mut coord, producer, &[partition]);
    let offsets = pipelined(&mut lead, version, partition, producer, 0..3);
    assert_eq!(offsets, vec![(0, 0), (0, 1), (0, 2)]);
    end_txn(&mut coord, producer, true);
    wait_stable(&mut lead, partition, 4);
}
