//! Broker lifecycle against the controller quorum: registration and unfencing, fencing when
//! heartbeats stop (with partition leadership moving away, as KRaft does), re-registration of a
//! restarted broker, and a broker-only node that joins the metadata log as a learner.

mod common;

use std::time::{Duration, Instant};

use common::{
    assert_created, create_topic, endpoint, init_tracing, Cluster, BROKER_HEARTBEAT,
    REQUEST_TIMEOUT, SESSION,
};
use runnel_controller::BrokerLifecycle;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_broker_is_fenced_and_loses_its_leaderships() {
    init_tracing();
    let mut cluster = Cluster::new(3, 0, 1000);
    cluster.start_all().await;
    let leader = cluster.leader(Duration::from_secs(10)).await;
    cluster.register_brokers(Duration::from_secs(10)).await;
    let (resp, index) = cluster
        .node(leader)
        .admin(create_topic("spread", 6, 3), REQUEST_TIMEOUT)
        .await
        .unwrap();
    assert_created(&resp);
    let controller = cluster.node(leader).clone();
    controller.wait_applied(index, Duration::from_secs(5)).await;
    let image = controller.image().borrow().clone();
    assert!(
        image.image.brokers().all(|b| !b.fenced),
        "{:?}",
        image.image
    );
    let topic = image.image.topic_by_name("spread").unwrap().clone();

    // A follower that leads some partitions goes silent.
    let victim = (1..=3)
        .filter(|id| *id != leader)
        .find(|id| topic.partitions.values().any(|p| p.leader == *id))
        .expect("placement spreads leaders over the brokers");
    let stopped = Instant::now();
    cluster.stop(victim).await;

    let mut image_rx = controller.image();
    let fenced = tokio::time::timeout(
        SESSION + Duration::from_secs(3),
        image_rx.wait_for(|a| a.image.broker(victim).is_some_and(|b| b.fenced)),
    )
    .await
    // Drop the borrow at once: a held watch borrow blocks the state machine's next publish.
    .map(|r| r.is_ok());
    let elapsed = stopped.elapsed();
    assert_eq!(
        fenced,
        Ok(true),
        "broker {victim} not fenced within {elapsed:?}"
    );
    println!(
        "broker {victim} fenced {} ms after it stopped (session timeout {} ms)",
        elapsed.as_millis(),
        SESSION.as_millis()
    );
    // Not before its session could have expired (last heartbeat <= the stop).
    assert!(
        elapsed + Duration::from_millis(300) >= SESSION,
        "fenced too early: {elapsed:?}"
    );
    let image = controller.image().borrow().clone();
    let after = image.image.topic_by_name("spread").unwrap();
    for (p, reg) in &after.partitions {
        assert_ne!(
            reg.leader, victim,
            "partition {p} still led by the fenced broker"
        );
        assert!(
            !reg.isr.contains(&victim),
            "partition {p} ISR keeps the fenced broker"
        );
        let before = &topic.partitions[p];
        if before.leader == victim {
            assert!(
                reg.leader_epoch > before.leader_epoch,
                "partition {p}: epoch not bumped"
            );
        }
    }

    // It comes back under a new incarnation, re-registers and is unfenced.
    let back = cluster.start(victim).await;
    let mut lifecycle = back.start_broker_lifecycle(endpoint(victim), None);
    tokio::time::timeout(
        Duration::from_secs(10),
        lifecycle.wait_for(|s| s.registered && !s.fenced),
    )
    .await
    .expect("restarted broker unfenced")
    .unwrap();
    let mut image_rx = controller.image();
    let incarnation = back.incarnation_id();
    tokio::time::timeout(
        Duration::from_secs(5),
        image_rx.wait_for(|a| {
            a.image
                .broker(victim)
                .is_some_and(|b| !b.fenced && b.incarnation_id == incarnation)
        }),
    )
    .await
    .expect("the controller sees the new incarnation unfenced")
    .unwrap();
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_only_node_follows_the_log_as_a_learner() {
    init_tracing();
    let mut cluster = Cluster::new(3, 1, 1000);
    cluster.start_all().await;
    cluster.leader(Duration::from_secs(10)).await;
    // Node 4 has no vote: it registers through the voters and is added as a learner.
    cluster.register_brokers(Duration::from_secs(15)).await;

    let observer = cluster.node(4).clone();
    let (resp, index) = observer
        .admin(create_topic("seen-by-all", 4, 3), REQUEST_TIMEOUT)
        .await
        .unwrap();
    assert_created(&resp);
    assert!(observer.wait_applied(index, Duration::from_secs(5)).await);
    assert!(observer
        .image()
        .borrow()
        .image
        .topic_by_name("seen-by-all")
        .is_some());

    let quorum = observer.describe_quorum(REQUEST_TIMEOUT).await.unwrap();
    let voters: Vec<i32> = quorum.voters.iter().map(|v| v.replica_id).collect();
    let observers: Vec<i32> = quorum.observers.iter().map(|v| v.replica_id).collect();
    assert_eq!(voters.len(), 3, "{quorum:?}");
    assert!(!voters.contains(&4));
    assert_eq!(observers, vec![4]);
    assert_eq!(observer.active_controller(), Some(quorum.leader_id));
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_cut_off_from_the_quorum_fences_itself() {
    init_tracing();
    let mut cluster = Cluster::new(3, 1, 1000);
    cluster.start_all().await;
    let leader = cluster.leader(Duration::from_secs(10)).await;
    cluster.register_brokers(Duration::from_secs(15)).await;
    let observer = cluster.node(4).clone();
    let mut lifecycle = observer.start_broker_lifecycle(endpoint(4), None);
    assert_eq!(
        *lifecycle.borrow(),
        BrokerLifecycle {
            registered: true,
            fenced: false
        }
    );

    // The whole quorum goes away, the leader first: no heartbeat is answered any more.
    let first_stop = Instant::now();
    cluster.stop(leader).await;
    for id in 1..=3 {
        cluster.stop(id).await;
    }
    let all_stopped = Instant::now();
    let fenced = tokio::time::timeout(
        SESSION + Duration::from_secs(2),
        lifecycle.wait_for(|s| s.fenced),
    )
    .await
    .map(|r| r.is_ok());
    let since_first = first_stop.elapsed();
    assert_eq!(
        fenced,
        Ok(true),
        "broker 4 still serving {:?} after losing the quorum",
        all_stopped.elapsed()
    );
    println!(
        "broker 4 fenced itself {} ms after the quorum started to go away (session timeout {} ms)",
        since_first.as_millis(),
        SESSION.as_millis()
    );
    // Its last answered heartbeat was sent at most an interval (plus a call) before the first
    // stop, and it fences itself a session timeout after that send.
    assert!(
        since_first + BROKER_HEARTBEAT + Duration::from_millis(300) >= SESSION,
        "fenced too early: {since_first:?}"
    );
    assert!(lifecycle.borrow().registered);

    // The quorum comes back: the first answered heartbeat publishes the controller's answer.
    for id in 1..=3 {
        cluster.start(id).await;
    }
    tokio::time::timeout(
        Duration::from_secs(15),
        lifecycle.wait_for(|s| s.registered && !s.fenced),
    )
    .await
    .expect("broker 4 unfenced once the controller answers again")
    .unwrap();
    cluster.stop_all().await;
}
