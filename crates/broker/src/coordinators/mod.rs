//! The broker's side of the coordinator runtime (`runnel-coordinator`): the log seam over this
//! node's partitions of internal topics ([`shard_log`]), the transaction coordinator service
//! ([`txn`]) and the sender of its end-transaction markers ([`markers`]).

pub mod markers;
pub mod shard_log;
pub mod topics;
pub mod txn;
