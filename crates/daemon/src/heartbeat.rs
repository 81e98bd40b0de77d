//! The node agent's heartbeat to the leader, which keeps it `online` in the leader's
//! liveness view and renews its lease (DESIGN section 4).

use hafen_agent::Liveness;
use hafen_agent::lease::Lease;
use hafen_api_types::{Heartbeat, HeartbeatAck};
use hafen_rpc::PeerClient;
use hafen_store::Replica;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Sends `heartbeat` to the leader every `interval`, renewing `lease` with each answer.
pub async fn heartbeat_loop(
    replica: Replica,
    peer: PeerClient,
    liveness: Arc<Liveness>,
    lease: Arc<Lease>,
    heartbeat: Heartbeat,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let body = serde_json::to_vec(&heartbeat).expect("heartbeat serializes");
    // Each beat is its own request, bounded by the lease: under packet loss a late answer
    // still renews the lease (it runs from the send time), so it is worth waiting for.
    let request_timeout = liveness.lease;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let sent = Instant::now();
        if replica.status().is_leader {
            // The leader's own agent: its lease rests on the same quorum confirmation that
            // backs the leases it grants.
            if replica.confirm_leadership(sent, liveness.lease / 2).await {
                liveness.record(replica.node_id(), sent);
                lease.renew(sent, liveness.lease);
            }
            continue;
        }
        let Some((_, leader)) = replica.leader() else {
            continue;
        };
        let peer = peer.clone();
        let body = body.clone();
        let lease = lease.clone();
        // Each beat on its own task: a slow answer must not delay the next beat.
        tokio::spawn(async move {
            match peer
                .post(
                    &leader.address,
                    "/internal/heartbeat",
                    body,
                    request_timeout,
                )
                .await
            {
                Ok(answer) => match serde_json::from_slice::<HeartbeatAck>(&answer) {
                    Ok(ack) if ack.leader && ack.lease_ms > 0 => {
                        lease.renew(sent, Duration::from_millis(ack.lease_ms));
                    }
                    Ok(_) => tracing::debug!("heartbeat not acknowledged: no confirmed leader"),
                    Err(error) => {
                        tracing::warn!(%error, "the leader's heartbeat answer is garbled")
                    }
                },
                Err(error) => tracing::debug!(%error, "heartbeat not delivered"),
            }
        });
    }
}
