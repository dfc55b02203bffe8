//! SASL on a client listener: the listener's mechanisms and PLAIN users, and the I/O-free
//! authentication state of one connection (SaslHandshake, then one or two SaslAuthenticate
//! exchanges, KIP-152; re-authentication, KIP-368).
//!
//! A failed authentication never says whether the user exists: an unknown SCRAM user is
//! answered with a fake salt and fails at the last step like a wrong password, and PLAIN gives
//! the same message for both.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use runnel_security::scram::{ScramCredential, ScramMechanism, ScramServer};
use runnel_security::{jaas, plain};

use crate::config::Listener;
use crate::context::KafkaPrincipal;

/// A SASL mechanism Runnel serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Scram(ScramMechanism),
}

impl Mechanism {
    pub fn parse(name: &str) -> Option<Mechanism> {
        let name = name.trim();
        if name.eq_ignore_ascii_case("PLAIN") {
            return Some(Mechanism::Plain);
        }
        ScramMechanism::from_name(&name.to_ascii_uppercase()).map(Mechanism::Scram)
    }

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Scram(m) => m.name(),
        }
    }
}

/// The login module PLAIN users are declared with, as in Kafka.
const PLAIN_LOGIN_MODULE: &str = "org.apache.kafka.common.security.plain.PlainLoginModule";
const SCRAM_LOGIN_MODULE: &str = "org.apache.kafka.common.security.scram.ScramLoginModule";

/// The SASL settings of one SASL listener.
pub struct SaslListener {
    pub mechanisms: Vec<Mechanism>,
    /// PLAIN users and passwords from `<listener>.plain.sasl.jaas.config` (`user_alice="..."`).
    plain_users: HashMap<String, String>,
    /// `connections.max.reauth.ms`; 0: sessions do not expire.
    pub reauth_ms: u64,
    /// `sasl.server.max.receive.size`.
    pub max_receive_size: usize,
}

impl std::fmt::Debug for SaslListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslListener")
            .field("mechanisms", &self.mechanisms)
            .field("plain_users", &self.plain_users.len())
            .field("reauth_ms", &self.reauth_ms)
            .finish()
    }
}

impl SaslListener {
    pub fn new(listener: &Listener) -> Result<SaslListener, String> {
        let get = |k: &str| listener.security.get(k).cloned();
        let enabled = get("sasl.enabled.mechanisms").unwrap_or_default();
        let mut mechanisms = Vec::new();
        for name in enabled.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let m = Mechanism::parse(name).ok_or_else(|| {
                format!(
                    "listener {}: SASL mechanism {name} is not supported (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)",
                    listener.name
                )
            })?;
            if !mechanisms.contains(&m) {
                mechanisms.push(m);
            }
        }
        if mechanisms.is_empty() {
            return Err(format!(
                "listener {} uses {} but sasl.enabled.mechanisms is empty",
                listener.name, listener.protocol
            ));
        }
        let mut plain_users = HashMap::new();
        if let Some(text) = get("plain.sasl.jaas.config") {
            let cfg = jaas::parse(&text).map_err(|e| {
                format!(
                    "listener.name.{}.plain.sasl.jaas.config: {e}",
                    listener.name.to_ascii_lowercase()
                )
            })?;
            if cfg.login_module != PLAIN_LOGIN_MODULE {
                return Err(format!(
                    "listener.name.{}.plain.sasl.jaas.config: expected {PLAIN_LOGIN_MODULE}, not {}",
                    listener.name.to_ascii_lowercase(),
                    cfg.login_module
                ));
            }
            for (k, v) in cfg.options {
                if let Some(user) = k.strip_prefix("user_") {
                    plain_users.insert(user.to_string(), v);
                }
            }
        }
        for m in ["scram-sha-256", "scram-sha-512"] {
            if let Some(text) = get(&format!("{m}.sasl.jaas.config")) {
                let cfg = jaas::parse(&text).map_err(|e| {
                    format!(
                        "listener.name.{}.{m}.sasl.jaas.config: {e}",
                        listener.name.to_ascii_lowercase()
                    )
                })?;
                if cfg.login_module != SCRAM_LOGIN_MODULE {
                    return Err(format!(
                        "listener.name.{}.{m}.sasl.jaas.config: expected {SCRAM_LOGIN_MODULE}, not {}",
                        listener.name.to_ascii_lowercase(),
                        cfg.login_module
                    ));
                }
            }
        }
        if mechanisms.contains(&Mechanism::Plain) && plain_users.is_empty() {
            tracing::warn!(
                listener = %listener.name,
                "PLAIN is enabled but listener.name.{}.plain.sasl.jaas.config declares no user_<name> entries: no PLAIN login can succeed",
                listener.name.to_ascii_lowercase()
            );
        }
        let number = |k: &str, default: u64| -> Result<u64, String> {
            match get(k) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| format!("listener {}: {k}: '{v}' is not a number", listener.name)),
            }
        };
        Ok(SaslListener {
            mechanisms,
            plain_users,
            reauth_ms: number("connections.max.reauth.ms", 0)?,
            max_receive_size: number("sasl.server.max.receive.size", 524_288)? as usize,
        })
    }

    pub fn mechanism_names(&self) -> Vec<&'static str> {
        self.mechanisms.iter().map(|m| m.name()).collect()
    }
}

/// What a SaslAuthenticate step produced.
#[derive(Debug)]
pub enum Step {
    /// Send these bytes (SCRAM's server-first message); the exchange goes on.
    Challenge(Vec<u8>),
    /// Authenticated (or re-authenticated); send `bytes` (SCRAM's server-final message, empty
    /// for PLAIN). `session_lifetime_ms` is 0 when the session does not expire.
    Done {
        principal: KafkaPrincipal,
        bytes: Vec<u8>,
        session_lifetime_ms: i64,
    },
    /// Answer with `code` and `message`, wait the failed-authentication delay, close.
    /// `reason` is for the broker's log only.
    Failed {
        code: i16,
        message: String,
        reason: String,
    },
}

enum Exchange {
    Idle,
    Handshaken(Mechanism),
    ScramSent(Box<ScramServer>),
}

struct Session {
    principal: KafkaPrincipal,
    expires_at: Option<Instant>,
}

/// The SASL state of one connection.
pub struct SaslSession {
    exchange: Exchange,
    session: Option<Session>,
    /// SaslHandshake v0: the tokens that follow are raw length-prefixed frames, not
    /// SaslAuthenticate requests.
    raw_tokens: bool,
}

impl Default for SaslSession {
    fn default() -> Self {
        Self::new()
    }
}

impl SaslSession {
    pub fn new() -> SaslSession {
        SaslSession {
            exchange: Exchange::Idle,
            session: None,
            raw_tokens: false,
        }
    }

    /// The authenticated principal (also during a re-authentication).
    pub fn principal(&self) -> Option<&KafkaPrincipal> {
        self.session.as_ref().map(|s| &s.principal)
    }

    /// Whether the authenticated session has passed its lifetime without re-authentication.
    pub fn expired(&self, now: Instant) -> bool {
        self.session
            .as_ref()
            .and_then(|s| s.expires_at)
            .is_some_and(|at| now >= at)
    }

    /// Whether the next frames are raw SASL tokens (after SaslHandshake v0).
    pub fn expects_raw_token(&self) -> bool {
        self.raw_tokens && !matches!(self.exchange, Exchange::Idle)
    }

    /// SaslHandshake: selects the mechanism. `Err` is the error code to answer (and then the
    /// connection is closed, as Kafka does).
    pub fn handshake(
        &mut self,
        cfg: &SaslListener,
        mechanism: &str,
        version: i16,
    ) -> Result<(), ResponseError> {
        if !matches!(self.exchange, Exchange::Idle) {
            return Err(ResponseError::IllegalSaslState);
        }
        let m = Mechanism::parse(mechanism)
            .filter(|m| cfg.mechanisms.contains(m))
            .ok_or(ResponseError::UnsupportedSaslMechanism)?;
        self.exchange = Exchange::Handshaken(m);
        self.raw_tokens = version == 0;
        Ok(())
    }

    /// One SaslAuthenticate (or raw v0 token). `lookup` finds a user's SCRAM credential;
    /// `fake_secret` derives the fake salt of unknown users.
    pub fn authenticate(
        &mut self,
        cfg: &SaslListener,
        token: &[u8],
        lookup: impl FnOnce(&str, ScramMechanism) -> Option<ScramCredential>,
        fake_secret: &[u8],
        now: Instant,
    ) -> Step {
        let failed = |code: ResponseError, message: String, reason: String| Step::Failed {
            code: code.code(),
            message,
            reason,
        };
        if token.len() > cfg.max_receive_size {
            self.exchange = Exchange::Idle;
            return failed(
                ResponseError::SaslAuthenticationFailed,
                "Authentication failed: the SASL token is too large".into(),
                format!(
                    "SASL token of {} bytes exceeds sasl.server.max.receive.size",
                    token.len()
                ),
            );
        }
        let exchange = std::mem::replace(&mut self.exchange, Exchange::Idle);
        let (user, bytes) = match exchange {
            Exchange::Idle => {
                return failed(
                    ResponseError::IllegalSaslState,
                    "Unexpected SaslAuthenticate request: no SaslHandshake selected a mechanism"
                        .into(),
                    "SaslAuthenticate before SaslHandshake".into(),
                )
            }
            Exchange::Handshaken(Mechanism::Plain) => {
                let invalid = "Authentication failed: Invalid username or password".to_string();
                let (authzid, user, password) = match plain::parse(token) {
                    Ok(p) => p,
                    Err(e) => {
                        return failed(
                            ResponseError::SaslAuthenticationFailed,
                            invalid,
                            format!("malformed PLAIN token: {e}"),
                        )
                    }
                };
                if !authzid.is_empty() && authzid != user {
                    return failed(
                        ResponseError::SaslAuthenticationFailed,
                        "Authentication failed: Client requested an authorization id that is different from username".into(),
                        format!("PLAIN authorization id {authzid:?} differs from user {user:?}"),
                    );
                }
                // Compare against a dummy for unknown users so both paths cost the same.
                let expected = self.lookup_plain(cfg, &user);
                let known = expected.is_some();
                let ok = plain::password_matches(expected.unwrap_or(""), &password) && known;
                if !ok {
                    return failed(
                        ResponseError::SaslAuthenticationFailed,
                        invalid,
                        format!("PLAIN authentication of {user:?} failed"),
                    );
                }
                (user, Vec::new())
            }
            Exchange::Handshaken(Mechanism::Scram(m)) => {
                let mut server = Box::new(ScramServer::new(m, fake_secret));
                return match server.client_first(token, |u| lookup(u, m)) {
                    Ok(first) => {
                        self.exchange = Exchange::ScramSent(server);
                        Step::Challenge(first)
                    }
                    Err(e) => failed(
                        ResponseError::SaslAuthenticationFailed,
                        scram_failure(m),
                        format!("SCRAM client-first: {e}"),
                    ),
                };
            }
            Exchange::ScramSent(mut server) => {
                let m = server.mechanism();
                match server.client_final(token) {
                    Ok((last, user)) => (user, last),
                    Err(e) => {
                        return failed(
                            ResponseError::SaslAuthenticationFailed,
                            scram_failure(m),
                            format!("SCRAM client-final: {e}"),
                        )
                    }
                }
            }
        };
        let principal = KafkaPrincipal::user(user);
        if let Some(previous) = &self.session {
            if previous.principal != principal {
                return failed(
                    ResponseError::SaslAuthenticationFailed,
                    format!(
                        "Cannot change principals during re-authentication from {}: {}",
                        previous.principal, principal
                    ),
                    "re-authentication as another principal".into(),
                );
            }
        }
        let expires_at = (cfg.reauth_ms > 0).then(|| now + Duration::from_millis(cfg.reauth_ms));
        self.session = Some(Session {
            principal: principal.clone(),
            expires_at,
        });
        self.raw_tokens = false;
        Step::Done {
            principal,
            bytes,
            session_lifetime_ms: cfg.reauth_ms.min(i64::MAX as u64) as i64,
        }
    }

    fn lookup_plain<'a>(&self, cfg: &'a SaslListener, user: &str) -> Option<&'a str> {
        cfg.plain_users.get(user).map(String::as_str)
    }
}

/// Kafka's message for a failed SCRAM authentication (the same for unknown users).
fn scram_failure(m: ScramMechanism) -> String {
    format!(
        "Authentication failed during authentication due to invalid credentials with SASL mechanism {}",
        m.name()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::SecurityProtocol;
    use runnel_security::scram::ScramClient;
    use std::collections::BTreeMap;

    fn listener(props: &[(&str, &str)]) -> Listener {
        Listener {
            name: "SASL_SSL".into(),
            listen: crate::config::parse_host_port("127.0.0.1:0").unwrap(),
            advertised: None,
            protocol: SecurityProtocol::SaslSsl,
            security: props
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    fn cfg(reauth: &str) -> SaslListener {
        SaslListener::new(&listener(&[
            ("sasl.enabled.mechanisms", "PLAIN,SCRAM-SHA-512"),
            (
                "plain.sasl.jaas.config",
                r#"org.apache.kafka.common.security.plain.PlainLoginModule required user_alice="alice-secret" user_bob="b";"#,
            ),
            ("connections.max.reauth.ms", reauth),
        ]))
        .unwrap()
    }

    fn creds(user: &str, m: ScramMechanism) -> Option<ScramCredential> {
        (user == "admin").then(|| ScramCredential::from_password(m, "admin-secret", b"salt", 4096))
    }

    fn code_of(step: &Step) -> i16 {
        match step {
            Step::Failed { code, .. } => *code,
            _ => 0,
        }
    }

    #[test]
    fn plain_accepts_declared_users_only_and_hides_which_part_was_wrong() {
        let cfg = cfg("0");
        let now = Instant::now();
        let mut s = SaslSession::new();
        s.handshake(&cfg, "PLAIN", 1).unwrap();
        let step = s.authenticate(
            &cfg,
            &plain::encode("alice", "alice-secret"),
            creds,
            b"k",
            now,
        );
        assert!(
            matches!(step, Step::Done { ref principal, .. } if principal.to_string() == "User:alice")
        );
        assert_eq!(s.principal().unwrap().name, "alice");
        let mut messages = vec![];
        for (u, p) in [("alice", "wrong"), ("nobody", "alice-secret")] {
            let mut s = SaslSession::new();
            s.handshake(&cfg, "PLAIN", 1).unwrap();
            match s.authenticate(&cfg, &plain::encode(u, p), creds, b"k", now) {
                Step::Failed { code, message, .. } => {
                    assert_eq!(code, ResponseError::SaslAuthenticationFailed.code());
                    messages.push(message);
                }
                other => panic!("{other:?}"),
            }
            assert!(s.principal().is_none());
        }
        assert_eq!(messages[0], messages[1]);
    }

    #[test]
    fn scram_round_trip_and_unknown_user_looks_like_a_wrong_password() {
        let cfg = cfg("0");
        let now = Instant::now();
        let m = ScramMechanism::Sha512;
        let run = |user: &str, password: &str| {
            let mut s = SaslSession::new();
            s.handshake(&cfg, "SCRAM-SHA-512", 1).unwrap();
            let mut client = ScramClient::new(m, user, password);
            let Step::Challenge(first) =
                s.authenticate(&cfg, &client.client_first(), creds, b"k", now)
            else {
                panic!("expected a challenge");
            };
            let fin = client.server_first(&first).unwrap();
            (s.authenticate(&cfg, &fin, creds, b"k", now), s)
        };
        let (ok, s) = run("admin", "admin-secret");
        assert!(matches!(ok, Step::Done { .. }), "{ok:?}");
        assert_eq!(s.principal().unwrap().to_string(), "User:admin");
        let (wrong, _) = run("admin", "nope");
        let (unknown, _) = run("ghost", "admin-secret");
        match (wrong, unknown) {
            (Step::Failed { message: a, .. }, Step::Failed { message: b, .. }) => assert_eq!(a, b),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn handshake_refuses_disabled_mechanisms_and_out_of_order_steps() {
        let cfg = cfg("0");
        let mut s = SaslSession::new();
        assert_eq!(
            s.handshake(&cfg, "SCRAM-SHA-256", 1),
            Err(ResponseError::UnsupportedSaslMechanism)
        );
        assert_eq!(
            s.handshake(&cfg, "GSSAPI", 1),
            Err(ResponseError::UnsupportedSaslMechanism)
        );
        let step = s.authenticate(&cfg, b"x", creds, b"k", Instant::now());
        assert_eq!(code_of(&step), ResponseError::IllegalSaslState.code());
        s.handshake(&cfg, "PLAIN", 1).unwrap();
        assert_eq!(
            s.handshake(&cfg, "PLAIN", 1),
            Err(ResponseError::IllegalSaslState)
        );
        // Oversized and garbage tokens fail cleanly.
        let big = vec![0u8; cfg.max_receive_size + 1];
        let step = s.authenticate(&cfg, &big, creds, b"k", Instant::now());
        assert_eq!(
            code_of(&step),
            ResponseError::SaslAuthenticationFailed.code()
        );
        s.handshake(&cfg, "SCRAM-SHA-512", 1).unwrap();
        let step = s.authenticate(&cfg, b"\xff\x00garbage", creds, b"k", Instant::now());
        assert_eq!(
            code_of(&step),
            ResponseError::SaslAuthenticationFailed.code()
        );
    }

    #[test]
    fn reauthentication_keeps_the_principal_and_extends_the_session() {
        let cfg = cfg("1000");
        let t0 = Instant::now();
        let mut s = SaslSession::new();
        s.handshake(&cfg, "PLAIN", 1).unwrap();
        let step = s.authenticate(
            &cfg,
            &plain::encode("alice", "alice-secret"),
            creds,
            b"k",
            t0,
        );
        assert!(matches!(
            step,
            Step::Done {
                session_lifetime_ms: 1000,
                ..
            }
        ));
        assert!(!s.expired(t0 + Duration::from_millis(999)));
        assert!(s.expired(t0 + Duration::from_millis(1000)));
        // Re-authenticating as the same user extends the session.
        let t1 = t0 + Duration::from_millis(900);
        s.handshake(&cfg, "PLAIN", 1).unwrap();
        let step = s.authenticate(
            &cfg,
            &plain::encode("alice", "alice-secret"),
            creds,
            b"k",
            t1,
        );
        assert!(matches!(step, Step::Done { .. }));
        assert!(!s.expired(t0 + Duration::from_millis(1500)));
        // As another user: refused.
        s.handshake(&cfg, "PLAIN", 1).unwrap();
        let step = s.authenticate(&cfg, &plain::encode("bob", "b"), creds, b"k", t1);
        assert_eq!(
            code_of(&step),
            ResponseError::SaslAuthenticationFailed.code()
        );
    }

    #[test]
    fn listener_settings_are_validated() {
        let err =
            SaslListener::new(&listener(&[("sasl.enabled.mechanisms", "GSSAPI")])).unwrap_err();
        assert!(err.contains("GSSAPI"), "{err}");
        let err = SaslListener::new(&listener(&[
            ("sasl.enabled.mechanisms", "PLAIN"),
            (
                "plain.sasl.jaas.config",
                r#"org.apache.kafka.common.security.scram.ScramLoginModule required;"#,
            ),
        ]))
        .unwrap_err();
        assert!(err.contains("PlainLoginModule"), "{err}");
        assert!(SaslListener::new(&listener(&[("sasl.enabled.mechanisms", "")])).is_err());
    }
}
