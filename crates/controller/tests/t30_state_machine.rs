//! The state machine beyond the openraft suite: what replay answers, and that snapshots carry
//! and replace the image.

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftSnapshotBuilder};
use runnel_controller::records::{ProducerIdsRecord, Record, RemoveTopicRecord, TopicRecord};
use runnel_controller::store::{self, MetadataRequest, TypeConfig};
use runnel_controller::ApplyError;
use uuid::Uuid;

fn normal(index: u64, records: Vec<Record>) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(MetadataRequest { records }),
    }
}

fn topic(name: &str, id: u128) -> Record {
    Record::Topic(TopicRecord {
        name: name.into(),
        topic_id: Uuid::from_u128(id),
    })
}

#[tokio::test]
async fn rejected_records_are_reported_by_position_and_the_rest_applied() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm) = store::open(dir.path()).unwrap();
    let replies = sm
        .apply([normal(1, vec![topic("a", 1), topic("a", 2), topic("b", 3)])])
        .await
        .unwrap();
    assert_eq!(replies.len(), 1);
    let rejected = &replies[0].rejected;
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].index, 1);
    assert_eq!(rejected[0].error, ApplyError::TopicNameExists("a".into()));
    assert!(sm.image().topic_by_name("b").is_some());
}

#[tokio::test]
async fn installed_snapshot_replaces_the_image_and_survives_restart() {
    let (dir_l, dir_f) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_log_l, mut leader) = store::open(dir_l.path()).unwrap();
    leader
        .apply([
            normal(1, vec![topic("a", 1), topic("b", 2)]),
            normal(
                2,
                vec![
                    Record::RemoveTopic(RemoveTopicRecord {
                        topic_id: Uuid::from_u128(1),
                    }),
                    Record::ProducerIds(ProducerIdsRecord {
                        broker_id: 1,
                        next_producer_id: 1000,
                    }),
                ],
            ),
        ])
        .await
        .unwrap();
    let snapshot = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();

    {
        let (_log_f, mut follower) = store::open(dir_f.path()).unwrap();
        // The follower had diverging state that the snapshot must replace, not merge into.
        follower
            .apply([normal(1, vec![topic("stale", 9)])])
            .await
            .unwrap();
        let mut data = follower.begin_receiving_snapshot().await.unwrap();
        *data = *snapshot.snapshot.clone();
        follower
            .install_snapshot(&snapshot.meta, data)
            .await
            .unwrap();
        assert_eq!(follower.image(), leader.image());
    }

    let (_log_f, mut follower) = store::open(dir_f.path()).unwrap();
    assert_eq!(follower.image(), leader.image());
    assert!(follower.image().topic_by_name("stale").is_none());
    assert_eq!(follower.image().next_producer_id(), 1000);
    assert_eq!(follower.last_applied(), snapshot.meta.last_log_id);
    let current = follower.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, snapshot.meta);
}
