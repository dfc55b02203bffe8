//! The replica fetch service under mutual TLS on the gRPC port: a follower replicates from its
//! leader over TLS, while a caller without a certificate of the cluster's CA, or with a node
//! certificate of another node than the replica it claims, or fetching a partition it is not a
//! replica of, is refused.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use runnel_broker::replica::Role;
use runnel_broker::{BoundServer, BrokerConfig};
use runnel_replication::pb;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tonic::Code;

struct Pki {
    dir: PathBuf,
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new(dir: &Path, name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        Pki {
            dir,
            ca_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// Node `id`'s certificate (identity URI, 127.0.0.1, localhost) and key, as PEM.
    fn issue(&self, id: i32) -> (String, String) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("node {id}"));
        params.subject_alt_names = vec![
            SanType::URI(format!("urn:runnel:node:{id}").try_into().unwrap()),
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            SanType::DnsName("localhost".to_string().try_into().unwrap()),
        ];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// `rpc.ssl.*` properties of node `id`.
    fn props(&self, id: i32) -> Vec<(String, String)> {
        let (cert, key) = self.issue(id);
        let keystore = self.dir.join(format!("node-{id}.pem"));
        std::fs::write(&keystore, format!("{key}{cert}")).unwrap();
        let truststore = self.dir.join("truststore.pem");
        std::fs::write(&truststore, &self.ca_pem).unwrap();
        vec![
            (
                "rpc.ssl.keystore.location".into(),
                keystore.display().to_string(),
            ),
            (
                "rpc.ssl.truststore.location".into(),
                truststore.display().to_string(),
            ),
        ]
    }

    fn identity(&self, id: i32) -> Identity {
        let (cert, key) = self.issue(id);
        Identity::from_pem(cert, key)
    }

    fn client(&self, identity: Option<Identity>) -> ClientTlsConfig {
        let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca_pem));
        match identity {
            Some(identity) => tls.identity(identity),
            None => tls,
        }
    }
}

/// Nodes 1 and 2, their gRPC ports on mutual TLS.
async fn start_nodes(root: &Path, pki: &Pki) -> Vec<(BoundServer, String)> {
    common::start_nodes(root, |id| pki.props(id)).await
}

async fn fetch_stream(
    addr: &str,
    tls: Option<ClientTlsConfig>,
    req: pb::FetchRequest,
) -> Result<pb::FetchResponse, tonic::Status> {
    let endpoint = match tls {
        Some(tls) => Endpoint::from_shared(format!("https://{addr}"))
            .unwrap()
            .tls_config(tls)
            .unwrap(),
        None => Endpoint::from_shared(format!("http://{addr}")).unwrap(),
    };
    let channel = endpoint
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("{e:?}")))?;
    let mut client = pb::replication_client::ReplicationClient::new(channel);
    let mut inbound = client
        .fetch(futures::stream::iter(vec![req]))
        .await?
        .into_inner();
    match inbound.message().await? {
        Some(resp) => Ok(resp),
        None => Err(tonic::Status::aborted("the stream ended without an answer")),
    }
}

fn fetch_as(replica_id: i32, topic_id: uuid::Uuid, topic: &str, epoch: i32) -> pb::FetchRequest {
    pb::FetchRequest {
        replica_id,
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes: 1 << 20,
        partitions: vec![pb::PartitionFetch {
            topic_id: topic_id.as_bytes().to_vec().into(),
            topic: topic.to_string(),
            partition: 0,
            current_leader_epoch: epoch,
            fetch_offset: 0,
            last_fetched_epoch: -1,
            log_start_offset: 0,
            partition_max_bytes: 1 << 20,
        }],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_fetch_over_mutual_tls_checks_who_fetches() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "cluster");
    let other = Pki::new(dir.path(), "other");
    let nodes = start_nodes(dir.path(), &pki).await;
    let broker = |id: i32| &nodes[id as usize - 1].0.broker;
    let rpc_addr = |id: i32| nodes[id as usize - 1].1.clone();

    // "shared" on both nodes, "solo" on node 1 only; both led by node 1.
    common::create_topics(
        broker(1),
        vec![
            common::topic("shared", vec![1, 2]),
            common::topic("solo", vec![1]),
        ],
    )
    .await;

    // The follower fetches from the leader over TLS: the leader sees its fetches.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (solo_id, solo_epoch) = loop {
        let shared = broker(1).partitions().get_by("shared", 0);
        let solo = broker(1).partitions().get_by("solo", 0);
        if let (Some(shared), Some(solo)) = (shared, solo) {
            let fetched = match &*shared.role() {
                Role::Leader(st) => st.follower(2).is_some_and(|p| p.last_fetch_ms > 0),
                _ => false,
            };
            let l = solo.leadership();
            if fetched && l.is_leader {
                break (solo.topic_id, l.leader_epoch);
            }
        }
        assert!(
            Instant::now() < deadline,
            "node 2 never fetched from node 1 over TLS"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let leader = rpc_addr(1);

    // Node 2's certificate cannot fetch as node 3 (nor as the leader itself).
    for claimed in [3, 1] {
        let status = fetch_stream(
            &leader,
            Some(pki.client(Some(pki.identity(2)))),
            fetch_as(claimed, solo_id, "solo", solo_epoch),
        )
        .await
        .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    }
    // As itself, node 2 is answered, but "solo" is not its partition.
    let resp = fetch_stream(
        &leader,
        Some(pki.client(Some(pki.identity(2)))),
        fetch_as(2, solo_id, "solo", solo_epoch),
    )
    .await
    .unwrap();
    assert_eq!(resp.partitions.len(), 1);
    assert_eq!(
        resp.partitions[0].error_code,
        i32::from(kafka_protocol::error::ResponseError::NotLeaderOrFollower.code()),
        "{resp:?}"
    );
    assert!(resp.partitions[0].records.is_empty());

    // Without a certificate of the cluster's CA nothing is answered.
    for (who, tls) in [
        ("plaintext", None),
        ("no certificate", Some(pki.client(None))),
        (
            "another CA's certificate",
            Some(pki.client(Some(other.identity(2)))),
        ),
    ] {
        let result = fetch_stream(&leader, tls, fetch_as(2, solo_id, "solo", solo_epoch)).await;
        let status = result.expect_err(who);
        assert_ne!(status.code(), Code::Ok, "{who}");
        assert_ne!(status.code(), Code::PermissionDenied, "{who}: {status:?}");
    }

    for (server, _) in nodes {
        server.broker.controller().node().shutdown().await;
    }
}

#[test]
fn rpc_ssl_locations_come_together() {
    let props = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let both = BrokerConfig::from_properties(&props(&[
        ("rpc.ssl.keystore.location", "/etc/runnel/node.pem"),
        ("rpc.ssl.truststore.location", "/etc/runnel/ca.pem"),
    ]))
    .unwrap();
    let tls = both
        .node_config()
        .rpc_tls
        .expect("carried into the node config");
    assert_eq!(tls.keystore_location, PathBuf::from("/etc/runnel/node.pem"));
    assert_eq!(tls.truststore_location, PathBuf::from("/etc/runnel/ca.pem"));
    assert!(BrokerConfig::from_properties(&[])
        .unwrap()
        .node_config()
        .rpc_tls
        .is_none());
    for half in ["rpc.ssl.keystore.location", "rpc.ssl.truststore.location"] {
        let error = BrokerConfig::from_properties(&props(&[(half, "/x.pem")]))
            .expect_err("one without the other is refused");
        assert!(error.to_string().contains(half), "{error}");
    }
}
