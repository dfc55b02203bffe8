//! Inspecting transactions (KIP-664): ListTransactions (every broker answers for the
//! transaction coordinators it hosts), DescribeTransactions (at the transactional id's
//! coordinator, found with FindCoordinator key type 1) and DescribeProducers (at a partition's
//! leader, or a broker of the caller's choice); and an administrator's abort of a hanging
//! transaction (WriteTxnMarkers at the partition's leader).
//!
//! The calls return what the brokers answered; per-item Kafka errors come back as
//! [`KafkaError`]s for the caller to word, and only retriable states (a coordinator loading or
//! moving, a leader moving) are retried here.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    ApiKey, DescribeProducersRequest, DescribeTransactionsRequest, ListTransactionsRequest,
    ProducerId, TopicName, TransactionalId, WriteTxnMarkersRequest,
};
use kafka_protocol::protocol::StrBytes;

use crate::client::{backoff, codes, Client, CoordinatorType, KafkaError, Target};

/// How long a lookup keeps retrying a coordinator that is loading or a leader that moved.
const PATIENCE: Duration = Duration::from_secs(30);

/// One transaction as ListTransactions lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionListing {
    pub transactional_id: String,
    pub producer_id: i64,
    /// Kafka's state name: `Empty`, `Ongoing`, `PrepareCommit`, `CompleteCommit`, ...
    pub state: String,
}

/// What ListTransactions keeps; empty filters keep everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    pub states: Vec<String>,
    pub producer_ids: Vec<i64>,
    /// Only transactions running longer than this many ms (ListTransactions v1).
    pub duration_ms: Option<i64>,
}

/// ListTransactions sent to every broker of the cluster: broker id -> its listings, as each
/// answered (a broker lists the transactions of the coordinator partitions it leads). A broker
/// still loading its coordinator partitions is asked again for up to 30 s.
pub async fn list_transactions(
    client: &mut Client,
    filter: &ListFilter,
) -> Result<BTreeMap<i32, Vec<TransactionListing>>> {
    client.refresh(Some(&[])).await?;
    let brokers: Vec<i32> = client.meta.brokers.keys().copied().collect();
    let mut out = BTreeMap::new();
    for id in brokers {
        out.insert(id, list_on_broker(client, id, filter).await?);
    }
    Ok(out)
}

/// ListTransactions on broker `id`.
pub async fn list_on_broker(
    client: &mut Client,
    id: i32,
    filter: &ListFilter,
) -> Result<Vec<TransactionListing>> {
    let version = client.broker(id).await?.version(ApiKey::ListTransactions)?;
    let mut req = ListTransactionsRequest::default();
    req.state_filters = filter
        .states
        .iter()
        .map(|s| StrBytes::from_string(s.clone()))
        .collect();
    req.producer_id_filters = filter.producer_ids.iter().map(|p| ProducerId(*p)).collect();
    if let Some(ms) = filter.duration_ms {
        if version < 1 {
            bail!("broker {id} cannot filter transactions by duration (ListTransactions v1)");
        }
        req.duration_filter = ms;
    }
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut attempt = 0;
    loop {
        let resp = client.send_to(Target::Broker(id), &req).await?;
        if resp.error_code == codes::COORDINATOR_LOAD_IN_PROGRESS
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(backoff(attempt)).await;
            attempt += 1;
            continue;
        }
        if resp.error_code != 0 {
            return Err(anyhow::Error::new(KafkaError::new(resp.error_code, None))
                .context(format!("ListTransactions on broker {id}")));
        }
        if let Some(unknown) = resp.unknown_state_filters.first() {
            bail!("broker {id} does not know the transaction state '{unknown}'");
        }
        return Ok(resp
            .transaction_states
            .into_iter()
            .map(|t| TransactionListing {
                transactional_id: t.transactional_id.0.to_string(),
                producer_id: t.producer_id.0,
                state: t.transaction_state.to_string(),
            })
            .collect());
    }
}

/// A transaction as its coordinator describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionDescription {
    /// The broker that answered: the transactional id's coordinator.
    pub coordinator_id: i32,
    pub transactional_id: String,
    pub state: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    /// When the current transaction began, if one is open.
    pub start_time_ms: Option<i64>,
    /// The partitions of the current transaction (in Prepare* states, those still waiting for
    /// their markers), sorted.
    pub partitions: Vec<(String, i32)>,
}

/// DescribeTransactions of `transactional_id` at its coordinator. The outer error is a failure
/// to reach the coordinator; the inner one the coordinator's answer (TRANSACTIONAL_ID_NOT_FOUND,
/// TRANSACTIONAL_ID_AUTHORIZATION_FAILED, ...). A coordinator that moved or is loading is
/// found again and asked again for up to 30 s.
pub async fn describe_transaction(
    client: &mut Client,
    transactional_id: &str,
) -> Result<Result<TransactionDescription, KafkaError>> {
    let mut req = DescribeTransactionsRequest::default();
    req.transactional_ids = vec![TransactionalId(StrBytes::from_string(
        transactional_id.to_string(),
    ))];
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut attempt = 0;
    loop {
        let (coordinator, resp) = client
            .send_to_coordinator_of(CoordinatorType::Transaction, transactional_id, &req, |r| {
                r.transaction_states.first().map_or(0, |s| s.error_code)
            })
            .await?;
        let state = resp
            .transaction_states
            .into_iter()
            .find(|s| s.transactional_id.0.as_str() == transactional_id)
            .ok_or_else(|| {
                anyhow!("DescribeTransactions answered nothing for transactional id '{transactional_id}'")
            })?;
        if state.error_code == codes::COORDINATOR_LOAD_IN_PROGRESS
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(backoff(attempt)).await;
            attempt += 1;
            continue;
        }
        if state.error_code != 0 {
            return Ok(Err(KafkaError::new(state.error_code, None)));
        }
        let mut partitions: Vec<(String, i32)> = state
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.topic.0.to_string(), *p)))
            .collect();
        partitions.sort();
        return Ok(Ok(TransactionDescription {
            coordinator_id: coordinator,
            transactional_id: transactional_id.to_string(),
            state: state.transaction_state.to_string(),
            producer_id: state.producer_id.0,
            producer_epoch: state.producer_epoch,
            timeout_ms: state.transaction_timeout_ms,
            start_time_ms: (state.transaction_start_time_ms >= 0)
                .then_some(state.transaction_start_time_ms),
            partitions,
        }));
    }
}

/// One producer of a partition as DescribeProducers describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerState {
    pub producer_id: i64,
    pub producer_epoch: i32,
    /// The coordinator epoch of the producer's last transaction marker (-1: none yet).
    pub coordinator_epoch: i32,
    pub last_sequence: i32,
    pub last_timestamp: i64,
    /// The first offset of the producer's open transaction, if one is open.
    pub current_txn_start_offset: Option<i64>,
}

/// DescribeProducers for partitions of `topic` at `broker`; per partition asked, its
/// producers or the broker's error.
pub async fn describe_producers_at(
    client: &mut Client,
    broker: i32,
    topic: &str,
    partitions: &[i32],
) -> Result<BTreeMap<i32, Result<Vec<ProducerState>, KafkaError>>> {
    let mut t = TopicRequest::default();
    t.name = TopicName(StrBytes::from_string(topic.to_string()));
    t.partition_indexes = partitions.to_vec();
    let mut req = DescribeProducersRequest::default();
    req.topics = vec![t];
    let resp = client.send_to(Target::Broker(broker), &req).await?;
    let mut out = BTreeMap::new();
    for t in resp
        .topics
        .into_iter()
        .filter(|t| t.name.0.as_str() == topic)
    {
        for p in t.partitions {
            let result = if p.error_code != 0 {
                Err(KafkaError::new(p.error_code, p.error_message.as_ref()))
            } else {
                Ok(p.active_producers
                    .into_iter()
                    .map(|a| ProducerState {
                        producer_id: a.producer_id.0,
                        producer_epoch: a.producer_epoch,
                        coordinator_epoch: a.coordinator_epoch,
                        last_sequence: a.last_sequence,
                        last_timestamp: a.last_timestamp,
                        current_txn_start_offset: (a.current_txn_start_offset >= 0)
                            .then_some(a.current_txn_start_offset),
                    })
                    .collect())
            };
            out.insert(p.partition_index, result);
        }
    }
    if let Some(p) = partitions.iter().find(|p| !out.contains_key(p)) {
        bail!("DescribeProducers on broker {broker} answered nothing for {topic}-{p}");
    }
    Ok(out)
}

/// DescribeProducers for partitions of `topic` at their leaders (from fresh metadata). A
/// partition whose leader moved or is unknown is asked again, after a metadata refresh, for up
/// to 30 s; other errors are answered as they are.
pub async fn describe_producers(
    client: &mut Client,
    topic: &str,
    partitions: &[i32],
) -> Result<BTreeMap<i32, Result<Vec<ProducerState>, KafkaError>>> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut attempt = 0;
    let mut out = BTreeMap::new();
    let mut pending: Vec<i32> = partitions.to_vec();
    loop {
        let meta = client.topic(topic).await?;
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for p in &pending {
            let Some(pm) = meta.partitions.iter().find(|m| m.index == *p) else {
                out.insert(
                    *p,
                    Err(KafkaError {
                        code: codes::UNKNOWN_TOPIC_OR_PARTITION,
                        message: Some(format!("Partition {topic}-{p} does not exist")),
                    }),
                );
                continue;
            };
            by_leader.entry(pm.leader).or_default().push(*p);
        }
        let mut retry = Vec::new();
        for (leader, ps) in by_leader {
            if leader < 0 {
                retry.extend(ps);
                continue;
            }
            for (p, result) in describe_producers_at(client, leader, topic, &ps).await? {
                match result {
                    Err(e) if e.is_retriable() => {
                        retry.push(p);
                        out.insert(p, Err(e));
                    }
                    r => {
                        out.insert(p, r);
                    }
                }
            }
        }
        if retry.is_empty() || tokio::time::Instant::now() > deadline {
            for p in retry {
                out.entry(p).or_insert(Err(KafkaError {
                    code: codes::LEADER_NOT_AVAILABLE,
                    message: Some(format!("{topic}-{p} has no leader")),
                }));
            }
            return Ok(out);
        }
        pending = retry;
        tokio::time::sleep(backoff(attempt)).await;
        attempt += 1;
    }
}

/// Aborts the transaction of `producer_id` (at `producer_epoch`) on `topic`-`partition`: an
/// ABORT marker from coordinator epoch `coordinator_epoch`, written by the partition's leader
/// (WriteTxnMarkers, which needs ClusterAction). A leader that moved is looked up again for up
/// to 30 s; the partition's other errors are answered as they are.
pub async fn abort_transaction(
    client: &mut Client,
    topic: &str,
    partition: i32,
    producer_id: i64,
    producer_epoch: i16,
    coordinator_epoch: i32,
) -> Result<Result<(), KafkaError>> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut attempt = 0;
    loop {
        let meta = client.topic(topic).await?;
        let Some(pm) = meta.partitions.iter().find(|m| m.index == partition) else {
            return Ok(Err(KafkaError {
                code: codes::UNKNOWN_TOPIC_OR_PARTITION,
                message: Some(format!("Partition {topic}-{partition} does not exist")),
            }));
        };
        let result = if pm.leader < 0 {
            Err(KafkaError {
                code: codes::LEADER_NOT_AVAILABLE,
                message: Some(format!("{topic}-{partition} has no leader")),
            })
        } else {
            let req =
                WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
                    .with_producer_id(ProducerId(producer_id))
                    .with_producer_epoch(producer_epoch)
                    .with_transaction_result(false)
                    .with_coordinator_epoch(coordinator_epoch)
                    .with_topics(vec![WritableTxnMarkerTopic::default()
                        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                        .with_partition_indexes(vec![partition])])]);
            let resp = client.send_to(Target::Broker(pm.leader), &req).await?;
            let code = resp
                .markers
                .iter()
                .flat_map(|m| &m.topics)
                .filter(|t| t.name.0.as_str() == topic)
                .flat_map(|t| &t.partitions)
                .find(|p| p.partition_index == partition)
                .map(|p| p.error_code)
                .ok_or_else(|| {
                    anyhow!(
                        "WriteTxnMarkers on broker {} answered nothing for {topic}-{partition}",
                        pm.leader
                    )
                })?;
            if code == 0 {
                return Ok(Ok(()));
            }
            Err(KafkaError {
                code,
                message: None,
            })
        };
        match result {
            Err(e) if e.is_retriable() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
            }
            r => return Ok(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClientConfig;
    use bytes::{BufMut, Bytes, BytesMut};
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::find_coordinator_response::Coordinator;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::{
        describe_producers_response, describe_transactions_response, list_transactions_response,
        ApiVersionsResponse, BrokerId, DescribeProducersResponse, DescribeTransactionsResponse,
        FindCoordinatorRequest, FindCoordinatorResponse, ListTransactionsResponse,
        MetadataResponse, RequestHeader, ResponseHeader,
    };
    use kafka_protocol::protocol::{Decodable, Encodable};
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// What the scripted broker saw: each request's key, and FindCoordinator's key types.
    #[derive(Default)]
    struct Seen {
        keys: Vec<ApiKey>,
        key_types: Vec<i8>,
    }

    /// A broker (id 1) that answers the admin requests of this module, each error once before
    /// the real answer: ListTransactions COORDINATOR_LOAD_IN_PROGRESS, DescribeTransactions
    /// NOT_COORDINATOR, DescribeProducers NOT_LEADER_OR_FOLLOWER.
    async fn scripted_broker() -> (u16, Arc<Mutex<Seen>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    loop {
                        let mut len = [0u8; 4];
                        if sock.read_exact(&mut len).await.is_err() {
                            return;
                        }
                        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
                        sock.read_exact(&mut body).await.unwrap();
                        let key = ApiKey::try_from(i16::from_be_bytes([body[0], body[1]])).unwrap();
                        let version = i16::from_be_bytes([body[2], body[3]]);
                        let mut buf = Bytes::from(body);
                        let header =
                            RequestHeader::decode(&mut buf, key.request_header_version(version))
                                .unwrap();
                        let earlier = {
                            let mut l = log.lock().unwrap();
                            l.keys.push(key);
                            l.keys.iter().filter(|k| **k == key).count() - 1
                        };
                        let mut out = BytesMut::new();
                        out.put_i32(0);
                        let mut rh = ResponseHeader::default();
                        rh.correlation_id = header.correlation_id;
                        rh.encode(&mut out, key.response_header_version(version))
                            .unwrap();
                        match key {
                            ApiKey::ApiVersions => {
                                let mut r = ApiVersionsResponse::default();
                                r.api_keys = [
                                    (ApiKey::ApiVersions, 3),
                                    (ApiKey::Metadata, 12),
                                    (ApiKey::FindCoordinator, 4),
                                    (ApiKey::ListTransactions, 1),
                                    (ApiKey::DescribeTransactions, 0),
                                    (ApiKey::DescribeProducers, 0),
                                ]
                                .into_iter()
                                .map(|(k, max)| {
                                    let mut a = ApiVersion::default();
                                    a.api_key = k as i16;
                                    a.max_version = max;
                                    a
                                })
                                .collect();
                                r.encode(&mut out, version).unwrap();
                            }
                            ApiKey::Metadata => {
                                let mut b = MetadataResponseBroker::default();
                                b.node_id = BrokerId(1);
                                b.host = StrBytes::from_static_str("127.0.0.1");
                                b.port = i32::from(port);
                                let mut p = MetadataResponsePartition::default();
                                p.leader_id = BrokerId(1);
                                let mut t = MetadataResponseTopic::default();
                                t.name = Some(TopicName(StrBytes::from_static_str("t")));
                                t.partitions = vec![p];
                                let mut r = MetadataResponse::default();
                                r.brokers = vec![b];
                                r.topics = vec![t];
                                r.encode(&mut out, version).unwrap();
                            }
                            ApiKey::FindCoordinator => {
                                let req =
                                    FindCoordinatorRequest::decode(&mut buf, version).unwrap();
                                log.lock().unwrap().key_types.push(req.key_type);
                                let mut c = Coordinator::default();
                                c.key = req.coordinator_keys[0].clone();
                                c.node_id = BrokerId(1);
                                c.host = StrBytes::from_static_str("127.0.0.1");
                                c.port = i32::from(port);
                                let mut r = FindCoordinatorResponse::default();
                                r.coordinators = vec![c];
                                r.encode(&mut out, version).unwrap();
                            }
                            ApiKey::ListTransactions => {
                                let mut r = ListTransactionsResponse::default();
                                if earlier == 0 {
                                    r.error_code = codes::COORDINATOR_LOAD_IN_PROGRESS;
                                } else {
                                    let mut s =
                                        list_transactions_response::TransactionState::default();
                                    s.transactional_id =
                                        TransactionalId(StrBytes::from_static_str("x"));
                                    s.producer_id = ProducerId(7);
                                    s.transaction_state = StrBytes::from_static_str("Ongoing");
                                    r.transaction_states = vec![s];
                                }
                                r.encode(&mut out, version).unwrap();
                            }
                            ApiKey::DescribeTransactions => {
                                let mut s =
                                    describe_transactions_response::TransactionState::default();
                                s.transactional_id =
                                    TransactionalId(StrBytes::from_static_str("x"));
                                if earlier == 0 {
                                    s.error_code = codes::NOT_COORDINATOR;
                                } else {
                                    s.transaction_state = StrBytes::from_static_str("Ongoing");
                                    s.producer_id = ProducerId(7);
                                    s.producer_epoch = 2;
                                    s.transaction_timeout_ms = 60_000;
                                    s.transaction_start_time_ms = 1_000;
                                    s.topics = [("b", 0), ("a", 1), ("a", 0)]
                                        .into_iter()
                                        .map(|(t, p)| {
                                            let mut d =
                                                describe_transactions_response::TopicData::default(
                                                );
                                            d.topic = TopicName(StrBytes::from_static_str(t));
                                            d.partitions = vec![p];
                                            d
                                        })
                                        .collect();
                                }
                                let mut r = DescribeTransactionsResponse::default();
                                r.transaction_states = vec![s];
                                r.encode(&mut out, version).unwrap();
                            }
                            ApiKey::DescribeProducers => {
                                let mut p =
                                    describe_producers_response::PartitionResponse::default();
                                if earlier == 0 {
                                    p.error_code = 6; // NOT_LEADER_OR_FOLLOWER
                                } else {
                                    let mut a =
                                        describe_producers_response::ProducerState::default();
                                    a.producer_id = ProducerId(7);
                                    a.producer_epoch = 2;
                                    a.last_sequence = 4;
                                    a.last_timestamp = 5_000;
                                    a.coordinator_epoch = -1;
                                    a.current_txn_start_offset = 40;
                                    let mut b = a.clone();
                                    b.producer_id = ProducerId(8);
                                    b.current_txn_start_offset = -1;
                                    p.active_producers = vec![a, b];
                                }
                                let mut t = describe_producers_response::TopicResponse::default();
                                t.name = TopicName(StrBytes::from_static_str("t"));
                                t.partitions = vec![p];
                                let mut r = DescribeProducersResponse::default();
                                r.topics = vec![t];
                                r.encode(&mut out, version).unwrap();
                            }
                            other => panic!("unexpected {other:?}"),
                        }
                        let n = (out.len() - 4) as i32;
                        out[..4].copy_from_slice(&n.to_be_bytes());
                        sock.write_all(&out).await.unwrap();
                    }
                });
            }
        });
        (port, seen)
    }

    #[tokio::test]
    async fn admin_calls_find_the_transaction_coordinator_and_retry_what_kafka_retries() {
        let (port, seen) = scripted_broker().await;
        let mut client = Client::connect(&format!("127.0.0.1:{port}"), &ClientConfig::new("t"))
            .await
            .unwrap();

        let listed = list_transactions(&mut client, &ListFilter::default())
            .await
            .unwrap();
        assert_eq!(
            listed,
            BTreeMap::from([(
                1,
                vec![TransactionListing {
                    transactional_id: "x".into(),
                    producer_id: 7,
                    state: "Ongoing".into(),
                }]
            )])
        );

        let d = describe_transaction(&mut client, "x")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(d.coordinator_id, 1);
        assert_eq!(
            (d.producer_id, d.producer_epoch, d.timeout_ms),
            (7, 2, 60_000)
        );
        assert_eq!(d.start_time_ms, Some(1_000));
        assert_eq!(
            d.partitions,
            vec![("a".into(), 0), ("a".into(), 1), ("b".into(), 0)]
        );
        // A group lookup of the same name is another coordinator.
        client.coordinator("x").await.unwrap();
        assert_eq!(seen.lock().unwrap().key_types, vec![1, 1, 0]);

        let producers = describe_producers(&mut client, "t", &[0]).await.unwrap();
        let states = producers[&0].as_ref().unwrap();
        assert_eq!(states.len(), 2);
        assert_eq!(states[0].current_txn_start_offset, Some(40));
        assert_eq!(states[1].current_txn_start_offset, None);
        let missing = describe_producers(&mut client, "t", &[3]).await.unwrap();
        assert_eq!(
            missing[&3].as_ref().unwrap_err().code,
            codes::UNKNOWN_TOPIC_OR_PARTITION
        );

        let count = |k: ApiKey| {
            seen.lock()
                .unwrap()
                .keys
                .iter()
                .filter(|s| **s == k)
                .count()
        };
        assert_eq!(count(ApiKey::ListTransactions), 2);
        assert_eq!(count(ApiKey::DescribeTransactions), 2);
        assert_eq!(count(ApiKey::DescribeProducers), 2);
    }
}
