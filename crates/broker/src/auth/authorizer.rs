//! The broker's ACL authorizer (Kafka's StandardAuthorizer semantics, decided by
//! `runnel_security::acl::AclIndex`). The ACL bindings live in the metadata image; the index is
//! rebuilt when the image's ACLs change, so every node decides from the same committed ACLs.
//!
//! Every denial is logged at INFO under the target `runnel::authorizer` with the principal,
//! operation, resource, host and API, like Kafka's authorizer log; allowed requests are logged
//! at DEBUG under the same target.

use std::sync::Arc;

use parking_lot::RwLock;
use runnel_controller::MetadataImage;
use runnel_security::acl::{AclIndex, AclOperation, AuthorizerConfig, ResourceType};

use crate::config::BrokerConfig;
use crate::context::api_name;
use crate::context::RequestContext;

/// Logged as the target of authorization decisions, for operators to filter on.
pub const LOG_TARGET: &str = "runnel::authorizer";

pub struct Authorizer {
    enabled: bool,
    cfg: AuthorizerConfig,
    /// The index and the image ACL version it was built from.
    index: RwLock<Option<(u64, Arc<AclIndex>)>>,
}

impl Authorizer {
    pub fn new(config: &BrokerConfig) -> Authorizer {
        Authorizer {
            enabled: config.authorizer_enabled,
            cfg: AuthorizerConfig {
                super_users: config.super_users.clone(),
                allow_everyone_if_no_acl_found: config.allow_everyone_if_no_acl_found,
            },
            index: RwLock::new(None),
        }
    }

    /// Whether an authorizer is configured (`authorizer.class.name`); without one every
    /// request is allowed, as in Kafka.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The index for `image`'s ACLs, rebuilt only when they changed.
    fn index(&self, image: &MetadataImage) -> Arc<AclIndex> {
        let version = image.acls_version();
        if let Some((v, idx)) = self.index.read().as_ref() {
            if *v == version {
                return idx.clone();
            }
        }
        let idx = Arc::new(AclIndex::new(image.acls().cloned()));
        tracing::debug!(target: LOG_TARGET, acls = idx.len(), version, "ACL index rebuilt");
        *self.index.write() = Some((version, idx.clone()));
        idx
    }

    /// Whether `ctx`'s principal may do `op` on the resource. Internal requests and a broker
    /// without an authorizer always may.
    pub fn authorize(
        &self,
        image: &MetadataImage,
        ctx: &RequestContext,
        op: AclOperation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        self.decide(image, ctx, op, resource_type, name, true)
    }

    /// Like [`Self::authorize`], but a denial is not logged: for checks whose failure is not
    /// an error (Metadata leaving out topics the client may not describe, the
    /// authorized-operations fields).
    pub fn allows_quietly(
        &self,
        image: &MetadataImage,
        ctx: &RequestContext,
        op: AclOperation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        self.decide(image, ctx, op, resource_type, name, false)
    }

    fn decide(
        &self,
        image: &MetadataImage,
        ctx: &RequestContext,
        op: AclOperation,
        resource_type: ResourceType,
        name: &str,
        log_denial: bool,
    ) -> bool {
        if !self.enabled || ctx.internal {
            return true;
        }
        let principal = ctx.principal().to_string();
        let host = ctx.host();
        let decision =
            self.index(image)
                .authorize(&self.cfg, &principal, &host, op, resource_type, name);
        if decision.is_allowed() {
            tracing::debug!(
                target: LOG_TARGET,
                %principal, operation = %op, resource_type = %resource_type, resource = name,
                %host, api = api_name(ctx.api_key), reason = decision.reason(),
                "authorized"
            );
            true
        } else {
            if log_denial {
                metrics::counter!("runnel_authorization_denied_total", "api" => api_name(ctx.api_key)).increment(1);
                tracing::info!(
                    target: LOG_TARGET,
                    %principal, operation = %op, resource_type = %resource_type, resource = name,
                    %host, api = api_name(ctx.api_key), listener = ctx.listener(),
                    reason = decision.reason(),
                    "denied"
                );
            }
            false
        }
    }

    /// Kafka's authorizeByResourceType: whether the principal may do `op` on some resource of
    /// the type (an idempotent producer without IdempotentWrite on the cluster, say, passes
    /// with Write on any topic).
    pub fn authorize_any(
        &self,
        image: &MetadataImage,
        ctx: &RequestContext,
        op: AclOperation,
        resource_type: ResourceType,
    ) -> bool {
        if !self.enabled || ctx.internal {
            return true;
        }
        let principal = ctx.principal().to_string();
        self.index(image)
            .authorize_any(&self.cfg, &principal, &ctx.host(), op, resource_type)
    }

    /// The authorized-operations bit field Kafka returns in Metadata, DescribeCluster and
    /// DescribeGroups when a client asks for it: bit `op` set for every operation allowed.
    pub fn authorized_operations(
        &self,
        image: &MetadataImage,
        ctx: &RequestContext,
        resource_type: ResourceType,
        name: &str,
        ops: &[AclOperation],
    ) -> i32 {
        ops.iter()
            .filter(|op| self.allows_quietly(image, ctx, **op, resource_type, name))
            .fold(0i32, |acc, op| acc | (1 << op.as_i8()))
    }
}

/// Operations Kafka lists for a topic's authorized operations.
pub const TOPIC_OPS: &[AclOperation] = &[
    AclOperation::Read,
    AclOperation::Write,
    AclOperation::Create,
    AclOperation::Delete,
    AclOperation::Alter,
    AclOperation::Describe,
    AclOperation::DescribeConfigs,
    AclOperation::AlterConfigs,
];

/// Operations Kafka lists for the cluster's authorized operations.
pub const CLUSTER_OPS: &[AclOperation] = &[
    AclOperation::Create,
    AclOperation::ClusterAction,
    AclOperation::DescribeConfigs,
    AclOperation::AlterConfigs,
    AclOperation::IdempotentWrite,
    AclOperation::Alter,
    AclOperation::Describe,
];

/// Operations Kafka lists for a group's authorized operations.
pub const GROUP_OPS: &[AclOperation] = &[
    AclOperation::Read,
    AclOperation::Describe,
    AclOperation::Delete,
];
