//! [`MetadataImage`]: the cluster metadata that the records of the metadata log replay into.
//!
//! Replay is total: [`MetadataImage::apply`] accepts any record in any state. A record that does
//! not fit the image (a partition of an unknown topic, a duplicate topic name, an epoch that would
//! overflow, ...) leaves the image untouched and returns an [`ApplyError`]. The managers that
//! write records validate against the image first, so a rejected record in the log means a bug
//! upstream, not a reason to stop the quorum. Replay is deterministic (ordered maps only), so
//! every replica that replays the same log reaches the same image and the same rejections.

use std::collections::{BTreeMap, BTreeSet};

use runnel_security::acl::AclBinding;
use runnel_security::scram::{ScramCredential, ScramMechanism, MAX_ITERATIONS, MIN_ITERATIONS};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use crate::records::{
    AclRecord, BrokerEndpoint, BrokerId, BrokerRegistrationChangeRecord, ClientQuotaRecord,
    ClusterIdRecord, ConfigRecord, ConfigResourceType, FeatureLevelRecord, FenceBrokerRecord,
    PartitionChangeRecord, PartitionRecord, ProducerIdsRecord, QuotaEntity, QuotaValue, Record,
    RegisterBrokerRecord, RemoveAclRecord, RemoveTopicRecord, RemoveUserScramCredentialRecord,
    TopicRecord, UnfenceBrokerRecord, UserScramCredentialRecord,
};

/// `leader` value of a partition without a leader, as in Kafka.
pub const NO_LEADER: BrokerId = -1;

/// Why a record was not applied. The image is unchanged when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ApplyError {
    #[error("invalid broker id {0}")]
    InvalidBrokerId(BrokerId),
    #[error("unknown broker {0}")]
    UnknownBroker(BrokerId),
    #[error("broker {broker_id}: record names incarnation {got}, registered is {registered}")]
    StaleIncarnation {
        broker_id: BrokerId,
        got: Uuid,
        registered: Uuid,
    },
    #[error("invalid topic name {0:?}")]
    InvalidTopicName(String),
    #[error("invalid topic id {0}")]
    InvalidTopicId(Uuid),
    #[error("topic name {0:?} already exists")]
    TopicNameExists(String),
    #[error("topic id {0} already exists")]
    TopicIdExists(Uuid),
    #[error("unknown topic id {0}")]
    UnknownTopicId(Uuid),
    #[error("unknown topic {0:?}")]
    UnknownTopicName(String),
    #[error("invalid partition index {0}")]
    InvalidPartition(i32),
    #[error("partition {1} of topic {0} already exists")]
    PartitionExists(Uuid, i32),
    #[error("unknown partition {1} of topic {0}")]
    UnknownPartition(Uuid, i32),
    #[error("invalid assignment: {0}")]
    InvalidAssignment(String),
    #[error("leader {0} is not in the ISR")]
    LeaderNotInIsr(BrokerId),
    #[error("negative epoch")]
    NegativeEpoch,
    #[error("epoch overflow")]
    EpochOverflow,
    #[error("invalid config record: {0}")]
    InvalidConfig(String),
    #[error("producer id block start {got} is not above {current}")]
    ProducerIdsNotIncreasing { got: i64, current: i64 },
    #[error("invalid feature level record: {0}")]
    InvalidFeature(String),
    #[error("invalid cluster id {0:?}")]
    InvalidClusterId(String),
    #[error("cluster id is already {current:?}, record names {got:?}")]
    ClusterIdMismatch { current: String, got: String },
    #[error("invalid ACL id {0}")]
    InvalidAclId(Uuid),
    #[error("ACL id {0} already exists")]
    AclIdExists(Uuid),
    #[error("ACL {0:?} already exists")]
    AclExists(Box<AclBinding>),
    #[error("invalid ACL: {0}")]
    InvalidAcl(String),
    #[error("unknown ACL id {0}")]
    UnknownAcl(Uuid),
    #[error("invalid SCRAM credential: {0}")]
    InvalidScramCredential(String),
    #[error("no {mechanism} credential for user {name:?}")]
    UnknownScramCredential { name: String, mechanism: String },
    #[error("invalid client quota: {0}")]
    InvalidClientQuota(String),
}

/// A registered broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub broker_id: BrokerId,
    pub incarnation_id: Uuid,
    pub endpoints: Vec<BrokerEndpoint>,
    pub rack: Option<String>,
    /// A fenced broker leads nothing and is in no ISR (enforced by the managers, not here).
    pub fenced: bool,
    /// The broker is shutting down (controlled shutdown): it is handing its leaderships over
    /// and is never elected leader nor let into an ISR again. Cleared by a new registration
    /// and by unfencing. Absent from images written before it existed.
    #[serde(default)]
    pub in_controlled_shutdown: bool,
}

impl BrokerRegistration {
    /// Eligible for leadership and the ISR: unfenced and not shutting down (Kafka's "active").
    pub fn is_active(&self) -> bool {
        !self.fenced && !self.in_controlled_shutdown
    }
}

/// A topic and its partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    pub name: String,
    pub topic_id: Uuid,
    pub partitions: BTreeMap<i32, PartitionRegistration>,
}

/// One partition's assignment and epochs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRegistration {
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
    pub leader: BrokerId,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
}

/// The replayed state of the metadata log. Fields are private so that the name index and the
/// topics cannot drift apart; read it through the accessors and change it only with records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataImage {
    brokers: BTreeMap<BrokerId, BrokerRegistration>,
    topics: BTreeMap<Uuid, TopicImage>,
    topic_ids_by_name: BTreeMap<String, Uuid>,
    topic_configs: BTreeMap<String, BTreeMap<String, String>>,
    broker_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// First producer id of the next block to hand out.
    next_producer_id: i64,
    features: BTreeMap<String, i16>,
    /// Set once by the first record of a new cluster's log.
    #[serde(default)]
    cluster_id: Option<String>,
    /// Absent from images written before ACLs existed, like the fields below.
    #[serde(default)]
    acls: Acls,
    /// Bumped by every ACL record applied: equal versions of images of one log hold the same
    /// ACLs, so a reader rebuilds what it derives from them only when the version moves.
    #[serde(default)]
    acls_version: u64,
    #[serde(default)]
    scram: ScramCredentials,
    #[serde(default)]
    client_quotas: ClientQuotas,
    /// Bumped by every client quota record applied, as `acls_version` is for ACLs.
    #[serde(default)]
    client_quotas_version: u64,
}

/// Client quotas by entity, then key. Serialized as a list of `{entity, key, value}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ClientQuotas {
    by_entity: BTreeMap<QuotaEntity, BTreeMap<String, QuotaValue>>,
}

#[derive(Serialize, Deserialize)]
struct ClientQuotaEntry {
    entity: QuotaEntity,
    key: String,
    value: QuotaValue,
}

impl Serialize for ClientQuotas {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.by_entity.iter().flat_map(|(entity, values)| {
            values.iter().map(|(key, value)| ClientQuotaEntry {
                entity: entity.clone(),
                key: key.clone(),
                value: *value,
            })
        }))
    }
}

impl<'de> Deserialize<'de> for ClientQuotas {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entries = Vec::<ClientQuotaEntry>::deserialize(deserializer)?;
        let mut quotas = ClientQuotas::default();
        for e in entries {
            quotas
                .by_entity
                .entry(e.entity)
                .or_default()
                .insert(e.key, e.value);
        }
        Ok(quotas)
    }
}

/// The ACLs by id, and the set of their bindings (a binding is stored once). Serialized as a
/// list of `{id, binding}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Acls {
    by_id: BTreeMap<Uuid, AclBinding>,
    bindings: BTreeSet<AclBinding>,
}

#[derive(Serialize)]
struct AclEntryRef<'a> {
    id: &'a Uuid,
    binding: &'a AclBinding,
}

#[derive(Deserialize)]
struct AclEntry {
    id: Uuid,
    binding: AclBinding,
}

impl Serialize for Acls {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(
            self.by_id
                .iter()
                .map(|(id, binding)| AclEntryRef { id, binding }),
        )
    }
}

impl<'de> Deserialize<'de> for Acls {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entries = Vec::<AclEntry>::deserialize(deserializer)?;
        let mut acls = Acls::default();
        for AclEntry { id, binding } in entries {
            acls.bindings.insert(binding.clone());
            acls.by_id.insert(id, binding);
        }
        Ok(acls)
    }
}

/// SCRAM credentials by (user, mechanism's Kafka type). Serialized as a list of
/// `{name, mechanism, credential}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ScramCredentials {
    by_user: BTreeMap<(String, i8), (ScramMechanism, ScramCredential)>,
}

#[derive(Serialize)]
struct ScramEntryRef<'a> {
    name: &'a str,
    mechanism: &'a ScramMechanism,
    credential: &'a ScramCredential,
}

#[derive(Deserialize)]
struct ScramEntry {
    name: String,
    mechanism: ScramMechanism,
    credential: ScramCredential,
}

impl Serialize for ScramCredentials {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(
            self.by_user
                .iter()
                .map(|((name, _), (mechanism, credential))| ScramEntryRef {
                    name,
                    mechanism,
                    credential,
                }),
        )
    }
}

impl<'de> Deserialize<'de> for ScramCredentials {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entries = Vec::<ScramEntry>::deserialize(deserializer)?;
        let by_user = entries
            .into_iter()
            .map(|e| {
                (
                    (e.name, e.mechanism.kafka_type()),
                    (e.mechanism, e.credential),
                )
            })
            .collect();
        Ok(ScramCredentials { by_user })
    }
}

impl MetadataImage {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values()
    }

    pub fn broker(&self, id: BrokerId) -> Option<&BrokerRegistration> {
        self.brokers.get(&id)
    }

    pub fn topics(&self) -> impl Iterator<Item = &TopicImage> {
        self.topics.values()
    }

    pub fn topic(&self, id: &Uuid) -> Option<&TopicImage> {
        self.topics.get(id)
    }

    pub fn topic_by_name(&self, name: &str) -> Option<&TopicImage> {
        self.topic_ids_by_name
            .get(name)
            .and_then(|id| self.topics.get(id))
    }

    pub fn partition(&self, topic_id: &Uuid, partition: i32) -> Option<&PartitionRegistration> {
        self.topics
            .get(topic_id)
            .and_then(|t| t.partitions.get(&partition))
    }

    /// Dynamic configs of one resource (empty map if none are set).
    pub fn configs(
        &self,
        resource_type: ConfigResourceType,
        name: &str,
    ) -> Option<&BTreeMap<String, String>> {
        match resource_type {
            ConfigResourceType::Topic => self.topic_configs.get(name),
            ConfigResourceType::Broker => self.broker_configs.get(name),
        }
    }

    pub fn next_producer_id(&self) -> i64 {
        self.next_producer_id
    }

    pub fn feature_level(&self, name: &str) -> Option<i16> {
        self.features.get(name).copied()
    }

    pub fn cluster_id(&self) -> Option<&str> {
        self.cluster_id.as_deref()
    }

    /// Every ACL, ordered by id.
    pub fn acls(&self) -> impl Iterator<Item = &AclBinding> {
        self.acls.by_id.values()
    }

    /// Every ACL with its id, ordered by id.
    pub fn acls_with_ids(&self) -> impl Iterator<Item = (Uuid, &AclBinding)> {
        self.acls.by_id.iter().map(|(id, b)| (*id, b))
    }

    pub fn acl(&self, id: &Uuid) -> Option<&AclBinding> {
        self.acls.by_id.get(id)
    }

    pub fn acl_count(&self) -> usize {
        self.acls.by_id.len()
    }

    pub fn contains_acl(&self, binding: &AclBinding) -> bool {
        self.acls.bindings.contains(binding)
    }

    /// Changes with every ACL created or deleted (see the field's docs).
    pub fn acls_version(&self) -> u64 {
        self.acls_version
    }

    /// A user's SCRAM credential for one mechanism.
    pub fn scram_credential(
        &self,
        user: &str,
        mechanism: ScramMechanism,
    ) -> Option<&ScramCredential> {
        self.scram
            .by_user
            .get(&(user.to_string(), mechanism.kafka_type()))
            .map(|(_, c)| c)
    }

    /// Every SCRAM credential as (user, mechanism, iterations), ordered by user, then
    /// mechanism (DescribeUserScramCredentials).
    pub fn scram_users(&self) -> impl Iterator<Item = (&str, ScramMechanism, i32)> {
        self.scram
            .by_user
            .iter()
            .map(|((user, _), (mechanism, c))| (user.as_str(), *mechanism, c.iterations))
    }

    /// The quotas set on exactly this entity.
    pub fn client_quota(&self, entity: &QuotaEntity) -> Option<&BTreeMap<String, QuotaValue>> {
        self.client_quotas.by_entity.get(entity)
    }

    /// Every entity with at least one quota, in entity order.
    pub fn client_quotas(
        &self,
    ) -> impl Iterator<Item = (&QuotaEntity, &BTreeMap<String, QuotaValue>)> {
        self.client_quotas.by_entity.iter()
    }

    /// Changes with every client quota set or removed.
    pub fn client_quotas_version(&self) -> u64 {
        self.client_quotas_version
    }

    /// Replays one record. On `Err` the image is exactly as before the call.
    pub fn apply(&mut self, record: &Record) -> Result<(), ApplyError> {
        match record {
            Record::RegisterBroker(r) => self.register_broker(r),
            Record::FenceBroker(r) => self.fence_broker(r),
            Record::UnfenceBroker(r) => self.unfence_broker(r),
            Record::Topic(r) => self.create_topic(r),
            Record::Partition(r) => self.create_partition(r),
            Record::PartitionChange(r) => self.change_partition(r),
            Record::Config(r) => self.set_config(r),
            Record::RemoveTopic(r) => self.remove_topic(r),
            Record::ProducerIds(r) => self.producer_ids(r),
            Record::FeatureLevel(r) => self.feature(r),
            Record::ClusterId(r) => self.set_cluster_id(r),
            Record::BrokerRegistrationChange(r) => self.change_broker(r),
            Record::Acl(r) => self.create_acl(r),
            Record::RemoveAcl(r) => self.remove_acl(r),
            Record::UserScramCredential(r) => self.set_scram_credential(r),
            Record::RemoveUserScramCredential(r) => self.remove_scram_credential(r),
            Record::ClientQuota(r) => self.set_client_quota(r),
        }
    }

    fn register_broker(&mut self, r: &RegisterBrokerRecord) -> Result<(), ApplyError> {
        if r.broker_id < 0 {
            return Err(ApplyError::InvalidBrokerId(r.broker_id));
        }
        self.brokers.insert(
            r.broker_id,
            BrokerRegistration {
                broker_id: r.broker_id,
                incarnation_id: r.incarnation_id,
                endpoints: r.endpoints.clone(),
                rack: r.rack.clone(),
                fenced: true,
                in_controlled_shutdown: false,
            },
        );
        Ok(())
    }

    fn registered(
        &mut self,
        broker_id: BrokerId,
        incarnation_id: Uuid,
    ) -> Result<&mut BrokerRegistration, ApplyError> {
        let b = self
            .brokers
            .get_mut(&broker_id)
            .ok_or(ApplyError::UnknownBroker(broker_id))?;
        if b.incarnation_id != incarnation_id {
            return Err(ApplyError::StaleIncarnation {
                broker_id,
                got: incarnation_id,
                registered: b.incarnation_id,
            });
        }
        Ok(b)
    }

    fn fence_broker(&mut self, r: &FenceBrokerRecord) -> Result<(), ApplyError> {
        self.registered(r.broker_id, r.incarnation_id)?.fenced = true;
        Ok(())
    }

    /// Unfencing also ends a controlled shutdown: the broker runs again.
    fn unfence_broker(&mut self, r: &UnfenceBrokerRecord) -> Result<(), ApplyError> {
        let b = self.registered(r.broker_id, r.incarnation_id)?;
        b.fenced = false;
        b.in_controlled_shutdown = false;
        Ok(())
    }

    fn change_broker(&mut self, r: &BrokerRegistrationChangeRecord) -> Result<(), ApplyError> {
        let b = self.registered(r.broker_id, r.incarnation_id)?;
        if let Some(in_controlled_shutdown) = r.in_controlled_shutdown {
            b.in_controlled_shutdown = in_controlled_shutdown;
        }
        Ok(())
    }

    fn create_topic(&mut self, r: &TopicRecord) -> Result<(), ApplyError> {
        if r.name.is_empty() {
            return Err(ApplyError::InvalidTopicName(r.name.clone()));
        }
        if r.topic_id.is_nil() {
            return Err(ApplyError::InvalidTopicId(r.topic_id));
        }
        if self.topic_ids_by_name.contains_key(&r.name) {
            return Err(ApplyError::TopicNameExists(r.name.clone()));
        }
        if self.topics.contains_key(&r.topic_id) {
            return Err(ApplyError::TopicIdExists(r.topic_id));
        }
        self.topic_ids_by_name.insert(r.name.clone(), r.topic_id);
        self.topics.insert(
            r.topic_id,
            TopicImage {
                name: r.name.clone(),
                topic_id: r.topic_id,
                partitions: BTreeMap::new(),
            },
        );
        Ok(())
    }

    fn create_partition(&mut self, r: &PartitionRecord) -> Result<(), ApplyError> {
        let topic = self
            .topics
            .get_mut(&r.topic_id)
            .ok_or(ApplyError::UnknownTopicId(r.topic_id))?;
        if r.partition < 0 {
            return Err(ApplyError::InvalidPartition(r.partition));
        }
        if topic.partitions.contains_key(&r.partition) {
            return Err(ApplyError::PartitionExists(r.topic_id, r.partition));
        }
        if r.leader_epoch < 0 || r.partition_epoch < 0 {
            return Err(ApplyError::NegativeEpoch);
        }
        check_assignment(&r.replicas, &r.isr, r.leader)?;
        topic.partitions.insert(
            r.partition,
            PartitionRegistration {
                replicas: r.replicas.clone(),
                isr: r.isr.clone(),
                leader: r.leader,
                leader_epoch: r.leader_epoch,
                partition_epoch: r.partition_epoch,
            },
        );
        Ok(())
    }

    fn change_partition(&mut self, r: &PartitionChangeRecord) -> Result<(), ApplyError> {
        let p = self
            .topics
            .get_mut(&r.topic_id)
            .ok_or(ApplyError::UnknownTopicId(r.topic_id))?
            .partitions
            .get_mut(&r.partition)
            .ok_or(ApplyError::UnknownPartition(r.topic_id, r.partition))?;
        let isr = r.isr.as_ref().unwrap_or(&p.isr);
        let leader = r.leader.unwrap_or(p.leader);
        check_assignment(&p.replicas, isr, leader)?;
        let partition_epoch = p
            .partition_epoch
            .checked_add(1)
            .ok_or(ApplyError::EpochOverflow)?;
        let leader_epoch = if r.leader.is_some() {
            p.leader_epoch
                .checked_add(1)
                .ok_or(ApplyError::EpochOverflow)?
        } else {
            p.leader_epoch
        };
        if let Some(isr) = &r.isr {
            p.isr = isr.clone();
        }
        p.leader = leader;
        p.leader_epoch = leader_epoch;
        p.partition_epoch = partition_epoch;
        Ok(())
    }

    fn set_config(&mut self, r: &ConfigRecord) -> Result<(), ApplyError> {
        if r.name.is_empty() {
            return Err(ApplyError::InvalidConfig("empty config name".into()));
        }
        let configs = match r.resource_type {
            ConfigResourceType::Topic => {
                if !self.topic_ids_by_name.contains_key(&r.resource_name) {
                    return Err(ApplyError::UnknownTopicName(r.resource_name.clone()));
                }
                &mut self.topic_configs
            }
            ConfigResourceType::Broker => &mut self.broker_configs,
        };
        match &r.value {
            Some(value) => {
                configs
                    .entry(r.resource_name.clone())
                    .or_default()
                    .insert(r.name.clone(), value.clone());
            }
            None => {
                if let Some(map) = configs.get_mut(&r.resource_name) {
                    map.remove(&r.name);
                    if map.is_empty() {
                        configs.remove(&r.resource_name);
                    }
                }
            }
        }
        Ok(())
    }

    fn remove_topic(&mut self, r: &RemoveTopicRecord) -> Result<(), ApplyError> {
        let topic = self
            .topics
            .remove(&r.topic_id)
            .ok_or(ApplyError::UnknownTopicId(r.topic_id))?;
        self.topic_ids_by_name.remove(&topic.name);
        self.topic_configs.remove(&topic.name);
        Ok(())
    }

    fn producer_ids(&mut self, r: &ProducerIdsRecord) -> Result<(), ApplyError> {
        if r.broker_id < 0 {
            return Err(ApplyError::InvalidBrokerId(r.broker_id));
        }
        if r.next_producer_id <= self.next_producer_id {
            return Err(ApplyError::ProducerIdsNotIncreasing {
                got: r.next_producer_id,
                current: self.next_producer_id,
            });
        }
        self.next_producer_id = r.next_producer_id;
        Ok(())
    }

    /// The cluster id never changes: repeating it is a no-op, another value is refused.
    fn set_cluster_id(&mut self, r: &ClusterIdRecord) -> Result<(), ApplyError> {
        if r.cluster_id.is_empty() {
            return Err(ApplyError::InvalidClusterId(r.cluster_id.clone()));
        }
        match &self.cluster_id {
            Some(current) if *current != r.cluster_id => Err(ApplyError::ClusterIdMismatch {
                current: current.clone(),
                got: r.cluster_id.clone(),
            }),
            Some(_) => Ok(()),
            None => {
                self.cluster_id = Some(r.cluster_id.clone());
                Ok(())
            }
        }
    }

    fn create_acl(&mut self, r: &AclRecord) -> Result<(), ApplyError> {
        if r.id.is_nil() {
            return Err(ApplyError::InvalidAclId(r.id));
        }
        if self.acls.by_id.contains_key(&r.id) {
            return Err(ApplyError::AclIdExists(r.id));
        }
        if self.acls.bindings.contains(&r.binding) {
            return Err(ApplyError::AclExists(Box::new(r.binding.clone())));
        }
        r.binding.validate().map_err(ApplyError::InvalidAcl)?;
        self.acls.bindings.insert(r.binding.clone());
        self.acls.by_id.insert(r.id, r.binding.clone());
        self.acls_version = self.acls_version.wrapping_add(1);
        Ok(())
    }

    fn remove_acl(&mut self, r: &RemoveAclRecord) -> Result<(), ApplyError> {
        let binding = self
            .acls
            .by_id
            .remove(&r.id)
            .ok_or(ApplyError::UnknownAcl(r.id))?;
        self.acls.bindings.remove(&binding);
        self.acls_version = self.acls_version.wrapping_add(1);
        Ok(())
    }

    /// Creates or replaces the credential.
    fn set_scram_credential(&mut self, r: &UserScramCredentialRecord) -> Result<(), ApplyError> {
        let invalid = |m: String| Err(ApplyError::InvalidScramCredential(m));
        if r.name.is_empty() {
            return invalid("empty user name".into());
        }
        let c = &r.credential;
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&c.iterations) {
            return invalid(format!("{} iterations", c.iterations));
        }
        if c.salt.is_empty() || c.stored_key.is_empty() || c.server_key.is_empty() {
            return invalid("empty salt or key".into());
        }
        self.scram.by_user.insert(
            (r.name.clone(), r.mechanism.kafka_type()),
            (r.mechanism, c.clone()),
        );
        Ok(())
    }

    fn remove_scram_credential(
        &mut self,
        r: &RemoveUserScramCredentialRecord,
    ) -> Result<(), ApplyError> {
        self.scram
            .by_user
            .remove(&(r.name.clone(), r.mechanism.kafka_type()))
            .map(|_| ())
            .ok_or_else(|| ApplyError::UnknownScramCredential {
                name: r.name.clone(),
                mechanism: r.mechanism.name().to_string(),
            })
    }

    fn set_client_quota(&mut self, r: &ClientQuotaRecord) -> Result<(), ApplyError> {
        if r.entity.user.is_none() && r.entity.client_id.is_none() {
            return Err(ApplyError::InvalidClientQuota("empty entity".into()));
        }
        if r.key.is_empty() {
            return Err(ApplyError::InvalidClientQuota("empty key".into()));
        }
        match r.value {
            Some(v) if !v.0.is_finite() => {
                return Err(ApplyError::InvalidClientQuota(format!(
                    "{} is not a finite number",
                    v.0
                )))
            }
            Some(v) => {
                self.client_quotas
                    .by_entity
                    .entry(r.entity.clone())
                    .or_default()
                    .insert(r.key.clone(), v);
            }
            None => {
                if let Some(values) = self.client_quotas.by_entity.get_mut(&r.entity) {
                    values.remove(&r.key);
                    if values.is_empty() {
                        self.client_quotas.by_entity.remove(&r.entity);
                    }
                }
            }
        }
        self.client_quotas_version = self.client_quotas_version.wrapping_add(1);
        Ok(())
    }

    fn feature(&mut self, r: &FeatureLevelRecord) -> Result<(), ApplyError> {
        if r.name.is_empty() {
            return Err(ApplyError::InvalidFeature("empty feature name".into()));
        }
        match r.feature_level {
            level if level < 0 => Err(ApplyError::InvalidFeature("negative level".into())),
            0 => {
                self.features.remove(&r.name);
                Ok(())
            }
            level => {
                self.features.insert(r.name.clone(), level);
                Ok(())
            }
        }
    }
}

/// Replicas are non-empty, distinct and non-negative; the ISR is a duplicate-free subset of
/// them; the leader is `-1` or in the ISR.
fn check_assignment(
    replicas: &[BrokerId],
    isr: &[BrokerId],
    leader: BrokerId,
) -> Result<(), ApplyError> {
    if replicas.is_empty() {
        return Err(ApplyError::InvalidAssignment("no replicas".into()));
    }
    let replica_set: BTreeSet<BrokerId> = replicas.iter().copied().collect();
    if replica_set.len() != replicas.len() {
        return Err(ApplyError::InvalidAssignment("duplicate replica".into()));
    }
    if replica_set.iter().any(|&r| r < 0) {
        return Err(ApplyError::InvalidAssignment("negative replica id".into()));
    }
    let isr_set: BTreeSet<BrokerId> = isr.iter().copied().collect();
    if isr_set.len() != isr.len() {
        return Err(ApplyError::InvalidAssignment("duplicate ISR member".into()));
    }
    if !isr_set.is_subset(&replica_set) {
        return Err(ApplyError::InvalidAssignment(
            "ISR member is not a replica".into(),
        ));
    }
    if leader != NO_LEADER && !isr_set.contains(&leader) {
        return Err(ApplyError::LeaderNotInIsr(leader));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::*;

    fn uuid(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn register(id: BrokerId, incarnation: u128) -> Record {
        Record::RegisterBroker(RegisterBrokerRecord {
            broker_id: id,
            incarnation_id: uuid(incarnation),
            endpoints: vec![BrokerEndpoint {
                name: "PLAINTEXT".into(),
                host: "127.0.0.1".into(),
                port: 9092,
            }],
            rack: Some("r1".into()),
        })
    }

    fn topic(name: &str, id: u128) -> Record {
        Record::Topic(TopicRecord {
            name: name.into(),
            topic_id: uuid(id),
        })
    }

    fn partition(id: u128, p: i32, replicas: &[i32], leader: i32) -> Record {
        Record::Partition(PartitionRecord {
            topic_id: uuid(id),
            partition: p,
            replicas: replicas.to_vec(),
            isr: replicas.to_vec(),
            leader,
            leader_epoch: 0,
            partition_epoch: 0,
        })
    }

    fn config(kind: ConfigResourceType, name: &str, key: &str, value: Option<&str>) -> Record {
        Record::Config(ConfigRecord {
            resource_type: kind,
            resource_name: name.into(),
            name: key.into(),
            value: value.map(String::from),
        })
    }

    fn acl_binding(name: &str, principal: &str) -> AclBinding {
        use runnel_security::acl::{
            AccessControlEntry, AclOperation, AclPermissionType, PatternType, ResourcePattern,
            ResourceType,
        };
        AclBinding {
            pattern: ResourcePattern {
                resource_type: ResourceType::Topic,
                name: name.into(),
                pattern_type: PatternType::Literal,
            },
            entry: AccessControlEntry {
                principal: principal.into(),
                host: "*".into(),
                operation: AclOperation::Read,
                permission: AclPermissionType::Allow,
            },
        }
    }

    fn acl(id: u128, name: &str, principal: &str) -> Record {
        Record::Acl(AclRecord {
            id: uuid(id),
            binding: acl_binding(name, principal),
        })
    }

    fn credential(iterations: i32) -> ScramCredential {
        ScramCredential {
            salt: b"salt".to_vec(),
            stored_key: vec![1; 32],
            server_key: vec![2; 32],
            iterations,
        }
    }

    fn scram(name: &str, mechanism: ScramMechanism, iterations: i32) -> Record {
        Record::UserScramCredential(UserScramCredentialRecord {
            name: name.into(),
            mechanism,
            credential: credential(iterations),
        })
    }

    fn remove_scram(name: &str, mechanism: ScramMechanism) -> Record {
        Record::RemoveUserScramCredential(RemoveUserScramCredentialRecord {
            name: name.into(),
            mechanism,
        })
    }

    #[test]
    fn acls_are_created_and_removed_by_id() {
        let mut image = MetadataImage::new();
        assert_eq!(image.acls_version(), 0);
        image.apply(&acl(1, "a", "User:alice")).unwrap();
        image.apply(&acl(2, "b", "User:alice")).unwrap();
        assert_eq!(image.acls_version(), 2);
        assert_eq!(image.acl_count(), 2);
        assert!(image.contains_acl(&acl_binding("a", "User:alice")));
        assert_eq!(image.acl(&uuid(2)), Some(&acl_binding("b", "User:alice")));

        let before = image.clone();
        // Same id, same binding, nil id, invalid binding, unknown id: refused, unchanged.
        assert_eq!(
            image.apply(&acl(1, "c", "User:alice")),
            Err(ApplyError::AclIdExists(uuid(1)))
        );
        assert_eq!(
            image.apply(&acl(3, "a", "User:alice")),
            Err(ApplyError::AclExists(Box::new(acl_binding(
                "a",
                "User:alice"
            ))))
        );
        assert_eq!(
            image.apply(&acl(0, "c", "User:alice")),
            Err(ApplyError::InvalidAclId(uuid(0)))
        );
        assert!(matches!(
            image.apply(&acl(3, "c", "alice")),
            Err(ApplyError::InvalidAcl(_))
        ));
        assert_eq!(
            image.apply(&Record::RemoveAcl(RemoveAclRecord { id: uuid(9) })),
            Err(ApplyError::UnknownAcl(uuid(9)))
        );
        assert_eq!(image, before);

        image
            .apply(&Record::RemoveAcl(RemoveAclRecord { id: uuid(1) }))
            .unwrap();
        assert_eq!(image.acls_version(), 3);
        assert!(!image.contains_acl(&acl_binding("a", "User:alice")));
        assert_eq!(
            image.acls().collect::<Vec<_>>(),
            [&acl_binding("b", "User:alice")]
        );
        // The binding may come back under a new id.
        image.apply(&acl(4, "a", "User:alice")).unwrap();
        assert_eq!(image.acl_count(), 2);
    }

    #[test]
    fn scram_credentials_are_kept_per_user_and_mechanism() {
        let mut image = MetadataImage::new();
        image
            .apply(&scram("bob", ScramMechanism::Sha512, 4096))
            .unwrap();
        image
            .apply(&scram("alice", ScramMechanism::Sha512, 8192))
            .unwrap();
        image
            .apply(&scram("alice", ScramMechanism::Sha256, 4096))
            .unwrap();
        assert_eq!(
            image.scram_credential("alice", ScramMechanism::Sha512),
            Some(&credential(8192))
        );
        assert_eq!(
            image.scram_users().collect::<Vec<_>>(),
            [
                ("alice", ScramMechanism::Sha256, 4096),
                ("alice", ScramMechanism::Sha512, 8192),
                ("bob", ScramMechanism::Sha512, 4096),
            ]
        );
        // An upsert replaces.
        image
            .apply(&scram("alice", ScramMechanism::Sha512, 16384))
            .unwrap();
        assert_eq!(
            image
                .scram_credential("alice", ScramMechanism::Sha512)
                .map(|c| c.iterations),
            Some(16384)
        );
        let before = image.clone();
        assert!(matches!(
            image.apply(&scram("", ScramMechanism::Sha512, 4096)),
            Err(ApplyError::InvalidScramCredential(_))
        ));
        assert!(matches!(
            image.apply(&scram("carol", ScramMechanism::Sha512, 4095)),
            Err(ApplyError::InvalidScramCredential(_))
        ));
        assert!(matches!(
            image.apply(&scram("carol", ScramMechanism::Sha512, 16385)),
            Err(ApplyError::InvalidScramCredential(_))
        ));
        let empty_salt = Record::UserScramCredential(UserScramCredentialRecord {
            name: "carol".into(),
            mechanism: ScramMechanism::Sha256,
            credential: ScramCredential {
                salt: vec![],
                ..credential(4096)
            },
        });
        assert!(image.apply(&empty_salt).is_err());
        assert_eq!(
            image.apply(&remove_scram("bob", ScramMechanism::Sha256)),
            Err(ApplyError::UnknownScramCredential {
                name: "bob".into(),
                mechanism: "SCRAM-SHA-256".into()
            })
        );
        assert_eq!(image, before);
        image
            .apply(&remove_scram("alice", ScramMechanism::Sha256))
            .unwrap();
        assert!(image
            .scram_credential("alice", ScramMechanism::Sha256)
            .is_none());
        assert!(image
            .scram_credential("alice", ScramMechanism::Sha512)
            .is_some());
        // SCRAM changes are not ACL changes.
        assert_eq!(image.acls_version(), 0);
    }

    /// A client quota record; an empty name stands for the default.
    fn quota(user: Option<&str>, client: Option<&str>, key: &str, value: Option<f64>) -> Record {
        let name = |n: &str| {
            if n.is_empty() {
                QuotaName::Default
            } else {
                QuotaName::Name(n.to_string())
            }
        };
        Record::ClientQuota(ClientQuotaRecord {
            entity: QuotaEntity {
                user: user.map(name),
                client_id: client.map(name),
            },
            key: key.into(),
            value: value.map(QuotaValue),
        })
    }

    #[test]
    fn client_quotas_are_set_replaced_and_removed_per_entity_and_key() {
        let mut image = MetadataImage::new();
        let alice = QuotaEntity {
            user: Some(QuotaName::Name("alice".into())),
            client_id: None,
        };
        image
            .apply(&quota(
                Some("alice"),
                None,
                "producer_byte_rate",
                Some(100.0),
            ))
            .unwrap();
        image
            .apply(&quota(
                Some("alice"),
                None,
                "producer_byte_rate",
                Some(200.0),
            ))
            .unwrap();
        image
            .apply(&quota(
                Some("alice"),
                None,
                "consumer_byte_rate",
                Some(300.0),
            ))
            .unwrap();
        let values = image.client_quota(&alice).unwrap();
        assert_eq!(values["producer_byte_rate"], QuotaValue(200.0));
        assert_eq!(values.len(), 2);
        assert_eq!(image.client_quotas_version(), 3);
        // Removing a key that is not set changes nothing but is not an error (as Kafka).
        image
            .apply(&quota(Some("bob"), None, "producer_byte_rate", None))
            .unwrap();
        image
            .apply(&quota(Some("alice"), None, "producer_byte_rate", None))
            .unwrap();
        image
            .apply(&quota(Some("alice"), None, "consumer_byte_rate", None))
            .unwrap();
        assert!(image.client_quota(&alice).is_none());
        assert_eq!(image.client_quotas().count(), 0);
        let before = image.clone();
        for bad in [
            quota(None, None, "producer_byte_rate", Some(1.0)),
            quota(Some("a"), None, "", Some(1.0)),
            quota(Some("a"), None, "producer_byte_rate", Some(f64::INFINITY)),
        ] {
            assert!(matches!(
                image.apply(&bad),
                Err(ApplyError::InvalidClientQuota(_))
            ));
        }
        assert_eq!(image, before);
    }

    #[test]
    fn images_from_before_acls_and_scram_still_load() {
        let old = r#"{"brokers":{},"topics":{},"topic_ids_by_name":{},"topic_configs":{},
            "broker_configs":{},"next_producer_id":0,"features":{},"cluster_id":"c1"}"#;
        let image: MetadataImage = serde_json::from_str(old).unwrap();
        assert_eq!(image.cluster_id(), Some("c1"));
        assert_eq!(image.acl_count(), 0);
        assert_eq!(image.acls_version(), 0);
        assert_eq!(image.scram_users().count(), 0);
        assert_eq!(image.client_quotas().count(), 0);
    }

    #[test]
    fn brokers_register_fenced_and_unfence_by_incarnation() {
        let mut image = MetadataImage::new();
        image.apply(&register(1, 10)).unwrap();
        assert!(image.broker(1).unwrap().fenced);
        let unfence = |inc| {
            Record::UnfenceBroker(UnfenceBrokerRecord {
                broker_id: 1,
                incarnation_id: uuid(inc),
            })
        };
        assert!(matches!(
            image.apply(&unfence(11)),
            Err(ApplyError::StaleIncarnation { .. })
        ));
        assert!(image.broker(1).unwrap().fenced);
        image.apply(&unfence(10)).unwrap();
        assert!(!image.broker(1).unwrap().fenced);

        // A restart re-registers with a new incarnation and starts fenced again.
        image.apply(&register(1, 12)).unwrap();
        assert!(image.broker(1).unwrap().fenced);
        assert_eq!(image.broker(1).unwrap().incarnation_id, uuid(12));
        let fence = Record::FenceBroker(FenceBrokerRecord {
            broker_id: 2,
            incarnation_id: uuid(1),
        });
        assert_eq!(image.apply(&fence), Err(ApplyError::UnknownBroker(2)));
        assert_eq!(
            image.apply(&register(-5, 1)),
            Err(ApplyError::InvalidBrokerId(-5))
        );
    }

    #[test]
    fn controlled_shutdown_is_per_incarnation_and_ends_with_unfencing_or_registration() {
        let mut image = MetadataImage::new();
        image.apply(&register(1, 10)).unwrap();
        let unfence = Record::UnfenceBroker(UnfenceBrokerRecord {
            broker_id: 1,
            incarnation_id: uuid(10),
        });
        image.apply(&unfence).unwrap();
        assert!(image.broker(1).unwrap().is_active());
        let shutting = |inc, flag| {
            Record::BrokerRegistrationChange(BrokerRegistrationChangeRecord {
                broker_id: 1,
                incarnation_id: uuid(inc),
                in_controlled_shutdown: flag,
            })
        };
        // Another incarnation's change is refused; an empty change changes nothing.
        assert!(matches!(
            image.apply(&shutting(11, Some(true))),
            Err(ApplyError::StaleIncarnation { .. })
        ));
        image.apply(&shutting(10, None)).unwrap();
        assert!(image.broker(1).unwrap().is_active());
        image.apply(&shutting(10, Some(true))).unwrap();
        let b = image.broker(1).unwrap();
        assert!(!b.fenced && b.in_controlled_shutdown && !b.is_active());
        // Fencing keeps the flag (it shut down cleanly); unfencing clears it.
        image
            .apply(&Record::FenceBroker(FenceBrokerRecord {
                broker_id: 1,
                incarnation_id: uuid(10),
            }))
            .unwrap();
        assert!(image.broker(1).unwrap().in_controlled_shutdown);
        image.apply(&unfence).unwrap();
        assert!(image.broker(1).unwrap().is_active());
        // A new registration starts out of controlled shutdown.
        image.apply(&shutting(10, Some(true))).unwrap();
        image.apply(&register(1, 12)).unwrap();
        assert!(!image.broker(1).unwrap().in_controlled_shutdown);
        assert_eq!(
            image.apply(&Record::BrokerRegistrationChange(
                BrokerRegistrationChangeRecord {
                    broker_id: 7,
                    incarnation_id: uuid(1),
                    in_controlled_shutdown: Some(true),
                }
            )),
            Err(ApplyError::UnknownBroker(7))
        );
    }

    #[test]
    fn registrations_from_before_controlled_shutdown_still_decode() {
        let old = r#"{"broker_id":1,"incarnation_id":"00000000-0000-0000-0000-00000000000a",
            "endpoints":[],"rack":null,"fenced":false}"#;
        let b: BrokerRegistration = serde_json::from_str(old).unwrap();
        assert!(!b.in_controlled_shutdown);
        assert!(b.is_active());
        let old = r#"{"BrokerRegistrationChange":{"broker_id":1,
            "incarnation_id":"00000000-0000-0000-0000-00000000000a"}}"#;
        let r: Record = serde_json::from_str(old).unwrap();
        assert!(matches!(
            r,
            Record::BrokerRegistrationChange(BrokerRegistrationChangeRecord {
                in_controlled_shutdown: None,
                ..
            })
        ));
    }

    #[test]
    fn topics_are_unique_by_name_and_id() {
        let mut image = MetadataImage::new();
        image.apply(&topic("a", 1)).unwrap();
        let before = image.clone();
        assert_eq!(
            image.apply(&topic("a", 2)),
            Err(ApplyError::TopicNameExists("a".into()))
        );
        assert_eq!(
            image.apply(&topic("b", 1)),
            Err(ApplyError::TopicIdExists(uuid(1)))
        );
        assert!(image.apply(&topic("", 3)).is_err());
        assert!(image.apply(&topic("c", 0)).is_err());
        assert_eq!(image, before);
        assert_eq!(image.topic_by_name("a").unwrap().topic_id, uuid(1));
    }

    #[test]
    fn partition_changes_bump_epochs() {
        let mut image = MetadataImage::new();
        image.apply(&topic("a", 1)).unwrap();
        image.apply(&partition(1, 0, &[1, 2, 3], 1)).unwrap();
        assert_eq!(
            image.apply(&partition(1, 0, &[1], 1)),
            Err(ApplyError::PartitionExists(uuid(1), 0))
        );
        assert_eq!(
            image.apply(&partition(2, 0, &[1], 1)),
            Err(ApplyError::UnknownTopicId(uuid(2)))
        );

        // ISR shrink: partition epoch only.
        image
            .apply(&Record::PartitionChange(PartitionChangeRecord {
                topic_id: uuid(1),
                partition: 0,
                isr: Some(vec![1, 2]),
                leader: None,
            }))
            .unwrap();
        let p = image.partition(&uuid(1), 0).unwrap();
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (1, 0, 1));
        assert_eq!(p.isr, vec![1, 2]);

        // New leader: both epochs.
        image
            .apply(&Record::PartitionChange(PartitionChangeRecord {
                topic_id: uuid(1),
                partition: 0,
                isr: None,
                leader: Some(2),
            }))
            .unwrap();
        let p = image.partition(&uuid(1), 0).unwrap();
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (2, 1, 2));

        // A leader outside the ISR, or an ISR member that is no replica, is refused.
        let before = image.clone();
        assert_eq!(
            image.apply(&Record::PartitionChange(PartitionChangeRecord {
                topic_id: uuid(1),
                partition: 0,
                isr: None,
                leader: Some(3),
            })),
            Err(ApplyError::LeaderNotInIsr(3))
        );
        assert!(image
            .apply(&Record::PartitionChange(PartitionChangeRecord {
                topic_id: uuid(1),
                partition: 0,
                isr: Some(vec![2, 9]),
                leader: None,
            }))
            .is_err());
        assert_eq!(image, before);
    }

    #[test]
    fn epoch_overflow_is_refused_not_a_panic() {
        let mut image = MetadataImage::new();
        image.apply(&topic("a", 1)).unwrap();
        image
            .apply(&Record::Partition(PartitionRecord {
                topic_id: uuid(1),
                partition: 0,
                replicas: vec![1],
                isr: vec![1],
                leader: 1,
                leader_epoch: i32::MAX,
                partition_epoch: 0,
            }))
            .unwrap();
        let change = Record::PartitionChange(PartitionChangeRecord {
            topic_id: uuid(1),
            partition: 0,
            isr: None,
            leader: Some(1),
        });
        assert_eq!(image.apply(&change), Err(ApplyError::EpochOverflow));
        assert_eq!(image.partition(&uuid(1), 0).unwrap().partition_epoch, 0);
    }

    #[test]
    fn remove_topic_drops_partitions_name_and_configs() {
        let mut image = MetadataImage::new();
        image.apply(&topic("a", 1)).unwrap();
        image.apply(&partition(1, 0, &[1], 1)).unwrap();
        image
            .apply(&config(
                ConfigResourceType::Topic,
                "a",
                "retention.ms",
                Some("1"),
            ))
            .unwrap();
        image
            .apply(&Record::RemoveTopic(RemoveTopicRecord {
                topic_id: uuid(1),
            }))
            .unwrap();
        assert!(image.topic_by_name("a").is_none());
        assert!(image.partition(&uuid(1), 0).is_none());
        assert!(image.configs(ConfigResourceType::Topic, "a").is_none());
        // Same name, new id: a fresh topic with no leftovers.
        image.apply(&topic("a", 2)).unwrap();
        assert!(image.topic_by_name("a").unwrap().partitions.is_empty());
        assert_eq!(
            image.apply(&Record::RemoveTopic(RemoveTopicRecord {
                topic_id: uuid(1)
            })),
            Err(ApplyError::UnknownTopicId(uuid(1)))
        );
    }

    #[test]
    fn configs_set_and_delete() {
        let mut image = MetadataImage::new();
        let broker = ConfigResourceType::Broker;
        image
            .apply(&config(broker, "1", "log.retention.ms", Some("5")))
            .unwrap();
        assert_eq!(
            image.configs(broker, "1").unwrap().get("log.retention.ms"),
            Some(&"5".to_string())
        );
        image
            .apply(&config(broker, "1", "log.retention.ms", None))
            .unwrap();
        assert!(image.configs(broker, "1").is_none());
        // Deleting what is not set is a no-op; a topic config needs the topic.
        image.apply(&config(broker, "1", "x", None)).unwrap();
        assert_eq!(
            image.apply(&config(ConfigResourceType::Topic, "nope", "k", Some("v"))),
            Err(ApplyError::UnknownTopicName("nope".into()))
        );
        assert!(image.apply(&config(broker, "1", "", Some("v"))).is_err());
    }

    #[test]
    fn producer_id_blocks_only_move_forward() {
        let mut image = MetadataImage::new();
        let block = |next| {
            Record::ProducerIds(ProducerIdsRecord {
                broker_id: 1,
                next_producer_id: next,
            })
        };
        image.apply(&block(1000)).unwrap();
        assert_eq!(image.next_producer_id(), 1000);
        assert!(image.apply(&block(1000)).is_err());
        assert!(image.apply(&block(5)).is_err());
        image.apply(&block(2000)).unwrap();
        assert_eq!(image.next_producer_id(), 2000);
    }

    #[test]
    fn feature_levels() {
        let mut image = MetadataImage::new();
        let level = |l| {
            Record::FeatureLevel(FeatureLevelRecord {
                name: "metadata.version".into(),
                feature_level: l,
            })
        };
        image.apply(&level(7)).unwrap();
        assert_eq!(image.feature_level("metadata.version"), Some(7));
        assert!(image.apply(&level(-1)).is_err());
        image.apply(&level(0)).unwrap();
        assert_eq!(image.feature_level("metadata.version"), None);
    }

    #[test]
    fn cluster_id_is_set_once() {
        let mut image = MetadataImage::new();
        assert_eq!(image.cluster_id(), None);
        let id = |s: &str| {
            Record::ClusterId(ClusterIdRecord {
                cluster_id: s.into(),
            })
        };
        assert_eq!(
            image.apply(&id("")),
            Err(ApplyError::InvalidClusterId(String::new()))
        );
        assert_eq!(image.cluster_id(), None);
        image.apply(&id("abc")).unwrap();
        assert_eq!(image.cluster_id(), Some("abc"));
        // The same id again is a no-op; another id is refused and changes nothing.
        image.apply(&id("abc")).unwrap();
        let before = image.clone();
        assert_eq!(
            image.apply(&id("xyz")),
            Err(ApplyError::ClusterIdMismatch {
                current: "abc".into(),
                got: "xyz".into()
            })
        );
        assert_eq!(image, before);
        assert!(image.apply(&id("")).is_err());
        assert_eq!(image.cluster_id(), Some("abc"));
    }

    #[test]
    fn image_round_trips_through_json() {
        let mut image = MetadataImage::new();
        image.apply(&register(1, 10)).unwrap();
        image
            .apply(&Record::ClusterId(ClusterIdRecord {
                cluster_id: "c1".into(),
            }))
            .unwrap();
        image.apply(&topic("a", 1)).unwrap();
        image.apply(&partition(1, 3, &[1, 2], 1)).unwrap();
        image
            .apply(&config(ConfigResourceType::Topic, "a", "k", Some("v")))
            .unwrap();
        image
            .apply(&Record::ProducerIds(ProducerIdsRecord {
                broker_id: 1,
                next_producer_id: 1000,
            }))
            .unwrap();
        image.apply(&acl(1, "a", "User:alice")).unwrap();
        image.apply(&acl(2, "a", "User:bob")).unwrap();
        image
            .apply(&Record::RemoveAcl(RemoveAclRecord { id: uuid(1) }))
            .unwrap();
        image
            .apply(&scram("alice", ScramMechanism::Sha256, 4096))
            .unwrap();
        image
            .apply(&scram("alice", ScramMechanism::Sha512, 8192))
            .unwrap();
        image
            .apply(&quota(
                Some("alice"),
                None,
                "producer_byte_rate",
                Some(1024.0),
            ))
            .unwrap();
        image
            .apply(&quota(None, Some("c"), "request_percentage", Some(12.5)))
            .unwrap();
        let json = serde_json::to_vec(&image).unwrap();
        let back: MetadataImage = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, image);
        assert_eq!(back.acls_version(), 3);
        assert!(back.contains_acl(&acl_binding("a", "User:bob")));
        assert_eq!(
            back.scram_credential("alice", ScramMechanism::Sha512),
            Some(&credential(8192))
        );
        // Records travel the same way.
        for record in [
            acl(5, "x", "User:carol"),
            Record::RemoveAcl(RemoveAclRecord { id: uuid(5) }),
            scram("carol", ScramMechanism::Sha512, 4096),
            remove_scram("carol", ScramMechanism::Sha512),
            quota(Some(""), Some("c"), "consumer_byte_rate", Some(5.0)),
            quota(None, Some("c"), "consumer_byte_rate", None),
        ] {
            let json = serde_json::to_vec(&record).unwrap();
            assert_eq!(serde_json::from_slice::<Record>(&json).unwrap(), record);
        }
    }

    /// Replay is total: a long pseudo-random record sequence over small id domains (so that
    /// records collide and refer to each other) never panics, and a rejected record never
    /// changes the image.
    #[test]
    fn replay_of_arbitrary_records_never_panics() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        let mut image = MetadataImage::new();
        let (mut applied, mut rejected) = (0, 0);
        for _ in 0..20_000 {
            let small = |v: u64| v as i32 - 1; // -1..
            let ids: Vec<i32> = (0..next(4)).map(|_| small(next(5))).collect();
            let record = match next(17) {
                0 => register(small(next(5)), u128::from(next(3))),
                1 => Record::FenceBroker(FenceBrokerRecord {
                    broker_id: small(next(5)),
                    incarnation_id: uuid(u128::from(next(3))),
                }),
                2 => Record::UnfenceBroker(UnfenceBrokerRecord {
                    broker_id: small(next(5)),
                    incarnation_id: uuid(u128::from(next(3))),
                }),
                3 => topic(["", "a", "b"][next(3) as usize], u128::from(next(4))),
                4 => Record::Partition(PartitionRecord {
                    topic_id: uuid(u128::from(next(4))),
                    partition: small(next(4)),
                    replicas: ids.clone(),
                    isr: ids.iter().copied().filter(|_| next(2) == 0).collect(),
                    leader: small(next(5)),
                    leader_epoch: [0, i32::MAX, -1][next(3) as usize],
                    partition_epoch: [0, i32::MAX - 1, -1][next(3) as usize],
                }),
                5 => Record::PartitionChange(PartitionChangeRecord {
                    topic_id: uuid(u128::from(next(4))),
                    partition: small(next(4)),
                    isr: (next(2) == 0).then_some(ids),
                    leader: (next(2) == 0).then(|| small(next(5))),
                }),
                6 => config(
                    if next(2) == 0 {
                        ConfigResourceType::Topic
                    } else {
                        ConfigResourceType::Broker
                    },
                    ["", "a", "b"][next(3) as usize],
                    ["", "k"][next(2) as usize],
                    (next(2) == 0).then_some("v"),
                ),
                7 => Record::RemoveTopic(RemoveTopicRecord {
                    topic_id: uuid(u128::from(next(4))),
                }),
                8 => Record::ProducerIds(ProducerIdsRecord {
                    broker_id: small(next(3)),
                    next_producer_id: next(100_000) as i64 - 10,
                }),
                9 => Record::FeatureLevel(FeatureLevelRecord {
                    name: ["", "metadata.version"][next(2) as usize].into(),
                    feature_level: next(4) as i16 - 1,
                }),
                10 => Record::ClusterId(ClusterIdRecord {
                    cluster_id: ["", "a", "b"][next(3) as usize].into(),
                }),
                11 => Record::BrokerRegistrationChange(BrokerRegistrationChangeRecord {
                    broker_id: small(next(5)),
                    incarnation_id: uuid(u128::from(next(3))),
                    in_controlled_shutdown: [None, Some(true), Some(false)][next(3) as usize],
                }),
                12 => acl(
                    u128::from(next(4)),
                    ["a", "b"][next(2) as usize],
                    ["User:alice", "User:bob", "bob"][next(3) as usize],
                ),
                13 => Record::RemoveAcl(RemoveAclRecord {
                    id: uuid(u128::from(next(4))),
                }),
                14 => scram(
                    ["", "alice", "bob"][next(3) as usize],
                    [ScramMechanism::Sha256, ScramMechanism::Sha512][next(2) as usize],
                    [4096, 1, 16384, 20000][next(4) as usize],
                ),
                15 => quota(
                    [None, Some(""), Some("alice")][next(3) as usize],
                    [None, Some(""), Some("c")][next(3) as usize],
                    ["", "producer_byte_rate"][next(2) as usize],
                    [None, Some(1.0), Some(f64::NAN)][next(3) as usize],
                ),
                _ => remove_scram(
                    ["", "alice", "bob"][next(3) as usize],
                    [ScramMechanism::Sha256, ScramMechanism::Sha512][next(2) as usize],
                ),
            };
            let before = image.clone();
            match image.apply(&record) {
                Ok(()) => applied += 1,
                Err(_) => {
                    rejected += 1;
                    assert_eq!(image, before, "rejected {record:?} changed the image");
                }
            }
            // The name index and the topics never drift apart, nor the ACL ids and bindings.
            for t in image.topics() {
                assert_eq!(
                    image.topic_by_name(&t.name).map(|x| x.topic_id),
                    Some(t.topic_id)
                );
            }
            assert_eq!(image.acls.by_id.len(), image.acls.bindings.len());
            for b in image.acls() {
                assert!(image.contains_acl(b));
            }
        }
        assert!(
            applied > 1000 && rejected > 1000,
            "{applied} applied, {rejected} rejected"
        );
    }
}
