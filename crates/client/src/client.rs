//! A small async Kafka client: one connection per broker (TCP or TLS, SASL-authenticated when
//! the configuration says so), 4-byte length-prefixed frames, ApiVersions negotiation at
//! connect, a metadata cache and leader routing.
//!
//! It speaks only the public Kafka wire protocol (through `kafka-protocol`), so the tools built on
//! it work against any Kafka cluster, not just runnel. It never retries on its own: callers decide
//! which Kafka errors are worth a metadata refresh and another attempt.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FindCoordinatorRequest, MetadataRequest,
    MetadataResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use kafka_protocol::ResponseError;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use uuid::Uuid;

use crate::config::ClientConfig;

/// How long to wait for a TCP connection before naming the address in an error.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound on one request/response round trip (Kafka's `request.timeout.ms` default).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A response larger than this is treated as a corrupt stream rather than allocated.
const MAX_FRAME: usize = 1 << 30;

/// Kafka's error name for a wire error code, e.g. `3` -> `UNKNOWN_TOPIC_OR_PARTITION`.
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".to_string(),
        Some(ResponseError::Unknown(c)) => format!("UNKNOWN_ERROR_CODE({c})"),
        Some(e) => camel_to_screaming_snake(&e.to_string()),
    }
}

fn camel_to_screaming_snake(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for (i, ch) in s.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

/// A non-zero error code returned by a broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaError {
    pub code: i16,
    pub message: Option<String>,
}

impl KafkaError {
    pub fn new(code: i16, message: Option<&StrBytes>) -> Self {
        KafkaError {
            code,
            message: message.map(|m| m.to_string()).filter(|m| !m.is_empty()),
        }
    }

    pub fn is_retriable(&self) -> bool {
        ResponseError::try_from_code(self.code).is_some_and(|e| e.is_retriable())
    }
}

impl fmt::Display for KafkaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&error_name(self.code))?;
        if let Some(m) = &self.message {
            write!(f, ": {m}")?;
        }
        Ok(())
    }
}

impl std::error::Error for KafkaError {}

/// `Ok(())` for code 0, otherwise a [`KafkaError`] carrying the broker's message.
pub fn check(code: i16, message: Option<&StrBytes>) -> Result<(), KafkaError> {
    if code == 0 {
        Ok(())
    } else {
        Err(KafkaError::new(code, message))
    }
}

/// Highest version both sides support for each API, or `None` when the ranges do not meet.
pub fn negotiate(api_key: i16, broker_min: i16, broker_max: i16) -> Option<i16> {
    let ours = ApiKey::try_from(api_key).ok()?.valid_versions();
    let min = ours.min.max(broker_min);
    let max = ours.max.min(broker_max);
    (min <= max).then_some(max)
}

/// The byte stream under a [`Connection`]: TCP, or TLS over TCP.
trait BrokerStream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> BrokerStream for T {}

/// The broker refused the client's identity (SASL) or the TLS handshake failed. Retrying another
/// broker with the same settings does not help, so [`Client`] gives up at once on this error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticationError(pub String);

impl fmt::Display for AuthenticationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AuthenticationError {}

/// The host part of `host:port` / `[v6]:port`, for TLS server name checks.
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// Runs the TLS handshake over `tcp`; the error names the address and rustls' reason.
async fn tls_handshake(
    addr: &str,
    tcp: TcpStream,
    tls: &std::sync::Arc<rustls::ClientConfig>,
) -> Result<Box<dyn BrokerStream>> {
    let name = rustls::pki_types::ServerName::try_from(host_of(addr).to_string())
        .map_err(|e| anyhow!("{addr}: invalid TLS server name: {e}"))?;
    let connector = tokio_rustls::TlsConnector::from(tls.clone());
    match tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp)).await {
        Ok(Ok(s)) => Ok(Box::new(s)),
        Ok(Err(e)) => {
            let mut msg = format!("{addr}: TLS handshake failed: {e}");
            let tls_error = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
            let garbled = tls_error.is_some_and(|r| {
                matches!(
                    r,
                    rustls::Error::InvalidMessage(_)
                        | rustls::Error::InappropriateHandshakeMessage { .. }
                        | rustls::Error::InappropriateMessage { .. }
                )
            });
            let dropped = matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
            );
            if garbled || dropped {
                msg.push_str(
                    " (does this listener speak TLS? check security.protocol against the \
                     broker's listener)",
                );
            }
            // A certificate or protocol refusal holds for every broker; a dropped connection
            // may be one broker going away.
            if tls_error.is_some() {
                Err(AuthenticationError(msg).into())
            } else {
                Err(anyhow!(msg))
            }
        }
        Err(_) => bail!(
            "{addr}: TLS handshake timed out after {CONNECT_TIMEOUT:?} (does this listener speak \
             TLS? check security.protocol against the broker's listener)"
        ),
    }
}

/// One connection to one broker. Requests are written and responses read in order; several
/// requests may be written before their responses are read (Kafka answers in order per connection).
pub struct Connection {
    addr: String,
    stream: Box<dyn BrokerStream>,
    client_id: StrBytes,
    next_correlation: i32,
    versions: HashMap<i16, i16>,
    write_buf: BytesMut,
    /// The credentials, kept to re-authenticate when the broker limits the session (KIP-368).
    sasl: Option<crate::config::SaslCredentials>,
    /// When to re-authenticate: 85% into the session lifetime the broker announced.
    reauth_at: Option<tokio::time::Instant>,
    /// Requests sent whose responses are not read yet (re-authentication waits for none).
    awaiting: usize,
}

impl Connection {
    /// Connects as `config` says: TCP, the TLS handshake for SSL and SASL_SSL, ApiVersions,
    /// then SaslHandshake and SaslAuthenticate for SASL_PLAINTEXT and SASL_SSL (the order of
    /// Kafka's Java client). A refused identity is an [`AuthenticationError`].
    pub async fn connect(addr: &str, config: &ClientConfig) -> Result<Connection> {
        let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => bail!("cannot connect to {addr}: {e}"),
            Err(_) => bail!("cannot connect to {addr}: timed out after {CONNECT_TIMEOUT:?}"),
        };
        tcp.set_nodelay(true).ok();
        let stream: Box<dyn BrokerStream> = match &config.tls {
            Some(tls) if config.security_protocol.uses_tls() => {
                tls_handshake(addr, tcp, tls).await?
            }
            _ if config.security_protocol.uses_tls() => {
                bail!(
                    "security.protocol {} needs TLS settings",
                    config.security_protocol
                )
            }
            _ => Box::new(tcp),
        };
        let mut conn = Connection {
            addr: addr.to_string(),
            stream,
            client_id: StrBytes::from_string(config.client_id.clone()),
            next_correlation: 1,
            versions: HashMap::new(),
            write_buf: BytesMut::with_capacity(64 * 1024),
            sasl: None,
            reauth_at: None,
            awaiting: 0,
        };
        conn.negotiate_versions().await?;
        if config.security_protocol.uses_sasl() {
            let creds = config.sasl.as_ref().ok_or_else(|| {
                anyhow!(
                    "security.protocol {} needs sasl.mechanism and credentials",
                    config.security_protocol
                )
            })?;
            conn.sasl = Some(creds.clone());
            conn.authenticate().await?;
        }
        Ok(conn)
    }

    /// SASL authentication (again, when the session is about to end); schedules the next one
    /// from the session lifetime the broker answers.
    async fn authenticate(&mut self) -> Result<()> {
        let Some(creds) = self.sasl.clone() else {
            return Ok(());
        };
        self.reauth_at = None;
        let lifetime_ms = crate::sasl::authenticate(self, &creds).await?;
        if lifetime_ms > 0 {
            let ms = (lifetime_ms as u64).saturating_mul(85) / 100;
            self.reauth_at = Some(tokio::time::Instant::now() + Duration::from_millis(ms));
        }
        Ok(())
    }

    /// Re-authenticates first when the session is due and nothing is in flight.
    async fn reauthenticate_if_due(&mut self) -> Result<()> {
        let due = self
            .reauth_at
            .is_some_and(|t| tokio::time::Instant::now() >= t);
        if due && self.awaiting == 0 {
            self.authenticate()
                .await
                .with_context(|| format!("{}: SASL re-authentication", self.addr))?;
        }
        Ok(())
    }

    /// The broker address this connection was opened to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Negotiated version for `key`, or `None` when the broker does not support it.
    pub fn version_of(&self, key: ApiKey) -> Option<i16> {
        self.versions.get(&(key as i16)).copied()
    }

    /// Negotiated version for `key`, or an error naming the API and the broker.
    pub fn version(&self, key: ApiKey) -> Result<i16> {
        self.version_of(key).ok_or_else(|| {
            anyhow!(
                "broker {} does not support {key:?} in any version this client speaks",
                self.addr
            )
        })
    }

    async fn negotiate_versions(&mut self) -> Result<()> {
        let mut version = ApiKey::ApiVersions.valid_versions().max;
        for _ in 0..2 {
            let mut req = ApiVersionsRequest::default();
            req.client_software_name = StrBytes::from_static_str("runnel-cli");
            req.client_software_version = StrBytes::from_static_str(env!("CARGO_PKG_VERSION"));
            let corr = self.write_request(&req, version).await?;
            let mut frame = self.read_frame(corr).await?;
            // ApiVersions responses always use header v0 (the correlation id only).
            let header = ResponseHeader::decode(&mut frame, 0)?;
            if header.correlation_id != corr {
                bail!(
                    "{}: correlation id mismatch (sent {corr}, got {})",
                    self.addr,
                    header.correlation_id
                );
            }
            // A broker that does not know our version answers UNSUPPORTED_VERSION with a v0
            // body listing what it supports; the error code leads the body in every version.
            let code = frame.get(..2).map(|b| i16::from_be_bytes([b[0], b[1]]));
            let decode_version = if code == Some(35) { 0 } else { version };
            let resp = ApiVersionsResponse::decode(&mut frame, decode_version)
                .with_context(|| format!("{}: malformed ApiVersions response", self.addr))?;
            if resp.error_code == 35 {
                let theirs = resp
                    .api_keys
                    .iter()
                    .find(|k| k.api_key == ApiKey::ApiVersions as i16)
                    .map(|k| k.max_version)
                    .unwrap_or(0);
                let next = theirs.min(version - 1).max(0);
                if next == version {
                    bail!("{}: broker rejected every ApiVersions version", self.addr);
                }
                version = next;
                continue;
            }
            check(resp.error_code, None)
                .map_err(|e| anyhow!("{}: ApiVersions failed: {e}", self.addr))?;
            self.versions = resp
                .api_keys
                .iter()
                .filter_map(|k| {
                    negotiate(k.api_key, k.min_version, k.max_version).map(|v| (k.api_key, v))
                })
                .collect();
            return Ok(());
        }
        bail!("{}: could not agree on an ApiVersions version", self.addr)
    }

    /// Writes one request at `version`; returns its correlation id. Read its response with
    /// [`Connection::recv`].
    pub async fn send<R: Request>(&mut self, req: &R, version: i16) -> Result<i32> {
        self.reauthenticate_if_due().await?;
        let corr = self.write_request(req, version).await?;
        self.awaiting += 1;
        Ok(corr)
    }

    /// Writes a request the broker does not answer (a Produce with acks=0).
    pub async fn send_without_response<R: Request>(&mut self, req: &R, version: i16) -> Result<()> {
        self.reauthenticate_if_due().await?;
        self.write_request(req, version).await.map(|_| ())
    }

    /// One request and its response, without the re-authentication check (SASL itself).
    pub(crate) async fn exchange<R: Request>(
        &mut self,
        req: &R,
        version: i16,
    ) -> Result<R::Response> {
        let fut = async {
            let corr = self.write_request(req, version).await?;
            self.awaiting += 1;
            self.recv::<R>(corr, version).await
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
            Ok(r) => r,
            Err(_) => bail!("{}: request timed out after {REQUEST_TIMEOUT:?}", self.addr),
        }
    }

    async fn write_request<R: Request>(&mut self, req: &R, version: i16) -> Result<i32> {
        let key = ApiKey::try_from(R::KEY).map_err(|_| anyhow!("unknown api key {}", R::KEY))?;
        let corr = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1).max(1);
        let mut header = RequestHeader::default();
        header.request_api_key = R::KEY;
        header.request_api_version = version;
        header.correlation_id = corr;
        header.client_id = Some(self.client_id.clone());
        let header_version = key.request_header_version(version);
        let buf = &mut self.write_buf;
        buf.clear();
        buf.put_i32(0);
        header.encode(buf, header_version)?;
        req.encode(buf, version)
            .with_context(|| format!("cannot encode {key:?} v{version}"))?;
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        self.stream
            .write_all(buf)
            .await
            .with_context(|| format!("{}: write failed", self.addr))?;
        // TLS buffers records until flushed; TCP flushes are free.
        self.stream
            .flush()
            .await
            .with_context(|| format!("{}: write failed", self.addr))?;
        Ok(corr)
    }

    async fn read_frame(&mut self, corr: i32) -> Result<Bytes> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).await.with_context(|| {
            format!(
                "{}: connection closed while waiting for response {corr}",
                self.addr
            )
        })?;
        // A TLS record header (alert or handshake, version 3.x) where a frame length belongs:
        // this plaintext connection reached a TLS listener.
        if matches!(len, [0x15 | 0x16, 0x03, 0..=0x04, _]) {
            bail!(
                "{}: the broker answered with TLS: this listener needs security.protocol SSL or \
                 SASL_SSL",
                self.addr
            );
        }
        let len = i32::from_be_bytes(len);
        if len < 4 || len as usize > MAX_FRAME {
            bail!("{}: invalid response frame length {len}", self.addr);
        }
        let mut body = BytesMut::zeroed(len as usize);
        self.stream
            .read_exact(&mut body)
            .await
            .with_context(|| format!("{}: connection closed mid-response", self.addr))?;
        Ok(body.freeze())
    }

    /// Reads the response to the request that was sent with `corr` at `version`.
    pub async fn recv<R: Request>(&mut self, corr: i32, version: i16) -> Result<R::Response> {
        let key = ApiKey::try_from(R::KEY).map_err(|_| anyhow!("unknown api key {}", R::KEY))?;
        self.awaiting = self.awaiting.saturating_sub(1);
        let mut frame = self.read_frame(corr).await?;
        let header = ResponseHeader::decode(&mut frame, key.response_header_version(version))?;
        if header.correlation_id != corr {
            bail!(
                "{}: correlation id mismatch (expected {corr}, got {})",
                self.addr,
                header.correlation_id
            );
        }
        R::Response::decode(&mut frame, version)
            .with_context(|| format!("{}: malformed {key:?} v{version} response", self.addr))
    }

    /// Sends `req` at the negotiated version and waits for its response.
    pub async fn request<R: Request>(&mut self, req: &R) -> Result<R::Response> {
        let key = ApiKey::try_from(R::KEY).map_err(|_| anyhow!("unknown api key {}", R::KEY))?;
        let version = self.version(key)?;
        self.request_at(req, version).await
    }

    /// Sends `req` at an explicit version and waits for its response.
    pub async fn request_at<R: Request>(&mut self, req: &R, version: i16) -> Result<R::Response> {
        self.request_timeout(req, version, REQUEST_TIMEOUT).await
    }

    /// Like [`Connection::request_at`] with a bound of its own (a JoinGroup may legitimately
    /// wait for the whole rebalance timeout).
    pub async fn request_timeout<R: Request>(
        &mut self,
        req: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<R::Response> {
        let fut = async {
            let corr = self.send(req, version).await?;
            self.recv::<R>(corr, version).await
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => bail!("{}: request timed out after {timeout:?}", self.addr),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerMeta {
    pub id: i32,
    pub host: String,
    pub port: i32,
}

impl BrokerMeta {
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMeta {
    pub index: i32,
    pub error_code: i16,
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub offline: Vec<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMeta {
    pub name: String,
    pub id: Uuid,
    pub error_code: i16,
    pub is_internal: bool,
    /// Sorted by partition index.
    pub partitions: Vec<PartitionMeta>,
}

#[derive(Debug, Clone, Default)]
pub struct ClusterMeta {
    pub cluster_id: Option<String>,
    pub controller_id: i32,
    pub brokers: BTreeMap<i32, BrokerMeta>,
    pub topics: BTreeMap<String, TopicMeta>,
}

impl ClusterMeta {
    /// The cluster as a Metadata response describes it (topics without a name are left out).
    pub fn from_response(resp: MetadataResponse) -> ClusterMeta {
        let brokers = resp
            .brokers
            .into_iter()
            .map(|b| {
                let id = b.node_id.0;
                (
                    id,
                    BrokerMeta {
                        id,
                        host: b.host.to_string(),
                        port: b.port,
                    },
                )
            })
            .collect();
        let topics = resp
            .topics
            .into_iter()
            .filter_map(|t| {
                let name = t.name?.0.to_string();
                let mut partitions: Vec<PartitionMeta> = t
                    .partitions
                    .into_iter()
                    .map(|p| PartitionMeta {
                        index: p.partition_index,
                        error_code: p.error_code,
                        leader: p.leader_id.0,
                        leader_epoch: p.leader_epoch,
                        replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                        isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                        offline: p.offline_replicas.iter().map(|b| b.0).collect(),
                    })
                    .collect();
                partitions.sort_by_key(|p| p.index);
                Some((
                    name.clone(),
                    TopicMeta {
                        name,
                        id: t.topic_id,
                        error_code: t.error_code,
                        is_internal: t.is_internal,
                        partitions,
                    },
                ))
            })
            .collect();
        ClusterMeta {
            cluster_id: resp.cluster_id.map(|c| c.to_string()),
            controller_id: resp.controller_id.0,
            brokers,
            topics,
        }
    }
}

/// Where an admin request should go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Any live broker (the bootstrap connection).
    Any,
    /// The controller reported by Metadata, or any broker when none is known.
    Controller,
    /// A specific broker id.
    Broker(i32),
}

/// Splits `host:port,host:port` into addresses; a bare host gets port 9092.
pub fn parse_bootstrap(servers: &str) -> Result<Vec<String>> {
    let list: Vec<String> = servers
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            if s.rsplit_once(':')
                .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            {
                s.to_string()
            } else {
                format!("{s}:9092")
            }
        })
        .collect();
    if list.is_empty() {
        bail!("--bootstrap-server is empty");
    }
    Ok(list)
}

/// A client of one cluster: bootstrap connection, metadata cache, one connection per broker.
pub struct Client {
    config: ClientConfig,
    bootstrap: Vec<String>,
    bootstrap_conn: Option<Connection>,
    conns: HashMap<i32, Connection>,
    /// (kind, group or transactional id) -> coordinator broker id, as FindCoordinator last
    /// answered.
    coordinators: HashMap<(CoordinatorType, String), i32>,
    pub meta: ClusterMeta,
}

impl Client {
    /// Connects to the first reachable bootstrap server and loads the broker list (no topics).
    pub async fn connect(bootstrap: &str, config: &ClientConfig) -> Result<Client> {
        let mut client = Client {
            config: config.clone(),
            bootstrap: parse_bootstrap(bootstrap)?,
            bootstrap_conn: None,
            conns: HashMap::new(),
            coordinators: HashMap::new(),
            meta: ClusterMeta::default(),
        };
        client.any().await?;
        // Brokers and controller only (no topics): enough to route admin requests.
        client.refresh(Some(&[])).await?;
        Ok(client)
    }

    /// The settings every connection of this client uses.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The bootstrap connection, (re)connecting through the bootstrap list and then known brokers.
    /// An [`AuthenticationError`] ends the search at once: other brokers would refuse the same
    /// identity.
    pub async fn any(&mut self) -> Result<&mut Connection> {
        if self.bootstrap_conn.is_none() {
            let mut candidates = self.bootstrap.clone();
            candidates.extend(self.meta.brokers.values().map(BrokerMeta::addr));
            let mut errors = Vec::new();
            for addr in candidates {
                match Connection::connect(&addr, &self.config).await {
                    Ok(c) => {
                        self.bootstrap_conn = Some(c);
                        break;
                    }
                    Err(e) if e.downcast_ref::<AuthenticationError>().is_some() => return Err(e),
                    Err(e) => errors.push(format!("{e:#}")),
                }
            }
            if self.bootstrap_conn.is_none() {
                bail!(
                    "could not connect to any bootstrap server: {}",
                    errors.join("; ")
                );
            }
        }
        self.bootstrap_conn
            .as_mut()
            .ok_or_else(|| anyhow!("no bootstrap connection"))
    }

    /// The connection to broker `id`, connecting on first use.
    pub async fn broker(&mut self, id: i32) -> Result<&mut Connection> {
        if !self.conns.contains_key(&id) {
            let addr = match self.meta.brokers.get(&id) {
                Some(b) => b.addr(),
                None => {
                    self.refresh(Some(&[])).await?;
                    self.meta
                        .brokers
                        .get(&id)
                        .map(BrokerMeta::addr)
                        .ok_or_else(|| anyhow!("broker {id} is not in the cluster metadata"))?
                }
            };
            let conn = Connection::connect(&addr, &self.config)
                .await
                .with_context(|| format!("broker {id}"))?;
            self.conns.insert(id, conn);
        }
        self.conns
            .get_mut(&id)
            .ok_or_else(|| anyhow!("no connection to broker {id}"))
    }

    /// Takes the connection to broker `id` out of the client (for a task that owns it).
    pub async fn take_broker(&mut self, id: i32) -> Result<Connection> {
        self.broker(id).await?;
        self.conns
            .remove(&id)
            .ok_or_else(|| anyhow!("no connection to broker {id}"))
    }

    /// Forgets the connection to broker `id` (after an I/O error); the next use reconnects.
    pub fn drop_broker(&mut self, id: i32) {
        self.conns.remove(&id);
    }

    pub async fn conn(&mut self, target: Target) -> Result<&mut Connection> {
        match target {
            Target::Any => self.any().await,
            Target::Broker(id) => self.broker(id).await,
            Target::Controller => {
                let id = self.meta.controller_id;
                if id >= 0 && self.meta.brokers.contains_key(&id) {
                    self.broker(id).await
                } else {
                    self.any().await
                }
            }
        }
    }

    /// Sends `req` to `target`; a failed connection is dropped so the next call reconnects.
    pub async fn send_to<R: Request>(&mut self, target: Target, req: &R) -> Result<R::Response> {
        let result = self.conn(target).await?.request(req).await;
        if result.is_err() {
            self.forget(target);
        }
        result
    }

    fn forget(&mut self, target: Target) {
        match target {
            Target::Any => self.bootstrap_conn = None,
            Target::Broker(id) => {
                self.conns.remove(&id);
            }
            Target::Controller => {
                let id = self.meta.controller_id;
                if self.conns.remove(&id).is_none() {
                    self.bootstrap_conn = None;
                }
            }
        }
    }

    /// Refreshes metadata for `topics` (all topics when `None`).
    pub async fn refresh(&mut self, topics: Option<&[String]>) -> Result<&ClusterMeta> {
        let conn = self.any().await?;
        let version = conn.version(ApiKey::Metadata)?;
        let mut req = MetadataRequest::default();
        req.topics = match topics {
            // v0 encodes "all topics" as an empty list; later versions use null.
            None if version == 0 => Some(Vec::new()),
            None => None,
            Some(names) => Some(
                names
                    .iter()
                    .map(|n| {
                        let mut t = MetadataRequestTopic::default();
                        t.name = Some(TopicName(StrBytes::from_string(n.clone())));
                        t
                    })
                    .collect(),
            ),
        };
        req.allow_auto_topic_creation = false;
        let resp = match conn.request_at(&req, version).await {
            Ok(r) => r,
            Err(e) => {
                self.bootstrap_conn = None;
                return Err(e.context("metadata request failed"));
            }
        };
        let fresh = ClusterMeta::from_response(resp);
        if topics.is_some() {
            // Keep other topics we already knew about.
            self.meta.brokers = fresh.brokers;
            self.meta.controller_id = fresh.controller_id;
            self.meta.cluster_id = fresh.cluster_id;
            self.meta.topics.extend(fresh.topics);
        } else {
            self.meta = fresh;
        }
        Ok(&self.meta)
    }

    /// Metadata of one topic, refreshed; an error names the topic when it does not exist.
    pub async fn topic(&mut self, name: &str) -> Result<TopicMeta> {
        self.refresh(Some(&[name.to_string()])).await?;
        let t = self
            .meta
            .topics
            .get(name)
            .cloned()
            .ok_or_else(|| anyhow!("topic '{name}' not found in metadata"))?;
        if t.error_code != 0 {
            return Err(anyhow::Error::new(KafkaError::new(t.error_code, None))
                .context(format!("topic '{name}'")));
        }
        Ok(t)
    }
}

/// Kafka error codes the group and transaction tools act on.
pub mod codes {
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const LEADER_NOT_AVAILABLE: i16 = 5;
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
    pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
    pub const NON_EMPTY_GROUP: i16 = 68;
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    pub const MEMBER_ID_REQUIRED: i16 = 79;
    pub const FENCED_INSTANCE_ID: i16 = 82;
    pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
    pub const UNSTABLE_OFFSET_COMMIT: i16 = 88;
    pub const TRANSACTIONAL_ID_NOT_FOUND: i16 = 105;

    /// The coordinator moved or is not ready: find it again and retry.
    pub fn coordinator_moved(code: i16) -> bool {
        matches!(
            code,
            COORDINATOR_LOAD_IN_PROGRESS | COORDINATOR_NOT_AVAILABLE | NOT_COORDINATOR
        )
    }
}

/// How long coordinator requests keep retrying a coordinator that is moving or loading.
const COORDINATOR_PATIENCE: Duration = Duration::from_secs(30);

/// Exponential backoff for retries: 100 ms doubling to 1 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64 << attempt.min(4)).min(Duration::from_secs(1))
}

/// What a coordinator is looked up for: FindCoordinator's `key_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CoordinatorType {
    /// A consumer group's coordinator (key type 0).
    Group,
    /// A transactional id's transaction coordinator (key type 1).
    Transaction,
}

impl CoordinatorType {
    /// FindCoordinator's `key_type` for this kind.
    pub fn key_type(self) -> i8 {
        match self {
            CoordinatorType::Group => 0,
            CoordinatorType::Transaction => 1,
        }
    }

    fn noun(self) -> &'static str {
        match self {
            CoordinatorType::Group => "group",
            CoordinatorType::Transaction => "transactional id",
        }
    }
}

impl Client {
    /// The broker id of `group`'s coordinator (cached; FindCoordinator on a miss). Retries
    /// COORDINATOR_NOT_AVAILABLE and COORDINATOR_LOAD_IN_PROGRESS with backoff.
    pub async fn coordinator(&mut self, group: &str) -> Result<i32> {
        self.coordinator_of(CoordinatorType::Group, group).await
    }

    /// The broker id of the coordinator of `key` (a group or a transactional id), as
    /// [`Client::coordinator`] finds a group's.
    pub async fn coordinator_of(&mut self, kind: CoordinatorType, key: &str) -> Result<i32> {
        let cache_key = (kind, key.to_string());
        if let Some(id) = self.coordinators.get(&cache_key) {
            return Ok(*id);
        }
        let deadline = tokio::time::Instant::now() + COORDINATOR_PATIENCE;
        let mut attempt = 0;
        loop {
            let (code, message, node) = self.find_coordinator_once(kind, key).await?;
            if code == 0 {
                let (id, host, port) = node;
                self.meta
                    .brokers
                    .entry(id)
                    .or_insert(BrokerMeta { id, host, port });
                self.coordinators.insert(cache_key, id);
                return Ok(id);
            }
            let err = KafkaError { code, message };
            if !codes::coordinator_moved(code) || tokio::time::Instant::now() > deadline {
                return Err(anyhow::Error::new(err)
                    .context(format!("FindCoordinator for {} '{key}'", kind.noun())));
            }
            tokio::time::sleep(backoff(attempt)).await;
            attempt += 1;
        }
    }

    async fn find_coordinator_once(
        &mut self,
        kind: CoordinatorType,
        key: &str,
    ) -> Result<(i16, Option<String>, (i32, String, i32))> {
        let conn = self.any().await?;
        let version = conn.version(ApiKey::FindCoordinator)?;
        if kind != CoordinatorType::Group && version < 1 {
            bail!(
                "broker {} cannot look up a {} coordinator (FindCoordinator v1)",
                conn.addr(),
                kind.noun()
            );
        }
        let mut req = FindCoordinatorRequest::default();
        req.key_type = kind.key_type();
        let key = StrBytes::from_string(key.to_string());
        if version >= 4 {
            req.coordinator_keys = vec![key];
        } else {
            req.key = key;
        }
        let resp = match conn.request_at(&req, version).await {
            Ok(r) => r,
            Err(e) => {
                self.bootstrap_conn = None;
                return Err(e.context("FindCoordinator failed"));
            }
        };
        if version >= 4 {
            let c = resp
                .coordinators
                .into_iter()
                .next()
                .ok_or_else(|| anyhow!("FindCoordinator answered no coordinator"))?;
            Ok((
                c.error_code,
                c.error_message.map(|m| m.to_string()),
                (c.node_id.0, c.host.to_string(), c.port),
            ))
        } else {
            Ok((
                resp.error_code,
                resp.error_message.map(|m| m.to_string()),
                (resp.node_id.0, resp.host.to_string(), resp.port),
            ))
        }
    }

    /// Forgets `group`'s coordinator (after NOT_COORDINATOR and friends).
    pub fn forget_coordinator(&mut self, group: &str) {
        self.forget_coordinator_of(CoordinatorType::Group, group);
    }

    /// Forgets the coordinator of `key` and its connection.
    pub fn forget_coordinator_of(&mut self, kind: CoordinatorType, key: &str) {
        if let Some(id) = self.coordinators.remove(&(kind, key.to_string())) {
            self.conns.remove(&id);
        }
    }

    /// Sends `req` to `group`'s coordinator. When the coordinator moved (the error code
    /// `code_of` extracts says so, or the connection failed) it is looked up again and the
    /// request retried with backoff, for up to 30 s.
    pub async fn send_to_coordinator<R: Request>(
        &mut self,
        group: &str,
        req: &R,
        code_of: impl Fn(&R::Response) -> i16,
    ) -> Result<R::Response> {
        self.send_to_coordinator_of(CoordinatorType::Group, group, req, code_of)
            .await
            .map(|(_, r)| r)
    }

    /// Sends `req` to the coordinator of `key` (a group or a transactional id), retrying as
    /// [`Client::send_to_coordinator`] does; answers the coordinator's broker id with the
    /// response.
    pub async fn send_to_coordinator_of<R: Request>(
        &mut self,
        kind: CoordinatorType,
        key: &str,
        req: &R,
        code_of: impl Fn(&R::Response) -> i16,
    ) -> Result<(i32, R::Response)> {
        let deadline = tokio::time::Instant::now() + COORDINATOR_PATIENCE;
        let mut attempt = 0;
        loop {
            let id = self.coordinator_of(kind, key).await?;
            let result = self.send_to(Target::Broker(id), req).await;
            let retry = match &result {
                Ok(resp) => codes::coordinator_moved(code_of(resp)),
                Err(_) => true,
            };
            if !retry || tokio::time::Instant::now() > deadline {
                return result.map(|r| (id, r));
            }
            self.forget_coordinator_of(kind, key);
            tokio::time::sleep(backoff(attempt)).await;
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_kafka_names() {
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(36), "TOPIC_ALREADY_EXISTS");
        assert_eq!(error_name(6), "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(0), "NONE");
        assert_eq!(error_name(9999), "UNKNOWN_ERROR_CODE(9999)");
        let e = KafkaError::new(36, Some(&StrBytes::from_static_str("Topic 't' exists.")));
        assert_eq!(e.to_string(), "TOPIC_ALREADY_EXISTS: Topic 't' exists.");
    }

    #[test]
    fn negotiation_picks_highest_common_version() {
        let ours = ApiKey::Metadata.valid_versions();
        assert_eq!(negotiate(ApiKey::Metadata as i16, 0, 9), Some(9));
        assert_eq!(
            negotiate(ApiKey::Metadata as i16, 0, ours.max + 5),
            Some(ours.max)
        );
        // Produce below v3 no longer exists on our side.
        assert_eq!(negotiate(ApiKey::Produce as i16, 0, 2), None);
        assert_eq!(negotiate(9999, 0, 3), None);
    }

    /// A fake broker that only knows ApiVersions v0-2: it answers a newer ApiVersions with
    /// UNSUPPORTED_VERSION in a v0 body, as Kafka does, then answers the retry normally.
    #[tokio::test]
    async fn api_versions_falls_back_to_what_the_broker_supports() {
        use kafka_protocol::messages::api_versions_response::ApiVersion;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let broker = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            for _ in 0..2 {
                let mut len = [0u8; 4];
                sock.read_exact(&mut len).await.unwrap();
                let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
                sock.read_exact(&mut body).await.unwrap();
                let version = i16::from_be_bytes([body[2], body[3]]);
                let corr = i32::from_be_bytes([body[4], body[5], body[6], body[7]]);
                seen.push(version);
                let key = |k: ApiKey, min, max| {
                    let mut v = ApiVersion::default();
                    v.api_key = k as i16;
                    v.min_version = min;
                    v.max_version = max;
                    v
                };
                let mut resp = ApiVersionsResponse::default();
                resp.api_keys = vec![key(ApiKey::ApiVersions, 0, 2), key(ApiKey::Metadata, 0, 9)];
                let body_version = if version > 2 {
                    resp.error_code = 35;
                    0
                } else {
                    version
                };
                let mut out = BytesMut::new();
                out.put_i32(0);
                let mut header = ResponseHeader::default();
                header.correlation_id = corr;
                header.encode(&mut out, 0).unwrap();
                resp.encode(&mut out, body_version).unwrap();
                let n = (out.len() - 4) as i32;
                out[..4].copy_from_slice(&n.to_be_bytes());
                sock.write_all(&out).await.unwrap();
            }
            seen
        });
        let conn = Connection::connect(&addr, &ClientConfig::new("test"))
            .await
            .unwrap();
        assert_eq!(conn.version_of(ApiKey::ApiVersions), Some(2));
        assert_eq!(conn.version_of(ApiKey::Metadata), Some(9));
        assert_eq!(conn.version_of(ApiKey::Produce), None);
        let seen = broker.await.unwrap();
        assert_eq!(seen, vec![ApiKey::ApiVersions.valid_versions().max, 2]);
    }

    #[tokio::test]
    async fn connection_refused_names_the_address() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let err = Client::connect(&addr, &ClientConfig::new("test"))
            .await
            .err()
            .unwrap();
        let msg = format!("{err:#}");
        assert!(msg.contains(&addr), "{msg}");
        assert!(
            msg.contains("could not connect to any bootstrap server"),
            "{msg}"
        );
    }

    /// A scripted coordinator: FindCoordinator answers COORDINATOR_LOAD_IN_PROGRESS once, and
    /// DescribeGroups answers NOT_COORDINATOR once; the client must find the coordinator again
    /// each time and retry until the real answer.
    #[tokio::test]
    async fn coordinator_moves_are_rediscovered_and_retried() {
        use kafka_protocol::messages::api_versions_response::ApiVersion;
        use kafka_protocol::messages::describe_groups_response::DescribedGroup;
        use kafka_protocol::messages::find_coordinator_response::Coordinator;
        use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
        use kafka_protocol::messages::{
            BrokerId, DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorResponse,
            GroupId,
        };
        use std::sync::{Arc, Mutex};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port() as i32;
        let seen: Arc<Mutex<Vec<ApiKey>>> = Arc::default();
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    loop {
                        let mut len = [0u8; 4];
                        if sock.read_exact(&mut len).await.is_err() {
                            return;
                        }
                        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
                        sock.read_exact(&mut body).await.unwrap();
                        let key = ApiKey::try_from(i16::from_be_bytes([body[0], body[1]])).unwrap();
                        let version = i16::from_be_bytes([body[2], body[3]]);
                        let mut buf = Bytes::from(body);
                        let header =
                            RequestHeader::decode(&mut buf, key.request_header_version(version))
                                .unwrap();
                        let earlier = {
                            let mut l = log.lock().unwrap();
                            l.push(key);
                            l.iter().filter(|k| **k == key).count() - 1
                        };
                        let mut out = BytesMut::new();
                        out.put_i32(0);
                        let mut rh = ResponseHeader::default();
                        rh.correlation_id = header.correlation_id;
                        rh.encode(&mut out, key.response_header_version(version))
                            .unwrap();
                        match key {
                            ApiKey::ApiVersions => {
                                let v = |k: ApiKey, max| {
                                    let mut a = ApiVersion::default();
                                    a.api_key = k as i16;
                                    a.max_version = max;
                                    a
                                };
                                let mut r = ApiVersionsResponse::default();
                                r.api_keys = vec![
                                    v(ApiKey::ApiVersions, 3),
                                    v(ApiKey::Metadata, 12),
                                    v(ApiKey::FindCoordinator, 6),
                                    v(ApiKey::DescribeGroups, 5),
                                ];
                                r.encode(&mut out, version).unwrap();
                            }
                            ApiKey::Metadata => {
                                let mut b = MetadataResponseBroker::default();
                                b.node_id = BrokerId(1);
                                b.host = StrBytes::from_static_str("127.0.0.1");
                                b.port = port;
                                let mut r = MetadataResponse::default();
                                r.brokers = vec![b];
                                r.encode(&mut out, version).unwrap();
                            }
                            ApiKey::FindCoordinator => {
                                let mut c = Coordinator::default();
                                c.key = StrBytes::from_static_str("g");
                                if earlier == 0 {
                                    c.error_code = codes::COORDINATOR_LOAD_IN_PROGRESS;
                                    c.node_id = BrokerId(-1);
                                } else {
                                    c.node_id = BrokerId(1);
                                    c.host = StrBytes::from_static_str("127.0.0.1");
                                    c.port = port;
                                }
                                let mut r = FindCoordinatorResponse::default();
                                r.coordinators = vec![c];
                                r.encode(&mut out, version).unwrap();
                            }
                            ApiKey::DescribeGroups => {
                                let mut g = DescribedGroup::default();
                                g.group_id = GroupId(StrBytes::from_static_str("g"));
                                if earlier == 0 {
                                    g.error_code = codes::NOT_COORDINATOR;
                                } else {
                                    g.group_state = StrBytes::from_static_str("Stable");
                                }
                                let mut r = DescribeGroupsResponse::default();
                                r.groups = vec![g];
                                r.encode(&mut out, version).unwrap();
                            }
                            other => panic!("unexpected {other:?}"),
                        }
                        let n = (out.len() - 4) as i32;
                        out[..4].copy_from_slice(&n.to_be_bytes());
                        sock.write_all(&out).await.unwrap();
                    }
                });
            }
        });
        let mut client = Client::connect(&format!("127.0.0.1:{port}"), &ClientConfig::new("test"))
            .await
            .unwrap();
        let mut req = DescribeGroupsRequest::default();
        req.groups = vec![GroupId(StrBytes::from_static_str("g"))];
        let resp = client
            .send_to_coordinator("g", &req, |r| r.groups[0].error_code)
            .await
            .unwrap();
        assert_eq!(resp.groups[0].error_code, 0);
        assert_eq!(resp.groups[0].group_state.as_str(), "Stable");
        let count = |k: ApiKey| seen.lock().unwrap().iter().filter(|s| **s == k).count();
        // Loading, found, (NOT_COORDINATOR: forgotten) found again.
        assert_eq!(count(ApiKey::FindCoordinator), 3);
        assert_eq!(count(ApiKey::DescribeGroups), 2);
    }

    #[test]
    fn bootstrap_parsing() {
        assert_eq!(
            parse_bootstrap("a:1, b ,c:3").unwrap(),
            vec!["a:1", "b:9092", "c:3"]
        );
        assert!(parse_bootstrap(" , ").is_err());
    }
}
