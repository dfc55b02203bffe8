//! Kafka API handlers. [`handle`] decodes one request frame and dispatches it; each handler
//! turns a request into a [`Reply`]. Handlers run in request order on the connection's reader;
//! anything that must wait (a fetch long-poll) is returned as [`Reply::Later`].

mod acls;
mod admin;
mod api_versions;
pub use api_versions::unsupported_version_response as unsupported_api_versions_response;
#[cfg(test)]
mod cluster_tests;
mod configs;
mod elect_leaders;
mod epochs;
mod fetch;
mod group;
mod list_offsets;
mod meta;
mod produce;
mod quorum;
mod scram;

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, BrokerId, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Encodable, StrBytes};
use runnel_protocol::frame::{self, RequestError};

use runnel_controller::image::BrokerRegistration;
use runnel_controller::records::BrokerEndpoint;
use runnel_controller::MetadataImage;

pub use crate::topics::{is_reserved_topic, validate_topic_name};

pub use crate::context::api_name;
use crate::context::{RequestContext, LISTENER_NAME};
pub use crate::replica::check_leader;
use crate::replica::Partition;
use crate::{Broker, SharedBroker};

/// What a handler produced. It lives for one dispatch on the stack, so the size difference
/// between an inline response and a boxed future does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Reply {
    Now(ResponseKind),
    Later(BoxFuture<'static, ResponseKind>),
    /// Produce with acks=0: the client expects no response.
    NoResponse,
}

/// A response still being computed, in the connection's response queue. `None` means no
/// response is sent (Produce with acks=0).
pub type PendingResponse = BoxFuture<'static, Option<Bytes>>;

/// A response that is already complete.
pub fn ready(bytes: Option<Bytes>) -> PendingResponse {
    Box::pin(async move { bytes })
}

/// Handles one decoded request: dispatches it and turns the handler's [`Reply`] into the
/// encoded response the connection queues. An error means the connection must be closed.
pub fn handle(
    broker: &SharedBroker,
    ctx: &RequestContext,
    body: RequestKind,
) -> Result<Option<PendingResponse>, RequestError> {
    let api_key = ctx.api_key;
    let version = ctx.api_version;
    let correlation_id = ctx.correlation_id;
    metrics::counter!("runnel_requests_total", "api" => api_name(api_key)).increment(1);
    let reply = dispatch(broker, ctx, body);
    finish(reply, correlation_id, api_key, version)
}

/// Encodes a [`Reply`] (now, or once its future completes).
pub(crate) fn finish(
    reply: Reply,
    correlation_id: i32,
    api_key: ApiKey,
    version: i16,
) -> Result<Option<PendingResponse>, RequestError> {
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

fn dispatch(broker: &SharedBroker, ctx: &RequestContext, body: RequestKind) -> Reply {
    let version = ctx.api_version;
    match body {
        RequestKind::ApiVersions(r) => {
            Reply::Now(ResponseKind::ApiVersions(api_versions::handle(r, version)))
        }
        RequestKind::Metadata(r) => meta::handle(broker, ctx, r, version),
        RequestKind::Produce(r) => produce::handle(broker, ctx, r, version),
        RequestKind::Fetch(r) => fetch::handle(broker, ctx, r, version),
        RequestKind::ListOffsets(r) => Reply::Now(ResponseKind::ListOffsets(list_offsets::handle(
            broker, ctx, r, version,
        ))),
        RequestKind::OffsetForLeaderEpoch(r) => Reply::Now(ResponseKind::OffsetForLeaderEpoch(
            epochs::handle(broker, ctx, r, version),
        )),
        RequestKind::CreateTopics(r) => admin::create_topics(broker, ctx, r, version),
        RequestKind::DeleteTopics(r) => admin::delete_topics(broker, ctx, r, version),
        RequestKind::CreatePartitions(r) => admin::create_partitions(broker, ctx, r, version),
        RequestKind::DeleteRecords(r) => Reply::Now(ResponseKind::DeleteRecords(
            admin::delete_records(broker, ctx, r, version),
        )),
        RequestKind::DescribeCluster(r) => Reply::Now(ResponseKind::DescribeCluster(
            admin::describe_cluster(broker, ctx, r, version),
        )),
        RequestKind::InitProducerId(r) => admin::init_producer_id(broker, ctx, r, version),
        RequestKind::DescribeConfigs(r) => Reply::Now(ResponseKind::DescribeConfigs(
            configs::describe(broker, ctx, r, version),
        )),
        RequestKind::AlterConfigs(r) => configs::alter(broker, ctx, r, version),
        RequestKind::IncrementalAlterConfigs(r) => {
            configs::incremental_alter(broker, ctx, r, version)
        }
        RequestKind::FindCoordinator(r) => group::find_coordinator(broker, ctx, r, version),
        RequestKind::DescribeQuorum(r) => quorum::handle(broker, ctx, r, version),
        RequestKind::ElectLeaders(r) => elect_leaders::handle(broker, ctx, r, version),
        RequestKind::CreateAcls(r) => acls::create_acls(broker, ctx, r, version),
        RequestKind::DeleteAcls(r) => acls::delete_acls(broker, ctx, r, version),
        RequestKind::DescribeAcls(r) => acls::describe_acls(broker, ctx, r, version),
        RequestKind::DescribeUserScramCredentials(r) => {
            scram::describe_user_scram_credentials(broker, ctx, r, version)
        }
        RequestKind::AlterUserScramCredentials(r) => {
            scram::alter_user_scram_credentials(broker, ctx, r, version)
        }
        RequestKind::JoinGroup(r) => group::join_group(broker, ctx, r, version),
        RequestKind::SyncGroup(r) => group::sync_group(broker, ctx, r, version),
        RequestKind::Heartbeat(r) => Reply::Now(ResponseKind::Heartbeat(group::heartbeat(
            broker, ctx, r, version,
        ))),
        RequestKind::LeaveGroup(r) => Reply::Now(ResponseKind::LeaveGroup(group::leave_group(
            broker, ctx, r, version,
        ))),
        RequestKind::OffsetCommit(r) => group::offset_commit(broker, ctx, r, version),
        RequestKind::OffsetFetch(r) => Reply::Now(ResponseKind::OffsetFetch(group::offset_fetch(
            broker, ctx, r, version,
        ))),
        RequestKind::ListGroups(r) => Reply::Now(ResponseKind::ListGroups(group::list_groups(
            broker, ctx, r, version,
        ))),
        RequestKind::DescribeGroups(r) => Reply::Now(ResponseKind::DescribeGroups(
            group::describe_groups(broker, ctx, r, version),
        )),
        RequestKind::DeleteGroups(r) => Reply::Now(ResponseKind::DeleteGroups(
            group::delete_groups(broker, ctx, r, version),
        )),
        RequestKind::OffsetDelete(r) => Reply::Now(ResponseKind::OffsetDelete(
            group::offset_delete(broker, ctx, r, version),
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
    // Legacy versions are answered in the layout of the first version kafka-protocol has.
    let version = runnel_protocol::legacy::response_version(api_key, version);
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

pub(crate) fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// The cluster id of the image (empty until the quorum has bootstrapped it).
pub fn cluster_id(image: &MetadataImage) -> String {
    image.cluster_id().unwrap_or_default().to_string()
}

/// The registered brokers that are not fenced: those clients may use and that may hold
/// leaderships and replicas.
pub(crate) fn live_brokers(image: &MetadataImage) -> impl Iterator<Item = &BrokerRegistration> {
    image.brokers().filter(|b| !b.fenced)
}

/// The client endpoint of a registered broker: the one of the listener the request arrived
/// on (Kafka gives clients the addresses of their own listener), else PLAINTEXT, else the
/// first. A broker without the connection's listener falls back the same way rather than
/// disappearing from the cluster.
pub(crate) fn client_endpoint<'a>(
    b: &'a BrokerRegistration,
    listener: &str,
) -> Option<&'a BrokerEndpoint> {
    let by_name = |name: &str| b.endpoints.iter().find(|e| e.name == name);
    by_name(listener)
        .or_else(|| by_name(LISTENER_NAME))
        .or(b.endpoints.first())
}

/// The endpoint of an unfenced broker, as clients should reach it.
pub(crate) fn live_endpoint<'a>(
    image: &'a MetadataImage,
    id: i32,
    listener: &str,
) -> Option<(&'a BrokerRegistration, &'a BrokerEndpoint)> {
    let b = image.broker(id).filter(|b| !b.fenced)?;
    client_endpoint(b, listener).map(|e| (b, e))
}

/// The endpoints of the live brokers named in leader hints (KIP-951), for the `node_endpoints`
/// of Produce and Fetch responses; `make` builds the response's own endpoint type from
/// (node id, host, port, rack).
pub(crate) fn hint_endpoints<T>(
    image: &MetadataImage,
    ids: impl IntoIterator<Item = i32>,
    listener: &str,
    make: impl Fn(BrokerId, StrBytes, i32, Option<StrBytes>) -> T,
) -> Vec<T> {
    ids.into_iter()
        .filter_map(|id| live_endpoint(image, id, listener))
        .map(|(b, e)| {
            make(
                BrokerId(b.broker_id),
                s(&e.host),
                i32::from(e.port),
                b.rack.as_deref().map(s),
            )
        })
        .collect()
}

/// How long an admin request waits for the controller: the request's own timeout, within
/// bounds (a zero timeout would make every request fail; a huge one would park it forever).
pub(crate) fn admin_timeout(timeout_ms: i32) -> Duration {
    Duration::from_millis(timeout_ms.clamp(5_000, 120_000) as u64)
}

/// The partition, if this node leads it: NOT_LEADER_OR_FOLLOWER when the topic partition
/// exists but is led elsewhere (or not opened here yet) or while this broker is fenced (see
/// [`crate::Fence`]), UNKNOWN_TOPIC_OR_PARTITION when the image has no such partition (or it is
/// the reserved metadata topic), and the epoch errors of [`check_leader`].
pub(crate) fn leader_partition(
    broker: &Broker,
    image: &MetadataImage,
    topic: &str,
    partition: i32,
    current_leader_epoch: i32,
) -> Result<Arc<Partition>, ResponseError> {
    if is_reserved_topic(topic) {
        return Err(ResponseError::UnknownTopicOrPartition);
    }
    if broker.fence.is_fenced() {
        return Err(ResponseError::NotLeaderOrFollower);
    }
    match crate::reconcile::hosted_for_request(broker, topic, partition) {
        Some(p) => {
            check_leader(p.leadership(), current_leader_epoch)?;
            Ok(p)
        }
        None => {
            let exists = image
                .topic_by_name(topic)
                .is_some_and(|t| t.partitions.contains_key(&partition));
            if exists {
                Err(ResponseError::NotLeaderOrFollower)
            } else {
                Err(ResponseError::UnknownTopicOrPartition)
            }
        }
    }
}

/// The current leader and leader epoch of a partition as the image has it (KIP-951 hints).
pub(crate) fn leader_hint(
    image: &MetadataImage,
    topic: &str,
    partition: i32,
) -> Option<(i32, i32)> {
    let p = image.topic_by_name(topic)?.partitions.get(&partition)?;
    Some((p.leader, p.leader_epoch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::Leadership;

    #[test]
    fn leader_epoch_checks_follow_kafka() {
        let leader = Leadership {
            leader: 1,
            leader_epoch: 5,
            partition_epoch: 7,
            is_leader: true,
        };
        assert_eq!(check_leader(leader, -1), Ok(()));
        assert_eq!(check_leader(leader, 5), Ok(()));
        assert_eq!(
            check_leader(leader, 4),
            Err(ResponseError::FencedLeaderEpoch)
        );
        assert_eq!(
            check_leader(leader, 6),
            Err(ResponseError::UnknownLeaderEpoch)
        );
        let follower = Leadership {
            leader: 2,
            is_leader: false,
            ..leader
        };
        assert_eq!(
            check_leader(follower, -1),
            Err(ResponseError::NotLeaderOrFollower)
        );
        assert_eq!(
            check_leader(follower, 5),
            Err(ResponseError::NotLeaderOrFollower)
        );
        // An old epoch is fenced even on a follower: the client's metadata is stale.
        assert_eq!(
            check_leader(follower, 3),
            Err(ResponseError::FencedLeaderEpoch)
        );
        assert_eq!(
            check_leader(Leadership::NONE, -1),
            Err(ResponseError::NotLeaderOrFollower)
        );
    }

    #[test]
    fn admin_timeouts_are_bounded() {
        assert_eq!(admin_timeout(0), Duration::from_secs(5));
        assert_eq!(admin_timeout(30_000), Duration::from_secs(30));
        assert_eq!(admin_timeout(i32::MAX), Duration::from_secs(120));
        assert_eq!(admin_timeout(-7), Duration::from_secs(5));
    }
}
