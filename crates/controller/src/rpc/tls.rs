//! Mutual TLS on the inter-node gRPC port (`rpc.ssl.*`): the server asks every client for a
//! certificate chaining to the truststore, and every client presents the node's certificate and
//! verifies the server's against the same truststore and the host name it dials. What a
//! certificate must name is the identity rule of [`super::identity`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

use super::identity;
use crate::records::BrokerId;

/// Longest a TLS handshake may take on the server before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the node's TLS material lives (`rpc.ssl.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcTlsConfig {
    /// `rpc.ssl.keystore.location`: a PEM file with the node's private key (PKCS#8, PKCS#1 or
    /// SEC1, unencrypted) and its certificate chain, the node certificate first.
    pub keystore_location: PathBuf,
    /// `rpc.ssl.truststore.location`: a PEM file with the CA certificates node certificates
    /// must chain to.
    pub truststore_location: PathBuf,
}

/// The loaded TLS material of a node.
#[derive(Debug, Clone)]
pub(crate) struct RpcTls {
    identity: Identity,
    trust: Certificate,
}

fn read(path: &Path, property: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{property}: cannot read {}: {e}", path.display()))
}

/// The DER bodies of the PEM sections labelled `label` in `pem`.
fn pem_sections(pem: &[u8], label: &str) -> Result<Vec<Vec<u8>>, String> {
    use rustls_pki_types::pem::{PemObject, SectionKind};
    let mut out = Vec::new();
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
        let (kind, der) = section.map_err(|e| format!("malformed PEM: {e}"))?;
        let matches = match label {
            "CERTIFICATE" => kind == SectionKind::Certificate,
            _ => matches!(
                kind,
                SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey
            ),
        };
        if matches {
            out.push(der);
        }
    }
    Ok(out)
}

impl RpcTls {
    /// Reads and checks the keystore and truststore of node `node_id`: the keystore holds a key
    /// and a certificate chain whose first certificate names this node (the identity rule),
    /// the truststore at least one certificate.
    pub(crate) fn load(cfg: &RpcTlsConfig, node_id: BrokerId) -> Result<RpcTls, String> {
        const KEYSTORE: &str = "rpc.ssl.keystore.location";
        const TRUSTSTORE: &str = "rpc.ssl.truststore.location";
        let keystore = read(&cfg.keystore_location, KEYSTORE)?;
        let certs =
            pem_sections(&keystore, "CERTIFICATE").map_err(|e| format!("{KEYSTORE}: {e}"))?;
        let keys = pem_sections(&keystore, "KEY").map_err(|e| format!("{KEYSTORE}: {e}"))?;
        if keystore
            .windows(b"ENCRYPTED PRIVATE KEY".len())
            .any(|w| w == b"ENCRYPTED PRIVATE KEY")
        {
            return Err(format!(
                "{KEYSTORE}: {} holds an encrypted private key; give the key unencrypted",
                cfg.keystore_location.display()
            ));
        }
        let Some(leaf) = certs.first() else {
            return Err(format!(
                "{KEYSTORE}: {} holds no certificate",
                cfg.keystore_location.display()
            ));
        };
        if keys.len() != 1 {
            return Err(format!(
                "{KEYSTORE}: {} holds {} private keys; it must hold exactly one",
                cfg.keystore_location.display(),
                keys.len()
            ));
        }
        let named = identity::node_id_of_cert(leaf).map_err(|e| {
            format!(
                "{KEYSTORE}: the certificate in {} is not a node certificate: {e}",
                cfg.keystore_location.display()
            )
        })?;
        if named != node_id {
            return Err(format!(
                "{KEYSTORE}: the certificate in {} names node {named} ({}), but node.id is {node_id}",
                cfg.keystore_location.display(),
                identity::node_uri(named)
            ));
        }
        let truststore = read(&cfg.truststore_location, TRUSTSTORE)?;
        let cas =
            pem_sections(&truststore, "CERTIFICATE").map_err(|e| format!("{TRUSTSTORE}: {e}"))?;
        if cas.is_empty() {
            return Err(format!(
                "{TRUSTSTORE}: {} holds no certificate",
                cfg.truststore_location.display()
            ));
        }
        // tonic reads the certificates and the key out of the same PEM, each skipping the
        // sections of the other kind.
        let tls = RpcTls {
            identity: Identity::from_pem(&keystore, &keystore),
            trust: Certificate::from_pem(truststore),
        };
        // Building the server side checks that the key matches the certificate.
        tonic::transport::Server::builder()
            .tls_config(tls.server_config())
            .map_err(|e| {
                format!(
                    "{KEYSTORE}: unusable key or certificate in {}: {}",
                    cfg.keystore_location.display(),
                    error_chain(&e)
                )
            })?;
        Ok(tls)
    }

    /// The server side: this node's certificate; client certificates required, from the
    /// truststore's CAs.
    pub(crate) fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity.clone())
            .client_ca_root(self.trust.clone())
            .client_auth_optional(false)
            .timeout(HANDSHAKE_TIMEOUT)
    }

    /// The client side: presents this node's certificate and verifies the server's against
    /// the truststore and the host name dialled.
    pub(crate) fn client_config(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .identity(self.identity.clone())
            .ca_certificate(self.trust.clone())
            .assume_http2(true)
            .timeout(HANDSHAKE_TIMEOUT)
    }
}

/// An error and its sources, one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// An endpoint for the gRPC server at `host:port`: `https` with this node's TLS when it has
/// any, plain `http` otherwise.
pub(crate) fn endpoint(
    addr: &str,
    tls: Option<&RpcTls>,
) -> Result<Endpoint, tonic::transport::Error> {
    match tls {
        None => Endpoint::from_shared(format!("http://{addr}")),
        Some(tls) => {
            Endpoint::from_shared(format!("https://{addr}"))?.tls_config(tls.client_config())
        }
    }
}

/// Whether a gRPC server bound to `addr` is reachable from beyond this host.
pub(crate) fn beyond_loopback(addr: &std::net::SocketAddr) -> bool {
    !addr.ip().is_loopback()
}
