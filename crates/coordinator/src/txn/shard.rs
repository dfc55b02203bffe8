//! The transaction coordinator as a [`CoordinatorShard`]: one [`TxnCoordinator`] per
//! `__transaction_state` partition, its records appended by the runtime, its transitions
//! applied when the runtime reports them replicated, and the markers of a durable
//! PrepareCommit/PrepareAbort handed out as actions.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use parking_lot::RwLock;

use super::coordinator::{InitProducerIdOutcome, MarkerJob, TxnCoordinator, TxnStep, TxnWrite};
use super::metadata::{TopicPartition, WriteToken};
use super::TxnConfig;
use crate::log::WriteError;
use crate::shard::{CoordinatorShard, LoadInfo, ReplayRecord, ShardCtx, WriteId};

/// What every transaction shard reads: the settings (changed by a dynamic config update).
#[derive(Debug, Default)]
pub struct TxnEnv {
    pub config: RwLock<TxnConfig>,
}

/// Work the broker does once a write is replicated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnAction {
    /// Write these markers to the transaction's partitions, then report with
    /// [`TxnShard::markers_written`].
    SendMarkers(MarkerJob),
}

/// One `__transaction_state` partition's transactions.
pub struct TxnShard {
    core: TxnCoordinator,
    /// The records each runtime write carries, to report their fate to the core.
    writes: BTreeMap<WriteId, Vec<(String, WriteToken)>>,
    last_abort_check_ms: i64,
    last_expiry_check_ms: i64,
}

impl TxnShard {
    pub fn core(&self) -> &TxnCoordinator {
        &self.core
    }

    fn write(&mut self, ctx: &mut ShardCtx<Self>, w: TxnWrite) {
        ctx.record(w.key, w.value);
        self.writes
            .entry(ctx.write_id())
            .or_default()
            .push((w.txn_id, w.token));
    }

    fn step(&mut self, ctx: &mut ShardCtx<Self>, step: TxnStep) {
        if let TxnStep::Write(w) = step {
            self.write(ctx, w);
        }
    }

    /// InitProducerId for a transactional id; see [`TxnCoordinator::init_producer_id`].
    #[allow(clippy::too_many_arguments)]
    pub fn init_producer_id(
        &mut self,
        ctx: &mut ShardCtx<Self>,
        env: &TxnEnv,
        txn_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        fresh_pid: Option<i64>,
    ) -> Result<InitProducerIdOutcome, ResponseError> {
        let max = env.config.read().max_timeout_ms;
        let now = ctx.now_ms();
        let outcome = self
            .core
            .init_producer_id(txn_id, timeout_ms, expected, max, fresh_pid, now)?;
        match &outcome {
            InitProducerIdOutcome::NeedProducerId => {}
            InitProducerIdOutcome::Write { write, .. }
            | InitProducerIdOutcome::Fenced { write } => self.write(ctx, write.clone()),
        }
        Ok(outcome)
    }

    pub fn add_partitions(
        &mut self,
        ctx: &mut ShardCtx<Self>,
        txn_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[TopicPartition],
    ) -> Result<(), ResponseError> {
        let now = ctx.now_ms();
        let step =
            self.core
                .add_partitions(txn_id, producer_id, producer_epoch, partitions, now)?;
        self.step(ctx, step);
        Ok(())
    }

    pub fn add_offsets(
        &mut self,
        ctx: &mut ShardCtx<Self>,
        txn_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        offsets_partition: i32,
    ) -> Result<(), ResponseError> {
        let now = ctx.now_ms();
        let step =
            self.core
                .add_offsets(txn_id, producer_id, producer_epoch, offsets_partition, now)?;
        self.step(ctx, step);
        Ok(())
    }

    pub fn end_txn(
        &mut self,
        ctx: &mut ShardCtx<Self>,
        txn_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
    ) -> Result<(), ResponseError> {
        let now = ctx.now_ms();
        let step = self
            .core
            .end_txn(txn_id, producer_id, producer_epoch, commit, now)?;
        self.step(ctx, step);
        Ok(())
    }

    /// Every marker of `job` is written: the transaction completes (a CompleteCommit or
    /// CompleteAbort write). A stale job changes nothing.
    pub fn markers_written(&mut self, ctx: &mut ShardCtx<Self>, job: &MarkerJob) {
        let now = ctx.now_ms();
        if let Some(w) = self.core.markers_written(
            &job.txn_id,
            job.producer_id,
            job.producer_epoch,
            job.coordinator_epoch,
            now,
        ) {
            self.write(ctx, w);
        }
    }

    /// Whether `job` still describes the transaction's current markers (its epoch, producer
    /// and coordinator epoch unchanged and the transaction still preparing).
    pub fn is_current(&self, job: &MarkerJob) -> bool {
        self.core.coordinator_epoch == job.coordinator_epoch
            && self.core.get(&job.txn_id).is_some_and(|m| {
                m.producer_id == job.producer_id
                    && m.producer_epoch == job.producer_epoch
                    && m.state.is_prepare()
            })
    }
}

impl CoordinatorShard for TxnShard {
    type Env = TxnEnv;
    type Reply = ();
    type Action = TxnAction;

    fn new(info: &LoadInfo, _env: &TxnEnv) -> Self {
        TxnShard {
            core: TxnCoordinator::new(info.coordinator_epoch),
            writes: BTreeMap::new(),
            last_abort_check_ms: info.now_ms,
            last_expiry_check_ms: info.now_ms,
        }
    }

    fn replay(&mut self, record: &ReplayRecord<'_>, _now_ms: i64) -> Result<(), String> {
        match record {
            ReplayRecord::Data { key, value, .. } => {
                self.core.replay(key, *value).map_err(|e| e.to_string())
            }
            ReplayRecord::Marker { .. } => Ok(()),
        }
    }

    fn on_loaded(&mut self, ctx: &mut ShardCtx<Self>, _env: &TxnEnv) {
        for job in self.core.on_loaded() {
            ctx.after_commit(TxnAction::SendMarkers(job));
        }
    }

    fn on_committed(&mut self, upto: WriteId) -> Vec<TxnAction> {
        let rest = self.writes.split_off(&(upto + 1));
        let done = std::mem::replace(&mut self.writes, rest);
        let mut actions = Vec::new();
        for (txn_id, token) in done.into_values().flatten() {
            if let Some(job) = self.core.write_committed(&txn_id, token) {
                actions.push(TxnAction::SendMarkers(job));
            }
        }
        actions
    }

    fn on_write_failed(&mut self, id: WriteId, _error: &WriteError) {
        for (txn_id, token) in self.writes.remove(&id).unwrap_or_default() {
            self.core.write_failed(&txn_id, token);
        }
    }

    fn tick(&mut self, ctx: &mut ShardCtx<Self>, env: &TxnEnv, now_ms: i64) {
        let config = *env.config.read();
        if now_ms - self.last_abort_check_ms >= config.abort_timed_out_interval_ms {
            self.last_abort_check_ms = now_ms;
            for w in self.core.timed_out(now_ms) {
                tracing::info!(transactional_id = %w.txn_id, "aborting a transaction past its timeout");
                self.write(ctx, w);
            }
        }
        if now_ms - self.last_expiry_check_ms >= config.remove_expired_interval_ms {
            self.last_expiry_check_ms = now_ms;
            for w in self.core.expired_ids(now_ms, config.id_expiration_ms) {
                self.write(ctx, w);
            }
        }
    }

    fn fail_reply(_reply: (), _error: &WriteError) {}
}

/// The coordinator-protocol code for a failed `__transaction_state` write, as Kafka's
/// transaction coordinator answers: leadership gone → NOT_COORDINATOR; not enough replicas or
/// a timeout → COORDINATOR_NOT_AVAILABLE (clients look the coordinator up again and retry);
/// anything else → UNKNOWN_SERVER_ERROR.
pub fn write_error_code(e: &WriteError) -> ResponseError {
    match e {
        WriteError::NotLeader => ResponseError::NotCoordinator,
        WriteError::NotEnoughReplicas
        | WriteError::NotEnoughReplicasAfterAppend
        | WriteError::TimedOut => ResponseError::CoordinatorNotAvailable,
        WriteError::RecordTooLarge | WriteError::InvalidProducerEpoch | WriteError::Storage(_) => {
            ResponseError::UnknownServerError
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use parking_lot::Mutex;

    use super::*;
    use crate::runtime::{CoordinatorRuntime, Written};
    use crate::testing::MemLog;
    use crate::txn::TxnState;

    type Sent = Arc<Mutex<Vec<(i32, TxnAction)>>>;

    fn runtime() -> (CoordinatorRuntime<TxnShard>, Sent) {
        let sent: Sent = Arc::default();
        let sink = sent.clone();
        let rt = CoordinatorRuntime::new(
            "__transaction_state",
            Arc::new(TxnEnv::default()),
            5_000,
            Arc::new(move |p, a| sink.lock().push((p, a))),
        );
        (rt, sent)
    }

    fn state(rt: &CoordinatorRuntime<TxnShard>, id: &str) -> Option<(TxnState, i64, i16)> {
        rt.read(0, |s| {
            s.core()
                .get(id)
                .map(|m| (m.state, m.producer_id, m.producer_epoch))
        })
        .unwrap()
    }

    async fn done<R>(w: Written<R>) -> R {
        w.finish(|_, e| panic!("write failed: {e}")).await
    }

    #[tokio::test]
    async fn a_transaction_commits_through_the_runtime_and_survives_a_reload() {
        let log = MemLog::new();
        let (rt, sent) = runtime();
        rt.load(0, log.clone(), 0);
        let env = rt.env().clone();
        // An unknown id needs a producer id from the controller first.
        let need = rt
            .write(0, 1, |s, ctx| {
                s.init_producer_id(ctx, &env, "tx", 60_000, None, None)
            })
            .unwrap();
        assert!(matches!(
            need,
            Written::Now(Ok(InitProducerIdOutcome::NeedProducerId))
        ));
        let init = rt
            .write(0, 1, |s, ctx| {
                s.init_producer_id(ctx, &env, "tx", 60_000, None, Some(1000))
            })
            .unwrap();
        let Written::Later(
            Ok(InitProducerIdOutcome::Write {
                producer_id,
                producer_epoch,
                ..
            }),
            wait,
        ) = init
        else {
            panic!("InitProducerId writes and waits for the ISR");
        };
        assert_eq!((producer_id, producer_epoch), (1000, 0));
        assert_eq!(state(&rt, "tx").unwrap().0, TxnState::Empty);
        log.replicate_all();
        wait.wait().await.unwrap();

        let parts = vec![("t".to_string(), 0), ("t".to_string(), 1)];
        let w = rt
            .write(0, 2, |s, ctx| s.add_partitions(ctx, "tx", 1000, 0, &parts))
            .unwrap();
        log.replicate_all();
        done(w).await.unwrap();
        // The answer waited for the write; the state applied only then.
        let w = rt
            .write(0, 3, |s, ctx| s.end_txn(ctx, "tx", 1000, 0, true))
            .unwrap();
        assert!(
            sent.lock().is_empty(),
            "markers before PrepareCommit was durable"
        );
        assert_eq!(state(&rt, "tx").unwrap().0, TxnState::Ongoing);
        log.replicate_all();
        done(w).await.unwrap();
        assert_eq!(state(&rt, "tx").unwrap().0, TxnState::PrepareCommit);
        let job = match sent.lock().as_slice() {
            [(0, TxnAction::SendMarkers(job))] => job.clone(),
            other => panic!("expected one marker job, got {other:?}"),
        };
        assert!(job.commit);
        assert_eq!(job.partitions.iter().cloned().collect::<Vec<_>>(), parts);
        assert_eq!(job.coordinator_epoch, 1);
        assert!(rt.read(0, |s| s.is_current(&job)).unwrap());

        // A new coordinator loaded now would send the markers again.
        let (rt2, sent2) = runtime();
        rt2.load(0, log.clone(), 0);
        assert_eq!(state(&rt2, "tx").unwrap().0, TxnState::PrepareCommit);
        assert!(
            matches!(sent2.lock().as_slice(), [(0, TxnAction::SendMarkers(j))] if j.partitions == job.partitions)
        );

        rt.write(0, 4, |s, ctx| s.markers_written(ctx, &job))
            .unwrap();
        log.replicate_all();
        rt.tick(4);
        assert_eq!(
            state(&rt, "tx").unwrap(),
            (TxnState::CompleteCommit, 1000, 0)
        );
        assert!(!rt.read(0, |s| s.is_current(&job)).unwrap());

        let (rt3, sent3) = runtime();
        rt3.load(0, log.clone(), 0);
        assert_eq!(
            state(&rt3, "tx").unwrap(),
            (TxnState::CompleteCommit, 1000, 0)
        );
        assert!(sent3.lock().is_empty());
    }

    #[tokio::test]
    async fn a_failed_write_leaves_the_transaction_as_it_was_and_a_timeout_aborts() {
        let log = MemLog::new();
        let (rt, sent) = runtime();
        rt.env().config.write().abort_timed_out_interval_ms = 10;
        rt.load(0, log.clone(), 0);
        let env = rt.env().clone();
        let w = rt
            .write(0, 1, |s, ctx| {
                s.init_producer_id(ctx, &env, "tx", 100, None, Some(7))
            })
            .unwrap();
        log.replicate_all();
        done(w).await.unwrap();
        let parts = vec![("t".to_string(), 0)];

        log.state.lock().refuse = Some(WriteError::NotEnoughReplicas);
        let w = rt
            .write(0, 2, |s, ctx| s.add_partitions(ctx, "tx", 7, 0, &parts))
            .unwrap();
        assert!(matches!(
            w,
            Written::Failed(Ok(()), WriteError::NotEnoughReplicas)
        ));
        assert_eq!(
            write_error_code(&WriteError::NotEnoughReplicas),
            ResponseError::CoordinatorNotAvailable
        );
        assert_eq!(state(&rt, "tx").unwrap().0, TxnState::Empty);
        log.state.lock().refuse = None;

        let w = rt
            .write(0, 3, |s, ctx| s.add_partitions(ctx, "tx", 7, 0, &parts))
            .unwrap();
        log.replicate_all();
        done(w).await.unwrap();
        assert_eq!(state(&rt, "tx").unwrap().0, TxnState::Ongoing);

        // Past start + timeout, the timer fences the producer and aborts.
        rt.tick(3 + 101 + 10);
        log.replicate_all();
        rt.tick(3 + 101 + 11);
        assert_eq!(state(&rt, "tx").unwrap(), (TxnState::PrepareAbort, 7, 1));
        let job = match sent.lock().as_slice() {
            [(0, TxnAction::SendMarkers(job))] => job.clone(),
            other => panic!("expected the abort's markers, got {other:?}"),
        };
        assert!(!job.commit);
        assert_eq!(job.producer_epoch, 1);
        // The producer's old epoch is fenced.
        let r = rt
            .write(0, 200, |s, ctx| s.end_txn(ctx, "tx", 7, 0, true))
            .unwrap();
        assert!(matches!(
            r,
            Written::Now(Err(ResponseError::ProducerFenced))
        ));
    }
}
