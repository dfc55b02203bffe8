//! Partition replication across real `runnel server` processes, observed only through
//! the Kafka protocol: three combined broker+controller nodes, topics with replication factor 3.
//!
//! - ISR shrink and expand: a SIGSTOPped follower leaves the ISR after
//!   `replica.lag.time.max.ms` (proposed by the leader, before the broker is fenced) and acks=all
//!   keeps working with `min.insync.replicas=2`; after SIGCONT it catches up and rejoins.
//! - `min.insync.replicas` enforcement: REQUEST_TIMED_OUT / NOT_ENOUGH_REPLICAS_AFTER_APPEND
//!   while the ISR still counts the stopped follower, NOT_ENOUGH_REPLICAS (and no append) once it
//!   shrank, acks=1 unaffected, acks=all back after the follower returns.
//! - A returning old leader truncates the tail only it had (acks=1 records written while its
//!   followers were stopped), and every acks=all record survives at its acknowledged offset.
//! - After a leader SIGKILL the new leader serves every acknowledged record (ListOffsets,
//!   Fetch) and answers OffsetForLeaderEpoch for the old epoch; a non-leader refuses it.
//!
//! Only one node is ever stopped or killed at a time: each node is also a metadata-quorum voter,
//! and with two of three voters gone the quorum has no majority, so no ISR change, fencing or
//! election could commit. (That is why min.insync is tested with `min.insync.replicas=3` and
//! one stopped follower rather than with two stopped followers.)
//!
//! Timeouts are shortened; the nodes run one test at a time (the `cluster` test group in
//! .config/nextest.toml). Durations worth watching are printed to stderr.

mod cluster;
mod common;
mod replication_util;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use cluster::Cluster;
use replication_util::*;

/// Settings every test uses: fast heartbeats and elections, quick fetch retries, and no
/// automatic preferred-leader rebalancing (each test decides who leads).
const BASE: &[&str] = &[
    "broker.heartbeat.interval.ms=250",
    "controller.quorum.election.timeout.ms=500",
    "replica.fetch.backoff.ms=200",
    "auto.leader.rebalance.enable=false",
];

fn start(extra: &[&str]) -> Cluster {
    let mut sets = BASE.to_vec();
    sets.extend_from_slice(extra);
    Cluster::start(3, &sets)
}

/// The follower of `p` to stop: not the active controller, so the quorum keeps its leader and
/// the partition leader's AlterPartition has somewhere to go the whole time.
fn follower_not_controller(p: &cluster::PartitionView, controller: i32) -> (i32, i32) {
    let followers: Vec<i32> = p
        .replicas
        .iter()
        .copied()
        .filter(|&r| r != p.leader)
        .collect();
    assert_eq!(followers.len(), 2, "RF 3 expected: {p:?}");
    if followers[0] != controller {
        (followers[0], followers[1])
    } else {
        (followers[1], followers[0])
    }
}

const LAG_MS: u64 = 2_000;

#[test]
fn isr_shrinks_when_a_follower_stops_and_expands_when_it_returns() {
    // The session timeout is well above the lag time: the shrink must come from the leader's
    // lag check, not from the controller fencing the silent broker.
    let mut c = start(&[
        "broker.session.timeout.ms=10000",
        &format!("replica.lag.time.max.ms={LAG_MS}"),
    ]);
    let controller = c.wait_converged(3, Duration::from_secs(30)).controller;
    let topic = "isr";
    let p0 = create_replicated(
        &mut c,
        controller,
        topic,
        1,
        3,
        &[("min.insync.replicas", "2")],
    )[&0]
        .clone();
    let leader = p0.leader;
    let (victim, other) = follower_not_controller(&p0, controller);
    for i in 0..5 {
        let off = produce_ok(&mut c, leader, topic, 0, &format!("before-{i}"), -1);
        assert_eq!(off, i, "acks=all offsets with the full ISR");
    }

    let stopped_at = Instant::now();
    c.pause(victim);
    wait_stopped(&c, victim);
    let shrunk = wait_partition(
        &mut c,
        leader,
        topic,
        0,
        Duration::from_millis(LAG_MS + 8_000),
        &format!("ISR shrinks to [{leader}, {other}] after node {victim} stopped"),
        |p| sorted(&p.isr) == sorted(&[leader, other]),
    );
    let took = stopped_at.elapsed();
    eprintln!(
        "SIGSTOP of follower {victim} -> ISR {:?}: {} ms (replica.lag.time.max.ms={LAG_MS})",
        shrunk.isr,
        took.as_millis()
    );
    // The follower was caught up until the stop (its last long-poll fetch began at most
    // replica.fetch.wait.max.ms = 500 ms earlier), so it may not leave before ~lag - 500 ms.
    assert!(
        took >= Duration::from_millis(LAG_MS - 1_000),
        "ISR shrank {took:?} after the stop, before replica.lag.time.max.ms={LAG_MS}\n{}",
        diag(&c)
    );
    assert_eq!(
        (shrunk.leader, shrunk.leader_epoch),
        (leader, p0.leader_epoch),
        "an ISR change must not change the leader or its epoch: {p0:?} -> {shrunk:?}"
    );
    let view = c.view(leader).unwrap();
    assert!(
        view.brokers.iter().any(|(id, _)| *id == victim),
        "node {victim} was fenced: the ISR shrink came from the session timeout, not from the \
         leader's lag check: {view:?}\n{}",
        diag(&c)
    );

    // min.insync.replicas=2 and ISR {leader, other}: acks=all still succeeds.
    let r = produce(c.addr(leader), topic, 0, &["during"], -1, 5_000).unwrap();
    assert_eq!(
        (r.error, r.base_offset),
        (NONE, 5),
        "acks=all with a 2-member ISR and min.insync.replicas=2: {r:?}\n{}",
        diag(&c)
    );

    let resumed_at = Instant::now();
    c.resume(victim);
    let grown = wait_partition(
        &mut c,
        leader,
        topic,
        0,
        Duration::from_secs(20),
        &format!("node {victim} rejoins the ISR after SIGCONT"),
        |p| sorted(&p.isr) == vec![1, 2, 3],
    );
    eprintln!(
        "SIGCONT of follower {victim} -> ISR {:?}: {} ms",
        grown.isr,
        resumed_at.elapsed().as_millis()
    );
    assert_eq!(
        (grown.leader, grown.leader_epoch),
        (leader, p0.leader_epoch),
        "ISR expansion must not change the leader or its epoch"
    );
    assert!(
        grown.offline.is_empty(),
        "no replica offline after the expansion: {grown:?}"
    );
    // With the full ISR back, acks=all needs the returned follower too.
    let r = produce(c.addr(leader), topic, 0, &["after"], -1, 5_000).unwrap();
    assert_eq!(
        (r.error, r.base_offset),
        (NONE, 6),
        "acks=all with the full ISR back: {r:?}\n{}",
        diag(&c)
    );
    let all = read_to_hw(c.addr(leader), topic, 0).unwrap();
    let values: Vec<&str> = all.records.iter().map(|r| r.2.as_str()).collect();
    assert_eq!(
        values,
        ["before-0", "before-1", "before-2", "before-3", "before-4", "during", "after"],
        "{all:?}"
    );
    for id in 1..=3 {
        c.assert_alive(id);
    }
}

#[test]
fn min_insync_replicas_is_enforced_for_acks_all() {
    let mut c = start(&[
        "broker.session.timeout.ms=10000",
        &format!("replica.lag.time.max.ms={LAG_MS}"),
    ]);
    let controller = c.wait_converged(3, Duration::from_secs(30)).controller;
    let topic = "strict";
    let p0 = create_replicated(
        &mut c,
        controller,
        topic,
        1,
        3,
        &[("min.insync.replicas", "3")],
    )[&0]
        .clone();
    let leader = p0.leader;
    let (victim, other) = follower_not_controller(&p0, controller);
    for i in 0..3 {
        let off = produce_ok(&mut c, leader, topic, 0, &format!("ok-{i}"), -1);
        assert_eq!(off, i, "acks=all with ISR 3 = min.insync.replicas");
    }

    // One follower stops. Stopping two would take the metadata quorum's majority with it (every
    // node is a voter), so `min.insync.replicas=3` is what makes one stop enough.
    c.pause(victim);
    wait_stopped(&c, victim);
    // The ISR still names the stopped follower: the batch is appended but can never be
    // acknowledged by the whole ISR, so the produce times out, or (if the ISR shrinks during
    // the wait) fails with NOT_ENOUGH_REPLICAS_AFTER_APPEND.
    let r = produce(c.addr(leader), topic, 0, &["unacked"], -1, 1_000).unwrap();
    eprintln!("acks=all while the ISR still has the stopped follower: {r:?}");
    assert!(
        r.error == REQUEST_TIMED_OUT || r.error == NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        "acks=all with a stopped ISR member: expected REQUEST_TIMED_OUT (7) or \
         NOT_ENOUGH_REPLICAS_AFTER_APPEND (20), got {r:?}\n{}",
        diag(&c)
    );
    assert!(
        r.took >= Duration::from_millis(900) || r.error == NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        "REQUEST_TIMED_OUT before the request's 1000 ms timeout: {r:?}"
    );

    let shrunk = wait_partition(
        &mut c,
        leader,
        topic,
        0,
        Duration::from_millis(LAG_MS + 8_000),
        &format!("ISR shrinks to [{leader}, {other}] after node {victim} stopped"),
        |p| sorted(&p.isr) == sorted(&[leader, other]),
    );
    assert_eq!(shrunk.leader, leader, "{shrunk:?}");
    // The unacknowledged batch is on the leader and the remaining follower: committed now.
    let hw = c.wait_for(
        Duration::from_secs(10),
        "the high watermark covers the unacknowledged batch (4)",
        |c| match list_latest(c.addr(leader), topic, 0) {
            Ok((NONE, hw, _)) if hw >= 4 => Some(hw),
            _ => None,
        },
    );
    assert_eq!(hw, 4, "high watermark after the shrink\n{}", diag(&c));

    // ISR 2 < min.insync.replicas 3: refused before the append, at once.
    let r = produce(c.addr(leader), topic, 0, &["refused"], -1, 5_000).unwrap();
    assert_eq!(
        r.error,
        NOT_ENOUGH_REPLICAS,
        "acks=all with ISR {:?} below min.insync.replicas=3: {r:?}\n{}",
        shrunk.isr,
        diag(&c)
    );
    assert!(
        r.took < Duration::from_millis(2_000),
        "NOT_ENOUGH_REPLICAS must be answered before any wait: {r:?}"
    );
    // acks=1 does not care about the ISR; its offset shows the refused batch took none.
    let r = produce(c.addr(leader), topic, 0, &["acks1"], 1, 5_000).unwrap();
    assert_eq!(
        (r.error, r.base_offset),
        (NONE, 4),
        "acks=1 with a short ISR must succeed right after the refused acks=all batch, at \
         offset 4: {r:?}\n{}",
        diag(&c)
    );
    c.wait_for(
        Duration::from_secs(10),
        "the high watermark covers the acks=1 batch (5)",
        |c| match list_latest(c.addr(leader), topic, 0) {
            Ok((NONE, hw, _)) if hw >= 5 => Some(hw),
            _ => None,
        },
    );
    let all = read_to_hw(c.addr(leader), topic, 0).unwrap();
    let values: Vec<&str> = all.records.iter().map(|r| r.2.as_str()).collect();
    assert_eq!(
        values,
        ["ok-0", "ok-1", "ok-2", "unacked", "acks1"],
        "the log after the refusal (no \"refused\"): {all:?}"
    );

    let resumed_at = Instant::now();
    c.resume(victim);
    wait_partition(
        &mut c,
        leader,
        topic,
        0,
        Duration::from_secs(20),
        &format!("node {victim} rejoins the ISR after SIGCONT"),
        |p| sorted(&p.isr) == vec![1, 2, 3],
    );
    eprintln!(
        "SIGCONT -> ISR back to 3: {} ms",
        resumed_at.elapsed().as_millis()
    );
    let r = produce(c.addr(leader), topic, 0, &["back"], -1, 5_000).unwrap();
    assert_eq!(
        (r.error, r.base_offset),
        (NONE, 5),
        "acks=all once the ISR is back to min.insync.replicas: {r:?}\n{}",
        diag(&c)
    );
    for id in 1..=3 {
        c.assert_alive(id);
    }
}

#[test]
fn returning_old_leader_truncates_its_unreplicated_tail() {
    const FETCH_WAIT_MS: u64 = 200;
    // A large lag time: the ISR never shrinks on its own here, only by fencing.
    let mut c = start(&[
        "broker.session.timeout.ms=3000",
        "replica.lag.time.max.ms=60000",
        &format!("replica.fetch.wait.max.ms={FETCH_WAIT_MS}"),
    ]);
    let controller = c.wait_converged(3, Duration::from_secs(30)).controller;
    let topic = "truncation";
    let p0 = create_replicated(
        &mut c,
        controller,
        topic,
        1,
        3,
        &[("min.insync.replicas", "2")],
    )[&0]
        .clone();
    let old = p0.leader;
    // Elections pick the first replica (in assignment order) that is in the ISR and unfenced;
    // the end of the test relies on the old leader being that replica.
    assert_eq!(
        old, p0.replicas[0],
        "a new topic is led by its first replica: {p0:?}"
    );
    let followers: Vec<i32> = p0.replicas[1..].to_vec();
    let (f1, f2) = (followers[0], followers[1]);

    // (offset, value) of every acknowledged acks=all record.
    let mut acked: Vec<(i64, String)> = Vec::new();
    for i in 0..10 {
        let v = format!("a-{i}");
        let off = produce_ok(&mut c, old, topic, 0, &v, -1);
        acked.push((off, v));
    }
    assert_eq!(acked.last().unwrap().0, 9, "{acked:?}");

    // Stop both followers. Their pending long-poll fetches are answered (empty, into the stopped
    // processes' sockets) within replica.fetch.wait.max.ms; after that the leader has no fetch
    // to answer, so what it appends next reaches no follower. The leader keeps serving for a
    // session timeout without a controller (3000 ms), and acks=1 needs only its own log.
    c.pause(f1);
    c.pause(f2);
    wait_stopped(&c, f1);
    wait_stopped(&c, f2);
    std::thread::sleep(Duration::from_millis(3 * FETCH_WAIT_MS));
    let mut tail = Vec::new();
    for i in 0..3 {
        let v = format!("tail-{i}");
        let r = produce(c.addr(old), topic, 0, &[&v], 1, 5_000).unwrap();
        assert_eq!(
            (r.error, r.base_offset),
            (NONE, 10 + i),
            "acks=1 on the leader {old} with both followers stopped: {r:?}\n{}",
            diag(&c)
        );
        tail.push(v);
    }
    c.kill(old);
    c.resume(f1);
    c.resume(f2);
    let killed_at = Instant::now();

    let p1 = wait_partition(
        &mut c,
        f1,
        topic,
        0,
        Duration::from_secs(30),
        &format!("a follower leads after the kill of {old}, in a newer epoch"),
        |p| followers.contains(&p.leader) && p.leader_epoch > p0.leader_epoch,
    );
    eprintln!(
        "old leader {old} SIGKILLed -> node {} leads in epoch {}: {} ms",
        p1.leader,
        p1.leader_epoch,
        killed_at.elapsed().as_millis()
    );
    for i in 0..10 {
        let v = format!("b-{i}");
        let off = produce_ok(&mut c, f1, topic, 0, &v, -1);
        acked.push((off, v));
    }
    assert_eq!(
        acked[10].0,
        10,
        "the new leader must continue at offset 10 (it never had the old leader's tail): \
         {acked:?}\n{}",
        diag(&c)
    );

    let restarted_at = Instant::now();
    c.restart(old);
    let p2 = wait_partition(
        &mut c,
        f1,
        topic,
        0,
        Duration::from_secs(30),
        &format!("restarted old leader {old} rejoins the ISR"),
        |p| sorted(&p.isr) == vec![1, 2, 3],
    );
    eprintln!(
        "old leader {old} restarted -> back in the ISR {:?}: {} ms",
        p2.isr,
        restarted_at.elapsed().as_millis()
    );

    // Make the old leader lead again: kill the current leader; the old leader is the first
    // replica and in the ISR, so the controller elects it.
    let current = p2.leader;
    assert_ne!(current, old, "{p2:?}");
    let survivor = followers.iter().copied().find(|&f| f != current).unwrap();
    c.kill(current);
    let p3 = wait_partition(
        &mut c,
        survivor,
        topic,
        0,
        Duration::from_secs(30),
        &format!("old leader {old} leads again after the kill of {current}"),
        |p| p.leader == old && p.leader_epoch > p2.leader_epoch,
    );
    eprintln!("old leader {old} leads again in epoch {}", p3.leader_epoch);
    let last_acked = acked.iter().map(|a| a.0).max().unwrap();
    let all = c.wait_for(
        Duration::from_secs(20),
        &format!("node {old} serves the partition up to offset {last_acked}"),
        |c| {
            let f = read_to_hw(c.addr(old), topic, 0).ok()?;
            (f.high_watermark > last_acked).then_some(f)
        },
    );
    let by_offset: BTreeMap<i64, &str> = all.records.iter().map(|r| (r.0, r.2.as_str())).collect();
    let log: Vec<(i64, &str)> = by_offset.iter().map(|(o, v)| (*o, *v)).collect();
    for t in &tail {
        assert!(
            !by_offset.values().any(|v| v == t),
            "{t:?} (acks=1, written only to the old leader) survived the truncation: {log:?}\n{}",
            diag(&c)
        );
    }
    for (off, v) in &acked {
        assert_eq!(
            by_offset.get(off).copied(),
            Some(v.as_str()),
            "acknowledged {v:?} is not at its acknowledged offset {off}: {log:?}\n{}",
            diag(&c)
        );
    }
    let mut seen = BTreeSet::new();
    for (off, v) in &log {
        assert!(seen.insert(*v), "{v:?} twice (again at {off}): {log:?}");
    }
    assert_eq!(
        all.records.len(),
        acked.len(),
        "exactly the acknowledged records up to the high watermark {}: {log:?}",
        all.high_watermark
    );
    let truncated = c.stderr(old).lines().any(|l| l.contains("truncat"));
    eprintln!("old leader logged a truncation: {truncated}");
}

#[test]
fn new_leader_serves_every_acknowledged_record_after_failover() {
    const N: i64 = 20;
    let mut c = start(&[
        "broker.session.timeout.ms=2000",
        "replica.lag.time.max.ms=10000",
    ]);
    let controller = c.wait_converged(3, Duration::from_secs(30)).controller;
    let topic = "failover";
    let p0 = create_replicated(
        &mut c,
        controller,
        topic,
        1,
        3,
        &[("min.insync.replicas", "2")],
    )[&0]
        .clone();
    let old = p0.leader;
    let followers: Vec<i32> = p0.replicas.iter().copied().filter(|&r| r != old).collect();
    for i in 0..N {
        let off = produce_ok(&mut c, old, topic, 0, &format!("v-{i}"), -1);
        assert_eq!(off, i, "acks=all offsets");
    }

    let killed_at = Instant::now();
    c.kill(old);
    let p1 = wait_partition(
        &mut c,
        followers[0],
        topic,
        0,
        Duration::from_secs(30),
        &format!("a follower leads after the kill of {old}, in a newer epoch"),
        |p| followers.contains(&p.leader) && p.leader_epoch > p0.leader_epoch,
    );
    let new = p1.leader;
    let other = followers.iter().copied().find(|&f| f != new).unwrap();
    assert!(
        !p1.isr.contains(&old) && p1.isr.contains(&new),
        "ISR after the failover: {p1:?}"
    );

    // Nothing acknowledged is lost: the new leader's high watermark reaches N (it may start
    // lower, until the other follower fetches from it) and never passes it.
    let latest = c.wait_for(
        Duration::from_secs(15),
        &format!("ListOffsets(latest) on the new leader {new} reaches {N}"),
        |c| match list_latest(c.addr(new), topic, 0) {
            Ok((NONE, off, _)) if off >= N => Some(off),
            _ => None,
        },
    );
    eprintln!(
        "leader {old} SIGKILLed -> new leader {new} serves ListOffsets(latest) = {latest}: {} ms",
        killed_at.elapsed().as_millis()
    );
    assert_eq!(latest, N, "the new leader's log end after the failover");
    let all = read_to_hw(c.addr(new), topic, 0).unwrap();
    let got: Vec<(i64, String)> = all.records.iter().map(|r| (r.0, r.2.clone())).collect();
    let want: Vec<(i64, String)> = (0..N).map(|i| (i, format!("v-{i}"))).collect();
    assert_eq!(got, want, "records on the new leader {new}\n{}", diag(&c));
    let epochs: BTreeSet<i32> = all.records.iter().map(|r| r.1).collect();
    assert_eq!(
        epochs,
        BTreeSet::from([p0.leader_epoch]),
        "replicated batches keep the partition leader epoch they were written in"
    );

    // OffsetForLeaderEpoch: the old epoch ends where the new one starts, at N.
    let r =
        offset_for_leader_epoch(c.addr(new), topic, 0, p1.leader_epoch, p0.leader_epoch).unwrap();
    assert_eq!(
        r,
        (NONE, p0.leader_epoch, N),
        "OffsetForLeaderEpoch(epoch {}) on the new leader {new}: (error, epoch, end offset)\n{}",
        p0.leader_epoch,
        diag(&c)
    );
    // The current epoch ends at the log end. Kafka's leader records its epoch's start offset
    // when it becomes leader, not at its first append: ask before anything is appended in it,
    // and check at the end so the rest of the test runs either way.
    let current_epoch_answer =
        offset_for_leader_epoch(c.addr(new), topic, 0, p1.leader_epoch, p1.leader_epoch).unwrap();
    let r =
        offset_for_leader_epoch(c.addr(new), topic, 0, p0.leader_epoch, p0.leader_epoch).unwrap();
    assert_eq!(
        r.0, 74,
        "current_leader_epoch {} is older than the leader's {}: FENCED_LEADER_EPOCH: {r:?}",
        p0.leader_epoch, p1.leader_epoch
    );
    let r = offset_for_leader_epoch(c.addr(other), topic, 0, -1, p0.leader_epoch).unwrap();
    assert_eq!(
        r.0, NOT_LEADER_OR_FOLLOWER,
        "OffsetForLeaderEpoch on the follower {other}: {r:?}"
    );

    // The new leader, with ISR {new, other}, takes acks=all writes after the old end.
    let r = produce(c.addr(new), topic, 0, &["after"], -1, 5_000).unwrap();
    assert_eq!(
        (r.error, r.base_offset),
        (NONE, N),
        "acks=all on the new leader: {r:?}\n{}",
        diag(&c)
    );
    for id in [new, other] {
        c.assert_alive(id);
    }
    assert_eq!(
        current_epoch_answer,
        (NONE, p1.leader_epoch, N),
        "OffsetForLeaderEpoch(current epoch {}) on the new leader {new} before any append in \
         that epoch: (error, epoch, end offset) should be its log end",
        p1.leader_epoch
    );
}
