//! Topic names: Kafka's naming rules and the names Runnel reserves. Used by the handlers, the
//! reconciler and the partition manager, so it sits below all of them.

/// The metadata log's directory name, `__cluster_metadata`: no topic may take it, and
/// DescribeQuorum answers for it.
pub const METADATA_TOPIC: &str = "__cluster_metadata";

/// Kafka's topic name rules, and the name of the metadata log, which no topic may take: its
/// partition 0 would share the metadata log's directory `<log.dirs>/__cluster_metadata-0`.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if is_reserved_topic(name) {
        return Err(format!(
            "Topic name {name} is reserved for the cluster metadata log"
        ));
    }
    if name.is_empty() {
        return Err("Topic name is illegal, it can't be empty".into());
    }
    if name == "." || name == ".." {
        return Err("Topic name cannot be \".\" or \"..\"".into());
    }
    if name.len() > 249 {
        return Err(format!(
            "Topic name is illegal, it can't be longer than 249 characters, topic name: {name}"
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
    {
        return Err(format!(
            "Topic name \"{name}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// Whether `name` is reserved (the metadata log's). Such a topic is never created, listed,
/// hosted or served here, whatever the image says.
pub fn is_reserved_topic(name: &str) -> bool {
    name == METADATA_TOPIC
}
