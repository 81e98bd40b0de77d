//! A running replica: the openraft node over our storage, spoken to in model types.

use crate::state_machine::StateMachineData;
use crate::{LogStore, PeerNode, StateMachineStore, StoreError, TypeConfig};
use hafen_model::{ApplyResult, ClusterState, Envelope};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, Config, Raft, RaftNetworkFactory, ServerState, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Raft timing; defaults keep a leader failover well under 3 s without spurious elections.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct RaftTiming {
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// A snapshot is taken after this many entries; older entries are purged.
    pub snapshot_every_entries: u64,
}

impl Default for RaftTiming {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 400,
            election_timeout_max_ms: 800,
            snapshot_every_entries: 2000,
        }
    }
}

/// The Raft RPCs that cross the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RaftRpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

impl RaftRpc {
    /// openraft's name for the RPC.
    pub fn types(self) -> openraft::RPCTypes {
        match self {
            RaftRpc::AppendEntries => openraft::RPCTypes::AppendEntries,
            RaftRpc::Vote => openraft::RPCTypes::Vote,
            RaftRpc::InstallSnapshot => openraft::RPCTypes::InstallSnapshot,
        }
    }

    pub fn path_segment(self) -> &'static str {
        match self {
            RaftRpc::AppendEntries => "append",
            RaftRpc::Vote => "vote",
            RaftRpc::InstallSnapshot => "snapshot",
        }
    }

    pub fn from_path_segment(segment: &str) -> Option<Self> {
        [
            RaftRpc::AppendEntries,
            RaftRpc::Vote,
            RaftRpc::InstallSnapshot,
        ]
        .into_iter()
        .find(|rpc| rpc.path_segment() == segment)
    }
}

/// Why a write did not commit here.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("this node is not the leader")]
    NotLeader { leader: Option<(u64, PeerNode)> },
    #[error("replica stopped: {0}")]
    Stopped(String),
    #[error("membership change refused: {0}")]
    Membership(String),
}

/// Why a linearizable read could not be served here.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("this node is not the leader")]
    NotLeader { leader: Option<(u64, PeerNode)> },
    /// This node leads but a quorum did not confirm it (members down or unreachable).
    #[error("no quorum confirmed the leadership: {0}")]
    NoQuorum(String),
    #[error("replica stopped: {0}")]
    Stopped(String),
}

/// A summary of the replica's Raft view, for status output.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaStatus {
    pub node_id: u64,
    pub leader_id: Option<u64>,
    pub is_leader: bool,
    pub term: u64,
    pub last_applied_index: Option<u64>,
    pub last_log_index: Option<u64>,
    pub voters: BTreeSet<u64>,
    pub learners: BTreeSet<u64>,
    pub members: BTreeMap<u64, PeerNode>,
    /// Per follower, the last log index it has matched (leader only).
    pub matched: BTreeMap<u64, Option<u64>>,
}

/// One node's replica of the cluster state.
#[derive(Clone)]
pub struct Replica {
    node_id: u64,
    raft: Raft<TypeConfig>,
    state_machine: StateMachineStore,
    confirmation: Arc<Confirmation>,
}

/// Single-flight leadership confirmation: callers arriving while a round runs share the
/// next one instead of each starting their own.
#[derive(Default)]
struct Confirmation {
    round: tokio::sync::Mutex<()>,
    /// When the newest successful round began.
    last_success: std::sync::Mutex<Option<Instant>>,
}

impl Confirmation {
    fn confirmed_since(&self, since: Instant) -> bool {
        self.last_success
            .lock()
            .expect("confirmation lock poisoned")
            .is_some_and(|began| began >= since)
    }
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Replica({})", self.node_id)
    }
}

fn leader_of(forward: &openraft::error::ForwardToLeader<u64, PeerNode>) -> Option<(u64, PeerNode)> {
    match (forward.leader_id, &forward.leader_node) {
        (Some(id), Some(node)) => Some((id, node.clone())),
        _ => None,
    }
}

impl Replica {
    /// Opens the data directory and starts the Raft node; storage errors name the file.
    pub async fn start<N>(
        node_id: u64,
        data_dir: &Path,
        timing: RaftTiming,
        network: N,
    ) -> Result<Self, StoreError>
    where
        N: RaftNetworkFactory<TypeConfig>,
    {
        let (log_store, state_machine) = crate::open(data_dir)?;
        Self::start_with(node_id, timing, network, log_store, state_machine).await
    }

    async fn start_with<N>(
        node_id: u64,
        timing: RaftTiming,
        network: N,
        log_store: LogStore,
        state_machine: StateMachineStore,
    ) -> Result<Self, StoreError>
    where
        N: RaftNetworkFactory<TypeConfig>,
    {
        let config = Config {
            cluster_name: "hafen".to_string(),
            heartbeat_interval: timing.heartbeat_interval_ms,
            election_timeout_min: timing.election_timeout_min_ms,
            election_timeout_max: timing.election_timeout_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(timing.snapshot_every_entries),
            max_in_snapshot_log_to_keep: timing.snapshot_every_entries / 2,
            install_snapshot_timeout: 5_000,
            ..Default::default()
        }
        .validate()
        .map_err(|error| StoreError::Io {
            path: data_dir_placeholder(),
            detail: format!("invalid raft timing: {error}"),
        })?;
        let raft = Raft::new(
            node_id,
            Arc::new(config),
            network,
            log_store,
            state_machine.clone(),
        )
        .await
        .map_err(|error| StoreError::Io {
            path: data_dir_placeholder(),
            detail: format!("raft failed to start: {error}"),
        })?;
        Ok(Self {
            node_id,
            raft,
            state_machine,
            confirmation: Arc::default(),
        })
    }

    /// Whether this replica is the leader, confirmed by a quorum in a round that began at
    /// or after `since` (a Raft read-index round). A leader cut off from its quorum cannot
    /// confirm: the leases of the agents it grants rest on this.
    pub async fn confirm_leadership(&self, since: Instant, timeout: Duration) -> bool {
        let confirmation = &self.confirmation;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if confirmation.confirmed_since(since) {
                return true;
            }
            let Ok(_round) = tokio::time::timeout_at(deadline, confirmation.round.lock()).await
            else {
                return false;
            };
            if confirmation.confirmed_since(since) {
                return true;
            }
            let began = Instant::now();
            match tokio::time::timeout_at(deadline, self.raft.ensure_linearizable()).await {
                Ok(Ok(_)) => {
                    *confirmation
                        .last_success
                        .lock()
                        .expect("confirmation lock poisoned") = Some(began);
                }
                _ => return false,
            }
        }
    }

    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// Makes this node the single member of a new cluster (a no-op if already initialized).
    pub async fn initialize(&self, node: PeerNode) -> Result<(), WriteError> {
        if self
            .raft
            .is_initialized()
            .await
            .map_err(|error| WriteError::Stopped(error.to_string()))?
        {
            return Ok(());
        }
        let members = BTreeMap::from([(self.node_id, node)]);
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(error)) => Err(WriteError::Membership(error.to_string())),
            Err(RaftError::Fatal(fatal)) => Err(WriteError::Stopped(fatal.to_string())),
        }
    }

    /// Proposes a command and returns the result every replica computed for it.
    pub async fn write(&self, envelope: Envelope) -> Result<ApplyResult, WriteError> {
        match self.raft.client_write(envelope).await {
            Ok(response) => Ok(response.data),
            Err(error) => Err(map_write_error(error)),
        }
    }

    /// Reads the state after confirming leadership, so the read reflects every acknowledged write.
    pub async fn read<T>(&self, read: impl FnOnce(&ClusterState) -> T) -> Result<T, ReadError> {
        match self.raft.ensure_linearizable().await {
            Ok(_) => Ok(self.read_local(read)),
            Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(
                forward,
            ))) => Err(ReadError::NotLeader {
                leader: leader_of(&forward),
            }),
            Err(RaftError::APIError(
                other @ openraft::error::CheckIsLeaderError::QuorumNotEnough(_),
            )) => Err(ReadError::NoQuorum(other.to_string())),
            Err(RaftError::Fatal(fatal)) => Err(ReadError::Stopped(fatal.to_string())),
        }
    }

    /// The state after confirming leadership, shared (no copy is made).
    pub async fn read_shared(&self) -> Result<Arc<ClusterState>, ReadError> {
        self.read(|_| ()).await?;
        Ok(self.shared_local())
    }

    /// The local state, shared, without a leadership check (may lag the leader).
    pub fn shared_local(&self) -> Arc<ClusterState> {
        self.state_machine
            .with_state(|data: &StateMachineData| data.state.clone())
    }

    /// Reads the local state without a leadership check (may lag the leader).
    pub fn read_local<T>(&self, read: impl FnOnce(&ClusterState) -> T) -> T {
        self.state_machine
            .with_state(|data: &StateMachineData| read(&data.state))
    }

    /// A receiver that changes whenever this replica applies entries.
    pub fn subscribe_applied(&self) -> watch::Receiver<u64> {
        self.state_machine.subscribe()
    }

    /// Waits until the Raft metrics change (leader, membership, replication).
    pub fn subscribe_metrics(&self) -> watch::Receiver<openraft::RaftMetrics<u64, PeerNode>> {
        self.raft.metrics()
    }

    pub fn status(&self) -> ReplicaStatus {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let learners: BTreeSet<u64> = membership.learner_ids().collect();
        let members: BTreeMap<u64, PeerNode> = membership
            .nodes()
            .map(|(id, node)| (*id, node.clone()))
            .collect();
        let matched = metrics
            .replication
            .as_ref()
            .map(|replication| {
                replication
                    .iter()
                    .map(|(id, log_id)| (*id, log_id.map(|log_id| log_id.index)))
                    .collect()
            })
            .unwrap_or_default();
        ReplicaStatus {
            node_id: self.node_id,
            leader_id: metrics.current_leader,
            is_leader: metrics.state == ServerState::Leader,
            term: metrics.current_term,
            last_applied_index: metrics.last_applied.map(|log_id| log_id.index),
            last_log_index: metrics.last_log_index,
            voters,
            learners,
            members,
            matched,
        }
    }

    /// The current leader as this replica knows it.
    pub fn leader(&self) -> Option<(u64, PeerNode)> {
        let status = self.status();
        let leader_id = status.leader_id?;
        status
            .members
            .get(&leader_id)
            .map(|node| (leader_id, node.clone()))
    }

    /// Adds nodes as learners without waiting for them to catch up.
    pub async fn add_learners(&self, nodes: BTreeMap<u64, PeerNode>) -> Result<(), WriteError> {
        self.raft
            .change_membership(ChangeMembers::AddNodes(nodes), true)
            .await
            .map(|_| ())
            .map_err(map_write_error)
    }

    /// Sets the voter set; voters that lose their vote stay learners.
    pub async fn set_voters(&self, voters: BTreeSet<u64>) -> Result<(), WriteError> {
        self.raft
            .change_membership(ChangeMembers::ReplaceAllVoters(voters), true)
            .await
            .map(|_| ())
            .map_err(map_write_error)
    }

    /// Removes nodes (which must not be voters) from the membership entirely.
    pub async fn remove_nodes(&self, nodes: BTreeSet<u64>) -> Result<(), WriteError> {
        self.raft
            .change_membership(ChangeMembers::RemoveNodes(nodes), false)
            .await
            .map(|_| ())
            .map_err(map_write_error)
    }

    /// Serves a Raft RPC received from a peer: JSON request in, JSON response out.
    pub async fn handle_rpc(&self, rpc: RaftRpc, body: &[u8]) -> Result<Vec<u8>, String> {
        let decode_error =
            |error: serde_json::Error| format!("malformed {} request: {error}", rpc.path_segment());
        let encoded = match rpc {
            RaftRpc::AppendEntries => {
                let request = serde_json::from_slice(body).map_err(decode_error)?;
                serde_json::to_vec(&self.raft.append_entries(request).await)
            }
            RaftRpc::Vote => {
                let request = serde_json::from_slice(body).map_err(decode_error)?;
                serde_json::to_vec(&self.raft.vote(request).await)
            }
            RaftRpc::InstallSnapshot => {
                let request = serde_json::from_slice(body).map_err(decode_error)?;
                serde_json::to_vec(&self.raft.install_snapshot(request).await)
            }
        };
        encoded.map_err(|error| format!("cannot encode {} response: {error}", rpc.path_segment()))
    }

    pub async fn trigger_snapshot(&self) -> Result<(), String> {
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|error| error.to_string())
    }

    pub async fn shutdown(&self) {
        if let Err(error) = self.raft.shutdown().await {
            tracing::warn!(%error, "raft shutdown failed");
        }
    }
}

fn map_write_error(error: RaftError<u64, ClientWriteError<u64, PeerNode>>) -> WriteError {
    match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => WriteError::NotLeader {
            leader: leader_of(&forward),
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(error)) => {
            WriteError::Membership(error.to_string())
        }
        RaftError::Fatal(fatal) => WriteError::Stopped(fatal.to_string()),
    }
}

fn data_dir_placeholder() -> std::path::PathBuf {
    std::path::PathBuf::from("(raft configuration)")
}
