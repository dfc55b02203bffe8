//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topic and broker resources,
//! with Kafka's names, types, sources, synonyms and validation.
//!
//! Broker configuration is static (server.properties, flags): it can be described, and altering
//! it is refused with a clear message. Topic overrides are validated, persisted in the metadata
//! store and applied to the live partition logs at once.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::admin::{SOURCE_DEFAULT, SOURCE_DYNAMIC_TOPIC, SOURCE_STATIC_BROKER};
use super::s;
use crate::config::{Usage, BROKER_PROPS};
use crate::topic_config::{self, ConfigType, TOPIC_PROPS};
use crate::{error, SharedBroker};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

type AdminError = (i16, String);

pub fn describe(
    broker: &SharedBroker,
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
            let entries = match res.resource_type {
                RESOURCE_TOPIC => describe_topic(broker, &res.resource_name, &wanted, inc),
                RESOURCE_BROKER => describe_broker(broker, &res.resource_name, &wanted, inc),
                t => Err((
                    ResponseError::InvalidRequest.code(),
                    format!(
                        "Unsupported resource type {t} (topics = 2 and brokers = 4 are supported)"
                    ),
                )),
            };
            match entries {
                Ok(c) => r.configs = c,
                Err((code, msg)) => {
                    r.error_code = code;
                    r.error_message = Some(s(&msg));
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
    let mut e = DescribeConfigsResourceResult::default()
        .with_name(s(name))
        .with_value(value.map(|v| s(&v)))
        .with_read_only(read_only)
        .with_config_source(source);
    if inc.synonyms {
        e.synonyms = synonyms;
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
    broker: &SharedBroker,
    name: &StrBytes,
    wanted: &dyn Fn(&str) -> bool,
    inc: Include,
) -> Result<Vec<DescribeConfigsResourceResult>, AdminError> {
    let meta = broker.metadata.topic(name).ok_or((
        ResponseError::UnknownTopicOrPartition.code(),
        format!("Topic {name} does not exist"),
    ))?;
    let d = &broker.config.log_defaults;
    Ok(TOPIC_PROPS
        .iter()
        .filter(|p| wanted(p.name))
        .map(|p| {
            let default = topic_config::default_value(p.name, d);
            let broker_explicit = p
                .broker_synonym
                .filter(|b| broker.config.explicit.contains_key(*b));
            let mut synonyms = vec![];
            if let Some(v) = meta.configs.get(p.name) {
                synonyms.push(synonym(p.name, Some(v.clone()), SOURCE_DYNAMIC_TOPIC));
            }
            if let Some(b) = broker_explicit {
                synonyms.push(synonym(b, broker.config.effective(b), SOURCE_STATIC_BROKER));
            }
            if let Some(b) = p.broker_synonym {
                let literal = crate::config::broker_prop(b).and_then(|bp| bp.default);
                let def = literal.map(str::to_string).or_else(|| default.clone());
                synonyms.push(synonym(b, def, SOURCE_DEFAULT));
            }
            let (value, source) = match meta.configs.get(p.name) {
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
    broker: &SharedBroker,
    name: &StrBytes,
    wanted: &dyn Fn(&str) -> bool,
    inc: Include,
) -> Result<Vec<DescribeConfigsResourceResult>, AdminError> {
    if name.is_empty() {
        // Cluster-wide dynamic defaults: Runnel has none.
        return Ok(vec![]);
    }
    if name.as_str() != broker.config.node_id.to_string() {
        return Err((
            ResponseError::InvalidRequest.code(),
            format!(
                "Unexpected broker id, expected {}, but received {name}",
                broker.config.node_id
            ),
        ));
    }
    Ok(BROKER_PROPS
        .iter()
        .filter(|p| p.usage == Usage::Used && wanted(p.name))
        .map(|p| {
            let value = broker.config.effective(p.name);
            let explicit = broker.config.explicit.contains_key(p.name);
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

/// Validates and applies a new set of topic overrides.
fn apply_topic_configs(
    broker: &SharedBroker,
    topic: &str,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(), AdminError> {
    for (k, v) in &configs {
        topic_config::validate_value(k, v).map_err(|m| {
            (
                ResponseError::InvalidConfig.code(),
                format!("Invalid value {v} for configuration {k}: {m}"),
            )
        })?;
    }
    if validate_only {
        return Ok(());
    }
    let meta = broker
        .metadata
        .set_topic_configs(topic, configs)
        .map_err(|e| (error::metadata_code(&e), e.to_string()))?;
    let lc = topic_config::log_config(&meta.configs, &broker.config.log_defaults);
    for p in 0..meta.partitions {
        if let Some(part) = broker.replicas.get_by(topic, p) {
            part.with_log(|l| l.set_config(lc.clone()));
        }
    }
    tracing::info!(topic = %topic, configs = ?meta.configs, "updated topic configs");
    Ok(())
}

fn broker_alter_refused() -> AdminError {
    (
        ResponseError::InvalidRequest.code(),
        "Dynamic broker configuration is not supported yet; set broker properties in server.properties or with --set".into(),
    )
}

fn topic_meta(broker: &SharedBroker, name: &str) -> Result<crate::metadata::TopicMeta, AdminError> {
    broker.metadata.topic(name).ok_or((
        ResponseError::UnknownTopicOrPartition.code(),
        format!("Topic {name} does not exist"),
    ))
}

pub fn alter(
    broker: &SharedBroker,
    req: AlterConfigsRequest,
    _version: i16,
) -> AlterConfigsResponse {
    let responses = req
        .resources
        .into_iter()
        .map(|res| {
            let outcome = match res.resource_type {
                RESOURCE_TOPIC => topic_meta(broker, &res.resource_name).and_then(|_| {
                    let mut configs = BTreeMap::new();
                    for c in &res.configs {
                        match &c.value {
                            Some(v) => {
                                configs.insert(c.name.to_string(), v.to_string());
                            }
                            None => {
                                return Err((
                                    ResponseError::InvalidRequest.code(),
                                    format!("Null value not supported for {}", c.name),
                                ))
                            }
                        }
                    }
                    apply_topic_configs(broker, &res.resource_name, configs, req.validate_only)
                }),
                RESOURCE_BROKER => Err(broker_alter_refused()),
                t => Err((
                    ResponseError::InvalidRequest.code(),
                    format!("Unsupported resource type {t}"),
                )),
            };
            let mut r = alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name);
            if let Err((code, msg)) = outcome {
                r.error_code = code;
                r.error_message = Some(s(&msg));
            }
            r
        })
        .collect();
    AlterConfigsResponse::default().with_responses(responses)
}

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

pub fn incremental_alter(
    broker: &SharedBroker,
    req: IncrementalAlterConfigsRequest,
    _version: i16,
) -> IncrementalAlterConfigsResponse {
    let responses = req
        .resources
        .into_iter()
        .map(|res| {
            let outcome = match res.resource_type {
                RESOURCE_TOPIC => topic_meta(broker, &res.resource_name).and_then(|meta| {
                    let mut configs = meta.configs.clone();
                    let mut seen = std::collections::HashSet::new();
                    for c in &res.configs {
                        let name = c.name.to_string();
                        if !seen.insert(name.clone()) {
                            return Err((
                                ResponseError::InvalidRequest.code(),
                                format!("Config {name} appears more than once in the request"),
                            ));
                        }
                        let prop = topic_config::topic_prop(&name).ok_or((
                            ResponseError::InvalidConfig.code(),
                            format!("Unknown topic config name: {name}"),
                        ))?;
                        let value = c.value.as_ref().map(|v| v.to_string());
                        match c.config_operation {
                            OP_SET => {
                                let v = value.ok_or((
                                    ResponseError::InvalidRequest.code(),
                                    format!("Null value not supported for SET of {name}"),
                                ))?;
                                configs.insert(name, v);
                            }
                            OP_DELETE => {
                                configs.remove(&name);
                            }
                            OP_APPEND | OP_SUBTRACT => {
                                if prop.ty != ConfigType::List {
                                    return Err((
                                        ResponseError::InvalidConfig.code(),
                                        format!("Config value append/subtract is not allowed for config key {name} which is not a list"),
                                    ));
                                }
                                let current = topic_config::effective(&name, &configs, &broker.config.log_defaults)
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
                                return Err((
                                    ResponseError::InvalidRequest.code(),
                                    format!("Unknown config operation {op}"),
                                ))
                            }
                        }
                    }
                    apply_topic_configs(broker, &res.resource_name, configs, req.validate_only)
                }),
                RESOURCE_BROKER => Err(broker_alter_refused()),
                t => Err((ResponseError::InvalidRequest.code(), format!("Unsupported resource type {t}"))),
            };
            let mut r = incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name);
            if let Err((code, msg)) = outcome {
                r.error_code = code;
                r.error_message = Some(s(&msg));
            }
            r
        })
        .collect();
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
