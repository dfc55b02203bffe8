//! `runnel transactions`: the subcommands, flags and tables of Kafka's `kafka-transactions.sh`,
//! through ListTransactions, DescribeTransactions (at the transaction coordinator, found with
//! FindCoordinator key type 1) and DescribeProducers (at partition leaders).
//!
//! - `list`: every transaction every broker's coordinator knows.
//! - `describe --transactional-id ID`: one transactional id's state at its coordinator.
//! - `describe-producers --topic T --partition P`: the producers of a partition, with the start
//!   offset of each one's open transaction.
//! - `find-hanging`: open transactions on partitions (those `--broker-id` leads, or `--topic`'s)
//!   older than `--max-transaction-timeout` minutes that no coordinator will finish: the
//!   producer id is unknown to every coordinator, or its transactional id is not in an open
//!   (Ongoing / Prepare*) transaction that includes the partition.
//! - `abort --topic T --partition P (--start-offset O | --producer-id --producer-epoch
//!   --coordinator-epoch)`: writes an ABORT marker for the producer's open transaction on the
//!   partition (WriteTxnMarkers at its leader, which needs ClusterAction), as for a hanging
//!   transaction `find-hanging` reported. With `--start-offset`, the producer, its epoch and its
//!   coordinator epoch come from DescribeProducers.
//!
//! Tables are printed as kafka-transactions.sh prints them: a header row, then one row per
//! item; each cell is padded to its column's width and followed by a tab.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{anyhow, bail, Result};
use runnel_client::transactions::{
    abort_transaction, describe_producers, describe_producers_at, describe_transaction,
    list_transactions, ListFilter, ProducerState, TransactionDescription,
};
use runnel_client::{codes, Client, KafkaError};

/// DescribeProducers asks about at most this many partitions at once.
const MAX_BATCH: usize = 500;

#[derive(clap::Args, Debug, Clone)]
pub struct TransactionsArgs {
    /// The server(s) to connect to (HOST:PORT,...).
    #[arg(
        long,
        global = true,
        default_value = "localhost:9092",
        value_name = "HOST:PORT"
    )]
    pub bootstrap_server: String,
    /// Client properties file: security.protocol, sasl.mechanism, sasl.jaas.config, ssl.*,
    /// client.id (Kafka's client property names).
    #[arg(long, global = true, value_name = "FILE")]
    pub command_config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: TransactionsCommand,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum TransactionsCommand {
    /// List transactions (ListTransactions on every broker).
    List(ListArgs),
    /// Describe the state of an active transactional id (at its coordinator).
    Describe(DescribeArgs),
    /// Describe the states of active producers for a topic partition.
    DescribeProducers(DescribeProducersArgs),
    /// Abort a hanging transaction (WriteTxnMarkers at the partition's leader; the principal
    /// needs ClusterAction on the cluster).
    Abort(AbortArgs),
    /// Find hanging transactions.
    FindHanging(FindHangingArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct ListArgs {
    /// Only transactions running longer than this many ms (ListTransactions v1).
    #[arg(long, value_name = "MS")]
    pub duration_filter: Option<i64>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct DescribeArgs {
    /// The transactional id.
    #[arg(long, value_name = "ID")]
    pub transactional_id: String,
}

#[derive(clap::Args, Debug, Clone)]
pub struct DescribeProducersArgs {
    /// Ask this broker instead of the partition's leader.
    #[arg(long, value_name = "BROKER")]
    pub broker_id: Option<i32>,
    /// The topic.
    #[arg(long)]
    pub topic: String,
    /// The partition.
    #[arg(long)]
    pub partition: i32,
}

#[derive(clap::Args, Debug, Clone)]
pub struct AbortArgs {
    /// The topic.
    #[arg(long)]
    pub topic: String,
    /// The partition.
    #[arg(long)]
    pub partition: i32,
    /// The start offset of the transaction to abort.
    #[arg(long, value_name = "OFFSET")]
    pub start_offset: Option<i64>,
    /// The producer id (with --producer-epoch and --coordinator-epoch).
    #[arg(long)]
    pub producer_id: Option<i64>,
    /// The producer epoch.
    #[arg(long)]
    pub producer_epoch: Option<i16>,
    /// The coordinator epoch.
    #[arg(long)]
    pub coordinator_epoch: Option<i32>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct FindHangingArgs {
    /// Search the partitions this broker leads.
    #[arg(long, value_name = "BROKER")]
    pub broker_id: Option<i32>,
    /// Only transactions open longer than this many minutes are candidates.
    #[arg(long, default_value_t = 15, value_name = "MINUTES")]
    pub max_transaction_timeout: i32,
    /// Search this topic only.
    #[arg(long)]
    pub topic: Option<String>,
    /// With --topic: search this partition only.
    #[arg(long)]
    pub partition: Option<i32>,
}

pub async fn run(args: TransactionsArgs) -> Result<()> {
    if let TransactionsCommand::Abort(a) = &args.command {
        abort_target(a)?;
    }
    if let TransactionsCommand::FindHanging(f) = &args.command {
        if f.topic.is_none() && f.broker_id.is_none() {
            bail!(
                "The `find-hanging` command requires either --topic or --broker-id to limit \
                 the scope of the search"
            );
        }
        if f.partition.is_some() && f.topic.is_none() {
            bail!("The --partition argument requires --topic to be provided");
        }
    }
    let mut client = Client::connect(
        &args.bootstrap_server,
        &crate::util::client_config("transactions", &[args.command_config.as_deref()], &[])?,
    )
    .await?;
    let now = runnel_client::produce::now_ms();
    let out = match &args.command {
        TransactionsCommand::List(a) => list(&mut client, a).await?,
        TransactionsCommand::Describe(a) => describe(&mut client, a, now).await?,
        TransactionsCommand::DescribeProducers(a) => producers(&mut client, a).await?,
        TransactionsCommand::FindHanging(a) => find_hanging(&mut client, a, now).await?,
        TransactionsCommand::Abort(a) => abort(&mut client, a).await?,
    };
    print!("{out}");
    Ok(())
}

/// kafka-transactions.sh's tables: every cell padded with spaces to its column's width and
/// followed by a tab, the header row first.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        for (c, w) in cells.zip(&widths) {
            out.push_str(&format!("{c:<w$}\t"));
        }
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for r in rows {
        line(&mut r.iter().map(String::as_str));
    }
    out
}

// ---- list ----

async fn list(client: &mut Client, args: &ListArgs) -> Result<String> {
    let filter = ListFilter {
        duration_ms: args.duration_filter,
        ..ListFilter::default()
    };
    let by_broker = list_transactions(client, &filter)
        .await
        .map_err(|e| anyhow!("Failed to list transactions: {e:#}"))?;
    let mut rows = Vec::new();
    for (broker, listings) in by_broker {
        for l in listings {
            rows.push(vec![
                l.transactional_id,
                broker.to_string(),
                l.producer_id.to_string(),
                l.state,
            ]);
        }
    }
    Ok(table(
        &[
            "TransactionalId",
            "Coordinator",
            "ProducerId",
            "TransactionState",
        ],
        &rows,
    ))
}

// ---- describe ----

/// The message Kafka's admin client gives a DescribeTransactions error for `id`.
fn describe_error(id: &str, e: &KafkaError) -> String {
    let what = match e.code {
        codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED => "failed due to authorization failure",
        codes::TRANSACTIONAL_ID_NOT_FOUND => "failed because the ID could not be found",
        _ => "failed due to unexpected error",
    };
    format!("DescribeTransactions request for transactionalId `{id}` {what} ({e})")
}

/// A failure to find or reach `id`'s coordinator; a refused FindCoordinator is worded as
/// Kafka's admin client words it.
fn lookup_error(id: &str, e: &anyhow::Error) -> String {
    match e.downcast_ref::<KafkaError>() {
        Some(k) if k.code == codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED => format!(
            "FindCoordinator request for transactionalId `{id}` failed due to authorization \
             failure ({k})"
        ),
        _ => format!("{e:#}"),
    }
}

async fn describe(client: &mut Client, args: &DescribeArgs, now: i64) -> Result<String> {
    let id = &args.transactional_id;
    let failed = |cause: String| {
        anyhow!("Failed to describe transaction state of transactional-id `{id}`: {cause}")
    };
    let d = describe_transaction(client, id)
        .await
        .map_err(|e| failed(lookup_error(id, &e)))?
        .map_err(|e| failed(describe_error(id, &e)))?;
    Ok(describe_table(&d, now))
}

fn describe_table(d: &TransactionDescription, now: i64) -> String {
    let (start, duration) = match d.start_time_ms {
        Some(t) => (t.to_string(), (now - t).to_string()),
        None => ("None".to_string(), "None".to_string()),
    };
    let partitions: Vec<String> = d
        .partitions
        .iter()
        .map(|(t, p)| format!("{t}-{p}"))
        .collect();
    table(
        &[
            "CoordinatorId",
            "TransactionalId",
            "ProducerId",
            "ProducerEpoch",
            "TransactionState",
            "TransactionTimeoutMs",
            "CurrentTransactionStartTimeMs",
            "TransactionDurationMs",
            "TopicPartitions",
        ],
        &[vec![
            d.coordinator_id.to_string(),
            d.transactional_id.clone(),
            d.producer_id.to_string(),
            d.producer_epoch.to_string(),
            d.state.clone(),
            d.timeout_ms.to_string(),
            start,
            duration,
            partitions.join(","),
        ]],
    )
}

// ---- describe-producers ----

/// A DescribeProducers error for one partition, as Kafka's admin client words the common ones.
fn producers_error(topic: &str, partition: i32, e: &KafkaError) -> String {
    match e.code {
        codes::TOPIC_AUTHORIZATION_FAILED => format!(
            "Failed to describe active producers for partition {topic}-{partition} due to \
             authorization failure on topic `{topic}` ({e})"
        ),
        _ => e.to_string(),
    }
}

async fn producers(client: &mut Client, args: &DescribeProducersArgs) -> Result<String> {
    let (topic, partition) = (args.topic.as_str(), args.partition);
    let on = match args.broker_id {
        Some(b) => format!("broker {b}"),
        None => "leader".to_string(),
    };
    let failed = |cause: String| {
        anyhow!("Failed to describe producers for partition {topic}-{partition} on {on}: {cause}")
    };
    let mut answers = match args.broker_id {
        Some(b) => describe_producers_at(client, b, topic, &[partition]).await,
        None => describe_producers(client, topic, &[partition]).await,
    }
    .map_err(|e| failed(format!("{e:#}")))?;
    let producers = answers
        .remove(&partition)
        .ok_or_else(|| failed("no answer for the partition".to_string()))?
        .map_err(|e| failed(producers_error(topic, partition, &e)))?;
    Ok(producers_table(&producers))
}

/// The transaction `abort` names: by start offset (looked up), or by producer.
enum AbortTarget {
    StartOffset(i64),
    Producer {
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
    },
}

fn abort_target(a: &AbortArgs) -> Result<AbortTarget> {
    match (a.start_offset, a.producer_id) {
        (Some(_), Some(_)) => {
            bail!("--start-offset cannot be used together with --producer-id")
        }
        (Some(offset), None) => {
            if a.producer_epoch.is_some() || a.coordinator_epoch.is_some() {
                bail!("--producer-epoch and --coordinator-epoch go with --producer-id, not --start-offset");
            }
            Ok(AbortTarget::StartOffset(offset))
        }
        (None, Some(producer_id)) => Ok(AbortTarget::Producer {
            producer_id,
            producer_epoch: a
                .producer_epoch
                .ok_or_else(|| anyhow!("--producer-id needs --producer-epoch"))?,
            coordinator_epoch: a
                .coordinator_epoch
                .ok_or_else(|| anyhow!("--producer-id needs --coordinator-epoch"))?,
        }),
        (None, None) => bail!(
            "abort needs either --start-offset, or --producer-id with --producer-epoch and \
             --coordinator-epoch"
        ),
    }
}

/// `abort`: an ABORT marker for the named transaction, written by the partition's leader.
async fn abort(client: &mut Client, args: &AbortArgs) -> Result<String> {
    let (topic, partition) = (args.topic.as_str(), args.partition);
    let (producer_id, producer_epoch, coordinator_epoch) = match abort_target(args)? {
        AbortTarget::Producer {
            producer_id,
            producer_epoch,
            coordinator_epoch,
        } => (producer_id, producer_epoch, coordinator_epoch),
        AbortTarget::StartOffset(offset) => {
            let failed = |cause: String| {
                anyhow!("Failed to describe producers for partition {topic}-{partition}: {cause}")
            };
            let producers = describe_producers(client, topic, &[partition])
                .await
                .map_err(|e| failed(format!("{e:#}")))?
                .remove(&partition)
                .ok_or_else(|| failed("no answer for the partition".to_string()))?
                .map_err(|e| failed(producers_error(topic, partition, &e)))?;
            let p = producers
                .iter()
                .find(|p| p.current_txn_start_offset == Some(offset))
                .ok_or_else(|| {
                    anyhow!(
                        "Could not find any open transactions starting at offset {offset} on \
                         partition {topic}-{partition}"
                    )
                })?;
            let epoch = i16::try_from(p.producer_epoch)
                .map_err(|_| anyhow!("producer epoch {} out of range", p.producer_epoch))?;
            // A producer that never had a marker has coordinator epoch -1: any marker is newer.
            (p.producer_id, epoch, p.coordinator_epoch.max(0))
        }
    };
    abort_transaction(
        client,
        topic,
        partition,
        producer_id,
        producer_epoch,
        coordinator_epoch,
    )
    .await?
    .map_err(|e| {
        anyhow!(
            "Failed to abort the transaction of producer {producer_id} (epoch {producer_epoch}) \
             on partition {topic}-{partition}: {e}"
        )
    })?;
    Ok(String::new())
}

fn producers_table(producers: &[ProducerState]) -> String {
    let rows: Vec<Vec<String>> = producers
        .iter()
        .map(|p| {
            vec![
                p.producer_id.to_string(),
                p.producer_epoch.to_string(),
                p.coordinator_epoch.to_string(),
                p.last_sequence.to_string(),
                p.last_timestamp.to_string(),
                p.current_txn_start_offset
                    .map_or_else(|| "None".to_string(), |o| o.to_string()),
            ]
        })
        .collect();
    table(
        &[
            "ProducerId",
            "ProducerEpoch",
            "LatestCoordinatorEpoch",
            "LastSequence",
            "LastTimestamp",
            "CurrentTransactionStartOffset",
        ],
        &rows,
    )
}

// ---- find-hanging ----

/// A producer's open transaction on one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenTransaction {
    pub topic: String,
    pub partition: i32,
    pub producer: ProducerState,
}

/// The partitions to search: `--topic` (or one `--partition` of it), or every topic but the
/// internal ones; with `--broker-id`, only the partitions that broker leads. Each comes with
/// the broker to ask.
async fn partitions_to_search(
    client: &mut Client,
    args: &FindHangingArgs,
) -> Result<BTreeMap<(String, i32), Vec<i32>>> {
    let topics = match &args.topic {
        Some(t) => vec![client
            .topic(t)
            .await
            .map_err(|e| anyhow!("Failed to describe 1 topics: {e:#}"))?],
        None => client
            .refresh(None)
            .await
            .map_err(|e| anyhow!("Failed to list topics: {e:#}"))?
            .topics
            .values()
            .filter(|t| !t.is_internal && t.error_code == 0)
            .cloned()
            .collect(),
    };
    // (topic, broker to ask) -> partitions.
    let mut out: BTreeMap<(String, i32), Vec<i32>> = BTreeMap::new();
    for t in topics {
        for p in &t.partitions {
            if args.partition.is_some_and(|want| want != p.index) {
                continue;
            }
            let ask = match args.broker_id {
                Some(b) if args.partition.is_none() && p.leader != b => continue,
                Some(b) => b,
                None => p.leader,
            };
            out.entry((t.name.clone(), ask)).or_default().push(p.index);
        }
        if let Some(want) = args.partition {
            if !t.partitions.iter().any(|p| p.index == want) {
                bail!("Partition {}-{want} does not exist", t.name);
            }
        }
    }
    Ok(out)
}

/// Open transactions older than `max_ms` (by the producer's last timestamp) on the searched
/// partitions.
async fn candidates(
    client: &mut Client,
    args: &FindHangingArgs,
    max_ms: i64,
    now: i64,
) -> Result<Vec<OpenTransaction>> {
    let mut out = Vec::new();
    for ((topic, broker), partitions) in partitions_to_search(client, args).await? {
        for batch in partitions.chunks(MAX_BATCH) {
            let failed = |cause: String| {
                let on = if broker < 0 {
                    "a partition without a leader".to_string()
                } else {
                    format!("broker {broker}")
                };
                anyhow!(
                    "Failed to describe producers for {} partitions on {on}: {cause}",
                    batch.len()
                )
            };
            let answers = if broker < 0 {
                describe_producers(client, &topic, batch).await
            } else {
                describe_producers_at(client, broker, &topic, batch).await
            }
            .map_err(|e| failed(format!("{e:#}")))?;
            for (p, result) in answers {
                let producers = result.map_err(|e| {
                    failed(format!("{topic}-{p}: {}", producers_error(&topic, p, &e)))
                })?;
                out.extend(
                    producers
                        .into_iter()
                        .filter(|s| {
                            s.current_txn_start_offset.is_some() && now - s.last_timestamp > max_ms
                        })
                        .map(|producer| OpenTransaction {
                            topic: topic.clone(),
                            partition: p,
                            producer,
                        }),
                );
            }
        }
    }
    Ok(out)
}

/// Whether a coordinator will still finish `open`: its producer id belongs to a transactional
/// id (`ids`) whose description (`descriptions`; `None`: the coordinator does not know it) is an
/// open transaction (Ongoing or Prepare*) that includes the partition.
pub fn is_hanging(
    open: &OpenTransaction,
    ids: &BTreeMap<i64, String>,
    descriptions: &BTreeMap<String, Option<TransactionDescription>>,
) -> bool {
    let Some(id) = ids.get(&open.producer.producer_id) else {
        return true;
    };
    let Some(Some(d)) = descriptions.get(id) else {
        return true;
    };
    let open_state = d.state == "Ongoing" || d.state.starts_with("Prepare");
    let same_producer = d.producer_id == open.producer.producer_id;
    let includes = d
        .partitions
        .iter()
        .any(|(t, p)| *t == open.topic && *p == open.partition);
    !(open_state && same_producer && includes)
}

async fn find_hanging(client: &mut Client, args: &FindHangingArgs, now: i64) -> Result<String> {
    let max_ms = i64::from(args.max_transaction_timeout) * 60_000;
    let open = candidates(client, args, max_ms, now).await?;
    let mut hanging = Vec::new();
    if !open.is_empty() {
        let pids: BTreeSet<i64> = open.iter().map(|o| o.producer.producer_id).collect();
        let filter = ListFilter {
            producer_ids: pids.iter().copied().collect(),
            ..ListFilter::default()
        };
        let listed = list_transactions(client, &filter).await.map_err(|e| {
            anyhow!(
                "Failed to list transactions for {} producers: {e:#}",
                pids.len()
            )
        })?;
        let ids: BTreeMap<i64, String> = listed
            .into_values()
            .flatten()
            .filter(|l| pids.contains(&l.producer_id))
            .map(|l| (l.producer_id, l.transactional_id))
            .collect();
        let unique: BTreeSet<&String> = ids.values().collect();
        let mut descriptions = BTreeMap::new();
        for id in &unique {
            let d = describe_transaction(client, id).await.map_err(|e| {
                anyhow!(
                    "Failed to describe {} transactions: {}",
                    unique.len(),
                    lookup_error(id, &e)
                )
            })?;
            let d = match d {
                Ok(d) => Some(d),
                Err(e) if e.code == codes::TRANSACTIONAL_ID_NOT_FOUND => None,
                Err(e) => bail!(
                    "Failed to describe {} transactions: {}",
                    unique.len(),
                    describe_error(id, &e)
                ),
            };
            descriptions.insert((*id).clone(), d);
        }
        hanging = open
            .into_iter()
            .filter(|o| is_hanging(o, &ids, &descriptions))
            .collect();
    }
    Ok(hanging_table(&hanging, now))
}

fn hanging_table(hanging: &[OpenTransaction], now: i64) -> String {
    let mut rows: Vec<Vec<String>> = hanging
        .iter()
        .map(|o| {
            let p = &o.producer;
            vec![
                o.topic.clone(),
                o.partition.to_string(),
                p.producer_id.to_string(),
                p.producer_epoch.to_string(),
                p.coordinator_epoch.to_string(),
                p.current_txn_start_offset.unwrap_or(-1).to_string(),
                p.last_timestamp.to_string(),
                ((now - p.last_timestamp) / 60_000).to_string(),
            ]
        })
        .collect();
    rows.sort_by(|a, b| {
        (&a[0], a[1].parse::<i32>().ok(), &a[2]).cmp(&(&b[0], b[1].parse::<i32>().ok(), &b[2]))
    });
    table(
        &[
            "Topic",
            "Partition",
            "ProducerId",
            "ProducerEpoch",
            "CoordinatorEpoch",
            "StartOffset",
            "LastTimestamp",
            "Duration(min)",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_every_cell_and_end_it_with_a_tab() {
        let t = table(
            &["A", "Longer"],
            &[vec!["xyz".into(), "1".into()], vec!["q".into(), "".into()]],
        );
        assert_eq!(t, "A  \tLonger\t\nxyz\t1     \t\nq  \t      \t\n");
        assert_eq!(table(&["Only"], &[]), "Only\t\n");
    }

    fn description(state: &str, pid: i64, partitions: &[(&str, i32)]) -> TransactionDescription {
        TransactionDescription {
            coordinator_id: 1,
            transactional_id: "t".into(),
            state: state.into(),
            producer_id: pid,
            producer_epoch: 0,
            timeout_ms: 60_000,
            start_time_ms: Some(1_000),
            partitions: partitions
                .iter()
                .map(|(t, p)| (t.to_string(), *p))
                .collect(),
        }
    }

    fn open(topic: &str, partition: i32, pid: i64) -> OpenTransaction {
        OpenTransaction {
            topic: topic.into(),
            partition,
            producer: ProducerState {
                producer_id: pid,
                producer_epoch: 3,
                coordinator_epoch: -1,
                last_sequence: 4,
                last_timestamp: 0,
                current_txn_start_offset: Some(10),
            },
        }
    }

    #[test]
    fn hanging_means_no_open_transaction_of_the_producer_covers_the_partition() {
        let ids = BTreeMap::from([(7, "t".to_string()), (8, "gone".to_string())]);
        let mut d = BTreeMap::from([
            (
                "t".to_string(),
                Some(description("Ongoing", 7, &[("a", 0), ("b", 1)])),
            ),
            ("gone".to_string(), None),
        ]);
        // Known, open and covering the partition: the coordinator will write its marker.
        assert!(!is_hanging(&open("a", 0, 7), &ids, &d));
        // The same transaction does not include this partition.
        assert!(is_hanging(&open("a", 1, 7), &ids, &d));
        // No transactional id for the producer, or the coordinator no longer knows it.
        assert!(is_hanging(&open("a", 0, 9), &ids, &d));
        assert!(is_hanging(&open("a", 0, 8), &ids, &d));
        // Prepare* still waits for markers; a completed transaction does not.
        d.insert(
            "t".into(),
            Some(description("PrepareCommit", 7, &[("a", 0)])),
        );
        assert!(!is_hanging(&open("a", 0, 7), &ids, &d));
        d.insert(
            "t".into(),
            Some(description("CompleteCommit", 7, &[("a", 0)])),
        );
        assert!(is_hanging(&open("a", 0, 7), &ids, &d));
    }

    #[test]
    fn rows_print_as_kafka_transactions_prints_them() {
        let mut d = description("Ongoing", 7, &[("b", 1), ("a", 0)]);
        d.partitions.sort();
        let t = describe_table(&d, 5_000);
        let row: Vec<&str> = t
            .lines()
            .nth(1)
            .unwrap()
            .split('\t')
            .map(str::trim)
            .collect();
        assert_eq!(
            row,
            ["1", "t", "7", "0", "Ongoing", "60000", "1000", "4000", "a-0,b-1", ""]
        );
        d.start_time_ms = None;
        let t = describe_table(&d, 5_000);
        let row: Vec<&str> = t
            .lines()
            .nth(1)
            .unwrap()
            .split('\t')
            .map(str::trim)
            .collect();
        assert_eq!(&row[6..8], ["None", "None"], "{t}");

        let mut p = open("a", 0, 7).producer;
        let t = producers_table(&[p.clone()]);
        let row: Vec<&str> = t
            .lines()
            .nth(1)
            .unwrap()
            .split('\t')
            .map(str::trim)
            .collect();
        assert_eq!(row, ["7", "3", "-1", "4", "0", "10", ""]);
        p.current_txn_start_offset = None;
        assert!(producers_table(&[p])
            .lines()
            .nth(1)
            .unwrap()
            .contains("None"));

        let t = hanging_table(&[open("a", 0, 7)], 61 * 60_000 + 59_000);
        let row: Vec<&str> = t
            .lines()
            .nth(1)
            .unwrap()
            .split('\t')
            .map(str::trim)
            .collect();
        assert_eq!(row, ["a", "0", "7", "3", "-1", "10", "0", "61", ""]);
    }

    #[test]
    fn errors_are_worded_as_kafkas_admin_client_words_them() {
        let e = |code| KafkaError {
            code,
            message: None,
        };
        assert_eq!(
            describe_error("x", &e(105)),
            "DescribeTransactions request for transactionalId `x` failed because the ID could \
             not be found (TRANSACTIONAL_ID_NOT_FOUND)"
        );
        assert!(describe_error("x", &e(53)).contains("failed due to authorization failure"));
        assert!(describe_error("x", &e(16)).contains("unexpected error (NOT_COORDINATOR)"));
        let refused = anyhow::Error::new(e(53)).context("FindCoordinator for transactional id 'x'");
        assert_eq!(
            lookup_error("x", &refused),
            "FindCoordinator request for transactionalId `x` failed due to authorization \
             failure (TRANSACTIONAL_ID_AUTHORIZATION_FAILED)"
        );
        assert!(lookup_error("x", &anyhow!("cannot connect")).contains("cannot connect"));
        assert!(producers_error("t", 0, &e(29)).contains("authorization failure on topic `t`"));
    }

    #[test]
    fn global_flags_go_before_or_after_the_subcommand() {
        use clap::{CommandFactory, FromArgMatches};
        let parse = |args: &[&str]| {
            let argv = std::iter::once("runnel")
                .chain(args.iter().copied())
                .map(std::ffi::OsString::from)
                .collect();
            let argv = crate::argv::normalize(&crate::Cli::command(), argv).unwrap();
            let m = crate::Cli::command().try_get_matches_from(argv)?;
            crate::Cli::from_arg_matches(&m)
        };
        for args in [
            &["transactions", "--bootstrap-server", "h:1", "list"][..],
            &["transactions", "list", "--bootstrap-server", "h:1"][..],
            &["transactions", "-bootstrap-server", "h:1", "list"][..],
            &["transactions", "list", "-bootstrap-server", "h:1"][..],
        ] {
            let cli = parse(args).unwrap();
            let crate::Command::Transactions(t) = cli.command else {
                panic!("{args:?}");
            };
            assert_eq!(t.bootstrap_server, "h:1", "{args:?}");
            assert!(matches!(t.command, TransactionsCommand::List(_)));
        }
        let cli = parse(&[
            "transactions",
            "describe-producers",
            "-topic",
            "t",
            "-partition",
            "2",
        ])
        .unwrap();
        let crate::Command::Transactions(t) = cli.command else {
            panic!()
        };
        let TransactionsCommand::DescribeProducers(d) = t.command else {
            panic!()
        };
        assert_eq!((d.topic.as_str(), d.partition, d.broker_id), ("t", 2, None));
        assert!(parse(&["transactions", "describe"]).is_err());
        assert!(parse(&["transactions", "describe-producers", "--topic", "t"]).is_err());
        assert!(parse(&["transactions", "abort", "--topic", "t"]).is_err());
        assert!(parse(&["transactions", "bogus"]).is_err());
    }
}
