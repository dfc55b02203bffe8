//! Producer plumbing: acks and compression parsing, record-batch encoding with producer id /
//! epoch / sequence, Produce requests and InitProducerId.

use anyhow::{anyhow, bail, Result};
use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    InitProducerIdRequest, ProduceRequest, ProduceResponse, ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::client::{check, Client, Connection, Target, TopicMeta};

/// Producer id and epoch from InitProducerId, or `NONE` when idempotence is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdentity {
    pub id: i64,
    pub epoch: i16,
}

impl ProducerIdentity {
    pub const NONE: ProducerIdentity = ProducerIdentity { id: -1, epoch: -1 };

    pub fn is_idempotent(&self) -> bool {
        self.id >= 0
    }
}

/// Kafka's `acks` values: `all`/`-1`, `0`, `1`.
pub fn parse_acks(s: &str) -> Result<i16> {
    match s.trim() {
        "all" | "-1" => Ok(-1),
        "0" => Ok(0),
        "1" => Ok(1),
        other => bail!("invalid acks '{other}': expected all, -1, 0 or 1"),
    }
}

/// Kafka's `compression.type` names.
pub fn parse_compression(s: &str) -> Result<Compression> {
    match s.trim().to_ascii_lowercase().as_str() {
        "none" | "uncompressed" | "" => Ok(Compression::None),
        "gzip" => Ok(Compression::Gzip),
        "snappy" => Ok(Compression::Snappy),
        "lz4" => Ok(Compression::Lz4),
        "zstd" => Ok(Compression::Zstd),
        other => bail!("invalid compression '{other}': expected none, gzip, snappy, lz4 or zstd"),
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub fn new_record(key: Option<Bytes>, value: Option<Bytes>, timestamp: i64) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp,
        key,
        value,
        headers: IndexMap::new(),
    }
}

/// Encodes `records` as ONE v2 batch into `buf` and returns it. Offsets become 0..n, and the
/// batch's base sequence is `base_sequence` (`-1` without idempotence). The encoder groups
/// records into a batch only while `offset - sequence` stays constant, so every record gets
/// `sequence = base_sequence + i` even when the batch carries no producer id.
pub fn encode_batch(
    buf: &mut BytesMut,
    records: &mut [Record],
    producer: ProducerIdentity,
    base_sequence: i32,
    compression: Compression,
) -> Result<Bytes> {
    for (i, r) in records.iter_mut().enumerate() {
        r.offset = i as i64;
        r.sequence = base_sequence.wrapping_add(i as i32);
        r.producer_id = producer.id;
        r.producer_epoch = producer.epoch;
    }
    buf.clear();
    RecordBatchEncoder::encode(
        buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )?;
    Ok(buf.split().freeze())
}

/// Next sequence after a batch of `count` records (wraps to 0 past `i32::MAX`, as Kafka does).
pub fn next_sequence(sequence: i32, count: i32) -> i32 {
    let next = i64::from(sequence) + i64::from(count);
    if next > i64::from(i32::MAX) {
        (next - i64::from(i32::MAX) - 1) as i32
    } else {
        next as i32
    }
}

/// A Produce request for one topic carrying one batch per listed partition.
pub fn produce_request(
    topic: &TopicMeta,
    acks: i16,
    timeout_ms: i32,
    batches: Vec<(i32, Bytes)>,
) -> ProduceRequest {
    let mut td = TopicProduceData::default();
    td.name = TopicName(StrBytes::from_string(topic.name.clone()));
    td.topic_id = topic.id;
    td.partition_data = batches
        .into_iter()
        .map(|(p, b)| {
            let mut pd = PartitionProduceData::default();
            pd.index = p;
            pd.records = Some(b);
            pd
        })
        .collect();
    let mut req = ProduceRequest::default();
    req.acks = acks;
    req.timeout_ms = timeout_ms;
    req.topic_data = vec![td];
    req
}

/// Per-partition outcome of a Produce response: `(partition, error_code, message, base_offset)`.
pub fn produce_results(
    resp: &ProduceResponse,
    topic: &TopicMeta,
) -> Vec<(i32, i16, Option<String>, i64)> {
    resp.responses
        .iter()
        .filter(|t| {
            t.name.0.as_str() == topic.name || (!t.topic_id.is_nil() && t.topic_id == topic.id)
        })
        .flat_map(|t| t.partition_responses.iter())
        .map(|p| {
            let msg = p.error_message.as_ref().map(|m| m.to_string()).or_else(|| {
                p.record_errors
                    .first()
                    .and_then(|e| e.batch_index_error_message.as_ref())
                    .map(|m| m.to_string())
            });
            (p.index, p.error_code, msg, p.base_offset)
        })
        .collect()
}

/// Sends a Produce request and waits for the response (`None` for acks=0, which has none).
pub async fn send_produce(
    conn: &mut Connection,
    req: &ProduceRequest,
) -> Result<Option<ProduceResponse>> {
    let version = conn.version(kafka_protocol::messages::ApiKey::Produce)?;
    if req.acks == 0 {
        conn.send_without_response(req, version).await?;
        return Ok(None);
    }
    conn.request_at(req, version).await.map(Some)
}

/// InitProducerId for an idempotent (non-transactional) producer.
pub async fn init_producer_id(client: &mut Client) -> Result<ProducerIdentity> {
    let mut req = InitProducerIdRequest::default();
    req.transactional_id = None;
    req.transaction_timeout_ms = 60_000;
    req.producer_id = ProducerId(-1);
    req.producer_epoch = -1;
    let mut last = None;
    for _ in 0..10 {
        let resp = client.send_to(Target::Any, &req).await?;
        match check(resp.error_code, None) {
            Ok(()) => {
                return Ok(ProducerIdentity {
                    id: resp.producer_id.0,
                    epoch: resp.producer_epoch,
                })
            }
            Err(e) if e.is_retriable() => {
                last = Some(e);
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(e) => return Err(anyhow!(e).context("InitProducerId failed")),
        }
    }
    Err(anyhow!(
        "InitProducerId failed: {}",
        last.map(|e| e.to_string()).unwrap_or_default()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;

    #[test]
    fn batches_carry_producer_state_and_decode_back() {
        let mut records: Vec<Record> = (0..5)
            .map(|i| new_record(None, Some(Bytes::from(format!("v{i}"))), 1000 + i))
            .collect();
        let mut buf = BytesMut::new();
        for (producer, seq) in [
            (ProducerIdentity { id: 7, epoch: 2 }, 40),
            (ProducerIdentity::NONE, -1),
        ] {
            for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
                let bytes =
                    encode_batch(&mut buf, &mut records, producer, seq, compression).unwrap();
                let infos = RecordBatchDecoder::decode_batch_info(&mut bytes.clone()).unwrap();
                assert_eq!(infos.len(), 1, "exactly one batch");
                assert_eq!(infos[0].record_count, 5);
                assert_eq!(infos[0].base_sequence, seq);
                assert_eq!(infos[0].producer_id, producer.id);
                assert_eq!(infos[0].producer_epoch, producer.epoch);
                let set = RecordBatchDecoder::decode(&mut bytes.clone()).unwrap();
                let values: Vec<_> = set
                    .records
                    .iter()
                    .map(|r| r.value.clone().unwrap())
                    .collect();
                assert_eq!(values[4], Bytes::from("v4"));
            }
        }
    }

    #[test]
    fn acks_compression_and_sequences() {
        assert_eq!(parse_acks("all").unwrap(), -1);
        assert_eq!(parse_acks("-1").unwrap(), -1);
        assert_eq!(parse_acks("1").unwrap(), 1);
        assert!(parse_acks("2").is_err());
        assert_eq!(parse_compression("LZ4").unwrap(), Compression::Lz4);
        assert!(parse_compression("brotli").is_err());
        assert_eq!(next_sequence(5, 3), 8);
        assert_eq!(next_sequence(i32::MAX, 1), 0);
        assert_eq!(next_sequence(i32::MAX - 1, 3), 1);
    }
}
