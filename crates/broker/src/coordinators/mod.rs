//! The broker's side of the coordinator runtime (`runnel-coordinator`): the log seam over this
//! node's partitions of internal topics ([`shard_log`]), the transaction coordinator service
//! ([`txn`]), the sender of its end-transaction markers ([`markers`]), the partition leader's
//! side of transaction verification ([`verify`]), and the gRPC channels to other nodes both
//! use ([`channels`]).

pub mod channels;
pub mod markers;
pub mod shard_log;
pub mod topics;
pub mod txn;
pub mod verify;
