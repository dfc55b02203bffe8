//! The checker: pure functions over a run's [`SendOp`] history and its [`ReadBack`]s.
//!
//! What a correct run looks like (RF=3, `min.insync.replicas=2`, acks=all, idempotent
//! producers, at most one broker down at a time):
//!
//! - every acknowledged record is in the log at the partition and offset it was acknowledged
//!   with (otherwise: [`Anomaly::LostWrite`]);
//! - no offset holds two different values across the reads ([`Anomaly::ConflictingValues`]);
//! - a producer's acknowledged records in one partition appear in send (seq) order
//!   ([`Anomaly::OrderViolation`]);
//! - no value appears at more than one position, whatever its outcome; idempotence makes a
//!   retried batch a no-op ([`Anomaly::Duplicate`]);
//! - every value read was sent, to the partition it was read from ([`Anomaly::NeverSent`],
//!   [`Anomaly::WrongPartition`]).
//!
//! Failed and indeterminate sends may or may not appear.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use super::history::{Outcome, ReadBack, SendOp};

pub type Pos = (i32, i64);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anomaly {
    /// An acknowledged record is not at its acknowledged offset. `there` is what the reads
    /// found at that offset (empty: no read had the offset, e.g. it is at or above the high
    /// watermark); `found_at` lists where the value was found instead, if anywhere.
    LostWrite {
        value: String,
        partition: i32,
        offset: i64,
        acked_ms: u64,
        there: Vec<String>,
        found_at: Vec<Pos>,
    },
    /// Reads disagree on the value at one offset.
    ConflictingValues {
        partition: i32,
        offset: i64,
        values: Vec<String>,
    },
    /// A producer's acknowledged seq `earlier.0` is read at a higher offset than its
    /// acknowledged seq `later.0 > earlier.0` in the same partition. Pairs are (seq, offset).
    OrderViolation {
        producer: u32,
        partition: i32,
        earlier: (u64, i64),
        later: (u64, i64),
    },
    /// One value at more than one position.
    Duplicate {
        value: String,
        outcome: &'static str,
        positions: Vec<Pos>,
    },
    /// A value no producer sent.
    NeverSent { value: String, positions: Vec<Pos> },
    /// A sent value read from another partition than the one it was sent to.
    WrongPartition {
        value: String,
        sent_to: i32,
        positions: Vec<Pos>,
    },
}

impl Anomaly {
    pub fn kind(&self) -> &'static str {
        match self {
            Anomaly::LostWrite { .. } => "lost-write",
            Anomaly::ConflictingValues { .. } => "conflicting-values",
            Anomaly::OrderViolation { .. } => "order-violation",
            Anomaly::Duplicate { .. } => "duplicate",
            Anomaly::NeverSent { .. } => "never-sent",
            Anomaly::WrongPartition { .. } => "wrong-partition",
        }
    }
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Anomaly::LostWrite {
                value,
                partition,
                offset,
                acked_ms,
                there,
                found_at,
            } => {
                write!(
                    f,
                    "lost write: {value} acknowledged at p{partition}@{offset} (t={acked_ms} ms); "
                )?;
                if there.is_empty() {
                    write!(f, "offset not read (beyond the high watermark?)")?;
                } else {
                    write!(f, "offset holds {there:?}")?;
                }
                if !found_at.is_empty() {
                    write!(f, ", value found at {}", fmt_positions(found_at))?;
                }
                Ok(())
            }
            Anomaly::ConflictingValues {
                partition,
                offset,
                values,
            } => write!(f, "conflicting values at p{partition}@{offset}: {values:?}"),
            Anomaly::OrderViolation {
                producer,
                partition,
                earlier,
                later,
            } => write!(
                f,
                "order violation: producer p{producer} in p{partition}: seq {} at offset {} but \
                 later seq {} at lower offset {}",
                earlier.0, earlier.1, later.0, later.1
            ),
            Anomaly::Duplicate {
                value,
                outcome,
                positions,
            } => write!(
                f,
                "duplicate: {value} ({outcome}) at {}",
                fmt_positions(positions)
            ),
            Anomaly::NeverSent { value, positions } => {
                write!(
                    f,
                    "never sent: {value:?} read at {}",
                    fmt_positions(positions)
                )
            }
            Anomaly::WrongPartition {
                value,
                sent_to,
                positions,
            } => write!(
                f,
                "wrong partition: {value} sent to p{sent_to}, read at {}",
                fmt_positions(positions)
            ),
        }
    }
}

fn fmt_positions(ps: &[Pos]) -> String {
    ps.iter()
        .map(|(p, o)| format!("p{p}@{o}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub sends: usize,
    pub acked: usize,
    pub failed: usize,
    pub indeterminate: usize,
    /// Failed / indeterminate sends that were nevertheless found in the log.
    pub failed_present: usize,
    pub indeterminate_present: usize,
    pub reads: usize,
    /// Distinct (partition, offset) positions over all reads.
    pub positions_read: usize,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub anomalies: Vec<Anomaly>,
    pub stats: Stats,
}

impl Report {
    pub fn is_valid(&self) -> bool {
        self.anomalies.is_empty()
    }

    pub fn count(&self, kind: &str) -> usize {
        self.anomalies.iter().filter(|a| a.kind() == kind).count()
    }

    pub fn kinds(&self) -> BTreeSet<&'static str> {
        self.anomalies.iter().map(Anomaly::kind).collect()
    }
}

/// How many anomalies of each kind the report prints in full.
const SHOW_PER_KIND: usize = 15;

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stats;
        writeln!(
            f,
            "{} sends: {} acknowledged, {} failed ({} of them in the log), {} indeterminate \
             ({} in the log); {} reads covering {} offsets",
            s.sends,
            s.acked,
            s.failed,
            s.failed_present,
            s.indeterminate,
            s.indeterminate_present,
            s.reads,
            s.positions_read
        )?;
        if self.anomalies.is_empty() {
            return writeln!(f, "no anomalies");
        }
        let mut by_kind: BTreeMap<&str, Vec<&Anomaly>> = BTreeMap::new();
        for a in &self.anomalies {
            by_kind.entry(a.kind()).or_default().push(a);
        }
        let summary: Vec<String> = by_kind
            .iter()
            .map(|(k, v)| format!("{} {k}", v.len()))
            .collect();
        writeln!(f, "ANOMALIES: {}", summary.join(", "))?;
        // When were the lost writes acknowledged? (Compare with the nemesis timeline.)
        let mut lost: BTreeMap<i32, (usize, u64, u64)> = BTreeMap::new();
        for a in &self.anomalies {
            if let Anomaly::LostWrite {
                partition,
                acked_ms,
                ..
            } = a
            {
                let e = lost.entry(*partition).or_insert((0, u64::MAX, 0));
                *e = (e.0 + 1, e.1.min(*acked_ms), e.2.max(*acked_ms));
            }
        }
        if !lost.is_empty() {
            let per: Vec<String> = lost
                .iter()
                .map(|(p, (n, from, to))| format!("p{p}: {n} (acknowledged t={from}..{to} ms)"))
                .collect();
            writeln!(f, "lost writes by partition: {}", per.join("; "))?;
        }
        for (kind, list) in &by_kind {
            for a in list.iter().take(SHOW_PER_KIND) {
                writeln!(f, "  {a}")?;
            }
            if list.len() > SHOW_PER_KIND {
                writeln!(f, "  ... and {} more {kind}", list.len() - SHOW_PER_KIND)?;
            }
        }
        Ok(())
    }
}

/// Checks `history` against `reads` (each a read of every partition after the run). Panics if
/// the history itself is malformed (a value sent twice): that is a bug in the test.
pub fn check(history: &[SendOp], reads: &[ReadBack]) -> Report {
    let mut by_value: HashMap<String, &SendOp> = HashMap::with_capacity(history.len());
    for op in history {
        let prev = by_value.insert(op.value(), op);
        assert!(
            prev.is_none(),
            "malformed history: {} sent twice",
            op.value()
        );
    }

    // Everything read, merged over the reads: the values at each position, and the positions
    // of each value.
    let mut at: BTreeMap<Pos, BTreeSet<&str>> = BTreeMap::new();
    let mut where_is: BTreeMap<&str, BTreeSet<Pos>> = BTreeMap::new();
    for read in reads {
        for (&p, pr) in &read.partitions {
            for (o, v) in &pr.records {
                at.entry((p, *o)).or_default().insert(v.as_str());
                where_is.entry(v.as_str()).or_default().insert((p, *o));
            }
        }
    }

    let mut anomalies = Vec::new();

    for (&(partition, offset), values) in &at {
        if values.len() > 1 {
            anomalies.push(Anomaly::ConflictingValues {
                partition,
                offset,
                values: values.iter().map(|v| v.to_string()).collect(),
            });
        }
    }

    let mut stats = Stats {
        sends: history.len(),
        reads: reads.len(),
        positions_read: at.len(),
        ..Stats::default()
    };

    for (&value, positions) in &where_is {
        let positions: Vec<Pos> = positions.iter().copied().collect();
        let Some(op) = by_value.get(value) else {
            anomalies.push(Anomaly::NeverSent {
                value: value.to_string(),
                positions,
            });
            continue;
        };
        if positions.len() > 1 {
            anomalies.push(Anomaly::Duplicate {
                value: value.to_string(),
                outcome: match op.outcome {
                    Outcome::Acked { .. } => "acknowledged",
                    Outcome::Failed(_) => "failed",
                    Outcome::Indeterminate(_) => "indeterminate",
                },
                positions: positions.clone(),
            });
        }
        let elsewhere: Vec<Pos> = positions
            .iter()
            .copied()
            .filter(|&(p, _)| p != op.partition)
            .collect();
        // An acknowledged record that moved is reported as lost (below) with where it went.
        if !elsewhere.is_empty() && !op.outcome.is_acked() {
            anomalies.push(Anomaly::WrongPartition {
                value: value.to_string(),
                sent_to: op.partition,
                positions: elsewhere,
            });
        }
    }

    // Acknowledged records at their positions; per-producer order per partition.
    let mut order: BTreeMap<(u32, i32), Vec<(u64, i64)>> = BTreeMap::new();
    for op in history {
        let value = op.value();
        match &op.outcome {
            Outcome::Acked { partition, offset } => {
                stats.acked += 1;
                let pos = (*partition, *offset);
                let there = at.get(&pos);
                if !there.is_some_and(|vs| vs.contains(value.as_str())) {
                    anomalies.push(Anomaly::LostWrite {
                        value: value.clone(),
                        partition: *partition,
                        offset: *offset,
                        acked_ms: op.done_ms,
                        there: there
                            .map(|vs| vs.iter().map(|v| v.to_string()).collect())
                            .unwrap_or_default(),
                        found_at: where_is
                            .get(value.as_str())
                            .map(|ps| ps.iter().copied().collect())
                            .unwrap_or_default(),
                    });
                }
                // Where it really is in the partition it was acknowledged in (its first
                // appearance, if duplicated).
                if let Some(first) = where_is
                    .get(value.as_str())
                    .and_then(|ps| ps.iter().find(|(p, _)| p == partition))
                {
                    order
                        .entry((op.producer, *partition))
                        .or_default()
                        .push((op.seq, first.1));
                }
            }
            Outcome::Failed(_) => {
                stats.failed += 1;
                if where_is.contains_key(value.as_str()) {
                    stats.failed_present += 1;
                }
            }
            Outcome::Indeterminate(_) => {
                stats.indeterminate += 1;
                if where_is.contains_key(value.as_str()) {
                    stats.indeterminate_present += 1;
                }
            }
        }
    }
    for ((producer, partition), mut seqs) in order {
        seqs.sort();
        for w in seqs.windows(2) {
            let (earlier, later) = (w[0], w[1]);
            if earlier.1 > later.1 {
                anomalies.push(Anomaly::OrderViolation {
                    producer,
                    partition,
                    earlier,
                    later,
                });
            }
        }
    }

    Report { anomalies, stats }
}

#[cfg(test)]
mod tests {
    use super::super::history::{value_of, PartitionRead};
    use super::*;

    const PARTITIONS: i32 = 3;

    /// A valid run: 3 producers interleaving 60 sends each over 3 partitions; every 7th send
    /// fails and every 11th is indeterminate; of those, every other one made it into the log
    /// anyway (at the position it would have had), the rest did not.
    fn valid() -> (Vec<SendOp>, ReadBack) {
        let mut history = Vec::new();
        let mut logs: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
        let mut t = 0;
        for seq in 0..60u64 {
            for producer in 0..3u32 {
                t += 1;
                let partition = ((seq + producer as u64) % PARTITIONS as u64) as i32;
                let log = logs.entry(partition).or_default();
                let next = log.len() as i64;
                let n = history.len();
                let (outcome, present) = if n % 7 == 3 {
                    (Outcome::Failed("NOT_ENOUGH_REPLICAS".into()), n % 2 == 0)
                } else if n % 11 == 5 {
                    (Outcome::Indeterminate("timed out".into()), n % 2 == 0)
                } else {
                    (
                        Outcome::Acked {
                            partition,
                            offset: next,
                        },
                        true,
                    )
                };
                if present {
                    log.push((next, value_of(producer, seq)));
                }
                history.push(SendOp {
                    producer,
                    seq,
                    partition,
                    outcome,
                    sent_ms: t,
                    done_ms: t + 5,
                });
            }
        }
        let read = ReadBack {
            partitions: logs
                .into_iter()
                .map(|(p, records)| {
                    (
                        p,
                        PartitionRead {
                            log_start: 0,
                            high_watermark: records.len() as i64,
                            records,
                        },
                    )
                })
                .collect(),
        };
        (history, read)
    }

    fn acked_at(history: &[SendOp], producer: u32, partition: i32) -> Vec<(usize, i64)> {
        history
            .iter()
            .enumerate()
            .filter_map(|(i, op)| match op.outcome {
                Outcome::Acked {
                    partition: p,
                    offset,
                } if p == partition && op.producer == producer => Some((i, offset)),
                _ => None,
            })
            .collect()
    }

    fn only(report: &Report, kind: &str) {
        assert!(report.count(kind) > 0, "{kind} not reported:\n{report}");
        assert_eq!(
            report.kinds(),
            BTreeSet::from([kind]),
            "other anomalies reported too:\n{report}"
        );
    }

    #[test]
    fn a_valid_history_passes() {
        let (history, read) = valid();
        let report = check(&history, &[read.clone(), read]);
        assert!(report.is_valid(), "{report}");
        let s = &report.stats;
        assert_eq!(s.sends, 180);
        assert!(
            s.acked > 100 && s.failed > 10 && s.indeterminate > 5,
            "{s:?}"
        );
        // Both kinds of unacknowledged sends occur present and absent.
        assert!(s.failed_present > 0 && s.failed_present < s.failed, "{s:?}");
        assert!(
            s.indeterminate_present > 0 && s.indeterminate_present < s.indeterminate,
            "{s:?}"
        );
        assert_eq!(s.reads, 2);
    }

    #[test]
    fn an_empty_run_passes() {
        assert!(check(&[], &[ReadBack::default()]).is_valid());
    }

    #[test]
    fn a_missing_acknowledged_record_is_a_lost_write() {
        let (history, mut read) = valid();
        // Remove an acknowledged record from the middle of partition 1 (later offsets shift
        // down, as when a new leader lacks it): the record and those after it are lost.
        let log = &mut read.partitions.get_mut(&1).unwrap().records;
        let (i, _) = log
            .iter()
            .enumerate()
            .find(|(_, (_, v))| {
                history
                    .iter()
                    .any(|op| op.value() == *v && op.outcome.is_acked())
            })
            .map(|(i, r)| (i, r.clone()))
            .unwrap();
        let removed = log.remove(i).1;
        for r in log.iter_mut().skip(i) {
            r.0 -= 1;
        }
        let report = check(&history, &[read]);
        only(&report, "lost-write");
        assert!(report.anomalies.iter().any(|a| matches!(a,
            Anomaly::LostWrite { value, found_at, .. } if *value == removed && found_at.is_empty())));
    }

    #[test]
    fn a_truncated_tail_is_a_lost_write_beyond_the_high_watermark() {
        let (history, mut read) = valid();
        let p = read.partitions.get_mut(&2).unwrap();
        // Cut the log just before its last acknowledged record.
        let is_acked = |v: &str| {
            history
                .iter()
                .any(|op| op.value() == v && op.outcome.is_acked())
        };
        let cut = p.records.iter().rposition(|(_, v)| is_acked(v)).unwrap();
        let last = p.records[cut].clone();
        p.records.truncate(cut);
        p.high_watermark = cut as i64;
        let report = check(&history, &[read]);
        only(&report, "lost-write");
        assert_eq!(report.count("lost-write"), 1, "{report}");
        match &report.anomalies[0] {
            Anomaly::LostWrite {
                value,
                partition,
                offset,
                there,
                ..
            } => {
                assert_eq!((value, *partition, *offset), (&last.1, 2, last.0));
                assert!(there.is_empty());
            }
            a => panic!("{a}"),
        }
    }

    #[test]
    fn reads_that_disagree_conflict_and_one_good_read_keeps_a_write() {
        // The second read has another value at an acknowledged offset: a conflict; the
        // acknowledged value is still at its offset in the first read, so it is not lost.
        let (history, read) = valid();
        let mut second = read.clone();
        let rec = &mut second.partitions.get_mut(&0).unwrap().records[4];
        rec.1 = "p1-10000".into();
        let report = check(&history, &[read, second]);
        assert!(report.count("conflicting-values") == 1, "{report}");
        // The injected value was never sent either.
        assert_eq!(
            report.kinds(),
            BTreeSet::from(["conflicting-values", "never-sent"]),
            "{report}"
        );
    }

    #[test]
    fn two_values_at_one_offset_conflict() {
        let (history, read) = valid();
        // Swap the values at two offsets in the second read: both are sent values, so the only
        // anomalies are the two conflicts (and the moved positions' duplicates).
        let mut second = read.clone();
        let recs = &mut second.partitions.get_mut(&0).unwrap().records;
        let (a, b) = (recs[2].1.clone(), recs[3].1.clone());
        recs[2].1 = b;
        recs[3].1 = a;
        let report = check(&history, &[read, second]);
        assert_eq!(report.count("conflicting-values"), 2, "{report}");
        assert!(report
            .kinds()
            .iter()
            .all(|k| ["conflicting-values", "duplicate"].contains(k)));
    }

    #[test]
    fn a_producer_reordered_within_a_partition_is_an_order_violation() {
        let (mut history, mut read) = valid();
        // A broker that appended (and acknowledged) producer 0's two records in partition 0 in
        // the wrong order: acks and log agree, so nothing is lost, but order is broken.
        let acked = acked_at(&history, 0, 0);
        let ((i, oi), (j, oj)) = (acked[1], acked[2]);
        history[i].outcome = Outcome::Acked {
            partition: 0,
            offset: oj,
        };
        history[j].outcome = Outcome::Acked {
            partition: 0,
            offset: oi,
        };
        let recs = &mut read.partitions.get_mut(&0).unwrap().records;
        for r in recs.iter_mut() {
            if r.0 == oi {
                r.1 = history[j].value();
            } else if r.0 == oj {
                r.1 = history[i].value();
            }
        }
        let report = check(&history, &[read]);
        only(&report, "order-violation");
        assert_eq!(
            report.anomalies,
            vec![Anomaly::OrderViolation {
                producer: 0,
                partition: 0,
                earlier: (history[i].seq, oj),
                later: (history[j].seq, oi),
            }]
        );
    }

    #[test]
    fn reordering_against_the_acks_is_reported_as_lost_and_reordered() {
        let (history, mut read) = valid();
        // Acks say seq a < seq b, the log has them swapped.
        let acked = acked_at(&history, 1, 2);
        let ((i, oi), (j, oj)) = (acked[0], acked[1]);
        let recs = &mut read.partitions.get_mut(&2).unwrap().records;
        for r in recs.iter_mut() {
            if r.0 == oi {
                r.1 = history[j].value();
            } else if r.0 == oj {
                r.1 = history[i].value();
            }
        }
        let report = check(&history, &[read]);
        assert_eq!(report.count("order-violation"), 1, "{report}");
        assert_eq!(report.count("lost-write"), 2, "{report}");
        assert_eq!(report.anomalies.len(), 3, "{report}");
    }

    #[test]
    fn a_duplicated_acknowledged_record_is_reported() {
        let (history, mut read) = valid();
        let p = read.partitions.get_mut(&1).unwrap();
        let dup = p.records[5].1.clone();
        let next = p.records.last().unwrap().0 + 1;
        p.records.push((next, dup.clone()));
        p.high_watermark += 1;
        let report = check(&history, &[read]);
        only(&report, "duplicate");
        assert!(matches!(&report.anomalies[0],
            Anomaly::Duplicate { value, outcome: "acknowledged", positions } if *value == dup && positions.len() == 2));
    }

    #[test]
    fn an_indeterminate_or_failed_record_may_appear_but_only_once() {
        let (history, mut read) = valid();
        let present: Vec<String> = history
            .iter()
            .filter(|op| !op.outcome.is_acked())
            .map(SendOp::value)
            .filter(|v| {
                read.partitions
                    .values()
                    .any(|p| p.records.iter().any(|(_, r)| r == v))
            })
            .collect();
        let indeterminate = history
            .iter()
            .find(|op| {
                matches!(op.outcome, Outcome::Indeterminate(_)) && present.contains(&op.value())
            })
            .unwrap();
        let failed = history
            .iter()
            .find(|op| matches!(op.outcome, Outcome::Failed(_)) && present.contains(&op.value()))
            .unwrap();
        for op in [indeterminate, failed] {
            let p = read.partitions.get_mut(&op.partition).unwrap();
            let next = p.records.last().unwrap().0 + 1;
            p.records.push((next, op.value()));
        }
        let report = check(&history, &[read]);
        only(&report, "duplicate");
        let outcomes: BTreeSet<&str> = report
            .anomalies
            .iter()
            .map(|a| match a {
                Anomaly::Duplicate { outcome, .. } => *outcome,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(outcomes, BTreeSet::from(["failed", "indeterminate"]));
    }

    #[test]
    fn a_value_never_sent_is_reported() {
        for bogus in ["p0-100000", "p7-3", "hello", "\u{fffd}\u{fffd}"] {
            let (history, mut read) = valid();
            let p = read.partitions.get_mut(&0).unwrap();
            let next = p.records.last().unwrap().0 + 1;
            p.records.push((next, bogus.to_string()));
            let report = check(&history, &[read]);
            only(&report, "never-sent");
        }
    }

    #[test]
    fn an_unacknowledged_value_in_another_partition_is_reported() {
        let (history, mut read) = valid();
        let op = history
            .iter()
            .find(|op| {
                matches!(op.outcome, Outcome::Indeterminate(_))
                    && !read
                        .partitions
                        .values()
                        .any(|p| p.records.iter().any(|(_, v)| *v == op.value()))
            })
            .unwrap();
        let other = (op.partition + 1) % PARTITIONS;
        let p = read.partitions.get_mut(&other).unwrap();
        let next = p.records.last().unwrap().0 + 1;
        p.records.push((next, op.value()));
        let report = check(&history, &[read]);
        only(&report, "wrong-partition");
    }

    #[test]
    fn an_acknowledged_value_at_another_offset_is_lost_with_its_new_position() {
        let (history, mut read) = valid();
        let (i, offset) = acked_at(&history, 2, 1)[3];
        let p = read.partitions.get_mut(&1).unwrap();
        // The acknowledged offset now holds an unacknowledged value that was not in the log;
        // the acknowledged value sits at the end instead.
        let filler = history
            .iter()
            .find(|op| {
                !op.outcome.is_acked()
                    && op.partition == 1
                    && !p.records.iter().any(|(_, v)| *v == op.value())
            })
            .unwrap()
            .value();
        let moved = history[i].value();
        for r in p.records.iter_mut() {
            if r.0 == offset {
                r.1 = filler.clone();
            }
        }
        let next = p.records.last().unwrap().0 + 1;
        p.records.push((next, moved.clone()));
        let report = check(&history, &[read]);
        assert!(report.anomalies.iter().any(|a| matches!(a,
            Anomaly::LostWrite { value, there, found_at, .. }
                if *value == moved && *there == vec![filler.clone()] && *found_at == vec![(1, next)])), "{report}");
        // Moving it to the end also breaks producer 2's order in partition 1.
        assert!(
            report
                .kinds()
                .iter()
                .all(|k| ["lost-write", "order-violation"].contains(k)),
            "{report}"
        );
    }

    #[test]
    fn the_report_names_every_kind_and_bounds_its_length() {
        let (history, mut read) = valid();
        let p = read.partitions.get_mut(&0).unwrap();
        p.records.clear(); // every acknowledged record in partition 0 is lost
        let report = check(&history, &[read]);
        let text = report.to_string();
        assert!(text.contains("ANOMALIES: "), "{text}");
        assert!(text.contains(" lost-write"), "{text}");
        assert!(text.contains("more lost-write"), "{text}");
        assert!(text.contains("lost writes by partition: p0: "), "{text}");
        assert!(text.lines().count() < SHOW_PER_KIND + 6, "{text}");
    }

    #[test]
    #[should_panic(expected = "sent twice")]
    fn a_malformed_history_is_a_test_bug() {
        let (mut history, read) = valid();
        let again = history[0].clone();
        history.push(again);
        check(&history, &[read]);
    }
}
