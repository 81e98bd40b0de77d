//! The fault suite (DESIGN section 4, issue "failure detection, fencing and recovery"): real
//! daemons on namespace hosts, real test-guest VMs and `ocf:heartbeat:Dummy` resources,
//! fenced by `fence_hafen_netns`. Every scenario runs under an [`Audit`] that checks I1 from
//! the QEMU processes of every host and the guests' boot ids, and I2 from the event log;
//! each ends with every VM and resource running.

use crate::support::*;
use hafen_api_types::{EventEntry, NodeState, ResourceAddRequest};
use hafen_client::Client;
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Two copies of one VM may coexist only while QEMU hands a live migration over: the
/// destination runs with `-incoming` and the pair is short-lived.
const MIGRATION_OVERLAP: Duration = Duration::from_secs(5);

/// A second QEMU process of a VM that is no migration half: QEMU's daemonizing parent, or
/// a start that failed on the image lock, lives for milliseconds. A second copy that
/// lasts longer runs the VM twice.
const STRAY_PROCESS: Duration = Duration::from_secs(1);

/// One QEMU process as the audit sees it.
#[derive(Clone)]
struct Qemu {
    namespace: String,
    pid: i32,
    incoming: bool,
}

fn describe(copies: &[Qemu]) -> String {
    copies
        .iter()
        .map(|copy| {
            let incoming = if copy.incoming { " (incoming)" } else { "" };
            format!("pid {} in {}{incoming}", copy.pid, copy.namespace)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// QEMU processes per VM name across the namespaces, stopped (frozen) ones included: a
/// frozen copy resumes on SIGCONT, so it still counts as running.
fn qemus_by_vm(namespaces: &[String]) -> BTreeMap<String, Vec<Qemu>> {
    let mut by_vm: BTreeMap<String, Vec<Qemu>> = BTreeMap::new();
    for namespace in namespaces {
        for pid in qemu_processes(namespace) {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            let args: Vec<String> = cmdline
                .split(|byte| *byte == 0)
                .map(|arg| String::from_utf8_lossy(arg).to_string())
                .collect();
            let Some(name) = args
                .windows(2)
                .find(|pair| pair[0] == "-name")
                .and_then(|pair| pair[1].strip_prefix("guest="))
                .map(|name| name.split(',').next().unwrap_or(name).to_string())
            else {
                continue;
            };
            by_vm.entry(name).or_default().push(Qemu {
                namespace: namespace.clone(),
                pid,
                incoming: args.iter().any(|arg| arg == "-incoming"),
            });
        }
    }
    by_vm
}

/// Samples every host's QEMU processes and every guest's boot id until stopped; reports
/// I1 violations: a VM running twice (not as the halves of a live migration), or an old
/// guest answering again after a newer one did.
pub struct Audit {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl Audit {
    pub fn start(namespaces: Vec<String>, guests: Vec<(String, String)>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let runtime = runtime();
                let http = http_client(Duration::from_millis(300));
                let mut violations = Vec::new();
                let mut double_since: BTreeMap<String, Instant> = BTreeMap::new();
                let mut boots: BTreeMap<String, Vec<String>> = BTreeMap::new();
                while !stop.load(Ordering::SeqCst) {
                    let now = Instant::now();
                    for (vm, copies) in qemus_by_vm(&namespaces) {
                        if copies.len() < 2 {
                            double_since.remove(&vm);
                            continue;
                        }
                        let since = *double_since.entry(vm.clone()).or_insert(now);
                        let handover = copies.len() == 2 && copies.iter().any(|copy| copy.incoming);
                        let allowed = if handover {
                            MIGRATION_OVERLAP
                        } else {
                            STRAY_PROCESS
                        };
                        if now.duration_since(since) > allowed {
                            let message = format!(
                                "I1: {vm} runs {} times: {}",
                                copies.len(),
                                describe(&copies)
                            );
                            if !violations.contains(&message) {
                                violations.push(message);
                            }
                        }
                    }
                    for (vm, url) in &guests {
                        if let Some(reply) = runtime.block_on(guest(&http, url)) {
                            let seen = boots.entry(vm.clone()).or_default();
                            if seen.last() != Some(&reply.boot_id) {
                                if seen.contains(&reply.boot_id) {
                                    violations.push(format!(
                                        "I1: an older guest of {vm} (boot {}) answered again after boot {}",
                                        reply.boot_id,
                                        seen.last().unwrap()
                                    ));
                                }
                                seen.push(reply.boot_id);
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                violations
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Ends the audit and returns what it found.
    pub fn finish(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Audit {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// I2 from the event log: after `from` (an event id), a resource that ran on `host` starts
/// on another host only after a committed fence confirmation of `host` that came from a
/// device or an operator.
pub fn i2_violations(
    events: &[EventEntry],
    from: u64,
    host: &str,
    resources: &[String],
) -> Vec<String> {
    let mut violations = Vec::new();
    let mut confirmed = false;
    for event in events.iter().filter(|event| event.id > from) {
        if event.message.starts_with(&format!("node {host} fenced")) {
            confirmed = !event.message.contains("NOT fenced");
        }
        if event.message.starts_with(&format!("node {host} rejoined")) {
            confirmed = false;
        }
        for resource in resources {
            let starting = format!("{resource} starting on ");
            if let Some(target) = event.message.strip_prefix(&starting)
                && target != host
                && !confirmed
            {
                violations.push(format!(
                    "I2: {resource} started on {target} (event {}) without a confirmed fence of {host}",
                    event.id
                ));
            }
        }
    }
    violations
}

/// A 3-host namespace cluster with two demo VMs and a Dummy resource, under audit.
pub struct FaultBed {
    pub cluster: DevCluster,
    pub runtime: tokio::runtime::Runtime,
    pub client: Client,
    pub http: reqwest::Client,
    /// (vm name, guest url)
    pub guests: Vec<(String, String)>,
    audit: Option<Audit>,
    restarted: Vec<std::process::Child>,
}

impl FaultBed {
    pub fn up() -> Self {
        Self::up_with(&[])
    }

    /// With extra `dev-cluster up` arguments.
    pub fn up_with(extra: &[&str]) -> Self {
        let mut args = vec!["--netns", "--demo-vms", "2"];
        args.extend_from_slice(extra);
        let cluster = DevCluster::up(3, &args);
        let runtime = runtime();
        let client = cluster.client().with_deadline(Duration::from_secs(30));
        let http = http_client(Duration::from_secs(2));
        let guests: Vec<(String, String)> = cluster.file["vms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|vm| {
                (
                    vm["name"].as_str().unwrap().to_string(),
                    vm["service_url"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let mut dummy = ResourceAddRequest {
            name: "web".into(),
            agent: "ocf:heartbeat:Dummy".into(),
            parameters: Default::default(),
            monitor_interval_ms: Some(1000),
            timeout_ms: Some(20_000),
            host: None,
            start: Some(true),
            clone: None,
        };
        dummy.parameters.insert("fake".into(), "x".into());
        runtime.block_on(client.add_resource(&dummy)).unwrap();
        let namespaces = cluster
            .nodes()
            .iter()
            .map(|node| node["netns"].as_str().unwrap().to_string())
            .collect();
        let bed = Self {
            audit: Some(Audit::start(namespaces, guests.clone())),
            cluster,
            runtime,
            client,
            http,
            guests,
            restarted: Vec::new(),
        };
        bed.all_running("the cluster to come up", Duration::from_secs(120));
        bed
    }

    pub fn namespaces(&self) -> Vec<String> {
        self.cluster
            .nodes()
            .iter()
            .map(|node| node["netns"].as_str().unwrap().to_string())
            .collect()
    }

    pub fn namespace(&self, host: &str) -> String {
        self.cluster.node(host)["netns"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The host's link on the switch (`hs<N>` in `hafen-sw`), as the dev cluster names it.
    pub fn switch_link(&self, host: &str) -> String {
        let index = self
            .cluster
            .nodes()
            .iter()
            .position(|node| node["name"] == host)
            .unwrap();
        format!("hs{}", index + 1)
    }

    pub fn leader(&self) -> String {
        self.runtime
            .block_on(eventually("a leader", Duration::from_secs(30), || async {
                leader(&self.client).await
            }))
    }

    /// Where every VM and resource runs now.
    pub fn placement(&self) -> BTreeMap<String, String> {
        let mut placement = BTreeMap::new();
        for vm in self.runtime.block_on(self.client.vms()).unwrap() {
            if let Some(node) = vm.node {
                placement.insert(vm.name, node);
            }
        }
        for resource in self.runtime.block_on(self.client.resources()).unwrap() {
            if let Some(node) = resource.node {
                placement.insert(resource.name, node);
            }
        }
        placement
    }

    /// A host that is not the leader and runs at least one VM.
    pub fn victim(&self) -> String {
        let leader = self.leader();
        let placement = self.placement();
        self.guests
            .iter()
            .filter_map(|(vm, _)| placement.get(vm))
            .find(|host| **host != leader)
            .cloned()
            .expect("a VM on a host that is not the leader")
    }

    pub fn last_event_id(&self) -> u64 {
        self.runtime
            .block_on(self.client.events(None))
            .unwrap()
            .last()
            .map_or(0, |event| event.id)
    }

    pub fn events_since(&self, from: u64) -> Vec<EventEntry> {
        self.runtime
            .block_on(self.client.events(None))
            .unwrap()
            .into_iter()
            .filter(|event| event.id > from)
            .collect()
    }

    /// Waits until every VM runs and its guest answers, and every resource runs.
    pub fn all_running(&self, what: &str, within: Duration) {
        self.runtime.block_on(eventually(what, within, || async {
            for vm in self.client.vms().await.ok()? {
                if vm.state != "running" {
                    return None;
                }
            }
            for resource in self.client.resources().await.ok()? {
                if resource.state != "running" {
                    return None;
                }
            }
            for (_, url) in &self.guests {
                guest(&self.http, url).await?;
            }
            Some(())
        }));
    }

    /// Waits until `host` shows `state` in the status.
    pub fn node_state(&self, host: &str, state: NodeState, within: Duration) -> Duration {
        let started = Instant::now();
        self.runtime.block_on(eventually(
            &format!("{host} to be {state:?}"),
            within,
            || async {
                let status = self.client.status().await.ok()?;
                status
                    .nodes
                    .iter()
                    .any(|node| node.name == host && node.state == state)
                    .then_some(())
            },
        ));
        started.elapsed()
    }

    /// Starts a host's daemon again (after it was fenced) and waits until it rejoined.
    pub fn bring_back(&mut self, host: &str) {
        let child = self.cluster.restart(host);
        self.restarted.push(child);
        self.node_state(host, NodeState::Online, Duration::from_secs(60));
    }

    /// Ends the run: every VM and resource running, then the audit's verdict.
    pub fn finish(mut self) -> Vec<String> {
        self.all_running(
            "every VM and resource to run at the end",
            Duration::from_secs(120),
        );
        let violations = self.audit.take().unwrap().finish();
        drop(self.cluster);
        for mut child in self.restarted.drain(..) {
            let _ = child.wait();
        }
        violations
    }
}

/// Runs `ip` with the arguments; panics naming the command when it fails.
fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().unwrap();
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Sends `signal` to every process of a namespace host.
fn signal_host(namespace: &str, signal: nix::sys::signal::Signal) {
    let output = Command::new("ip")
        .args(["netns", "pids", namespace])
        .output()
        .unwrap();
    for pid in String::from_utf8_lossy(&output.stdout).split_whitespace() {
        if let Ok(pid) = pid.parse::<i32>() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
        }
    }
}

/// What ran on `host` before a fault, for the I2 check.
fn resources_on(bed: &FaultBed, host: &str) -> Vec<String> {
    bed.placement()
        .into_iter()
        .filter(|(_, node)| node == host)
        .map(|(name, _)| name)
        .collect()
}

fn assert_clean(violations: Vec<String>) {
    assert!(
        violations.is_empty(),
        "violations:\n{}",
        violations.join("\n")
    );
}

/// The common shape of a host failure: the fault, then fenced, recovered elsewhere, and
/// the host brought back clean; audited for I1 and I2.
fn host_failure(fault: impl FnOnce(&FaultBed, &str), heal: impl FnOnce(&FaultBed, &str)) {
    let _serial = serial();
    let mut bed = FaultBed::up();
    let host = bed.victim();
    let moved = resources_on(&bed, &host);
    let from = bed.last_event_id();
    let started = Instant::now();
    fault(&bed, &host);
    bed.node_state(&host, NodeState::Fenced, Duration::from_secs(30));
    let fenced = started.elapsed();
    bed.all_running(
        "the host's VMs and resources to run elsewhere",
        Duration::from_secs(120),
    );
    let placement = bed.placement();
    for name in &moved {
        assert_ne!(placement.get(name), Some(&host), "{name} still on {host}");
    }
    println!(
        "{host}: fenced after {:.2} s, {moved:?} running elsewhere after {:.2} s",
        fenced.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    heal(&bed, &host);
    bed.bring_back(&host);
    let events = bed.events_since(from);
    let mut violations = i2_violations(&events, from, &host, &moved);
    violations.extend(bed.finish());
    assert_clean(violations);
}

#[test]
fn a_frozen_host_is_fenced_and_never_runs_its_vms_again() {
    host_failure(
        |bed, host| signal_host(&bed.namespace(host), nix::sys::signal::Signal::SIGSTOP),
        |bed, host| signal_host(&bed.namespace(host), nix::sys::signal::Signal::SIGCONT),
    );
}

#[test]
fn a_host_whose_link_is_cut_is_fenced_and_its_vms_recover_elsewhere() {
    host_failure(
        |bed, host| {
            ip(&[
                "-n",
                "hafen-sw",
                "link",
                "set",
                &bed.switch_link(host),
                "down",
            ])
        },
        |bed, host| {
            ip(&[
                "-n",
                "hafen-sw",
                "link",
                "set",
                &bed.switch_link(host),
                "up",
            ])
        },
    );
}

#[test]
fn a_host_whose_daemon_is_killed_is_fenced_and_its_vms_recover_elsewhere() {
    host_failure(|bed, host| bed.cluster.kill(host), |_, _| {});
}

fn iptables(namespace: &str, args: &[&str]) {
    let output = Command::new("ip")
        .args(["netns", "exec", namespace, "iptables"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "iptables {} in {namespace}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Loss in the given chains (`OUTPUT`: what the host sends, `INPUT`: what it receives) of
/// every host for a while: whatever the cluster decides (a false suspicion may fence a
/// host), nothing runs twice and everything runs at the end. The loss is the kernel's
/// `statistic` match dropping packets at random (this machine's kernel has no `netem`).
fn lossy(chains: &[&str]) {
    let _serial = serial();
    let mut bed = FaultBed::up();
    let from = bed.last_event_id();
    let before = bed.placement();
    let hosts: Vec<String> = bed
        .cluster
        .nodes()
        .iter()
        .map(|node| node["name"].as_str().unwrap().to_string())
        .collect();
    let rule = |chain: &str| -> Vec<String> {
        [
            chain,
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            "0.3",
            "-j",
            "DROP",
        ]
        .iter()
        .map(|arg| arg.to_string())
        .collect()
    };
    for host in &hosts {
        for chain in chains {
            let mut args = vec!["-A".to_string()];
            args.extend(rule(chain));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            iptables(&bed.namespace(host), &args);
        }
    }
    // The fault lasts a while: this sleep is the fault's duration, not a synchronization.
    std::thread::sleep(Duration::from_secs(10));
    for host in &hosts {
        for chain in chains {
            let mut args = vec!["-D".to_string()];
            args.extend(rule(chain));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            // A fenced host's namespace lost its processes, not its rules.
            iptables(&bed.namespace(host), &args);
        }
    }
    let events = bed.events_since(from);
    let mut violations = Vec::new();
    for host in &hosts {
        let moved: Vec<String> = before
            .iter()
            .filter(|(_, node)| *node == host)
            .map(|(name, _)| name.clone())
            .collect();
        violations.extend(i2_violations(&events, from, host, &moved));
        if events
            .iter()
            .any(|event| event.message.starts_with(&format!("node {host} fenced")))
        {
            bed.node_state(host, NodeState::Fenced, Duration::from_secs(30));
            bed.bring_back(host);
        }
    }
    println!(
        "events during the loss:\n{}",
        events
            .iter()
            .map(|event| event.message.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    violations.extend(bed.finish());
    assert_clean(violations);
}

#[test]
fn thirty_percent_loss_on_every_link_keeps_i1_and_i2() {
    lossy(&["INPUT", "OUTPUT"]);
}

#[test]
fn asymmetric_loss_keeps_i1_and_i2() {
    // Only what the hosts send is lost; what they receive arrives.
    lossy(&["OUTPUT"]);
}

#[test]
fn a_500_ms_link_drop_causes_no_failover() {
    let _serial = serial();
    let bed = FaultBed::up();
    let leader = bed.leader();
    let follower = bed.victim();
    for host in [follower, leader] {
        let from = bed.last_event_id();
        let before = bed.placement();
        let boots: Vec<String> = bed
            .guests
            .iter()
            .map(|(_, url)| bed.runtime.block_on(guest(&bed.http, url)).unwrap().boot_id)
            .collect();
        ip(&[
            "-n",
            "hafen-sw",
            "link",
            "set",
            &bed.switch_link(&host),
            "down",
        ]);
        std::thread::sleep(Duration::from_millis(500));
        ip(&[
            "-n",
            "hafen-sw",
            "link",
            "set",
            &bed.switch_link(&host),
            "up",
        ]);
        // Long enough for a suspicion (node timeout 1 s) and a lease (3 s) to run out.
        let watched = Instant::now();
        while watched.elapsed() < Duration::from_secs(5) {
            let events = bed.events_since(from);
            let failover: Vec<&str> = events
                .iter()
                .map(|event| event.message.as_str())
                .filter(|message| {
                    message.contains("stopped answering")
                        || message.contains(" fenced")
                        || message.contains(" starting on ")
                })
                .collect();
            assert!(
                failover.is_empty(),
                "a 500 ms drop of {host}'s link caused: {failover:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        bed.all_running(
            "everything to answer after the drop",
            Duration::from_secs(30),
        );
        assert_eq!(
            bed.placement(),
            before,
            "something moved after a 500 ms drop of {host}"
        );
        let after: Vec<String> = bed
            .guests
            .iter()
            .map(|(_, url)| bed.runtime.block_on(guest(&bed.http, url)).unwrap().boot_id)
            .collect();
        assert_eq!(
            after, boots,
            "a guest restarted after a 500 ms drop of {host}"
        );
    }
    assert_clean(bed.finish());
}

#[test]
fn the_leader_killed_during_a_live_migration_leaves_the_vm_running_once() {
    let _serial = serial();
    let mut bed = FaultBed::up();
    let leader = bed.leader();
    let (vm, _) = bed.guests[0].clone();
    let source = bed.placement()[&vm].clone();
    let target = bed
        .cluster
        .nodes()
        .iter()
        .map(|node| node["name"].as_str().unwrap().to_string())
        .find(|host| *host != source)
        .unwrap();
    // Slow enough (1 MiB/s) that the leader dies while the memory is still copied.
    let migrating = {
        let client = bed.client.clone();
        let vm = vm.clone();
        let target = target.clone();
        bed.runtime
            .spawn(async move { client.migrate_vm(&vm, Some(&target), Some(1)).await })
    };
    bed.runtime.block_on(eventually(
        "the migration to begin",
        Duration::from_secs(30),
        || async {
            let info = bed.client.vm(&vm).await.ok()?;
            (info.state == "migrating").then_some(())
        },
    ));
    bed.cluster.kill(&leader);
    let child = bed.cluster.restart(&leader);
    bed.restarted.push(child);
    let _ = bed.runtime.block_on(migrating);
    bed.all_running(
        "the VM to run once after the leader died",
        Duration::from_secs(120),
    );
    let placement = bed.placement();
    let copies = qemus_by_vm(&bed.namespaces());
    assert_eq!(copies[&vm].len(), 1, "{vm}: {}", describe(&copies[&vm]));
    println!(
        "leader {leader} killed while {vm} migrated {source} -> {target}: it runs on {}",
        placement[&vm]
    );
    assert_clean(bed.finish());
}

#[test]
fn a_full_cluster_restart_adopts_every_vm() {
    let _serial = serial();
    let mut bed = FaultBed::up();
    let before = bed.placement();
    let boots: Vec<String> = bed
        .guests
        .iter()
        .map(|(_, url)| bed.runtime.block_on(guest(&bed.http, url)).unwrap().boot_id)
        .collect();
    let hosts: Vec<String> = before.values().cloned().collect();
    let all: Vec<String> = bed
        .cluster
        .nodes()
        .iter()
        .map(|node| node["name"].as_str().unwrap().to_string())
        .collect();
    for host in &all {
        bed.cluster.kill(host);
    }
    for host in &all {
        let child = bed.cluster.restart(host);
        bed.restarted.push(child);
    }
    bed.all_running("every VM after the restart", Duration::from_secs(120));
    let after: Vec<String> = bed
        .guests
        .iter()
        .map(|(_, url)| bed.runtime.block_on(guest(&bed.http, url)).unwrap().boot_id)
        .collect();
    assert_eq!(after, boots, "the guests were restarted instead of adopted");
    assert!(hosts.iter().all(|host| all.contains(host)));
    assert_clean(bed.finish());
}

/// With fencing disabled nothing is recovered, but a host cut off from the quorum still
/// self-fences when its lease lapses: its VMs die there. Back in contact it starts nothing
/// by itself; the leader restarts what should run.
#[test]
fn an_isolated_host_self_fences_when_its_lease_lapses() {
    let _serial = serial();
    let bed = FaultBed::up();
    bed.runtime
        .block_on(bed.client.set_property("stonith-enabled", "false"))
        .unwrap();
    let host = bed.victim();
    let namespace = bed.namespace(&host);
    let vms_there = qemu_processes(&namespace).len();
    assert!(vms_there > 0);
    let cut = Instant::now();
    ip(&[
        "-n",
        "hafen-sw",
        "link",
        "set",
        &bed.switch_link(&host),
        "down",
    ]);
    let gone = bed.runtime.block_on(eventually(
        "the isolated host to kill its VMs",
        Duration::from_secs(10),
        || async { qemu_processes(&namespace).is_empty().then(|| cut.elapsed()) },
    ));
    println!(
        "{host} isolated: its {vms_there} VM(s) self-fenced after {:.2} s",
        gone.as_secs_f64()
    );
    assert!(
        gone >= Duration::from_millis(1500),
        "self-fenced before the lease could lapse"
    );
    ip(&[
        "-n",
        "hafen-sw",
        "link",
        "set",
        &bed.switch_link(&host),
        "up",
    ]);
    assert_clean(bed.finish());
}

/// The checker is worth something only if it catches an unsafe cluster: with recovery
/// allowed without fence confirmation, a frozen host's VM is started elsewhere while the
/// frozen copy still exists.
#[test]
fn the_checker_catches_recovery_without_fence_confirmation() {
    let _serial = serial();
    let mut bed = FaultBed::up();
    bed.runtime
        .block_on(
            bed.client
                .set_property("unsafe-recovery-without-fencing", "true"),
        )
        .unwrap();
    let host = bed.victim();
    let moved = resources_on(&bed, &host);
    let from = bed.last_event_id();
    signal_host(&bed.namespace(&host), nix::sys::signal::Signal::SIGSTOP);
    bed.runtime.block_on(eventually(
        "the host's VM to be started elsewhere",
        Duration::from_secs(60),
        || async {
            let resources = bed.client.resources().await.ok()?;
            moved
                .iter()
                .all(|name| {
                    resources.iter().any(|resource| {
                        resource.name == *name
                            && resource.node.as_deref().is_some_and(|node| node != host)
                    })
                })
                .then_some(())
        },
    ));
    // Give the audit time to see a second copy, should the disk lock not stop it.
    std::thread::sleep(STRAY_PROCESS * 2);
    let events = bed.events_since(from);
    let i2 = i2_violations(&events, from, &host, &moved);
    signal_host(&bed.namespace(&host), nix::sys::signal::Signal::SIGKILL);
    let i1 = bed.audit.take().unwrap().finish();
    println!("caught:\n{}\n{}", i1.join("\n"), i2.join("\n"));
    // The event log shows the recovery without a fence confirmation. The processes may or
    // may not show a second copy: QEMU's image lock (the second line of defense) usually
    // keeps the recovered copy from starting while the frozen one holds the disk.
    assert!(
        !i2.is_empty(),
        "the checker missed a recovery without fence confirmation"
    );
}

/// Kills every process of a namespace host: it loses power.
fn power_off(namespace: &str) {
    signal_host(namespace, nix::sys::signal::Signal::SIGKILL);
}

/// Two members and a witness: losing the witness changes nothing; losing either member
/// fences it and recovers its VMs on the other.
#[test]
fn two_hosts_and_a_witness_recover_either_host_and_ignore_the_witness() {
    let _serial = serial();
    let mut cluster = DevCluster::up(3, &["--netns", "--witnesses", "1", "--demo-vms", "2"]);
    let runtime = runtime();
    let client = cluster.client().with_deadline(Duration::from_secs(30));
    let http = http_client(Duration::from_secs(2));
    let status = runtime.block_on(client.status()).unwrap();
    let witness = status
        .nodes
        .iter()
        .find(|node| node.role == "witness")
        .unwrap()
        .name
        .clone();
    let members: Vec<String> = status
        .nodes
        .iter()
        .filter(|node| node.role == "member")
        .map(|node| node.name.clone())
        .collect();
    assert_eq!(members.len(), 2);
    assert!(
        status
            .warnings
            .iter()
            .all(|warning| !warning.contains("witness")),
        "{:?}",
        status.warnings
    );
    let guests: Vec<String> = cluster.file["vms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|vm| vm["service_url"].as_str().unwrap().to_string())
        .collect();
    let all_answer = |what: &str| {
        runtime.block_on(eventually(what, Duration::from_secs(120), || async {
            for vm in client.vms().await.ok()? {
                (vm.state == "running").then_some(())?;
            }
            for url in &guests {
                guest(&http, url).await?;
            }
            Some(())
        }))
    };
    all_answer("the VMs to answer");
    let mut children = Vec::new();

    // The witness goes: nothing moves, nothing is fenced.
    let placement = |client: &Client| {
        runtime
            .block_on(client.vms())
            .unwrap()
            .into_iter()
            .map(|vm| (vm.name, vm.node))
            .collect::<BTreeMap<_, _>>()
    };
    let before = placement(&client);
    let from = runtime
        .block_on(client.events(None))
        .unwrap()
        .last()
        .map_or(0, |event| event.id);
    power_off(&format!("hafen-{witness}"));
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(4) {
        if let Ok(events) = runtime.block_on(client.events(None)) {
            let acted: Vec<&str> = events
                .iter()
                .filter(|event| event.id > from)
                .map(|event| event.message.as_str())
                .filter(|message| message.contains(" fenced") || message.contains(" starting on "))
                .collect();
            assert!(acted.is_empty(), "losing the witness caused: {acted:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        placement(&client),
        before,
        "a VM moved when the witness was lost"
    );
    children.push(cluster.restart(&witness));

    // Either member goes: it is fenced and its VMs run on the other.
    for victim in &members {
        runtime.block_on(eventually(
            "every node online",
            Duration::from_secs(60),
            || async {
                let status = client.status().await.ok()?;
                status
                    .nodes
                    .iter()
                    .all(|node| node.state == NodeState::Online)
                    .then_some(())
            },
        ));
        all_answer("the VMs to answer before the member fails");
        let survivor = members.iter().find(|member| *member != victim).unwrap();
        let killed = Instant::now();
        power_off(&format!("hafen-{victim}"));
        runtime.block_on(eventually(
            &format!("{victim}'s VMs to run on {survivor}"),
            Duration::from_secs(120),
            || async {
                let status = client.status().await.ok()?;
                status
                    .nodes
                    .iter()
                    .any(|node| node.name == *victim && node.state == NodeState::Fenced)
                    .then_some(())?;
                for vm in client.vms().await.ok()? {
                    (vm.state == "running" && vm.node.as_deref() == Some(survivor.as_str()))
                        .then_some(())?;
                }
                Some(())
            },
        ));
        println!(
            "{victim} powered off: fenced, every VM running on {survivor} after {:.2} s",
            killed.elapsed().as_secs_f64()
        );
        all_answer("the VMs to answer from the survivor");
        children.push(cluster.restart(victim));
    }
    drop(cluster);
    for mut child in children {
        let _ = child.wait();
    }
}

/// Two members without a witness run, but refuse automatic recovery (a fence race would
/// let each power the other off) and say why in `status`.
#[test]
fn two_hosts_without_a_witness_refuse_automatic_recovery_and_say_why() {
    let _serial = serial();
    let cluster = DevCluster::up(2, &["--netns", "--demo-vms", "1"]);
    let runtime = runtime();
    let client = cluster.client().with_deadline(Duration::from_secs(30));
    let status = runtime.block_on(client.status()).unwrap();
    assert!(
        status.warnings.iter().any(|warning| warning
            .contains("two nodes without a witness: automatic recovery is refused")),
        "{:?}",
        status.warnings
    );
    let output = hafen()
        .env(
            "HAFEN_CREDENTIALS",
            cluster.file["credentials_file"].as_str().unwrap(),
        )
        .env_remove("HAFEN_SERVER")
        .env_remove("HAFEN_TOKEN")
        .arg("status")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("automatic recovery is refused"), "{text}");
    let leader = runtime.block_on(leader(&client)).unwrap();
    let vm = runtime.block_on(client.vms()).unwrap().remove(0);
    let host = vm.node.clone().unwrap();
    let other = cluster
        .nodes()
        .iter()
        .map(|node| node["name"].as_str().unwrap().to_string())
        .find(|name| *name != host)
        .unwrap();
    power_off(&format!("hafen-{host}"));
    // Long enough for a suspicion, a fence and a restart had they been allowed.
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(5) {
        assert_eq!(
            qemu_processes(&format!("hafen-{other}")).len(),
            0,
            "{other} started {}'s VM without a witness (leader was {leader})",
            host
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Without a fence device, a host that declared a watchdog is confirmed fenced once its
/// lease certainly lapsed: cut off, it kills its own VMs when its lease lapses, and only
/// after that (plus the watchdog's time and a drift margin) does the leader recover them.
/// Back in contact it rejoins clean, its daemon never restarted.
#[test]
fn without_a_device_a_self_fencing_host_is_fenced_by_certain_lease_expiry() {
    let _serial = serial();
    let bed = FaultBed::up_with(&["--fencing", "self"]);
    let host = bed.victim();
    let moved = resources_on(&bed, &host);
    let namespace = bed.namespace(&host);
    let from = bed.last_event_id();
    let cut = Instant::now();
    ip(&[
        "-n",
        "hafen-sw",
        "link",
        "set",
        &bed.switch_link(&host),
        "down",
    ]);
    let self_fenced = bed.runtime.block_on(eventually(
        "the cut-off host to kill its VMs",
        Duration::from_secs(20),
        || async { qemu_processes(&namespace).is_empty().then(|| cut.elapsed()) },
    ));
    bed.node_state(&host, NodeState::Fenced, Duration::from_secs(20));
    let fenced = cut.elapsed();
    assert!(
        fenced > self_fenced,
        "confirmed fenced after {fenced:?}, before the host self-fenced ({self_fenced:?})"
    );
    bed.all_running("its VMs to run elsewhere", Duration::from_secs(120));
    let events = bed.events_since(from);
    assert!(
        events.iter().any(|event| event
            .message
            .starts_with(&format!("node {host} fenced (lease certainly lapsed"))),
        "{:?}",
        events
            .iter()
            .map(|event| &event.message)
            .collect::<Vec<_>>()
    );
    println!(
        "{host} cut off: self-fenced after {:.2} s, confirmed fenced after {:.2} s, everything running after {:.2} s",
        self_fenced.as_secs_f64(),
        fenced.as_secs_f64(),
        cut.elapsed().as_secs_f64()
    );
    ip(&[
        "-n",
        "hafen-sw",
        "link",
        "set",
        &bed.switch_link(&host),
        "up",
    ]);
    bed.node_state(&host, NodeState::Online, Duration::from_secs(30));
    let mut violations = i2_violations(&bed.events_since(from), from, &host, &moved);
    violations.extend(bed.finish());
    assert_clean(violations);
}
