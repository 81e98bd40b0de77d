//! The hypervisor port: the [`Hypervisor`] trait every VM driver (QEMU, the fake) implements, the plain VM spec it runs, one error enum per operation, and the live-migration protocol between two hosts.
//!
//! Nothing here knows QMP or a command line: `driver-qemu` is the only crate that does.
//! A driver object manages the VMs of one host. VMs outlive the driver object (an agent
//! restart drops it); a new object takes them back with [`Hypervisor::adopt`].
//!
//! Live migration is split by host because the two halves run on different agents:
//! 1. destination: [`Hypervisor::prepare_incoming`] starts the VM waiting for its state;
//! 2. source: [`Hypervisor::migrate_outgoing`] sends it; on failure the VM keeps running on
//!    the source and the caller discards the destination with [`Hypervisor::kill`];
//! 3. destination: [`Hypervisor::await_incoming`] confirms the guest runs there;
//! 4. source: [`Hypervisor::complete_outgoing`] reads the migration's times and ends the
//!    source copy, or [`Hypervisor::abort_outgoing`] resumes it when step 3 failed.
//!
//! [`migrate`] runs the four steps for two driver objects in one process (tests, and the
//! shape the daemon follows over RPC).

use std::collections::BTreeSet;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::storage::VolumeFormat;

pub mod conformance;

/// Everything needed to run one VM. Serialized into the replicated configuration, so every
/// host derives the same machine from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmSpec {
    /// Cluster-unique name: lowercase letters, digits, `-`, `_`, `.`; at most 63 bytes.
    pub name: String,
    /// SMBIOS UUID the guest sees, `8-4-4-4-12` hexadecimal.
    pub uuid: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    /// Machine type, e.g. `pc` or `q35`. Both ends of a migration must agree.
    pub machine: String,
    /// CPU model, e.g. `qemu64`, `max` or `host` (the last only under KVM).
    pub cpu_model: String,
    pub disks: Vec<DiskSpec>,
    pub nics: Vec<NicSpec>,
    pub boot: BootSpec,
    pub vnc: Option<VncSpec>,
}

/// A volume of a storage pool attached as a virtio disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSpec {
    pub pool: String,
    pub volume: String,
    pub format: VolumeFormat,
    pub bus: DiskBus,
    pub cache: DiskCache,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiskBus {
    Virtio,
}

/// Host page-cache use of a disk. `None` (direct I/O) is the safe default for shared
/// storage; `Writeback` is for filesystems without `O_DIRECT` (tmpfs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiskCache {
    None,
    Writeback,
    Writethrough,
    Directsync,
    Unsafe,
}

/// A virtio network card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicSpec {
    /// Unicast MAC, `52:54:00:xx:xx:xx` style.
    pub mac: String,
    pub backend: NicBackend,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum NicBackend {
    /// User-mode networking (the guest reaches the host's network through NAT); host
    /// ports forwarded into the guest. For tests and single-host demos.
    User { port_forwards: Vec<PortForward> },
    /// A tap device attached to an existing bridge on the host; the bridge must exist on
    /// every host the VM can run on.
    Tap { bridge: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortForward {
    pub protocol: ForwardProtocol,
    pub host_address: IpAddr,
    pub host_port: u16,
    pub guest_port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForwardProtocol {
    Tcp,
    Udp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "from")]
pub enum BootSpec {
    /// Firmware boots the first disk.
    Disk,
    /// Direct kernel boot (the test guest).
    Kernel {
        kernel: PathBuf,
        initrd: Option<PathBuf>,
        cmdline: String,
    },
}

/// VNC console, reachable only as a websocket on loopback (the API proxies it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VncSpec {
    pub websocket_port: u16,
    /// VNC authentication truncates at 8 bytes, so longer passwords are refused.
    pub password: String,
}

/// Why a spec can never run, whatever the host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error(
        "vm name {name:?} is invalid (1-63 of a-z, 0-9, '-', '_', '.', starting with a letter or digit)"
    )]
    InvalidName { name: String },
    #[error("vm uuid {uuid:?} is not of the form 8-4-4-4-12 hexadecimal")]
    InvalidUuid { uuid: String },
    #[error("vm memory is zero")]
    ZeroMemory,
    #[error("vm vcpus is zero")]
    ZeroVcpus,
    #[error("vm vcpus {vcpus} exceeds the limit of {limit}")]
    TooManyVcpus { vcpus: u32, limit: u32 },
    #[error("vm {field} {value:?} is invalid")]
    InvalidField { field: &'static str, value: String },
    #[error("nic mac {mac:?} is not a unicast address of the form xx:xx:xx:xx:xx:xx")]
    InvalidMac { mac: String },
    #[error("nic mac {mac} is used twice")]
    DuplicateMac { mac: String },
    #[error("disk {pool}/{volume} is attached twice")]
    DuplicateDisk { pool: String, volume: String },
    #[error("host port {port} is forwarded twice")]
    DuplicatePortForward { port: u16 },
    #[error("boot from disk but the vm has no disk")]
    NoBootDisk,
    #[error("kernel path {path:?} is not absolute")]
    RelativeKernelPath { path: PathBuf },
    #[error("vnc password must be 1 to 8 bytes, got {length}")]
    InvalidVncPassword { length: usize },
}

/// QEMU's limit for `-smp` on the machines we use is far higher; this bounds mistakes.
pub const MAX_VCPUS: u32 = 256;

impl VmSpec {
    /// Checks what can be checked without a host. Drivers call it before anything else,
    /// so a refused spec creates nothing.
    pub fn validate(&self) -> Result<(), SpecError> {
        validate_name(&self.name)?;
        validate_uuid(&self.uuid)?;
        if self.memory_mib == 0 {
            return Err(SpecError::ZeroMemory);
        }
        if self.vcpus == 0 {
            return Err(SpecError::ZeroVcpus);
        }
        if self.vcpus > MAX_VCPUS {
            return Err(SpecError::TooManyVcpus {
                vcpus: self.vcpus,
                limit: MAX_VCPUS,
            });
        }
        validate_word("machine", &self.machine)?;
        validate_word("cpu model", &self.cpu_model)?;
        self.validate_disks()?;
        self.validate_nics()?;
        self.validate_boot()?;
        if let Some(vnc) = &self.vnc
            && (vnc.password.is_empty() || vnc.password.len() > 8)
        {
            return Err(SpecError::InvalidVncPassword {
                length: vnc.password.len(),
            });
        }
        Ok(())
    }

    fn validate_disks(&self) -> Result<(), SpecError> {
        let mut seen = BTreeSet::new();
        for disk in &self.disks {
            validate_word("disk pool", &disk.pool)?;
            crate::storage::validate_volume_name(&disk.volume).map_err(|_| {
                SpecError::InvalidField {
                    field: "disk volume",
                    value: disk.volume.clone(),
                }
            })?;
            if !seen.insert((&disk.pool, &disk.volume)) {
                return Err(SpecError::DuplicateDisk {
                    pool: disk.pool.clone(),
                    volume: disk.volume.clone(),
                });
            }
        }
        Ok(())
    }

    fn validate_nics(&self) -> Result<(), SpecError> {
        let mut macs = BTreeSet::new();
        let mut ports = BTreeSet::new();
        for nic in &self.nics {
            validate_mac(&nic.mac)?;
            if !macs.insert(nic.mac.to_ascii_lowercase()) {
                return Err(SpecError::DuplicateMac {
                    mac: nic.mac.clone(),
                });
            }
            match &nic.backend {
                NicBackend::User { port_forwards } => {
                    for forward in port_forwards {
                        if !ports
                            .insert((forward.protocol == ForwardProtocol::Tcp, forward.host_port))
                        {
                            return Err(SpecError::DuplicatePortForward {
                                port: forward.host_port,
                            });
                        }
                    }
                }
                NicBackend::Tap { bridge } => {
                    // Linux interface names: at most 15 bytes, no '/' or whitespace.
                    if bridge.is_empty() || bridge.len() > 15 || !is_plain_word(bridge) {
                        return Err(SpecError::InvalidField {
                            field: "nic bridge",
                            value: bridge.clone(),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    fn validate_boot(&self) -> Result<(), SpecError> {
        match &self.boot {
            BootSpec::Disk if self.disks.is_empty() => Err(SpecError::NoBootDisk),
            BootSpec::Disk => Ok(()),
            BootSpec::Kernel {
                kernel,
                initrd,
                cmdline,
            } => {
                for path in std::iter::once(kernel).chain(initrd) {
                    if !path.is_absolute() {
                        return Err(SpecError::RelativeKernelPath { path: path.clone() });
                    }
                }
                // The command line is passed as one argument; a NUL cannot be.
                if cmdline.contains('\0') {
                    return Err(SpecError::InvalidField {
                        field: "kernel cmdline",
                        value: cmdline.clone(),
                    });
                }
                Ok(())
            }
        }
    }
}

pub fn validate_name(name: &str) -> Result<(), SpecError> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .next()
            .is_some_and(|first| first.is_ascii_lowercase() || first.is_ascii_digit())
        && name.bytes().all(|byte| {
            byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"-_.".contains(&byte)
        });
    if valid {
        Ok(())
    } else {
        Err(SpecError::InvalidName {
            name: name.to_string(),
        })
    }
}

fn validate_uuid(uuid: &str) -> Result<(), SpecError> {
    let groups: Vec<&str> = uuid.split('-').collect();
    let lengths: Vec<usize> = groups.iter().map(|group| group.len()).collect();
    let valid = lengths == [8, 4, 4, 4, 12]
        && groups
            .iter()
            .all(|group| group.bytes().all(|byte| byte.is_ascii_hexdigit()));
    if valid {
        Ok(())
    } else {
        Err(SpecError::InvalidUuid {
            uuid: uuid.to_string(),
        })
    }
}

fn validate_mac(mac: &str) -> Result<(), SpecError> {
    let octets: Vec<&str> = mac.split(':').collect();
    let well_formed = octets.len() == 6
        && octets
            .iter()
            .all(|octet| octet.len() == 2 && octet.bytes().all(|byte| byte.is_ascii_hexdigit()));
    // The low bit of the first octet marks multicast, which a NIC cannot have.
    let unicast =
        well_formed && u8::from_str_radix(octets[0], 16).is_ok_and(|first| first & 1 == 0);
    if unicast {
        Ok(())
    } else {
        Err(SpecError::InvalidMac {
            mac: mac.to_string(),
        })
    }
}

fn validate_word(field: &'static str, value: &str) -> Result<(), SpecError> {
    if value.is_empty() || value.len() > 64 || !is_plain_word(value) {
        return Err(SpecError::InvalidField {
            field,
            value: value.to_string(),
        });
    }
    Ok(())
}

/// Letters, digits, `-`, `_`, `.`: safe inside a command-line option and a path.
fn is_plain_word(value: &str) -> bool {
    value
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || b"-_.".contains(&byte))
}

/// What a driver sees of one VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmState {
    /// No process: never started, stopped, killed, migrated away or crashed.
    Stopped,
    Running,
    /// Alive but not executing (paused by an operator or an error such as a full disk).
    Paused,
    /// Destination of a live migration, waiting for or receiving the state.
    Incoming,
    /// Source of a live migration that has sent everything and is paused, waiting for
    /// [`Hypervisor::complete_outgoing`] or [`Hypervisor::abort_outgoing`].
    MigratedAway,
    /// The guest has powered off; the process is exiting.
    ShuttingDown,
    /// The process is alive but the guest cannot continue (internal error, panic).
    Crashed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmStatus {
    pub name: String,
    pub state: VmState,
    /// Host process id when a process exists.
    pub pid: Option<u32>,
}

/// How a stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopOutcome {
    /// The guest shut down on the ACPI power button.
    PoweredOff,
    /// The guest ignored the power button until the timeout; the hypervisor was told to quit.
    Quit,
    /// The hypervisor did not quit either and was killed.
    Killed,
    /// Nothing was running.
    AlreadyStopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopRequest {
    /// How long the guest gets to power off on ACPI before the hypervisor is told to quit.
    pub timeout_ms: u64,
}

/// Parameters of an outgoing live migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutgoingMigration {
    /// Where the destination listens (returned by [`Hypervisor::prepare_incoming`]).
    pub target: SocketAddr,
    pub max_bandwidth_bytes_per_second: u64,
    /// The longest pause of the guest the migration may plan for its last round.
    pub downtime_limit_ms: u64,
    /// The whole transfer; on expiry the migration is cancelled.
    pub timeout_ms: u64,
}

/// The destination listening for a migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncomingMigration {
    /// The bound address (the requested port may have been 0).
    pub address: SocketAddr,
}

/// Figures of a completed migration, as the source hypervisor measured them (all zero
/// when they could not be read).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationReport {
    pub total_time_ms: u64,
    pub downtime_ms: u64,
    pub transferred_bytes: u64,
}

/// Failures of the host or the driver itself, shared by every operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    #[error("hypervisor {what} did not answer within {timeout_ms} ms")]
    Timeout { what: String, timeout_ms: u64 },
    #[error("hypervisor {what} failed: {reason}")]
    Failed { what: String, reason: String },
    #[error("run directory {path:?} is unusable: {reason}")]
    RunDirectory { path: PathBuf, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartVmError {
    #[error("vm spec is invalid: {0}")]
    InvalidSpec(#[from] SpecError),
    #[error("vm {name} is already running on this host")]
    AlreadyRunning { name: String },
    #[error("storage pool {pool} is unknown on this host")]
    UnknownPool { pool: String },
    #[error("volume {pool}/{volume} does not exist")]
    MissingVolume { pool: String, volume: String },
    #[error("volume {pool}/{volume} is {actual:?} but the spec says {expected:?}")]
    FormatMismatch {
        pool: String,
        volume: String,
        expected: VolumeFormat,
        actual: VolumeFormat,
    },
    #[error("boot file {path:?} does not exist")]
    MissingBootFile { path: PathBuf },
    #[error("volume {pool}/{volume} is locked by another process: {detail}")]
    VolumeLocked {
        pool: String,
        volume: String,
        detail: String,
    },
    #[error("hypervisor binary {binary:?} is not installed")]
    HypervisorMissing { binary: String },
    #[error(transparent)]
    Driver(#[from] DriverError),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StopVmError {
    #[error("vm {name} is running but not adopted by this driver")]
    NotAdopted { name: String },
    #[error("vm {name} is still alive after SIGKILL")]
    Unkillable { name: String },
    #[error(transparent)]
    Driver(#[from] DriverError),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KillVmError {
    #[error("vm {name} is still alive after SIGKILL")]
    Unkillable { name: String },
    #[error(transparent)]
    Driver(#[from] DriverError),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusVmError {
    #[error("vm {name} is running but not adopted by this driver")]
    NotAdopted { name: String },
    /// The process lives but does not answer: the HA layer treats it as failed.
    #[error("vm {name} does not answer: {reason}")]
    Unresponsive { name: String, reason: String },
    #[error(transparent)]
    Driver(#[from] DriverError),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdoptVmError {
    #[error("vm {name} is not running on this host")]
    NotRunning { name: String },
    #[error("vm {name} runs but its control socket does not answer: {reason}")]
    Unresponsive { name: String, reason: String },
    #[error(transparent)]
    Driver(#[from] DriverError),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListVmsError {
    #[error(transparent)]
    Driver(#[from] DriverError),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrepareIncomingError {
    #[error(transparent)]
    Start(#[from] StartVmError),
    #[error("cannot listen for the migration of vm {name} on {address}: {reason}")]
    Listen {
        name: String,
        address: SocketAddr,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AwaitIncomingError {
    #[error("vm {name} is not waiting for an incoming migration on this host")]
    NotIncoming { name: String },
    #[error("incoming migration of vm {name} failed: {reason}")]
    Failed { name: String, reason: String },
    #[error("incoming migration of vm {name} did not resume within {timeout_ms} ms")]
    Timeout { name: String, timeout_ms: u64 },
    #[error(transparent)]
    Driver(#[from] DriverError),
}

/// An outgoing migration failed; unless stated otherwise the VM still runs on the source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MigrateVmError {
    #[error("vm {name} is not running on this host")]
    NotRunning { name: String },
    #[error("vm {name} is running but not adopted by this driver")]
    NotAdopted { name: String },
    #[error(
        "migration target {target} is unreachable: {reason}; vm {name} keeps running on the source"
    )]
    TargetUnreachable {
        name: String,
        target: SocketAddr,
        reason: String,
    },
    #[error("migration of vm {name} failed: {reason}; vm keeps running on the source")]
    Failed { name: String, reason: String },
    #[error(
        "migration of vm {name} did not finish within {timeout_ms} ms and was cancelled; vm keeps running on the source"
    )]
    Timeout { name: String, timeout_ms: u64 },
    /// The migration failed and the source could not be resumed either: the HA layer
    /// must treat the VM as failed.
    #[error(
        "migration of vm {name} failed ({reason}) and the source could not be resumed: {resume_error}"
    )]
    SourceLost {
        name: String,
        reason: String,
        resume_error: String,
    },
    #[error(transparent)]
    Driver(#[from] DriverError),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FinishMigrationError {
    #[error("vm {name} has no finished outgoing migration on this host")]
    NotMigrated { name: String },
    #[error(transparent)]
    Stop(#[from] StopVmError),
    #[error(transparent)]
    Driver(#[from] DriverError),
}

/// The VMs of one host. All methods are bounded: each returns within the timeouts the
/// driver was configured with (or the one passed in), never hangs on a stuck hypervisor.
pub trait Hypervisor: Send + Sync {
    /// Starts a VM and returns once it runs. A refused spec creates nothing.
    fn start(&self, spec: &VmSpec) -> impl Future<Output = Result<VmStatus, StartVmError>> + Send;

    /// ACPI power-down; after `timeout_ms` quit; then kill. Stopping a stopped VM is fine.
    fn stop(
        &self,
        name: &str,
        request: StopRequest,
    ) -> impl Future<Output = Result<StopOutcome, StopVmError>> + Send;

    /// Ends the VM at once (self-fencing, cleanup). Works without adoption and is
    /// idempotent: killing a stopped VM succeeds.
    fn kill(&self, name: &str) -> impl Future<Output = Result<(), KillVmError>> + Send;

    /// The VM's state; [`VmState::Stopped`] when nothing runs under that name.
    fn status(&self, name: &str) -> impl Future<Output = Result<VmStatus, StatusVmError>> + Send;

    /// Names of the VMs with a live process on this host, adopted or not, sorted.
    fn list(&self) -> impl Future<Output = Result<Vec<String>, ListVmsError>> + Send;

    /// Takes over a VM left running by an earlier driver object, without touching the guest.
    fn adopt(&self, name: &str) -> impl Future<Output = Result<VmStatus, AdoptVmError>> + Send;

    /// Destination side: starts the VM paused, listening for its state on `listen`.
    fn prepare_incoming(
        &self,
        spec: &VmSpec,
        listen: SocketAddr,
    ) -> impl Future<Output = Result<IncomingMigration, PrepareIncomingError>> + Send;

    /// Destination side: returns once the migrated guest runs here.
    fn await_incoming(
        &self,
        name: &str,
        timeout_ms: u64,
    ) -> impl Future<Output = Result<(), AwaitIncomingError>> + Send;

    /// Source side: sends the VM; returns once everything is sent and the source is
    /// paused ([`VmState::MigratedAway`]). On any error the VM runs on the source again.
    fn migrate_outgoing(
        &self,
        name: &str,
        migration: OutgoingMigration,
    ) -> impl Future<Output = Result<(), MigrateVmError>> + Send;

    /// Source side, after the destination confirmed: reads the figures, ends the source.
    fn complete_outgoing(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<MigrationReport, FinishMigrationError>> + Send;

    /// Source side, when the destination failed after the transfer: resumes the source.
    fn abort_outgoing(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<(), FinishMigrationError>> + Send;
}

/// Why [`migrate`] failed; the VM runs on the source unless the error says otherwise.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MigrationError {
    #[error("destination refused the vm: {0}")]
    Prepare(#[from] PrepareIncomingError),
    #[error(transparent)]
    Outgoing(#[from] MigrateVmError),
    #[error("destination did not take over ({incoming}); source resumed")]
    Incoming { incoming: AwaitIncomingError },
    #[error(
        "destination did not take over ({incoming}) and the source could not be resumed: {abort}"
    )]
    SourceLost {
        incoming: AwaitIncomingError,
        abort: FinishMigrationError,
    },
    #[error("migration finished but the source copy could not be ended: {0}")]
    Complete(FinishMigrationError),
}

/// Live-migrates `spec` from `source` to `destination`, the destination listening on
/// `listen`. Returns the source's figures once the destination runs the guest.
pub async fn migrate<S: Hypervisor, D: Hypervisor>(
    source: &S,
    destination: &D,
    spec: &VmSpec,
    listen: SocketAddr,
    mut migration: OutgoingMigration,
) -> Result<MigrationReport, MigrationError> {
    let incoming = destination.prepare_incoming(spec, listen).await?;
    migration.target = incoming.address;
    if let Err(error) = source.migrate_outgoing(&spec.name, migration).await {
        discard_destination(destination, &spec.name).await;
        return Err(error.into());
    }
    if let Err(incoming) = destination
        .await_incoming(&spec.name, migration.timeout_ms)
        .await
    {
        discard_destination(destination, &spec.name).await;
        return match source.abort_outgoing(&spec.name).await {
            Ok(()) => Err(MigrationError::Incoming { incoming }),
            Err(abort) => Err(MigrationError::SourceLost { incoming, abort }),
        };
    }
    source
        .complete_outgoing(&spec.name)
        .await
        .map_err(MigrationError::Complete)
}

async fn discard_destination<D: Hypervisor>(destination: &D, name: &str) {
    // Best effort: the half-started destination holds no state worth keeping, and the
    // source's fate does not depend on this cleanup succeeding.
    let _ = destination.kill(name).await;
}

#[cfg(test)]
mod tests {
    //! Spec validation: one valid spec, then one broken field at a time.

    use super::*;

    fn valid() -> VmSpec {
        VmSpec {
            name: "web-1".to_string(),
            uuid: "6f1c2a4e-0000-4000-8000-00000000abcd".to_string(),
            vcpus: 1,
            memory_mib: 128,
            machine: "pc".to_string(),
            cpu_model: "qemu64".to_string(),
            disks: vec![DiskSpec {
                pool: "shared".to_string(),
                volume: "web-1-disk".to_string(),
                format: VolumeFormat::Qcow2,
                bus: DiskBus::Virtio,
                cache: DiskCache::None,
            }],
            nics: vec![NicSpec {
                mac: "52:54:00:00:00:01".to_string(),
                backend: NicBackend::Tap {
                    bridge: "br0".to_string(),
                },
            }],
            boot: BootSpec::Disk,
            vnc: Some(VncSpec {
                websocket_port: 5701,
                password: "secret".to_string(),
            }),
        }
    }

    fn refused(change: impl FnOnce(&mut VmSpec)) -> SpecError {
        let mut spec = valid();
        change(&mut spec);
        spec.validate().expect_err("the spec must be refused")
    }

    /// Proves a sound spec passes and survives a JSON round trip unchanged.
    #[test]
    fn valid_spec_passes_and_round_trips() {
        let spec = valid();
        assert_eq!(spec.validate(), Ok(()));
        let json = serde_json::to_string(&spec).expect("serialize");
        let back: VmSpec = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, spec);
    }

    /// Proves each broken field is refused with its own reason.
    #[test]
    fn broken_fields_are_refused() {
        assert_eq!(refused(|spec| spec.memory_mib = 0), SpecError::ZeroMemory);
        assert_eq!(refused(|spec| spec.vcpus = 0), SpecError::ZeroVcpus);
        assert!(matches!(
            refused(|spec| spec.name = "../etc".to_string()),
            SpecError::InvalidName { .. }
        ));
        assert!(matches!(
            refused(|spec| spec.name = "Web".to_string()),
            SpecError::InvalidName { .. }
        ));
        assert!(matches!(
            refused(|spec| spec.uuid = "not-a-uuid".to_string()),
            SpecError::InvalidUuid { .. }
        ));
        assert!(matches!(
            refused(|spec| spec.nics[0].mac = "01:00:5e:00:00:01".to_string()),
            SpecError::InvalidMac { .. }
        ));
        assert!(matches!(
            refused(|spec| spec.nics.push(spec.nics[0].clone())),
            SpecError::DuplicateMac { .. }
        ));
        assert!(matches!(
            refused(|spec| spec.disks.push(spec.disks[0].clone())),
            SpecError::DuplicateDisk { .. }
        ));
        assert!(matches!(
            refused(|spec| spec.machine = "pc,accel=kvm".to_string()),
            SpecError::InvalidField {
                field: "machine",
                ..
            }
        ));
        assert_eq!(refused(|spec| spec.disks.clear()), SpecError::NoBootDisk);
        assert!(matches!(
            refused(|spec| spec.boot = BootSpec::Kernel {
                kernel: "vmlinuz".into(),
                initrd: None,
                cmdline: String::new(),
            }),
            SpecError::RelativeKernelPath { .. }
        ));
        assert_eq!(
            refused(|spec| spec.vnc = Some(VncSpec {
                websocket_port: 5701,
                password: "much-too-long".to_string(),
            })),
            SpecError::InvalidVncPassword { length: 13 }
        );
    }
}
