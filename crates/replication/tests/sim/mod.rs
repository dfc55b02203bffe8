//! A seeded, deterministic simulation of one partition replicated three times: in-memory logs
//! and leader epoch caches, a model controller, the follower fetch loop and the leader's
//! `LeaderState`, all talking through a message queue that the seeded RNG delays, reorders
//! and drops, while a nemesis crashes and restarts one replica at a time and moves
//! leadership. No I/O, no threads, no clocks: a run is a pure function of its seed.
//!
//! Invariants are checked after every step (see [`World::check`]) and after a final healing
//! phase, which must also converge (every replica back in the ISR with the leader's log).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use runnel_replication::follower::{diverging_epoch, truncation};
use runnel_replication::leader::{AckStatus, AppendCheck, IsrProposal, LeaderConfig, LeaderState};
use runnel_replication::{BrokerId, EpochEndOffset, UNDEFINED_EPOCH, UNDEFINED_OFFSET};

/// A deliberate bug, to show the checker catches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Bug {
    #[default]
    None,
    /// The controller elects any live replica, in the ISR or not.
    UncleanElection,
    /// The leader acknowledges acks=all produces as soon as it appended them (acks=1).
    AckOnLeaderAppend,
    /// The leader's runtime reports diverging fetches to `LeaderState` as progress.
    CountDivergingFetches,
    /// Followers never truncate on a diverging epoch (they still take the high watermark).
    IgnoreDivergence,
    /// A new leader does not start its epoch in the epoch cache (only its first append does).
    NoEpochStartOnElection,
    /// Followers truncate to the leader's epoch end offset without consulting their own
    /// epochs (KIP-101 without KIP-279).
    TruncateToLeaderEnd,
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub steps: u64,
    /// Upper bound on the healing phase (no faults, no produces) that must converge.
    pub heal_steps: u64,
    pub bug: Bug,
    /// Keep a trace of events (for printing a failing seed).
    pub trace: bool,
}

impl SimConfig {
    pub fn new(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            steps: 300,
            heal_steps: 600,
            bug: Bug::None,
            trace: false,
        }
    }
}

/// What a run did, for the caller's sanity checks.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub acked: usize,
    pub elections: u64,
    pub crashes: u64,
    pub truncations: u64,
    pub isr_changes: u64,
    /// Truncations that needed another round (KIP-279).
    pub incomplete_truncations: u64,
    /// AlterPartition attempts that failed with an unknown outcome / were refused.
    pub alters_failed: u64,
    pub alters_rejected: u64,
    /// Appends by a leader the controller had already replaced.
    pub stale_leader_appends: u64,
    pub final_leo: i64,
}

impl Stats {
    pub fn add(&mut self, o: &Stats) {
        self.acked += o.acked;
        self.elections += o.elections;
        self.crashes += o.crashes;
        self.truncations += o.truncations;
        self.isr_changes += o.isr_changes;
        self.incomplete_truncations += o.incomplete_truncations;
        self.alters_failed += o.alters_failed;
        self.alters_rejected += o.alters_rejected;
        self.stale_leader_appends += o.stale_leader_appends;
        self.final_leo += o.final_leo;
    }
}

pub struct Failure {
    pub message: String,
}

const REPLICAS: [BrokerId; 3] = [1, 2, 3];
const STEP_MS: i64 = 10;
const LAG_MS: i64 = 300;
const MIN_INSYNC: usize = 2;
const FETCH_TIMEOUT: u64 = 15;
const PRODUCE_TIMEOUT: u64 = 100;

/// SplitMix64.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn range(&mut self, lo: u64, hi_inclusive: u64) -> u64 {
        lo + self.below(hi_inclusive - lo + 1)
    }
    /// True with probability `pct` percent.
    pub fn pct(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        (!items.is_empty()).then(|| items[self.below(items.len() as u64) as usize])
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rec {
    pub offset: i64,
    pub epoch: i32,
    pub value: u64,
}

/// An in-memory leader epoch cache with Kafka's `LeaderEpochFileCache` semantics.
#[derive(Debug, Clone, Default)]
pub struct EpochCache {
    /// (epoch, start offset), both increasing.
    entries: Vec<(i32, i64)>,
}

impl EpochCache {
    pub fn latest_epoch(&self) -> i32 {
        self.entries.last().map_or(UNDEFINED_EPOCH, |e| e.0)
    }

    /// Kafka's `assign`: ignored when it is the latest epoch at or after its start; otherwise
    /// entries with an epoch or start offset not below the new one are removed first.
    pub fn assign(&mut self, epoch: i32, start: i64) {
        if let Some(&(e, s)) = self.entries.last() {
            if e == epoch && start >= s {
                return;
            }
        }
        self.entries.retain(|&(e, s)| e < epoch && s < start);
        self.entries.push((epoch, start));
    }

    /// Kafka's `endOffsetFor`.
    pub fn end_offset_for(&self, requested: i32, leo: i64) -> EpochEndOffset {
        if requested == UNDEFINED_EPOCH {
            return EpochEndOffset::UNDEFINED;
        }
        if self.latest_epoch() == requested {
            return EpochEndOffset {
                epoch: requested,
                end_offset: leo,
            };
        }
        let Some(&(_, higher_start)) = self.entries.iter().find(|&&(e, _)| e > requested) else {
            return EpochEndOffset::UNDEFINED;
        };
        match self.entries.iter().rev().find(|&&(e, _)| e <= requested) {
            None => EpochEndOffset {
                epoch: requested,
                end_offset: higher_start,
            },
            Some(&(floor, _)) => EpochEndOffset {
                epoch: floor,
                end_offset: higher_start,
            },
        }
    }

    /// Removes entries starting at or after `end`.
    pub fn truncate_from_end(&mut self, end: i64) {
        self.entries.retain(|&(_, s)| s < end);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Replica(BrokerId),
    Controller,
}

#[derive(Debug, Clone)]
enum FetchAnswer {
    Records(Vec<Rec>),
    Diverging(EpochEndOffset),
    Error(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AlterResult {
    Ok,
    /// Leader or partition epoch stale, or not the leader: outcome of earlier attempts unknown.
    Stale,
    /// A proposed member is fenced or not a replica: definitely not applied.
    Ineligible,
}

#[derive(Debug, Clone)]
enum Body {
    Fetch {
        leader_epoch: i32,
        seq: u64,
        fetch_offset: i64,
        last_fetched_epoch: i32,
    },
    FetchResponse {
        leader_epoch: i32,
        seq: u64,
        answer: FetchAnswer,
        high_watermark: i64,
    },
    Alter {
        id: u64,
        proposal: IsrProposal,
    },
    AlterResponse {
        id: u64,
        result: AlterResult,
    },
}

#[derive(Debug, Clone)]
struct Msg {
    deliver_at: u64,
    tiebreak: u64,
    from: Node,
    /// The sender's incarnation: messages of a crashed incarnation are lost with it.
    from_incarnation: u64,
    to: Node,
    body: Body,
}

struct LeaderCtx {
    state: LeaderState,
    /// acks=all produces waiting for the high watermark: (offset, value, deadline step).
    pending: Vec<(i64, u64, u64)>,
    /// The AlterPartition request out: (id, sent at step).
    alter: Option<(u64, u64)>,
    last_hw: i64,
}

struct FollowerCtx {
    leader: BrokerId,
    /// The fetch out: (seq, sent at step).
    outstanding: Option<(u64, u64)>,
}

enum Role {
    Idle,
    Leader(Box<LeaderCtx>),
    Follower(FollowerCtx),
}

struct Replica {
    id: BrokerId,
    alive: bool,
    incarnation: u64,
    // Durable state.
    log: Vec<Rec>,
    cache: EpochCache,
    hw: i64,
    /// The highest offset this replica ever told a leader it has (its fetch offsets): the
    /// crash model loses only records beyond it (and beyond every committed offset), as if
    /// each fetch flushed the log first. (Without that, a leader may count records a
    /// restarted replica lost; Kafka guards that with broker epochs in fetches, KIP-903.)
    reported: i64,
    // Volatile state, lost in a crash.
    image_version: u64,
    leader_epoch: i32,
    role: Role,
}

impl Replica {
    fn leo(&self) -> i64 {
        self.log.len() as i64
    }

    fn truncate_to(&mut self, offset: i64) {
        let offset = offset.clamp(0, self.leo());
        self.log.truncate(offset as usize);
        self.cache.truncate_from_end(offset);
        self.hw = self.hw.min(offset);
    }

    fn append(&mut self, rec: Rec) {
        self.cache.assign(rec.epoch, rec.offset);
        self.log.push(rec);
    }
}

#[derive(Debug, Clone)]
struct Image {
    version: u64,
    leader: Option<BrokerId>,
    leader_epoch: i32,
    partition_epoch: i32,
    isr: Vec<BrokerId>,
}

struct Controller {
    leader: Option<BrokerId>,
    leader_epoch: i32,
    partition_epoch: i32,
    isr: Vec<BrokerId>,
    fenced: BTreeMap<BrokerId, bool>,
    version: u64,
}

impl Controller {
    fn image(&self) -> Image {
        Image {
            version: self.version,
            leader: self.leader,
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
            isr: self.isr.clone(),
        }
    }

    fn unfenced(&self, b: BrokerId) -> bool {
        !self.fenced[&b]
    }

    fn set(&mut self, isr: Vec<BrokerId>, leader: Option<BrokerId>) -> bool {
        if isr == self.isr && leader == self.leader {
            return false;
        }
        if leader != self.leader {
            self.leader_epoch += 1;
        }
        self.isr = isr;
        self.leader = leader;
        self.partition_epoch += 1;
        self.version += 1;
        true
    }

    /// The (ISR, leader) after choosing a leader from `isr` (clean) or from every live
    /// replica (the unclean bug).
    fn elect(
        &self,
        isr: Vec<BrokerId>,
        bug: Bug,
        rng: &mut Rng,
    ) -> (Vec<BrokerId>, Option<BrokerId>) {
        let clean: Vec<BrokerId> = isr.iter().copied().filter(|&b| self.unfenced(b)).collect();
        if bug == Bug::UncleanElection {
            let any: Vec<BrokerId> = REPLICAS
                .iter()
                .copied()
                .filter(|&b| self.unfenced(b))
                .collect();
            if let Some(b) = rng.pick(&any) {
                let isr = if isr.contains(&b) { isr } else { vec![b] };
                return (isr, Some(b));
            }
        }
        match rng.pick(&clean) {
            Some(b) => (isr, Some(b)),
            None => (isr, None),
        }
    }

    /// The broker's session expired (or it re-registered): out of the ISR unless it is the
    /// last member, and a new leader if it led.
    fn fence(&mut self, b: BrokerId, bug: Bug, rng: &mut Rng) -> bool {
        if self.fenced[&b] {
            return false;
        }
        self.fenced.insert(b, true);
        self.version += 1;
        let isr: Vec<BrokerId> = if self.isr.len() > 1 {
            self.isr.iter().copied().filter(|&x| x != b).collect()
        } else {
            self.isr.clone()
        };
        let (isr, leader) = if self.leader == Some(b) || self.leader.is_none() {
            self.elect(isr, bug, rng)
        } else {
            (isr, self.leader)
        };
        self.set(isr, leader);
        true
    }

    fn unfence(&mut self, b: BrokerId, bug: Bug, rng: &mut Rng) {
        self.fenced.insert(b, false);
        self.version += 1;
        if self.leader.is_none() {
            let (isr, leader) = self.elect(self.isr.clone(), bug, rng);
            self.set(isr, leader);
        }
    }

    fn alter(&mut self, from: BrokerId, p: &IsrProposal) -> AlterResult {
        if self.leader != Some(from)
            || p.leader_epoch != self.leader_epoch
            || p.partition_epoch != self.partition_epoch
        {
            return AlterResult::Stale;
        }
        let mut sorted = p.new_isr.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != p.new_isr.len() || !p.new_isr.contains(&from) {
            return AlterResult::Ineligible;
        }
        if p.new_isr
            .iter()
            .any(|&b| !REPLICAS.contains(&b) || (b != from && !self.unfenced(b)))
        {
            return AlterResult::Ineligible;
        }
        let mut current = self.isr.clone();
        current.sort_unstable();
        if current != sorted {
            self.set(p.new_isr.clone(), self.leader);
        }
        AlterResult::Ok
    }
}

pub struct World {
    cfg: SimConfig,
    rng: Rng,
    step: u64,
    replicas: Vec<Replica>,
    controller: Controller,
    queue: Vec<Msg>,
    msg_seq: u64,
    /// Last delivery step on each replica's FIFO channel to the controller.
    controller_channel: BTreeMap<BrokerId, u64>,
    next_value: u64,
    /// offset -> value of every acknowledged record.
    acked: BTreeMap<i64, u64>,
    /// The highest high watermark any leader ever had: everything below is committed.
    max_hw: i64,
    /// The producer's metadata: which broker it sends to.
    producer_view: Option<BrokerId>,
    /// Crash detection scheduled by the nemesis: (step, broker, incarnation).
    detect: Option<(u64, BrokerId, u64)>,
    /// When the crashed replica restarts.
    restart_at: Option<(u64, BrokerId)>,
    // Fault intensity, chosen per seed.
    drop_pct: u64,
    max_delay: u64,
    /// Chance per step that a replica catches up with the metadata image.
    image_pct: u64,
    /// Steps before a leader gives up on an AlterPartition answer.
    alter_timeout: u64,
    faults: bool,
    producing: bool,
    stats: Stats,
    trace: Vec<String>,
}

type Check = Result<(), String>;

/// Records a trace line (built only when tracing).
macro_rules! trace {
    ($world:expr, $line:expr) => {
        if $world.cfg.trace {
            let line: String = $line;
            $world.trace_line(line);
        }
    };
}

impl World {
    pub fn new(cfg: SimConfig) -> World {
        let mut rng = Rng::new(cfg.seed);
        let drop_pct = rng.range(0, 12);
        let max_delay = rng.range(1, 6);
        let image_pct = rng.range(5, 50);
        let alter_timeout = rng.range(3, 20);
        let first = rng.pick(&REPLICAS).unwrap();
        let controller = Controller {
            leader: Some(first),
            leader_epoch: 0,
            partition_epoch: 0,
            isr: REPLICAS.to_vec(),
            fenced: REPLICAS.iter().map(|&b| (b, false)).collect(),
            version: 1,
        };
        let replicas = REPLICAS
            .iter()
            .map(|&id| Replica {
                id,
                alive: true,
                incarnation: 1,
                log: Vec::new(),
                cache: EpochCache::default(),
                hw: 0,
                reported: 0,
                image_version: 0,
                leader_epoch: UNDEFINED_EPOCH,
                role: Role::Idle,
            })
            .collect();
        World {
            cfg,
            rng,
            step: 0,
            replicas,
            controller,
            queue: Vec::new(),
            msg_seq: 0,
            controller_channel: BTreeMap::new(),
            next_value: 1,
            acked: BTreeMap::new(),
            max_hw: 0,
            producer_view: Some(first),
            detect: None,
            restart_at: None,
            drop_pct,
            max_delay,
            image_pct,
            alter_timeout,
            faults: true,
            producing: true,
            stats: Stats::default(),
            trace: Vec::new(),
        }
    }

    fn now_ms(&self) -> i64 {
        self.step as i64 * STEP_MS
    }

    fn trace_line(&mut self, line: String) {
        let line = format!("[{:>4}] {line}", self.step);
        self.trace.push(line);
    }

    fn idx(id: BrokerId) -> usize {
        (id - 1) as usize
    }

    fn config() -> LeaderConfig {
        LeaderConfig {
            replica_lag_time_max_ms: LAG_MS,
            min_insync_replicas: MIN_INSYNC,
        }
    }

    fn send(&mut self, from: Node, to: Node, body: Body) {
        if self.rng.pct(self.drop_pct) {
            trace!(self, format!("drop {from:?}->{to:?} {body:?}"));
            return;
        }
        self.msg_seq += 1;
        let mut deliver_at = self.step + 1 + self.rng.below(self.max_delay);
        let tiebreak;
        let from_incarnation = match from {
            Node::Replica(id) => self.replicas[Self::idx(id)].incarnation,
            Node::Controller => 0,
        };
        match (from, to) {
            (Node::Replica(id), Node::Controller) => {
                // One request at a time, in order, per broker (as over one connection).
                let last = self.controller_channel.entry(id).or_insert(0);
                deliver_at = deliver_at.max(*last);
                *last = deliver_at;
                tiebreak = self.msg_seq;
            }
            _ => tiebreak = self.rng.next_u64(),
        }
        self.queue.push(Msg {
            deliver_at,
            tiebreak,
            from,
            from_incarnation,
            to,
            body,
        });
    }

    /// Runs the whole simulation: faulty phase, then healing, checking invariants throughout.
    /// Returns the trace too (empty unless `cfg.trace`).
    pub fn run(mut self) -> (Result<Stats, Failure>, Vec<String>) {
        let result = self.run_inner();
        let trace = std::mem::take(&mut self.trace);
        let result = match result {
            Ok(()) => Ok(self.stats.clone()),
            Err(message) => Err(Failure {
                message: format!(
                    "seed {} ({:?}) step {}: {message}\n{}",
                    self.cfg.seed,
                    self.cfg.bug,
                    self.step,
                    self.describe()
                ),
            }),
        };
        (result, trace)
    }

    fn run_inner(&mut self) -> Check {
        for _ in 0..self.cfg.steps {
            self.tick()?;
        }
        // Heal. No new faults, no message loss. A replica that is down stays down at first
        // (its crash is still detected): the partition must then make progress without it,
        // its high watermark reaching its log end, unless the ISR is only that replica.
        self.faults = false;
        self.drop_pct = 0;
        self.max_delay = 1;
        if let Some((_, down)) = self.restart_at.take() {
            let started = self.step;
            loop {
                self.producing = self.step < started + 50;
                self.tick()?;
                if !self.producing && self.settled_without(down) {
                    break;
                }
                if self.step > started + self.cfg.heal_steps {
                    return Err(format!("no progress while {down} is down"));
                }
            }
            self.restart(down);
        }
        // Then, with everyone up and no produces, every replica must end up in the ISR with
        // the leader's whole log.
        self.producing = false;
        for _ in 0..self.cfg.heal_steps {
            self.tick()?;
            if self.converged() {
                return self.final_check();
            }
        }
        Err("did not converge after healing".into())
    }

    fn tick(&mut self) -> Check {
        self.step += 1;
        self.detect_crash();
        if self.faults {
            self.nemesis();
        }
        self.deliver()?;
        self.propagate_images()?;
        for id in REPLICAS {
            self.replica_tick(id)?;
        }
        if self.producing {
            self.produce()?;
        }
        self.check()
    }

    // ---- nemesis and controller ----

    /// The controller notices a crash when the broker's session expires.
    fn detect_crash(&mut self) {
        let bug = self.cfg.bug;
        if let Some((at, b, inc)) = self.detect {
            if self.step >= at {
                self.detect = None;
                let r = &self.replicas[Self::idx(b)];
                if !r.alive && r.incarnation == inc && self.controller.fence(b, bug, &mut self.rng)
                {
                    trace!(
                        self,
                        format!("controller fences {b}: {:?}", self.controller.image())
                    );
                    self.after_controller_change();
                }
            }
        }
    }

    fn nemesis(&mut self) {
        if let Some((at, b)) = self.restart_at {
            if self.step >= at {
                self.restart_at = None;
                self.restart(b);
            }
        } else if self.rng.pct(2) {
            // Crash one replica (the leader more often than not).
            let target = match self.controller.leader {
                Some(l) if self.rng.pct(60) => l,
                _ => self.rng.pick(&REPLICAS).unwrap(),
            };
            self.crash(target);
        }
        if self.rng.below(200) == 0 {
            // Move leadership to another ISR member (controlled shutdown / preferred election).
            let c = &self.controller;
            let others: Vec<BrokerId> = c
                .isr
                .iter()
                .copied()
                .filter(|&b| Some(b) != c.leader && c.unfenced(b))
                .collect();
            if let (Some(_), Some(b)) = (c.leader, self.rng.pick(&others)) {
                let isr = self.controller.isr.clone();
                self.controller.set(isr, Some(b));
                trace!(self, format!("controller moves leadership to {b}"));
                self.after_controller_change();
            }
        }
    }

    fn after_controller_change(&mut self) {
        self.stats.elections = self.controller.leader_epoch as u64;
        if self.rng.pct(50) {
            self.producer_view = self.controller.leader;
        }
    }

    fn crash(&mut self, b: BrokerId) {
        let step = self.step;
        let detect_in = self.rng.range(5, 60);
        let down_for = self.rng.range(10, 120);
        let r = &mut self.replicas[Self::idx(b)];
        r.alive = false;
        r.role = Role::Idle;
        self.detect = Some((step + detect_in, b, r.incarnation));
        self.restart_at = Some((step + down_for, b));
        self.stats.crashes += 1;
        trace!(self, format!("crash {b}"));
    }

    fn restart(&mut self, b: BrokerId) {
        let bug = self.cfg.bug;
        let lose_tail = self.rng.pct(50);
        let max_hw = self.max_hw;
        let i = Self::idx(b);
        let leo = self.replicas[i].leo();
        if lose_tail {
            let keep_from = max_hw.max(self.replicas[i].reported).min(leo);
            let cut = keep_from + self.rng.below((leo - keep_from + 1) as u64) as i64;
            self.replicas[i].truncate_to(cut);
            trace!(self, format!("restart {b} losing its tail {cut}..{leo}"));
        } else {
            trace!(self, format!("restart {b} with its log intact (LEO {leo})"));
        }
        let r = &mut self.replicas[i];
        r.alive = true;
        r.incarnation += 1;
        r.image_version = 0;
        r.leader_epoch = UNDEFINED_EPOCH;
        r.role = Role::Idle;
        // Registering a new incarnation fences the old one first (moving its leadership and
        // ISR membership away), then unfences.
        if self.controller.fence(b, bug, &mut self.rng) {
            trace!(self, format!("controller fences {b} on re-registration"));
        }
        self.controller.unfence(b, bug, &mut self.rng);
        trace!(
            self,
            format!("controller unfences {b}: {:?}", self.controller.image())
        );
        self.after_controller_change();
    }

    fn propagate_images(&mut self) -> Check {
        for id in REPLICAS {
            let i = Self::idx(id);
            if !self.replicas[i].alive || self.replicas[i].image_version >= self.controller.version
            {
                continue;
            }
            if self.rng.pct(self.image_pct) {
                let image = self.controller.image();
                self.apply_image(id, image)?;
            }
        }
        if self.rng.pct(20) {
            self.producer_view = self.controller.leader;
        }
        Ok(())
    }

    fn apply_image(&mut self, id: BrokerId, image: Image) -> Check {
        let now = self.now_ms();
        let i = Self::idx(id);
        let r = &mut self.replicas[i];
        r.image_version = image.version;
        let same_epoch = r.leader_epoch == image.leader_epoch;
        if image.leader_epoch < r.leader_epoch {
            return Err(format!("replica {id} saw the leader epoch go back"));
        }
        r.leader_epoch = image.leader_epoch;
        if image.leader == Some(id) {
            if let (Role::Leader(ctx), true) = (&mut r.role, same_epoch) {
                ctx.state.update_partition(
                    image.partition_epoch,
                    REPLICAS.to_vec(),
                    image.isr,
                    now,
                );
                if ctx.state.in_flight().is_none() {
                    ctx.alter = None;
                }
            } else {
                let leo = r.leo();
                if self.cfg.bug != Bug::NoEpochStartOnElection {
                    r.cache.assign(image.leader_epoch, leo);
                }
                let state = LeaderState::new(
                    id,
                    image.leader_epoch,
                    image.partition_epoch,
                    REPLICAS.to_vec(),
                    image.isr,
                    leo,
                    r.hw,
                    now,
                    Self::config(),
                );
                let hw = state.high_watermark();
                r.role = Role::Leader(Box::new(LeaderCtx {
                    state,
                    pending: Vec::new(),
                    alter: None,
                    last_hw: hw,
                }));
                trace!(self, {
                    format!(
                        "{id} becomes leader, epoch {} start {leo} hw {hw}",
                        image.leader_epoch
                    )
                });
            }
            self.leader_progress(id)
        } else {
            let follows = match &r.role {
                Role::Follower(f) => Some(f.leader),
                _ => None,
            };
            if !same_epoch || follows != image.leader {
                r.role = match image.leader {
                    Some(leader) => Role::Follower(FollowerCtx {
                        leader,
                        outstanding: None,
                    }),
                    None => Role::Idle,
                };
                trace!(self, {
                    format!(
                        "{id} follows {:?} in epoch {}",
                        image.leader, image.leader_epoch
                    )
                });
            }
            Ok(())
        }
    }

    // ---- replicas ----

    fn replica_tick(&mut self, id: BrokerId) -> Check {
        let now = self.now_ms();
        let step = self.step;
        let i = Self::idx(id);
        if !self.replicas[i].alive {
            return Ok(());
        }
        let mut to_send = None;
        match &mut self.replicas[i].role {
            Role::Idle => {}
            Role::Follower(f) => {
                let due = f
                    .outstanding
                    .is_none_or(|(_, sent)| step >= sent + FETCH_TIMEOUT);
                if due {
                    self.msg_seq += 1;
                    let seq = self.msg_seq;
                    f.outstanding = Some((seq, step));
                    let leader = f.leader;
                    let r = &mut self.replicas[i];
                    r.reported = r.reported.max(r.leo());
                    to_send = Some((
                        Node::Replica(leader),
                        Body::Fetch {
                            leader_epoch: r.leader_epoch,
                            seq,
                            fetch_offset: r.leo(),
                            last_fetched_epoch: r.cache.latest_epoch(),
                        },
                    ));
                }
            }
            Role::Leader(ctx) => {
                if let Some((_, sent)) = ctx.alter {
                    if step >= sent + self.alter_timeout {
                        ctx.state.isr_change_failed();
                        ctx.alter = None;
                        self.stats.alters_failed += 1;
                    }
                }
                if ctx.state.in_flight().is_none() {
                    ctx.alter = None;
                    if let Some(proposal) = ctx.state.isr_change(now) {
                        self.msg_seq += 1;
                        let id = self.msg_seq;
                        ctx.alter = Some((id, step));
                        to_send = Some((Node::Controller, Body::Alter { id, proposal }));
                    }
                }
                ctx.pending.retain(|&(_, _, deadline)| deadline > step);
            }
        }
        if let Some((to, body)) = to_send {
            trace!(self, format!("{id} sends {body:?}"));
            self.send(Node::Replica(id), to, body);
        }
        self.leader_progress(id)
    }

    /// After anything that may move a leader's high watermark: publish it and settle the
    /// produces waiting on it.
    fn leader_progress(&mut self, id: BrokerId) -> Check {
        let i = Self::idx(id);
        let r = &mut self.replicas[i];
        let Role::Leader(ctx) = &mut r.role else {
            return Ok(());
        };
        let hw = ctx.state.high_watermark();
        r.hw = hw;
        self.max_hw = self.max_hw.max(hw);
        let mut done = Vec::new();
        ctx.pending
            .retain(|&(offset, value, _)| match ctx.state.ack_status(offset) {
                AckStatus::Done => {
                    done.push((offset, value));
                    false
                }
                AckStatus::NotEnoughReplicasAfterAppend => false,
                AckStatus::Waiting => true,
            });
        for (offset, value) in done {
            self.ack(offset, value)?;
        }
        Ok(())
    }

    fn ack(&mut self, offset: i64, value: u64) -> Check {
        trace!(self, format!("ack {value} at {offset}"));
        if let Some(&other) = self.acked.get(&offset) {
            if other != value {
                return Err(format!(
                    "two acknowledged values at offset {offset}: {other} and {value}"
                ));
            }
        }
        self.acked.insert(offset, value);
        self.stats.acked = self.acked.len();
        Ok(())
    }

    fn produce(&mut self) -> Check {
        if !self.rng.pct(50) {
            return Ok(());
        }
        let Some(target) = self.producer_view else {
            return Ok(());
        };
        let bug = self.cfg.bug;
        let step = self.step;
        let value = self.next_value;
        self.next_value += 1;
        let r = &mut self.replicas[Self::idx(target)];
        if !r.alive {
            return Ok(());
        }
        let Role::Leader(ctx) = &mut r.role else {
            return Ok(());
        };
        if let AppendCheck::NotEnoughReplicas { .. } = ctx.state.check_append() {
            return Ok(());
        }
        let rec = Rec {
            offset: r.log.len() as i64,
            epoch: ctx.state.leader_epoch(),
            value,
        };
        r.log.push(rec);
        r.cache.assign(rec.epoch, rec.offset);
        let leo = r.log.len() as i64;
        ctx.state.on_leader_append(leo);
        ctx.pending
            .push((rec.offset, value, step + PRODUCE_TIMEOUT));
        if rec.epoch < self.controller.leader_epoch {
            self.stats.stale_leader_appends += 1;
        }
        trace!(self, format!("{target} appends {value} at {}", rec.offset));
        if bug == Bug::AckOnLeaderAppend {
            self.ack(rec.offset, value)?;
        }
        self.leader_progress(target)
    }

    fn deliver(&mut self) -> Check {
        let step = self.step;
        let mut due: Vec<Msg> = Vec::new();
        let mut i = 0;
        while i < self.queue.len() {
            if self.queue[i].deliver_at <= step {
                due.push(self.queue.swap_remove(i));
            } else {
                i += 1;
            }
        }
        due.sort_by_key(|m| (m.deliver_at, m.tiebreak));
        for msg in due {
            if let Node::Replica(from) = msg.from {
                if self.replicas[Self::idx(from)].incarnation != msg.from_incarnation {
                    continue;
                }
            }
            match msg.to {
                Node::Controller => self.controller_receive(msg),
                Node::Replica(to) => {
                    if !self.replicas[Self::idx(to)].alive {
                        continue;
                    }
                    self.replica_receive(to, msg)?;
                }
            }
        }
        Ok(())
    }

    fn controller_receive(&mut self, msg: Msg) {
        let (Node::Replica(from), Body::Alter { id, proposal }) = (msg.from, &msg.body) else {
            return;
        };
        let before = self.controller.partition_epoch;
        let result = self.controller.alter(from, proposal);
        if self.controller.partition_epoch != before {
            self.stats.isr_changes += 1;
        }
        trace!(
            self,
            format!("controller: alter {proposal:?} from {from}: {result:?}")
        );
        self.send(
            Node::Controller,
            Node::Replica(from),
            Body::AlterResponse { id: *id, result },
        );
    }

    fn replica_receive(&mut self, to: BrokerId, msg: Msg) -> Check {
        match msg.body {
            Body::Fetch {
                leader_epoch,
                seq,
                fetch_offset,
                last_fetched_epoch,
            } => {
                let Node::Replica(from) = msg.from else {
                    return Ok(());
                };
                self.leader_serve_fetch(
                    to,
                    from,
                    leader_epoch,
                    seq,
                    fetch_offset,
                    last_fetched_epoch,
                )
            }
            Body::FetchResponse {
                leader_epoch,
                seq,
                answer,
                high_watermark,
            } => {
                let Node::Replica(from) = msg.from else {
                    return Ok(());
                };
                self.follower_handle(to, from, leader_epoch, seq, answer, high_watermark)
            }
            Body::AlterResponse { id, result } => {
                let r = &mut self.replicas[Self::idx(to)];
                let Role::Leader(ctx) = &mut r.role else {
                    return Ok(());
                };
                if ctx.alter.map(|a| a.0) != Some(id) || ctx.state.in_flight().is_none() {
                    return Ok(());
                }
                match result {
                    // Committed: the image will show it.
                    AlterResult::Ok => {}
                    AlterResult::Stale => {
                        ctx.state.isr_change_failed();
                        ctx.alter = None;
                        self.stats.alters_failed += 1;
                    }
                    AlterResult::Ineligible => {
                        ctx.state.isr_change_rejected();
                        ctx.alter = None;
                        self.stats.alters_rejected += 1;
                    }
                }
                self.leader_progress(to)
            }
            Body::Alter { .. } => Ok(()),
        }
    }

    fn leader_serve_fetch(
        &mut self,
        leader: BrokerId,
        from: BrokerId,
        leader_epoch: i32,
        seq: u64,
        fetch_offset: i64,
        last_fetched_epoch: i32,
    ) -> Check {
        let now = self.now_ms();
        let bug = self.cfg.bug;
        let batch = self.rng.range(1, 5) as i64;
        let r = &mut self.replicas[Self::idx(leader)];
        let leo = r.leo();
        let (answer, hw) = match &mut r.role {
            Role::Leader(ctx) if ctx.state.leader_epoch() == leader_epoch => {
                let end = r.cache.end_offset_for(last_fetched_epoch, leo);
                if let Some(d) = diverging_epoch(fetch_offset, last_fetched_epoch, end) {
                    if bug == Bug::CountDivergingFetches {
                        ctx.state
                            .on_follower_fetch(from, fetch_offset.min(leo), leo, now);
                    }
                    (FetchAnswer::Diverging(d), ctx.state.high_watermark())
                } else if fetch_offset > leo {
                    return Err(format!(
                        "fetch from {from} at {fetch_offset} beyond the leader's end {leo} \
                         passed the divergence check"
                    ));
                } else {
                    ctx.state.on_follower_fetch(from, fetch_offset, leo, now);
                    let end = (fetch_offset + batch).min(leo);
                    let recs = r.log[fetch_offset as usize..end as usize].to_vec();
                    (FetchAnswer::Records(recs), ctx.state.high_watermark())
                }
            }
            Role::Leader(_) => (FetchAnswer::Error("leader epoch mismatch"), -1),
            _ => (FetchAnswer::Error("not leader"), -1),
        };
        self.leader_progress(leader)?;
        self.send(
            Node::Replica(leader),
            Node::Replica(from),
            Body::FetchResponse {
                leader_epoch,
                seq,
                answer,
                high_watermark: hw,
            },
        );
        Ok(())
    }

    fn follower_handle(
        &mut self,
        to: BrokerId,
        from: BrokerId,
        leader_epoch: i32,
        seq: u64,
        answer: FetchAnswer,
        leader_hw: i64,
    ) -> Check {
        let bug = self.cfg.bug;
        let r = &mut self.replicas[Self::idx(to)];
        let Role::Follower(f) = &mut r.role else {
            return Ok(());
        };
        if f.leader != from
            || f.outstanding.map(|o| o.0) != Some(seq)
            || r.leader_epoch != leader_epoch
        {
            return Ok(());
        }
        f.outstanding = None;
        match answer {
            FetchAnswer::Error(e) => {
                trace!(self, format!("{to} fetch error from {from}: {e}"));
            }
            FetchAnswer::Diverging(d) => {
                if bug == Bug::IgnoreDivergence {
                    r.hw = leader_hw.min(r.leo());
                    return Ok(());
                }
                let leo = r.leo();
                let local = if d.epoch == UNDEFINED_EPOCH || d.end_offset == UNDEFINED_OFFSET {
                    EpochEndOffset::UNDEFINED
                } else {
                    r.cache.end_offset_for(d.epoch, leo)
                };
                let mut t = truncation(d, local, leo, r.hw);
                if bug == Bug::TruncateToLeaderEnd && d.end_offset != UNDEFINED_OFFSET {
                    t.offset = d.end_offset.min(leo);
                    t.complete = true;
                }
                r.truncate_to(t.offset);
                self.stats.truncations += 1;
                if !t.complete {
                    self.stats.incomplete_truncations += 1;
                }
                trace!(self, {
                    format!(
                        "{to} truncates to {} (diverging {d:?}, local {local:?}, leo {leo}, complete {})",
                        t.offset, t.complete
                    )
                });
            }
            FetchAnswer::Records(recs) => {
                for rec in recs {
                    if rec.offset != r.leo() {
                        return Err(format!(
                            "{to} got {rec:?} from {from} at log end {}",
                            r.leo()
                        ));
                    }
                    r.append(rec);
                }
                r.hw = leader_hw.min(r.leo());
            }
        }
        Ok(())
    }

    // ---- invariants ----

    fn check(&mut self) -> Check {
        // A leader's high watermark never decreases during its leadership, never passes its
        // log end, and is what the replica publishes.
        for r in &mut self.replicas {
            if let Role::Leader(ctx) = &mut r.role {
                let hw = ctx.state.high_watermark();
                if hw < ctx.last_hw {
                    return Err(format!(
                        "leader {} high watermark went back from {} to {hw}",
                        r.id, ctx.last_hw
                    ));
                }
                if hw > r.log.len() as i64 || hw != r.hw {
                    return Err(format!(
                        "leader {} high watermark {hw} vs log end {}",
                        r.id,
                        r.log.len()
                    ));
                }
                ctx.last_hw = hw;
            }
            if r.hw > r.log.len() as i64 {
                return Err(format!(
                    "replica {} high watermark {} above its log end",
                    r.id, r.hw
                ));
            }
            if r.hw > self.max_hw {
                return Err(format!(
                    "replica {} high watermark {} above any leader's ({})",
                    r.id, r.hw, self.max_hw
                ));
            }
        }
        // Every acknowledged record is at its offset in the log of every ISR member.
        for &m in &self.controller.isr {
            let log = &self.replicas[Self::idx(m)].log;
            for (&offset, &value) in &self.acked {
                match log.get(offset as usize) {
                    Some(rec) if rec.value == value => {}
                    other => {
                        return Err(format!(
                            "acknowledged {value} at {offset} is not in ISR member {m}'s log \
                             (found {other:?})"
                        ))
                    }
                }
            }
        }
        // Logs agree below their high watermarks.
        for a in 0..self.replicas.len() {
            for b in a + 1..self.replicas.len() {
                let (ra, rb) = (&self.replicas[a], &self.replicas[b]);
                let upto = ra.hw.min(rb.hw).max(0) as usize;
                for o in 0..upto {
                    if ra.log[o] != rb.log[o] {
                        return Err(format!(
                            "replicas {} and {} disagree at {o} below their high watermarks: {:?} vs {:?}",
                            ra.id, rb.id, ra.log[o], rb.log[o]
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// With `down` crashed: the partition is offline because `down` is its only ISR member, or
    /// its leader has brought the high watermark to the log end and answered every produce.
    fn settled_without(&self, down: BrokerId) -> bool {
        let c = &self.controller;
        match c.leader {
            None => c.isr == [down],
            Some(l) => {
                let leader = &self.replicas[Self::idx(l)];
                match &leader.role {
                    Role::Leader(ctx) => {
                        ctx.state.leader_epoch() == c.leader_epoch
                            && ctx.state.high_watermark() == leader.leo()
                            && ctx.pending.is_empty()
                    }
                    _ => false,
                }
            }
        }
    }

    fn converged(&self) -> bool {
        let Some(l) = self.controller.leader else {
            return false;
        };
        let leader = &self.replicas[Self::idx(l)];
        let Role::Leader(ctx) = &leader.role else {
            return false;
        };
        let leo = leader.leo();
        self.controller.isr.len() == REPLICAS.len()
            && ctx.state.isr().len() == REPLICAS.len()
            && ctx.state.high_watermark() == leo
            && self
                .replicas
                .iter()
                .all(|r| r.alive && r.log == leader.log && r.hw == leo)
    }

    fn final_check(&mut self) -> Check {
        let l = self.controller.leader.expect("converged");
        let log = &self.replicas[Self::idx(l)].log;
        for (&offset, &value) in &self.acked {
            if log.get(offset as usize).map(|r| r.value) != Some(value) {
                return Err(format!(
                    "acknowledged {value} at {offset} is missing from the final leader {l}"
                ));
            }
        }
        self.stats.final_leo = log.len() as i64;
        Ok(())
    }

    fn describe(&self) -> String {
        let mut s = String::new();
        let c = &self.controller;
        let _ = writeln!(
            s,
            "controller: leader {:?} epoch {} partition epoch {} isr {:?} fenced {:?}",
            c.leader, c.leader_epoch, c.partition_epoch, c.isr, c.fenced
        );
        for r in &self.replicas {
            let role = match &r.role {
                Role::Idle => "idle".to_string(),
                Role::Follower(f) => format!("follower of {}", f.leader),
                Role::Leader(ctx) => format!(
                    "leader isr {:?} maximal {:?} hw {}",
                    ctx.state.isr(),
                    ctx.state.maximal_isr(),
                    ctx.state.high_watermark()
                ),
            };
            let tail: Vec<(i64, i32, u64)> = r
                .log
                .iter()
                .rev()
                .take(12)
                .rev()
                .map(|x| (x.offset, x.epoch, x.value))
                .collect();
            let _ = writeln!(
                s,
                "replica {} alive {} epoch {} {role}: leo {} hw {} cache {:?} tail {:?}",
                r.id,
                r.alive,
                r.leader_epoch,
                r.leo(),
                r.hw,
                r.cache.entries,
                tail
            );
        }
        s
    }
}

/// Runs one seed.
pub fn run(cfg: SimConfig) -> Result<Stats, Failure> {
    World::new(cfg).run().0
}

/// Runs one seed with its trace.
pub fn run_traced(cfg: SimConfig) -> (Result<Stats, Failure>, Vec<String>) {
    World::new(SimConfig { trace: true, ..cfg }).run()
}
