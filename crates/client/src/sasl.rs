//! SASL authentication of a fresh connection, as Kafka's Java client does it after ApiVersions:
//! SaslHandshake v1 names the mechanism, then the mechanism's messages travel in
//! SaslAuthenticate requests (KIP-152), at the version the broker's ApiVersions offers.
//!
//! PLAIN is one message (RFC 4616); SCRAM-SHA-256/512 are client-first, server-first,
//! client-final and server-final (RFC 5802), checked by `runnel_security::scram::ScramClient`,
//! which also verifies the server's signature.

use anyhow::{anyhow, Result};
use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
};
use kafka_protocol::protocol::StrBytes;
use runnel_security::scram::{ScramClient, ScramMechanism};

use crate::client::{error_name, AuthenticationError, Connection};
use crate::config::{SaslCredentials, SaslMechanism};

const UNSUPPORTED_SASL_MECHANISM: i16 = 33;

fn refused(conn: &Connection, msg: String) -> anyhow::Error {
    AuthenticationError(format!(
        "{}: SASL authentication failed: {msg}",
        conn.addr()
    ))
    .into()
}

/// Authenticates `conn` with `creds` (also to re-authenticate an authenticated connection,
/// KIP-368). Returns the session lifetime the broker announced in ms (0: unlimited). A refusal
/// is an [`AuthenticationError`] carrying the broker's error message.
pub(crate) async fn authenticate(conn: &mut Connection, creds: &SaslCredentials) -> Result<i64> {
    let handshake_version = conn.version_of(ApiKey::SaslHandshake);
    let auth_version = conn.version_of(ApiKey::SaslAuthenticate);
    let (Some(handshake_version), Some(auth_version)) = (handshake_version, auth_version) else {
        return Err(refused(
            conn,
            "the broker does not offer SaslHandshake and SaslAuthenticate (is this listener \
             configured for SASL?)"
                .to_string(),
        ));
    };
    if handshake_version < 1 {
        return Err(refused(
            conn,
            "the broker offers only SaslHandshake v0, without SaslAuthenticate framing".to_string(),
        ));
    }
    let mechanism = creds.mechanism.name();
    let mut req = SaslHandshakeRequest::default();
    req.mechanism = StrBytes::from_static_str(mechanism);
    let resp = conn.exchange(&req, handshake_version).await?;
    match resp.error_code {
        0 => {}
        UNSUPPORTED_SASL_MECHANISM => {
            let enabled: Vec<String> = resp.mechanisms.iter().map(|m| m.to_string()).collect();
            return Err(refused(
                conn,
                format!(
                    "the broker does not enable SASL mechanism {mechanism}; enabled mechanisms \
                     are [{}]",
                    enabled.join(", ")
                ),
            ));
        }
        code => {
            return Err(refused(
                conn,
                format!("SaslHandshake answered {}", error_name(code)),
            ))
        }
    }
    let last = match creds.mechanism {
        SaslMechanism::Plain => {
            let msg = runnel_security::plain::encode(&creds.username, &creds.password);
            authenticate_step(conn, auth_version, msg).await?
        }
        SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
            let m = if creds.mechanism == SaslMechanism::ScramSha256 {
                ScramMechanism::Sha256
            } else {
                ScramMechanism::Sha512
            };
            let mut scram = ScramClient::new(m, &creds.username, &creds.password);
            let server_first = authenticate_step(conn, auth_version, scram.client_first()).await?;
            let client_final = scram
                .server_first(&server_first.auth_bytes)
                .map_err(|e| refused(conn, e.to_string()))?;
            let server_final = authenticate_step(conn, auth_version, client_final).await?;
            scram
                .server_final(&server_final.auth_bytes)
                .map_err(|e| refused(conn, e.to_string()))?;
            server_final
        }
    };
    Ok(last.session_lifetime_ms)
}

/// One SaslAuthenticate round trip; the broker's answer, or its error as a refusal.
async fn authenticate_step(
    conn: &mut Connection,
    version: i16,
    token: Vec<u8>,
) -> Result<SaslAuthenticateResponse> {
    let mut req = SaslAuthenticateRequest::default();
    req.auth_bytes = Bytes::from(token);
    let resp: SaslAuthenticateResponse = conn
        .exchange(&req, version)
        .await
        .map_err(|e| anyhow!(e).context("SaslAuthenticate"))?;
    if resp.error_code != 0 {
        let msg = resp
            .error_message
            .map(|m| m.to_string())
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| error_name(resp.error_code));
        return Err(refused(conn, msg));
    }
    Ok(resp)
}

#[cfg(test)]
mod tests;
