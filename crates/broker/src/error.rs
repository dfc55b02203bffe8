//! The one place where internal errors become Kafka wire error codes (in the manner of Kafka's
//! `Errors.forException`). Storage and metadata return their own error types; handlers call
//! [`storage_code`] / [`metadata_code`] and never pick codes for those errors themselves.

use kafka_protocol::error::ResponseError;
use runnel_storage::StorageError;

use crate::metadata::MetadataError;

pub fn storage_code(e: &StorageError) -> i16 {
    match e {
        StorageError::CorruptRecord(_) => ResponseError::CorruptMessage,
        StorageError::InvalidRecord(_) => ResponseError::InvalidRecord,
        StorageError::RecordTooLarge { .. } => ResponseError::MessageTooLarge,
        StorageError::OutOfOrderSequence(_) => ResponseError::OutOfOrderSequenceNumber,
        StorageError::InvalidProducerEpoch(_) => ResponseError::InvalidProducerEpoch,
        StorageError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        StorageError::Io(_) => ResponseError::KafkaStorageError,
        #[allow(unreachable_patterns)]
        _ => ResponseError::UnknownServerError,
    }
    .code()
}

pub fn metadata_code(e: &MetadataError) -> i16 {
    match e {
        MetadataError::TopicExists(_) => ResponseError::TopicAlreadyExists,
        MetadataError::UnknownTopic(_) => ResponseError::UnknownTopicOrPartition,
        MetadataError::Invalid(_) => ResponseError::InvalidRequest,
        MetadataError::Io { .. } | MetadataError::Corrupt { .. } => {
            ResponseError::KafkaStorageError
        }
    }
    .code()
}

/// Shorthand for a response error's code.
pub fn code(e: ResponseError) -> i16 {
    e.code()
}

pub const NONE: i16 = 0;
