//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3, KIP-734), earliest local (-4,
//! same as earliest without tiered storage), and first offset at or after a timestamp. Only the
//! partition's leader answers, with its leader epoch (v4+).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::leader_partition;
use crate::auth::Authorizer;
use crate::context::RequestContext;
use crate::error;
use crate::fence::Fence;
use crate::metadata::MetadataView;
use crate::replica::ReplicaManager;
use runnel_security::acl::{AclOperation, ResourceType};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

pub fn handle(
    partitions: &ReplicaManager,
    fence: &Fence,
    metadata: &MetadataView,
    authorizer: &Authorizer,
    ctx: &RequestContext,
    req: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let image = metadata.serving_image();
    let read_committed = version >= 2 && req.isolation_level == 1;
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let allowed = authorizer.authorize(
                &image.image,
                ctx,
                AclOperation::Describe,
                ResourceType::Topic,
                &name,
            );
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let mut r = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1);
                    if !allowed {
                        r.error_code = ResponseError::TopicAuthorizationFailed.code();
                        return r;
                    }
                    let requested_epoch = if version >= 4 {
                        p.current_leader_epoch
                    } else {
                        -1
                    };
                    let partition = match leader_partition(
                        partitions,
                        fence,
                        &image.image,
                        &name,
                        p.partition_index,
                        requested_epoch,
                    ) {
                        Ok(partition) => partition,
                        Err(e) => {
                            r.error_code = e.code();
                            return r;
                        }
                    };
                    if version >= 4 {
                        r.leader_epoch = partition.leadership().leader_epoch;
                    }
                    // read_committed (isolation level 1, v2+) sees up to the last stable offset.
                    let bound = if read_committed {
                        partition.last_stable_offset()
                    } else {
                        partition.high_watermark()
                    };
                    let result: Result<Option<(i64, i64)>, runnel_storage::StorageError> = match p
                        .timestamp
                    {
                        LATEST => Ok(Some((bound, -1))),
                        EARLIEST | EARLIEST_LOCAL => Ok(Some((partition.log_start_offset(), -1))),
                        MAX_TIMESTAMP => Ok(partition
                            .with_log(|l| l.max_timestamp())
                            .map(|(ts, off)| (off, ts))),
                        ts if ts >= 0 => partition.with_log(|l| l.offset_for_timestamp(ts)),
                        _ => {
                            r.error_code = ResponseError::InvalidRequest.code();
                            return r;
                        }
                    };
                    // Records above the high watermark (the last stable offset under
                    // read_committed) are not visible yet: a search by timestamp never
                    // answers one.
                    let searched = p.timestamp >= 0 || p.timestamp == MAX_TIMESTAMP;
                    let result = result
                        .map(|found| found.filter(|(offset, _)| !searched || *offset < bound));
                    match result {
                        Ok(Some((offset, ts))) => {
                            r.offset = offset;
                            r.timestamp = ts;
                        }
                        Ok(None) => {}
                        Err(e) => r.error_code = error::storage_code(&e),
                    }
                    r
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}
