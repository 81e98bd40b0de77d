//! The simulator's tests: many seeds with zero violations, a broken controller caught, and the
//! scripted scenarios with their expected event logs.

#[test]
fn quick_seeds() {
    let report = hafen_sim::run_seeds(&hafen_sim::RunConfig {
        seeds: 200,
        ..Default::default()
    });
    for failure in &report.failures {
        eprintln!("seed {}: {:?}", failure.seed, failure.violations.first());
    }
    eprintln!("{} seeds in {:?}", report.seeds_run, report.elapsed);
    assert!(report.failures.is_empty());
}

/// `HAFEN_SIM_SEED=S cargo test -p hafen-sim replay -- --nocapture` prints a seed's event log.
#[test]
fn replay() {
    let Ok(seed) = std::env::var("HAFEN_SIM_SEED") else {
        return;
    };
    let mut config = hafen_sim::random_config(seed.parse().unwrap(), false);
    config.record_log = true;
    let outcome = hafen_sim::run_config(config.clone());
    eprintln!("{:#?}", config.hosts);
    eprintln!("{:#?}", config.resources);
    for line in &outcome.log {
        eprintln!("{line}");
    }
    eprintln!("{:?}", outcome.violations);
}
