//! Group coordination APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! OffsetCommit, OffsetFetch, ListGroups, DescribeGroups, DeleteGroups, OffsetDelete.
//!
//! These only translate between wire messages and [`crate::coordinators::group`]; the protocol
//! lives there.
//! JoinGroup and SyncGroup may answer later (when the rebalance gets there): they return
//! [`Reply::Later`] over the coordinator's oneshot channel. Fields a response version does not
//! have are left at their defaults, as kafka-protocol refuses to encode them otherwise.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest,
    OffsetFetchResponse, ResponseKind, SyncGroupRequest, SyncGroupResponse, TopicName,
    TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};
use kafka_protocol::protocol::StrBytes;

use runnel_controller::MetadataImage;

use super::{live_endpoint, s, Reply};
use crate::auth::Authorizer;
use crate::clock::now_ms;
use crate::context::RequestContext;
use crate::controller_channel::ControllerChannel;
use crate::coordinators::group::{Answer, CommitAnswer, GroupCoordinator};
use crate::coordinators::topics::ensure_internal_topic;
use crate::coordinators::txn::TxnService;
use crate::error::KafkaError;
use crate::metadata::MetadataView;
use runnel_controller::AppliedImage;
use runnel_coordinator::group::records::OffsetValue;
use runnel_coordinator::group::state::{JoinRequest, JoinResult, OffsetCommit, SyncResult};
use runnel_coordinator::group::OFFSETS_TOPIC;
use runnel_coordinator::partitioning::partition_for;
use runnel_coordinator::txn::TRANSACTION_STATE_TOPIC;
use runnel_security::acl::{AclOperation, ResourceType};
use std::sync::Arc;

/// FindCoordinator key types.
const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// What the group handlers use.
#[derive(Clone)]
pub(crate) struct GroupServices {
    pub groups: Arc<GroupCoordinator>,
    pub metadata: Arc<MetadataView>,
    /// Creates `__consumer_offsets` on the first group request.
    pub controller: Arc<ControllerChannel>,
    pub authorizer: Arc<Authorizer>,
    /// FindCoordinator also answers for transactional ids.
    pub txns: Arc<TxnService>,
}

impl GroupServices {
    fn image(&self) -> Arc<AppliedImage> {
        self.metadata.image()
    }

    /// Whether `ctx`'s principal may do `op` on the resource (a denial is logged).
    fn authorize(
        &self,
        ctx: &RequestContext,
        op: AclOperation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        self.authorizer
            .authorize(&self.image().image, ctx, op, resource_type, name)
    }
}

fn opt_str(v: Option<&StrBytes>) -> Option<String> {
    v.map(|s| s.to_string())
}

/// Whether the request's principal may do `op` on the group (logged when denied).
fn group_allowed(svc: &GroupServices, ctx: &RequestContext, op: AclOperation, group: &str) -> bool {
    svc.authorize(ctx, op, ResourceType::Group, group)
}

/// Whether the request's principal may do `op` on the topic (logged when denied).
fn topic_allowed(svc: &GroupServices, ctx: &RequestContext, op: AclOperation, topic: &str) -> bool {
    svc.authorize(ctx, op, ResourceType::Topic, topic)
}

// ---- FindCoordinator ----

/// The coordinator of one key: the leader of the key's partition of `__consumer_offsets` (for
/// groups) or `__transaction_state` (for transactional ids); COORDINATOR_NOT_AVAILABLE while
/// it has none or the topic does not exist.
fn coordinator_for(
    image: &MetadataImage,
    listener: &str,
    authorized: &dyn Fn(i8, &str) -> bool,
    key_type: i8,
    key: &str,
) -> Result<(i32, String, i32), KafkaError> {
    if !authorized(key_type, key) {
        return Err(if key_type == KEY_TYPE_TRANSACTION {
            KafkaError::new(
                ResponseError::TransactionalIdAuthorizationFailed,
                "Transactional Id authorization failed.",
            )
        } else {
            KafkaError::new(
                ResponseError::GroupAuthorizationFailed,
                "Group authorization failed.",
            )
        });
    }
    let topic_name = match key_type {
        KEY_TYPE_GROUP => OFFSETS_TOPIC,
        KEY_TYPE_TRANSACTION => TRANSACTION_STATE_TOPIC,
        other => {
            return Err(KafkaError::new(
                ResponseError::InvalidRequest,
                format!("Unsupported key type {other}."),
            ))
        }
    };
    let unavailable = |why: &str| {
        KafkaError::new(
            ResponseError::CoordinatorNotAvailable,
            format!("The coordinator is not available: {why}."),
        )
    };
    let topic = image
        .topic_by_name(topic_name)
        .ok_or_else(|| unavailable(&format!("{topic_name} does not exist yet")))?;
    let p = partition_for(key, topic.partitions.len() as i32);
    let leader = topic
        .partitions
        .get(&p)
        .map(|reg| reg.leader)
        .ok_or_else(|| unavailable(&format!("no such {topic_name} partition")))?;
    let (_, e) = live_endpoint(image, leader, listener)
        .ok_or_else(|| unavailable(&format!("{topic_name} partition {p} has no live leader")))?;
    Ok((leader, e.host.clone(), e.port as i32))
}

/// FindCoordinator (all versions; v4+ batches keys). When `__consumer_offsets` (or, for a
/// transactional id, `__transaction_state`) does not exist yet, it is created through the
/// controller first (bounded wait), as Kafka does on the first request that needs it.
pub fn find_coordinator(
    svc: &GroupServices,
    ctx: &RequestContext,
    req: FindCoordinatorRequest,
    version: i16,
) -> Reply {
    let key_type = if version >= 1 {
        req.key_type
    } else {
        KEY_TYPE_GROUP
    };
    let internal_topic = match key_type {
        KEY_TYPE_GROUP => Some(OFFSETS_TOPIC),
        KEY_TYPE_TRANSACTION => Some(TRANSACTION_STATE_TOPIC),
        _ => None,
    };
    let needs_topic = internal_topic.is_some_and(|t| svc.image().image.topic_by_name(t).is_none());
    if !needs_topic {
        let image = svc.image();
        let authorized = |kt: i8, key: &str| coordinator_key_allowed(svc, ctx, kt, key);
        return Reply::Now(ResponseKind::FindCoordinator(find_coordinator_response(
            &image.image,
            ctx.listener(),
            &authorized,
            req,
            version,
            key_type,
        )));
    }
    let svc = svc.clone();
    let ctx = ctx.clone();
    Reply::Later(Box::pin(async move {
        let spec = if key_type == KEY_TYPE_TRANSACTION {
            svc.txns.topic_spec()
        } else {
            svc.groups.topic_spec()
        };
        let created = ensure_internal_topic(&svc.metadata, &svc.controller, &spec).await;
        if let Err(e) = created {
            tracing::debug!(error = ?e, "a coordinator topic is not available yet");
        }
        let image = svc.image();
        let authorized = |kt: i8, key: &str| coordinator_key_allowed(&svc, &ctx, kt, key);
        ResponseKind::FindCoordinator(find_coordinator_response(
            &image.image,
            ctx.listener(),
            &authorized,
            req,
            version,
            key_type,
        ))
    }))
}

/// FindCoordinator needs Describe on the group (or the transactional id).
fn coordinator_key_allowed(
    svc: &GroupServices,
    ctx: &RequestContext,
    key_type: i8,
    key: &str,
) -> bool {
    let resource = if key_type == KEY_TYPE_TRANSACTION {
        ResourceType::TransactionalId
    } else {
        ResourceType::Group
    };
    svc.authorize(ctx, AclOperation::Describe, resource, key)
}

fn find_coordinator_response(
    image: &MetadataImage,
    listener: &str,
    authorized: &dyn Fn(i8, &str) -> bool,
    req: FindCoordinatorRequest,
    version: i16,
    key_type: i8,
) -> FindCoordinatorResponse {
    let mut resp = FindCoordinatorResponse::default();
    if version >= 4 {
        resp.coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|key| {
                let found = coordinator_for(image, listener, authorized, key_type, &key);
                let c = Coordinator::default().with_key(key);
                match found {
                    Ok((id, host, port)) => c
                        .with_node_id(BrokerId(id))
                        .with_host(s(&host))
                        .with_port(port),
                    Err(e) => c
                        .with_node_id(BrokerId(-1))
                        .with_port(-1)
                        .with_error_code(e.code())
                        .with_error_message(Some(s(&e.message))),
                }
            })
            .collect();
        return resp;
    }
    match coordinator_for(image, listener, authorized, key_type, &req.key) {
        Ok((id, host, port)) => {
            resp.node_id = BrokerId(id);
            resp.host = s(&host);
            resp.port = port;
        }
        Err(e) => {
            resp.error_code = e.code();
            resp.node_id = BrokerId(-1);
            resp.port = -1;
            if version >= 1 {
                resp.error_message = Some(s(&e.message));
            }
        }
    }
    resp
}

// ---- JoinGroup / SyncGroup ----

fn join_response(mut r: JoinResult, version: i16) -> JoinGroupResponse {
    // KIP-814 (see `JoinResult::skip_assignment_old_leader`): v9+ get the members and
    // SkipAssignment; older versions no members and the replaced leader's id.
    let skip_assignment = match r.skip_assignment_old_leader.take() {
        Some(_) if version >= 9 => true,
        Some(old_leader) => {
            r.leader = old_leader;
            r.members.clear();
            false
        }
        None => false,
    };
    let members = r
        .members
        .into_iter()
        .map(|m| {
            let mut out = JoinGroupResponseMember::default()
                .with_member_id(s(&m.member_id))
                .with_metadata(m.metadata);
            if version >= 5 {
                out.group_instance_id = m.group_instance_id.as_deref().map(s);
            }
            out
        })
        .collect();
    let mut resp = JoinGroupResponse::default()
        .with_error_code(r.error)
        .with_generation_id(r.generation_id)
        .with_leader(s(&r.leader))
        .with_member_id(s(&r.member_id))
        .with_members(members);
    if version >= 9 {
        resp.skip_assignment = skip_assignment;
    }
    if version >= 7 {
        resp.protocol_type = r.protocol_type.as_deref().map(s);
        resp.protocol_name = r.protocol_name.as_deref().map(s);
    } else {
        // Not nullable before v7.
        resp.protocol_name = Some(s(r.protocol_name.as_deref().unwrap_or("")));
    }
    resp
}

pub fn join_group(
    svc: &GroupServices,
    ctx: &RequestContext,
    req: JoinGroupRequest,
    version: i16,
) -> Reply {
    if !group_allowed(svc, ctx, AclOperation::Read, &req.group_id.0) {
        let r = JoinResult::error(ResponseError::GroupAuthorizationFailed, &req.member_id);
        return Reply::Now(ResponseKind::JoinGroup(join_response(r, version)));
    }
    let jr = JoinRequest {
        group_id: req.group_id.0.to_string(),
        member_id: req.member_id.to_string(),
        group_instance_id: opt_str(req.group_instance_id.as_ref()),
        client_id: ctx.client_id.clone().unwrap_or_default(),
        client_host: ctx.client_host(),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms: if version >= 1 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        },
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let member_id = jr.member_id.clone();
    match svc.groups.join(jr, now_ms()) {
        Answer::Now(r) => Reply::Now(ResponseKind::JoinGroup(join_response(r, version))),
        Answer::Later(rx) => Reply::Later(Box::pin(async move {
            let r = rx.await.unwrap_or_else(|_| {
                JoinResult::error(ResponseError::CoordinatorNotAvailable, &member_id)
            });
            ResponseKind::JoinGroup(join_response(r, version))
        })),
    }
}

fn sync_response(r: SyncResult, version: i16) -> SyncGroupResponse {
    let mut resp = SyncGroupResponse::default()
        .with_error_code(r.error)
        .with_assignment(r.assignment);
    if version >= 5 {
        resp.protocol_type = r.protocol_type.as_deref().map(s);
        resp.protocol_name = r.protocol_name.as_deref().map(s);
    }
    resp
}

pub fn sync_group(
    svc: &GroupServices,
    ctx: &RequestContext,
    req: SyncGroupRequest,
    version: i16,
) -> Reply {
    if !group_allowed(svc, ctx, AclOperation::Read, &req.group_id.0) {
        let r = SyncResult::error(ResponseError::GroupAuthorizationFailed);
        return Reply::Now(ResponseKind::SyncGroup(sync_response(r, version)));
    }
    let assignments = req
        .assignments
        .into_iter()
        .map(|a| (a.member_id.to_string(), a.assignment))
        .collect();
    let answer = svc.groups.sync(
        &req.group_id.0,
        req.generation_id,
        &req.member_id,
        req.group_instance_id.as_deref(),
        req.protocol_type.as_deref(),
        req.protocol_name.as_deref(),
        assignments,
        now_ms(),
    );
    match answer {
        Answer::Now(r) => Reply::Now(ResponseKind::SyncGroup(sync_response(r, version))),
        Answer::Later(rx) => Reply::Later(Box::pin(async move {
            let r = rx
                .await
                .unwrap_or_else(|_| SyncResult::error(ResponseError::CoordinatorNotAvailable));
            ResponseKind::SyncGroup(sync_response(r, version))
        })),
    }
}

// ---- Heartbeat / LeaveGroup ----

pub fn heartbeat(
    svc: &GroupServices,
    ctx: &RequestContext,
    req: HeartbeatRequest,
    _version: i16,
) -> HeartbeatResponse {
    if !group_allowed(svc, ctx, AclOperation::Read, &req.group_id.0) {
        return HeartbeatResponse::default()
            .with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
    let r = svc.groups.heartbeat(
        &req.group_id.0,
        req.generation_id,
        &req.member_id,
        req.group_instance_id.as_deref(),
        now_ms(),
    );
    HeartbeatResponse::default().with_error_code(r.err().map(|e| e.code()).unwrap_or(0))
}

pub fn leave_group(
    svc: &GroupServices,
    ctx: &RequestContext,
    req: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    if !group_allowed(svc, ctx, AclOperation::Read, &req.group_id.0) {
        return LeaveGroupResponse::default()
            .with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    opt_str(m.group_instance_id.as_ref()),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let results = svc.groups.leave(&req.group_id.0, &members, now_ms());
    let codes: Vec<i16> = results
        .iter()
        .map(|e| e.map(|e| e.code()).unwrap_or(0))
        .collect();
    // Kafka's LeaveGroupResponse: the top-level error is the first member error.
    let top = codes.iter().copied().find(|c| *c != 0).unwrap_or(0);
    let mut resp = LeaveGroupResponse::default().with_error_code(top);
    if version >= 3 {
        resp.members = members
            .into_iter()
            .zip(codes)
            .map(|((m, i), code)| {
                MemberResponse::default()
                    .with_member_id(s(&m))
                    .with_group_instance_id(i.as_deref().map(s))
                    .with_error_code(code)
            })
            .collect();
    }
    resp
}

// ---- Offsets ----

fn partition_exists(svc: &GroupServices, topic: &str, partition: i32) -> bool {
    !super::is_reserved_topic(topic)
        && svc
            .image()
            .image
            .topic_by_name(topic)
            .is_some_and(|t| t.partitions.contains_key(&partition))
}

/// OffsetCommit: answered once the commit is replicated to the ISR of the group's
/// `__consumer_offsets` partition (later, when followers must fetch it first).
pub fn offset_commit(
    svc: &GroupServices,
    ctx: &RequestContext,
    req: OffsetCommitRequest,
    version: i16,
) -> Reply {
    // (topic index, partition index, code); commits go to the coordinator in one call.
    let mut codes: Vec<Vec<i16>> = Vec::with_capacity(req.topics.len());
    let mut commits = Vec::new();
    let mut slots = Vec::new();
    if !group_allowed(svc, ctx, AclOperation::Read, &req.group_id.0) {
        let code = ResponseError::GroupAuthorizationFailed.code();
        let codes = req
            .topics
            .iter()
            .map(|t| vec![code; t.partitions.len()])
            .collect();
        return Reply::Now(ResponseKind::OffsetCommit(offset_commit_response(
            req, codes,
        )));
    }
    for (ti, t) in req.topics.iter().enumerate() {
        let mut tc = Vec::with_capacity(t.partitions.len());
        let topic_ok = topic_allowed(svc, ctx, AclOperation::Read, &t.name.0);
        for (pi, p) in t.partitions.iter().enumerate() {
            if !topic_ok {
                tc.push(ResponseError::TopicAuthorizationFailed.code());
                continue;
            }
            if !partition_exists(svc, &t.name.0, p.partition_index) {
                tracing::debug!(group = %req.group_id.0, topic = %t.name.0, partition = p.partition_index, "offset commit for a partition the metadata does not have");
                tc.push(ResponseError::UnknownTopicOrPartition.code());
                continue;
            }
            tc.push(0);
            slots.push((ti, pi));
            commits.push(OffsetCommit {
                topic: t.name.0.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: if version >= 6 {
                    p.committed_leader_epoch
                } else {
                    -1
                },
                metadata: p.committed_metadata.as_deref().unwrap_or("").to_string(),
            });
        }
        codes.push(tc);
    }
    if commits.is_empty() {
        return Reply::Now(ResponseKind::OffsetCommit(offset_commit_response(
            req, codes,
        )));
    }
    let answer = svc.groups.commit(
        &req.group_id.0,
        req.generation_id_or_member_epoch,
        &req.member_id,
        req.group_instance_id.as_deref(),
        commits,
        now_ms(),
    );
    let fill = |mut codes: Vec<Vec<i16>>, results: Vec<i16>| {
        for ((ti, pi), code) in slots.into_iter().zip(results) {
            codes[ti][pi] = code;
        }
        codes
    };
    match answer {
        CommitAnswer::Now(results) => Reply::Now(ResponseKind::OffsetCommit(
            offset_commit_response(req, fill(codes, results)),
        )),
        CommitAnswer::Replicating(wait) => Reply::Later(Box::pin(async move {
            let results = wait.finish().await;
            ResponseKind::OffsetCommit(offset_commit_response(req, fill(codes, results)))
        })),
    }
}

/// TxnOffsetCommit: offsets committed as part of a producer's transaction, visible once it
/// commits. Needs Write on the transactional id, Read on the group and on each topic.
pub fn txn_offset_commit(
    svc: &GroupServices,
    ctx: &RequestContext,
    req: TxnOffsetCommitRequest,
    version: i16,
) -> Reply {
    let mut codes: Vec<Vec<i16>> = Vec::with_capacity(req.topics.len());
    let mut commits = Vec::new();
    let mut slots = Vec::new();
    let refused = if !svc.authorize(
        ctx,
        AclOperation::Write,
        ResourceType::TransactionalId,
        &req.transactional_id.0,
    ) {
        Some(ResponseError::TransactionalIdAuthorizationFailed)
    } else if !group_allowed(svc, ctx, AclOperation::Read, &req.group_id.0) {
        Some(ResponseError::GroupAuthorizationFailed)
    } else {
        None
    };
    if let Some(e) = refused {
        let codes = req
            .topics
            .iter()
            .map(|t| vec![e.code(); t.partitions.len()])
            .collect();
        return Reply::Now(ResponseKind::TxnOffsetCommit(txn_offset_commit_response(
            req, codes,
        )));
    }
    for (ti, t) in req.topics.iter().enumerate() {
        let mut tc = Vec::with_capacity(t.partitions.len());
        let topic_ok = topic_allowed(svc, ctx, AclOperation::Read, &t.name.0);
        for (pi, p) in t.partitions.iter().enumerate() {
            if !topic_ok {
                tc.push(ResponseError::TopicAuthorizationFailed.code());
                continue;
            }
            if !partition_exists(svc, &t.name.0, p.partition_index) {
                tc.push(ResponseError::UnknownTopicOrPartition.code());
                continue;
            }
            tc.push(0);
            slots.push((ti, pi));
            commits.push(OffsetCommit {
                topic: t.name.0.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: if version >= 2 {
                    p.committed_leader_epoch
                } else {
                    -1
                },
                metadata: p.committed_metadata.as_deref().unwrap_or("").to_string(),
            });
        }
        codes.push(tc);
    }
    if commits.is_empty() {
        return Reply::Now(ResponseKind::TxnOffsetCommit(txn_offset_commit_response(
            req, codes,
        )));
    }
    let (generation, member) = if version >= 3 {
        (req.generation_id, req.member_id.to_string())
    } else {
        (-1, String::new())
    };
    let answer = svc.groups.commit_txn(
        &req.group_id.0,
        req.producer_id.0,
        req.producer_epoch,
        generation,
        &member,
        if version >= 3 {
            req.group_instance_id.as_deref()
        } else {
            None
        },
        commits,
        now_ms(),
    );
    // v0-1 clients know COORDINATOR_NOT_AVAILABLE, not COORDINATOR_LOAD_IN_PROGRESS.
    let fill = move |mut codes: Vec<Vec<i16>>, results: Vec<i16>| {
        for ((ti, pi), code) in slots.into_iter().zip(results) {
            codes[ti][pi] =
                if version < 2 && code == ResponseError::CoordinatorLoadInProgress.code() {
                    ResponseError::CoordinatorNotAvailable.code()
                } else {
                    code
                };
        }
        codes
    };
    match answer {
        CommitAnswer::Now(results) => Reply::Now(ResponseKind::TxnOffsetCommit(
            txn_offset_commit_response(req, fill(codes, results)),
        )),
        CommitAnswer::Replicating(wait) => Reply::Later(Box::pin(async move {
            let results = wait.finish().await;
            ResponseKind::TxnOffsetCommit(txn_offset_commit_response(req, fill(codes, results)))
        })),
    }
}

fn txn_offset_commit_response(
    req: TxnOffsetCommitRequest,
    codes: Vec<Vec<i16>>,
) -> TxnOffsetCommitResponse {
    let topics = req
        .topics
        .into_iter()
        .zip(codes)
        .map(|(t, tc)| {
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(
                    t.partitions
                        .iter()
                        .zip(tc)
                        .map(|(p, code)| {
                            TxnOffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}

fn offset_commit_response(req: OffsetCommitRequest, codes: Vec<Vec<i16>>) -> OffsetCommitResponse {
    let topics = req
        .topics
        .into_iter()
        .zip(codes)
        .map(|(t, tc)| {
            OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(
                    t.partitions
                        .iter()
                        .zip(tc)
                        .map(|(p, code)| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// (offset, leader epoch, metadata) of a committed offset, or Kafka's "none" answer.
fn offset_fields(v: Option<&OffsetValue>) -> (i64, i32, StrBytes) {
    match v {
        Some(v) => (v.offset, v.leader_epoch, s(&v.metadata)),
        None => (-1, -1, s("")),
    }
}

type FetchedOffsets = indexmap::IndexMap<String, Vec<(i32, Option<OffsetValue>)>>;

/// A group's committed offsets as the principal may see them: Describe on the group
/// (GROUP_AUTHORIZATION_FAILED), and on each topic: a topic the client named but may not
/// describe is answered TOPIC_AUTHORIZATION_FAILED (the second value lists them); asked for all
/// topics, such topics are left out, as in Kafka.
fn fetch_group(
    svc: &GroupServices,
    ctx: &RequestContext,
    group: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> Result<(FetchedOffsets, std::collections::HashSet<String>), ResponseError> {
    if !group_allowed(svc, ctx, AclOperation::Describe, group) {
        return Err(ResponseError::GroupAuthorizationFailed);
    }
    let image = svc.image();
    let authz = &svc.authorizer;
    let named = topics.is_some();
    let mut denied = std::collections::HashSet::new();
    let topics = topics.map(|ts| {
        ts.into_iter()
            .filter(|(t, _)| {
                let ok = authz.authorize(
                    &image.image,
                    ctx,
                    AclOperation::Describe,
                    ResourceType::Topic,
                    t,
                );
                if !ok {
                    denied.insert(t.clone());
                }
                ok
            })
            .collect::<Vec<_>>()
    });
    let mut fetched = svc.groups.fetch(group, topics.as_deref())?;
    if !named {
        fetched.retain(|t, _| {
            authz.allows_quietly(
                &image.image,
                ctx,
                AclOperation::Describe,
                ResourceType::Topic,
                t,
            )
        });
    }
    Ok((fetched, denied))
}

pub fn offset_fetch(
    svc: &GroupServices,
    ctx: &RequestContext,
    req: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    let mut resp = OffsetFetchResponse::default();
    // KIP-447: a partition with an offset commit still pending (a transaction's, or one not
    // yet replicated) answers UNSTABLE_OFFSET_COMMIT, and the client retries.
    let require_stable = version >= 7 && req.require_stable;
    let unstable = |group: &str, topic: &str, p: i32| {
        require_stable && svc.groups.has_pending_txn_offsets(group, topic, p)
    };
    if version >= 8 {
        resp.groups = req
            .groups
            .into_iter()
            .map(|g| {
                let topics = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes))
                        .collect()
                });
                let requested: Vec<(String, Vec<i32>)> = topics.clone().unwrap_or_default();
                let group_name = g.group_id.0.to_string();
                let (fetched, denied) = match fetch_group(svc, ctx, &g.group_id.0, topics) {
                    Ok(f) => f,
                    Err(e) => {
                        return OffsetFetchResponseGroup::default()
                            .with_group_id(g.group_id)
                            .with_error_code(e.code())
                    }
                };
                let denied_topics = requested
                    .into_iter()
                    .filter(|(t, _)| denied.contains(t))
                    .map(|(t, parts)| {
                        OffsetFetchResponseTopics::default()
                            .with_name(TopicName(s(&t)))
                            .with_partitions(
                                parts
                                    .into_iter()
                                    .map(|p| {
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(-1)
                                            .with_committed_leader_epoch(-1)
                                            .with_metadata(Some(s("")))
                                            .with_error_code(
                                                ResponseError::TopicAuthorizationFailed.code(),
                                            )
                                    })
                                    .collect(),
                            )
                    });
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_topics(
                        fetched
                            .into_iter()
                            .map(|(t, parts)| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(TopicName(s(&t)))
                                    .with_partitions(
                                        parts
                                            .into_iter()
                                            .map(|(p, v)| {
                                                if unstable(&group_name, &t, p) {
                                                    return OffsetFetchResponsePartitions::default(
                                                    )
                                                    .with_partition_index(p)
                                                    .with_committed_offset(-1)
                                                    .with_committed_leader_epoch(-1)
                                                    .with_metadata(Some(s("")))
                                                    .with_error_code(
                                                        ResponseError::UnstableOffsetCommit.code(),
                                                    );
                                                }
                                                let (offset, epoch, meta) =
                                                    offset_fields(v.as_ref());
                                                OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(p)
                                                    .with_committed_offset(offset)
                                                    .with_committed_leader_epoch(epoch)
                                                    .with_metadata(Some(meta))
                                            })
                                            .collect(),
                                    )
                            })
                            .chain(denied_topics)
                            .collect(),
                    )
            })
            .collect();
        return resp;
    }
    let topics = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    let requested = topics.clone();
    let (fetched, denied) = match fetch_group(svc, ctx, &req.group_id.0, topics) {
        Ok(f) => f,
        Err(e) => {
            if version >= 2 {
                resp.error_code = e.code();
            } else {
                // v1 has no top-level error: every requested partition carries it.
                resp.topics = requested
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(t, parts)| {
                        OffsetFetchResponseTopic::default()
                            .with_name(TopicName(s(&t)))
                            .with_partitions(
                                parts
                                    .into_iter()
                                    .map(|p| {
                                        OffsetFetchResponsePartition::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(-1)
                                            .with_metadata(Some(s("")))
                                            .with_error_code(e.code())
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
            }
            return resp;
        }
    };
    let denied_topics: Vec<OffsetFetchResponseTopic> = requested
        .unwrap_or_default()
        .into_iter()
        .filter(|(t, _)| denied.contains(t))
        .map(|(t, parts)| {
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(s(&t)))
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|p| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(-1)
                                .with_metadata(Some(s("")))
                                .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                        })
                        .collect(),
                )
        })
        .collect();
    resp.topics = fetched
        .into_iter()
        .map(|(t, parts)| {
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(s(&t)))
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|(p, v)| {
                            if unstable(&req.group_id.0, &t, p) {
                                return OffsetFetchResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(-1)
                                    .with_metadata(Some(s("")))
                                    .with_error_code(ResponseError::UnstableOffsetCommit.code());
                            }
                            let (offset, epoch, meta) = offset_fields(v.as_ref());
                            let mut out = OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(offset)
                                .with_metadata(Some(meta));
                            if version >= 5 {
                                out.committed_leader_epoch = epoch;
                            }
                            out
                        })
                        .collect(),
                )
        })
        .chain(denied_topics)
        .collect();
    resp
}

// ---- Administration ----

pub fn list_groups(
    svc: &GroupServices,
    ctx: &RequestContext,
    req: ListGroupsRequest,
    version: i16,
) -> ListGroupsResponse {
    let states: Vec<String> = req.states_filter.iter().map(|s| s.to_lowercase()).collect();
    let types: Vec<String> = req.types_filter.iter().map(|s| s.to_lowercase()).collect();
    // Describe on the cluster lists every group; otherwise only groups the client may
    // describe, as in Kafka.
    let image = svc.image();
    let authz = &svc.authorizer;
    let all = authz.allows_quietly(
        &image.image,
        ctx,
        AclOperation::Describe,
        ResourceType::Cluster,
        runnel_security::acl::CLUSTER_NAME,
    );
    let groups = svc
        .groups
        .list()
        .into_iter()
        .filter(|(id, _, _)| {
            all || authz.allows_quietly(
                &image.image,
                ctx,
                AclOperation::Describe,
                ResourceType::Group,
                id,
            )
        })
        .filter(|(_, _, state)| states.is_empty() || states.contains(&state.to_lowercase()))
        // Every group here is a classic group.
        .filter(|_| types.is_empty() || types.iter().any(|t| t == "classic"))
        .map(|(id, protocol_type, state)| {
            let mut g = ListedGroup::default()
                .with_group_id(GroupId(s(&id)))
                .with_protocol_type(s(&protocol_type));
            if version >= 4 {
                g.group_state = s(state);
            }
            if version >= 5 {
                g.group_type = s("classic");
            }
            g
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}

pub fn describe_groups(
    svc: &GroupServices,
    ctx: &RequestContext,
    req: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let groups = req
        .groups
        .into_iter()
        .map(|id| {
            let out = DescribedGroup::default().with_group_id(id.clone());
            if !group_allowed(svc, ctx, AclOperation::Describe, &id.0) {
                return out
                    .with_error_code(ResponseError::GroupAuthorizationFailed.code())
                    .with_group_state(s(""));
            }
            match svc.groups.describe(&id.0) {
                Err(e) => out.with_error_code(e.code()).with_group_state(s("")),
                Ok(None) if version >= 6 => out
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(s(&format!("Group {} not found.", &*id.0))))
                    .with_group_state(s("Dead")),
                Ok(None) => out.with_group_state(s("Dead")),
                Ok(Some(d)) => out
                    .with_group_state(s(d.state.name()))
                    .with_protocol_type(s(&d.protocol_type))
                    .with_protocol_data(s(&d.protocol))
                    .with_members(
                        d.members
                            .into_iter()
                            .map(|m| {
                                let mut dm = DescribedGroupMember::default()
                                    .with_member_id(s(&m.member_id))
                                    .with_client_id(s(&m.client_id))
                                    .with_client_host(s(&m.client_host))
                                    .with_member_metadata(m.metadata)
                                    .with_member_assignment(m.assignment);
                                if version >= 4 {
                                    dm.group_instance_id = m.group_instance_id.as_deref().map(s);
                                }
                                dm
                            })
                            .collect(),
                    ),
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

pub fn delete_groups(
    svc: &GroupServices,
    ctx: &RequestContext,
    req: DeleteGroupsRequest,
    _version: i16,
) -> DeleteGroupsResponse {
    let results = req
        .groups_names
        .into_iter()
        .map(|id| {
            let code = if !group_allowed(svc, ctx, AclOperation::Delete, &id.0) {
                ResponseError::GroupAuthorizationFailed.code()
            } else {
                svc.groups
                    .delete_group(&id.0)
                    .err()
                    .map(|e| e.code())
                    .unwrap_or(0)
            };
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(code)
        })
        .collect();
    DeleteGroupsResponse::default().with_results(results)
}

pub fn offset_delete(
    svc: &GroupServices,
    ctx: &RequestContext,
    req: OffsetDeleteRequest,
    _version: i16,
) -> OffsetDeleteResponse {
    if !group_allowed(svc, ctx, AclOperation::Delete, &req.group_id.0) {
        return OffsetDeleteResponse::default()
            .with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
    let mut wanted = Vec::new();
    let mut codes: Vec<Vec<i16>> = Vec::new();
    for t in &req.topics {
        let mut tc = Vec::new();
        let topic_ok = topic_allowed(svc, ctx, AclOperation::Read, &t.name.0);
        for p in &t.partitions {
            if !topic_ok {
                tc.push(ResponseError::TopicAuthorizationFailed.code());
            } else if partition_exists(svc, &t.name.0, p.partition_index) {
                wanted.push((t.name.0.to_string(), p.partition_index));
                tc.push(0);
            } else {
                tc.push(ResponseError::UnknownTopicOrPartition.code());
            }
        }
        codes.push(tc);
    }
    let results = match svc.groups.delete_offsets(&req.group_id.0, &wanted) {
        Ok(r) => r,
        Err(e) => return OffsetDeleteResponse::default().with_error_code(e.code()),
    };
    let mut it = results.into_iter();
    for tc in codes.iter_mut() {
        for c in tc.iter_mut() {
            if *c == 0 {
                *c = it.next().unwrap_or(0);
            }
        }
    }
    let topics = req
        .topics
        .into_iter()
        .zip(codes)
        .map(|(t, tc)| {
            OffsetDeleteResponseTopic::default()
                .with_name(t.name)
                .with_partitions(
                    t.partitions
                        .iter()
                        .zip(tc)
                        .map(|(p, code)| {
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::leave_group_request::MemberIdentity;
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::offset_delete_request::{
        OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
    };
    use kafka_protocol::messages::offset_fetch_request::{
        OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
    };
    use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
    use kafka_protocol::messages::{ApiKey, CreateTopicsRequest};

    use super::*;
    use crate::handlers::encode_response;
    use crate::{BoundServer, BrokerConfig};

    async fn broker(dir: &std::path::Path) -> BoundServer {
        let props: Vec<(String, String)> = [
            ("log.dirs", dir.to_str().unwrap()),
            ("listeners", "PLAINTEXT://127.0.0.1:0"),
            ("group.initial.rebalance.delay.ms", "0"),
            ("offsets.topic.num.partitions", "3"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let config = BrokerConfig::from_properties(&props).unwrap();
        BoundServer::bind(config).await.unwrap()
    }

    fn versions(key: ApiKey) -> std::ops::RangeInclusive<i16> {
        let (min, max) = runnel_protocol::versions::advertised(key).unwrap();
        min..=max
    }

    async fn reply(r: Reply) -> ResponseKind {
        match r {
            Reply::Now(k) => k,
            Reply::Later(f) => f.await,
            Reply::LaterOrNone(f) => f.await.expect("group APIs always answer"),
            Reply::Ordered(f, _) => f.await.expect("group APIs always answer"),
            Reply::NoResponse => panic!("group APIs always answer"),
        }
    }

    fn encodes(key: ApiKey, version: i16, body: &ResponseKind) {
        if let Err(e) = encode_response(1, key, version, body) {
            panic!("{key:?} v{version}: {e}");
        }
    }

    /// KIP-814: a static leader's rejoin of a stable group gets SkipAssignment and the members
    /// on v9; before v9 no members and the replaced leader's id, so it does not act as leader.
    #[test]
    fn static_leader_rejoin_answer_by_version() {
        use runnel_coordinator::group::state::JoinedMember;
        let r = JoinResult {
            error: 0,
            generation_id: 3,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            leader: "new".into(),
            member_id: "new".into(),
            members: ["new", "other"]
                .iter()
                .map(|m| JoinedMember {
                    member_id: m.to_string(),
                    group_instance_id: Some(format!("i-{m}")),
                    metadata: Bytes::from_static(b"m"),
                })
                .collect(),
            skip_assignment_old_leader: Some("old".into()),
        };
        let v9 = join_response(r.clone(), 9);
        assert!(v9.skip_assignment);
        assert_eq!((&*v9.leader, v9.members.len()), ("new", 2));
        for v in [5, 8] {
            let old = join_response(r.clone(), v);
            assert!(!old.skip_assignment);
            assert_eq!((&*old.leader, &*old.member_id), ("old", "new"));
            assert!(old.members.is_empty());
            encodes(ApiKey::JoinGroup, v, &ResponseKind::JoinGroup(old));
        }
        encodes(ApiKey::JoinGroup, 9, &ResponseKind::JoinGroup(v9));
    }

    /// Every advertised version of every group API produces a response kafka-protocol can
    /// encode (fields absent from a version must stay at their defaults).
    #[tokio::test]
    async fn every_advertised_version_encodes() {
        let dir = tempfile::tempdir().unwrap();
        let server = broker(dir.path()).await;
        let b = super::super::group_services(&server.broker);
        let create = CreateTopicsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(s("t")))
                .with_num_partitions(2)
                .with_replication_factor(1)]);
        let ResponseKind::CreateTopics(created) = reply(crate::handlers::admin::create_topics(
            &super::super::AdminServices::new(&server.broker),
            &crate::context::RequestContext::internal(
                kafka_protocol::messages::ApiKey::Metadata,
                0,
            ),
            create,
            7,
        ))
        .await
        else {
            panic!()
        };
        assert_eq!(created.topics[0].error_code, 0, "{:?}", created.topics[0]);
        for v in versions(ApiKey::FindCoordinator) {
            for key_type in [0, 1] {
                let req = FindCoordinatorRequest::default()
                    .with_key(s("g"))
                    .with_key_type(if v >= 1 { key_type } else { 0 })
                    .with_coordinator_keys(if v >= 4 { vec![s("g")] } else { vec![] });
                let ResponseKind::FindCoordinator(resp) = reply(find_coordinator(
                    &b,
                    &crate::context::RequestContext::internal(
                        kafka_protocol::messages::ApiKey::Metadata,
                        0,
                    ),
                    req,
                    v,
                ))
                .await
                else {
                    panic!()
                };
                if key_type == 0 {
                    let ok = if v >= 4 {
                        resp.coordinators[0].error_code
                    } else {
                        resp.error_code
                    };
                    assert_eq!(ok, 0);
                }
                encodes(
                    ApiKey::FindCoordinator,
                    v,
                    &ResponseKind::FindCoordinator(resp),
                );
            }
        }
        for v in versions(ApiKey::JoinGroup) {
            let group = GroupId(s(&format!("g{v}")));
            let join = |member: &str| {
                JoinGroupRequest::default()
                    .with_group_id(group.clone())
                    .with_session_timeout_ms(10_000)
                    .with_rebalance_timeout_ms(10_000)
                    .with_member_id(s(member))
                    .with_protocol_type(s("consumer"))
                    .with_protocols(vec![JoinGroupRequestProtocol::default()
                        .with_name(s("range"))
                        .with_metadata(Bytes::from_static(b"meta"))])
            };
            let mut resp = reply(join_group(
                &b,
                &crate::context::RequestContext::internal(ApiKey::JoinGroup, 0),
                join(""),
                v,
            ))
            .await;
            encodes(ApiKey::JoinGroup, v, &resp);
            if v >= 4 {
                let ResponseKind::JoinGroup(r) = &resp else {
                    panic!()
                };
                assert_eq!(r.error_code, ResponseError::MemberIdRequired.code());
                let id = r.member_id.to_string();
                resp = reply(join_group(
                    &b,
                    &crate::context::RequestContext::internal(ApiKey::JoinGroup, 0),
                    join(&id),
                    v,
                ))
                .await;
                encodes(ApiKey::JoinGroup, v, &resp);
            }
            let ResponseKind::JoinGroup(r) = resp else {
                panic!()
            };
            assert_eq!((r.error_code, r.generation_id), (0, 1));
            let member = r.member_id.clone();
            let sv = v.min(5);
            let sync = SyncGroupRequest::default()
                .with_group_id(group.clone())
                .with_generation_id(1)
                .with_member_id(member.clone())
                .with_assignments(vec![SyncGroupRequestAssignment::default()
                    .with_member_id(member.clone())
                    .with_assignment(Bytes::from_static(b"asg"))]);
            let resp = reply(sync_group(
                &b,
                &crate::context::RequestContext::internal(
                    kafka_protocol::messages::ApiKey::Metadata,
                    0,
                ),
                sync,
                sv,
            ))
            .await;
            encodes(ApiKey::SyncGroup, sv, &resp);
            let ResponseKind::SyncGroup(r) = resp else {
                panic!()
            };
            assert_eq!((r.error_code, &r.assignment[..]), (0, &b"asg"[..]));
            for hv in versions(ApiKey::Heartbeat) {
                let hb = HeartbeatRequest::default()
                    .with_group_id(group.clone())
                    .with_generation_id(1)
                    .with_member_id(member.clone());
                let r = heartbeat(
                    &b,
                    &crate::context::RequestContext::internal(
                        kafka_protocol::messages::ApiKey::Metadata,
                        0,
                    ),
                    hb,
                    hv,
                );
                assert_eq!(r.error_code, 0);
                encodes(ApiKey::Heartbeat, hv, &ResponseKind::Heartbeat(r));
            }
            for cv in versions(ApiKey::OffsetCommit) {
                let req = OffsetCommitRequest::default()
                    .with_group_id(group.clone())
                    .with_generation_id_or_member_epoch(1)
                    .with_member_id(member.clone())
                    .with_topics(vec![OffsetCommitRequestTopic::default()
                        .with_name(TopicName(s("t")))
                        .with_partitions(vec![
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(cv as i64),
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(9)
                                .with_committed_offset(1),
                        ])]);
                let ResponseKind::OffsetCommit(r) = reply(offset_commit(
                    &b,
                    &crate::context::RequestContext::internal(
                        kafka_protocol::messages::ApiKey::Metadata,
                        0,
                    ),
                    req,
                    cv,
                ))
                .await
                else {
                    panic!("not an OffsetCommit response");
                };
                let codes: Vec<i16> = r.topics[0]
                    .partitions
                    .iter()
                    .map(|p| p.error_code)
                    .collect();
                assert_eq!(
                    codes,
                    vec![0, ResponseError::UnknownTopicOrPartition.code()]
                );
                encodes(ApiKey::OffsetCommit, cv, &ResponseKind::OffsetCommit(r));
            }
            for fv in versions(ApiKey::OffsetFetch) {
                let req = if fv >= 8 {
                    OffsetFetchRequest::default().with_groups(vec![
                        OffsetFetchRequestGroup::default()
                            .with_group_id(group.clone())
                            .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                                .with_name(TopicName(s("t")))
                                .with_partition_indexes(vec![0, 1])])),
                    ])
                } else {
                    OffsetFetchRequest::default()
                        .with_group_id(group.clone())
                        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                            .with_name(TopicName(s("t")))
                            .with_partition_indexes(vec![0, 1])]))
                };
                let r = offset_fetch(
                    &b,
                    &crate::context::RequestContext::internal(
                        kafka_protocol::messages::ApiKey::Metadata,
                        0,
                    ),
                    req,
                    fv,
                );
                let offsets: Vec<i64> = if fv >= 8 {
                    r.groups[0].topics[0]
                        .partitions
                        .iter()
                        .map(|p| p.committed_offset)
                        .collect()
                } else {
                    r.topics[0]
                        .partitions
                        .iter()
                        .map(|p| p.committed_offset)
                        .collect()
                };
                let last = *versions(ApiKey::OffsetCommit).end() as i64;
                assert_eq!(offsets, vec![last, -1]);
                encodes(ApiKey::OffsetFetch, fv, &ResponseKind::OffsetFetch(r));
            }
            let lv = v.min(5);
            let leave = if lv >= 3 {
                LeaveGroupRequest::default()
                    .with_group_id(group.clone())
                    .with_members(vec![
                        MemberIdentity::default().with_member_id(member.clone())
                    ])
            } else {
                LeaveGroupRequest::default()
                    .with_group_id(group.clone())
                    .with_member_id(member.clone())
            };
            let r = leave_group(
                &b,
                &crate::context::RequestContext::internal(
                    kafka_protocol::messages::ApiKey::Metadata,
                    0,
                ),
                leave,
                lv,
            );
            assert_eq!(r.error_code, 0);
            encodes(ApiKey::LeaveGroup, lv, &ResponseKind::LeaveGroup(r));
        }
        for v in versions(ApiKey::ListGroups) {
            let r = list_groups(
                &b,
                &crate::context::RequestContext::internal(
                    kafka_protocol::messages::ApiKey::Metadata,
                    0,
                ),
                ListGroupsRequest::default(),
                v,
            );
            assert_eq!(r.groups.len(), 9);
            encodes(ApiKey::ListGroups, v, &ResponseKind::ListGroups(r));
        }
        for v in versions(ApiKey::DescribeGroups) {
            let req = DescribeGroupsRequest::default()
                .with_groups(vec![GroupId(s("g5")), GroupId(s("missing"))]);
            let r = describe_groups(
                &b,
                &crate::context::RequestContext::internal(
                    kafka_protocol::messages::ApiKey::Metadata,
                    0,
                ),
                req,
                v,
            );
            assert_eq!(r.groups[0].group_state.as_str(), "Empty");
            encodes(ApiKey::DescribeGroups, v, &ResponseKind::DescribeGroups(r));
        }
        let del = OffsetDeleteRequest::default()
            .with_group_id(GroupId(s("g5")))
            .with_topics(vec![OffsetDeleteRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(vec![
                    OffsetDeleteRequestPartition::default().with_partition_index(0)
                ])]);
        let r = offset_delete(
            &b,
            &crate::context::RequestContext::internal(
                kafka_protocol::messages::ApiKey::Metadata,
                0,
            ),
            del,
            0,
        );
        assert_eq!((r.error_code, r.topics[0].partitions[0].error_code), (0, 0));
        encodes(ApiKey::OffsetDelete, 0, &ResponseKind::OffsetDelete(r));
        for v in versions(ApiKey::DeleteGroups) {
            let req = DeleteGroupsRequest::default().with_groups_names(vec![
                GroupId(s(&format!("g{}", v + 1))),
                GroupId(s("missing")),
            ]);
            let r = delete_groups(
                &b,
                &crate::context::RequestContext::internal(
                    kafka_protocol::messages::ApiKey::Metadata,
                    0,
                ),
                req,
                v,
            );
            assert_eq!(r.results[0].error_code, 0);
            assert_eq!(
                r.results[1].error_code,
                ResponseError::GroupIdNotFound.code()
            );
            encodes(ApiKey::DeleteGroups, v, &ResponseKind::DeleteGroups(r));
        }
        drop(b);
        server.close().await;
    }
}
