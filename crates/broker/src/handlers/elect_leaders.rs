//! ElectLeaders (API 43, KIP-183 and KIP-460; `kafka-leader-election.sh`): preferred or unclean
//! leader elections, decided by the active controller. Versions 0-2: v1 adds the election type
//! (v0 is always preferred) and a top-level error code, v2 is the flexible encoding.
//!
//! The request is forwarded as one controller [`AdminRequest::ElectLeaders`] and answered once
//! this broker has applied the committed elections, so the client's next Metadata request here
//! shows the new leaders. Per-partition outcomes come back as controller errors and become Kafka
//! codes in [`crate::error`] (ELECTION_NOT_NEEDED, PREFERRED_LEADER_NOT_AVAILABLE,
//! ELIGIBLE_LEADERS_NOT_AVAILABLE, UNKNOWN_TOPIC_OR_PARTITION). A null partition list means every
//! partition; the answer then leaves out the partitions that needed no election, as Kafka does.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{
    ElectLeadersRequest, ElectLeadersResponse, ResponseKind, TopicName,
};
use runnel_controller::api::{self, AdminRequest, AdminResponse, ControllerError, ElectionType};

use super::AdminServices;
use super::{admin_timeout, s, Reply};
use crate::context::RequestContext;
use crate::error::KafkaError;
use runnel_security::acl::{AclOperation, ResourceType, CLUSTER_NAME};

pub fn handle(
    svc: &AdminServices,
    ctx: &RequestContext,
    req: ElectLeadersRequest,
    version: i16,
) -> Reply {
    let image = svc.image();
    if !svc.authorizer.authorize(
        &image.image,
        ctx,
        AclOperation::Alter,
        ResourceType::Cluster,
        CLUSTER_NAME,
    ) {
        let denied = Err(KafkaError::new(
            ResponseError::ClusterAuthorizationFailed,
            "Cluster authorization failed.".to_string(),
        ));
        return Reply::Now(ResponseKind::ElectLeaders(response(&req, version, denied)));
    }
    let svc = svc.clone();
    Reply::Later(Box::pin(async move {
        let outcome = match translate(&req, version) {
            Err(e) => Err(e),
            Ok(request) => {
                let timeout = admin_timeout(req.timeout_ms);
                match svc
                    .admin(AdminRequest::ElectLeaders(request), timeout)
                    .await
                {
                    Ok(AdminResponse::ElectLeaders(r)) => Ok(r),
                    Ok(other) => {
                        tracing::error!(response = ?other, "controller answered ElectLeaders with another response");
                        Err(KafkaError::new(
                            ResponseError::UnknownServerError,
                            "unexpected controller response".to_string(),
                        ))
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "ElectLeaders failed");
                        Err(KafkaError::from(&e))
                    }
                }
            }
        };
        ResponseKind::ElectLeaders(response(&req, version, outcome))
    }))
}

/// The controller request for a Kafka request: INVALID_REQUEST for an unknown election type.
fn translate(
    req: &ElectLeadersRequest,
    version: i16,
) -> Result<api::ElectLeadersRequest, KafkaError> {
    let election_type = match (version, req.election_type) {
        (0, _) | (_, 0) => ElectionType::Preferred,
        (_, 1) => ElectionType::Unclean,
        (_, other) => {
            return Err(KafkaError::new(
                ResponseError::InvalidRequest,
                format!("Unknown election type {other}"),
            ))
        }
    };
    let partitions = req.topic_partitions.as_ref().map(|topics| {
        topics
            .iter()
            .map(|t| (t.topic.0.to_string(), t.partitions.clone()))
            .collect()
    });
    Ok(api::ElectLeadersRequest {
        election_type,
        partitions,
    })
}

fn partition_result(partition_id: i32, result: Result<(), KafkaError>) -> PartitionResult {
    let out = PartitionResult::default().with_partition_id(partition_id);
    match result {
        // Kafka sends a null message with no error.
        Ok(()) => out.with_error_message(None),
        Err(e) => out
            .with_error_code(e.code())
            .with_error_message(Some(s(&e.message))),
    }
}

/// The Kafka response: the controller's per-partition results, or `outcome`'s error for every
/// requested partition (and at the top level from v1).
fn response(
    req: &ElectLeadersRequest,
    version: i16,
    outcome: Result<api::ElectLeadersResponse, KafkaError>,
) -> ElectLeadersResponse {
    let mut resp = ElectLeadersResponse::default();
    match outcome {
        Ok(r) => {
            resp.replica_election_results = r
                .topics
                .into_iter()
                .map(|(topic, partitions)| {
                    ReplicaElectionResult::default()
                        .with_topic(TopicName(s(&topic)))
                        .with_partition_result(
                            partitions
                                .into_iter()
                                .map(|(p, res)| {
                                    partition_result(
                                        p,
                                        res.map_err(|e: ControllerError| KafkaError::from(&e)),
                                    )
                                })
                                .collect(),
                        )
                })
                .collect();
        }
        Err(e) => {
            if version >= 1 {
                resp.error_code = e.code();
            }
            resp.replica_election_results = req
                .topic_partitions
                .iter()
                .flatten()
                .map(|t| {
                    ReplicaElectionResult::default()
                        .with_topic(t.topic.clone())
                        .with_partition_result(
                            t.partitions
                                .iter()
                                .map(|&p| partition_result(p, Err(e.clone())))
                                .collect(),
                        )
                })
                .collect();
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::elect_leaders_request::TopicPartitions;

    use super::*;

    fn request(election_type: i8, topics: Option<&[(&str, &[i32])]>) -> ElectLeadersRequest {
        ElectLeadersRequest::default()
            .with_election_type(election_type)
            .with_timeout_ms(30_000)
            .with_topic_partitions(topics.map(|ts| {
                ts.iter()
                    .map(|(t, ps)| {
                        TopicPartitions::default()
                            .with_topic(TopicName(s(t)))
                            .with_partitions(ps.to_vec())
                    })
                    .collect()
            }))
    }

    #[test]
    fn election_types_by_version() {
        let t = |v, e| translate(&request(e, None), v);
        assert_eq!(t(0, 1).unwrap().election_type, ElectionType::Preferred);
        assert_eq!(t(1, 0).unwrap().election_type, ElectionType::Preferred);
        assert_eq!(t(2, 1).unwrap().election_type, ElectionType::Unclean);
        assert_eq!(
            t(1, 2).unwrap_err().code(),
            ResponseError::InvalidRequest.code()
        );
        assert_eq!(t(2, 0).unwrap().partitions, None);
        let named = translate(&request(0, Some(&[("a", &[0, 2]), ("b", &[1])])), 2).unwrap();
        assert_eq!(
            named.partitions,
            Some(vec![("a".into(), vec![0, 2]), ("b".into(), vec![1])])
        );
    }

    #[test]
    fn controller_results_become_kafka_codes() {
        let req = request(0, Some(&[("a", &[0, 1, 2, 3])]));
        let m = |x: &str| x.to_string();
        let outcome = api::ElectLeadersResponse {
            topics: vec![(
                "a".into(),
                vec![
                    (0, Ok(())),
                    (1, Err(ControllerError::ElectionNotNeeded(m("n")))),
                    (2, Err(ControllerError::PreferredLeaderNotAvailable(m("p")))),
                    (3, Err(ControllerError::EligibleLeadersNotAvailable(m("e")))),
                ],
            )],
        };
        let resp = response(&req, 2, Ok(outcome));
        assert_eq!(resp.error_code, 0);
        let codes: Vec<(i32, i16)> = resp.replica_election_results[0]
            .partition_result
            .iter()
            .map(|p| (p.partition_id, p.error_code))
            .collect();
        assert_eq!(codes, vec![(0, 0), (1, 84), (2, 80), (3, 83)]);
        assert_eq!(
            resp.replica_election_results[0].partition_result[0].error_message,
            None
        );
    }

    #[test]
    fn a_failed_request_fails_every_partition() {
        let req = request(0, Some(&[("a", &[0, 1]), ("b", &[5])]));
        let err = KafkaError::from(&ControllerError::Timeout("slow".into()));
        for version in 0..=2 {
            let resp = response(&req, version, Err(err.clone()));
            assert_eq!(resp.error_code, if version >= 1 { 7 } else { 0 });
            let all: Vec<i16> = resp
                .replica_election_results
                .iter()
                .flat_map(|t| t.partition_result.iter().map(|p| p.error_code))
                .collect();
            assert_eq!(all, vec![7, 7, 7]);
        }
        // Every partition, refused: only the top-level code says so.
        let resp = response(
            &request(9, None),
            1,
            Err(KafkaError::new(ResponseError::InvalidRequest, "bad")),
        );
        assert_eq!(resp.error_code, 42);
        assert!(resp.replica_election_results.is_empty());
    }
}
