//! DescribeUserScramCredentials (API 50) and AlterUserScramCredentials (API 51), version 0
//! (KIP-554; `kafka-configs.sh --entity-type users --alter --add-config 'SCRAM-SHA-512=[...]'`).
//!
//! Credentials live in the metadata log. AlterUserScramCredentials is forwarded to the active
//! controller as one [`AdminRequest`] and answered, per user, once this broker has applied the
//! change, so the user can log in here right after; DescribeUserScramCredentials is answered
//! from the local image and never shows more than the mechanisms and iteration counts. As in
//! Kafka, altering needs ALTER on the cluster and describing DESCRIBE on the cluster
//! (CLUSTER_AUTHORIZATION_FAILED otherwise).

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse, ResponseKind,
};
use runnel_controller::api::{
    self, AdminRequest, AdminResponse, ScramCredentialDeletion, ScramCredentialUpsertion,
};
use runnel_controller::MetadataImage;
use runnel_security::acl::{AclOperation, ResourceType, CLUSTER_NAME};

use super::AdminServices;
use super::{admin_timeout, s, Reply};
use crate::context::RequestContext;
use crate::error::KafkaError;

/// (Kafka error code, message).
/// How long AlterUserScramCredentials waits for the controller, in milliseconds (the request
/// carries no timeout; this is Kafka's `request.timeout.ms` default).
const ALTER_TIMEOUT_MS: i32 = 30_000;

fn cluster_denied() -> KafkaError {
    KafkaError::new(
        ResponseError::ClusterAuthorizationFailed,
        "Cluster authorization failed.".to_string(),
    )
}

fn allowed(svc: &AdminServices, ctx: &RequestContext, op: AclOperation) -> bool {
    svc.authorize(ctx, op, ResourceType::Cluster, CLUSTER_NAME)
}

pub fn describe_user_scram_credentials(
    svc: &AdminServices,
    ctx: &RequestContext,
    req: DescribeUserScramCredentialsRequest,
    _version: i16,
) -> Reply {
    let mut resp = DescribeUserScramCredentialsResponse::default().with_error_message(None);
    if allowed(svc, ctx, AclOperation::Describe) {
        let users = req
            .users
            .map(|users| users.iter().map(|u| u.name.to_string()).collect());
        resp.results = describe(&svc.image().image, users);
    } else {
        // As Kafka: the top-level error, and each user asked for answered with it too.
        let e = cluster_denied();
        resp.error_code = e.code();
        resp.error_message = Some(s(&e.message));
        resp.results = req
            .users
            .iter()
            .flatten()
            .map(|u| {
                DescribeUserScramCredentialsResult::default()
                    .with_user(u.name.clone())
                    .with_error_code(e.code())
                    .with_error_message(Some(s(&e.message)))
            })
            .collect();
    }
    Reply::Now(ResponseKind::DescribeUserScramCredentials(resp))
}

pub fn alter_user_scram_credentials(
    svc: &AdminServices,
    ctx: &RequestContext,
    req: AlterUserScramCredentialsRequest,
    _version: i16,
) -> Reply {
    let request = api::AlterUserScramCredentialsRequest {
        deletions: req
            .deletions
            .iter()
            .map(|d| ScramCredentialDeletion {
                name: d.name.to_string(),
                mechanism: d.mechanism,
            })
            .collect(),
        upsertions: req
            .upsertions
            .iter()
            .map(|u| ScramCredentialUpsertion {
                name: u.name.to_string(),
                mechanism: u.mechanism,
                iterations: u.iterations,
                salt: u.salt.to_vec(),
                salted_password: u.salted_password.to_vec(),
            })
            .collect(),
    };
    if !allowed(svc, ctx, AclOperation::Alter) {
        let resp = every_user(&request, cluster_denied());
        return Reply::Now(ResponseKind::AlterUserScramCredentials(resp));
    }
    if request.deletions.is_empty() && request.upsertions.is_empty() {
        let resp = AlterUserScramCredentialsResponse::default();
        return Reply::Now(ResponseKind::AlterUserScramCredentials(resp));
    }
    let svc = svc.clone();
    Reply::Later(Box::pin(async move {
        let admin = AdminRequest::AlterUserScramCredentials(request.clone());
        let resp = match svc.admin(admin, admin_timeout(ALTER_TIMEOUT_MS)).await {
            Ok(AdminResponse::AlterUserScramCredentials(r)) => {
                AlterUserScramCredentialsResponse::default().with_results(
                    r.results
                        .into_iter()
                        .map(|(user, r)| result(&user, r.map_err(|e| KafkaError::from(&e))))
                        .collect(),
                )
            }
            Ok(other) => {
                tracing::error!(response = ?other, "controller answered AlterUserScramCredentials with another response");
                every_user(
                    &request,
                    KafkaError::new(
                        ResponseError::UnknownServerError,
                        "unexpected controller response".to_string(),
                    ),
                )
            }
            Err(e) => {
                tracing::warn!(error = %e, "AlterUserScramCredentials failed");
                every_user(&request, KafkaError::from(&e))
            }
        };
        ResponseKind::AlterUserScramCredentials(resp)
    }))
}

fn result(user: &str, r: Result<(), KafkaError>) -> AlterUserScramCredentialsResult {
    let out = AlterUserScramCredentialsResult::default()
        .with_user(s(user))
        .with_error_message(None);
    match r {
        Ok(()) => out,
        Err(e) => out
            .with_error_code(e.code())
            .with_error_message(Some(s(&e.message))),
    }
}

/// The same error for every user the request names, each once, in name order (Kafka's error
/// response for the whole request).
fn every_user(
    req: &api::AlterUserScramCredentialsRequest,
    e: KafkaError,
) -> AlterUserScramCredentialsResponse {
    let users: BTreeSet<&str> = req
        .deletions
        .iter()
        .map(|d| d.name.as_str())
        .chain(req.upsertions.iter().map(|u| u.name.as_str()))
        .collect();
    AlterUserScramCredentialsResponse::default().with_results(
        users
            .into_iter()
            .map(|u| result(u, Err(e.clone())))
            .collect(),
    )
}

/// Kafka's `ScramImage.describe`: every user with credentials when `users` is `None` or
/// empty; otherwise each named user once, in request order, with RESOURCE_NOT_FOUND if it has
/// no credential and DUPLICATE_RESOURCE if it is named more than once.
fn describe(
    image: &MetadataImage,
    users: Option<Vec<String>>,
) -> Vec<DescribeUserScramCredentialsResult> {
    let mut infos: BTreeMap<&str, Vec<CredentialInfo>> = BTreeMap::new();
    for (user, mechanism, iterations) in image.scram_users() {
        infos.entry(user).or_default().push(
            CredentialInfo::default()
                .with_mechanism(mechanism.kafka_type())
                .with_iterations(iterations),
        );
    }
    let named = users.filter(|u| !u.is_empty());
    let Some(named) = named else {
        return infos
            .into_iter()
            .map(|(user, credential_infos)| {
                DescribeUserScramCredentialsResult::default()
                    .with_user(s(user))
                    .with_error_message(None)
                    .with_credential_infos(credential_infos)
            })
            .collect();
    };
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for u in &named {
        *count.entry(u.as_str()).or_default() += 1;
    }
    let mut seen = BTreeSet::new();
    named
        .iter()
        .filter(|u| seen.insert(u.as_str()))
        .map(|user| {
            let out = DescribeUserScramCredentialsResult::default()
                .with_user(s(user))
                .with_error_message(None);
            if count[user.as_str()] > 1 {
                return out
                    .with_error_code(ResponseError::DuplicateResource.code())
                    .with_error_message(Some(s(&format!(
                        "Cannot describe SCRAM credentials for the same user twice in a single request: {user}"
                    ))));
            }
            match infos.remove(user.as_str()) {
                Some(credential_infos) => out.with_credential_infos(credential_infos),
                None => out
                    .with_error_code(ResponseError::ResourceNotFound.code())
                    .with_error_message(Some(s(&format!(
                        "Attempt to describe a user credential that does not exist: {user}"
                    )))),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use runnel_controller::records::{Record, UserScramCredentialRecord};
    use runnel_security::scram::{ScramCredential, ScramMechanism};

    use super::*;

    fn image() -> MetadataImage {
        let mut image = MetadataImage::new();
        for (name, mechanism, iterations) in [
            ("bob", ScramMechanism::Sha512, 8192),
            ("alice", ScramMechanism::Sha512, 4096),
            ("alice", ScramMechanism::Sha256, 16384),
        ] {
            image
                .apply(&Record::UserScramCredential(UserScramCredentialRecord {
                    name: name.into(),
                    mechanism,
                    credential: ScramCredential::from_password(
                        mechanism, "pw", b"salt", iterations,
                    ),
                }))
                .unwrap();
        }
        image
    }

    /// (user, error code, [(mechanism, iterations)]).
    type Shape = (String, i16, Vec<(i8, i32)>);

    fn shape(results: &[DescribeUserScramCredentialsResult]) -> Vec<Shape> {
        results
            .iter()
            .map(|r| {
                (
                    r.user.to_string(),
                    r.error_code,
                    r.credential_infos
                        .iter()
                        .map(|c| (c.mechanism, c.iterations))
                        .collect(),
                )
            })
            .collect()
    }

    #[test]
    fn describes_every_user_or_the_named_ones() {
        let image = image();
        let all = vec![
            ("alice".to_string(), 0, vec![(1, 16384), (2, 4096)]),
            ("bob".to_string(), 0, vec![(2, 8192)]),
        ];
        assert_eq!(shape(&describe(&image, None)), all);
        assert_eq!(shape(&describe(&image, Some(vec![]))), all);

        let named = describe(
            &image,
            Some(vec![
                "bob".into(),
                "carol".into(),
                "alice".into(),
                "bob".into(),
            ]),
        );
        assert_eq!(
            shape(&named),
            [
                (
                    "bob".to_string(),
                    ResponseError::DuplicateResource.code(),
                    vec![]
                ),
                (
                    "carol".to_string(),
                    ResponseError::ResourceNotFound.code(),
                    vec![]
                ),
                ("alice".to_string(), 0, vec![(1, 16384), (2, 4096)]),
            ]
        );
        assert_eq!(
            named[1].error_message.as_deref(),
            Some("Attempt to describe a user credential that does not exist: carol")
        );
        assert_eq!(named[2].error_message, None);
    }

    #[test]
    fn successes_have_no_error_message() {
        assert_eq!(result("alice", Ok(())).error_message, None);
        let all = describe(&image(), None);
        assert!(all.iter().all(|r| r.error_message.is_none()));
    }

    #[test]
    fn a_whole_request_error_names_each_user_once_in_order() {
        let req = api::AlterUserScramCredentialsRequest {
            deletions: vec![ScramCredentialDeletion {
                name: "zed".into(),
                mechanism: 1,
            }],
            upsertions: ["bob", "zed", "amy"]
                .into_iter()
                .map(|name| ScramCredentialUpsertion {
                    name: name.into(),
                    mechanism: 2,
                    iterations: 4096,
                    salt: vec![1],
                    salted_password: vec![2],
                })
                .collect(),
        };
        let resp = every_user(&req, cluster_denied());
        let users: Vec<&str> = resp.results.iter().map(|r| r.user.as_str()).collect();
        assert_eq!(users, ["amy", "bob", "zed"]);
        assert!(resp
            .results
            .iter()
            .all(|r| r.error_code == ResponseError::ClusterAuthorizationFailed.code()));
    }
}
