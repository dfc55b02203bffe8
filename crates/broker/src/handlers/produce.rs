//! Produce: validates acks, finds each partition, appends each batch in request order.
//!
//! Only the partition's leader appends: a partition led elsewhere (or not hosted here yet) gets
//! NOT_LEADER_OR_FOLLOWER, with the current leader as a KIP-951 hint from v10.
//!
//! acks=0 gets no response; acks=1 and acks=-1 are answered once the batch is in the log.
//! Without replication (a later issue) acks=all is satisfied by the leader's local append.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse, ResponseKind};
use runnel_protocol::batch;

use super::{hint_endpoints, leader_hint, leader_partition, s, Reply};
use crate::{error, now_ms, SharedBroker};

pub fn handle(broker: &SharedBroker, req: ProduceRequest, version: i16) -> Reply {
    let acks = req.acks;
    let valid_acks = matches!(acks, -1..=1);
    let transactional = req.transactional_id.is_some();
    let now = now_ms();
    let image = broker.image();
    let mut hinted = std::collections::BTreeSet::new();
    let mut responses = Vec::with_capacity(req.topic_data.len());
    for topic in req.topic_data {
        let name = topic.name.0.to_string();
        let mut parts = Vec::with_capacity(topic.partition_data.len());
        for pd in topic.partition_data {
            let mut r = PartitionProduceResponse::default()
                .with_index(pd.index)
                .with_base_offset(-1);
            let result: Result<(i64, i64, i64), (i16, String)> = (|| {
                if !valid_acks {
                    return Err((
                        ResponseError::InvalidRequiredAcks.code(),
                        format!("acks must be -1, 0 or 1, not {acks}"),
                    ));
                }
                if crate::group::is_internal_topic(&name) {
                    return Err((
                        ResponseError::InvalidTopicException.code(),
                        format!("Cannot append to internal topic {name}"),
                    ));
                }
                let partition = leader_partition(broker, &image.image, &name, pd.index, -1)
                    .map_err(|e| {
                        let msg = match e {
                            ResponseError::NotLeaderOrFollower => {
                                format!("this server is not the leader of {name}-{}", pd.index)
                            }
                            _ => format!("this server does not host {name}-{}", pd.index),
                        };
                        (e.code(), msg)
                    })?;
                let records = pd.records.as_deref().unwrap_or(&[]);
                if records.is_empty() {
                    return Err((
                        ResponseError::InvalidRecord.code(),
                        "no record batch in produce request".into(),
                    ));
                }
                if let Ok(h) = batch::parse_header(records) {
                    if transactional || h.is_transactional() || h.is_control() {
                        return Err((
                            ResponseError::InvalidTxnState.code(),
                            "transactions are not supported yet".into(),
                        ));
                    }
                }
                let out = partition
                    .append(records, now)
                    .map_err(|e| (error::storage_code(&e), e.to_string()))?;
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
                Err((code, msg)) => {
                    tracing::debug!(topic = %name, partition = pd.index, code, error = %msg, "produce rejected");
                    metrics::counter!("runnel_produce_errors_total").increment(1);
                    r.error_code = code;
                    if version >= 8 {
                        r.error_message = Some(s(&msg));
                    }
                    // KIP-951: tell the client where the partition moved.
                    if version >= 10 && code == ResponseError::NotLeaderOrFollower.code() {
                        if let Some((leader, epoch)) = leader_hint(&image.image, &name, pd.index) {
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
        resp.node_endpoints = hint_endpoints(&image.image, hinted, |id, host, port, rack| {
            NodeEndpoint::default()
                .with_node_id(id)
                .with_host(host)
                .with_port(port)
                .with_rack(rack)
        });
    }
    Reply::Now(ResponseKind::Produce(resp))
}
