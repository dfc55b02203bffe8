//! Level 20: SIGKILL in the middle of an acks=all produce stream.
//!
//! An idempotent rdkafka producer (acks=all) sends a stream of unique values to a 2-partition
//! topic; once some are acknowledged the server is SIGKILLed and restarted on the same port and
//! data directory while the producer keeps going (librdkafka retries what was in flight). Then:
//! - every acknowledged record is readable at exactly its acknowledged partition and offset
//!   (an ack with acks=all is a durability promise),
//! - no value is stored twice (idempotence survives the restart) and per-partition offsets are
//!   increasing with no value appearing at two offsets,
//! - records produced by a fresh producer after everything get offsets after all earlier ones.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{create_topic, Server};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

const TOPIC: &str = "crash";
const PARTITIONS: i32 = 2;
/// The server is killed once this many records are acknowledged...
const KILL_AFTER_ACKS: usize = 1500;
/// ...and the stream goes on until this many more were sent after the restart.
const SEND_AFTER_RESTART: usize = 1500;
/// Hard cap on the stream's length.
const MAX_RECORDS: usize = 100_000;

#[derive(Default)]
struct Acks {
    ok: Mutex<HashMap<usize, (i32, i64)>>,
    failed: Mutex<Vec<(usize, String)>>,
    count: AtomicUsize,
}

struct Ctx(Arc<Acks>);

impl ClientContext for Ctx {}

impl ProducerContext for Ctx {
    type DeliveryOpaque = Box<usize>;
    fn delivery(&self, result: &DeliveryResult<'_>, i: Box<usize>) {
        match result {
            Ok(m) => {
                self.0
                    .ok
                    .lock()
                    .unwrap()
                    .insert(*i, (m.partition(), m.offset()));
                self.0.count.fetch_add(1, Ordering::SeqCst);
            }
            Err((e, _)) => self.0.failed.lock().unwrap().push((*i, e.to_string())),
        }
    }
}

fn value(i: usize) -> String {
    format!("crash-value-{i:06}")
}

#[test]
fn sigkill_mid_stream_keeps_acknowledged_records() {
    let mut server = Server::start();
    create_topic(server.socket_addr(), TOPIC, PARTITIONS).expect("create topic");
    let acks = Arc::new(Acks::default());
    let producer: ThreadedProducer<Ctx> = ClientConfig::new()
        .set("bootstrap.servers", server.addr())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .set("retry.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "500")
        .create_with_context(Ctx(acks.clone()))
        .expect("producer");

    let acks_w = acks.clone();
    let restarted = Arc::new(AtomicBool::new(false));
    let restarted_w = restarted.clone();
    let killer = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        while acks_w.count.load(Ordering::SeqCst) < KILL_AFTER_ACKS {
            assert!(
                Instant::now() < deadline,
                "no {KILL_AFTER_ACKS} acks within 60s"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        let at_kill = acks_w.count.load(Ordering::SeqCst);
        server.sigkill();
        std::thread::sleep(Duration::from_millis(300));
        server.restart();
        restarted_w.store(true, Ordering::SeqCst);
        (server, at_kill)
    });

    let mut total = 0;
    let mut sent_after_restart = 0;
    for i in 0..MAX_RECORDS {
        if restarted.load(Ordering::SeqCst) {
            sent_after_restart += 1;
            if sent_after_restart > SEND_AFTER_RESTART {
                break;
            }
        } else if killer.is_finished() {
            break; // the killer gave up (it panicked): join below reports why
        }
        total = i + 1;
        let v = value(i);
        let key = format!("k{}", i % 16);
        loop {
            let rec = BaseRecord::with_opaque_to(TOPIC, Box::new(i))
                .partition((i % PARTITIONS as usize) as i32)
                .key(&key)
                .payload(&v);
            match producer.send(rec) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err((e, _)) => panic!("enqueue {i}: {e}"),
            }
        }
        if i % 10 == 9 {
            std::thread::sleep(Duration::from_millis(1)); // a stream, not one burst
        }
    }
    let (mut server, at_kill) = killer.join().expect("killer thread");
    producer.flush(Duration::from_secs(90)).expect("flush");
    drop(producer);

    let ok = acks.ok.lock().unwrap().clone();
    let failed = acks.failed.lock().unwrap().clone();
    println!(
        "acked {} ({} before the kill), failed {}, of {total}",
        ok.len(),
        at_kill,
        failed.len()
    );
    if let Some((i, e)) = failed.first() {
        println!("first failure: record {i}: {e}");
    }
    assert!(
        ok.len() > at_kill,
        "nothing was acknowledged after the restart: the kill was not mid-stream or the \
         producer could not continue"
    );
    assert_eq!(ok.len() + failed.len(), total, "delivery reports missing");

    // A fresh producer after the restart: its offsets must follow every earlier one.
    let mut max_acked: HashMap<i32, i64> = HashMap::new();
    for &(p, o) in ok.values() {
        let m = max_acked.entry(p).or_insert(-1);
        *m = (*m).max(o);
    }
    let after = Arc::new(Acks::default());
    let producer2: ThreadedProducer<Ctx> = ClientConfig::new()
        .set("bootstrap.servers", server.addr())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create_with_context(Ctx(after.clone()))
        .unwrap();
    for i in total..total + 10 {
        let v = value(i);
        producer2
            .send(
                BaseRecord::with_opaque_to(TOPIC, Box::new(i))
                    .partition((i % PARTITIONS as usize) as i32)
                    .key("after-restart")
                    .payload(&v),
            )
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer2.flush(Duration::from_secs(30)).unwrap();
    drop(producer2);
    let ok2 = after.ok.lock().unwrap().clone();
    assert_eq!(
        ok2.len(),
        10,
        "post-restart produce failed: {:?}",
        after.failed.lock().unwrap()
    );
    for (i, (p, o)) in &ok2 {
        let m = max_acked.get(p).copied().unwrap_or(-1);
        assert!(
            *o > m,
            "post-restart record {i} got offset {o} in partition {p}, not after {m}"
        );
    }

    // Read everything back.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", server.addr())
        .set("group.id", "crash-verify")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(TOPIC, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut at: HashMap<(i32, i64), String> = HashMap::new();
    let mut values_seen: HashSet<String> = HashSet::new();
    let mut last: HashMap<i32, i64> = HashMap::new();
    let mut eof: HashSet<i32> = HashSet::new();
    let want_last: HashMap<i32, i64> = ok2.values().fold(HashMap::new(), |mut m, &(p, o)| {
        let e = m.entry(p).or_insert(-1);
        *e = (*e).max(o);
        m
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let done = (0..PARTITIONS).all(|p| {
            eof.contains(&p)
                && last.get(&p).copied().unwrap_or(-1) >= want_last.get(&p).copied().unwrap_or(-1)
        });
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "could not read everything back within 90s"
        );
        match consumer.poll(Duration::from_millis(500)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                eof.insert(p);
            }
            Some(Err(e)) => panic!("consume: {e}"),
            Some(Ok(m)) => {
                eof.remove(&m.partition());
                let v = String::from_utf8(m.payload().unwrap_or_default().to_vec()).unwrap();
                if let Some(prev) = last.insert(m.partition(), m.offset()) {
                    assert!(
                        m.offset() > prev,
                        "offsets went back: {prev} -> {}",
                        m.offset()
                    );
                }
                assert!(values_seen.insert(v.clone()), "value {v} stored twice");
                at.insert((m.partition(), m.offset()), v);
            }
        }
    }
    let mut lost = Vec::new();
    for (i, pos) in ok.iter().chain(ok2.iter()) {
        match at.get(pos) {
            Some(v) if *v == value(*i) => {}
            other => lost.push(format!("record {i} acked at {pos:?}, found {other:?}")),
        }
    }
    lost.sort();
    assert!(
        lost.is_empty(),
        "{} acknowledged records not at their offsets, e.g.:\n{}\n{}",
        lost.len(),
        lost.iter().take(10).cloned().collect::<Vec<_>>().join("\n"),
        server.stderr_tail()
    );
    server.assert_alive("end of crash test");
}
