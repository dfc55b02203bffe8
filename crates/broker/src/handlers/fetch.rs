//! Fetch: reads raw batch bytes up to the high watermark, honouring `max_bytes`,
//! `partition_max_bytes` (KIP-74: the first batch is returned even when larger), and long-polls
//! on `max_wait_ms`/`min_bytes`, woken by appends to any of the fetched partitions.
//!
//! Only the partition's leader serves a fetch; `current_leader_epoch` is checked (FENCED or
//! UNKNOWN_LEADER_EPOCH), and NOT_LEADER_OR_FOLLOWER carries the current leader as a KIP-951
//! hint from v12 (with its endpoint from v16). A leadership change ends a long poll.
//!
//! A response carries at most `fetch.max.bytes` of records whatever the request asks for, and a
//! partition (or topic) listed twice is answered once, for its last entry, as Kafka does.
//!
//! Fetch sessions (KIP-227) are not implemented: every response carries session id 0, which
//! clients treat as "send full fetch requests", and a request naming a session gets
//! FETCH_SESSION_ID_NOT_FOUND.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::FetchTopic;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
};
use kafka_protocol::messages::{
    BrokerId, FetchRequest, FetchResponse, ProducerId, ResponseKind, TopicName,
};
use tokio::sync::watch;
use uuid::Uuid;

use super::{hint_endpoints, leader_hint, leader_partition, Reply};
use crate::auth::Authorizer;
use crate::context::RequestContext;
use crate::error;
use crate::fence::Fence;
use crate::metadata::MetadataView;
use crate::replica::ReplicaManager;
use runnel_security::acl::{AclOperation, ResourceType};

/// Longest long-poll we honour, whatever the client asks for.
const MAX_WAIT_CAP_MS: i32 = 30_000;

struct PartReq {
    partition: i32,
    offset: i64,
    max_bytes: i32,
    leader_epoch: i32,
}

struct TopicReq {
    name: Option<String>,
    /// Read on the topic (checked once per request).
    authorized: bool,
    id: Uuid,
    wire_name: TopicName,
    parts: Vec<PartReq>,
}

struct Plan {
    version: i16,
    /// The listener the request came on: leader hints give its addresses.
    listener: std::sync::Arc<str>,
    max_bytes: usize,
    read_committed: bool,
    topics: Vec<TopicReq>,
}

/// What a fetch reads through; a long poll holds it until it answers.
#[derive(Clone)]
pub(crate) struct FetchSource {
    pub partitions: Arc<ReplicaManager>,
    pub fence: Arc<Fence>,
    pub metadata: Arc<MetadataView>,
    /// `fetch.max.bytes`.
    pub max_bytes: usize,
}

pub fn handle(
    source: &FetchSource,
    authorizer: &Authorizer,
    ctx: &RequestContext,
    req: FetchRequest,
    version: i16,
) -> Reply {
    if version >= 7 && req.session_id != 0 {
        return Reply::Now(ResponseKind::Fetch(
            FetchResponse::default().with_error_code(ResponseError::FetchSessionIdNotFound.code()),
        ));
    }
    let image = source.metadata.serving_image();
    let topics = dedupe(req.topics)
        .into_iter()
        .map(|t| {
            let name = if version >= 13 {
                image.image.topic(&t.topic_id).map(|m| m.name.clone())
            } else {
                Some(t.topic.0.to_string())
            };
            let authorized = name.as_deref().is_some_and(|n| {
                authorizer.authorize(
                    &image.image,
                    ctx,
                    AclOperation::Read,
                    ResourceType::Topic,
                    n,
                )
            });
            TopicReq {
                name,
                authorized,
                id: t.topic_id,
                wire_name: t.topic,
                parts: t
                    .partitions
                    .into_iter()
                    .map(|p| PartReq {
                        partition: p.partition,
                        offset: p.fetch_offset,
                        max_bytes: p.partition_max_bytes,
                        leader_epoch: p.current_leader_epoch,
                    })
                    .collect(),
            }
        })
        .collect();
    let plan = Plan {
        version,
        listener: ctx.connection.listener.clone(),
        max_bytes: if req.max_bytes <= 0 {
            source.max_bytes
        } else {
            (req.max_bytes as usize).min(source.max_bytes)
        },
        read_committed: req.isolation_level == 1,
        topics,
    };
    let min_bytes = req.min_bytes.max(0) as usize;
    let max_wait = req.max_wait_ms.clamp(0, MAX_WAIT_CAP_MS);

    // Subscribe before the first read, so an append between the read and the wait still wakes us.
    let mut watchers: Vec<watch::Receiver<i64>> = Vec::new();
    for t in &plan.topics {
        let Some(name) = t.name.as_deref().filter(|_| t.authorized) else {
            continue;
        };
        for p in &t.parts {
            if let Some(partition) = source.partitions.get_by(name, p.partition) {
                watchers.push(partition.subscribe());
            }
        }
    }

    let (resp, bytes, errored) = read_all(source, &plan);
    if bytes >= min_bytes || errored || max_wait == 0 || watchers.is_empty() {
        return Reply::Now(ResponseKind::Fetch(resp));
    }
    let source = source.clone();
    Reply::Later(Box::pin(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(max_wait as u64);
        loop {
            let any_change =
                futures::future::select_all(watchers.iter_mut().map(|w| Box::pin(w.changed())));
            if tokio::time::timeout_at(deadline, any_change).await.is_err() {
                break;
            }
            let (resp, bytes, errored) = read_all(&source, &plan);
            if bytes >= min_bytes || errored {
                return ResponseKind::Fetch(resp);
            }
        }
        ResponseKind::Fetch(read_all(&source, &plan).0)
    }))
}

/// The request's topics with each topic and each partition once: a repeated entry replaces
/// the earlier one in its place (Kafka keeps the last).
fn dedupe(topics: Vec<FetchTopic>) -> Vec<FetchTopic> {
    let mut out: Vec<FetchTopic> = Vec::with_capacity(topics.len());
    let mut topic_at: HashMap<(TopicName, Uuid), usize> = HashMap::new();
    let mut partition_at: Vec<HashMap<i32, usize>> = Vec::new();
    for t in topics {
        let i = *topic_at
            .entry((t.topic.clone(), t.topic_id))
            .or_insert_with(|| {
                out.push(
                    FetchTopic::default()
                        .with_topic(t.topic.clone())
                        .with_topic_id(t.topic_id),
                );
                partition_at.push(HashMap::new());
                out.len() - 1
            });
        let parts = &mut out[i].partitions;
        for p in t.partitions {
            match partition_at[i].get(&p.partition) {
                Some(&j) => parts[j] = p,
                None => {
                    partition_at[i].insert(p.partition, parts.len());
                    parts.push(p);
                }
            }
        }
    }
    out
}

/// One pass over every requested partition. Returns the response, the bytes of records in it,
/// and whether any partition had an error (which ends a long poll, as in Kafka).
fn read_all(source: &FetchSource, plan: &Plan) -> (FetchResponse, usize, bool) {
    let version = plan.version;
    let image = source.metadata.serving_image();
    let mut hinted = BTreeSet::new();
    let mut total = 0usize;
    let mut errored = false;
    let mut remaining = plan.max_bytes;
    let mut responses = Vec::with_capacity(plan.topics.len());
    for t in &plan.topics {
        let mut parts = Vec::with_capacity(t.parts.len());
        for p in &t.parts {
            let mut pd = PartitionData::default()
                .with_partition_index(p.partition)
                .with_records(Some(Bytes::new()));
            pd.aborted_transactions = if plan.read_committed {
                Some(vec![])
            } else {
                None
            };
            let partition = match t.name.as_deref() {
                None => Err(if version >= 13 {
                    ResponseError::UnknownTopicId
                } else {
                    ResponseError::UnknownTopicOrPartition
                }),
                Some(_) if !t.authorized => Err(ResponseError::TopicAuthorizationFailed),
                Some(n) => leader_partition(
                    &source.partitions,
                    &source.fence,
                    &image.image,
                    n,
                    p.partition,
                    p.leader_epoch,
                ),
            };
            let partition = match partition {
                Ok(partition) => partition,
                Err(e) => {
                    pd.error_code = e.code();
                    pd.high_watermark = -1;
                    // KIP-951: tell the client where the partition moved.
                    if version >= 12
                        && matches!(
                            e,
                            ResponseError::NotLeaderOrFollower | ResponseError::FencedLeaderEpoch
                        )
                    {
                        if let Some((leader, epoch)) = t.name.as_deref().and_then(|n| {
                            leader_hint(&source.metadata.image().image, n, p.partition)
                        }) {
                            pd.current_leader = LeaderIdAndEpoch::default()
                                .with_leader_id(BrokerId(leader))
                                .with_leader_epoch(epoch);
                            hinted.insert(leader);
                        }
                    }
                    errored = true;
                    parts.push(pd);
                    continue;
                }
            };
            let hw = partition.high_watermark();
            let lso = partition.last_stable_offset();
            pd.high_watermark = hw;
            pd.last_stable_offset = lso;
            // read_committed stops at the last stable offset (KIP-98).
            let bound = if plan.read_committed { lso } else { hw };
            if version >= 5 {
                pd.log_start_offset = partition.log_start_offset();
            }
            let limit = (p.max_bytes.max(0) as usize).min(remaining);
            let min_one = total == 0;
            if limit == 0 && !min_one {
                parts.push(pd);
                continue;
            }
            match partition.read_upto(p.offset, limit, min_one, bound) {
                Ok(bytes) => {
                    total += bytes.len();
                    remaining = remaining.saturating_sub(bytes.len());
                    if plan.read_committed {
                        let upper = last_offset_in(&bytes).map_or(bound, |o| o + 1);
                        pd.aborted_transactions = Some(
                            partition
                                .aborted_transactions(p.offset, upper)
                                .into_iter()
                                .map(|(producer_id, first_offset)| {
                                    AbortedTransaction::default()
                                        .with_producer_id(ProducerId(producer_id))
                                        .with_first_offset(first_offset)
                                })
                                .collect(),
                        );
                    }
                    pd.records = Some(bytes);
                }
                Err(e) => {
                    pd.error_code = error::storage_code(&e);
                    errored = true;
                }
            }
            parts.push(pd);
        }
        let mut tr = FetchableTopicResponse::default().with_partitions(parts);
        if version >= 13 {
            tr.topic_id = t.id;
        } else {
            tr.topic = t.wire_name.clone();
        }
        responses.push(tr);
    }
    metrics::counter!("runnel_fetch_bytes_total").increment(total as u64);
    let mut resp = FetchResponse::default().with_responses(responses);
    if version >= 16 {
        resp.node_endpoints = hint_endpoints(
            &image.image,
            hinted,
            &plan.listener,
            |id, host, port, rack| {
                NodeEndpoint::default()
                    .with_node_id(id)
                    .with_host(host)
                    .with_port(port)
                    .with_rack(rack)
            },
        );
    }
    (resp, total, errored)
}

/// The last offset of the last whole batch in `bytes`.
fn last_offset_in(bytes: &Bytes) -> Option<i64> {
    runnel_protocol::batch::split_batches(bytes)
        .map_while(Result::ok)
        .last()
        .map(|(h, _)| h.last_offset())
}
