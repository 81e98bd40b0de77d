//! VM tests on real QEMU guests (TCG is enough) in network-namespace hosts: lifecycle, adoption,
//! live migration under load, migration failures, and refused specs.

use crate::support::*;
use hafen_api_types::{PoolRequest, TemplateRequest, VmCreateRequest};
use serde_json::Value;
use std::time::{Duration, Instant};

fn http() -> reqwest::Client {
    http_client(Duration::from_secs(2))
}

fn vm_url(cluster: &DevCluster, name: &str) -> String {
    cluster.file["vms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|vm| vm["name"] == name)
        .unwrap()["service_url"]
        .as_str()
        .unwrap()
        .to_string()
}

fn vm_host(runtime: &tokio::runtime::Runtime, client: &hafen_client::Client, name: &str) -> String {
    runtime.block_on(client.vm(name)).unwrap().node.unwrap()
}

async fn answering(http: &reqwest::Client, url: &str) -> GuestReply {
    eventually(
        &format!("the guest at {url} to answer"),
        Duration::from_secs(120),
        || async { guest(http, url).await },
    )
    .await
}

/// Start, graceful stop (the guest powers off on ACPI), data kept across stop and start,
/// kill, and a daemon restart that adopts the running guest (same boot id).
#[test]
fn a_vm_stops_gracefully_keeps_its_data_and_is_adopted_after_a_daemon_restart() {
    let _serial = serial();
    let mut cluster = DevCluster::up(3, &["--netns", "--demo-vms", "1"]);
    let runtime = runtime();
    let client = cluster.client().with_deadline(Duration::from_secs(30));
    // This test restarts a host's daemon; on a loaded machine that can take longer than the
    // node timeout, and the host must not be fenced for it: adoption is the subject here.
    runtime
        .block_on(client.set_property("stonith-enabled", "false"))
        .unwrap();
    let http = http();
    let url = vm_url(&cluster, "vm1");
    let base = url.trim_end_matches('/').to_string();
    let first = runtime.block_on(answering(&http, &url));
    let written: Value = runtime
        .block_on(async {
            http.get(format!("{base}/cgi-bin/data?value=kept-across-boots"))
                .send()
                .await?
                .json()
                .await
        })
        .unwrap();
    assert!(
        written.to_string().contains("kept-across-boots"),
        "{written}"
    );

    let host = vm_host(&runtime, &client, "vm1");
    let namespace = format!("hafen-{host}");
    let stopped = runtime.block_on(client.vm_action("vm1", "stop")).unwrap();
    assert_eq!(stopped.state, "stopped");
    assert!(
        qemu_processes(&namespace).is_empty(),
        "QEMU still runs after stop"
    );
    let console = std::fs::read_to_string(
        std::path::PathBuf::from(cluster.node(&host)["data_dir"].as_str().unwrap())
            .join("qemu/vm1/console.log"),
    )
    .unwrap_or_default();
    assert!(
        console.contains("Power down") || console.contains("reboot: Power"),
        "the guest did not power off cleanly:\n{}",
        console
            .lines()
            .rev()
            .take(10)
            .collect::<Vec<_>>()
            .join("\n")
    );

    let started = runtime.block_on(client.vm_action("vm1", "start")).unwrap();
    assert_eq!(started.state, "running");
    let second = runtime.block_on(answering(&http, &url));
    assert_ne!(
        first.boot_id, second.boot_id,
        "a new boot has a new boot id"
    );
    let records: Value = runtime
        .block_on(async {
            http.get(format!("{base}/cgi-bin/data"))
                .send()
                .await?
                .json()
                .await
        })
        .unwrap();
    assert!(
        records.to_string().contains("kept-across-boots"),
        "data lost across stop and start: {records}"
    );

    // Kill the daemon (not QEMU) and restart it: the same guest is adopted and managed.
    let host = vm_host(&runtime, &client, "vm1");
    cluster.kill(&host);
    assert_eq!(
        runtime.block_on(guest(&http, &url)).unwrap().boot_id,
        second.boot_id,
        "the guest died with its daemon"
    );
    let mut child = cluster.restart(&host);
    runtime.block_on(eventually(
        "the restarted node to be online",
        Duration::from_secs(20),
        || async {
            let status = client.status().await.ok()?;
            status
                .nodes
                .iter()
                .any(|node| {
                    node.name == host
                        && node.state == hafen_api_types::NodeState::Online
                        && node.log_index.is_some()
                })
                .then_some(())
        },
    ));
    assert_eq!(
        runtime.block_on(answering(&http, &url)).boot_id,
        second.boot_id,
        "the guest was restarted instead of adopted"
    );
    let stopped = runtime.block_on(client.vm_action("vm1", "stop")).unwrap();
    assert_eq!(stopped.state, "stopped", "the adopted guest is not managed");
    assert!(qemu_processes(&format!("hafen-{host}")).is_empty());
    // Kill: a started guest killed through its host's agent vanishes at once and is restarted by the cluster.
    runtime.block_on(client.vm_action("vm1", "start")).unwrap();
    drop(cluster);
    let _ = child.wait();
}

/// Live migration between two namespace hosts while a client polls the guest every 20 ms.
#[test]
fn a_live_migration_keeps_the_guest_answering_with_the_same_boot_id() {
    let _serial = serial();
    let cluster = DevCluster::up(3, &["--netns", "--demo-vms", "1"]);
    let runtime = runtime();
    let client = cluster.client().with_deadline(Duration::from_secs(30));
    let url = vm_url(&cluster, "vm1");
    // Requests in flight while the bridges relearn the guest's MAC are retransmitted by TCP;
    // a generous timeout lets them complete, and the longest gap is reported.
    let http = http_client(Duration::from_secs(5));
    let before = runtime.block_on(answering(&http, &url));
    let source = vm_host(&runtime, &client, "vm1");
    let target = cluster
        .nodes()
        .iter()
        .map(|node| node["name"].as_str().unwrap().to_string())
        .find(|name| *name != source)
        .unwrap();
    let (replies, failures, result) = runtime.block_on(async {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let poller = tokio::spawn({
            let (http, url, stop) = (http.clone(), url.clone(), stop.clone());
            async move {
                let mut replies = Vec::new();
                let mut failures = Vec::new();
                let mut longest = Duration::ZERO;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let sent = Instant::now();
                    match guest(&http, &url).await {
                        Some(reply) => replies.push(reply),
                        None => failures.push(sent),
                    }
                    longest = longest.max(sent.elapsed());
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                println!(
                    "longest request during the migration: {} ms",
                    longest.as_millis()
                );
                (replies, failures)
            }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let result = client.migrate_vm("vm1", Some(&target), None).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (replies, failures) = poller.await.unwrap();
        (replies, failures, result)
    });
    let result = result.unwrap();
    println!(
        "migration {} -> {}: QEMU {} ms, downtime {} ms, hafen total {} ms; {} replies, {} failed",
        result.from,
        result.to,
        result.qemu_total_time_ms,
        result.downtime_ms,
        result.orchestration_total_ms,
        replies.len(),
        failures.len()
    );
    assert_eq!(result.to, target);
    assert!(
        failures.is_empty(),
        "{} requests failed during the migration",
        failures.len()
    );
    assert!(
        replies.iter().all(|reply| reply.boot_id == before.boot_id),
        "the guest rebooted"
    );
    assert!(
        replies
            .windows(2)
            .all(|pair| pair[0].counter < pair[1].counter),
        "the counter went backwards"
    );
    assert!(
        qemu_processes(&format!("hafen-{source}")).is_empty(),
        "QEMU left on the source"
    );
    assert_eq!(qemu_processes(&format!("hafen-{target}")).len(), 1);
    let status = runtime.block_on(client.status()).unwrap();
    let vm = status
        .resources
        .iter()
        .find(|resource| resource.name == "vm1")
        .unwrap();
    assert_eq!(
        (vm.state.as_str(), vm.node.as_deref()),
        ("running", Some(target.as_str()))
    );

    // The manual move is no hidden ban: it is a listed constraint, and one that expires
    // lets the vm go home by itself.
    let constraints = runtime.block_on(client.constraints()).unwrap();
    let prefer = constraints
        .iter()
        .find(|constraint| constraint.id == "cli-prefer-vm1")
        .expect("the move's constraint is listed");
    assert_eq!(
        (prefer.host.as_str(), prefer.score),
        (target.as_str(), 1_000_000)
    );
    runtime
        .block_on(client.remove_constraint("cli-prefer-vm1"))
        .unwrap();
    runtime.block_on(eventually(
        "vm1 to return to its preferred host",
        Duration::from_secs(60),
        || async {
            let vm = client.vm("vm1").await.ok()?;
            (vm.state == "running" && vm.node.as_deref() == Some(source.as_str())).then_some(())
        },
    ));
    runtime
        .block_on(client.migrate_vm_for("vm1", Some(&target), 3))
        .unwrap();
    assert_eq!(
        runtime.block_on(client.vm("vm1")).unwrap().node.as_deref(),
        Some(target.as_str())
    );
    runtime.block_on(eventually(
        "the expired move to let vm1 go home",
        Duration::from_secs(60),
        || async {
            let vm = client.vm("vm1").await.ok()?;
            (vm.state == "running" && vm.node.as_deref() == Some(source.as_str())).then_some(())
        },
    ));
    assert_eq!(
        runtime.block_on(guest(&http, &url)).unwrap().boot_id,
        before.boot_id
    );
}

/// A migration to an unreachable target, and one whose target QEMU is killed mid-transfer,
/// both leave the VM running on its source with a clear error and a consistent state.
#[test]
fn failed_migrations_leave_the_vm_running_on_its_source() {
    let _serial = serial();
    let cluster = DevCluster::up(3, &["--netns", "--demo-vms", "1"]);
    let runtime = runtime();
    let client = cluster.client().with_deadline(Duration::from_secs(30));
    let http = http();
    let url = vm_url(&cluster, "vm1");
    let before = runtime.block_on(answering(&http, &url));
    let source = vm_host(&runtime, &client, "vm1");
    let others: Vec<String> = cluster
        .nodes()
        .iter()
        .map(|node| node["name"].as_str().unwrap().to_string())
        .filter(|name| *name != source)
        .collect();

    // Target QEMU killed mid-migration (a slow transfer keeps the window open).
    let target = others[0].clone();
    let namespace = format!("hafen-{target}");
    let error = runtime.block_on(async {
        let migration = tokio::spawn({
            let (client, target) = (client.clone(), target.clone());
            async move { client.migrate_vm("vm1", Some(&target), Some(4)).await }
        });
        let pids = eventually("the destination QEMU", Duration::from_secs(30), || async {
            let pids = qemu_processes(&namespace);
            (!pids.is_empty()).then_some(pids)
        })
        .await;
        // Let the transfer get going; QEMU daemonizes, so look up its pid again now.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let pids = [pids, qemu_processes(&namespace)].concat();
        assert!(
            !pids.is_empty(),
            "the destination QEMU vanished before it was killed"
        );
        for pid in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        migration.await.unwrap().unwrap_err()
    });
    let message = error.to_string();
    assert!(
        message.contains("keeps running on") && message.contains(&source),
        "{message}"
    );
    let after = runtime.block_on(answering(&http, &url));
    assert_eq!(after.boot_id, before.boot_id, "the guest was restarted");
    let vm = runtime.block_on(client.vm("vm1")).unwrap();
    assert_eq!(
        (vm.state.as_str(), vm.node.as_deref()),
        ("running", Some(source.as_str()))
    );
    assert!(
        vm.last_error
            .as_deref()
            .is_some_and(|error| error.contains("migration")),
        "{vm:?}"
    );
    assert!(
        qemu_processes(&namespace).is_empty(),
        "a destination QEMU was left behind"
    );

    // Target unreachable: its daemon is gone.
    let unreachable = others[1].clone();
    cluster.kill(&unreachable);
    let error = runtime
        .block_on(client.migrate_vm("vm1", Some(&unreachable), None))
        .unwrap_err()
        .to_string();
    assert!(error.contains(&unreachable), "{error}");
    let vm = runtime.block_on(client.vm("vm1")).unwrap();
    assert_eq!(
        (vm.state.as_str(), vm.node.as_deref()),
        ("running", Some(source.as_str()))
    );
    assert_eq!(
        runtime.block_on(answering(&http, &url)).boot_id,
        before.boot_id
    );
}

/// Zero memory, an unknown pool, a duplicate name and a missing image are refused with a
/// clear error, and nothing is created.
#[test]
fn bad_vm_specs_are_refused_and_create_nothing() {
    let _serial = serial();
    let cluster = DevCluster::up(1, &[]);
    let runtime = runtime();
    let client = cluster.client();
    let pool_dir = cluster.path().join("pool");
    let guest = guest_env();
    let value = |key: &str| {
        guest
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    runtime
        .block_on(client.define_pool(&PoolRequest {
            name: "shared".into(),
            kind: None,
            path: pool_dir.display().to_string(),
        }))
        .unwrap();
    let template = |name: &str, pool: &str, kernel: String| TemplateRequest {
        name: name.into(),
        pool: pool.into(),
        kernel: Some(kernel),
        initrd: Some(value("HAFEN_GUEST_INITRD")),
        cmdline: Some(value("HAFEN_GUEST_CMDLINE")),
        base_volume: None,
        disk_size_mib: 16,
        bridge: "br0".into(),
        memory_mib: Some(128),
        vcpus: Some(1),
    };
    let error = runtime
        .block_on(client.define_template(&template(
            "elsewhere",
            "nowhere",
            value("HAFEN_GUEST_KERNEL"),
        )))
        .unwrap_err();
    assert!(
        error.to_string().contains("unknown pool \"nowhere\""),
        "{error}"
    );
    runtime
        .block_on(client.define_template(&template("good", "shared", value("HAFEN_GUEST_KERNEL"))))
        .unwrap();
    runtime
        .block_on(client.define_template(&template(
            "lost",
            "shared",
            "/nonexistent/vmlinuz".into(),
        )))
        .unwrap();
    let create = |name: &str, template: &str, memory: Option<u64>| VmCreateRequest {
        name: name.into(),
        template: template.into(),
        vcpus: None,
        memory_mib: memory,
        host: None,
        address: None,
        start: Some(false),
    };
    let error = runtime
        .block_on(client.create_vm(&create("zero", "good", Some(0))))
        .unwrap_err();
    assert!(error.to_string().contains("memory_mib 0"), "{error}");
    let error = runtime
        .block_on(client.create_vm(&create("ghost", "lost", None)))
        .unwrap_err();
    assert!(
        error.to_string().contains("/nonexistent/vmlinuz") && error.to_string().contains("missing"),
        "{error}"
    );
    let error = runtime
        .block_on(client.create_vm(&create("orphan", "no-such-template", None)))
        .unwrap_err();
    assert!(error.to_string().contains("unknown template"), "{error}");
    runtime
        .block_on(client.create_vm(&create("one", "good", None)))
        .unwrap();
    let error = runtime
        .block_on(client.create_vm(&create("one", "good", None)))
        .unwrap_err();
    assert!(error.to_string().contains("exists already"), "{error}");
    // Only the one good VM and its disk exist.
    let vms: Vec<String> = runtime
        .block_on(client.vms())
        .unwrap()
        .into_iter()
        .map(|vm| vm.name)
        .collect();
    assert_eq!(vms, vec!["one".to_string()]);
    let mut files: Vec<String> = std::fs::read_dir(&pool_dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().to_string())
        .filter(|name| !name.starts_with('.'))
        .collect();
    files.sort();
    assert_eq!(
        files,
        vec!["one-disk.qcow2".to_string()],
        "refused creations left files behind: {files:?}"
    );
    // Cleanup of a known resource succeeds; of an unknown one it names it.
    runtime.block_on(client.cleanup_resource("one")).unwrap();
    let error = runtime
        .block_on(client.cleanup_resource("ghost"))
        .unwrap_err();
    assert!(error.to_string().contains("ghost"), "{error}");
}

/// `node standby` live-migrates the host's VMs away; `node online` brings them back only
/// when the preferred host's score beats stickiness.
#[test]
fn standby_migrates_vms_away_and_online_brings_them_back_only_when_stickiness_allows() {
    let _serial = serial();
    let cluster = DevCluster::up(3, &["--netns", "--demo-vms", "1"]);
    let runtime = runtime();
    let client = cluster.client().with_deadline(Duration::from_secs(30));
    let http = http();
    let url = vm_url(&cluster, "vm1");
    let boot = runtime.block_on(answering(&http, &url)).boot_id;
    let home = vm_host(&runtime, &client, "vm1");
    runtime
        .block_on(client.set_node_mode(&home, "standby"))
        .unwrap();
    let away = runtime.block_on(eventually(
        "vm1 to leave the standby host",
        Duration::from_secs(60),
        || async {
            let vm = client.vm("vm1").await.ok()?;
            (vm.state == "running" && vm.node.as_deref() != Some(home.as_str()))
                .then_some(vm.node.unwrap())
        },
    ));
    assert_eq!(
        runtime.block_on(answering(&http, &url)).boot_id,
        boot,
        "standby restarted the vm instead of migrating it"
    );
    assert!(qemu_processes(&format!("hafen-{home}")).is_empty());

    // High stickiness: back online, the vm stays where it is.
    runtime
        .block_on(client.set_property("default-resource-stickiness", "1000"))
        .unwrap();
    runtime
        .block_on(client.set_node_mode(&home, "online"))
        .unwrap();
    let explanation = runtime.block_on(client.explain("vm1")).unwrap().text;
    assert!(explanation.contains("resource-stickiness"), "{explanation}");
    // Several reconciliation passes (one per second) must leave it alone.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        runtime.block_on(client.vm("vm1")).unwrap().node.as_deref(),
        Some(away.as_str())
    );

    // Low stickiness: the preferred host wins and the vm goes home, live.
    runtime
        .block_on(client.set_property("default-resource-stickiness", "1"))
        .unwrap();
    runtime.block_on(eventually(
        "vm1 to return home",
        Duration::from_secs(60),
        || async {
            let vm = client.vm("vm1").await.ok()?;
            (vm.state == "running" && vm.node.as_deref() == Some(home.as_str())).then_some(())
        },
    ));
    assert_eq!(runtime.block_on(answering(&http, &url)).boot_id, boot);
}
