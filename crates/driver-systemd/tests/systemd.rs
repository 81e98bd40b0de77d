//! The systemd driver against a stand-in `systemctl` (`tests/fake-systemctl`): the port's conformance suite, waiting for a unit to settle, failed and unknown units, timeouts, and the refusal where systemd is not running.

use std::path::{Path, PathBuf};

use hafen_driver_api::resource::{
    AgentRef, AgentResult, OperationError, OperationOptions, ResourceAgent, ResourceInstance,
    RunningState, conformance,
};
use hafen_driver_systemd::{SystemdConfig, SystemdDriver};

/// A host with a fake systemd: `systemctl` is a link to the fake (a link, so no test
/// writes an executable another thread might be forking while it is open).
struct Host {
    dir: tempfile::TempDir,
    driver: SystemdDriver,
}

impl Host {
    fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        let fake = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake-systemctl");
        std::os::unix::fs::symlink(&fake, dir.path().join("systemctl")).unwrap();
        std::fs::create_dir(dir.path().join("units")).unwrap();
        std::fs::create_dir(dir.path().join("booted")).unwrap();
        let mut config = SystemdConfig::new("node1");
        config.systemctl = dir.path().join("systemctl");
        config.booted_marker = dir.path().join("booted");
        config.poll_interval_ms = 10;
        config.kill_grace_ms = 100;
        config.output_drain_ms = 100;
        Host {
            driver: SystemdDriver::new(config),
            dir,
        }
    }

    /// Without systemd: the marker directory is missing.
    fn without_systemd() -> Host {
        let host = Host::new();
        std::fs::remove_dir(host.dir.path().join("booted")).unwrap();
        host
    }

    fn unit(&self, name: &str, state: &str, mode: &str) {
        let units = self.dir.path().join("units");
        std::fs::write(units.join(name), format!("{state}\n")).unwrap();
        std::fs::write(units.join(format!("{name}.mode")), mode).unwrap();
    }

    fn state(&self, name: &str) -> String {
        let path: PathBuf = self.dir.path().join("units").join(name);
        std::fs::read_to_string(path).unwrap().trim().to_owned()
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

fn resource(unit: &str) -> ResourceInstance {
    ResourceInstance::new("svc", format!("systemd:{unit}").parse().unwrap())
}

fn options(timeout_ms: u64) -> OperationOptions {
    OperationOptions::with_timeout_ms(timeout_ms)
}

// Proves the driver keeps the port's contract: probe, start, monitor, idempotent start and
// stop, monitor after stop; listed, with meta-data refusing unknown parameters.
#[tokio::test]
async fn the_port_conformance_suite_passes() {
    let host = Host::new();
    host.unit("fake.service", "inactive", "ok");
    conformance::check_lifecycle(&host.driver, &resource("fake"), &options(10_000))
        .await
        .unwrap();
    let agent: AgentRef = "systemd:fake".parse().unwrap();
    conformance::check_meta_data(&host.driver, &agent)
        .await
        .unwrap();
    let metadata = host.driver.meta_data(&agent).await.unwrap();
    assert_eq!(metadata.short_description, "Fake unit fake.service");
}

// Proves a start returns only once the unit is active, asking again while it activates.
#[tokio::test]
async fn a_start_waits_until_the_unit_is_active() {
    let host = Host::new();
    host.unit("slow.service", "inactive", "slow");
    let outcome = host
        .driver
        .start(&resource("slow"), &options(10_000))
        .await
        .unwrap();
    assert_eq!(
        outcome.result,
        AgentResult::Success,
        "{}",
        outcome.message()
    );
    assert_eq!(host.state("slow.service"), "active");
    let shows = host
        .calls()
        .iter()
        .filter(|call| call.starts_with("show"))
        .count();
    assert_eq!(shows, 4, "{:?}", host.calls());
}

// Proves a failed unit is an error with systemd's explanation, a monitor sees it failed,
// and a stop resets it so it reads stopped.
#[tokio::test]
async fn a_failed_unit_is_an_error_until_stopped() {
    let host = Host::new();
    host.unit("broken.service", "inactive", "fail");
    let broken = resource("broken");
    let started = host.driver.start(&broken, &options(10_000)).await.unwrap();
    assert_eq!(started.result, AgentResult::GenericError);
    assert!(
        started.message().contains("broken.service is failed"),
        "{}",
        started.message()
    );
    assert!(
        started
            .stderr
            .text
            .contains("Job for broken.service failed")
    );
    let monitored = host
        .driver
        .monitor(&broken, &options(10_000))
        .await
        .unwrap();
    assert_eq!(monitored.result, AgentResult::GenericError);
    assert_eq!(monitored.result.running_state(), RunningState::Failed);
    let stopped = host.driver.stop(&broken, &options(10_000)).await.unwrap();
    assert_eq!(
        stopped.result,
        AgentResult::Success,
        "{}",
        stopped.message()
    );
    assert_eq!(host.state("broken.service"), "inactive");
    let monitored = host
        .driver
        .monitor(&broken, &options(10_000))
        .await
        .unwrap();
    assert_eq!(monitored.result, AgentResult::NotRunning);
}

// Proves an unknown unit is refused at configuration time as not installed, naming the
// node; cannot start; reads stopped to a probe; and stopping it succeeds (nothing runs).
#[tokio::test]
async fn an_unknown_unit_is_not_installed() {
    let host = Host::new();
    let missing = resource("missing");
    let error = hafen_driver_api::resource::check_configuration(&host.driver, &missing)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("missing.service is not installed") && error.contains("node1"),
        "{error}"
    );
    let started = host.driver.start(&missing, &options(10_000)).await.unwrap();
    assert_eq!(started.result, AgentResult::NotInstalled);
    let probed = host.driver.probe(&missing, 10_000).await.unwrap();
    assert_eq!(probed.result.running_state(), RunningState::Stopped);
    let stopped = host.driver.stop(&missing, &options(10_000)).await.unwrap();
    assert_eq!(stopped.result, AgentResult::Success);
}

// Proves the operation's timeout bounds a systemctl that never returns.
#[tokio::test]
async fn a_hanging_start_times_out() {
    let host = Host::new();
    host.unit("stuck.service", "inactive", "hang");
    let begun = std::time::Instant::now();
    let outcome = host
        .driver
        .start(&resource("stuck"), &options(500))
        .await
        .unwrap();
    assert_eq!(outcome.result, AgentResult::TimedOut);
    assert!(begun.elapsed() < std::time::Duration::from_secs(5));
}

// Proves that where systemd is not running every operation and the meta-data fail naming
// the node and saying so, without running systemctl, and that no unit is listed.
#[tokio::test]
async fn without_systemd_everything_fails_naming_the_node() {
    let host = Host::without_systemd();
    host.unit("cron.service", "inactive", "ok");
    let cron = resource("cron");
    let expect_refusal = |error: OperationError| {
        let message = error.to_string();
        assert!(
            message.contains("node node1") && message.contains("systemd is not running"),
            "{message}"
        );
    };
    expect_refusal(host.driver.start(&cron, &options(1000)).await.unwrap_err());
    expect_refusal(host.driver.stop(&cron, &options(1000)).await.unwrap_err());
    expect_refusal(
        host.driver
            .monitor(&cron, &options(1000))
            .await
            .unwrap_err(),
    );
    expect_refusal(host.driver.probe(&cron, 1000).await.unwrap_err());
    expect_refusal(
        host.driver
            .promote(&cron, &options(1000))
            .await
            .unwrap_err(),
    );
    let error = hafen_driver_api::resource::check_configuration(&host.driver, &cron)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("node node1") && error.contains("systemd is not running"),
        "{error}"
    );
    assert!(host.driver.list_agents().await.unwrap().is_empty());
    assert!(host.calls().is_empty(), "{:?}", host.calls());
    assert_eq!(host.state("cron.service"), "inactive");
}

// Proves OCF references are not this driver's.
#[tokio::test]
async fn ocf_agents_are_not_handled() {
    let host = Host::new();
    let dummy = ResourceInstance::new("web", "ocf:heartbeat:Dummy".parse().unwrap());
    let error = host.driver.start(&dummy, &options(1000)).await.unwrap_err();
    assert!(matches!(error, OperationError::UnsupportedAgent { .. }));
}
