//! Level 76: `runnel transactions` (the subcommands of `kafka-transactions.sh`) and
//! `runnel console-consumer --isolation-level` against a real `runnel server`.
//!
//! - `open_transaction_until_its_commit`: a confluent-kafka (librdkafka) transactional producer
//!   writes three plain records and then three records in a transaction it leaves open. While it
//!   is open: `list` shows the transactional id as Ongoing at coordinator 1 (and
//!   `--duration-filter` keeps or drops it by age), `describe` shows Ongoing, the producer id and
//!   the partition, `describe-producers` shows the producer with the transaction's first offset,
//!   `find-hanging` does not report it (its coordinator will end it), and `console-consumer
//!   --isolation-level read_committed` prints only the plain records while read_uncommitted (the
//!   default, and explicitly) prints all six. After the producer commits, `describe` shows
//!   CompleteCommit and read_committed prints all six.
//! - `hanging_transaction_and_errors`: with `transaction.partition.verification.enable=false`, a
//!   transactional batch produced with a producer id no coordinator knows (a raw Produce) leaves
//!   a transaction open that nothing will end;
//!   `find-hanging` reports exactly it (topic, partition, producer, start offset, age) by broker
//!   and by topic and partition, and not below its age. `abort` refuses bad flags, a start
//!   offset no transaction has and an old producer epoch, then aborts it by its start offset
//!   (find-hanging no longer reports it, the last stable offset reaches the log end); an
//!   unknown transactional id, a missing topic or partition and bad flags exit non-zero with
//!   Kafka's messages; `--command-config` is read.
//! - `authorization_failures`: with StandardAuthorizer and SCRAM over TLS, a user without ACLs
//!   is refused the transactional id's coordinator, a partition's producers and an abort, with
//!   Kafka's messages, while the super user describes them.
//!
//! A missing python3 or confluent-kafka is a failure, not a skip (install them with
//! `scripts/install-test-deps.sh`); `RUNNEL_SKIP_CLIENTS=confluent` skips the first test.

mod common;
mod security_util;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::{create_topic, negotiate, run_with_timeout, Conn, Server};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, TopicName, TransactionalId};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use security_util::{write_properties, Certs, SecureServer, Spec, USERS};

const TOPIC: &str = "txn-cli";
const TXN_ID: &str = "cli-open";
/// The producer id of the hanging transaction: far above any id a broker hands out here.
const GHOST_PID: i64 = 9_000_000_000;
/// How old the hanging transaction's records claim to be.
const GHOST_AGE_MIN: i64 = 20;

/// One node with a one-replica transaction log.
const ONE_NODE: &[&str] = &[
    "transaction.state.log.num.partitions=3",
    "transaction.state.log.replication.factor=1",
    "transaction.state.log.min.isr=1",
];

/// Writes `before-0..2` to the partition with a plain producer, then, with a transactional one,
/// begins a transaction, writes `open-0..2` to the same partition, flushes and prints `OPEN
/// <producer...>`; commits when a `commit` line arrives on stdin and prints `COMMITTED`.
const OPEN_TXN_PY: &str = r#"
import sys
from confluent_kafka import Producer
bootstrap, txn_id, topic, partition = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
plain = Producer({"bootstrap.servers": bootstrap})
for i in range(3):
    plain.produce(topic, value=("before-%d" % i).encode(), partition=partition)
if plain.flush(30) != 0:
    print("FAILED plain flush", flush=True)
    sys.exit(1)
p = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id,
              "transaction.timeout.ms": 600000})
p.init_transactions(60)
p.begin_transaction()
for i in range(3):
    p.produce(topic, value=("open-%d" % i).encode(), partition=partition)
if p.flush(30) != 0:
    print("FAILED transactional flush", flush=True)
    sys.exit(1)
print("OPEN", flush=True)
for line in sys.stdin:
    if line.strip() == "commit":
        p.commit_transaction(60)
        print("COMMITTED", flush=True)
"#;

/// The python producer; killed when dropped.
struct OpenTxn {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl OpenTxn {
    fn start(bootstrap: &str) -> OpenTxn {
        let mut child = Command::new("python3")
            .args(["-c", OPEN_TXN_PY, bootstrap, TXN_ID, TOPIC, "0"])
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run python3");
        let (tx, lines) = channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            });
        }
        let stdin = child.stdin.take();
        OpenTxn {
            child,
            stdin,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for the line `want`; panics with everything the program printed otherwise.
    fn wait_for(&mut self, want: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = line.trim() == want;
                    self.seen.push(line);
                    if done {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "the transactional producer did not print {want} within {timeout:?}; it printed:\n{}",
            self.seen.join("\n")
        );
    }

    fn commit(&mut self) {
        let stdin = self.stdin.as_mut().expect("stdin");
        stdin.write_all(b"commit\n").unwrap();
        stdin.flush().unwrap();
        self.wait_for("COMMITTED", Duration::from_secs(60));
    }
}

impl Drop for OpenTxn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `runnel ARGS`; (exit ok, stdout and stderr).
fn runnel(args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runnel"));
    cmd.args(args);
    run_with_timeout(&mut cmd, Duration::from_secs(90))
}

/// `runnel transactions --bootstrap-server BOOTSTRAP ARGS`, which must succeed; the rows of its
/// table (cells trimmed), header first.
fn txn_table(bootstrap: &str, args: &[&str]) -> Vec<Vec<String>> {
    let mut all = vec!["transactions", "--bootstrap-server", bootstrap];
    all.extend_from_slice(args);
    let (ok, out) = runnel(&all);
    assert!(ok, "runnel {all:?} failed:\n{out}");
    rows(&out)
}

/// The lines of a kafka-transactions.sh table: every cell is followed by a tab.
fn rows(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .filter(|l| l.ends_with('\t'))
        .map(|l| {
            l.trim_end_matches('\t')
                .split('\t')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

/// `runnel transactions ... ARGS` that must fail with `expect` in its output.
fn txn_fails(bootstrap: &str, args: &[&str], expect: &str) -> String {
    let mut all = vec!["transactions", "--bootstrap-server", bootstrap];
    all.extend_from_slice(args);
    let (ok, out) = runnel(&all);
    assert!(!ok, "runnel {all:?} should have failed:\n{out}");
    assert!(
        out.contains(expect),
        "runnel {all:?}: expected '{expect}' in:\n{out}"
    );
    out
}

/// The values `runnel console-consumer` prints from partition 0 of TOPIC, from the beginning,
/// with `extra` flags, until `count` arrived or 3 s passed without one.
fn consume(bootstrap: &str, extra: &[&str], count: Option<usize>) -> Vec<String> {
    let max = count.map(|c| c.to_string());
    let mut args = vec![
        "console-consumer",
        "--bootstrap-server",
        bootstrap,
        "--topic",
        TOPIC,
        "--partition",
        "0",
        "--offset",
        "earliest",
        "--timeout-ms",
        "3000",
    ];
    if let Some(m) = &max {
        args.extend(["--max-messages", m.as_str()]);
    }
    args.extend_from_slice(extra);
    let (ok, out) = runnel(&args);
    assert!(ok, "runnel {args:?} failed:\n{out}");
    out.lines()
        .filter(|l| l.starts_with("before-") || l.starts_with("open-"))
        .map(str::to_string)
        .collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn open_transaction_until_its_commit() {
    if common::client_skipped("confluent") {
        eprintln!("skipping: confluent listed in RUNNEL_SKIP_CLIENTS");
        return;
    }
    common::require_tool("python3", "confluent");
    let server = Server::start_with(ONE_NODE);
    create_topic(server.socket_addr(), TOPIC, 2).unwrap();
    let bootstrap = server.addr();
    let mut producer = OpenTxn::start(&bootstrap);
    producer.wait_for("OPEN", Duration::from_secs(90));

    // list: the transactional id, its coordinator (the only broker), its producer, Ongoing.
    let list = txn_table(&bootstrap, &["list"]);
    assert_eq!(
        list[0],
        strings(&[
            "TransactionalId",
            "Coordinator",
            "ProducerId",
            "TransactionState"
        ])
    );
    let row = list
        .iter()
        .find(|r| r[0] == TXN_ID)
        .unwrap_or_else(|| panic!("list does not show {TXN_ID}: {list:?}"));
    assert_eq!(
        (row[1].as_str(), row[3].as_str()),
        ("1", "Ongoing"),
        "{row:?}"
    );
    let pid: i64 = row[2].parse().expect("producer id");
    assert!(pid >= 0);
    // The global flags also come after the subcommand; the duration filter keeps a
    // transaction older than it and drops a younger one.
    let (ok, out) = runnel(&[
        "transactions",
        "list",
        "--bootstrap-server",
        &bootstrap,
        "--duration-filter",
        "0",
    ]);
    assert!(ok && rows(&out).iter().any(|r| r[0] == TXN_ID), "{out}");
    let young = txn_table(&bootstrap, &["list", "--duration-filter", "3600000"]);
    assert_eq!(young.len(), 1, "an hour-old filter kept rows: {young:?}");

    // describe: Ongoing, the same producer, the partition written, a start time.
    let describe = txn_table(&bootstrap, &["describe", "--transactional-id", TXN_ID]);
    assert_eq!(describe.len(), 2, "{describe:?}");
    assert_eq!(
        describe[0],
        strings(&[
            "CoordinatorId",
            "TransactionalId",
            "ProducerId",
            "ProducerEpoch",
            "TransactionState",
            "TransactionTimeoutMs",
            "CurrentTransactionStartTimeMs",
            "TransactionDurationMs",
            "TopicPartitions"
        ])
    );
    let d = &describe[1];
    assert_eq!(d[0], "1");
    assert_eq!(d[1], TXN_ID);
    assert_eq!(d[2], pid.to_string());
    assert_eq!(d[4], "Ongoing");
    assert_eq!(d[5], "600000");
    let start: i64 = d[6].parse().expect("a start time while open");
    let duration: i64 = d[7].parse().expect("a duration while open");
    assert!(start > 0 && (0..600_000).contains(&duration), "{d:?}");
    assert_eq!(d[8], format!("{TOPIC}-0"));
    let epoch = d[3].clone();

    // describe-producers: the transactional producer, its transaction starting after the three
    // plain records; the plain (idempotent) producer without one.
    let producers = txn_table(
        &bootstrap,
        &["describe-producers", "--topic", TOPIC, "--partition", "0"],
    );
    assert_eq!(
        producers[0],
        strings(&[
            "ProducerId",
            "ProducerEpoch",
            "LatestCoordinatorEpoch",
            "LastSequence",
            "LastTimestamp",
            "CurrentTransactionStartOffset"
        ])
    );
    let p = producers
        .iter()
        .find(|r| r[0] == pid.to_string())
        .unwrap_or_else(|| panic!("producer {pid} not described: {producers:?}"));
    assert_eq!(p[1], epoch, "{p:?}");
    assert_eq!(p[3], "2", "three records, sequences 0-2: {p:?}");
    assert!(p[4].parse::<i64>().unwrap() > 0, "{p:?}");
    assert_eq!(p[5], "3", "the transaction starts after before-0..2: {p:?}");
    for other in producers.iter().skip(1).filter(|r| r[0] != pid.to_string()) {
        assert_eq!(other[5], "None", "{producers:?}");
    }
    // The same from the leader named explicitly.
    let at_broker = txn_table(
        &bootstrap,
        &[
            "describe-producers",
            "--topic",
            TOPIC,
            "--partition",
            "0",
            "--broker-id",
            "1",
        ],
    );
    assert!(at_broker
        .iter()
        .any(|r| r[0] == pid.to_string() && r[5] == "3"));

    // find-hanging: the open transaction is its coordinator's, with this partition: not
    // hanging, even when every open transaction is old enough to be a candidate.
    for extra in [&[][..], &["--max-transaction-timeout", "0"][..]] {
        let mut args = vec!["find-hanging", "--broker-id", "1"];
        args.extend_from_slice(extra);
        let hanging = txn_table(&bootstrap, &args);
        assert_eq!(hanging.len(), 1, "{args:?} reported: {hanging:?}");
        assert_eq!(hanging[0][0], "Topic");
        assert_eq!(hanging[0][7], "Duration(min)");
    }

    // console-consumer: read_committed stops at the open transaction; read_uncommitted (the
    // default) reads through it.
    let before = strings(&["before-0", "before-1", "before-2"]);
    let all = strings(&[
        "before-0", "before-1", "before-2", "open-0", "open-1", "open-2",
    ]);
    assert_eq!(
        consume(&bootstrap, &["--isolation-level", "read_committed"], None),
        before
    );
    assert_eq!(consume(&bootstrap, &[], Some(6)), all);
    assert_eq!(
        consume(
            &bootstrap,
            &["--isolation-level", "read_uncommitted"],
            Some(6)
        ),
        all
    );
    let (ok, out) = runnel(&[
        "console-consumer",
        "--bootstrap-server",
        &bootstrap,
        "--topic",
        TOPIC,
        "--isolation-level",
        "dirty",
    ]);
    assert!(
        !ok && out.contains("invalid isolation level 'dirty'"),
        "{out}"
    );

    // Commit: the coordinator completes the transaction and its records become committed.
    producer.commit();
    let deadline = Instant::now() + Duration::from_secs(20);
    let d = loop {
        let describe = txn_table(&bootstrap, &["describe", "--transactional-id", TXN_ID]);
        let d = describe[1].clone();
        if d[4] == "CompleteCommit" || Instant::now() > deadline {
            break d;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(d[4], "CompleteCommit", "{d:?}");
    assert_eq!(d[2], pid.to_string());
    assert_eq!(d[8], "", "no partitions once complete: {d:?}");
    let list = txn_table(&bootstrap, &["list"]);
    assert!(
        list.iter()
            .any(|r| r[0] == TXN_ID && r[3] == "CompleteCommit"),
        "{list:?}"
    );
    let producers = txn_table(
        &bootstrap,
        &["describe-producers", "--topic", TOPIC, "--partition", "0"],
    );
    let p = producers.iter().find(|r| r[0] == pid.to_string()).unwrap();
    assert_eq!(p[5], "None", "the transaction ended: {p:?}");
    assert_eq!(
        consume(
            &bootstrap,
            &["--isolation-level", "read_committed"],
            Some(6)
        ),
        all
    );
}

/// A transactional batch from producer GHOST_PID (epoch 0), whose records are GHOST_AGE_MIN
/// minutes old, to `partition`: it opens a transaction no coordinator knows.
fn produce_ghost(server: &Server, partition: i32) {
    let ts = runnel_client::produce::now_ms() - GHOST_AGE_MIN * 60_000;
    let records: Vec<Record> = (0..2)
        .map(|i| Record {
            transactional: true,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: GHOST_PID,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset: i,
            sequence: i as i32,
            timestamp: ts,
            key: None,
            value: Some(Bytes::from(format!("ghost-{i}"))),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    let mut conn = Conn::connect(server.socket_addr()).unwrap();
    let v = negotiate(&mut conn, ApiKey::Produce).unwrap().min(12);
    let req = ProduceRequest::default()
        .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("ghost"))))
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(buf.freeze()))])]);
    let resp = conn.request(v, &req).unwrap();
    let p = &resp.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 0, "ghost produce: {p:?}");
    assert_eq!(p.base_offset, 0);
}

/// Latest offset of `partition` under read_uncommitted and read_committed.
fn latest_offsets(server: &Server, partition: i32) -> (i64, i64) {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::{BrokerId, ListOffsetsRequest};
    let mut conn = Conn::connect(server.socket_addr()).unwrap();
    let mut out = [0i64; 2];
    for (i, isolation) in [0i8, 1].into_iter().enumerate() {
        let r = conn
            .request(
                4,
                &ListOffsetsRequest::default()
                    .with_replica_id(BrokerId(-1))
                    .with_isolation_level(isolation)
                    .with_topics(vec![ListOffsetsTopic::default()
                        .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                        .with_partitions(vec![ListOffsetsPartition::default()
                            .with_partition_index(partition)
                            .with_timestamp(-1)])]),
            )
            .unwrap();
        let p = &r.topics[0].partitions[0];
        assert_eq!(p.error_code, 0, "{p:?}");
        out[i] = p.offset;
    }
    (out[0], out[1])
}

#[test]
fn hanging_transaction_and_errors() {
    // Only without partition verification can a batch open a transaction its coordinator
    // does not know (as on a cluster where it is off, or before it existed).
    let mut sets = ONE_NODE.to_vec();
    sets.push("transaction.partition.verification.enable=false");
    let server = Server::start_with(&sets);
    create_topic(server.socket_addr(), TOPIC, 2).unwrap();
    let bootstrap = server.addr();
    produce_ghost(&server, 1);

    let producers = txn_table(
        &bootstrap,
        &["describe-producers", "--topic", TOPIC, "--partition", "1"],
    );
    assert_eq!(producers.len(), 2, "{producers:?}");
    assert_eq!(producers[1][0], GHOST_PID.to_string());
    assert_eq!(producers[1][2], "-1", "no marker yet: {producers:?}");
    assert_eq!(producers[1][5], "0", "{producers:?}");
    // No coordinator lists it.
    let list = txn_table(&bootstrap, &["list"]);
    assert_eq!(list.len(), 1, "{list:?}");

    // find-hanging: exactly the ghost's transaction, however the search is scoped.
    let expect_ghost = |hanging: &[Vec<String>]| {
        assert_eq!(
            hanging[0],
            strings(&[
                "Topic",
                "Partition",
                "ProducerId",
                "ProducerEpoch",
                "CoordinatorEpoch",
                "StartOffset",
                "LastTimestamp",
                "Duration(min)"
            ])
        );
        assert_eq!(hanging.len(), 2, "{hanging:?}");
        let h = &hanging[1];
        assert_eq!(
            h[..6],
            strings(&[TOPIC, "1", &GHOST_PID.to_string(), "0", "-1", "0"])[..],
            "{h:?}"
        );
        let age: i64 = h[7].parse().unwrap();
        assert!((GHOST_AGE_MIN..GHOST_AGE_MIN + 5).contains(&age), "{h:?}");
        let ts: i64 = h[6].parse().unwrap();
        assert!(ts < runnel_client::produce::now_ms() - (GHOST_AGE_MIN - 1) * 60_000);
    };
    expect_ghost(&txn_table(
        &bootstrap,
        &["find-hanging", "--broker-id", "1"],
    ));
    expect_ghost(&txn_table(&bootstrap, &["find-hanging", "--topic", TOPIC]));
    expect_ghost(&txn_table(
        &bootstrap,
        &["find-hanging", "--topic", TOPIC, "--partition", "1"],
    ));
    // Not on the other partition, not on another broker, not when younger than the bound.
    for args in [
        &["find-hanging", "--topic", TOPIC, "--partition", "0"][..],
        &["find-hanging", "--broker-id", "2"][..],
        &[
            "find-hanging",
            "--broker-id",
            "1",
            "--max-transaction-timeout",
            "30",
        ][..],
    ] {
        let hanging = txn_table(&bootstrap, args);
        assert_eq!(hanging.len(), 1, "{args:?}: {hanging:?}");
    }

    // --command-config is read (a client.id and the plaintext protocol here).
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("client.properties");
    std::fs::write(
        &config,
        "security.protocol=PLAINTEXT\nclient.id=txn-tool-test\n",
    )
    .unwrap();
    let config = config.display().to_string();
    expect_ghost(&txn_table(
        &bootstrap,
        &[
            "--command-config",
            &config,
            "find-hanging",
            "--broker-id",
            "1",
        ],
    ));
    let missing = dir.path().join("missing.properties").display().to_string();
    txn_fails(
        &bootstrap,
        &["--command-config", &missing, "list"],
        "missing.properties",
    );

    // abort: bad flag combinations and a start offset no transaction has are refused.
    txn_fails(
        &bootstrap,
        &[
            "abort",
            "--topic",
            TOPIC,
            "--partition",
            "1",
            "--start-offset",
            "0",
            "--producer-id",
            "1",
        ],
        "--start-offset cannot be used together with --producer-id",
    );
    txn_fails(
        &bootstrap,
        &[
            "abort",
            "--topic",
            TOPIC,
            "--partition",
            "1",
            "--producer-id",
            "1",
        ],
        "--producer-id needs --producer-epoch",
    );
    txn_fails(
        &bootstrap,
        &["abort", "--topic", TOPIC, "--partition", "1"],
        "abort needs either --start-offset",
    );
    txn_fails(
        &bootstrap,
        &[
            "abort",
            "--topic",
            TOPIC,
            "--partition",
            "1",
            "--start-offset",
            "1",
        ],
        &format!(
            "Could not find any open transactions starting at offset 1 on partition {TOPIC}-1"
        ),
    );
    // A marker from a producer epoch older than the partition's is refused by the leader.
    txn_fails(
        &bootstrap,
        &[
            "abort",
            "--topic",
            TOPIC,
            "--partition",
            "1",
            "--producer-id",
            &GHOST_PID.to_string(),
            "--producer-epoch=-1",
            "--coordinator-epoch",
            "0",
        ],
        "INVALID_PRODUCER_EPOCH",
    );
    // The ghost is still there: nothing was aborted.
    expect_ghost(&txn_table(
        &bootstrap,
        &["find-hanging", "--broker-id", "1"],
    ));
    // Aborted by its start offset: the marker ends it, and the last stable offset moves past it.
    txn_table(
        &bootstrap,
        &[
            "abort",
            "--topic",
            TOPIC,
            "--partition",
            "1",
            "--start-offset",
            "0",
        ],
    );
    let hanging = txn_table(&bootstrap, &["find-hanging", "--broker-id", "1"]);
    assert_eq!(hanging.len(), 1, "only the header is left: {hanging:?}");
    let producers = txn_table(
        &bootstrap,
        &["describe-producers", "--topic", TOPIC, "--partition", "1"],
    );
    assert_eq!(producers.len(), 2, "{producers:?}");
    assert_eq!(producers[1][0], GHOST_PID.to_string());
    assert_eq!(
        producers[1][5], "None",
        "no open transaction: {producers:?}"
    );
    // The last stable offset is past the marker: the log end (2 records and the marker).
    assert_eq!(latest_offsets(&server, 1), (3, 3));

    // Kafka's messages for what does not exist.
    txn_fails(
        &bootstrap,
        &["describe", "--transactional-id", "no-such-id"],
        "Failed to describe transaction state of transactional-id `no-such-id`: \
         DescribeTransactions request for transactionalId `no-such-id` failed because the ID \
         could not be found",
    );
    txn_fails(
        &bootstrap,
        &[
            "describe-producers",
            "--topic",
            "no-such-topic",
            "--partition",
            "0",
        ],
        "Failed to describe producers for partition no-such-topic-0 on leader",
    );
    txn_fails(
        &bootstrap,
        &["describe-producers", "--topic", TOPIC, "--partition", "7"],
        &format!("Failed to describe producers for partition {TOPIC}-7 on leader"),
    );
    txn_fails(
        &bootstrap,
        &["find-hanging", "--topic", TOPIC, "--partition", "7"],
        &format!("Partition {TOPIC}-7 does not exist"),
    );

    // Bad and missing flags.
    txn_fails(
        &bootstrap,
        &["find-hanging"],
        "requires either --topic or --broker-id",
    );
    txn_fails(
        &bootstrap,
        &["find-hanging", "--broker-id", "1", "--partition", "0"],
        "The --partition argument requires --topic to be provided",
    );
    txn_fails(&bootstrap, &["describe"], "--transactional-id");
    txn_fails(
        &bootstrap,
        &["describe-producers", "--topic", TOPIC],
        "--partition",
    );
    txn_fails(&bootstrap, &["abort", "--topic", TOPIC], "--partition");
    txn_fails(
        &bootstrap,
        &["find-hanging", "--broker-id", "one"],
        "invalid value 'one'",
    );
    txn_fails(&bootstrap, &["bogus"], "unrecognized subcommand");
    txn_fails(&bootstrap, &["list", "--no-such-flag"], "--no-such-flag");
    let (ok, out) = runnel(&["transactions"]);
    assert!(!ok, "no subcommand should fail:\n{out}");

    // A broker that is not there.
    let dead = format!("127.0.0.1:{}", common::free_port());
    txn_fails(
        &dead,
        &["list"],
        "could not connect to any bootstrap server",
    );
}

/// A client.properties for `user` over SASL_SSL with SCRAM-SHA-512.
fn scram_config(dir: &std::path::Path, certs: &Certs, user: &str) -> String {
    let password = USERS.iter().find(|(u, _)| *u == user).unwrap().1;
    let path = dir.join(format!("{user}.properties"));
    let props: Vec<(String, String)> = [
        ("security.protocol", "SASL_SSL".to_string()),
        ("sasl.mechanism", "SCRAM-SHA-512".into()),
        (
            "sasl.jaas.config",
            format!(
                "org.apache.kafka.common.security.scram.ScramLoginModule required \
                 username=\"{user}\" password=\"{password}\";"
            ),
        ),
        ("ssl.truststore.type", "PEM".into()),
        ("ssl.truststore.location", certs.ca()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    write_properties(&path, &props);
    path.display().to_string()
}

#[test]
fn authorization_failures() {
    let certs = Certs::get();
    let spec = Spec::with_acls(&certs, false)
        .prop("transaction.state.log.num.partitions", "3")
        .prop("transaction.state.log.replication.factor", "1")
        .prop("transaction.state.log.min.isr", "1");
    let server = SecureServer::start(spec);
    let dir = tempfile::tempdir().unwrap();
    let admin = scram_config(dir.path(), &certs, "admin");
    let alice = scram_config(dir.path(), &certs, "alice");
    let bootstrap = server.bootstrap("SASL_SSL");
    let as_user = |config: &str, args: &[&str]| {
        let mut all = vec![
            "transactions",
            "--bootstrap-server",
            bootstrap.as_str(),
            "--command-config",
            config,
        ];
        all.extend_from_slice(args);
        runnel(&all)
    };
    let (ok, out) = runnel(&[
        "topics",
        "--bootstrap-server",
        &bootstrap,
        "--command-config",
        &admin,
        "--create",
        "--topic",
        "orders",
        "--partitions",
        "1",
        "--replication-factor",
        "1",
    ]);
    assert!(ok, "creating orders:\n{out}");
    // alice may see the topic, not read it.
    let (ok, out) = runnel(&[
        "acls",
        "--bootstrap-server",
        &bootstrap,
        "--command-config",
        &admin,
        "--add",
        "--allow-principal",
        "User:alice",
        "--operation",
        "Describe",
        "--topic",
        "orders",
    ]);
    assert!(ok, "granting Describe:\n{out}");

    // The super user: an unknown id is not found; the partition has no producers.
    let (ok, out) = as_user(&admin, &["describe", "--transactional-id", "secret"]);
    assert!(
        !ok && out.contains("failed because the ID could not be found"),
        "{out}"
    );
    let (ok, out) = as_user(
        &admin,
        &[
            "describe-producers",
            "--topic",
            "orders",
            "--partition",
            "0",
        ],
    );
    assert!(ok, "{out}");
    assert_eq!(rows(&out).len(), 1, "{out}");
    let (ok, out) = as_user(&admin, &["list"]);
    assert!(ok && rows(&out).len() == 1, "{out}");

    // alice: refused the transactional id and the partition's producers.
    let (ok, out) = as_user(&alice, &["describe", "--transactional-id", "secret"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(
            "Failed to describe transaction state of transactional-id `secret`: FindCoordinator \
             request for transactionalId `secret` failed due to authorization failure \
             (TRANSACTIONAL_ID_AUTHORIZATION_FAILED"
        ),
        "{out}"
    );
    let (ok, out) = as_user(
        &alice,
        &[
            "describe-producers",
            "--topic",
            "orders",
            "--partition",
            "0",
        ],
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains(
            "Failed to describe producers for partition orders-0 on leader: Failed to describe \
             active producers for partition orders-0 due to authorization failure on topic \
             `orders` (TOPIC_AUTHORIZATION_FAILED"
        ),
        "{out}"
    );
    // Listing is allowed; it shows only what she may describe (nothing).
    let (ok, out) = as_user(&alice, &["list"]);
    assert!(ok && rows(&out).len() == 1, "{out}");
    // Writing a marker needs ClusterAction on the cluster.
    let (ok, out) = as_user(
        &alice,
        &[
            "abort",
            "--topic",
            "orders",
            "--partition",
            "0",
            "--producer-id",
            "1",
            "--producer-epoch",
            "0",
            "--coordinator-epoch",
            "0",
        ],
    );
    assert!(!ok, "{out}");
    assert!(out.contains("CLUSTER_AUTHORIZATION_FAILED"), "{out}");
}
