//! The one place where internal errors become Kafka wire error codes (in the manner of Kafka's
//! `Errors.forException`). Storage and the controller return their own error types; handlers
//! call [`storage_code`] / [`controller_code`] and never pick codes for those errors themselves.

use kafka_protocol::error::ResponseError;
use runnel_controller::ControllerError;
use runnel_storage::StorageError;

pub fn storage_code(e: &StorageError) -> i16 {
    match e {
        StorageError::CorruptRecord(_) => ResponseError::CorruptMessage,
        StorageError::InvalidRecord(_) => ResponseError::InvalidRecord,
        StorageError::RecordTooLarge { .. } => ResponseError::MessageTooLarge,
        StorageError::OutOfOrderSequence(_) => ResponseError::OutOfOrderSequenceNumber,
        StorageError::InvalidProducerEpoch(_) => ResponseError::InvalidProducerEpoch,
        StorageError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        StorageError::Io(_) => ResponseError::KafkaStorageError,
        // A follower's fetch position and its log disagree: never a client's doing.
        StorageError::OffsetMismatch { .. } => ResponseError::UnknownServerError,
    }
    .code()
}

/// The Kafka error for a controller refusal.
pub fn controller_error(e: &ControllerError) -> ResponseError {
    match e {
        ControllerError::TopicAlreadyExists(_) => ResponseError::TopicAlreadyExists,
        ControllerError::UnknownTopic(_) | ControllerError::UnknownTopicOrPartition(_) => {
            ResponseError::UnknownTopicOrPartition
        }
        ControllerError::InvalidTopic(_) => ResponseError::InvalidTopicException,
        ControllerError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        ControllerError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
        ControllerError::InvalidReplicaAssignment(_) => ResponseError::InvalidReplicaAssignment,
        ControllerError::InvalidConfig(_) => ResponseError::InvalidConfig,
        ControllerError::InvalidRequest(_) => ResponseError::InvalidRequest,
        ControllerError::NotController { .. } => ResponseError::NotController,
        ControllerError::Timeout(_) => ResponseError::RequestTimedOut,
        ControllerError::StaleBrokerEpoch(_) => ResponseError::StaleBrokerEpoch,
        ControllerError::UnknownBroker(_) => ResponseError::BrokerIdNotRegistered,
        ControllerError::FencedLeaderEpoch(_) => ResponseError::FencedLeaderEpoch,
        ControllerError::InvalidUpdateVersion(_) => ResponseError::InvalidUpdateVersion,
        ControllerError::IneligibleReplica(_) => ResponseError::IneligibleReplica,
        ControllerError::NotLeaderOrFollower(_) => ResponseError::NotLeaderOrFollower,
        ControllerError::ElectionNotNeeded(_) => ResponseError::ElectionNotNeeded,
        ControllerError::PreferredLeaderNotAvailable(_) => {
            ResponseError::PreferredLeaderNotAvailable
        }
        ControllerError::EligibleLeadersNotAvailable(_) => {
            ResponseError::EligibleLeadersNotAvailable
        }
        ControllerError::UnsupportedSaslMechanism(_) => ResponseError::UnsupportedSaslMechanism,
        ControllerError::UnacceptableCredential(_) => ResponseError::UnacceptableCredential,
        ControllerError::ResourceNotFound(_) => ResponseError::ResourceNotFound,
        ControllerError::DuplicateResource(_) => ResponseError::DuplicateResource,
        ControllerError::DuplicateBrokerRegistration(_) => {
            ResponseError::DuplicateBrokerRegistration
        }
        ControllerError::Internal(_) => ResponseError::UnknownServerError,
    }
}

/// A controller refusal as (code, message) for a response's error fields.
pub fn controller_code(e: &ControllerError) -> (i16, String) {
    (controller_error(e).code(), e.to_string())
}

/// Shorthand for a response error's code.
pub fn code(e: ResponseError) -> i16 {
    e.code()
}

pub const NONE: i16 = 0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controller_errors_map_to_kafka_codes() {
        let m = |s: &str| s.to_string();
        let cases: Vec<(ControllerError, i16)> = vec![
            (ControllerError::TopicAlreadyExists(m("t")), 36),
            (ControllerError::UnknownTopic(m("t")), 3),
            (ControllerError::UnknownTopicOrPartition(m("t")), 3),
            (ControllerError::InvalidTopic(m("t")), 17),
            (ControllerError::InvalidPartitions(m("t")), 37),
            (ControllerError::InvalidReplicationFactor(m("t")), 38),
            (ControllerError::InvalidReplicaAssignment(m("t")), 39),
            (ControllerError::InvalidConfig(m("t")), 40),
            (ControllerError::InvalidRequest(m("t")), 42),
            (ControllerError::NotController { leader: Some(2) }, 41),
            (ControllerError::Timeout(m("t")), 7),
            (ControllerError::StaleBrokerEpoch(m("t")), 77),
            (ControllerError::UnknownBroker(m("t")), 102),
            (ControllerError::FencedLeaderEpoch(m("t")), 74),
            (ControllerError::InvalidUpdateVersion(m("t")), 95),
            (ControllerError::IneligibleReplica(m("t")), 107),
            (ControllerError::NotLeaderOrFollower(m("t")), 6),
            (ControllerError::ElectionNotNeeded(m("t")), 84),
            (ControllerError::PreferredLeaderNotAvailable(m("t")), 80),
            (ControllerError::EligibleLeadersNotAvailable(m("t")), 83),
            (ControllerError::DuplicateBrokerRegistration(m("t")), 101),
            (ControllerError::Internal(m("t")), -1),
        ];
        for (e, want) in cases {
            let (code, msg) = controller_code(&e);
            assert_eq!(code, want, "{e:?}");
            assert!(!msg.is_empty());
        }
    }
}
