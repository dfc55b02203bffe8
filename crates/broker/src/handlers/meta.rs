//! Metadata: the cluster as the metadata image has it (every unfenced broker, the active
//! controller, partitions with their leaders, epochs, replicas, ISR and offline replicas), and
//! topic auto-creation through the controller.
//!
//! An auto-created topic is answered in full: the request waits until the controller has
//! created it and this broker has applied the change (bounded), instead of answering
//! LEADER_NOT_AVAILABLE first as Kafka does; clients accept both.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, MetadataRequest, MetadataResponse, ResponseKind, TopicName,
};
use runnel_controller::api::{AdminRequest, AdminResponse, CreatableTopic, CreateTopicsRequest};
use runnel_controller::image::TopicImage;
use runnel_controller::{ControllerError, MetadataImage};

use super::{client_endpoint, live_brokers, s, Reply};
use crate::auth::authorizer::{Authorizer, CLUSTER_OPS, TOPIC_OPS};
use crate::context::RequestContext;
use crate::controller_channel::ControllerChannel;
use crate::coordinators::topics::InternalTopicSpec;
use crate::error;
use crate::metadata::MetadataView;
use crate::topics::{is_reserved_topic, validate_topic_name};
use runnel_security::acl::AclOperation::{Create, Describe};
use runnel_security::acl::ResourceType::{Cluster, Topic};
use runnel_security::acl::CLUSTER_NAME;

const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

/// How long a Metadata request waits for the topics it auto-creates.
const AUTO_CREATE_TIMEOUT: Duration = Duration::from_secs(10);

/// How Metadata creates missing topics.
#[derive(Debug, Clone)]
pub(crate) struct AutoCreate {
    /// `auto.create.topics.enable`.
    pub enabled: bool,
    /// How `__consumer_offsets` is created when a client asks for it.
    pub offsets_topic: InternalTopicSpec,
}

pub(crate) fn handle(
    metadata: &Arc<MetadataView>,
    controller: &Arc<ControllerChannel>,
    authz: &Arc<Authorizer>,
    auto: AutoCreate,
    ctx: &RequestContext,
    req: MetadataRequest,
    version: i16,
) -> Reply {
    let auto_create = auto.enabled && (version < 4 || req.allow_auto_topic_creation);
    let image = metadata.image();
    // Kafka: a topic the client may not describe is TOPIC_AUTHORIZATION_FAILED, and so is a
    // missing one it may not create (Create on the cluster or on the topic).
    let mut refused = HashMap::new();
    let mut missing: Vec<String> = Vec::new();
    if auto_create {
        let names = req
            .topics
            .iter()
            .flatten()
            .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
            .filter(|n| image.image.topic_by_name(n).is_none() && validate_topic_name(n).is_ok());
        for n in names {
            let allowed = authz.authorize(&image.image, ctx, Describe, Topic, &n)
                && (authz.allows_quietly(&image.image, ctx, Create, Cluster, CLUSTER_NAME)
                    || authz.authorize(&image.image, ctx, Create, Topic, &n));
            if allowed {
                missing.push(n);
            } else {
                refused.insert(n, ResponseError::TopicAuthorizationFailed.code());
            }
        }
    }
    if missing.is_empty() {
        return Reply::Now(ResponseKind::Metadata(build(
            &image.image,
            authz,
            ctx,
            metadata.active_controller(),
            req,
            version,
            &refused,
        )));
    }
    let (metadata, controller, authz) = (metadata.clone(), controller.clone(), authz.clone());
    let ctx = ctx.clone();
    Reply::Later(Box::pin(async move {
        let mut failed = auto_create_topics(&metadata, &controller, auto, missing).await;
        failed.extend(refused);
        let image = metadata.image();
        ResponseKind::Metadata(build(
            &image.image,
            &authz,
            &ctx,
            metadata.active_controller(),
            req,
            version,
            &failed,
        ))
    }))
}

/// Creates the missing topics with the broker defaults; returns the error code of each topic
/// that could not be created (an existing topic is not an error).
async fn auto_create_topics(
    metadata: &MetadataView,
    controller: &ControllerChannel,
    auto: AutoCreate,
    names: Vec<String>,
) -> HashMap<String, i16> {
    let mut failed = HashMap::new();
    let mut topics = Vec::new();
    for name in names {
        if crate::coordinators::is_internal_topic(&name) {
            if let Err(e) = crate::coordinators::topics::ensure_internal_topic(
                metadata,
                controller,
                &auto.offsets_topic,
            )
            .await
            {
                failed.insert(name, e.code());
            }
            continue;
        }
        if topics.iter().any(|t: &CreatableTopic| t.name == name) {
            continue;
        }
        topics.push(CreatableTopic {
            name,
            num_partitions: -1,
            replication_factor: -1,
            assignments: Default::default(),
            configs: vec![],
            internal: false,
        });
    }
    if topics.is_empty() {
        return failed;
    }
    let names: Vec<String> = topics.iter().map(|t| t.name.clone()).collect();
    let req = AdminRequest::CreateTopics(CreateTopicsRequest {
        topics,
        validate_only: false,
    });
    match controller.admin(req, AUTO_CREATE_TIMEOUT).await {
        Ok(AdminResponse::CreateTopics(r)) => {
            for (name, result) in r.topics {
                match result {
                    Ok(created) => {
                        tracing::info!(topic = %name, topic_id = %created.topic_id, partitions = created.num_partitions, replication_factor = created.replication_factor, "auto-created topic");
                    }
                    Err(ControllerError::TopicAlreadyExists(_)) => {}
                    Err(e) => {
                        tracing::warn!(topic = %name, error = %e, "auto-create failed");
                        failed.insert(name, error::controller_error(&e).code());
                    }
                }
            }
        }
        Ok(other) => {
            tracing::error!(response = ?other, "unexpected controller response to CreateTopics");
            for n in names {
                failed.insert(n, ResponseError::UnknownServerError.code());
            }
        }
        Err(e) => {
            tracing::warn!(topics = ?names, error = %e, "auto-create failed");
            // Kafka answers LEADER_NOT_AVAILABLE while a topic is being created; a client
            // retries, which is right when the controller is only slow or being elected.
            let code = match e {
                ControllerError::Timeout(_) | ControllerError::NotController { .. } => {
                    ResponseError::LeaderNotAvailable.code()
                }
                e => error::controller_error(&e).code(),
            };
            for n in names {
                failed.insert(n, code);
            }
        }
    }
    failed
}

/// The response for `req` from `image`; `controller_id` is the active controller (-1 when
/// unknown) and `failed` holds auto-create errors by topic name.
pub fn build(
    image: &MetadataImage,
    authz: &Authorizer,
    ctx: &RequestContext,
    controller_id: i32,
    req: MetadataRequest,
    version: i16,
    failed: &HashMap<String, i16>,
) -> MetadataResponse {
    let brokers = live_brokers(image)
        .filter_map(|b| {
            let e = client_endpoint(b, ctx.listener())?;
            let mut out = MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.broker_id))
                .with_host(s(&e.host))
                .with_port(e.port as i32);
            if version >= 1 {
                out.rack = b.rack.as_deref().map(s);
            }
            Some(out)
        })
        .collect();
    let mut resp = MetadataResponse::default().with_brokers(brokers);
    if version >= 1 {
        resp.controller_id = BrokerId(controller_id);
    }
    if version >= 2 {
        resp.cluster_id = Some(s(&super::cluster_id(image)));
    }
    if (8..=10).contains(&version) {
        resp.cluster_authorized_operations = if req.include_cluster_authorized_operations {
            authz.authorized_operations(image, ctx, Cluster, CLUSTER_NAME, CLUSTER_OPS)
        } else {
            AUTHORIZED_OPERATIONS_OMITTED
        };
    }
    let with_ops = version >= 8 && req.include_topic_authorized_operations;
    let entry = |t: &TopicImage| {
        let mut e = topic_entry(image, t, version);
        if with_ops {
            e.topic_authorized_operations =
                authz.authorized_operations(image, ctx, Topic, &t.name, TOPIC_OPS);
        }
        e
    };
    let denied = |name: &str| {
        let mut t = error_topic(
            Some(name),
            ResponseError::TopicAuthorizationFailed.code(),
            version,
        );
        t.is_internal = crate::coordinators::is_coordinator_topic(name);
        t
    };

    // v0: an empty list means all topics. v1+: null means all, empty means none.
    let all = match &req.topics {
        None => true,
        Some(t) => version == 0 && t.is_empty(),
    };
    resp.topics = if all {
        // Topics the client may not describe are left out.
        image
            .topics()
            .filter(|t| !is_reserved_topic(&t.name))
            .filter(|t| authz.allows_quietly(image, ctx, Describe, Topic, &t.name))
            .map(entry)
            .collect()
    } else {
        req.topics
            .unwrap_or_default()
            .into_iter()
            .map(|rt| match rt.name.as_ref().map(|n| n.0.to_string()) {
                Some(name)
                    if failed.get(&name)
                        == Some(&ResponseError::TopicAuthorizationFailed.code()) =>
                {
                    denied(&name)
                }
                Some(name) => match image
                    .topic_by_name(&name)
                    .filter(|t| !is_reserved_topic(&t.name))
                {
                    Some(t) if !authz.authorize(image, ctx, Describe, Topic, &t.name) => {
                        denied(&t.name)
                    }
                    Some(t) => entry(t),
                    None if !authz.authorize(image, ctx, Describe, Topic, &name) => denied(&name),
                    None => {
                        let code = if validate_topic_name(&name).is_err() {
                            ResponseError::InvalidTopicException.code()
                        } else {
                            failed
                                .get(&name)
                                .copied()
                                .unwrap_or(ResponseError::UnknownTopicOrPartition.code())
                        };
                        error_topic(Some(&name), code, version)
                    }
                },
                None => match image
                    .topic(&rt.topic_id)
                    .filter(|t| !is_reserved_topic(&t.name))
                {
                    Some(t) if !authz.authorize(image, ctx, Describe, Topic, &t.name) => {
                        let mut d = denied(&t.name);
                        d.name = None;
                        d.topic_id = rt.topic_id;
                        d
                    }
                    Some(t) => entry(t),
                    None => {
                        let mut t =
                            error_topic(None, ResponseError::UnknownTopicId.code(), version);
                        t.topic_id = rt.topic_id;
                        t
                    }
                },
            })
            .collect()
    };
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
    image: &MetadataImage,
    t: &TopicImage,
    version: i16,
) -> MetadataResponseTopic {
    let live = |id: i32| image.broker(id).is_some_and(|b| !b.fenced);
    let partitions = t
        .partitions
        .iter()
        .map(|(&index, p)| {
            let ids = |v: &[i32]| v.iter().map(|&id| BrokerId(id)).collect::<Vec<_>>();
            let mut e = MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_leader_id(BrokerId(p.leader))
                .with_replica_nodes(ids(&p.replicas))
                .with_isr_nodes(ids(&p.isr));
            if p.leader < 0 || !live(p.leader) {
                e.error_code = ResponseError::LeaderNotAvailable.code();
                e.leader_id = BrokerId(-1);
            }
            if version >= 5 {
                e.offline_replicas = p
                    .replicas
                    .iter()
                    .filter(|&&r| !live(r))
                    .map(|&r| BrokerId(r))
                    .collect();
            }
            if version >= 7 {
                e.leader_epoch = p.leader_epoch;
            }
            e
        })
        .collect();
    let mut out = MetadataResponseTopic::default()
        .with_name(Some(TopicName(s(&t.name))))
        .with_partitions(partitions);
    if version >= 1 {
        out.is_internal = crate::coordinators::is_coordinator_topic(&t.name);
    }
    if version >= 10 {
        out.topic_id = t.topic_id;
    }
    if version >= 8 {
        out.topic_authorized_operations = AUTHORIZED_OPERATIONS_OMITTED;
    }
    out
}
