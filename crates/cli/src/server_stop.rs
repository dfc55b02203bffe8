//! `runnel server-stop`: in the manner of Kafka's `kafka-server-stop.sh`, asks the server running
//! on a data directory to shut down cleanly (SIGTERM, as Ctrl-C would) and waits until it has.
//! The server is found through the pid file it holds locked in its data directory.

use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};

use crate::server_cmd::PID_FILE;

#[derive(clap::Args, Debug, Clone)]
pub struct ServerStopArgs {
    /// The server's properties file: its log.dirs names the data directory.
    #[arg(long, conflicts_with = "data_dir")]
    pub config: Option<PathBuf>,
    /// The properties file given as kafka-server-start.sh takes it (same as --config).
    #[arg(value_name = "server.properties", conflicts_with_all = ["config", "data_dir"])]
    pub config_file: Option<PathBuf>,
    /// The data directory of the server to stop (log.dirs; default ./runnel-data).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// How long to wait for the server to finish shutting down, in ms.
    #[arg(long, default_value_t = 60_000)]
    pub timeout_ms: u64,
}

/// The data directory the arguments name, resolved as `runnel server` resolves it.
fn data_dir(args: &ServerStopArgs) -> Result<PathBuf> {
    let server = crate::server_cmd::ServerArgs {
        config: args.config.clone().or(args.config_file.clone()),
        data_dir: args.data_dir.clone(),
        ..Default::default()
    };
    let props = crate::server_cmd::properties(&server)?;
    Ok(runnel_broker::BrokerConfig::from_properties(&props)?.data_dir)
}

pub fn run(args: ServerStopArgs) -> Result<()> {
    let dir = data_dir(&args)?;
    let path = dir.join(PID_FILE);
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!(
                "No runnel server to stop: none has run on data directory {}",
                dir.display()
            )
        }
        Err(e) => bail!("cannot open {}: {e}", path.display()),
    };
    // The server holds the lock while it runs; taking it means nobody does.
    match file.try_lock_shared() {
        Ok(()) => bail!(
            "No runnel server to stop: none is running on data directory {}",
            dir.display()
        ),
        Err(std::fs::TryLockError::WouldBlock) => {}
        Err(std::fs::TryLockError::Error(e)) => bail!("cannot lock {}: {e}", path.display()),
    }
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    let pid: u32 = text.trim().parse().map_err(|_| {
        anyhow!(
            "{} does not hold a process id: '{}'",
            path.display(),
            text.trim()
        )
    })?;
    // std cannot send a signal; the shell's kill builtin is everywhere there is a shell.
    let status = std::process::Command::new("sh")
        .args(["-c", "kill -TERM \"$1\"", "sh", &pid.to_string()])
        .status()
        .map_err(|e| anyhow!("cannot run kill: {e}"))?;
    if !status.success() {
        bail!(
            "cannot signal process {pid} (the server on {})",
            dir.display()
        );
    }
    println!(
        "Stopping runnel server (pid {pid}) on data directory {}",
        dir.display()
    );
    let deadline = Instant::now() + Duration::from_millis(args.timeout_ms);
    loop {
        match file.try_lock_shared() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(e)) => bail!("cannot lock {}: {e}", path.display()),
        }
        if Instant::now() >= deadline {
            bail!(
                "the runnel server (pid {pid}) on {} has not stopped after {} ms",
                dir.display(),
                args.timeout_ms
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
