//! Host failure on real processes: a namespace host is powered off (every process killed); the
//! leader suspects it, fences it through `fence_hafen_netns`, commits the confirmation, and only
//! then restarts its VM and OCF resource elsewhere (I2). The host comes back clean.

use crate::support::*;
use hafen_api_types::{NodeState, ResourceAddRequest};
use std::time::{Duration, Instant};

#[test]
fn a_powered_off_host_is_fenced_then_its_vm_and_resource_recover_elsewhere() {
    let _serial = serial();
    let mut cluster = DevCluster::up(3, &["--netns", "--demo-vms", "2"]);
    let leader_log = |cluster: &DevCluster, name: &str| {
        std::fs::read_to_string(cluster.node(name)["log"].as_str().unwrap()).unwrap_or_default()
    };
    let runtime = runtime();
    let client = cluster.client().with_deadline(Duration::from_secs(30));
    let http = http_client(Duration::from_secs(2));
    let leader = runtime.block_on(leader(&client)).unwrap();
    // A vm on a host that is not the leader, so the failure detector is not reset by an election.
    let vms = runtime.block_on(client.vms()).unwrap();
    let victim_vm = vms
        .iter()
        .find(|vm| vm.node.as_deref() != Some(leader.as_str()))
        .unwrap()
        .clone();
    let host = victim_vm.node.clone().unwrap();
    let url = cluster.file["vms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|vm| vm["name"] == victim_vm.name.as_str())
        .unwrap()["service_url"]
        .as_str()
        .unwrap()
        .to_string();
    let before = runtime.block_on(eventually(
        "the guest to answer",
        Duration::from_secs(120),
        || async { guest(&http, &url).await },
    ));
    let mut dummy = ResourceAddRequest {
        name: "web".into(),
        agent: "ocf:heartbeat:Dummy".into(),
        parameters: Default::default(),
        monitor_interval_ms: Some(1000),
        timeout_ms: Some(20_000),
        host: Some(host.clone()),
        start: Some(true),
        clone: None,
    };
    dummy.parameters.insert("fake".into(), "x".into());
    let web = runtime.block_on(client.add_resource(&dummy)).unwrap();
    assert_eq!(web.node.as_deref(), Some(host.as_str()));

    let tested = runtime
        .block_on(client.test_fence_device("netns", &host))
        .unwrap();
    assert_eq!(tested["power"], "on", "{tested}");
    let killed = Instant::now();
    power_off(&format!("hafen-{host}"));
    let fenced_after = runtime.block_on(eventually(
        "the host to be fenced",
        Duration::from_secs(30),
        || async {
            let status = client.status().await.ok()?;
            status
                .nodes
                .iter()
                .any(|node| node.name == host && node.state == NodeState::Fenced)
                .then(|| killed.elapsed())
        },
    ));
    let recovered = runtime.block_on(eventually(
        "the vm and the resource to run elsewhere",
        Duration::from_secs(60),
        || async {
            let vm = client.vm(&victim_vm.name).await.ok()?;
            let web = client.resource("web").await.ok()?;
            (vm.state == "running"
                && vm.node.as_deref() != Some(host.as_str())
                && web.state == "running"
                && web.node.as_deref() != Some(host.as_str()))
            .then(|| (killed.elapsed(), vm.node.unwrap()))
        },
    ));
    let tested = runtime
        .block_on(client.test_fence_device("netns", &host))
        .unwrap();
    assert_eq!(tested["power"], "off", "{tested}");
    let answering = runtime.block_on(eventually(
        "the guest to answer from its new host",
        Duration::from_secs(120),
        || async {
            guest(&http, &url)
                .await
                .filter(|reply| reply.boot_id != before.boot_id)
                .map(|_| killed.elapsed())
        },
    ));
    if recovered.0 > Duration::from_secs(3) {
        let log = leader_log(&cluster, &leader);
        println!(
            "slow recovery; leader log tail:\n{}",
            log.lines()
                .rev()
                .take(25)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    println!(
        "host {host} powered off: fenced after {:.2} s, vm and resource running on {} after {:.2} s, guest answering after {:.2} s",
        fenced_after.as_secs_f64(),
        recovered.1,
        recovered.0.as_secs_f64(),
        answering.as_secs_f64()
    );
    // I2 from the event log: the fence confirmation comes before any restart elsewhere.
    let events = runtime.block_on(client.events(None)).unwrap();
    let fenced_at = events
        .iter()
        .position(|event| event.message.starts_with(&format!("node {host} fenced")))
        .expect("fence event");
    let restarted_at = events
        .iter()
        .position(|event| {
            event
                .message
                .starts_with(&format!("{} starting on", victim_vm.name))
                && event.id > events[fenced_at].id
        })
        .expect("restart event after the fence");
    assert!(restarted_at > fenced_at);
    assert!(
        !events[..fenced_at].iter().any(|event| event
            .message
            .starts_with(&format!("{} starting on {}", victim_vm.name, recovered.1))),
        "the vm started elsewhere before its host was fenced"
    );
    // I1 from the processes: exactly one QEMU runs the vm.
    let qemus: usize = cluster
        .nodes()
        .iter()
        .map(|node| qemu_processes(node["netns"].as_str().unwrap()).len())
        .sum();
    assert_eq!(qemus, 2, "two demo vms must mean two QEMU processes");

    // The fenced host comes back: it rejoins clean. The old guest never runs again; the
    // scheduler may move the recovered one back (live), so the boot id stays the new one.
    let recovered_boot = runtime.block_on(guest(&http, &url)).unwrap().boot_id;
    let mut child = cluster.restart(&host);
    runtime.block_on(eventually(
        "the fenced host to rejoin",
        Duration::from_secs(30),
        || async {
            let status = client.status().await.ok()?;
            status
                .nodes
                .iter()
                .any(|node| node.name == host && node.state == NodeState::Online)
                .then_some(())
        },
    ));
    runtime.block_on(eventually(
        "the rejoin to be committed",
        Duration::from_secs(30),
        || async {
            let events = client.events(None).await.ok()?;
            events
                .iter()
                .any(|event| {
                    event
                        .message
                        .contains(&format!("node {host} rejoined after fencing"))
                })
                .then_some(())
        },
    ));
    runtime.block_on(eventually(
        "the cluster to settle after the rejoin",
        Duration::from_secs(60),
        || async {
            let vm = client.vm(&victim_vm.name).await.ok()?;
            (vm.state == "running").then_some(())
        },
    ));
    // A live migration back has two QEMUs for a moment; a vm running twice would stay at three.
    let namespaces: Vec<String> = cluster
        .nodes()
        .iter()
        .map(|node| node["netns"].as_str().unwrap().to_string())
        .collect();
    runtime.block_on(eventually(
        "two QEMU processes for two vms",
        Duration::from_secs(60),
        || async {
            let qemus: usize = namespaces
                .iter()
                .map(|namespace| qemu_processes(namespace).len())
                .sum();
            (qemus == 2).then_some(())
        },
    ));
    let reply = runtime.block_on(eventually(
        "the guest to answer",
        Duration::from_secs(60),
        || async { guest(&http, &url).await },
    ));
    assert_eq!(
        reply.boot_id, recovered_boot,
        "the old guest came back or the vm was restarted"
    );
    drop(cluster);
    let _ = child.wait();
}
