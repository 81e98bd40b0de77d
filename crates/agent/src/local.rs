//! The local agent: model VM configurations in, hypervisor operations out.

use crate::lease::Lease;
use crate::protocol::{AgentAnswer, AgentRequest, Pools};
use crate::resource_drivers::ResourceDrivers;
use hafen_driver_api::hypervisor::{
    BootSpec, DiskBus, DiskCache, DiskSpec, Hypervisor, MigrationReport, NicBackend, NicSpec,
    OutgoingMigration, StopRequest, VmSpec, VmState,
};
use hafen_driver_api::resource::ResourceAgent;
use hafen_driver_api::storage::{CreateVolume, StoragePool, VolumeFormat};
use hafen_driver_qemu::{DirPool, QemuConfig, QemuDriver};
use hafen_model::resource::{FailureReaction, OcfResourceConfig, VmBoot, VmConfig};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// Why the agent could not act.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Driver(String),
    #[error(
        "refusing {name}: assignment generation {requested} is older than {seen}, already seen here"
    )]
    StaleGeneration {
        name: String,
        requested: u64,
        seen: u64,
    },
    #[error("unknown pool {0:?}")]
    UnknownPool(String),
    #[error(
        "refusing to start {name}: node {node} holds no lease (no acknowledged heartbeat from a quorate leader); it starts nothing until the leader assigns work again"
    )]
    NoLease { name: String, node: String },
}

/// The driver with the pool set it was made for.
struct Loaded {
    pools: BTreeMap<String, String>,
    driver: Arc<QemuDriver>,
}

/// One node's agent.
pub struct Agent {
    node: String,
    /// Runs resource agents, each by its class's driver (OCF, systemd).
    resource_agents: ResourceDrivers,
    run_dir: PathBuf,
    /// The address migration streams arrive on (this node's advertised IP).
    migration_ip: IpAddr,
    loaded: Mutex<Option<Loaded>>,
    /// The newest assignment generation seen per VM (second line of defense against stale starts).
    generations: std::sync::Mutex<BTreeMap<String, u64>>,
    /// Managed resources run here only while this is held.
    lease: Arc<Lease>,
    /// The resource-agent resources this agent started (or found running when asked),
    /// with their configuration, so it can stop them when it self-fences.
    managed_ocf: std::sync::Mutex<BTreeMap<String, OcfResourceConfig>>,
    /// Sources of finished migrations being ended in the background, by VM name; each
    /// receiver turns true once its process is gone.
    ending: std::sync::Mutex<BTreeMap<String, tokio::sync::watch::Receiver<bool>>>,
}

/// How long a start waits for the lease of a node that just joined or regained contact.
const LEASE_WAIT: Duration = Duration::from_secs(2);
/// Bound on waiting for a migration's source to end; the driver's own bound on a SIGKILL
/// taking effect is shorter.
const ENDING_WAIT: Duration = Duration::from_secs(30);

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Agent({})", self.node)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OcfOperation {
    Start,
    Stop,
    Monitor,
    Probe,
    Promote,
    Demote,
}

/// The driver's view of a configured OCF resource.
fn ocf_instance(
    name: &str,
    ocf: &OcfResourceConfig,
) -> Result<hafen_driver_api::resource::ResourceInstance, AgentError> {
    let agent: hafen_driver_api::resource::AgentRef = ocf
        .agent
        .parse()
        .map_err(|error| AgentError::Driver(format!("{error}")))?;
    let mut instance = hafen_driver_api::resource::ResourceInstance::new(name, agent);
    instance.parameters = ocf.parameters.clone();
    Ok(instance)
}

/// The driver spec of a configured VM.
pub fn vm_spec(name: &str, vm: &VmConfig) -> VmSpec {
    VmSpec {
        name: name.to_string(),
        uuid: vm.uuid.clone(),
        vcpus: vm.vcpus,
        memory_mib: vm.memory_mib,
        machine: vm.machine.clone(),
        cpu_model: vm.cpu_model.clone(),
        disks: vm
            .disks
            .iter()
            .map(|disk| DiskSpec {
                pool: disk.pool.clone(),
                volume: disk.volume.clone(),
                format: if disk.format == "raw" {
                    VolumeFormat::Raw
                } else {
                    VolumeFormat::Qcow2
                },
                bus: DiskBus::Virtio,
                // Shared directories may live on tmpfs in tests; writeback works everywhere
                // and QEMU flushes on migration hand-over.
                cache: DiskCache::Writeback,
            })
            .collect(),
        nics: vm
            .nics
            .iter()
            .map(|nic| NicSpec {
                mac: nic.mac.clone(),
                backend: NicBackend::Tap {
                    bridge: nic.bridge.clone(),
                },
            })
            .collect(),
        boot: match &vm.boot {
            VmBoot::Disk => BootSpec::Disk,
            VmBoot::Kernel {
                kernel,
                initrd,
                cmdline,
            } => BootSpec::Kernel {
                kernel: PathBuf::from(kernel),
                initrd: initrd.as_ref().map(PathBuf::from),
                cmdline: cmdline.clone(),
            },
        },
        vnc: None,
    }
}

fn state_name(state: VmState) -> &'static str {
    match state {
        VmState::Stopped => "stopped",
        VmState::Running => "running",
        VmState::Paused => "paused",
        VmState::Incoming => "incoming",
        VmState::MigratedAway => "migrated_away",
        VmState::ShuttingDown => "shutting_down",
        VmState::Crashed => "crashed",
    }
}

fn failed(error: impl std::fmt::Display) -> AgentAnswer {
    AgentAnswer::Failed {
        error: error.to_string(),
        reaction: None,
    }
}

impl Agent {
    pub fn new(node: &str, run_dir: &Path, migration_ip: IpAddr) -> Self {
        // Agents' state files live beside the VMs' run directory, one per node.
        let ocf_state = run_dir.parent().unwrap_or(run_dir).join("ocf");
        Self {
            node: node.to_string(),
            resource_agents: ResourceDrivers {
                ocf: hafen_driver_ocf::OcfDriver::new(hafen_driver_ocf::OcfConfig::new(
                    ocf_state, node,
                )),
                systemd: hafen_driver_systemd::SystemdDriver::new(
                    hafen_driver_systemd::SystemdConfig::new(node),
                ),
            },
            run_dir: run_dir.to_path_buf(),
            migration_ip,
            loaded: Mutex::new(None),
            generations: std::sync::Mutex::new(BTreeMap::new()),
            lease: Arc::default(),
            managed_ocf: std::sync::Mutex::new(BTreeMap::new()),
            ending: std::sync::Mutex::new(BTreeMap::new()),
        }
    }

    pub fn lease(&self) -> &Arc<Lease> {
        &self.lease
    }

    /// Refuses to start anything without a lease: a node cut off from the quorate leader
    /// may already have been fenced and its resources recovered elsewhere.
    async fn require_lease(&self, name: &str) -> Result<(), AgentError> {
        if self.lease.holds(std::time::Instant::now()) || self.lease.wait_held(LEASE_WAIT).await {
            Ok(())
        } else {
            Err(AgentError::NoLease {
                name: name.to_string(),
                node: self.node.clone(),
            })
        }
    }

    /// Self-fencing: kills every QEMU process this node manages and stops every managed
    /// resource, at once and in parallel. Failures are logged; there is nobody to tell.
    pub async fn self_fence(&self) {
        let vms = async {
            let driver = match self.current_driver().await {
                Ok(driver) => driver,
                Err(error) => {
                    tracing::error!(%error, "self-fencing: no hypervisor driver");
                    return;
                }
            };
            let names = match driver.list().await {
                Ok(names) => names,
                Err(error) => {
                    tracing::error!(%error, "self-fencing: cannot list VMs");
                    return;
                }
            };
            let kills = names.iter().map(|name| {
                let driver = driver.clone();
                async move {
                    let _ = driver.adopt(name).await;
                    match driver.kill(name).await {
                        Ok(()) => tracing::warn!(vm = %name, "self-fencing: VM killed"),
                        Err(error) => {
                            tracing::error!(vm = %name, %error, "self-fencing: kill failed")
                        }
                    }
                }
            });
            futures::future::join_all(kills).await;
        };
        let resources: Vec<(String, OcfResourceConfig)> = self
            .managed_ocf
            .lock()
            .expect("managed lock poisoned")
            .iter()
            .map(|(name, ocf)| (name.clone(), ocf.clone()))
            .collect();
        let stops = resources.iter().map(|(name, ocf)| async move {
            match self.ocf_operation(name, ocf, OcfOperation::Stop).await {
                Ok(AgentAnswer::Failed { error, .. }) | Err(AgentError::Driver(error)) => {
                    tracing::error!(resource = %name, %error, "self-fencing: stop failed")
                }
                Ok(_) => tracing::warn!(resource = %name, "self-fencing: resource stopped"),
                Err(error) => {
                    tracing::error!(resource = %name, %error, "self-fencing: stop failed")
                }
            }
        });
        futures::future::join(vms, futures::future::join_all(stops)).await;
    }

    /// The driver as last made (for the pools of the last request), or one without pools.
    async fn current_driver(&self) -> Result<Arc<QemuDriver>, AgentError> {
        if let Some(loaded) = self.loaded.lock().await.as_ref() {
            return Ok(loaded.driver.clone());
        }
        self.driver(&Pools::new()).await
    }

    /// The driver for `pools`, made on first use and remade when the pool set changes.
    async fn driver(&self, pools: &Pools) -> Result<Arc<QemuDriver>, AgentError> {
        let wanted: BTreeMap<String, String> = pools
            .values()
            .map(|pool| (pool.name.clone(), pool.path.clone()))
            .collect();
        let mut loaded = self.loaded.lock().await;
        if let Some(current) = loaded.as_ref()
            && current.pools == wanted
        {
            return Ok(current.driver.clone());
        }
        // Only one QMP client per VM: the old driver goes before the new one adopts.
        *loaded = None;
        let mut dir_pools = Vec::new();
        for (name, path) in &wanted {
            std::fs::create_dir_all(path)
                .map_err(|error| AgentError::Driver(format!("pool {name} at {path}: {error}")))?;
            dir_pools.push(
                DirPool::new(name, Path::new(path), Path::new("qemu-img"))
                    .map_err(|error| AgentError::Driver(error.to_string()))?,
            );
        }
        let driver = Arc::new(
            QemuDriver::new(QemuConfig::new(self.run_dir.clone()), dir_pools)
                .await
                .map_err(|error| AgentError::Driver(error.to_string()))?,
        );
        *loaded = Some(Loaded {
            pools: wanted,
            driver: driver.clone(),
        });
        Ok(driver)
    }

    fn check_generation(&self, name: &str, generation: u64) -> Result<(), AgentError> {
        let mut generations = self.generations.lock().expect("generation lock poisoned");
        let seen = generations.entry(name.to_string()).or_insert(0);
        if generation < *seen {
            return Err(AgentError::StaleGeneration {
                name: name.to_string(),
                requested: generation,
                seen: *seen,
            });
        }
        *seen = generation;
        Ok(())
    }

    /// Makes the driver now (probing KVM once), so the first VM operation pays no probe.
    pub async fn warm_up(&self) {
        if let Err(error) = self.driver(&Pools::new()).await {
            tracing::warn!(%error, "the hypervisor driver is not usable here");
        }
    }

    /// Performs one request; failures come back as [`AgentAnswer::Failed`] naming the cause.
    pub async fn handle(&self, request: AgentRequest) -> AgentAnswer {
        match self.perform(request).await {
            Ok(answer) => answer,
            Err(error) => failed(error),
        }
    }

    /// The VM a request acts on, for the requests that must not meet a migration's source
    /// still being ended (kill does not wait: it ends that copy too).
    fn vm_named(request: &AgentRequest) -> Option<&str> {
        match request {
            AgentRequest::Start { name, .. }
            | AgentRequest::Stop { name, .. }
            | AgentRequest::Status { name, .. }
            | AgentRequest::PrepareIncoming { name, .. }
            | AgentRequest::AwaitIncoming { name, .. }
            | AgentRequest::MigrateOutgoing { name, .. }
            | AgentRequest::CompleteOutgoing { name, .. }
            | AgentRequest::AbortOutgoing { name, .. } => Some(name),
            _ => None,
        }
    }

    /// Waits (bounded) until the source of a finished migration of `name` is gone, so
    /// whatever follows for that VM here (its migration back, say) never meets it.
    async fn wait_ended(&self, name: &str) {
        let pending = self
            .ending
            .lock()
            .expect("ending lock poisoned")
            .get(name)
            .cloned();
        let Some(mut ended) = pending else {
            return;
        };
        if tokio::time::timeout(ENDING_WAIT, ended.wait_for(|gone| *gone))
            .await
            .is_err()
        {
            tracing::error!(vm = %name, "the source of a finished migration is still not gone");
        }
    }

    /// Ends the paused source of a finished migration in the background (the driver kills
    /// that copy, which holds nothing any more), so the leader need not wait for the
    /// process to exit. Requests
    /// naming the VM wait for the end first ([`Agent::wait_ended`]), which also keeps
    /// anything from resuming this copy before the driver has marked it as ending.
    fn end_outgoing(&self, name: String, driver: Arc<QemuDriver>) {
        let (gone, ended) = tokio::sync::watch::channel(false);
        {
            let mut ending = self.ending.lock().expect("ending lock poisoned");
            ending.retain(|_, ended| !*ended.borrow());
            ending.insert(name.clone(), ended);
        }
        tokio::spawn(async move {
            if let Err(error) = driver.complete_outgoing(&name).await {
                // The destination runs the guest: this copy must go whatever state it is in.
                tracing::error!(vm = %name, %error, "the source of a finished migration did not end; killing it");
                let _ = driver.adopt(&name).await;
                if let Err(error) = driver.kill(&name).await {
                    tracing::error!(vm = %name, %error, "the source of a finished migration cannot be killed");
                }
            }
            let _ = gone.send(true);
        });
    }

    async fn perform(&self, request: AgentRequest) -> Result<AgentAnswer, AgentError> {
        let driver_error = |error: &dyn std::fmt::Display| AgentError::Driver(error.to_string());
        if let Some(name) = Self::vm_named(&request) {
            self.wait_ended(name).await;
        }
        Ok(match request {
            AgentRequest::Start {
                name,
                generation,
                vm,
                pools,
            } => {
                self.require_lease(&name).await?;
                self.check_generation(&name, generation)?;
                let driver = self.driver(&pools).await?;
                let status = driver
                    .start(&vm_spec(&name, &vm))
                    .await
                    .map_err(|e| driver_error(&e))?;
                AgentAnswer::Vm {
                    state: state_name(status.state).to_string(),
                    pid: status.pid,
                }
            }
            AgentRequest::Stop {
                name,
                timeout_ms,
                pools,
            } => {
                let driver = self.driver(&pools).await?;
                // Adopt first: a VM started by an earlier daemon is stopped gracefully too.
                let _ = driver.adopt(&name).await;
                driver
                    .stop(&name, StopRequest { timeout_ms })
                    .await
                    .map_err(|e| driver_error(&e))?;
                AgentAnswer::Done
            }
            AgentRequest::Kill { name, pools } => {
                self.driver(&pools)
                    .await?
                    .kill(&name)
                    .await
                    .map_err(|e| driver_error(&e))?;
                AgentAnswer::Done
            }
            AgentRequest::Status { name, pools } => {
                let driver = self.driver(&pools).await?;
                let _ = driver.adopt(&name).await;
                let status = driver.status(&name).await.map_err(|e| driver_error(&e))?;
                AgentAnswer::Vm {
                    state: state_name(status.state).to_string(),
                    pid: status.pid,
                }
            }
            AgentRequest::PrepareIncoming {
                name,
                generation,
                vm,
                pools,
            } => {
                tracing::debug!(vm = %name, "preparing an incoming migration");
                self.require_lease(&name).await?;
                self.check_generation(&name, generation)?;
                let driver = self.driver(&pools).await?;
                let incoming = driver
                    .prepare_incoming(&vm_spec(&name, &vm), SocketAddr::new(self.migration_ip, 0))
                    .await
                    .map_err(|e| driver_error(&e))?;
                AgentAnswer::Incoming {
                    address: incoming.address,
                }
            }
            AgentRequest::AwaitIncoming {
                name,
                timeout_ms,
                pools,
            } => {
                self.driver(&pools)
                    .await?
                    .await_incoming(&name, timeout_ms)
                    .await
                    .map_err(|e| driver_error(&e))?;
                AgentAnswer::Done
            }
            AgentRequest::MigrateOutgoing {
                name,
                target,
                max_bandwidth_bytes_per_second,
                downtime_limit_ms,
                timeout_ms,
                pools,
            } => {
                let driver = self.driver(&pools).await?;
                let _ = driver.adopt(&name).await;
                driver
                    .migrate_outgoing(
                        &name,
                        OutgoingMigration {
                            target,
                            max_bandwidth_bytes_per_second,
                            downtime_limit_ms,
                            timeout_ms,
                        },
                    )
                    .await
                    .map_err(|e| driver_error(&e))?;
                // Sent and paused for good: a failure to read the figures must not look
                // like a failed transfer (the leader would discard the destination).
                let report = driver.outgoing_report(&name).await.unwrap_or_else(|error| {
                    tracing::warn!(vm = %name, %error, "no figures of the finished migration");
                    MigrationReport::default()
                });
                AgentAnswer::Migrated {
                    total_time_ms: report.total_time_ms,
                    downtime_ms: report.downtime_ms,
                    transferred_bytes: report.transferred_bytes,
                }
            }
            AgentRequest::CompleteOutgoing { name, pools } => {
                let driver = self.driver(&pools).await?;
                self.end_outgoing(name, driver);
                AgentAnswer::Done
            }
            AgentRequest::AbortOutgoing { name, pools } => {
                self.driver(&pools)
                    .await?
                    .abort_outgoing(&name)
                    .await
                    .map_err(|e| driver_error(&e))?;
                AgentAnswer::Done
            }
            AgentRequest::CreateVolume {
                pool,
                volume,
                size_mib,
                base,
                pools,
            } => {
                let pool = self.pool(&pools, &pool)?;
                match base {
                    Some(base) => {
                        pool.clone_linked(&base, &volume)
                            .await
                            .map_err(|e| driver_error(&e))?;
                        let bytes = size_mib * 1024 * 1024;
                        let info = pool.list().await.map_err(|e| driver_error(&e))?;
                        let current = info
                            .iter()
                            .find(|v| v.name == volume)
                            .map(|v| v.size_bytes)
                            .unwrap_or(0);
                        if bytes > current {
                            pool.resize(&volume, bytes)
                                .await
                                .map_err(|e| driver_error(&e))?;
                        }
                    }
                    None => {
                        pool.create(CreateVolume {
                            name: &volume,
                            format: VolumeFormat::Qcow2,
                            size_bytes: size_mib * 1024 * 1024,
                        })
                        .await
                        .map_err(|e| driver_error(&e))?;
                    }
                }
                AgentAnswer::Done
            }
            AgentRequest::OcfStart {
                name,
                generation,
                ocf,
            } => {
                self.require_lease(&name).await?;
                self.check_generation(&name, generation)?;
                self.ocf_operation(&name, &ocf, OcfOperation::Start).await?
            }
            AgentRequest::OcfPromote { name, ocf } => {
                self.require_lease(&name).await?;
                self.ocf_operation(&name, &ocf, OcfOperation::Promote)
                    .await?
            }
            AgentRequest::OcfDemote { name, ocf } => {
                self.ocf_operation(&name, &ocf, OcfOperation::Demote)
                    .await?
            }
            AgentRequest::OcfStop { name, ocf } => {
                self.ocf_operation(&name, &ocf, OcfOperation::Stop).await?
            }
            AgentRequest::OcfMonitor { name, ocf, probe } => {
                let operation = if probe {
                    OcfOperation::Probe
                } else {
                    OcfOperation::Monitor
                };
                self.ocf_operation(&name, &ocf, operation).await?
            }
            AgentRequest::OcfCheck { name, ocf } => {
                let instance = ocf_instance(&name, &ocf)?;
                let metadata = hafen_driver_api::resource::check_configuration(
                    &self.resource_agents,
                    &instance,
                )
                .await
                .map_err(|e| driver_error(&e))?;
                AgentAnswer::Metadata {
                    metadata: serde_json::to_value(metadata).unwrap_or_default(),
                }
            }
            AgentRequest::OcfMetadata { agent } => {
                let agent: hafen_driver_api::resource::AgentRef = agent
                    .parse()
                    .map_err(|e| AgentError::Driver(format!("{e}")))?;
                let metadata = self
                    .resource_agents
                    .meta_data(&agent)
                    .await
                    .map_err(|e| driver_error(&e))?;
                AgentAnswer::Metadata {
                    metadata: serde_json::to_value(metadata).unwrap_or_default(),
                }
            }
            AgentRequest::OcfListAgents => {
                let agents = self
                    .resource_agents
                    .list_agents()
                    .await
                    .map_err(|e| driver_error(&e))?;
                AgentAnswer::Agents {
                    agents: agents.iter().map(ToString::to_string).collect(),
                }
            }
            AgentRequest::DeleteVolume {
                pool,
                volume,
                pools,
            } => {
                self.pool(&pools, &pool)?
                    .delete(&volume)
                    .await
                    .map_err(|e| driver_error(&e))?;
                AgentAnswer::Done
            }
        })
    }

    /// Runs one operation of a resource agent (OCF or systemd, by the agent's class) and
    /// reports the resource's state as the agent sees it.
    async fn ocf_operation(
        &self,
        name: &str,
        ocf: &OcfResourceConfig,
        operation: OcfOperation,
    ) -> Result<AgentAnswer, AgentError> {
        use hafen_driver_api::resource::{AgentResult, OperationOptions, RunningState};
        let instance = ocf_instance(name, ocf)?;
        let options = OperationOptions::with_timeout_ms(ocf.operation_timeout_ms);
        let outcome = match operation {
            OcfOperation::Start => self.resource_agents.start(&instance, &options).await,
            OcfOperation::Stop => self.resource_agents.stop(&instance, &options).await,
            OcfOperation::Monitor => {
                self.resource_agents
                    .monitor(
                        &instance,
                        &options.clone().with_interval_ms(ocf.monitor_interval_ms),
                    )
                    .await
            }
            OcfOperation::Probe => self.resource_agents.monitor(&instance, &options).await,
            OcfOperation::Promote => self.resource_agents.promote(&instance, &options).await,
            OcfOperation::Demote => self.resource_agents.demote(&instance, &options).await,
        }
        .map_err(|error| AgentError::Driver(error.to_string()))?;
        let message = outcome.message();
        self.track_ocf(name, ocf, operation, &outcome);
        let reaction =
            outcome
                .reaction_against(AgentResult::Success)
                .map(|reaction| match reaction {
                    hafen_driver_api::resource::Reaction::Soft => FailureReaction::Soft,
                    hafen_driver_api::resource::Reaction::Hard => FailureReaction::Hard,
                    hafen_driver_api::resource::Reaction::Fatal => FailureReaction::Fatal,
                });
        match operation {
            OcfOperation::Start
            | OcfOperation::Stop
            | OcfOperation::Promote
            | OcfOperation::Demote => {
                if reaction.is_some() {
                    return Ok(AgentAnswer::Failed {
                        error: message,
                        reaction,
                    });
                }
                let state = match operation {
                    OcfOperation::Stop => "stopped",
                    OcfOperation::Promote => "promoted",
                    _ => "running",
                };
                Ok(AgentAnswer::State {
                    state: state.to_string(),
                    message,
                    reaction: None,
                })
            }
            OcfOperation::Monitor | OcfOperation::Probe => {
                let state = match outcome.result.running_state() {
                    RunningState::Started => "running",
                    RunningState::Promoted => "promoted",
                    RunningState::Stopped => "stopped",
                    RunningState::Failed => "failed",
                    RunningState::Unknown => "unknown",
                };
                let running = matches!(state, "running" | "promoted");
                Ok(AgentAnswer::State {
                    state: state.to_string(),
                    message,
                    reaction: reaction.filter(|_| !running),
                })
            }
        }
    }

    /// Remembers which resources run here, for self-fencing.
    fn track_ocf(
        &self,
        name: &str,
        ocf: &OcfResourceConfig,
        operation: OcfOperation,
        outcome: &hafen_driver_api::resource::OperationOutcome,
    ) {
        use hafen_driver_api::resource::{AgentResult, RunningState};
        let mut managed = self.managed_ocf.lock().expect("managed lock poisoned");
        let running = match operation {
            OcfOperation::Start | OcfOperation::Promote | OcfOperation::Demote => true,
            OcfOperation::Stop => {
                if outcome.reaction_against(AgentResult::Success).is_none() {
                    managed.remove(name);
                }
                return;
            }
            OcfOperation::Monitor | OcfOperation::Probe => {
                !matches!(outcome.result.running_state(), RunningState::Stopped)
            }
        };
        if running {
            managed.insert(name.to_string(), ocf.clone());
        } else {
            managed.remove(name);
        }
    }

    fn pool(&self, pools: &Pools, name: &str) -> Result<DirPool, AgentError> {
        let config = pools
            .get(name)
            .ok_or_else(|| AgentError::UnknownPool(name.to_string()))?;
        std::fs::create_dir_all(&config.path).map_err(|error| {
            AgentError::Driver(format!("pool {name} at {}: {error}", config.path))
        })?;
        DirPool::new(name, Path::new(&config.path), Path::new("qemu-img"))
            .map_err(|error| AgentError::Driver(error.to_string()))
    }
}
