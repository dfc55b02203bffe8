//! docs/configuration.md lists every broker property and topic config Runnel declares, with the
//! default and meaning from the code (`BROKER_PROPS`, `TOPIC_PROPS`). The tables between the
//! `<!-- generated: ... -->` markers are generated; this test fails when they differ from the
//! code. Regenerate with `RUNNEL_BLESS=1 cargo test -p runnel-broker --test configuration_doc`.

use std::path::PathBuf;

use runnel_broker::config::{Usage, BROKER_PROPS};
use runnel_broker::topic_config::{ConfigType, TOPIC_PROPS};

fn type_name(t: ConfigType) -> &'static str {
    match t {
        ConfigType::Boolean => "boolean",
        ConfigType::Str => "string",
        ConfigType::Int => "int",
        ConfigType::Short => "short",
        ConfigType::Long => "long",
        ConfigType::Double => "double",
        ConfigType::List => "list",
        ConfigType::Class => "class",
        ConfigType::Password => "password",
    }
}

/// Markdown table cells: no pipes, no line breaks.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn default_cell(d: Option<&str>) -> String {
    match d {
        Some(v) => format!("`{}`", cell(v)),
        None => "(unset)".to_string(),
    }
}

fn env_name(key: &str) -> String {
    format!("RUNNEL_CFG_{}", key.to_ascii_uppercase().replace('.', "_"))
}

fn broker_table(usage: Usage) -> String {
    let mut out = String::from(
        "| Property | Type | Default | Docker environment | Meaning |\n|---|---|---|---|---|\n",
    );
    for p in BROKER_PROPS.iter().filter(|p| p.usage == usage) {
        out.push_str(&format!(
            "| `{}` | {} | {} | `{}` | {} |\n",
            p.name,
            type_name(p.ty),
            default_cell(p.default),
            env_name(p.name),
            cell(p.doc)
        ));
    }
    out
}

fn topic_table() -> String {
    let mut out = String::from(
        "| Topic config | Type | Default from broker property | Meaning |\n|---|---|---|---|\n",
    );
    for p in TOPIC_PROPS {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            p.name,
            type_name(p.ty),
            p.broker_synonym
                .map(|s| format!("`{s}`"))
                .unwrap_or_else(|| "(Kafka's default)".into()),
            cell(p.doc)
        ));
    }
    out
}

/// Replaces the text between `<!-- generated: NAME -->` and `<!-- end generated: NAME -->`.
fn splice(doc: &str, name: &str, body: &str) -> String {
    let begin = format!("<!-- generated: {name} -->\n");
    let end = format!("<!-- end generated: {name} -->");
    let b = doc
        .find(&begin)
        .unwrap_or_else(|| panic!("docs/configuration.md lacks the marker {begin:?}"))
        + begin.len();
    let e = doc[b..]
        .find(&end)
        .unwrap_or_else(|| panic!("docs/configuration.md lacks the marker {end:?}"))
        + b;
    format!("{}{}{}", &doc[..b], body, &doc[e..])
}

#[test]
fn configuration_reference_matches_the_code() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
    let doc = std::fs::read_to_string(&path).expect("docs/configuration.md");
    let mut want = splice(&doc, "broker properties", &broker_table(Usage::Used));
    want = splice(&want, "accepted properties", &broker_table(Usage::Accepted));
    want = splice(&want, "topic configs", &topic_table());
    if std::env::var_os("RUNNEL_BLESS").is_some() {
        std::fs::write(&path, &want).unwrap();
        return;
    }
    assert!(
        doc == want,
        "docs/configuration.md is out of date with crates/broker/src/config.rs and \
         topic_config.rs; regenerate with RUNNEL_BLESS=1 cargo test -p runnel-broker --test \
         configuration_doc"
    );
    for p in BROKER_PROPS {
        assert!(doc.contains(&format!("| `{}` |", p.name)), "{}", p.name);
    }
}

/// The example properties file is valid: every key known, every value accepted.
#[test]
fn example_server_properties_is_valid() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/server.properties");
    let text = std::fs::read_to_string(&path).expect("deploy/server.properties");
    let props = runnel_broker::config::parse_properties(&text).unwrap();
    let c = runnel_broker::BrokerConfig::from_properties(&props).unwrap();
    assert_eq!(c.node_id, 1);
    assert_eq!(c.listeners.len(), 2);
    assert_eq!(c.voters.len(), 3);
}
