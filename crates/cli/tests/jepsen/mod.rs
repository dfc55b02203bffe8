//! Jepsen-style history checking for the replication failover tests (`t60_jepsen.rs`).
//!
//! - [`history`]: what the test records, one [`history::SendOp`] per value a producer tried to
//!   write (acknowledged at a position, failed, or indeterminate), and what it read back
//!   ([`history::ReadBack`], every partition from its log start to its high watermark).
//! - [`checker`]: pure functions over the two that list every anomaly (lost, conflicting,
//!   reordered, duplicated and never-sent records), with unit tests that inject each one.
//! - [`Rng`]: the nemesis's seeded generator, so a failing schedule can be replayed.
#![allow(dead_code)] // the unit tests and the cluster test use different parts

pub mod checker;
pub mod history;

/// SplitMix64: tiny, seedable, good enough to pick partitions and pauses reproducibly (the
/// test crate has no `rand`).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi` (`hi > lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(hi > lo, "empty range {lo}..{hi}");
        lo + self.next_u64() % (hi - lo)
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn rng_is_deterministic_per_seed_and_stays_in_range() {
        let a: Vec<u64> = {
            let mut r = Rng::new(7);
            (0..100).map(|_| r.range(1_000, 4_000)).collect()
        };
        let b: Vec<u64> = {
            let mut r = Rng::new(7);
            (0..100).map(|_| r.range(1_000, 4_000)).collect()
        };
        let c: Vec<u64> = {
            let mut r = Rng::new(8);
            (0..100).map(|_| r.range(1_000, 4_000)).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.iter().all(|v| (1_000..4_000).contains(v)));
        // Not stuck on one value.
        assert!(a.iter().collect::<std::collections::BTreeSet<_>>().len() > 50);
    }
}
