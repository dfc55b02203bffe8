//! The controller's request and response types: what brokers ask the active controller for and
//! what it answers. They are plain serde types, free of the Kafka wire protocol: the broker
//! translates Kafka requests into them (and [`ControllerError`]s back into Kafka error codes),
//! the managers in [`crate::managers`] decide them against the [`MetadataImage`], and the gRPC
//! layer carries them between nodes (admin requests as JSON inside a protobuf `bytes` field).
//!
//! [`MetadataImage`]: crate::image::MetadataImage

use std::collections::BTreeMap;

use runnel_security::acl::{AclBinding, AclBindingFilter};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::records::{BrokerEndpoint, BrokerId, QuotaValue};

/// Why the controller refused (part of) a request. Each variant maps to one Kafka error code in
/// the broker; the message is shown to the client as the error message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ControllerError {
    #[error("{0}")]
    TopicAlreadyExists(String),
    #[error("{0}")]
    UnknownTopic(String),
    #[error("{0}")]
    InvalidTopic(String),
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidReplicationFactor(String),
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    #[error("{0}")]
    InvalidConfig(String),
    #[error("{0}")]
    InvalidRequest(String),
    /// This node is not the active controller; `leader` is a hint when one is known.
    #[error("not the active controller (leader hint: {leader:?})")]
    NotController { leader: Option<BrokerId> },
    /// No quorum answered in time (a minority partition, an election in progress).
    #[error("{0}")]
    Timeout(String),
    /// The broker's registration is unknown or of an older incarnation.
    #[error("{0}")]
    StaleBrokerEpoch(String),
    #[error("{0}")]
    UnknownBroker(String),
    /// An AlterPartition names a leader epoch older than the current one.
    #[error("{0}")]
    FencedLeaderEpoch(String),
    /// An AlterPartition names a partition epoch other than the current one.
    #[error("{0}")]
    InvalidUpdateVersion(String),
    /// An AlterPartition proposes an ISR member that is fenced or not a replica.
    #[error("{0}")]
    IneligibleReplica(String),
    #[error("{0}")]
    NotLeaderOrFollower(String),
    #[error("{0}")]
    UnknownTopicOrPartition(String),
    /// ElectLeaders: the partition already has the leader the election would choose.
    #[error("{0}")]
    ElectionNotNeeded(String),
    /// A preferred election: the preferred replica is not in the ISR, fenced or shutting down.
    #[error("{0}")]
    PreferredLeaderNotAvailable(String),
    /// An unclean election: no live replica can lead.
    #[error("{0}")]
    EligibleLeadersNotAvailable(String),
    /// A SCRAM mechanism other than SCRAM-SHA-256 and SCRAM-SHA-512.
    #[error("{0}")]
    UnsupportedSaslMechanism(String),
    /// A SCRAM credential with an empty user name, too few or too many iterations, or an empty
    /// salt or salted password.
    #[error("{0}")]
    UnacceptableCredential(String),
    /// Deleting a SCRAM credential that does not exist.
    #[error("{0}")]
    ResourceNotFound(String),
    /// One user's credentials altered twice in one request.
    #[error("{0}")]
    DuplicateResource(String),
    /// RegisterBroker: another incarnation of the broker id is registered, unfenced, and its
    /// session has not expired (Kafka's DUPLICATE_BROKER_REGISTRATION).
    #[error("{0}")]
    DuplicateBrokerRegistration(String),
    /// A bug or an I/O failure; never a client's fault.
    #[error("{0}")]
    Internal(String),
}

/// Names a topic by name or by id (DeleteTopics v6 accepts either).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TopicRef {
    Name(String),
    Id(Uuid),
}

/// CreateTopics. `-1` for partitions or replication factor means "the broker default".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateTopicsRequest {
    pub topics: Vec<CreatableTopic>,
    pub validate_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatableTopic {
    pub name: String,
    pub num_partitions: i32,
    pub replication_factor: i16,
    /// Manual assignment: partition index -> replicas (first is the preferred leader). When
    /// non-empty, `num_partitions` and `replication_factor` must be `-1`.
    pub assignments: BTreeMap<i32, Vec<BrokerId>>,
    /// Config overrides (`None` values are ignored, as Kafka does).
    pub configs: Vec<(String, Option<String>)>,
    /// Set only by brokers creating internal topics (`__consumer_offsets`); clients may not.
    pub internal: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateTopicsResponse {
    /// One result per requested topic, in request order.
    pub topics: Vec<(String, Result<CreatedTopic, ControllerError>)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedTopic {
    pub topic_id: Uuid,
    pub num_partitions: i32,
    pub replication_factor: i16,
    /// The topic's config overrides as they will be (or were) stored.
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteTopicsRequest {
    pub topics: Vec<TopicRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteTopicsResponse {
    /// One per requested topic, in request order, with the name and id when the topic existed.
    pub topics: Vec<DeletedTopic>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedTopic {
    pub name: Option<String>,
    pub topic_id: Option<Uuid>,
    pub result: Result<(), ControllerError>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatePartitionsRequest {
    pub topics: Vec<PartitionIncrease>,
    pub validate_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionIncrease {
    pub name: String,
    /// The new total partition count.
    pub count: i32,
    /// Replicas of each new partition, when the client chose them.
    pub assignments: Option<Vec<Vec<BrokerId>>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatePartitionsResponse {
    pub topics: Vec<(String, Result<(), ControllerError>)>,
}

/// What a config change applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigResource {
    Topic(String),
    /// A broker id as a string, or empty for the cluster-wide default.
    Broker(String),
}

/// One config operation (IncrementalAlterConfigs semantics; legacy AlterConfigs is translated by
/// the broker into `Set` for every given key plus `replace_all`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigOp {
    Set(String, String),
    Delete(String),
    Append(String, String),
    Subtract(String, String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlterConfigsResource {
    pub resource: ConfigResource,
    pub ops: Vec<ConfigOp>,
    /// Legacy AlterConfigs: keys not named in `ops` are deleted.
    pub replace_all: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlterConfigsRequest {
    pub resources: Vec<AlterConfigsResource>,
    pub validate_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlterConfigsResponse {
    pub resources: Vec<(ConfigResource, Result<(), ControllerError>)>,
}

/// A broker asks for a block of producer ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocateProducerIdsRequest {
    pub broker_id: BrokerId,
    pub incarnation_id: Uuid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerIdBlock {
    pub first_producer_id: i64,
    pub size: i32,
}

/// A partition leader proposes a new ISR (used by replication; fenced by partition epoch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlterPartitionRequest {
    pub broker_id: BrokerId,
    pub incarnation_id: Uuid,
    pub topic_id: Uuid,
    pub partition: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<BrokerId>,
}

/// The partition as committed after an AlterPartition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    pub leader: BrokerId,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub isr: Vec<BrokerId>,
}

/// A broker (re-)registers when it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterBrokerRequest {
    pub broker_id: BrokerId,
    pub incarnation_id: Uuid,
    /// Kafka listeners clients connect to.
    pub endpoints: Vec<BrokerEndpoint>,
    pub rack: Option<String>,
    /// The node's inter-node gRPC address (`host:port`); broker-only nodes are added to the
    /// metadata quorum as non-voting learners at this address.
    pub rpc_address: String,
}

/// Heartbeats are not log entries; they only feed the active controller's liveness tracker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerHeartbeatRequest {
    pub broker_id: BrokerId,
    pub incarnation_id: Uuid,
    /// The highest metadata log index the broker has applied; it is unfenced once it has caught
    /// up with its own registration.
    pub metadata_applied_index: u64,
    /// The broker is stopping and asks for a controlled shutdown: its leaderships move to other
    /// ISR members, it leaves the ISRs and is never elected again under this incarnation.
    #[serde(default)]
    pub want_shut_down: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerHeartbeatResponse {
    pub is_fenced: bool,
    /// Answer to `want_shut_down`: the broker leads nothing any more (and the other brokers
    /// have applied the hand-over), so it may stop now. It is fenced from here on.
    #[serde(default)]
    pub should_shut_down: bool,
}

/// Which leader an ElectLeaders request elects (Kafka's `ElectionType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectionType {
    /// The preferred (first) replica, if it is in the ISR and active.
    Preferred,
    /// For a leaderless partition: an ISR member, else any live replica (data may be lost).
    Unclean,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElectLeadersRequest {
    pub election_type: ElectionType,
    /// (topic, partitions) to elect for; `None` means every partition of every topic.
    pub partitions: Option<Vec<(String, Vec<i32>)>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElectLeadersResponse {
    /// Per topic, per partition: `Ok` when a new leader was elected. Named partitions are
    /// answered in request order; for "every partition", partitions whose election was not
    /// needed are left out, as Kafka does.
    pub topics: Vec<(String, PartitionElections)>,
}

/// One topic's ElectLeaders outcomes: (partition, `Ok` when a new leader was elected).
pub type PartitionElections = Vec<(i32, Result<(), ControllerError>)>;

/// What kafka-metadata-quorum.sh shows: the Raft view of the metadata log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumInfo {
    pub leader_id: BrokerId,
    pub leader_epoch: i32,
    pub high_watermark: i64,
    pub voters: Vec<ReplicaState>,
    pub observers: Vec<ReplicaState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaState {
    pub replica_id: BrokerId,
    /// `-1` when unknown.
    pub log_end_offset: i64,
    /// Milliseconds since the epoch; `-1` when unknown.
    pub last_fetch_timestamp: i64,
    pub last_caught_up_timestamp: i64,
}

/// CreateAcls: each binding is created unless an equal one exists, which is a success that
/// writes nothing (as in Kafka).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateAclsRequest {
    pub creations: Vec<AclBinding>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateAclsResponse {
    /// One per creation, in request order.
    pub results: Vec<Result<(), ControllerError>>,
}

/// DeleteAcls: every ACL that matches any of the filters is deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteAclsRequest {
    pub filters: Vec<AclBindingFilter>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteAclsResponse {
    /// One per filter, in request order: the ACLs it matched (an ACL matched by several
    /// filters is listed under each), or why the filter was refused.
    pub results: Vec<Result<Vec<AclBinding>, ControllerError>>,
}

/// Deletes a user's credential for one mechanism.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredentialDeletion {
    pub name: String,
    /// Kafka's mechanism type: 1 is SCRAM-SHA-256, 2 is SCRAM-SHA-512; others are refused.
    pub mechanism: i8,
}

/// Creates or replaces a user's credential for one mechanism from a password the client has
/// already salted and hashed (Kafka's `ScramCredentialUpsertion`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredentialUpsertion {
    pub name: String,
    /// Kafka's mechanism type, as in [`ScramCredentialDeletion`].
    pub mechanism: i8,
    pub iterations: i32,
    pub salt: Vec<u8>,
    /// `Hi(password, salt, iterations)`; the stored and server keys are derived from it and
    /// it is not kept.
    pub salted_password: Vec<u8>,
}

impl std::fmt::Debug for ScramCredentialUpsertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramCredentialUpsertion")
            .field("name", &self.name)
            .field("mechanism", &self.mechanism)
            .field("iterations", &self.iterations)
            .field("salt_len", &self.salt.len())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlterUserScramCredentialsRequest {
    pub deletions: Vec<ScramCredentialDeletion>,
    pub upsertions: Vec<ScramCredentialUpsertion>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlterUserScramCredentialsResponse {
    /// One per user named in the request, in the order users first appear (deletions
    /// first, then upsertions).
    pub results: Vec<(String, Result<(), ControllerError>)>,
}

/// One change to one key of a client quota entity: set to `value`, or removed when `value`
/// is absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientQuotaOp {
    pub key: String,
    pub value: Option<QuotaValue>,
}

/// The changes for one entity of an AlterClientQuotas request. The entity is as the client
/// sent it, `(entity type, name)` with no name for the default, so that the controller alone
/// decides what a valid entity is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientQuotaAlteration {
    pub entity: Vec<(String, Option<String>)>,
    pub ops: Vec<ClientQuotaOp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlterClientQuotasRequest {
    pub entries: Vec<ClientQuotaAlteration>,
    /// Validate only: answer as if applied, change nothing.
    pub validate_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlterClientQuotasResponse {
    /// One per entry, in request order.
    pub results: Vec<Result<(), ControllerError>>,
}

/// Every admin request a broker forwards to the active controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminRequest {
    CreateTopics(CreateTopicsRequest),
    DeleteTopics(DeleteTopicsRequest),
    CreatePartitions(CreatePartitionsRequest),
    AlterConfigs(AlterConfigsRequest),
    ElectLeaders(ElectLeadersRequest),
    CreateAcls(CreateAclsRequest),
    DeleteAcls(DeleteAclsRequest),
    AlterUserScramCredentials(AlterUserScramCredentialsRequest),
    AlterClientQuotas(AlterClientQuotasRequest),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminResponse {
    CreateTopics(CreateTopicsResponse),
    DeleteTopics(DeleteTopicsResponse),
    CreatePartitions(CreatePartitionsResponse),
    AlterConfigs(AlterConfigsResponse),
    ElectLeaders(ElectLeadersResponse),
    CreateAcls(CreateAclsResponse),
    DeleteAcls(DeleteAclsResponse),
    AlterUserScramCredentials(AlterUserScramCredentialsResponse),
    AlterClientQuotas(AlterClientQuotasResponse),
}
