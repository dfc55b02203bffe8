//! Dynamic configs: AlterConfigs and IncrementalAlterConfigs for topics (broker configs are
//! refused until dynamic broker configs are implemented).

use std::collections::{BTreeMap, BTreeSet};

use super::staged::Staged;
use super::{ControllerResult, TopicConfigValidator};
use crate::api::{
    AlterConfigsRequest, AlterConfigsResource, AlterConfigsResponse, ConfigOp, ConfigResource,
    ControllerError,
};
use crate::image::MetadataImage;
use crate::records::{ConfigRecord, ConfigResourceType, Record};

pub fn alter_configs(
    image: &MetadataImage,
    validator: &dyn TopicConfigValidator,
    req: &AlterConfigsRequest,
) -> ControllerResult<AlterConfigsResponse> {
    let mut seen = BTreeSet::new();
    let mut duplicates = BTreeSet::new();
    for r in &req.resources {
        if !seen.insert(resource_key(&r.resource)) {
            duplicates.insert(resource_key(&r.resource));
        }
    }
    let mut staged = Staged::new(image);
    let mut resources = Vec::with_capacity(req.resources.len());
    for r in &req.resources {
        let result = if duplicates.contains(&resource_key(&r.resource)) {
            Err(ControllerError::InvalidRequest(format!(
                "Resource {} appears more than once in the request.",
                describe(&r.resource)
            )))
        } else {
            plan(staged.image(), validator, r)
        };
        match result {
            Ok(records) => {
                if !req.validate_only {
                    if !records.is_empty() {
                        tracing::info!(
                            resource = %describe(&r.resource),
                            changes = records.len(),
                            "configs altered"
                        );
                    }
                    for record in records {
                        staged.push(record);
                    }
                }
                resources.push((r.resource.clone(), Ok(())));
            }
            Err(e) => {
                tracing::debug!(resource = %describe(&r.resource), error = %e, "config change refused");
                resources.push((r.resource.clone(), Err(e)));
            }
        }
    }
    ControllerResult::new(staged.into_records(), AlterConfigsResponse { resources })
}

/// An ordered identity for a resource (`ConfigResource` itself is not `Ord`).
fn resource_key(r: &ConfigResource) -> (ConfigResourceType, &str) {
    match r {
        ConfigResource::Topic(name) => (ConfigResourceType::Topic, name),
        ConfigResource::Broker(id) => (ConfigResourceType::Broker, id),
    }
}

fn describe(r: &ConfigResource) -> String {
    match r {
        ConfigResource::Topic(name) => format!("topic '{name}'"),
        ConfigResource::Broker(id) if id.is_empty() => "the cluster-wide broker default".into(),
        ConfigResource::Broker(id) => format!("broker {id}"),
    }
}

fn key(op: &ConfigOp) -> &str {
    match op {
        ConfigOp::Set(k, _) | ConfigOp::Delete(k) | ConfigOp::Append(k, _) => k,
        ConfigOp::Subtract(k, _) => k,
    }
}

/// The Config records that carry out one resource's ops (only real changes).
fn plan(
    image: &MetadataImage,
    validator: &dyn TopicConfigValidator,
    r: &AlterConfigsResource,
) -> Result<Vec<Record>, ControllerError> {
    let topic = match &r.resource {
        ConfigResource::Broker(_) => {
            return Err(ControllerError::InvalidRequest(
                "dynamic broker configs are not supported yet; set them in server.properties"
                    .into(),
            ))
        }
        ConfigResource::Topic(name) => name,
    };
    if image.topic_by_name(topic).is_none() {
        return Err(ControllerError::UnknownTopic(format!(
            "Topic '{topic}' does not exist."
        )));
    }
    let mut named = BTreeSet::new();
    for op in &r.ops {
        let k = key(op);
        if k.is_empty() {
            return Err(ControllerError::InvalidConfig(
                "Config names must not be empty.".into(),
            ));
        }
        if !named.insert(k) {
            return Err(ControllerError::InvalidRequest(format!(
                "Config '{k}' appears more than once for {}.",
                describe(&r.resource)
            )));
        }
    }
    let current: BTreeMap<String, String> = image
        .configs(ConfigResourceType::Topic, topic)
        .cloned()
        .unwrap_or_default();
    let mut next = current.clone();
    if r.replace_all {
        next.retain(|k, _| named.contains(k.as_str()));
    }
    for op in &r.ops {
        match op {
            ConfigOp::Set(k, v) => {
                validator
                    .validate(k, v)
                    .map_err(ControllerError::InvalidConfig)?;
                next.insert(k.clone(), v.clone());
            }
            ConfigOp::Delete(k) => {
                next.remove(k);
            }
            ConfigOp::Append(k, v) | ConfigOp::Subtract(k, v) => {
                if !validator.is_list(k) {
                    return Err(ControllerError::InvalidConfig(format!(
                        "Config '{k}' is not a list; APPEND and SUBTRACT apply only to lists."
                    )));
                }
                let mut items: Vec<&str> = next
                    .get(k)
                    .map(|s| s.split(',').filter(|s| !s.is_empty()).collect())
                    .unwrap_or_default();
                let operand: Vec<&str> = v.split(',').filter(|s| !s.is_empty()).collect();
                if matches!(op, ConfigOp::Append(..)) {
                    for item in operand {
                        if !items.contains(&item) {
                            items.push(item);
                        }
                    }
                } else {
                    items.retain(|item| !operand.contains(item));
                }
                let value = items.join(",");
                validator
                    .validate(k, &value)
                    .map_err(ControllerError::InvalidConfig)?;
                next.insert(k.clone(), value);
            }
        }
    }
    let mut records = Vec::new();
    for (k, v) in &next {
        if current.get(k) != Some(v) {
            records.push(config_record(topic, k, Some(v.clone())));
        }
    }
    for k in current.keys() {
        if !next.contains_key(k) {
            records.push(config_record(topic, k, None));
        }
    }
    Ok(records)
}

fn config_record(topic: &str, key: &str, value: Option<String>) -> Record {
    Record::Config(ConfigRecord {
        resource_type: ConfigResourceType::Topic,
        resource_name: topic.to_string(),
        name: key.to_string(),
        value,
    })
}
