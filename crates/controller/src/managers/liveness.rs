//! The active controller's broker liveness tracker: heartbeats in, expired sessions out.
//! Heartbeats are not log entries; a controller that becomes active starts every registered
//! broker's session afresh.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::records::BrokerId;

#[derive(Debug, Default, Clone)]
pub struct LivenessTracker {
    /// broker -> (incarnation, last heartbeat in ms).
    last_seen: BTreeMap<BrokerId, (Uuid, i64)>,
}
