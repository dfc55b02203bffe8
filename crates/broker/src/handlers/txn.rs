//! Transaction coordination APIs: InitProducerId with a transactional id, AddPartitionsToTxn,
//! AddOffsetsToTxn and EndTxn. They translate between wire messages and
//! [`crate::coordinators::txn`]; the protocol lives in `runnel_coordinator::txn`. Also the
//! inspection APIs (DescribeProducers, DescribeTransactions, ListTransactions) and
//! WriteTxnMarkers, which an administrator sends to abort a hanging transaction (the
//! coordinators send their own markers over the gRPC links).
//!
//! Each answers once the coordinator's record is on the ISR of its `__transaction_state`
//! partition. Codes follow the newest request versions inside the coordinator and are mapped
//! here for older ones (PRODUCER_FENCED is INVALID_PRODUCER_EPOCH before InitProducerId v4 and
//! before v2 of the others).

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{describe_producers_response, describe_transactions_response};
use kafka_protocol::messages::{list_transactions_response, TopicName, TransactionalId};
use kafka_protocol::messages::{
    write_txn_markers_response, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, ApiKey, EndTxnRequest, EndTxnResponse, InitProducerIdRequest,
    InitProducerIdResponse, ProducerId, ResponseKind,
};
use kafka_protocol::messages::{
    DescribeProducersRequest, DescribeProducersResponse, DescribeTransactionsRequest,
    DescribeTransactionsResponse, ListTransactionsRequest, ListTransactionsResponse,
};
use runnel_coordinator::partitioning::partition_for;
use runnel_coordinator::txn::{expected_producer, for_version};
use runnel_protocol::batch::EndTxnMarker;
use runnel_security::acl::CLUSTER_NAME;
use runnel_security::acl::{AclOperation, ResourceType};

use super::Reply;
use crate::auth::Authorizer;
use crate::context::RequestContext;
use crate::controller_channel::ControllerChannel;
use crate::coordinators::group::GroupCoordinator;
use crate::coordinators::txn::TxnService;
use crate::fence::Fence;
use crate::metadata::MetadataView;
use crate::replica::ReplicaManager;
use runnel_coordinator::group::OFFSETS_TOPIC;

/// What the transaction handlers use.
#[derive(Clone)]
pub(crate) struct TxnServices {
    pub txns: Arc<TxnService>,
    pub metadata: Arc<MetadataView>,
    /// Producer ids come from the controller.
    pub controller: Arc<ControllerChannel>,
    pub authorizer: Arc<Authorizer>,
    /// AddOffsetsToTxn adds the group's `__consumer_offsets` partition.
    pub groups: Arc<GroupCoordinator>,
    /// DescribeProducers reads the producer state of partitions led here.
    pub partitions: Arc<ReplicaManager>,
    pub fence: Arc<Fence>,
    /// Told of markers WriteTxnMarkers writes (transactional offset commits they end).
    pub marker_hook: Option<crate::replicate::markers::MarkerHook>,
}

impl TxnServices {
    fn allowed(
        &self,
        ctx: &RequestContext,
        op: AclOperation,
        resource: ResourceType,
        name: &str,
    ) -> bool {
        self.authorizer
            .authorize(&self.metadata.image().image, ctx, op, resource, name)
    }
}

/// InitProducerId for a transactional id (an idempotent producer's is answered by
/// `admin::init_producer_id`).
pub fn init_producer_id(
    svc: &TxnServices,
    ctx: &RequestContext,
    txn_id: String,
    req: InitProducerIdRequest,
    version: i16,
) -> Reply {
    let fail = move |e: ResponseError| {
        let mut r = InitProducerIdResponse::default();
        r.producer_id = ProducerId(-1);
        r.producer_epoch = -1;
        r.error_code = for_version(e, ApiKey::InitProducerId, version).code();
        Reply::Now(ResponseKind::InitProducerId(r))
    };
    if txn_id.is_empty() {
        return fail(ResponseError::InvalidRequest);
    }
    if !svc.allowed(
        ctx,
        AclOperation::Write,
        ResourceType::TransactionalId,
        &txn_id,
    ) {
        return fail(ResponseError::TransactionalIdAuthorizationFailed);
    }
    let expected = match expected_producer(req.producer_id.0, req.producer_epoch) {
        Ok(e) => e,
        Err(e) => return fail(e),
    };
    if let Err(e) = svc.txns.check(&txn_id) {
        return fail(e);
    }
    let svc = svc.clone();
    Reply::Later(Box::pin(async move {
        let mut r = InitProducerIdResponse::default();
        match svc
            .txns
            .init_producer_id(
                &svc.controller,
                &txn_id,
                req.transaction_timeout_ms,
                expected,
            )
            .await
        {
            Ok((pid, epoch)) => {
                r.producer_id = ProducerId(pid);
                r.producer_epoch = epoch;
            }
            Err(e) => {
                r.producer_id = ProducerId(-1);
                r.producer_epoch = -1;
                r.error_code = for_version(e, ApiKey::InitProducerId, version).code();
            }
        }
        ResponseKind::InitProducerId(r)
    }))
}

/// AddPartitionsToTxn v0-3 (a client's single transaction).
pub fn add_partitions_to_txn(
    svc: &TxnServices,
    ctx: &RequestContext,
    req: AddPartitionsToTxnRequest,
    version: i16,
) -> Reply {
    let txn_id = req.v3_and_below_transactional_id.0.to_string();
    let topics: Vec<(String, Vec<i32>)> = req
        .v3_and_below_topics
        .iter()
        .map(|t| (t.name.0.to_string(), t.partitions.clone()))
        .collect();
    let answer =
        |per: &dyn Fn(&str, i32) -> Option<ResponseError>| partitions_answer(&topics, version, per);
    if !svc.allowed(
        ctx,
        AclOperation::Write,
        ResourceType::TransactionalId,
        &txn_id,
    ) {
        return Reply::Now(answer(&|_, _| {
            Some(ResponseError::TransactionalIdAuthorizationFailed)
        }));
    }
    // Per partition: not authorised, or unknown (internal topics are not for clients). If any
    // fails, the others are OPERATION_NOT_ATTEMPTED and nothing is added.
    let image = svc.metadata.image();
    let mut refused: BTreeMap<(String, i32), ResponseError> = BTreeMap::new();
    for (name, parts) in &topics {
        let allowed = svc.allowed(ctx, AclOperation::Write, ResourceType::Topic, name);
        let topic = image.image.topic_by_name(name);
        for p in parts {
            let e = if !allowed {
                Some(ResponseError::TopicAuthorizationFailed)
            } else if crate::coordinators::is_coordinator_topic(name)
                || !topic.is_some_and(|t| t.partitions.contains_key(p))
            {
                Some(ResponseError::UnknownTopicOrPartition)
            } else {
                None
            };
            if let Some(e) = e {
                refused.insert((name.clone(), *p), e);
            }
        }
    }
    drop(image);
    if !refused.is_empty() {
        return Reply::Now(answer(&|t, p| {
            Some(
                refused
                    .get(&(t.to_string(), p))
                    .copied()
                    .unwrap_or(ResponseError::OperationNotAttempted),
            )
        }));
    }
    if let Err(e) = svc.txns.check(&txn_id) {
        return Reply::Now(answer(&|_, _| Some(e)));
    }
    let svc = svc.clone();
    let pid = req.v3_and_below_producer_id.0;
    let epoch = req.v3_and_below_producer_epoch;
    Reply::Later(Box::pin(async move {
        let partitions: Vec<(String, i32)> = topics
            .iter()
            .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
            .collect();
        let r = svc
            .txns
            .add_partitions(&txn_id, pid, epoch, &partitions)
            .await;
        partitions_answer(&topics, version, &|_, _| r.err())
    }))
}

/// AddPartitionsToTxn's response: `per` gives each partition's code.
fn partitions_answer(
    topics: &[(String, Vec<i32>)],
    version: i16,
    per: &dyn Fn(&str, i32) -> Option<ResponseError>,
) -> ResponseKind {
    let mut r = AddPartitionsToTxnResponse::default();
    r.results_by_topic_v3_and_below = topics
        .iter()
        .map(|(name, parts)| {
            let mut t = AddPartitionsToTxnTopicResult::default();
            t.name = kafka_protocol::messages::TopicName(super::s(name));
            t.results_by_partition = parts
                .iter()
                .map(|p| {
                    let mut pr = AddPartitionsToTxnPartitionResult::default();
                    pr.partition_index = *p;
                    pr.partition_error_code = per(name, *p).map_or(0, |e| {
                        for_version(e, ApiKey::AddPartitionsToTxn, version).code()
                    });
                    pr
                })
                .collect();
            t
        })
        .collect();
    ResponseKind::AddPartitionsToTxn(r)
}

/// AddOffsetsToTxn: adds the group's `__consumer_offsets` partition to the transaction.
pub fn add_offsets_to_txn(
    svc: &TxnServices,
    ctx: &RequestContext,
    req: AddOffsetsToTxnRequest,
    version: i16,
) -> Reply {
    let answer = move |e: Option<ResponseError>| {
        let mut r = AddOffsetsToTxnResponse::default();
        r.error_code = e.map_or(0, |e| {
            for_version(e, ApiKey::AddOffsetsToTxn, version).code()
        });
        ResponseKind::AddOffsetsToTxn(r)
    };
    let txn_id = req.transactional_id.0.to_string();
    let group = req.group_id.0.to_string();
    if !svc.allowed(
        ctx,
        AclOperation::Write,
        ResourceType::TransactionalId,
        &txn_id,
    ) {
        return Reply::Now(answer(Some(
            ResponseError::TransactionalIdAuthorizationFailed,
        )));
    }
    if !svc.allowed(ctx, AclOperation::Read, ResourceType::Group, &group) {
        return Reply::Now(answer(Some(ResponseError::GroupAuthorizationFailed)));
    }
    if let Err(e) = svc.txns.check(&txn_id) {
        return Reply::Now(answer(Some(e)));
    }
    // The partition count of the offsets topic as it exists (the configured count before).
    let n = svc
        .metadata
        .image()
        .image
        .topic_by_name(OFFSETS_TOPIC)
        .map_or(svc.groups.num_partitions(), |t| t.partitions.len() as i32);
    let offsets_partition = partition_for(&group, n);
    let svc = svc.clone();
    Reply::Later(Box::pin(async move {
        let r = svc
            .txns
            .add_offsets(
                &txn_id,
                req.producer_id.0,
                req.producer_epoch,
                offsets_partition,
            )
            .await;
        answer(r.err())
    }))
}

/// EndTxn: answered once PrepareCommit/PrepareAbort is replicated; the markers follow.
pub fn end_txn(svc: &TxnServices, ctx: &RequestContext, req: EndTxnRequest, version: i16) -> Reply {
    let answer = move |e: Option<ResponseError>| {
        let mut r = EndTxnResponse::default();
        r.error_code = e.map_or(0, |e| for_version(e, ApiKey::EndTxn, version).code());
        ResponseKind::EndTxn(r)
    };
    let txn_id = req.transactional_id.0.to_string();
    if !svc.allowed(
        ctx,
        AclOperation::Write,
        ResourceType::TransactionalId,
        &txn_id,
    ) {
        return Reply::Now(answer(Some(
            ResponseError::TransactionalIdAuthorizationFailed,
        )));
    }
    if let Err(e) = svc.txns.check(&txn_id) {
        return Reply::Now(answer(Some(e)));
    }
    let svc = svc.clone();
    Reply::Later(Box::pin(async move {
        let r = svc
            .txns
            .end_txn(
                &txn_id,
                req.producer_id.0,
                req.producer_epoch,
                req.committed,
            )
            .await;
        answer(r.err())
    }))
}

/// DescribeProducers (KIP-664): the active producers of partitions led here. Needs Read on the
/// topic.
pub fn describe_producers(
    svc: &TxnServices,
    ctx: &RequestContext,
    req: DescribeProducersRequest,
    _version: i16,
) -> DescribeProducersResponse {
    let image = svc.metadata.image();
    let mut resp = DescribeProducersResponse::default();
    resp.topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let allowed = svc.allowed(ctx, AclOperation::Read, ResourceType::Topic, &name);
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&p| {
                    let mut out = describe_producers_response::PartitionResponse::default();
                    out.partition_index = p;
                    let part = if allowed {
                        super::leader_partition(
                            &svc.partitions,
                            &svc.fence,
                            &image.image,
                            &name,
                            p,
                            -1,
                        )
                    } else {
                        Err(ResponseError::TopicAuthorizationFailed)
                    };
                    match part {
                        Ok(part) => {
                            out.active_producers = part
                                .with_log(|l| l.active_producers())
                                .into_iter()
                                .map(|a| {
                                    let mut ps =
                                        describe_producers_response::ProducerState::default();
                                    ps.producer_id = ProducerId(a.producer_id);
                                    ps.producer_epoch = i32::from(a.producer_epoch);
                                    ps.last_sequence = a.last_sequence;
                                    ps.last_timestamp = a.last_timestamp;
                                    ps.coordinator_epoch = a.coordinator_epoch;
                                    ps.current_txn_start_offset = a.current_txn_start_offset;
                                    ps
                                })
                                .collect();
                        }
                        Err(e) => out.error_code = e.code(),
                    }
                    out
                })
                .collect();
            let mut tr = describe_producers_response::TopicResponse::default();
            tr.name = t.name;
            tr.partitions = partitions;
            tr
        })
        .collect();
    resp
}

/// DescribeTransactions (KIP-664): the state of transactional ids this node coordinates.
/// Needs Describe on each id.
pub fn describe_transactions(
    svc: &TxnServices,
    ctx: &RequestContext,
    req: DescribeTransactionsRequest,
    _version: i16,
) -> DescribeTransactionsResponse {
    let mut resp = DescribeTransactionsResponse::default();
    resp.transaction_states = req
        .transactional_ids
        .into_iter()
        .map(|id| {
            let mut st = describe_transactions_response::TransactionState::default();
            st.producer_id = ProducerId(-1);
            st.producer_epoch = -1;
            st.transaction_timeout_ms = -1;
            st.transaction_start_time_ms = -1;
            let txn_id = id.0.to_string();
            st.transactional_id = id;
            if !svc.allowed(
                ctx,
                AclOperation::Describe,
                ResourceType::TransactionalId,
                &txn_id,
            ) {
                st.error_code = ResponseError::TransactionalIdAuthorizationFailed.code();
                return st;
            }
            match svc.txns.describe(&txn_id) {
                Ok(d) => {
                    st.transaction_state = super::s(d.state.name());
                    st.transaction_timeout_ms = d.timeout_ms;
                    st.transaction_start_time_ms = d.start_ms;
                    st.producer_id = ProducerId(d.producer_id);
                    st.producer_epoch = d.producer_epoch;
                    st.topics = d
                        .topics
                        .into_iter()
                        .map(|(topic, partitions)| {
                            let mut td = describe_transactions_response::TopicData::default();
                            td.topic = TopicName(super::s(&topic));
                            td.partitions = partitions;
                            td
                        })
                        .collect();
                }
                Err(e) => st.error_code = e.code(),
            }
            st
        })
        .collect();
    resp
}

/// ListTransactions (KIP-664; v1 adds the duration filter, KIP-994): the transactions of the
/// `__transaction_state` partitions led here that the caller may Describe.
pub fn list_transactions(
    svc: &TxnServices,
    ctx: &RequestContext,
    req: ListTransactionsRequest,
    version: i16,
) -> ListTransactionsResponse {
    let states: Vec<String> = req.state_filters.iter().map(|s| s.to_string()).collect();
    let pids: Vec<i64> = req.producer_id_filters.iter().map(|p| p.0).collect();
    let duration = if version >= 1 {
        req.duration_filter
    } else {
        -1
    };
    let listing = svc.txns.list(&states, &pids, duration);
    let mut resp = ListTransactionsResponse::default();
    resp.unknown_state_filters = listing
        .unknown_state_filters
        .iter()
        .map(|s| super::s(s))
        .collect();
    resp.transaction_states = listing
        .transactions
        .into_iter()
        .filter(|t| {
            svc.authorizer.allows_quietly(
                &svc.metadata.image().image,
                ctx,
                AclOperation::Describe,
                ResourceType::TransactionalId,
                &t.transactional_id,
            )
        })
        .map(|t| {
            let mut st = list_transactions_response::TransactionState::default();
            st.transactional_id = TransactionalId(super::s(&t.transactional_id));
            st.producer_id = ProducerId(t.producer_id);
            st.transaction_state = super::s(t.state.name());
            st
        })
        .collect();
    resp
}

/// WriteTxnMarkers: writes each marker to the partitions of it led here and answers once each
/// is on its partition's ISR (or with the partition's error: NOT_LEADER_OR_FOLLOWER,
/// INVALID_PRODUCER_EPOCH for a producer epoch older than the partition's,
/// TRANSACTION_COORDINATOR_FENCED for a coordinator epoch older than the producer's last
/// marker's). It is how `kafka-transactions.sh abort` ends a hanging transaction; it needs
/// ClusterAction on the cluster, as in Kafka.
pub fn write_txn_markers(
    svc: &TxnServices,
    ctx: &RequestContext,
    req: WriteTxnMarkersRequest,
    _version: i16,
) -> Reply {
    use write_txn_markers_response::{
        WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
    };
    let allowed = svc.allowed(
        ctx,
        AclOperation::ClusterAction,
        ResourceType::Cluster,
        CLUSTER_NAME,
    );
    let svc = svc.clone();
    Reply::Later(Box::pin(async move {
        let mut markers = Vec::with_capacity(req.markers.len());
        for m in req.markers {
            let marker = EndTxnMarker {
                producer_id: m.producer_id.0,
                producer_epoch: m.producer_epoch,
                commit: m.transaction_result,
                coordinator_epoch: m.coordinator_epoch,
            };
            let targets: Vec<(String, i32)> = m
                .topics
                .iter()
                .flat_map(|t| {
                    t.partition_indexes
                        .iter()
                        .map(move |&p| (t.name.0.to_string(), p))
                })
                .collect();
            let results = if allowed {
                crate::replicate::markers::write_markers(
                    &svc.partitions,
                    &marker,
                    &targets,
                    crate::replicate::markers::MARKER_TIMEOUT,
                    svc.marker_hook.as_ref(),
                )
                .await
            } else {
                targets
                    .into_iter()
                    .map(|tp| (tp, Err(ResponseError::ClusterAuthorizationFailed)))
                    .collect()
            };
            let mut topics: BTreeMap<String, Vec<WritableTxnMarkerPartitionResult>> =
                BTreeMap::new();
            for ((topic, partition), r) in results {
                if let Err(e) = &r {
                    tracing::info!(%topic, partition, producer_id = marker.producer_id, error = ?e, "administrator's transaction marker not written");
                } else {
                    tracing::info!(%topic, partition, producer_id = marker.producer_id, producer_epoch = marker.producer_epoch, commit = marker.commit, "administrator's transaction marker written");
                }
                topics.entry(topic).or_default().push(
                    WritableTxnMarkerPartitionResult::default()
                        .with_partition_index(partition)
                        .with_error_code(r.err().map_or(0, |e| e.code())),
                );
            }
            markers.push(
                WritableTxnMarkerResult::default()
                    .with_producer_id(m.producer_id)
                    .with_topics(
                        topics
                            .into_iter()
                            .map(|(name, partitions)| {
                                WritableTxnMarkerTopicResult::default()
                                    .with_name(TopicName(name.into()))
                                    .with_partitions(partitions)
                            })
                            .collect(),
                    ),
            );
        }
        ResponseKind::WriteTxnMarkers(WriteTxnMarkersResponse::default().with_markers(markers))
    }))
}
