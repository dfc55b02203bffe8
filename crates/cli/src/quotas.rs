//! Client quotas in `runnel configs` (kafka-configs.sh's `--entity-type users|clients`):
//! `--add-config producer_byte_rate=1048576,consumer_byte_rate=...`, `--delete-config`, and
//! `--describe`, through AlterClientQuotas and DescribeClientQuotas.

use anyhow::{anyhow, bail, Result};
use runnel_client::admin::{alter_client_quotas, describe_client_quotas, QuotaEntity, QuotaMatch};
use runnel_client::Client;

use crate::configs::{is_scram_key, ScramChanges, Who};
use crate::util::{parse_config_list, parse_name_list};

const USER: &str = "user";
const CLIENT_ID: &str = "client-id";

/// What `--alter` on a quota entity changes: SCRAM credentials (users only) and quotas.
#[derive(Debug)]
pub struct QuotaChanges {
    pub entity: QuotaEntity,
    pub scram: Option<ScramChanges>,
    /// `(key, Some(value))` to set, `(key, None)` to remove.
    pub ops: Vec<(String, Option<f64>)>,
}

fn part(who: &Who, what: &str) -> Result<Option<String>> {
    match who {
        Who::Name(n) => Ok(Some(n.clone())),
        Who::Default => Ok(None),
        Who::All => bail!("--entity-name or --entity-default is required to alter {what}"),
    }
}

/// Checks and parses the changes of `--alter` before anything is sent. `scram` parses the
/// SCRAM credential keys of a user entity.
pub fn changes(
    user: &Option<Who>,
    client: &Option<Who>,
    add: Option<&str>,
    delete: Option<&str>,
    scram: impl FnOnce(Option<&str>) -> Result<Option<ScramChanges>>,
) -> Result<QuotaChanges> {
    let mut entity = Vec::new();
    if let Some(u) = user {
        entity.push((USER.to_string(), part(u, "users")?));
    }
    if let Some(c) = client {
        entity.push((CLIENT_ID.to_string(), part(c, "clients")?));
    }
    let scram = match (user, client) {
        (Some(Who::Name(u)), None) => scram(Some(u))?,
        _ => {
            let names_scram = add
                .map(parse_config_list)
                .transpose()?
                .is_some_and(|l| l.iter().any(|(k, _)| is_scram_key(k)))
                || delete.is_some_and(|d| parse_name_list(d).iter().any(|k| is_scram_key(k)));
            if names_scram {
                bail!("SCRAM credentials can only be altered for a named user (--entity-type users --entity-name USER)");
            }
            None
        }
    };
    let mut ops = Vec::new();
    if let Some(add) = add {
        for (k, v) in parse_config_list(add)? {
            if is_scram_key(&k) {
                continue;
            }
            let value: f64 = v
                .trim()
                .parse()
                .map_err(|_| anyhow!("invalid value '{v}' for quota {k}: expected a number"))?;
            ops.push((k, Some(value)));
        }
    }
    if let Some(delete) = delete {
        for k in parse_name_list(delete) {
            if !is_scram_key(&k) {
                ops.push((k, None));
            }
        }
    }
    if ops.is_empty() && scram.is_none() {
        bail!("--alter needs --add-config and/or --delete-config");
    }
    Ok(QuotaChanges { entity, scram, ops })
}

/// Sends the quota changes, if any.
pub async fn alter(client: &mut Client, changes: &QuotaChanges) -> Result<()> {
    if changes.ops.is_empty() {
        return Ok(());
    }
    alter_client_quotas(client, &changes.entity, &changes.ops, false)
        .await?
        .map_err(|e| anyhow!("AlterClientQuotas: {e}"))
}

/// `user-principal 'alice', client-id 'c1'` as kafka-configs.sh names quota entities.
pub fn entity_label(user: &Option<Who>, client: &Option<Who>) -> String {
    let one = |who: &Who, what: &str| match who {
        Who::Name(n) => format!("{what} '{n}'"),
        Who::Default => format!("the default {what}"),
        Who::All => format!("every {what}"),
    };
    let mut parts = Vec::new();
    if let Some(u) = user {
        parts.push(one(u, "user-principal"));
    }
    if let Some(c) = client {
        parts.push(one(c, "client-id"));
    }
    parts.join(", ")
}

fn wire_label(entity: &QuotaEntity) -> String {
    let who = |n: &Option<String>| match n {
        Some(n) => Who::Name(n.clone()),
        None => Who::Default,
    };
    let user = entity.iter().find(|(t, _)| t == USER).map(|(_, n)| who(n));
    let client = entity
        .iter()
        .find(|(t, _)| t == CLIENT_ID)
        .map(|(_, n)| who(n));
    entity_label(&user, &client)
}

/// One `Quota configs for ... are k=v, ...` line, as kafka-configs.sh prints it (values as
/// doubles, `1048576.0`).
pub fn quota_line(entity: &QuotaEntity, values: &[(String, f64)]) -> String {
    let list: Vec<String> = values.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!(
        "Quota configs for {} are {}",
        wire_label(entity),
        list.join(", ")
    )
}

/// Prints the quotas of the entity (or of every entity of its types).
pub async fn describe(
    client: &mut Client,
    user: &Option<Who>,
    who_client: &Option<Who>,
) -> Result<()> {
    let component = |t: &str, who: &Who| {
        (
            t.to_string(),
            match who {
                Who::Name(n) => QuotaMatch::Exact(n.clone()),
                Who::Default => QuotaMatch::Default,
                Who::All => QuotaMatch::Any,
            },
        )
    };
    let mut components = Vec::new();
    if let Some(u) = user {
        components.push(component(USER, u));
    }
    if let Some(c) = who_client {
        components.push(component(CLIENT_ID, c));
    }
    for (entity, values) in describe_client_quotas(client, &components, true).await? {
        println!("{}", quota_line(&entity, &values));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_scram(_: Option<&str>) -> Result<Option<ScramChanges>> {
        Ok(None)
    }

    #[test]
    fn changes_parse_as_kafka_configs_takes_them() {
        let c = changes(
            &None,
            &Some(Who::Name("c1".into())),
            Some("producer_byte_rate=1048576,request_percentage=12.5"),
            Some("consumer_byte_rate"),
            no_scram,
        )
        .unwrap();
        assert_eq!(
            c.entity,
            vec![("client-id".to_string(), Some("c1".to_string()))]
        );
        assert_eq!(
            c.ops,
            vec![
                ("producer_byte_rate".to_string(), Some(1048576.0)),
                ("request_percentage".to_string(), Some(12.5)),
                ("consumer_byte_rate".to_string(), None),
            ]
        );
        let d = changes(
            &Some(Who::Default),
            &Some(Who::Default),
            Some("producer_byte_rate=5"),
            None,
            no_scram,
        )
        .unwrap();
        assert_eq!(
            d.entity,
            vec![("user".to_string(), None), ("client-id".to_string(), None)]
        );
        let err = |u: Option<Who>, c: Option<Who>, add: Option<&str>| {
            format!("{:#}", changes(&u, &c, add, None, no_scram).unwrap_err())
        };
        assert!(err(None, Some(Who::All), Some("producer_byte_rate=5")).contains("--entity-name"));
        assert!(
            err(None, Some(Who::Default), Some("producer_byte_rate=fast"))
                .contains("expected a number")
        );
        assert!(err(None, Some(Who::Default), None).contains("--add-config"));
        assert!(err(
            None,
            Some(Who::Name("c".into())),
            Some("SCRAM-SHA-256=[password=x]")
        )
        .contains("named user"));
    }

    #[test]
    fn describe_lines_match_kafka_configs() {
        let entity = vec![
            ("user".to_string(), Some("alice".to_string())),
            ("client-id".to_string(), None),
        ];
        assert_eq!(
            quota_line(&entity, &[("producer_byte_rate".into(), 1024.0), ("request_percentage".into(), 12.5)]),
            "Quota configs for user-principal 'alice', the default client-id are producer_byte_rate=1024.0, request_percentage=12.5"
        );
    }
}
