//! The controller's vocabulary: the committed snapshot it reads, the transitions it commits,
//! the operations it sends to agents and the messages agents send back.
//!
//! These are the controller's own plain types (it does not depend on `hafen-model`): the
//! daemon translates its replicated state into a [`ClusterSnapshot`] after every commit and
//! applies each [`Transition`] the way [`crate::apply_transition`] does.

use std::collections::BTreeMap;

use hafen_scheduler::{ClusterOptions, Constraints, FailoverDomain, Group, ResourceClone};
use serde::{Deserialize, Serialize};

/// Correlates an operation or fence request with its result.
pub type ActionId = u64;

/// Fail count that bans a host outright (Pacemaker's fail-count INFINITY).
pub const FAIL_COUNT_INFINITY: u32 = u32::MAX;

/// The committed cluster state as the controller needs it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterSnapshot {
    /// Log index of the last applied entry; operations carry it so that an agent can refuse
    /// operations issued before it regained its lease.
    pub revision: u64,
    /// Whether this partition has quorum (only a quorate leader acts, I3).
    pub quorate: bool,
    pub hosts: Vec<HostRecord>,
    pub resources: Vec<ResourceRecord>,
    #[serde(default)]
    pub options: ClusterOptions,
    #[serde(default)]
    pub groups: Vec<Group>,
    #[serde(default)]
    pub clones: Vec<ResourceClone>,
    #[serde(default)]
    pub constraints: Constraints,
    #[serde(default)]
    pub failover_domains: Vec<FailoverDomain>,
}

impl ClusterSnapshot {
    pub fn host(&self, name: &str) -> Option<&HostRecord> {
        self.hosts.iter().find(|host| host.name == name)
    }

    pub fn resource(&self, name: &str) -> Option<&ResourceRecord> {
        self.resources
            .iter()
            .find(|resource| resource.config.name == name)
    }

    /// Whether `resource` is the primitive of a clone (several instances allowed).
    pub fn is_cloned(&self, resource: &str) -> bool {
        self.clones.iter().any(|clone| clone.resource == resource)
    }

    /// Utilization committed on `host`: every assignment counts, both halves of a migration
    /// included, because both use the host while it lasts.
    pub fn usage_on(&self, host: &str) -> BTreeMap<String, u64> {
        let mut usage: BTreeMap<String, u64> = BTreeMap::new();
        for resource in &self.resources {
            for assignment in &resource.assignments {
                if assignment.host == host {
                    for (key, amount) in &resource.config.utilization {
                        *usage.entry(key.clone()).or_default() += amount;
                    }
                }
            }
        }
        usage
    }

    /// Whether `resource` fits on `host` next to what is committed there (I5).
    pub fn fits(&self, resource: &ResourceRecord, host: &HostRecord) -> bool {
        let usage = self.usage_on(&host.name);
        resource.config.utilization.iter().all(|(key, amount)| {
            let used = usage.get(key).copied().unwrap_or(0);
            let capacity = host.capacity.get(key).copied().unwrap_or(0);
            used + amount <= capacity
        })
    }

    pub fn members(&self) -> impl Iterator<Item = &HostRecord> {
        self.hosts
            .iter()
            .filter(|host| host.role == HostRole::Member)
    }

    /// Two members and no witness: a lost host cannot be told from a partition, so the
    /// cluster refuses automatic recovery (DESIGN section 4).
    pub fn two_members_without_witness(&self) -> bool {
        self.members().count() == 2 && !self.hosts.iter().any(|host| host.role == HostRole::Witness)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostRecord {
    pub name: String,
    pub role: HostRole,
    pub mode: HostMode,
    pub fencing: FencingState,
    pub fencing_method: FencingMethod,
    /// Fencing topology for [`FencingMethod::Device`]: levels tried in order, every device of
    /// a level required.
    #[serde(default)]
    pub fence_levels: Vec<Vec<String>>,
    /// A hardware watchdog resets the host this long after the agent stops petting it; the
    /// lease-expiry confirmation waits for it too.
    #[serde(default)]
    pub watchdog_timeout_ms: Option<u64>,
    #[serde(default)]
    pub capacity: BTreeMap<String, u64>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

impl HostRecord {
    pub fn member(name: impl Into<String>, fencing_method: FencingMethod) -> HostRecord {
        HostRecord {
            name: name.into(),
            role: HostRole::Member,
            mode: HostMode::Online,
            fencing: FencingState::None,
            fencing_method,
            fence_levels: Vec::new(),
            watchdog_timeout_ms: None,
            capacity: BTreeMap::new(),
            attributes: BTreeMap::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostRole {
    /// Runs workloads.
    Member,
    /// Votes, runs nothing.
    Witness,
}

/// What the operator set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostMode {
    Online,
    /// Takes nothing; what runs there moves away (`node standby`, `node evacuate`).
    Standby,
    /// What runs there is left alone; it takes nothing new.
    Maintenance,
}

/// The committed fencing state of a host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FencingState {
    None,
    /// Suspected: its resources may still run; nothing of it is touched or recovered.
    Unclean {
        reason: String,
    },
    /// Confirmed to run nothing; its assignments were dropped when this was committed.
    Fenced {
        how: FenceConfirmation,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FencingMethod {
    /// A fence device powers the host off.
    Device,
    /// The host's agent fences itself when its lease lapses (optionally with a watchdog).
    SelfFence,
    /// Only an operator's `confirm-fenced`.
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FenceConfirmation {
    Device,
    LeaseExpired,
    Operator,
}

/// A resource's configuration (a scheduler resource: its `instances` are ignored and rebuilt
/// from `assignments`; its `fail_counts` are the committed ones) and committed placement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResourceRecord {
    pub config: hafen_scheduler::Resource,
    /// Last generation handed out; every new assignment takes the next one.
    pub generation: u64,
    /// One per host at most; a non-clone has one, or two during a migration.
    #[serde(default)]
    pub assignments: Vec<Assignment>,
    #[serde(default)]
    pub timeouts: OperationTimeouts,
}

impl ResourceRecord {
    pub fn new(config: hafen_scheduler::Resource) -> ResourceRecord {
        ResourceRecord {
            config,
            generation: 0,
            assignments: Vec::new(),
            timeouts: OperationTimeouts::default(),
        }
    }

    pub fn assignment_on(&self, host: &str) -> Option<&Assignment> {
        self.assignments
            .iter()
            .find(|assignment| assignment.host == host)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub host: String,
    pub generation: u64,
    pub phase: Phase,
    #[serde(default)]
    pub promoted: bool,
}

/// The committed lifecycle phase of one assignment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Assigned; the start was or will be asked for.
    Starting,
    Running,
    /// The stop was or will be asked for; it may still run.
    Stopping,
    /// A start, monitor or promotion failed; it may still run until stopped.
    Failed,
    /// Source half of a live migration to `host`.
    MigratingTo {
        host: String,
    },
    /// Destination half of a live migration from `host`.
    MigratingFrom {
        host: String,
    },
}

impl Phase {
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::Stopping => "stopping",
            Phase::Failed => "failed",
            Phase::MigratingTo { .. } | Phase::MigratingFrom { .. } => "migrating",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OperationTimeouts {
    pub start_timeout_ms: u64,
    pub stop_timeout_ms: u64,
    pub migrate_timeout_ms: u64,
    pub monitor_interval_ms: u64,
    pub monitor_timeout_ms: u64,
}

impl Default for OperationTimeouts {
    fn default() -> OperationTimeouts {
        OperationTimeouts {
            start_timeout_ms: 20_000,
            stop_timeout_ms: 20_000,
            migrate_timeout_ms: 60_000,
            monitor_interval_ms: 10_000,
            monitor_timeout_ms: 5_000,
        }
    }
}

/// How bad a failure is, as OCF classifies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Recover in place (restart) until migration-threshold.
    Soft,
    /// Not on this host again (fail count INFINITY here).
    Hard,
    /// Not anywhere (fail count INFINITY on every host).
    Fatal,
}

/// One committed state change, proposed by the leader (or by the daemon for an operator
/// command). Each carries what it expects to find, so a stale or repeated proposal is
/// rejected by [`crate::apply_transition`] and changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "transition", rename_all = "snake_case")]
pub enum Transition {
    /// No heartbeat for `node_timeout_ms` (or a stop failed there): fencing starts.
    HostSuspected { host: String, reason: String },
    /// Fencing confirmed; drops every assignment on the host.
    HostFenced {
        host: String,
        how: FenceConfirmation,
    },
    /// A fenced host heartbeats again; it runs nothing and takes work from now on.
    HostRejoined { host: String },
    /// Operator: `node online|standby|maintenance|evacuate`.
    SetHostMode { host: String, mode: HostMode },
    /// Start `resource` on `host` with the next generation.
    Assign {
        resource: String,
        host: String,
        generation: u64,
    },
    Started {
        resource: String,
        host: String,
        generation: u64,
    },
    StopRequested {
        resource: String,
        host: String,
        generation: u64,
    },
    /// Stopped (or never started): the assignment goes away.
    Stopped {
        resource: String,
        host: String,
        generation: u64,
    },
    Failed {
        resource: String,
        host: String,
        generation: u64,
        severity: Severity,
        at_ms: u64,
    },
    MigrationRequested {
        resource: String,
        from: String,
        to: String,
        /// The destination's generation (the source keeps its own).
        generation: u64,
    },
    MigrationSucceeded {
        resource: String,
        from: String,
        to: String,
        generation: u64,
    },
    /// The source keeps running; the destination half goes and counts a failure there.
    MigrationFailed {
        resource: String,
        from: String,
        to: String,
        generation: u64,
        at_ms: u64,
    },
    /// A migration whose outcome is unknown (its leader is gone): stop both halves.
    MigrationAborted { resource: String },
    SetPromoted {
        resource: String,
        host: String,
        generation: u64,
        promoted: bool,
    },
    /// Operator: `resource cleanup` (every host when `host` is `None`).
    CleanupResource {
        resource: String,
        host: Option<String>,
    },
}

impl Transition {
    /// The resource this transition is about, if any.
    pub fn resource(&self) -> Option<&str> {
        match self {
            Transition::Assign { resource, .. }
            | Transition::Started { resource, .. }
            | Transition::StopRequested { resource, .. }
            | Transition::Stopped { resource, .. }
            | Transition::Failed { resource, .. }
            | Transition::MigrationRequested { resource, .. }
            | Transition::MigrationSucceeded { resource, .. }
            | Transition::MigrationFailed { resource, .. }
            | Transition::MigrationAborted { resource }
            | Transition::SetPromoted { resource, .. }
            | Transition::CleanupResource { resource, .. } => Some(resource),
            _ => None,
        }
    }
}

/// What an agent is asked to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    pub action_id: ActionId,
    pub host: String,
    pub resource: String,
    pub kind: OperationKind,
    /// The committed assignment's generation; an agent refuses older ones.
    pub generation: u64,
    /// [`ClusterSnapshot::revision`] when issued.
    pub revision: u64,
    pub timeout_ms: u64,
    pub monitor_interval_ms: u64,
    pub monitor_timeout_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OperationKind {
    Start,
    Stop,
    /// Sent to the source; the destination runs `to_generation` when it resumes.
    Migrate {
        to: String,
        to_generation: u64,
    },
    Promote,
    Demote,
}

impl OperationKind {
    pub fn verb(&self) -> &'static str {
        match self {
            OperationKind::Start => "start",
            OperationKind::Stop => "stop",
            OperationKind::Migrate { .. } => "migrate",
            OperationKind::Promote => "promote",
            OperationKind::Demote => "demote",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure {
        severity: Severity,
        message: String,
    },
    /// The agent would not do it (no lease, stale generation): nothing happened there.
    Refused {
        message: String,
    },
}

/// An agent's answer to an [`Operation`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationResult {
    pub action_id: ActionId,
    pub host: String,
    pub resource: String,
    pub generation: u64,
    pub outcome: Outcome,
}

/// An agent's report that a running resource failed (a monitor failed or timed out).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceFailure {
    pub host: String,
    pub resource: String,
    pub generation: u64,
    pub severity: Severity,
    pub message: String,
}

/// A heartbeat from a host's agent to the leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub host: String,
    pub sequence: u64,
    /// On the agent's monotonic clock; echoed in the acknowledgement.
    pub sent_at_ms: u64,
    /// What the agent runs: (resource, generation).
    pub running: Vec<(String, u64)>,
}

/// The leader's acknowledgement: it renews the agent's lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatAck {
    pub host: String,
    pub sent_at_ms: u64,
    pub revision: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceResult {
    pub action_id: ActionId,
    pub host: String,
    pub success: bool,
    pub message: String,
}
