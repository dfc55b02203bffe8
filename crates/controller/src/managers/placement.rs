//! Replica placement for new partitions, following the scheme of Kafka's
//! `AdminUtils.assignReplicasToBrokers`: preferred leaders go round-robin over the brokers from a
//! random start, followers sit at a shift from the leader that grows every time the partitions
//! have wrapped around the broker list, so followers spread as evenly as leaders. When every
//! broker has a rack the broker list alternates racks and followers skip racks (and brokers)
//! that already hold a replica of the partition until every rack (broker) holds one.

use std::collections::{BTreeMap, BTreeSet};

use super::Ctx;
use crate::image::MetadataImage;
use crate::records::BrokerId;

/// A broker placement may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub(crate) id: BrokerId,
    pub(crate) rack: Option<String>,
}

/// The active brokers (unfenced, not in controlled shutdown), sorted by id: the only ones new
/// replicas are placed on.
pub(crate) fn usable_brokers(image: &MetadataImage) -> Vec<Candidate> {
    // `brokers()` iterates a BTreeMap, so the list is already sorted by id.
    image
        .brokers()
        .filter(|b| b.is_active())
        .map(|b| Candidate {
            id: b.broker_id,
            rack: b.rack.clone(),
        })
        .collect()
}

/// Where placement starts: a fixed broker position (to continue an existing topic's leader
/// rotation) or a random one drawn from `ctx`.
pub(crate) enum Start {
    Random,
    /// Start the leader rotation right after this broker (the leader of partition 0 when it
    /// is still placeable).
    After(BrokerId),
}

/// Replica lists for `count` new partitions whose indexes start at `first_partition`. The caller
/// checks `1 <= replication_factor <= brokers.len()`.
pub(crate) fn place(
    brokers: &[Candidate],
    count: usize,
    replication_factor: usize,
    first_partition: usize,
    start: Start,
    ctx: &mut Ctx,
) -> Vec<Vec<BrokerId>> {
    let n = brokers.len();
    assert!(
        replication_factor >= 1 && replication_factor <= n,
        "placement of rf {replication_factor} on {n} brokers"
    );
    let rack_aware = brokers.iter().all(|b| b.rack.is_some());
    let arranged: Vec<&Candidate> = if rack_aware {
        rack_alternated(brokers)
    } else {
        brokers.iter().collect()
    };
    let (start_index, mut shift) = match start {
        Start::After(leader) => match arranged.iter().position(|b| b.id == leader) {
            // Partition 0 had its leader at `pos`, so partition `first_partition` continues
            // from there; the follower shift is fixed too, as Kafka does when adding partitions.
            Some(pos) => (pos, pos),
            None => (random_index(ctx, n), random_index(ctx, n)),
        },
        Start::Random => (random_index(ctx, n), random_index(ctx, n)),
    };
    let num_racks = if rack_aware {
        arranged
            .iter()
            .filter_map(|b| b.rack.as_deref())
            .collect::<BTreeSet<_>>()
            .len()
    } else {
        1
    };
    let mut out = Vec::with_capacity(count);
    for partition in first_partition..first_partition + count {
        if partition > 0 && partition % n == 0 {
            shift += 1;
        }
        let first = (partition + start_index) % n;
        let mut replicas = vec![arranged[first].id];
        if rack_aware {
            let mut racks: BTreeSet<&str> = BTreeSet::new();
            racks.insert(arranged[first].rack.as_deref().unwrap_or_default());
            let mut k = 0;
            while replicas.len() < replication_factor {
                let candidate = arranged[follower_index(first, shift * num_racks, k, n)];
                k += 1;
                let rack = candidate.rack.as_deref().unwrap_or_default();
                let rack_ok = !racks.contains(rack) || racks.len() == num_racks;
                let broker_ok = !replicas.contains(&candidate.id);
                if rack_ok && broker_ok {
                    racks.insert(rack);
                    replicas.push(candidate.id);
                }
                // Each round of `n - 1` candidates visits every other broker, so one of them
                // fits (an uncovered rack's broker, or any broker without a replica since
                // rf <= n): at most (rf - 1) * (n - 1) candidates are looked at.
                if k > n * n {
                    // Unreachable; the bound keeps a bug from hanging the controller.
                    tracing::error!(partition, "rack-aware placement did not converge");
                    break;
                }
            }
        } else {
            for j in 0..replication_factor - 1 {
                replicas.push(arranged[follower_index(first, shift, j, n)].id);
            }
        }
        out.push(replicas);
    }
    out
}

fn random_index(ctx: &mut Ctx, n: usize) -> usize {
    (ctx.next_u64() % n as u64) as usize
}

/// The `j`-th follower of a partition led by `first`: never `first` itself, and the offset from
/// it rotates with `shift`.
fn follower_index(first: usize, shift: usize, j: usize, n: usize) -> usize {
    if n == 1 {
        return first;
    }
    let offset = 1 + (shift + j) % (n - 1);
    (first + offset) % n
}

/// Brokers ordered so that racks alternate: the first broker of each rack (racks by name), then
/// the second of each, and so on.
fn rack_alternated(brokers: &[Candidate]) -> Vec<&Candidate> {
    let mut by_rack: BTreeMap<&str, Vec<&Candidate>> = BTreeMap::new();
    for b in brokers {
        by_rack
            .entry(b.rack.as_deref().unwrap_or_default())
            .or_default()
            .push(b);
    }
    let mut out = Vec::with_capacity(brokers.len());
    let mut round = 0;
    while out.len() < brokers.len() {
        for members in by_rack.values() {
            if let Some(b) = members.get(round) {
                out.push(*b);
            }
        }
        round += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(n: i32, racks: Option<i32>) -> Vec<Candidate> {
        (0..n)
            .map(|id| Candidate {
                id,
                rack: racks.map(|r| format!("rack-{}", id % r)),
            })
            .collect()
    }

    /// (leaders per broker, replicas per broker).
    fn counts(
        assignment: &[Vec<BrokerId>],
    ) -> (BTreeMap<BrokerId, usize>, BTreeMap<BrokerId, usize>) {
        let mut leaders = BTreeMap::new();
        let mut replicas = BTreeMap::new();
        for r in assignment {
            *leaders.entry(r[0]).or_default() += 1;
            for b in r {
                *replicas.entry(*b).or_default() += 1;
            }
        }
        (leaders, replicas)
    }

    fn assert_distinct(assignment: &[Vec<BrokerId>], rf: usize) {
        for r in assignment {
            assert_eq!(r.len(), rf, "{assignment:?}");
            assert_eq!(
                r.iter().collect::<BTreeSet<_>>().len(),
                rf,
                "{assignment:?}"
            );
        }
    }

    #[test]
    fn three_brokers_six_partitions_rf3_is_even() {
        for seed in 0..20 {
            let mut ctx = Ctx::new(seed);
            let a = place(&brokers(3, None), 6, 3, 0, Start::Random, &mut ctx);
            assert_distinct(&a, 3);
            let (leaders, replicas) = counts(&a);
            assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);
            assert_eq!(
                replicas.values().copied().collect::<Vec<_>>(),
                vec![6, 6, 6]
            );
        }
    }

    #[test]
    fn five_brokers_ten_partitions_rf2_spreads_leaders_and_followers() {
        for seed in 0..20 {
            let mut ctx = Ctx::new(seed);
            let a = place(&brokers(5, None), 10, 2, 0, Start::Random, &mut ctx);
            assert_distinct(&a, 2);
            let (leaders, replicas) = counts(&a);
            assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![2; 5]);
            assert_eq!(replicas.values().copied().collect::<Vec<_>>(), vec![4; 5]);
        }
    }

    /// Once the partitions wrap around the broker list the follower shift moves, so a leader's
    /// partitions get different followers (a failed broker's load spreads over several).
    #[test]
    fn follower_shift_moves_after_each_wrap() {
        for seed in 0..20 {
            let mut ctx = Ctx::new(seed);
            let a = place(&brokers(4, None), 8, 2, 0, Start::Random, &mut ctx);
            let pairs: BTreeSet<(BrokerId, BrokerId)> = a.iter().map(|r| (r[0], r[1])).collect();
            assert_eq!(pairs.len(), 8, "{a:?}");
        }
    }

    #[test]
    fn rack_aware_partitions_span_three_racks() {
        for seed in 0..20 {
            let mut ctx = Ctx::new(seed);
            let bs = brokers(6, Some(3));
            let a = place(&bs, 12, 3, 0, Start::Random, &mut ctx);
            assert_distinct(&a, 3);
            for r in &a {
                let racks: BTreeSet<_> = r.iter().map(|b| b % 3).collect();
                assert_eq!(racks.len(), 3, "{r:?} does not span 3 racks");
            }
            let (leaders, replicas) = counts(&a);
            assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![2; 6]);
            assert_eq!(replicas.values().copied().collect::<Vec<_>>(), vec![6; 6]);
        }
    }

    #[test]
    fn rack_aware_with_more_replicas_than_racks_covers_every_rack() {
        let mut ctx = Ctx::new(7);
        // 2 racks of 2 brokers, RF 3: both racks hold a replica of every partition.
        let a = place(&brokers(4, Some(2)), 8, 3, 0, Start::Random, &mut ctx);
        assert_distinct(&a, 3);
        for r in &a {
            assert_eq!(r.iter().map(|b| b % 2).collect::<BTreeSet<_>>().len(), 2);
        }
    }

    #[test]
    fn fixed_start_continues_the_leader_rotation() {
        let mut ctx = Ctx::new(1);
        let bs = brokers(4, None);
        // Partition 0 led by broker 2: partitions 4..8 are led by 2, 3, 0, 1.
        let a = place(&bs, 4, 2, 4, Start::After(2), &mut ctx);
        assert_eq!(a.iter().map(|r| r[0]).collect::<Vec<_>>(), vec![2, 3, 0, 1]);
        assert_distinct(&a, 2);
    }

    #[test]
    fn rf_one_on_one_broker() {
        let mut ctx = Ctx::new(3);
        let a = place(&brokers(1, None), 3, 1, 0, Start::Random, &mut ctx);
        assert_eq!(a, vec![vec![0], vec![0], vec![0]]);
    }

    #[test]
    fn rack_alternation_orders_by_rack() {
        let bs = vec![
            Candidate {
                id: 0,
                rack: Some("a".into()),
            },
            Candidate {
                id: 1,
                rack: Some("a".into()),
            },
            Candidate {
                id: 2,
                rack: Some("b".into()),
            },
            Candidate {
                id: 3,
                rack: Some("c".into()),
            },
            Candidate {
                id: 4,
                rack: Some("c".into()),
            },
        ];
        let ids: Vec<_> = rack_alternated(&bs).iter().map(|b| b.id).collect();
        assert_eq!(ids, vec![0, 2, 3, 1, 4]);
    }
}
