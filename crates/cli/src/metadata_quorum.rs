//! `runnel metadata-quorum`: the flags and output of Kafka's `kafka-metadata-quorum.sh`, through
//! the DescribeQuorum API (which any broker answers, forwarding to the active controller).

use anyhow::{bail, Result};
use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::describe_quorum_response::ReplicaState;
use kafka_protocol::messages::{DescribeQuorumRequest, DescribeQuorumResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use runnel_client::{check, Client, Target};

/// The metadata log's topic, as KRaft names it.
const METADATA_TOPIC: &str = "__cluster_metadata";

#[derive(clap::Args, Debug, Clone)]
pub struct MetadataQuorumArgs {
    /// The Kafka server(s) to connect to (HOST:PORT,...).
    #[arg(long, default_value = "localhost:9092")]
    pub bootstrap_server: String,
    /// Client properties file: security.protocol, sasl.mechanism, sasl.jaas.config, ssl.*,
    /// client.id (Kafka's client property names).
    #[arg(long, value_name = "FILE")]
    pub command_config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: QuorumCommand,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum QuorumCommand {
    /// Describe the metadata quorum.
    Describe(DescribeArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct DescribeArgs {
    /// Leader, epoch, high watermark, voters and observers.
    #[arg(long)]
    pub status: bool,
    /// Every voter's and observer's log end offset and lag.
    #[arg(long)]
    pub replication: bool,
    /// With --replication: print the human-readable timestamps as ages ("5 ms ago").
    #[arg(long)]
    pub human_readable: bool,
}

pub async fn run(args: MetadataQuorumArgs) -> Result<()> {
    let QuorumCommand::Describe(d) = &args.command;
    if d.status == d.replication {
        bail!("exactly one of --status or --replication is required");
    }
    let mut client = Client::connect(
        &args.bootstrap_server,
        &crate::util::client_config(
            "runnel-metadata-quorum",
            &[args.command_config.as_deref()],
            &[],
        )?,
    )
    .await?;
    let req = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
        .with_topic_name(TopicName(StrBytes::from_static_str(METADATA_TOPIC)))
        .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
    let resp: DescribeQuorumResponse = client.send_to(Target::Any, &req).await?;
    let quorum = Quorum::from_response(&resp)?;
    let cluster_id = client.meta.cluster_id.clone().unwrap_or_default();
    let now = runnel_client::produce::now_ms();
    let text = if d.status {
        quorum.status(&cluster_id)
    } else {
        quorum.replication(d.human_readable, now)
    };
    print!("{text}");
    Ok(())
}

/// The fields of a DescribeQuorum answer the two views print.
#[derive(Debug, Clone, PartialEq)]
struct Quorum {
    leader_id: i32,
    leader_epoch: i32,
    high_watermark: i64,
    voters: Vec<Replica>,
    observers: Vec<Replica>,
}

#[derive(Debug, Clone, PartialEq)]
struct Replica {
    id: i32,
    log_end_offset: i64,
    last_fetch_timestamp: i64,
    last_caught_up_timestamp: i64,
}

impl From<&ReplicaState> for Replica {
    fn from(r: &ReplicaState) -> Self {
        Replica {
            id: r.replica_id.0,
            log_end_offset: r.log_end_offset,
            last_fetch_timestamp: r.last_fetch_timestamp,
            last_caught_up_timestamp: r.last_caught_up_timestamp,
        }
    }
}

impl Quorum {
    fn from_response(resp: &DescribeQuorumResponse) -> Result<Quorum> {
        check(resp.error_code, resp.error_message.as_ref())?;
        let Some(p) = resp
            .topics
            .iter()
            .filter(|t| t.topic_name.0.as_str() == METADATA_TOPIC)
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == 0)
        else {
            bail!("the broker's DescribeQuorum answer has no {METADATA_TOPIC} partition 0");
        };
        check(p.error_code, p.error_message.as_ref())?;
        Ok(Quorum {
            leader_id: p.leader_id.0,
            leader_epoch: p.leader_epoch,
            high_watermark: p.high_watermark,
            voters: p.current_voters.iter().map(Replica::from).collect(),
            observers: p.observers.iter().map(Replica::from).collect(),
        })
    }

    fn leader(&self) -> Option<&Replica> {
        self.voters.iter().find(|v| v.id == self.leader_id)
    }

    /// kafka-metadata-quorum.sh's `describe --status`.
    fn status(&self, cluster_id: &str) -> String {
        let leader_leo = self
            .leader()
            .map_or(self.high_watermark, |l| l.log_end_offset);
        let max_lag = self
            .voters
            .iter()
            .map(|v| lag(leader_leo, v.log_end_offset))
            .max()
            .unwrap_or(0);
        // How far the slowest voter's last catch-up is behind the leader's.
        let max_lag_time = match self.leader() {
            Some(l) if l.last_caught_up_timestamp >= 0 => self
                .voters
                .iter()
                .filter(|v| v.last_caught_up_timestamp >= 0)
                .map(|v| l.last_caught_up_timestamp - v.last_caught_up_timestamp)
                .max()
                .unwrap_or(-1),
            _ => -1,
        };
        let ids = |rs: &[Replica]| {
            let v: Vec<String> = rs.iter().map(|r| r.id.to_string()).collect();
            format!("[{}]", v.join(","))
        };
        let rows = [
            ("ClusterId:", cluster_id.to_string()),
            ("LeaderId:", self.leader_id.to_string()),
            ("LeaderEpoch:", self.leader_epoch.to_string()),
            ("HighWatermark:", self.high_watermark.to_string()),
            ("MaxFollowerLag:", max_lag.to_string()),
            ("MaxFollowerLagTimeMs:", max_lag_time.to_string()),
            ("CurrentVoters:", ids(&self.voters)),
            ("CurrentObservers:", ids(&self.observers)),
        ];
        rows.iter().map(|(k, v)| format!("{k:<24}{v}\n")).collect()
    }

    /// kafka-metadata-quorum.sh's `describe --replication`: the leader first, then the other
    /// voters, then observers.
    fn replication(&self, human: bool, now_ms: i64) -> String {
        let leader_leo = self
            .leader()
            .map_or(self.high_watermark, |l| l.log_end_offset);
        let mut rows: Vec<(&Replica, &str)> = Vec::new();
        rows.extend(self.leader().map(|l| (l, "Leader")));
        rows.extend(
            self.voters
                .iter()
                .filter(|v| v.id != self.leader_id)
                .map(|v| (v, "Follower")),
        );
        rows.extend(self.observers.iter().map(|o| (o, "Observer")));
        let ts = |t: i64| match (human, t) {
            (_, t) if t < 0 => "-1".to_string(),
            (true, t) => format!("{} ms ago", (now_ms - t).max(0)),
            (false, t) => t.to_string(),
        };
        let mut out = format!(
            "{:<8}{:<16}{:<8}{:<24}{:<24}{}\n",
            "NodeId",
            "LogEndOffset",
            "Lag",
            "LastFetchTimestamp",
            "LastCaughtUpTimestamp",
            "Status"
        );
        for (r, status) in rows {
            out.push_str(&format!(
                "{:<8}{:<16}{:<8}{:<24}{:<24}{}\n",
                r.id,
                r.log_end_offset,
                lag(leader_leo, r.log_end_offset),
                ts(r.last_fetch_timestamp),
                ts(r.last_caught_up_timestamp),
                status
            ));
        }
        out
    }
}

/// Entries a replica is behind the leader; an unknown offset (-1) counts as all of them.
fn lag(leader_leo: i64, leo: i64) -> i64 {
    if leo < 0 {
        leader_leo.max(0)
    } else {
        (leader_leo - leo).max(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::describe_quorum_response::{
        PartitionData as RespPartition, TopicData as RespTopic,
    };
    use kafka_protocol::messages::BrokerId;

    fn rs(id: i32, leo: i64, fetch: i64, caught: i64) -> ReplicaState {
        ReplicaState::default()
            .with_replica_id(BrokerId(id))
            .with_log_end_offset(leo)
            .with_last_fetch_timestamp(fetch)
            .with_last_caught_up_timestamp(caught)
    }

    fn response(error: i16) -> DescribeQuorumResponse {
        DescribeQuorumResponse::default().with_topics(vec![RespTopic::default()
            .with_topic_name(TopicName(StrBytes::from_static_str(METADATA_TOPIC)))
            .with_partitions(vec![RespPartition::default()
                .with_error_code(error)
                .with_leader_id(BrokerId(2))
                .with_leader_epoch(7)
                .with_high_watermark(120)
                .with_current_voters(vec![
                    rs(1, 118, 1_000, 900),
                    rs(2, 120, -1, 1_000),
                    rs(3, -1, -1, -1),
                ])
                .with_observers(vec![rs(4, 120, 990, 990)])])])
    }

    #[test]
    fn status_reports_leader_lag_and_members() {
        let q = Quorum::from_response(&response(0)).unwrap();
        let s = q.status("abc");
        assert!(s.contains("ClusterId:              abc\n"), "{s}");
        assert!(s.contains("LeaderId:               2\n"), "{s}");
        assert!(s.contains("LeaderEpoch:            7\n"), "{s}");
        assert!(s.contains("HighWatermark:          120\n"), "{s}");
        // Voter 3 has no known offset: it lags by the whole log.
        assert!(s.contains("MaxFollowerLag:         120\n"), "{s}");
        assert!(s.contains("MaxFollowerLagTimeMs:   100\n"), "{s}");
        assert!(s.contains("CurrentVoters:          [1,2,3]\n"), "{s}");
        assert!(s.contains("CurrentObservers:       [4]\n"), "{s}");
    }

    #[test]
    fn replication_lists_leader_first_then_followers_then_observers() {
        let q = Quorum::from_response(&response(0)).unwrap();
        let r = q.replication(false, 2_000);
        let lines: Vec<&str> = r.lines().collect();
        assert_eq!(lines.len(), 5, "{r}");
        assert!(lines[0].starts_with("NodeId"));
        let cols = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        assert_eq!(cols(lines[1]), ["2", "120", "0", "-1", "1000", "Leader"]);
        assert_eq!(cols(lines[2]), ["1", "118", "2", "1000", "900", "Follower"]);
        assert_eq!(cols(lines[3]), ["3", "-1", "120", "-1", "-1", "Follower"]);
        assert_eq!(cols(lines[4]), ["4", "120", "0", "990", "990", "Observer"]);
        let h = q.replication(true, 2_000);
        assert!(h.contains("1000 ms ago"), "{h}");
    }

    #[test]
    fn errors_become_messages() {
        let e = Quorum::from_response(&response(41)).unwrap_err();
        assert!(format!("{e:#}").contains("NOT_CONTROLLER"), "{e:#}");
        let empty = DescribeQuorumResponse::default();
        assert!(Quorum::from_response(&empty).is_err());
    }
}
