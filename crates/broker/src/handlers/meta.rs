//! Metadata: brokers, topics, partitions, leaders; auto-creates topics when allowed.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};

use super::{admin, s};
use crate::metadata::{validate_topic_name, TopicMeta};
use crate::SharedBroker;

const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

pub fn handle(broker: &SharedBroker, req: MetadataRequest, version: i16) -> MetadataResponse {
    let node = broker.config.node_id;
    let mut resp =
        MetadataResponse::default().with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(node))
            .with_host(s(&broker.advertised.host))
            .with_port(broker.advertised.port as i32)]);
    if version >= 1 {
        resp.controller_id = BrokerId(node);
    }
    if version >= 2 {
        resp.cluster_id = Some(s(&broker.metadata.cluster_id()));
    }
    if (8..=10).contains(&version) {
        resp.cluster_authorized_operations = AUTHORIZED_OPERATIONS_OMITTED;
    }

    // v0: an empty list means all topics. v1+: null means all, empty means none.
    let all = match &req.topics {
        None => true,
        Some(t) => version == 0 && t.is_empty(),
    };
    let auto_create =
        broker.config.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);
    let topics: Vec<MetadataResponseTopic> = if all {
        broker
            .metadata
            .topics()
            .iter()
            .map(|t| topic_entry(broker, t, version))
            .collect()
    } else {
        req.topics
            .unwrap_or_default()
            .into_iter()
            .map(|rt| {
                let by_name = rt.name.as_ref().map(|n| n.0.to_string());
                let found = match &by_name {
                    Some(n) => broker.metadata.topic(n),
                    None => broker.metadata.topic_by_id(rt.topic_id),
                };
                match (found, by_name) {
                    (Some(t), _) => topic_entry(broker, &t, version),
                    (None, Some(name)) => {
                        if let Err(_msg) = validate_topic_name(&name) {
                            return error_topic(Some(&name), ResponseError::InvalidTopicException.code(), version);
                        }
                        if auto_create && crate::group::is_internal_topic(&name) {
                            return match crate::group::ensure_offsets_topic(broker) {
                                Ok(()) => match broker.metadata.topic(&name) {
                                    Some(t) => topic_entry(broker, &t, version),
                                    None => error_topic(Some(&name), ResponseError::LeaderNotAvailable.code(), version),
                                },
                                Err(e) => error_topic(Some(&name), e.code(), version),
                            };
                        }
                        if auto_create {
                            match admin::create_topic(broker, &name, -1, -1, Default::default(), false) {
                                Ok(t) => return topic_entry(broker, &t, version),
                                Err((code, msg)) => {
                                    tracing::warn!(topic = %name, code, error = %msg, "auto-create failed");
                                    // Created concurrently by someone else: report it.
                                    if let Some(t) = broker.metadata.topic(&name) {
                                        return topic_entry(broker, &t, version);
                                    }
                                    return error_topic(Some(&name), code, version);
                                }
                            }
                        }
                        error_topic(Some(&name), ResponseError::UnknownTopicOrPartition.code(), version)
                    }
                    (None, None) => {
                        let mut t = error_topic(None, ResponseError::UnknownTopicId.code(), version);
                        t.topic_id = rt.topic_id;
                        t
                    }
                }
            })
            .collect()
    };
    resp.topics = topics;
    resp
}

fn error_topic(name: Option<&str>, code: i16, version: i16) -> MetadataResponseTopic {
    let mut t = MetadataResponseTopic::default()
        .with_error_code(code)
        .with_name(name.map(|n| TopicName(s(n))));
    if version >= 8 {
        t.topic_authorized_operations = AUTHORIZED_OPERATIONS_OMITTED;
    }
    t
}

pub(crate) fn topic_entry(
    broker: &SharedBroker,
    t: &TopicMeta,
    version: i16,
) -> MetadataResponseTopic {
    let node = BrokerId(broker.config.node_id);
    let partitions = (0..t.partitions)
        .map(|p| {
            let mut e = MetadataResponsePartition::default()
                .with_partition_index(p)
                .with_leader_id(node)
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node]);
            if broker.replicas.get_by(&t.name, p).is_none() {
                e.error_code = ResponseError::LeaderNotAvailable.code();
            }
            if version >= 7 {
                e.leader_epoch = 0;
            }
            e
        })
        .collect();
    let mut out = MetadataResponseTopic::default()
        .with_name(Some(TopicName(s(&t.name))))
        .with_partitions(partitions);
    if version >= 1 {
        out.is_internal = crate::group::is_internal_topic(&t.name);
    }
    if version >= 10 {
        out.topic_id = t.id;
    }
    if version >= 8 {
        out.topic_authorized_operations = AUTHORIZED_OPERATIONS_OMITTED;
    }
    out
}
