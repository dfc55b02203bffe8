//! The controller quorum's storage foundation: the KRaft-style metadata log of a Runnel cluster.
//!
//! This crate owns the typed metadata records ([`records`]), the [`MetadataImage`] they replay
//! into ([`image`]), and the openraft 0.9 log and state-machine storage on sled ([`store`]). The
//! state machine only replays records; it never decides anything. Deciding which records to
//! write (per-concern managers for brokers, topics, partitions, configs and producer ids that
//! validate a request against the image and return records plus a response) is the job of code
//! that comes next, as are the Raft networking (gRPC between controllers) and the brokers' use
//! of the image. This crate must never depend on `replication` or `broker`, never speak the
//! Kafka wire protocol or pick Kafka error codes, and never acknowledge a vote or a log append
//! before it is flushed to disk.

pub mod image;
pub mod records;
pub mod store;

pub use image::{ApplyError, MetadataImage};
pub use records::Record;
pub use store::{open, LogStore, MetadataRequest, MetadataResponse, StateMachine, TypeConfig};
