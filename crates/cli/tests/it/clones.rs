//! Clones with Debian's unchanged `ocf:pacemaker:Stateful`: a promotable clone runs an
//! instance on every host with exactly one promoted; when the promoted host is powered off
//! it is fenced, a survivor's instance is promoted, and the host comes back unpromoted.

use crate::support::*;
use hafen_api_types::{NodeState, ResourceAddRequest, ResourceInfo};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What Stateful wrote on a host: `Promoted`, `Unpromoted`, or nothing when stopped.
fn stateful_state(cluster: &DevCluster, host: &str) -> Option<String> {
    let file = PathBuf::from(cluster.node(host)["data_dir"].as_str().unwrap())
        .join("ocf")
        .join("Stateful-db.state");
    std::fs::read_to_string(file)
        .ok()
        .map(|text| text.trim().to_string())
}

fn promoted(info: &ResourceInfo) -> Vec<String> {
    info.instances
        .iter()
        .filter(|instance| instance.promoted && instance.state == "running")
        .map(|instance| instance.node.clone())
        .collect()
}

fn running(info: &ResourceInfo) -> Vec<String> {
    info.instances
        .iter()
        .filter(|instance| instance.state == "running")
        .map(|instance| instance.node.clone())
        .collect()
}

#[test]
fn a_promotable_clone_promotes_a_survivor_when_the_promoted_host_fails() {
    let _serial = serial();
    let mut cluster = DevCluster::up(3, &["--netns"]);
    let runtime = runtime();
    let client = cluster.client().with_deadline(Duration::from_secs(30));
    let request = ResourceAddRequest {
        name: "db".into(),
        agent: "ocf:pacemaker:Stateful".into(),
        parameters: Default::default(),
        monitor_interval_ms: Some(1000),
        timeout_ms: Some(20_000),
        host: None,
        start: Some(true),
        clone: Some(hafen_api_types::CloneSpec {
            max: None,
            promotable: true,
            promoted_max: None,
        }),
    };
    runtime.block_on(client.add_resource(&request)).unwrap();
    let settled = |what: &str, hosts: usize| {
        runtime.block_on(eventually(what, Duration::from_secs(60), || async {
            let info = client.resource("db").await.ok()?;
            (running(&info).len() == hosts && promoted(&info).len() == 1).then_some(info)
        }))
    };
    let info = settled("three instances, one promoted", 3);
    assert_eq!(info.clone.as_deref(), Some("promotable clone"));
    let first = promoted(&info).remove(0);
    for host in running(&info) {
        let wanted = if host == first {
            "Promoted"
        } else {
            "Unpromoted"
        };
        assert_eq!(
            stateful_state(&cluster, &host).as_deref(),
            Some(wanted),
            "{host}"
        );
    }
    let output = hafen()
        .env(
            "HAFEN_CREDENTIALS",
            cluster.file["credentials_file"].as_str().unwrap(),
        )
        .env_remove("HAFEN_SERVER")
        .env_remove("HAFEN_TOKEN")
        .args(["resource", "list"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("promotable clone") && text.contains(&format!("{first} (promoted)")),
        "{text}"
    );

    // The promoted host loses power: fenced, then a survivor is promoted.
    let killed = Instant::now();
    let pids = std::process::Command::new("ip")
        .args(["netns", "pids", &format!("hafen-{first}")])
        .output()
        .unwrap();
    for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
        if let Ok(pid) = pid.parse::<i32>() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let info = runtime.block_on(eventually(
        "a survivor to be promoted",
        Duration::from_secs(60),
        || async {
            let status = client.status().await.ok()?;
            status
                .nodes
                .iter()
                .any(|node| node.name == first && node.state == NodeState::Fenced)
                .then_some(())?;
            let info = client.resource("db").await.ok()?;
            let promoted = promoted(&info);
            (promoted.len() == 1 && promoted[0] != first && running(&info).len() == 2)
                .then_some(info)
        },
    ));
    let second = promoted(&info).remove(0);
    println!(
        "{first} powered off: {second} promoted after {:.2} s",
        killed.elapsed().as_secs_f64()
    );
    assert_eq!(
        stateful_state(&cluster, &second).as_deref(),
        Some("Promoted")
    );
    let events = runtime.block_on(client.events(None)).unwrap();
    let fenced_at = events
        .iter()
        .position(|event| event.message.starts_with(&format!("node {first} fenced")))
        .expect("fence event");
    let promoted_at = events
        .iter()
        .rposition(|event| event.message == format!("db running on {second} (promoted)"))
        .expect("promotion event");
    assert!(
        promoted_at > fenced_at,
        "promoted before {first} was fenced"
    );

    // The host comes back: its instance starts unpromoted; the promotion stays put.
    let mut child = cluster.restart(&first);
    let info = settled("three instances again, one promoted", 3);
    assert_eq!(promoted(&info), vec![second.clone()]);
    assert_eq!(
        stateful_state(&cluster, &first).as_deref(),
        Some("Unpromoted")
    );

    // Stopping the clone demotes and stops every instance.
    runtime
        .block_on(client.resource_action("db", "stop"))
        .unwrap();
    runtime.block_on(eventually(
        "every instance to stop",
        Duration::from_secs(60),
        || async {
            let info = client.resource("db").await.ok()?;
            info.instances.is_empty().then_some(())
        },
    ));
    for node in cluster.nodes() {
        let host = node["name"].as_str().unwrap();
        assert_eq!(stateful_state(&cluster, host), None, "{host}");
    }
    drop(cluster);
    let _ = child.wait();
}
