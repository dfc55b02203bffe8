//! Who is calling: the node identity of an inter-node gRPC peer, taken from its TLS client
//! certificate, and the check that a request speaks only for that node.
//!
//! # The node identity rule
//!
//! A node certificate names its node id in exactly one subject alternative name of type URI,
//! `urn:runnel:node:<id>`, where `<id>` is the node's `node.id` in decimal (for example
//! `urn:runnel:node:3`). The certificate also carries the DNS names and IP addresses other
//! nodes dial it at (the host of its `controller.quorum.voters` entry or `rpc.advertised`),
//! because clients verify the server's host name. With `rpc.ssl.keystore.location` and
//! `rpc.ssl.truststore.location` set, the gRPC server accepts only clients whose certificate
//! chains to a CA of the truststore, and every request that names a node id must name the id
//! of the calling certificate: the candidate of a Vote, the leader of an AppendEntries or
//! InstallSnapshot, the broker of a RegisterBroker, BrokerHeartbeat, AllocateProducerIds or
//! AlterPartition, and the replica of a replica Fetch. ForwardAdmin and DescribeQuorum need a
//! valid node certificate of any node. A refused request gets the gRPC status
//! `PERMISSION_DENIED` (`UNAUTHENTICATED` when no usable certificate was presented).
//!
//! Without TLS on the port there is no identity to check and every request is served.

use std::net::SocketAddr;

use tonic::{Request, Status};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// The URI prefix of a node certificate's identity SAN.
pub const NODE_URI_PREFIX: &str = "urn:runnel:node:";

/// The SAN URI that names node `id`.
pub fn node_uri(id: i32) -> String {
    format!("{NODE_URI_PREFIX}{id}")
}

/// The node id a certificate (DER) names, under the rule in the module docs.
pub fn node_id_of_cert(der: &[u8]) -> Result<i32, String> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("unparsable certificate: {e}"))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| format!("unparsable subject alternative names: {e}"))?;
    let uris: Vec<&str> = san
        .iter()
        .flat_map(|ext| ext.value.general_names.iter())
        .filter_map(|name| match name {
            GeneralName::URI(uri) => uri.strip_prefix(NODE_URI_PREFIX),
            _ => None,
        })
        .collect();
    match uris.as_slice() {
        [] => Err(format!(
            "the certificate has no {NODE_URI_PREFIX}<id> subject alternative name"
        )),
        [id] => parse_id(id),
        more => Err(format!(
            "the certificate names {} node ids ({NODE_URI_PREFIX}{}); a node certificate names one",
            more.len(),
            more.join(", ")
        )),
    }
}

fn parse_id(id: &str) -> Result<i32, String> {
    // Digits only: no sign, no spaces, no leading "+".
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{NODE_URI_PREFIX}{id} does not name a node id"));
    }
    id.parse::<i32>()
        .map_err(|_| format!("{NODE_URI_PREFIX}{id} is out of the node id range"))
}

/// The authenticated caller of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// TLS is off on this port: nobody is authenticated and nothing is checked.
    Anonymous,
    /// A client certificate chaining to the truststore names this node.
    Node(i32),
}

/// The caller of `request`. With `tls` on, a request without a peer certificate, or whose
/// certificate names no node under the identity rule, is refused `UNAUTHENTICATED` (and
/// logged).
pub fn peer<T>(request: &Request<T>, tls: bool) -> Result<Peer, Status> {
    if !tls {
        return Ok(Peer::Anonymous);
    }
    let remote = request.remote_addr();
    let certs = request.peer_certs();
    let Some(leaf) = certs.as_ref().and_then(|c| c.first()) else {
        tracing::warn!(peer = ?remote, "inter-node request without a client certificate refused");
        return Err(Status::unauthenticated(
            "a node certificate is required on this port",
        ));
    };
    node_id_of_cert(leaf).map(Peer::Node).map_err(|reason| {
        tracing::warn!(peer = ?remote, %reason, "inter-node request with an unusable certificate refused");
        Status::unauthenticated(format!("not a node certificate: {reason}"))
    })
}

/// Checks that a request from `peer` that speaks for node `claimed` (its `what`: "candidate",
/// "broker_id", ...) may: refused `PERMISSION_DENIED`, with a warning naming the remote
/// address, the claimed id and the certificate's id, when the certificate names another node.
pub fn check_claim(
    peer: Peer,
    claimed: i64,
    what: &'static str,
    remote: Option<SocketAddr>,
) -> Result<(), Status> {
    match peer {
        Peer::Anonymous => Ok(()),
        Peer::Node(id) if i64::from(id) == claimed => Ok(()),
        Peer::Node(id) => {
            tracing::warn!(
                peer = ?remote,
                claimed_id = claimed,
                certificate_id = id,
                field = what,
                "inter-node request speaking for another node refused"
            );
            Err(Status::permission_denied(format!(
                "the certificate of node {id} cannot send a request whose {what} is {claimed}"
            )))
        }
    }
}

/// [`peer`] and then [`check_claim`] for a request that names node `claimed`.
pub fn authorize<T>(
    request: &Request<T>,
    tls: bool,
    claimed: i64,
    what: &'static str,
) -> Result<(), Status> {
    let who = peer(request, tls)?;
    check_claim(who, claimed, what, request.remote_addr())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(sans: &[&str]) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = sans
            .iter()
            .map(|s| match s.strip_prefix("dns:") {
                Some(dns) => rcgen::SanType::DnsName(dns.to_string().try_into().unwrap()),
                None => rcgen::SanType::URI(s.to_string().try_into().unwrap()),
            })
            .collect();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn a_node_certificate_names_one_node() {
        assert_eq!(node_id_of_cert(&cert(&["urn:runnel:node:3"])), Ok(3));
        assert_eq!(
            node_id_of_cert(&cert(&[
                "dns:runnel2",
                "urn:runnel:node:2",
                "https://x.example/"
            ])),
            Ok(2)
        );
        assert_eq!(node_uri(7), "urn:runnel:node:7");
        assert_eq!(node_id_of_cert(&cert(&[&node_uri(0)])), Ok(0));
    }

    #[test]
    fn other_certificates_name_no_node() {
        for sans in [
            &[][..],
            &["dns:runnel1"][..],
            &["urn:runnel:node:"][..],
            &["urn:runnel:node:-1"][..],
            &["urn:runnel:node:+1"][..],
            &["urn:runnel:node:1x"][..],
            &["urn:runnel:node:99999999999"][..],
            &["urn:runnel:node:1", "urn:runnel:node:2"][..],
            &["urn:runnel:nodes:1"][..],
        ] {
            assert!(node_id_of_cert(&cert(sans)).is_err(), "{sans:?}");
        }
        assert!(node_id_of_cert(b"not der").is_err());
    }

    #[test]
    fn claims_must_name_the_certificate_node() {
        let remote = Some("127.0.0.1:5000".parse().unwrap());
        assert!(check_claim(Peer::Node(2), 2, "broker_id", remote).is_ok());
        let refused = check_claim(Peer::Node(2), 3, "broker_id", remote).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
        assert!(
            refused.message().contains("node 2"),
            "{}",
            refused.message()
        );
        assert!(
            refused.message().contains("broker_id is 3"),
            "{}",
            refused.message()
        );
        // Raft ids are u64 on the wire: a huge one cannot alias a small one.
        assert!(check_claim(Peer::Node(2), (1i64 << 32) + 2, "candidate", None).is_err());
        // Without TLS nothing is checked.
        assert!(check_claim(Peer::Anonymous, 3, "broker_id", remote).is_ok());
    }

    #[test]
    fn without_tls_every_caller_is_anonymous() {
        let request = Request::new(());
        assert_eq!(peer(&request, false).unwrap(), Peer::Anonymous);
        // With TLS required, a request that carries no certificate is unauthenticated.
        let status = peer(&request, true).unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        assert!(authorize(&request, true, 1, "broker_id").is_err());
        assert!(authorize(&request, false, 1, "broker_id").is_ok());
    }
}
