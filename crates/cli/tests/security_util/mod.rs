//! Runnel servers with TLS and SASL listeners for the security tests (`t80_security*`,
//! `t81_acls`): certificates from `scripts/dev-certs.sh`, a properties file per node, SCRAM
//! users from `runnel server --add-scram`, and runners for the client programs in
//! `tests/security/`.
//!
//! Every node also gets a plaintext listener named `SETUP` on 127.0.0.1: the harness uses it to
//! see that the node is up (Metadata names a controller and the node) without speaking TLS or
//! SASL itself, and tests use it for raw requests. It is an ordinary listener: without ACLs its
//! principal (`User:ANONYMOUS`) may do anything, with `allow.everyone.if.no.acl.found=false`
//! nothing but the requests that need no authorization.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::collections::BTreeMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kafka_protocol::messages::{ApiKey, MetadataRequest};

use crate::common::{free_port, negotiate, repo_root, run_with_timeout, CResult, Conn};

/// How long a node gets to answer Metadata with a controller and itself.
const START_TIMEOUT: Duration = Duration::from_secs(40);
/// Bound of one client program run.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(150);

/// The SCRAM users every secured test server starts with (`--add-scram`, both mechanisms),
/// and the PLAIN users of its `SASL_PLAINTEXT` listener: (name, password).
pub const USERS: &[(&str, &str)] = &[
    ("admin", "admin-secret"),
    ("alice", "alice-secret"),
    ("bob", "bob-secret"),
];

/// The password of the encrypted keys dev-certs.sh writes (its default).
pub const KEY_PASSWORD: &str = "runnel-dev";

pub const AUTHORIZER: &str = "org.apache.kafka.metadata.authorizer.StandardAuthorizer";

/// The JAAS configuration of a PLAIN listener with `USERS`.
pub fn plain_jaas() -> String {
    let users: Vec<String> = USERS
        .iter()
        .map(|(u, p)| format!("user_{u}=\"{p}\""))
        .collect();
    format!(
        "org.apache.kafka.common.security.plain.PlainLoginModule required {};",
        users.join(" ")
    )
}

/// `--add-scram` arguments for `USERS` with both SCRAM mechanisms.
pub fn add_scram_args() -> Vec<String> {
    let mut args = Vec::new();
    for (user, password) in USERS {
        for mech in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
            args.push("--add-scram".to_string());
            args.push(format!("{mech}=[name={user},password={password}]"));
        }
    }
    args
}

// ---- certificates ------------------------------------------------------------------------------

/// The development certificates (`scripts/dev-certs.sh`) for nodes 1-3 and clients admin, alice
/// and bob, made once in the target directory and shared by the test processes.
pub struct Certs {
    pub dir: PathBuf,
}

impl Certs {
    pub fn get() -> Certs {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("runnel-dev-certs");
        std::fs::create_dir_all(&dir).unwrap();
        // Test processes run side by side: one makes the certificates, the others wait.
        let lock = File::create(dir.join(".lock")).unwrap();
        lock.lock().expect("lock the certificates directory");
        let wanted = [
            "ca.pem",
            "node-1.pem",
            "node-2.pem",
            "node-3.pem",
            "node-1-encrypted.pem",
            "client-admin.pem",
            "client-alice.pem",
            "client-alice-encrypted.pem",
            "client-bob.pem",
            "evil-ca.pem",
            "evil.pem",
        ];
        if !wanted.iter().all(|f| dir.join(f).is_file()) {
            let out = Command::new("bash")
                .arg(repo_root().join("scripts/dev-certs.sh"))
                .arg(&dir)
                .args(["1", "2", "3"])
                .output()
                .expect("run scripts/dev-certs.sh");
            assert!(
                out.status.success(),
                "scripts/dev-certs.sh failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        drop(lock);
        Certs { dir }
    }

    pub fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }

    pub fn ca(&self) -> String {
        self.path("ca.pem")
    }

    pub fn node(&self, id: i32) -> String {
        self.path(&format!("node-{id}.pem"))
    }

    pub fn client(&self, name: &str) -> String {
        self.path(&format!("client-{name}.pem"))
    }
}

// ---- one secured node --------------------------------------------------------------------------

/// What a secured server is started with: its listeners (name and security protocol; a `SETUP`
/// plaintext listener is added), properties, and extra `runnel server` arguments.
#[derive(Clone, Default)]
pub struct Spec {
    pub listeners: Vec<(String, String)>,
    pub props: Vec<(String, String)>,
    pub args: Vec<String>,
    /// Appended to the properties file as it is (for values written over several lines).
    pub raw: String,
}

impl Spec {
    pub fn listener(mut self, name: &str, protocol: &str) -> Spec {
        self.listeners.push((name.into(), protocol.into()));
        self
    }

    pub fn prop(mut self, key: &str, value: impl Into<String>) -> Spec {
        self.props.retain(|(k, _)| k != key);
        self.props.push((key.into(), value.into()));
        self
    }

    pub fn without(mut self, key: &str) -> Spec {
        self.props.retain(|(k, _)| k != key);
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Spec {
        self.args.push(arg.into());
        self
    }

    /// The broker's TLS identity and trust: node `id`'s key and chain, the development CA.
    pub fn tls(self, certs: &Certs, id: i32) -> Spec {
        self.prop("ssl.keystore.type", "PEM")
            .prop("ssl.keystore.location", certs.node(id))
            .prop("ssl.truststore.type", "PEM")
            .prop("ssl.truststore.location", certs.ca())
    }

    /// The listeners most tests use, each with its own configuration:
    /// - `SASL_SSL`: SCRAM-SHA-256 and SCRAM-SHA-512 (`sasl.enabled.mechanisms`);
    /// - `SASL_PLAINTEXT`: PLAIN only, users from its JAAS configuration
    ///   (`listener.name.sasl_plaintext.*` overrides);
    /// - `SSL`: client certificates required (`listener.name.ssl.ssl.client.auth`), principals
    ///   `User:<CN>` by `ssl.principal.mapping.rules`.
    ///
    /// SCRAM users are `USERS`, through `--add-scram`.
    pub fn standard(certs: &Certs) -> Spec {
        let mut spec = Spec::default()
            .listener("SASL_SSL", "SASL_SSL")
            .listener("SASL_PLAINTEXT", "SASL_PLAINTEXT")
            .listener("SSL", "SSL")
            .tls(certs, 1)
            .prop("sasl.enabled.mechanisms", "SCRAM-SHA-256,SCRAM-SHA-512")
            .prop(
                "listener.name.sasl_plaintext.sasl.enabled.mechanisms",
                "PLAIN",
            )
            .prop(
                "listener.name.sasl_plaintext.plain.sasl.jaas.config",
                plain_jaas(),
            )
            .prop("listener.name.ssl.ssl.client.auth", "required")
            .prop(
                "ssl.principal.mapping.rules",
                "RULE:^CN=([^,]*)$/$1/,DEFAULT",
            )
            .prop("group.initial.rebalance.delay.ms", "300");
        spec.args.extend(add_scram_args());
        spec
    }

    /// `standard` with StandardAuthorizer, `super.users=User:admin` and
    /// `allow.everyone.if.no.acl.found` as given.
    pub fn with_acls(certs: &Certs, allow_everyone_if_no_acl_found: bool) -> Spec {
        Spec::standard(certs)
            .prop("authorizer.class.name", AUTHORIZER)
            .prop("super.users", "User:admin")
            .prop(
                "allow.everyone.if.no.acl.found",
                allow_everyone_if_no_acl_found.to_string(),
            )
    }
}

/// Writes a properties file of `key=value` lines (the values here hold no backslash or line
/// break, so nothing needs escaping).
pub fn write_properties(path: &Path, props: &[(String, String)]) {
    let mut text = String::new();
    for (k, v) in props {
        assert!(
            !v.contains('\\') && !v.contains('\n'),
            "{k}: value needs escaping"
        );
        text.push_str(&format!("{k}={v}\n"));
    }
    std::fs::write(path, text).unwrap();
}

/// A `runnel server` process started from a [`Spec`] on free loopback ports.
pub struct SecureServer {
    child: Option<Child>,
    /// Listener name -> port (including `SETUP`).
    pub ports: BTreeMap<String, u16>,
    dir: tempfile::TempDir,
    spec: Spec,
    starts: u32,
}

impl SecureServer {
    pub fn start(spec: Spec) -> SecureServer {
        let dir = tempfile::Builder::new()
            .prefix("runnel-sec-")
            .tempdir()
            .expect("tempdir");
        let mut server = SecureServer {
            child: None,
            ports: BTreeMap::new(),
            dir,
            spec,
            starts: 0,
        };
        for attempt in 0.. {
            match server.spawn_and_wait() {
                Ok(()) => return server,
                // Another process took a port between our probe and the bind: new ports.
                Err(e) if attempt < 4 && server.stderr().contains("in use") => {
                    eprintln!("port collision, retrying: {e}");
                    server.ports.clear();
                }
                Err(e) => panic!("runnel server did not start: {e}\n{}", server.stderr_tail()),
            }
        }
        unreachable!()
    }

    /// The properties the node runs with (the file it was started with).
    pub fn properties(&self) -> Vec<(String, String)> {
        let mut names: Vec<(String, String)> = self.spec.listeners.clone();
        names.push(("SETUP".into(), "PLAINTEXT".into()));
        let listeners: Vec<String> = names
            .iter()
            .map(|(n, _)| format!("{n}://127.0.0.1:{}", self.ports[n]))
            .collect();
        let map: Vec<String> = names.iter().map(|(n, p)| format!("{n}:{p}")).collect();
        let mut props = vec![
            ("node.id".to_string(), "1".to_string()),
            (
                "log.dirs".to_string(),
                self.data_dir().display().to_string(),
            ),
            ("listeners".to_string(), listeners.join(",")),
            ("listener.security.protocol.map".to_string(), map.join(",")),
        ];
        props.extend(self.spec.props.iter().cloned());
        props
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        if self.ports.is_empty() {
            for (name, _) in &self.spec.listeners {
                self.ports.insert(name.clone(), free_port());
            }
            self.ports.insert("SETUP".into(), free_port());
        }
        self.starts += 1;
        let config = self.dir.path().join("server.properties");
        write_properties(&config, &self.properties());
        if !self.spec.raw.is_empty() {
            let mut text = std::fs::read_to_string(&config).unwrap();
            text.push_str(&self.spec.raw);
            std::fs::write(&config, text).unwrap();
        }
        let stderr = File::create(self.stderr_path()).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_runnel"));
        cmd.arg("server")
            .arg("--config")
            .arg(&config)
            .args(&self.spec.args)
            .env(
                "RUNNEL_LOG",
                std::env::var("RUNNEL_TEST_LOG").unwrap_or("info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        self.child = Some(cmd.spawn().map_err(|e| format!("spawn: {e}"))?);
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last = String::from("never tried");
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!("server exited with {status}"));
            }
            match ready(self.setup_addr(), 1) {
                Ok(true) => return Ok(()),
                Ok(false) => last = "no controller or node 1 not registered yet".into(),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("not ready after {START_TIMEOUT:?}: {last}"))
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `127.0.0.1:PORT` of listener `name`.
    pub fn bootstrap(&self, name: &str) -> String {
        format!("127.0.0.1:{}", self.ports[name])
    }

    pub fn addr(&self, name: &str) -> SocketAddr {
        self.bootstrap(name).parse().unwrap()
    }

    pub fn setup_addr(&self) -> SocketAddr {
        self.addr("SETUP")
    }

    fn stderr_path(&self) -> PathBuf {
        self.dir
            .path()
            .join(format!("server-{}.stderr", self.starts))
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr_path()).unwrap_or_default()
    }

    pub fn stderr_tail(&self) -> String {
        tail("runnel server", &self.stderr(), 40)
    }

    /// Panics unless the process runs and answers Metadata (with a controller) on `SETUP`.
    pub fn assert_healthy(&mut self, context: &str) {
        let exited = match self.child.as_mut() {
            Some(c) => c.try_wait().unwrap().is_some(),
            None => true,
        };
        if exited {
            panic!("runnel server died ({context})\n{}", self.stderr_tail());
        }
        match ready(self.setup_addr(), 1) {
            Ok(true) => {}
            other => panic!(
                "runnel server unhealthy ({context}): {other:?}\n{}",
                self.stderr_tail()
            ),
        }
    }

    /// SIGKILLs the node and starts it again with the same spec, ports and data.
    pub fn restart(&mut self) {
        self.kill();
        if let Err(e) = self.spawn_and_wait() {
            panic!("restart failed: {e}\n{}", self.stderr_tail());
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for SecureServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.stderr_tail());
        }
        self.kill();
    }
}

/// Whether the node at `addr` answers Metadata naming a controller and listing broker `node`.
pub fn ready(addr: SocketAddr, node: i32) -> CResult<bool> {
    let mut conn = Conn::connect(addr)?;
    let v = negotiate(&mut conn, ApiKey::Metadata)?;
    let req = MetadataRequest::default().with_topics(Some(Vec::new()));
    let resp = conn.request(v, &req)?;
    Ok(resp.controller_id.0 >= 0 && resp.brokers.iter().any(|b| b.node_id.0 == node))
}

pub fn tail(what: &str, text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(n);
    format!(
        "---- {what} (last {} lines) ----\n{}\n----",
        lines.len() - from,
        lines[from..].join("\n")
    )
}

// ---- client settings and programs --------------------------------------------------------------

/// `KEY=VALUE` settings of the programs in `tests/security/` (see its README).
pub fn sasl_ssl(certs: &Certs, mechanism: &str, user: &str, password: &str) -> Vec<String> {
    vec![
        "security.protocol=SASL_SSL".into(),
        format!("sasl.mechanism={mechanism}"),
        format!("sasl.username={user}"),
        format!("sasl.password={password}"),
        format!("ssl.ca.location={}", certs.ca()),
    ]
}

pub fn sasl_plaintext(mechanism: &str, user: &str, password: &str) -> Vec<String> {
    vec![
        "security.protocol=SASL_PLAINTEXT".into(),
        format!("sasl.mechanism={mechanism}"),
        format!("sasl.username={user}"),
        format!("sasl.password={password}"),
    ]
}

/// TLS with a client certificate (`keystore`: a PEM file of dev-certs.sh, key and chain).
pub fn ssl(certs: &Certs, keystore: Option<&str>) -> Vec<String> {
    let mut s = vec![
        "security.protocol=SSL".into(),
        format!("ssl.ca.location={}", certs.ca()),
    ];
    if let Some(k) = keystore {
        s.push(format!("ssl.keystore.location={}", certs.path(k)));
    }
    s
}

/// The password of a user in `USERS`.
pub fn password(user: &str) -> &'static str {
    USERS.iter().find(|(u, _)| *u == user).unwrap().1
}

/// One run of a program: exit status, all output, and its `RESULT` JSON line if it printed one.
pub struct Outcome {
    pub ok: bool,
    pub output: String,
    pub result: Option<serde_json::Value>,
}

impl Outcome {
    /// The `errors` of a probe's RESULT, joined (empty when there are none).
    pub fn errors(&self) -> String {
        self.result
            .as_ref()
            .and_then(|r| r.get("errors"))
            .and_then(|e| e.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    }

    pub fn result_ok(&self) -> bool {
        self.result
            .as_ref()
            .and_then(|r| r.get("ok"))
            .and_then(|o| o.as_bool())
            == Some(true)
    }
}

/// Runs `program args...` from the repository root and parses its `RESULT` line.
pub fn run_program(program: &str, args: &[String], timeout: Duration) -> Outcome {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(repo_root())
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let (ok, output) = run_with_timeout(&mut cmd, timeout);
    let result = output
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .and_then(|j| serde_json::from_str(j).ok());
    Outcome { ok, output, result }
}

/// A client program of `tests/security/`: the name `RUNNEL_SKIP_CLIENTS` knows it by, the
/// executable it needs, and how to run it.
pub struct Client {
    pub name: &'static str,
    pub tool: &'static str,
    pub program: &'static str,
    pub script: &'static str,
    /// The program has no admin API: the test creates its topic first.
    pub precreate: bool,
}

pub const CONFLUENT: Client = Client {
    name: "confluent",
    tool: "python3",
    program: "python3",
    script: "tests/security/confluent/roundtrip.py",
    precreate: false,
};
pub const KAFKA_PYTHON: Client = Client {
    name: "kafka_python",
    tool: "python3",
    program: "python3",
    script: "tests/security/kafka_python/roundtrip.py",
    precreate: false,
};
pub const AIOKAFKA: Client = Client {
    name: "aiokafka",
    tool: "python3",
    program: "python3",
    script: "tests/security/aiokafka/roundtrip.py",
    precreate: false,
};
pub const KAFKAJS: Client = Client {
    name: "kafkajs",
    tool: "node",
    program: "node",
    script: "tests/security/kafkajs/roundtrip.js",
    precreate: false,
};
pub const SARAMA: Client = Client {
    name: "sarama",
    tool: "go",
    program: "bash",
    script: "tests/security/sarama/run.sh",
    precreate: false,
};
pub const KCAT: Client = Client {
    name: "kcat",
    tool: "kcat",
    program: "bash",
    script: "tests/security/kcat/roundtrip.sh",
    precreate: true,
};

impl Client {
    /// False (after saying so) when `RUNNEL_SKIP_CLIENTS` lists this client; fails the test
    /// when its tool is missing.
    pub fn available(&self) -> bool {
        if crate::common::client_skipped(self.name) {
            eprintln!("skipping {}: listed in RUNNEL_SKIP_CLIENTS", self.name);
            return false;
        }
        crate::common::require_tool(self.tool, self.name);
        crate::common::require_tool(self.program, self.name);
        true
    }

    /// Runs the round trip (admin, produce, consume with a group) through `listener` of
    /// `server` with `settings`, and asserts it passed.
    pub fn round_trip(&self, server: &mut SecureServer, listener: &str, settings: Vec<String>) {
        let topic = format!("sec-{}-{}", self.name, listener.to_lowercase());
        if self.precreate {
            crate::common::create_topic(server.setup_addr(), &topic, 3).expect("create topic");
        }
        let mut args = vec![
            self.script.to_string(),
            server.bootstrap(listener),
            topic.clone(),
            format!("{topic}-group"),
        ];
        args.extend(settings);
        let out = run_program(self.program, &args, CLIENT_TIMEOUT);
        println!("{}", out.output);
        assert!(
            out.ok && out.result_ok(),
            "{} over {listener} failed:\n{}\n{}",
            self.name,
            out.output,
            server.stderr_tail()
        );
        server.assert_healthy(&format!("after {} over {listener}", self.name));
    }
}

/// Runs `tests/security/confluent/probe.py` against `bootstrap` with `settings`.
pub fn probe(bootstrap: &str, settings: &[String]) -> Outcome {
    let mut args = vec![
        "tests/security/confluent/probe.py".to_string(),
        bootstrap.to_string(),
    ];
    args.extend(settings.iter().cloned());
    run_program("python3", &args, Duration::from_secs(60))
}

// ---- a cluster with mutual TLS between nodes ---------------------------------------------------

/// One node of a [`SecureCluster`]: its Kafka port (a plaintext `SETUP` listener), its gRPC
/// port, and the properties it runs with.
pub struct ClusterNode {
    pub id: i32,
    pub kafka_port: u16,
    pub rpc_port: u16,
    pub props: Vec<(String, String)>,
    child: Option<Child>,
}

/// Nodes 1..=n as combined broker+controller processes on 127.0.0.1 with short quorum and
/// session timeouts; what secures their gRPC traffic comes from the caller's properties.
pub struct SecureCluster {
    pub nodes: Vec<ClusterNode>,
    dir: tempfile::TempDir,
}

/// The inter-node TLS properties of node `id`: its certificate (naming `urn:runnel:node:<id>`)
/// and the development CA.
pub fn rpc_tls(certs: &Certs, keystore: &str) -> Vec<(String, String)> {
    vec![
        ("rpc.ssl.keystore.location".into(), certs.path(keystore)),
        ("rpc.ssl.truststore.location".into(), certs.ca()),
    ]
}

impl SecureCluster {
    /// Starts `n` nodes; `props(id)` gives each node's own extra properties.
    pub fn start(n: i32, props: impl Fn(i32) -> Vec<(String, String)>) -> SecureCluster {
        let dir = tempfile::Builder::new()
            .prefix("runnel-sec-cluster-")
            .tempdir()
            .expect("tempdir");
        let mut nodes: Vec<ClusterNode> = (1..=n)
            .map(|id| ClusterNode {
                id,
                kafka_port: free_port(),
                rpc_port: free_port(),
                props: props(id),
                child: None,
            })
            .collect();
        let voters: Vec<String> = nodes
            .iter()
            .map(|n| format!("{}@127.0.0.1:{}", n.id, n.rpc_port))
            .collect();
        for node in &mut nodes {
            let mut all = vec![
                ("node.id".to_string(), node.id.to_string()),
                (
                    "log.dirs".to_string(),
                    dir.path()
                        .join(format!("node{}", node.id))
                        .display()
                        .to_string(),
                ),
                (
                    "listeners".to_string(),
                    format!("SETUP://127.0.0.1:{}", node.kafka_port),
                ),
                (
                    "listener.security.protocol.map".to_string(),
                    "SETUP:PLAINTEXT".to_string(),
                ),
                ("controller.quorum.voters".to_string(), voters.join(",")),
                (
                    "rpc.listen".to_string(),
                    format!("127.0.0.1:{}", node.rpc_port),
                ),
                ("broker.heartbeat.interval.ms".to_string(), "250".into()),
                ("broker.session.timeout.ms".to_string(), "2000".into()),
                (
                    "controller.quorum.election.timeout.ms".to_string(),
                    "500".into(),
                ),
            ];
            all.extend(node.props.iter().cloned());
            let config = dir.path().join(format!("node{}.properties", node.id));
            write_properties(&config, &all);
            let stderr = File::create(dir.path().join(format!("node{}.stderr", node.id))).unwrap();
            let child = Command::new(env!("CARGO_BIN_EXE_runnel"))
                .arg("server")
                .arg("--config")
                .arg(&config)
                .env(
                    "RUNNEL_LOG",
                    std::env::var("RUNNEL_TEST_LOG").unwrap_or("info".into()),
                )
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .expect("spawn runnel server");
            node.child = Some(child);
        }
        SecureCluster { nodes, dir }
    }

    pub fn addr(&self, id: i32) -> SocketAddr {
        let n = self.nodes.iter().find(|n| n.id == id).unwrap();
        format!("127.0.0.1:{}", n.kafka_port).parse().unwrap()
    }

    pub fn stderr(&self, id: i32) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("node{id}.stderr")))
            .unwrap_or_default()
    }

    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| tail(&format!("node {} stderr", n.id), &self.stderr(n.id), 25))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The live brokers node `id` lists in Metadata, and its controller.
    pub fn brokers_seen_by(&self, id: i32) -> CResult<(Vec<i32>, i32)> {
        let mut conn = Conn::connect(self.addr(id))?;
        let v = negotiate(&mut conn, ApiKey::Metadata)?;
        let resp = conn.request(v, &MetadataRequest::default().with_topics(Some(Vec::new())))?;
        let mut brokers: Vec<i32> = resp.brokers.iter().map(|b| b.node_id.0).collect();
        brokers.sort();
        Ok((brokers, resp.controller_id.0))
    }

    /// Waits until every node in `ids` lists exactly `ids` as live brokers with a controller.
    pub fn wait_brokers(&self, ids: &[i32], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            let views: Vec<_> = ids.iter().map(|&id| self.brokers_seen_by(id)).collect();
            if views
                .iter()
                .all(|v| matches!(v, Ok((b, c)) if b == ids && *c >= 0))
            {
                return;
            }
            last = format!("{views:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "nodes {ids:?} did not all list brokers {ids:?}: {last}\n{}",
            self.logs()
        );
    }

    /// Panics if node `id`'s process has exited.
    pub fn assert_running(&mut self, id: i32) {
        let exited = {
            let n = self.nodes.iter_mut().find(|n| n.id == id).unwrap();
            match n.child.as_mut() {
                Some(c) => c.try_wait().unwrap().is_some(),
                None => true,
            }
        };
        if exited {
            panic!("node {id} exited\n{}", self.logs());
        }
    }
}

impl Drop for SecureCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}
