//! `runnel bench produce|consume`: load generators in the spirit of Kafka's
//! `kafka-producer-perf-test.sh` and `kafka-consumer-perf-test.sh`.
//!
//! The produce hot path reuses one record template per partition (every record shares one
//! payload `Bytes`), encodes each batch once, and pipelines up to `--max-in-flight` Produce
//! requests per broker connection; Kafka answers in order, so the oldest request is always the
//! next response.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, Record};

use crate::util::{weighted_mean, weighted_percentiles};
use runnel_client::consume::{
    decode_records, fetch_request, fetched_partitions, leaders, list_offsets, FetchLimits,
    EARLIEST, LATEST,
};
use runnel_client::produce::{
    encode_batch, init_producer_id, new_record, next_sequence, now_ms, parse_acks,
    parse_compression, produce_request, produce_results, ProducerIdentity,
};
use runnel_client::{check, Client, Connection, KafkaError, Target, TopicMeta};

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum BenchCommand {
    /// Produce synthetic records as fast as possible (kafka-producer-perf-test.sh).
    Produce(BenchProduceArgs),
    /// Read a topic from the beginning as fast as possible (kafka-consumer-perf-test.sh).
    Consume(BenchConsumeArgs),
    /// Open connections one after another and time each until it is ready for requests: TCP,
    /// TLS, ApiVersions and SASL authentication, as the client configuration says.
    Connect(BenchConnectArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct BenchConnectArgs {
    #[arg(long, default_value = "localhost:9092")]
    pub bootstrap_server: String,
    /// Connections to open (each closed before the next).
    #[arg(long, default_value_t = 100)]
    pub connections: u32,
    /// Client properties (security.protocol, sasl.*, ssl.*), as Kafka's tools take them.
    #[arg(long, value_name = "FILE")]
    pub command_config: Option<std::path::PathBuf>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct BenchProduceArgs {
    #[arg(long, default_value = "localhost:9092")]
    pub bootstrap_server: String,
    #[arg(long)]
    pub topic: String,
    /// Records to send (default 1,000,000 unless --duration-secs is given).
    #[arg(long)]
    pub num_records: Option<u64>,
    /// Send for this many seconds instead of a fixed count.
    #[arg(long)]
    pub duration_secs: Option<u64>,
    /// Value size in bytes.
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    /// all/-1, 1 or 0.
    #[arg(long, default_value = "all", allow_hyphen_values = true)]
    pub acks: String,
    /// Bytes of record values per partition batch (batch.size).
    #[arg(long, default_value_t = 16384)]
    pub batch_size: usize,
    /// Accepted for parity with the Java producer; the generator always has a full batch ready,
    /// so batches never wait.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    pub compression: String,
    /// Create the topic with this many partitions if it does not exist.
    #[arg(long)]
    pub partitions: Option<i32>,
    /// Replication factor when the topic is created (broker default otherwise).
    #[arg(long)]
    pub replication_factor: Option<i16>,
    /// Produce requests in flight per broker connection.
    #[arg(long, default_value_t = 5)]
    pub max_in_flight: usize,
    /// Client properties file: security.protocol, sasl.mechanism, sasl.jaas.config, ssl.*,
    /// client.id (Kafka's client property names).
    #[arg(long, value_name = "FILE", alias = "producer.config")]
    pub command_config: Option<std::path::PathBuf>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct BenchConsumeArgs {
    #[arg(long, default_value = "localhost:9092")]
    pub bootstrap_server: String,
    #[arg(long)]
    pub topic: String,
    /// Records to read (default: everything up to the end offsets at start).
    #[arg(long)]
    pub num_records: Option<u64>,
    /// fetch.max.bytes.
    #[arg(long, default_value_t = 52_428_800)]
    pub fetch_max_bytes: i32,
    /// max.partition.fetch.bytes.
    #[arg(long, default_value_t = 1_048_576)]
    pub max_partition_fetch_bytes: i32,
    /// Give up when no record arrived for this long.
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
    /// Client properties file: security.protocol, sasl.mechanism, sasl.jaas.config, ssl.*,
    /// client.id (Kafka's client property names).
    #[arg(long, value_name = "FILE", alias = "consumer.config")]
    pub command_config: Option<std::path::PathBuf>,
}

pub async fn run(args: BenchArgs) -> Result<()> {
    match args.command {
        BenchCommand::Produce(a) => produce(a).await,
        BenchCommand::Consume(a) => consume(a).await,
        BenchCommand::Connect(a) => connect(a).await,
    }
}

/// Kafka's perf test payload: random uppercase letters.
fn payload(size: usize) -> Bytes {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ now_ms() as u64;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'A' + (x % 26) as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

async fn ensure_topic(client: &mut Client, args: &BenchProduceArgs) -> Result<TopicMeta> {
    if let Ok(t) = client.topic(&args.topic).await {
        if !t.partitions.is_empty() {
            return Ok(t);
        }
    }
    let Some(partitions) = args.partitions else {
        bail!(
            "topic '{}' does not exist (pass --partitions to create it)",
            args.topic
        );
    };
    let version = client
        .conn(Target::Controller)
        .await?
        .version(ApiKey::CreateTopics)?;
    let mut t = CreatableTopic::default();
    t.name = TopicName(StrBytes::from_string(args.topic.clone()));
    t.num_partitions = partitions;
    t.replication_factor = args
        .replication_factor
        .unwrap_or(if version >= 4 { -1 } else { 1 });
    let mut req = CreateTopicsRequest::default();
    req.topics = vec![t];
    req.timeout_ms = 30_000;
    let resp = client.send_to(Target::Controller, &req).await?;
    if let Some(r) = resp.topics.first() {
        match check(r.error_code, r.error_message.as_ref()) {
            Ok(()) => eprintln!("Created topic {} with {partitions} partitions.", args.topic),
            Err(e) if e.code == 36 => {}
            Err(e) => return Err(anyhow!(e).context("create topic")),
        }
    }
    // Wait until every partition has a leader.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(t) = client.topic(&args.topic).await {
            if !t.partitions.is_empty() && t.partitions.iter().all(|p| p.leader >= 0) {
                return Ok(t);
            }
        }
        if Instant::now() > deadline {
            bail!("topic '{}' has no leaders after 15s", args.topic);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Shared budget: how many records may still be claimed, and until when.
struct Budget {
    remaining: AtomicU64,
    deadline: Option<Instant>,
    /// Records acknowledged so far, for the periodic progress line.
    acked: AtomicU64,
}

impl Budget {
    fn claim(&self, want: u64) -> u64 {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return 0;
        }
        let mut got = 0;
        let _ = self
            .remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| {
                got = r.min(want);
                Some(r - got)
            });
        got
    }
}

#[derive(Default)]
struct ProduceStats {
    records: u64,
    /// (latency in µs, records it applies to).
    latencies: Vec<(u64, u64)>,
}

struct InFlight {
    corr: i32,
    sent: Instant,
    records: u64,
}

#[allow(clippy::too_many_arguments)]
async fn produce_to_broker(
    mut conn: Connection,
    topic: TopicMeta,
    partitions: Vec<i32>,
    budget: Arc<Budget>,
    value: Bytes,
    per_batch: usize,
    acks: i16,
    compression: Compression,
    producer: ProducerIdentity,
    max_in_flight: usize,
) -> Result<ProduceStats> {
    let version = conn.version(ApiKey::Produce)?;
    let mut templates: HashMap<i32, Vec<Record>> = partitions
        .iter()
        .map(|p| {
            let recs = (0..per_batch)
                .map(|_| new_record(None, Some(value.clone()), 0))
                .collect();
            (*p, recs)
        })
        .collect();
    let mut sequences: HashMap<i32, i32> = partitions.iter().map(|p| (*p, 0)).collect();
    let mut buf = BytesMut::with_capacity(per_batch * (value.len() + 32) + 128);
    let mut inflight: VecDeque<InFlight> = VecDeque::with_capacity(max_in_flight);
    let mut stats = ProduceStats::default();
    let mut exhausted = false;
    loop {
        while !exhausted && inflight.len() < max_in_flight.max(1) {
            let mut batches = Vec::with_capacity(partitions.len());
            let mut records = 0u64;
            for p in &partitions {
                let n = budget.claim(per_batch as u64) as usize;
                if n == 0 {
                    exhausted = true;
                    break;
                }
                let recs = templates.get_mut(p).ok_or_else(|| anyhow!("no template"))?;
                let ts = now_ms();
                for r in recs[..n].iter_mut() {
                    r.timestamp = ts;
                }
                let seq = sequences.get_mut(p).ok_or_else(|| anyhow!("no sequence"))?;
                let base = if producer.is_idempotent() { *seq } else { -1 };
                let bytes = encode_batch(&mut buf, &mut recs[..n], producer, base, compression)?;
                *seq = next_sequence(*seq, n as i32);
                batches.push((*p, bytes));
                records += n as u64;
            }
            if batches.is_empty() {
                break;
            }
            let req: ProduceRequest = produce_request(&topic, acks, 30_000, batches);
            let sent = Instant::now();
            let corr = conn.send(&req, version).await?;
            if acks == 0 {
                budget.acked.fetch_add(records, Ordering::Relaxed);
                stats.records += records;
                stats.latencies.push((0, records));
            } else {
                inflight.push_back(InFlight {
                    corr,
                    sent,
                    records,
                });
            }
        }
        let Some(oldest) = inflight.pop_front() else {
            if exhausted {
                break;
            }
            continue;
        };
        let resp = conn.recv::<ProduceRequest>(oldest.corr, version).await?;
        let latency = oldest.sent.elapsed().as_micros() as u64;
        for (p, code, msg, _) in produce_results(&resp, &topic) {
            if code != 0 {
                bail!(
                    "produce to {}-{p} failed: {}",
                    topic.name,
                    KafkaError { code, message: msg }
                );
            }
        }
        budget.acked.fetch_add(oldest.records, Ordering::Relaxed);
        stats.records += oldest.records;
        stats.latencies.push((latency, oldest.records));
    }
    Ok(stats)
}

/// Kafka perf-test style summary line.
pub fn produce_summary(
    records: u64,
    record_size: usize,
    elapsed: Duration,
    latencies: &mut [(u64, u64)],
) -> String {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let rate = records as f64 / secs;
    let mb = rate * record_size as f64 / (1024.0 * 1024.0);
    let avg = weighted_mean(latencies) / 1000.0;
    let p = weighted_percentiles(latencies, &[0.5, 0.95, 0.99, 0.999, 1.0]);
    let ms = |us: u64| us as f64 / 1000.0;
    format!(
        "{records} records sent, {rate:.1} records/sec ({mb:.2} MB/sec), {avg:.2} ms avg latency, {:.2} ms max latency, {:.2} ms 50th, {:.2} ms 95th, {:.2} ms 99th, {:.2} ms 99.9th.",
        ms(p[4]),
        ms(p[0]),
        ms(p[1]),
        ms(p[2]),
        ms(p[3])
    )
}

async fn produce(args: BenchProduceArgs) -> Result<()> {
    let acks = parse_acks(&args.acks)?;
    let compression = parse_compression(&args.compression)?;
    if args.record_size == 0 {
        bail!("--record-size must be positive");
    }
    let mut client = Client::connect(
        &args.bootstrap_server,
        &crate::util::client_config(
            "producer-performance",
            &[args.command_config.as_deref()],
            &[],
        )?,
    )
    .await?;
    let topic = ensure_topic(&mut client, &args).await?;
    let producer = if acks == -1 {
        init_producer_id(&mut client).await?
    } else {
        ProducerIdentity::NONE
    };
    let num = match (args.num_records, args.duration_secs) {
        (Some(n), _) => n,
        (None, Some(_)) => u64::MAX,
        (None, None) => 1_000_000,
    };
    let budget = Arc::new(Budget {
        remaining: AtomicU64::new(num),
        deadline: args
            .duration_secs
            .map(|s| Instant::now() + Duration::from_secs(s)),
        acked: AtomicU64::new(0),
    });
    let per_batch = (args.batch_size / args.record_size).max(1);
    let value = payload(args.record_size);
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for p in &topic.partitions {
        if p.leader < 0 {
            bail!("partition {}-{} has no leader", topic.name, p.index);
        }
        by_leader.entry(p.leader).or_default().push(p.index);
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (leader, parts) in by_leader {
        let conn = client.take_broker(leader).await?;
        tasks.push(tokio::spawn(produce_to_broker(
            conn,
            topic.clone(),
            parts,
            budget.clone(),
            value.clone(),
            per_batch,
            acks,
            compression,
            producer,
            args.max_in_flight,
        )));
    }
    // Progress every 5 s, like the Java perf test's window lines.
    let progress = {
        let budget = budget.clone();
        let record_size = args.record_size;
        tokio::spawn(async move {
            let mut last = 0u64;
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            tick.tick().await;
            loop {
                tick.tick().await;
                let now = budget.acked.load(Ordering::Relaxed);
                let rate = (now - last) as f64 / 5.0;
                println!(
                    "{} records sent, {rate:.1} records/sec ({:.2} MB/sec).",
                    now - last,
                    rate * record_size as f64 / (1024.0 * 1024.0)
                );
                last = now;
            }
        })
    };
    let mut records = 0;
    let mut latencies = Vec::new();
    let mut failure = None;
    for t in tasks {
        match t.await? {
            Ok(s) => {
                records += s.records;
                latencies.extend(s.latencies);
            }
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    progress.abort();
    if let Some(e) = failure {
        return Err(e);
    }
    let elapsed = start.elapsed();
    if acks == 0 {
        println!("(acks=0: the broker sends no responses, so latencies below are not measured)");
    }
    println!(
        "{}",
        produce_summary(records, args.record_size, elapsed, &mut latencies)
    );
    Ok(())
}

async fn connect(args: BenchConnectArgs) -> Result<()> {
    if args.connections == 0 {
        bail!("--connections must be positive");
    }
    let config = crate::util::client_config(
        "connect-performance",
        &[args.command_config.as_deref()],
        &[],
    )?;
    let addr = runnel_client::parse_bootstrap(&args.bootstrap_server)?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("--bootstrap-server names no server"))?;
    let mut times = Vec::with_capacity(args.connections as usize);
    for _ in 0..args.connections {
        let started = Instant::now();
        let conn = Connection::connect(&addr, &config).await?;
        times.push(started.elapsed());
        drop(conn);
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    println!(
        "{} connections ({:?}): min {:.2} ms, median {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        times.len(),
        config.security_protocol,
        ms(times[0]),
        ms(pct(0.5)),
        ms(pct(0.99)),
        ms(times[times.len() - 1])
    );
    Ok(())
}

async fn consume(args: BenchConsumeArgs) -> Result<()> {
    let mut client = Client::connect(
        &args.bootstrap_server,
        &crate::util::client_config(
            "consumer-performance",
            &[args.command_config.as_deref()],
            &[],
        )?,
    )
    .await?;
    let mut topic = client.topic(&args.topic).await?;
    let parts: Vec<i32> = topic.partitions.iter().map(|p| p.index).collect();
    let mut positions = list_offsets(&mut client, &topic, &parts, EARLIEST, 0).await?;
    let ends = list_offsets(&mut client, &topic, &parts, LATEST, 0).await?;
    let available: u64 = parts
        .iter()
        .map(|p| (ends[p] - positions[p]).max(0) as u64)
        .sum();
    let target = args.num_records.unwrap_or(available);
    let limits = FetchLimits {
        max_bytes: args.fetch_max_bytes,
        partition_max_bytes: args.max_partition_fetch_bytes,
        ..FetchLimits::default()
    };
    let start = Instant::now();
    let mut last = Instant::now();
    let mut count = 0u64;
    let mut bytes = 0u64;
    let mut fetch_latencies: Vec<(u64, u64)> = Vec::new();
    let mut records = Vec::new();
    let idle = Duration::from_millis(args.timeout_ms);
    while count < target {
        if last.elapsed() > idle {
            eprintln!(
                "WARN: no records for {} ms; stopping at {count} of {target}",
                args.timeout_ms
            );
            break;
        }
        let leader_of = leaders(&topic);
        let mut by_leader: BTreeMap<i32, Vec<(i32, i64)>> = BTreeMap::new();
        for (p, o) in &positions {
            by_leader
                .entry(leader_of.get(p).copied().unwrap_or(-1))
                .or_default()
                .push((*p, *o));
        }
        let mut refresh = by_leader.contains_key(&-1);
        for (leader, pos) in by_leader.into_iter().filter(|(l, _)| *l >= 0) {
            let req = fetch_request(&topic, &pos, &limits);
            let sent = Instant::now();
            let resp = client.send_to(Target::Broker(leader), &req).await?;
            let latency = sent.elapsed().as_micros() as u64;
            let mut got = 0u64;
            for fp in fetched_partitions(resp, &topic)? {
                if let Some(e) = fp.error {
                    if e.is_retriable() {
                        refresh = true;
                        continue;
                    }
                    bail!("fetch {}-{} failed: {e}", topic.name, fp.partition);
                }
                let (Some(raw), Some(&offset)) = (fp.records, positions.get(&fp.partition)) else {
                    continue;
                };
                records.clear();
                let next = decode_records(&raw, offset, None, &mut records)?;
                positions.insert(fp.partition, next);
                // Count no further than the target, as the Java perf test does.
                let room = target.saturating_sub(count + got) as usize;
                for r in records.iter().take(room) {
                    bytes += (r.value.as_ref().map_or(0, Bytes::len)
                        + r.key.as_ref().map_or(0, Bytes::len)) as u64;
                }
                got += records.len().min(room) as u64;
            }
            if got > 0 {
                last = Instant::now();
                count += got;
                fetch_latencies.push((latency, 1));
            }
        }
        if refresh {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let name = topic.name.clone();
            topic = client.topic(&name).await?;
        }
    }
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    let mb = bytes as f64 / (1024.0 * 1024.0);
    let p = weighted_percentiles(&mut fetch_latencies, &[0.5, 0.99, 0.999]);
    println!(
        "{count} records consumed, {:.1} records/sec ({:.2} MB/sec, {mb:.2} MB total) in {secs:.2} s, fetch latency {:.2} ms avg, {:.2} ms 50th, {:.2} ms 99th, {:.2} ms 99.9th.",
        count as f64 / secs,
        mb / secs,
        weighted_mean(&fetch_latencies) / 1000.0,
        p[0] as f64 / 1000.0,
        p[1] as f64 / 1000.0,
        p[2] as f64 / 1000.0
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pipelined_produce_sends_every_record_once_in_sequence() {
        use crate::fake_broker::FakeBroker;
        let broker = FakeBroker::start("b", 2).await;
        let mut client = Client::connect(&broker.addr, &runnel_client::ClientConfig::new("test"))
            .await
            .unwrap();
        let topic = client.topic("b").await.unwrap();
        let conn = client.take_broker(1).await.unwrap();
        let budget = Arc::new(Budget {
            remaining: AtomicU64::new(95),
            deadline: None,
            acked: AtomicU64::new(0),
        });
        let stats = produce_to_broker(
            conn,
            topic,
            vec![0, 1],
            budget.clone(),
            payload(10),
            10,
            -1,
            Compression::None,
            ProducerIdentity { id: 5, epoch: 0 },
            3,
        )
        .await
        .unwrap();
        assert_eq!(stats.records, 95);
        assert_eq!(budget.acked.load(Ordering::Relaxed), 95);
        assert_eq!(stats.latencies.iter().map(|l| l.1).sum::<u64>(), 95);
        let seen = broker.state.lock().unwrap().batches.clone();
        for p in [0, 1] {
            let mut next = 0;
            for b in seen.iter().filter(|b| b.partition == p) {
                assert_eq!(
                    b.base_sequence, next,
                    "partition {p} sequences are contiguous"
                );
                next += b.record_count;
            }
        }
        assert_eq!(seen.iter().map(|b| b.record_count).sum::<i32>(), 95);
    }

    #[test]
    fn budget_claims_are_bounded() {
        let b = Budget {
            remaining: AtomicU64::new(10),
            deadline: None,
            acked: AtomicU64::new(0),
        };
        assert_eq!(b.claim(4), 4);
        assert_eq!(b.claim(4), 4);
        assert_eq!(b.claim(4), 2);
        assert_eq!(b.claim(4), 0);
    }

    #[test]
    fn summary_reports_weighted_percentiles() {
        let mut l = vec![(1000, 98), (10_000, 1), (100_000, 1)];
        let s = produce_summary(100, 1024, Duration::from_secs(1), &mut l);
        assert!(
            s.starts_with("100 records sent, 100.0 records/sec (0.10 MB/sec)"),
            "{s}"
        );
        assert!(s.contains("100.00 ms max latency, 1.00 ms 50th, 1.00 ms 95th, 10.00 ms 99th, 100.00 ms 99.9th."), "{s}");
        assert_eq!(payload(7).len(), 7);
        assert!(payload(64).iter().all(u8::is_ascii_uppercase));
    }
}
