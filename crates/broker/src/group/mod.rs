//! The group coordinator: Kafka's classic consumer-group rebalance protocol and committed
//! offsets.
//!
//! [`state`] is the protocol as an I/O-free state machine (time comes in as `now_ms`, delayed
//! answers and records to persist come out as effects), and `runnel_coordinator`'s
//! `GroupShard` keeps it in one partition of the internal topic `__consumer_offsets`, in
//! Kafka's own formats ([`records`]). [`coordinator`] runs those shards on the coordinator
//! runtime, one per partition led here: it parks delayed JoinGroup/SyncGroup answers, has the
//! records appended, replays a partition when this node gains its leadership, and runs the
//! session/rebalance timers.
//!
//! Which node coordinates a group follows Kafka: partition
//! `abs(javaHashCode(group)) % partitions(__consumer_offsets)` of `__consumer_offsets`, led by
//! that partition's leader. The coordinator serves only the groups of partitions this node
//! leads (NOT_COORDINATOR otherwise): when the reconciler sees this node become a partition's
//! leader it loads that partition (COORDINATOR_LOAD_IN_PROGRESS meanwhile), and when the
//! leadership moves away the partition's groups leave memory. Writes are acks=all: a new leader
//! is elected from the ISR, which has every record an answer depended on.
//!
//! A deleted topic takes its committed offsets with it, as in Kafka: when the reconciler sees
//! topics leave the image it hands their partitions to
//! [`GroupCoordinator::on_partitions_deleted`], which writes offset tombstones for the groups
//! loaded here; a partition loaded later, and every expiry sweep, drops the offsets of topic
//! partitions the current image does not have.
//!
//! Architecture invariant: nothing in `state` or `records` performs I/O; the coordinator never
//! answers an OffsetCommit before its records are replicated to the partition's ISR, and
//! delivers JoinGroup/SyncGroup answers only after the group metadata written with them is.

pub mod coordinator;

pub use coordinator::{
    ensure_offsets_topic, run_timer, Answer, CoordinatorSettings, GroupCoordinator,
    OffsetsTopicSettings,
};
pub use runnel_coordinator::group::{records, state, GroupConfig, GroupState, OFFSETS_TOPIC};
pub use runnel_coordinator::partitioning::{java_string_hashcode, partition_for};

/// Internal topics are written only by the broker itself; Metadata marks them internal and
/// client produce requests to them are refused, as in Kafka.
pub fn is_internal_topic(name: &str) -> bool {
    name == OFFSETS_TOPIC
}
