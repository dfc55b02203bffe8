//! DescribeQuorum (KIP-595, KIP-836): the Raft view of the metadata log, topic
//! `__cluster_metadata` partition 0, as the active controller sees it (the request is
//! forwarded there by the quorum member). Versions 0-1: v1 adds the replicas' last fetch and
//! last caught-up timestamps.

use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_quorum_response::{PartitionData, ReplicaState, TopicData};
use kafka_protocol::messages::{
    BrokerId, DescribeQuorumRequest, DescribeQuorumResponse, ResponseKind, TopicName,
};
use runnel_controller::api::{self, QuorumInfo};

use super::AdminServices;
use super::{s, Reply};
use crate::context::RequestContext;
use crate::error;
use runnel_security::acl::{AclOperation, ResourceType, CLUSTER_NAME};

/// The metadata log's topic and partition, as Kafka names them.
pub use crate::topics::METADATA_TOPIC;
const METADATA_PARTITION: i32 = 0;

const QUORUM_TIMEOUT: Duration = Duration::from_secs(10);

pub fn handle(
    svc: &AdminServices,
    ctx: &RequestContext,
    req: DescribeQuorumRequest,
    version: i16,
) -> Reply {
    let image = svc.image();
    if !svc.authorizer.authorize(
        &image.image,
        ctx,
        AclOperation::Describe,
        ResourceType::Cluster,
        CLUSTER_NAME,
    ) {
        // Kafka answers a refused DescribeQuorum with the top-level error and no topics.
        let mut resp = DescribeQuorumResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
        if version >= 2 {
            resp.error_message = Some(s("Cluster authorization failed."));
        }
        return Reply::Now(ResponseKind::DescribeQuorum(resp));
    }
    let svc = svc.clone();
    Reply::Later(Box::pin(async move {
        let info = svc.controller.describe_quorum(QUORUM_TIMEOUT).await;
        if let Err(e) = &info {
            tracing::warn!(error = %e, "DescribeQuorum failed");
        }
        ResponseKind::DescribeQuorum(response(
            req,
            version,
            info.map_err(|e| error::controller_error(&e)),
        ))
    }))
}

/// The response to `req` from the quorum's state (or the error that prevented getting it).
pub fn response(
    req: DescribeQuorumRequest,
    version: i16,
    info: Result<QuorumInfo, ResponseError>,
) -> DescribeQuorumResponse {
    let replica = |r: &api::ReplicaState| {
        let mut out = ReplicaState::default()
            .with_replica_id(BrokerId(r.replica_id))
            .with_log_end_offset(r.log_end_offset);
        if version >= 1 {
            out.last_fetch_timestamp = r.last_fetch_timestamp;
            out.last_caught_up_timestamp = r.last_caught_up_timestamp;
        }
        out
    };
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let known_topic = t.topic_name.0.as_str() == METADATA_TOPIC;
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let out = PartitionData::default().with_partition_index(p.partition_index);
                    if !known_topic || p.partition_index != METADATA_PARTITION {
                        return out
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_leader_id(BrokerId(-1))
                            .with_leader_epoch(-1)
                            .with_high_watermark(-1);
                    }
                    match &info {
                        Ok(q) => out
                            .with_leader_id(BrokerId(q.leader_id))
                            .with_leader_epoch(q.leader_epoch)
                            .with_high_watermark(q.high_watermark)
                            .with_current_voters(q.voters.iter().map(replica).collect())
                            .with_observers(q.observers.iter().map(replica).collect()),
                        Err(e) => out
                            .with_error_code(e.code())
                            .with_leader_id(BrokerId(-1))
                            .with_leader_epoch(-1)
                            .with_high_watermark(-1),
                    }
                })
                .collect();
            TopicData::default()
                .with_topic_name(TopicName(s(t.topic_name.0.as_str())))
                .with_partitions(partitions)
        })
        .collect();
    DescribeQuorumResponse::default().with_topics(topics)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::describe_quorum_request;
    use kafka_protocol::messages::ApiKey;

    use super::*;
    use crate::handlers::encode_response;

    fn request(topic: &str, partitions: &[i32]) -> DescribeQuorumRequest {
        DescribeQuorumRequest::default().with_topics(vec![
            describe_quorum_request::TopicData::default()
                .with_topic_name(TopicName(s(topic)))
                .with_partitions(
                    partitions
                        .iter()
                        .map(|&p| {
                            describe_quorum_request::PartitionData::default()
                                .with_partition_index(p)
                        })
                        .collect(),
                ),
        ])
    }

    fn info() -> QuorumInfo {
        let r = |id, leo| api::ReplicaState {
            replica_id: id,
            log_end_offset: leo,
            last_fetch_timestamp: 1_000 + leo,
            last_caught_up_timestamp: 2_000 + leo,
        };
        QuorumInfo {
            leader_id: 2,
            leader_epoch: 7,
            high_watermark: 40,
            voters: vec![r(1, 40), r(2, 41), r(3, 12)],
            observers: vec![r(4, 39)],
        }
    }

    #[test]
    fn answers_for_the_metadata_partition_only() {
        for version in 0..=1 {
            let resp = response(request(METADATA_TOPIC, &[0, 1]), version, Ok(info()));
            let p = &resp.topics[0].partitions;
            assert_eq!(
                (p[0].error_code, p[0].leader_id.0, p[0].leader_epoch),
                (0, 2, 7)
            );
            assert_eq!(p[0].high_watermark, 40);
            let voters: Vec<(i32, i64)> = p[0]
                .current_voters
                .iter()
                .map(|v| (v.replica_id.0, v.log_end_offset))
                .collect();
            assert_eq!(voters, vec![(1, 40), (2, 41), (3, 12)]);
            assert_eq!(p[0].observers[0].replica_id.0, 4);
            let ts = p[0].current_voters[2].last_caught_up_timestamp;
            assert_eq!(ts, if version >= 1 { 2_012 } else { -1 });
            assert_eq!(
                p[1].error_code,
                ResponseError::UnknownTopicOrPartition.code()
            );
            encode_response(
                1,
                ApiKey::DescribeQuorum,
                version,
                &ResponseKind::DescribeQuorum(resp),
            )
            .unwrap();
        }
        let resp = response(request("other", &[0]), 1, Ok(info()));
        assert_eq!(
            resp.topics[0].partitions[0].error_code,
            ResponseError::UnknownTopicOrPartition.code()
        );
        let resp = response(
            request(METADATA_TOPIC, &[0]),
            1,
            Err(ResponseError::RequestTimedOut),
        );
        assert_eq!(resp.topics[0].partitions[0].error_code, 7);
    }
}
