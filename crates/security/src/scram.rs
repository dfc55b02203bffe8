//! SASL SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka uses them.
//!
//! No channel binding: the GS2 header is `n,,` (or `y,,`), optionally with an authorization id
//! `a=` that must equal the user name. Client-first extensions (Kafka's `tokenauth=true`) are
//! parsed and ignored. A server asked about an unknown user answers server-first as usual, with
//! a salt derived from a secret and the user name, and fails at the final step exactly as for a
//! wrong password, so a client cannot tell which user names exist.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// The lowest iteration count Kafka accepts for SCRAM credentials.
pub const MIN_ITERATIONS: i32 = 4096;
/// The highest iteration count Kafka accepts for SCRAM credentials.
pub const MAX_ITERATIONS: i32 = 16384;
/// The iteration count announced for unknown users (Kafka's tools' default).
const FAKE_ITERATIONS: i32 = 4096;
/// The length of the salts made by [`random_salt`] and of the fake salts.
const SALT_LEN: usize = 32;
/// The length of the random part of a nonce.
const NONCE_LEN: usize = 32;

/// A SCRAM mechanism Kafka supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

impl ScramMechanism {
    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha256, ScramMechanism::Sha512];

    /// The SASL mechanism name, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism for a SASL mechanism name (exact, as Kafka compares them).
    pub fn from_name(name: &str) -> Option<Self> {
        ScramMechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Kafka's mechanism code in DescribeUserScramCredentials/AlterUserScramCredentials.
    pub fn kafka_type(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    pub fn from_kafka_type(code: i8) -> Option<Self> {
        ScramMechanism::ALL
            .into_iter()
            .find(|m| m.kafka_type() == code)
    }

    /// The hash output length in bytes.
    pub fn hash_len(self) -> usize {
        match self {
            ScramMechanism::Sha256 => 32,
            ScramMechanism::Sha512 => 64,
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => Sha256::digest(data).to_vec(),
            ScramMechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    fn hmac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        fn run<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
            let mut mac =
                <M as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
            for p in parts {
                mac.update(p);
            }
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            ScramMechanism::Sha256 => run::<Hmac<Sha256>>(key, parts),
            ScramMechanism::Sha512 => run::<Hmac<Sha512>>(key, parts),
        }
    }
}

impl std::fmt::Display for ScramMechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a server stores for a user and mechanism (never the password).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: i32,
}

impl ScramCredential {
    pub fn from_password(m: ScramMechanism, password: &str, salt: &[u8], iterations: i32) -> Self {
        let salted = salted_password(m, password, salt, iterations);
        Self::from_salted_password(m, &salted, salt, iterations)
    }

    /// The credential for a salted password as AlterUserScramCredentials carries it.
    pub fn from_salted_password(
        m: ScramMechanism,
        salted_password: &[u8],
        salt: &[u8],
        iterations: i32,
    ) -> Self {
        let client_key = m.hmac(salted_password, &[b"Client Key"]);
        ScramCredential {
            salt: salt.to_vec(),
            stored_key: m.hash(&client_key),
            server_key: m.hmac(salted_password, &[b"Server Key"]),
            iterations,
        }
    }
}

/// RFC 5802's `Hi()`: PBKDF2 with HMAC of the mechanism's hash. A non-positive iteration count
/// is taken as 1.
pub fn salted_password(m: ScramMechanism, password: &str, salt: &[u8], iterations: i32) -> Vec<u8> {
    let rounds = u32::try_from(iterations).unwrap_or(1).max(1);
    let mut out = vec![0u8; m.hash_len()];
    match m {
        ScramMechanism::Sha256 => {
            pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, rounds, &mut out)
        }
        ScramMechanism::Sha512 => {
            pbkdf2::pbkdf2_hmac::<Sha512>(password.as_bytes(), salt, rounds, &mut out)
        }
    }
    out
}

/// Random bytes from the operating system. Falls back to a hash of the time and a counter only
/// if the operating system has no random source, which rules out a panic on exotic systems.
fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    if getrandom::fill(&mut buf).is_err() {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let mut seed = Sha512::digest(nanos.to_le_bytes()).to_vec();
        seed.extend_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        let mut out = Vec::with_capacity(n);
        let mut block = 0u64;
        while out.len() < n {
            out.extend_from_slice(
                &Sha512::new()
                    .chain_update(&seed)
                    .chain_update(block.to_le_bytes())
                    .finalize(),
            );
            block += 1;
        }
        out.truncate(n);
        buf = out;
    }
    buf
}

/// A fresh random salt (32 bytes).
pub fn random_salt() -> Vec<u8> {
    random_bytes(SALT_LEN)
}

/// A random printable nonce of letters and digits.
fn random_nonce() -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    random_bytes(NONCE_LEN)
        .into_iter()
        .map(|b| CHARS[usize::from(b) % CHARS.len()] as char)
        .collect()
}

/// Why a SCRAM exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// The peer sent a message that is not valid SCRAM.
    #[error("Invalid SCRAM message: {0}")]
    InvalidMessage(String),
    /// Wrong password or unknown user (the two are not told apart).
    #[error("Authentication failed: Invalid user credentials")]
    InvalidCredentials,
    /// The client asked to act as another user.
    #[error("Authentication failed: Client requested an authorization id that is different from username")]
    AuthorizationIdMismatch,
    /// A stored credential or the server's announced parameters are unusable.
    #[error("{0}")]
    BadCredential(String),
    /// The server's signature did not verify: it does not know the password.
    #[error("Invalid server signature in server final message")]
    InvalidServerSignature,
    /// The server answered with `e=`.
    #[error("Server returned an error: {0}")]
    ServerError(String),
    /// A step was called out of order or after a failure.
    #[error("SCRAM exchange called out of order")]
    OutOfOrder,
}

fn invalid(msg: impl Into<String>) -> ScramError {
    ScramError::InvalidMessage(msg.into())
}

/// `saslname` decoding: `=2C` is `,` and `=3D` is `=`; any other `=` is invalid.
fn decode_saslname(s: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let esc = rest.get(i..i + 3);
        match esc {
            Some("=2C") | Some("=2c") => out.push(','),
            Some("=3D") | Some("=3d") => out.push('='),
            _ => return Err(invalid(format!("invalid escape in user name '{s}'"))),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    if out.is_empty() {
        return Err(invalid("empty user name"));
    }
    Ok(out)
}

fn encode_saslname(s: &str) -> String {
    s.replace('=', "=3D").replace(',', "=2C")
}

fn valid_nonce(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

fn utf8(msg: &[u8]) -> Result<&str, ScramError> {
    std::str::from_utf8(msg).map_err(|_| invalid("message is not UTF-8"))
}

/// The value of `key=value`, checking the key.
fn attr(part: Option<&str>, key: char) -> Result<&str, ScramError> {
    let part = part.ok_or_else(|| invalid(format!("missing attribute '{key}'")))?;
    let mut chars = part.chars();
    if chars.next() != Some(key) || chars.next() != Some('=') {
        return Err(invalid(format!(
            "expected attribute '{key}=' but found '{}'",
            truncate(part)
        )));
    }
    Ok(&part[2..])
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(32) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Extensions after the nonce: `,name=value` each, name letters only.
fn check_extensions<'a>(parts: impl Iterator<Item = &'a str>) -> Result<(), ScramError> {
    for p in parts {
        let (name, _) = p
            .split_once('=')
            .ok_or_else(|| invalid(format!("invalid extension '{}'", truncate(p))))?;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(invalid(format!("invalid extension '{}'", truncate(p))));
        }
    }
    Ok(())
}

fn b64_decode(what: &str, s: &str) -> Result<Vec<u8>, ScramError> {
    B64.decode(s)
        .map_err(|_| invalid(format!("{what} is not valid base64")))
}

struct ClientFirst {
    gs2_header: String,
    user: String,
    nonce: String,
    bare: String,
}

fn parse_client_first(msg: &[u8]) -> Result<ClientFirst, ScramError> {
    let s = utf8(msg)?;
    let (cbind, rest) = s
        .split_once(',')
        .ok_or_else(|| invalid("missing GS2 header"))?;
    match cbind {
        "n" | "y" => {}
        c if c.starts_with("p=") => return Err(invalid("channel binding is not supported")),
        _ => return Err(invalid("invalid GS2 header")),
    }
    let (authzid, bare) = rest
        .split_once(',')
        .ok_or_else(|| invalid("missing GS2 header"))?;
    let authzid = if authzid.is_empty() {
        None
    } else {
        Some(decode_saslname(attr(Some(authzid), 'a')?)?)
    };
    let gs2_header = s[..s.len() - bare.len()].to_string();
    let mut parts = bare.split(',');
    let first = parts.next();
    if first.is_some_and(|p| p.starts_with("m=")) {
        return Err(invalid("mandatory extensions are not supported"));
    }
    let user = decode_saslname(attr(first, 'n')?)?;
    let nonce = attr(parts.next(), 'r')?;
    if !valid_nonce(nonce) {
        return Err(invalid("invalid client nonce"));
    }
    check_extensions(parts)?;
    if authzid.is_some_and(|a| a != user) {
        return Err(ScramError::AuthorizationIdMismatch);
    }
    Ok(ClientFirst {
        gs2_header,
        user,
        nonce: nonce.to_string(),
        bare: bare.to_string(),
    })
}

struct ClientFinal<'a> {
    channel_binding: Vec<u8>,
    nonce: &'a str,
    without_proof: &'a str,
    proof: Vec<u8>,
}

fn parse_client_final(s: &str) -> Result<ClientFinal<'_>, ScramError> {
    let idx = s
        .rfind(",p=")
        .ok_or_else(|| invalid("missing client proof"))?;
    let without_proof = &s[..idx];
    let proof = b64_decode("client proof", &s[idx + 3..])?;
    let mut parts = without_proof.split(',');
    let channel_binding = b64_decode("channel binding", attr(parts.next(), 'c')?)?;
    let nonce = attr(parts.next(), 'r')?;
    check_extensions(parts)?;
    Ok(ClientFinal {
        channel_binding,
        nonce,
        without_proof,
        proof,
    })
}

fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

enum ServerState {
    Initial,
    SentFirst {
        user: String,
        /// `None` for an unknown user: the exchange goes on and fails at the final step.
        credential: Option<ScramCredential>,
        gs2_header: String,
        nonce: String,
        client_first_bare: String,
        server_first: String,
    },
    Done,
}

/// The server side of one SCRAM exchange.
pub struct ScramServer {
    mechanism: ScramMechanism,
    fake_secret: Vec<u8>,
    state: ServerState,
    server_nonce: Option<String>,
}

impl ScramServer {
    /// `fake_secret` keys the fake salts announced for unknown users; keep it stable for a
    /// server (a random value made at start-up) so that repeated attempts see the same salt.
    pub fn new(mechanism: ScramMechanism, fake_secret: &[u8]) -> Self {
        ScramServer {
            mechanism,
            fake_secret: fake_secret.to_vec(),
            state: ServerState::Initial,
            server_nonce: None,
        }
    }

    pub fn mechanism(&self) -> ScramMechanism {
        self.mechanism
    }

    #[cfg(test)]
    fn with_server_nonce(mut self, nonce: &str) -> Self {
        self.server_nonce = Some(nonce.to_string());
        self
    }

    /// Handles client-first and returns server-first. `lookup` gets the user name and returns
    /// its credential for this mechanism, or `None` if there is none.
    pub fn client_first(
        &mut self,
        msg: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
    ) -> Result<Vec<u8>, ScramError> {
        if !matches!(self.state, ServerState::Initial) {
            self.state = ServerState::Done;
            return Err(ScramError::OutOfOrder);
        }
        self.state = ServerState::Done;
        let cf = parse_client_first(msg)?;
        let credential = lookup(&cf.user);
        if let Some(c) = &credential {
            if c.iterations < MIN_ITERATIONS {
                return Err(ScramError::BadCredential(format!(
                    "Iterations {} is less than the minimum {} for {}",
                    c.iterations, MIN_ITERATIONS, self.mechanism
                )));
            }
        }
        let (salt, iterations) = match &credential {
            Some(c) => (c.salt.clone(), c.iterations),
            None => {
                let mut salt = self
                    .mechanism
                    .hmac(&self.fake_secret, &[b"fake salt\0", cf.user.as_bytes()]);
                salt.truncate(SALT_LEN);
                (salt, FAKE_ITERATIONS)
            }
        };
        let server_nonce = self.server_nonce.take().unwrap_or_else(random_nonce);
        let nonce = format!("{}{}", cf.nonce, server_nonce);
        let server_first = format!("r={nonce},s={},i={iterations}", B64.encode(&salt));
        self.state = ServerState::SentFirst {
            user: cf.user,
            credential,
            gs2_header: cf.gs2_header,
            nonce,
            client_first_bare: cf.bare,
            server_first: server_first.clone(),
        };
        Ok(server_first.into_bytes())
    }

    /// Handles client-final; on success returns server-final and the authenticated user name.
    pub fn client_final(&mut self, msg: &[u8]) -> Result<(Vec<u8>, String), ScramError> {
        let state = std::mem::replace(&mut self.state, ServerState::Done);
        let ServerState::SentFirst {
            user,
            credential,
            gs2_header,
            nonce,
            client_first_bare,
            server_first,
        } = state
        else {
            return Err(ScramError::OutOfOrder);
        };
        let s = utf8(msg)?;
        let cf = parse_client_final(s)?;
        if cf.channel_binding != gs2_header.as_bytes() {
            return Err(invalid("invalid channel binding"));
        }
        // Kafka accepts a final nonce that ends with the combined nonce: librdkafka before 2.1
        // sends its own nonce once more in front of it. The proof still covers the message as
        // sent.
        if !cf.nonce.ends_with(nonce.as_str()) {
            return Err(invalid("invalid nonce in the final client message"));
        }
        let m = self.mechanism;
        let auth_message = format!("{client_first_bare},{server_first},{}", cf.without_proof);
        // An unknown user gets a key no proof can match; the same work is done either way.
        let (stored_key, server_key) = match &credential {
            Some(c) => (c.stored_key.clone(), c.server_key.clone()),
            None => (
                m.hmac(&self.fake_secret, &[b"fake stored key\0", user.as_bytes()]),
                Vec::new(),
            ),
        };
        let client_signature = m.hmac(&stored_key, &[auth_message.as_bytes()]);
        let proof_ok = cf.proof.len() == client_signature.len() && {
            let client_key = xor(&cf.proof, &client_signature);
            bool::from(m.hash(&client_key).ct_eq(&stored_key))
        };
        if !proof_ok || credential.is_none() {
            return Err(ScramError::InvalidCredentials);
        }
        let server_signature = m.hmac(&server_key, &[auth_message.as_bytes()]);
        Ok((
            format!("v={}", B64.encode(server_signature)).into_bytes(),
            user,
        ))
    }
}

enum ClientState {
    Initial,
    SentFinal { server_signature: Vec<u8> },
    Done,
}

/// The client side of one SCRAM exchange.
pub struct ScramClient {
    mechanism: ScramMechanism,
    user: String,
    password: String,
    nonce: String,
    state: ClientState,
}

impl ScramClient {
    pub fn new(mechanism: ScramMechanism, user: &str, password: &str) -> Self {
        Self::with_nonce(mechanism, user, password, random_nonce())
    }

    fn with_nonce(mechanism: ScramMechanism, user: &str, password: &str, nonce: String) -> Self {
        ScramClient {
            mechanism,
            user: user.to_string(),
            password: password.to_string(),
            nonce,
            state: ClientState::Initial,
        }
    }

    fn client_first_bare(&self) -> String {
        format!("n={},r={}", encode_saslname(&self.user), self.nonce)
    }

    /// client-first: `n,,n=<user>,r=<nonce>`.
    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare()).into_bytes()
    }

    /// Handles server-first and returns client-final.
    pub fn server_first(&mut self, msg: &[u8]) -> Result<Vec<u8>, ScramError> {
        if !matches!(self.state, ClientState::Initial) {
            self.state = ClientState::Done;
            return Err(ScramError::OutOfOrder);
        }
        self.state = ClientState::Done;
        let s = utf8(msg)?;
        let mut parts = s.split(',');
        let first = parts.next();
        if first.is_some_and(|p| p.starts_with("m=")) {
            return Err(invalid("mandatory extensions are not supported"));
        }
        let nonce = attr(first, 'r')?;
        if !valid_nonce(nonce) || !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len()
        {
            return Err(invalid(
                "invalid server nonce: it does not start with the client nonce",
            ));
        }
        let salt = b64_decode("salt", attr(parts.next(), 's')?)?;
        let iterations: i32 = attr(parts.next(), 'i')?
            .parse()
            .map_err(|_| invalid("invalid iteration count"))?;
        check_extensions(parts)?;
        if iterations < MIN_ITERATIONS {
            return Err(ScramError::BadCredential(format!(
                "Requested iterations {iterations} is less than the minimum {MIN_ITERATIONS} for {}",
                self.mechanism
            )));
        }
        if iterations > MAX_ITERATIONS {
            return Err(ScramError::BadCredential(format!(
                "Requested iterations {iterations} is more than the maximum {MAX_ITERATIONS} for {}",
                self.mechanism
            )));
        }
        let m = self.mechanism;
        let salted = salted_password(m, &self.password, &salt, iterations);
        let client_key = m.hmac(&salted, &[b"Client Key"]);
        let stored_key = m.hash(&client_key);
        let server_key = m.hmac(&salted, &[b"Server Key"]);
        let without_proof = format!("c={},r={nonce}", B64.encode("n,,"));
        let auth_message = format!("{},{s},{without_proof}", self.client_first_bare());
        let client_signature = m.hmac(&stored_key, &[auth_message.as_bytes()]);
        let proof = xor(&client_key, &client_signature);
        let server_signature = m.hmac(&server_key, &[auth_message.as_bytes()]);
        self.state = ClientState::SentFinal { server_signature };
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks server-final: the server proves it knows the credential.
    pub fn server_final(&self, msg: &[u8]) -> Result<(), ScramError> {
        let ClientState::SentFinal { server_signature } = &self.state else {
            return Err(ScramError::OutOfOrder);
        };
        let s = utf8(msg)?;
        let first = s.split(',').next().unwrap_or_default();
        if let Some(e) = first.strip_prefix("e=") {
            return Err(ScramError::ServerError(e.to_string()));
        }
        let v = b64_decode("server signature", attr(Some(first), 'v')?)?;
        if bool::from(v.ct_eq(server_signature)) {
            Ok(())
        } else {
            Err(ScramError::InvalidServerSignature)
        }
    }
}

#[cfg(test)]
mod tests;
