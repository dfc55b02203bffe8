//! Topics and partitions: creation with replica placement, deletion, partition increases.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::placement::{self, Start};
use super::staged::Staged;
use super::{ControllerResult, Ctx, ManagerConfig, TopicConfigValidator};
use crate::api::{
    ControllerError, CreatableTopic, CreatePartitionsRequest, CreatePartitionsResponse,
    CreateTopicsRequest, CreateTopicsResponse, CreatedTopic, DeleteTopicsRequest,
    DeleteTopicsResponse, DeletedTopic, PartitionIncrease, TopicRef,
};
use crate::image::{MetadataImage, TopicImage};
use crate::records::{
    BrokerId, ConfigRecord, ConfigResourceType, PartitionRecord, Record, RemoveTopicRecord,
    TopicRecord,
};

/// The group coordinator's topic: created by brokers only, never deleted.
pub const CONSUMER_OFFSETS: &str = "__consumer_offsets";
/// The internal topic of the transaction coordinators.
pub const TRANSACTION_STATE: &str = "__transaction_state";

/// Topics only the brokers create (as internal), that cannot be deleted and whose partition
/// count is fixed: a coordinator is found by hashing a key modulo the partition count.
pub fn is_coordinator_topic(name: &str) -> bool {
    name == CONSUMER_OFFSETS || name == TRANSACTION_STATE
}

/// The metadata log's topic: it lives in `<log.dirs>/__cluster_metadata-0`, so no client topic
/// may take this name (its partition 0 would share, and could destroy, the Raft log).
pub const METADATA_TOPIC: &str = "__cluster_metadata";

/// Kafka's limit on topic name length.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Partitions one topic may have.
pub const MAX_PARTITIONS_PER_TOPIC: i32 = 100_000;

pub fn create_topics(
    image: &MetadataImage,
    cfg: &ManagerConfig,
    validator: &dyn TopicConfigValidator,
    ctx: &mut Ctx,
    req: &CreateTopicsRequest,
) -> ControllerResult<CreateTopicsResponse> {
    let duplicates = duplicates(req.topics.iter().map(|t| t.name.as_str()));
    let mut staged = Staged::new(image);
    let mut topics = Vec::with_capacity(req.topics.len());
    for topic in &req.topics {
        let result = if duplicates.contains(topic.name.as_str()) {
            Err(ControllerError::InvalidRequest(format!(
                "Topic '{}' appears more than once in the request.",
                topic.name
            )))
        } else {
            plan_topic(staged.image(), cfg, validator, ctx, topic).and_then(|plan| {
                // Internal topics (the offsets topic) are never held back by the limit.
                if !topic.internal {
                    check_cluster_partitions(staged.image(), cfg, plan.assignment.len())?;
                    check_broker_partitions(staged.image(), cfg, &plan.assignment)?;
                }
                Ok(plan)
            })
        };
        match result {
            Ok(plan) => {
                let created = plan.created();
                if !req.validate_only {
                    for record in plan.records(&topic.name) {
                        staged.push(record);
                    }
                    tracing::info!(
                        topic = %topic.name,
                        topic_id = %created.topic_id,
                        partitions = created.num_partitions,
                        replication_factor = created.replication_factor,
                        "topic created"
                    );
                }
                topics.push((topic.name.clone(), Ok(created)));
            }
            Err(e) => {
                tracing::debug!(topic = %topic.name, error = %e, "topic creation refused");
                topics.push((topic.name.clone(), Err(e)));
            }
        }
    }
    ControllerResult::new(staged.into_records(), CreateTopicsResponse { topics })
}

/// A validated topic creation.
struct TopicPlan {
    topic_id: Uuid,
    /// Replicas of partition `i`, first is the preferred leader.
    assignment: Vec<Vec<BrokerId>>,
    /// ISR (and leader as its first member) of partition `i`: the active replicas.
    isrs: Vec<Vec<BrokerId>>,
    configs: BTreeMap<String, String>,
}

impl TopicPlan {
    fn created(&self) -> CreatedTopic {
        CreatedTopic {
            topic_id: self.topic_id,
            num_partitions: self.assignment.len() as i32,
            replication_factor: self.assignment.first().map_or(0, |r| r.len()) as i16,
            configs: self.configs.clone(),
        }
    }

    fn records(&self, name: &str) -> Vec<Record> {
        let mut records = vec![Record::Topic(TopicRecord {
            name: name.to_string(),
            topic_id: self.topic_id,
        })];
        for (i, (replicas, isr)) in self.assignment.iter().zip(&self.isrs).enumerate() {
            records.push(Record::Partition(PartitionRecord {
                topic_id: self.topic_id,
                partition: i as i32,
                replicas: replicas.clone(),
                isr: isr.clone(),
                leader: isr[0],
                leader_epoch: 0,
                partition_epoch: 0,
            }));
        }
        for (key, value) in &self.configs {
            records.push(Record::Config(ConfigRecord {
                resource_type: ConfigResourceType::Topic,
                resource_name: name.to_string(),
                name: key.clone(),
                value: Some(value.clone()),
            }));
        }
        records
    }
}

fn plan_topic(
    image: &MetadataImage,
    cfg: &ManagerConfig,
    validator: &dyn TopicConfigValidator,
    ctx: &mut Ctx,
    topic: &CreatableTopic,
) -> Result<TopicPlan, ControllerError> {
    validate_topic_name(&topic.name)?;
    if image.topic_by_name(&topic.name).is_some() {
        return Err(ControllerError::TopicAlreadyExists(format!(
            "Topic '{}' already exists.",
            topic.name
        )));
    }
    // '.' and '_' collide in metric names, so Kafka refuses names differing only by them.
    let normalized = collision_key(&topic.name);
    if let Some(other) = image
        .topics()
        .find(|t| collision_key(&t.name) == normalized)
    {
        return Err(ControllerError::InvalidTopic(format!(
            "Topic '{}' collides with existing topic: {}",
            topic.name, other.name
        )));
    }
    if is_coordinator_topic(&topic.name) && !topic.internal {
        return Err(ControllerError::InvalidRequest(format!(
            "Creation of internal topic {} is prohibited.",
            topic.name
        )));
    }

    let brokers = placement::usable_brokers(image);
    let assignment = if topic.assignments.is_empty() {
        let partitions = match topic.num_partitions {
            -1 => cfg.default_num_partitions,
            n => n,
        };
        check_partition_count(partitions)?;
        let rf = match topic.replication_factor {
            -1 => cfg.default_replication_factor,
            n => n,
        };
        check_replication_factor(rf, brokers.len())?;
        placement::place(
            &brokers,
            partitions as usize,
            rf as usize,
            0,
            Start::Random,
            ctx,
        )
    } else {
        if topic.num_partitions != -1 || topic.replication_factor != -1 {
            return Err(ControllerError::InvalidRequest(
                "Both numPartitions and replicationFactor must be -1 when a replica \
                 assignment is given."
                    .into(),
            ));
        }
        manual_assignment(image, &topic.assignments)?
    };
    let isrs = assignment
        .iter()
        .enumerate()
        .map(|(i, replicas)| eligible_isr(image, i, replicas))
        .collect::<Result<Vec<_>, _>>()?;

    let mut configs = BTreeMap::new();
    for (key, value) in &topic.configs {
        let Some(value) = value else { continue };
        if configs.contains_key(key) {
            return Err(ControllerError::InvalidRequest(format!(
                "Config '{key}' is given more than once."
            )));
        }
        validator
            .validate(key, value)
            .map_err(ControllerError::InvalidConfig)?;
        configs.insert(key.clone(), value.clone());
    }

    Ok(TopicPlan {
        topic_id: fresh_topic_id(image, ctx),
        assignment,
        isrs,
        configs,
    })
}

/// Kafka's topic name rules, and the name reserved for the metadata log ([`METADATA_TOPIC`]).
pub fn validate_topic_name(name: &str) -> Result<(), ControllerError> {
    if name == METADATA_TOPIC {
        return Err(ControllerError::InvalidTopic(format!(
            "Topic name {METADATA_TOPIC} is reserved for the metadata log."
        )));
    }
    if name.is_empty() {
        return Err(ControllerError::InvalidTopic(
            "Topic name is illegal, it can't be empty.".into(),
        ));
    }
    if name == "." || name == ".." {
        return Err(ControllerError::InvalidTopic(
            "Topic name cannot be \".\" or \"..\".".into(),
        ));
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(ControllerError::InvalidTopic(format!(
            "Topic name is illegal, it can't be longer than {MAX_TOPIC_NAME_LEN} characters, \
             topic name: {name}"
        )));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(ControllerError::InvalidTopic(format!(
            "Topic name \"{name}\" is illegal, it contains a character other than ASCII \
             alphanumerics, '.', '_' and '-'"
        )));
    }
    Ok(())
}

fn collision_key(name: &str) -> String {
    name.replace('.', "_")
}

/// `max.partitions`: the partitions of every topic, the new ones included, stay within the
/// cluster's limit.
fn check_cluster_partitions(
    image: &MetadataImage,
    cfg: &ManagerConfig,
    adding: usize,
) -> Result<(), ControllerError> {
    let total: usize = image.topics().map(|t| t.partitions.len()).sum();
    let max = cfg.max_partitions.max(0) as usize;
    if adding > 0 && total + adding > max {
        return Err(ControllerError::InvalidPartitions(format!(
            "Adding {adding} partition(s) would bring the cluster to {} partitions, above \
             max.partitions={max}.",
            total + adding
        )));
    }
    Ok(())
}

/// `max.broker.partitions`: no broker holds more partition replicas than the limit once the
/// new ones (`adding`, replica lists) are placed. Placement is not changed to avoid a full
/// broker: the request is refused, naming the broker, and an explicit assignment can go around
/// it.
fn check_broker_partitions(
    image: &MetadataImage,
    cfg: &ManagerConfig,
    adding: &[Vec<BrokerId>],
) -> Result<(), ControllerError> {
    let max = cfg.max_broker_partitions.max(0) as usize;
    if adding.is_empty() || max == i32::MAX as usize {
        return Ok(());
    }
    let mut new_per_broker: BTreeMap<BrokerId, usize> = BTreeMap::new();
    for b in adding.iter().flatten() {
        *new_per_broker.entry(*b).or_default() += 1;
    }
    let mut held: BTreeMap<BrokerId, usize> = BTreeMap::new();
    for t in image.topics() {
        for p in t.partitions.values() {
            for b in &p.replicas {
                if new_per_broker.contains_key(b) {
                    *held.entry(*b).or_default() += 1;
                }
            }
        }
    }
    for (b, n) in new_per_broker {
        let total = held.get(&b).copied().unwrap_or(0) + n;
        if total > max {
            return Err(ControllerError::InvalidPartitions(format!(
                "Placing {n} new replica(s) on broker {b} would bring it to {total} partition \
                 replicas, above max.broker.partitions={max}."
            )));
        }
    }
    Ok(())
}

fn check_partition_count(n: i32) -> Result<(), ControllerError> {
    if n <= 0 {
        return Err(ControllerError::InvalidPartitions(format!(
            "Number of partitions was set to an invalid non-positive value ({n})."
        )));
    }
    if n > MAX_PARTITIONS_PER_TOPIC {
        return Err(ControllerError::InvalidPartitions(format!(
            "Number of partitions ({n}) exceeds the limit of {MAX_PARTITIONS_PER_TOPIC} per topic."
        )));
    }
    Ok(())
}

fn check_replication_factor(rf: i16, unfenced: usize) -> Result<(), ControllerError> {
    if rf <= 0 {
        return Err(ControllerError::InvalidReplicationFactor(format!(
            "Replication factor was set to an invalid non-positive value ({rf})."
        )));
    }
    if rf as usize > unfenced {
        return Err(ControllerError::InvalidReplicationFactor(format!(
            "Unable to replicate the partition {rf} time(s): The target replication factor of \
             {rf} cannot be reached because only {unfenced} broker(s) are registered."
        )));
    }
    Ok(())
}

/// A client-chosen assignment: partitions exactly `0..n`, lists of one length, distinct and
/// registered brokers.
fn manual_assignment(
    image: &MetadataImage,
    assignments: &BTreeMap<i32, Vec<BrokerId>>,
) -> Result<Vec<Vec<BrokerId>>, ControllerError> {
    let n = assignments.len();
    if n > MAX_PARTITIONS_PER_TOPIC as usize {
        return Err(ControllerError::InvalidPartitions(format!(
            "Number of partitions ({n}) exceeds the limit of {MAX_PARTITIONS_PER_TOPIC} per topic."
        )));
    }
    // BTreeMap keys are sorted and distinct, so 0..n is exactly "first is 0, last is n - 1".
    let expected = 0..n as i32;
    if assignments.keys().copied().ne(expected) {
        return Err(ControllerError::InvalidReplicaAssignment(format!(
            "Partitions in the replica assignment must be consecutive from 0, got {:?}.",
            assignments.keys().collect::<Vec<_>>()
        )));
    }
    let lists: Vec<Vec<BrokerId>> = assignments.values().cloned().collect();
    let rf = lists[0].len();
    for (p, replicas) in lists.iter().enumerate() {
        check_replica_list(image, p, replicas, None)?;
        if replicas.len() != rf {
            return Err(ControllerError::InvalidReplicaAssignment(format!(
                "Partition {p} has {} replicas but partition 0 has {rf}; all partitions must \
                 have the same replication factor.",
                replicas.len()
            )));
        }
    }
    Ok(lists)
}

/// A non-empty list of distinct registered brokers, of length `rf` when given.
fn check_replica_list(
    image: &MetadataImage,
    partition: usize,
    replicas: &[BrokerId],
    rf: Option<usize>,
) -> Result<(), ControllerError> {
    if replicas.is_empty() {
        return Err(ControllerError::InvalidReplicaAssignment(format!(
            "Partition {partition} has an empty replica list."
        )));
    }
    if replicas.len() > i16::MAX as usize {
        return Err(ControllerError::InvalidReplicaAssignment(format!(
            "Partition {partition} has too many replicas ({}).",
            replicas.len()
        )));
    }
    if let Some(rf) = rf {
        if replicas.len() != rf {
            return Err(ControllerError::InvalidReplicaAssignment(format!(
                "Partition {partition} has {} replicas, but the topic's replication factor is \
                 {rf}.",
                replicas.len()
            )));
        }
    }
    let distinct: BTreeSet<BrokerId> = replicas.iter().copied().collect();
    if distinct.len() != replicas.len() {
        return Err(ControllerError::InvalidReplicaAssignment(format!(
            "Partition {partition} has duplicate replicas: {replicas:?}."
        )));
    }
    if let Some(b) = replicas.iter().find(|&&b| image.broker(b).is_none()) {
        return Err(ControllerError::InvalidReplicaAssignment(format!(
            "Partition {partition} is assigned to broker {b}, which is not registered."
        )));
    }
    Ok(())
}

/// The active replicas (unfenced, not shutting down), in replica order: the new partition's
/// ISR, led by its first member.
fn eligible_isr(
    image: &MetadataImage,
    partition: usize,
    replicas: &[BrokerId],
) -> Result<Vec<BrokerId>, ControllerError> {
    let isr: Vec<BrokerId> = replicas
        .iter()
        .copied()
        .filter(|&b| image.broker(b).is_some_and(|r| r.is_active()))
        .collect();
    if isr.is_empty() {
        return Err(ControllerError::InvalidReplicaAssignment(format!(
            "All brokers in the replica assignment of partition {partition} ({replicas:?}) are \
             fenced or shutting down."
        )));
    }
    Ok(isr)
}

fn fresh_topic_id(image: &MetadataImage, ctx: &mut Ctx) -> Uuid {
    loop {
        let id = ctx.next_uuid();
        if image.topic(&id).is_none() {
            return id;
        }
    }
}

/// The names that occur more than once.
fn duplicates<'a>(names: impl Iterator<Item = &'a str>) -> BTreeSet<&'a str> {
    let mut seen = BTreeSet::new();
    let mut dups = BTreeSet::new();
    for name in names {
        if !seen.insert(name) {
            dups.insert(name);
        }
    }
    dups
}

pub fn delete_topics(
    image: &MetadataImage,
    req: &DeleteTopicsRequest,
) -> ControllerResult<DeleteTopicsResponse> {
    let resolved: Vec<Option<&TopicImage>> = req
        .topics
        .iter()
        .map(|r| match r {
            TopicRef::Name(name) => image.topic_by_name(name),
            TopicRef::Id(id) => image.topic(id),
        })
        .collect();
    // A topic named twice (by name, by id, or once each) is refused every time.
    let mut count: BTreeMap<Uuid, usize> = BTreeMap::new();
    for t in resolved.iter().flatten() {
        *count.entry(t.topic_id).or_default() += 1;
    }
    let unknown_dups = duplicates(req.topics.iter().filter_map(|r| match r {
        TopicRef::Name(n) if image.topic_by_name(n).is_none() => Some(n.as_str()),
        _ => None,
    }));
    let mut unknown_ids = BTreeMap::<Uuid, usize>::new();
    for r in &req.topics {
        if let TopicRef::Id(id) = r {
            if image.topic(id).is_none() {
                *unknown_ids.entry(*id).or_default() += 1;
            }
        }
    }

    let mut staged = Staged::new(image);
    let mut topics = Vec::with_capacity(req.topics.len());
    for (r, topic) in req.topics.iter().zip(&resolved) {
        let (name, topic_id) = match (r, topic) {
            (_, Some(t)) => (Some(t.name.clone()), Some(t.topic_id)),
            (TopicRef::Name(n), None) => (Some(n.clone()), None),
            (TopicRef::Id(id), None) => (None, Some(*id)),
        };
        let duplicate = match (r, topic) {
            (_, Some(t)) => count[&t.topic_id] > 1,
            (TopicRef::Name(n), None) => unknown_dups.contains(n.as_str()),
            (TopicRef::Id(id), None) => unknown_ids[id] > 1,
        };
        let result = if duplicate {
            Err(ControllerError::InvalidRequest(format!(
                "Topic {} appears more than once in the request.",
                describe(r)
            )))
        } else {
            match topic {
                None => Err(ControllerError::UnknownTopic(format!(
                    "Topic {} does not exist.",
                    describe(r)
                ))),
                Some(t) if is_coordinator_topic(&t.name) => Err(ControllerError::InvalidRequest(
                    format!("The internal topic {} cannot be deleted.", t.name),
                )),
                Some(t) => {
                    staged.push(Record::RemoveTopic(RemoveTopicRecord {
                        topic_id: t.topic_id,
                    }));
                    tracing::info!(topic = %t.name, topic_id = %t.topic_id, "topic deleted");
                    Ok(())
                }
            }
        };
        topics.push(DeletedTopic {
            name,
            topic_id,
            result,
        });
    }
    ControllerResult::new(staged.into_records(), DeleteTopicsResponse { topics })
}

fn describe(r: &TopicRef) -> String {
    match r {
        TopicRef::Name(n) => format!("'{n}'"),
        TopicRef::Id(id) => format!("with id {id}"),
    }
}

pub fn create_partitions(
    image: &MetadataImage,
    cfg: &ManagerConfig,
    ctx: &mut Ctx,
    req: &CreatePartitionsRequest,
) -> ControllerResult<CreatePartitionsResponse> {
    let duplicates = duplicates(req.topics.iter().map(|t| t.name.as_str()));
    let mut staged = Staged::new(image);
    let mut topics = Vec::with_capacity(req.topics.len());
    for inc in &req.topics {
        let result = if duplicates.contains(inc.name.as_str()) {
            Err(ControllerError::InvalidRequest(format!(
                "Topic '{}' appears more than once in the request.",
                inc.name
            )))
        } else {
            let adding = staged.image().topic_by_name(&inc.name).map_or(0, |t| {
                (inc.count as i64 - t.partitions.len() as i64).max(0) as usize
            });
            check_cluster_partitions(staged.image(), cfg, adding)
                .and_then(|()| plan_partitions(staged.image(), ctx, inc))
                .and_then(|records| {
                    let added: Vec<Vec<BrokerId>> = records
                        .iter()
                        .filter_map(|r| match r {
                            Record::Partition(p) => Some(p.replicas.clone()),
                            _ => None,
                        })
                        .collect();
                    check_broker_partitions(staged.image(), cfg, &added)?;
                    Ok(records)
                })
        };
        match result {
            Ok(records) => {
                if !req.validate_only {
                    tracing::info!(
                        topic = %inc.name,
                        partitions = inc.count,
                        "partitions added"
                    );
                    for record in records {
                        staged.push(record);
                    }
                }
                topics.push((inc.name.clone(), Ok(())));
            }
            Err(e) => {
                tracing::debug!(topic = %inc.name, error = %e, "partition increase refused");
                topics.push((inc.name.clone(), Err(e)));
            }
        }
    }
    ControllerResult::new(staged.into_records(), CreatePartitionsResponse { topics })
}

fn plan_partitions(
    image: &MetadataImage,
    ctx: &mut Ctx,
    inc: &PartitionIncrease,
) -> Result<Vec<Record>, ControllerError> {
    if is_coordinator_topic(&inc.name) {
        // A group's (or transactional id's) coordinator is the partition its id hashes to
        // modulo the partition count: more partitions would move groups away from their
        // committed offsets and transactions away from their state.
        return Err(ControllerError::InvalidRequest(format!(
            "The number of partitions of {} cannot be changed.",
            inc.name
        )));
    }
    let topic = image.topic_by_name(&inc.name).ok_or_else(|| {
        ControllerError::UnknownTopic(format!("Topic '{}' does not exist.", inc.name))
    })?;
    let current = topic.partitions.len() as i32;
    if inc.count < current {
        return Err(ControllerError::InvalidPartitions(format!(
            "Topic currently has {current} partitions, which is higher than the requested {}.",
            inc.count
        )));
    }
    if inc.count == current {
        return Err(ControllerError::InvalidPartitions(format!(
            "Topic already has {current} partitions."
        )));
    }
    check_partition_count(inc.count)?;
    let Some(first) = topic.partitions.values().next() else {
        return Err(ControllerError::Internal(format!(
            "Topic '{}' has no partitions.",
            inc.name
        )));
    };
    let rf = first.replicas.len();
    let added = (inc.count - current) as usize;
    let assignment = match &inc.assignments {
        Some(lists) => {
            if lists.len() != added {
                return Err(ControllerError::InvalidReplicaAssignment(format!(
                    "Increasing the number of partitions by {added} but {} assignments provided.",
                    lists.len()
                )));
            }
            for (i, replicas) in lists.iter().enumerate() {
                check_replica_list(image, current as usize + i, replicas, Some(rf))?;
            }
            lists.clone()
        }
        None => {
            let brokers = placement::usable_brokers(image);
            if rf > brokers.len() {
                return Err(ControllerError::InvalidReplicationFactor(format!(
                    "Unable to replicate the partition {rf} time(s): The target replication \
                     factor of {rf} cannot be reached because only {} broker(s) are registered.",
                    brokers.len()
                )));
            }
            placement::place(
                &brokers,
                added,
                rf,
                current as usize,
                Start::After(first.replicas[0]),
                ctx,
            )
        }
    };
    let mut records = Vec::with_capacity(added);
    for (i, replicas) in assignment.into_iter().enumerate() {
        let partition = current as usize + i;
        let isr = eligible_isr(image, partition, &replicas)?;
        records.push(Record::Partition(PartitionRecord {
            topic_id: topic.topic_id,
            partition: partition as i32,
            leader: isr[0],
            replicas,
            isr,
            leader_epoch: 0,
            partition_epoch: 0,
        }));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::managers::cluster;
    use crate::managers::testkit::{brokers, inc, replay, TestValidator};

    type TopicResult = (String, Result<CreatedTopic, ControllerError>);

    fn topic(name: &str, partitions: i32, rf: i16) -> CreatableTopic {
        CreatableTopic {
            name: name.into(),
            num_partitions: partitions,
            replication_factor: rf,
            assignments: BTreeMap::new(),
            configs: Vec::new(),
            internal: false,
        }
    }

    fn create(
        image: &MetadataImage,
        cfg: &ManagerConfig,
        topics: Vec<CreatableTopic>,
    ) -> (MetadataImage, Vec<TopicResult>) {
        let mut ctx = Ctx::new(42);
        let r = create_topics(
            image,
            cfg,
            &TestValidator,
            &mut ctx,
            &CreateTopicsRequest {
                topics,
                validate_only: false,
            },
        );
        (replay(image, &r), r.response.topics)
    }

    fn create_one(
        image: &MetadataImage,
        t: CreatableTopic,
    ) -> Result<CreatedTopic, ControllerError> {
        let (after, mut results) = create(image, &ManagerConfig::default(), vec![t]);
        let result = results.pop().unwrap().1;
        if result.is_err() {
            assert_eq!(&after, image, "a refused topic wrote records");
        }
        result
    }

    /// Fences through the cluster manager, so leaders move and the invariants hold.
    fn fence(image: &MetadataImage, b: BrokerId) -> MetadataImage {
        let r = cluster::fence_broker(image, &ManagerConfig::default(), b, inc(b));
        assert!(!r.records.is_empty());
        replay(image, &r)
    }

    #[test]
    fn creates_topic_partitions_and_configs() {
        let image = brokers(3);
        let mut t = topic("orders", 6, 3);
        t.configs = vec![
            ("retention.ms".into(), Some("1000".into())),
            ("cleanup.policy".into(), None),
        ];
        let (after, results) = create(&image, &ManagerConfig::default(), vec![t]);
        let created = results[0].1.clone().unwrap();
        assert_eq!((created.num_partitions, created.replication_factor), (6, 3));
        assert_eq!(
            created.configs,
            BTreeMap::from([("retention.ms".to_string(), "1000".to_string())])
        );
        let topic = after.topic_by_name("orders").unwrap();
        assert_eq!(topic.topic_id, created.topic_id);
        assert_eq!(topic.partitions.len(), 6);
        let mut leaders = BTreeMap::<BrokerId, usize>::new();
        for p in topic.partitions.values() {
            assert_eq!(p.isr, p.replicas);
            assert_eq!(p.leader, p.replicas[0]);
            assert_eq!((p.leader_epoch, p.partition_epoch), (0, 0));
            *leaders.entry(p.leader).or_default() += 1;
        }
        assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);
        assert_eq!(
            after
                .configs(ConfigResourceType::Topic, "orders")
                .unwrap()
                .get("retention.ms"),
            Some(&"1000".to_string())
        );
    }

    #[test]
    fn defaults_and_validate_only() {
        let image = brokers(3);
        let cfg = ManagerConfig {
            default_num_partitions: 4,
            default_replication_factor: 2,
            ..ManagerConfig::default()
        };
        let (after, results) = create(&image, &cfg, vec![topic("a", -1, -1)]);
        let created = results[0].1.clone().unwrap();
        assert_eq!((created.num_partitions, created.replication_factor), (4, 2));
        assert_eq!(after.topic_by_name("a").unwrap().partitions.len(), 4);

        let mut ctx = Ctx::new(1);
        let r = create_topics(
            &image,
            &cfg,
            &TestValidator,
            &mut ctx,
            &CreateTopicsRequest {
                topics: vec![topic("b", 3, 1), topic("bad name", 1, 1)],
                validate_only: true,
            },
        );
        assert!(r.records.is_empty());
        let created = r.response.topics[0].1.clone().unwrap();
        assert_eq!((created.num_partitions, created.replication_factor), (3, 1));
        assert!(matches!(
            r.response.topics[1].1,
            Err(ControllerError::InvalidTopic(_))
        ));
    }

    #[test]
    fn the_cluster_partition_limit_holds_across_topics_and_increases() {
        let image = brokers(3);
        let cfg = ManagerConfig {
            max_partitions: 5,
            ..ManagerConfig::default()
        };
        // Within one request, the earlier topics count against the later ones.
        let (after, results) = create(
            &image,
            &cfg,
            vec![topic("a", 3, 1), topic("b", 3, 1), topic("c", 2, 1)],
        );
        assert!(results[0].1.is_ok());
        assert!(
            matches!(&results[1].1, Err(ControllerError::InvalidPartitions(m)) if m.contains("max.partitions=5")),
            "{:?}",
            results[1].1
        );
        assert!(results[2].1.is_ok());
        assert_eq!(after.topics().count(), 2);
        // The offsets topic is never held back.
        let mut internal = topic("__consumer_offsets", 50, 1);
        internal.internal = true;
        let (after, results) = create(&after, &cfg, vec![internal]);
        assert!(results[0].1.is_ok(), "{:?}", results[0].1);
        assert_increase_refused(&after, &cfg, 3);
    }

    /// Growing topic "a" to 4 partitions is refused with INVALID_PARTITIONS.
    fn assert_increase_refused(image: &MetadataImage, cfg: &ManagerConfig, seed: u64) {
        let r = create_partitions(
            image,
            cfg,
            &mut Ctx::new(seed),
            &CreatePartitionsRequest {
                topics: vec![PartitionIncrease {
                    name: "a".into(),
                    count: 4,
                    assignments: None,
                }],
                validate_only: false,
            },
        );
        assert!(
            matches!(
                r.response.topics[0].1,
                Err(ControllerError::InvalidPartitions(_))
            ),
            "{:?}",
            r.response.topics[0].1
        );
    }

    #[test]
    fn the_broker_partition_limit_counts_replicas_per_broker() {
        let image = brokers(3);
        let cfg = ManagerConfig {
            max_broker_partitions: 4,
            ..ManagerConfig::default()
        };
        // 3 partitions x rf 3: three replicas on every broker.
        let (after, results) = create(&image, &cfg, vec![topic("a", 3, 3)]);
        assert!(results[0].1.is_ok(), "{:?}", results[0].1);
        // Two more partitions at rf 3 would put five on every broker.
        let (after, results) = create(&after, &cfg, vec![topic("b", 2, 3), topic("c", 1, 3)]);
        assert!(
            matches!(&results[0].1, Err(ControllerError::InvalidPartitions(m)) if m.contains("max.broker.partitions=4")),
            "{:?}",
            results[0].1
        );
        // One fits exactly.
        assert!(results[1].1.is_ok(), "{:?}", results[1].1);
        assert_increase_refused(&after, &cfg, 5);
        // The offsets topic is never held back.
        let mut internal = topic("__consumer_offsets", 5, 3);
        internal.internal = true;
        let (_, results) = create(&after, &cfg, vec![internal]);
        assert!(results[0].1.is_ok(), "{:?}", results[0].1);
    }

    #[test]
    fn topic_name_rules() {
        let image = brokers(1);
        let long = "x".repeat(250);
        for name in ["", ".", "..", long.as_str(), "a b", "a/b", "ü"] {
            assert!(
                matches!(
                    create_one(&image, topic(name, 1, 1)),
                    Err(ControllerError::InvalidTopic(_))
                ),
                "{name:?} accepted"
            );
        }
        for name in ["a", "A-b_c.d", "x".repeat(249).as_str(), "..."] {
            assert!(create_one(&image, topic(name, 1, 1)).is_ok(), "{name:?}");
        }
        assert_eq!(
            validate_topic_name(""),
            Err(ControllerError::InvalidTopic(
                "Topic name is illegal, it can't be empty.".into()
            ))
        );
    }

    #[test]
    fn existing_colliding_and_duplicate_names() {
        let image = brokers(1);
        let (image, _) = create(&image, &ManagerConfig::default(), vec![topic("a.b", 1, 1)]);
        assert_eq!(
            create_one(&image, topic("a.b", 1, 1)),
            Err(ControllerError::TopicAlreadyExists(
                "Topic 'a.b' already exists.".into()
            ))
        );
        assert!(matches!(
            create_one(&image, topic("a_b", 1, 1)),
            Err(ControllerError::InvalidTopic(_))
        ));
        let (after, results) = create(
            &image,
            &ManagerConfig::default(),
            vec![topic("x", 1, 1), topic("y", 1, 1), topic("x", 2, 1)],
        );
        assert!(matches!(
            results[0].1,
            Err(ControllerError::InvalidRequest(_))
        ));
        assert!(results[1].1.is_ok());
        assert!(matches!(
            results[2].1,
            Err(ControllerError::InvalidRequest(_))
        ));
        assert!(after.topic_by_name("x").is_none());
        assert!(after.topic_by_name("y").is_some());
        // Colliding names inside one request: the second one fails.
        let (_, results) = create(
            &image,
            &ManagerConfig::default(),
            vec![topic("p.q", 1, 1), topic("p_q", 1, 1)],
        );
        assert!(results[0].1.is_ok());
        assert!(matches!(
            results[1].1,
            Err(ControllerError::InvalidTopic(_))
        ));
    }

    #[test]
    fn transaction_state_is_created_only_as_internal() {
        let image = brokers(1);
        assert!(matches!(
            create_one(&image, topic(TRANSACTION_STATE, 1, 1)),
            Err(ControllerError::InvalidRequest(_))
        ));
        let mut t = topic(TRANSACTION_STATE, 1, 1);
        t.internal = true;
        assert!(create_one(&image, t).is_ok());
    }

    #[test]
    fn consumer_offsets_needs_internal() {
        let image = brokers(1);
        assert!(matches!(
            create_one(&image, topic(CONSUMER_OFFSETS, 1, 1)),
            Err(ControllerError::InvalidRequest(_))
        ));
        let mut t = topic(CONSUMER_OFFSETS, 1, 1);
        t.internal = true;
        assert!(create_one(&image, t).is_ok());
    }

    #[test]
    fn partition_and_replication_factor_limits() {
        let image = brokers(3);
        for n in [0, -2, MAX_PARTITIONS_PER_TOPIC + 1] {
            assert!(matches!(
                create_one(&image, topic("a", n, 1)),
                Err(ControllerError::InvalidPartitions(_))
            ));
        }
        for rf in [0, -2] {
            assert!(matches!(
                create_one(&image, topic("a", 1, rf)),
                Err(ControllerError::InvalidReplicationFactor(_))
            ));
        }
        assert_eq!(
            create_one(&image, topic("a", 1, 4)),
            Err(ControllerError::InvalidReplicationFactor(
                "Unable to replicate the partition 4 time(s): The target replication factor of 4 \
                 cannot be reached because only 3 broker(s) are registered."
                    .into()
            ))
        );
        // Fenced brokers do not count and are never chosen.
        let fenced = fence(&image, 2);
        assert!(matches!(
            create_one(&fenced, topic("a", 1, 3)),
            Err(ControllerError::InvalidReplicationFactor(_))
        ));
        let (after, _) = create(&fenced, &ManagerConfig::default(), vec![topic("a", 8, 2)]);
        for p in after.topic_by_name("a").unwrap().partitions.values() {
            assert!(!p.replicas.contains(&2), "{p:?}");
        }
    }

    #[test]
    fn rack_aware_creation_spreads_over_racks() {
        let image = crate::managers::testkit::cluster(&[
            (1, Some("a")),
            (2, Some("b")),
            (3, Some("c")),
            (4, Some("a")),
            (5, Some("b")),
            (6, Some("c")),
        ]);
        let (after, _) = create(&image, &ManagerConfig::default(), vec![topic("t", 12, 3)]);
        for p in after.topic_by_name("t").unwrap().partitions.values() {
            let racks: BTreeSet<_> = p
                .replicas
                .iter()
                .map(|b| after.broker(*b).unwrap().rack.clone())
                .collect();
            assert_eq!(racks.len(), 3, "{p:?}");
        }
    }

    #[test]
    fn the_metadata_topic_name_is_reserved() {
        let image = brokers(3);
        let reserved = ControllerError::InvalidTopic(
            "Topic name __cluster_metadata is reserved for the metadata log.".into(),
        );
        assert_eq!(validate_topic_name(METADATA_TOPIC), Err(reserved.clone()));
        // Plain, internal, manual and validate-only creations are all refused.
        assert_eq!(
            create_one(&image, topic(METADATA_TOPIC, 1, 1)),
            Err(reserved.clone())
        );
        let mut internal = topic(METADATA_TOPIC, 1, 1);
        internal.internal = true;
        assert_eq!(create_one(&image, internal), Err(reserved.clone()));
        let mut by_hand = manual(&[(0, &[1, 2])]);
        by_hand.name = METADATA_TOPIC.into();
        assert_eq!(create_one(&image, by_hand), Err(reserved.clone()));
        let mut ctx = Ctx::new(3);
        let r = create_topics(
            &image,
            &ManagerConfig::default(),
            &TestValidator,
            &mut ctx,
            &CreateTopicsRequest {
                topics: vec![topic(METADATA_TOPIC, -1, -1), topic("ok", 1, 1)],
                validate_only: true,
            },
        );
        assert_eq!(r.response.topics[0].1, Err(reserved));
        assert!(r.response.topics[1].1.is_ok());
        // Names merely close to it stay legal.
        for name in [
            "__cluster_metadata2",
            "_cluster_metadata",
            "__cluster_metadat",
        ] {
            assert!(create_one(&image, topic(name, 1, 1)).is_ok(), "{name:?}");
        }
    }

    fn manual(assignments: &[(i32, &[BrokerId])]) -> CreatableTopic {
        let mut t = topic("m", -1, -1);
        t.assignments = assignments.iter().map(|(p, r)| (*p, r.to_vec())).collect();
        t
    }

    #[test]
    fn manual_assignments() {
        let image = brokers(3);
        let created = create_one(&image, manual(&[(0, &[3, 1]), (1, &[2, 3])])).unwrap();
        assert_eq!((created.num_partitions, created.replication_factor), (2, 2));
        let (after, _) = create(
            &image,
            &ManagerConfig::default(),
            vec![manual(&[(0, &[3, 1]), (1, &[2, 3])])],
        );
        let t = after.topic_by_name("m").unwrap();
        assert_eq!(t.partitions[&0].replicas, vec![3, 1]);
        assert_eq!(t.partitions[&0].leader, 3);

        let mut with_counts = manual(&[(0, &[1])]);
        with_counts.num_partitions = 1;
        assert!(matches!(
            create_one(&image, with_counts),
            Err(ControllerError::InvalidRequest(_))
        ));
        let mut with_rf = manual(&[(0, &[1])]);
        with_rf.replication_factor = 1;
        assert!(matches!(
            create_one(&image, with_rf),
            Err(ControllerError::InvalidRequest(_))
        ));
        let bad: [&[(i32, &[BrokerId])]; 5] = [
            &[(1, &[1])],
            &[(0, &[1]), (2, &[2])],
            &[(0, &[])],
            &[(0, &[1, 2]), (1, &[3])],
            &[(0, &[1, 1])],
        ];
        for a in bad {
            assert!(
                matches!(
                    create_one(&image, manual(a)),
                    Err(ControllerError::InvalidReplicaAssignment(_))
                ),
                "{a:?}"
            );
        }
        assert!(matches!(
            create_one(&image, manual(&[(0, &[1, 9])])),
            Err(ControllerError::InvalidReplicaAssignment(_))
        ));
        // A fenced first replica is registered but cannot lead: the next one leads.
        let fenced = fence(&image, 1);
        let (after, _) = create(
            &fenced,
            &ManagerConfig::default(),
            vec![manual(&[(0, &[1, 2])])],
        );
        let p = &after.topic_by_name("m").unwrap().partitions[&0];
        assert_eq!((p.leader, p.isr.clone()), (2, vec![2]));
        assert!(matches!(
            create_one(&fenced, manual(&[(0, &[1])])),
            Err(ControllerError::InvalidReplicaAssignment(_))
        ));
    }

    #[test]
    fn config_validation() {
        let image = brokers(1);
        let mut t = topic("c", 1, 1);
        t.configs = vec![("retention.ms".into(), Some("soon".into()))];
        assert_eq!(
            create_one(&image, t),
            Err(ControllerError::InvalidConfig(
                "Invalid value soon for configuration retention.ms".into()
            ))
        );
        let mut t = topic("c", 1, 1);
        t.configs = vec![("no.such.key".into(), Some("1".into()))];
        assert!(matches!(
            create_one(&image, t),
            Err(ControllerError::InvalidConfig(_))
        ));
        let mut t = topic("c", 1, 1);
        t.configs = vec![
            ("retention.ms".into(), Some("1".into())),
            ("retention.ms".into(), Some("2".into())),
        ];
        assert!(matches!(
            create_one(&image, t),
            Err(ControllerError::InvalidRequest(_))
        ));
    }

    fn delete(image: &MetadataImage, refs: Vec<TopicRef>) -> (MetadataImage, Vec<DeletedTopic>) {
        let r = delete_topics(image, &DeleteTopicsRequest { topics: refs });
        (replay(image, &r), r.response.topics)
    }

    #[test]
    fn delete_by_name_and_id() {
        let image = brokers(1);
        let mut internal = topic(CONSUMER_OFFSETS, 1, 1);
        internal.internal = true;
        let (image, created) = create(
            &image,
            &ManagerConfig::default(),
            vec![
                topic("a", 1, 1),
                topic("b", 2, 1),
                topic("c", 1, 1),
                internal,
            ],
        );
        let id_b = created[1].1.clone().unwrap().topic_id;
        let id_c = created[2].1.clone().unwrap().topic_id;
        let unknown = Uuid::from_u128(12345);
        let (after, results) = delete(
            &image,
            vec![
                TopicRef::Name("a".into()),
                TopicRef::Id(id_b),
                TopicRef::Name("zzz".into()),
                TopicRef::Id(unknown),
                TopicRef::Name(CONSUMER_OFFSETS.into()),
                TopicRef::Name("c".into()),
                TopicRef::Id(id_c),
            ],
        );
        assert_eq!(results[0].result, Ok(()));
        assert_eq!(results[0].name.as_deref(), Some("a"));
        assert!(results[0].topic_id.is_some());
        assert_eq!(results[1].result, Ok(()));
        assert_eq!(
            (results[1].name.as_deref(), results[1].topic_id),
            (Some("b"), Some(id_b))
        );
        assert!(matches!(
            results[2].result,
            Err(ControllerError::UnknownTopic(_))
        ));
        assert_eq!(
            (results[2].name.as_deref(), results[2].topic_id),
            (Some("zzz"), None)
        );
        assert!(matches!(
            results[3].result,
            Err(ControllerError::UnknownTopic(_))
        ));
        assert_eq!(
            (results[3].name.as_deref(), results[3].topic_id),
            (None, Some(unknown))
        );
        assert!(matches!(
            results[4].result,
            Err(ControllerError::InvalidRequest(_))
        ));
        // "c" named twice (by name and by id): both refused, topic kept.
        assert!(matches!(
            results[5].result,
            Err(ControllerError::InvalidRequest(_))
        ));
        assert!(matches!(
            results[6].result,
            Err(ControllerError::InvalidRequest(_))
        ));
        assert!(after.topic_by_name("a").is_none());
        assert!(after.topic_by_name("b").is_none());
        assert!(after.topic_by_name("c").is_some());
        assert!(after.topic_by_name(CONSUMER_OFFSETS).is_some());
    }

    fn grow(
        image: &MetadataImage,
        name: &str,
        count: i32,
        assignments: Option<Vec<Vec<BrokerId>>>,
        validate_only: bool,
    ) -> (MetadataImage, Result<(), ControllerError>) {
        let mut ctx = Ctx::new(9);
        let r = create_partitions(
            image,
            &ManagerConfig::default(),
            &mut ctx,
            &CreatePartitionsRequest {
                topics: vec![PartitionIncrease {
                    name: name.into(),
                    count,
                    assignments,
                }],
                validate_only,
            },
        );
        let after = replay(image, &r);
        let result = r.response.topics[0].1.clone();
        if result.is_err() || validate_only {
            assert!(r.records.is_empty());
        }
        (after, result)
    }

    #[test]
    fn create_partitions_places_with_the_topic_rf() {
        let image = brokers(4);
        let (image, _) = create(&image, &ManagerConfig::default(), vec![topic("t", 4, 2)]);
        let (after, result) = grow(&image, "t", 8, None, false);
        assert_eq!(result, Ok(()));
        let t = after.topic_by_name("t").unwrap();
        assert_eq!(t.partitions.len(), 8);
        let mut leaders = BTreeMap::<BrokerId, usize>::new();
        for p in t.partitions.values() {
            assert_eq!(p.replicas.len(), 2);
            *leaders.entry(p.leader).or_default() += 1;
        }
        assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![2; 4]);
        // validate_only writes nothing.
        let (same, result) = grow(&image, "t", 8, None, true);
        assert_eq!(result, Ok(()));
        assert_eq!(same, image);
    }

    #[test]
    fn create_partitions_errors() {
        let image = brokers(3);
        let (image, _) = create(&image, &ManagerConfig::default(), vec![topic("t", 3, 2)]);
        assert!(matches!(
            grow(&image, "nope", 4, None, false).1,
            Err(ControllerError::UnknownTopic(_))
        ));
        assert_eq!(
            grow(&image, "t", 2, None, false).1,
            Err(ControllerError::InvalidPartitions(
                "Topic currently has 3 partitions, which is higher than the requested 2.".into()
            ))
        );
        assert!(matches!(
            grow(&image, "t", 3, None, false).1,
            Err(ControllerError::InvalidPartitions(_))
        ));
        assert!(matches!(
            grow(&image, "t", MAX_PARTITIONS_PER_TOPIC + 1, None, false).1,
            Err(ControllerError::InvalidPartitions(_))
        ));
        for bad in [
            vec![vec![1, 2]],                         // one list for two new partitions
            vec![vec![1, 2], vec![1]],                // wrong RF
            vec![vec![1, 2], vec![3, 3]],             // duplicate
            vec![vec![1, 2], vec![3, 9]],             // unregistered
            vec![vec![1, 2], vec![2, 3], vec![3, 1]], // too many
        ] {
            assert!(
                matches!(
                    grow(&image, "t", 5, Some(bad.clone()), false).1,
                    Err(ControllerError::InvalidReplicaAssignment(_))
                ),
                "{bad:?}"
            );
        }
        let (after, result) = grow(&image, "t", 5, Some(vec![vec![3, 1], vec![2, 1]]), false);
        assert_eq!(result, Ok(()));
        assert_eq!(
            after.topic_by_name("t").unwrap().partitions[&4].replicas,
            vec![2, 1]
        );
        // The group coordinator maps groups to __consumer_offsets partitions by count.
        let mut offsets = topic(CONSUMER_OFFSETS, 3, 1);
        offsets.internal = true;
        let (image, created) = create(&image, &ManagerConfig::default(), vec![offsets]);
        assert!(created[0].1.is_ok());
        for assignments in [None, Some(vec![vec![1], vec![2]])] {
            for validate_only in [false, true] {
                let (after, result) = grow(
                    &image,
                    CONSUMER_OFFSETS,
                    5,
                    assignments.clone(),
                    validate_only,
                );
                assert_eq!(
                    result,
                    Err(ControllerError::InvalidRequest(
                        "The number of partitions of __consumer_offsets cannot be changed.".into()
                    ))
                );
                assert_eq!(after, image);
            }
        }
        // Too few unfenced brokers for the topic's RF.
        let fenced = fence(&fence(&image, 1), 2);
        assert!(matches!(
            grow(&fenced, "t", 4, None, false).1,
            Err(ControllerError::InvalidReplicationFactor(_))
        ));
    }
}
