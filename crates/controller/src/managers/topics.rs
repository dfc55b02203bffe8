//! Topics and partitions: creation with replica placement, deletion, partition increases.

use super::{ControllerResult, Ctx, ManagerConfig, TopicConfigValidator};
use crate::api::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse,
};
use crate::image::MetadataImage;

pub fn create_topics(
    _image: &MetadataImage,
    _cfg: &ManagerConfig,
    _validator: &dyn TopicConfigValidator,
    _ctx: &mut Ctx,
    _req: &CreateTopicsRequest,
) -> ControllerResult<CreateTopicsResponse> {
    todo!("helper A")
}

pub fn delete_topics(
    _image: &MetadataImage,
    _req: &DeleteTopicsRequest,
) -> ControllerResult<DeleteTopicsResponse> {
    todo!("helper A")
}

pub fn create_partitions(
    _image: &MetadataImage,
    _ctx: &mut Ctx,
    _req: &CreatePartitionsRequest,
) -> ControllerResult<CreatePartitionsResponse> {
    todo!("helper A")
}
