//! Producer-id blocks handed to brokers through the metadata log.

use super::{ControllerResult, ManagerConfig};
use crate::api::{AllocateProducerIdsRequest, ControllerError, ProducerIdBlock};
use crate::image::MetadataImage;
use crate::records::{ProducerIdsRecord, Record};

/// The next block `[image.next_producer_id(), + block size)` for a registered broker. The
/// record moves the image's next id past the block, so blocks never overlap.
pub fn allocate(
    image: &MetadataImage,
    cfg: &ManagerConfig,
    req: &AllocateProducerIdsRequest,
) -> ControllerResult<Result<ProducerIdBlock, ControllerError>> {
    let refuse = |e: ControllerError| {
        tracing::debug!(broker_id = req.broker_id, error = %e, "producer id allocation refused");
        ControllerResult::new(Vec::new(), Err(e))
    };
    match image.broker(req.broker_id) {
        Some(b) if b.incarnation_id == req.incarnation_id => {}
        Some(b) => {
            return refuse(ControllerError::StaleBrokerEpoch(format!(
                "Broker {} is registered with incarnation {}, not {}.",
                req.broker_id, b.incarnation_id, req.incarnation_id
            )))
        }
        None => {
            return refuse(ControllerError::StaleBrokerEpoch(format!(
                "Broker {} is not registered.",
                req.broker_id
            )))
        }
    }
    let size = cfg.producer_id_block_size;
    if size <= 0 {
        return refuse(ControllerError::Internal(format!(
            "producer id block size {size} is not positive"
        )));
    }
    let first = image.next_producer_id();
    let Some(next) = first.checked_add(i64::from(size)) else {
        return refuse(ControllerError::Internal(
            "the producer id space is exhausted".into(),
        ));
    };
    tracing::info!(
        broker_id = req.broker_id,
        first_producer_id = first,
        size,
        "producer id block allocated"
    );
    ControllerResult::new(
        vec![Record::ProducerIds(ProducerIdsRecord {
            broker_id: req.broker_id,
            next_producer_id: next,
        })],
        Ok(ProducerIdBlock {
            first_producer_id: first,
            size,
        }),
    )
}
