//! Topic and cluster administration: CreateTopics, DeleteTopics, CreatePartitions,
//! DeleteRecords, DescribeCluster, InitProducerId.

use std::collections::{BTreeMap, HashSet};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{
    BrokerId, CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest,
    CreateTopicsResponse, DeleteRecordsRequest, DeleteRecordsResponse, DeleteTopicsRequest,
    DeleteTopicsResponse, DescribeClusterRequest, DescribeClusterResponse, InitProducerIdRequest,
    InitProducerIdResponse, ProducerId, TopicName,
};
use uuid::Uuid;

use super::s;
use crate::metadata::{validate_topic_name, TopicMeta};
use crate::replica::TopicPartition;
use crate::{error, now_ms, topic_config, SharedBroker};

/// Upper bound on partitions per topic, so one request cannot make the broker create millions
/// of directories.
pub const MAX_PARTITIONS_PER_TOPIC: i32 = 10_000;

/// Config sources (DescribeConfigs / CreateTopics `config_source`).
pub const SOURCE_DYNAMIC_TOPIC: i8 = 1;
pub const SOURCE_STATIC_BROKER: i8 = 4;
pub const SOURCE_DEFAULT: i8 = 5;

type AdminError = (i16, String);

/// Brokers that can hold a replica. On a single node that is this node alone; the controller
/// quorum replaces this with the registered, unfenced brokers.
const LIVE_BROKERS: i32 = 1;

/// How often each name appears in a request (duplicates fail with INVALID_REQUEST, as in Kafka).
fn name_counts<'a>(names: impl Iterator<Item = &'a str>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for n in names {
        *counts.entry(n.to_string()).or_default() += 1;
    }
    counts
}

fn validate_replication(rf: i16) -> Result<(), AdminError> {
    if rf <= 0 {
        return Err((
            ResponseError::InvalidReplicationFactor.code(),
            "Replication factor must be larger than 0.".into(),
        ));
    }
    let live = LIVE_BROKERS;
    if rf as i32 > live {
        return Err((
            ResponseError::InvalidReplicationFactor.code(),
            format!(
                "Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only {live} broker(s) are registered."
            ),
        ));
    }
    Ok(())
}

fn validate_assignment(broker: &SharedBroker, ids: &[BrokerId]) -> Result<(), AdminError> {
    let node = broker.config.node_id;
    let mut seen = HashSet::new();
    for id in ids {
        if !seen.insert(id.0) {
            return Err((
                ResponseError::InvalidReplicaAssignment.code(),
                format!("Duplicate broker id {} in replica assignment", id.0),
            ));
        }
        if id.0 != node {
            return Err((
                ResponseError::InvalidReplicaAssignment.code(),
                format!("Unknown broker id {} in replica assignment", id.0),
            ));
        }
    }
    if ids.is_empty() {
        return Err((
            ResponseError::InvalidReplicaAssignment.code(),
            "Empty replica assignment".into(),
        ));
    }
    Ok(())
}

fn validate_partition_count(n: i32) -> Result<(), AdminError> {
    if n <= 0 {
        return Err((
            ResponseError::InvalidPartitions.code(),
            "Number of partitions must be larger than 0.".into(),
        ));
    }
    if n > MAX_PARTITIONS_PER_TOPIC {
        return Err((
            ResponseError::InvalidPartitions.code(),
            format!("Number of partitions must not exceed {MAX_PARTITIONS_PER_TOPIC}."),
        ));
    }
    Ok(())
}

/// Creates a topic (or only validates the request). `-1` partitions or replication factor mean
/// the broker defaults.
pub fn create_topic(
    broker: &SharedBroker,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<TopicMeta, AdminError> {
    validate_topic_name(name).map_err(|m| (ResponseError::InvalidTopicException.code(), m))?;
    if crate::group::is_internal_topic(name) {
        // Its partition count decides which partition coordinates a group: only the broker
        // creates it, with offsets.topic.num.partitions.
        return Err((
            ResponseError::InvalidRequest.code(),
            format!("Topic {name} is an internal topic; the broker creates it"),
        ));
    }
    if broker.metadata.topic(name).is_some() {
        return Err((
            ResponseError::TopicAlreadyExists.code(),
            format!("Topic '{name}' already exists."),
        ));
    }
    let partitions = if partitions == -1 {
        broker.config.num_partitions
    } else {
        partitions
    };
    validate_partition_count(partitions)?;
    let rf = if replication_factor == -1 {
        broker.config.default_replication_factor
    } else {
        replication_factor
    };
    validate_replication(rf)?;
    for (k, v) in &configs {
        topic_config::validate_value(k, v).map_err(|m| {
            (
                ResponseError::InvalidConfig.code(),
                format!("Invalid value {v} for configuration {k}: {m}"),
            )
        })?;
    }
    if validate_only {
        return Ok(TopicMeta {
            name: name.to_string(),
            id: Uuid::nil(),
            partitions,
            replication_factor: rf,
            configs,
        });
    }
    let meta = broker
        .metadata
        .create_topic(name, partitions, rf, configs)
        .map_err(|e| (error::metadata_code(&e), e.to_string()))?;
    open_partitions(broker, &meta, 0..partitions)?;
    tracing::info!(topic = %name, topic_id = %meta.id, partitions, "created topic");
    Ok(meta)
}

fn open_partitions(
    broker: &SharedBroker,
    meta: &TopicMeta,
    range: std::ops::Range<i32>,
) -> Result<(), AdminError> {
    let lc = topic_config::log_config(&meta.configs, &broker.config.log_defaults);
    let now = now_ms();
    for p in range {
        broker
            .replicas
            .open_partition(TopicPartition::new(&meta.name, p), meta.id, lc.clone(), now)
            .map_err(|e| (error::storage_code(&e), e.to_string()))?;
    }
    Ok(())
}

pub fn create_topics(
    broker: &SharedBroker,
    req: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let counts = name_counts(req.topics.iter().map(|t| t.name.0.as_str()));
    let results = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let mut r = CreatableTopicResult::default().with_name(t.name.clone());
            let outcome = (|| {
                if counts.get(name.as_str()).copied().unwrap_or(0) > 1 {
                    return Err((
                        ResponseError::InvalidRequest.code(),
                        format!("Create topics request from client contains duplicate topic {name}"),
                    ));
                }
                let mut configs = BTreeMap::new();
                for c in &t.configs {
                    let Some(v) = &c.value else {
                        return Err((
                            ResponseError::InvalidConfig.code(),
                            format!("Null value not supported for topic config {}", c.name),
                        ));
                    };
                    configs.insert(c.name.to_string(), v.to_string());
                }
                let (partitions, rf) = if t.assignments.is_empty() {
                    (t.num_partitions, t.replication_factor)
                } else {
                    if t.num_partitions != -1 || t.replication_factor != -1 {
                        return Err((
                            ResponseError::InvalidRequest.code(),
                            "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.".into(),
                        ));
                    }
                    for a in &t.assignments {
                        validate_assignment(broker, &a.broker_ids)?;
                    }
                    let mut idx: Vec<i32> = t.assignments.iter().map(|a| a.partition_index).collect();
                    idx.sort_unstable();
                    if idx.iter().enumerate().any(|(i, p)| *p != i as i32) {
                        return Err((
                            ResponseError::InvalidReplicaAssignment.code(),
                            "Partitions in the replica assignment must be 0..N-1".into(),
                        ));
                    }
                    (t.assignments.len() as i32, t.assignments[0].broker_ids.len() as i16)
                };
                create_topic(broker, &name, partitions, rf, configs, req.validate_only)
            })();
            match outcome {
                Ok(meta) => {
                    if version >= 7 {
                        r.topic_id = meta.id;
                    }
                    if version >= 5 {
                        r.num_partitions = meta.partitions;
                        r.replication_factor = meta.replication_factor;
                        r.configs = Some(created_configs(broker, &meta));
                    }
                }
                Err((code, msg)) => {
                    r.error_code = code;
                    if version >= 1 {
                        r.error_message = Some(s(&msg));
                    }
                }
            }
            r
        })
        .collect();
    CreateTopicsResponse::default().with_topics(results)
}

fn created_configs(broker: &SharedBroker, meta: &TopicMeta) -> Vec<CreatableTopicConfigs> {
    topic_config::TOPIC_PROPS
        .iter()
        .map(|p| {
            let (value, source) = match meta.configs.get(p.name) {
                Some(v) => (Some(v.clone()), SOURCE_DYNAMIC_TOPIC),
                None => {
                    let from_broker = p
                        .broker_synonym
                        .is_some_and(|b| broker.config.explicit.contains_key(b));
                    (
                        topic_config::default_value(p.name, &broker.config.log_defaults),
                        if from_broker {
                            SOURCE_STATIC_BROKER
                        } else {
                            SOURCE_DEFAULT
                        },
                    )
                }
            };
            CreatableTopicConfigs::default()
                .with_name(s(p.name))
                .with_value(value.map(|v| s(&v)))
                .with_config_source(source)
        })
        .collect()
}

pub fn delete_topics(
    broker: &SharedBroker,
    req: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let targets: Vec<(Option<String>, Uuid)> = if version >= 6 {
        req.topics
            .into_iter()
            .map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id))
            .collect()
    } else {
        req.topic_names
            .into_iter()
            .map(|n| (Some(n.0.to_string()), Uuid::nil()))
            .collect()
    };
    let responses = targets
        .into_iter()
        .map(|(name, id)| {
            let meta = match &name {
                Some(n) => broker.metadata.topic(n),
                None => broker.metadata.topic_by_id(id),
            };
            let mut r = DeletableTopicResult::default();
            let wire_name = name
                .clone()
                .or_else(|| meta.as_ref().map(|m| m.name.clone()));
            r.name = wire_name.map(|n| TopicName(s(&n)));
            if version >= 6 {
                r.topic_id = meta.as_ref().map(|m| m.id).unwrap_or(id);
            }
            let result: Result<(), AdminError> = match meta {
                Some(m) if crate::group::is_internal_topic(&m.name) => Err((
                    ResponseError::InvalidRequest.code(),
                    format!(
                        "Topic {} is an internal topic and cannot be deleted",
                        m.name
                    ),
                )),
                _ if !broker.config.delete_topic_enable => Err((
                    ResponseError::TopicDeletionDisabled.code(),
                    "Topic deletion is disabled (delete.topic.enable=false)".into(),
                )),
                None if name.is_none() => Err((
                    ResponseError::UnknownTopicId.code(),
                    format!("Unknown topic id {id}"),
                )),
                None => Err((
                    ResponseError::UnknownTopicOrPartition.code(),
                    "This server does not host this topic-partition.".into(),
                )),
                Some(m) => broker
                    .metadata
                    .delete_topic(&m.name)
                    .map(|_| {
                        broker.replicas.remove_topic(&m.name);
                        tracing::info!(topic = %m.name, topic_id = %m.id, "deleted topic");
                    })
                    .map_err(|e| (error::metadata_code(&e), e.to_string())),
            };
            if let Err((code, msg)) = result {
                r.error_code = code;
                if version >= 5 {
                    r.error_message = Some(s(&msg));
                }
            }
            r
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}

pub fn create_partitions(
    broker: &SharedBroker,
    req: CreatePartitionsRequest,
    _version: i16,
) -> CreatePartitionsResponse {
    let counts = name_counts(req.topics.iter().map(|t| t.name.0.as_str()));
    let results = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let outcome: Result<(), AdminError> = (|| {
                if counts.get(name.as_str()).copied().unwrap_or(0) > 1 {
                    return Err((ResponseError::InvalidRequest.code(), format!("Duplicate topic {name} in request")));
                }
                let meta = broker.metadata.topic(&name).ok_or((
                    ResponseError::UnknownTopicOrPartition.code(),
                    format!("The topic '{name}' does not exist."),
                ))?;
                if t.count <= meta.partitions {
                    return Err((
                        ResponseError::InvalidPartitions.code(),
                        format!(
                            "Topic currently has {} partitions, which is higher than the requested {}.",
                            meta.partitions, t.count
                        ),
                    ));
                }
                validate_partition_count(t.count)?;
                if let Some(assignments) = &t.assignments {
                    if assignments.len() as i32 != t.count - meta.partitions {
                        return Err((
                            ResponseError::InvalidReplicaAssignment.code(),
                            format!(
                                "Increasing the number of partitions by {} but {} assignments provided.",
                                t.count - meta.partitions,
                                assignments.len()
                            ),
                        ));
                    }
                    for a in assignments {
                        validate_assignment(broker, &a.broker_ids)?;
                    }
                }
                if req.validate_only {
                    return Ok(());
                }
                let updated = broker
                    .metadata
                    .set_partition_count(&name, t.count)
                    .map_err(|e| (error::metadata_code(&e), e.to_string()))?;
                open_partitions(broker, &updated, meta.partitions..t.count)?;
                tracing::info!(topic = %name, from = meta.partitions, to = t.count, "added partitions");
                Ok(())
            })();
            let mut r = CreatePartitionsTopicResult::default().with_name(t.name);
            if let Err((code, msg)) = outcome {
                r.error_code = code;
                r.error_message = Some(s(&msg));
            }
            r
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}

pub fn delete_records(
    broker: &SharedBroker,
    req: DeleteRecordsRequest,
    _version: i16,
) -> DeleteRecordsResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let mut r = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(-1);
                    let Some(partition) = broker.replicas.get_by(&name, p.partition_index) else {
                        r.error_code = ResponseError::UnknownTopicOrPartition.code();
                        return r;
                    };
                    let hw = partition.high_watermark();
                    let target = if p.offset == -1 { hw } else { p.offset };
                    if target < 0 || target > hw {
                        r.error_code = ResponseError::OffsetOutOfRange.code();
                        return r;
                    }
                    match partition.with_log(|l| l.delete_records_before(target)) {
                        Ok(low) => r.low_watermark = low,
                        Err(e) => r.error_code = error::storage_code(&e),
                    }
                    r
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}

pub fn describe_cluster(
    broker: &SharedBroker,
    req: DescribeClusterRequest,
    version: i16,
) -> DescribeClusterResponse {
    let mut r = DescribeClusterResponse::default()
        .with_cluster_id(s(&broker.metadata.cluster_id()))
        .with_controller_id(BrokerId(broker.config.node_id))
        .with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(BrokerId(broker.config.node_id))
            .with_host(s(&broker.advertised.host))
            .with_port(broker.advertised.port as i32)])
        .with_cluster_authorized_operations(i32::MIN);
    if version >= 1 {
        // This node is both broker and controller, so either endpoint type gets the same answer.
        if !(1..=2).contains(&req.endpoint_type) {
            r.error_code = ResponseError::UnsupportedEndpointType.code();
            r.error_message = Some(s("endpoint type must be 1 (brokers) or 2 (controllers)"));
        }
        r.endpoint_type = req.endpoint_type;
    }
    r
}

pub fn init_producer_id(
    broker: &SharedBroker,
    req: InitProducerIdRequest,
    _version: i16,
) -> InitProducerIdResponse {
    let mut r = InitProducerIdResponse::default();
    if req
        .transactional_id
        .as_ref()
        .is_some_and(|t| !t.0.is_empty())
    {
        r.error_code = ResponseError::InvalidRequest.code();
        return r;
    }
    // KIP-360: an idempotent producer may ask to bump its epoch after an error.
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        r.producer_id = req.producer_id;
        r.producer_epoch = req.producer_epoch + 1;
        return r;
    }
    match broker.metadata.allocate_producer_id() {
        Ok(id) => {
            r.producer_id = ProducerId(id);
            r.producer_epoch = 0;
        }
        Err(e) => r.error_code = error::metadata_code(&e),
    }
    r
}
