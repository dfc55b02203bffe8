//! Level 12: the first five minutes. Each command of Apache Kafka 4.1's quickstart runs as
//! written there, with `bin/kafka-<tool>.sh` replaced by `runnel <tool>` (and port 9092 by a free
//! one, so tests can run side by side), against a server started from a Kafka-style
//! `server.properties`; and the tool examples of README.md (Quickstart and Consumer groups) run
//! as printed there and must print what the README shows.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{create_topic, free_port, produce, record_batch, run_with_timeout, Conn, Server};

const RUNNEL: &str = env!("CARGO_BIN_EXE_runnel");
const TIMEOUT: Duration = Duration::from_secs(30);

/// `sh -c script` in `dir` with `runnel` on the PATH; stdout and stderr interleaved, as a
/// terminal shows them. Returns (success, output).
fn sh(dir: &Path, script: &str, stdin: Option<&str>) -> (bool, String) {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(script)
        .current_dir(dir)
        .env("PATH", path());
    let (ok, out) = match stdin {
        None => run_with_timeout(&mut cmd, TIMEOUT),
        Some(input) => {
            let file = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(file.path(), input).unwrap();
            let script = format!("{script} < '{}'", file.path().display());
            let mut cmd = Command::new("sh");
            cmd.arg("-c")
                .arg(script)
                .current_dir(dir)
                .env("PATH", path());
            run_with_timeout(&mut cmd, TIMEOUT)
        }
    };
    // run_with_timeout appends "\n[exit: ...]".
    let body = out.rsplit_once("\n[").map_or(out.as_str(), |(b, _)| b);
    (ok, body.to_string())
}

fn path() -> String {
    let bin = Path::new(RUNNEL).parent().unwrap();
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Starts `sh -c "exec script"` in the background (stdout and stderr to files).
fn spawn(dir: &Path, script: &str, out: &Path) -> Child {
    Command::new("sh")
        .arg("-c")
        .arg(format!("exec {script}"))
        .current_dir(dir)
        .env("PATH", path())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(std::fs::File::create(out.with_extension("err")).unwrap())
        .spawn()
        .unwrap()
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("sh")
        .args(["-c", &format!("kill -{sig} {}", child.id())])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {}", child.id());
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process {} did not exit within {within:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn read(path: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

/// Kafka 4.1's `config/server.properties` for a combined broker and controller, with its port
/// numbers and data directory replaced.
fn kafka_server_properties(port: u16, controller_port: u16, log_dirs: &Path) -> String {
    format!(
        "process.roles=broker,controller\n\
         node.id=1\n\
         controller.quorum.bootstrap.servers=localhost:{controller_port}\n\
         listeners=PLAINTEXT://:{port},CONTROLLER://:{controller_port}\n\
         inter.broker.listener.name=PLAINTEXT\n\
         advertised.listeners=PLAINTEXT://localhost:{port},CONTROLLER://localhost:{controller_port}\n\
         controller.listener.names=CONTROLLER\n\
         listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL\n\
         num.network.threads=3\n\
         num.io.threads=8\n\
         socket.send.buffer.bytes=102400\n\
         socket.receive.buffer.bytes=102400\n\
         socket.request.max.bytes=104857600\n\
         log.dirs={}\n\
         num.partitions=1\n\
         num.recovery.threads.per.data.dir=1\n\
         offsets.topic.replication.factor=1\n\
         share.coordinator.state.topic.replication.factor=1\n\
         share.coordinator.state.topic.min.isr=1\n\
         transaction.state.log.replication.factor=1\n\
         transaction.state.log.min.isr=1\n\
         log.retention.hours=168\n\
         log.segment.bytes=1073741824\n\
         log.retention.check.interval.ms=300000\n",
        log_dirs.display()
    )
}

/// Masks what differs from run to run: topic ids, member ids, and runs of spaces (table column
/// widths follow the values).
fn normalize(text: &str) -> Vec<String> {
    let uuid =
        regex::Regex::new(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").unwrap();
    let topic_id = regex::Regex::new(r"TopicId: [A-Za-z0-9_-]{22}").unwrap();
    let spaces = regex::Regex::new(r" +").unwrap();
    text.lines()
        .map(|l| {
            let l = uuid.replace_all(l, "<uuid>");
            let l = topic_id.replace_all(&l, "TopicId: <id>");
            spaces.replace_all(&l, " ").trim_end().to_string()
        })
        .collect()
}

/// True when `actual` matches `expected`, where an expected line `...` stands for any lines.
fn matches(expected: &[String], actual: &[String]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((e, rest)) if e == "..." => (0..=actual.len()).any(|i| matches(rest, &actual[i..])),
        Some((e, rest)) => actual
            .split_first()
            .is_some_and(|(a, tail)| a == e && matches(rest, tail)),
    }
}

#[test]
fn kafka_quickstart_commands_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let port = free_port();
    let controller_port = free_port();
    std::fs::create_dir_all(home.join("config")).unwrap();
    std::fs::write(
        home.join("config/server.properties"),
        kafka_server_properties(port, controller_port, &home.join("kraft-combined-logs")),
    )
    .unwrap();
    let bootstrap = format!("localhost:{port}");

    // Step 2: KAFKA_CLUSTER_ID="$(bin/kafka-storage.sh random-uuid)", then format, then start.
    let (ok, id) = sh(home, "runnel storage random-uuid", None);
    assert!(ok, "{id}");
    let id = id.trim().to_string();
    assert!(
        regex::Regex::new("^[A-Za-z0-9_-]{22}$")
            .unwrap()
            .is_match(&id),
        "{id}"
    );
    let (ok, out) = sh(
        home,
        &format!("runnel storage format --standalone -t {id} -c config/server.properties"),
        None,
    );
    assert!(ok, "{out}");
    assert!(out.contains(&id), "{out}");
    // Formatting twice is refused, as Kafka refuses it.
    let (ok, out) = sh(
        home,
        &format!("runnel storage format --standalone -t {id} -c config/server.properties"),
        None,
    );
    assert!(!ok && out.contains("already formatted"), "{out}");

    let server_log = home.join("server.log");
    let mut server = spawn(home, "runnel server config/server.properties", &server_log);
    wait_for("the server", || {
        Conn::connect(format!("127.0.0.1:{port}").parse().unwrap()).is_ok()
            || server.try_wait().unwrap().is_some()
    });
    assert!(
        server.try_wait().unwrap().is_none(),
        "server exited: {}",
        read(&server_log.with_extension("err"))
    );

    // Step 3: create and describe a topic.
    let (ok, out) = sh(
        home,
        &format!("runnel topics --create --topic quickstart-events --bootstrap-server {bootstrap}"),
        None,
    );
    assert!(ok, "{out}");
    assert_eq!(out, "Created topic quickstart-events.\n");
    let (ok, out) = sh(
        home,
        &format!(
            "runnel topics --describe --topic quickstart-events --bootstrap-server {bootstrap}"
        ),
        None,
    );
    assert!(ok, "{out}");
    let describe = regex::Regex::new(
        "^Topic: quickstart-events\tTopicId: [A-Za-z0-9_-]{22}\tPartitionCount: 1\tReplicationFactor: 1\tConfigs: segment.bytes=1073741824\n\
         \tTopic: quickstart-events\tPartition: 0\tLeader: 1\tReplicas: 1\tIsr: 1\tElr: N/A\tLastKnownElr: N/A\n$",
    )
    .unwrap();
    assert!(describe.is_match(&out), "{out:?}");

    // Step 4: write events (one per line, until end of input).
    let (ok, out) = sh(
        home,
        &format!(
            "runnel console-producer --topic quickstart-events --bootstrap-server {bootstrap}"
        ),
        Some("This is my first event\nThis is my second event\n"),
    );
    assert!(ok, "{out}");

    // Step 5: read them; the consumer runs until Ctrl-C.
    let consumer_out = home.join("consumer.out");
    let mut consumer = spawn(
        home,
        &format!(
            "runnel console-consumer --topic quickstart-events --from-beginning --bootstrap-server {bootstrap}"
        ),
        &consumer_out,
    );
    wait_for("both events", || read(&consumer_out).lines().count() >= 2);
    signal(&consumer, "INT");
    assert!(wait_exit(&mut consumer, TIMEOUT).success());
    assert_eq!(
        read(&consumer_out),
        "This is my first event\nThis is my second event\n"
    );
    assert!(read(&consumer_out.with_extension("err")).contains("Processed a total of 2 messages"));

    // Kafka's option parser takes long options after one dash; Kafka 2.x spellings still work
    // or say what to use instead.
    let (ok, out) = sh(
        home,
        &format!("runnel topics -bootstrap-server {bootstrap} --list"),
        None,
    );
    assert!(ok, "{out}");
    assert_eq!(out, "quickstart-events\n");
    let (ok, out) = sh(
        home,
        &format!("runnel console-producer --broker-list {bootstrap} --topic quickstart-events"),
        Some("third\n"),
    );
    assert!(ok, "{out}");
    let (ok, out) = sh(
        home,
        "runnel topics --zookeeper localhost:2181 --list",
        None,
    );
    assert!(!ok);
    assert!(out.contains("--bootstrap-server"), "{out}");
    for tool in [
        "topics",
        "console-producer",
        "consumer-groups",
        "server-stop",
    ] {
        let (ok, out) = sh(home, &format!("runnel {tool} --version"), None);
        assert!(ok, "{tool}: {out}");
        assert!(out.contains(env!("CARGO_PKG_VERSION")), "{tool}: {out}");
    }
    let (ok, out) = sh(home, "runnel --version", None);
    assert!(ok && out.contains("(commit "), "{out}");

    // The server took the id given to format.
    let (ok, out) = sh(
        home,
        &format!("runnel metadata-quorum --bootstrap-server {bootstrap} describe --status"),
        None,
    );
    assert!(ok, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("ClusterId:") && l.split_whitespace().nth(1) == Some(&id)),
        "{id}: {out}"
    );

    // Step 8: stop the server (kafka-server-stop.sh); it shuts down cleanly.
    let (ok, out) = sh(home, "runnel server-stop config/server.properties", None);
    assert!(ok, "{out}");
    let status = wait_exit(&mut server, Duration::from_secs(5));
    assert!(
        status.success(),
        "{status}: {}",
        read(&server_log.with_extension("err"))
    );
    let (ok, out) = sh(home, "runnel server-stop config/server.properties", None);
    assert!(!ok);
    assert!(out.contains("No runnel server to stop"), "{out}");
}

/// The Kafka flags people carry over, end to end: headers and keys parsed by the producer and
/// printed by the consumer, regular expressions for topics, and a group's offsets exported and
/// read back.
#[test]
fn kafka_tool_flags_end_to_end() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let bs = server.addr();
    for t in ["logs-a", "logs-b", "other"] {
        let (ok, out) = sh(
            home,
            &format!("runnel topics -bootstrap-server {bs} --create -topic {t}"),
            None,
        );
        assert!(ok, "{out}");
        let (ok, out) = sh(
            home,
            &format!(
                "runnel console-producer --bootstrap-server {bs} --topic {t} \
                 --property parse.headers=true --property parse.key=true --property null.marker=NULL"
            ),
            Some(&format!("source:{t},trace:NULL\tkey-{t}\tvalue-{t}\n")),
        );
        assert!(ok, "{out}");
    }
    // --topic is a regular expression for --list, --describe and --delete.
    let (ok, out) = sh(
        home,
        &format!("runnel topics --bootstrap-server {bs} --list --topic 'logs-.*'"),
        None,
    );
    assert!(ok, "{out}");
    assert_eq!(out, "logs-a\nlogs-b\n");
    let (ok, out) = sh(
        home,
        &format!("runnel topics --bootstrap-server {bs} --describe --topic 'logs-a,other'"),
        None,
    );
    assert!(ok, "{out}");
    assert_eq!(out.matches("PartitionCount").count(), 2, "{out}");
    let (ok, out) = sh(
        home,
        &format!("runnel topics --bootstrap-server {bs} --describe --topic 'nothing.*'"),
        None,
    );
    assert!(!ok && out.contains("does not exist as expected"), "{out}");

    // --include reads every matching topic; the headers and keys come back as they were sent.
    let (ok, out) = sh(
        home,
        &format!(
            "runnel console-consumer --bootstrap-server {bs} --include 'logs-.*' --from-beginning \
             --max-messages 2 --property print.headers=true --property print.key=true 2>/dev/null | sort"
        ),
        None,
    );
    assert!(ok, "{out}");
    assert_eq!(
        out,
        "source:logs-a,trace:null\tkey-logs-a\tvalue-logs-a\n\
         source:logs-b,trace:null\tkey-logs-b\tvalue-logs-b\n"
    );

    // A group's position exported as CSV and read back with --from-file.
    let (ok, out) = sh(
        home,
        &format!(
            "runnel console-consumer --bootstrap-server {bs} --include 'logs-.*' --group g1 \
             --from-beginning --max-messages 2 --formatter org.apache.kafka.tools.consumer.NoOpMessageFormatter"
        ),
        None,
    );
    assert!(ok, "{out}");
    assert_eq!(out, "Processed a total of 2 messages\n");
    let (ok, out) = sh(
        home,
        &format!(
            "runnel consumer-groups --bootstrap-server {bs} --reset-offsets --group g1 --all-topics \
             --to-earliest --export --dry-run"
        ),
        None,
    );
    assert!(ok, "{out}");
    assert_eq!(out, "logs-a,0,0\nlogs-b,0,0\n\n");
    std::fs::write(home.join("plan.csv"), "logs-a,0,1\nlogs-b,0,0\n").unwrap();
    let (ok, out) = sh(
        home,
        &format!(
            "runnel consumer-groups --bootstrap-server {bs} --reset-offsets --group g1 \
             --from-file plan.csv --execute"
        ),
        None,
    );
    assert!(ok, "{out}");
    let (ok, out) = sh(
        home,
        &format!("runnel consumer-groups --bootstrap-server {bs} --describe --group g1"),
        None,
    );
    assert!(ok, "{out}");
    let rows: Vec<String> = normalize(&out)
        .into_iter()
        .filter(|l| l.starts_with("g1 "))
        .collect();
    assert_eq!(
        rows,
        ["g1 logs-a 0 1 1 0 - - -", "g1 logs-b 0 0 1 1 - - -"],
        "{out}"
    );
}

/// A server refuses a data directory another one is running on, and says which process.
#[test]
fn one_server_per_data_directory() {
    let server = Server::start();
    let data = server.data_dir();
    let (ok, out) = sh(
        data.parent().unwrap(),
        &format!(
            "runnel server --listen 127.0.0.1:{} --data-dir {}",
            free_port(),
            data.display()
        ),
        None,
    );
    assert!(!ok);
    assert!(out.contains("is in use by another runnel server"), "{out}");
}

/// With neither listeners nor advertised.listeners, the server says what it advertises and how
/// to change it (it binds port 9092, which may be taken here: the line comes first).
#[test]
fn zero_config_start_says_what_it_advertises() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.out");
    let mut server = spawn(dir.path(), "runnel server --data-dir data", &log);
    let err = log.with_extension("err");
    wait_for("the advertised listener line", || {
        read(&err).contains("advertising localhost:9092") || server.try_wait().unwrap().is_some()
    });
    let text = read(&err);
    let _ = server.kill();
    let _ = server.wait();
    assert!(text.contains("advertising localhost:9092"), "{text}");
    assert!(
        text.contains("advertised.listeners=PLAINTEXT://HOST:9092"),
        "{text}"
    );
}

/// One README code block: commands (`$ ...`, continued by a trailing backslash) and the lines
/// each prints.
fn readme_transcript(readme: &str, from: &str, to: &str) -> Vec<(String, Vec<String>)> {
    let start = readme.find(from).expect(from);
    let end = start + readme[start..].find(to).expect(to);
    let mut steps: Vec<(String, Vec<String>)> = Vec::new();
    let mut continued = false;
    for line in readme[start..end].lines() {
        let Some(code) = line.strip_prefix("    ") else {
            if !line.trim().is_empty() {
                continued = false;
                if let Some(last) = steps.last_mut() {
                    // Prose ends a block; a blank line inside one is output.
                    while last.1.last().is_some_and(|l| l.is_empty()) {
                        last.1.pop();
                    }
                }
            }
            if line.trim().is_empty() {
                if let Some(last) = steps.last_mut() {
                    last.1.push(String::new());
                }
            }
            continue;
        };
        if continued {
            let last = steps.last_mut().unwrap();
            last.0.push('\n');
            last.0.push_str(code);
            continued = code.ends_with('\\');
        } else if let Some(cmd) = code.strip_prefix("$ ") {
            steps.push((cmd.to_string(), Vec::new()));
            continued = cmd.ends_with('\\');
        } else if let Some(last) = steps.last_mut() {
            last.1.push(code.to_string());
        }
    }
    for step in &mut steps {
        while step.1.last().is_some_and(|l| l.is_empty()) {
            step.1.pop();
        }
    }
    steps
}

/// Runs README commands in order against `addr` (standing in for `readme_addr`): a command
/// ending in `&` runs in the background, `kill -INT %1` interrupts it and waits for it to end,
/// and a read-only command is repeated until its output is the README's (a group takes a moment
/// to become stable).
fn run_transcript(steps: &[(String, Vec<String>)], readme_addr: &str, addr: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut jobs: Vec<Child> = Vec::new();
    for (i, (cmd, expected)) in steps.iter().enumerate() {
        let cmd = cmd.replace(readme_addr, addr);
        if let Some(background) = cmd.trim_end().strip_suffix('&') {
            jobs.push(spawn(
                dir.path(),
                background,
                &dir.path().join(format!("job{i}")),
            ));
            continue;
        }
        if cmd.starts_with("kill -INT %1") {
            let mut job = jobs.remove(0);
            signal(&job, "INT");
            assert!(wait_exit(&mut job, TIMEOUT).success(), "{cmd}");
            continue;
        }
        let expected: Vec<String> = expected
            .iter()
            .map(|l| l.replace(readme_addr, addr))
            .collect();
        let expected = normalize(&expected.join("\n"));
        let wants_error = expected.iter().any(|l| l.starts_with("Error:"));
        let read_only = cmd.contains("--describe") || cmd.contains("--list");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (ok, out) = sh(dir.path(), &cmd, None);
            let actual = normalize(&out);
            // Blank lines around tables are Kafka's; compare them too, but not trailing ones.
            let trimmed: Vec<String> = {
                let mut a = actual.clone();
                while a.last().is_some_and(|l| l.is_empty()) {
                    a.pop();
                }
                a
            };
            if ok != wants_error && matches(&expected, &trimmed) {
                break;
            }
            if !read_only || Instant::now() > deadline {
                panic!(
                    "README command: $ {cmd}\nexpected (normalized):\n{}\nactual (exit ok: {ok}):\n{out}",
                    expected.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    for mut job in jobs {
        let _ = job.kill();
        let _ = job.wait();
    }
}

fn readme() -> String {
    std::fs::read_to_string(common::repo_root().join("README.md")).unwrap()
}

#[test]
fn readme_quickstart_examples() {
    let server = Server::start();
    let steps = readme_transcript(&readme(), "## Quickstart", "Clients' consumer groups work");
    assert!(steps.len() >= 8, "{steps:?}");
    run_transcript(&steps, "localhost:9092", &server.addr());
}

#[test]
fn readme_consumer_group_examples() {
    let server = Server::start();
    // What the README's run started from: `orders` holding 9, 12 and 9 records (partition 1
    // the even-numbered orders) and a group `billing` without members.
    create_topic(server.socket_addr(), "orders", 3).unwrap();
    let mut layout: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    layout.insert(1, (1..=12).map(|i| format!("order-{}", 2 * i)).collect());
    layout.insert(0, (0..9).map(|i| format!("order-{}", 2 * i + 1)).collect());
    layout.insert(2, (9..18).map(|i| format!("order-{}", 2 * i + 1)).collect());
    let mut conn = Conn::connect(server.socket_addr()).unwrap();
    for (p, values) in &layout {
        let values: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
        let batch: Bytes = record_batch(&values, kafka_protocol::records::Compression::None);
        let (code, _) = produce(&mut conn, "orders", *p, batch).unwrap();
        assert_eq!(code, 0);
    }
    let (ok, out) = sh(
        Path::new("."),
        &format!(
            "runnel console-consumer --bootstrap-server {} --topic orders --group billing --from-beginning --max-messages 1",
            server.addr()
        ),
        None,
    );
    assert!(ok, "{out}");
    let steps = readme_transcript(&readme(), "### Consumer groups", "## Running the server");
    assert!(steps.len() >= 12, "{steps:?}");
    run_transcript(&steps, "127.0.0.1:52369", &server.addr());
}
