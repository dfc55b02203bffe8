//! Kafka's ACL model and the decision logic of its `StandardAuthorizer`.
//!
//! The enums carry Kafka's wire codes (`i8`) and names; [`AclBinding`] and [`AclBindingFilter`]
//! follow `org.apache.kafka.common.acl`. [`AclIndex`] holds a set of bindings indexed by resource
//! type, literal name, prefix and principal, so a decision looks only at the ACLs that can apply.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The only valid name of the `Cluster` resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// A literal resource name that matches every resource of its type.
pub const WILDCARD_RESOURCE: &str = "*";
/// The principal of an ACL that applies to every principal.
pub const WILDCARD_PRINCIPAL: &str = "User:*";
/// The host of an ACL that applies to every client address.
pub const WILDCARD_HOST: &str = "*";

/// Normalizes a name for case-insensitive lookup that also ignores underscores, so that
/// `TRANSACTIONAL_ID`, `TransactionalId` and `transactionalid` are the same name.
fn fold_name(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '_')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

macro_rules! kafka_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $($variant:ident = $code:literal, $pascal:literal, $java:literal;)* }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($variant = $code,)*
        }

        impl $name {
            /// Every variant, in code order.
            pub const ALL_VALUES: &'static [$name] = &[$($name::$variant,)*];

            /// The variant for a wire code; `Unknown` for codes Kafka does not define.
            pub fn from_i8(code: i8) -> Self {
                match code {
                    $($code => $name::$variant,)*
                    _ => $name::Unknown,
                }
            }

            /// The wire code.
            pub fn as_i8(self) -> i8 {
                self as i8
            }

            /// Kafka's tool name (`Topic`, `IdempotentWrite`), as `kafka-acls` prints it.
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $pascal,)*
                }
            }

            /// The Java enum constant name (`TOPIC`, `IDEMPOTENT_WRITE`), as Kafka's error
            /// messages and `toString()` show it.
            pub fn enum_name(self) -> &'static str {
                match self {
                    $($name::$variant => $java,)*
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl FromStr for $name {
            type Err = String;

            /// Accepts Kafka's names case-insensitively, with or without underscores
            /// (`Topic`, `TOPIC`, `TransactionalId`, `TRANSACTIONAL_ID`).
            fn from_str(s: &str) -> Result<Self, String> {
                let folded = fold_name(s.trim());
                $(
                    if folded == fold_name($pascal) {
                        return Ok($name::$variant);
                    }
                )*
                Err(format!(
                    "invalid {} '{}'; valid values: {}",
                    stringify!($name),
                    s,
                    [$($pascal,)*]
                        .iter()
                        .filter(|n| **n != "Unknown")
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }
        }
    };
}

kafka_enum! {
    /// The type of a resource an ACL protects.
    ResourceType {
        Unknown = 0, "Unknown", "UNKNOWN";
        Any = 1, "Any", "ANY";
        Topic = 2, "Topic", "TOPIC";
        Group = 3, "Group", "GROUP";
        Cluster = 4, "Cluster", "CLUSTER";
        TransactionalId = 5, "TransactionalId", "TRANSACTIONAL_ID";
        DelegationToken = 6, "DelegationToken", "DELEGATION_TOKEN";
        User = 7, "User", "USER";
    }
}

kafka_enum! {
    /// How the resource name of an ACL is matched.
    PatternType {
        Unknown = 0, "Unknown", "UNKNOWN";
        Any = 1, "Any", "ANY";
        Match = 2, "Match", "MATCH";
        Literal = 3, "Literal", "LITERAL";
        Prefixed = 4, "Prefixed", "PREFIXED";
    }
}

kafka_enum! {
    /// An operation on a resource.
    AclOperation {
        Unknown = 0, "Unknown", "UNKNOWN";
        Any = 1, "Any", "ANY";
        All = 2, "All", "ALL";
        Read = 3, "Read", "READ";
        Write = 4, "Write", "WRITE";
        Create = 5, "Create", "CREATE";
        Delete = 6, "Delete", "DELETE";
        Alter = 7, "Alter", "ALTER";
        Describe = 8, "Describe", "DESCRIBE";
        ClusterAction = 9, "ClusterAction", "CLUSTER_ACTION";
        DescribeConfigs = 10, "DescribeConfigs", "DESCRIBE_CONFIGS";
        AlterConfigs = 11, "AlterConfigs", "ALTER_CONFIGS";
        IdempotentWrite = 12, "IdempotentWrite", "IDEMPOTENT_WRITE";
        CreateTokens = 13, "CreateTokens", "CREATE_TOKENS";
        DescribeTokens = 14, "DescribeTokens", "DESCRIBE_TOKENS";
    }
}

kafka_enum! {
    /// Whether an ACL allows or denies.
    AclPermissionType {
        Unknown = 0, "Unknown", "UNKNOWN";
        Any = 1, "Any", "ANY";
        Deny = 2, "Deny", "DENY";
        Allow = 3, "Allow", "ALLOW";
    }
}

/// The resources an ACL applies to: a type and a literal or prefixed name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ResourcePattern {
    pub resource_type: ResourceType,
    pub name: String,
    pub pattern_type: PatternType,
}

impl ResourcePattern {
    pub fn new(
        resource_type: ResourceType,
        name: impl Into<String>,
        pattern_type: PatternType,
    ) -> Self {
        ResourcePattern {
            resource_type,
            name: name.into(),
            pattern_type,
        }
    }
}

impl fmt::Display for ResourcePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ResourcePattern(resourceType={}, name={}, patternType={})",
            self.resource_type.enum_name(),
            self.name,
            self.pattern_type.enum_name()
        )
    }
}

/// Who may (or may not) do what from where.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AccessControlEntry {
    /// `Type:name`, e.g. `User:alice`; `User:*` for every principal.
    pub principal: String,
    /// `*` or a client IP address.
    pub host: String,
    pub operation: AclOperation,
    pub permission: AclPermissionType,
}

impl fmt::Display for AccessControlEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "(principal={}, host={}, operation={}, permissionType={})",
            self.principal,
            self.host,
            self.operation.enum_name(),
            self.permission.enum_name()
        )
    }
}

/// One ACL: an entry bound to a resource pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AclBinding {
    pub pattern: ResourcePattern,
    pub entry: AccessControlEntry,
}

impl fmt::Display for AclBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "(pattern={}, entry={})", self.pattern, self.entry)
    }
}

/// Splits `Type:name` at the first colon, as Kafka's `SecurityUtils.parseKafkaPrincipal`.
pub fn parse_principal(principal: &str) -> Option<(&str, &str)> {
    principal.split_once(':')
}

impl AclBinding {
    pub fn new(
        resource_type: ResourceType,
        name: impl Into<String>,
        pattern_type: PatternType,
        principal: impl Into<String>,
        host: impl Into<String>,
        operation: AclOperation,
        permission: AclPermissionType,
    ) -> Self {
        AclBinding {
            pattern: ResourcePattern::new(resource_type, name, pattern_type),
            entry: AccessControlEntry {
                principal: principal.into(),
                host: host.into(),
                operation,
                permission,
            },
        }
    }

    /// Checks a binding given to CreateAcls, with Kafka's messages (INVALID_REQUEST).
    pub fn validate(&self) -> Result<(), String> {
        match self.pattern.resource_type {
            ResourceType::Unknown | ResourceType::Any => {
                return Err(format!(
                    "Invalid resourceType {}",
                    self.pattern.resource_type.enum_name()
                ))
            }
            _ => {}
        }
        match self.pattern.pattern_type {
            PatternType::Literal | PatternType::Prefixed => {}
            other => return Err(format!("Invalid patternType {}", other.enum_name())),
        }
        match self.entry.operation {
            AclOperation::Unknown | AclOperation::Any => {
                return Err(format!(
                    "Invalid operation {}",
                    self.entry.operation.enum_name()
                ))
            }
            _ => {}
        }
        match self.entry.permission {
            AclPermissionType::Allow | AclPermissionType::Deny => {}
            other => return Err(format!("Invalid permissionType {}", other.enum_name())),
        }
        if self.pattern.name.is_empty() {
            return Err("Resource name should not be empty".to_string());
        }
        if self.pattern.resource_type == ResourceType::Cluster && self.pattern.name != CLUSTER_NAME
        {
            return Err(format!(
                "The only valid name for the CLUSTER resource is {CLUSTER_NAME}"
            ));
        }
        if parse_principal(&self.entry.principal).is_none() {
            return Err(format!(
                "Could not parse principal from `{}` (no colon is present separating the principal type from the principal name)",
                self.entry.principal
            ));
        }
        Ok(())
    }
}

/// A filter over bindings, as DescribeAcls and DeleteAcls carry it. `None` strings and the
/// `Any` enum values match everything; pattern type `Match` matches every pattern that would
/// apply to the named resource (literal equal, literal `*`, prefixes of the name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AclBindingFilter {
    pub resource_type: ResourceType,
    pub name: Option<String>,
    pub pattern_type: PatternType,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: AclOperation,
    pub permission: AclPermissionType,
}

impl AclBindingFilter {
    /// The filter that matches every binding.
    pub fn any() -> Self {
        AclBindingFilter {
            resource_type: ResourceType::Any,
            name: None,
            pattern_type: PatternType::Any,
            principal: None,
            host: None,
            operation: AclOperation::Any,
            permission: AclPermissionType::Any,
        }
    }

    /// The filter that matches exactly this binding.
    pub fn exact(b: &AclBinding) -> Self {
        AclBindingFilter {
            resource_type: b.pattern.resource_type,
            name: Some(b.pattern.name.clone()),
            pattern_type: b.pattern.pattern_type,
            principal: Some(b.entry.principal.clone()),
            host: Some(b.entry.host.clone()),
            operation: b.entry.operation,
            permission: b.entry.permission,
        }
    }

    /// Kafka's `ResourcePatternFilter.matches` and `AccessControlEntryFilter.matches`.
    pub fn matches(&self, b: &AclBinding) -> bool {
        self.matches_pattern(&b.pattern) && self.matches_entry(&b.entry)
    }

    fn matches_pattern(&self, p: &ResourcePattern) -> bool {
        if self.resource_type != ResourceType::Any && self.resource_type != p.resource_type {
            return false;
        }
        if self.pattern_type != PatternType::Any
            && self.pattern_type != PatternType::Match
            && self.pattern_type != p.pattern_type
        {
            return false;
        }
        let Some(name) = &self.name else {
            return true;
        };
        if self.pattern_type == PatternType::Any || self.pattern_type == p.pattern_type {
            return *name == p.name;
        }
        // pattern_type is Match here.
        match p.pattern_type {
            PatternType::Literal => *name == p.name || p.name == WILDCARD_RESOURCE,
            PatternType::Prefixed => name.starts_with(p.name.as_str()),
            _ => false,
        }
    }

    fn matches_entry(&self, e: &AccessControlEntry) -> bool {
        if let Some(principal) = &self.principal {
            if *principal != e.principal {
                return false;
            }
        }
        if let Some(host) = &self.host {
            if *host != e.host {
                return false;
            }
        }
        if self.operation != AclOperation::Any && self.operation != e.operation {
            return false;
        }
        self.permission == AclPermissionType::Any || self.permission == e.permission
    }

    /// Checks a filter given to DescribeAcls or DeleteAcls: no `Unknown` element.
    pub fn validate(&self) -> Result<(), String> {
        let unknown = if self.resource_type == ResourceType::Unknown {
            Some("resourceType")
        } else if self.pattern_type == PatternType::Unknown {
            Some("patternType")
        } else if self.operation == AclOperation::Unknown {
            Some("operation")
        } else if self.permission == AclPermissionType::Unknown {
            Some("permissionType")
        } else {
            None
        };
        match unknown {
            Some(field) => Err(format!("Filter contains an UNKNOWN {field}: {self}")),
            None => Ok(()),
        }
    }
}

impl fmt::Display for AclBindingFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "(patternFilter=ResourcePatternFilter(resourceType={}, name={}, patternType={}), \
             entryFilter=(principal={}, host={}, operation={}, permissionType={}))",
            self.resource_type.enum_name(),
            self.name.as_deref().unwrap_or("<any>"),
            self.pattern_type.enum_name(),
            self.principal.as_deref().unwrap_or("<any>"),
            self.host.as_deref().unwrap_or("<any>"),
            self.operation.enum_name(),
            self.permission.enum_name()
        )
    }
}

/// Authorizer settings: `super.users` and `allow.everyone.if.no.acl.found`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizerConfig {
    /// Principals allowed everything, e.g. `User:admin`.
    pub super_users: Vec<String>,
    /// Allow when no ACL at all (of any principal) applies to the resource.
    pub allow_everyone_if_no_acl_found: bool,
}

impl AuthorizerConfig {
    /// Parses Kafka's `super.users` value: principals separated by `;` (`User:admin;User:ops`).
    pub fn parse_super_users(value: &str) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        for p in value.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            if parse_principal(p).is_none() {
                return Err(format!(
                    "Invalid super.users entry '{p}': expected a principal in the form Type:name"
                ));
            }
            out.push(p.to_string());
        }
        Ok(out)
    }

    fn is_super_user(&self, principal: &str) -> bool {
        self.super_users.iter().any(|s| s == principal)
    }
}

/// The outcome of an authorization, with a short reason for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow(&'static str),
    Deny(&'static str),
}

impl Decision {
    pub fn is_allowed(self) -> bool {
        matches!(self, Decision::Allow(_))
    }

    pub fn reason(self) -> &'static str {
        match self {
            Decision::Allow(r) | Decision::Deny(r) => r,
        }
    }
}

/// The host part of an ACL, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    Ip(IpAddr),
    Other(String),
}

impl HostPattern {
    fn new(host: &str) -> Self {
        if host == WILDCARD_HOST {
            HostPattern::Any
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            HostPattern::Ip(ip)
        } else {
            HostPattern::Other(host.to_string())
        }
    }

    fn matches(&self, host: &ClientHost<'_>) -> bool {
        match self {
            HostPattern::Any => true,
            HostPattern::Ip(ip) => host.ip == Some(*ip),
            HostPattern::Other(s) => s == host.text,
        }
    }
}

/// The client address of a request, parsed once per decision.
struct ClientHost<'a> {
    text: &'a str,
    ip: Option<IpAddr>,
}

impl<'a> ClientHost<'a> {
    fn new(text: &'a str) -> Self {
        ClientHost {
            text,
            ip: text.parse().ok(),
        }
    }
}

/// The entry part of an ACL as stored in the index, under its resource and principal.
#[derive(Debug, Clone)]
struct IndexedEntry {
    host: HostPattern,
    operation: AclOperation,
    permission: AclPermissionType,
}

/// The ACLs on one resource pattern, grouped by principal.
#[derive(Debug, Default)]
struct ResourceAcls {
    by_principal: HashMap<String, Vec<IndexedEntry>>,
}

/// A binding as kept for `authorize_any`, under its resource type and principal.
#[derive(Debug, Clone)]
struct TypedEntry {
    pattern_type: PatternType,
    name: String,
    entry: IndexedEntry,
}

#[derive(Debug, Default)]
struct TypeIndex {
    /// Literal ACLs by resource name (the wildcard `*` is one key).
    literal: HashMap<String, ResourceAcls>,
    /// Prefixed ACLs by prefix.
    prefixed: HashMap<String, ResourceAcls>,
    /// The byte lengths of the prefixes in `prefixed`: a name is checked against only these.
    prefix_lengths: BTreeSet<usize>,
    /// Every binding of this type by principal, for `authorize_any`.
    by_principal: HashMap<String, Vec<TypedEntry>>,
}

/// What the ACLs found for a decision said.
#[derive(Default)]
struct Verdict {
    any_acl: bool,
    allow: bool,
    deny: bool,
}

/// Kafka's `StandardAuthorizerData.findResult`: does this entry speak about `op`, and how.
fn entry_applies(e: &IndexedEntry, host: &ClientHost<'_>, op: AclOperation) -> bool {
    if !e.host.matches(host) {
        return false;
    }
    if e.operation == AclOperation::All {
        return true;
    }
    match e.permission {
        AclPermissionType::Allow => match op {
            AclOperation::Describe => matches!(
                e.operation,
                AclOperation::Describe
                    | AclOperation::Read
                    | AclOperation::Write
                    | AclOperation::Delete
                    | AclOperation::Alter
            ),
            AclOperation::DescribeConfigs => {
                matches!(
                    e.operation,
                    AclOperation::DescribeConfigs | AclOperation::AlterConfigs
                )
            }
            _ => e.operation == op,
        },
        AclPermissionType::Deny => e.operation == op,
        _ => false,
    }
}

impl ResourceAcls {
    fn check(&self, principal: &str, host: &ClientHost<'_>, op: AclOperation, v: &mut Verdict) {
        if self.by_principal.is_empty() {
            return;
        }
        v.any_acl = true;
        let wildcard = self.by_principal.get(WILDCARD_PRINCIPAL);
        let own = if principal == WILDCARD_PRINCIPAL {
            None
        } else {
            self.by_principal.get(principal)
        };
        for e in own.into_iter().chain(wildcard).flatten() {
            if entry_applies(e, host, op) {
                match e.permission {
                    AclPermissionType::Deny => v.deny = true,
                    AclPermissionType::Allow => v.allow = true,
                    _ => {}
                }
            }
        }
    }
}

/// A set of ACL bindings indexed for authorization.
#[derive(Debug, Default)]
pub struct AclIndex {
    types: HashMap<ResourceType, TypeIndex>,
    len: usize,
}

impl AclIndex {
    /// Builds the index. Duplicate bindings count once; bindings that could never match a
    /// request (pattern types other than literal and prefixed, unknown permissions) are kept
    /// out of the decisions but counted.
    pub fn new(bindings: impl IntoIterator<Item = AclBinding>) -> Self {
        let mut seen = HashSet::new();
        let mut index = AclIndex::default();
        for b in bindings {
            if !seen.insert(b.clone()) {
                continue;
            }
            index.len += 1;
            let AclBinding { pattern, entry } = b;
            let indexed = IndexedEntry {
                host: HostPattern::new(&entry.host),
                operation: entry.operation,
                permission: entry.permission,
            };
            let t = index.types.entry(pattern.resource_type).or_default();
            let acls = match pattern.pattern_type {
                PatternType::Literal => t.literal.entry(pattern.name.clone()).or_default(),
                PatternType::Prefixed => {
                    t.prefix_lengths.insert(pattern.name.len());
                    t.prefixed.entry(pattern.name.clone()).or_default()
                }
                _ => continue,
            };
            acls.by_principal
                .entry(entry.principal.clone())
                .or_default()
                .push(indexed.clone());
            t.by_principal
                .entry(entry.principal)
                .or_default()
                .push(TypedEntry {
                    pattern_type: pattern.pattern_type,
                    name: pattern.name,
                    entry: indexed,
                });
        }
        index
    }

    /// The number of distinct bindings.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Decides whether `principal` (`User:alice`) connecting from `host` (its IP address) may
    /// do `op` on the resource `name` of `resource_type`, as Kafka's `StandardAuthorizer`:
    /// super users are allowed everything; a matching DENY beats any ALLOW; an ACL for `All`
    /// matches every operation; an ALLOW for Read, Write, Delete or Alter implies Describe and
    /// an ALLOW for AlterConfigs implies DescribeConfigs; ACLs of `User:*` apply to every
    /// principal and host `*` to every address; literal ACLs on the name or on `*` and prefixed
    /// ACLs on a prefix of the name apply. When no ACL of any principal applies to the
    /// resource, `allow.everyone.if.no.acl.found` decides.
    pub fn authorize(
        &self,
        cfg: &AuthorizerConfig,
        principal: &str,
        host: &str,
        op: AclOperation,
        resource_type: ResourceType,
        name: &str,
    ) -> Decision {
        if cfg.is_super_user(principal) {
            return Decision::Allow("super user");
        }
        let host = ClientHost::new(host);
        let mut v = Verdict::default();
        if let Some(t) = self.types.get(&resource_type) {
            if let Some(acls) = t.literal.get(WILDCARD_RESOURCE) {
                acls.check(principal, &host, op, &mut v);
            }
            if name != WILDCARD_RESOURCE {
                if let Some(acls) = t.literal.get(name) {
                    acls.check(principal, &host, op, &mut v);
                }
            }
            for &len in t.prefix_lengths.range(..=name.len()) {
                let Some(prefix) = name.get(..len) else {
                    continue;
                };
                if let Some(acls) = t.prefixed.get(prefix) {
                    acls.check(principal, &host, op, &mut v);
                }
            }
        }
        if v.deny {
            Decision::Deny("matching DENY ACL")
        } else if v.allow {
            Decision::Allow("matching ALLOW ACL")
        } else if v.any_acl {
            Decision::Deny("no matching ALLOW ACL")
        } else if cfg.allow_everyone_if_no_acl_found {
            Decision::Allow("no ACL on the resource and allow.everyone.if.no.acl.found=true")
        } else {
            Decision::Deny("no ACL on the resource")
        }
    }

    /// Kafka's `Authorizer.authorizeByResourceType`: may `principal` do `op` on at least one
    /// resource of `resource_type`? True for super users and whenever `op` on an arbitrary name
    /// would be allowed; else true when some literal or prefixed ALLOW (for `op` or `All`) is not
    /// cancelled by a DENY on the same literal name or on a prefix of it. A literal DENY on `*`
    /// denies. Implied operations do not count here, as in Kafka.
    pub fn authorize_any(
        &self,
        cfg: &AuthorizerConfig,
        principal: &str,
        host: &str,
        op: AclOperation,
        resource_type: ResourceType,
    ) -> bool {
        if self
            .authorize(cfg, principal, host, op, resource_type, "hardcode")
            .is_allowed()
        {
            return true;
        }
        let Some(t) = self.types.get(&resource_type) else {
            return false;
        };
        let client = ClientHost::new(host);
        let mut deny_literal: HashSet<&str> = HashSet::new();
        let mut deny_prefixed: HashSet<&str> = HashSet::new();
        let mut allow_literal: HashSet<&str> = HashSet::new();
        let mut allow_prefixed: HashSet<&str> = HashSet::new();
        // A deny on the wildcard resource wins over every allow, an allow on it over the rest,
        // whatever order the bindings come in (Kafka collects all of them first).
        let mut deny_everything = false;
        let mut allow_everything = false;
        let wildcard = t.by_principal.get(WILDCARD_PRINCIPAL);
        let own = if principal == WILDCARD_PRINCIPAL {
            None
        } else {
            t.by_principal.get(principal)
        };
        for te in own.into_iter().chain(wildcard).flatten() {
            let e = &te.entry;
            if !e.host.matches(&client) {
                continue;
            }
            if e.operation != op && e.operation != AclOperation::All {
                continue;
            }
            match (e.permission, te.pattern_type) {
                (AclPermissionType::Deny, PatternType::Literal) => {
                    if te.name == WILDCARD_RESOURCE {
                        deny_everything = true;
                    }
                    deny_literal.insert(&te.name);
                }
                (AclPermissionType::Deny, PatternType::Prefixed) => {
                    deny_prefixed.insert(&te.name);
                }
                (AclPermissionType::Allow, PatternType::Literal) => {
                    if te.name == WILDCARD_RESOURCE {
                        allow_everything = true;
                    }
                    allow_literal.insert(&te.name);
                }
                (AclPermissionType::Allow, PatternType::Prefixed) => {
                    allow_prefixed.insert(&te.name);
                }
                _ => {}
            }
        }
        if deny_everything {
            return false;
        }
        if allow_everything {
            return true;
        }
        // Kafka builds every prefix of the allowed name one character at a time (including the
        // whole name) and looks for a DENY prefix among them.
        let dominated = |name: &str| {
            name.char_indices()
                .map(|(i, c)| &name[..i + c.len_utf8()])
                .any(|p| deny_prefixed.contains(p))
        };
        allow_literal
            .iter()
            .any(|n| !deny_literal.contains(n) && !dominated(n))
            || allow_prefixed.iter().any(|n| !dominated(n))
    }
}

#[cfg(test)]
mod tests;
