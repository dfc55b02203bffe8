//! `runnel console-producer`: Kafka's `kafka-console-producer.sh`. Reads stdin lines, batches
//! them per partition (linger / batch size), partitions keys like the Java client (murmur2) and
//! unkeyed records stickily, and is idempotent by default. Lines are read as Kafka's
//! LineMessageReader reads them: `[HEADERS<headers.delimiter>][KEY<key.separator>]VALUE` with
//! `parse.headers` and `parse.key`.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, Record};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::util::{parse_kv, partition_for_key};
use runnel_client::produce::{
    encode_batch, init_producer_id, new_record, next_sequence, now_ms, parse_acks,
    parse_compression, produce_request, produce_results, send_produce, ProducerIdentity,
};
use runnel_client::{Client, KafkaError, TopicMeta};

const DUPLICATE_SEQUENCE_NUMBER: i16 = 46;
const MAX_ATTEMPTS: usize = 10;

#[derive(clap::Args, Debug, Clone)]
pub struct ConsoleProducerArgs {
    /// The server(s) to connect to (HOST:PORT,...; default localhost:9092).
    #[arg(long)]
    pub bootstrap_server: Option<String>,
    /// The server(s) to connect to, as Kafka 2.x spelled it; --bootstrap-server wins.
    #[arg(long, value_name = "HOST:PORT,...")]
    pub broker_list: Option<String>,
    /// The topic to produce messages to.
    #[arg(long)]
    pub topic: String,
    /// Line reader properties (repeatable): parse.key, key.separator (tab), parse.headers,
    /// headers.delimiter (tab), headers.separator (,), headers.key.separator (:),
    /// null.marker, ignore.error.
    #[arg(long = "property", alias = "reader-property", value_name = "KEY=VALUE")]
    pub property: Vec<String>,
    /// Producer configs: acks, linger.ms, batch.size, compression.type, enable.idempotence, ...
    #[arg(long = "producer-property", value_name = "KEY=VALUE")]
    pub producer_property: Vec<String>,
    /// Producer config properties file: acks, compression.type, ... and the client settings
    /// (security.protocol, sasl.*, ssl.*, client.id).
    #[arg(long = "producer.config", value_name = "FILE")]
    pub producer_config: Option<std::path::PathBuf>,
    /// Client properties file (read before --producer.config; the same keys are accepted).
    #[arg(long, value_name = "FILE")]
    pub command_config: Option<std::path::PathBuf>,
    /// Compression codec: none, gzip, snappy, lz4 or zstd (gzip when given without a value).
    #[arg(long, num_args = 0..=1, default_missing_value = "gzip")]
    pub compression_codec: Option<String>,
    /// The acks the producer requires: -1/all, 0 or 1 (default all).
    #[arg(long, allow_hyphen_values = true)]
    pub request_required_acks: Option<String>,
    /// Maximum bytes per partition batch (batch.size).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Maximum time in ms a message waits for its batch to fill (linger.ms; default 1000).
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Send each message synchronously, as it is read.
    #[arg(long)]
    pub sync: bool,
    /// The broker's ack timeout in ms (request.timeout.ms).
    #[arg(long)]
    pub request_timeout_ms: Option<i32>,
}

#[derive(Debug, Clone)]
struct Settings {
    acks: i16,
    idempotent: bool,
    linger: Duration,
    batch_size: usize,
    compression: Compression,
    timeout_ms: i32,
    lines: LineFormat,
}

/// How a line becomes a record: Kafka's LineMessageReader properties.
#[derive(Debug, Clone)]
struct LineFormat {
    parse_key: bool,
    key_separator: String,
    parse_headers: bool,
    headers_delimiter: String,
    headers_separator: String,
    headers_key_separator: String,
    /// A key, value, header value or whole header section equal to this is null.
    null_marker: Option<String>,
    ignore_error: bool,
}

/// One parsed input line.
#[derive(Debug, PartialEq)]
struct LineRecord {
    key: Option<Bytes>,
    value: Option<Bytes>,
    headers: Vec<(String, Option<Bytes>)>,
}

impl LineFormat {
    fn from_properties(reader: &HashMap<String, String>) -> Result<LineFormat> {
        let flag = |key: &str| {
            reader
                .get(key)
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        };
        let text = |key: &str, default: &str| {
            reader
                .get(key)
                .cloned()
                .unwrap_or_else(|| default.to_string())
        };
        let f = LineFormat {
            parse_key: flag("parse.key"),
            key_separator: text("key.separator", "\t"),
            parse_headers: flag("parse.headers"),
            headers_delimiter: text("headers.delimiter", "\t"),
            headers_separator: text("headers.separator", ","),
            headers_key_separator: text("headers.key.separator", ":"),
            null_marker: reader.get("null.marker").cloned(),
            ignore_error: flag("ignore.error"),
        };
        // Shells pass `\t` literally; it means a tab here as in the console consumer.
        let f = LineFormat {
            key_separator: unescape(&f.key_separator),
            headers_delimiter: unescape(&f.headers_delimiter),
            headers_separator: unescape(&f.headers_separator),
            headers_key_separator: unescape(&f.headers_key_separator),
            ..f
        };
        for (name, v) in [
            ("key.separator", &f.key_separator),
            ("headers.delimiter", &f.headers_delimiter),
            ("headers.separator", &f.headers_separator),
            ("headers.key.separator", &f.headers_key_separator),
        ] {
            if v.is_empty() {
                bail!("{name} must not be empty");
            }
        }
        let distinct = [
            (
                "headers.delimiter",
                &f.headers_delimiter,
                "headers.separator",
                &f.headers_separator,
            ),
            (
                "headers.delimiter",
                &f.headers_delimiter,
                "headers.key.separator",
                &f.headers_key_separator,
            ),
            (
                "headers.separator",
                &f.headers_separator,
                "headers.key.separator",
                &f.headers_key_separator,
            ),
        ];
        for (a, x, b, y) in distinct {
            if x == y {
                bail!("{a} and {b} may not be equal");
            }
        }
        if let Some(marker) = &f.null_marker {
            for (name, v) in [
                ("key.separator", &f.key_separator),
                ("headers.separator", &f.headers_separator),
                ("headers.delimiter", &f.headers_delimiter),
                ("headers.key.separator", &f.headers_key_separator),
            ] {
                if v == marker {
                    bail!("null.marker and {name} may not be equal");
                }
            }
        }
        Ok(f)
    }

    fn nullable(&self, bytes: &[u8]) -> Option<Bytes> {
        match &self.null_marker {
            Some(m) if m.as_bytes() == bytes => None,
            _ => Some(Bytes::copy_from_slice(bytes)),
        }
    }

    /// Splits off the part of `line[start..]` before `separator`; `None` when parsing is off, or
    /// when the separator is missing and errors are ignored.
    fn section<'a>(
        &self,
        enabled: bool,
        line: &'a [u8],
        start: usize,
        separator: &str,
        what: &str,
        line_no: u64,
    ) -> Result<Option<&'a [u8]>> {
        if !enabled {
            return Ok(None);
        }
        match find(&line[start..], separator.as_bytes()) {
            Some(i) => Ok(Some(&line[start..start + i])),
            None if self.ignore_error => Ok(None),
            None => bail!(
                "No {what} found on line number {line_no}: '{}'",
                String::from_utf8_lossy(line)
            ),
        }
    }

    fn parse(&self, line: &[u8], line_no: u64) -> Result<LineRecord> {
        let headers = self.section(
            self.parse_headers,
            line,
            0,
            &self.headers_delimiter,
            "headers delimiter",
            line_no,
        )?;
        let header_end = headers.map_or(0, |h| h.len() + self.headers_delimiter.len());
        let key = self.section(
            self.parse_key,
            line,
            header_end,
            &self.key_separator,
            "key separator",
            line_no,
        )?;
        let key_end = header_end + key.map_or(0, |k| k.len() + self.key_separator.len());
        let mut record = LineRecord {
            key: key.and_then(|k| self.nullable(k)),
            value: self.nullable(&line[key_end..]),
            headers: Vec::new(),
        };
        if let Some(h) = headers.filter(|h| self.nullable(h).is_some()) {
            record.headers = self.split_headers(h, line_no)?;
        }
        Ok(record)
    }

    fn split_headers(&self, text: &[u8], line_no: u64) -> Result<Vec<(String, Option<Bytes>)>> {
        let mut out = Vec::new();
        for pair in split(text, self.headers_separator.as_bytes()) {
            let Some(i) = find(pair, self.headers_key_separator.as_bytes()) else {
                if self.ignore_error {
                    out.push((String::from_utf8_lossy(pair).into_owned(), None));
                    continue;
                }
                bail!(
                    "No header key separator found in pair '{}' on line number {line_no}",
                    String::from_utf8_lossy(pair)
                );
            };
            let key = String::from_utf8_lossy(&pair[..i]).into_owned();
            if self.null_marker.as_deref() == Some(key.as_str()) {
                bail!(
                    "Header keys should not be equal to the null marker '{key}' as they can't be null"
                );
            }
            out.push((
                key,
                self.nullable(&pair[i + self.headers_key_separator.len()..]),
            ));
        }
        Ok(out)
    }
}

/// Shells pass `\t` literally; Kafka users expect it to mean a tab.
fn unescape(s: &str) -> String {
    s.replace("\\t", "\t").replace("\\n", "\n")
}

/// `text` split at every `separator`, trailing empty pieces dropped (as Java's `split`).
fn split<'a>(text: &'a [u8], separator: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = find(rest, separator) {
        out.push(&rest[..i]);
        rest = &rest[i + separator.len()..];
    }
    out.push(rest);
    while out.len() > 1 && out.last().is_some_and(|p| p.is_empty()) {
        out.pop();
    }
    out
}

/// The producer properties in precedence order: --command-config, --producer.config, then
/// --producer-property.
fn producer_properties(args: &ConsoleProducerArgs) -> Result<Vec<(String, String)>> {
    let mut props = Vec::new();
    for path in [&args.command_config, &args.producer_config]
        .into_iter()
        .flatten()
    {
        props.extend(runnel_client::properties::load(path)?);
    }
    for p in &args.producer_property {
        props.push(parse_kv(p)?);
    }
    Ok(props)
}

/// The client settings (security.protocol, sasl.*, ssl.*, client.id) of the producer.
fn client_config(args: &ConsoleProducerArgs) -> Result<runnel_client::ClientConfig> {
    runnel_client::ClientConfig::from_properties("console-producer", producer_properties(args)?)
}

fn settings(args: &ConsoleProducerArgs) -> Result<Settings> {
    let props: HashMap<String, String> = producer_properties(args)?.into_iter().collect();
    let mut reader: HashMap<String, String> = HashMap::new();
    for p in &args.property {
        let (k, v) = parse_kv(p)?;
        reader.insert(k, v);
    }
    let acks = match (&args.request_required_acks, props.get("acks")) {
        (Some(a), _) => parse_acks(a)?,
        (None, Some(a)) => parse_acks(a)?,
        (None, None) => -1,
    };
    // Like the Java client: idempotence defaults on, quietly off when acks != all, and an
    // explicit enable.idempotence=true with acks != all is a configuration error.
    let idempotent = match props.get("enable.idempotence").map(|s| s.trim()) {
        Some("true") if acks != -1 => {
            bail!("Must set acks to all in order to use the idempotent producer.")
        }
        Some("true") => true,
        Some("false") => false,
        Some(other) => bail!("invalid enable.idempotence '{other}'"),
        None => acks == -1,
    };
    let compression = match (&args.compression_codec, props.get("compression.type")) {
        (Some(c), _) => parse_compression(c)?,
        (None, Some(c)) => parse_compression(c)?,
        (None, None) => Compression::None,
    };
    let num = |key: &str| -> Result<Option<u64>> {
        props
            .get(key)
            .map(|v| {
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| anyhow!("invalid {key} '{v}'"))
            })
            .transpose()
    };
    let linger_ms = if args.sync {
        0
    } else {
        args.timeout.or(num("linger.ms")?).unwrap_or(1000)
    };
    let batch_size = args
        .batch_size
        .or(num("batch.size")?.map(|v| v as usize))
        .unwrap_or(16384)
        .max(1);
    let timeout_ms = args
        .request_timeout_ms
        .or(num("request.timeout.ms")?.map(|v| v.min(i32::MAX as u64) as i32))
        .unwrap_or(30_000);
    Ok(Settings {
        acks,
        idempotent,
        linger: Duration::from_millis(linger_ms),
        batch_size,
        compression,
        timeout_ms,
        lines: LineFormat::from_properties(&reader)?,
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[derive(Default)]
struct PartitionBatch {
    records: Vec<Record>,
    bytes: usize,
    first_at: Option<Instant>,
}

struct Producer {
    client: Client,
    topic: TopicMeta,
    settings: Settings,
    producer: ProducerIdentity,
    sequences: HashMap<i32, i32>,
    batches: BTreeMap<i32, PartitionBatch>,
    sticky: i32,
    buf: BytesMut,
    sent: u64,
}

impl Producer {
    fn partition_count(&self) -> i32 {
        self.topic.partitions.len() as i32
    }

    fn partition_for(&mut self, key: Option<&[u8]>) -> i32 {
        match key {
            Some(k) => partition_for_key(k, self.partition_count()),
            None => self.sticky,
        }
    }

    fn append(&mut self, line: LineRecord) -> i32 {
        let LineRecord {
            key,
            value,
            headers,
        } = line;
        let p = self.partition_for(key.as_deref());
        let header_size: usize = headers
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, |v| v.len()) + 2)
            .sum();
        let size = value.as_ref().map_or(0, |v| v.len())
            + key.as_ref().map_or(0, |k| k.len())
            + header_size
            + 16;
        let mut record = new_record(key, value, now_ms());
        for (k, v) in headers {
            record.headers.insert(StrBytes::from_string(k), v);
        }
        let batch = self.batches.entry(p).or_default();
        batch.first_at.get_or_insert_with(Instant::now);
        batch.bytes += size;
        batch.records.push(record);
        p
    }

    fn full(&self, p: i32) -> bool {
        self.batches
            .get(&p)
            .is_some_and(|b| b.bytes >= self.settings.batch_size)
    }

    fn deadline(&self) -> Option<Instant> {
        self.batches
            .values()
            .filter_map(|b| b.first_at)
            .min()
            .map(|t| t + self.settings.linger)
    }

    /// Sends every pending batch, grouped per leader, retrying retriable errors with the same
    /// encoded batches (same sequences, so an idempotent broker drops duplicates).
    async fn flush(&mut self) -> Result<()> {
        let pending: Vec<(i32, Vec<Record>)> = std::mem::take(&mut self.batches)
            .into_iter()
            .filter(|(_, b)| !b.records.is_empty())
            .map(|(p, b)| (p, b.records))
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        // Encode once; a retry resends the same bytes.
        let mut encoded: Vec<(i32, Bytes, i32)> = Vec::with_capacity(pending.len());
        for (p, mut records) in pending {
            let count = records.len() as i32;
            let base = if self.producer.is_idempotent() {
                *self.sequences.entry(p).or_insert(0)
            } else {
                -1
            };
            let bytes = encode_batch(
                &mut self.buf,
                &mut records,
                self.producer,
                base,
                self.settings.compression,
            )?;
            encoded.push((p, bytes, count));
            if p == self.sticky && self.partition_count() > 1 {
                self.sticky = (self.sticky + 1) % self.partition_count();
            }
        }
        let mut remaining = encoded;
        for attempt in 1..=MAX_ATTEMPTS {
            let mut by_leader: BTreeMap<i32, Vec<(i32, Bytes, i32)>> = BTreeMap::new();
            for item in remaining.drain(..) {
                let leader = self
                    .topic
                    .partitions
                    .get(item.0 as usize)
                    .map_or(-1, |pm| pm.leader);
                by_leader.entry(leader).or_default().push(item);
            }
            let mut retry = Vec::new();
            let mut last_error = None;
            for (leader, items) in by_leader {
                if leader < 0 {
                    last_error = Some(format!(
                        "no leader for partitions {:?}",
                        items.iter().map(|i| i.0).collect::<Vec<_>>()
                    ));
                    retry.extend(items);
                    continue;
                }
                let req = produce_request(
                    &self.topic,
                    self.settings.acks,
                    self.settings.timeout_ms,
                    items.iter().map(|(p, b, _)| (*p, b.clone())).collect(),
                );
                let conn = match self.client.broker(leader).await {
                    Ok(c) => c,
                    Err(e) => {
                        last_error = Some(format!("{e:#}"));
                        retry.extend(items);
                        continue;
                    }
                };
                let resp = match send_produce(conn, &req).await {
                    Ok(r) => r,
                    Err(e) => {
                        // Connection trouble: reconnect next time; idempotence makes resends safe.
                        self.client.drop_broker(leader);
                        if !self.producer.is_idempotent() {
                            return Err(
                                e.context("produce failed (not retried without idempotence)")
                            );
                        }
                        last_error = Some(format!("{e:#}"));
                        retry.extend(items);
                        continue;
                    }
                };
                let results = match resp {
                    Some(r) => produce_results(&r, &self.topic),
                    None => items.iter().map(|(p, _, _)| (*p, 0, None, -1)).collect(),
                };
                for (p, bytes, count) in items {
                    let outcome = results.iter().find(|r| r.0 == p);
                    let (code, msg) = match outcome {
                        Some((_, code, msg, _)) => (*code, msg.clone()),
                        None => bail!("produce response has no result for partition {p}"),
                    };
                    if code == 0 || code == DUPLICATE_SEQUENCE_NUMBER {
                        if self.producer.is_idempotent() {
                            let seq = self.sequences.entry(p).or_insert(0);
                            *seq = next_sequence(*seq, count);
                        }
                        self.sent += count as u64;
                        continue;
                    }
                    let err = KafkaError { code, message: msg };
                    if err.is_retriable() {
                        last_error = Some(format!("partition {p}: {err}"));
                        retry.push((p, bytes, count));
                    } else {
                        bail!(
                            "Error when sending message to topic {} partition {p}: {err}",
                            self.topic.name
                        );
                    }
                }
            }
            if retry.is_empty() {
                return Ok(());
            }
            if attempt == MAX_ATTEMPTS {
                bail!(
                    "Error when sending message to topic {}: giving up after {MAX_ATTEMPTS} attempts: {}",
                    self.topic.name,
                    last_error.unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100 * attempt as u64)).await;
            let name = self.topic.name.clone();
            if let Ok(t) = self.client.topic(&name).await {
                self.topic = t;
            }
            remaining = retry;
        }
        Ok(())
    }
}

pub async fn run(args: ConsoleProducerArgs) -> Result<()> {
    let settings = settings(&args)?;
    let servers = args
        .bootstrap_server
        .as_deref()
        .or(args.broker_list.as_deref())
        .unwrap_or("localhost:9092");
    let mut client = Client::connect(servers, &client_config(&args)?).await?;
    let topic = client.topic(&args.topic).await?;
    if topic.partitions.is_empty() {
        bail!("topic '{}' has no partitions", args.topic);
    }
    let producer = if settings.idempotent {
        init_producer_id(&mut client).await?
    } else {
        ProducerIdentity::NONE
    };
    let sticky = (now_ms() as u64 % topic.partitions.len() as u64) as i32;
    let mut state = Producer {
        client,
        topic,
        settings,
        producer,
        sequences: HashMap::new(),
        batches: BTreeMap::new(),
        sticky,
        buf: BytesMut::with_capacity(64 * 1024),
        sent: 0,
    };

    // stdin is blocking: read it on its own thread and hand lines over. At a terminal (stdin and
    // stdout both) each line is prompted for with '>', as Kafka's console producer does.
    let (tx, mut rx) = mpsc::channel::<std::io::Result<Vec<u8>>>(1024);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let prompt = stdin.is_terminal() && std::io::stdout().is_terminal();
        let mut lock = stdin.lock();
        loop {
            if prompt {
                let mut out = std::io::stdout();
                let _ = out.write_all(b">").and_then(|()| out.flush());
            }
            let mut line = Vec::new();
            match lock.read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                        if line.last() == Some(&b'\r') {
                            line.pop();
                        }
                    }
                    if tx.blocking_send(Ok(line)).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    break;
                }
            }
        }
    });

    let mut line_no = 0u64;
    loop {
        let next = match state.deadline() {
            Some(deadline) => tokio::select! {
                line = rx.recv() => Some(line),
                _ = tokio::time::sleep_until(deadline) => None,
            },
            None => Some(rx.recv().await),
        };
        match next {
            None => state.flush().await?,
            Some(None) => break,
            Some(Some(Err(e))) => return Err(anyhow!(e).context("cannot read stdin")),
            Some(Some(Ok(line))) => {
                line_no += 1;
                let record = state.settings.lines.parse(&line, line_no)?;
                let p = state.append(record);
                if state.full(p) || state.settings.linger.is_zero() {
                    state.flush().await?;
                }
            }
        }
    }
    state.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_files_then_overrides_configure_the_client() {
        let dir = tempfile::tempdir().unwrap();
        let command = dir.path().join("client.properties");
        std::fs::write(
            &command,
            "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\n\
             sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule \\\n  \
             required username=\"alice\" password=\"alice-secret\";\nacks=1\n",
        )
        .unwrap();
        let producer = dir.path().join("producer.properties");
        std::fs::write(&producer, "acks=0\nclient.id=from-file\n").unwrap();
        let a = args(&[
            "--command-config",
            command.to_str().unwrap(),
            "--producer.config",
            producer.to_str().unwrap(),
            "--producer-property",
            "client.id=from-flag",
        ]);
        let c = client_config(&a).unwrap();
        assert_eq!(c.client_id, "from-flag");
        let sasl = c.sasl.unwrap();
        assert_eq!(
            (sasl.username.as_str(), sasl.password.as_str()),
            ("alice", "alice-secret")
        );
        // --producer.config overrides --command-config.
        assert_eq!(settings(&a).unwrap().acks, 0);
        let missing = args(&["--command-config", "/nonexistent/client.properties"]);
        assert!(format!("{:#}", client_config(&missing).unwrap_err())
            .contains("cannot read properties file /nonexistent/client.properties"));
    }

    fn args(extra: &[&str]) -> ConsoleProducerArgs {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct P {
            #[command(flatten)]
            a: ConsoleProducerArgs,
        }
        let mut argv = vec!["p", "--topic", "t"];
        argv.extend_from_slice(extra);
        P::parse_from(argv).a
    }

    #[test]
    fn idempotence_follows_the_java_defaults() {
        assert!(settings(&args(&[])).unwrap().idempotent);
        assert!(
            !settings(&args(&["--request-required-acks", "1"]))
                .unwrap()
                .idempotent
        );
        assert!(
            !settings(&args(&["--producer-property", "enable.idempotence=false"]))
                .unwrap()
                .idempotent
        );
        assert!(settings(&args(&[
            "--request-required-acks",
            "1",
            "--producer-property",
            "enable.idempotence=true"
        ]))
        .is_err());
        let s = settings(&args(&[
            "--request-required-acks",
            "-1",
            "--compression-codec",
            "--property",
            "parse.key=true",
            "--property",
            "key.separator=:",
        ]))
        .unwrap();
        assert_eq!(s.acks, -1);
        assert_eq!(s.compression, Compression::Gzip);
        assert!(s.lines.parse_key);
        assert_eq!(s.lines.key_separator, ":");
    }

    #[tokio::test]
    async fn retriable_errors_resend_the_same_idempotent_batch() {
        use crate::fake_broker::FakeBroker;
        let broker = FakeBroker::start("t", 2).await;
        broker.state.lock().unwrap().produce_errors = vec![6]; // NOT_LEADER_OR_FOLLOWER
        let mut client = Client::connect(&broker.addr, &runnel_client::ClientConfig::new("test"))
            .await
            .unwrap();
        let topic = client.topic("t").await.unwrap();
        let mut p = Producer {
            client,
            topic,
            settings: settings(&args(&[])).unwrap(),
            producer: ProducerIdentity { id: 42, epoch: 3 },
            sequences: HashMap::new(),
            batches: BTreeMap::new(),
            sticky: 0,
            buf: BytesMut::new(),
            sent: 0,
        };
        // murmur2("21") lands on partition 0 of 2, where the sticky partition also is.
        let rec = |key: Option<&'static str>, value: &'static str| LineRecord {
            key: key.map(Bytes::from),
            value: Some(Bytes::from(value)),
            headers: Vec::new(),
        };
        assert_eq!(p.append(rec(Some("21"), "a")), 0);
        assert_eq!(p.append(rec(None, "b")), 0);
        p.flush().await.unwrap();
        assert_eq!(p.sent, 2);
        p.append(rec(Some("21"), "c"));
        p.flush().await.unwrap();
        let seen = broker.state.lock().unwrap().batches.clone();
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert_eq!(
            seen[0].bytes, seen[1].bytes,
            "the retry resends the same batch"
        );
        assert_eq!(
            seen.iter()
                .map(|b| (b.partition, b.base_sequence, b.record_count))
                .collect::<Vec<_>>(),
            vec![(0, 0, 2), (0, 0, 2), (0, 2, 1)]
        );
        assert!(seen.iter().all(|b| b.producer_id == 42));
        assert_eq!(p.sequences[&0], 3);
    }

    fn format(props: &[(&str, &str)]) -> Result<LineFormat> {
        LineFormat::from_properties(
            &props
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn some(s: &str) -> Option<Bytes> {
        Some(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn lines_split_on_the_key_separator() {
        let f = format(&[("parse.key", "true"), ("key.separator", "::")]).unwrap();
        let r = f.parse(b"k1::v:1", 1).unwrap();
        assert_eq!((r.key, r.value), (some("k1"), some("v:1")));
        assert!(f.parse(b"novalue", 3).is_err());
        let f = format(&[("parse.key", "true"), ("ignore.error", "true")]).unwrap();
        let r = f.parse(b"novalue", 3).unwrap();
        assert_eq!((r.key, r.value), (None, some("novalue")));
        // Without parse.key the whole line is the value, separator and all.
        let r = format(&[]).unwrap().parse(b"a\tb", 1).unwrap();
        assert_eq!((r.key, r.value), (None, some("a\tb")));
    }

    #[test]
    fn headers_keys_and_null_markers_as_line_message_reader() {
        let f = format(&[
            ("parse.headers", "true"),
            ("parse.key", "true"),
            ("null.marker", "NULL"),
        ])
        .unwrap();
        let r = f.parse(b"h1:v1,h2:NULL,h3:a:b\tkey\tvalue", 1).unwrap();
        assert_eq!(
            r,
            LineRecord {
                key: some("key"),
                value: some("value"),
                headers: vec![
                    ("h1".into(), some("v1")),
                    ("h2".into(), None),
                    ("h3".into(), some("a:b")),
                ],
            }
        );
        let r = f.parse(b"NULL\tNULL\tNULL", 2).unwrap();
        assert_eq!((r.key, r.value, r.headers.len()), (None, None, 0));
        let err = f.parse(b"h1\tk\tv", 7).unwrap_err().to_string();
        assert_eq!(
            err,
            "No header key separator found in pair 'h1' on line number 7"
        );
        assert!(f.parse(b"NULL:x\tk\tv", 8).is_err());
        let err = f.parse(b"no delimiter", 9).unwrap_err().to_string();
        assert_eq!(
            err,
            "No headers delimiter found on line number 9: 'no delimiter'"
        );
        let f = format(&[
            ("parse.headers", "true"),
            ("headers.delimiter", "|"),
            ("headers.separator", ";"),
            ("headers.key.separator", "="),
        ])
        .unwrap();
        let r = f.parse(b"a=1;b=2|v\t1", 1).unwrap();
        assert_eq!(r.value, some("v\t1"));
        assert_eq!(
            r.headers,
            vec![("a".into(), some("1")), ("b".into(), some("2"))]
        );
        // Conflicting separators are configuration errors, as in Kafka.
        for bad in [
            &[("headers.delimiter", ","), ("headers.separator", ",")][..],
            &[("headers.separator", ":")][..],
            &[("null.marker", "\t")][..],
        ] {
            assert!(format(bad).is_err(), "{bad:?}");
        }
    }
}
