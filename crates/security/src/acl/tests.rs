use super::*;
use proptest::prelude::*;

use AclOperation as Op;
use AclPermissionType as Perm;
use PatternType as Pat;
use ResourceType as Rt;

fn b(rt: Rt, name: &str, pat: Pat, principal: &str, host: &str, op: Op, perm: Perm) -> AclBinding {
    AclBinding::new(rt, name, pat, principal, host, op, perm)
}

fn allow(rt: Rt, name: &str, pat: Pat, principal: &str, op: Op) -> AclBinding {
    b(rt, name, pat, principal, "*", op, Perm::Allow)
}

fn deny(rt: Rt, name: &str, pat: Pat, principal: &str, op: Op) -> AclBinding {
    b(rt, name, pat, principal, "*", op, Perm::Deny)
}

fn cfg() -> AuthorizerConfig {
    AuthorizerConfig::default()
}

fn topic_ok(idx: &AclIndex, principal: &str, op: Op, name: &str) -> bool {
    idx.authorize(&cfg(), principal, "10.0.0.1", op, Rt::Topic, name)
        .is_allowed()
}

#[test]
fn enum_codes_round_trip() {
    for &v in Rt::ALL_VALUES {
        assert_eq!(Rt::from_i8(v.as_i8()), v);
        assert_eq!(v.name().parse::<Rt>().unwrap(), v);
        assert_eq!(v.enum_name().parse::<Rt>().unwrap(), v);
    }
    for &v in Op::ALL_VALUES {
        assert_eq!(Op::from_i8(v.as_i8()), v);
        assert_eq!(v.to_string().parse::<Op>().unwrap(), v);
        assert_eq!(v.enum_name().parse::<Op>().unwrap(), v);
    }
    for &v in Pat::ALL_VALUES {
        assert_eq!(Pat::from_i8(v.as_i8()), v);
    }
    for &v in Perm::ALL_VALUES {
        assert_eq!(Perm::from_i8(v.as_i8()), v);
    }
    assert_eq!(Rt::Topic.as_i8(), 2);
    assert_eq!(Rt::User.as_i8(), 7);
    assert_eq!(Op::IdempotentWrite.as_i8(), 12);
    assert_eq!(Op::DescribeTokens.as_i8(), 14);
    assert_eq!(Pat::Prefixed.as_i8(), 4);
    assert_eq!(Perm::Allow.as_i8(), 3);
    assert_eq!(Rt::from_i8(42), Rt::Unknown);
    assert_eq!(Op::from_i8(-1), Op::Unknown);
    assert_eq!(Pat::from_i8(5), Pat::Unknown);
    assert_eq!(Perm::from_i8(4), Perm::Unknown);
}

#[test]
fn enum_names_like_kafka() {
    assert_eq!("Topic".parse::<Rt>().unwrap(), Rt::Topic);
    assert_eq!("TOPIC".parse::<Rt>().unwrap(), Rt::Topic);
    assert_eq!("topic".parse::<Rt>().unwrap(), Rt::Topic);
    assert_eq!(
        "TransactionalId".parse::<Rt>().unwrap(),
        Rt::TransactionalId
    );
    assert_eq!(
        "TRANSACTIONAL_ID".parse::<Rt>().unwrap(),
        Rt::TransactionalId
    );
    assert_eq!(
        "IdempotentWrite".parse::<Op>().unwrap(),
        Op::IdempotentWrite
    );
    assert_eq!(
        "IDEMPOTENTWRITE".parse::<Op>().unwrap(),
        Op::IdempotentWrite
    );
    assert_eq!(
        "describe_configs".parse::<Op>().unwrap(),
        Op::DescribeConfigs
    );
    assert_eq!("Prefixed".parse::<Pat>().unwrap(), Pat::Prefixed);
    assert_eq!("DENY".parse::<Perm>().unwrap(), Perm::Deny);
    assert_eq!(Op::DescribeConfigs.to_string(), "DescribeConfigs");
    assert_eq!(Rt::DelegationToken.to_string(), "DelegationToken");
    assert_eq!(Op::ClusterAction.enum_name(), "CLUSTER_ACTION");
    let err = "Reed".parse::<Op>().unwrap_err();
    assert!(
        err.contains("Reed") && err.contains("IdempotentWrite"),
        "{err}"
    );
    assert!(!err.contains("Unknown"), "{err}");
}

#[test]
fn serde_round_trip() {
    let binding = allow(Rt::Topic, "orders", Pat::Prefixed, "User:alice", Op::Read);
    let json = serde_json::to_string(&binding).unwrap();
    assert_eq!(serde_json::from_str::<AclBinding>(&json).unwrap(), binding);
}

#[test]
fn display_like_kafka() {
    let binding = allow(Rt::Topic, "orders", Pat::Literal, "User:alice", Op::Read);
    assert_eq!(
        binding.to_string(),
        "(pattern=ResourcePattern(resourceType=TOPIC, name=orders, patternType=LITERAL), \
         entry=(principal=User:alice, host=*, operation=READ, permissionType=ALLOW))"
    );
}

#[test]
fn validate_binding() {
    let ok = allow(Rt::Topic, "t", Pat::Literal, "User:alice", Op::Read);
    assert_eq!(ok.validate(), Ok(()));
    assert_eq!(
        allow(Rt::Cluster, CLUSTER_NAME, Pat::Literal, "User:a", Op::Alter).validate(),
        Ok(())
    );
    assert_eq!(
        allow(Rt::Topic, "t", Pat::Prefixed, "Group:g", Op::All).validate(),
        Ok(())
    );

    let mut x = ok.clone();
    x.pattern.resource_type = Rt::Any;
    assert_eq!(x.validate().unwrap_err(), "Invalid resourceType ANY");
    x.pattern.resource_type = Rt::Unknown;
    assert_eq!(x.validate().unwrap_err(), "Invalid resourceType UNKNOWN");

    let mut x = ok.clone();
    x.pattern.pattern_type = Pat::Match;
    assert_eq!(x.validate().unwrap_err(), "Invalid patternType MATCH");
    x.pattern.pattern_type = Pat::Any;
    assert_eq!(x.validate().unwrap_err(), "Invalid patternType ANY");

    let mut x = ok.clone();
    x.entry.operation = Op::Any;
    assert_eq!(x.validate().unwrap_err(), "Invalid operation ANY");
    x.entry.operation = Op::Unknown;
    assert_eq!(x.validate().unwrap_err(), "Invalid operation UNKNOWN");

    let mut x = ok.clone();
    x.entry.permission = Perm::Any;
    assert_eq!(x.validate().unwrap_err(), "Invalid permissionType ANY");

    let mut x = ok.clone();
    x.pattern.name.clear();
    assert_eq!(
        x.validate().unwrap_err(),
        "Resource name should not be empty"
    );

    let x = allow(Rt::Cluster, "my-cluster", Pat::Literal, "User:a", Op::Alter);
    assert_eq!(
        x.validate().unwrap_err(),
        "The only valid name for the CLUSTER resource is kafka-cluster"
    );

    let mut x = ok.clone();
    x.entry.principal = "alice".into();
    assert_eq!(
        x.validate().unwrap_err(),
        "Could not parse principal from `alice` (no colon is present separating the principal type from the principal name)"
    );
}

#[test]
fn filter_validate() {
    assert_eq!(AclBindingFilter::any().validate(), Ok(()));
    let mut f = AclBindingFilter::any();
    f.operation = Op::Unknown;
    assert!(f.validate().unwrap_err().contains("UNKNOWN operation"));
    let mut f = AclBindingFilter::any();
    f.resource_type = Rt::Unknown;
    assert!(f.validate().is_err());
    let mut f = AclBindingFilter::any();
    f.pattern_type = Pat::Unknown;
    assert!(f.validate().is_err());
    let mut f = AclBindingFilter::any();
    f.permission = Perm::Unknown;
    assert!(f.validate().is_err());
}

#[test]
fn filter_matches() {
    let lit = allow(Rt::Topic, "foo", Pat::Literal, "User:alice", Op::Read);
    let wild = allow(Rt::Topic, "*", Pat::Literal, "User:alice", Op::Read);
    let pre = deny(Rt::Topic, "fo", Pat::Prefixed, "User:bob", Op::Write);
    let grp = allow(Rt::Group, "foo", Pat::Literal, "User:alice", Op::Read);
    let all = [&lit, &wild, &pre, &grp];
    let hits = |f: &AclBindingFilter| all.iter().map(|b| f.matches(b)).collect::<Vec<_>>();

    assert_eq!(hits(&AclBindingFilter::any()), [true, true, true, true]);
    for b in all {
        assert!(AclBindingFilter::exact(b).matches(b));
    }

    let mut f = AclBindingFilter::any();
    f.resource_type = Rt::Topic;
    assert_eq!(hits(&f), [true, true, true, false]);

    // Literal: only equal names of literal patterns.
    f.pattern_type = Pat::Literal;
    f.name = Some("foo".into());
    assert_eq!(hits(&f), [true, false, false, false]);

    // Any pattern type: equal names of any pattern type.
    f.pattern_type = Pat::Any;
    assert_eq!(hits(&f), [true, false, false, false]);
    f.name = Some("fo".into());
    assert_eq!(hits(&f), [false, false, true, false]);

    // Match: every pattern that applies to the resource "foo".
    f.pattern_type = Pat::Match;
    f.name = Some("foo".into());
    assert_eq!(hits(&f), [true, true, true, false]);
    f.name = Some("bar".into());
    assert_eq!(hits(&f), [false, true, false, false]);
    f.name = None;
    assert_eq!(hits(&f), [true, true, true, false]);

    // Prefixed filter: only prefixed patterns with the exact name.
    f.pattern_type = Pat::Prefixed;
    f.name = Some("foo".into());
    assert_eq!(hits(&f), [false, false, false, false]);
    f.name = Some("fo".into());
    assert_eq!(hits(&f), [false, false, true, false]);

    let mut f = AclBindingFilter::any();
    f.principal = Some("User:bob".into());
    assert_eq!(hits(&f), [false, false, true, false]);
    let mut f = AclBindingFilter::any();
    f.host = Some("10.0.0.1".into());
    assert_eq!(hits(&f), [false, false, false, false]);
    f.host = Some("*".into());
    assert_eq!(hits(&f), [true, true, true, true]);
    let mut f = AclBindingFilter::any();
    f.operation = Op::Write;
    assert_eq!(hits(&f), [false, false, true, false]);
    let mut f = AclBindingFilter::any();
    f.permission = Perm::Allow;
    assert_eq!(hits(&f), [true, true, false, true]);
}

#[test]
fn super_users_allowed_everything() {
    let idx = AclIndex::new([deny(Rt::Topic, "*", Pat::Literal, "User:*", Op::All)]);
    let c = AuthorizerConfig {
        super_users: vec!["User:admin".into()],
        ..cfg()
    };
    assert!(idx
        .authorize(&c, "User:admin", "1.2.3.4", Op::Write, Rt::Topic, "t")
        .is_allowed());
    assert!(!idx
        .authorize(&c, "User:alice", "1.2.3.4", Op::Write, Rt::Topic, "t")
        .is_allowed());
    assert!(idx.authorize_any(&c, "User:admin", "1.2.3.4", Op::Write, Rt::Topic));
    assert_eq!(
        AuthorizerConfig::parse_super_users(" User:admin;User:ops ;").unwrap(),
        vec!["User:admin".to_string(), "User:ops".to_string()]
    );
    assert!(AuthorizerConfig::parse_super_users("admin").is_err());
}

#[test]
fn deny_beats_allow() {
    let idx = AclIndex::new([
        allow(Rt::Topic, "t", Pat::Literal, "User:alice", Op::Read),
        deny(Rt::Topic, "t", Pat::Literal, "User:alice", Op::Read),
    ]);
    assert_eq!(
        idx.authorize(&cfg(), "User:alice", "1.1.1.1", Op::Read, Rt::Topic, "t"),
        Decision::Deny("matching DENY ACL")
    );
    // A wildcard-principal deny on a prefix beats a literal allow for the user.
    let idx = AclIndex::new([
        allow(Rt::Topic, "orders", Pat::Literal, "User:alice", Op::Write),
        deny(Rt::Topic, "ord", Pat::Prefixed, "User:*", Op::Write),
    ]);
    assert!(!topic_ok(&idx, "User:alice", Op::Write, "orders"));
}

#[test]
fn all_matches_every_operation() {
    let idx = AclIndex::new([allow(Rt::Topic, "t", Pat::Literal, "User:alice", Op::All)]);
    for op in [
        Op::Read,
        Op::Write,
        Op::Create,
        Op::Delete,
        Op::Alter,
        Op::Describe,
        Op::AlterConfigs,
    ] {
        assert!(topic_ok(&idx, "User:alice", op, "t"), "{op}");
    }
    let idx = AclIndex::new([
        allow(Rt::Topic, "t", Pat::Literal, "User:alice", Op::Read),
        deny(Rt::Topic, "t", Pat::Literal, "User:alice", Op::All),
    ]);
    assert!(!topic_ok(&idx, "User:alice", Op::Read, "t"));
    assert!(!topic_ok(&idx, "User:alice", Op::Describe, "t"));
}

#[test]
fn implied_describe() {
    for op in [Op::Read, Op::Write, Op::Delete, Op::Alter, Op::Describe] {
        let idx = AclIndex::new([allow(Rt::Topic, "t", Pat::Literal, "User:alice", op)]);
        assert!(topic_ok(&idx, "User:alice", Op::Describe, "t"), "{op}");
        assert!(
            !topic_ok(&idx, "User:alice", Op::DescribeConfigs, "t"),
            "{op}"
        );
    }
    for op in [
        Op::Create,
        Op::DescribeConfigs,
        Op::AlterConfigs,
        Op::ClusterAction,
    ] {
        let idx = AclIndex::new([allow(Rt::Topic, "t", Pat::Literal, "User:alice", op)]);
        assert!(!topic_ok(&idx, "User:alice", Op::Describe, "t"), "{op}");
    }
    // Read does not imply Write.
    let idx = AclIndex::new([allow(Rt::Topic, "t", Pat::Literal, "User:alice", Op::Read)]);
    assert!(!topic_ok(&idx, "User:alice", Op::Write, "t"));
    // A DENY for Read does not deny Describe.
    let idx = AclIndex::new([
        allow(Rt::Topic, "t", Pat::Literal, "User:alice", Op::Describe),
        deny(Rt::Topic, "t", Pat::Literal, "User:alice", Op::Read),
    ]);
    assert!(topic_ok(&idx, "User:alice", Op::Describe, "t"));
    assert!(!topic_ok(&idx, "User:alice", Op::Read, "t"));
}

#[test]
fn implied_describe_configs() {
    let idx = AclIndex::new([allow(
        Rt::Topic,
        "t",
        Pat::Literal,
        "User:alice",
        Op::AlterConfigs,
    )]);
    assert!(topic_ok(&idx, "User:alice", Op::DescribeConfigs, "t"));
    assert!(topic_ok(&idx, "User:alice", Op::AlterConfigs, "t"));
    let idx = AclIndex::new([allow(
        Rt::Topic,
        "t",
        Pat::Literal,
        "User:alice",
        Op::DescribeConfigs,
    )]);
    assert!(!topic_ok(&idx, "User:alice", Op::AlterConfigs, "t"));
}

#[test]
fn wildcard_principal() {
    let idx = AclIndex::new([allow(Rt::Topic, "t", Pat::Literal, "User:*", Op::Read)]);
    assert!(topic_ok(&idx, "User:alice", Op::Read, "t"));
    assert!(topic_ok(&idx, "User:ANONYMOUS", Op::Read, "t"));
    assert!(!topic_ok(&idx, "User:alice", Op::Write, "t"));
    // Only the exact principal or User:* match.
    let idx = AclIndex::new([allow(Rt::Topic, "t", Pat::Literal, "User:alice", Op::Read)]);
    assert!(!topic_ok(&idx, "User:bob", Op::Read, "t"));
    assert!(!topic_ok(&idx, "Group:alice", Op::Read, "t"));
    assert!(!topic_ok(&idx, "User:Alice", Op::Read, "t"));
}

#[test]
fn host_matching() {
    let idx = AclIndex::new([
        b(
            Rt::Topic,
            "t",
            Pat::Literal,
            "User:alice",
            "192.168.1.5",
            Op::Read,
            Perm::Allow,
        ),
        b(
            Rt::Topic,
            "t",
            Pat::Literal,
            "User:alice",
            "::1",
            Op::Write,
            Perm::Allow,
        ),
        b(
            Rt::Topic,
            "t",
            Pat::Literal,
            "User:alice",
            "10.0.0.9",
            Op::Read,
            Perm::Deny,
        ),
    ]);
    let c = cfg();
    let ok = |host: &str, op| {
        idx.authorize(&c, "User:alice", host, op, Rt::Topic, "t")
            .is_allowed()
    };
    assert!(ok("192.168.1.5", Op::Read));
    assert!(!ok("192.168.1.6", Op::Read));
    assert!(!ok("10.0.0.9", Op::Read));
    assert!(ok("::1", Op::Write));
    assert!(ok("0:0:0:0:0:0:0:1", Op::Write));
    assert!(!ok("127.0.0.1", Op::Write));
}

#[test]
fn literal_prefixed_and_wildcard_resources() {
    let idx = AclIndex::new([
        allow(Rt::Topic, "orders", Pat::Literal, "User:alice", Op::Read),
        allow(Rt::Topic, "pay", Pat::Prefixed, "User:alice", Op::Read),
        allow(Rt::Topic, "*", Pat::Literal, "User:bob", Op::Read),
        allow(Rt::Topic, "*", Pat::Prefixed, "User:carol", Op::Read),
        allow(Rt::Group, "g", Pat::Literal, "User:alice", Op::Read),
    ]);
    assert!(topic_ok(&idx, "User:alice", Op::Read, "orders"));
    assert!(!topic_ok(&idx, "User:alice", Op::Read, "orders2"));
    assert!(!topic_ok(&idx, "User:alice", Op::Read, "order"));
    assert!(topic_ok(&idx, "User:alice", Op::Read, "pay"));
    assert!(topic_ok(&idx, "User:alice", Op::Read, "payments"));
    assert!(!topic_ok(&idx, "User:alice", Op::Read, "pa"));
    assert!(!topic_ok(&idx, "User:alice", Op::Read, "g"));
    assert!(topic_ok(&idx, "User:bob", Op::Read, "anything"));
    assert!(topic_ok(&idx, "User:bob", Op::Read, "*"));
    // A prefixed "*" is a prefix like any other, not a wildcard.
    assert!(!topic_ok(&idx, "User:carol", Op::Read, "anything"));
    assert!(topic_ok(&idx, "User:carol", Op::Read, "*x"));
    // Resource types are separate.
    assert!(!idx
        .authorize(&cfg(), "User:bob", "h", Op::Read, Rt::Group, "x")
        .is_allowed());
}

#[test]
fn prefixes_respect_utf8() {
    let idx = AclIndex::new([
        allow(Rt::Topic, "é", Pat::Prefixed, "User:alice", Op::Read),
        allow(Rt::Topic, "x", Pat::Prefixed, "User:alice", Op::Write),
    ]);
    assert!(topic_ok(&idx, "User:alice", Op::Read, "été"));
    assert!(!topic_ok(&idx, "User:alice", Op::Read, "e"));
    assert!(!topic_ok(&idx, "User:alice", Op::Write, "éx"));
    assert!(!topic_ok(&idx, "User:alice", Op::Read, ""));
}

#[test]
fn allow_everyone_if_no_acl_found() {
    let c = AuthorizerConfig {
        allow_everyone_if_no_acl_found: true,
        ..cfg()
    };
    let idx = AclIndex::new([
        allow(Rt::Topic, "t", Pat::Literal, "User:bob", Op::Read),
        allow(Rt::Topic, "p-", Pat::Prefixed, "User:bob", Op::Read),
        allow(Rt::Group, "*", Pat::Literal, "User:bob", Op::Read),
    ]);
    let ok = |rt, name: &str| {
        idx.authorize(&c, "User:alice", "h", Op::Read, rt, name)
            .is_allowed()
    };
    // No ACL of anyone on the resource: allowed.
    assert!(ok(Rt::Topic, "other"));
    assert!(ok(Rt::TransactionalId, "t"));
    // Some ACL (of another principal) on the resource: the ACLs decide.
    assert!(!ok(Rt::Topic, "t"));
    assert!(!ok(Rt::Topic, "p-1"));
    assert!(!ok(Rt::Group, "any"));
    // Without the setting, no ACL means deny.
    assert_eq!(
        idx.authorize(&cfg(), "User:alice", "h", Op::Read, Rt::Topic, "other"),
        Decision::Deny("no ACL on the resource")
    );
    assert_eq!(
        idx.authorize(&cfg(), "User:alice", "h", Op::Read, Rt::Topic, "t"),
        Decision::Deny("no matching ALLOW ACL")
    );
    // An ACL of the same principal for another operation also counts as an ACL on the resource.
    let idx = AclIndex::new([allow(Rt::Topic, "t", Pat::Literal, "User:alice", Op::Write)]);
    assert!(!idx
        .authorize(&c, "User:alice", "h", Op::Read, Rt::Topic, "t")
        .is_allowed());
    assert!(AclIndex::new([])
        .authorize(&c, "User:x", "h", Op::Alter, Rt::Cluster, CLUSTER_NAME)
        .is_allowed());
}

#[test]
fn len_counts_distinct_bindings() {
    let a = allow(Rt::Topic, "t", Pat::Literal, "User:alice", Op::Read);
    let idx = AclIndex::new([
        a.clone(),
        a.clone(),
        deny(Rt::Topic, "t", Pat::Literal, "User:alice", Op::Read),
    ]);
    assert_eq!(idx.len(), 2);
    assert!(!idx.is_empty());
    assert!(AclIndex::new([]).is_empty());
}

#[test]
fn authorize_any_cases() {
    let c = cfg();
    let any = |idx: &AclIndex, op| idx.authorize_any(&c, "User:alice", "10.0.0.1", op, Rt::Topic);

    assert!(!any(&AclIndex::new([]), Op::Write));
    let everyone = AuthorizerConfig {
        allow_everyone_if_no_acl_found: true,
        ..cfg()
    };
    assert!(AclIndex::new([]).authorize_any(&everyone, "User:alice", "h", Op::Write, Rt::Topic));

    let idx = AclIndex::new([allow(Rt::Topic, "t", Pat::Literal, "User:alice", Op::Write)]);
    assert!(any(&idx, Op::Write));
    assert!(!any(&idx, Op::Read));
    // Implied operations do not count.
    assert!(!any(&idx, Op::Describe));

    // A literal deny on the same name cancels a literal allow.
    let idx = AclIndex::new([
        allow(Rt::Topic, "t", Pat::Literal, "User:alice", Op::Write),
        deny(Rt::Topic, "t", Pat::Literal, "User:alice", Op::Write),
    ]);
    assert!(!any(&idx, Op::Write));

    // A prefixed deny cancels allows under it, but not other allows.
    let idx = AclIndex::new([
        allow(Rt::Topic, "abc", Pat::Prefixed, "User:alice", Op::Write),
        deny(Rt::Topic, "ab", Pat::Prefixed, "User:*", Op::Write),
    ]);
    assert!(!any(&idx, Op::Write));
    let idx = AclIndex::new([
        allow(Rt::Topic, "abc", Pat::Prefixed, "User:alice", Op::Write),
        allow(Rt::Topic, "x", Pat::Literal, "User:alice", Op::Write),
        deny(Rt::Topic, "ab", Pat::Prefixed, "User:*", Op::Write),
    ]);
    assert!(any(&idx, Op::Write));
    // A literal deny does not cancel a prefixed allow.
    let idx = AclIndex::new([
        allow(Rt::Topic, "abc", Pat::Prefixed, "User:alice", Op::Write),
        deny(Rt::Topic, "abc", Pat::Literal, "User:alice", Op::Write),
    ]);
    assert!(any(&idx, Op::Write));

    // Wildcards: literal "*" deny denies, literal "*" allow allows.
    let idx = AclIndex::new([
        allow(Rt::Topic, "t", Pat::Literal, "User:alice", Op::Write),
        deny(Rt::Topic, "*", Pat::Literal, "User:alice", Op::Write),
    ]);
    assert!(!any(&idx, Op::Write));
    let idx = AclIndex::new([
        deny(Rt::Topic, "t", Pat::Literal, "User:alice", Op::Write),
        allow(Rt::Topic, "*", Pat::Literal, "User:*", Op::All),
    ]);
    assert!(any(&idx, Op::Write));
    // A wildcard deny wins over a wildcard allow of the principal itself, in any order.
    for bindings in [
        [
            deny(Rt::Topic, "*", Pat::Literal, "User:*", Op::All),
            allow(Rt::Topic, "*", Pat::Literal, "User:alice", Op::Write),
        ],
        [
            allow(Rt::Topic, "*", Pat::Literal, "User:alice", Op::Write),
            deny(Rt::Topic, "*", Pat::Literal, "User:*", Op::All),
        ],
    ] {
        assert!(!any(&AclIndex::new(bindings), Op::Write));
    }

    // Other hosts and principals do not count.
    let idx = AclIndex::new([
        b(
            Rt::Topic,
            "t",
            Pat::Literal,
            "User:alice",
            "10.9.9.9",
            Op::Write,
            Perm::Allow,
        ),
        allow(Rt::Topic, "t", Pat::Literal, "User:bob", Op::Write),
    ]);
    assert!(!any(&idx, Op::Write));
}

// ---- The index against a naive scan of every binding ----

fn naive_applies(p: &ResourcePattern, rt: Rt, name: &str) -> bool {
    p.resource_type == rt
        && match p.pattern_type {
            Pat::Literal => p.name == name || p.name == WILDCARD_RESOURCE,
            Pat::Prefixed => name.starts_with(p.name.as_str()),
            _ => false,
        }
}

fn naive_authorize(
    bs: &[AclBinding],
    c: &AuthorizerConfig,
    principal: &str,
    host: &str,
    op: Op,
    rt: Rt,
    name: &str,
) -> bool {
    if c.super_users.iter().any(|s| s == principal) {
        return true;
    }
    let on_resource: Vec<_> = bs
        .iter()
        .filter(|b| naive_applies(&b.pattern, rt, name))
        .collect();
    if on_resource.is_empty() {
        return c.allow_everyone_if_no_acl_found;
    }
    let mut allowed = false;
    for b in on_resource {
        let e = &b.entry;
        if e.principal != principal && e.principal != WILDCARD_PRINCIPAL {
            continue;
        }
        if e.host != "*" && e.host != host {
            continue;
        }
        let op_ok = e.operation == Op::All
            || e.operation == op
            || (e.permission == Perm::Allow
                && ((op == Op::Describe
                    && matches!(e.operation, Op::Read | Op::Write | Op::Delete | Op::Alter))
                    || (op == Op::DescribeConfigs && e.operation == Op::AlterConfigs)));
        if !op_ok {
            continue;
        }
        match e.permission {
            Perm::Deny => return false,
            Perm::Allow => allowed = true,
            _ => {}
        }
    }
    allowed
}

/// Kafka's default `authorizeByResourceType`, scanning every binding.
fn naive_authorize_any(
    bs: &[AclBinding],
    c: &AuthorizerConfig,
    principal: &str,
    host: &str,
    op: Op,
    rt: Rt,
) -> bool {
    if naive_authorize(bs, c, principal, host, op, rt, "hardcode") {
        return true;
    }
    let mut deny_lit = HashSet::new();
    let mut deny_pre = HashSet::new();
    let mut allow_lit = HashSet::new();
    let mut allow_pre = HashSet::new();
    let (mut deny_all, mut allow_all) = (false, false);
    for b in bs.iter().filter(|b| b.pattern.resource_type == rt) {
        let e = &b.entry;
        if e.host != host && e.host != "*" {
            continue;
        }
        if e.principal != principal && e.principal != WILDCARD_PRINCIPAL {
            continue;
        }
        if e.operation != op && e.operation != Op::All {
            continue;
        }
        let n = b.pattern.name.clone();
        match (e.permission, b.pattern.pattern_type) {
            (Perm::Deny, Pat::Literal) if n == "*" => deny_all = true,
            (Perm::Deny, Pat::Literal) => {
                deny_lit.insert(n);
            }
            (Perm::Deny, Pat::Prefixed) => {
                deny_pre.insert(n);
            }
            (Perm::Allow, Pat::Literal) if n == "*" => allow_all = true,
            (Perm::Allow, Pat::Literal) => {
                allow_lit.insert(n);
            }
            (Perm::Allow, Pat::Prefixed) => {
                allow_pre.insert(n);
            }
            _ => {}
        }
    }
    if deny_all {
        return false;
    }
    if allow_all {
        return true;
    }
    let dominated = |s: &String| {
        let mut sb = String::new();
        for ch in s.chars() {
            sb.push(ch);
            if deny_pre.contains(&sb) {
                return true;
            }
        }
        false
    };
    allow_lit
        .iter()
        .any(|n| !deny_lit.contains(n) && !dominated(n))
        || allow_pre.iter().any(|n| !dominated(n))
}

fn arb_binding() -> impl Strategy<Value = AclBinding> {
    (
        prop::sample::select(vec![Rt::Topic, Rt::Group]),
        prop::sample::select(vec![
            "*", "a", "ab", "abc", "b", "ba", "hardcode", "hard", "é", "éa",
        ]),
        prop::sample::select(vec![Pat::Literal, Pat::Prefixed]),
        prop::sample::select(vec!["User:alice", "User:bob", "User:*"]),
        prop::sample::select(vec!["*", "10.0.0.1", "10.0.0.2"]),
        prop::sample::select(vec![
            Op::All,
            Op::Read,
            Op::Write,
            Op::Describe,
            Op::Delete,
            Op::AlterConfigs,
            Op::DescribeConfigs,
        ]),
        prop::sample::select(vec![Perm::Allow, Perm::Deny]),
    )
        .prop_map(|(rt, name, pat, principal, host, op, perm)| {
            b(rt, name, pat, principal, host, op, perm)
        })
}

fn arb_request() -> impl Strategy<Value = (String, String, Op, Rt, String)> {
    (
        prop::sample::select(vec!["User:alice", "User:bob", "User:carol", "User:admin"]),
        prop::sample::select(vec!["10.0.0.1", "10.0.0.2", "10.0.0.3"]),
        prop::sample::select(vec![
            Op::Read,
            Op::Write,
            Op::Describe,
            Op::Delete,
            Op::DescribeConfigs,
            Op::AlterConfigs,
        ]),
        prop::sample::select(vec![Rt::Topic, Rt::Group, Rt::Cluster]),
        prop::sample::select(vec![
            "*", "a", "ab", "abc", "abcd", "b", "ba", "c", "", "é", "éa", "hardcode",
        ]),
    )
        .prop_map(|(p, h, op, rt, n)| (p.to_string(), h.to_string(), op, rt, n.to_string()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn index_agrees_with_naive_scan(
        bindings in prop::collection::vec(arb_binding(), 0..24),
        requests in prop::collection::vec(arb_request(), 1..16),
        everyone in any::<bool>(),
        with_super in any::<bool>(),
    ) {
        let c = AuthorizerConfig {
            super_users: if with_super { vec!["User:admin".into()] } else { vec![] },
            allow_everyone_if_no_acl_found: everyone,
        };
        let idx = AclIndex::new(bindings.clone());
        for (principal, host, op, rt, name) in requests {
            let got = idx.authorize(&c, &principal, &host, op, rt, &name).is_allowed();
            let want = naive_authorize(&bindings, &c, &principal, &host, op, rt, &name);
            prop_assert_eq!(got, want, "authorize {} {} {} {} {:?}", principal, host, op, rt, name);
            let got = idx.authorize_any(&c, &principal, &host, op, rt);
            let want = naive_authorize_any(&bindings, &c, &principal, &host, op, rt);
            prop_assert_eq!(got, want, "authorize_any {} {} {} {}", principal, host, op, rt);
        }
    }

    #[test]
    fn filters_from_codes_never_panic(rt in any::<i8>(), pat in any::<i8>(), op in any::<i8>(), perm in any::<i8>(),
                                      name in proptest::option::of("[a-c*]{0,3}"), binding in arb_binding()) {
        let f = AclBindingFilter {
            resource_type: Rt::from_i8(rt),
            name,
            pattern_type: Pat::from_i8(pat),
            principal: None,
            host: None,
            operation: Op::from_i8(op),
            permission: Perm::from_i8(perm),
        };
        let _ = f.validate();
        let _ = f.matches(&binding);
    }
}
