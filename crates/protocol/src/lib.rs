//! Kafka wire protocol for Runnel.
//!
//! This crate owns everything about bytes on the wire between Kafka clients and a broker:
//! length-prefixed framing with a size limit, request header parsing, the table of API versions
//! Runnel implements, and record batch (magic v2) header validation and in-place patching.
//! Message bodies are encoded and decoded by the `kafka-protocol` crate, re-exported here.
//!
//! It never touches a socket or a file: it works on `Bytes`/`&[u8]` only, so it can be fuzzed and
//! property-tested in isolation.

pub mod alloc_guard;
pub mod batch;
pub mod frame;
pub mod legacy;
pub mod record_stream;
pub mod response_frame;
pub mod versions;

pub use kafka_protocol;
