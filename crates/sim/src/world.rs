//! The simulated cluster: hosts running node controllers on fake hardware, a modelled
//! replicated log with a leader running the cluster controller, a seeded network, injected
//! faults, and the invariant checks run after every step.

use std::collections::{BTreeMap, BTreeSet};

use hafen_controller::{
    Action, ClusterController, ClusterSnapshot, ControllerConfig, DriverCommand, DriverKind,
    DriverOutcome, FenceConfirmation, FenceResult, FencingMethod, FencingState, HostMode,
    HostRecord, HostRole, NodeAction, NodeConfig, NodeController, Operation, Phase, Severity,
    Transition, apply_transition, scheduler_view,
};
use hafen_scheduler::{Request, schedule};

use crate::rng::Rng;

/// One simulated host.
#[derive(Clone, Debug, PartialEq)]
pub struct HostSpec {
    pub name: String,
    pub role: HostRole,
    pub fencing_method: FencingMethod,
    pub watchdog_timeout_ms: Option<u64>,
    pub cpu: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ResourceSpec {
    pub name: String,
    pub cpu: u64,
    pub allow_migrate: bool,
    pub migration_threshold: Option<u32>,
    /// Location preference (score 100) for this host.
    pub prefers: Option<String>,
    /// A mandatory ordering: this resource starts only after the named one runs.
    pub after: Option<String>,
    /// The group it belongs to; members are in the order of [`SimConfig::resources`].
    pub group: Option<String>,
}

/// A fault (or operator action) injected at a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Power loss: processes die; the host boots again after `reboot_after_ms`.
    Crash {
        host: usize,
        reboot_after_ms: u64,
    },
    /// Every process of the host freezes (agent and VMs) until `Resume`.
    Hang {
        host: usize,
    },
    Resume {
        host: usize,
    },
    /// Hosts in different groups cannot talk; hosts not listed are in group 0.
    Partition {
        groups: Vec<Vec<usize>>,
    },
    Heal,
    /// The host's fence device fails this many times.
    FenceFails {
        host: usize,
        times: u32,
    },
    /// The resource's monitor reports a failure this many times although it runs (a lying
    /// or flapping agent).
    MonitorFails {
        resource: String,
        times: u32,
    },
    /// The resource's start fails this many times (on any host).
    StartFails {
        resource: String,
        times: u32,
    },
    /// Starts and stops on the host take five times longer.
    Slow {
        host: usize,
    },
    /// The leader steps down; another is elected.
    LeaderChange,
    /// Operator: `node standby|online|maintenance`.
    SetMode {
        host: usize,
        mode: HostMode,
    },
    /// Operator: `node confirm-fenced`.
    ConfirmFenced {
        host: usize,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct NetworkConfig {
    pub min_delay_ms: u64,
    pub max_delay_ms: u64,
    /// Messages dropped, per thousand.
    pub drop_permille: u64,
}

/// Everything one run needs.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    pub hosts: Vec<HostSpec>,
    pub resources: Vec<ResourceSpec>,
    pub faults: Vec<(u64, Fault)>,
    pub network: NetworkConfig,
    /// Faults stop here: partitions heal, hung hosts resume, crashed hosts boot.
    pub faults_end_ms: u64,
    /// L1 is checked here: everything placeable runs.
    pub end_ms: u64,
    pub controller: ControllerConfig,
    pub node: NodeConfig,
    /// Random durations collapse to fixed ones and elections pick the lowest host: scripted
    /// scenarios pin exact timelines.
    pub fixed_timing: bool,
    pub record_log: bool,
}

/// A broken invariant, with when and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub at_ms: u64,
    pub invariant: &'static str,
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "{} at {} ms: {}",
            self.invariant, self.at_ms, self.detail
        )
    }
}

#[derive(Clone, Debug)]
enum ToHost {
    Operation(Operation),
    Ack(hafen_controller::HeartbeatAck),
}

#[derive(Clone, Debug)]
enum ToLeader {
    Heartbeat(hafen_controller::Heartbeat),
    Result(hafen_controller::OperationResult),
    Failure(hafen_controller::ResourceFailure),
}

#[derive(Clone, Debug)]
enum Event {
    NodeTick {
        host: usize,
        boot: u64,
    },
    LeaderTick {
        epoch: u64,
    },
    ToHost {
        from: usize,
        host: usize,
        message: ToHost,
    },
    ToLeader {
        from: usize,
        message: ToLeader,
    },
    DriverDone {
        host: usize,
        boot: u64,
        command: DriverCommand,
    },
    FenceDone {
        epoch: u64,
        action_id: u64,
        target: usize,
    },
    CommitApply {
        epoch: u64,
        transition: Transition,
    },
    SnapshotToLeader {
        epoch: u64,
    },
    Elect,
    Fault(Fault),
    FaultsEnd,
    Watchdog {
        host: usize,
        boot: u64,
    },
    Boot {
        host: usize,
    },
}

struct SimHost {
    spec: HostSpec,
    powered: bool,
    frozen: bool,
    /// Bumped on every boot: events of an earlier boot are void.
    boot: u64,
    node: NodeController,
    clock_offset_ms: u64,
    /// Processes: resource -> generation.
    processes: BTreeMap<String, u64>,
    /// The last start/stop/migrate command per resource; an older one completing is void.
    in_progress: BTreeMap<String, u64>,
    deferred: Vec<Event>,
    last_pet_ms: u64,
    watchdog_armed: bool,
    fence_failures: u32,
    slow: bool,
    group: usize,
}

pub struct World {
    config: SimConfig,
    now_ms: u64,
    rng: Rng,
    queue: BTreeMap<(u64, u64), Event>,
    sequence: u64,
    hosts: Vec<SimHost>,
    state: ClusterSnapshot,
    leader: Option<usize>,
    epoch: u64,
    controller: Option<ClusterController>,
    election_pending: bool,
    snapshot_pending: bool,
    /// The committed state as the leader's controller last saw it (its decisions are
    /// checked against what it knew).
    leader_view: ClusterSnapshot,
    monitor_failures: BTreeMap<String, u32>,
    start_failures: BTreeMap<String, u32>,
    faults_over: bool,
    pub violations: Vec<Violation>,
    pub log: Vec<String>,
    pub steps: u64,
}

const TICK_MS: u64 = 100;
const MAX_VIOLATIONS: usize = 20;

impl World {
    pub fn new(config: SimConfig) -> World {
        let mut rng = Rng::new(config.seed);
        let state = initial_state(&config);
        let hosts = config
            .hosts
            .iter()
            .map(|spec| SimHost {
                spec: spec.clone(),
                powered: true,
                frozen: false,
                boot: 1,
                node: NodeController::new(spec.name.clone(), node_config(&config, spec)),
                clock_offset_ms: if config.fixed_timing {
                    0
                } else {
                    rng.below(1_000_000)
                },
                processes: BTreeMap::new(),
                in_progress: BTreeMap::new(),
                deferred: Vec::new(),
                last_pet_ms: 0,
                watchdog_armed: false,
                fence_failures: 0,
                slow: false,
                group: 0,
            })
            .collect();
        let mut world = World {
            now_ms: 0,
            rng,
            queue: BTreeMap::new(),
            sequence: 0,
            hosts,
            state,
            leader: None,
            epoch: 0,
            controller: None,
            election_pending: false,
            snapshot_pending: false,
            leader_view: ClusterSnapshot::default(),
            monitor_failures: BTreeMap::new(),
            start_failures: BTreeMap::new(),
            faults_over: false,
            violations: Vec::new(),
            log: Vec::new(),
            steps: 0,
            config,
        };
        for host in 0..world.hosts.len() {
            let jitter = world.range(0, TICK_MS - 1);
            world.schedule(jitter, Event::NodeTick { host, boot: 1 });
        }
        for (at_ms, fault) in world.config.faults.clone() {
            world.schedule_at(at_ms, Event::Fault(fault));
        }
        let faults_end_ms = world.config.faults_end_ms;
        world.schedule_at(faults_end_ms, Event::FaultsEnd);
        world.election_pending = true;
        world.schedule(0, Event::Elect);
        world
    }

    /// Runs to the end and checks liveness there.
    pub fn run(&mut self) {
        while let Some((&(at_ms, sequence), _)) = self.queue.first_key_value() {
            if at_ms > self.config.end_ms || self.violations.len() >= MAX_VIOLATIONS {
                break;
            }
            let event = self.queue.remove(&(at_ms, sequence)).expect("first key");
            self.now_ms = at_ms;
            self.steps += 1;
            self.handle(event);
            self.check_step();
        }
        self.now_ms = self.config.end_ms;
        if self.violations.is_empty() {
            self.check_liveness();
        }
    }

    fn range(&mut self, low: u64, high: u64) -> u64 {
        if self.config.fixed_timing || high <= low {
            return low;
        }
        low + self.rng.below(high - low + 1)
    }

    fn chance(&mut self, permille: u64) -> bool {
        !self.config.fixed_timing && self.rng.below(1000) < permille
    }

    fn schedule(&mut self, delay_ms: u64, event: Event) {
        self.schedule_at(self.now_ms + delay_ms, event);
    }

    fn schedule_at(&mut self, at_ms: u64, event: Event) {
        self.sequence += 1;
        self.queue.insert((at_ms, self.sequence), event);
    }

    fn record(&mut self, line: impl FnOnce() -> String) {
        if self.config.record_log {
            let line = line();
            self.log.push(format!("{:>6} {line}", self.now_ms));
        }
    }

    fn violation(&mut self, invariant: &'static str, detail: String) {
        self.record(|| format!("VIOLATION {invariant}: {detail}"));
        self.violations.push(Violation {
            at_ms: self.now_ms,
            invariant,
            detail,
        });
    }

    fn up(&self, host: usize) -> bool {
        self.hosts[host].powered && !self.hosts[host].frozen
    }

    fn node_now(&self, host: usize) -> u64 {
        self.now_ms + self.hosts[host].clock_offset_ms
    }

    fn connected(&self, first: usize, second: usize) -> bool {
        self.up(first) && self.up(second) && self.hosts[first].group == self.hosts[second].group
    }

    /// The partition group holding a majority of voters that are up, if any.
    fn quorate_group(&self) -> Option<usize> {
        let voters = self.hosts.len();
        let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
        for (index, host) in self.hosts.iter().enumerate() {
            if self.up(index) {
                *counts.entry(host.group).or_default() += 1;
            }
        }
        counts
            .into_iter()
            .find(|(_, count)| *count * 2 > voters)
            .map(|(group, _)| group)
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::NodeTick { host, boot } => self.node_tick(host, boot),
            Event::LeaderTick { epoch } => {
                if epoch == self.epoch && self.controller.is_some() {
                    let now_ms = self.now_ms;
                    let actions = self.controller_mut().handle_tick(now_ms);
                    self.leader_actions(actions);
                    self.schedule(TICK_MS, Event::LeaderTick { epoch });
                }
            }
            Event::ToHost {
                from,
                host,
                message,
            } => self.deliver_to_host(from, host, message),
            Event::ToLeader { from, message } => self.deliver_to_leader(from, message),
            Event::DriverDone {
                host,
                boot,
                command,
            } => self.driver_done(host, boot, command),
            Event::FenceDone {
                epoch,
                action_id,
                target,
            } => self.fence_done(epoch, action_id, target),
            Event::CommitApply { epoch, transition } => self.commit(epoch, transition),
            Event::SnapshotToLeader { epoch } => {
                self.snapshot_pending = false;
                if epoch == self.epoch && self.controller.is_some() {
                    let mut snapshot = self.state.clone();
                    snapshot.quorate = true;
                    self.leader_view = snapshot.clone();
                    let now_ms = self.now_ms;
                    let actions = self.controller_mut().handle_snapshot(now_ms, snapshot);
                    self.leader_actions(actions);
                }
            }
            Event::Elect => self.elect(),
            Event::Fault(fault) => self.fault(fault),
            Event::FaultsEnd => self.faults_end(),
            Event::Watchdog { host, boot } => self.watchdog(host, boot),
            Event::Boot { host } => self.boot(host),
        }
    }

    fn controller_mut(&mut self) -> &mut ClusterController {
        self.controller
            .as_mut()
            .expect("a leader runs a controller")
    }

    // ---- leadership and the log -------------------------------------------------------

    /// Deposes a leader that lost quorum (modelling Raft's check-quorum: it stops acting at
    /// once) and schedules an election when a quorate side has no leader.
    fn check_leader(&mut self) {
        let quorate = self.quorate_group();
        if let Some(leader) = self.leader
            && (!self.up(leader) || Some(self.hosts[leader].group) != quorate)
        {
            self.depose();
        }
        if self.leader.is_none() && quorate.is_some() && !self.election_pending {
            self.election_pending = true;
            let delay_ms = self.range(400, 800);
            self.schedule(delay_ms, Event::Elect);
        }
    }

    fn depose(&mut self) {
        if let Some(leader) = self.leader.take() {
            let now_ms = self.now_ms;
            if let Some(controller) = self.controller.as_mut() {
                controller.handle_leadership_lost(now_ms);
            }
            self.controller = None;
            self.epoch += 1;
            let name = self.hosts[leader].spec.name.clone();
            self.record(|| format!("leader: {name} steps down"));
        }
    }

    fn elect(&mut self) {
        self.election_pending = false;
        if self.leader.is_some() {
            return;
        }
        let Some(group) = self.quorate_group() else {
            return;
        };
        let candidates: Vec<usize> = (0..self.hosts.len())
            .filter(|&host| self.up(host) && self.hosts[host].group == group)
            .collect();
        let pick = if self.config.fixed_timing {
            0
        } else {
            self.rng.below(candidates.len() as u64) as usize
        };
        let leader = candidates[pick];
        self.epoch += 1;
        self.leader = Some(leader);
        let epoch = self.epoch;
        let name = self.hosts[leader].spec.name.clone();
        self.record(|| format!("leader: {name} elected"));
        let mut controller = ClusterController::new(self.config.controller.clone(), epoch << 32);
        let now_ms = self.now_ms;
        let mut actions = controller.handle_leadership_gained(now_ms);
        let mut snapshot = self.state.clone();
        snapshot.quorate = true;
        self.leader_view = snapshot.clone();
        actions.extend(controller.handle_snapshot(now_ms, snapshot));
        self.controller = Some(controller);
        self.leader_actions(actions);
        self.schedule(TICK_MS, Event::LeaderTick { epoch });
    }

    fn commit(&mut self, epoch: u64, transition: Transition) {
        if epoch != self.epoch {
            // A deposed leader's proposal: Raft may still commit it through the next leader
            // (it reached a majority) or lose it. Either must be safe.
            if self.leader.is_none() || !self.chance(500) {
                return;
            }
        } else if self.leader.is_none() {
            return;
        }
        if let Transition::HostFenced { host, how } = &transition {
            self.check_fence_confirmation(host, *how);
        }
        if let Transition::Assign { resource, host, .. } = &transition {
            self.check_recovery(resource, host);
        }
        match apply_transition(&mut self.state, &transition) {
            Ok(()) => {
                self.state.revision += 1;
                self.record(|| format!("commit: {}", describe(&transition)));
                self.check_committed_capacity();
                if !self.snapshot_pending {
                    self.snapshot_pending = true;
                    let epoch = self.epoch;
                    self.schedule(1, Event::SnapshotToLeader { epoch });
                }
            }
            Err(rejection) => {
                self.record(|| format!("rejected: {}: {rejection}", describe(&transition)));
                if epoch == self.epoch && self.controller.is_some() {
                    let now_ms = self.now_ms;
                    let actions = self.controller_mut().handle_rejected(now_ms, &transition);
                    self.leader_actions(actions);
                }
            }
        }
    }

    fn leader_actions(&mut self, actions: Vec<Action>) {
        let Some(leader) = self.leader else {
            return;
        };
        for action in actions {
            match action {
                Action::Commit(transition) => {
                    if let Transition::Assign { resource, host, .. } = &transition {
                        self.check_ordering(resource, host);
                    }
                    let delay_ms = self.range(2, 20);
                    let epoch = self.epoch;
                    self.schedule(delay_ms, Event::CommitApply { epoch, transition });
                }
                Action::Execute(operation) => {
                    let host = self.host_index(&operation.host);
                    self.send(leader, host, ToHost::Operation(operation));
                }
                Action::Fence {
                    action_id, host, ..
                } => {
                    let target = self.host_index(&host);
                    self.check_fence_request(target);
                    self.record(|| format!("fence: {host} requested"));
                    let delay_ms = self.range(200, 1000);
                    let epoch = self.epoch;
                    self.schedule(
                        delay_ms,
                        Event::FenceDone {
                            epoch,
                            action_id,
                            target,
                        },
                    );
                }
                Action::AckHeartbeat(ack) => {
                    let host = self.host_index(&ack.host);
                    self.send(leader, host, ToHost::Ack(ack));
                }
                Action::Status { message } => self.record(|| format!("status: {message}")),
            }
        }
        if let Some(reason) = self.controller.as_ref().and_then(|c| c.halted())
            && !self.violations.iter().any(|v| v.invariant == "halt")
        {
            let reason = reason.to_string();
            self.violation("halt", format!("controller halted: {reason}"));
        }
    }

    fn host_index(&self, name: &str) -> usize {
        self.hosts
            .iter()
            .position(|host| host.spec.name == name)
            .expect("the controller names known hosts")
    }

    fn send(&mut self, from: usize, host: usize, message: ToHost) {
        if self.chance(self.config.network.drop_permille) {
            return;
        }
        let delay_ms = self.range(
            self.config.network.min_delay_ms,
            self.config.network.max_delay_ms,
        );
        self.schedule(
            delay_ms,
            Event::ToHost {
                from,
                host,
                message,
            },
        );
    }

    fn send_to_leader(&mut self, from: usize, message: ToLeader) {
        if self.chance(self.config.network.drop_permille) {
            return;
        }
        let delay_ms = self.range(
            self.config.network.min_delay_ms,
            self.config.network.max_delay_ms,
        );
        self.schedule(delay_ms, Event::ToLeader { from, message });
    }

    fn deliver_to_host(&mut self, from: usize, host: usize, message: ToHost) {
        if !self.connected(from, host) {
            return;
        }
        let now_ms = self.node_now(host);
        let actions = match message {
            ToHost::Operation(operation) => {
                self.hosts[host].node.handle_operation(now_ms, operation)
            }
            ToHost::Ack(mut ack) => {
                // Acks echo the agent's own send time; no clock conversion needed.
                ack.sent_at_ms = ack.sent_at_ms.min(now_ms);
                self.hosts[host].node.handle_heartbeat_ack(now_ms, ack)
            }
        };
        self.node_actions(host, actions);
    }

    fn deliver_to_leader(&mut self, from: usize, message: ToLeader) {
        let Some(leader) = self.leader else {
            return;
        };
        if !self.connected(from, leader) {
            return;
        }
        let now_ms = self.now_ms;
        let controller = self.controller_mut();
        let actions = match message {
            ToLeader::Heartbeat(heartbeat) => controller.handle_heartbeat(now_ms, heartbeat),
            ToLeader::Result(result) => controller.handle_operation_result(now_ms, result),
            ToLeader::Failure(failure) => controller.handle_resource_failure(now_ms, failure),
        };
        self.leader_actions(actions);
    }

    // ---- hosts and fake hardware ------------------------------------------------------

    fn node_tick(&mut self, host: usize, boot: u64) {
        if self.hosts[host].boot != boot || !self.hosts[host].powered {
            return;
        }
        self.schedule(TICK_MS, Event::NodeTick { host, boot });
        if self.hosts[host].frozen {
            return;
        }
        let now_ms = self.node_now(host);
        let actions = self.hosts[host].node.handle_tick(now_ms);
        self.node_actions(host, actions);
    }

    fn node_actions(&mut self, host: usize, actions: Vec<NodeAction>) {
        for action in actions {
            match action {
                NodeAction::SendHeartbeat(heartbeat) => {
                    self.send_to_leader(host, ToLeader::Heartbeat(heartbeat));
                }
                NodeAction::ReportResult(result) => {
                    self.send_to_leader(host, ToLeader::Result(result));
                }
                NodeAction::ReportFailure(failure) => {
                    self.send_to_leader(host, ToLeader::Failure(failure));
                }
                NodeAction::Driver(command) => self.driver(host, command),
                NodeAction::SelfFence {
                    resources,
                    stop_watchdog: _,
                } => {
                    let name = self.hosts[host].spec.name.clone();
                    let killed: Vec<String> = self.hosts[host].processes.keys().cloned().collect();
                    self.hosts[host].processes.clear();
                    self.hosts[host].in_progress.clear();
                    self.record(|| {
                        format!(
                            "{name}: lease lapsed, self-fence kills [{}] (managed [{}])",
                            killed.join(", "),
                            resources.join(", ")
                        )
                    });
                }
                NodeAction::PetWatchdog => {
                    self.hosts[host].last_pet_ms = self.now_ms;
                    if let Some(timeout_ms) = self.hosts[host].spec.watchdog_timeout_ms
                        && !self.hosts[host].watchdog_armed
                    {
                        self.hosts[host].watchdog_armed = true;
                        let boot = self.hosts[host].boot;
                        self.schedule(timeout_ms, Event::Watchdog { host, boot });
                    }
                }
            }
        }
    }

    fn driver(&mut self, host: usize, command: DriverCommand) {
        let slow = if self.hosts[host].slow { 5 } else { 1 };
        let delay_ms = match &command.kind {
            DriverKind::Start => self.range(100, 800) * slow,
            DriverKind::Stop => self.range(50, 300) * slow,
            DriverKind::Monitor => self.range(5, 50),
            DriverKind::MigrateOut { .. } => self.range(300, 1500),
            DriverKind::Promote | DriverKind::Demote => self.range(20, 100),
        };
        if !matches!(command.kind, DriverKind::Monitor) {
            self.hosts[host]
                .in_progress
                .insert(command.resource.clone(), command.command_id);
        }
        let boot = self.hosts[host].boot;
        self.schedule(
            delay_ms,
            Event::DriverDone {
                host,
                boot,
                command,
            },
        );
    }

    fn driver_done(&mut self, host: usize, boot: u64, command: DriverCommand) {
        if self.hosts[host].boot != boot || !self.hosts[host].powered {
            return;
        }
        if self.hosts[host].frozen {
            self.hosts[host].deferred.push(Event::DriverDone {
                host,
                boot,
                command,
            });
            return;
        }
        // The agent's runtime wakes exactly at lease expiry: a command finishing later finds
        // the self-fence already done.
        self.wake_at_lease_expiry(host);
        let monitor = matches!(command.kind, DriverKind::Monitor);
        if !monitor
            && self.hosts[host].in_progress.get(&command.resource) != Some(&command.command_id)
        {
            // Superseded by a later command or cancelled by a self-fence.
            return;
        }
        if !monitor {
            self.hosts[host].in_progress.remove(&command.resource);
        }
        let name = self.hosts[host].spec.name.clone();
        let resource = command.resource.clone();
        let generation = command.generation;
        let outcome = match &command.kind {
            DriverKind::Start => {
                if let Some(left) = self.start_failures.get_mut(&resource)
                    && *left > 0
                {
                    *left -= 1;
                    self.record(|| format!("{name}: start {resource} fails (injected)"));
                    failure("start failed")
                } else {
                    self.check_start_backed(host, &resource, generation);
                    self.hosts[host]
                        .processes
                        .insert(resource.clone(), generation);
                    self.record(|| format!("{name}: {resource} started (generation {generation})"));
                    DriverOutcome::Success
                }
            }
            DriverKind::Stop => {
                if self.hosts[host].processes.remove(&resource).is_some() {
                    self.record(|| format!("{name}: {resource} stopped"));
                }
                DriverOutcome::Success
            }
            DriverKind::Monitor => {
                let running = self.hosts[host].processes.get(&resource) == Some(&generation);
                match self.monitor_failures.get_mut(&resource) {
                    Some(left) if *left > 0 && running => {
                        *left -= 1;
                        self.record(|| format!("{name}: monitor of {resource} fails (injected)"));
                        failure("monitor failed")
                    }
                    _ if running => DriverOutcome::Success,
                    _ => failure("not running"),
                }
            }
            DriverKind::MigrateOut {
                to,
                to_generation,
                revision,
            } => self.migrate_out(host, &resource, to, *to_generation, *revision),
            DriverKind::Promote | DriverKind::Demote => DriverOutcome::Success,
        };
        let now_ms = self.node_now(host);
        let actions =
            self.hosts[host]
                .node
                .handle_driver_result(now_ms, command.command_id, outcome);
        self.node_actions(host, actions);
    }

    fn wake_at_lease_expiry(&mut self, host: usize) {
        let now_ms = self.node_now(host);
        if self.hosts[host]
            .node
            .lease_until_ms()
            .is_some_and(|until| until <= now_ms)
        {
            let actions = self.hosts[host].node.handle_tick(now_ms);
            self.node_actions(host, actions);
        }
    }

    fn migrate_out(
        &mut self,
        host: usize,
        resource: &str,
        to: &str,
        to_generation: u64,
        revision: u64,
    ) -> DriverOutcome {
        let destination = self.host_index(to);
        if !self.connected(host, destination) || !self.hosts[host].processes.contains_key(resource)
        {
            return failure("destination unreachable");
        }
        let destination_now_ms = self.node_now(destination);
        if !self.hosts[destination].node.accepts_incoming(
            destination_now_ms,
            resource,
            to_generation,
            revision,
        ) {
            return failure("destination refuses the incoming instance");
        }
        self.hosts[host].processes.remove(resource);
        self.check_start_backed(destination, resource, to_generation);
        self.hosts[destination]
            .processes
            .insert(resource.to_string(), to_generation);
        let (from_name, to_name) = (self.hosts[host].spec.name.clone(), to.to_string());
        self.record(|| format!("{from_name}: {resource} migrated to {to_name}"));
        let now_ms = self.node_now(destination);
        let timeouts = self
            .state
            .resource(resource)
            .map(|record| record.timeouts)
            .unwrap_or_default();
        let actions = self.hosts[destination].node.handle_migrated_in(
            now_ms,
            resource,
            to_generation,
            timeouts.monitor_interval_ms,
            timeouts.monitor_timeout_ms,
        );
        self.node_actions(destination, actions);
        DriverOutcome::Success
    }

    fn fence_done(&mut self, epoch: u64, action_id: u64, target: usize) {
        let name = self.hosts[target].spec.name.clone();
        let success = if self.hosts[target].fence_failures > 0 {
            self.hosts[target].fence_failures -= 1;
            self.record(|| format!("fence: {name} failed (injected)"));
            false
        } else {
            self.power_off(target, "fence device powers it off");
            let delay_ms = self.range(2000, 6000);
            self.schedule(delay_ms, Event::Boot { host: target });
            true
        };
        if epoch == self.epoch && self.controller.is_some() {
            let now_ms = self.now_ms;
            let actions = self.controller_mut().handle_fence_result(
                now_ms,
                FenceResult {
                    action_id,
                    host: name,
                    success,
                    message: if success { "off" } else { "device failed" }.to_string(),
                },
            );
            self.leader_actions(actions);
        }
    }

    fn power_off(&mut self, host: usize, why: &str) {
        let name = self.hosts[host].spec.name.clone();
        let killed: Vec<String> = self.hosts[host].processes.keys().cloned().collect();
        self.record(|| format!("{name}: {why}, kills [{}]", killed.join(", ")));
        let state = &mut self.hosts[host];
        state.powered = false;
        state.frozen = false;
        state.processes.clear();
        state.in_progress.clear();
        state.deferred.clear();
        state.boot += 1;
        state.watchdog_armed = false;
        self.check_leader();
    }

    fn boot(&mut self, host: usize) {
        if self.hosts[host].powered {
            return;
        }
        let name = self.hosts[host].spec.name.clone();
        self.record(|| format!("{name}: boots"));
        let config = node_config(&self.config, &self.hosts[host].spec);
        let state = &mut self.hosts[host];
        state.powered = true;
        state.node = NodeController::new(name, config);
        let boot = state.boot;
        self.schedule(1, Event::NodeTick { host, boot });
        self.check_leader();
    }

    fn watchdog(&mut self, host: usize, boot: u64) {
        if self.hosts[host].boot != boot || !self.hosts[host].powered {
            return;
        }
        let timeout_ms = self.hosts[host].spec.watchdog_timeout_ms.unwrap_or(0);
        let deadline_ms = self.hosts[host].last_pet_ms + timeout_ms;
        if self.now_ms < deadline_ms {
            self.schedule_at(deadline_ms, Event::Watchdog { host, boot });
            return;
        }
        self.power_off(host, "watchdog resets it");
        let delay_ms = self.range(2000, 6000);
        self.schedule(delay_ms, Event::Boot { host });
    }

    // ---- faults -----------------------------------------------------------------------

    fn fault(&mut self, fault: Fault) {
        if self.faults_over {
            return;
        }
        if self.config.record_log {
            let line = format!("fault: {}", self.describe_fault(&fault));
            self.record(|| line);
        }
        match fault {
            Fault::Crash {
                host,
                reboot_after_ms,
            } => {
                if self.hosts[host].powered {
                    self.power_off(host, "crashes");
                    self.schedule(reboot_after_ms, Event::Boot { host });
                }
            }
            Fault::Hang { host } => {
                if self.hosts[host].powered {
                    self.hosts[host].frozen = true;
                }
            }
            Fault::Resume { host } => self.resume(host),
            Fault::Partition { groups } => {
                for host in &mut self.hosts {
                    host.group = 0;
                }
                for (index, group) in groups.iter().enumerate() {
                    for &host in group {
                        self.hosts[host].group = index + 1;
                    }
                }
            }
            Fault::Heal => {
                for host in &mut self.hosts {
                    host.group = 0;
                }
            }
            Fault::FenceFails { host, times } => self.hosts[host].fence_failures += times,
            Fault::MonitorFails { resource, times } => {
                *self.monitor_failures.entry(resource).or_default() += times;
            }
            Fault::StartFails { resource, times } => {
                *self.start_failures.entry(resource).or_default() += times;
            }
            Fault::Slow { host } => self.hosts[host].slow = true,
            Fault::LeaderChange => self.depose(),
            Fault::SetMode { host, mode } => {
                let host = self.hosts[host].spec.name.clone();
                self.operator_commit(Transition::SetHostMode { host, mode });
            }
            Fault::ConfirmFenced { host } => {
                let host = self.hosts[host].spec.name.clone();
                self.operator_commit(Transition::HostFenced {
                    host,
                    how: FenceConfirmation::Operator,
                });
            }
        }
        self.check_leader();
    }

    /// An operator command goes through the leader's log like any other change.
    fn operator_commit(&mut self, transition: Transition) {
        if self.leader.is_some() {
            let epoch = self.epoch;
            self.schedule(5, Event::CommitApply { epoch, transition });
        }
    }

    fn resume(&mut self, host: usize) {
        if !self.hosts[host].powered || !self.hosts[host].frozen {
            return;
        }
        self.hosts[host].frozen = false;
        // The agent's first act after a freeze is its tick: a lapsed lease kills everything
        // before the resumed VMs count as running again.
        let now_ms = self.node_now(host);
        let actions = self.hosts[host].node.handle_tick(now_ms);
        self.node_actions(host, actions);
        let deferred = std::mem::take(&mut self.hosts[host].deferred);
        for event in deferred {
            self.schedule(0, event);
        }
    }

    fn faults_end(&mut self) {
        self.record(|| "faults end".to_string());
        for host in 0..self.hosts.len() {
            self.hosts[host].group = 0;
            self.hosts[host].fence_failures = 0;
            self.hosts[host].slow = false;
            self.resume(host);
            if !self.hosts[host].powered {
                self.schedule(0, Event::Boot { host });
            }
        }
        self.monitor_failures.clear();
        self.start_failures.clear();
        self.faults_over = true;
        self.check_leader();
    }

    fn describe_fault(&self, fault: &Fault) -> String {
        let name = |host: &usize| self.hosts[*host].spec.name.clone();
        match fault {
            Fault::Crash { host, .. } => format!("crash {}", name(host)),
            Fault::Hang { host } => format!("hang {}", name(host)),
            Fault::Resume { host } => format!("resume {}", name(host)),
            Fault::Partition { groups } => {
                let groups: Vec<String> = groups
                    .iter()
                    .map(|group| group.iter().map(name).collect::<Vec<_>>().join(","))
                    .collect();
                format!("partition {}", groups.join(" | "))
            }
            Fault::Heal => "heal".to_string(),
            Fault::FenceFails { host, times } => {
                format!("fence device of {} fails {times}x", name(host))
            }
            Fault::MonitorFails { resource, times } => {
                format!("monitor of {resource} fails {times}x")
            }
            Fault::StartFails { resource, times } => format!("start of {resource} fails {times}x"),
            Fault::Slow { host } => format!("slow {}", name(host)),
            Fault::LeaderChange => "leader change".to_string(),
            Fault::SetMode { host, mode } => format!("operator sets {} {mode:?}", name(host)),
            Fault::ConfirmFenced { host } => format!("operator confirms {} fenced", name(host)),
        }
    }

    // ---- invariants -------------------------------------------------------------------

    /// I1 and I5 on the hardware, after every step.
    fn check_step(&mut self) {
        let mut active: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for host in self
            .hosts
            .iter()
            .filter(|host| host.powered && !host.frozen)
        {
            for resource in host.processes.keys() {
                active.entry(resource).or_default().push(&host.spec.name);
            }
        }
        let mut problems = Vec::new();
        for (resource, hosts) in active {
            if hosts.len() > 1 && !self.state.is_cloned(resource) {
                problems.push(("I1", format!("{resource} runs on {}", hosts.join(" and "))));
            }
        }
        for host in &self.hosts {
            let used: u64 = host
                .processes
                .keys()
                .filter_map(|resource| self.config.resources.iter().find(|r| r.name == *resource))
                .map(|resource| resource.cpu)
                .sum();
            if used > host.spec.cpu {
                problems.push((
                    "I5",
                    format!("{} runs {used} cpu of {}", host.spec.name, host.spec.cpu),
                ));
            }
        }
        for (invariant, detail) in problems {
            if !self.violations.iter().any(|v| v.detail == detail) {
                self.violation(invariant, detail);
            }
        }
    }

    fn check_committed_capacity(&mut self) {
        for host in self.state.hosts.clone() {
            let usage = self.state.usage_on(&host.name);
            for (key, used) in usage {
                let capacity = host.capacity.get(&key).copied().unwrap_or(0);
                if used > capacity {
                    self.violation(
                        "I5",
                        format!("{} committed {used} {key} of {capacity}", host.name),
                    );
                }
            }
        }
    }

    /// Whether `host` may still run resources: powered, and either running or frozen with a
    /// lease that has not lapsed (it will run again on resume).
    fn may_still_run(&self, host: usize) -> bool {
        let state = &self.hosts[host];
        if !state.powered {
            return false;
        }
        if state.frozen {
            let lease_valid = state.node.has_lease(self.node_now(host));
            return lease_valid && !state.processes.is_empty();
        }
        !state.processes.is_empty()
    }

    /// I2: a committed fence confirmation must be true.
    fn check_fence_confirmation(&mut self, host: &str, how: FenceConfirmation) {
        let index = self.host_index(host);
        if self
            .state
            .host(host)
            .is_some_and(|record| matches!(record.fencing, FencingState::Unclean { .. }))
            && self.may_still_run(index)
        {
            let running: Vec<String> = self.hosts[index].processes.keys().cloned().collect();
            self.violation(
                "I2",
                format!(
                    "{host} confirmed fenced ({how:?}) while it may still run [{}]",
                    running.join(", ")
                ),
            );
        }
    }

    /// O1: the leader assigns a resource ordered after another (mandatory) only while it
    /// knows that one committed running (a failure committed while the assignment is on
    /// its way is a race every cluster manager has; the next plan stops it again).
    fn check_ordering(&mut self, resource: &str, host: &str) {
        // What a mandatory ordering puts first, and the member before it in its group.
        let after = self
            .config
            .resources
            .iter()
            .find(|spec| spec.name == resource)
            .and_then(|spec| spec.after.clone());
        let member_before = self.leader_view.groups.iter().find_map(|group| {
            let position = group.members.iter().position(|member| member == resource)?;
            position
                .checked_sub(1)
                .map(|before| group.members[before].clone())
        });
        for first in after.into_iter().chain(member_before) {
            let runs = self.leader_view.resource(&first).is_some_and(|record| {
                record
                    .assignments
                    .iter()
                    .any(|assignment| assignment.phase == Phase::Running)
            });
            if !runs {
                self.violation(
                    "O1",
                    format!(
                        "{resource} assigned to {host} while {first}, ordered before it, does not run"
                    ),
                );
            }
        }
    }

    /// I2: recovery starts nowhere while another host may still run the resource.
    fn check_recovery(&mut self, resource: &str, host: &str) {
        if self.state.is_cloned(resource) {
            return;
        }
        for index in 0..self.hosts.len() {
            let state = &self.hosts[index];
            if state.spec.name == host || !state.processes.contains_key(resource) {
                continue;
            }
            let frozen_safe = state.frozen && !state.node.has_lease(self.node_now(index));
            if state.powered && !frozen_safe {
                let other = state.spec.name.clone();
                self.violation(
                    "I2",
                    format!("{resource} assigned to {host} while {other} may still run it"),
                );
            }
        }
    }

    /// I3: a start happens only for a committed assignment, on a host holding a lease.
    fn check_start_backed(&mut self, host: usize, resource: &str, generation: u64) {
        let name = self.hosts[host].spec.name.clone();
        let committed = self
            .state
            .resource(resource)
            .and_then(|record| record.assignment_on(&name))
            .is_some_and(|assignment| assignment.generation == generation);
        let lease = self.hosts[host].node.has_lease(self.node_now(host));
        if !committed || !lease {
            self.violation(
                "I3",
                format!(
                    "{name} starts {resource} generation {generation} (committed: {committed}, lease: {lease})"
                ),
            );
        }
    }

    /// I3: only the quorate side fences, and only a committed unclean host.
    fn check_fence_request(&mut self, target: usize) {
        let name = self.hosts[target].spec.name.clone();
        let unclean = self
            .state
            .host(&name)
            .is_some_and(|record| matches!(record.fencing, FencingState::Unclean { .. }));
        let quorate = self
            .leader
            .is_some_and(|leader| Some(self.hosts[leader].group) == self.quorate_group());
        if !unclean || !quorate {
            self.violation(
                "I3",
                format!("fence of {name} requested (unclean: {unclean}, quorate: {quorate})"),
            );
        }
    }

    /// L1: once faults stopped, everything that should run and can be placed runs.
    fn check_liveness(&mut self) {
        let view = scheduler_view(&self.state, &self.config.controller);
        let request = Request {
            now_ms: self.now_ms,
            include_scores: false,
        };
        let pending: BTreeSet<String> = match schedule(&view, &request) {
            Ok(plan) => plan.pending.into_iter().map(|p| p.resource).collect(),
            Err(error) => {
                self.violation("L1", format!("cannot plan: {error}"));
                return;
            }
        };
        let mut problems = Vec::new();
        for record in &self.state.resources {
            let name = &record.config.name;
            if pending.contains(name) {
                continue;
            }
            let running = record.assignments.iter().any(|assignment| {
                assignment.phase == Phase::Running
                    && self.hosts.iter().any(|host| {
                        host.spec.name == assignment.host
                            && host.powered
                            && host.processes.get(name) == Some(&assignment.generation)
                    })
            });
            if !running {
                let phases: Vec<String> = record
                    .assignments
                    .iter()
                    .map(|a| format!("{}@{} g{}", a.phase.name(), a.host, a.generation))
                    .collect();
                problems.push(format!(
                    "{name} is not running {} s after faults ended (committed [{}])",
                    (self.config.end_ms - self.config.faults_end_ms) / 1000,
                    phases.join(", ")
                ));
            }
        }
        for problem in problems {
            self.violation("L1", problem);
        }
    }
}

fn failure(message: &str) -> DriverOutcome {
    DriverOutcome::Failure {
        severity: Severity::Soft,
        message: message.to_string(),
    }
}

fn node_config(config: &SimConfig, spec: &HostSpec) -> NodeConfig {
    NodeConfig {
        lease_ms: config.controller.lease_ms,
        watchdog: spec.watchdog_timeout_ms.is_some(),
        ..config.node.clone()
    }
}

fn initial_state(config: &SimConfig) -> ClusterSnapshot {
    let mut state = ClusterSnapshot {
        quorate: true,
        ..ClusterSnapshot::default()
    };
    for spec in &config.hosts {
        let mut record = HostRecord::member(spec.name.clone(), spec.fencing_method);
        record.role = spec.role;
        record.watchdog_timeout_ms = spec.watchdog_timeout_ms;
        record.capacity.insert("cpu".to_string(), spec.cpu);
        state.hosts.push(record);
    }
    for spec in &config.resources {
        let mut resource = hafen_scheduler::Resource::new(spec.name.clone());
        resource.utilization.insert("cpu".to_string(), spec.cpu);
        resource.allow_migrate = spec.allow_migrate;
        resource.migration_threshold = spec.migration_threshold;
        let mut record = hafen_controller::ResourceRecord::new(resource);
        record.timeouts.monitor_interval_ms = 1_000;
        record.timeouts.monitor_timeout_ms = 500;
        record.timeouts.start_timeout_ms = 5_000;
        record.timeouts.stop_timeout_ms = 5_000;
        record.timeouts.migrate_timeout_ms = 10_000;
        state.resources.push(record);
        if let Some(name) = &spec.group {
            match state.groups.iter_mut().find(|group| group.name == *name) {
                Some(group) => group.members.push(spec.name.clone()),
                None => state.groups.push(hafen_scheduler::Group {
                    name: name.clone(),
                    members: vec![spec.name.clone()],
                }),
            }
        }
        if let Some(first) = &spec.after {
            state.constraints.orderings.push(hafen_scheduler::Ordering {
                id: format!("{first}-then-{}", spec.name),
                first: first.clone(),
                then: spec.name.clone(),
                kind: hafen_scheduler::OrderingKind::Mandatory,
                symmetrical: true,
            });
        }
        if let Some(host) = &spec.prefers {
            state.constraints.locations.push(hafen_scheduler::Location {
                id: format!("prefer-{}", spec.name),
                resource: spec.name.clone(),
                host: Some(host.clone()),
                score: Some(hafen_scheduler::Score::new(100)),
                ..hafen_scheduler::Location::default()
            });
        }
    }
    state
}

/// One line per committed transition, for the event log.
pub fn describe(transition: &Transition) -> String {
    match transition {
        Transition::HostSuspected { host, reason } => format!("host {host} suspected ({reason})"),
        Transition::HostFenced { host, how } => format!("host {host} fenced ({how:?})"),
        Transition::HostRejoined { host } => format!("host {host} rejoined"),
        Transition::SetHostMode { host, mode } => format!("host {host} mode {mode:?}"),
        Transition::Assign {
            resource,
            host,
            generation,
        } => format!("{resource} assigned to {host} (generation {generation})"),
        Transition::Started { resource, host, .. } => format!("{resource} running on {host}"),
        Transition::StopRequested { resource, host, .. } => {
            format!("{resource} stopping on {host}")
        }
        Transition::Stopped { resource, host, .. } => format!("{resource} stopped on {host}"),
        Transition::Failed {
            resource,
            host,
            severity,
            ..
        } => format!("{resource} failed on {host} ({severity:?})"),
        Transition::MigrationRequested {
            resource, from, to, ..
        } => format!("{resource} migrating {from} -> {to}"),
        Transition::MigrationSucceeded {
            resource, from, to, ..
        } => format!("{resource} migrated {from} -> {to}"),
        Transition::MigrationFailed {
            resource, from, to, ..
        } => format!("{resource} migration {from} -> {to} failed"),
        Transition::MigrationAborted { resource } => format!("{resource} migration aborted"),
        Transition::SetPromoted {
            resource,
            host,
            promoted,
            ..
        } => format!("{resource} on {host} promoted={promoted}"),
        Transition::CleanupResource { resource, host } => {
            format!(
                "{resource} cleaned up on {}",
                host.as_deref().unwrap_or("every host")
            )
        }
    }
}
