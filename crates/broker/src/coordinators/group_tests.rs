//! Tests of the group coordinator service on real partition logs (it needs `Partition` and its
//! test-only leadership controls, so it lives in the broker).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use parking_lot::Mutex;
use runnel_controller::{AppliedImage, MetadataImage};
use runnel_coordinator::group::state::{GroupConfig, JoinRequest, OffsetCommit};
use runnel_coordinator::group::OFFSETS_TOPIC;
use runnel_storage::LogConfig;

use super::group::{Answer, CommitAnswer, CoordinatorSettings, GroupCoordinator};
use super::shard_log::BrokerShardLog;
use crate::clock::now_ms;
use crate::replica::{Partition, ReplicaManager, TopicPartition};

/// A `__consumer_offsets` made of plain partition logs in a directory.
struct DirLog {
    replicas: ReplicaManager,
    id: uuid::Uuid,
    n: i32,
}

impl DirLog {
    fn open(dir: &std::path::Path, id: uuid::Uuid, n: i32) -> DirLog {
        let replicas = ReplicaManager::new(dir);
        for p in 0..n {
            replicas
                .open_partition(
                    TopicPartition::new(OFFSETS_TOPIC, p),
                    id,
                    LogConfig::default(),
                    now_ms(),
                )
                .unwrap()
                .lead_alone(1);
        }
        DirLog { replicas, id, n }
    }
}

impl DirLog {
    fn part(&self, partition: i32) -> Arc<Partition> {
        let _ = self.id;
        self.replicas.get_by(OFFSETS_TOPIC, partition).unwrap()
    }
}

/// Loads `__consumer_offsets` partition `p` of `log`.
fn load(c: &GroupCoordinator, log: &DirLog, p: i32, now: i64) -> usize {
    c.load_partition(p, Arc::new(BrokerShardLog(log.part(p))), now)
}

/// The coordinator leads every partition of `log`; returns the records loaded.
fn lead_all(c: &GroupCoordinator, log: &DirLog, now: i64) -> usize {
    (0..log.n).map(|p| load(c, log, p, now)).sum()
}

fn commit(topic: &str, partition: i32, offset: i64) -> OffsetCommit {
    OffsetCommit {
        topic: topic.into(),
        partition,
        offset,
        leader_epoch: 2,
        metadata: "meta".into(),
    }
}

/// A commit on partitions led alone: replicated at once.
#[allow(clippy::too_many_arguments)]
fn commit_now(
    c: &GroupCoordinator,
    group: &str,
    generation: i32,
    member: &str,
    instance: Option<&str>,
    commits: Vec<OffsetCommit>,
    now: i64,
) -> Vec<i16> {
    match c.commit(group, generation, member, instance, commits, now) {
        CommitAnswer::Now(codes) => codes,
        CommitAnswer::Replicating(_) => panic!("an ISR of one waits for nothing"),
    }
}

/// A new static member `instance` of group "g" (range assignor, 10 s timeouts).
fn static_join(instance: &str) -> JoinRequest {
    JoinRequest {
        group_id: "g".into(),
        member_id: String::new(),
        group_instance_id: Some(instance.into()),
        client_id: "cli".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 10_000,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(b"sub"))],
        require_known_member_id: true,
    }
}

fn cfg() -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: 0,
        ..Default::default()
    }
}

#[tokio::test]
async fn offsets_and_groups_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let id = uuid::Uuid::new_v4();
    let now = 1_000_000;
    {
        let log = DirLog::open(dir.path(), id, 5);
        let c = GroupCoordinator::new(cfg(), 5);
        // Before it leads the group's partition the coordinator serves nothing.
        assert_eq!(
            commit_now(&c, "solo", -1, "", None, vec![commit("t", 0, 1)], now),
            vec![ResponseError::NotCoordinator.code()]
        );
        assert_eq!(lead_all(&c, &log, now), 0);
        // A standalone consumer commits, then overwrites one offset.
        let codes = commit_now(
            &c,
            "solo",
            -1,
            "",
            None,
            vec![commit("t", 0, 10), commit("t", 1, 20)],
            now,
        );
        assert_eq!(codes, vec![0, 0]);
        assert_eq!(
            commit_now(&c, "solo", -1, "", None, vec![commit("t", 0, 11)], now),
            vec![0]
        );
        // A group member joins, syncs, commits.
        let join = c.join(static_join("inst-1"), now);
        let Answer::Later(rx) = join else {
            panic!("join should wait")
        };
        let j = rx.await.unwrap();
        assert_eq!(j.error, 0);
        let Answer::Now(s) = c.sync(
            "g",
            j.generation_id,
            &j.member_id,
            Some("inst-1"),
            None,
            None,
            vec![(j.member_id.clone(), Bytes::from_static(b"asg"))],
            now,
        ) else {
            panic!("leader sync answers at once")
        };
        assert_eq!(s.assignment, Bytes::from_static(b"asg"));
        let codes = commit_now(
            &c,
            "g",
            j.generation_id,
            &j.member_id,
            Some("inst-1"),
            vec![commit("t", 2, 7)],
            now,
        );
        assert_eq!(codes, vec![0]);
        // A deleted group leaves tombstones behind.
        assert_eq!(
            commit_now(&c, "gone", -1, "", None, vec![commit("t", 0, 1)], now),
            vec![0]
        );
        c.delete_group("gone").unwrap();
        log.replicas.close_all();
    }
    let log = DirLog::open(dir.path(), id, 5);
    let c = GroupCoordinator::new(cfg(), 5);
    assert!(lead_all(&c, &log, now + 5) >= 7);
    let solo = c.fetch("solo", None).unwrap();
    let t = &solo["t"];
    assert_eq!(t.len(), 2);
    let p0 = t.iter().find(|(p, _)| *p == 0).unwrap().1.clone().unwrap();
    assert_eq!(
        (p0.offset, p0.leader_epoch, p0.metadata.as_str()),
        (11, 2, "meta")
    );
    let g = c
        .fetch("g", Some(&[("t".to_string(), vec![2, 3])]))
        .unwrap();
    assert_eq!(g["t"][0].1.as_ref().map(|v| v.offset), Some(7));
    assert_eq!(g["t"][1].1, None);
    assert!(c.describe("gone").unwrap().is_none());
    let d = c.describe("g").unwrap().unwrap();
    assert_eq!(d.state.name(), "Stable");
    assert_eq!(d.members.len(), 1);
    assert_eq!(d.members[0].group_instance_id.as_deref(), Some("inst-1"));
    assert_eq!(d.members[0].assignment, Bytes::from_static(b"asg"));
    // The static member comes back after the restart with the same metadata: no rebalance.
    let again = c.join(static_join("inst-1"), now + 10);
    let Answer::Now(j2) = again else {
        panic!("static rejoin answers at once")
    };
    assert_eq!(j2.error, 0);
    assert_eq!(j2.generation_id, 1);

    // Losing the leadership of g's partition drops g (and only the groups of that
    // partition) from memory; regaining it loads g back from the log.
    let pg = c.partition_of("g");
    c.unload_partition(pg);
    assert_eq!(c.describe("g").unwrap_err(), ResponseError::NotCoordinator);
    assert_eq!(
        c.fetch("g", None).unwrap_err(),
        ResponseError::NotCoordinator
    );
    if c.partition_of("solo") != pg {
        assert!(c.fetch("solo", None).unwrap().contains_key("t"));
    }
    assert!(!c.owned_partitions().contains(&pg));
    assert!(load(&c, &log, pg, now + 20) > 0);
    assert_eq!(c.describe("g").unwrap().unwrap().members.len(), 1);
}

#[tokio::test]
async fn a_fenced_broker_coordinates_no_group() {
    let dir = tempfile::tempdir().unwrap();
    let log = DirLog::open(dir.path(), uuid::Uuid::new_v4(), 2);
    let c = GroupCoordinator::new(cfg(), 2);
    let (tx, rx) = tokio::sync::watch::channel(runnel_controller::BrokerLifecycle {
        registered: true,
        fenced: false,
    });
    let fence = Arc::new(crate::fence::Fence::new(rx));
    c.set_fence(fence.clone());
    fence.arm_when_unfenced();
    lead_all(&c, &log, 1_000);
    tokio::time::timeout(Duration::from_secs(5), async {
        while !fence.is_armed() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(
        commit_now(&c, "g", -1, "", None, vec![commit("t", 0, 1)], 1_001),
        vec![0]
    );
    assert!(c.check_group("g").is_ok());
    tx.send_replace(runnel_controller::BrokerLifecycle {
        registered: true,
        fenced: true,
    });
    assert_eq!(c.check_group("g"), Err(ResponseError::NotCoordinator));
    assert_eq!(
        c.fetch("g", None).unwrap_err(),
        ResponseError::NotCoordinator
    );
    assert_eq!(
        commit_now(&c, "g", -1, "", None, vec![commit("t", 0, 2)], 1_002),
        vec![ResponseError::NotCoordinator.code()]
    );
    // Unfenced again: the groups loaded before are served again.
    tx.send_replace(runnel_controller::BrokerLifecycle {
        registered: true,
        fenced: false,
    });
    assert!(c.fetch("g", None).unwrap().contains_key("t"));
}

/// The offset of `topic`-`partition` the coordinator serves for `group`, if any.
fn committed(c: &GroupCoordinator, group: &str, topic: &str, partition: i32) -> Option<i64> {
    let f = c
        .fetch(group, Some(&[(topic.to_string(), vec![partition])]))
        .unwrap();
    f[topic][0].1.as_ref().map(|v| v.offset)
}

/// A transactional offset commit on partitions led alone.
fn commit_txn_now(
    c: &GroupCoordinator,
    group: &str,
    pid: i64,
    commits: Vec<OffsetCommit>,
    now: i64,
) -> Vec<i16> {
    match c.commit_txn(group, pid, 0, -1, "", None, commits, now) {
        CommitAnswer::Now(codes) => codes,
        CommitAnswer::Replicating(_) => panic!("an ISR of one waits for nothing"),
    }
}

/// Appends a transaction marker to the group's partition and tells the coordinator, as the
/// marker writer does.
fn end_txn(c: &GroupCoordinator, log: &DirLog, group: &str, pid: i64, commit: bool, now: i64) {
    let p = c.partition_of(group);
    let marker = runnel_protocol::batch::EndTxnMarker {
        producer_id: pid,
        producer_epoch: 0,
        commit,
        coordinator_epoch: 1,
    };
    let batch = runnel_protocol::batch::encode_end_txn_marker(&marker, now);
    log.part(p).append(&batch, now).unwrap();
    c.complete_txn(p, pid, commit, now);
}

#[tokio::test]
async fn transactional_commits_apply_only_at_their_commit_marker_live_and_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let id = uuid::Uuid::new_v4();
    let now = 1_000_000;
    {
        let log = DirLog::open(dir.path(), id, 3);
        let c = GroupCoordinator::new(cfg(), 3);
        lead_all(&c, &log, now);
        commit_now(&c, "g", -1, "", None, vec![commit("t", 0, 5)], now);
        // Committed in transaction 7: invisible until the marker.
        assert_eq!(
            commit_txn_now(&c, "g", 7, vec![commit("t", 0, 10)], now),
            vec![0]
        );
        assert_eq!(committed(&c, "g", "t", 0), Some(5));
        assert!(c.has_pending_txn_offsets("g", "t", 0));
        end_txn(&c, &log, "g", 7, true, now);
        assert_eq!(committed(&c, "g", "t", 0), Some(10));
        assert!(!c.has_pending_txn_offsets("g", "t", 0));
        // Transaction 8 aborts: its offsets never show.
        commit_txn_now(&c, "g", 8, vec![commit("t", 0, 20)], now);
        end_txn(&c, &log, "g", 8, false, now);
        assert_eq!(committed(&c, "g", "t", 0), Some(10));
        // Transaction 9 (a second batch of the same producer continues its sequence) is
        // still open when the coordinator goes away.
        commit_txn_now(&c, "g", 9, vec![commit("t", 1, 30)], now);
        assert_eq!(
            commit_txn_now(&c, "g", 9, vec![commit("t", 1, 31)], now),
            vec![0]
        );
        assert_eq!(committed(&c, "g", "t", 1), None);
    }
    // A new coordinator replays: the committed transaction's offset, not the aborted one's,
    // and the open one waits for its marker.
    let log = DirLog::open(dir.path(), id, 3);
    let c = GroupCoordinator::new(cfg(), 3);
    lead_all(&c, &log, now);
    assert_eq!(committed(&c, "g", "t", 0), Some(10));
    assert_eq!(committed(&c, "g", "t", 1), None);
    assert!(c.has_pending_txn_offsets("g", "t", 1));
    end_txn(&c, &log, "g", 9, true, now);
    assert_eq!(committed(&c, "g", "t", 1), Some(31));
}

#[tokio::test]
async fn commits_and_assignments_wait_for_the_isr_and_apply_in_log_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = DirLog::open(dir.path(), uuid::Uuid::new_v4(), 1);
    let part = log.part(0);
    // This node (1) leads with follower 2 in the ISR: nothing is replicated until 2 has it.
    part.lead_with(1, &[1, 2]);
    let c = GroupCoordinator::new(cfg(), 1);
    load(&c, &log, 0, 1_000);
    let wait = |a: CommitAnswer| match a {
        CommitAnswer::Replicating(w) => w,
        CommitAnswer::Now(codes) => panic!("answered before replication: {codes:?}"),
    };
    let w1 = wait(c.commit("solo", -1, "", None, vec![commit("t", 0, 10)], 1_000));
    let w2 = wait(c.commit("solo", -1, "", None, vec![commit("t", 0, 20)], 1_001));
    // Not replicated: not visible.
    assert_eq!(committed(&c, "solo", "t", 0), None);
    part.follower_caught_up(2, 1_002);
    // The later commit's answer first: both are applied, in log order.
    assert_eq!(w2.finish().await, vec![0]);
    assert_eq!(committed(&c, "solo", "t", 0), Some(20));
    assert_eq!(w1.finish().await, vec![0]);
    assert_eq!(committed(&c, "solo", "t", 0), Some(20));

    // A commit whose follower never fetches times out as COORDINATOR_NOT_AVAILABLE (the
    // client looks up the coordinator again and retries), stays invisible, and is applied
    // by the timer once the follower has it after all.
    c.set_settings(CoordinatorSettings {
        commit_timeout_ms: 50,
        ..CoordinatorSettings::default()
    });
    let w3 = wait(c.commit("solo", -1, "", None, vec![commit("t", 0, 30)], 1_003));
    assert_eq!(
        w3.finish().await,
        vec![ResponseError::CoordinatorNotAvailable.code()]
    );
    assert_eq!(committed(&c, "solo", "t", 0), Some(20));
    part.follower_caught_up(2, 1_004);
    c.tick(1_005);
    assert_eq!(committed(&c, "solo", "t", 0), Some(30));

    // The group leader's SyncGroup answer (its assignment, written to the log) waits too.
    c.set_settings(CoordinatorSettings::default());
    let join = c.join(static_join("i"), 1_010);
    let j = match join {
        Answer::Later(rx) => rx.await.unwrap(),
        Answer::Now(j) => j,
    };
    assert_eq!(j.error, 0);
    let Answer::Later(mut rx) = c.sync(
        "g",
        j.generation_id,
        &j.member_id,
        Some("i"),
        None,
        None,
        vec![(j.member_id.clone(), Bytes::from_static(b"asg"))],
        1_011,
    ) else {
        panic!("the sync answer left before its group record was replicated")
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(rx.try_recv().is_err(), "answered before replication");
    part.follower_caught_up(2, 1_012);
    let s = tokio::time::timeout(Duration::from_secs(5), rx)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((s.error, s.assignment), (0, Bytes::from_static(b"asg")));

    // Leadership lost while waiting: NOT_COORDINATOR.
    let w4 = wait(c.commit(
        "g",
        j.generation_id,
        &j.member_id,
        Some("i"),
        vec![commit("t", 1, 5)],
        1_013,
    ));
    part.set_leadership(crate::replica::Leadership {
        leader: 2,
        leader_epoch: 1,
        partition_epoch: 1,
        is_leader: false,
    });
    assert_eq!(
        w4.finish().await,
        vec![ResponseError::NotCoordinator.code()]
    );
}

/// An image with `topics` (name, id, partitions), each partition led by node 1.
fn image_of(topics: &[(&str, u128, i32)]) -> Arc<AppliedImage> {
    use runnel_controller::records::{PartitionRecord, Record, TopicRecord};
    let mut image = MetadataImage::new();
    for (name, id, n) in topics {
        let topic_id = uuid::Uuid::from_u128(*id);
        image
            .apply(&Record::Topic(TopicRecord {
                name: name.to_string(),
                topic_id,
            }))
            .unwrap();
        for p in 0..*n {
            image
                .apply(&Record::Partition(PartitionRecord {
                    topic_id,
                    partition: p,
                    replicas: vec![1],
                    isr: vec![1],
                    leader: 1,
                    leader_epoch: 0,
                    partition_epoch: 0,
                }))
                .unwrap();
        }
    }
    Arc::new(AppliedImage { index: 1, image })
}

/// A coordinator whose metadata image is whatever `image` holds.
fn with_image(n: i32, image: &Arc<Mutex<Arc<AppliedImage>>>) -> GroupCoordinator {
    let c = GroupCoordinator::new(cfg(), n);
    let image = image.clone();
    c.set_metadata(Box::new(move || image.lock().clone()));
    c
}

#[tokio::test]
async fn offsets_of_deleted_topics_are_removed_and_stay_removed() {
    let dir = tempfile::tempdir().unwrap();
    let id = uuid::Uuid::new_v4();
    let now = 1_000_000;
    let image = Arc::new(Mutex::new(image_of(&[("t", 1, 3), ("u", 2, 2)])));
    {
        let log = DirLog::open(dir.path(), id, 3);
        let c = with_image(3, &image);
        lead_all(&c, &log, now);
        let solo = |g: &str, cs: Vec<OffsetCommit>| {
            assert!(commit_now(&c, g, -1, "", None, cs, now)
                .iter()
                .all(|e| *e == 0));
        };
        solo(
            "g",
            vec![commit("t", 0, 1), commit("t", 2, 9), commit("u", 0, 4)],
        );
        solo("only-t", vec![commit("t", 1, 3)]);
        // t is deleted (and recreated under a new id): its offsets go, u's stay.
        *image.lock() = image_of(&[("t", 3, 3), ("u", 2, 2)]);
        assert_eq!(
            c.on_partitions_deleted(&[("t".to_string(), vec![0, 1, 2])]),
            3
        );
        assert_eq!(committed(&c, "g", "t", 0), None);
        assert_eq!(committed(&c, "g", "t", 2), None);
        assert_eq!(committed(&c, "g", "u", 0), Some(4));
        assert!(c.describe("only-t").unwrap().is_none());
        // A commit to the recreated topic is kept.
        solo("g", vec![commit("t", 1, 2)]);
        log.replicas.close_all();
    }
    // The tombstones were written: a restarted coordinator loads none of t's old offsets.
    {
        let log = DirLog::open(dir.path(), id, 3);
        let c = with_image(3, &image);
        lead_all(&c, &log, now);
        let g = c.fetch("g", None).unwrap();
        assert_eq!(g["t"].iter().map(|(p, _)| *p).collect::<Vec<_>>(), vec![1]);
        assert_eq!(committed(&c, "g", "u", 0), Some(4));
        assert!(c.fetch("only-t", None).unwrap().is_empty());
        solo_commit(&c, "only-u", vec![commit("u", 1, 5)], now);
        log.replicas.close_all();
    }
    // u is deleted while no coordinator has the partitions loaded: loading finds its
    // offsets, removes them and writes their tombstones, so that a u recreated later does
    // not get them back either.
    *image.lock() = image_of(&[("t", 3, 3)]);
    {
        let log = DirLog::open(dir.path(), id, 3);
        let c = with_image(3, &image);
        lead_all(&c, &log, now);
        assert_eq!(committed(&c, "g", "u", 0), None);
        assert_eq!(committed(&c, "g", "t", 1), Some(2));
        assert!(c.describe("only-u").unwrap().is_none());
        log.replicas.close_all();
    }
    *image.lock() = image_of(&[("t", 3, 3), ("u", 4, 2)]);
    {
        let log = DirLog::open(dir.path(), id, 3);
        let c = with_image(3, &image);
        lead_all(&c, &log, now);
        assert_eq!(committed(&c, "g", "u", 0), None);
        assert!(c.fetch("only-u", None).unwrap().is_empty());
        assert_eq!(committed(&c, "g", "t", 1), Some(2));

        // A commit that lands after its topic's deletion was seen goes at the next expiry
        // sweep, which compares with the current image.
        solo_commit(&c, "late", vec![commit("u", 0, 7)], now);
        *image.lock() = image_of(&[("t", 3, 3)]);
        c.set_settings(CoordinatorSettings {
            retention_check_interval_ms: 1,
            ..CoordinatorSettings::default()
        });
        c.tick(now + 10);
        assert!(c.describe("late").unwrap().is_none());
        assert_eq!(committed(&c, "g", "t", 1), Some(2));
    }
}

fn solo_commit(c: &GroupCoordinator, group: &str, commits: Vec<OffsetCommit>, now: i64) {
    let codes = commit_now(c, group, -1, "", None, commits, now);
    assert!(codes.iter().all(|e| *e == 0), "{codes:?}");
}

#[tokio::test]
async fn a_commit_replicating_when_its_topic_is_deleted_is_not_applied() {
    let dir = tempfile::tempdir().unwrap();
    let id = uuid::Uuid::new_v4();
    let image = Arc::new(Mutex::new(image_of(&[("t", 1, 1)])));
    let log = DirLog::open(dir.path(), id, 1);
    let part = log.part(0);
    part.lead_with(1, &[1, 2]);
    let c = with_image(1, &image);
    load(&c, &log, 0, 1_000);
    let CommitAnswer::Replicating(w) = c.commit("g", -1, "", None, vec![commit("t", 0, 10)], 1_000)
    else {
        panic!("answered before replication")
    };
    *image.lock() = image_of(&[("t", 2, 1)]);
    // Nothing was applied yet, but the commit in flight gets its tombstone after it.
    assert_eq!(c.on_partitions_deleted(&[("t".to_string(), vec![0])]), 1);
    part.follower_caught_up(2, 1_001);
    assert_eq!(w.finish().await, vec![0]);
    assert_eq!(committed(&c, "g", "t", 0), None);
    // Reloaded from the log: the tombstone came last.
    part.follower_caught_up(2, 1_002);
    c.unload_partition(0);
    load(&c, &log, 0, 1_003);
    assert_eq!(committed(&c, "g", "t", 0), None);
}
