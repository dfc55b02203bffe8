//! The internal topics coordinators keep their state in, created on first use.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use runnel_controller::api::{AdminRequest, AdminResponse, CreatableTopic, CreateTopicsRequest};
use runnel_controller::ControllerError;

use crate::controller_channel::ControllerChannel;
use crate::metadata::MetadataView;

/// How long a request that needs an internal topic waits for its creation.
const CREATE_TIMEOUT: Duration = Duration::from_secs(10);

/// How an internal topic is created.
#[derive(Debug, Clone)]
pub struct InternalTopicSpec {
    pub name: &'static str,
    pub partitions: i32,
    /// Wanted; capped at the registered brokers.
    pub replication_factor: i16,
    /// Topic configs; `min.insync.replicas` among them is capped at the replication factor.
    pub configs: Vec<(String, Option<String>)>,
}

impl InternalTopicSpec {
    fn configs_for(&self, rf: i16) -> Vec<(String, Option<String>)> {
        self.configs
            .iter()
            .map(|(k, v)| match (k.as_str(), v) {
                ("min.insync.replicas", Some(v)) => {
                    let min = v.parse::<i64>().unwrap_or(1).clamp(1, i64::from(rf.max(1)));
                    (k.clone(), Some(min.to_string()))
                }
                _ => (k.clone(), v.clone()),
            })
            .collect()
    }
}

/// Asks the controller to create the internal topic `spec` (clients may not create it) with its
/// partitions and a replication factor capped at the registered brokers
/// (COORDINATOR_NOT_AVAILABLE while fewer of them are live), and waits until this broker has
/// applied it. Ok when it exists afterwards, whoever created it.
pub async fn ensure_internal_topic(
    metadata: &MetadataView,
    controller: &ControllerChannel,
    spec: &InternalTopicSpec,
) -> Result<(), ResponseError> {
    if metadata.image().image.topic_by_name(spec.name).is_some() {
        return Ok(());
    }
    let (live, registered) = {
        let image = metadata.image();
        let registered = image.image.brokers().count();
        let live = image.image.brokers().filter(|b| b.is_active()).count();
        (live, registered)
    };
    // The replication factor is capped at the brokers the cluster has (a single node gets 1),
    // but not at the ones up right now: a three-node cluster whose first group request comes
    // while a node is down waits for it rather than creating a less replicated topic forever.
    let rf = (spec.replication_factor.max(0) as usize).min(registered);
    if rf == 0 || live < rf {
        tracing::info!(
            live,
            registered,
            replication_factor = rf,
            topic = spec.name,
            "waiting for enough live brokers to create an internal topic"
        );
        return Err(ResponseError::CoordinatorNotAvailable);
    }
    let rf = rf as i16;
    let n = spec.partitions;
    let req = AdminRequest::CreateTopics(CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: spec.name.to_string(),
            num_partitions: n,
            replication_factor: rf,
            assignments: BTreeMap::new(),
            configs: spec.configs_for(rf),
            internal: true,
        }],
        validate_only: false,
    });
    match controller.admin(req, CREATE_TIMEOUT).await {
        Ok(AdminResponse::CreateTopics(r)) => match r.topics.into_iter().next() {
            Some((_, Ok(_))) => {
                tracing::info!(
                    topic = spec.name,
                    partitions = n,
                    replication_factor = rf,
                    "created internal topic"
                );
            }
            Some((_, Err(ControllerError::TopicAlreadyExists(_)))) => {}
            Some((_, Err(e))) => {
                tracing::warn!(topic = spec.name, error = %e, "cannot create internal topic");
                return Err(ResponseError::CoordinatorNotAvailable);
            }
            None => return Err(ResponseError::CoordinatorNotAvailable),
        },
        Ok(other) => {
            tracing::error!(response = ?other, "unexpected controller response to CreateTopics");
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        Err(e) => {
            tracing::warn!(topic = spec.name, error = %e, "cannot create internal topic");
            return Err(ResponseError::CoordinatorNotAvailable);
        }
    }
    if metadata.image().image.topic_by_name(spec.name).is_some() {
        Ok(())
    } else {
        Err(ResponseError::CoordinatorNotAvailable)
    }
}
