//! Kafka API handlers. [`handle`] decodes one request frame and dispatches it; each handler
//! turns a request into a [`Reply`]. Handlers run in request order on the connection's reader;
//! anything that must wait (a fetch long-poll) is returned as [`Reply::Later`].

mod admin;
mod api_versions;
mod configs;
mod fetch;
mod group;
mod list_offsets;
mod meta;
mod produce;

use bytes::{BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Encodable, StrBytes};
use runnel_protocol::frame::{self, RequestError};

use crate::server::{ready, PendingResponse};
use crate::SharedBroker;

/// What a handler produced. It lives for one dispatch on the stack, so the size difference
/// between an inline response and a boxed future does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Reply {
    Now(ResponseKind),
    Later(BoxFuture<'static, ResponseKind>),
    /// Produce with acks=0: the client expects no response.
    NoResponse,
}

/// Decodes and handles one request frame. An error means the connection must be closed (with
/// the error as the logged reason), as Kafka does for requests it cannot parse.
pub fn handle(
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
            // Kafka's fallback: a v0 ApiVersions body with UNSUPPORTED_VERSION and our ranges,
            // so the client can retry with a version we know.
            let body = api_versions::unsupported_version_response();
            let bytes = encode_response(prefix.correlation_id, ApiKey::ApiVersions, 0, &body)?;
            return Ok(Some(ready(Some(bytes))));
        }
        Err(e) => return Err(e),
    };
    let api_key = req.api_key;
    let version = req.header.request_api_version;
    let correlation_id = req.header.correlation_id;
    metrics::counter!("runnel_requests_total", "api" => api_name(api_key)).increment(1);
    let reply = dispatch(broker, version, req.header.client_id.as_ref(), req.body);
    match reply {
        Reply::NoResponse => Ok(Some(ready(None))),
        Reply::Now(body) => {
            let bytes = encode_response(correlation_id, api_key, version, &body)?;
            Ok(Some(ready(Some(bytes))))
        }
        Reply::Later(fut) => Ok(Some(Box::pin(async move {
            let body = fut.await;
            match encode_response(correlation_id, api_key, version, &body) {
                Ok(b) => Some(b),
                Err(e) => {
                    tracing::error!(api = api_name(api_key), version, error = %e, "cannot encode response");
                    None
                }
            }
        }))),
    }
}

fn dispatch(
    broker: &SharedBroker,
    version: i16,
    client_id: Option<&StrBytes>,
    body: RequestKind,
) -> Reply {
    match body {
        RequestKind::ApiVersions(r) => {
            Reply::Now(ResponseKind::ApiVersions(api_versions::handle(r, version)))
        }
        RequestKind::Metadata(r) => {
            Reply::Now(ResponseKind::Metadata(meta::handle(broker, r, version)))
        }
        RequestKind::Produce(r) => produce::handle(broker, r, version),
        RequestKind::Fetch(r) => fetch::handle(broker, r, version),
        RequestKind::ListOffsets(r) => Reply::Now(ResponseKind::ListOffsets(list_offsets::handle(
            broker, r, version,
        ))),
        RequestKind::CreateTopics(r) => Reply::Now(ResponseKind::CreateTopics(
            admin::create_topics(broker, r, version),
        )),
        RequestKind::DeleteTopics(r) => Reply::Now(ResponseKind::DeleteTopics(
            admin::delete_topics(broker, r, version),
        )),
        RequestKind::CreatePartitions(r) => Reply::Now(ResponseKind::CreatePartitions(
            admin::create_partitions(broker, r, version),
        )),
        RequestKind::DeleteRecords(r) => Reply::Now(ResponseKind::DeleteRecords(
            admin::delete_records(broker, r, version),
        )),
        RequestKind::DescribeCluster(r) => Reply::Now(ResponseKind::DescribeCluster(
            admin::describe_cluster(broker, r, version),
        )),
        RequestKind::InitProducerId(r) => Reply::Now(ResponseKind::InitProducerId(
            admin::init_producer_id(broker, r, version),
        )),
        RequestKind::DescribeConfigs(r) => Reply::Now(ResponseKind::DescribeConfigs(
            configs::describe(broker, r, version),
        )),
        RequestKind::AlterConfigs(r) => Reply::Now(ResponseKind::AlterConfigs(configs::alter(
            broker, r, version,
        ))),
        RequestKind::IncrementalAlterConfigs(r) => Reply::Now(
            ResponseKind::IncrementalAlterConfigs(configs::incremental_alter(broker, r, version)),
        ),
        RequestKind::FindCoordinator(r) => Reply::Now(ResponseKind::FindCoordinator(
            group::find_coordinator(broker, r, version),
        )),
        RequestKind::JoinGroup(r) => group::join_group(broker, r, version, client_id),
        RequestKind::SyncGroup(r) => group::sync_group(broker, r, version),
        RequestKind::Heartbeat(r) => Reply::Now(ResponseKind::Heartbeat(group::heartbeat(
            broker, r, version,
        ))),
        RequestKind::LeaveGroup(r) => Reply::Now(ResponseKind::LeaveGroup(group::leave_group(
            broker, r, version,
        ))),
        RequestKind::OffsetCommit(r) => Reply::Now(ResponseKind::OffsetCommit(
            group::offset_commit(broker, r, version),
        )),
        RequestKind::OffsetFetch(r) => Reply::Now(ResponseKind::OffsetFetch(group::offset_fetch(
            broker, r, version,
        ))),
        RequestKind::ListGroups(r) => Reply::Now(ResponseKind::ListGroups(group::list_groups(
            broker, r, version,
        ))),
        RequestKind::DescribeGroups(r) => Reply::Now(ResponseKind::DescribeGroups(
            group::describe_groups(broker, r, version),
        )),
        RequestKind::DeleteGroups(r) => Reply::Now(ResponseKind::DeleteGroups(
            group::delete_groups(broker, r, version),
        )),
        RequestKind::OffsetDelete(r) => Reply::Now(ResponseKind::OffsetDelete(
            group::offset_delete(broker, r, version),
        )),
        // decode_request only returns APIs in the version table, all of which are matched above.
        other => {
            tracing::error!(request = ?std::mem::discriminant(&other), "request of an API with no handler");
            Reply::NoResponse
        }
    }
}

/// Encodes a response frame: length prefix, response header, body.
pub fn encode_response(
    correlation_id: i32,
    api_key: ApiKey,
    version: i16,
    body: &ResponseKind,
) -> Result<Bytes, RequestError> {
    let fail = |e: String| RequestError::Malformed {
        prefix: frame::HeaderPrefix {
            api_key: api_key as i16,
            api_version: version,
            correlation_id,
        },
        api_key,
        version,
        reason: format!("response encoding failed: {e}"),
    };
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header
        .encode(&mut buf, api_key.response_header_version(version))
        .map_err(|e| fail(format!("{e:#}")))?;
    body.encode(&mut buf, version)
        .map_err(|e| fail(format!("{e:#}")))?;
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

pub fn api_name(k: ApiKey) -> &'static str {
    match k {
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Metadata => "Metadata",
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::DeleteRecords => "DeleteRecords",
        ApiKey::InitProducerId => "InitProducerId",
        ApiKey::DescribeConfigs => "DescribeConfigs",
        ApiKey::AlterConfigs => "AlterConfigs",
        ApiKey::CreatePartitions => "CreatePartitions",
        ApiKey::IncrementalAlterConfigs => "IncrementalAlterConfigs",
        ApiKey::DescribeCluster => "DescribeCluster",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::JoinGroup => "JoinGroup",
        ApiKey::SyncGroup => "SyncGroup",
        ApiKey::Heartbeat => "Heartbeat",
        ApiKey::LeaveGroup => "LeaveGroup",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::ListGroups => "ListGroups",
        ApiKey::DescribeGroups => "DescribeGroups",
        ApiKey::DeleteGroups => "DeleteGroups",
        ApiKey::OffsetDelete => "OffsetDelete",
        _ => "other",
    }
}

pub(crate) fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}
