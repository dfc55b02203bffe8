//! Level 10: real Kafka clients against a real `runnel server`.
//!
//! Each test starts its own server and runs one program from `tests/compat/<client>/` (see the
//! header comment of each for what it checks: every codec the client supports, keys, headers,
//! offsets, timestamps, per-key order). A missing client is a failure, not a skip: install them
//! with `scripts/install-test-deps.sh`. On a dev machine, `RUNNEL_SKIP_CLIENTS=kafkajs,sarama`
//! skips the listed clients (CI never sets it).

mod common;

use std::process::Command;
use std::time::Duration;

use common::{create_topic, repo_root, run_with_timeout, Server};

const CLIENT_TIMEOUT: Duration = Duration::from_secs(240);

fn skipped(client: &str) -> bool {
    common::client_skipped(client)
}

fn require(tool: &str, client: &str) {
    common::require_tool(tool, client)
}

/// Runs `program args... BOOTSTRAP TOPIC` against a fresh server and asserts it succeeds and
/// printed a summary line for every codec in `codecs`.
/// `tool` is the executable the client needs (the program itself fails loudly if a library is
/// missing).
fn run_client(
    client: &str,
    tool: &str,
    precreate: bool,
    program: &str,
    args: &[&str],
    codecs: &[&str],
) {
    if skipped(client) {
        eprintln!("skipping {client}: listed in RUNNEL_SKIP_CLIENTS");
        return;
    }
    require(tool, client);
    require(program, client);
    let server = Server::start();
    let topic = format!("compat-{client}");
    if precreate {
        create_topic(server.socket_addr(), &topic, 3).expect("create topic");
    }
    let mut cmd = Command::new(program);
    cmd.args(args)
        .arg(server.addr())
        .arg(&topic)
        .current_dir(repo_root())
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let (ok, output) = run_with_timeout(&mut cmd, CLIENT_TIMEOUT);
    println!("{output}");
    assert!(
        ok,
        "{client} compat program failed:\n{output}\n{}",
        server.stderr_tail()
    );
    for codec in codecs {
        let line = format!("{client} codec={codec}: ");
        assert!(
            output
                .lines()
                .any(|l| l.starts_with(&line) && l.ends_with(')')),
            "{client}: no summary for codec {codec}:\n{output}"
        );
    }
}

const ALL_CODECS: &[&str] = &["none", "gzip", "snappy", "lz4", "zstd"];

#[test]
fn kcat() {
    // kcat has no admin API: the topic is created here with a raw CreateTopics request.
    run_client(
        "kcat",
        "kcat",
        true,
        "bash",
        &["tests/compat/kcat/roundtrip.sh"],
        ALL_CODECS,
    );
}

#[test]
fn confluent() {
    run_client(
        "confluent",
        "python3",
        false,
        "python3",
        &["tests/compat/confluent/roundtrip.py"],
        ALL_CODECS,
    );
}

#[test]
fn kafka_python() {
    run_client(
        "kafka_python",
        "python3",
        false,
        "python3",
        &["tests/compat/kafka_python/roundtrip.py"],
        ALL_CODECS,
    );
}

#[test]
fn aiokafka() {
    run_client(
        "aiokafka",
        "python3",
        false,
        "python3",
        &["tests/compat/aiokafka/roundtrip.py"],
        ALL_CODECS,
    );
}

#[test]
fn kafkajs() {
    // kafkajs ships only gzip; see tests/compat/kafkajs/roundtrip.js.
    run_client(
        "kafkajs",
        "node",
        false,
        "node",
        &["tests/compat/kafkajs/roundtrip.js"],
        &["none", "gzip"],
    );
}

#[test]
fn sarama() {
    run_client(
        "sarama",
        "go",
        false,
        "bash",
        &["tests/compat/sarama/run.sh"],
        ALL_CODECS,
    );
}
