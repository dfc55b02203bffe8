//! Dynamic configs: AlterConfigs and IncrementalAlterConfigs for topics (broker configs are
//! refused until dynamic broker configs are implemented).

use super::{ControllerResult, TopicConfigValidator};
use crate::api::{AlterConfigsRequest, AlterConfigsResponse};
use crate::image::MetadataImage;

pub fn alter_configs(
    _image: &MetadataImage,
    _validator: &dyn TopicConfigValidator,
    _req: &AlterConfigsRequest,
) -> ControllerResult<AlterConfigsResponse> {
    todo!("helper A")
}
