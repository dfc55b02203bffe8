//! The broker's parts, built once at start: the services a request handler or a background
//! task may be given. Nothing below this module imports it; the handlers' dispatcher, the
//! reconciler and the server runtime hand each part only the services it needs.

use std::sync::Arc;

use runnel_controller::{AppliedImage, BrokerLifecycle, ControllerNode};
use tokio::sync::watch;

use crate::auth::Authorizer;
use crate::clock::now_ms;
use crate::config::{BrokerConfig, HostPort};
use crate::controller_channel::ControllerChannel;
use crate::coordinators::channels::NodeChannels;
use crate::coordinators::group::GroupCoordinator;
use crate::coordinators::txn::TxnService;
use crate::coordinators::verify::TxnVerifier;
use crate::coordinators::{InternalCoordinator, InternalTopics};
use crate::fence::Fence;
use crate::meta_properties;
use crate::metadata::MetadataView;
use crate::quota::QuotaManager;
use crate::replica::ReplicaManager;
use crate::replicate::Replication;

/// A running broker's services.
pub struct Broker {
    config: Arc<BrokerConfig>,
    advertised: HostPort,
    metadata: Arc<MetadataView>,
    controller: Arc<ControllerChannel>,
    /// Whether this broker must stop serving partitions and groups (fenced, or its data
    /// directory belongs to another cluster); shared with the group coordinator and the
    /// replication runtime.
    fence: Arc<Fence>,
    partitions: Arc<ReplicaManager>,
    /// Follower fetchers and ISR bookkeeping (see [`crate::replicate`]).
    replication: Arc<Replication>,
    /// The group coordinator (the groups of the `__consumer_offsets` partitions led here).
    groups: Arc<GroupCoordinator>,
    /// The transaction coordinator (the `__transaction_state` partitions led here).
    txns: Arc<TxnService>,
    /// gRPC channels to the other nodes (transaction markers and verifications).
    node_channels: Arc<NodeChannels>,
    /// Asks transaction coordinators whether a partition is in a producer's transaction.
    txn_verifier: Arc<TxnVerifier>,
    /// Both, by internal topic (for the reconciler, the request handlers and the timer).
    coordinators: InternalTopics,
    /// ACL authorization (see [`crate::auth::authorizer`]).
    authorizer: Arc<Authorizer>,
    /// Client quota measurements (see [`crate::quota`]).
    quotas: Arc<QuotaManager>,
    /// Derives the fake SCRAM salt of unknown users, so that a failed login does not reveal
    /// whether the user exists; random per process.
    scram_secret: [u8; 32],
    /// The cluster id `meta.properties` was checked against (or written with).
    verified_cluster: parking_lot::Mutex<Option<String>>,
}

pub type SharedBroker = Arc<Broker>;

impl Broker {
    pub(crate) fn new(
        config: BrokerConfig,
        advertised: HostPort,
        controller: Arc<ControllerNode>,
        lifecycle: watch::Receiver<BrokerLifecycle>,
        groups: GroupCoordinator,
        txns: TxnService,
    ) -> Broker {
        let config = Arc::new(config);
        let fence = Arc::new(Fence::new(lifecycle));
        groups.set_fence(fence.clone());
        let f = fence.clone();
        txns.set_serving(Arc::new(move || !f.is_fenced()));
        let metadata = Arc::new(MetadataView::new(config.node_id, controller.clone()));
        let images = metadata.image_watch();
        groups.set_metadata(Box::new(move || images.borrow().clone()));
        let controller = Arc::new(ControllerChannel::new(controller, metadata.clone()));
        let partitions = Arc::new(ReplicaManager::new(&config.data_dir));
        let replication = Arc::new(Replication::new(
            &config,
            partitions.clone(),
            metadata.clone(),
            controller.clone(),
            fence.clone(),
        ));
        let groups = Arc::new(groups);
        let txns = Arc::new(txns);
        let g = groups.clone();
        let _ = replication
            .marker_hook
            .set(Arc::new(move |topic, partition, marker| {
                if topic == runnel_coordinator::group::OFFSETS_TOPIC {
                    g.complete_txn(partition, marker.producer_id, marker.commit, now_ms());
                }
            }));
        let t = txns.clone();
        let _ = replication.txn_verify_hook.set(Arc::new(
            move |txn_id, producer_id, producer_epoch, partitions| {
                t.verify(txn_id, producer_id, producer_epoch, partitions)
            },
        ));
        let node_channels = Arc::new(NodeChannels::new(controller.clone()));
        let txn_verifier = Arc::new(TxnVerifier::new(
            config.node_id,
            txns.clone(),
            metadata.clone(),
            node_channels.clone(),
        ));
        let mut scram_secret = [0u8; 32];
        if getrandom::fill(&mut scram_secret).is_err() {
            // Without OS randomness, the time still makes the fake salts unpredictable enough
            // not to be recognisable across brokers.
            let t = now_ms().to_le_bytes();
            scram_secret[..8].copy_from_slice(&t);
        }
        Broker {
            authorizer: Arc::new(Authorizer::new(&config)),
            quotas: Arc::new(QuotaManager::new(config.quota_windows)),
            scram_secret,
            advertised,
            metadata,
            controller,
            fence,
            partitions,
            replication,
            coordinators: InternalTopics::new(vec![
                groups.clone() as Arc<dyn InternalCoordinator>,
                txns.clone() as Arc<dyn InternalCoordinator>,
            ]),
            groups,
            txns,
            node_channels,
            txn_verifier,
            verified_cluster: parking_lot::Mutex::new(None),
            config,
        }
    }

    pub fn config(&self) -> &Arc<BrokerConfig> {
        &self.config
    }

    /// The address clients reach the first listener at.
    pub fn advertised(&self) -> &HostPort {
        &self.advertised
    }

    pub fn metadata(&self) -> &Arc<MetadataView> {
        &self.metadata
    }

    pub fn controller(&self) -> &Arc<ControllerChannel> {
        &self.controller
    }

    pub fn fence(&self) -> &Arc<Fence> {
        &self.fence
    }

    /// The partitions hosted here.
    pub fn partitions(&self) -> &Arc<ReplicaManager> {
        &self.partitions
    }

    pub fn replication(&self) -> &Arc<Replication> {
        &self.replication
    }

    pub fn groups(&self) -> &Arc<GroupCoordinator> {
        &self.groups
    }

    pub fn txns(&self) -> &Arc<TxnService> {
        &self.txns
    }

    pub fn node_channels(&self) -> &Arc<NodeChannels> {
        &self.node_channels
    }

    pub fn txn_verifier(&self) -> &Arc<TxnVerifier> {
        &self.txn_verifier
    }

    /// The coordinators kept in internal topics, by topic.
    pub fn coordinators(&self) -> &InternalTopics {
        &self.coordinators
    }

    pub fn authorizer(&self) -> &Arc<Authorizer> {
        &self.authorizer
    }

    /// Client quota measurements.
    pub fn quotas(&self) -> &Arc<QuotaManager> {
        &self.quotas
    }

    pub fn scram_secret(&self) -> &[u8; 32] {
        &self.scram_secret
    }

    /// The locally applied metadata image.
    pub fn image(&self) -> Arc<AppliedImage> {
        self.metadata.image()
    }

    /// Ties the data directory to the image's cluster id ([`meta_properties::check_cluster`]);
    /// call only with a caught-up image. False (and the broker fails for good, see
    /// [`Fence::fail`]) when the data directory belongs to another cluster or the check cannot
    /// be made: then nothing may be opened or deleted.
    pub fn verify_cluster(&self, image: &AppliedImage) -> bool {
        if let Some(reason) = self.fence.fatal() {
            tracing::debug!(reason = %reason, "broker has failed; not reconciling");
            return false;
        }
        let Some(cluster_id) = image.image.cluster_id() else {
            // Not bootstrapped yet: nothing to tie the directory to.
            return true;
        };
        let mut verified = self.verified_cluster.lock();
        if verified.as_deref() == Some(cluster_id) {
            return true;
        }
        match meta_properties::check_cluster(&self.config.data_dir, self.config.node_id, cluster_id)
        {
            Ok(()) => {
                *verified = Some(cluster_id.to_string());
                true
            }
            Err(reason) => {
                tracing::error!(
                    node_id = self.config.node_id,
                    cluster_id,
                    data_dir = %self.config.data_dir.display(),
                    reason = %reason,
                    "data directory does not belong to this cluster"
                );
                self.fence.fail(reason);
                false
            }
        }
    }
}
