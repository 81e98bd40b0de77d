//! Pacemaker's side of `bench/failover`: corosync + pacemaker on 3 namespace hosts.
//!
//! Topology: network namespaces `hafen-pm1..3` (nodes `pm1..3`, 10.214.0.1..3/24) joined
//! by a bridge in `hafen-pmsw`. The hosts share this machine's filesystem, so each host's
//! corosync + pacemakerd run in a mount namespace of their own with private bind mounts
//! over the state paths (`/etc/corosync`, `/var/lib/corosync`, `/var/lib/pacemaker`,
//! `/var/log/pacemaker`, `/run` with `/run/netns` carried over for the fence agent) and a
//! private tmpfs on `/dev/shm` (libqb's IPC rings; its sockets are abstract, hence per
//! network namespace). Command-line tools reach a host's daemons with
//! `nsenter --mount --net` into its pacemakerd.
//!
//! Pacemaker runs at its defaults (stonith enabled) with one `stonith:fence_hafen_netns`
//! device per host and `ocf:heartbeat:Dummy` resources spread by location preferences, so
//! a third of them sit on each host and fail back after the host rejoins. Each run kills
//! every process of a non-DC host and polls `crm_mon` on the DC until the host is seen
//! offline, its fencing succeeded, and its resources are started on survivors.

use crate::{Options, RunFigures};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Node names; host `pmN` is namespace `hafen-pmN` (the fence agent's plug convention) at
/// 10.214.0.N.
const HOSTS: [&str; 3] = ["pm1", "pm2", "pm3"];
const SWITCH_NAMESPACE: &str = "hafen-pmsw";
const SUBNET_PREFIX: &str = "10.214.0";
/// Under the temporary directory; fixed so a crashed run's leftovers can be found.
const STATE_DIR_NAME: &str = "hafen-pm-bench";
const FENCE_AGENT_PATH: &str = "/usr/sbin/fence_hafen_netns";
const FENCE_AGENT: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../contrib/fence/fence_hafen_netns"
));
const PACKAGES: [&str; 4] = [
    "corosync",
    "pacemaker",
    "pacemaker-cli-utils",
    "resource-agents",
];
const PROGRAMS: [&str; 7] = [
    "corosync",
    "corosync-cfgtool",
    "pacemakerd",
    "crm_mon",
    "cibadmin",
    "crmadmin",
    "stonith_admin",
];
const DUMMY_AGENT: &str = "/usr/lib/ocf/resource.d/heartbeat/Dummy";

const FAILOVER_POLL_INTERVAL: Duration = Duration::from_millis(20);
const WAIT_POLL_INTERVAL: Duration = Duration::from_millis(250);
const FAILOVER_DEADLINE: Duration = Duration::from_secs(120);
/// Formation includes pacemaker's default `dc-deadtime` of 20 s.
const FORMATION_DEADLINE: Duration = Duration::from_secs(120);
const STABLE_DEADLINE: Duration = Duration::from_secs(180);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
const INSTALL_TIMEOUT: Duration = Duration::from_secs(1200);
const EMPTY_NAMESPACE_DEADLINE: Duration = Duration::from_secs(10);

/// Runs `options.runs` host kills against a corosync + pacemaker cluster, at defaults or
/// tuned (token 1000, token_coefficient 0).
pub fn measure(options: &Options, tuned: bool) -> Result<Vec<RunFigures>, String> {
    let label = if tuned {
        "pacemaker tuned"
    } else {
        "pacemaker"
    };
    ensure_installed(label)?;
    let mut cluster = Cluster::start(label, tuned)?;
    cluster.configure(options.resources)?;
    let mut figures = Vec::with_capacity(options.runs);
    let mut victim: Option<usize> = None;
    for run in 0..options.runs {
        if let Some(host) = victim {
            cluster.restart_host(host)?;
        }
        let status = cluster.wait_stable(options.resources)?;
        let (run_figures, killed) = cluster.fail_over(run, options.runs, &status)?;
        figures.push(run_figures);
        victim = Some(killed);
    }
    eprintln!("{label}: tearing the cluster down");
    Ok(figures)
}

/// One 3-host cluster; dropping it kills its processes and removes everything it created.
struct Cluster {
    label: &'static str,
    state_dir: PathBuf,
    /// Per host: the process that execs into the host's pacemakerd (corosync is its child).
    daemons: [Option<Child>; 3],
    /// The host whose view the tools read (the DC once one is known).
    observer: usize,
    /// Whether this cluster put the fence agent in place (and so removes it again).
    installed_fence_agent: bool,
}

impl Cluster {
    fn start(label: &'static str, tuned: bool) -> Result<Cluster, String> {
        let state_dir = std::env::temp_dir().join(STATE_DIR_NAME);
        let leftovers = remove_topology(&state_dir);
        if leftovers {
            eprintln!("{label}: removed the leftovers of an earlier run");
        }
        let mut cluster = Cluster {
            label,
            state_dir,
            daemons: [None, None, None],
            observer: 0,
            installed_fence_agent: false,
        };
        cluster.installed_fence_agent = install_fence_agent(leftovers)?;
        eprintln!(
            "{label}: creating namespaces hafen-pm1..3 and {SWITCH_NAMESPACE} ({SUBNET_PREFIX}.0/24)"
        );
        create_network()?;
        for (host, name) in HOSTS.iter().enumerate() {
            let host_dir = cluster.host_dir(host);
            let etc = host_dir.join("etc-corosync");
            fs::create_dir_all(etc.join("uidgid.d"))
                .map_err(|error| format!("cannot create {}: {error}", etc.display()))?;
            let config = corosync_config(tuned, &host_dir.join("corosync.log"));
            fs::write(etc.join("corosync.conf"), config)
                .map_err(|error| format!("cannot write the corosync.conf of {name}: {error}"))?;
        }
        eprintln!(
            "{label}: starting corosync + pacemaker on pm1..3 ({})",
            if tuned {
                "token 1000, token_coefficient 0"
            } else {
                "default timeouts"
            }
        );
        let started = Instant::now();
        for host in 0..HOSTS.len() {
            cluster.start_host(host)?;
        }
        let deadline = Instant::now() + FORMATION_DEADLINE;
        let status = cluster.wait_until("the cluster formed", deadline, |status| {
            status.dc.as_ref().ok_or("no DC elected yet")?;
            nodes_online(status)
        })?;
        cluster.follow_dc(&status);
        eprintln!(
            "{label}: cluster formed in {:.1} s, DC {}",
            started.elapsed().as_secs_f64(),
            HOSTS[cluster.observer]
        );
        Ok(cluster)
    }

    fn host_dir(&self, host: usize) -> PathBuf {
        self.state_dir.join(HOSTS[host])
    }

    fn daemon_log(&self, host: usize) -> PathBuf {
        self.host_dir(host).join("daemons.log")
    }

    /// Starts corosync and pacemakerd in host `host`'s network namespace, in a fresh mount
    /// namespace. `/run` starts empty each time, as after a reboot (else the Dummy state
    /// files of the killed host would make its resources look active twice on rejoin).
    fn start_host(&mut self, host: usize) -> Result<(), String> {
        let host_dir = self.host_dir(host);
        let log_path = self.daemon_log(host);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|error| format!("cannot open {}: {error}", log_path.display()))?;
        let log_for_stderr = log
            .try_clone()
            .map_err(|error| format!("cannot open {}: {error}", log_path.display()))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &namespace(host), "unshare", "--mount"])
            .args(["--propagation", "private", "sh", "-c"])
            .arg(host_script(&host_dir))
            .env("PCMK_logfacility", "none")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_for_stderr)
            .spawn()
            .map_err(|error| format!("cannot start the daemons of {}: {error}", HOSTS[host]))?;
        self.daemons[host] = Some(child);
        Ok(())
    }

    /// Defines the fence devices, the Dummy resources and their location preferences in
    /// one CIB change.
    fn configure(&mut self, resources: usize) -> Result<(), String> {
        let xml = configuration_xml(resources);
        self.in_host(
            self.observer,
            &["cibadmin", "--modify", "--scope", "configuration"],
        )
        .and_then(|mut command| run(command.args(["--xml-text", &xml]), COMMAND_TIMEOUT))
        .map_err(|error| format!("cannot configure the resources: {error}"))?;
        eprintln!(
            "{}: configured {resources} ocf:heartbeat:Dummy resources (monitor 10s) and 3 stonith:fence_hafen_netns devices",
            self.label
        );
        Ok(())
    }

    /// Waits until every node is online, every resource is started where it prefers to
    /// be, and the DC's controller is idle.
    fn wait_stable(&mut self, resources: usize) -> Result<Status, String> {
        let started = Instant::now();
        let deadline = started + STABLE_DEADLINE;
        loop {
            let status = self.wait_until("a stable cluster", deadline, |status| {
                stable_problem(status, resources)
            })?;
            self.follow_dc(&status);
            match self.controller_state(self.observer) {
                Ok(state) if state == "S_IDLE" => {
                    eprintln!(
                        "{}: cluster stable after {:.1} s (DC {})",
                        self.label,
                        started.elapsed().as_secs_f64(),
                        HOSTS[self.observer]
                    );
                    return Ok(status);
                }
                Ok(state) if Instant::now() > deadline => {
                    return Err(format!(
                        "the DC's controller was still in state {state} after {} s",
                        STABLE_DEADLINE.as_secs()
                    ));
                }
                Err(error) if Instant::now() > deadline => return Err(error),
                _ => thread::sleep(WAIT_POLL_INTERVAL),
            }
        }
    }

    /// Kills a non-DC host carrying resources and times detection, fencing and recovery
    /// as the DC sees them. Returns the figures and the killed host.
    fn fail_over(
        &mut self,
        run: usize,
        runs: usize,
        before: &Status,
    ) -> Result<(RunFigures, usize), String> {
        let dc = before.dc.clone().ok_or("no DC before the kill")?;
        let observer = host_index(&dc).ok_or_else(|| format!("unknown DC {dc}"))?;
        let carrying = |host: usize| {
            before
                .resources
                .iter()
                .filter(|(id, resource)| {
                    id.starts_with("dummy-") && resource.nodes == [HOSTS[host]]
                })
                .map(|(id, _)| id.clone())
                .collect::<Vec<_>>()
        };
        let candidates: Vec<usize> = (0..HOSTS.len())
            .filter(|&host| host != observer && !carrying(host).is_empty())
            .collect();
        if candidates.is_empty() {
            return Err(format!("no host other than the DC {dc} carries resources"));
        }
        let victim = candidates[run % candidates.len()];
        let victim_name = HOSTS[victim];
        let moved = carrying(victim);
        let fenced_before = before.fence_successes.get(victim_name).copied();
        let fenced_before = fenced_before.unwrap_or(0);
        eprintln!(
            "{}: run {}/{runs}: killing {victim_name} ({} resources on it), watching from the DC {dc}",
            self.label,
            run + 1,
            moved.len()
        );

        let pids = namespace_pids(&namespace(victim))?;
        let killed_at = Instant::now();
        kill_pids(&pids);
        kill_namespace(&namespace(victim))?;
        if let Some(child) = self.daemons[victim].take() {
            reap(child);
        }

        let mut detected: Option<f64> = None;
        let mut fenced: Option<f64> = None;
        let mut running: Option<f64> = None;
        let mut last_error = String::new();
        while running.is_none() || fenced.is_none() {
            self.check_daemons()?;
            if killed_at.elapsed() > FAILOVER_DEADLINE {
                let mut missing = Vec::new();
                if detected.is_none() {
                    missing.push("seeing it offline".to_string());
                }
                if fenced.is_none() {
                    missing.push("fencing it".to_string());
                }
                if running.is_none() {
                    missing.push(format!("starting {} elsewhere", moved.join(", ")));
                }
                return Err(format!(
                    "run {}: {} s after {victim_name} was killed the survivors were still not done {}{}",
                    run + 1,
                    FAILOVER_DEADLINE.as_secs(),
                    missing.join(", "),
                    if last_error.is_empty() {
                        String::new()
                    } else {
                        format!(" (last crm_mon error: {last_error})")
                    }
                ));
            }
            let status = match self.status(observer) {
                Ok(status) => status,
                Err(error) => {
                    last_error = error;
                    thread::sleep(FAILOVER_POLL_INTERVAL);
                    continue;
                }
            };
            let now = killed_at.elapsed().as_secs_f64();
            let node = status.nodes.get(victim_name).copied().unwrap_or_default();
            if detected.is_none() && (!node.online || node.unclean) {
                detected = Some(now);
            }
            let successes = status.fence_successes.get(victim_name).copied();
            if fenced.is_none() && successes.unwrap_or(0) > fenced_before {
                fenced = Some(now);
            }
            let elsewhere = moved.iter().all(|id| {
                status.resources.get(id).is_some_and(|resource| {
                    resource.role == "Started"
                        && resource.nodes.len() == 1
                        && resource.nodes[0] != victim_name
                })
            });
            if running.is_none() && elsewhere {
                running = Some(now);
            }
            thread::sleep(FAILOVER_POLL_INTERVAL);
        }
        // Each phase implies the ones before it; a poll may reveal several at once.
        let running_s = running.unwrap_or_default();
        let fenced_s = fenced.unwrap_or_default();
        let detected_s = detected.unwrap_or(fenced_s).min(fenced_s);
        eprintln!(
            "{}: run {}/{runs}: detected {detected_s:.3} s, fenced {fenced_s:.3} s, running elsewhere {running_s:.3} s",
            self.label,
            run + 1
        );
        let figures = RunFigures {
            detected_s,
            fenced_s,
            running_s,
            guest_answering_s: None,
        };
        Ok((figures, victim))
    }

    /// Brings a killed host back: its fence device only emptied the namespace.
    fn restart_host(&mut self, host: usize) -> Result<(), String> {
        eprintln!(
            "{}: restarting corosync + pacemaker on {}",
            self.label, HOSTS[host]
        );
        kill_namespace(&namespace(host))?;
        self.start_host(host)
    }

    /// Polls the observer's `crm_mon` until `condition` holds (it returns what is missing
    /// otherwise) or `deadline` passes.
    fn wait_until(
        &mut self,
        what: &str,
        deadline: Instant,
        condition: impl Fn(&Status) -> Result<(), String>,
    ) -> Result<Status, String> {
        let mut missing;
        loop {
            self.check_daemons()?;
            match self.status(self.observer) {
                Ok(status) => match condition(&status) {
                    Ok(()) => return Ok(status),
                    Err(problem) => missing = problem,
                },
                Err(error) => missing = error,
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no {what} by the deadline (seen from {}): {missing}",
                    HOSTS[self.observer]
                ));
            }
            thread::sleep(WAIT_POLL_INTERVAL);
        }
    }

    fn follow_dc(&mut self, status: &Status) {
        if let Some(host) = status.dc.as_deref().and_then(host_index) {
            self.observer = host;
        }
    }

    /// Fails when a host's daemons exited on their own (a killed host has none).
    fn check_daemons(&mut self) -> Result<(), String> {
        let exited = self
            .daemons
            .iter_mut()
            .enumerate()
            .find_map(|(host, daemon)| {
                let exit = daemon.as_mut()?.try_wait().ok()??;
                *daemon = None;
                Some((host, exit))
            });
        let Some((host, exit)) = exited else {
            return Ok(());
        };
        let log = self.daemon_log(host);
        let text = fs::read_to_string(&log).unwrap_or_default();
        let mut tail: Vec<&str> = text.lines().rev().take(5).collect();
        tail.reverse();
        Err(format!(
            "the daemons of {} exited ({exit}); {}: {}",
            HOSTS[host],
            log.display(),
            tail.join(" | ")
        ))
    }

    fn status(&self, host: usize) -> Result<Status, String> {
        let mut command = self.in_host(host, &["crm_mon", "-1", "--output-as=xml"])?;
        command.args([
            "--fence-history=3",
            "--include=none,dc,nodes,resources,fencing",
        ]);
        run(&mut command, COMMAND_TIMEOUT).map(|xml| Status::parse(&xml))
    }

    /// The state of `host`'s controller, e.g. `S_IDLE`.
    fn controller_state(&self, host: usize) -> Result<String, String> {
        let target = format!("--status={}", HOSTS[host]);
        let mut command = self.in_host(host, &["crmadmin", &target, "--output-as=xml"])?;
        let xml = run(&mut command, COMMAND_TIMEOUT)?;
        tags(&xml)
            .find(|tag| tag.name == "crmd" && !tag.closing)
            .and_then(|tag| tag.attribute("state").map(str::to_string))
            .ok_or_else(|| format!("crmadmin printed no controller state: {xml}"))
    }

    /// A command run in `host`'s network and mount namespaces, where its daemons' IPC is.
    fn in_host(&self, host: usize, args: &[&str]) -> Result<Command, String> {
        let child = self.daemons[host]
            .as_ref()
            .ok_or_else(|| format!("{} has no running daemons", HOSTS[host]))?;
        let mut command = Command::new("nsenter");
        command
            .args([
                "--target",
                &child.id().to_string(),
                "--mount",
                "--net",
                "--",
            ])
            .args(args);
        Ok(command)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for host in 0..HOSTS.len() {
            if let Err(error) = kill_namespace(&namespace(host)) {
                eprintln!("{}: cleanup: {error}", self.label);
            }
            if let Some(child) = self.daemons[host].take() {
                reap(child);
            }
        }
        let _ = remove_topology(&self.state_dir);
        if self.installed_fence_agent {
            let _ = fs::remove_file(FENCE_AGENT_PATH);
        }
    }
}

/// What `crm_mon` shows: the parts the benchmark reads.
#[derive(Debug, Default)]
struct Status {
    dc: Option<String>,
    nodes: BTreeMap<String, NodeState>,
    resources: BTreeMap<String, ResourceState>,
    /// Successful fence actions per target, over the full fence history.
    fence_successes: BTreeMap<String, usize>,
}

#[derive(Debug, Default, Clone, Copy)]
struct NodeState {
    online: bool,
    unclean: bool,
    pending: bool,
}

#[derive(Debug, Default)]
struct ResourceState {
    role: String,
    failed: bool,
    nodes: Vec<String>,
}

impl Status {
    fn parse(xml: &str) -> Status {
        let mut status = Status::default();
        let mut section = String::new();
        let mut resource: Option<String> = None;
        for tag in tags(xml) {
            let truthy = |name: &str| tag.attribute(name) == Some("true");
            match (tag.name, tag.closing) {
                ("nodes" | "resources", false) if !tag.self_closing => {
                    section = tag.name.to_string()
                }
                ("nodes" | "resources", true) => section.clear(),
                ("current_dc", false) if truthy("present") => {
                    status.dc = tag.attribute("name").map(str::to_string);
                }
                ("node", false) if section == "nodes" => {
                    let Some(name) = tag.attribute("name") else {
                        continue;
                    };
                    let state = NodeState {
                        online: truthy("online"),
                        unclean: truthy("unclean"),
                        pending: truthy("pending"),
                    };
                    status.nodes.insert(name.to_string(), state);
                }
                ("resource", false) if section == "resources" => {
                    let Some(id) = tag.attribute("id") else {
                        continue;
                    };
                    let state = ResourceState {
                        role: tag.attribute("role").unwrap_or_default().to_string(),
                        failed: truthy("failed"),
                        nodes: Vec::new(),
                    };
                    status.resources.insert(id.to_string(), state);
                    resource = (!tag.self_closing).then(|| id.to_string());
                }
                ("resource", true) => resource = None,
                ("node", false) if section == "resources" => {
                    let entry = resource
                        .as_ref()
                        .and_then(|id| status.resources.get_mut(id));
                    if let (Some(entry), Some(name)) = (entry, tag.attribute("name")) {
                        entry.nodes.push(name.to_string());
                    }
                }
                ("fence_event", false) if tag.attribute("status") == Some("success") => {
                    if let Some(target) = tag.attribute("target") {
                        *status
                            .fence_successes
                            .entry(target.to_string())
                            .or_default() += 1;
                    }
                }
                _ => {}
            }
        }
        status
    }
}

fn nodes_online(status: &Status) -> Result<(), String> {
    for name in HOSTS {
        let node = status.nodes.get(name).copied().unwrap_or_default();
        if !node.online || node.unclean || node.pending {
            return Err(format!("{name} is not online yet ({node:?})"));
        }
    }
    Ok(())
}

/// None of a stable cluster's conditions is missing: `Err` names the first one that is.
fn stable_problem(status: &Status, resources: usize) -> Result<(), String> {
    status.dc.as_ref().ok_or("no DC")?;
    nodes_online(status)?;
    let check = |id: &str, wanted_host: Option<&str>| -> Result<(), String> {
        let resource = status
            .resources
            .get(id)
            .ok_or_else(|| format!("{id} is not in the status"))?;
        let placed = match wanted_host {
            Some(host) => resource.nodes == [host],
            None => resource.nodes.len() == 1,
        };
        if resource.role != "Started" || resource.failed || !placed {
            return Err(format!(
                "{id} is {} on [{}]{}",
                resource.role,
                resource.nodes.join(", "),
                wanted_host
                    .map(|host| format!(", wanted on {host}"))
                    .unwrap_or_default()
            ));
        }
        Ok(())
    };
    for name in HOSTS {
        check(&format!("fence-{name}"), None)?;
    }
    for number in 1..=resources {
        check(&format!("dummy-{number}"), Some(preferred_host(number)))?;
    }
    Ok(())
}

/// Dummy resources are dealt round-robin over the hosts.
fn preferred_host(number: usize) -> &'static str {
    HOSTS[(number - 1) % HOSTS.len()]
}

fn host_index(name: &str) -> Option<usize> {
    HOSTS.iter().position(|host| *host == name)
}

fn namespace(host: usize) -> String {
    format!("hafen-{}", HOSTS[host])
}

fn all_namespaces() -> Vec<String> {
    let mut namespaces: Vec<String> = (0..HOSTS.len()).map(namespace).collect();
    namespaces.push(SWITCH_NAMESPACE.to_string());
    namespaces
}

fn namespace_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

fn corosync_config(tuned: bool, log: &Path) -> String {
    let timeouts = if tuned {
        "\ttoken: 1000\n\ttoken_coefficient: 0\n"
    } else {
        ""
    };
    let mut nodes = String::new();
    for (index, name) in HOSTS.iter().enumerate() {
        let id = index + 1;
        nodes.push_str(&format!(
            "\tnode {{\n\t\tname: {name}\n\t\tnodeid: {id}\n\t\tring0_addr: {SUBNET_PREFIX}.{id}\n\t}}\n"
        ));
    }
    format!(
        "totem {{\n\tversion: 2\n\tcluster_name: hafen-pm\n\ttransport: knet\n\tcrypto_cipher: none\n\tcrypto_hash: none\n{timeouts}}}\n\
         nodelist {{\n{nodes}}}\n\
         quorum {{\n\tprovider: corosync_votequorum\n}}\n\
         logging {{\n\tto_stderr: no\n\tto_syslog: no\n\tto_logfile: yes\n\tlogfile: {}\n\ttimestamp: hires\n}}\n",
        log.display()
    )
}

/// The shell run inside a host's network namespace and new private mount namespace.
fn host_script(host_dir: &Path) -> String {
    let dir = shell_quote(&host_dir.display().to_string());
    format!(
        r#"set -eu
H={dir}
rm -rf "$H/run"
mkdir -p "$H/run/netns" "$H/run/lock" "$H/lib-corosync" "$H/lib-pacemaker" "$H/log-pacemaker" "$H/log-cluster"
chown hacluster:haclient "$H/lib-pacemaker" "$H/log-pacemaker"
chmod 0770 "$H/log-pacemaker"
mount --rbind /run/netns "$H/run/netns"
mount --rbind "$H/run" /run
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount --bind "$H/etc-corosync" /etc/corosync
mount --bind "$H/lib-corosync" /var/lib/corosync
mount --bind "$H/lib-pacemaker" /var/lib/pacemaker
mount --bind "$H/log-pacemaker" /var/log/pacemaker
if [ -d /var/log/cluster ]; then mount --bind "$H/log-cluster" /var/log/cluster; fi
corosync -f &
tries=0
until corosync-cfgtool -s >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -ge 300 ]; then echo "corosync did not answer within 30 s" >&2; exit 1; fi
    sleep 0.1
done
exec pacemakerd -f
"#
    )
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn configuration_xml(resources: usize) -> String {
    let mut primitives = String::new();
    let mut constraints = String::new();
    for name in HOSTS {
        let id = format!("fence-{name}");
        primitives.push_str(&format!(
            r#"<primitive id="{id}" class="stonith" type="fence_hafen_netns"><instance_attributes id="{id}-attributes"><nvpair id="{id}-host-list" name="pcmk_host_list" value="{name}"/><nvpair id="{id}-host-check" name="pcmk_host_check" value="static-list"/></instance_attributes><operations><op id="{id}-monitor" name="monitor" interval="60s"/></operations></primitive>"#
        ));
        // A device does not run on the host it powers off.
        constraints.push_str(&format!(
            r#"<rsc_location id="{id}-avoids-{name}" rsc="{id}" node="{name}" score="-INFINITY"/>"#
        ));
    }
    for number in 1..=resources {
        let id = format!("dummy-{number}");
        let host = preferred_host(number);
        primitives.push_str(&format!(
            r#"<primitive id="{id}" class="ocf" provider="heartbeat" type="Dummy"><operations><op id="{id}-monitor" name="monitor" interval="10s"/></operations></primitive>"#
        ));
        constraints.push_str(&format!(
            r#"<rsc_location id="{id}-prefers-{host}" rsc="{id}" node="{host}" score="100"/>"#
        ));
    }
    format!(
        "<configuration><resources>{primitives}</resources><constraints>{constraints}</constraints></configuration>"
    )
}

/// Installs corosync and pacemaker when missing, then stops whatever the packages'
/// scripts started in the root namespace.
fn ensure_installed(label: &str) -> Result<(), String> {
    let missing: Vec<&str> = PROGRAMS
        .into_iter()
        .filter(|program| !program_exists(program))
        .collect();
    if missing.is_empty() && Path::new(DUMMY_AGENT).exists() {
        return Ok(());
    }
    eprintln!(
        "{label}: installing {} (missing: {})",
        PACKAGES.join(" "),
        missing.join(" ")
    );
    let install = || {
        let mut command = Command::new("apt-get");
        command
            .args(["install", "-y", "-q"])
            .args(PACKAGES)
            .env("DEBIAN_FRONTEND", "noninteractive");
        run(&mut command, INSTALL_TIMEOUT)
    };
    if install().is_err() {
        let mut update = Command::new("apt-get");
        update
            .args(["update", "-q"])
            .env("DEBIAN_FRONTEND", "noninteractive");
        run(&mut update, INSTALL_TIMEOUT)?;
        install()?;
    }
    stop_root_namespace_daemons(label)
}

fn program_exists(name: &str) -> bool {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin"])
        .any(|dir| Path::new(dir).join(name).is_file())
}

/// Package scripts may start corosync/pacemaker in the root namespace (without systemd,
/// through init scripts); the benchmark's hosts must be the only cluster members.
fn stop_root_namespace_daemons(label: &str) -> Result<(), String> {
    let root_network = fs::read_link("/proc/self/ns/net").ok();
    let daemons = |names: &[&str]| -> Vec<String> {
        let Ok(entries) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        let mut pids: Vec<String> = entries
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|pid| pid.chars().all(|c| c.is_ascii_digit()))
            .filter(|pid| {
                let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                let network = fs::read_link(format!("/proc/{pid}/ns/net")).ok();
                names.contains(&comm.trim()) && network.is_some() && network == root_network
            })
            .collect();
        pids.sort();
        pids
    };
    // pacemakerd first: it stops its subdaemons on SIGTERM.
    for names in [&["pacemakerd"][..], &["corosync"][..]] {
        let pids = daemons(names);
        if pids.is_empty() {
            continue;
        }
        eprintln!(
            "{label}: stopping {} started by the package install (pids {})",
            names[0],
            pids.join(" ")
        );
        let _ = Command::new("kill")
            .args(["-TERM", "--"])
            .args(&pids)
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !daemons(names).is_empty() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(200));
        }
        let left = daemons(names);
        if !left.is_empty() {
            let _ = Command::new("kill")
                .args(["-KILL", "--"])
                .args(&left)
                .status();
        }
    }
    let left = daemons(&["pacemakerd", "corosync"]);
    if left.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "corosync/pacemakerd still run in the root namespace (pids {})",
            left.join(" ")
        ))
    }
}

/// Puts the project's fence agent where pacemaker's fencer looks for agents. Returns
/// whether it is ours to remove: it was absent, or `crashed_run` (an earlier run that
/// did not clean up) left it.
fn install_fence_agent(crashed_run: bool) -> Result<bool, String> {
    let existing = fs::read_to_string(FENCE_AGENT_PATH).ok();
    if existing.as_deref() == Some(FENCE_AGENT) {
        return Ok(crashed_run);
    }
    let temporary = format!("{FENCE_AGENT_PATH}.hafen-bench");
    fs::write(&temporary, FENCE_AGENT)
        .and_then(|()| {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&temporary, fs::Permissions::from_mode(0o755))
        })
        .and_then(|()| fs::rename(&temporary, FENCE_AGENT_PATH))
        .map_err(|error| format!("cannot install {FENCE_AGENT_PATH}: {error}"))?;
    Ok(existing.is_none())
}

fn create_network() -> Result<(), String> {
    let ip = |args: &[&str]| {
        run(Command::new("ip").args(args), COMMAND_TIMEOUT)
            .map(|_| ())
            .map_err(|error| format!("cannot build the network: {error}"))
    };
    ip(&["netns", "add", SWITCH_NAMESPACE])?;
    ip(&[
        "-n",
        SWITCH_NAMESPACE,
        "link",
        "add",
        "br0",
        "type",
        "bridge",
    ])?;
    ip(&["-n", SWITCH_NAMESPACE, "link", "set", "lo", "up"])?;
    ip(&["-n", SWITCH_NAMESPACE, "link", "set", "br0", "up"])?;
    for (index, name) in HOSTS.iter().enumerate() {
        let host_namespace = namespace(index);
        let address = format!("{SUBNET_PREFIX}.{}/24", index + 1);
        ip(&["netns", "add", &host_namespace])?;
        ip(&[
            "-n",
            SWITCH_NAMESPACE,
            "link",
            "add",
            name,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &host_namespace,
        ])?;
        ip(&["-n", SWITCH_NAMESPACE, "link", "set", name, "master", "br0"])?;
        ip(&["-n", SWITCH_NAMESPACE, "link", "set", name, "up"])?;
        ip(&[
            "-n",
            &host_namespace,
            "addr",
            "add",
            &address,
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &host_namespace, "link", "set", "eth0", "up"])?;
        ip(&["-n", &host_namespace, "link", "set", "lo", "up"])?;
    }
    Ok(())
}

/// Kills every process of this benchmark's namespaces, deletes them and the state
/// directory: the teardown, and the cleanup of a crashed run's leftovers. Returns
/// whether there was anything to remove.
fn remove_topology(state_dir: &Path) -> bool {
    let mut found = false;
    for name in all_namespaces() {
        if !namespace_exists(&name) {
            continue;
        }
        found = true;
        if let Err(error) = kill_namespace(&name) {
            eprintln!("cleanup: {error}");
        }
        if let Err(error) = run(
            Command::new("ip").args(["netns", "delete", &name]),
            COMMAND_TIMEOUT,
        ) {
            eprintln!("cleanup: {error}");
        }
    }
    if state_dir.exists() {
        found = true;
        if let Err(error) = fs::remove_dir_all(state_dir) {
            eprintln!("cleanup: cannot remove {}: {error}", state_dir.display());
        }
    }
    found
}

/// Powers a namespace host off: SIGKILL to every process in it until none is left.
fn kill_namespace(name: &str) -> Result<(), String> {
    if !namespace_exists(name) {
        return Ok(());
    }
    let deadline = Instant::now() + EMPTY_NAMESPACE_DEADLINE;
    loop {
        let pids = namespace_pids(name)?;
        if pids.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "processes {} still run in namespace {name} after {} s",
                pids.join(" "),
                EMPTY_NAMESPACE_DEADLINE.as_secs()
            ));
        }
        kill_pids(&pids);
        thread::sleep(Duration::from_millis(50));
    }
}

fn namespace_pids(name: &str) -> Result<Vec<String>, String> {
    let listing = run(
        Command::new("ip").args(["netns", "pids", name]),
        COMMAND_TIMEOUT,
    )?;
    Ok(listing.split_whitespace().map(str::to_string).collect())
}

fn kill_pids(pids: &[String]) {
    if pids.is_empty() {
        return;
    }
    // Some may exit between the listing and the kill: failures are expected.
    let _ = Command::new("kill")
        .args(["-KILL", "--"])
        .args(pids)
        .stderr(Stdio::null())
        .status();
}

/// Collects a killed child's exit status, so it does not linger as a zombie.
fn reap(mut child: Child) {
    let deadline = Instant::now() + EMPTY_NAMESPACE_DEADLINE;
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs a command to completion within `timeout` (killed after it), returning stdout.
fn run(command: &mut Command, timeout: Duration) -> Result<String, String> {
    let mut description = format!("{command:?}").replace('"', "");
    if description.len() > 160 {
        let mut end = 160;
        while !description.is_char_boundary(end) {
            end -= 1;
        }
        description.truncate(end);
        description.push('…');
    }
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot run {description}: {error}"))?;
    let pid = child.id();
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    match receiver.recv_timeout(timeout) {
        Ok(Ok(output)) if output.status.success() => {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        }
        Ok(Ok(output)) => Err(format!(
            "{description} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )),
        Ok(Err(error)) => Err(format!("{description} failed: {error}")),
        Err(_) => {
            // Not reaped yet (the waiting thread still holds it), so the pid is still ours.
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            Err(format!(
                "{description} did not finish within {} s",
                timeout.as_secs()
            ))
        }
    }
}

/// One XML start or end tag, enough to read `crm_mon` and `crmadmin` output.
struct Tag<'a> {
    name: &'a str,
    closing: bool,
    self_closing: bool,
    attributes: Vec<(&'a str, String)>,
}

impl Tag<'_> {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, value)| value.as_str())
    }
}

/// The element tags of `xml` in document order; declarations and comments are skipped.
fn tags(xml: &str) -> impl Iterator<Item = Tag<'_>> {
    xml.split('<').skip(1).filter_map(|piece| {
        let inner = piece.split('>').next()?;
        if inner.starts_with('?') || inner.starts_with('!') {
            return None;
        }
        let closing = inner.starts_with('/');
        let inner = inner.trim_start_matches('/');
        let self_closing = inner.ends_with('/');
        let inner = inner.trim_end_matches('/');
        let name_end = inner.find(char::is_whitespace).unwrap_or(inner.len());
        let name = &inner[..name_end];
        let mut attributes = Vec::new();
        let mut rest = &inner[name_end..];
        while let Some(equals) = rest.find('=') {
            let key = rest[..equals].trim();
            let after = &rest[equals + 1..];
            let quote = after.chars().next()?;
            let value_end = after[1..].find(quote)?;
            attributes.push((key, unescape(&after[1..1 + value_end])));
            rest = &after[value_end + 2..];
        }
        Some(Tag {
            name,
            closing,
            self_closing,
            attributes,
        })
    })
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}
