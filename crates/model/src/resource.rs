//! Resources in the replicated state: their configuration (versioned) and their runtime state (assignment, phase, generation).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What the operator wants of a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TargetRole {
    #[default]
    Started,
    Stopped,
}

/// A resource's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceConfig {
    pub name: String,
    pub kind: ResourceKind,
    #[serde(default)]
    pub target_role: TargetRole,
    /// Higher priorities are placed first.
    #[serde(default)]
    pub priority: i64,
    /// Preferred host for the first placement (`vm create --host`); a hint, not a ban.
    #[serde(default)]
    pub preferred_host: Option<String>,
    /// Run as a clone: several instances (resource agents only, never VMs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clone: Option<CloneConfig>,
    /// Pacemaker's meta-attributes that override cluster-wide defaults.
    #[serde(default, skip_serializing_if = "ResourceMeta::is_empty")]
    pub meta: ResourceMeta,
}

/// A resource's own placement settings (`resource meta NAME key=value`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceMeta {
    /// `resource-stickiness`: preference to stay where it runs (overrides
    /// `default-resource-stickiness`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stickiness: Option<i64>,
    /// `migration-threshold`: failures on a host after which it moves elsewhere
    /// (overrides the default of 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_threshold: Option<u32>,
}

impl ResourceMeta {
    pub fn is_empty(&self) -> bool {
        *self == ResourceMeta::default()
    }

    /// The meta-attributes as `key=value` pairs, for display.
    pub fn pairs(&self) -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        if let Some(stickiness) = self.stickiness {
            pairs.push(("resource-stickiness".to_string(), score_text(stickiness)));
        }
        if let Some(threshold) = self.migration_threshold {
            pairs.push(("migration-threshold".to_string(), threshold.to_string()));
        }
        pairs
    }

    /// Sets (`Some`) or unsets (`None`) one meta-attribute, refusing an unknown key or a bad
    /// value with the reason.
    pub fn set(&mut self, key: &str, value: Option<&str>) -> Result<(), String> {
        match key {
            "resource-stickiness" => {
                self.stickiness = value
                    .map(|value| {
                        parse_score(value).ok_or_else(|| {
                            format!("resource-stickiness {value:?} must be an integer, INFINITY or -INFINITY")
                        })
                    })
                    .transpose()?;
            }
            "migration-threshold" => {
                self.migration_threshold = value
                    .map(|value| match value.parse::<u32>() {
                        Ok(threshold) if (1..=1_000_000).contains(&threshold) => Ok(threshold),
                        _ => Err(format!(
                            "migration-threshold {value:?} must be an integer from 1 to 1000000"
                        )),
                    })
                    .transpose()?;
            }
            other => {
                return Err(format!(
                    "unknown meta-attribute {other:?}: resource-stickiness or migration-threshold"
                ));
            }
        }
        Ok(())
    }
}

/// A score as operators write it: an integer within ±INFINITY, `INFINITY` (also `+INFINITY`,
/// `inf`) or `-INFINITY` (`-inf`).
pub fn parse_score(text: &str) -> Option<i64> {
    use crate::validate::INFINITY;
    match text {
        "INFINITY" | "+INFINITY" | "inf" => Some(INFINITY),
        "-INFINITY" | "-inf" => Some(-INFINITY),
        other => other
            .parse::<i64>()
            .ok()
            .filter(|score| (-INFINITY..=INFINITY).contains(score)),
    }
}

fn score_text(score: i64) -> String {
    use crate::validate::INFINITY;
    match score {
        INFINITY => "INFINITY".to_string(),
        score if score == -INFINITY => "-INFINITY".to_string(),
        other => other.to_string(),
    }
}

/// A clone's shape, as Pacemaker's clone meta-attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloneConfig {
    /// `clone-max`; `None`: one instance per eligible host.
    #[serde(default)]
    pub max: Option<u32>,
    /// `clone-node-max`: instances per host (hafen runs one).
    #[serde(default = "one")]
    pub node_max: u32,
    /// A promotable clone: instances run unpromoted or promoted (`promote`/`demote`).
    #[serde(default)]
    pub promotable: bool,
    /// `promoted-max`.
    #[serde(default = "one")]
    pub promoted_max: u32,
}

fn one() -> u32 {
    1
}

/// One instance of a clone on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct InstanceState {
    pub phase: Phase,
    /// Promotable clones: runs in the promoted role.
    #[serde(default)]
    pub promoted: bool,
}

/// A clone instance's transition on one host, committed by the leader after the agent
/// reported the outcome. `Stopped` removes the instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceTransition {
    pub resource: String,
    pub host: String,
    pub phase: Phase,
    #[serde(default)]
    pub promoted: bool,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reaction: Option<FailureReaction>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResourceKind {
    Vm(VmConfig),
    /// A standard resource agent: OCF (`ocf:heartbeat:Dummy`, `ocf:heartbeat:IPaddr2`, ...)
    /// or a systemd unit (`systemd:cron`).
    Ocf(OcfResourceConfig),
}

impl ResourceKind {
    /// `vm`, or the agent (`ocf:heartbeat:Dummy`).
    pub fn name(&self) -> String {
        match self {
            ResourceKind::Vm(_) => "vm".to_string(),
            ResourceKind::Ocf(ocf) => ocf.agent.clone(),
        }
    }
}

/// A resource agent (OCF or systemd) with its parameters and operation settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OcfResourceConfig {
    /// `ocf:<provider>:<type>` or `systemd:<unit>` (units take no parameters).
    pub agent: String,
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    /// How often the agent's monitor runs.
    pub monitor_interval_ms: u64,
    /// Timeout of each start, stop and monitor.
    pub operation_timeout_ms: u64,
}

/// A virtual machine as the cluster runs it; every host derives the same QEMU machine from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmConfig {
    pub uuid: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub machine: String,
    pub cpu_model: String,
    pub disks: Vec<VmDisk>,
    pub nics: Vec<VmNic>,
    pub boot: VmBoot,
    /// The guest's own address (`ip/prefix`), given on its kernel command line; it keeps it on every host.
    #[serde(default)]
    pub address: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmDisk {
    pub pool: String,
    pub volume: String,
    /// `qcow2` or `raw`.
    pub format: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmNic {
    pub mac: String,
    /// The bridge the tap joins; it must exist with this name on every host.
    pub bridge: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum VmBoot {
    Disk,
    Kernel {
        kernel: String,
        initrd: Option<String>,
        cmdline: String,
    },
}

/// A storage pool every host mounts at the same path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolConfig {
    pub name: String,
    /// Only `dir` for now.
    pub kind: String,
    pub path: String,
}

/// A template new VMs are made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateConfig {
    pub name: String,
    pub boot: VmBoot,
    /// The pool each new VM's disk is created in.
    pub pool: String,
    /// A base volume to clone (linked) for each VM's disk; `None` creates an empty disk.
    #[serde(default)]
    pub base_volume: Option<String>,
    pub disk_size_mib: u64,
    /// Bridge of the VM's network card.
    pub bridge: String,
    #[serde(default = "default_memory_mib")]
    pub memory_mib: u64,
    #[serde(default = "default_vcpus")]
    pub vcpus: u32,
}

fn default_memory_mib() -> u64 {
    128
}

fn default_vcpus() -> u32 {
    1
}

/// Where a resource is in its lifecycle, as committed by the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    #[default]
    Stopped,
    Starting,
    Running,
    Stopping,
    /// Live migration towards `to` in progress; the resource runs on its host until it lands.
    Migrating {
        to: String,
    },
    /// The last operation failed; `last_error` says how.
    Failed,
}

impl Phase {
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Stopped => "stopped",
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::Stopping => "stopping",
            Phase::Migrating { .. } => "migrating",
            Phase::Failed => "failed",
        }
    }
}

/// A resource's committed runtime state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ResourceState {
    pub phase: Phase,
    /// Where it runs or is to run.
    pub host: Option<String>,
    /// Bumped by every new assignment; agents refuse to act on an older one (second line of defense).
    pub generation: u64,
    pub last_error: Option<String>,
    /// Failures per host.
    pub fail_counts: BTreeMap<String, u32>,
    /// Clones: the instance per host.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub instances: BTreeMap<String, InstanceState>,
}

/// A runtime transition, committed by the leader after an agent reported the outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub resource: String,
    /// The generation the leader acted on; a transition for an older one is refused.
    pub generation: u64,
    pub phase: Phase,
    pub host: Option<String>,
    /// Whether this transition makes a new assignment (bumps the generation).
    #[serde(default)]
    pub new_assignment: bool,
    #[serde(default)]
    pub error: Option<String>,
    /// For a failure: how the agent's result is to be treated (Pacemaker's reactions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reaction: Option<FailureReaction>,
}

/// How a failure is recovered, as OCF and Pacemaker classify agent results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReaction {
    /// Transient: counts one failure on the host; recovered in place or moved once the
    /// host's failures reach `migration-threshold`.
    Soft,
    /// Specific to this host (agent not installed, wrong privileges...): banned there.
    Hard,
    /// Wrong everywhere (bad configuration): stopped everywhere, started nowhere until
    /// `resource cleanup`.
    Fatal,
}

/// The fail count that bans a resource from a host (INFINITY).
pub const FAIL_COUNT_INFINITY: u32 = 1_000_000;

/// A group (Pacemaker's): members run on one host and start in order (each after the one
/// before it), stopping in reverse; a member that cannot run stops the ones after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupConfig {
    pub name: String,
    pub members: Vec<String>,
}

/// A colocation constraint: `resource` is placed relative to `with` (Pacemaker's dependent
/// and primary): a positive score draws it to `with`'s host, a negative one keeps it away,
/// ±INFINITY makes that mandatory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColocationConstraint {
    pub id: String,
    pub resource: String,
    pub with: String,
    pub score: i64,
}

/// Whether an ordering binds (`then` cannot run unless `first` runs) or only orders what
/// happens in the same plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderingKind {
    #[default]
    Mandatory,
    Optional,
}

/// An ordering constraint: `then` starts after `first` and, when symmetrical (the default),
/// stops before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderingConstraint {
    pub id: String,
    pub first: String,
    pub then: String,
    #[serde(default)]
    pub kind: OrderingKind,
    #[serde(default = "symmetrical_default")]
    pub symmetrical: bool,
}

fn symmetrical_default() -> bool {
    true
}

/// A location constraint: a score for running `resource` on `host` (±1,000,000 is ±INFINITY).
///
/// Manual moves are constraints too (`cli-prefer-*`, `cli-ban-*`), so they are visible in
/// `constraint list`, removable, and may expire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationConstraint {
    pub id: String,
    pub resource: String,
    pub host: String,
    pub score: i64,
    /// Wall-clock milliseconds after which it no longer applies.
    #[serde(default)]
    pub expires_ms: Option<u64>,
}

/// A started resource run by `agent` (a test fixture shared by the model's tests).
#[cfg(test)]
pub(crate) fn test_agent_resource(name: &str, agent: &str) -> ResourceConfig {
    ResourceConfig {
        name: name.to_string(),
        kind: ResourceKind::Ocf(OcfResourceConfig {
            agent: agent.to_string(),
            parameters: Default::default(),
            monitor_interval_ms: 1000,
            operation_timeout_ms: 20_000,
        }),
        target_role: TargetRole::Started,
        priority: 0,
        preferred_host: None,
        clone: None,
        meta: Default::default(),
    }
}
