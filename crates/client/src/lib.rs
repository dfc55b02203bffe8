//! `runnel-client`: an async Kafka client that speaks only the public Kafka wire protocol
//! (through `kafka-protocol`), so it works against any Kafka cluster, not just Runnel.
//!
//! - [`admin`]: ACLs (CreateAcls, DescribeAcls, DeleteAcls) and SCRAM credentials
//!   (DescribeUserScramCredentials, AlterUserScramCredentials).
//! - [`config`]: [`ClientConfig`] from Kafka's client properties (`security.protocol`,
//!   `sasl.*`, `ssl.*`, `client.id`).
//! - [`client`]: one connection per broker ([`Connection`]: TCP or TLS, framing, ApiVersions
//!   negotiation, SASL PLAIN / SCRAM authentication), a cluster [`Client`] with a metadata
//!   cache, leader routing and coordinator lookup (groups and transactional ids).
//! - [`consume`]: ListOffsets, Fetch, record decoding, committed offsets, the consumer
//!   protocol, the range assignor and [`consume::GroupMember`].
//! - [`produce`]: record-batch encoding, Produce requests and InitProducerId.
//! - [`properties`]: Java `.properties` files, as Kafka's tools read `--command-config`.
//! - [`transactions`]: ListTransactions, DescribeTransactions and DescribeProducers.
//!
//! The client never retries on its own except where a method says so (coordinator moves):
//! callers decide which Kafka errors are worth a metadata refresh and another attempt.

pub mod admin;
pub mod client;
pub mod config;
pub mod consume;
pub mod produce;
pub mod properties;
mod sasl;
pub mod transactions;

pub use config::{ClientConfig, SaslCredentials, SaslMechanism, SecurityProtocol};

pub use client::{
    backoff, check, codes, error_name, negotiate, parse_bootstrap, AuthenticationError, BrokerMeta,
    Client, ClusterMeta, Connection, CoordinatorType, KafkaError, PartitionMeta, Target, TopicMeta,
    REQUEST_TIMEOUT,
};
