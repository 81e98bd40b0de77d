//! Which members should hold a Raft vote: pure arithmetic over the node list, run by the leader's reconciler.

use crate::state::{NodeRecord, NodeRole};
use std::collections::BTreeSet;

/// The voter set the cluster should have.
///
/// Witnesses always vote. Current voters that are still members and healthy keep their
/// vote (no churn); free seats go to healthy members in order of node id; when there are
/// too many voters, the newest lose their vote first, but never `leader_id`. A voter that
/// is not healthy keeps its vote unless a healthy learner can take its seat, so a
/// temporarily unreachable voter does not shrink the quorum.
pub fn desired_voters(
    nodes: &[&NodeRecord],
    voter_count: usize,
    current_voters: &BTreeSet<u64>,
    healthy: &BTreeSet<u64>,
    leader_id: u64,
) -> BTreeSet<u64> {
    let member_ids: BTreeSet<u64> = nodes.iter().map(|node| node.node_id).collect();
    let mut voters: BTreeSet<u64> = nodes
        .iter()
        .filter(|node| node.role == NodeRole::Witness)
        .map(|node| node.node_id)
        .collect();
    // Keep healthy current voters first (the leader always counts as healthy).
    let mut kept: Vec<u64> = current_voters
        .iter()
        .copied()
        .filter(|id| member_ids.contains(id) && (healthy.contains(id) || *id == leader_id))
        .collect();
    kept.sort_by_key(|id| (*id != leader_id, *id));
    for id in kept {
        if voters.len() < voter_count || id == leader_id {
            voters.insert(id);
        }
    }
    // Fill free seats with healthy learners, oldest first.
    for node in nodes {
        if voters.len() >= voter_count {
            break;
        }
        if healthy.contains(&node.node_id) {
            voters.insert(node.node_id);
        }
    }
    // Unhealthy current voters keep their seat while no healthy member can take it.
    for id in current_voters {
        if voters.len() >= voter_count {
            break;
        }
        if member_ids.contains(id) {
            voters.insert(*id);
        }
    }
    voters
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::NodeName;

    fn node(id: u64, role: NodeRole) -> NodeRecord {
        NodeRecord {
            name: NodeName::new(format!("n{id}")).unwrap(),
            node_id: id,
            address: format!("127.0.0.1:{}", 7000 + id),
            role,
            joined_ms: 0,
            mode: crate::state::NodeMode::Online,
            fencing: crate::fencing::Fencing::None,
            self_fencing: None,
            capacity: Default::default(),
        }
    }

    fn set(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    #[test]
    fn five_members_with_three_voters_keep_two_learners_and_promote_one_when_a_voter_goes() {
        let records: Vec<NodeRecord> = (1..=5).map(|id| node(id, NodeRole::Member)).collect();
        let all: Vec<&NodeRecord> = records.iter().collect();
        let healthy = set(&[1, 2, 3, 4, 5]);
        let voters = desired_voters(&all, 3, &set(&[1]), &healthy, 1);
        assert_eq!(voters, set(&[1, 2, 3]));
        // node 2 removed: the oldest learner (4) takes its seat, 1 and 3 keep theirs.
        let without_two: Vec<&NodeRecord> = records.iter().filter(|n| n.node_id != 2).collect();
        let voters = desired_voters(&without_two, 3, &set(&[1, 2, 3]), &healthy, 1);
        assert_eq!(voters, set(&[1, 3, 4]));
    }

    #[test]
    fn a_witness_always_votes_and_an_unreachable_voter_keeps_its_seat_without_a_replacement() {
        let records = [
            node(1, NodeRole::Member),
            node(2, NodeRole::Member),
            node(3, NodeRole::Witness),
        ];
        let all: Vec<&NodeRecord> = records.iter().collect();
        let voters = desired_voters(&all, 3, &set(&[1, 2, 3]), &set(&[1, 3]), 1);
        assert_eq!(voters, set(&[1, 2, 3]));
    }

    #[test]
    fn shrinking_the_voter_count_never_drops_the_leader() {
        let records: Vec<NodeRecord> = (1..=5).map(|id| node(id, NodeRole::Member)).collect();
        let all: Vec<&NodeRecord> = records.iter().collect();
        let voters = desired_voters(&all, 3, &set(&[1, 2, 3, 4, 5]), &set(&[1, 2, 3, 4, 5]), 5);
        assert_eq!(voters, set(&[1, 2, 5]));
    }
}
