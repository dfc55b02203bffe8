//! Authentication and authorization on the client listeners: TLS ([`tls`]), SASL ([`sasl`])
//! and ACLs ([`authorizer`]). The building blocks (rustls configurations from PEM files, SCRAM,
//! the ACL model) are in `runnel_security`; this module applies them to connections and
//! requests.

pub mod authorizer;
pub mod sasl;
pub mod tls;

pub use authorizer::Authorizer;
