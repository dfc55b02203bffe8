//! Level 70: the consumer-group tools against a real `runnel server`.
//!
//! - `runnel consumer-groups` with a real group member (librdkafka through the `rdkafka` crate)
//!   on a 3-partition topic: `--list` (with `--state`), `--describe` offsets, log end and lag,
//!   `--members --verbose`, `--state`; `--reset-offsets` and `--delete` refused while the member
//!   is active; after it leaves, every reset spec (`--to-earliest`, `--to-offset`, `--shift-by`,
//!   `--to-datetime` on record timestamps set here, `--by-duration`, `--to-latest`) gives exact
//!   offsets, checked with `--describe` and with a raw OffsetFetch; `--dry-run` (and no action
//!   flag) changes nothing; `--delete-offsets`, `--delete`; bad inputs fail with a message.
//! - `runnel console-consumer --group`: two processes on a 4-partition topic split the
//!   partitions; one exits (SIGINT: commit and LeaveGroup) and the other takes the rest over
//!   from the committed offsets without re-delivering anything; a restarted consumer resumes
//!   from the committed offsets.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{create_topic, run_with_timeout, Conn, Server};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::{GroupId, OffsetFetchRequest};
use kafka_protocol::protocol::StrBytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(30);
/// 2023-11-14T22:13:20Z: record `i` of every partition gets `BASE_TS + i` seconds.
const BASE_TS: i64 = 1_700_000_000_000;

fn server() -> Server {
    Server::start_with(&["group.initial.rebalance.delay.ms=0"])
}

/// Runs `runnel ARGS`; (exit ok, stdout+stderr).
fn cli(args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runnel"));
    cmd.args(args);
    run_with_timeout(&mut cmd, Duration::from_secs(60))
}

/// `runnel consumer-groups --bootstrap-server ADDR ARGS` that must succeed; its output.
fn groups_ok(server: &Server, args: &[&str]) -> String {
    let addr = server.addr();
    let mut all = vec!["consumer-groups", "--bootstrap-server", addr.as_str()];
    all.extend_from_slice(args);
    let (ok, out) = cli(&all);
    assert!(ok, "runnel {all:?} failed:\n{out}");
    out
}

/// Like [`groups_ok`] but must fail, and its output must contain `expect`.
fn groups_fail(server: &Server, args: &[&str], expect: &str) -> String {
    let addr = server.addr();
    let mut all = vec!["consumer-groups", "--bootstrap-server", addr.as_str()];
    all.extend_from_slice(args);
    let (ok, out) = cli(&all);
    assert!(!ok, "runnel {all:?} should have failed:\n{out}");
    assert!(
        out.contains(expect),
        "runnel {all:?}: expected '{expect}' in:\n{out}"
    );
    out
}

/// Rows of the table whose header line starts with `first_header`, each split on spaces; the
/// table ends at a blank line.
fn table(out: &str, first_header: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut inside = false;
    for line in out.lines() {
        if line.split_whitespace().next() == Some(first_header) {
            inside = true;
            continue;
        }
        if inside {
            if line.trim().is_empty() || line.starts_with("[exit") {
                inside = false;
                continue;
            }
            rows.push(line.split_whitespace().map(str::to_string).collect());
        }
    }
    rows
}

/// `--describe` rows by partition: [current, log end, lag, consumer id, host, client id].
fn describe(server: &Server, group: &str) -> BTreeMap<i32, Vec<String>> {
    let out = groups_ok(server, &["--describe", "--group", group]);
    table(&out, "GROUP")
        .into_iter()
        .map(|r| {
            assert_eq!(r.len(), 9, "describe row {r:?} in:\n{out}");
            assert_eq!(r[0], group);
            (r[2].parse().unwrap(), r[3..].to_vec())
        })
        .collect()
}

/// The CURRENT-OFFSET column by partition (`-` as -1).
fn described_offsets(server: &Server, group: &str) -> BTreeMap<i32, i64> {
    describe(server, group)
        .into_iter()
        .map(|(p, r)| (p, r[0].parse().unwrap_or(-1)))
        .collect()
}

/// The group's committed offsets of `topic` by a raw OffsetFetch (v8, all partitions).
fn offset_fetch(server: &Server, group: &str, topic: &str) -> BTreeMap<i32, i64> {
    let mut conn = Conn::connect(server.socket_addr()).unwrap();
    let req = OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_member_epoch(-1)
        .with_topics(None)]);
    let resp = conn.request(8, &req).unwrap();
    let g = &resp.groups[0];
    assert_eq!(g.error_code, 0, "OffsetFetch {group}: {resp:?}");
    g.topics
        .iter()
        .filter(|t| t.name.0.as_str() == topic)
        .flat_map(|t| t.partitions.iter())
        .filter(|p| p.committed_offset >= 0)
        .map(|p| (p.partition_index, p.committed_offset))
        .collect()
}

/// NEW-OFFSET by partition from a `--reset-offsets` output.
fn new_offsets(out: &str) -> BTreeMap<i32, i64> {
    table(out, "GROUP")
        .into_iter()
        .map(|r| (r[2].parse().unwrap(), r[3].parse().unwrap()))
        .collect()
}

fn map(pairs: &[(i32, i64)]) -> BTreeMap<i32, i64> {
    pairs.iter().copied().collect()
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn consumer_groups_admin() {
    let server = server();
    let topic = "cg";
    create_topic(server.socket_addr(), topic, 3).unwrap();
    // Partition p holds 10 - 2p records (10, 8, 6); record i has timestamp BASE_TS + i s.
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", server.addr())
        .set("linger.ms", "5")
        .create()
        .unwrap();
    for p in 0..3 {
        for i in 0..(10 - 2 * p) {
            let value = format!("p{p}-{i}");
            producer
                .send(
                    BaseRecord::<(), _>::to(topic)
                        .partition(p)
                        .payload(&value)
                        .timestamp(BASE_TS + i64::from(i) * 1000),
                )
                .unwrap_or_else(|(e, _)| panic!("enqueue: {e}"));
        }
    }
    producer.flush(TIMEOUT).unwrap();

    // A real group member: librdkafka, subscribed, holding all three partitions.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", server.addr())
        .set("group.id", "g1")
        .set("client.id", "t70-rdkafka")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    wait_for("the rdkafka assignment", TIMEOUT, || {
        let _ = consumer.poll(Duration::from_millis(100));
        consumer.assignment().map(|a| a.count()).unwrap_or(0) == 3
    });
    let mut tpl = TopicPartitionList::new();
    for (p, o) in [(0, 4), (1, 3), (2, 0)] {
        tpl.add_partition_offset(topic, p, Offset::Offset(o))
            .unwrap();
    }
    consumer.commit(&tpl, CommitMode::Sync).unwrap();
    let _ = consumer.poll(Duration::from_millis(100));

    // --list, with and without states.
    let out = groups_ok(&server, &["--list"]);
    assert_eq!(out.lines().next(), Some("g1"), "{out}");
    let out = groups_ok(&server, &["--list", "--state"]);
    assert_eq!(table(&out, "GROUP"), vec![vec!["g1", "Stable"]], "{out}");
    let out = groups_ok(&server, &["--list", "--state", "Empty"]);
    assert!(table(&out, "GROUP").is_empty(), "{out}");
    groups_fail(&server, &["--list", "--state", "Sleepy"], "Invalid state");

    // --describe: offsets, log end, lag and the member owning each partition.
    let rows = describe(&server, "g1");
    let expected = [(0, "4", "10", "6"), (1, "3", "8", "5"), (2, "0", "6", "6")];
    assert_eq!(rows.len(), 3, "{rows:?}");
    let member_id = rows[&0][3].clone();
    assert!(member_id.starts_with("t70-rdkafka-"), "{rows:?}");
    for (p, cur, end, lag) in expected {
        let r = &rows[&p];
        assert_eq!(
            (&r[0][..], &r[1][..], &r[2][..]),
            (cur, end, lag),
            "partition {p}: {r:?}"
        );
        assert_eq!(r[3], member_id);
        assert_eq!(r[5], "t70-rdkafka");
    }
    let out = groups_ok(
        &server,
        &["--describe", "--group", "g1", "--members", "--verbose"],
    );
    let members = table(&out, "GROUP");
    assert_eq!(members.len(), 1, "{out}");
    assert_eq!(members[0][1], member_id);
    assert_eq!(members[0][3], "t70-rdkafka");
    assert_eq!(members[0][4], "3");
    assert_eq!(members[0][5], "cg(0,1,2)");
    let out = groups_ok(&server, &["--describe", "--group", "g1", "--state"]);
    let state = table(&out, "GROUP");
    assert_eq!(state.len(), 1, "{out}");
    assert!(out.contains(" range ") && out.contains(" Stable "), "{out}");
    assert_eq!(state[0].last().unwrap(), "1", "{out}");

    // Active members: no reset, no delete.
    groups_fail(
        &server,
        &["--reset-offsets", "--group", "g1", "--topic", topic, "--to-earliest", "--execute"],
        "Assignments can only be reset if the group 'g1' is inactive, but the current state is Stable.",
    );
    groups_fail(&server, &["--delete", "--group", "g1"], "NON_EMPTY_GROUP");
    groups_fail(
        &server,
        &["--delete-offsets", "--group", "g1", "--topic", topic],
        "GROUP_SUBSCRIBED_TO_TOPIC",
    );
    assert_eq!(
        offset_fetch(&server, "g1", topic),
        map(&[(0, 4), (1, 3), (2, 0)])
    );

    // The member leaves.
    consumer.unsubscribe();
    drop(consumer);
    wait_for("group g1 to be empty", TIMEOUT, || {
        groups_ok(&server, &["--describe", "--group", "g1", "--state"]).contains(" Empty ")
    });
    let out = groups_ok(&server, &["--describe", "--group", "g1"]);
    assert!(
        out.contains("Consumer group 'g1' has no active members."),
        "{out}"
    );
    let rows = describe(&server, "g1");
    for (p, cur, end, lag) in expected {
        assert_eq!(rows[&p], vec![cur, end, lag, "-", "-", "-"], "{out}");
    }
    let out = groups_ok(&server, &["--describe", "--group", "g1", "--members"]);
    assert!(
        out.contains("Consumer group 'g1' has no active members."),
        "{out}"
    );

    let reset = |args: &[&str]| -> BTreeMap<i32, i64> {
        let mut all = vec!["--reset-offsets", "--group", "g1"];
        all.extend_from_slice(args);
        new_offsets(&groups_ok(&server, &all))
    };
    let check = |expect: &[(i32, i64)]| {
        assert_eq!(described_offsets(&server, "g1"), map(expect), "--describe");
        assert_eq!(
            offset_fetch(&server, "g1", topic),
            map(expect),
            "OffsetFetch"
        );
    };

    let all3 = |o: [i64; 3]| vec![(0, o[0]), (1, o[1]), (2, o[2])];
    assert_eq!(
        reset(&["--topic", topic, "--to-earliest", "--execute"]),
        map(&all3([0, 0, 0]))
    );
    check(&all3([0, 0, 0]));
    // Clamped to the log end (6) on partition 2.
    assert_eq!(
        reset(&["--topic", topic, "--to-offset", "7", "--execute"]),
        map(&all3([7, 7, 6]))
    );
    check(&all3([7, 7, 6]));
    // Only partitions 0 and 1; partition 2 keeps its offset.
    assert_eq!(
        reset(&["--topic", "cg:0,1", "--shift-by", "-2", "--execute"]),
        map(&[(0, 5), (1, 5)])
    );
    check(&all3([5, 5, 6]));
    // Shifted past the log start: clamped to 0.
    assert_eq!(
        reset(&["--topic", "cg:1", "--shift-by", "-100", "--execute"]),
        map(&[(1, 0)])
    );
    check(&all3([5, 0, 6]));
    // The first record at or after +3.5 s is record 4, on every partition.
    assert_eq!(
        reset(&[
            "--all-topics",
            "--to-datetime",
            "2023-11-14T22:13:23.500Z",
            "--execute"
        ]),
        map(&all3([4, 4, 4]))
    );
    check(&all3([4, 4, 4]));
    // The same instant written with an offset from UTC; partition 2's records end at +5 s.
    assert_eq!(
        reset(&[
            "--topic",
            topic,
            "--to-datetime",
            "2023-11-15T00:13:27.000+02:00",
            "--execute"
        ]),
        map(&all3([7, 7, 6]))
    );
    check(&all3([7, 7, 6]));
    // Dry runs change nothing: every record is older than an hour, so by-duration is the log end.
    assert_eq!(
        reset(&["--topic", topic, "--by-duration", "PT1H", "--dry-run"]),
        map(&all3([10, 8, 6]))
    );
    assert_eq!(
        reset(&["--topic", topic, "--to-earliest", "--dry-run"]),
        map(&all3([0, 0, 0]))
    );
    let out = groups_ok(
        &server,
        &[
            "--reset-offsets",
            "--group",
            "g1",
            "--topic",
            topic,
            "--to-latest",
        ],
    );
    assert!(out.contains("WARN"), "{out}");
    assert_eq!(new_offsets(&out), map(&all3([10, 8, 6])));
    check(&all3([7, 7, 6]));
    assert_eq!(
        reset(&["--topic", topic, "--to-current", "--execute"]),
        map(&all3([7, 7, 6]))
    );
    assert_eq!(
        reset(&["--topic", topic, "--to-latest", "--execute"]),
        map(&all3([10, 8, 6]))
    );
    check(&all3([10, 8, 6]));
    let rows = describe(&server, "g1");
    assert!(
        rows.values().all(|r| r[2] == "0"),
        "lag after --to-latest: {rows:?}"
    );

    // Bad inputs: a message and a non-zero exit.
    let g = ["--reset-offsets", "--group", "g1"];
    let with =
        |extra: &[&str]| -> Vec<String> { g.iter().chain(extra).map(|s| s.to_string()).collect() };
    let fail = |args: Vec<String>, expect: &str| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        groups_fail(&server, &args, expect);
    };
    fail(
        with(&["--topic", "nosuch", "--to-earliest", "--execute"]),
        "Topic 'nosuch' does not exist.",
    );
    fail(
        with(&["--topic", "cg:7", "--to-earliest", "--execute"]),
        "Partition 7 does not exist",
    );
    fail(
        with(&["--topic", topic, "--to-datetime", "yesterday", "--execute"]),
        "Invalid --to-datetime",
    );
    fail(
        with(&["--topic", topic, "--by-duration", "1 hour", "--execute"]),
        "Invalid --by-duration",
    );
    fail(
        with(&["--topic", topic, "--execute"]),
        "exactly one of --to-earliest",
    );
    fail(
        with(&["--topic", topic, "--to-earliest", "--to-latest"]),
        "exactly one of --to-earliest",
    );
    fail(with(&["--to-earliest", "--execute"]), "exactly one scope");
    fail(
        with(&["--topic", topic, "--to-earliest", "--dry-run", "--execute"]),
        "cannot be used together",
    );
    groups_fail(&server, &["--group", "g1"], "exactly one action");
    groups_fail(&server, &["--list", "--describe"], "exactly one action");
    groups_fail(&server, &["--describe"], "--group");
    groups_fail(
        &server,
        &["--describe", "--group", "nosuch"],
        "Error: Consumer group 'nosuch' does not exist.",
    );
    let (ok, out) = cli(&[
        "consumer-groups",
        "--bootstrap-server",
        "127.0.0.1:1",
        "--list",
    ]);
    assert!(!ok && out.contains("could not connect"), "{out}");
    check(&all3([10, 8, 6]));

    // --delete-offsets of one partition, then --delete of the empty group.
    let out = groups_ok(
        &server,
        &["--delete-offsets", "--group", "g1", "--topic", "cg:2"],
    );
    assert!(out.contains("Successful"), "{out}");
    assert_eq!(offset_fetch(&server, "g1", topic), map(&[(0, 10), (1, 8)]));
    let out = groups_ok(&server, &["--delete", "--group", "g1"]);
    assert!(
        out.contains("Deletion of requested consumer groups ('g1') was successful."),
        "{out}"
    );
    groups_fail(
        &server,
        &["--describe", "--group", "g1"],
        "Consumer group 'g1' does not exist.",
    );
    groups_fail(
        &server,
        &["--delete", "--group", "g1"],
        "GROUP_ID_NOT_FOUND",
    );
    assert!(offset_fetch(&server, "g1", topic).is_empty());
}

// ---- console-consumer --group ----

struct ConsoleConsumer {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl ConsoleConsumer {
    fn start(
        server: &Server,
        dir: &Path,
        name: &str,
        topic: &str,
        group: &str,
        extra: &[&str],
    ) -> Self {
        let out = dir.join(format!("{name}.out"));
        let err = dir.join(format!("{name}.err"));
        let child = Command::new(env!("CARGO_BIN_EXE_runnel"))
            .args([
                "console-consumer",
                "--bootstrap-server",
                &server.addr(),
                "--topic",
                topic,
                "--group",
                group,
                "--from-beginning",
                "--property",
                "print.partition=true",
                "--property",
                "print.offset=true",
                "--consumer-property",
                "session.timeout.ms=6000",
                "--consumer-property",
                "heartbeat.interval.ms=500",
                "--consumer-property",
                "auto.commit.interval.ms=500",
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        ConsoleConsumer { child, out, err }
    }

    /// (partition, offset, value) of every record printed so far.
    fn records(&self) -> Vec<(i32, i64, String)> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                assert_eq!(f.len(), 3, "unexpected line {l:?}");
                let p = f[0].strip_prefix("Partition:").unwrap().parse().unwrap();
                let o = f[1].strip_prefix("Offset:").unwrap().parse().unwrap();
                (p, o, f[2].to_string())
            })
            .collect()
    }

    fn partitions(&self) -> BTreeSet<i32> {
        self.records().iter().map(|r| r.0).collect()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// SIGINT, then waits for a clean exit.
    fn interrupt(&mut self) {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.wait_exit();
    }

    fn wait_exit(&mut self) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                assert!(
                    s.success(),
                    "console consumer exited with {s}:\n{}",
                    self.stderr()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "console consumer did not exit:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for ConsoleConsumer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Produces `n` records to each of `partitions` partitions; values `p{p}-{offset}` assuming the
/// partitions hold `first` records each before.
fn produce_round(server: &Server, topic: &str, partitions: i32, first: usize, n: usize) {
    let mut conn = Conn::connect(server.socket_addr()).unwrap();
    for p in 0..partitions {
        let values: Vec<String> = (first..first + n).map(|i| format!("p{p}-{i}")).collect();
        let refs: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
        let batch = common::record_batch(&refs, kafka_protocol::records::Compression::None);
        let (code, base) = common::produce(&mut conn, topic, p, batch).unwrap();
        assert_eq!((code, base), (0, first as i64), "produce to {topic}-{p}");
    }
}

#[test]
fn console_consumer_groups() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let topic = "cc";
    create_topic(server.socket_addr(), topic, 4).unwrap();

    let mut a = ConsoleConsumer::start(&server, dir.path(), "a", topic, "cg2", &[]);
    let mut b = ConsoleConsumer::start(&server, dir.path(), "b", topic, "cg2", &[]);
    // Both members are in and the partitions are split two and two.
    wait_for(
        "two members with two partitions each",
        Duration::from_secs(60),
        || {
            let (ok, out) = cli(&[
                "consumer-groups",
                "--bootstrap-server",
                &server.addr(),
                "--describe",
                "--group",
                "cg2",
                "--members",
            ]);
            let rows = table(&out, "GROUP");
            ok && rows.len() == 2
                && rows.iter().all(|r| r[4] == "2")
                && !out.contains("rebalancing")
        },
    );
    produce_round(&server, topic, 4, 0, 10);
    wait_for("40 records between the two", TIMEOUT, || {
        a.records().len() + b.records().len() == 40
    });
    let (pa, pb) = (a.partitions(), b.partitions());
    assert_eq!(pa.len(), 2, "a read {pa:?}");
    assert_eq!(pb.len(), 2, "b read {pb:?}");
    assert!(pa.is_disjoint(&pb), "a {pa:?} and b {pb:?} overlap");
    for c in [&a, &b] {
        for (p, o, v) in c.records() {
            assert_eq!(v, format!("p{p}-{o}"));
        }
    }
    // Auto-commit catches up: every partition committed at 10, lag 0.
    wait_for("commits at 10", TIMEOUT, || {
        described_offsets(&server, "cg2") == map(&[(0, 10), (1, 10), (2, 10), (3, 10)])
    });

    // a leaves; b takes over a's partitions from the committed offsets.
    a.interrupt();
    assert!(
        a.stderr().contains("Processed a total of 20 messages"),
        "{}",
        a.stderr()
    );
    produce_round(&server, topic, 4, 10, 10);
    wait_for(
        "b to read all 40 new records",
        Duration::from_secs(60),
        || b.records().len() == 60,
    );
    let b_records = b.records();
    let a_records: BTreeSet<(i32, i64)> = a.records().iter().map(|r| (r.0, r.1)).collect();
    for (p, o, _) in &b_records {
        assert!(
            !a_records.contains(&(*p, *o)),
            "b re-read {p}/{o}, which a had committed"
        );
    }
    let seen: BTreeSet<(i32, i64)> = b_records
        .iter()
        .map(|r| (r.0, r.1))
        .chain(a_records)
        .collect();
    assert_eq!(seen.len(), 80, "every record exactly once");
    b.interrupt();
    assert!(
        b.stderr().contains("Processed a total of 60 messages"),
        "{}",
        b.stderr()
    );
    assert_eq!(
        offset_fetch(&server, "cg2", topic),
        map(&[(0, 20), (1, 20), (2, 20), (3, 20)]),
        "committed on exit"
    );

    // A new consumer of the group resumes from the committed offsets.
    produce_round(&server, topic, 4, 20, 5);
    let mut c = ConsoleConsumer::start(
        &server,
        dir.path(),
        "c",
        topic,
        "cg2",
        &["--max-messages", "20"],
    );
    c.wait_exit();
    let got: BTreeSet<(i32, i64)> = c.records().iter().map(|r| (r.0, r.1)).collect();
    let want: BTreeSet<(i32, i64)> = (0..4).flat_map(|p| (20..25).map(move |o| (p, o))).collect();
    assert_eq!(
        got, want,
        "the restarted consumer reads exactly what was not committed"
    );
    assert_eq!(
        offset_fetch(&server, "cg2", topic),
        map(&[(0, 25), (1, 25), (2, 25), (3, 25)])
    );
    // With nothing new it reads nothing, and --timeout-ms ends it.
    let mut d = ConsoleConsumer::start(
        &server,
        dir.path(),
        "d",
        topic,
        "cg2",
        &["--timeout-ms", "3000"],
    );
    d.wait_exit();
    assert!(d.records().is_empty(), "{:?}", d.records());
    assert!(
        d.stderr().contains("Processed a total of 0 messages"),
        "{}",
        d.stderr()
    );
}
