//! The transaction coordinator service: the `__transaction_state` shards on the coordinator
//! runtime, and the asynchronous steps around them (producer ids from the controller, waiting
//! for the ISR, codes for the wire).

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use runnel_coordinator::partitioning::partition_for;
use runnel_coordinator::runtime::{CoordinatorRuntime, NotServing, Written};
use runnel_coordinator::txn::shard::{write_error_code, TxnAction, TxnEnv, TxnShard};
use runnel_coordinator::txn::{
    InitProducerIdOutcome, MarkerJob, TopicPartition, TxnConfig, TxnDescription, TxnListing,
    TRANSACTION_STATE_TOPIC,
};
use tokio::sync::mpsc;

use super::shard_log::BrokerShardLog;
use super::topics::InternalTopicSpec;
use super::InternalCoordinator;
use crate::clock::now_ms;
use crate::config::TransactionSettings;
use crate::controller_channel::ControllerChannel;
use crate::replica::Partition;

/// How long an InitProducerId waits for a producer id block from the controller.
const PRODUCER_ID_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The transaction coordinators of the `__transaction_state` partitions led here.
pub struct TxnService {
    runtime: CoordinatorRuntime<TxnShard>,
    num_partitions: AtomicI32,
    settings: parking_lot::Mutex<TransactionSettings>,
}

fn not_serving(e: NotServing) -> ResponseError {
    match e {
        NotServing::NotCoordinator => ResponseError::NotCoordinator,
        NotServing::LoadInProgress => ResponseError::CoordinatorLoadInProgress,
    }
}

/// The result of an operation once what it wrote is replicated, or the write's error.
async fn settle<R>(w: Result<Written<R>, NotServing>) -> Result<R, ResponseError> {
    match w.map_err(not_serving)? {
        Written::Now(r) => Ok(r),
        Written::Failed(_, e) => Err(write_error_code(&e)),
        Written::Later(r, wait) => wait
            .wait()
            .await
            .map(|()| r)
            .map_err(|e| write_error_code(&e)),
    }
}

impl TxnService {
    /// A service for `settings`, and the receiving end of the marker jobs its shards hand out
    /// (run by [`super::markers::run_sender`]).
    pub fn new(
        settings: TransactionSettings,
        write_timeout_ms: u64,
    ) -> (TxnService, mpsc::UnboundedReceiver<(i32, TxnAction)>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let env = Arc::new(TxnEnv {
            config: parking_lot::RwLock::new(settings.coordinator),
        });
        let runtime = CoordinatorRuntime::new(
            TRANSACTION_STATE_TOPIC,
            env,
            write_timeout_ms,
            Arc::new(move |p, a| {
                let _ = tx.send((p, a));
            }),
        );
        (
            TxnService {
                runtime,
                num_partitions: AtomicI32::new(settings.num_partitions),
                settings: parking_lot::Mutex::new(settings),
            },
            rx,
        )
    }

    /// Whether this node may coordinate (a fenced node coordinates nothing).
    pub fn set_serving(&self, serving: Arc<dyn Fn() -> bool + Send + Sync>) {
        self.runtime.set_serving(serving);
    }

    pub fn settings(&self) -> TransactionSettings {
        *self.settings.lock()
    }

    /// How `__transaction_state` is created: compacted, `transaction.state.log.*`.
    pub fn topic_spec(&self) -> InternalTopicSpec {
        let s = self.settings();
        InternalTopicSpec {
            name: TRANSACTION_STATE_TOPIC,
            partitions: s.num_partitions,
            replication_factor: s.replication_factor,
            configs: [
                ("cleanup.policy", "compact".to_string()),
                ("min.insync.replicas", s.min_isr.to_string()),
                ("segment.bytes", s.segment_bytes.to_string()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), Some(v)))
            .collect(),
        }
    }

    pub fn config(&self) -> TxnConfig {
        *self.runtime.env().config.read()
    }

    /// The partition count of `__transaction_state` (from the image once it exists).
    pub fn set_num_partitions(&self, n: i32) {
        if n > 0 {
            self.num_partitions.store(n, Ordering::Relaxed);
        }
    }

    pub fn partition_of(&self, txn_id: &str) -> i32 {
        partition_for(txn_id, self.num_partitions.load(Ordering::Relaxed))
    }

    /// This node leads `__transaction_state` partition `p` now.
    pub fn load(&self, p: &Arc<Partition>) {
        self.runtime.load(
            p.tp.partition,
            Arc::new(BrokerShardLog(p.clone())),
            now_ms(),
        );
    }

    pub fn unload(&self, partition: i32) {
        self.runtime.unload(partition);
    }

    pub fn loaded_partitions(&self) -> Vec<i32> {
        self.runtime.loaded_partitions()
    }

    /// NOT_COORDINATOR / COORDINATOR_LOAD_IN_PROGRESS unless this node serves `txn_id`.
    pub fn check(&self, txn_id: &str) -> Result<i32, ResponseError> {
        let p = self.partition_of(txn_id);
        self.runtime.status(p).map_err(not_serving)?;
        Ok(p)
    }

    /// The timer: commits, timeouts and expiry of every loaded shard.
    pub fn tick(&self) {
        self.runtime.tick(now_ms());
    }

    /// InitProducerId with a transactional id: the producer id and epoch to use.
    pub async fn init_producer_id(
        &self,
        controller: &ControllerChannel,
        txn_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16), ResponseError> {
        let p = self.partition_of(txn_id);
        let env = self.runtime.env().clone();
        let mut fresh = None;
        loop {
            let w = self.runtime.write(p, now_ms(), |s, ctx| {
                s.init_producer_id(ctx, &env, txn_id, timeout_ms, expected, fresh)
            });
            match settle(w).await?? {
                InitProducerIdOutcome::NeedProducerId if fresh.is_none() => {
                    let id = controller
                        .next_producer_id(PRODUCER_ID_TIMEOUT)
                        .await
                        .map_err(|e| {
                            tracing::warn!(error = %e, "cannot allocate a producer id");
                            crate::error::controller_error(&e)
                        })?;
                    fresh = Some(id);
                }
                InitProducerIdOutcome::NeedProducerId => {
                    return Err(ResponseError::UnknownServerError)
                }
                InitProducerIdOutcome::Write {
                    producer_id,
                    producer_epoch,
                    ..
                } => return Ok((producer_id, producer_epoch)),
                InitProducerIdOutcome::Fenced { .. } => {
                    return Err(ResponseError::ConcurrentTransactions)
                }
            }
        }
    }

    pub async fn add_partitions(
        &self,
        txn_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[TopicPartition],
    ) -> Result<(), ResponseError> {
        let p = self.partition_of(txn_id);
        settle(self.runtime.write(p, now_ms(), |s, ctx| {
            s.add_partitions(ctx, txn_id, producer_id, producer_epoch, partitions)
        }))
        .await?
    }

    pub async fn add_offsets(
        &self,
        txn_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        offsets_partition: i32,
    ) -> Result<(), ResponseError> {
        let p = self.partition_of(txn_id);
        settle(self.runtime.write(p, now_ms(), |s, ctx| {
            s.add_offsets(ctx, txn_id, producer_id, producer_epoch, offsets_partition)
        }))
        .await?
    }

    /// EndTxn: answered once PrepareCommit/PrepareAbort is replicated (the markers follow).
    pub async fn end_txn(
        &self,
        txn_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
    ) -> Result<(), ResponseError> {
        let p = self.partition_of(txn_id);
        settle(self.runtime.write(p, now_ms(), |s, ctx| {
            s.end_txn(ctx, txn_id, producer_id, producer_epoch, commit)
        }))
        .await?
    }

    /// Every marker of `job` is written: completes its transaction.
    pub async fn markers_written(
        &self,
        partition: i32,
        job: &MarkerJob,
    ) -> Result<(), ResponseError> {
        settle(
            self.runtime
                .write(partition, now_ms(), |s, ctx| s.markers_written(ctx, job)),
        )
        .await
    }

    /// Whether `job` is still what its transaction waits for on this node.
    pub fn is_current(&self, partition: i32, job: &MarkerJob) -> bool {
        self.runtime
            .read(partition, |s| s.is_current(job))
            .unwrap_or(false)
    }

    /// A partition leader's verification: for each partition, `None` when it is in
    /// `producer_id`'s open transaction, else its error (TRANSACTION_ABORTABLE when it is not in
    /// the transaction, PRODUCER_FENCED, CONCURRENT_TRANSACTIONS while the transaction ends, ...).
    /// Answered from the durable state; nothing is written.
    pub fn verify(
        &self,
        txn_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, Option<ResponseError>)>, ResponseError> {
        let p = self.partition_of(txn_id);
        self.runtime
            .read(p, |s| {
                s.core()
                    .verify_partitions(txn_id, producer_id, producer_epoch, partitions)
                    .into_iter()
                    .collect()
            })
            .map_err(not_serving)
    }

    pub fn describe(&self, txn_id: &str) -> Result<TxnDescription, ResponseError> {
        let p = self.partition_of(txn_id);
        self.runtime
            .read(p, |s| s.core().describe(txn_id))
            .map_err(not_serving)?
    }

    /// ListTransactions over every partition loaded here.
    pub fn list(&self, states: &[String], producer_ids: &[i64], duration_ms: i64) -> TxnListing {
        let now = now_ms();
        let mut all = TxnListing::default();
        for p in self.runtime.loaded_partitions() {
            if let Ok(l) = self
                .runtime
                .read(p, |s| s.core().list(states, producer_ids, duration_ms, now))
            {
                all.unknown_state_filters = l.unknown_state_filters;
                all.transactions.extend(l.transactions);
            }
        }
        all.transactions
            .sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        all
    }
}

impl InternalCoordinator for TxnService {
    fn topic(&self) -> &'static str {
        TRANSACTION_STATE_TOPIC
    }

    fn topic_spec(&self) -> InternalTopicSpec {
        TxnService::topic_spec(self)
    }

    fn set_num_partitions(&self, n: i32) {
        TxnService::set_num_partitions(self, n);
    }

    fn partition_of(&self, key: &str) -> i32 {
        TxnService::partition_of(self, key)
    }

    fn load(&self, partition: &Arc<Partition>) {
        TxnService::load(self, partition);
    }

    fn unload(&self, partition: i32) {
        TxnService::unload(self, partition);
    }

    /// Commits, transaction timeouts and expiry.
    fn tick(&self) {
        TxnService::tick(self);
    }
}
