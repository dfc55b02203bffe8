//! The replica fetch session on a follower's stream: after the first request, the leader
//! answers only the partitions with something new, a partition named again is always
//! answered, a forgotten one never, and a request that is not incremental is answered in full
//! and marked so (a follower then names every partition, as it must with a leader that keeps
//! no sessions).
//! The stream here speaks for node 2 beside node 2's own fetcher.

mod common;

use std::time::{Duration, Instant};

use common::{batch, create_topics, start_nodes, topic};
use kafka_protocol::error::ResponseError;
use runnel_broker::replica::{Partition, Role};
use runnel_replication::pb;
use tokio::sync::mpsc;
use tonic::transport::Endpoint;

fn fetch(p: &Partition, epoch: i32, offset: i64) -> pb::PartitionFetch {
    pb::PartitionFetch {
        topic_id: p.topic_id.as_bytes().to_vec().into(),
        topic: p.tp.topic.to_string(),
        partition: p.tp.partition,
        current_leader_epoch: epoch,
        fetch_offset: offset,
        last_fetched_epoch: -1,
        log_start_offset: 0,
        partition_max_bytes: 1 << 20,
    }
}

fn request(
    max_wait_ms: i32,
    partitions: Vec<pb::PartitionFetch>,
    forgotten: Vec<&Partition>,
) -> pb::FetchRequest {
    pb::FetchRequest {
        replica_id: 2,
        max_wait_ms,
        min_bytes: 1,
        max_bytes: 1 << 20,
        partitions,
        incremental: true,
        forgotten: forgotten
            .into_iter()
            .map(|p| pb::PartitionRef {
                topic: p.tp.topic.to_string(),
                partition: p.tp.partition,
            })
            .collect(),
    }
}

fn topics_of(resp: &pb::FetchResponse) -> Vec<String> {
    let mut t: Vec<String> = resp.partitions.iter().map(|p| p.topic.clone()).collect();
    t.sort();
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_session_answers_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_nodes(dir.path(), |_| Vec::new()).await;
    let broker = |id: i32| &nodes[id as usize - 1].0.broker;
    create_topics(
        broker(1),
        vec![topic("a", vec![1, 2]), topic("b", vec![1, 2])],
    )
    .await;
    // Node 1 leads both and node 2's own fetcher has reached it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (a, b) = loop {
        let a = broker(1).partitions().get_by("a", 0);
        let b = broker(1).partitions().get_by("b", 0);
        if let (Some(a), Some(b)) = (a, b) {
            let fetched = |p: &Partition| match &*p.role() {
                Role::Leader(st) => st.follower(2).is_some_and(|f| f.last_fetch_ms > 0),
                _ => false,
            };
            if a.leadership().is_leader && b.leadership().is_leader && fetched(&a) && fetched(&b) {
                break (a, b);
            }
        }
        assert!(Instant::now() < deadline, "node 1 never led both topics");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (ea, eb) = (a.leadership().leader_epoch, b.leadership().leader_epoch);

    let channel = Endpoint::from_shared(format!("http://{}", nodes[0].1))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = pb::replication_client::ReplicationClient::new(channel);
    let (tx, rx) = mpsc::channel::<pb::FetchRequest>(1);
    let outbound =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    let mut inbound = client.fetch(outbound).await.unwrap().into_inner();
    let mut ask = async |req: pb::FetchRequest| {
        let t0 = Instant::now();
        tx.send(req).await.unwrap();
        let resp = inbound.message().await.unwrap().expect("an answer");
        (resp, t0.elapsed())
    };

    // The first request names both: both are answered.
    let (resp, _) = ask(request(0, vec![fetch(&a, ea, 0), fetch(&b, eb, 0)], vec![])).await;
    assert!(resp.incremental, "the leader keeps the session: {resp:?}");
    assert_eq!(topics_of(&resp), ["a", "b"], "{resp:?}");
    assert!(
        resp.partitions.iter().all(|p| p.error_code == 0),
        "{resp:?}"
    );

    // Nothing new: the long-poll runs out and answers nothing.
    let (resp, took) = ask(request(300, vec![], vec![])).await;
    assert!(resp.partitions.is_empty(), "{resp:?}");
    assert!(
        took >= Duration::from_millis(250),
        "answered after {took:?}"
    );

    // An append to "a" ends the long-poll at once, with "a" alone.
    let appender = a.clone();
    let append = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        appender.append(&batch(), 0).unwrap();
    });
    let (resp, took) = ask(request(10_000, vec![], vec![])).await;
    append.await.unwrap();
    assert_eq!(topics_of(&resp), ["a"], "{resp:?}");
    assert!(!resp.partitions[0].records.is_empty(), "{resp:?}");
    assert!(took < Duration::from_secs(5), "answered after {took:?}");

    // Named again at its new offset, "a" is answered even with nothing new.
    let (resp, _) = ask(request(0, vec![fetch(&a, ea, 1)], vec![])).await;
    assert_eq!(topics_of(&resp), ["a"], "{resp:?}");
    assert!(resp.partitions[0].records.is_empty(), "{resp:?}");

    // Forgotten, "a" is no longer fetched: its appends do not end the long-poll.
    let (resp, _) = ask(request(0, vec![], vec![&a])).await;
    assert!(resp.partitions.is_empty(), "{resp:?}");
    a.append(&batch(), 0).unwrap();
    let (resp, took) = ask(request(300, vec![], vec![])).await;
    assert!(resp.partitions.is_empty(), "{resp:?}");
    assert!(
        took >= Duration::from_millis(250),
        "answered after {took:?}"
    );

    // A partition named at an epoch the leader does not know gets its error.
    let (resp, _) = ask(request(0, vec![fetch(&b, eb + 5, 0)], vec![])).await;
    assert_eq!(topics_of(&resp), ["b"], "{resp:?}");
    assert_eq!(
        resp.partitions[0].error_code,
        i32::from(ResponseError::UnknownLeaderEpoch.code()),
        "{resp:?}"
    );

    // A request that is not incremental starts the session over and is answered in full.
    let mut full = request(0, vec![fetch(&a, ea, 0), fetch(&b, eb, 0)], vec![]);
    full.incremental = false;
    let (resp, _) = ask(full).await;
    assert!(!resp.incremental, "{resp:?}");
    assert_eq!(topics_of(&resp), ["a", "b"], "{resp:?}");
    assert!(
        resp.partitions.iter().all(|p| p.error_code == 0),
        "{resp:?}"
    );
    let a_data = resp.partitions.iter().find(|p| p.topic == "a").unwrap();
    assert!(!a_data.records.is_empty(), "{resp:?}");

    drop(tx);
    for (server, _) in nodes {
        server.broker.controller().node().shutdown().await;
    }
}
