//! The security settings of each client listener, from Kafka's properties:
//! `listener.security.protocol.map` gives a listener name its protocol, and
//! `listener.name.<name>.<property>` overrides a security property for one listener (the
//! listener name in lower case, as Kafka writes it). SASL JAAS configurations are per listener
//! and mechanism: `listener.name.<name>.<mechanism>.sasl.jaas.config`.

use std::collections::BTreeMap;

use crate::context::SecurityProtocol;

/// Properties that a `listener.name.<name>.` prefix may override.
const OVERRIDABLE: &[&str] = &[
    "ssl.keystore.type",
    "ssl.keystore.location",
    "ssl.keystore.key",
    "ssl.keystore.certificate.chain",
    "ssl.key.password",
    "ssl.truststore.type",
    "ssl.truststore.location",
    "ssl.truststore.certificates",
    "ssl.client.auth",
    "ssl.enabled.protocols",
    "ssl.cipher.suites",
    "ssl.principal.mapping.rules",
    "ssl.protocol",
    "ssl.endpoint.identification.algorithm",
    "sasl.enabled.mechanisms",
    "sasl.server.max.receive.size",
    "connections.max.reauth.ms",
];

/// The SASL mechanisms a JAAS configuration can be given for (`plain.sasl.jaas.config`).
const JAAS_MECHANISMS: &[&str] = &["plain", "scram-sha-256", "scram-sha-512"];

/// Whether `key` is a valid `listener.name.<name>.<property>` key; `Err` says why not.
pub fn check_prefixed_key(key: &str) -> Result<(), String> {
    let Some(rest) = key.strip_prefix("listener.name.") else {
        return Err("not a listener.name. property".into());
    };
    let Some((name, prop)) = rest.split_once('.') else {
        return Err("expected listener.name.<listener>.<property>".into());
    };
    if name.is_empty() {
        return Err("the listener name is empty".into());
    }
    if OVERRIDABLE.contains(&prop) {
        return Ok(());
    }
    if let Some(mech) = prop.strip_suffix(".sasl.jaas.config") {
        if JAAS_MECHANISMS.contains(&mech) {
            return Ok(());
        }
        return Err(format!(
            "no JAAS configuration is taken for SASL mechanism '{mech}' (supported: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)"
        ));
    }
    Err(format!(
        "'{prop}' cannot be set per listener (per-listener properties: ssl.*, sasl.enabled.mechanisms, connections.max.reauth.ms and <mechanism>.sasl.jaas.config)"
    ))
}

/// Parses `listener.security.protocol.map` (`NAME:PROTOCOL,...`).
pub fn parse_protocol_map(v: &str) -> Result<BTreeMap<String, SecurityProtocol>, String> {
    let mut out = BTreeMap::new();
    for entry in v.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, proto) = entry
            .split_once(':')
            .ok_or_else(|| format!("entry '{entry}' is not NAME:PROTOCOL"))?;
        let name = name.trim().to_ascii_uppercase();
        let protocol = SecurityProtocol::parse(proto).ok_or_else(|| {
            format!(
                "unknown security protocol '{}' for listener {name} (PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL)",
                proto.trim()
            )
        })?;
        if out.insert(name.clone(), protocol).is_some() {
            return Err(format!("listener {name} appears twice"));
        }
    }
    Ok(out)
}

/// The protocol of listener `name`: its map entry, else the protocol it is named after.
pub fn protocol_of(
    name: &str,
    map: &BTreeMap<String, SecurityProtocol>,
) -> Result<SecurityProtocol, String> {
    map.get(name)
        .copied()
        .or_else(|| SecurityProtocol::parse(name))
        .ok_or_else(|| {
            format!(
                "listener {name} has no entry in listener.security.protocol.map and is not named after a security protocol"
            )
        })
}

/// The security properties in force on listener `name`: every overridable property and JAAS
/// configuration, the `listener.name.<name>.` form winning over the global one.
pub fn listener_props(
    name: &str,
    get: &dyn Fn(&str) -> Option<String>,
    explicit: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let prefix = format!("listener.name.{}.", name.to_ascii_lowercase());
    let mut out = BTreeMap::new();
    for prop in OVERRIDABLE {
        if let Some(v) = explicit
            .get(&format!("{prefix}{prop}"))
            .cloned()
            .or_else(|| get(prop))
        {
            out.insert(prop.to_string(), v);
        }
    }
    for mech in JAAS_MECHANISMS {
        let key = format!("{mech}.sasl.jaas.config");
        if let Some(v) = explicit.get(&format!("{prefix}{key}")) {
            out.insert(key, v.clone());
        }
    }
    out
}

/// Whether a property's value must not be shown (DescribeConfigs, logs).
pub fn is_sensitive(key: &str) -> bool {
    key.ends_with("sasl.jaas.config")
        || key.ends_with("ssl.key.password")
        || key.ends_with("ssl.keystore.key")
        || key.ends_with("ssl.keystore.password")
        || key.ends_with("ssl.truststore.password")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixed_keys_follow_kafka() {
        assert!(check_prefixed_key("listener.name.sasl_ssl.ssl.keystore.location").is_ok());
        assert!(check_prefixed_key("listener.name.external.plain.sasl.jaas.config").is_ok());
        assert!(
            check_prefixed_key("listener.name.external.scram-sha-512.sasl.jaas.config").is_ok()
        );
        assert!(
            check_prefixed_key("listener.name.external.gssapi.sasl.jaas.config")
                .unwrap_err()
                .contains("gssapi")
        );
        assert!(check_prefixed_key("listener.name.external.log.dirs").is_err());
        assert!(check_prefixed_key("listener.name..ssl.client.auth").is_err());
    }

    #[test]
    fn protocol_map_and_names() {
        let map = parse_protocol_map("INTERNAL:SASL_SSL, external:plaintext").unwrap();
        assert_eq!(
            protocol_of("INTERNAL", &map).unwrap(),
            SecurityProtocol::SaslSsl
        );
        assert_eq!(
            protocol_of("EXTERNAL", &map).unwrap(),
            SecurityProtocol::Plaintext
        );
        assert_eq!(protocol_of("SSL", &map).unwrap(), SecurityProtocol::Ssl);
        assert!(protocol_of("OTHER", &map).unwrap_err().contains("OTHER"));
        assert!(parse_protocol_map("A:TLS").unwrap_err().contains("TLS"));
        assert!(parse_protocol_map("A").is_err());
        assert!(parse_protocol_map("A:SSL,a:SSL")
            .unwrap_err()
            .contains("twice"));
    }

    #[test]
    fn listener_overrides_win() {
        let mut explicit = BTreeMap::new();
        explicit.insert("ssl.client.auth".to_string(), "none".to_string());
        explicit.insert(
            "listener.name.internal.ssl.client.auth".to_string(),
            "required".to_string(),
        );
        explicit.insert(
            "listener.name.internal.plain.sasl.jaas.config".to_string(),
            "x".to_string(),
        );
        let get = |k: &str| explicit.get(k).cloned();
        let internal = listener_props("INTERNAL", &get, &explicit);
        assert_eq!(internal["ssl.client.auth"], "required");
        assert_eq!(internal["plain.sasl.jaas.config"], "x");
        let external = listener_props("EXTERNAL", &get, &explicit);
        assert_eq!(external["ssl.client.auth"], "none");
        assert!(!external.contains_key("plain.sasl.jaas.config"));
    }
}
