//! `runnel server`: parse the server flags, build a broker configuration and run the broker.
//! Owned by the broker team; the rest of the CLI only calls [`run`].

use std::path::PathBuf;

/// Flags of `runnel server` (the stable server contract; see README).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServerArgs {
    /// Kafka-style properties file (node.id, log.dirs, listeners, ...).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Node id (node.id).
    #[arg(long)]
    pub node_id: Option<i32>,
    /// Data directory (log.dirs). Defaults to ./runnel-data.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Client listener HOST:PORT (listeners). Defaults to 0.0.0.0:9092.
    #[arg(long)]
    pub listen: Option<String>,
    /// Address advertised to clients (advertised.listeners).
    #[arg(long)]
    pub advertised_listener: Option<String>,
    /// Inter-node gRPC listener HOST:PORT (accepted; used once the controller quorum lands).
    #[arg(long)]
    pub rpc_listen: Option<String>,
    /// Controller quorum voters ID@HOST:PORT,... (accepted; used once the controller quorum lands).
    #[arg(long)]
    pub voters: Option<String>,
    /// Cluster id to initialise a new data directory with.
    #[arg(long)]
    pub cluster_id: Option<String>,
    /// Override any property: --set key=value (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("server not wired yet")
}
