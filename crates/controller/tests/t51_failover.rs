//! Controller failover: the leader stops, the others elect a new one that accepts writes, and
//! the old leader, restarted from its directory, catches up: from the log when the leader still
//! has the entries it missed, from a snapshot install when they were purged.
//!
//! Prints the measured failover times (`cargo test -p runnel-controller --test t51_failover --
//! --nocapture`).

mod common;

use std::time::{Duration, Instant};

use common::{assert_created, create_topic, init_tracing, Cluster, REQUEST_TIMEOUT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_failover_then_the_old_leader_catches_up_from_the_log() {
    init_tracing();
    let mut cluster = Cluster::new(3, 0, 10_000);
    cluster.start_all().await;
    cluster.leader(Duration::from_secs(10)).await;
    cluster.register_brokers(Duration::from_secs(10)).await;

    let mut failovers = Vec::new();
    for round in 0..5 {
        let old = cluster.leader(Duration::from_secs(10)).await;
        let survivor = cluster.other_than(old);
        let started = Instant::now();
        cluster.stop(old).await;
        let stopped = started.elapsed();
        // Replication factor 1: two of three brokers are alive (the stopped one may still be
        // unfenced and chosen, which is fine here).
        let name = format!("after-failover-{round}");
        let (resp, index) = cluster
            .node(survivor)
            .admin(create_topic(&name, 1, 1), REQUEST_TIMEOUT)
            .await
            .unwrap();
        let failover = started.elapsed();
        assert_created(&resp);
        let new = cluster.leader(Duration::from_secs(10)).await;
        assert_ne!(new, old, "round {round}: the stopped node still leads");
        println!(
            "failover round {round}: leader {old} -> {new}: write committed {} ms after shutdown began (shutdown itself {} ms)",
            failover.as_millis(),
            stopped.as_millis()
        );
        failovers.push(failover);

        // The old leader comes back from its directory and catches up from the log.
        let back = cluster.start(old).await;
        assert!(
            back.wait_applied(index, Duration::from_secs(10)).await,
            "round {round}: restarted node {old} did not catch up to {index}"
        );
        assert!(back.image().borrow().image.topic_by_name(&name).is_some());
        assert!(
            back.raft_metrics().snapshot.is_none(),
            "no snapshot is taken at this interval; the log caught it up"
        );
    }
    failovers.sort();
    println!(
        "controller failover (leader shutdown -> write committed), {} rounds: min {} ms, median {} ms, max {} ms",
        failovers.len(),
        failovers[0].as_millis(),
        failovers[failovers.len() / 2].as_millis(),
        failovers[failovers.len() - 1].as_millis()
    );
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_the_purged_log_is_caught_up_by_snapshot_install() {
    init_tracing();
    // A snapshot every 5 entries, keeping at most 5 entries of log behind it.
    let mut cluster = Cluster::new(3, 0, 5);
    cluster.start_all().await;
    let leader = cluster.leader(Duration::from_secs(10)).await;
    cluster.register_brokers(Duration::from_secs(10)).await;
    let lagging = cluster.other_than(leader);
    cluster.stop(lagging).await;
    // The stopped node has at most what the leader had then.
    let stopped_at = cluster
        .node(leader)
        .raft_metrics()
        .last_log_index
        .unwrap_or(0);

    let leader = cluster.leader(Duration::from_secs(10)).await;
    let mut last = 0;
    for i in 0..30 {
        let (resp, index) = cluster
            .node(leader)
            .admin(create_topic(&format!("t{i}"), 1, 1), REQUEST_TIMEOUT)
            .await
            .unwrap();
        assert_created(&resp);
        last = index;
    }
    // The leader has purged what the stopped node would need from the log.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let purged = cluster
            .node(leader)
            .raft_metrics()
            .purged
            .map_or(0, |l| l.index);
        if purged > stopped_at {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leader never purged past {stopped_at} (purged {purged})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // From here the log alone cannot bring the node back (the leader no longer has entry
    // `stopped_at + 1`): catching up at all proves the snapshot install.
    let back = cluster.start(lagging).await;
    assert!(
        back.wait_applied(last, Duration::from_secs(10)).await,
        "restarted node did not catch up to {last}"
    );
    // The image is published from inside the install; openraft reports the snapshot in its
    // metrics a moment later.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let snapshot = back.raft_metrics().snapshot.map_or(0, |l| l.index);
        if snapshot > stopped_at {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "caught up without a snapshot past {stopped_at} (snapshot {snapshot})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let expected = cluster.node(leader).image().borrow().clone();
    back.wait_applied(expected.index, Duration::from_secs(5))
        .await;
    assert_eq!(back.image().borrow().image, expected.image);
    for i in 0..30 {
        assert!(back
            .image()
            .borrow()
            .image
            .topic_by_name(&format!("t{i}"))
            .is_some());
    }
    cluster.stop_all().await;
}
