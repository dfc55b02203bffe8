//! The classic group protocol as an I/O-free state machine.
//!
//! Every operation takes `now_ms`; nothing here sleeps, spawns or touches a socket. Responses
//! that Kafka delays (JoinGroup until the rebalance completes, SyncGroup until the leader sends
//! the assignment) are parked under a caller-chosen [`WaiterId`] and come out later as
//! [`Completion`]s; records to persist in `__consumer_offsets` come out as [`Persist`]. The
//! runtime drains both with [`Groups::take_effects`] after each call, writes the records, then
//! delivers the completions.
//!
//! State transitions follow Kafka's `GroupMetadata`: Empty -> PreparingRebalance ->
//! CompletingRebalance -> Stable, and back to PreparingRebalance when membership or protocols
//! change. Dead groups are removed from the map rather than kept.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use bytes::Bytes;
use indexmap::IndexMap;
use kafka_protocol::error::ResponseError;

use super::records::{self, GroupValue, MemberValue, OffsetValue};

pub type WaiterId = u64;

/// Kafka's `offset.metadata.max.bytes`.
pub const MAX_OFFSET_METADATA_BYTES: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The name Kafka's ListGroups / DescribeGroups use.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// The group settings come from the broker configuration, where they are read.
pub use super::config::GroupConfig;

#[derive(Debug, Clone)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    join_waiter: Option<WaiterId>,
    sync_waiter: Option<WaiterId>,
    last_heartbeat_ms: i64,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
    fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|(n, _)| n == protocol)
    }
    /// A member blocked in JoinGroup or SyncGroup is not expected to heartbeat.
    fn alive(&self, now_ms: i64) -> bool {
        self.join_waiter.is_some()
            || self.sync_waiter.is_some()
            || now_ms
                < self
                    .last_heartbeat_ms
                    .saturating_add(self.session_timeout_ms as i64)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
}

#[derive(Debug)]
pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub generation: i32,
    pub leader: Option<String>,
    /// In join order: the first joiner of an empty group leads.
    pub members: IndexMap<String, Member>,
    /// group.instance.id -> member id (KIP-345).
    static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with the time they expire.
    pending_members: HashMap<String, i64>,
    /// When the current join phase ends even if not everyone rejoined.
    join_deadline: i64,
    /// `Some(limit)` while the initial rebalance delay of an empty group runs.
    initial_delay_limit: Option<i64>,
    pub state_timestamp: i64,
    pub offsets: BTreeMap<(String, i32), CommittedOffset>,
}

impl Group {
    fn new(id: &str, now_ms: i64) -> Group {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            protocol_type: None,
            protocol: None,
            generation: 0,
            leader: None,
            members: IndexMap::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            join_deadline: 0,
            initial_delay_limit: None,
            state_timestamp: now_ms,
            offsets: BTreeMap::new(),
        }
    }

    fn transition(&mut self, to: GroupState, now_ms: i64) {
        self.state = to;
        self.state_timestamp = now_ms;
    }

    /// Protocols every member supports, in the first member's order of preference.
    fn candidates(&self) -> Vec<String> {
        let Some(first) = self.members.values().next() else {
            return Vec::new();
        };
        first
            .protocols
            .iter()
            .map(|(n, _)| n.clone())
            .filter(|p| self.members.values().all(|m| m.supports(p)))
            .collect()
    }

    /// Kafka's `selectProtocol`: each member votes for its most preferred candidate.
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidates();
        let mut votes: Vec<(String, usize)> = candidates.iter().map(|c| (c.clone(), 0)).collect();
        for m in self.members.values() {
            if let Some((n, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(n)) {
                if let Some(v) = votes.iter_mut().find(|(c, _)| c == n) {
                    v.1 += 1;
                }
            }
        }
        // Ties go to the earlier candidate (the first member's preference).
        let mut best: Option<(String, usize)> = None;
        for (c, n) in votes {
            if best.as_ref().is_none_or(|(_, b)| n > *b) {
                best = Some((c, n));
            }
        }
        best.map(|(c, _)| c)
    }

    /// Whether a joining member with these protocols can join (Kafka's `supportsProtocols`).
    fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        let candidates = self.candidates();
        protocols.iter().any(|(n, _)| candidates.contains(n))
    }

    fn all_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.join_waiter.is_some())
    }

    fn max_rebalance_timeout(&self) -> i64 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms as i64)
            .max()
            .unwrap_or(0)
    }

    fn is_fenced(&self, member_id: &str, instance_id: Option<&str>) -> bool {
        match instance_id.and_then(|i| self.static_members.get(i)) {
            Some(current) => current != member_id,
            None => false,
        }
    }

    pub fn to_value(&self) -> GroupValue {
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            current_state_timestamp: self.state_timestamp,
            members: self
                .members
                .values()
                .map(|m| MemberValue {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: self
                        .protocol
                        .as_deref()
                        .map(|p| m.metadata_for(p))
                        .unwrap_or_default(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResult {
    pub error: i16,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Filled for the leader only.
    pub members: Vec<JoinedMember>,
    /// KIP-814: set when a static leader replaced itself in a stable group without changes.
    /// `members` then lists the whole group for JoinGroup v9+, which answer with SkipAssignment
    /// so the leader keeps the group's metadata without computing an assignment. Older versions
    /// cannot skip it: they must get no members and this id (the replaced member's) as leader,
    /// so the client does not act as leader and send an assignment the stable group would
    /// ignore (Kafka does the same).
    pub skip_assignment_old_leader: Option<String>,
}

impl JoinResult {
    pub fn error(e: ResponseError, member_id: &str) -> JoinResult {
        JoinResult {
            error: e.code(),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
            skip_assignment_old_leader: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResult {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    pub fn error(e: ResponseError) -> SyncResult {
        SyncResult {
            error: e.code(),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    Join(WaiterId, JoinResult),
    Sync(WaiterId, SyncResult),
}

/// A record for `__consumer_offsets`, already in Kafka's format; `value: None` is a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Persist {
    pub group: String,
    pub key: Bytes,
    pub value: Option<Bytes>,
}

#[derive(Debug, Default)]
pub struct Effects {
    pub persist: Vec<Persist>,
    pub completions: Vec<Completion>,
}

#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub group_id: String,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new dynamic member must first obtain its id (MEMBER_ID_REQUIRED).
    pub require_known_member_id: bool,
}

/// What JoinGroup / SyncGroup answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<T> {
    Now(T),
    /// The answer comes later as a [`Completion`] with the caller's waiter id.
    Pending,
}

#[derive(Debug, Clone)]
pub struct OffsetCommit {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

/// Summary for DescribeGroups.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

#[derive(Debug, Clone)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// Every group this coordinator owns.
#[derive(Debug, Default)]
pub struct Groups {
    pub config: GroupConfig,
    groups: HashMap<String, Group>,
    effects: Effects,
}

/// The longest string `__consumer_offsets` records hold (an INT16 length, as in Kafka's format).
/// Longer group ids and member fields are refused, never truncated: a truncated key would name
/// another group.
pub const MAX_RECORD_STRING: usize = i16::MAX as usize;
/// Room a generated member id adds after the client id (`-` and a UUID).
const MEMBER_ID_SUFFIX: usize = 37;

/// Whether the strings a JoinGroup stores fit the group's record.
fn join_fits_records(req: &JoinRequest) -> bool {
    let fits = |s: &str| s.len() <= MAX_RECORD_STRING;
    req.client_id.len() + MEMBER_ID_SUFFIX <= MAX_RECORD_STRING
        && fits(&req.member_id)
        && req
            .group_instance_id
            .as_deref()
            .is_none_or(|i| i.len() + MEMBER_ID_SUFFIX <= MAX_RECORD_STRING)
        && fits(&req.client_host)
        && fits(&req.protocol_type)
        && req.protocols.iter().all(|(name, _)| fits(name))
}

fn new_member_id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

impl Groups {
    pub fn new(config: GroupConfig) -> Groups {
        Groups {
            config,
            groups: HashMap::new(),
            effects: Effects::default(),
        }
    }

    pub fn take_effects(&mut self) -> Effects {
        std::mem::take(&mut self.effects)
    }

    pub fn get(&self, group_id: &str) -> Option<&Group> {
        self.groups.get(group_id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Group> {
        self.groups.values()
    }

    fn complete_join(&mut self, waiter: WaiterId, r: JoinResult) {
        self.effects.completions.push(Completion::Join(waiter, r));
    }

    fn complete_sync(&mut self, waiter: WaiterId, r: SyncResult) {
        self.effects.completions.push(Completion::Sync(waiter, r));
    }

    fn persist_group(&mut self, group_id: &str) {
        if let Some(g) = self.groups.get(group_id) {
            let value = records::group_value(&g.to_value());
            self.effects.persist.push(Persist {
                group: group_id.to_string(),
                key: records::group_key(group_id),
                value: Some(value),
            });
        }
    }

    // ---- JoinGroup ----

    pub fn join(&mut self, req: JoinRequest, waiter: WaiterId, now_ms: i64) -> Outcome<JoinResult> {
        match self.join_inner(req, waiter, now_ms) {
            Ok(o) => o,
            Err((e, member_id)) => Outcome::Now(JoinResult::error(e, &member_id)),
        }
    }

    fn join_inner(
        &mut self,
        req: JoinRequest,
        waiter: WaiterId,
        now_ms: i64,
    ) -> Result<Outcome<JoinResult>, (ResponseError, String)> {
        let err = |e: ResponseError| (e, req.member_id.clone());
        if req.group_id.is_empty() || req.group_id.len() > MAX_RECORD_STRING {
            return Err(err(ResponseError::InvalidGroupId));
        }
        if !join_fits_records(&req) {
            return Err(err(ResponseError::InvalidRequest));
        }
        if req.session_timeout_ms < self.config.min_session_timeout_ms
            || req.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return Err(err(ResponseError::InvalidSessionTimeout));
        }
        let group_id = req.group_id.clone();
        let g = self
            .groups
            .entry(group_id.clone())
            .or_insert_with(|| Group::new(&group_id, now_ms));
        if !g.supports_protocols(&req.protocol_type, &req.protocols) {
            let empty = g.members.is_empty() && g.offsets.is_empty() && g.generation == 0;
            if empty {
                self.groups.remove(&group_id);
            }
            return Err(err(ResponseError::InconsistentGroupProtocol));
        }

        if req.member_id.is_empty() {
            if let Some(instance) = req.group_instance_id.clone() {
                if let Some(old_id) = g.static_members.get(&instance).cloned() {
                    return Ok(self.replace_static_member(req, &instance, &old_id, waiter, now_ms));
                }
            }
            // A new member of a full group is refused (an existing static member's new
            // incarnation above replaces it and takes no new place).
            if g.members.len() + g.pending_members.len() >= self.config.max_size {
                return Err(err(ResponseError::GroupMaxSizeReached));
            }
            if let Some(instance) = req.group_instance_id.clone() {
                let id = new_member_id(&instance);
                return Ok(self.add_member(req, id, waiter, now_ms));
            }
            let id = new_member_id(&req.client_id);
            if req.require_known_member_id {
                let deadline = now_ms + req.session_timeout_ms as i64;
                g.pending_members.insert(id.clone(), deadline);
                return Err((ResponseError::MemberIdRequired, id));
            }
            return Ok(self.add_member(req, id, waiter, now_ms));
        }

        // A known member id.
        if g.pending_members.remove(&req.member_id).is_some() {
            let id = req.member_id.clone();
            return Ok(self.add_member(req, id, waiter, now_ms));
        }
        if g.is_fenced(&req.member_id, req.group_instance_id.as_deref()) {
            return Err(err(ResponseError::FencedInstanceId));
        }
        let Some(member) = g.members.get_mut(&req.member_id) else {
            return Err(err(ResponseError::UnknownMemberId));
        };
        let changed = member.protocols != req.protocols;
        member.protocols = req.protocols.clone();
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.client_id = req.client_id.clone();
        member.last_heartbeat_ms = now_ms;
        let is_leader = g.leader.as_deref() == Some(req.member_id.as_str());
        match g.state {
            GroupState::PreparingRebalance => {
                self.park_join(&group_id, &req.member_id, waiter);
                self.try_complete_join(&group_id, now_ms);
                Ok(Outcome::Pending)
            }
            GroupState::CompletingRebalance if !changed => {
                // The member lost its JoinGroup response: send it again.
                Ok(Outcome::Now(self.join_result_for(
                    &group_id,
                    &req.member_id,
                    is_leader,
                )))
            }
            GroupState::Stable if !changed && !is_leader => Ok(Outcome::Now(self.join_result_for(
                &group_id,
                &req.member_id,
                false,
            ))),
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.prepare_rebalance(&group_id, now_ms);
                self.park_join(&group_id, &req.member_id, waiter);
                self.try_complete_join(&group_id, now_ms);
                Ok(Outcome::Pending)
            }
            GroupState::Empty | GroupState::Dead => Err(err(ResponseError::UnknownMemberId)),
        }
    }

    fn park_join(&mut self, group_id: &str, member_id: &str, waiter: WaiterId) {
        let old = self
            .groups
            .get_mut(group_id)
            .and_then(|g| g.members.get_mut(member_id))
            .and_then(|m| m.join_waiter.replace(waiter));
        if let Some(old) = old {
            // A second JoinGroup from the same member supersedes the first.
            self.complete_join(
                old,
                JoinResult::error(ResponseError::UnknownMemberId, member_id),
            );
        }
    }

    fn join_result_for(&self, group_id: &str, member_id: &str, with_members: bool) -> JoinResult {
        let g = &self.groups[group_id];
        let protocol = g.protocol.clone().unwrap_or_default();
        JoinResult {
            error: 0,
            generation_id: g.generation,
            protocol_type: g.protocol_type.clone(),
            protocol_name: g.protocol.clone(),
            leader: g.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members: if with_members {
                g.members
                    .values()
                    .map(|m| JoinedMember {
                        member_id: m.id.clone(),
                        group_instance_id: m.instance_id.clone(),
                        metadata: m.metadata_for(&protocol),
                    })
                    .collect()
            } else {
                Vec::new()
            },
            skip_assignment_old_leader: None,
        }
    }

    fn add_member(
        &mut self,
        req: JoinRequest,
        id: String,
        waiter: WaiterId,
        now_ms: i64,
    ) -> Outcome<JoinResult> {
        let group_id = req.group_id.clone();
        let g = self.groups.get_mut(&group_id).expect("group exists");
        if g.members.is_empty() {
            g.protocol_type = Some(req.protocol_type.clone());
        }
        if let Some(i) = &req.group_instance_id {
            g.static_members.insert(i.clone(), id.clone());
        }
        g.members.insert(
            id.clone(),
            Member {
                id: id.clone(),
                instance_id: req.group_instance_id.clone(),
                client_id: req.client_id,
                client_host: req.client_host,
                session_timeout_ms: req.session_timeout_ms,
                rebalance_timeout_ms: req.rebalance_timeout_ms,
                protocol_type: req.protocol_type,
                protocols: req.protocols,
                assignment: Bytes::new(),
                join_waiter: Some(waiter),
                sync_waiter: None,
                last_heartbeat_ms: now_ms,
            },
        );
        if g.leader.is_none() {
            g.leader = Some(id.clone());
        }
        if g.state == GroupState::PreparingRebalance {
            if let Some(limit) = g.initial_delay_limit {
                // Kafka's InitialDelayedJoin: every newcomer buys another delay, up to the limit.
                g.join_deadline = (now_ms + self.config.initial_rebalance_delay_ms).min(limit);
            }
        } else {
            self.prepare_rebalance(&group_id, now_ms);
        }
        self.try_complete_join(&group_id, now_ms);
        Outcome::Pending
    }

    fn replace_static_member(
        &mut self,
        req: JoinRequest,
        instance: &str,
        old_id: &str,
        waiter: WaiterId,
        now_ms: i64,
    ) -> Outcome<JoinResult> {
        let group_id = req.group_id.clone();
        let new_id = new_member_id(instance);
        let g = self.groups.get_mut(&group_id).expect("group exists");
        let Some(mut member) = g.members.shift_remove(old_id) else {
            // The mapping outlived its member; treat as a new static member.
            g.static_members.remove(instance);
            return self.add_member(req, new_id, waiter, now_ms);
        };
        let old_join = member.join_waiter.take();
        let old_sync = member.sync_waiter.take();
        let unchanged = member.protocols == req.protocols;
        member.id = new_id.clone();
        member.protocols = req.protocols.clone();
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.client_id = req.client_id.clone();
        member.client_host = req.client_host.clone();
        member.last_heartbeat_ms = now_ms;
        g.members.insert(new_id.clone(), member);
        g.static_members
            .insert(instance.to_string(), new_id.clone());
        let was_leader = g.leader.as_deref() == Some(old_id);
        if was_leader {
            g.leader = Some(new_id.clone());
        }
        let state = g.state;
        if let Some(w) = old_join {
            self.complete_join(
                w,
                JoinResult::error(ResponseError::FencedInstanceId, old_id),
            );
        }
        if let Some(w) = old_sync {
            self.complete_sync(w, SyncResult::error(ResponseError::FencedInstanceId));
        }
        match state {
            GroupState::Stable if unchanged => {
                // KIP-345: a known static member coming back with the same metadata takes over
                // its old assignment without a rebalance.
                self.persist_group(&group_id);
                let mut r = self.join_result_for(&group_id, &new_id, was_leader);
                if was_leader {
                    r.skip_assignment_old_leader = Some(old_id.to_string());
                }
                Outcome::Now(r)
            }
            GroupState::PreparingRebalance => {
                self.park_join(&group_id, &new_id, waiter);
                self.try_complete_join(&group_id, now_ms);
                Outcome::Pending
            }
            _ => {
                self.prepare_rebalance(&group_id, now_ms);
                self.park_join(&group_id, &new_id, waiter);
                self.try_complete_join(&group_id, now_ms);
                Outcome::Pending
            }
        }
    }

    fn prepare_rebalance(&mut self, group_id: &str, now_ms: i64) {
        let delay = self.config.initial_rebalance_delay_ms;
        let Some(g) = self.groups.get_mut(group_id) else {
            return;
        };
        let mut fail_sync = Vec::new();
        if g.state == GroupState::CompletingRebalance {
            for m in g.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some(w) = m.sync_waiter.take() {
                    fail_sync.push(w);
                }
            }
        }
        let rebalance = g.max_rebalance_timeout();
        if g.state == GroupState::Empty {
            g.initial_delay_limit = Some(now_ms + rebalance);
            g.join_deadline = now_ms + delay.min(rebalance);
        } else {
            g.initial_delay_limit = None;
            g.join_deadline = now_ms + rebalance;
        }
        g.transition(GroupState::PreparingRebalance, now_ms);
        for w in fail_sync {
            self.complete_sync(w, SyncResult::error(ResponseError::RebalanceInProgress));
        }
    }

    /// Ends the join phase if everyone rejoined (outside the initial delay) or time is up.
    fn try_complete_join(&mut self, group_id: &str, now_ms: i64) {
        let Some(g) = self.groups.get_mut(group_id) else {
            return;
        };
        if g.state != GroupState::PreparingRebalance {
            return;
        }
        let ready =
            now_ms >= g.join_deadline || (g.initial_delay_limit.is_none() && g.all_joined());
        if !ready {
            return;
        }
        g.initial_delay_limit = None;
        // Members that did not rejoin in time are out (Kafka's `notYetRejoinedMembers`).
        let gone: Vec<String> = g
            .members
            .values()
            .filter(|m| m.join_waiter.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in &gone {
            if let Some(m) = g.members.shift_remove(id) {
                if let Some(i) = &m.instance_id {
                    g.static_members.remove(i);
                }
            }
        }
        g.generation += 1;
        if g.members.is_empty() {
            g.protocol = None;
            g.leader = None;
            g.transition(GroupState::Empty, now_ms);
            self.persist_group(group_id);
            return;
        }
        g.protocol = g.select_protocol();
        if g.leader.as_ref().is_none_or(|l| !g.members.contains_key(l)) {
            g.leader = g.members.keys().next().cloned();
        }
        g.transition(GroupState::CompletingRebalance, now_ms);
        let leader = g.leader.clone().unwrap_or_default();
        let mut waiters = Vec::new();
        for m in g.members.values_mut() {
            m.last_heartbeat_ms = now_ms;
            if let Some(w) = m.join_waiter.take() {
                waiters.push((w, m.id.clone()));
            }
        }
        for (w, id) in waiters {
            let r = self.join_result_for(group_id, &id, id == leader);
            self.complete_join(w, r);
        }
    }

    // ---- SyncGroup ----

    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &mut self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        waiter: WaiterId,
        now_ms: i64,
    ) -> Outcome<SyncResult> {
        let err = |e: ResponseError| Outcome::Now(SyncResult::error(e));
        let Some(g) = self.groups.get_mut(group_id) else {
            return err(ResponseError::UnknownMemberId);
        };
        if g.is_fenced(member_id, instance_id) {
            return err(ResponseError::FencedInstanceId);
        }
        if !g.members.contains_key(member_id) {
            return err(ResponseError::UnknownMemberId);
        }
        if generation != g.generation {
            return err(ResponseError::IllegalGeneration);
        }
        if protocol_type.is_some_and(|p| Some(p) != g.protocol_type.as_deref())
            || protocol_name.is_some_and(|p| Some(p) != g.protocol.as_deref())
        {
            return err(ResponseError::InconsistentGroupProtocol);
        }
        let result = |g: &Group, assignment: Bytes| SyncResult {
            error: 0,
            protocol_type: g.protocol_type.clone(),
            protocol_name: g.protocol.clone(),
            assignment,
        };
        match g.state {
            GroupState::PreparingRebalance => err(ResponseError::RebalanceInProgress),
            GroupState::Stable => {
                let m = &g.members[member_id];
                Outcome::Now(result(g, m.assignment.clone()))
            }
            GroupState::CompletingRebalance => {
                if let Some(m) = g.members.get_mut(member_id) {
                    m.last_heartbeat_ms = now_ms;
                }
                if g.leader.as_deref() != Some(member_id) {
                    let old = g
                        .members
                        .get_mut(member_id)
                        .and_then(|m| m.sync_waiter.replace(waiter));
                    if let Some(old) = old {
                        self.complete_sync(old, SyncResult::error(ResponseError::UnknownMemberId));
                    }
                    return Outcome::Pending;
                }
                let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                let mut waiters = Vec::new();
                for m in g.members.values_mut() {
                    m.assignment = given.remove(&m.id).unwrap_or_default();
                    if let Some(w) = m.sync_waiter.take() {
                        waiters.push((w, m.assignment.clone()));
                    }
                }
                g.transition(GroupState::Stable, now_ms);
                let mine = result(g, g.members[member_id].assignment.clone());
                let done: Vec<(WaiterId, SyncResult)> = waiters
                    .into_iter()
                    .map(|(w, a)| (w, result(g, a)))
                    .collect();
                self.persist_group(group_id);
                for (w, r) in done {
                    self.complete_sync(w, r);
                }
                Outcome::Now(mine)
            }
            GroupState::Empty | GroupState::Dead => err(ResponseError::UnknownMemberId),
        }
    }

    // ---- Heartbeat ----

    pub fn heartbeat(
        &mut self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        now_ms: i64,
    ) -> Result<(), ResponseError> {
        let Some(g) = self.groups.get_mut(group_id) else {
            return Err(ResponseError::UnknownMemberId);
        };
        if g.is_fenced(member_id, instance_id) {
            return Err(ResponseError::FencedInstanceId);
        }
        let Some(m) = g.members.get_mut(member_id) else {
            return Err(ResponseError::UnknownMemberId);
        };
        if generation != g.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        m.last_heartbeat_ms = now_ms;
        match g.state {
            GroupState::PreparingRebalance => Err(ResponseError::RebalanceInProgress),
            GroupState::CompletingRebalance | GroupState::Stable => Ok(()),
            GroupState::Empty | GroupState::Dead => Err(ResponseError::UnknownMemberId),
        }
    }

    // ---- LeaveGroup ----

    /// Removes one member (by member id and/or group instance id). Returns the error for it.
    pub fn leave(
        &mut self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        now_ms: i64,
    ) -> Option<ResponseError> {
        let Some(g) = self.groups.get_mut(group_id) else {
            return Some(ResponseError::UnknownMemberId);
        };
        let id = match instance_id {
            Some(i) => match g.static_members.get(i) {
                Some(current) if !member_id.is_empty() && current != member_id => {
                    return Some(ResponseError::FencedInstanceId)
                }
                Some(current) => current.clone(),
                None => return Some(ResponseError::UnknownMemberId),
            },
            None => member_id.to_string(),
        };
        if g.pending_members.remove(&id).is_some() {
            // A member that never finished joining: nothing to rebalance, but a join phase may
            // have been waiting for it.
            self.try_complete_join(group_id, now_ms);
            return None;
        }
        if !g.members.contains_key(&id) {
            return Some(ResponseError::UnknownMemberId);
        }
        self.remove_member(group_id, &id, now_ms);
        None
    }

    fn remove_member(&mut self, group_id: &str, member_id: &str, now_ms: i64) {
        let Some(g) = self.groups.get_mut(group_id) else {
            return;
        };
        let Some(m) = g.members.shift_remove(member_id) else {
            return;
        };
        if let Some(i) = &m.instance_id {
            if g.static_members.get(i).map(String::as_str) == Some(member_id) {
                g.static_members.remove(i);
            }
        }
        if g.leader.as_deref() == Some(member_id) {
            g.leader = g
                .members
                .values()
                .find(|m| m.join_waiter.is_some())
                .or_else(|| g.members.values().next())
                .map(|m| m.id.clone());
        }
        if let Some(w) = m.join_waiter {
            self.complete_join(
                w,
                JoinResult::error(ResponseError::UnknownMemberId, member_id),
            );
        }
        if let Some(w) = m.sync_waiter {
            self.complete_sync(w, SyncResult::error(ResponseError::UnknownMemberId));
        }
        let state = self.groups[group_id].state;
        match state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(group_id, now_ms);
                self.try_complete_join(group_id, now_ms);
            }
            GroupState::PreparingRebalance => self.try_complete_join(group_id, now_ms),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    // ---- Coordinator moves ----

    /// Drops from memory every group `owned_elsewhere` selects (this node stopped leading its
    /// `__consumer_offsets` partition). Members waiting in JoinGroup or SyncGroup are answered
    /// NOT_COORDINATOR, as Kafka does on unload, so they find the new coordinator. Nothing is
    /// written: the groups' records stay in the log for the next coordinator. Returns how many
    /// groups were dropped.
    pub fn unload(&mut self, owned_elsewhere: impl Fn(&str) -> bool) -> usize {
        let ids: Vec<String> = self
            .groups
            .keys()
            .filter(|id| owned_elsewhere(id))
            .cloned()
            .collect();
        for id in &ids {
            let Some(g) = self.groups.remove(id) else {
                continue;
            };
            for m in g.members.values() {
                if let Some(w) = m.join_waiter {
                    self.complete_join(w, JoinResult::error(ResponseError::NotCoordinator, &m.id));
                }
                if let Some(w) = m.sync_waiter {
                    self.complete_sync(w, SyncResult::error(ResponseError::NotCoordinator));
                }
            }
        }
        ids.len()
    }

    // ---- Timers ----

    /// Expires sessions and pending member ids, and ends join phases whose time is up.
    pub fn tick(&mut self, now_ms: i64) {
        let ids: Vec<String> = self.groups.keys().cloned().collect();
        for gid in ids {
            let (expired, pending_expired) = {
                let g = &self.groups[&gid];
                let expired: Vec<String> = g
                    .members
                    .values()
                    .filter(|m| !m.alive(now_ms))
                    .map(|m| m.id.clone())
                    .collect();
                let pending: Vec<String> = g
                    .pending_members
                    .iter()
                    .filter(|(_, d)| now_ms >= **d)
                    .map(|(id, _)| id.clone())
                    .collect();
                (expired, pending)
            };
            if let Some(g) = self.groups.get_mut(&gid) {
                for p in &pending_expired {
                    g.pending_members.remove(p);
                }
            }
            for id in expired {
                tracing::info!(group = %gid, member = %id, "member session expired; removing it");
                self.remove_member(&gid, &id, now_ms);
            }
            self.try_complete_join(&gid, now_ms);
        }
    }

    // ---- Offsets ----

    /// Checks whether a commit may go ahead (Kafka's `handleCommitOffsets` checks).
    pub fn validate_commit(
        &mut self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        now_ms: i64,
    ) -> Result<(), ResponseError> {
        if group_id.is_empty() || group_id.len() > MAX_RECORD_STRING {
            return Err(ResponseError::InvalidGroupId);
        }
        let Some(g) = self.groups.get_mut(group_id) else {
            // No group: a standalone consumer (generation -1) may commit; anything else is from
            // a generation that no longer exists.
            return if generation < 0 {
                Ok(())
            } else {
                Err(ResponseError::IllegalGeneration)
            };
        };
        if g.is_fenced(member_id, instance_id) {
            return Err(ResponseError::FencedInstanceId);
        }
        if generation < 0 && g.state == GroupState::Empty {
            return Ok(());
        }
        let Some(m) = g.members.get_mut(member_id) else {
            return Err(ResponseError::UnknownMemberId);
        };
        if generation != g.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        if g.state == GroupState::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        m.last_heartbeat_ms = now_ms;
        Ok(())
    }

    /// Records a validated commit in memory (after it was written to the log).
    pub fn apply_commit(&mut self, group_id: &str, commits: &[OffsetCommit], now_ms: i64) {
        let g = self
            .groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(group_id, now_ms));
        for c in commits {
            g.offsets.insert(
                (c.topic.clone(), c.partition),
                CommittedOffset {
                    offset: c.offset,
                    leader_epoch: c.leader_epoch,
                    metadata: c.metadata.clone(),
                    commit_timestamp: now_ms,
                },
            );
        }
    }

    pub fn committed(
        &self,
        group_id: &str,
        topic: &str,
        partition: i32,
    ) -> Option<&CommittedOffset> {
        self.groups
            .get(group_id)?
            .offsets
            .get(&(topic.to_string(), partition))
    }

    /// All committed offsets of a group (OffsetFetch with null topics).
    pub fn all_committed(&self, group_id: &str) -> Vec<((String, i32), CommittedOffset)> {
        self.groups
            .get(group_id)
            .map(|g| {
                g.offsets
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// DeleteGroups for one group: only empty groups; tombstones for metadata and offsets.
    pub fn delete_group(&mut self, group_id: &str) -> Result<(), ResponseError> {
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        let Some(g) = self.groups.get(group_id) else {
            return Err(ResponseError::GroupIdNotFound);
        };
        if g.state != GroupState::Empty || !g.members.is_empty() {
            return Err(ResponseError::NonEmptyGroup);
        }
        let g = self.groups.remove(group_id).expect("checked above");
        for (topic, partition) in g.offsets.keys() {
            self.effects.persist.push(Persist {
                group: group_id.to_string(),
                key: records::offset_key(group_id, topic, *partition),
                value: None,
            });
        }
        self.effects.persist.push(Persist {
            group: group_id.to_string(),
            key: records::group_key(group_id),
            value: None,
        });
        Ok(())
    }

    /// OffsetDelete: group-level error, or per-partition results (0 = deleted or absent).
    pub fn delete_offsets(
        &mut self,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<i16>, ResponseError> {
        let Some(g) = self.groups.get(group_id) else {
            return Err(ResponseError::GroupIdNotFound);
        };
        let subscribed: Option<Vec<String>> = match g.state {
            GroupState::Empty => None,
            GroupState::Dead => return Err(ResponseError::GroupIdNotFound),
            _ if g.protocol_type.as_deref() == Some("consumer") => Some(subscribed_topics(g)),
            _ => return Err(ResponseError::NonEmptyGroup),
        };
        let mut out = Vec::with_capacity(partitions.len());
        let mut deleted = Vec::new();
        for (topic, partition) in partitions {
            if subscribed
                .as_ref()
                .is_some_and(|s| s.iter().any(|t| t == topic))
            {
                out.push(ResponseError::GroupSubscribedToTopic.code());
                continue;
            }
            deleted.push((topic.clone(), *partition));
            out.push(0);
        }
        let g = self.groups.get_mut(group_id).expect("checked above");
        for k in deleted {
            if g.offsets.remove(&k).is_some() {
                self.effects.persist.push(Persist {
                    group: group_id.to_string(),
                    key: records::offset_key(group_id, &k.0, k.1),
                    value: None,
                });
            }
        }
        Ok(out)
    }

    /// Offset expiry (`offsets.retention.minutes`, KIP-211 and KIP-496): removes committed
    /// offsets that are past retention and writes their tombstones.
    /// - A group that has been Empty for `retention_ms` (since its state last changed) loses
    ///   all its offsets; while it has members they are kept.
    /// - A group that never had members (offsets committed with generation -1 by a standalone
    ///   consumer or an admin tool) loses each offset `retention_ms` after its commit.
    /// - A Stable `consumer` group loses offsets of topics none of its members subscribes to,
    ///   `retention_ms` after their commit.
    ///
    /// An Empty group left without offsets is removed with a group tombstone, as Kafka turns
    /// it Dead. `pending` names (group, topic, partition) offsets whose commit is still being replicated: they are never
    /// expired here (their write comes after any tombstone this would write). Returns the
    /// number of offsets removed.
    pub fn expire_offsets(
        &mut self,
        now_ms: i64,
        retention_ms: i64,
        pending: &HashSet<(String, String, i32)>,
    ) -> usize {
        let is_pending =
            |g: &str, t: &str, p: i32| pending.contains(&(g.to_string(), t.to_string(), p));
        let mut removed = 0usize;
        let mut dead = Vec::new();
        for g in self.groups.values_mut() {
            let expired: Vec<(String, i32)> = match g.state {
                GroupState::Empty if g.protocol_type.is_some() => {
                    if now_ms.saturating_sub(g.state_timestamp) >= retention_ms {
                        g.offsets.keys().cloned().collect()
                    } else {
                        Vec::new()
                    }
                }
                GroupState::Empty => g
                    .offsets
                    .iter()
                    .filter(|(_, c)| now_ms.saturating_sub(c.commit_timestamp) >= retention_ms)
                    .map(|(k, _)| k.clone())
                    .collect(),
                GroupState::Stable if g.protocol_type.as_deref() == Some("consumer") => {
                    let subscribed = subscribed_topics(g);
                    g.offsets
                        .iter()
                        .filter(|((t, _), c)| {
                            !subscribed.iter().any(|s| s == t)
                                && now_ms.saturating_sub(c.commit_timestamp) >= retention_ms
                        })
                        .map(|(k, _)| k.clone())
                        .collect()
                }
                _ => Vec::new(),
            };
            for (topic, partition) in expired {
                if is_pending(&g.id, &topic, partition) {
                    continue;
                }
                g.offsets.remove(&(topic.clone(), partition));
                removed += 1;
                self.effects.persist.push(Persist {
                    group: g.id.clone(),
                    key: records::offset_key(&g.id, &topic, partition),
                    value: None,
                });
            }
            if g.state == GroupState::Empty
                && g.members.is_empty()
                && g.offsets.is_empty()
                && !pending.iter().any(|(pg, _, _)| *pg == g.id)
            {
                dead.push(g.id.clone());
            }
        }
        for id in dead {
            self.groups.remove(&id);
            self.effects.persist.push(Persist {
                group: id.clone(),
                key: records::group_key(&id),
                value: None,
            });
        }
        removed
    }

    /// Removes the committed offsets of partitions that no longer exist (Kafka's
    /// `handleDeletedPartitions` / `onPartitionsDeleted`): for every group `in_scope` selects,
    /// each offset of a partition `gone` selects leaves memory and gets a tombstone. Members
    /// and generations are left alone: no rebalance starts.
    ///
    /// `pending` names (group, topic, partition) commits still being replicated: those of gone
    /// partitions get a tombstone too, written after the commit, so the log ends with the
    /// tombstone (the caller drops them from its pending commits). An Empty group left without
    /// members, offsets or other pending commits is removed with a group tombstone, as Kafka
    /// turns it Dead. Returns the number of offset tombstones.
    pub fn remove_offsets(
        &mut self,
        in_scope: impl Fn(&str) -> bool,
        gone: impl Fn(&str, i32) -> bool,
        pending: &HashSet<(String, String, i32)>,
    ) -> usize {
        // Tombstones by group, in a stable order: (topic, partition).
        let mut doomed: BTreeMap<String, BTreeSet<(String, i32)>> = BTreeMap::new();
        for g in self.groups.values_mut().filter(|g| in_scope(&g.id)) {
            let keys: Vec<(String, i32)> = g
                .offsets
                .keys()
                .filter(|(t, p)| gone(t, *p))
                .cloned()
                .collect();
            for k in keys {
                g.offsets.remove(&k);
                doomed.entry(g.id.clone()).or_default().insert(k);
            }
        }
        for (g, t, p) in pending {
            if in_scope(g) && gone(t, *p) {
                doomed.entry(g.clone()).or_default().insert((t.clone(), *p));
            }
        }
        let mut removed = 0usize;
        for (group, keys) in &doomed {
            for (topic, partition) in keys {
                removed += 1;
                self.effects.persist.push(Persist {
                    group: group.clone(),
                    key: records::offset_key(group, topic, *partition),
                    value: None,
                });
            }
            let still_pending = pending.iter().any(|(g, t, p)| g == group && !gone(t, *p));
            let dead = self.groups.get(group).is_some_and(|g| {
                g.state == GroupState::Empty && g.members.is_empty() && g.offsets.is_empty()
            });
            if dead && !still_pending {
                self.groups.remove(group);
                self.effects.persist.push(Persist {
                    group: group.clone(),
                    key: records::group_key(group),
                    value: None,
                });
            }
        }
        removed
    }

    pub fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        let g = self.groups.get(group_id)?;
        let stable = g.state == GroupState::Stable;
        let protocol = g.protocol.clone().unwrap_or_default();
        Some(GroupDescription {
            state: g.state,
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: if stable {
                protocol.clone()
            } else {
                String::new()
            },
            members: g
                .members
                .values()
                .map(|m| MemberDescription {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata_for(&protocol)
                    } else {
                        Bytes::new()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
        })
    }

    // ---- Loading from __consumer_offsets ----

    /// Replays one record read back from the log (latest value per key wins).
    pub fn replay(
        &mut self,
        key: &records::RecordKey,
        value: Option<&[u8]>,
        now_ms: i64,
    ) -> Result<(), records::RecordError> {
        match key {
            records::RecordKey::Offset {
                group,
                topic,
                partition,
            } => match value {
                Some(v) => {
                    let OffsetValue {
                        offset,
                        leader_epoch,
                        metadata,
                        commit_timestamp,
                    } = records::decode_offset_value(v)?;
                    let g = self
                        .groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new(group, now_ms));
                    g.offsets.insert(
                        (topic.clone(), *partition),
                        CommittedOffset {
                            offset,
                            leader_epoch,
                            metadata,
                            commit_timestamp,
                        },
                    );
                }
                None => {
                    if let Some(g) = self.groups.get_mut(group) {
                        g.offsets.remove(&(topic.clone(), *partition));
                    }
                }
            },
            records::RecordKey::Group { group } => {
                let offsets = self
                    .groups
                    .remove(group)
                    .map(|g| g.offsets)
                    .unwrap_or_default();
                let mut g = Group::new(group, now_ms);
                g.offsets = offsets;
                if let Some(v) = value {
                    let v = records::decode_group_value(v)?;
                    g.protocol_type = Some(v.protocol_type.clone()).filter(|p| !p.is_empty());
                    g.generation = v.generation;
                    g.protocol = v.protocol.clone();
                    g.leader = v.leader.clone();
                    g.state_timestamp = v.current_state_timestamp;
                    for m in v.members {
                        if let Some(i) = &m.group_instance_id {
                            g.static_members.insert(i.clone(), m.member_id.clone());
                        }
                        let protocols = match &v.protocol {
                            Some(p) => vec![(p.clone(), m.subscription.clone())],
                            None => Vec::new(),
                        };
                        g.members.insert(
                            m.member_id.clone(),
                            Member {
                                id: m.member_id.clone(),
                                instance_id: m.group_instance_id,
                                client_id: m.client_id,
                                client_host: m.client_host,
                                session_timeout_ms: m.session_timeout_ms,
                                rebalance_timeout_ms: m.rebalance_timeout_ms,
                                protocol_type: v.protocol_type.clone(),
                                protocols,
                                assignment: m.assignment,
                                join_waiter: None,
                                sync_waiter: None,
                                // Members get a full session from the load to come back.
                                last_heartbeat_ms: now_ms,
                            },
                        );
                    }
                    if !g.members.is_empty() {
                        g.state = GroupState::Stable;
                    }
                    self.groups.insert(group.clone(), g);
                } else if !g.offsets.is_empty() {
                    self.groups.insert(group.clone(), g);
                }
            }
        }
        Ok(())
    }
}

/// Topics a consumer group subscribes to, from the members' ConsumerProtocolSubscription
/// (version int16, then an array of topic strings; later versions only append fields).
fn subscribed_topics(g: &Group) -> Vec<String> {
    let protocol = g.protocol.clone().unwrap_or_default();
    let mut topics = Vec::new();
    for m in g.members.values() {
        let meta = m.metadata_for(&protocol);
        let mut b: &[u8] = &meta;
        if b.len() < 6 {
            continue;
        }
        b = &b[2..];
        let n = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        b = &b[4..];
        for _ in 0..n.max(0) {
            if b.len() < 2 {
                break;
            }
            let len = i16::from_be_bytes([b[0], b[1]]).max(0) as usize;
            b = &b[2..];
            if b.len() < len {
                break;
            }
            topics.push(String::from_utf8_lossy(&b[..len]).to_string());
            b = &b[len..];
        }
    }
    topics
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION: i32 = 10_000;
    const REBALANCE: i32 = 30_000;

    fn groups(delay: i64) -> Groups {
        Groups::new(GroupConfig {
            initial_rebalance_delay_ms: delay,
            ..GroupConfig::default()
        })
    }

    fn req(member_id: &str, instance: Option<&str>, protocols: &[(&str, &str)]) -> JoinRequest {
        JoinRequest {
            group_id: "g".into(),
            member_id: member_id.into(),
            group_instance_id: instance.map(str::to_string),
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: SESSION,
            rebalance_timeout_ms: REBALANCE,
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|(n, m)| (n.to_string(), Bytes::copy_from_slice(m.as_bytes())))
                .collect(),
            require_known_member_id: true,
        }
    }

    fn range() -> [(&'static str, &'static str); 1] {
        [("range", "sub")]
    }

    fn joins(e: &Effects) -> Vec<(WaiterId, JoinResult)> {
        e.completions
            .iter()
            .filter_map(|c| match c {
                Completion::Join(w, r) => Some((*w, r.clone())),
                _ => None,
            })
            .collect()
    }

    fn syncs(e: &Effects) -> Vec<(WaiterId, SyncResult)> {
        e.completions
            .iter()
            .filter_map(|c| match c {
                Completion::Sync(w, r) => Some((*w, r.clone())),
                _ => None,
            })
            .collect()
    }

    /// v4+ dynamic join: MEMBER_ID_REQUIRED first, then the real join with that id.
    fn join_new(g: &mut Groups, waiter: WaiterId, now: i64) -> (String, Outcome<JoinResult>) {
        let Outcome::Now(first) = g.join(req("", None, &range()), waiter, now) else {
            panic!("first join must answer at once")
        };
        assert_eq!(first.error, ResponseError::MemberIdRequired.code());
        assert!(first.member_id.starts_with("client-"));
        let id = first.member_id.clone();
        let out = g.join(req(&id, None, &range()), waiter, now);
        (id, out)
    }

    #[test]
    fn one_member_joins_and_syncs() {
        let mut g = groups(0);
        let (id, out) = join_new(&mut g, 1, 0);
        assert_eq!(out, Outcome::Pending);
        let e = g.take_effects();
        let j = joins(&e);
        assert_eq!(j.len(), 1);
        let (w, r) = &j[0];
        assert_eq!(*w, 1);
        assert_eq!((r.error, r.generation_id), (0, 1));
        assert_eq!(r.leader, id);
        assert_eq!(r.protocol_name.as_deref(), Some("range"));
        assert_eq!(r.members.len(), 1);
        assert_eq!(g.get("g").unwrap().state, GroupState::CompletingRebalance);

        let out = g.sync(
            "g",
            1,
            &id,
            None,
            None,
            None,
            vec![(id.clone(), Bytes::from_static(b"a"))],
            2,
            1,
        );
        let Outcome::Now(s) = out else {
            panic!("leader sync is immediate")
        };
        assert_eq!((s.error, &s.assignment[..]), (0, &b"a"[..]));
        assert_eq!(g.get("g").unwrap().state, GroupState::Stable);
        let e = g.take_effects();
        assert_eq!(e.persist.len(), 1, "group metadata written at sync");
        assert_eq!(e.persist[0].key, records::group_key("g"));
        let v = records::decode_group_value(e.persist[0].value.as_ref().unwrap()).unwrap();
        assert_eq!((v.generation, v.members.len()), (1, 1));
        assert_eq!(&v.members[0].assignment[..], b"a");
        assert_eq!(g.heartbeat("g", 1, &id, None, 2), Ok(()));
    }

    #[test]
    fn strings_too_long_for_the_record_are_refused_not_truncated() {
        let mut g = groups(0);
        let long = "x".repeat(MAX_RECORD_STRING + 1);
        let mut r = req("", None, &range());
        r.group_id = long.clone();
        let Outcome::Now(a) = g.join(r, 1, 0) else {
            panic!("answered at once")
        };
        assert_eq!(a.error, ResponseError::InvalidGroupId.code());
        let mut r = req("", None, &range());
        r.client_id = "c".repeat(MAX_RECORD_STRING - 10);
        let Outcome::Now(b) = g.join(r, 2, 0) else {
            panic!("answered at once")
        };
        assert_eq!(b.error, ResponseError::InvalidRequest.code());
        assert_eq!(
            g.validate_commit(&long, -1, "", None, 0),
            Err(ResponseError::InvalidGroupId)
        );
        assert!(g.get(&long).is_none());
    }

    #[test]
    fn a_full_group_refuses_new_members() {
        let mut g = Groups::new(GroupConfig {
            initial_rebalance_delay_ms: 0,
            max_size: 2,
            ..GroupConfig::default()
        });
        let (a, _) = join_new(&mut g, 1, 0);
        // A pending member id (MEMBER_ID_REQUIRED) holds a place too.
        let Outcome::Now(pending) = g.join(req("", None, &range()), 2, 0) else {
            panic!("answered at once")
        };
        assert_eq!(pending.error, ResponseError::MemberIdRequired.code());
        let Outcome::Now(third) = g.join(req("", None, &range()), 3, 0) else {
            panic!("answered at once")
        };
        assert_eq!(third.error, ResponseError::GroupMaxSizeReached.code());
        let Outcome::Now(static_third) = g.join(req("", Some("i"), &range()), 4, 0) else {
            panic!("answered at once")
        };
        assert_eq!(
            static_third.error,
            ResponseError::GroupMaxSizeReached.code()
        );
        // The pending member completes its join, and a known member rejoins, in a full group.
        assert_eq!(
            g.join(req(&pending.member_id, None, &range()), 5, 0),
            Outcome::Pending
        );
        assert_eq!(g.join(req(&a, None, &range()), 6, 0), Outcome::Pending);
        assert_eq!(g.get("g").unwrap().members.len(), 2);
    }

    #[test]
    fn unload_drops_groups_and_answers_parked_members_not_coordinator() {
        let mut g = groups(0);
        // Group "g" has a member parked in JoinGroup (the second member keeps the join open).
        let (_id, _) = join_new(&mut g, 1, 0);
        let _ = g.take_effects();
        let mut other = req("", None, &range());
        other.group_id = "h".into();
        let _ = g.join(other, 2, 0);
        let mut second = req("", None, &range());
        second.require_known_member_id = false;
        assert_eq!(g.join(second, 3, 0), Outcome::Pending);
        let _ = g.take_effects();
        assert_eq!(g.unload(|id| id == "g"), 1);
        assert!(g.get("g").is_none());
        assert!(g.get("h").is_some(), "groups of other partitions stay");
        let answered = joins(&g.take_effects());
        assert_eq!(answered.len(), 1);
        assert_eq!(answered[0].0, 3);
        assert_eq!(answered[0].1.error, ResponseError::NotCoordinator.code());
        assert!(
            g.take_effects().persist.is_empty(),
            "unloading writes nothing"
        );
    }

    #[test]
    fn three_members_rebalance_and_sync() {
        let mut g = groups(0);
        let (a, _) = join_new(&mut g, 1, 0);
        g.take_effects();
        let Outcome::Now(_) = g.sync("g", 1, &a, None, None, None, vec![], 2, 0) else {
            panic!()
        };
        // b and c arrive: the group goes back to PreparingRebalance; a learns it by heartbeat.
        let (b, out) = join_new(&mut g, 3, 10);
        assert_eq!(out, Outcome::Pending);
        let (c, out) = join_new(&mut g, 4, 10);
        assert_eq!(out, Outcome::Pending);
        assert_eq!(g.get("g").unwrap().state, GroupState::PreparingRebalance);
        assert_eq!(
            g.heartbeat("g", 1, &a, None, 20),
            Err(ResponseError::RebalanceInProgress)
        );
        assert!(joins(&g.take_effects()).is_empty());
        // a rejoins: everyone is in, the join phase completes at once.
        assert_eq!(g.join(req(&a, None, &range()), 5, 30), Outcome::Pending);
        let e = g.take_effects();
        let j = joins(&e);
        assert_eq!(j.len(), 3);
        for (_, r) in &j {
            assert_eq!(
                (r.error, r.generation_id, r.leader.as_str()),
                (0, 2, a.as_str())
            );
            assert_eq!(r.members.len(), if r.member_id == a { 3 } else { 0 });
        }
        // Followers wait for the leader's assignment.
        assert_eq!(
            g.sync("g", 2, &b, None, None, None, vec![], 6, 40),
            Outcome::Pending
        );
        assert_eq!(
            g.sync("g", 2, &c, None, None, None, vec![], 7, 40),
            Outcome::Pending
        );
        assert!(g.take_effects().completions.is_empty());
        let asg = vec![
            (a.clone(), Bytes::from_static(b"A")),
            (b.clone(), Bytes::from_static(b"B")),
            (c.clone(), Bytes::from_static(b"C")),
        ];
        let Outcome::Now(s) = g.sync("g", 2, &a, None, None, None, asg, 8, 50) else {
            panic!()
        };
        assert_eq!(&s.assignment[..], b"A");
        let e = g.take_effects();
        let mut got: Vec<(WaiterId, Bytes)> = syncs(&e)
            .into_iter()
            .map(|(w, r)| (w, r.assignment))
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![(6, Bytes::from_static(b"B")), (7, Bytes::from_static(b"C"))]
        );
        assert_eq!(g.get("g").unwrap().state, GroupState::Stable);
        // A stale generation is refused everywhere.
        assert_eq!(
            g.heartbeat("g", 1, &b, None, 60),
            Err(ResponseError::IllegalGeneration)
        );
        assert_eq!(
            g.sync("g", 1, &b, None, None, None, vec![], 9, 60),
            Outcome::Now(SyncResult::error(ResponseError::IllegalGeneration))
        );
        assert_eq!(
            g.validate_commit("g", 1, &b, None, 60),
            Err(ResponseError::IllegalGeneration)
        );
        assert_eq!(
            g.heartbeat("g", 2, "nobody", None, 60),
            Err(ResponseError::UnknownMemberId)
        );
    }

    #[test]
    fn protocol_is_chosen_by_votes_among_common_protocols() {
        let mut g = groups(1000);
        let mut r1 = req("", Some("i1"), &[("roundrobin", "x"), ("range", "x")]);
        r1.require_known_member_id = false;
        let mut r2 = req("", Some("i2"), &[("range", "y"), ("sticky", "y")]);
        r2.require_known_member_id = false;
        let mut r3 = req("", Some("i3"), &[("range", "z"), ("roundrobin", "z")]);
        r3.require_known_member_id = false;
        g.join(r1, 1, 0);
        g.join(r2, 2, 0);
        g.join(r3, 3, 0);
        // The initial delay holds the join phase open.
        g.tick(500);
        assert!(joins(&g.take_effects()).is_empty());
        g.tick(1000);
        let j = joins(&g.take_effects());
        assert_eq!(j.len(), 3);
        assert!(j
            .iter()
            .all(|(_, r)| r.protocol_name.as_deref() == Some("range")));
        // A member with nothing in common is refused.
        let bad = req("", None, &[("other", "")]);
        let Outcome::Now(r) = g.join(bad, 4, 2000) else {
            panic!()
        };
        assert_eq!(r.error, ResponseError::InconsistentGroupProtocol.code());
    }

    #[test]
    fn leaving_member_triggers_rebalance_and_new_leader() {
        let mut g = groups(0);
        let (a, _) = join_new(&mut g, 1, 0);
        let (b, _) = join_new(&mut g, 2, 0);
        g.join(req(&a, None, &range()), 3, 0);
        g.take_effects();
        let Outcome::Now(_) = g.sync("g", 2, &a, None, None, None, vec![], 4, 0) else {
            panic!()
        };
        g.take_effects();
        // Leader leaves (v3 batch form by member id).
        assert_eq!(g.leave("g", &a, None, 10), None);
        assert_eq!(
            g.leave("g", "ghost", None, 10),
            Some(ResponseError::UnknownMemberId)
        );
        assert_eq!(g.get("g").unwrap().state, GroupState::PreparingRebalance);
        assert_eq!(
            g.heartbeat("g", 2, &b, None, 11),
            Err(ResponseError::RebalanceInProgress)
        );
        assert_eq!(g.join(req(&b, None, &range()), 5, 12), Outcome::Pending);
        let j = joins(&g.take_effects());
        assert_eq!(j.len(), 1);
        assert_eq!(
            (j[0].1.generation_id, j[0].1.leader.as_str()),
            (3, b.as_str())
        );
        // The last member leaves: Empty, next generation, metadata persisted.
        let Outcome::Now(_) = g.sync("g", 3, &b, None, None, None, vec![], 6, 13) else {
            panic!()
        };
        g.take_effects();
        assert_eq!(g.leave("g", &b, None, 14), None);
        let grp = g.get("g").unwrap();
        assert_eq!((grp.state, grp.generation), (GroupState::Empty, 4));
        assert_eq!(g.take_effects().persist.len(), 1);
    }

    #[test]
    fn session_expiry_removes_silent_members() {
        let mut g = groups(0);
        let (a, _) = join_new(&mut g, 1, 0);
        let (b, _) = join_new(&mut g, 2, 0);
        g.join(req(&a, None, &range()), 3, 0);
        g.take_effects();
        let Outcome::Now(_) = g.sync("g", 2, &a, None, None, None, vec![], 4, 0) else {
            panic!()
        };
        assert_eq!(
            g.sync("g", 2, &b, None, None, None, vec![], 5, 0),
            Outcome::Now(SyncResult {
                error: 0,
                protocol_type: Some("consumer".into()),
                protocol_name: Some("range".into()),
                assignment: Bytes::new(),
            })
        );
        // a keeps heartbeating, b goes silent.
        for t in (1000..SESSION as i64 + 2000).step_by(1000) {
            let _ = g.heartbeat("g", g.get("g").unwrap().generation, &a, None, t);
            g.tick(t);
        }
        let grp = g.get("g").unwrap();
        assert!(!grp.members.contains_key(&b));
        assert_eq!(grp.state, GroupState::PreparingRebalance);
        assert_eq!(
            g.heartbeat("g", 2, &b, None, 20_000),
            Err(ResponseError::UnknownMemberId)
        );
    }

    #[test]
    fn members_that_do_not_rejoin_are_dropped_at_the_rebalance_timeout() {
        let mut g = groups(0);
        let (a, _) = join_new(&mut g, 1, 0);
        g.take_effects();
        let Outcome::Now(_) = g.sync("g", 1, &a, None, None, None, vec![], 2, 0) else {
            panic!()
        };
        // b joins; a heartbeats (so its session stays alive) but never rejoins.
        let (b, out) = join_new(&mut g, 3, 100);
        assert_eq!(out, Outcome::Pending);
        let mut t = 100;
        while t < 100 + REBALANCE as i64 - 1000 {
            t += 1000;
            assert_eq!(
                g.heartbeat("g", 1, &a, None, t),
                Err(ResponseError::RebalanceInProgress)
            );
            g.tick(t);
        }
        assert!(joins(&g.take_effects()).is_empty());
        g.tick(100 + REBALANCE as i64);
        let j = joins(&g.take_effects());
        assert_eq!(j.len(), 1);
        assert_eq!(
            (j[0].1.member_id.as_str(), j[0].1.leader.as_str()),
            (b.as_str(), b.as_str())
        );
        assert_eq!(j[0].1.generation_id, 2);
        assert!(!g.get("g").unwrap().members.contains_key(&a));
    }

    #[test]
    fn static_member_rejoins_without_rebalance_and_fences_the_old_id() {
        let mut g = groups(0);
        let Outcome::Pending = g.join(req("", Some("inst"), &range()), 1, 0) else {
            panic!()
        };
        let j = joins(&g.take_effects());
        let old = j[0].1.member_id.clone();
        assert!(old.starts_with("inst-"));
        let Outcome::Now(_) = g.sync(
            "g",
            1,
            &old,
            Some("inst"),
            None,
            None,
            vec![(old.clone(), Bytes::from_static(b"A"))],
            2,
            0,
        ) else {
            panic!()
        };
        g.take_effects();
        // Restarted process: unknown member id, same instance id and metadata.
        let Outcome::Now(r) = g.join(req("", Some("inst"), &range()), 3, 100) else {
            panic!("no rebalance for an unchanged static member")
        };
        assert_eq!((r.error, r.generation_id), (0, 1));
        assert_ne!(r.member_id, old);
        assert_eq!(r.leader, r.member_id);
        let e = g.take_effects();
        assert_eq!(e.persist.len(), 1, "the new member id is persisted");
        assert_eq!(g.get("g").unwrap().state, GroupState::Stable);
        // The new id gets the old assignment; the old id is fenced.
        let Outcome::Now(s) = g.sync(
            "g",
            1,
            &r.member_id,
            Some("inst"),
            None,
            None,
            vec![],
            4,
            101,
        ) else {
            panic!()
        };
        assert_eq!(&s.assignment[..], b"A");
        assert_eq!(
            g.heartbeat("g", 1, &old, Some("inst"), 102),
            Err(ResponseError::FencedInstanceId)
        );
        assert_eq!(
            g.validate_commit("g", 1, &old, Some("inst"), 102),
            Err(ResponseError::FencedInstanceId)
        );
        let Outcome::Now(f) = g.join(req(&old, Some("inst"), &range()), 5, 103) else {
            panic!()
        };
        assert_eq!(f.error, ResponseError::FencedInstanceId.code());
        assert_eq!(
            g.leave("g", &old, Some("inst"), 104),
            Some(ResponseError::FencedInstanceId)
        );
        // Changed metadata forces a rebalance.
        let out = g.join(req("", Some("inst"), &[("range", "other-topics")]), 6, 200);
        assert_eq!(out, Outcome::Pending);
        let j = joins(&g.take_effects());
        assert_eq!(j.len(), 1);
        assert_eq!(j[0].1.generation_id, 2);
        // Leaving by instance id only.
        assert_eq!(g.leave("g", "", Some("inst"), 300), None);
        assert_eq!(g.get("g").unwrap().state, GroupState::Empty);
    }

    #[test]
    fn static_leader_rejoining_a_stable_group_skips_the_assignment() {
        // Found by t71's confluent_static_membership: a restarted static leader was told it
        // leads a group of no members, so librdkafka computed an assignment for nobody.
        let mut g = groups(1000);
        let Outcome::Pending = g.join(req("", Some("a"), &range()), 1, 0) else {
            panic!()
        };
        let Outcome::Pending = g.join(req("", Some("b"), &range()), 2, 0) else {
            panic!()
        };
        g.tick(1000);
        let j = joins(&g.take_effects());
        let a = j.iter().find(|(w, _)| *w == 1).unwrap().1.clone();
        let b = j.iter().find(|(w, _)| *w == 2).unwrap().1.clone();
        assert_eq!((a.generation_id, &a.leader), (1, &a.member_id));
        let plan = vec![
            (a.member_id.clone(), Bytes::from_static(b"A")),
            (b.member_id.clone(), Bytes::from_static(b"B")),
        ];
        let Outcome::Now(_) = g.sync("g", 1, &a.member_id, Some("a"), None, None, plan, 3, 1001)
        else {
            panic!()
        };
        g.take_effects();
        // The leader restarts: same generation, the whole group, and the old id for clients
        // that cannot skip the assignment.
        let Outcome::Now(r) = g.join(req("", Some("a"), &range()), 4, 1100) else {
            panic!("no rebalance for an unchanged static leader")
        };
        assert_eq!((r.error, r.generation_id), (0, 1));
        assert_eq!(r.leader, r.member_id);
        assert_eq!(r.members.len(), 2);
        assert_eq!(
            r.skip_assignment_old_leader.as_deref(),
            Some(a.member_id.as_str())
        );
        assert_eq!(g.get("g").unwrap().state, GroupState::Stable);
        let Outcome::Now(s) = g.sync("g", 1, &r.member_id, Some("a"), None, None, vec![], 5, 1101)
        else {
            panic!()
        };
        assert_eq!(&s.assignment[..], b"A");
        // A follower restarts: no members, the current leader, nothing to skip.
        let Outcome::Now(f) = g.join(req("", Some("b"), &range()), 6, 1200) else {
            panic!()
        };
        assert_eq!((f.generation_id, &f.leader), (1, &r.member_id));
        assert!(f.members.is_empty());
        assert_eq!(f.skip_assignment_old_leader, None);
    }

    #[test]
    fn member_id_required_and_join_validation() {
        let mut g = groups(0);
        let mut r = req("", None, &range());
        r.session_timeout_ms = 10;
        let Outcome::Now(e) = g.join(r, 1, 0) else {
            panic!()
        };
        assert_eq!(e.error, ResponseError::InvalidSessionTimeout.code());
        let mut r = req("", None, &range());
        r.group_id = String::new();
        let Outcome::Now(e) = g.join(r, 1, 0) else {
            panic!()
        };
        assert_eq!(e.error, ResponseError::InvalidGroupId.code());
        let Outcome::Now(e) = g.join(req("made-up", None, &range()), 1, 0) else {
            panic!()
        };
        assert_eq!(e.error, ResponseError::UnknownMemberId.code());
        // v0-3 clients join in one step.
        let mut r = req("", None, &range());
        r.require_known_member_id = false;
        assert_eq!(g.join(r, 2, 0), Outcome::Pending);
        assert_eq!(joins(&g.take_effects()).len(), 1);
        // Ids handed out with MEMBER_ID_REQUIRED expire after a session.
        let Outcome::Now(p) = g.join(req("", None, &range()), 3, 0) else {
            panic!()
        };
        g.tick(SESSION as i64 + 1);
        let Outcome::Now(e) = g.join(req(&p.member_id, None, &range()), 4, SESSION as i64 + 2)
        else {
            panic!()
        };
        assert_eq!(e.error, ResponseError::UnknownMemberId.code());
    }

    #[test]
    fn offset_commit_rules() {
        let mut g = groups(0);
        let c = |p, o| OffsetCommit {
            topic: "t".into(),
            partition: p,
            offset: o,
            leader_epoch: -1,
            metadata: String::new(),
        };
        // Standalone consumer: generation -1 on a missing or empty group.
        assert_eq!(g.validate_commit("solo", -1, "", None, 0), Ok(()));
        g.apply_commit("solo", &[c(0, 5), c(1, 6)], 0);
        assert_eq!(g.validate_commit("solo", -1, "", None, 0), Ok(()));
        assert_eq!(g.committed("solo", "t", 0).map(|o| o.offset), Some(5));
        assert_eq!(g.all_committed("solo").len(), 2);
        assert_eq!(
            g.validate_commit("nogroup", 3, "m", None, 0),
            Err(ResponseError::IllegalGeneration)
        );
        assert_eq!(
            g.validate_commit("", -1, "", None, 0),
            Err(ResponseError::InvalidGroupId)
        );
        // A managed group: members with the current generation only, not mid-rebalance.
        let (a, _) = join_new(&mut g, 1, 0);
        g.take_effects();
        assert_eq!(
            g.validate_commit("g", 1, &a, None, 0),
            Err(ResponseError::RebalanceInProgress)
        );
        let Outcome::Now(_) = g.sync("g", 1, &a, None, None, None, vec![], 2, 0) else {
            panic!()
        };
        assert_eq!(g.validate_commit("g", 1, &a, None, 0), Ok(()));
        assert_eq!(
            g.validate_commit("g", -1, "", None, 0),
            Err(ResponseError::UnknownMemberId)
        );
        assert_eq!(
            g.validate_commit("g", 0, &a, None, 0),
            Err(ResponseError::IllegalGeneration)
        );
        g.apply_commit("g", &[c(0, 42)], 0);
        assert_eq!(g.committed("g", "t", 0).map(|o| o.offset), Some(42));
        // Offsets of a subscribed topic cannot be deleted while the group is active.
        let sub = {
            let mut b = Vec::new();
            b.extend_from_slice(&0i16.to_be_bytes());
            b.extend_from_slice(&1i32.to_be_bytes());
            b.extend_from_slice(&1i16.to_be_bytes());
            b.push(b't');
            b
        };
        g.groups.get_mut("g").unwrap().members[0].protocols =
            vec![("range".into(), Bytes::from(sub))];
        assert_eq!(
            g.delete_offsets("g", &[("t".into(), 0), ("u".into(), 0)]),
            Ok(vec![ResponseError::GroupSubscribedToTopic.code(), 0])
        );
        assert_eq!(g.delete_group("g"), Err(ResponseError::NonEmptyGroup));
        assert_eq!(g.delete_group("nope"), Err(ResponseError::GroupIdNotFound));
        g.take_effects();
        assert_eq!(g.delete_offsets("solo", &[("t".into(), 0)]), Ok(vec![0]));
        let e = g.take_effects();
        assert_eq!(e.persist.len(), 1);
        assert_eq!(e.persist[0].value, None);
        assert_eq!(g.delete_group("solo"), Ok(()));
        assert_eq!(
            g.take_effects().persist.len(),
            2,
            "offset tombstone + group tombstone"
        );
        assert!(g.get("solo").is_none());
    }

    #[test]
    fn offsets_expire_after_retention() {
        const RET: i64 = 1_000;
        let mut g = groups(0);
        let c = |t: &str, p, o| OffsetCommit {
            topic: t.into(),
            partition: p,
            offset: o,
            leader_epoch: -1,
            metadata: String::new(),
        };
        let none = HashSet::new();
        // Standalone commits expire one by one, `RET` after their commit.
        g.apply_commit("solo", &[c("t", 0, 5)], 0);
        g.apply_commit("solo", &[c("t", 1, 6)], 600);
        assert_eq!(g.expire_offsets(999, RET, &none), 0);
        assert_eq!(g.expire_offsets(1_000, RET, &none), 1);
        let e = g.take_effects();
        assert_eq!(e.persist.len(), 1);
        assert_eq!(e.persist[0].key, records::offset_key("solo", "t", 0));
        assert_eq!(e.persist[0].value, None);
        assert!(g.committed("solo", "t", 1).is_some());
        // A commit still being replicated is never expired; the group stays while it waits.
        let pending: HashSet<(String, String, i32)> =
            [("solo".to_string(), "t".to_string(), 1)].into();
        assert_eq!(g.expire_offsets(5_000, RET, &pending), 0);
        assert!(g.get("solo").is_some());
        // The last offset goes, and the empty group with it (offset + group tombstones).
        assert_eq!(g.expire_offsets(5_000, RET, &none), 1);
        let e = g.take_effects();
        assert_eq!(e.persist.len(), 2);
        assert_eq!(e.persist[1].key, records::group_key("solo"));
        assert!(g.get("solo").is_none());

        // A consumer group keeps its offsets while it has members, whatever their age...
        let sub = |topic: &str| {
            let mut b = Vec::new();
            b.extend_from_slice(&0i16.to_be_bytes());
            b.extend_from_slice(&1i32.to_be_bytes());
            b.extend_from_slice(&(topic.len() as i16).to_be_bytes());
            b.extend_from_slice(topic.as_bytes());
            Bytes::from(b)
        };
        let (a, _) = join_new(&mut g, 1, 0);
        let Outcome::Now(_) = g.sync("g", 1, &a, None, None, None, vec![], 2, 0) else {
            panic!()
        };
        g.groups.get_mut("g").unwrap().members[0].protocols = vec![("range".into(), sub("t"))];
        g.groups.get_mut("g").unwrap().protocol = Some("range".into());
        g.apply_commit("g", &[c("t", 0, 42), c("old", 0, 7)], 0);
        g.take_effects();
        // ... except offsets of topics no member subscribes to (KIP-496).
        assert_eq!(g.expire_offsets(10_000, RET, &none), 1);
        assert!(g.committed("g", "old", 0).is_none());
        assert!(g.committed("g", "t", 0).is_some());
        // Once empty, everything goes `RET` after it became empty, not after the commit.
        assert_eq!(g.leave("g", &a, None, 20_000), None);
        assert_eq!(g.get("g").unwrap().state, GroupState::Empty);
        g.take_effects();
        assert_eq!(g.expire_offsets(20_999, RET, &none), 0);
        assert_eq!(g.expire_offsets(21_000, RET, &none), 1);
        assert!(g.get("g").is_none());
        let keys: Vec<Bytes> = g
            .take_effects()
            .persist
            .into_iter()
            .map(|p| p.key)
            .collect();
        assert_eq!(
            keys,
            vec![records::offset_key("g", "t", 0), records::group_key("g")]
        );
    }

    #[test]
    fn offsets_of_deleted_partitions_are_removed_without_a_rebalance() {
        let mut g = groups(0);
        let c = |t: &str, p, o| OffsetCommit {
            topic: t.into(),
            partition: p,
            offset: o,
            leader_epoch: -1,
            metadata: String::new(),
        };
        // "g" is a Stable group with one member; "solo" and "both" only have offsets.
        let (a, _) = join_new(&mut g, 1, 0);
        let Outcome::Now(_) = g.sync("g", 1, &a, None, None, None, vec![], 2, 0) else {
            panic!()
        };
        g.apply_commit("g", &[c("t", 0, 1), c("t", 2, 9), c("u", 0, 4)], 0);
        g.apply_commit("solo", &[c("t", 1, 3)], 0);
        g.apply_commit("both", &[c("t", 0, 5), c("u", 1, 6)], 0);
        g.apply_commit("other", &[c("u", 0, 8)], 0);
        g.take_effects();
        let gone = |t: &str, p: i32| t == "t" && (0..3).contains(&p);
        // A commit of "pending" to t-1 is still being replicated: it gets a tombstone too.
        let pending: HashSet<(String, String, i32)> = [
            ("pending".to_string(), "t".to_string(), 1),
            ("other".to_string(), "u".to_string(), 1),
        ]
        .into();
        assert_eq!(g.remove_offsets(|_| true, gone, &pending), 5);
        let e = g.take_effects();
        assert!(e.completions.is_empty());
        let written: Vec<(Bytes, bool)> = e
            .persist
            .iter()
            .map(|p| (p.key.clone(), p.value.is_some()))
            .collect();
        assert_eq!(
            written,
            vec![
                (records::offset_key("both", "t", 0), false),
                (records::offset_key("g", "t", 0), false),
                (records::offset_key("g", "t", 2), false),
                (records::offset_key("pending", "t", 1), false),
                (records::offset_key("solo", "t", 1), false),
                // "solo" had nothing else: it is gone, as Kafka turns it Dead.
                (records::group_key("solo"), false),
            ]
        );
        assert!(g.get("solo").is_none());
        // The group with members keeps its members, generation and state: no rebalance.
        let grp = g.get("g").unwrap();
        assert_eq!((grp.state, grp.generation), (GroupState::Stable, 1));
        assert_eq!(grp.members.len(), 1);
        // Offsets of other topics stay.
        assert_eq!(g.committed("g", "u", 0).map(|o| o.offset), Some(4));
        assert_eq!(g.committed("both", "u", 1).map(|o| o.offset), Some(6));
        assert_eq!(g.committed("other", "u", 0).map(|o| o.offset), Some(8));
        assert!(g.committed("both", "t", 0).is_none());
        // Nothing left to remove: nothing written.
        assert_eq!(g.remove_offsets(|_| true, gone, &HashSet::new()), 0);
        assert!(g.take_effects().persist.is_empty());

        // Only the groups in scope are touched; a group still waiting for a commit of another
        // partition is not removed.
        g.apply_commit("x", &[c("v", 0, 1)], 0);
        g.apply_commit("y", &[c("v", 0, 1)], 0);
        g.take_effects();
        let pending: HashSet<(String, String, i32)> =
            [("x".to_string(), "w".to_string(), 0)].into();
        assert_eq!(
            g.remove_offsets(|id| id == "x", |t, _| t == "v", &pending),
            1
        );
        assert!(g.get("x").is_some());
        assert_eq!(g.committed("y", "v", 0).map(|o| o.offset), Some(1));
        assert_eq!(g.take_effects().persist.len(), 1);
    }

    #[test]
    fn rebalance_interrupts_pending_syncs() {
        let mut g = groups(0);
        let (a, _) = join_new(&mut g, 1, 0);
        let (b, _) = join_new(&mut g, 2, 0);
        g.join(req(&a, None, &range()), 3, 0);
        g.take_effects();
        assert_eq!(
            g.sync("g", 2, &b, None, None, None, vec![], 4, 1),
            Outcome::Pending
        );
        // A new member arrives before the leader synced.
        let _ = join_new(&mut g, 5, 2);
        let e = g.take_effects();
        let s = syncs(&e);
        assert_eq!(s.len(), 1);
        assert_eq!(
            s[0],
            (4, SyncResult::error(ResponseError::RebalanceInProgress))
        );
    }

    #[test]
    fn replay_restores_latest_values_and_honours_tombstones() {
        let mut g = groups(0);
        let key = |p| records::RecordKey::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: p,
        };
        let val = |o| {
            records::offset_value(&records::OffsetValue {
                offset: o,
                leader_epoch: -1,
                metadata: String::new(),
                commit_timestamp: 1,
            })
        };
        g.replay(&key(0), Some(&val(1)), 0).unwrap();
        g.replay(&key(0), Some(&val(2)), 0).unwrap();
        g.replay(&key(1), Some(&val(3)), 0).unwrap();
        g.replay(&key(1), None, 0).unwrap();
        assert_eq!(g.committed("g", "t", 0).map(|o| o.offset), Some(2));
        assert!(g.committed("g", "t", 1).is_none());
        let gk = records::RecordKey::Group { group: "g".into() };
        let gv = records::group_value(&GroupValue {
            protocol_type: "consumer".into(),
            generation: 7,
            ..Default::default()
        });
        g.replay(&gk, Some(&gv), 0).unwrap();
        let grp = g.get("g").unwrap();
        assert_eq!((grp.state, grp.generation), (GroupState::Empty, 7));
        assert_eq!(
            grp.offsets.len(),
            1,
            "offsets survive a group metadata record"
        );
        g.replay(&gk, None, 0).unwrap();
        assert_eq!(g.get("g").unwrap().generation, 0);
    }
}
