//! The node part, run by each host's agent: the lease, and the lifecycle of the resources the
//! leader assigned to this host (start, monitor, failure reports, restart back-off).
//!
//! Time is the agent's monotonic clock. The lease lasts `lease_ms` from the *send* time of the
//! last acknowledged heartbeat; without it the agent starts nothing, and when it lapses the
//! agent fences itself: it kills every managed resource at once and stops petting the
//! watchdog. Afterwards it starts nothing until the leader assigns work again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::types::{
    ActionId, Heartbeat, HeartbeatAck, Operation, OperationKind, OperationResult, Outcome,
    ResourceFailure, Severity,
};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeConfig {
    pub heartbeat_interval_ms: u64,
    /// Must equal the leader's [`crate::ControllerConfig::lease_ms`].
    pub lease_ms: u64,
    /// Pet a hardware watchdog while the lease holds.
    pub watchdog: bool,
    /// First delay before restarting a resource that failed here; doubles per failure.
    pub restart_backoff_ms: u64,
    pub restart_backoff_max_ms: u64,
    /// A resource running this long without failing has its local failures forgotten.
    pub failure_forget_ms: u64,
}

impl Default for NodeConfig {
    fn default() -> NodeConfig {
        NodeConfig {
            heartbeat_interval_ms: 200,
            lease_ms: 1_500,
            watchdog: false,
            restart_backoff_ms: 500,
            restart_backoff_max_ms: 30_000,
            failure_forget_ms: 600_000,
        }
    }
}

/// Correlates a driver command with its result.
pub type CommandId = u64;

/// What the agent's runtime does for the node controller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum NodeAction {
    SendHeartbeat(Heartbeat),
    /// Run through the driver; answer with [`NodeController::handle_driver_result`].
    Driver(DriverCommand),
    /// Send to the leader.
    ReportResult(OperationResult),
    ReportFailure(ResourceFailure),
    /// The lease lapsed: kill every listed resource at once (SIGKILL, no graceful stop),
    /// cancel every driver command, and stop petting the watchdog when `stop_watchdog`.
    SelfFence {
        resources: Vec<String>,
        stop_watchdog: bool,
    },
    PetWatchdog,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverCommand {
    pub command_id: CommandId,
    pub resource: String,
    pub generation: u64,
    pub kind: DriverKind,
    pub timeout_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DriverKind {
    Start,
    Stop,
    Monitor,
    /// Live-migrate to `to`; its agent adopts it with
    /// [`NodeController::handle_migrated_in`].
    MigrateOut {
        to: String,
        to_generation: u64,
        /// The operation's revision: the destination refuses it when it regained its lease
        /// after this revision (the migration predates the destination's fence).
        revision: u64,
    },
    Promote,
    Demote,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum DriverOutcome {
    Success,
    Failure { severity: Severity, message: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum LocalState {
    /// Waiting for the restart back-off before the driver start.
    Delayed {
        not_before_ms: u64,
    },
    Starting,
    Running,
    Stopping,
    MigratingOut,
    /// Failed and reported; waits for the leader's stop.
    Failed,
}

#[derive(Clone, Debug)]
struct Local {
    generation: u64,
    state: LocalState,
    monitor_interval_ms: u64,
    monitor_timeout_ms: u64,
    next_monitor_ms: u64,
    monitor_deadline_ms: Option<u64>,
    running_since_ms: u64,
    /// The leader's operation this resource's current command answers.
    operation: Option<Operation>,
    start_timeout_ms: u64,
}

#[derive(Clone, Debug)]
struct Pending {
    resource: String,
    generation: u64,
    kind: DriverKind,
    deadline_ms: u64,
}

/// One host's agent logic.
#[derive(Debug)]
pub struct NodeController {
    host: String,
    config: NodeConfig,
    lease_until_ms: Option<u64>,
    self_fenced: bool,
    /// Operations issued before this revision were sent before the agent (re)gained its
    /// lease and are refused.
    min_revision: u64,
    next_heartbeat_ms: u64,
    sequence: u64,
    resources: BTreeMap<String, Local>,
    pending: BTreeMap<CommandId, Pending>,
    next_command_id: CommandId,
    /// Highest generation seen per resource: older starts are refused.
    seen_generation: BTreeMap<String, u64>,
    /// Highest generation stopped per resource: a late start of it is refused.
    stopped_generation: BTreeMap<String, u64>,
    /// Resources migrated away, with the destination generation (answers repeated migrates).
    migrated_out: BTreeMap<String, u64>,
    local_failures: BTreeMap<String, u32>,
}

/// Bounds the per-resource memory of a long-running agent.
const MEMORY_LIMIT: usize = 100_000;

impl NodeController {
    pub fn new(host: impl Into<String>, config: NodeConfig) -> NodeController {
        NodeController {
            host: host.into(),
            config,
            lease_until_ms: None,
            self_fenced: false,
            min_revision: 0,
            next_heartbeat_ms: 0,
            sequence: 0,
            resources: BTreeMap::new(),
            pending: BTreeMap::new(),
            next_command_id: 1,
            seen_generation: BTreeMap::new(),
            stopped_generation: BTreeMap::new(),
            migrated_out: BTreeMap::new(),
            local_failures: BTreeMap::new(),
        }
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn has_lease(&self, now_ms: u64) -> bool {
        self.lease_until_ms.is_some_and(|until| now_ms < until)
    }

    pub fn lease_until_ms(&self) -> Option<u64> {
        self.lease_until_ms
    }

    /// Resources this agent considers active: (resource, generation).
    pub fn running(&self) -> Vec<(String, u64)> {
        self.resources
            .iter()
            .filter(|(_, local)| !matches!(local.state, LocalState::Delayed { .. }))
            .map(|(name, local)| (name.clone(), local.generation))
            .collect()
    }

    pub fn handle_tick(&mut self, now_ms: u64) -> Vec<NodeAction> {
        let mut actions = Vec::new();
        if let Some(until) = self.lease_until_ms
            && now_ms >= until
            && !self.self_fenced
        {
            self.self_fence(&mut actions);
        }
        if now_ms >= self.next_heartbeat_ms {
            self.next_heartbeat_ms = now_ms + self.config.heartbeat_interval_ms;
            self.sequence += 1;
            actions.push(NodeAction::SendHeartbeat(Heartbeat {
                host: self.host.clone(),
                sequence: self.sequence,
                sent_at_ms: now_ms,
                running: self.running(),
            }));
        }
        if self.config.watchdog && self.has_lease(now_ms) {
            actions.push(NodeAction::PetWatchdog);
        }
        self.expire_commands(now_ms, &mut actions);
        self.start_delayed(now_ms, &mut actions);
        self.schedule_monitors(now_ms, &mut actions);
        actions
    }

    pub fn handle_heartbeat_ack(&mut self, now_ms: u64, ack: HeartbeatAck) -> Vec<NodeAction> {
        let until = ack.sent_at_ms + self.config.lease_ms;
        if until <= now_ms {
            return Vec::new();
        }
        let regained = !self.has_lease(now_ms);
        if regained {
            // Operations sent before this acknowledgement's revision predate the new lease.
            self.min_revision = self.min_revision.max(ack.revision);
            self.self_fenced = false;
        }
        self.lease_until_ms = Some(self.lease_until_ms.map_or(until, |old| old.max(until)));
        Vec::new()
    }

    pub fn handle_operation(&mut self, now_ms: u64, operation: Operation) -> Vec<NodeAction> {
        let mut actions = Vec::new();
        // A repeat of the operation the current command answers: its result will come.
        if let Some(local) = self.resources.get(&operation.resource)
            && local
                .operation
                .as_ref()
                .is_some_and(|current| current.action_id == operation.action_id)
        {
            return actions;
        }
        match operation.kind.clone() {
            OperationKind::Start => self.start(now_ms, operation, &mut actions),
            OperationKind::Stop => self.stop(now_ms, operation, &mut actions),
            OperationKind::Migrate { to, to_generation } => {
                self.migrate(now_ms, operation, to, to_generation, &mut actions)
            }
            OperationKind::Promote | OperationKind::Demote => {
                self.promote(now_ms, operation, &mut actions)
            }
        }
        actions
    }

    /// Whether this agent would accept `resource` migrating in with `generation` (the
    /// destination's runtime asks before it prepares the incoming instance).
    pub fn accepts_incoming(
        &self,
        now_ms: u64,
        resource: &str,
        generation: u64,
        revision: u64,
    ) -> bool {
        self.has_lease(now_ms)
            && revision >= self.min_revision
            && !self.refuses_generation(resource, generation)
    }

    /// A resource live-migrated here resumed. Adopted only with a lease and a current
    /// generation; otherwise it is stopped at once.
    pub fn handle_migrated_in(
        &mut self,
        now_ms: u64,
        resource: &str,
        generation: u64,
        monitor_interval_ms: u64,
        monitor_timeout_ms: u64,
    ) -> Vec<NodeAction> {
        let mut actions = Vec::new();
        if !self.has_lease(now_ms) || self.refuses_generation(resource, generation) {
            let command = self.command(resource, generation, DriverKind::Stop, 20_000, now_ms);
            actions.push(NodeAction::Driver(command));
            return actions;
        }
        self.seen_generation
            .insert(resource.to_string(), generation);
        self.resources.insert(
            resource.to_string(),
            Local {
                generation,
                state: LocalState::Running,
                monitor_interval_ms,
                monitor_timeout_ms,
                next_monitor_ms: now_ms + monitor_interval_ms,
                monitor_deadline_ms: None,
                running_since_ms: now_ms,
                operation: None,
                start_timeout_ms: 20_000,
            },
        );
        actions
    }

    pub fn handle_driver_result(
        &mut self,
        now_ms: u64,
        command_id: CommandId,
        outcome: DriverOutcome,
    ) -> Vec<NodeAction> {
        let mut actions = Vec::new();
        let Some(pending) = self.pending.remove(&command_id) else {
            return actions;
        };
        self.finish(now_ms, pending, outcome, &mut actions);
        actions
    }

    fn refuses_generation(&self, resource: &str, generation: u64) -> bool {
        generation < self.seen_generation.get(resource).copied().unwrap_or(0)
            || generation <= self.stopped_generation.get(resource).copied().unwrap_or(0)
    }

    fn command(
        &mut self,
        resource: &str,
        generation: u64,
        kind: DriverKind,
        timeout_ms: u64,
        now_ms: u64,
    ) -> DriverCommand {
        let command_id = self.next_command_id;
        self.next_command_id += 1;
        // Pending commands for a resource are superseded by a new one: the runtime serializes
        // commands per resource, so only the last one's result matters.
        self.pending.retain(|_, pending| {
            pending.resource != resource || pending.kind == DriverKind::Monitor
        });
        self.pending.insert(
            command_id,
            Pending {
                resource: resource.to_string(),
                generation,
                kind: kind.clone(),
                deadline_ms: now_ms + timeout_ms,
            },
        );
        DriverCommand {
            command_id,
            resource: resource.to_string(),
            generation,
            kind,
            timeout_ms,
        }
    }

    fn reply(&self, operation: &Operation, outcome: Outcome, actions: &mut Vec<NodeAction>) {
        actions.push(NodeAction::ReportResult(OperationResult {
            action_id: operation.action_id,
            host: self.host.clone(),
            resource: operation.resource.clone(),
            generation: operation.generation,
            outcome,
        }));
    }

    fn refuse(&self, operation: &Operation, message: String, actions: &mut Vec<NodeAction>) {
        self.reply(operation, Outcome::Refused { message }, actions);
    }

    fn start(&mut self, now_ms: u64, operation: Operation, actions: &mut Vec<NodeAction>) {
        let resource = operation.resource.clone();
        if !self.has_lease(now_ms) {
            return self.refuse(&operation, "this host holds no lease".to_string(), actions);
        }
        if operation.revision < self.min_revision {
            return self.refuse(
                &operation,
                "issued before this host regained its lease".to_string(),
                actions,
            );
        }
        if self.refuses_generation(&resource, operation.generation) {
            return self.refuse(
                &operation,
                format!("generation {} is stale", operation.generation),
                actions,
            );
        }
        if let Some(local) = self.resources.get_mut(&resource) {
            if local.generation == operation.generation {
                match local.state {
                    LocalState::Running => {
                        return self.reply(&operation, Outcome::Success, actions);
                    }
                    LocalState::Starting | LocalState::Delayed { .. } => {
                        local.operation = Some(operation);
                        return;
                    }
                    _ => {}
                }
            }
            let running = local.generation;
            if local.state != LocalState::Failed && running != operation.generation {
                return self.refuse(
                    &operation,
                    format!("generation {running} runs here"),
                    actions,
                );
            }
        }
        self.remember(&resource, operation.generation);
        let failures = self.local_failures.get(&resource).copied().unwrap_or(0);
        let not_before_ms = if failures == 0 {
            now_ms
        } else {
            let shift = (failures - 1).min(16);
            now_ms
                + (self.config.restart_backoff_ms << shift).min(self.config.restart_backoff_max_ms)
        };
        self.resources.insert(
            resource,
            Local {
                generation: operation.generation,
                state: LocalState::Delayed { not_before_ms },
                monitor_interval_ms: operation.monitor_interval_ms,
                monitor_timeout_ms: operation.monitor_timeout_ms,
                next_monitor_ms: 0,
                monitor_deadline_ms: None,
                running_since_ms: now_ms,
                start_timeout_ms: operation.timeout_ms,
                operation: Some(operation),
            },
        );
        self.start_delayed(now_ms, actions);
    }

    fn remember(&mut self, resource: &str, generation: u64) {
        if self.seen_generation.len() >= MEMORY_LIMIT {
            // Bounded memory: forget what is not active here. Older generations are still
            // refused by the revision check after a lease loss.
            let active: Vec<String> = self.resources.keys().cloned().collect();
            self.seen_generation.retain(|name, _| active.contains(name));
            self.stopped_generation.clear();
            self.migrated_out.clear();
        }
        let seen = self
            .seen_generation
            .entry(resource.to_string())
            .or_default();
        *seen = (*seen).max(generation);
    }

    fn start_delayed(&mut self, now_ms: u64, actions: &mut Vec<NodeAction>) {
        let due: Vec<String> = self
            .resources
            .iter()
            .filter(|(_, local)| {
                matches!(local.state, LocalState::Delayed { not_before_ms } if not_before_ms <= now_ms)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in due {
            let local = self.resources.get_mut(&name).expect("listed above");
            local.state = LocalState::Starting;
            let (generation, timeout_ms) = (local.generation, local.start_timeout_ms);
            let command = self.command(&name, generation, DriverKind::Start, timeout_ms, now_ms);
            actions.push(NodeAction::Driver(command));
        }
    }

    fn stop(&mut self, now_ms: u64, operation: Operation, actions: &mut Vec<NodeAction>) {
        // Stopping is always safe: no lease or generation check beyond not stopping a newer
        // instance with an older request.
        let resource = operation.resource.clone();
        let stopped = self.stopped_generation.entry(resource.clone()).or_default();
        *stopped = (*stopped).max(operation.generation);
        let Some(local) = self.resources.get_mut(&resource) else {
            return self.reply(&operation, Outcome::Success, actions);
        };
        if local.generation > operation.generation {
            return self.reply(&operation, Outcome::Success, actions);
        }
        if matches!(local.state, LocalState::Delayed { .. }) {
            if let Some(previous) = local.operation.take() {
                self.refuse(&previous, "stopped before it started".to_string(), actions);
            }
            self.resources.remove(&resource);
            return self.reply(&operation, Outcome::Success, actions);
        }
        if let Some(previous) = local.operation.take()
            && previous.kind != OperationKind::Stop
        {
            // The start or migration it replaces never answers now.
            actions.push(NodeAction::ReportResult(OperationResult {
                action_id: previous.action_id,
                host: self.host.clone(),
                resource: previous.resource.clone(),
                generation: previous.generation,
                outcome: Outcome::Failure {
                    severity: Severity::Soft,
                    message: "cancelled by a stop".to_string(),
                },
            }));
        }
        local.state = LocalState::Stopping;
        local.monitor_deadline_ms = None;
        let generation = local.generation;
        let timeout_ms = operation.timeout_ms;
        local.operation = Some(operation);
        let command = self.command(&resource, generation, DriverKind::Stop, timeout_ms, now_ms);
        actions.push(NodeAction::Driver(command));
    }

    fn migrate(
        &mut self,
        now_ms: u64,
        operation: Operation,
        to: String,
        to_generation: u64,
        actions: &mut Vec<NodeAction>,
    ) {
        let resource = operation.resource.clone();
        if self.migrated_out.get(&resource) == Some(&to_generation) {
            return self.reply(&operation, Outcome::Success, actions);
        }
        if !self.has_lease(now_ms) {
            return self.refuse(&operation, "this host holds no lease".to_string(), actions);
        }
        let Some(local) = self.resources.get_mut(&resource) else {
            return self.reply(
                &operation,
                Outcome::Failure {
                    severity: Severity::Soft,
                    message: "not running here".to_string(),
                },
                actions,
            );
        };
        if local.generation != operation.generation || local.state != LocalState::Running {
            return self.refuse(
                &operation,
                "not running here in that generation".to_string(),
                actions,
            );
        }
        local.state = LocalState::MigratingOut;
        local.monitor_deadline_ms = None;
        let (generation, timeout_ms) = (local.generation, operation.timeout_ms);
        let revision = operation.revision;
        local.operation = Some(operation);
        let kind = DriverKind::MigrateOut {
            to,
            to_generation,
            revision,
        };
        let command = self.command(&resource, generation, kind, timeout_ms, now_ms);
        actions.push(NodeAction::Driver(command));
    }

    fn promote(&mut self, now_ms: u64, operation: Operation, actions: &mut Vec<NodeAction>) {
        let resource = operation.resource.clone();
        if !self.has_lease(now_ms) {
            return self.refuse(&operation, "this host holds no lease".to_string(), actions);
        }
        let Some(local) = self.resources.get_mut(&resource) else {
            return self.refuse(&operation, "not running here".to_string(), actions);
        };
        if local.generation != operation.generation || local.state != LocalState::Running {
            return self.refuse(
                &operation,
                "not running here in that generation".to_string(),
                actions,
            );
        }
        let kind = if operation.kind == OperationKind::Promote {
            DriverKind::Promote
        } else {
            DriverKind::Demote
        };
        let (generation, timeout_ms) = (local.generation, operation.timeout_ms);
        local.operation = Some(operation);
        let command = self.command(&resource, generation, kind, timeout_ms, now_ms);
        actions.push(NodeAction::Driver(command));
    }

    fn finish(
        &mut self,
        now_ms: u64,
        pending: Pending,
        outcome: DriverOutcome,
        actions: &mut Vec<NodeAction>,
    ) {
        let name = pending.resource.clone();
        let Some(local) = self.resources.get_mut(&name) else {
            return;
        };
        if local.generation != pending.generation {
            return;
        }
        let operation = local.operation.take();
        let report = |outcome: Outcome, actions: &mut Vec<NodeAction>| {
            if let Some(operation) = &operation {
                actions.push(NodeAction::ReportResult(OperationResult {
                    action_id: operation.action_id,
                    host: self.host.clone(),
                    resource: operation.resource.clone(),
                    generation: operation.generation,
                    outcome,
                }));
            }
        };
        let failure = match &outcome {
            DriverOutcome::Success => None,
            DriverOutcome::Failure { severity, message } => Some((*severity, message.clone())),
        };
        match (&pending.kind, failure) {
            (DriverKind::Start, None) => {
                local.state = LocalState::Running;
                local.running_since_ms = now_ms;
                local.next_monitor_ms = now_ms + local.monitor_interval_ms;
                report(Outcome::Success, actions);
            }
            (DriverKind::Start, Some((severity, message))) => {
                local.state = LocalState::Failed;
                *self.local_failures.entry(name).or_default() += 1;
                report(Outcome::Failure { severity, message }, actions);
            }
            (DriverKind::Stop, None) => {
                self.resources.remove(&name);
                report(Outcome::Success, actions);
            }
            (DriverKind::Stop, Some((severity, message))) => {
                local.state = LocalState::Failed;
                report(Outcome::Failure { severity, message }, actions);
            }
            (DriverKind::MigrateOut { to_generation, .. }, None) => {
                let to_generation = *to_generation;
                self.resources.remove(&name);
                self.migrated_out.insert(name, to_generation);
                report(Outcome::Success, actions);
            }
            (DriverKind::MigrateOut { .. }, Some((severity, message))) => {
                // The driver guarantees a failed migration leaves the source running.
                local.state = LocalState::Running;
                local.next_monitor_ms = now_ms;
                report(Outcome::Failure { severity, message }, actions);
            }
            (DriverKind::Promote | DriverKind::Demote, None) => report(Outcome::Success, actions),
            (DriverKind::Promote | DriverKind::Demote, Some((severity, message))) => {
                local.state = LocalState::Failed;
                report(Outcome::Failure { severity, message }, actions);
            }
            (DriverKind::Monitor, None) => {
                local.operation = operation;
                local.monitor_deadline_ms = None;
                local.next_monitor_ms = now_ms + local.monitor_interval_ms;
                if now_ms.saturating_sub(local.running_since_ms) >= self.config.failure_forget_ms {
                    self.local_failures.remove(&name);
                }
            }
            (DriverKind::Monitor, Some((severity, message))) => {
                local.operation = operation;
                if local.state == LocalState::Running {
                    self.monitor_failed(&name, severity, message, actions);
                }
            }
        }
    }

    fn monitor_failed(
        &mut self,
        name: &str,
        severity: Severity,
        message: String,
        actions: &mut Vec<NodeAction>,
    ) {
        let Some(local) = self.resources.get_mut(name) else {
            return;
        };
        local.state = LocalState::Failed;
        local.monitor_deadline_ms = None;
        let generation = local.generation;
        *self.local_failures.entry(name.to_string()).or_default() += 1;
        actions.push(NodeAction::ReportFailure(ResourceFailure {
            host: self.host.clone(),
            resource: name.to_string(),
            generation,
            severity,
            message,
        }));
    }

    fn schedule_monitors(&mut self, now_ms: u64, actions: &mut Vec<NodeAction>) {
        let due: Vec<String> = self
            .resources
            .iter()
            .filter(|(_, local)| {
                local.state == LocalState::Running
                    && local.monitor_deadline_ms.is_none()
                    && local.monitor_interval_ms > 0
                    && local.next_monitor_ms <= now_ms
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in due {
            let local = self.resources.get_mut(&name).expect("listed above");
            local.monitor_deadline_ms = Some(now_ms + local.monitor_timeout_ms);
            let (generation, timeout_ms) = (local.generation, local.monitor_timeout_ms);
            let command = DriverCommand {
                command_id: self.next_command_id,
                resource: name.clone(),
                generation,
                kind: DriverKind::Monitor,
                timeout_ms,
            };
            self.next_command_id += 1;
            self.pending.insert(
                command.command_id,
                Pending {
                    resource: name,
                    generation,
                    kind: DriverKind::Monitor,
                    deadline_ms: now_ms + timeout_ms,
                },
            );
            actions.push(NodeAction::Driver(command));
        }
    }

    fn expire_commands(&mut self, now_ms: u64, actions: &mut Vec<NodeAction>) {
        let expired: Vec<CommandId> = self
            .pending
            .iter()
            .filter(|(_, pending)| pending.deadline_ms <= now_ms)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let pending = self.pending.remove(&id).expect("listed above");
            let outcome = DriverOutcome::Failure {
                severity: Severity::Soft,
                message: format!("{} timed out", kind_name(&pending.kind)),
            };
            self.finish(now_ms, pending, outcome, actions);
        }
    }

    fn self_fence(&mut self, actions: &mut Vec<NodeAction>) {
        self.self_fenced = true;
        let resources: Vec<String> = self.resources.keys().cloned().collect();
        for (name, local) in &self.resources {
            let stopped = self.stopped_generation.entry(name.clone()).or_default();
            *stopped = (*stopped).max(local.generation);
        }
        self.resources.clear();
        self.pending.clear();
        actions.push(NodeAction::SelfFence {
            resources,
            stop_watchdog: self.config.watchdog,
        });
    }

    /// Ids of operations this agent still owes an answer (for tests and status).
    pub fn open_operations(&self) -> Vec<ActionId> {
        self.resources
            .values()
            .filter_map(|local| {
                local
                    .operation
                    .as_ref()
                    .map(|operation| operation.action_id)
            })
            .collect()
    }
}

fn kind_name(kind: &DriverKind) -> &'static str {
    match kind {
        DriverKind::Start => "start",
        DriverKind::Stop => "stop",
        DriverKind::Monitor => "monitor",
        DriverKind::MigrateOut { .. } => "migration",
        DriverKind::Promote => "promote",
        DriverKind::Demote => "demote",
    }
}
