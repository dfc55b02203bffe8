//! A broker id serves as one process at a time: a second incarnation is refused with
//! DUPLICATE_BROKER_REGISTRATION while the first is unfenced and its session live, and a broker
//! restarted right after a crash comes back once the old session expires.

mod common;

use std::time::{Duration, Instant};

use common::{init_tracing, Cluster, SESSION};
use runnel_controller::rpc::pb::controller as cpb;
use runnel_controller::rpc::pb::controller::controller_client::ControllerClient;

fn register(broker_id: i32, incarnation: uuid::Uuid) -> cpb::RegisterBrokerRequest {
    cpb::RegisterBrokerRequest {
        broker_id,
        incarnation_id: Some(cpb::Uuid {
            value: incarnation.as_bytes().to_vec(),
        }),
        endpoints: vec![cpb::BrokerEndpoint {
            name: "PLAINTEXT".into(),
            host: "127.0.0.1".into(),
            port: 9999,
        }],
        rack: None,
        rpc_address: "127.0.0.1:1".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_broker_waits_for_its_previous_session() {
    init_tracing();
    let mut cluster = Cluster::new(3, 0, 1000);
    cluster.start_all().await;
    let leader = cluster.leader(Duration::from_secs(10)).await;
    cluster.register_brokers(Duration::from_secs(10)).await;
    let victim = cluster.other_than(leader);
    let old = cluster.node(victim).incarnation_id();

    // A process that dies without a controlled shutdown: its session is still live.
    cluster.stop(victim).await;
    let stopped = Instant::now();
    let addr = cluster.configs[&leader].rpc_advertised.clone();
    let mut raw = ControllerClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let impostor = raw
        .register_broker(register(victim, uuid::Uuid::new_v4()))
        .await
        .unwrap()
        .into_inner();
    let error = impostor.error.expect("the old incarnation is live");
    assert_eq!(
        error.code,
        cpb::ErrorCode::DuplicateBrokerRegistration as i32,
        "{error:?}"
    );
    assert!(
        stopped.elapsed() < SESSION,
        "the check ran within the session"
    );
    let image = cluster.node(leader).image().borrow().clone();
    assert_eq!(image.image.broker(victim).unwrap().incarnation_id, old);

    // Restarted at once: registration is retried until the old session expires.
    let restarted = Instant::now();
    let node = cluster.start(victim).await;
    let mut lifecycle = node.start_broker_lifecycle(common::endpoint(victim), None);
    tokio::time::timeout(
        Duration::from_secs(10),
        lifecycle.wait_for(|s| s.registered && !s.fenced),
    )
    .await
    .expect("the restarted broker registers once the old session expires")
    .unwrap();
    let back = restarted.elapsed();
    eprintln!("restarted broker {victim} unfenced after {back:?} (session {SESSION:?})");
    assert!(
        back < SESSION * 4,
        "a restart costs about one session: {back:?}"
    );
    let image = cluster.node(leader).image().borrow().clone();
    let b = image.image.broker(victim).unwrap();
    assert_eq!(b.incarnation_id, node.incarnation_id());
    assert!(!b.fenced);
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_after_controlled_shutdown_registers_at_once() {
    init_tracing();
    let mut cluster = Cluster::new(3, 0, 1000);
    cluster.start_all().await;
    let leader = cluster.leader(Duration::from_secs(10)).await;
    cluster.register_brokers(Duration::from_secs(10)).await;
    let victim = cluster.other_than(leader);
    cluster
        .node(victim)
        .controlled_shutdown(Duration::from_secs(10))
        .await
        .unwrap();
    cluster.stop(victim).await;

    // Fenced by its controlled shutdown: a new incarnation is accepted at once.
    let restarted = Instant::now();
    let node = cluster.start(victim).await;
    let mut lifecycle = node.start_broker_lifecycle(common::endpoint(victim), None);
    tokio::time::timeout(
        Duration::from_secs(10),
        lifecycle.wait_for(|s| s.registered && !s.fenced),
    )
    .await
    .expect("registered after a controlled shutdown")
    .unwrap();
    let back = restarted.elapsed();
    eprintln!("broker {victim} unfenced {back:?} after a clean restart");
    assert!(back < SESSION, "no session to wait for: {back:?}");
    cluster.stop_all().await;
}
