//! Internal endpoints: Raft RPCs and agent heartbeats, reachable only with a cluster certificate.

use crate::SharedContext;
use crate::error::ApiError;
use crate::serve::PeerVerified;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hafen_api_types::{Heartbeat, HeartbeatAck};
use hafen_store::RaftRpc;

/// Refuses callers that did not present a certificate signed by the cluster CA.
pub(crate) async fn require_peer_certificate(request: Request, next: Next) -> Response {
    let verified = request
        .extensions()
        .get::<PeerVerified>()
        .is_some_and(|peer| peer.0);
    if !verified {
        return ApiError::Forbidden(
            "node-to-node endpoints require a certificate signed by the cluster CA".to_string(),
        )
        .into_response();
    }
    next.run(request).await
}

pub(crate) async fn raft(
    State(context): State<SharedContext>,
    Path(rpc): Path<String>,
    body: Bytes,
) -> Result<Vec<u8>, ApiError> {
    let rpc = RaftRpc::from_path_segment(&rpc)
        .ok_or_else(|| ApiError::NotFound(format!("unknown raft rpc {rpc:?}")))?;
    context
        .replica
        .handle_rpc(rpc, &body)
        .await
        .map_err(ApiError::Invalid)
}

/// Records the node alive and grants it a lease, but only once a quorum confirmed this
/// node's leadership after the heartbeat arrived: a leader cut off from its quorum grants
/// nothing, so the leases it granted lapse before a new leader may count on them lapsing.
pub(crate) async fn heartbeat(
    State(context): State<SharedContext>,
    Json(heartbeat): Json<Heartbeat>,
) -> Json<HeartbeatAck> {
    let arrived = std::time::Instant::now();
    let liveness = &context.liveness;
    let not_granted = Json(HeartbeatAck {
        leader: false,
        lease_ms: 0,
    });
    if !context.replica.status().is_leader {
        return not_granted;
    }
    // The node is alive whatever the confirmation below takes: a leader slowed by load must
    // not suspect (and fence) healthy nodes. Recording the arrival only ever delays a
    // confirmation by lease expiry, so it is safe.
    liveness.record(heartbeat.node_id, arrived);
    if !context
        .replica
        .confirm_leadership(arrived, liveness.lease / 2)
        .await
    {
        return not_granted;
    }
    let state = context.orchestrator.local_state();
    let record = state
        .nodes
        .values()
        .find(|node| node.node_id == heartbeat.node_id);
    let declared_differs = record.is_some_and(|node| {
        node.self_fencing
            .map(|declared| declared.watchdog_timeout_ms)
            != heartbeat.watchdog_timeout_ms
    });
    let capacity_differs = !heartbeat.capacity.is_empty()
        && record.is_some_and(|node| node.capacity != heartbeat.capacity);
    if declared_differs || capacity_differs {
        let orchestrator = context.orchestrator.clone();
        tokio::spawn(async move {
            if declared_differs {
                orchestrator
                    .note_self_fencing(&state, &heartbeat.name, heartbeat.watchdog_timeout_ms)
                    .await;
            }
            if capacity_differs {
                orchestrator
                    .note_capacity(&state, &heartbeat.name, &heartbeat.capacity)
                    .await;
            }
        });
    }
    Json(HeartbeatAck {
        leader: true,
        lease_ms: u64::try_from(liveness.lease.as_millis()).unwrap_or(u64::MAX),
    })
}
