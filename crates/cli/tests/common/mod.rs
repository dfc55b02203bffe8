//! Shared harness for the `runnel` integration tests: a real `runnel server` process on a free
//! loopback port with a temporary data directory, plus a tiny blocking Kafka wire client.
//!
//! The server's stderr goes to a file next to the data directory; when a test panics while a
//! [`Server`] is alive its tail is printed, so a failing CI log says what the broker said.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};

/// How long a server gets to start accepting and answering requests.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Read/write timeout of the raw client; no single request should take longer.
pub const IO_TIMEOUT: Duration = Duration::from_secs(15);

pub struct Server {
    child: Option<Child>,
    port: u16,
    /// Holds the data dir and the stderr log; removed on drop.
    dir: tempfile::TempDir,
    sets: Vec<String>,
    starts: u32,
}

impl Server {
    /// Starts a server with default settings.
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Starts a server with extra `--set key=value` properties, e.g. `["message.max.bytes=1000"]`.
    pub fn start_with(sets: &[&str]) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("runnel-test-")
            .tempdir()
            .expect("tempdir");
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        let mut server = Server {
            child: None,
            port: 0,
            dir,
            sets: sets.iter().map(|s| s.to_string()).collect(),
            starts: 0,
        };
        // Another process may grab the port between our probe and the server's bind: retry
        // with a fresh port when that is why the server died.
        for attempt in 0.. {
            server.port = free_port();
            match server.spawn_and_wait() {
                Ok(()) => return server,
                Err(e) if attempt < 5 && server.stderr().contains("in use") => {
                    eprintln!("port {} collided, retrying: {e}", server.port);
                }
                Err(e) => panic!("runnel server did not start: {e}\n{}", server.stderr_tail()),
            }
        }
        unreachable!()
    }

    /// The server process's resident memory in bytes (Linux `/proc`), if it is running.
    /// The server process's id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn rss_bytes(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kb * 1024)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`, the bootstrap address.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn socket_addr(&self) -> SocketAddr {
        self.addr().parse().unwrap()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn stderr_path(&self, n: u32) -> PathBuf {
        self.dir.path().join(format!("server-{n}.stderr"))
    }

    /// Everything the current (or last) server process wrote to stderr.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr_path(self.starts)).unwrap_or_default()
    }

    /// The last lines of the server's stderr, preceded by any panic or allocation-failure
    /// message (a backtrace would otherwise push those out of the tail).
    pub fn stderr_tail(&self) -> String {
        let all = self.stderr();
        let lines: Vec<&str> = all.lines().collect();
        let mut out = String::new();
        for (i, l) in lines.iter().enumerate() {
            if l.contains("panicked") || l.contains("memory allocation of") {
                out.push_str("---- runnel server crash ----\n");
                out.push_str(&lines[i..(i + 3).min(lines.len())].join("\n"));
                out.push('\n');
                break;
            }
        }
        let from = lines.len().saturating_sub(40);
        out.push_str(&format!(
            "---- runnel server stderr (last {} lines) ----\n{}\n----",
            lines.len() - from,
            lines[from..].join("\n")
        ));
        out
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        self.starts += 1;
        let stderr = File::create(self.stderr_path(self.starts)).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_runnel"));
        cmd.arg("server")
            .arg("--listen")
            .arg(self.addr())
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--node-id")
            .arg("1");
        for s in &self.sets {
            cmd.arg("--set").arg(s);
        }
        cmd.env(
            "RUST_LOG",
            std::env::var("RUNNEL_TEST_LOG").unwrap_or("info".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
        let child = cmd.spawn().map_err(|e| format!("spawn: {e}"))?;
        self.child = Some(child);
        self.wait_ready()
    }

    /// Waits until the server accepts a connection and answers ApiVersions.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last_err = String::from("never tried");
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!("server exited with {status}"));
            }
            match Conn::connect(self.socket_addr()).and_then(|mut c| c.api_versions(0)) {
                Ok(_) => return Ok(()),
                Err(e) => last_err = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "not ready after {START_TIMEOUT:?}; last error: {last_err}"
        ))
    }

    /// True while the server process is running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    /// Kills the server with SIGKILL (no shutdown hooks, no flush) and reaps it.
    pub fn sigkill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // Child::kill is SIGKILL on Unix
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port with the same data directory.
    pub fn restart(&mut self) {
        self.sigkill();
        // The old socket is gone, but retry a few times in case the port is briefly unusable.
        let mut last = String::new();
        for _ in 0..5 {
            match self.spawn_and_wait() {
                Ok(()) => return,
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!(
            "runnel server did not restart: {last}\n{}",
            self.stderr_tail()
        );
    }

    /// Panics (with the server's stderr) if the server process has died.
    pub fn assert_alive(&mut self, context: &str) {
        if !self.is_running() {
            panic!("runnel server died ({context})\n{}", self.stderr_tail());
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.stderr_tail());
        }
        self.sigkill();
    }
}

/// A port that was free a moment ago, for a server a test starts. Taken below Linux's ephemeral
/// range (32768-60999), so that no other test's client socket lands on it between this check and
/// the server's bind, and never the same port twice in one test process.
pub fn free_port() -> u16 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let seed = RandomState::new();
    for attempt in 0u64.. {
        let mut h = seed.build_hasher();
        h.write_u64(attempt);
        h.write_u32(std::process::id());
        let port = 20_000 + (h.finish() % 12_000) as u16;
        if given.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
        assert!(attempt < 10_000, "no free port found");
    }
    unreachable!()
}

/// Error type of the raw client: IO errors and protocol decode errors, as text.
pub type CResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A blocking, one-request-at-a-time Kafka wire client on a raw `TcpStream`.
pub struct Conn {
    pub stream: TcpStream,
    next_correlation: i32,
    /// The client id every request's header carries.
    pub client_id: String,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> CResult<Conn> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            next_correlation: 1,
            client_id: "runnel-tests".to_string(),
        })
    }

    /// Writes raw bytes as they are (no length prefix added).
    pub fn write_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Writes `body` with a 4-byte length prefix.
    pub fn write_frame(&mut self, body: &[u8]) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(body.len() + 4);
        buf.put_i32(body.len() as i32);
        buf.extend_from_slice(body);
        self.stream.write_all(&buf)
    }

    /// Reads one length-prefixed frame; `Ok(None)` if the peer closed the connection cleanly.
    pub fn read_frame(&mut self) -> CResult<Option<Bytes>> {
        let mut len = [0u8; 4];
        match self.stream.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let len = i32::from_be_bytes(len);
        if !(0..=256 << 20).contains(&len) {
            return Err(format!("response frame length {len}").into());
        }
        let mut body = vec![0u8; len as usize];
        self.stream.read_exact(&mut body)?;
        Ok(Some(Bytes::from(body)))
    }

    /// Waits until the server closes the connection (EOF or reset). Errors if it sends a frame
    /// instead, or keeps the connection open past the IO timeout.
    pub fn expect_closed(&mut self) -> CResult<()> {
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => return Err(format!("expected close, got {n} bytes").into()),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("expected close, got {e}").into()),
            }
        }
    }

    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Encodes a request header for `api`/`version` with the next correlation id.
    pub fn encode_header(&mut self, api: ApiKey, version: i16) -> CResult<(i32, BytesMut)> {
        let correlation = self.next_correlation;
        self.next_correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation)
            .with_client_id(Some(StrBytes::from_string(self.client_id.clone())));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, api.request_header_version(version))
            .map_err(|e| format!("encode header: {e}"))?;
        Ok((correlation, buf))
    }

    /// Encodes header + body for `api`/`version` into one frame body (without length prefix).
    pub fn encode_request<R: Encodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        req: &R,
    ) -> CResult<(i32, BytesMut)> {
        let (correlation, mut buf) = self.encode_header(api, version)?;
        req.encode(&mut buf, version)
            .map_err(|e| format!("encode {api:?} v{version}: {e}"))?;
        Ok((correlation, buf))
    }

    /// Sends a request and returns the raw response body after checking the response header.
    pub fn send_raw_request<R: Encodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        req: &R,
    ) -> CResult<Bytes> {
        let (correlation, buf) = self.encode_request(api, version, req)?;
        self.write_frame(&buf)?;
        let mut resp = self
            .read_frame()?
            .ok_or_else(|| format!("connection closed instead of answering {api:?} v{version}"))?;
        let header = ResponseHeader::decode(&mut resp, api.response_header_version(version))
            .map_err(|e| format!("decode response header: {e}"))?;
        if header.correlation_id != correlation {
            return Err(
                format!("correlation id {} != {correlation}", header.correlation_id).into(),
            );
        }
        Ok(resp)
    }

    /// Sends a typed request and decodes the typed response at the same version. Fails if the
    /// response has bytes left over.
    pub fn request<R: Request>(&mut self, version: i16, req: &R) -> CResult<R::Response> {
        let api = ApiKey::try_from(R::KEY).map_err(|_| "bad api key")?;
        let mut body = self.send_raw_request(api, version, req)?;
        let resp = R::Response::decode(&mut body, version)
            .map_err(|e| format!("decode {api:?} v{version} response: {e}"))?;
        if body.has_remaining() {
            return Err(format!(
                "{api:?} v{version} response has {} trailing bytes",
                body.remaining()
            )
            .into());
        }
        Ok(resp)
    }

    pub fn api_versions(&mut self, version: i16) -> CResult<ApiVersionsResponse> {
        let mut req = ApiVersionsRequest::default();
        if version >= 3 {
            req = req
                .with_client_software_name(StrBytes::from_static_str("runnel-tests"))
                .with_client_software_version(StrBytes::from_static_str("0.1"));
        }
        self.request(version, &req)
    }
}

/// Runs `program args...` with a timeout, returning (success, combined output). The child is
/// killed if it overruns.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> (bool, String) {
    let out_dir = tempfile::tempdir().unwrap();
    let out_path = out_dir.path().join("out");
    let out = File::create(&out_path).unwrap();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut output = std::fs::read_to_string(&out_path).unwrap_or_default();
    match status {
        Some(s) => {
            output.push_str(&format!("\n[exit: {s}]"));
            (s.success(), output)
        }
        None => {
            output.push_str(&format!("\n[killed after {timeout:?}]"));
            (false, output)
        }
    }
}

/// Repository root (two levels above this crate's manifest).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The versions the server advertises, as (api key, min, max).
pub fn advertised(conn: &mut Conn) -> CResult<Vec<(i16, i16, i16)>> {
    let resp = conn.api_versions(3).or_else(|_| -> CResult<_> {
        // A server without ApiVersions v3 answers v0 (KIP-511): retry on a new connection.
        let mut c = Conn::connect(conn.stream.peer_addr()?)?;
        c.api_versions(0)
    })?;
    if resp.error_code != 0 {
        return Err(format!("ApiVersions error {}", resp.error_code).into());
    }
    Ok(resp
        .api_keys
        .iter()
        .map(|k| (k.api_key, k.min_version, k.max_version))
        .collect())
}

/// The highest version of `api` both the server and the kafka-protocol crate support.
pub fn negotiate(conn: &mut Conn, api: ApiKey) -> CResult<i16> {
    let theirs = advertised(conn)?
        .into_iter()
        .find(|(k, _, _)| *k == api as i16)
        .ok_or_else(|| format!("server does not advertise {api:?}"))?;
    runnel_client::negotiate(api as i16, theirs.1, theirs.2).ok_or_else(|| {
        format!(
            "no common version for {api:?}: ours {:?}, server {theirs:?}",
            api.valid_versions()
        )
        .into()
    })
}

/// Creates `name` with `partitions` partitions (replication factor 1) with a raw CreateTopics.
pub fn create_topic(addr: SocketAddr, name: &str, partitions: i32) -> CResult<()> {
    use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreateTopicsRequest};
    use kafka_protocol::messages::TopicName;
    let mut conn = Conn::connect(addr)?;
    let v = negotiate(&mut conn, ApiKey::CreateTopics)?;
    let req = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.to_string())))
            .with_num_partitions(partitions)
            .with_replication_factor(1)])
        .with_timeout_ms(30_000);
    let resp = conn.request(v, &req)?;
    match resp.topics.first() {
        Some(t) if t.error_code == 0 => Ok(()),
        other => Err(format!("CreateTopics {name}: {other:?}").into()),
    }
}

/// `n` bytes that do not compress (xorshift from `seed`, which must not be 0).
pub fn noise(n: usize, mut seed: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

/// One record batch (magic v2) with the given values; keys `k0`, `k1`, ...
pub fn record_batch(values: &[&[u8]], compression: kafka_protocol::records::Compression) -> Bytes {
    use runnel_client::produce::{encode_batch, new_record, now_ms, ProducerIdentity};
    let now = now_ms();
    let mut records: Vec<_> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            new_record(
                Some(Bytes::from(format!("k{i}"))),
                Some(Bytes::copy_from_slice(v)),
                now,
            )
        })
        .collect();
    encode_batch(
        &mut BytesMut::new(),
        &mut records,
        ProducerIdentity::NONE,
        -1,
        compression,
    )
    .expect("encode batch")
}

/// A Produce request (acks=-1) carrying `records` for one partition.
pub fn produce_request(
    topic: &str,
    partition: i32,
    records: Bytes,
) -> kafka_protocol::messages::ProduceRequest {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, TopicName};
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])])
}

/// Produces one batch and returns (error code, base offset) of the single partition response.
pub fn produce(
    conn: &mut Conn,
    topic: &str,
    partition: i32,
    records: Bytes,
) -> CResult<(i16, i64)> {
    produce_verbose(conn, topic, partition, records).map(|(e, o, _)| (e, o))
}

/// Like [`produce`], plus the partition's error message (Produce v8+) for diagnostics.
pub fn produce_verbose(
    conn: &mut Conn,
    topic: &str,
    partition: i32,
    records: Bytes,
) -> CResult<(i16, i64, String)> {
    let v = negotiate(conn, ApiKey::Produce)?.min(12); // v13 addresses topics by id
    let resp = conn.request(v, &produce_request(topic, partition, records))?;
    let p = resp
        .responses
        .first()
        .and_then(|t| t.partition_responses.first())
        .ok_or("empty produce response")?;
    let msg = p
        .error_message
        .as_ref()
        .map(|m| m.to_string())
        .unwrap_or_default();
    Ok((p.error_code, p.base_offset, msg))
}

/// Fetches `partition` from `offset` and returns every record decoded (all batches).
pub fn fetch(
    conn: &mut Conn,
    topic: &str,
    partition: i32,
    offset: i64,
) -> CResult<Vec<kafka_protocol::records::Record>> {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::records::RecordBatchDecoder;
    let v = negotiate(conn, ApiKey::Fetch)?.min(12); // v13+ address topics by id
    let req = FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(16 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(8 << 20)])]);
    let resp = conn.request(v, &req)?;
    if resp.error_code != 0 {
        return Err(format!("fetch error {}", resp.error_code).into());
    }
    let p = resp
        .responses
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or("empty fetch response")?;
    if p.error_code != 0 {
        return Err(format!("fetch partition error {}", p.error_code).into());
    }
    let mut out = Vec::new();
    if let Some(mut records) = p.records.clone() {
        while records.has_remaining() {
            let set = RecordBatchDecoder::decode(&mut records)
                .map_err(|e| format!("decode fetched batch: {e}"))?;
            out.extend(set.records);
        }
    }
    Ok(out)
}

/// Whether a client's tests are skipped: it is listed in `RUNNEL_SKIP_CLIENTS`
/// (comma- or space-separated), for a machine without that client (CI never sets it).
pub fn client_skipped(client: &str) -> bool {
    std::env::var("RUNNEL_SKIP_CLIENTS")
        .unwrap_or_default()
        .split([',', ' '])
        .any(|c| c.trim() == client)
}

/// Fails the test with instructions when `tool` (the executable a client needs) is missing.
pub fn require_tool(tool: &str, client: &str) {
    let found = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is not installed (needed by the {client} tests): run \
         scripts/install-test-deps.sh or set RUNNEL_SKIP_CLIENTS={client}"
    );
}
