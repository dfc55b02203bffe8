//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topic and broker resources,
//! with Kafka's names, types, sources, synonyms and validation.
//!
//! Broker configuration is static (server.properties, flags): it can be described, and altering
//! it is refused with a clear message. Topic overrides are changed by the active controller
//! (which validates them with the broker's topic config table) and reach the partition logs of
//! every replica through the metadata image and the reconciler.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::ResponseKind;
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use runnel_controller::api::{
    self, AdminRequest, AdminResponse, AlterConfigsResource, ConfigOp, ConfigResource,
};
use runnel_controller::records::ConfigResourceType;

use super::admin::{forward_checked, SOURCE_DEFAULT, SOURCE_DYNAMIC_TOPIC, SOURCE_STATIC_BROKER};
use super::AdminServices;
use super::{s, Reply};
use crate::config::{Usage, BROKER_PROPS};
use crate::context::RequestContext;
use crate::error::KafkaError;
use crate::topic_config::{self, ConfigType, TOPIC_PROPS};
use runnel_security::acl::{AclOperation, ResourceType, CLUSTER_NAME};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

/// Kafka's authorization of a config resource: a topic's configs need `op` on the topic, a
/// broker's need `op` on the cluster.
fn config_access(
    svc: &AdminServices,
    ctx: &RequestContext,
    resource_type: i8,
    name: &StrBytes,
    op: AclOperation,
) -> Result<(), KafkaError> {
    let image = svc.image();
    let authz = &svc.authorizer;
    match resource_type {
        RESOURCE_TOPIC if !authz.authorize(&image.image, ctx, op, ResourceType::Topic, name) => {
            Err(KafkaError::new(
                ResponseError::TopicAuthorizationFailed,
                "Topic authorization failed.",
            ))
        }
        RESOURCE_BROKER
            if !authz.authorize(&image.image, ctx, op, ResourceType::Cluster, CLUSTER_NAME) =>
        {
            Err(KafkaError::new(
                ResponseError::ClusterAuthorizationFailed,
                "Cluster authorization failed.",
            ))
        }
        _ => Ok(()),
    }
}

pub fn describe(
    svc: &AdminServices,
    ctx: &RequestContext,
    req: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let inc = Include {
        synonyms: req.include_synonyms,
        documentation: req.include_documentation,
        version,
    };
    let resources = req.resources;
    let results = resources
        .into_iter()
        .map(|res| {
            let keys: Option<Vec<String>> = res
                .configuration_keys
                .as_ref()
                .map(|k| k.iter().map(|s| s.to_string()).collect());
            let wanted = |name: &str| keys.as_ref().is_none_or(|k| k.iter().any(|x| x == name));
            let mut r = DescribeConfigsResult::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            let entries = config_access(
                svc,
                ctx,
                res.resource_type,
                &res.resource_name,
                AclOperation::DescribeConfigs,
            )
            .and_then(|()| match res.resource_type {
                RESOURCE_TOPIC => describe_topic(svc, &res.resource_name, &wanted, inc),
                RESOURCE_BROKER => describe_broker(svc, &res.resource_name, &wanted, inc),
                t => Err(KafkaError::new(
                    ResponseError::InvalidRequest,
                    format!(
                        "Unsupported resource type {t} (topics = 2 and brokers = 4 are supported)"
                    ),
                )),
            });
            match entries {
                Ok(c) => r.configs = c,
                Err(e) => {
                    r.error_code = e.code();
                    r.error_message = Some(s(&e.message));
                }
            }
            r
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// What the request asked to include.
#[derive(Clone, Copy)]
struct Include {
    synonyms: bool,
    documentation: bool,
    version: i16,
}

/// One config's description, before the request's include flags are applied.
struct Described<'a> {
    name: &'a str,
    value: Option<String>,
    source: i8,
    ty: ConfigType,
    read_only: bool,
    synonyms: Vec<DescribeConfigsSynonym>,
    doc: &'a str,
}

fn entry(d: Described<'_>, inc: Include) -> DescribeConfigsResourceResult {
    let Described {
        name,
        value,
        source,
        ty,
        read_only,
        synonyms,
        doc,
    } = d;
    let version = inc.version;
    // Passwords, keys and JAAS configurations are never shown, as in Kafka.
    let sensitive = ty == ConfigType::Password;
    let mut e = DescribeConfigsResourceResult::default()
        .with_name(s(name))
        .with_value(value.filter(|_| !sensitive).map(|v| s(&v)))
        .with_read_only(read_only)
        .with_is_sensitive(sensitive)
        .with_config_source(source);
    if inc.synonyms {
        e.synonyms = synonyms;
        if sensitive {
            for syn in &mut e.synonyms {
                syn.value = None;
            }
        }
    }
    if version >= 3 {
        e.config_type = ty as i8;
        if inc.documentation {
            e.documentation = Some(s(doc));
        }
    }
    e
}

fn synonym(name: &str, value: Option<String>, source: i8) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default()
        .with_name(s(name))
        .with_value(value.map(|v| s(&v)))
        .with_source(source)
}

fn describe_topic(
    svc: &AdminServices,
    name: &StrBytes,
    wanted: &dyn Fn(&str) -> bool,
    inc: Include,
) -> Result<Vec<DescribeConfigsResourceResult>, KafkaError> {
    let overrides = topic_overrides(svc, name)?;
    let d = &svc.config.log_defaults;
    Ok(TOPIC_PROPS
        .iter()
        .filter(|p| wanted(p.name))
        .map(|p| {
            let default = topic_config::default_value(p.name, d);
            let broker_explicit = p
                .broker_synonym
                .filter(|b| svc.config.explicit.contains_key(*b));
            let mut synonyms = vec![];
            if let Some(v) = overrides.get(p.name) {
                synonyms.push(synonym(p.name, Some(v.clone()), SOURCE_DYNAMIC_TOPIC));
            }
            if let Some(b) = broker_explicit {
                synonyms.push(synonym(b, svc.config.effective(b), SOURCE_STATIC_BROKER));
            }
            if let Some(b) = p.broker_synonym {
                let literal = crate::config::broker_prop(b).and_then(|bp| bp.default);
                let def = literal.map(str::to_string).or_else(|| default.clone());
                synonyms.push(synonym(b, def, SOURCE_DEFAULT));
            }
            let (value, source) = match overrides.get(p.name) {
                Some(v) => (Some(v.clone()), SOURCE_DYNAMIC_TOPIC),
                None if broker_explicit.is_some() => (default, SOURCE_STATIC_BROKER),
                None => (default, SOURCE_DEFAULT),
            };
            entry(
                Described {
                    name: p.name,
                    value,
                    source,
                    ty: p.ty,
                    read_only: false,
                    synonyms,
                    doc: p.doc,
                },
                inc,
            )
        })
        .collect())
}

fn describe_broker(
    svc: &AdminServices,
    name: &StrBytes,
    wanted: &dyn Fn(&str) -> bool,
    inc: Include,
) -> Result<Vec<DescribeConfigsResourceResult>, KafkaError> {
    if name.is_empty() {
        // Cluster-wide dynamic defaults: Runnel has none.
        return Ok(vec![]);
    }
    if name.as_str() != svc.config.node_id.to_string() {
        return Err(KafkaError::new(
            ResponseError::InvalidRequest,
            format!(
                "Unexpected broker id, expected {}, but received {name}",
                svc.config.node_id
            ),
        ));
    }
    Ok(BROKER_PROPS
        .iter()
        .filter(|p| p.usage == Usage::Used && wanted(p.name))
        .map(|p| {
            let value = svc.config.effective(p.name);
            let explicit = svc.config.explicit.contains_key(p.name);
            let source = if explicit {
                SOURCE_STATIC_BROKER
            } else {
                SOURCE_DEFAULT
            };
            let mut synonyms = vec![];
            if explicit {
                synonyms.push(synonym(p.name, value.clone(), SOURCE_STATIC_BROKER));
            }
            if let Some(def) = p.default {
                synonyms.push(synonym(p.name, Some(def.to_string()), SOURCE_DEFAULT));
            }
            entry(
                Described {
                    name: p.name,
                    value,
                    source,
                    ty: p.ty,
                    read_only: true,
                    synonyms,
                    doc: p.doc,
                },
                inc,
            )
        })
        .collect())
}

/// The config overrides of an existing topic, from the metadata image.
fn topic_overrides(
    svc: &AdminServices,
    name: &str,
) -> Result<BTreeMap<String, String>, KafkaError> {
    let image = svc.image();
    if super::is_reserved_topic(name) || image.image.topic_by_name(name).is_none() {
        return Err(KafkaError::new(
            ResponseError::UnknownTopicOrPartition,
            format!("Topic {name} does not exist"),
        ));
    }
    Ok(image
        .image
        .configs(ConfigResourceType::Topic, name)
        .cloned()
        .unwrap_or_default())
}

/// Sends the resources that passed the broker-side checks to the controller in one request
/// and returns every resource's outcome in request order.
async fn alter_via_controller(
    svc: &AdminServices,
    checked: Vec<Result<AlterConfigsResource, KafkaError>>,
    validate_only: bool,
) -> Vec<Result<(), KafkaError>> {
    forward_checked(
        svc,
        &checked,
        ALTER_CONFIGS_TIMEOUT,
        |resources| {
            AdminRequest::AlterConfigs(api::AlterConfigsRequest {
                resources,
                validate_only,
            })
        },
        |resp| match resp {
            AdminResponse::AlterConfigs(r) => Some(
                r.resources
                    .into_iter()
                    .map(|(res, out)| {
                        if out.is_ok() && !validate_only {
                            tracing::info!(resource = ?res, "updated configs");
                        }
                        out
                    })
                    .collect(),
            ),
            _ => None,
        },
    )
    .await
}

/// Config changes wait this long for the controller (the requests carry no timeout).
const ALTER_CONFIGS_TIMEOUT: Duration = Duration::from_secs(30);

fn broker_alter_refused() -> KafkaError {
    KafkaError::new(ResponseError::InvalidRequest, "Dynamic broker configuration is not supported yet; set broker properties in server.properties or with --set")
}

pub fn alter(
    svc: &AdminServices,
    ctx: &RequestContext,
    req: AlterConfigsRequest,
    _version: i16,
) -> Reply {
    let checked: Vec<Result<AlterConfigsResource, KafkaError>> = req
        .resources
        .iter()
        .map(|res| {
            config_access(
                svc,
                ctx,
                res.resource_type,
                &res.resource_name,
                AclOperation::AlterConfigs,
            )?;
            match res.resource_type {
                RESOURCE_TOPIC => topic_overrides(svc, &res.resource_name).and_then(|_| {
                    let mut ops = Vec::with_capacity(res.configs.len());
                    for c in &res.configs {
                        match &c.value {
                            Some(v) => ops.push(ConfigOp::Set(c.name.to_string(), v.to_string())),
                            None => {
                                return Err(KafkaError::new(
                                    ResponseError::InvalidRequest,
                                    format!("Null value not supported for {}", c.name),
                                ))
                            }
                        }
                    }
                    Ok(AlterConfigsResource {
                        resource: ConfigResource::Topic(res.resource_name.to_string()),
                        ops,
                        replace_all: true,
                    })
                }),
                RESOURCE_BROKER => Err(broker_alter_refused()),
                t => Err(KafkaError::new(
                    ResponseError::InvalidRequest,
                    format!("Unsupported resource type {t}"),
                )),
            }
        })
        .collect();
    let svc = svc.clone();
    Reply::Later(Box::pin(async move {
        let outcomes = alter_via_controller(&svc, checked, req.validate_only).await;
        let responses = req
            .resources
            .into_iter()
            .zip(outcomes)
            .map(|(res, outcome)| {
                let mut r = alter_configs_response::AlterConfigsResourceResponse::default()
                    .with_resource_type(res.resource_type)
                    .with_resource_name(res.resource_name);
                if let Err(e) = outcome {
                    r.error_code = e.code();
                    r.error_message = Some(s(&e.message));
                }
                r
            })
            .collect();
        ResponseKind::AlterConfigs(AlterConfigsResponse::default().with_responses(responses))
    }))
}

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// The operations that turn `old` overrides into `new` ones.
fn diff_ops(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> Vec<ConfigOp> {
    let mut ops: Vec<ConfigOp> = new
        .iter()
        .filter(|(k, v)| old.get(*k) != Some(*v))
        .map(|(k, v)| ConfigOp::Set(k.clone(), v.clone()))
        .collect();
    ops.extend(
        old.keys()
            .filter(|k| !new.contains_key(*k))
            .map(|k| ConfigOp::Delete(k.clone())),
    );
    ops
}

/// IncrementalAlterConfigs: the new overrides are computed here (APPEND and SUBTRACT start
/// from the effective value, defaults included, as in Kafka) and sent to the controller as
/// the SET and DELETE operations that reach them; the controller validates the values.
pub fn incremental_alter(
    svc: &AdminServices,
    ctx: &RequestContext,
    req: IncrementalAlterConfigsRequest,
    _version: i16,
) -> Reply {
    let checked: Vec<Result<AlterConfigsResource, KafkaError>> = req
        .resources
        .iter()
        .map(|res| {
            config_access(
                svc,
                ctx,
                res.resource_type,
                &res.resource_name,
                AclOperation::AlterConfigs,
            )?;
            match res.resource_type {
                RESOURCE_TOPIC => topic_overrides(svc, &res.resource_name).and_then(|old| {
                    let mut configs = old.clone();
                    let mut seen = std::collections::HashSet::new();
                    for c in &res.configs {
                        let name = c.name.to_string();
                        if !seen.insert(name.clone()) {
                            return Err(KafkaError::new(ResponseError::InvalidRequest, format!("Config {name} appears more than once in the request")));
                        }
                        let prop = topic_config::topic_prop(&name).ok_or(KafkaError::new(ResponseError::InvalidConfig, format!("Unknown topic config name: {name}")))?;
                        let value = c.value.as_ref().map(|v| v.to_string());
                        match c.config_operation {
                            OP_SET => {
                                let v = value.ok_or(KafkaError::new(ResponseError::InvalidRequest, format!("Null value not supported for SET of {name}")))?;
                                configs.insert(name, v);
                            }
                            OP_DELETE => {
                                configs.remove(&name);
                            }
                            OP_APPEND | OP_SUBTRACT => {
                                if prop.ty != ConfigType::List {
                                    return Err(KafkaError::new(ResponseError::InvalidConfig, format!("Config value append/subtract is not allowed for config key {name} which is not a list")));
                                }
                                let current = topic_config::effective(&name, &configs, &svc.config.log_defaults)
                                    .unwrap_or_default();
                                let mut items: Vec<String> = current
                                    .split(',')
                                    .map(|x| x.trim().to_string())
                                    .filter(|x| !x.is_empty())
                                    .collect();
                                for v in value.unwrap_or_default().split(',').map(str::trim).filter(|x| !x.is_empty()) {
                                    if c.config_operation == OP_APPEND {
                                        if !items.iter().any(|i| i == v) {
                                            items.push(v.to_string());
                                        }
                                    } else {
                                        items.retain(|i| i != v);
                                    }
                                }
                                configs.insert(name, items.join(","));
                            }
                            op => {
                                return Err(KafkaError::new(ResponseError::InvalidRequest, format!("Unknown config operation {op}")))
                            }
                        }
                    }
                    Ok(AlterConfigsResource {
                        resource: ConfigResource::Topic(res.resource_name.to_string()),
                        ops: diff_ops(&old, &configs),
                        replace_all: false,
                    })
                }),
                RESOURCE_BROKER => Err(broker_alter_refused()),
                t => Err(KafkaError::new(ResponseError::InvalidRequest, format!("Unsupported resource type {t}"))),
            }
        })
        .collect();
    let svc = svc.clone();
    Reply::Later(Box::pin(async move {
        let outcomes = alter_via_controller(&svc, checked, req.validate_only).await;
        let responses = req
            .resources
            .into_iter()
            .zip(outcomes)
            .map(|(res, outcome)| {
                let mut r =
                    incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                        .with_resource_type(res.resource_type)
                        .with_resource_name(res.resource_name);
                if let Err(e) = outcome {
                    r.error_code = e.code();
                    r.error_message = Some(s(&e.message));
                }
                r
            })
            .collect();
        ResponseKind::IncrementalAlterConfigs(
            IncrementalAlterConfigsResponse::default().with_responses(responses),
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incremental_changes_become_set_and_delete_ops() {
        let m = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let old = m(&[
            ("retention.ms", "1"),
            ("segment.bytes", "100"),
            ("flush.ms", "5"),
        ]);
        let new = m(&[
            ("retention.ms", "2"),
            ("segment.bytes", "100"),
            ("cleanup.policy", "delete,compact"),
        ]);
        let ops = diff_ops(&old, &new);
        assert_eq!(
            ops,
            vec![
                ConfigOp::Set("cleanup.policy".into(), "delete,compact".into()),
                ConfigOp::Set("retention.ms".into(), "2".into()),
                ConfigOp::Delete("flush.ms".into()),
            ]
        );
        assert!(diff_ops(&new, &new).is_empty());
    }
}
