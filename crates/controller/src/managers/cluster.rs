//! Brokers: registration, fencing and unfencing, and the leader elections they cause; ISR
//! changes proposed by partition leaders (AlterPartition); the cluster id.

use uuid::Uuid;

use super::{ControllerResult, ManagerConfig};
use crate::api::{AlterPartitionRequest, ControllerError, PartitionState, RegisterBrokerRequest};
use crate::image::MetadataImage;
use crate::records::BrokerId;

/// Records that set the cluster id (and initial feature levels) when the image has none.
pub fn bootstrap(_image: &MetadataImage, _cluster_id: &str) -> ControllerResult<()> {
    todo!("helper A")
}

pub fn register_broker(
    _image: &MetadataImage,
    _cfg: &ManagerConfig,
    _req: &RegisterBrokerRequest,
) -> ControllerResult<Result<(), ControllerError>> {
    todo!("helper A")
}

pub fn fence_broker(
    _image: &MetadataImage,
    _cfg: &ManagerConfig,
    _broker_id: BrokerId,
    _incarnation_id: Uuid,
) -> ControllerResult<()> {
    todo!("helper A")
}

pub fn unfence_broker(
    _image: &MetadataImage,
    _cfg: &ManagerConfig,
    _broker_id: BrokerId,
    _incarnation_id: Uuid,
) -> ControllerResult<Result<(), ControllerError>> {
    todo!("helper A")
}

pub fn alter_partition(
    _image: &MetadataImage,
    _req: &AlterPartitionRequest,
) -> ControllerResult<Result<PartitionState, ControllerError>> {
    todo!("helper A")
}
