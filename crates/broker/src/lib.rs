//! The Runnel broker: Kafka API handlers, partition hosting, and the server runtime that
//! connects them to sockets. Cluster metadata (brokers, topics, assignments, configs, producer
//! id blocks) belongs to the controller quorum (`runnel_controller`): the broker reads the
//! locally applied metadata image, forwards admin requests to the active controller, and makes
//! its hosted partitions follow the image ([`reconcile`]).
//!
//! Data flow of a produce: `server` takes a frame off a connection, `runnel_protocol::frame`
//! decodes it, `handlers::produce` finds each partition in the [`replica::ReplicaManager`],
//! checks that this node leads it, and appends the batch through `runnel_storage`, whose errors
//! become wire codes in [`error`] only. A fetch reads raw batch bytes back from storage and, if
//! there are fewer than `min_bytes`, waits on the partitions' high-watermark channels until
//! data arrives or `max_wait_ms` passes.
//!
//! This crate must never let a request panic the process or reach storage unvalidated, and
//! never serves a partition's data (or a group) that the image does not say this node leads.

pub mod auth;
pub mod background;
pub mod broker;
pub mod cleaner;
pub mod clock;
pub mod config;
pub mod connection;
pub mod connection_limits;
pub mod context;
pub mod controller_channel;
pub mod coordinators;
pub mod error;
pub mod fence;
pub mod frame_writer;
pub mod handlers;
pub mod listener_security;
pub mod meta_properties;
pub mod metadata;
pub mod quota;
pub mod reconcile;
pub mod replica;
pub mod replicate;
pub mod server;
pub mod topic_config;
pub mod topics;

pub use broker::{Broker, SharedBroker};
pub use clock::now_ms;
pub use config::{BrokerConfig, ConfigError};
pub use fence::Fence;
pub use server::{run, BoundServer, BrokerError};
