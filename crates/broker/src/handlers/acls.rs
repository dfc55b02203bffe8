//! CreateAcls (API 30), DescribeAcls (API 29) and DeleteAcls (API 31): ACL administration
//! (`kafka-acls.sh`, `Admin.createAcls`...), versions 1-3 (v2 is the flexible encoding).
//!
//! ACLs live in the metadata log. CreateAcls and DeleteAcls are forwarded to the active
//! controller as one [`AdminRequest`] each and answered once this broker has applied the
//! change, so a DescribeAcls here right after sees it; DescribeAcls is answered from the local
//! image. As in Kafka: the caller needs ALTER on the cluster to create or delete ACLs and
//! DESCRIBE on the cluster to list them (CLUSTER_AUTHORIZATION_FAILED otherwise), and a broker
//! without an authorizer (`authorizer.class.name`) answers all three with SECURITY_DISABLED.
//! An invalid binding or filter is refused on its own with INVALID_REQUEST; creating an ACL
//! that exists succeeds.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;
use runnel_controller::api::{self, AdminRequest, AdminResponse};
use runnel_controller::MetadataImage;
use runnel_security::acl::{
    AccessControlEntry, AclBinding, AclBindingFilter, AclOperation, AclPermissionType, PatternType,
    ResourcePattern, ResourceType, CLUSTER_NAME,
};

use super::AdminServices;
use super::{admin_timeout, s, Reply};
use crate::context::RequestContext;
use crate::error::KafkaError;

/// (Kafka error code, message).
/// How long CreateAcls and DeleteAcls wait for the controller, in milliseconds (they carry no
/// timeout; this is Kafka's `request.timeout.ms` default).
const ACL_TIMEOUT_MS: i32 = 30_000;

fn cluster_denied() -> KafkaError {
    KafkaError::new(
        ResponseError::ClusterAuthorizationFailed,
        "Cluster authorization failed.".to_string(),
    )
}

fn security_disabled() -> KafkaError {
    KafkaError::new(
        ResponseError::SecurityDisabled,
        "No Authorizer is configured.".to_string(),
    )
}

/// Whether ACL requests may go on: the caller has `op` on the cluster and ACLs are enforced.
fn check(svc: &AdminServices, ctx: &RequestContext, op: AclOperation) -> Result<(), KafkaError> {
    if !svc.authorize(ctx, op, ResourceType::Cluster, CLUSTER_NAME) {
        return Err(cluster_denied());
    }
    if !svc.authorizer.enabled() {
        return Err(security_disabled());
    }
    Ok(())
}

pub fn create_acls(
    svc: &AdminServices,
    ctx: &RequestContext,
    req: CreateAclsRequest,
    _version: i16,
) -> Reply {
    let n = req.creations.len();
    if let Err(e) = check(svc, ctx, AclOperation::Alter) {
        return Reply::Now(ResponseKind::CreateAcls(create_response(vec![Err(e); n])));
    }
    if n == 0 {
        return Reply::Now(ResponseKind::CreateAcls(create_response(Vec::new())));
    }
    let creations = req.creations.iter().map(binding_of).collect();
    let svc = svc.clone();
    Reply::Later(Box::pin(async move {
        let request = AdminRequest::CreateAcls(api::CreateAclsRequest { creations });
        let results = match svc.admin(request, admin_timeout(ACL_TIMEOUT_MS)).await {
            Ok(AdminResponse::CreateAcls(r)) if r.results.len() == n => r
                .results
                .into_iter()
                .map(|r| r.map_err(|e| KafkaError::from(&e)))
                .collect(),
            Ok(other) => {
                tracing::error!(response = ?other, "controller answered CreateAcls with another response");
                vec![Err(unexpected()); n]
            }
            Err(e) => {
                tracing::warn!(error = %e, "CreateAcls failed");
                vec![Err(KafkaError::from(&e)); n]
            }
        };
        ResponseKind::CreateAcls(create_response(results))
    }))
}

pub fn delete_acls(
    svc: &AdminServices,
    ctx: &RequestContext,
    req: DeleteAclsRequest,
    _version: i16,
) -> Reply {
    let n = req.filters.len();
    if let Err(e) = check(svc, ctx, AclOperation::Alter) {
        return Reply::Now(ResponseKind::DeleteAcls(delete_response(vec![Err(e); n])));
    }
    if n == 0 {
        return Reply::Now(ResponseKind::DeleteAcls(delete_response(Vec::new())));
    }
    let filters = req.filters.iter().map(delete_filter_of).collect();
    let svc = svc.clone();
    Reply::Later(Box::pin(async move {
        let request = AdminRequest::DeleteAcls(api::DeleteAclsRequest { filters });
        let results = match svc.admin(request, admin_timeout(ACL_TIMEOUT_MS)).await {
            Ok(AdminResponse::DeleteAcls(r)) if r.results.len() == n => r
                .results
                .into_iter()
                .map(|r| r.map_err(|e| KafkaError::from(&e)))
                .collect(),
            Ok(other) => {
                tracing::error!(response = ?other, "controller answered DeleteAcls with another response");
                vec![Err(unexpected()); n]
            }
            Err(e) => {
                tracing::warn!(error = %e, "DeleteAcls failed");
                vec![Err(KafkaError::from(&e)); n]
            }
        };
        ResponseKind::DeleteAcls(delete_response(results))
    }))
}

pub fn describe_acls(
    svc: &AdminServices,
    ctx: &RequestContext,
    req: DescribeAclsRequest,
    _version: i16,
) -> Reply {
    let outcome = check(svc, ctx, AclOperation::Describe).and_then(|()| {
        let image = svc.image();
        describe(&image.image, &describe_filter_of(&req))
    });
    let mut resp = DescribeAclsResponse::default().with_error_message(None);
    match outcome {
        Ok(resources) => resp.resources = resources,
        Err(e) => {
            resp.error_code = e.code();
            resp.error_message = Some(s(&e.message));
        }
    }
    Reply::Now(ResponseKind::DescribeAcls(resp))
}

fn unexpected() -> KafkaError {
    KafkaError::new(
        ResponseError::UnknownServerError,
        "unexpected controller response".to_string(),
    )
}

fn string(v: &StrBytes) -> String {
    v.as_str().to_string()
}

/// The binding a creation asks for; unknown codes become `Unknown` values, which the
/// controller refuses with INVALID_REQUEST.
fn binding_of(c: &AclCreation) -> AclBinding {
    AclBinding {
        pattern: ResourcePattern {
            resource_type: ResourceType::from_i8(c.resource_type),
            name: string(&c.resource_name),
            pattern_type: PatternType::from_i8(c.resource_pattern_type),
        },
        entry: AccessControlEntry {
            principal: string(&c.principal),
            host: string(&c.host),
            operation: AclOperation::from_i8(c.operation),
            permission: AclPermissionType::from_i8(c.permission_type),
        },
    }
}

fn delete_filter_of(f: &DeleteAclsFilter) -> AclBindingFilter {
    AclBindingFilter {
        resource_type: ResourceType::from_i8(f.resource_type_filter),
        name: f.resource_name_filter.as_ref().map(string),
        pattern_type: PatternType::from_i8(f.pattern_type_filter),
        principal: f.principal_filter.as_ref().map(string),
        host: f.host_filter.as_ref().map(string),
        operation: AclOperation::from_i8(f.operation),
        permission: AclPermissionType::from_i8(f.permission_type),
    }
}

fn describe_filter_of(r: &DescribeAclsRequest) -> AclBindingFilter {
    AclBindingFilter {
        resource_type: ResourceType::from_i8(r.resource_type_filter),
        name: r.resource_name_filter.as_ref().map(string),
        pattern_type: PatternType::from_i8(r.pattern_type_filter),
        principal: r.principal_filter.as_ref().map(string),
        host: r.host_filter.as_ref().map(string),
        operation: AclOperation::from_i8(r.operation),
        permission: AclPermissionType::from_i8(r.permission_type),
    }
}

/// The image's ACLs that match `filter`, grouped by resource pattern (ordered by type, name
/// and pattern type).
fn describe(
    image: &MetadataImage,
    filter: &AclBindingFilter,
) -> Result<Vec<DescribeAclsResource>, KafkaError> {
    filter
        .validate()
        .map_err(|m| KafkaError::new(ResponseError::InvalidRequest, m))?;
    let mut by_pattern: BTreeMap<&ResourcePattern, Vec<&AccessControlEntry>> = BTreeMap::new();
    for b in image.acls().filter(|b| filter.matches(b)) {
        by_pattern.entry(&b.pattern).or_default().push(&b.entry);
    }
    Ok(by_pattern
        .into_iter()
        .map(|(p, mut entries)| {
            entries.sort();
            DescribeAclsResource::default()
                .with_resource_type(p.resource_type.as_i8())
                .with_resource_name(s(&p.name))
                .with_pattern_type(p.pattern_type.as_i8())
                .with_acls(
                    entries
                        .into_iter()
                        .map(|e| {
                            AclDescription::default()
                                .with_principal(s(&e.principal))
                                .with_host(s(&e.host))
                                .with_operation(e.operation.as_i8())
                                .with_permission_type(e.permission.as_i8())
                        })
                        .collect(),
                )
        })
        .collect())
}

fn create_response(results: Vec<Result<(), KafkaError>>) -> CreateAclsResponse {
    CreateAclsResponse::default().with_results(
        results
            .into_iter()
            .map(|r| match r {
                Ok(()) => AclCreationResult::default().with_error_message(None),
                Err(e) => AclCreationResult::default()
                    .with_error_code(e.code())
                    .with_error_message(Some(s(&e.message))),
            })
            .collect(),
    )
}

fn delete_response(results: Vec<Result<Vec<AclBinding>, KafkaError>>) -> DeleteAclsResponse {
    DeleteAclsResponse::default().with_filter_results(
        results
            .into_iter()
            .map(|r| match r {
                Ok(bindings) => DeleteAclsFilterResult::default()
                    .with_error_message(None)
                    .with_matching_acls(
                        bindings
                            .into_iter()
                            .map(|b| {
                                DeleteAclsMatchingAcl::default()
                                    .with_error_message(None)
                                    .with_resource_type(b.pattern.resource_type.as_i8())
                                    .with_resource_name(s(&b.pattern.name))
                                    .with_pattern_type(b.pattern.pattern_type.as_i8())
                                    .with_principal(s(&b.entry.principal))
                                    .with_host(s(&b.entry.host))
                                    .with_operation(b.entry.operation.as_i8())
                                    .with_permission_type(b.entry.permission.as_i8())
                            })
                            .collect(),
                    ),
                Err(e) => DeleteAclsFilterResult::default()
                    .with_error_code(e.code())
                    .with_error_message(Some(s(&e.message))),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use runnel_controller::records::{AclRecord, Record};
    use uuid::Uuid;

    use super::*;

    fn creation(resource_type: i8, name: &str, pattern: i8, principal: &str) -> AclCreation {
        AclCreation::default()
            .with_resource_type(resource_type)
            .with_resource_name(s(name))
            .with_resource_pattern_type(pattern)
            .with_principal(s(principal))
            .with_host(s("*"))
            .with_operation(AclOperation::Read.as_i8())
            .with_permission_type(AclPermissionType::Allow.as_i8())
    }

    fn image_with(bindings: &[AclBinding]) -> MetadataImage {
        let mut image = MetadataImage::new();
        for (i, b) in bindings.iter().enumerate() {
            image
                .apply(&Record::Acl(AclRecord {
                    id: Uuid::from_u128(i as u128 + 1),
                    binding: b.clone(),
                }))
                .unwrap();
        }
        image
    }

    const TOPIC: i8 = 2;
    const GROUP: i8 = 3;
    const LITERAL: i8 = 3;
    const PREFIXED: i8 = 4;

    #[test]
    fn creations_translate_wire_codes() {
        let b = binding_of(&creation(TOPIC, "orders", PREFIXED, "User:alice"));
        assert_eq!(b.pattern.resource_type, ResourceType::Topic);
        assert_eq!(b.pattern.pattern_type, PatternType::Prefixed);
        assert_eq!(b.entry.operation, AclOperation::Read);
        assert_eq!(b.entry.permission, AclPermissionType::Allow);
        assert!(b.validate().is_ok());
        // Codes Runnel does not know are Unknown, which validation refuses.
        let bad = binding_of(&creation(99, "orders", LITERAL, "User:alice"));
        assert_eq!(bad.pattern.resource_type, ResourceType::Unknown);
        assert!(bad.validate().is_err());
    }

    #[test]
    fn describe_groups_matches_by_pattern() {
        let orders = binding_of(&creation(TOPIC, "orders", LITERAL, "User:alice"));
        let orders_bob = binding_of(&creation(TOPIC, "orders", LITERAL, "User:bob"));
        let prefix = binding_of(&creation(TOPIC, "ord", PREFIXED, "User:alice"));
        let group = binding_of(&creation(GROUP, "g", LITERAL, "User:alice"));
        let image = image_with(&[orders_bob, group, prefix, orders]);

        let all = describe(&image, &AclBindingFilter::any()).unwrap();
        let shape: Vec<(i8, String, i8, usize)> = all
            .iter()
            .map(|r| {
                (
                    r.resource_type,
                    r.resource_name.to_string(),
                    r.pattern_type,
                    r.acls.len(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            [
                (TOPIC, "ord".to_string(), PREFIXED, 1),
                (TOPIC, "orders".to_string(), LITERAL, 2),
                (GROUP, "g".to_string(), LITERAL, 1),
            ]
        );
        assert_eq!(all[1].acls[0].principal.as_str(), "User:alice");

        // MATCH finds every pattern that applies to the topic "orders".
        let req = DescribeAclsRequest::default()
            .with_resource_type_filter(TOPIC)
            .with_resource_name_filter(Some(s("orders")))
            .with_pattern_type_filter(PatternType::Match.as_i8())
            .with_principal_filter(Some(s("User:alice")))
            .with_host_filter(None)
            .with_operation(AclOperation::Any.as_i8())
            .with_permission_type(AclPermissionType::Any.as_i8());
        let found = describe(&image, &describe_filter_of(&req)).unwrap();
        let names: Vec<String> = found.iter().map(|r| r.resource_name.to_string()).collect();
        assert_eq!(names, ["ord", "orders"]);

        // An UNKNOWN element is INVALID_REQUEST.
        let req = req.with_operation(0);
        let err = describe(&image, &describe_filter_of(&req)).unwrap_err();
        assert_eq!(err.code(), ResponseError::InvalidRequest.code());
    }

    #[test]
    fn responses_carry_per_item_errors() {
        let resp = create_response(vec![Ok(()), Err(security_disabled())]);
        assert_eq!(resp.results[0].error_code, 0);
        assert_eq!(resp.results[0].error_message, None);
        assert_eq!(
            resp.results[1].error_code,
            ResponseError::SecurityDisabled.code()
        );
        let b = binding_of(&creation(TOPIC, "orders", LITERAL, "User:alice"));
        let resp = delete_response(vec![Ok(vec![b]), Err(cluster_denied())]);
        assert_eq!(resp.filter_results[0].error_message, None);
        let m = &resp.filter_results[0].matching_acls[0];
        assert_eq!((m.error_code, m.error_message.as_ref()), (0, None));
        assert_eq!(
            (m.resource_type, m.resource_name.as_str(), m.pattern_type),
            (TOPIC, "orders", LITERAL)
        );
        assert_eq!(
            (
                m.principal.as_str(),
                m.host.as_str(),
                m.operation,
                m.permission_type
            ),
            (
                "User:alice",
                "*",
                AclOperation::Read.as_i8(),
                AclPermissionType::Allow.as_i8()
            )
        );
        assert_eq!(
            resp.filter_results[1].error_code,
            ResponseError::ClusterAuthorizationFailed.code()
        );
    }

    /// A standalone broker with the standard authorizer and `User:admin` as super user,
    /// driven through the handlers as admin and as an anonymous client.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acls_and_scram_credentials_through_a_broker() {
        use std::sync::Arc;

        use kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion;
        use kafka_protocol::messages::{
            AlterUserScramCredentialsRequest, ApiKey, DescribeUserScramCredentialsRequest,
        };

        use crate::context::{ConnectionContext, KafkaPrincipal, SecurityProtocol};
        use crate::{BoundServer, BrokerConfig};

        async fn reply(r: Reply) -> ResponseKind {
            match r {
                Reply::Now(k) => k,
                Reply::Later(f) => f.await,
                Reply::LaterOrNone(f) => f.await.expect("expected a response"),
                Reply::Ordered(f, _) => f.await.expect("expected a response"),
                Reply::NoResponse => panic!("expected a response"),
            }
        }
        let ctx = |user: &str, api_key| {
            let mut conn = ConnectionContext::new(
                Arc::from("PLAINTEXT"),
                SecurityProtocol::Plaintext,
                "127.0.0.1:40000".parse().unwrap(),
            );
            conn.principal = Arc::new(KafkaPrincipal::user(user));
            RequestContext::new(conn, api_key, 0, 1, None)
        };

        let dir = tempfile::tempdir().unwrap();
        let props: Vec<(String, String)> = [
            ("log.dirs", dir.path().display().to_string()),
            ("listeners", "PLAINTEXT://127.0.0.1:0".to_string()),
            (
                "authorizer.class.name",
                "org.apache.kafka.metadata.authorizer.StandardAuthorizer".to_string(),
            ),
            ("super.users", "User:admin".to_string()),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let server = BoundServer::bind(BrokerConfig::from_properties(&props).unwrap())
            .await
            .unwrap();
        let b = super::super::AdminServices::new(&server.broker);
        let admin = ctx("admin", ApiKey::CreateAcls);
        let alice = ctx("alice", ApiKey::CreateAcls);

        let creations = vec![
            creation(TOPIC, "orders", LITERAL, "User:alice"),
            creation(TOPIC, "orders", LITERAL, "alice"),
        ];
        let create = CreateAclsRequest::default().with_creations(creations);
        // Without ALTER on the cluster: refused for every creation.
        let ResponseKind::CreateAcls(r) = reply(create_acls(&b, &alice, create.clone(), 3)).await
        else {
            panic!()
        };
        assert!(r
            .results
            .iter()
            .all(|r| r.error_code == ResponseError::ClusterAuthorizationFailed.code()));
        let ResponseKind::CreateAcls(r) = reply(create_acls(&b, &admin, create, 3)).await else {
            panic!()
        };
        let codes: Vec<i16> = r.results.iter().map(|r| r.error_code).collect();
        assert_eq!(codes, [0, ResponseError::InvalidRequest.code()]);

        let describe_all = DescribeAclsRequest::default()
            .with_resource_type_filter(ResourceType::Any.as_i8())
            .with_resource_name_filter(None)
            .with_pattern_type_filter(PatternType::Any.as_i8())
            .with_principal_filter(None)
            .with_host_filter(None)
            .with_operation(AclOperation::Any.as_i8())
            .with_permission_type(AclPermissionType::Any.as_i8());
        let ResponseKind::DescribeAcls(r) =
            reply(describe_acls(&b, &alice, describe_all.clone(), 3)).await
        else {
            panic!()
        };
        assert_eq!(
            r.error_code,
            ResponseError::ClusterAuthorizationFailed.code()
        );
        // The broker answered once it applied the creation: the ACL is visible at once.
        let ResponseKind::DescribeAcls(r) =
            reply(describe_acls(&b, &admin, describe_all.clone(), 3)).await
        else {
            panic!()
        };
        assert_eq!(r.error_code, 0);
        assert_eq!(r.resources.len(), 1);
        assert_eq!(r.resources[0].acls[0].principal.as_str(), "User:alice");

        let delete = DeleteAclsRequest::default().with_filters(vec![DeleteAclsFilter::default()
            .with_resource_type_filter(TOPIC)
            .with_resource_name_filter(Some(s("orders")))
            .with_pattern_type_filter(PatternType::Any.as_i8())
            .with_principal_filter(None)
            .with_host_filter(None)
            .with_operation(AclOperation::Any.as_i8())
            .with_permission_type(AclPermissionType::Any.as_i8())]);
        let ResponseKind::DeleteAcls(r) = reply(delete_acls(&b, &admin, delete, 3)).await else {
            panic!()
        };
        assert_eq!(r.filter_results[0].error_code, 0);
        assert_eq!(r.filter_results[0].matching_acls.len(), 1);
        let ResponseKind::DescribeAcls(r) = reply(describe_acls(&b, &admin, describe_all, 3)).await
        else {
            panic!()
        };
        assert!(r.resources.is_empty());

        // SCRAM credentials: alice may not set them, admin may.
        let salted = runnel_security::scram::salted_password(
            runnel_security::scram::ScramMechanism::Sha256,
            "alice-secret",
            b"alice-salt",
            4096,
        );
        let alter = AlterUserScramCredentialsRequest::default().with_upsertions(vec![
            ScramCredentialUpsertion::default()
                .with_name(s("alice"))
                .with_mechanism(1)
                .with_iterations(4096)
                .with_salt(bytes::Bytes::from_static(b"alice-salt"))
                .with_salted_password(salted.into()),
            ScramCredentialUpsertion::default()
                .with_name(s("bob"))
                .with_mechanism(1)
                .with_iterations(100)
                .with_salt(bytes::Bytes::from_static(b"bob-salt"))
                .with_salted_password(bytes::Bytes::from_static(b"x")),
        ]);
        let ResponseKind::AlterUserScramCredentials(r) = reply(
            super::super::scram::alter_user_scram_credentials(&b, &alice, alter.clone(), 0),
        )
        .await
        else {
            panic!()
        };
        assert!(r
            .results
            .iter()
            .all(|r| r.error_code == ResponseError::ClusterAuthorizationFailed.code()));
        let ResponseKind::AlterUserScramCredentials(r) = reply(
            super::super::scram::alter_user_scram_credentials(&b, &admin, alter, 0),
        )
        .await
        else {
            panic!()
        };
        let results: Vec<(&str, i16)> = r
            .results
            .iter()
            .map(|r| (r.user.as_str(), r.error_code))
            .collect();
        assert_eq!(
            results,
            [
                ("alice", 0),
                ("bob", ResponseError::UnacceptableCredential.code())
            ]
        );
        assert_eq!(
            b.image()
                .image
                .scram_credential("alice", runnel_security::scram::ScramMechanism::Sha256),
            Some(&runnel_security::scram::ScramCredential::from_password(
                runnel_security::scram::ScramMechanism::Sha256,
                "alice-secret",
                b"alice-salt",
                4096
            ))
        );
        let describe = DescribeUserScramCredentialsRequest::default().with_users(None);
        let ResponseKind::DescribeUserScramCredentials(r) = reply(
            super::super::scram::describe_user_scram_credentials(&b, &admin, describe.clone(), 0),
        )
        .await
        else {
            panic!()
        };
        assert_eq!(r.error_code, 0);
        assert_eq!(r.results.len(), 1);
        assert_eq!(r.results[0].credential_infos[0].iterations, 4096);
        let ResponseKind::DescribeUserScramCredentials(r) = reply(
            super::super::scram::describe_user_scram_credentials(&b, &alice, describe, 0),
        )
        .await
        else {
            panic!()
        };
        assert_eq!(
            r.error_code,
            ResponseError::ClusterAuthorizationFailed.code()
        );
        server.close().await;
    }

    /// Without `authorizer.class.name` every client may call the ACL APIs, and they answer
    /// SECURITY_DISABLED, as Kafka does.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_an_authorizer_acl_apis_are_disabled() {
        use kafka_protocol::messages::ApiKey;

        use crate::{BoundServer, BrokerConfig};

        let dir = tempfile::tempdir().unwrap();
        let props: Vec<(String, String)> = [
            ("log.dirs", dir.path().display().to_string()),
            ("listeners", "PLAINTEXT://127.0.0.1:0".to_string()),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let server = BoundServer::bind(BrokerConfig::from_properties(&props).unwrap())
            .await
            .unwrap();
        let b = super::super::AdminServices::new(&server.broker);
        let ctx = RequestContext::new(
            crate::context::ConnectionContext::new(
                std::sync::Arc::from("PLAINTEXT"),
                crate::context::SecurityProtocol::Plaintext,
                "127.0.0.1:40000".parse().unwrap(),
            ),
            ApiKey::DescribeAcls,
            3,
            1,
            None,
        );
        let Reply::Now(ResponseKind::DescribeAcls(r)) =
            describe_acls(&b, &ctx, DescribeAclsRequest::default(), 3)
        else {
            panic!()
        };
        assert_eq!(r.error_code, ResponseError::SecurityDisabled.code());
        let create = CreateAclsRequest::default().with_creations(vec![creation(
            TOPIC,
            "orders",
            LITERAL,
            "User:alice",
        )]);
        let Reply::Now(ResponseKind::CreateAcls(r)) = create_acls(&b, &ctx, create, 3) else {
            panic!()
        };
        assert_eq!(
            r.results[0].error_code,
            ResponseError::SecurityDisabled.code()
        );
        server.close().await;
    }
}
