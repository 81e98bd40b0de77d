//! The node agent's heartbeat to the leader, which keeps it `online` in the leader's liveness view.

use hafen_api::Liveness;
use hafen_api_types::Heartbeat;
use hafen_rpc::PeerClient;
use hafen_store::Replica;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

pub async fn heartbeat_loop(
    replica: Replica,
    peer: PeerClient,
    liveness: Arc<Liveness>,
    name: String,
    interval: Duration,
    request_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let body = serde_json::to_vec(&Heartbeat {
        node_id: replica.node_id(),
        name,
    })
    .expect("heartbeat serializes");
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let status = replica.status();
        if status.is_leader {
            liveness.record(replica.node_id(), Instant::now());
            continue;
        }
        let Some((_, leader)) = replica.leader() else {
            continue;
        };
        // Bounded so a dead leader cannot stall the beats for long, yet generous enough that a
        // loaded machine's slow answer still counts: any beat within node_timeout keeps us alive.
        if let Err(error) = peer
            .post(
                &leader.address,
                "/internal/heartbeat",
                body.clone(),
                request_timeout,
            )
            .await
        {
            tracing::debug!(%error, "heartbeat not delivered");
        }
    }
}
