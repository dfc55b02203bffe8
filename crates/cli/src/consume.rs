//! Shared consumer plumbing for `console-consumer` and `bench consume`: ListOffsets, Fetch
//! requests without a group, and decoding of fetched record bytes.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::{anyhow, bail, Result};
use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    BrokerId, FetchRequest, FetchResponse, ListOffsetsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Record, RecordBatchDecoder};

use crate::client::{check, Client, KafkaError, Target, TopicMeta};

pub const EARLIEST: i64 = -2;
pub const LATEST: i64 = -1;

/// Kafka's `isolation.level` names.
pub fn parse_isolation(s: &str) -> Result<i8> {
    match s.trim() {
        "read_uncommitted" => Ok(0),
        "read_committed" => Ok(1),
        other => {
            bail!("invalid isolation level '{other}': expected read_uncommitted or read_committed")
        }
    }
}

/// Leader of each partition; `-1` when none.
pub fn leaders(topic: &TopicMeta) -> HashMap<i32, i32> {
    topic
        .partitions
        .iter()
        .map(|p| (p.index, p.leader))
        .collect()
}

/// Offsets at `timestamp` (EARLIEST / LATEST / a time in ms) for `partitions`, asked of each leader.
pub async fn list_offsets(
    client: &mut Client,
    topic: &TopicMeta,
    partitions: &[i32],
    timestamp: i64,
    isolation: i8,
) -> Result<HashMap<i32, i64>> {
    let leaders = leaders(topic);
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for p in partitions {
        let leader = leaders.get(p).copied().unwrap_or(-1);
        if leader < 0 {
            bail!("partition {}-{p} has no leader", topic.name);
        }
        by_leader.entry(leader).or_default().push(*p);
    }
    let mut out = HashMap::new();
    for (leader, parts) in by_leader {
        let mut t = ListOffsetsTopic::default();
        t.name = TopicName(StrBytes::from_string(topic.name.clone()));
        t.partitions = parts
            .iter()
            .map(|p| {
                let mut lp = ListOffsetsPartition::default();
                lp.partition_index = *p;
                lp.current_leader_epoch = -1;
                lp.timestamp = timestamp;
                lp
            })
            .collect();
        let mut req = ListOffsetsRequest::default();
        req.replica_id = BrokerId(-1);
        req.isolation_level = isolation;
        req.topics = vec![t];
        req.timeout_ms = 30_000;
        let resp = client.send_to(Target::Broker(leader), &req).await?;
        for t in resp.topics {
            for p in t.partitions {
                check(p.error_code, None).map_err(|e| {
                    anyhow!(e).context(format!(
                        "ListOffsets for {}-{}",
                        topic.name, p.partition_index
                    ))
                })?;
                out.insert(p.partition_index, p.offset);
            }
        }
    }
    for p in partitions {
        if !out.contains_key(p) {
            bail!("ListOffsets returned nothing for {}-{p}", topic.name);
        }
    }
    Ok(out)
}

/// Fetch limits, with the Java consumer's defaults.
#[derive(Debug, Clone, Copy)]
pub struct FetchLimits {
    pub max_wait_ms: i32,
    pub min_bytes: i32,
    pub max_bytes: i32,
    pub partition_max_bytes: i32,
    pub isolation: i8,
}

impl Default for FetchLimits {
    fn default() -> Self {
        FetchLimits {
            max_wait_ms: 500,
            min_bytes: 1,
            max_bytes: 52_428_800,
            partition_max_bytes: 1_048_576,
            isolation: 0,
        }
    }
}

/// A sessionless Fetch of `(partition, offset)` pairs of one topic.
pub fn fetch_request(
    topic: &TopicMeta,
    positions: &[(i32, i64)],
    limits: &FetchLimits,
) -> FetchRequest {
    let mut t = FetchTopic::default();
    t.topic = TopicName(StrBytes::from_string(topic.name.clone()));
    t.topic_id = topic.id;
    t.partitions = positions
        .iter()
        .map(|&(p, offset)| {
            let mut fp = FetchPartition::default();
            fp.partition = p;
            fp.current_leader_epoch = -1;
            fp.fetch_offset = offset;
            fp.last_fetched_epoch = -1;
            fp.log_start_offset = -1;
            fp.partition_max_bytes = limits.partition_max_bytes;
            fp
        })
        .collect();
    let mut req = FetchRequest::default();
    req.replica_id = BrokerId(-1);
    req.max_wait_ms = limits.max_wait_ms;
    req.min_bytes = limits.min_bytes;
    req.max_bytes = limits.max_bytes;
    req.isolation_level = limits.isolation;
    req.session_id = 0;
    req.session_epoch = -1;
    req.topics = vec![t];
    req
}

/// One partition's slice of a Fetch response.
pub struct FetchedPartition {
    pub partition: i32,
    pub error: Option<KafkaError>,
    pub records: Option<Bytes>,
    /// Aborted transactions `(producer_id, first_offset)` (read_committed fetches only).
    pub aborted: Vec<(i64, i64)>,
}

pub fn fetched_partitions(resp: FetchResponse, topic: &TopicMeta) -> Result<Vec<FetchedPartition>> {
    check(resp.error_code, None).map_err(|e| anyhow!(e).context("fetch failed"))?;
    Ok(resp
        .responses
        .into_iter()
        .filter(|t| {
            t.topic.0.as_str() == topic.name || (!t.topic_id.is_nil() && t.topic_id == topic.id)
        })
        .flat_map(|t| t.partitions)
        .map(|p| FetchedPartition {
            partition: p.partition_index,
            error: check(p.error_code, None).err(),
            records: p.records,
            aborted: p
                .aborted_transactions
                .unwrap_or_default()
                .iter()
                .map(|a| (a.producer_id.0, a.first_offset))
                .collect(),
        })
        .collect())
}

/// Decodes the record batches in `raw` (as a Fetch returns them), appending the data records
/// at or above `fetch_offset` to `out`. Control batches are skipped; a trailing partial batch is
/// ignored. With `aborted` (read_committed), transactional batches of aborted transactions are
/// dropped the way the Java consumer does: a producer's batches are skipped from the aborted
/// transaction's first offset until that producer's ABORT marker. Returns the offset to fetch
/// next (`fetch_offset` when nothing complete arrived).
pub fn decode_records(
    raw: &Bytes,
    fetch_offset: i64,
    aborted: Option<&[(i64, i64)]>,
    out: &mut Vec<Record>,
) -> Result<i64> {
    const HEADER: usize = 61; // v2 batch header size, through the record count
    let mut pending: Vec<(i64, i64)> = aborted.map(<[_]>::to_vec).unwrap_or_default();
    pending.sort_by_key(|a| std::cmp::Reverse(a.1));
    let mut aborting: HashSet<i64> = HashSet::new();
    let mut pos = 0usize;
    let mut next = fetch_offset;
    while raw.len() - pos >= 12 {
        let base_offset = i64::from_be_bytes(raw[pos..pos + 8].try_into()?);
        let len = i32::from_be_bytes(raw[pos + 8..pos + 12].try_into()?);
        if len < 0 {
            bail!("corrupt record batch at byte {pos}: negative length {len}");
        }
        let total = 12 + len as usize;
        if raw.len() - pos < total {
            break; // partial batch at the end of the response
        }
        if total < HEADER {
            bail!("corrupt record batch at offset {base_offset}: length {len} is too short");
        }
        let magic = raw[pos + 16];
        if magic != 2 {
            bail!("record batch at offset {base_offset} has magic {magic}; only v2 batches are supported");
        }
        let attributes = i16::from_be_bytes(raw[pos + 21..pos + 23].try_into()?);
        let last_offset_delta = i32::from_be_bytes(raw[pos + 23..pos + 27].try_into()?);
        let producer_id = i64::from_be_bytes(raw[pos + 43..pos + 51].try_into()?);
        let batch_next = base_offset + i64::from(last_offset_delta) + 1;
        let is_control = attributes & 0x20 != 0;
        let transactional = attributes & 0x10 != 0;
        let mut skip = is_control;
        if aborted.is_some() && transactional {
            while pending.last().is_some_and(|a| a.1 < batch_next) {
                if let Some((pid, _)) = pending.pop() {
                    aborting.insert(pid);
                }
            }
            if is_control {
                // The marker's key is (version: i16, type: i16); type 0 is ABORT.
                let mut slice = raw.slice(pos..pos + total);
                let set = RecordBatchDecoder::decode(&mut slice)?;
                let is_abort = set
                    .records
                    .first()
                    .and_then(|r| r.key.as_ref())
                    .is_some_and(|k| k.len() >= 4 && k[2..4] == [0, 0]);
                if is_abort {
                    aborting.remove(&producer_id);
                }
            } else if aborting.contains(&producer_id) {
                skip = true;
            }
        }
        if batch_next > fetch_offset && !skip {
            let mut slice = raw.slice(pos..pos + total);
            let set = RecordBatchDecoder::decode(&mut slice)?;
            out.extend(set.records.into_iter().filter(|r| r.offset >= fetch_offset));
        }
        next = next.max(batch_next);
        pos += total;
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::produce::{encode_batch, new_record, ProducerIdentity};
    use bytes::BytesMut;
    use kafka_protocol::records::Compression;

    fn batch(base: i64, values: &[&str], compression: Compression, control: bool) -> Bytes {
        let mut records: Vec<Record> = values
            .iter()
            .map(|v| {
                let mut r = new_record(None, Some(Bytes::from(v.to_string())), 1);
                r.control = control;
                r
            })
            .collect();
        let mut buf = BytesMut::new();
        let b = encode_batch(
            &mut buf,
            &mut records,
            ProducerIdentity::NONE,
            -1,
            compression,
        )
        .unwrap();
        let mut b = BytesMut::from(&b[..]);
        b[..8].copy_from_slice(&base.to_be_bytes());
        b.freeze()
    }

    #[test]
    fn decodes_batches_skips_control_old_and_partial() {
        let mut raw = BytesMut::new();
        raw.extend_from_slice(&batch(0, &["a", "b", "c"], Compression::None, false));
        raw.extend_from_slice(&batch(3, &["m"], Compression::None, true));
        raw.extend_from_slice(&batch(4, &["d", "e"], Compression::Lz4, false));
        let partial = batch(6, &["f", "g"], Compression::Snappy, false);
        raw.extend_from_slice(&partial[..partial.len() - 3]);
        let raw = raw.freeze();
        let mut out = Vec::new();
        let next = decode_records(&raw, 1, None, &mut out).unwrap();
        assert_eq!(next, 6);
        let got: Vec<(i64, Bytes)> = out
            .iter()
            .map(|r| (r.offset, r.value.clone().unwrap()))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, Bytes::from("b")),
                (2, Bytes::from("c")),
                (4, Bytes::from("d")),
                (5, Bytes::from("e")),
            ]
        );
        // Only a partial batch: nothing, and the position does not move.
        let mut out = Vec::new();
        assert_eq!(
            decode_records(&partial.slice(..20), 6, None, &mut out).unwrap(),
            6
        );
        assert!(out.is_empty());
        assert_eq!(decode_records(&Bytes::new(), 9, None, &mut out).unwrap(), 9);
    }

    fn txn_batch(base: i64, pid: i64, values: &[&str], marker: Option<i16>) -> Bytes {
        let mut records: Vec<Record> = values
            .iter()
            .map(|v| {
                let mut r = new_record(None, Some(Bytes::from(v.to_string())), 1);
                r.transactional = true;
                if let Some(kind) = marker {
                    r.control = true;
                    let mut key = 0i16.to_be_bytes().to_vec();
                    key.extend_from_slice(&kind.to_be_bytes());
                    r.key = Some(Bytes::from(key));
                }
                r
            })
            .collect();
        let mut buf = BytesMut::new();
        let producer = ProducerIdentity { id: pid, epoch: 0 };
        let b = encode_batch(&mut buf, &mut records, producer, 0, Compression::None).unwrap();
        let mut b = BytesMut::from(&b[..]);
        b[..8].copy_from_slice(&base.to_be_bytes());
        b.freeze()
    }

    #[test]
    fn read_committed_drops_aborted_transactions() {
        let mut raw = BytesMut::new();
        raw.extend_from_slice(&txn_batch(0, 7, &["aborted1", "aborted2"], None));
        raw.extend_from_slice(&txn_batch(2, 8, &["committed"], None));
        raw.extend_from_slice(&txn_batch(3, 7, &["abort-marker"], Some(0)));
        raw.extend_from_slice(&txn_batch(4, 8, &["commit-marker"], Some(1)));
        raw.extend_from_slice(&txn_batch(5, 7, &["later"], None));
        let raw = raw.freeze();
        let values = |out: &[Record]| -> Vec<Bytes> {
            out.iter().map(|r| r.value.clone().unwrap()).collect()
        };
        let mut out = Vec::new();
        let next = decode_records(&raw, 0, Some(&[(7, 0)]), &mut out).unwrap();
        assert_eq!(next, 6);
        assert_eq!(
            values(&out),
            vec![Bytes::from("committed"), Bytes::from("later")]
        );
        let mut out = Vec::new();
        decode_records(&raw, 0, None, &mut out).unwrap();
        assert_eq!(
            out.len(),
            4,
            "read_uncommitted keeps aborted data, drops markers"
        );
    }

    #[test]
    fn isolation_levels_parse() {
        assert_eq!(parse_isolation("read_committed").unwrap(), 1);
        assert_eq!(parse_isolation("read_uncommitted").unwrap(), 0);
        assert!(parse_isolation("dirty").is_err());
    }
}
