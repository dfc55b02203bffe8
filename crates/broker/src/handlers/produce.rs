//! Produce: validates acks, finds each partition, appends each batch in request order.
//!
//! acks=0 gets no response; acks=1 and acks=-1 are answered once the batch is in the log. On a
//! single node the leader is the whole ISR, so acks=all is satisfied by the local append; the
//! replication issue adds waiting for followers here.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, ResponseKind};
use runnel_protocol::batch;

use super::{s, Reply};
use crate::{error, now_ms, SharedBroker};

pub fn handle(broker: &SharedBroker, req: ProduceRequest, version: i16) -> Reply {
    let acks = req.acks;
    let valid_acks = matches!(acks, -1..=1);
    let transactional = req.transactional_id.is_some();
    let now = now_ms();
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
                let partition = broker.replicas.get_by(&name, pd.index).ok_or_else(|| {
                    (
                        ResponseError::UnknownTopicOrPartition.code(),
                        format!("this server does not host {name}-{}", pd.index),
                    )
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
    Reply::Now(ResponseKind::Produce(
        ProduceResponse::default().with_responses(responses),
    ))
}
