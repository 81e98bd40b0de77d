//! Commands: the only way the replicated state changes; each one is applied whole or refused with a reason.

use crate::config::{ConfigChange, DiffLine};
use crate::state::{NodeRole, NodeSummary};
use serde::{Deserialize, Serialize};

/// A command as it travels through the replicated log.
///
/// The leader stamps `now_ms` (wall-clock milliseconds) when it proposes, so applying is pure
/// and every replica computes the same result. `request_id` makes retries idempotent: a
/// command whose id was already applied returns the first result and changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub request_id: String,
    pub now_ms: u64,
    pub command: Command,
}

/// Everything that can change the replicated state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    /// The first command of a cluster: its identity, the first node and the admin credential.
    Bootstrap {
        cluster_name: String,
        ca_cert_pem: String,
        ca_key_pem: String,
        node: NewNode,
        admin_token_sha256: String,
    },
    /// A change of the versioned configuration; bumps the epoch.
    Configure { change: ConfigChange },
    /// Restores the configuration of an earlier epoch as a new epoch.
    Rollback { epoch: u64 },
    /// Registers a one-time join token (only its hash is stored).
    IssueJoinToken {
        token_id: String,
        secret_sha256: String,
        expires_ms: u64,
    },
    /// Consumes a join token and adds the node, atomically.
    Join {
        token_id: String,
        secret_sha256: String,
        node: NewNode,
    },
    /// Removes a node from the cluster.
    RemoveNode { name: String },
    /// The leader stopped hearing from a node: it is unclean until fenced.
    HostSuspected { name: String },
    /// A node is confirmed off (`how`: the device, or an operator's confirmation).
    HostFenced { name: String, how: String },
    /// A fenced node answers again; it starts clean and takes work from the leader.
    HostRejoined { name: String },
    /// A node declares whether it self-fences with a watchdog (from its heartbeats).
    DeclareSelfFencing {
        name: String,
        self_fencing: Option<crate::fencing::SelfFencing>,
    },
    /// A node declares its capacity (from its heartbeats): `cpu` and `memory` (MiB).
    DeclareCapacity {
        name: String,
        capacity: std::collections::BTreeMap<String, u64>,
    },
    /// Forgets a resource's failures (`resource cleanup`): fail counts and last error.
    CleanupResource { name: String },
    /// An operator sets a node online, in standby or in maintenance.
    SetNodeMode {
        name: String,
        mode: crate::state::NodeMode,
    },
    /// A resource's runtime state changed (committed by the leader from an agent's report).
    Transition {
        transition: crate::resource::Transition,
    },
    /// A clone instance's runtime state changed on one host.
    InstanceTransition {
        transition: crate::resource::InstanceTransition,
    },
    /// A no-op with no effect but an event, used by tests and benchmarks as a cheap write.
    Noop,
}

impl Command {
    /// A short name for events and logs; never includes secrets.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::Bootstrap { .. } => "bootstrap",
            Command::Configure { .. } => "configure",
            Command::Rollback { .. } => "rollback",
            Command::IssueJoinToken { .. } => "issue-join-token",
            Command::Join { .. } => "join",
            Command::RemoveNode { .. } => "remove-node",
            Command::Transition { .. } => "transition",
            Command::InstanceTransition { .. } => "instance-transition",
            Command::SetNodeMode { .. } => "set-node-mode",
            Command::CleanupResource { .. } => "cleanup-resource",
            Command::HostSuspected { .. } => "host-suspected",
            Command::HostFenced { .. } => "host-fenced",
            Command::HostRejoined { .. } => "host-rejoined",
            Command::DeclareSelfFencing { .. } => "declare-self-fencing",
            Command::DeclareCapacity { .. } => "declare-capacity",
            Command::Noop => "noop",
        }
    }
}

/// A node as it asks to be admitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewNode {
    pub name: String,
    /// `host:port` where peers and clients reach it.
    pub address: String,
    pub role: NodeRole,
}

/// What an applied command produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Outcome {
    Done,
    /// The configuration moved to this epoch.
    Epoch {
        epoch: u64,
        diff: Vec<DiffLine>,
    },
    /// A node was admitted with this Raft id.
    Admitted {
        node: NodeSummary,
    },
    Removed {
        node: NodeSummary,
    },
    /// A resource's runtime state changed; its generation is now this.
    Transitioned {
        generation: u64,
    },
}

/// Why a command was refused; the state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "type", content = "message", rename_all = "snake_case")]
pub enum Rejection {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unauthorized(String),
}

/// The result every replica computes for a log entry.
pub type ApplyResult = Result<Outcome, Rejection>;
