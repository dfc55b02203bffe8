//! rustls configurations from Kafka's `ssl.*` properties (PEM key and trust stores only), a
//! server configuration that follows certificate files as they are replaced, and the subject
//! name and URI SANs of a peer certificate.
//!
//! Properties read by [`TlsSettings::from_props`]:
//!
//! | property | meaning |
//! | --- | --- |
//! | `ssl.keystore.type` | `PEM` (the only type supported; unset means PEM) |
//! | `ssl.keystore.location` | a PEM file holding the private key and the certificate chain |
//! | `ssl.keystore.key`, `ssl.keystore.certificate.chain` | the same, inline PEM text |
//! | `ssl.key.password` | the password of an encrypted PKCS#8 key (`ENCRYPTED PRIVATE KEY`) |
//! | `ssl.truststore.type` | `PEM` (the only type supported; unset means PEM) |
//! | `ssl.truststore.location` | a PEM file of trusted CA certificates |
//! | `ssl.truststore.certificates` | the same, inline PEM text |
//! | `ssl.client.auth` | `none` (default), `requested` or `required` (server side) |
//! | `ssl.enabled.protocols` | `TLSv1.2,TLSv1.3` (default) or one of them |
//! | `ssl.cipher.suites` | IANA cipher suite names; empty means all supported ones |
//! | `ssl.endpoint.identification.algorithm` | `https` (default): the client checks the server's host name; empty: it does not |
//!
//! A client given no trust store trusts the operating system's CA bundle.
//!
//! Configurations are built with the `ring` provider passed explicitly, so no process-wide
//! provider needs to be installed.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig,
    SignatureScheme,
};
use sha2::{Digest, Sha256};

/// `ssl.client.auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    /// Ask for a client certificate; a client without one is still accepted.
    Requested,
    /// A client certificate signed by a trusted CA is required.
    Required,
}

/// A TLS protocol version of `ssl.enabled.protocols`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TlsProtocol {
    Tls12,
    Tls13,
}

impl TlsProtocol {
    /// Kafka's (Java's) name: `TLSv1.2`, `TLSv1.3`.
    pub fn name(self) -> &'static str {
        match self {
            TlsProtocol::Tls12 => "TLSv1.2",
            TlsProtocol::Tls13 => "TLSv1.3",
        }
    }

    fn rustls_version(self) -> &'static rustls::SupportedProtocolVersion {
        match self {
            TlsProtocol::Tls12 => &rustls::version::TLS12,
            TlsProtocol::Tls13 => &rustls::version::TLS13,
        }
    }
}

/// Where the private key and certificate chain come from.
#[derive(Clone, PartialEq, Eq)]
pub enum KeystoreSource {
    /// `ssl.keystore.location`: one PEM file with the key and the chain (leaf first).
    File(PathBuf),
    /// `ssl.keystore.key` and `ssl.keystore.certificate.chain`.
    Inline {
        key: String,
        certificate_chain: String,
    },
}

impl fmt::Debug for KeystoreSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeystoreSource::File(p) => f.debug_tuple("File").field(p).finish(),
            KeystoreSource::Inline { .. } => {
                f.write_str("Inline { key: [hidden], certificate_chain: .. }")
            }
        }
    }
}

/// Where the trusted CA certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TruststoreSource {
    /// `ssl.truststore.location`.
    File(PathBuf),
    /// `ssl.truststore.certificates`.
    Inline(String),
}

/// TLS settings of a listener or a client, from Kafka's `ssl.*` properties.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub keystore: Option<KeystoreSource>,
    /// `ssl.key.password`: the password of an encrypted PKCS#8 private key.
    pub key_password: Option<String>,
    pub truststore: Option<TruststoreSource>,
    pub client_auth: ClientAuth,
    pub enabled_protocols: Vec<TlsProtocol>,
    /// IANA names of the allowed cipher suites; empty for all supported ones.
    pub cipher_suites: Vec<String>,
    /// Whether a client checks the server's host name (`ssl.endpoint.identification.algorithm=https`).
    pub endpoint_identification: bool,
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field("keystore", &self.keystore)
            .field(
                "key_password",
                &self.key_password.as_ref().map(|_| "[hidden]"),
            )
            .field("truststore", &self.truststore)
            .field("client_auth", &self.client_auth)
            .field("enabled_protocols", &self.enabled_protocols)
            .field("cipher_suites", &self.cipher_suites)
            .field("endpoint_identification", &self.endpoint_identification)
            .finish()
    }
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            keystore: None,
            key_password: None,
            truststore: None,
            client_auth: ClientAuth::None,
            enabled_protocols: vec![TlsProtocol::Tls12, TlsProtocol::Tls13],
            cipher_suites: Vec::new(),
            endpoint_identification: true,
        }
    }
}

/// The IANA name of a cipher suite (rustls calls the TLS 1.3 ones `TLS13_*`).
fn iana_name(suite: rustls::SupportedCipherSuite) -> String {
    let name = format!("{:?}", suite.suite());
    match name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => name,
    }
}

/// The *ring* crypto provider. rustls marks its constructor deprecated because *ring* has no
/// post-quantum key exchange; this crate builds with *ring* only, by choice of the workspace.
#[allow(deprecated)]
fn ring_provider() -> CryptoProvider {
    ring::default_provider()
}

/// The IANA names of the cipher suites this build supports.
pub fn supported_cipher_suites() -> Vec<String> {
    ring_provider()
        .cipher_suites
        .into_iter()
        .map(iana_name)
        .collect()
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

fn check_pem_type(get: &dyn Fn(&str) -> Option<String>, prop: &str) -> Result<(), String> {
    match non_empty(get(prop)) {
        None => Ok(()),
        Some(t) if t.eq_ignore_ascii_case("PEM") => Ok(()),
        Some(t) => Err(format!(
            "{prop}={t} is not supported: only PEM key and trust stores are (convert the store to PEM \
             files and set {prop}=PEM)"
        )),
    }
}

impl TlsSettings {
    /// Reads Kafka's `ssl.*` properties through `get` (for a listener prefix, pass a closure
    /// that adds it). Refuses unsupported store types, protocols and cipher suites.
    pub fn from_props(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
        check_pem_type(get, "ssl.keystore.type")?;
        check_pem_type(get, "ssl.truststore.type")?;
        if non_empty(get("ssl.keystore.password")).is_some() {
            return Err("ssl.keystore.password cannot be specified with PEM format, only ssl.key.password may be \
                        specified"
                .to_string());
        }
        if non_empty(get("ssl.truststore.password")).is_some() {
            return Err("ssl.truststore.password cannot be specified for PEM format".to_string());
        }

        let location = non_empty(get("ssl.keystore.location"));
        let key = non_empty(get("ssl.keystore.key"));
        let chain = non_empty(get("ssl.keystore.certificate.chain"));
        let keystore = match (location, key, chain) {
            (None, None, None) => None,
            (Some(path), None, None) => Some(KeystoreSource::File(PathBuf::from(path))),
            (None, Some(key), Some(certificate_chain)) => Some(KeystoreSource::Inline {
                key,
                certificate_chain,
            }),
            (Some(_), _, _) => {
                return Err(
                    "ssl.keystore.location cannot be combined with ssl.keystore.key or \
                            ssl.keystore.certificate.chain"
                        .to_string(),
                )
            }
            (None, Some(_), None) => {
                return Err(
                    "ssl.keystore.key is set but ssl.keystore.certificate.chain is not".to_string(),
                )
            }
            (None, None, Some(_)) => {
                return Err(
                    "ssl.keystore.certificate.chain is set but ssl.keystore.key is not".to_string(),
                )
            }
        };
        let key_password = get("ssl.key.password").filter(|s| !s.is_empty());

        let truststore =
            match (
                non_empty(get("ssl.truststore.location")),
                non_empty(get("ssl.truststore.certificates")),
            ) {
                (None, None) => None,
                (Some(path), None) => Some(TruststoreSource::File(PathBuf::from(path))),
                (None, Some(pem)) => Some(TruststoreSource::Inline(pem)),
                (Some(_), Some(_)) => return Err(
                    "ssl.truststore.location cannot be combined with ssl.truststore.certificates"
                        .to_string(),
                ),
            };

        let client_auth = match non_empty(get("ssl.client.auth")).map(|s| s.to_ascii_lowercase()).as_deref() {
            None | Some("none") => ClientAuth::None,
            Some("requested") => ClientAuth::Requested,
            Some("required") => ClientAuth::Required,
            Some(other) => {
                return Err(format!(
                    "Invalid value {other} for configuration ssl.client.auth: String must be one of: required, \
                     requested, none"
                ))
            }
        };

        if let Some(p) = non_empty(get("ssl.protocol")) {
            if !matches!(p.as_str(), "TLS" | "TLSv1.2" | "TLSv1.3") {
                return Err(format!(
                    "ssl.protocol={p} is not supported: use TLSv1.3 or TLSv1.2"
                ));
            }
        }

        let enabled_protocols = match non_empty(get("ssl.enabled.protocols")) {
            None => vec![TlsProtocol::Tls12, TlsProtocol::Tls13],
            Some(list) => {
                let mut out = Vec::new();
                for p in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let v = match p {
                        "TLSv1.2" => TlsProtocol::Tls12,
                        "TLSv1.3" => TlsProtocol::Tls13,
                        other => {
                            return Err(format!(
                                "ssl.enabled.protocols: {other} is not supported (supported: TLSv1.2, TLSv1.3)"
                            ))
                        }
                    };
                    if !out.contains(&v) {
                        out.push(v);
                    }
                }
                if out.is_empty() {
                    return Err("ssl.enabled.protocols is empty".to_string());
                }
                out
            }
        };

        let supported = supported_cipher_suites();
        let mut cipher_suites = Vec::new();
        if let Some(list) = non_empty(get("ssl.cipher.suites")) {
            for s in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                if !supported.iter().any(|n| n == s) {
                    return Err(format!(
                        "ssl.cipher.suites: unsupported cipher suite '{s}' (supported: {})",
                        supported.join(", ")
                    ));
                }
                if !cipher_suites.iter().any(|n: &String| n == s) {
                    cipher_suites.push(s.to_string());
                }
            }
        }

        let endpoint_identification = match get("ssl.endpoint.identification.algorithm") {
            None => true,
            Some(v) if v.trim().is_empty() => false,
            Some(v) if v.trim().eq_ignore_ascii_case("https") => true,
            Some(v) => {
                return Err(format!(
                    "ssl.endpoint.identification.algorithm={v} is not supported: use https or an empty value"
                ))
            }
        };

        let settings = TlsSettings {
            keystore,
            key_password,
            truststore,
            client_auth,
            enabled_protocols,
            cipher_suites,
            endpoint_identification,
        };
        // Fails early when the suites and protocols leave nothing to negotiate.
        settings.provider_and_versions()?;
        Ok(settings)
    }

    /// The files the settings read (for reloading).
    fn files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if let Some(KeystoreSource::File(p)) = &self.keystore {
            out.push(p.clone());
        }
        if let Some(TruststoreSource::File(p)) = &self.truststore {
            out.push(p.clone());
        }
        out
    }

    /// The ring provider restricted to the configured suites, and the protocol versions that
    /// have at least one of them.
    fn provider_and_versions(
        &self,
    ) -> Result<
        (
            Arc<CryptoProvider>,
            Vec<&'static rustls::SupportedProtocolVersion>,
        ),
        String,
    > {
        let mut provider = ring_provider();
        if !self.cipher_suites.is_empty() {
            let all = std::mem::take(&mut provider.cipher_suites);
            for name in &self.cipher_suites {
                match all.iter().find(|s| iana_name(**s) == *name) {
                    Some(s) => provider.cipher_suites.push(*s),
                    None => {
                        return Err(format!(
                            "ssl.cipher.suites: unsupported cipher suite '{name}'"
                        ))
                    }
                }
            }
        }
        let versions: Vec<_> = self
            .enabled_protocols
            .iter()
            .map(|p| p.rustls_version())
            .filter(|v| provider.cipher_suites.iter().any(|s| s.version() == *v))
            .collect();
        if versions.is_empty() {
            return Err(format!(
                "ssl.cipher.suites has no cipher suite for the enabled protocols ({})",
                self.enabled_protocols
                    .iter()
                    .map(|p| p.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok((Arc::new(provider), versions))
    }
}

/// `-----BEGIN label-----` and `-----END label-----` markers.
fn pem_markers() -> &'static regex::Regex {
    static MARKERS: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    MARKERS.get_or_init(|| {
        regex::Regex::new(r"-----(BEGIN|END) [A-Z0-9 ]+-----").expect("a valid pattern")
    })
}

/// One `-----BEGIN label-----` section: its label and decoded bytes.
struct PemSection {
    label: String,
    der: Vec<u8>,
}

/// Splits PEM text into sections; text outside sections (such as `Bag Attributes` lines that
/// Java tools write) is skipped.
fn pem_sections(data: &[u8], what: &str) -> Result<Vec<PemSection>, String> {
    let text =
        std::str::from_utf8(data).map_err(|_| format!("{what} is not a PEM file (not text)"))?;
    // Inline PEM in a properties file often arrives on one line (`\` continuations join lines
    // without their line breaks), as Kafka accepts: put the BEGIN and END markers on lines of
    // their own and let the body's spaces separate base64 chunks.
    let text = pem_markers()
        .replace_all(text, |c: &regex::Captures<'_>| format!("\n{}\n", &c[0]))
        .into_owned();
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let line = line.trim();
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut body = String::new();
        let mut closed = false;
        for l in lines.by_ref() {
            let l = l.trim();
            if l == end {
                closed = true;
                break;
            }
            if l.starts_with("Proc-Type:") && l.contains("ENCRYPTED") {
                return Err(format!(
                    "{what}: OpenSSL's legacy encrypted {label} is not supported; convert the key to an \
                     encrypted PKCS#8 key (openssl pkcs8 -topk8)"
                ));
            }
            if l.contains(':') {
                continue; // an RFC 1421 header line
            }
            body.extend(l.split_whitespace());
        }
        if !closed {
            return Err(format!("{what}: PEM section {label} has no END line"));
        }
        let der = B64
            .decode(body.as_bytes())
            .map_err(|e| format!("{what}: invalid base64 in PEM section {label}: {e}"))?;
        out.push(PemSection {
            label: label.to_string(),
            der,
        });
    }
    Ok(out)
}

fn read_file(path: &Path, prop: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {prop} {}: {e}", path.display()))
}

fn certificates(sections: &[PemSection]) -> Vec<CertificateDer<'static>> {
    sections
        .iter()
        .filter(|s| {
            s.label == "CERTIFICATE"
                || s.label == "TRUSTED CERTIFICATE"
                || s.label == "X509 CERTIFICATE"
        })
        .map(|s| CertificateDer::from(s.der.clone()))
        .collect()
}

fn private_key(
    sections: &[PemSection],
    password: Option<&str>,
    what: &str,
) -> Result<PrivateKeyDer<'static>, String> {
    let keys: Vec<&PemSection> = sections
        .iter()
        .filter(|s| s.label.ends_with("PRIVATE KEY"))
        .collect();
    let key = match keys.as_slice() {
        [] => return Err(format!("{what} has no private key")),
        [k] => *k,
        _ => {
            return Err(format!(
                "{what} has {} private keys; expected one",
                keys.len()
            ))
        }
    };
    match key.label.as_str() {
        "ENCRYPTED PRIVATE KEY" => {
            let Some(password) = password else {
                return Err(format!(
                    "{what}: the private key is encrypted; set ssl.key.password"
                ));
            };
            let info = pkcs8::EncryptedPrivateKeyInfoRef::try_from(key.der.as_slice())
                .map_err(|e| format!("{what}: invalid encrypted private key: {e}"))?;
            let doc = info.decrypt(password).map_err(|_| {
                format!("{what}: cannot decrypt the private key (wrong ssl.key.password or unsupported encryption)")
            })?;
            Ok(PrivateKeyDer::Pkcs8(doc.as_bytes().to_vec().into()))
        }
        label => {
            if password.is_some() {
                tracing::warn!(
                    store = what,
                    "ssl.key.password is set but the private key is not encrypted"
                );
            }
            match label {
                "PRIVATE KEY" => Ok(PrivateKeyDer::Pkcs8(key.der.clone().into())),
                "RSA PRIVATE KEY" => Ok(PrivateKeyDer::Pkcs1(key.der.clone().into())),
                "EC PRIVATE KEY" => Ok(PrivateKeyDer::Sec1(key.der.clone().into())),
                other => Err(format!("{what}: unsupported private key type {other}")),
            }
        }
    }
}

struct Keystore {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

fn load_keystore(s: &TlsSettings) -> Result<Option<Keystore>, String> {
    let password = s.key_password.as_deref();
    let (chain, key) = match &s.keystore {
        None => return Ok(None),
        Some(KeystoreSource::File(path)) => {
            let what = format!("ssl.keystore.location {}", path.display());
            let sections = pem_sections(&read_file(path, "ssl.keystore.location")?, &what)?;
            (
                certificates(&sections),
                private_key(&sections, password, &what)?,
            )
        }
        Some(KeystoreSource::Inline {
            key,
            certificate_chain,
        }) => {
            let chain = certificates(&pem_sections(
                certificate_chain.as_bytes(),
                "ssl.keystore.certificate.chain",
            )?);
            let key = private_key(
                &pem_sections(key.as_bytes(), "ssl.keystore.key")?,
                password,
                "ssl.keystore.key",
            )?;
            (chain, key)
        }
    };
    if chain.is_empty() {
        return Err("the keystore has no certificate (ssl.keystore.location or ssl.keystore.certificate.chain)".into());
    }
    Ok(Some(Keystore { chain, key }))
}

fn load_roots(s: &TlsSettings) -> Result<Option<RootCertStore>, String> {
    let (certs, what) = match &s.truststore {
        None => return Ok(None),
        Some(TruststoreSource::File(path)) => {
            let what = format!("ssl.truststore.location {}", path.display());
            (
                certificates(&pem_sections(
                    &read_file(path, "ssl.truststore.location")?,
                    &what,
                )?),
                what,
            )
        }
        Some(TruststoreSource::Inline(pem)) => (
            certificates(&pem_sections(
                pem.as_bytes(),
                "ssl.truststore.certificates",
            )?),
            "ssl.truststore.certificates".to_string(),
        ),
    };
    roots_from(certs, &what).map(Some)
}

fn roots_from(certs: Vec<CertificateDer<'static>>, what: &str) -> Result<RootCertStore, String> {
    if certs.is_empty() {
        return Err(format!("{what} has no certificate"));
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(certs);
    if ignored > 0 {
        tracing::warn!(
            store = what,
            ignored,
            "some trusted certificates could not be parsed and are ignored"
        );
    }
    if added == 0 {
        return Err(format!("{what} has no usable certificate"));
    }
    Ok(roots)
}

/// The operating system's CA bundle, for clients given no trust store.
fn system_roots() -> Result<RootCertStore, String> {
    const BUNDLES: &[&str] = &[
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/ca-bundle.pem",
        "/etc/ssl/cert.pem",
    ];
    for path in BUNDLES {
        if let Ok(data) = std::fs::read(path) {
            if let Ok(sections) = pem_sections(&data, path) {
                if let Ok(roots) = roots_from(certificates(&sections), path) {
                    return Ok(roots);
                }
            }
        }
    }
    Err("no trust store configured (ssl.truststore.location or ssl.truststore.certificates) and no system CA \
         bundle found"
        .to_string())
}

/// A rustls server configuration for a TLS listener.
pub fn server_config(s: &TlsSettings) -> Result<Arc<ServerConfig>, String> {
    let (provider, versions) = s.provider_and_versions()?;
    let keystore = load_keystore(s)?.ok_or_else(|| {
        "a TLS listener needs ssl.keystore.location (or ssl.keystore.key and ssl.keystore.certificate.chain)"
            .to_string()
    })?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("invalid TLS settings: {e}"))?;
    let builder = match s.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        auth => {
            let roots = load_roots(s)?.ok_or_else(|| {
                "ssl.client.auth requested/required needs ssl.truststore.location or ssl.truststore.certificates"
                    .to_string()
            })?;
            let mut verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            if auth == ClientAuth::Requested {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier
                .build()
                .map_err(|e| format!("invalid trust store: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(keystore.chain, keystore.key)
        .map_err(|e| format!("invalid keystore: {e}"))?;
    Ok(Arc::new(config))
}

/// A rustls client configuration; with a keystore, the client presents its certificate.
pub fn client_config(s: &TlsSettings) -> Result<Arc<ClientConfig>, String> {
    let (provider, versions) = s.provider_and_versions()?;
    let roots = match load_roots(s)? {
        Some(r) => r,
        None => system_roots()?,
    };
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("invalid trust store: {e}"))?;
    let verifier: Arc<dyn ServerCertVerifier> = if s.endpoint_identification {
        verifier
    } else {
        Arc::new(NoHostnameVerifier(verifier))
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| format!("invalid TLS settings: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match load_keystore(s)? {
        Some(k) => builder
            .with_client_auth_cert(k.chain, k.key)
            .map_err(|e| format!("invalid keystore: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Verifies the server's chain but not its host name
/// (`ssl.endpoint.identification.algorithm=` empty).
#[derive(Debug)]
struct NoHostnameVerifier(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for NoHostnameVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The state of the files behind a configuration: modification time and content hash.
type Fingerprint = Vec<(PathBuf, Option<SystemTime>, [u8; 32])>;

fn fingerprint(files: &[PathBuf]) -> Result<Fingerprint, String> {
    files
        .iter()
        .map(|p| {
            let data = std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            let mtime = std::fs::metadata(p).and_then(|m| m.modified()).ok();
            Ok((p.clone(), mtime, Sha256::digest(&data).into()))
        })
        .collect()
}

struct ReloadState {
    config: Arc<ServerConfig>,
    /// The files as they were when `config` was built.
    loaded: Fingerprint,
    /// The files as they were at the last failed attempt, so one broken version is reported once.
    failed: Option<Fingerprint>,
}

/// A server configuration that follows its key and trust store files: a broker calls
/// [`reload_if_changed`](Self::reload_if_changed) periodically and hands
/// [`current`](Self::current) to each new connection.
pub struct ReloadingServerConfig {
    settings: TlsSettings,
    files: Vec<PathBuf>,
    state: RwLock<ReloadState>,
}

impl ReloadingServerConfig {
    pub fn new(settings: TlsSettings) -> Result<Self, String> {
        let files = settings.files();
        let loaded = fingerprint(&files)?;
        let config = server_config(&settings)?;
        Ok(ReloadingServerConfig {
            settings,
            files,
            state: RwLock::new(ReloadState {
                config,
                loaded,
                failed: None,
            }),
        })
    }

    /// The configuration for new connections.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .config
            .clone()
    }

    /// Rebuilds the configuration if a file's modification time or contents changed. Returns
    /// `Ok(true)` when the new configuration is in use, `Ok(false)` when nothing changed, and
    /// the error when the changed files do not make a valid configuration; the previous
    /// configuration then stays in use, and the same broken contents are not reported again
    /// (a file that cannot be read is reported at every call).
    pub fn reload_if_changed(&self) -> Result<bool, String> {
        if self.files.is_empty() {
            return Ok(false);
        }
        let now = fingerprint(&self.files);
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let now = match now {
            Ok(f) => f,
            Err(e) => {
                return Err(format!(
                    "TLS configuration not reloaded, keeping the previous one: {e}"
                ))
            }
        };
        if now == state.loaded || state.failed.as_ref() == Some(&now) {
            return Ok(false);
        }
        match server_config(&self.settings) {
            Ok(config) => {
                state.config = config;
                state.loaded = now;
                state.failed = None;
                tracing::info!(files = ?self.files, "TLS configuration reloaded");
                Ok(true)
            }
            Err(e) => {
                state.failed = Some(now);
                Err(format!(
                    "TLS configuration not reloaded, keeping the previous one: {e}"
                ))
            }
        }
    }

    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }
}

/// The RFC 2253 keywords Java's `X500Principal.getName()` uses; other types print as OIDs.
fn rfc2253_keyword(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// A directory string value as text, for the string types Java prints as text.
fn directory_string(any: &x509_parser::asn1_rs::Any<'_>) -> Option<String> {
    use x509_parser::asn1_rs::Tag;
    let data = any.data;
    match any.tag() {
        Tag::PrintableString
        | Tag::T61String
        | Tag::Ia5String
        | Tag::GeneralString
        | Tag::Utf8String => Some(String::from_utf8_lossy(data).into_owned()),
        Tag::BmpString => {
            let units: Vec<u16> = data
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
                .collect();
            Some(String::from_utf16_lossy(&units))
        }
        Tag::UniversalString => Some(
            data.chunks(4)
                .map(|c| {
                    let mut b = [0u8; 4];
                    b[..c.len()].copy_from_slice(c);
                    char::from_u32(u32::from_be_bytes(b)).unwrap_or('\u{fffd}')
                })
                .collect(),
        ),
        _ => None,
    }
}

/// Escapes a value as Java's `AVA.toRFC2253String`: `,=+<>#;"\` get a backslash, and so do
/// leading and trailing spaces.
fn escape_rfc2253(value: &str) -> String {
    let mut escaped: Vec<char> = Vec::with_capacity(value.len());
    for c in value.chars() {
        if ",=+<>#;\"\\".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    let is_space = |c: &char| *c == ' ' || *c == '\r';
    let first_kept = escaped
        .iter()
        .position(|c| !is_space(c))
        .unwrap_or(escaped.len());
    let last_kept = escaped.iter().rposition(|c| !is_space(c));
    let mut out = String::with_capacity(escaped.len() + 2);
    for (i, c) in escaped.iter().enumerate() {
        if i < first_kept || last_kept.is_none_or(|t| i > t) {
            out.push('\\');
        }
        out.push(*c);
    }
    out
}

fn name_to_rfc2253(name: &x509_parser::x509::X509Name<'_>) -> Option<String> {
    use x509_parser::asn1_rs::ToDer;
    let rdns: Vec<_> = name.iter_rdn().collect();
    let mut parts = Vec::with_capacity(rdns.len());
    for rdn in rdns.iter().rev() {
        let mut avas = Vec::new();
        for ava in rdn.iter() {
            let oid = ava.attr_type().to_id_string();
            let value = ava.attr_value();
            let text = match (rfc2253_keyword(&oid), directory_string(value)) {
                (Some(k), Some(s)) => format!("{k}={}", escape_rfc2253(&s)),
                (k, _) => {
                    let der = value.to_der_vec().ok()?;
                    let hex: String = der.iter().map(|b| format!("{b:02x}")).collect();
                    format!("{}=#{hex}", k.map_or(oid, str::to_string))
                }
            };
            avas.push(text);
        }
        parts.push(avas.join("+"));
    }
    Some(parts.join(","))
}

/// The subject of a DER certificate as Java's `X500Principal.getName()` gives it (RFC 2253:
/// the last RDN of the DER sequence first), e.g. `CN=alice,OU=eng,O=Acme,C=US`. This is the
/// input of `ssl.principal.mapping.rules`. `None` if the certificate cannot be parsed.
pub fn subject_dn(cert_der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    name_to_rfc2253(cert.subject())
}

/// The URI subject alternative names of a DER certificate (such as `urn:runnel:node:1`).
pub fn san_uris(cert_der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(cert_der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::URI(u) => Some(u.to_string()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests;
