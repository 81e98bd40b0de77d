//! The QEMU driver against real QEMU and the real test guest (built by `guest/build.sh`): the shared driver-api suites plus what only real guests show (data on disk across boots, live migration under client load, a destination dying mid-migration, VNC auth, the KVM probe).
//!
//! Every test passes under TCG. At most two QEMU processes run at once: each test takes
//! as many slots of [`QEMU_SLOTS`] as it runs QEMUs. If the guest image cannot be built,
//! the tests that need it fail with the build's reason.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use hafen_driver_api::hypervisor::conformance::{self, Fixture, Host};
use hafen_driver_api::hypervisor::{
    BootSpec, DiskBus, DiskCache, DiskSpec, ForwardProtocol, Hypervisor, MigrateVmError,
    NicBackend, NicSpec, OutgoingMigration, PortForward, StartVmError, StopOutcome, StopRequest,
    VmSpec, VmState, VncSpec, migrate,
};
use hafen_driver_api::storage::{self, CreateVolume, StoragePool, VolumeFormat};
use hafen_driver_qemu::{AccelChoice, DirPool, NewDriverError, QemuConfig, QemuDriver};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::{Instant, timeout};

/// The shared machine allows two QEMU processes at a time.
static QEMU_SLOTS: Semaphore = Semaphore::const_new(2);
const POOL: &str = "shared";
const MIB: u64 = 1024 * 1024;
/// Boot under TCG takes ~3-5 s; a loaded machine can triple that.
const GUEST_ANSWER_TIMEOUT: Duration = Duration::from_secs(90);

async fn qemu_slots(count: u32) -> SemaphorePermit<'static> {
    QEMU_SLOTS
        .acquire_many(count)
        .await
        .expect("semaphore open")
}

#[derive(Debug, Clone)]
struct GuestImage {
    kernel: PathBuf,
    initrd: PathBuf,
    cmdline: String,
}

/// Builds (or finds cached) the test guest once per test binary.
fn guest() -> &'static GuestImage {
    static GUEST: OnceLock<Result<GuestImage, String>> = OnceLock::new();
    let result = GUEST.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guest/build.sh");
        let output = std::process::Command::new("bash")
            .arg(&script)
            .output()
            .map_err(|error| format!("cannot run {script:?}: {error}"))?;
        if !output.status.success() {
            return Err(format!(
                "{script:?} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let value = |key: &str| {
            stdout
                .lines()
                .find_map(|line| line.strip_prefix(&format!("{key}=")))
                .map(|value| value.trim_matches('"').to_string())
                .ok_or_else(|| format!("{script:?} printed no {key}: {stdout}"))
        };
        Ok(GuestImage {
            kernel: value("HAFEN_GUEST_KERNEL")?.into(),
            initrd: value("HAFEN_GUEST_INITRD")?.into(),
            cmdline: value("HAFEN_GUEST_CMDLINE")?,
        })
    });
    match result {
        Ok(image) => image,
        Err(reason) => panic!("the test guest cannot be built: {reason}"),
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("bind a free port")
        .port()
}

/// The test guest as the given VM, reachable over a host port forwarded to its port 80.
fn guest_spec(name: &str, volume: &str, http_port: Option<u16>) -> VmSpec {
    let image = guest();
    let nics = http_port
        .map(|port| NicSpec {
            mac: "52:54:00:12:34:56".to_string(),
            backend: NicBackend::User {
                port_forwards: vec![PortForward {
                    protocol: ForwardProtocol::Tcp,
                    host_address: Ipv4Addr::LOCALHOST.into(),
                    host_port: port,
                    guest_port: 80,
                }],
            },
        })
        .into_iter()
        .collect();
    let name_hash = name.bytes().fold(0_u64, |hash, byte| {
        hash.wrapping_mul(31).wrapping_add(u64::from(byte))
    });
    VmSpec {
        name: name.to_string(),
        uuid: format!(
            "00000000-0000-4000-8000-{:012x}",
            name_hash & 0xffff_ffff_ffff
        ),
        vcpus: 1,
        memory_mib: 128,
        machine: "pc".to_string(),
        cpu_model: "qemu64".to_string(),
        disks: vec![DiskSpec {
            pool: POOL.to_string(),
            volume: volume.to_string(),
            format: VolumeFormat::Qcow2,
            bus: DiskBus::Virtio,
            // Test directories may live on tmpfs, which has no O_DIRECT.
            cache: DiskCache::Writeback,
        }],
        nics,
        boot: BootSpec::Kernel {
            kernel: image.kernel.clone(),
            initrd: Some(image.initrd.clone()),
            cmdline: format!("{} hafen.ip=10.0.2.15/24 hafen.gw=10.0.2.2", image.cmdline),
        },
        vnc: None,
    }
}

/// A GET over loopback, bounded by `limit`; the body of a 200 answer.
async fn http_get(port: u16, path: &str, limit: Duration) -> Result<String, String> {
    let exchange = async {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .map_err(|error| format!("connect: {error}"))?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: guest\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|error| format!("write: {error}"))?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .await
            .map_err(|error| format!("read: {error}"))?;
        let response = String::from_utf8_lossy(&response).into_owned();
        let (head, body) = response
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("no http response: {response:?}"))?;
        if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
            return Err(format!("status: {}", head.lines().next().unwrap_or("")));
        }
        Ok(body.to_string())
    };
    timeout(limit, exchange)
        .await
        .map_err(|_| format!("no answer within {} ms", limit.as_millis()))?
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct GuestState {
    boot_id: String,
    counter: u64,
}

async fn guest_state(port: u16, limit: Duration) -> Result<GuestState, String> {
    let body = http_get(port, "/", limit).await?;
    let json: Value = serde_json::from_str(&body).map_err(|error| format!("{error}: {body}"))?;
    Ok(GuestState {
        boot_id: json["boot_id"].as_str().ok_or("no boot_id")?.to_string(),
        counter: json["counter"].as_u64().ok_or("no counter")?,
    })
}

/// Polls the guest until it answers (its boot takes seconds) or the deadline passes.
async fn wait_for_guest(port: u16) -> Result<GuestState, String> {
    let deadline = Instant::now() + GUEST_ANSWER_TIMEOUT;
    let mut last_error = String::new();
    while Instant::now() < deadline {
        match guest_state(port, Duration::from_secs(2)).await {
            Ok(state) => return Ok(state),
            Err(error) => last_error = error,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!(
        "guest on port {port} did not answer within {} s: {last_error}",
        GUEST_ANSWER_TIMEOUT.as_secs()
    ))
}

struct QemuFixture {
    directory: tempfile::TempDir,
    pool: DirPool,
    ports: Mutex<BTreeMap<(String, Host), u16>>,
}

impl QemuFixture {
    fn new() -> QemuFixture {
        let directory = tempfile::tempdir().expect("tempdir");
        let pool_directory = directory.path().join("pool");
        std::fs::create_dir(&pool_directory).expect("pool dir");
        let pool = DirPool::new(POOL, &pool_directory, Path::new("qemu-img")).expect("dir pool");
        QemuFixture {
            directory,
            pool,
            ports: Mutex::new(BTreeMap::new()),
        }
    }

    fn run_dir(&self, host: Host) -> PathBuf {
        self.directory.path().join(match host {
            Host::A => "host-a",
            Host::B => "host-b",
        })
    }

    async fn driver(&self, host: Host) -> QemuDriver {
        let pool = DirPool::new(POOL, self.pool.directory(), Path::new("qemu-img")).expect("pool");
        QemuDriver::new(QemuConfig::new(self.run_dir(host)), vec![pool])
            .await
            .expect("qemu driver")
    }

    fn port(&self, name: &str, host: Host) -> u16 {
        *self
            .ports
            .lock()
            .expect("ports")
            .entry((name.to_string(), host))
            .or_insert_with(free_port)
    }

    async fn volume(&self, name: &str) {
        self.pool
            .create(CreateVolume {
                name,
                format: VolumeFormat::Qcow2,
                size_bytes: 16 * MIB,
            })
            .await
            .expect("create volume");
    }
}

impl Drop for QemuFixture {
    /// A failed assertion skips a test's own cleanup: kill every QEMU that belongs to this
    /// fixture (their command lines name its directory) so none outlives the test.
    fn drop(&mut self) {
        let marker = format!("{}/", self.directory.path().to_string_lossy());
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return;
        };
        for pid in entries.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        {
            let Ok(command_line) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            if String::from_utf8_lossy(&command_line).contains(&marker) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

impl Fixture for QemuFixture {
    type Hypervisor = QemuDriver;
    type Pool = DirPool;

    async fn hypervisor(&self, host: Host) -> QemuDriver {
        self.driver(host).await
    }

    fn pool(&self) -> &DirPool {
        &self.pool
    }

    fn vm_spec(&self, name: &str, volume: &str, host: Host) -> VmSpec {
        guest_spec(name, volume, Some(self.port(name, host)))
    }

    fn migration_listen(&self, _host: Host) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
    }

    fn unreachable_target(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()))
    }

    async fn guest_boot_id(&self, name: &str, host: Host) -> Result<String, String> {
        wait_for_guest(self.port(name, host))
            .await
            .map(|state| state.boot_id)
    }

    fn stop_request(&self) -> StopRequest {
        StopRequest { timeout_ms: 30_000 }
    }

    fn migration(&self) -> OutgoingMigration {
        OutgoingMigration {
            target: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            max_bandwidth_bytes_per_second: 1024 * MIB,
            downtime_limit_ms: 300,
            timeout_ms: 60_000,
        }
    }
}

/// Proves the QEMU driver passes the whole shared hypervisor suite with real guests.
#[tokio::test]
async fn hypervisor_conformance() {
    guest();
    let _slots = qemu_slots(2).await;
    conformance::run_all(&QemuFixture::new()).await;
}

/// Proves the dir pool passes the whole shared storage suite with real qemu-img.
#[tokio::test]
async fn storage_conformance() {
    let directory = tempfile::tempdir().expect("tempdir");
    let pool = DirPool::new("suite", directory.path(), Path::new("qemu-img")).expect("pool");
    storage::conformance::run_all(&pool).await;
}

/// Proves data the guest writes to its virtio disk survives a graceful stop and a new
/// start (a new boot), and that the guest's console goes to the log file. Measures the
/// start-to-service time.
#[tokio::test]
async fn data_survives_stop_and_start() {
    guest();
    let _slots = qemu_slots(1).await;
    let fixture = QemuFixture::new();
    let driver = fixture.driver(Host::A).await;
    fixture.volume("data-disk").await;
    let port = fixture.port("data", Host::A);
    let spec = guest_spec("data", "data-disk", Some(port));

    let started_at = Instant::now();
    driver.start(&spec).await.expect("start");
    let running_after = started_at.elapsed();
    let first = wait_for_guest(port).await.expect("first boot answers");
    let service_after = started_at.elapsed();
    println!(
        "figures: start_to_running_ms={} start_to_service_ms={}",
        running_after.as_millis(),
        service_after.as_millis()
    );
    let written = http_get(
        port,
        "/cgi-bin/data?value=persisted",
        Duration::from_secs(5),
    )
    .await
    .expect("write through the guest");
    assert!(written.contains("\"value persisted\""), "{written}");

    let outcome = driver
        .stop(&spec.name, StopRequest { timeout_ms: 30_000 })
        .await
        .expect("stop");
    assert_eq!(outcome, StopOutcome::PoweredOff);
    driver.start(&spec).await.expect("start again");
    let second = wait_for_guest(port).await.expect("second boot answers");
    assert_ne!(second.boot_id, first.boot_id, "a new boot has a new id");
    let records: Value = serde_json::from_str(
        &http_get(port, "/cgi-bin/data", Duration::from_secs(5))
            .await
            .expect("read records"),
    )
    .expect("json");
    let expected = serde_json::json!([
        format!("boot {}", first.boot_id),
        "value persisted",
        format!("boot {}", second.boot_id),
    ]);
    assert_eq!(
        records["records"], expected,
        "the disk kept the first boot's data"
    );
    let console = std::fs::read_to_string(driver.console_log(&spec.name)).expect("console log");
    assert!(
        console.contains(&format!("hafen-guest: ready boot_id={}", second.boot_id)),
        "the serial console is logged"
    );
    driver.kill(&spec.name).await.expect("kill");
}

/// One client request during a migration, as seen by the client.
#[derive(Debug)]
struct Sample {
    at: Duration,
    port: u16,
    result: Result<GuestState, String>,
}

/// Polls the guest every 20 ms through whichever host port answers (the source's
/// forward first, the destination's once the source stops answering) until `stop`.
async fn poll_guest(
    ports: [u16; 2],
    mut stop: tokio::sync::watch::Receiver<bool>,
    served_by_second: tokio::sync::watch::Sender<bool>,
) -> Vec<Sample> {
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut current = 0;
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Bounded: a migration that takes longer than this has failed anyway.
    while started.elapsed() < Duration::from_secs(120) && !*stop.borrow() {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => break,
        }
        let port = ports[current];
        let result = guest_state(port, Duration::from_millis(500)).await;
        if result.is_err() {
            current = 1 - current;
        } else if port == ports[1] {
            let _ = served_by_second.send(true);
        }
        samples.push(Sample {
            at: started.elapsed(),
            port,
            result,
        });
    }
    samples
}

/// Proves a live migration between two QEMUs on loopback keeps the guest (same boot id),
/// its request counter monotonic, and the client served; reports QEMU's downtime and
/// the client's longest gap.
#[tokio::test]
async fn live_migration_under_client_load() {
    guest();
    let _slots = qemu_slots(2).await;
    let fixture = QemuFixture::new();
    let source = fixture.driver(Host::A).await;
    let destination = fixture.driver(Host::B).await;
    fixture.volume("moving-disk").await;
    let source_port = fixture.port("moving", Host::A);
    let destination_port = fixture.port("moving", Host::B);
    let spec = guest_spec("moving", "moving-disk", Some(source_port));
    source.start(&spec).await.expect("start");
    let before = wait_for_guest(source_port).await.expect("guest answers");

    let (stop_sender, stop_receiver) = tokio::sync::watch::channel(false);
    let (served_sender, mut served_receiver) = tokio::sync::watch::channel(false);
    let poller = tokio::spawn(poll_guest(
        [source_port, destination_port],
        stop_receiver,
        served_sender,
    ));
    // Let the client establish its rhythm against the source first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let destination_spec = guest_spec("moving", "moving-disk", Some(destination_port));
    let migration_started = Instant::now();
    let report = migrate(
        &source,
        &destination,
        &destination_spec,
        fixture.migration_listen(Host::B),
        fixture.migration(),
    )
    .await
    .expect("migration");
    let orchestration = migration_started.elapsed();
    let after = wait_for_guest(destination_port)
        .await
        .expect("guest answers on the destination");
    // Stop once the polling client itself has been served by the destination (bounded).
    let served = tokio::time::timeout(
        Duration::from_secs(20),
        served_receiver.wait_for(|served| *served),
    )
    .await
    .is_ok();
    stop_sender.send(true).expect("stop poller");
    let samples = poller.await.expect("poller");

    assert_eq!(
        after.boot_id, before.boot_id,
        "the same guest runs on the destination"
    );
    let answers: Vec<(&Sample, &GuestState)> = samples
        .iter()
        .filter_map(|sample| sample.result.as_ref().ok().map(|state| (sample, state)))
        .collect();
    assert!(
        answers
            .iter()
            .all(|(_, state)| state.boot_id == before.boot_id)
    );
    for pair in answers.windows(2) {
        assert!(
            pair[1].1.counter > pair[0].1.counter,
            "counter went from {} to {}",
            pair[0].1.counter,
            pair[1].1.counter
        );
    }
    assert!(
        served
            && answers
                .iter()
                .any(|(sample, _)| sample.port == destination_port),
        "the client was not served by the destination within 20 s"
    );
    let longest_gap = answers
        .windows(2)
        .map(|pair| pair[1].0.at.saturating_sub(pair[0].0.at))
        .max()
        .unwrap_or_default();
    let failures = samples
        .iter()
        .filter(|sample| sample.result.is_err())
        .count();
    println!(
        "figures: migration total_time_ms={} downtime_ms={} transferred_bytes={} orchestration_ms={} client_requests={} client_failures={} client_longest_gap_ms={}",
        report.total_time_ms,
        report.downtime_ms,
        report.transferred_bytes,
        orchestration.as_millis(),
        samples.len(),
        failures,
        longest_gap.as_millis()
    );
    assert!(
        longest_gap < Duration::from_secs(10),
        "the client was without answers for {longest_gap:?}"
    );
    assert_eq!(
        source.status("moving").await.expect("status").state,
        VmState::Stopped
    );
    assert!(
        source.list().await.expect("list").is_empty(),
        "no qemu left on the source"
    );
    destination.kill("moving").await.expect("kill");
}

/// Proves every way a migration can fail after it started leaves the guest running on the
/// source (same boot id, counter going on) with a clear error: the transfer times out
/// and is cancelled; the destination QEMU is killed mid-transfer; the destination is lost
/// after the transfer, before it confirmed, and the source is resumed.
#[tokio::test]
async fn failed_migrations_keep_the_source() {
    guest();
    let _slots = qemu_slots(2).await;
    let fixture = QemuFixture::new();
    let source = fixture.driver(Host::A).await;
    let destination = fixture.driver(Host::B).await;
    fixture.volume("victim-disk").await;
    let port = fixture.port("victim", Host::A);
    let spec = guest_spec("victim", "victim-disk", Some(port));
    source.start(&spec).await.expect("start");
    let mut last = wait_for_guest(port).await.expect("guest answers");
    let destination_spec = guest_spec(
        "victim",
        "victim-disk",
        Some(fixture.port("victim", Host::B)),
    );
    let prepare = || async {
        destination
            .prepare_incoming(&destination_spec, fixture.migration_listen(Host::B))
            .await
            .expect("prepare incoming")
            .address
    };
    let check_source = async |last: &GuestState| -> GuestState {
        assert_eq!(
            source.status("victim").await.expect("status").state,
            VmState::Running
        );
        let now = wait_for_guest(port)
            .await
            .expect("guest answers on the source");
        assert_eq!(now.boot_id, last.boot_id, "the same guest");
        assert!(now.counter > last.counter, "the counter goes on");
        now
    };

    // 1. Far too slow for its timeout: cancelled.
    let target = prepare().await;
    let slow = OutgoingMigration {
        target,
        max_bandwidth_bytes_per_second: MIB,
        timeout_ms: 1_500,
        ..fixture.migration()
    };
    let error = source
        .migrate_outgoing("victim", slow)
        .await
        .expect_err("the migration must time out");
    println!("figures: timeout -> {error}");
    assert!(matches!(error, MigrateVmError::Timeout { .. }), "{error:?}");
    destination
        .kill("victim")
        .await
        .expect("discard the destination");
    last = check_source(&last).await;

    // 2. The destination dies while the state is being sent.
    let target = prepare().await;
    let migration = OutgoingMigration {
        target,
        max_bandwidth_bytes_per_second: 4 * MIB,
        ..fixture.migration()
    };
    let killer = async {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let progress = source.outgoing_progress("victim").await.expect("progress");
            if progress.as_ref().is_some_and(|progress| {
                progress.status == "active" && progress.transferred_bytes > MIB
            }) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the migration never got going: {progress:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        destination
            .kill("victim")
            .await
            .expect("kill the destination");
    };
    let (result, ()) = tokio::join!(source.migrate_outgoing("victim", migration), killer);
    let error = result.expect_err("the migration must fail");
    println!("figures: destination killed -> {error}");
    assert!(matches!(error, MigrateVmError::Failed { .. }), "{error:?}");
    assert!(error.to_string().contains("keeps running on the source"));
    assert!(destination.list().await.expect("list").is_empty());
    last = check_source(&last).await;

    // 3. Everything was sent, but the destination is gone before it confirmed: the
    // caller discards it and resumes the source.
    let target = prepare().await;
    source
        .migrate_outgoing(
            "victim",
            OutgoingMigration {
                target,
                ..fixture.migration()
            },
        )
        .await
        .expect("the transfer completes");
    assert_eq!(
        source.status("victim").await.expect("status").state,
        VmState::MigratedAway
    );
    destination
        .kill("victim")
        .await
        .expect("lose the destination");
    source
        .abort_outgoing("victim")
        .await
        .expect("resume the source");
    check_source(&last).await;
    source.kill("victim").await.expect("kill");
}

/// Proves a guest that ignores ACPI (firmware with nothing to boot) is quit after the
/// stop timeout instead of hanging the stop.
#[tokio::test]
async fn stop_quits_a_guest_that_ignores_acpi() {
    let _slots = qemu_slots(1).await;
    let fixture = QemuFixture::new();
    let driver = fixture.driver(Host::A).await;
    fixture.volume("deaf-disk").await;
    let mut spec = guest_spec("deaf", "deaf-disk", None);
    spec.boot = BootSpec::Disk;
    driver.start(&spec).await.expect("start");
    let outcome = driver
        .stop(&spec.name, StopRequest { timeout_ms: 1_000 })
        .await
        .expect("stop");
    assert_eq!(outcome, StopOutcome::Quit);
    assert_eq!(
        driver.status("deaf").await.expect("status").state,
        VmState::Stopped
    );
}

/// Proves the VNC console is a websocket on loopback that demands the password set over
/// QMP (RFB security type 2, never type 1 "none").
#[tokio::test]
async fn vnc_websocket_requires_a_password() {
    let _slots = qemu_slots(1).await;
    let fixture = QemuFixture::new();
    let driver = fixture.driver(Host::A).await;
    fixture.volume("console-disk").await;
    let mut spec = guest_spec("console", "console-disk", None);
    spec.boot = BootSpec::Disk;
    let websocket_port = free_port();
    spec.vnc = Some(VncSpec {
        websocket_port,
        password: "hafen".to_string(),
    });
    driver.start(&spec).await.expect("start");
    let security_types = timeout(Duration::from_secs(10), rfb_security_types(websocket_port))
        .await
        .expect("vnc answers in time")
        .expect("vnc handshake");
    assert!(
        security_types.contains(&2),
        "vnc auth offered: {security_types:?}"
    );
    assert!(
        !security_types.contains(&1),
        "no unauthenticated access: {security_types:?}"
    );
    driver.kill("console").await.expect("kill");
}

/// Upgrades to a websocket, exchanges RFB versions, returns the offered security types.
async fn rfb_security_types(port: u16) -> Result<Vec<u8>, String> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .await
        .map_err(|error| error.to_string())?;
    let upgrade = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
        Sec-WebSocket-Protocol: binary\r\n\r\n";
    stream
        .write_all(upgrade.as_bytes())
        .await
        .map_err(|error| error.to_string())?;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(stream.read_u8().await.map_err(|error| error.to_string())?);
    }
    let head = String::from_utf8_lossy(&head);
    if !head.starts_with("HTTP/1.1 101") {
        return Err(format!("no websocket upgrade: {head}"));
    }
    let version = read_frame(&mut stream).await?;
    if !version.starts_with(b"RFB 003.") {
        return Err(format!("not rfb: {version:?}"));
    }
    // Client frames are masked; the zero mask keeps the payload readable.
    let mut frame = vec![0x82, 0x80 | 12, 0, 0, 0, 0];
    frame.extend_from_slice(b"RFB 003.008\n");
    stream
        .write_all(&frame)
        .await
        .map_err(|error| error.to_string())?;
    let types = read_frame(&mut stream).await?;
    let count = usize::from(*types.first().ok_or("empty security types")?);
    Ok(types.get(1..=count).ok_or("short security types")?.to_vec())
}

async fn read_frame(stream: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut header = [0_u8; 2];
    stream
        .read_exact(&mut header)
        .await
        .map_err(|error| error.to_string())?;
    let length = match header[1] & 0x7f {
        126 => usize::from(stream.read_u16().await.map_err(|error| error.to_string())?),
        127 => return Err("frame too long".to_string()),
        length => usize::from(length),
    };
    let mut payload = vec![0; length];
    stream
        .read_exact(&mut payload)
        .await
        .map_err(|error| error.to_string())?;
    Ok(payload)
}

/// Proves specs that only a host can judge are refused with a clear error and leave no
/// process: a missing kernel, a volume of the wrong format.
#[tokio::test]
async fn host_specific_bad_specs_are_refused() {
    let fixture = QemuFixture::new();
    let driver = fixture.driver(Host::A).await;
    fixture.volume("bad-disk").await;
    let mut spec = guest_spec("bad", "bad-disk", None);
    spec.boot = BootSpec::Kernel {
        kernel: "/nonexistent/vmlinuz".into(),
        initrd: None,
        cmdline: String::new(),
    };
    let result = driver.start(&spec).await;
    assert!(
        matches!(&result, Err(StartVmError::MissingBootFile { path }) if path == Path::new("/nonexistent/vmlinuz")),
        "got {result:?}"
    );
    let mut raw = guest_spec("bad", "bad-disk", None);
    raw.disks[0].format = VolumeFormat::Raw;
    let result = driver.start(&raw).await;
    assert!(
        matches!(result, Err(StartVmError::FormatMismatch { .. })),
        "got {result:?}"
    );
    assert!(driver.list().await.expect("list").is_empty());
}

/// Proves a missing QEMU binary is a clear error naming the binary and the package.
#[tokio::test]
async fn missing_qemu_binary_is_a_clear_error() {
    let directory = tempfile::tempdir().expect("tempdir");
    let mut config = QemuConfig::new(directory.path().join("run"));
    config.qemu_binary = PathBuf::from("/nonexistent/qemu-system-x86_64");
    let result = QemuDriver::new(config, Vec::new()).await;
    let Err(error) = result else {
        panic!("a missing binary must be refused");
    };
    assert!(matches!(error, NewDriverError::QemuMissing { .. }));
    let message = error.to_string();
    assert!(
        message.contains("/nonexistent/qemu-system-x86_64") && message.contains("qemu-system-x86"),
        "{message}"
    );
}

/// Proves the accelerator choice follows the KVM probe, and that forcing TCG skips it.
#[tokio::test]
async fn accelerator_follows_the_kvm_probe() {
    let _slots = qemu_slots(1).await;
    let directory = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let automatic = QemuDriver::new(QemuConfig::new(directory.path().join("auto")), Vec::new())
        .await
        .expect("driver");
    let probe = automatic.kvm_probe().expect("auto runs the probe").clone();
    println!(
        "figures: kvm probe usable={} in {} ms: {}",
        probe.usable,
        started.elapsed().as_millis(),
        probe.reason
    );
    let expected = if probe.usable {
        hafen_driver_qemu::Accel::Kvm
    } else {
        hafen_driver_qemu::Accel::Tcg
    };
    assert_eq!(automatic.accel(), expected);
    let mut config = QemuConfig::new(directory.path().join("tcg"));
    config.accel = AccelChoice::Tcg;
    let forced = QemuDriver::new(config, Vec::new()).await.expect("driver");
    assert_eq!(forced.accel(), hafen_driver_qemu::Accel::Tcg);
    assert!(forced.kvm_probe().is_none());
}

/// Set only in the child process [`the_kvm_probe_dies_with_its_parent`] starts: the
/// scratch directory it probes in, until it is killed.
const PROBE_CHILD_SCRATCH: &str = "HAFEN_TEST_PROBE_CHILD_SCRATCH";

/// A daemon killed while it probes KVM leaves no probing QEMU behind (unlike a VM, the probe
/// must not outlive it).
#[test]
fn the_kvm_probe_dies_with_its_parent() {
    // The child: this same test, run again by the parent below, stands in for a daemon
    // that probes until it is killed.
    if let Some(scratch) = std::env::var_os(PROBE_CHILD_SCRATCH) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(hafen_driver_qemu::probe_kvm(
                Path::new("qemu-system-x86_64"),
                Path::new(&scratch),
                Duration::from_secs(60),
            ));
        return;
    }
    if let Err(error) = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        println!("skipped: no probe runs here, /dev/kvm cannot be opened: {error}");
        return;
    }
    let scratch = tempfile::tempdir().expect("tempdir");
    let marker = scratch.path().join("kvm-probe-firmware.log");
    let probing = || {
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                // QEMU itself, not the wrapper before its exec.
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|comm| comm.starts_with("qemu-system"))
                    && std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|line| {
                        String::from_utf8_lossy(&line).contains(marker.to_str().unwrap())
                    })
            })
            .count()
    };
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "the_kvm_probe_dies_with_its_parent",
            "--nocapture",
        ])
        .env(PROBE_CHILD_SCRATCH, scratch.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("the test binary runs");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while probing() == 0 {
        if child.try_wait().unwrap().is_some() {
            println!("skipped: the probe finished before it could be killed (kvm usable here)");
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the probe's QEMU never appeared"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while probing() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the probe's QEMU outlived its killed parent"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
