//! Client settings from Kafka's client properties: `client.id`, `security.protocol`, the SASL
//! settings (`sasl.mechanism`, `sasl.jaas.config`, and librdkafka's `sasl.username` /
//! `sasl.password`) and the TLS settings (`ssl.*`, with librdkafka's `ssl.ca.location`,
//! `ssl.certificate.location` and `ssl.key.location` accepted as well).
//!
//! Properties this client does not use (producer and consumer tuning, for example) are ignored,
//! so one `client.properties` file serves every tool.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};

pub use runnel_security::SecurityProtocol;

/// The SASL mechanisms this client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl SaslMechanism {
    /// The IANA name sent in SaslHandshake.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    /// The JAAS login module Kafka's Java client pairs with this mechanism.
    fn login_module(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "org.apache.kafka.common.security.plain.PlainLoginModule",
            SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
                "org.apache.kafka.common.security.scram.ScramLoginModule"
            }
        }
    }
}

impl fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for SaslMechanism {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_uppercase().as_str() {
            "PLAIN" => Ok(SaslMechanism::Plain),
            "SCRAM-SHA-256" => Ok(SaslMechanism::ScramSha256),
            "SCRAM-SHA-512" => Ok(SaslMechanism::ScramSha512),
            other => bail!(
                "sasl.mechanism {other} is not supported by this client: use PLAIN, \
                 SCRAM-SHA-256 or SCRAM-SHA-512"
            ),
        }
    }
}

/// A user name and password for a SASL mechanism.
#[derive(Clone, PartialEq, Eq)]
pub struct SaslCredentials {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: String,
}

impl fmt::Debug for SaslCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslCredentials")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"[hidden]")
            .finish()
    }
}

/// How to reach and authenticate to the brokers: client id, transport and SASL credentials.
#[derive(Clone)]
pub struct ClientConfig {
    /// `client.id`, sent in every request header.
    pub client_id: String,
    pub security_protocol: SecurityProtocol,
    /// The TLS settings (`Some` exactly when the protocol uses TLS).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The SASL mechanism and credentials (`Some` exactly when the protocol uses SASL).
    pub sasl: Option<SaslCredentials>,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("client_id", &self.client_id)
            .field("security_protocol", &self.security_protocol)
            .field("tls", &self.tls.is_some())
            .field("sasl", &self.sasl)
            .finish()
    }
}

impl ClientConfig {
    /// PLAINTEXT connections with `client_id`.
    pub fn new(client_id: &str) -> ClientConfig {
        ClientConfig {
            client_id: client_id.to_string(),
            security_protocol: SecurityProtocol::Plaintext,
            tls: None,
            sasl: None,
        }
    }

    /// The same settings with another `client.id`.
    pub fn with_client_id(mut self, client_id: &str) -> ClientConfig {
        self.client_id = client_id.to_string();
        self
    }

    /// Settings from Kafka client properties (later pairs override earlier ones). `client.id`
    /// defaults to `default_client_id`. TLS files are read here, so a missing or malformed
    /// certificate fails now, naming the property.
    pub fn from_properties<I, K, V>(default_client_id: &str, props: I) -> Result<ClientConfig>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let props: BTreeMap<String, String> = props
            .into_iter()
            .map(|(k, v)| (k.into().trim().to_string(), v.into().trim().to_string()))
            .collect();
        let get = |k: &str| props.get(k).cloned();
        let client_id = get("client.id")
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| default_client_id.to_string());
        let security_protocol: SecurityProtocol = match get("security.protocol") {
            Some(s) => SecurityProtocol::parse(&s).ok_or_else(|| {
                anyhow::anyhow!(
                    "Invalid value {} for configuration security.protocol: expected PLAINTEXT, SSL, \
                     SASL_PLAINTEXT or SASL_SSL",
                    s.trim()
                )
            })?,
            None => SecurityProtocol::Plaintext,
        };
        let tls = if security_protocol.uses_tls() {
            Some(tls_config(&props)?)
        } else {
            None
        };
        let sasl = if security_protocol.uses_sasl() {
            Some(sasl_credentials(&props, security_protocol)?)
        } else {
            None
        };
        Ok(ClientConfig {
            client_id,
            security_protocol,
            tls,
            sasl,
        })
    }
}

fn sasl_credentials(
    props: &BTreeMap<String, String>,
    protocol: SecurityProtocol,
) -> Result<SaslCredentials> {
    // Kafka's default mechanism is GSSAPI, which this client does not speak.
    let mechanism: SaslMechanism = props
        .get("sasl.mechanism")
        .map(String::as_str)
        .unwrap_or("GSSAPI")
        .parse()
        .with_context(|| format!("security.protocol {protocol}"))?;
    if let Some(text) = props.get("sasl.jaas.config").filter(|s| !s.is_empty()) {
        let jaas = runnel_security::jaas::parse(text)
            .map_err(|e| anyhow!("invalid sasl.jaas.config: {e}"))?;
        if jaas.login_module != mechanism.login_module() {
            bail!(
                "sasl.jaas.config names login module {} but sasl.mechanism {mechanism} needs {}",
                jaas.login_module,
                mechanism.login_module()
            );
        }
        let option = |name: &str| {
            jaas.options.get(name).cloned().ok_or_else(|| {
                anyhow!("sasl.jaas.config for {mechanism} has no {name}=\"...\" option")
            })
        };
        return Ok(SaslCredentials {
            mechanism,
            username: option("username")?,
            password: option("password")?,
        });
    }
    match (props.get("sasl.username"), props.get("sasl.password")) {
        (Some(username), Some(password)) => Ok(SaslCredentials {
            mechanism,
            username: username.clone(),
            password: password.clone(),
        }),
        _ => bail!(
            "security.protocol {protocol} with sasl.mechanism {mechanism} needs credentials: set \
             sasl.jaas.config ({} required username=\"...\" password=\"...\";) or sasl.username \
             and sasl.password",
            mechanism.login_module()
        ),
    }
}

/// librdkafka's file names, read into the inline PEM properties Kafka's Java client knows.
const FILE_ALIASES: &[(&str, &str, &str)] = &[
    (
        "ssl.ca.location",
        "ssl.truststore.certificates",
        "ssl.truststore.type",
    ),
    (
        "ssl.certificate.location",
        "ssl.keystore.certificate.chain",
        "ssl.keystore.type",
    ),
    ("ssl.key.location", "ssl.keystore.key", "ssl.keystore.type"),
];

fn tls_config(props: &BTreeMap<String, String>) -> Result<Arc<rustls::ClientConfig>> {
    let mut props = props.clone();
    match (
        props.contains_key("ssl.certificate.location"),
        props.contains_key("ssl.key.location"),
    ) {
        (true, false) => bail!(
            "ssl.certificate.location is set but ssl.key.location is not (both may name the same \
             PEM file)"
        ),
        (false, true) => bail!(
            "ssl.key.location is set but ssl.certificate.location is not (both may name the same \
             PEM file)"
        ),
        _ => {}
    }
    let aliased: Vec<String> = FILE_ALIASES
        .iter()
        .filter(|(alias, _, _)| props.contains_key(*alias))
        .map(|(alias, inline, _)| format!("{alias} as {inline}"))
        .collect();
    for (alias, inline, store_type) in FILE_ALIASES {
        let Some(path) = props.get(*alias).cloned() else {
            continue;
        };
        if props.contains_key(*inline) {
            bail!("both {alias} and {inline} are set: use one");
        }
        let pem = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {alias} {path}"))?;
        props.insert(inline.to_string(), pem);
        props
            .entry(store_type.to_string())
            .or_insert_with(|| "PEM".to_string());
    }
    let invalid = |e: String| {
        if aliased.is_empty() {
            anyhow!("invalid TLS settings: {e}")
        } else {
            anyhow!("invalid TLS settings: {e} (read {})", aliased.join(", "))
        }
    };
    let get = |k: &str| props.get(k).cloned();
    let settings = runnel_security::tls::TlsSettings::from_props(&get).map_err(invalid)?;
    runnel_security::tls::client_config(&settings).map_err(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Result<ClientConfig> {
        ClientConfig::from_properties("test", pairs.iter().map(|(k, v)| (*k, *v)))
    }

    #[test]
    fn plaintext_by_default() {
        let c = cfg(&[("acks", "all"), ("client.id", "mine")]).unwrap();
        assert_eq!(c.security_protocol, SecurityProtocol::Plaintext);
        assert_eq!(c.client_id, "mine");
        assert!(c.tls.is_none() && c.sasl.is_none());
        assert_eq!(cfg(&[]).unwrap().client_id, "test");
        let err = cfg(&[("security.protocol", "TLS")]).err().unwrap();
        assert!(
            format!("{err:#}").contains("Invalid value TLS for configuration security.protocol")
        );
        assert_eq!(
            cfg(&[
                ("security.protocol", "sasl_plaintext"),
                ("sasl.mechanism", "PLAIN"),
                ("sasl.username", "u"),
                ("sasl.password", "p")
            ])
            .unwrap()
            .security_protocol,
            SecurityProtocol::SaslPlaintext
        );
    }

    #[test]
    fn sasl_credentials_from_jaas_or_librdkafka_names() {
        let c = cfg(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "SCRAM-SHA-256"),
            (
                "sasl.jaas.config",
                "org.apache.kafka.common.security.scram.ScramLoginModule required \
                 username=\"alice\" password=\"alice-secret\";",
            ),
        ])
        .unwrap();
        assert_eq!(
            c.sasl,
            Some(SaslCredentials {
                mechanism: SaslMechanism::ScramSha256,
                username: "alice".into(),
                password: "alice-secret".into(),
            })
        );
        assert!(!format!("{c:?}").contains("alice-secret"));
        let c = cfg(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "PLAIN"),
            ("sasl.username", "bob"),
            ("sasl.password", "pw"),
        ])
        .unwrap();
        let s = c.sasl.unwrap();
        assert_eq!(
            (s.mechanism, s.username.as_str(), s.password.as_str()),
            (SaslMechanism::Plain, "bob", "pw")
        );
    }

    #[test]
    fn librdkafka_file_names_come_in_pairs() {
        let msg = |pairs: &[(&str, &str)]| format!("{:#}", cfg(pairs).err().unwrap());
        assert!(
            msg(&[("security.protocol", "SSL"), ("ssl.key.location", "/k.pem")])
                .contains("ssl.key.location is set but ssl.certificate.location is not")
        );
        assert!(msg(&[
            ("security.protocol", "SSL"),
            ("ssl.ca.location", "/nonexistent/ca.pem")
        ])
        .contains("cannot read ssl.ca.location /nonexistent/ca.pem"));
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate\n").unwrap();
        let m = msg(&[
            ("security.protocol", "SSL"),
            ("ssl.ca.location", ca.to_str().unwrap()),
        ]);
        assert!(
            m.contains("invalid TLS settings")
                && m.contains("read ssl.ca.location as ssl.truststore.certificates"),
            "{m}"
        );
    }

    #[test]
    fn sasl_errors_are_clear() {
        let msg = |pairs: &[(&str, &str)]| format!("{:#}", cfg(pairs).err().unwrap());
        // Kafka's default mechanism is GSSAPI.
        assert!(msg(&[("security.protocol", "SASL_PLAINTEXT")]).contains("GSSAPI is not supported"));
        assert!(msg(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "OAUTHBEARER")
        ])
        .contains("OAUTHBEARER is not supported"));
        assert!(msg(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "PLAIN")
        ])
        .contains("needs credentials"));
        assert!(msg(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "PLAIN"),
            ("sasl.jaas.config", "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"a\" password=\"b\";"),
        ])
        .contains("needs org.apache.kafka.common.security.plain.PlainLoginModule"));
        assert!(msg(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "PLAIN"),
            (
                "sasl.jaas.config",
                "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"a\";"
            ),
        ])
        .contains("no password="));
    }
}
