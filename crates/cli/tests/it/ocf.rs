//! OCF resources in a real cluster, run by Debian's unchanged `ocf:heartbeat:Dummy`: parameter
//! validation at configuration time, probes that find copies started by hand, monitor-driven recovery.

use crate::support::*;
use hafen_api_types::ResourceAddRequest;
use std::path::PathBuf;
use std::time::Duration;

const DUMMY: &str = "/usr/lib/ocf/resource.d/heartbeat/Dummy";

fn state_dir(cluster: &DevCluster, node: &str) -> PathBuf {
    PathBuf::from(cluster.node(node)["data_dir"].as_str().unwrap()).join("ocf")
}

/// Runs the agent by hand, as an administrator would before the cluster manages it.
fn start_by_hand(cluster: &DevCluster, node: &str, name: &str) {
    let dir = state_dir(cluster, node);
    std::fs::create_dir_all(&dir).unwrap();
    let status = std::process::Command::new(DUMMY)
        .arg("start")
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("OCF_ROOT", "/usr/lib/ocf")
        .env("OCF_RESOURCE_INSTANCE", name)
        .env("HA_RSCTMP", &dir)
        .env("HA_LOGFACILITY", "none")
        .status()
        .unwrap_or_else(|error| panic!("{DUMMY} must be installed (resource-agents): {error}"));
    assert!(status.success());
}

fn runs_on(cluster: &DevCluster, node: &str, name: &str) -> bool {
    state_dir(cluster, node)
        .join(format!("Dummy-{name}.state"))
        .exists()
}

fn add(name: &str, parameters: &[(&str, &str)]) -> ResourceAddRequest {
    ResourceAddRequest {
        name: name.into(),
        agent: "ocf:heartbeat:Dummy".into(),
        parameters: parameters
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect(),
        monitor_interval_ms: Some(1000),
        timeout_ms: Some(20_000),
        host: None,
        start: Some(true),
    }
}

#[test]
fn ocf_resources_are_validated_probed_monitored_and_recovered() {
    let _serial = serial();
    let cluster = DevCluster::up(3, &[]);
    let runtime = runtime();
    let client = cluster.client().with_deadline(Duration::from_secs(30));

    // A parameter the agent's meta-data does not know is refused, naming it; nothing changes.
    let error = runtime
        .block_on(client.add_resource(&add("web", &[("colour", "red")])))
        .unwrap_err();
    assert!(error.to_string().contains("colour"), "{error}");
    assert!(runtime.block_on(client.resources()).unwrap().is_empty());

    // Started by hand on two hosts before it is added: the probe keeps one, stops the other.
    start_by_hand(&cluster, "node2", "web");
    start_by_hand(&cluster, "node3", "web");
    let added = runtime
        .block_on(client.add_resource(&add("web", &[("fake", "hello")])))
        .unwrap();
    assert_eq!(
        (added.state.as_str(), added.node.as_deref()),
        ("running", Some("node2")),
        "{added:?}"
    );
    assert!(
        runs_on(&cluster, "node2", "web"),
        "the kept copy was stopped"
    );
    assert!(
        !runs_on(&cluster, "node3", "web"),
        "the second copy still runs"
    );
    assert!(!runs_on(&cluster, "node1", "web"));
    let events = runtime.block_on(client.events(None)).unwrap();
    assert!(
        events.iter().any(|event| event
            .message
            .contains("probe found it active on node2, node3")),
        "{events:?}"
    );

    // The agent's monitor notices a crash (state file gone); the cluster restarts it.
    std::fs::remove_file(state_dir(&cluster, "node2").join("Dummy-web.state")).unwrap();
    let recovered = runtime.block_on(eventually(
        "web to be restarted after its failure",
        Duration::from_secs(30),
        || async {
            let resource = client.resource("web").await.ok()?;
            (resource.state == "running" && resource.fail_counts.values().sum::<u32>() == 1)
                .then_some(resource)
        },
    ));
    let host = recovered.node.unwrap();
    assert!(runs_on(&cluster, &host, "web"));
    let events = runtime.block_on(client.events(None)).unwrap();
    assert!(
        events
            .iter()
            .any(|event| event.message.contains("found stopped by the monitor")),
        "no clear failure event"
    );

    // Stop and delete leave nothing running anywhere.
    runtime.block_on(client.delete_resource("web")).unwrap();
    for node in ["node1", "node2", "node3"] {
        assert!(!runs_on(&cluster, node, "web"), "web still runs on {node}");
    }
}
