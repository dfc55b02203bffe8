//! The leader's view of one partition's replication.

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
    pub last_fetch_ms: i64,
    /// The leader's log end offset when the follower last fetched.
    pub leader_leo_at_last_fetch: i64,
}

/// The leader's replication state for one partition during one leader epoch.
///
/// Invariants: the high watermark never decreases; it is the minimum log end offset over the
/// *maximal* ISR (the committed ISR plus members of an expansion in flight, KIP-497), the
/// leader's own log end offset included.
#[derive(Debug, Clone)]
pub struct LeaderState {
    // Filled in by the implementation.
    _private: (),
}

impl LeaderState {
    /// Becomes leader. `leader_leo` is the local log end offset, which is also the start offset
    /// of this leader epoch; `high_watermark` is the local high watermark (from the follower
    /// state or the checkpoint). Followers start with unknown log end offsets; those in the
    /// ISR count as caught up at `now_ms` (they get `replica.lag.time.max.ms` to show up).
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
        let _ = (
            self_id,
            leader_epoch,
            partition_epoch,
            replicas,
            isr,
            leader_leo,
            high_watermark,
            now_ms,
            config,
        );
        todo!("replication: LeaderState::new")
    }

    /// The metadata image has a newer partition state for the same leader epoch (an ISR change
    /// committed, by this leader's proposal or otherwise, or new replicas). Clears an in-flight
    /// proposal when `partition_epoch` moved past it. Returns the new high watermark if it
    /// advanced.
    pub fn update_partition(
        &mut self,
        partition_epoch: i32,
        replicas: Vec<BrokerId>,
        isr: Vec<BrokerId>,
        now_ms: i64,
    ) -> Option<i64> {
        let _ = (partition_epoch, replicas, isr, now_ms);
        todo!()
    }

    pub fn set_config(&mut self, config: LeaderConfig) {
        let _ = config;
        todo!()
    }

    pub fn leader_epoch(&self) -> i32 {
        todo!()
    }

    pub fn partition_epoch(&self) -> i32 {
        todo!()
    }

    /// The committed ISR.
    pub fn isr(&self) -> &[BrokerId] {
        todo!()
    }

    /// The committed ISR plus the members of an expansion in flight.
    pub fn maximal_isr(&self) -> Vec<BrokerId> {
        todo!()
    }

    pub fn high_watermark(&self) -> i64 {
        todo!()
    }

    pub fn follower(&self, id: BrokerId) -> Option<FollowerProgress> {
        let _ = id;
        todo!()
    }

    /// The leader appended; `leader_leo` is its new log end offset. Returns the new high
    /// watermark if it advanced (with an ISR of one it follows the log end).
    pub fn on_leader_append(&mut self, leader_leo: i64) -> Option<i64> {
        let _ = leader_leo;
        todo!()
    }

    /// A follower fetched at `fetch_offset` (its log end) while the leader's log end was
    /// `leader_leo`. Updates its progress and caught-up time (Kafka's rule: caught up now if
    /// `fetch_offset >= leader_leo`, else at its previous fetch if `fetch_offset` reaches the
    /// leader's log end at that fetch). Returns the new high watermark if it advanced. Fetches
    /// from brokers that are not replicas are ignored.
    pub fn on_follower_fetch(
        &mut self,
        follower: BrokerId,
        fetch_offset: i64,
        leader_leo: i64,
        now_ms: i64,
    ) -> Option<i64> {
        let _ = (follower, fetch_offset, leader_leo, now_ms);
        todo!()
    }

    /// The ISR change to propose now, if any and none is in flight: shrink away followers
    /// not caught up for more than `replica.lag.time.max.ms` (never removing the leader), or
    /// expand with a follower whose log end is at least the high watermark and at least this
    /// leader epoch's start offset. Marks the proposal in flight.
    pub fn isr_change(&mut self, now_ms: i64) -> Option<IsrProposal> {
        let _ = now_ms;
        todo!()
    }

    /// The in-flight proposal failed (it may be proposed again); an error that says the
    /// partition epoch is stale waits for the image instead (the caller just calls this and
    /// the next `update_partition`).
    pub fn isr_change_failed(&mut self) {
        todo!()
    }

    /// Whether an acks=all produce may append now.
    pub fn check_append(&self) -> AppendCheck {
        todo!()
    }

    /// Where an acks=all produce that ended at `last_offset` stands.
    pub fn ack_status(&self, last_offset: i64) -> AckStatus {
        let _ = last_offset;
        todo!()
    }
}
