//! Level 80: TLS and SASL on the Kafka listeners, with real clients.
//!
//! Each test starts its own `runnel server` from `security_util::Spec::standard`: a `SASL_SSL`
//! listener (SCRAM-SHA-256/512, users from `--add-scram`), a `SASL_PLAINTEXT` listener (PLAIN,
//! users from its JAAS configuration), an `SSL` listener that requires client certificates, and
//! the harness's plaintext `SETUP` listener; certificates come from `scripts/dev-certs.sh`.
//!
//! - Round trips: every client program of `tests/security/` (confluent-kafka, kafka-python,
//!   aiokafka, kafkajs, sarama 1.22, kcat) over each mechanism it supports: admin call,
//!   produce, consume with a group, commit.
//! - Refusals, each followed by a good client on the same server (the broker stays healthy):
//!   wrong password and unknown user (the same error, for SCRAM and for PLAIN), a client that
//!   does not trust the broker's CA, a missing or untrusted client certificate, a plaintext
//!   client on a TLS listener, a TLS client on a plaintext listener, a mechanism the listener
//!   does not enable.
//! - The SASL state machine with raw requests: ApiVersions before authentication, any other
//!   request before it closes the connection, SaslHandshake on a plaintext listener,
//!   `connection.failed.authentication.delay.ms`.
//! - Broker TLS material: an encrypted key (`ssl.key.password`), inline PEM
//!   (`ssl.keystore.key`, `ssl.keystore.certificate.chain`, `ssl.truststore.certificates`), a
//!   keystore file replaced while the broker runs; re-authentication (KIP-368,
//!   `connections.max.reauth.ms`); SCRAM users added and removed at run time with
//!   `runnel configs --entity-type users`.
//!
//! A missing client is a failure, not a skip (`scripts/install-test-deps.sh`);
//! `RUNNEL_SKIP_CLIENTS=kafkajs,sarama` skips clients on a dev machine, as in `t10_clients`.

mod common;
mod security_util;

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{run_with_timeout, Conn};
use kafka_protocol::messages::{
    ApiKey, MetadataRequest, SaslAuthenticateRequest, SaslHandshakeRequest,
};
use kafka_protocol::protocol::StrBytes;
use security_util::*;

// ---- round trips -------------------------------------------------------------------------------

fn scram_512(client: &Client) {
    if !client.available() {
        return;
    }
    let certs = Certs::get();
    let mut server = SecureServer::start(Spec::standard(&certs));
    let settings = sasl_ssl(&certs, "SCRAM-SHA-512", "alice", password("alice"));
    client.round_trip(&mut server, "SASL_SSL", settings);
}

fn scram_256(client: &Client) {
    if !client.available() {
        return;
    }
    let certs = Certs::get();
    let mut server = SecureServer::start(Spec::standard(&certs));
    let settings = sasl_ssl(&certs, "SCRAM-SHA-256", "bob", password("bob"));
    client.round_trip(&mut server, "SASL_SSL", settings);
}

fn plain(client: &Client) {
    if !client.available() {
        return;
    }
    let certs = Certs::get();
    let mut server = SecureServer::start(Spec::standard(&certs));
    let settings = sasl_plaintext("PLAIN", "alice", password("alice"));
    client.round_trip(&mut server, "SASL_PLAINTEXT", settings);
}

fn client_certificate(client: &Client, keystore: &str) {
    if !client.available() {
        return;
    }
    let certs = Certs::get();
    let mut server = SecureServer::start(Spec::standard(&certs));
    let mut settings = ssl(&certs, Some(keystore));
    if keystore.contains("encrypted") {
        settings.push(format!("ssl.key.password={KEY_PASSWORD}"));
    }
    client.round_trip(&mut server, "SSL", settings);
}

#[test]
fn confluent_sasl_ssl_scram_sha_512() {
    scram_512(&CONFLUENT);
}

#[test]
fn confluent_sasl_ssl_scram_sha_256() {
    scram_256(&CONFLUENT);
}

#[test]
fn confluent_sasl_plaintext_plain() {
    plain(&CONFLUENT);
}

#[test]
fn confluent_ssl_client_certificate() {
    client_certificate(&CONFLUENT, "client-alice.pem");
}

#[test]
fn confluent_ssl_encrypted_client_key() {
    client_certificate(&CONFLUENT, "client-alice-encrypted.pem");
}

#[test]
fn kafka_python_sasl_ssl_scram_sha_512() {
    scram_512(&KAFKA_PYTHON);
}

#[test]
fn kafka_python_sasl_plaintext_plain() {
    plain(&KAFKA_PYTHON);
}

#[test]
fn kafka_python_ssl_encrypted_client_key() {
    client_certificate(&KAFKA_PYTHON, "client-alice-encrypted.pem");
}

#[test]
fn aiokafka_sasl_ssl_scram_sha_512() {
    scram_512(&AIOKAFKA);
}

#[test]
fn aiokafka_sasl_ssl_scram_sha_256() {
    scram_256(&AIOKAFKA);
}

#[test]
fn aiokafka_sasl_plaintext_plain() {
    plain(&AIOKAFKA);
}

#[test]
fn aiokafka_ssl_client_certificate() {
    client_certificate(&AIOKAFKA, "client-bob.pem");
}

#[test]
fn kafkajs_sasl_ssl_scram_sha_512() {
    scram_512(&KAFKAJS);
}

#[test]
fn kafkajs_sasl_ssl_scram_sha_256() {
    scram_256(&KAFKAJS);
}

#[test]
fn kafkajs_sasl_plaintext_plain() {
    plain(&KAFKAJS);
}

#[test]
fn kafkajs_ssl_encrypted_client_key() {
    client_certificate(&KAFKAJS, "client-alice-encrypted.pem");
}

#[test]
fn sarama_sasl_ssl_scram_sha_512() {
    scram_512(&SARAMA);
}

#[test]
fn sarama_sasl_ssl_scram_sha_256() {
    scram_256(&SARAMA);
}

#[test]
fn sarama_sasl_plaintext_plain() {
    plain(&SARAMA);
}

#[test]
fn sarama_ssl_client_certificate() {
    client_certificate(&SARAMA, "client-alice.pem");
}

#[test]
fn kcat_sasl_ssl_scram_sha_512() {
    scram_512(&KCAT);
}

#[test]
fn kcat_sasl_plaintext_plain() {
    plain(&KCAT);
}

#[test]
fn kcat_ssl_client_certificate() {
    client_certificate(&KCAT, "client-bob.pem");
}

// ---- refusals ----------------------------------------------------------------------------------

/// Runs the probe and asserts it was refused with an error containing every one of `want`.
fn assert_refused(server: &mut SecureServer, listener: &str, settings: &[String], want: &[&str]) {
    let out = probe(&server.bootstrap(listener), settings);
    println!("{}", out.output);
    assert!(
        !out.ok && out.result.is_some() && !out.result_ok(),
        "expected a refusal on {listener} with {settings:?}, got:\n{}",
        out.output
    );
    let errors = out.errors();
    for w in want {
        assert!(
            errors.contains(w),
            "the refusal on {listener} does not say {w:?}:\n{errors}\n{}",
            server.stderr_tail()
        );
    }
    server.assert_healthy(&format!("after a refused client on {listener}"));
}

/// A good client on `listener` still gets through.
fn assert_accepted(server: &mut SecureServer, listener: &str, settings: &[String]) {
    let out = probe(&server.bootstrap(listener), settings);
    assert!(
        out.ok && out.result_ok(),
        "a good client on {listener} was not accepted:\n{}\n{}",
        out.output,
        server.stderr_tail()
    );
}

/// The SASL failure text of a probe, without librdkafka's per-attempt suffix
/// "(after Nms in state ...)" and the broker address prefix.
fn sasl_failure(errors: &str) -> String {
    let line = errors
        .lines()
        .find(|l| l.contains("SASL authentication error"))
        .unwrap_or_else(|| panic!("no SASL authentication error in:\n{errors}"));
    let from = line.find("SASL authentication error").unwrap();
    let text = &line[from..];
    text.split(" (after ").next().unwrap().to_string()
}

fn confluent_available() -> bool {
    CONFLUENT.available()
}

#[test]
fn scram_wrong_password_and_unknown_user_get_the_same_error() {
    if !confluent_available() {
        return;
    }
    let certs = Certs::get();
    let mut server = SecureServer::start(Spec::standard(&certs));
    // Kafka's answer for any SCRAM failure, so that it does not tell whether the user exists.
    let kafka_text = "Authentication failed during authentication due to invalid credentials \
                      with SASL mechanism SCRAM-SHA-512";
    let wrong = sasl_ssl(&certs, "SCRAM-SHA-512", "alice", "not-alices-password");
    let unknown = sasl_ssl(&certs, "SCRAM-SHA-512", "mallory", "alice-secret");
    let out_wrong = probe(&server.bootstrap("SASL_SSL"), &wrong);
    let out_unknown = probe(&server.bootstrap("SASL_SSL"), &unknown);
    println!("{}\n{}", out_wrong.output, out_unknown.output);
    assert!(!out_wrong.ok && !out_unknown.ok, "a bad credential got in");
    let (a, b) = (
        sasl_failure(&out_wrong.errors()),
        sasl_failure(&out_unknown.errors()),
    );
    assert!(a.contains(kafka_text), "wrong password: {a}");
    assert_eq!(a, b, "an unknown user must get the wrong-password error");
    server.assert_healthy("after SCRAM failures");
    assert_accepted(
        &mut server,
        "SASL_SSL",
        &sasl_ssl(&certs, "SCRAM-SHA-512", "alice", "alice-secret"),
    );
}

#[test]
fn plain_wrong_password_and_unknown_user_get_the_same_error() {
    if !confluent_available() {
        return;
    }
    let certs = Certs::get();
    let mut server = SecureServer::start(Spec::standard(&certs));
    let kafka_text = "Authentication failed: Invalid username or password";
    let out_wrong = probe(
        &server.bootstrap("SASL_PLAINTEXT"),
        &sasl_plaintext("PLAIN", "bob", "alice-secret"),
    );
    let out_unknown = probe(
        &server.bootstrap("SASL_PLAINTEXT"),
        &sasl_plaintext("PLAIN", "mallory", "bob-secret"),
    );
    println!("{}\n{}", out_wrong.output, out_unknown.output);
    assert!(!out_wrong.ok && !out_unknown.ok, "a bad credential got in");
    let (a, b) = (
        sasl_failure(&out_wrong.errors()),
        sasl_failure(&out_unknown.errors()),
    );
    assert!(a.contains(kafka_text), "wrong password: {a}");
    assert_eq!(a, b, "an unknown user must get the wrong-password error");
    server.assert_healthy("after PLAIN failures");
    assert_accepted(
        &mut server,
        "SASL_PLAINTEXT",
        &sasl_plaintext("PLAIN", "bob", "bob-secret"),
    );
}

#[test]
fn client_that_does_not_trust_the_broker_ca_is_refused() {
    if !confluent_available() {
        return;
    }
    let certs = Certs::get();
    let mut server = SecureServer::start(Spec::standard(&certs));
    let mut untrusting = sasl_ssl(&certs, "SCRAM-SHA-512", "alice", "alice-secret");
    untrusting.retain(|s| !s.starts_with("ssl.ca.location="));
    untrusting.push(format!("ssl.ca.location={}", certs.path("evil-ca.pem")));
    assert_refused(
        &mut server,
        "SASL_SSL",
        &untrusting,
        &["certificate verify failed"],
    );
    assert_accepted(
        &mut server,
        "SASL_SSL",
        &sasl_ssl(&certs, "SCRAM-SHA-512", "alice", "alice-secret"),
    );
}

#[test]
fn ssl_listener_refuses_missing_and_untrusted_client_certificates() {
    if !confluent_available() {
        return;
    }
    let certs = Certs::get();
    let mut server = SecureServer::start(Spec::standard(&certs));
    // ssl.client.auth=required: no certificate at all (TLS 1.3: certificate_required alert).
    assert_refused(&mut server, "SSL", &ssl(&certs, None), &["certificate"]);
    // A certificate for CN=admin from another CA: the impostor is refused in the handshake.
    assert_refused(
        &mut server,
        "SSL",
        &ssl(&certs, Some("evil.pem")),
        &["SSL", "alert"],
    );
    assert_accepted(&mut server, "SSL", &ssl(&certs, Some("client-admin.pem")));
}

#[test]
fn plaintext_client_on_a_tls_listener_is_refused() {
    if !confluent_available() {
        return;
    }
    let certs = Certs::get();
    let mut server = SecureServer::start(Spec::standard(&certs));
    // The broker reads a Kafka request where a TLS ClientHello belongs and closes the
    // connection without answering; librdkafka says where it was when that happened.
    let plaintext = vec![
        "security.protocol=SASL_PLAINTEXT".to_string(),
        "sasl.mechanism=SCRAM-SHA-512".into(),
        "sasl.username=alice".into(),
        "sasl.password=alice-secret".into(),
    ];
    assert_refused(
        &mut server,
        "SASL_SSL",
        &plaintext,
        &["Disconnected", "APIVERSION_QUERY"],
    );
    // The same with raw bytes: an ApiVersions request gets no answer, the connection closes.
    let mut conn = Conn::connect(server.addr("SASL_SSL")).unwrap();
    let err = conn
        .api_versions(3)
        .expect_err("answered ApiVersions over TLS");
    println!("raw ApiVersions on the TLS port: {err}");
    server.assert_healthy("after plaintext bytes on the TLS port");
    assert_accepted(
        &mut server,
        "SASL_SSL",
        &sasl_ssl(&certs, "SCRAM-SHA-512", "alice", "alice-secret"),
    );
}

#[test]
fn tls_client_on_a_plaintext_listener_is_refused() {
    if !confluent_available() {
        return;
    }
    let certs = Certs::get();
    let mut server = SecureServer::start(Spec::standard(&certs));
    let mut tls = sasl_ssl(&certs, "PLAIN", "alice", "alice-secret");
    assert_refused(
        &mut server,
        "SASL_PLAINTEXT",
        &tls,
        &["connecting to a PLAINTEXT broker listener?"],
    );
    // And a TLS-only client on the harness's plaintext listener.
    tls = ssl(&certs, Some("client-alice.pem"));
    assert_refused(
        &mut server,
        "SETUP",
        &tls,
        &["connecting to a PLAINTEXT broker listener?"],
    );
    assert_accepted(
        &mut server,
        "SASL_PLAINTEXT",
        &sasl_plaintext("PLAIN", "alice", "alice-secret"),
    );
}

#[test]
fn mechanism_the_listener_does_not_enable_is_refused() {
    if !confluent_available() {
        return;
    }
    let certs = Certs::get();
    let mut server = SecureServer::start(Spec::standard(&certs));
    // SASL_PLAINTEXT enables PLAIN only (listener.name.sasl_plaintext.sasl.enabled.mechanisms):
    // SaslHandshake gets UNSUPPORTED_SASL_MECHANISM with the enabled list.
    assert_refused(
        &mut server,
        "SASL_PLAINTEXT",
        &sasl_plaintext("SCRAM-SHA-512", "alice", "alice-secret"),
        &["Unsupported SASL mechanism", "PLAIN"],
    );
    // SASL_SSL enables SCRAM only (sasl.enabled.mechanisms).
    assert_refused(
        &mut server,
        "SASL_SSL",
        &sasl_ssl(&certs, "PLAIN", "alice", "alice-secret"),
        &[
            "Unsupported SASL mechanism",
            "SCRAM-SHA-256",
            "SCRAM-SHA-512",
        ],
    );
    assert_accepted(
        &mut server,
        "SASL_PLAINTEXT",
        &sasl_plaintext("PLAIN", "alice", "alice-secret"),
    );
}

// ---- the SASL state machine, with raw requests -------------------------------------------------

const ILLEGAL_SASL_STATE: i16 = 34;
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
const SASL_AUTHENTICATION_FAILED: i16 = 58;

fn plain_token(user: &str, password: &str) -> bytes::Bytes {
    bytes::Bytes::from(format!("\0{user}\0{password}").into_bytes())
}

fn sasl_handshake(conn: &mut Conn, mechanism: &str) -> common::CResult<(i16, Vec<String>)> {
    let req = SaslHandshakeRequest::default()
        .with_mechanism(StrBytes::from_string(mechanism.to_string()));
    let resp = conn.request(1, &req)?;
    Ok((
        resp.error_code,
        resp.mechanisms.iter().map(|m| m.to_string()).collect(),
    ))
}

fn sasl_authenticate(
    conn: &mut Conn,
    token: bytes::Bytes,
) -> common::CResult<(i16, Option<String>, i64)> {
    let req = SaslAuthenticateRequest::default().with_auth_bytes(token);
    let resp = conn.request(2, &req)?;
    Ok((
        resp.error_code,
        resp.error_message.map(|m| m.to_string()),
        resp.session_lifetime_ms,
    ))
}

#[test]
fn sasl_exchange_with_raw_requests() {
    let certs = Certs::get();
    let mut server = SecureServer::start(Spec::standard(&certs));
    let addr = server.addr("SASL_PLAINTEXT");

    // ApiVersions is allowed before authenticating, and advertises the SASL APIs.
    let mut conn = Conn::connect(addr).unwrap();
    let versions = conn.api_versions(3).expect("ApiVersions before SASL");
    for api in [ApiKey::SaslHandshake, ApiKey::SaslAuthenticate] {
        assert!(
            versions.api_keys.iter().any(|k| k.api_key == api as i16),
            "{api:?} not advertised"
        );
    }
    // An unknown mechanism: UNSUPPORTED_SASL_MECHANISM with the listener's list.
    let (code, mechanisms) = sasl_handshake(&mut conn, "SCRAM-SHA-256").unwrap();
    assert_eq!(code, UNSUPPORTED_SASL_MECHANISM);
    assert_eq!(mechanisms, vec!["PLAIN".to_string()]);

    // PLAIN with the right password, then requests are served.
    let mut conn = Conn::connect(addr).unwrap();
    let (code, _) = sasl_handshake(&mut conn, "PLAIN").unwrap();
    assert_eq!(code, 0);
    let (code, msg, _) =
        sasl_authenticate(&mut conn, plain_token("alice", "alice-secret")).unwrap();
    assert_eq!(code, 0, "{msg:?}");
    let md = conn
        .request(12, &MetadataRequest::default().with_topics(None))
        .expect("Metadata after authentication");
    assert!(md.brokers.iter().any(|b| b.node_id.0 == 1));
    // Once authenticated, another SaslAuthenticate is refused as Kafka refuses it.
    let (code, _, _) = sasl_authenticate(&mut conn, plain_token("alice", "alice-secret")).unwrap();
    assert_eq!(code, ILLEGAL_SASL_STATE);

    // Any request other than ApiVersions and SaslHandshake before authenticating closes the
    // connection unanswered.
    let mut conn = Conn::connect(addr).unwrap();
    let req = MetadataRequest::default().with_topics(None);
    let (_, buf) = conn.encode_request(ApiKey::Metadata, 12, &req).unwrap();
    conn.write_frame(&buf).unwrap();
    conn.expect_closed()
        .expect("Metadata before SASL must close the connection");

    // A wrong password: SASL_AUTHENTICATION_FAILED with Kafka's text, then the connection closes.
    let mut conn = Conn::connect(addr).unwrap();
    sasl_handshake(&mut conn, "PLAIN").unwrap();
    let (code, msg, _) = sasl_authenticate(&mut conn, plain_token("alice", "wrong")).unwrap();
    assert_eq!(code, SASL_AUTHENTICATION_FAILED);
    assert_eq!(
        msg.as_deref(),
        Some("Authentication failed: Invalid username or password")
    );
    conn.expect_closed()
        .expect("the connection closes after a failed authentication");

    // SASL requests on a listener without SASL: ILLEGAL_SASL_STATE, as in Kafka.
    let mut conn = Conn::connect(server.setup_addr()).unwrap();
    let (code, _) = sasl_handshake(&mut conn, "PLAIN").unwrap();
    assert_eq!(code, ILLEGAL_SASL_STATE);
    server.assert_healthy("after the raw SASL exchanges");
}

#[test]
fn failed_authentication_is_answered_after_the_delay() {
    let certs = Certs::get();
    let mut server = SecureServer::start(
        Spec::standard(&certs).prop("connection.failed.authentication.delay.ms", "1500"),
    );
    let addr = server.addr("SASL_PLAINTEXT");
    let mut conn = Conn::connect(addr).unwrap();
    sasl_handshake(&mut conn, "PLAIN").unwrap();
    let t0 = Instant::now();
    let (code, _, _) = sasl_authenticate(&mut conn, plain_token("bob", "wrong")).unwrap();
    let failed_after = t0.elapsed();
    assert_eq!(code, SASL_AUTHENTICATION_FAILED);
    assert!(
        failed_after >= Duration::from_millis(1300),
        "the failure was answered after {failed_after:?}, before the 1500 ms delay"
    );
    // A good login is not delayed.
    let mut conn = Conn::connect(addr).unwrap();
    sasl_handshake(&mut conn, "PLAIN").unwrap();
    let t0 = Instant::now();
    let (code, _, _) = sasl_authenticate(&mut conn, plain_token("bob", "bob-secret")).unwrap();
    assert_eq!(code, 0);
    assert!(t0.elapsed() < Duration::from_millis(1000));
    server.assert_healthy("after delayed failures");
}

#[test]
fn session_lifetime_and_reauthentication() {
    let certs = Certs::get();
    let mut server =
        SecureServer::start(Spec::standard(&certs).prop("connections.max.reauth.ms", "2000"));
    // SaslAuthenticate v1+ tells the client how long its session lasts (KIP-368).
    let mut conn = Conn::connect(server.addr("SASL_PLAINTEXT")).unwrap();
    sasl_handshake(&mut conn, "PLAIN").unwrap();
    let (code, _, lifetime) =
        sasl_authenticate(&mut conn, plain_token("alice", "alice-secret")).unwrap();
    assert_eq!(code, 0);
    assert!(
        lifetime > 0 && lifetime <= 2000,
        "session_lifetime_ms {lifetime}, want (0, 2000]"
    );
    // A client that does not re-authenticate is disconnected once its session expired: the
    // next request after the lifetime gets no answer.
    std::thread::sleep(Duration::from_millis(2500));
    let req = MetadataRequest::default().with_topics(Some(Vec::new()));
    assert!(
        conn.request(12, &req).is_err(),
        "a request after the session expired was served"
    );
    server.assert_healthy("after an expired session");

    // librdkafka re-authenticates on its connections and never notices.
    if !confluent_available() {
        return;
    }
    let mut args = vec![
        "tests/security/confluent/reauth.py".to_string(),
        server.bootstrap("SASL_SSL"),
        "sec-reauth".into(),
        "7".into(),
    ];
    args.extend(sasl_ssl(&certs, "SCRAM-SHA-512", "alice", "alice-secret"));
    let out = run_program("python3", &args, CLIENT_TIMEOUT);
    println!("{}", out.output);
    assert!(
        out.ok && out.result_ok(),
        "re-authentication failed:\n{}\n{}",
        out.output,
        server.stderr_tail()
    );
}

// ---- broker TLS material -----------------------------------------------------------------------

#[test]
fn broker_key_encrypted_with_ssl_key_password() {
    if !confluent_available() {
        return;
    }
    let certs = Certs::get();
    let spec = Spec::standard(&certs)
        .prop("ssl.keystore.location", certs.path("node-1-encrypted.pem"))
        .prop("ssl.key.password", KEY_PASSWORD);
    let mut server = SecureServer::start(spec);
    assert_accepted(
        &mut server,
        "SASL_SSL",
        &sasl_ssl(&certs, "SCRAM-SHA-256", "alice", "alice-secret"),
    );
    assert_accepted(&mut server, "SSL", &ssl(&certs, Some("client-bob.pem")));
}

#[test]
fn broker_key_with_a_wrong_password_stops_start_up_naming_the_key() {
    let certs = Certs::get();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("server.properties");
    let props: Vec<(String, String)> = [
        ("node.id", "1".to_string()),
        ("log.dirs", dir.path().join("data").display().to_string()),
        (
            "listeners",
            format!("SSL://127.0.0.1:{}", common::free_port()),
        ),
        ("listener.security.protocol.map", "SSL:SSL".into()),
        ("ssl.keystore.type", "PEM".into()),
        ("ssl.keystore.location", certs.path("node-1-encrypted.pem")),
        ("ssl.key.password", "not-the-password".into()),
        ("ssl.truststore.type", "PEM".into()),
        ("ssl.truststore.location", certs.ca()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    write_properties(&config, &props);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runnel"));
    cmd.arg("server").arg("--config").arg(&config);
    let (ok, output) = run_with_timeout(&mut cmd, Duration::from_secs(30));
    assert!(!ok, "started with a wrong ssl.key.password:\n{output}");
    assert!(
        output.contains("ssl.key.password") || output.contains("ssl.keystore.location"),
        "the error does not name the property:\n{output}"
    );
}

/// A PEM file's text as a properties value over several lines (`\` continuations), the way
/// Kafka's documentation writes `ssl.keystore.key` and friends.
fn pem_property(key: &str, pem: &str) -> String {
    let lines: Vec<&str> = pem.lines().filter(|l| !l.is_empty()).collect();
    format!("{key}={}\n", lines.join(" \\\n    "))
}

/// Splits a dev-certs.sh keystore file into its key block and its certificate chain.
fn split_keystore(text: &str) -> (String, String) {
    let end = "-----END PRIVATE KEY-----";
    let i = text.find(end).expect("key block") + end.len();
    (text[..i].to_string(), text[i..].trim().to_string())
}

#[test]
fn broker_tls_material_inline_in_the_properties() {
    if !confluent_available() {
        return;
    }
    let certs = Certs::get();
    let keystore = std::fs::read_to_string(certs.node(1)).unwrap();
    let (key, chain) = split_keystore(&keystore);
    let ca = std::fs::read_to_string(certs.ca()).unwrap();
    let mut spec = Spec::standard(&certs)
        .without("ssl.keystore.location")
        .without("ssl.truststore.location");
    spec.raw = pem_property("ssl.keystore.key", &key)
        + &pem_property("ssl.keystore.certificate.chain", &chain)
        + &pem_property("ssl.truststore.certificates", &ca);
    let mut server = SecureServer::start(spec);
    assert_accepted(
        &mut server,
        "SASL_SSL",
        &sasl_ssl(&certs, "SCRAM-SHA-512", "bob", "bob-secret"),
    );
    // The inline truststore checks client certificates too.
    assert_accepted(&mut server, "SSL", &ssl(&certs, Some("client-alice.pem")));
    assert_refused(
        &mut server,
        "SSL",
        &ssl(&certs, Some("evil.pem")),
        &["SSL", "alert"],
    );
}

/// The subject of the certificate the listener at `addr` presents (openssl s_client).
fn presented_subject(addr: &str, ca: &str) -> String {
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            addr,
            "-CAfile",
            ca,
            "-verify_return_error",
            "-brief",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("openssl s_client");
    child.stdin.take().unwrap().write_all(b"").unwrap();
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    text.lines()
        .find_map(|l| l.strip_prefix("Peer certificate: "))
        .unwrap_or("")
        .to_string()
}

#[test]
fn keystore_file_replaced_while_running_is_picked_up() {
    common::require_tool("openssl", "openssl");
    let certs = Certs::get();
    let dir = tempfile::tempdir().unwrap();
    let keystore = dir.path().join("broker.pem");
    std::fs::copy(certs.node(1), &keystore).unwrap();
    let mut server = SecureServer::start(
        Spec::standard(&certs).prop("ssl.keystore.location", keystore.display().to_string()),
    );
    let addr = server.bootstrap("SASL_SSL");
    let before = presented_subject(&addr, &certs.ca());
    assert!(before.contains("CN = runnel1"), "presented {before:?}");
    // Renewal: the file is replaced (written beside it and renamed, as tools do).
    let fresh = dir.path().join("broker.pem.new");
    std::fs::copy(certs.node(2), &fresh).unwrap();
    std::fs::rename(&fresh, &keystore).unwrap();
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let now = presented_subject(&addr, &certs.ca());
        if now.contains("CN = runnel2") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still presenting {now:?} 45 s after the keystore changed\n{}",
            server.stderr_tail()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // A broken file does not replace a good configuration.
    std::fs::write(&keystore, "not a PEM file").unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let after = presented_subject(&addr, &certs.ca());
    assert!(
        after.contains("CN = runnel2"),
        "a broken keystore file broke the listener: {after:?}"
    );
    server.assert_healthy("after keystore changes");
}

// ---- SCRAM users at run time ---------------------------------------------------------------------

/// Writes a client.properties for `runnel ... --command-config`: SASL_SSL with SCRAM-SHA-512.
fn command_config(dir: &std::path::Path, certs: &Certs, user: &str, pass: &str) -> String {
    let path = dir.join(format!("{user}.properties"));
    let props: Vec<(String, String)> = [
        ("security.protocol", "SASL_SSL".to_string()),
        ("sasl.mechanism", "SCRAM-SHA-512".into()),
        (
            "sasl.jaas.config",
            format!(
                "org.apache.kafka.common.security.scram.ScramLoginModule required \
                 username=\"{user}\" password=\"{pass}\";"
            ),
        ),
        ("ssl.truststore.type", "PEM".into()),
        ("ssl.truststore.location", certs.ca()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    write_properties(&path, &props);
    path.display().to_string()
}

fn runnel(args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runnel"));
    cmd.args(args);
    run_with_timeout(&mut cmd, Duration::from_secs(60))
}

#[test]
fn scram_users_added_and_removed_with_runnel_configs() {
    if !confluent_available() {
        return;
    }
    let certs = Certs::get();
    let mut server = SecureServer::start(Spec::standard(&certs));
    let dir = tempfile::tempdir().unwrap();
    let admin = command_config(dir.path(), &certs, "admin", "admin-secret");
    let bootstrap = server.bootstrap("SASL_SSL");
    let carol = sasl_ssl(&certs, "SCRAM-SHA-512", "carol", "carol-secret");
    assert_refused(
        &mut server,
        "SASL_SSL",
        &carol,
        &["SASL authentication error"],
    );

    let (ok, out) = runnel(&[
        "configs",
        "--bootstrap-server",
        &bootstrap,
        "--command-config",
        &admin,
        "--alter",
        "--entity-type",
        "users",
        "--entity-name",
        "carol",
        "--add-config",
        "SCRAM-SHA-512=[iterations=8192,password=carol-secret]",
    ]);
    assert!(ok, "runnel configs --alter (add SCRAM):\n{out}");
    let (ok, out) = runnel(&[
        "configs",
        "--bootstrap-server",
        &bootstrap,
        "--command-config",
        &admin,
        "--describe",
        "--entity-type",
        "users",
        "--entity-name",
        "carol",
    ]);
    assert!(ok, "runnel configs --describe users:\n{out}");
    assert!(
        out.contains("SCRAM-SHA-512=iterations=8192"),
        "describe does not show carol's credential:\n{out}"
    );
    assert_accepted(&mut server, "SASL_SSL", &carol);

    let (ok, out) = runnel(&[
        "configs",
        "--bootstrap-server",
        &bootstrap,
        "--command-config",
        &admin,
        "--alter",
        "--entity-type",
        "users",
        "--entity-name",
        "carol",
        "--delete-config",
        "SCRAM-SHA-512",
    ]);
    assert!(ok, "runnel configs --alter (delete SCRAM):\n{out}");
    assert_refused(
        &mut server,
        "SASL_SSL",
        &carol,
        &["SASL authentication error"],
    );
    // A credential that exists survives a restart (it is in the metadata log).
    server.restart();
    assert_accepted(
        &mut server,
        "SASL_SSL",
        &sasl_ssl(&certs, "SCRAM-SHA-512", "alice", "alice-secret"),
    );
}
