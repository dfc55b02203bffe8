//! One transactional id's state: its producer id and epoch, the transaction's state and
//! partitions, and the transition in flight.
//!
//! Transitions are two-phase. [`TxnMetadata::prepare`] checks the transition table and records
//! the target as the pending transition; the coordinator writes the target to
//! `__transaction_state`, then [`TxnMetadata::complete`] applies it once the write is durable,
//! or [`TxnMetadata::abandon`] drops it when the write failed.

use std::collections::BTreeSet;

use super::records::TxnLogValue;

/// A partition of a topic: (topic, partition index).
pub type TopicPartition = (String, i32);

/// Identifies one prepared write, so that a completion arriving after the transactional id
/// moved on (expired and re-created, reloaded, completed twice) matches nothing.
pub type WriteToken = u64;

/// "No producer id" / "no epoch", as on the wire.
pub const NO_PRODUCER_ID: i64 = -1;
pub const NO_PRODUCER_EPOCH: i16 = -1;

/// A transaction's state. The discriminants are the ids stored in `__transaction_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TxnState {
    Empty = 0,
    Ongoing = 1,
    PrepareCommit = 2,
    PrepareAbort = 3,
    CompleteCommit = 4,
    CompleteAbort = 5,
    /// Never stored: an expired id is written as a tombstone.
    Dead = 6,
    /// Never stored: a fence is written as PrepareAbort with the bumped epoch.
    PrepareEpochFence = 7,
}

impl TxnState {
    pub const ALL: [TxnState; 8] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
        TxnState::PrepareEpochFence,
    ];

    /// The id stored in a `__transaction_state` value.
    pub fn id(self) -> i8 {
        self as i8
    }

    pub fn from_id(id: i8) -> Option<TxnState> {
        TxnState::ALL.get(usize::try_from(id).ok()?).copied()
    }

    /// The name DescribeTransactions and ListTransactions use (and accept as filters).
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    /// Exact (case-sensitive) match of [`TxnState::name`].
    pub fn from_name(name: &str) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The states a transaction may be in when it moves to `self`.
    pub fn valid_previous(self) -> &'static [TxnState] {
        use TxnState::*;
        match self {
            Empty => &[Empty, CompleteCommit, CompleteAbort],
            Ongoing => &[Ongoing, Empty, CompleteCommit, CompleteAbort],
            PrepareCommit => &[Ongoing],
            PrepareAbort => &[Ongoing, PrepareEpochFence],
            CompleteCommit => &[PrepareCommit],
            CompleteAbort => &[PrepareAbort],
            Dead => &[Empty, CompleteCommit, CompleteAbort],
            PrepareEpochFence => &[Ongoing],
        }
    }

    pub fn can_transition(from: TxnState, to: TxnState) -> bool {
        to.valid_previous().contains(&from)
    }

    pub fn is_prepare(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }

    /// States from which a new transaction may start and in which an id may expire.
    pub fn is_idle(self) -> bool {
        matches!(
            self,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
        )
    }
}

/// An epoch this high is never handed to a client, so the coordinator can always fence once
/// more (to `i16::MAX`) without overflowing.
pub fn is_epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

/// The values a transition gives the transaction: what is written to the log, plus the two
/// fields the log does not keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnTransit {
    pub producer_id: i64,
    pub prev_producer_id: i64,
    pub producer_epoch: i16,
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<TopicPartition>,
    pub start_ms: i64,
    pub last_update_ms: i64,
}

impl TxnTransit {
    /// The `__transaction_state` value of this transition (not meaningful for Dead, which is
    /// written as a tombstone).
    pub fn to_log_value(&self) -> TxnLogValue {
        let mut partitions = std::collections::BTreeMap::<String, BTreeSet<i32>>::new();
        for (t, p) in &self.partitions {
            partitions.entry(t.clone()).or_default().insert(*p);
        }
        TxnLogValue {
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            timeout_ms: self.timeout_ms,
            state: self.state,
            partitions,
            last_update_ms: self.last_update_ms,
            start_ms: self.start_ms,
        }
    }
}

/// A transition whose record is being written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingTransition {
    pub token: WriteToken,
    pub target: TxnTransit,
    /// This write aborts a fenced transaction with a bumped epoch; its failure is remembered
    /// in [`TxnMetadata::fence_write_failed`].
    pub fence: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    pub producer_id: i64,
    /// The producer id before the last transition: after a rotation (exhausted epoch) the
    /// old id, so that a retry carrying it is recognised. Not stored in the log (-1 on load).
    pub prev_producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last KIP-360 bump, so that a retry of that bump gets the same
    /// answer. Not stored in the log (-1 on load, so a retry across a failover is fenced).
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<TopicPartition>,
    /// When the current transaction started (-1 when none started since InitProducerId).
    pub start_ms: i64,
    pub last_update_ms: i64,
    pub pending: Option<PendingTransition>,
    /// A fence's abort could not be written: its epoch bump is already in memory, so the next
    /// fence must not bump again (the bumped epoch was never given to anyone).
    pub fence_write_failed: bool,
}

/// Why [`TxnMetadata::prepare`] refused a transition. The coordinator checks in the order
/// clients see before preparing, so either means a bug there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("a transition to {0:?} is already pending")]
    Pending(TxnState),
    #[error("invalid transition from {from:?} to {to:?}")]
    Invalid { from: TxnState, to: TxnState },
}

impl TxnMetadata {
    /// A transactional id seen for the first time: its producer id, no epoch yet, Empty.
    pub fn new(producer_id: i64, timeout_ms: i32, now_ms: i64) -> TxnMetadata {
        TxnMetadata {
            producer_id,
            prev_producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            last_update_ms: now_ms,
            pending: None,
            fence_write_failed: false,
        }
    }

    /// The metadata a `__transaction_state` value loads as.
    pub fn from_log_value(v: &TxnLogValue) -> TxnMetadata {
        TxnMetadata {
            producer_id: v.producer_id,
            prev_producer_id: NO_PRODUCER_ID,
            producer_epoch: v.producer_epoch,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms: v.timeout_ms,
            state: v.state,
            partitions: v
                .partitions
                .iter()
                .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
                .collect(),
            start_ms: v.start_ms,
            last_update_ms: v.last_update_ms,
            pending: None,
            fence_write_failed: false,
        }
    }

    pub fn pending_state(&self) -> Option<TxnState> {
        self.pending.as_ref().map(|p| p.target.state)
    }

    pub fn is_epoch_exhausted(&self) -> bool {
        is_epoch_exhausted(self.producer_epoch)
    }

    /// The current values as a transition to `state` at `now_ms`; callers change what the
    /// transition changes.
    pub fn transit(&self, state: TxnState, now_ms: i64) -> TxnTransit {
        TxnTransit {
            producer_id: self.producer_id,
            prev_producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            last_producer_epoch: self.last_producer_epoch,
            timeout_ms: self.timeout_ms,
            state,
            partitions: self.partitions.clone(),
            start_ms: self.start_ms,
            last_update_ms: now_ms,
        }
    }

    /// Records `target` as the pending transition if the table allows it from the current
    /// state and nothing else is pending.
    pub fn prepare(
        &mut self,
        target: TxnTransit,
        token: WriteToken,
        fence: bool,
    ) -> Result<(), TransitionError> {
        if let Some(p) = &self.pending {
            return Err(TransitionError::Pending(p.target.state));
        }
        if !TxnState::can_transition(self.state, target.state) {
            return Err(TransitionError::Invalid {
                from: self.state,
                to: target.state,
            });
        }
        self.pending = Some(PendingTransition {
            token,
            target,
            fence,
        });
        Ok(())
    }

    /// Applies the pending transition if it is the one `token` names; returns it.
    pub fn complete(&mut self, token: WriteToken) -> Option<TxnTransit> {
        if self.pending.as_ref().map(|p| p.token) != Some(token) {
            return None;
        }
        let p = self.pending.take()?;
        let t = p.target.clone();
        self.producer_id = t.producer_id;
        self.prev_producer_id = t.prev_producer_id;
        self.producer_epoch = t.producer_epoch;
        self.last_producer_epoch = t.last_producer_epoch;
        self.timeout_ms = t.timeout_ms;
        self.state = t.state;
        self.partitions = t.partitions.clone();
        self.start_ms = t.start_ms;
        self.last_update_ms = t.last_update_ms;
        // What memory held ahead of the log (a fence's bump) is now durable.
        self.fence_write_failed = false;
        Some(p.target)
    }

    /// Drops the pending transition if it is the one `token` names: the state stays as it
    /// was. Returns whether it matched.
    pub fn abandon(&mut self, token: WriteToken) -> bool {
        match &self.pending {
            Some(p) if p.token == token => {
                if p.fence {
                    self.fence_write_failed = true;
                }
                self.pending = None;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TxnState::*;

    #[test]
    fn ids_and_names_are_kafkas() {
        let expected = [
            (Empty, 0, "Empty"),
            (Ongoing, 1, "Ongoing"),
            (PrepareCommit, 2, "PrepareCommit"),
            (PrepareAbort, 3, "PrepareAbort"),
            (CompleteCommit, 4, "CompleteCommit"),
            (CompleteAbort, 5, "CompleteAbort"),
            (Dead, 6, "Dead"),
            (PrepareEpochFence, 7, "PrepareEpochFence"),
        ];
        for (s, id, name) in expected {
            assert_eq!(s.id(), id);
            assert_eq!(s.name(), name);
            assert_eq!(TxnState::from_id(id), Some(s));
            assert_eq!(TxnState::from_name(name), Some(s));
        }
        assert_eq!(TxnState::from_id(8), None);
        assert_eq!(TxnState::from_id(-1), None);
        assert_eq!(TxnState::from_name("ongoing"), None);
    }

    /// KT §2.1, row by row: every (from, to) pair not listed is refused.
    #[test]
    fn transition_table() {
        let allowed: &[(TxnState, &[TxnState])] = &[
            (Empty, &[Empty, CompleteCommit, CompleteAbort]),
            (Ongoing, &[Ongoing, Empty, CompleteCommit, CompleteAbort]),
            (PrepareCommit, &[Ongoing]),
            (PrepareAbort, &[Ongoing, PrepareEpochFence]),
            (CompleteCommit, &[PrepareCommit]),
            (CompleteAbort, &[PrepareAbort]),
            (Dead, &[Empty, CompleteCommit, CompleteAbort]),
            (PrepareEpochFence, &[Ongoing]),
        ];
        let mut checked = 0;
        for (to, froms) in allowed {
            for from in TxnState::ALL {
                let want = froms.contains(&from);
                assert_eq!(
                    TxnState::can_transition(from, *to),
                    want,
                    "{from:?} -> {to:?}"
                );
                let mut m = TxnMetadata::new(7, 1000, 0);
                m.state = from;
                let r = m.prepare(m.transit(*to, 5), 1, false);
                if want {
                    assert_eq!(r, Ok(()));
                    assert_eq!(m.pending_state(), Some(*to));
                } else {
                    assert_eq!(r, Err(TransitionError::Invalid { from, to: *to }));
                    assert_eq!(m.pending, None);
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 64);
    }

    #[test]
    fn a_second_prepare_is_refused_while_one_is_pending() {
        let mut m = TxnMetadata::new(7, 1000, 0);
        m.prepare(m.transit(Ongoing, 1), 1, false).unwrap();
        assert_eq!(
            m.prepare(m.transit(Empty, 1), 2, false),
            Err(TransitionError::Pending(Ongoing))
        );
        assert_eq!(m.pending.as_ref().unwrap().token, 1);
    }

    #[test]
    fn complete_and_abandon_match_the_token() {
        let mut m = TxnMetadata::new(7, 1000, 0);
        let mut t = m.transit(Ongoing, 10);
        t.partitions.insert(("t".into(), 0));
        t.start_ms = 10;
        m.prepare(t, 3, false).unwrap();
        assert_eq!(m.complete(4), None);
        assert!(!m.abandon(4));
        assert_eq!(m.state, Empty);
        let applied = m.complete(3).unwrap();
        assert_eq!(applied.state, Ongoing);
        assert_eq!(m.state, Ongoing);
        assert_eq!(m.start_ms, 10);
        assert_eq!(m.last_update_ms, 10);
        assert_eq!(m.partitions.len(), 1);
        assert_eq!(m.pending, None);
        assert_eq!(m.complete(3), None);

        m.prepare(m.transit(PrepareAbort, 20), 5, true).unwrap();
        assert!(m.abandon(5));
        assert_eq!(m.state, Ongoing);
        assert_eq!(m.last_update_ms, 10);
        assert!(m.fence_write_failed);
    }

    #[test]
    fn epoch_exhaustion() {
        assert!(!is_epoch_exhausted(0));
        assert!(!is_epoch_exhausted(32765));
        assert!(is_epoch_exhausted(32766));
        assert!(is_epoch_exhausted(i16::MAX));
    }
}
