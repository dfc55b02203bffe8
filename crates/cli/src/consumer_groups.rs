//! `runnel consumer-groups`: the flags and output of Kafka's `kafka-consumer-groups.sh` for
//! classic consumer groups: `--list`, `--describe` (offsets, `--members`, `--state`),
//! `--delete`, `--delete-offsets` and `--reset-offsets`.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{anyhow, bail, Context, Result};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::{
    ApiKey, DeleteGroupsRequest, DescribeGroupsRequest, GroupId, ListGroupsRequest,
    OffsetDeleteRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use runnel_client::consume::{
    commit_offsets, decode_assignment, fetch_committed, list_offsets, Tp, EARLIEST, LATEST,
};
use runnel_client::{codes, Client, KafkaError, Target, TopicMeta};

/// The states ListGroups can filter on (Kafka's classic group states).
const STATES: [&str; 5] = [
    "PreparingRebalance",
    "CompletingRebalance",
    "Stable",
    "Dead",
    "Empty",
];

#[derive(clap::Args, Debug, Clone, Default)]
pub struct ConsumerGroupsArgs {
    /// REQUIRED: the server(s) to connect to (HOST:PORT,...).
    #[arg(long, default_value = "localhost:9092")]
    pub bootstrap_server: String,
    /// List all consumer groups.
    #[arg(long)]
    pub list: bool,
    /// Describe consumer group(s): offsets and lag (default), --members or --state.
    #[arg(long)]
    pub describe: bool,
    /// Delete consumer group(s); only groups without active members can be deleted.
    #[arg(long)]
    pub delete: bool,
    /// Delete a group's committed offsets of the --topic partitions.
    #[arg(long)]
    pub delete_offsets: bool,
    /// Reset a group's committed offsets (the group must have no active members).
    #[arg(long)]
    pub reset_offsets: bool,
    /// The consumer group (repeatable).
    #[arg(long = "group", value_name = "GROUP")]
    pub group: Vec<String>,
    /// Apply to all consumer groups.
    #[arg(long)]
    pub all_groups: bool,
    /// TOPIC or TOPIC:P,P,... (repeatable) for --reset-offsets and --delete-offsets.
    #[arg(long = "topic", value_name = "TOPIC[:PARTITIONS]")]
    pub topic: Vec<String>,
    /// --reset-offsets: every topic the group has committed offsets for.
    #[arg(long)]
    pub all_topics: bool,
    /// --describe: the group's members.
    #[arg(long)]
    pub members: bool,
    /// --describe: offsets and lag (the default view).
    #[arg(long)]
    pub offsets: bool,
    /// --describe --members: also each member's assignment.
    #[arg(long)]
    pub verbose: bool,
    /// With --describe: the group's state. With --list: print each group's state, and list
    /// only groups in the given states (comma-separated) when a value is given.
    #[arg(long, num_args = 0..=1, default_missing_value = "", value_name = "STATES")]
    pub state: Option<String>,
    /// Reset to the earliest offset.
    #[arg(long)]
    pub to_earliest: bool,
    /// Reset to the latest offset (the log end).
    #[arg(long)]
    pub to_latest: bool,
    /// Reset to this offset (clamped to the partition's earliest and latest).
    #[arg(long, allow_hyphen_values = true, value_name = "OFFSET")]
    pub to_offset: Option<i64>,
    /// Move the committed offset by N (negative: back).
    #[arg(long, allow_hyphen_values = true, value_name = "N")]
    pub shift_by: Option<i64>,
    /// Reset to the first offset with a timestamp at or after YYYY-MM-DDTHH:mm:SS.sss,
    /// optionally followed by Z or +hh:mm / -hh:mm (without a zone: the local time zone, as
    /// Kafka reads it).
    #[arg(long, value_name = "DATETIME")]
    pub to_datetime: Option<String>,
    /// Reset to the first offset at or after now minus this duration (PnDTnHnMnS).
    #[arg(long, value_name = "DURATION")]
    pub by_duration: Option<String>,
    /// Reset to the committed offset (the log end where none).
    #[arg(long)]
    pub to_current: bool,
    /// Reset to the offsets of a CSV file: TOPIC,PARTITION,OFFSET lines for one --group, or
    /// GROUP,TOPIC,PARTITION,OFFSET lines (what --export writes).
    #[arg(long, value_name = "FILE")]
    pub from_file: Option<std::path::PathBuf>,
    /// With --reset-offsets: print the new offsets as CSV (the --from-file format) instead of
    /// a table.
    #[arg(long)]
    pub export: bool,
    /// Only show the new offsets (the default).
    #[arg(long)]
    pub dry_run: bool,
    /// Commit the new offsets.
    #[arg(long)]
    pub execute: bool,
    /// Client properties file: security.protocol, sasl.mechanism, sasl.jaas.config, ssl.*,
    /// client.id (Kafka's client property names).
    #[arg(long, value_name = "FILE")]
    pub command_config: Option<std::path::PathBuf>,
}

pub async fn run(args: ConsumerGroupsArgs) -> Result<()> {
    let actions = [
        args.list,
        args.describe,
        args.delete,
        args.delete_offsets,
        args.reset_offsets,
    ];
    if actions.iter().filter(|a| **a).count() != 1 {
        bail!("Command must include exactly one action: --list, --describe, --delete, --reset-offsets, --delete-offsets");
    }
    if !args.group.is_empty() && args.all_groups {
        bail!("Options --group and --all-groups cannot be used together.");
    }
    if (args.members || args.offsets || args.verbose) && !args.describe {
        bail!("Options --members, --offsets and --verbose can only be used with --describe.");
    }
    if args.list && (!args.group.is_empty() || args.all_groups) {
        bail!("Option --list takes no --group or --all-groups.");
    }
    if args.export && !args.reset_offsets {
        bail!("Option --export can only be used with --reset-offsets.");
    }
    let reset = if args.reset_offsets {
        Some(ResetPlan::from_args(&args)?)
    } else {
        None
    };
    let mut client = Client::connect(
        &args.bootstrap_server,
        &crate::util::client_config("consumer-groups", &[args.command_config.as_deref()], &[])?,
    )
    .await?;
    if args.list {
        return list(&mut client, &args).await;
    }
    let groups = if args.all_groups {
        list_groups(&mut client, &[])
            .await?
            .into_keys()
            .collect::<Vec<_>>()
    } else if args.group.is_empty() {
        bail!("Missing required argument: --group (or --all-groups)");
    } else {
        args.group.clone()
    };
    if args.describe {
        describe(&mut client, &args, &groups).await
    } else if args.delete {
        delete(&mut client, &groups).await
    } else if args.delete_offsets {
        delete_offsets(&mut client, &args, &groups).await
    } else {
        let plan = reset.ok_or_else(|| anyhow!("no reset plan"))?;
        let mut failed = Vec::new();
        // As Kafka: one group's CSV leaves the group out; several groups' name it.
        let csv_with_group = args.all_groups || groups.len() > 1;
        let mut csv = String::new();
        for (i, g) in groups.iter().enumerate() {
            if i > 0 && !plan.export {
                println!();
            }
            match reset_offsets(&mut client, &plan, g).await {
                Ok(new) if plan.export => {
                    for ((t, p), o) in &new {
                        if csv_with_group {
                            csv.push_str(&format!("{g},{t},{p},{o}\n"));
                        } else {
                            csv.push_str(&format!("{t},{p},{o}\n"));
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => failed.push(format!("{e:#}")),
            }
        }
        if plan.export {
            println!("{csv}");
        }
        if failed.is_empty() {
            Ok(())
        } else {
            bail!("{}", failed.join("\nError: "))
        }
    }
}

// ---- --list ----

/// Every classic consumer group of the cluster, id -> state: ListGroups sent to each broker
/// (each answers for the groups it coordinates) and merged, as Kafka's admin client does.
async fn list_groups(client: &mut Client, states: &[String]) -> Result<BTreeMap<String, String>> {
    client.refresh(Some(&[])).await?;
    let brokers: Vec<i32> = client.meta.brokers.keys().copied().collect();
    let mut out = BTreeMap::new();
    for id in brokers {
        let conn = client.broker(id).await?;
        let version = conn.version(ApiKey::ListGroups)?;
        if !states.is_empty() && version < 4 {
            bail!("broker {id} does not support filtering groups by state (ListGroups v4)");
        }
        let mut req = ListGroupsRequest::default();
        req.states_filter = states
            .iter()
            .map(|s| StrBytes::from_string(s.clone()))
            .collect();
        let resp = client.send_to(Target::Broker(id), &req).await?;
        if resp.error_code != 0 {
            return Err(anyhow::Error::new(KafkaError::new(resp.error_code, None))
                .context(format!("ListGroups on broker {id}")));
        }
        for g in resp.groups {
            let protocol = g.protocol_type.as_str();
            if protocol.is_empty() || protocol == "consumer" {
                out.insert(g.group_id.0.to_string(), g.group_state.to_string());
            }
        }
    }
    Ok(out)
}

async fn list(client: &mut Client, args: &ConsumerGroupsArgs) -> Result<()> {
    let mut states = Vec::new();
    if let Some(filter) = args.state.as_deref() {
        for s in filter.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let known = STATES
                .iter()
                .find(|k| k.eq_ignore_ascii_case(s))
                .ok_or_else(|| {
                    anyhow!(
                        "Invalid state '{s}' for --state: expected one of {}",
                        STATES.join(", ")
                    )
                })?;
            states.push(known.to_string());
        }
    }
    let groups = list_groups(client, &states).await?;
    if args.state.is_some() {
        let rows: Vec<Vec<String>> = groups.into_iter().map(|(g, s)| vec![g, s]).collect();
        print_table(&["GROUP", "STATE"], &rows);
    } else {
        for g in groups.keys() {
            println!("{g}");
        }
    }
    Ok(())
}

// ---- --describe ----

struct Member {
    id: String,
    client_id: String,
    host: String,
    assignment: BTreeMap<String, Vec<i32>>,
}

struct Group {
    id: String,
    coordinator: i32,
    state: String,
    protocol: String,
    members: Vec<Member>,
}

/// DescribeGroups at the group's coordinator; `None` when the group does not exist.
async fn describe_group(client: &mut Client, group: &str) -> Result<Option<Group>> {
    let mut req = DescribeGroupsRequest::default();
    req.groups = vec![GroupId(StrBytes::from_string(group.to_string()))];
    let resp = client
        .send_to_coordinator(group, &req, |r| {
            r.groups.first().map_or(0, |g| g.error_code)
        })
        .await?;
    let coordinator = client.coordinator(group).await?;
    let d = resp
        .groups
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("DescribeGroups answered nothing for group '{group}'"))?;
    if d.error_code == codes::GROUP_ID_NOT_FOUND
        || (d.error_code == 0 && d.group_state.as_str() == "Dead")
    {
        return Ok(None);
    }
    if d.error_code != 0 {
        return Err(
            anyhow::Error::new(KafkaError::new(d.error_code, d.error_message.as_ref()))
                .context(format!("DescribeGroups for group '{group}'")),
        );
    }
    let consumer = matches!(d.protocol_type.as_str(), "consumer" | "");
    let members = d
        .members
        .into_iter()
        .map(|m| {
            let assignment = if consumer {
                decode_assignment(&m.member_assignment)
                    .with_context(|| format!("group '{group}', member {}", m.member_id.as_str()))?
            } else {
                BTreeMap::new()
            };
            Ok(Member {
                id: m.member_id.to_string(),
                client_id: m.client_id.to_string(),
                host: m.client_host.to_string(),
                assignment,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(Group {
        id: group.to_string(),
        coordinator,
        state: d.group_state.to_string(),
        protocol: d.protocol_data.to_string(),
        members,
    }))
}

fn missing_group(group: &str) -> String {
    format!("Consumer group '{group}' does not exist.")
}

async fn describe(client: &mut Client, args: &ConsumerGroupsArgs, groups: &[String]) -> Result<()> {
    let views = [args.members, args.offsets, args.state.is_some()];
    if views.iter().filter(|v| **v).count() > 1 {
        bail!("Options --members, --offsets and --state cannot be used together.");
    }
    let mut missing = Vec::new();
    for g in groups {
        let Some(group) = describe_group(client, g).await? else {
            missing.push(missing_group(g));
            continue;
        };
        println!();
        if args.state.is_some() {
            let coordinator = client
                .meta
                .brokers
                .get(&group.coordinator)
                .map(|b| format!("{} ({})", b.addr(), b.id))
                .unwrap_or_else(|| format!("- ({})", group.coordinator));
            let strategy = if group.protocol.is_empty() {
                "-".to_string()
            } else {
                group.protocol.clone()
            };
            print_table(
                &[
                    "GROUP",
                    "COORDINATOR (ID)",
                    "ASSIGNMENT-STRATEGY",
                    "STATE",
                    "#MEMBERS",
                ],
                &[vec![
                    group.id.clone(),
                    coordinator,
                    strategy,
                    group.state.clone(),
                    group.members.len().to_string(),
                ]],
            );
            continue;
        }
        state_notes(&group);
        if args.members {
            if group.members.is_empty() {
                continue;
            }
            let mut headers = vec!["GROUP", "CONSUMER-ID", "HOST", "CLIENT-ID", "#PARTITIONS"];
            if args.verbose {
                headers.push("ASSIGNMENT");
            }
            let rows: Vec<Vec<String>> = group
                .members
                .iter()
                .map(|m| {
                    let mut row = vec![
                        group.id.clone(),
                        m.id.clone(),
                        m.host.clone(),
                        m.client_id.clone(),
                        m.assignment
                            .values()
                            .map(Vec::len)
                            .sum::<usize>()
                            .to_string(),
                    ];
                    if args.verbose {
                        row.push(format_assignment(&m.assignment));
                    }
                    row
                })
                .collect();
            print_table(&headers, &rows);
            continue;
        }
        print_offsets(client, &group).await?;
    }
    if missing.is_empty() {
        Ok(())
    } else {
        bail!("{}", missing.join("\nError: "))
    }
}

fn state_notes(group: &Group) {
    match group.state.as_str() {
        "PreparingRebalance" | "CompletingRebalance" => {
            println!("Warning: Consumer group '{}' is rebalancing.\n", group.id)
        }
        "Empty" => println!("Consumer group '{}' has no active members.\n", group.id),
        _ => {}
    }
}

/// `topic(0,1),other(3)`, or `-` for nothing.
fn format_assignment(a: &BTreeMap<String, Vec<i32>>) -> String {
    if a.values().all(Vec::is_empty) {
        return "-".to_string();
    }
    a.iter()
        .filter(|(_, ps)| !ps.is_empty())
        .map(|(t, ps)| {
            let ps: Vec<String> = ps.iter().map(i32::to_string).collect();
            format!("{t}({})", ps.join(","))
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Partitions grouped by topic.
fn by_topic(partitions: &BTreeSet<Tp>) -> BTreeMap<&str, Vec<i32>> {
    let mut out: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in partitions {
        out.entry(t).or_default().push(*p);
    }
    out
}

/// Log end offsets of `partitions`; partitions whose topic is gone or has no leader are left
/// out (shown as `-`).
async fn log_end_offsets(
    client: &mut Client,
    partitions: &BTreeSet<Tp>,
) -> Result<BTreeMap<Tp, i64>> {
    let by_topic = by_topic(partitions);
    let mut out = BTreeMap::new();
    for (t, ps) in by_topic {
        let Ok(meta) = client.topic(t).await else {
            continue;
        };
        let ps: Vec<i32> = ps
            .into_iter()
            .filter(|p| {
                meta.partitions
                    .iter()
                    .any(|m| m.index == *p && m.leader >= 0)
            })
            .collect();
        if let Ok(offsets) = list_offsets(client, &meta, &ps, LATEST, 0).await {
            out.extend(offsets.into_iter().map(|(p, o)| ((t.to_string(), p), o)));
        }
    }
    Ok(out)
}

async fn print_offsets(client: &mut Client, group: &Group) -> Result<()> {
    let committed = fetch_committed(client, &group.id, None).await?;
    let mut owner: BTreeMap<Tp, &Member> = BTreeMap::new();
    for m in &group.members {
        for (t, ps) in &m.assignment {
            for p in ps {
                owner.insert((t.clone(), *p), m);
            }
        }
    }
    let partitions: BTreeSet<Tp> = committed.keys().chain(owner.keys()).cloned().collect();
    if partitions.is_empty() {
        if group.state != "Empty" {
            println!("Consumer group '{}' has no committed offsets.", group.id);
        }
        return Ok(());
    }
    let ends = log_end_offsets(client, &partitions).await?;
    let dash = || "-".to_string();
    let rows: Vec<Vec<String>> = partitions
        .iter()
        .map(|tp| {
            let current = committed.get(tp);
            let end = ends.get(tp);
            let lag = match (current, end) {
                (Some(c), Some(e)) => (e - c).max(0).to_string(),
                _ => dash(),
            };
            let m = owner.get(tp);
            vec![
                group.id.clone(),
                tp.0.clone(),
                tp.1.to_string(),
                current.map_or_else(dash, i64::to_string),
                end.map_or_else(dash, i64::to_string),
                lag,
                m.map_or_else(dash, |m| m.id.clone()),
                m.map_or_else(dash, |m| m.host.clone()),
                m.map_or_else(dash, |m| m.client_id.clone()),
            ]
        })
        .collect();
    print_table(
        &[
            "GROUP",
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "CONSUMER-ID",
            "HOST",
            "CLIENT-ID",
        ],
        &rows,
    );
    Ok(())
}

/// Columns padded to their widest cell, one space apart.
fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$} "));
            }
        }
        println!("{}", s.trim_end());
    };
    line(headers.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

// ---- --delete ----

async fn delete(client: &mut Client, groups: &[String]) -> Result<()> {
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for g in groups {
        let mut req = DeleteGroupsRequest::default();
        req.groups_names = vec![GroupId(StrBytes::from_string(g.clone()))];
        let resp = client
            .send_to_coordinator(g, &req, |r| r.results.first().map_or(0, |x| x.error_code))
            .await?;
        let code = resp.results.first().map_or(0, |r| r.error_code);
        match code {
            0 => ok.push(format!("'{g}'")),
            codes::NON_EMPTY_GROUP => failed.push(format!(
                "* Group '{g}' could not be deleted due to: the group has active members (NON_EMPTY_GROUP)"
            )),
            codes::GROUP_ID_NOT_FOUND => failed.push(format!(
                "* Group '{g}' could not be deleted due to: the group does not exist (GROUP_ID_NOT_FOUND)"
            )),
            c => failed.push(format!(
                "* Group '{g}' could not be deleted due to: {}",
                KafkaError::new(c, None)
            )),
        }
    }
    if failed.is_empty() {
        println!(
            "Deletion of requested consumer groups ({}) was successful.",
            ok.join(", ")
        );
        return Ok(());
    }
    if !ok.is_empty() {
        println!(
            "These consumer groups were deleted successfully: {}",
            ok.join(", ")
        );
    }
    bail!(
        "Deletion of some consumer groups failed:\n{}",
        failed.join("\n")
    )
}

// ---- --delete-offsets ----

/// `TOPIC` or `TOPIC:P,P,...` -> (topic, partitions; `None` for all).
fn parse_topic_spec(spec: &str) -> Result<(String, Option<Vec<i32>>)> {
    let (topic, parts) = match spec.split_once(':') {
        None => (spec, None),
        Some((t, ps)) => {
            let ps = ps
                .split(',')
                .map(|p| {
                    p.trim().parse::<i32>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                        anyhow!("Invalid partition '{p}' in --topic '{spec}': expected TOPIC or TOPIC:P,P,...")
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            (t, Some(ps))
        }
    };
    if topic.trim().is_empty() {
        bail!("Invalid --topic '{spec}': the topic name is empty");
    }
    Ok((topic.trim().to_string(), parts))
}

/// The partitions `--topic` specs name, checked against the cluster's metadata.
async fn resolve_topics(client: &mut Client, specs: &[String]) -> Result<BTreeSet<Tp>> {
    let mut out = BTreeSet::new();
    for spec in specs {
        let (topic, parts) = parse_topic_spec(spec)?;
        let meta: TopicMeta = match client.topic(&topic).await {
            Ok(m) => m,
            Err(e) => {
                let unknown = e
                    .downcast_ref::<KafkaError>()
                    .is_some_and(|k| k.code == codes::UNKNOWN_TOPIC_OR_PARTITION)
                    || format!("{e}").contains("not found");
                if unknown {
                    bail!("Topic '{topic}' does not exist.");
                }
                return Err(e);
            }
        };
        match parts {
            None => out.extend(meta.partitions.iter().map(|p| (topic.clone(), p.index))),
            Some(ps) => {
                for p in ps {
                    if !meta.partitions.iter().any(|m| m.index == p) {
                        bail!(
                            "Partition {p} does not exist in topic '{topic}' ({} partitions).",
                            meta.partitions.len()
                        );
                    }
                    out.insert((topic.clone(), p));
                }
            }
        }
    }
    Ok(out)
}

async fn delete_offsets(
    client: &mut Client,
    args: &ConsumerGroupsArgs,
    groups: &[String],
) -> Result<()> {
    let [group] = groups else {
        bail!("Option --delete-offsets takes exactly one --group.");
    };
    if args.topic.is_empty() {
        bail!("Option --delete-offsets needs --topic TOPIC[:P,P,...].");
    }
    let partitions = resolve_topics(client, &args.topic).await?;
    let by_topic = by_topic(&partitions);
    let mut req = OffsetDeleteRequest::default();
    req.group_id = GroupId(StrBytes::from_string(group.clone()));
    req.topics = by_topic
        .iter()
        .map(|(t, ps)| {
            let mut rt = OffsetDeleteRequestTopic::default();
            rt.name = TopicName(StrBytes::from_string(t.to_string()));
            rt.partitions = ps
                .iter()
                .map(|p| {
                    let mut rp = OffsetDeleteRequestPartition::default();
                    rp.partition_index = *p;
                    rp
                })
                .collect();
            rt
        })
        .collect();
    let resp = client
        .send_to_coordinator(group, &req, |r| r.error_code)
        .await?;
    match resp.error_code {
        0 => {}
        codes::GROUP_ID_NOT_FOUND => bail!("{}", missing_group(group)),
        c => {
            return Err(anyhow::Error::new(KafkaError::new(c, None))
                .context(format!("Deleting offsets of group '{group}' failed")))
        }
    }
    let mut rows = Vec::new();
    let mut failures = 0;
    for t in resp.topics {
        for p in t.partitions {
            let status = match p.error_code {
                0 => "Successful".to_string(),
                codes::GROUP_SUBSCRIBED_TO_TOPIC => {
                    failures += 1;
                    "Error: the group's active members are subscribed to the topic (GROUP_SUBSCRIBED_TO_TOPIC)".to_string()
                }
                c => {
                    failures += 1;
                    format!("Error: {}", KafkaError::new(c, None))
                }
            };
            rows.push(vec![
                t.name.0.to_string(),
                p.partition_index.to_string(),
                status,
            ]);
        }
    }
    rows.sort();
    if failures == 0 {
        println!("Deleted the committed offsets of group '{group}' for these partitions:\n");
    } else {
        println!("Deleting the committed offsets of group '{group}' failed for {failures} partition(s):\n");
    }
    print_table(&["TOPIC", "PARTITION", "STATUS"], &rows);
    if failures > 0 {
        bail!("{failures} partition(s) of group '{group}' kept their committed offsets");
    }
    Ok(())
}

// ---- --reset-offsets ----

#[derive(Debug, Clone, PartialEq)]
enum ResetSpec {
    Earliest,
    Latest,
    Offset(i64),
    Shift(i64),
    /// A timestamp in ms (from --to-datetime or now minus --by-duration).
    Timestamp(i64),
    Current,
    /// --from-file: the offsets per group, then per partition.
    File(BTreeMap<String, BTreeMap<Tp, i64>>),
}

#[derive(Debug, Clone)]
struct ResetPlan {
    spec: ResetSpec,
    topics: Vec<String>,
    all_topics: bool,
    execute: bool,
    export: bool,
}

impl ResetPlan {
    fn from_args(args: &ConsumerGroupsArgs) -> Result<ResetPlan> {
        // A file names its partitions; otherwise one scope is needed.
        if args.from_file.is_none() && args.topic.is_empty() != args.all_topics {
            bail!("Option --reset-offsets needs exactly one scope: --topic TOPIC[:P,P,...] (repeatable) or --all-topics.");
        }
        if args.from_file.is_some() && (!args.topic.is_empty() || args.all_topics) {
            bail!("Option --from-file takes its partitions from the file: leave out --topic and --all-topics.");
        }
        let chosen = [
            args.from_file.is_some(),
            args.to_earliest,
            args.to_latest,
            args.to_offset.is_some(),
            args.shift_by.is_some(),
            args.to_datetime.is_some(),
            args.by_duration.is_some(),
            args.to_current,
        ];
        if chosen.iter().filter(|c| **c).count() != 1 {
            bail!("Option --reset-offsets needs exactly one of --to-earliest, --to-latest, --to-offset, --shift-by, --to-datetime, --by-duration, --to-current, --from-file.");
        }
        if args.dry_run && args.execute {
            bail!("Options --dry-run and --execute cannot be used together.");
        }
        let spec = if let Some(path) = &args.from_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let single =
                (args.group.len() == 1 && !args.all_groups).then(|| args.group[0].as_str());
            ResetSpec::File(parse_reset_csv(&text, single)?)
        } else if args.to_earliest {
            ResetSpec::Earliest
        } else if args.to_latest {
            ResetSpec::Latest
        } else if let Some(o) = args.to_offset {
            ResetSpec::Offset(o)
        } else if let Some(n) = args.shift_by {
            ResetSpec::Shift(n)
        } else if let Some(d) = &args.to_datetime {
            ResetSpec::Timestamp(parse_datetime(d, local_offset_ms)?)
        } else if let Some(d) = &args.by_duration {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis() as i64;
            ResetSpec::Timestamp(now - parse_duration_ms(d)?)
        } else {
            ResetSpec::Current
        };
        for t in &args.topic {
            parse_topic_spec(t)?;
        }
        if !args.dry_run && !args.execute && !args.export {
            eprintln!("WARN: Nothing is changed without --execute; showing the new offsets only. Add --dry-run to say so explicitly, or --execute to commit them.");
        }
        Ok(ResetPlan {
            spec,
            topics: args.topic.clone(),
            all_topics: args.all_topics,
            execute: args.execute,
            export: args.export,
        })
    }
}

/// Offsets of `partitions` at `timestamp` (EARLIEST, LATEST or ms), asked of the leaders.
async fn offsets_at(
    client: &mut Client,
    partitions: &BTreeSet<Tp>,
    timestamp: i64,
) -> Result<BTreeMap<Tp, i64>> {
    let by_topic = by_topic(partitions);
    let mut out = BTreeMap::new();
    for (t, ps) in by_topic {
        let meta = client.topic(t).await?;
        let offsets = list_offsets(client, &meta, &ps, timestamp, 0).await?;
        out.extend(offsets.into_iter().map(|(p, o)| ((t.to_string(), p), o)));
    }
    Ok(out)
}

/// Parses a `--from-file` CSV the way Kafka does: `TOPIC,PARTITION,OFFSET` lines belong to
/// `single_group` (the one --group given); otherwise each line is `GROUP,TOPIC,PARTITION,OFFSET`.
fn parse_reset_csv(
    text: &str,
    single_group: Option<&str>,
) -> Result<BTreeMap<String, BTreeMap<Tp, i64>>> {
    let mut out: BTreeMap<String, BTreeMap<Tp, i64>> = BTreeMap::new();
    let lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    for (n, line) in lines.enumerate() {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let (group, rest) = match (single_group, fields.len()) {
            (Some(g), 3) => (g, &fields[..]),
            (_, 4) => (fields[0], &fields[1..]),
            (Some(_), _) => bail!(
                "Line {} of the reset file is not TOPIC,PARTITION,OFFSET (or GROUP,TOPIC,PARTITION,OFFSET): '{line}'",
                n + 1
            ),
            (None, _) => bail!(
                "Line {} of the reset file is not GROUP,TOPIC,PARTITION,OFFSET (TOPIC,PARTITION,OFFSET lines need exactly one --group): '{line}'",
                n + 1
            ),
        };
        let partition: i32 = rest[1].parse().map_err(|_| {
            anyhow!(
                "Line {} of the reset file: invalid partition '{}'",
                n + 1,
                rest[1]
            )
        })?;
        let offset: i64 = rest[2].parse().map_err(|_| {
            anyhow!(
                "Line {} of the reset file: invalid offset '{}'",
                n + 1,
                rest[2]
            )
        })?;
        out.entry(group.to_string())
            .or_default()
            .insert((rest[0].to_string(), partition), offset);
    }
    Ok(out)
}

/// Resets (or, without --execute, plans) the group's offsets; returns the new offsets.
async fn reset_offsets(
    client: &mut Client,
    plan: &ResetPlan,
    group: &str,
) -> Result<BTreeMap<Tp, i64>> {
    if let Some(g) = describe_group(client, group).await? {
        if g.state != "Empty" && g.state != "Dead" {
            bail!(
                "Assignments can only be reset if the group '{group}' is inactive, but the current state is {}.",
                g.state
            );
        }
    }
    let committed = fetch_committed(client, group, None).await?;
    let partitions: BTreeSet<Tp> = if let ResetSpec::File(file) = &plan.spec {
        let Some(offsets) = file.get(group) else {
            bail!("The reset file has no offsets for group '{group}'.");
        };
        offsets.keys().cloned().collect()
    } else if plan.all_topics {
        committed.keys().cloned().collect()
    } else {
        resolve_topics(client, &plan.topics).await?
    };
    let earliest = offsets_at(client, &partitions, EARLIEST).await?;
    let latest = offsets_at(client, &partitions, LATEST).await?;
    let by_time = match plan.spec {
        ResetSpec::Timestamp(ts) => Some(offsets_at(client, &partitions, ts).await?),
        _ => None,
    };
    let mut new = BTreeMap::new();
    for tp in &partitions {
        let (lo, hi) = (earliest[tp], latest[tp]);
        let clamp = |o: i64| o.clamp(lo, hi.max(lo));
        let offset = match &plan.spec {
            ResetSpec::Earliest => lo,
            ResetSpec::Latest => hi,
            ResetSpec::Offset(o) => clamp(*o),
            ResetSpec::Shift(n) => match committed.get(tp) {
                Some(c) => clamp(c.saturating_add(*n)),
                None => bail!(
                    "Group '{group}' has no committed offset for {}-{} to shift.",
                    tp.0,
                    tp.1
                ),
            },
            // No record at or after the time: the log end.
            ResetSpec::Timestamp(_) => match by_time.as_ref().and_then(|m| m.get(tp)) {
                Some(o) if *o >= 0 => clamp(*o),
                _ => hi,
            },
            ResetSpec::Current => committed.get(tp).copied().unwrap_or(hi),
            ResetSpec::File(file) => clamp(file[group][tp]),
        };
        new.insert(tp.clone(), offset);
    }
    let rows: Vec<Vec<String>> = new
        .iter()
        .map(|((t, p), o)| vec![group.to_string(), t.clone(), p.to_string(), o.to_string()])
        .collect();
    if !plan.export {
        println!();
        print_table(&["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"], &rows);
    }
    if !plan.execute || new.is_empty() {
        return Ok(new);
    }
    let results = commit_offsets(client, group, -1, "", &new).await?;
    let failed: Vec<String> = results
        .iter()
        .filter(|(_, c)| **c != 0)
        .map(|((t, p), c)| format!("{t}-{p}: {}", KafkaError::new(*c, None)))
        .collect();
    if !failed.is_empty() {
        bail!(
            "Committing the new offsets of group '{group}' failed for {}",
            failed.join(", ")
        );
    }
    Ok(new)
}

// ---- Time parsing ----

/// The local zone's offset from UTC, in ms, at a local wall-clock time given as ms since
/// 1970-01-01T00:00 (an ambiguous time takes the earlier offset, a skipped one the offset
/// before the gap), as Java's `ZonedDateTime` resolves it.
fn local_offset_ms(local_ms: i64) -> Result<i64> {
    use chrono::{Local, Offset, TimeZone};
    let naive = chrono::DateTime::from_timestamp_millis(local_ms)
        .ok_or_else(|| anyhow!("date out of range"))?
        .naive_utc();
    let offset = match Local.offset_from_local_datetime(&naive) {
        chrono::LocalResult::Single(o) | chrono::LocalResult::Ambiguous(o, _) => o,
        chrono::LocalResult::None => Local.offset_from_utc_datetime(&naive),
    };
    Ok(i64::from(offset.fix().local_minus_utc()) * 1000)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DDTHH:mm:SS[.sss][Z|±hh:mm|±hhmm]` -> ms since the epoch. Without a zone the time
/// is in the zone whose offset `zone_at` gives for a local time (Kafka: the local zone).
fn parse_datetime(s: &str, zone_at: impl Fn(i64) -> Result<i64>) -> Result<i64> {
    let bad = || {
        anyhow!("Invalid --to-datetime '{s}': expected YYYY-MM-DDTHH:mm:SS.sss, optionally followed by Z or an offset such as +02:00")
    };
    let s = s.trim();
    let (date, rest) = s.split_once('T').ok_or_else(bad)?;
    let num = |t: &str, len: usize| -> Result<i64> {
        if t.len() != len || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        t.parse::<i64>().map_err(|_| bad())
    };
    let d: Vec<&str> = date.split('-').collect();
    let [y, mo, da] = d[..] else {
        return Err(bad());
    };
    let (y, mo, da) = (num(y, 4)?, num(mo, 2)?, num(da, 2)?);
    // Split the zone off the time.
    let (time, zone_ms) = if let Some(t) = rest.strip_suffix('Z') {
        (t, Some(0))
    } else if let Some(i) = rest.rfind(['+', '-']) {
        let (t, z) = rest.split_at(i);
        let sign = if z.starts_with('-') { -1 } else { 1 };
        let z = z[1..].replace(':', "");
        if z.len() != 4 {
            return Err(bad());
        }
        let (zh, zm) = (num(&z[..2], 2)?, num(&z[2..], 2)?);
        if zh > 18 || zm > 59 {
            return Err(bad());
        }
        (t, Some(sign * (zh * 60 + zm) * 60_000))
    } else {
        (rest, None)
    };
    let (hms, frac) = match time.split_once('.') {
        Some((h, f)) => (h, Some(f)),
        None => (time, None),
    };
    let t: Vec<&str> = hms.split(':').collect();
    let [h, mi, se] = t[..] else {
        return Err(bad());
    };
    let (h, mi, se) = (num(h, 2)?, num(mi, 2)?, num(se, 2)?);
    let ms = match frac {
        None => 0,
        Some(f) if !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
            let padded = format!("{f:0<3}");
            padded[..3].parse::<i64>().map_err(|_| bad())?
        }
        Some(_) => return Err(bad()),
    };
    let month_days = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let max_day = if mo == 2 && leap {
        29
    } else {
        *month_days
            .get((mo as usize).wrapping_sub(1))
            .ok_or_else(bad)?
    };
    if !(1..=max_day).contains(&da) || h > 23 || mi > 59 || se > 59 {
        return Err(bad());
    }
    let secs = days_from_civil(y, mo, da) * 86_400 + h * 3600 + mi * 60 + se;
    let local = secs * 1000 + ms;
    let zone_ms = match zone_ms {
        Some(z) => z,
        None => zone_at(local)?,
    };
    Ok(local - zone_ms)
}

/// An ISO-8601 duration `PnDTnHnMn[.n]S` (any part may be left out) -> ms.
fn parse_duration_ms(s: &str) -> Result<i64> {
    let bad = || anyhow!("Invalid --by-duration '{s}': expected PnDTnHnMnS, e.g. P1DT2H or PT30M");
    let body = s.trim().strip_prefix('P').ok_or_else(bad)?;
    let (date, time) = match body.split_once('T') {
        Some((d, t)) if !t.is_empty() => (d, t),
        Some(_) => return Err(bad()),
        None => (body, ""),
    };
    let mut total: f64 = 0.0;
    let mut parts = 0;
    let mut eat = |text: &str, units: &[(char, f64)]| -> Result<()> {
        let mut num = String::new();
        let mut next_unit = 0;
        for c in text.chars() {
            if c.is_ascii_digit() || c == '.' {
                num.push(c);
                continue;
            }
            let idx = units[next_unit..]
                .iter()
                .position(|(u, _)| *u == c)
                .ok_or_else(bad)?
                + next_unit;
            let n: f64 = num.parse().map_err(|_| bad())?;
            total += n * units[idx].1;
            parts += 1;
            num.clear();
            next_unit = idx + 1;
        }
        if num.is_empty() {
            Ok(())
        } else {
            Err(bad())
        }
    };
    eat(date, &[('D', 86_400_000.0)])?;
    eat(time, &[('H', 3_600_000.0), ('M', 60_000.0), ('S', 1000.0)])?;
    if parts == 0 {
        return Err(bad());
    }
    Ok(total.round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_parse_to_epoch_ms() {
        let utc = |_| Ok(0);
        let parse_datetime = |s: &str| parse_datetime(s, utc);
        assert_eq!(parse_datetime("1970-01-01T00:00:00.000").unwrap(), 0);
        assert_eq!(
            parse_datetime("2023-11-14T22:13:20.123Z").unwrap(),
            1_700_000_000_123
        );
        assert_eq!(
            parse_datetime("2023-11-15T00:13:20.000+02:00").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_datetime("2023-11-14T20:13:20-0200").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_datetime("2024-02-29T00:00:00.5Z").unwrap(),
            1_709_164_800_500
        );
        for bad in [
            "2023-11-14",
            "2023-11-14 22:13:20.000",
            "2023-13-01T00:00:00.000",
            "2023-02-29T00:00:00.000",
            "2023-11-14T25:00:00.000",
            "yesterday",
            "2023-11-14T22:13:20.000+2",
        ] {
            assert!(parse_datetime(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn datetimes_without_a_zone_are_local_time() {
        // A zone two hours east of UTC: local midnight is 22:00 UTC the day before.
        let east = |_| Ok(2 * 3_600_000);
        assert_eq!(
            super::parse_datetime("2023-11-15T00:13:20.000", east).unwrap(),
            1_700_000_000_000
        );
        // An explicit zone wins over the local one.
        assert_eq!(
            super::parse_datetime("2023-11-14T22:13:20.000Z", east).unwrap(),
            1_700_000_000_000
        );
        // The machine's zone is a whole number of minutes from UTC.
        assert_eq!(local_offset_ms(1_700_000_000_000).unwrap() % 60_000, 0);
    }

    #[test]
    fn reset_files_as_kafka_writes_them() {
        let one = parse_reset_csv("orders,0,5\norders,1,7\n\n", Some("billing")).unwrap();
        assert_eq!(
            one["billing"],
            BTreeMap::from([
                (("orders".to_string(), 0), 5),
                (("orders".to_string(), 1), 7)
            ])
        );
        let many = parse_reset_csv("a,orders,0,5\nb,orders,0,9\n", None).unwrap();
        assert_eq!(many["b"][&("orders".to_string(), 0)], 9);
        // With one group, the four-field form still names its groups.
        let named = parse_reset_csv("a,orders,0,5\n", Some("a")).unwrap();
        assert_eq!(named["a"][&("orders".to_string(), 0)], 5);
        assert!(parse_reset_csv("orders,0,5\n", None).is_err());
        assert!(parse_reset_csv("orders,x,5\n", Some("g")).is_err());
        assert!(parse_reset_csv("orders,0\n", Some("g")).is_err());
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration_ms("PT1H").unwrap(), 3_600_000);
        assert_eq!(
            parse_duration_ms("P1DT2H3M4.5S").unwrap(),
            86_400_000 + 7_200_000 + 180_000 + 4_500
        );
        assert_eq!(parse_duration_ms("P2D").unwrap(), 172_800_000);
        for bad in ["", "P", "PT", "1H", "PT1X", "PT1M1H", "P1H"] {
            assert!(parse_duration_ms(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn topic_specs() {
        assert_eq!(parse_topic_spec("t").unwrap(), ("t".to_string(), None));
        assert_eq!(
            parse_topic_spec("t:0,2").unwrap(),
            ("t".to_string(), Some(vec![0, 2]))
        );
        assert!(parse_topic_spec("t:x").is_err());
        assert!(parse_topic_spec(":1").is_err());
    }

    #[test]
    fn assignments_format_like_kafka() {
        let a = BTreeMap::from([("a".to_string(), vec![0, 1]), ("b".to_string(), vec![3])]);
        assert_eq!(format_assignment(&a), "a(0,1),b(3)");
        assert_eq!(format_assignment(&BTreeMap::new()), "-");
    }
}
