//! `runnel console-consumer`: Kafka's `kafka-console-consumer.sh`. It reads `--topic`, or the
//! topics whose whole names match the `--include` regular expression when it starts. Without
//! `--group` it reads every partition (or one) from ListOffsets-chosen positions; with `--group`
//! it is a member of that consumer group (classic protocol, range assignor) that reads the
//! partitions it is assigned from the committed offsets and commits its position every
//! `auto.commit.interval.ms` and on exit. Records are printed as Kafka's formatters print them
//! (`--formatter`: DefaultMessageFormatter with its `print.*` properties and deserializers,
//! LoggingMessageFormatter, NoOpMessageFormatter).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::records::{Record, TimestampType};
use tokio::time::Instant;

use crate::util::parse_kv;
use runnel_client::consume::Tp;
use runnel_client::consume::{
    decode_records, fetch_committed, fetch_request, fetched_partitions, leaders, list_offsets,
    parse_isolation, FetchLimits, GroupConfig, GroupMember, EARLIEST, LATEST,
};
use runnel_client::{Client, TopicMeta};

const OFFSET_OUT_OF_RANGE: i16 = 1;

#[derive(clap::Args, Debug, Clone)]
pub struct ConsoleConsumerArgs {
    /// The server(s) to connect to (HOST:PORT,...).
    #[arg(long, default_value = "localhost:9092")]
    pub bootstrap_server: String,
    /// The topic to consume from.
    #[arg(long, conflicts_with = "include")]
    pub topic: Option<String>,
    /// A regular expression: consume every topic whose whole name matches it (internal topics
    /// excluded), as found at start. Kafka 3.x's --whitelist is the same.
    #[arg(long, alias = "whitelist", value_name = "REGEX")]
    pub include: Option<String>,
    /// Start from the earliest message rather than the latest.
    #[arg(long)]
    pub from_beginning: bool,
    /// Consume only this partition.
    #[arg(long)]
    pub partition: Option<i32>,
    /// Start offset with --partition: a number, earliest or latest (default latest).
    #[arg(long, allow_hyphen_values = true)]
    pub offset: Option<String>,
    /// Exit after this many messages.
    #[arg(long)]
    pub max_messages: Option<u64>,
    /// Exit when no message arrived for this many ms.
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// The formatter: Kafka's DefaultMessageFormatter (default), LoggingMessageFormatter or
    /// NoOpMessageFormatter, by class name (org.apache.kafka.tools.consumer.* or kafka.tools.*).
    #[arg(long, value_name = "CLASS")]
    pub formatter: Option<String>,
    /// Formatter properties file (--property wins).
    #[arg(long, value_name = "FILE")]
    pub formatter_config: Option<std::path::PathBuf>,
    /// Formatter properties: print.timestamp, print.partition, print.offset, print.delivery,
    /// print.epoch, print.headers, print.key, print.value, key.separator, line.separator,
    /// headers.separator, null.literal, key.deserializer, value.deserializer,
    /// headers.deserializer.
    #[arg(
        long = "property",
        alias = "formatter-property",
        value_name = "KEY=VALUE"
    )]
    pub property: Vec<String>,
    /// Consumer configs: fetch.max.bytes, max.partition.fetch.bytes, fetch.max.wait.ms,
    /// fetch.min.bytes, isolation.level; with a group also group.id, auto.offset.reset,
    /// enable.auto.commit, auto.commit.interval.ms, session.timeout.ms,
    /// heartbeat.interval.ms, max.poll.interval.ms.
    #[arg(long = "consumer-property", value_name = "KEY=VALUE")]
    pub consumer_property: Vec<String>,
    /// Consumer config properties file: the consumer configs above and the client settings
    /// (security.protocol, sasl.*, ssl.*, client.id).
    #[arg(long = "consumer.config", value_name = "FILE")]
    pub consumer_config: Option<std::path::PathBuf>,
    /// Client properties file (read before --consumer.config; the same keys are accepted).
    #[arg(long, value_name = "FILE")]
    pub command_config: Option<std::path::PathBuf>,
    /// The consumer group to join; its committed offsets are where reading starts.
    #[arg(long)]
    pub group: Option<String>,
    /// read_uncommitted (default) or read_committed.
    #[arg(long)]
    pub isolation_level: Option<String>,
    /// Print nothing but the messages (accepted for compatibility).
    #[arg(long)]
    pub skip_message_on_error: bool,
    /// The key deserializer class (key.deserializer of the formatter).
    #[arg(long, value_name = "CLASS")]
    pub key_deserializer: Option<String>,
    /// The value deserializer class (value.deserializer of the formatter).
    #[arg(long, value_name = "CLASS")]
    pub value_deserializer: Option<String>,
}

/// Kafka's message formatters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Formatter {
    /// DefaultMessageFormatter: the `print.*` fields of each record.
    Default,
    /// LoggingMessageFormatter: as the default one; its own line is logged at INFO, which
    /// Kafka's tools do not show either.
    Logging,
    /// NoOpMessageFormatter: prints nothing (records are still counted).
    NoOp,
}

impl Formatter {
    /// By Kafka's class name, the current (`org.apache.kafka.tools.consumer.`) or the older
    /// (`kafka.tools.`) one, or the bare class name.
    pub fn parse(class: &str) -> Result<Formatter> {
        let class = class.trim();
        let (package, name) = class.rsplit_once('.').unwrap_or(("", class));
        if !matches!(
            package,
            "" | "org.apache.kafka.tools.consumer" | "kafka.tools"
        ) {
            bail!("Unknown formatter class '{class}': expected DefaultMessageFormatter, LoggingMessageFormatter or NoOpMessageFormatter (of org.apache.kafka.tools.consumer)");
        }
        match name {
            "DefaultMessageFormatter" => Ok(Formatter::Default),
            "LoggingMessageFormatter" => Ok(Formatter::Logging),
            "NoOpMessageFormatter" => Ok(Formatter::NoOp),
            "OffsetsMessageFormatter"
            | "GroupMetadataMessageFormatter"
            | "TransactionLogMessageFormatter"
            | "ShareGroupStateMessageFormatter" => bail!(
                "Formatter {name} (records of Kafka's internal topics) is not supported by runnel console-consumer; use runnel consumer-groups --describe for committed offsets"
            ),
            _ => bail!("Unknown formatter class '{class}': expected DefaultMessageFormatter, LoggingMessageFormatter or NoOpMessageFormatter (of org.apache.kafka.tools.consumer)"),
        }
    }
}

/// The deserializers of Kafka's `org.apache.kafka.common.serialization` a formatter can be
/// given: the bytes are printed as the Java object's `toString()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deserializer {
    /// StringDeserializer, ByteArrayDeserializer, BytesDeserializer, ByteBufferDeserializer.
    Raw,
    Short,
    Integer,
    Long,
    Float,
    Double,
    Boolean,
    Uuid,
    Void,
}

impl Deserializer {
    pub fn parse(class: &str) -> Result<Deserializer> {
        let class = class.trim();
        let (package, name) = class.rsplit_once('.').unwrap_or(("", class));
        let d = match (package, name) {
            ("" | "org.apache.kafka.common.serialization", n) => match n {
                "StringDeserializer"
                | "ByteArrayDeserializer"
                | "BytesDeserializer"
                | "ByteBufferDeserializer" => Some(Deserializer::Raw),
                "ShortDeserializer" => Some(Deserializer::Short),
                "IntegerDeserializer" => Some(Deserializer::Integer),
                "LongDeserializer" => Some(Deserializer::Long),
                "FloatDeserializer" => Some(Deserializer::Float),
                "DoubleDeserializer" => Some(Deserializer::Double),
                "BooleanDeserializer" => Some(Deserializer::Boolean),
                "UUIDDeserializer" => Some(Deserializer::Uuid),
                "VoidDeserializer" => Some(Deserializer::Void),
                _ => None,
            },
            _ => None,
        };
        d.ok_or_else(|| anyhow!("Unsupported deserializer '{class}': expected one of Kafka's org.apache.kafka.common.serialization deserializers (String, ByteArray, Bytes, ByteBuffer, Short, Integer, Long, Float, Double, Boolean, UUID, Void)"))
    }

    /// The text of `bytes` as this deserializer's object prints it.
    pub fn render(self, bytes: &[u8]) -> Result<Vec<u8>> {
        let fixed = |n: usize, name: &str| -> Result<()> {
            if bytes.len() != n {
                bail!("Size of data received by {name}Deserializer is not {n}");
            }
            Ok(())
        };
        let text = match self {
            Deserializer::Raw => return Ok(bytes.to_vec()),
            Deserializer::Short => {
                fixed(2, "Short")?;
                i16::from_be_bytes([bytes[0], bytes[1]]).to_string()
            }
            Deserializer::Integer => {
                fixed(4, "Integer")?;
                i32::from_be_bytes(bytes.try_into()?).to_string()
            }
            Deserializer::Long => {
                fixed(8, "Long")?;
                i64::from_be_bytes(bytes.try_into()?).to_string()
            }
            Deserializer::Float => {
                fixed(4, "Float")?;
                java_float(f64::from(f32::from_be_bytes(bytes.try_into()?)))
            }
            Deserializer::Double => {
                fixed(8, "Double")?;
                java_float(f64::from_be_bytes(bytes.try_into()?))
            }
            Deserializer::Boolean => {
                fixed(1, "Boolean")?;
                (bytes[0] != 0).to_string()
            }
            Deserializer::Uuid => {
                let s = std::str::from_utf8(bytes)?;
                uuid::Uuid::parse_str(s)
                    .map_err(|e| anyhow!("Error parsing data into UUID: {e}"))?
                    .to_string()
            }
            Deserializer::Void => {
                if !bytes.is_empty() {
                    bail!("Data should be null for a VoidDeserializer.");
                }
                "null".to_string()
            }
        };
        Ok(text.into_bytes())
    }
}

/// Java's `Double.toString` for the common cases: a whole number keeps its `.0`.
fn java_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        format!("{v:?}")
    }
}

/// Kafka's DefaultMessageFormatter options.
#[derive(Debug, Clone)]
pub struct FormatOpts {
    pub formatter: Formatter,
    pub print_timestamp: bool,
    pub print_partition: bool,
    pub print_offset: bool,
    pub print_delivery: bool,
    pub print_epoch: bool,
    pub print_headers: bool,
    pub print_key: bool,
    pub print_value: bool,
    pub key_separator: Vec<u8>,
    pub line_separator: Vec<u8>,
    pub headers_separator: Vec<u8>,
    pub null_literal: Vec<u8>,
    pub key_deserializer: Deserializer,
    pub value_deserializer: Deserializer,
    pub headers_deserializer: Deserializer,
}

impl FormatOpts {
    pub fn from_properties(props: &HashMap<String, String>) -> Result<FormatOpts> {
        let flag = |k: &str, default: bool| {
            props
                .get(k)
                .map_or(default, |v| v.trim().eq_ignore_ascii_case("true"))
        };
        let text = |k: &str, default: &str| {
            props
                .get(k)
                .map_or_else(|| default.as_bytes().to_vec(), |v| unescape(v).into_bytes())
        };
        let deserializer = |k: &str| {
            props
                .get(k)
                .map_or(Ok(Deserializer::Raw), |c| Deserializer::parse(c))
        };
        Ok(FormatOpts {
            formatter: Formatter::Default,
            print_timestamp: flag("print.timestamp", false),
            print_partition: flag("print.partition", false),
            print_offset: flag("print.offset", false),
            print_delivery: flag("print.delivery", false),
            print_epoch: flag("print.epoch", false),
            print_headers: flag("print.headers", false),
            print_key: flag("print.key", false),
            print_value: flag("print.value", true),
            key_separator: text("key.separator", "\t"),
            line_separator: text("line.separator", "\n"),
            headers_separator: text("headers.separator", ","),
            null_literal: text("null.literal", "null"),
            key_deserializer: deserializer("key.deserializer")?,
            value_deserializer: deserializer("value.deserializer")?,
            headers_deserializer: deserializer("headers.deserializer")?,
        })
    }
}

/// Shells pass `\t` literally; Kafka users expect it to mean a tab.
fn unescape(s: &str) -> String {
    s.replace("\\t", "\t").replace("\\n", "\n")
}

/// Appends one record as the chosen Kafka formatter prints it: each printed field is followed
/// by key.separator, the last by line.separator. Fails on bytes the deserializer rejects.
pub fn format_record(r: &Record, partition: i32, o: &FormatOpts, out: &mut Vec<u8>) -> Result<()> {
    if o.formatter == Formatter::NoOp {
        return Ok(());
    }
    let render = |d: Deserializer, bytes: Option<&[u8]>| -> Result<Vec<u8>> {
        match bytes {
            Some(b) => d.render(b),
            None => Ok(o.null_literal.clone()),
        }
    };
    let mut fields: Vec<Vec<u8>> = Vec::with_capacity(8);
    if o.print_timestamp {
        let ts = match r.timestamp_type {
            _ if r.timestamp < 0 => "NO_TIMESTAMP".to_string(),
            TimestampType::Creation => format!("CreateTime:{}", r.timestamp),
            TimestampType::LogAppend => format!("LogAppendTime:{}", r.timestamp),
        };
        fields.push(ts.into_bytes());
    }
    if o.print_partition {
        fields.push(format!("Partition:{partition}").into_bytes());
    }
    if o.print_offset {
        fields.push(format!("Offset:{}", r.offset).into_bytes());
    }
    if o.print_delivery {
        // Only share-group consumers count deliveries.
        fields.push(b"Delivery:NOT_PRESENT".to_vec());
    }
    if o.print_epoch {
        let epoch = if r.partition_leader_epoch >= 0 {
            r.partition_leader_epoch.to_string()
        } else {
            "NOT_PRESENT".to_string()
        };
        fields.push(format!("Epoch:{epoch}").into_bytes());
    }
    if o.print_headers {
        let mut h = Vec::new();
        if r.headers.is_empty() {
            h.extend_from_slice(b"NO_HEADERS");
        }
        for (i, (k, v)) in r.headers.iter().enumerate() {
            if i > 0 {
                h.extend_from_slice(&o.headers_separator);
            }
            h.extend_from_slice(k.as_bytes());
            h.push(b':');
            h.extend(render(o.headers_deserializer, v.as_deref())?);
        }
        fields.push(h);
    }
    if o.print_key {
        fields.push(render(o.key_deserializer, r.key.as_deref())?);
    }
    if o.print_value {
        fields.push(render(o.value_deserializer, r.value.as_deref())?);
    }
    let count = fields.len();
    for (i, f) in fields.into_iter().enumerate() {
        out.extend(f);
        out.extend_from_slice(if i + 1 < count {
            &o.key_separator
        } else {
            &o.line_separator
        });
    }
    Ok(())
}

fn parse_start(args: &ConsoleConsumerArgs) -> Result<i64> {
    match (&args.offset, args.partition) {
        (Some(_), None) => bail!("The partition is required when offset is specified."),
        (Some(o), Some(_)) => match o.as_str() {
            "earliest" => Ok(EARLIEST),
            "latest" => Ok(LATEST),
            n => {
                let v: i64 = n
                    .parse()
                    .map_err(|_| anyhow!("The provided offset value '{n}' is incorrect. Valid values are 'earliest', 'latest', or a non-negative long."))?;
                if v < 0 {
                    bail!("The provided offset value '{n}' is incorrect. Valid values are 'earliest', 'latest', or a non-negative long.");
                }
                Ok(v)
            }
        },
        (None, _) if args.from_beginning => Ok(EARLIEST),
        (None, _) => Ok(LATEST),
    }
}

/// The consumer properties in precedence order: --command-config, --consumer.config, then
/// --consumer-property.
fn consumer_properties(args: &ConsoleConsumerArgs) -> Result<Vec<(String, String)>> {
    let mut props = Vec::new();
    for path in [&args.command_config, &args.consumer_config]
        .into_iter()
        .flatten()
    {
        props.extend(runnel_client::properties::load(path)?);
    }
    for p in &args.consumer_property {
        props.push(parse_kv(p)?);
    }
    Ok(props)
}

pub async fn run(args: ConsoleConsumerArgs) -> Result<()> {
    let props = consumer_properties(&args)?;
    let client_config =
        runnel_client::ClientConfig::from_properties("console-consumer", props.clone())?;
    let consumer_props: HashMap<String, String> = props.into_iter().collect();
    if args.from_beginning && args.offset.is_some() {
        bail!("Options --from-beginning and --offset cannot be specified together.");
    }
    let group = match (&args.group, consumer_props.get("group.id")) {
        (Some(a), Some(b)) if a != b => bail!(
            "The group ids provided with --group ('{a}') and --consumer-property group.id ('{b}') do not match."
        ),
        (Some(g), _) | (None, Some(g)) => Some(g.clone()),
        (None, None) => None,
    };
    if group.is_some() && (args.partition.is_some() || args.offset.is_some()) {
        bail!("Options --group and --partition/--offset cannot be specified together: a group member reads the partitions it is assigned.");
    }
    let start = parse_start(&args)?;
    let group_opts = match &group {
        Some(g) => Some(GroupOpts::parse(g, &args, &consumer_props)?),
        None => None,
    };
    let fmt = format_options(&args)?;
    let mut limits = FetchLimits::default();
    let int = |k: &str| -> Result<Option<i32>> {
        consumer_props
            .get(k)
            .map(|v| {
                v.trim()
                    .parse::<i32>()
                    .map_err(|_| anyhow!("invalid {k} '{v}'"))
            })
            .transpose()
    };
    if let Some(v) = int("fetch.max.bytes")? {
        limits.max_bytes = v;
    }
    if let Some(v) = int("max.partition.fetch.bytes")? {
        limits.partition_max_bytes = v;
    }
    if let Some(v) = int("fetch.max.wait.ms")? {
        limits.max_wait_ms = v;
    }
    if let Some(v) = int("fetch.min.bytes")? {
        limits.min_bytes = v;
    }
    if let Some(level) = args
        .isolation_level
        .as_ref()
        .or(consumer_props.get("isolation.level"))
    {
        limits.isolation = parse_isolation(level)?;
    }
    if let Some(t) = args.timeout_ms {
        // Never wait in the broker longer than we are willing to wait overall.
        limits.max_wait_ms = limits.max_wait_ms.min(t.min(i32::MAX as u64) as i32);
    }

    if args.partition.is_some() && args.topic.is_none() {
        bail!("The topic is required when partition is specified.");
    }
    let mut client = Client::connect(&args.bootstrap_server, &client_config).await?;
    let mut topics: BTreeMap<String, TopicMeta> = BTreeMap::new();
    match (&args.topic, &args.include) {
        (Some(name), None) => {
            topics.insert(name.clone(), client.topic(name).await?);
        }
        (None, Some(include)) => {
            let filter = crate::topics::topic_filter(include)?;
            let meta = client.refresh(None).await?;
            for t in meta.topics.values() {
                if !t.is_internal && t.error_code == 0 && filter.is_match(&t.name) {
                    topics.insert(t.name.clone(), t.clone());
                }
            }
            if topics.is_empty() {
                bail!("No topic matches --include '{include}'.");
            }
        }
        _ => bail!("Exactly one of --include/--topic is required."),
    }
    let mut partitions: Vec<Tp> = Vec::new();
    for t in topics.values() {
        match args.partition {
            Some(p) if !t.partitions.iter().any(|m| m.index == p) => {
                bail!("partition {p} does not exist in topic '{}'", t.name)
            }
            Some(p) => partitions.push((t.name.clone(), p)),
            None => partitions.extend(t.partitions.iter().map(|p| (t.name.clone(), p.index))),
        }
    }
    let mut positions: BTreeMap<Tp, i64> = if group_opts.is_some() {
        BTreeMap::new() // the assignment decides
    } else if start >= 0 {
        partitions.iter().map(|tp| (tp.clone(), start)).collect()
    } else {
        let mut out = BTreeMap::new();
        for t in topics.values() {
            let ps: Vec<i32> = partitions
                .iter()
                .filter(|(n, _)| *n == t.name)
                .map(|(_, p)| *p)
                .collect();
            for (p, o) in list_offsets(&mut client, t, &ps, start, limits.isolation).await? {
                out.insert((t.name.clone(), p), o);
            }
        }
        out
    };
    let reset_to = match &group_opts {
        Some(g) => g.reset.unwrap_or(LATEST),
        None if args.from_beginning || start == EARLIEST => EARLIEST,
        None => LATEST,
    };
    let mut member = group_opts.as_ref().map(|g| {
        GroupMember::new(GroupConfig {
            group: g.group.clone(),
            topics: topics.keys().cloned().collect(),
            session_timeout_ms: g.session_timeout_ms,
            rebalance_timeout_ms: g.rebalance_timeout_ms,
            heartbeat_interval: g.heartbeat_interval,
            client_id: client_config.client_id.clone(),
        })
    });
    // What this member last committed, so an idle auto-commit sends nothing.
    let mut committed: BTreeMap<Tp, i64> = BTreeMap::new();
    let mut last_commit = Instant::now();

    let read_committed = limits.isolation == 1;
    let stdout = std::io::stdout();
    let mut out = Vec::with_capacity(64 * 1024);
    let mut records = Vec::new();
    let mut count = 0u64;
    let mut last_message = Instant::now();
    let timeout = args.timeout_ms.map(Duration::from_millis);
    let max = args.max_messages.unwrap_or(u64::MAX);

    // Ctrl-C and SIGTERM end the loop so the total is still reported (and a group member
    // commits and leaves), as Kafka's shutdown hook does.
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let interrupted = interrupted.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                interrupted.store(true, Ordering::Relaxed);
            }
        });
    }
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let interrupted = interrupted.clone();
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::spawn(async move {
                if term.recv().await.is_some() {
                    interrupted.store(true, Ordering::Relaxed);
                }
            });
        }
    }
    'outer: while count < max && !interrupted.load(Ordering::Relaxed) {
        if let Some(t) = timeout {
            if last_message.elapsed() >= t {
                break;
            }
        }
        if let (Some(m), Some(g)) = (member.as_mut(), group_opts.as_ref()) {
            if m.needs_join() {
                if m.is_joined() && g.auto_commit {
                    // Eager rebalance: hand over the partitions with their positions committed.
                    commit_positions(&mut client, m, &positions, &mut committed).await;
                }
                // A join can wait for the whole rebalance timeout: Ctrl-C must still end it.
                let stop = async {
                    while !interrupted.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                };
                let assignment = tokio::select! {
                    a = m.join(&mut client) => a?,
                    () = stop => break,
                };
                positions.clear();
                for (name, mine) in &assignment {
                    let Some(t) = topics.get(name) else { continue };
                    let start =
                        group_start_positions(&mut client, m.group(), t, mine, g, &limits).await?;
                    positions.extend(start.into_iter().map(|(p, o)| ((name.clone(), p), o)));
                }
                // Commit the starting positions at the next auto-commit too (a reset one was
                // never committed), as the Java consumer commits every position it holds.
                committed.clear();
                last_commit = Instant::now();
                continue;
            }
            if g.auto_commit && last_commit.elapsed() >= g.auto_commit_interval {
                commit_positions(&mut client, m, &positions, &mut committed).await;
                last_commit = Instant::now();
            }
            if positions.is_empty() {
                // Assigned nothing (more members than partitions): wait for a rebalance.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        }
        // One fetch per topic and leader.
        let mut by_leader: BTreeMap<(String, i32), Vec<(i32, i64)>> = BTreeMap::new();
        let mut need_refresh: Vec<String> = Vec::new();
        for t in topics.values() {
            let leader_of = leaders(t);
            for ((name, p), o) in positions.range((t.name.clone(), i32::MIN)..) {
                if *name != t.name {
                    break;
                }
                match leader_of.get(p) {
                    Some(l) if *l >= 0 => by_leader
                        .entry((t.name.clone(), *l))
                        .or_default()
                        .push((*p, *o)),
                    _ => need_refresh.push(t.name.clone()),
                }
            }
        }
        let mut resets: Vec<Tp> = Vec::new();
        for ((name, leader), pos) in by_leader {
            let topic = &topics[&name];
            let req = fetch_request(topic, &pos, &limits);
            let conn = match client.broker(leader).await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("WARN {e:#}");
                    need_refresh.push(name.clone());
                    continue;
                }
            };
            let version = conn.version(ApiKey::Fetch)?;
            let resp = match conn.request_at(&req, version).await {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("WARN fetch from broker {leader} failed: {e:#}");
                    client.drop_broker(leader);
                    need_refresh.push(name.clone());
                    continue;
                }
            };
            for fp in fetched_partitions(resp, topic)? {
                let tp = (name.clone(), fp.partition);
                let Some(&offset) = positions.get(&tp) else {
                    continue;
                };
                if let Some(e) = fp.error {
                    if e.code == OFFSET_OUT_OF_RANGE {
                        resets.push(tp);
                    } else if e.is_retriable() {
                        need_refresh.push(name.clone());
                    } else {
                        bail!("fetch {}-{} failed: {e}", topic.name, fp.partition);
                    }
                    continue;
                }
                let Some(raw) = fp.records else { continue };
                records.clear();
                let next = decode_records(
                    &raw,
                    offset,
                    read_committed.then_some(&fp.aborted[..]),
                    &mut records,
                )?;
                positions.insert(tp.clone(), next);
                for r in &records {
                    if let Err(e) = format_record(r, fp.partition, &fmt, &mut out) {
                        if !args.skip_message_on_error {
                            return Err(e.context(format!(
                                "cannot format the record at offset {} of partition {}",
                                r.offset, fp.partition
                            )));
                        }
                        eprintln!(
                            "ERROR skipping the record at offset {} of partition {}: {e:#}",
                            r.offset, fp.partition
                        );
                    }
                    count += 1;
                    last_message = Instant::now();
                    if count >= max {
                        // The position (and so a group's commit) stops after the last record
                        // printed, not after the batch.
                        positions.insert(tp.clone(), r.offset + 1);
                        break;
                    }
                }
                let written = {
                    let mut lock = stdout.lock();
                    lock.write_all(&out).and_then(|()| lock.flush())
                };
                match written {
                    Ok(()) => {}
                    // `| head`: the reader is gone, which is a normal way to stop.
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break 'outer,
                    Err(e) => return Err(e.into()),
                }
                out.clear();
                if count >= max {
                    break 'outer;
                }
            }
        }
        for t in topics.values() {
            let ps: Vec<i32> = resets
                .iter()
                .filter(|(n, _)| *n == t.name)
                .map(|(_, p)| *p)
                .collect();
            if ps.is_empty() {
                continue;
            }
            let fresh = list_offsets(&mut client, t, &ps, reset_to, limits.isolation).await?;
            positions.extend(fresh.into_iter().map(|(p, o)| ((t.name.clone(), p), o)));
        }
        if !need_refresh.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            need_refresh.sort();
            need_refresh.dedup();
            for name in need_refresh {
                let fresh = client.topic(&name).await?;
                topics.insert(name, fresh);
            }
        }
    }
    if let (Some(m), Some(g)) = (member.as_mut(), group_opts.as_ref()) {
        if g.auto_commit {
            commit_positions(&mut client, m, &positions, &mut committed).await;
        }
        m.leave(&mut client).await;
    }
    eprintln!("Processed a total of {count} messages");
    Ok(())
}

/// The formatter and its properties: --formatter-config, then --property, then the
/// --key-deserializer / --value-deserializer flags.
fn format_options(args: &ConsoleConsumerArgs) -> Result<FormatOpts> {
    let mut props: HashMap<String, String> = HashMap::new();
    if let Some(path) = &args.formatter_config {
        props.extend(runnel_client::properties::load(path)?);
    }
    for p in &args.property {
        let (k, v) = parse_kv(p)?;
        props.insert(k, v);
    }
    if let Some(d) = &args.key_deserializer {
        props.insert("key.deserializer".into(), d.clone());
    }
    if let Some(d) = &args.value_deserializer {
        props.insert("value.deserializer".into(), d.clone());
    }
    let mut fmt = FormatOpts::from_properties(&props)?;
    if let Some(f) = &args.formatter {
        fmt.formatter = Formatter::parse(f)?;
    }
    Ok(fmt)
}

/// The group settings of a console consumer, with the Java consumer's defaults.
#[derive(Debug, Clone)]
struct GroupOpts {
    group: String,
    /// auto.offset.reset: EARLIEST, LATEST, or `None` for "none" (fail without a commit).
    reset: Option<i64>,
    auto_commit: bool,
    auto_commit_interval: Duration,
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
    heartbeat_interval: Duration,
}

impl GroupOpts {
    fn parse(
        group: &str,
        args: &ConsoleConsumerArgs,
        props: &HashMap<String, String>,
    ) -> Result<GroupOpts> {
        if group.is_empty() {
            bail!("The group id must not be empty.");
        }
        let int = |k: &str, default: i64| -> Result<i64> {
            match props.get(k) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (0..=i64::from(i32::MAX)).contains(n))
                    .ok_or_else(|| anyhow!("invalid {k} '{v}': expected a non-negative number")),
            }
        };
        // As in Kafka, --from-beginning means auto.offset.reset=earliest, and conflicts with an
        // explicit other value.
        let reset = match (
            props.get("auto.offset.reset").map(|s| s.trim()),
            args.from_beginning,
        ) {
            (Some("earliest"), _) | (None, true) => Some(EARLIEST),
            (Some("latest"), false) | (None, false) => Some(LATEST),
            (Some("none"), false) => None,
            (Some(v @ ("latest" | "none")), true) => {
                bail!("Can't simultaneously specify --from-beginning and 'auto.offset.reset={v}'")
            }
            (Some(v), _) => {
                bail!("invalid auto.offset.reset '{v}': expected earliest, latest or none")
            }
        };
        let auto_commit = match props.get("enable.auto.commit").map(|s| s.trim()) {
            None | Some("true") => true,
            Some("false") => false,
            Some(v) => bail!("invalid enable.auto.commit '{v}': expected true or false"),
        };
        let session = int("session.timeout.ms", 45_000)?;
        let heartbeat = int("heartbeat.interval.ms", 3_000.min(session / 3))?;
        if heartbeat >= session {
            bail!("heartbeat.interval.ms must be lower than session.timeout.ms");
        }
        Ok(GroupOpts {
            group: group.to_string(),
            reset,
            auto_commit,
            auto_commit_interval: Duration::from_millis(
                int("auto.commit.interval.ms", 5_000)? as u64
            ),
            session_timeout_ms: session as i32,
            rebalance_timeout_ms: int("max.poll.interval.ms", 300_000)? as i32,
            heartbeat_interval: Duration::from_millis(heartbeat.max(1) as u64),
        })
    }
}

/// Where a member starts on its newly assigned partitions: the committed offset, or
/// auto.offset.reset where there is none.
async fn group_start_positions(
    client: &mut Client,
    group: &str,
    topic: &runnel_client::TopicMeta,
    partitions: &[i32],
    opts: &GroupOpts,
    limits: &FetchLimits,
) -> Result<BTreeMap<i32, i64>> {
    if partitions.is_empty() {
        return Ok(BTreeMap::new());
    }
    let wanted = BTreeMap::from([(topic.name.clone(), partitions.to_vec())]);
    let committed = fetch_committed(client, group, Some(&wanted)).await?;
    let mut out = BTreeMap::new();
    let mut missing = Vec::new();
    for p in partitions {
        match committed.get(&(topic.name.clone(), *p)) {
            Some(o) => {
                out.insert(*p, *o);
            }
            None => missing.push(*p),
        }
    }
    if !missing.is_empty() {
        let Some(reset) = opts.reset else {
            bail!(
                "Undefined offset with no reset policy for partitions: {}",
                missing
                    .iter()
                    .map(|p| format!("{}-{p}", topic.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        out.extend(list_offsets(client, topic, &missing, reset, limits.isolation).await?);
    }
    Ok(out)
}

/// Commits the positions that moved since the last commit; failures are warnings (the next
/// commit, or a rejoin, follows).
async fn commit_positions(
    client: &mut Client,
    member: &mut GroupMember,
    positions: &BTreeMap<Tp, i64>,
    committed: &mut BTreeMap<Tp, i64>,
) {
    let changed: BTreeMap<Tp, i64> = positions
        .iter()
        .filter(|(tp, o)| committed.get(*tp) != Some(*o))
        .map(|(tp, o)| (tp.clone(), *o))
        .collect();
    if changed.is_empty() {
        return;
    }
    if member.commit(client, &changed).await {
        committed.extend(changed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use kafka_protocol::protocol::StrBytes;
    use runnel_client::produce::new_record;

    fn opts(props: &[(&str, &str)]) -> FormatOpts {
        FormatOpts::from_properties(
            &props
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn consumer_config_files_and_properties_in_kafka_order() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct P {
            #[command(flatten)]
            a: ConsoleConsumerArgs,
        }
        let dir = tempfile::tempdir().unwrap();
        let command = dir.path().join("client.properties");
        std::fs::write(&command, "group.id=a\nsecurity.protocol=PLAINTEXT\n").unwrap();
        let consumer = dir.path().join("consumer.properties");
        std::fs::write(&consumer, "group.id=b\nisolation.level=read_committed\n").unwrap();
        let a = P::parse_from([
            "c",
            "--topic",
            "t",
            "--command-config",
            command.to_str().unwrap(),
            "--consumer.config",
            consumer.to_str().unwrap(),
            "--consumer-property",
            "group.id=c",
        ])
        .a;
        let props: HashMap<String, String> = consumer_properties(&a).unwrap().into_iter().collect();
        assert_eq!(props["group.id"], "c");
        assert_eq!(props["isolation.level"], "read_committed");
        let bad = P::parse_from([
            "c",
            "--topic",
            "t",
            "--consumer-property",
            "security.protocol=SASL_SSL",
            "--consumer-property",
            "sasl.mechanism=GSSAPI",
        ])
        .a;
        let err = runnel_client::ClientConfig::from_properties(
            "console-consumer",
            consumer_properties(&bad).unwrap(),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("GSSAPI is not supported"));
    }

    #[test]
    fn formats_like_default_message_formatter() {
        let mut r = new_record(Some(Bytes::from("k")), Some(Bytes::from("v")), 1700);
        r.offset = 42;
        let mut out = Vec::new();
        format_record(&r, 3, &opts(&[]), &mut out).unwrap();
        assert_eq!(out, b"v\n");
        out.clear();
        let all = opts(&[
            ("print.key", "true"),
            ("print.timestamp", "true"),
            ("print.offset", "true"),
            ("print.partition", "true"),
            ("print.headers", "true"),
        ]);
        format_record(&r, 3, &all, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "CreateTime:1700\tPartition:3\tOffset:42\tNO_HEADERS\tk\tv\n"
        );
        out.clear();
        r.key = None;
        r.headers
            .insert(StrBytes::from_static_str("h1"), Some(Bytes::from("x")));
        r.headers.insert(StrBytes::from_static_str("h2"), None);
        format_record(
            &r,
            0,
            &opts(&[
                ("print.key", "true"),
                ("print.headers", "true"),
                ("key.separator", ":"),
            ]),
            &mut out,
        )
        .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "h1:x,h2:null:null:v\n");
    }

    #[test]
    fn print_properties_deserializers_and_formatters_as_kafka() {
        let mut r = new_record(
            Some(Bytes::from("word")),
            Some(Bytes::copy_from_slice(&42i64.to_be_bytes())),
            1700,
        );
        r.offset = 5;
        r.partition_leader_epoch = 3;
        let print = |o: &FormatOpts, r: &Record| {
            let mut out = Vec::new();
            format_record(r, 0, o, &mut out).map(|()| String::from_utf8(out).unwrap())
        };
        // The streams quickstart's word-count consumer.
        let counts = opts(&[
            ("print.key", "true"),
            ("print.value", "true"),
            (
                "key.deserializer",
                "org.apache.kafka.common.serialization.StringDeserializer",
            ),
            (
                "value.deserializer",
                "org.apache.kafka.common.serialization.LongDeserializer",
            ),
        ]);
        assert_eq!(print(&counts, &r).unwrap(), "word\t42\n");
        let epoch = opts(&[("print.epoch", "true"), ("print.delivery", "true")]);
        assert!(print(&epoch, &r)
            .unwrap()
            .starts_with("Delivery:NOT_PRESENT\tEpoch:3\t"));
        // The last printed field ends the line, whichever it is; nothing printed, no line.
        let key_only = opts(&[("print.key", "true"), ("print.value", "false")]);
        assert_eq!(print(&key_only, &r).unwrap(), "word\n");
        assert_eq!(print(&opts(&[("print.value", "false")]), &r).unwrap(), "");
        // Bytes the deserializer cannot read are an error.
        let mut short = r.clone();
        short.value = Some(Bytes::from("x"));
        let err = print(&counts, &short).unwrap_err().to_string();
        assert_eq!(err, "Size of data received by LongDeserializer is not 8");
        assert_eq!(
            Deserializer::Double.render(&1.5f64.to_be_bytes()).unwrap(),
            b"1.5"
        );
        assert_eq!(
            Deserializer::Integer.render(&7i32.to_be_bytes()).unwrap(),
            b"7"
        );
        assert!(Deserializer::parse("com.example.AvroDeserializer").is_err());
        let mut noop = opts(&[]);
        noop.formatter =
            Formatter::parse("org.apache.kafka.tools.consumer.NoOpMessageFormatter").unwrap();
        assert_eq!(print(&noop, &r).unwrap(), "");
        assert_eq!(
            Formatter::parse("kafka.tools.DefaultMessageFormatter").unwrap(),
            Formatter::Default
        );
        assert_eq!(
            Formatter::parse("org.apache.kafka.tools.consumer.LoggingMessageFormatter").unwrap(),
            Formatter::Logging
        );
        assert!(
            Formatter::parse("org.apache.kafka.tools.consumer.OffsetsMessageFormatter").is_err()
        );
        assert!(Formatter::parse("com.example.MyFormatter").is_err());
    }

    #[test]
    fn start_offsets() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct P {
            #[command(flatten)]
            a: ConsoleConsumerArgs,
        }
        let parse = |extra: &[&str]| {
            let mut argv = vec!["c", "--topic", "t"];
            argv.extend_from_slice(extra);
            parse_start(&P::parse_from(argv).a)
        };
        assert_eq!(parse(&[]).unwrap(), LATEST);
        assert_eq!(parse(&["--from-beginning"]).unwrap(), EARLIEST);
        assert_eq!(parse(&["--partition", "0", "--offset", "7"]).unwrap(), 7);
        assert_eq!(
            parse(&["--partition", "0", "--offset", "earliest"]).unwrap(),
            EARLIEST
        );
        assert!(parse(&["--offset", "7"]).is_err());
        assert!(parse(&["--partition", "0", "--offset", "-5"]).is_err());
    }
}
