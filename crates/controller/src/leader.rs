//! The leader's part: failure detection, fencing, and executing the scheduler's plans.
//!
//! Everything the controller acts on comes from the committed snapshot; what it keeps in
//! memory (heartbeat times, operations in flight, proposals not yet committed) is lost on a
//! leader change by design, and a new leader rebuilds it from the snapshot: it restarts every
//! host's timer, re-sends the operations of assignments in `starting`/`stopping`, and aborts
//! migrations it did not start itself.

use std::collections::{BTreeMap, BTreeSet};

use hafen_scheduler::{
    ActionKind, ClusterView, Host, HostState, Instance, Location, Request, Score, schedule,
};
use serde::{Deserialize, Serialize};

use crate::execution::{Execution, Limits};
use crate::types::{
    ActionId, ClusterSnapshot, FAIL_COUNT_INFINITY, FenceConfirmation, FenceResult, FencingState,
    Heartbeat, HeartbeatAck, HostMode, HostRecord, HostRole, Operation, OperationKind,
    OperationResult, Outcome, Phase, ResourceFailure, ResourceRecord, Severity, Transition,
};

/// The leader's timing and limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ControllerConfig {
    /// A member is suspected after this long without a heartbeat.
    pub node_timeout_ms: u64,
    /// Must equal the agents' [`crate::NodeConfig::lease_ms`].
    pub lease_ms: u64,
    /// Allowance for agent clocks running slow relative to the leader's.
    pub drift_margin_ms: u64,
    /// Operations (and proposals waiting to commit) in flight cluster-wide.
    pub max_parallel_operations: usize,
    /// Live migrations in flight per host (Pacemaker's `migration-limit`).
    pub migration_limit: usize,
    /// Added to an operation's own timeout for the round trip to the agent.
    pub operation_grace_ms: u64,
    /// Attempts of an operation that gets no answer before it counts as failed.
    pub operation_attempt_limit: u32,
    /// A proposal not reflected in a snapshot by then is forgotten (and re-planned).
    pub commit_timeout_ms: u64,
    pub fence_timeout_ms: u64,
    pub fence_retry_ms: u64,
    pub fence_retry_max_ms: u64,
    /// Failed fence attempts after which the controller waits for an operator.
    pub fence_attempt_limit: u32,
    /// Consecutive heartbeats that must disagree with the committed state before the
    /// controller acts on the difference (a resource missing, or running unassigned).
    pub reconcile_heartbeats: u32,
    /// migration-threshold when the configuration sets none, so that failures end in a
    /// relocation rather than restarting forever (bounded retries).
    pub fallback_migration_threshold: u32,
    /// Re-plan at least this often (failure-timeout expiries, forgotten proposals).
    pub replan_interval_ms: u64,
    /// Tests and the simulator only: confirm fencing as soon as a host is suspected. Breaks
    /// I2 on purpose so that the simulator's checker can be shown to catch it.
    #[doc(hidden)]
    pub unsafe_recover_without_fence_confirmation: bool,
}

impl Default for ControllerConfig {
    fn default() -> ControllerConfig {
        ControllerConfig {
            node_timeout_ms: 1_000,
            lease_ms: 1_500,
            drift_margin_ms: 200,
            max_parallel_operations: 64,
            migration_limit: 2,
            operation_grace_ms: 2_000,
            operation_attempt_limit: 3,
            commit_timeout_ms: 3_000,
            fence_timeout_ms: 60_000,
            fence_retry_ms: 1_000,
            fence_retry_max_ms: 16_000,
            fence_attempt_limit: 10,
            reconcile_heartbeats: 3,
            fallback_migration_threshold: 3,
            replan_interval_ms: 1_000,
            unsafe_recover_without_fence_confirmation: false,
        }
    }
}

/// What the leader's runtime does for the controller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Propose a transition to the replicated log; the controller sees it in a later snapshot.
    Commit(Transition),
    /// Send an operation to `operation.host`'s agent.
    Execute(Operation),
    /// Fence `host` through its topology; answer with [`ClusterController::handle_fence_result`].
    Fence {
        action_id: ActionId,
        host: String,
        levels: Vec<Vec<String>>,
    },
    /// Answer a heartbeat: renews the agent's lease.
    AckHeartbeat(HeartbeatAck),
    /// Something the operator should see in `status` and the event log.
    Status { message: String },
}

#[derive(Clone, Debug)]
struct InFlight {
    operation: Operation,
    deadline_ms: u64,
    attempts: u32,
    /// A stop of something running unassigned: nothing to commit afterwards.
    orphan: bool,
}

#[derive(Clone, Debug)]
struct FenceAttempt {
    action_id: Option<ActionId>,
    deadline_ms: u64,
    failures: u32,
    next_attempt_ms: u64,
}

#[derive(Clone, Debug, Default)]
struct Liveness {
    /// Last acknowledged heartbeat (what the host's lease follows); 0 after a fence.
    last_acked_ms: u64,
    /// Last heartbeat received at all (what suspicion follows).
    last_received_ms: u64,
    /// Running resources missing from consecutive heartbeats.
    missing: BTreeMap<String, u32>,
    /// (resource, generation) reported running without an assignment, consecutive heartbeats.
    orphans: BTreeMap<(String, u64), u32>,
    heard_while_fenced: bool,
}

/// The leader's controller. Create one per leadership term.
#[derive(Debug)]
pub struct ClusterController {
    config: ControllerConfig,
    snapshot: Option<ClusterSnapshot>,
    /// The snapshot's revision, stamped on operations.
    revision: u64,
    leader: bool,
    leadership_gained_ms: u64,
    liveness: BTreeMap<String, Liveness>,
    operations: BTreeMap<ActionId, InFlight>,
    fencing: BTreeMap<String, FenceAttempt>,
    /// Proposals not yet seen committed, by resource or host, with when they are forgotten.
    awaiting_resource: BTreeMap<String, u64>,
    awaiting_host: BTreeMap<String, u64>,
    /// Migrations this controller asked for: (resource, destination generation).
    own_migrations: BTreeSet<(String, u64)>,
    next_action_id: ActionId,
    /// The plan being carried out; a new one is made only when it is over.
    carrying: Option<Carrying>,
    dirty: bool,
    next_replan_ms: u64,
    status_shown: BTreeSet<String>,
    halted: Option<String>,
}

impl ClusterController {
    /// `action_id_base` keeps action ids unique across leaders (for example the Raft term
    /// shifted left by 32 bits).
    pub fn new(config: ControllerConfig, action_id_base: ActionId) -> ClusterController {
        ClusterController {
            config,
            snapshot: None,
            revision: 0,
            leader: false,
            leadership_gained_ms: 0,
            liveness: BTreeMap::new(),
            operations: BTreeMap::new(),
            fencing: BTreeMap::new(),
            awaiting_resource: BTreeMap::new(),
            awaiting_host: BTreeMap::new(),
            own_migrations: BTreeSet::new(),
            next_action_id: action_id_base + 1,
            carrying: None,
            dirty: true,
            next_replan_ms: 0,
            status_shown: BTreeSet::new(),
            halted: None,
        }
    }

    pub fn config(&self) -> &ControllerConfig {
        &self.config
    }

    /// Why the controller stopped acting, when one of its invariants broke (a bug).
    pub fn halted(&self) -> Option<&str> {
        self.halted.as_deref()
    }

    pub fn is_leader(&self) -> bool {
        self.leader
    }

    /// This node became leader: every host's timer starts afresh now, so a leader change
    /// never causes a false failover.
    pub fn handle_leadership_gained(&mut self, now_ms: u64) -> Vec<Action> {
        self.leader = true;
        self.leadership_gained_ms = now_ms;
        self.liveness.clear();
        self.operations.clear();
        self.fencing.clear();
        self.awaiting_resource.clear();
        self.awaiting_host.clear();
        self.own_migrations.clear();
        self.status_shown.clear();
        self.carrying = None;
        self.dirty = true;
        self.act(now_ms)
    }

    pub fn handle_leadership_lost(&mut self, _now_ms: u64) -> Vec<Action> {
        self.leader = false;
        self.carrying = None;
        self.operations.clear();
        self.fencing.clear();
        self.awaiting_resource.clear();
        self.awaiting_host.clear();
        Vec::new()
    }

    /// The committed state after a commit (or at start).
    pub fn handle_snapshot(&mut self, now_ms: u64, snapshot: ClusterSnapshot) -> Vec<Action> {
        if let Some(previous) = &self.snapshot {
            let changed_resources: Vec<String> = self
                .awaiting_resource
                .keys()
                .filter(|name| previous.resource(name) != snapshot.resource(name))
                .cloned()
                .collect();
            for name in changed_resources {
                self.awaiting_resource.remove(&name);
            }
            let changed_hosts: Vec<String> = self
                .awaiting_host
                .keys()
                .filter(|name| previous.host(name) != snapshot.host(name))
                .cloned()
                .collect();
            for name in changed_hosts {
                self.awaiting_host.remove(&name);
            }
            if !previous.quorate && snapshot.quorate {
                self.status_shown.clear();
            }
        }
        let mut actions = Vec::new();
        if let Some(broken) = single_active_violation(&snapshot) {
            self.halt(broken, &mut actions);
        }
        self.revision = snapshot.revision;
        self.snapshot = Some(snapshot);
        self.dirty = true;
        actions.extend(self.act(now_ms));
        actions
    }

    pub fn handle_heartbeat(&mut self, now_ms: u64, heartbeat: Heartbeat) -> Vec<Action> {
        let mut actions = Vec::new();
        if !self.leader || self.halted.is_some() {
            return actions;
        }
        let Some(snapshot) = &self.snapshot else {
            return actions;
        };
        if !snapshot.quorate {
            return actions;
        }
        let Some(host) = snapshot.host(&heartbeat.host) else {
            return actions;
        };
        let revision = snapshot.revision;
        match &host.fencing {
            FencingState::None => {
                let host = host.clone();
                // A host heard for the first time in this leadership can take work now.
                let first = !self.heard(&heartbeat.host);
                let liveness = self.liveness.entry(heartbeat.host.clone()).or_default();
                liveness.last_acked_ms = now_ms;
                liveness.last_received_ms = now_ms;
                self.dirty |= first;
                actions.push(Action::AckHeartbeat(HeartbeatAck {
                    host: heartbeat.host.clone(),
                    sent_at_ms: heartbeat.sent_at_ms,
                    revision,
                }));
                if host.mode != HostMode::Maintenance {
                    self.reconcile(now_ms, &heartbeat, &mut actions);
                }
                if first {
                    actions.extend(self.act(now_ms));
                }
            }
            // Never renew the lease of a suspected host: it must lapse for the fencing
            // confirmation by lease expiry to hold. Its arrival counts: without a device
            // to race, a suspected host that answers again is cleared.
            FencingState::Unclean { .. } => {
                self.liveness
                    .entry(heartbeat.host.clone())
                    .or_default()
                    .last_received_ms = now_ms;
                actions.extend(self.act(now_ms));
            }
            FencingState::Fenced { .. } => {
                let liveness = self.liveness.entry(heartbeat.host.clone()).or_default();
                liveness.heard_while_fenced = true;
                liveness.last_received_ms = now_ms;
                liveness.last_acked_ms = 0;
                self.dirty = true;
                actions.extend(self.act(now_ms));
            }
        }
        actions
    }

    pub fn handle_operation_result(&mut self, now_ms: u64, result: OperationResult) -> Vec<Action> {
        let mut actions = Vec::new();
        if !self.leader || self.halted.is_some() {
            return actions;
        }
        let Some(in_flight) = self.operations.get(&result.action_id) else {
            return actions;
        };
        let operation = &in_flight.operation;
        if operation.host != result.host
            || operation.resource != result.resource
            || operation.generation != result.generation
        {
            return actions;
        }
        let in_flight = self
            .operations
            .remove(&result.action_id)
            .expect("looked up above");
        let transition = result_transition(now_ms, &in_flight, &result.outcome);
        if let Some(transition) = transition {
            self.propose(now_ms, transition, &mut actions);
        }
        self.dirty = true;
        actions.extend(self.act(now_ms));
        actions
    }

    /// A monitor failed on an agent.
    pub fn handle_resource_failure(
        &mut self,
        now_ms: u64,
        failure: ResourceFailure,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        if !self.active() {
            return actions;
        }
        let snapshot = self.snapshot.as_ref().expect("active implies a snapshot");
        let running = snapshot
            .resource(&failure.resource)
            .and_then(|record| record.assignment_on(&failure.host))
            .is_some_and(|assignment| {
                assignment.generation == failure.generation && assignment.phase == Phase::Running
            });
        let maintenance = snapshot
            .host(&failure.host)
            .is_none_or(|host| host.mode == HostMode::Maintenance);
        if running && !maintenance {
            self.propose(
                now_ms,
                Transition::Failed {
                    resource: failure.resource,
                    host: failure.host,
                    generation: failure.generation,
                    severity: failure.severity,
                    at_ms: now_ms,
                },
                &mut actions,
            );
        }
        actions
    }

    pub fn handle_fence_result(&mut self, now_ms: u64, result: FenceResult) -> Vec<Action> {
        let mut actions = Vec::new();
        if !self.leader || self.halted.is_some() {
            return actions;
        }
        let Some(attempt) = self.fencing.get_mut(&result.host) else {
            return actions;
        };
        if attempt.action_id != Some(result.action_id) {
            return actions;
        }
        attempt.action_id = None;
        if result.success {
            self.propose(
                now_ms,
                Transition::HostFenced {
                    host: result.host.clone(),
                    how: FenceConfirmation::Device,
                },
                &mut actions,
            );
        } else {
            self.fence_failed(now_ms, &result.host, &result.message, &mut actions);
        }
        actions
    }

    /// The log refused a proposed transition (see [`crate::apply_transition`]): what it was
    /// waiting for will not come, so the controller re-plans at once.
    pub fn handle_rejected(&mut self, now_ms: u64, transition: &Transition) -> Vec<Action> {
        match transition {
            Transition::HostSuspected { host, .. }
            | Transition::HostFenced { host, .. }
            | Transition::HostRejoined { host } => {
                self.awaiting_host.remove(host);
            }
            other => {
                if let Some(resource) = other.resource() {
                    self.awaiting_resource.remove(resource);
                }
            }
        }
        self.dirty = true;
        self.act(now_ms)
    }

    pub fn handle_tick(&mut self, now_ms: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        if !self.leader || self.halted.is_some() {
            return actions;
        }
        self.awaiting_resource.retain(|_, until| *until > now_ms);
        self.awaiting_host.retain(|_, until| *until > now_ms);
        self.expire_operations(now_ms, &mut actions);
        self.expire_fencing(now_ms, &mut actions);
        if now_ms >= self.next_replan_ms {
            self.dirty = true;
        }
        actions.extend(self.act(now_ms));
        actions
    }

    fn active(&self) -> bool {
        self.leader
            && self.halted.is_none()
            && self
                .snapshot
                .as_ref()
                .is_some_and(|snapshot| snapshot.quorate)
    }

    fn halt(&mut self, reason: String, actions: &mut Vec<Action>) {
        if self.halted.is_none() {
            actions.push(Action::Status {
                message: format!("controller halted, invariant broken: {reason}"),
            });
            self.halted = Some(reason);
        }
    }

    fn status(&mut self, message: String, actions: &mut Vec<Action>) {
        if self.status_shown.insert(message.clone()) {
            actions.push(Action::Status { message });
        }
    }

    fn propose(&mut self, now_ms: u64, transition: Transition, actions: &mut Vec<Action>) {
        let until = now_ms + self.config.commit_timeout_ms;
        match &transition {
            Transition::HostSuspected { host, .. }
            | Transition::HostFenced { host, .. }
            | Transition::HostRejoined { host } => {
                self.awaiting_host.insert(host.clone(), until);
            }
            other => {
                if let Some(resource) = other.resource() {
                    self.awaiting_resource.insert(resource.to_string(), until);
                }
            }
        }
        actions.push(Action::Commit(transition));
    }

    fn new_action_id(&mut self) -> ActionId {
        let id = self.next_action_id;
        self.next_action_id += 1;
        id
    }

    /// The main step: detect, fence, drive committed transitions, plan.
    fn act(&mut self, now_ms: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        if !self.leader || self.halted.is_some() {
            return actions;
        }
        let Some(snapshot) = &self.snapshot else {
            return actions;
        };
        if !snapshot.quorate {
            let mut message =
                "this partition has no quorum: nothing is started or fenced".to_string();
            if snapshot.two_members_without_witness() {
                message.push_str(
                    "; two members without a witness cannot tell a lost host from a \
                     partition: automatic recovery is refused, add a witness",
                );
            }
            self.status(message, &mut actions);
            return actions;
        }
        self.decide_fencing(now_ms, &mut actions);
        self.drive_transitions(now_ms, &mut actions);
        self.carry_on(now_ms, &mut actions);
        if self.dirty && self.carrying.is_none() {
            self.dirty = false;
            self.next_replan_ms = now_ms + self.config.replan_interval_ms;
            self.run_plan(now_ms, &mut actions);
        }
        actions
    }

    fn snapshot(&self) -> &ClusterSnapshot {
        self.snapshot.as_ref().expect("act checked the snapshot")
    }

    /// Whether a heartbeat of `host` was acknowledged during this leadership (and since its
    /// last fence): only then may it hold a lease.
    fn heard(&self, host: &str) -> bool {
        self.liveness.get(host).is_some_and(|liveness| {
            liveness.last_acked_ms > 0 && liveness.last_acked_ms >= self.leadership_gained_ms
        })
    }

    fn last_received_ms(&self, host: &str) -> u64 {
        self.liveness
            .get(host)
            .map_or(0, |liveness| liveness.last_received_ms)
            .max(self.leadership_gained_ms)
    }

    /// The basis of the lease-expiry confirmation: no lease the host holds can have been
    /// granted by this leader after this, and none by an earlier leader after this
    /// leadership began.
    fn last_heard_ms(&self, host: &str) -> u64 {
        self.liveness
            .get(host)
            .map_or(0, |liveness| liveness.last_acked_ms)
            .max(self.leadership_gained_ms)
    }

    /// Suspects silent members, confirms the fences of unclean ones and lets fenced ones
    /// that heartbeat rejoin; the rules are [`crate::fencing::judge`]'s, which the daemon's
    /// leader follows too.
    fn decide_fencing(&mut self, now_ms: u64, actions: &mut Vec<Action>) {
        use crate::fencing::{FencingPolicy, MemberCase, Standing, Verdict, judge};
        let hosts: Vec<HostRecord> = self.snapshot().members().cloned().collect();
        self.fencing.retain(|name, _| {
            hosts.iter().any(|host| {
                host.name == *name && matches!(host.fencing, FencingState::Unclean { .. })
            })
        });
        let policy = FencingPolicy {
            two_without_witness: self.snapshot().two_members_without_witness(),
            unsafe_recovery: self.config.unsafe_recover_without_fence_confirmation,
        };
        // Every host votes in the modelled log.
        let voters: Vec<String> = self
            .snapshot()
            .hosts
            .iter()
            .map(|host| host.name.clone())
            .collect();
        let heard_lately = |this: &Self, host: &str| {
            now_ms.saturating_sub(this.last_received_ms(host)) <= this.config.node_timeout_ms
        };
        for host in hosts {
            if self.awaiting_host.contains_key(&host.name) {
                continue;
            }
            let standing = match host.fencing {
                FencingState::None => Standing::Clean,
                FencingState::Unclean { .. } => Standing::Unclean,
                FencingState::Fenced { .. } => Standing::Fenced,
            };
            let alive = match standing {
                Standing::Fenced => self
                    .liveness
                    .get(&host.name)
                    .is_some_and(|liveness| liveness.heard_while_fenced),
                _ => heard_lately(self, &host.name),
            };
            let others_alive = voters
                .iter()
                .filter(|voter| **voter != host.name && heard_lately(self, voter))
                .count();
            let lapsed_at_ms = self.last_heard_ms(&host.name)
                + self.config.lease_ms
                + self.config.drift_margin_ms
                + host.watchdog_timeout_ms.unwrap_or(0);
            let case = MemberCase {
                standing,
                alive,
                method: host.fencing_method,
                lease_certainly_lapsed: now_ms >= lapsed_at_ms,
                quorum_without: crate::fencing::majority_without(others_alive, voters.len()),
            };
            match judge(&host.name, &case, &policy) {
                Verdict::Nothing => {}
                Verdict::Suspect => {
                    let silent_ms = now_ms.saturating_sub(self.last_received_ms(&host.name));
                    self.propose(
                        now_ms,
                        Transition::HostSuspected {
                            host: host.name.clone(),
                            reason: format!("no heartbeat for {silent_ms} ms"),
                        },
                        actions,
                    );
                }
                Verdict::Clear | Verdict::Rejoin => {
                    if let Some(liveness) = self.liveness.get_mut(&host.name) {
                        liveness.heard_while_fenced = false;
                    }
                    self.propose(
                        now_ms,
                        Transition::HostRejoined {
                            host: host.name.clone(),
                        },
                        actions,
                    );
                }
                Verdict::FenceByDevice => self.fence_by_device(now_ms, &host, actions),
                Verdict::ConfirmLeaseExpired | Verdict::ConfirmUnsafe => self.propose(
                    now_ms,
                    Transition::HostFenced {
                        host: host.name.clone(),
                        how: FenceConfirmation::LeaseExpired,
                    },
                    actions,
                ),
                Verdict::Refuse(message) => self.status(message, actions),
            }
        }
    }

    fn fence_by_device(&mut self, now_ms: u64, host: &HostRecord, actions: &mut Vec<Action>) {
        let attempt = self
            .fencing
            .entry(host.name.clone())
            .or_insert(FenceAttempt {
                action_id: None,
                deadline_ms: 0,
                failures: 0,
                next_attempt_ms: now_ms,
            });
        if attempt.action_id.is_some() || now_ms < attempt.next_attempt_ms {
            return;
        }
        if attempt.failures >= self.config.fence_attempt_limit {
            let message = format!(
                "fencing host {} failed {} times: waiting for the operator \
                 (`node fence {}` or `node confirm-fenced {}`)",
                host.name, attempt.failures, host.name, host.name
            );
            self.status(message, actions);
            return;
        }
        let action_id = self.next_action_id;
        self.next_action_id += 1;
        let attempt = self.fencing.get_mut(&host.name).expect("inserted above");
        attempt.action_id = Some(action_id);
        attempt.deadline_ms = now_ms + self.config.fence_timeout_ms;
        actions.push(Action::Fence {
            action_id,
            host: host.name.clone(),
            levels: host.fence_levels.clone(),
        });
    }

    fn fence_failed(&mut self, now_ms: u64, host: &str, message: &str, actions: &mut Vec<Action>) {
        let Some(attempt) = self.fencing.get_mut(host) else {
            return;
        };
        attempt.action_id = None;
        attempt.failures += 1;
        let shift = attempt.failures.saturating_sub(1).min(16);
        let backoff_ms = (self.config.fence_retry_ms << shift).min(self.config.fence_retry_max_ms);
        attempt.next_attempt_ms = now_ms + backoff_ms;
        let failures = attempt.failures;
        self.status(
            format!("fencing host {host} failed (attempt {failures}): {message}"),
            actions,
        );
    }

    fn expire_fencing(&mut self, now_ms: u64, actions: &mut Vec<Action>) {
        let expired: Vec<String> = self
            .fencing
            .iter()
            .filter(|(_, attempt)| attempt.action_id.is_some() && attempt.deadline_ms <= now_ms)
            .map(|(host, _)| host.clone())
            .collect();
        for host in expired {
            self.fence_failed(now_ms, &host, "timed out", actions);
        }
    }

    fn expire_operations(&mut self, now_ms: u64, actions: &mut Vec<Action>) {
        let expired: Vec<ActionId> = self
            .operations
            .iter()
            .filter(|(_, in_flight)| in_flight.deadline_ms <= now_ms)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let in_flight = self.operations.get_mut(&id).expect("listed above");
            if in_flight.attempts < self.config.operation_attempt_limit {
                // The agent may just not have answered: ask again (agents are idempotent).
                in_flight.attempts += 1;
                in_flight.deadline_ms =
                    now_ms + in_flight.operation.timeout_ms + self.config.operation_grace_ms;
                actions.push(Action::Execute(in_flight.operation.clone()));
                continue;
            }
            let in_flight = self.operations.remove(&id).expect("listed above");
            let outcome = Outcome::Failure {
                severity: Severity::Soft,
                message: "timed out".to_string(),
            };
            if let Some(transition) = result_transition(now_ms, &in_flight, &outcome) {
                self.propose(now_ms, transition, actions);
            }
            self.dirty = true;
        }
    }

    fn in_flight_on(&self, resource: &str, host: &str) -> bool {
        self.operations.values().any(|in_flight| {
            in_flight.operation.resource == resource && in_flight.operation.host == host
        })
    }

    fn busy(&self, resource: &str) -> bool {
        self.awaiting_resource.contains_key(resource)
            || self
                .operations
                .values()
                .any(|in_flight| in_flight.operation.resource == resource)
    }

    fn execute(
        &mut self,
        now_ms: u64,
        record: &ResourceRecord,
        (host, generation): (&str, u64),
        kind: OperationKind,
        orphan: bool,
        actions: &mut Vec<Action>,
    ) {
        let timeouts = record.timeouts;
        let timeout_ms = match kind {
            OperationKind::Start | OperationKind::Promote | OperationKind::Demote => {
                timeouts.start_timeout_ms
            }
            OperationKind::Stop => timeouts.stop_timeout_ms,
            OperationKind::Migrate { .. } => timeouts.migrate_timeout_ms,
        };
        let operation = Operation {
            action_id: self.new_action_id(),
            host: host.to_string(),
            resource: record.config.name.clone(),
            kind,
            generation,
            revision: self.revision,
            timeout_ms,
            monitor_interval_ms: timeouts.monitor_interval_ms,
            monitor_timeout_ms: timeouts.monitor_timeout_ms,
        };
        self.operations.insert(
            operation.action_id,
            InFlight {
                operation: operation.clone(),
                deadline_ms: now_ms + timeout_ms + self.config.operation_grace_ms,
                attempts: 1,
                orphan,
            },
        );
        actions.push(Action::Execute(operation));
    }

    /// Sends the operation each committed `starting`, `stopping` or migration needs.
    fn drive_transitions(&mut self, now_ms: u64, actions: &mut Vec<Action>) {
        // Taken out while `self` is mutated; put back below.
        let snapshot = self.snapshot.take().expect("act checked the snapshot");
        self.drive_transitions_of(&snapshot, now_ms, actions);
        self.snapshot = Some(snapshot);
    }

    fn drive_transitions_of(
        &mut self,
        snapshot: &ClusterSnapshot,
        now_ms: u64,
        actions: &mut Vec<Action>,
    ) {
        for record in &snapshot.resources {
            for assignment in &record.assignments {
                let Some(host) = snapshot.host(&assignment.host) else {
                    continue;
                };
                // An unclean host's resources are left exactly as they are (I2).
                // A commit pending for it changes what is needed: wait for it.
                if host.fencing != FencingState::None
                    || self.awaiting_resource.contains_key(&record.config.name)
                    || self.in_flight_on(&record.config.name, &host.name)
                {
                    continue;
                }
                let kind = match &assignment.phase {
                    Phase::Starting => OperationKind::Start,
                    Phase::Stopping => OperationKind::Stop,
                    Phase::MigratingTo { host: to } => {
                        let Some(destination) = record.assignment_on(to) else {
                            continue;
                        };
                        let key = (record.config.name.clone(), destination.generation);
                        if !self.own_migrations.contains(&key) {
                            if !self.awaiting_resource.contains_key(&record.config.name) {
                                self.propose(
                                    now_ms,
                                    Transition::MigrationAborted {
                                        resource: record.config.name.clone(),
                                    },
                                    actions,
                                );
                            }
                            continue;
                        }
                        OperationKind::Migrate {
                            to: to.clone(),
                            to_generation: destination.generation,
                        }
                    }
                    _ => continue,
                };
                self.execute(
                    now_ms,
                    record,
                    (&host.name, assignment.generation),
                    kind,
                    false,
                    actions,
                );
            }
        }
    }

    /// Compares a heartbeat with the committed assignments of its host.
    fn reconcile(&mut self, now_ms: u64, heartbeat: &Heartbeat, actions: &mut Vec<Action>) {
        let snapshot = self.snapshot.take().expect("heartbeats need a snapshot");
        self.reconcile_with(&snapshot, now_ms, heartbeat, actions);
        self.snapshot = Some(snapshot);
    }

    fn reconcile_with(
        &mut self,
        snapshot: &ClusterSnapshot,
        now_ms: u64,
        heartbeat: &Heartbeat,
        actions: &mut Vec<Action>,
    ) {
        let limit = self.config.reconcile_heartbeats;
        let reported: BTreeSet<(String, u64)> = heartbeat.running.iter().cloned().collect();
        let mut missing_now: Vec<(String, u64)> = Vec::new();
        let mut orphans_now: Vec<(String, u64)> = Vec::new();
        for record in &snapshot.resources {
            if let Some(assignment) = record.assignment_on(&heartbeat.host)
                && assignment.phase == Phase::Running
                && !reported.contains(&(record.config.name.clone(), assignment.generation))
            {
                missing_now.push((record.config.name.clone(), assignment.generation));
            }
        }
        for (resource, generation) in &reported {
            let assigned = snapshot
                .resource(resource)
                .and_then(|record| record.assignment_on(&heartbeat.host))
                .is_some_and(|assignment| assignment.generation == *generation);
            if !assigned {
                orphans_now.push((resource.clone(), *generation));
            }
        }
        let liveness = self.liveness.entry(heartbeat.host.clone()).or_default();
        let mut missing = BTreeMap::new();
        for (resource, _) in &missing_now {
            missing.insert(
                resource.clone(),
                liveness.missing.get(resource).copied().unwrap_or(0) + 1,
            );
        }
        liveness.missing = missing;
        let mut orphans = BTreeMap::new();
        for key in &orphans_now {
            orphans.insert(
                key.clone(),
                liveness.orphans.get(key).copied().unwrap_or(0) + 1,
            );
        }
        liveness.orphans = orphans;
        let missing_due: Vec<String> = liveness
            .missing
            .iter()
            .filter(|(_, count)| **count >= limit)
            .map(|(resource, _)| resource.clone())
            .collect();
        let orphans_due: Vec<(String, u64)> = liveness
            .orphans
            .iter()
            .filter(|(_, count)| **count >= limit)
            .map(|(key, _)| key.clone())
            .collect();
        for resource in missing_due {
            if self.busy(&resource) {
                continue;
            }
            let generation = missing_now
                .iter()
                .find(|(name, _)| *name == resource)
                .map(|(_, generation)| *generation)
                .expect("due entries are missing now");
            self.propose(
                now_ms,
                Transition::Failed {
                    resource,
                    host: heartbeat.host.clone(),
                    generation,
                    severity: Severity::Soft,
                    at_ms: now_ms,
                },
                actions,
            );
        }
        for (resource, generation) in orphans_due {
            if self.in_flight_on(&resource, &heartbeat.host) {
                continue;
            }
            let Some(record) = snapshot.resource(&resource) else {
                continue;
            };
            self.execute(
                now_ms,
                record,
                (&heartbeat.host, generation),
                OperationKind::Stop,
                true,
                actions,
            );
        }
    }

    fn run_plan(&mut self, now_ms: u64, actions: &mut Vec<Action>) {
        let view = scheduler_view(self.snapshot(), &self.config);
        let request = Request {
            now_ms,
            include_scores: false,
        };
        let plan = match schedule(&view, &request) {
            Ok(plan) => plan,
            Err(error) => {
                self.status(format!("cannot plan: {error}"), actions);
                return;
            }
        };
        let snapshot = self.snapshot();
        let in_plan: BTreeSet<String> = plan
            .actions
            .iter()
            .map(|action| action.resource.clone())
            .collect();
        let under_way: Vec<(String, String)> = snapshot
            .resources
            .iter()
            .flat_map(|record| &record.assignments)
            .filter_map(|assignment| match &assignment.phase {
                Phase::MigratingTo { host: to } => Some((assignment.host.clone(), to.clone())),
                _ => None,
            })
            .collect();
        let limits = Limits {
            parallel: self.config.max_parallel_operations,
            migrations_per_host: self.config.migration_limit,
        };
        let execution = Execution::new(
            plan.actions,
            limits,
            under_way
                .iter()
                .map(|(from, to)| (from.as_str(), to.as_str())),
        );
        self.carrying = Some(Carrying {
            basis: Basis::of(snapshot, &in_plan),
            in_plan,
            execution,
            launched: BTreeMap::new(),
            launched_any: false,
            aborted: false,
        });
        self.carry_on(now_ms, actions);
    }

    /// Carries the current plan on, as Pacemaker's transition engine carries out a
    /// transition: finished steps are noticed in the committed snapshot, the steps after
    /// them launched ([`Execution`]: orderings, parallelism, the per-host migration limit);
    /// a committed change outside the plan aborts it (nothing more is launched); once it
    /// ends the controller plans afresh. A resource still starting counts as placed for
    /// the scheduler, so planning anew while a plan runs would start what is ordered
    /// after it too early.
    fn carry_on(&mut self, now_ms: u64, actions: &mut Vec<Action>) {
        let Some(mut carrying) = self.carrying.take() else {
            return;
        };
        let snapshot = self.snapshot.take().expect("act checked the snapshot");
        if !carrying.aborted && carrying.basis != Basis::of(&snapshot, &carrying.in_plan) {
            carrying.aborted = true;
            carrying.execution.abort();
        }
        let ids: Vec<u32> = carrying.launched.keys().copied().collect();
        for id in ids {
            let launched = carrying.launched.get_mut(&id).expect("listed above");
            match self.progress(&snapshot, launched, now_ms) {
                Progress::Running => {}
                Progress::Finished(succeeded) => {
                    carrying.launched.remove(&id);
                    carrying.execution.finished(id, succeeded);
                }
                // An aborted plan starts nothing new: the stop is done, the start would be
                // a new step made from a stale plan.
                Progress::SecondHalf(_) if carrying.aborted => {
                    carrying.launched.remove(&id);
                    carrying.execution.finished(id, false);
                }
                Progress::SecondHalf(transition) => {
                    launched.second_half = true;
                    launched.deadline_ms =
                        now_ms + self.step_allowance(&snapshot, &launched.action);
                    self.propose(now_ms, transition, actions);
                }
            }
        }
        // One step per resource at a time: its commit makes the resource busy until seen.
        let mut launches = Vec::new();
        let mut stepped: BTreeSet<String> = BTreeSet::new();
        let step = carrying.execution.next(|action| {
            if stepped.contains(&action.resource) {
                return false;
            }
            match self.first_step(&snapshot, action) {
                Some(launch) => {
                    stepped.insert(action.resource.clone());
                    launches.push(launch);
                    true
                }
                None => false,
            }
        });
        for (action, launch) in step.launch.into_iter().zip(launches) {
            carrying.launched_any = true;
            let deadline_ms = now_ms + self.step_allowance(&snapshot, &action);
            carrying.launched.insert(
                action.id,
                Launched {
                    action,
                    deadline_ms,
                    second_half: false,
                },
            );
            match launch {
                Launch::Commit(transition) => {
                    if let Transition::MigrationRequested {
                        resource,
                        generation,
                        ..
                    } = &transition
                    {
                        self.own_migrations.insert((resource.clone(), *generation));
                    }
                    self.propose(now_ms, transition, actions);
                }
                Launch::Execute {
                    resource,
                    host,
                    generation,
                    kind,
                } => {
                    let record = snapshot
                        .resource(&resource)
                        .expect("first_step found the resource");
                    self.execute(now_ms, record, (&host, generation), kind, false, actions);
                }
            }
        }
        // Nothing runs and nothing waiting can start (a host not heard from, no room):
        // the plan is over; the next one decides.
        if carrying.execution.running() == 0 {
            carrying.execution.abort();
        }
        if carrying.execution.is_done() {
            // Plan again with what the plan changed; a plan that launched nothing waits
            // for the next change or the re-plan interval.
            self.dirty |= carrying.launched_any;
        } else {
            self.carrying = Some(carrying);
        }
        self.snapshot = Some(snapshot);
    }

    /// How long a launched step may take before it counts as failed: its commits and its
    /// operations with every retry (a safety net; operations expire on their own).
    fn step_allowance(&self, snapshot: &ClusterSnapshot, action: &hafen_scheduler::Action) -> u64 {
        let timeouts = snapshot
            .resource(&action.resource)
            .map(|record| record.timeouts)
            .unwrap_or_default();
        let operation = timeouts
            .start_timeout_ms
            .max(timeouts.stop_timeout_ms)
            .max(timeouts.migrate_timeout_ms)
            + self.config.operation_grace_ms;
        2 * self.config.commit_timeout_ms
            + u64::from(self.config.operation_attempt_limit) * operation
    }

    /// Where a launched step stands in the committed snapshot.
    fn progress(&self, snapshot: &ClusterSnapshot, launched: &Launched, now_ms: u64) -> Progress {
        let action = &launched.action;
        let hosts: Vec<&str> = match &action.kind {
            ActionKind::Start { host }
            | ActionKind::Stop { host }
            | ActionKind::Restart { host }
            | ActionKind::Promote { host }
            | ActionKind::Demote { host } => vec![host],
            ActionKind::Move { from, to } | ActionKind::Migrate { from, to } => vec![from, to],
        };
        // A host lost on the way: its part waits for fencing, the plan does not.
        if hosts.iter().any(|host| {
            snapshot
                .host(host)
                .is_none_or(|record| record.fencing != FencingState::None)
        }) || now_ms >= launched.deadline_ms
        {
            return Progress::Finished(false);
        }
        let Some(record) = snapshot.resource(&action.resource) else {
            return Progress::Finished(false);
        };
        let in_transit = record.assignments.iter().any(|assignment| {
            matches!(
                assignment.phase,
                Phase::Starting
                    | Phase::Stopping
                    | Phase::MigratingTo { .. }
                    | Phase::MigratingFrom { .. }
            )
        });
        if self.busy(&action.resource) || in_transit {
            return Progress::Running;
        }
        let running_on = |host: &str| {
            record
                .assignment_on(host)
                .is_some_and(|assignment| assignment.phase == Phase::Running)
        };
        match &action.kind {
            ActionKind::Start { host } => Progress::Finished(running_on(host)),
            ActionKind::Stop { host } => Progress::Finished(record.assignment_on(host).is_none()),
            ActionKind::Migrate { to, .. } => Progress::Finished(running_on(to)),
            ActionKind::Promote { host } | ActionKind::Demote { host } => {
                let promoted = matches!(action.kind, ActionKind::Promote { .. });
                Progress::Finished(record.assignment_on(host).is_some_and(|assignment| {
                    assignment.phase == Phase::Running && assignment.promoted == promoted
                }))
            }
            ActionKind::Restart { host } => {
                self.second_half(snapshot, launched, record, host, host)
            }
            ActionKind::Move { from, to } => self.second_half(snapshot, launched, record, from, to),
        }
    }

    /// A move or restart: once its stop on `from` is done, its start on `to`.
    fn second_half(
        &self,
        snapshot: &ClusterSnapshot,
        launched: &Launched,
        record: &ResourceRecord,
        from: &str,
        to: &str,
    ) -> Progress {
        if launched.second_half {
            return Progress::Finished(
                record
                    .assignment_on(to)
                    .is_some_and(|assignment| assignment.phase == Phase::Running),
            );
        }
        if record.assignment_on(from).is_some() {
            return Progress::Finished(false);
        }
        match snapshot.host(to) {
            Some(host) if snapshot.fits(record, host) && self.heard(to) => {
                Progress::SecondHalf(Transition::Assign {
                    resource: record.config.name.clone(),
                    host: to.to_string(),
                    generation: record.generation + 1,
                })
            }
            _ => Progress::Finished(false),
        }
    }

    /// What launches `action` now, or `None` when it cannot run yet.
    fn first_step(
        &self,
        snapshot: &ClusterSnapshot,
        action: &hafen_scheduler::Action,
    ) -> Option<Launch> {
        if self.busy(&action.resource) {
            return None;
        }
        let record = snapshot.resource(&action.resource)?;
        let transition = match &action.kind {
            ActionKind::Start { host } => {
                let host = snapshot.host(host)?;
                // The scheduler filters by capacity; what is committed may still hold a
                // migration's source, so check again (I5). A host not heard from since
                // this leadership began may hold no lease and would refuse.
                if !snapshot.fits(record, host) || !self.heard(&host.name) {
                    return None;
                }
                Transition::Assign {
                    resource: action.resource.clone(),
                    host: host.name.clone(),
                    generation: record.generation + 1,
                }
            }
            ActionKind::Stop { host }
            | ActionKind::Restart { host }
            | ActionKind::Move { from: host, .. } => {
                let assignment = record.assignment_on(host)?;
                if !matches!(assignment.phase, Phase::Running | Phase::Failed) {
                    return None;
                }
                Transition::StopRequested {
                    resource: action.resource.clone(),
                    host: host.clone(),
                    generation: assignment.generation,
                }
            }
            ActionKind::Migrate { from, to } => {
                let destination = snapshot.host(to)?;
                if !snapshot.fits(record, destination) || !self.heard(to) {
                    return None;
                }
                Transition::MigrationRequested {
                    resource: action.resource.clone(),
                    from: from.clone(),
                    to: to.clone(),
                    generation: record.generation + 1,
                }
            }
            ActionKind::Promote { host } | ActionKind::Demote { host } => {
                let assignment = record.assignment_on(host)?;
                if assignment.phase != Phase::Running {
                    return None;
                }
                let kind = if matches!(action.kind, ActionKind::Promote { .. }) {
                    OperationKind::Promote
                } else {
                    OperationKind::Demote
                };
                return Some(Launch::Execute {
                    resource: action.resource.clone(),
                    host: host.clone(),
                    generation: assignment.generation,
                    kind,
                });
            }
        };
        Some(Launch::Commit(transition))
    }
}

/// The plan being carried out, and what it was made from.
#[derive(Debug)]
struct Carrying {
    execution: Execution,
    in_plan: BTreeSet<String>,
    basis: Basis,
    launched: BTreeMap<u32, Launched>,
    launched_any: bool,
    aborted: bool,
}

/// What a plan depends on besides its own resources: a change to any of it aborts the plan.
#[derive(Debug, PartialEq)]
struct Basis {
    hosts: Vec<HostRecord>,
    others: Vec<ResourceRecord>,
    options: hafen_scheduler::ClusterOptions,
    groups: Vec<hafen_scheduler::Group>,
    clones: Vec<hafen_scheduler::ResourceClone>,
    constraints: hafen_scheduler::Constraints,
    failover_domains: Vec<hafen_scheduler::FailoverDomain>,
}

impl Basis {
    fn of(snapshot: &ClusterSnapshot, in_plan: &BTreeSet<String>) -> Basis {
        Basis {
            hosts: snapshot.hosts.clone(),
            others: snapshot
                .resources
                .iter()
                .filter(|record| !in_plan.contains(&record.config.name))
                .cloned()
                .collect(),
            options: snapshot.options.clone(),
            groups: snapshot.groups.clone(),
            clones: snapshot.clones.clone(),
            constraints: snapshot.constraints.clone(),
            failover_domains: snapshot.failover_domains.clone(),
        }
    }
}

/// A launched step of the plan.
#[derive(Debug)]
struct Launched {
    action: hafen_scheduler::Action,
    deadline_ms: u64,
    /// A move's or restart's start, after its stop, is under way.
    second_half: bool,
}

/// Where a launched step stands.
enum Progress {
    Running,
    Finished(bool),
    /// A move's or restart's stop is done: start it at its destination.
    SecondHalf(Transition),
}

/// How a plan's first step is launched.
enum Launch {
    Commit(Transition),
    Execute {
        resource: String,
        host: String,
        generation: u64,
        kind: OperationKind,
    },
}

/// The scheduler's input, built from the committed snapshot: host states from mode and fencing,
/// instances from assignments, a -INFINITY location for every fail count at INFINITY.
pub fn scheduler_view(snapshot: &ClusterSnapshot, config: &ControllerConfig) -> ClusterView {
    let mut view = ClusterView {
        options: snapshot.options.clone(),
        hosts: Vec::new(),
        resources: Vec::new(),
        groups: snapshot.groups.clone(),
        clones: snapshot.clones.clone(),
        constraints: snapshot.constraints.clone(),
        failover_domains: snapshot.failover_domains.clone(),
    };
    if view.options.default_migration_threshold.is_none() {
        view.options.default_migration_threshold = Some(config.fallback_migration_threshold);
    }
    for host in snapshot.members() {
        let state = match (&host.fencing, host.mode) {
            (FencingState::Unclean { .. }, _) => HostState::Unclean,
            (FencingState::Fenced { .. }, _) => HostState::Fenced,
            (FencingState::None, HostMode::Online) => HostState::Online,
            (FencingState::None, HostMode::Standby) => HostState::Standby,
            (FencingState::None, HostMode::Maintenance) => HostState::Maintenance,
        };
        view.hosts.push(Host {
            name: host.name.clone(),
            state,
            attributes: host.attributes.clone(),
            capacity: host.capacity.clone(),
        });
    }
    for record in &snapshot.resources {
        let mut resource = record.config.clone();
        resource.instances = record
            .assignments
            .iter()
            // The destination half of a migration is not where it runs yet.
            .filter(|assignment| !matches!(assignment.phase, Phase::MigratingFrom { .. }))
            .map(|assignment| Instance {
                host: assignment.host.clone(),
                promoted: assignment.promoted,
                failed: assignment.phase == Phase::Failed,
                pending: matches!(assignment.phase, Phase::Starting | Phase::Stopping),
            })
            .collect();
        for (host, count) in &record.config.fail_counts {
            if count.count == FAIL_COUNT_INFINITY {
                view.constraints.locations.push(Location {
                    id: format!("fail-count-{}-{host}", record.config.name),
                    resource: record.config.name.clone(),
                    host: Some(host.clone()),
                    score: Some(Score::new(-hafen_scheduler::INFINITY)),
                    ..Location::default()
                });
            }
        }
        view.resources.push(resource);
    }
    view
}

/// What an operation's outcome commits.
fn result_transition(now_ms: u64, in_flight: &InFlight, outcome: &Outcome) -> Option<Transition> {
    let operation = &in_flight.operation;
    let resource = operation.resource.clone();
    let host = operation.host.clone();
    let generation = operation.generation;
    let stop_failed = || Transition::HostSuspected {
        host: host.clone(),
        reason: format!("stop of {resource} failed"),
    };
    if in_flight.orphan {
        return match outcome {
            Outcome::Failure { .. } => Some(stop_failed()),
            _ => None,
        };
    }
    let transition = match (&operation.kind, outcome) {
        (OperationKind::Start, Outcome::Success) => Transition::Started {
            resource,
            host,
            generation,
        },
        // Refused: nothing started there; stop it anyway so the agent remembers the
        // generation is over before the assignment goes.
        (OperationKind::Start, Outcome::Refused { .. }) => Transition::StopRequested {
            resource,
            host,
            generation,
        },
        (
            OperationKind::Start | OperationKind::Promote | OperationKind::Demote,
            Outcome::Failure { severity, .. },
        ) => Transition::Failed {
            resource,
            host,
            generation,
            severity: *severity,
            at_ms: now_ms,
        },
        (OperationKind::Stop, Outcome::Success | Outcome::Refused { .. }) => Transition::Stopped {
            resource,
            host,
            generation,
        },
        // A stop that fails leaves the resource possibly running: fence the host (Pacemaker's
        // on-fail=fence for stop).
        (OperationKind::Stop, Outcome::Failure { .. }) => stop_failed(),
        (OperationKind::Migrate { to, to_generation }, Outcome::Success) => {
            Transition::MigrationSucceeded {
                resource,
                from: host,
                to: to.clone(),
                generation: *to_generation,
            }
        }
        (OperationKind::Migrate { to, to_generation }, _) => Transition::MigrationFailed {
            resource,
            from: host,
            to: to.clone(),
            generation: *to_generation,
            at_ms: now_ms,
        },
        (OperationKind::Promote | OperationKind::Demote, Outcome::Success) => {
            Transition::SetPromoted {
                resource,
                host,
                generation,
                promoted: operation.kind == OperationKind::Promote,
            }
        }
        (OperationKind::Promote | OperationKind::Demote, Outcome::Refused { .. }) => return None,
    };
    Some(transition)
}

/// I1 on the committed state: a non-clone resource has one assignment, or the two halves of a
/// migration. Anything else is a bug somewhere in the core.
fn single_active_violation(snapshot: &ClusterSnapshot) -> Option<String> {
    for record in &snapshot.resources {
        let name = &record.config.name;
        if snapshot.is_cloned(name) {
            continue;
        }
        match record.assignments.as_slice() {
            [] | [_] => {}
            [first, second] => {
                let pair = matches!(
                    (&first.phase, &second.phase),
                    (Phase::MigratingTo { host: to }, Phase::MigratingFrom { host: from })
                        if *to == second.host && *from == first.host
                ) || matches!(
                    (&first.phase, &second.phase),
                    (Phase::MigratingFrom { .. }, Phase::MigratingTo { .. })
                ) || (first.phase == Phase::Stopping && second.phase == Phase::Stopping);
                if !pair {
                    return Some(format!("resource {name} is assigned to two hosts"));
                }
            }
            _ => {
                return Some(format!(
                    "resource {name} is assigned to more than two hosts"
                ));
            }
        }
    }
    None
}

impl HostRecord {
    pub fn is_member(&self) -> bool {
        self.role == HostRole::Member
    }
}
