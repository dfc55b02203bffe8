//! The transaction coordinator ([`coordinator`]) over one `__transaction_state` partition: the
//! state of each transactional id ([`metadata`]), its records in Kafka's formats
//! ([`records`]) and its settings ([`config`]).
//!
//! Like the group coordinator it performs no I/O and reads no clock: it validates requests,
//! returns the records to persist and the markers to send, and applies a transition only when
//! its record is reported durable.

pub mod config;
pub mod coordinator;
pub mod metadata;
pub mod records;
pub mod shard;

pub use config::TxnConfig;
pub use coordinator::{
    expected_producer, for_version, InitProducerIdOutcome, ListedTxn, MarkerJob, TxnCoordinator,
    TxnDescription, TxnListing, TxnStep, TxnWrite,
};
pub use metadata::{TopicPartition, TxnMetadata, TxnState, WriteToken};
pub use records::{RecordError, TxnLogValue};

/// The internal topic that holds transactions.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";
