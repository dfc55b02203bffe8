//! The replication runtime: drives `runnel_replication`'s state machines with real logs,
//! clocks and gRPC.
//!
//! - [`on_leadership`] turns each partition's leadership from the metadata image into its
//!   [`Role`]: a leader gets a [`LeaderState`]; a follower is handed to the [`fetcher`] for its
//!   leader broker.
//! - [`service`] is the leader's side of the replica fetch stream: it serves followers' fetches,
//!   detects diverging logs (KIP-320) and records follower progress, which moves the high
//!   watermark and proposes ISR changes.
//! - [`fetcher`] is the follower's side: one long-lived stream per leader broker carrying every
//!   partition followed there; it appends, truncates and learns the high watermark.
//! - ISR changes go to the controller as AlterPartition, fenced by leader and partition epoch;
//!   [`run_isr_ticker`] shrinks the ISR of followers that fell behind.
//! - acks=all produces wait in [`wait_for_ack`].

pub mod fetcher;
pub mod markers;
pub mod service;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use parking_lot::Mutex;
use runnel_controller::api::AlterPartitionRequest;
use runnel_controller::image::PartitionRegistration;
use runnel_controller::ControllerError;
use runnel_replication::leader::{AckStatus, AppendCheck, IsrProposal, LeaderConfig, LeaderState};
use tokio::sync::watch;

use crate::clock::now_ms;
use crate::config::{BrokerConfig, ReplicationConfig};
use crate::controller_channel::ControllerChannel;
use crate::error::KafkaError;
use crate::fence::Fence;
use crate::metadata::MetadataView;
use crate::replica::{Leadership, Partition, ReplicaManager, Role, TopicPartition};
use crate::topic_config::{self, LogDefaults};

/// How long an AlterPartition may take before the leader retries it.
const ALTER_PARTITION_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed AlterPartition before the same partition proposes again.
const ALTER_PARTITION_BACKOFF_MS: i64 = 500;

/// The node's replication runtime: the services it drives and its own bookkeeping.
pub struct Replication {
    node_id: i32,
    config: ReplicationConfig,
    /// The broker's topic defaults (`min.insync.replicas` among them).
    log_defaults: LogDefaults,
    partitions: Arc<ReplicaManager>,
    metadata: Arc<MetadataView>,
    controller: Arc<ControllerChannel>,
    fence: Arc<Fence>,
    pub fetchers: fetcher::FetcherManager,
    /// Partitions whose last AlterPartition failed, and when they may propose again.
    isr_backoff: Mutex<HashMap<TopicPartition, i64>>,
    /// Told of each transaction marker written here (set once by the broker).
    pub marker_hook: std::sync::OnceLock<markers::MarkerHook>,
    /// Answers other nodes' transaction verifications (set once by the broker).
    pub txn_verify_hook: std::sync::OnceLock<TxnVerifyHook>,
}

/// The transaction coordinator's answer to a partition leader's verification: for
/// (transactional id, producer id, producer epoch, partitions), each partition's error (`None`
/// when it is in the open transaction), or an error for the whole request.
pub type TxnVerifyHook = Arc<
    dyn Fn(
            &str,
            i64,
            i16,
            &[(String, i32)],
        ) -> Result<Vec<((String, i32), Option<ResponseError>)>, ResponseError>
        + Send
        + Sync,
>;

impl Replication {
    pub fn new(
        config: &BrokerConfig,
        partitions: Arc<ReplicaManager>,
        metadata: Arc<MetadataView>,
        controller: Arc<ControllerChannel>,
        fence: Arc<Fence>,
    ) -> Replication {
        Replication {
            node_id: config.node_id,
            config: config.replication.clone(),
            log_defaults: config.log_defaults.clone(),
            fetchers: fetcher::FetcherManager::new(
                config.node_id,
                config.replication.clone(),
                controller.clone(),
            ),
            partitions,
            metadata,
            controller,
            fence,
            marker_hook: std::sync::OnceLock::new(),
            txn_verify_hook: std::sync::OnceLock::new(),
            isr_backoff: Mutex::new(HashMap::new()),
        }
    }

    /// The leader settings of a partition: the broker's lag time and the topic's (or
    /// broker's) `min.insync.replicas`.
    pub fn leader_config(&self, p: &Partition) -> LeaderConfig {
        LeaderConfig {
            replica_lag_time_max_ms: self.config.replica_lag_time_max_ms,
            min_insync_replicas: topic_config::min_insync_replicas(
                &p.overrides(),
                &self.log_defaults,
            ),
        }
    }

    /// Applies a partition's leadership and registration from the image: becomes leader (a new
    /// [`LeaderState`] for a new leader epoch, or an ISR/replica update within the epoch), follower
    /// (fetching from the leader), or neither. The leadership is published after the role when
    /// gaining leadership and before it when losing it, so a handler that sees `is_leader` always
    /// finds a leader state.
    pub fn on_leadership(
        &self,
        p: &Arc<Partition>,
        leadership: Leadership,
        reg: Option<&PartitionRegistration>,
    ) {
        let node = self.node_id;
        let now = now_ms();
        let (replicas, isr) = reg
            .map(|r| (r.replicas.clone(), r.isr.clone()))
            .unwrap_or_else(|| (vec![node], vec![node]));
        if leadership.is_leader {
            let config = self.leader_config(p);
            {
                let mut role = p.role();
                match &mut *role {
                    Role::Leader(st) if st.leader_epoch() == leadership.leader_epoch => {
                        st.set_config(config);
                        if let Some(hw) =
                            st.update_partition(leadership.partition_epoch, replicas, isr, now)
                        {
                            p.publish_hw(hw);
                        }
                    }
                    _ => {
                        if let Err(error) = p.start_leader_epoch(leadership.leader_epoch) {
                            tracing::error!(topic = %p.tp.topic, partition = p.tp.partition, leader_epoch = leadership.leader_epoch, %error, "cannot record the new leader epoch");
                        }
                        let (_, leo) = p.last_epoch_and_end();
                        let st = LeaderState::new(
                            node,
                            leadership.leader_epoch,
                            leadership.partition_epoch,
                            replicas,
                            isr,
                            leo,
                            p.high_watermark(),
                            now,
                            config,
                        );
                        let hw = st.high_watermark();
                        tracing::info!(topic = %p.tp.topic, partition = p.tp.partition, leader_epoch = leadership.leader_epoch, log_end_offset = leo, high_watermark = hw, isr = ?st.isr(), "became leader");
                        *role = Role::Leader(Box::new(st));
                        if hw != p.high_watermark() {
                            p.publish_hw(hw);
                        }
                    }
                }
            }
            self.fetchers.remove(&p.tp);
            p.set_leadership(leadership);
        } else {
            p.set_leadership(leadership);
            let following = leadership.leader >= 0;
            {
                let mut role = p.role();
                if following {
                    if !matches!(&*role, Role::Follower { leader, leader_epoch } if *leader == leadership.leader && *leader_epoch == leadership.leader_epoch)
                    {
                        tracing::info!(topic = %p.tp.topic, partition = p.tp.partition, leader = leadership.leader, leader_epoch = leadership.leader_epoch, "following");
                    }
                    *role = Role::Follower {
                        leader: leadership.leader,
                        leader_epoch: leadership.leader_epoch,
                    };
                } else {
                    *role = Role::None;
                }
            }
            if following {
                self.fetchers
                    .follow(p.clone(), leadership.leader, leadership.leader_epoch);
            } else {
                self.fetchers.remove(&p.tp);
            }
        }
        self.update_under_replicated();
    }

    /// A partition stopped being hosted here.
    pub fn on_removed(&self, tp: &TopicPartition) {
        self.fetchers.remove(tp);
        self.isr_backoff.lock().remove(tp);
    }

    /// The topic config changed: the leader's `min.insync.replicas` may have.
    pub fn on_reconfigured(&self, p: &Partition) {
        let config = self.leader_config(p);
        if let Role::Leader(st) = &mut *p.role() {
            st.set_config(config);
        }
    }

    /// Asks the leader state of `p` for an ISR change and, if there is one, sends it to the
    /// controller in the background.
    pub fn maybe_change_isr(self: &Arc<Self>, p: &Arc<Partition>, now: i64) {
        if self.isr_backoff.lock().get(&p.tp).is_some_and(|t| *t > now) {
            return;
        }
        let image = self.metadata.image();
        let proposal = match &mut *p.role() {
            Role::Leader(st) => {
                let proposal = st.isr_change(now);
                // KIP-841: never propose adding a broker the image shows fenced or shutting down
                // (the controller would refuse it, and while the proposal is in flight the broker
                // would count toward the high watermark). Nothing was sent, so it is rejected here.
                let ineligible = proposal.as_ref().is_some_and(|prop| {
                    prop.new_isr.iter().any(|id| {
                        !st.isr().contains(id)
                            && !image.image.broker(*id).is_some_and(|b| b.is_active())
                    })
                });
                if ineligible {
                    if let Some(hw) = st.isr_change_rejected() {
                        p.publish_hw(hw);
                    }
                    None
                } else {
                    proposal
                }
            }
            _ => None,
        };
        if let Some(proposal) = proposal {
            tokio::spawn(self.clone().alter_partition(p.clone(), proposal));
        }
    }

    async fn alter_partition(self: Arc<Self>, p: Arc<Partition>, proposal: IsrProposal) {
        let current = p.role_isr();
        let shrink = proposal.new_isr.len() < current.len();
        tracing::info!(topic = %p.tp.topic, partition = p.tp.partition, isr = ?current, new_isr = ?proposal.new_isr, leader_epoch = proposal.leader_epoch, partition_epoch = proposal.partition_epoch, "proposing an ISR change");
        let req = AlterPartitionRequest {
            broker_id: self.node_id,
            incarnation_id: self.controller.incarnation_id(),
            topic_id: p.topic_id,
            partition: p.tp.partition,
            leader_epoch: proposal.leader_epoch,
            partition_epoch: proposal.partition_epoch,
            new_isr: proposal.new_isr.clone(),
        };
        match self
            .controller
            .alter_partition(req, ALTER_PARTITION_TIMEOUT)
            .await
        {
            Ok(state) => {
                if shrink {
                    metrics::counter!("runnel_isr_shrinks_total").increment(1);
                } else {
                    metrics::counter!("runnel_isr_expands_total").increment(1);
                }
                tracing::info!(topic = %p.tp.topic, partition = p.tp.partition, isr = ?state.isr, partition_epoch = state.partition_epoch, "ISR changed");
                let replicas = self
                    .metadata
                    .image()
                    .image
                    .partition(&p.topic_id, p.tp.partition)
                    .map(|r| r.replicas.clone());
                if let Role::Leader(st) = &mut *p.role() {
                    if st.leader_epoch() == state.leader_epoch {
                        let replicas = replicas.unwrap_or_else(|| state.isr.clone());
                        if let Some(hw) = st.update_partition(
                            state.partition_epoch,
                            replicas,
                            state.isr,
                            now_ms(),
                        ) {
                            p.publish_hw(hw);
                        }
                    }
                }
                self.isr_backoff.lock().remove(&p.tp);
                self.update_under_replicated();
            }
            Err(error) => {
                tracing::warn!(topic = %p.tp.topic, partition = p.tp.partition, new_isr = ?proposal.new_isr, %error, "ISR change refused or failed; will retry");
                // A refusal of the proposal itself is final for it; anything else (a timeout, a
                // stale epoch) may mean it was applied after all, so the expansion keeps counting
                // until the image says otherwise.
                let rejected = matches!(
                    error,
                    ControllerError::IneligibleReplica(_) | ControllerError::InvalidRequest(_)
                );
                if let Role::Leader(st) = &mut *p.role() {
                    if rejected {
                        if let Some(hw) = st.isr_change_rejected() {
                            p.publish_hw(hw);
                        }
                    } else {
                        st.isr_change_failed();
                    }
                }
                self.isr_backoff
                    .lock()
                    .insert(p.tp.clone(), now_ms() + ALTER_PARTITION_BACKOFF_MS);
            }
        }
    }

    /// Every `replica.lag.time.max.ms / 2` (at least every 100 ms), checks each led partition for
    /// followers that fell out of sync (or caught up) and proposes ISR changes.
    pub async fn run_isr_ticker(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let period = Duration::from_millis(
            (self.config.replica_lag_time_max_ms / 2).clamp(100, 5000) as u64,
        );
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = tick.tick() => {
                    let now = now_ms();
                    for p in self.partitions.all() {
                        if p.leadership().is_leader {
                            self.maybe_change_isr(&p, now);
                        }
                    }
                    self.update_under_replicated();
                }
            }
        }
    }

    /// Every `replica.high.watermark.checkpoint.interval.ms`, writes the high watermarks.
    pub async fn run_hw_checkpoint(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut tick =
            tokio::time::interval(Duration::from_millis(self.config.hw_checkpoint_interval_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = tick.tick() => {
                    let b = self.clone();
                    let r = tokio::task::spawn_blocking(move || b.partitions.checkpoint_high_watermarks()).await;
                    if let Ok(Err(error)) = r {
                        tracing::warn!(%error, "could not write the high watermark checkpoint");
                    }
                }
            }
        }
    }

    /// `runnel_under_replicated_partitions`: led partitions whose ISR is smaller than their
    /// replica set.
    fn update_under_replicated(&self) {
        let image = self.metadata.image();
        let n = self
            .partitions
            .all()
            .iter()
            .filter(|p| {
                matches!(&*p.role(), Role::Leader(st) if image
                    .image
                    .partition(&p.topic_id, p.tp.partition)
                    .is_some_and(|r| st.isr().len() < r.replicas.len()))
            })
            .count();
        metrics::gauge!("runnel_under_replicated_partitions").set(n as f64);
    }
}

/// Whether an acks=all produce may append to `p` now (NOT_ENOUGH_REPLICAS otherwise).
pub fn check_acks_all(p: &Partition) -> Result<(), KafkaError> {
    match &*p.role() {
        Role::Leader(st) => match st.check_append() {
            AppendCheck::Ok => Ok(()),
            AppendCheck::NotEnoughReplicas { isr, min_insync } => Err(KafkaError::new(
                ResponseError::NotEnoughReplicas,
                format!(
                    "the in-sync replicas of {}-{} are {isr}, below min.insync.replicas={min_insync}",
                    p.tp.topic, p.tp.partition
                ),
            )),
        },
        _ => Err(KafkaError::new(
            ResponseError::NotLeaderOrFollower,
            format!("this server is not the leader of {}-{}", p.tp.topic, p.tp.partition),
        )),
    }
}

/// Waits until every ISR member has the batch ending at `last_offset` that was appended in
/// `leader_epoch`: Ok, NOT_ENOUGH_REPLICAS_AFTER_APPEND (the ISR shrank below
/// `min.insync.replicas`), NOT_LEADER_OR_FOLLOWER (leadership moved), or REQUEST_TIMED_OUT
/// at `deadline`.
pub async fn wait_for_ack(
    p: Arc<Partition>,
    last_offset: i64,
    leader_epoch: i32,
    deadline: tokio::time::Instant,
) -> Result<(), ResponseError> {
    let mut rx = p.subscribe();
    loop {
        if let Some(r) = ack_check(&p, last_offset, leader_epoch) {
            return r;
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(ResponseError::NotLeaderOrFollower),
            Err(_) => return Err(ResponseError::RequestTimedOut),
        }
    }
}

/// Where an acks=all append up to `last_offset` in `leader_epoch` stands now: `None` while
/// it waits for the high watermark, the answer otherwise ([`wait_for_ack`]'s errors).
pub fn ack_check(
    p: &Partition,
    last_offset: i64,
    leader_epoch: i32,
) -> Option<Result<(), ResponseError>> {
    let l = p.leadership();
    if !l.is_leader || l.leader_epoch != leader_epoch {
        return Some(Err(ResponseError::NotLeaderOrFollower));
    }
    match &*p.role() {
        Role::Leader(st) if st.leader_epoch() == leader_epoch => match st.ack_status(last_offset) {
            AckStatus::Done => Some(Ok(())),
            AckStatus::NotEnoughReplicasAfterAppend => {
                Some(Err(ResponseError::NotEnoughReplicasAfterAppend))
            }
            AckStatus::Waiting => None,
        },
        _ => Some(Err(ResponseError::NotLeaderOrFollower)),
    }
}
