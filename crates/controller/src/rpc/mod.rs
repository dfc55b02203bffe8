//! The inter-node gRPC layer: the generated protobuf types and tonic stubs (`proto/*.proto`),
//! conversions between them and the crate's own types, the servers (Raft and
//! broker-to-controller), and the clients (openraft's network and the controller client).
//!
//! Raft messages are openraft's own serde types carried as JSON in `bytes` fields (openraft 0.9
//! has no protobuf schema); broker-to-controller messages are typed protobuf, except admin
//! requests, which carry the JSON of [`crate::api::AdminRequest`] (see `proto/controller.proto`).

pub(crate) mod client;
mod convert;
pub mod identity;
pub(crate) mod network;
pub(crate) mod server;
pub mod tls;

/// Generated code; lints are the generator's business.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod pb {
    pub mod raft {
        tonic::include_proto!("runnel.raft.v1");
    }
    pub mod controller {
        tonic::include_proto!("runnel.controller.v1");
    }
}

/// Largest gRPC message accepted or sent: a snapshot of the whole image travels in one
/// InstallSnapshot chunk at most `snapshot_max_chunk_size` large, and an AppendEntries batch can
/// carry many entries. Far above tonic's 4 MiB default.
/// Adds more gRPC services to a node's server (see `ControllerNode::start_with_services`).
pub type ExtraServices =
    Box<dyn FnOnce(tonic::service::Routes) -> tonic::service::Routes + Send + 'static>;

pub(crate) const MAX_MESSAGE_SIZE: usize = 256 * 1024 * 1024;
