//! Level 81: ACLs with `authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer`.
//!
//! Each test starts a server from `security_util::Spec::with_acls` (`super.users=User:admin`,
//! SCRAM users admin/alice/bob, an SSL listener mapping certificates to `User:<CN>`) and runs
//! one section of `tests/security/acls/acl_matrix.py`, whose header lists every check: each
//! API Runnel serves allowed and denied (Produce, Fetch, Metadata, ListOffsets, CreateTopics,
//! DeleteTopics, DeleteRecords, CreatePartitions, DescribeConfigs, IncrementalAlterConfigs,
//! the group APIs, the ACL and SCRAM APIs, ElectLeaders, InitProducerId), the super user, DENY
//! over ALLOW, PREFIXED and wildcard patterns, hosts, implied operations, certificate
//! principals, and `allow.everyone.if.no.acl.found` both ways. The expected outcome of each
//! check is Kafka's (KafkaApis, AclApis, StandardAuthorizer).
//!
//! Besides, `runnel acls` (the `kafka-acls.sh` flags) adds, lists and removes ACLs, which then
//! hold across a restart (they live in the metadata log), and the SETUP listener's anonymous
//! principal gets nothing it was not granted.

mod common;
mod security_util;

use std::process::Command;
use std::time::Duration;

use common::{run_with_timeout, Conn};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreateTopicsRequest};
use kafka_protocol::messages::{ApiKey, MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use security_util::*;

const TOPIC_AUTHORIZATION_FAILED: i16 = 29;

/// Runs one section of the matrix against a fresh server started from `spec`.
fn matrix(section: &str, spec: Spec) {
    if !CONFLUENT.available() {
        return;
    }
    let certs = Certs::get();
    let mut server = SecureServer::start(spec);
    let args = vec![
        "tests/security/acls/acl_matrix.py".to_string(),
        section.to_string(),
        server.bootstrap("SASL_SSL"),
        server.bootstrap("SSL"),
        certs.dir.display().to_string(),
    ];
    let out = run_program("python3", &args, Duration::from_secs(240));
    println!("{}", out.output);
    assert!(
        out.ok && out.result_ok(),
        "ACL matrix section {section} failed:\n{}\n{}",
        out.output,
        server.stderr_tail()
    );
    server.assert_healthy(&format!("after the {section} section"));
}

fn deny_by_default() -> Spec {
    Spec::with_acls(&Certs::get(), false).prop("auto.create.topics.enable", "true")
}

#[test]
fn topics() {
    matrix("topics", deny_by_default());
}

#[test]
fn groups() {
    matrix("groups", deny_by_default());
}

#[test]
fn cluster_apis_and_super_user() {
    matrix("cluster", deny_by_default());
}

#[test]
fn patterns_deny_wildcards_hosts_implied_operations() {
    matrix("patterns", deny_by_default());
}

#[test]
fn certificate_principals() {
    matrix("mtls", deny_by_default());
}

#[test]
fn allow_everyone_if_no_acl_found() {
    matrix(
        "allow-everyone",
        Spec::with_acls(&Certs::get(), true).prop("auto.create.topics.enable", "true"),
    );
}

#[test]
fn acl_apis_without_an_authorizer() {
    matrix("no-authorizer", Spec::standard(&Certs::get()));
}

// ---- runnel acls ---------------------------------------------------------------------------------

fn runnel(args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runnel"));
    cmd.args(args);
    run_with_timeout(&mut cmd, Duration::from_secs(60))
}

/// A client.properties for `--command-config`: SASL_SSL, SCRAM-SHA-512 as `user`.
fn command_config(dir: &std::path::Path, certs: &Certs, user: &str) -> String {
    let path = dir.join(format!("{user}.properties"));
    let props: Vec<(String, String)> = [
        ("security.protocol", "SASL_SSL".to_string()),
        ("sasl.mechanism", "SCRAM-SHA-512".into()),
        (
            "sasl.jaas.config",
            format!(
                "org.apache.kafka.common.security.scram.ScramLoginModule required \
                 username=\"{user}\" password=\"{}\";",
                password(user)
            ),
        ),
        ("ssl.truststore.type", "PEM".into()),
        ("ssl.truststore.location", certs.ca()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    write_properties(&path, &props);
    path.display().to_string()
}

#[test]
fn runnel_acls_add_list_remove() {
    let certs = Certs::get();
    let mut server = SecureServer::start(deny_by_default());
    let dir = tempfile::tempdir().unwrap();
    let admin = command_config(dir.path(), &certs, "admin");
    let alice = command_config(dir.path(), &certs, "alice");
    let bootstrap = server.bootstrap("SASL_SSL");
    let base = ["--bootstrap-server", bootstrap.as_str(), "--command-config"];
    let acls = |config: &str, rest: &[&str]| {
        let mut args = vec!["acls"];
        args.extend(base);
        args.push(config);
        args.extend(rest);
        runnel(&args)
    };

    // kafka-acls.sh --producer: Write, Describe and Create on the topic.
    let (ok, out) = acls(
        &admin,
        &[
            "--add",
            "--allow-principal",
            "User:alice",
            "--producer",
            "--topic",
            "orders",
        ],
    );
    assert!(ok, "runnel acls --add --producer:\n{out}");
    let (ok, out) = acls(
        &admin,
        &[
            "--add",
            "--allow-principal",
            "User:alice",
            "--operation",
            "Read",
            "--topic",
            "logs-",
            "--resource-pattern-type",
            "prefixed",
        ],
    );
    assert!(ok, "runnel acls --add prefixed:\n{out}");
    let (ok, out) = acls(&admin, &["--list", "--topic", "orders"]);
    assert!(ok, "runnel acls --list:\n{out}");
    for want in [
        "ResourcePattern(resourceType=TOPIC, name=orders, patternType=LITERAL)",
        "(principal=User:alice, host=*, operation=WRITE, permissionType=ALLOW)",
        "(principal=User:alice, host=*, operation=DESCRIBE, permissionType=ALLOW)",
        "(principal=User:alice, host=*, operation=CREATE, permissionType=ALLOW)",
    ] {
        assert!(out.contains(want), "--list does not show {want}:\n{out}");
    }
    let (ok, out) = acls(&admin, &["--list", "--principal", "User:alice"]);
    assert!(ok, "runnel acls --list --principal:\n{out}");
    assert!(
        out.contains("name=logs-, patternType=PREFIXED"),
        "--list --principal misses the prefixed ACL:\n{out}"
    );

    // alice may create "orders" (Create on the topic) but not list ACLs or add any.
    let (ok, out) = runnel(&[
        "topics",
        "--bootstrap-server",
        &bootstrap,
        "--command-config",
        &alice,
        "--create",
        "--topic",
        "orders",
        "--partitions",
        "1",
        "--replication-factor",
        "1",
    ]);
    assert!(ok, "alice creating orders:\n{out}");
    let (ok, out) = acls(&alice, &["--list"]);
    let lower = out.to_lowercase();
    assert!(
        !ok && (lower.contains("cluster_authorization_failed")
            || lower.contains("cluster authorization failed")),
        "alice listed ACLs, or the refusal does not say why:\n{out}"
    );

    // ACLs are metadata: they hold across a restart.
    server.restart();
    let (ok, out) = acls(&admin, &["--list", "--topic", "orders"]);
    assert!(
        ok && out.contains("operation=WRITE"),
        "ACLs lost on restart:\n{out}"
    );

    let (ok, out) = acls(
        &admin,
        &[
            "--remove",
            "--force",
            "--allow-principal",
            "User:alice",
            "--operation",
            "Write",
            "--topic",
            "orders",
        ],
    );
    assert!(ok, "runnel acls --remove:\n{out}");
    let (ok, out) = acls(&admin, &["--list", "--topic", "orders"]);
    assert!(ok, "runnel acls --list after --remove:\n{out}");
    assert!(
        !out.contains("operation=WRITE") && out.contains("operation=DESCRIBE"),
        "--remove did not remove exactly Write:\n{out}"
    );
    server.assert_healthy("after runnel acls");
}

#[test]
fn anonymous_on_a_plaintext_listener_gets_nothing_it_was_not_granted() {
    let certs = Certs::get();
    let mut server = SecureServer::start(Spec::with_acls(&certs, false));
    let mut conn = Conn::connect(server.setup_addr()).unwrap();
    let v = common::negotiate(&mut conn, ApiKey::CreateTopics).unwrap();
    let req = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("anon-topic")))
            .with_num_partitions(1)
            .with_replication_factor(1)])
        .with_timeout_ms(10_000);
    let resp = conn.request(v, &req).unwrap();
    assert_eq!(resp.topics[0].error_code, TOPIC_AUTHORIZATION_FAILED);
    let v = common::negotiate(&mut conn, ApiKey::Metadata).unwrap();
    let md = conn
        .request(v, &MetadataRequest::default().with_topics(None))
        .unwrap();
    assert!(
        md.topics
            .iter()
            .all(|t| t.name.as_ref().map(|n| n.to_string()).as_deref() != Some("anon-topic")),
        "the topic was created"
    );
    let (code, _, _) = common::produce_verbose(
        &mut conn,
        "__consumer_offsets",
        0,
        common::record_batch(&[b"x"], kafka_protocol::records::Compression::None),
    )
    .unwrap();
    assert_eq!(code, TOPIC_AUTHORIZATION_FAILED);
    server.assert_healthy("after anonymous requests");
}
