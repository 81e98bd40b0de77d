//! The scheduler's input: a plain, serializable view of the cluster and the request.
//!
//! These types are the scheduler's own (it does not depend on `hafen-model`): the daemon
//! translates its replicated state into a [`ClusterView`] before every run. Every optional
//! field has a default, so scenario files only spell out what matters to them.

use std::collections::BTreeMap;

use serde::de::Deserializer;
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use crate::score::Score;

/// Everything the scheduler knows about the cluster: configuration and observed state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterView {
    #[serde(default, skip_serializing_if = "is_default")]
    pub options: ClusterOptions,
    #[serde(default)]
    pub hosts: Vec<Host>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<Resource>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<Group>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clones: Vec<ResourceClone>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub constraints: Constraints,
    /// rgmanager failover domains (Proxmox HA groups), referenced by
    /// [`Resource::failover_domain`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failover_domains: Vec<FailoverDomain>,
}

/// Cluster-wide scheduling options (Pacemaker's `crm_config` and `rsc_defaults`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterOptions {
    pub placement_strategy: PlacementStrategy,
    /// Stickiness of resources that set none. Pacemaker's built-in default is 0; hafen uses
    /// 1 (what `pcs` writes into new clusters) so that equal-scoring VMs never shuffle.
    pub default_stickiness: Score,
    /// `symmetric-cluster`: when false, resources run only where a location constraint
    /// (of any score) enables them (an opt-in cluster).
    pub symmetric: bool,
    /// Every resource is unmanaged: observed, never touched.
    pub maintenance_mode: bool,
    /// Migration threshold of resources that set none; `None` never bans a host.
    pub default_migration_threshold: Option<u32>,
}

impl Default for ClusterOptions {
    fn default() -> ClusterOptions {
        ClusterOptions {
            placement_strategy: PlacementStrategy::default(),
            default_stickiness: Score::new(1),
            symmetric: true,
            maintenance_mode: false,
            default_migration_threshold: None,
        }
    }
}

/// Pacemaker's `placement-strategy`.
///
/// hafen defaults to `balanced` rather than Pacemaker's `default`, because the safety
/// invariant I5 (no host over capacity) needs capacity filtering, which `default` skips.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlacementStrategy {
    /// Capacity ignored; equal scores go to the host with the fewest resources.
    Default,
    /// Capacity enforced; equal scores go to the host with the fewest resources.
    Utilization,
    /// Capacity enforced; equal scores go to the host with the most free capacity.
    #[default]
    Balanced,
    /// Capacity enforced; equal scores go to the lowest host name (packs hosts).
    Minimal,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    pub name: String,
    #[serde(default, skip_serializing_if = "is_default")]
    pub state: HostState,
    /// Node attributes that location rules test (`#uname` is the host name implicitly).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// Capacity per utilization key (for example `cpu`, `memory_mib`); a missing key is 0.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub capacity: BTreeMap<String, u64>,
}

/// A host's state as the controller sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostState {
    /// Member in good standing: may run resources.
    #[default]
    Online,
    /// Alive but takes no resources; what runs there moves away.
    Standby,
    /// Alive; its resources are left exactly as they are and it takes nothing new.
    Maintenance,
    /// Suspected, not yet fenced: its resources may still run, so they are neither touched
    /// nor started elsewhere (safety invariant I2) until the host is fenced.
    Unclean,
    /// Confirmed powered off: nothing runs there.
    Fenced,
    /// Left the cluster cleanly: nothing runs there.
    Offline,
}

impl HostState {
    /// Whether resources observed on a host in this state may still be running.
    pub fn may_run_resources(self) -> bool {
        !matches!(self, HostState::Fenced | HostState::Offline)
    }

    pub fn name(self) -> &'static str {
        match self {
            HostState::Online => "online",
            HostState::Standby => "standby",
            HostState::Maintenance => "maintenance",
            HostState::Unclean => "unclean",
            HostState::Fenced => "fenced",
            HostState::Offline => "offline",
        }
    }
}

/// A primitive resource: configuration plus its observed state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    pub name: String,
    /// `vm`, `ocf:<provider>:<type>`, `systemd:<unit>` or `service-ip`; the scheduler only
    /// carries it.
    #[serde(default = "default_kind", skip_serializing_if = "is_default_kind")]
    pub kind: String,
    /// The kind-specific specification, opaque to the scheduler.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub spec: serde_json::Value,
    /// Observed: where the resource is active (several entries for clones).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<Instance>,
    /// Observed: failures per host.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fail_counts: BTreeMap<String, FailCount>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub target_role: TargetRole,
    /// An unmanaged resource is observed and never touched.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub managed: bool,
    /// Higher priorities are placed first.
    #[serde(default, skip_serializing_if = "is_default")]
    pub priority: i64,
    /// `None` takes [`ClusterOptions::default_stickiness`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stickiness: Option<Score>,
    /// Units used per utilization key when running (for example `cpu`, `memory_mib`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub utilization: BTreeMap<String, u64>,
    /// A move of a healthy running instance is a live migration.
    #[serde(default, skip_serializing_if = "is_default")]
    pub allow_migrate: bool,
    /// Failures on a host after which the host is banned; `None` takes the cluster default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_threshold: Option<u32>,
    /// Failures older than this no longer count (needs [`Request::now_ms`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_timeout_ms: Option<u64>,
    /// rgmanager/Proxmox: the failover domain (HA group) this resource follows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_domain: Option<String>,
    /// rgmanager/Proxmox: restarts on one host before relocating; sugar for
    /// `migration_threshold = max_restart + 1` when that is unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restart: Option<u32>,
    /// rgmanager/Proxmox: relocations after failures before giving up; the resource stops
    /// once more than `max_relocate` hosts are banned by failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_relocate: Option<u32>,
    /// Promotable clones: promotion preference per host, as a resource agent sets it
    /// (`crm_master`); a host without one counts 0.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub promotion_scores: BTreeMap<String, Score>,
}

impl Resource {
    /// A managed, stopped resource of kind `vm` with every option at its default.
    pub fn new(name: impl Into<String>) -> Resource {
        Resource {
            name: name.into(),
            kind: default_kind(),
            spec: serde_json::Value::Null,
            instances: Vec::new(),
            fail_counts: BTreeMap::new(),
            target_role: TargetRole::Started,
            managed: true,
            priority: 0,
            stickiness: None,
            utilization: BTreeMap::new(),
            allow_migrate: false,
            migration_threshold: None,
            failure_timeout_ms: None,
            failover_domain: None,
            max_restart: None,
            max_relocate: None,
            promotion_scores: BTreeMap::new(),
        }
    }
}

/// Where a resource is active. In JSON a plain host name stands for a healthy, unpromoted
/// instance.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Instance {
    pub host: String,
    /// Promotable clones: this instance runs in the promoted role.
    pub promoted: bool,
    /// The last monitor failed: the instance needs recovery.
    pub failed: bool,
    /// A start or stop of it is under way: it counts as placed, but what is ordered after
    /// it (a mandatory ordering) waits until it runs.
    pub pending: bool,
}

impl Instance {
    pub fn on(host: impl Into<String>) -> Instance {
        Instance {
            host: host.into(),
            promoted: false,
            failed: false,
            pending: false,
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct InstanceFields {
    host: String,
    #[serde(default, skip_serializing_if = "is_default")]
    promoted: bool,
    #[serde(default, skip_serializing_if = "is_default")]
    failed: bool,
    #[serde(default, skip_serializing_if = "is_default")]
    pending: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum InstanceForm {
    Host(String),
    Fields(InstanceFields),
}

impl Serialize for Instance {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if !self.promoted && !self.failed && !self.pending {
            return serializer.serialize_str(&self.host);
        }
        InstanceFields {
            host: self.host.clone(),
            promoted: self.promoted,
            failed: self.failed,
            pending: self.pending,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Instance {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Instance, D::Error> {
        Ok(match InstanceForm::deserialize(deserializer)? {
            InstanceForm::Host(host) => Instance::on(host),
            InstanceForm::Fields(fields) => Instance {
                host: fields.host,
                promoted: fields.promoted,
                failed: fields.failed,
                pending: fields.pending,
            },
        })
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailCount {
    pub count: u32,
    /// When the last failure happened, on the caller's clock.
    #[serde(default, skip_serializing_if = "is_default")]
    pub last_failure_ms: u64,
}

/// Pacemaker's `target-role`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TargetRole {
    #[default]
    #[serde(alias = "started")]
    Started,
    #[serde(alias = "stopped")]
    Stopped,
    /// Promotable clones: run, but promote no instance.
    #[serde(alias = "unpromoted")]
    Unpromoted,
}

/// Members are colocated on one host, started in order and stopped in reverse order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub name: String,
    pub members: Vec<String>,
}

/// A clone of a primitive resource: several anonymous instances, optionally promotable.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceClone {
    pub name: String,
    /// The primitive resource cloned; its instances are [`Resource::instances`].
    pub resource: String,
    /// `clone-max`; `None` means one per host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    /// `clone-node-max`.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub node_max: u32,
    #[serde(default, skip_serializing_if = "is_default")]
    pub promotable: bool,
    /// `promoted-max`.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub promoted_max: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Constraints {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub locations: Vec<Location>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub colocations: Vec<Colocation>,
    /// Sequential colocation sets: each member is placed with the one before it (as
    /// `pcs constraint colocation set A B C`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub colocation_sets: Vec<ColocationSet>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub orderings: Vec<Ordering>,
    /// Sequential ordering sets: each member starts after the one before it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ordering_sets: Vec<OrderingSet>,
}

/// A location constraint: a score for one host, or rules over host attributes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    pub id: String,
    /// A resource, group or clone.
    pub resource: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The score on `host`; required with `host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<Score>,
    /// Each matching rule adds its score on that host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    /// `Promoted` applies to the choice of the promoted instance of a promotable clone.
    #[serde(default, skip_serializing_if = "is_default")]
    pub role: Role,
}

/// A rule over host attributes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<Score>,
    /// Take the score from this host attribute instead (Pacemaker's `score-attribute`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score_attribute: Option<String>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub boolean: BooleanOperation,
    pub expressions: Vec<Expression>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BooleanOperation {
    #[default]
    And,
    Or,
}

/// `attribute operation value`; `#uname` names the host itself.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expression {
    pub attribute: String,
    pub operation: Operation,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Comparisons are numeric when both sides parse as numbers, textual otherwise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    #[default]
    Eq,
    Ne,
    Lt,
    Gt,
    Lte,
    Gte,
    Defined,
    NotDefined,
}

/// Which instances of a resource a constraint is about.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Any running instance.
    #[default]
    #[serde(alias = "started")]
    Started,
    #[serde(alias = "promoted")]
    Promoted,
    #[serde(alias = "unpromoted")]
    Unpromoted,
}

/// `dependent` is placed relative to `primary`: with it for a positive score, away from it
/// for a negative one; ±INFINITY is mandatory, anything else advisory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Colocation {
    pub id: String,
    pub dependent: String,
    pub primary: String,
    pub score: Score,
    #[serde(default, skip_serializing_if = "is_default")]
    pub dependent_role: Role,
    #[serde(default, skip_serializing_if = "is_default")]
    pub primary_role: Role,
    /// Whether the dependent's own preferences count when placing the primary.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub influence: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColocationSet {
    pub id: String,
    pub resources: Vec<String>,
    pub score: Score,
}

/// `then` starts after `first` (and, when symmetrical, stops before it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ordering {
    pub id: String,
    pub first: String,
    pub then: String,
    #[serde(default, skip_serializing_if = "is_default")]
    pub kind: OrderingKind,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub symmetrical: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderingSet {
    pub id: String,
    pub resources: Vec<String>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub kind: OrderingKind,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub symmetrical: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderingKind {
    /// `then` cannot run unless `first` runs; a restart of `first` restarts `then`.
    #[default]
    Mandatory,
    /// Only orders actions that happen in the same plan.
    Optional,
}

/// An rgmanager failover domain (a Proxmox HA group).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailoverDomain {
    pub name: String,
    /// Member hosts with their priority; a higher number is preferred (as in Proxmox).
    pub hosts: BTreeMap<String, u32>,
    /// Priorities count; otherwise all members are equal.
    #[serde(default, skip_serializing_if = "is_default")]
    pub ordered: bool,
    /// Never run outside the members.
    #[serde(default, skip_serializing_if = "is_default")]
    pub restricted: bool,
    /// Do not move back when a higher-priority member returns.
    #[serde(default, skip_serializing_if = "is_default")]
    pub nofailback: bool,
}

/// What the caller asks of one scheduler run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Request {
    /// The caller's clock, for failure-timeout; the scheduler never reads a clock.
    pub now_ms: u64,
    /// Fill [`crate::Plan::scores`] (one row per resource, one column per host). Costs
    /// hosts x resources; the daemon's hot path turns it off.
    pub include_scores: bool,
}

impl Default for Request {
    fn default() -> Request {
        Request {
            now_ms: 0,
            include_scores: true,
        }
    }
}

fn default_kind() -> String {
    "vm".to_string()
}

fn is_default_kind(kind: &str) -> bool {
    kind == "vm"
}

fn yes() -> bool {
    true
}

fn one() -> u32 {
    1
}

fn is_true(value: &bool) -> bool {
    *value
}

fn is_one(value: &u32) -> bool {
    *value == 1
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}
