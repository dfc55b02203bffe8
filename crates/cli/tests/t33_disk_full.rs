//! Level 33: a log directory that fills up, for real: node 3's data directory is a small tmpfs.
//! With producers writing acks=all to a replicated topic, node 3 runs out of space; it must
//! take its log directory offline, have the controller move its leaderships and stop, while the
//! other two nodes keep taking writes. Nothing acknowledged may be lost, and once space is
//! freed node 3 restarts and rejoins every ISR.
//!
//! Needs to mount a tmpfs (root, as in CI).

mod cluster;
mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cluster::Cluster;
use common::{negotiate, noise, produce_request, record_batch, Conn};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder};

const TOPIC: &str = "disk-full";
const PARTITIONS: i32 = 3;
const FULL_NODE: i32 = 3;

/// Unmounts the tmpfs when the test ends (declared before the cluster, so it is dropped after
/// the cluster's processes are killed).
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mount_tmpfs(dir: &std::path::Path, size: &str) {
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .output()
        .expect("run mount");
    assert!(
        out.status.success(),
        "cannot mount a {size} tmpfs on {} (this test needs root): {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A value that does not compress, unique to (partition, sequence).
fn value(partition: i32, seq: u64) -> Vec<u8> {
    noise(
        48 * 1024,
        ((partition as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ seq) | 1,
    )
}

/// The leader of each partition of the topic, as a live node sees it.
fn leaders(c: &Cluster, ids: &[i32]) -> BTreeMap<i32, i32> {
    for &id in ids {
        if let Ok(v) = c.view(id) {
            if let Some(t) = v.topics.get(TOPIC) {
                return t.iter().map(|(p, v)| (*p, v.leader)).collect();
            }
        }
    }
    BTreeMap::new()
}

/// Every record of a partition, read from `addr` (its leader): offset -> value.
fn read_all(addr: std::net::SocketAddr, partition: i32) -> BTreeMap<i64, Bytes> {
    let mut conn = Conn::connect(addr).unwrap();
    let v = negotiate(&mut conn, ApiKey::Fetch).unwrap().min(12);
    let mut out = BTreeMap::new();
    let mut offset = 0;
    loop {
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_min_bytes(0)
            .with_max_bytes(8 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(8 << 20)])]);
        let resp = conn.request(v, &req).unwrap();
        let p = &resp.responses[0].partitions[0];
        assert_eq!(
            p.error_code, 0,
            "fetch of partition {partition} at {offset}"
        );
        let Some(mut records) = p.records.clone() else {
            break;
        };
        if records.is_empty() {
            break;
        }
        while !records.is_empty() {
            let set = RecordBatchDecoder::decode(&mut records).unwrap();
            for r in set.records {
                offset = r.offset + 1;
                out.insert(r.offset, r.value.unwrap_or_default());
            }
        }
    }
    out
}

#[test]
fn a_full_log_directory_goes_offline_leadership_moves_and_nothing_acknowledged_is_lost() {
    let mount: std::cell::RefCell<Option<Mount>> = std::cell::RefCell::new(None);
    let mut c = Cluster::start_prepared(
        3,
        &[],
        |_| Vec::new(),
        |id, dir| {
            if id == FULL_NODE {
                mount_tmpfs(dir, "48m");
                *mount.borrow_mut() = Some(Mount(dir.to_path_buf()));
            }
        },
    );
    let _mount = mount.into_inner();
    c.create_topic_everywhere(
        TOPIC,
        PARTITIONS,
        3,
        &[("min.insync.replicas", "2"), ("segment.bytes", "1048576")],
    );
    let all = [1, 2, 3];
    let led_by_full = leaders(&c, &all)
        .values()
        .filter(|l| **l == FULL_NODE)
        .count();
    assert!(led_by_full > 0, "node {FULL_NODE} leads no partition");

    // Produce round robin, acks=all, until node 3 has stopped and a few seconds more.
    let mut acked: BTreeMap<(i32, i64), u64> = BTreeMap::new();
    let mut seq = 0u64;
    let mut errors: BTreeMap<i16, usize> = BTreeMap::new();
    let mut conns: BTreeMap<i32, Conn> = BTreeMap::new();
    let started = Instant::now();
    let mut stopped_at: Option<Instant> = None;
    let mut status = None;
    while stopped_at.is_none_or(|t| t.elapsed() < Duration::from_secs(3)) {
        assert!(
            started.elapsed() < Duration::from_secs(45),
            "node {FULL_NODE} did not stop within 45 s of producing; errors {errors:?}\n{}",
            c.stderr_tail(FULL_NODE)
        );
        if stopped_at.is_none() {
            if let Some(s) = c.exited(FULL_NODE) {
                status = Some(s);
                stopped_at = Some(Instant::now());
            }
        }
        let live: Vec<i32> = c.running();
        let leaders = leaders(&c, &live);
        for p in 0..PARTITIONS {
            let Some(&leader) = leaders.get(&p).filter(|l| live.contains(l)) else {
                continue;
            };
            let conn = match conns.entry(leader) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    match Conn::connect(c.addr(leader)) {
                        Ok(conn) => e.insert(conn),
                        Err(_) => continue,
                    }
                }
            };
            seq += 1;
            let v = value(p, seq);
            let req = produce_request(TOPIC, p, record_batch(&[&v], Compression::None));
            match conn.request(9, &req) {
                Ok(resp) => {
                    let r = &resp.responses[0].partition_responses[0];
                    if r.error_code == 0 {
                        acked.insert((p, r.base_offset), seq);
                    } else {
                        *errors.entry(r.error_code).or_default() += 1;
                    }
                }
                Err(_) => {
                    conns.remove(&leader);
                }
            }
        }
    }
    let status = status.unwrap();
    let log = c.stderr(FULL_NODE);
    eprintln!(
        "acknowledged {} batches, errors by code {errors:?}; node {FULL_NODE} exited with {status}",
        acked.len()
    );
    assert!(
        !status.success(),
        "node {FULL_NODE} exited successfully after its disk filled"
    );
    assert!(
        log.contains("log directory failed"),
        "node {FULL_NODE} did not report its log directory failing:\n{}",
        c.stderr_tail(FULL_NODE)
    );
    // The other nodes took over every partition and kept taking writes.
    let after = leaders(&c, &[1, 2]);
    assert!(
        after.values().all(|l| *l == 1 || *l == 2),
        "partitions not led by the surviving nodes: {after:?}"
    );
    let late = acked.keys().count();
    assert!(late > 0);

    // Nothing acknowledged is lost: every acknowledged batch is at its offset with its value.
    let check = |c: &Cluster, what: &str| {
        let leaders = leaders(c, &c.running());
        for p in 0..PARTITIONS {
            let leader = leaders[&p];
            let records = read_all(c.addr(leader), p);
            for ((_, offset), seq) in acked.range((p, i64::MIN)..(p + 1, i64::MIN)) {
                let got = records.get(offset).unwrap_or_else(|| {
                    panic!("{what}: acknowledged offset {offset} of partition {p} is missing")
                });
                assert_eq!(
                    got.as_ref(),
                    value(p, *seq).as_slice(),
                    "{what}: partition {p} offset {offset} holds other data"
                );
            }
        }
    };
    check(&c, "after the disk filled");

    // Space is freed; node 3 restarts, recovers and rejoins every ISR.
    let dir = c.data_dir_of(FULL_NODE);
    let out = Command::new("mount")
        .args(["-o", "remount,size=512m"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "remount: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.restart(FULL_NODE);
    c.wait_for(Duration::from_secs(40), "node 3 back in every ISR", |c| {
        let v = c.view(1).ok()?;
        let t = v.topics.get(TOPIC)?;
        t.values().all(|p| p.isr.contains(&FULL_NODE)).then_some(())
    });
    check(&c, "after node 3 rejoined");
}
