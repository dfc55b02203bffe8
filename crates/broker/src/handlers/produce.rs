//! Produce: validates acks, finds each partition, appends each batch in request order.
//!
//! Only the partition's leader appends: a partition led elsewhere (or not hosted here yet) gets
//! NOT_LEADER_OR_FOLLOWER, with the current leader as a KIP-951 hint from v10.
//!
//! acks=0 gets no response; acks=1 is answered once the batch is in the leader's log. acks=all
//! (-1) is refused with NOT_ENOUGH_REPLICAS before the append when the ISR is smaller than
//! `min.insync.replicas`, and answered once every ISR member has the batch (the high watermark
//! passed it): NOT_ENOUGH_REPLICAS_AFTER_APPEND if the ISR shrank below `min.insync.replicas`
//! meanwhile, NOT_LEADER_OR_FOLLOWER if leadership moved, REQUEST_TIMED_OUT after the
//! request's `timeout_ms`.
//!
//! With `transaction.partition.verification.enable`, a transactional batch that would open a
//! transaction on its partition is appended only once the producer's transaction coordinator
//! has confirmed that the partition is in the producer's open transaction
//! ([`crate::coordinators::verify`]); the request's other batches are appended at once, and the
//! connection's next request waits until the verified ones are appended too.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse, ResponseKind};
use runnel_protocol::batch;

use super::{hint_endpoints, leader_hint, leader_partition, read_barrier, s, Reply};
use crate::auth::Authorizer;
use crate::clock::now_ms;
use crate::context::RequestContext;
use crate::coordinators::verify::TxnVerifier;
use crate::error::KafkaError;
use crate::fence::Fence;
use crate::metadata::MetadataView;
use crate::replica::{AppendError, Partition, ReplicaManager};
use crate::replicate;
use runnel_security::acl::{AclOperation, ResourceType};
use runnel_storage::{AppendOutcome, StorageError, TxnVerification};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// What Produce works with.
#[derive(Clone)]
pub struct ProduceServices {
    pub partitions: Arc<ReplicaManager>,
    pub fence: Arc<Fence>,
    pub metadata: Arc<MetadataView>,
    pub authorizer: Arc<Authorizer>,
    /// Set when `transaction.partition.verification.enable` is on.
    pub verifier: Option<Arc<TxnVerifier>>,
}

/// A partition's batch that waits for its transaction coordinator's verification.
struct Deferred {
    /// Topic and partition index in the request (and response).
    ti: usize,
    pi: usize,
    partition: Arc<Partition>,
    records: bytes::Bytes,
    producer_id: i64,
    producer_epoch: i16,
    guard: u64,
}

/// acks=all appends waiting for the ISR: (topic index, partition index, partition, last
/// offset, leader epoch).
type Waiting = Vec<(usize, usize, Arc<Partition>, i64, i32)>;

/// What became of one partition's batch.
enum Step {
    Appended(AppendOutcome, i32, Arc<Partition>),
    /// The batch opens a transaction: its coordinator must confirm the partition first.
    Verify(Arc<Partition>, i64, i16),
}

pub fn handle(
    svc: &ProduceServices,
    ctx: &RequestContext,
    req: ProduceRequest,
    version: i16,
) -> Reply {
    let acks = req.acks;
    let valid_acks = matches!(acks, -1..=1);
    let transactional = req.transactional_id.is_some();
    let verification = if transactional && svc.verifier.is_some() {
        TxnVerification::Required(None)
    } else {
        TxnVerification::Off
    };
    let now = now_ms();
    let image = svc.metadata.serving_image();
    let mut hinted = BTreeSet::new();
    let mut responses = Vec::with_capacity(req.topic_data.len());
    let mut waiting: Waiting = Vec::new();
    let mut deferred = Vec::new();
    // A transactional producer needs Write on its transactional id.
    let txn_allowed = req.transactional_id.as_ref().is_none_or(|id| {
        svc.authorizer.authorize(
            &image.image,
            ctx,
            AclOperation::Write,
            ResourceType::TransactionalId,
            id,
        )
    });
    for (ti, topic) in req.topic_data.into_iter().enumerate() {
        let name = topic.name.0.to_string();
        let write_allowed = svc.authorizer.authorize(
            &image.image,
            ctx,
            AclOperation::Write,
            ResourceType::Topic,
            &name,
        );
        let mut parts = Vec::with_capacity(topic.partition_data.len());
        for (pi, pd) in topic.partition_data.into_iter().enumerate() {
            let mut r = PartitionProduceResponse::default()
                .with_index(pd.index)
                .with_base_offset(-1);
            let records = pd.records.clone().unwrap_or_default();
            let result: Result<Step, KafkaError> = (|| {
                if !txn_allowed {
                    return Err(KafkaError::new(
                        ResponseError::TransactionalIdAuthorizationFailed,
                        "Transactional Id authorization failed.",
                    ));
                }
                if !write_allowed {
                    return Err(KafkaError::new(
                        ResponseError::TopicAuthorizationFailed,
                        format!("Not authorized to access topics: [{name}]"),
                    ));
                }
                if !valid_acks {
                    return Err(KafkaError::new(
                        ResponseError::InvalidRequiredAcks,
                        format!("acks must be -1, 0 or 1, not {acks}"),
                    ));
                }
                if crate::coordinators::is_coordinator_topic(&name) {
                    return Err(KafkaError::new(
                        ResponseError::InvalidTopicException,
                        format!("Cannot append to internal topic {name}"),
                    ));
                }
                let partition = leader_partition(
                    &svc.partitions,
                    &svc.fence,
                    &image.image,
                    &name,
                    pd.index,
                    -1,
                )
                .map_err(|e| {
                    let msg = match e {
                        ResponseError::NotLeaderOrFollower => {
                            format!("this server is not the leader of {name}-{}", pd.index)
                        }
                        _ => format!("this server does not host {name}-{}", pd.index),
                    };
                    KafkaError::new(e, msg)
                })?;
                if records.is_empty() {
                    return Err(KafkaError::new(
                        ResponseError::InvalidRecord,
                        "no record batch in produce request",
                    ));
                }
                if let Ok(h) = batch::parse_header(&records) {
                    // Markers are written by transaction coordinators only.
                    if h.is_control() {
                        return Err(KafkaError::new(
                            ResponseError::InvalidRecord,
                            "clients may not write control batches",
                        ));
                    }
                    if h.is_transactional() && !transactional {
                        return Err(KafkaError::new(
                            ResponseError::InvalidRecord,
                            "a transactional batch needs the producer's transactional id",
                        ));
                    }
                }
                if acks == -1 {
                    replicate::check_acks_all(&partition)?;
                }
                match partition.append_verified(&records, now, verification) {
                    Ok((out, leader_epoch)) => Ok(Step::Appended(out, leader_epoch, partition)),
                    Err(AppendError::Storage(StorageError::TxnVerificationNeeded {
                        producer_id,
                    })) => {
                        let epoch = batch::parse_header(&records).map_or(-1, |h| h.producer_epoch);
                        Ok(Step::Verify(partition, producer_id, epoch))
                    }
                    Err(e) => Err(append_error(e, &name, pd.index)),
                }
            })();
            match result {
                Ok(Step::Appended(out, leader_epoch, partition)) => {
                    appended(&mut r, &out, records.len(), version);
                    if acks == -1 {
                        waiting.push((ti, pi, partition, out.last_offset, leader_epoch));
                    }
                }
                Ok(Step::Verify(partition, producer_id, producer_epoch)) => {
                    // Taken before the coordinator is asked: a marker written meanwhile makes
                    // it stale, and the append is then refused.
                    let guard = partition.verification_guard(producer_id, now);
                    deferred.push(Deferred {
                        ti,
                        pi,
                        partition,
                        records,
                        producer_id,
                        producer_epoch,
                        guard,
                    });
                }
                Err(e) => failed(&mut r, &e, &name, &svc.metadata, &mut hinted, version),
            }
            parts.push(r);
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic.name)
                .with_partition_responses(parts),
        );
    }
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(req.timeout_ms.max(0) as u64);
    let resp = ProduceResponse::default().with_responses(responses);
    let (Some(txn_id), Some(verifier)) = (req.transactional_id, svc.verifier.clone()) else {
        return reply_after_acks(resp, waiting, hinted, image, ctx, acks, version, deadline);
    };
    if deferred.is_empty() {
        return reply_after_acks(resp, waiting, hinted, image, ctx, acks, version, deadline);
    }
    let (release, barrier) = read_barrier();
    let ctx = ctx.clone();
    let metadata = svc.metadata.clone();
    Reply::Ordered(
        Box::pin(async move {
            let mut resp = resp;
            let mut waiting = waiting;
            let mut hinted = hinted;
            verify_and_append(
                &verifier,
                &txn_id.0,
                deferred,
                &mut resp,
                &mut waiting,
                &mut hinted,
                &metadata,
                acks,
                version,
            )
            .await;
            drop(release);
            match reply_after_acks(resp, waiting, hinted, image, &ctx, acks, version, deadline) {
                Reply::Now(r) => Some(r),
                Reply::Later(f) => Some(f.await),
                _ => None,
            }
        }),
        barrier,
    )
}

/// Asks the coordinator about the deferred batches (one call per producer), then appends
/// those it confirmed with their guards.
#[allow(clippy::too_many_arguments)]
async fn verify_and_append(
    verifier: &TxnVerifier,
    txn_id: &str,
    deferred: Vec<Deferred>,
    resp: &mut ProduceResponse,
    waiting: &mut Waiting,
    hinted: &mut BTreeSet<i32>,
    metadata: &MetadataView,
    acks: i16,
    version: i16,
) {
    let mut by_producer: BTreeMap<(i64, i16), Vec<Deferred>> = BTreeMap::new();
    for d in deferred {
        by_producer
            .entry((d.producer_id, d.producer_epoch))
            .or_default()
            .push(d);
    }
    for ((producer_id, producer_epoch), batches) in by_producer {
        let tps: Vec<(String, i32)> = batches
            .iter()
            .map(|d| (d.partition.tp.topic.to_string(), d.partition.tp.partition))
            .collect();
        let verified = verifier
            .verify(txn_id, producer_id, producer_epoch, &tps)
            .await;
        for (d, (tp, answer)) in batches.into_iter().zip(verified) {
            let r = &mut resp.responses[d.ti].partition_responses[d.pi];
            let result = answer
                .map_err(|e| verification_error(e, &tp, producer_id, version))
                .and_then(|()| {
                    d.partition
                        .append_verified(
                            &d.records,
                            now_ms(),
                            TxnVerification::Required(Some(d.guard)),
                        )
                        .map_err(|e| append_error(e, &tp.0, tp.1))
                });
            match result {
                Ok((out, leader_epoch)) => {
                    appended(r, &out, d.records.len(), version);
                    if acks == -1 {
                        waiting.push((d.ti, d.pi, d.partition, out.last_offset, leader_epoch));
                    }
                }
                Err(e) => failed(r, &e, &tp.0, metadata, hinted, version),
            }
        }
    }
}

/// The error a producer gets when its transaction coordinator did not confirm a partition
/// (as Kafka's leaders answer): coordinator trouble is retriable (NOT_ENOUGH_REPLICAS), a
/// fenced producer gets INVALID_PRODUCER_EPOCH, a partition that is not in the transaction
/// TRANSACTION_ABORTABLE from Produce v11 and INVALID_TXN_STATE before.
fn verification_error(
    e: ResponseError,
    tp: &(String, i32),
    producer_id: i64,
    version: i16,
) -> KafkaError {
    let code = match e {
        ResponseError::ConcurrentTransactions
        | ResponseError::CoordinatorLoadInProgress
        | ResponseError::CoordinatorNotAvailable
        | ResponseError::NotCoordinator => ResponseError::NotEnoughReplicas,
        ResponseError::ProducerFenced => ResponseError::InvalidProducerEpoch,
        ResponseError::TransactionAbortable if version < 11 => ResponseError::InvalidTxnState,
        other => other,
    };
    KafkaError::new(
        code,
        format!(
            "the transaction coordinator did not confirm that {}-{} is in producer {producer_id}'s \
             transaction ({e:?})",
            tp.0, tp.1
        ),
    )
}

fn append_error(e: AppendError, topic: &str, partition: i32) -> KafkaError {
    match e {
        AppendError::NotLeader => KafkaError::new(
            ResponseError::NotLeaderOrFollower,
            format!("this server is not the leader of {topic}-{partition}"),
        ),
        AppendError::Storage(e) => KafkaError::from(&e),
    }
}

/// Fills a partition's response for an appended batch of `bytes` bytes.
fn appended(r: &mut PartitionProduceResponse, out: &AppendOutcome, bytes: usize, version: i16) {
    if !out.duplicate {
        metrics::counter!("runnel_produce_records_total")
            .increment((out.last_offset - out.base_offset + 1).max(0) as u64);
        metrics::counter!("runnel_produce_bytes_total").increment(bytes as u64);
    }
    r.base_offset = out.base_offset;
    r.log_append_time_ms = out.log_append_time;
    if version >= 5 {
        r.log_start_offset = out.log_start_offset;
    }
}

/// Fills a partition's response for a refused batch (with a KIP-951 leader hint from v10).
fn failed(
    r: &mut PartitionProduceResponse,
    e: &KafkaError,
    topic: &str,
    metadata: &MetadataView,
    hinted: &mut BTreeSet<i32>,
    version: i16,
) {
    tracing::debug!(topic = %topic, partition = r.index, code = e.code(), error = %e.message, "produce rejected");
    metrics::counter!("runnel_produce_errors_total").increment(1);
    r.error_code = e.code();
    r.base_offset = -1;
    if version >= 8 {
        r.error_message = Some(s(&e.message));
    }
    // KIP-951: tell the client where the partition moved.
    if version >= 10 && e.error == ResponseError::NotLeaderOrFollower {
        if let Some((leader, epoch)) = leader_hint(&metadata.image().image, topic, r.index) {
            r.current_leader = LeaderIdAndEpoch::default()
                .with_leader_id(BrokerId(leader))
                .with_leader_epoch(epoch);
            hinted.insert(leader);
        }
    }
}

/// The response once every acks=all append is on the ISR (none for acks=0).
#[allow(clippy::too_many_arguments)]
fn reply_after_acks(
    mut resp: ProduceResponse,
    waiting: Waiting,
    hinted: BTreeSet<i32>,
    image: Arc<runnel_controller::AppliedImage>,
    ctx: &RequestContext,
    acks: i16,
    version: i16,
    deadline: tokio::time::Instant,
) -> Reply {
    if acks == 0 {
        return Reply::NoResponse;
    }
    if version >= 10 {
        resp.node_endpoints = hint_endpoints(
            &image.image,
            hinted,
            ctx.listener(),
            |id, host, port, rack| {
                NodeEndpoint::default()
                    .with_node_id(id)
                    .with_host(host)
                    .with_port(port)
                    .with_rack(rack)
            },
        );
    }
    if waiting.is_empty() {
        return Reply::Now(ResponseKind::Produce(resp));
    }
    Reply::Later(Box::pin(async move {
        let results = futures::future::join_all(waiting.into_iter().map(
            |(ti, pi, partition, last_offset, epoch)| async move {
                let r =
                    replicate::wait_for_ack(partition.clone(), last_offset, epoch, deadline).await;
                (ti, pi, partition, r)
            },
        ))
        .await;
        for (ti, pi, partition, r) in results {
            let Err(e) = r else {
                continue;
            };
            tracing::debug!(topic = %partition.tp.topic, partition = partition.tp.partition, code = e.code(), "acks=all produce failed after the append");
            metrics::counter!("runnel_produce_errors_total").increment(1);
            let pr = &mut resp.responses[ti].partition_responses[pi];
            pr.error_code = e.code();
            pr.base_offset = -1;
            if version >= 8 {
                pr.error_message = Some(s(&format!(
                    "{e:?} for {}-{}",
                    partition.tp.topic, partition.tp.partition
                )));
            }
        }
        ResponseKind::Produce(resp)
    }))
}
