//! `runnel configs`: the flags and output of Kafka's `kafka-configs.sh` for topics and brokers,
//! through DescribeConfigs and IncrementalAlterConfigs, and for users' SCRAM credentials,
//! through DescribeUserScramCredentials and AlterUserScramCredentials (the client salts and
//! hashes the password; the password itself never leaves this process), and for client quotas
//! of users and client ids, through DescribeClientQuotas and AlterClientQuotas.

use anyhow::{anyhow, bail, Result};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResourceResult;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{DescribeConfigsRequest, IncrementalAlterConfigsRequest};
use kafka_protocol::protocol::StrBytes;

use crate::util::{parse_config_list, parse_name_list};
use runnel_client::admin::{
    alter_user_scram_credentials, describe_user_scram_credentials, ScramUpsertion,
};
use runnel_client::{check, Client, Target};
use runnel_security::scram::{ScramMechanism, MIN_ITERATIONS};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const RESOURCE_NOT_FOUND: i16 = 91;

#[derive(clap::Args, Debug, Clone)]
pub struct ConfigsArgs {
    /// The Kafka server(s) to connect to (HOST:PORT,...).
    #[arg(long, default_value = "localhost:9092")]
    pub bootstrap_server: String,
    /// Type of entity: topics, brokers, users or clients; users and clients may both be given
    /// (each followed by its --entity-name).
    #[arg(long)]
    pub entity_type: Vec<String>,
    /// Name of entity (topic name, broker id, user name or client id), in the order of the
    /// --entity-type flags.
    #[arg(long)]
    pub entity_name: Vec<String>,
    /// The default entity: the cluster-wide default broker configs, or the default user's or
    /// client id's quotas.
    #[arg(long)]
    pub entity_default: bool,
    /// Shorthand for --entity-type users --entity-name USER.
    #[arg(long)]
    pub user: Option<String>,
    /// Shorthand for --entity-type clients --entity-name CLIENT.
    #[arg(long)]
    pub client: Option<String>,
    /// Shorthand for --entity-type users --entity-default.
    #[arg(long)]
    pub user_defaults: bool,
    /// Shorthand for --entity-type clients --entity-default.
    #[arg(long)]
    pub client_defaults: bool,
    /// List configs for the given entity.
    #[arg(long)]
    pub describe: bool,
    /// With --describe: list all configs, not only dynamic ones.
    #[arg(long)]
    pub all: bool,
    /// Alter the configuration for the entity.
    #[arg(long)]
    pub alter: bool,
    /// Key=value pairs to set: k1=v1,k2=[v1,v2,v2],k3=v3; for users
    /// 'SCRAM-SHA-256=[iterations=8192,password=alice-secret]'.
    #[arg(long)]
    pub add_config: Option<String>,
    /// Config keys to remove: k1,k2; for users SCRAM-SHA-256 and/or SCRAM-SHA-512.
    #[arg(long)]
    pub delete_config: Option<String>,
    /// Client properties file: security.protocol, sasl.mechanism, sasl.jaas.config, ssl.*,
    /// client.id (Kafka's client property names).
    #[arg(long, value_name = "FILE")]
    pub command_config: Option<std::path::PathBuf>,
}

/// A user or client id a quota entity names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    Name(String),
    Default,
    /// Describe only: every user (or client id), named or default.
    All,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entity {
    Topic(String),
    Broker(i32),
    BrokerDefault,
    /// Client quotas of a user, a client id or both (and a user's SCRAM credentials).
    Quota {
        user: Option<Who>,
        client: Option<Who>,
    },
}

impl Entity {
    fn resource(&self) -> (i8, String) {
        match self {
            Entity::Topic(t) => (RESOURCE_TOPIC, t.clone()),
            Entity::Broker(id) => (RESOURCE_BROKER, id.to_string()),
            Entity::BrokerDefault => (RESOURCE_BROKER, String::new()),
            Entity::Quota { .. } => unreachable!("quota entities have no config resource"),
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
            Entity::Quota { user, client } => crate::quotas::entity_label(user, client),
        }
    }

    /// Config source kafka-configs.sh lists under "Dynamic configs".
    fn dynamic_source(&self) -> i8 {
        match self {
            Entity::Topic(_) => 1,
            Entity::Broker(_) => 2,
            Entity::BrokerDefault => 3,
            Entity::Quota { .. } => 0,
        }
    }
}

fn entity(args: &ConfigsArgs) -> Result<Entity> {
    let shorthand =
        args.user.is_some() || args.client.is_some() || args.user_defaults || args.client_defaults;
    if shorthand {
        if !args.entity_type.is_empty() {
            bail!("--user/--client/--user-defaults/--client-defaults cannot be combined with --entity-type");
        }
        let pick = |name: &Option<String>, default: bool, flag: &str| match (name, default) {
            (Some(_), true) => bail!("--{flag} and --{flag}-defaults cannot both be given"),
            (Some(n), false) => Ok(Some(Who::Name(n.clone()))),
            (None, true) => Ok(Some(Who::Default)),
            (None, false) => Ok(None),
        };
        return Ok(Entity::Quota {
            user: pick(&args.user, args.user_defaults, "user")?,
            client: pick(&args.client, args.client_defaults, "client")?,
        });
    }
    let types: Vec<&str> = args
        .entity_type
        .iter()
        .map(|t| match t.as_str() {
            "topic" => "topics",
            "broker" => "brokers",
            "user" => "users",
            "client" => "clients",
            other => other,
        })
        .collect();
    let names = &args.entity_name;
    let single = |kind: &str| -> Result<Option<String>> {
        match names.len() {
            0 => Ok(None),
            1 => Ok(Some(names[0].clone())),
            _ => bail!("only one --entity-name may be given for --entity-type {kind}"),
        }
    };
    let who = |name: Option<String>, default: bool| -> Result<Who> {
        match (name, default) {
            (Some(_), true) => bail!("--entity-name and --entity-default cannot both be given"),
            (Some(n), false) => Ok(Who::Name(n)),
            (None, true) => Ok(Who::Default),
            (None, false) => Ok(Who::All),
        }
    };
    match types.as_slice() {
        [] => bail!("--entity-type is required (topics, brokers, users or clients)"),
        ["topics"] => {
            let name = single("topics")?
                .ok_or_else(|| anyhow!("--entity-name is required for --entity-type topics"))?;
            Ok(Entity::Topic(name))
        }
        ["brokers"] => match (single("brokers")?, args.entity_default) {
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
        ["users"] => Ok(Entity::Quota {
            user: Some(who(single("users")?, args.entity_default)?),
            client: None,
        }),
        ["clients"] => Ok(Entity::Quota {
            user: None,
            client: Some(who(single("clients")?, args.entity_default)?),
        }),
        [a, b] if [*a, *b] == ["users", "clients"] || [*a, *b] == ["clients", "users"] => {
            if args.entity_default {
                bail!("with both users and clients, name defaults with --user-defaults and/or --client-defaults");
            }
            let (u, c) = match names.len() {
                0 => (Who::All, Who::All),
                2 if *a == "users" => (Who::Name(names[0].clone()), Who::Name(names[1].clone())),
                2 => (Who::Name(names[1].clone()), Who::Name(names[0].clone())),
                _ => bail!("give one --entity-name for each --entity-type, or none to describe all"),
            };
            Ok(Entity::Quota {
                user: Some(u),
                client: Some(c),
            })
        }
        _ => bail!(
            "Invalid entity type {}; supported: topics, brokers, users, clients (users and clients together)",
            args.entity_type.join(", ")
        ),
    }
}

pub async fn run(args: ConfigsArgs) -> Result<()> {
    if args.describe == args.alter {
        bail!("Command must include exactly one action: --describe, --alter");
    }
    let entity = entity(&args)?;
    // Check the changes before connecting.
    let changes = match &entity {
        Entity::Quota { user, client } if args.alter => Some(crate::quotas::changes(
            user,
            client,
            args.add_config.as_deref(),
            args.delete_config.as_deref(),
            |user| scram_changes(&args, user),
        )?),
        _ => None,
    };
    let mut client = Client::connect(
        &args.bootstrap_server,
        &crate::util::client_config("runnel-configs", &[args.command_config.as_deref()], &[])?,
    )
    .await?;
    match (&entity, args.describe) {
        (Entity::Quota { user, client: c }, true) => {
            crate::quotas::describe(&mut client, user, c).await?;
            match (user, c) {
                (Some(Who::Name(u)), None) => describe_users(&mut client, Some(u)).await,
                (Some(Who::All), None) => describe_users(&mut client, None).await,
                _ => Ok(()),
            }
        }
        (Entity::Quota { .. }, false) => {
            let changes = changes.expect("checked above");
            if let Some(scram) = &changes.scram {
                alter_users(&mut client, scram).await?;
            }
            crate::quotas::alter(&mut client, &changes).await?;
            println!("Completed updating config for {}.", entity.label());
            Ok(())
        }
        (_, true) => describe(&mut client, &entity, args.all).await,
        (_, false) => alter(&mut client, &entity, &args).await,
    }
}

/// The SCRAM credential changes of `--alter --entity-type users`: upsertions (with the
/// password) and deletions.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ScramChanges {
    user: String,
    /// `(mechanism, iterations, password)`
    upsertions: Vec<(ScramMechanism, i32, String)>,
    deletions: Vec<ScramMechanism>,
}

fn scram_mechanism(name: &str) -> Result<ScramMechanism> {
    ScramMechanism::from_name(name.trim()).ok_or_else(|| {
        anyhow!(
            "'{}' is not a SCRAM mechanism: for --entity-type users only SCRAM-SHA-256 and \
             SCRAM-SHA-512 can be set or deleted",
            name.trim()
        )
    })
}

/// Whether a `--add-config`/`--delete-config` key of a user names a SCRAM credential (the
/// others are quotas).
pub fn is_scram_key(key: &str) -> bool {
    key.trim().starts_with("SCRAM-")
}

/// Parses `--add-config 'SCRAM-SHA-256=[iterations=8192,password=secret]'` and
/// `--delete-config SCRAM-SHA-512`; keys that are not SCRAM credentials are skipped. `None`
/// when the arguments name no SCRAM credential.
fn scram_changes(args: &ConfigsArgs, user: Option<&str>) -> Result<Option<ScramChanges>> {
    let named = args
        .add_config
        .as_deref()
        .map(|a| parse_config_list(a).map(|l| l.iter().any(|(k, _)| is_scram_key(k))))
        .transpose()?
        .unwrap_or(false)
        || args
            .delete_config
            .as_deref()
            .is_some_and(|d| parse_name_list(d).iter().any(|k| is_scram_key(k)));
    if !named {
        return Ok(None);
    }
    let user = user
        .filter(|u| !u.is_empty())
        .ok_or_else(|| anyhow!("--entity-name is required to alter --entity-type users"))?;
    let mut out = ScramChanges {
        user: user.to_string(),
        ..ScramChanges::default()
    };
    if let Some(add) = &args.add_config {
        for (k, v) in parse_config_list(add)? {
            if !is_scram_key(&k) {
                continue;
            }
            let mechanism = scram_mechanism(&k)?;
            let (mut iterations, mut password) = (MIN_ITERATIONS, None);
            for item in v.split(',').filter(|i| !i.trim().is_empty()) {
                let (name, value) = item.split_once('=').ok_or_else(|| {
                    anyhow!("invalid {k} setting '{item}': expected iterations=N or password=P")
                })?;
                match name.trim() {
                    "iterations" => {
                        iterations = value.trim().parse().map_err(|_| {
                            anyhow!("invalid {k} iterations '{value}': expected an integer")
                        })?
                    }
                    "password" => password = Some(value.to_string()),
                    "salt" => bail!(
                        "{k}: salt cannot be given here: a random salt is generated for each \
                         credential"
                    ),
                    other => {
                        bail!("invalid {k} setting '{other}': expected iterations=N or password=P")
                    }
                }
            }
            let password = password.filter(|p| !p.is_empty()).ok_or_else(|| {
                anyhow!("{k} needs a password: --add-config '{k}=[password=...]'")
            })?;
            out.upsertions.push((mechanism, iterations, password));
        }
    }
    if let Some(del) = &args.delete_config {
        for k in parse_name_list(del).into_iter().filter(|k| is_scram_key(k)) {
            out.deletions.push(scram_mechanism(&k)?);
        }
    }
    Ok(Some(out))
}

/// Kafka's line for a user's credentials.
fn scram_line(user: &str, credentials: &[(ScramMechanism, i32)]) -> String {
    let list: Vec<String> = credentials
        .iter()
        .map(|(m, i)| format!("{}=iterations={i}", m.name()))
        .collect();
    format!(
        "SCRAM credential configs for user-principal '{user}' are {}",
        list.join(", ")
    )
}

async fn describe_users(client: &mut Client, user: Option<&str>) -> Result<()> {
    let users = user.map(|u| vec![u.to_string()]);
    let results = describe_user_scram_credentials(client, users.as_deref()).await?;
    for r in results {
        match r.credentials {
            Ok(c) if !c.is_empty() => println!("{}", scram_line(&r.user, &c)),
            Ok(_) => {}
            // A named user without credentials has nothing to show, as in Kafka.
            Err(e) if e.code == RESOURCE_NOT_FOUND => {}
            Err(e) => bail!("DescribeUserScramCredentials for user '{}': {e}", r.user),
        }
    }
    Ok(())
}

async fn alter_users(client: &mut Client, changes: &ScramChanges) -> Result<()> {
    let deletions: Vec<(String, ScramMechanism)> = changes
        .deletions
        .iter()
        .map(|m| (changes.user.clone(), *m))
        .collect();
    let upsertions: Vec<ScramUpsertion> = changes
        .upsertions
        .iter()
        .map(|(m, i, p)| ScramUpsertion::from_password(&changes.user, *m, *i, p))
        .collect();
    let results = alter_user_scram_credentials(client, &deletions, &upsertions).await?;
    for (user, r) in &results {
        r.clone()
            .map_err(|e| anyhow!("AlterUserScramCredentials for user '{user}': {e}"))?;
    }
    if results.is_empty() {
        bail!("AlterUserScramCredentials answered no result");
    }
    Ok(())
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
            entity_type: vec![t.into()],
            entity_name: n.map(Into::into).into_iter().collect(),
            entity_default: d,
            user: None,
            client: None,
            user_defaults: false,
            client_defaults: false,
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
        assert_eq!(
            entity(&args("users", Some("alice"), false)).unwrap(),
            Entity::Quota {
                user: Some(Who::Name("alice".into())),
                client: None
            }
        );
        assert_eq!(
            entity(&args("users", None, false)).unwrap(),
            Entity::Quota {
                user: Some(Who::All),
                client: None
            }
        );
        assert_eq!(
            entity(&args("clients", None, true)).unwrap(),
            Entity::Quota {
                user: None,
                client: Some(Who::Default)
            }
        );
        assert!(entity(&args("groups", Some("x"), false)).is_err());
        let mut both = args("users", Some("alice"), false);
        both.entity_type.push("clients".into());
        both.entity_name.push("c1".into());
        assert_eq!(
            entity(&both).unwrap(),
            Entity::Quota {
                user: Some(Who::Name("alice".into())),
                client: Some(Who::Name("c1".into()))
            }
        );
        let mut short = args("users", None, false);
        short.entity_type.clear();
        short.user = Some("bob".into());
        short.client_defaults = true;
        assert_eq!(
            entity(&short).unwrap(),
            Entity::Quota {
                user: Some(Who::Name("bob".into())),
                client: Some(Who::Default)
            }
        );
    }

    fn alter_args(add: Option<&str>, delete: Option<&str>) -> ConfigsArgs {
        ConfigsArgs {
            bootstrap_server: String::new(),
            entity_type: vec!["users".into()],
            entity_name: vec!["alice".into()],
            entity_default: false,
            user: None,
            client: None,
            user_defaults: false,
            client_defaults: false,
            describe: false,
            all: false,
            alter: true,
            add_config: add.map(Into::into),
            delete_config: delete.map(Into::into),
            command_config: None,
        }
    }

    #[test]
    fn scram_alterations_parse() {
        let c = scram_changes(
            &alter_args(
                Some("SCRAM-SHA-256=[iterations=8192,password=alice-secret],SCRAM-SHA-512=[password=p=q]"),
                Some("SCRAM-SHA-512"),
            ),
            Some("alice"),
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.user, "alice");
        assert_eq!(
            c.upsertions,
            vec![
                (ScramMechanism::Sha256, 8192, "alice-secret".to_string()),
                (ScramMechanism::Sha512, MIN_ITERATIONS, "p=q".to_string()),
            ]
        );
        assert_eq!(c.deletions, vec![ScramMechanism::Sha512]);
        let e = |add: Option<&str>, del: Option<&str>, user: Option<&str>| {
            format!(
                "{:#}",
                scram_changes(&alter_args(add, del), user).unwrap_err()
            )
        };
        assert!(e(Some("SCRAM-SHA-256=[password=x]"), None, None).contains("--entity-name"));
        assert!(scram_changes(
            &alter_args(Some("producer_byte_rate=1024"), None),
            Some("a")
        )
        .unwrap()
        .is_none());
        assert!(e(Some("SCRAM-SHA-256=[iterations=8192]"), None, Some("a"))
            .contains("needs a password"));
        assert!(e(
            Some("SCRAM-SHA-256=[iterations=many,password=x]"),
            None,
            Some("a")
        )
        .contains("expected an integer"));
        assert!(
            e(Some("SCRAM-SHA-256=[salt=abc,password=x]"), None, Some("a")).contains("random salt")
        );
        assert!(e(None, Some("SCRAM-SHA-1"), Some("a")).contains("not a SCRAM mechanism"));
    }

    #[test]
    fn scram_describe_line_matches_kafka_configs() {
        assert_eq!(
            scram_line(
                "alice",
                &[(ScramMechanism::Sha256, 8192), (ScramMechanism::Sha512, 4096)]
            ),
            "SCRAM credential configs for user-principal 'alice' are SCRAM-SHA-256=iterations=8192, SCRAM-SHA-512=iterations=4096"
        );
    }
}
