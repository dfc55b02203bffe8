//! Topic-level configuration: Kafka's names, types, defaults (inherited from broker `log.*`
//! synonyms), validation, and the translation into the storage layer's [`LogConfig`].

use std::collections::BTreeMap;

use runnel_storage::LogConfig;

/// Kafka's ConfigEntry types (DescribeConfigs v3+ `config_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    Str = 2,
    Int = 3,
    Short = 4,
    Long = 5,
    Double = 6,
    List = 7,
    Class = 8,
    Password = 9,
}

/// A topic config key Runnel accepts.
#[derive(Debug, Clone, Copy)]
pub struct TopicProp {
    pub name: &'static str,
    pub ty: ConfigType,
    /// The broker property that provides the default (DescribeConfigs synonym).
    pub broker_synonym: Option<&'static str>,
    pub doc: &'static str,
}

const fn tp(
    name: &'static str,
    ty: ConfigType,
    broker_synonym: Option<&'static str>,
    doc: &'static str,
) -> TopicProp {
    TopicProp {
        name,
        ty,
        broker_synonym,
        doc,
    }
}

use ConfigType::*;

/// Defaults for topic-level log settings, derived from the broker's `log.*` properties.
#[derive(Debug, Clone)]
pub struct LogDefaults {
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub segment_bytes: i64,
    pub segment_ms: i64,
    pub index_interval_bytes: i64,
    pub segment_index_bytes: i64,
    pub flush_messages: i64,
    pub flush_ms: i64,
    pub message_timestamp_type: String,
    pub cleanup_policy: String,
    pub max_message_bytes: i64,
    pub min_insync_replicas: i64,
    pub compression_type: String,
    pub unclean_leader_election: bool,
    /// `log.cleaner.delete.retention.ms` (topic: `delete.retention.ms`).
    pub delete_retention_ms: i64,
    /// `log.cleaner.min.cleanable.ratio` (topic: `min.cleanable.dirty.ratio`).
    pub min_cleanable_ratio: f64,
    /// `log.cleaner.min.compaction.lag.ms` (topic: `min.compaction.lag.ms`).
    pub min_compaction_lag_ms: i64,
    /// `log.cleaner.max.compaction.lag.ms` (topic: `max.compaction.lag.ms`).
    pub max_compaction_lag_ms: i64,
    /// `producer.id.expiration.ms` (broker only).
    pub producer_id_expiration_ms: i64,
    /// `producer.id.expiration.check.interval.ms` (broker only).
    pub producer_id_expiration_check_interval_ms: i64,
}

/// Smallest `segment.bytes` / `log.segment.bytes` (Kafka 4's minimum): smaller segments only
/// multiply files and file descriptors.
pub const MIN_SEGMENT_BYTES: i64 = 1 << 20;

/// Kafka's internal topic config for tests that need tiny segments: when set, it replaces
/// `segment.bytes` (at least 14). It is not listed by DescribeConfigs.
pub const INTERNAL_SEGMENT_BYTES: &str = "internal.segment.bytes";

pub const TOPIC_PROPS: &[TopicProp] = &[
    tp("cleanup.policy", List, Some("log.cleanup.policy"), "delete (time and size retention) and/or compact (keep the latest record per key, run by the log cleaner). Compacted topics refuse records without a key."),
    tp("compression.type", Str, Some("compression.type"), "Only 'producer' (keep the producer's compression) is implemented."),
    tp("delete.retention.ms", Long, Some("log.cleaner.delete.retention.ms"), "How long a tombstone (null value) of a compacted topic is kept, counted from its batch timestamp."),
    tp("file.delete.delay.ms", Long, None, "Delay before deleting a file from the file system."),
    tp("flush.messages", Long, Some("log.flush.interval.messages"), "fsync after this many messages."),
    tp("flush.ms", Long, Some("log.flush.interval.ms"), "fsync when unflushed data is this old."),
    tp("index.interval.bytes", Int, Some("log.index.interval.bytes"), "Bytes between offset index entries."),
    tp("max.compaction.lag.ms", Long, Some("log.cleaner.max.compaction.lag.ms"), "A compacted log whose oldest uncleaned record is older than this is cleaned whatever its dirty ratio (and its active segment is rolled)."),
    tp("max.message.bytes", Int, Some("message.max.bytes"), "Largest record batch accepted."),
    tp("message.timestamp.type", Str, Some("log.message.timestamp.type"), "CreateTime or LogAppendTime."),
    tp("min.cleanable.dirty.ratio", Double, Some("log.cleaner.min.cleanable.ratio"), "A compacted log is cleaned when its uncleaned bytes are at least this share of its cleanable bytes."),
    tp("min.compaction.lag.ms", Long, Some("log.cleaner.min.compaction.lag.ms"), "Records newer than this are not compacted."),
    tp("min.insync.replicas", Int, Some("min.insync.replicas"), "Minimum in-sync replicas for acks=all."),
    tp("preallocate", Boolean, None, "Accepted; segments are not preallocated."),
    tp("retention.bytes", Long, Some("log.retention.bytes"), "Retention size per partition, -1 for none."),
    tp("retention.ms", Long, Some("log.retention.ms"), "Retention time, -1 for none."),
    tp("segment.bytes", Int, Some("log.segment.bytes"), "Segment size; at least 1 MiB, as in Kafka 4."),
    tp("segment.index.bytes", Int, Some("log.index.size.max.bytes"), "Maximum index file size."),
    tp("segment.ms", Long, Some("log.roll.ms"), "Segment age before a roll."),
    tp("unclean.leader.election.enable", Boolean, Some("unclean.leader.election.enable"), "Allow out-of-sync replicas to become leader."),
];

pub fn topic_prop(name: &str) -> Option<&'static TopicProp> {
    TOPIC_PROPS.iter().find(|p| p.name == name)
}

/// Checks that a value parses as the given type.
pub fn validate_type(ty: ConfigType, v: &str) -> Result<(), String> {
    let v = v.trim();
    match ty {
        Boolean => match v.to_ascii_lowercase().as_str() {
            "true" | "false" => Ok(()),
            _ => Err("expected true or false".into()),
        },
        Int => v
            .parse::<i32>()
            .map(|_| ())
            .map_err(|_| "expected a 32-bit integer".into()),
        Short => v
            .parse::<i16>()
            .map(|_| ())
            .map_err(|_| "expected a 16-bit integer".into()),
        Long => v
            .parse::<i64>()
            .map(|_| ())
            .map_err(|_| "expected a 64-bit integer".into()),
        Double => v
            .parse::<f64>()
            .map(|_| ())
            .map_err(|_| "expected a number".into()),
        Str | List | Class | Password => Ok(()),
    }
}

/// Validates a topic config value: its type and Kafka's range/enum rules.
pub fn validate_value(name: &str, value: &str) -> Result<(), String> {
    if name == INTERNAL_SEGMENT_BYTES {
        return match value.trim().parse::<i32>() {
            Ok(v) if v >= 14 => Ok(()),
            _ => Err("must be an integer of at least 14".into()),
        };
    }
    let prop = topic_prop(name).ok_or_else(|| format!("unknown topic config '{name}'"))?;
    validate_type(prop.ty, value)?;
    let v = value.trim();
    let num = || v.parse::<i64>().unwrap_or(0);
    match name {
        "cleanup.policy" => {
            let parts: Vec<&str> = v.split(',').map(str::trim).collect();
            if parts.is_empty() || parts.iter().any(|p| !matches!(*p, "delete" | "compact")) {
                return Err("expected a list of 'delete' and/or 'compact'".into());
            }
        }
        "compression.type" => match v {
            "producer" => {}
            "uncompressed" | "gzip" | "snappy" | "lz4" | "zstd" => {
                return Err(format!(
                    "compression.type={v} (broker-side recompression) is not supported yet; only 'producer' is"
                ))
            }
            _ => return Err("expected one of producer, uncompressed, gzip, snappy, lz4, zstd".into()),
        },
        "message.timestamp.type" if !matches!(v, "CreateTime" | "LogAppendTime") => {
            return Err("expected CreateTime or LogAppendTime".into());
        }
        "segment.bytes" if num() < MIN_SEGMENT_BYTES => {
            return Err("must be at least 1048576 (1 MiB)".into())
        }
        "segment.index.bytes" if num() < 4 => return Err("must be at least 4".into()),
        "segment.ms" | "flush.messages" | "flush.ms" | "min.insync.replicas" | "max.message.bytes"
            if num() < 1 && name != "flush.ms" =>
        {
            return Err("must be at least 1".into())
        }
        "flush.ms" | "index.interval.bytes" | "delete.retention.ms" | "file.delete.delay.ms"
        | "min.compaction.lag.ms"
            if num() < 0 =>
        {
            return Err("must be at least 0".into())
        }
        "max.compaction.lag.ms" if num() < 1 => return Err("must be at least 1".into()),
        "retention.ms" | "retention.bytes" if num() < -1 => {
            return Err("must be -1 (unlimited) or at least 0".into())
        }
        "min.cleanable.dirty.ratio" => {
            let r: f64 = v.parse().unwrap_or(-1.0);
            if !(0.0..=1.0).contains(&r) {
                return Err("must be between 0 and 1".into());
            }
        }
        _ => {}
    }
    Ok(())
}

/// The default a topic inherits for a key, from the broker configuration.
pub fn default_value(name: &str, d: &LogDefaults) -> Option<String> {
    Some(match name {
        "cleanup.policy" => d.cleanup_policy.clone(),
        "compression.type" => d.compression_type.clone(),
        "delete.retention.ms" => d.delete_retention_ms.to_string(),
        "file.delete.delay.ms" => "60000".into(),
        "flush.messages" => d.flush_messages.to_string(),
        "flush.ms" => d.flush_ms.to_string(),
        "index.interval.bytes" => d.index_interval_bytes.to_string(),
        "max.compaction.lag.ms" => d.max_compaction_lag_ms.to_string(),
        "max.message.bytes" => d.max_message_bytes.to_string(),
        "message.timestamp.type" => d.message_timestamp_type.clone(),
        "min.cleanable.dirty.ratio" => d.min_cleanable_ratio.to_string(),
        "min.compaction.lag.ms" => d.min_compaction_lag_ms.to_string(),
        "min.insync.replicas" => d.min_insync_replicas.to_string(),
        "preallocate" => "false".into(),
        "retention.bytes" => d.retention_bytes.to_string(),
        "retention.ms" => d.retention_ms.to_string(),
        "segment.bytes" => d.segment_bytes.to_string(),
        "segment.index.bytes" => d.segment_index_bytes.to_string(),
        "segment.ms" => d.segment_ms.to_string(),
        "unclean.leader.election.enable" => d.unclean_leader_election.to_string(),
        _ => return None,
    })
}

/// Effective value of a topic config: the topic's own override, else the broker default.
pub fn effective(
    name: &str,
    overrides: &BTreeMap<String, String>,
    d: &LogDefaults,
) -> Option<String> {
    overrides
        .get(name)
        .cloned()
        .or_else(|| default_value(name, d))
}

/// Effective value of a numeric topic config. Overrides were validated against their declared
/// type when they were set, and every numeric property has a broker default.
fn effective_num(name: &str, overrides: &BTreeMap<String, String>, d: &LogDefaults) -> i64 {
    effective(name, overrides, d)
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(0)
}

/// A topic's `min.insync.replicas`: its override, else the broker's.
pub fn min_insync_replicas(overrides: &BTreeMap<String, String>, d: &LogDefaults) -> usize {
    effective_num("min.insync.replicas", overrides, d).max(1) as usize
}

/// Builds the storage configuration of a topic's partitions.
pub fn log_config(overrides: &BTreeMap<String, String>, d: &LogDefaults) -> LogConfig {
    let num = |k: &str| effective_num(k, overrides, d);
    let policy: Vec<String> = effective("cleanup.policy", overrides, d)
        .unwrap_or_default()
        .split(',')
        .map(|p| p.trim().to_string())
        .collect();
    LogConfig {
        segment_bytes: overrides
            .get(INTERNAL_SEGMENT_BYTES)
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or_else(|| num("segment.bytes"))
            .max(14) as u64,
        segment_ms: num("segment.ms").max(1),
        segment_index_bytes: num("segment.index.bytes").max(4) as u64,
        index_interval_bytes: num("index.interval.bytes").max(0) as u64,
        max_message_bytes: num("max.message.bytes").clamp(1, i32::MAX as i64) as u32,
        retention_ms: num("retention.ms"),
        retention_bytes: num("retention.bytes"),
        log_append_time: effective("message.timestamp.type", overrides, d).as_deref()
            == Some("LogAppendTime"),
        flush_messages: num("flush.messages").max(1) as u64,
        flush_ms: num("flush.ms"),
        cleanup_delete: policy.iter().any(|p| p == "delete"),
        cleanup_compact: policy.iter().any(|p| p == "compact"),
        delete_retention_ms: num("delete.retention.ms").max(0),
        min_cleanable_dirty_ratio: effective("min.cleanable.dirty.ratio", overrides, d)
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.5)
            .clamp(0.0, 1.0),
        min_compaction_lag_ms: num("min.compaction.lag.ms").max(0),
        max_compaction_lag_ms: num("max.compaction.lag.ms").max(1),
        producer_id_expiration_ms: d.producer_id_expiration_ms,
        producer_id_expiration_check_interval_ms: d.producer_id_expiration_check_interval_ms,
    }
}

/// The controller's managers validate topic configs with the broker's table (Kafka keeps the
/// table on the controller too; here both roles share one process and one table).
#[derive(Debug, Clone, Copy, Default)]
pub struct TopicConfigTable;

impl runnel_controller::managers::TopicConfigValidator for TopicConfigTable {
    fn validate(&self, name: &str, value: &str) -> Result<(), String> {
        validate_value(name, value)
            .map_err(|m| format!("Invalid value {value} for configuration {name}: {m}"))
    }

    fn is_list(&self, name: &str) -> bool {
        topic_prop(name).is_some_and(|p| p.ty == ConfigType::List)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BrokerConfig;

    #[test]
    fn validation_follows_kafka_rules() {
        assert!(validate_value("retention.ms", "-1").is_ok());
        assert!(validate_value("retention.ms", "-2").is_err());
        assert!(validate_value("retention.ms", "abc").is_err());
        assert!(validate_value("cleanup.policy", "compact,delete").is_ok());
        assert!(validate_value("cleanup.policy", "shred").is_err());
        assert!(validate_value("segment.bytes", "13").is_err());
        assert!(validate_value("segment.bytes", "1048575").is_err());
        assert!(validate_value("segment.bytes", "1048576").is_ok());
        assert!(validate_value(INTERNAL_SEGMENT_BYTES, "1024").is_ok());
        assert!(validate_value(INTERNAL_SEGMENT_BYTES, "13").is_err());
        assert!(validate_value("message.timestamp.type", "LogAppendTime").is_ok());
        assert!(validate_value("no.such.config", "1").is_err());
        assert!(validate_value("compression.type", "gzip").is_err());
        assert!(validate_value("compression.type", "producer").is_ok());
    }

    #[test]
    fn overrides_win_over_broker_defaults() {
        let b =
            BrokerConfig::from_properties(&[("log.retention.hours".into(), "2".into())]).unwrap();
        let mut o = BTreeMap::new();
        let c = log_config(&o, &b.log_defaults);
        assert_eq!(c.retention_ms, 7_200_000);
        o.insert("retention.ms".into(), "10000".into());
        o.insert("message.timestamp.type".into(), "LogAppendTime".into());
        let c = log_config(&o, &b.log_defaults);
        assert_eq!(c.retention_ms, 10000);
        assert!(c.log_append_time);
        assert_eq!(c.max_message_bytes, 1048588);
    }

    #[test]
    fn min_insync_replicas_comes_from_the_topic_else_the_broker() {
        let b =
            BrokerConfig::from_properties(&[("min.insync.replicas".into(), "2".into())]).unwrap();
        let mut o = BTreeMap::new();
        assert_eq!(min_insync_replicas(&o, &b.log_defaults), 2);
        o.insert("min.insync.replicas".into(), "3".into());
        assert_eq!(min_insync_replicas(&o, &b.log_defaults), 3);
    }

    #[test]
    fn cleanup_policy_and_cleaner_settings_reach_the_log_config() {
        let b = BrokerConfig::from_properties(&[
            ("log.cleaner.delete.retention.ms".into(), "5000".into()),
            ("log.cleaner.min.cleanable.ratio".into(), "0.25".into()),
        ])
        .unwrap();
        let mut o = BTreeMap::new();
        let c = log_config(&o, &b.log_defaults);
        assert!(c.cleanup_delete && !c.cleanup_compact);
        assert_eq!(c.delete_retention_ms, 5000);
        assert_eq!(c.min_cleanable_dirty_ratio, 0.25);
        assert_eq!(c.max_compaction_lag_ms, i64::MAX);
        o.insert("cleanup.policy".into(), "compact".into());
        o.insert("min.cleanable.dirty.ratio".into(), "0.01".into());
        o.insert("min.compaction.lag.ms".into(), "100".into());
        o.insert("max.compaction.lag.ms".into(), "200".into());
        let c = log_config(&o, &b.log_defaults);
        assert!(!c.cleanup_delete && c.cleanup_compact);
        assert_eq!(c.min_cleanable_dirty_ratio, 0.01);
        assert_eq!(
            (c.min_compaction_lag_ms, c.max_compaction_lag_ms),
            (100, 200)
        );
        o.insert("cleanup.policy".into(), "compact,delete".into());
        let c = log_config(&o, &b.log_defaults);
        assert!(c.cleanup_delete && c.cleanup_compact);
        assert!(validate_value("max.compaction.lag.ms", "0").is_err());
        assert!(BrokerConfig::from_properties(&[(
            "log.cleaner.min.cleanable.ratio".into(),
            "1.5".into()
        )])
        .is_err());
    }
}
