//! The leader's membership reconciler: makes Raft's membership follow the replicated node list.
//!
//! Joined nodes become learners; voters are chosen by `model::membership::desired_voters`
//! (3 or 5, witnesses always); removed nodes leave Raft. Runs only on the leader, one change
//! at a time, re-evaluated whenever the state or the Raft metrics change.

use hafen_api::Liveness;
use hafen_store::{PeerNode, Replica};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A follower this far behind the leader's log is not promoted to voter yet.
const PROMOTION_LAG_ENTRIES: u64 = 100;

pub async fn reconcile_loop(
    replica: Replica,
    liveness: Arc<Liveness>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut applied = replica.subscribe_applied();
    let mut metrics = replica.subscribe_metrics();
    loop {
        if let Err(error) = reconcile_once(&replica, &liveness).await {
            tracing::info!(%error, "membership change deferred");
        }
        tokio::select! {
            _ = applied.changed() => {}
            _ = metrics.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

async fn reconcile_once(
    replica: &Replica,
    liveness: &Liveness,
) -> Result<(), hafen_store::WriteError> {
    let status = replica.status();
    liveness.observe_leadership(status.is_leader, Instant::now());
    if !status.is_leader {
        return Ok(());
    }
    let (nodes, voter_count) = replica.read_local(|state| {
        (
            state.nodes.values().cloned().collect::<Vec<_>>(),
            usize::try_from(state.config.integer("voter-count")).unwrap_or(3),
        )
    });
    if nodes.is_empty() {
        return Ok(());
    }
    let wanted: BTreeMap<u64, PeerNode> = nodes
        .iter()
        .map(|node| {
            (
                node.node_id,
                PeerNode {
                    name: node.name.to_string(),
                    address: node.address.clone(),
                },
            )
        })
        .collect();
    let missing: BTreeMap<u64, PeerNode> = wanted
        .iter()
        .filter(|(id, _)| !status.members.contains_key(id))
        .map(|(id, node)| (*id, node.clone()))
        .collect();
    if !missing.is_empty() {
        tracing::info!(nodes = ?missing.keys().collect::<Vec<_>>(), "adding learners");
        return replica.add_learners(missing).await;
    }
    let now = Instant::now();
    let last_log = status.last_log_index.unwrap_or(0);
    let healthy: BTreeSet<u64> = nodes
        .iter()
        .map(|node| node.node_id)
        .filter(|id| {
            *id == status.node_id
                || (liveness.check(*id, now).0
                    && status
                        .matched
                        .get(id)
                        .copied()
                        .flatten()
                        .is_some_and(|matched| matched + PROMOTION_LAG_ENTRIES >= last_log))
        })
        .collect();
    let records: Vec<&hafen_model::NodeRecord> = nodes.iter().collect();
    let desired = hafen_model::membership::desired_voters(
        &records,
        voter_count,
        &status.voters,
        &healthy,
        status.node_id,
    );
    if desired != status.voters && !desired.is_empty() {
        tracing::info!(from = ?status.voters, to = ?desired, "changing voters");
        return replica.set_voters(desired).await;
    }
    let removed: BTreeSet<u64> = status
        .members
        .keys()
        .filter(|id| !wanted.contains_key(id) && !status.voters.contains(id))
        .copied()
        .collect();
    if !removed.is_empty() {
        tracing::info!(nodes = ?removed, "removing departed nodes from raft");
        return replica.remove_nodes(removed).await;
    }
    Ok(())
}
