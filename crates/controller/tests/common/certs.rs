//! Test certificate authorities and node certificates for mutual TLS on the gRPC port.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use runnel_controller::rpc::tls::RpcTlsConfig;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// A certificate authority that issues node certificates, its files under `dir`.
pub struct Pki {
    name: String,
    dir: PathBuf,
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    pub fn new(dir: &Path, name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        Pki {
            name: name.to_string(),
            dir,
            ca_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate with the given subject alternative names (`uri:`, `dns:` or an IP
    /// address), for both server and client use, and its private key: (chain PEM, key PEM).
    pub fn issue(&self, sans: &[String]) -> (String, String) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(
            DnType::CommonName,
            format!("{} {}", self.name, sans.join(" ")),
        );
        params.subject_alt_names = sans
            .iter()
            .map(|s| {
                if let Some(uri) = s.strip_prefix("uri:") {
                    SanType::URI(uri.to_string().try_into().unwrap())
                } else if let Some(dns) = s.strip_prefix("dns:") {
                    SanType::DnsName(dns.to_string().try_into().unwrap())
                } else {
                    SanType::IpAddress(s.parse().unwrap())
                }
            })
            .collect();
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// The SANs of node `id`'s certificate: its identity URI, 127.0.0.1 and localhost.
    pub fn node_sans(id: i32) -> Vec<String> {
        vec![
            format!("uri:urn:runnel:node:{id}"),
            IpAddr::V4(Ipv4Addr::LOCALHOST).to_string(),
            "dns:localhost".to_string(),
        ]
    }

    /// The truststore file: this CA's certificate.
    pub fn truststore(&self) -> PathBuf {
        let path = self.dir.join("truststore.pem");
        std::fs::write(&path, &self.ca_pem).unwrap();
        path
    }

    /// A keystore file (key and certificate chain) for a certificate with `sans`.
    pub fn keystore_with(&self, file: &str, sans: &[String]) -> PathBuf {
        let (cert, key) = self.issue(sans);
        let path = self.dir.join(file);
        std::fs::write(&path, format!("{key}{cert}")).unwrap();
        path
    }

    /// `rpc.ssl.*` of node `id`.
    pub fn node_config(&self, id: i32) -> RpcTlsConfig {
        RpcTlsConfig {
            keystore_location: self.keystore_with(&format!("node-{id}.pem"), &Self::node_sans(id)),
            truststore_location: self.truststore(),
        }
    }

    pub fn ca(&self) -> Certificate {
        Certificate::from_pem(&self.ca_pem)
    }

    /// A client identity named by node `id`'s SANs.
    pub fn identity(&self, id: i32) -> Identity {
        let (cert, key) = self.issue(&Self::node_sans(id));
        Identity::from_pem(cert, key)
    }

    /// A client that trusts this CA and presents `identity` (none: no certificate).
    pub fn client(&self, identity: Option<Identity>) -> ClientTlsConfig {
        let tls = ClientTlsConfig::new().ca_certificate(self.ca());
        match identity {
            Some(identity) => tls.identity(identity),
            None => tls,
        }
    }
}
