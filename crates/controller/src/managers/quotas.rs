//! Client quotas (KIP-13, KIP-55, KIP-124, KIP-599): AlterClientQuotas, validated as Kafka's
//! `ClientQuotaControlManager` does. DescribeClientQuotas needs no controller: brokers answer
//! it from their image, and enforce the quotas they find there.

use std::collections::BTreeSet;

use super::ControllerResult;
use crate::api::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, ClientQuotaAlteration, ControllerError,
};
use crate::image::MetadataImage;
use crate::records::{ClientQuotaRecord, QuotaEntity, QuotaName, QuotaValue, Record};

/// Bytes per second a producer may send (a whole number).
pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
/// Bytes per second a consumer may fetch (a whole number).
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
/// Percentage of one request-handling thread's time per quota window.
pub const REQUEST_PERCENTAGE: &str = "request_percentage";
/// Partitions created or deleted per second (KIP-599).
pub const CONTROLLER_MUTATION_RATE: &str = "controller_mutation_rate";

/// The quota keys of user and client-id entities, and whether each must be a whole number.
pub const QUOTA_KEYS: [(&str, bool); 4] = [
    (PRODUCER_BYTE_RATE, true),
    (CONSUMER_BYTE_RATE, true),
    (REQUEST_PERCENTAGE, false),
    (CONTROLLER_MUTATION_RATE, false),
];

/// Kafka's entity type names.
pub const USER: &str = "user";
pub const CLIENT_ID: &str = "client-id";
pub const IP: &str = "ip";

/// Each entry is decided on its own: a refused entry changes nothing, the others apply.
pub fn alter_client_quotas(
    image: &MetadataImage,
    req: &AlterClientQuotasRequest,
) -> ControllerResult<AlterClientQuotasResponse> {
    let mut records = Vec::new();
    let mut results = Vec::with_capacity(req.entries.len());
    for entry in &req.entries {
        match alteration(image, entry) {
            Ok(mut changes) => {
                if !req.validate_only {
                    records.append(&mut changes);
                }
                results.push(Ok(()));
            }
            Err(e) => {
                tracing::debug!(entity = ?entry.entity, error = %e, "client quota change refused");
                results.push(Err(e));
            }
        }
    }
    ControllerResult::new(records, AlterClientQuotasResponse { results })
}

fn invalid(message: impl Into<String>) -> ControllerError {
    ControllerError::InvalidRequest(message.into())
}

/// The entity a request names, checked as Kafka checks it.
pub fn entity(components: &[(String, Option<String>)]) -> Result<QuotaEntity, ControllerError> {
    if components.is_empty() {
        return Err(invalid("Invalid empty client quota entity"));
    }
    let mut entity = QuotaEntity::default();
    for (entity_type, name) in components {
        let name = match name {
            None => QuotaName::Default,
            Some(n) if n.is_empty() => {
                return Err(invalid(format!(
                    "Invalid empty {entity_type} name: use the default entity instead"
                )))
            }
            Some(n) => QuotaName::Name(n.clone()),
        };
        let slot = match entity_type.as_str() {
            USER => &mut entity.user,
            CLIENT_ID => &mut entity.client_id,
            IP => {
                return Err(invalid(
                    "Quotas on ip entities (connection_creation_rate) are not supported",
                ))
            }
            other => {
                return Err(invalid(format!(
                    "Unhandled client quota entity type: {other}"
                )))
            }
        };
        if slot.is_some() {
            return Err(invalid(format!(
                "Duplicate {entity_type} entity in a client quota entity"
            )));
        }
        *slot = Some(name);
    }
    Ok(entity)
}

/// Checks a quota key and value as Kafka's `validateQuotaKeyValue` does.
pub fn check_value(key: &str, value: f64) -> Result<(), ControllerError> {
    let Some((_, integral)) = QUOTA_KEYS.iter().find(|(k, _)| *k == key) else {
        return Err(invalid(format!("Invalid configuration key {key}")));
    };
    if !value.is_finite() {
        return Err(invalid(format!("Quota {key} must be a finite number")));
    }
    if value <= 0.0 {
        return Err(invalid(format!("Quota {key} must be greater than 0")));
    }
    if *integral && (value.fract() != 0.0 || value > i64::MAX as f64) {
        return Err(invalid(format!("Configuration {key} must be a Long value")));
    }
    Ok(())
}

fn alteration(
    image: &MetadataImage,
    entry: &ClientQuotaAlteration,
) -> Result<Vec<Record>, ControllerError> {
    let entity = entity(&entry.entity)?;
    let mut keys = BTreeSet::new();
    for op in &entry.ops {
        if !keys.insert(op.key.as_str()) {
            return Err(invalid(format!(
                "Duplicate quota key {} in one entity's changes",
                op.key
            )));
        }
        match op.value {
            Some(QuotaValue(v)) => check_value(&op.key, v)?,
            None => {
                if !QUOTA_KEYS.iter().any(|(k, _)| *k == op.key) {
                    return Err(invalid(format!("Invalid configuration key {}", op.key)));
                }
            }
        }
    }
    let current = image.client_quota(&entity);
    Ok(entry
        .ops
        .iter()
        .filter(|op| current.and_then(|c| c.get(&op.key)).copied() != op.value)
        .map(|op| {
            Record::ClientQuota(ClientQuotaRecord {
                entity: entity.clone(),
                key: op.key.clone(),
                value: op.value,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ClientQuotaOp;

    fn entry(
        entity: &[(&str, Option<&str>)],
        ops: &[(&str, Option<f64>)],
    ) -> ClientQuotaAlteration {
        ClientQuotaAlteration {
            entity: entity
                .iter()
                .map(|(t, n)| (t.to_string(), n.map(str::to_string)))
                .collect(),
            ops: ops
                .iter()
                .map(|(k, v)| ClientQuotaOp {
                    key: k.to_string(),
                    value: v.map(QuotaValue),
                })
                .collect(),
        }
    }

    fn alter(
        image: &mut MetadataImage,
        entries: Vec<ClientQuotaAlteration>,
        validate_only: bool,
    ) -> Vec<Result<(), String>> {
        let res = alter_client_quotas(
            image,
            &AlterClientQuotasRequest {
                entries,
                validate_only,
            },
        );
        for r in &res.records {
            image.apply(r).unwrap();
        }
        res.response
            .results
            .into_iter()
            .map(|r| r.map_err(|e| e.to_string()))
            .collect()
    }

    #[test]
    fn valid_entries_apply_and_invalid_ones_are_refused_each_on_its_own() {
        let mut image = MetadataImage::new();
        let results = alter(
            &mut image,
            vec![
                entry(
                    &[("user", Some("alice")), ("client-id", None)],
                    &[
                        ("producer_byte_rate", Some(1024.0)),
                        ("request_percentage", Some(12.5)),
                    ],
                ),
                entry(&[], &[("producer_byte_rate", Some(1.0))]),
                entry(&[("user", Some("a")), ("user", Some("b"))], &[]),
                entry(
                    &[("ip", Some("10.0.0.1"))],
                    &[("connection_creation_rate", Some(1.0))],
                ),
                entry(&[("group", Some("g"))], &[]),
                entry(&[("user", Some(""))], &[("producer_byte_rate", Some(1.0))]),
                entry(&[("user", None)], &[("producer_byte_rate", Some(1.5))]),
                entry(&[("user", None)], &[("producer_byte_rate", Some(0.0))]),
                entry(&[("user", None)], &[("producer_byte_rate", Some(-5.0))]),
                entry(&[("user", None)], &[("segment.bytes", Some(5.0))]),
                entry(
                    &[("client-id", Some("c"))],
                    &[
                        ("consumer_byte_rate", Some(5.0)),
                        ("consumer_byte_rate", None),
                    ],
                ),
                entry(
                    &[("client-id", Some("c"))],
                    &[("controller_mutation_rate", Some(0.5))],
                ),
            ],
            false,
        );
        let ok: Vec<bool> = results.iter().map(Result::is_ok).collect();
        assert_eq!(
            ok,
            [true, false, false, false, false, false, false, false, false, false, false, true],
            "{results:?}"
        );
        assert!(results[6]
            .as_ref()
            .unwrap_err()
            .contains("must be a Long value"));
        assert!(results[7].as_ref().unwrap_err().contains("greater than 0"));
        assert!(results[9]
            .as_ref()
            .unwrap_err()
            .contains("Invalid configuration key"));
        let alice = QuotaEntity {
            user: Some(QuotaName::Name("alice".into())),
            client_id: Some(QuotaName::Default),
        };
        let values = image.client_quota(&alice).unwrap();
        assert_eq!(values["producer_byte_rate"], QuotaValue(1024.0));
        assert_eq!(values["request_percentage"], QuotaValue(12.5));
        assert_eq!(image.client_quotas().count(), 2);
    }

    #[test]
    fn validate_only_changes_nothing_and_unchanged_values_write_no_record() {
        let mut image = MetadataImage::new();
        let set = || {
            entry(
                &[("client-id", Some("c"))],
                &[("producer_byte_rate", Some(10.0))],
            )
        };
        assert_eq!(alter(&mut image, vec![set()], true), [Ok(())]);
        assert_eq!(image.client_quotas().count(), 0);
        assert_eq!(alter(&mut image, vec![set()], false), [Ok(())]);
        let again = alter_client_quotas(
            &image,
            &AlterClientQuotasRequest {
                entries: vec![set()],
                validate_only: false,
            },
        );
        assert!(again.records.is_empty());
        // Removing a key never set is accepted and writes nothing; removing a set one clears it.
        let remove = |key: &str| entry(&[("client-id", Some("c"))], &[(key, None)]);
        let res = alter_client_quotas(
            &image,
            &AlterClientQuotasRequest {
                entries: vec![remove("consumer_byte_rate")],
                validate_only: false,
            },
        );
        assert!(res.records.is_empty());
        assert_eq!(
            alter(&mut image, vec![remove("producer_byte_rate")], false),
            [Ok(())]
        );
        assert_eq!(image.client_quotas().count(), 0);
        assert!(alter(&mut image, vec![remove("nonsense")], false)[0].is_err());
    }
}
