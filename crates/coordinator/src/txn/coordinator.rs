//! The transaction coordinator of one `__transaction_state` partition, as an I/O-free state
//! machine.
//!
//! Every operation that changes a transaction is two-phase. It validates the request in
//! Kafka's order and, on success, records a pending transition and returns the record to
//! persist as a [`TxnWrite`]. The caller appends it (acks=all) and reports the outcome with
//! [`TxnCoordinator::write_committed`] or [`TxnCoordinator::write_failed`], naming the write by
//! its [`WriteToken`]; a report that matches no pending transition is ignored. While a
//! transition is pending, other operations on that id answer CONCURRENT_TRANSACTIONS.
//!
//! When a PrepareCommit/PrepareAbort becomes durable the coordinator hands back a
//! [`MarkerJob`]: the caller sends the markers and, once every partition acknowledged, calls
//! [`TxnCoordinator::markers_written`], which writes CompleteCommit/CompleteAbort.
//!
//! Producer ids come from the controller: when one is needed, InitProducerId answers
//! [`InitProducerIdOutcome::NeedProducerId`] and the caller asks again with one.
//!
//! Error codes are the newest request versions' (PRODUCER_FENCED, TRANSACTION_ABORTABLE);
//! [`for_version`] maps them for older versions.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;

use super::metadata::{
    is_epoch_exhausted, TopicPartition, TransitionError, TxnMetadata, TxnState, TxnTransit,
    WriteToken, NO_PRODUCER_EPOCH, NO_PRODUCER_ID,
};
use super::records::{self, RecordError};
use crate::group::OFFSETS_TOPIC;

/// A record to append to `__transaction_state`; report its fate with `token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnWrite {
    pub txn_id: String,
    pub key: Bytes,
    /// `None` = tombstone (the id expired).
    pub value: Option<Bytes>,
    pub token: WriteToken,
}

/// Transaction markers to write once a PrepareCommit/PrepareAbort is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerJob {
    pub txn_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// COMMIT (true) or ABORT markers.
    pub commit: bool,
    pub coordinator_epoch: i32,
    pub partitions: BTreeSet<TopicPartition>,
}

/// What a request that may change a transaction leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnStep {
    /// Append this record; answer NONE once it is durable (the write's error if it fails).
    Write(TxnWrite),
    /// Nothing to write: answer NONE now.
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitProducerIdOutcome {
    /// A new producer id is needed (unknown transactional id, or exhausted epoch): get one
    /// from the controller and call again with it.
    NeedProducerId,
    /// Append `write`; once durable, answer this producer id and epoch.
    Write {
        write: TxnWrite,
        producer_id: i64,
        producer_epoch: i16,
    },
    /// The open transaction was fenced and its abort started: append `write`; once durable,
    /// answer CONCURRENT_TRANSACTIONS (the write's error if it fails) so the client retries.
    Fenced { write: TxnWrite },
}

/// What DescribeTransactions answers for one id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnDescription {
    pub transactional_id: String,
    pub state: TxnState,
    pub timeout_ms: i32,
    /// -1 when no transaction started.
    pub start_ms: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// In Prepare*, only the partitions whose markers are not acknowledged yet.
    pub topics: BTreeMap<String, Vec<i32>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedTxn {
    pub transactional_id: String,
    pub producer_id: i64,
    pub state: TxnState,
}

/// What ListTransactions answers from this partition.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TxnListing {
    /// State filters that name no state.
    pub unknown_state_filters: Vec<String>,
    /// Sorted by transactional id.
    pub transactions: Vec<ListedTxn>,
}

/// The state of one `__transaction_state` partition.
#[derive(Debug, Default)]
pub struct TxnCoordinator {
    /// The partition's leader epoch when this node became its leader; stamped on markers.
    pub coordinator_epoch: i32,
    pub txns: HashMap<String, TxnMetadata>,
    /// Partitions of a durable Prepare* whose markers are not acknowledged yet.
    awaiting_markers: HashMap<String, BTreeSet<TopicPartition>>,
    /// The last token handed out.
    next_token: WriteToken,
}

/// Validates InitProducerId's producer id/epoch pair: both -1 means no expectation, exactly
/// one -1 is INVALID_REQUEST.
pub fn expected_producer(
    producer_id: i64,
    producer_epoch: i16,
) -> Result<Option<(i64, i16)>, ResponseError> {
    match (
        producer_id == NO_PRODUCER_ID,
        producer_epoch == NO_PRODUCER_EPOCH,
    ) {
        (true, true) => Ok(None),
        (false, false) => Ok(Some((producer_id, producer_epoch))),
        _ => Err(ResponseError::InvalidRequest),
    }
}

/// The code an older request version understands: PRODUCER_FENCED is INVALID_PRODUCER_EPOCH
/// before InitProducerId v4, AddPartitionsToTxn v2, AddOffsetsToTxn v2 and EndTxn v2.
pub fn for_version(code: ResponseError, api: ApiKey, version: i16) -> ResponseError {
    let fenced_understood_from = match api {
        ApiKey::InitProducerId => 4,
        ApiKey::AddPartitionsToTxn | ApiKey::AddOffsetsToTxn | ApiKey::EndTxn => 2,
        _ => return code,
    };
    if code == ResponseError::ProducerFenced && version < fenced_understood_from {
        ResponseError::InvalidProducerEpoch
    } else {
        code
    }
}

/// A refused [`TxnMetadata::prepare`] means the checks before it missed a case.
fn internal(e: TransitionError) -> ResponseError {
    tracing::error!("transaction coordinator: {e}");
    ResponseError::UnknownServerError
}

impl TxnCoordinator {
    pub fn new(coordinator_epoch: i32) -> TxnCoordinator {
        TxnCoordinator {
            coordinator_epoch,
            // Tokens of different loads of the partition never meet: each load has a higher
            // coordinator epoch, and its tokens count up from that epoch in the high bits.
            next_token: u64::from(coordinator_epoch.max(0) as u32) << 32,
            ..TxnCoordinator::default()
        }
    }

    pub fn get(&self, txn_id: &str) -> Option<&TxnMetadata> {
        self.txns.get(txn_id)
    }

    /// Loads one record of the partition, in log order: the last record of an id wins, a
    /// tombstone deletes it. Records with other key versions are skipped.
    pub fn replay(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), RecordError> {
        let Some(txn_id) = records::decode_key(key)? else {
            return Ok(());
        };
        self.awaiting_markers.remove(&txn_id);
        let Some(value) = value else {
            self.txns.remove(&txn_id);
            return Ok(());
        };
        let v = records::decode_value(value)?;
        match v.state {
            TxnState::Dead => {
                self.txns.remove(&txn_id);
            }
            TxnState::PrepareEpochFence => {
                return Err(RecordError(format!(
                    "{txn_id}: PrepareEpochFence is never written"
                )));
            }
            _ => {
                self.txns.insert(txn_id, TxnMetadata::from_log_value(&v));
            }
        }
        Ok(())
    }

    /// After the partition is loaded: the markers of every PrepareCommit/PrepareAbort are
    /// sent again (ongoing transactions wait for their client or their timeout).
    pub fn on_loaded(&mut self) -> Vec<MarkerJob> {
        let mut ids: Vec<&String> = self
            .txns
            .iter()
            .filter(|(_, m)| m.state.is_prepare())
            .map(|(id, _)| id)
            .collect();
        ids.sort();
        let jobs: Vec<MarkerJob> = ids
            .into_iter()
            .map(|id| self.marker_job(id, &self.txns[id]))
            .collect();
        for j in &jobs {
            self.awaiting_markers
                .insert(j.txn_id.clone(), j.partitions.clone());
        }
        jobs
    }

    fn marker_job(&self, txn_id: &str, m: &TxnMetadata) -> MarkerJob {
        MarkerJob {
            txn_id: txn_id.to_string(),
            producer_id: m.producer_id,
            producer_epoch: m.producer_epoch,
            commit: m.state == TxnState::PrepareCommit,
            coordinator_epoch: self.coordinator_epoch,
            partitions: m.partitions.clone(),
        }
    }

    fn token(&mut self) -> WriteToken {
        self.next_token += 1;
        self.next_token
    }

    /// Prepares `target` on `txn_id` and builds its record.
    fn prepare_write(
        &mut self,
        txn_id: &str,
        target: TxnTransit,
        fence: bool,
    ) -> Result<TxnWrite, ResponseError> {
        let token = self.token();
        let value = match target.state {
            TxnState::Dead => None,
            _ => Some(records::encode_value(&target.to_log_value())),
        };
        let m = self
            .txns
            .get_mut(txn_id)
            .ok_or(ResponseError::UnknownServerError)?;
        m.prepare(target, token, fence).map_err(internal)?;
        Ok(TxnWrite {
            txn_id: txn_id.to_string(),
            key: records::encode_key(txn_id),
            value,
            token,
        })
    }

    /// The write named by `token` is durable: its transition applies. When it made a
    /// PrepareCommit/PrepareAbort durable, the markers to send come back. A stale token (the
    /// transaction moved on, expired or was reloaded since) changes nothing.
    pub fn write_committed(&mut self, txn_id: &str, token: WriteToken) -> Option<MarkerJob> {
        let m = self.txns.get_mut(txn_id)?;
        let applied = m.complete(token)?;
        match applied.state {
            TxnState::Dead => {
                self.txns.remove(txn_id);
                self.awaiting_markers.remove(txn_id);
                None
            }
            s if s.is_prepare() => {
                let job = self.marker_job(txn_id, &self.txns[txn_id]);
                self.awaiting_markers
                    .insert(txn_id.to_string(), job.partitions.clone());
                Some(job)
            }
            _ => {
                self.awaiting_markers.remove(txn_id);
                None
            }
        }
    }

    /// The write named by `token` failed (nothing appended): the pending transition is
    /// dropped and the state stays as it was. A failed fence is remembered, so the next fence
    /// does not bump the epoch again. A failed CompleteCommit/CompleteAbort is retried by
    /// calling [`TxnCoordinator::markers_written`] again (the markers need not be re-sent).
    pub fn write_failed(&mut self, txn_id: &str, token: WriteToken) {
        if let Some(m) = self.txns.get_mut(txn_id) {
            m.abandon(token);
        }
    }

    /// InitProducerId for a transactional id (a null id is an idempotent producer: the caller
    /// allocates it an id without asking here). `expected` comes from
    /// [`expected_producer`]; `fresh_pid` is a producer id from the controller, given after a
    /// [`InitProducerIdOutcome::NeedProducerId`].
    pub fn init_producer_id(
        &mut self,
        txn_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        max_timeout_ms: i32,
        fresh_pid: Option<i64>,
        now_ms: i64,
    ) -> Result<InitProducerIdOutcome, ResponseError> {
        if txn_id.is_empty() {
            return Err(ResponseError::InvalidRequest);
        }
        if timeout_ms <= 0 || timeout_ms > max_timeout_ms {
            return Err(ResponseError::InvalidTransactionTimeout);
        }
        if !self.txns.contains_key(txn_id) {
            let Some(pid) = fresh_pid else {
                return Ok(InitProducerIdOutcome::NeedProducerId);
            };
            self.txns.insert(
                txn_id.to_string(),
                TxnMetadata::new(pid, timeout_ms, now_ms),
            );
        }
        let m = &self.txns[txn_id];
        if m.pending.is_some() {
            return Err(ResponseError::ConcurrentTransactions);
        }
        if let Some((pid, epoch)) = expected {
            let valid = m.producer_epoch == NO_PRODUCER_EPOCH
                || pid == m.producer_id
                || (pid == m.prev_producer_id && is_epoch_exhausted(epoch));
            if !valid {
                return Err(ResponseError::ProducerFenced);
            }
        }
        match m.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                Err(ResponseError::ConcurrentTransactions)
            }
            TxnState::Ongoing => {
                let write = self.fence_and_abort(txn_id, now_ms)?;
                Ok(InitProducerIdOutcome::Fenced { write })
            }
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                let mut t = m.transit(TxnState::Empty, now_ms);
                t.timeout_ms = timeout_ms;
                t.partitions.clear();
                t.start_ms = -1;
                let expected_epoch = expected.map(|(_, e)| e);
                if m.is_epoch_exhausted() && expected_epoch.is_none_or(|e| e == m.producer_epoch) {
                    let Some(pid) = fresh_pid else {
                        return Ok(InitProducerIdOutcome::NeedProducerId);
                    };
                    t.producer_id = pid;
                    t.producer_epoch = 0;
                    t.last_producer_epoch = if expected.is_some() {
                        m.producer_epoch
                    } else {
                        NO_PRODUCER_EPOCH
                    };
                } else {
                    match expected_epoch {
                        None => {
                            t.producer_epoch = m.producer_epoch + 1;
                            t.last_producer_epoch = NO_PRODUCER_EPOCH;
                        }
                        Some(e)
                            if e == m.producer_epoch || m.producer_epoch == NO_PRODUCER_EPOCH =>
                        {
                            t.producer_epoch = m.producer_epoch + 1;
                            t.last_producer_epoch = m.producer_epoch;
                        }
                        // A retry of a bump whose answer was lost: the same epoch again.
                        Some(e) if e == m.last_producer_epoch => {}
                        Some(_) => return Err(ResponseError::ProducerFenced),
                    }
                }
                let (producer_id, producer_epoch) = (t.producer_id, t.producer_epoch);
                let write = self.prepare_write(txn_id, t, false)?;
                Ok(InitProducerIdOutcome::Write {
                    write,
                    producer_id,
                    producer_epoch,
                })
            }
            TxnState::Dead | TxnState::PrepareEpochFence => Err(ResponseError::UnknownServerError),
        }
    }

    /// Fences the producer of an Ongoing transaction (epoch+1, unless a previous fence's
    /// write failed) and prepares the abort with that epoch.
    fn fence_and_abort(&mut self, txn_id: &str, now_ms: i64) -> Result<TxnWrite, ResponseError> {
        let m = &self.txns[txn_id];
        if !TxnState::can_transition(m.state, TxnState::PrepareEpochFence) {
            return Err(internal(TransitionError::Invalid {
                from: m.state,
                to: TxnState::PrepareEpochFence,
            }));
        }
        // Clients never hold i16::MAX, so a transaction's epoch can always be bumped once;
        // only a fence whose write failed leaves it there.
        let bumped = if m.fence_write_failed || m.producer_epoch == i16::MAX {
            m.producer_epoch
        } else {
            m.producer_epoch + 1
        };
        let pid = m.producer_id;
        self.end_txn_inner(txn_id, pid, bumped, false, true, now_ms)
            .and_then(|step| match step {
                TxnStep::Write(w) => Ok(w),
                TxnStep::Done => Err(ResponseError::UnknownServerError),
            })
    }

    /// AddPartitionsToTxn (not verify-only) and AddOffsetsToTxn.
    pub fn add_partitions(
        &mut self,
        txn_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[TopicPartition],
        now_ms: i64,
    ) -> Result<TxnStep, ResponseError> {
        if txn_id.is_empty() {
            return Err(ResponseError::InvalidRequest);
        }
        let m = self
            .txns
            .get(txn_id)
            .ok_or(ResponseError::InvalidProducerIdMapping)?;
        if m.producer_id != producer_id {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        if m.producer_epoch != producer_epoch {
            return Err(ResponseError::ProducerFenced);
        }
        if m.pending.is_some() || m.state.is_prepare() {
            return Err(ResponseError::ConcurrentTransactions);
        }
        if m.state == TxnState::Ongoing && partitions.iter().all(|p| m.partitions.contains(p)) {
            return Ok(TxnStep::Done);
        }
        let mut t = m.transit(TxnState::Ongoing, now_ms);
        if m.state != TxnState::Ongoing {
            t.start_ms = now_ms;
        }
        t.partitions.extend(partitions.iter().cloned());
        Ok(TxnStep::Write(self.prepare_write(txn_id, t, false)?))
    }

    /// AddOffsetsToTxn: adds the `__consumer_offsets` partition that holds the group (the
    /// caller computes it with [`crate::partitioning::partition_for`]).
    pub fn add_offsets(
        &mut self,
        txn_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        offsets_partition: i32,
        now_ms: i64,
    ) -> Result<TxnStep, ResponseError> {
        let p = (OFFSETS_TOPIC.to_string(), offsets_partition);
        self.add_partitions(txn_id, producer_id, producer_epoch, &[p], now_ms)
    }

    /// Verify-only AddPartitionsToTxn (KIP-890, from a partition leader): each partition is
    /// NONE (`None`) if in the transaction, TRANSACTION_ABORTABLE if not; a failed check of
    /// the transaction gives every partition its code. Nothing is written.
    pub fn verify_partitions(
        &self,
        txn_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[TopicPartition],
    ) -> BTreeMap<TopicPartition, Option<ResponseError>> {
        let check = || -> Result<&TxnMetadata, ResponseError> {
            if txn_id.is_empty() {
                return Err(ResponseError::InvalidRequest);
            }
            let m = self
                .txns
                .get(txn_id)
                .ok_or(ResponseError::InvalidProducerIdMapping)?;
            if m.producer_id != producer_id {
                return Err(ResponseError::InvalidProducerIdMapping);
            }
            if m.producer_epoch != producer_epoch {
                return Err(ResponseError::ProducerFenced);
            }
            // The pending transition is not looked at: only the durable state answers.
            if m.state.is_prepare() {
                return Err(ResponseError::ConcurrentTransactions);
            }
            Ok(m)
        };
        let result = check();
        partitions
            .iter()
            .map(|p| {
                let code = match &result {
                    Err(e) => Some(*e),
                    Ok(m) if m.state == TxnState::Ongoing && m.partitions.contains(p) => None,
                    Ok(_) => Some(ResponseError::TransactionAbortable),
                };
                (p.clone(), code)
            })
            .collect()
    }

    /// EndTxn from a client: `commit` true for COMMIT. Once the Prepare* write is durable the
    /// client is answered NONE and [`TxnCoordinator::write_committed`] gives the markers.
    pub fn end_txn(
        &mut self,
        txn_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        now_ms: i64,
    ) -> Result<TxnStep, ResponseError> {
        self.end_txn_inner(txn_id, producer_id, producer_epoch, commit, false, now_ms)
    }

    /// EndTxn, from a client or (`fence`) the coordinator's own abort of a fenced
    /// transaction, which carries the bumped epoch.
    fn end_txn_inner(
        &mut self,
        txn_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        fence: bool,
        now_ms: i64,
    ) -> Result<TxnStep, ResponseError> {
        use TxnState::*;
        if txn_id.is_empty() {
            return Err(ResponseError::InvalidRequest);
        }
        let m = self
            .txns
            .get(txn_id)
            .ok_or(ResponseError::InvalidProducerIdMapping)?;
        if m.producer_id != producer_id {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        let epoch_ok = if fence {
            producer_epoch >= m.producer_epoch
        } else {
            producer_epoch == m.producer_epoch
        };
        if !epoch_ok {
            return Err(ResponseError::ProducerFenced);
        }
        if m.pending.is_some() {
            return Err(ResponseError::ConcurrentTransactions);
        }
        match (m.state, commit) {
            (Ongoing, _) => {
                let target = if commit { PrepareCommit } else { PrepareAbort };
                if fence {
                    // The fence's epoch takes effect now, ahead of the log: the fenced
                    // producer is refused from here on, and a failed write does not undo it.
                    let m = self.txns.get_mut(txn_id).expect("checked above");
                    m.producer_epoch = producer_epoch;
                    m.last_producer_epoch = NO_PRODUCER_EPOCH;
                }
                let t = self.txns[txn_id].transit(target, now_ms);
                Ok(TxnStep::Write(self.prepare_write(txn_id, t, fence)?))
            }
            (CompleteCommit, true) | (CompleteAbort, false) => Ok(TxnStep::Done),
            (PrepareCommit, true) | (PrepareAbort, false) => {
                Err(ResponseError::ConcurrentTransactions)
            }
            _ => Err(ResponseError::InvalidTxnState),
        }
    }

    /// Every marker of the transaction's Prepare* was written: prepares CompleteCommit /
    /// CompleteAbort. A report for a transaction that moved on (other producer id or epoch,
    /// another coordinator epoch, not in Prepare*, or already completing) is ignored.
    pub fn markers_written(
        &mut self,
        txn_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        now_ms: i64,
    ) -> Option<TxnWrite> {
        if !self.is_current_job(txn_id, producer_id, producer_epoch, coordinator_epoch) {
            return None;
        }
        self.awaiting_markers
            .insert(txn_id.to_string(), BTreeSet::new());
        self.prepare_complete(txn_id, now_ms)
    }

    /// Some partitions acknowledged their markers: they leave what DescribeTransactions shows;
    /// when none remain, prepares CompleteCommit / CompleteAbort as
    /// [`TxnCoordinator::markers_written`] does.
    pub fn markers_acked(
        &mut self,
        txn_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        partitions: &[TopicPartition],
        now_ms: i64,
    ) -> Option<TxnWrite> {
        if !self.is_current_job(txn_id, producer_id, producer_epoch, coordinator_epoch) {
            return None;
        }
        let awaiting = self
            .awaiting_markers
            .entry(txn_id.to_string())
            .or_insert_with(|| self.txns[txn_id].partitions.clone());
        for p in partitions {
            awaiting.remove(p);
        }
        if !awaiting.is_empty() {
            return None;
        }
        self.prepare_complete(txn_id, now_ms)
    }

    fn is_current_job(
        &self,
        txn_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
    ) -> bool {
        coordinator_epoch == self.coordinator_epoch
            && self.txns.get(txn_id).is_some_and(|m| {
                m.state.is_prepare()
                    && m.pending.is_none()
                    && m.producer_id == producer_id
                    && m.producer_epoch == producer_epoch
            })
    }

    fn prepare_complete(&mut self, txn_id: &str, now_ms: i64) -> Option<TxnWrite> {
        let m = &self.txns[txn_id];
        let target = match m.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            _ => TxnState::CompleteAbort,
        };
        let mut t = m.transit(target, now_ms);
        t.partitions.clear();
        self.prepare_write(txn_id, t, false).ok()
    }

    /// Ongoing transactions past their timeout (`start + timeout < now`, none pending): each
    /// is fenced and its abort prepared, as InitProducerId does.
    pub fn timed_out(&mut self, now_ms: i64) -> Vec<TxnWrite> {
        let mut ids: Vec<String> = self
            .txns
            .iter()
            .filter(|(_, m)| {
                m.state == TxnState::Ongoing
                    && m.pending.is_none()
                    && m.start_ms.saturating_add(i64::from(m.timeout_ms)) < now_ms
            })
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids.iter()
            .filter_map(|id| self.fence_and_abort(id, now_ms).ok())
            .collect()
    }

    /// Ids idle (Empty, CompleteCommit, CompleteAbort; none pending) since `expiration_ms`
    /// (`transactional.id.expiration.ms`): each gets a pending Dead and a tombstone to write;
    /// it leaves memory once the tombstone is durable.
    pub fn expired_ids(&mut self, now_ms: i64, expiration_ms: i64) -> Vec<TxnWrite> {
        let limit = now_ms.saturating_sub(expiration_ms);
        let mut ids: Vec<String> = self
            .txns
            .iter()
            .filter(|(_, m)| m.state.is_idle() && m.pending.is_none() && m.last_update_ms <= limit)
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids.iter()
            .filter_map(|id| {
                let m = &self.txns[id];
                // Dead keeps the last update time: expiry is not an update.
                let mut t = m.transit(TxnState::Dead, m.last_update_ms);
                t.partitions.clear();
                self.prepare_write(id, t, false).ok()
            })
            .collect()
    }

    /// DescribeTransactions for one id.
    pub fn describe(&self, txn_id: &str) -> Result<TxnDescription, ResponseError> {
        if txn_id.is_empty() {
            return Err(ResponseError::InvalidRequest);
        }
        let m = self
            .txns
            .get(txn_id)
            .filter(|m| m.state != TxnState::Dead)
            .ok_or(ResponseError::TransactionalIdNotFound)?;
        let partitions = match self.awaiting_markers.get(txn_id) {
            Some(left) if m.state.is_prepare() => left,
            _ => &m.partitions,
        };
        let mut topics: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for (t, p) in partitions {
            topics.entry(t.clone()).or_default().push(*p);
        }
        Ok(TxnDescription {
            transactional_id: txn_id.to_string(),
            state: m.state,
            timeout_ms: m.timeout_ms,
            start_ms: m.start_ms,
            producer_id: m.producer_id,
            producer_epoch: m.producer_epoch,
            topics,
        })
    }

    /// ListTransactions over this partition. Filters are ANDed; an empty filter lets all
    /// through; `duration_filter_ms` < 0 is none, else it keeps transactions running longer
    /// than that (`now - start > duration`, so a start of -1 passes).
    pub fn list(
        &self,
        state_filter: &[String],
        producer_id_filter: &[i64],
        duration_filter_ms: i64,
        now_ms: i64,
    ) -> TxnListing {
        let mut listing = TxnListing::default();
        let mut states = BTreeSet::new();
        for name in state_filter {
            match TxnState::from_name(name) {
                Some(s) => {
                    states.insert(s);
                }
                None => listing.unknown_state_filters.push(name.clone()),
            }
        }
        let mut ids: Vec<&String> = self
            .txns
            .iter()
            .filter(|(_, m)| {
                m.state != TxnState::Dead
                    && (producer_id_filter.is_empty()
                        || producer_id_filter.contains(&m.producer_id))
                    && (state_filter.is_empty() || states.contains(&m.state))
                    && (duration_filter_ms < 0
                        || now_ms.saturating_sub(m.start_ms) > duration_filter_ms)
            })
            .map(|(id, _)| id)
            .collect();
        ids.sort();
        listing.transactions = ids
            .into_iter()
            .map(|id| {
                let m = &self.txns[id];
                ListedTxn {
                    transactional_id: id.clone(),
                    producer_id: m.producer_id,
                    state: m.state,
                }
            })
            .collect();
        listing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::records::{decode_value, encode_key, encode_value, TxnLogValue};
    use ResponseError::*;
    use TxnState::*;

    const MAX_TIMEOUT: i32 = 900_000;
    const TIMEOUT: i32 = 60_000;
    const CEPOCH: i32 = 5;

    fn tp(t: &str, p: i32) -> TopicPartition {
        (t.to_string(), p)
    }

    /// A coordinator plus the controller's producer id counter.
    struct H {
        c: TxnCoordinator,
        next_pid: i64,
    }

    impl H {
        fn new() -> H {
            H {
                c: TxnCoordinator::new(CEPOCH),
                next_pid: 1000,
            }
        }

        fn m(&self, id: &str) -> &TxnMetadata {
            &self.c.txns[id]
        }

        fn commit(&mut self, w: &TxnWrite) -> Option<MarkerJob> {
            self.c.write_committed(&w.txn_id, w.token)
        }

        /// InitProducerId as the caller runs it: a producer id from the "controller" when
        /// asked for one.
        fn init_raw(
            &mut self,
            id: &str,
            expected: Option<(i64, i16)>,
            now: i64,
        ) -> Result<InitProducerIdOutcome, ResponseError> {
            match self
                .c
                .init_producer_id(id, TIMEOUT, expected, MAX_TIMEOUT, None, now)?
            {
                InitProducerIdOutcome::NeedProducerId => {
                    self.next_pid += 1;
                    let pid = self.next_pid;
                    self.c
                        .init_producer_id(id, TIMEOUT, expected, MAX_TIMEOUT, Some(pid), now)
                }
                o => Ok(o),
            }
        }

        /// A successful InitProducerId whose write is committed: (pid, epoch).
        fn init(&mut self, id: &str, expected: Option<(i64, i16)>, now: i64) -> (i64, i16) {
            match self.init_raw(id, expected, now).unwrap() {
                InitProducerIdOutcome::Write {
                    write,
                    producer_id,
                    producer_epoch,
                } => {
                    assert_eq!(self.commit(&write), None);
                    (producer_id, producer_epoch)
                }
                o => panic!("unexpected {o:?}"),
            }
        }

        fn add(&mut self, id: &str, pid: i64, epoch: i16, parts: &[TopicPartition], now: i64) {
            match self.c.add_partitions(id, pid, epoch, parts, now).unwrap() {
                TxnStep::Write(w) => assert_eq!(self.commit(&w), None),
                TxnStep::Done => {}
            }
        }

        /// An Ongoing transaction on t-0 and t-1 started at `now`.
        fn ongoing(&mut self, id: &str, now: i64) -> (i64, i16) {
            let (pid, epoch) = self.init(id, None, now);
            self.add(id, pid, epoch, &[tp("t", 0), tp("t", 1)], now);
            (pid, epoch)
        }

        /// Replays a record putting `id` in `state`.
        fn load(&mut self, id: &str, state: TxnState, pid: i64, epoch: i16, last_update: i64) {
            let partitions = if matches!(state, Empty | CompleteCommit | CompleteAbort) {
                BTreeMap::new()
            } else {
                BTreeMap::from([("t".to_string(), BTreeSet::from([0, 1]))])
            };
            let v = TxnLogValue {
                producer_id: pid,
                producer_epoch: epoch,
                timeout_ms: TIMEOUT,
                state,
                partitions,
                last_update_ms: last_update,
                start_ms: if state == Empty { -1 } else { 100 },
            };
            self.c
                .replay(&encode_key(id), Some(&encode_value(&v)))
                .unwrap();
        }
    }

    fn value_of(w: &TxnWrite) -> TxnLogValue {
        decode_value(w.value.as_ref().expect("not a tombstone")).unwrap()
    }

    fn write_of(step: Result<TxnStep, ResponseError>) -> TxnWrite {
        match step {
            Ok(TxnStep::Write(w)) => w,
            o => panic!("expected a write, got {o:?}"),
        }
    }

    // ---- InitProducerId (KT §2.2) ----

    #[test]
    fn init_of_an_unknown_id_needs_a_producer_id_then_writes_epoch_0() {
        let mut h = H::new();
        assert_eq!(
            h.c.init_producer_id("tx", TIMEOUT, None, MAX_TIMEOUT, None, 10),
            Ok(InitProducerIdOutcome::NeedProducerId)
        );
        assert!(h.c.get("tx").is_none());
        let out =
            h.c.init_producer_id("tx", TIMEOUT, None, MAX_TIMEOUT, Some(4242), 10)
                .unwrap();
        let InitProducerIdOutcome::Write {
            write,
            producer_id,
            producer_epoch,
        } = out
        else {
            panic!("{out:?}")
        };
        assert_eq!((producer_id, producer_epoch), (4242, 0));
        assert_eq!(write.key, encode_key("tx"));
        assert_eq!(
            value_of(&write),
            TxnLogValue {
                producer_id: 4242,
                producer_epoch: 0,
                timeout_ms: TIMEOUT,
                state: Empty,
                partitions: BTreeMap::new(),
                last_update_ms: 10,
                start_ms: -1,
            }
        );
        // Not applied until durable: the new id exists with no epoch yet, pending Empty.
        assert_eq!(h.m("tx").producer_epoch, -1);
        assert_eq!(h.m("tx").pending_state(), Some(Empty));
        assert_eq!(
            h.c.init_producer_id("tx", TIMEOUT, None, MAX_TIMEOUT, None, 11),
            Err(ConcurrentTransactions)
        );
        assert_eq!(h.commit(&write), None);
        let m = h.m("tx");
        assert_eq!(
            (
                m.producer_id,
                m.producer_epoch,
                m.last_producer_epoch,
                m.state
            ),
            (4242, 0, -1, Empty)
        );
        assert_eq!(
            (m.start_ms, m.last_update_ms, m.timeout_ms),
            (-1, 10, TIMEOUT)
        );
        assert_eq!(m.pending, None);
    }

    #[test]
    fn init_request_checks() {
        let mut h = H::new();
        assert_eq!(expected_producer(-1, -1), Ok(None));
        assert_eq!(expected_producer(7, 3), Ok(Some((7, 3))));
        assert_eq!(expected_producer(7, -1), Err(InvalidRequest));
        assert_eq!(expected_producer(-1, 3), Err(InvalidRequest));
        let init = |h: &mut H, id: &str, timeout: i32| {
            h.c.init_producer_id(id, timeout, None, MAX_TIMEOUT, Some(1), 0)
        };
        assert_eq!(init(&mut h, "", TIMEOUT), Err(InvalidRequest));
        for bad in [0, -1, MAX_TIMEOUT + 1, i32::MIN] {
            assert_eq!(
                init(&mut h, "tx", bad),
                Err(InvalidTransactionTimeout),
                "{bad}"
            );
        }
        assert!(h.c.get("tx").is_none());
        assert!(matches!(
            init(&mut h, "tx", MAX_TIMEOUT),
            Ok(InitProducerIdOutcome::Write { .. })
        ));
        let mut h = H::new();
        assert!(matches!(
            init(&mut h, "tx", 1),
            Ok(InitProducerIdOutcome::Write { .. })
        ));
    }

    #[test]
    fn init_without_expectation_bumps_the_epoch() {
        let mut h = H::new();
        let (pid, e0) = h.init("tx", None, 0);
        assert_eq!(e0, 0);
        assert_eq!(h.init("tx", None, 1), (pid, 1));
        assert_eq!(h.m("tx").last_producer_epoch, -1);
        // From CompleteCommit and CompleteAbort too.
        for (state, epoch) in [(CompleteCommit, 7), (CompleteAbort, 8)] {
            h.load("tx", state, pid, epoch, 0);
            assert_eq!(h.init("tx", None, 1), (pid, epoch + 1));
            assert_eq!(h.m("tx").state, Empty);
            assert!(h.m("tx").partitions.is_empty());
        }
    }

    /// KIP-360: a producer that knows its id and epoch bumps it; the retry of that bump gets
    /// the same answer; anything else is fenced.
    #[test]
    fn init_with_expectation_bumps_and_retries_get_the_same_epoch() {
        let mut h = H::new();
        let (pid, _) = h.init("tx", None, 0);
        assert_eq!(h.init("tx", Some((pid, 0)), 1), (pid, 1));
        assert_eq!(h.m("tx").last_producer_epoch, 0);
        // Response lost: the retry carries epoch 0 again.
        assert_eq!(h.init("tx", Some((pid, 0)), 2), (pid, 1));
        assert_eq!(h.m("tx").producer_epoch, 1);
        // A stale expectation, and another producer id.
        assert_eq!(h.init_raw("tx", Some((pid, 5)), 3), Err(ProducerFenced));
        assert_eq!(h.init_raw("tx", Some((pid + 1, 1)), 3), Err(ProducerFenced));
        assert_eq!(h.m("tx").producer_epoch, 1);
        // The current epoch bumps again.
        assert_eq!(h.init("tx", Some((pid, 1)), 4), (pid, 2));
    }

    /// A freshly created id (epoch -1) accepts any expectation: a producer recovering from
    /// UNKNOWN_PRODUCER_ID gets the new id.
    #[test]
    fn init_of_a_new_id_accepts_any_expectation() {
        let mut h = H::new();
        let (pid, epoch) = h.init("tx", Some((77, 9)), 0);
        assert_eq!((pid, epoch), (1001, 0));
        assert_eq!(h.m("tx").last_producer_epoch, -1);
    }

    #[test]
    fn a_retry_across_a_failover_is_fenced() {
        let mut h = H::new();
        let (pid, _) = h.init("tx", None, 0);
        let w = match h.init_raw("tx", Some((pid, 0)), 1).unwrap() {
            InitProducerIdOutcome::Write { write, .. } => write,
            o => panic!("{o:?}"),
        };
        h.commit(&w);
        let mut other = H::new();
        other.c.replay(&w.key, w.value.as_deref()).unwrap();
        assert_eq!(other.m("tx").producer_epoch, 1);
        assert_eq!(other.m("tx").last_producer_epoch, -1);
        assert_eq!(other.init_raw("tx", Some((pid, 0)), 2), Err(ProducerFenced));
    }

    #[test]
    fn an_exhausted_epoch_rotates_the_producer_id() {
        // Without expectation: new id, epoch 0, previous id kept, no last epoch.
        let mut h = H::new();
        h.load("tx", CompleteCommit, 500, 32766, 0);
        assert!(h.m("tx").is_epoch_exhausted());
        assert_eq!(
            h.c.init_producer_id("tx", TIMEOUT, None, MAX_TIMEOUT, None, 1),
            Ok(InitProducerIdOutcome::NeedProducerId)
        );
        assert_eq!(h.m("tx").pending, None);
        assert_eq!(h.init("tx", None, 1), (1001, 0));
        let m = h.m("tx");
        assert_eq!(
            (
                m.producer_id,
                m.prev_producer_id,
                m.producer_epoch,
                m.last_producer_epoch
            ),
            (1001, 500, 0, -1)
        );

        // With the exhausted epoch expected: the last epoch is recorded, and a retry naming
        // the old id is recognised and gets the same answer.
        let mut h = H::new();
        h.load("tx", Empty, 500, 32766, 0);
        assert_eq!(h.init("tx", Some((500, 32766)), 1), (1001, 0));
        let m = h.m("tx");
        assert_eq!(
            (m.producer_id, m.prev_producer_id, m.last_producer_epoch),
            (1001, 500, 32766)
        );
        assert_eq!(h.init("tx", Some((500, 32766)), 2), (1001, 0));
        // The old id with an epoch that is not exhausted is fenced.
        assert_eq!(h.init_raw("tx", Some((500, 3)), 3), Err(ProducerFenced));

        // Exhausted, but the expectation is another epoch: fenced, no new id.
        let mut h = H::new();
        h.load("tx", Empty, 500, 32766, 0);
        assert_eq!(h.init_raw("tx", Some((500, 32765)), 1), Err(ProducerFenced));
        assert_eq!(h.m("tx").producer_id, 500);
    }

    /// An Ongoing transaction is fenced: epoch+1 at once, PrepareAbort written with it, the
    /// caller answered CONCURRENT_TRANSACTIONS; the retry after CompleteAbort bumps again.
    #[test]
    fn init_fences_an_ongoing_transaction() {
        let mut h = H::new();
        let (pid, epoch) = h.ongoing("tx", 100);
        let out = h.init_raw("tx", None, 200).unwrap();
        let InitProducerIdOutcome::Fenced { write } = out else {
            panic!("{out:?}")
        };
        let v = value_of(&write);
        assert_eq!(
            (v.state, v.producer_id, v.producer_epoch),
            (PrepareAbort, pid, epoch + 1)
        );
        assert_eq!(v.partitions["t"], BTreeSet::from([0, 1]));
        assert_eq!((v.start_ms, v.last_update_ms), (100, 200));
        // The bump is in memory before the write: the old producer is refused now.
        assert_eq!(h.m("tx").producer_epoch, epoch + 1);
        assert_eq!(h.m("tx").last_producer_epoch, -1);
        assert_eq!(h.m("tx").state, Ongoing);
        assert_eq!(
            h.c.add_partitions("tx", pid, epoch, &[tp("t", 2)], 201),
            Err(ProducerFenced)
        );
        assert_eq!(h.init_raw("tx", None, 201), Err(ConcurrentTransactions));

        let job = h.commit(&write).unwrap();
        assert_eq!(
            job,
            MarkerJob {
                txn_id: "tx".into(),
                producer_id: pid,
                producer_epoch: epoch + 1,
                commit: false,
                coordinator_epoch: CEPOCH,
                partitions: BTreeSet::from([tp("t", 0), tp("t", 1)]),
            }
        );
        // Prepare*: the client retries.
        assert_eq!(h.init_raw("tx", None, 202), Err(ConcurrentTransactions));
        let done =
            h.c.markers_written("tx", pid, epoch + 1, CEPOCH, 300)
                .unwrap();
        assert_eq!(value_of(&done).state, CompleteAbort);
        h.commit(&done);
        assert_eq!(h.init("tx", None, 400), (pid, epoch + 2));
    }

    #[test]
    fn init_during_prepare_or_pending_is_concurrent() {
        for state in [PrepareCommit, PrepareAbort] {
            let mut h = H::new();
            h.load("tx", state, 500, 3, 0);
            assert_eq!(h.init_raw("tx", None, 1), Err(ConcurrentTransactions));
            assert_eq!(
                h.init_raw("tx", Some((500, 3)), 1),
                Err(ConcurrentTransactions)
            );
            assert_eq!(h.m("tx").producer_epoch, 3);
        }
        let mut h = H::new();
        let (pid, epoch) = h.init("tx", None, 0);
        let _w = write_of(h.c.add_partitions("tx", pid, epoch, &[tp("t", 0)], 1));
        assert_eq!(h.init_raw("tx", None, 2), Err(ConcurrentTransactions));
    }

    #[test]
    fn a_failed_fence_is_not_bumped_again() {
        let mut h = H::new();
        let (pid, epoch) = h.ongoing("tx", 100);
        let InitProducerIdOutcome::Fenced { write } = h.init_raw("tx", None, 200).unwrap() else {
            panic!()
        };
        h.c.write_failed("tx", write.token);
        let m = h.m("tx");
        assert_eq!(
            (m.state, m.producer_epoch, m.pending.is_none()),
            (Ongoing, epoch + 1, true)
        );
        assert!(m.fence_write_failed);
        // The next fence (here the timeout) writes the same bumped epoch.
        let writes = h.c.timed_out(100 + i64::from(TIMEOUT) + 1);
        assert_eq!(writes.len(), 1);
        assert_eq!(value_of(&writes[0]).producer_epoch, epoch + 1);
        let job = h.commit(&writes[0]).unwrap();
        assert_eq!((job.producer_id, job.producer_epoch), (pid, epoch + 1));
        assert!(!h.m("tx").fence_write_failed);
    }

    // ---- AddPartitionsToTxn / AddOffsetsToTxn (KT §2.3, §2.4) ----

    #[test]
    fn add_partitions_checks_in_order() {
        let mut h = H::new();
        let parts = [tp("t", 0)];
        assert_eq!(h.c.add_partitions("", 1, 0, &parts, 0), Err(InvalidRequest));
        assert_eq!(
            h.c.add_partitions("tx", 1, 0, &parts, 0),
            Err(InvalidProducerIdMapping)
        );
        let (pid, epoch) = h.init("tx", None, 0);
        // A wrong producer id wins over a wrong epoch.
        assert_eq!(
            h.c.add_partitions("tx", pid + 1, epoch + 1, &parts, 0),
            Err(InvalidProducerIdMapping)
        );
        assert_eq!(
            h.c.add_partitions("tx", pid, epoch + 1, &parts, 0),
            Err(ProducerFenced)
        );
        assert_eq!(
            h.c.add_partitions("tx", pid, epoch - 1, &parts, 0),
            Err(ProducerFenced)
        );
        let w = write_of(h.c.add_partitions("tx", pid, epoch, &parts, 0));
        // Pending.
        assert_eq!(
            h.c.add_partitions("tx", pid, epoch, &parts, 0),
            Err(ConcurrentTransactions)
        );
        h.commit(&w);
        for state in [PrepareCommit, PrepareAbort] {
            h.load("tx", state, pid, epoch, 0);
            assert_eq!(
                h.c.add_partitions("tx", pid, epoch, &parts, 0),
                Err(ConcurrentTransactions)
            );
        }
    }

    #[test]
    fn adding_starts_a_transaction_and_grows_it() {
        let mut h = H::new();
        let (pid, epoch) = h.init("tx", None, 0);
        let w = write_of(h.c.add_partitions("tx", pid, epoch, &[tp("a", 0)], 50));
        let v = value_of(&w);
        assert_eq!((v.state, v.start_ms, v.last_update_ms), (Ongoing, 50, 50));
        assert_eq!(
            v.partitions,
            BTreeMap::from([("a".into(), BTreeSet::from([0]))])
        );
        h.commit(&w);
        assert_eq!(h.m("tx").start_ms, 50);

        // All present: no write.
        assert_eq!(
            h.c.add_partitions("tx", pid, epoch, &[tp("a", 0)], 60),
            Ok(TxnStep::Done)
        );
        assert_eq!(
            h.c.add_partitions("tx", pid, epoch, &[], 60),
            Ok(TxnStep::Done)
        );
        assert_eq!(h.m("tx").pending, None);
        assert_eq!(h.m("tx").last_update_ms, 50);

        // Growing keeps the start time.
        let w = write_of(h.c.add_partitions("tx", pid, epoch, &[tp("a", 0), tp("b", 3)], 70));
        let v = value_of(&w);
        assert_eq!((v.start_ms, v.last_update_ms), (50, 70));
        h.commit(&w);
        assert_eq!(
            h.m("tx").partitions,
            BTreeSet::from([tp("a", 0), tp("b", 3)])
        );

        // After a completed transaction, adding starts the next one afresh.
        for (complete, commit) in [(CompleteCommit, true), (CompleteAbort, false)] {
            let w = write_of(h.c.end_txn("tx", pid, epoch, commit, 80));
            h.commit(&w).unwrap();
            let c = h.c.markers_written("tx", pid, epoch, CEPOCH, 90).unwrap();
            h.commit(&c);
            assert_eq!(h.m("tx").state, complete);
            let w = write_of(h.c.add_partitions("tx", pid, epoch, &[tp("c", 1)], 100));
            let v = value_of(&w);
            assert_eq!((v.state, v.start_ms), (Ongoing, 100));
            assert_eq!(
                v.partitions,
                BTreeMap::from([("c".into(), BTreeSet::from([1]))])
            );
            h.commit(&w);
        }
    }

    #[test]
    fn add_offsets_adds_the_groups_offsets_partition() {
        let mut h = H::new();
        let (pid, epoch) = h.init("tx", None, 0);
        let w = write_of(h.c.add_offsets("tx", pid, epoch, 12, 5));
        h.commit(&w);
        assert_eq!(
            h.m("tx").partitions,
            BTreeSet::from([tp("__consumer_offsets", 12)])
        );
        assert_eq!(h.c.add_offsets("tx", pid, epoch, 12, 6), Ok(TxnStep::Done));
        assert_eq!(
            h.c.add_offsets("tx", pid + 1, epoch, 12, 6),
            Err(InvalidProducerIdMapping)
        );
    }

    #[test]
    fn verify_only_answers_per_partition_without_writing() {
        let mut h = H::new();
        let (pid, epoch) = h.ongoing("tx", 0);
        let parts = [tp("t", 0), tp("t", 9)];
        let codes = |h: &H, pid: i64, epoch: i16| -> Vec<Option<ResponseError>> {
            h.c.verify_partitions("tx", pid, epoch, &parts)
                .into_values()
                .collect()
        };
        assert_eq!(
            codes(&h, pid, epoch),
            vec![None, Some(TransactionAbortable)]
        );
        assert_eq!(codes(&h, pid, epoch + 1), vec![Some(ProducerFenced); 2]);
        assert_eq!(
            codes(&h, pid + 1, epoch),
            vec![Some(InvalidProducerIdMapping); 2]
        );
        assert_eq!(
            h.c.verify_partitions("nope", pid, epoch, &parts)
                .into_values()
                .collect::<Vec<_>>(),
            vec![Some(InvalidProducerIdMapping); 2]
        );
        // A pending transition is not looked at: the durable set answers.
        let _w = write_of(h.c.add_partitions("tx", pid, epoch, &[tp("t", 9)], 1));
        assert_eq!(
            codes(&h, pid, epoch),
            vec![None, Some(TransactionAbortable)]
        );
        assert_eq!(h.m("tx").partitions.len(), 2);
        // Prepare*: concurrent.
        h.load("tx", PrepareCommit, pid, epoch, 0);
        assert_eq!(codes(&h, pid, epoch), vec![Some(ConcurrentTransactions); 2]);
    }

    // ---- EndTxn (KT §2.5) ----

    /// The state × result table.
    #[test]
    fn end_txn_table() {
        enum Want {
            Write(TxnState),
            Done,
            Err(ResponseError),
        }
        use Want::*;
        let table = [
            (Ongoing, true, Write(PrepareCommit)),
            (Ongoing, false, Write(PrepareAbort)),
            (CompleteCommit, true, Done),
            (CompleteCommit, false, Err(InvalidTxnState)),
            (CompleteAbort, true, Err(InvalidTxnState)),
            (CompleteAbort, false, Done),
            (PrepareCommit, true, Err(ConcurrentTransactions)),
            (PrepareCommit, false, Err(InvalidTxnState)),
            (PrepareAbort, true, Err(InvalidTxnState)),
            (PrepareAbort, false, Err(ConcurrentTransactions)),
            (Empty, true, Err(InvalidTxnState)),
            (Empty, false, Err(InvalidTxnState)),
        ];
        for (state, commit, want) in table {
            let mut h = H::new();
            h.load("tx", state, 500, 3, 0);
            let got = h.c.end_txn("tx", 500, 3, commit, 10);
            match want {
                Write(target) => {
                    let w = write_of(got);
                    let v = value_of(&w);
                    assert_eq!(
                        (v.state, v.producer_epoch, v.last_update_ms),
                        (target, 3, 10)
                    );
                    assert_eq!(v.partitions["t"], BTreeSet::from([0, 1]));
                    assert_eq!(h.m("tx").state, state, "applied before durable");
                }
                Done => assert_eq!(got, Ok(TxnStep::Done), "{state:?} commit={commit}"),
                Err(e) => assert_eq!(got, Result::Err(e), "{state:?} commit={commit}"),
            }
        }
    }

    #[test]
    fn end_txn_checks_in_order() {
        let mut h = H::new();
        assert_eq!(h.c.end_txn("", 1, 0, true, 0), Err(InvalidRequest));
        assert_eq!(
            h.c.end_txn("tx", 1, 0, true, 0),
            Err(InvalidProducerIdMapping)
        );
        let (pid, epoch) = h.ongoing("tx", 0);
        assert_eq!(
            h.c.end_txn("tx", pid + 1, epoch + 1, true, 0),
            Err(InvalidProducerIdMapping)
        );
        // From a client the epoch must be the current one, higher too is fenced.
        assert_eq!(
            h.c.end_txn("tx", pid, epoch + 1, true, 0),
            Err(ProducerFenced)
        );
        assert_eq!(
            h.c.end_txn("tx", pid, epoch - 1, false, 0),
            Err(ProducerFenced)
        );
        let _w = write_of(h.c.end_txn("tx", pid, epoch, true, 1));
        assert_eq!(
            h.c.end_txn("tx", pid, epoch, true, 2),
            Err(ConcurrentTransactions)
        );
        assert_eq!(
            h.c.end_txn("tx", pid, epoch, false, 2),
            Err(ConcurrentTransactions)
        );
    }

    /// Commit end to end: PrepareCommit durable → markers → CompleteCommit with no
    /// partitions; the retry of the finished commit is NONE without a write.
    #[test]
    fn commit_then_markers_complete_the_transaction() {
        let mut h = H::new();
        let (pid, epoch) = h.ongoing("tx", 100);
        let w = write_of(h.c.end_txn("tx", pid, epoch, true, 200));
        let job = h.commit(&w).unwrap();
        assert_eq!(
            job,
            MarkerJob {
                txn_id: "tx".into(),
                producer_id: pid,
                producer_epoch: epoch,
                commit: true,
                coordinator_epoch: CEPOCH,
                partitions: BTreeSet::from([tp("t", 0), tp("t", 1)]),
            }
        );
        assert_eq!(h.m("tx").state, PrepareCommit);

        // Stale reports are ignored.
        assert_eq!(h.c.markers_written("tx", pid, epoch, CEPOCH - 1, 300), None);
        assert_eq!(h.c.markers_written("tx", pid, epoch + 1, CEPOCH, 300), None);
        assert_eq!(h.c.markers_written("tx", pid + 1, epoch, CEPOCH, 300), None);
        assert_eq!(h.c.markers_written("other", pid, epoch, CEPOCH, 300), None);
        assert_eq!(h.m("tx").pending, None);

        // One partition acknowledged: Describe lists the other only.
        assert_eq!(
            h.c.markers_acked("tx", pid, epoch, CEPOCH, &[tp("t", 0)], 250),
            None
        );
        assert_eq!(
            h.c.describe("tx").unwrap().topics,
            BTreeMap::from([("t".to_string(), vec![1])])
        );
        let done =
            h.c.markers_acked("tx", pid, epoch, CEPOCH, &[tp("t", 1)], 300)
                .unwrap();
        let v = value_of(&done);
        assert_eq!(
            (v.state, v.producer_epoch, v.last_update_ms, v.start_ms),
            (CompleteCommit, epoch, 300, 100)
        );
        assert!(v.partitions.is_empty());
        // Completing twice is not possible.
        assert_eq!(h.c.markers_written("tx", pid, epoch, CEPOCH, 301), None);
        assert_eq!(h.commit(&done), None);
        let m = h.m("tx");
        assert_eq!(
            (m.state, m.partitions.len(), m.pending.is_none()),
            (CompleteCommit, 0, true)
        );
        assert_eq!(h.c.end_txn("tx", pid, epoch, true, 400), Ok(TxnStep::Done));
        assert_eq!(
            h.c.end_txn("tx", pid, epoch, false, 400),
            Err(InvalidTxnState)
        );
    }

    #[test]
    fn a_failed_complete_is_retried_by_reporting_the_markers_again() {
        let mut h = H::new();
        let (pid, epoch) = h.ongoing("tx", 100);
        let w = write_of(h.c.end_txn("tx", pid, epoch, false, 200));
        h.commit(&w).unwrap();
        let done = h.c.markers_written("tx", pid, epoch, CEPOCH, 300).unwrap();
        h.c.write_failed("tx", done.token);
        assert_eq!(h.m("tx").state, PrepareAbort);
        assert!(!h.m("tx").fence_write_failed);
        let again = h.c.markers_written("tx", pid, epoch, CEPOCH, 310).unwrap();
        assert_ne!(again.token, done.token);
        h.commit(&again);
        assert_eq!(h.m("tx").state, CompleteAbort);
    }

    // ---- Two-phase writes ----

    #[test]
    fn a_failed_write_leaves_the_state_unchanged() {
        let mut h = H::new();
        let (pid, epoch) = h.init("tx", None, 0);
        let before = h.m("tx").clone();
        let w = write_of(h.c.add_partitions("tx", pid, epoch, &[tp("t", 0)], 10));
        h.c.write_failed("tx", w.token);
        assert_eq!(h.m("tx"), &before);
        // Nothing is pending any more: the client's retry goes through.
        let w = write_of(h.c.add_partitions("tx", pid, epoch, &[tp("t", 0)], 20));
        h.commit(&w);
        let before = h.m("tx").clone();
        let w = write_of(h.c.end_txn("tx", pid, epoch, true, 30));
        h.c.write_failed("tx", w.token);
        assert_eq!(h.m("tx"), &before);
        assert!(!h.m("tx").fence_write_failed);
        // A failed InitProducerId keeps the epoch.
        let mut h = H::new();
        let (_, epoch) = h.init("tx", None, 0);
        let InitProducerIdOutcome::Write { write, .. } = h.init_raw("tx", None, 1).unwrap() else {
            panic!()
        };
        h.c.write_failed("tx", write.token);
        assert_eq!(h.m("tx").producer_epoch, epoch);
        assert_eq!(h.m("tx").pending, None);
    }

    #[test]
    fn stale_tokens_are_ignored() {
        let mut h = H::new();
        let (pid, epoch) = h.init("tx", None, 0);
        let w1 = write_of(h.c.add_partitions("tx", pid, epoch, &[tp("t", 0)], 10));
        assert_eq!(h.commit(&w1), None);
        let snapshot = h.m("tx").clone();
        // A duplicate completion, and a failure reported after success.
        assert_eq!(h.commit(&w1), None);
        h.c.write_failed("tx", w1.token);
        assert_eq!(h.m("tx"), &snapshot);
        // A completion naming an older write does not apply or clear the current one.
        let w2 = write_of(h.c.end_txn("tx", pid, epoch, true, 20));
        assert_eq!(h.commit(&w1), None);
        h.c.write_failed("tx", w1.token);
        assert_eq!(h.m("tx").pending_state(), Some(PrepareCommit));
        assert!(h.commit(&w2).is_some());

        // A write of an id that expired and came back matches nothing.
        let mut h = H::new();
        let (pid, epoch) = h.init("tx", None, 0);
        let old = write_of(h.c.add_partitions("tx", pid, epoch, &[tp("t", 0)], 1));
        h.c.write_failed("tx", old.token);
        let tomb = h.c.expired_ids(10_000, 1000);
        assert_eq!(tomb.len(), 1);
        h.commit(&tomb[0]);
        assert!(h.c.get("tx").is_none());
        h.init("tx", None, 20_000);
        let _pending = write_of(h.c.add_partitions("tx", h.next_pid, 0, &[tp("u", 1)], 20_001));
        let now = h.m("tx").clone();
        assert_eq!(h.c.write_committed("tx", old.token), None);
        h.c.write_failed("tx", old.token);
        h.c.write_failed("tx", tomb[0].token);
        assert_eq!(h.m("tx"), &now);

        // A write of a previous load of the partition matches nothing in the next one.
        let mut first = H::new();
        let (pid, epoch) = first.init("tx", None, 0);
        let w = write_of(first.c.add_partitions("tx", pid, epoch, &[tp("t", 0)], 1));
        let mut next = H {
            c: TxnCoordinator::new(CEPOCH + 1),
            next_pid: 5000,
        };
        next.load("tx", Empty, pid, epoch, 0);
        let mine = write_of(next.c.add_partitions("tx", pid, epoch, &[tp("t", 0)], 1));
        assert_ne!(mine.token, w.token);
        assert_eq!(next.c.write_committed("tx", w.token), None);
        next.c.write_failed("tx", w.token);
        assert_eq!(next.m("tx").pending_state(), Some(Ongoing));
        assert_eq!(next.m("tx").state, Empty);
    }

    // ---- Timeouts and expiry (KT §2.8, §2.9) ----

    #[test]
    fn timed_out_transactions_are_fenced_and_aborted() {
        let mut h = H::new();
        let (pid, epoch) = h.ongoing("late", 100);
        h.ongoing("fresh", 5000);
        h.init("idle", None, 0);
        h.load("prep", PrepareCommit, 900, 1, 0);
        let deadline = 100 + i64::from(TIMEOUT);
        assert!(
            h.c.timed_out(deadline).is_empty(),
            "start + timeout < now is strict"
        );
        let writes = h.c.timed_out(deadline + 1);
        assert_eq!(writes.len(), 1);
        assert_eq!(writes[0].txn_id, "late");
        let v = value_of(&writes[0]);
        assert_eq!(
            (v.state, v.producer_id, v.producer_epoch),
            (PrepareAbort, pid, epoch + 1)
        );
        // Pending: not taken again.
        assert!(h.c.timed_out(deadline + 2).is_empty());
        // The producer's next request with its old epoch is fenced.
        assert_eq!(
            h.c.end_txn("late", pid, epoch, true, deadline + 3),
            Err(ProducerFenced)
        );
        let job = h.commit(&writes[0]).unwrap();
        assert!(!job.commit);
        assert_eq!(job.producer_epoch, epoch + 1);
        assert_eq!(h.m("late").state, PrepareAbort);
        assert_eq!(h.m("fresh").state, Ongoing);
    }

    #[test]
    fn idle_ids_expire_with_a_tombstone() {
        let mut h = H::new();
        h.init("empty", None, 0);
        h.load("done", CompleteAbort, 600, 2, 0);
        h.load("recent", CompleteCommit, 601, 2, 500);
        h.ongoing("open", 0);
        h.load("prep", PrepareAbort, 602, 2, 0);
        let (pid, epoch) = h.init("busy", None, 0);
        let _pending = write_of(h.c.add_partitions("busy", pid, epoch, &[tp("t", 0)], 0));
        assert!(h.c.expired_ids(999, 1000).is_empty());
        let writes = h.c.expired_ids(1000, 1000);
        let ids: Vec<&str> = writes.iter().map(|w| w.txn_id.as_str()).collect();
        assert_eq!(ids, ["done", "empty"]);
        for w in &writes {
            assert_eq!(w.value, None);
            assert_eq!(w.key, encode_key(&w.txn_id));
        }
        assert_eq!(h.m("empty").pending_state(), Some(Dead));
        // While the tombstone is written the id is busy.
        assert_eq!(h.init_raw("empty", None, 1001), Err(ConcurrentTransactions));
        assert!(h.c.expired_ids(1001, 1000).is_empty());
        // A failed tombstone keeps the id; a durable one removes it.
        h.c.write_failed("done", writes[0].token);
        assert_eq!(h.m("done").state, CompleteAbort);
        assert_eq!(h.commit(&writes[1]), None);
        assert!(h.c.get("empty").is_none());
        assert_eq!(h.c.describe("empty"), Err(TransactionalIdNotFound));
        assert_eq!(
            h.c.expired_ids(2000, 1000).len(),
            2,
            "done again, then recent"
        );
    }

    // ---- Load (KT §1.3, §2.10) ----

    /// Every write of a history, replayed in order into a new coordinator, rebuilds the same
    /// metadata (less what the log does not keep).
    #[test]
    fn replay_of_the_written_records_rebuilds_the_state() {
        let mut h = H::new();
        let mut log: Vec<TxnWrite> = Vec::new();
        let mut commit = |h: &mut H, w: TxnWrite| {
            let job = h.commit(&w);
            log.push(w);
            job
        };
        // a: committed transaction; b: ongoing; c: prepared abort; d: expired.
        for id in ["a", "b", "c", "d"] {
            let InitProducerIdOutcome::NeedProducerId =
                h.c.init_producer_id(id, TIMEOUT, None, MAX_TIMEOUT, None, 0)
                    .unwrap()
            else {
                panic!()
            };
            h.next_pid += 1;
            let InitProducerIdOutcome::Write { write, .. } =
                h.c.init_producer_id(id, TIMEOUT, None, MAX_TIMEOUT, Some(h.next_pid), 0)
                    .unwrap()
            else {
                panic!()
            };
            commit(&mut h, write);
        }
        for (id, n) in [("a", 2), ("b", 3), ("c", 1)] {
            let (pid, epoch) = (h.m(id).producer_id, h.m(id).producer_epoch);
            for p in 0..n {
                let w = write_of(h.c.add_partitions(id, pid, epoch, &[tp("t", p)], 10 + p as i64));
                commit(&mut h, w);
            }
        }
        let (pid, epoch) = (h.m("a").producer_id, h.m("a").producer_epoch);
        let w = write_of(h.c.end_txn("a", pid, epoch, true, 20));
        commit(&mut h, w).unwrap();
        let w = h.c.markers_written("a", pid, epoch, CEPOCH, 30).unwrap();
        commit(&mut h, w);
        let (pid, epoch) = (h.m("c").producer_id, h.m("c").producer_epoch);
        let w = write_of(h.c.end_txn("c", pid, epoch, false, 40));
        commit(&mut h, w).unwrap();
        // d was last updated at 0, a at 30.
        let tomb = h.c.expired_ids(5020, 5000);
        assert_eq!(
            tomb.iter().map(|w| w.txn_id.as_str()).collect::<Vec<_>>(),
            ["d"]
        );
        for w in tomb {
            commit(&mut h, w);
        }
        let mut loaded = TxnCoordinator::new(CEPOCH + 1);
        // A record with another key version is skipped.
        loaded
            .replay(&[0, 1, 0, 1, b'x'], Some(&[1, 2, 3]))
            .unwrap();
        for w in &log {
            loaded.replay(&w.key, w.value.as_deref()).unwrap();
        }
        let mut want = h.c.txns.clone();
        for m in want.values_mut() {
            m.prev_producer_id = -1;
            m.last_producer_epoch = -1;
        }
        assert_eq!(loaded.txns, want);
        assert_eq!(loaded.txns.len(), 3);
        assert_eq!(loaded.txns["a"].state, CompleteCommit);
        assert_eq!(loaded.txns["b"].partitions.len(), 3);
        assert_eq!(loaded.txns["b"].start_ms, 10);

        // After the load, the prepared abort's markers are sent again.
        let jobs = loaded.on_loaded();
        assert_eq!(
            jobs,
            vec![MarkerJob {
                txn_id: "c".into(),
                producer_id: h.m("c").producer_id,
                producer_epoch: h.m("c").producer_epoch,
                commit: false,
                coordinator_epoch: CEPOCH + 1,
                partitions: BTreeSet::from([tp("t", 0)]),
            }]
        );
    }

    #[test]
    fn replay_last_record_wins_and_tombstones_delete() {
        let mut h = H::new();
        h.load("tx", Ongoing, 500, 1, 10);
        h.load("tx", PrepareCommit, 500, 1, 20);
        assert_eq!(h.m("tx").state, PrepareCommit);
        assert_eq!(h.m("tx").last_update_ms, 20);
        h.c.replay(&encode_key("tx"), None).unwrap();
        assert!(h.c.get("tx").is_none());
        assert!(h.c.replay(&encode_key("tx"), Some(&[0, 0, 1])).is_err());
        assert!(h.c.replay(&[0], None).is_err());
    }

    #[test]
    fn on_loaded_resends_every_prepared_transaction() {
        let mut h = H::new();
        h.load("b", PrepareCommit, 501, 4, 0);
        h.load("a", PrepareAbort, 500, 3, 0);
        h.load("c", Ongoing, 502, 1, 0);
        h.load("d", CompleteCommit, 503, 1, 0);
        let jobs = h.c.on_loaded();
        let got: Vec<(&str, i64, i16, bool, i32)> = jobs
            .iter()
            .map(|j| {
                (
                    j.txn_id.as_str(),
                    j.producer_id,
                    j.producer_epoch,
                    j.commit,
                    j.coordinator_epoch,
                )
            })
            .collect();
        assert_eq!(
            got,
            [("a", 500, 3, false, CEPOCH), ("b", 501, 4, true, CEPOCH)]
        );
        assert_eq!(jobs[0].partitions, BTreeSet::from([tp("t", 0), tp("t", 1)]));
        // Their completion works as after an EndTxn.
        let w = h.c.markers_written("b", 501, 4, CEPOCH, 10).unwrap();
        assert_eq!(value_of(&w).state, CompleteCommit);
    }

    // ---- Describe / List (KT §6.2, §6.3) ----

    #[test]
    fn describe_answers_what_describe_transactions_needs() {
        let mut h = H::new();
        assert_eq!(h.c.describe(""), Err(InvalidRequest));
        assert_eq!(h.c.describe("tx"), Err(TransactionalIdNotFound));
        let (pid, epoch) = h.init("tx", None, 0);
        let d = h.c.describe("tx").unwrap();
        assert_eq!(
            d,
            TxnDescription {
                transactional_id: "tx".into(),
                state: Empty,
                timeout_ms: TIMEOUT,
                start_ms: -1,
                producer_id: pid,
                producer_epoch: epoch,
                topics: BTreeMap::new(),
            }
        );
        assert_eq!(d.state.name(), "Empty");
        h.add("tx", pid, epoch, &[tp("b", 1), tp("a", 2), tp("a", 0)], 7);
        let d = h.c.describe("tx").unwrap();
        assert_eq!((d.state.name(), d.start_ms), ("Ongoing", 7));
        assert_eq!(
            d.topics,
            BTreeMap::from([("a".to_string(), vec![0, 2]), ("b".to_string(), vec![1])])
        );
    }

    #[test]
    fn list_filters() {
        let mut h = H::new();
        h.load("a", Ongoing, 500, 0, 0); // start 100
        h.load("b", CompleteCommit, 501, 0, 0);
        h.load("c", Empty, 502, 0, 0); // start -1
        let (pid, _) = h.ongoing("d", 1000);
        let names = |l: &TxnListing| -> Vec<String> {
            l.transactions
                .iter()
                .map(|t| t.transactional_id.clone())
                .collect()
        };
        let all = h.c.list(&[], &[], -1, 2000);
        assert_eq!(names(&all), ["a", "b", "c", "d"]);
        assert_eq!(
            all.transactions[0],
            ListedTxn {
                transactional_id: "a".into(),
                producer_id: 500,
                state: Ongoing
            }
        );
        assert!(all.unknown_state_filters.is_empty());

        let ongoing = h.c.list(&["Ongoing".into()], &[], -1, 2000);
        assert_eq!(names(&ongoing), ["a", "d"]);
        let l =
            h.c.list(&["Ongoing".into(), "Bogus".into()], &[pid, 501], -1, 2000);
        assert_eq!(names(&l), ["d"]);
        assert_eq!(l.unknown_state_filters, ["Bogus"]);
        // Only unknown names: nothing matches.
        let l = h.c.list(&["ongoing".into()], &[], -1, 2000);
        assert!(l.transactions.is_empty());
        assert_eq!(l.unknown_state_filters, ["ongoing"]);
        // Running longer than 1000 ms at 2000: a and b (start 100) and c (start -1); d started
        // at 1000, exactly 1000 ms ago, which is not longer.
        assert_eq!(names(&h.c.list(&[], &[], 1000, 2000)), ["a", "b", "c"]);
        assert_eq!(names(&h.c.list(&[], &[], 1899, 2000)), ["a", "b", "c"]);
        assert_eq!(names(&h.c.list(&[], &[], 1900, 2000)), ["c"]);
        assert_eq!(names(&h.c.list(&[], &[], 0, 2000)), ["a", "b", "c", "d"]);
    }

    #[test]
    fn codes_for_older_request_versions() {
        let table = [
            (ApiKey::InitProducerId, 3, InvalidProducerEpoch),
            (ApiKey::InitProducerId, 4, ProducerFenced),
            (ApiKey::AddPartitionsToTxn, 1, InvalidProducerEpoch),
            (ApiKey::AddPartitionsToTxn, 2, ProducerFenced),
            (ApiKey::AddOffsetsToTxn, 1, InvalidProducerEpoch),
            (ApiKey::AddOffsetsToTxn, 2, ProducerFenced),
            (ApiKey::EndTxn, 0, InvalidProducerEpoch),
            (ApiKey::EndTxn, 2, ProducerFenced),
            (ApiKey::Produce, 0, ProducerFenced),
        ];
        for (api, version, want) in table {
            assert_eq!(
                for_version(ProducerFenced, api, version),
                want,
                "{api:?} v{version}"
            );
        }
        assert_eq!(
            for_version(ConcurrentTransactions, ApiKey::EndTxn, 0),
            ConcurrentTransactions
        );
    }
}
