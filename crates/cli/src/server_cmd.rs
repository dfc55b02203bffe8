//! `runnel server`: parse the server flags, build a broker configuration and run the broker.
//! Owned by the broker team; the rest of the CLI only calls [`run`].

use std::path::PathBuf;

/// Keeps hostile array counts in requests from aborting the process (see
/// `runnel_protocol::alloc_guard`). Installed for the whole binary.
#[global_allocator]
static GLOBAL: runnel_protocol::alloc_guard::GuardedAlloc =
    runnel_protocol::alloc_guard::GuardedAlloc;

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
    /// Inter-node gRPC listener HOST:PORT (rpc.listen). Defaults to this node's voter entry;
    /// without voters no gRPC server runs unless this is given.
    #[arg(long)]
    pub rpc_listen: Option<String>,
    /// Metadata quorum voters ID@HOST:PORT,... (controller.quorum.voters), HOST:PORT being each
    /// voter's gRPC address. Without voters the node is a standalone single-node cluster.
    #[arg(long)]
    pub voters: Option<String>,
    /// Cluster id of a new cluster (a random one when unset); ignored once the metadata log
    /// exists.
    #[arg(long)]
    pub cluster_id: Option<String>,
    /// Override any property: --set key=value (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// A SCRAM credential of the new cluster, in the syntax of kafka-storage format's
    /// --add-scram: 'SCRAM-SHA-512=[name=admin,password=admin-secret]' (optionally
    /// iterations=N, or salt=BASE64 with saltedpassword=BASE64). Repeatable. Written when this
    /// node creates the cluster, ignored once the cluster exists.
    #[arg(
        long = "add-scram",
        value_name = "MECHANISM=[name=USER,password=PASSWORD]"
    )]
    pub add_scram: Vec<String>,
}

/// Collects properties in precedence order: properties file, then flags, then `--set`.
pub fn properties(args: &ServerArgs) -> anyhow::Result<Vec<(String, String)>> {
    let mut props = Vec::new();
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        props.extend(runnel_broker::config::parse_properties(&text)?);
    }
    if let Some(id) = args.node_id {
        props.push(("node.id".into(), id.to_string()));
    }
    if let Some(dir) = &args.data_dir {
        props.push(("log.dirs".into(), dir.display().to_string()));
    }
    if let Some(l) = &args.listen {
        props.push(("listeners".into(), format!("PLAINTEXT://{l}")));
    }
    if let Some(a) = &args.advertised_listener {
        props.push(("advertised.listeners".into(), format!("PLAINTEXT://{a}")));
    }
    if let Some(r) = &args.rpc_listen {
        props.push(("rpc.listen".into(), r.clone()));
    }
    if let Some(v) = &args.voters {
        props.push(("controller.quorum.voters".into(), v.clone()));
    }
    for kv in &args.set {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--set expects KEY=VALUE, got '{kv}'"))?;
        props.push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok(props)
}

pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    init_tracing();
    let props = properties(&args)?;
    let mut config = runnel_broker::BrokerConfig::from_properties(&props)?;
    config.cluster_id = args.cluster_id.clone();
    for arg in &args.add_scram {
        let credential = runnel_broker::config::parse_add_scram(arg)
            .map_err(|e| anyhow::anyhow!("--add-scram: {e}"))?;
        config.bootstrap_scram.push(credential);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("runnel")
        .build()?;
    runtime.block_on(async move {
        if let Some(addr) = &config.metrics_listen {
            let addr: std::net::SocketAddr = addr
                .parse()
                .map_err(|e| anyhow::anyhow!("metrics.prometheus.listen '{addr}': {e}"))?;
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .with_http_listener(addr)
                .install()
                .map_err(|e| {
                    anyhow::anyhow!("cannot start the Prometheus endpoint on {addr}: {e}")
                })?;
            tracing::info!(%addr, "Prometheus metrics at http://{addr}/metrics");
        }
        runnel_broker::run(config, shutdown_signal()).await?;
        Ok(())
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("RUNNEL_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("RUNNEL_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
