//! The broker's side of the coordinator runtime (`runnel-coordinator`): the log seam over this
//! node's partitions of internal topics.

pub mod shard_log;
