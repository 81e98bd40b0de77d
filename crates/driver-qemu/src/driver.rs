//! [`QemuDriver`]: the [`Hypervisor`] port implemented with QEMU processes (each in its own process group, outliving the agent) driven over QMP, including adoption after an agent restart and the two halves of live migration.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hafen_driver_api::hypervisor::{
    AdoptVmError, AwaitIncomingError, BootSpec, DriverError, FinishMigrationError, Hypervisor,
    IncomingMigration, KillVmError, ListVmsError, MigrateVmError, MigrationReport, NicBackend,
    OutgoingMigration, PrepareIncomingError, StartVmError, StatusVmError, StopOutcome, StopRequest,
    StopVmError, VmSpec, VmState, VmStatus, validate_name,
};
use serde_json::{Value, json};
use tokio::process::Command;

use crate::command_line::{LaunchPlan, VmFiles, command_line, tap_name, tcp_address};
use crate::dir_pool::DirPool;
use crate::probe::{Accel, AccelChoice, KvmProbe, find_binary, probe_kvm_cached};
use crate::process::{
    is_alive, kill_all_with, kill_now, read_pidfile, wait_gone, wait_images_released,
};
use crate::qmp::{QmpClient, QmpError};

/// Unix socket paths (QMP, VNC) must fit `sun_path`, 108 bytes with the terminating NUL.
const MAX_SOCKET_PATH_BYTES: usize = 107;

/// Settings of one host's driver. [`QemuConfig::new`] gives the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuConfig {
    /// Per-VM state lives in `run_dir/<vm>/`; an agent restart must use the same path.
    pub run_dir: PathBuf,
    /// Looked up in `PATH` unless it is a path.
    pub qemu_binary: PathBuf,
    pub accel: AccelChoice,
    /// Bound on every QMP command.
    pub qmp_timeout_ms: u64,
    /// Bound on QEMU's start-up until it answers on its QMP socket.
    pub launch_timeout_ms: u64,
    /// Bound on a process vanishing after `quit` or SIGKILL.
    pub exit_timeout_ms: u64,
    /// Bound on the KVM probe (a firmware boot under KVM takes well under a second).
    pub kvm_probe_timeout_ms: u64,
}

impl QemuConfig {
    pub fn new(run_dir: impl Into<PathBuf>) -> QemuConfig {
        QemuConfig {
            run_dir: run_dir.into(),
            qemu_binary: PathBuf::from("qemu-system-x86_64"),
            accel: AccelChoice::Auto,
            qmp_timeout_ms: 5_000,
            launch_timeout_ms: 30_000,
            exit_timeout_ms: 5_000,
            kvm_probe_timeout_ms: 3_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NewDriverError {
    #[error("{binary:?} is not installed (apt-get install qemu-system-x86)")]
    QemuMissing { binary: PathBuf },
    #[error("run directory {path:?} is unusable: {reason}")]
    RunDirectory { path: PathBuf, reason: String },
    #[error("storage pool {name} is configured twice")]
    DuplicatePool { name: String },
    #[error("kvm was required but is unusable: {reason}")]
    KvmUnusable { reason: String },
}

/// Where an outgoing migration stands, for progress displays and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationProgress {
    /// QEMU's migration status (`setup`, `active`, `completed`, `failed`, ...).
    pub status: String,
    pub transferred_bytes: u64,
    pub remaining_bytes: u64,
}

/// One host's QEMU VMs.
#[derive(Debug)]
pub struct QemuDriver {
    config: QemuConfig,
    qemu_binary: PathBuf,
    accel: Accel,
    kvm_probe: Option<KvmProbe>,
    pools: BTreeMap<String, DirPool>,
    vms: Mutex<BTreeMap<String, Arc<ManagedVm>>>,
    /// Names being started, so two starts of one name cannot race.
    starting: Mutex<BTreeSet<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Normal,
    Incoming,
    MigratedAway,
    /// A migrated-away source being ended: nothing may resume it any more.
    Ending,
}

#[derive(Debug)]
struct ManagedVm {
    name: String,
    files: VmFiles,
    pid: u32,
    qmp: QmpClient,
    /// Serializes stop and migration steps; status and kill never wait for it.
    operation: tokio::sync::Mutex<()>,
    role: Mutex<Role>,
}

impl ManagedVm {
    fn role(&self) -> Role {
        *lock(&self.role)
    }

    fn set_role(&self, role: Role) {
        *lock(&self.role) = role;
    }

    fn alive(&self) -> bool {
        is_alive(self.pid, &self.files.qmp_socket())
    }
}

/// Why a launch failed: a start error, or (for a migration destination) the listen
/// address could not be bound.
#[derive(Debug)]
enum LaunchError {
    Start(StartVmError),
    Listen { address: SocketAddr, reason: String },
}

impl From<StartVmError> for LaunchError {
    fn from(error: StartVmError) -> Self {
        LaunchError::Start(error)
    }
}

impl From<DriverError> for LaunchError {
    fn from(error: DriverError) -> Self {
        LaunchError::Start(error.into())
    }
}

/// Releases a name reserved in [`QemuDriver::starting`].
struct StartReservation<'a> {
    driver: &'a QemuDriver,
    name: String,
}

impl Drop for StartReservation<'_> {
    fn drop(&mut self) {
        lock(&self.driver.starting).remove(&self.name);
    }
}

impl QemuDriver {
    /// Resolves the QEMU binary (a clear error when it is missing), picks the
    /// accelerator (probing KVM once per process when asked to choose) and creates the
    /// run directory.
    pub async fn new(
        config: QemuConfig,
        pools: Vec<DirPool>,
    ) -> Result<QemuDriver, NewDriverError> {
        let qemu_binary =
            find_binary(&config.qemu_binary).ok_or_else(|| NewDriverError::QemuMissing {
                binary: config.qemu_binary.clone(),
            })?;
        std::fs::create_dir_all(&config.run_dir).map_err(|error| NewDriverError::RunDirectory {
            path: config.run_dir.clone(),
            reason: error.to_string(),
        })?;
        let mut pool_map = BTreeMap::new();
        for pool in pools {
            let name = hafen_driver_api::storage::StoragePool::name(&pool).to_string();
            if pool_map.insert(name.clone(), pool).is_some() {
                return Err(NewDriverError::DuplicatePool { name });
            }
        }
        let (accel, kvm_probe) = match config.accel {
            AccelChoice::Tcg => (Accel::Tcg, None),
            AccelChoice::Kvm | AccelChoice::Auto => {
                let probe = probe_kvm_cached(
                    &qemu_binary,
                    &config.run_dir.join(".kvm-probe"),
                    Duration::from_millis(config.kvm_probe_timeout_ms),
                )
                .await;
                tracing::info!(usable = probe.usable, reason = %probe.reason, "kvm probe");
                match (config.accel, probe.usable) {
                    (_, true) => (Accel::Kvm, Some(probe)),
                    (AccelChoice::Kvm, false) => {
                        return Err(NewDriverError::KvmUnusable {
                            reason: probe.reason,
                        });
                    }
                    _ => (Accel::Tcg, Some(probe)),
                }
            }
        };
        Ok(QemuDriver {
            config,
            qemu_binary,
            accel,
            kvm_probe,
            pools: pool_map,
            vms: Mutex::new(BTreeMap::new()),
            starting: Mutex::new(BTreeSet::new()),
        })
    }

    pub fn accel(&self) -> Accel {
        self.accel
    }

    /// The KVM probe's verdict, when one ran.
    pub fn kvm_probe(&self) -> Option<&KvmProbe> {
        self.kvm_probe.as_ref()
    }

    pub fn config(&self) -> &QemuConfig {
        &self.config
    }

    /// The guest's serial console log (kept across boots and after the VM stops).
    pub fn console_log(&self, name: &str) -> PathBuf {
        VmFiles::new(&self.config.run_dir, name).console_log()
    }

    /// The progress of an outgoing migration of an adopted VM, `None` if none started.
    pub async fn outgoing_progress(
        &self,
        name: &str,
    ) -> Result<Option<MigrationProgress>, StatusVmError> {
        let vm = self
            .managed(name)
            .ok_or_else(|| StatusVmError::NotAdopted {
                name: name.to_string(),
            })?;
        let reply = vm
            .qmp
            .execute("query-migrate", None)
            .await
            .map_err(|error| StatusVmError::Unresponsive {
                name: name.to_string(),
                reason: error.to_string(),
            })?;
        let Some(status) = reply.get("status").and_then(Value::as_str) else {
            return Ok(None);
        };
        let ram = reply.get("ram");
        let number = |key: &str| {
            ram.and_then(|ram| ram.get(key))
                .and_then(Value::as_u64)
                .unwrap_or(0)
        };
        Ok(Some(MigrationProgress {
            status: status.to_string(),
            transferred_bytes: number("transferred"),
            remaining_bytes: number("remaining"),
        }))
    }

    /// QEMU's figures of the finished outgoing migration of `name` (read before the
    /// source is ended, so the destination's confirmation need not wait for the end).
    pub async fn outgoing_report(&self, name: &str) -> Result<MigrationReport, StatusVmError> {
        let vm = self
            .managed(name)
            .ok_or_else(|| StatusVmError::NotAdopted {
                name: name.to_string(),
            })?;
        migration_report(&vm)
            .await
            .map_err(|error| StatusVmError::Unresponsive {
                name: name.to_string(),
                reason: error.to_string(),
            })
    }

    fn qmp_timeout(&self) -> Duration {
        Duration::from_millis(self.config.qmp_timeout_ms)
    }

    fn exit_timeout(&self) -> Duration {
        Duration::from_millis(self.config.exit_timeout_ms)
    }

    fn files(&self, name: &str) -> VmFiles {
        VmFiles::new(&self.config.run_dir, name)
    }

    fn managed(&self, name: &str) -> Option<Arc<ManagedVm>> {
        lock(&self.vms).get(name).cloned()
    }

    fn forget(&self, name: &str) {
        lock(&self.vms).remove(name);
        remove_runtime_files(&self.files(name));
    }

    /// After the process of `name` is gone: waits (bounded) until its images are
    /// unlocked, so "stopped" means another host can open them, then forgets the VM.
    ///
    /// Only a VM in the normal role owned the locks: around a migration the other half
    /// may hold them, and OFD locks do not say who holds them.
    async fn finish_exit(&self, name: &str, role: Option<Role>) {
        if matches!(role, None | Some(Role::Normal)) {
            let paths = self.disk_paths_of(name);
            if !wait_images_released(&paths, self.exit_timeout()).await {
                tracing::warn!(vm = %name, ?paths, "images still locked after the vm exited");
            }
        }
        self.forget(name);
    }

    /// The image files of `name` as recorded in its spec file (empty if unreadable).
    fn disk_paths_of(&self, name: &str) -> Vec<PathBuf> {
        let Ok(json) = std::fs::read(self.files(name).spec_file()) else {
            return Vec::new();
        };
        let Ok(spec) = serde_json::from_slice::<VmSpec>(&json) else {
            return Vec::new();
        };
        spec.disks
            .iter()
            .filter_map(|disk| self.pools.get(&disk.pool)?.find_volume(&disk.volume))
            .map(|(path, _)| path)
            .collect()
    }

    /// The pid of a live QEMU for `name` from its pidfile, whoever started it.
    fn running_pid(&self, name: &str) -> Option<u32> {
        if validate_name(name).is_err() {
            return None;
        }
        let files = self.files(name);
        let pid = read_pidfile(&files.pidfile())?;
        is_alive(pid, &files.qmp_socket()).then_some(pid)
    }

    fn reserve(&self, name: &str) -> Result<StartReservation<'_>, StartVmError> {
        let already = |name: &str| StartVmError::AlreadyRunning {
            name: name.to_string(),
        };
        if !lock(&self.starting).insert(name.to_string()) {
            return Err(already(name));
        }
        let reservation = StartReservation {
            driver: self,
            name: name.to_string(),
        };
        if self.managed(name).is_some_and(|vm| vm.alive()) || self.running_pid(name).is_some() {
            return Err(already(name));
        }
        Ok(reservation)
    }

    /// The file of each disk, refusing unknown pools, missing volumes and format
    /// mismatches.
    fn resolve_disks(&self, spec: &VmSpec) -> Result<Vec<PathBuf>, StartVmError> {
        spec.disks
            .iter()
            .map(|disk| {
                let pool = self
                    .pools
                    .get(&disk.pool)
                    .ok_or_else(|| StartVmError::UnknownPool {
                        pool: disk.pool.clone(),
                    })?;
                let (path, format) =
                    pool.find_volume(&disk.volume)
                        .ok_or_else(|| StartVmError::MissingVolume {
                            pool: disk.pool.clone(),
                            volume: disk.volume.clone(),
                        })?;
                if format != disk.format {
                    return Err(StartVmError::FormatMismatch {
                        pool: disk.pool.clone(),
                        volume: disk.volume.clone(),
                        expected: disk.format,
                        actual: format,
                    });
                }
                Ok(path)
            })
            .collect()
    }

    /// Creates the VM's directory with its spec and tap scripts, removing what a dead
    /// earlier process left behind.
    fn prepare_directory(&self, files: &VmFiles, spec: &VmSpec) -> Result<(), DriverError> {
        let failure = |reason: String| DriverError::RunDirectory {
            path: files.directory.clone(),
            reason,
        };
        for socket in [files.qmp_socket(), files.vnc_socket()] {
            if socket.as_os_str().len() > MAX_SOCKET_PATH_BYTES {
                return Err(failure(format!(
                    "socket path {socket:?} is longer than {MAX_SOCKET_PATH_BYTES} bytes"
                )));
            }
        }
        std::fs::create_dir_all(&files.directory).map_err(|error| failure(error.to_string()))?;
        remove_runtime_files(files);
        let spec_json =
            serde_json::to_vec_pretty(spec).map_err(|error| failure(error.to_string()))?;
        std::fs::write(files.spec_file(), spec_json).map_err(|error| failure(error.to_string()))?;
        Ok(())
    }

    /// Runs QEMU and connects to its QMP socket; QEMU answers there once its machine is
    /// up (and, for a destination, it listens). Whatever fails, no process is left behind.
    async fn launch(
        &self,
        spec: &VmSpec,
        incoming: Option<SocketAddr>,
    ) -> Result<ManagedVm, LaunchError> {
        let disk_paths = self.resolve_disks(spec)?;
        if let BootSpec::Kernel { kernel, initrd, .. } = &spec.boot {
            for path in std::iter::once(kernel).chain(initrd) {
                if !path.is_file() {
                    return Err(StartVmError::MissingBootFile { path: path.clone() }.into());
                }
            }
        }
        let files = self.files(&spec.name);
        self.prepare_directory(&files, spec)?;
        let arguments = command_line(&LaunchPlan {
            spec,
            accel: self.accel,
            files: &files,
            disk_paths: &disk_paths,
            incoming,
        });
        wait_taps_released(spec, self.exit_timeout()).await;
        let launched = std::time::Instant::now();
        tracing::info!(vm = %spec.name, ?arguments, "launching qemu");
        let log = std::fs::File::create(files.qemu_log())
            .and_then(|log| Ok((log.try_clone()?, log)))
            .map_err(|error| DriverError::RunDirectory {
                path: files.directory.clone(),
                reason: format!("{:?}: {error}", files.qemu_log()),
            })?;
        // Its own process group: signals meant for the agent's group (a Ctrl-C) do not
        // reach the VM, and when the agent exits the VM is reparented and runs on. Not
        // killed on drop; once the VM is up, dropping the handle leaves the reaping of its
        // eventual exit to tokio.
        let mut child = Command::new(&self.qemu_binary)
            .args(&arguments)
            .current_dir(&files.directory)
            .stdin(Stdio::null())
            .stdout(log.0)
            .stderr(log.1)
            .process_group(0)
            .spawn()
            .map_err(|error| match error.kind() {
                std::io::ErrorKind::NotFound => StartVmError::HypervisorMissing {
                    binary: self.qemu_binary.to_string_lossy().into_owned(),
                },
                _ => launch_failure(&spec.name, error.to_string()),
            })?;
        let spawned_ms = launched.elapsed().as_millis();
        let abandon = async |reason: String| {
            let error = LaunchError::Start(launch_failure(&spec.name, reason));
            self.abandon_launch(spec, error).await
        };
        let Some(pid) = child.id() else {
            return Err(abandon("qemu exited at once".to_string()).await);
        };
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(self.config.launch_timeout_ms);
        // QEMU creates the taps early in its start-up; they join their bridges while it
        // goes on, and the launch ends only when both are done (the guest runs after it).
        let mut attaching = Box::pin(attach_taps(spec, deadline));
        let mut attached = None;
        let mut connecting = Box::pin(async {
            loop {
                let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
                let connected =
                    QmpClient::connect_within(&files.qmp_socket(), remaining, self.qmp_timeout())
                        .await;
                let error = match connected {
                    Ok(qmp) => break Ok(qmp),
                    Err(error) => error,
                };
                // A refused start ends the process; its stderr says why. A socket that closes
                // during the handshake means the process is on its way out: give it a moment.
                let exited = match error {
                    QmpError::Connect { .. } | QmpError::Timeout { .. } => {
                        matches!(child.try_wait(), Ok(Some(_)))
                    }
                    _ => matches!(
                        tokio::time::timeout(self.exit_timeout(), child.wait()).await,
                        Ok(Ok(_))
                    ),
                };
                if exited {
                    let error =
                        classify_launch_failure(spec, &disk_paths, incoming, read_log(&files));
                    return Err(self.abandon_launch(spec, error).await);
                }
                if !matches!(error, QmpError::Connect { .. }) {
                    return Err(abandon(error.to_string()).await);
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(abandon(format!(
                        "qemu did not come up within {} ms",
                        self.config.launch_timeout_ms
                    ))
                    .await);
                }
                // The socket appears early in QEMU's start-up: look again soon.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        let connected = loop {
            tokio::select! {
                connected = &mut connecting => break connected,
                result = &mut attaching, if attached.is_none() => attached = Some(result),
            }
        };
        drop(connecting);
        let qmp = connected?;
        let qmp_ms = launched.elapsed().as_millis();
        let attached = match attached {
            Some(result) => result,
            None => attaching.await,
        };
        if let Err(reason) = attached {
            drop(qmp);
            return Err(abandon(reason).await);
        }
        tracing::debug!(vm = %spec.name, spawned_ms, qmp_ms, taps_ms = launched.elapsed().as_millis(), "qemu launched");
        Ok(ManagedVm {
            name: spec.name.clone(),
            files,
            pid,
            qmp,
            operation: tokio::sync::Mutex::new(()),
            role: Mutex::new(Role::Normal),
        })
    }

    /// Kills whatever a failed launch left running, waits until it is gone (it may hold
    /// the images open) and returns the error to report.
    async fn abandon_launch(&self, spec: &VmSpec, error: LaunchError) -> LaunchError {
        let files = self.files(&spec.name);
        if !kill_all_with(&files.qmp_socket(), self.exit_timeout()).await {
            tracing::error!(vm = %spec.name, "a failed launch left a qemu process that does not die");
        }
        remove_runtime_files(&files);
        error
    }

    /// Ends a launched VM after a set-up step failed; the error names the step.
    async fn discard(&self, vm: &ManagedVm, what: &str, error: QmpError) -> StartVmError {
        kill_all_with(&vm.files.qmp_socket(), self.exit_timeout()).await;
        remove_runtime_files(&vm.files);
        StartVmError::Driver(DriverError::Failed {
            what: format!("{what} of vm {}", vm.name),
            reason: error.to_string(),
        })
    }

    async fn set_vnc_password(&self, vm: &ManagedVm, spec: &VmSpec) -> Result<(), StartVmError> {
        let Some(vnc) = &spec.vnc else {
            return Ok(());
        };
        let arguments = json!({ "protocol": "vnc", "password": vnc.password });
        match vm.qmp.execute("set_password", Some(arguments)).await {
            Ok(_) => Ok(()),
            Err(error) => Err(self.discard(vm, "vnc password", error).await),
        }
    }

    async fn query_state(&self, vm: &ManagedVm) -> Result<VmState, QmpError> {
        let reply = vm.qmp.execute("query-status", None).await?;
        let status = reply.get("status").and_then(Value::as_str).unwrap_or("");
        Ok(map_run_state(status))
    }

    fn status_of(vm: &ManagedVm, state: VmState) -> VmStatus {
        VmStatus {
            name: vm.name.clone(),
            state,
            pid: (state != VmState::Stopped).then_some(vm.pid),
        }
    }

    /// Quits QEMU over QMP, then kills it; the VM is forgotten either way.
    async fn quit_or_kill(&self, vm: &ManagedVm) -> Result<StopOutcome, StopVmError> {
        let marker = vm.files.qmp_socket();
        // A quit reply may be lost when QEMU closes the socket first: the outcome is
        // judged by the process, not the reply.
        let _ = vm.qmp.execute("quit", None).await;
        let exited = vm.qmp.wait_closed(self.exit_timeout()).await
            && wait_gone(vm.pid, &marker, self.exit_timeout()).await;
        let outcome = if exited {
            StopOutcome::Quit
        } else {
            kill_now(vm.pid).map_err(|reason| DriverError::Failed {
                what: format!("kill of vm {}", vm.name),
                reason,
            })?;
            if !wait_gone(vm.pid, &marker, self.exit_timeout()).await {
                return Err(StopVmError::Unkillable {
                    name: vm.name.clone(),
                });
            }
            StopOutcome::Killed
        };
        self.finish_exit(&vm.name, Some(vm.role())).await;
        Ok(outcome)
    }

    fn register(&self, vm: ManagedVm) -> Arc<ManagedVm> {
        let vm = Arc::new(vm);
        lock(&self.vms).insert(vm.name.clone(), vm.clone());
        vm
    }

    /// After a failed or cancelled migration: makes sure the source runs again.
    async fn resume_source(&self, vm: &ManagedVm, name: &str, reason: String) -> MigrateVmError {
        vm.set_role(Role::Normal);
        match self.ensure_running(vm).await {
            Ok(()) => MigrateVmError::Failed {
                name: name.to_string(),
                reason,
            },
            Err(resume_error) => MigrateVmError::SourceLost {
                name: name.to_string(),
                reason,
                resume_error,
            },
        }
    }

    async fn ensure_running(&self, vm: &ManagedVm) -> Result<(), String> {
        let state = self
            .query_state(vm)
            .await
            .map_err(|error| error.to_string())?;
        if state == VmState::Running {
            return Ok(());
        }
        vm.qmp
            .execute("cont", None)
            .await
            .map_err(|error| error.to_string())?;
        match self
            .query_state(vm)
            .await
            .map_err(|error| error.to_string())?
        {
            VmState::Running => Ok(()),
            other => Err(format!("vm is {other:?} after cont")),
        }
    }

    /// QEMU reports a migration completed while the source is still in `finish-migrate`;
    /// it reaches `postmigrate` a moment later, with no event to say so: poll, bounded.
    async fn wait_settled_after_migration(&self, vm: &ManagedVm) {
        let deadline = tokio::time::Instant::now() + self.exit_timeout();
        while tokio::time::Instant::now() < deadline {
            match vm.qmp.execute("query-status", None).await {
                Ok(reply)
                    if reply.get("status").and_then(Value::as_str) == Some("finish-migrate") =>
                {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                _ => return,
            }
        }
        tracing::warn!(vm = %vm.name, "source still in finish-migrate after the migration completed");
    }

    async fn migration_error_description(&self, vm: &ManagedVm) -> String {
        match vm.qmp.execute("query-migrate", None).await {
            Ok(reply) => reply
                .get("error-desc")
                .and_then(Value::as_str)
                .unwrap_or("no reason given")
                .to_string(),
            Err(error) => format!("query-migrate failed: {error}"),
        }
    }

    /// Sends the VM; returns the migration's terminal status. Set-up failures are
    /// reported as `failed` with their reason.
    async fn run_migration(
        &self,
        vm: &ManagedVm,
        migration: &OutgoingMigration,
    ) -> Result<String, (String, String)> {
        let step = |what: &str| {
            let what = what.to_string();
            move |error: QmpError| ("failed".to_string(), format!("{what}: {error}"))
        };
        vm.qmp
            .execute(
                "migrate-set-capabilities",
                Some(json!({ "capabilities": [{ "capability": "events", "state": true }] })),
            )
            .await
            .map_err(step("enabling migration events"))?;
        vm.qmp
            .execute(
                "migrate-set-parameters",
                Some(json!({
                    "max-bandwidth": migration.max_bandwidth_bytes_per_second,
                    "downtime-limit": migration.downtime_limit_ms,
                })),
            )
            .await
            .map_err(step("setting migration parameters"))?;
        let mark = vm.qmp.event_mark();
        let uri = format!("tcp:{}", tcp_address(migration.target));
        vm.qmp
            .execute("migrate", Some(json!({ "uri": uri })))
            .await
            .map_err(step("migrate"))?;
        let timeout = Duration::from_millis(migration.timeout_ms);
        let terminal = |event: &crate::qmp::QmpEvent| {
            event.name == "MIGRATION"
                && matches!(
                    event.data.get("status").and_then(Value::as_str),
                    Some("completed" | "failed" | "cancelled")
                )
        };
        match vm.qmp.wait_event(mark, timeout, terminal).await {
            Ok(event) => Ok(event
                .data
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or("failed")
                .to_string()),
            Err(QmpError::Timeout { .. }) => {
                let _ = vm.qmp.execute("migrate_cancel", None).await;
                // The migration may have completed while we cancelled; only a terminal
                // event says which.
                match vm.qmp.wait_event(mark, self.exit_timeout(), terminal).await {
                    Ok(event)
                        if event.data.get("status").and_then(Value::as_str)
                            == Some("completed") =>
                    {
                        Ok("completed".to_string())
                    }
                    _ => Err(("timeout".to_string(), String::new())),
                }
            }
            Err(error) => Err(("lost".to_string(), error.to_string())),
        }
    }
}

impl Hypervisor for QemuDriver {
    async fn start(&self, spec: &VmSpec) -> Result<VmStatus, StartVmError> {
        spec.validate()?;
        let _reservation = self.reserve(&spec.name)?;
        let vm = match self.launch(spec, None).await {
            Ok(vm) => vm,
            Err(LaunchError::Start(error)) => return Err(error),
            Err(LaunchError::Listen { reason, .. }) => {
                return Err(launch_failure(&spec.name, reason));
            }
        };
        self.set_vnc_password(&vm, spec).await?;
        if let Err(error) = vm.qmp.execute("cont", None).await {
            return Err(self.discard(&vm, "cont", error).await);
        }
        match self.query_state(&vm).await {
            Ok(VmState::Running) => {}
            Ok(state) => {
                let error = QmpError::Protocol {
                    reason: format!("vm is {state:?} after cont"),
                };
                return Err(self.discard(&vm, "start", error).await);
            }
            Err(error) => return Err(self.discard(&vm, "query-status", error).await),
        }
        let vm = self.register(vm);
        tracing::info!(vm = %spec.name, pid = vm.pid, "vm running");
        Ok(Self::status_of(&vm, VmState::Running))
    }

    async fn stop(&self, name: &str, request: StopRequest) -> Result<StopOutcome, StopVmError> {
        let Some(vm) = self.managed(name) else {
            if self.running_pid(name).is_some() {
                return Err(StopVmError::NotAdopted {
                    name: name.to_string(),
                });
            }
            return Ok(StopOutcome::AlreadyStopped);
        };
        let _operation = vm.operation.lock().await;
        if !vm.alive() {
            self.finish_exit(name, Some(vm.role())).await;
            return Ok(StopOutcome::AlreadyStopped);
        }
        if vm.qmp.execute("system_powerdown", None).await.is_ok()
            && vm
                .qmp
                .wait_closed(Duration::from_millis(request.timeout_ms))
                .await
            && wait_gone(vm.pid, &vm.files.qmp_socket(), self.exit_timeout()).await
        {
            self.finish_exit(name, Some(vm.role())).await;
            tracing::info!(vm = %name, "guest powered off");
            return Ok(StopOutcome::PoweredOff);
        }
        tracing::warn!(vm = %name, timeout_ms = request.timeout_ms, "guest did not power off; quitting");
        self.quit_or_kill(&vm).await
    }

    async fn kill(&self, name: &str) -> Result<(), KillVmError> {
        let managed = self.managed(name);
        let role = managed.as_ref().map(|vm| vm.role());
        let (pid, qmp) = match &managed {
            Some(vm) if vm.alive() => (Some(vm.pid), Some(&vm.qmp)),
            _ => (self.running_pid(name), None),
        };
        if let Some(pid) = pid {
            kill_now(pid).map_err(|reason| DriverError::Failed {
                what: format!("kill of vm {name}"),
                reason,
            })?;
            // Its QMP socket closes once every thread has let go of the VM's memory. Looking
            // under /proc before that could make this thread the memory's last user, left to
            // tear down the guest's RAM itself (tens of ms on the runtime's thread).
            if let Some(qmp) = qmp {
                qmp.wait_closed(self.exit_timeout()).await;
            }
            if !wait_gone(pid, &self.files(name).qmp_socket(), self.exit_timeout()).await {
                return Err(KillVmError::Unkillable {
                    name: name.to_string(),
                });
            }
            tracing::info!(vm = %name, pid, "vm killed");
        }
        if validate_name(name).is_ok() {
            self.finish_exit(name, role).await;
        }
        Ok(())
    }

    async fn status(&self, name: &str) -> Result<VmStatus, StatusVmError> {
        let stopped = VmStatus {
            name: name.to_string(),
            state: VmState::Stopped,
            pid: None,
        };
        let Some(vm) = self.managed(name) else {
            if self.running_pid(name).is_some() {
                return Err(StatusVmError::NotAdopted {
                    name: name.to_string(),
                });
            }
            return Ok(stopped);
        };
        if !vm.alive() {
            self.finish_exit(name, Some(vm.role())).await;
            return Ok(stopped);
        }
        if vm.qmp.is_closed() {
            // The socket closes as QEMU exits: the process is on its way out.
            return Ok(Self::status_of(&vm, VmState::ShuttingDown));
        }
        match self.query_state(&vm).await {
            Ok(state) => Ok(Self::status_of(&vm, state)),
            Err(QmpError::Disconnected { .. }) => Ok(Self::status_of(&vm, VmState::ShuttingDown)),
            Err(error) => Err(StatusVmError::Unresponsive {
                name: name.to_string(),
                reason: error.to_string(),
            }),
        }
    }

    async fn list(&self) -> Result<Vec<String>, ListVmsError> {
        let entries = match std::fs::read_dir(&self.config.run_dir) {
            Ok(entries) => entries,
            Err(error) => {
                return Err(ListVmsError::Driver(DriverError::RunDirectory {
                    path: self.config.run_dir.clone(),
                    reason: error.to_string(),
                }));
            }
        };
        let mut names: Vec<String> = entries
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| self.running_pid(name).is_some())
            .collect();
        names.sort();
        Ok(names)
    }

    async fn adopt(&self, name: &str) -> Result<VmStatus, AdoptVmError> {
        if let Some(vm) = self.managed(name)
            && vm.alive()
        {
            let state = self.query_state(&vm).await.unwrap_or(VmState::ShuttingDown);
            return Ok(Self::status_of(&vm, state));
        }
        let Some(pid) = self.running_pid(name) else {
            return Err(AdoptVmError::NotRunning {
                name: name.to_string(),
            });
        };
        let files = self.files(name);
        let unresponsive = |reason: String| AdoptVmError::Unresponsive {
            name: name.to_string(),
            reason,
        };
        let qmp = QmpClient::connect(&files.qmp_socket(), self.qmp_timeout())
            .await
            .map_err(|error| unresponsive(error.to_string()))?;
        let vm = ManagedVm {
            name: name.to_string(),
            files,
            pid,
            qmp,
            operation: tokio::sync::Mutex::new(()),
            role: Mutex::new(Role::Normal),
        };
        let state = self
            .query_state(&vm)
            .await
            .map_err(|error| unresponsive(error.to_string()))?;
        vm.set_role(match state {
            VmState::Incoming => Role::Incoming,
            VmState::MigratedAway => Role::MigratedAway,
            _ => Role::Normal,
        });
        let vm = self.register(vm);
        tracing::info!(vm = %name, pid, ?state, "vm adopted");
        Ok(Self::status_of(&vm, state))
    }

    async fn prepare_incoming(
        &self,
        spec: &VmSpec,
        listen: SocketAddr,
    ) -> Result<IncomingMigration, PrepareIncomingError> {
        spec.validate().map_err(StartVmError::from)?;
        let _reservation = self.reserve(&spec.name)?;
        let vm = match self.launch(spec, Some(listen)).await {
            Ok(vm) => vm,
            Err(LaunchError::Start(error)) => return Err(error.into()),
            Err(LaunchError::Listen { address, reason }) => {
                return Err(PrepareIncomingError::Listen {
                    name: spec.name.clone(),
                    address,
                    reason,
                });
            }
        };
        self.set_vnc_password(&vm, spec).await?;
        let capabilities = json!({ "capabilities": [{ "capability": "events", "state": true }] });
        if let Err(error) = vm
            .qmp
            .execute("migrate-set-capabilities", Some(capabilities))
            .await
        {
            return Err(self
                .discard(&vm, "enabling migration events", error)
                .await
                .into());
        }
        let reply = match vm.qmp.execute("query-migrate", None).await {
            Ok(reply) => reply,
            Err(error) => return Err(self.discard(&vm, "query-migrate", error).await.into()),
        };
        let address = bound_address(&reply).unwrap_or(listen);
        vm.set_role(Role::Incoming);
        self.register(vm);
        tracing::info!(vm = %spec.name, %address, "waiting for incoming migration");
        Ok(IncomingMigration { address })
    }

    async fn await_incoming(&self, name: &str, timeout_ms: u64) -> Result<(), AwaitIncomingError> {
        let vm = match self.managed(name) {
            Some(vm) if vm.role() == Role::Incoming => vm,
            _ => {
                return Err(AwaitIncomingError::NotIncoming {
                    name: name.to_string(),
                });
            }
        };
        let _operation = vm.operation.lock().await;
        // The event log starts at the connection, made before the migration could begin.
        let resumed_or_failed = |event: &crate::qmp::QmpEvent| {
            event.name == "RESUME"
                || (event.name == "MIGRATION"
                    && event.data.get("status").and_then(Value::as_str) == Some("failed"))
        };
        let failed = |reason: String| AwaitIncomingError::Failed {
            name: name.to_string(),
            reason,
        };
        match vm
            .qmp
            .wait_event(0, Duration::from_millis(timeout_ms), resumed_or_failed)
            .await
        {
            Ok(event) if event.name == "RESUME" => {
                vm.set_role(Role::Normal);
                tracing::info!(vm = %name, "incoming migration resumed");
                Ok(())
            }
            Ok(_) => Err(failed(self.migration_error_description(&vm).await)),
            Err(QmpError::Timeout { .. }) => Err(AwaitIncomingError::Timeout {
                name: name.to_string(),
                timeout_ms,
            }),
            Err(error) => Err(failed(format!("destination qemu exited: {error}"))),
        }
    }

    async fn migrate_outgoing(
        &self,
        name: &str,
        migration: OutgoingMigration,
    ) -> Result<(), MigrateVmError> {
        let Some(vm) = self.managed(name) else {
            if self.running_pid(name).is_some() {
                return Err(MigrateVmError::NotAdopted {
                    name: name.to_string(),
                });
            }
            return Err(MigrateVmError::NotRunning {
                name: name.to_string(),
            });
        };
        let _operation = vm.operation.lock().await;
        let not_running = || MigrateVmError::NotRunning {
            name: name.to_string(),
        };
        if vm.role() != Role::Normal || !vm.alive() {
            return Err(not_running());
        }
        match self.query_state(&vm).await {
            Ok(VmState::Running) => {}
            Ok(_) => return Err(not_running()),
            Err(error) => {
                return Err(MigrateVmError::Driver(DriverError::Failed {
                    what: format!("query-status of vm {name}"),
                    reason: error.to_string(),
                }));
            }
        }
        tracing::info!(vm = %name, target = %migration.target, "migration starting");
        match self.run_migration(&vm, &migration).await {
            Ok(status) if status == "completed" => {
                vm.set_role(Role::MigratedAway);
                self.wait_settled_after_migration(&vm).await;
                tracing::info!(vm = %name, "migration sent; source paused");
                Ok(())
            }
            Ok(status) => {
                let reason = self.migration_error_description(&vm).await;
                let error = self
                    .resume_source(&vm, name, format!("migration {status}: {reason}"))
                    .await;
                Err(classify_unreachable(error, migration.target, &reason))
            }
            Err((kind, reason)) if kind == "timeout" => {
                tracing::warn!(vm = %name, timeout_ms = migration.timeout_ms, %reason, "migration timed out");
                match self.resume_source(&vm, name, "timeout".to_string()).await {
                    MigrateVmError::Failed { .. } => Err(MigrateVmError::Timeout {
                        name: name.to_string(),
                        timeout_ms: migration.timeout_ms,
                    }),
                    lost => Err(lost),
                }
            }
            Err((_, reason)) => {
                let error = self.resume_source(&vm, name, reason.clone()).await;
                Err(classify_unreachable(error, migration.target, &reason))
            }
        }
    }

    async fn complete_outgoing(&self, name: &str) -> Result<MigrationReport, FinishMigrationError> {
        let not_migrated = || FinishMigrationError::NotMigrated {
            name: name.to_string(),
        };
        let vm = self.managed(name).ok_or_else(not_migrated)?;
        let _operation = vm.operation.lock().await;
        // Checked under the lock: an abort that held it first has resumed the guest.
        if vm.role() != Role::MigratedAway {
            return Err(not_migrated());
        }
        // From here on nothing resumes this copy: abort and a new migration refuse it.
        vm.set_role(Role::Ending);
        let report = migration_report(&vm).await;
        // SIGKILL, not `quit`: the completed migration flushed and released the images and
        // the destination runs the guest, so this copy holds nothing to save, and a signal
        // does not wait for QEMU's teardown (as libvirt ends a migrated-away source).
        self.kill(name).await.map_err(|error| match error {
            KillVmError::Unkillable { name } => {
                FinishMigrationError::Stop(StopVmError::Unkillable { name })
            }
            KillVmError::Driver(error) => FinishMigrationError::Driver(error),
        })?;
        // The figures are only a report: failing to read them does not keep the copy alive.
        let report = report.unwrap_or_else(|error| {
            tracing::warn!(vm = %name, %error, "no figures of the finished migration");
            MigrationReport::default()
        });
        tracing::info!(vm = %name, ?report, "migration complete; source ended");
        Ok(report)
    }

    async fn abort_outgoing(&self, name: &str) -> Result<(), FinishMigrationError> {
        let not_migrated = || FinishMigrationError::NotMigrated {
            name: name.to_string(),
        };
        let vm = self.managed(name).ok_or_else(not_migrated)?;
        let _operation = vm.operation.lock().await;
        // Checked under the lock: a copy being ended is never resumed.
        if vm.role() != Role::MigratedAway {
            return Err(not_migrated());
        }
        self.ensure_running(&vm)
            .await
            .map_err(|reason| DriverError::Failed {
                what: format!("resuming vm {name} on the source"),
                reason,
            })?;
        vm.set_role(Role::Normal);
        tracing::info!(vm = %name, "migration aborted; source resumed");
        Ok(())
    }
}

/// The figures `query-migrate` reports for a VM's last outgoing migration.
async fn migration_report(vm: &ManagedVm) -> Result<MigrationReport, QmpError> {
    let reply = vm.qmp.execute("query-migrate", None).await?;
    let number = |value: Option<&Value>| value.and_then(Value::as_u64).unwrap_or(0);
    Ok(MigrationReport {
        total_time_ms: number(reply.get("total-time")),
        downtime_ms: number(reply.get("downtime")),
        transferred_bytes: number(reply.get("ram").and_then(|ram| ram.get("transferred"))),
    })
}

/// QEMU's run states mapped onto the port's.
fn map_run_state(status: &str) -> VmState {
    match status {
        "running" => VmState::Running,
        // The last phase of an outgoing migration: the guest runs again on one side
        // within the downtime limit.
        "finish-migrate" => VmState::Running,
        "inmigrate" => VmState::Incoming,
        "postmigrate" => VmState::MigratedAway,
        "shutdown" => VmState::ShuttingDown,
        "internal-error" | "guest-panicked" => VmState::Crashed,
        _ => VmState::Paused,
    }
}

/// The address an incoming migration listens on, from the destination's `query-migrate`
/// (it differs from the request when port 0 was asked for).
fn bound_address(reply: &Value) -> Option<SocketAddr> {
    let address = reply.get("socket-address")?.as_array()?.first()?;
    let host = address.get("host")?.as_str()?;
    let port: u16 = address.get("port")?.as_str()?.parse().ok()?;
    let ip = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    Some(SocketAddr::new(ip, port))
}

fn classify_unreachable(error: MigrateVmError, target: SocketAddr, reason: &str) -> MigrateVmError {
    const CONNECT_FAILURES: [&str; 5] = [
        "Failed to connect",
        "Connection refused",
        "No route to host",
        "Network is unreachable",
        "Connection timed out",
    ];
    match error {
        MigrateVmError::Failed { name, .. }
            if CONNECT_FAILURES
                .iter()
                .any(|failure| reason.contains(failure)) =>
        {
            MigrateVmError::TargetUnreachable {
                name,
                target,
                reason: reason.to_string(),
            }
        }
        other => other,
    }
}

fn classify_launch_failure(
    spec: &VmSpec,
    disk_paths: &[PathBuf],
    incoming: Option<SocketAddr>,
    stderr: String,
) -> LaunchError {
    if crate::is_lock_failure(&stderr) {
        let index = disk_paths
            .iter()
            .position(|path| stderr.contains(path.to_string_lossy().as_ref()))
            .unwrap_or(0);
        if let Some(disk) = spec.disks.get(index) {
            return LaunchError::Start(StartVmError::VolumeLocked {
                pool: disk.pool.clone(),
                volume: disk.volume.clone(),
                detail: stderr,
            });
        }
    }
    if let Some(address) = incoming
        && (stderr.contains("bind") || stderr.contains("Address already in use"))
    {
        return LaunchError::Listen {
            address,
            reason: stderr,
        };
    }
    LaunchError::Start(launch_failure(&spec.name, stderr))
}

fn launch_failure(name: &str, reason: String) -> StartVmError {
    StartVmError::Driver(DriverError::Failed {
        what: format!("start of vm {name}"),
        reason,
    })
}

/// Waits (bounded) until no tap of `spec`'s NICs exists: an earlier instance's taps go
/// with its last open file, which can close a moment after its process counts as gone.
async fn wait_taps_released(spec: &VmSpec, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    for (index, nic) in spec.nics.iter().enumerate() {
        if !matches!(nic.backend, NicBackend::Tap { .. }) {
            continue;
        }
        let tap = tap_name(&spec.name, index);
        while nix::net::if_::if_nametoindex(tap.as_str()).is_ok() {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(vm = %spec.name, %tap, "a tap of the vm's name still exists");
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// Attaches each tap NIC of `spec` to its bridge and brings it up, once QEMU has created it.
async fn attach_taps(spec: &VmSpec, deadline: tokio::time::Instant) -> Result<(), String> {
    for (index, nic) in spec.nics.iter().enumerate() {
        let NicBackend::Tap { bridge } = &nic.backend else {
            continue;
        };
        let tap = tap_name(&spec.name, index);
        while nix::net::if_::if_nametoindex(tap.as_str()).is_err() {
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("qemu did not create tap {tap}"));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let attach = Command::new("ip")
            .args(["link", "set", "dev", &tap, "master", bridge, "up"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output();
        let output = match tokio::time::timeout_at(deadline, attach).await {
            Ok(Ok(output)) => output,
            Ok(Err(error)) => return Err(format!("ip link set dev {tap}: {error}")),
            Err(_) => return Err(format!("attaching tap {tap} to bridge {bridge} timed out")),
        };
        if !output.status.success() {
            return Err(format!(
                "attaching tap {tap} to bridge {bridge} failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
    }
    Ok(())
}

/// QEMU's messages from the start (bounded: an error is a few lines).
fn read_log(files: &VmFiles) -> String {
    use std::io::Read;
    let mut text = String::new();
    if let Ok(log) = std::fs::File::open(files.qemu_log()) {
        let _ = log.take(64 * 1024).read_to_string(&mut text);
    }
    text.trim().to_string()
}

/// Files that belong to a live process; the logs and the spec stay for diagnosis.
fn remove_runtime_files(files: &VmFiles) {
    for path in [files.pidfile(), files.qmp_socket(), files.vnc_socket()] {
        let _ = std::fs::remove_file(path);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the data consistent, so poisoning is ignored.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
