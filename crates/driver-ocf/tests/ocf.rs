//! The OCF driver against real agents: Debian's `resource-agents` and `pacemaker-resource-agents` unchanged, plus small shell agents written into a temporary `OCF_ROOT` that hang, flood, or exit with each code.
//!
//! Tests that need Debian's agents fail (never skip) when they are missing; `.ci/run`
//! installs them. No test sleeps to synchronize: every wait polls against a deadline.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hafen_driver_api::resource::{
    Action, AgentRef, AgentResult, ConfigurationError, Notification, NotifyOperation, NotifyPeer,
    NotifyTiming, OperationOptions, ParameterError, Reaction, ResourceAgent, ResourceInstance,
    RunningState, Termination, check_configuration, conformance,
};
use hafen_driver_ocf::{DEFAULT_OCF_ROOT, OcfConfig, OcfDriver};
use tempfile::TempDir;

const TIMEOUT_MS: u64 = 20_000;

fn options() -> OperationOptions {
    OperationOptions::with_timeout_ms(TIMEOUT_MS)
}

fn agent(text: &str) -> AgentRef {
    text.parse().expect("valid agent reference")
}

/// A driver on Debian's installed agents with a private state directory.
struct Debian {
    driver: OcfDriver,
    state: TempDir,
}

impl Debian {
    /// Fails with the fix when an agent this test needs is not installed.
    fn require(agents: &[&str]) -> Debian {
        for text in agents {
            let AgentRef::Ocf {
                provider,
                agent_type,
            } = agent(text)
            else {
                panic!("{text} is not an OCF agent");
            };
            let path = Path::new(DEFAULT_OCF_ROOT)
                .join("resource.d")
                .join(provider)
                .join(agent_type);
            assert!(
                path.is_file(),
                "{text} is missing at {}: install Debian's agents with \
                 `apt-get install -y --no-install-recommends resource-agents pacemaker-resource-agents` \
                 (.ci/run does this)",
                path.display()
            );
        }
        let state = TempDir::new().expect("state dir");
        let driver = OcfDriver::new(OcfConfig::new(state.path().to_path_buf(), "node-a"));
        Debian { driver, state }
    }
}

/// A temporary `OCF_ROOT` holding shell agents under provider `test`.
struct TestRoot {
    root: TempDir,
    state: TempDir,
}

impl TestRoot {
    fn new() -> TestRoot {
        TestRoot {
            root: TempDir::new().expect("ocf root"),
            state: TempDir::new().expect("state dir"),
        }
    }

    fn write_agent(&self, name: &str, body: &str) -> AgentRef {
        let directory = self.root.path().join("resource.d").join("test");
        std::fs::create_dir_all(&directory).expect("provider dir");
        let path = directory.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write agent");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("chmod agent");
        agent(&format!("ocf:test:{name}"))
    }

    fn config(&self) -> OcfConfig {
        let mut config = OcfConfig::new(self.state.path().to_path_buf(), "node-a");
        config.ocf_root = self.root.path().to_path_buf();
        config
    }

    fn driver(&self) -> OcfDriver {
        OcfDriver::new(self.config())
    }

    fn state_file(&self, name: &str) -> PathBuf {
        self.state.path().join(name)
    }
}

/// Polls until `done` holds or the deadline passes; returns whether it held.
fn wait_until(deadline: Duration, mut done: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + deadline;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Processes of a process group that are still alive (zombies waiting for a reaper do
/// not count: they run nothing).
fn live_members(group: i32) -> Vec<i32> {
    let mut members = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // Fields after the command name, which is in parentheses and may hold spaces.
        let Some(after_name) = stat.rfind(')').map(|index| &stat[index + 1..]) else {
            continue;
        };
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let (state, process_group) = (fields[0], fields[2].parse::<i32>().unwrap_or(-1));
        if process_group == group && state != "Z" && state != "X" {
            members.push(pid);
        }
    }
    members
}

fn read_pid(path: &Path) -> i32 {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    text.trim().parse().expect("pid")
}

// --- Debian's agents, unchanged ---------------------------------------------------------

// Proves Dummy runs as under Pacemaker: its state file lands in the caller's state
// directory (HA_RSCTMP), not /run, and passes the shared lifecycle suite.
#[tokio::test]
async fn dummy_start_monitor_stop_keeps_state_in_state_dir() {
    let debian = Debian::require(&["ocf:heartbeat:Dummy"]);
    let resource = ResourceInstance::new("web", agent("ocf:heartbeat:Dummy"));
    let state_file = debian.state.path().join("Dummy-web.state");

    let started = debian
        .driver
        .start(&resource, &options())
        .await
        .expect("start");
    assert_eq!(
        started.result,
        AgentResult::Success,
        "{}",
        started.message()
    );
    assert!(
        state_file.exists(),
        "Dummy's state file is not under the state dir"
    );
    let monitored = debian
        .driver
        .monitor(&resource, &options().with_interval_ms(10_000))
        .await
        .unwrap();
    assert_eq!(
        monitored.result,
        AgentResult::Success,
        "{}",
        monitored.message()
    );
    let stopped = debian
        .driver
        .stop(&resource, &options())
        .await
        .expect("stop");
    assert_eq!(
        stopped.result,
        AgentResult::Success,
        "{}",
        stopped.message()
    );
    assert!(!state_file.exists());
    let probed = debian
        .driver
        .probe(&resource, TIMEOUT_MS)
        .await
        .expect("probe");
    assert_eq!(probed.result, AgentResult::NotRunning);
    assert_eq!(probed.result.running_state(), RunningState::Stopped);

    let other = ResourceInstance::new("conformance", agent("ocf:heartbeat:Dummy"));
    conformance::check_lifecycle(&debian.driver, &other, &options())
        .await
        .expect("lifecycle suite");
    conformance::check_meta_data(&debian.driver, &agent("ocf:heartbeat:Dummy"))
        .await
        .expect("meta-data suite");
}

// Proves the promotable cycle with Pacemaker's own Stateful agent, monitor answering 8
// while promoted (its crm_attribute calls fail harmlessly without a Pacemaker cluster).
#[tokio::test]
async fn stateful_start_promote_monitor_demote_stop() {
    let debian = Debian::require(&["ocf:pacemaker:Stateful"]);
    let resource = ResourceInstance::new("db", agent("ocf:pacemaker:Stateful"));
    conformance::check_promotable(&debian.driver, &resource, &options())
        .await
        .expect("promotable suite");

    // Across a failover the new host promotes from the unpromoted state.
    debian.driver.start(&resource, &options()).await.unwrap();
    let promoted = debian.driver.promote(&resource, &options()).await.unwrap();
    assert_eq!(
        promoted.result,
        AgentResult::Success,
        "{}",
        promoted.message()
    );
    let state =
        std::fs::read_to_string(debian.state.path().join("Stateful-db.state")).expect("state file");
    assert_eq!(state.trim(), "Promoted");
    let monitored = debian
        .driver
        .monitor(&resource, &options().with_interval_ms(10_000))
        .await
        .unwrap();
    assert_eq!(monitored.result, AgentResult::RunningPromoted);
    assert_eq!(
        monitored.reaction_against(AgentResult::RunningPromoted),
        None
    );
    // A promoted answer where an unpromoted one was expected is a soft failure.
    assert_eq!(
        monitored.reaction_against(AgentResult::Success),
        Some(Reaction::Soft)
    );
    let notification = Notification::new(NotifyTiming::Pre, NotifyOperation::Demote);
    let notified = debian
        .driver
        .notify(&resource, &notification, &options())
        .await
        .unwrap();
    assert_eq!(
        notified.result,
        AgentResult::Success,
        "{}",
        notified.message()
    );
    debian.driver.demote(&resource, &options()).await.unwrap();
    let stopped = debian.driver.stop(&resource, &options()).await.unwrap();
    assert_eq!(
        stopped.result,
        AgentResult::Success,
        "{}",
        stopped.message()
    );
}

// Proves meta-data XML is parsed: IPaddr2's parameters with their flags and types, and
// its advised timeouts and monitor interval.
#[tokio::test]
async fn ipaddr2_meta_data_is_parsed() {
    let debian = Debian::require(&["ocf:heartbeat:IPaddr2"]);
    let metadata = debian
        .driver
        .meta_data(&agent("ocf:heartbeat:IPaddr2"))
        .await
        .expect("meta-data");
    let ip = metadata.parameter("ip").expect("ip parameter");
    assert!(ip.required && ip.unique);
    assert!(!ip.short_description.is_empty());
    for name in ["cidr_netmask", "nic", "broadcast", "iflabel", "arp_count"] {
        assert!(
            metadata.parameter(name).is_some(),
            "parameter {name} is missing"
        );
    }
    assert_eq!(
        metadata.parameter("arp_count").unwrap().default.as_deref(),
        Some("5")
    );
    assert_eq!(metadata.default_timeout_ms(Action::Start), Some(20_000));
    assert_eq!(metadata.default_timeout_ms(Action::Stop), Some(20_000));
    assert_eq!(
        metadata
            .default_monitor(None)
            .and_then(|monitor| monitor.interval_ms),
        Some(10_000)
    );
    assert!(metadata.supports(Action::ValidateAll));

    let listed = debian.driver.list_agents().await.expect("list agents");
    for name in [
        "ocf:heartbeat:Dummy",
        "ocf:heartbeat:IPaddr2",
        "ocf:pacemaker:Stateful",
    ] {
        assert!(listed.contains(&agent(name)), "{name} is not listed");
    }
}

// Proves configuration-time validation: each bad parameter is refused with its name, and
// a good configuration passes.
#[tokio::test]
async fn parameters_violating_meta_data_are_refused_by_name() {
    let debian = Debian::require(&["ocf:heartbeat:IPaddr2"]);
    let ipaddr2 = agent("ocf:heartbeat:IPaddr2");
    // (parameters, the parameter the error must name, a word the message must contain)
    type Case = (
        &'static [(&'static str, &'static str)],
        &'static str,
        &'static str,
    );
    let cases: [Case; 4] = [
        (
            &[("ip", "192.0.2.10"), ("arp_count", "many")],
            "arp_count",
            "integer",
        ),
        (
            &[("ip", "192.0.2.10"), ("lvs_support", "maybe")],
            "lvs_support",
            "boolean",
        ),
        (
            &[("ip", "192.0.2.10"), ("colour", "blue")],
            "colour",
            "unknown",
        ),
        (&[("cidr_netmask", "24")], "ip", "missing"),
    ];
    for (parameters, bad_name, word) in cases {
        let mut resource = ResourceInstance::new("vip", ipaddr2.clone());
        resource.parameters = parameters
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let error = check_configuration(&debian.driver, &resource)
            .await
            .expect_err(bad_name);
        let ConfigurationError::Parameters { errors, .. } = &error else {
            panic!("expected a parameter error, got {error}");
        };
        assert_eq!(errors.0.len(), 1, "{error}");
        assert_eq!(errors.0[0].parameter(), bad_name);
        let message = error.to_string();
        assert!(
            message.contains(bad_name) && message.contains(word),
            "{message}"
        );
    }
    let good = ResourceInstance::new("vip", ipaddr2)
        .with_parameter("ip", "192.0.2.10")
        .with_parameter("cidr_netmask", "24")
        .with_parameter("lvs_support", "true");
    let metadata = check_configuration(&debian.driver, &good)
        .await
        .expect("valid configuration");
    assert!(matches!(
        metadata
            .validate_parameters(&BTreeMap::new())
            .unwrap_err()
            .0[..],
        [ParameterError::MissingRequired { .. }]
    ));
}

// --- test agents ------------------------------------------------------------------------

// Proves every return code is classified as documented, with Pacemaker's reaction when
// the expected result was success, and a message naming the code.
#[tokio::test]
async fn every_exit_code_is_classified() {
    let root = TestRoot::new();
    let exit_with = root.write_agent(
        "exit_with",
        r#"echo "exiting $OCF_RESKEY_code" >&2; exit "$OCF_RESKEY_code""#,
    );
    let driver = root.driver();
    let table: [(&str, AgentResult, Option<Reaction>); 15] = [
        ("0", AgentResult::Success, None),
        ("1", AgentResult::GenericError, Some(Reaction::Soft)),
        ("2", AgentResult::InvalidArguments, Some(Reaction::Hard)),
        ("3", AgentResult::Unimplemented, Some(Reaction::Hard)),
        (
            "4",
            AgentResult::InsufficientPrivilege,
            Some(Reaction::Hard),
        ),
        ("5", AgentResult::NotInstalled, Some(Reaction::Hard)),
        ("6", AgentResult::NotConfigured, Some(Reaction::Fatal)),
        ("7", AgentResult::NotRunning, Some(Reaction::Soft)),
        ("8", AgentResult::RunningPromoted, Some(Reaction::Soft)),
        ("9", AgentResult::FailedPromoted, Some(Reaction::Soft)),
        ("10", AgentResult::Error, Some(Reaction::Soft)),
        ("99", AgentResult::Error, Some(Reaction::Soft)),
        ("190", AgentResult::Degraded, None),
        ("191", AgentResult::DegradedPromoted, Some(Reaction::Soft)),
        ("255", AgentResult::Error, Some(Reaction::Soft)),
    ];
    for (code, result, reaction) in table {
        let resource = ResourceInstance::new("r", exit_with.clone()).with_parameter("code", code);
        let outcome = driver
            .monitor(&resource, &options())
            .await
            .expect("monitor runs");
        assert_eq!(outcome.result, result, "exit {code}");
        assert_eq!(
            outcome.termination,
            Termination::Exited {
                code: code.parse().unwrap()
            }
        );
        assert_eq!(
            outcome.reaction_against(AgentResult::Success),
            reaction,
            "exit {code}"
        );
        let message = outcome.message();
        assert!(message.contains(&format!("exit code {code}")), "{message}");
        assert!(message.contains(&format!("exiting {code}")), "{message}");
    }
    // What a probe concludes from the state codes.
    let state_of = |code: i32| hafen_driver_ocf::classify_exit_code(code).running_state();
    assert_eq!(state_of(7), RunningState::Stopped);
    assert_eq!(state_of(0), RunningState::Started);
    assert_eq!(state_of(8), RunningState::Promoted);
    assert_eq!(state_of(9), RunningState::Failed);
    assert_eq!(state_of(5), RunningState::Stopped);

    let killed = root.write_agent("killed", "kill -KILL $$");
    let outcome = driver
        .start(&ResourceInstance::new("r", killed), &options())
        .await
        .unwrap();
    assert_eq!(outcome.termination, Termination::Signaled { signal: 9 });
    assert_eq!(outcome.result, AgentResult::Error);
    assert_eq!(
        outcome.reaction_against(AgentResult::Success),
        Some(Reaction::Soft)
    );
}

// Proves a hanging agent is killed at its timeout with its whole process group, even
// members that ignore SIGTERM (SIGKILL follows the grace period).
#[tokio::test]
async fn hanging_agent_is_killed_with_its_process_group() {
    let root = TestRoot::new();
    let hang = root.write_agent(
        "hang",
        r#"trap '' TERM
echo $$ > "$HA_RSCTMP/group.pid"
sleep 1000 &
echo $! > "$HA_RSCTMP/child.pid"
wait"#,
    );
    let mut config = root.config();
    config.kill_grace_ms = 300;
    let driver = OcfDriver::new(config);
    let started = Instant::now();
    let outcome = driver
        .start(
            &ResourceInstance::new("r", hang),
            &OperationOptions::with_timeout_ms(1_500),
        )
        .await
        .expect("start runs");
    let elapsed = started.elapsed();
    assert_eq!(outcome.result, AgentResult::TimedOut);
    assert_eq!(
        outcome.termination,
        Termination::TimedOut { timeout_ms: 1_500 }
    );
    assert_eq!(
        outcome.reaction_against(AgentResult::Success),
        Some(Reaction::Soft)
    );
    assert!(
        outcome.message().contains("timed out"),
        "{}",
        outcome.message()
    );
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");

    let group = read_pid(&root.state_file("group.pid"));
    let child = read_pid(&root.state_file("child.pid"));
    let gone = wait_until(Duration::from_secs(5), || live_members(group).is_empty());
    assert!(
        gone,
        "members of group {group} survived (child {child}): {:?}",
        live_members(group)
    );
}

// Proves an agent that obeys SIGTERM ends within the grace period, not after it.
#[tokio::test]
async fn hanging_agent_obeying_sigterm_ends_before_the_grace_period() {
    let root = TestRoot::new();
    let hang = root.write_agent(
        "hang_soft",
        r#"echo $$ > "$HA_RSCTMP/group.pid"; sleep 1000 & wait"#,
    );
    let mut config = root.config();
    config.kill_grace_ms = 30_000;
    let driver = OcfDriver::new(config);
    let started = Instant::now();
    let outcome = driver
        .stop(
            &ResourceInstance::new("r", hang),
            &OperationOptions::with_timeout_ms(1_000),
        )
        .await
        .unwrap();
    assert_eq!(outcome.result, AgentResult::TimedOut);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "waited for the grace period"
    );
    let group = read_pid(&root.state_file("group.pid"));
    assert!(wait_until(Duration::from_secs(5), || live_members(group).is_empty()));
}

// Proves an abandoned operation (its future dropped, as when the agent task is cancelled)
// kills the agent's group instead of leaving it running.
#[tokio::test]
async fn abandoned_operation_kills_the_agent() {
    let root = TestRoot::new();
    let hang = root.write_agent(
        "hang_abandoned",
        r#"echo $$ > "$HA_RSCTMP/group.pid.tmp"; mv "$HA_RSCTMP/group.pid.tmp" "$HA_RSCTMP/group.pid"; sleep 1000"#,
    );
    let driver = root.driver();
    let resource = ResourceInstance::new("r", hang);
    let pid_file = root.state_file("group.pid");
    let start_options = options();
    // Boxed so that `drop` below really drops the operation's future.
    let mut operation = Box::pin(driver.start(&resource, &start_options));
    // Run the operation until the agent has announced itself, then drop it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !pid_file.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "agent never started"
        );
        tokio::select! {
            _ = &mut operation => panic!("hanging agent finished"),
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    drop(operation);
    let group = read_pid(&pid_file);
    assert!(
        wait_until(Duration::from_secs(5), || live_members(group).is_empty()),
        "abandoned agent survived: {:?}",
        live_members(group)
    );
}

// Proves a daemon left behind by a successful start survives (it is the service), and
// that the operation returns although the daemon holds the output pipes.
#[tokio::test]
async fn daemon_left_by_start_survives_and_does_not_block() {
    let root = TestRoot::new();
    let daemon = root.write_agent(
        "daemon",
        r#"sleep 1000 & echo $! > "$HA_RSCTMP/daemon.pid"; exit 0"#,
    );
    let mut config = root.config();
    config.output_drain_ms = 200;
    let driver = OcfDriver::new(config);
    let outcome = driver
        .start(&ResourceInstance::new("r", daemon), &options())
        .await
        .unwrap();
    assert_eq!(outcome.result, AgentResult::Success);
    let pid = read_pid(&root.state_file("daemon.pid"));
    let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| !stat.contains(") Z"));
    // Clean up before asserting so a failure leaves nothing behind.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    assert!(alive, "the daemon started by start was killed");
}

// Proves garbage and huge output stay bounded, keep both ends, and still yield the exit
// reason for the event message.
#[tokio::test]
async fn garbage_and_huge_output_is_bounded() {
    let root = TestRoot::new();
    let flood = root.write_agent(
        "flood",
        r#"head -c 20000000 /dev/urandom
printf 'first line\n' >&2
head -c 5000000 /dev/zero >&2
printf '\nocf-exit-reason:disk on fire\n' >&2
exit 1"#,
    );
    let mut config = root.config();
    config.output_limit_bytes = 16 * 1024;
    let driver = OcfDriver::new(config);
    let outcome = driver
        .start(&ResourceInstance::new("r", flood), &options())
        .await
        .unwrap();
    assert_eq!(outcome.result, AgentResult::GenericError);
    assert!(
        outcome.stdout.text.len() < 64 * 1024,
        "stdout kept {} bytes",
        outcome.stdout.text.len()
    );
    assert!(outcome.stdout.omitted_bytes >= 20_000_000 - 16 * 1024);
    assert!(outcome.stderr.text.starts_with("first line"));
    assert_eq!(outcome.exit_reason.as_deref(), Some("disk on fire"));
    assert_eq!(
        outcome.message(),
        "start: generic error (exit code 1): disk on fire"
    );

    let garbage = root.write_agent("garbage", r#"head -c 4096 /dev/urandom; exit 0"#);
    let error = driver
        .meta_data(&garbage)
        .await
        .expect_err("garbage meta-data");
    assert!(error.to_string().contains("ocf:test:garbage"), "{error}");
}

// Proves the environment follows the OCF standard and Pacemaker's CRM_meta values, and
// that nothing of the daemon's own environment reaches the agent.
#[tokio::test]
async fn environment_follows_the_standard() {
    let root = TestRoot::new();
    let dump = root.write_agent("dump", r#"env > "$HA_RSCTMP/env.$1"; exit 0"#);
    let driver = root.driver();
    let resource = ResourceInstance::new("web:1", dump).with_parameter("port", "8080");
    let monitor_options = OperationOptions::with_timeout_ms(15_000)
        .with_interval_ms(30_000)
        .with_meta_attribute("clone-max", "3");
    driver.monitor(&resource, &monitor_options).await.unwrap();
    let mut notification = Notification::new(NotifyTiming::Post, NotifyOperation::Start);
    notification.start.push(NotifyPeer {
        instance: "web:0".to_owned(),
        node: Some("node-b".to_owned()),
    });
    driver
        .notify(&resource, &notification, &options())
        .await
        .unwrap();
    driver
        .migrate_to(&resource, "node-c", &options())
        .await
        .unwrap();

    let read = |action: &str| -> BTreeMap<String, String> {
        let text =
            std::fs::read_to_string(root.state_file(&format!("env.{action}"))).expect("env dump");
        text.lines()
            .filter_map(|line| line.split_once('='))
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect()
    };
    let monitor = read("monitor");
    let state_dir = root.state.path().to_string_lossy().into_owned();
    let expected = [
        ("OCF_ROOT", root.root.path().to_string_lossy().into_owned()),
        ("OCF_RA_VERSION_MAJOR", "1".to_owned()),
        ("OCF_RA_VERSION_MINOR", "1".to_owned()),
        ("OCF_RESOURCE_INSTANCE", "web:1".to_owned()),
        ("OCF_RESOURCE_TYPE", "dump".to_owned()),
        ("OCF_RESOURCE_PROVIDER", "test".to_owned()),
        ("OCF_RESKEY_port", "8080".to_owned()),
        ("OCF_RESKEY_CRM_meta_timeout", "15000".to_owned()),
        ("OCF_RESKEY_CRM_meta_interval", "30000".to_owned()),
        ("OCF_RESKEY_CRM_meta_name", "monitor".to_owned()),
        ("OCF_RESKEY_CRM_meta_on_node", "node-a".to_owned()),
        ("OCF_RESKEY_CRM_meta_clone_max", "3".to_owned()),
        ("HA_RSCTMP", state_dir.clone()),
        ("HA_VARRUN", state_dir),
    ];
    for (name, value) in expected {
        assert_eq!(monitor.get(name), Some(&value), "{name}");
    }
    assert!(
        !monitor.keys().any(|name| name.starts_with("CARGO")),
        "the test runner's environment leaked into the agent"
    );
    let notify = read("notify");
    assert_eq!(notify["OCF_RESKEY_CRM_meta_notify_type"], "post");
    assert_eq!(notify["OCF_RESKEY_CRM_meta_notify_operation"], "start");
    assert_eq!(notify["OCF_RESKEY_CRM_meta_notify_start_resource"], "web:0");
    assert_eq!(notify["OCF_RESKEY_CRM_meta_notify_start_uname"], "node-b");
    let migrate = read("migrate_to");
    assert_eq!(migrate["OCF_RESKEY_CRM_meta_migrate_source"], "node-a");
    assert_eq!(migrate["OCF_RESKEY_CRM_meta_migrate_target"], "node-c");
}

// Proves agent discovery and the "not installed" answer for a missing agent: a hard
// error for an operation, a stopped resource for a probe.
#[tokio::test]
async fn listing_and_missing_agents() {
    let root = TestRoot::new();
    root.write_agent("alpha", "exit 0");
    root.write_agent("beta", "exit 0");
    let directory = root.root.path().join("resource.d").join("test");
    std::fs::write(directory.join("not_executable"), "#!/bin/sh\n").unwrap();
    std::fs::write(directory.join(".hidden"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        directory.join(".hidden"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let driver = root.driver();
    let listed = driver.list_agents().await.expect("list");
    assert_eq!(
        listed,
        vec![agent("ocf:test:alpha"), agent("ocf:test:beta")]
    );

    let missing = ResourceInstance::new("r", agent("ocf:test:absent"));
    let outcome = driver.probe(&missing, TIMEOUT_MS).await.expect("probe");
    assert_eq!(outcome.result, AgentResult::NotInstalled);
    assert_eq!(outcome.termination, Termination::NotExecuted);
    assert_eq!(outcome.result.running_state(), RunningState::Stopped);
    assert_eq!(
        outcome.reaction_against(AgentResult::Success),
        Some(Reaction::Hard)
    );
    assert!(
        outcome.message().contains("ocf:test:absent"),
        "{}",
        outcome.message()
    );

    let systemd = ResourceInstance::new("r", agent("systemd:nginx.service"));
    assert!(driver.start(&systemd, &options()).await.is_err());
}

// Proves reload uses OCF 1.1's reload-agent and falls back to OCF 1.0's reload.
#[tokio::test]
async fn reload_falls_back_to_legacy_reload() {
    let root = TestRoot::new();
    let legacy = root.write_agent(
        "legacy",
        r#"case "$1" in reload) exit 0;; *) exit 3;; esac"#,
    );
    let modern = root.write_agent(
        "modern",
        r#"case "$1" in reload-agent) exit 0;; *) exit 3;; esac"#,
    );
    let driver = root.driver();
    for reloadable in [legacy, modern] {
        let outcome = driver
            .reload(&ResourceInstance::new("r", reloadable.clone()), &options())
            .await
            .unwrap();
        assert_eq!(outcome.result, AgentResult::Success, "{reloadable}");
        assert_eq!(outcome.action, Action::Reload);
    }
}
