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

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::managers::testkit::{brokers, inc, replay};

    fn req(b: i32, incarnation: Uuid) -> AllocateProducerIdsRequest {
        AllocateProducerIdsRequest {
            broker_id: b,
            incarnation_id: incarnation,
        }
    }

    #[test]
    fn blocks_are_disjoint_and_increasing() {
        let cfg = ManagerConfig {
            producer_id_block_size: 100,
            ..ManagerConfig::default()
        };
        let mut image = brokers(2);
        let mut blocks = Vec::new();
        for i in 0..6 {
            let b = 1 + i % 2;
            let r = allocate(&image, &cfg, &req(b, inc(b)));
            blocks.push(r.response.clone().unwrap());
            image = replay(&image, &r);
        }
        for (i, block) in blocks.iter().enumerate() {
            assert_eq!(block.size, 100);
            assert_eq!(block.first_producer_id, 100 * i as i64);
        }
        assert_eq!(image.next_producer_id(), 600);
    }

    #[test]
    fn stale_or_unknown_broker() {
        let cfg = ManagerConfig::default();
        let image = brokers(1);
        let r = allocate(&image, &cfg, &req(1, Uuid::from_u128(3)));
        assert!(matches!(
            r.response,
            Err(ControllerError::StaleBrokerEpoch(_))
        ));
        assert!(r.records.is_empty());
        let r = allocate(&image, &cfg, &req(2, inc(2)));
        assert!(matches!(
            r.response,
            Err(ControllerError::StaleBrokerEpoch(_))
        ));
    }

    #[test]
    fn overflow_is_internal() {
        let cfg = ManagerConfig::default();
        let image = brokers(1);
        let image = crate::managers::testkit::apply_all(
            &image,
            &[Record::ProducerIds(ProducerIdsRecord {
                broker_id: 1,
                next_producer_id: i64::MAX - 10,
            })],
        );
        let r = allocate(&image, &cfg, &req(1, inc(1)));
        assert!(matches!(r.response, Err(ControllerError::Internal(_))));
        assert!(r.records.is_empty());
        let bad = ManagerConfig {
            producer_id_block_size: 0,
            ..ManagerConfig::default()
        };
        assert!(matches!(
            allocate(&brokers(1), &bad, &req(1, inc(1))).response,
            Err(ControllerError::Internal(_))
        ));
    }
}
