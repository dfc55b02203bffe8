use std::io::Write;
use std::ops::ControlFlow;

use proptest::prelude::*;

use super::*;
use crate::batch::{self, compute_crc, parse_header, CRC_OFFSET, RECORDS_COUNT_OFFSET};

/// One record as the tests write it.
#[derive(Debug, Clone)]
struct Rec {
    offset_delta: i32,
    timestamp_delta: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

fn zigzag(out: &mut Vec<u8>, v: i64) {
    let mut u = ((v << 1) ^ (v >> 63)) as u64;
    while u >= 0x80 {
        out.push((u as u8) | 0x80);
        u >>= 7;
    }
    out.push(u as u8);
}

fn bytes_field(out: &mut Vec<u8>, b: &Option<Vec<u8>>) {
    match b {
        None => zigzag(out, -1),
        Some(b) => {
            zigzag(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

fn encode_record(r: &Rec) -> Vec<u8> {
    let mut body = vec![0u8];
    zigzag(&mut body, r.timestamp_delta);
    zigzag(&mut body, i64::from(r.offset_delta));
    bytes_field(&mut body, &r.key);
    bytes_field(&mut body, &r.value);
    zigzag(&mut body, r.headers.len() as i64);
    for (k, v) in &r.headers {
        bytes_field(&mut body, &Some(k.clone()));
        bytes_field(&mut body, v);
    }
    let mut out = Vec::new();
    zigzag(&mut out, body.len() as i64);
    out.extend_from_slice(&body);
    out
}

fn compress(codec: u8, data: &[u8]) -> Vec<u8> {
    match codec {
        0 => data.to_vec(),
        1 => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        2 => xerial(data, 32 << 10),
        3 => {
            let mut e = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
            e.write_all(data).unwrap();
            let (out, r) = e.finish();
            r.unwrap();
            out
        }
        4 => zstd::encode_all(data, 3).unwrap(),
        _ => unreachable!(),
    }
}

/// xerial's snappy framing, as Kafka's Java client writes it.
fn xerial(data: &[u8], block: usize) -> Vec<u8> {
    let mut out = XERIAL_MAGIC.to_vec();
    out.extend_from_slice(&1i32.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    for chunk in data.chunks(block) {
        let c = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
        out.extend_from_slice(&(c.len() as u32).to_be_bytes());
        out.extend_from_slice(&c);
    }
    out
}

/// A v2 batch with `count` in its header around an already compressed records section.
fn batch_around(codec: u8, count: i32, last_offset_delta: i32, section: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&0i64.to_be_bytes()); // base offset
    b.extend_from_slice(&((49 + section.len()) as i32).to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes()); // partition leader epoch
    b.push(2); // magic
    b.extend_from_slice(&0u32.to_be_bytes()); // crc, set below
    b.extend_from_slice(&i16::from(codec).to_be_bytes());
    b.extend_from_slice(&last_offset_delta.to_be_bytes());
    b.extend_from_slice(&1_000i64.to_be_bytes()); // base timestamp
    b.extend_from_slice(&1_000i64.to_be_bytes()); // max timestamp
    b.extend_from_slice(&(-1i64).to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&count.to_be_bytes());
    b.extend_from_slice(section);
    let crc = compute_crc(&b);
    b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

fn batch_of(codec: u8, recs: &[Rec]) -> Vec<u8> {
    let section: Vec<u8> = recs.iter().flat_map(encode_record).collect();
    let n = recs.len() as i32;
    batch_around(codec, n, (n - 1).max(0), &compress(codec, &section))
}

fn scan_all(b: &[u8]) -> Result<Vec<ScannedRecord>, BatchError> {
    let h = parse_header(b)?;
    let mut out = Vec::new();
    scan_records(b, &h, |r| {
        out.push(*r);
        ControlFlow::Continue(())
    })?;
    Ok(out)
}

fn rec(i: i32, key: Option<&[u8]>, value_len: usize) -> Rec {
    Rec {
        offset_delta: i,
        timestamp_delta: i64::from(i) * 7,
        key: key.map(<[u8]>::to_vec),
        value: Some(vec![b'v'; value_len]),
        headers: vec![(b"h".to_vec(), Some(b"x".to_vec())), (b"n".to_vec(), None)],
    }
}

fn expected(r: &Rec) -> ScannedRecord {
    ScannedRecord {
        offset_delta: r.offset_delta,
        timestamp_delta: r.timestamp_delta,
        key_len: r.key.as_ref().map_or(-1, |k| k.len() as i32),
        value_len: r.value.as_ref().map_or(-1, |v| v.len() as i32),
        header_count: r.headers.len() as i32,
    }
}

#[test]
fn every_codec_yields_the_records_written() {
    let recs: Vec<Rec> = (0..50)
        .map(|i| rec(i, (i % 3 != 0).then_some(&b"key"[..]), (i as usize) * 100))
        .collect();
    for codec in 0..=4u8 {
        let b = batch_of(codec, &recs);
        batch::validate_batch(&b).unwrap();
        let got = scan_all(&b).unwrap_or_else(|e| panic!("codec {codec}: {e}"));
        let want: Vec<_> = recs.iter().map(expected).collect();
        assert_eq!(got, want, "codec {codec}");
    }
}

#[test]
fn records_written_by_kafka_protocol_scan_for_every_codec() {
    use bytes::BytesMut;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let records: Vec<Record> = (0..20)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i,
            sequence: i as i32,
            timestamp: 1_000 + i,
            key: Some(bytes::Bytes::from(format!("k{i}"))),
            value: (i % 5 != 0).then(|| bytes::Bytes::from(vec![b'x'; 300])),
            headers: Default::default(),
        })
        .collect();
    for compression in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        let got = scan_all(&buf).unwrap_or_else(|e| panic!("{compression:?}: {e}"));
        assert_eq!(got.len(), 20, "{compression:?}");
        for (i, r) in got.iter().enumerate() {
            assert_eq!(r.offset_delta, i as i32);
            assert_eq!(r.timestamp_delta, i as i64);
            assert_eq!(r.value_len, if i % 5 == 0 { -1 } else { 300 });
        }
    }
}

#[test]
fn raw_snappy_without_framing_is_read() {
    let recs: Vec<Rec> = (0..5).map(|i| rec(i, Some(b"k"), 10)).collect();
    let section: Vec<u8> = recs.iter().flat_map(encode_record).collect();
    let raw = snap::raw::Encoder::new().compress_vec(&section).unwrap();
    let b = batch_around(2, 5, 4, &raw);
    assert_eq!(scan_all(&b).unwrap().len(), 5);
    // Small xerial blocks: records straddle block boundaries.
    let b = batch_around(2, 5, 4, &xerial(&section, 7));
    assert_eq!(scan_all(&b).unwrap().len(), 5);
}

#[test]
fn a_count_that_disagrees_with_the_records_is_refused() {
    for codec in 0..=4u8 {
        let recs: Vec<Rec> = (0..3).map(|i| rec(i, Some(b"k"), 5)).collect();
        let section: Vec<u8> = recs.iter().flat_map(encode_record).collect();
        let c = compress(codec, &section);
        let more = batch_around(codec, 4, 3, &c);
        assert!(
            matches!(scan_all(&more), Err(BatchError::InvalidRecord(m)) if m.contains("found 3")),
            "codec {codec}"
        );
        let fewer = batch_around(codec, 2, 1, &c);
        assert!(
            matches!(scan_all(&fewer), Err(BatchError::InvalidRecord(m)) if m.contains("left after")),
            "codec {codec}"
        );
    }
}

#[test]
fn record_lengths_that_disagree_with_the_fields_are_refused() {
    let r = rec(0, Some(b"key"), 10);
    let good = encode_record(&r);
    // Length one byte longer than the fields (a trailing byte inside the record).
    let mut longer = good.clone();
    longer[0] += 2; // zigzag: +1
    longer.push(0);
    // Length shorter than the fields.
    let mut shorter = good.clone();
    shorter[0] -= 2;
    // A key length running past the record.
    let mut body = vec![0u8];
    zigzag(&mut body, 0);
    zigzag(&mut body, 0);
    zigzag(&mut body, 1_000_000);
    body.extend_from_slice(b"abc");
    let mut past = Vec::new();
    zigzag(&mut past, body.len() as i64);
    past.extend_from_slice(&body);
    // A negative key length other than -1.
    let mut body = vec![0u8];
    zigzag(&mut body, 0);
    zigzag(&mut body, 0);
    zigzag(&mut body, -5);
    zigzag(&mut body, -1);
    zigzag(&mut body, 0);
    let mut negative = Vec::new();
    zigzag(&mut negative, body.len() as i64);
    negative.extend_from_slice(&body);
    for (name, section) in [
        ("longer", longer),
        ("shorter", shorter),
        ("past", past),
        ("negative", negative),
    ] {
        for codec in [0u8, 4] {
            let b = batch_around(codec, 1, 0, &compress(codec, &section));
            assert!(
                matches!(scan_all(&b), Err(BatchError::InvalidRecord(_))),
                "{name} codec {codec}: {:?}",
                scan_all(&b)
            );
        }
    }
}

#[test]
fn undecodable_compressed_data_is_corrupt() {
    let recs: Vec<Rec> = (0..3).map(|i| rec(i, Some(b"k"), 50)).collect();
    for codec in 1..=4u8 {
        let section: Vec<u8> = recs.iter().flat_map(encode_record).collect();
        let mut c = compress(codec, &section);
        let mid = c.len() / 2;
        for b in &mut c[mid..] {
            *b ^= 0x5a;
        }
        let b = batch_around(codec, 3, 2, &c);
        assert!(
            matches!(
                scan_all(&b),
                Err(BatchError::Corrupt(_) | BatchError::InvalidRecord(_))
            ),
            "codec {codec}: {:?}",
            scan_all(&b)
        );
        let b = batch_around(codec, 3, 2, &c[..mid]);
        assert!(scan_all(&b).is_err(), "truncated, codec {codec}");
    }
}

#[test]
fn a_record_larger_than_memory_would_allow_is_skipped_over() {
    // 256 MiB of zeros in one record, a few hundred kilobytes compressed: the scan reads it
    // through without holding it.
    let value_len: usize = 256 << 20;
    let mut head = vec![0u8];
    zigzag(&mut head, 0);
    zigzag(&mut head, 0);
    zigzag(&mut head, 1);
    head.push(b'k');
    zigzag(&mut head, value_len as i64);
    let body_len = head.len() + value_len + 1;
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    let mut len = Vec::new();
    zigzag(&mut len, body_len as i64);
    enc.write_all(&len).unwrap();
    enc.write_all(&head).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..256 {
        enc.write_all(&zeros).unwrap();
    }
    enc.write_all(&[0]).unwrap(); // no headers
    let c = enc.finish().unwrap();
    assert!(c.len() < 1 << 20, "{}", c.len());
    let b = batch_around(4, 1, 0, &c);
    let got = scan_all(&b).unwrap();
    assert_eq!(got[0].value_len, value_len as i32);
    assert_eq!(got[0].key_len, 1);
}

#[test]
fn a_zstd_frame_asking_for_a_huge_window_is_refused() {
    let recs: Vec<Rec> = (0..3).map(|i| rec(i, Some(b"k"), 50)).collect();
    let section: Vec<u8> = recs.iter().flat_map(encode_record).collect();
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    enc.set_parameter(zstd::stream::raw::CParameter::WindowLog(
        ZSTD_WINDOW_LOG_MAX + 2,
    ))
    .unwrap();
    enc.include_contentsize(false).unwrap();
    enc.write_all(&section).unwrap();
    let c = enc.finish().unwrap();
    let b = batch_around(4, 3, 2, &c);
    assert!(
        matches!(scan_all(&b), Err(BatchError::Corrupt(_))),
        "{:?}",
        scan_all(&b)
    );
    // The same records within the window limit are read.
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    enc.set_parameter(zstd::stream::raw::CParameter::WindowLog(
        ZSTD_WINDOW_LOG_MAX,
    ))
    .unwrap();
    enc.include_contentsize(false).unwrap();
    enc.write_all(&section).unwrap();
    let b = batch_around(4, 3, 2, &enc.finish().unwrap());
    assert_eq!(scan_all(&b).unwrap().len(), 3);
}

#[test]
fn an_oversized_snappy_block_is_refused() {
    let zeros = vec![0u8; SNAPPY_BLOCK_MAX + 1];
    let raw = snap::raw::Encoder::new().compress_vec(&zeros).unwrap();
    let b = batch_around(2, 1, 0, &raw);
    assert!(matches!(scan_all(&b), Err(BatchError::Corrupt(m)) if m.contains("snappy block")));
}

#[test]
fn a_break_stops_the_scan() {
    let recs: Vec<Rec> = (0..10).map(|i| rec(i, Some(b"k"), 5)).collect();
    let b = batch_of(4, &recs);
    let h = parse_header(&b).unwrap();
    let mut seen = Vec::new();
    let n = scan_records(&b, &h, |r| {
        seen.push(r.offset_delta);
        if r.offset_delta == 3 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .unwrap();
    assert_eq!(n, 4);
    assert_eq!(seen, vec![0, 1, 2, 3]);
}

#[test]
fn a_negative_count_is_refused() {
    let mut b = batch_of(0, &[rec(0, None, 1)]);
    b[RECORDS_COUNT_OFFSET..RECORDS_COUNT_OFFSET + 4].copy_from_slice(&(-1i32).to_be_bytes());
    assert!(matches!(scan_all(&b), Err(BatchError::InvalidRecord(_))));
}

fn record_strategy() -> impl Strategy<Value = Rec> {
    let bytes = || prop::option::of(prop::collection::vec(any::<u8>(), 0..40));
    (
        any::<i64>(),
        bytes(),
        bytes(),
        prop::collection::vec((prop::collection::vec(any::<u8>(), 0..8), bytes()), 0..3),
    )
        .prop_map(|(ts, key, value, headers)| Rec {
            offset_delta: 0,
            timestamp_delta: ts,
            key,
            value,
            headers,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn written_records_scan_back(
        mut recs in prop::collection::vec(record_strategy(), 1..20),
        codec in 0..=4u8,
    ) {
        for (i, r) in recs.iter_mut().enumerate() {
            r.offset_delta = i as i32;
        }
        let b = batch_of(codec, &recs);
        let got = scan_all(&b).unwrap();
        let want: Vec<_> = recs.iter().map(expected).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn arbitrary_sections_never_panic(
        section in prop::collection::vec(any::<u8>(), 0..300),
        codec in 0..=4u8,
        count in -2i32..20,
    ) {
        let b = batch_around(codec, count, count.max(1) - 1, &section);
        let _ = scan_all(&b);
    }
}
