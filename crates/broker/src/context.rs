//! Who sent a request, and over what: the [`RequestContext`] every handler receives.
//!
//! A connection is accepted on a named listener with a security protocol; TLS may identify
//! the peer by its certificate, SASL by its credentials. What the connection established is
//! its [`ConnectionContext`]; each request adds its header to that. Handlers read the listener
//! (to give clients that listener's addresses), the peer (a group member's host) and the
//! principal (authorization) from here, never from globals.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use kafka_protocol::messages::ApiKey;

pub use runnel_security::SecurityProtocol;

/// A Kafka principal, `Type:name` (`User:alice`). Unauthenticated connections are
/// `User:ANONYMOUS`, as in Kafka.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KafkaPrincipal {
    pub principal_type: String,
    pub name: String,
}

impl KafkaPrincipal {
    pub const USER_TYPE: &'static str = "User";
    pub const ANONYMOUS_NAME: &'static str = "ANONYMOUS";

    pub fn user(name: impl Into<String>) -> KafkaPrincipal {
        KafkaPrincipal {
            principal_type: Self::USER_TYPE.to_string(),
            name: name.into(),
        }
    }

    pub fn anonymous() -> KafkaPrincipal {
        Self::user(Self::ANONYMOUS_NAME)
    }
}

impl fmt::Display for KafkaPrincipal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.principal_type, self.name)
    }
}

/// The client software a connection announced in ApiVersions v3+ (KIP-511).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSoftware {
    pub name: String,
    pub version: String,
}

/// What a connection established: where it came from and who it is.
#[derive(Debug, Clone)]
pub struct ConnectionContext {
    /// The listener's name (`PLAINTEXT`, `INTERNAL`, ...).
    pub listener: Arc<str>,
    pub security_protocol: SecurityProtocol,
    /// `None` for requests that did not come over a connection (internal calls, unit tests).
    pub peer: Option<SocketAddr>,
    pub principal: Arc<KafkaPrincipal>,
    pub client_software: Option<ClientSoftware>,
}

impl ConnectionContext {
    pub fn new(
        listener: Arc<str>,
        security_protocol: SecurityProtocol,
        peer: SocketAddr,
    ) -> ConnectionContext {
        ConnectionContext {
            listener,
            security_protocol,
            peer: Some(peer),
            principal: Arc::new(KafkaPrincipal::anonymous()),
            client_software: None,
        }
    }
}

/// One request: the connection's context and the request header.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub connection: ConnectionContext,
    pub api_key: ApiKey,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
    /// A request the broker makes on its own behalf (the offsets topic created for a group
    /// coordinator lookup): authorization does not apply to it.
    pub internal: bool,
    /// The request's size on the wire (what a produce quota charges).
    pub request_bytes: usize,
}

impl RequestContext {
    pub fn new(
        connection: ConnectionContext,
        api_key: ApiKey,
        api_version: i16,
        correlation_id: i32,
        client_id: Option<String>,
    ) -> RequestContext {
        RequestContext {
            connection,
            api_key,
            api_version,
            correlation_id,
            client_id,
            internal: false,
            request_bytes: 0,
        }
    }

    /// A request the broker makes itself, on the default listener. Authorization does not
    /// apply (see [`RequestContext::internal`]).
    pub fn internal(api_key: ApiKey, api_version: i16) -> RequestContext {
        RequestContext {
            connection: ConnectionContext {
                listener: Arc::from(LISTENER_NAME),
                security_protocol: SecurityProtocol::Plaintext,
                peer: None,
                principal: Arc::new(KafkaPrincipal::anonymous()),
                client_software: None,
            },
            api_key,
            api_version,
            correlation_id: 0,
            client_id: None,
            internal: true,
            request_bytes: 0,
        }
    }

    pub fn listener(&self) -> &str {
        &self.connection.listener
    }

    pub fn principal(&self) -> &KafkaPrincipal {
        &self.connection.principal
    }

    /// The peer's address as ACL host entries name it (`127.0.0.1`); empty without a peer.
    pub fn host(&self) -> String {
        self.connection
            .peer
            .map(|p| p.ip().to_string())
            .unwrap_or_default()
    }

    /// The peer as Kafka shows a group member's host (`/127.0.0.1`).
    pub fn client_host(&self) -> String {
        match self.connection.peer {
            Some(p) => format!("/{}", p.ip()),
            None => "/unknown".to_string(),
        }
    }
}

/// The API's name as Kafka spells it, for logs and metric labels.
pub fn api_name(k: ApiKey) -> &'static str {
    match k {
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::OffsetForLeaderEpoch => "OffsetForLeaderEpoch",
        ApiKey::Metadata => "Metadata",
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::DeleteRecords => "DeleteRecords",
        ApiKey::InitProducerId => "InitProducerId",
        ApiKey::DescribeConfigs => "DescribeConfigs",
        ApiKey::AlterConfigs => "AlterConfigs",
        ApiKey::CreatePartitions => "CreatePartitions",
        ApiKey::IncrementalAlterConfigs => "IncrementalAlterConfigs",
        ApiKey::DescribeCluster => "DescribeCluster",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::JoinGroup => "JoinGroup",
        ApiKey::SyncGroup => "SyncGroup",
        ApiKey::Heartbeat => "Heartbeat",
        ApiKey::LeaveGroup => "LeaveGroup",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::ListGroups => "ListGroups",
        ApiKey::DescribeGroups => "DescribeGroups",
        ApiKey::DeleteGroups => "DeleteGroups",
        ApiKey::OffsetDelete => "OffsetDelete",
        ApiKey::DescribeQuorum => "DescribeQuorum",
        ApiKey::ElectLeaders => "ElectLeaders",
        ApiKey::SaslHandshake => "SaslHandshake",
        ApiKey::SaslAuthenticate => "SaslAuthenticate",
        ApiKey::CreateAcls => "CreateAcls",
        ApiKey::DescribeAcls => "DescribeAcls",
        ApiKey::DeleteAcls => "DeleteAcls",
        ApiKey::DescribeUserScramCredentials => "DescribeUserScramCredentials",
        ApiKey::AlterUserScramCredentials => "AlterUserScramCredentials",
        ApiKey::DescribeClientQuotas => "DescribeClientQuotas",
        ApiKey::AlterClientQuotas => "AlterClientQuotas",
        _ => "other",
    }
}

/// Kafka's default listener name: the endpoint given to a client whose request did not come
/// over a named listener.
pub const LISTENER_NAME: &str = "PLAINTEXT";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_formatted_as_kafka_does() {
        let peer: SocketAddr = "10.1.2.3:5555".parse().unwrap();
        let conn = ConnectionContext::new(Arc::from("EXTERNAL"), SecurityProtocol::Ssl, peer);
        let ctx = RequestContext::new(conn, ApiKey::Metadata, 12, 1, Some("c".into()));
        assert_eq!(ctx.host(), "10.1.2.3");
        assert_eq!(ctx.client_host(), "/10.1.2.3");
        assert_eq!(ctx.principal().to_string(), "User:ANONYMOUS");
        assert_eq!(
            RequestContext::internal(ApiKey::Metadata, 0).client_host(),
            "/unknown"
        );
    }
}
