//! Level 73: log compaction end to end, with the `rdkafka` crate against `runnel
//! server`.
//!
//! A topic with `cleanup.policy=compact`, tiny segments that roll by size and by age, a dirty
//! ratio of 0.01 and a short `delete.retention.ms`; the server's cleaner backs off 200 ms.
//! Many updates to a few keys, then tombstones for two keys, then more updates. Every read
//! from the beginning must return records exactly as they were produced at their original
//! offsets (strictly increasing); once the cleaner has run over the whole log (the last
//! segment rolls by age) and the tombstones are older than `delete.retention.ms`, the log
//! holds exactly the latest value of each live key and nothing of the deleted ones, and it is
//! smaller on disk than the batch headers of what was produced. A keyless record is refused
//! with INVALID_RECORD.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use common::Server;
use futures::executor::block_on;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(30);
const TOPIC: &str = "compacted";
const LIVE: [&str; 3] = ["k0", "k1", "k2"];
const DELETED: [&str; 2] = ["k3", "k4"];

/// (key, value) of a record; `None` value = tombstone.
type Rec = (String, Option<String>);

/// Everything readable from the beginning: (offset, key, value), via a fresh consumer.
fn consume_all(server: &Server) -> Vec<(i64, String, Option<String>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", server.addr())
        .set("group.id", "t73-verify")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(500)) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(_))) => return out,
            Some(Err(e)) => panic!("consume error: {e}"),
            Some(Ok(m)) => out.push((
                m.offset(),
                String::from_utf8(m.key().expect("a key").to_vec()).unwrap(),
                m.payload().map(|v| String::from_utf8(v.to_vec()).unwrap()),
            )),
        }
    }
    panic!(
        "no end of partition within {TIMEOUT:?}; read {} records",
        out.len()
    );
}

/// Bytes of the partition's `.log` files.
fn log_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn compacted_topic_keeps_the_latest_value_per_key() {
    let server = Server::start_with(&[
        "log.cleaner.backoff.ms=200",
        "log.flush.scheduler.interval.ms=200",
    ]);
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", server.addr())
        .create()
        .expect("admin client");
    let topic = NewTopic::new(TOPIC, 1, TopicReplication::Fixed(1))
        .set("cleanup.policy", "compact")
        .set("internal.segment.bytes", "1024")
        .set("segment.ms", "1500")
        .set("min.cleanable.dirty.ratio", "0.01")
        .set("delete.retention.ms", "3000");
    for r in block_on(admin.create_topics(
        &[topic],
        &AdminOptions::new().operation_timeout(Some(TIMEOUT)),
    ))
    .expect("create_topics")
    {
        r.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
    }

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", server.addr())
        .set("linger.ms", "0")
        .set("message.timeout.ms", "30000")
        .create()
        .unwrap();
    // One record per request (each send waits for its ack), so each is its own batch.
    let send = |key: Option<&str>, value: Option<&str>| {
        let mut r: FutureRecord<'_, str, str> = FutureRecord::to(TOPIC).partition(0);
        if let Some(k) = key {
            r = r.key(k);
        }
        if let Some(v) = value {
            r = r.payload(v);
        }
        // Only the error matters, not the message handed back with it.
        block_on(producer.send(r, TIMEOUT)).map_err(|(e, _)| e)
    };
    let mut produced: BTreeMap<i64, Rec> = BTreeMap::new();
    let mut put = |key: &str, value: Option<String>| {
        let d = send(Some(key), value.as_deref()).unwrap_or_else(|e| panic!("send {key}: {e}"));
        assert!(produced
            .insert(d.offset, (key.to_string(), value))
            .is_none());
    };
    for i in 0..60 {
        for k in LIVE.iter().chain(DELETED.iter()) {
            put(k, Some(format!("{k}-v{i}")));
        }
    }
    for k in DELETED {
        put(k, None);
    }
    for i in 60..100 {
        for k in LIVE {
            put(k, Some(format!("{k}-v{i}")));
        }
    }
    let total = produced.len();
    assert_eq!(total, 60 * 5 + 2 + 40 * 3);

    // Compacted topics refuse records without a key.
    match send(None, Some("no key")) {
        Err(KafkaError::MessageProduction(RDKafkaErrorCode::InvalidRecord)) => {}
        other => panic!("a keyless record must be refused with INVALID_RECORD: {other:?}"),
    }

    let latest: HashMap<&str, (i64, Option<String>)> = produced
        .iter()
        .map(|(o, (k, v))| (k.as_str(), (*o, v.clone())))
        .collect();
    let expected: Vec<(i64, String, Option<String>)> = {
        let mut v: Vec<_> = LIVE
            .iter()
            .map(|k| (latest[k].0, k.to_string(), latest[k].1.clone()))
            .collect();
        v.sort();
        v
    };

    let part_dir = server.data_dir().join(format!("{TOPIC}-0"));
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut reads = 0;
    loop {
        let got = consume_all(&server);
        reads += 1;
        // Always: original offsets, strictly increasing, each record as it was produced, and
        // the last record of every key is there (compaction never loses the latest value).
        for w in got.windows(2) {
            assert!(w[0].0 < w[1].0, "offsets not increasing: {:?}", &w);
        }
        for (o, k, v) in &got {
            let p = produced
                .get(o)
                .unwrap_or_else(|| panic!("record at offset {o} was never produced"));
            assert_eq!((&p.0, &p.1), (k, v), "record at offset {o}");
        }
        for k in LIVE {
            assert!(
                got.iter().any(|r| r.0 == latest[k].0),
                "latest value of {k} (offset {}) missing",
                latest[k].0
            );
        }
        if got == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after {reads} reads the log still holds {} records (expected {}): {:?}\n{}",
            got.len(),
            expected.len(),
            got.iter().take(20).collect::<Vec<_>>(),
            server.stderr_tail()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        server.stderr().contains("log cleaned"),
        "the cleaner logs its runs:\n{}",
        server.stderr_tail()
    );
    // The log shrank: less than the 61-byte headers of the batches produced.
    let size = log_bytes(&part_dir);
    assert!(size > 0);
    assert!(
        size < 61 * total as u64,
        "compacted log is {size} bytes for {total} one-record batches"
    );
    println!(
        "t73: {total} records compacted to {} ({size} bytes on disk) after {reads} reads",
        expected.len()
    );
}
