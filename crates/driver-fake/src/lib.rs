//! A deterministic fake hypervisor and storage pool: every host and pool of a simulated cluster lives in one [`FakeWorld`]; operations complete at once and draw ids from a seeded sequence.
//!
//! The fake keeps no clock and spawns nothing, so every future it returns is ready on its
//! first poll: the simulator can drive it without a runtime. It models what the HA layer
//! relies on: VMs outliving their driver object (adoption), volume locking across hosts
//! sharing a pool, the four-step live migration, and injectable faults ([`Fault`]).

mod hypervisor;
mod storage;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use hafen_driver_api::hypervisor::{MigrationReport, VmSpec, VmState};
use hafen_driver_api::storage::VolumeFormat;

pub use hypervisor::FakeHypervisor;
pub use storage::FakeStoragePool;

/// A fault the next matching operation runs into. Each fires once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The guest of `vm` ignores the ACPI power button, so a stop ends with quit.
    IgnoreAcpi { vm: String },
    /// The hypervisor of `vm` stops answering (status reports it unresponsive).
    Unresponsive { vm: String },
    /// The next start of `vm` fails with `reason`.
    StartFails { vm: String, reason: String },
    /// The destination process of `vm` dies while the state is being sent.
    DestinationDiesDuringMigration { vm: String },
}

/// The guest of a fake VM as a test client would see it over the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeGuest {
    pub boot_id: String,
    /// Requests the guest has answered since boot; see [`FakeWorld::request_guest`].
    pub counter: u64,
}

/// The shared state of all fake hosts and pools. Cloning gives another handle to it.
#[derive(Debug, Clone)]
pub struct FakeWorld {
    state: Arc<Mutex<WorldState>>,
}

#[derive(Debug)]
struct WorldState {
    /// Host name -> VM name -> VM.
    hosts: BTreeMap<String, BTreeMap<String, FakeVm>>,
    pools: BTreeMap<String, BTreeMap<String, FakeVolume>>,
    /// Incoming migrations: listen address -> (host, VM name).
    listeners: BTreeMap<SocketAddr, (String, String)>,
    faults: Vec<Fault>,
    random_state: u64,
    next_pid: u32,
    next_port: u16,
    migration_report: MigrationReport,
}

#[derive(Debug, Clone)]
struct FakeVm {
    spec: VmSpec,
    state: VmState,
    pid: u32,
    guest: FakeGuest,
}

#[derive(Debug, Clone)]
struct FakeVolume {
    format: VolumeFormat,
    size_bytes: u64,
    backing_volume: Option<String>,
}

impl FakeWorld {
    /// A world with no hosts' VMs, no pools, and ids drawn from `seed`.
    pub fn new(seed: u64) -> FakeWorld {
        FakeWorld {
            state: Arc::new(Mutex::new(WorldState {
                hosts: BTreeMap::new(),
                pools: BTreeMap::new(),
                listeners: BTreeMap::new(),
                faults: Vec::new(),
                random_state: seed,
                next_pid: 1000,
                next_port: 49152,
                migration_report: MigrationReport {
                    total_time_ms: 1000,
                    downtime_ms: 50,
                    transferred_bytes: 64 * 1024 * 1024,
                },
            })),
        }
    }

    /// A new driver object for `host` (a second one for the same host models an agent
    /// restart). `pools` are the pool names this host can reach.
    pub fn hypervisor(&self, host: &str, pools: &[&str]) -> FakeHypervisor {
        self.lock().hosts.entry(host.to_string()).or_default();
        FakeHypervisor::new(
            self.clone(),
            host.to_string(),
            pools
                .iter()
                .map(|pool| pool.to_string())
                .collect::<BTreeSet<_>>(),
        )
    }

    /// A handle to pool `name`, created empty on first use.
    pub fn pool(&self, name: &str) -> FakeStoragePool {
        self.lock().pools.entry(name.to_string()).or_default();
        FakeStoragePool::new(self.clone(), name.to_string())
    }

    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// The figures every completed migration reports.
    pub fn set_migration_report(&self, report: MigrationReport) {
        self.lock().migration_report = report;
    }

    /// The guest of `vm` on `host` if it runs there.
    pub fn guest(&self, host: &str, vm: &str) -> Option<FakeGuest> {
        let state = self.lock();
        let machine = state.hosts.get(host)?.get(vm)?;
        (machine.state == VmState::Running).then(|| machine.guest.clone())
    }

    /// A client request to the guest: increments and returns its counter, as the test
    /// guest's HTTP service does. `None` when the guest does not run on `host`.
    pub fn request_guest(&self, host: &str, vm: &str) -> Option<FakeGuest> {
        let mut state = self.lock();
        let machine = state.hosts.get_mut(host)?.get_mut(vm)?;
        if machine.state != VmState::Running {
            return None;
        }
        machine.guest.counter += 1;
        Some(machine.guest.clone())
    }

    /// Ends the processes of `host` as a power cut would.
    pub fn power_off_host(&self, host: &str) {
        let mut state = self.lock();
        if let Some(vms) = state.hosts.get_mut(host) {
            vms.clear();
        }
        state
            .listeners
            .retain(|_, (listener_host, _)| listener_host != host);
    }

    fn lock(&self) -> MutexGuard<'_, WorldState> {
        // A panic while holding the lock is a bug in a test; the state is still usable
        // for the panic's report, so poisoning is ignored.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl WorldState {
    /// splitmix64: deterministic, good enough for ids.
    fn next_random(&mut self) -> u64 {
        self.random_state = self.random_state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut value = self.random_state;
        value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        value ^ (value >> 31)
    }

    fn new_boot_id(&mut self) -> String {
        format!("{:016x}{:016x}", self.next_random(), self.next_random())
    }

    fn new_pid(&mut self) -> u32 {
        self.next_pid += 1;
        self.next_pid
    }

    fn take_fault(&mut self, matches: impl Fn(&Fault) -> bool) -> Option<Fault> {
        let index = self.faults.iter().position(matches)?;
        Some(self.faults.remove(index))
    }

    /// Whether a process (other than an incoming migration, whose images stay inactive
    /// until it resumes) holds `pool/volume` open on any host.
    fn volume_in_use(&self, pool: &str, volume: &str) -> bool {
        self.hosts
            .values()
            .flat_map(|vms| vms.values())
            .any(|machine| {
                machine.state != VmState::Incoming
                    && machine
                        .spec
                        .disks
                        .iter()
                        .any(|disk| disk.pool == pool && disk.volume == volume)
            })
    }
}
