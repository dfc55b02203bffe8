//! Controlled shutdown and preferred-leader election on a three-node quorum over real gRPC:
//! a broker that asks to shut down hands its leaderships to other in-sync replicas, is fenced
//! once the others have applied the hand-over, and its `controlled_shutdown` resolves; a
//! restarted broker that is back in the ISR gets its preferred leaderships back from the
//! automatic rebalance; ElectLeaders answers per partition; a shutdown that cannot complete
//! (another broker went silent and is not fenced yet) times out and completes later.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{assert_created, create_topic, endpoint, init_tracing, Cluster, REQUEST_TIMEOUT};
use runnel_controller::api::{
    AdminRequest, AdminResponse, AlterPartitionRequest, ControllerError, ElectLeadersRequest,
    ElectionType,
};
use runnel_controller::image::{MetadataImage, TopicImage};
use runnel_controller::ControllerNode;

fn topic(node: &ControllerNode, name: &str) -> TopicImage {
    node.image()
        .borrow()
        .image
        .topic_by_name(name)
        .unwrap()
        .clone()
}

fn image(node: &ControllerNode) -> MetadataImage {
    node.image().borrow().image.clone()
}

/// Every leader is an active ISR member.
fn check_leaders(image: &MetadataImage, name: &str) {
    for (p, reg) in &image.topic_by_name(name).unwrap().partitions {
        if reg.leader >= 0 {
            assert!(reg.isr.contains(&reg.leader), "{name}-{p}: {reg:?}");
            let b = image.broker(reg.leader).unwrap();
            assert!(b.is_active(), "{name}-{p} led by inactive {b:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controlled_shutdown_hands_leaderships_over_and_the_rebalance_brings_them_back() {
    init_tracing();
    let mut cluster = Cluster::new(3, 0, 1000);
    for cfg in cluster.configs.values_mut() {
        cfg.leader_imbalance_check_interval = Some(Duration::from_millis(300));
    }
    cluster.start_all().await;
    let leader = cluster.leader(Duration::from_secs(10)).await;
    cluster.register_brokers(Duration::from_secs(10)).await;
    let controller = cluster.node(leader).clone();
    let (resp, index) = controller
        .admin(create_topic("cs", 6, 3), REQUEST_TIMEOUT)
        .await
        .unwrap();
    assert_created(&resp);
    assert!(controller.wait_applied(index, Duration::from_secs(5)).await);
    let before = topic(&controller, "cs");

    // A broker (not the active controller) that leads some partitions shuts down.
    let victim = (1..=3)
        .filter(|id| *id != leader)
        .find(|id| before.partitions.values().any(|p| p.leader == *id))
        .expect("placement spreads leaders over the brokers");
    let led: Vec<i32> = before
        .partitions
        .iter()
        .filter(|(_, p)| p.leader == victim)
        .map(|(i, _)| *i)
        .collect();
    let node = cluster.node(victim).clone();
    let lifecycle = node.start_broker_lifecycle(endpoint(victim), None);
    assert!(!lifecycle.borrow().fenced);
    let started = Instant::now();
    node.controlled_shutdown(Duration::from_secs(10))
        .await
        .expect("controlled shutdown granted");
    println!(
        "broker {victim} (leading {led:?}) shut down in {} ms",
        started.elapsed().as_millis()
    );
    assert!(
        lifecycle.borrow().fenced,
        "the broker's lifecycle is fenced"
    );
    // A second call waits for the same (granted) outcome.
    node.controlled_shutdown(Duration::from_millis(100))
        .await
        .unwrap();

    let after_image = image(&controller);
    let b = after_image.broker(victim).unwrap();
    assert!(b.fenced && b.in_controlled_shutdown, "{b:?}");
    check_leaders(&after_image, "cs");
    let after = after_image.topic_by_name("cs").unwrap();
    for (p, reg) in &after.partitions {
        assert_ne!(reg.leader, victim, "cs-{p} still led by {victim}");
        assert!(reg.leader >= 0, "cs-{p} leaderless with two live replicas");
        assert!(!reg.isr.contains(&victim), "cs-{p} ISR keeps {victim}");
        let old = &before.partitions[p];
        if led.contains(p) {
            assert_eq!(reg.leader_epoch, old.leader_epoch + 1, "cs-{p}");
        } else {
            assert_eq!(
                (reg.leader, reg.leader_epoch),
                (old.leader, old.leader_epoch),
                "cs-{p} moved although {victim} did not lead it"
            );
        }
    }
    // Granted only once the other brokers had applied the hand-over.
    for id in (1..=3).filter(|id| *id != victim) {
        let seen = topic(cluster.node(id), "cs");
        assert!(
            seen.partitions.values().all(|p| p.leader != victim),
            "node {id} still sees {victim} leading"
        );
    }

    // It restarts under a new incarnation: no longer in controlled shutdown.
    cluster.stop(victim).await;
    let back = cluster.start(victim).await;
    let mut lifecycle = back.start_broker_lifecycle(endpoint(victim), None);
    tokio::time::timeout(
        Duration::from_secs(10),
        lifecycle.wait_for(|s| s.registered && !s.fenced),
    )
    .await
    .expect("restarted broker unfenced")
    .unwrap();
    let mut rx = controller.image();
    let incarnation = back.incarnation_id();
    tokio::time::timeout(
        Duration::from_secs(5),
        rx.wait_for(|a| {
            a.image
                .broker(victim)
                .is_some_and(|b| b.incarnation_id == incarnation && b.is_active())
        }),
    )
    .await
    .expect("the controller sees the new incarnation active")
    .unwrap();

    // Out of the ISR, it is no preferred leader that can be elected.
    let all_cs = ElectLeadersRequest {
        election_type: ElectionType::Preferred,
        partitions: Some(vec![("cs".into(), (0..6).collect())]),
    };
    let (resp, index) = back
        .admin(AdminRequest::ElectLeaders(all_cs.clone()), REQUEST_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(index, 0, "nothing to elect");
    let AdminResponse::ElectLeaders(r) = resp else {
        panic!("{resp:?}")
    };
    let results: BTreeMap<i32, Result<(), ControllerError>> =
        r.topics.into_iter().flat_map(|(_, ps)| ps).collect();
    for p in 0..6 {
        match &results[&p] {
            Err(ControllerError::PreferredLeaderNotAvailable(_)) => assert!(led.contains(&p)),
            Err(ControllerError::ElectionNotNeeded(_)) => assert!(!led.contains(&p)),
            other => panic!("cs-{p}: {other:?}"),
        }
    }

    // Its partitions' leaders take it back into their ISRs (as replication will once it has
    // caught up); the rebalance then makes it their leader again.
    let now = topic(&controller, "cs");
    for p in &led {
        let reg = &now.partitions[p];
        let current = cluster.node(reg.leader).clone();
        let mut isr = reg.isr.clone();
        isr.push(victim);
        current
            .alter_partition(
                AlterPartitionRequest {
                    broker_id: reg.leader,
                    incarnation_id: current.incarnation_id(),
                    topic_id: now.topic_id,
                    partition: *p,
                    leader_epoch: reg.leader_epoch,
                    partition_epoch: reg.partition_epoch,
                    new_isr: isr,
                },
                REQUEST_TIMEOUT,
            )
            .await
            .unwrap();
    }
    let mut rx = controller.image();
    let rebalanced = tokio::time::timeout(
        Duration::from_secs(10),
        rx.wait_for(|a| {
            let t = a.image.topic_by_name("cs").unwrap();
            led.iter().all(|p| t.partitions[p].leader == victim)
        }),
    )
    .await
    .map(|r| r.is_ok());
    assert_eq!(
        rebalanced,
        Ok(true),
        "the rebalance did not restore {led:?}"
    );
    let final_image = image(&controller);
    check_leaders(&final_image, "cs");
    for p in &led {
        let reg = &final_image.topic_by_name("cs").unwrap().partitions[p];
        assert_eq!(reg.leader_epoch, now.partitions[p].leader_epoch + 1);
    }
    // Everything is led by its preferred replica: ElectLeaders has nothing to do.
    let (resp, index) = controller
        .admin(AdminRequest::ElectLeaders(all_cs), REQUEST_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(index, 0);
    let AdminResponse::ElectLeaders(r) = resp else {
        panic!("{resp:?}")
    };
    assert!(r
        .topics
        .iter()
        .flat_map(|(_, ps)| ps)
        .all(|(_, res)| matches!(res, Err(ControllerError::ElectionNotNeeded(_)))));
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controlled_shutdown_waits_for_every_active_broker_and_times_out() {
    init_tracing();
    let session = Duration::from_secs(4);
    let mut cluster = Cluster::new(3, 0, 1000);
    for cfg in cluster.configs.values_mut() {
        cfg.broker_session_timeout = session;
    }
    cluster.start_all().await;
    let leader = cluster.leader(Duration::from_secs(10)).await;
    cluster.register_brokers(Duration::from_secs(10)).await;
    let controller = cluster.node(leader).clone();
    let (resp, index) = controller
        .admin(create_topic("wait", 6, 3), REQUEST_TIMEOUT)
        .await
        .unwrap();
    assert_created(&resp);
    assert!(controller.wait_applied(index, Duration::from_secs(5)).await);
    let others: Vec<i32> = (1..=3).filter(|id| *id != leader).collect();
    let (shutting, silent) = (others[0], others[1]);

    // One broker goes silent; until its session expires it counts as active, and it cannot
    // report having applied the hand-over of the other one's shutdown.
    let stopped = Instant::now();
    cluster.stop(silent).await;
    let node = cluster.node(shutting).clone();
    let _lifecycle = node.start_broker_lifecycle(endpoint(shutting), None);
    let r = node.controlled_shutdown(Duration::from_millis(500)).await;
    assert!(
        matches!(r, Err(ControllerError::Timeout(_))),
        "{r:?} after {:?}",
        stopped.elapsed()
    );
    assert!(
        stopped.elapsed() < session,
        "the silent broker may be fenced already"
    );
    // It leads nothing any more but is not fenced yet.
    let now = image(&controller);
    let b = now.broker(shutting).unwrap();
    assert!(b.in_controlled_shutdown && !b.fenced, "{b:?}");
    assert!(now
        .topic_by_name("wait")
        .unwrap()
        .partitions
        .values()
        .all(|p| p.leader != shutting));

    // The silent broker is fenced when its session expires; the shutdown then completes.
    node.controlled_shutdown(session + Duration::from_secs(5))
        .await
        .expect("granted once the silent broker is fenced");
    let now = image(&controller);
    assert!(now.broker(silent).unwrap().fenced);
    assert!(now.broker(shutting).unwrap().fenced);
    check_leaders(&now, "wait");
    for (p, reg) in &now.topic_by_name("wait").unwrap().partitions {
        assert_eq!(
            reg.leader, leader,
            "wait-{p}: only the controller's broker is left"
        );
        assert_eq!(reg.isr, vec![leader], "wait-{p}");
    }
    cluster.stop_all().await;
}
