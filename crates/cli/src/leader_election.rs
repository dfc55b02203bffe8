//! `runnel leader-election`: the flags and output of Kafka's `kafka-leader-election.sh`, through
//! the ElectLeaders API (any Runnel broker forwards it to the active controller).
//!
//! Prints "Successfully completed leader election (PREFERRED) for partitions t-0, t-1" for the
//! elected partitions and "Valid replica already elected for partitions ..." for those that needed
//! no election, and fails (non-zero exit) naming every partition that could not be elected.

use std::fmt;

use anyhow::{bail, Result};
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::{ApiKey, ElectLeadersRequest, ElectLeadersResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use runnel_client::{check, Client, KafkaError, Target, REQUEST_TIMEOUT};

#[derive(clap::Args, Debug, Clone)]
pub struct LeaderElectionArgs {
    /// The Kafka server(s) to connect to (HOST:PORT,...).
    #[arg(long, default_value = "localhost:9092")]
    pub bootstrap_server: String,
    /// Client properties file: security.protocol, sasl.mechanism, sasl.jaas.config, ssl.*,
    /// client.id (Kafka's client property names).
    #[arg(
        long,
        value_name = "FILE",
        alias = "admin.config",
        alias = "admin-config"
    )]
    pub command_config: Option<std::path::PathBuf>,
    /// PREFERRED elects each partition's first replica when it is in sync; UNCLEAN elects any
    /// live replica of a leaderless partition (committed records may be lost).
    #[arg(long, value_parser = parse_election_type)]
    pub election_type: Election,
    /// Elect leaders for every partition of every topic.
    #[arg(long, conflicts_with_all = ["topic", "partition"])]
    pub all_topic_partitions: bool,
    /// The topic of the partition to elect a leader for (with --partition).
    #[arg(long, requires = "partition")]
    pub topic: Option<String>,
    /// The partition to elect a leader for (with --topic).
    #[arg(long, requires = "topic")]
    pub partition: Option<i32>,
}

/// The election type, as Kafka's tool names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Election {
    Preferred,
    Unclean,
}

impl Election {
    fn wire(self) -> i8 {
        match self {
            Election::Preferred => 0,
            Election::Unclean => 1,
        }
    }
}

impl fmt::Display for Election {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Election::Preferred => "PREFERRED",
            Election::Unclean => "UNCLEAN",
        })
    }
}

fn parse_election_type(s: &str) -> Result<Election, String> {
    match s.to_ascii_uppercase().as_str() {
        "PREFERRED" => Ok(Election::Preferred),
        "UNCLEAN" => Ok(Election::Unclean),
        _ => Err(format!(
            "unknown election type {s:?}: expected PREFERRED or UNCLEAN"
        )),
    }
}

/// The partitions the flags select: `None` for every partition.
fn selection(args: &LeaderElectionArgs) -> Result<Option<Vec<TopicPartitions>>> {
    match (&args.topic, args.partition, args.all_topic_partitions) {
        (Some(topic), Some(partition), false) => Ok(Some(vec![TopicPartitions::default()
            .with_topic(TopicName(StrBytes::from_string(topic.clone())))
            .with_partitions(vec![partition])])),
        (None, None, true) => Ok(None),
        _ => bail!(
            "one of --all-topic-partitions or --topic with --partition is required \
             (and they cannot be combined)"
        ),
    }
}

pub async fn run(args: LeaderElectionArgs) -> Result<()> {
    let partitions = selection(&args)?;
    let mut client = Client::connect(
        &args.bootstrap_server,
        &crate::util::client_config(
            "runnel-leader-election",
            &[args.command_config.as_deref()],
            &[],
        )?,
    )
    .await?;
    let version = client
        .conn(Target::Controller)
        .await?
        .version(ApiKey::ElectLeaders)?;
    if version == 0 && args.election_type == Election::Unclean {
        bail!("the broker supports only ElectLeaders v0, which has no unclean elections");
    }
    let timeout_ms = i32::try_from(REQUEST_TIMEOUT.as_millis() * 2 / 3).unwrap_or(20_000);
    let req = ElectLeadersRequest::default()
        .with_election_type(args.election_type.wire())
        .with_topic_partitions(partitions)
        .with_timeout_ms(timeout_ms);
    let resp: ElectLeadersResponse = client.send_to(Target::Controller, &req).await?;
    let outcome = Outcome::from_response(&resp)?;
    print!("{}", outcome.report(args.election_type));
    outcome.result()
}

/// The partitions of an answer, sorted into Kafka's three groups (in answer order).
#[derive(Debug, Default, PartialEq)]
struct Outcome {
    succeeded: Vec<String>,
    noop: Vec<String>,
    failed: Vec<(String, KafkaError)>,
}

impl Outcome {
    fn from_response(resp: &ElectLeadersResponse) -> Result<Outcome> {
        check(resp.error_code, None)?;
        let mut out = Outcome::default();
        for topic in &resp.replica_election_results {
            for p in &topic.partition_result {
                let name = format!("{}-{}", topic.topic.0.as_str(), p.partition_id);
                match check(p.error_code, p.error_message.as_ref()) {
                    Ok(()) => out.succeeded.push(name),
                    Err(e) if e.code == ResponseError::ElectionNotNeeded.code() => {
                        out.noop.push(name)
                    }
                    Err(e) => out.failed.push((name, e)),
                }
            }
        }
        Ok(out)
    }

    /// What kafka-leader-election.sh prints.
    fn report(&self, election: Election) -> String {
        let mut text = String::new();
        if !self.succeeded.is_empty() {
            text.push_str(&format!(
                "Successfully completed leader election ({election}) for partitions {}\n",
                self.succeeded.join(", ")
            ));
        }
        if !self.noop.is_empty() {
            text.push_str(&format!(
                "Valid replica already elected for partitions {}\n",
                self.noop.join(", ")
            ));
        }
        for (name, e) in &self.failed {
            text.push_str(&format!(
                "Error completing leader election ({election}) for partition: {name}: {e}\n"
            ));
        }
        text
    }

    fn result(&self) -> Result<()> {
        if self.failed.is_empty() {
            Ok(())
        } else {
            bail!("{} replica(s) could not be elected", self.failed.len())
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use kafka_protocol::messages::elect_leaders_response::{
        PartitionResult, ReplicaElectionResult,
    };

    use super::*;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        args: LeaderElectionArgs,
    }

    fn parse(argv: &[&str]) -> Result<LeaderElectionArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("runnel").chain(argv.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn flags_follow_kafkas_tool() {
        let a = parse(&["--election-type", "preferred", "--all-topic-partitions"]).unwrap();
        assert_eq!(a.election_type, Election::Preferred);
        assert_eq!(selection(&a).unwrap(), None);
        let a = parse(&[
            "--election-type",
            "UNCLEAN",
            "--topic",
            "t",
            "--partition",
            "3",
        ])
        .unwrap();
        assert_eq!(a.election_type, Election::Unclean);
        let tps = selection(&a).unwrap().unwrap();
        assert_eq!(tps.len(), 1);
        assert_eq!(tps[0].topic.0.as_str(), "t");
        assert_eq!(tps[0].partitions, vec![3]);
        // Invalid combinations.
        assert!(parse(&["--election-type", "other", "--all-topic-partitions"]).is_err());
        assert!(parse(&["--all-topic-partitions"]).is_err());
        assert!(parse(&["--election-type", "preferred", "--topic", "t"]).is_err());
        assert!(parse(&[
            "--election-type",
            "preferred",
            "--all-topic-partitions",
            "--topic",
            "t",
            "--partition",
            "0"
        ])
        .is_err());
        let none = parse(&["--election-type", "preferred"]).unwrap();
        assert!(selection(&none).is_err());
    }

    fn answer(results: &[(&str, &[(i32, i16)])]) -> ElectLeadersResponse {
        ElectLeadersResponse::default().with_replica_election_results(
            results
                .iter()
                .map(|(t, ps)| {
                    ReplicaElectionResult::default()
                        .with_topic(TopicName(StrBytes::from_string(t.to_string())))
                        .with_partition_result(
                            ps.iter()
                                .map(|&(p, code)| {
                                    PartitionResult::default()
                                        .with_partition_id(p)
                                        .with_error_code(code)
                                        .with_error_message(
                                            (code != 0).then(|| StrBytes::from_static_str("why")),
                                        )
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
    }

    #[test]
    fn output_matches_kafka_leader_election() {
        let o = Outcome::from_response(&answer(&[
            ("foo", &[(0, 0), (1, 84)]),
            ("bar", &[(0, 0), (2, 84)]),
        ]))
        .unwrap();
        assert_eq!(
            o.report(Election::Preferred),
            "Successfully completed leader election (PREFERRED) for partitions foo-0, bar-0\n\
             Valid replica already elected for partitions foo-1, bar-2\n"
        );
        o.result().unwrap();

        let o = Outcome::from_response(&answer(&[("t", &[(0, 80), (1, 0)])])).unwrap();
        assert_eq!(
            o.report(Election::Unclean),
            "Successfully completed leader election (UNCLEAN) for partitions t-1\n\
             Error completing leader election (UNCLEAN) for partition: t-0: \
             PREFERRED_LEADER_NOT_AVAILABLE: why\n"
        );
        let err = o.result().unwrap_err().to_string();
        assert_eq!(err, "1 replica(s) could not be elected");

        // A request-level error fails the command.
        let failed = ElectLeadersResponse::default().with_error_code(41);
        let err = Outcome::from_response(&failed).unwrap_err().to_string();
        assert!(err.contains("NOT_CONTROLLER"), "{err}");
        // Nothing to report: nothing printed, success.
        let o = Outcome::from_response(&answer(&[])).unwrap();
        assert_eq!(o.report(Election::Preferred), "");
        o.result().unwrap();
    }
}
