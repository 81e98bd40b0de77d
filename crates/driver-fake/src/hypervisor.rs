//! The fake [`Hypervisor`]: one driver object per host of a [`FakeWorld`], adopting VMs the way the QEMU driver does.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Mutex;

use hafen_driver_api::hypervisor::{
    AdoptVmError, AwaitIncomingError, DriverError, FinishMigrationError, Hypervisor,
    IncomingMigration, KillVmError, ListVmsError, MigrateVmError, MigrationReport,
    OutgoingMigration, PrepareIncomingError, StartVmError, StatusVmError, StopOutcome, StopRequest,
    StopVmError, VmSpec, VmState, VmStatus,
};

use crate::{FakeGuest, FakeVm, FakeWorld, Fault, WorldState};

#[derive(Debug)]
pub struct FakeHypervisor {
    world: FakeWorld,
    host: String,
    pools: BTreeSet<String>,
    /// VMs this object manages: those it started or adopted.
    adopted: Mutex<BTreeSet<String>>,
}

impl FakeHypervisor {
    pub(crate) fn new(world: FakeWorld, host: String, pools: BTreeSet<String>) -> FakeHypervisor {
        FakeHypervisor {
            world,
            host,
            pools,
            adopted: Mutex::new(BTreeSet::new()),
        }
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    fn is_adopted(&self, name: &str) -> bool {
        self.adopted_set().contains(name)
    }

    fn adopted_set(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.adopted
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Checks a spec against this host as the QEMU driver does, in the same order.
    fn check_startable(
        &self,
        state: &WorldState,
        spec: &VmSpec,
        check_locks: bool,
    ) -> Result<(), StartVmError> {
        spec.validate()?;
        if self.vm(state, &spec.name).is_some() {
            return Err(StartVmError::AlreadyRunning {
                name: spec.name.clone(),
            });
        }
        for disk in &spec.disks {
            let volumes = state
                .pools
                .get(&disk.pool)
                .filter(|_| self.pools.contains(&disk.pool))
                .ok_or_else(|| StartVmError::UnknownPool {
                    pool: disk.pool.clone(),
                })?;
            let volume = volumes
                .get(&disk.volume)
                .ok_or_else(|| StartVmError::MissingVolume {
                    pool: disk.pool.clone(),
                    volume: disk.volume.clone(),
                })?;
            if volume.format != disk.format {
                return Err(StartVmError::FormatMismatch {
                    pool: disk.pool.clone(),
                    volume: disk.volume.clone(),
                    expected: disk.format,
                    actual: volume.format,
                });
            }
            if check_locks && state.volume_in_use(&disk.pool, &disk.volume) {
                return Err(StartVmError::VolumeLocked {
                    pool: disk.pool.clone(),
                    volume: disk.volume.clone(),
                    detail: "another fake vm holds the write lock".to_string(),
                });
            }
        }
        Ok(())
    }

    fn vm<'a>(&self, state: &'a WorldState, name: &str) -> Option<&'a FakeVm> {
        state.hosts.get(&self.host)?.get(name)
    }

    fn vm_mut<'a>(&self, state: &'a mut WorldState, name: &str) -> Option<&'a mut FakeVm> {
        state.hosts.get_mut(&self.host)?.get_mut(name)
    }

    fn insert(&self, state: &mut WorldState, machine: FakeVm) {
        let name = machine.spec.name.clone();
        state
            .hosts
            .entry(self.host.clone())
            .or_default()
            .insert(name.clone(), machine);
        self.adopted_set().insert(name);
    }

    fn remove(&self, state: &mut WorldState, name: &str) -> Option<FakeVm> {
        let host = self.host.clone();
        state
            .listeners
            .retain(|_, (listener_host, vm)| !(listener_host == &host && vm == name));
        self.adopted_set().remove(name);
        state.hosts.get_mut(&self.host)?.remove(name)
    }

    fn status_of(&self, state: &WorldState, name: &str) -> VmStatus {
        match self.vm(state, name) {
            Some(machine) => VmStatus {
                name: name.to_string(),
                state: machine.state,
                pid: Some(machine.pid),
            },
            None => VmStatus {
                name: name.to_string(),
                state: VmState::Stopped,
                pid: None,
            },
        }
    }
}

impl Hypervisor for FakeHypervisor {
    async fn start(&self, spec: &VmSpec) -> Result<VmStatus, StartVmError> {
        let mut state = self.world.lock();
        self.check_startable(&state, spec, true)?;
        let name = spec.name.clone();
        if let Some(Fault::StartFails { reason, .. }) =
            state.take_fault(|fault| matches!(fault, Fault::StartFails { vm, .. } if *vm == name))
        {
            return Err(DriverError::Failed {
                what: format!("start of vm {name}"),
                reason,
            }
            .into());
        }
        let machine = FakeVm {
            spec: spec.clone(),
            state: VmState::Running,
            pid: state.new_pid(),
            guest: FakeGuest {
                boot_id: state.new_boot_id(),
                counter: 0,
            },
        };
        self.insert(&mut state, machine);
        Ok(self.status_of(&state, &name))
    }

    async fn stop(&self, name: &str, _request: StopRequest) -> Result<StopOutcome, StopVmError> {
        let mut state = self.world.lock();
        if self.vm(&state, name).is_none() {
            return Ok(StopOutcome::AlreadyStopped);
        }
        if !self.is_adopted(name) {
            return Err(StopVmError::NotAdopted {
                name: name.to_string(),
            });
        }
        let ignored = state
            .take_fault(|fault| matches!(fault, Fault::IgnoreAcpi { vm } if vm == name))
            .is_some();
        self.remove(&mut state, name);
        Ok(if ignored {
            StopOutcome::Quit
        } else {
            StopOutcome::PoweredOff
        })
    }

    async fn kill(&self, name: &str) -> Result<(), KillVmError> {
        let mut state = self.world.lock();
        self.remove(&mut state, name);
        Ok(())
    }

    async fn status(&self, name: &str) -> Result<VmStatus, StatusVmError> {
        let mut state = self.world.lock();
        if self.vm(&state, name).is_none() {
            return Ok(self.status_of(&state, name));
        }
        if !self.is_adopted(name) {
            return Err(StatusVmError::NotAdopted {
                name: name.to_string(),
            });
        }
        if state
            .take_fault(|fault| matches!(fault, Fault::Unresponsive { vm } if vm == name))
            .is_some()
        {
            return Err(StatusVmError::Unresponsive {
                name: name.to_string(),
                reason: "injected fault".to_string(),
            });
        }
        Ok(self.status_of(&state, name))
    }

    async fn list(&self) -> Result<Vec<String>, ListVmsError> {
        let state = self.world.lock();
        Ok(state
            .hosts
            .get(&self.host)
            .map(|vms| vms.keys().cloned().collect())
            .unwrap_or_default())
    }

    async fn adopt(&self, name: &str) -> Result<VmStatus, AdoptVmError> {
        let state = self.world.lock();
        if self.vm(&state, name).is_none() {
            return Err(AdoptVmError::NotRunning {
                name: name.to_string(),
            });
        }
        self.adopted_set().insert(name.to_string());
        Ok(self.status_of(&state, name))
    }

    async fn prepare_incoming(
        &self,
        spec: &VmSpec,
        listen: SocketAddr,
    ) -> Result<IncomingMigration, PrepareIncomingError> {
        let mut state = self.world.lock();
        // The source holds the shared volumes; an incoming VM opens them inactive.
        self.check_startable(&state, spec, false)?;
        let mut address = listen;
        if address.port() == 0 {
            address.set_port(state.next_port);
            state.next_port = state.next_port.wrapping_add(1).max(49152);
        }
        if state.listeners.contains_key(&address) {
            return Err(PrepareIncomingError::Listen {
                name: spec.name.clone(),
                address,
                reason: "address already in use".to_string(),
            });
        }
        let machine = FakeVm {
            spec: spec.clone(),
            state: VmState::Incoming,
            pid: state.new_pid(),
            // Replaced by the source's guest when the state arrives.
            guest: FakeGuest {
                boot_id: String::new(),
                counter: 0,
            },
        };
        self.insert(&mut state, machine);
        state
            .listeners
            .insert(address, (self.host.clone(), spec.name.clone()));
        Ok(IncomingMigration { address })
    }

    async fn await_incoming(&self, name: &str, _timeout_ms: u64) -> Result<(), AwaitIncomingError> {
        let state = self.world.lock();
        match self.vm(&state, name).map(|machine| machine.state) {
            Some(VmState::Running) => Ok(()),
            Some(VmState::Incoming) => Err(AwaitIncomingError::Failed {
                name: name.to_string(),
                reason: "no migration state arrived".to_string(),
            }),
            _ => Err(AwaitIncomingError::NotIncoming {
                name: name.to_string(),
            }),
        }
    }

    async fn migrate_outgoing(
        &self,
        name: &str,
        migration: OutgoingMigration,
    ) -> Result<(), MigrateVmError> {
        let mut state = self.world.lock();
        let guest = match self.vm(&state, name) {
            None => {
                return Err(MigrateVmError::NotRunning {
                    name: name.to_string(),
                });
            }
            Some(_) if !self.is_adopted(name) => {
                return Err(MigrateVmError::NotAdopted {
                    name: name.to_string(),
                });
            }
            Some(machine) if machine.state != VmState::Running => {
                return Err(MigrateVmError::NotRunning {
                    name: name.to_string(),
                });
            }
            Some(machine) => machine.guest.clone(),
        };
        let Some((target_host, target_vm)) = state.listeners.get(&migration.target).cloned() else {
            return Err(MigrateVmError::TargetUnreachable {
                name: name.to_string(),
                target: migration.target,
                reason: "connection refused".to_string(),
            });
        };
        if state
            .take_fault(
                |fault| matches!(fault, Fault::DestinationDiesDuringMigration { vm } if vm == name),
            )
            .is_some()
        {
            if let Some(vms) = state.hosts.get_mut(&target_host) {
                vms.remove(&target_vm);
            }
            state.listeners.remove(&migration.target);
            return Err(MigrateVmError::Failed {
                name: name.to_string(),
                reason: "the destination closed the connection".to_string(),
            });
        }
        state.listeners.remove(&migration.target);
        if let Some(destination) = state
            .hosts
            .get_mut(&target_host)
            .and_then(|vms| vms.get_mut(&target_vm))
        {
            destination.guest = guest;
            destination.state = VmState::Running;
        }
        if let Some(source) = self.vm_mut(&mut state, name) {
            source.state = VmState::MigratedAway;
        }
        Ok(())
    }

    async fn complete_outgoing(&self, name: &str) -> Result<MigrationReport, FinishMigrationError> {
        let mut state = self.world.lock();
        match self.vm(&state, name) {
            Some(machine) if machine.state == VmState::MigratedAway => {}
            _ => {
                return Err(FinishMigrationError::NotMigrated {
                    name: name.to_string(),
                });
            }
        }
        self.remove(&mut state, name);
        Ok(state.migration_report)
    }

    async fn abort_outgoing(&self, name: &str) -> Result<(), FinishMigrationError> {
        let mut state = self.world.lock();
        match self.vm_mut(&mut state, name) {
            Some(machine) if machine.state == VmState::MigratedAway => {
                machine.state = VmState::Running;
                Ok(())
            }
            _ => Err(FinishMigrationError::NotMigrated {
                name: name.to_string(),
            }),
        }
    }
}
