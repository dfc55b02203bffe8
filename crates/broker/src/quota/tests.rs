use std::sync::Arc;

use kafka_protocol::messages::ApiKey;
use runnel_controller::records::{ClientQuotaRecord, QuotaValue, Record};

use super::*;
use crate::context::{ConnectionContext, KafkaPrincipal, SecurityProtocol};

fn set(image: &mut MetadataImage, user: Option<&str>, client: Option<&str>, key: &str, v: f64) {
    let name = |n: &str| {
        if n.is_empty() {
            QuotaName::Default
        } else {
            QuotaName::Name(n.to_string())
        }
    };
    image
        .apply(&Record::ClientQuota(ClientQuotaRecord {
            entity: QuotaEntity {
                user: user.map(name),
                client_id: client.map(name),
            },
            key: key.into(),
            value: Some(QuotaValue(v)),
        }))
        .unwrap();
}

fn ctx(user: &str, client: &str) -> RequestContext {
    let mut conn = ConnectionContext::new(
        Arc::from("PLAINTEXT"),
        SecurityProtocol::Plaintext,
        "127.0.0.1:1".parse().unwrap(),
    );
    conn.principal = Arc::new(KafkaPrincipal::user(user));
    RequestContext::new(conn, ApiKey::Produce, 9, 1, Some(client.to_string()))
}

#[test]
fn the_most_specific_entity_wins_and_defaults_measure_each_client_alone() {
    let mut image = MetadataImage::new();
    let p = QuotaKind::Produce;
    assert_eq!(resolve(&image, p, "alice", "c1"), None);
    set(&mut image, None, Some(""), "producer_byte_rate", 8.0);
    let got = resolve(&image, p, "alice", "c1").unwrap();
    assert_eq!(got.quota, 8.0);
    assert_eq!(
        got.sensor,
        SensorKey {
            user: None,
            client_id: Some("c1".into())
        }
    );
    set(&mut image, None, Some("c1"), "producer_byte_rate", 7.0);
    assert_eq!(resolve(&image, p, "alice", "c1").unwrap().quota, 7.0);
    assert_eq!(resolve(&image, p, "alice", "c2").unwrap().quota, 8.0);
    set(&mut image, Some(""), None, "producer_byte_rate", 6.0);
    assert_eq!(resolve(&image, p, "alice", "c1").unwrap().quota, 6.0);
    set(&mut image, Some(""), Some(""), "producer_byte_rate", 5.0);
    set(&mut image, Some(""), Some("c1"), "producer_byte_rate", 4.0);
    assert_eq!(resolve(&image, p, "alice", "c1").unwrap().quota, 4.0);
    assert_eq!(resolve(&image, p, "alice", "c2").unwrap().quota, 5.0);
    set(&mut image, Some("alice"), None, "producer_byte_rate", 3.0);
    set(
        &mut image,
        Some("alice"),
        Some(""),
        "producer_byte_rate",
        2.0,
    );
    assert_eq!(resolve(&image, p, "alice", "c2").unwrap().quota, 2.0);
    set(
        &mut image,
        Some("alice"),
        Some("c1"),
        "producer_byte_rate",
        1.0,
    );
    let got = resolve(&image, p, "alice", "c1").unwrap();
    assert_eq!(got.quota, 1.0);
    assert_eq!(
        got.sensor,
        SensorKey {
            user: Some("alice".into()),
            client_id: Some("c1".into())
        }
    );
    // A user-level quota measures the user across client ids.
    let got = resolve(&image, p, "bob", "c9").unwrap();
    assert_eq!(got.quota, 5.0);
    // Other kinds are looked up on their own key.
    assert_eq!(resolve(&image, QuotaKind::Fetch, "alice", "c1"), None);
}

#[test]
fn a_client_over_its_quota_is_throttled_and_another_is_not() {
    let mut image = MetadataImage::new();
    set(&mut image, None, Some("slow"), "producer_byte_rate", 1000.0);
    let q = QuotaManager::new(QuotaWindows::default());
    let (slow, fast) = (ctx("ANONYMOUS", "slow"), ctx("ANONYMOUS", "fast"));
    // 10 s worth of quota at once is within it (a new sensor spreads it over ten samples)...
    assert_eq!(q.record(QuotaKind::Produce, &image, &slow, 10_000.0, 0), 0);
    // ...twice that is not: 20 000 over 10 s is 2000/s, one window of excess.
    assert_eq!(
        q.record(QuotaKind::Produce, &image, &slow, 10_000.0, 0),
        10_000
    );
    assert_eq!(q.record(QuotaKind::Produce, &image, &fast, 1e9, 0), 0);
    // Internal requests are never measured.
    let mut internal = slow.clone();
    internal.internal = true;
    assert_eq!(q.record(QuotaKind::Produce, &image, &internal, 1e9, 0), 0);
    assert_eq!(
        q.max_in_window(QuotaKind::Produce, &image, &slow),
        Some(500)
    );
    assert_eq!(q.max_in_window(QuotaKind::Produce, &image, &fast), None);
    // Taking a recording back lifts the throttle.
    q.unrecord(QuotaKind::Produce, &image, &slow, 10_000.0, 0);
    assert_eq!(q.throttle(QuotaKind::Produce, &image, &slow, 0), 0);
}

#[test]
fn idle_sensors_are_forgotten() {
    let mut image = MetadataImage::new();
    set(&mut image, None, Some(""), "producer_byte_rate", 1000.0);
    let q = QuotaManager::new(QuotaWindows::default());
    for i in 0..100 {
        q.record(
            QuotaKind::Produce,
            &image,
            &ctx("u", &format!("c{i}")),
            1.0,
            1000,
        );
    }
    assert_eq!(q.sensor_count(), 100);
    q.record(QuotaKind::Produce, &image, &ctx("u", "late"), 1.0, 30_000);
    assert_eq!(q.sensor_count(), 1);
}

#[test]
fn the_mutation_quota_is_a_bucket() {
    let mut image = MetadataImage::new();
    set(
        &mut image,
        Some("admin"),
        None,
        "controller_mutation_rate",
        1.0,
    );
    let q = QuotaManager::new(QuotaWindows::default());
    let admin = ctx("admin", "tool");
    let k = QuotaKind::ControllerMutation;
    // Eleven partitions at once fit the burst; the twelfth takes the balance below zero.
    assert_eq!(q.throttle(k, &image, &admin, 0), 0);
    assert_eq!(q.record(k, &image, &admin, 11.0, 0), 0);
    assert_eq!(q.record(k, &image, &admin, 3.0, 0), 3000);
    assert_eq!(q.throttle(k, &image, &admin, 1000), 2000);
}
