//! The follower's side of replica fetching.
//!
//! One [`Fetcher`] task per leader broker keeps one gRPC `Fetch` stream open to it and
//! carries every partition this node follows there, as a fetch session: the first request
//! names every partition at its log end offset (with the last fetched epoch, KIP-320), and
//! each later one only the partitions that joined or whose fetch state changed, and those to
//! forget. The leader fetches all of the session's partitions each round and answers only
//! those with something to report. The follower appends what came back, truncates where the
//! leader reported a diverging epoch, and takes the leader's high watermark. A broken stream
//! (and with it the session) is reopened after `replica.fetch.backoff.ms`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use parking_lot::Mutex;
use runnel_replication::follower::truncation;
use runnel_replication::pb;
use runnel_replication::pb::replication_client::ReplicationClient;
use runnel_replication::EpochEndOffset;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use crate::clock::now_ms;
use crate::config::ReplicationConfig;
use crate::controller_channel::ControllerChannel;
use crate::replica::{Partition, TopicPartition};

/// How long a partition that got an epoch or leadership error waits before it is fetched
/// again (the metadata image usually moves it to another fetcher first).
const PARTITION_ERROR_BACKOFF: Duration = Duration::from_millis(200);
/// Slack on top of the long-poll before an unanswered fetch counts as a broken stream.
const RESPONSE_SLACK: Duration = Duration::from_secs(10);

struct Follow {
    partition: Arc<Partition>,
    leader_epoch: i32,
    /// Not fetched before this instant (after an error).
    paused_until: Option<tokio::time::Instant>,
}

/// The partitions one fetcher follows, and which of them changed since its last request.
#[derive(Default)]
struct Followed {
    parts: BTreeMap<TopicPartition, Follow>,
    /// Partitions to look at when the next request is built: joined, left, given new data or
    /// truncated by a response, or paused.
    changed: BTreeSet<TopicPartition>,
}

impl Followed {
    /// The next request names every partition.
    fn all_changed(&mut self) {
        self.changed.extend(self.parts.keys().cloned());
    }

    fn remove(&mut self, tp: &TopicPartition) {
        if self.parts.remove(tp).is_some() {
            self.changed.insert(tp.clone());
        }
    }
}

type SharedFollowed = Arc<Mutex<Followed>>;

struct Fetcher {
    parts: SharedFollowed,
    wake: Arc<Notify>,
    task: JoinHandle<()>,
}

/// What every fetcher task of this node uses.
struct FetcherContext {
    node_id: i32,
    config: ReplicationConfig,
    controller: Arc<ControllerChannel>,
}

/// The fetchers of this node, by leader broker id.
pub struct FetcherManager {
    /// Fetcher tasks hold it weakly: they end once the manager is gone.
    context: Arc<FetcherContext>,
    fetchers: Mutex<HashMap<i32, Fetcher>>,
}

impl FetcherManager {
    pub fn new(
        node_id: i32,
        config: ReplicationConfig,
        controller: Arc<ControllerChannel>,
    ) -> FetcherManager {
        FetcherManager {
            context: Arc::new(FetcherContext {
                node_id,
                config,
                controller,
            }),
            fetchers: Mutex::new(HashMap::new()),
        }
    }

    /// Follows `p` at `leader` in `leader_epoch` (moving it from another leader's fetcher).
    pub fn follow(&self, p: Arc<Partition>, leader: i32, leader_epoch: i32) {
        if leader == self.context.node_id {
            return;
        }
        let context = Arc::downgrade(&self.context);
        let mut fetchers = self.fetchers.lock();
        for (id, f) in fetchers.iter() {
            if *id != leader {
                f.parts.lock().remove(&p.tp);
            }
        }
        let f = fetchers.entry(leader).or_insert_with(|| {
            let parts = Arc::new(Mutex::new(Followed::default()));
            let wake = Arc::new(Notify::new());
            let task = tokio::spawn(run(context, leader, parts.clone(), wake.clone()));
            Fetcher { parts, wake, task }
        });
        let mut followed = f.parts.lock();
        let same = followed
            .parts
            .get(&p.tp)
            .is_some_and(|cur| cur.leader_epoch == leader_epoch && Arc::ptr_eq(&cur.partition, &p));
        if !same {
            followed.changed.insert(p.tp.clone());
            followed.parts.insert(
                p.tp.clone(),
                Follow {
                    partition: p,
                    leader_epoch,
                    paused_until: None,
                },
            );
            drop(followed);
            f.wake.notify_one();
        }
    }

    /// Stops fetching `tp`.
    pub fn remove(&self, tp: &TopicPartition) {
        for f in self.fetchers.lock().values() {
            f.parts.lock().remove(tp);
        }
    }

    /// Stops every fetcher (shutdown).
    pub fn stop_all(&self) {
        for (_, f) in self.fetchers.lock().drain() {
            f.task.abort();
        }
    }

    /// `(leader, partitions followed there)`, for diagnostics and tests.
    pub fn summary(&self) -> Vec<(i32, usize)> {
        let mut out: Vec<(i32, usize)> = self
            .fetchers
            .lock()
            .iter()
            .map(|(id, f)| (*id, f.parts.lock().parts.len()))
            .collect();
        out.sort();
        out
    }
}

async fn run(context: Weak<FetcherContext>, leader: i32, parts: SharedFollowed, wake: Arc<Notify>) {
    loop {
        let Some(b) = context.upgrade() else {
            return;
        };
        let backoff = Duration::from_millis(b.config.fetch_backoff_ms.max(50));
        if parts.lock().parts.is_empty() {
            drop(b);
            wake.notified().await;
            continue;
        }
        match session(&b, leader, &parts, &wake).await {
            Ok(()) => {}
            Err(error) => {
                tracing::warn!(leader, %error, "replica fetch stream to the leader failed; retrying");
                metrics::counter!("runnel_replica_fetch_errors_total").increment(1);
            }
        }
        drop(b);
        tokio::time::sleep(backoff).await;
    }
}

/// One stream to `leader`: fetch rounds until it breaks or nothing is followed there.
async fn session(
    context: &FetcherContext,
    leader: i32,
    parts: &SharedFollowed,
    wake: &Arc<Notify>,
) -> Result<(), String> {
    let addr = context
        .controller
        .rpc_address(leader)
        .ok_or_else(|| format!("no gRPC address known for broker {leader}"))?;
    // Over the node's mutual TLS when the gRPC port runs it.
    let endpoint = context
        .controller
        .rpc_endpoint(&addr)
        .map_err(|e| format!("bad address {addr}: {e}"))?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true);
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let mut client = ReplicationClient::new(channel)
        .max_decoding_message_size(super::service::MAX_MESSAGE_SIZE)
        .max_encoding_message_size(super::service::MAX_MESSAGE_SIZE);
    let (tx, rx) = mpsc::channel::<pb::FetchRequest>(1);
    let outbound =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    let mut inbound = client
        .fetch(outbound)
        .await
        .map_err(|s| format!("fetch stream refused by {addr}: {s}"))?
        .into_inner();
    tracing::info!(leader, %addr, "replica fetch stream open");
    let cfg = &context.config;
    // The fetch session lives as long as the stream: the first request names every partition.
    let mut sent = BTreeMap::new();
    parts.lock().all_changed();
    loop {
        let Some(req) = build_request(context.node_id, parts, cfg, &mut sent) else {
            let earliest = parts
                .lock()
                .parts
                .values()
                .filter_map(|f| f.paused_until)
                .min();
            if parts.lock().parts.is_empty() {
                return Ok(());
            }
            match earliest {
                Some(t) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(t) => {}
                        _ = wake.notified() => {}
                    }
                }
                None => wake.notified().await,
            }
            continue;
        };
        tx.send(req)
            .await
            .map_err(|_| "the fetch stream closed".to_string())?;
        let wait = Duration::from_millis(cfg.fetch_wait_max_ms.max(0) as u64) + RESPONSE_SLACK;
        let resp = match tokio::time::timeout(wait, inbound.message()).await {
            Ok(Ok(Some(resp))) => resp,
            Ok(Ok(None)) => return Err("the leader closed the fetch stream".into()),
            Ok(Err(status)) => return Err(format!("fetch failed: {status}")),
            Err(_) => return Err(format!("no fetch response within {}ms", wait.as_millis())),
        };
        if !resp.incremental {
            // A leader without fetch sessions answers only what a request names: name every
            // partition each time.
            sent.clear();
            parts.lock().all_changed();
        }
        let parts2 = parts.clone();
        tokio::task::spawn_blocking(move || handle_response(leader, &parts2, resp))
            .await
            .map_err(|e| format!("fetch response handling failed: {e}"))?;
    }
}

/// What the leader last heard of one partition in this stream's fetch session.
#[derive(Clone, Copy, PartialEq, Eq)]
struct SentFetch {
    topic_id: uuid::Uuid,
    leader_epoch: i32,
    fetch_offset: i64,
    last_fetched_epoch: i32,
    log_start_offset: i64,
}

/// The next request of the stream's fetch session: the partitions that joined or whose fetch
/// state changed since the previous request, and those to forget (no longer followed here, or
/// paused after an error). `None` when the session is empty and nothing joins it.
fn build_request(
    node_id: i32,
    parts: &Mutex<Followed>,
    cfg: &ReplicationConfig,
    session: &mut BTreeMap<TopicPartition, SentFetch>,
) -> Option<pb::FetchRequest> {
    let now = tokio::time::Instant::now();
    let mut partitions = Vec::new();
    let mut forgotten = Vec::new();
    let mut followed = parts.lock();
    let Followed { parts, changed } = &mut *followed;
    let mut forget = |session: &mut BTreeMap<TopicPartition, SentFetch>, tp: &TopicPartition| {
        if session.remove(tp).is_some() {
            forgotten.push(pb::PartitionRef {
                topic: tp.topic.to_string(),
                partition: tp.partition,
            });
        }
    };
    let mut still_paused = BTreeSet::new();
    for tp in std::mem::take(changed) {
        let Some(f) = parts.get_mut(&tp) else {
            forget(session, &tp);
            continue;
        };
        if f.paused_until.is_some_and(|t| t > now) {
            forget(session, &tp);
            still_paused.insert(tp);
            continue;
        }
        f.paused_until = None;
        let (last_epoch, leo) = f.partition.last_epoch_and_end();
        let state = SentFetch {
            topic_id: f.partition.topic_id,
            leader_epoch: f.leader_epoch,
            fetch_offset: leo,
            last_fetched_epoch: last_epoch,
            log_start_offset: f.partition.log_start_offset(),
        };
        if session.get(&tp) == Some(&state) {
            continue;
        }
        partitions.push(pb::PartitionFetch {
            topic_id: state.topic_id.as_bytes().to_vec().into(),
            topic: tp.topic.to_string(),
            partition: tp.partition,
            current_leader_epoch: state.leader_epoch,
            fetch_offset: state.fetch_offset,
            last_fetched_epoch: state.last_fetched_epoch,
            log_start_offset: state.log_start_offset,
            partition_max_bytes: cfg.fetch_max_bytes,
        });
        session.insert(tp, state);
    }
    *changed = still_paused;
    if session.is_empty() && partitions.is_empty() && forgotten.is_empty() {
        return None;
    }
    Some(pb::FetchRequest {
        replica_id: node_id,
        max_wait_ms: cfg.fetch_wait_max_ms,
        min_bytes: cfg.fetch_min_bytes,
        max_bytes: cfg.fetch_response_max_bytes,
        partitions,
        incremental: true,
        forgotten,
    })
}

/// Applies one fetch response (blocking file work).
fn handle_response(leader: i32, parts: &Mutex<Followed>, resp: pb::FetchResponse) {
    let now = now_ms();
    for pd in resp.partitions {
        let tp = TopicPartition::new(&pd.topic, pd.partition);
        let (p, epoch) = {
            let mut followed = parts.lock();
            let Some(f) = followed.parts.get(&tp) else {
                continue;
            };
            let found = (f.partition.clone(), f.leader_epoch);
            // Whatever happens below, the next request looks at this partition again.
            followed.changed.insert(tp.clone());
            found
        };
        let pause = |why: &str, code: i32| {
            tracing::debug!(topic = %tp.topic, partition = tp.partition, leader, leader_epoch = epoch, code, why, "pausing the partition's replica fetch");
            if let Some(f) = parts.lock().parts.get_mut(&tp) {
                f.paused_until = Some(tokio::time::Instant::now() + PARTITION_ERROR_BACKOFF);
            }
        };
        if pd.error_code != 0 {
            if pd.error_code == i32::from(ResponseError::OffsetOutOfRange.code()) {
                let before = p.last_epoch_and_end();
                match handle_out_of_range(&p, &pd) {
                    Err(e) => {
                        tracing::error!(topic = %tp.topic, partition = tp.partition, error = %e, "cannot reset the follower log after OFFSET_OUT_OF_RANGE");
                        pause("storage error", pd.error_code);
                    }
                    // Nothing to change here: asking again at once would get the same answer.
                    Ok(()) if p.last_epoch_and_end() == before => {
                        pause("offset out of range", pd.error_code);
                    }
                    Ok(()) => {}
                }
            } else {
                pause("error from the leader", pd.error_code);
            }
            continue;
        }
        if let Some(d) = pd.diverging_epoch {
            let diverging = EpochEndOffset {
                epoch: d.epoch,
                end_offset: d.end_offset,
            };
            let (local_epoch, local_end) = p.end_offset_for_epoch(diverging.epoch);
            let (_, leo) = p.last_epoch_and_end();
            let t = truncation(
                diverging,
                EpochEndOffset {
                    epoch: local_epoch,
                    end_offset: local_end,
                },
                leo,
                p.high_watermark(),
            );
            if t.offset < leo {
                tracing::info!(topic = %tp.topic, partition = tp.partition, leader, diverging_epoch = d.epoch, diverging_end_offset = d.end_offset, log_end_offset = leo, truncate_to = t.offset, "log diverged from the leader's; truncating");
                metrics::counter!("runnel_replica_truncations_total").increment(1);
                if let Err(e) = p.truncate_to(t.offset.max(p.log_start_offset())) {
                    tracing::error!(topic = %tp.topic, partition = tp.partition, error = %e, "truncation failed");
                    pause("truncation failed", 0);
                }
            } else {
                // Nothing to truncate: asking again at once would get the same answer.
                pause("diverging epoch without truncation", 0);
            }
            continue;
        }
        if !pd.records.is_empty() {
            match p.append_replicated(&pd.records, now) {
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(topic = %tp.topic, partition = tp.partition, leader, error = %e, "cannot append replicated batches");
                    pause("append failed", 0);
                    continue;
                }
            }
        }
        p.set_follower_hw(pd.high_watermark);
        // DeleteRecords on the leader moves the log start offset; followers follow it.
        let (_, leo) = p.last_epoch_and_end();
        if pd.log_start_offset > p.log_start_offset() && pd.log_start_offset <= leo {
            if let Err(e) = p.with_log(|l| l.delete_records_before(pd.log_start_offset)) {
                tracing::warn!(topic = %tp.topic, partition = tp.partition, log_start_offset = pd.log_start_offset, error = %e, "cannot follow the leader's log start offset");
            }
        }
    }
}

/// The follower's fetch offset is outside the leader's log: behind its log start (restart the
/// log there) or beyond its end (truncate to it).
fn handle_out_of_range(
    p: &Partition,
    pd: &pb::PartitionData,
) -> Result<(), runnel_storage::StorageError> {
    let (_, leo) = p.last_epoch_and_end();
    if pd.log_end_offset >= 0 && leo > pd.log_end_offset {
        tracing::warn!(topic = %p.tp.topic, partition = p.tp.partition, log_end_offset = leo, leader_log_end_offset = pd.log_end_offset, "follower is ahead of the leader; truncating");
        p.truncate_to(pd.log_end_offset.max(p.log_start_offset()))
    } else if pd.log_start_offset > leo {
        tracing::warn!(topic = %p.tp.topic, partition = p.tp.partition, log_end_offset = leo, leader_log_start_offset = pd.log_start_offset, "follower is behind the leader's log start; restarting the log there");
        p.truncate_fully_and_start_at(pd.log_start_offset)
    } else {
        Ok(())
    }
}
