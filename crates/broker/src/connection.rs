//! One client connection's request path, between the socket loop in [`crate::server`] and the
//! handlers: frame decoding, the SASL gate, the connection's [`ConnectionContext`] (listener,
//! peer, principal, client software), and the [`RequestContext`] each request is dispatched
//! with.
//!
//! On a SASL listener only ApiVersions, SaslHandshake and SaslAuthenticate are served until the
//! client has authenticated; anything else closes the connection, as in Kafka. A failed
//! authentication is answered after `connection.failed.authentication.delay.ms` and the
//! connection is closed. With `connections.max.reauth.ms`, a session that passed its lifetime
//! without re-authenticating is closed at its next request (KIP-368).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, RequestKind, ResponseKind, SaslAuthenticateResponse, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use runnel_protocol::frame::{self, RequestError};

use crate::auth::sasl::{SaslListener, SaslSession, Step};
use crate::broker::SharedBroker;
use crate::context::{ClientSoftware, ConnectionContext, RequestContext};
use crate::handlers::{self, PendingResponse};
use runnel_protocol::response_frame::ResponseFrame;

/// The request path of one connection.
pub struct ClientConnection {
    ctx: ConnectionContext,
    /// The SASL settings and state, on SASL listeners.
    sasl: Option<(Arc<SaslListener>, SaslSession)>,
    /// Set when the connection must close once the responses queued so far are written.
    closing: Option<String>,
}

impl ClientConnection {
    pub fn new(ctx: ConnectionContext, sasl: Option<Arc<SaslListener>>) -> ClientConnection {
        ClientConnection {
            ctx,
            sasl: sasl.map(|cfg| (cfg, SaslSession::new())),
            closing: None,
        }
    }

    pub fn context(&self) -> &ConnectionContext {
        &self.ctx
    }

    /// The largest frame to accept next: `sasl.server.max.receive.size` until a SASL client has
    /// authenticated (as Kafka, so an unauthenticated peer cannot make the broker buffer a
    /// large request), `socket_max` otherwise.
    pub fn max_frame(&self, socket_max: usize) -> usize {
        match &self.sasl {
            Some((cfg, session)) if session.principal().is_none() => {
                cfg.max_receive_size.min(socket_max)
            }
            _ => socket_max,
        }
    }

    /// Why the connection must close after the responses queued so far, if it must.
    pub fn closing(&self) -> Option<&str> {
        self.closing.as_deref()
    }

    /// Handles one request frame. `Err` is the reason to close the connection at once, as
    /// Kafka does for requests it cannot parse or may not serve.
    pub fn on_frame(
        &mut self,
        broker: &SharedBroker,
        frame: Bytes,
    ) -> Result<Option<PendingResponse>, String> {
        if self.closing.is_some() {
            return Ok(None);
        }
        if let Some((_, session)) = &self.sasl {
            if session.expects_raw_token() {
                return Ok(Some(self.raw_token(broker, frame)));
            }
        }
        let frame_bytes = frame.len();
        let req = match frame::decode_request(frame) {
            Ok(r) => r,
            Err(RequestError::UnsupportedVersion {
                prefix,
                api_key: ApiKey::ApiVersions,
                ..
            }) => {
                // Kafka's fallback: a v0 ApiVersions body with UNSUPPORTED_VERSION and our
                // ranges, so the client can retry with a version we know.
                let body = handlers::unsupported_api_versions_response();
                let bytes =
                    handlers::encode_response(prefix.correlation_id, ApiKey::ApiVersions, 0, &body)
                        .map_err(|e| e.to_string())?;
                return Ok(Some(handlers::ready(Some(bytes))));
            }
            Err(e) => return Err(e.to_string()),
        };
        let version = req.header.request_api_version;
        let correlation_id = req.header.correlation_id;
        match &req.body {
            RequestKind::ApiVersions(r) => {
                // KIP-511: the client names its software; kept for the connection's lifetime.
                if !r.client_software_name.is_empty() {
                    self.ctx.client_software = Some(ClientSoftware {
                        name: r.client_software_name.to_string(),
                        version: r.client_software_version.to_string(),
                    });
                }
            }
            RequestKind::SaslHandshake(r) => {
                let mechanism = r.mechanism.to_string();
                let resp = self.handshake(&mechanism, version);
                return respond(correlation_id, ApiKey::SaslHandshake, version, resp, None);
            }
            RequestKind::SaslAuthenticate(r) => {
                let token = r.auth_bytes.clone();
                let (resp, delay) = self.authenticate(broker, &token, version);
                return respond(
                    correlation_id,
                    ApiKey::SaslAuthenticate,
                    version,
                    ResponseKind::SaslAuthenticate(resp),
                    delay,
                );
            }
            _ => {
                if let Some((_, session)) = &self.sasl {
                    if session.principal().is_none() {
                        return Err(format!(
                            "{} request before SASL authentication completed",
                            handlers::api_name(req.api_key)
                        ));
                    }
                    if session.expired(Instant::now()) {
                        return Err(
                            "SASL session expired without re-authentication (connections.max.reauth.ms)"
                                .into(),
                        );
                    }
                }
            }
        }
        let mut ctx = RequestContext::new(
            self.ctx.clone(),
            req.api_key,
            version,
            correlation_id,
            req.header.client_id.as_ref().map(|c| c.to_string()),
        );
        ctx.request_bytes = frame_bytes;
        handlers::handle(broker, &ctx, req.body).map_err(|e| e.to_string())
    }

    fn handshake(&mut self, mechanism: &str, version: i16) -> ResponseKind {
        let mut resp = SaslHandshakeResponse::default();
        match &mut self.sasl {
            None => {
                resp.error_code = ResponseError::IllegalSaslState.code();
                self.closing = Some(format!(
                    "SaslHandshake ({mechanism}) on a listener without SASL ({})",
                    self.ctx.security_protocol
                ));
            }
            Some((cfg, session)) => {
                resp.mechanisms = cfg
                    .mechanism_names()
                    .into_iter()
                    .map(StrBytes::from_static_str)
                    .collect();
                if let Err(e) = session.handshake(cfg, mechanism, version) {
                    resp.error_code = e.code();
                    metrics::counter!("runnel_failed_authentication_total").increment(1);
                    self.closing = Some(format!(
                        "SaslHandshake refused ({e:?}): mechanism {mechanism:?}, enabled {:?}",
                        cfg.mechanism_names()
                    ));
                }
            }
        }
        ResponseKind::SaslHandshake(resp)
    }

    /// One SaslAuthenticate; the response and, for a failure, the delay before it is sent.
    fn authenticate(
        &mut self,
        broker: &SharedBroker,
        token: &[u8],
        version: i16,
    ) -> (SaslAuthenticateResponse, Option<Duration>) {
        let mut resp = SaslAuthenticateResponse::default();
        let Some((cfg, session)) = &mut self.sasl else {
            resp.error_code = ResponseError::IllegalSaslState.code();
            resp.error_message = Some(StrBytes::from_static_str(
                "SaslAuthenticate on a listener without SASL",
            ));
            self.closing = Some("SaslAuthenticate on a listener without SASL".into());
            return (resp, None);
        };
        let image = broker.image();
        let step = session.authenticate(
            cfg,
            token,
            |user, m| image.image.scram_credential(user, m).cloned(),
            broker.scram_secret(),
            Instant::now(),
        );
        match step {
            Step::Challenge(bytes) => {
                resp.auth_bytes = Bytes::from(bytes);
                (resp, None)
            }
            Step::Done {
                principal,
                bytes,
                session_lifetime_ms,
            } => {
                metrics::counter!("runnel_successful_authentication_total").increment(1);
                tracing::debug!(peer = ?self.ctx.peer, %principal, listener = %self.ctx.listener, "SASL authentication succeeded");
                self.ctx.principal = Arc::new(principal);
                resp.auth_bytes = Bytes::from(bytes);
                if version >= 1 {
                    resp.session_lifetime_ms = session_lifetime_ms;
                }
                (resp, None)
            }
            Step::Failed {
                code,
                message,
                reason,
            } => {
                metrics::counter!("runnel_failed_authentication_total").increment(1);
                tracing::info!(peer = ?self.ctx.peer, listener = %self.ctx.listener, %reason, "SASL authentication failed");
                resp.error_code = code;
                resp.error_message = Some(StrBytes::from_string(message));
                self.closing = Some(format!("authentication failed: {reason}"));
                (
                    resp,
                    Some(Duration::from_millis(
                        broker.config().failed_authentication_delay_ms,
                    )),
                )
            }
        }
    }

    /// A raw SASL token after SaslHandshake v0: the answer is a raw length-prefixed token; a
    /// failure closes the connection (after the failed-authentication delay), as v0 has no
    /// error field.
    fn raw_token(&mut self, broker: &SharedBroker, token: Bytes) -> PendingResponse {
        let (resp, delay) = self.authenticate(broker, &token, 0);
        let delay = delay.unwrap_or_default();
        let bytes = (resp.error_code == 0).then(|| {
            let mut b = BytesMut::with_capacity(4 + resp.auth_bytes.len());
            b.put_u32(resp.auth_bytes.len() as u32);
            b.extend_from_slice(&resp.auth_bytes);
            ResponseFrame::from(b.freeze())
        });
        PendingResponse::later(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            bytes
        })
    }
}

/// Encodes a SASL response, sent after `delay` when there is one.
fn respond(
    correlation_id: i32,
    api_key: ApiKey,
    version: i16,
    body: ResponseKind,
    delay: Option<Duration>,
) -> Result<Option<PendingResponse>, String> {
    let bytes = handlers::encode_response(correlation_id, api_key, version, &body)
        .map_err(|e| e.to_string())?;
    Ok(Some(match delay {
        None => handlers::ready(Some(bytes)),
        Some(d) => PendingResponse::later(async move {
            tokio::time::sleep(d).await;
            Some(bytes)
        }),
    }))
}
