//! `runnel storage`: the two commands of Kafka's `kafka-storage.sh` that its quickstart runs.
//! `random-uuid` prints a new cluster id. Runnel needs no format step (a new node creates its
//! cluster on first start), so `format` checks the configuration and records the cluster id in
//! the data directory for that first start.

use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::server_cmd::FORMAT_FILE;

#[derive(clap::Args, Debug, Clone)]
pub struct StorageArgs {
    #[command(subcommand)]
    pub command: StorageCommand,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum StorageCommand {
    /// Print a random cluster id (Kafka's base64 form of a UUID).
    RandomUuid,
    /// Check the server configuration and record the cluster id its first start creates.
    Format(FormatArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct FormatArgs {
    /// The server's properties file.
    #[arg(long, short = 'c')]
    pub config: PathBuf,
    /// The cluster id (from `runnel storage random-uuid`).
    #[arg(long, short = 't')]
    pub cluster_id: String,
    /// A single-node controller quorum (Runnel's default without controller.quorum.voters;
    /// accepted as Kafka's format takes it).
    #[arg(long, short = 's')]
    pub standalone: bool,
    /// Succeed when the data directory is formatted already.
    #[arg(long, short = 'g')]
    pub ignore_formatted: bool,
}

pub fn run(args: StorageArgs) -> Result<()> {
    match args.command {
        StorageCommand::RandomUuid => {
            println!("{}", crate::util::topic_id_string(&uuid::Uuid::new_v4()));
            Ok(())
        }
        StorageCommand::Format(f) => format(f),
    }
}

fn format(args: FormatArgs) -> Result<()> {
    let id = args.cluster_id.trim();
    if id.is_empty() {
        bail!("The cluster id must not be empty.");
    }
    let server = crate::server_cmd::ServerArgs {
        config: Some(args.config.clone()),
        ..Default::default()
    };
    let config =
        runnel_broker::BrokerConfig::from_properties(&crate::server_cmd::properties(&server)?)?;
    let dir = &config.data_dir;
    let formatted = dir.join(FORMAT_FILE).exists() || dir.join("meta.properties").exists();
    if formatted {
        if args.ignore_formatted {
            return Ok(());
        }
        bail!(
            "Log directory {} is already formatted. Use --ignore-formatted to ignore this directory and format the others.",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    std::fs::write(
        dir.join(FORMAT_FILE),
        format!(
            "# Written by runnel storage format: the cluster the first start creates.\ncluster.id={id}\n"
        ),
    )?;
    println!(
        "Formatting data directory {} for cluster {id} (node.id {}).",
        dir.display(),
        config.node_id
    );
    Ok(())
}
