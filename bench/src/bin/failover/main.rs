//! `bench/failover`: host kill -> resources running on a survivor, hafen against Pacemaker.
//!
//! The same 3-host namespace topology is run with (a) hafen at its defaults and, with
//! `--compare-pacemaker`, (b) Debian's corosync + pacemaker at their defaults and tuned
//! (token 1000, token_coefficient 0). Both manage the same `ocf:heartbeat:Dummy` resources
//! and fence through an agent that powers the namespace off (kills every process in it).
//! A host carrying a third of the resources is killed; per phase (detected, fenced,
//! running elsewhere) the median and p99 over the runs are printed, with the ratio of
//! Pacemaker's `running_p50_s` over hafen's. The last line is a JSON summary.
//!
//! Usage: `failover [--runs N] [--resources N] [--compare-pacemaker] [--only hafen|pacemaker]
//! [--hafen PATH]`. Needs root, iproute2 and (for the comparison) corosync and pacemaker.

mod hafen;
mod pacemaker;

use serde_json::{Value, json};
use std::path::PathBuf;

/// The times of one run, in seconds from the host kill.
#[derive(Debug, Clone, Copy)]
pub struct RunFigures {
    /// The cluster noticed the host is gone (suspected / membership lost).
    pub detected_s: f64,
    /// The fence device confirmed the host off.
    pub fenced_s: f64,
    /// Every resource of the killed host runs on a survivor.
    pub running_s: f64,
    /// hafen only: the test guest answers again (when a VM took part).
    pub guest_answering_s: Option<f64>,
}

pub fn percentile(values: &[f64], fraction: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).expect("figures are numbers"));
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn round(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// Median and p99 per phase, under the summary's key names.
pub fn summarize(runs: &[RunFigures]) -> Value {
    let phase = |pick: fn(&RunFigures) -> f64| runs.iter().map(pick).collect::<Vec<_>>();
    let detected = phase(|run| run.detected_s);
    let fenced = phase(|run| run.fenced_s);
    let running = phase(|run| run.running_s);
    let mut summary = json!({
        "runs": runs.len(),
        "detected_p50_s": round(percentile(&detected, 0.5)),
        "fenced_p50_s": round(percentile(&fenced, 0.5)),
        "running_p50_s": round(percentile(&running, 0.5)),
        "running_p99_s": round(percentile(&running, 0.99)),
    });
    let guest: Vec<f64> = runs
        .iter()
        .filter_map(|run| run.guest_answering_s)
        .collect();
    if !guest.is_empty() {
        summary["guest_answering_p50_s"] = json!(round(percentile(&guest, 0.5)));
    }
    summary
}

#[derive(Debug, Clone)]
pub struct Options {
    pub runs: usize,
    pub resources: usize,
    pub hafen: PathBuf,
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut options = Options {
        runs: 5,
        resources: 3,
        hafen: std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join("hafen")))
            .unwrap_or_else(|| PathBuf::from("hafen")),
    };
    let mut compare = false;
    let mut only: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--runs" => options.runs = value().parse().expect("--runs takes a number"),
            "--resources" => {
                options.resources = value().parse().expect("--resources takes a number")
            }
            "--hafen" => options.hafen = PathBuf::from(value()),
            "--compare-pacemaker" => compare = true,
            "--only" => only = Some(value()),
            other => panic!(
                "unknown argument {other} (use --runs N, --resources N, --compare-pacemaker, --only hafen|pacemaker, --hafen PATH)"
            ),
        }
    }
    assert!(options.runs >= 1, "--runs must be at least 1");
    assert!(
        options.resources >= 3,
        "--resources must be at least 3 (a third of them sit on the killed host)"
    );
    let run_hafen = only.as_deref() != Some("pacemaker");
    let run_pacemaker = compare || only.as_deref() == Some("pacemaker");
    let mut summary = json!({ "resources": options.resources });
    if run_hafen {
        let runs = hafen::measure(&options).unwrap_or_else(|error| panic!("hafen: {error}"));
        summary["hafen"] = summarize(&runs);
    }
    if run_pacemaker {
        let defaults = pacemaker::measure(&options, false)
            .unwrap_or_else(|error| panic!("pacemaker (defaults): {error}"));
        let tuned = pacemaker::measure(&options, true)
            .unwrap_or_else(|error| panic!("pacemaker (tuned): {error}"));
        summary["pacemaker"] = summarize(&defaults);
        summary["pacemaker_tuned"] = summarize(&tuned);
        if run_hafen {
            let ours = summary["hafen"]["running_p50_s"]
                .as_f64()
                .unwrap_or(f64::NAN);
            let theirs = summary["pacemaker"]["running_p50_s"]
                .as_f64()
                .unwrap_or(f64::NAN);
            let tuned = summary["pacemaker_tuned"]["running_p50_s"]
                .as_f64()
                .unwrap_or(f64::NAN);
            summary["ratio"] = json!(round(theirs / ours));
            summary["ratio_tuned"] = json!(round(tuned / ours));
        }
    }
    println!(
        "host kill -> detected, fenced, running on a survivor (seconds); ratio = pacemaker running_p50_s / hafen running_p50_s"
    );
    println!("{summary}");
}
