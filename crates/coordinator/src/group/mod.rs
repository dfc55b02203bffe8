//! The classic consumer group protocol ([`state`]), its settings ([`config`]) and its records
//! in `__consumer_offsets`, in Kafka's formats ([`records`]).

pub mod config;
pub mod records;
pub mod state;

pub use config::{CoordinatorSettings, GroupConfig};
pub use state::GroupState;

/// The internal topic that holds groups and their committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
