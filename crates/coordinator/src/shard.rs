//! What a coordinator is to the runtime: a [`CoordinatorShard`], the I/O-free state kept in one
//! partition of an internal topic, and the [`ShardCtx`] an operation writes its records, parked
//! answers and follow-up actions into.

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::log::WriteError;

/// Identifies one write of a shard: increasing, one per operation that wrote records.
pub type WriteId = u64;

/// Identifies an answer parked until a later event (a rebalance completing, say).
pub type WaiterId = u64;

/// How a write's records are batched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchKind {
    /// Keyed records without a producer.
    Plain,
    /// Data of a producer's ongoing transaction (a transactional offset commit).
    Transactional {
        producer_id: i64,
        producer_epoch: i16,
    },
}

/// One record met while replaying a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayRecord<'a> {
    Data {
        offset: i64,
        /// -1 when the batch has no producer.
        producer_id: i64,
        producer_epoch: i16,
        transactional: bool,
        key: &'a [u8],
        value: Option<&'a [u8]>,
    },
    /// An end-transaction marker (a control record).
    Marker {
        offset: i64,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
    },
}

/// Which partition a shard is loaded for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadInfo {
    pub partition: i32,
    /// The partition's leader epoch when this node started coordinating it.
    pub coordinator_epoch: i32,
    pub now_ms: i64,
}

/// A coordinator's state for one partition of its internal topic, as a state machine: records
/// replayed and requests in, records to write and answers out. The runtime appends what an
/// operation writes with acks=all and tells the shard, in write order, when each write is
/// replicated ([`Self::on_committed`]) or definitely failed ([`Self::on_write_failed`]).
pub trait CoordinatorShard: Sized + Send + 'static {
    /// Read-only inputs shared by every shard of a runtime (settings, lookups).
    type Env: Send + Sync + 'static;
    /// A parked answer.
    type Reply: Send + 'static;
    /// Work that must happen only once a write is replicated (sending transaction markers).
    type Action: Send + 'static;

    fn new(info: &LoadInfo, env: &Self::Env) -> Self;

    /// Applies one replayed record. An error is logged and the record skipped.
    fn replay(&mut self, record: &ReplayRecord<'_>, now_ms: i64) -> Result<(), String>;

    /// The partition is replayed; the shard may write (clean-ups) or queue actions.
    fn on_loaded(&mut self, _ctx: &mut ShardCtx<Self>, _env: &Self::Env) {}

    /// The partition is no longer led here: answer every parked waiter.
    fn on_unloaded(&mut self, _ctx: &mut ShardCtx<Self>) {}

    /// Every write with an id up to `upto` is replicated. Returns the actions this makes due
    /// (a transaction whose PrepareCommit is durable sends its markers), run after the write's
    /// own [`ShardCtx::after_commit`] actions.
    fn on_committed(&mut self, _upto: WriteId) -> Vec<Self::Action> {
        Vec::new()
    }

    /// Write `id` appended nothing (or not all of its batches); it will never be replicated.
    fn on_write_failed(&mut self, _id: WriteId, _error: &WriteError) {}

    /// The periodic timer.
    fn tick(&mut self, _ctx: &mut ShardCtx<Self>, _env: &Self::Env, _now_ms: i64) {}

    /// What a parked answer becomes when the write it waits for fails or times out.
    fn fail_reply(reply: Self::Reply, error: &WriteError) -> Self::Reply;
}

/// A record's key and value (`None`: a tombstone).
pub type KeyValue = (Bytes, Option<Bytes>);

/// The batches of one write, in order.
pub(crate) type Batches = Vec<(BatchKind, Vec<KeyValue>)>;

/// The records, answers and actions of one operation on a shard.
pub struct ShardCtx<S: CoordinatorShard> {
    now_ms: i64,
    write_id: WriteId,
    batches: Batches,
    pub(crate) parked: Vec<(WaiterId, oneshot::Sender<S::Reply>)>,
    pub(crate) replies: Vec<(WaiterId, S::Reply)>,
    pub(crate) actions: Vec<S::Action>,
    next_waiter: WaiterId,
    pub(crate) waiters_used: u64,
}

impl<S: CoordinatorShard> ShardCtx<S> {
    pub(crate) fn new(now_ms: i64, write_id: WriteId, next_waiter: WaiterId) -> Self {
        ShardCtx {
            now_ms,
            write_id,
            batches: Vec::new(),
            parked: Vec::new(),
            replies: Vec::new(),
            actions: Vec::new(),
            next_waiter,
            waiters_used: 0,
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    /// The id this operation's write gets if it writes anything.
    pub fn write_id(&self) -> WriteId {
        self.write_id
    }

    /// Adds a record to the current batch (a plain one unless [`Self::batch_kind`] said
    /// otherwise). A `None` value is a tombstone.
    pub fn record(&mut self, key: Bytes, value: Option<Bytes>) {
        match self.batches.last_mut() {
            Some((_, recs)) => recs.push((key, value)),
            None => self.batches.push((BatchKind::Plain, vec![(key, value)])),
        }
    }

    /// Starts a batch of `kind` for the records that follow (unless the current one is already
    /// of that kind). The write appends its batches in order.
    pub fn batch_kind(&mut self, kind: BatchKind) {
        match self.batches.last_mut() {
            Some((k, _)) if *k == kind => {}
            Some((k, recs)) if recs.is_empty() => *k = kind,
            _ => self.batches.push((kind, Vec::new())),
        }
    }

    /// Whether the operation wrote records.
    pub fn writes(&self) -> bool {
        self.batches.iter().any(|(_, r)| !r.is_empty())
    }

    /// Parks an answer: the receiver gets what a later [`Self::reply`] sends under the id (or
    /// is dropped when the partition unloads without an answer).
    pub fn park(&mut self) -> (WaiterId, oneshot::Receiver<S::Reply>) {
        let id = self.next_waiter + self.waiters_used;
        self.waiters_used += 1;
        let (tx, rx) = oneshot::channel();
        self.parked.push((id, tx));
        (id, rx)
    }

    /// Withdraws a waiter this operation parked (its answer turned out to be immediate).
    pub fn unpark(&mut self, waiter: WaiterId) {
        self.parked.retain(|(id, _)| *id != waiter);
    }

    /// Answers a parked waiter once this operation's write is replicated (at once if it writes
    /// nothing); the answer becomes [`CoordinatorShard::fail_reply`] if the write fails.
    pub fn reply(&mut self, waiter: WaiterId, reply: S::Reply) {
        self.replies.push((waiter, reply));
    }

    /// Runs `action` once this operation's write is replicated (at once if it writes nothing).
    pub fn after_commit(&mut self, action: S::Action) {
        self.actions.push(action);
    }

    pub(crate) fn take_batches(&mut self) -> Batches {
        let mut b = std::mem::take(&mut self.batches);
        b.retain(|(_, r)| !r.is_empty());
        b
    }
}
