//! `runnel health`: a readiness probe for containers and scripts. Connects to ONE broker (no
//! bootstrap fan-out: the probe is about that broker), negotiates API versions, asks for
//! cluster metadata and checks that a controller is known and, with `--node-id`, that the node
//! is registered and unfenced (Metadata lists live brokers only). Exit status 0 when healthy,
//! 1 with a one-line reason otherwise; the Docker image's HEALTHCHECK and the Kubernetes
//! probes run it.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use kafka_protocol::messages::{MetadataRequest, MetadataResponse};

use runnel_client::Connection;

#[derive(clap::Args, Debug, Clone)]
pub struct HealthArgs {
    /// The broker to probe (HOST:PORT).
    #[arg(long, env = "RUNNEL_HEALTH_SERVER", default_value = "localhost:9092")]
    pub bootstrap_server: String,
    /// Also require this node id to be a registered, unfenced broker.
    #[arg(long, env = "RUNNEL_NODE_ID")]
    pub node_id: Option<i32>,
    /// Client properties file: security.protocol, sasl.mechanism, sasl.jaas.config, ssl.*,
    /// client.id (Kafka's client property names).
    #[arg(long, value_name = "FILE")]
    pub command_config: Option<std::path::PathBuf>,
    /// Give up after this many milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,
}

pub async fn run(args: HealthArgs) -> Result<()> {
    let addr = args.bootstrap_server.trim().to_string();
    let config =
        crate::util::client_config("runnel-health", &[args.command_config.as_deref()], &[])?;
    let probe = async {
        let mut conn = Connection::connect(&addr, &config).await?;
        let mut req = MetadataRequest::default();
        req.topics = Some(Vec::new());
        req.allow_auto_topic_creation = false;
        let resp: MetadataResponse = conn.request(&req).await?;
        Ok::<_, anyhow::Error>(resp)
    };
    let resp = tokio::time::timeout(Duration::from_millis(args.timeout_ms), probe)
        .await
        .with_context(|| format!("{addr}: no answer within {} ms", args.timeout_ms))??;
    let live: Vec<i32> = resp.brokers.iter().map(|b| b.node_id.0).collect();
    let verdict = check(resp.controller_id.0, &live, args.node_id);
    match verdict {
        Ok(()) => {
            println!(
                "healthy: {addr} controller {} live brokers {live:?}",
                resp.controller_id.0
            );
            Ok(())
        }
        Err(reason) => bail!("{addr}: {reason}"),
    }
}

/// The verdict on a Metadata answer.
fn check(controller_id: i32, live: &[i32], node_id: Option<i32>) -> Result<(), String> {
    if controller_id < 0 {
        return Err("no active controller known (is a quorum of voters up?)".into());
    }
    if let Some(id) = node_id {
        if !live.contains(&id) {
            return Err(format!(
                "node {id} is not a live broker yet (live: {live:?}); it is starting, catching up or fenced"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn verdicts() {
        assert!(check(1, &[1, 2, 3], Some(2)).is_ok());
        assert!(check(1, &[1, 3], None).is_ok());
        assert!(check(-1, &[1], None).unwrap_err().contains("controller"));
        assert!(check(1, &[1, 3], Some(2)).unwrap_err().contains("node 2"));
    }
}
