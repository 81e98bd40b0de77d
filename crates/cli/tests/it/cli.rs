//! The CLI contract (DESIGN section 7) through the `hafen` binary: JSON shapes, configuration
//! history, diff and rollback, completions, one-line errors with a non-zero exit.

use crate::support::*;
use serde_json::Value;

fn run(cluster: &DevCluster, args: &[&str]) -> std::process::Output {
    hafen()
        .env(
            "HAFEN_CREDENTIALS",
            cluster.file["credentials_file"].as_str().unwrap(),
        )
        .env_remove("HAFEN_SERVER")
        .env_remove("HAFEN_TOKEN")
        .args(args)
        .output()
        .unwrap()
}

fn json(cluster: &DevCluster, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--output", "json"]);
    let output = run(cluster, &all);
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn the_cli_speaks_the_documented_contract() {
    let _serial = serial();
    let cluster = DevCluster::up(1, &[]);
    let status = json(&cluster, &["status"]);
    for key in ["name", "state", "leader", "voter"] {
        assert!(
            status["nodes"][0].get(key).is_some(),
            "nodes[] lacks {key}: {status}"
        );
    }
    assert!(status["resources"].is_array());
    let text = run(&cluster, &["status"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("Node List:") && text.contains("Online: [ node1 ]"),
        "{text}"
    );

    let first = json(&cluster, &["config", "set", "migration-limit", "6"]);
    let epoch_a = first["epoch"].as_u64().unwrap();
    json(
        &cluster,
        &["config", "set", "placement-strategy", "minimal"],
    );
    let diff = json(&cluster, &["config", "diff", &(epoch_a - 1).to_string()]);
    let paths: Vec<&str> = diff["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| line["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        vec![
            "properties.migration-limit",
            "properties.placement-strategy"
        ]
    );
    let history = json(&cluster, &["config", "history"]);
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .any(|entry| entry["summary"] == "set migration-limit=6")
    );
    let rolled = json(
        &cluster,
        &["config", "rollback", &(epoch_a - 1).to_string()],
    );
    assert!(rolled["epoch"].as_u64().unwrap() > epoch_a);
    let value = run(&cluster, &["config", "get", "migration-limit"]);
    assert_eq!(
        String::from_utf8_lossy(&value.stdout).trim(),
        "2",
        "rollback did not restore the default"
    );

    // Errors: non-zero exit, one line on stderr naming what is wrong, nothing changed.
    let before = json(&cluster, &["config", "show"])["epoch"].clone();
    let refused = run(&cluster, &["config", "set", "no-such-property", "1"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no-such-property"), "{stderr}");
    assert_eq!(json(&cluster, &["config", "show"])["epoch"], before);

    let completions = hafen().args(["completions", "bash"]).output().unwrap();
    assert!(
        completions.status.success()
            && String::from_utf8_lossy(&completions.stdout).contains("dev-cluster")
    );
}

/// `dev-cluster down` removes every process, namespace and link `up` made.
#[test]
fn dev_cluster_down_removes_every_namespace_link_and_process() {
    let _serial = serial();
    let cluster = DevCluster::up(2, &["--netns"]);
    let pids: Vec<i32> = cluster
        .nodes()
        .iter()
        .map(|node| node["pid"].as_i64().unwrap() as i32)
        .collect();
    let made: Vec<String> = cluster.file["network"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|namespace| namespace.as_str().unwrap().to_string())
        .collect();
    assert_eq!(made.len(), 3, "a switch and two hosts: {made:?}");
    let output = hafen()
        .args(["dev-cluster", "down", "--dir"])
        .arg(cluster.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let namespaces = String::from_utf8_lossy(
        &std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .to_string();
    // Only its own: other namespaces on this machine are none of its business.
    let left: Vec<&str> = namespaces
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|namespace| made.iter().any(|made| made == namespace))
        .collect();
    assert!(left.is_empty(), "namespaces left: {left:?}");
    let links = String::from_utf8_lossy(
        &std::process::Command::new("ip")
            .args(["link", "show"])
            .output()
            .unwrap()
            .stdout,
    )
    .to_string();
    assert!(!links.contains("hafen-root"), "the root link is left");
    for pid in pids {
        wait_for_exit(pid);
    }
}
