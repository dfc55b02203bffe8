//! The leader's side of replica fetching: the `Replication.Fetch` gRPC stream.
//!
//! Each request on a follower's stream is answered once: for every partition, after the
//! leader and epoch checks, either the diverging epoch (KIP-320: the follower's last fetched
//! epoch ends earlier here, so it must truncate), OFFSET_OUT_OF_RANGE, or the batches from the
//! fetch offset up to the log end, with the high watermark and log start offset. The fetch
//! offset is the follower's log end offset: recording it in the [`LeaderState`] is what moves
//! the high watermark and lets the ISR grow. When fewer than `min_bytes` are available the
//! answer waits for appends, up to `max_wait_ms`.
//!
//! Only a replica may fetch: a partition answers NOT_LEADER_OR_FOLLOWER to a `replica_id` that
//! is not in its replica set in this leader's metadata image, so that no other caller can move
//! its high watermark or grow its ISR. With mutual TLS on the gRPC port the `replica_id` of every
//! request must also be the node the caller's certificate names (the identity rule of
//! [`runnel_controller::rpc::identity`]); a request speaking for another node ends the stream
//! with PERMISSION_DENIED.

use std::pin::Pin;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use futures::Stream;
use kafka_protocol::error::ResponseError;
use runnel_controller::rpc::identity;
use runnel_replication::follower::diverging_epoch;
use runnel_replication::pb;
use runnel_replication::EpochEndOffset;
use tokio::sync::watch;
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use super::Replication;
use crate::clock::now_ms;
use crate::replica::{Partition, Role};

/// Longest wait a follower may ask for.
const MAX_WAIT_CAP_MS: i32 = 30_000;
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
        drop(replication);
        let remote = request.remote_addr();
        let inbound = request.into_inner();
        let cell = self.replication.clone();
        let stream = futures::stream::unfold(Some(inbound), move |state| {
            let cell = cell.clone();
            async move {
                let mut inbound = state?;
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
                let resp = handle(&replication, req).await;
                Some((Ok(resp), Some(inbound)))
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// Answers one follower fetch, long-polling for `min_bytes`.
pub async fn handle(replication: &Arc<Replication>, req: pb::FetchRequest) -> pb::FetchResponse {
    let mut watchers: Vec<watch::Receiver<i64>> = req
        .partitions
        .iter()
        .filter_map(|pf| replication.partitions.get_by(&pf.topic, pf.partition))
        .map(|p| p.subscribe_log_end())
        .collect();
    let max_wait = Duration::from_millis(req.max_wait_ms.clamp(0, MAX_WAIT_CAP_MS) as u64);
    let deadline = tokio::time::Instant::now() + max_wait;
    let min_bytes = req.min_bytes.max(0) as usize;
    loop {
        let (resp, bytes, errored) = read_all(replication, &req);
        if bytes >= min_bytes
            || errored
            || watchers.is_empty()
            || tokio::time::Instant::now() >= deadline
        {
            metrics::counter!("runnel_replica_fetch_bytes_total").increment(bytes as u64);
            return resp;
        }
        let changed =
            futures::future::select_all(watchers.iter_mut().map(|w| Box::pin(w.changed())));
        if tokio::time::timeout_at(deadline, changed).await.is_err() {
            let (resp, bytes, _) = read_all(replication, &req);
            metrics::counter!("runnel_replica_fetch_bytes_total").increment(bytes as u64);
            return resp;
        }
    }
}

fn read_all(
    replication: &Arc<Replication>,
    req: &pb::FetchRequest,
) -> (pb::FetchResponse, usize, bool) {
    let now = now_ms();
    let mut total = 0usize;
    let mut remaining = req.max_bytes.max(0) as usize;
    let mut errored = false;
    let mut out = Vec::with_capacity(req.partitions.len());
    for pf in &req.partitions {
        let mut pd = pb::PartitionData {
            topic_id: pf.topic_id.clone(),
            topic: pf.topic.clone(),
            partition: pf.partition,
            high_watermark: -1,
            log_start_offset: -1,
            log_end_offset: -1,
            ..Default::default()
        };
        match read_partition(
            replication,
            req.replica_id,
            pf,
            now,
            total == 0,
            remaining,
            &mut pd,
        ) {
            Ok(n) => {
                total += n;
                remaining = remaining.saturating_sub(n);
            }
            Err(code) => {
                pd.error_code = i32::from(code.code());
                errored = true;
            }
        }
        out.push(pd);
    }
    (pb::FetchResponse { partitions: out }, total, errored)
}

#[allow(clippy::too_many_arguments)]
fn read_partition(
    replication: &Arc<Replication>,
    replica_id: i32,
    pf: &pb::PartitionFetch,
    now: i64,
    first: bool,
    remaining: usize,
    pd: &mut pb::PartitionData,
) -> Result<usize, ResponseError> {
    let p: Arc<Partition> = replication
        .partitions
        .get_by(&pf.topic, pf.partition)
        .ok_or(ResponseError::NotLeaderOrFollower)?;
    if Uuid::from_slice(&pf.topic_id).ok() != Some(p.topic_id) {
        return Err(ResponseError::UnknownTopicOrPartition);
    }
    if replication.fence.is_fenced() {
        return Err(ResponseError::NotLeaderOrFollower);
    }
    if !is_replica(replication, p.topic_id, pf.partition, replica_id) {
        tracing::warn!(
            topic = %p.tp.topic,
            partition = p.tp.partition,
            replica_id,
            "replica fetch from a node that is not a replica of the partition refused"
        );
        return Err(ResponseError::NotLeaderOrFollower);
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
    {
        let mut role = p.role();
        match &mut *role {
            Role::Leader(st) if st.leader_epoch() == l.leader_epoch => {
                if let Some(hw) = st.on_follower_fetch(replica_id, pf.fetch_offset, leo, now) {
                    p.publish_hw(hw);
                }
            }
            _ => return Err(ResponseError::NotLeaderOrFollower),
        }
    }
    replication.maybe_change_isr(&p, now);
    pd.high_watermark = p.high_watermark();
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
fn is_replica(replication: &Replication, topic_id: Uuid, partition: i32, replica_id: i32) -> bool {
    replica_id != replication.node_id
        && replication
            .metadata
            .image()
            .image
            .partition(&topic_id, partition)
            .is_some_and(|reg| reg.replicas.contains(&replica_id))
}
