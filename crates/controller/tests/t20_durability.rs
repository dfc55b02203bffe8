//! What the store keeps across a restart and across a crash.
//!
//! "Restart" drops the store without any explicit close. "Crash" runs the writes in a child
//! process (this same test binary) that calls `std::process::abort()` right after the store
//! acknowledged them, so no destructor and no background flush get a chance to run.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Membership, RaftLogReader, Vote};
use runnel_controller::records::{Record, TopicRecord};
use runnel_controller::store::{self, MetadataRequest, TypeConfig};
use uuid::Uuid;

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn entries() -> Vec<Entry<TypeConfig>> {
    let members: BTreeSet<u64> = [1, 2, 3].into_iter().collect();
    vec![
        Entry {
            log_id: log_id(1, 1),
            payload: EntryPayload::Blank,
        },
        Entry {
            log_id: log_id(1, 2),
            payload: EntryPayload::Membership(Membership::new(vec![members], None)),
        },
        Entry {
            log_id: log_id(2, 3),
            payload: EntryPayload::Normal(MetadataRequest {
                records: vec![Record::Topic(TopicRecord {
                    name: "orders".into(),
                    topic_id: Uuid::from_u128(7),
                })],
            }),
        },
    ]
}

async fn write(dir: &Path) {
    let (mut log, mut sm) = store::open(dir).unwrap();
    log.blocking_append(entries()).await.unwrap();
    log.save_vote(&Vote::new_committed(2, 1)).await.unwrap();
    log.save_committed(Some(log_id(2, 3))).await.unwrap();
    sm.apply(entries()).await.unwrap();
}

async fn check(dir: &Path) {
    let (mut log, mut sm) = store::open(dir).unwrap();
    assert_eq!(
        log.read_vote().await.unwrap(),
        Some(Vote::new_committed(2, 1))
    );
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id, Some(log_id(2, 3)));
    assert_eq!(state.last_purged_log_id, None);
    let read = log.try_get_log_entries(0..10).await.unwrap();
    let ids: Vec<_> = read.iter().map(|e| e.log_id).collect();
    assert_eq!(ids, vec![log_id(1, 1), log_id(1, 2), log_id(2, 3)]);
    assert!(matches!(&read[2].payload, EntryPayload::Normal(r) if r.records.len() == 1));

    // The state machine may lag after a crash (it is not flushed on apply); whatever it has
    // must be a prefix, and re-applying the committed entries gives the full image.
    let (applied, _) = sm.applied_state().await.unwrap();
    assert!(applied <= Some(log_id(2, 3)));
    let committed = log.read_committed().await.unwrap();
    assert!(committed.is_none() || committed == Some(log_id(2, 3)));
    let next = applied.map_or(0, |id| id.index + 1);
    let rest = log.try_get_log_entries(next..=3).await.unwrap();
    sm.apply(rest).await.unwrap();
    let (applied, membership) = sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(2, 3)));
    assert_eq!(membership.log_id(), &Some(log_id(1, 2)));
    assert!(sm.image().topic_by_name("orders").is_some());
}

#[tokio::test]
async fn vote_and_log_survive_drop_without_close() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path()).await;
    // Everything from `write` has been dropped here: no close, no explicit flush.
    check(dir.path()).await;
}

const CHILD_ENV: &str = "RUNNEL_CONTROLLER_CRASH_CHILD_DIR";

/// The child half of `acknowledged_writes_survive_abort`; a no-op when run as a normal test.
#[tokio::test]
async fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    write(Path::new(&dir)).await;
    std::process::abort();
}

#[tokio::test]
async fn acknowledged_writes_survive_abort() {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--test-threads=1"])
        .env(CHILD_ENV, dir.path())
        .output()
        .unwrap()
        .status;
    assert!(!status.success(), "the child should have aborted");
    check(dir.path()).await;
}

#[tokio::test]
async fn truncate_and_purge_persist() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, _sm) = store::open(dir.path()).unwrap();
        log.blocking_append(entries()).await.unwrap();
        log.truncate(log_id(2, 3)).await.unwrap();
        log.purge(log_id(1, 1)).await.unwrap();
    }
    let (mut log, sm) = store::open(dir.path()).unwrap();
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 1)));
    assert_eq!(state.last_log_id, Some(log_id(1, 2)));
    let ids: Vec<_> = log
        .try_get_log_entries(..)
        .await
        .unwrap()
        .iter()
        .map(|e| e.log_id)
        .collect();
    assert_eq!(ids, vec![log_id(1, 2)]);

    // Purging everything leaves the purge point as the last log id.
    log.purge(log_id(1, 2)).await.unwrap();
    // Both halves share the database; it is closed (and its lock freed) when both are gone.
    drop((log, sm));
    let (mut log, _sm) = store::open(dir.path()).unwrap();
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id, Some(log_id(1, 2)));
    assert!(log.try_get_log_entries(..).await.unwrap().is_empty());
}
