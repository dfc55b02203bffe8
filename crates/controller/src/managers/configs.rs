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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::managers::testkit::{brokers, replay, with_topic, TestValidator};

    fn image() -> MetadataImage {
        let image = with_topic(&brokers(1), "t", 1, &[&[1]]);
        with_topic(&image, "u", 2, &[&[1]])
    }

    fn topic(name: &str, ops: Vec<ConfigOp>) -> AlterConfigsResource {
        AlterConfigsResource {
            resource: ConfigResource::Topic(name.into()),
            ops,
            replace_all: false,
        }
    }

    fn set(k: &str, v: &str) -> ConfigOp {
        ConfigOp::Set(k.into(), v.into())
    }

    fn alter(
        image: &MetadataImage,
        resources: Vec<AlterConfigsResource>,
        validate_only: bool,
    ) -> (
        MetadataImage,
        Vec<Result<(), ControllerError>>,
        ControllerResult<AlterConfigsResponse>,
    ) {
        let r = alter_configs(
            image,
            &TestValidator,
            &AlterConfigsRequest {
                resources,
                validate_only,
            },
        );
        let after = replay(image, &r);
        let results = r
            .response
            .resources
            .iter()
            .map(|(_, r)| r.clone())
            .collect();
        (after, results, r)
    }

    fn configs(image: &MetadataImage, topic: &str) -> BTreeMap<String, String> {
        image
            .configs(ConfigResourceType::Topic, topic)
            .cloned()
            .unwrap_or_default()
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn set_delete_and_only_real_changes() {
        let (image, results, r) = alter(
            &image(),
            vec![topic(
                "t",
                vec![set("retention.ms", "10"), set("cleanup.policy", "compact")],
            )],
            false,
        );
        assert_eq!(results, vec![Ok(())]);
        assert_eq!(r.records.len(), 2);
        assert_eq!(
            configs(&image, "t"),
            map(&[("retention.ms", "10"), ("cleanup.policy", "compact")])
        );
        // Same value again, and deleting an unset key: nothing to write.
        let (_, results, r) = alter(
            &image,
            vec![topic(
                "t",
                vec![
                    set("retention.ms", "10"),
                    ConfigOp::Delete("min.insync.replicas".into()),
                ],
            )],
            false,
        );
        assert_eq!(results, vec![Ok(())]);
        assert!(r.records.is_empty());
        let (image, _, r) = alter(
            &image,
            vec![topic("t", vec![ConfigOp::Delete("retention.ms".into())])],
            false,
        );
        assert_eq!(r.records.len(), 1);
        assert_eq!(configs(&image, "t"), map(&[("cleanup.policy", "compact")]));
    }

    #[test]
    fn append_and_subtract_lists() {
        let (image, _, _) = alter(
            &image(),
            vec![topic(
                "t",
                vec![ConfigOp::Append("cleanup.policy".into(), "delete".into())],
            )],
            false,
        );
        assert_eq!(configs(&image, "t"), map(&[("cleanup.policy", "delete")]));
        let (image, _, _) = alter(
            &image,
            vec![topic(
                "t",
                vec![ConfigOp::Append(
                    "cleanup.policy".into(),
                    "delete,compact".into(),
                )],
            )],
            false,
        );
        assert_eq!(
            configs(&image, "t"),
            map(&[("cleanup.policy", "delete,compact")])
        );
        let (image, _, _) = alter(
            &image,
            vec![topic(
                "t",
                vec![ConfigOp::Subtract("cleanup.policy".into(), "delete".into())],
            )],
            false,
        );
        assert_eq!(configs(&image, "t"), map(&[("cleanup.policy", "compact")]));
        // Append/Subtract on a non-list key; an appended value the validator refuses.
        let (_, results, r) = alter(
            &image,
            vec![
                topic(
                    "t",
                    vec![ConfigOp::Append("retention.ms".into(), "5".into())],
                ),
                topic(
                    "u",
                    vec![ConfigOp::Append("cleanup.policy".into(), "bogus".into())],
                ),
            ],
            false,
        );
        assert!(r.records.is_empty());
        assert!(matches!(results[0], Err(ControllerError::InvalidConfig(_))));
        assert!(matches!(results[1], Err(ControllerError::InvalidConfig(_))));
    }

    #[test]
    fn replace_all_deletes_unnamed_overrides() {
        let (image, _, _) = alter(
            &image(),
            vec![topic(
                "t",
                vec![set("retention.ms", "10"), set("cleanup.policy", "compact")],
            )],
            false,
        );
        let mut legacy = topic("t", vec![set("min.insync.replicas", "2")]);
        legacy.replace_all = true;
        let (image, results, r) = alter(&image, vec![legacy], false);
        assert_eq!(results, vec![Ok(())]);
        assert_eq!(r.records.len(), 3);
        assert_eq!(configs(&image, "t"), map(&[("min.insync.replicas", "2")]));
    }

    #[test]
    fn errors_are_per_resource() {
        let (image, results, _) = alter(
            &image(),
            vec![
                topic("t", vec![set("retention.ms", "soon")]),
                topic("nope", vec![set("retention.ms", "1")]),
                AlterConfigsResource {
                    resource: ConfigResource::Broker("1".into()),
                    ops: vec![set("log.retention.ms", "1")],
                    replace_all: false,
                },
                topic("u", vec![set("retention.ms", "7")]),
                topic("t2", vec![]),
                topic(
                    "u",
                    vec![set("no.such.config", "1"), set("retention.ms", "1")],
                ),
            ],
            false,
        );
        assert_eq!(
            results[0],
            Err(ControllerError::InvalidConfig(
                "Invalid value soon for configuration retention.ms".into()
            ))
        );
        assert!(matches!(results[1], Err(ControllerError::UnknownTopic(_))));
        assert_eq!(
            results[2],
            Err(ControllerError::InvalidRequest(
                "dynamic broker configs are not supported yet; set them in server.properties"
                    .into()
            ))
        );
        // "u" appears twice: both refused.
        assert!(matches!(
            results[3],
            Err(ControllerError::InvalidRequest(_))
        ));
        assert!(matches!(results[4], Err(ControllerError::UnknownTopic(_))));
        assert!(matches!(
            results[5],
            Err(ControllerError::InvalidRequest(_))
        ));
        assert!(configs(&image, "t").is_empty());
        assert!(configs(&image, "u").is_empty());

        // A failing resource does not stop a good one.
        let (image, results, _) = alter(
            &image,
            vec![
                topic("t", vec![set("retention.ms", "soon")]),
                topic("u", vec![set("retention.ms", "7")]),
            ],
            false,
        );
        assert!(results[0].is_err());
        assert_eq!(results[1], Ok(()));
        assert_eq!(configs(&image, "u"), map(&[("retention.ms", "7")]));
        // The same key twice in one resource.
        let (_, results, _) = alter(
            &image,
            vec![topic(
                "t",
                vec![
                    set("retention.ms", "1"),
                    ConfigOp::Delete("retention.ms".into()),
                ],
            )],
            false,
        );
        assert!(matches!(
            results[0],
            Err(ControllerError::InvalidRequest(_))
        ));
    }

    #[test]
    fn validate_only_writes_nothing() {
        let (after, results, r) = alter(
            &image(),
            vec![topic("t", vec![set("retention.ms", "10")])],
            true,
        );
        assert_eq!(results, vec![Ok(())]);
        assert!(r.records.is_empty());
        assert_eq!(after, image());
    }
}
