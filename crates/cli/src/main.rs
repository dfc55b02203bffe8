//! The `runnel` binary: `runnel server` runs a broker; the other subcommands are Kafka clients
//! with the flags of Kafka's own command-line tools (`kafka-topics.sh`, `kafka-configs.sh`,
//! `kafka-console-producer.sh`, ...). The clients speak only the Kafka wire protocol, so they work
//! against any Kafka cluster. This file only parses arguments and dispatches.

mod acls;
mod argv;
mod bench;
mod configs;
mod console_consumer;
mod console_producer;
mod consumer_groups;
#[cfg(test)]
mod fake_broker;
mod health;
mod leader_election;
mod metadata_quorum;
mod quotas;
mod server_cmd;
mod server_stop;
mod storage;
mod topics;
mod transactions;
mod util;

use clap::{CommandFactory, FromArgMatches, Subcommand};

/// What `--version` prints, for the binary and every tool: the release and the commit built.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("RUNNEL_COMMIT"),
    ")"
);

#[derive(clap::Parser, Debug)]
#[command(
    name = "runnel",
    version = VERSION,
    propagate_version = true,
    about = "Runnel: a Kafka-compatible event-streaming broker and its tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a broker (kafka-server-start.sh).
    Server(server_cmd::ServerArgs),
    /// Stop the server running on a data directory, cleanly (kafka-server-stop.sh).
    ServerStop(server_stop::ServerStopArgs),
    /// Print a new cluster id, or record it for a new node's first start (kafka-storage.sh).
    Storage(storage::StorageArgs),
    /// Create, list, describe, alter and delete topics (kafka-topics.sh).
    Topics(topics::TopicsArgs),
    /// Describe and alter topic and broker configs and users' SCRAM credentials
    /// (kafka-configs.sh).
    Configs(configs::ConfigsArgs),
    /// Add, remove and list ACLs (kafka-acls.sh).
    Acls(acls::AclsArgs),
    /// Produce stdin lines to a topic (kafka-console-producer.sh).
    ConsoleProducer(console_producer::ConsoleProducerArgs),
    /// Print a topic's records to stdout, alone or as a group member (kafka-console-consumer.sh).
    ConsoleConsumer(console_consumer::ConsoleConsumerArgs),
    /// List, describe and delete consumer groups, and reset their offsets
    /// (kafka-consumer-groups.sh).
    ConsumerGroups(consumer_groups::ConsumerGroupsArgs),
    /// Load generators (kafka-producer-perf-test.sh / kafka-consumer-perf-test.sh).
    Bench(bench::BenchArgs),
    /// Describe the controller quorum (kafka-metadata-quorum.sh).
    MetadataQuorum(metadata_quorum::MetadataQuorumArgs),
    /// Elect preferred or unclean partition leaders (kafka-leader-election.sh).
    LeaderElection(leader_election::LeaderElectionArgs),
    /// List and describe transactions and the producers of partitions, and find hanging
    /// transactions (kafka-transactions.sh).
    Transactions(transactions::TransactionsArgs),
    /// Probe one broker: exit 0 when it answers and (with --node-id) is a live broker.
    Health(health::HealthArgs),
}

fn main() {
    let command = Cli::command();
    let argv = match argv::normalize(&command, std::env::args_os().collect()) {
        Ok(argv) => argv,
        Err(message) => {
            eprintln!("Error: {message}");
            std::process::exit(1);
        }
    };
    let cli = command
        .try_get_matches_from(argv)
        .and_then(|m| Cli::from_arg_matches(&m))
        .unwrap_or_else(|e| e.exit());
    let result = match cli.command {
        Command::Server(args) => server_cmd::run(args),
        Command::ServerStop(args) => server_stop::run(args),
        Command::Storage(args) => storage::run(args),
        Command::Topics(args) => block_on(topics::run(args)),
        Command::Configs(args) => block_on(configs::run(args)),
        Command::Acls(args) => block_on(acls::run(args)),
        Command::ConsoleProducer(args) => block_on(console_producer::run(args)),
        Command::ConsoleConsumer(args) => block_on(console_consumer::run(args)),
        Command::ConsumerGroups(args) => block_on(consumer_groups::run(args)),
        Command::Bench(args) => block_on(bench::run(args)),
        Command::MetadataQuorum(args) => block_on(metadata_quorum::run(args)),
        Command::LeaderElection(args) => block_on(leader_election::run(args)),
        Command::Transactions(args) => block_on(transactions::run(args)),
        Command::Health(args) => block_on(health::run(args)),
    };
    if let Err(e) = result {
        eprintln!("Error: {e:#}");
        std::process::exit(1);
    }
}

fn block_on<F: std::future::Future<Output = anyhow::Result<()>>>(fut: F) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(fut)
}
