//! `runnel server`: parse the server flags, build a broker configuration and run the broker.
//! Owned by the broker team; the rest of the CLI only calls [`run`].
//!
//! A running server holds an exclusive lock on `<data-dir>/runnel.pid`, which names its process:
//! `runnel server-stop` signals that process, and a second server on the same directory is
//! refused before it touches anything.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The file in the data directory that names the running server's process.
pub const PID_FILE: &str = "runnel.pid";
/// The file `runnel storage format` leaves in a new data directory: the id the cluster is
/// created with on the first start.
pub const FORMAT_FILE: &str = "runnel-format.properties";

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
    /// The properties file given as kafka-server-start.sh takes it (same as --config).
    #[arg(value_name = "server.properties", conflicts_with = "config")]
    pub config_file: Option<PathBuf>,
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
    /// Override any property: --set key=value (repeatable; kafka-server-start.sh's --override
    /// is the same).
    #[arg(long = "set", alias = "override", value_name = "KEY=VALUE")]
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
    if let Some(path) = args.config.as_ref().or(args.config_file.as_ref()) {
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
    config.cluster_id = match &args.cluster_id {
        Some(id) => Some(id.clone()),
        None => formatted_cluster_id(&config.data_dir)?,
    };
    for arg in &args.add_scram {
        let credential = runnel_broker::config::parse_add_scram(arg)
            .map_err(|e| anyhow::anyhow!("--add-scram: {e}"))?;
        config.bootstrap_scram.push(credential);
    }
    // Held until the process exits: the lock says this server is running on the directory.
    let _pid_file = lock_data_dir(&config.data_dir)?;
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

/// The cluster id `runnel storage format` recorded in `data_dir`, if any.
pub fn formatted_cluster_id(data_dir: &Path) -> anyhow::Result<Option<String>> {
    let path = data_dir.join(FORMAT_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let props = runnel_broker::config::parse_properties(&text)?;
    Ok(props
        .into_iter()
        .find(|(k, _)| k == "cluster.id")
        .map(|(_, v)| v))
}

/// Creates `data_dir`, takes the exclusive lock on its pid file and writes this process's id
/// there. Fails, naming the other process, when a server already runs on the directory.
fn lock_data_dir(data_dir: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", data_dir.display()))?;
    let path = data_dir.join(PID_FILE);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            anyhow::bail!(
                "data directory {} is in use by another runnel server (pid {}); stop it first (runnel server-stop --data-dir {})",
                data_dir.display(),
                pid.trim(),
                data_dir.display()
            );
        }
        Err(std::fs::TryLockError::Error(e)) => {
            anyhow::bail!("cannot lock {}: {e}", path.display())
        }
    }
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())?;
    file.sync_all()?;
    Ok(file)
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
