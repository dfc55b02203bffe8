//! Level 74: a deleted topic takes its groups' committed offsets with it.
//!
//! Against a real `runnel server`: groups commit offsets on two topics, one topic is deleted and
//! at once recreated under the same name. OffsetFetch then shows no committed offset for the
//! recreated topic, `runnel consumer-groups --describe` shows none either, the other topic's
//! offsets are kept, a group that only had offsets of the deleted topic is gone, and a commit
//! to the recreated topic is kept. After a restart (the groups loaded back from
//! `__consumer_offsets`) it is all still so: the offsets were removed with tombstones.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{create_topic, run_with_timeout, Conn, Server};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{
    FindCoordinatorRequest, GroupId, OffsetCommitRequest, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

const TIMEOUT: Duration = Duration::from_secs(15);

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// Runs `runnel ARGS`, which must succeed; its output.
fn cli_ok(args: &[&str]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runnel"));
    cmd.args(args);
    let (ok, out) = run_with_timeout(&mut cmd, Duration::from_secs(60));
    assert!(ok, "runnel {args:?} failed:\n{out}");
    out
}

fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the server coordinates `group` (creating `__consumer_offsets` on first use).
fn find_coordinator(server: &Server, group: &str) {
    let mut conn = Conn::connect(server.socket_addr()).unwrap();
    until("a coordinator", || {
        let req = FindCoordinatorRequest::default().with_key(s(group));
        conn.request(3, &req).unwrap().error_code == 0
    });
}

/// A standalone commit (generation -1) of `offsets` (topic, partition, offset), retried while
/// the coordinator is loading.
fn commit(server: &Server, group: &str, offsets: &[(&str, i32, i64)]) {
    find_coordinator(server, group);
    let mut conn = Conn::connect(server.socket_addr()).unwrap();
    let mut by_topic: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for (t, p, o) in offsets {
        by_topic.entry(t).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(*p)
                .with_committed_offset(*o)
                .with_committed_leader_epoch(-1),
        );
    }
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(TopicName(s(t)))
                        .with_partitions(ps)
                })
                .collect(),
        );
    until("an accepted commit", || {
        let resp = conn.request(8, &req).unwrap();
        let codes: Vec<i16> = resp
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect();
        // COORDINATOR_LOAD_IN_PROGRESS (14) and NOT_COORDINATOR (16) are retried.
        assert!(
            codes.iter().all(|c| [0, 14, 16].contains(c)),
            "OffsetCommit {group}: {resp:?}"
        );
        codes.iter().all(|c| *c == 0)
    });
}

/// The group's committed offsets (topic, partition) -> offset, by an OffsetFetch (v8) for all
/// topics, or for `topic` partitions 0..3 when given.
fn fetch(server: &Server, group: &str, topic: Option<&str>) -> BTreeMap<(String, i32), i64> {
    let mut conn = Conn::connect(server.socket_addr()).unwrap();
    let topics = topic.map(|t| {
        vec![OffsetFetchRequestTopics::default()
            .with_name(TopicName(s(t)))
            .with_partition_indexes(vec![0, 1, 2])]
    });
    let req = OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
        .with_group_id(GroupId(s(group)))
        .with_member_epoch(-1)
        .with_topics(topics)]);
    let mut out = BTreeMap::new();
    until("an OffsetFetch answer", || {
        let resp = conn.request(8, &req).unwrap();
        let g = &resp.groups[0];
        if [14, 16].contains(&g.error_code) {
            return false;
        }
        assert_eq!(g.error_code, 0, "OffsetFetch {group}: {resp:?}");
        out = g
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(move |p| {
                    assert_eq!(p.error_code, 0, "OffsetFetch {group}: {t:?}");
                    (
                        (t.name.0.to_string(), p.partition_index),
                        p.committed_offset,
                    )
                })
            })
            .filter(|(_, o)| *o >= 0)
            .collect();
        true
    });
    out
}

fn offsets(pairs: &[(&str, i32, i64)]) -> BTreeMap<(String, i32), i64> {
    pairs
        .iter()
        .map(|(t, p, o)| ((t.to_string(), *p), *o))
        .collect()
}

/// `runnel consumer-groups --describe` rows as (topic, partition, current offset).
fn describe(server: &Server, group: &str) -> Vec<(String, i32, String)> {
    let addr = server.addr();
    let out = cli_ok(&[
        "consumer-groups",
        "--bootstrap-server",
        &addr,
        "--describe",
        "--group",
        group,
    ]);
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|r| r.len() >= 4 && r[0] == group)
        .map(|r| (r[1].to_string(), r[2].parse().unwrap(), r[3].to_string()))
        .collect()
}

#[test]
fn deleting_a_topic_removes_its_committed_offsets() {
    let mut server = Server::start();
    let addr = server.addr();
    create_topic(server.socket_addr(), "t", 3).unwrap();
    create_topic(server.socket_addr(), "u", 2).unwrap();
    commit(&server, "g", &[("t", 0, 4), ("t", 2, 9), ("u", 1, 7)]);
    commit(&server, "only-t", &[("t", 1, 3)]);
    assert_eq!(
        fetch(&server, "g", None),
        offsets(&[("t", 0, 4), ("t", 2, 9), ("u", 1, 7)])
    );
    assert!(describe(&server, "g").contains(&("t".into(), 2, "9".into())));

    // Delete t and recreate it at once.
    cli_ok(&[
        "topics",
        "--bootstrap-server",
        &addr,
        "--delete",
        "--topic",
        "t",
    ]);
    until("the recreated topic", || {
        create_topic(server.socket_addr(), "t", 3).is_ok()
    });

    // The coordinator removes t's offsets as it sees the deletion: poll briefly for that.
    until("t's offsets to go", || {
        fetch(&server, "g", Some("t")).is_empty()
    });
    let check = |server: &Server| {
        assert_eq!(fetch(server, "g", Some("t")), offsets(&[]));
        // The other topic's offsets are kept.
        assert_eq!(fetch(server, "g", None), offsets(&[("u", 1, 7)]));
        // The group that only had offsets of t is gone.
        assert_eq!(fetch(server, "only-t", None), offsets(&[]));
        let rows = describe(server, "g");
        assert!(rows.iter().all(|(t, _, _)| t != "t"), "{rows:?}");
        assert!(rows.contains(&("u".into(), 1, "7".into())), "{rows:?}");
    };
    check(&server);

    // A commit to the recreated topic is kept.
    commit(&server, "h", &[("t", 0, 1)]);
    assert_eq!(fetch(&server, "h", None), offsets(&[("t", 0, 1)]));

    // Loaded back from __consumer_offsets after a restart: the tombstones hold.
    server.restart();
    check(&server);
    assert_eq!(fetch(&server, "h", None), offsets(&[("t", 0, 1)]));
}
