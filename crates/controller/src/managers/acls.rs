//! ACLs: CreateAcls and DeleteAcls, as Kafka's `AclControlManager` decides them. DescribeAcls
//! needs no controller: brokers answer it from their image.

use std::collections::BTreeSet;

use runnel_security::acl::AclBinding;
use uuid::Uuid;

use super::{ControllerResult, Ctx};
use crate::api::{
    ControllerError, CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
};
use crate::image::MetadataImage;
use crate::records::{AclRecord, Record, RemoveAclRecord};

/// Creates each valid binding that does not exist yet. A binding equal to an existing ACL, or
/// to an earlier one of the same request, succeeds without a record (Kafka does the same).
pub fn create_acls(
    image: &MetadataImage,
    ctx: &mut Ctx,
    req: &CreateAclsRequest,
) -> ControllerResult<CreateAclsResponse> {
    let mut records = Vec::new();
    let mut creating: BTreeSet<&AclBinding> = BTreeSet::new();
    let mut ids: BTreeSet<Uuid> = BTreeSet::new();
    let mut results = Vec::with_capacity(req.creations.len());
    for binding in &req.creations {
        if let Err(message) = binding.validate() {
            tracing::debug!(acl = ?binding, %message, "ACL refused");
            results.push(Err(ControllerError::InvalidRequest(message)));
            continue;
        }
        if !image.contains_acl(binding) && creating.insert(binding) {
            let id = loop {
                let id = ctx.next_uuid();
                if image.acl(&id).is_none() && ids.insert(id) {
                    break id;
                }
            };
            tracing::info!(acl = ?binding, %id, "ACL created");
            records.push(Record::Acl(AclRecord {
                id,
                binding: binding.clone(),
            }));
        }
        results.push(Ok(()));
    }
    ControllerResult::new(records, CreateAclsResponse { results })
}

/// Deletes every ACL that matches a filter. Each filter reports all the ACLs it matches, even
/// ones an earlier filter of the request matched too; each ACL is removed once.
pub fn delete_acls(
    image: &MetadataImage,
    req: &DeleteAclsRequest,
) -> ControllerResult<DeleteAclsResponse> {
    let mut records = Vec::new();
    let mut removed: BTreeSet<Uuid> = BTreeSet::new();
    let mut results = Vec::with_capacity(req.filters.len());
    for filter in &req.filters {
        if let Err(message) = filter.validate() {
            tracing::debug!(filter = ?filter, %message, "ACL filter refused");
            results.push(Err(ControllerError::InvalidRequest(message)));
            continue;
        }
        let mut matched = Vec::new();
        for (id, binding) in image.acls_with_ids() {
            if !filter.matches(binding) {
                continue;
            }
            if removed.insert(id) {
                tracing::info!(acl = ?binding, %id, "ACL deleted");
                records.push(Record::RemoveAcl(RemoveAclRecord { id }));
            }
            matched.push(binding.clone());
        }
        results.push(Ok(matched));
    }
    ControllerResult::new(records, DeleteAclsResponse { results })
}

#[cfg(test)]
mod tests {
    use runnel_security::acl::{
        AccessControlEntry, AclBindingFilter, AclOperation, AclPermissionType, PatternType,
        ResourcePattern, ResourceType,
    };

    use super::*;
    use crate::managers::testkit::apply_all;

    fn binding(
        resource_type: ResourceType,
        name: &str,
        pattern_type: PatternType,
        principal: &str,
        operation: AclOperation,
        permission: AclPermissionType,
    ) -> AclBinding {
        AclBinding {
            pattern: ResourcePattern {
                resource_type,
                name: name.into(),
                pattern_type,
            },
            entry: AccessControlEntry {
                principal: principal.into(),
                host: "*".into(),
                operation,
                permission,
            },
        }
    }

    fn read_topic(name: &str, principal: &str) -> AclBinding {
        binding(
            ResourceType::Topic,
            name,
            PatternType::Literal,
            principal,
            AclOperation::Read,
            AclPermissionType::Allow,
        )
    }

    fn create(image: &MetadataImage, creations: Vec<AclBinding>) -> MetadataImage {
        let res = create_acls(image, &mut Ctx::new(7), &CreateAclsRequest { creations });
        assert!(res.response.results.iter().all(|r| r.is_ok()), "{res:?}");
        apply_all(image, &res.records)
    }

    #[test]
    fn creates_valid_bindings_and_refuses_invalid_ones_one_by_one() {
        let image = MetadataImage::new();
        let good = read_topic("orders", "User:alice");
        let any_type = binding(
            ResourceType::Any,
            "orders",
            PatternType::Literal,
            "User:alice",
            AclOperation::Read,
            AclPermissionType::Allow,
        );
        let match_pattern = binding(
            ResourceType::Topic,
            "orders",
            PatternType::Match,
            "User:alice",
            AclOperation::Read,
            AclPermissionType::Allow,
        );
        let any_op = binding(
            ResourceType::Topic,
            "orders",
            PatternType::Literal,
            "User:alice",
            AclOperation::Any,
            AclPermissionType::Allow,
        );
        let bad_principal = read_topic("orders", "alice");
        let res = create_acls(
            &image,
            &mut Ctx::new(1),
            &CreateAclsRequest {
                creations: vec![any_type, good.clone(), match_pattern, any_op, bad_principal],
            },
        );
        let oks: Vec<bool> = res.response.results.iter().map(|r| r.is_ok()).collect();
        assert_eq!(oks, [false, true, false, false, false]);
        for r in &res.response.results {
            if let Err(e) = r {
                assert!(matches!(e, ControllerError::InvalidRequest(_)), "{e:?}");
            }
        }
        assert_eq!(res.records.len(), 1);
        let next = apply_all(&image, &res.records);
        assert_eq!(next.acls().collect::<Vec<_>>(), [&good]);
        assert_eq!(next.acls_version(), 1);
    }

    #[test]
    fn duplicates_succeed_without_records() {
        let image = create(&MetadataImage::new(), vec![read_topic("a", "User:alice")]);
        let res = create_acls(
            &image,
            &mut Ctx::new(2),
            &CreateAclsRequest {
                creations: vec![
                    read_topic("a", "User:alice"),
                    read_topic("b", "User:alice"),
                    read_topic("b", "User:alice"),
                ],
            },
        );
        assert!(res.response.results.iter().all(|r| r.is_ok()));
        assert_eq!(res.records.len(), 1, "{:?}", res.records);
        let next = apply_all(&image, &res.records);
        assert_eq!(next.acl_count(), 2);
    }

    #[test]
    fn ids_are_fresh_even_when_the_randomness_repeats() {
        // The same seed draws the same ids: the second request must still not reuse them.
        let image = create(&MetadataImage::new(), vec![read_topic("a", "User:alice")]);
        let image = create(&image, vec![read_topic("b", "User:alice")]);
        assert_eq!(image.acl_count(), 2);
    }

    #[test]
    fn deletes_what_each_filter_matches_once() {
        let alice_a = read_topic("a", "User:alice");
        let bob_a = read_topic("a", "User:bob");
        let alice_prefix = binding(
            ResourceType::Topic,
            "a",
            PatternType::Prefixed,
            "User:alice",
            AclOperation::Write,
            AclPermissionType::Deny,
        );
        let group = binding(
            ResourceType::Group,
            "g",
            PatternType::Literal,
            "User:alice",
            AclOperation::Read,
            AclPermissionType::Allow,
        );
        let image = create(
            &MetadataImage::new(),
            vec![
                alice_a.clone(),
                bob_a.clone(),
                alice_prefix.clone(),
                group.clone(),
            ],
        );
        let version = image.acls_version();
        let alice = AclBindingFilter {
            principal: Some("User:alice".into()),
            ..AclBindingFilter::any()
        };
        let topic_a = AclBindingFilter {
            resource_type: ResourceType::Topic,
            name: Some("a".into()),
            pattern_type: PatternType::Literal,
            ..AclBindingFilter::any()
        };
        let nothing = AclBindingFilter {
            principal: Some("User:carol".into()),
            ..AclBindingFilter::any()
        };
        let res = delete_acls(
            &image,
            &DeleteAclsRequest {
                filters: vec![alice, topic_a, nothing],
            },
        );
        let sorted = |r: &Result<Vec<AclBinding>, ControllerError>| {
            let mut v = r.clone().unwrap();
            v.sort();
            v
        };
        let mut want = vec![alice_a.clone(), alice_prefix, group];
        want.sort();
        assert_eq!(sorted(&res.response.results[0]), want);
        let mut want = vec![alice_a, bob_a];
        want.sort();
        assert_eq!(sorted(&res.response.results[1]), want);
        assert_eq!(sorted(&res.response.results[2]), vec![]);
        // alice_a matched twice but is removed by one record.
        assert_eq!(res.records.len(), 4);
        let next = apply_all(&image, &res.records);
        assert_eq!(next.acl_count(), 0);
        assert_eq!(next.acls_version(), version + 4);
    }

    #[test]
    fn an_invalid_filter_is_refused_alone() {
        let image = create(&MetadataImage::new(), vec![read_topic("a", "User:alice")]);
        let unknown = AclBindingFilter {
            resource_type: ResourceType::Unknown,
            ..AclBindingFilter::any()
        };
        let res = delete_acls(
            &image,
            &DeleteAclsRequest {
                filters: vec![unknown, AclBindingFilter::any()],
            },
        );
        assert!(matches!(
            res.response.results[0],
            Err(ControllerError::InvalidRequest(_))
        ));
        assert_eq!(res.response.results[1].as_ref().unwrap().len(), 1);
        assert_eq!(apply_all(&image, &res.records).acl_count(), 0);
    }
}
