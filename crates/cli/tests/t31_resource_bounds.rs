//! Level 31: clients that try to exhaust a broker's memory or connections.
//!
//! Each test runs a hostile workload against a real server and checks the bound the broker
//! keeps (resident memory, connections per address, idle connections, response size) and that
//! a well-behaved client is still served.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{create_topic, fetch, produce, record_batch, CResult, Conn, Server};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;

const MIB: u64 = 1 << 20;

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// Fills partition 0 of `topic` with about `kib` KiB of incompressible records.
fn fill(server: &Server, topic: &str, kib: usize) {
    create_topic(server.socket_addr(), topic, 1).expect("create topic");
    let mut conn = Conn::connect(server.socket_addr()).unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut value = vec![0u8; 1024];
    for _ in 0..kib / 64 {
        let values: Vec<Vec<u8>> = (0..64)
            .map(|_| {
                for b in value.iter_mut() {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    *b = seed as u8;
                }
                value.clone()
            })
            .collect();
        let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        let (err, _) =
            produce(&mut conn, topic, 0, record_batch(&refs, Compression::None)).unwrap();
        assert_eq!(err, 0, "produce");
    }
}

/// A Fetch request (v12) for partition 0 of `topic`, listed `times` times, asking for as much
/// as the protocol allows and not waiting.
fn greedy_fetch(conn: &mut Conn, topic: &str, times: usize) -> Bytes {
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(i32::MAX)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(
                (0..times)
                    .map(|_| {
                        FetchPartition::default()
                            .with_partition(0)
                            .with_fetch_offset(0)
                            .with_partition_max_bytes(i32::MAX)
                    })
                    .collect(),
            )]);
    let (_, body) = conn.encode_request(ApiKey::Fetch, 12, &req).unwrap();
    let mut frame = Vec::with_capacity(body.len() + 4);
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    Bytes::from(frame)
}

/// A produce and a fetch on a fresh connection succeed within a few seconds.
fn served(server: &Server, topic: &str) -> CResult<()> {
    let mut conn = Conn::connect(server.socket_addr())?;
    let (err, base) = produce(
        &mut conn,
        topic,
        0,
        record_batch(&[b"still here"], Compression::None),
    )?;
    if err != 0 {
        return Err(format!("produce error {err}").into());
    }
    let got = fetch(&mut conn, topic, 0, base)?;
    if got.first().and_then(|r| r.value.as_deref()) != Some(&b"still here"[..]) {
        return Err("fetch did not return the record".into());
    }
    Ok(())
}

/// Four connections pipeline Fetch requests that list a ~900 KiB partition 200 times with
/// every limit at its maximum, and never read a response. The broker collapses the duplicates,
/// stops reading each connection once its responses fill its budget, keeps its memory within
/// 256 MiB of where it started, and serves another client throughout.
#[test]
fn silent_greedy_fetchers_do_not_exhaust_memory() {
    let mut server = Server::start();
    fill(&server, "big", 900);
    create_topic(server.socket_addr(), "health", 1).unwrap();
    served(&server, "health").expect("healthy before");
    std::thread::sleep(Duration::from_millis(500));
    let baseline = server.rss_bytes().expect("rss");
    let addr = server.socket_addr();
    let writers: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut conn = Conn::connect(addr).unwrap();
                conn.stream
                    .set_write_timeout(Some(Duration::from_secs(2)))
                    .unwrap();
                let frame = greedy_fetch(&mut conn, "big", 200);
                let mut sent = 0;
                for _ in 0..200 {
                    // Once the broker stops reading, the socket fills and writes time out.
                    if conn.stream.write_all(&frame).is_err() {
                        break;
                    }
                    sent += 1;
                }
                (conn, sent)
            })
        })
        .collect();
    let mut peak = baseline;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(6) {
        peak = peak.max(server.rss_bytes().unwrap_or(0));
        std::thread::sleep(Duration::from_millis(100));
    }
    served(&server, "health").expect("another client is served while the fetchers sit");
    let held: Vec<_> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    let growth = peak.saturating_sub(baseline);
    eprintln!(
        "baseline {} MiB, peak {} MiB, growth {} MiB, requests sent per connection {:?}",
        baseline / MIB,
        peak / MIB,
        growth / MIB,
        held.iter().map(|(_, n)| *n).collect::<Vec<_>>()
    );
    assert!(
        growth <= 256 * MIB,
        "resident memory grew by {} MiB (limit 256 MiB)",
        growth / MIB
    );
    drop(held);
    // Memory freed is given back: within 64 MiB of the baseline 10 s after the clients leave.
    let left = Instant::now();
    let mut after = u64::MAX;
    while left.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(250));
        after = server.rss_bytes().unwrap_or(u64::MAX);
        if after <= baseline + 64 * MIB {
            break;
        }
    }
    eprintln!(
        "{} MiB {} ms after the clients left",
        after / MIB,
        left.elapsed().as_millis()
    );
    assert!(
        after <= baseline + 64 * MIB,
        "resident memory {} MiB 10 s after the clients left (baseline {} MiB)",
        after / MIB,
        baseline / MIB
    );
    server.assert_alive("silent fetchers");
}

/// A zstd batch of a few kilobytes whose first record is 256 MiB of zeros, followed by a small
/// record with a later timestamp. Timestamps are `base` and `base + 1`.
fn zstd_bomb(base: i64) -> Vec<u8> {
    use runnel_protocol::batch::{compute_crc, CRC_OFFSET};
    fn varint(out: &mut Vec<u8>, v: i64) {
        let mut u = ((v << 1) ^ (v >> 63)) as u64;
        while u >= 0x80 {
            out.push((u as u8) | 0x80);
            u >>= 7;
        }
        out.push(u as u8);
    }
    let value_len: i64 = 256 << 20;
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 19).unwrap();
    // Record 0: key "k", 256 MiB of zeros, no headers.
    let mut head = vec![0u8];
    varint(&mut head, 0); // timestamp delta
    varint(&mut head, 0); // offset delta
    varint(&mut head, 1);
    head.push(b'k');
    varint(&mut head, value_len);
    let mut len = Vec::new();
    varint(&mut len, head.len() as i64 + value_len + 1);
    enc.write_all(&len).unwrap();
    enc.write_all(&head).unwrap();
    let zeros = vec![0u8; MIB as usize];
    for _ in 0..256 {
        enc.write_all(&zeros).unwrap();
    }
    enc.write_all(&[0]).unwrap();
    // Record 1: key "k", value "tail", one millisecond later.
    let mut body = vec![0u8];
    varint(&mut body, 1);
    varint(&mut body, 1);
    varint(&mut body, 1);
    body.push(b'k');
    varint(&mut body, 4);
    body.extend_from_slice(b"tail");
    varint(&mut body, 0);
    let mut len = Vec::new();
    varint(&mut len, body.len() as i64);
    enc.write_all(&len).unwrap();
    enc.write_all(&body).unwrap();
    let section = enc.finish().unwrap();
    let mut b = Vec::new();
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((49 + section.len()) as i32).to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    b.push(2);
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&4i16.to_be_bytes()); // zstd, CreateTime
    b.extend_from_slice(&1i32.to_be_bytes()); // last offset delta
    b.extend_from_slice(&base.to_be_bytes());
    b.extend_from_slice(&(base + 1).to_be_bytes());
    b.extend_from_slice(&(-1i64).to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&2i32.to_be_bytes());
    b.extend_from_slice(&section);
    let crc = compute_crc(&b);
    b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

/// ListOffsets by timestamp for partition 0 of `topic`: (error code, offset).
fn offset_for_time(conn: &mut Conn, topic: &str, ts: i64) -> CResult<(i16, i64)> {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::ListOffsetsRequest;
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(ts)])]);
    let resp = conn.request(7, &req)?;
    let p = &resp.topics[0].partitions[0];
    Ok((p.error_code, p.offset))
}

/// A ~10 KB produce request whose zstd batch holds a 256 MiB record: accepted on a plain and
/// on a compacted topic (the key check reads the records), then found by ListOffsets by
/// timestamp past the big record. The broker reads the records as a stream: its memory grows
/// by at most 64 MiB meanwhile, and another client is served.
#[test]
fn a_small_batch_that_decompresses_to_256_mib_costs_little_memory() {
    use kafka_protocol::messages::create_topics_request::{
        CreatableTopic, CreatableTopicConfig, CreateTopicsRequest,
    };
    let mut server = Server::start();
    create_topic(server.socket_addr(), "bomb", 1).unwrap();
    create_topic(server.socket_addr(), "health", 1).unwrap();
    let mut conn = Conn::connect(server.socket_addr()).unwrap();
    let req = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic_name("bomb-compact"))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(vec![CreatableTopicConfig::default()
                .with_name(StrBytes::from_static_str("cleanup.policy"))
                .with_value(Some(StrBytes::from_static_str("compact")))])])
        .with_timeout_ms(30_000);
    let resp = conn.request(7, &req).unwrap();
    assert_eq!(resp.topics[0].error_code, 0, "{:?}", resp.topics[0]);
    served(&server, "health").expect("healthy before");
    let base = 1_700_000_000_000i64;
    let bomb = Bytes::from(zstd_bomb(base));
    eprintln!("request batch: {} bytes", bomb.len());
    assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
    std::thread::sleep(Duration::from_millis(500));
    let baseline = server.rss_bytes().expect("rss");
    let pid_rss = {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let path = format!("/proc/{}/status", server.pid().expect("running"));
        let sampler = std::thread::spawn(move || {
            let mut peak = 0u64;
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(kb) = std::fs::read_to_string(&path).ok().and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("VmRSS:"))
                        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                }) {
                    peak = peak.max(kb * 1024);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        });
        for topic in ["bomb", "bomb-compact"] {
            let (err, base_offset) = produce(&mut conn, topic, 0, bomb.clone()).unwrap();
            assert_eq!((err, base_offset), (0, 0), "produce to {topic}");
            let found = offset_for_time(&mut conn, topic, base + 1).unwrap();
            assert_eq!(found, (0, 1), "ListOffsets by timestamp on {topic}");
        }
        served(&server, "health").expect("another client is served");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        sampler.join().unwrap()
    };
    let growth = pid_rss.saturating_sub(baseline);
    eprintln!(
        "baseline {} MiB, peak {} MiB, growth {} MiB",
        baseline / MIB,
        pid_rss / MIB,
        growth / MIB
    );
    assert!(
        growth <= 64 * MIB,
        "resident memory grew by {} MiB (limit 64 MiB)",
        growth / MIB
    );
    server.assert_alive("decompression bomb");
}

/// Segments below 1 MiB (Kafka 4's minimum) would multiply files and file descriptors: a topic
/// asking for them is refused with INVALID_CONFIG, at creation and when altered.
#[test]
fn segment_sizes_below_a_mebibyte_are_refused() {
    use kafka_protocol::messages::create_topics_request::{
        CreatableTopic, CreatableTopicConfig, CreateTopicsRequest,
    };
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig, IncrementalAlterConfigsRequest,
    };
    const INVALID_CONFIG: i16 = 40;
    let mut server = Server::start();
    let mut conn = Conn::connect(server.socket_addr()).unwrap();
    let create = |name: &str, key: &str, value: &str| {
        CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic_name(name))
                .with_num_partitions(1)
                .with_replication_factor(1)
                .with_configs(vec![CreatableTopicConfig::default()
                    .with_name(StrBytes::from_string(key.into()))
                    .with_value(Some(StrBytes::from_string(value.into())))])])
            .with_timeout_ms(30_000)
    };
    let resp = conn
        .request(7, &create("tiny", "segment.bytes", "1048575"))
        .unwrap();
    let t = &resp.topics[0];
    assert_eq!(t.error_code, INVALID_CONFIG, "{t:?}");
    assert!(
        t.error_message
            .as_deref()
            .is_some_and(|m| m.contains("1048576")),
        "{t:?}"
    );
    let resp = conn
        .request(7, &create("mib", "segment.bytes", "1048576"))
        .unwrap();
    assert_eq!(resp.topics[0].error_code, 0, "{:?}", resp.topics[0]);
    let alter = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("mib"))
            .with_configs(vec![AlterableConfig::default()
                .with_name(StrBytes::from_static_str("segment.bytes"))
                .with_config_operation(0)
                .with_value(Some(StrBytes::from_static_str("4096")))]),
    ]);
    let resp = conn.request(1, &alter).unwrap();
    assert_eq!(
        resp.responses[0].error_code, INVALID_CONFIG,
        "{:?}",
        resp.responses[0]
    );
    // Kafka's internal test config still allows tiny segments where a test asks for them.
    let resp = conn
        .request(
            7,
            &create("tiny-internal", "internal.segment.bytes", "1024"),
        )
        .unwrap();
    assert_eq!(resp.topics[0].error_code, 0, "{:?}", resp.topics[0]);
    server.assert_alive("segment sizes");
}

/// fetch.max.bytes caps a response whatever the request asks for (at least one batch).
#[test]
fn fetch_max_bytes_caps_a_response() {
    let server = Server::start_with(&["fetch.max.bytes=200000"]);
    fill(&server, "capped", 640);
    let mut conn = Conn::connect(server.socket_addr()).unwrap();
    let frame = greedy_fetch(&mut conn, "capped", 3);
    conn.write_raw(&frame).unwrap();
    let resp = conn.read_frame().unwrap().expect("a response");
    assert!(
        resp.len() < 200_000 + 70_000,
        "response of {} bytes with fetch.max.bytes=200000 (batches are ~66 KB)",
        resp.len()
    );
    // The partition listed three times is answered once.
    let resp = {
        use kafka_protocol::messages::{FetchResponse, ResponseHeader};
        use kafka_protocol::protocol::Decodable;
        let mut b = resp;
        ResponseHeader::decode(&mut b, ApiKey::Fetch.response_header_version(12)).unwrap();
        FetchResponse::decode(&mut b, 12).unwrap()
    };
    assert_eq!(resp.responses.len(), 1);
    assert_eq!(
        resp.responses[0].partitions.len(),
        1,
        "duplicates answered once"
    );
    let records = resp.responses[0].partitions[0].records.as_ref().unwrap();
    assert!(
        records.len() > 60_000,
        "at least one batch: {}",
        records.len()
    );
}

/// max.connections.per.ip: the connection above the limit is closed at once; one closing makes
/// room for another.
#[test]
fn connections_per_address_are_capped() {
    let server = Server::start_with(&["max.connections.per.ip=4"]);
    let mut open: Vec<Conn> = (0..4)
        .map(|_| {
            let mut c = Conn::connect(server.socket_addr()).unwrap();
            c.api_versions(0).expect("within the limit");
            c
        })
        .collect();
    let mut extra = Conn::connect(server.socket_addr()).unwrap();
    extra
        .expect_closed()
        .expect("the fifth connection is closed");
    drop(open.pop());
    std::thread::sleep(Duration::from_millis(200));
    let mut again = Conn::connect(server.socket_addr()).unwrap();
    again.api_versions(0).expect("room after one closed");
    assert!(
        server.stderr().contains("max.connections.per.ip"),
        "the refusal is logged"
    );
}

/// connections.max.idle.ms: a silent connection and one stuck in a half-sent frame are closed;
/// one that keeps sending requests stays open.
#[test]
fn idle_connections_are_closed() {
    let server = Server::start_with(&["connections.max.idle.ms=1000"]);
    let mut silent = Conn::connect(server.socket_addr()).unwrap();
    let mut half = Conn::connect(server.socket_addr()).unwrap();
    half.write_raw(&[0, 0, 1, 0, 0, 18, 0]).unwrap();
    let mut busy = Conn::connect(server.socket_addr()).unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(3500) {
        busy.api_versions(0).expect("a busy connection stays open");
        std::thread::sleep(Duration::from_millis(300));
    }
    silent
        .expect_closed()
        .expect("the silent connection is closed");
    half.expect_closed()
        .expect("the half-sent frame's connection is closed");
}
