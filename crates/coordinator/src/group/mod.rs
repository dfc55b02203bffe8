//! The classic consumer group protocol ([`state`]), its settings ([`config`]), its records
//! in `__consumer_offsets`, in Kafka's formats ([`records`]), and the coordinator of one
//! `__consumer_offsets` partition on the coordinator runtime ([`shard`]).

pub mod config;
pub mod records;
pub mod shard;
pub mod state;

pub use config::{CoordinatorSettings, GroupConfig};
pub use state::GroupState;

/// The internal topic that holds groups and their committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// The code a group request answers when a write to `__consumer_offsets` fails, as Kafka's
/// GroupMetadataManager maps it: leadership lost -> NOT_COORDINATOR; a batch too large ->
/// INVALID_COMMIT_OFFSET_SIZE; a fenced producer (a transactional commit) ->
/// INVALID_PRODUCER_EPOCH; not enough replicas, a timeout or any other storage failure ->
/// COORDINATOR_NOT_AVAILABLE (clients look the coordinator up again and retry).
pub fn write_error_code(e: &crate::log::WriteError) -> kafka_protocol::error::ResponseError {
    use crate::log::WriteError;
    use kafka_protocol::error::ResponseError;
    match e {
        WriteError::NotLeader => ResponseError::NotCoordinator,
        WriteError::RecordTooLarge => ResponseError::InvalidCommitOffsetSize,
        WriteError::InvalidProducerEpoch => ResponseError::InvalidProducerEpoch,
        WriteError::NotEnoughReplicas
        | WriteError::NotEnoughReplicasAfterAppend
        | WriteError::TimedOut
        | WriteError::Storage(_) => ResponseError::CoordinatorNotAvailable,
    }
}
