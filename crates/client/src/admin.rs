//! Security administration requests: ACLs (CreateAcls, DescribeAcls, DeleteAcls) and SCRAM
//! credentials (DescribeUserScramCredentials, AlterUserScramCredentials), and client quotas
//! (DescribeClientQuotas, AlterClientQuotas), in the terms of
//! `runnel_security`'s ACL model. Requests go where Kafka's admin client sends them: ACL and
//! describe requests to any broker, credential changes to the controller (a broker forwards).

use anyhow::{anyhow, bail, Result};
use bytes::Bytes;
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest,
    DescribeUserScramCredentialsRequest,
};
use kafka_protocol::protocol::StrBytes;
use runnel_security::acl::{
    AccessControlEntry, AclBinding, AclBindingFilter, AclOperation, AclPermissionType, PatternType,
    ResourcePattern, ResourceType,
};
use runnel_security::scram::ScramMechanism;

use crate::client::{check, Client, KafkaError, Target};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn opt(v: &Option<String>) -> Option<StrBytes> {
    v.as_deref().map(s)
}

/// Creates `bindings`; one result per binding, in order.
pub async fn create_acls(
    client: &mut Client,
    bindings: &[AclBinding],
) -> Result<Vec<Result<(), KafkaError>>> {
    let mut req = CreateAclsRequest::default();
    req.creations = bindings
        .iter()
        .map(|b| {
            let mut c = AclCreation::default();
            c.resource_type = b.pattern.resource_type.as_i8();
            c.resource_name = s(&b.pattern.name);
            c.resource_pattern_type = b.pattern.pattern_type.as_i8();
            c.principal = s(&b.entry.principal);
            c.host = s(&b.entry.host);
            c.operation = b.entry.operation.as_i8();
            c.permission_type = b.entry.permission.as_i8();
            c
        })
        .collect();
    let resp = client.send_to(Target::Any, &req).await?;
    if resp.results.len() != bindings.len() {
        bail!(
            "CreateAcls answered {} results for {} ACLs",
            resp.results.len(),
            bindings.len()
        );
    }
    Ok(resp
        .results
        .iter()
        .map(|r| check(r.error_code, r.error_message.as_ref()))
        .collect())
}

/// The ACLs matching `filter`.
pub async fn describe_acls(
    client: &mut Client,
    filter: &AclBindingFilter,
) -> Result<Vec<AclBinding>> {
    let mut req = DescribeAclsRequest::default();
    req.resource_type_filter = filter.resource_type.as_i8();
    req.resource_name_filter = opt(&filter.name);
    req.pattern_type_filter = filter.pattern_type.as_i8();
    req.principal_filter = opt(&filter.principal);
    req.host_filter = opt(&filter.host);
    req.operation = filter.operation.as_i8();
    req.permission_type = filter.permission.as_i8();
    let resp = client.send_to(Target::Any, &req).await?;
    check(resp.error_code, resp.error_message.as_ref())
        .map_err(|e| anyhow!(e).context("DescribeAcls failed"))?;
    let mut out = Vec::new();
    for r in resp.resources {
        let pattern = ResourcePattern::new(
            ResourceType::from_i8(r.resource_type),
            r.resource_name.to_string(),
            PatternType::from_i8(r.pattern_type),
        );
        for a in r.acls {
            out.push(AclBinding {
                pattern: pattern.clone(),
                entry: AccessControlEntry {
                    principal: a.principal.to_string(),
                    host: a.host.to_string(),
                    operation: AclOperation::from_i8(a.operation),
                    permission: AclPermissionType::from_i8(a.permission_type),
                },
            });
        }
    }
    Ok(out)
}

/// Deletes the ACLs matching each filter; per filter, the bindings deleted or the error.
pub async fn delete_acls(
    client: &mut Client,
    filters: &[AclBindingFilter],
) -> Result<Vec<Result<Vec<AclBinding>, KafkaError>>> {
    let mut req = DeleteAclsRequest::default();
    req.filters = filters
        .iter()
        .map(|f| {
            let mut d = DeleteAclsFilter::default();
            d.resource_type_filter = f.resource_type.as_i8();
            d.resource_name_filter = opt(&f.name);
            d.pattern_type_filter = f.pattern_type.as_i8();
            d.principal_filter = opt(&f.principal);
            d.host_filter = opt(&f.host);
            d.operation = f.operation.as_i8();
            d.permission_type = f.permission.as_i8();
            d
        })
        .collect();
    let resp = client.send_to(Target::Any, &req).await?;
    if resp.filter_results.len() != filters.len() {
        bail!(
            "DeleteAcls answered {} results for {} filters",
            resp.filter_results.len(),
            filters.len()
        );
    }
    Ok(resp
        .filter_results
        .into_iter()
        .map(|r| {
            check(r.error_code, r.error_message.as_ref())?;
            r.matching_acls
                .into_iter()
                .map(|m| {
                    check(m.error_code, m.error_message.as_ref())?;
                    Ok(AclBinding::new(
                        ResourceType::from_i8(m.resource_type),
                        m.resource_name.to_string(),
                        PatternType::from_i8(m.pattern_type),
                        m.principal.to_string(),
                        m.host.to_string(),
                        AclOperation::from_i8(m.operation),
                        AclPermissionType::from_i8(m.permission_type),
                    ))
                })
                .collect()
        })
        .collect())
}

/// A user's SCRAM credentials as DescribeUserScramCredentials lists them: mechanism and
/// iterations (never the secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserScramCredentials {
    pub user: String,
    /// `(mechanism, iterations)`; a mechanism code this client does not know is left out.
    pub credentials: Result<Vec<(ScramMechanism, i32)>, KafkaError>,
}

/// The SCRAM credentials of `users`, or of every user with credentials when `None`.
pub async fn describe_user_scram_credentials(
    client: &mut Client,
    users: Option<&[String]>,
) -> Result<Vec<UserScramCredentials>> {
    let mut req = DescribeUserScramCredentialsRequest::default();
    req.users = users.map(|us| {
        us.iter()
            .map(|u| {
                let mut n = UserName::default();
                n.name = s(u);
                n
            })
            .collect()
    });
    let resp = client.send_to(Target::Any, &req).await?;
    check(resp.error_code, resp.error_message.as_ref())
        .map_err(|e| anyhow!(e).context("DescribeUserScramCredentials failed"))?;
    Ok(resp
        .results
        .into_iter()
        .map(|r| UserScramCredentials {
            user: r.user.to_string(),
            credentials: check(r.error_code, r.error_message.as_ref()).map(|()| {
                r.credential_infos
                    .iter()
                    .filter_map(|c| {
                        ScramMechanism::from_kafka_type(c.mechanism).map(|m| (m, c.iterations))
                    })
                    .collect()
            }),
        })
        .collect())
}

/// A credential to set: the client salts and hashes the password, so it never travels.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramUpsertion {
    pub user: String,
    pub mechanism: ScramMechanism,
    pub iterations: i32,
    pub salt: Vec<u8>,
    pub salted_password: Vec<u8>,
}

impl std::fmt::Debug for ScramUpsertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramUpsertion")
            .field("user", &self.user)
            .field("mechanism", &self.mechanism)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramUpsertion {
    /// A credential for `password` with a fresh random salt.
    pub fn from_password(
        user: &str,
        mechanism: ScramMechanism,
        iterations: i32,
        password: &str,
    ) -> ScramUpsertion {
        let salt = runnel_security::scram::random_salt();
        let salted_password =
            runnel_security::scram::salted_password(mechanism, password, &salt, iterations);
        ScramUpsertion {
            user: user.to_string(),
            mechanism,
            iterations,
            salt,
            salted_password,
        }
    }
}

/// Deletes and sets SCRAM credentials; one `(user, result)` per user named in the request.
pub async fn alter_user_scram_credentials(
    client: &mut Client,
    deletions: &[(String, ScramMechanism)],
    upsertions: &[ScramUpsertion],
) -> Result<Vec<(String, Result<(), KafkaError>)>> {
    let mut req = AlterUserScramCredentialsRequest::default();
    req.deletions = deletions
        .iter()
        .map(|(u, m)| {
            let mut d = ScramCredentialDeletion::default();
            d.name = s(u);
            d.mechanism = m.kafka_type();
            d
        })
        .collect();
    req.upsertions = upsertions
        .iter()
        .map(|u| {
            let mut c = ScramCredentialUpsertion::default();
            c.name = s(&u.user);
            c.mechanism = u.mechanism.kafka_type();
            c.iterations = u.iterations;
            c.salt = Bytes::from(u.salt.clone());
            c.salted_password = Bytes::from(u.salted_password.clone());
            c
        })
        .collect();
    let resp = client.send_to(Target::Controller, &req).await?;
    Ok(resp
        .results
        .into_iter()
        .map(|r| {
            (
                r.user.to_string(),
                check(r.error_code, r.error_message.as_ref()),
            )
        })
        .collect())
}

/// A client quota entity: `(entity type, name)` pairs, `None` naming the default entity
/// (`user`, `client-id`).
pub type QuotaEntity = Vec<(String, Option<String>)>;

/// How a DescribeClientQuotas filter component matches names of its entity type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaMatch {
    Exact(String),
    Default,
    Any,
}

/// Client quotas whose entity matches every `(entity type, match)` component; with `strict`,
/// only entities with no other component.
pub async fn describe_client_quotas(
    client: &mut Client,
    components: &[(String, QuotaMatch)],
    strict: bool,
) -> Result<Vec<(QuotaEntity, Vec<(String, f64)>)>> {
    use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
    use kafka_protocol::messages::DescribeClientQuotasRequest;
    let mut req = DescribeClientQuotasRequest::default();
    req.strict = strict;
    req.components = components
        .iter()
        .map(|(t, m)| {
            let mut c = ComponentData::default();
            c.entity_type = s(t);
            (c.match_type, c._match) = match m {
                QuotaMatch::Exact(n) => (0, Some(s(n))),
                QuotaMatch::Default => (1, None),
                QuotaMatch::Any => (2, None),
            };
            c
        })
        .collect();
    let resp = client.send_to(Target::Any, &req).await?;
    check(resp.error_code, resp.error_message.as_ref())
        .map_err(|e| anyhow!(e).context("DescribeClientQuotas failed"))?;
    Ok(resp
        .entries
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            (
                e.entity
                    .iter()
                    .map(|c| {
                        (
                            c.entity_type.to_string(),
                            c.entity_name.as_ref().map(|n| n.to_string()),
                        )
                    })
                    .collect(),
                e.values
                    .iter()
                    .map(|v| (v.key.to_string(), v.value))
                    .collect(),
            )
        })
        .collect())
}

/// Sets (`Some`) and removes (`None`) quota keys of `entity`; the entity's result.
pub async fn alter_client_quotas(
    client: &mut Client,
    entity: &QuotaEntity,
    ops: &[(String, Option<f64>)],
    validate_only: bool,
) -> Result<Result<(), KafkaError>> {
    use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
    use kafka_protocol::messages::AlterClientQuotasRequest;
    let mut entry = EntryData::default();
    entry.entity = entity
        .iter()
        .map(|(t, n)| {
            let mut e = EntityData::default();
            e.entity_type = s(t);
            e.entity_name = opt(n);
            e
        })
        .collect();
    entry.ops = ops
        .iter()
        .map(|(k, v)| {
            let mut op = OpData::default();
            op.key = s(k);
            op.value = v.unwrap_or(0.0);
            op.remove = v.is_none();
            op
        })
        .collect();
    let mut req = AlterClientQuotasRequest::default();
    req.entries = vec![entry];
    req.validate_only = validate_only;
    let resp = client.send_to(Target::Controller, &req).await?;
    let Some(r) = resp.entries.first() else {
        bail!("AlterClientQuotas answered no result");
    };
    Ok(check(r.error_code, r.error_message.as_ref()))
}
