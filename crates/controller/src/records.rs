//! The metadata log's typed records, in the spirit of Kafka's KRaft metadata records
//! (`metadata/src/main/resources/common/metadata/*.json` in Apache Kafka).
//!
//! A record is a fact that already happened: the managers that will produce them validate a
//! request against the current [`MetadataImage`](crate::image::MetadataImage) and emit records;
//! every replica then replays the same records in the same order. Records are serialized with
//! serde (externally tagged, so both serde_json and postcard can carry them).

use runnel_security::acl::AclBinding;
use runnel_security::scram::{ScramCredential, ScramMechanism};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Kafka broker ids are `int32` on the wire.
pub type BrokerId = i32;

/// One entry of a metadata log batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    RegisterBroker(RegisterBrokerRecord),
    FenceBroker(FenceBrokerRecord),
    UnfenceBroker(UnfenceBrokerRecord),
    Topic(TopicRecord),
    Partition(PartitionRecord),
    PartitionChange(PartitionChangeRecord),
    Config(ConfigRecord),
    RemoveTopic(RemoveTopicRecord),
    ProducerIds(ProducerIdsRecord),
    FeatureLevel(FeatureLevelRecord),
    ClusterId(ClusterIdRecord),
    // New variants are appended: a variant's position must never change for logs already
    // written.
    BrokerRegistrationChange(BrokerRegistrationChangeRecord),
    Acl(AclRecord),
    RemoveAcl(RemoveAclRecord),
    UserScramCredential(UserScramCredentialRecord),
    RemoveUserScramCredential(RemoveUserScramCredentialRecord),
    ClientQuota(ClientQuotaRecord),
}

/// A broker (re-)registers. A registration replaces any earlier one of the same id and, as in
/// KRaft, starts fenced: the broker serves nothing until an [`UnfenceBrokerRecord`] follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterBrokerRecord {
    pub broker_id: BrokerId,
    /// Random per process start; tells a restart apart from a duplicate registration.
    pub incarnation_id: Uuid,
    pub endpoints: Vec<BrokerEndpoint>,
    pub rack: Option<String>,
}

/// One listener a broker advertises (`PLAINTEXT://host:port`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerEndpoint {
    /// Listener name, e.g. `PLAINTEXT`.
    pub name: String,
    pub host: String,
    pub port: u16,
}

/// The broker stops being eligible for leadership and for the ISR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceBrokerRecord {
    pub broker_id: BrokerId,
    /// The registration being fenced; a record for an older incarnation is ignored.
    pub incarnation_id: Uuid,
}

/// The broker caught up with the metadata log and may serve again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnfenceBrokerRecord {
    pub broker_id: BrokerId,
    /// The registration being unfenced; a record for an older incarnation is ignored.
    pub incarnation_id: Uuid,
}

/// A change of a registration's state other than fencing (Kafka's
/// `BrokerRegistrationChangeRecord`). Only the fields that are `Some` change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistrationChangeRecord {
    pub broker_id: BrokerId,
    /// The registration being changed; a record for another incarnation is refused.
    pub incarnation_id: Uuid,
    /// The broker asked to shut down and is handing its leaderships over (controlled
    /// shutdown): it is never elected leader nor let into an ISR again under this
    /// incarnation. A new registration, or unfencing, clears it.
    #[serde(default)]
    pub in_controlled_shutdown: Option<bool>,
}

/// A topic is created. Its partitions follow as [`PartitionRecord`]s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub name: String,
    pub topic_id: Uuid,
}

/// A partition is created with its full assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    pub topic_id: Uuid,
    pub partition: i32,
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
    /// `-1` when there is no leader.
    pub leader: BrokerId,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
}

/// A change of an existing partition's ISR and/or leader. Replaying it always bumps the
/// partition epoch; a new leader (even the same broker re-elected) also bumps the leader epoch,
/// which is what fences stale leaders and drives follower truncation (KIP-101, KIP-320).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionChangeRecord {
    pub topic_id: Uuid,
    pub partition: i32,
    pub isr: Option<Vec<BrokerId>>,
    /// `Some(-1)` makes the partition leaderless.
    pub leader: Option<BrokerId>,
}

/// What a [`ConfigRecord`] configures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ConfigResourceType {
    Topic,
    Broker,
}

/// Sets (`value: Some`) or deletes (`value: None`) one dynamic config key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigRecord {
    pub resource_type: ConfigResourceType,
    /// Topic name, or broker id as a string (empty for the cluster-wide broker default).
    pub resource_name: String,
    pub name: String,
    pub value: Option<String>,
}

/// A topic, its partitions and its configs are deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveTopicRecord {
    pub topic_id: Uuid,
}

/// A block of producer ids was handed to a broker; `next_producer_id` is the first id of the
/// *next* block, so ids below it are never handed out again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerIdsRecord {
    pub broker_id: BrokerId,
    pub next_producer_id: i64,
}

/// A finalized feature level (`metadata.version`, ...). Level 0 removes the feature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureLevelRecord {
    pub name: String,
    pub feature_level: i16,
}

/// The cluster id, written once when a new cluster bootstraps. Every later record of the log
/// belongs to this cluster; brokers and clients see it in Metadata responses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterIdRecord {
    pub cluster_id: String,
}

/// An ACL is created (Kafka's `AccessControlEntryRecord`). The id names it for its removal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclRecord {
    pub id: Uuid,
    pub binding: AclBinding,
}

/// An ACL is deleted (Kafka's `RemoveAccessControlEntryRecord`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveAclRecord {
    pub id: Uuid,
}

/// A user's SCRAM credential for one mechanism is created or replaced (Kafka's
/// `UserScramCredentialRecord`). Only the salt, the derived keys and the iteration count are
/// stored, never the password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserScramCredentialRecord {
    pub name: String,
    pub mechanism: ScramMechanism,
    pub credential: ScramCredential,
}

/// A user's SCRAM credential for one mechanism is deleted (Kafka's
/// `RemoveUserScramCredentialRecord`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveUserScramCredentialRecord {
    pub name: String,
    pub mechanism: ScramMechanism,
}

/// One component of a client quota entity: the default for its type, or one name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum QuotaName {
    /// Kafka's `<default>` entity (a null name on the wire).
    Default,
    Name(String),
}

impl QuotaName {
    /// The name as Kafka puts it on the wire: `None` for the default.
    pub fn as_wire(&self) -> Option<&str> {
        match self {
            QuotaName::Default => None,
            QuotaName::Name(n) => Some(n),
        }
    }
}

/// The entity a client quota applies to (KIP-55): a user, a client id, or both, each either
/// named or the default. At least one component is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QuotaEntity {
    pub user: Option<QuotaName>,
    pub client_id: Option<QuotaName>,
}

/// A quota value. Values are validated finite when set, so equality on the bits is equality.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct QuotaValue(pub f64);

impl PartialEq for QuotaValue {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for QuotaValue {}

/// A client quota is set or, with `value` absent, removed (Kafka's `ClientQuotaRecord`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientQuotaRecord {
    pub entity: QuotaEntity,
    /// `producer_byte_rate`, `consumer_byte_rate`, `request_percentage` or
    /// `controller_mutation_rate`.
    pub key: String,
    pub value: Option<QuotaValue>,
}
