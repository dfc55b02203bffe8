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

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse, ResponseKind};
use runnel_protocol::batch;

use super::{hint_endpoints, leader_hint, leader_partition, s, Reply};
use crate::auth::Authorizer;
use crate::clock::now_ms;
use crate::context::RequestContext;
use crate::error::KafkaError;
use crate::fence::Fence;
use crate::metadata::MetadataView;
use crate::replica::{AppendError, ReplicaManager};
use crate::replicate;
use runnel_security::acl::{AclOperation, ResourceType};
use std::time::Duration;

pub fn handle(
    partitions: &ReplicaManager,
    fence: &Fence,
    metadata: &MetadataView,
    authorizer: &Authorizer,
    ctx: &RequestContext,
    req: ProduceRequest,
    version: i16,
) -> Reply {
    let acks = req.acks;
    let valid_acks = matches!(acks, -1..=1);
    let transactional = req.transactional_id.is_some();
    let now = now_ms();
    let image = metadata.serving_image();
    let mut hinted = std::collections::BTreeSet::new();
    let mut responses = Vec::with_capacity(req.topic_data.len());
    // acks=all: (topic index, partition index, partition, last offset, leader epoch).
    let mut waiting = Vec::new();
    // A transactional producer needs Write on its transactional id.
    let txn_allowed = req.transactional_id.as_ref().is_none_or(|id| {
        authorizer.authorize(
            &image.image,
            ctx,
            AclOperation::Write,
            ResourceType::TransactionalId,
            id,
        )
    });
    for (ti, topic) in req.topic_data.into_iter().enumerate() {
        let name = topic.name.0.to_string();
        let write_allowed = authorizer.authorize(
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
            let result: Result<(i64, i64, i64), KafkaError> = (|| {
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
                if crate::coordinators::is_internal_topic(&name) {
                    return Err(KafkaError::new(
                        ResponseError::InvalidTopicException,
                        format!("Cannot append to internal topic {name}"),
                    ));
                }
                let partition =
                    leader_partition(partitions, fence, &image.image, &name, pd.index, -1)
                        .map_err(|e| {
                            let msg = match e {
                                ResponseError::NotLeaderOrFollower => {
                                    format!("this server is not the leader of {name}-{}", pd.index)
                                }
                                _ => format!("this server does not host {name}-{}", pd.index),
                            };
                            KafkaError::new(e, msg)
                        })?;
                let records = pd.records.as_deref().unwrap_or(&[]);
                if records.is_empty() {
                    return Err(KafkaError::new(
                        ResponseError::InvalidRecord,
                        "no record batch in produce request",
                    ));
                }
                if let Ok(h) = batch::parse_header(records) {
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
                let (out, leader_epoch) = partition.append(records, now).map_err(|e| match e {
                    AppendError::NotLeader => KafkaError::new(
                        ResponseError::NotLeaderOrFollower,
                        format!("this server is not the leader of {name}-{}", pd.index),
                    ),
                    AppendError::Storage(e) => KafkaError::from(&e),
                })?;
                if acks == -1 {
                    waiting.push((ti, pi, partition.clone(), out.last_offset, leader_epoch));
                }
                if !out.duplicate {
                    metrics::counter!("runnel_produce_records_total")
                        .increment((out.last_offset - out.base_offset + 1).max(0) as u64);
                    metrics::counter!("runnel_produce_bytes_total").increment(records.len() as u64);
                }
                Ok((out.base_offset, out.log_append_time, out.log_start_offset))
            })();
            match result {
                Ok((base, append_time, start)) => {
                    r.base_offset = base;
                    r.log_append_time_ms = append_time;
                    if version >= 5 {
                        r.log_start_offset = start;
                    }
                }
                Err(e) => {
                    tracing::debug!(topic = %name, partition = pd.index, code = e.code(), error = %e.message, "produce rejected");
                    metrics::counter!("runnel_produce_errors_total").increment(1);
                    r.error_code = e.code();
                    if version >= 8 {
                        r.error_message = Some(s(&e.message));
                    }
                    // KIP-951: tell the client where the partition moved.
                    if version >= 10 && e.error == ResponseError::NotLeaderOrFollower {
                        if let Some((leader, epoch)) =
                            leader_hint(&metadata.image().image, &name, pd.index)
                        {
                            r.current_leader = LeaderIdAndEpoch::default()
                                .with_leader_id(BrokerId(leader))
                                .with_leader_epoch(epoch);
                            hinted.insert(leader);
                        }
                    }
                }
            }
            parts.push(r);
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic.name)
                .with_partition_responses(parts),
        );
    }
    if acks == 0 {
        return Reply::NoResponse;
    }
    let mut resp = ProduceResponse::default().with_responses(responses);
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
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(req.timeout_ms.max(0) as u64);
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
