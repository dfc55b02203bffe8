//! One client connection's request path, between the socket loop in [`crate::server`] and the
//! handlers: frame decoding, the connection's [`ConnectionContext`] (listener, peer, principal,
//! client software), and the [`RequestContext`] each request is dispatched with.

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestKind};
use runnel_protocol::frame::{self, RequestError};

use crate::context::{ClientSoftware, ConnectionContext, RequestContext};
use crate::handlers::{self, PendingResponse};
use crate::SharedBroker;

/// The request path of one connection.
pub struct ClientConnection {
    ctx: ConnectionContext,
}

impl ClientConnection {
    pub fn new(ctx: ConnectionContext) -> ClientConnection {
        ClientConnection { ctx }
    }

    pub fn context(&self) -> &ConnectionContext {
        &self.ctx
    }

    /// Decodes and handles one request frame. An error means the connection must be closed
    /// (with the error as the logged reason), as Kafka does for requests it cannot parse.
    pub fn on_frame(
        &mut self,
        broker: &SharedBroker,
        frame: Bytes,
    ) -> Result<Option<PendingResponse>, RequestError> {
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
                let bytes = handlers::encode_response(
                    prefix.correlation_id,
                    ApiKey::ApiVersions,
                    0,
                    &body,
                )?;
                return Ok(Some(handlers::ready(Some(bytes))));
            }
            Err(e) => return Err(e),
        };
        if let RequestKind::ApiVersions(r) = &req.body {
            // KIP-511: the client names its software; kept for the connection's lifetime.
            if !r.client_software_name.is_empty() {
                self.ctx.client_software = Some(ClientSoftware {
                    name: r.client_software_name.to_string(),
                    version: r.client_software_version.to_string(),
                });
            }
        }
        let ctx = RequestContext::new(
            self.ctx.clone(),
            req.api_key,
            req.header.request_api_version,
            req.header.correlation_id,
            req.header.client_id.as_ref().map(|c| c.to_string()),
        );
        handlers::handle(broker, &ctx, req.body)
    }
}
