//! Broker configuration: Kafka property names, a properties-file reader, defaults, validation.
//!
//! Configuration is built in layers (defaults < properties file < command-line flags < `--set`),
//! validated once by [`BrokerConfig::from_properties`], and frozen. Every key a user can write is
//! declared in [`BROKER_PROPS`]; unknown keys and invalid values fail start-up with a message
//! naming the key.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use runnel_controller::managers::ManagerConfig;
use runnel_controller::rpc::tls::RpcTlsConfig;
use runnel_controller::{NodeConfig, Roles};

pub use runnel_controller::scram_bootstrap::parse_add_scram;

use crate::context::SecurityProtocol;
use crate::listener_security;
use crate::topic_config::{self, ConfigType};

pub use runnel_coordinator::group::config::{CoordinatorSettings, GroupConfig};
pub use runnel_coordinator::txn::TxnConfig;

/// How `__transaction_state` is created, and the transaction coordinator's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransactionSettings {
    /// `transaction.state.log.num.partitions`, used only when the topic does not exist yet.
    pub num_partitions: i32,
    /// `transaction.state.log.replication.factor` (capped at the registered brokers).
    pub replication_factor: i16,
    /// `transaction.state.log.min.isr` (capped at the replication factor).
    pub min_isr: i32,
    /// `transaction.state.log.segment.bytes`.
    pub segment_bytes: i32,
    /// `transaction.partition.verification.enable`: a partition leader asks the transaction
    /// coordinator before a producer's batch opens a transaction on the partition.
    pub partition_verification: bool,
    pub coordinator: TxnConfig,
}

impl Default for TransactionSettings {
    fn default() -> Self {
        TransactionSettings {
            num_partitions: 50,
            replication_factor: 3,
            min_isr: 2,
            segment_bytes: 104_857_600,
            partition_verification: true,
            coordinator: TxnConfig::default(),
        }
    }
}

/// Most partitions `offsets.topic.num.partitions` may ask for.
pub const MAX_OFFSETS_TOPIC_PARTITIONS: i64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown configuration property '{0}'")]
    Unknown(String),
    #[error("invalid value '{value}' for configuration property '{key}': {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: String,
    },
    #[error("cannot read properties file {path}: {cause}")]
    Io { path: String, cause: std::io::Error },
    #[error("{0}")]
    Other(String),
}

/// How a declared broker property is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// Runnel implements it.
    Used,
    /// A Kafka property that Runnel accepts so existing server.properties files start, but that
    /// has no effect yet (logged at start-up).
    Accepted,
}

/// A declared broker property.
#[derive(Debug, Clone, Copy)]
pub struct BrokerProp {
    pub name: &'static str,
    pub ty: ConfigType,
    pub default: Option<&'static str>,
    pub usage: Usage,
    pub doc: &'static str,
}

const fn used(
    name: &'static str,
    ty: ConfigType,
    default: Option<&'static str>,
    doc: &'static str,
) -> BrokerProp {
    BrokerProp {
        name,
        ty,
        default,
        usage: Usage::Used,
        doc,
    }
}

const fn accepted(name: &'static str, ty: ConfigType, default: Option<&'static str>) -> BrokerProp {
    BrokerProp {
        name,
        ty,
        default,
        usage: Usage::Accepted,
        doc: "Accepted for compatibility with Kafka's server.properties; no effect in Runnel yet.",
    }
}

use ConfigType::*;

/// Every broker property Runnel understands, with Kafka's names, types and defaults.
pub const BROKER_PROPS: &[BrokerProp] = &[
    used("node.id", Int, Some("1"), "The node id of this server."),
    used("broker.id", Int, None, "Alias of node.id."),
    used("log.dirs", Str, Some("./runnel-data"), "The data directory (only one is supported)."),
    used("log.dir", Str, None, "Alias of log.dirs."),
    used("listeners", List, Some("PLAINTEXT://:9092"), "Listeners for Kafka clients, NAME://HOST:PORT,... (CONTROLLER entries are skipped). Each name is registered; a client is given the addresses of the listener it connected to."),
    used("advertised.listeners", List, None, "Addresses given to clients in Metadata, NAME://HOST:PORT,... matched to listeners by name; a listener without one advertises its own address, or the host name when listening on all interfaces. With neither listeners nor advertised.listeners set, localhost:9092 is advertised (as Kafka's quickstart configuration does), so clients on the same machine work whatever the host name."),
    used("num.partitions", Int, Some("1"), "Default number of partitions of a new topic."),
    used("default.replication.factor", Short, Some("1"), "Default replication factor of a new topic."),
    used("auto.create.topics.enable", Boolean, Some("true"), "Create a topic when a client asks for metadata of an unknown one."),
    used("delete.topic.enable", Boolean, Some("true"), "Allow DeleteTopics."),
    used("message.max.bytes", Int, Some("1048588"), "Largest record batch accepted (topic: max.message.bytes)."),
    used("socket.request.max.bytes", Int, Some("104857600"), "Largest request frame accepted; larger frames close the connection. A frame's buffer grows as its bytes arrive."),
    used("max.partitions", Int, Some("100000"), "The most partitions the cluster may have: a CreateTopics or CreatePartitions that would go above it is refused with INVALID_PARTITIONS (the offsets topic is never held back). Set on the controllers; Kafka has no such limit (KIP-578 proposed one)."),
    used("max.broker.partitions", Int, Some("2147483647"), "The most partition replicas one broker may hold: a CreateTopics or CreatePartitions that would place more on any broker is refused with INVALID_PARTITIONS naming the broker (placement does not steer around a full broker; an explicit assignment can). The offsets topic is never held back. Set on the controllers (KIP-578)."),
    used("quota.window.num", Int, Some("11"), "Samples a client quota's rate is measured over (produce, fetch and request quotas)."),
    used("quota.window.size.seconds", Int, Some("1"), "Span of each client quota sample, in seconds."),
    used("controller.quota.window.num", Int, Some("11"), "Samples of the controller mutation quota: with the sample span, how many seconds of partition mutations a client may spend at once."),
    used("controller.quota.window.size.seconds", Int, Some("1"), "Span of each controller mutation quota sample, in seconds."),
    used("fetch.max.bytes", Int, Some("57671680"), "Most record bytes in one Fetch response, whatever the request asks for (at least one batch is returned)."),
    used("queued.max.request.bytes", Long, Some("536870912"), "Bytes of responses computed but not yet sent, over all connections, above which connections stop being read until their clients read (Kafka's default is unbounded; Runnel bounds it). -1: no broker-wide bound; each connection is still bounded by fetch.max.bytes."),
    used("max.connections", Int, Some("2147483647"), "Client connections over all listeners; at the limit, new connections wait to be accepted until one closes."),
    used("max.connections.per.ip", Int, Some("2147483647"), "Client connections from one address; above it a new connection is closed at once."),
    used("max.connections.per.ip.overrides", Str, Some(""), "Per-address limits overriding max.connections.per.ip, ADDRESS:COUNT,..."),
    used("connections.max.idle.ms", Long, Some("600000"), "A connection with no complete request and no response for this long is closed (a frame that never completes counts as idle)."),
    used("log.retention.ms", Long, None, "Retention time (topic: retention.ms). Takes precedence over minutes and hours."),
    used("log.retention.minutes", Int, None, "Retention time in minutes."),
    used("log.retention.hours", Int, Some("168"), "Retention time in hours."),
    used("log.retention.bytes", Long, Some("-1"), "Retention size per partition (topic: retention.bytes)."),
    used("log.segment.bytes", Int, Some("1073741824"), "Segment size (topic: segment.bytes); at least 1 MiB, as in Kafka 4."),
    used("log.roll.ms", Long, None, "Segment age before a roll (topic: segment.ms)."),
    used("log.roll.hours", Int, Some("168"), "Segment age before a roll, in hours."),
    used("log.index.interval.bytes", Int, Some("4096"), "Bytes between offset index entries (topic: index.interval.bytes)."),
    used("log.index.size.max.bytes", Int, Some("10485760"), "Maximum index file size (topic: segment.index.bytes)."),
    used("log.flush.interval.messages", Long, Some("9223372036854775807"), "fsync after this many messages (topic: flush.messages)."),
    used("log.flush.interval.ms", Long, None, "fsync when data is this old (topic: flush.ms)."),
    used("log.flush.scheduler.interval.ms", Long, Some("1000"), "How often the flush and roll check runs."),
    used("log.retention.check.interval.ms", Long, Some("300000"), "How often retention is enforced."),
    used("producer.id.expiration.ms", Int, Some("86400000"), "A partition forgets an idempotent producer that has not written to it for this long; its next batch is taken as a new producer's."),
    used("producer.id.expiration.check.interval.ms", Int, Some("600000"), "How often partitions look for idle producer ids."),
    used("log.message.timestamp.type", Str, Some("CreateTime"), "CreateTime or LogAppendTime (topic: message.timestamp.type)."),
    used("log.cleanup.policy", List, Some("delete"), "delete and/or compact (topic: cleanup.policy)."),
    used("log.cleaner.enable", Boolean, Some("true"), "Run the log cleaner, which compacts topics with cleanup.policy=compact."),
    used("log.cleaner.threads", Int, Some("1"), "Logs cleaned at the same time."),
    used("log.cleaner.backoff.ms", Long, Some("15000"), "Pause of the cleaner when no log needs cleaning."),
    used("log.cleaner.dedupe.buffer.size", Long, Some("134217728"), "Memory for the cleaner's key maps over all cleaner threads; when a log's dirty keys do not fit, a prefix of its dirty section is cleaned."),
    used("log.cleaner.min.cleanable.ratio", Double, Some("0.5"), "Default dirty ratio above which a log is cleaned (topic: min.cleanable.dirty.ratio)."),
    used("log.cleaner.delete.retention.ms", Long, Some("86400000"), "How long tombstones are kept on compacted topics (topic: delete.retention.ms)."),
    used("log.cleaner.min.compaction.lag.ms", Long, Some("0"), "Records newer than this are not compacted (topic: min.compaction.lag.ms)."),
    used("log.cleaner.max.compaction.lag.ms", Long, Some("9223372036854775807"), "Records older than this are compacted whatever the dirty ratio (topic: max.compaction.lag.ms)."),
    used("min.insync.replicas", Int, Some("1"), "Minimum in-sync replicas for acks=all (topic: min.insync.replicas)."),
    used("compression.type", Str, Some("producer"), "Topic compression (topic: compression.type); only 'producer' is implemented."),
    used("unclean.leader.election.enable", Boolean, Some("false"), "Topic default for unclean.leader.election.enable."),
    used("metrics.prometheus.listen", Str, None, "HOST:PORT for a Prometheus /metrics endpoint (Runnel-specific)."),
    used("process.roles", List, Some("broker,controller"), "Roles of this node: broker,controller (default) or broker. A controller-only node is not supported yet."),
    used("controller.quorum.voters", List, None, "Static metadata quorum voters, ID@HOST:PORT,... (HOST:PORT is the voter's inter-node gRPC address). Unset: a standalone single-node quorum."),
    used("rpc.listen", Str, None, "HOST:PORT the inter-node gRPC server binds (Runnel-specific; --rpc-listen). Defaults to this node's voter entry."),
    used("rpc.advertised", Str, None, "HOST:PORT other nodes reach this node's gRPC server at (Runnel-specific). Defaults to the voter entry, else rpc.listen."),
    used("rpc.ssl.keystore.location", Str, None, "PEM file with this node's private key (unencrypted PKCS#8, PKCS#1 or SEC1) and its certificate chain, for mutual TLS on the inter-node gRPC port (Runnel-specific). The node certificate names the node in the SAN URI urn:runnel:node:<node.id> and carries the host names and addresses other nodes dial. Set together with rpc.ssl.truststore.location; unset, the gRPC port is plaintext and unauthenticated."),
    used("rpc.ssl.truststore.location", Str, None, "PEM file with the CA certificates node certificates on the inter-node gRPC port must chain to (Runnel-specific). Every caller must present such a certificate, and may speak only for the node its certificate names."),
    used("broker.rack", Str, None, "Rack of this broker, reported in Metadata and DescribeCluster."),
    used("broker.heartbeat.interval.ms", Long, Some("1000"), "How often the broker heartbeats to the active controller."),
    used("broker.session.timeout.ms", Long, Some("6000"), "A broker without a heartbeat for this long is fenced."),
    used("controller.quorum.election.timeout.ms", Long, Some("1000"), "Raft election timeout of the metadata quorum (randomised between 1x and 2x)."),
    used("metadata.snapshot.interval.entries", Long, Some("1000"), "Metadata log entries between snapshots of the metadata image (Runnel-specific)."),
    used("offsets.topic.replication.factor", Short, Some("3"), "Replication factor of __consumer_offsets; capped at the number of registered brokers when it is created, which waits until that many are live."),
    used("offsets.topic.num.partitions", Int, Some("50"), "Partitions of __consumer_offsets (fixed once it exists)."),
    used("group.initial.rebalance.delay.ms", Int, Some("3000"), "Delay before the first rebalance of a new group."),
    used("group.min.session.timeout.ms", Int, Some("6000"), "Shortest session timeout a group member may ask for; a JoinGroup below it gets INVALID_SESSION_TIMEOUT."),
    used("group.max.session.timeout.ms", Int, Some("1800000"), "Longest session timeout a group member may ask for; a JoinGroup above it gets INVALID_SESSION_TIMEOUT."),
    used("group.max.size", Int, Some("2147483647"), "Members a consumer group may have; a new member of a full group gets GROUP_MAX_SIZE_REACHED."),
    used("offsets.retention.minutes", Int, Some("10080"), "Committed offsets of a group that has been empty this long are deleted (also offsets committed without a group, and offsets of topics a stable group no longer subscribes to, this long after their commit)."),
    used("offsets.retention.check.interval.ms", Long, Some("600000"), "How often committed offsets are checked for expiry, and for topic partitions that no longer exist (offsets of a deleted topic are otherwise removed as soon as the deletion is seen)."),
    used("offsets.commit.timeout.ms", Int, Some("5000"), "How long an offset commit or group metadata write waits for the in-sync replicas of its __consumer_offsets partition."),
    used("transaction.state.log.num.partitions", Int, Some("50"), "Partitions of __transaction_state (fixed once it exists). The coordinator of a transactional id is the leader of partition abs(javaHashCode(id)) % partitions."),
    used("transaction.state.log.replication.factor", Short, Some("3"), "Replication factor of __transaction_state; capped at the number of registered brokers when it is created, which waits until that many are live."),
    used("transaction.state.log.min.isr", Int, Some("2"), "min.insync.replicas of __transaction_state (capped at its replication factor)."),
    used("transaction.state.log.segment.bytes", Int, Some("104857600"), "Segment size of __transaction_state."),
    used("transaction.partition.verification.enable", Boolean, Some("true"), "Before a producer's first transactional batch on a partition opens a transaction there, the partition leader asks the transaction coordinator whether the partition is in the producer's transaction; a batch whose transaction has ended (a late retry) is refused with INVALID_TXN_STATE instead of leaving a transaction open that nothing will close."),
    used("transaction.max.timeout.ms", Int, Some("900000"), "Longest transaction.timeout.ms a producer may ask for; InitProducerId above it gets INVALID_TRANSACTION_TIMEOUT."),
    used("transactional.id.expiration.ms", Int, Some("604800000"), "A transactional id with no transaction for this long is forgotten (its state is removed from __transaction_state)."),
    used("transaction.abort.timed.out.transaction.cleanup.interval.ms", Int, Some("10000"), "How often the transaction coordinator aborts transactions open longer than their timeout."),
    used("transaction.remove.expired.transaction.cleanup.interval.ms", Int, Some("3600000"), "How often the transaction coordinator removes expired transactional ids."),
    used("replica.lag.time.max.ms", Long, Some("30000"), "A follower that has not caught up with the leader for this long leaves the ISR."),
    used("replica.fetch.wait.max.ms", Int, Some("500"), "Longest a follower's fetch waits at the leader for data."),
    used("replica.fetch.min.bytes", Int, Some("1"), "Bytes a follower's fetch waits for at the leader."),
    used("replica.fetch.max.bytes", Int, Some("1048576"), "Bytes a follower fetches per partition per request (at least one batch)."),
    used("replica.fetch.response.max.bytes", Int, Some("10485760"), "Bytes a follower fetches per request over all partitions (at least one batch)."),
    used("replica.high.watermark.checkpoint.interval.ms", Long, Some("5000"), "How often high watermarks are written to replication-offset-checkpoint."),
    used("replica.fetch.backoff.ms", Int, Some("1000"), "Pause after a failed replica fetch."),
    used("auto.leader.rebalance.enable", Boolean, Some("true"), "The active controller moves leadership back to each partition's preferred (first) replica when it is in the ISR."),
    used("leader.imbalance.check.interval.seconds", Long, Some("300"), "How often the active controller looks for partitions not led by their preferred replica."),
    used("controlled.shutdown.enable", Boolean, Some("true"), "On SIGTERM, ask the controller to move this broker's leaderships away before stopping."),
    used("controlled.shutdown.timeout.ms", Long, Some("30000"), "Longest a controlled shutdown waits for leaderships to move (Runnel-specific)."),
    used("listener.security.protocol.map", List, Some("PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL"), "Security protocol of each listener name, NAME:PROTOCOL,... (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL). A listener named after a protocol needs no entry."),
    used("ssl.keystore.type", Str, Some("PEM"), "Format of the key store; only PEM is supported. Per listener: listener.name.<name>.ssl.keystore.type."),
    used("ssl.keystore.location", Str, None, "PEM file with the listener's private key and certificate chain. Reloaded when the file changes."),
    used("ssl.keystore.key", Password, None, "The private key in PEM, inline (instead of ssl.keystore.location)."),
    used("ssl.keystore.certificate.chain", Password, None, "The certificate chain in PEM, inline (with ssl.keystore.key)."),
    used("ssl.key.password", Password, None, "Password of an encrypted PKCS#8 private key."),
    used("ssl.truststore.type", Str, Some("PEM"), "Format of the trust store; only PEM is supported."),
    used("ssl.truststore.location", Str, None, "PEM file with the CA certificates client certificates must chain to."),
    used("ssl.truststore.certificates", Password, None, "The trusted CA certificates in PEM, inline (instead of ssl.truststore.location)."),
    used("ssl.client.auth", Str, Some("none"), "Client certificates on SSL listeners: none, requested or required. With a certificate, the principal is its subject, mapped by ssl.principal.mapping.rules."),
    used("ssl.enabled.protocols", List, Some("TLSv1.2,TLSv1.3"), "TLS versions accepted (TLSv1.2, TLSv1.3)."),
    used("ssl.cipher.suites", List, None, "TLS cipher suites accepted, by IANA name; empty: the TLS library's secure defaults."),
    used("ssl.principal.mapping.rules", Str, Some("DEFAULT"), "Rules mapping a client certificate's subject to a principal name, RULE:pattern/replacement/[LU],...,DEFAULT, as in Kafka."),
    used("ssl.reload.interval.ms", Long, Some("10000"), "How often certificate and key files are checked for changes; changed files are loaded for new connections (Runnel-specific)."),
    used("sasl.enabled.mechanisms", List, Some("PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"), "SASL mechanisms of SASL listeners: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 (GSSAPI and OAUTHBEARER are refused). Per listener: listener.name.<name>.sasl.enabled.mechanisms."),
    used("sasl.server.max.receive.size", Int, Some("524288"), "Largest SASL token accepted before authentication."),
    used("connections.max.reauth.ms", Long, Some("0"), "Session lifetime of a SASL connection; a client re-authenticates before it ends (KIP-368), else its connection is closed. 0: sessions do not expire."),
    used("connection.failed.authentication.delay.ms", Int, Some("100"), "Delay before a connection whose authentication failed is answered and closed."),
    used("authorizer.class.name", Str, Some(""), "org.apache.kafka.metadata.authorizer.StandardAuthorizer (or 'standard') turns on ACL authorization; empty: every request is allowed."),
    used("super.users", List, None, "Principals that pass every authorization check, User:name;User:other (semicolon-separated, as in Kafka)."),
    used("allow.everyone.if.no.acl.found", Boolean, Some("false"), "With the authorizer on, allow a request on a resource no ACL names at all."),
    accepted("controller.quorum.bootstrap.servers", List, None),
    accepted("controller.listener.names", List, None),
    accepted("sasl.mechanism.inter.broker.protocol", Str, None),
    accepted("sasl.mechanism.controller.protocol", Str, None),
    accepted("ssl.protocol", Str, Some("TLSv1.3")),
    accepted("ssl.endpoint.identification.algorithm", Str, Some("https")),
    accepted("inter.broker.listener.name", Str, None),
    accepted("num.network.threads", Int, Some("3")),
    accepted("num.io.threads", Int, Some("8")),
    accepted("socket.send.buffer.bytes", Int, Some("102400")),
    accepted("socket.receive.buffer.bytes", Int, Some("102400")),
    accepted("num.recovery.threads.per.data.dir", Int, Some("2")),
    accepted("share.coordinator.state.topic.replication.factor", Short, Some("3")),
    accepted("share.coordinator.state.topic.min.isr", Int, Some("2")),
];

pub fn broker_prop(name: &str) -> Option<&'static BrokerProp> {
    BROKER_PROPS.iter().find(|p| p.name == name)
}

/// Reads a Java-style properties file: `key=value`, `key: value` or `key value`, `#` and `!`
/// comments, and backslash line continuations.
pub fn parse_properties(text: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    let mut logical = String::new();
    for raw in text.lines() {
        let line = if logical.is_empty() {
            raw.trim_start()
        } else {
            raw.trim()
        };
        if logical.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with('!'))
        {
            continue;
        }
        if let Some(stripped) = line.strip_suffix('\\') {
            if !stripped.ends_with('\\') {
                logical.push_str(stripped);
                continue;
            }
        }
        logical.push_str(line);
        let entry = std::mem::take(&mut logical);
        let sep = entry
            .find(|c: char| c == '=' || c == ':' || c.is_whitespace())
            .unwrap_or(entry.len());
        let key = entry[..sep].trim().to_string();
        let mut rest = entry[sep..].trim_start();
        if rest.starts_with('=') || rest.starts_with(':') {
            rest = rest[1..].trim_start();
        }
        if key.is_empty() {
            return Err(ConfigError::Other(format!(
                "properties line without a key: '{entry}'"
            )));
        }
        out.push((key, rest.trim_end().to_string()));
    }
    Ok(out)
}

/// A host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Parses `HOST:PORT`, `:PORT`, `[v6]:PORT` or a Kafka listener `NAME://HOST:PORT`.
pub fn parse_host_port(s: &str) -> Result<HostPort, String> {
    let s = s.trim();
    let s = match s.find("://") {
        Some(i) => &s[i + 3..],
        None => s,
    };
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']').ok_or("unclosed '[' in address")?;
        let port = rest[end + 1..]
            .strip_prefix(':')
            .ok_or("missing ':PORT' after ']'")?;
        (rest[..end].to_string(), port)
    } else {
        let i = s.rfind(':').ok_or("expected HOST:PORT")?;
        (s[..i].to_string(), &s[i + 1..])
    };
    let port: u16 = port.parse().map_err(|_| format!("invalid port '{port}'"))?;
    Ok(HostPort { host, port })
}

/// One client listener: its name (`PLAINTEXT`, `INTERNAL`, ...), what it binds, and the
/// address advertised to clients that connect through it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub listen: HostPort,
    /// `None` until resolved at start-up (see `BrokerConfig::resolve_listener_advertised`).
    pub advertised: Option<HostPort>,
    /// From `listener.security.protocol.map`, else the protocol the listener is named after.
    pub protocol: SecurityProtocol,
    /// The ssl.*, SASL and re-authentication properties in force on this listener
    /// (`listener.name.<name>.<property>` over the global property); JAAS configurations
    /// under `<mechanism>.sasl.jaas.config`.
    pub security: BTreeMap<String, String>,
}

/// The listener name of a Kafka listener entry `NAME://HOST:PORT` (upper case; `PLAINTEXT`
/// when the entry is a bare `HOST:PORT`).
fn listener_name(entry: &str) -> String {
    match entry.find("://") {
        Some(i) => entry[..i].trim().to_ascii_uppercase(),
        None => "PLAINTEXT".to_string(),
    }
}

/// The entries of a Kafka listener list, as (name, address), skipping the CONTROLLER listener
/// (the controller quorum talks gRPC on `rpc.listen`, not on a Kafka listener).
fn parse_listener_list(list: &str) -> Result<Vec<(String, HostPort)>, String> {
    let mut out: Vec<(String, HostPort)> = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let name = listener_name(entry);
        if name == "CONTROLLER" {
            continue;
        }
        if name.is_empty() {
            return Err(format!("listener '{entry}' has an empty name"));
        }
        let hp = parse_host_port(entry)?;
        if out.iter().any(|(n, _)| *n == name) {
            return Err(format!("listener name {name} appears twice"));
        }
        out.push((name, hp));
    }
    if out.is_empty() {
        return Err("no listener given".into());
    }
    Ok(out)
}

/// The metadata log's directory under `log.dirs`.
pub const METADATA_DIR: &str = "__cluster_metadata-0";

/// The voter address of a standalone node that runs no gRPC server: nobody ever dials it.
const STANDALONE_RPC_PLACEHOLDER: &str = "127.0.0.1:0";

/// The socket address to bind for `hp`: its address when it is one, every interface on its
/// port when it is a host name (a docker service name, say) or empty.
fn bind_addr(hp: &HostPort) -> SocketAddr {
    let ip = match hp.host.as_str() {
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        h => h.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
    };
    SocketAddr::new(ip, hp.port)
}

/// Parses `process.roles`. A controller-only node would run no Kafka listener; Runnel does not
/// support that yet and says so.
pub fn parse_roles(v: &str) -> Result<Roles, String> {
    let mut roles = Roles {
        broker: false,
        controller: false,
    };
    for r in v.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        match r.to_ascii_lowercase().as_str() {
            "broker" => roles.broker = true,
            "controller" => roles.controller = true,
            other => {
                return Err(format!(
                    "unknown role '{other}' (expected broker and/or controller)"
                ))
            }
        }
    }
    if !roles.broker && !roles.controller {
        return Err("at least one role is required".into());
    }
    if !roles.broker {
        return Err(
            "a controller-only node is not supported yet; use process.roles=broker,controller"
                .into(),
        );
    }
    Ok(roles)
}

/// `rpc.ssl.keystore.location` and `rpc.ssl.truststore.location`: both or neither (the files
/// are read when the node starts).
fn rpc_tls_config(
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<RpcTlsConfig>, ConfigError> {
    const KEYSTORE: &str = "rpc.ssl.keystore.location";
    const TRUSTSTORE: &str = "rpc.ssl.truststore.location";
    let path = |k: &str| get(k).filter(|v| !v.trim().is_empty()).map(PathBuf::from);
    match (path(KEYSTORE), path(TRUSTSTORE)) {
        (None, None) => Ok(None),
        (Some(keystore_location), Some(truststore_location)) => Ok(Some(RpcTlsConfig {
            keystore_location,
            truststore_location,
        })),
        (Some(_), None) => Err(ConfigError::Other(format!(
            "{KEYSTORE} is set but {TRUSTSTORE} is not: mutual TLS on the gRPC port needs both"
        ))),
        (None, Some(_)) => Err(ConfigError::Other(format!(
            "{TRUSTSTORE} is set but {KEYSTORE} is not: mutual TLS on the gRPC port needs both"
        ))),
    }
}

/// Parses `controller.quorum.voters`: `ID@HOST:PORT,...`.
pub fn parse_voters(v: &str) -> Result<BTreeMap<i32, String>, String> {
    let mut out = BTreeMap::new();
    for entry in v.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (id, addr) = entry
            .split_once('@')
            .ok_or_else(|| format!("voter '{entry}' is not ID@HOST:PORT"))?;
        let id: i32 = id
            .trim()
            .parse()
            .ok()
            .filter(|id: &i32| *id >= 0)
            .ok_or_else(|| format!("voter '{entry}' has an invalid node id"))?;
        let hp = parse_host_port(addr)?;
        if hp.host.is_empty() || hp.port == 0 {
            return Err(format!("voter '{entry}' needs a host and a non-zero port"));
        }
        if out.insert(id, hp.to_string()).is_some() {
            return Err(format!("node id {id} appears twice"));
        }
    }
    if out.is_empty() {
        return Err("no voters given".into());
    }
    Ok(out)
}

/// How the node's roles and the voters fit together (checked once, at start-up).
fn check_quorum_roles(
    node_id: i32,
    roles: Roles,
    voters: &BTreeMap<i32, String>,
    rpc_listen: Option<&HostPort>,
) -> Result<(), ConfigError> {
    if voters.is_empty() {
        if !roles.controller {
            return Err(ConfigError::Other(
                "process.roles=broker needs controller.quorum.voters (--voters): a broker-only node joins an existing quorum".into(),
            ));
        }
        return Ok(());
    }
    match (roles.controller, voters.contains_key(&node_id)) {
        (true, false) => Err(ConfigError::Other(format!(
            "node.id {node_id} is not in controller.quorum.voters; a controller must be a voter (or set process.roles=broker)"
        ))),
        (false, true) => Err(ConfigError::Other(format!(
            "node.id {node_id} is in controller.quorum.voters but process.roles has no controller"
        ))),
        (false, false) if rpc_listen.is_none() => Err(ConfigError::Other(
            "a broker-only node needs rpc.listen (--rpc-listen) for its inter-node gRPC server".into(),
        )),
        _ => Ok(()),
    }
}

pub use crate::topic_config::LogDefaults;

/// Bounds on client connections and on the response bytes they may hold in the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// `fetch.max.bytes`: most record bytes in one Fetch response; also the bytes of computed
    /// responses one connection may have waiting before it stops being read.
    pub fetch_max_bytes: usize,
    /// `queued.max.request.bytes`: the same over all connections (`None`: no broker-wide bound).
    pub queued_max_bytes: Option<usize>,
    /// `max.connections`.
    pub max_connections: usize,
    /// `max.connections.per.ip`.
    pub max_connections_per_ip: usize,
    /// `max.connections.per.ip.overrides`, by address.
    pub max_connections_per_ip_overrides: BTreeMap<std::net::IpAddr, usize>,
    /// `connections.max.idle.ms`.
    pub connections_max_idle_ms: u64,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            fetch_max_bytes: 57_671_680,
            queued_max_bytes: Some(512 << 20),
            max_connections: i32::MAX as usize,
            max_connections_per_ip: i32::MAX as usize,
            max_connections_per_ip_overrides: BTreeMap::new(),
            connections_max_idle_ms: 600_000,
        }
    }
}

/// `max.connections.per.ip.overrides`: `ADDRESS:COUNT,...` (a host name is resolved once, at
/// start, as Kafka does; an IPv6 address may be written in brackets).
pub fn parse_ip_overrides(v: &str) -> Result<BTreeMap<std::net::IpAddr, usize>, String> {
    use std::net::ToSocketAddrs;
    let mut out = BTreeMap::new();
    for entry in v.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (host, count) = entry
            .rsplit_once(':')
            .ok_or_else(|| format!("'{entry}' is not ADDRESS:COUNT"))?;
        let count: usize = count
            .trim()
            .parse()
            .map_err(|_| format!("'{count}' in '{entry}' is not a connection count"))?;
        let host = host.trim().trim_start_matches('[').trim_end_matches(']');
        let ip = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => ip,
            Err(_) => (host, 0)
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .map(|a| a.ip())
                .ok_or_else(|| format!("cannot resolve '{host}' in '{entry}'"))?,
        };
        out.insert(ip, count);
    }
    Ok(out)
}

/// The log cleaner's settings (`log.cleaner.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanerConfig {
    pub enable: bool,
    pub threads: usize,
    pub backoff_ms: u64,
    /// Bytes of key maps over all cleaner threads.
    pub dedupe_buffer_size: u64,
}

/// Replication, ISR, leader balance and controlled shutdown settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationConfig {
    pub replica_lag_time_max_ms: i64,
    pub fetch_wait_max_ms: i32,
    pub fetch_min_bytes: i32,
    pub fetch_max_bytes: i32,
    pub fetch_response_max_bytes: i32,
    pub hw_checkpoint_interval_ms: u64,
    pub fetch_backoff_ms: u64,
    pub auto_leader_rebalance_enable: bool,
    pub leader_imbalance_check_interval_secs: u64,
    pub controlled_shutdown_enable: bool,
    pub controlled_shutdown_timeout_ms: u64,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            replica_lag_time_max_ms: 30_000,
            fetch_wait_max_ms: 500,
            fetch_min_bytes: 1,
            fetch_max_bytes: 1 << 20,
            fetch_response_max_bytes: 10 << 20,
            hw_checkpoint_interval_ms: 5000,
            fetch_backoff_ms: 1000,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_secs: 300,
            controlled_shutdown_enable: true,
            controlled_shutdown_timeout_ms: 30_000,
        }
    }
}

/// The validated, frozen broker configuration.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub node_id: i32,
    pub data_dir: PathBuf,
    /// The first client listener (`listeners[0].listen`).
    pub listen: HostPort,
    /// The first client listener's advertised address (`listeners[0].advertised`); `None`
    /// until resolved at start-up (see `resolve_advertised`).
    pub advertised: Option<HostPort>,
    /// Every client listener, in the order of `listeners`. Each is bound, registered with the
    /// controller under its name, and a client connected through it is given the addresses
    /// of that listener (Metadata, FindCoordinator, DescribeCluster, leader hints).
    pub listeners: Vec<Listener>,
    /// `process.roles`.
    pub roles: Roles,
    /// `controller.quorum.voters`: node id -> gRPC `host:port`. Empty: a standalone node.
    pub voters: BTreeMap<i32, String>,
    /// `rpc.listen` (`--rpc-listen`): what the gRPC server binds.
    pub rpc_listen: Option<HostPort>,
    /// `rpc.advertised`: where other nodes reach this node's gRPC server.
    pub rpc_advertised: Option<HostPort>,
    /// `rpc.ssl.keystore.location` and `rpc.ssl.truststore.location`: mutual TLS on the gRPC
    /// port.
    pub rpc_tls: Option<RpcTlsConfig>,
    /// `--cluster-id`: the id of a new cluster (a random one when unset).
    pub cluster_id: Option<String>,
    /// `broker.rack`.
    pub rack: Option<String>,
    pub broker_heartbeat_interval_ms: u64,
    pub broker_session_timeout_ms: u64,
    pub election_timeout_ms: u64,
    pub snapshot_interval_entries: u64,
    /// `offsets.topic.replication.factor` (capped at the live brokers when the topic is created).
    pub offsets_topic_replication_factor: i16,
    /// `offsets.topic.num.partitions`, used only when the topic does not exist yet.
    pub offsets_topic_num_partitions: i32,
    /// `group.initial.rebalance.delay.ms`, `group.{min,max}.session.timeout.ms`,
    /// `group.max.size`.
    pub group: GroupConfig,
    /// `offsets.commit.timeout.ms`, `offsets.retention.minutes`,
    /// `offsets.retention.check.interval.ms`, `offsets.topic.replication.factor`.
    pub offsets: CoordinatorSettings,
    /// `transaction.*` and `transactional.id.expiration.ms`.
    pub transactions: TransactionSettings,
    pub num_partitions: i32,
    /// `max.partitions`.
    pub max_partitions: i32,
    /// `max.broker.partitions`.
    pub max_broker_partitions: i32,
    /// `quota.window.*` and `controller.quota.window.*`.
    pub quota_windows: crate::quota::QuotaWindows,
    pub default_replication_factor: i16,
    pub auto_create_topics: bool,
    pub delete_topic_enable: bool,
    pub socket_request_max_bytes: usize,
    /// Connection and response bounds (`fetch.max.bytes`, `queued.max.request.bytes`,
    /// `max.connections*`, `connections.max.idle.ms`).
    pub limits: ConnectionLimits,
    pub flush_scheduler_interval_ms: u64,
    pub retention_check_interval_ms: u64,
    pub metrics_listen: Option<String>,
    pub log_defaults: LogDefaults,
    pub replication: ReplicationConfig,
    pub cleaner: CleanerConfig,
    /// `authorizer.class.name` names the standard ACL authorizer.
    pub authorizer_enabled: bool,
    /// `super.users`, as principals (`User:admin`).
    pub super_users: Vec<String>,
    pub allow_everyone_if_no_acl_found: bool,
    /// `connection.failed.authentication.delay.ms`.
    pub failed_authentication_delay_ms: u64,
    /// `ssl.reload.interval.ms`.
    pub ssl_reload_interval_ms: u64,
    /// `--add-scram` credentials (`SCRAM-SHA-512=[name=admin,password=...]`, parsed with
    /// `runnel_controller::scram_bootstrap::parse_add_scram`): written when this node creates
    /// the cluster, ignored afterwards. Salted keys only, never the password.
    pub bootstrap_scram: Vec<(
        String,
        runnel_security::scram::ScramMechanism,
        runnel_security::scram::ScramCredential,
    )>,
    /// Every property set explicitly (file, flags, --set), for DescribeConfigs' source field.
    pub explicit: BTreeMap<String, String>,
}

impl BrokerConfig {
    /// Builds the configuration from explicit properties (later entries win).
    pub fn from_properties(props: &[(String, String)]) -> Result<BrokerConfig, ConfigError> {
        let mut explicit = BTreeMap::new();
        for (k, v) in props {
            if k.starts_with("listener.name.") {
                listener_security::check_prefixed_key(k).map_err(|reason| {
                    ConfigError::Invalid {
                        key: k.clone(),
                        value: if listener_security::is_sensitive(k) {
                            "[hidden]".into()
                        } else {
                            v.clone()
                        },
                        reason,
                    }
                })?;
                explicit.insert(k.clone(), v.clone());
                continue;
            }
            let prop = broker_prop(k).ok_or_else(|| ConfigError::Unknown(k.clone()))?;
            topic_config::validate_type(prop.ty, v).map_err(|reason| ConfigError::Invalid {
                key: k.clone(),
                value: v.clone(),
                reason,
            })?;
            explicit.insert(k.clone(), v.clone());
        }
        for (k, _) in explicit.iter() {
            if broker_prop(k).is_some_and(|p| p.usage == Usage::Accepted) {
                tracing::info!(key = %k, "property accepted for compatibility; it has no effect yet");
            }
        }
        let get = |k: &str| -> Option<String> {
            explicit
                .get(k)
                .cloned()
                .or_else(|| broker_prop(k).and_then(|p| p.default.map(str::to_string)))
        };
        let invalid = |k: &str, v: &str, reason: &str| ConfigError::Invalid {
            key: k.to_string(),
            value: v.to_string(),
            reason: reason.to_string(),
        };
        let int = |k: &str| -> Result<Option<i64>, ConfigError> {
            match get(k) {
                None => Ok(None),
                Some(v) => v
                    .trim()
                    .parse::<i64>()
                    .map(Some)
                    .map_err(|_| invalid(k, &v, "not a number")),
            }
        };
        // A property read with `num` has a declared default in BROKER_PROPS, its only default.
        let num = |k: &str| -> Result<i64, ConfigError> {
            int(k)?.ok_or_else(|| {
                ConfigError::Other(format!("configuration property '{k}' has no default"))
            })
        };
        let boolean = |k: &str| -> Result<bool, ConfigError> {
            let v = get(k).unwrap_or_default();
            match v.trim().to_ascii_lowercase().as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(invalid(k, &v, "expected true or false")),
            }
        };
        let positive = |k: &str, v: i64| -> Result<i64, ConfigError> {
            if v <= 0 {
                Err(invalid(k, &v.to_string(), "must be positive"))
            } else {
                Ok(v)
            }
        };
        let pos = |k: &str| -> Result<i64, ConfigError> { positive(k, num(k)?) };
        let at_least = |k: &str, min: i64| -> Result<i64, ConfigError> {
            let v = num(k)?;
            if v < min {
                Err(invalid(
                    k,
                    &v.to_string(),
                    &format!("must be at least {min}"),
                ))
            } else {
                Ok(v)
            }
        };
        let non_negative_i32 = |k: &str, v: i64| -> Result<i32, ConfigError> {
            if !(0..=i32::MAX as i64).contains(&v) {
                Err(invalid(
                    k,
                    &v.to_string(),
                    "must be between 0 and 2147483647",
                ))
            } else {
                Ok(v as i32)
            }
        };

        let node_id = int("broker.id")?.or(int("node.id")?).unwrap_or(1);
        if !(0..=i32::MAX as i64).contains(&node_id) {
            return Err(invalid("node.id", &node_id.to_string(), "must be >= 0"));
        }
        let data_dir = get("log.dir")
            .filter(|_| !explicit.contains_key("log.dirs"))
            .or_else(|| get("log.dirs"))
            .unwrap_or_default();
        if data_dir.contains(',') {
            return Err(invalid(
                "log.dirs",
                &data_dir,
                "only one data directory is supported",
            ));
        }
        let listeners_value = get("listeners").unwrap_or_default();
        let bound = parse_listener_list(&listeners_value)
            .map_err(|r| invalid("listeners", &listeners_value, &r))?;
        let map_value = get("listener.security.protocol.map").unwrap_or_default();
        let protocol_map = listener_security::parse_protocol_map(&map_value)
            .map_err(|r| invalid("listener.security.protocol.map", &map_value, &r))?;
        let mut listeners: Vec<Listener> = Vec::with_capacity(bound.len());
        for (name, mut listen) in bound {
            if listen.host.is_empty() {
                listen.host = "0.0.0.0".to_string();
            }
            let protocol = listener_security::protocol_of(&name, &protocol_map)
                .map_err(|r| invalid("listener.security.protocol.map", &map_value, &r))?;
            let security = listener_security::listener_props(&name, &get, &explicit);
            listeners.push(Listener {
                name,
                listen,
                advertised: None,
                protocol,
                security,
            });
        }
        for key in explicit.keys().filter(|k| k.starts_with("listener.name.")) {
            let named = key["listener.name.".len()..]
                .split('.')
                .next()
                .unwrap_or("");
            if !listeners.iter().any(|l| l.name.eq_ignore_ascii_case(named)) {
                return Err(invalid(
                    key,
                    "",
                    &format!("no listener is named {}", named.to_ascii_uppercase()),
                ));
            }
        }
        for (i, a) in listeners.iter().enumerate() {
            if listeners[..i]
                .iter()
                .any(|b| b.listen.port == a.listen.port && a.listen.port != 0)
            {
                return Err(invalid(
                    "listeners",
                    &listeners_value,
                    &format!("port {} is used by two listeners", a.listen.port),
                ));
            }
        }
        if let Some(v) = get("advertised.listeners") {
            let entries =
                parse_listener_list(&v).map_err(|r| invalid("advertised.listeners", &v, &r))?;
            if listeners.len() == 1 && entries.len() == 1 {
                // One listener: its advertised address, whatever the entry is named (the
                // --advertised-listener flag names it PLAINTEXT).
                listeners[0].advertised = Some(entries[0].1.clone());
            } else {
                for (name, hp) in entries {
                    let l = listeners
                        .iter_mut()
                        .find(|l| l.name == name)
                        .ok_or_else(|| {
                            invalid(
                                "advertised.listeners",
                                &v,
                                &format!("{name} is not a listener in listeners"),
                            )
                        })?;
                    l.advertised = Some(hp);
                }
            }
            for l in &mut listeners {
                if l.advertised.as_ref().is_some_and(|a| a.host.is_empty()) {
                    l.advertised = None;
                }
            }
        }
        if !explicit.contains_key("listeners") && !explicit.contains_key("advertised.listeners") {
            let first = &mut listeners[0];
            let advertised = HostPort {
                host: "localhost".to_string(),
                port: first.listen.port,
            };
            tracing::info!(
                "no listeners or advertised.listeners configured: listening on {} and advertising {advertised} to clients, \
                 which reaches this machine only; set advertised.listeners={}://HOST:{} (or --advertised-listener HOST:{}) for clients on other machines",
                first.listen,
                first.name,
                first.listen.port,
                first.listen.port
            );
            first.advertised = Some(advertised);
        }
        let listen = listeners[0].listen.clone();
        let advertised = listeners[0].advertised.clone();

        let ms_or = |ms_key: &str, min_key: &str, hours_key: &str| -> Result<i64, ConfigError> {
            if let Some(ms) = explicit.get(ms_key) {
                return ms.parse().map_err(|_| invalid(ms_key, ms, "not a number"));
            }
            if let Some(m) = int(min_key)? {
                return Ok(m.saturating_mul(60_000));
            }
            Ok(num(hours_key)?.saturating_mul(3_600_000))
        };
        let retention_ms = ms_or(
            "log.retention.ms",
            "log.retention.minutes",
            "log.retention.hours",
        )?;
        let segment_ms = ms_or("log.roll.ms", "log.roll.ms", "log.roll.hours")?;
        let segment_bytes = num("log.segment.bytes")?;
        if segment_bytes < topic_config::MIN_SEGMENT_BYTES {
            return Err(invalid(
                "log.segment.bytes",
                &segment_bytes.to_string(),
                "must be at least 1048576 (1 MiB)",
            ));
        }
        let flush_messages = pos("log.flush.interval.messages")?;
        let flush_ms = int("log.flush.interval.ms")?.unwrap_or(i64::MAX);
        let ts_type = get("log.message.timestamp.type").unwrap_or_default();
        topic_config::validate_value("message.timestamp.type", &ts_type)
            .map_err(|r| invalid("log.message.timestamp.type", &ts_type, &r))?;
        let cleanup = get("log.cleanup.policy").unwrap_or_default();
        topic_config::validate_value("cleanup.policy", &cleanup)
            .map_err(|r| invalid("log.cleanup.policy", &cleanup, &r))?;
        let topic_value = |broker_key: &str, topic_key: &str| -> Result<String, ConfigError> {
            let v = get(broker_key).unwrap_or_default();
            topic_config::validate_value(topic_key, &v).map_err(|r| invalid(broker_key, &v, &r))?;
            Ok(v.trim().to_string())
        };
        let cleaner_delete_retention =
            topic_value("log.cleaner.delete.retention.ms", "delete.retention.ms")?
                .parse::<i64>()
                .unwrap_or(86_400_000);
        let min_cleanable_ratio = topic_value(
            "log.cleaner.min.cleanable.ratio",
            "min.cleanable.dirty.ratio",
        )?
        .parse::<f64>()
        .unwrap_or(0.5);
        let cleaner_min_lag =
            topic_value("log.cleaner.min.compaction.lag.ms", "min.compaction.lag.ms")?
                .parse::<i64>()
                .unwrap_or(0);
        let cleaner_max_lag =
            topic_value("log.cleaner.max.compaction.lag.ms", "max.compaction.lag.ms")?
                .parse::<i64>()
                .unwrap_or(i64::MAX);
        let compression = get("compression.type").unwrap_or_default();
        topic_config::validate_value("compression.type", &compression)
            .map_err(|r| invalid("compression.type", &compression, &r))?;
        let num_partitions = pos("num.partitions")?;
        let rf = pos("default.replication.factor")?;
        let message_max = pos("message.max.bytes")?;
        let socket_max = pos("socket.request.max.bytes")?;
        let min_isr = pos("min.insync.replicas")?;
        let roles_value = get("process.roles").unwrap_or_default();
        let roles =
            parse_roles(&roles_value).map_err(|r| invalid("process.roles", &roles_value, &r))?;
        let voters = match get("controller.quorum.voters") {
            Some(v) => parse_voters(&v).map_err(|r| invalid("controller.quorum.voters", &v, &r))?,
            None => BTreeMap::new(),
        };
        let host_port = |k: &str| -> Result<Option<HostPort>, ConfigError> {
            match get(k) {
                None => Ok(None),
                Some(v) if v.trim().is_empty() => Ok(None),
                Some(v) => parse_host_port(&v)
                    .map(Some)
                    .map_err(|r| invalid(k, &v, &r)),
            }
        };
        let rpc_listen = host_port("rpc.listen")?;
        let rpc_advertised = host_port("rpc.advertised")?;
        let rpc_tls = rpc_tls_config(&get)?;
        let heartbeat_ms = pos("broker.heartbeat.interval.ms")?;
        let session_ms = pos("broker.session.timeout.ms")?;
        if session_ms <= heartbeat_ms {
            return Err(invalid(
                "broker.session.timeout.ms",
                &session_ms.to_string(),
                "must be larger than broker.heartbeat.interval.ms",
            ));
        }
        check_quorum_roles(node_id as i32, roles, &voters, rpc_listen.as_ref())?;
        let offsets_topic_replication_factor =
            pos("offsets.topic.replication.factor")?.min(i16::MAX as i64) as i16;
        let min_session = pos("group.min.session.timeout.ms")?;
        let max_session = pos("group.max.session.timeout.ms")?;
        if max_session < min_session {
            return Err(invalid(
                "group.max.session.timeout.ms",
                &max_session.to_string(),
                "must be at least group.min.session.timeout.ms",
            ));
        }
        let group = GroupConfig {
            initial_rebalance_delay_ms: at_least("group.initial.rebalance.delay.ms", 0)?,
            min_session_timeout_ms: min_session as i32,
            max_session_timeout_ms: max_session as i32,
            max_size: pos("group.max.size")? as usize,
        };
        let offsets = CoordinatorSettings {
            commit_timeout_ms: pos("offsets.commit.timeout.ms")? as u64,
            offsets_retention_ms: pos("offsets.retention.minutes")?.saturating_mul(60_000),
            retention_check_interval_ms: pos("offsets.retention.check.interval.ms")?,
            offsets_topic_replication_factor,
        };
        let offsets_topic_num_partitions = pos("offsets.topic.num.partitions")?;
        if offsets_topic_num_partitions > MAX_OFFSETS_TOPIC_PARTITIONS {
            return Err(invalid(
                "offsets.topic.num.partitions",
                &offsets_topic_num_partitions.to_string(),
                &format!("must be at most {MAX_OFFSETS_TOPIC_PARTITIONS}"),
            ));
        }
        let txn_partitions = pos("transaction.state.log.num.partitions")?;
        if txn_partitions > MAX_OFFSETS_TOPIC_PARTITIONS {
            return Err(invalid(
                "transaction.state.log.num.partitions",
                &txn_partitions.to_string(),
                &format!("must be at most {MAX_OFFSETS_TOPIC_PARTITIONS}"),
            ));
        }
        let transactions = TransactionSettings {
            num_partitions: txn_partitions as i32,
            replication_factor: pos("transaction.state.log.replication.factor")?
                .min(i16::MAX as i64) as i16,
            min_isr: pos("transaction.state.log.min.isr")?.min(i32::MAX as i64) as i32,
            segment_bytes: pos("transaction.state.log.segment.bytes")?.min(i32::MAX as i64) as i32,
            partition_verification: boolean("transaction.partition.verification.enable")?,
            coordinator: TxnConfig {
                max_timeout_ms: pos("transaction.max.timeout.ms")?.min(i32::MAX as i64) as i32,
                id_expiration_ms: pos("transactional.id.expiration.ms")?,
                abort_timed_out_interval_ms: pos(
                    "transaction.abort.timed.out.transaction.cleanup.interval.ms",
                )?,
                remove_expired_interval_ms: pos(
                    "transaction.remove.expired.transaction.cleanup.interval.ms",
                )?,
            },
        };
        let authorizer_value = get("authorizer.class.name").unwrap_or_default();
        let authorizer_enabled = match authorizer_value.trim() {
            "" => false,
            "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
            | "kafka.security.authorizer.AclAuthorizer"
            | "standard" => true,
            other => {
                return Err(invalid(
                    "authorizer.class.name",
                    other,
                    "Runnel's authorizer is org.apache.kafka.metadata.authorizer.StandardAuthorizer (or 'standard'); custom authorizer classes cannot be loaded",
                ))
            }
        };
        let super_users: Vec<String> = get("super.users")
            .unwrap_or_default()
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        for u in &super_users {
            if !u
                .split_once(':')
                .is_some_and(|(t, n)| !t.is_empty() && !n.is_empty())
            {
                return Err(invalid(
                    "super.users",
                    u,
                    "expected principals as Type:name separated by ';' (User:admin;User:ops)",
                ));
            }
        }

        Ok(BrokerConfig {
            node_id: node_id as i32,
            data_dir: PathBuf::from(data_dir),
            listen,
            advertised,
            listeners,
            roles,
            voters,
            rpc_listen,
            rpc_advertised,
            rpc_tls,
            cluster_id: None,
            rack: get("broker.rack").filter(|r| !r.trim().is_empty()),
            broker_heartbeat_interval_ms: heartbeat_ms as u64,
            broker_session_timeout_ms: session_ms as u64,
            election_timeout_ms: pos("controller.quorum.election.timeout.ms")? as u64,
            snapshot_interval_entries: pos("metadata.snapshot.interval.entries")? as u64,
            offsets_topic_replication_factor,
            offsets_topic_num_partitions: offsets_topic_num_partitions as i32,
            group,
            offsets,
            transactions,
            num_partitions: num_partitions.min(i32::MAX as i64) as i32,
            max_partitions: pos("max.partitions")?.min(i32::MAX as i64) as i32,
            max_broker_partitions: pos("max.broker.partitions")?.min(i32::MAX as i64) as i32,
            quota_windows: {
                let window =
                    |count: &str, size: &str| -> Result<crate::quota::rate::Window, ConfigError> {
                        let samples = pos(count)?.min(1000) as u32;
                        let seconds = pos(size)?.min(3600) as u64;
                        Ok(crate::quota::rate::Window {
                            samples,
                            sample_ms: seconds * 1000,
                        })
                    };
                crate::quota::QuotaWindows {
                    client: window("quota.window.num", "quota.window.size.seconds")?,
                    controller: window(
                        "controller.quota.window.num",
                        "controller.quota.window.size.seconds",
                    )?,
                }
            },
            default_replication_factor: rf.min(i16::MAX as i64) as i16,
            auto_create_topics: boolean("auto.create.topics.enable")?,
            delete_topic_enable: boolean("delete.topic.enable")?,
            socket_request_max_bytes: socket_max.min(i32::MAX as i64) as usize,
            limits: ConnectionLimits {
                fetch_max_bytes: pos("fetch.max.bytes")?.min(i32::MAX as i64) as usize,
                queued_max_bytes: match num("queued.max.request.bytes")? {
                    -1 => None,
                    v => {
                        Some(positive("queued.max.request.bytes", v)?.min(u32::MAX as i64) as usize)
                    }
                },
                max_connections: pos("max.connections")?.min(i32::MAX as i64) as usize,
                max_connections_per_ip: pos("max.connections.per.ip")?.min(i32::MAX as i64)
                    as usize,
                max_connections_per_ip_overrides: {
                    let v = get("max.connections.per.ip.overrides").unwrap_or_default();
                    parse_ip_overrides(&v)
                        .map_err(|r| invalid("max.connections.per.ip.overrides", &v, &r))?
                },
                connections_max_idle_ms: pos("connections.max.idle.ms")? as u64,
            },
            flush_scheduler_interval_ms: pos("log.flush.scheduler.interval.ms")? as u64,
            retention_check_interval_ms: pos("log.retention.check.interval.ms")? as u64,
            metrics_listen: get("metrics.prometheus.listen"),
            replication: ReplicationConfig {
                replica_lag_time_max_ms: pos("replica.lag.time.max.ms")?,
                fetch_wait_max_ms: non_negative_i32(
                    "replica.fetch.wait.max.ms",
                    num("replica.fetch.wait.max.ms")?,
                )?,
                fetch_min_bytes: non_negative_i32(
                    "replica.fetch.min.bytes",
                    num("replica.fetch.min.bytes")?,
                )?,
                fetch_max_bytes: non_negative_i32(
                    "replica.fetch.max.bytes",
                    pos("replica.fetch.max.bytes")?,
                )?,
                fetch_response_max_bytes: non_negative_i32(
                    "replica.fetch.response.max.bytes",
                    pos("replica.fetch.response.max.bytes")?,
                )?,
                hw_checkpoint_interval_ms: pos("replica.high.watermark.checkpoint.interval.ms")?
                    as u64,
                fetch_backoff_ms: non_negative_i32(
                    "replica.fetch.backoff.ms",
                    num("replica.fetch.backoff.ms")?,
                )? as u64,
                auto_leader_rebalance_enable: boolean("auto.leader.rebalance.enable")?,
                leader_imbalance_check_interval_secs: pos(
                    "leader.imbalance.check.interval.seconds",
                )? as u64,
                controlled_shutdown_enable: boolean("controlled.shutdown.enable")?,
                controlled_shutdown_timeout_ms: pos("controlled.shutdown.timeout.ms")? as u64,
            },
            log_defaults: LogDefaults {
                retention_ms,
                retention_bytes: num("log.retention.bytes")?,
                segment_bytes,
                segment_ms: positive("log.roll.ms", segment_ms)?,
                index_interval_bytes: num("log.index.interval.bytes")?,
                segment_index_bytes: num("log.index.size.max.bytes")?,
                flush_messages,
                flush_ms,
                message_timestamp_type: ts_type,
                cleanup_policy: cleanup,
                max_message_bytes: message_max,
                min_insync_replicas: min_isr,
                compression_type: compression,
                unclean_leader_election: boolean("unclean.leader.election.enable")?,
                delete_retention_ms: cleaner_delete_retention,
                min_cleanable_ratio,
                min_compaction_lag_ms: cleaner_min_lag,
                max_compaction_lag_ms: cleaner_max_lag,
                producer_id_expiration_ms: pos("producer.id.expiration.ms")?,
                producer_id_expiration_check_interval_ms: pos(
                    "producer.id.expiration.check.interval.ms",
                )?,
            },
            cleaner: CleanerConfig {
                enable: boolean("log.cleaner.enable")?,
                threads: pos("log.cleaner.threads")? as usize,
                backoff_ms: pos("log.cleaner.backoff.ms")? as u64,
                dedupe_buffer_size: pos("log.cleaner.dedupe.buffer.size")? as u64,
            },
            authorizer_enabled,
            super_users,
            allow_everyone_if_no_acl_found: boolean("allow.everyone.if.no.acl.found")?,
            failed_authentication_delay_ms: non_negative_i32(
                "connection.failed.authentication.delay.ms",
                num("connection.failed.authentication.delay.ms")?,
            )? as u64,
            ssl_reload_interval_ms: pos("ssl.reload.interval.ms")? as u64,
            bootstrap_scram: Vec::new(),
            explicit,
        })
    }

    /// Where the metadata log lives: `<log.dirs>/__cluster_metadata-0`, as in KRaft.
    pub fn metadata_dir(&self) -> PathBuf {
        self.data_dir.join(METADATA_DIR)
    }

    /// Whether this node is part of a multi-node quorum (voters configured).
    pub fn is_clustered(&self) -> bool {
        !self.voters.is_empty()
    }

    /// The controller node's configuration. Without voters the node is a standalone single
    /// voter that runs no gRPC server unless `rpc.listen` is set (tests start many such nodes
    /// on one host). With voters, the gRPC server binds this node's voter entry (all interfaces
    /// when its host is a name rather than an address) unless `rpc.listen` says otherwise, and
    /// advertises the voter entry; a broker-only node advertises `rpc.advertised` or
    /// `rpc.listen`.
    pub fn node_config(&self) -> NodeConfig {
        let own_voter = self.voters.get(&self.node_id).cloned();
        let (voters, rpc_listen, rpc_advertised) = if self.voters.is_empty() {
            let advertised = self
                .rpc_advertised
                .as_ref()
                .or(self.rpc_listen.as_ref())
                .map(|hp| hp.to_string())
                .unwrap_or_else(|| STANDALONE_RPC_PLACEHOLDER.to_string());
            let voters = BTreeMap::from([(self.node_id, advertised.clone())]);
            (voters, self.rpc_listen.as_ref().map(bind_addr), advertised)
        } else {
            let listen = self
                .rpc_listen
                .clone()
                .or_else(|| own_voter.as_deref().and_then(|v| parse_host_port(v).ok()));
            let advertised = self
                .rpc_advertised
                .as_ref()
                .map(|hp| hp.to_string())
                .or(own_voter)
                .or_else(|| self.rpc_listen.as_ref().map(|hp| hp.to_string()))
                .unwrap_or_default();
            (
                self.voters.clone(),
                listen.as_ref().map(bind_addr),
                advertised,
            )
        };
        let election_timeout = Duration::from_millis(self.election_timeout_ms);
        NodeConfig {
            bootstrap_scram: self.bootstrap_scram.clone(),
            node_id: self.node_id,
            roles: self.roles,
            metadata_dir: self.metadata_dir(),
            voters,
            rpc_listen,
            rpc_advertised,
            cluster_id: self.cluster_id.clone(),
            managers: ManagerConfig {
                default_num_partitions: self.num_partitions,
                default_replication_factor: self.default_replication_factor,
                unclean_leader_election: self.log_defaults.unclean_leader_election,
                max_partitions: self.max_partitions,
                max_broker_partitions: self.max_broker_partitions,
                ..ManagerConfig::default()
            },
            broker_heartbeat_interval: Duration::from_millis(self.broker_heartbeat_interval_ms),
            broker_session_timeout: Duration::from_millis(self.broker_session_timeout_ms),
            election_timeout,
            raft_heartbeat_interval: (election_timeout / 5).max(Duration::from_millis(20)),
            snapshot_interval_entries: self.snapshot_interval_entries,
            leader_imbalance_check_interval: self.replication.auto_leader_rebalance_enable.then(
                || Duration::from_secs(self.replication.leader_imbalance_check_interval_secs),
            ),
            rpc_tls: self.rpc_tls.clone(),
        }
    }

    /// The effective value of a broker property, as DescribeConfigs reports it.
    pub fn effective(&self, name: &str) -> Option<String> {
        match name {
            "node.id" | "broker.id" => Some(self.node_id.to_string()),
            "log.dirs" | "log.dir" => Some(self.data_dir.display().to_string()),
            "log.retention.ms" => Some(self.log_defaults.retention_ms.to_string()),
            "log.roll.ms" => Some(self.log_defaults.segment_ms.to_string()),
            "log.flush.interval.ms" => Some(self.log_defaults.flush_ms.to_string()),
            _ => self
                .explicit
                .get(name)
                .cloned()
                .or_else(|| broker_prop(name).and_then(|p| p.default.map(str::to_string))),
        }
    }

    /// The address advertised to clients of the first listener. When listening on all
    /// interfaces without an advertised listener, the host name is advertised (not 127.0.0.1),
    /// so clients on other hosts can reach it; the choice is logged.
    pub fn resolve_advertised(&self, bound_port: u16) -> HostPort {
        resolve_listener_advertised(&self.listen, self.advertised.as_ref(), bound_port)
    }
}

/// The address advertised for a listener bound at `listen` (on `bound_port`): its advertised
/// address when set, else the host name when `listen` is a wildcard, else `listen`'s host.
pub fn resolve_listener_advertised(
    listen: &HostPort,
    advertised: Option<&HostPort>,
    bound_port: u16,
) -> HostPort {
    if let Some(a) = advertised {
        return a.clone();
    }
    let wildcard = matches!(listen.host.as_str(), "0.0.0.0" | "::" | "");
    if wildcard {
        let host = hostname::get()
            .ok()
            .and_then(|h| h.into_string().ok())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_string());
        tracing::warn!(
            listen = %listen,
            advertised_host = %host,
            port = bound_port,
            "listening on all interfaces without advertised.listeners: advertising the host name; \
             set advertised.listeners if clients cannot resolve it"
        );
        HostPort {
            host,
            port: bound_port,
        }
    } else {
        HostPort {
            host: listen.host.clone(),
            port: bound_port,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_java_properties() {
        let text = "# comment\n! also\nnode.id=3\nlog.dirs : /tmp/x\nlisteners PLAINTEXT://:9092,\\\n  CONTROLLER://:9093\n\n";
        let p = parse_properties(text).unwrap();
        assert_eq!(
            p,
            props(&[
                ("node.id", "3"),
                ("log.dirs", "/tmp/x"),
                ("listeners", "PLAINTEXT://:9092,CONTROLLER://:9093")
            ])
        );
        let c = BrokerConfig::from_properties(&p).unwrap();
        assert_eq!(c.node_id, 3);
        assert_eq!(
            c.listen,
            HostPort {
                host: "0.0.0.0".into(),
                port: 9092
            }
        );
    }

    #[test]
    fn defaults_follow_kafka() {
        let c = BrokerConfig::from_properties(&[]).unwrap();
        assert_eq!(c.log_defaults.retention_ms, 168 * 3_600_000);
        assert_eq!(c.log_defaults.max_message_bytes, 1048588);
        assert_eq!(c.socket_request_max_bytes, 100 << 20);
        assert!(c.auto_create_topics);
        assert_eq!(c.num_partitions, 1);
    }

    #[test]
    fn every_declared_default_parses_as_its_type() {
        for p in BROKER_PROPS {
            if let Some(d) = p.default {
                topic_config::validate_type(p.ty, d)
                    .unwrap_or_else(|e| panic!("default of {}: {e}", p.name));
            }
        }
    }

    #[test]
    fn group_and_offsets_settings_are_read_once_with_kafkas_defaults() {
        let c = BrokerConfig::from_properties(&[]).unwrap();
        let g = GroupConfig::default();
        assert_eq!(
            c.group.initial_rebalance_delay_ms,
            g.initial_rebalance_delay_ms
        );
        assert_eq!(c.group.min_session_timeout_ms, g.min_session_timeout_ms);
        assert_eq!(c.group.max_session_timeout_ms, g.max_session_timeout_ms);
        assert_eq!(c.group.max_size, g.max_size);
        let o = CoordinatorSettings::default();
        assert_eq!(c.offsets.commit_timeout_ms, o.commit_timeout_ms);
        assert_eq!(c.offsets.offsets_retention_ms, o.offsets_retention_ms);
        assert_eq!(
            c.offsets.retention_check_interval_ms,
            o.retention_check_interval_ms
        );
        assert_eq!(c.offsets.offsets_topic_replication_factor, 3);
        assert_eq!(c.offsets_topic_num_partitions, 50);
        assert_eq!(c.transactions, TransactionSettings::default());
        let c = BrokerConfig::from_properties(&props(&[
            ("transaction.state.log.num.partitions", "4"),
            ("transaction.max.timeout.ms", "60000"),
            (
                "transaction.abort.timed.out.transaction.cleanup.interval.ms",
                "500",
            ),
        ]))
        .unwrap();
        assert_eq!(c.transactions.num_partitions, 4);
        assert_eq!(c.transactions.coordinator.max_timeout_ms, 60_000);
        assert_eq!(c.transactions.coordinator.abort_timed_out_interval_ms, 500);
        assert!(BrokerConfig::from_properties(&props(&[(
            "transaction.state.log.num.partitions",
            "0"
        )]))
        .is_err());

        let c = BrokerConfig::from_properties(&props(&[
            ("group.initial.rebalance.delay.ms", "0"),
            ("group.min.session.timeout.ms", "1000"),
            ("group.max.session.timeout.ms", "60000"),
            ("group.max.size", "7"),
            ("offsets.retention.minutes", "2"),
            ("offsets.topic.num.partitions", "3"),
            ("offsets.topic.replication.factor", "1"),
        ]))
        .unwrap();
        assert_eq!(c.group.initial_rebalance_delay_ms, 0);
        assert_eq!(c.group.min_session_timeout_ms, 1000);
        assert_eq!(c.group.max_session_timeout_ms, 60000);
        assert_eq!(c.group.max_size, 7);
        assert_eq!(c.offsets.offsets_retention_ms, 120_000);
        assert_eq!(c.offsets.offsets_topic_replication_factor, 1);
        assert_eq!(c.offsets_topic_num_partitions, 3);
    }

    #[test]
    fn out_of_range_group_settings_are_refused_not_clamped() {
        let err = |p: &[(&str, &str)]| {
            BrokerConfig::from_properties(&props(p))
                .unwrap_err()
                .to_string()
        };
        for (k, v) in [
            ("group.max.size", "0"),
            ("group.initial.rebalance.delay.ms", "-1"),
            ("offsets.retention.minutes", "0"),
            ("offsets.commit.timeout.ms", "0"),
            ("offsets.retention.check.interval.ms", "0"),
            ("offsets.topic.num.partitions", "0"),
            ("offsets.topic.num.partitions", "10001"),
            ("group.min.session.timeout.ms", "0"),
        ] {
            let e = err(&[(k, v)]);
            assert!(e.contains(k), "{k}={v}: {e}");
        }
        let e = err(&[
            ("group.min.session.timeout.ms", "10000"),
            ("group.max.session.timeout.ms", "9000"),
        ]);
        assert!(e.contains("group.max.session.timeout.ms"), "{e}");
    }

    #[test]
    fn unknown_and_invalid_keys_name_the_key() {
        let e = BrokerConfig::from_properties(&props(&[("log.retention.mss", "1")])).unwrap_err();
        assert!(e.to_string().contains("log.retention.mss"), "{e}");
        let e = BrokerConfig::from_properties(&props(&[("num.partitions", "x")])).unwrap_err();
        assert!(e.to_string().contains("num.partitions"), "{e}");
        let e = BrokerConfig::from_properties(&props(&[("num.partitions", "0")])).unwrap_err();
        assert!(e.to_string().contains("num.partitions"), "{e}");
        let e = BrokerConfig::from_properties(&props(&[("auto.create.topics.enable", "yes")]))
            .unwrap_err();
        assert!(e.to_string().contains("auto.create.topics.enable"), "{e}");
    }

    #[test]
    fn retention_precedence_ms_over_minutes_over_hours() {
        let c = BrokerConfig::from_properties(&props(&[
            ("log.retention.hours", "1"),
            ("log.retention.minutes", "2"),
        ]))
        .unwrap();
        assert_eq!(c.log_defaults.retention_ms, 120_000);
        let c = BrokerConfig::from_properties(&props(&[
            ("log.retention.minutes", "2"),
            ("log.retention.ms", "5"),
        ]))
        .unwrap();
        assert_eq!(c.log_defaults.retention_ms, 5);
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(
            parse_host_port("PLAINTEXT://h:1").unwrap(),
            HostPort {
                host: "h".into(),
                port: 1
            }
        );
        assert_eq!(
            parse_host_port("[::1]:9").unwrap(),
            HostPort {
                host: "::1".into(),
                port: 9
            }
        );
        assert!(parse_host_port("nohost").is_err());
        assert!(parse_host_port("h:99999").is_err());
    }

    #[test]
    fn standalone_node_is_a_single_voter_without_a_grpc_server() {
        let c = BrokerConfig::from_properties(&props(&[
            ("node.id", "4"),
            ("log.dirs", "/data/r"),
            ("num.partitions", "3"),
            ("default.replication.factor", "1"),
        ]))
        .unwrap();
        assert!(!c.is_clustered());
        let n = c.node_config();
        assert_eq!(n.node_id, 4);
        assert_eq!(
            n.roles,
            Roles {
                broker: true,
                controller: true
            }
        );
        assert_eq!(n.voters.keys().copied().collect::<Vec<_>>(), vec![4]);
        assert_eq!(
            n.rpc_listen, None,
            "tests start many standalone nodes on one host"
        );
        assert_eq!(
            n.metadata_dir,
            PathBuf::from("/data/r/__cluster_metadata-0")
        );
        assert_eq!(n.managers.default_num_partitions, 3);
        assert_eq!(n.managers.default_replication_factor, 1);
        assert!(!n.managers.unclean_leader_election);
        assert_eq!(n.broker_heartbeat_interval, Duration::from_millis(1000));
        assert_eq!(n.broker_session_timeout, Duration::from_millis(6000));
        assert_eq!(n.election_timeout, Duration::from_millis(1000));
        assert!(n.raft_heartbeat_interval < n.election_timeout);
        assert_eq!(n.snapshot_interval_entries, 1000);
        assert_eq!(c.offsets_topic_replication_factor, 3);
        n.validate().unwrap();
        // An explicit rpc.listen runs the gRPC server there, also when standalone.
        let c =
            BrokerConfig::from_properties(&props(&[("rpc.listen", "127.0.0.1:19093")])).unwrap();
        let n = c.node_config();
        assert_eq!(n.rpc_listen, Some("127.0.0.1:19093".parse().unwrap()));
        assert_eq!(n.voters[&1], "127.0.0.1:19093");
        n.validate().unwrap();
    }

    #[test]
    fn voters_give_the_grpc_address_and_quorum_settings() {
        let c = BrokerConfig::from_properties(&props(&[
            ("node.id", "2"),
            (
                "controller.quorum.voters",
                "1@127.0.0.1:9101, 2@127.0.0.1:9102,3@runnel3:9093",
            ),
            ("broker.rack", "r2"),
            ("broker.heartbeat.interval.ms", "200"),
            ("broker.session.timeout.ms", "1500"),
            ("controller.quorum.election.timeout.ms", "500"),
            ("metadata.snapshot.interval.entries", "50"),
            ("unclean.leader.election.enable", "true"),
        ]))
        .unwrap();
        assert!(c.is_clustered());
        assert_eq!(c.rack.as_deref(), Some("r2"));
        let n = c.node_config();
        assert_eq!(n.voters.len(), 3);
        assert_eq!(n.voters[&3], "runnel3:9093");
        assert_eq!(n.rpc_listen, Some("127.0.0.1:9102".parse().unwrap()));
        assert_eq!(n.rpc_advertised, "127.0.0.1:9102");
        assert_eq!(n.broker_heartbeat_interval, Duration::from_millis(200));
        assert_eq!(n.broker_session_timeout, Duration::from_millis(1500));
        assert_eq!(n.election_timeout, Duration::from_millis(500));
        assert_eq!(n.snapshot_interval_entries, 50);
        assert!(n.managers.unclean_leader_election);
        n.validate().unwrap();
        // A voter named by host name binds every interface on its port; --rpc-listen overrides
        // the bind address but the voter entry stays what others dial.
        let c = BrokerConfig::from_properties(&props(&[
            ("node.id", "3"),
            (
                "controller.quorum.voters",
                "1@runnel1:9093,2@runnel2:9093,3@runnel3:9093",
            ),
        ]))
        .unwrap();
        assert_eq!(
            c.node_config().rpc_listen,
            Some("0.0.0.0:9093".parse().unwrap())
        );
        assert_eq!(c.node_config().rpc_advertised, "runnel3:9093");
        let c = BrokerConfig::from_properties(&props(&[
            ("node.id", "3"),
            ("controller.quorum.voters", "1@runnel1:9093,3@runnel3:9093"),
            ("rpc.listen", "10.0.0.3:7000"),
        ]))
        .unwrap();
        assert_eq!(
            c.node_config().rpc_listen,
            Some("10.0.0.3:7000".parse().unwrap())
        );
        assert_eq!(c.node_config().rpc_advertised, "runnel3:9093");
    }

    #[test]
    fn broker_only_nodes_and_bad_quorum_settings() {
        let c = BrokerConfig::from_properties(&props(&[
            ("node.id", "4"),
            ("process.roles", "broker"),
            ("controller.quorum.voters", "1@127.0.0.1:9101"),
            ("rpc.listen", "127.0.0.1:9104"),
        ]))
        .unwrap();
        let n = c.node_config();
        assert_eq!(
            n.roles,
            Roles {
                broker: true,
                controller: false
            }
        );
        assert_eq!(n.rpc_advertised, "127.0.0.1:9104");
        n.validate().unwrap();
        let err = |p: &[(&str, &str)]| {
            BrokerConfig::from_properties(&props(p))
                .unwrap_err()
                .to_string()
        };
        assert!(err(&[("process.roles", "controller")]).contains("controller-only"));
        assert!(err(&[("process.roles", "broker,gateway")]).contains("process.roles"));
        assert!(err(&[("process.roles", "broker")]).contains("voters"));
        assert!(
            err(&[("node.id", "9"), ("controller.quorum.voters", "1@h:1")])
                .contains("not in controller.quorum.voters")
        );
        assert!(err(&[
            ("node.id", "5"),
            ("process.roles", "broker"),
            ("controller.quorum.voters", "1@h:1")
        ])
        .contains("rpc.listen"));
        assert!(err(&[
            ("node.id", "5"),
            ("process.roles", "broker"),
            ("controller.quorum.voters", "1@h:1,2@h:2")
        ])
        .contains("rpc.listen"));
        assert!(err(&[
            ("node.id", "1"),
            ("controller.quorum.voters", "1@h:1"),
            ("process.roles", "broker"),
            ("rpc.listen", "h:2")
        ])
        .contains("no controller"));
        assert!(err(&[("controller.quorum.voters", "1@h")]).contains("controller.quorum.voters"));
        assert!(err(&[("controller.quorum.voters", "x@h:1")]).contains("controller.quorum.voters"));
        assert!(err(&[("controller.quorum.voters", "1@h:1,1@h:2")]).contains("twice"));
        assert!(err(&[("controller.quorum.voters", "1@h:0")]).contains("controller.quorum.voters"));
        assert!(err(&[("broker.session.timeout.ms", "500")]).contains("broker.session.timeout.ms"));
        assert!(err(&[("rpc.listen", "nope")]).contains("rpc.listen"));
        assert!(err(&[("offsets.topic.replication.factor", "0")])
            .contains("offsets.topic.replication.factor"));
    }

    #[test]
    fn several_named_listeners_with_their_advertised_addresses() {
        let c = BrokerConfig::from_properties(&props(&[
            (
                "listeners",
                "INTERNAL://:19092,EXTERNAL://0.0.0.0:9092,CONTROLLER://:9093",
            ),
            (
                "listener.security.protocol.map",
                "INTERNAL:PLAINTEXT,EXTERNAL:SSL,CONTROLLER:PLAINTEXT",
            ),
            ("ssl.client.auth", "required"),
            (
                "advertised.listeners",
                "EXTERNAL://localhost:9094,INTERNAL://runnel2:19092",
            ),
        ]))
        .unwrap();
        let hp = |h: &str, p: u16| HostPort {
            host: h.into(),
            port: p,
        };
        assert_eq!(
            c.listeners,
            vec![
                Listener {
                    name: "INTERNAL".into(),
                    listen: hp("0.0.0.0", 19092),
                    advertised: Some(hp("runnel2", 19092)),
                    protocol: SecurityProtocol::Plaintext,
                    security: c.listeners[0].security.clone(),
                },
                Listener {
                    name: "EXTERNAL".into(),
                    listen: hp("0.0.0.0", 9092),
                    advertised: Some(hp("localhost", 9094)),
                    protocol: SecurityProtocol::Ssl,
                    security: c.listeners[1].security.clone(),
                },
            ]
        );
        assert_eq!(c.listen, hp("0.0.0.0", 19092));
        assert_eq!(c.advertised, Some(hp("runnel2", 19092)));
        // A listener without an advertised entry advertises its own address.
        let c = BrokerConfig::from_properties(&props(&[
            ("listeners", "A://127.0.0.1:1,B://127.0.0.2:2"),
            ("listener.security.protocol.map", "A:PLAINTEXT,B:PLAINTEXT"),
            ("advertised.listeners", "B://b:2"),
        ]))
        .unwrap();
        assert_eq!(c.listeners[0].advertised, None);
        assert_eq!(
            resolve_listener_advertised(&c.listeners[0].listen, None, 1),
            hp("127.0.0.1", 1)
        );
        assert_eq!(c.listeners[1].advertised, Some(hp("b", 2)));
        // One listener keeps taking the one advertised address whatever its name
        // (--listen and --advertised-listener name theirs PLAINTEXT).
        let c = BrokerConfig::from_properties(&props(&[
            ("listeners", "INTERNAL://:9092"),
            ("listener.security.protocol.map", "INTERNAL:PLAINTEXT"),
            ("advertised.listeners", "PLAINTEXT://h:1"),
        ]))
        .unwrap();
        assert_eq!(c.advertised, Some(hp("h", 1)));
        let err = |p: &[(&str, &str)]| {
            BrokerConfig::from_properties(&props(p))
                .unwrap_err()
                .to_string()
        };
        let map = (
            "listener.security.protocol.map",
            "A:PLAINTEXT,B:PLAINTEXT,C:PLAINTEXT",
        );
        assert!(err(&[("listeners", "A://:1,A://:2"), map]).contains("twice"));
        assert!(err(&[("listeners", "A://:1,B://:1"), map]).contains("two listeners"));
        assert!(err(&[("listeners", "SECURE://:1")]).contains("listener.security.protocol.map"));
        assert!(err(&[
            ("listeners", "A://:1"),
            ("listener.security.protocol.map", "A:TLS")
        ])
        .contains("TLS"));
        assert!(err(&[
            ("listeners", "A://:1"),
            map,
            ("listener.name.b.ssl.client.auth", "required")
        ])
        .contains("no listener is named B"));
        assert!(
            err(&[("authorizer.class.name", "com.example.MyAuthorizer")])
                .contains("authorizer.class.name")
        );
        assert!(err(&[("super.users", "admin")]).contains("super.users"));
        assert!(err(&[
            ("listeners", "A://:1,B://:2"),
            map,
            ("advertised.listeners", "C://c:3")
        ])
        .contains("C is not a listener"));
        assert!(err(&[("listeners", "CONTROLLER://:9093")]).contains("listeners"));
    }

    #[test]
    fn zero_config_advertises_localhost_like_kafkas_quickstart() {
        let hp = |h: &str, p: u16| HostPort {
            host: h.into(),
            port: p,
        };
        let c = BrokerConfig::from_properties(&[]).unwrap();
        assert_eq!(c.listen.host, "0.0.0.0");
        assert_eq!(c.resolve_advertised(9092), hp("localhost", 9092));
        // Either property given: no default is added.
        let c = BrokerConfig::from_properties(&props(&[(
            "advertised.listeners",
            "PLAINTEXT://kafka1:9092",
        )]))
        .unwrap();
        assert_eq!(c.advertised, Some(hp("kafka1", 9092)));
    }

    #[test]
    fn wildcard_listener_advertises_host_name_not_loopback() {
        let c =
            BrokerConfig::from_properties(&props(&[("listeners", "PLAINTEXT://:9092")])).unwrap();
        let a = c.resolve_advertised(9092);
        assert_ne!(a.host, "0.0.0.0");
        assert_ne!(a.host, "127.0.0.1");
        let c = BrokerConfig::from_properties(&props(&[("listeners", "PLAINTEXT://127.0.0.1:0")]))
            .unwrap();
        assert_eq!(
            c.resolve_advertised(4242),
            HostPort {
                host: "127.0.0.1".into(),
                port: 4242
            }
        );
    }
}
