//! ApiVersions: advertises exactly the version table in `runnel_protocol::versions`.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use runnel_protocol::versions::SUPPORTED;

fn api_keys() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|&(k, min, max)| {
            ApiVersion::default()
                .with_api_key(k as i16)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect()
}

pub fn handle(_req: ApiVersionsRequest, _version: i16) -> ApiVersionsResponse {
    // v3+ clients also send their software name and version; nothing depends on it here.
    ApiVersionsResponse::default().with_api_keys(api_keys())
}

/// The v0 body sent when a client asks for an ApiVersions version we do not support.
pub fn unsupported_version_response() -> kafka_protocol::messages::ResponseKind {
    kafka_protocol::messages::ResponseKind::ApiVersions(
        ApiVersionsResponse::default()
            .with_error_code(kafka_protocol::error::ResponseError::UnsupportedVersion.code())
            .with_api_keys(api_keys()),
    )
}
