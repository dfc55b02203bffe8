//! Transactions over `__transaction_state`: the state of each transactional id
//! ([`metadata`]) and its records in Kafka's formats ([`records`]).

pub mod metadata;
pub mod records;

pub use metadata::{TopicPartition, TxnMetadata, TxnState, WriteToken};
pub use records::{RecordError, TxnLogValue};

/// The internal topic that holds transactions.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";
