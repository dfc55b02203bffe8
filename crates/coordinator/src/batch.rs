//! Record batches a coordinator writes, and the records it replays.

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::shard::{BatchKind, ReplayRecord};

/// One uncompressed magic-2 batch of keyed records, stamped `now_ms` (a transactional one
/// starts its producer's sequence at 0).
pub fn encode(
    kind: BatchKind,
    records: &[(Bytes, Option<Bytes>)],
    now_ms: i64,
) -> Result<Bytes, String> {
    encode_at(kind, records, now_ms, 0)
}

/// [`encode`], a transactional batch continuing its producer's sequence at `base_sequence`
/// (the partition checks a producer's sequences as it does a client's).
pub fn encode_at(
    kind: BatchKind,
    records: &[(Bytes, Option<Bytes>)],
    now_ms: i64,
    base_sequence: i32,
) -> Result<Bytes, String> {
    let (producer_id, producer_epoch, transactional) = match kind {
        BatchKind::Plain => (-1, -1, false),
        BatchKind::Transactional {
            producer_id,
            producer_epoch,
        } => (producer_id, producer_epoch, true),
    };
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch whenever `offset - sequence` changes: a constant
            // difference keeps one batch, with base sequence -1 without a producer and 0 with
            // one.
            sequence: if transactional {
                base_sequence.wrapping_add(i as i32)
            } else {
                i as i32 - 1
            },
            timestamp: now_ms,
            key: Some(key.clone()),
            value: value.clone(),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| format!("cannot encode a coordinator batch: {e}"))?;
    Ok(buf.freeze())
}

/// Decodes the batches in `buf` and calls `f` with each record (markers included), in offset
/// order. Returns the offset after the last whole batch read, or `None` when `buf` held no
/// whole batch. A batch that does not decode is skipped with a warning (its offsets are known
/// from its header).
pub fn for_each_record(buf: &Bytes, mut f: impl FnMut(&ReplayRecord<'_>)) -> Option<i64> {
    let mut rest = buf.clone();
    let mut next = None;
    while rest.len() >= 12 {
        let base_offset = (&rest[0..8]).get_i64();
        let len = (&rest[8..12]).get_i32();
        if len < 0 || rest.len() < 12 + len as usize {
            break;
        }
        let mut one = rest.split_to(12 + len as usize);
        let header = one.clone();
        match RecordBatchDecoder::decode(&mut one) {
            Ok(set) => {
                for r in &set.records {
                    next = Some(r.offset + 1);
                    if r.control {
                        let Some(marker) = parse_marker(r) else {
                            tracing::warn!(offset = r.offset, "skipping an unknown control record");
                            continue;
                        };
                        f(&marker);
                        continue;
                    }
                    let Some(key) = r.key.as_deref() else {
                        continue;
                    };
                    f(&ReplayRecord::Data {
                        offset: r.offset,
                        producer_id: r.producer_id,
                        producer_epoch: r.producer_epoch,
                        transactional: r.transactional,
                        key,
                        value: r.value.as_deref(),
                    });
                }
                if set.records.is_empty() {
                    next = batch_next_offset(&header).or(next);
                }
            }
            Err(e) => {
                tracing::warn!(offset = base_offset, error = %e, "skipping a batch that does not decode");
                next = batch_next_offset(&header).or(next);
            }
        }
    }
    next
}

/// The offset after a batch, from its header (base offset + last offset delta + 1).
fn batch_next_offset(b: &Bytes) -> Option<i64> {
    if b.len() < 27 {
        return None;
    }
    let base = (&b[0..8]).get_i64();
    let delta = (&b[23..27]).get_i32();
    Some(base + delta as i64 + 1)
}

/// An end-transaction marker: key = version (int16) and type (int16: 0 abort, 1 commit);
/// value = version (int16) and coordinator epoch (int32).
fn parse_marker(r: &Record) -> Option<ReplayRecord<'static>> {
    let key = r.key.as_deref()?;
    if key.len() < 4 {
        return None;
    }
    let kind = (&key[2..4]).get_i16();
    let commit = match kind {
        0 => false,
        1 => true,
        _ => return None,
    };
    let value = r.value.as_deref()?;
    if value.len() < 6 {
        return None;
    }
    let coordinator_epoch = (&value[2..6]).get_i32();
    Some(ReplayRecord::Marker {
        offset: r.offset,
        producer_id: r.producer_id,
        producer_epoch: r.producer_epoch,
        commit,
        coordinator_epoch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(buf: &Bytes) -> (Vec<String>, Option<i64>) {
        let mut out = Vec::new();
        let next = for_each_record(buf, |r| out.push(format!("{r:?}")));
        (out, next)
    }

    #[test]
    fn plain_and_transactional_batches_replay_with_their_producer() {
        let recs = vec![
            (Bytes::from_static(b"k1"), Some(Bytes::from_static(b"v1"))),
            (Bytes::from_static(b"k2"), None),
        ];
        let mut buf = BytesMut::new();
        let plain = encode(BatchKind::Plain, &recs, 7).unwrap();
        // Rebase the second batch at offset 2, as the log would.
        let mut txn = BytesMut::from(
            &encode(
                BatchKind::Transactional {
                    producer_id: 42,
                    producer_epoch: 3,
                },
                &recs[..1],
                7,
            )
            .unwrap()[..],
        );
        txn[0..8].copy_from_slice(&2i64.to_be_bytes());
        buf.extend_from_slice(&plain);
        buf.extend_from_slice(&txn);
        let buf = buf.freeze();
        let mut seen = Vec::new();
        let next = for_each_record(&buf, |r| match r {
            ReplayRecord::Data {
                offset,
                producer_id,
                producer_epoch,
                transactional,
                key,
                value,
            } => seen.push((
                *offset,
                *producer_id,
                *producer_epoch,
                *transactional,
                key.to_vec(),
                value.map(|v| v.to_vec()),
            )),
            ReplayRecord::Marker { .. } => panic!("no marker written"),
        });
        assert_eq!(next, Some(3));
        assert_eq!(
            seen,
            vec![
                (0, -1, -1, false, b"k1".to_vec(), Some(b"v1".to_vec())),
                (1, -1, -1, false, b"k2".to_vec(), None),
                (2, 42, 3, true, b"k1".to_vec(), Some(b"v1".to_vec())),
            ]
        );
    }

    #[test]
    fn a_truncated_or_garbage_buffer_yields_nothing_and_never_panics() {
        let recs = vec![(Bytes::from_static(b"k"), Some(Bytes::from_static(b"v")))];
        let whole = encode(BatchKind::Plain, &recs, 1).unwrap();
        for cut in 0..whole.len() {
            let (out, next) = collect(&whole.slice(..cut));
            assert!(out.is_empty(), "cut at {cut}");
            assert_eq!(next, None, "cut at {cut}");
        }
        let mut garbage = BytesMut::from(&whole[..]);
        for b in garbage[12..].iter_mut() {
            *b ^= 0x5a;
        }
        let (out, _) = collect(&garbage.freeze());
        assert!(out.is_empty());
    }
}
