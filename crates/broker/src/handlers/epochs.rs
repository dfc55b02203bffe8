//! OffsetForLeaderEpoch (KIP-101, KIP-320): where a leader epoch ends in the leader's log.
//! Consumers (librdkafka, the Java client) ask it after a leader change to validate their
//! position: an end offset below the position means the log was truncated under them.
//!
//! Served by the leader only, with the `current_leader_epoch` checks of Fetch; the answer is
//! the largest epoch at or below the requested one known to the leader's epoch cache, and the
//! offset where it ends (the log end offset for the latest epoch); `(-1, -1)` for an epoch
//! above the latest.

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::leader_partition;
use crate::auth::Authorizer;
use crate::context::RequestContext;
use crate::fence::Fence;
use crate::metadata::MetadataView;
use crate::replica::ReplicaManager;
use kafka_protocol::error::ResponseError;
use runnel_security::acl::{AclOperation, ResourceType};

pub fn handle(
    partitions: &ReplicaManager,
    fence: &Fence,
    metadata: &MetadataView,
    authorizer: &Authorizer,
    ctx: &RequestContext,
    req: OffsetForLeaderEpochRequest,
    _version: i16,
) -> OffsetForLeaderEpochResponse {
    let image = metadata.serving_image();
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.topic.0.to_string();
            let allowed = authorizer.authorize(
                &image.image,
                ctx,
                AclOperation::Describe,
                ResourceType::Topic,
                &name,
            );
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let mut r = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    if !allowed {
                        r.error_code = ResponseError::TopicAuthorizationFailed.code();
                        return r;
                    }
                    match leader_partition(
                        partitions,
                        fence,
                        &image.image,
                        &name,
                        p.partition,
                        p.current_leader_epoch,
                    ) {
                        Ok(partition) => {
                            let (epoch, end) = partition.end_offset_for_epoch(p.leader_epoch);
                            r.leader_epoch = epoch;
                            r.end_offset = end;
                        }
                        Err(e) => r.error_code = e.code(),
                    }
                    r
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
