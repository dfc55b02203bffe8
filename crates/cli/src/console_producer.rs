//! `runnel console-producer`: Kafka's `kafka-console-producer.sh`. Reads stdin lines, batches
//! them per partition (linger / batch size), partitions keys like the Java client (murmur2) and
//! unkeyed records stickily, and is idempotent by default.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use bytes::{Bytes, BytesMut};
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
    /// The server(s) to connect to (HOST:PORT,...).
    #[arg(long, default_value = "localhost:9092")]
    pub bootstrap_server: String,
    /// The topic to produce messages to.
    #[arg(long)]
    pub topic: String,
    /// Line reader properties: parse.key=true, key.separator=:, ignore.error=true (repeatable).
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
    parse_key: bool,
    key_separator: String,
    ignore_error: bool,
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
    let flag = |key: &str| {
        reader
            .get(key)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    };
    Ok(Settings {
        acks,
        idempotent,
        linger: Duration::from_millis(linger_ms),
        batch_size,
        compression,
        timeout_ms,
        parse_key: flag("parse.key"),
        key_separator: reader
            .get("key.separator")
            .cloned()
            .unwrap_or_else(|| "\t".to_string()),
        ignore_error: flag("ignore.error"),
    })
}

/// Splits a line into (key, value) the way Kafka's LineMessageReader does with parse.key=true.
fn split_line(
    line: &[u8],
    separator: &[u8],
    ignore_error: bool,
    line_no: u64,
) -> Result<(Option<Bytes>, Bytes)> {
    match find(line, separator) {
        Some(i) => Ok((
            Some(Bytes::copy_from_slice(&line[..i])),
            Bytes::copy_from_slice(&line[i + separator.len()..]),
        )),
        None if ignore_error => Ok((None, Bytes::copy_from_slice(line))),
        None => bail!(
            "No key separator found on line number {line_no}: '{}'",
            String::from_utf8_lossy(line)
        ),
    }
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

    fn append(&mut self, key: Option<Bytes>, value: Bytes) -> i32 {
        let p = self.partition_for(key.as_deref());
        let size = value.len() + key.as_ref().map_or(0, |k| k.len()) + 16;
        let batch = self.batches.entry(p).or_default();
        batch.first_at.get_or_insert_with(Instant::now);
        batch.bytes += size;
        batch.records.push(new_record(key, Some(value), now_ms()));
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
    let mut client = Client::connect(&args.bootstrap_server, &client_config(&args)?).await?;
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

    // stdin is blocking: read it on its own thread and hand lines over.
    let (tx, mut rx) = mpsc::channel::<std::io::Result<Vec<u8>>>(1024);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut lock = stdin.lock();
        loop {
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

    let separator = state.settings.key_separator.clone().into_bytes();
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
                let (key, value) = if state.settings.parse_key {
                    split_line(&line, &separator, state.settings.ignore_error, line_no)?
                } else {
                    (None, Bytes::from(line))
                };
                let p = state.append(key, value);
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
        assert!(s.parse_key);
        assert_eq!(s.key_separator, ":");
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
        assert_eq!(p.append(Some(Bytes::from("21")), Bytes::from("a")), 0);
        assert_eq!(p.append(None, Bytes::from("b")), 0);
        p.flush().await.unwrap();
        assert_eq!(p.sent, 2);
        p.append(Some(Bytes::from("21")), Bytes::from("c"));
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

    #[test]
    fn lines_split_on_the_key_separator() {
        let (k, v) = split_line(b"k1::v:1", b"::", false, 1).unwrap();
        assert_eq!(k.unwrap(), Bytes::from("k1"));
        assert_eq!(v, Bytes::from("v:1"));
        assert!(split_line(b"novalue", b":", false, 3).is_err());
        let (k, v) = split_line(b"novalue", b":", true, 3).unwrap();
        assert!(k.is_none());
        assert_eq!(v, Bytes::from("novalue"));
    }
}
