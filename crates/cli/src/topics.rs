//! `runnel topics`: the flags and output of Kafka's `kafka-topics.sh`. As there, `--topic` is a
//! Java-style regular expression matched against whole names, except with `--create`.

use anyhow::{anyhow, bail, Result};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::{
    ApiKey, CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest,
    DescribeConfigsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::util::{parse_kv, topic_id_string};
use runnel_client::{check, Client, KafkaError, Target, TopicMeta};

/// Kafka's `DescribeConfigs` source code for "not set anywhere: the built-in default".
const CONFIG_SOURCE_DEFAULT: i8 = 5;
/// `DescribeConfigs` resource type for topics.
pub const RESOURCE_TOPIC: i8 = 2;
const TOPIC_ALREADY_EXISTS: i16 = 36;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

#[derive(clap::Args, Debug, Clone)]
pub struct TopicsArgs {
    /// REQUIRED: the Kafka server(s) to connect to (HOST:PORT,...).
    #[arg(long, default_value = "localhost:9092")]
    pub bootstrap_server: String,
    /// Create a new topic.
    #[arg(long)]
    pub create: bool,
    /// List all available topics.
    #[arg(long)]
    pub list: bool,
    /// List details for the given topics (all topics without --topic).
    #[arg(long)]
    pub describe: bool,
    /// Delete a topic.
    #[arg(long)]
    pub delete: bool,
    /// Alter the number of partitions of a topic.
    #[arg(long)]
    pub alter: bool,
    /// The topic to create, alter, describe or delete. Except with --create, a regular
    /// expression matching whole names ("test\\.topic" for a literal dot; commas separate
    /// alternatives).
    #[arg(long)]
    pub topic: Option<String>,
    /// The number of partitions for the topic being created or altered.
    #[arg(long)]
    pub partitions: Option<i32>,
    /// The replication factor for each partition in the topic being created.
    #[arg(long)]
    pub replication_factor: Option<i16>,
    /// A topic configuration override (key=value), repeatable.
    #[arg(long = "config", value_name = "KEY=VALUE")]
    pub config: Vec<String>,
    /// Only create the topic if it does not already exist.
    #[arg(long)]
    pub if_not_exists: bool,
    /// Only delete or alter the topic if it exists.
    #[arg(long)]
    pub if_exists: bool,
    /// Exclude internal topics when listing or describing.
    #[arg(long)]
    pub exclude_internal: bool,
    /// --describe: only partitions whose ISR is smaller than their replica set.
    #[arg(long)]
    pub under_replicated_partitions: bool,
    /// --describe: only partitions without a leader, or whose leader is not a live broker.
    #[arg(long)]
    pub unavailable_partitions: bool,
    /// --describe: only partitions whose ISR is below the topic's min.insync.replicas.
    #[arg(long)]
    pub under_min_isr_partitions: bool,
    /// --describe: only partitions whose ISR is exactly the topic's min.insync.replicas.
    #[arg(long)]
    pub at_min_isr_partitions: bool,
    /// --describe: only topics with configs set, without their partitions.
    #[arg(long)]
    pub topics_with_overrides: bool,
    /// Client properties file: security.protocol, sasl.mechanism, sasl.jaas.config, ssl.*,
    /// client.id (Kafka's client property names).
    #[arg(long, value_name = "FILE")]
    pub command_config: Option<std::path::PathBuf>,
}

pub async fn run(args: TopicsArgs) -> Result<()> {
    let actions = [
        args.create,
        args.list,
        args.describe,
        args.delete,
        args.alter,
    ];
    if actions.iter().filter(|a| **a).count() != 1 {
        bail!("Command must include exactly one action: --list, --describe, --create, --alter or --delete");
    }
    let f = DescribeFilter::from_args(&args);
    if (f.reporting() || f.with_overrides) && !args.describe {
        bail!("Options --under-replicated-partitions, --unavailable-partitions, --under-min-isr-partitions, --at-min-isr-partitions and --topics-with-overrides can only be used with --describe.");
    }
    let mut client = Client::connect(
        &args.bootstrap_server,
        &crate::util::client_config("runnel-topics", &[args.command_config.as_deref()], &[])?,
    )
    .await?;
    if args.create {
        create(&mut client, &args).await
    } else if args.list {
        list(&mut client, &args).await
    } else if args.describe {
        describe(&mut client, &args).await
    } else if args.delete {
        delete(&mut client, &args).await
    } else {
        alter(&mut client, &args).await
    }
}

/// Sends an admin request to the controller; on NOT_CONTROLLER (a controller move, or a broker
/// that does not forward) refreshes the controller id and tries again.
async fn to_controller<R, F>(client: &mut Client, req: &R, first_code: F) -> Result<R::Response>
where
    R: kafka_protocol::protocol::Request,
    F: Fn(&R::Response) -> Option<i16>,
{
    const NOT_CONTROLLER: i16 = 41;
    let mut attempt = 0;
    loop {
        let resp = client.send_to(Target::Controller, req).await?;
        attempt += 1;
        if first_code(&resp) == Some(NOT_CONTROLLER) && attempt < 5 {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            client.refresh(Some(&[])).await?;
            continue;
        }
        return Ok(resp);
    }
}

fn required_topic(args: &TopicsArgs) -> Result<&str> {
    args.topic
        .as_deref()
        .ok_or_else(|| anyhow!("Missing required argument \"[topic]\""))
}

async fn create(client: &mut Client, args: &TopicsArgs) -> Result<()> {
    let topic = required_topic(args)?;
    let version = client
        .conn(Target::Controller)
        .await?
        .version(ApiKey::CreateTopics)?;
    // v4+ lets the broker apply num.partitions / default.replication.factor.
    let default = if version >= 4 { -1 } else { 1 };
    let mut t = CreatableTopic::default();
    t.name = TopicName(StrBytes::from_string(topic.to_string()));
    t.num_partitions = args.partitions.unwrap_or(default);
    t.replication_factor = args.replication_factor.unwrap_or(default as i16);
    for c in &args.config {
        let (k, v) = parse_kv(c)?;
        let mut cfg = CreatableTopicConfig::default();
        cfg.name = StrBytes::from_string(k);
        cfg.value = Some(StrBytes::from_string(v));
        t.configs.push(cfg);
    }
    let mut req = CreateTopicsRequest::default();
    req.topics = vec![t];
    req.timeout_ms = 30_000;
    let resp = to_controller(client, &req, |r| r.topics.first().map(|t| t.error_code)).await?;
    let result = resp
        .topics
        .first()
        .ok_or_else(|| anyhow!("empty CreateTopics response"))?;
    match check(result.error_code, result.error_message.as_ref()) {
        Ok(()) => {
            println!("Created topic {topic}.");
            Ok(())
        }
        Err(e) if e.code == TOPIC_ALREADY_EXISTS && args.if_not_exists => Ok(()),
        Err(e) if e.code == TOPIC_ALREADY_EXISTS => bail!("{e}"),
        Err(e) => Err(e.into()),
    }
}

/// Kafka's topic filter (`TopicFilter.IncludeList`): commas mean alternatives, spaces and
/// surrounding quotes are dropped, and the expression must match the whole name.
pub fn topic_filter(raw: &str) -> Result<regex::Regex> {
    let cleaned: String = raw.trim().replace(',', "|").replace(' ', "");
    let cleaned = cleaned
        .trim_start_matches(['"', '\''])
        .trim_end_matches(['"', '\'']);
    regex::Regex::new(&format!("^(?:{cleaned})$"))
        .map_err(|_| anyhow!("{cleaned} is an invalid regex."))
}

/// The existing topics `--topic` selects (all without it), sorted by name as Kafka lists them.
async fn matching_topics(client: &mut Client, args: &TopicsArgs) -> Result<Vec<TopicMeta>> {
    let filter = args.topic.as_deref().map(topic_filter).transpose()?;
    Ok(client
        .refresh(None)
        .await?
        .topics
        .values()
        .filter(|t| !(args.exclude_internal && t.is_internal))
        .filter(|t| filter.as_ref().is_none_or(|f| f.is_match(&t.name)))
        .cloned()
        .collect())
}

/// Kafka's check that a named topic matched something (unless `--if-exists`).
fn ensure_found(topics: &[TopicMeta], args: &TopicsArgs) -> Result<bool> {
    match &args.topic {
        Some(name) if topics.is_empty() && !name.is_empty() => {
            if args.if_exists {
                Ok(false)
            } else {
                bail!("Topic '{name}' does not exist as expected")
            }
        }
        _ => Ok(true),
    }
}

async fn list(client: &mut Client, args: &TopicsArgs) -> Result<()> {
    let topics = matching_topics(client, args).await?;
    let names: Vec<&str> = topics.iter().map(|t| t.name.as_str()).collect();
    // Kafka joins the names and prints one line, so an empty cluster prints an empty line.
    println!("{}", names.join("\n"));
    Ok(())
}

/// A topic's configs as DescribeConfigs gives them: the non-default ones as `k=v` pairs, in
/// broker order (what kafka-topics.sh prints), and the effective min.insync.replicas.
struct TopicConfigs {
    overrides: Vec<(String, String)>,
    min_isr: usize,
}

async fn topic_configs(client: &mut Client, topic: &str) -> Result<TopicConfigs> {
    let mut res = DescribeConfigsResource::default();
    res.resource_type = RESOURCE_TOPIC;
    res.resource_name = StrBytes::from_string(topic.to_string());
    res.configuration_keys = None;
    let mut req = DescribeConfigsRequest::default();
    req.resources = vec![res];
    let resp = client.send_to(Target::Any, &req).await?;
    let result = resp
        .results
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("empty DescribeConfigs response"))?;
    check(result.error_code, result.error_message.as_ref())?;
    let min_isr = result
        .configs
        .iter()
        .find(|c| c.name.as_str() == "min.insync.replicas")
        .and_then(|c| c.value.as_ref())
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let overrides = result
        .configs
        .into_iter()
        .filter(|c| c.config_source != CONFIG_SOURCE_DEFAULT)
        .map(|c| {
            let value = c
                .value
                .map(|v| v.to_string())
                .unwrap_or_else(|| "null".into());
            (c.name.to_string(), value)
        })
        .collect();
    Ok(TopicConfigs { overrides, min_isr })
}

/// Which parts of `--describe` to print: Kafka's report options.
#[derive(Debug, Clone, Default)]
pub struct DescribeFilter {
    pub under_replicated: bool,
    pub unavailable: bool,
    pub under_min_isr: bool,
    pub at_min_isr: bool,
    pub with_overrides: bool,
}

impl DescribeFilter {
    fn from_args(args: &TopicsArgs) -> DescribeFilter {
        DescribeFilter {
            under_replicated: args.under_replicated_partitions,
            unavailable: args.unavailable_partitions,
            under_min_isr: args.under_min_isr_partitions,
            at_min_isr: args.at_min_isr_partitions,
            with_overrides: args.topics_with_overrides,
        }
    }

    /// A report option leaves out the topic lines (and every partition it does not select).
    fn reporting(&self) -> bool {
        self.under_replicated || self.unavailable || self.under_min_isr || self.at_min_isr
    }
}

/// The `--describe` block of one topic, byte for byte as Kafka 4.1's kafka-topics.sh prints it
/// for a broker that reports partitions through Metadata: Runnel keeps no eligible leader
/// replicas (KIP-966), so the `Elr` and `LastKnownElr` columns say `N/A`. Kafka's report
/// options in `filter` select what is printed; `min_isr` is the topic's min.insync.replicas and
/// `live` the live brokers (all, when `None`).
fn format_filtered(
    topic: &TopicMeta,
    configs: &[(String, String)],
    filter: &DescribeFilter,
    min_isr: usize,
    live: Option<&std::collections::BTreeSet<i32>>,
) -> String {
    let mut out = String::new();
    if !filter.reporting() && (!filter.with_overrides || !configs.is_empty()) {
        out.push_str(&topic_line(topic, configs));
    }
    if filter.with_overrides {
        return out;
    }
    let join = |ids: &[i32]| ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
    for p in &topic.partitions {
        let has_leader = p.leader >= 0;
        let selected = !filter.reporting()
            || (filter.under_replicated && p.isr.len() < p.replicas.len())
            || (filter.unavailable
                && (!has_leader || live.is_some_and(|l| !l.contains(&p.leader))))
            || (filter.under_min_isr && (!has_leader || p.isr.len() < min_isr))
            || (filter.at_min_isr && p.isr.len() == min_isr);
        if !selected {
            continue;
        }
        let leader = if has_leader {
            p.leader.to_string()
        } else {
            "none".to_string()
        };
        out.push_str(&format!(
            "\tTopic: {}\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}\tElr: N/A\tLastKnownElr: N/A\n",
            topic.name,
            p.index,
            leader,
            join(&p.replicas),
            join(&p.isr)
        ));
    }
    out
}

fn topic_line(topic: &TopicMeta, configs: &[(String, String)]) -> String {
    let replication_factor = topic.partitions.first().map_or(0, |p| p.replicas.len());
    let configs = configs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    // Kafka omits the id for a zero UUID (brokers that predate topic ids).
    let topic_id = if topic.id.is_nil() {
        String::new()
    } else {
        format!("\tTopicId: {}", topic_id_string(&topic.id))
    };
    format!(
        "Topic: {}{topic_id}\tPartitionCount: {}\tReplicationFactor: {}\tConfigs: {}\n",
        topic.name,
        topic.partitions.len(),
        replication_factor,
        configs
    )
}

async fn describe(client: &mut Client, args: &TopicsArgs) -> Result<()> {
    let topics = matching_topics(client, args).await?;
    if !ensure_found(&topics, args)? {
        return Ok(());
    }
    let filter = DescribeFilter::from_args(args);
    let live: std::collections::BTreeSet<i32> = client.meta.brokers.keys().copied().collect();
    for t in &topics {
        if t.error_code != 0 {
            return Err(KafkaError::new(t.error_code, None).into());
        }
        let configs = topic_configs(client, &t.name).await?;
        print!(
            "{}",
            format_filtered(t, &configs.overrides, &filter, configs.min_isr, Some(&live))
        );
    }
    Ok(())
}

async fn delete(client: &mut Client, args: &TopicsArgs) -> Result<()> {
    required_topic(args)?;
    let topics = matching_topics(client, args).await?;
    if !ensure_found(&topics, args)? {
        return Ok(());
    }
    for t in &topics {
        delete_one(client, args, &t.name).await?;
    }
    Ok(())
}

async fn delete_one(client: &mut Client, args: &TopicsArgs, topic: &str) -> Result<()> {
    let name = TopicName(StrBytes::from_string(topic.to_string()));
    let mut state = DeleteTopicState::default();
    state.name = Some(name.clone());
    let mut req = DeleteTopicsRequest::default();
    req.topics = vec![state];
    req.topic_names = vec![name];
    req.timeout_ms = 30_000;
    let resp = to_controller(client, &req, |r| r.responses.first().map(|t| t.error_code)).await?;
    let result = resp
        .responses
        .first()
        .ok_or_else(|| anyhow!("empty DeleteTopics response"))?;
    match check(result.error_code, result.error_message.as_ref()) {
        Ok(()) => Ok(()),
        Err(e) if e.code == UNKNOWN_TOPIC_OR_PARTITION && args.if_exists => Ok(()),
        Err(e) if e.code == UNKNOWN_TOPIC_OR_PARTITION => {
            bail!("Topic '{topic}' does not exist as expected")
        }
        Err(e) => Err(e.into()),
    }
}

async fn alter(client: &mut Client, args: &TopicsArgs) -> Result<()> {
    required_topic(args)?;
    let Some(count) = args.partitions else {
        bail!("--alter needs --partitions (only the partition count can be altered here; use `runnel configs` for configs)");
    };
    let topics = matching_topics(client, args).await?;
    if !ensure_found(&topics, args)? {
        return Ok(());
    }
    for t in &topics {
        alter_one(client, args, &t.name, count).await?;
    }
    Ok(())
}

async fn alter_one(client: &mut Client, args: &TopicsArgs, topic: &str, count: i32) -> Result<()> {
    let mut t = CreatePartitionsTopic::default();
    t.name = TopicName(StrBytes::from_string(topic.to_string()));
    t.count = count;
    t.assignments = None;
    let mut req = CreatePartitionsRequest::default();
    req.topics = vec![t];
    req.timeout_ms = 30_000;
    let resp = to_controller(client, &req, |r| r.results.first().map(|t| t.error_code)).await?;
    let result = resp
        .results
        .first()
        .ok_or_else(|| anyhow!("empty CreatePartitions response"))?;
    match check(result.error_code, result.error_message.as_ref()) {
        Ok(()) => Ok(()),
        Err(e) if e.code == UNKNOWN_TOPIC_OR_PARTITION && args.if_exists => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runnel_client::PartitionMeta;

    #[test]
    fn describe_output_matches_kafka_layout() {
        let part = |index, leader| PartitionMeta {
            index,
            error_code: 0,
            leader,
            leader_epoch: 0,
            replicas: vec![1, 2],
            isr: vec![2, 1],
            offline: vec![],
        };
        let t = TopicMeta {
            name: "my-topic".into(),
            id: uuid::Uuid::from_bytes([1; 16]),
            error_code: 0,
            is_internal: false,
            partitions: vec![part(0, 1), part(1, -1)],
        };
        let mut old = t.clone();
        old.id = uuid::Uuid::nil();
        old.partitions.clear();
        assert_eq!(
            format_filtered(&old, &[], &DescribeFilter::default(), 1, None),
            "Topic: my-topic\tPartitionCount: 0\tReplicationFactor: 0\tConfigs: \n"
        );
        let out = format_filtered(
            &t,
            &[
                ("cleanup.policy".into(), "compact".into()),
                ("segment.bytes".into(), "1024".into()),
            ],
            &DescribeFilter::default(),
            1,
            None,
        );
        assert_eq!(
            out,
            "Topic: my-topic\tTopicId: AQEBAQEBAQEBAQEBAQEBAQ\tPartitionCount: 2\tReplicationFactor: 2\tConfigs: cleanup.policy=compact,segment.bytes=1024\n\
             \tTopic: my-topic\tPartition: 0\tLeader: 1\tReplicas: 1,2\tIsr: 2,1\tElr: N/A\tLastKnownElr: N/A\n\
             \tTopic: my-topic\tPartition: 1\tLeader: none\tReplicas: 1,2\tIsr: 2,1\tElr: N/A\tLastKnownElr: N/A\n"
        );
    }

    #[test]
    fn report_options_select_partitions_as_kafka() {
        let part = |index, leader, isr: Vec<i32>| PartitionMeta {
            index,
            error_code: 0,
            leader,
            leader_epoch: 0,
            replicas: vec![1, 2, 3],
            isr,
            offline: vec![],
        };
        let t = TopicMeta {
            name: "t".into(),
            id: uuid::Uuid::nil(),
            error_code: 0,
            is_internal: false,
            partitions: vec![
                part(0, 1, vec![1, 2, 3]),
                part(1, 2, vec![2, 3]),
                part(2, -1, vec![]),
                part(3, 3, vec![3]),
            ],
        };
        let live = std::collections::BTreeSet::from([1, 2]);
        let lines = |f: DescribeFilter| {
            format_filtered(&t, &[], &f, 2, Some(&live))
                .lines()
                .map(|l| l.split('\t').nth(2).unwrap_or(l).to_string())
                .collect::<Vec<_>>()
        };
        let f = |set: fn(&mut DescribeFilter)| {
            let mut f = DescribeFilter::default();
            set(&mut f);
            lines(f)
        };
        assert_eq!(
            f(|f| f.under_replicated = true),
            ["Partition: 1", "Partition: 2", "Partition: 3"]
        );
        // No leader, or a leader that is not a live broker.
        assert_eq!(
            f(|f| f.unavailable = true),
            ["Partition: 2", "Partition: 3"]
        );
        assert_eq!(
            f(|f| f.under_min_isr = true),
            ["Partition: 2", "Partition: 3"]
        );
        assert_eq!(f(|f| f.at_min_isr = true), ["Partition: 1"]);
        // Topics without overrides are left out; those with them print only the topic line.
        assert!(f(|f| f.with_overrides = true).is_empty());
        let o = DescribeFilter {
            with_overrides: true,
            ..Default::default()
        };
        let out = format_filtered(&t, &[("a".into(), "b".into())], &o, 2, None);
        assert_eq!(
            out,
            "Topic: t\tPartitionCount: 4\tReplicationFactor: 3\tConfigs: a=b\n"
        );
    }

    #[test]
    fn topic_filter_is_kafkas_include_list() {
        let f = topic_filter("test\\.topic").unwrap();
        assert!(f.is_match("test.topic"));
        assert!(!f.is_match("testXtopic"));
        assert!(!f.is_match("test.topic2"), "the whole name must match");
        let f = topic_filter(" \"orders-.*, payments\" ").unwrap();
        assert!(f.is_match("orders-eu") && f.is_match("payments"));
        assert!(!f.is_match("payments-eu"));
        let err = topic_filter("a(").unwrap_err().to_string();
        assert_eq!(err, "a( is an invalid regex.");
    }
}
