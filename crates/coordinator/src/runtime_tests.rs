//! The runtime's rules, on an in-memory log and a counter shard.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::log::{ShardLog, WriteError};
use crate::runtime::{CoordinatorRuntime, NotServing, Written};
use crate::shard::{CoordinatorShard, LoadInfo, ReplayRecord, ShardCtx, WaiterId, WriteId};
use crate::testing::MemLog;

/// A shard that sums the numbers written to it: `committed` moves only when writes commit.
#[derive(Default)]
struct Counter {
    coordinator_epoch: i32,
    committed: i64,
    pending: BTreeMap<WriteId, i64>,
    failed: Vec<WriteId>,
    parked: Vec<WaiterId>,
    unloaded: bool,
    ticks: usize,
}

#[derive(Debug, PartialEq)]
enum Reply {
    Sum(i64),
    Failed(WriteError),
}

impl CoordinatorShard for Counter {
    type Env = ();
    type Reply = Reply;
    type Action = i64;

    fn new(info: &LoadInfo, _env: &()) -> Self {
        Counter {
            coordinator_epoch: info.coordinator_epoch,
            ..Default::default()
        }
    }
    fn replay(&mut self, r: &ReplayRecord<'_>, _now_ms: i64) -> Result<(), String> {
        match r {
            ReplayRecord::Data {
                key: b"n",
                value: Some(v),
                ..
            } => {
                self.committed += i64::from_be_bytes((*v).try_into().map_err(|_| "bad value")?);
                Ok(())
            }
            _ => Err("unexpected record".into()),
        }
    }
    fn on_unloaded(&mut self, ctx: &mut ShardCtx<Self>) {
        self.unloaded = true;
        for w in self.parked.drain(..) {
            ctx.reply(w, Reply::Failed(WriteError::NotLeader));
        }
    }
    fn on_committed(&mut self, upto: WriteId) -> Vec<i64> {
        let rest = self.pending.split_off(&(upto + 1));
        self.committed += self.pending.values().sum::<i64>();
        self.pending = rest;
        // A second action per commit, due only once committed: the new total, negated.
        vec![-self.committed]
    }
    fn on_write_failed(&mut self, id: WriteId, _e: &WriteError) {
        self.pending.remove(&id);
        self.failed.push(id);
    }
    fn tick(&mut self, _ctx: &mut ShardCtx<Self>, _env: &(), _now_ms: i64) {
        self.ticks += 1;
    }
    fn fail_reply(_reply: Reply, e: &WriteError) -> Reply {
        Reply::Failed(e.clone())
    }
}

/// Writes `n`, answers the sum it will make, and queues `n` as an action.
fn add(c: &mut Counter, ctx: &mut ShardCtx<Counter>, n: i64) -> i64 {
    ctx.record(
        Bytes::from_static(b"n"),
        Some(Bytes::copy_from_slice(&n.to_be_bytes())),
    );
    c.pending.insert(ctx.write_id(), n);
    ctx.after_commit(n);
    c.committed + c.pending.values().sum::<i64>()
}

type Actions = Arc<Mutex<Vec<(i32, i64)>>>;

fn runtime(timeout_ms: u64) -> (CoordinatorRuntime<Counter>, Actions) {
    let actions: Actions = Arc::default();
    let sink = actions.clone();
    let rt = CoordinatorRuntime::new(
        "counter",
        Arc::new(()),
        timeout_ms,
        Arc::new(move |p, a| sink.lock().push((p, a))),
    );
    (rt, actions)
}

fn committed(rt: &CoordinatorRuntime<Counter>, p: i32) -> i64 {
    rt.read(p, |c| c.committed).unwrap()
}

#[tokio::test]
async fn a_shard_replays_its_partition_and_answers_once_replicated() {
    let log = MemLog::new();
    let (rt, actions) = runtime(5_000);
    assert_eq!(rt.status(3), Err(NotServing::NotCoordinator));
    assert_eq!(rt.load(3, log.clone(), 0), 0);
    assert_eq!(rt.loaded_partitions(), vec![3]);

    let Written::Later(sum, wait) = rt.write(3, 0, |c, ctx| add(c, ctx, 5)).unwrap() else {
        panic!("a write with an ISR of more than the leader waits");
    };
    assert_eq!(sum, 5);
    let wait = tokio::spawn(wait.wait());
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        !wait.is_finished(),
        "answered before the high watermark passed the write"
    );
    assert_eq!(committed(&rt, 3), 0, "applied before it was replicated");
    assert!(
        actions.lock().is_empty(),
        "an action ran before its write committed"
    );

    log.replicate_all();
    assert_eq!(wait.await.unwrap(), Ok(()));
    assert_eq!(committed(&rt, 3), 5);
    assert_eq!(*actions.lock(), vec![(3, 5), (3, -5)]);

    // A second runtime (a new coordinator) replays what the first one wrote.
    let (rt2, _) = runtime(5_000);
    rt.write(3, 0, |c, ctx| add(c, ctx, 7)).unwrap();
    log.replicate_all();
    assert_eq!(rt2.load(3, log.clone(), 0), 2);
    assert_eq!(committed(&rt2, 3), 12);
    assert_eq!(rt2.read(3, |c| c.coordinator_epoch).unwrap(), 1);
}

#[tokio::test]
async fn writes_commit_in_order_and_a_timed_out_write_still_applies_when_replicated() {
    let log = MemLog::new();
    let (rt, actions) = runtime(30);
    rt.load(0, log.clone(), 0);
    let first = rt.write(0, 0, |c, ctx| add(c, ctx, 1)).unwrap();
    let second = rt.write(0, 0, |c, ctx| add(c, ctx, 10)).unwrap();
    let fail = |_, e| match e {
        WriteError::TimedOut => -1,
        _ => -2,
    };
    assert_eq!(first.finish(fail).await, -1, "the answer is the timeout");
    assert_eq!(committed(&rt, 0), 0);
    // Only the first write reaches the ISR.
    log.set_hw(1);
    assert_eq!(second.finish(fail).await, -1);
    rt.tick(0);
    assert_eq!(
        committed(&rt, 0),
        1,
        "the timed-out write applies once replicated"
    );
    assert_eq!(*actions.lock(), vec![(0, 1), (0, -1)]);
    log.replicate_all();
    rt.tick(0);
    assert_eq!(committed(&rt, 0), 11);
    assert_eq!(*actions.lock(), vec![(0, 1), (0, -1), (0, 10), (0, -11)]);
    assert_eq!(rt.read(0, |c| c.ticks).unwrap(), 2);
}

#[tokio::test]
async fn a_refused_or_failed_append_fails_the_write_and_its_parked_answers() {
    let log = MemLog::new();
    let (rt, actions) = runtime(5_000);
    rt.load(0, log.clone(), 0);
    log.state.lock().refuse = Some(WriteError::NotEnoughReplicas);
    let (written, mut rx) = {
        let mut rx = None;
        let w = rt
            .write(0, 0, |c, ctx| {
                let (w, r) = ctx.park();
                rx = Some(r);
                ctx.reply(w, Reply::Sum(4));
                add(c, ctx, 4)
            })
            .unwrap();
        (w, rx.unwrap())
    };
    assert!(matches!(
        written,
        Written::Failed(4, WriteError::NotEnoughReplicas)
    ));
    assert_eq!(
        rx.try_recv().unwrap(),
        Reply::Failed(WriteError::NotEnoughReplicas)
    );
    assert_eq!(rt.read(0, |c| c.failed.clone()).unwrap(), vec![1]);

    log.state.lock().refuse = None;
    log.state.lock().fail_append = Some(WriteError::RecordTooLarge);
    let w = rt.write(0, 0, |c, ctx| add(c, ctx, 2)).unwrap();
    assert!(matches!(w, Written::Failed(_, WriteError::RecordTooLarge)));
    assert_eq!(rt.read(0, |c| c.failed.clone()).unwrap(), vec![1, 2]);
    assert!(rt.read(0, |c| c.pending.is_empty()).unwrap());
    assert!(actions.lock().is_empty(), "a failed write's action ran");
    assert_eq!(log.log_end_offset(), 0);
}

#[tokio::test]
async fn parked_answers_leave_with_their_write_or_when_the_shard_unloads() {
    let log = MemLog::new();
    let (rt, _) = runtime(5_000);
    rt.load(0, log.clone(), 0);
    // A waiter parked by one operation and answered by a later one that writes.
    let mut parked_rx = None;
    rt.write(0, 0, |c, ctx| {
        let (w, r) = ctx.park();
        c.parked.push(w);
        parked_rx = Some(r);
    })
    .unwrap();
    let mut parked_rx = parked_rx.unwrap();
    let mut answered_rx = None;
    rt.write(0, 0, |c, ctx| {
        let w = c.parked.pop().unwrap();
        let (w2, r2) = ctx.park();
        answered_rx = Some(r2);
        ctx.reply(w, Reply::Sum(9));
        ctx.reply(w2, Reply::Sum(9));
        add(c, ctx, 9)
    })
    .unwrap();
    let mut answered_rx = answered_rx.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(parked_rx.try_recv().is_err(), "answered before replicated");
    log.replicate_all();
    assert_eq!((&mut parked_rx).await.unwrap(), Reply::Sum(9));
    assert_eq!((&mut answered_rx).await.unwrap(), Reply::Sum(9));

    // Unloading answers what is parked, and what waits on an unreplicated write.
    let mut parked_rx = None;
    let mut waiting_rx = None;
    rt.write(0, 0, |c, ctx| {
        let (w, r) = ctx.park();
        c.parked.push(w);
        parked_rx = Some(r);
    })
    .unwrap();
    rt.write(0, 0, |c, ctx| {
        let (w, r) = ctx.park();
        waiting_rx = Some(r);
        ctx.reply(w, Reply::Sum(1));
        add(c, ctx, 1)
    })
    .unwrap();
    rt.unload(0);
    assert_eq!(
        parked_rx.unwrap().await.unwrap(),
        Reply::Failed(WriteError::NotLeader)
    );
    assert_eq!(
        waiting_rx.unwrap().await.unwrap(),
        Reply::Failed(WriteError::NotLeader)
    );
    assert_eq!(rt.status(0), Err(NotServing::NotCoordinator));
    assert!(matches!(
        rt.write(0, 0, |_, _| ()),
        Err(NotServing::NotCoordinator)
    ));
}

#[tokio::test]
async fn leadership_lost_mid_write_fails_the_answer_with_not_leader() {
    let log = MemLog::new();
    let (rt, actions) = runtime(5_000);
    rt.load(0, log.clone(), 0);
    let w = rt.write(0, 0, |c, ctx| add(c, ctx, 3)).unwrap();
    let Written::Later(_, wait) = w else {
        panic!("waits")
    };
    log.lose_leadership();
    assert_eq!(wait.wait().await, Err(WriteError::NotLeader));
    rt.tick(0);
    assert_eq!(committed(&rt, 0), 0);
    assert!(actions.lock().is_empty());
}

#[tokio::test]
async fn a_fenced_node_serves_nothing_and_a_loading_shard_answers_load_in_progress() {
    let log = MemLog::new();
    let (rt, _) = runtime(5_000);
    rt.load(0, log.clone(), 0);
    let fenced = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let f = fenced.clone();
    rt.set_serving(Arc::new(move || !f.load(Ordering::Relaxed)));
    assert_eq!(rt.status(0), Err(NotServing::NotCoordinator));
    assert!(matches!(
        rt.read(0, |_| ()),
        Err(NotServing::NotCoordinator)
    ));
    fenced.store(false, Ordering::Relaxed);
    assert_eq!(rt.status(0), Ok(()));

    // While partition 1 loads, it answers LoadInProgress; an unload during the load wins.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (rt2, s2) = (rt.clone(), seen.clone());
    let loading = MemLog::new();
    *loading.on_read.lock() = Some(Box::new(move || {
        s2.lock().push(rt2.status(1));
        rt2.unload(1);
    }));
    loading
        .append(
            crate::batch::encode(
                crate::shard::BatchKind::Plain,
                &[(
                    Bytes::from_static(b"n"),
                    Some(Bytes::copy_from_slice(&1i64.to_be_bytes())),
                )],
                0,
            )
            .unwrap(),
            0,
        )
        .unwrap();
    assert_eq!(rt.load(1, loading.clone(), 0), 0, "an unloaded load stops");
    assert_eq!(*seen.lock(), vec![Err(NotServing::LoadInProgress)]);
    assert_eq!(rt.status(1), Err(NotServing::NotCoordinator));
    assert_eq!(rt.loaded_partitions(), vec![0]);
}

#[test]
fn without_an_async_runtime_answers_leave_at_once() {
    let log = MemLog::new();
    let (rt, actions) = runtime(5_000);
    rt.load(0, log.clone(), 0);
    let w = rt.write(0, 0, |c, ctx| add(c, ctx, 2)).unwrap();
    assert!(matches!(w, Written::Now(2)));
    assert_eq!(*actions.lock(), vec![(0, 2)]);
    // Still applied only when the high watermark passes it.
    assert_eq!(committed(&rt, 0), 0);
    log.replicate_all();
    rt.tick(0);
    assert_eq!(committed(&rt, 0), 2);
    assert_eq!(*actions.lock(), vec![(0, 2), (0, -2)]);
}
