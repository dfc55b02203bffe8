//! `runnel acls`: the flags and output of Kafka's `kafka-acls.sh`, through CreateAcls,
//! DescribeAcls and DeleteAcls.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;

use anyhow::{bail, Result};
use runnel_client::admin::{create_acls, delete_acls, describe_acls};
use runnel_client::Client;
use runnel_security::acl::{
    parse_principal, AccessControlEntry, AclBinding, AclBindingFilter, AclOperation,
    AclPermissionType, PatternType, ResourcePattern, ResourceType, CLUSTER_NAME, WILDCARD_HOST,
};

#[derive(clap::Args, Debug, Clone, Default)]
pub struct AclsArgs {
    /// REQUIRED: the Kafka server(s) to connect to (HOST:PORT,...).
    #[arg(long, default_value = "localhost:9092")]
    pub bootstrap_server: String,
    /// Client properties file: security.protocol, sasl.mechanism, sasl.jaas.config, ssl.*,
    /// client.id (Kafka's client property names).
    #[arg(long, value_name = "FILE")]
    pub command_config: Option<std::path::PathBuf>,
    /// Add ACLs.
    #[arg(long)]
    pub add: bool,
    /// Remove ACLs.
    #[arg(long)]
    pub remove: bool,
    /// List ACLs for the given resources (all ACLs when none is given).
    #[arg(long)]
    pub list: bool,
    /// A principal to allow, as Type:name (User:alice, User:*); repeatable.
    #[arg(long, value_name = "PRINCIPAL")]
    pub allow_principal: Vec<String>,
    /// A principal to deny, as Type:name; repeatable.
    #[arg(long, value_name = "PRINCIPAL")]
    pub deny_principal: Vec<String>,
    /// A host (IP address) the allowed principals may connect from; default all hosts (*).
    #[arg(long, value_name = "HOST")]
    pub allow_host: Vec<String>,
    /// A host (IP address) the denied principals are denied from; default all hosts (*).
    #[arg(long, value_name = "HOST")]
    pub deny_host: Vec<String>,
    /// With --list: only the ACLs of this principal; repeatable.
    #[arg(long, value_name = "PRINCIPAL")]
    pub principal: Vec<String>,
    /// An operation (Read, Write, Create, Delete, Alter, Describe, ClusterAction,
    /// DescribeConfigs, AlterConfigs, IdempotentWrite, CreateTokens, DescribeTokens, All);
    /// repeatable; default All.
    #[arg(long, value_name = "OPERATION")]
    pub operation: Vec<String>,
    /// A topic ('*' for every topic); repeatable.
    #[arg(long, value_name = "TOPIC")]
    pub topic: Vec<String>,
    /// A consumer group ('*' for every group); repeatable.
    #[arg(long, value_name = "GROUP")]
    pub group: Vec<String>,
    /// The cluster resource.
    #[arg(long)]
    pub cluster: bool,
    /// A transactional id ('*' for every one); repeatable.
    #[arg(long, value_name = "TRANSACTIONAL_ID")]
    pub transactional_id: Vec<String>,
    /// How resource names are matched: literal (default) or prefixed; match and any also for
    /// --list and --remove.
    #[arg(long, default_value = "literal", value_name = "TYPE")]
    pub resource_pattern_type: String,
    /// The ACLs a producer needs: Write, Describe and Create on the topics (Write and Describe
    /// on transactional ids).
    #[arg(long)]
    pub producer: bool,
    /// The ACLs a consumer needs: Read and Describe on the topics, Read on the group.
    #[arg(long)]
    pub consumer: bool,
    /// With --producer: also IdempotentWrite on the cluster.
    #[arg(long)]
    pub idempotent: bool,
    /// Do not ask for confirmation before removing ACLs.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Add,
    Remove,
    List,
}

/// The resources named on the command line, as patterns of `pattern_type`.
fn resources(args: &AclsArgs, pattern_type: PatternType) -> Vec<ResourcePattern> {
    let mut out = Vec::new();
    for t in &args.topic {
        out.push(ResourcePattern::new(ResourceType::Topic, t, pattern_type));
    }
    if args.cluster {
        out.push(ResourcePattern::new(
            ResourceType::Cluster,
            CLUSTER_NAME,
            pattern_type,
        ));
    }
    for g in &args.group {
        out.push(ResourcePattern::new(ResourceType::Group, g, pattern_type));
    }
    for t in &args.transactional_id {
        out.push(ResourcePattern::new(
            ResourceType::TransactionalId,
            t,
            pattern_type,
        ));
    }
    out
}

/// The operations Kafka accepts on each resource type (besides All).
fn supported_operations(t: ResourceType) -> &'static [AclOperation] {
    use AclOperation::*;
    match t {
        ResourceType::Topic => &[
            Read,
            Write,
            Create,
            Describe,
            Delete,
            Alter,
            DescribeConfigs,
            AlterConfigs,
        ],
        ResourceType::Group => &[Read, Describe, Delete],
        ResourceType::Cluster => &[
            Create,
            ClusterAction,
            DescribeConfigs,
            AlterConfigs,
            IdempotentWrite,
            Alter,
            Describe,
        ],
        ResourceType::TransactionalId => &[Describe, Write],
        ResourceType::DelegationToken => &[Describe],
        ResourceType::User => &[CreateTokens, DescribeTokens],
        _ => &[],
    }
}

fn check_principal(p: &str) -> Result<String> {
    let p = p.trim();
    match parse_principal(p) {
        Some((t, n)) if !t.is_empty() && !n.is_empty() => Ok(p.to_string()),
        _ => bail!(
            "Could not parse principal from `{p}`: expected a string in format \
             principalType:principalName, e.g. User:alice"
        ),
    }
}

fn parse_operation(s: &str) -> Result<AclOperation> {
    match s.parse::<AclOperation>() {
        Ok(op) if !matches!(op, AclOperation::Unknown | AclOperation::Any) => Ok(op),
        _ => bail!(
            "invalid --operation '{s}': expected one of Read, Write, Create, Delete, Alter, \
             Describe, ClusterAction, DescribeConfigs, AlterConfigs, IdempotentWrite, \
             CreateTokens, DescribeTokens, All"
        ),
    }
}

/// The entries `--allow-*` / `--deny-*` describe for `operations`. A principal without host
/// flags applies from every host, as in Kafka.
fn entries(args: &AclsArgs, operations: &[AclOperation]) -> Result<BTreeSet<AccessControlEntry>> {
    let mut out = BTreeSet::new();
    for (principals, hosts, permission) in [
        (
            &args.allow_principal,
            &args.allow_host,
            AclPermissionType::Allow,
        ),
        (
            &args.deny_principal,
            &args.deny_host,
            AclPermissionType::Deny,
        ),
    ] {
        let hosts: Vec<String> = if hosts.is_empty() {
            vec![WILDCARD_HOST.to_string()]
        } else {
            hosts.iter().map(|h| h.trim().to_string()).collect()
        };
        for p in principals {
            let principal = check_principal(p)?;
            for host in &hosts {
                for op in operations {
                    out.insert(AccessControlEntry {
                        principal: principal.clone(),
                        host: host.clone(),
                        operation: *op,
                        permission,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// What `--add` / `--remove` apply to each resource: the --producer / --consumer sets, or the
/// --operation list on every named resource.
fn resource_acls(
    args: &AclsArgs,
    pattern_type: PatternType,
) -> Result<BTreeMap<ResourcePattern, BTreeSet<AccessControlEntry>>> {
    use AclOperation::*;
    let mut out: BTreeMap<ResourcePattern, BTreeSet<AccessControlEntry>> = BTreeMap::new();
    let mut put = |pattern: ResourcePattern, ops: &[AclOperation]| -> Result<()> {
        out.entry(pattern).or_default().extend(entries(args, ops)?);
        Ok(())
    };
    if args.producer || args.consumer {
        for p in resources(args, pattern_type) {
            let ops: &[AclOperation] = match p.resource_type {
                ResourceType::Topic if args.producer && args.consumer => {
                    &[Write, Describe, Create, Read]
                }
                ResourceType::Topic if args.producer => &[Write, Describe, Create],
                ResourceType::Topic => &[Read, Describe],
                ResourceType::TransactionalId if args.producer => &[Write, Describe],
                ResourceType::Group if args.consumer => &[Read],
                _ => continue,
            };
            put(p, ops)?;
        }
        if args.producer && args.idempotent {
            put(
                ResourcePattern::new(ResourceType::Cluster, CLUSTER_NAME, pattern_type),
                &[IdempotentWrite],
            )?;
        }
        return Ok(out);
    }
    let operations: Vec<AclOperation> = if args.operation.is_empty() {
        vec![All]
    } else {
        args.operation
            .iter()
            .map(|o| parse_operation(o))
            .collect::<Result<_>>()?
    };
    for p in resources(args, pattern_type) {
        let supported = supported_operations(p.resource_type);
        if let Some(bad) = operations
            .iter()
            .find(|o| **o != All && !supported.contains(o))
        {
            bail!(
                "ResourceType {} only supports operations {}; {} is not one of them",
                p.resource_type.enum_name(),
                std::iter::once(All)
                    .chain(supported.iter().copied())
                    .map(|o| o.enum_name())
                    .collect::<Vec<_>>()
                    .join(","),
                bad.enum_name()
            );
        }
        put(p, &operations)?;
    }
    Ok(out)
}

/// Checks the flag combinations kafka-acls.sh refuses; returns the action and pattern type.
fn validate(args: &AclsArgs) -> Result<(Action, PatternType)> {
    let action = match (args.add, args.remove, args.list) {
        (true, false, false) => Action::Add,
        (false, true, false) => Action::Remove,
        (false, false, true) => Action::List,
        _ => bail!("Command must include exactly one action: --list, --add, --remove."),
    };
    let pattern_type = match args.resource_pattern_type.parse::<PatternType>() {
        Ok(PatternType::Unknown) | Err(_) => bail!(
            "invalid --resource-pattern-type '{}': expected literal, prefixed, match or any",
            args.resource_pattern_type
        ),
        Ok(t) => t,
    };
    let has_resource = !args.topic.is_empty()
        || !args.group.is_empty()
        || args.cluster
        || !args.transactional_id.is_empty();
    match action {
        Action::Add => {
            if matches!(pattern_type, PatternType::Any | PatternType::Match) {
                bail!(
                    "A '--resource-pattern-type' value of 'any' and 'match' is not valid when \
                     adding acls."
                );
            }
            if args.allow_principal.is_empty() && args.deny_principal.is_empty() {
                bail!(
                    "You must specify one of: --allow-principal, --deny-principal when trying \
                     to add ACLs."
                );
            }
        }
        Action::List => {
            let invalid = [
                ("--producer", args.producer),
                ("--consumer", args.consumer),
                ("--allow-principal", !args.allow_principal.is_empty()),
                ("--deny-principal", !args.deny_principal.is_empty()),
                ("--allow-host", !args.allow_host.is_empty()),
                ("--deny-host", !args.deny_host.is_empty()),
                ("--operation", !args.operation.is_empty()),
            ];
            if let Some((flag, _)) = invalid.iter().find(|(_, set)| *set) {
                bail!("Option \"--list\" can't be used with option \"{flag}\"");
            }
        }
        Action::Remove => {}
    }
    if !args.principal.is_empty() && action != Action::List {
        bail!("Option \"--principal\" is only valid with \"--list\"");
    }
    if args.producer || args.consumer {
        for (flag, set) in [
            ("--operation", !args.operation.is_empty()),
            ("--deny-principal", !args.deny_principal.is_empty()),
            ("--deny-host", !args.deny_host.is_empty()),
        ] {
            if set {
                let with = if args.producer {
                    "--producer"
                } else {
                    "--consumer"
                };
                bail!("Option \"{with}\" can't be used with option \"{flag}\"");
            }
        }
        if args.producer && args.topic.is_empty() && args.transactional_id.is_empty() {
            bail!("With --producer you must specify a --topic or a --transactional-id");
        }
        if args.consumer
            && (args.topic.is_empty()
                || args.group.is_empty()
                || (!args.producer && (args.cluster || !args.transactional_id.is_empty())))
        {
            bail!(
                "With --consumer you must specify a --topic and a --group and no --cluster or \
                 --transactional-id option should be specified."
            );
        }
    } else if action != Action::List && !has_resource {
        bail!(
            "You must provide at least one resource: --topic <topic> or --cluster or --group \
             <group> or --transactional-id <id>"
        );
    }
    if args.idempotent && !args.producer {
        bail!("The --idempotent option is only available if --producer is set");
    }
    Ok((action, pattern_type))
}

/// One block of kafka-acls.sh output: `<what> `<pattern>`: ` and the entries, one a line.
pub fn format_block<'a>(
    what: &str,
    pattern: &str,
    entries: impl IntoIterator<Item = &'a AccessControlEntry>,
) -> String {
    let lines: Vec<String> = entries.into_iter().map(|e| format!("\t{e}")).collect();
    format!("{what} `{pattern}`: \n {} \n", lines.join("\n"))
}

/// Bindings grouped by resource pattern, in a stable order.
fn group(bindings: Vec<AclBinding>) -> BTreeMap<ResourcePattern, BTreeSet<AccessControlEntry>> {
    let mut out: BTreeMap<ResourcePattern, BTreeSet<AccessControlEntry>> = BTreeMap::new();
    for b in bindings {
        out.entry(b.pattern).or_default().insert(b.entry);
    }
    out
}

fn filter_of(pattern: &ResourcePattern) -> AclBindingFilter {
    AclBindingFilter {
        resource_type: pattern.resource_type,
        name: Some(pattern.name.clone()),
        pattern_type: pattern.pattern_type,
        ..AclBindingFilter::any()
    }
}

/// Prints the ACLs matching `filters` as kafka-acls.sh does ("Current ACLs for resource").
async fn list(
    client: &mut Client,
    filters: &[AclBindingFilter],
    principals: &[String],
) -> Result<()> {
    let mut found = Vec::new();
    for f in filters {
        found.extend(describe_acls(client, f).await?);
    }
    let print = |bindings: BTreeMap<ResourcePattern, BTreeSet<AccessControlEntry>>| {
        for (pattern, entries) in bindings {
            println!(
                "{}",
                format_block("Current ACLs for resource", &pattern.to_string(), &entries)
            );
        }
    };
    if principals.is_empty() {
        print(group(found));
    } else {
        for p in principals {
            let p = check_principal(p)?;
            println!("ACLs for principal `{p}`");
            print(group(
                found
                    .iter()
                    .filter(|b| b.entry.principal == p)
                    .cloned()
                    .collect(),
            ));
        }
    }
    Ok(())
}

/// Asks `question` on the terminal; true for "y".
fn confirm(question: &str) -> bool {
    println!("{question}");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).is_ok() && line.trim().eq_ignore_ascii_case("y")
}

pub async fn run(args: AclsArgs) -> Result<()> {
    let (action, pattern_type) = validate(&args)?;
    let config = crate::util::client_config("runnel-acls", &[args.command_config.as_deref()], &[])?;
    match action {
        Action::List => {
            let patterns = resources(&args, pattern_type);
            let filters: Vec<AclBindingFilter> = if patterns.is_empty() {
                vec![AclBindingFilter::any()]
            } else {
                patterns.iter().map(filter_of).collect()
            };
            let mut client = Client::connect(&args.bootstrap_server, &config).await?;
            list(&mut client, &filters, &args.principal).await
        }
        Action::Add => {
            let acls = resource_acls(&args, pattern_type)?;
            let mut client = Client::connect(&args.bootstrap_server, &config).await?;
            let mut failures = Vec::new();
            for (pattern, entries) in &acls {
                println!(
                    "{}",
                    format_block("Adding ACLs for resource", &pattern.to_string(), entries)
                );
                let bindings: Vec<AclBinding> = entries
                    .iter()
                    .map(|e| AclBinding {
                        pattern: pattern.clone(),
                        entry: e.clone(),
                    })
                    .collect();
                let results = create_acls(&mut client, &bindings).await?;
                for (b, r) in bindings.iter().zip(results) {
                    if let Err(e) = r {
                        failures.push(format!("{} {}: {e}", b.pattern, b.entry));
                    }
                }
            }
            let filters: Vec<AclBindingFilter> = acls.keys().map(filter_of).collect();
            list(&mut client, &filters, &[]).await?;
            if !failures.is_empty() {
                bail!(
                    "Error while executing ACL command: {} ACL(s) not created: {}",
                    failures.len(),
                    failures.join("; ")
                );
            }
            Ok(())
        }
        Action::Remove => {
            let patterns: Vec<ResourcePattern> = if args.producer || args.consumer {
                resource_acls(&args, pattern_type)?.into_keys().collect()
            } else {
                resources(&args, pattern_type)
            };
            let with_principals =
                !args.allow_principal.is_empty() || !args.deny_principal.is_empty();
            let acls = if with_principals {
                resource_acls(&args, pattern_type)?
            } else {
                BTreeMap::new()
            };
            let mut client = Client::connect(&args.bootstrap_server, &config).await?;
            let mut failures = Vec::new();
            for pattern in &patterns {
                let filters: Vec<AclBindingFilter> = if with_principals {
                    let entries = acls.get(pattern).cloned().unwrap_or_default();
                    let question = format!(
                        "Are you sure you want to remove ACLs: \n {} \n from resource filter `{pattern}`? (y/n)",
                        entries
                            .iter()
                            .map(|e| format!("\t{e}"))
                            .collect::<Vec<_>>()
                            .join("\n")
                    );
                    if !args.force && !confirm(&question) {
                        continue;
                    }
                    entries
                        .iter()
                        .map(|e| AclBindingFilter {
                            principal: Some(e.principal.clone()),
                            host: Some(e.host.clone()),
                            operation: e.operation,
                            permission: e.permission,
                            ..filter_of(pattern)
                        })
                        .collect()
                } else {
                    let question = format!(
                        "Are you sure you want to delete all ACLs for resource filter `{pattern}`? (y/n)"
                    );
                    if !args.force && !confirm(&question) {
                        continue;
                    }
                    vec![filter_of(pattern)]
                };
                for r in delete_acls(&mut client, &filters).await? {
                    if let Err(e) = r {
                        failures.push(format!("{pattern}: {e}"));
                    }
                }
            }
            let filters: Vec<AclBindingFilter> = patterns.iter().map(filter_of).collect();
            list(&mut client, &filters, &[]).await?;
            if !failures.is_empty() {
                bail!("Error while executing ACL command: {}", failures.join("; "));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        args: AclsArgs,
    }

    fn parse(flags: &[&str]) -> AclsArgs {
        let mut argv = vec!["acls"];
        argv.extend_from_slice(flags);
        Cmd::try_parse_from(argv).unwrap().args
    }

    fn err(flags: &[&str]) -> String {
        let args = parse(flags);
        let e = validate(&args)
            .and_then(|(_, t)| resource_acls(&args, t).map(|_| ()))
            .err()
            .unwrap_or_else(|| panic!("{flags:?} should be refused"));
        format!("{e:#}")
    }

    #[test]
    fn output_matches_kafka_acls() {
        let e = AccessControlEntry {
            principal: "User:alice".into(),
            host: "*".into(),
            operation: AclOperation::Read,
            permission: AclPermissionType::Allow,
        };
        let p = ResourcePattern::new(ResourceType::Topic, "t", PatternType::Literal);
        assert_eq!(
            format_block("Current ACLs for resource", &p.to_string(), [&e]),
            "Current ACLs for resource `ResourcePattern(resourceType=TOPIC, name=t, \
             patternType=LITERAL)`: \n \t(principal=User:alice, host=*, operation=READ, \
             permissionType=ALLOW) \n"
        );
        let d = AccessControlEntry {
            principal: "User:bob".into(),
            host: "10.0.0.1".into(),
            operation: AclOperation::IdempotentWrite,
            permission: AclPermissionType::Deny,
        };
        assert_eq!(
            format_block("Adding ACLs for resource", "X", [&e, &d]),
            "Adding ACLs for resource `X`: \n \t(principal=User:alice, host=*, operation=READ, \
             permissionType=ALLOW)\n\t(principal=User:bob, host=10.0.0.1, \
             operation=IDEMPOTENT_WRITE, permissionType=DENY) \n"
        );
    }

    #[test]
    fn add_builds_one_entry_per_principal_host_and_operation() {
        let args = parse(&[
            "--add",
            "--allow-principal",
            "User:alice",
            "--allow-principal",
            "User:bob",
            "--allow-host",
            "10.0.0.1",
            "--operation",
            "Read",
            "--operation",
            "describe",
            "--topic",
            "t",
            "--resource-pattern-type",
            "prefixed",
        ]);
        let (action, t) = validate(&args).unwrap();
        assert_eq!((action, t), (Action::Add, PatternType::Prefixed));
        let acls = resource_acls(&args, t).unwrap();
        let p = ResourcePattern::new(ResourceType::Topic, "t", PatternType::Prefixed);
        assert_eq!(acls.len(), 1);
        let entries = &acls[&p];
        assert_eq!(entries.len(), 4);
        assert!(entries
            .iter()
            .all(|e| e.host == "10.0.0.1" && e.permission == AclPermissionType::Allow));
        // Without --operation: All; without --deny-host: every host.
        let args = parse(&["--add", "--deny-principal", "User:eve", "--cluster"]);
        let acls = resource_acls(&args, PatternType::Literal).unwrap();
        let e = acls.values().next().unwrap().iter().next().unwrap();
        assert_eq!(
            (e.operation, e.host.as_str(), e.permission),
            (AclOperation::All, "*", AclPermissionType::Deny)
        );
        assert_eq!(acls.keys().next().unwrap().name, "kafka-cluster");
    }

    #[test]
    fn producer_and_consumer_sets() {
        let args = parse(&[
            "--add",
            "--allow-principal",
            "User:p",
            "--producer",
            "--idempotent",
            "--topic",
            "t",
            "--transactional-id",
            "tx",
        ]);
        validate(&args).unwrap();
        let acls = resource_acls(&args, PatternType::Literal).unwrap();
        let ops = |rt: ResourceType| -> Vec<AclOperation> {
            acls.iter()
                .filter(|(p, _)| p.resource_type == rt)
                .flat_map(|(_, es)| es.iter().map(|e| e.operation))
                .collect()
        };
        use AclOperation::*;
        assert_eq!(ops(ResourceType::Topic), vec![Write, Create, Describe]);
        assert_eq!(ops(ResourceType::TransactionalId), vec![Write, Describe]);
        assert_eq!(ops(ResourceType::Cluster), vec![IdempotentWrite]);
        let args = parse(&[
            "--add",
            "--allow-principal",
            "User:c",
            "--consumer",
            "--topic",
            "t",
            "--group",
            "g",
        ]);
        validate(&args).unwrap();
        let acls = resource_acls(&args, PatternType::Literal).unwrap();
        let ops: Vec<(ResourceType, AclOperation)> = acls
            .iter()
            .flat_map(|(p, es)| es.iter().map(|e| (p.resource_type, e.operation)))
            .collect();
        assert_eq!(
            ops,
            vec![
                (ResourceType::Topic, Read),
                (ResourceType::Topic, Describe),
                (ResourceType::Group, Read)
            ]
        );
    }

    #[test]
    fn bad_flags_are_refused_with_kafkas_messages() {
        assert!(err(&["--list", "--add"]).contains("exactly one action"));
        assert!(err(&["--topic", "t"]).contains("exactly one action"));
        assert!(err(&["--add", "--topic", "t"]).contains("--allow-principal, --deny-principal"));
        assert!(err(&["--add", "--allow-principal", "User:a"]).contains("at least one resource"));
        assert!(
            err(&["--add", "--allow-principal", "alice", "--topic", "t"])
                .contains("Could not parse principal")
        );
        assert!(err(&[
            "--add",
            "--allow-principal",
            "User:a",
            "--topic",
            "t",
            "--resource-pattern-type",
            "match"
        ])
        .contains("not valid when adding acls"));
        assert!(err(&["--list", "--resource-pattern-type", "fuzzy"])
            .contains("invalid --resource-pattern-type"));
        assert!(err(&[
            "--add",
            "--allow-principal",
            "User:a",
            "--group",
            "g",
            "--operation",
            "Write"
        ])
        .contains("ResourceType GROUP only supports operations ALL,READ,DESCRIBE,DELETE"));
        assert!(err(&[
            "--add",
            "--allow-principal",
            "User:a",
            "--topic",
            "t",
            "--operation",
            "Jump"
        ])
        .contains("invalid --operation 'Jump'"));
        assert!(err(&["--list", "--allow-principal", "User:a"]).contains("can't be used"));
        assert!(err(&["--add", "--allow-principal", "User:a", "--producer"])
            .contains("With --producer you must specify a --topic"));
        assert!(err(&[
            "--add",
            "--allow-principal",
            "User:a",
            "--consumer",
            "--topic",
            "t"
        ])
        .contains("With --consumer you must specify a --topic and a --group"));
        assert!(err(&[
            "--add",
            "--allow-principal",
            "User:a",
            "--topic",
            "t",
            "--idempotent"
        ])
        .contains("--idempotent option is only available if --producer is set"));
        assert!(err(&[
            "--add",
            "--deny-principal",
            "User:a",
            "--producer",
            "--topic",
            "t"
        ])
        .contains("can't be used with option \"--deny-principal\""));
    }

    #[test]
    fn list_and_remove_accept_any_and_match() {
        let (a, t) = validate(&parse(&["--list"])).unwrap();
        assert_eq!((a, t), (Action::List, PatternType::Literal));
        let (a, t) = validate(&parse(&[
            "--remove",
            "--topic",
            "t",
            "--resource-pattern-type",
            "MATCH",
            "--force",
        ]))
        .unwrap();
        assert_eq!((a, t), (Action::Remove, PatternType::Match));
        let f = filter_of(&ResourcePattern::new(ResourceType::Topic, "t", t));
        assert_eq!(f.principal, None);
        assert_eq!(f.operation, AclOperation::Any);
    }
}
