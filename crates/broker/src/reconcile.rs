//! The replica reconciler: makes the partitions this node hosts follow the metadata image.
//!
//! For every partition whose replicas include this node it opens (or creates) the local log,
//! tied to the topic id by `partition.metadata`, with the topic's config overrides over the
//! broker defaults; applies config changes to open logs; closes and deletes the logs of
//! partitions no longer assigned here (reassigned, or their topic deleted); and keeps each
//! partition's leadership (leader, leader epoch, partition epoch) current. The group
//! coordinator is told when this node gains or loses the leadership of a `__consumer_offsets`
//! partition, and when topics leave the image (deleted), so that it removes the committed
//! offsets of their partitions.
//!
//! [`plan`] is the decision, a pure function of the image and what is hosted; [`apply`]
//! performs it. Nothing is opened or deleted before the broker has caught up with the metadata
//! log (its image shows its own registration unfenced): right after a restart the local image
//! may be behind, and acting on it could delete the directory of a topic recreated since.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use runnel_controller::records::ConfigResourceType;
use runnel_controller::{AppliedImage, MetadataImage};
use tokio::sync::watch;
use uuid::Uuid;

use crate::broker::{Broker, SharedBroker};
use crate::clock::now_ms;
use crate::replica::{Leadership, TopicPartition};
use crate::topic_config;

/// One partition as this node hosts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hosted {
    pub tp: TopicPartition,
    pub topic_id: Uuid,
    pub overrides: BTreeMap<String, String>,
    pub leadership: Leadership,
}

/// What to do to make the hosted partitions match the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open (or create) the log and set its leadership.
    Open {
        tp: TopicPartition,
        topic_id: Uuid,
        overrides: BTreeMap<String, String>,
        leadership: Leadership,
    },
    /// Close the log and delete its directory.
    Remove { tp: TopicPartition },
    /// The topic's config overrides changed.
    Reconfigure {
        tp: TopicPartition,
        overrides: BTreeMap<String, String>,
    },
    /// The leadership changed.
    Lead {
        tp: TopicPartition,
        leadership: Leadership,
    },
}

/// A partition's leadership as seen from `node_id`.
pub fn leadership_of(
    node_id: i32,
    leader: i32,
    leader_epoch: i32,
    partition_epoch: i32,
) -> Leadership {
    Leadership {
        leader,
        leader_epoch,
        partition_epoch,
        is_leader: leader >= 0 && leader == node_id,
    }
}

/// The partitions `node_id` should host, by topic partition.
pub fn desired(image: &MetadataImage, node_id: i32) -> BTreeMap<TopicPartition, Hosted> {
    let mut out = BTreeMap::new();
    for t in image.topics() {
        if crate::topics::is_reserved_topic(&t.name) {
            // Its partition 0 would be the metadata log's directory.
            tracing::error!(topic = %t.name, topic_id = %t.topic_id, "the image has a topic with the reserved name of the metadata log; ignoring it");
            continue;
        }
        let overrides = image
            .configs(ConfigResourceType::Topic, &t.name)
            .cloned()
            .unwrap_or_default();
        for (&p, reg) in &t.partitions {
            if !reg.replicas.contains(&node_id) {
                continue;
            }
            let tp = TopicPartition::new(&t.name, p);
            out.insert(
                tp.clone(),
                Hosted {
                    tp,
                    topic_id: t.topic_id,
                    overrides: overrides.clone(),
                    leadership: leadership_of(
                        node_id,
                        reg.leader,
                        reg.leader_epoch,
                        reg.partition_epoch,
                    ),
                },
            );
        }
    }
    out
}

/// Decides the actions that bring `hosted` to the image. Removals come first, so that a
/// partition of a deleted topic is gone before a new topic of the same name opens its own.
pub fn plan(image: &MetadataImage, node_id: i32, hosted: &[Hosted]) -> Vec<Action> {
    let want = desired(image, node_id);
    let mut removals = Vec::new();
    let mut rest = Vec::new();
    let mut have: HashMap<&TopicPartition, &Hosted> = HashMap::new();
    for h in hosted {
        have.insert(&h.tp, h);
        match want.get(&h.tp) {
            Some(w) if w.topic_id == h.topic_id => {
                if w.overrides != h.overrides {
                    rest.push(Action::Reconfigure {
                        tp: h.tp.clone(),
                        overrides: w.overrides.clone(),
                    });
                }
                if w.leadership != h.leadership {
                    rest.push(Action::Lead {
                        tp: h.tp.clone(),
                        leadership: w.leadership,
                    });
                }
            }
            // Not assigned here any more, or the name now belongs to a new topic.
            _ => removals.push(Action::Remove { tp: h.tp.clone() }),
        }
    }
    for (tp, w) in want {
        let reopen = have.get(&tp).is_some_and(|h| h.topic_id != w.topic_id);
        if !have.contains_key(&tp) || reopen {
            rest.push(Action::Open {
                tp,
                topic_id: w.topic_id,
                overrides: w.overrides,
                leadership: w.leadership,
            });
        }
    }
    removals.extend(rest);
    removals
}

/// The topics of `before` that `after` no longer has, by topic id (so a topic deleted and
/// recreated under the same name between the two images is one of them), as (name,
/// partitions).
pub fn deleted_topics(before: &MetadataImage, after: &MetadataImage) -> Vec<(String, Vec<i32>)> {
    before
        .topics()
        .filter(|t| after.topic(&t.topic_id).is_none())
        .map(|t| (t.name.clone(), t.partitions.keys().copied().collect()))
        .collect()
}

/// The hosted partitions, as [`plan`] takes them.
pub fn hosted(broker: &Broker) -> Vec<Hosted> {
    broker
        .partitions()
        .all()
        .into_iter()
        .map(|p| Hosted {
            tp: p.tp.clone(),
            topic_id: p.topic_id,
            overrides: p.overrides(),
            leadership: p.leadership(),
        })
        .collect()
}

/// Performs the actions (blocking file work: call it off the async workers). Failures to open
/// a log are logged and counted in the result: [`run`] retries them with back-off.
pub fn apply(broker: &Broker, image: &MetadataImage, actions: Vec<Action>) -> usize {
    let now = now_ms();
    let defaults = &broker.config().log_defaults;
    let mut opened = 0usize;
    let mut failed = 0usize;
    for action in actions {
        match action {
            Action::Remove { tp } => {
                if let Some(c) = broker.coordinators().get(&tp.topic) {
                    c.unload(tp.partition);
                }
                tracing::info!(topic = %tp.topic, partition = tp.partition, "partition no longer assigned here; deleting its log");
                broker.replication().on_removed(&tp);
                broker.partitions().remove_partition(&tp);
            }
            Action::Open {
                tp,
                topic_id,
                overrides,
                leadership,
            } => {
                let lc = topic_config::log_config(&overrides, defaults);
                match broker.partitions().open_partition_with(
                    tp.clone(),
                    topic_id,
                    overrides,
                    lc,
                    now,
                ) {
                    Ok(p) => {
                        tracing::debug!(topic = %tp.topic, partition = tp.partition, %topic_id, leader = leadership.leader, leader_epoch = leadership.leader_epoch, "hosting partition");
                        opened += 1;
                        broker.replication().on_leadership(
                            &p,
                            leadership,
                            image.partition(&topic_id, tp.partition),
                        );
                        leadership_changed(broker, &tp, Leadership::NONE, leadership);
                    }
                    Err(e) => {
                        failed += 1;
                        tracing::error!(topic = %tp.topic, partition = tp.partition, %topic_id, error = %e, "cannot open partition log; will retry")
                    }
                }
            }
            Action::Reconfigure { tp, overrides } => {
                if let Some(p) = broker.partitions().get(&tp) {
                    let lc = topic_config::log_config(&overrides, defaults);
                    tracing::info!(topic = %tp.topic, partition = tp.partition, configs = ?overrides, "applying topic configs");
                    p.set_overrides(overrides, lc);
                    broker.replication().on_reconfigured(&p);
                }
            }
            Action::Lead { tp, leadership } => {
                if let Some(p) = broker.partitions().get(&tp) {
                    let before = p.leadership();
                    tracing::info!(topic = %tp.topic, partition = tp.partition, leader = leadership.leader, leader_epoch = leadership.leader_epoch, partition_epoch = leadership.partition_epoch, "leadership changed");
                    broker.replication().on_leadership(
                        &p,
                        leadership,
                        image.partition(&p.topic_id, tp.partition),
                    );
                    leadership_changed(broker, &tp, before, leadership);
                }
            }
        }
    }
    if opened > 0 {
        tracing::info!(
            partitions = opened,
            hosted = broker.partitions().all().len(),
            "opened partition logs"
        );
    }
    failed
}

/// What a leadership change of an internal topic's partition does to its coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoordinatorTransition {
    Load,
    /// Led here before and after, but under another leader epoch: the leadership went away
    /// and came back between two images, and the coordinator's memory may be stale (another
    /// leader may have written to the partition meanwhile).
    Reload,
    Unload,
}

pub fn coordinator_transition(
    before: Leadership,
    after: Leadership,
) -> Option<CoordinatorTransition> {
    match (before.is_leader, after.is_leader) {
        (false, true) => Some(CoordinatorTransition::Load),
        (true, false) => Some(CoordinatorTransition::Unload),
        (true, true) if before.leader_epoch != after.leader_epoch => {
            Some(CoordinatorTransition::Reload)
        }
        _ => None,
    }
}

/// Loads or unloads the coordinator of an internal topic's partition (`__consumer_offsets`,
/// `__transaction_state`) whose leadership moved.
fn leadership_changed(broker: &Broker, tp: &TopicPartition, before: Leadership, after: Leadership) {
    let Some(c) = broker.coordinators().get(&tp.topic) else {
        return;
    };
    let Some(t) = coordinator_transition(before, after) else {
        return;
    };
    if t != CoordinatorTransition::Load {
        c.unload(tp.partition);
    }
    if t != CoordinatorTransition::Unload {
        if t == CoordinatorTransition::Reload {
            tracing::info!(
                topic = %tp.topic,
                partition = tp.partition,
                old_leader_epoch = before.leader_epoch,
                leader_epoch = after.leader_epoch,
                "leadership of a coordinator's partition came back; reloading it"
            );
        }
        if let Some(p) = broker.partitions().get(tp) {
            c.load(&p);
        }
    }
}

/// How a reconciliation pass ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    Done,
    /// Some partitions could not be opened; retry later.
    Failed(usize),
    /// The broker has failed for good (its data directory belongs to another cluster): stop.
    Stopped,
}

/// One reconciliation against `image`; returns once it is applied.
pub async fn reconcile(broker: &SharedBroker, image: &Arc<AppliedImage>) -> Pass {
    if !broker.verify_cluster(image) {
        return Pass::Stopped;
    }
    for c in broker.coordinators().iter() {
        if let Some(t) = image.image.topic_by_name(c.topic()) {
            c.set_num_partitions(t.partitions.len() as i32);
        }
    }
    let actions = plan(&image.image, broker.config().node_id, &hosted(broker));
    // Leadership, config and removals first, at the broker's priority; then the partitions new
    // to this node (file creation, the bulk of a flood of CreateTopics) on a background thread
    // that yields the CPU to the data path. A partition is in one group only, so the order of
    // the actions on each partition is kept.
    let (opens, others): (Vec<Action>, Vec<Action>) = actions
        .into_iter()
        .partition(|a| matches!(a, Action::Open { .. }));
    let mut failed = 0;
    if !others.is_empty() {
        let b = broker.clone();
        let img = image.clone();
        match tokio::task::spawn_blocking(move || apply(&b, &img.image, others)).await {
            Ok(n) => failed += n,
            Err(e) => {
                tracing::error!(error = %e, "reconciliation task failed");
                failed += 1;
            }
        }
    }
    if !opens.is_empty() {
        let b = broker.clone();
        let img = image.clone();
        match crate::background::run("runnel-open", move || apply(&b, &img.image, opens)).await {
            Ok(n) => failed += n,
            Err(e) => {
                tracing::error!(error = %e, "reconciliation task failed");
                failed += 1;
            }
        }
    }
    // Committed offsets of deleted topics: the groups coordinated here lose them (after the
    // actions, so that groups loaded in this pass are included). The first pass after start
    // has nothing to compare with; loading a partition removes what it finds of deleted
    // topics.
    if let Some(before) = broker.metadata().swap_reconciled_image(image.clone()) {
        let deleted = deleted_topics(&before.image, &image.image);
        if !deleted.is_empty() {
            broker.groups().on_partitions_deleted(&deleted);
        }
    }
    // Marked even after failures: a waiting admin request learns the change was applied as
    // far as it can be; the failed partitions answer NOT_LEADER_OR_FOLLOWER until a retry
    // opens them.
    broker.metadata().mark_reconciled(image.index);
    if failed > 0 {
        Pass::Failed(failed)
    } else {
        Pass::Done
    }
}

/// The first reconciliation after catching up: ties the data directory to the cluster, removes
/// partition directories the image does not assign here (topics deleted while this node was
/// down), reconciles, and from then on lets fencing stop the broker serving.
pub async fn reconcile_at_startup(broker: &SharedBroker) -> Pass {
    let image = broker.image();
    if !broker.verify_cluster(&image) {
        return Pass::Stopped;
    }
    let want = desired(&image.image, broker.config().node_id);
    let b = broker.clone();
    let removed = tokio::task::spawn_blocking(move || {
        b.partitions()
            .clean_stray_dirs(&|dir: &str| want.keys().any(|tp| tp.dir_name() == dir))
    })
    .await
    .unwrap_or_default();
    if !removed.is_empty() {
        tracing::info!(dirs = ?removed, "removed partition directories not assigned to this node");
    }
    let pass = reconcile(broker, &image).await;
    if pass != Pass::Stopped {
        broker.fence().arm_when_unfenced();
    }
    pass
}

/// The first retry of failed partition opens; doubled per failed pass up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// Follows the image until `stop`. When `caught_up` is false it first waits until the image
/// shows this broker's registration unfenced ([`crate::metadata::MetadataView::caught_up`]) and runs the start-up
/// reconciliation then.
///
/// A pass that could not open some partitions is retried with back-off even when no new image
/// arrives. After [`Pass::Stopped`] it does nothing more.
pub async fn run(broker: SharedBroker, caught_up: bool, mut stop: watch::Receiver<bool>) {
    let mut images = broker.metadata().image_watch();
    if broker.fence().fatal().is_some() {
        return;
    }
    if !caught_up {
        tokio::select! {
            r = images.wait_for(|i| broker.metadata().caught_up(i)) => {
                if r.is_err() {
                    return;
                }
            }
            _ = stop.changed() => return,
        }
        tracing::info!("caught up with the metadata log; hosting assigned partitions");
        if reconcile_at_startup(&broker).await == Pass::Stopped {
            return;
        }
    }
    let mut backoff = RETRY_MIN;
    loop {
        let image = images.borrow_and_update().clone();
        let retry = match reconcile(&broker, &image).await {
            Pass::Stopped => {
                tracing::error!("stopped reconciling: the broker has failed");
                return;
            }
            Pass::Done => {
                backoff = RETRY_MIN;
                None
            }
            Pass::Failed(n) => {
                let wait = backoff;
                backoff = (backoff * 2).min(RETRY_MAX);
                tracing::warn!(
                    failed = n,
                    retry_in_ms = wait.as_millis() as u64,
                    "some partitions could not be opened; retrying"
                );
                Some(wait)
            }
        };
        tokio::select! {
            r = images.changed() => {
                if r.is_err() {
                    return;
                }
            }
            _ = tokio::time::sleep(retry.unwrap_or_default()), if retry.is_some() => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runnel_controller::records::{
        ConfigRecord, PartitionChangeRecord, PartitionRecord, Record, RemoveTopicRecord,
        TopicRecord,
    };

    fn uuid(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn apply_all(image: &mut MetadataImage, records: &[Record]) {
        for r in records {
            image.apply(r).unwrap();
        }
    }

    fn topic(name: &str, id: u128, parts: &[(&[i32], i32)]) -> Vec<Record> {
        let mut v = vec![Record::Topic(TopicRecord {
            name: name.into(),
            topic_id: uuid(id),
        })];
        for (i, (replicas, leader)) in parts.iter().enumerate() {
            v.push(Record::Partition(PartitionRecord {
                topic_id: uuid(id),
                partition: i as i32,
                replicas: replicas.to_vec(),
                isr: replicas.to_vec(),
                leader: *leader,
                leader_epoch: 0,
                partition_epoch: 0,
            }));
        }
        v
    }

    /// `hosted` as it is after performing `actions` (what `apply` does, without files).
    fn perform(hosted: &mut Vec<Hosted>, actions: &[Action]) {
        for a in actions {
            match a {
                Action::Remove { tp } => hosted.retain(|h| &h.tp != tp),
                Action::Open {
                    tp,
                    topic_id,
                    overrides,
                    leadership,
                } => hosted.push(Hosted {
                    tp: tp.clone(),
                    topic_id: *topic_id,
                    overrides: overrides.clone(),
                    leadership: *leadership,
                }),
                Action::Reconfigure { tp, overrides } => {
                    hosted.iter_mut().find(|h| &h.tp == tp).unwrap().overrides = overrides.clone()
                }
                Action::Lead { tp, leadership } => {
                    hosted.iter_mut().find(|h| &h.tp == tp).unwrap().leadership = *leadership
                }
            }
        }
    }

    #[test]
    fn hosts_exactly_the_partitions_assigned_here() {
        let mut image = MetadataImage::new();
        // Node 1 is a replica of a-0 (leader) and a-2 (follower), not of a-1.
        apply_all(
            &mut image,
            &topic("a", 1, &[(&[1, 2], 1), (&[2, 3], 2), (&[3, 1], 3)]),
        );
        let actions = plan(&image, 1, &[]);
        let opened: Vec<(String, i32, bool)> = actions
            .iter()
            .map(|a| match a {
                Action::Open { tp, leadership, .. } => {
                    (tp.topic.to_string(), tp.partition, leadership.is_leader)
                }
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(opened, vec![("a".into(), 0, true), ("a".into(), 2, false)]);
        // Applying the plan reaches a fixed point: nothing more to do.
        let mut hosted = vec![];
        perform(&mut hosted, &actions);
        assert_eq!(plan(&image, 1, &hosted), vec![]);
    }

    #[test]
    fn follows_leadership_configs_reassignment_and_deletion() {
        let mut image = MetadataImage::new();
        apply_all(&mut image, &topic("a", 1, &[(&[1, 2], 1)]));
        apply_all(&mut image, &topic("b", 2, &[(&[1], 1)]));
        let mut hosted = vec![];
        let actions = plan(&image, 1, &hosted);
        perform(&mut hosted, &actions);
        assert_eq!(hosted.len(), 2);

        // Leadership moves to 2: a new leader epoch, and this node is no longer the leader.
        image
            .apply(&Record::PartitionChange(PartitionChangeRecord {
                topic_id: uuid(1),
                partition: 0,
                isr: None,
                leader: Some(2),
            }))
            .unwrap();
        // A config override on b.
        image
            .apply(&Record::Config(ConfigRecord {
                resource_type: ConfigResourceType::Topic,
                resource_name: "b".into(),
                name: "retention.ms".into(),
                value: Some("1000".into()),
            }))
            .unwrap();
        let actions = plan(&image, 1, &hosted);
        assert_eq!(actions.len(), 2, "{actions:?}");
        assert!(actions.contains(&Action::Lead {
            tp: TopicPartition::new("a", 0),
            leadership: Leadership {
                leader: 2,
                leader_epoch: 1,
                partition_epoch: 1,
                is_leader: false
            }
        }));
        assert!(actions.contains(&Action::Reconfigure {
            tp: TopicPartition::new("b", 0),
            overrides: BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]),
        }));
        perform(&mut hosted, &actions);
        assert_eq!(plan(&image, 1, &hosted), vec![]);

        // b is deleted and recreated under a new id: the old log goes before the new one opens.
        image
            .apply(&Record::RemoveTopic(RemoveTopicRecord {
                topic_id: uuid(2),
            }))
            .unwrap();
        apply_all(&mut image, &topic("b", 3, &[(&[1], 1)]));
        let actions = plan(&image, 1, &hosted);
        assert!(matches!(&actions[0], Action::Remove { tp } if *tp == TopicPartition::new("b", 0)));
        assert!(
            matches!(&actions[1], Action::Open { tp, topic_id, .. } if *tp == TopicPartition::new("b", 0) && *topic_id == uuid(3))
        );
        perform(&mut hosted, &actions);

        // a is deleted: its partition is removed.
        image
            .apply(&Record::RemoveTopic(RemoveTopicRecord {
                topic_id: uuid(1),
            }))
            .unwrap();
        let actions = plan(&image, 1, &hosted);
        assert_eq!(
            actions,
            vec![Action::Remove {
                tp: TopicPartition::new("a", 0)
            }]
        );
        perform(&mut hosted, &actions);
        assert_eq!(hosted.len(), 1);
        assert_eq!(plan(&image, 1, &hosted), vec![]);
    }

    #[test]
    fn a_leaderless_partition_is_hosted_but_not_led() {
        let mut image = MetadataImage::new();
        apply_all(&mut image, &topic("a", 1, &[(&[1, 2], -1)]));
        let actions = plan(&image, 1, &[]);
        let [Action::Open { leadership, .. }] = actions.as_slice() else {
            panic!("{actions:?}")
        };
        assert!(!leadership.is_leader);
        assert_eq!(leadership.leader, -1);
        // Node -1 never leads anything, even "leaderless" partitions.
        assert!(!leadership_of(-1, -1, 0, 0).is_leader);
    }

    #[test]
    fn the_reserved_metadata_topic_is_never_hosted() {
        let mut image = MetadataImage::new();
        apply_all(&mut image, &topic("__cluster_metadata", 9, &[(&[1], 1)]));
        apply_all(&mut image, &topic("a", 1, &[(&[1], 1)]));
        assert!(desired(&image, 1)
            .keys()
            .all(|tp| &*tp.topic != "__cluster_metadata"));
        let actions = plan(&image, 1, &[]);
        assert_eq!(actions.len(), 1, "{actions:?}");
    }

    #[test]
    fn offsets_leadership_that_came_back_reloads_the_groups() {
        let l = |leader: i32, epoch: i32| leadership_of(1, leader, epoch, epoch);
        assert_eq!(
            coordinator_transition(l(2, 0), l(1, 1)),
            Some(CoordinatorTransition::Load)
        );
        assert_eq!(
            coordinator_transition(Leadership::NONE, l(1, 0)),
            Some(CoordinatorTransition::Load)
        );
        assert_eq!(
            coordinator_transition(l(1, 1), l(2, 2)),
            Some(CoordinatorTransition::Unload)
        );
        // A -> B -> A coalesced into one image: still the leader, but a new epoch.
        assert_eq!(
            coordinator_transition(l(1, 1), l(1, 3)),
            Some(CoordinatorTransition::Reload)
        );
        assert_eq!(coordinator_transition(l(1, 1), l(1, 1)), None);
        assert_eq!(coordinator_transition(l(2, 1), l(3, 2)), None);
    }

    #[test]
    fn deleted_topics_are_found_by_id_even_when_recreated() {
        let mut before = MetadataImage::new();
        apply_all(&mut before, &topic("a", 1, &[(&[1], 1), (&[2], 2)]));
        apply_all(&mut before, &topic("b", 2, &[(&[1], 1)]));
        apply_all(&mut before, &topic("c", 3, &[(&[1], 1)]));
        assert_eq!(deleted_topics(&before, &before), vec![]);
        let mut after = before.clone();
        // a is deleted and recreated with the same name between the two images; c is deleted.
        apply_all(
            &mut after,
            &[
                Record::RemoveTopic(RemoveTopicRecord { topic_id: uuid(1) }),
                Record::RemoveTopic(RemoveTopicRecord { topic_id: uuid(3) }),
            ],
        );
        apply_all(&mut after, &topic("a", 4, &[(&[1], 1)]));
        let mut deleted = deleted_topics(&before, &after);
        deleted.sort();
        assert_eq!(
            deleted,
            vec![("a".to_string(), vec![0, 1]), ("c".to_string(), vec![0])]
        );
        // A new topic is no deletion.
        assert_eq!(deleted_topics(&after, &after), vec![]);
    }
}
