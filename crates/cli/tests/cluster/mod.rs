//! A three-node (or n-node) Runnel cluster of real `runnel server` processes on 127.0.0.1, for
//! the multi-node tests: every node is a combined broker and controller with its own Kafka and
//! gRPC port, data directory and stderr log. Nodes can be SIGKILLed, restarted on the same ports
//! and directories, and SIGSTOPped/SIGCONTed to cut them off without killing them.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::collections::BTreeMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreateTopicsRequest};
use kafka_protocol::messages::{ApiKey, MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use runnel_client::ClusterMeta;

use crate::common::{free_port, negotiate, CResult, Conn};

pub struct Node {
    pub id: i32,
    pub kafka_port: u16,
    pub rpc_port: u16,
    child: Option<Child>,
    starts: u32,
    stopped: bool,
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    dir: tempfile::TempDir,
    sets: Vec<String>,
    node_args: NodeArgs,
}

/// Extra `runnel server` arguments of one node, appended at every start (after the shared
/// `--set`s, so its own win).
type NodeArgs = Box<dyn Fn(&Node) -> Vec<String>>;

/// One partition as a broker's Metadata answer describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionView {
    pub error: i16,
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub offline: Vec<i32>,
}

/// A broker's Metadata answer, reduced to what the tests compare across nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    pub controller: i32,
    pub brokers: Vec<(i32, String)>,
    pub topics: BTreeMap<String, BTreeMap<i32, PartitionView>>,
}

impl Cluster {
    /// Starts `n` combined nodes with extra `--set` properties and waits until every node
    /// reports all `n` brokers and an active controller.
    pub fn start(n: usize, sets: &[&str]) -> Cluster {
        Cluster::start_with_node_args(n, sets, |_| Vec::new())
    }

    /// Like [`Self::start`], with `node_args(node)` appended to each node's command line at
    /// every start: what differs between nodes (its own certificate, listeners on ports the
    /// caller chose). The harness keeps talking to each node on `kafka_port`, which must stay
    /// a PLAINTEXT listener.
    pub fn start_with_node_args(
        n: usize,
        sets: &[&str],
        node_args: impl Fn(&Node) -> Vec<String> + 'static,
    ) -> Cluster {
        Cluster::start_prepared(n, sets, node_args, |_, _| {})
    }

    /// Like [`Self::start_with_node_args`], calling `prepare(node id, data directory)` for each
    /// node before it first starts (to put its data directory on a small filesystem, say).
    pub fn start_prepared(
        n: usize,
        sets: &[&str],
        node_args: impl Fn(&Node) -> Vec<String> + 'static,
        prepare: impl Fn(i32, &std::path::Path),
    ) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("runnel-cluster-")
            .tempdir()
            .expect("tempdir");
        let nodes = (1..=n as i32)
            .map(|id| Node {
                id,
                kafka_port: free_port(),
                rpc_port: free_port(),
                child: None,
                starts: 0,
                stopped: false,
            })
            .collect();
        let mut c = Cluster {
            nodes,
            dir,
            sets: sets.iter().map(|s| s.to_string()).collect(),
            node_args: Box::new(node_args),
        };
        for i in 0..n {
            let data = c.data_dir(i);
            std::fs::create_dir_all(&data).unwrap();
            prepare(c.nodes[i].id, &data);
        }
        for i in 0..n {
            c.spawn(i);
        }
        c.wait_converged(n, Duration::from_secs(60));
        c
    }

    pub fn voters(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("{}@127.0.0.1:{}", n.id, n.rpc_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `id`'s data directory.
    pub fn data_dir_of(&self, id: i32) -> PathBuf {
        self.data_dir(self.idx(id))
    }

    fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node{}", self.nodes[i].id))
    }

    fn stderr_path(&self, i: usize, start: u32) -> PathBuf {
        self.dir
            .path()
            .join(format!("node{}-{}.stderr", self.nodes[i].id, start))
    }

    /// Index of node `id`.
    pub fn idx(&self, id: i32) -> usize {
        self.nodes
            .iter()
            .position(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    pub fn addr(&self, id: i32) -> SocketAddr {
        let n = &self.nodes[self.idx(id)];
        format!("127.0.0.1:{}", n.kafka_port).parse().unwrap()
    }

    fn spawn(&mut self, i: usize) {
        let voters = self.voters();
        let data = self.data_dir(i);
        self.nodes[i].starts += 1;
        let stderr = File::create(self.stderr_path(i, self.nodes[i].starts)).unwrap();
        let n = &self.nodes[i];
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_runnel"));
        cmd.arg("server")
            .args(["--node-id", &n.id.to_string()])
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen", &format!("127.0.0.1:{}", n.kafka_port)])
            .args(["--rpc-listen", &format!("127.0.0.1:{}", n.rpc_port)])
            .args(["--voters", &voters]);
        for s in &self.sets {
            cmd.arg("--set").arg(s);
        }
        cmd.args((self.node_args)(n));
        cmd.env(
            "RUNNEL_LOG",
            std::env::var("RUNNEL_TEST_LOG").unwrap_or("info".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
        let child = cmd.spawn().expect("spawn runnel server");
        let n = &mut self.nodes[i];
        n.child = Some(child);
        n.stopped = false;
    }

    /// SIGKILLs node `id` and reaps it.
    pub fn kill(&mut self, id: i32) {
        let i = self.idx(id);
        if let Some(mut c) = self.nodes[i].child.take() {
            if self.nodes[i].stopped {
                signal(&c, "CONT");
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERMs node `id` (a graceful, controlled shutdown) and waits, bounded, for the process
    /// to exit on its own; returns its exit status. The node can be started again with
    /// [`Self::restart`]. If it has not exited within 60 s it is SIGKILLed and the test panics
    /// with its log tail.
    pub fn terminate(&mut self, id: i32) -> std::process::ExitStatus {
        const BOUND: Duration = Duration::from_secs(60);
        let i = self.idx(id);
        let Some(mut child) = self.nodes[i].child.take() else {
            panic!("terminate: node {id} is not running");
        };
        if self.nodes[i].stopped {
            signal(&child, "CONT");
            self.nodes[i].stopped = false;
        }
        signal(&child, "TERM");
        let deadline = Instant::now() + BOUND;
        loop {
            if let Some(status) = child.try_wait().expect("wait for runnel server") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "node {id} did not exit within {BOUND:?} of SIGTERM\n{}",
                    self.stderr_tail(id)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts node `id` again on the same ports and data directory.
    pub fn restart(&mut self, id: i32) {
        self.kill(id);
        let i = self.idx(id);
        self.spawn(i);
    }

    /// SIGSTOP: the process keeps its sockets but answers nothing.
    pub fn pause(&mut self, id: i32) {
        let i = self.idx(id);
        if let Some(c) = &self.nodes[i].child {
            signal(c, "STOP");
            self.nodes[i].stopped = true;
        }
    }

    pub fn resume(&mut self, id: i32) {
        let i = self.idx(id);
        if let Some(c) = &self.nodes[i].child {
            signal(c, "CONT");
            self.nodes[i].stopped = false;
        }
    }

    /// Node `id`'s exit status if its process has exited on its own (it is then no longer
    /// counted as running).
    pub fn exited(&mut self, id: i32) -> Option<std::process::ExitStatus> {
        let i = self.idx(id);
        let status = self.nodes[i].child.as_mut()?.try_wait().ok()??;
        self.nodes[i].child = None;
        Some(status)
    }

    pub fn running(&self) -> Vec<i32> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some() && !n.stopped)
            .map(|n| n.id)
            .collect()
    }

    /// Panics with the node's log if its process has exited.
    pub fn assert_alive(&mut self, id: i32) {
        let i = self.idx(id);
        let exited = match self.nodes[i].child.as_mut() {
            Some(c) => c.try_wait().unwrap().is_some(),
            None => true,
        };
        if exited {
            panic!("node {id} is not running\n{}", self.stderr_tail(id));
        }
    }

    pub fn stderr(&self, id: i32) -> String {
        let i = self.idx(id);
        std::fs::read_to_string(self.stderr_path(i, self.nodes[i].starts)).unwrap_or_default()
    }

    pub fn stderr_tail(&self, id: i32) -> String {
        let all = self.stderr(id);
        let lines: Vec<&str> = all.lines().collect();
        let from = lines.len().saturating_sub(30);
        format!(
            "---- node {id} stderr (last {} lines) ----\n{}\n----",
            lines.len() - from,
            lines[from..].join("\n")
        )
    }

    /// The Metadata view of node `id` (all topics).
    pub fn view(&self, id: i32) -> CResult<ClusterView> {
        metadata(self.addr(id))
    }

    /// Waits until every running node reports `brokers` live brokers and the same controller.
    pub fn wait_converged(&mut self, brokers: usize, timeout: Duration) -> ClusterView {
        let ids = self.running();
        self.wait_for(timeout, "all nodes agree on brokers and controller", |c| {
            let views: Vec<ClusterView> = ids
                .iter()
                .map(|&id| c.view(id))
                .collect::<CResult<_>>()
                .ok()?;
            let first = views.first()?.clone();
            (first.controller >= 0
                && first.brokers.len() == brokers
                && views
                    .iter()
                    .all(|v| v.controller == first.controller && v.brokers == first.brokers))
            .then_some(first)
        })
    }

    /// `host:port` of every node, comma-separated: a bootstrap list for clients.
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.kafka_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The Metadata view of the active controller if it is running and answers, else of the
    /// first running node that answers; `None` if none does.
    pub fn controller_view(&self) -> Option<ClusterView> {
        let running = self.running();
        let any = running.iter().find_map(|&id| self.view(id).ok())?;
        if running.contains(&any.controller) {
            if let Ok(v) = self.view(any.controller) {
                return Some(v);
            }
        }
        Some(any)
    }

    /// Creates `name` (with topic `configs`) through the running nodes, retrying while the
    /// quorum elects, and waits until every running node describes it identically with every
    /// partition led and its whole replica set in the ISR.
    pub fn create_topic_everywhere(
        &mut self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &[(&str, &str)],
    ) -> ClusterView {
        let ids = self.running();
        self.wait_for(Duration::from_secs(30), &format!("create {name}"), |c| {
            ids.iter().find_map(|&id| {
                match create_topic_with_configs(
                    c.addr(id),
                    name,
                    partitions,
                    replication_factor,
                    configs,
                    5_000,
                ) {
                    // TOPIC_ALREADY_EXISTS: an earlier attempt committed.
                    Ok((0, _)) | Ok((36, _)) => Some(()),
                    // REQUEST_TIMED_OUT, NOT_CONTROLLER: the quorum is electing.
                    Ok((7, _)) | Ok((41, _)) | Err(_) => None,
                    Ok((code, msg)) => panic!("CreateTopics {name}: error {code}: {msg:?}"),
                }
            })
        });
        self.wait_for(
            Duration::from_secs(30),
            &format!("{name} led with a full ISR on every node"),
            |c| {
                let views: Vec<ClusterView> = ids
                    .iter()
                    .map(|&id| c.view(id))
                    .collect::<CResult<_>>()
                    .ok()?;
                let first = views.first()?.clone();
                let t = first.topics.get(name)?;
                (t.len() == partitions as usize
                    && t.values()
                        .all(|p| p.error == 0 && p.leader >= 0 && p.isr.len() == p.replicas.len())
                    && views.iter().all(|v| v.topics.get(name) == Some(t)))
                .then_some(first)
            },
        )
    }

    /// Polls `f` every 50 ms until it returns `Some`, or panics with every node's log tail.
    pub fn wait_for<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        mut f: impl FnMut(&Cluster) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(t) = f(self) {
                return t;
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = self.nodes.iter().map(|n| self.stderr_tail(n.id)).collect();
                panic!(
                    "timed out after {timeout:?} waiting for: {what}\n{}",
                    logs.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for n in &self.nodes {
                eprintln!("{}", self.stderr_tail(n.id));
            }
        }
        let ids: Vec<i32> = self.nodes.iter().map(|n| n.id).collect();
        for id in ids {
            self.kill(id);
        }
    }
}

fn signal(child: &Child, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status();
}

/// Metadata (all topics) from the broker at `addr`.
pub fn metadata(addr: SocketAddr) -> CResult<ClusterView> {
    let mut conn = Conn::connect(addr)?;
    let v = negotiate(&mut conn, ApiKey::Metadata)?;
    let resp = conn.request(v, &MetadataRequest::default().with_topics(None))?;
    let meta = ClusterMeta::from_response(resp);
    let brokers = meta
        .brokers
        .values()
        .map(|b| (b.id, format!("{}:{}", b.host, b.port)))
        .collect();
    let topics = meta
        .topics
        .into_values()
        .map(|t| {
            let parts = t
                .partitions
                .into_iter()
                .map(|p| {
                    (
                        p.index,
                        PartitionView {
                            error: p.error_code,
                            leader: p.leader,
                            leader_epoch: p.leader_epoch,
                            replicas: p.replicas,
                            isr: p.isr,
                            offline: p.offline,
                        },
                    )
                })
                .collect();
            (t.name, parts)
        })
        .collect();
    Ok(ClusterView {
        controller: meta.controller_id,
        brokers,
        topics,
    })
}

/// CreateTopics through the broker at `addr`; returns the topic's error code and message.
pub fn create_topic(
    addr: SocketAddr,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    timeout_ms: i32,
) -> CResult<(i16, Option<String>)> {
    let mut conn = Conn::connect(addr)?;
    let v = negotiate(&mut conn, ApiKey::CreateTopics)?;
    let req = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.to_string())))
            .with_num_partitions(partitions)
            .with_replication_factor(replication_factor)])
        .with_timeout_ms(timeout_ms);
    let resp = conn.request(v, &req)?;
    let t = resp.topics.first().ok_or("CreateTopics: empty response")?;
    Ok((
        t.error_code,
        t.error_message.as_ref().map(|m| m.to_string()),
    ))
}

/// Like [`create_topic`], with topic configs (e.g. `min.insync.replicas`).
pub fn create_topic_with_configs(
    addr: SocketAddr,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    configs: &[(&str, &str)],
    timeout_ms: i32,
) -> CResult<(i16, Option<String>)> {
    use kafka_protocol::messages::create_topics_request::CreatableTopicConfig;
    let mut conn = Conn::connect(addr)?;
    let v = negotiate(&mut conn, ApiKey::CreateTopics)?;
    let req = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.to_string())))
            .with_num_partitions(partitions)
            .with_replication_factor(replication_factor)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string(k.to_string()))
                            .with_value(Some(StrBytes::from_string(v.to_string())))
                    })
                    .collect(),
            )])
        .with_timeout_ms(timeout_ms);
    let resp = conn.request(v, &req)?;
    let t = resp.topics.first().ok_or("CreateTopics: empty response")?;
    Ok((
        t.error_code,
        t.error_message.as_ref().map(|m| m.to_string()),
    ))
}
