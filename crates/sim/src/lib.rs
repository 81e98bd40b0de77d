//! hafen's deterministic simulator: the pure controller for N hosts with a modelled
//! replicated log, a seeded network and fake hardware with injected faults; the safety
//! invariants I1, I2, I3 and I5 are checked after every step and L1 (liveness) after the
//! faults stop (DESIGN sections 4 and 8, test level B).
//!
//! - [`run_seed`]: one seeded run with a cluster and faults drawn from the seed.
//! - [`run_seeds`]: many seeds, optionally time-boxed; failing seeds are reported with their
//!   seed so `hafen sim --seed S` replays exactly.
//! - [`cli_main`]: what `hafen sim` runs.
//! - [`scenario`]: scripted scenarios with an expected event log.

mod generate;
mod rng;
pub mod scenario;
mod world;

use std::time::{Duration, Instant};

pub use generate::random_config;
pub use world::{
    Fault, HostSpec, NetworkConfig, ResourceSpec, SimConfig, Violation, World, describe,
};

/// What one seed found.
#[derive(Clone, Debug)]
pub struct SeedOutcome {
    pub seed: u64,
    pub violations: Vec<Violation>,
    pub steps: u64,
    /// The event log, when the run recorded one.
    pub log: Vec<String>,
}

impl SeedOutcome {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Runs one seed with the cluster and faults drawn from it.
pub fn run_seed(seed: u64) -> SeedOutcome {
    run_config(random_config(seed, false))
}

/// Runs one configuration.
pub fn run_config(config: SimConfig) -> SeedOutcome {
    let seed = config.seed;
    let mut world = World::new(config);
    world.run();
    SeedOutcome {
        seed,
        violations: world.violations.clone(),
        steps: world.steps,
        log: std::mem::take(&mut world.log),
    }
}

/// Which seeds to run.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub first_seed: u64,
    /// At most this many seeds.
    pub seeds: u64,
    /// Stop starting new seeds after this long (checked between seeds), but only once
    /// `min_seeds` ran.
    pub time_box: Option<Duration>,
    pub min_seeds: u64,
    /// Tests only: run the deliberately broken controller.
    pub unsafe_recover_without_fence_confirmation: bool,
    /// Stop at the first failing seed.
    pub stop_at_first_failure: bool,
}

impl Default for RunConfig {
    fn default() -> RunConfig {
        RunConfig {
            first_seed: 0,
            seeds: 10_000,
            time_box: None,
            min_seeds: 0,
            unsafe_recover_without_fence_confirmation: false,
            stop_at_first_failure: false,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub seeds_run: u64,
    pub steps: u64,
    pub failures: Vec<SeedOutcome>,
    pub elapsed: Duration,
}

impl Report {
    pub fn violations(&self) -> usize {
        self.failures
            .iter()
            .map(|outcome| outcome.violations.len())
            .sum()
    }
}

/// Runs seeds `first_seed..first_seed + seeds` (fewer when time-boxed).
pub fn run_seeds(config: &RunConfig) -> Report {
    // Wall-clock time only bounds how many seeds run; it never enters a simulation.
    let started = Instant::now();
    let mut report = Report::default();
    for seed in config.first_seed..config.first_seed.saturating_add(config.seeds) {
        if let Some(time_box) = config.time_box
            && report.seeds_run >= config.min_seeds
            && started.elapsed() >= time_box
        {
            break;
        }
        let sim = random_config(seed, config.unsafe_recover_without_fence_confirmation);
        let outcome = run_config(sim);
        report.seeds_run += 1;
        report.steps += outcome.steps;
        if !outcome.passed() {
            report.failures.push(outcome);
            if config.stop_at_first_failure {
                break;
            }
        }
    }
    report.elapsed = started.elapsed();
    report
}

/// `hafen sim --seeds N [--seed S]`: prints one line per failing seed and a last line
/// `seeds: N, violations: V`; returns the exit status (1 on any violation).
///
/// With `seed`, runs exactly that seed (and prints its event log when it fails). Without,
/// runs `seeds` seeds (default 10,000) from seed 0, stopping early after `time_box_ms` once
/// at least one seed ran.
pub fn cli_main(seeds: Option<u64>, seed: Option<u64>, time_box_ms: Option<u64>) -> i32 {
    let report = match seed {
        Some(seed) => {
            let mut config = random_config(seed, false);
            config.record_log = true;
            let outcome = run_config(config);
            let mut report = Report {
                seeds_run: 1,
                steps: outcome.steps,
                ..Report::default()
            };
            if !outcome.passed() {
                for line in &outcome.log {
                    println!("{line}");
                }
                report.failures.push(outcome);
            }
            report
        }
        None => run_seeds(&RunConfig {
            seeds: seeds.unwrap_or(10_000),
            time_box: time_box_ms.map(Duration::from_millis),
            min_seeds: 1,
            ..RunConfig::default()
        }),
    };
    for outcome in &report.failures {
        let first = &outcome.violations[0];
        println!(
            "seed {}: {} violation(s), first {first} (replay: hafen sim --seed {})",
            outcome.seed,
            outcome.violations.len(),
            outcome.seed
        );
    }
    let violations = report.violations();
    println!("seeds: {}, violations: {violations}", report.seeds_run);
    i32::from(violations > 0)
}
