//! Three-node process tests of the controller quorum: real `runnel server` processes on
//! 127.0.0.1, each a combined broker and controller, observed only through the Kafka protocol.
//!
//! - every node agrees on brokers, controller and topic metadata; admin requests sent to a node
//!   that is not the active controller are forwarded; RF above the live brokers is refused;
//! - SIGKILL of the active controller: a new one is elected and keeps accepting writes;
//! - a restarted node catches up, from the log and (after many writes) from a snapshot;
//! - SIGKILL of a broker: leadership of its partitions moves within the session timeout;
//! - a SIGSTOPped majority leaves the rest unable to commit until it resumes.
//!
//! Timeouts are shortened (and the nodes run one test at a time, see .config/nextest.toml) so
//! the suite stays quick; the failover times printed here are with these settings.

mod cluster;
mod common;

use std::time::{Duration, Instant};

use cluster::{create_topic, Cluster, ClusterView};

const SESSION_MS: u64 = 2_000;
const SETTINGS: &[&str] = &[
    "broker.heartbeat.interval.ms=250",
    "broker.session.timeout.ms=2000",
    "controller.quorum.election.timeout.ms=500",
];

const NONE: i16 = 0;
const REQUEST_TIMED_OUT: i16 = 7;
const INVALID_REPLICATION_FACTOR: i16 = 38;

fn start() -> Cluster {
    Cluster::start(3, SETTINGS)
}

/// Creates a topic through node `via`, retrying while the quorum is electing.
fn create_via(c: &mut Cluster, via: i32, name: &str, partitions: i32, rf: i16) {
    let addr = c.addr(via);
    c.wait_for(
        Duration::from_secs(20),
        &format!("create {name} via node {via}"),
        |_| {
            match create_topic(addr, name, partitions, rf, 5_000) {
                Ok((NONE, _)) => Some(()),
                Ok((36, _)) => Some(()), // TOPIC_ALREADY_EXISTS: an earlier attempt committed
                _ => None,
            }
        },
    );
}

/// Waits until every running node describes `topic` identically with all partitions led.
fn wait_topic_everywhere(c: &mut Cluster, topic: &str, partitions: usize) -> ClusterView {
    let ids = c.running();
    c.wait_for(
        Duration::from_secs(20),
        &format!("{topic} on every node"),
        |c| {
            let views: Vec<ClusterView> = ids
                .iter()
                .map(|&id| c.view(id))
                .collect::<Result<_, _>>()
                .ok()?;
            let first = views.first()?.clone();
            let t = first.topics.get(topic)?;
            (t.len() == partitions
                && t.values().all(|p| p.error == NONE && p.leader >= 0)
                && views.iter().all(|v| v.topics.get(topic) == Some(t)))
            .then_some(first)
        },
    )
}

#[test]
fn nodes_agree_and_any_node_takes_admin_requests() {
    let mut c = start();
    let view = c.wait_converged(3, Duration::from_secs(30));
    let controller = view.controller;
    assert!((1..=3).contains(&controller), "{view:?}");
    // Every broker advertises its own loopback listener.
    for n in &c.nodes {
        assert!(
            view.brokers
                .contains(&(n.id, format!("127.0.0.1:{}", n.kafka_port))),
            "{view:?}"
        );
    }
    let follower = (1..=3).find(|&id| id != controller).unwrap();
    let (code, msg) = create_topic(c.addr(follower), "orders", 6, 3, 10_000).unwrap();
    assert_eq!(code, NONE, "CreateTopics via follower {follower}: {msg:?}");
    let view = wait_topic_everywhere(&mut c, "orders", 6);
    let orders = &view.topics["orders"];
    // RF 3 on 3 brokers: every partition on every broker; preferred leaders spread evenly.
    let mut leaders = [0; 4];
    for p in orders.values() {
        let mut r = p.replicas.clone();
        r.sort();
        assert_eq!(r, vec![1, 2, 3], "{p:?}");
        assert_eq!(p.isr.len(), 3, "{p:?}");
        assert_eq!(p.leader, p.replicas[0], "preferred leader leads: {p:?}");
        leaders[p.leader as usize] += 1;
    }
    assert_eq!(
        &leaders[1..],
        &[2, 2, 2],
        "leaders spread evenly: {orders:?}"
    );

    let (code, msg) = create_topic(c.addr(follower), "too-wide", 1, 4, 10_000).unwrap();
    assert_eq!(code, INVALID_REPLICATION_FACTOR, "{msg:?}");
    let (code, _) = create_topic(c.addr(controller), "orders", 1, 1, 10_000).unwrap();
    assert_eq!(code, 36, "TOPIC_ALREADY_EXISTS through the controller too");
    for id in 1..=3 {
        c.assert_alive(id);
    }
}

#[test]
fn controller_failover_elects_a_new_controller_that_accepts_writes() {
    let mut c = start();
    let mut times = Vec::new();
    for round in 0..3 {
        let old = c.wait_converged(3, Duration::from_secs(30)).controller;
        let survivor = (1..=3).find(|&id| id != old).unwrap();
        let killed_at = Instant::now();
        c.kill(old);
        let name = format!("after-failover-{round}");
        // The first successful write through a survivor marks the end of the failover.
        create_via(&mut c, survivor, &name, 1, 2);
        let took = killed_at.elapsed();
        let new = c.view(survivor).unwrap().controller;
        assert!(
            new >= 0 && new != old,
            "round {round}: controller {new} after killing {old}"
        );
        times.push(took.as_millis());
        c.restart(old);
        c.wait_converged(3, Duration::from_secs(30));
        wait_topic_everywhere(&mut c, &name, 1);
    }
    eprintln!("controller failover (SIGKILL -> first committed write), ms: {times:?}");
}

#[test]
fn restarted_node_catches_up_from_the_log_and_from_a_snapshot() {
    let mut sets = SETTINGS.to_vec();
    // Snapshot (and trim the log) every 20 entries, so 60 topics of writes while a node is
    // down can only reach it as a snapshot.
    sets.push("metadata.snapshot.interval.entries=20");
    let mut c = Cluster::start(3, &sets);
    let controller = c.wait_converged(3, Duration::from_secs(30)).controller;
    let victim = (1..=3).find(|&id| id != controller).unwrap();
    let other = (1..=3)
        .find(|&id| id != controller && id != victim)
        .unwrap();

    // From the log: a couple of writes while it is down.
    c.kill(victim);
    create_via(&mut c, other, "while-down-1", 1, 1);
    c.restart(victim);
    c.wait_converged(3, Duration::from_secs(30));
    wait_topic_everywhere(&mut c, "while-down-1", 1);

    // From a snapshot: many writes while it is down.
    c.kill(victim);
    for i in 0..60 {
        create_via(&mut c, other, &format!("bulk-{i}"), 1, 1);
    }
    c.restart(victim);
    c.wait_converged(3, Duration::from_secs(30));
    for i in [0, 30, 59] {
        wait_topic_everywhere(&mut c, &format!("bulk-{i}"), 1);
    }
    let all = c.view(victim).unwrap();
    assert_eq!(
        all.topics.keys().filter(|t| t.starts_with("bulk-")).count(),
        60
    );
    // The leader had trimmed its log behind a snapshot: the victim got the snapshot.
    assert!(
        c.stderr(victim).contains("installed metadata snapshot"),
        "node {victim} caught up without a snapshot install\n{}",
        c.stderr_tail(victim)
    );
}

#[test]
fn killed_broker_loses_leadership_within_the_session_timeout() {
    let mut c = start();
    let controller = c.wait_converged(3, Duration::from_secs(30)).controller;
    create_via(&mut c, controller, "fence-me", 6, 3);
    let view = wait_topic_everywhere(&mut c, "fence-me", 6);
    // Kill a broker that is not the controller, so this measures fencing, not an election.
    let victim = (1..=3).find(|&id| id != controller).unwrap();
    let led: Vec<i32> = view.topics["fence-me"]
        .iter()
        .filter(|(_, p)| p.leader == victim)
        .map(|(i, _)| *i)
        .collect();
    assert!(!led.is_empty(), "victim {victim} leads nothing: {view:?}");
    let before = view.topics["fence-me"].clone();
    let killed_at = Instant::now();
    c.kill(victim);
    let after = c.wait_for(
        Duration::from_secs(15),
        "leadership moves off the killed broker",
        |c| {
            let v = c.view(controller).ok()?;
            let t = v.topics.get("fence-me")?;
            t.values()
                .all(|p| p.leader >= 0 && p.leader != victim)
                .then(|| v.clone())
        },
    );
    let took = killed_at.elapsed();
    eprintln!(
        "broker SIGKILL -> all its partitions led elsewhere: {} ms",
        took.as_millis()
    );
    assert!(
        took < Duration::from_millis(SESSION_MS + 3_000),
        "fencing took {took:?} with a {SESSION_MS} ms session timeout"
    );
    assert!(
        !after.brokers.iter().any(|(id, _)| *id == victim),
        "fenced broker listed: {after:?}"
    );
    for p in &led {
        let (b, a) = (&before[p], &after.topics["fence-me"][p]);
        assert!(
            a.leader_epoch > b.leader_epoch,
            "partition {p}: epoch not bumped {b:?} -> {a:?}"
        );
        assert!(
            b.isr.contains(&a.leader),
            "partition {p}: new leader outside the old ISR"
        );
        assert!(
            !a.isr.contains(&victim),
            "partition {p}: fenced broker still in ISR {a:?}"
        );
        assert!(
            a.offline.contains(&victim),
            "partition {p}: victim not offline {a:?}"
        );
    }
    // Partitions it did not lead keep their leader and leader epoch.
    for (p, b) in &before {
        if b.leader != victim {
            let a = &after.topics["fence-me"][p];
            assert_eq!(
                (a.leader, a.leader_epoch),
                (b.leader, b.leader_epoch),
                "partition {p}"
            );
        }
    }
    // The restarted broker registers again and is listed once more.
    c.restart(victim);
    c.wait_converged(3, Duration::from_secs(30));
}

#[test]
fn a_minority_cannot_commit_and_the_cluster_recovers() {
    let mut c = start();
    c.wait_converged(3, Duration::from_secs(30));
    let lone = 1;
    c.pause(2);
    c.pause(3);
    // Whichever node was leader, node 1 alone has no quorum: nothing commits.
    let (code, msg) = create_topic(c.addr(lone), "minority", 1, 1, 3_000).unwrap();
    assert_ne!(code, NONE, "a lone node committed a topic");
    assert!(
        code == REQUEST_TIMED_OUT || code == 41,
        "expected REQUEST_TIMED_OUT or NOT_CONTROLLER, got {code}: {msg:?}"
    );
    assert!(!c.view(lone).unwrap().topics.contains_key("minority"));
    c.resume(2);
    c.resume(3);
    create_via(&mut c, lone, "majority-again", 1, 3);
    c.wait_converged(3, Duration::from_secs(30));
    wait_topic_everywhere(&mut c, "majority-again", 1);
    for id in 1..=3 {
        c.assert_alive(id);
    }
}

#[test]
fn killing_the_controller_in_the_middle_of_writes_loses_no_acknowledged_write() {
    let mut c = start();
    let controller = c.wait_converged(3, Duration::from_secs(30)).controller;
    let writer = (1..=3).find(|&id| id != controller).unwrap();
    let addr = c.addr(writer);
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = progress.clone();
    // A client creating topics one after another through a surviving node; each creation that
    // was answered with success is an acknowledged metadata write.
    let handle = std::thread::spawn(move || {
        let mut acked = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(40);
        for i in 0..40 {
            let name = format!("mid-{i}");
            while Instant::now() < deadline {
                match create_topic(addr, &name, 1, 1, 3_000) {
                    Ok((NONE, _)) => {
                        acked.push(name.clone());
                        seen.store(acked.len(), std::sync::atomic::Ordering::SeqCst);
                        break;
                    }
                    // An earlier attempt timed out here but committed: it exists, acknowledged
                    // or not, and must not be counted twice.
                    Ok((36, _)) => break,
                    _ => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
        acked
    });
    c.wait_for(Duration::from_secs(20), "the first writes", |_| {
        (progress.load(std::sync::atomic::Ordering::SeqCst) >= 5).then_some(())
    });
    c.kill(controller);
    let at_kill = progress.load(std::sync::atomic::Ordering::SeqCst);
    assert!(at_kill < 40, "all writes finished before the kill");
    std::thread::sleep(Duration::from_millis(1_500));
    c.restart(controller);
    let acked = handle.join().unwrap();
    eprintln!(
        "{at_kill} writes acknowledged before the kill, {} in all",
        acked.len()
    );
    assert!(acked.len() >= 30, "too few writes succeeded: {acked:?}");
    c.wait_converged(3, Duration::from_secs(30));
    // Every node, the restarted one included, has every acknowledged topic, and all agree.
    let last = acked.last().unwrap().clone();
    wait_topic_everywhere(&mut c, &last, 1);
    let views: Vec<ClusterView> = (1..=3).map(|id| c.view(id).unwrap()).collect();
    for (i, v) in views.iter().enumerate() {
        for name in &acked {
            assert!(
                v.topics.contains_key(name),
                "node {} lost acknowledged {name}",
                i + 1
            );
        }
        assert_eq!(
            v.topics.keys().collect::<Vec<_>>(),
            views[0].topics.keys().collect::<Vec<_>>(),
            "node {} disagrees on the topic set",
            i + 1
        );
    }
}
