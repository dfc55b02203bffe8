//! Security building blocks for Runnel.
//!
//! This crate owns the security logic that the broker, the controller and the clients share:
//! Kafka's ACL model and the decision rules of its `StandardAuthorizer` ([`acl`]), SASL SCRAM
//! and PLAIN message handling ([`scram`], [`plain`]), `sasl.jaas.config` parsing ([`jaas`]),
//! certificate principals and `ssl.principal.mapping.rules` ([`principal`]), and rustls
//! configurations built from Kafka's `ssl.*` PEM properties ([`tls`]).
//!
//! It never opens a socket and never encodes Kafka wire messages: callers move the bytes and
//! map errors to Kafka error codes. It depends on no other workspace crate.

pub mod acl;
pub mod jaas;
pub mod plain;
pub mod principal;
mod protocol;
pub mod scram;
pub mod tls;

pub use protocol::SecurityProtocol;
