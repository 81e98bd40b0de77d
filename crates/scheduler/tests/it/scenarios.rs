//! Runs every scenario file in `tests/scenarios/` through one helper.
//!
//! A scenario holds the state before (`view`), the `request`, the intent written by hand
//! (`expect`: where each named resource ends up) and the blessed outcome (`expected`: the
//! actions, pending resources, the state after, the score table, explanations). Running
//! `HAFEN_BLESS=1 cargo test -p hafen-scheduler` rewrites `expected` from the current code;
//! CI never sets it, so any change in behaviour shows up as a failing scenario. The intent
//! in `expect` is checked even when blessing, so a wrong blessing cannot slip in silently.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use hafen_scheduler::{ClusterView, Plan, Request, apply_plan, explain, schedule};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    description: String,
    view: ClusterView,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    request: Option<Request>,
    /// Resources to explain in `expected.explain`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    explain: Vec<String>,
    /// Hand-written intent: resource -> its state after the plan, as in `expected.after`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    expect: BTreeMap<String, String>,
    /// Hand-written intent: the plan is refused with this error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expect_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expected: Option<Outcome>,
}

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Outcome {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(default)]
    actions: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pending: Vec<String>,
    /// Resource -> hosts it runs on (`*` promoted, `!` failed), or `stopped`.
    #[serde(default)]
    after: BTreeMap<String, String>,
    /// Actions of a second run on the state after: a stable plan has none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    replan: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    scores: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    explain: BTreeMap<String, Vec<String>>,
}

fn state_of(view: &ClusterView) -> BTreeMap<String, String> {
    view.resources
        .iter()
        .map(|resource| {
            let hosts: Vec<String> = resource
                .instances
                .iter()
                .map(|instance| {
                    let mut text = instance.host.clone();
                    if instance.promoted {
                        text.push('*');
                    }
                    if instance.failed {
                        text.push('!');
                    }
                    text
                })
                .collect();
            let state = if hosts.is_empty() {
                "stopped".to_string()
            } else {
                hosts.join(" ")
            };
            (resource.name.clone(), state)
        })
        .collect()
}

fn outcome(scenario: &Scenario) -> Outcome {
    let request = scenario.request.clone().unwrap_or_default();
    let plan: Plan = match schedule(&scenario.view, &request) {
        Ok(plan) => plan,
        Err(error) => {
            return Outcome {
                error: Some(error.to_string()),
                ..Outcome::default()
            };
        }
    };
    let after = apply_plan(&scenario.view, &plan);
    let replan = match schedule(
        &after,
        &Request {
            include_scores: false,
            ..request.clone()
        },
    ) {
        Ok(replan) => replan.actions.iter().map(ToString::to_string).collect(),
        Err(error) => vec![format!("error: {error}")],
    };
    let scores = plan
        .scores
        .iter()
        .map(|(resource, row)| {
            let cells: Vec<String> = row
                .iter()
                .map(|(host, score)| format!("{host}={score}"))
                .collect();
            (resource.clone(), cells.join(" "))
        })
        .collect();
    let explain = scenario
        .explain
        .iter()
        .map(|resource| {
            let text = match explain(&scenario.view, &request, resource) {
                Ok(explanation) => explanation.to_string(),
                Err(error) => format!("error: {error}"),
            };
            (
                resource.clone(),
                text.lines()
                    .map(|line| line.trim_end().to_string())
                    .collect(),
            )
        })
        .collect();
    Outcome {
        error: None,
        actions: plan.actions.iter().map(ToString::to_string).collect(),
        pending: plan.pending.iter().map(ToString::to_string).collect(),
        after: state_of(&after),
        replan,
        scores,
        explain,
    }
}

fn check_intent(scenario: &Scenario, outcome: &Outcome) -> Vec<String> {
    let mut problems = Vec::new();
    match (&scenario.expect_error, &outcome.error) {
        (Some(wanted), Some(actual)) if !actual.contains(wanted.as_str()) => {
            problems.push(format!("error {actual:?} does not contain {wanted:?}"));
        }
        (Some(wanted), None) => problems.push(format!("expected error {wanted:?}, got a plan")),
        (None, Some(actual)) => problems.push(format!("unexpected error: {actual}")),
        _ => {}
    }
    for (resource, wanted) in &scenario.expect {
        let actual = outcome
            .after
            .get(resource)
            .map_or("<unknown resource>", String::as_str);
        if actual != wanted {
            problems.push(format!("{resource}: expected {wanted:?}, got {actual:?}"));
        }
    }
    if !outcome.replan.is_empty() {
        problems.push(format!(
            "re-planning the state after is not empty: {:?}",
            outcome.replan
        ));
    }
    problems
}

fn scenario_files() -> Vec<PathBuf> {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let mut files: Vec<PathBuf> = fs::read_dir(&directory)
        .expect("tests/scenarios is readable")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "json")
        })
        .collect();
    files.sort();
    files
}

fn show(value: &impl Serialize) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// Every scenario file: intent holds, and the outcome equals the blessed one.
#[test]
fn scenarios() {
    let bless = std::env::var_os("HAFEN_BLESS").is_some_and(|value| value == "1");
    let files = scenario_files();
    assert!(files.len() >= 100, "only {} scenario files", files.len());
    let mut failures = Vec::new();
    for file in &files {
        let name = file
            .file_name()
            .map(|name| name.to_string_lossy().to_string())
            .unwrap_or_default();
        let text = fs::read_to_string(file).expect("scenario is readable");
        let mut scenario: Scenario = match serde_json::from_str(&text) {
            Ok(scenario) => scenario,
            Err(error) => {
                failures.push(format!("{name}: unreadable: {error}"));
                continue;
            }
        };
        let actual = outcome(&scenario);
        let problems = check_intent(&scenario, &actual);
        if !problems.is_empty() {
            failures.push(format!(
                "{name}: intent violated:\n  {}",
                problems.join("\n  ")
            ));
            continue;
        }
        if bless {
            if scenario.expected.as_ref() != Some(&actual) {
                scenario.expected = Some(actual);
                let written = format!("{}\n", show(&scenario));
                fs::write(file, written).expect("scenario is writable");
            }
            continue;
        }
        match &scenario.expected {
            None => failures.push(format!(
                "{name}: no expected outcome (run with HAFEN_BLESS=1)"
            )),
            Some(expected) if *expected != actual => failures.push(format!(
                "{name}: outcome differs from the blessed one\n--- expected\n{}\n+++ actual\n{}",
                show(expected),
                show(&actual)
            )),
            Some(_) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} scenarios failed:\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}
