//! The group coordinator: Kafka's classic consumer-group rebalance protocol and committed
//! offsets.
//!
//! [`state`] is the protocol as an I/O-free state machine (time comes in as `now_ms`, delayed
//! answers and records to persist come out as effects). [`coordinator`] is its runtime: it
//! parks delayed JoinGroup/SyncGroup answers on oneshot channels, writes the records to the
//! internal topic `__consumer_offsets` in Kafka's own formats ([`records`]), replays that topic
//! at start-up, and runs the session/rebalance timers.
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
pub mod records;
pub mod state;

pub use coordinator::{
    ensure_offsets_topic, run_timer, Answer, BrokerOffsetsLog, CoordinatorSettings,
    GroupCoordinator, OffsetsLog, OffsetsTopicSettings,
};
pub use state::{GroupConfig, GroupState};

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Internal topics are written only by the broker itself; Metadata marks them internal and
/// client produce requests to them are refused, as in Kafka.
pub fn is_internal_topic(name: &str) -> bool {
    name == OFFSETS_TOPIC
}

/// Java's `String.hashCode` over UTF-16 code units.
pub fn java_string_hashcode(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

/// Kafka's `Utils.abs(groupId.hashCode) % groupMetadataTopicPartitionCount` (`Utils.abs` maps
/// `i32::MIN` to 0).
pub fn partition_for(group_id: &str, num_partitions: i32) -> i32 {
    let h = java_string_hashcode(group_id);
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % num_partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashcode_matches_java() {
        // Values of java.lang.String#hashCode.
        assert_eq!(java_string_hashcode(""), 0);
        assert_eq!(java_string_hashcode("a"), 97);
        assert_eq!(java_string_hashcode("hello"), 99_162_322);
        assert_eq!(java_string_hashcode("console-consumer-12345"), 158_455_506);
        assert_eq!(java_string_hashcode("my-group"), -1_906_497_762);
        assert_eq!(partition_for("my-group", 50), 12);
        // The well-known string whose hashCode is Integer.MIN_VALUE: Utils.abs gives 0.
        assert_eq!(java_string_hashcode("polygenelubricants"), i32::MIN);
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        // Characters outside the BMP count as two UTF-16 units, as in Java.
        assert_eq!(java_string_hashcode("\u{1F600}"), 0xD83D * 31 + 0xDE00);
    }
}
