//! Seeded deterministic simulation of partition replication (see `sim/mod.rs`).
//!
//! `SIM_SEEDS=n` runs more seeds; `SIM_SEED=s` runs one seed with its trace printed.

mod sim;

use std::time::Instant;

use sim::{run, run_traced, Bug, SimConfig};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn fail(cfg: SimConfig, message: &str) -> ! {
    // Run the failing seed again with its trace, for the report.
    let (_, trace) = run_traced(cfg.clone());
    for line in &trace[trace.len().saturating_sub(150)..] {
        eprintln!("{line}");
    }
    panic!(
        "simulation failed (rerun with SIM_SEED={}): {message}",
        cfg.seed
    );
}

#[test]
fn replication_keeps_acknowledged_records() {
    if let Some(seed) = env_u64("SIM_SEED") {
        let (result, trace) = run_traced(SimConfig::new(seed));
        for line in &trace {
            eprintln!("{line}");
        }
        match result {
            Ok(stats) => eprintln!("seed {seed}: {stats:?}"),
            Err(f) => panic!("{}", f.message),
        }
        return;
    }
    let seeds = env_u64("SIM_SEEDS").unwrap_or(1000);
    let steps = env_u64("SIM_STEPS").unwrap_or(SimConfig::new(0).steps);
    let first = env_u64("SIM_FIRST").unwrap_or(0);
    let started = Instant::now();
    let mut total = sim::Stats::default();
    for seed in first..first + seeds {
        let cfg = SimConfig {
            steps,
            ..SimConfig::new(seed)
        };
        match run(cfg.clone()) {
            Ok(s) => total.add(&s),
            Err(f) => fail(cfg, &f.message),
        }
    }
    eprintln!(
        "{seeds} seeds x {steps} steps in {:?}: {total:?}",
        started.elapsed()
    );
    // The runs must actually exercise the machinery.
    assert!(total.acked as u64 > seeds * 20, "{total:?}");
    assert!(total.crashes > seeds, "{total:?}");
    assert!(total.elections > seeds, "{total:?}");
    assert!(total.truncations > seeds / 10, "{total:?}");
    assert!(total.isr_changes > seeds, "{total:?}");
    assert!(total.incomplete_truncations > 0, "{total:?}");
    assert!(
        total.alters_failed > 0 && total.alters_rejected > 0,
        "{total:?}"
    );
    assert!(total.stale_leader_appends > 0, "{total:?}");
}

/// Each deliberate bug is caught on some seed: the checker can fail. (The first seeds that
/// catch them are 0 for most, 3 for `TruncateToLeaderEnd`, which livelocks instead of losing
/// data, and 100 for `NoEpochStartOnElection`, which needs successive elections.)
#[test]
fn the_checker_catches_injected_bugs() {
    for bug in [
        Bug::UncleanElection,
        Bug::AckOnLeaderAppend,
        Bug::CountDivergingFetches,
        Bug::IgnoreDivergence,
        Bug::TruncateToLeaderEnd,
        Bug::NoEpochStartOnElection,
    ] {
        let caught = (0..300).find_map(|seed| {
            let cfg = SimConfig {
                bug,
                ..SimConfig::new(seed)
            };
            run(cfg).err().map(|f| (seed, f.message))
        });
        match caught {
            Some((seed, message)) => {
                eprintln!(
                    "{bug:?} caught at seed {seed}: {}",
                    message.lines().next().unwrap_or("")
                )
            }
            None => panic!("{bug:?} was not caught in 300 seeds"),
        }
    }
}

/// The same seed gives the same run.
#[test]
fn runs_are_deterministic() {
    for seed in [1, 2, 3] {
        let a = format!("{:?}", run(SimConfig::new(seed)).ok());
        let b = format!("{:?}", run(SimConfig::new(seed)).ok());
        assert_eq!(a, b);
    }
}
