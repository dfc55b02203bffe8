//! `runnel configs`: the flags and output of Kafka's `kafka-configs.sh` for topics and brokers,
//! through DescribeConfigs and IncrementalAlterConfigs.

use anyhow::{anyhow, bail, Result};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResourceResult;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{DescribeConfigsRequest, IncrementalAlterConfigsRequest};
use kafka_protocol::protocol::StrBytes;

use crate::util::{parse_config_list, parse_name_list};
use runnel_client::{check, Client, Target};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

#[derive(clap::Args, Debug, Clone)]
pub struct ConfigsArgs {
    /// The Kafka server(s) to connect to (HOST:PORT,...).
    #[arg(long, default_value = "localhost:9092")]
    pub bootstrap_server: String,
    /// Type of entity: topics or brokers.
    #[arg(long)]
    pub entity_type: String,
    /// Name of entity (topic name or broker id).
    #[arg(long)]
    pub entity_name: Option<String>,
    /// The cluster-wide default broker configs (brokers only).
    #[arg(long)]
    pub entity_default: bool,
    /// List configs for the given entity.
    #[arg(long)]
    pub describe: bool,
    /// With --describe: list all configs, not only dynamic ones.
    #[arg(long)]
    pub all: bool,
    /// Alter the configuration for the entity.
    #[arg(long)]
    pub alter: bool,
    /// Key=value pairs to set: k1=v1,k2=[v1,v2,v2],k3=v3.
    #[arg(long)]
    pub add_config: Option<String>,
    /// Config keys to remove: k1,k2.
    #[arg(long)]
    pub delete_config: Option<String>,
    /// Client properties file: security.protocol, sasl.mechanism, sasl.jaas.config, ssl.*,
    /// client.id (Kafka's client property names).
    #[arg(long, value_name = "FILE")]
    pub command_config: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entity {
    Topic(String),
    Broker(i32),
    BrokerDefault,
}

impl Entity {
    fn resource(&self) -> (i8, String) {
        match self {
            Entity::Topic(t) => (RESOURCE_TOPIC, t.clone()),
            Entity::Broker(id) => (RESOURCE_BROKER, id.to_string()),
            Entity::BrokerDefault => (RESOURCE_BROKER, String::new()),
        }
    }

    /// Broker resources must be described/altered on that broker.
    fn target(&self) -> Target {
        match self {
            Entity::Broker(id) => Target::Broker(*id),
            _ => Target::Any,
        }
    }

    fn label(&self) -> String {
        match self {
            Entity::Topic(t) => format!("topic {t}"),
            Entity::Broker(id) => format!("broker {id}"),
            Entity::BrokerDefault => "default broker".to_string(),
        }
    }

    /// Config source kafka-configs.sh lists under "Dynamic configs".
    fn dynamic_source(&self) -> i8 {
        match self {
            Entity::Topic(_) => 1,
            Entity::Broker(_) => 2,
            Entity::BrokerDefault => 3,
        }
    }
}

fn entity(args: &ConfigsArgs) -> Result<Entity> {
    match args.entity_type.as_str() {
        "topics" | "topic" => {
            let name = args
                .entity_name
                .clone()
                .ok_or_else(|| anyhow!("--entity-name is required for --entity-type topics"))?;
            Ok(Entity::Topic(name))
        }
        "brokers" | "broker" => match (&args.entity_name, args.entity_default) {
            (Some(_), true) => bail!("--entity-name and --entity-default cannot both be given"),
            (None, true) => Ok(Entity::BrokerDefault),
            (Some(n), false) => Ok(Entity::Broker(n.parse().map_err(|_| {
                anyhow!(
                    "The entity name for brokers must be a valid integer broker id, but it is: {n}"
                )
            })?)),
            (None, false) => {
                bail!("--entity-name or --entity-default is required for --entity-type brokers")
            }
        },
        other => bail!("Invalid entity type {other}; supported here: topics, brokers"),
    }
}

pub async fn run(args: ConfigsArgs) -> Result<()> {
    if args.describe == args.alter {
        bail!("Command must include exactly one action: --describe, --alter");
    }
    let entity = entity(&args)?;
    let mut client = Client::connect(
        &args.bootstrap_server,
        &crate::util::client_config("runnel-configs", &[args.command_config.as_deref()], &[])?,
    )
    .await?;
    if args.describe {
        describe(&mut client, &entity, args.all).await
    } else {
        alter(&mut client, &entity, &args).await
    }
}

/// Kafka's `ConfigEntry.ConfigSource` name for a DescribeConfigs source code.
pub fn source_name(source: i8) -> &'static str {
    match source {
        1 => "DYNAMIC_TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        5 => "DEFAULT_CONFIG",
        6 => "DYNAMIC_BROKER_LOGGER_CONFIG",
        7 => "CLIENT_METRICS_CONFIG",
        8 => "GROUP_CONFIG",
        _ => "UNKNOWN",
    }
}

/// One `  k=v sensitive=false synonyms={...}` line as kafka-configs.sh prints it.
pub fn format_entry(c: &DescribeConfigsResourceResult) -> String {
    let value = |sensitive: bool, v: &Option<StrBytes>| {
        if sensitive {
            "null".to_string()
        } else {
            v.as_ref()
                .map_or_else(|| "null".to_string(), |v| v.to_string())
        }
    };
    let synonyms = c
        .synonyms
        .iter()
        .map(|s| {
            format!(
                "{}:{}={}",
                source_name(s.source),
                s.name,
                value(c.is_sensitive, &s.value)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "  {}={} sensitive={} synonyms={{{}}}",
        c.name,
        value(c.is_sensitive, &c.value),
        c.is_sensitive,
        synonyms
    )
}

async fn describe(client: &mut Client, entity: &Entity, all: bool) -> Result<()> {
    let (resource_type, name) = entity.resource();
    let mut res = DescribeConfigsResource::default();
    res.resource_type = resource_type;
    res.resource_name = StrBytes::from_string(name);
    res.configuration_keys = None;
    let mut req = DescribeConfigsRequest::default();
    req.resources = vec![res];
    req.include_synonyms = true;
    let resp = client.send_to(entity.target(), &req).await?;
    let result = resp
        .results
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("empty DescribeConfigs response"))?;
    check(result.error_code, result.error_message.as_ref())?;
    let header = match (entity, all) {
        (Entity::BrokerDefault, false) => {
            "Default configs for brokers in the cluster are:".to_string()
        }
        (_, false) => format!("Dynamic configs for {} are:", entity.label()),
        (_, true) => format!("All configs for {} are:", entity.label()),
    };
    println!("{header}");
    let source = entity.dynamic_source();
    let mut configs = result.configs;
    configs.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
    for c in configs.iter().filter(|c| all || c.config_source == source) {
        println!("{}", format_entry(c));
    }
    Ok(())
}

async fn alter(client: &mut Client, entity: &Entity, args: &ConfigsArgs) -> Result<()> {
    let mut configs = Vec::new();
    if let Some(add) = &args.add_config {
        for (k, v) in parse_config_list(add)? {
            let mut c = AlterableConfig::default();
            c.name = StrBytes::from_string(k);
            c.config_operation = OP_SET;
            c.value = Some(StrBytes::from_string(v));
            configs.push(c);
        }
    }
    if let Some(del) = &args.delete_config {
        for k in parse_name_list(del) {
            let mut c = AlterableConfig::default();
            c.name = StrBytes::from_string(k);
            c.config_operation = OP_DELETE;
            c.value = None;
            configs.push(c);
        }
    }
    if configs.is_empty() {
        bail!("--alter needs --add-config and/or --delete-config");
    }
    let (resource_type, name) = entity.resource();
    let mut res = AlterConfigsResource::default();
    res.resource_type = resource_type;
    res.resource_name = StrBytes::from_string(name);
    res.configs = configs;
    let mut req = IncrementalAlterConfigsRequest::default();
    req.resources = vec![res];
    let resp = client.send_to(entity.target(), &req).await?;
    let result = resp
        .responses
        .first()
        .ok_or_else(|| anyhow!("empty IncrementalAlterConfigs response"))?;
    check(result.error_code, result.error_message.as_ref())?;
    match entity {
        Entity::BrokerDefault => {
            println!("Completed updating default config for brokers in the cluster.")
        }
        _ => println!("Completed updating config for {}.", entity.label()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::describe_configs_response::DescribeConfigsSynonym;

    #[test]
    fn config_entry_lines_match_kafka_configs() {
        let mut c = DescribeConfigsResourceResult::default();
        c.name = StrBytes::from_static_str("cleanup.policy");
        c.value = Some(StrBytes::from_static_str("compact"));
        c.config_source = 1;
        let mut s1 = DescribeConfigsSynonym::default();
        s1.name = StrBytes::from_static_str("cleanup.policy");
        s1.value = Some(StrBytes::from_static_str("compact"));
        s1.source = 1;
        let mut s2 = DescribeConfigsSynonym::default();
        s2.name = StrBytes::from_static_str("log.cleanup.policy");
        s2.value = Some(StrBytes::from_static_str("delete"));
        s2.source = 5;
        c.synonyms = vec![s1, s2];
        assert_eq!(
            format_entry(&c),
            "  cleanup.policy=compact sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:cleanup.policy=compact, DEFAULT_CONFIG:log.cleanup.policy=delete}"
        );
    }

    #[test]
    fn entities_parse() {
        let args = |t: &str, n: Option<&str>, d: bool| ConfigsArgs {
            bootstrap_server: String::new(),
            entity_type: t.into(),
            entity_name: n.map(Into::into),
            entity_default: d,
            describe: true,
            all: false,
            alter: false,
            add_config: None,
            delete_config: None,
            command_config: None,
        };
        assert_eq!(
            entity(&args("topics", Some("t"), false)).unwrap(),
            Entity::Topic("t".into())
        );
        assert_eq!(
            entity(&args("brokers", Some("3"), false)).unwrap(),
            Entity::Broker(3)
        );
        assert_eq!(
            entity(&args("brokers", None, true)).unwrap(),
            Entity::BrokerDefault
        );
        assert!(entity(&args("brokers", Some("x"), false)).is_err());
        assert!(entity(&args("users", Some("x"), false)).is_err());
    }
}
