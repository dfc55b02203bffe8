//! Level 80 (cluster): mutual TLS between nodes.
//!
//! Three combined broker+controller nodes whose gRPC traffic (Raft, broker registration and
//! heartbeats, forwarded admin requests, replica fetches) runs over TLS with
//! `rpc.ssl.keystore.location` and `rpc.ssl.truststore.location`; each node's certificate
//! from `scripts/dev-certs.sh` names it with the SAN URI `urn:runnel:node:<id>`.
//!
//! - The cluster forms, a replicated topic is created through a follower (ForwardAdmin) and an
//!   acks=all produce is acknowledged (replica fetches over TLS).
//! - A third node that cannot prove who it is stays out while the two others serve: one whose
//!   certificate comes from another CA, one presenting node 2's certificate (its messages name
//!   node 3, its certificate names node 2: PERMISSION_DENIED), and one without TLS at all.

mod cluster;
mod common;
mod security_util;

use std::time::{Duration, Instant};

use security_util::*;

/// How long the refused node gets to try; it must not appear in that time.
const OUTSIDE_FOR: Duration = Duration::from_secs(8);

#[test]
fn cluster_forms_and_replicates_over_mutual_tls() {
    let certs = Certs::get();
    let mut c = SecureCluster::start(3, |id| rpc_tls(&certs, &format!("node-{id}.pem")));
    c.wait_brokers(&[1, 2, 3], Duration::from_secs(60));
    let (_, controller) = c.brokers_seen_by(1).unwrap();
    let via = (1..=3).find(|&id| id != controller).unwrap();
    // Through a node that is not the active controller: ForwardAdmin over TLS.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match cluster::create_topic_with_configs(
            c.addr(via),
            "tls-replicated",
            1,
            3,
            &[("min.insync.replicas", "3")],
            10_000,
        ) {
            Ok((0, _)) | Ok((36, _)) => break,
            other => assert!(
                Instant::now() < deadline,
                "CreateTopics through node {via}: {other:?}\n{}",
                c.logs()
            ),
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    // acks=all with min.insync.replicas=3: acknowledged only once both followers fetched the
    // batch over TLS.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let leader = cluster::metadata(c.addr(via))
            .ok()
            .and_then(|v| {
                v.topics
                    .get("tls-replicated")
                    .and_then(|p| p.get(&0))
                    .cloned()
            })
            .filter(|p| p.leader >= 0 && p.isr.len() == 3);
        if let Some(p) = leader {
            let mut conn = common::Conn::connect(c.addr(p.leader)).unwrap();
            let batch =
                common::record_batch(&[b"over-tls"], kafka_protocol::records::Compression::None);
            if let Ok((0, offset)) = common::produce(&mut conn, "tls-replicated", 0, batch) {
                assert_eq!(offset, 0);
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no acks=all produce acknowledged by a full ISR\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    for id in 1..=3 {
        c.assert_running(id);
    }
}

/// Starts nodes 1 and 2 with their own certificates and node 3 with `node3`, and checks that
/// 1 and 2 serve as a cluster of two while node 3 never registers.
fn third_node_stays_out(node3: Vec<(String, String)>, why: &str) {
    let certs = Certs::get();
    let mut c = SecureCluster::start(3, |id| {
        if id == 3 {
            node3.clone()
        } else {
            rpc_tls(&certs, &format!("node-{id}.pem"))
        }
    });
    c.wait_brokers(&[1, 2], Duration::from_secs(60));
    let until = Instant::now() + OUTSIDE_FOR;
    while Instant::now() < until {
        for id in [1, 2] {
            let (brokers, _) = c.brokers_seen_by(id).unwrap();
            assert_eq!(
                brokers,
                vec![1, 2],
                "node 3 ({why}) got into the cluster\n{}",
                c.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    c.assert_running(1);
    c.assert_running(2);
}

#[test]
fn node_with_a_certificate_from_another_ca_stays_out() {
    let certs = Certs::get();
    // evil.pem names urn:runnel:node:1 and trusts its own CA: a perfect impostor but for the CA.
    third_node_stays_out(
        vec![
            ("rpc.ssl.keystore.location".into(), certs.path("evil.pem")),
            (
                "rpc.ssl.truststore.location".into(),
                certs.path("evil-ca.pem"),
            ),
        ],
        "certificate from another CA",
    );
}

#[test]
fn node_presenting_another_nodes_certificate_stays_out() {
    let certs = Certs::get();
    third_node_stays_out(rpc_tls(&certs, "node-2.pem"), "node 2's certificate");
}

#[test]
fn node_without_tls_stays_out() {
    third_node_stays_out(Vec::new(), "plaintext gRPC");
}
