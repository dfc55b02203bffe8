//! A scripted broker with a SASL (PLAIN, SCRAM) and optionally TLS listener: ApiVersions,
//! SaslHandshake, SaslAuthenticate with `runnel_security`'s server side, then Metadata only
//! once authenticated. The client connects through [`Client::connect`] with settings parsed
//! from Kafka client properties, as the tools do.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, MetadataResponse, RequestHeader, ResponseHeader,
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use runnel_security::scram::{ScramCredential, ScramMechanism, ScramServer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::client::{AuthenticationError, Client};
use crate::config::ClientConfig;

const USER: &str = "alice";
const PASSWORD: &str = "alice-secret";

/// What the fake listener offers.
#[derive(Clone, Default)]
struct Listener {
    mechanisms: Vec<&'static str>,
    tls: Option<Arc<rustls::ServerConfig>>,
    /// Announced in SaslAuthenticate; a request after it ends closes the connection.
    session_lifetime_ms: i64,
    /// Successful authentications, re-authentications included.
    authentications: Arc<std::sync::atomic::AtomicUsize>,
}

/// Starts the listener; returns its `127.0.0.1:port`.
async fn start(listener: Listener) -> String {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap().to_string();
    let port = tcp.local_addr().unwrap().port() as i32;
    tokio::spawn(async move {
        while let Ok((sock, _)) = tcp.accept().await {
            let l = listener.clone();
            tokio::spawn(async move {
                match &l.tls {
                    Some(cfg) => {
                        let acceptor = tokio_rustls::TlsAcceptor::from(cfg.clone());
                        if let Ok(s) = acceptor.accept(sock).await {
                            serve(s, &l, port).await;
                        }
                    }
                    None => serve(sock, &l, port).await,
                }
            });
        }
    });
    addr
}

enum Auth {
    None,
    Plain,
    ScramFirst(ScramServer),
    ScramFinal(ScramServer),
    Done,
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut sock: S, l: &Listener, port: i32) {
    let credentials: HashMap<(String, ScramMechanism), ScramCredential> = ScramMechanism::ALL
        .iter()
        .map(|m| {
            (
                (USER.to_string(), *m),
                ScramCredential::from_password(*m, PASSWORD, b"0123456789abcdef", 4096),
            )
        })
        .collect();
    let mut auth = Auth::None;
    let mut session_end: Option<tokio::time::Instant> = None;
    loop {
        let mut len = [0u8; 4];
        if sock.read_exact(&mut len).await.is_err() {
            return;
        }
        // Like socket.request.max.bytes: a TLS ClientHello read as a length is far too big.
        let len = i32::from_be_bytes(len);
        if !(0..1 << 20).contains(&len) {
            return;
        }
        let mut frame = vec![0u8; len as usize];
        if sock.read_exact(&mut frame).await.is_err() {
            return;
        }
        let mut buf = Bytes::from(frame);
        let key = ApiKey::try_from(i16::from_be_bytes([buf[0], buf[1]])).unwrap();
        let version = i16::from_be_bytes([buf[2], buf[3]]);
        let header = RequestHeader::decode(&mut buf, key.request_header_version(version)).unwrap();
        let mut body = BytesMut::new();
        match key {
            ApiKey::ApiVersions => {
                let v = |k: ApiKey, max| {
                    let mut a = ApiVersion::default();
                    a.api_key = k as i16;
                    a.max_version = max;
                    a
                };
                let mut r = ApiVersionsResponse::default();
                r.api_keys = vec![v(ApiKey::ApiVersions, 3), v(ApiKey::Metadata, 12)];
                if !l.mechanisms.is_empty() {
                    r.api_keys.push(v(ApiKey::SaslHandshake, 1));
                    r.api_keys.push(v(ApiKey::SaslAuthenticate, 2));
                }
                r.encode(&mut body, version).unwrap();
            }
            ApiKey::SaslHandshake => {
                let req = SaslHandshakeRequest::decode(&mut buf, version).unwrap();
                let mut r = SaslHandshakeResponse::default();
                r.mechanisms = l
                    .mechanisms
                    .iter()
                    .map(|m| StrBytes::from_static_str(m))
                    .collect();
                let m = req.mechanism.to_string();
                if !l.mechanisms.contains(&m.as_str()) {
                    r.error_code = 33;
                } else if m == "PLAIN" {
                    auth = Auth::Plain;
                } else {
                    let mech = ScramMechanism::from_name(&m).unwrap();
                    auth = Auth::ScramFirst(ScramServer::new(mech, b"fake secret"));
                }
                r.encode(&mut body, version).unwrap();
            }
            ApiKey::SaslAuthenticate => {
                let req = SaslAuthenticateRequest::decode(&mut buf, version).unwrap();
                let mut r = SaslAuthenticateResponse::default();
                let result: Result<Vec<u8>, String> = match std::mem::replace(&mut auth, Auth::Done)
                {
                    Auth::Plain => {
                        runnel_security::plain::parse(&req.auth_bytes).and_then(|(_, u, p)| {
                            if u == USER && p == PASSWORD {
                                Ok(Vec::new())
                            } else {
                                Err("Authentication failed: Invalid username or password"
                                    .to_string())
                            }
                        })
                    }
                    Auth::ScramFirst(mut server) => {
                        let mech = server.mechanism();
                        let first = server.client_first(&req.auth_bytes, |u| {
                            credentials.get(&(u.to_string(), mech)).cloned()
                        });
                        auth = Auth::ScramFinal(server);
                        first.map_err(|e| e.to_string())
                    }
                    Auth::ScramFinal(mut server) => server
                        .client_final(&req.auth_bytes)
                        .map(|(fin, _user)| fin)
                        .map_err(|e| e.to_string()),
                    _ => Err("unexpected SaslAuthenticate".to_string()),
                };
                match result {
                    Ok(bytes) => {
                        r.auth_bytes = Bytes::from(bytes);
                        if matches!(auth, Auth::Done) {
                            l.authentications
                                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            if l.session_lifetime_ms > 0 {
                                r.session_lifetime_ms = l.session_lifetime_ms;
                                session_end = Some(
                                    tokio::time::Instant::now()
                                        + std::time::Duration::from_millis(
                                            l.session_lifetime_ms as u64,
                                        ),
                                );
                            }
                        }
                    }
                    Err(msg) => {
                        r.error_code = 58;
                        r.error_message = Some(StrBytes::from_string(msg));
                        auth = Auth::None;
                    }
                }
                r.encode(&mut body, version).unwrap();
            }
            ApiKey::Metadata => {
                if !matches!(auth, Auth::Done) && !l.mechanisms.is_empty() {
                    return; // Kafka closes a connection that skips authentication.
                }
                if session_end.is_some_and(|t| tokio::time::Instant::now() > t) {
                    return; // KIP-368: the session expired without re-authentication.
                }
                let mut b = MetadataResponseBroker::default();
                b.node_id = BrokerId(1);
                b.host = StrBytes::from_static_str("127.0.0.1");
                b.port = port;
                let mut r = MetadataResponse::default();
                r.brokers = vec![b];
                r.controller_id = BrokerId(1);
                r.encode(&mut body, version).unwrap();
            }
            other => panic!("fake broker does not handle {other:?}"),
        }
        let mut out = BytesMut::new();
        out.put_i32(0);
        let mut rh = ResponseHeader::default();
        rh.correlation_id = header.correlation_id;
        rh.encode(&mut out, key.response_header_version(version))
            .unwrap();
        out.extend_from_slice(&body);
        let n = (out.len() - 4) as i32;
        out[..4].copy_from_slice(&n.to_be_bytes());
        if sock.write_all(&out).await.is_err() || sock.flush().await.is_err() {
            return;
        }
    }
}

fn config(pairs: &[(&str, &str)]) -> ClientConfig {
    ClientConfig::from_properties("test", pairs.iter().map(|(k, v)| (*k, *v))).unwrap()
}

fn jaas(module: &str, password: &str) -> String {
    format!(
        "org.apache.kafka.common.security.{module} required username=\"{USER}\" \
         password=\"{password}\";"
    )
}

async fn connect_err(addr: &str, cfg: &ClientConfig) -> (String, bool) {
    let err = Client::connect(addr, cfg).await.err().expect("must fail");
    let is_auth = err.downcast_ref::<AuthenticationError>().is_some();
    (format!("{err:#}"), is_auth)
}

#[tokio::test]
async fn scram_and_plain_authenticate_then_requests_flow() {
    let addr = start(Listener {
        mechanisms: vec!["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"],
        tls: None,
        ..Listener::default()
    })
    .await;
    for (mechanism, module) in [
        ("SCRAM-SHA-256", "scram.ScramLoginModule"),
        ("SCRAM-SHA-512", "scram.ScramLoginModule"),
        ("PLAIN", "plain.PlainLoginModule"),
    ] {
        let cfg = config(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", mechanism),
            ("sasl.jaas.config", &jaas(module, PASSWORD)),
        ]);
        let client = Client::connect(&addr, &cfg).await.unwrap();
        assert_eq!(client.meta.brokers.len(), 1, "{mechanism}");
    }
    // librdkafka's property names.
    let cfg = config(&[
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", "SCRAM-SHA-256"),
        ("sasl.username", USER),
        ("sasl.password", PASSWORD),
    ]);
    Client::connect(&addr, &cfg).await.unwrap();
}

#[tokio::test]
async fn refusals_carry_the_brokers_reason() {
    let addr = start(Listener {
        mechanisms: vec!["PLAIN", "SCRAM-SHA-256"],
        tls: None,
        ..Listener::default()
    })
    .await;
    let (msg, auth) = connect_err(
        &addr,
        &config(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "SCRAM-SHA-256"),
            ("sasl.jaas.config", &jaas("scram.ScramLoginModule", "wrong")),
        ]),
    )
    .await;
    assert!(auth, "{msg}");
    assert!(
        msg.contains("SASL authentication failed: Authentication failed: Invalid user credentials"),
        "{msg}"
    );
    // Only one attempt: other bootstrap servers would refuse the same credentials.
    assert!(
        !msg.contains("could not connect to any bootstrap server"),
        "{msg}"
    );
    let (msg, _) = connect_err(
        &addr,
        &config(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "PLAIN"),
            ("sasl.username", USER),
            ("sasl.password", "nope"),
        ]),
    )
    .await;
    assert!(
        msg.contains(
            "SASL authentication failed: Authentication failed: Invalid username or password"
        ),
        "{msg}"
    );
    let (msg, auth) = connect_err(
        &addr,
        &config(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", USER),
            ("sasl.password", PASSWORD),
        ]),
    )
    .await;
    assert!(auth, "{msg}");
    assert!(
        msg.contains(
            "does not enable SASL mechanism SCRAM-SHA-512; enabled mechanisms are [PLAIN, SCRAM-SHA-256]"
        ),
        "{msg}"
    );
}

struct Pki {
    ca_pem: String,
    server: Arc<rustls::ServerConfig>,
}

/// A CA and a server certificate for `sans`, as a rustls server configuration.
fn pki(sans: &[&str]) -> Pki {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let params =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let props: HashMap<&str, String> = HashMap::from([
        ("ssl.keystore.key", key.serialize_pem()),
        ("ssl.keystore.certificate.chain", cert.pem()),
    ]);
    let settings =
        runnel_security::tls::TlsSettings::from_props(&|k| props.get(k).cloned()).unwrap();
    Pki {
        ca_pem,
        server: runnel_security::tls::server_config(&settings).unwrap(),
    }
}

#[tokio::test]
async fn sasl_ssl_verifies_the_broker_then_authenticates() {
    let good = pki(&["localhost", "127.0.0.1"]);
    let addr = start(Listener {
        mechanisms: vec!["SCRAM-SHA-256"],
        tls: Some(good.server.clone()),
        ..Listener::default()
    })
    .await;
    let sasl_ssl = |ca: &str, extra: &[(&str, &str)]| {
        let mut pairs = vec![
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-256"),
            ("sasl.username", USER),
            ("sasl.password", PASSWORD),
            ("ssl.truststore.certificates", ca),
        ];
        pairs.extend_from_slice(extra);
        config(&pairs)
    };
    let client = Client::connect(&addr, &sasl_ssl(&good.ca_pem, &[]))
        .await
        .unwrap();
    assert_eq!(client.meta.brokers.len(), 1);
    // librdkafka's file names.
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &good.ca_pem).unwrap();
    let cfg = config(&[
        ("security.protocol", "SASL_SSL"),
        ("sasl.mechanism", "SCRAM-SHA-256"),
        ("sasl.username", USER),
        ("sasl.password", PASSWORD),
        ("ssl.ca.location", ca_file.to_str().unwrap()),
    ]);
    Client::connect(&addr, &cfg).await.unwrap();

    // A broker certificate from another CA is refused during the handshake.
    let other = pki(&["127.0.0.1"]);
    let (msg, auth) = connect_err(&addr, &sasl_ssl(&other.ca_pem, &[])).await;
    assert!(auth, "{msg}");
    assert!(msg.contains("TLS handshake failed"), "{msg}");
    assert!(msg.contains("invalid peer certificate"), "{msg}");
}

#[tokio::test]
async fn host_names_are_checked_unless_identification_is_off() {
    let pki = pki(&["broker.example"]);
    let addr = start(Listener {
        mechanisms: vec![],
        tls: Some(pki.server.clone()),
        ..Listener::default()
    })
    .await;
    let ssl = |extra: &[(&str, &str)]| {
        let mut pairs = vec![
            ("security.protocol", "SSL"),
            ("ssl.truststore.certificates", pki.ca_pem.as_str()),
        ];
        pairs.extend_from_slice(extra);
        config(&pairs)
    };
    let (msg, _) = connect_err(&addr, &ssl(&[])).await;
    assert!(msg.contains("TLS handshake failed"), "{msg}");
    assert!(msg.contains("not valid for name"), "{msg}");
    let cfg = ssl(&[("ssl.endpoint.identification.algorithm", "")]);
    Client::connect(&addr, &cfg).await.unwrap();
}

#[tokio::test]
async fn a_security_protocol_mismatch_is_named() {
    let pki = pki(&["127.0.0.1"]);
    let tls_addr = start(Listener {
        mechanisms: vec![],
        tls: Some(pki.server.clone()),
        ..Listener::default()
    })
    .await;
    let plain_addr = start(Listener {
        mechanisms: vec![],
        tls: None,
        ..Listener::default()
    })
    .await;
    // TLS client, plaintext listener.
    let cfg = config(&[
        ("security.protocol", "SSL"),
        ("ssl.truststore.certificates", pki.ca_pem.as_str()),
    ]);
    let (msg, _) = connect_err(&plain_addr, &cfg).await;
    assert!(msg.contains("does this listener speak TLS"), "{msg}");
    // Plaintext client, TLS listener.
    let (msg, _) = connect_err(&tls_addr, &ClientConfig::new("test")).await;
    assert!(
        msg.contains("the broker answered with TLS") || msg.contains("connection closed"),
        "{msg}"
    );
    // SASL client, listener without SASL.
    let cfg = config(&[
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", "PLAIN"),
        ("sasl.username", USER),
        ("sasl.password", PASSWORD),
    ]);
    let (msg, _) = connect_err(&plain_addr, &cfg).await;
    assert!(
        msg.contains("does not offer SaslHandshake and SaslAuthenticate"),
        "{msg}"
    );
}

#[tokio::test]
async fn sessions_are_renewed_before_the_broker_ends_them() {
    let listener = Listener {
        mechanisms: vec!["SCRAM-SHA-256"],
        session_lifetime_ms: 400,
        ..Listener::default()
    };
    let authentications = listener.authentications.clone();
    let addr = start(listener).await;
    let cfg = config(&[
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", "SCRAM-SHA-256"),
        ("sasl.username", USER),
        ("sasl.password", PASSWORD),
    ]);
    let mut conn = crate::client::Connection::connect(&addr, &cfg)
        .await
        .unwrap();
    let count = || authentications.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(count(), 1);
    let mut req = kafka_protocol::messages::MetadataRequest::default();
    req.topics = Some(Vec::new());
    for _ in 0..4 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        conn.request(&req).await.unwrap();
    }
    assert!(count() >= 2, "re-authenticated {} times", count() - 1);
}
