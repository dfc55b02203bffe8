//! DescribeClientQuotas (API 48) and AlterClientQuotas (API 49), versions 0-1
//! (`kafka-configs.sh --entity-type users|clients --alter --add-config producer_byte_rate=...`).
//!
//! Quotas live in the metadata log. AlterClientQuotas is forwarded to the active controller,
//! which validates each entry, and answered once this broker has applied the change;
//! DescribeClientQuotas is answered from the local image. As in Kafka, altering needs
//! ALTER_CONFIGS on the cluster and describing DESCRIBE_CONFIGS (CLUSTER_AUTHORIZATION_FAILED
//! otherwise).

use std::collections::BTreeSet;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_client_quotas_response::{self as alter_resp};
use kafka_protocol::messages::describe_client_quotas_response::{self as describe_resp};
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, DescribeClientQuotasRequest,
    DescribeClientQuotasResponse, ResponseKind,
};
use runnel_controller::api::{
    self, AdminRequest, AdminResponse, ClientQuotaAlteration, ClientQuotaOp,
};
use runnel_controller::managers::quotas::{CLIENT_ID, IP, USER};
use runnel_controller::records::{QuotaEntity, QuotaName, QuotaValue};
use runnel_controller::MetadataImage;
use runnel_security::acl::{AclOperation, ResourceType, CLUSTER_NAME};

use super::{admin_timeout, s, AdminServices, Reply};
use crate::context::RequestContext;
use crate::error::KafkaError;

/// (Kafka error code, message).
/// How long AlterClientQuotas waits for the controller (the request carries no timeout; this
/// is Kafka's `request.timeout.ms` default).
const ALTER_TIMEOUT_MS: i32 = 30_000;

const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
const MATCH_ANY: i8 = 2;

fn cluster_denied() -> KafkaError {
    KafkaError::new(
        ResponseError::ClusterAuthorizationFailed,
        "Cluster authorization failed.".to_string(),
    )
}

fn invalid(message: impl Into<String>) -> KafkaError {
    KafkaError::new(ResponseError::InvalidRequest, message.into())
}

pub fn describe_client_quotas(
    svc: &AdminServices,
    ctx: &RequestContext,
    req: DescribeClientQuotasRequest,
    _version: i16,
) -> Reply {
    let mut resp = DescribeClientQuotasResponse::default();
    let outcome = if svc.authorize(
        ctx,
        AclOperation::DescribeConfigs,
        ResourceType::Cluster,
        CLUSTER_NAME,
    ) {
        filter(&req).map(|f| describe(&svc.image().image, &f))
    } else {
        Err(cluster_denied())
    };
    match outcome {
        Ok(entries) => resp.entries = Some(entries),
        Err(e) => {
            resp.error_code = e.code();
            resp.error_message = Some(s(&e.message));
            resp.entries = None;
        }
    }
    Reply::Now(ResponseKind::DescribeClientQuotas(resp))
}

/// How one filter component matches an entity's name of its type.
#[derive(Debug, PartialEq)]
enum Match {
    Exact(String),
    Default,
    Any,
}

struct Filter {
    components: Vec<(String, Match)>,
    strict: bool,
}

/// The request's filter, checked as Kafka's `ClientQuotasImage.describe` checks it.
fn filter(req: &DescribeClientQuotasRequest) -> Result<Filter, KafkaError> {
    let mut seen = BTreeSet::new();
    let mut components = Vec::new();
    for c in &req.components {
        let entity_type = c.entity_type.to_string();
        if !seen.insert(entity_type.clone()) {
            return Err(invalid(format!(
                "Entity type {entity_type} cannot appear more than once in the filter."
            )));
        }
        if ![USER, CLIENT_ID, IP].contains(&entity_type.as_str()) {
            return Err(KafkaError::new(
                ResponseError::UnsupportedVersion,
                format!("Unsupported entity type {entity_type}"),
            ));
        }
        let m = match (c.match_type, &c._match) {
            (MATCH_EXACT, Some(name)) => Match::Exact(name.to_string()),
            (MATCH_EXACT, None) => {
                return Err(invalid(format!(
                    "Exact match of {entity_type} needs a name to match"
                )))
            }
            (MATCH_DEFAULT, None) => Match::Default,
            (MATCH_ANY, None) => Match::Any,
            (MATCH_DEFAULT | MATCH_ANY, Some(_)) => {
                return Err(invalid(format!(
                    "A match name is not allowed for match type {} of {entity_type}",
                    c.match_type
                )))
            }
            (other, _) => return Err(invalid(format!("Unknown match type {other}"))),
        };
        components.push((entity_type, m));
    }
    if seen.contains(IP) && (seen.contains(USER) || seen.contains(CLIENT_ID)) {
        return Err(invalid("Invalid entity filter component combination"));
    }
    Ok(Filter {
        components,
        strict: req.strict,
    })
}

fn parts(entity: &QuotaEntity) -> Vec<(&'static str, &QuotaName)> {
    let mut out = Vec::new();
    if let Some(u) = &entity.user {
        out.push((USER, u));
    }
    if let Some(c) = &entity.client_id {
        out.push((CLIENT_ID, c));
    }
    out
}

fn matches(entity: &QuotaEntity, f: &Filter) -> bool {
    let parts = parts(entity);
    let component_ok = f.components.iter().all(|(t, m)| {
        parts
            .iter()
            .find(|(pt, _)| pt == t)
            .is_some_and(|(_, name)| match m {
                Match::Exact(want) => name.as_wire() == Some(want.as_str()),
                Match::Default => **name == QuotaName::Default,
                Match::Any => true,
            })
    });
    let no_extra = !f.strict
        || parts
            .iter()
            .all(|(pt, _)| f.components.iter().any(|(t, _)| t == pt));
    component_ok && no_extra
}

fn describe(image: &MetadataImage, f: &Filter) -> Vec<describe_resp::EntryData> {
    image
        .client_quotas()
        .filter(|(entity, _)| matches(entity, f))
        .map(|(entity, values)| {
            describe_resp::EntryData::default()
                .with_entity(
                    parts(entity)
                        .into_iter()
                        .map(|(t, name)| {
                            describe_resp::EntityData::default()
                                .with_entity_type(s(t))
                                .with_entity_name(name.as_wire().map(s))
                        })
                        .collect(),
                )
                .with_values(
                    values
                        .iter()
                        .map(|(k, v)| {
                            describe_resp::ValueData::default()
                                .with_key(s(k))
                                .with_value(v.0)
                        })
                        .collect(),
                )
        })
        .collect()
}

pub fn alter_client_quotas(
    svc: &AdminServices,
    ctx: &RequestContext,
    req: AlterClientQuotasRequest,
    _version: i16,
) -> Reply {
    let wire_entities: Vec<Vec<alter_resp::EntityData>> = req
        .entries
        .iter()
        .map(|e| {
            e.entity
                .iter()
                .map(|c| {
                    alter_resp::EntityData::default()
                        .with_entity_type(c.entity_type.clone())
                        .with_entity_name(c.entity_name.clone())
                })
                .collect()
        })
        .collect();
    let answer = move |results: Vec<Result<(), KafkaError>>| {
        AlterClientQuotasResponse::default().with_entries(
            results
                .into_iter()
                .zip(wire_entities.iter().cloned())
                .map(|(r, entity)| {
                    let out = alter_resp::EntryData::default().with_entity(entity);
                    match r {
                        Ok(()) => out,
                        Err(e) => out
                            .with_error_code(e.code())
                            .with_error_message(Some(s(&e.message))),
                    }
                })
                .collect(),
        )
    };
    if !svc.authorize(
        ctx,
        AclOperation::AlterConfigs,
        ResourceType::Cluster,
        CLUSTER_NAME,
    ) {
        let resp = answer(vec![Err(cluster_denied()); req.entries.len()]);
        return Reply::Now(ResponseKind::AlterClientQuotas(resp));
    }
    // Values the metadata log cannot carry are refused here; the controller decides the rest.
    let mut results: Vec<Option<Result<(), KafkaError>>> = Vec::with_capacity(req.entries.len());
    let mut forward = Vec::new();
    for e in &req.entries {
        let bad = e.ops.iter().find(|op| !op.remove && !op.value.is_finite());
        if let Some(op) = bad {
            results.push(Some(Err(invalid(format!(
                "Quota {} must be a finite number",
                op.key
            )))));
            continue;
        }
        results.push(None);
        forward.push(ClientQuotaAlteration {
            entity: e
                .entity
                .iter()
                .map(|c| {
                    (
                        c.entity_type.to_string(),
                        c.entity_name.as_ref().map(|n| n.to_string()),
                    )
                })
                .collect(),
            ops: e
                .ops
                .iter()
                .map(|op| ClientQuotaOp {
                    key: op.key.to_string(),
                    value: (!op.remove).then_some(QuotaValue(op.value)),
                })
                .collect(),
        });
    }
    if forward.is_empty() {
        let resp = answer(results.into_iter().flatten().collect());
        return Reply::Now(ResponseKind::AlterClientQuotas(resp));
    }
    let request = api::AlterClientQuotasRequest {
        entries: forward,
        validate_only: req.validate_only,
    };
    let svc = svc.clone();
    Reply::Later(Box::pin(async move {
        let n = request.entries.len();
        let forwarded: Vec<Result<(), KafkaError>> = match svc
            .admin(
                AdminRequest::AlterClientQuotas(request),
                admin_timeout(ALTER_TIMEOUT_MS),
            )
            .await
        {
            Ok(AdminResponse::AlterClientQuotas(r)) if r.results.len() == n => r
                .results
                .into_iter()
                .map(|r| r.map_err(|e| KafkaError::from(&e)))
                .collect(),
            Ok(other) => {
                tracing::error!(response = ?other, "controller answered AlterClientQuotas with another response");
                vec![
                    Err(KafkaError::new(
                        ResponseError::UnknownServerError,
                        "unexpected controller response".to_string()
                    ));
                    n
                ]
            }
            Err(e) => {
                tracing::warn!(error = %e, "AlterClientQuotas failed");
                vec![Err(KafkaError::from(&e)); n]
            }
        };
        let mut forwarded = forwarded.into_iter();
        let merged = results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| forwarded.next().unwrap_or(Ok(()))))
            .collect();
        ResponseKind::AlterClientQuotas(answer(merged))
    }))
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
    use runnel_controller::records::{ClientQuotaRecord, Record};

    use super::*;

    fn image() -> MetadataImage {
        let mut image = MetadataImage::new();
        let quotas: [(Option<QuotaName>, Option<QuotaName>); 4] = [
            (Some(QuotaName::Name("alice".into())), None),
            (
                Some(QuotaName::Name("alice".into())),
                Some(QuotaName::Name("c1".into())),
            ),
            (Some(QuotaName::Default), None),
            (None, Some(QuotaName::Default)),
        ];
        for (user, client_id) in quotas {
            image
                .apply(&Record::ClientQuota(ClientQuotaRecord {
                    entity: QuotaEntity { user, client_id },
                    key: "producer_byte_rate".into(),
                    value: Some(QuotaValue(100.0)),
                }))
                .unwrap();
        }
        image
    }

    fn component(t: &str, match_type: i8, name: Option<&str>) -> ComponentData {
        ComponentData::default()
            .with_entity_type(s(t))
            .with_match_type(match_type)
            .with_match(name.map(s))
    }

    fn run(components: Vec<ComponentData>, strict: bool) -> Result<Vec<String>, KafkaError> {
        let req = DescribeClientQuotasRequest::default()
            .with_components(components)
            .with_strict(strict);
        let f = filter(&req)?;
        Ok(describe(&image(), &f)
            .into_iter()
            .map(|e| {
                e.entity
                    .iter()
                    .map(|c| {
                        format!(
                            "{}={}",
                            c.entity_type,
                            c.entity_name
                                .as_ref()
                                .map_or("<default>".to_string(), |n| n.to_string())
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect())
    }

    #[test]
    fn filters_match_as_kafka_describes_them() {
        assert_eq!(run(vec![], false).unwrap().len(), 4);
        assert_eq!(
            run(vec![component("user", MATCH_EXACT, Some("alice"))], false).unwrap(),
            ["user=alice", "user=alice,client-id=c1"]
        );
        assert_eq!(
            run(vec![component("user", MATCH_EXACT, Some("alice"))], true).unwrap(),
            ["user=alice"]
        );
        assert_eq!(
            run(vec![component("user", MATCH_DEFAULT, None)], false).unwrap(),
            ["user=<default>"]
        );
        assert_eq!(
            run(vec![component("client-id", MATCH_ANY, None)], true).unwrap(),
            ["client-id=<default>"]
        );
        assert_eq!(
            run(vec![component("user", MATCH_ANY, None)], false)
                .unwrap()
                .len(),
            3
        );
        let dup = run(
            vec![
                component("user", MATCH_ANY, None),
                component("user", MATCH_DEFAULT, None),
            ],
            false,
        );
        assert_eq!(
            dup.unwrap_err().code(),
            ResponseError::InvalidRequest.code()
        );
        let bad = run(vec![component("group", MATCH_ANY, None)], false);
        assert!(bad.is_err());
        let no_name = run(vec![component("user", MATCH_EXACT, None)], false);
        assert_eq!(
            no_name.unwrap_err().code(),
            ResponseError::InvalidRequest.code()
        );
        let named_default = run(vec![component("user", MATCH_DEFAULT, Some("x"))], false);
        assert_eq!(
            named_default.unwrap_err().code(),
            ResponseError::InvalidRequest.code()
        );
    }
}
