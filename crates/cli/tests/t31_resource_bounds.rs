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
