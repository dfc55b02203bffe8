//! Level 71: consumer groups with real Kafka clients, plus coordinator fencing.
//!
//! Each client test starts its own `runnel server` (with a short
//! `group.initial.rebalance.delay.ms`), creates a topic and runs one program from
//! `tests/groups/` (the header comment of each says exactly what it checks; each prints a
//! `RESULT {json}` line and exits non-zero on a failed check):
//! - kafkajs 2.2.4: two `consumer.run({ eachMessage })` members share 4 partitions, exactly once,
//!   commits land (`kafkajs_group.js`);
//! - confluent-kafka with `range` and with `cooperative-sticky`: three members on six
//!   partitions, one leaves; the at-least-once bound and (cooperative) no needless revocation
//!   (`confluent_group.py`);
//! - sarama 1.22 (`sarama/`), kafka-python 3.0.12 (`kafka_python_group.py`);
//! - static membership with confluent-kafka (`confluent_static.py`).
//!
//! `fencing` drives the coordinator with raw requests: a stale generation, an unknown member and
//! a replaced static instance get ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID and FENCED_INSTANCE_ID,
//! and a static leader rejoining a stable group gets the KIP-814 answer of its JoinGroup version.
//!
//! A missing client is a failure, not a skip (install them with
//! `scripts/install-test-deps.sh`); on a dev machine `RUNNEL_SKIP_CLIENTS=kafkajs,sarama` skips
//! the listed clients, as in `t10_clients`.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{create_topic, repo_root, run_with_timeout, Conn, Server};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    FindCoordinatorRequest, GroupId, HeartbeatRequest, JoinGroupRequest, JoinGroupResponse,
    OffsetCommitRequest, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

const CLIENT_TIMEOUT: Duration = Duration::from_secs(180);
/// Short enough to keep the tests quick, long enough that members starting together usually
/// land in the first generation.
const INITIAL_DELAY: &str = "group.initial.rebalance.delay.ms=300";

fn skipped(client: &str) -> bool {
    common::client_skipped(client)
}

fn require(tool: &str, client: &str) {
    common::require_tool(tool, client)
}

/// Starts a server, creates `topic` with `partitions`, runs `program args... BOOTSTRAP TOPIC
/// GROUP extra...` and asserts it exits 0 with a `RESULT` line saying `"ok": true`.
fn run_group_program(
    client: &str,
    program: &str,
    args: &[&str],
    topic: &str,
    partitions: i32,
    extra: &[&str],
) {
    if skipped(client) {
        eprintln!("skipping {client}: listed in RUNNEL_SKIP_CLIENTS");
        return;
    }
    require(program, client);
    let server = Server::start_with(&[INITIAL_DELAY]);
    create_topic(server.socket_addr(), topic, partitions).expect("create topic");
    let group = format!("{topic}-group");
    let mut cmd = Command::new(program);
    cmd.args(args)
        .arg(server.addr())
        .arg(topic)
        .arg(&group)
        .args(extra)
        .current_dir(repo_root())
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let (ok, output) = run_with_timeout(&mut cmd, CLIENT_TIMEOUT);
    println!("{output}");
    let result = output
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| {
            panic!(
                "{client}: no RESULT line:\n{output}\n{}",
                server.stderr_tail()
            )
        });
    assert!(
        ok && (result.contains("\"ok\": true") || result.contains("\"ok\":true")),
        "{client} group program failed:\n{output}\n{}",
        server.stderr_tail()
    );
}

#[test]
fn kafkajs_two_members() {
    run_group_program(
        "kafkajs",
        "node",
        &["tests/groups/kafkajs_group.js"],
        "g-kafkajs",
        4,
        &[],
    );
}

#[test]
fn confluent_range_member_leaves() {
    run_group_program(
        "confluent",
        "python3",
        &["tests/groups/confluent_group.py"],
        "g-confluent-range",
        6,
        &["range"],
    );
}

#[test]
fn confluent_cooperative_sticky_member_leaves() {
    run_group_program(
        "confluent",
        "python3",
        &["tests/groups/confluent_group.py"],
        "g-confluent-coop",
        6,
        &["cooperative-sticky"],
    );
}

#[test]
fn confluent_static_membership() {
    run_group_program(
        "confluent",
        "python3",
        &["tests/groups/confluent_static.py"],
        "g-confluent-static",
        4,
        &[],
    );
}

#[test]
fn sarama_two_members() {
    // sarama 1.22's default config (Consumer.Offsets.Retention = 0) commits with OffsetCommit
    // v1, which Kafka 4 removed and Runnel still accepts (crates/protocol/src/legacy.rs).
    if !skipped("sarama") {
        require("go", "sarama");
    }
    run_group_program(
        "sarama",
        "bash",
        &["tests/groups/sarama/run.sh"],
        "g-sarama",
        4,
        &["0"],
    );
}

#[test]
fn sarama_two_members_with_retention() {
    // Consumer.Offsets.Retention set: sarama 1.22 then commits with OffsetCommit v2.
    if !skipped("sarama") {
        require("go", "sarama");
    }
    run_group_program(
        "sarama",
        "bash",
        &["tests/groups/sarama/run.sh"],
        "g-sarama-retention",
        4,
        &["86400000"],
    );
}

#[test]
fn kafka_python_two_members() {
    run_group_program(
        "kafka_python",
        "python3",
        &["tests/groups/kafka_python_group.py"],
        "g-kafka-python",
        4,
        &[],
    );
}

// ---- fencing, with raw requests ----

const JOIN_V: i16 = 5; // group.instance.id (KIP-345) and MEMBER_ID_REQUIRED (KIP-394)
const SYNC_V: i16 = 3;
const HEARTBEAT_V: i16 = 3;
const COMMIT_V: i16 = 7;

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

fn join(
    conn: &mut Conn,
    group: &str,
    member: &str,
    instance: Option<&str>,
    metadata: &'static [u8],
) -> JoinGroupResponse {
    join_v(conn, JOIN_V, group, member, instance, metadata)
}

fn join_v(
    conn: &mut Conn,
    version: i16,
    group: &str,
    member: &str,
    instance: Option<&str>,
    metadata: &'static [u8],
) -> JoinGroupResponse {
    let req = JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member))
        .with_group_instance_id(instance.map(s))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::from_static(metadata))]);
    conn.request(version, &req).expect("JoinGroup")
}

/// Joins as a new member: MEMBER_ID_REQUIRED for dynamic members, then the real join.
fn join_new(conn: &mut Conn, group: &str, instance: Option<&str>) -> JoinGroupResponse {
    let r = join(conn, group, "", instance, b"m1");
    if instance.is_some() {
        return r;
    }
    assert_eq!(r.error_code, ResponseError::MemberIdRequired.code());
    join(conn, group, &r.member_id, None, b"m1")
}

fn sync(conn: &mut Conn, group: &str, gen: i32, member: &str, instance: Option<&str>) -> i16 {
    let req = SyncGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(gen)
        .with_member_id(s(member))
        .with_group_instance_id(instance.map(s))
        .with_assignments(vec![SyncGroupRequestAssignment::default()
            .with_member_id(s(member))
            .with_assignment(Bytes::from_static(b"assignment"))]);
    conn.request(SYNC_V, &req).expect("SyncGroup").error_code
}

fn commit(
    conn: &mut Conn,
    group: &str,
    gen: i32,
    member: &str,
    instance: Option<&str>,
    topic: &str,
) -> i16 {
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(gen)
        .with_member_id(s(member))
        .with_group_instance_id(instance.map(s))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(1)])]);
    let resp = conn.request(COMMIT_V, &req).expect("OffsetCommit");
    resp.topics[0].partitions[0].error_code
}

fn heartbeat(conn: &mut Conn, group: &str, gen: i32, member: &str, instance: Option<&str>) -> i16 {
    let req = HeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(gen)
        .with_member_id(s(member))
        .with_group_instance_id(instance.map(s));
    conn.request(HEARTBEAT_V, &req)
        .expect("Heartbeat")
        .error_code
}

/// Waits (bounded) until the single node coordinates `group`: FindCoordinator creates
/// `__consumer_offsets` on first use, and the coordinator answers NOT_COORDINATOR or
/// COORDINATOR_LOAD_IN_PROGRESS until it leads and has loaded the group's partition.
fn wait_for_coordinator(conn: &mut Conn, group: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let retriable = [
        ResponseError::NotCoordinator.code(),
        ResponseError::CoordinatorNotAvailable.code(),
        ResponseError::CoordinatorLoadInProgress.code(),
    ];
    loop {
        let found = conn
            .request(3, &FindCoordinatorRequest::default().with_key(s(group)))
            .expect("FindCoordinator");
        let code = if found.error_code == 0 {
            heartbeat(conn, group, 1, "nobody", None)
        } else {
            found.error_code
        };
        if !retriable.contains(&code) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no coordinator for {group} after 30 s (last error {code})"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn fencing() {
    let server = Server::start_with(&[INITIAL_DELAY]);
    let topic = "g-fencing";
    create_topic(server.socket_addr(), topic, 1).expect("create topic");
    let mut conn = Conn::connect(server.socket_addr()).unwrap();
    let ok = 0;
    let illegal_generation = ResponseError::IllegalGeneration.code();
    let unknown_member = ResponseError::UnknownMemberId.code();
    let fenced = ResponseError::FencedInstanceId.code();

    // A dynamic member: generation 1, then a rejoin with new metadata makes generation 2.
    let g = "fence-dynamic";
    wait_for_coordinator(&mut conn, g);
    let j1 = join_new(&mut conn, g, None);
    assert_eq!(j1.error_code, ok);
    let m = j1.member_id.to_string();
    assert_eq!((j1.generation_id, &*j1.leader), (1, m.as_str()));
    assert_eq!(sync(&mut conn, g, 1, &m, None), ok);
    assert_eq!(commit(&mut conn, g, 1, &m, None, topic), ok);
    let j2 = join(&mut conn, g, &m, None, b"m2");
    assert_eq!((j2.error_code, j2.generation_id), (ok, 2));
    assert_eq!(sync(&mut conn, g, 2, &m, None), ok);
    // The stale generation is refused everywhere.
    assert_eq!(commit(&mut conn, g, 1, &m, None, topic), illegal_generation);
    assert_eq!(heartbeat(&mut conn, g, 1, &m, None), illegal_generation);
    assert_eq!(sync(&mut conn, g, 1, &m, None), illegal_generation);
    // An unknown member, with the current generation.
    assert_eq!(
        commit(&mut conn, g, 2, "nobody", None, topic),
        unknown_member
    );
    assert_eq!(heartbeat(&mut conn, g, 2, "nobody", None), unknown_member);
    assert_eq!(sync(&mut conn, g, 2, "nobody", None), unknown_member);
    assert_eq!(
        join(&mut conn, g, "nobody", None, b"m2").error_code,
        unknown_member
    );
    assert_eq!(commit(&mut conn, g, 2, &m, None, topic), ok);
    assert_eq!(heartbeat(&mut conn, g, 2, &m, None), ok);

    // A static member replaced by a second process with the same group.instance.id.
    let g = "fence-static";
    wait_for_coordinator(&mut conn, g);
    let inst = Some("instance-1");
    let s1 = join_new(&mut conn, g, inst);
    assert_eq!((s1.error_code, s1.generation_id), (ok, 1));
    let old = s1.member_id.to_string();
    assert_eq!(sync(&mut conn, g, 1, &old, inst), ok);
    let mut conn2 = Conn::connect(server.socket_addr()).unwrap();
    let s2 = join(&mut conn2, g, "", inst, b"m1");
    // Unchanged metadata in a stable group: the same generation, no rebalance.
    assert_eq!((s2.error_code, s2.generation_id), (ok, 1));
    let new = s2.member_id.to_string();
    assert_ne!(new, old);
    // The replaced member led the group; before JoinGroup v9 the answer names the old id as
    // leader with no members, so the client does not compute an assignment (KIP-814).
    assert_eq!((&*s2.leader, s2.members.len()), (old.as_str(), 0));
    assert!(!s2.skip_assignment);
    assert_eq!(sync(&mut conn2, g, 1, &new, inst), ok);
    assert_eq!(commit(&mut conn, g, 1, &old, inst, topic), fenced);
    assert_eq!(heartbeat(&mut conn, g, 1, &old, inst), fenced);
    assert_eq!(sync(&mut conn, g, 1, &old, inst), fenced);
    assert_eq!(join(&mut conn, g, &old, inst, b"m1").error_code, fenced);
    assert_eq!(commit(&mut conn2, g, 1, &new, inst, topic), ok);
    assert_eq!(heartbeat(&mut conn2, g, 1, &new, inst), ok);
    // A third process with JoinGroup v9: it leads, gets the members and SkipAssignment.
    let mut conn3 = Conn::connect(server.socket_addr()).unwrap();
    let s3 = join_v(&mut conn3, 9, g, "", inst, b"m1");
    assert_eq!((s3.error_code, s3.generation_id), (ok, 1));
    assert_eq!(&*s3.leader, &*s3.member_id);
    assert!(s3.skip_assignment);
    assert_eq!(s3.members.len(), 1);
    assert_eq!(heartbeat(&mut conn2, g, 1, &new, inst), fenced);
    assert_eq!(heartbeat(&mut conn3, g, 1, &s3.member_id, inst), ok);
}
