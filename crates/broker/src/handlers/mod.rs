//! Kafka API handlers. [`handle`] decodes one request frame and dispatches it; each handler
//! turns a request into a [`Reply`]. Handlers run in request order on the connection's reader;
//! anything that must wait (a fetch long-poll) is returned as [`Reply::Later`].
//!
//! Only the dispatcher sees the [`Broker`]: each handler is given the services it uses (the
//! hosted partitions and the fence for the data path, the metadata view, the authorizer, the
//! controller channel, the group coordinator, the broker's own settings) and nothing else.

mod acls;
mod admin;
mod api_versions;
pub use api_versions::unsupported_version_response as unsupported_api_versions_response;
#[cfg(test)]
mod cluster_tests;
mod configs;
mod elect_leaders;
mod epochs;
mod fetch;
mod group;
mod list_offsets;
mod meta;
mod produce;
mod quorum;
mod quotas;
mod scram;
mod throttle;
mod txn;

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use futures::future::BoxFuture;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, BrokerId, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Encodable, StrBytes};
use runnel_protocol::frame::{self, RequestError};

use runnel_controller::image::BrokerRegistration;
use runnel_controller::records::BrokerEndpoint;
use runnel_controller::MetadataImage;

pub use crate::topics::{is_reserved_topic, validate_topic_name};

use crate::auth::Authorizer;
use crate::broker::Broker;
use crate::config::BrokerConfig;
pub use crate::context::api_name;
use crate::context::{RequestContext, LISTENER_NAME};
use crate::controller_channel::ControllerChannel;
use crate::fence::Fence;
use crate::metadata::MetadataView;
use crate::quota::{QuotaKind, QuotaManager};
pub use crate::replica::check_leader;
use crate::replica::{Partition, ReplicaManager};
use runnel_controller::api::{AdminRequest, AdminResponse};
use runnel_controller::{AppliedImage, ControllerError};
use runnel_coordinator::group::OFFSETS_TOPIC;
use runnel_coordinator::txn::TRANSACTION_STATE_TOPIC;
use runnel_protocol::response_frame::{FrameBuf, ResponseFrame};
use runnel_security::acl::{AclOperation, ResourceType};

/// What the admin handlers use: the image, the controller, ACLs and the broker's own settings
/// (no partition, no group).
#[derive(Clone)]
pub(crate) struct AdminServices {
    pub metadata: Arc<MetadataView>,
    pub controller: Arc<ControllerChannel>,
    pub authorizer: Arc<Authorizer>,
    pub config: Arc<BrokerConfig>,
    /// The controller mutation quota is charged where topics are created and deleted.
    pub quotas: Arc<QuotaManager>,
}

impl AdminServices {
    fn new(b: &Broker) -> AdminServices {
        AdminServices {
            metadata: b.metadata().clone(),
            controller: b.controller().clone(),
            authorizer: b.authorizer().clone(),
            config: b.config().clone(),
            quotas: b.quotas().clone(),
        }
    }

    fn image(&self) -> Arc<AppliedImage> {
        self.metadata.image()
    }

    /// Whether `ctx`'s principal may do `op` on the resource, by the ACLs of the current
    /// image (a denial is logged).
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

    /// Runs an admin request on the active controller and waits until this broker has applied
    /// it.
    async fn admin(
        &self,
        req: AdminRequest,
        timeout: Duration,
    ) -> Result<AdminResponse, ControllerError> {
        self.controller.admin(req, timeout).await
    }
}

/// What a handler produced. It lives for one dispatch on the stack, so the size difference
/// between an inline response and a boxed future does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Reply {
    Now(ResponseKind),
    Later(BoxFuture<'static, ResponseKind>),
    /// Computed later, and possibly no response at all (a request that waited, see
    /// [`after_take_up`], and turned out to need none).
    LaterOrNone(BoxFuture<'static, Option<ResponseKind>>),
    /// Computed later, as `LaterOrNone`, by a future that runs at once on its own, and the
    /// connection handles no further request until the barrier is released (or its sender
    /// dropped). For a handler that appends in the future (after asking a transaction
    /// coordinator, or once this node leads the partitions): the appends of requests pipelined
    /// behind it must come after its own, as they do when a handler appends before it returns.
    Ordered(BoxFuture<'static, Option<ResponseKind>>, ReadBarrier),
    /// Produce with acks=0: the client expects no response.
    NoResponse,
}

/// Released once a request handled in a future has done what its connection's next request
/// must come after (see [`Reply::Ordered`]).
pub type ReadBarrier = tokio::sync::oneshot::Receiver<()>;

/// A barrier and the sender that releases it.
pub(crate) fn read_barrier() -> (tokio::sync::oneshot::Sender<()>, ReadBarrier) {
    tokio::sync::oneshot::channel()
}

/// The response of a [`Reply::Ordered`] future, which is spawned so that it does its appends
/// (and releases the connection) without waiting for the responses queued before it, and the
/// time it spent being polled.
fn spawn_ordered(
    fut: BoxFuture<'static, Option<ResponseKind>>,
) -> impl std::future::Future<Output = (Option<ResponseKind>, Duration)> {
    let task = tokio::spawn(Timed::new(fut));
    async move {
        match task.await {
            Ok(out) => out,
            Err(e) => {
                tracing::error!(error = %e, "request task failed");
                (None, Duration::ZERO)
            }
        }
    }
}

/// How long a client must wait after a response (client quotas), and whether it waits on its
/// own (KIP-219) or the response itself must be held back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Throttle {
    pub ms: u64,
    pub client_backs_off: bool,
}

/// A response in the connection's response queue: already encoded (its bytes held in memory,
/// counted against the connection's budget), or still being computed. `None` means no response
/// is sent (Produce with acks=0).
pub struct PendingResponse {
    response: Pending,
    /// The client was over one of its quotas when the request was handled: its next request is
    /// handled only once this response is written and the throttle has passed, as Kafka, which
    /// reads one request of a connection at a time, does. Otherwise every request pipelined
    /// behind this one would be admitted before the first throttle takes effect.
    pub over_quota: bool,
    /// The connection's next request is handled only once this is released ([`Reply::Ordered`]).
    pub read_barrier: Option<ReadBarrier>,
}

enum Pending {
    Ready(Option<ResponseFrame>, Throttle),
    Later(BoxFuture<'static, (Option<ResponseFrame>, Throttle)>),
}

impl PendingResponse {
    fn ready_with(bytes: Option<ResponseFrame>, throttle: Throttle) -> Self {
        PendingResponse {
            response: Pending::Ready(bytes, throttle),
            over_quota: false,
            read_barrier: None,
        }
    }

    fn later_with(
        f: impl std::future::Future<Output = (Option<ResponseFrame>, Throttle)> + Send + 'static,
    ) -> Self {
        PendingResponse {
            response: Pending::Later(Box::pin(f)),
            over_quota: false,
            read_barrier: None,
        }
    }

    /// A response computed later (a long poll, an acks=all produce, a delayed answer).
    pub fn later(
        f: impl std::future::Future<Output = Option<ResponseFrame>> + Send + 'static,
    ) -> Self {
        PendingResponse::later_with(async move { (f.await, Throttle::default()) })
    }

    /// The bytes this response holds in memory now.
    pub fn held_bytes(&self) -> usize {
        match &self.response {
            Pending::Ready(b, _) => b.as_ref().map_or(0, ResponseFrame::len),
            Pending::Later(_) => 0,
        }
    }

    /// The response's bytes, once computed, and the throttle that follows it.
    pub async fn resolve(self) -> (Option<ResponseFrame>, Throttle) {
        match self.response {
            Pending::Ready(b, t) => (b, t),
            Pending::Later(f) => f.await,
        }
    }
}

/// A response that is already complete.
pub fn ready(bytes: Option<ResponseFrame>) -> PendingResponse {
    PendingResponse::ready_with(bytes, Throttle::default())
}

/// Handles one decoded request: dispatches it and turns the handler's [`Reply`] into the
/// encoded response the connection queues. An error means the connection must be closed.
pub fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    body: RequestKind,
) -> Result<Option<PendingResponse>, RequestError> {
    let api_key = ctx.api_key;
    let version = ctx.api_version;
    let correlation_id = ctx.correlation_id;
    metrics::counter!("runnel_requests_total", "api" => api_name(api_key)).increment(1);
    let quota = QuotaCheck::start(broker, ctx);
    let started = std::time::Instant::now();
    let reply = dispatch(broker, ctx, body);
    let Some(quota) = quota else {
        return finish(reply, correlation_id, api_key, version);
    };
    let busy = started.elapsed();
    let over_quota = quota.over_quota_now();
    let encode = move |body: Option<ResponseKind>, busy: Duration| {
        let mut body = body;
        let throttle = quota.finish(body.as_mut(), busy);
        let bytes = body.and_then(|b| encode_later(correlation_id, api_key, version, &b));
        (bytes, throttle)
    };
    let mut pending = match reply {
        Reply::NoResponse => {
            let (bytes, t) = encode(None, busy);
            PendingResponse::ready_with(bytes, t)
        }
        Reply::Now(body) => {
            let (bytes, t) = encode(Some(body), busy);
            PendingResponse::ready_with(bytes, t)
        }
        Reply::Later(fut) => PendingResponse::later_with(async move {
            let (body, more) = Timed::new(fut).await;
            encode(Some(body), busy + more)
        }),
        Reply::LaterOrNone(fut) => PendingResponse::later_with(async move {
            let (body, more) = Timed::new(fut).await;
            encode(body, busy + more)
        }),
        Reply::Ordered(fut, barrier) => {
            let task = spawn_ordered(fut);
            let mut p = PendingResponse::later_with(async move {
                let (body, more) = task.await;
                encode(body, busy + more)
            });
            p.read_barrier = Some(barrier);
            p
        }
    };
    pending.over_quota = over_quota;
    Ok(Some(pending))
}

/// A future whose time spent in `poll` is added up: the request-handling time a request quota
/// charges (waiting, as a long poll does, costs nothing).
struct Timed<F> {
    inner: F,
    busy: Duration,
}

impl<F> Timed<F> {
    fn new(inner: F) -> Timed<F> {
        Timed {
            inner,
            busy: Duration::ZERO,
        }
    }
}

impl<F: std::future::Future + Unpin> std::future::Future for Timed<F> {
    type Output = (F::Output, Duration);

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let started = std::time::Instant::now();
        let polled = std::pin::Pin::new(&mut self.inner).poll(cx);
        self.busy += started.elapsed();
        polled.map(|out| (out, self.busy))
    }
}

/// The quotas one request is measured against, when the cluster has any: produce bytes are
/// charged when the request arrives, fetch bytes and handling time when its response is ready.
struct QuotaCheck {
    quotas: Arc<QuotaManager>,
    metadata: Arc<MetadataView>,
    ctx: RequestContext,
    /// The produce quota's throttle, charged on arrival.
    produce_ms: u64,
}

impl QuotaCheck {
    fn start(b: &Broker, ctx: &RequestContext) -> Option<QuotaCheck> {
        let image = b.metadata().image();
        if ctx.internal || image.image.client_quotas().next().is_none() {
            return None;
        }
        let quotas = b.quotas().clone();
        let produce_ms = if ctx.api_key == ApiKey::Produce {
            quotas.record(
                QuotaKind::Produce,
                &image.image,
                ctx,
                ctx.request_bytes as f64,
                now_ms(),
            )
        } else {
            0
        };
        Some(QuotaCheck {
            quotas,
            metadata: b.metadata().clone(),
            ctx: ctx.clone(),
            produce_ms,
        })
    }

    /// Whether the client is over any of its quotas now (its requests so far included).
    fn over_quota_now(&self) -> bool {
        let image = self.metadata.image();
        let now = now_ms();
        [
            QuotaKind::Produce,
            QuotaKind::Fetch,
            QuotaKind::Request,
            QuotaKind::ControllerMutation,
        ]
        .into_iter()
        .any(|k| self.quotas.throttle(k, &image.image, &self.ctx, now) > 0)
    }

    /// Charges the response and the handling time, puts the throttle time in the response and
    /// answers it. A fetch over its quota is answered empty, as Kafka does, and its bytes are
    /// not charged.
    fn finish(self, body: Option<&mut ResponseKind>, busy: Duration) -> Throttle {
        let image = self.metadata.image();
        let image = &image.image;
        let now = now_ms();
        let ctx = &self.ctx;
        // KIP-124: handling time as a percentage of one thread over the window.
        let percent_seconds = busy.as_secs_f64() * 100.0;
        let request_ms = self
            .quotas
            .record(QuotaKind::Request, image, ctx, percent_seconds, now);
        // The produce bytes were charged on arrival; the wait counts from the response, as in
        // Kafka, so the time the request took is not added to it.
        let produce_ms = if self.produce_ms > 0 {
            self.quotas.throttle(QuotaKind::Produce, image, ctx, now)
        } else {
            0
        };
        let mut ms = produce_ms.max(request_ms);
        if let Some(body) = body {
            if let ResponseKind::Fetch(fetch) = body {
                let bytes = fetch_bytes(fetch) as f64;
                let fetch_ms = self.quotas.record(QuotaKind::Fetch, image, ctx, bytes, now);
                if fetch_ms > 0 || request_ms > 0 {
                    self.quotas
                        .unrecord(QuotaKind::Fetch, image, ctx, bytes, now);
                    *fetch = kafka_protocol::messages::FetchResponse::default();
                }
                ms = ms.max(fetch_ms);
            }
            ms = ms.max(throttle::get(body));
            if ms > 0 {
                throttle::set(body, ctx.api_key, ctx.api_version, ms);
            }
        }
        Throttle {
            ms,
            client_backs_off: throttle::client_throttles(ctx.api_key, ctx.api_version),
        }
    }
}

fn now_ms() -> u64 {
    crate::clock::now_ms().max(0) as u64
}

/// The record bytes of a Fetch response.
fn fetch_bytes(fetch: &kafka_protocol::messages::FetchResponse) -> usize {
    fetch
        .responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
        .sum()
}

/// Encodes a [`Reply`] (now, or once its future completes).
pub(crate) fn finish(
    reply: Reply,
    correlation_id: i32,
    api_key: ApiKey,
    version: i16,
) -> Result<Option<PendingResponse>, RequestError> {
    match reply {
        Reply::NoResponse => Ok(Some(ready(None))),
        Reply::Now(body) => {
            let bytes = encode_response(correlation_id, api_key, version, &body)?;
            Ok(Some(ready(Some(bytes))))
        }
        Reply::Later(fut) => Ok(Some(PendingResponse::later(async move {
            let body = fut.await;
            encode_later(correlation_id, api_key, version, &body)
        }))),
        Reply::LaterOrNone(fut) => Ok(Some(PendingResponse::later(async move {
            let body = fut.await?;
            encode_later(correlation_id, api_key, version, &body)
        }))),
        Reply::Ordered(fut, barrier) => {
            let task = spawn_ordered(fut);
            let mut p = PendingResponse::later(async move {
                let body = task.await.0?;
                encode_later(correlation_id, api_key, version, &body)
            });
            p.read_barrier = Some(barrier);
            Ok(Some(p))
        }
    }
}

/// Encodes a response computed after its request was handled (an encoding failure is logged and
/// the response dropped).
fn encode_later(
    correlation_id: i32,
    api_key: ApiKey,
    version: i16,
    body: &ResponseKind,
) -> Option<ResponseFrame> {
    match encode_response(correlation_id, api_key, version, body) {
        Ok(b) => Some(b),
        Err(e) => {
            tracing::error!(api = api_name(api_key), version, error = %e, "cannot encode response");
            None
        }
    }
}

fn dispatch(b: &Broker, ctx: &RequestContext, body: RequestKind) -> Reply {
    let version = ctx.api_version;
    // The services each family of handlers is given.
    let (partitions, fence, metadata, authz) =
        (b.partitions(), b.fence(), b.metadata(), b.authorizer());
    let dp = || DataPath {
        partitions: partitions.clone(),
        fence: fence.clone(),
        metadata: metadata.clone(),
        authorizer: authz.clone(),
        verifier: b
            .config()
            .transactions
            .partition_verification
            .then(|| b.txn_verifier().clone()),
    };
    let admin = || AdminServices::new(b);
    let groups = || group_services(b);
    let txns = || txn::TxnServices {
        txns: b.txns().clone(),
        metadata: b.metadata().clone(),
        controller: b.controller().clone(),
        authorizer: b.authorizer().clone(),
        groups: b.groups().clone(),
        partitions: b.partitions().clone(),
        fence: b.fence().clone(),
        marker_hook: b.replication().marker_hook.get().cloned(),
    };
    match body {
        RequestKind::ApiVersions(r) => {
            Reply::Now(ResponseKind::ApiVersions(api_versions::handle(r, version)))
        }
        RequestKind::Metadata(r) => {
            let auto = meta::AutoCreate {
                enabled: b.config().auto_create_topics,
                offsets_topic: b.groups().topic_spec(),
            };
            meta::handle(metadata, b.controller(), authz, auto, ctx, r, version)
        }
        RequestKind::Produce(r) => {
            // acks=0 has no response to hold back, and must not wait behind one.
            let wait = (r.acks != 0)
                .then(|| {
                    take_up_pending(partitions, metadata, |_| {
                        r.topic_data
                            .iter()
                            .flat_map(|t| {
                                t.partition_data
                                    .iter()
                                    .map(|p| (t.name.0.to_string(), p.index))
                            })
                            .collect()
                    })
                })
                .flatten();
            data_request(dp(), ctx, r, wait, move |d, ctx, r| {
                let svc = produce::ProduceServices {
                    partitions: d.partitions.clone(),
                    fence: d.fence.clone(),
                    metadata: d.metadata.clone(),
                    authorizer: d.authorizer.clone(),
                    verifier: d.verifier.clone(),
                };
                produce::handle(&svc, ctx, r, version)
            })
        }
        RequestKind::Fetch(r) => {
            let wait = take_up_pending(partitions, metadata, |image| {
                r.topics
                    .iter()
                    .filter_map(|t| {
                        let name = if version >= 13 {
                            image.topic(&t.topic_id).map(|m| m.name.clone())?
                        } else {
                            t.topic.0.to_string()
                        };
                        Some(
                            t.partitions
                                .iter()
                                .map(move |p| (name.clone(), p.partition)),
                        )
                    })
                    .flatten()
                    .collect()
            });
            // A client with a fetch quota gets at most half a quota sample's worth at once.
            let window = b
                .quotas()
                .max_in_window(QuotaKind::Fetch, &metadata.image().image, ctx);
            let max_bytes = window.map_or(b.config().limits.fetch_max_bytes, |w| {
                b.config()
                    .limits
                    .fetch_max_bytes
                    .min(w.min(usize::MAX as u64) as usize)
            });
            data_request(dp(), ctx, r, wait, move |d, ctx, r| {
                let source = fetch::FetchSource {
                    partitions: d.partitions.clone(),
                    fence: d.fence.clone(),
                    metadata: d.metadata.clone(),
                    max_bytes,
                };
                fetch::handle(&source, &d.authorizer, ctx, r, version)
            })
        }
        RequestKind::ListOffsets(r) => {
            let wait = take_up_pending(partitions, metadata, |_| {
                r.topics
                    .iter()
                    .flat_map(|t| {
                        t.partitions
                            .iter()
                            .map(|p| (t.name.0.to_string(), p.partition_index))
                    })
                    .collect()
            });
            data_request(dp(), ctx, r, wait, move |d, ctx, r| {
                Reply::Now(ResponseKind::ListOffsets(list_offsets::handle(
                    &d.partitions,
                    &d.fence,
                    &d.metadata,
                    &d.authorizer,
                    ctx,
                    r,
                    version,
                )))
            })
        }
        RequestKind::OffsetForLeaderEpoch(r) => {
            let wait = take_up_pending(partitions, metadata, |_| {
                r.topics
                    .iter()
                    .flat_map(|t| {
                        t.partitions
                            .iter()
                            .map(|p| (t.topic.0.to_string(), p.partition))
                    })
                    .collect()
            });
            data_request(dp(), ctx, r, wait, move |d, ctx, r| {
                Reply::Now(ResponseKind::OffsetForLeaderEpoch(epochs::handle(
                    &d.partitions,
                    &d.fence,
                    &d.metadata,
                    &d.authorizer,
                    ctx,
                    r,
                    version,
                )))
            })
        }
        RequestKind::DeleteRecords(r) => {
            let wait = take_up_pending(partitions, metadata, |_| {
                r.topics
                    .iter()
                    .flat_map(|t| {
                        t.partitions
                            .iter()
                            .map(|p| (t.name.0.to_string(), p.partition_index))
                    })
                    .collect()
            });
            data_request(dp(), ctx, r, wait, |d, ctx, r| {
                Reply::Now(ResponseKind::DeleteRecords(admin::delete_records(
                    &d.partitions,
                    &d.fence,
                    &d.metadata,
                    &d.authorizer,
                    ctx,
                    r,
                )))
            })
        }
        RequestKind::CreateTopics(r) => admin::create_topics(&admin(), ctx, r, version),
        RequestKind::DeleteTopics(r) => admin::delete_topics(&admin(), ctx, r, version),
        RequestKind::CreatePartitions(r) => admin::create_partitions(&admin(), ctx, r, version),
        RequestKind::DescribeCluster(r) => Reply::Now(ResponseKind::DescribeCluster(
            admin::describe_cluster(&admin(), ctx, r, version),
        )),
        RequestKind::InitProducerId(r) => {
            match r.transactional_id.as_ref().map(|t| t.0.to_string()) {
                Some(txn_id) => coordinator_request(
                    b,
                    TRANSACTION_STATE_TOPIC,
                    txns(),
                    ctx,
                    vec![txn_id.clone()],
                    r,
                    move |t, ctx, r| txn::init_producer_id(t, ctx, txn_id, r, version),
                ),
                _ => admin::init_producer_id(&admin(), ctx, r, version),
            }
        }
        RequestKind::AddPartitionsToTxn(r) => {
            let id = r.v3_and_below_transactional_id.0.to_string();
            coordinator_request(
                b,
                TRANSACTION_STATE_TOPIC,
                txns(),
                ctx,
                vec![id],
                r,
                move |t, ctx, r| txn::add_partitions_to_txn(t, ctx, r, version),
            )
        }
        RequestKind::AddOffsetsToTxn(r) => {
            let id = r.transactional_id.0.to_string();
            coordinator_request(
                b,
                TRANSACTION_STATE_TOPIC,
                txns(),
                ctx,
                vec![id],
                r,
                move |t, ctx, r| txn::add_offsets_to_txn(t, ctx, r, version),
            )
        }
        RequestKind::EndTxn(r) => {
            let id = r.transactional_id.0.to_string();
            coordinator_request(
                b,
                TRANSACTION_STATE_TOPIC,
                txns(),
                ctx,
                vec![id],
                r,
                move |t, ctx, r| txn::end_txn(t, ctx, r, version),
            )
        }
        RequestKind::DescribeProducers(r) => Reply::Now(ResponseKind::DescribeProducers(
            txn::describe_producers(&txns(), ctx, r, version),
        )),
        RequestKind::DescribeTransactions(r) => Reply::Now(ResponseKind::DescribeTransactions(
            txn::describe_transactions(&txns(), ctx, r, version),
        )),
        RequestKind::ListTransactions(r) => Reply::Now(ResponseKind::ListTransactions(
            txn::list_transactions(&txns(), ctx, r, version),
        )),
        RequestKind::WriteTxnMarkers(r) => txn::write_txn_markers(&txns(), ctx, r, version),
        RequestKind::DescribeConfigs(r) => Reply::Now(ResponseKind::DescribeConfigs(
            configs::describe(&admin(), ctx, r, version),
        )),
        RequestKind::AlterConfigs(r) => configs::alter(&admin(), ctx, r, version),
        RequestKind::IncrementalAlterConfigs(r) => {
            configs::incremental_alter(&admin(), ctx, r, version)
        }
        RequestKind::DescribeQuorum(r) => quorum::handle(&admin(), ctx, r, version),
        RequestKind::ElectLeaders(r) => elect_leaders::handle(&admin(), ctx, r, version),
        RequestKind::CreateAcls(r) => acls::create_acls(&admin(), ctx, r, version),
        RequestKind::DeleteAcls(r) => acls::delete_acls(&admin(), ctx, r, version),
        RequestKind::DescribeAcls(r) => acls::describe_acls(&admin(), ctx, r, version),
        RequestKind::DescribeUserScramCredentials(r) => {
            scram::describe_user_scram_credentials(&admin(), ctx, r, version)
        }
        RequestKind::AlterUserScramCredentials(r) => {
            scram::alter_user_scram_credentials(&admin(), ctx, r, version)
        }
        RequestKind::DescribeClientQuotas(r) => {
            quotas::describe_client_quotas(&admin(), ctx, r, version)
        }
        RequestKind::AlterClientQuotas(r) => quotas::alter_client_quotas(&admin(), ctx, r, version),
        RequestKind::FindCoordinator(r) => group::find_coordinator(&groups(), ctx, r, version),
        RequestKind::JoinGroup(r) => {
            let ids = vec![r.group_id.0.to_string()];
            coordinator_request(b, OFFSETS_TOPIC, groups(), ctx, ids, r, move |g, ctx, r| {
                group::join_group(g, ctx, r, version)
            })
        }
        RequestKind::SyncGroup(r) => {
            let ids = vec![r.group_id.0.to_string()];
            coordinator_request(b, OFFSETS_TOPIC, groups(), ctx, ids, r, move |g, ctx, r| {
                group::sync_group(g, ctx, r, version)
            })
        }
        RequestKind::Heartbeat(r) => {
            let ids = vec![r.group_id.0.to_string()];
            coordinator_request(b, OFFSETS_TOPIC, groups(), ctx, ids, r, move |g, ctx, r| {
                Reply::Now(ResponseKind::Heartbeat(group::heartbeat(
                    g, ctx, r, version,
                )))
            })
        }
        RequestKind::LeaveGroup(r) => {
            let ids = vec![r.group_id.0.to_string()];
            coordinator_request(b, OFFSETS_TOPIC, groups(), ctx, ids, r, move |g, ctx, r| {
                Reply::Now(ResponseKind::LeaveGroup(group::leave_group(
                    g, ctx, r, version,
                )))
            })
        }
        RequestKind::OffsetCommit(r) => {
            let ids = vec![r.group_id.0.to_string()];
            coordinator_request(b, OFFSETS_TOPIC, groups(), ctx, ids, r, move |g, ctx, r| {
                group::offset_commit(g, ctx, r, version)
            })
        }
        RequestKind::TxnOffsetCommit(r) => {
            let ids = vec![r.group_id.0.to_string()];
            coordinator_request(b, OFFSETS_TOPIC, groups(), ctx, ids, r, move |g, ctx, r| {
                group::txn_offset_commit(g, ctx, r, version)
            })
        }
        RequestKind::OffsetFetch(r) => {
            let mut ids: Vec<String> = r.groups.iter().map(|g| g.group_id.0.to_string()).collect();
            if ids.is_empty() {
                ids.push(r.group_id.0.to_string());
            }
            coordinator_request(b, OFFSETS_TOPIC, groups(), ctx, ids, r, move |g, ctx, r| {
                Reply::Now(ResponseKind::OffsetFetch(group::offset_fetch(
                    g, ctx, r, version,
                )))
            })
        }
        RequestKind::ListGroups(r) => Reply::Now(ResponseKind::ListGroups(group::list_groups(
            &groups(),
            ctx,
            r,
            version,
        ))),
        RequestKind::DescribeGroups(r) => Reply::Now(ResponseKind::DescribeGroups(
            group::describe_groups(&groups(), ctx, r, version),
        )),
        RequestKind::DeleteGroups(r) => Reply::Now(ResponseKind::DeleteGroups(
            group::delete_groups(&groups(), ctx, r, version),
        )),
        RequestKind::OffsetDelete(r) => Reply::Now(ResponseKind::OffsetDelete(
            group::offset_delete(&groups(), ctx, r, version),
        )),
        // decode_request only returns APIs in the version table, all of which are matched above.
        other => {
            tracing::error!(request = ?std::mem::discriminant(&other), "request of an API with no handler");
            Reply::NoResponse
        }
    }
}

/// What the data-path handlers (Produce, Fetch, ListOffsets, OffsetForLeaderEpoch,
/// DeleteRecords) use.
#[derive(Clone)]
struct DataPath {
    partitions: Arc<ReplicaManager>,
    fence: Arc<Fence>,
    metadata: Arc<MetadataView>,
    authorizer: Arc<Authorizer>,
    verifier: Option<Arc<crate::coordinators::verify::TxnVerifier>>,
}

/// Runs a data request now, or once this node has taken up the leaderships it names
/// ([`take_up_pending`]).
fn data_request<R: Send + 'static>(
    dp: DataPath,
    ctx: &RequestContext,
    req: R,
    wait: Option<u64>,
    run: impl FnOnce(&DataPath, &RequestContext, R) -> Reply + Send + 'static,
) -> Reply {
    match wait {
        None => run(&dp, ctx, req),
        Some(index) => {
            let ctx = ctx.clone();
            let metadata = dp.metadata.clone();
            after_take_up(&metadata, index, move || run(&dp, &ctx, req))
        }
    }
}

/// Runs a request for the keys `keys` (group ids, a transactional id) of the coordinator kept
/// in internal topic `topic` now, or once this node has taken up the leaderships its image
/// shows for their partitions: FindCoordinator answers from the image, so without the wait the
/// coordinator it just named would answer NOT_COORDINATOR (a new internal topic's partitions
/// are taken up one after the other), and the client would look the coordinator up again and
/// retry only after a backoff.
#[allow(clippy::too_many_arguments)]
fn coordinator_request<S: Send + 'static, R: Send + 'static>(
    b: &Broker,
    topic: &'static str,
    svc: S,
    ctx: &RequestContext,
    keys: Vec<String>,
    req: R,
    run: impl FnOnce(&S, &RequestContext, R) -> Reply + Send + 'static,
) -> Reply {
    let wait = b.coordinators().get(topic).and_then(|c| {
        take_up_pending(b.partitions(), b.metadata(), |_| {
            keys.iter()
                .map(|k| (topic.to_string(), c.partition_of(k)))
                .collect()
        })
    });
    match wait {
        None => run(&svc, ctx, req),
        Some(index) => {
            let ctx = ctx.clone();
            let metadata = b.metadata().clone();
            after_take_up(&metadata, index, move || run(&svc, &ctx, req))
        }
    }
}

/// The group handlers' services.
fn group_services(b: &Broker) -> group::GroupServices {
    group::GroupServices {
        groups: b.groups().clone(),
        metadata: b.metadata().clone(),
        controller: b.controller().clone(),
        authorizer: b.authorizer().clone(),
        txns: b.txns().clone(),
    }
}

/// Encodes a response frame: length prefix, response header, body. A Fetch response's record
/// buffers become parts of the frame rather than being copied into it.
pub fn encode_response(
    correlation_id: i32,
    api_key: ApiKey,
    version: i16,
    body: &ResponseKind,
) -> Result<ResponseFrame, RequestError> {
    let fail = |e: String| RequestError::Malformed {
        prefix: frame::HeaderPrefix {
            api_key: api_key as i16,
            api_version: version,
            correlation_id,
        },
        api_key,
        version,
        reason: format!("response encoding failed: {e}"),
    };
    // Legacy versions are answered in the layout of the first version kafka-protocol has.
    let version = runnel_protocol::legacy::response_version(api_key, version);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = api_key.response_header_version(version);
    if let ResponseKind::Fetch(fetch) = body {
        let size = header
            .compute_size(header_version)
            .and_then(|h| Ok(h + fetch.compute_size(version)?))
            .map_err(|e| fail(format!("{e:#}")))?;
        let len = i32::try_from(size).map_err(|_| fail(format!("{size} bytes")))?;
        let shared = fetch
            .responses
            .iter()
            .flat_map(|t| t.partitions.iter())
            .filter_map(|p| p.records.clone())
            .collect();
        let mut buf = FrameBuf::new(shared, 256);
        buf.put_i32(len);
        header
            .encode(&mut buf, header_version)
            .map_err(|e| fail(format!("{e:#}")))?;
        fetch
            .encode(&mut buf, version)
            .map_err(|e| fail(format!("{e:#}")))?;
        let frame = buf.finish();
        if frame.len() != 4 + size {
            return Err(fail(format!(
                "encoded {} bytes where {} were computed",
                frame.len(),
                4 + size
            )));
        }
        return Ok(frame);
    }
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    header
        .encode(&mut buf, header_version)
        .map_err(|e| fail(format!("{e:#}")))?;
    body.encode(&mut buf, version)
        .map_err(|e| fail(format!("{e:#}")))?;
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(ResponseFrame::from(buf.freeze()))
}

pub(crate) fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// The cluster id of the image (empty until the quorum has bootstrapped it).
pub fn cluster_id(image: &MetadataImage) -> String {
    image.cluster_id().unwrap_or_default().to_string()
}

/// The registered brokers that are not fenced: those clients may use and that may hold
/// leaderships and replicas.
pub(crate) fn live_brokers(image: &MetadataImage) -> impl Iterator<Item = &BrokerRegistration> {
    image.brokers().filter(|b| !b.fenced)
}

/// The client endpoint of a registered broker: the one of the listener the request arrived
/// on (Kafka gives clients the addresses of their own listener), else PLAINTEXT, else the
/// first. A broker without the connection's listener falls back the same way rather than
/// disappearing from the cluster.
pub(crate) fn client_endpoint<'a>(
    b: &'a BrokerRegistration,
    listener: &str,
) -> Option<&'a BrokerEndpoint> {
    let by_name = |name: &str| b.endpoints.iter().find(|e| e.name == name);
    by_name(listener)
        .or_else(|| by_name(LISTENER_NAME))
        .or(b.endpoints.first())
}

/// The endpoint of an unfenced broker, as clients should reach it.
pub(crate) fn live_endpoint<'a>(
    image: &'a MetadataImage,
    id: i32,
    listener: &str,
) -> Option<(&'a BrokerRegistration, &'a BrokerEndpoint)> {
    let b = image.broker(id).filter(|b| !b.fenced)?;
    client_endpoint(b, listener).map(|e| (b, e))
}

/// The endpoints of the live brokers named in leader hints (KIP-951), for the `node_endpoints`
/// of Produce and Fetch responses; `make` builds the response's own endpoint type from
/// (node id, host, port, rack).
pub(crate) fn hint_endpoints<T>(
    image: &MetadataImage,
    ids: impl IntoIterator<Item = i32>,
    listener: &str,
    make: impl Fn(BrokerId, StrBytes, i32, Option<StrBytes>) -> T,
) -> Vec<T> {
    ids.into_iter()
        .filter_map(|id| live_endpoint(image, id, listener))
        .map(|(b, e)| {
            make(
                BrokerId(b.broker_id),
                s(&e.host),
                i32::from(e.port),
                b.rack.as_deref().map(s),
            )
        })
        .collect()
}

/// How long an admin request waits for the controller: the request's own timeout, within
/// bounds (a zero timeout would make every request fail; a huge one would park it forever).
pub(crate) fn admin_timeout(timeout_ms: i32) -> Duration {
    Duration::from_millis(timeout_ms.clamp(5_000, 120_000) as u64)
}

/// How long a data request waits for this node to take up a leadership its image already shows.
const TAKE_UP_WAIT: Duration = Duration::from_secs(5);

/// The image index a data request must wait for before it is handled, if any: when the local
/// image names this node leader of a partition the request names, but the reconciler has not yet
/// made this node lead it (a new topic's logs are being opened, say). Metadata answers from the
/// image, so without the wait a client would be told NOT_LEADER_OR_FOLLOWER by the leader
/// Metadata just named (librdkafka takes that as final for ListOffsets). The handlers answer from
/// [`MetadataView::serving_image`], so a topic that reaches the image just after this check
/// is unknown to them rather than refused.
/// `wanted` lists the request's partitions by topic name (it is called only when the reconciler
/// is behind the image).
pub(crate) fn take_up_pending(
    partitions: &ReplicaManager,
    metadata: &MetadataView,
    wanted: impl FnOnce(&MetadataImage) -> Vec<(String, i32)>,
) -> Option<u64> {
    let image = metadata.image();
    if metadata.reconciled_index() >= image.index {
        return None;
    }
    let me = metadata.node_id();
    let serving = metadata.serving_image();
    let names_me = |image: &MetadataImage, topic: &str, partition: i32| {
        image
            .topic_by_name(topic)
            .and_then(|t| t.partitions.get(&partition))
            .is_some_and(|p| p.leader == me)
    };
    wanted(&image.image)
        .iter()
        .any(|(topic, partition)| {
            let (topic, partition) = (topic.as_str(), *partition);
            // Taken up once the partition is led here and the image the handlers answer from
            // says so too (the reconciler publishes that image just after its actions).
            names_me(&image.image, topic, partition)
                && !(names_me(&serving.image, topic, partition)
                    && partitions
                        .get_by(topic, partition)
                        .is_some_and(|p| p.leadership().is_leader))
        })
        .then_some(image.index)
}

/// Runs `handle` once the reconciler has applied image `index` (or after [`TAKE_UP_WAIT`]; the
/// request is then answered as things stand). The connection's responses stay in order, and
/// its next request is handled only after this one (its appends come first).
pub(crate) fn after_take_up(
    metadata: &Arc<MetadataView>,
    index: u64,
    handle: impl FnOnce() -> Reply + Send + 'static,
) -> Reply {
    let metadata = metadata.clone();
    let (release, barrier) = read_barrier();
    Reply::Ordered(
        Box::pin(async move {
            let started = tokio::time::Instant::now();
            let done = metadata.wait_reconciled_locally(index, TAKE_UP_WAIT).await;
            tracing::debug!(
                index,
                taken_up = done,
                waited_ms = started.elapsed().as_millis() as u64,
                "request waited for this node to take up a leadership its metadata shows"
            );
            match handle() {
                Reply::Now(r) => {
                    drop(release);
                    Some(r)
                }
                Reply::Later(f) => {
                    drop(release);
                    Some(f.await)
                }
                Reply::LaterOrNone(f) => {
                    drop(release);
                    f.await
                }
                Reply::Ordered(f, inner) => {
                    // Released when the inner handler releases its own barrier.
                    tokio::spawn(async move {
                        let _ = inner.await;
                        drop(release);
                    });
                    f.await
                }
                Reply::NoResponse => {
                    drop(release);
                    None
                }
            }
        }),
        barrier,
    )
}

/// The partition, if this node leads it: NOT_LEADER_OR_FOLLOWER when the topic partition
/// exists but is led elsewhere (or not opened here yet) or while this broker is fenced (see
/// [`crate::fence::Fence`]), UNKNOWN_TOPIC_OR_PARTITION when the image has no such partition (or it is
/// the reserved metadata topic), and the epoch errors of [`check_leader`].
pub(crate) fn leader_partition(
    partitions: &ReplicaManager,
    fence: &Fence,
    image: &MetadataImage,
    topic: &str,
    partition: i32,
    current_leader_epoch: i32,
) -> Result<Arc<Partition>, ResponseError> {
    if is_reserved_topic(topic) {
        return Err(ResponseError::UnknownTopicOrPartition);
    }
    if fence.is_fenced() {
        return Err(ResponseError::NotLeaderOrFollower);
    }
    match partitions.get_by(topic, partition) {
        Some(p) => {
            check_leader(p.leadership(), current_leader_epoch)?;
            Ok(p)
        }
        None => {
            let exists = image
                .topic_by_name(topic)
                .is_some_and(|t| t.partitions.contains_key(&partition));
            if exists {
                Err(ResponseError::NotLeaderOrFollower)
            } else {
                Err(ResponseError::UnknownTopicOrPartition)
            }
        }
    }
}

/// The current leader and leader epoch of a partition as the image has it (KIP-951 hints).
pub(crate) fn leader_hint(
    image: &MetadataImage,
    topic: &str,
    partition: i32,
) -> Option<(i32, i32)> {
    let p = image.topic_by_name(topic)?.partitions.get(&partition)?;
    Some((p.leader, p.leader_epoch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::Leadership;

    /// A Fetch response encoded in parts is, byte for byte, the contiguous encoding, and its
    /// large record buffers are not copied.
    #[test]
    fn fetch_frames_equal_the_contiguous_encoding_without_copying_records() {
        use bytes::Bytes;
        use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
        use kafka_protocol::messages::{FetchResponse, TopicName};
        let big = Bytes::from(vec![0xAB; 100_000]);
        let small = Bytes::from(vec![0xCD; 100]);
        let partitions = vec![
            PartitionData::default()
                .with_partition_index(0)
                .with_records(Some(big.clone())),
            PartitionData::default()
                .with_partition_index(1)
                .with_records(Some(small.clone())),
            PartitionData::default()
                .with_partition_index(2)
                .with_records(Some(big.clone())),
            PartitionData::default().with_partition_index(3),
        ];
        let fetch =
            FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
                .with_topic(TopicName(s("t")))
                .with_topic_id(uuid::Uuid::from_u128(7))
                .with_partitions(partitions)]);
        let body = ResponseKind::Fetch(fetch);
        for version in [4, 11, 12, 13, 16] {
            let frame = encode_response(42, ApiKey::Fetch, version, &body).unwrap();
            let mut want = BytesMut::new();
            want.put_i32(0);
            ResponseHeader::default()
                .with_correlation_id(42)
                .encode(&mut want, ApiKey::Fetch.response_header_version(version))
                .unwrap();
            body.encode(&mut want, version).unwrap();
            let len = (want.len() - 4) as i32;
            want[0..4].copy_from_slice(&len.to_be_bytes());
            assert_eq!(frame.to_bytes(), want.freeze(), "v{version}");
            let shared = frame
                .parts()
                .iter()
                .filter(|p| p.as_ptr() == big.as_ptr())
                .count();
            assert_eq!(shared, 2, "v{version}: both large buffers are parts");
        }
    }

    #[test]
    fn leader_epoch_checks_follow_kafka() {
        let leader = Leadership {
            leader: 1,
            leader_epoch: 5,
            partition_epoch: 7,
            is_leader: true,
        };
        assert_eq!(check_leader(leader, -1), Ok(()));
        assert_eq!(check_leader(leader, 5), Ok(()));
        assert_eq!(
            check_leader(leader, 4),
            Err(ResponseError::FencedLeaderEpoch)
        );
        assert_eq!(
            check_leader(leader, 6),
            Err(ResponseError::UnknownLeaderEpoch)
        );
        let follower = Leadership {
            leader: 2,
            is_leader: false,
            ..leader
        };
        assert_eq!(
            check_leader(follower, -1),
            Err(ResponseError::NotLeaderOrFollower)
        );
        assert_eq!(
            check_leader(follower, 5),
            Err(ResponseError::NotLeaderOrFollower)
        );
        // An old epoch is fenced even on a follower: the client's metadata is stale.
        assert_eq!(
            check_leader(follower, 3),
            Err(ResponseError::FencedLeaderEpoch)
        );
        assert_eq!(
            check_leader(Leadership::NONE, -1),
            Err(ResponseError::NotLeaderOrFollower)
        );
    }

    #[test]
    fn admin_timeouts_are_bounded() {
        assert_eq!(admin_timeout(0), Duration::from_secs(5));
        assert_eq!(admin_timeout(30_000), Duration::from_secs(30));
        assert_eq!(admin_timeout(i32::MAX), Duration::from_secs(120));
        assert_eq!(admin_timeout(-7), Duration::from_secs(5));
    }
}
