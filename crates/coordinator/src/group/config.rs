//! The group coordinator's settings, read from the broker configuration.

/// The classic group protocol's settings (`group.*`), Kafka's defaults in `Default`.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay_ms: i64,
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    /// `group.max.size`: members (joined or with a pending member id) a group may have.
    pub max_size: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            initial_rebalance_delay_ms: 3000,
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            max_size: i32::MAX as usize,
        }
    }
}

/// Coordinator settings from the broker configuration.
#[derive(Debug, Clone, Copy)]
pub struct CoordinatorSettings {
    /// `offsets.commit.timeout.ms`: how long a write waits for the ISR.
    pub commit_timeout_ms: u64,
    /// `offsets.retention.minutes` in milliseconds.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`.
    pub retention_check_interval_ms: i64,
    /// `offsets.topic.replication.factor`, used when `__consumer_offsets` is created.
    pub offsets_topic_replication_factor: i16,
}

impl Default for CoordinatorSettings {
    fn default() -> Self {
        CoordinatorSettings {
            commit_timeout_ms: 5000,
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
            retention_check_interval_ms: 600_000,
            offsets_topic_replication_factor: 3,
        }
    }
}
