//! The replicated cluster state and the pure function that applies a command to it.

use crate::command::{ApplyResult, Command, Envelope, NewNode, Outcome, Rejection};
use crate::config::{self, ClusterConfig, ConfigChange, ConfigError};
use crate::names::NodeName;
use crate::resource::{Phase, ResourceState, Transition};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// Events kept in the replicated log of events, oldest dropped first.
pub const EVENT_LIMIT: usize = 1000;
/// Request ids remembered for idempotent retries.
pub const REQUEST_MEMORY: usize = 20_000;

/// What a node does in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    /// Runs workloads; may be a voter or a learner.
    #[default]
    Member,
    /// Always a voter, never runs workloads (the tie-breaker of two-host sites).
    Witness,
}

impl std::str::FromStr for NodeRole {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "member" => Ok(NodeRole::Member),
            "witness" => Ok(NodeRole::Witness),
            other => Err(format!(
                "unknown role {other:?} (expected member or witness)"
            )),
        }
    }
}

/// An operator's choice for a node (`hafen node standby|online|maintenance`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NodeMode {
    #[default]
    Online,
    /// Takes no resources; what runs there moves away (live when allowed).
    Standby,
    /// Its resources are left exactly as they are; it takes nothing new.
    Maintenance,
}

impl std::str::FromStr for NodeMode {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "online" => Ok(NodeMode::Online),
            "standby" => Ok(NodeMode::Standby),
            "maintenance" => Ok(NodeMode::Maintenance),
            other => Err(format!(
                "unknown node mode {other:?} (expected online, standby or maintenance)"
            )),
        }
    }
}

/// The cluster's identity, fixed at bootstrap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterIdentity {
    pub name: String,
    pub ca_cert_pem: String,
    /// The CA key is replicated so that any leader can admit nodes (as Proxmox replicates its CA).
    pub ca_key_pem: String,
    pub created_ms: u64,
}

/// A member of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub name: NodeName,
    /// The node's Raft id, assigned at admission and never reused.
    pub node_id: u64,
    pub address: String,
    pub role: NodeRole,
    pub joined_ms: u64,
    #[serde(default)]
    pub mode: NodeMode,
    #[serde(default)]
    pub fencing: crate::fencing::Fencing,
    /// Set when the node declares a watchdog (its heartbeats say so); `None`: only a
    /// device or an operator can confirm it fenced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_fencing: Option<crate::fencing::SelfFencing>,
    /// What the node declares it can hold (`cpu`: hardware threads, `memory`: MiB), from
    /// its heartbeats; empty until declared (then the scheduler sets it no limit).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub capacity: BTreeMap<String, u64>,
}

/// The public facts of a node, as command outcomes report them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSummary {
    pub name: String,
    pub node_id: u64,
    pub address: String,
    pub role: NodeRole,
}

impl From<&NodeRecord> for NodeSummary {
    fn from(node: &NodeRecord) -> Self {
        NodeSummary {
            name: node.name.to_string(),
            node_id: node.node_id,
            address: node.address.clone(),
            role: node.role,
        }
    }
}

/// A one-time join token; only the secret's hash is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinToken {
    pub secret_sha256: String,
    pub expires_ms: u64,
    pub used_by: Option<String>,
}

/// An API credential; only its hash is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    pub name: String,
    pub token_sha256: String,
}

/// One entry of the bounded event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    pub id: u64,
    pub at_ms: u64,
    pub kind: String,
    pub message: String,
}

/// One version of the configuration, kept for history, diff and rollback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigVersion {
    pub epoch: u64,
    pub at_ms: u64,
    pub summary: String,
    pub request_id: String,
    /// Shared: cloning the state (every read of it) must not copy every kept version.
    pub config: std::sync::Arc<ClusterConfig>,
}

/// The whole replicated state; every replica holds the same value after the same log prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    pub identity: Option<ClusterIdentity>,
    /// The configuration epoch; bumped by every configuration change.
    pub epoch: u64,
    pub config: ClusterConfig,
    pub history: VecDeque<ConfigVersion>,
    pub nodes: BTreeMap<NodeName, NodeRecord>,
    pub next_node_id: u64,
    pub join_tokens: BTreeMap<String, JoinToken>,
    pub api_tokens: Vec<ApiToken>,
    pub events: VecDeque<EventRecord>,
    pub next_event_id: u64,
    /// Committed runtime state of each configured resource.
    #[serde(default)]
    pub runtime: BTreeMap<String, ResourceState>,
    /// Results of recently applied requests, for idempotent retries.
    pub recent_requests: BTreeMap<String, ApplyResult>,
    pub recent_order: VecDeque<String>,
}

impl ClusterState {
    /// Applies one command: the whole change, or none of it with the reason.
    pub fn apply(&mut self, envelope: &Envelope) -> ApplyResult {
        if let Some(previous) = self.recent_requests.get(&envelope.request_id) {
            return previous.clone();
        }
        let result = self.apply_new(envelope);
        self.remember(&envelope.request_id, &result);
        result
    }

    fn apply_new(&mut self, envelope: &Envelope) -> ApplyResult {
        let now_ms = envelope.now_ms;
        if self.identity.is_none() && !matches!(envelope.command, Command::Bootstrap { .. }) {
            return Err(Rejection::Invalid(
                "the cluster is not bootstrapped yet".to_string(),
            ));
        }
        match &envelope.command {
            Command::Bootstrap {
                cluster_name,
                ca_cert_pem,
                ca_key_pem,
                node,
                admin_token_sha256,
            } => {
                if self.identity.is_some() {
                    return Err(Rejection::Conflict(
                        "the cluster is already bootstrapped".to_string(),
                    ));
                }
                let record = self.admit(node, now_ms)?;
                self.identity = Some(ClusterIdentity {
                    name: cluster_name.clone(),
                    ca_cert_pem: ca_cert_pem.clone(),
                    ca_key_pem: ca_key_pem.clone(),
                    created_ms: now_ms,
                });
                self.api_tokens.push(ApiToken {
                    name: "admin".to_string(),
                    token_sha256: admin_token_sha256.clone(),
                });
                self.epoch = 1;
                self.history.push_back(ConfigVersion {
                    epoch: 1,
                    at_ms: now_ms,
                    summary: "bootstrap".to_string(),
                    request_id: envelope.request_id.clone(),
                    config: std::sync::Arc::new(self.config.clone()),
                });
                let summary = NodeSummary::from(&record);
                self.insert_node(record);
                self.event(
                    now_ms,
                    "cluster",
                    format!("cluster {cluster_name:?} bootstrapped on {}", summary.name),
                );
                Ok(Outcome::Admitted { node: summary })
            }
            Command::Configure { change } => {
                if let ConfigChange::RemoveResource { name } = change
                    && let Some(runtime) = self.runtime.get(name)
                    && runtime.phase != Phase::Stopped
                {
                    return Err(Rejection::Conflict(format!(
                        "resource {name} is {} on {}; stop it first",
                        runtime.phase.name(),
                        runtime.host.as_deref().unwrap_or("no host")
                    )));
                }
                if let ConfigChange::SetConstraint { constraint } = change
                    && !self
                        .nodes
                        .keys()
                        .any(|node| node.as_str() == constraint.host)
                {
                    return Err(Rejection::NotFound(format!(
                        "constraint {}: no node named {}",
                        constraint.id, constraint.host
                    )));
                }
                let next = self.config.with_change(change).map_err(rejection)?;
                if let ConfigChange::RemoveResource { name } = change {
                    self.runtime.remove(name);
                }
                Ok(self.commit_config(next, change.summary(), envelope))
            }
            Command::Transition { transition } => self.transition(transition, now_ms),
            Command::InstanceTransition { transition } => {
                self.instance_transition(transition, now_ms)
            }
            Command::HostSuspected { name } => {
                let node = self.node_mut(name)?;
                if node.fencing != crate::fencing::Fencing::None {
                    return Err(Rejection::Conflict(format!(
                        "node {name} is already {}",
                        node.fencing.name()
                    )));
                }
                node.fencing = crate::fencing::Fencing::Unclean { since_ms: now_ms };
                self.event(
                    now_ms,
                    "fencing",
                    format!("node {name} stopped answering: unclean, to be fenced"),
                );
                Ok(Outcome::Done)
            }
            Command::HostFenced { name, how } => {
                let node = self.node_mut(name)?;
                if matches!(node.fencing, crate::fencing::Fencing::Fenced { .. }) {
                    return Err(Rejection::Conflict(format!(
                        "node {name} is already fenced"
                    )));
                }
                node.fencing = crate::fencing::Fencing::Fenced {
                    how: how.clone(),
                    at_ms: now_ms,
                };
                // Confirmed off: nothing of it runs any more, so its resources may start elsewhere.
                // The generation moves on, so an operation still in flight there cannot commit
                // its outcome over the release (a failed migration from it would record the VM
                // running on the fenced host). A VM migrating away from it may already run on
                // the destination, its only possible copy now: it is starting there, and the
                // reconciler settles whether it runs (a destination that never got the guest
                // counts as failed there and is stopped).
                let mut released = Vec::new();
                for (resource, runtime) in self.runtime.iter_mut() {
                    if runtime.host.as_deref() == Some(name.as_str()) {
                        runtime.generation += 1;
                        match runtime.phase.clone() {
                            Phase::Migrating { to } => {
                                runtime.phase = Phase::Starting;
                                runtime.last_error = Some(format!(
                                    "host {name} was fenced while {resource} migrated to {to}"
                                ));
                                released.push(format!("{resource} (to {to})"));
                                runtime.host = Some(to);
                            }
                            _ => {
                                runtime.phase = Phase::Stopped;
                                runtime.host = None;
                                runtime.last_error = Some(format!("host {name} was fenced"));
                                released.push(resource.clone());
                            }
                        }
                    }
                    if runtime.instances.remove(name.as_str()).is_some() {
                        runtime.last_error = Some(format!("host {name} was fenced"));
                        released.push(format!("{resource} (instance)"));
                    }
                }
                self.event(
                    now_ms,
                    "fencing",
                    format!(
                        "node {name} fenced ({how}); released: {}",
                        if released.is_empty() {
                            "nothing".to_string()
                        } else {
                            released.join(", ")
                        }
                    ),
                );
                Ok(Outcome::Done)
            }
            Command::DeclareSelfFencing { name, self_fencing } => {
                let node = self.node_mut(name)?;
                if node.self_fencing == *self_fencing {
                    return Err(Rejection::Conflict(format!(
                        "node {name} already declared this"
                    )));
                }
                node.self_fencing = *self_fencing;
                let message = match self_fencing {
                    Some(declared) => format!(
                        "node {name} self-fences with a watchdog (timeout {} ms): its lease certainly lapsing confirms it fenced",
                        declared.watchdog_timeout_ms
                    ),
                    None => format!(
                        "node {name} runs no watchdog: only a fence device or an operator confirms it fenced"
                    ),
                };
                self.event(now_ms, "fencing", message);
                Ok(Outcome::Done)
            }
            Command::DeclareCapacity { name, capacity } => {
                if let Some((key, _)) = capacity
                    .iter()
                    .find(|(key, value)| !matches!(key.as_str(), "cpu" | "memory") || **value == 0)
                {
                    return Err(Rejection::Invalid(format!(
                        "node {name}: capacity {key} must be cpu or memory, above 0"
                    )));
                }
                let node = self.node_mut(name)?;
                if node.capacity == *capacity {
                    return Err(Rejection::Conflict(format!(
                        "node {name} already declared this capacity"
                    )));
                }
                node.capacity = capacity.clone();
                let listed: Vec<String> = capacity
                    .iter()
                    .map(|(key, value)| format!("{key}={value}"))
                    .collect();
                self.event(
                    now_ms,
                    "membership",
                    format!(
                        "node {name} declares capacity {} (memory in MiB)",
                        listed.join(" ")
                    ),
                );
                Ok(Outcome::Done)
            }
            Command::HostRejoined { name } => {
                let node = self.node_mut(name)?;
                // Fenced: it starts clean. Unclean: it answered again before it was fenced, so
                // nothing of it was started elsewhere (I2) and it keeps what it runs.
                let was = node.fencing.name();
                if node.fencing == crate::fencing::Fencing::None {
                    return Err(Rejection::Conflict(format!(
                        "node {name} is neither unclean nor fenced"
                    )));
                }
                node.fencing = crate::fencing::Fencing::None;
                let message = if was == "fenced" {
                    format!("node {name} rejoined after fencing; it starts clean")
                } else {
                    format!("node {name} answers again before it was fenced; suspicion cleared")
                };
                self.event(now_ms, "fencing", message);
                Ok(Outcome::Done)
            }
            Command::CleanupResource { name } => {
                if !self.config.resources.contains_key(name) {
                    return Err(Rejection::NotFound(format!("no resource named {name}")));
                }
                let runtime = self.runtime.entry(name.clone()).or_default();
                let forgotten: u32 = runtime.fail_counts.values().sum();
                runtime.fail_counts.clear();
                runtime.last_error = None;
                self.event(
                    now_ms,
                    "resource",
                    format!("{name}: cleanup forgot {forgotten} failures"),
                );
                Ok(Outcome::Done)
            }
            Command::SetNodeMode { name, mode } => {
                let Some(node) = self
                    .nodes
                    .values_mut()
                    .find(|node| node.name.as_str() == name)
                else {
                    return Err(Rejection::NotFound(format!("no node named {name}")));
                };
                if node.role == NodeRole::Witness && *mode != NodeMode::Online {
                    return Err(Rejection::Invalid(format!(
                        "node {name} is a witness: it runs nothing to put in {mode:?}"
                    )));
                }
                node.mode = *mode;
                self.event(now_ms, "node", format!("node {name} set to {mode:?}"));
                Ok(Outcome::Done)
            }
            Command::Rollback { epoch } => {
                let Some(version) = self.history.iter().find(|version| version.epoch == *epoch)
                else {
                    return Err(Rejection::NotFound(format!(
                        "epoch {epoch} is not in the configuration history (kept: {})",
                        self.history_range()
                    )));
                };
                let next = ClusterConfig::clone(&version.config);
                Ok(self.commit_config(next, format!("rollback to epoch {epoch}"), envelope))
            }
            Command::IssueJoinToken {
                token_id,
                secret_sha256,
                expires_ms,
            } => {
                if self.join_tokens.contains_key(token_id) {
                    return Err(Rejection::Conflict(format!(
                        "join token id {token_id} exists already"
                    )));
                }
                self.expire_tokens(now_ms);
                self.join_tokens.insert(
                    token_id.clone(),
                    JoinToken {
                        secret_sha256: secret_sha256.clone(),
                        expires_ms: *expires_ms,
                        used_by: None,
                    },
                );
                self.event(now_ms, "token", format!("join token {token_id} issued"));
                Ok(Outcome::Done)
            }
            Command::Join {
                token_id,
                secret_sha256,
                node,
            } => {
                self.check_join_token(token_id, secret_sha256, now_ms)?;
                let record = self.admit(node, now_ms)?;
                let summary = NodeSummary::from(&record);
                if let Some(token) = self.join_tokens.get_mut(token_id) {
                    token.used_by = Some(summary.name.clone());
                }
                self.insert_node(record);
                self.event(
                    now_ms,
                    "membership",
                    format!(
                        "node {} joined as {:?} with id {} (token {token_id})",
                        summary.name, summary.role, summary.node_id
                    ),
                );
                Ok(Outcome::Admitted { node: summary })
            }
            Command::RemoveNode { name } => {
                let key = NodeName::new(name.clone())
                    .map_err(|error| Rejection::Invalid(error.to_string()))?;
                let Some(record) = self.nodes.get(&key) else {
                    return Err(Rejection::NotFound(format!("no node named {name}")));
                };
                if self.nodes.len() == 1 {
                    return Err(Rejection::Conflict(format!(
                        "node {name} is the last node of the cluster"
                    )));
                }
                let summary = NodeSummary::from(record);
                self.nodes.remove(&key);
                self.event(now_ms, "membership", format!("node {name} removed"));
                Ok(Outcome::Removed { node: summary })
            }
            Command::Noop => {
                self.event(now_ms, "noop", "no-op".to_string());
                Ok(Outcome::Done)
            }
        }
    }

    /// Applies a runtime transition the leader reports, refusing stale generations.
    fn transition(&mut self, transition: &Transition, now_ms: u64) -> ApplyResult {
        let name = &transition.resource;
        if !self.config.resources.contains_key(name) {
            return Err(Rejection::NotFound(format!("no resource named {name}")));
        }
        if let Some(host) = &transition.host
            && !self.nodes.keys().any(|node| node.as_str() == host)
        {
            return Err(Rejection::NotFound(format!("no node named {host}")));
        }
        let current = self.runtime.get(name).cloned().unwrap_or_default();
        if transition.generation != current.generation {
            return Err(Rejection::Conflict(format!(
                "stale transition for {name}: generation {} is not the current {}",
                transition.generation, current.generation
            )));
        }
        let mut next = current.clone();
        if transition.new_assignment {
            next.generation += 1;
        }
        next.phase = transition.phase.clone();
        next.host = transition.host.clone();
        next.last_error = transition.error.clone();
        let mut reaction = "";
        if transition.phase == Phase::Failed
            && let Some(host) = &transition.host
        {
            reaction = self.count_failure(&mut next, host, transition.reaction);
        }
        let message = match (&transition.error, &next.host) {
            (Some(error), Some(host)) => {
                format!("{name} {} on {host}: {error}{reaction}", next.phase.name())
            }
            (Some(error), None) => format!("{name} {}: {error}", next.phase.name()),
            (None, Some(host)) => format!("{name} {} on {host}", next.phase.name()),
            (None, None) => format!("{name} {}", next.phase.name()),
        };
        let generation = next.generation;
        self.runtime.insert(name.clone(), next);
        self.event(now_ms, "resource", message);
        Ok(Outcome::Transitioned { generation })
    }

    /// Counts a failure of a resource on `host` as its reaction says; returns the event's
    /// note on the reaction.
    fn count_failure(
        &self,
        runtime: &mut ResourceState,
        host: &str,
        reaction: Option<crate::resource::FailureReaction>,
    ) -> &'static str {
        use crate::resource::{FAIL_COUNT_INFINITY, FailureReaction};
        match reaction.unwrap_or(FailureReaction::Soft) {
            FailureReaction::Soft => {
                let count = runtime.fail_counts.entry(host.to_string()).or_insert(0);
                *count = count.saturating_add(1).min(FAIL_COUNT_INFINITY);
                ""
            }
            FailureReaction::Hard => {
                runtime
                    .fail_counts
                    .insert(host.to_string(), FAIL_COUNT_INFINITY);
                " (hard error: banned from this host until `resource cleanup`)"
            }
            FailureReaction::Fatal => {
                for node in self.nodes.values() {
                    runtime
                        .fail_counts
                        .insert(node.name.to_string(), FAIL_COUNT_INFINITY);
                }
                " (fatal error: stopped everywhere, started nowhere until `resource cleanup`)"
            }
        }
    }

    /// A clone instance's transition; `Stopped` removes the instance.
    fn instance_transition(
        &mut self,
        transition: &crate::resource::InstanceTransition,
        now_ms: u64,
    ) -> ApplyResult {
        let name = &transition.resource;
        let Some(config) = self.config.resources.get(name) else {
            return Err(Rejection::NotFound(format!("no resource named {name}")));
        };
        if config.clone.is_none() {
            return Err(Rejection::Invalid(format!("{name} is not a clone")));
        }
        let host = &transition.host;
        if !self.nodes.keys().any(|node| node.as_str() == host) {
            return Err(Rejection::NotFound(format!("no node named {host}")));
        }
        let mut next = self.runtime.get(name).cloned().unwrap_or_default();
        let mut reaction = "";
        if transition.phase == Phase::Failed {
            reaction = self.count_failure(&mut next, host, transition.reaction);
        }
        if transition.phase == Phase::Stopped {
            next.instances.remove(host);
        } else {
            next.instances.insert(
                host.clone(),
                crate::resource::InstanceState {
                    phase: transition.phase.clone(),
                    promoted: transition.promoted,
                },
            );
        }
        if transition.error.is_some() {
            next.last_error = transition.error.clone();
        }
        // The clone as a whole: running where any instance runs.
        next.phase = if next
            .instances
            .values()
            .any(|instance| instance.phase == Phase::Running)
        {
            Phase::Running
        } else if next.instances.is_empty() {
            Phase::Stopped
        } else {
            transition.phase.clone()
        };
        next.host = None;
        let role = if transition.promoted && transition.phase == Phase::Running {
            " (promoted)"
        } else {
            ""
        };
        let message = match &transition.error {
            Some(error) => format!(
                "{name} {} on {host}{role}: {error}{reaction}",
                transition.phase.name()
            ),
            None => format!("{name} {} on {host}{role}", transition.phase.name()),
        };
        let generation = next.generation;
        self.runtime.insert(name.clone(), next);
        self.event(now_ms, "resource", message);
        Ok(Outcome::Transitioned { generation })
    }

    fn node_mut(&mut self, name: &str) -> Result<&mut NodeRecord, Rejection> {
        self.nodes
            .values_mut()
            .find(|node| node.name.as_str() == name)
            .ok_or_else(|| Rejection::NotFound(format!("no node named {name}")))
    }

    fn check_join_token(
        &self,
        token_id: &str,
        secret_sha256: &str,
        now_ms: u64,
    ) -> Result<(), Rejection> {
        let Some(token) = self.join_tokens.get(token_id) else {
            return Err(Rejection::Unauthorized(
                "join token is unknown to this cluster".to_string(),
            ));
        };
        if token.secret_sha256 != secret_sha256 {
            return Err(Rejection::Unauthorized(
                "join token is wrong (its secret does not match)".to_string(),
            ));
        }
        if let Some(user) = &token.used_by {
            return Err(Rejection::Unauthorized(format!(
                "join token was already used (by node {user})"
            )));
        }
        if now_ms >= token.expires_ms {
            return Err(Rejection::Unauthorized(format!(
                "join token expired {} s ago",
                (now_ms - token.expires_ms) / 1000
            )));
        }
        Ok(())
    }

    /// Validates a new node and builds its record without inserting it.
    fn admit(&self, node: &NewNode, now_ms: u64) -> Result<NodeRecord, Rejection> {
        let name = NodeName::new(node.name.clone())
            .map_err(|error| Rejection::Invalid(error.to_string()))?;
        if self.nodes.contains_key(&name) {
            return Err(Rejection::Conflict(format!(
                "a node named {name} is already a member"
            )));
        }
        if node.address.parse::<core::net::SocketAddr>().is_err() {
            return Err(Rejection::Invalid(format!(
                "node address {:?} is not an ip:port",
                node.address
            )));
        }
        if let Some(other) = self.nodes.values().find(|n| n.address == node.address) {
            return Err(Rejection::Conflict(format!(
                "address {} is already used by node {}",
                node.address, other.name
            )));
        }
        Ok(NodeRecord {
            name,
            node_id: self.next_node_id.max(1),
            address: node.address.clone(),
            role: node.role,
            joined_ms: now_ms,
            mode: NodeMode::Online,
            fencing: crate::fencing::Fencing::None,
            self_fencing: None,
            capacity: BTreeMap::new(),
        })
    }

    fn insert_node(&mut self, record: NodeRecord) {
        self.next_node_id = record.node_id + 1;
        self.nodes.insert(record.name.clone(), record);
    }

    fn commit_config(
        &mut self,
        next: ClusterConfig,
        summary: String,
        envelope: &Envelope,
    ) -> Outcome {
        let diff = config::diff(&self.config, &next);
        self.epoch += 1;
        self.config = next;
        let limit = usize::try_from(self.config.integer("config-history-limit")).unwrap_or(10);
        self.history.push_back(ConfigVersion {
            epoch: self.epoch,
            at_ms: envelope.now_ms,
            summary: summary.clone(),
            request_id: envelope.request_id.clone(),
            config: std::sync::Arc::new(self.config.clone()),
        });
        while self.history.len() > limit {
            self.history.pop_front();
        }
        self.event(
            envelope.now_ms,
            "config",
            format!("epoch {}: {summary}", self.epoch),
        );
        Outcome::Epoch {
            epoch: self.epoch,
            diff,
        }
    }

    fn history_range(&self) -> String {
        match (self.history.front(), self.history.back()) {
            (Some(first), Some(last)) => format!("epochs {} to {}", first.epoch, last.epoch),
            _ => "none".to_string(),
        }
    }

    fn expire_tokens(&mut self, now_ms: u64) {
        // Expired or used tokens are kept a day so a late join attempt gets a precise refusal.
        const KEEP_MS: u64 = 24 * 3600 * 1000;
        self.join_tokens
            .retain(|_, token| token.expires_ms.saturating_add(KEEP_MS) > now_ms);
    }

    fn event(&mut self, at_ms: u64, kind: &str, message: String) {
        self.next_event_id += 1;
        self.events.push_back(EventRecord {
            id: self.next_event_id,
            at_ms,
            kind: kind.to_string(),
            message,
        });
        while self.events.len() > EVENT_LIMIT {
            self.events.pop_front();
        }
    }

    fn remember(&mut self, request_id: &str, result: &ApplyResult) {
        self.recent_requests
            .insert(request_id.to_string(), result.clone());
        self.recent_order.push_back(request_id.to_string());
        while self.recent_order.len() > REQUEST_MEMORY {
            if let Some(oldest) = self.recent_order.pop_front() {
                self.recent_requests.remove(&oldest);
            }
        }
    }

    /// The name of the API credential whose hash is `token_sha256`, if any.
    pub fn authenticate(&self, token_sha256: &str) -> Option<&str> {
        self.api_tokens
            .iter()
            .find(|token| token.token_sha256 == token_sha256)
            .map(|token| token.name.as_str())
    }

    /// The configuration as it was at `epoch`, if the history still has it.
    pub fn config_at(&self, epoch: u64) -> Option<&ClusterConfig> {
        self.history
            .iter()
            .find(|version| version.epoch == epoch)
            .map(|version| version.config.as_ref())
    }

    pub fn node_by_id(&self, node_id: u64) -> Option<&NodeRecord> {
        self.nodes.values().find(|node| node.node_id == node_id)
    }
}

fn rejection(error: ConfigError) -> Rejection {
    match error {
        ConfigError::Property(error) => Rejection::Invalid(error.to_string()),
        ConfigError::Invalid(message) => Rejection::Invalid(message),
        ConfigError::NotFound(message) => Rejection::NotFound(message),
        ConfigError::Conflict(message) => Rejection::Conflict(message),
    }
}

#[cfg(test)]
mod tests;
