//! openraft's network over the peer client: each RPC is a JSON POST to `/internal/raft/<rpc>` on the target.

use crate::peer::{PeerClient, PeerError};
use hafen_store::{PeerNode, RaftRpc, TypeConfig};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// Called with a peer's node id whenever it answered a Raft RPC.
pub type ReplyHook = Arc<dyn Fn(u64) + Send + Sync>;

/// Creates one connection per target node.
#[derive(Clone)]
pub struct Network {
    client: PeerClient,
    on_reply: Option<ReplyHook>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Network").finish_non_exhaustive()
    }
}

impl Network {
    pub fn new(client: PeerClient) -> Self {
        Self {
            client,
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
            target,
            node: node.clone(),
            on_reply: self.on_reply.clone(),
        }
    }
}

/// The link to one peer.
pub struct Connection {
    client: PeerClient,
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
        let reply = self
            .client
            .post(&self.node.address, &path, body, option.hard_ttl())
            .await
            .map_err(|error| match error {
                PeerError::Status { .. } => RPCError::Network(NetworkError::new(&error)),
                _ => RPCError::Unreachable(Unreachable::new(&error)),
            })?;
        if let Some(hook) = &self.on_reply {
            hook(self.target);
        }
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
