//! Per-concern managers: each validates a request against the current [`MetadataImage`] and
//! returns the records to commit plus the response ([`ControllerResult`]). They do no I/O, read
//! no clock and draw no randomness of their own (time and randomness come in through [`Ctx`]), so
//! they are unit-tested directly. Only the active controller runs them, one request at a time,
//! against an image that reflects every committed record; the state machine only replays what
//! they return.

pub mod acls;
pub mod cluster;
pub mod configs;
pub mod elections;
pub mod liveness;
pub mod producer_ids;
pub mod quotas;
pub mod scram;
pub mod topics;

mod placement;
mod staged;
#[cfg(test)]
pub(crate) mod testkit;

use crate::records::Record;

/// The records to append to the metadata log, and what to answer once they are committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerResult<T> {
    pub records: Vec<Record>,
    pub response: T,
}

impl<T> ControllerResult<T> {
    pub fn new(records: Vec<Record>, response: T) -> Self {
        ControllerResult { records, response }
    }
}

/// Cluster-wide defaults the managers apply (broker properties of the active controller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerConfig {
    /// `num.partitions`.
    pub default_num_partitions: i32,
    /// `default.replication.factor`.
    pub default_replication_factor: i16,
    /// `unclean.leader.election.enable` (a topic config overrides it).
    pub unclean_leader_election: bool,
    /// Producer ids handed to a broker per request.
    pub producer_id_block_size: i32,
    /// `max.partitions`: the most partitions the cluster may have (internal topics excepted
    /// from the check).
    pub max_partitions: i32,
    /// `max.broker.partitions`: the most partition replicas one broker may hold (internal
    /// topics excepted from the check).
    pub max_broker_partitions: i32,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            default_num_partitions: 1,
            default_replication_factor: 1,
            unclean_leader_election: false,
            producer_id_block_size: 1000,
            max_partitions: 100_000,
            max_broker_partitions: i32::MAX,
        }
    }
}

/// Validates topic config values. The broker crate owns Kafka's topic config table and
/// implements this; the managers call it for every key a request sets.
pub trait TopicConfigValidator: Send + Sync {
    /// `Err(message)` for an unknown key or a bad value (INVALID_CONFIG).
    fn validate(&self, name: &str, value: &str) -> Result<(), String>;
    /// Whether the key is a list (IncrementalAlterConfigs APPEND/SUBTRACT apply only to lists).
    fn is_list(&self, name: &str) -> bool;
}

/// Deterministic randomness for placement start points and topic ids. The node seeds it from
/// the OS; tests seed it with a constant.
#[derive(Debug, Clone)]
pub struct Ctx {
    state: u64,
}

impl Ctx {
    pub fn new(seed: u64) -> Self {
        // xorshift must not start at zero.
        Ctx { state: seed | 1 }
    }

    /// The next pseudo-random number (xorshift64*).
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A random (version 4) UUID that is never nil.
    pub fn next_uuid(&mut self) -> uuid::Uuid {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        bytes[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }
}
