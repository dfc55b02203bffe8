//! Level 32: client quotas (KIP-13, KIP-55, KIP-599), set with `runnel configs` and enforced by
//! a real server: a producer over its byte rate converges to it while another client is not
//! slowed, a consumer over its byte rate gets throttled fetches, and partition mutations beyond
//! `controller_mutation_rate` are refused with THROTTLING_QUOTA_EXCEEDED.
//!
//! The servers run with short quota windows: two one-second samples for byte rates
//! (`quota.window.num=2`), whose measured rate settles within a few seconds (over a window of
//! several samples, the rate seen over ten seconds swings with the phase at which whole samples
//! expire, although it converges over longer runs), and three for the mutation quota
//! (`controller.quota.window.num=3`, a burst of three partitions).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{
    create_topic, negotiate, noise, produce_request, record_batch, run_with_timeout, Conn, Server,
};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreateTopicsRequest};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, TopicName};
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::records::Compression;

const THROTTLING_QUOTA_EXCEEDED: i16 = 89;

fn runnel(args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runnel"));
    cmd.args(args);
    run_with_timeout(&mut cmd, Duration::from_secs(60))
}

fn configs(server: &Server, args: &[&str]) -> String {
    let addr = server.addr();
    let mut all = vec!["configs", "--bootstrap-server", addr.as_str()];
    all.extend_from_slice(args);
    let (ok, out) = runnel(&all);
    assert!(ok, "runnel {all:?} failed:\n{out}");
    out
}

/// Sets one quota of one client id with `runnel configs`.
fn set_client_quota(server: &Server, client: &str, key: &str, value: u64) {
    let add = format!("{key}={value}");
    let out = configs(
        server,
        &[
            "--entity-type",
            "clients",
            "--entity-name",
            client,
            "--alter",
            "--add-config",
            &add,
        ],
    );
    assert!(out.contains("Completed updating config"), "{out}");
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// What one client saw: bytes answered after `from`, over the time from `from` to the end,
/// and the largest throttle time it was told.
struct Observed {
    rate: f64,
    max_throttle_ms: i32,
    requests: usize,
}

/// Produces 32 KiB batches as client `client_id` for `run`, as fast as the broker answers, and
/// measures the rate of acknowledged request bytes from `from` on.
fn produce_as(
    addr: std::net::SocketAddr,
    client_id: &str,
    topic: &str,
    run: Duration,
    from: Duration,
) -> Observed {
    let mut conn = Conn::connect(addr).unwrap();
    conn.client_id = client_id.to_string();
    let v = negotiate(&mut conn, ApiKey::Produce).unwrap().min(12);
    let value = noise(32 * 1024, 0x1234_5678 ^ client_id.len() as u64);
    let batch: Bytes = record_batch(&[&value], Compression::None);
    let req = produce_request(topic, 0, batch);
    let started = Instant::now();
    let (mut bytes, mut max_throttle_ms, mut requests) = (0usize, 0i32, 0usize);
    while started.elapsed() < run {
        let (_, frame) = conn.encode_request(ApiKey::Produce, v, &req).unwrap();
        let size = frame.len();
        let resp = conn.request(v, &req).unwrap();
        let p = &resp.responses[0].partition_responses[0];
        assert_eq!(p.error_code, 0, "produce as {client_id}");
        max_throttle_ms = max_throttle_ms.max(resp.throttle_time_ms);
        requests += 1;
        if started.elapsed() >= from {
            bytes += size;
        }
    }
    let span = started.elapsed().saturating_sub(from).as_secs_f64();
    Observed {
        rate: bytes as f64 / span,
        max_throttle_ms,
        requests,
    }
}

#[test]
fn a_producer_over_its_quota_converges_to_it_and_another_is_unaffected() {
    let server = Server::start_with(&["quota.window.num=2"]);
    create_topic(server.socket_addr(), "quota-produce", 1).unwrap();
    let quota = 256 * 1024;
    set_client_quota(&server, "slow", "producer_byte_rate", quota);
    let out = configs(&server, &["--entity-type", "clients", "--describe"]);
    assert!(
        out.contains(&format!(
            "Quota configs for client-id 'slow' are producer_byte_rate={quota}.0"
        )),
        "{out}"
    );

    let addr = server.socket_addr();
    let (run, from) = (Duration::from_secs(14), Duration::from_secs(4));
    let slow = std::thread::spawn(move || produce_as(addr, "slow", "quota-produce", run, from));
    let fast = std::thread::spawn(move || produce_as(addr, "fast", "quota-produce", run, from));
    let (slow, fast) = (slow.join().unwrap(), fast.join().unwrap());
    eprintln!(
        "slow: {:.0} B/s over {} requests (quota {quota}), max throttle {} ms; fast: {:.0} B/s, max throttle {} ms",
        slow.rate, slow.requests, slow.max_throttle_ms, fast.rate, fast.max_throttle_ms
    );
    let error = (slow.rate - quota as f64).abs() / quota as f64;
    assert!(
        error < 0.10,
        "slow client at {:.0} B/s, quota {quota}",
        slow.rate
    );
    assert!(
        slow.max_throttle_ms > 0,
        "the slow client was never told to wait"
    );
    assert_eq!(
        fast.max_throttle_ms, 0,
        "the client without a quota was throttled"
    );
    assert!(
        fast.rate > 4.0 * quota as f64,
        "the client without a quota ran at only {:.0} B/s",
        fast.rate
    );

    // Removing the quota lifts it.
    let out = configs(
        &server,
        &[
            "--entity-type",
            "clients",
            "--entity-name",
            "slow",
            "--alter",
            "--delete-config",
            "producer_byte_rate",
        ],
    );
    assert!(out.contains("Completed updating config"), "{out}");
    let out = configs(&server, &["--entity-type", "clients", "--describe"]);
    assert!(!out.contains("'slow'"), "{out}");
}

#[test]
fn a_consumer_over_its_quota_gets_throttled_fetches() {
    let server = Server::start_with(&["quota.window.num=2"]);
    let addr = server.socket_addr();
    create_topic(addr, "quota-fetch", 1).unwrap();
    // About 6 MiB to read.
    let mut conn = Conn::connect(addr).unwrap();
    let value = noise(64 * 1024, 7);
    for _ in 0..96 {
        let req = produce_request("quota-fetch", 0, record_batch(&[&value], Compression::None));
        let v = negotiate(&mut conn, ApiKey::Produce).unwrap().min(12);
        let resp = conn.request(v, &req).unwrap();
        assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
    }
    let quota = 512 * 1024;
    set_client_quota(&server, "reader", "consumer_byte_rate", quota);
    let mut reader = Conn::connect(addr).unwrap();
    reader.client_id = "reader".into();
    let v = negotiate(&mut reader, ApiKey::Fetch).unwrap().min(12);
    let (mut offset, mut bytes, mut throttled) = (0i64, 0usize, 0usize);
    let started = Instant::now();
    let run = Duration::from_secs(8);
    while started.elapsed() < run {
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(100)
            .with_min_bytes(1)
            .with_max_bytes(4 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic_name("quota-fetch"))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(4 << 20)])]);
        let resp = reader.request(v, &req).unwrap();
        assert_eq!(resp.error_code, 0);
        if resp.throttle_time_ms > 0 {
            throttled += 1;
        }
        let Some(p) = resp.responses.first().and_then(|t| t.partitions.first()) else {
            // A throttled fetch is answered empty.
            continue;
        };
        assert_eq!(p.error_code, 0);
        let Some(mut records) = p.records.clone() else {
            continue;
        };
        bytes += records.len();
        while !records.is_empty() {
            let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut records).unwrap();
            if let Some(last) = set.records.last() {
                offset = last.offset + 1;
            }
        }
        if offset >= 96 {
            break;
        }
    }
    let rate = bytes as f64 / started.elapsed().as_secs_f64();
    eprintln!("reader: {bytes} bytes at {rate:.0} B/s (quota {quota}), {throttled} throttled responses, offset {offset}");
    assert!(throttled > 0, "the reader was never throttled");
    // The burst allowance is one second of quota plus one response, so over eight seconds
    // the reader gets close to its quota: neither much more nor, for all the empty throttled
    // responses, much less.
    assert!(
        rate < quota as f64 * 1.3 && rate > quota as f64 * 0.7,
        "read {bytes} bytes at {rate:.0} B/s with a quota of {quota} B/s"
    );
    assert!(offset < 96, "the reader read everything despite its quota");
}

#[test]
fn partition_mutations_beyond_the_quota_are_refused() {
    let server = Server::start_with(&["controller.quota.window.num=3"]);
    let out = configs(
        &server,
        &[
            "--user-defaults",
            "--alter",
            "--add-config",
            "controller_mutation_rate=1",
        ],
    );
    assert!(out.contains("Completed updating config"), "{out}");
    let out = configs(&server, &["--entity-type", "users", "--describe"]);
    assert!(
        out.contains(
            "Quota configs for the default user-principal are controller_mutation_rate=1.0"
        ),
        "{out}"
    );
    // Bad input is refused with a clear message and a non-zero exit.
    let addr = server.addr();
    for bad in [
        "producer_byte_rate=0",
        "producer_byte_rate=1.5",
        "segment.bytes=5",
    ] {
        let (ok, out) = runnel(&[
            "configs",
            "--bootstrap-server",
            &addr,
            "--entity-type",
            "clients",
            "--entity-name",
            "x",
            "--alter",
            "--add-config",
            bad,
        ]);
        assert!(!ok, "{bad} was accepted:\n{out}");
        assert!(out.contains("AlterClientQuotas"), "{bad}: {out}");
    }

    // With three one-second samples at one partition a second, three partitions may go at
    // once; the fourth topic takes the balance below zero and the rest are refused.
    let mut conn = Conn::connect(server.socket_addr()).unwrap();
    let v = negotiate(&mut conn, ApiKey::CreateTopics).unwrap();
    assert!(v >= 6, "CreateTopics v{v}");
    let req = CreateTopicsRequest::default()
        .with_topics(
            (0..8)
                .map(|i| {
                    CreatableTopic::default()
                        .with_name(topic_name(&format!("mutation-{i}")))
                        .with_num_partitions(1)
                        .with_replication_factor(1)
                })
                .collect(),
        )
        .with_timeout_ms(30_000);
    let resp = conn.request(v, &req).unwrap();
    let codes: Vec<i16> = resp.topics.iter().map(|t| t.error_code).collect();
    assert_eq!(
        codes,
        [0, 0, 0, 0, 89, 89, 89, 89],
        "{:?}",
        resp.topics
            .iter()
            .map(|t| (t.name.0.to_string(), t.error_code, t.error_message.clone()))
            .collect::<Vec<_>>()
    );
    assert!(
        resp.throttle_time_ms > 0,
        "no throttle time with refused topics"
    );
    assert_eq!(
        codes
            .iter()
            .filter(|c| **c == THROTTLING_QUOTA_EXCEEDED)
            .count(),
        4
    );
}

/// A client over its mutation quota that pipelines CreateTopics at a version without strict
/// refusal (v5) is served one request at a time, each after the previous one's throttle, as
/// Kafka reads one request of a connection at a time: the requests it pipelined behind the
/// first throttled one are not all admitted at once.
#[test]
fn pipelined_mutations_beyond_the_quota_wait_for_their_throttle() {
    let server = Server::start_with(&["controller.quota.window.num=3"]);
    set_client_quota(&server, "flood", "controller_mutation_rate", 1);
    let mut conn = Conn::connect(server.socket_addr()).unwrap();
    conn.client_id = "flood".into();
    let version = 5;
    let n = 8;
    let mut correlations = Vec::new();
    for i in 0..n {
        let req = CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic_name(&format!("pipelined-{i}")))
                .with_num_partitions(1)
                .with_replication_factor(1)])
            .with_timeout_ms(30_000);
        let (c, buf) = conn
            .encode_request(ApiKey::CreateTopics, version, &req)
            .unwrap();
        conn.write_frame(&buf).unwrap();
        correlations.push(c);
    }
    let started = Instant::now();
    let mut throttled = 0;
    for c in correlations {
        let mut frame = conn.read_frame().unwrap().expect("a response");
        let header = kafka_protocol::messages::ResponseHeader::decode(
            &mut frame,
            ApiKey::CreateTopics.response_header_version(version),
        )
        .unwrap();
        assert_eq!(header.correlation_id, c);
        let resp =
            kafka_protocol::messages::CreateTopicsResponse::decode(&mut frame, version).unwrap();
        // Below the strict versions a request over the quota is carried out and throttled.
        assert_eq!(resp.topics[0].error_code, 0, "{:?}", resp.topics[0]);
        if resp.throttle_time_ms > 0 {
            throttled += 1;
        }
    }
    let elapsed = started.elapsed();
    assert!(throttled >= n - 3, "{throttled} throttled responses");
    // Three partitions of burst, then one a second: the last response comes after at least
    // three seconds of throttles (read all at once, they would come back at once).
    assert!(
        elapsed >= Duration::from_secs(3),
        "{n} pipelined CreateTopics answered in {elapsed:?}"
    );
    println!("{n} pipelined CreateTopics over a 1/s mutation quota answered in {elapsed:?}");
}

/// librdkafka (through the `rdkafka` crate) produces as a client with a byte-rate quota: it is
/// held to its quota, and it takes the throttling without errors.
#[test]
fn librdkafka_is_held_to_its_producer_quota() {
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let server = Server::start_with(&["quota.window.num=2"]);
    create_topic(server.socket_addr(), "quota-rdkafka", 1).unwrap();
    let quota = 256 * 1024;
    set_client_quota(&server, "rdkafka-slow", "producer_byte_rate", quota);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", server.addr())
        .set("client.id", "rdkafka-slow")
        .set("linger.ms", "0")
        .set("message.timeout.ms", "30000")
        .create()
        .unwrap();
    let value = noise(32 * 1024, 99);
    let (run, from) = (Duration::from_secs(12), Duration::from_secs(4));
    let started = Instant::now();
    let mut bytes = 0usize;
    while started.elapsed() < run {
        let record: FutureRecord<'_, (), [u8]> =
            FutureRecord::to("quota-rdkafka").payload(&value[..]);
        futures::executor::block_on(producer.send(record, Duration::from_secs(30)))
            .unwrap_or_else(|(e, _)| panic!("delivery failed: {e}"));
        if started.elapsed() >= from {
            bytes += value.len();
        }
    }
    let rate = bytes as f64 / started.elapsed().saturating_sub(from).as_secs_f64();
    eprintln!("librdkafka: {rate:.0} B/s of values (quota {quota} B/s of requests)");
    let error = (rate - quota as f64).abs() / quota as f64;
    assert!(
        error < 0.10,
        "librdkafka produced at {rate:.0} B/s, quota {quota}"
    );
}
