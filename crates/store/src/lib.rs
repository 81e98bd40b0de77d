//! The replicated cluster state: openraft with our own redb log store and state machine.
//!
//! Openraft types stay inside this crate and `rpc`: the rest of the system talks to a
//! [`Replica`] in model types, and raft RPCs cross the network as opaque JSON.

mod db;
mod log_store;
mod replica;
mod state_machine;

pub use db::{DATA_FILE_NAME, DataFile, FORMAT_VERSION, StoreError};
pub use log_store::LogStore;
pub use replica::{RaftRpc, RaftTiming, ReadError, Replica, ReplicaStatus, WriteError};
pub use state_machine::StateMachineStore;

use serde::{Deserialize, Serialize};
use std::io::Cursor;

/// Where a node is reached: what openraft stores in its membership for each node.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PeerNode {
    pub name: String,
    /// `ip:port` of the node's HTTPS listener.
    pub address: String,
}

openraft::declare_raft_types!(
    /// hafen's openraft configuration: model envelopes in, model apply results out.
    pub TypeConfig:
        D = hafen_model::Envelope,
        R = hafen_model::ApplyResult,
        NodeId = u64,
        Node = PeerNode,
);

/// Opens (or creates) the data file of `data_dir` and returns the two openraft storage halves.
pub fn open(data_dir: &std::path::Path) -> Result<(LogStore, StateMachineStore), StoreError> {
    let file = DataFile::open(data_dir)?;
    let state_machine = StateMachineStore::load(file.clone())?;
    Ok((LogStore::new(file), state_machine))
}
