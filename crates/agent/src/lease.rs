//! The agent's lease (DESIGN section 4): managed resources run here only while the leader
//! keeps acknowledging this node's heartbeats. When the lease lapses the agent self-fences
//! at once (kills its QEMU processes, stops its resources) and stops petting the watchdog.

use crate::local::Agent;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Until when this node may run managed resources; renewed by acknowledged heartbeats.
#[derive(Debug)]
pub struct Lease {
    /// `None` until the first grant.
    held_until: watch::Sender<Option<Instant>>,
}

impl Default for Lease {
    fn default() -> Self {
        Self {
            held_until: watch::Sender::new(None),
        }
    }
}

impl Lease {
    /// A grant of `duration` for a heartbeat sent at `sent_at` (this node's monotonic clock).
    pub fn renew(&self, sent_at: Instant, duration: Duration) {
        let until = sent_at + duration;
        self.held_until.send_if_modified(|held| {
            if held.is_some_and(|held| held >= until) {
                return false;
            }
            *held = Some(until);
            true
        });
    }

    pub fn holds(&self, now: Instant) -> bool {
        self.held_until.borrow().is_some_and(|until| now < until)
    }

    pub fn expires_at(&self) -> Option<Instant> {
        *self.held_until.borrow()
    }

    /// Waits up to `timeout` for the lease to be held (a node that just joined or just
    /// regained contact gets its grant with the next heartbeat).
    pub async fn wait_held(&self, timeout: Duration) -> bool {
        let mut held = self.held_until.subscribe();
        let wait = held.wait_for(|until| until.is_some_and(|until| Instant::now() < until));
        matches!(tokio::time::timeout(timeout, wait).await, Ok(Ok(_)))
    }
}

/// Watches the lease: self-fences the moment it lapses, and while it is held pets the
/// watchdog device every `pet_interval`. A daemon that starts (perhaps restarted beside
/// VMs its predecessor ran) gets `startup_grace` to obtain its first lease, else it
/// self-fences too. Returns when `shutdown` turns true; a clean shutdown disarms the
/// watchdog with the magic close character.
pub async fn guard_loop(
    agent: Arc<Agent>,
    watchdog: Option<PathBuf>,
    pet_interval: Duration,
    startup_grace: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let started = Instant::now();
    let lease = agent.lease().clone();
    let mut changes = lease.held_until.subscribe();
    let mut watchdog = watchdog.and_then(|path| match Watchdog::open(path.clone()) {
        Ok(watchdog) => Some(watchdog),
        Err(error) => {
            tracing::error!(device = %path.display(), %error, "the watchdog cannot be opened; running without it");
            None
        }
    });
    // Whether resources may run here and have not been fenced since the last grant.
    let mut armed = true;
    loop {
        let now = Instant::now();
        let expiry = lease.expires_at().or(Some(started + startup_grace));
        let holds = expiry.is_some_and(|until| now < until);
        if holds {
            armed = true;
            if let Some(watchdog) = watchdog.as_mut().filter(|_| lease.holds(now)) {
                watchdog.pet();
            }
        } else if armed {
            armed = false;
            tracing::error!(
                "lease lapsed: no acknowledged heartbeat from a quorate leader; self-fencing (killing managed VMs, stopping managed resources)"
            );
            agent.self_fence().await;
        }
        let wake = match expiry {
            Some(until) if holds => (until - now).min(pet_interval),
            _ => pet_interval,
        };
        tokio::select! {
            _ = tokio::time::sleep(wake) => {}
            _ = changes.changed() => {}
            _ = shutdown.wait_for(|stop| *stop) => {
                if let Some(watchdog) = watchdog.take() {
                    watchdog.disarm();
                }
                return;
            }
        }
    }
}

/// A Linux watchdog device: every write pets it; writing `V` before closing disarms it.
struct Watchdog {
    path: PathBuf,
    file: std::fs::File,
}

impl Watchdog {
    fn open(path: PathBuf) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new().write(true).open(&path)?;
        Ok(Self { path, file })
    }

    fn pet(&mut self) {
        if let Err(error) = self.file.write_all(b"1").and_then(|()| self.file.flush()) {
            tracing::warn!(device = %self.path.display(), %error, "petting the watchdog failed");
        }
    }

    fn disarm(mut self) {
        let _ = self.file.write_all(b"V");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_runs_from_the_send_time_and_never_shrinks() {
        let lease = Lease::default();
        let sent = Instant::now();
        assert!(!lease.holds(sent));
        lease.renew(sent, Duration::from_millis(300));
        assert!(lease.holds(sent + Duration::from_millis(299)));
        assert!(!lease.holds(sent + Duration::from_millis(300)));
        // An older heartbeat's late answer does not shorten the lease.
        lease.renew(
            sent - Duration::from_millis(100),
            Duration::from_millis(300),
        );
        assert_eq!(lease.expires_at(), Some(sent + Duration::from_millis(300)));
    }

    #[tokio::test]
    async fn waiting_for_a_lease_ends_with_the_grant_or_the_timeout() {
        let lease = Arc::new(Lease::default());
        assert!(!lease.wait_held(Duration::from_millis(20)).await);
        let granting = {
            let lease = lease.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                lease.renew(Instant::now(), Duration::from_secs(5));
            })
        };
        assert!(lease.wait_held(Duration::from_secs(5)).await);
        granting.await.unwrap();
    }
}
