//! Conversions between the crate's request/response types and their protobuf forms.

use uuid::Uuid;

use super::pb::controller as pb;
use crate::api::{
    AllocateProducerIdsRequest, AlterPartitionRequest, BrokerHeartbeatRequest, ControllerError,
    PartitionState, QuorumInfo, RegisterBrokerRequest, ReplicaState,
};
use crate::records::BrokerEndpoint;

pub(crate) fn error_to_pb(e: &ControllerError) -> pb::ControllerError {
    use pb::ErrorCode as C;
    let (code, leader) = match e {
        ControllerError::TopicAlreadyExists(_) => (C::TopicAlreadyExists, None),
        ControllerError::UnknownTopic(_) => (C::UnknownTopic, None),
        ControllerError::InvalidTopic(_) => (C::InvalidTopic, None),
        ControllerError::InvalidPartitions(_) => (C::InvalidPartitions, None),
        ControllerError::InvalidReplicationFactor(_) => (C::InvalidReplicationFactor, None),
        ControllerError::InvalidReplicaAssignment(_) => (C::InvalidReplicaAssignment, None),
        ControllerError::InvalidConfig(_) => (C::InvalidConfig, None),
        ControllerError::InvalidRequest(_) => (C::InvalidRequest, None),
        ControllerError::NotController { leader } => (C::NotController, *leader),
        ControllerError::Timeout(_) => (C::Timeout, None),
        ControllerError::StaleBrokerEpoch(_) => (C::StaleBrokerEpoch, None),
        ControllerError::UnknownBroker(_) => (C::UnknownBroker, None),
        ControllerError::FencedLeaderEpoch(_) => (C::FencedLeaderEpoch, None),
        ControllerError::InvalidUpdateVersion(_) => (C::InvalidUpdateVersion, None),
        ControllerError::IneligibleReplica(_) => (C::IneligibleReplica, None),
        ControllerError::NotLeaderOrFollower(_) => (C::NotLeaderOrFollower, None),
        ControllerError::UnknownTopicOrPartition(_) => (C::UnknownTopicOrPartition, None),
        ControllerError::ElectionNotNeeded(_) => (C::ElectionNotNeeded, None),
        ControllerError::PreferredLeaderNotAvailable(_) => (C::PreferredLeaderNotAvailable, None),
        ControllerError::EligibleLeadersNotAvailable(_) => (C::EligibleLeadersNotAvailable, None),
        ControllerError::UnsupportedSaslMechanism(_) => (C::UnsupportedSaslMechanism, None),
        ControllerError::UnacceptableCredential(_) => (C::UnacceptableCredential, None),
        ControllerError::ResourceNotFound(_) => (C::ResourceNotFound, None),
        ControllerError::DuplicateResource(_) => (C::DuplicateResource, None),
        ControllerError::DuplicateBrokerRegistration(_) => (C::DuplicateBrokerRegistration, None),
        ControllerError::Internal(_) => (C::Internal, None),
    };
    pb::ControllerError {
        code: code as i32,
        message: e.to_string(),
        leader_id: leader.unwrap_or(-1),
    }
}

pub(crate) fn error_from_pb(e: pb::ControllerError) -> ControllerError {
    use pb::ErrorCode as C;
    let m = e.message;
    match pb::ErrorCode::try_from(e.code).unwrap_or(C::Unspecified) {
        C::NotController => ControllerError::NotController {
            leader: (e.leader_id >= 0).then_some(e.leader_id),
        },
        C::Timeout => ControllerError::Timeout(m),
        C::StaleBrokerEpoch => ControllerError::StaleBrokerEpoch(m),
        C::UnknownBroker => ControllerError::UnknownBroker(m),
        C::FencedLeaderEpoch => ControllerError::FencedLeaderEpoch(m),
        C::InvalidUpdateVersion => ControllerError::InvalidUpdateVersion(m),
        C::IneligibleReplica => ControllerError::IneligibleReplica(m),
        C::NotLeaderOrFollower => ControllerError::NotLeaderOrFollower(m),
        C::UnknownTopicOrPartition => ControllerError::UnknownTopicOrPartition(m),
        C::Internal => ControllerError::Internal(m),
        C::TopicAlreadyExists => ControllerError::TopicAlreadyExists(m),
        C::UnknownTopic => ControllerError::UnknownTopic(m),
        C::InvalidTopic => ControllerError::InvalidTopic(m),
        C::InvalidPartitions => ControllerError::InvalidPartitions(m),
        C::InvalidReplicationFactor => ControllerError::InvalidReplicationFactor(m),
        C::InvalidReplicaAssignment => ControllerError::InvalidReplicaAssignment(m),
        C::InvalidConfig => ControllerError::InvalidConfig(m),
        C::InvalidRequest => ControllerError::InvalidRequest(m),
        C::ElectionNotNeeded => ControllerError::ElectionNotNeeded(m),
        C::PreferredLeaderNotAvailable => ControllerError::PreferredLeaderNotAvailable(m),
        C::EligibleLeadersNotAvailable => ControllerError::EligibleLeadersNotAvailable(m),
        C::UnsupportedSaslMechanism => ControllerError::UnsupportedSaslMechanism(m),
        C::UnacceptableCredential => ControllerError::UnacceptableCredential(m),
        C::ResourceNotFound => ControllerError::ResourceNotFound(m),
        C::DuplicateResource => ControllerError::DuplicateResource(m),
        C::DuplicateBrokerRegistration => ControllerError::DuplicateBrokerRegistration(m),
        C::Unspecified => ControllerError::Internal(format!(
            "unrecognised controller error code {}: {m}",
            e.code
        )),
    }
}

/// An error field of a response: `Ok` when absent.
pub(crate) fn check(error: Option<pb::ControllerError>) -> Result<(), ControllerError> {
    match error {
        None => Ok(()),
        Some(e) => Err(error_from_pb(e)),
    }
}

pub(crate) fn uuid_to_pb(id: Uuid) -> Option<pb::Uuid> {
    Some(pb::Uuid {
        value: id.as_bytes().to_vec(),
    })
}

pub(crate) fn uuid_from_pb(id: Option<pb::Uuid>, what: &str) -> Result<Uuid, ControllerError> {
    let bytes = id.map(|u| u.value).unwrap_or_default();
    Uuid::from_slice(&bytes).map_err(|_| {
        ControllerError::InvalidRequest(format!(
            "{what} is not a 16-byte uuid ({} bytes)",
            bytes.len()
        ))
    })
}

pub(crate) fn register_to_pb(r: &RegisterBrokerRequest) -> pb::RegisterBrokerRequest {
    pb::RegisterBrokerRequest {
        broker_id: r.broker_id,
        incarnation_id: uuid_to_pb(r.incarnation_id),
        endpoints: r
            .endpoints
            .iter()
            .map(|e| pb::BrokerEndpoint {
                name: e.name.clone(),
                host: e.host.clone(),
                port: u32::from(e.port),
            })
            .collect(),
        rack: r.rack.clone(),
        rpc_address: r.rpc_address.clone(),
    }
}

pub(crate) fn register_from_pb(
    r: pb::RegisterBrokerRequest,
) -> Result<RegisterBrokerRequest, ControllerError> {
    let endpoints = r
        .endpoints
        .into_iter()
        .map(|e| {
            let port = u16::try_from(e.port).map_err(|_| {
                ControllerError::InvalidRequest(format!("endpoint port {} out of range", e.port))
            })?;
            Ok(BrokerEndpoint {
                name: e.name,
                host: e.host,
                port,
            })
        })
        .collect::<Result<Vec<_>, ControllerError>>()?;
    Ok(RegisterBrokerRequest {
        broker_id: r.broker_id,
        incarnation_id: uuid_from_pb(r.incarnation_id, "incarnation_id")?,
        endpoints,
        rack: r.rack,
        rpc_address: r.rpc_address,
    })
}

pub(crate) fn heartbeat_to_pb(r: &BrokerHeartbeatRequest) -> pb::BrokerHeartbeatRequest {
    pb::BrokerHeartbeatRequest {
        broker_id: r.broker_id,
        incarnation_id: uuid_to_pb(r.incarnation_id),
        metadata_applied_index: r.metadata_applied_index,
        want_shut_down: r.want_shut_down,
    }
}

pub(crate) fn heartbeat_from_pb(
    r: pb::BrokerHeartbeatRequest,
) -> Result<BrokerHeartbeatRequest, ControllerError> {
    Ok(BrokerHeartbeatRequest {
        broker_id: r.broker_id,
        incarnation_id: uuid_from_pb(r.incarnation_id, "incarnation_id")?,
        metadata_applied_index: r.metadata_applied_index,
        want_shut_down: r.want_shut_down,
    })
}

pub(crate) fn allocate_to_pb(r: &AllocateProducerIdsRequest) -> pb::AllocateProducerIdsRequest {
    pb::AllocateProducerIdsRequest {
        broker_id: r.broker_id,
        incarnation_id: uuid_to_pb(r.incarnation_id),
    }
}

pub(crate) fn allocate_from_pb(
    r: pb::AllocateProducerIdsRequest,
) -> Result<AllocateProducerIdsRequest, ControllerError> {
    Ok(AllocateProducerIdsRequest {
        broker_id: r.broker_id,
        incarnation_id: uuid_from_pb(r.incarnation_id, "incarnation_id")?,
    })
}

pub(crate) fn alter_partition_to_pb(r: &AlterPartitionRequest) -> pb::AlterPartitionRequest {
    pb::AlterPartitionRequest {
        broker_id: r.broker_id,
        incarnation_id: uuid_to_pb(r.incarnation_id),
        topic_id: uuid_to_pb(r.topic_id),
        partition: r.partition,
        leader_epoch: r.leader_epoch,
        partition_epoch: r.partition_epoch,
        new_isr: r.new_isr.clone(),
    }
}

pub(crate) fn alter_partition_from_pb(
    r: pb::AlterPartitionRequest,
) -> Result<AlterPartitionRequest, ControllerError> {
    Ok(AlterPartitionRequest {
        broker_id: r.broker_id,
        incarnation_id: uuid_from_pb(r.incarnation_id, "incarnation_id")?,
        topic_id: uuid_from_pb(r.topic_id, "topic_id")?,
        partition: r.partition,
        leader_epoch: r.leader_epoch,
        partition_epoch: r.partition_epoch,
        new_isr: r.new_isr,
    })
}

pub(crate) fn partition_state_to_pb(s: &PartitionState) -> pb::AlterPartitionResponse {
    pb::AlterPartitionResponse {
        error: None,
        leader: s.leader,
        leader_epoch: s.leader_epoch,
        partition_epoch: s.partition_epoch,
        isr: s.isr.clone(),
    }
}

pub(crate) fn partition_state_from_pb(r: pb::AlterPartitionResponse) -> PartitionState {
    PartitionState {
        leader: r.leader,
        leader_epoch: r.leader_epoch,
        partition_epoch: r.partition_epoch,
        isr: r.isr,
    }
}

fn replica_to_pb(r: &ReplicaState) -> pb::ReplicaState {
    pb::ReplicaState {
        replica_id: r.replica_id,
        log_end_offset: r.log_end_offset,
        last_fetch_timestamp: r.last_fetch_timestamp,
        last_caught_up_timestamp: r.last_caught_up_timestamp,
    }
}

fn replica_from_pb(r: pb::ReplicaState) -> ReplicaState {
    ReplicaState {
        replica_id: r.replica_id,
        log_end_offset: r.log_end_offset,
        last_fetch_timestamp: r.last_fetch_timestamp,
        last_caught_up_timestamp: r.last_caught_up_timestamp,
    }
}

pub(crate) fn quorum_to_pb(q: &QuorumInfo) -> pb::DescribeQuorumResponse {
    pb::DescribeQuorumResponse {
        error: None,
        leader_id: q.leader_id,
        leader_epoch: q.leader_epoch,
        high_watermark: q.high_watermark,
        voters: q.voters.iter().map(replica_to_pb).collect(),
        observers: q.observers.iter().map(replica_to_pb).collect(),
    }
}

pub(crate) fn quorum_from_pb(q: pb::DescribeQuorumResponse) -> QuorumInfo {
    QuorumInfo {
        leader_id: q.leader_id,
        leader_epoch: q.leader_epoch,
        high_watermark: q.high_watermark,
        voters: q.voters.into_iter().map(replica_from_pb).collect(),
        observers: q.observers.into_iter().map(replica_from_pb).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_survives_the_wire() {
        let errors = [
            ControllerError::TopicAlreadyExists("t".into()),
            ControllerError::UnknownTopic("t".into()),
            ControllerError::InvalidTopic("t".into()),
            ControllerError::InvalidPartitions("p".into()),
            ControllerError::InvalidReplicationFactor("r".into()),
            ControllerError::InvalidReplicaAssignment("a".into()),
            ControllerError::InvalidConfig("c".into()),
            ControllerError::InvalidRequest("q".into()),
            ControllerError::NotController { leader: Some(3) },
            ControllerError::NotController { leader: None },
            ControllerError::Timeout("slow".into()),
            ControllerError::StaleBrokerEpoch("s".into()),
            ControllerError::UnknownBroker("b".into()),
            ControllerError::FencedLeaderEpoch("f".into()),
            ControllerError::InvalidUpdateVersion("v".into()),
            ControllerError::IneligibleReplica("i".into()),
            ControllerError::NotLeaderOrFollower("n".into()),
            ControllerError::UnknownTopicOrPartition("u".into()),
            ControllerError::ElectionNotNeeded("e".into()),
            ControllerError::PreferredLeaderNotAvailable("p".into()),
            ControllerError::EligibleLeadersNotAvailable("l".into()),
            ControllerError::UnsupportedSaslMechanism("m".into()),
            ControllerError::UnacceptableCredential("c".into()),
            ControllerError::ResourceNotFound("r".into()),
            ControllerError::DuplicateResource("d".into()),
            ControllerError::DuplicateBrokerRegistration("d".into()),
            ControllerError::Internal("bug".into()),
        ];
        for e in errors {
            // Messages travel as the error's display text, which for every variant but
            // NotController (whose text is derived from the hint) is its payload.
            assert_eq!(error_from_pb(error_to_pb(&e)), e);
        }
    }

    #[test]
    fn heartbeats_carry_the_shutdown_request() {
        for want_shut_down in [false, true] {
            let h = BrokerHeartbeatRequest {
                broker_id: 4,
                incarnation_id: Uuid::from_u128(9),
                metadata_applied_index: 77,
                want_shut_down,
            };
            assert_eq!(heartbeat_from_pb(heartbeat_to_pb(&h)).unwrap(), h);
        }
    }

    #[test]
    fn unknown_codes_are_internal_errors() {
        let e = error_from_pb(pb::ControllerError {
            code: 999,
            message: "from the future".into(),
            leader_id: -1,
        });
        assert!(matches!(e, ControllerError::Internal(m) if m.contains("999")));
    }

    #[test]
    fn uuids_must_be_sixteen_bytes() {
        let id = Uuid::from_u128(0x1234);
        assert_eq!(uuid_from_pb(uuid_to_pb(id), "x").unwrap(), id);
        assert!(uuid_from_pb(Some(pb::Uuid { value: vec![1, 2] }), "x").is_err());
        assert!(uuid_from_pb(None, "x").is_err());
    }
}
