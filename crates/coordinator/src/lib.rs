//! Runnel's coordinators, and the runtime that keeps them in internal-topic partitions.
//!
//! A coordinator owns the state kept in one partition of an internal topic: the classic
//! consumer group protocol and committed offsets ([`group`], over `__consumer_offsets`), and
//! transactions ([`txn`], over `__transaction_state`: producer ids and epochs, the state of each
//! transaction, and the markers that end it). Each is a state machine
//! ([`shard::CoordinatorShard`]) that takes requests, replayed records and the time as inputs
//! and gives back answers and the records to persist.
//!
//! [`runtime::CoordinatorRuntime`] runs the shards of one internal topic: it loads a shard when
//! this node gains leadership of the partition (replaying it), unloads it when leadership goes,
//! appends the shard's records with acks=all through a [`log::ShardLog`] (which the broker
//! implements over its partitions), delivers answers once the high watermark passes the records
//! they depend on, and drives the shards' timers.
//!
//! Architecture invariant: the state machines perform no I/O and read no clock (time comes in as
//! arguments; new member ids are random). The runtime performs no I/O of its own either: it
//! reaches the log only through [`log::ShardLog`] and only waits and spawns on tokio. The crate
//! depends on no other Runnel crate.

pub mod batch;
pub mod group;
pub mod log;
pub mod partitioning;
pub mod runtime;
pub mod shard;
pub mod txn;

#[cfg(test)]
mod runtime_tests;
#[cfg(test)]
mod testing;
