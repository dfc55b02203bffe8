//! Partition replication for Runnel, without I/O.
//!
//! - [`leader::LeaderState`]: what a partition leader knows about its followers: their log end
//!   offsets and last caught-up times, the ISR (committed and in flight), the high watermark,
//!   ISR shrink/expand proposals, and acks=all/min.insync.replicas decisions.
//! - [`follower`]: the follower's side of KIP-320: how the leader detects a diverging follower
//!   log, and where a follower truncates.
//! - [`pb`]: the replica fetch gRPC protocol (`proto/replication.proto`).
//!
//! Time comes in as milliseconds from the caller; nothing here sleeps, reads a clock or does I/O.
//! The broker's runtime (`runnel_broker::replicate`) drives these state machines.

pub mod follower;
pub mod leader;

/// The replica fetch protocol.
pub mod pb {
    tonic::include_proto!("runnel.replication");
}

/// A broker (node) id.
pub type BrokerId = i32;

/// "No epoch" (Kafka's UNDEFINED_EPOCH).
pub const UNDEFINED_EPOCH: i32 = -1;
/// "No offset" (Kafka's UNDEFINED_EPOCH_OFFSET).
pub const UNDEFINED_OFFSET: i64 = -1;

/// An epoch and the offset where it ends (the start offset of the next epoch, or the log end
/// offset for the latest epoch): the answer of OffsetForLeaderEpoch and KIP-320's diverging
/// epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEndOffset {
    pub epoch: i32,
    pub end_offset: i64,
}

impl EpochEndOffset {
    pub const UNDEFINED: EpochEndOffset = EpochEndOffset {
        epoch: UNDEFINED_EPOCH,
        end_offset: UNDEFINED_OFFSET,
    };
}
