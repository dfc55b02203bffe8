//! KIP-320 divergence detection (leader side) and truncation (follower side).

use crate::EpochEndOffset;

/// Leader side: whether a follower fetching at `fetch_offset` whose last fetched batch had
/// epoch `last_fetched_epoch` diverges from the leader's log. `leader_end_for_epoch` is the
/// leader's `end_offset_for_epoch(last_fetched_epoch)`. Returns the diverging epoch and end
/// offset to send back, or `None` when the follower may read on from `fetch_offset`.
pub fn diverging_epoch(
    fetch_offset: i64,
    last_fetched_epoch: i32,
    leader_end_for_epoch: EpochEndOffset,
) -> Option<EpochEndOffset> {
    let _ = (fetch_offset, last_fetched_epoch, leader_end_for_epoch);
    todo!()
}

/// Where a follower truncates to after the leader answered with a diverging epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncation {
    /// Truncate the local log to this offset (no-op when at or above the log end).
    pub offset: i64,
    /// `false` when the follower must fetch again (with its now-latest epoch) because its
    /// epochs and the leader's did not line up yet.
    pub complete: bool,
}

/// Follower side (Kafka's `getOffsetTruncationState`): `diverging` is what the leader sent,
/// `local_end_for_epoch` is the follower's `end_offset_for_epoch(diverging.epoch)`,
/// `local_leo` its log end offset and `local_hw` its high watermark.
pub fn truncation(
    diverging: EpochEndOffset,
    local_end_for_epoch: EpochEndOffset,
    local_leo: i64,
    local_hw: i64,
) -> Truncation {
    let _ = (diverging, local_end_for_epoch, local_leo, local_hw);
    todo!()
}
