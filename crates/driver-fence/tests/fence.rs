//! The fence driver against real agents: Debian's `fence-agents` unchanged (metadata, and failures against 127.0.0.1 only), `contrib/fence/fence_hafen_netns` powering off a throwaway network namespace, and small shell agents written into a temporary directory that hang, print garbage, fail then succeed, or lie about `off`.
//!
//! Tests that need Debian's agents or root fail (never skip) when they are missing;
//! install the agents with `apt-get install -y --no-install-recommends fence-agents`.
//! No test sleeps to synchronize: every wait polls against a deadline. No test talks to
//! any address but 127.0.0.1.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hafen_driver_api::fence::{
    AgentVerdict, DeviceCheckError, FenceDevice, FenceError, FenceLevel, FenceMetadataError,
    FenceRetries, FenceTimeouts, Fencer, ParameterProblem, PowerAction, PowerState, REDACTED,
    Secret, TopologyError, conformance,
};
use hafen_driver_api::resource::Termination;
use hafen_driver_fence::{DEFAULT_AGENT_DIR, FenceConfig, FenceDriver};
use tempfile::TempDir;

const DEADLINE: Duration = Duration::from_secs(20);
const SECRET_PASSWORD: &str = "hunter2-never-print-me";

fn contrib_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib/fence")
}

/// Fails with the fix when a Debian agent is missing.
fn require_debian_agent(agent: &str) {
    let path = Path::new(DEFAULT_AGENT_DIR).join(agent);
    assert!(
        path.is_file(),
        "{agent} is missing at {}: install Debian's agents with \
         `apt-get install -y --no-install-recommends fence-agents`",
        path.display()
    );
}

fn debian_driver() -> FenceDriver {
    FenceDriver::new(FenceConfig::default())
}

/// Short limits so failures are quick; `retries` more attempts after the first.
fn quick(device: FenceDevice, retries: u32) -> FenceDevice {
    device
        .with_timeouts(FenceTimeouts {
            power_timeout_ms: 10_000,
            status_timeout_ms: 10_000,
        })
        .with_retries(FenceRetries {
            retries,
            retry_backoff_ms: 20,
            retry_backoff_limit_ms: 80,
        })
}

/// Reads the stdin protocol into shell variables; the test body then switches on
/// `$action`.
const PRELUDE: &str = r#"#!/bin/sh
action=; plug=; state_file=; pid_file=; password=
while IFS= read -r line; do
    case "$line" in
    action=*) action=${line#action=} ;;
    plug=*) plug=${line#plug=} ;;
    state_file=*) state_file=${line#state_file=} ;;
    pid_file=*) pid_file=${line#pid_file=} ;;
    password=*) password=${line#password=} ;;
    esac
done
"#;

/// A temporary agent directory of shell agents, searched before `contrib/fence`.
struct TestAgents {
    directory: TempDir,
    driver: FenceDriver,
}

impl TestAgents {
    fn new() -> TestAgents {
        let directory = TempDir::new().expect("agent dir");
        let mut config =
            FenceConfig::with_agent_dirs(vec![directory.path().to_path_buf(), contrib_dir()]);
        config.kill_grace_ms = 200;
        config.output_drain_ms = 200;
        TestAgents {
            driver: FenceDriver::new(config),
            directory,
        }
    }

    fn write_agent(&self, name: &str, body: &str) {
        let path = self.directory.path().join(name);
        std::fs::write(&path, format!("{PRELUDE}{body}\n")).expect("write agent");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    fn state_file(&self, name: &str) -> String {
        self.directory.path().join(name).display().to_string()
    }
}

/// An agent that powers off correctly: off succeeds, status reports off.
const WORKING_BODY: &str = r#"case "$action" in
off|on|monitor) exit 0 ;;
status) exit 2 ;;
list) echo "node-b,b"; exit 0 ;;
*) exit 1 ;;
esac"#;

const FAILING_BODY: &str = r#"echo "cannot reach the device" >&2; exit 1"#;

/// Polls `condition` until it holds, failing the test at the deadline.
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A process that is gone or a zombie no longer runs anything.
fn process_is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

// Proves Debian's metadata is parsed (parameters, required flags, deprecated twins,
// actions) and that configuring a device is validated against it, naming the
// unknown parameter and the missing required one.
#[tokio::test]
async fn debian_agent_metadata_validates_devices() {
    for agent in ["fence_ipmilan", "fence_redfish", "fence_virsh"] {
        require_debian_agent(agent);
    }
    let driver = debian_driver();
    let ipmilan = driver.metadata("fence_ipmilan").await.expect("metadata");
    assert_eq!(ipmilan.agent, "fence_ipmilan");
    assert!(ipmilan.short_description.contains("IPMI"), "{ipmilan:?}");
    for name in ["ip", "username", "password", "plug", "lanplus", "method"] {
        assert!(
            ipmilan.parameter(name).is_some(),
            "fence_ipmilan lacks {name}"
        );
    }
    let passwd = ipmilan.parameter("passwd").expect("passwd");
    assert!(passwd.deprecated);
    assert_eq!(
        ipmilan.parameter("password").unwrap().obsoletes.as_deref(),
        Some("passwd")
    );
    assert!(ipmilan.parameter("action").unwrap().required);
    for action in ["on", "off", "reboot", "status", "monitor", "metadata"] {
        assert!(
            ipmilan.actions.iter().any(|name| name == action),
            "{action}"
        );
    }

    let valid = FenceDevice::new("bmc-b", "fence_ipmilan")
        .with_parameter("ip", "127.0.0.1")
        .with_parameter("username", "admin")
        .with_parameter("lanplus", "1")
        .with_secret_parameter("password", &Secret::new(SECRET_PASSWORD));
    conformance::check_metadata(&driver, &valid)
        .await
        .expect("conformance: metadata");

    // fence_redfish requires a user name; a typo must be named, not ignored.
    let misspelled = FenceDevice::new("redfish-b", "fence_redfish")
        .with_parameter("ip", "127.0.0.1")
        .with_parameter("usernme", "admin")
        .with_parameter("password", SECRET_PASSWORD);
    let Err(DeviceCheckError::Parameters(error)) = driver.check_device(&misspelled).await else {
        panic!("a misspelled parameter was accepted");
    };
    assert_eq!(
        error.problems,
        [
            ParameterProblem::Unknown {
                name: "usernme".to_owned()
            },
            ParameterProblem::MissingRequired {
                name: "username".to_owned()
            },
        ]
    );
    let message = error.to_string();
    assert!(
        message.contains("redfish-b") && message.contains("\"usernme\""),
        "{message}"
    );
    assert!(!message.contains(SECRET_PASSWORD));

    // Old configurations with deprecated names (`ipaddr`, `login`) stay valid.
    let old_style = FenceDevice::new("virsh-b", "fence_virsh")
        .with_parameter("ipaddr", "127.0.0.1")
        .with_parameter("login", "root");
    driver
        .check_device(&old_style)
        .await
        .expect("deprecated names");

    let missing = driver.metadata("fence_no_such_agent").await.unwrap_err();
    assert!(
        matches!(missing, FenceMetadataError::AgentNotInstalled { .. }),
        "{missing:?}"
    );
    let escaping = driver.metadata("../bin/sh").await.unwrap_err();
    assert!(matches!(
        escaping,
        FenceMetadataError::InvalidAgentName { .. }
    ));
}

/// A loopback port nothing listens on: bound, then released.
fn refusing_loopback_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    listener.local_addr().expect("address").port()
}

fn redfish_device(port: u16) -> FenceDevice {
    FenceDevice::new("redfish-b", "fence_redfish")
        .with_parameter("ip", "127.0.0.1")
        .with_parameter("ipport", &port.to_string())
        .with_parameter("ssl_insecure", "1")
        .with_parameter("username", "admin")
        .with_parameter("verbose", "1")
        .with_secret_parameter("password", &Secret::new(SECRET_PASSWORD))
        .with_host("node-b", "1")
}

// Proves the failure path with a real agent: fence_redfish against a refusing loopback
// port fails every attempt (retries with back-off, all runs recorded), status fails
// too, and a device that accepts but never answers is killed at the status timeout.
// Only 127.0.0.1 is contacted.
#[tokio::test]
async fn debian_agent_fails_against_refusing_loopback() {
    require_debian_agent("fence_redfish");
    let driver = debian_driver();
    let device = quick(redfish_device(refusing_loopback_port()), 2);
    let started = Instant::now();
    let error = driver
        .power(&device, "node-b", PowerAction::Off)
        .await
        .expect_err("nothing listens, the fence must fail");
    let FenceError::Failed {
        attempts,
        ref runs,
        ref last,
        ..
    } = error
    else {
        panic!("unexpected error {error:?}");
    };
    assert_eq!(attempts, 3);
    assert_eq!(runs.len(), 3, "{runs:?}");
    assert!(runs.iter().all(|run| run.verdict == AgentVerdict::Failed));
    assert!(
        runs.iter()
            .all(|run| run.termination == Termination::Exited { code: 1 })
    );
    assert!(last.to_lowercase().contains("refused"), "{last}");
    // Two back-off pauses: 20 ms then 40 ms.
    assert!(started.elapsed() >= Duration::from_millis(60));
    let status = driver.status(&device, "node-b").await.unwrap_err();
    assert!(
        matches!(status, FenceError::Failed { attempts: 1, .. }),
        "{status:?}"
    );
    conformance::check_failure_keeps_secrets(&driver, &device, "node-b")
        .await
        .expect("conformance: failure keeps secrets");

    // A device that accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let port = listener.local_addr().expect("address").port();
    let held = tokio::spawn(async move {
        let mut connections = Vec::new();
        while let Ok((connection, _)) = listener.accept().await {
            connections.push(connection);
        }
    });
    let mut silent = quick(redfish_device(port), 0);
    silent.timeouts.status_timeout_ms = 1_500;
    let started = Instant::now();
    let error = driver.status(&silent, "node-b").await.unwrap_err();
    let FenceError::Failed { runs, .. } = &error else {
        panic!("unexpected error {error:?}");
    };
    assert_eq!(runs[0].verdict, AgentVerdict::TimedOut, "{error}");
    assert_eq!(
        runs[0].termination,
        Termination::TimedOut { timeout_ms: 1_500 }
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    held.abort();
}

/// A throwaway network namespace `hafen-fencetest<random>` with a `sleep` in it,
/// deleted (its processes killed) when dropped.
struct Namespace {
    plug: String,
    sleeper: std::process::Child,
}

impl Namespace {
    fn create() -> Namespace {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .subsec_nanos()
            ^ std::process::id();
        let plug = format!("fencetest{:08x}", seed);
        println!("namespace hafen-{plug} (random suffix {seed:08x})");
        let name = format!("hafen-{plug}");
        let added = std::process::Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("ip netns add (needs iproute2 and root)");
        assert!(added.success(), "ip netns add {name} failed (needs root)");
        let sleeper = std::process::Command::new("ip")
            .args(["netns", "exec", &name, "sleep", "600"])
            .spawn()
            .expect("sleep in the namespace");
        Namespace { plug, sleeper }
    }

    fn name(&self) -> String {
        format!("hafen-{}", self.plug)
    }

    fn pids(&self) -> String {
        let output = std::process::Command::new("ip")
            .args(["netns", "pids", &self.name()])
            .output()
            .expect("ip netns pids");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = self.sleeper.kill();
        let _ = self.sleeper.wait();
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name()])
            .status();
    }
}

// Proves fence_hafen_netns through the driver: a namespace host with a process in it
// reports on, `off` is confirmed by status, the process is dead (SIGKILL), status says
// off, and a second off is harmless. Also list, monitor and the agent's metadata.
#[tokio::test]
async fn netns_agent_powers_a_namespace_host_off() {
    let agents = TestAgents::new();
    let mut namespace = Namespace::create();
    let pid = namespace.sleeper.id();
    wait_until("the sleep runs in the namespace", || {
        namespace.pids().contains(&pid.to_string())
    });
    let device = quick(FenceDevice::new("netns", "fence_hafen_netns"), 1);
    conformance::check_metadata(&agents.driver, &device)
        .await
        .expect("conformance: metadata");
    let plugs = agents.driver.list(&device).await.expect("list");
    assert!(plugs.contains(&namespace.plug), "{plugs:?}");

    conformance::check_power_off(&agents.driver, &device, &namespace.plug)
        .await
        .expect("conformance: power off");

    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = namespace.sleeper.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the sleep survived the fence");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.signal(), Some(9), "{status:?}");
    assert_eq!(namespace.pids(), "");
    assert_eq!(
        agents
            .driver
            .status(&device, &namespace.plug)
            .await
            .unwrap(),
        PowerState::Off
    );

    // An unknown plug must fail, never report "off" for a host that may still run.
    let error = agents
        .driver
        .power(&device, "no-such-fencetest-host", PowerAction::Off)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("does not exist"), "{error}");
    // Nothing outside hafen-* is reachable through the plug.
    let escape = agents.driver.status(&device, "../x").await.unwrap_err();
    assert!(escape.to_string().contains("plain host name"), "{escape}");
}

// Proves a hanging agent is killed with its whole process group at the timeout: the
// background child it started is gone too, and the attempt is reported as timed out.
#[tokio::test]
async fn hanging_agent_is_killed_with_its_group() {
    let agents = TestAgents::new();
    agents.write_agent(
        "fence_hang",
        r#"sleep 600 &
echo $! > "$pid_file"
sleep 600"#,
    );
    let pid_file = agents.state_file("child.pid");
    let mut device =
        quick(FenceDevice::new("hang", "fence_hang"), 0).with_parameter("pid_file", &pid_file);
    device.timeouts.power_timeout_ms = 300;
    let started = Instant::now();
    let error = agents
        .driver
        .power(&device, "node-b", PowerAction::Off)
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "{error}");
    let FenceError::Failed { runs, .. } = &error else {
        panic!("unexpected error {error:?}");
    };
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].verdict, AgentVerdict::TimedOut);
    assert!(error.to_string().contains("killed after 300 ms"), "{error}");
    let child: u32 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    wait_until("the agent's background child is gone", || {
        process_is_gone(child)
    });
}

// Proves garbage is survived: megabytes of random bytes are captured bounded, an
// `off` whose status prints garbage and exits with an unknown code is not a fence,
// and garbage metadata is refused as malformed.
#[tokio::test]
async fn garbage_output_is_bounded_and_never_confirms() {
    let agents = TestAgents::new();
    agents.write_agent(
        "fence_garbage",
        r#"case "$action" in
off) head -c 2000000 /dev/urandom; exit 0 ;;
status) head -c 300000 /dev/urandom >&2; exit 7 ;;
*) head -c 5000 /dev/urandom; exit 0 ;;
esac"#,
    );
    let device = quick(FenceDevice::new("garbage", "fence_garbage"), 0);
    let error = agents
        .driver
        .power(&device, "node-b", PowerAction::Off)
        .await
        .unwrap_err();
    let FenceError::Failed { runs, last, .. } = &error else {
        panic!("unexpected error {error:?}");
    };
    assert!(last.contains("could not confirm"), "{last}");
    let limit_bytes = agents.driver.config().output_limit_bytes;
    let off = &runs[0];
    assert_eq!(off.verdict, AgentVerdict::Success);
    assert_eq!(off.stdout.omitted_bytes, 2_000_000 - limit_bytes as u64);
    // Invalid UTF-8 becomes U+FFFD (3 bytes): the text is bounded by 3 times the limit.
    assert!(off.stdout.text.len() <= 3 * limit_bytes + 100);
    assert_eq!(runs[1].verdict, AgentVerdict::Failed);
    assert_eq!(runs[1].termination, Termination::Exited { code: 7 });
    assert!(
        error.to_string().len() < 2_000,
        "the message is not bounded"
    );

    let malformed = agents.driver.metadata("fence_garbage").await.unwrap_err();
    assert!(
        matches!(malformed, FenceMetadataError::Malformed { .. }),
        "{malformed:?}"
    );
}

// Proves retries with back-off: an agent whose `off` fails twice, then works, fences
// the host on the third attempt, each failed attempt recorded in order.
#[tokio::test]
async fn failing_then_succeeding_agent_is_retried() {
    let agents = TestAgents::new();
    agents.write_agent(
        "fence_flaky",
        r#"count=$(cat "$state_file" 2>/dev/null || echo 0)
case "$action" in
off)
    count=$((count + 1)); echo "$count" > "$state_file"
    if [ "$count" -lt 3 ]; then echo "device busy (attempt $count)" >&2; exit 1; fi
    exit 0 ;;
status) if [ "$count" -ge 3 ]; then exit 2; else exit 0; fi ;;
*) exit 0 ;;
esac"#,
    );
    let device = quick(FenceDevice::new("flaky", "fence_flaky"), 3)
        .with_parameter("state_file", &agents.state_file("count"));
    let started = Instant::now();
    let outcome = agents
        .driver
        .power(&device, "node-b", PowerAction::Off)
        .await
        .expect("the third attempt fences");
    assert!(outcome.confirmed_off());
    let steps: Vec<(u32, AgentVerdict)> = outcome
        .runs
        .iter()
        .map(|run| (run.attempt, run.verdict))
        .collect();
    assert_eq!(
        steps,
        [
            (1, AgentVerdict::Failed),
            (2, AgentVerdict::Failed),
            (3, AgentVerdict::Success),
            (3, AgentVerdict::PoweredOff),
        ]
    );
    assert!(
        outcome.runs[0]
            .message()
            .contains("device busy (attempt 1)")
    );
    // Back-off before attempts 2 and 3: 20 ms + 40 ms.
    assert!(started.elapsed() >= Duration::from_millis(60));
}

// Proves the status check after off: an agent that claims success for `off` while
// `status` still says on never confirms a fence, on any attempt.
#[tokio::test]
async fn off_claimed_but_status_on_is_a_failure() {
    let agents = TestAgents::new();
    agents.write_agent(
        "fence_liar",
        r#"case "$action" in
off|on) echo "Success: Powered OFF"; exit 0 ;;
status) echo "Status: ON"; exit 0 ;;
*) exit 0 ;;
esac"#,
    );
    let device = quick(FenceDevice::new("liar", "fence_liar"), 1);
    let error = agents
        .driver
        .power(&device, "node-b", PowerAction::Off)
        .await
        .unwrap_err();
    let FenceError::Failed {
        attempts,
        runs,
        last,
        ..
    } = &error
    else {
        panic!("unexpected error {error:?}");
    };
    assert_eq!(*attempts, 2);
    assert_eq!(runs.len(), 4, "off and status per attempt");
    assert!(last.contains("status says the host is on"), "{last}");
    assert_eq!(
        agents.driver.status(&device, "node-b").await.unwrap(),
        PowerState::On
    );
    // A reboot rests on the same confirmation.
    let reboot = agents
        .driver
        .power(&device, "node-b", PowerAction::Reboot)
        .await;
    assert!(reboot.is_err(), "{reboot:?}");
}

// Proves the topology: level 1's failing device makes level 1 fail, level 2's device
// confirms; a level with one failing device among working ones fails as a whole;
// unknown devices and empty topologies are errors; reboot powers every device of the
// level off before any on.
#[tokio::test]
async fn topology_levels_are_tried_in_order() {
    let agents = TestAgents::new();
    agents.write_agent("fence_failing", FAILING_BODY);
    agents.write_agent(
        "fence_working",
        &format!("echo \"$action\" >> \"$state_file\"\n{WORKING_BODY}"),
    );
    let journal = agents.state_file("journal");
    let failing = quick(FenceDevice::new("pdu-a", "fence_failing"), 0)
        .with_secret_parameter("password", &Secret::new(SECRET_PASSWORD));
    let working =
        quick(FenceDevice::new("pdu-b", "fence_working"), 0).with_parameter("state_file", &journal);
    conformance::check_topology(&agents.driver, &failing, &working, "node-b")
        .await
        .expect("conformance: topology");

    let second_working = FenceDevice {
        name: "pdu-c".to_owned(),
        ..working.clone()
    };
    let devices = BTreeMap::from([
        (failing.name.clone(), failing.clone()),
        (working.name.clone(), working.clone()),
        (second_working.name.clone(), second_working.clone()),
    ]);
    let mixed = [FenceLevel::new(&["pdu-b", "pdu-a"])];
    let error = agents
        .driver
        .fence(&devices, &mixed, "node-b", PowerAction::Off)
        .await
        .unwrap_err();
    let TopologyError::AllLevelsFailed { failures, .. } = &error else {
        panic!("unexpected error {error:?}");
    };
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].device, "pdu-a");
    assert!(!error.to_string().contains(SECRET_PASSWORD));

    let unknown = [
        FenceLevel::new(&["pdu-missing"]),
        FenceLevel::new(&["pdu-b"]),
    ];
    let outcome = agents
        .driver
        .fence(&devices, &unknown, "node-b", PowerAction::Off)
        .await
        .expect("level 2 confirms");
    assert_eq!(outcome.level, 1);
    assert!(outcome.failed_levels[0].reason.contains("no such device"));

    std::fs::write(&journal, "").expect("reset journal");
    let both = [FenceLevel::new(&["pdu-b", "pdu-c"])];
    let outcome = agents
        .driver
        .fence(&devices, &both, "node-b", PowerAction::Reboot)
        .await
        .expect("reboot");
    assert_eq!(outcome.outcomes.len(), 2);
    assert!(
        outcome
            .outcomes
            .iter()
            .all(|device| device.action == PowerAction::Reboot
                && device.power_on_failure.is_none())
    );
    let journal = std::fs::read_to_string(&journal).expect("journal");
    let order: Vec<&str> = journal.lines().collect();
    assert_eq!(order, ["off", "status", "off", "status", "on", "on"]);
}

/// Collects everything the tracing subscriber writes.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }
}

// Proves secrets never leave the driver: an agent that echoes its whole stdin (the
// password included) to stdout and stderr and fails; the password is absent from the
// error, its Debug, the captured output, the device's Debug and every log line, while
// the logs do name the device and the agent.
#[tokio::test]
async fn secrets_never_appear_in_errors_output_or_logs() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let agents = TestAgents::new();
    agents.write_agent(
        "fence_echo",
        r#"echo "action=$action password=$password"
echo "login failed for password $password" >&2
exit 1"#,
    );
    let device = quick(FenceDevice::new("echo", "fence_echo"), 1)
        .with_secret_parameter("password", &Secret::new(SECRET_PASSWORD))
        .with_parameter("snmp_priv_passwd", "second-secret-value");
    let error = agents
        .driver
        .power(&device, "node-b", PowerAction::Off)
        .await
        .unwrap_err();
    let FenceError::Failed { runs, .. } = &error else {
        panic!("unexpected error {error:?}");
    };
    assert!(runs[0].stderr.text.contains(REDACTED), "{:?}", runs[0]);
    let status = agents.driver.status(&device, "node-b").await.unwrap_err();
    let texts = [
        error.to_string(),
        format!("{error:?}"),
        format!("{status:?}"),
        format!("{device:?}"),
        format!("{:?}", device.redacted_parameters()),
        logs.text(),
    ];
    for text in &texts {
        assert!(!text.contains(SECRET_PASSWORD), "secret leaked: {text}");
        assert!(
            !text.contains("second-secret-value"),
            "secret leaked: {text}"
        );
    }
    let log = logs.text();
    assert!(
        log.contains("fence_echo") && log.contains("fence attempt failed"),
        "{log}"
    );
}

// Proves the catalog: only executable `fence_*` files are agents, directories are
// searched in order, a missing directory holds none, and unknown or path-like agent
// names are refused before anything runs.
#[tokio::test]
async fn agents_are_listed_and_unknown_ones_refused() {
    let agents = TestAgents::new();
    agents.write_agent("fence_alpha", WORKING_BODY);
    agents.write_agent("not_a_fence_agent", WORKING_BODY);
    let disabled = agents.directory.path().join("fence_disabled");
    std::fs::write(&disabled, "#!/bin/sh\nexit 0\n").expect("write");
    let mut config = agents.driver.config().clone();
    config
        .agent_dirs
        .push(PathBuf::from("/nonexistent/hafen-fence-agents"));
    let driver = FenceDriver::new(config);
    let listed = driver.list_agents().await.expect("list agents");
    assert_eq!(listed, ["fence_alpha", "fence_hafen_netns"]);

    let missing = quick(FenceDevice::new("x", "fence_missing"), 3);
    let error = driver
        .power(&missing, "node-b", PowerAction::Off)
        .await
        .unwrap_err();
    assert!(
        matches!(error, FenceError::AgentNotInstalled { .. }),
        "{error}"
    );
    let escaping = FenceDevice::new("x", "fence_../../bin/true");
    let error = driver.monitor(&escaping).await.unwrap_err();
    assert!(
        matches!(error, FenceError::InvalidAgentName { .. }),
        "{error}"
    );
    let injected = FenceDevice::new("x", "fence_alpha").with_parameter("ip", "a\naction=on");
    let error = driver.monitor(&injected).await.unwrap_err();
    assert!(
        matches!(error, FenceError::InvalidParameterValue { ref name, .. } if name == "ip"),
        "{error}"
    );
    let working = FenceDevice::new("alpha", "fence_alpha");
    driver.monitor(&working).await.expect("monitor");
    assert_eq!(driver.list(&working).await.expect("list"), ["node-b"]);
}
