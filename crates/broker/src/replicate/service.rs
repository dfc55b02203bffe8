//! The leader's side of replica fetching: the `Replication.Fetch` gRPC stream.
//!
//! A follower's stream carries a fetch session ([`FetchSession`]): each request adds, updates
//! or forgets partitions, and every partition of the session is fetched each time. Each
//! request is answered once: for every partition, after the leader and epoch checks, either the diverging epoch (KIP-320: the follower's last fetched
//! epoch ends earlier here, so it must truncate), OFFSET_OUT_OF_RANGE, or the batches from the
//! fetch offset up to the log end, with the high watermark and log start offset. The fetch
//! offset is the follower's log end offset: recording it in the [`LeaderState`] is what moves
//! the high watermark and lets the ISR grow. When fewer than `min_bytes` are available the
//! answer waits for appends, up to `max_wait_ms`. An incremental answer leaves out the
//! partitions with nothing new for the follower, so an idle partition costs a few lock reads
//! per round instead of a lookup, an encoded entry each way and the follower's handling.
//!
//! Only a replica may fetch: a partition answers NOT_LEADER_OR_FOLLOWER to a `replica_id` that
//! is not in its replica set in this leader's metadata image, so that no other caller can move
//! its high watermark or grow its ISR. With mutual TLS on the gRPC port the `replica_id` of every
//! request must also be the node the caller's certificate names (the identity rule of
//! [`runnel_controller::rpc::identity`]); a request speaking for another node ends the stream
//! with PERMISSION_DENIED.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, Stream, StreamExt};
use kafka_protocol::error::ResponseError;
use runnel_controller::rpc::identity;
use runnel_controller::AppliedImage;
use runnel_replication::follower::diverging_epoch;
use runnel_replication::pb;
use runnel_replication::EpochEndOffset;
use tokio::sync::watch;
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use super::Replication;
use crate::clock::now_ms;
use crate::replica::{Partition, Role, TopicPartition};

/// Longest wait a follower may ask for.
const MAX_WAIT_CAP_MS: i32 = 30_000;
/// Most partitions one WriteTxnMarkers call may name.
const MAX_MARKER_PARTITIONS: usize = 100_000;
/// Largest gRPC message (a fetch response of up to `replica.fetch.response.max.bytes` plus
/// the first batch of each partition).
pub const MAX_MESSAGE_SIZE: usize = 256 * 1024 * 1024;

/// The replication runtime, set once it exists (the gRPC server starts with the metadata
/// quorum, before the broker is built).
pub type ReplicationCell = Arc<OnceLock<Weak<Replication>>>;

pub struct ReplicationService {
    replication: ReplicationCell,
}

impl ReplicationService {
    pub fn server(replication: ReplicationCell) -> pb::replication_server::ReplicationServer<Self> {
        pb::replication_server::ReplicationServer::new(ReplicationService { replication })
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }
}

type FetchStream = Pin<Box<dyn Stream<Item = Result<pb::FetchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::replication_server::Replication for ReplicationService {
    type FetchStream = FetchStream;

    async fn fetch(
        &self,
        request: Request<Streaming<pb::FetchRequest>>,
    ) -> Result<Response<FetchStream>, Status> {
        let Some(replication) = self.replication.get().and_then(Weak::upgrade) else {
            return Err(Status::unavailable("the broker is starting"));
        };
        let peer = identity::peer(&request, replication.controller.rpc_tls_enabled())?;
        // Well inside replica.lag.time.max.ms, so that idle partitions stay in sync.
        let refresh_ms = (replication.config.replica_lag_time_max_ms / 4).clamp(10, 1000);
        drop(replication);
        let remote = request.remote_addr();
        let inbound = request.into_inner();
        let cell = self.replication.clone();
        let stream = futures::stream::unfold(
            Some((inbound, FetchSession::new(refresh_ms))),
            move |state| {
                let cell = cell.clone();
                async move {
                    let (mut inbound, mut session) = state?;
                    let req = match inbound.message().await {
                        Ok(Some(req)) => req,
                        Ok(None) => return None,
                        Err(status) => return Some((Err(status), None)),
                    };
                    if let Err(status) =
                        identity::check_claim(peer, i64::from(req.replica_id), "replica_id", remote)
                    {
                        return Some((Err(status), None));
                    }
                    let Some(replication) = cell.get().and_then(Weak::upgrade) else {
                        return Some((Err(Status::unavailable("the broker is starting")), None));
                    };
                    let resp = handle(&replication, &mut session, req).await;
                    Some((Ok(resp), Some((inbound, session))))
                }
            },
        );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn write_txn_markers(
        &self,
        request: Request<pb::WriteTxnMarkersRequest>,
    ) -> Result<Response<pb::WriteTxnMarkersResponse>, Status> {
        let Some(replication) = self.replication.get().and_then(Weak::upgrade) else {
            return Err(Status::unavailable("the broker is starting"));
        };
        // Only a node may call (with mutual TLS on the port: any node certificate).
        identity::peer(&request, replication.controller.rpc_tls_enabled())?;
        let req = request.into_inner();
        if req.partitions.len() > MAX_MARKER_PARTITIONS {
            return Err(Status::invalid_argument(format!(
                "{} partitions in one WriteTxnMarkers (at most {MAX_MARKER_PARTITIONS})",
                req.partitions.len()
            )));
        }
        let Ok(producer_epoch) = i16::try_from(req.producer_epoch) else {
            return Err(Status::invalid_argument("producer_epoch out of range"));
        };
        let marker = runnel_protocol::batch::EndTxnMarker {
            producer_id: req.producer_id,
            producer_epoch,
            commit: req.commit,
            coordinator_epoch: req.coordinator_epoch,
        };
        let timeout = Duration::from_millis(req.timeout_ms.clamp(1, MAX_WAIT_CAP_MS) as u64);
        let targets: Vec<(String, i32)> = req
            .partitions
            .into_iter()
            .map(|p| (p.topic, p.partition))
            .collect();
        let partitions = replication.partitions.clone();
        let hook = replication.marker_hook.get().cloned();
        drop(replication);
        let results =
            super::markers::write_markers(&partitions, &marker, &targets, timeout, hook.as_ref())
                .await;
        Ok(Response::new(pb::WriteTxnMarkersResponse {
            partitions: results
                .into_iter()
                .map(|((topic, partition), r)| pb::PartitionError {
                    topic,
                    partition,
                    error_code: r.err().map_or(0, |e| i32::from(e.code())),
                })
                .collect(),
        }))
    }

    async fn verify_txn_partitions(
        &self,
        request: Request<pb::VerifyTxnPartitionsRequest>,
    ) -> Result<Response<pb::VerifyTxnPartitionsResponse>, Status> {
        let Some(replication) = self.replication.get().and_then(Weak::upgrade) else {
            return Err(Status::unavailable("the broker is starting"));
        };
        // Only a node may call (with mutual TLS on the port: any node certificate).
        identity::peer(&request, replication.controller.rpc_tls_enabled())?;
        let req = request.into_inner();
        if req.partitions.len() > MAX_MARKER_PARTITIONS {
            return Err(Status::invalid_argument(format!(
                "{} partitions in one VerifyTxnPartitions (at most {MAX_MARKER_PARTITIONS})",
                req.partitions.len()
            )));
        }
        let Ok(producer_epoch) = i16::try_from(req.producer_epoch) else {
            return Err(Status::invalid_argument("producer_epoch out of range"));
        };
        let Some(verify) = replication.txn_verify_hook.get().cloned() else {
            return Err(Status::unavailable("the broker is starting"));
        };
        drop(replication);
        let targets: Vec<(String, i32)> = req
            .partitions
            .into_iter()
            .map(|p| (p.topic, p.partition))
            .collect();
        let resp = match verify(
            &req.transactional_id,
            req.producer_id,
            producer_epoch,
            &targets,
        ) {
            Ok(results) => pb::VerifyTxnPartitionsResponse {
                error_code: 0,
                partitions: results
                    .into_iter()
                    .map(|((topic, partition), e)| pb::PartitionError {
                        topic,
                        partition,
                        error_code: e.map_or(0, |e| i32::from(e.code())),
                    })
                    .collect(),
            },
            Err(e) => pb::VerifyTxnPartitionsResponse {
                error_code: i32::from(e.code()),
                partitions: Vec::new(),
            },
        };
        Ok(Response::new(resp))
    }
}

/// What the leader remembers of one follower's fetch stream: its fetch session.
///
/// An incremental request only names the partitions it adds or whose fetch state changed, and
/// forgets those the follower no longer fetches here. A partition this node does not host is
/// answered with an error and not kept, so a session never holds more than the node's
/// partitions.
///
/// Only members that may have something new are read in a round: those the request names,
/// those whose log end offset, high watermark or leadership moved (a watcher per member), and
/// those not fully read last time. Every member is read at least once per refresh period,
/// which keeps a caught-up follower of an idle partition in the ISR (its caught-up time moves
/// on each read) and re-checks it against newer metadata.
pub struct FetchSession {
    members: Vec<Member>,
    index: HashMap<TopicPartition, usize>,
    /// Members to read in the next pass, oldest first (so that none starves under
    /// `max_bytes`); `Member::queued` says who is in it.
    queue: VecDeque<TopicPartition>,
    /// Two watchers per member (log end, high watermark); a woken one is re-armed. Watchers of
    /// forgotten or replaced members are dropped when they fire, or when the set is rebuilt.
    watchers: FuturesUnordered<BoxFuture<'static, Woken>>,
    /// Bumped for each member armed, so that stale watchers are recognised.
    generation: u64,
    /// The metadata image the members' replica checks were made against.
    checked_image: Option<Arc<AppliedImage>>,
    refresh_ms: i64,
    last_refresh_ms: i64,
}

struct Member {
    tp: TopicPartition,
    fetch: pb::PartitionFetch,
    partition: Arc<Partition>,
    /// The watchers armed for this member.
    generation: u64,
    queued: bool,
    /// The follower is a replica of the partition in `checked_image`.
    replica_checked: bool,
    /// The fetch offset at which the ISR was last considered for this follower.
    isr_considered_at: Option<i64>,
    /// `(high watermark, log start offset)` last sent to the follower.
    sent: Option<(i64, i64)>,
    /// Named in the request being answered: always in the response.
    named: bool,
}

type Woken = (TopicPartition, u64, Option<watch::Receiver<i64>>);

impl FetchSession {
    /// A session whose members are all read at least every `refresh_ms`.
    pub fn new(refresh_ms: i64) -> FetchSession {
        FetchSession {
            members: Vec::new(),
            index: HashMap::new(),
            queue: VecDeque::new(),
            watchers: FuturesUnordered::new(),
            generation: 0,
            checked_image: None,
            refresh_ms: refresh_ms.max(1),
            last_refresh_ms: now_ms(),
        }
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    fn arm(&mut self, tp: TopicPartition, generation: u64, mut rx: watch::Receiver<i64>) {
        self.watchers.push(Box::pin(async move {
            let alive = rx.changed().await.is_ok();
            (tp, generation, alive.then_some(rx))
        }));
    }

    fn arm_member(&mut self, i: usize) {
        self.generation += 1;
        let generation = self.generation;
        let m = &mut self.members[i];
        m.generation = generation;
        let (tp, log_end, hw) = (
            m.tp.clone(),
            m.partition.subscribe_log_end(),
            m.partition.subscribe(),
        );
        self.arm(tp.clone(), generation, log_end);
        self.arm(tp, generation, hw);
    }

    fn enqueue(&mut self, i: usize) {
        let m = &mut self.members[i];
        if !m.queued {
            m.queued = true;
            self.queue.push_back(m.tp.clone());
        }
    }

    fn insert(&mut self, tp: TopicPartition, fetch: pb::PartitionFetch, partition: Arc<Partition>) {
        let i = match self.index.get(&tp) {
            Some(&i) => {
                let m = &mut self.members[i];
                m.fetch = fetch;
                m.named = true;
                if !Arc::ptr_eq(&m.partition, &partition) {
                    m.partition = partition;
                    m.replica_checked = false;
                    m.isr_considered_at = None;
                    m.sent = None;
                    self.arm_member(i);
                }
                i
            }
            None => {
                let i = self.members.len();
                self.index.insert(tp.clone(), i);
                self.members.push(Member {
                    tp,
                    fetch,
                    partition,
                    generation: 0,
                    queued: false,
                    replica_checked: false,
                    isr_considered_at: None,
                    sent: None,
                    named: true,
                });
                self.arm_member(i);
                i
            }
        };
        self.enqueue(i);
        if self.watchers.len() > 4 * self.members.len() + 64 {
            self.rebuild_watchers();
        }
    }

    fn remove(&mut self, tp: &TopicPartition) {
        let Some(i) = self.index.remove(tp) else {
            return;
        };
        self.members.swap_remove(i);
        if let Some(moved) = self.members.get(i) {
            self.index.insert(moved.tp.clone(), i);
        }
    }

    fn clear(&mut self) {
        self.members.clear();
        self.index.clear();
        self.queue.clear();
        self.watchers = FuturesUnordered::new();
    }

    /// Drops every watcher and arms the members' anew.
    fn rebuild_watchers(&mut self) {
        self.watchers = FuturesUnordered::new();
        for i in 0..self.members.len() {
            self.arm_member(i);
        }
    }

    /// Queues every member once per refresh period.
    fn maybe_refresh(&mut self, now: i64) {
        if now.saturating_sub(self.last_refresh_ms) < self.refresh_ms {
            return;
        }
        self.last_refresh_ms = now;
        for i in 0..self.members.len() {
            self.enqueue(i);
        }
    }

    /// Queues the members whose watchers fired; true if any did.
    fn take_woken(&mut self, first: Woken) -> bool {
        let mut any = false;
        let mut next = Some(first);
        while let Some((tp, generation, rx)) = next {
            if let Some(&i) = self.index.get(&tp) {
                if self.members[i].generation == generation {
                    any = true;
                    self.enqueue(i);
                    if let Some(rx) = rx {
                        self.arm(tp, generation, rx);
                    }
                }
            }
            next = self.watchers.next().now_or_never().flatten();
        }
        any
    }

    /// Waits until a member may have something new, or the refresh period ends.
    async fn changed(&mut self) {
        loop {
            let refresh_at = self.last_refresh_ms.saturating_add(self.refresh_ms);
            let wait = Duration::from_millis(refresh_at.saturating_sub(now_ms()).max(0) as u64);
            let woken = tokio::select! {
                w = self.watchers.next() => w,
                _ = tokio::time::sleep(wait) => {
                    self.maybe_refresh(now_ms());
                    return;
                }
            };
            match woken {
                Some(w) => {
                    if self.take_woken(w) {
                        return;
                    }
                }
                None => {
                    tokio::time::sleep(wait).await;
                    self.maybe_refresh(now_ms());
                    return;
                }
            }
        }
    }
}

/// Answers one follower fetch on its stream's session, long-polling for `min_bytes`.
pub async fn handle(
    replication: &Arc<Replication>,
    session: &mut FetchSession,
    req: pb::FetchRequest,
) -> pb::FetchResponse {
    let refused = update_session(replication, session, &req);
    let max_wait = Duration::from_millis(req.max_wait_ms.clamp(0, MAX_WAIT_CAP_MS) as u64);
    let deadline = tokio::time::Instant::now() + max_wait;
    let min_bytes = req.min_bytes.max(0) as usize;
    let mut answer = Answer {
        report_all: !req.incremental,
        reads: HashMap::new(),
        bytes: 0,
        remaining: req.max_bytes.max(0) as usize,
        errored: !refused.is_empty(),
    };
    loop {
        // Watchers that fired while the previous answer was on its way.
        while let Some(w) = session.watchers.next().now_or_never().flatten() {
            session.take_woken(w);
        }
        session.maybe_refresh(now_ms());
        read_queued(replication, session, req.replica_id, &mut answer);
        let expired = tokio::time::Instant::now() >= deadline;
        if answer.bytes >= min_bytes || answer.errored || session.is_empty() || expired {
            break;
        }
        if tokio::time::timeout_at(deadline, session.changed())
            .await
            .is_err()
        {
            session.maybe_refresh(now_ms());
            read_queued(replication, session, req.replica_id, &mut answer);
            break;
        }
    }
    metrics::counter!("runnel_replica_fetch_bytes_total").increment(answer.bytes as u64);
    let mut resp = finish(session, answer, refused);
    resp.incremental = req.incremental;
    resp
}

/// What one request's answer has read so far.
struct Answer {
    /// Answer every member (a request that is not incremental).
    report_all: bool,
    /// The latest read of each member read, by member index.
    reads: HashMap<usize, pb::PartitionData>,
    bytes: usize,
    remaining: usize,
    errored: bool,
}

/// Builds the response and records what the follower is told.
fn finish(
    session: &mut FetchSession,
    answer: Answer,
    mut refused: Vec<pb::PartitionData>,
) -> pb::FetchResponse {
    let mut out = Vec::with_capacity(answer.reads.len() + refused.len());
    for (i, mut pd) in answer.reads {
        let m = &mut session.members[i];
        let report = answer.report_all
            || m.named
            || pd.error_code != 0
            || pd.diverging_epoch.is_some()
            || !pd.records.is_empty()
            || m.sent != Some((pd.high_watermark, pd.log_start_offset));
        if !report {
            continue;
        }
        if pd.error_code == 0 && pd.diverging_epoch.is_none() {
            m.sent = Some((pd.high_watermark, pd.log_start_offset));
        }
        pd.topic_id = m.fetch.topic_id.clone();
        pd.topic = m.fetch.topic.clone();
        pd.partition = m.fetch.partition;
        out.push(pd);
    }
    for m in &mut session.members {
        m.named = false;
    }
    out.append(&mut refused);
    pb::FetchResponse {
        partitions: out,
        incremental: false,
    }
}

/// Applies the request to the session; answers the partitions it cannot hold.
fn update_session(
    replication: &Arc<Replication>,
    session: &mut FetchSession,
    req: &pb::FetchRequest,
) -> Vec<pb::PartitionData> {
    if !req.incremental {
        session.clear();
    }
    for f in &req.forgotten {
        session.remove(&TopicPartition::new(&f.topic, f.partition));
    }
    let mut refused = Vec::new();
    for pf in &req.partitions {
        let tp = TopicPartition::new(&pf.topic, pf.partition);
        let resolved = match replication.partitions.get(&tp) {
            None => Err(ResponseError::NotLeaderOrFollower),
            Some(p) if Uuid::from_slice(&pf.topic_id).ok() != Some(p.topic_id) => {
                Err(ResponseError::UnknownTopicOrPartition)
            }
            Some(p) => Ok(p),
        };
        match resolved {
            Ok(p) => session.insert(tp, pf.clone(), p),
            Err(code) => {
                session.remove(&tp);
                refused.push(pb::PartitionData {
                    topic_id: pf.topic_id.clone(),
                    topic: pf.topic.clone(),
                    partition: pf.partition,
                    error_code: i32::from(code.code()),
                    high_watermark: -1,
                    log_start_offset: -1,
                    log_end_offset: -1,
                    ..Default::default()
                });
            }
        }
    }
    refused
}

/// Reads the queued members into the answer. A member stays queued when the follower is
/// behind and the response had no room for its records.
fn read_queued(
    replication: &Arc<Replication>,
    session: &mut FetchSession,
    replica_id: i32,
    answer: &mut Answer,
) {
    let now = now_ms();
    let image = replication.metadata.image();
    if !session
        .checked_image
        .as_ref()
        .is_some_and(|i| Arc::ptr_eq(i, &image))
    {
        for m in &mut session.members {
            m.replica_checked = false;
        }
        session.checked_image = Some(image.clone());
    }
    let fenced = replication.fence.is_fenced();
    let mut again = Vec::new();
    for tp in std::mem::take(&mut session.queue) {
        let Some(&i) = session.index.get(&tp) else {
            continue;
        };
        let m = &mut session.members[i];
        m.queued = false;
        let mut pd = pb::PartitionData {
            high_watermark: -1,
            log_start_offset: -1,
            log_end_offset: -1,
            ..Default::default()
        };
        // A record read earlier in this answer is kept: the follower appends it first.
        if answer
            .reads
            .get(&i)
            .is_some_and(|pd| !pd.records.is_empty())
        {
            continue;
        }
        let first = answer.bytes == 0;
        let result = if fenced {
            Err(ResponseError::NotLeaderOrFollower)
        } else {
            read_partition(
                replication,
                &image,
                replica_id,
                m,
                now,
                first,
                answer.remaining,
                &mut pd,
            )
        };
        match result {
            Ok(bytes) => {
                answer.bytes += bytes;
                answer.remaining = answer.remaining.saturating_sub(bytes);
                if bytes == 0
                    && pd.log_end_offset > m.fetch.fetch_offset
                    && pd.diverging_epoch.is_none()
                {
                    again.push(tp);
                }
            }
            Err(code) => {
                pd.error_code = i32::from(code.code());
                answer.errored = true;
            }
        }
        answer.reads.insert(i, pd);
    }
    for tp in again {
        if let Some(&i) = session.index.get(&tp) {
            session.enqueue(i);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn read_partition(
    replication: &Arc<Replication>,
    image: &AppliedImage,
    replica_id: i32,
    m: &mut Member,
    now: i64,
    first: bool,
    remaining: usize,
    pd: &mut pb::PartitionData,
) -> Result<usize, ResponseError> {
    let pf = &m.fetch;
    if !m.partition.leadership().is_leader {
        // The partition may have been removed and hosted again since it joined the session.
        if let Some(p) = replication.partitions.get(&m.tp) {
            if !Arc::ptr_eq(&p, &m.partition)
                && Uuid::from_slice(&pf.topic_id).ok() == Some(p.topic_id)
            {
                m.partition = p;
                m.replica_checked = false;
                m.isr_considered_at = None;
            }
        }
    }
    let p = m.partition.clone();
    if !m.replica_checked {
        if !is_replica(
            replication.node_id,
            image,
            p.topic_id,
            pf.partition,
            replica_id,
        ) {
            tracing::warn!(
                topic = %p.tp.topic,
                partition = p.tp.partition,
                replica_id,
                "replica fetch from a node that is not a replica of the partition refused"
            );
            return Err(ResponseError::NotLeaderOrFollower);
        }
        m.replica_checked = true;
    }
    let l = p.leadership();
    crate::replica::check_leader(l, pf.current_leader_epoch)?;
    pd.high_watermark = p.high_watermark();
    pd.log_start_offset = p.log_start_offset();
    // KIP-320: does the follower's log still agree with ours at its last fetched epoch?
    if pf.last_fetched_epoch >= 0 {
        let (epoch, end_offset) = p.end_offset_for_epoch(pf.last_fetched_epoch);
        if let Some(d) = diverging_epoch(
            pf.fetch_offset,
            pf.last_fetched_epoch,
            EpochEndOffset { epoch, end_offset },
        ) {
            pd.diverging_epoch = Some(pb::EpochEndOffset {
                epoch: d.epoch,
                end_offset: d.end_offset,
            });
            pd.log_end_offset = p.log_end_offset();
            return Ok(0);
        }
    }
    let (_, leo) = p.last_epoch_and_end();
    pd.log_end_offset = leo;
    if pf.fetch_offset < pd.log_start_offset || pf.fetch_offset > leo {
        return Err(ResponseError::OffsetOutOfRange);
    }
    let in_isr = {
        let mut role = p.role();
        match &mut *role {
            Role::Leader(st) if st.leader_epoch() == l.leader_epoch => {
                if let Some(hw) = st.on_follower_fetch(replica_id, pf.fetch_offset, leo, now) {
                    p.publish_hw(hw);
                }
                st.isr().contains(&replica_id)
            }
            _ => return Err(ResponseError::NotLeaderOrFollower),
        }
    };
    // The ISR can only grow when the follower moved or is out of it; the ISR ticker shrinks it.
    if !in_isr || m.isr_considered_at != Some(pf.fetch_offset) {
        m.isr_considered_at = Some(pf.fetch_offset);
        replication.maybe_change_isr(&p, now);
    }
    pd.high_watermark = p.high_watermark();
    if pf.fetch_offset == leo {
        return Ok(0);
    }
    let limit = (pf.partition_max_bytes.max(0) as usize).min(remaining);
    if limit == 0 && !first {
        return Ok(0);
    }
    match p.read_local(pf.fetch_offset, limit, first) {
        Ok(bytes) => {
            let n = bytes.len();
            pd.records = bytes;
            Ok(n)
        }
        Err(e) => {
            tracing::warn!(topic = %p.tp.topic, partition = p.tp.partition, replica_id, error = %e, "replica fetch read failed");
            Err(ResponseError::try_from_code(crate::error::storage_code(&e))
                .unwrap_or(ResponseError::KafkaStorageError))
        }
    }
}

/// Whether `replica_id` is another replica of the partition in this leader's metadata image.
fn is_replica(
    node_id: i32,
    image: &AppliedImage,
    topic_id: Uuid,
    partition: i32,
    replica_id: i32,
) -> bool {
    replica_id != node_id
        && image
            .image
            .partition(&topic_id, partition)
            .is_some_and(|reg| reg.replicas.contains(&replica_id))
}
