//! Requests and answers between the leader's orchestrator and node agents (`/internal/agent/<op>`).

use hafen_model::resource::{FailureReaction, OcfResourceConfig, PoolConfig, VmConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Pools travel with each request so the agent needs no replicated state to act.
pub type Pools = BTreeMap<String, PoolConfig>;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum AgentRequest {
    Start {
        name: String,
        generation: u64,
        vm: VmConfig,
        pools: Pools,
    },
    Stop {
        name: String,
        timeout_ms: u64,
        pools: Pools,
    },
    Kill {
        name: String,
        pools: Pools,
    },
    Status {
        name: String,
        pools: Pools,
    },
    PrepareIncoming {
        name: String,
        generation: u64,
        vm: VmConfig,
        pools: Pools,
    },
    AwaitIncoming {
        name: String,
        timeout_ms: u64,
        pools: Pools,
    },
    /// Sends the VM; answers [`AgentAnswer::Migrated`] once everything is sent and the
    /// source is paused for good (QEMU's `postmigrate`).
    MigrateOutgoing {
        name: String,
        target: std::net::SocketAddr,
        max_bandwidth_bytes_per_second: u64,
        downtime_limit_ms: u64,
        timeout_ms: u64,
        pools: Pools,
    },
    /// After the destination runs the guest: ends the paused source. Answers
    /// [`AgentAnswer::Done`] as soon as the end is ordered and nothing can resume the
    /// source; the process exits in the background and every later request naming the
    /// VM on that host waits for it to be gone.
    CompleteOutgoing {
        name: String,
        pools: Pools,
    },
    AbortOutgoing {
        name: String,
        pools: Pools,
    },
    CreateVolume {
        pool: String,
        volume: String,
        size_mib: u64,
        base: Option<String>,
        pools: Pools,
    },
    DeleteVolume {
        pool: String,
        volume: String,
        pools: Pools,
    },
    OcfStart {
        name: String,
        generation: u64,
        ocf: OcfResourceConfig,
    },
    OcfStop {
        name: String,
        ocf: OcfResourceConfig,
    },
    /// Promotable clones: promote or demote the instance on this host.
    OcfPromote {
        name: String,
        ocf: OcfResourceConfig,
    },
    OcfDemote {
        name: String,
        ocf: OcfResourceConfig,
    },
    /// `probe`: a one-shot monitor (interval 0), as when learning where a resource runs.
    OcfMonitor {
        name: String,
        ocf: OcfResourceConfig,
        probe: bool,
    },
    /// Validates parameters against the agent's meta-data; answers the meta-data.
    OcfCheck {
        name: String,
        ocf: OcfResourceConfig,
    },
    OcfMetadata {
        agent: String,
    },
    OcfListAgents,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "kebab-case")]
pub enum AgentAnswer {
    Done,
    /// The VM's state: `stopped`, `running`, `paused`, `incoming`, `migrated_away`, `shutting_down`, `crashed`.
    Vm {
        state: String,
        pid: Option<u32>,
    },
    Incoming {
        address: std::net::SocketAddr,
    },
    Migrated {
        total_time_ms: u64,
        downtime_ms: u64,
        transferred_bytes: u64,
    },
    /// The operation failed; the message names what went wrong.
    Failed {
        error: String,
        /// For a resource agent's failure: how it is to be recovered.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reaction: Option<FailureReaction>,
    },
    /// A resource agent's view: `running`, `stopped`, `promoted`, `failed` or `unknown`.
    State {
        state: String,
        message: String,
        /// When the state is a failure of a running resource: how it is to be recovered.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reaction: Option<FailureReaction>,
    },
    Metadata {
        metadata: serde_json::Value,
    },
    Agents {
        agents: Vec<String>,
    },
}

impl AgentAnswer {
    /// The state an answer reports, for VMs and agents alike.
    pub fn state(&self) -> Option<&str> {
        match self {
            AgentAnswer::Vm { state, .. } | AgentAnswer::State { state, .. } => Some(state),
            _ => None,
        }
    }
}
