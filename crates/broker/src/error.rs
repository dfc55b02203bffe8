//! The one place where internal errors become Kafka wire errors (in the manner of Kafka's
//! `Errors.forException`). Storage, the controller and the leader append return their own error
//! types; [`KafkaError`] converts each of them with an exhaustive match, so a new internal
//! error cannot turn into UNKNOWN_SERVER_ERROR without a decision here. Handlers answer with a
//! [`KafkaError`] (code and message) and never pick codes for those errors themselves.

use std::fmt;

use kafka_protocol::error::ResponseError;
use kafka_protocol::protocol::StrBytes;
use runnel_controller::ControllerError;
use runnel_storage::StorageError;

use crate::replica::AppendError;

/// A Kafka error as a response carries it: the error code and the message for the response's
/// `error_message` field (when its version has one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaError {
    pub error: ResponseError,
    pub message: String,
}

impl KafkaError {
    pub fn new(error: ResponseError, message: impl Into<String>) -> KafkaError {
        KafkaError {
            error,
            message: message.into(),
        }
    }

    /// The wire code.
    pub fn code(&self) -> i16 {
        self.error.code()
    }

    /// The message as a response's nullable string field.
    pub fn message_field(&self) -> Option<StrBytes> {
        Some(StrBytes::from_string(self.message.clone()))
    }
}

impl fmt::Display for KafkaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} ({}): {}", self.error, self.code(), self.message)
    }
}

impl std::error::Error for KafkaError {}

impl From<&StorageError> for KafkaError {
    fn from(e: &StorageError) -> KafkaError {
        KafkaError::new(storage_error(e), e.to_string())
    }
}

impl From<&ControllerError> for KafkaError {
    fn from(e: &ControllerError) -> KafkaError {
        KafkaError::new(controller_error(e), e.to_string())
    }
}

impl From<&AppendError> for KafkaError {
    fn from(e: &AppendError) -> KafkaError {
        match e {
            AppendError::NotLeader => KafkaError::new(
                ResponseError::NotLeaderOrFollower,
                "this broker is not the leader of the partition",
            ),
            AppendError::Storage(e) => KafkaError::from(e),
        }
    }
}

/// The Kafka error for a storage failure.
pub fn storage_error(e: &StorageError) -> ResponseError {
    match e {
        StorageError::CorruptRecord(_) => ResponseError::CorruptMessage,
        StorageError::InvalidRecord(_) => ResponseError::InvalidRecord,
        StorageError::RecordTooLarge { .. } => ResponseError::MessageTooLarge,
        StorageError::OutOfOrderSequence(_) => ResponseError::OutOfOrderSequenceNumber,
        StorageError::InvalidProducerEpoch(_) => ResponseError::InvalidProducerEpoch,
        StorageError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        StorageError::Io(_) => ResponseError::KafkaStorageError,
        // A non-transactional write from a producer with an open transaction (Kafka answers
        // INVALID_TXN_STATE; Produce v11 and older know no TRANSACTION_ABORTABLE).
        StorageError::InvalidTxnState(_) => ResponseError::InvalidTxnState,
        // The produce path asks the coordinator and appends again; should it ever reach a
        // client, the partition is not (yet) known to be in the producer's transaction.
        StorageError::TxnVerificationNeeded { .. } => ResponseError::InvalidTxnState,
        // A marker from a coordinator older than the one that last wrote to the producer.
        StorageError::TransactionCoordinatorFenced(_) => {
            ResponseError::TransactionCoordinatorFenced
        }
        // A follower's fetch position and its log disagree: never a client's doing.
        StorageError::OffsetMismatch { .. } => ResponseError::UnknownServerError,
    }
}

/// The wire code of a storage failure.
pub fn storage_code(e: &StorageError) -> i16 {
    storage_error(e).code()
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
            let k = KafkaError::from(&e);
            assert_eq!(k.code(), want, "{e:?}");
            assert!(!k.message.is_empty());
        }
    }

    #[test]
    fn append_and_storage_errors_carry_code_and_message() {
        let k = KafkaError::from(&AppendError::NotLeader);
        assert_eq!(k.code(), 6);
        let io = StorageError::Io(std::io::Error::other("disk on fire"));
        let k = KafkaError::from(&AppendError::Storage(io));
        assert_eq!(k.error, ResponseError::KafkaStorageError);
        assert!(k.message.contains("disk on fire"), "{k}");
        let k = KafkaError::from(&StorageError::RecordTooLarge { size: 10, max: 5 });
        assert_eq!(k.code(), 10);
        assert_eq!(k.message_field().unwrap().as_str(), k.message);
    }
}
