//! Shared helpers for the managers' unit tests.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::{ControllerResult, TopicConfigValidator};
use crate::image::{MetadataImage, NO_LEADER};
use crate::records::{
    BrokerEndpoint, BrokerId, PartitionRecord, Record, RegisterBrokerRecord, TopicRecord,
    UnfenceBrokerRecord,
};

/// The incarnation the test clusters register broker `id` with.
pub(crate) fn inc(id: BrokerId) -> Uuid {
    Uuid::from_u128(1000 + id as u128)
}

pub(crate) fn endpoint() -> BrokerEndpoint {
    BrokerEndpoint {
        name: "PLAINTEXT".into(),
        host: "127.0.0.1".into(),
        port: 9092,
    }
}

/// Replays `records` onto a copy of `image`, failing the test on any ApplyError.
pub(crate) fn apply_all(image: &MetadataImage, records: &[Record]) -> MetadataImage {
    let mut next = image.clone();
    for (i, record) in records.iter().enumerate() {
        if let Err(e) = next.apply(record) {
            panic!("record {i} {record:?} does not apply: {e}\nall records: {records:#?}");
        }
    }
    next
}

/// Replays a manager's records (they must apply cleanly) and checks the partition invariants
/// on the result.
pub(crate) fn replay<T>(image: &MetadataImage, result: &ControllerResult<T>) -> MetadataImage {
    let next = apply_all(image, &result.records);
    check_invariants(&next);
    next
}

/// Every leader is an active (unfenced, not shutting down), registered ISR member; ISRs are non-empty subsets of replicas.
pub(crate) fn check_invariants(image: &MetadataImage) {
    for t in image.topics() {
        for (p, reg) in &t.partitions {
            let replicas: BTreeSet<_> = reg.replicas.iter().collect();
            assert!(
                reg.isr.iter().all(|b| replicas.contains(b)),
                "{}-{p}: ISR {:?} not within replicas {:?}",
                t.name,
                reg.isr,
                reg.replicas
            );
            assert!(!reg.isr.is_empty(), "{}-{p}: empty ISR", t.name);
            if reg.leader != NO_LEADER {
                assert!(
                    reg.isr.contains(&reg.leader),
                    "{}-{p}: leader not in ISR",
                    t.name
                );
                let b = image
                    .broker(reg.leader)
                    .unwrap_or_else(|| panic!("{}-{p}: unregistered leader", t.name));
                assert!(!b.fenced, "{}-{p}: fenced leader {}", t.name, reg.leader);
                assert!(
                    !b.in_controlled_shutdown,
                    "{}-{p}: leader {} is in controlled shutdown",
                    t.name, reg.leader
                );
            }
        }
    }
}

/// Brokers registered and unfenced, with the given racks.
pub(crate) fn cluster(brokers: &[(BrokerId, Option<&str>)]) -> MetadataImage {
    let mut records = Vec::new();
    for (id, rack) in brokers {
        records.push(Record::RegisterBroker(RegisterBrokerRecord {
            broker_id: *id,
            incarnation_id: inc(*id),
            endpoints: vec![endpoint()],
            rack: rack.map(String::from),
        }));
        records.push(Record::UnfenceBroker(UnfenceBrokerRecord {
            broker_id: *id,
            incarnation_id: inc(*id),
        }));
    }
    apply_all(&MetadataImage::new(), &records)
}

/// `n` rackless unfenced brokers with ids `1..=n`.
pub(crate) fn brokers(n: BrokerId) -> MetadataImage {
    cluster(&(1..=n).map(|id| (id, None)).collect::<Vec<_>>())
}

/// Adds a topic whose partition `i` has replicas `assignment[i]`, ISR = replicas and the first
/// replica as leader.
pub(crate) fn with_topic(
    image: &MetadataImage,
    name: &str,
    id: u128,
    assignment: &[&[BrokerId]],
) -> MetadataImage {
    let topic_id = Uuid::from_u128(id);
    let mut records = vec![Record::Topic(TopicRecord {
        name: name.into(),
        topic_id,
    })];
    for (i, replicas) in assignment.iter().enumerate() {
        records.push(Record::Partition(PartitionRecord {
            topic_id,
            partition: i as i32,
            replicas: replicas.to_vec(),
            isr: replicas.to_vec(),
            leader: replicas[0],
            leader_epoch: 0,
            partition_epoch: 0,
        }));
    }
    apply_all(image, &records)
}

/// Knows `retention.ms` (a long), `cleanup.policy` (a list of delete/compact),
/// `unclean.leader.election.enable` (a boolean) and `min.insync.replicas` (an int >= 1).
pub(crate) struct TestValidator;

impl TopicConfigValidator for TestValidator {
    fn validate(&self, name: &str, value: &str) -> Result<(), String> {
        let bad = || Err(format!("Invalid value {value} for configuration {name}"));
        match name {
            "retention.ms" => value.parse::<i64>().map(|_| ()).or_else(|_| bad()),
            "min.insync.replicas" => match value.parse::<i32>() {
                Ok(v) if v >= 1 => Ok(()),
                _ => bad(),
            },
            "unclean.leader.election.enable" => match value {
                "true" | "false" => Ok(()),
                _ => bad(),
            },
            "cleanup.policy" => {
                if value
                    .split(',')
                    .filter(|v| !v.is_empty())
                    .all(|v| v == "delete" || v == "compact")
                {
                    Ok(())
                } else {
                    bad()
                }
            }
            _ => Err(format!("Unknown topic config name: {name}")),
        }
    }

    fn is_list(&self, name: &str) -> bool {
        name == "cleanup.policy"
    }
}
