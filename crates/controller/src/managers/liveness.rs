//! The active controller's broker liveness tracker: heartbeats in, expired sessions out.
//! Heartbeats are not log entries; a controller that becomes active starts every registered
//! broker's session afresh.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::records::BrokerId;

#[derive(Debug, Default, Clone)]
pub struct LivenessTracker {
    /// broker -> (incarnation, last heartbeat in ms).
    last_seen: BTreeMap<BrokerId, (Uuid, i64)>,
    /// broker -> (incarnation, highest metadata index it reported having applied).
    applied: BTreeMap<BrokerId, (Uuid, u64)>,
}

impl LivenessTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets every session and starts one at `now_ms` for each given broker (a newly active
    /// controller cannot know when brokers last heartbeated to its predecessor).
    pub fn reset(&mut self, now_ms: i64, brokers: impl IntoIterator<Item = (BrokerId, Uuid)>) {
        self.last_seen = brokers
            .into_iter()
            .map(|(id, incarnation)| (id, (incarnation, now_ms)))
            .collect();
        self.applied.clear();
    }

    /// Records a heartbeat; a new incarnation replaces the old one's session.
    pub fn heartbeat(&mut self, broker_id: BrokerId, incarnation_id: Uuid, now_ms: i64) {
        let entry = self
            .last_seen
            .entry(broker_id)
            .or_insert((incarnation_id, now_ms));
        if entry.0 != incarnation_id {
            *entry = (incarnation_id, now_ms);
        } else {
            // Clocks may step back; a session never moves to an earlier time.
            entry.1 = entry.1.max(now_ms);
        }
    }

    /// Forgets a broker (it was fenced, or deregistered).
    pub fn remove(&mut self, broker_id: BrokerId) {
        self.last_seen.remove(&broker_id);
        self.applied.remove(&broker_id);
    }

    /// Records the metadata index a heartbeat says the broker has applied (it never goes back
    /// within an incarnation: heartbeats may arrive out of order).
    pub fn report_applied(&mut self, broker_id: BrokerId, incarnation_id: Uuid, index: u64) {
        let entry = self
            .applied
            .entry(broker_id)
            .or_insert((incarnation_id, index));
        if entry.0 != incarnation_id {
            *entry = (incarnation_id, index);
        } else {
            entry.1 = entry.1.max(index);
        }
    }

    /// The metadata index `broker_id` last reported under `incarnation_id`, if it has since
    /// this controller became active.
    pub fn applied(&self, broker_id: BrokerId, incarnation_id: Uuid) -> Option<u64> {
        self.applied
            .get(&broker_id)
            .filter(|(incarnation, _)| *incarnation == incarnation_id)
            .map(|(_, index)| *index)
    }

    /// The last heartbeat of a broker's current session, if any.
    pub fn last_seen(&self, broker_id: BrokerId) -> Option<(Uuid, i64)> {
        self.last_seen.get(&broker_id).copied()
    }

    /// Whether `incarnation_id` of `broker_id` has a session that has not expired at `now_ms`:
    /// its last heartbeat (or registration) is at most `session_timeout_ms` old.
    pub fn has_live_session(
        &self,
        broker_id: BrokerId,
        incarnation_id: Uuid,
        now_ms: i64,
        session_timeout_ms: i64,
    ) -> bool {
        self.last_seen
            .get(&broker_id)
            .is_some_and(|(incarnation, seen)| {
                *incarnation == incarnation_id && now_ms.saturating_sub(*seen) <= session_timeout_ms
            })
    }

    /// Brokers (sorted by id) whose last heartbeat is more than `session_timeout_ms` old.
    pub fn expired(&self, now_ms: i64, session_timeout_ms: i64) -> Vec<(BrokerId, Uuid)> {
        self.last_seen
            .iter()
            .filter(|(_, (_, seen))| now_ms.saturating_sub(*seen) > session_timeout_ms)
            .map(|(id, (incarnation, _))| (*id, *incarnation))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn sessions_expire_after_the_timeout() {
        let mut t = LivenessTracker::new();
        t.reset(1_000, [(2, u(2)), (1, u(1))]);
        assert!(t.expired(1_000 + 500, 500).is_empty());
        t.heartbeat(1, u(1), 1_400);
        assert_eq!(t.expired(1_501, 500), vec![(2, u(2))]);
        assert_eq!(t.expired(1_901, 500), vec![(1, u(1)), (2, u(2))]);
        t.remove(2);
        assert_eq!(t.expired(1_901, 500), vec![(1, u(1))]);
    }

    #[test]
    fn live_sessions_are_those_of_the_incarnation_within_the_timeout() {
        let mut t = LivenessTracker::new();
        assert!(!t.has_live_session(1, u(1), 0, 500));
        t.heartbeat(1, u(1), 1_000);
        assert!(t.has_live_session(1, u(1), 1_500, 500));
        assert!(!t.has_live_session(1, u(1), 1_501, 500));
        assert!(!t.has_live_session(1, u(2), 1_100, 500));
        t.remove(1);
        assert!(!t.has_live_session(1, u(1), 1_100, 500));
    }

    #[test]
    fn reset_forgets_old_sessions() {
        let mut t = LivenessTracker::new();
        t.heartbeat(7, u(7), 0);
        t.reset(10_000, [(1, u(1))]);
        assert_eq!(t.last_seen(7), None);
        assert_eq!(t.last_seen(1), Some((u(1), 10_000)));
        assert!(t.expired(10_100, 500).is_empty());
    }

    #[test]
    fn applied_indexes_only_move_forward_per_incarnation() {
        let mut t = LivenessTracker::new();
        assert_eq!(t.applied(1, u(1)), None);
        t.report_applied(1, u(1), 50);
        t.report_applied(1, u(1), 40);
        assert_eq!(t.applied(1, u(1)), Some(50));
        assert_eq!(t.applied(1, u(2)), None);
        t.report_applied(1, u(2), 3);
        assert_eq!(t.applied(1, u(2)), Some(3));
        assert_eq!(t.applied(1, u(1)), None);
        t.remove(1);
        assert_eq!(t.applied(1, u(2)), None);
        t.report_applied(2, u(2), 9);
        t.reset(0, [(2, u(2))]);
        assert_eq!(
            t.applied(2, u(2)),
            None,
            "a new leadership knows no offsets"
        );
    }

    #[test]
    fn new_incarnation_replaces_the_session() {
        let mut t = LivenessTracker::new();
        t.heartbeat(1, u(1), 5_000);
        t.heartbeat(1, u(2), 100);
        assert_eq!(t.last_seen(1), Some((u(2), 100)));
        assert_eq!(t.expired(700, 500), vec![(1, u(2))]);
        // A heartbeat stamped earlier than the last one does not shorten the session.
        t.heartbeat(1, u(2), 50);
        assert_eq!(t.last_seen(1), Some((u(2), 100)));
    }
}
