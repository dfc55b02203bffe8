//! The coordinator runtime: one [`CoordinatorShard`] per internal-topic partition this node
//! leads. It loads a shard when the node gains the partition's leadership (replaying the
//! partition), unloads it when it loses it, runs operations against it under the shard's lock,
//! appends what they write as acks=all batches, tells the shard in write order once the high
//! watermark passes them, delivers parked answers and after-commit actions then, and drives the
//! shard's timer.
//!
//! Rules it keeps, whatever the shard:
//! - An answer that depends on a write leaves only once the write is replicated, so a new
//!   coordinator elected from the in-sync replicas never forgets something that was answered.
//! - A write that fails before anything was appended is reported to the shard
//!   ([`CoordinatorShard::on_write_failed`]) and fails its answers.
//! - A write that times out (or whose ISR shrank after the append) fails its answers, but stays
//!   pending: if the high watermark passes it later, the shard learns it committed, since a
//!   coordinator elected later would replay it.
//! - Writes commit in the order they were appended.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tokio::sync::oneshot;

use crate::batch;
use crate::log::{Appended, BoxFuture, ShardLog, WriteError};
use crate::shard::{BatchKind, CoordinatorShard, LoadInfo, ShardCtx, WaiterId, WriteId};

/// Why a partition's shard cannot take an operation now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotServing {
    /// This node does not coordinate the partition (or is fenced from the cluster).
    #[error("not the coordinator")]
    NotCoordinator,
    /// The partition is being replayed.
    #[error("the coordinator is loading")]
    LoadInProgress,
}

/// An operation's result and whether what it wrote is replicated.
pub enum Written<R> {
    /// Nothing written, or already replicated.
    Now(R),
    /// The write failed; the shard was told (or, when indeterminate, will be told if it
    /// commits after all).
    Failed(R, WriteError),
    /// Appended; [`ReplicationWait::wait`] says when it is replicated.
    Later(R, ReplicationWait),
}

impl<R> Written<R> {
    /// The result once replicated, or `fail(result, error)`.
    pub async fn finish(self, fail: impl FnOnce(R, WriteError) -> R) -> R {
        match self {
            Written::Now(r) => r,
            Written::Failed(r, e) => fail(r, e),
            Written::Later(r, w) => match w.wait().await {
                Ok(()) => r,
                Err(e) => fail(r, e),
            },
        }
    }
}

/// Waits for one write of a shard to be replicated.
pub struct ReplicationWait(BoxFuture<Result<(), WriteError>>);

impl ReplicationWait {
    pub async fn wait(self) -> Result<(), WriteError> {
        self.0.await
    }
}

/// What to do with the after-commit actions of a partition's shard.
pub type ActionSink<A> = Arc<dyn Fn(i32, A) + Send + Sync>;

/// A write appended and waiting for the high watermark.
struct PendingWrite<S: CoordinatorShard> {
    id: WriteId,
    appended: Appended,
    replies: Vec<(WaiterId, S::Reply)>,
    actions: Vec<S::Action>,
}

struct Loaded<S: CoordinatorShard> {
    shard: S,
    log: Arc<dyn ShardLog>,
    waiters: HashMap<WaiterId, oneshot::Sender<S::Reply>>,
    writes: VecDeque<PendingWrite<S>>,
    next_write: WriteId,
    /// Waiter ids are per shard: a waiter lives in its shard's map only.
    next_waiter: WaiterId,
}

enum Slot<S: CoordinatorShard> {
    /// Being replayed; `load` is the generation of the load that marked it.
    Loading {
        load: u64,
    },
    Loaded(Box<Loaded<S>>),
}

type SlotRef<S> = Arc<Mutex<Slot<S>>>;

/// What a shard's lock-holding section hands to the code that runs after it.
struct Outbox<S: CoordinatorShard> {
    partition: i32,
    sends: Vec<(oneshot::Sender<S::Reply>, S::Reply)>,
    actions: Vec<S::Action>,
}

impl<S: CoordinatorShard> Outbox<S> {
    fn new(partition: i32) -> Self {
        Outbox {
            partition,
            sends: Vec::new(),
            actions: Vec::new(),
        }
    }
}

/// Runs the shards of one internal topic.
pub struct CoordinatorRuntime<S: CoordinatorShard> {
    inner: Arc<Inner<S>>,
}

impl<S: CoordinatorShard> Clone for CoordinatorRuntime<S> {
    fn clone(&self) -> Self {
        CoordinatorRuntime {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<S: CoordinatorShard> {
    /// The internal topic, for logs.
    topic: &'static str,
    env: Arc<S::Env>,
    shards: RwLock<HashMap<i32, SlotRef<S>>>,
    serving: RwLock<Arc<dyn Fn() -> bool + Send + Sync>>,
    write_timeout_ms: AtomicU64,
    next_load: AtomicU64,
    actions: ActionSink<S::Action>,
}

impl<S: CoordinatorShard> CoordinatorRuntime<S> {
    /// A runtime for `topic`'s partitions, which answers for none until [`Self::load`].
    /// `actions` runs each after-commit action (outside every lock); `write_timeout_ms` bounds
    /// how long an answer waits for the in-sync replicas.
    pub fn new(
        topic: &'static str,
        env: Arc<S::Env>,
        write_timeout_ms: u64,
        actions: ActionSink<S::Action>,
    ) -> Self {
        CoordinatorRuntime {
            inner: Arc::new(Inner {
                topic,
                env,
                shards: RwLock::new(HashMap::new()),
                serving: RwLock::new(Arc::new(|| true)),
                write_timeout_ms: AtomicU64::new(write_timeout_ms),
                next_load: AtomicU64::new(1),
                actions,
            }),
        }
    }

    pub fn env(&self) -> &Arc<S::Env> {
        &self.inner.env
    }

    /// Whether this node may coordinate at all (a fenced node answers NOT_COORDINATOR for every
    /// partition it still believes it leads).
    pub fn set_serving(&self, serving: Arc<dyn Fn() -> bool + Send + Sync>) {
        *self.inner.serving.write() = serving;
    }

    pub fn set_write_timeout_ms(&self, ms: u64) {
        self.inner.write_timeout_ms.store(ms, Ordering::Relaxed);
    }

    fn slot(&self, partition: i32) -> Result<SlotRef<S>, NotServing> {
        if !(self.inner.serving.read())() {
            return Err(NotServing::NotCoordinator);
        }
        self.inner
            .shards
            .read()
            .get(&partition)
            .cloned()
            .ok_or(NotServing::NotCoordinator)
    }

    /// Whether `partition` is loaded (or loading) here.
    pub fn status(&self, partition: i32) -> Result<(), NotServing> {
        let slot = self.slot(partition)?;
        let guard = slot.lock();
        match &*guard {
            Slot::Loading { .. } => Err(NotServing::LoadInProgress),
            Slot::Loaded(_) => Ok(()),
        }
    }

    /// The partitions whose shards are loaded, in order.
    pub fn loaded_partitions(&self) -> Vec<i32> {
        let shards: Vec<(i32, SlotRef<S>)> = self
            .inner
            .shards
            .read()
            .iter()
            .map(|(p, s)| (*p, s.clone()))
            .collect();
        let mut v: Vec<i32> = shards
            .into_iter()
            .filter(|(_, s)| matches!(&*s.lock(), Slot::Loaded(_)))
            .map(|(p, _)| p)
            .collect();
        v.sort_unstable();
        v
    }

    /// This node leads `partition` now: replays it from its start into a new shard, which
    /// then serves (LoadInProgress until then). Returns the number of records replayed.
    /// Reading happens outside the shard's lock; nothing else writes the partition while it
    /// loads.
    pub fn load(&self, partition: i32, log: Arc<dyn ShardLog>, now_ms: i64) -> usize {
        let load = self.inner.next_load.fetch_add(1, Ordering::Relaxed);
        let slot: SlotRef<S> = Arc::new(Mutex::new(Slot::Loading { load }));
        if let Some(old) = self.inner.shards.write().insert(partition, slot.clone()) {
            self.unload_slot(partition, &old);
        }
        let started = std::time::Instant::now();
        let info = LoadInfo {
            partition,
            coordinator_epoch: log.leader_epoch(),
            now_ms,
        };
        let mut shard = S::new(&info, &self.inner.env);
        let (records, error) = replay(&*log, &mut shard, now_ms, self.inner.topic, partition);
        let mut outbox = Outbox::new(partition);
        {
            let mut guard = slot.lock();
            if !matches!(&*guard, Slot::Loading { load: l } if *l == load) {
                return 0; // unloaded (or reloaded) meanwhile
            }
            let next_write = 1;
            let mut loaded = Box::new(Loaded {
                shard,
                log,
                waiters: HashMap::new(),
                writes: VecDeque::new(),
                next_write,
                next_waiter: 1,
            });
            let mut ctx = self.ctx(&loaded, now_ms);
            let env = self.inner.env.clone();
            loaded.shard.on_loaded(&mut ctx, &env);
            // Clean-up writes at load have nobody waiting on them.
            let _ = self.apply(partition, &mut loaded, ctx, &mut outbox);
            *guard = Slot::Loaded(loaded);
        }
        self.deliver(outbox);
        match error {
            None => tracing::info!(
                topic = self.inner.topic,
                partition,
                records,
                load_ms = started.elapsed().as_millis() as u64,
                "coordinator loaded"
            ),
            Some(e) => tracing::error!(
                topic = self.inner.topic,
                partition,
                records,
                error = %e,
                "partition only partly readable; serving what was loaded"
            ),
        }
        records
    }

    /// This node no longer leads `partition`: the shard leaves memory and its parked answers
    /// fail. Writes still waiting for the high watermark are forgotten (the next coordinator
    /// replays whichever of them committed).
    pub fn unload(&self, partition: i32) {
        let slot = self.inner.shards.write().remove(&partition);
        if let Some(slot) = slot {
            self.unload_slot(partition, &slot);
        }
    }

    fn unload_slot(&self, partition: i32, slot: &SlotRef<S>) {
        let mut outbox: Outbox<S> = Outbox::new(partition);
        {
            let mut guard = slot.lock();
            let Slot::Loaded(loaded) = std::mem::replace(&mut *guard, Slot::Loading { load: 0 })
            else {
                return;
            };
            let mut loaded = *loaded;
            let mut ctx = ShardCtx::new(0, loaded.next_write, loaded.next_waiter);
            loaded.shard.on_unloaded(&mut ctx);
            for (w, r) in ctx.replies.drain(..) {
                if let Some(tx) = loaded.waiters.remove(&w) {
                    outbox.sends.push((tx, r));
                }
            }
            for write in loaded.writes.drain(..) {
                for (w, r) in write.replies {
                    if let Some(tx) = loaded.waiters.remove(&w) {
                        outbox
                            .sends
                            .push((tx, S::fail_reply(r, &WriteError::NotLeader)));
                    }
                }
            }
        }
        self.deliver_sends(outbox.sends);
        tracing::info!(topic = self.inner.topic, partition, "coordinator unloaded");
    }

    /// Runs a read-only operation against `partition`'s shard.
    pub fn read<R>(&self, partition: i32, f: impl FnOnce(&S) -> R) -> Result<R, NotServing> {
        let slot = self.slot(partition)?;
        let guard = slot.lock();
        match &*guard {
            Slot::Loading { .. } => Err(NotServing::LoadInProgress),
            Slot::Loaded(l) => Ok(f(&l.shard)),
        }
    }

    /// Runs a read-only operation against every loaded shard, in partition order, whether or
    /// not this node may serve now (listings).
    pub fn read_each<R>(&self, mut f: impl FnMut(i32, &S) -> R) -> Vec<R> {
        let mut out = Vec::new();
        for (partition, slot) in self.all_slots() {
            if let Slot::Loaded(l) = &*slot.lock() {
                out.push(f(partition, &l.shard));
            }
        }
        out
    }

    /// Runs an operation against `partition`'s shard and appends what it wrote.
    pub fn write<R>(
        &self,
        partition: i32,
        now_ms: i64,
        f: impl FnOnce(&mut S, &mut ShardCtx<S>) -> R,
    ) -> Result<Written<R>, NotServing> {
        let slot = self.slot(partition)?;
        self.write_slot(partition, &slot, now_ms, false, f)
    }

    /// Runs an operation against `partition`'s shard, as [`Self::write`], for a record that
    /// reached the partition's log by another path and is replicated: the shard first learns
    /// of every write the high watermark has passed (the record follows them), and the
    /// operation runs whether or not this node may serve requests now.
    pub fn write_after_replicated<R>(
        &self,
        partition: i32,
        now_ms: i64,
        f: impl FnOnce(&mut S, &mut ShardCtx<S>) -> R,
    ) -> Result<Written<R>, NotServing> {
        let slot = self
            .inner
            .shards
            .read()
            .get(&partition)
            .cloned()
            .ok_or(NotServing::NotCoordinator)?;
        self.write_slot(partition, &slot, now_ms, true, f)
    }

    fn write_slot<R>(
        &self,
        partition: i32,
        slot: &SlotRef<S>,
        now_ms: i64,
        advance_first: bool,
        f: impl FnOnce(&mut S, &mut ShardCtx<S>) -> R,
    ) -> Result<Written<R>, NotServing> {
        let slot = slot.clone();
        let mut outbox = Outbox::new(partition);
        let written = {
            let mut guard = slot.lock();
            let Slot::Loaded(loaded) = &mut *guard else {
                return Err(NotServing::LoadInProgress);
            };
            if advance_first {
                advance(loaded, &mut outbox);
            }
            let mut ctx = self.ctx(loaded, now_ms);
            let r = f(&mut loaded.shard, &mut ctx);
            match self.apply(partition, loaded, ctx, &mut outbox) {
                Status::Nothing | Status::Replicated => Written::Now(r),
                Status::Failed(e) => Written::Failed(r, e),
                Status::Waiting(id, appended, log) => {
                    if loaded
                        .writes
                        .back()
                        .is_some_and(|w| !w.replies.is_empty() || !w.actions.is_empty())
                    {
                        // Parked answers and actions must not depend on the caller waiting.
                        self.spawn_wait(partition, &slot, id, appended, log.clone());
                    }
                    Written::Later(r, self.wait_for(partition, &slot, id, appended, log))
                }
            }
        };
        self.deliver(outbox);
        Ok(written)
    }

    /// Runs `f` as a write on every loaded shard (nobody waits on these writes).
    pub fn write_all(&self, now_ms: i64, mut f: impl FnMut(i32, &mut S, &mut ShardCtx<S>)) {
        for (partition, slot) in self.all_slots() {
            let mut outbox = Outbox::new(partition);
            {
                let mut guard = slot.lock();
                let Slot::Loaded(loaded) = &mut *guard else {
                    continue;
                };
                let mut ctx = self.ctx(loaded, now_ms);
                f(partition, &mut loaded.shard, &mut ctx);
                if let Status::Waiting(id, appended, log) =
                    self.apply(partition, loaded, ctx, &mut outbox)
                {
                    self.spawn_wait(partition, &slot, id, appended, log);
                }
            }
            self.deliver(outbox);
        }
    }

    /// The timer: commits what the high watermark passed, then each shard's own tick.
    pub fn tick(&self, now_ms: i64) {
        let env = self.inner.env.clone();
        for (partition, slot) in self.all_slots() {
            let mut outbox = Outbox::new(partition);
            {
                let mut guard = slot.lock();
                let Slot::Loaded(loaded) = &mut *guard else {
                    continue;
                };
                advance(loaded, &mut outbox);
                let mut ctx = self.ctx(loaded, now_ms);
                loaded.shard.tick(&mut ctx, &env, now_ms);
                if let Status::Waiting(id, appended, log) =
                    self.apply(partition, loaded, ctx, &mut outbox)
                {
                    self.spawn_wait(partition, &slot, id, appended, log);
                }
            }
            self.deliver(outbox);
        }
    }

    fn all_slots(&self) -> Vec<(i32, SlotRef<S>)> {
        let mut v: Vec<(i32, SlotRef<S>)> = self
            .inner
            .shards
            .read()
            .iter()
            .map(|(p, s)| (*p, s.clone()))
            .collect();
        v.sort_unstable_by_key(|(p, _)| *p);
        v
    }

    fn ctx(&self, loaded: &Loaded<S>, now_ms: i64) -> ShardCtx<S> {
        ShardCtx::new(now_ms, loaded.next_write, loaded.next_waiter)
    }

    /// Takes what an operation produced: registers its parked waiters, appends its batches and
    /// queues (or, when nothing waits, sends) its answers and actions.
    fn apply(
        &self,
        partition: i32,
        loaded: &mut Loaded<S>,
        mut ctx: ShardCtx<S>,
        outbox: &mut Outbox<S>,
    ) -> Status {
        loaded.next_waiter += ctx.waiters_used;
        for (id, tx) in ctx.parked.drain(..) {
            loaded.waiters.insert(id, tx);
        }
        let batches = ctx.take_batches();
        let replies = std::mem::take(&mut ctx.replies);
        let actions = std::mem::take(&mut ctx.actions);
        if batches.is_empty() {
            self.send_now(loaded, replies, outbox);
            outbox.actions.extend(actions);
            return Status::Nothing;
        }
        let id = loaded.next_write;
        let mut appended = None;
        let mut error = None;
        if let Err(e) = loaded.log.check_writable() {
            error = Some(e);
        } else {
            for (kind, records) in &batches {
                let base_sequence = match *kind {
                    BatchKind::Plain => -1,
                    BatchKind::Transactional {
                        producer_id,
                        producer_epoch,
                    } => loaded.log.next_sequence(producer_id, producer_epoch),
                };
                let bytes = match batch::encode_at(*kind, records, ctx.now_ms(), base_sequence) {
                    Ok(b) => b,
                    Err(e) => {
                        error = Some(WriteError::Storage(e));
                        break;
                    }
                };
                match loaded.log.append(bytes, ctx.now_ms()) {
                    Ok(a) => appended = Some(a),
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
            }
        }
        if let Some(e) = error {
            tracing::warn!(topic = self.inner.topic, partition, error = %e, "coordinator write failed");
            if appended.is_some() {
                // Part of the write is in the log; it can never commit as a whole, and the
                // shard treats it as failed. The next coordinator replays what is there.
                tracing::error!(
                    topic = self.inner.topic,
                    partition,
                    "coordinator write only partly appended"
                );
            }
            loaded.next_write += 1;
            loaded.shard.on_write_failed(id, &e);
            let failed = replies
                .into_iter()
                .map(|(w, r)| (w, S::fail_reply(r, &e)))
                .collect();
            self.send_now(loaded, failed, outbox);
            return Status::Failed(e);
        }
        let appended = appended.expect("at least one batch appended");
        loaded.next_write += 1;
        loaded.writes.push_back(PendingWrite {
            id,
            appended,
            replies,
            actions,
        });
        match loaded.log.ack_status(appended) {
            Some(Ok(())) => {
                advance(loaded, outbox);
                Status::Replicated
            }
            Some(Err(e)) => {
                // Leadership moved between the append and now: answers fail, and the write
                // stays for the next check (the shard is about to be unloaded anyway).
                self.fail_replies_of(loaded, id, &e, outbox);
                Status::Failed(e)
            }
            None if tokio::runtime::Handle::try_current().is_err() => {
                // Without an async runtime nobody could wait; answer now as if replicated
                // (only single-threaded tools and tests get here).
                let w = loaded.writes.back_mut().expect("just pushed");
                let replies = std::mem::take(&mut w.replies);
                let actions = std::mem::take(&mut w.actions);
                self.send_now(loaded, replies, outbox);
                outbox.actions.extend(actions);
                Status::Replicated
            }
            None => Status::Waiting(id, appended, loaded.log.clone()),
        }
    }

    fn send_now(
        &self,
        loaded: &mut Loaded<S>,
        replies: Vec<(WaiterId, S::Reply)>,
        outbox: &mut Outbox<S>,
    ) {
        for (w, r) in replies {
            if let Some(tx) = loaded.waiters.remove(&w) {
                outbox.sends.push((tx, r));
            }
        }
    }

    fn fail_replies_of(
        &self,
        loaded: &mut Loaded<S>,
        id: WriteId,
        e: &WriteError,
        outbox: &mut Outbox<S>,
    ) {
        let Some(w) = loaded.writes.iter_mut().find(|w| w.id == id) else {
            return;
        };
        let replies: Vec<_> = std::mem::take(&mut w.replies)
            .into_iter()
            .map(|(w, r)| (w, S::fail_reply(r, e)))
            .collect();
        self.send_now(loaded, replies, outbox);
    }

    /// A future that waits for write `id`, then commits what the high watermark passed; on a
    /// timeout or failure the write's parked answers fail (the write itself stays pending).
    fn wait_for(
        &self,
        partition: i32,
        slot: &SlotRef<S>,
        id: WriteId,
        appended: Appended,
        log: Arc<dyn ShardLog>,
    ) -> ReplicationWait {
        let runtime = self.clone();
        let slot = Arc::downgrade(slot);
        let timeout = self.inner.write_timeout_ms.load(Ordering::Relaxed);
        let wait = log.wait_replicated(appended, timeout);
        ReplicationWait(Box::pin(async move {
            let r = wait.await;
            let Some(slot) = slot.upgrade() else {
                return r.and(Err(WriteError::NotLeader));
            };
            let mut outbox = Outbox::new(partition);
            let r = {
                let mut guard = slot.lock();
                match &mut *guard {
                    Slot::Loaded(loaded) => {
                        match &r {
                            Ok(()) => advance(loaded, &mut outbox),
                            Err(e) => runtime.fail_replies_of(loaded, id, e, &mut outbox),
                        }
                        r
                    }
                    Slot::Loading { .. } => r.and(Err(WriteError::NotLeader)),
                }
            };
            runtime.deliver(outbox);
            r
        }))
    }

    /// [`Self::wait_for`] on a task of its own, for writes whose answers are parked.
    fn spawn_wait(
        &self,
        partition: i32,
        slot: &SlotRef<S>,
        id: WriteId,
        appended: Appended,
        log: Arc<dyn ShardLog>,
    ) {
        let wait = self.wait_for(partition, slot, id, appended, log);
        tokio::spawn(async move {
            let _ = wait.wait().await;
        });
    }

    fn deliver(&self, outbox: Outbox<S>) {
        let Outbox {
            partition,
            sends,
            actions,
        } = outbox;
        self.deliver_sends(sends);
        for a in actions {
            (self.inner.actions)(partition, a);
        }
    }

    fn deliver_sends(&self, sends: Vec<(oneshot::Sender<S::Reply>, S::Reply)>) {
        for (tx, r) in sends {
            let _ = tx.send(r);
        }
    }
}

/// What became of an operation's write.
enum Status {
    Nothing,
    Replicated,
    Failed(WriteError),
    Waiting(WriteId, Appended, Arc<dyn ShardLog>),
}

/// Pops the writes the high watermark has passed, in order, tells the shard, and queues their
/// answers and actions.
fn advance<S: CoordinatorShard>(loaded: &mut Loaded<S>, outbox: &mut Outbox<S>) {
    let mut upto = None;
    while let Some(front) = loaded.writes.front() {
        match loaded.log.ack_status(front.appended) {
            Some(Ok(())) => {}
            _ => break,
        }
        let w = loaded.writes.pop_front().expect("front exists");
        upto = Some(w.id);
        for (id, r) in w.replies {
            if let Some(tx) = loaded.waiters.remove(&id) {
                outbox.sends.push((tx, r));
            }
        }
        outbox.actions.extend(w.actions);
    }
    if let Some(upto) = upto {
        let due = loaded.shard.on_committed(upto);
        outbox.actions.extend(due);
    }
}

/// Replays a partition into `shard`: the number of records, and the read error that stopped it
/// early.
fn replay<S: CoordinatorShard>(
    log: &dyn ShardLog,
    shard: &mut S,
    now_ms: i64,
    topic: &str,
    partition: i32,
) -> (usize, Option<String>) {
    let mut n = 0usize;
    let mut offset = log.log_start_offset();
    let end = log.log_end_offset();
    while offset < end {
        let buf = match log.read(offset, 1 << 20) {
            Ok(b) => b,
            Err(e) => return (n, Some(e)),
        };
        if buf.is_empty() {
            break;
        }
        let next = batch::for_each_record(&buf, |r| {
            n += 1;
            if let Err(e) = shard.replay(r, now_ms) {
                tracing::warn!(topic, partition, error = %e, "skipping a record while loading");
            }
        });
        match next {
            Some(next) if next > offset => offset = next,
            _ => break,
        }
    }
    (n, None)
}
