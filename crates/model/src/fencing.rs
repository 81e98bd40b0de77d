//! Fencing in the replicated state: configured fence devices and each node's fencing state.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A fence device: a standard fence agent with its parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceDeviceConfig {
    pub name: String,
    /// The agent's file name, e.g. `fence_ipmilan`.
    pub agent: String,
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    /// Parameters whose values are secrets (never shown, never logged).
    #[serde(default)]
    pub secret_parameters: BTreeSet<String>,
    /// Node name -> the plug/port this device powers it with; a node not listed is its own plug.
    #[serde(default)]
    pub host_map: BTreeMap<String, String>,
}

/// A node that self-fences: when its lease lapses its agent kills what it runs and stops
/// petting a hardware watchdog, which resets the host within `watchdog_timeout_ms` should
/// the agent itself hang. Its lease certainly lapsing therefore confirms it fenced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfFencing {
    pub watchdog_timeout_ms: u64,
}

/// Where a node stands with respect to fencing (DESIGN section 4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Fencing {
    #[default]
    None,
    /// Stopped answering; may still run its resources, so they are neither touched nor
    /// started elsewhere until it is fenced (I2).
    Unclean { since_ms: u64 },
    /// Confirmed off (`how`: a device, or an operator); its resources may start elsewhere.
    Fenced { how: String, at_ms: u64 },
}

impl Fencing {
    pub fn name(&self) -> &'static str {
        match self {
            Fencing::None => "none",
            Fencing::Unclean { .. } => "unclean",
            Fencing::Fenced { .. } => "fenced",
        }
    }
}
