//! Level 40: the `rdkafka` crate (librdkafka 2.12, built from source) against `runnel server`.
//!
//! - Metadata sanity: the one broker is advertised at the --listen address with node id 1, and a
//!   topic created with rdkafka's AdminClient has the requested partitions, each led by node 1.
//!   librdkafka negotiates every request version from ApiVersions, so this also checks the
//!   advertised versions are ones it can use.
//! - Round trip per codec (none, gzip, snappy, lz4, zstd): keyed records with headers (including
//!   a null-valued header and a null value), delivery reports give (partition, offset); reading
//!   from the beginning returns each record at its acknowledged position with equal key, value,
//!   headers and CreateTime timestamp, per-partition offsets increasing.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::Server;
use futures::executor::block_on;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, Timestamp, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(30);

fn create_topic(server: &Server, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", server.addr())
        .create()
        .expect("admin client");
    let results = block_on(admin.create_topics(
        &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
        &AdminOptions::new().operation_timeout(Some(TIMEOUT)),
    ))
    .expect("create_topics");
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
    }
}

#[test]
fn metadata_sanity() {
    let server = Server::start();
    create_topic(&server, "meta", 4);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", server.addr())
        .create()
        .unwrap();
    let md = consumer
        .fetch_metadata(Some("meta"), TIMEOUT)
        .expect("metadata");
    let brokers = md.brokers();
    assert_eq!(brokers.len(), 1, "brokers: {brokers:?}");
    assert_eq!(brokers[0].id(), 1);
    assert_eq!(brokers[0].host(), "127.0.0.1");
    assert_eq!(brokers[0].port() as u16, server.port());
    let topic = &md.topics()[0];
    assert_eq!(topic.name(), "meta");
    assert!(topic.error().is_none(), "topic error {:?}", topic.error());
    assert_eq!(topic.partitions().len(), 4);
    let mut ids: Vec<i32> = topic.partitions().iter().map(|p| p.id()).collect();
    ids.sort();
    assert_eq!(ids, vec![0, 1, 2, 3]);
    for p in topic.partitions() {
        assert_eq!(p.leader(), 1, "partition {} leader", p.id());
        assert!(
            p.error().is_none(),
            "partition {} error {:?}",
            p.id(),
            p.error()
        );
    }
    // A topic that does not exist (auto-create off) is reported as such, not invented.
    let server = Server::start_with(&["auto.create.topics.enable=false"]);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", server.addr())
        .set("allow.auto.create.topics", "true")
        .create()
        .unwrap();
    let md = consumer
        .fetch_metadata(Some("missing"), TIMEOUT)
        .expect("metadata");
    let t = md.topics().iter().find(|t| t.name() == "missing");
    assert!(
        t.is_none_or(|t| t.error().is_some() && t.partitions().is_empty()),
        "a missing topic looks like it exists: {:?}",
        t.map(|t| (t.error(), t.partitions().len()))
    );
}

struct Sent {
    key: String,
    value: Option<String>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    ts: i64,
}

#[test]
fn round_trip_every_codec() {
    let server = Server::start();
    let topic = "rdkafka-codecs";
    create_topic(&server, topic, 3);
    let codecs = ["none", "gzip", "snappy", "lz4", "zstd"];
    let mut sent: HashMap<(i32, i64), Sent> = HashMap::new();
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    for codec in codecs {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", server.addr())
            .set("compression.codec", codec)
            .set("enable.idempotence", "true")
            .set("linger.ms", "20")
            .set("message.timeout.ms", "30000")
            .create()
            .unwrap();
        let mut pending = Vec::new();
        for i in 0..40 {
            let key = format!("key-{}", i % 7);
            // Every 10th record has a null value (a tombstone), which must stay null.
            let value = (i % 10 != 9).then(|| format!("{codec}-{i}-{}", "x".repeat(i * 13)));
            let headers = vec![
                ("codec".to_string(), Some(codec.as_bytes().to_vec())),
                ("i".to_string(), Some(i.to_string().into_bytes())),
                ("null".to_string(), None),
            ];
            let mut h = OwnedHeaders::new();
            for (k, v) in &headers {
                h = h.insert(Header {
                    key: k.as_str(),
                    value: v.as_ref(),
                });
            }
            let ts = now_ms();
            let mut rec = FutureRecord::to(topic).key(&key).headers(h).timestamp(ts);
            if let Some(v) = &value {
                rec = rec.payload(v);
            }
            let fut = producer
                .send_result(rec)
                .unwrap_or_else(|(e, _)| panic!("enqueue: {e}"));
            pending.push((
                fut,
                Sent {
                    key,
                    value,
                    headers,
                    ts,
                },
            ));
        }
        producer.flush(TIMEOUT).expect("flush");
        for (fut, s) in pending {
            let delivery = block_on(fut).expect("delivery future cancelled");
            let d = delivery.unwrap_or_else(|(e, _)| panic!("{codec}: delivery failed: {e}"));
            let pos = (d.partition, d.offset);
            assert!(
                sent.insert(pos, s).is_none(),
                "{codec}: two acks at {pos:?}"
            );
        }
        println!("rdkafka codec={codec}: 40 records acknowledged");
    }

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", server.addr())
        .set("group.id", "rdkafka-verify")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut last: HashMap<i32, i64> = HashMap::new();
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen < sent.len() && Instant::now() < deadline {
        let Some(msg) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let msg = msg.expect("consume error");
        let pos = (msg.partition(), msg.offset());
        if let Some(prev) = last.insert(pos.0, pos.1) {
            assert!(
                pos.1 > prev,
                "partition {}: offset {} after {prev}",
                pos.0,
                pos.1
            );
        }
        let s = sent
            .get(&pos)
            .unwrap_or_else(|| panic!("unexpected record at {pos:?}"));
        assert_eq!(msg.key(), Some(s.key.as_bytes()), "key at {pos:?}");
        assert_eq!(
            msg.payload(),
            s.value.as_deref().map(str::as_bytes),
            "value at {pos:?}"
        );
        let got: Vec<(String, Option<Vec<u8>>)> = msg
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(got, s.headers, "headers at {pos:?}");
        assert_eq!(
            msg.timestamp(),
            Timestamp::CreateTime(s.ts),
            "timestamp at {pos:?}"
        );
        seen += 1;
    }
    assert_eq!(seen, sent.len(), "read {seen} of {} records", sent.len());
    // Nothing beyond the acknowledged records.
    if let Some(Ok(extra)) = consumer.poll(Duration::from_millis(500)) {
        panic!(
            "unexpected extra record at {}@{}",
            extra.partition(),
            extra.offset()
        );
    }
}
