//! The leader's view of one partition's replication.

use std::collections::BTreeMap;

use crate::BrokerId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderConfig {
    /// `replica.lag.time.max.ms`: a follower that has not caught up with the leader's log end
    /// for this long leaves the ISR.
    pub replica_lag_time_max_ms: i64,
    /// `min.insync.replicas` of the topic.
    pub min_insync_replicas: usize,
}

/// An ISR change the leader proposes to the controller (AlterPartition), fenced by the leader
/// epoch and partition epoch it was computed at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrProposal {
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<BrokerId>,
}

/// Whether an acks=all produce may append (checked before the append).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendCheck {
    Ok,
    /// NOT_ENOUGH_REPLICAS: the ISR is smaller than `min.insync.replicas`.
    NotEnoughReplicas {
        isr: usize,
        min_insync: usize,
    },
}

/// Where an acks=all produce whose last offset is `last_offset` stands (after the append).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckStatus {
    /// Every ISR member has the batch (the high watermark passed it) and the ISR is at least
    /// `min.insync.replicas`.
    Done,
    /// The high watermark passed the batch, but the ISR shrank below `min.insync.replicas`
    /// (NOT_ENOUGH_REPLICAS_AFTER_APPEND).
    NotEnoughReplicasAfterAppend,
    /// Not replicated to the whole ISR yet.
    Waiting,
}

/// What the leader knows about one follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerProgress {
    /// The follower's log end offset (its last fetch offset), `-1` when unknown (no fetch yet
    /// in this leader epoch).
    pub log_end_offset: i64,
    /// Last time the follower was caught up with the leader's log end, or `i64::MIN` when it
    /// never was during this leadership.
    pub last_caught_up_ms: i64,
    /// Time of the follower's last fetch in this leadership, `i64::MIN` before the first.
    pub last_fetch_ms: i64,
    /// The leader's log end offset when the follower last fetched, `-1` before the first fetch.
    pub leader_leo_at_last_fetch: i64,
}

/// The leader's replication state for one partition during one leader epoch.
///
/// Invariants: the high watermark never decreases; it is the minimum log end offset over the
/// *maximal* ISR (the committed ISR plus members of an expansion in flight, KIP-497), the
/// leader's own log end offset included.
///
/// An expansion whose request failed without saying whether the controller applied it stays
/// in the maximal ISR until the image moves past its partition epoch (a stale-epoch answer to
/// a retry may mean the first attempt was applied). A follower in the maximal ISR whose log
/// end offset is unknown (`-1`) holds the high watermark where it is until it fetches. An ISR
/// from the image that lacks the leader is treated as if it contained it.
#[derive(Debug, Clone)]
pub struct LeaderState {
    self_id: BrokerId,
    leader_epoch: i32,
    partition_epoch: i32,
    config: LeaderConfig,
    /// The assigned replicas, as in the image.
    replicas: Vec<BrokerId>,
    /// The committed ISR, always containing `self_id`.
    isr: Vec<BrokerId>,
    /// The leader's own log end offset.
    leader_leo: i64,
    /// The log end offset when this leadership began (the leader epoch's start offset).
    epoch_start_offset: i64,
    high_watermark: i64,
    /// Every replica other than the leader (assigned or in the ISR).
    followers: BTreeMap<BrokerId, FollowerProgress>,
    /// The proposal sent to the controller and not answered yet.
    in_flight: Option<IsrProposal>,
    /// Members added by expansions at the current partition epoch whose outcome is unknown
    /// (the request failed in a way that does not say whether the controller applied it).
    /// They keep counting for the high watermark until the image moves past this partition
    /// epoch, which tells whether they joined.
    uncertain: Vec<BrokerId>,
}

fn ensure_member(isr: &mut Vec<BrokerId>, id: BrokerId) {
    if !isr.contains(&id) {
        isr.push(id);
    }
}

fn dedup(ids: Vec<BrokerId>) -> Vec<BrokerId> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        ensure_member(&mut out, id);
    }
    out
}

impl FollowerProgress {
    fn unknown(caught_up_ms: i64) -> FollowerProgress {
        FollowerProgress {
            log_end_offset: UNKNOWN_OFFSET,
            last_caught_up_ms: caught_up_ms,
            last_fetch_ms: i64::MIN,
            leader_leo_at_last_fetch: UNKNOWN_OFFSET,
        }
    }
}

const UNKNOWN_OFFSET: i64 = -1;

impl LeaderState {
    /// Becomes leader. `leader_leo` is the local log end offset, which is also the start offset
    /// of this leader epoch; `high_watermark` is the local high watermark (from the follower
    /// state or the checkpoint). Followers start with unknown log end offsets; those in the
    /// ISR count as caught up at `now_ms` (they get `replica.lag.time.max.ms` to show up).
    ///
    /// The high watermark is brought forward at once when the ISR allows it (with an ISR of
    /// one it becomes `leader_leo`); a `high_watermark` above `leader_leo` is capped to it.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        self_id: BrokerId,
        leader_epoch: i32,
        partition_epoch: i32,
        replicas: Vec<BrokerId>,
        isr: Vec<BrokerId>,
        leader_leo: i64,
        high_watermark: i64,
        now_ms: i64,
        config: LeaderConfig,
    ) -> LeaderState {
        let mut isr = dedup(isr);
        ensure_member(&mut isr, self_id);
        let replicas = dedup(replicas);
        let mut followers = BTreeMap::new();
        for &id in replicas.iter().chain(isr.iter()) {
            if id != self_id {
                let caught_up = if isr.contains(&id) { now_ms } else { i64::MIN };
                followers
                    .entry(id)
                    .or_insert_with(|| FollowerProgress::unknown(caught_up));
            }
        }
        let mut state = LeaderState {
            self_id,
            leader_epoch,
            partition_epoch,
            config,
            replicas,
            isr,
            leader_leo,
            epoch_start_offset: leader_leo,
            high_watermark: high_watermark.min(leader_leo),
            followers,
            in_flight: None,
            uncertain: Vec::new(),
        };
        state.maybe_advance_hw();
        state
    }

    /// The metadata image has a newer partition state for the same leader epoch (an ISR change
    /// committed, by this leader's proposal or otherwise, or new replicas). Clears an in-flight
    /// proposal when `partition_epoch` moved past it. Returns the new high watermark if it
    /// advanced.
    ///
    /// A state older than the one already applied (a lower `partition_epoch`) is ignored.
    /// Followers that are new to the ISR without this leader's proposal count as caught up at
    /// `now_ms`; progress of replicas that left the assignment is dropped.
    pub fn update_partition(
        &mut self,
        partition_epoch: i32,
        replicas: Vec<BrokerId>,
        isr: Vec<BrokerId>,
        now_ms: i64,
    ) -> Option<i64> {
        if partition_epoch < self.partition_epoch {
            return None;
        }
        if partition_epoch > self.partition_epoch {
            // Any proposal (in flight or of unknown outcome) was computed at an older partition
            // epoch: it is either part of this state or can never be applied.
            self.in_flight = None;
            self.uncertain.clear();
        }
        self.partition_epoch = partition_epoch;
        let mut isr = dedup(isr);
        ensure_member(&mut isr, self.self_id);
        self.replicas = dedup(replicas);
        let self_id = self.self_id;
        let (replicas_now, isr_now) = (&self.replicas, &isr);
        self.followers
            .retain(|id, _| replicas_now.contains(id) || isr_now.contains(id));
        for &id in self.replicas.iter().chain(isr.iter()) {
            if id == self_id {
                continue;
            }
            let newly_in_isr = isr.contains(&id) && !self.isr.contains(&id);
            let progress = self
                .followers
                .entry(id)
                .or_insert_with(|| FollowerProgress::unknown(i64::MIN));
            if newly_in_isr {
                progress.last_caught_up_ms = progress.last_caught_up_ms.max(now_ms);
            }
        }
        self.isr = isr;
        self.maybe_advance_hw()
    }

    pub fn set_config(&mut self, config: LeaderConfig) {
        self.config = config;
    }

    pub fn config(&self) -> LeaderConfig {
        self.config
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    pub fn partition_epoch(&self) -> i32 {
        self.partition_epoch
    }

    /// The leader's log end offset as last reported to this state.
    pub fn leader_leo(&self) -> i64 {
        self.leader_leo
    }

    /// The start offset of this leader epoch (the leader's log end offset when it became
    /// leader); a follower must reach it to join the ISR.
    pub fn epoch_start_offset(&self) -> i64 {
        self.epoch_start_offset
    }

    /// The committed ISR.
    pub fn isr(&self) -> &[BrokerId] {
        &self.isr
    }

    /// The committed ISR plus the members of an expansion in flight (including expansions
    /// whose outcome is not known yet, see [`LeaderState::isr_change_failed`]).
    pub fn maximal_isr(&self) -> Vec<BrokerId> {
        let mut out = self.isr.clone();
        if let Some(p) = &self.in_flight {
            for &id in &p.new_isr {
                ensure_member(&mut out, id);
            }
        }
        for &id in &self.uncertain {
            ensure_member(&mut out, id);
        }
        out
    }

    /// The proposal sent and not answered yet, if any.
    pub fn in_flight(&self) -> Option<&IsrProposal> {
        self.in_flight.as_ref()
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    pub fn follower(&self, id: BrokerId) -> Option<FollowerProgress> {
        self.followers.get(&id).copied()
    }

    /// The leader appended; `leader_leo` is its new log end offset. Returns the new high
    /// watermark if it advanced (with an ISR of one it follows the log end).
    pub fn on_leader_append(&mut self, leader_leo: i64) -> Option<i64> {
        self.leader_leo = leader_leo;
        self.maybe_advance_hw()
    }

    /// A follower fetched at `fetch_offset` (its log end) while the leader's log end was
    /// `leader_leo`. Updates its progress and caught-up time (Kafka's rule: caught up now if
    /// `fetch_offset >= leader_leo`, else at its previous fetch if `fetch_offset` reaches the
    /// leader's log end at that fetch). Returns the new high watermark if it advanced. Fetches
    /// from brokers that are not replicas are ignored.
    ///
    /// Call this only for fetches that passed the KIP-320 check (no diverging epoch): a
    /// diverging follower's fetch offset says nothing about which records it has. A fetch
    /// offset beyond `leader_leo` cannot pass that check and is ignored too.
    pub fn on_follower_fetch(
        &mut self,
        follower: BrokerId,
        fetch_offset: i64,
        leader_leo: i64,
        now_ms: i64,
    ) -> Option<i64> {
        if fetch_offset > leader_leo || fetch_offset < 0 {
            return None;
        }
        let progress = self.followers.get_mut(&follower)?;
        let caught_up = if fetch_offset >= leader_leo {
            progress.last_caught_up_ms.max(now_ms)
        } else if fetch_offset >= progress.leader_leo_at_last_fetch {
            progress.last_caught_up_ms.max(progress.last_fetch_ms)
        } else {
            progress.last_caught_up_ms
        };
        *progress = FollowerProgress {
            log_end_offset: fetch_offset,
            last_caught_up_ms: caught_up,
            last_fetch_ms: now_ms,
            leader_leo_at_last_fetch: leader_leo.max(progress.leader_leo_at_last_fetch),
        };
        self.maybe_advance_hw()
    }

    /// The ISR change to propose now, if any and none is in flight: shrink away followers
    /// not caught up for more than `replica.lag.time.max.ms` (never removing the leader), or
    /// expand with a follower whose log end is at least the high watermark and at least this
    /// leader epoch's start offset. Marks the proposal in flight.
    ///
    /// A shrink goes first when both apply; an expansion adds one follower (one whose earlier
    /// expansion had an unknown outcome, see [`LeaderState::isr_change_failed`], else the first
    /// eligible one in assignment order), and only one that fetched within
    /// `replica.lag.time.max.ms` (Kafka decides expansions on the follower's fetch; a polled
    /// decision on a silent follower's old log end would re-add a dead follower on an idle
    /// partition right after shrinking it away). The proposal carries the leader epoch and
    /// partition epoch it was computed at.
    pub fn isr_change(&mut self, now_ms: i64) -> Option<IsrProposal> {
        if self.in_flight.is_some() {
            return None;
        }
        let lag = self.config.replica_lag_time_max_ms;
        let out_of_sync: Vec<BrokerId> = self
            .isr
            .iter()
            .copied()
            .filter(|&id| id != self.self_id)
            .filter(|id| {
                self.followers
                    .get(id)
                    .is_none_or(|p| now_ms.saturating_sub(p.last_caught_up_ms) > lag)
            })
            .collect();
        let new_isr = if !out_of_sync.is_empty() {
            self.isr
                .iter()
                .copied()
                .filter(|id| !out_of_sync.contains(id))
                .collect()
        } else {
            // An expansion of unknown outcome is proposed again first, whether or not the
            // follower still fetches: its answer (or any newer image) settles whether it
            // joined, and until then it holds the high watermark.
            let uncertain = self
                .uncertain
                .iter()
                .copied()
                .find(|id| !self.isr.contains(id));
            let candidate = uncertain.or_else(|| {
                self.replicas.iter().copied().find(|&id| {
                    id != self.self_id
                        && !self.isr.contains(&id)
                        && self.followers.get(&id).is_some_and(|p| {
                            p.log_end_offset != UNKNOWN_OFFSET
                                && now_ms.saturating_sub(p.last_fetch_ms) <= lag
                                && p.log_end_offset >= self.high_watermark
                                && p.log_end_offset >= self.epoch_start_offset
                        })
                })
            })?;
            let mut isr = self.isr.clone();
            isr.push(candidate);
            isr
        };
        let proposal = IsrProposal {
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
            new_isr,
        };
        self.in_flight = Some(proposal.clone());
        Some(proposal)
    }

    /// The in-flight proposal failed (it may be proposed again); an error that says the
    /// partition epoch is stale waits for the image instead (the caller just calls this and
    /// the next `update_partition`).
    ///
    /// Use this for every failure that does not prove the controller left the ISR unchanged
    /// (a timeout, a lost connection, a stale partition epoch, no active controller): the
    /// members an expansion would have added keep counting for the high watermark until the
    /// image shows a newer partition epoch, since the controller may have applied it; the
    /// next [`LeaderState::isr_change`] proposes that expansion again, so that the answer
    /// settles it even if the follower has stopped fetching.
    pub fn isr_change_failed(&mut self) {
        if let Some(p) = self.in_flight.take() {
            if p.partition_epoch == self.partition_epoch {
                for id in p.new_isr {
                    if !self.isr.contains(&id) {
                        ensure_member(&mut self.uncertain, id);
                    }
                }
            }
        }
    }

    /// The controller answered that it did not apply the in-flight proposal and will not
    /// (Kafka's INELIGIBLE_REPLICA / OPERATION_NOT_ATTEMPTED; Runnel's `IneligibleReplica`
    /// and `InvalidRequest`): the committed ISR stands at this partition epoch, so the
    /// proposal and earlier attempts of unknown outcome are forgotten, and it may be proposed
    /// again. Returns the new high watermark if it advanced.
    ///
    /// This relies on the controller never applying an older request of this leader after
    /// answering a newer one (requests are sent one at a time, as in Kafka).
    pub fn isr_change_rejected(&mut self) -> Option<i64> {
        self.in_flight = None;
        self.uncertain.clear();
        self.maybe_advance_hw()
    }

    /// Whether an acks=all produce may append now.
    pub fn check_append(&self) -> AppendCheck {
        let min_insync = self.config.min_insync_replicas;
        if self.isr.len() < min_insync {
            AppendCheck::NotEnoughReplicas {
                isr: self.isr.len(),
                min_insync,
            }
        } else {
            AppendCheck::Ok
        }
    }

    /// Where an acks=all produce that ended at `last_offset` stands.
    pub fn ack_status(&self, last_offset: i64) -> AckStatus {
        if self.high_watermark > last_offset {
            if self.isr.len() >= self.config.min_insync_replicas {
                AckStatus::Done
            } else {
                AckStatus::NotEnoughReplicasAfterAppend
            }
        } else {
            AckStatus::Waiting
        }
    }

    /// Raises the high watermark to the minimum log end offset over the maximal ISR, if that
    /// is higher. A member with an unknown log end offset holds it where it is.
    fn maybe_advance_hw(&mut self) -> Option<i64> {
        let mut candidate = self.leader_leo;
        for id in self.maximal_isr() {
            if id == self.self_id {
                continue;
            }
            let leo = self
                .followers
                .get(&id)
                .map_or(UNKNOWN_OFFSET, |p| p.log_end_offset);
            if leo == UNKNOWN_OFFSET {
                return None;
            }
            candidate = candidate.min(leo);
        }
        if candidate > self.high_watermark {
            self.high_watermark = candidate;
            Some(candidate)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LAG: i64 = 1_000;

    fn cfg(min_insync: usize) -> LeaderConfig {
        LeaderConfig {
            replica_lag_time_max_ms: LAG,
            min_insync_replicas: min_insync,
        }
    }

    /// Leader 1 of replicas [1, 2, 3], leader epoch 5, partition epoch 7, at time 0.
    fn leader(isr: &[BrokerId], leo: i64, hw: i64) -> LeaderState {
        LeaderState::new(1, 5, 7, vec![1, 2, 3], isr.to_vec(), leo, hw, 0, cfg(2))
    }

    #[test]
    fn new_leader_with_isr_of_one_follows_its_log_end() {
        let mut s = leader(&[1], 10, 4);
        assert_eq!(s.high_watermark(), 10);
        assert_eq!(s.epoch_start_offset(), 10);
        assert_eq!(s.on_leader_append(12), Some(12));
        assert_eq!(s.on_leader_append(12), None);
        assert_eq!(s.high_watermark(), 12);
    }

    #[test]
    fn new_leader_keeps_its_hw_until_followers_show_up() {
        let s = leader(&[1, 2, 3], 10, 4);
        assert_eq!(s.high_watermark(), 4);
        let p = s.follower(2).unwrap();
        assert_eq!(p.log_end_offset, -1);
        assert_eq!(
            p.last_caught_up_ms, 0,
            "ISR members count as caught up at start"
        );
        assert_eq!(p.last_fetch_ms, i64::MIN);
        assert_eq!(p.leader_leo_at_last_fetch, -1);
        assert_eq!(s.follower(1), None, "the leader is not a follower");
        // A high watermark above the log end is capped.
        assert_eq!(leader(&[1, 2], 10, 15).high_watermark(), 10);
        // Not in the ISR: never caught up.
        assert_eq!(
            leader(&[1, 2], 10, 4)
                .follower(3)
                .unwrap()
                .last_caught_up_ms,
            i64::MIN
        );
    }

    #[test]
    fn an_isr_without_the_leader_is_treated_as_containing_it() {
        let mut s = LeaderState::new(1, 5, 7, vec![1, 2, 3], vec![2], 10, 0, 0, cfg(2));
        assert_eq!(s.isr(), &[2, 1]);
        assert_eq!(s.check_append(), AppendCheck::Ok);
        assert_eq!(s.on_follower_fetch(2, 10, 10, 1), Some(10));
        s.update_partition(8, vec![1, 2, 3], vec![3], 2);
        assert_eq!(s.isr(), &[3, 1]);
        // Shrinking never removes the leader.
        let p = s.isr_change(10 * LAG).unwrap();
        assert_eq!(p.new_isr, vec![1]);
    }

    #[test]
    fn hw_is_the_min_over_the_isr_and_never_decreases() {
        let mut s = leader(&[1, 2, 3], 10, 0);
        assert_eq!(s.on_follower_fetch(2, 10, 10, 1), None, "3 is unknown");
        assert_eq!(s.high_watermark(), 0);
        assert_eq!(s.on_follower_fetch(3, 6, 10, 1), Some(6));
        assert_eq!(s.on_follower_fetch(3, 8, 10, 2), Some(8));
        assert_eq!(s.on_leader_append(20), None);
        assert_eq!(s.on_follower_fetch(2, 20, 20, 3), None, "3 holds it at 8");
        assert_eq!(s.on_follower_fetch(3, 15, 20, 3), Some(15));
        // A follower reporting less (it truncated) does not move the high watermark back.
        assert_eq!(s.on_follower_fetch(3, 12, 20, 4), None);
        assert_eq!(s.high_watermark(), 15);
        assert_eq!(s.on_follower_fetch(3, 20, 20, 5), Some(20));
        // A replica outside the ISR does not count.
        let mut s = leader(&[1, 2], 10, 0);
        assert_eq!(s.on_follower_fetch(2, 9, 10, 1), Some(9));
        assert_eq!(s.follower(3).unwrap().log_end_offset, -1);
    }

    #[test]
    fn fetches_from_non_replicas_and_beyond_the_log_end_are_ignored() {
        let mut s = leader(&[1, 2], 10, 0);
        assert_eq!(s.on_follower_fetch(9, 10, 10, 1), None);
        assert_eq!(s.follower(9), None);
        assert_eq!(s.on_follower_fetch(1, 10, 10, 1), None, "the leader itself");
        assert_eq!(s.on_follower_fetch(2, 11, 10, 1), None);
        assert_eq!(s.follower(2).unwrap().log_end_offset, -1);
        assert_eq!(s.high_watermark(), 0);
    }

    /// Kafka's `Replica.updateFetchState`: caught up now when the fetch reaches the leader's
    /// log end, else caught up at the previous fetch when it reaches the leader's log end as
    /// of that fetch.
    #[test]
    fn caught_up_time_rule() {
        // (fetch_offset, leader_leo, now, expected last_caught_up_ms); follower 3 starts
        // outside the ISR (never caught up).
        let steps: &[(i64, i64, i64, i64)] = &[
            (0, 10, 100, i64::MIN), // behind, and no previous fetch
            (5, 12, 200, i64::MIN), // 5 < 10 (leader's end at the previous fetch)
            (12, 15, 300, 200),     // 12 >= 12: caught up as of the previous fetch
            (15, 15, 400, 400),     // at the leader's end: caught up now
            (16, 20, 500, 400),     // 16 >= 15: caught up at 400 (already)
            (18, 25, 600, 400),     // 18 < 20
            (24, 30, 700, 400),     // 24 < 25
            (30, 31, 800, 700),     // 30 >= 30
            (31, 31, 900, 900),
        ];
        let mut s = leader(&[1, 2], 10, 0);
        let mut prev_leo = -1;
        for &(fetch_offset, leader_leo, now, expected) in steps {
            s.on_leader_append(leader_leo);
            s.on_follower_fetch(3, fetch_offset, leader_leo, now);
            let p = s.follower(3).unwrap();
            assert_eq!(
                p.last_caught_up_ms, expected,
                "fetch {fetch_offset} at {now}"
            );
            assert_eq!(p.last_fetch_ms, now);
            assert_eq!(p.log_end_offset, fetch_offset);
            assert!(p.leader_leo_at_last_fetch >= prev_leo);
            prev_leo = p.leader_leo_at_last_fetch;
        }
    }

    #[test]
    fn shrink_after_lag_and_the_old_isr_counts_until_committed() {
        let mut s = leader(&[1, 2, 3], 10, 0);
        s.on_follower_fetch(2, 10, 10, 500);
        assert_eq!(s.isr_change(LAG), None, "3 got its lag time from the start");
        let p = s.isr_change(LAG + 1).unwrap();
        assert_eq!(
            p,
            IsrProposal {
                leader_epoch: 5,
                partition_epoch: 7,
                new_isr: vec![1, 2]
            }
        );
        assert_eq!(
            s.isr_change(LAG + 2),
            None,
            "one proposal in flight at a time"
        );
        assert_eq!(
            s.maximal_isr(),
            vec![1, 2, 3],
            "a pending shrink keeps the old ISR"
        );
        assert_eq!(s.high_watermark(), 0, "3 still holds the high watermark");
        assert_eq!(s.check_append(), AppendCheck::Ok);
        // Committed: the high watermark moves on without 3.
        assert_eq!(
            s.update_partition(8, vec![1, 2, 3], vec![1, 2], LAG + 3),
            Some(10)
        );
        assert_eq!(s.in_flight(), None);
        assert_eq!(s.isr(), &[1, 2]);
        assert_eq!(s.partition_epoch(), 8);
        // 2 goes quiet too: the ISR shrinks to the leader alone, never past it.
        let p = s.isr_change(500 + LAG + 1).unwrap();
        assert_eq!(p.new_isr, vec![1]);
        assert_eq!(p.partition_epoch, 8);
        s.update_partition(9, vec![1, 2, 3], vec![1], 2_000);
        // 2's log end still reaches the high watermark, but it has not fetched for longer
        // than the lag time: it does not come back (no shrink/expand flapping).
        assert_eq!(s.isr_change(100_000), None);
        assert_eq!(
            s.check_append(),
            AppendCheck::NotEnoughReplicas {
                isr: 1,
                min_insync: 2
            }
        );
    }

    #[test]
    fn followers_that_keep_up_stay() {
        let mut s = leader(&[1, 2, 3], 0, 0);
        for t in 1..50 {
            let leo = t * 3;
            s.on_leader_append(leo);
            // 2 is always at the end; 3 trails by one append but reaches the previous end.
            s.on_follower_fetch(2, leo, leo, t * 400);
            s.on_follower_fetch(3, leo - 3, leo, t * 400);
            assert_eq!(s.isr_change(t * 400), None, "at {t}");
        }
        assert_eq!(s.follower(3).unwrap().last_caught_up_ms, 48 * 400);
    }

    #[test]
    fn expand_needs_the_hw_and_the_epoch_start() {
        // Leader epoch starts at 10; the high watermark is 4.
        let mut s = leader(&[1, 2], 10, 4);
        s.on_follower_fetch(3, 3, 10, 1);
        assert_eq!(s.isr_change(2), None, "below the high watermark");
        s.on_follower_fetch(3, 8, 10, 3);
        assert_eq!(s.isr_change(4), None, "below the epoch start offset");
        s.on_follower_fetch(2, 10, 10, 5);
        assert_eq!(s.high_watermark(), 10);
        s.on_leader_append(20);
        s.on_follower_fetch(2, 20, 20, 6);
        assert_eq!(s.high_watermark(), 20);
        s.on_follower_fetch(3, 10, 20, 7);
        assert_eq!(
            s.isr_change(8),
            None,
            "at the epoch start, below the high watermark"
        );
        s.on_follower_fetch(3, 20, 20, 9);
        let p = s.isr_change(10).unwrap();
        assert_eq!(p.new_isr, vec![1, 2, 3]);
        assert_eq!(s.maximal_isr(), vec![1, 2, 3]);
        assert_eq!(s.isr(), &[1, 2]);
        // The pending member holds the high watermark (KIP-497).
        s.on_leader_append(30);
        s.on_follower_fetch(2, 30, 30, 11);
        s.on_follower_fetch(3, 25, 30, 11);
        assert_eq!(s.high_watermark(), 25);
        assert_eq!(
            s.update_partition(8, vec![1, 2, 3], vec![1, 2, 3], 12),
            None
        );
        assert_eq!(s.in_flight(), None);
        assert_eq!(s.on_follower_fetch(3, 30, 30, 13), Some(30));
    }

    #[test]
    fn shrink_goes_before_expand() {
        let mut s = leader(&[1, 2], 10, 10);
        s.on_follower_fetch(3, 10, 10, LAG + 1);
        let p = s.isr_change(LAG + 1).unwrap();
        assert_eq!(p.new_isr, vec![1], "2 never fetched");
        s.update_partition(8, vec![1, 2, 3], vec![1], LAG + 2);
        let p = s.isr_change(LAG + 3).unwrap();
        assert_eq!(p.new_isr, vec![1, 3]);
        assert_eq!(p.partition_epoch, 8);
    }

    #[test]
    fn failed_proposals_may_be_retried_and_uncertain_members_keep_counting() {
        let mut s = leader(&[1, 2], 10, 10);
        s.on_follower_fetch(2, 10, 10, 1);
        s.on_follower_fetch(3, 10, 10, 1);
        let p = s.isr_change(2).unwrap();
        assert_eq!(p.new_isr, vec![1, 2, 3]);
        // A timeout: the controller may have applied it.
        s.isr_change_failed();
        assert_eq!(s.in_flight(), None);
        assert_eq!(s.maximal_isr(), vec![1, 2, 3]);
        s.on_leader_append(20);
        s.on_follower_fetch(2, 20, 20, 3);
        assert_eq!(s.high_watermark(), 10, "3 may be in the ISR");
        // Proposed again, unchanged.
        assert_eq!(s.isr_change(4), Some(p.clone()));
        s.isr_change_failed();
        // The image moves on without 3: it did not join.
        assert_eq!(
            s.update_partition(8, vec![1, 2, 3], vec![1, 2], 5),
            Some(20)
        );
        assert_eq!(s.maximal_isr(), vec![1, 2]);

        // A definite refusal forgets the member at once.
        let mut s = leader(&[1, 2], 10, 10);
        s.on_follower_fetch(2, 10, 10, 1);
        s.on_follower_fetch(3, 10, 10, 1);
        s.isr_change(2).unwrap();
        s.isr_change_failed();
        s.isr_change(3).unwrap();
        s.on_leader_append(20);
        s.on_follower_fetch(2, 20, 20, 3);
        assert_eq!(s.isr_change_rejected(), Some(20));
        assert_eq!(s.maximal_isr(), vec![1, 2]);
        assert_eq!(s.in_flight(), None);

        // A member of unknown outcome that stopped fetching is still proposed again (else it
        // would hold the high watermark until some other change of the partition).
        let mut s = leader(&[1, 2], 10, 10);
        s.on_follower_fetch(2, 10, 10, 1);
        s.on_follower_fetch(3, 10, 10, 1);
        s.isr_change(2).unwrap();
        s.isr_change_failed();
        s.on_leader_append(20);
        s.on_follower_fetch(2, 20, 20, 10 * LAG);
        let p = s.isr_change(10 * LAG).unwrap();
        assert_eq!(p.new_isr, vec![1, 2, 3]);
        // Fenced meanwhile: the controller refuses, and the high watermark moves on.
        assert_eq!(s.isr_change_rejected(), Some(20));
        assert_eq!(
            s.isr_change(10 * LAG),
            None,
            "3 is silent: not proposed again"
        );

        // A failed shrink leaves nothing behind.
        let mut s = leader(&[1, 2, 3], 10, 10);
        s.on_follower_fetch(2, 10, 10, LAG);
        assert_eq!(s.isr_change(LAG + 1).unwrap().new_isr, vec![1, 2]);
        s.isr_change_failed();
        assert_eq!(s.maximal_isr(), vec![1, 2, 3]);
        assert_eq!(s.isr_change(LAG + 2).unwrap().new_isr, vec![1, 2]);
    }

    #[test]
    fn update_partition_epochs() {
        let mut s = leader(&[1, 2, 3], 10, 10);
        s.on_follower_fetch(2, 10, 10, 1);
        s.isr_change(LAG + 1).unwrap();
        // Same partition epoch: the proposal stays in flight.
        s.update_partition(7, vec![1, 2, 3], vec![1, 2, 3], LAG + 2);
        assert!(s.in_flight().is_some());
        // Older: ignored.
        s.update_partition(6, vec![1, 2, 3], vec![1], LAG + 3);
        assert_eq!(s.isr(), &[1, 2, 3]);
        assert!(s.in_flight().is_some());
        // Newer, by another change (another replica added): the proposal is void.
        s.update_partition(8, vec![1, 2, 3, 4], vec![1, 2, 3], LAG + 4);
        assert_eq!(s.in_flight(), None);
        assert_eq!(s.follower(4).unwrap().last_caught_up_ms, i64::MIN);
        // Replica 3 leaves the assignment and the ISR: its progress goes.
        s.update_partition(9, vec![1, 2, 4], vec![1, 2], LAG + 5);
        assert_eq!(s.follower(3), None);
        assert_eq!(s.on_follower_fetch(3, 10, 10, LAG + 6), None);
        // A member added by someone else gets its lag time from now.
        s.update_partition(10, vec![1, 2, 4], vec![1, 2, 4], 5 * LAG);
        assert_eq!(s.follower(4).unwrap().last_caught_up_ms, 5 * LAG);
        // 2 has not been caught up since time 1; 4 still has its lag time.
        assert_eq!(s.isr_change(6 * LAG).unwrap().new_isr, vec![1, 4]);
    }

    #[test]
    fn acks_statuses() {
        let mut s = leader(&[1, 2, 3], 10, 10);
        s.on_leader_append(15);
        s.on_follower_fetch(2, 15, 15, 1);
        s.on_follower_fetch(3, 12, 15, 1);
        assert_eq!(s.high_watermark(), 12);
        let table = [
            (9, AckStatus::Done),
            (11, AckStatus::Done),
            (12, AckStatus::Waiting),
            (14, AckStatus::Waiting),
        ];
        for (last, expected) in table {
            assert_eq!(s.ack_status(last), expected, "last offset {last}");
        }
        // The ISR shrinks to one below min.insync.replicas = 2.
        s.update_partition(8, vec![1, 2, 3], vec![1], 2);
        assert_eq!(s.high_watermark(), 15);
        assert_eq!(s.ack_status(14), AckStatus::NotEnoughReplicasAfterAppend);
        assert_eq!(s.ack_status(15), AckStatus::Waiting);
        assert_eq!(
            s.check_append(),
            AppendCheck::NotEnoughReplicas {
                isr: 1,
                min_insync: 2
            }
        );
        s.set_config(cfg(1));
        assert_eq!(s.check_append(), AppendCheck::Ok);
        assert_eq!(s.ack_status(14), AckStatus::Done);
        assert_eq!(s.config(), cfg(1));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Append(i64),
        Fetch(BrokerId, i64),
        Tick(i64),
        Change,
        Failed,
        Rejected,
        Commit,
        Image(Vec<BrokerId>),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1i64..5).prop_map(Op::Append),
            (1..5i32, 0i64..40).prop_map(|(f, o)| Op::Fetch(f, o)),
            (0i64..800).prop_map(Op::Tick),
            Just(Op::Change),
            Just(Op::Failed),
            Just(Op::Rejected),
            Just(Op::Commit),
            proptest::collection::vec(1..4i32, 0..4).prop_map(Op::Image),
        ]
    }

    proptest! {
        /// Whatever happens, the high watermark never decreases, never passes the leader's log
        /// end, and only passes offsets every maximal-ISR member reported; the leader stays in
        /// the ISR; proposals carry the current epochs.
        #[test]
        fn random_operations_keep_invariants(
            isr in proptest::collection::vec(1..4i32, 0..4),
            ops in proptest::collection::vec(op(), 0..80),
        ) {
            let mut s = LeaderState::new(1, 3, 1, vec![1, 2, 3], isr, 5, 2, 0, cfg(2));
            let mut leo = 5;
            let mut now = 0;
            let mut hw = s.high_watermark();
            for op in ops {
                match op {
                    Op::Append(n) => { leo += n; s.on_leader_append(leo); }
                    Op::Fetch(f, o) => { s.on_follower_fetch(f, o.min(leo), leo, now); }
                    Op::Tick(d) => now += d,
                    Op::Change => {
                        if let Some(p) = s.isr_change(now) {
                            prop_assert_eq!(p.leader_epoch, 3);
                            prop_assert_eq!(p.partition_epoch, s.partition_epoch());
                            prop_assert!(p.new_isr.contains(&1));
                            prop_assert!(p.new_isr != s.isr());
                        }
                    }
                    Op::Failed => s.isr_change_failed(),
                    Op::Rejected => { s.isr_change_rejected(); }
                    Op::Commit => {
                        if let Some(p) = s.in_flight().cloned() {
                            s.update_partition(p.partition_epoch + 1, vec![1, 2, 3], p.new_isr, now);
                        }
                    }
                    Op::Image(isr) => {
                        let pe = s.partition_epoch() + 1;
                        s.update_partition(pe, vec![1, 2, 3], isr, now);
                    }
                }
                let new_hw = s.high_watermark();
                prop_assert!(new_hw >= hw, "high watermark went back from {} to {}", hw, new_hw);
                prop_assert!(new_hw <= leo);
                if new_hw > hw {
                    for id in s.maximal_isr() {
                        if id != 1 {
                            let f = s.follower(id).unwrap();
                            prop_assert!(f.log_end_offset >= new_hw, "{} at {:?}", id, f);
                        }
                    }
                }
                hw = new_hw;
                prop_assert!(s.isr().contains(&1));
                prop_assert!(s.maximal_isr().starts_with(s.isr()));
            }
        }
    }
}
