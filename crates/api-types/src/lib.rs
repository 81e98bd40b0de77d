//! The REST API's request and response bodies: plain serde types with OpenAPI schemas.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The header that makes a write idempotent: retries with the same value apply once.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Set by a follower when it forwards a request to the leader (prevents forwarding loops).
pub const FORWARDED_HEADER: &str = "x-hafen-forwarded";

/// Every error answer: a one-line message naming what is wrong.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// `invalid`, `not_found`, `conflict`, `unauthorized`, `unavailable` or `internal`.
    pub kind: String,
    pub error: String,
}

/// A node's state as `status` shows it (DESIGN section 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    Online,
    Offline,
    Unclean,
    Fenced,
    Standby,
    Maintenance,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Online => "online",
            NodeState::Offline => "offline",
            NodeState::Unclean => "unclean",
            NodeState::Fenced => "fenced",
            NodeState::Standby => "standby",
            NodeState::Maintenance => "maintenance",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodeStatus {
    pub name: String,
    /// The operator's choice: `online`, `standby` or `maintenance`.
    #[serde(default)]
    pub mode: String,
    pub node_id: u64,
    pub address: String,
    /// `member` or `witness`.
    pub role: String,
    pub state: NodeState,
    pub leader: bool,
    pub voter: bool,
    /// Milliseconds since the leader last heard from the node.
    pub last_seen_ms: Option<u64>,
    /// The last Raft log index the node holds, as the leader knows it.
    pub log_index: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ResourceStatus {
    pub name: String,
    pub kind: String,
    /// `running`, `stopped`, `starting`, `stopping`, `migrating`, `failed` or `unknown`.
    pub state: String,
    pub node: Option<String>,
    pub target: Option<String>,
}

/// The whole cluster at a glance, like `crm_mon -1`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StatusReport {
    pub cluster_name: String,
    pub epoch: u64,
    pub leader: Option<String>,
    pub term: u64,
    pub nodes: Vec<NodeStatus>,
    pub resources: Vec<ResourceStatus>,
    /// Conditions an operator should know about.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PropertyEntry {
    pub key: String,
    pub value: String,
    pub default: String,
    pub is_default: bool,
    pub description: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConfigReport {
    pub epoch: u64,
    pub properties: Vec<PropertyEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SetPropertyRequest {
    pub value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DiffLine {
    pub path: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// The answer to a configuration change.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EpochChange {
    pub epoch: u64,
    pub diff: Vec<DiffLine>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HistoryEntry {
    pub epoch: u64,
    pub at_ms: u64,
    pub summary: String,
    pub request_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DiffReport {
    pub from: u64,
    pub to: u64,
    pub lines: Vec<DiffLine>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RollbackRequest {
    pub epoch: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenRequest {
    /// How long the token stays valid; default 3600 s, at most 7 days.
    pub ttl_s: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    pub token: String,
    pub expires_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JoinRequest {
    pub token_id: String,
    pub secret: String,
    pub name: String,
    /// `ip:port` where the node will listen.
    pub address: String,
    /// `member` or `witness`.
    pub role: String,
    /// The node's certificate signing request, PEM.
    pub csr_pem: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JoinResponse {
    pub node_id: u64,
    pub cluster_name: String,
    pub cert_pem: String,
    pub ca_pem: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CaResponse {
    pub ca_pem: String,
    pub fingerprint: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventEntry {
    pub id: u64,
    pub at_ms: u64,
    pub kind: String,
    pub message: String,
}

/// A node agent's heartbeat to the leader (internal endpoint).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Heartbeat {
    pub node_id: u64,
    pub name: String,
    /// Set when the node self-fences with a hardware watchdog: its reset timeout.
    #[serde(default)]
    pub watchdog_timeout_ms: Option<u64>,
    /// What the node can hold: `cpu` (hardware threads) and `memory` (MiB).
    #[serde(default)]
    pub capacity: std::collections::BTreeMap<String, u64>,
}

/// The leader's answer to a heartbeat. A lease is granted only by a leader that confirmed
/// its leadership with a quorum after the heartbeat arrived; it runs from the moment the
/// agent *sent* the heartbeat (the agent's monotonic clock).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatAck {
    pub leader: bool,
    /// How long the granted lease lasts; 0 when none was granted.
    #[serde(default)]
    pub lease_ms: u64,
}

/// A join token as printed by `hafen cluster token`: `hafen-join.<id>.<secret>.<ca fingerprint>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    pub id: String,
    pub secret: String,
    pub ca_fingerprint: String,
}

impl std::fmt::Display for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "hafen-join.{}.{}.{}",
            self.id, self.secret, self.ca_fingerprint
        )
    }
}

impl std::str::FromStr for JoinToken {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = text.trim().split('.').collect();
        let hex = |part: &str, length: usize| {
            part.len() == length && part.chars().all(|c| c.is_ascii_hexdigit())
        };
        match parts.as_slice() {
            ["hafen-join", id, secret, fingerprint]
                if hex(id, 8) && hex(secret, 32) && hex(fingerprint, 64) =>
            {
                Ok(JoinToken {
                    id: id.to_string(),
                    secret: secret.to_string(),
                    ca_fingerprint: fingerprint.to_lowercase(),
                })
            }
            _ => Err("malformed join token: expected hafen-join.<8 hex>.<32 hex>.<64 hex> as printed by `hafen cluster token`".to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_tokens_round_trip_and_garbage_is_refused() {
        let token = JoinToken {
            id: "0123abcd".into(),
            secret: "f".repeat(32),
            ca_fingerprint: "a".repeat(64),
        };
        assert_eq!(token.to_string().parse::<JoinToken>().unwrap(), token);
        assert!("hafen-join.xyz".parse::<JoinToken>().is_err());
        assert!(
            format!("hafen-join.0123abcd.{}.{}", "g".repeat(32), "a".repeat(64))
                .parse::<JoinToken>()
                .is_err()
        );
    }
}

/// `vm create`: a VM from a template.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VmCreateRequest {
    pub name: String,
    pub template: String,
    pub vcpus: Option<u32>,
    pub memory_mib: Option<u64>,
    /// Preferred host for the first start.
    pub host: Option<String>,
    /// The guest's static address `ip/prefix` (kernel-booted templates).
    pub address: Option<String>,
    /// Start it right away (default true).
    pub start: Option<bool>,
}

/// A VM as `vm list` / `vm show` present it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VmInfo {
    pub name: String,
    /// `running`, `stopped`, `starting`, `stopping`, `migrating`, `failed`.
    pub state: String,
    pub node: Option<String>,
    /// What the operator asked: `started` or `stopped`.
    pub target: String,
    pub generation: u64,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub address: Option<String>,
    pub disks: Vec<String>,
    pub last_error: Option<String>,
    pub fail_counts: std::collections::BTreeMap<String, u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MigrateRequest {
    /// The destination; default: the best other host.
    pub to: Option<String>,
    /// Bandwidth cap of the transfer in MiB/s; default: 1024.
    #[serde(default)]
    pub bandwidth_mib_per_second: Option<u64>,
    /// How long the move's constraint (`cli-prefer-*` or `cli-ban-*`) applies; default: until removed.
    #[serde(default)]
    pub lifetime_s: Option<u64>,
}

/// `resource meta NAME key=value ...`: meta-attributes to set (a value) or unset (`null`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MetaRequest {
    pub values: std::collections::BTreeMap<String, Option<String>>,
}

/// A group: members run on one host and start in the order listed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GroupInfo {
    pub name: String,
    pub members: Vec<String>,
}

/// A constraint as `constraint list` shows it and `constraint add` sends it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ConstraintInfo {
    pub id: String,
    /// `location`, `colocation` or `order`.
    pub kind: String,
    /// location: the resource placed; colocation: the one placed relative to `with`;
    /// order: the one that starts first.
    pub resource: String,
    /// location: the host scored.
    #[serde(default)]
    pub host: String,
    /// location and colocation: ±1000000 is ±INFINITY.
    #[serde(default)]
    pub score: i64,
    /// location: when it stops applying (ms since the epoch).
    #[serde(default)]
    pub expires_ms: Option<u64>,
    /// colocation: the resource `resource` is placed relative to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub with: Option<String>,
    /// order: the resource that starts after `resource`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub then: Option<String>,
    /// order: `mandatory` (default: `then` cannot run unless `resource` runs) or
    /// `optional` (orders only what happens in the same plan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordering: Option<String>,
    /// order: whether `then` also stops before `resource` (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symmetrical: Option<bool>,
}

/// What a live migration measured.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MigrationResult {
    pub from: String,
    pub to: String,
    pub qemu_total_time_ms: u64,
    pub downtime_ms: u64,
    pub transferred_bytes: u64,
    pub orchestration_total_ms: u64,
    /// Milliseconds per step, in order.
    #[serde(default)]
    pub step_ms: Vec<(String, u64)>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PoolRequest {
    pub name: String,
    /// Only `dir`.
    pub kind: Option<String>,
    pub path: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TemplateRequest {
    pub name: String,
    pub pool: String,
    pub kernel: Option<String>,
    pub initrd: Option<String>,
    pub cmdline: Option<String>,
    pub base_volume: Option<String>,
    pub disk_size_mib: u64,
    pub bridge: String,
    pub memory_mib: Option<u64>,
    pub vcpus: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodeModeRequest {
    /// `online`, `standby` or `maintenance`.
    pub mode: String,
}

/// `hafen explain`: the per-host scores of a resource and the contributions behind them.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Explanation {
    pub resource: String,
    pub text: String,
}

/// `resource add NAME AGENT param=value ...`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ResourceAddRequest {
    pub name: String,
    /// `ocf:<provider>:<type>`.
    pub agent: String,
    #[serde(default)]
    pub parameters: std::collections::BTreeMap<String, String>,
    pub monitor_interval_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    /// Preferred host for the first start.
    pub host: Option<String>,
    /// Start it right away (default true).
    pub start: Option<bool>,
    /// Run it as a clone (`--clone`, `--promotable`).
    #[serde(default)]
    pub clone: Option<CloneSpec>,
}

/// A clone's shape: `clone-max` (default one per host), promotable with `promoted-max`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
pub struct CloneSpec {
    pub max: Option<u32>,
    #[serde(default)]
    pub promotable: bool,
    pub promoted_max: Option<u32>,
}

/// One instance of a clone.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InstanceInfo {
    pub node: String,
    pub state: String,
    pub promoted: bool,
}

/// Any resource as `resource list` / `resource show` present it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ResourceInfo {
    pub name: String,
    /// `vm` or the agent (`ocf:heartbeat:Dummy`).
    pub kind: String,
    pub state: String,
    pub node: Option<String>,
    pub target: String,
    pub generation: u64,
    pub parameters: std::collections::BTreeMap<String, String>,
    pub last_error: Option<String>,
    pub fail_counts: std::collections::BTreeMap<String, u32>,
    /// Clones: every instance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<InstanceInfo>,
    /// Clones: `clone`, or `promotable clone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clone: Option<String>,
    /// Meta-attributes set on it (`resource-stickiness`, `migration-threshold`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub meta: std::collections::BTreeMap<String, String>,
}
