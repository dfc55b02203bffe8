//! An admin flood on three real nodes: for ten seconds one client sends CreateTopics and
//! auto-creating Metadata requests as fast as eight connections allow, while a producer writes
//! acks=all to a topic replicated on all three. At the active controller, broker heartbeats
//! and AlterPartition must not wait behind the admin requests: no broker may be fenced and the
//! producer must see no error. (Produce latency during the flood is a benchmark,
//! `scripts/bench-admin-flood.sh`, not asserted here.)

mod cluster;
mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster::Cluster;
use common::{negotiate, produce_request, record_batch, Conn};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreateTopicsRequest};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;

const FLOOD: Duration = Duration::from_secs(10);

fn name(s: String) -> TopicName {
    TopicName(StrBytes::from_string(s))
}

#[test]
fn an_admin_flood_fences_no_broker_and_stalls_no_producer() {
    let mut c = Cluster::start(3, &[]);
    c.create_topic_everywhere("steady", 1, 3, &[("min.insync.replicas", "2")]);
    let leader = c.view(1).unwrap().topics["steady"][&0].leader;
    let flooded = c.addr(1);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));

    let flooders: Vec<_> = (0..8)
        .map(|t| {
            let (stop, sent) = (stop.clone(), sent.clone());
            std::thread::spawn(move || {
                let mut conn = Conn::connect(flooded).unwrap();
                conn.client_id = "flood".into();
                let create_v = negotiate(&mut conn, ApiKey::CreateTopics).unwrap();
                let meta_v = negotiate(&mut conn, ApiKey::Metadata).unwrap().min(12);
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let topic = format!("flood-{t}-{n}");
                    if n % 2 == 0 {
                        let req = CreateTopicsRequest::default()
                            .with_topics(vec![CreatableTopic::default()
                                .with_name(name(topic))
                                .with_num_partitions(1)
                                .with_replication_factor(3)])
                            .with_timeout_ms(30_000);
                        conn.request(create_v, &req).expect("CreateTopics");
                    } else {
                        let req = MetadataRequest::default()
                            .with_topics(Some(vec![
                                MetadataRequestTopic::default().with_name(Some(name(topic)))
                            ]))
                            .with_allow_auto_topic_creation(true);
                        conn.request(meta_v, &req).expect("Metadata");
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    let producer = {
        let stop = stop.clone();
        let addr = c.addr(leader);
        std::thread::spawn(move || {
            let mut conn = Conn::connect(addr).unwrap();
            let v = negotiate(&mut conn, ApiKey::Produce).unwrap().min(12);
            let value = vec![7u8; 1024];
            let (mut acked, mut errors, mut slowest) = (0usize, Vec::new(), Duration::ZERO);
            while !stop.load(Ordering::Relaxed) {
                let req = produce_request("steady", 0, record_batch(&[&value], Compression::None));
                let started = Instant::now();
                let resp = conn.request(v, &req).expect("Produce");
                slowest = slowest.max(started.elapsed());
                let code = resp.responses[0].partition_responses[0].error_code;
                if code == 0 {
                    acked += 1;
                } else {
                    errors.push(code);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            (acked, errors, slowest)
        })
    };

    std::thread::sleep(FLOOD);
    stop.store(true, Ordering::Relaxed);
    for f in flooders {
        f.join().expect("flooder");
    }
    let (acked, errors, slowest) = producer.join().expect("producer");
    let created = c
        .view(1)
        .map(|v| v.topics.keys().filter(|t| t.starts_with("flood-")).count())
        .unwrap_or(0);
    eprintln!(
        "{} admin requests, {created} topics created; producer: {acked} acknowledged, errors {errors:?}, slowest {slowest:?}",
        sent.load(Ordering::Relaxed)
    );
    assert!(created > 50, "the flood created only {created} topics");
    for id in [1, 2, 3] {
        let log = c.stderr(id);
        assert!(
            !log.contains("session expired; fenced"),
            "a broker was fenced during the flood (node {id}'s log):\n{}",
            c.stderr_tail(id)
        );
        let view = c.view(id).unwrap();
        assert_eq!(view.brokers.len(), 3, "node {id} lists {:?}", view.brokers);
    }
    assert!(
        errors.is_empty(),
        "produce errors during the flood: {errors:?}"
    );
    assert!(
        acked > 100,
        "only {acked} produce requests acknowledged in {FLOOD:?}"
    );
}
