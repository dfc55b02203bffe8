//! KIP-320 divergence detection (leader side) and truncation (follower side).

use crate::{EpochEndOffset, UNDEFINED_EPOCH, UNDEFINED_OFFSET};

/// Leader side: whether a follower fetching at `fetch_offset` whose last fetched batch had
/// epoch `last_fetched_epoch` diverges from the leader's log. `leader_end_for_epoch` is the
/// leader's `end_offset_for_epoch(last_fetched_epoch)`. Returns the diverging epoch and end
/// offset to send back, or `None` when the follower may read on from `fetch_offset`.
///
/// As in Kafka's `Partition`: the logs diverge when the leader's largest epoch not above
/// `last_fetched_epoch` is another epoch (the leader never had `last_fetched_epoch`), or when
/// that epoch ends on the leader before `fetch_offset`. A follower without a last fetched
/// epoch (`UNDEFINED_EPOCH`: an empty log) is not checked. When the leader cannot tell where
/// the epoch ends (`leader_end_for_epoch` undefined, e.g. the follower names an epoch newer
/// than any the leader knows) the answer is [`EpochEndOffset::UNDEFINED`], on which
/// [`truncation`] falls back to the follower's high watermark (newer Kafka answers
/// OFFSET_OUT_OF_RANGE here).
pub fn diverging_epoch(
    fetch_offset: i64,
    last_fetched_epoch: i32,
    leader_end_for_epoch: EpochEndOffset,
) -> Option<EpochEndOffset> {
    if last_fetched_epoch == UNDEFINED_EPOCH {
        return None;
    }
    if leader_end_for_epoch.epoch == UNDEFINED_EPOCH
        || leader_end_for_epoch.end_offset == UNDEFINED_OFFSET
    {
        return Some(EpochEndOffset::UNDEFINED);
    }
    if leader_end_for_epoch.epoch != last_fetched_epoch
        || leader_end_for_epoch.end_offset < fetch_offset
    {
        Some(leader_end_for_epoch)
    } else {
        None
    }
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
///
/// - The leader's end offset is undefined: truncate to the local high watermark.
/// - The leader's epoch is undefined: truncate to the leader's end offset.
/// - The follower knows nothing about that epoch (`local_end_for_epoch` has no end offset):
///   truncate to the leader's end offset.
/// - The follower's largest epoch not above the leader's is another epoch: truncate to where
///   that epoch ends locally, incomplete (the next fetch carries the now-latest local epoch).
/// - Same epoch: truncate to the smaller of both ends, complete.
///
/// The offset never exceeds `local_leo`.
pub fn truncation(
    diverging: EpochEndOffset,
    local_end_for_epoch: EpochEndOffset,
    local_leo: i64,
    local_hw: i64,
) -> Truncation {
    let (offset, complete) = if diverging.end_offset == UNDEFINED_OFFSET {
        (local_hw, true)
    } else if diverging.epoch == UNDEFINED_EPOCH
        || local_end_for_epoch.end_offset == UNDEFINED_OFFSET
    {
        (diverging.end_offset, true)
    } else if local_end_for_epoch.epoch != diverging.epoch {
        (local_end_for_epoch.end_offset, false)
    } else {
        (
            diverging.end_offset.min(local_end_for_epoch.end_offset),
            true,
        )
    };
    Truncation {
        offset: offset.min(local_leo),
        complete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eo(epoch: i32, end_offset: i64) -> EpochEndOffset {
        EpochEndOffset { epoch, end_offset }
    }

    #[test]
    fn diverging_epoch_table() {
        const U: EpochEndOffset = EpochEndOffset::UNDEFINED;
        // (fetch_offset, last_fetched_epoch, leader's end_offset_for_epoch, expected)
        let cases: &[(i64, i32, EpochEndOffset, Option<EpochEndOffset>)] = &[
            // Same epoch, the leader's epoch ends at or after the fetch offset: read on.
            (10, 3, eo(3, 10), None),
            (10, 3, eo(3, 15), None),
            (0, 0, eo(0, 0), None),
            // Same epoch, but it ends earlier on the leader: the follower has extra records.
            (12, 3, eo(3, 10), Some(eo(3, 10))),
            // The leader never had epoch 4: its largest epoch not above 4 is 3.
            (12, 4, eo(3, 10), Some(eo(3, 10))),
            (8, 4, eo(3, 10), Some(eo(3, 10))),
            // The requested epoch is below the leader's first epoch: Kafka answers the
            // requested epoch with the start of the first known one.
            (5, 1, eo(1, 3), Some(eo(1, 3))),
            (3, 1, eo(1, 3), None),
            // A follower with an empty log sends no epoch: nothing to check.
            (0, UNDEFINED_EPOCH, U, None),
            (7, UNDEFINED_EPOCH, eo(2, 3), None),
            // The leader cannot say where the epoch ends.
            (10, 9, U, Some(U)),
            (10, 9, eo(UNDEFINED_EPOCH, 4), Some(U)),
        ];
        for &(fetch_offset, lfe, leader, expected) in cases {
            assert_eq!(
                diverging_epoch(fetch_offset, lfe, leader),
                expected,
                "fetch_offset={fetch_offset} last_fetched_epoch={lfe} leader={leader:?}"
            );
        }
    }

    #[test]
    fn truncation_table() {
        let t = |offset, complete| Truncation { offset, complete };
        const U: EpochEndOffset = EpochEndOffset::UNDEFINED;
        // (diverging, local_end_for_epoch, local_leo, local_hw, expected)
        let cases: &[(EpochEndOffset, EpochEndOffset, i64, i64, Truncation)] = &[
            // Leader's end offset undefined: back to the local high watermark.
            (U, eo(3, 20), 20, 7, t(7, true)),
            (eo(3, UNDEFINED_OFFSET), eo(3, 20), 20, 7, t(7, true)),
            // Leader's epoch undefined: the leader's offset, capped at the local end.
            (eo(UNDEFINED_EPOCH, 12), eo(3, 20), 20, 7, t(12, true)),
            (eo(UNDEFINED_EPOCH, 30), eo(3, 20), 20, 7, t(20, true)),
            // Same epoch on both sides: the smaller end.
            (eo(3, 10), eo(3, 14), 20, 5, t(10, true)),
            (eo(3, 14), eo(3, 10), 20, 5, t(10, true)),
            (eo(3, 14), eo(3, 14), 12, 5, t(12, true)),
            // The follower's largest epoch not above 4 is 2 (it never had 3 or 4): truncate to
            // the end of its epoch 2 and ask again.
            (eo(4, 30), eo(2, 18), 25, 5, t(18, false)),
            (eo(4, 30), eo(2, 18), 16, 5, t(16, false)),
            // The follower has no epoch at or below the leader's: the leader's offset.
            (eo(1, 8), U, 25, 5, t(8, true)),
            (eo(1, 40), U, 25, 5, t(25, true)),
            // Kafka's answer for an epoch below the first cached one: (requested, first start).
            (eo(1, 8), eo(1, 6), 25, 5, t(6, true)),
        ];
        for &(diverging, local, leo, hw, expected) in cases {
            assert_eq!(
                truncation(diverging, local, leo, hw),
                expected,
                "diverging={diverging:?} local={local:?} leo={leo} hw={hw}"
            );
        }
    }

    /// The KIP-279 case: a follower that missed whole epochs converges in several rounds.
    #[test]
    fn repeated_rounds_converge() {
        // Leader epochs: 0@0, 2@10, 5@20, LEO 30. Follower epochs: 0@0, 1@8, 3@12, LEO 16.
        let leader = [(0, 0i64), (2, 10), (5, 20)];
        let mut follower = vec![(0, 0i64), (1, 8), (3, 12)];
        let leader_leo = 30;
        let mut follower_leo = 16;
        fn end_for(cache: &[(i32, i64)], leo: i64, epoch: i32) -> EpochEndOffset {
            match cache.iter().rposition(|&(e, _)| e <= epoch) {
                None => EpochEndOffset::UNDEFINED,
                Some(i) if i + 1 == cache.len() => eo(cache[i].0, leo),
                Some(i) => eo(cache[i].0, cache[i + 1].1),
            }
        }
        for round in 0..10 {
            let lfe = follower.last().map_or(UNDEFINED_EPOCH, |&(e, _)| e);
            let Some(d) = diverging_epoch(follower_leo, lfe, end_for(&leader, leader_leo, lfe))
            else {
                // Converged: the follower's log is a prefix of the leader's.
                assert_eq!((follower_leo, lfe), (8, 0), "after {round} rounds");
                return;
            };
            let tr = truncation(
                d,
                end_for(&follower, follower_leo, d.epoch),
                follower_leo,
                0,
            );
            follower_leo = follower_leo.min(tr.offset);
            follower.retain(|&(_, start)| start < tr.offset);
        }
        panic!("did not converge");
    }
}
