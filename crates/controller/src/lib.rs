//! The controller quorum of a Runnel cluster: the KRaft-style metadata log and the active
//! controller that writes it.
//!
//! - [`records`]: the typed metadata records; [`image`]: the [`MetadataImage`] they replay into.
//! - [`store`]: openraft 0.9 log and state-machine storage on sled. The state machine only
//!   replays records; it never decides anything.
//! - [`api`]: what brokers ask the controller and what it answers, free of the Kafka wire format.
//! - [`managers`]: I/O-free per-concern logic (brokers, topics, configs, producer ids, ACLs,
//!   SCRAM credentials) that validates a request against the image and returns records plus a
//!   response.
//! - [`scram_bootstrap`]: the `--add-scram` syntax for a new cluster's first credentials.
//! - [`rpc`]: the gRPC layer (`proto/*.proto`): Raft transport and broker-to-controller calls.
//! - [`node`]: the running quorum member: Raft over gRPC, the active controller's request loop,
//!   broker liveness and fencing, and the local broker's registration and heartbeats.
//!
//! This crate must never depend on `replication` or `broker`, never speak the Kafka wire
//! protocol or pick Kafka error codes, and never acknowledge a vote or a log append before it
//! is flushed to disk.

pub mod api;
pub mod image;
pub mod managers;
pub mod node;
pub mod records;
pub mod rpc;
pub mod scram_bootstrap;
pub mod store;

pub use api::ControllerError;
pub use image::{ApplyError, MetadataImage};
pub use managers::topics::{
    is_coordinator_topic, CONSUMER_OFFSETS, METADATA_TOPIC, TRANSACTION_STATE,
};
pub use node::{AppliedImage, BrokerLifecycle, ControllerNode, NodeConfig, NodeError, Roles};
pub use records::Record;
pub use store::{open, LogStore, MetadataRequest, MetadataResponse, StateMachine, TypeConfig};
