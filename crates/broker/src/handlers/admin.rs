//! Topic and cluster administration: CreateTopics, DeleteTopics, CreatePartitions,
//! DeleteRecords, DescribeCluster, InitProducerId.
//!
//! Topic changes are decided by the active controller: a request passes the broker-side
//! guards (duplicates, internal topics, `delete.topic.enable`, request shape), is translated
//! into a controller [`AdminRequest`], and is answered once this broker has applied the
//! committed change, so the client's next request here sees it. The controller's refusals
//! become Kafka codes in [`crate::error`].

use std::collections::BTreeMap;
use std::time::Duration;

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
    InitProducerIdResponse, ProducerId, ResponseKind, TopicName,
};
use runnel_controller::api::{
    self, AdminRequest, AdminResponse, CreatableTopic, PartitionIncrease, TopicRef,
};
use runnel_controller::ControllerError;
use uuid::Uuid;

use super::AdminServices;
use super::{admin_timeout, client_endpoint, leader_partition, live_brokers, s, Reply};
use crate::auth::authorizer::CLUSTER_OPS;
use crate::auth::Authorizer;
use crate::context::RequestContext;
use crate::error::KafkaError;
use crate::fence::Fence;
use crate::metadata::MetadataView;
use crate::replica::ReplicaManager;
use crate::topics::validate_topic_name;
use crate::{error, topic_config};
use runnel_security::acl::AclOperation::{
    Alter, Create, Delete, Describe, DescribeConfigs, IdempotentWrite, Write,
};
use runnel_security::acl::ResourceType::{Cluster, Topic};
use runnel_security::acl::CLUSTER_NAME;

/// Upper bound on partitions per topic, so one request cannot make the broker create millions
/// of directories.
pub const MAX_PARTITIONS_PER_TOPIC: i32 = 10_000;

/// Config sources (DescribeConfigs / CreateTopics `config_source`).
pub const SOURCE_DYNAMIC_TOPIC: i8 = 1;
pub const SOURCE_STATIC_BROKER: i8 = 4;
pub const SOURCE_DEFAULT: i8 = 5;

/// How long InitProducerId waits for a new producer-id block.
const PRODUCER_ID_TIMEOUT: Duration = Duration::from_secs(10);

/// How often each name appears in a request (duplicates fail with INVALID_REQUEST, as in Kafka).
fn name_counts<'a>(names: impl Iterator<Item = &'a str>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for n in names {
        *counts.entry(n.to_string()).or_default() += 1;
    }
    counts
}

fn validate_partition_count(n: i32) -> Result<(), KafkaError> {
    if n <= 0 {
        return Err(KafkaError::new(
            ResponseError::InvalidPartitions,
            "Number of partitions must be larger than 0.",
        ));
    }
    if n > MAX_PARTITIONS_PER_TOPIC {
        return Err(KafkaError::new(
            ResponseError::InvalidPartitions,
            format!("Number of partitions must not exceed {MAX_PARTITIONS_PER_TOPIC}."),
        ));
    }
    Ok(())
}

/// Sends the items that passed the broker's own checks to the active controller in one request
/// and returns every item's outcome in request order: an item refused here keeps its error, the
/// others get the controller's answers in order. `answers` takes the controller's per-item
/// results out of its response (`None`: a response to another request, a bug).
pub(super) async fn forward_checked<S: Clone, T: Clone>(
    svc: &AdminServices,
    checked: &[Result<S, KafkaError>],
    timeout: Duration,
    request: impl FnOnce(Vec<S>) -> AdminRequest,
    answers: impl FnOnce(AdminResponse) -> Option<Vec<Result<T, ControllerError>>>,
) -> Vec<Result<T, KafkaError>> {
    let to_send: Vec<S> = checked
        .iter()
        .filter_map(|c| c.as_ref().ok().cloned())
        .collect();
    let n = to_send.len();
    let mut from_controller: Vec<Result<T, KafkaError>> = if n == 0 {
        Vec::new()
    } else {
        match svc.admin(request(to_send), timeout).await {
            Ok(resp) => match answers(resp) {
                Some(results) if results.len() == n => results
                    .into_iter()
                    .map(|r| r.map_err(|e| KafkaError::from(&e)))
                    .collect(),
                other => {
                    tracing::error!(
                        sent = n,
                        answered = other.as_ref().map(Vec::len),
                        "controller answered with another request's response"
                    );
                    let e = KafkaError::new(
                        ResponseError::UnknownServerError,
                        "unexpected controller response".to_string(),
                    );
                    vec![Err(e); n]
                }
            },
            Err(e) => vec![Err(KafkaError::from(&e)); n],
        }
    };
    from_controller.reverse();
    checked
        .iter()
        .map(|c| match c {
            Err(e) => Err(e.clone()),
            // Exactly one answer per item sent, checked above.
            Ok(_) => from_controller.pop().unwrap_or_else(|| {
                Err(KafkaError::new(
                    ResponseError::UnknownServerError,
                    "missing controller answer",
                ))
            }),
        })
        .collect()
}

/// Broker-side checks of one CreateTopics entry, and its translation for the controller.
fn creatable(
    t: &kafka_protocol::messages::create_topics_request::CreatableTopic,
    duplicate: bool,
) -> Result<CreatableTopic, KafkaError> {
    let name = t.name.0.to_string();
    if duplicate {
        return Err(KafkaError::new(
            ResponseError::InvalidRequest,
            format!("Create topics request from client contains duplicate topic {name}"),
        ));
    }
    validate_topic_name(&name)
        .map_err(|m| KafkaError::new(ResponseError::InvalidTopicException, m))?;
    if crate::coordinators::is_internal_topic(&name) {
        // Its partition count decides which partition coordinates a group: only the broker
        // creates it, with offsets.topic.num.partitions.
        return Err(KafkaError::new(
            ResponseError::InvalidRequest,
            format!("Topic {name} is an internal topic; the broker creates it"),
        ));
    }
    let mut configs = Vec::with_capacity(t.configs.len());
    for c in &t.configs {
        let Some(v) = &c.value else {
            return Err(KafkaError::new(
                ResponseError::InvalidConfig,
                format!("Null value not supported for topic config {}", c.name),
            ));
        };
        configs.push((c.name.to_string(), Some(v.to_string())));
    }
    let mut assignments = BTreeMap::new();
    if t.assignments.is_empty() {
        if t.num_partitions != -1 {
            validate_partition_count(t.num_partitions)?;
        }
    } else {
        if t.num_partitions != -1 || t.replication_factor != -1 {
            return Err(KafkaError::new(ResponseError::InvalidRequest, "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time."));
        }
        validate_partition_count(t.assignments.len() as i32)?;
        for a in &t.assignments {
            let ids: Vec<i32> = a.broker_ids.iter().map(|b| b.0).collect();
            if assignments.insert(a.partition_index, ids).is_some() {
                return Err(KafkaError::new(
                    ResponseError::InvalidReplicaAssignment,
                    format!(
                        "Duplicate partition {} in the replica assignment",
                        a.partition_index
                    ),
                ));
            }
        }
        if assignments.keys().enumerate().any(|(i, p)| *p != i as i32) {
            return Err(KafkaError::new(
                ResponseError::InvalidReplicaAssignment,
                "Partitions in the replica assignment must be 0..N-1",
            ));
        }
    }
    Ok(CreatableTopic {
        name,
        num_partitions: t.num_partitions,
        replication_factor: t.replication_factor,
        assignments,
        configs,
        internal: false,
    })
}

/// Kafka's answer for a topic the client may not act on.
fn topic_denied(name: &str) -> KafkaError {
    KafkaError::new(
        ResponseError::TopicAuthorizationFailed,
        format!("Not authorized to access topics: [{name}]"),
    )
}

pub fn create_topics(
    svc: &AdminServices,
    ctx: &RequestContext,
    req: CreateTopicsRequest,
    version: i16,
) -> Reply {
    let counts = name_counts(req.topics.iter().map(|t| t.name.0.as_str()));
    let image = svc.image();
    let authz = &svc.authorizer;
    // Kafka: Create on the cluster allows every topic; otherwise Create on each topic.
    let cluster_create = authz.allows_quietly(&image.image, ctx, Create, Cluster, CLUSTER_NAME);
    let mut may_describe_configs = Vec::with_capacity(req.topics.len());
    let mut checked: Vec<Result<CreatableTopic, KafkaError>> = req
        .topics
        .iter()
        .map(|t| {
            let name = t.name.0.as_str();
            may_describe_configs.push(authz.allows_quietly(
                &image.image,
                ctx,
                DescribeConfigs,
                Topic,
                name,
            ));
            if !cluster_create && !authz.authorize(&image.image, ctx, Create, Topic, name) {
                return Err(topic_denied(name));
            }
            creatable(t, counts.get(name).copied().unwrap_or(0) > 1)
        })
        .collect();
    let default_partitions = svc.config.num_partitions;
    let throttle_ms = charge_mutations(
        svc,
        &image.image,
        ctx,
        &mut checked,
        |t| {
            if !t.assignments.is_empty() {
                t.assignments.len() as f64
            } else if t.num_partitions > 0 {
                f64::from(t.num_partitions)
            } else {
                f64::from(default_partitions)
            }
        },
        version >= 6,
        req.validate_only,
    );
    let svc = svc.clone();
    let timeout = admin_timeout(req.timeout_ms);
    Reply::Later(Box::pin(async move {
        let validate_only = req.validate_only;
        let outcomes = forward_checked(
            &svc,
            &checked,
            timeout,
            |topics| {
                AdminRequest::CreateTopics(api::CreateTopicsRequest {
                    topics,
                    validate_only,
                })
            },
            |resp| match resp {
                AdminResponse::CreateTopics(r) => {
                    Some(r.topics.into_iter().map(|(_, res)| res).collect())
                }
                _ => None,
            },
        )
        .await;
        let results = req
            .topics
            .into_iter()
            .zip(outcomes)
            .zip(may_describe_configs)
            .map(|((t, outcome), may_describe_configs)| {
                let mut r = CreatableTopicResult::default().with_name(t.name.clone());
                match outcome {
                    Ok(created) => {
                        tracing::info!(topic = %t.name.0, topic_id = %created.topic_id, partitions = created.num_partitions, replication_factor = created.replication_factor, validate_only = req.validate_only, "created topic");
                        if version >= 7 {
                            r.topic_id = created.topic_id;
                        }
                        if version >= 5 {
                            if may_describe_configs {
                                r.num_partitions = created.num_partitions;
                                r.replication_factor = created.replication_factor;
                                r.configs = Some(created_configs(&svc, &created.configs));
                            } else {
                                // Kafka hides the configs of a topic the client may not
                                // describe the configs of.
                                r.num_partitions = -1;
                                r.replication_factor = -1;
                                r.topic_config_error_code =
                                    ResponseError::TopicAuthorizationFailed.code();
                            }
                        }
                    }
                    Err(e) => {
                        r.error_code = e.code();
                        if version >= 1 {
                            r.error_message = Some(s(&e.message));
                        }
                    }
                }
                r
            })
            .collect();
        ResponseKind::CreateTopics(
            CreateTopicsResponse::default()
                .with_topics(results)
                .with_throttle_time_ms(throttle_ms),
        )
    }))
}

fn created_configs(
    svc: &AdminServices,
    overrides: &BTreeMap<String, String>,
) -> Vec<CreatableTopicConfigs> {
    topic_config::TOPIC_PROPS
        .iter()
        .map(|p| {
            let (value, source) = match overrides.get(p.name) {
                Some(v) => (Some(v.clone()), SOURCE_DYNAMIC_TOPIC),
                None => {
                    let from_broker = p
                        .broker_synonym
                        .is_some_and(|b| svc.config.explicit.contains_key(b));
                    (
                        topic_config::default_value(p.name, &svc.config.log_defaults),
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
    svc: &AdminServices,
    ctx: &RequestContext,
    req: DeleteTopicsRequest,
    version: i16,
) -> Reply {
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
    let image = svc.image();
    // (wire name, wire id, broker-side verdict: Some(ref) to send, or the error).
    let mut checked: Vec<(Option<String>, Uuid, Result<TopicRef, KafkaError>)> = targets
        .into_iter()
        .map(|(name, id)| {
            let found = match &name {
                Some(n) => image.image.topic_by_name(n),
                None => image.image.topic(&id),
            }
            .filter(|t| !super::is_reserved_topic(&t.name));
            let wire_name = name.clone().or_else(|| found.map(|t| t.name.clone()));
            let wire_id = found.map(|t| t.topic_id).unwrap_or(id);
            let authz = &svc.authorizer;
            let auth_name = wire_name.clone().unwrap_or_default();
            let describable = wire_name.is_none()
                || authz.authorize(&image.image, ctx, Describe, Topic, &auth_name);
            let verdict = match found {
                _ if !describable => Err(topic_denied(&auth_name)),
                Some(t) if !authz.authorize(&image.image, ctx, Delete, Topic, &t.name) => {
                    Err(topic_denied(&t.name))
                }
                Some(t) if crate::coordinators::is_internal_topic(&t.name) => Err(KafkaError::new(
                    ResponseError::InvalidRequest,
                    format!(
                        "Topic {} is an internal topic and cannot be deleted",
                        t.name
                    ),
                )),
                _ if !svc.config.delete_topic_enable => Err(KafkaError::new(
                    ResponseError::TopicDeletionDisabled,
                    "Topic deletion is disabled (delete.topic.enable=false)",
                )),
                None if name.is_none() => Err(KafkaError::new(
                    ResponseError::UnknownTopicId,
                    format!("Unknown topic id {id}"),
                )),
                None => Err(KafkaError::new(
                    ResponseError::UnknownTopicOrPartition,
                    "This server does not host this topic-partition.",
                )),
                Some(t) => Ok(match &name {
                    Some(n) => TopicRef::Name(n.clone()),
                    None => TopicRef::Id(t.topic_id),
                }),
            };
            (wire_name, wire_id, verdict)
        })
        .collect();
    let throttle_ms = {
        let mut verdicts: Vec<Result<TopicRef, KafkaError>> =
            checked.iter().map(|(_, _, v)| v.clone()).collect();
        let throttle_ms = charge_mutations(
            svc,
            &image.image,
            ctx,
            &mut verdicts,
            |t| {
                let topic = match t {
                    TopicRef::Name(n) => image.image.topic_by_name(n),
                    TopicRef::Id(id) => image.image.topic(id),
                };
                topic.map_or(0.0, |t| t.partitions.len() as f64)
            },
            version >= 5,
            false,
        );
        for ((_, _, v), charged) in checked.iter_mut().zip(verdicts) {
            *v = charged;
        }
        throttle_ms
    };
    let svc = svc.clone();
    let timeout = admin_timeout(req.timeout_ms);
    Reply::Later(Box::pin(async move {
        let (names, verdicts): (Vec<_>, Vec<_>) = checked
            .into_iter()
            .map(|(name, id, verdict)| ((name, id), verdict))
            .unzip();
        let outcomes = forward_checked(
            &svc,
            &verdicts,
            timeout,
            |topics| AdminRequest::DeleteTopics(api::DeleteTopicsRequest { topics }),
            |resp| match resp {
                AdminResponse::DeleteTopics(r) => Some(
                    r.topics
                        .into_iter()
                        .map(|d| {
                            if d.result.is_ok() {
                                tracing::info!(topic = ?d.name, topic_id = ?d.topic_id, "deleted topic");
                            }
                            d.result
                        })
                        .collect(),
                ),
                _ => None,
            },
        )
        .await;
        let responses = names
            .into_iter()
            .zip(outcomes)
            .map(|((name, id), result)| {
                let mut r = DeletableTopicResult::default();
                r.name = name.map(|n| TopicName(s(&n)));
                if version >= 6 {
                    r.topic_id = id;
                }
                if let Err(e) = result {
                    r.error_code = e.code();
                    if version >= 5 {
                        r.error_message = Some(s(&e.message));
                    }
                }
                r
            })
            .collect();
        ResponseKind::DeleteTopics(
            DeleteTopicsResponse::default()
                .with_responses(responses)
                .with_throttle_time_ms(throttle_ms),
        )
    }))
}

pub fn create_partitions(
    svc: &AdminServices,
    ctx: &RequestContext,
    req: CreatePartitionsRequest,
    version: i16,
) -> Reply {
    let counts = name_counts(req.topics.iter().map(|t| t.name.0.as_str()));
    let image = svc.image();
    let mut checked: Vec<Result<PartitionIncrease, KafkaError>> = req
        .topics
        .iter()
        .map(|t| {
            let name = t.name.0.to_string();
            if counts.get(name.as_str()).copied().unwrap_or(0) > 1 {
                return Err(KafkaError::new(
                    ResponseError::InvalidRequest,
                    format!("Duplicate topic {name} in request"),
                ));
            }
            if !svc
                .authorizer
                .authorize(&image.image, ctx, Alter, Topic, &name)
            {
                return Err(topic_denied(&name));
            }
            if super::is_reserved_topic(&name) {
                return Err(KafkaError::new(
                    ResponseError::UnknownTopicOrPartition,
                    format!("Topic {name} does not exist"),
                ));
            }
            if crate::coordinators::is_internal_topic(&name) {
                // Its partition count decides which partition coordinates each group: adding
                // partitions would move groups away from their committed offsets.
                return Err(KafkaError::new(
                    ResponseError::InvalidRequest,
                    format!(
                        "Topic {name} is an internal topic; its partition count cannot be changed"
                    ),
                ));
            }
            validate_partition_count(t.count)?;
            Ok(PartitionIncrease {
                name,
                count: t.count,
                assignments: t.assignments.as_ref().map(|a| {
                    a.iter()
                        .map(|p| p.broker_ids.iter().map(|b| b.0).collect())
                        .collect()
                }),
            })
        })
        .collect();
    let throttle_ms = charge_mutations(
        svc,
        &image.image,
        ctx,
        &mut checked,
        |p| {
            let current = image
                .image
                .topic_by_name(&p.name)
                .map_or(0, |t| t.partitions.len() as i64);
            (i64::from(p.count) - current).max(0) as f64
        },
        version >= 3,
        req.validate_only,
    );
    let svc = svc.clone();
    let timeout = admin_timeout(req.timeout_ms);
    Reply::Later(Box::pin(async move {
        let validate_only = req.validate_only;
        let outcomes = forward_checked(
            &svc,
            &checked,
            timeout,
            |topics| {
                AdminRequest::CreatePartitions(api::CreatePartitionsRequest {
                    topics,
                    validate_only,
                })
            },
            |resp| match resp {
                AdminResponse::CreatePartitions(r) => Some(
                    r.topics
                        .into_iter()
                        .map(|(name, res)| {
                            if res.is_ok() {
                                tracing::info!(topic = %name, validate_only, "added partitions");
                            }
                            res
                        })
                        .collect(),
                ),
                _ => None,
            },
        )
        .await;
        let results = req
            .topics
            .into_iter()
            .zip(outcomes)
            .map(|(t, outcome)| {
                let mut r = CreatePartitionsTopicResult::default().with_name(t.name);
                if let Err(e) = outcome {
                    r.error_code = e.code();
                    r.error_message = Some(s(&e.message));
                }
                r
            })
            .collect();
        ResponseKind::CreatePartitions(
            CreatePartitionsResponse::default()
                .with_results(results)
                .with_throttle_time_ms(throttle_ms),
        )
    }))
}

/// Charges the partitions each accepted change creates or deletes to the client's controller
/// mutation quota (KIP-599), in request order, and answers the throttle time for the response.
/// With `strict` (the request versions that know THROTTLING_QUOTA_EXCEEDED) a change that
/// comes while the quota is already exceeded is refused with it and charges nothing; older
/// versions are accepted whole and only throttled. Validate-only requests are not charged.
fn charge_mutations<T>(
    svc: &AdminServices,
    image: &runnel_controller::MetadataImage,
    ctx: &RequestContext,
    checked: &mut [Result<T, KafkaError>],
    partitions: impl Fn(&T) -> f64,
    strict: bool,
    validate_only: bool,
) -> i32 {
    use crate::quota::QuotaKind::ControllerMutation;
    if validate_only || svc.quotas.applied(ControllerMutation, image, ctx).is_none() {
        return 0;
    }
    let now = crate::clock::now_ms().max(0) as u64;
    for entry in checked.iter_mut() {
        let Ok(change) = entry else { continue };
        if strict && svc.quotas.throttle(ControllerMutation, image, ctx, now) > 0 {
            *entry = Err(KafkaError::new(
                ResponseError::ThrottlingQuotaExceeded,
                "The throttling quota has been exceeded.",
            ));
            continue;
        }
        let n = partitions(change);
        svc.quotas.record(ControllerMutation, image, ctx, n, now);
    }
    svc.quotas
        .throttle(ControllerMutation, image, ctx, now)
        .min(i32::MAX as u64) as i32
}

pub fn delete_records(
    partitions: &ReplicaManager,
    fence: &Fence,
    metadata: &MetadataView,
    authorizer: &Authorizer,
    ctx: &RequestContext,
    req: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let image = metadata.serving_image();
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let allowed = authorizer.authorize(&image.image, ctx, Delete, Topic, &name);
            let results = t
                .partitions
                .into_iter()
                .map(|p| {
                    let mut r = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(-1);
                    if !allowed {
                        r.error_code = ResponseError::TopicAuthorizationFailed.code();
                        return r;
                    }
                    // As Kafka: the records of an internal topic are never deleted by request.
                    if crate::coordinators::is_internal_topic(&name) {
                        r.error_code = ResponseError::InvalidTopicException.code();
                        return r;
                    }
                    let partition = match leader_partition(
                        partitions,
                        fence,
                        &image.image,
                        &name,
                        p.partition_index,
                        -1,
                    ) {
                        Ok(p) => p,
                        Err(e) => {
                            r.error_code = e.code();
                            return r;
                        }
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
                .with_partitions(results)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}

const ENDPOINT_TYPE_BROKERS: i8 = 1;
const ENDPOINT_TYPE_CONTROLLERS: i8 = 2;

pub fn describe_cluster(
    svc: &AdminServices,
    ctx: &RequestContext,
    req: DescribeClusterRequest,
    version: i16,
) -> DescribeClusterResponse {
    let image = svc.image();
    let endpoint_type = if version >= 1 {
        req.endpoint_type
    } else {
        ENDPOINT_TYPE_BROKERS
    };
    // Controllers share their process (and client listener) with a broker; the controllers
    // are the brokers that are voters of the metadata quorum.
    let voters: Vec<i32> = if svc.config.voters.is_empty() {
        vec![svc.config.node_id]
    } else {
        svc.config.voters.keys().copied().collect()
    };
    let brokers = live_brokers(&image.image)
        .filter(|b| endpoint_type != ENDPOINT_TYPE_CONTROLLERS || voters.contains(&b.broker_id))
        .filter_map(|b| {
            let e = client_endpoint(b, ctx.listener())?;
            Some(
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(b.broker_id))
                    .with_host(s(&e.host))
                    .with_port(e.port as i32)
                    .with_rack(b.rack.as_deref().map(s)),
            )
        })
        .collect();
    let mut r = DescribeClusterResponse::default()
        .with_cluster_id(s(&super::cluster_id(&image.image)))
        .with_controller_id(BrokerId(svc.metadata.active_controller()))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(if req.include_cluster_authorized_operations {
            svc.authorizer.authorized_operations(
                &image.image,
                ctx,
                Cluster,
                CLUSTER_NAME,
                CLUSTER_OPS,
            )
        } else {
            i32::MIN
        });
    if version >= 1 {
        if !(ENDPOINT_TYPE_BROKERS..=ENDPOINT_TYPE_CONTROLLERS).contains(&req.endpoint_type) {
            r.error_code = ResponseError::UnsupportedEndpointType.code();
            r.error_message = Some(s("endpoint type must be 1 (brokers) or 2 (controllers)"));
        }
        r.endpoint_type = req.endpoint_type;
    }
    r
}

pub fn init_producer_id(
    svc: &AdminServices,
    ctx: &RequestContext,
    req: InitProducerIdRequest,
    _version: i16,
) -> Reply {
    let mut r = InitProducerIdResponse::default();
    let image = svc.image();
    let authz = &svc.authorizer;
    // An idempotent producer needs IdempotentWrite on the cluster, or Write on some topic
    // (Kafka 3.0+, KIP-679).
    if !authz.allows_quietly(&image.image, ctx, IdempotentWrite, Cluster, CLUSTER_NAME)
        && !authz.authorize_any(&image.image, ctx, Write, Topic)
    {
        tracing::info!(
            target: crate::auth::authorizer::LOG_TARGET,
            principal = %ctx.principal(),
            host = %ctx.host(),
            operation = "IdempotentWrite",
            api = "InitProducerId",
            "denied: no IdempotentWrite on the cluster and no Write on any topic"
        );
        r.producer_id = ProducerId(-1);
        r.producer_epoch = -1;
        r.error_code = ResponseError::ClusterAuthorizationFailed.code();
        return Reply::Now(ResponseKind::InitProducerId(r));
    }
    // KIP-360: an idempotent producer may ask to bump its epoch after an error.
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        r.producer_id = req.producer_id;
        r.producer_epoch = req.producer_epoch + 1;
        return Reply::Now(ResponseKind::InitProducerId(r));
    }
    let svc = svc.clone();
    Reply::Later(Box::pin(async move {
        match svc.controller.next_producer_id(PRODUCER_ID_TIMEOUT).await {
            Ok(id) => {
                r.producer_id = ProducerId(id);
                r.producer_epoch = 0;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot allocate a producer id");
                r.producer_id = ProducerId(-1);
                r.producer_epoch = -1;
                r.error_code = error::controller_error(&e).code();
            }
        }
        ResponseKind::InitProducerId(r)
    }))
}
