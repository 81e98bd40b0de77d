//! The harness of the real-process tests: a dev cluster started with the `hafen` binary, and waits with deadlines.

use hafen_client::Client;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub static SERIAL: Mutex<()> = Mutex::new(());

/// The machine-wide lock every user of dev clusters takes (tests, benchmarks, scripts:
/// `flock /var/tmp/hafen-dev-cluster.lock ...`): namespace clusters share one switch.
pub const MACHINE_LOCK: &str = "/var/tmp/hafen-dev-cluster.lock";

/// Held while a test runs: one test at a time in this process, and none while another
/// process on this machine runs a dev cluster.
pub struct Serial {
    _process: MutexGuard<'static, ()>,
    _machine: std::fs::File,
}

pub fn serial() -> Serial {
    let process = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let machine = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(MACHINE_LOCK)
        .expect("the dev-cluster lock file opens");
    machine.lock().expect("the dev-cluster lock is taken");
    Serial {
        _process: process,
        _machine: machine,
    }
}

pub fn hafen() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hafen"))
}

/// A running dev cluster, taken down on drop.
pub struct DevCluster {
    pub dir: tempfile::TempDir,
    pub file: Value,
}

/// The test guest's kernel, initrd and command line, built once by `guest/build.sh`.
pub fn guest_env() -> &'static [(String, String)] {
    static GUEST: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
    GUEST.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guest/build.sh");
        let output = Command::new("bash")
            .arg(&script)
            .output()
            .expect("guest/build.sh runs");
        assert!(
            output.status.success(),
            "the test guest could not be built (guest/build.sh): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(key, value)| (key.to_string(), value.trim_matches('"').to_string()))
            .collect()
    })
}

impl DevCluster {
    pub fn up(nodes: usize, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut command = hafen();
        if extra.contains(&"--demo-vms") {
            command.envs(
                guest_env()
                    .iter()
                    .map(|(key, value)| (key.as_str(), value.as_str())),
            );
        }
        let output = command
            .args(["dev-cluster", "up", "--nodes", &nodes.to_string(), "--dir"])
            .arg(dir.path())
            .args(extra)
            .output()
            .unwrap();
        let cluster = dir.path().join("cluster.json");
        let file: Value = std::fs::read_to_string(&cluster)
            .map(|text| serde_json::from_str(&text).unwrap())
            .unwrap_or(Value::Null);
        let this = DevCluster { dir, file };
        assert!(
            output.status.success(),
            "dev-cluster up failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        this
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn nodes(&self) -> Vec<Value> {
        self.file["nodes"].as_array().unwrap().clone()
    }

    pub fn node(&self, name: &str) -> Value {
        self.nodes()
            .into_iter()
            .find(|node| node["name"] == name)
            .unwrap()
    }

    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.file["ca_file"].as_str().unwrap()).unwrap()
    }

    pub fn token(&self) -> String {
        self.file["admin_token"].as_str().unwrap().to_string()
    }

    pub fn client(&self) -> Client {
        let servers = self
            .nodes()
            .iter()
            .map(|node| node["api_url"].as_str().unwrap().to_string())
            .collect();
        Client::new(servers, &self.ca_pem(), Some(self.token())).unwrap()
    }

    pub fn node_client(&self, name: &str) -> Client {
        let url = self.node(name)["api_url"].as_str().unwrap().to_string();
        Client::new(vec![url], &self.ca_pem(), Some(self.token())).unwrap()
    }

    pub fn pid(&self, name: &str) -> i32 {
        i32::try_from(self.node(name)["pid"].as_u64().unwrap()).unwrap()
    }

    pub fn kill(&self, name: &str) {
        let pid = nix::unistd::Pid::from_raw(self.pid(name));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
        wait_for_exit(self.pid(name));
    }

    pub fn stop(&self, name: &str) {
        let pid = nix::unistd::Pid::from_raw(self.pid(name));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        wait_for_exit(self.pid(name));
    }

    /// Starts the node's daemon again (in its namespace, if any) and records the new pid.
    pub fn restart(&mut self, name: &str) -> std::process::Child {
        use std::os::unix::process::CommandExt;
        let node = self.node(name);
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(node["log"].as_str().unwrap())
            .unwrap();
        let mut command = match node["netns"].as_str() {
            Some(namespace) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", namespace, env!("CARGO_BIN_EXE_hafen")]);
                command
            }
            None => hafen(),
        };
        let child = command
            .args(["daemon", "--config", node["config"].as_str().unwrap()])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap();
        for entry in self.file["nodes"].as_array_mut().unwrap() {
            if entry["name"] == name {
                entry["pid"] = Value::from(child.id());
            }
        }
        std::fs::write(self.path().join("cluster.json"), self.file.to_string()).unwrap();
        child
    }

    /// After a failure prints the end of every daemon's log; copies the logs to
    /// `HAFEN_TEST_LOGS` when set, failed or not (the cluster's directory goes with the test).
    fn report_logs(&self) {
        let keep = std::env::var_os("HAFEN_TEST_LOGS").map(PathBuf::from);
        for node in self.nodes() {
            let (Some(name), Some(log)) = (node["name"].as_str(), node["log"].as_str()) else {
                continue;
            };
            let text = std::fs::read_to_string(log).unwrap_or_default();
            // hafen's own lines: openraft repeats one error per read while a peer is down,
            // which would push everything else out of the tail.
            let lines: Vec<&str> = text
                .lines()
                .filter(|line| !line.contains("openraft::"))
                .collect();
            let tail = lines[lines.len().saturating_sub(60)..].join("\n");
            if std::thread::panicking() {
                eprintln!("---- the last lines of {name}'s log ----\n{tail}");
            }
            if let Some(keep) = &keep {
                let _ = std::fs::create_dir_all(keep);
                let _ = std::fs::copy(log, keep.join(format!("{name}.log")));
            }
        }
    }

    pub fn data_file(&self, name: &str) -> PathBuf {
        PathBuf::from(self.node(name)["data_dir"].as_str().unwrap()).join("state.redb")
    }
}

impl Drop for DevCluster {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("HAFEN_TEST_LOGS").is_some() {
            self.report_logs();
        }
        let _ = hafen()
            .args(["dev-cluster", "down", "--dir"])
            .arg(self.dir.path())
            .output();
    }
}

/// Waits (bounded) for a process to disappear, reaping it if it is our child.
pub fn wait_for_exit(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Path::new(&format!("/proc/{pid}")).exists() {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat
            .split(") ")
            .nth(1)
            .is_some_and(|rest| rest.starts_with('Z'))
        {
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            return;
        }
        assert!(Instant::now() < deadline, "process {pid} did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Polls `check` until it returns Some, or fails after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn leader(client: &Client) -> Option<String> {
    client.status().await.ok()?.leader
}

/// Every process inside a network namespace.
pub fn namespace_processes(namespace: &str) -> Vec<i32> {
    let output = Command::new("ip")
        .args(["netns", "pids", namespace])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .filter_map(|pid| pid.parse::<i32>().ok())
        .collect()
}

/// "Powers off" a namespace host as `fence_hafen_netns` does: kills every process in it.
pub fn power_off(namespace: &str) {
    for pid in namespace_processes(namespace) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Process ids of QEMU processes inside a network namespace.
pub fn qemu_processes(namespace: &str) -> Vec<i32> {
    namespace_processes(namespace)
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim().starts_with("qemu-system"))
        })
        .collect()
}

/// The guest's answer to `GET /`: its boot id and request counter.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct GuestReply {
    pub boot_id: String,
    pub counter: u64,
}

pub async fn guest(http: &reqwest::Client, url: &str) -> Option<GuestReply> {
    http.get(url).send().await.ok()?.json().await.ok()
}

/// A plain HTTP client for guests (TLS needs the process-wide ring provider installed first).
pub fn http_client(timeout: Duration) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().timeout(timeout).build().unwrap()
}
