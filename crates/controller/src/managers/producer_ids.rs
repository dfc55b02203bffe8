//! Producer-id blocks handed to brokers through the metadata log.

use super::{ControllerResult, ManagerConfig};
use crate::api::{AllocateProducerIdsRequest, ControllerError, ProducerIdBlock};
use crate::image::MetadataImage;

pub fn allocate(
    _image: &MetadataImage,
    _cfg: &ManagerConfig,
    _req: &AllocateProducerIdsRequest,
) -> ControllerResult<Result<ProducerIdBlock, ControllerError>> {
    todo!("helper A")
}
