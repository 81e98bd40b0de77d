//! openraft's network over the peer client: each RPC is a JSON POST to `/internal/raft/<rpc>` on the target.

use crate::peer::{PeerClient, PeerError};
use hafen_store::{PeerNode, RaftRpc, TypeConfig};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// How long a Raft request may run on after openraft stopped waiting for it.
const CARRY_ON: std::time::Duration = std::time::Duration::from_secs(2);

/// Called with a peer's node id whenever it answered a Raft RPC.
pub type ReplyHook = Arc<dyn Fn(u64) + Send + Sync>;

/// Creates one connection per target node.
#[derive(Clone)]
pub struct Network {
    client: PeerClient,
    /// This node's id, which a timeout names as the sender.
    id: u64,
    on_reply: Option<ReplyHook>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Network").finish_non_exhaustive()
    }
}

impl Network {
    pub fn new(client: PeerClient, id: u64) -> Self {
        Self {
            client,
            id,
            on_reply: None,
        }
    }

    /// Reports every peer that answered: an answer proves its daemon runs and reaches us,
    /// which the leader's liveness counts as much as a heartbeat.
    pub fn on_reply(mut self, hook: ReplyHook) -> Self {
        self.on_reply = Some(hook);
        self
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: u64, node: &PeerNode) -> Self::Network {
        Connection {
            client: self.client.clone(),
            id: self.id,
            target,
            node: node.clone(),
            on_reply: self.on_reply.clone(),
        }
    }
}

/// The link to one peer.
pub struct Connection {
    client: PeerClient,
    id: u64,
    target: u64,
    node: PeerNode,
    on_reply: Option<ReplyHook>,
}

impl Connection {
    async fn call<Request, Response, E>(
        &self,
        rpc: RaftRpc,
        request: &Request,
        option: &RPCOption,
    ) -> Result<Response, RPCError<u64, PeerNode, RaftError<u64, E>>>
    where
        Request: Serialize,
        Response: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let body = serde_json::to_vec(request)
            .map_err(|error| RPCError::Network(NetworkError::new(&error)))?;
        let path = format!("/internal/raft/{}", rpc.path_segment());
        // openraft gives an append only its heartbeat interval (100 ms), shorter than one
        // TCP retransmission. Dropping the request on that deadline would drop its
        // connection too, and under packet loss every next call would pay a new TLS
        // handshake and Raft would stop: so the request runs on in its own task and ends
        // on its own (longer) bound, keeping the connection for the next call. A late
        // answer still counts as a sign of life. Raft ignores the late delivery.
        let client = self.client.clone();
        let address = self.node.address.clone();
        let on_reply = self.on_reply.clone();
        let target = self.target;
        let bound = option.hard_ttl().max(CARRY_ON);
        let request = tokio::spawn(async move {
            let reply = client.post(&address, &path, body, bound).await;
            if reply.is_ok()
                && let Some(hook) = &on_reply
            {
                hook(target);
            }
            reply
        });
        // A request openraft stopped waiting for is a timeout, not an unreachable peer:
        // openraft backs off 500 ms after "unreachable", which stalled every commit for
        // that long whenever one append ran late on a busy host. A peer that refuses the
        // connection is unreachable and is backed off from.
        let reply = tokio::time::timeout(option.hard_ttl(), request)
            .await
            .map_err(|_| {
                RPCError::Timeout(Timeout {
                    action: rpc.types(),
                    id: self.id,
                    target: self.target,
                    timeout: option.hard_ttl(),
                })
            })?
            .map_err(|error| RPCError::Network(NetworkError::new(&error)))?
            .map_err(|error| match error {
                PeerError::Status { .. } => RPCError::Network(NetworkError::new(&error)),
                _ => RPCError::Unreachable(Unreachable::new(&error)),
            })?;
        let decoded: Result<Response, RaftError<u64, E>> = serde_json::from_slice(&reply)
            .map_err(|error| RPCError::Network(NetworkError::new(&error)))?;
        decoded.map_err(|error| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                error,
            ))
        })
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, PeerNode, RaftError<u64>>> {
        self.call(RaftRpc::AppendEntries, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, PeerNode, RaftError<u64, InstallSnapshotError>>,
    > {
        self.call(RaftRpc::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, PeerNode, RaftError<u64>>> {
        self.call(RaftRpc::Vote, &rpc, &option).await
    }
}
