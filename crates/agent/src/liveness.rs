//! The leader's in-memory view of which nodes are alive: heartbeats are never replicated.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Last heartbeat per node id, reset whenever this node becomes leader.
#[derive(Debug)]
pub struct Liveness {
    inner: Mutex<Inner>,
    pub node_timeout: Duration,
    /// The lease granted with every acknowledged heartbeat (DESIGN section 4).
    pub lease: Duration,
}

#[derive(Debug)]
struct Inner {
    /// When this node last became leader; a new leader gives every node a full timeout.
    leader_since: Option<Instant>,
    last_seen: BTreeMap<u64, Instant>,
}

impl Liveness {
    pub fn new(node_timeout: Duration, lease: Duration) -> Self {
        Self {
            inner: Mutex::new(Inner {
                leader_since: None,
                last_seen: BTreeMap::new(),
            }),
            node_timeout,
            lease,
        }
    }

    pub fn record(&self, node_id: u64, at: Instant) {
        let mut inner = self.inner.lock().expect("liveness lock poisoned");
        inner.last_seen.insert(node_id, at);
    }

    /// Called with the current leadership; starts every timer afresh on a new term of ours.
    pub fn observe_leadership(&self, is_leader: bool, now: Instant) {
        let mut inner = self.inner.lock().expect("liveness lock poisoned");
        match (is_leader, inner.leader_since) {
            (true, None) => {
                inner.leader_since = Some(now);
                inner.last_seen.clear();
            }
            (false, Some(_)) => {
                inner.leader_since = None;
                inner.last_seen.clear();
            }
            _ => {}
        }
    }

    /// Whether every lease `node_id` may hold has certainly lapsed, `extra` (a watchdog's
    /// reset time) included: a lease runs from a heartbeat's send time, before it arrived
    /// here, and leases granted by an earlier leader end before this leader's term began
    /// (it was elected after the old one lost its quorum confirmation), so counting from
    /// the later of the last arrival and this term's start is safe; the drift margin covers
    /// clocks running at slightly different rates.
    pub fn certainly_lapsed(&self, node_id: u64, now: Instant, extra: Duration) -> bool {
        let inner = self.inner.lock().expect("liveness lock poisoned");
        let Some(since) = inner.leader_since else {
            return false;
        };
        let base = inner
            .last_seen
            .get(&node_id)
            .map_or(since, |seen| (*seen).max(since));
        let margin = self.lease / 10 + Duration::from_millis(100);
        now >= base + self.lease + margin + extra
    }

    /// Whether the node counts as alive, and how long ago it was last heard from.
    pub fn check(&self, node_id: u64, now: Instant) -> (bool, Option<Duration>) {
        let inner = self.inner.lock().expect("liveness lock poisoned");
        match inner.last_seen.get(&node_id) {
            Some(seen) => {
                let age = now.saturating_duration_since(*seen);
                (age <= self.node_timeout, Some(age))
            }
            None => {
                let grace = inner
                    .leader_since
                    .is_some_and(|since| now.saturating_duration_since(since) <= self.node_timeout);
                (grace, None)
            }
        }
    }
}
