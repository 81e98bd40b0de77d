//! The simulator's tests: many seeds with zero violations (time-boxed), a deliberately broken
//! controller caught by the checker, and the scripted scenarios with their expected logs.

use std::path::Path;
use std::time::Duration;

/// Proves the controller keeps I1, I2, I3, I5 and L1 over many random clusters and faults.
/// Time-boxed: a release build runs at least 10,000 seeds (about 25 s on one core); a debug
/// build, roughly 20 times slower, runs at least 300 and at most 20 s worth. CI also runs the
/// release binary with `hafen sim --seeds 10000`.
#[test]
fn seeds_keep_every_invariant() {
    let (min_seeds, time_box) = if cfg!(debug_assertions) {
        (300, Duration::from_secs(20))
    } else {
        (10_000, Duration::from_secs(25))
    };
    let report = hafen_sim::run_seeds(&hafen_sim::RunConfig {
        seeds: 100_000,
        min_seeds,
        time_box: Some(time_box),
        ..Default::default()
    });
    for failure in &report.failures {
        eprintln!(
            "seed {}: {} (replay: hafen sim --seed {})",
            failure.seed, failure.violations[0], failure.seed
        );
    }
    eprintln!(
        "{} seeds in {:?} ({:.0} seeds/s)",
        report.seeds_run,
        report.elapsed,
        report.seeds_run as f64 / report.elapsed.as_secs_f64()
    );
    assert!(report.seeds_run >= min_seeds);
    assert!(
        report.failures.is_empty(),
        "{} seeds failed",
        report.failures.len()
    );
}

/// Proves the checker catches recovery without fence confirmation: the broken controller
/// confirms fencing as soon as it suspects a host, and some seed within the first 500 must
/// show an I2 violation.
#[test]
fn a_controller_recovering_without_fence_confirmation_is_caught() {
    let report = hafen_sim::run_seeds(&hafen_sim::RunConfig {
        seeds: 500,
        unsafe_recover_without_fence_confirmation: true,
        stop_at_first_failure: true,
        ..Default::default()
    });
    let failure = report
        .failures
        .first()
        .expect("the broken controller must be caught within 500 seeds");
    assert!(
        failure
            .violations
            .iter()
            .any(|violation| violation.invariant == "I2"),
        "seed {} failed, but not on I2: {:?}",
        failure.seed,
        failure.violations
    );
    eprintln!("caught at seed {}: {}", failure.seed, failure.violations[0]);
}

/// A seed replays exactly: same violations, same number of steps.
#[test]
fn a_seed_replays_exactly() {
    let first = hafen_sim::run_seed(7);
    let second = hafen_sim::run_seed(7);
    assert_eq!(first.steps, second.steps);
    assert_eq!(first.violations, second.violations);
}

/// Every `tests/scenarios/*.txt` runs with fixed timings and must produce exactly its
/// `*.expect` log. `HAFEN_BLESS=1` rewrites the expected logs (never in CI).
#[test]
fn scenarios_match_their_expected_logs() {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let bless = std::env::var_os("HAFEN_BLESS").is_some();
    let mut names: Vec<_> = std::fs::read_dir(&directory)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "txt"))
        .collect();
    names.sort();
    assert!(names.len() >= 10, "expected at least 10 scenarios");
    let mut mismatches = Vec::new();
    for path in names {
        let script = std::fs::read_to_string(&path).unwrap();
        let log = hafen_sim::scenario::run(&script)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        let expect_path = path.with_extension("expect");
        if bless {
            std::fs::write(&expect_path, &log).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expect_path).unwrap_or_default();
        if expected != log {
            mismatches.push(format!(
                "{} differs from {} (HAFEN_BLESS=1 to accept):\n{log}",
                path.display(),
                expect_path.display()
            ));
        }
        assert!(
            !log.contains("violation:"),
            "{} breaks an invariant:\n{log}",
            path.display()
        );
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n\n"));
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
    eprintln!("{:#?}\n{:#?}", config.hosts, config.resources);
    for line in &outcome.log {
        eprintln!("{line}");
    }
    eprintln!("{:?}", outcome.violations);
}
