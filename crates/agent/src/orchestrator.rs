//! The leader's resource orchestrator: commits each lifecycle step and has the right agent perform it.
//!
//! Every step is committed before and after the agent acts, with the assignment's
//! generation, so a new leader can tell what was in flight and an agent can refuse a
//! stale order. One operation per resource at a time.

mod clones;

use crate::liveness::Liveness;
use crate::local::Agent;
use crate::protocol::{AgentAnswer, AgentRequest, Pools};
use hafen_model::resource::{Phase, ResourceKind, ResourceState, Transition, VmConfig};
use hafen_model::{ClusterState, Command, Envelope, NodeRole, Rejection};
use hafen_rpc::PeerClient;
use hafen_store::Replica;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why an orchestrated operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OrchestratorError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    /// Not the leader any more, or the log refused: the caller may retry.
    #[error("{0}")]
    Unavailable(String),
    /// The agent reported a failure; the resource's state says where it is now.
    #[error("{0}")]
    Failed(String),
}

impl From<Rejection> for OrchestratorError {
    fn from(rejection: Rejection) -> Self {
        match rejection {
            Rejection::NotFound(message) => OrchestratorError::NotFound(message),
            Rejection::Conflict(message) => OrchestratorError::Conflict(message),
            Rejection::Invalid(message) | Rejection::Unauthorized(message) => {
                OrchestratorError::Invalid(message)
            }
        }
    }
}

/// What a live migration measured.
#[derive(Debug, Clone, Serialize)]
pub struct MigrationFigures {
    pub from: String,
    pub to: String,
    /// QEMU's own total migration time, as the source measured it.
    pub qemu_total_time_ms: u64,
    pub downtime_ms: u64,
    pub transferred_bytes: u64,
    /// From the request to the committed new assignment.
    pub orchestration_total_ms: u64,
    /// Milliseconds spent in each step, in order.
    pub step_ms: Vec<(String, u64)>,
}

/// Records how long each step of an operation took.
#[derive(Debug)]
struct Steps {
    last: Instant,
    steps: Vec<(String, u64)>,
}

impl Steps {
    fn new() -> Self {
        Self {
            last: Instant::now(),
            steps: Vec::new(),
        }
    }

    fn mark(&mut self, step: &str) {
        let now = Instant::now();
        self.steps.push((
            step.to_string(),
            u64::try_from((now - self.last).as_millis()).unwrap_or(u64::MAX),
        ));
        self.last = now;
    }
}

const START_TIMEOUT: Duration = Duration::from_secs(120);
const STOP_TIMEOUT_MS: u64 = 30_000;
const MIGRATION_TIMEOUT_MS: u64 = 120_000;
const AGENT_CALL_MARGIN: Duration = Duration::from_secs(15);
/// A failed resource is retried no sooner than this.
const RETRY_BACKOFF: Duration = Duration::from_secs(5);
/// Failures on one host after which the resource is started elsewhere.
const FAILURES_BEFORE_RELOCATION: u32 = 3;

/// Where a migration goes and how fast it may send.
#[derive(Debug, Clone, Copy)]
struct Route<'a> {
    source: &'a str,
    target: &'a str,
    bandwidth_bytes_per_second: u64,
}

/// Runs on every node; acts only while its replica leads.
pub struct Orchestrator {
    replica: Replica,
    peer: PeerClient,
    local: Arc<Agent>,
    local_name: String,
    liveness: Arc<Liveness>,
    busy: Mutex<BTreeSet<String>>,
    /// Woken whenever a slot is released, for operations queued behind it.
    released: Arc<tokio::sync::Notify>,
    last_attempt: Mutex<BTreeMap<String, Instant>>,
    /// When each running resource was last monitored, so monitors keep their interval.
    last_monitor: Mutex<BTreeMap<String, Instant>>,
    /// This node's own watchdog, declared by the leader's fencing pass when it leads.
    watchdog_timeout_ms: Option<u64>,
    /// This node's own capacity, declared the same way.
    capacity: BTreeMap<String, u64>,
    /// What the last plan could not place, and why (logged when it changes).
    last_pending: Mutex<BTreeMap<String, String>>,
    /// The members this leader has seen answer since they last came back (per term): a
    /// member that comes back (or joins) is probed once.
    seen_alive: Mutex<(u64, BTreeSet<String>)>,
    /// Members that rejoined after fencing and take no work until their probe is done
    /// (their disks may still say something runs there).
    rejoined_unprobed: Mutex<BTreeSet<String>>,
    fence: hafen_driver_fence::FenceDriver,
    proposals: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Orchestrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Orchestrator({})", self.local_name)
    }
}

/// Releases a resource's operation slot when the operation ends, however it ends.
pub struct Slot<'a> {
    busy: &'a Mutex<BTreeSet<String>>,
    released: &'a tokio::sync::Notify,
    name: String,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.busy
            .lock()
            .expect("busy lock poisoned")
            .remove(&self.name);
        self.released.notify_waiters();
    }
}

/// How long an operator's request waits for another operation on the same resource.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(180);

/// Bounds each agent call made while settling what a previous leader left in flight.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a call to another host checks that the host still answers heartbeats.
const LIVENESS_POLL: Duration = Duration::from_millis(50);

/// How often the leader checks that a running VM still runs.
const VM_MONITOR_INTERVAL: Duration = Duration::from_secs(1);

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Orchestrator {
    pub fn new(
        replica: Replica,
        peer: PeerClient,
        local: Arc<Agent>,
        local_name: String,
        liveness: Arc<Liveness>,
        fence_agent_dirs: Vec<std::path::PathBuf>,
        watchdog_timeout_ms: Option<u64>,
    ) -> Self {
        Self {
            watchdog_timeout_ms,
            capacity: crate::capacity::local(),
            last_pending: Mutex::new(BTreeMap::new()),
            seen_alive: Mutex::new((0, BTreeSet::new())),
            rejoined_unprobed: Mutex::new(BTreeSet::new()),
            replica,
            peer,
            local,
            local_name,
            liveness,
            busy: Mutex::new(BTreeSet::new()),
            released: Arc::new(tokio::sync::Notify::new()),
            last_attempt: Mutex::new(BTreeMap::new()),
            last_monitor: Mutex::new(BTreeMap::new()),
            proposals: std::sync::atomic::AtomicU64::new(0),
            fence: hafen_driver_fence::FenceDriver::new(
                hafen_driver_fence::FenceConfig::with_agent_dirs(fence_agent_dirs),
            ),
        }
    }

    pub fn local_agent(&self) -> &Arc<Agent> {
        &self.local
    }

    /// This host's capacity as read at start (what its heartbeats declare).
    pub fn local_capacity(&self) -> &BTreeMap<String, u64> {
        &self.capacity
    }

    /// Whether the action keyed `key` (a resource, or `fence:NODE`) failed within the
    /// last [`RETRY_BACKOFF`] and waits before it is tried again.
    fn backing_off(&self, key: &str) -> bool {
        self.last_attempt
            .lock()
            .expect("lock poisoned")
            .get(key)
            .is_some_and(|at| at.elapsed() < RETRY_BACKOFF)
    }

    /// Records an attempt at the action keyed `key`: it backs off from now on.
    fn attempted(&self, key: &str) {
        self.last_attempt
            .lock()
            .expect("lock poisoned")
            .insert(key.to_string(), Instant::now());
    }

    /// Takes the resource's operation slot, or fails at once if another operation holds it.
    fn claim(&self, name: &str) -> Result<Slot<'_>, OrchestratorError> {
        let mut busy = self.busy.lock().expect("busy lock poisoned");
        if !busy.insert(name.to_string()) {
            return Err(OrchestratorError::Conflict(format!(
                "an operation on {name} is in progress"
            )));
        }
        Ok(Slot {
            busy: &self.busy,
            released: &self.released,
            name: name.to_string(),
        })
    }

    /// Takes the resource's slot, waiting (bounded) behind an operation that holds it.
    async fn claim_queued(&self, name: &str) -> Result<Slot<'_>, OrchestratorError> {
        let deadline = tokio::time::Instant::now() + QUEUE_TIMEOUT;
        loop {
            // Register for the wake-up before trying, so a release in between is not missed.
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if let Ok(slot) = self.claim(name) {
                return Ok(slot);
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                return Err(OrchestratorError::Conflict(format!(
                    "another operation on {name} did not finish within {} s",
                    QUEUE_TIMEOUT.as_secs()
                )));
            }
        }
    }

    async fn state(&self) -> Result<Arc<ClusterState>, OrchestratorError> {
        self.replica
            .read_shared()
            .await
            .map_err(|error| OrchestratorError::Unavailable(format!("{error}; retry")))
    }

    /// Nodes that may run workloads and answer heartbeats now.
    pub fn online_members(&self, state: &ClusterState) -> BTreeSet<String> {
        let now = Instant::now();
        let status = self.replica.status();
        self.liveness.observe_leadership(status.is_leader, now);
        state
            .nodes
            .values()
            .filter(|node| node.role == NodeRole::Member)
            .filter(|node| {
                node.name.as_str() == self.local_name || self.liveness.check(node.node_id, now).0
            })
            .map(|node| node.name.to_string())
            .collect()
    }

    /// Nodes the leader hears from now (this node always).
    pub fn alive_nodes(&self, state: &ClusterState) -> BTreeSet<String> {
        let now = Instant::now();
        self.liveness
            .observe_leadership(self.replica.status().is_leader, now);
        state
            .nodes
            .values()
            .filter(|node| {
                node.name.as_str() == self.local_name || self.liveness.check(node.node_id, now).0
            })
            .map(|node| node.name.to_string())
            .collect()
    }

    /// Alive nodes that may take work: a member that rejoined after fencing takes none
    /// until its probe stopped what its disk still says runs there (`probe_returning`).
    fn ready_nodes(&self, state: &ClusterState) -> BTreeSet<String> {
        let unprobed = self.rejoined_unprobed.lock().expect("lock poisoned");
        self.alive_nodes(state)
            .into_iter()
            .filter(|host| !unprobed.contains(host))
            .collect()
    }

    /// The scheduler's plan for the current state.
    pub fn plan(&self, state: &ClusterState) -> Result<hafen_scheduler::Plan, OrchestratorError> {
        let view =
            hafen_model::placement::scheduler_view(state, &self.ready_nodes(state), now_ms());
        hafen_scheduler::schedule(
            &view,
            &hafen_scheduler::Request {
                now_ms: now_ms(),
                include_scores: false,
            },
        )
        .map_err(|error| OrchestratorError::Invalid(format!("placement failed: {error}")))
    }

    /// Per-host scores of a resource and why, as `hafen explain` prints them.
    pub async fn explain(&self, name: &str) -> Result<String, OrchestratorError> {
        let state = self.state().await?;
        let view =
            hafen_model::placement::scheduler_view(&state, &self.alive_nodes(&state), now_ms());
        let request = hafen_scheduler::Request {
            now_ms: now_ms(),
            include_scores: true,
        };
        hafen_scheduler::explain(&view, &request, name)
            .map(|explanation| explanation.to_string())
            .map_err(|error| OrchestratorError::NotFound(error.to_string()))
    }

    /// The one way the orchestrator writes: a fresh request id (this node's name and a
    /// counter, unique in the cluster), the leader's clock, the replicas' verdict.
    async fn propose(&self, command: Command) -> Result<hafen_model::Outcome, OrchestratorError> {
        let sequence = self
            .proposals
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let envelope = Envelope {
            request_id: format!("orchestrator-{}-{}-{sequence}", self.local_name, now_ms()),
            now_ms: now_ms(),
            command,
        };
        match self.replica.write(envelope).await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(rejection)) => Err(rejection.into()),
            Err(error) => Err(OrchestratorError::Unavailable(format!("{error}; retry"))),
        }
    }

    async fn commit(&self, transition: Transition) -> Result<u64, OrchestratorError> {
        match self.propose(Command::Transition { transition }).await? {
            hafen_model::Outcome::Transitioned { generation } => Ok(generation),
            other => Err(OrchestratorError::Unavailable(format!(
                "unexpected outcome {other:?}"
            ))),
        }
    }

    /// Sends a request to `host`'s agent (in-process for this node).
    pub async fn call(
        &self,
        state: &ClusterState,
        host: &str,
        request: AgentRequest,
        timeout: Duration,
    ) -> Result<AgentAnswer, OrchestratorError> {
        if host == self.local_name {
            return Ok(self.local.handle(request).await);
        }
        let node = state
            .nodes
            .values()
            .find(|node| node.name.as_str() == host)
            .ok_or_else(|| OrchestratorError::NotFound(format!("no node named {host}")))?;
        let body = serde_json::to_vec(&request).expect("agent requests serialize");
        let request = self.peer.post(
            &node.address,
            "/internal/agent",
            body,
            timeout + AGENT_CALL_MARGIN,
        );
        // A host that stops answering heartbeats ends the wait at once: nothing waits out
        // a long operation timeout on a dead host (its resource's slot would be held).
        let node_id = node.node_id;
        let gone = async {
            loop {
                tokio::time::sleep(LIVENESS_POLL).await;
                let (alive, _) = self.liveness.check(node_id, Instant::now());
                if !alive && self.replica.status().is_leader {
                    return;
                }
            }
        };
        let reply = tokio::select! {
            reply = request => reply
                .map_err(|error| OrchestratorError::Failed(format!("agent on {host}: {error}")))?,
            () = gone => {
                return Err(OrchestratorError::Failed(format!(
                    "agent on {host}: the host stopped answering heartbeats"
                )));
            }
        };
        serde_json::from_slice(&reply).map_err(|error| {
            OrchestratorError::Failed(format!("agent on {host} answered garbage: {error}"))
        })
    }

    fn vm_of(state: &ClusterState, name: &str) -> Result<VmConfig, OrchestratorError> {
        let resource = state
            .config
            .resources
            .get(name)
            .ok_or_else(|| OrchestratorError::NotFound(format!("no resource named {name}")))?;
        match &resource.kind {
            ResourceKind::Vm(vm) => Ok(vm.clone()),
            ResourceKind::Ocf(_) => Err(OrchestratorError::Invalid(format!(
                "{name} is an OCF resource; only vms migrate live (it moves by stop and start)"
            ))),
        }
    }

    fn kind_of(state: &ClusterState, name: &str) -> Result<ResourceKind, OrchestratorError> {
        state
            .config
            .resources
            .get(name)
            .map(|resource| resource.kind.clone())
            .ok_or_else(|| OrchestratorError::NotFound(format!("no resource named {name}")))
    }

    fn start_request(
        state: &ClusterState,
        name: &str,
        generation: u64,
    ) -> Result<AgentRequest, OrchestratorError> {
        Ok(match Self::kind_of(state, name)? {
            ResourceKind::Vm(vm) => AgentRequest::Start {
                name: name.to_string(),
                generation,
                vm,
                pools: state.config.pools.clone(),
            },
            ResourceKind::Ocf(ocf) => AgentRequest::OcfStart {
                name: name.to_string(),
                generation,
                ocf,
            },
        })
    }

    fn stop_request(state: &ClusterState, name: &str) -> Result<AgentRequest, OrchestratorError> {
        Ok(match Self::kind_of(state, name)? {
            ResourceKind::Vm(_) => AgentRequest::Stop {
                name: name.to_string(),
                timeout_ms: STOP_TIMEOUT_MS,
                pools: state.config.pools.clone(),
            },
            ResourceKind::Ocf(ocf) => AgentRequest::OcfStop {
                name: name.to_string(),
                ocf,
            },
        })
    }

    fn status_request(state: &ClusterState, name: &str) -> Result<AgentRequest, OrchestratorError> {
        Ok(match Self::kind_of(state, name)? {
            ResourceKind::Vm(_) => AgentRequest::Status {
                name: name.to_string(),
                pools: state.config.pools.clone(),
            },
            ResourceKind::Ocf(ocf) => AgentRequest::OcfMonitor {
                name: name.to_string(),
                ocf,
                probe: false,
            },
        })
    }

    /// Where a resource without a usable host should start: its preferred host, else the
    /// online member with the fewest assigned resources (ties: lowest name), avoiding hosts
    /// where it failed repeatedly.
    fn choose_host(
        state: &ClusterState,
        name: &str,
        online: &BTreeSet<String>,
        exclude: Option<&str>,
    ) -> Option<String> {
        let runtime = state.runtime.get(name).cloned().unwrap_or_default();
        let usable = |host: &String| {
            Some(host.as_str()) != exclude
                && runtime.fail_counts.get(host).copied().unwrap_or(0) < FAILURES_BEFORE_RELOCATION
        };
        if let Some(preferred) = state
            .config
            .resources
            .get(name)
            .and_then(|resource| resource.preferred_host.clone())
            && online.contains(&preferred)
            && usable(&preferred)
        {
            return Some(preferred);
        }
        let mut load: BTreeMap<&String, usize> = online.iter().map(|host| (host, 0)).collect();
        for (other, state) in &state.runtime {
            if other != name
                && let Some(host) = &state.host
                && let Some(count) = load.get_mut(host)
            {
                *count += 1;
            }
        }
        load.into_iter()
            .filter(|(host, _)| usable(host))
            .min_by_key(|(host, count)| (*count, (*host).clone()))
            .map(|(host, _)| host.clone())
    }

    /// Starts a resource and waits until it runs (or fails).
    pub async fn start(&self, name: &str) -> Result<ResourceState, OrchestratorError> {
        let state = self.state().await?;
        if Self::is_clone(&state, name) {
            // A clone's instances are placed by the reconciler.
            return Ok(state.runtime.get(name).cloned().unwrap_or_default());
        }
        let _slot = self.claim_queued(name).await?;
        self.start_claimed(name, None).await
    }

    /// Holds the resource's slot (waiting for a running operation, bounded) so that the
    /// reconciler leaves it alone across several steps of a request.
    pub async fn hold(&self, name: &str) -> Result<Slot<'_>, OrchestratorError> {
        self.claim_queued(name).await
    }

    /// [`Orchestrator::start`] for a resource whose slot the caller holds.
    pub async fn start_held(
        &self,
        name: &str,
        _held: &Slot<'_>,
    ) -> Result<ResourceState, OrchestratorError> {
        self.start_claimed(name, None).await
    }

    /// Starts on `host`, or where the scheduler places it.
    async fn start_claimed(
        &self,
        name: &str,
        host: Option<String>,
    ) -> Result<ResourceState, OrchestratorError> {
        let state = self.state().await?;
        Self::kind_of(&state, name)?;
        let runtime = state.runtime.get(name).cloned().unwrap_or_default();
        let online = self.alive_nodes(&state);
        if runtime.phase == Phase::Running
            && runtime
                .host
                .as_ref()
                .is_some_and(|host| online.contains(host))
        {
            return Ok(runtime);
        }
        let plan = self.plan(&state)?;
        // Ordered after something this plan starts first: the reconciler starts it in order
        // (its target role is already Started).
        if host.is_none()
            && plan
                .actions
                .iter()
                .any(|action| action.resource == name && !action.after.is_empty())
        {
            tracing::info!(resource = %name, "left to the reconciler: it starts after other steps of the plan");
            return Ok(runtime);
        }
        let planned = plan
            .actions
            .into_iter()
            .find_map(|action| match action.kind {
                hafen_scheduler::ActionKind::Start { host }
                | hafen_scheduler::ActionKind::Restart { host }
                    if action.resource == name =>
                {
                    Some(host)
                }
                hafen_scheduler::ActionKind::Move { to, .. } if action.resource == name => Some(to),
                _ => None,
            });
        let host = match host.or(planned) {
            Some(host) => host,
            // Waiting for what it is ordered after (or the group members before it): its
            // target role is Started, and the reconciler starts it once that runs, as
            // Pacemaker does after `resource enable`.
            None if Self::waits_for_others(&state, name) => {
                tracing::info!(resource = %name, "left to the reconciler: it waits for what it is ordered after");
                return Ok(runtime);
            }
            None => {
                let plan = self.plan(&state)?;
                let reason = plan
                    .pending
                    .iter()
                    .find(|pending| pending.resource == name)
                    .map(|pending| pending.reason.clone())
                    .unwrap_or_else(|| "no host can run it".to_string());
                return Err(OrchestratorError::Conflict(format!(
                    "{name} cannot start: {reason}"
                )));
            }
        };
        let generation = self
            .commit(Transition {
                resource: name.to_string(),
                generation: runtime.generation,
                phase: Phase::Starting,
                host: Some(host.clone()),
                new_assignment: true,
                error: None,
                reaction: None,
            })
            .await?;
        let request = Self::start_request(&state, name, generation)?;
        let outcome = self.call(&state, &host, request, START_TIMEOUT).await;
        let (phase, error, reaction) = match outcome {
            Ok(answer) if answer.state() == Some("running") => (Phase::Running, None, None),
            Ok(AgentAnswer::Failed { error, reaction }) => (Phase::Failed, Some(error), reaction),
            Ok(answer) if answer.state().is_some() => (
                Phase::Failed,
                Some(format!(
                    "started but {}",
                    answer.state().unwrap_or_default()
                )),
                None,
            ),
            Ok(other) => (
                Phase::Failed,
                Some(format!("unexpected answer {other:?}")),
                None,
            ),
            Err(error) => (Phase::Failed, Some(error.to_string()), None),
        };
        self.commit(Transition {
            resource: name.to_string(),
            generation,
            phase: phase.clone(),
            host: Some(host.clone()),
            new_assignment: false,
            error: error.clone(),
            reaction,
        })
        .await?;
        match error {
            None => Ok(self
                .replica
                .read_local(|state| state.runtime.get(name).cloned().unwrap_or_default())),
            Some(error) => Err(OrchestratorError::Failed(format!(
                "starting {name} on {host} failed: {error}"
            ))),
        }
    }

    /// Stops a resource (ACPI power-down, then quit, then kill) and waits until it is stopped.
    pub async fn stop(&self, name: &str) -> Result<(), OrchestratorError> {
        let state = self.state().await?;
        if Self::is_clone(&state, name) {
            return self.stop_instances(&state, name).await;
        }
        let _slot = self.claim_queued(name).await?;
        self.stop_claimed(name).await
    }

    async fn stop_claimed(&self, name: &str) -> Result<(), OrchestratorError> {
        let state = self.state().await?;
        Self::kind_of(&state, name)?;
        let runtime = state.runtime.get(name).cloned().unwrap_or_default();
        let Some(host) = runtime.host.clone() else {
            return Ok(());
        };
        if runtime.phase == Phase::Stopped {
            return Ok(());
        }
        self.commit(Transition {
            resource: name.to_string(),
            generation: runtime.generation,
            phase: Phase::Stopping,
            host: Some(host.clone()),
            new_assignment: false,
            error: None,
            reaction: None,
        })
        .await?;
        let request = Self::stop_request(&state, name)?;
        let answer = self
            .call(
                &state,
                &host,
                request,
                Duration::from_millis(STOP_TIMEOUT_MS * 2),
            )
            .await;
        let error = match answer {
            Ok(AgentAnswer::Done) => None,
            Ok(answer) if answer.state() == Some("stopped") => None,
            Ok(AgentAnswer::Failed { error, .. }) => Some(error),
            Ok(other) => Some(format!("unexpected answer {other:?}")),
            Err(error) => Some(error.to_string()),
        };
        // A failed stop leaves the resource where it is, marked failed: it may still run.
        self.commit(Transition {
            resource: name.to_string(),
            generation: runtime.generation,
            phase: if error.is_none() {
                Phase::Stopped
            } else {
                Phase::Failed
            },
            host: if error.is_none() {
                None
            } else {
                Some(host.clone())
            },
            new_assignment: false,
            error: error.clone(),
            reaction: None,
        })
        .await?;
        match error {
            None => Ok(()),
            Some(error) => Err(OrchestratorError::Failed(format!(
                "stopping {name} on {host} failed: {error}"
            ))),
        }
    }

    /// Refuses a migration that cannot start (not running, unknown or offline target) before
    /// anything is committed. A cheap check on the local replica: the migration checks
    /// again, holding the VM's slot, on a state read after confirming the leadership.
    pub async fn check_migration(
        &self,
        name: &str,
        to: Option<&str>,
    ) -> Result<(), OrchestratorError> {
        let state = self.local_state();
        Self::vm_of(&state, name)?;
        let runtime = state.runtime.get(name).cloned().unwrap_or_default();
        let (Phase::Running, Some(source)) = (&runtime.phase, &runtime.host) else {
            return Err(OrchestratorError::Conflict(format!(
                "{name} is {}, not running; only a running vm migrates",
                runtime.phase.name()
            )));
        };
        if let Some(target) = to {
            if !state.nodes.keys().any(|node| node.as_str() == target) {
                return Err(OrchestratorError::NotFound(format!(
                    "no node named {target}"
                )));
            }
            if target == source {
                return Err(OrchestratorError::Invalid(format!(
                    "{name} already runs on {target}"
                )));
            }
            if !self.online_members(&state).contains(target) {
                return Err(OrchestratorError::Conflict(format!(
                    "node {target} is not an online member"
                )));
            }
        }
        Ok(())
    }

    /// Live-migrates a running VM to `to` (or the best other host); on failure it keeps running on its source.
    pub async fn migrate(
        &self,
        name: &str,
        to: Option<&str>,
        bandwidth_bytes_per_second: u64,
    ) -> Result<MigrationFigures, OrchestratorError> {
        self.migrate_recording(name, to, bandwidth_bytes_per_second, Vec::new())
            .await
    }

    /// Migrates after committing `record` (the move's constraints) while holding the
    /// resource's slot, so the reconciler cannot act on the new constraint first.
    pub async fn migrate_recording(
        &self,
        name: &str,
        to: Option<&str>,
        bandwidth_bytes_per_second: u64,
        record: Vec<Command>,
    ) -> Result<MigrationFigures, OrchestratorError> {
        let _slot = self.claim_queued(name).await?;
        self.migrate_claimed(name, to, bandwidth_bytes_per_second, record)
            .await
    }

    /// [`Orchestrator::migrate_recording`] for a resource whose slot the caller holds.
    async fn migrate_claimed(
        &self,
        name: &str,
        to: Option<&str>,
        bandwidth_bytes_per_second: u64,
        record: Vec<Command>,
    ) -> Result<MigrationFigures, OrchestratorError> {
        let started = Instant::now();
        let mut steps = Steps::new();
        // One leadership round; the commits below refuse a state that changed since.
        let state = self.state().await?;
        let vm = Self::vm_of(&state, name)?;
        let runtime = state.runtime.get(name).cloned().unwrap_or_default();
        let source = match (&runtime.phase, &runtime.host) {
            (Phase::Running, Some(host)) => host.clone(),
            (phase, _) => {
                return Err(OrchestratorError::Conflict(format!(
                    "{name} is {}, not running; only a running vm migrates",
                    phase.name()
                )));
            }
        };
        let online = self.online_members(&state);
        let target = match to {
            Some(target) => {
                if !state.nodes.keys().any(|node| node.as_str() == target) {
                    return Err(OrchestratorError::NotFound(format!(
                        "no node named {target}"
                    )));
                }
                if target == source {
                    return Err(OrchestratorError::Invalid(format!(
                        "{name} already runs on {target}"
                    )));
                }
                if !online.contains(target) {
                    return Err(OrchestratorError::Conflict(format!(
                        "node {target} is not an online member"
                    )));
                }
                target.to_string()
            }
            None => Self::choose_host(&state, name, &online, Some(&source)).ok_or_else(|| {
                OrchestratorError::Conflict(format!("no other online member can take {name}"))
            })?,
        };
        let generation = runtime.generation;
        let recorded: Vec<String> = record
            .iter()
            .filter_map(|command| match command {
                Command::Configure {
                    change: hafen_model::ConfigChange::SetConstraint { constraint },
                } => Some(constraint.id.clone()),
                _ => None,
            })
            .collect();
        let pools = state.config.pools.clone();
        steps.mark("check");
        // The destination starts while the move and the migrating step are committed: a
        // QEMU waiting for an incoming migration cannot run the guest, and the source is
        // told to send only after both commits. A refused commit discards the destination.
        let recording = async {
            for command in record {
                self.commit_command(command).await?;
            }
            self.commit(Transition {
                resource: name.to_string(),
                generation,
                phase: Phase::Migrating { to: target.clone() },
                host: Some(source.clone()),
                new_assignment: false,
                error: None,
                reaction: None,
            })
            .await
        };
        let preparing = self.call(
            &state,
            &target,
            AgentRequest::PrepareIncoming {
                name: name.to_string(),
                generation: generation + 1,
                vm: vm.clone(),
                pools: pools.clone(),
            },
            START_TIMEOUT,
        );
        let (committed, prepared) = futures::future::join(recording, preparing).await;
        steps.mark("prepare destination");
        if let Err(error) = committed {
            if let Ok(AgentAnswer::Incoming { .. }) = prepared {
                let kill = AgentRequest::Kill {
                    name: name.to_string(),
                    pools: pools.clone(),
                };
                let _ = self
                    .call(&state, &target, kill, Duration::from_secs(30))
                    .await;
            }
            return Err(error);
        }
        let route = Route {
            source: &source,
            target: &target,
            bandwidth_bytes_per_second,
        };
        let result = self
            .migrate_steps(&state, name, &pools, route, prepared, &mut steps)
            .await;
        match result {
            Ok(report) => {
                // The guest runs on the target and the source is paused for good: record the
                // new assignment and order the source's end together. The source's agent
                // answers once nothing can resume that copy and ends the process in the
                // background (what follows for the VM on that host waits for it).
                let (committed, ended) = futures::future::join(
                    self.commit(Transition {
                        resource: name.to_string(),
                        generation,
                        phase: Phase::Running,
                        host: Some(target.clone()),
                        new_assignment: true,
                        error: None,
                        reaction: None,
                    }),
                    self.call(
                        &state,
                        &source,
                        AgentRequest::CompleteOutgoing {
                            name: name.to_string(),
                            pools: pools.clone(),
                        },
                        Duration::from_secs(30),
                    ),
                )
                .await;
                match ended {
                    Ok(AgentAnswer::Done) => {}
                    // Paused after a completed migration, that copy cannot run the guest and
                    // nothing resumes it; the error says a process is left on the source.
                    Ok(AgentAnswer::Failed { error, .. }) => {
                        tracing::error!(vm = %name, host = %source, %error, "the source of a finished migration was not ended");
                    }
                    Ok(other) => {
                        tracing::error!(vm = %name, host = %source, ?other, "the source of a finished migration was not ended");
                    }
                    Err(error) => {
                        tracing::error!(vm = %name, host = %source, %error, "the source of a finished migration was not ended");
                    }
                }
                committed?;
                steps.mark("commit new assignment, end source");
                let AgentAnswer::Migrated {
                    total_time_ms,
                    downtime_ms,
                    transferred_bytes,
                } = report
                else {
                    unreachable!("migrate_steps returns the source's figures");
                };
                Ok(MigrationFigures {
                    from: source,
                    to: target,
                    qemu_total_time_ms: total_time_ms,
                    downtime_ms,
                    transferred_bytes,
                    orchestration_total_ms: u64::try_from(started.elapsed().as_millis())
                        .unwrap_or(u64::MAX),
                    step_ms: steps.steps,
                })
            }
            Err(error) => {
                // Refused when the source was fenced meanwhile (the fence moved the
                // generation on and the reconciler settles where the guest runs).
                let committed = self
                    .commit(Transition {
                        resource: name.to_string(),
                        generation,
                        phase: Phase::Running,
                        host: Some(source.clone()),
                        new_assignment: false,
                        error: Some(format!("migration to {target} failed: {error}")),
                        reaction: None,
                    })
                    .await;
                // The move did not happen: its constraint must not make the reconciler try again.
                for id in recorded {
                    let change = hafen_model::ConfigChange::RemoveConstraint { id };
                    let _ = self.commit_command(Command::Configure { change }).await;
                }
                committed?;
                Err(OrchestratorError::Failed(format!(
                    "migrating {name} from {source} to {target} failed, it keeps running on {source}: {error}"
                )))
            }
        }
    }

    /// The migration from the prepared destination on: transfer, the destination's
    /// confirmation, or the way back to the source.
    async fn migrate_steps(
        &self,
        state: &ClusterState,
        name: &str,
        pools: &Pools,
        route: Route<'_>,
        prepared: Result<AgentAnswer, OrchestratorError>,
        steps: &mut Steps,
    ) -> Result<AgentAnswer, String> {
        let Route {
            source,
            target,
            bandwidth_bytes_per_second,
        } = route;
        let timeout = Duration::from_millis(MIGRATION_TIMEOUT_MS);
        let expect_done = |answer: Result<AgentAnswer, OrchestratorError>| match answer {
            Ok(AgentAnswer::Done) => Ok(()),
            Ok(AgentAnswer::Failed { error, .. }) => Err(error),
            Ok(other) => Err(format!("unexpected answer {other:?}")),
            Err(error) => Err(error.to_string()),
        };
        let address = match prepared {
            Ok(AgentAnswer::Incoming { address }) => address,
            Ok(AgentAnswer::Failed { error, .. }) => {
                return Err(format!("destination {target}: {error}"));
            }
            Ok(other) => return Err(format!("destination {target}: unexpected answer {other:?}")),
            Err(error) => return Err(format!("destination {target}: {error}")),
        };
        let discard_destination = || async {
            let _ = self
                .call(
                    state,
                    target,
                    AgentRequest::Kill {
                        name: name.to_string(),
                        pools: pools.clone(),
                    },
                    Duration::from_secs(30),
                )
                .await;
        };
        let outgoing = AgentRequest::MigrateOutgoing {
            name: name.to_string(),
            target: address,
            max_bandwidth_bytes_per_second: bandwidth_bytes_per_second,
            downtime_limit_ms: 300,
            timeout_ms: MIGRATION_TIMEOUT_MS,
            pools: pools.clone(),
        };
        // The destination's wait for the guest is asked for together with the transfer, so
        // its answer needs no further round trip once the source has sent everything. Its
        // bound covers the transfer too.
        let await_timeout = timeout + Duration::from_secs(30);
        let mut awaiting = Box::pin(self.call(
            state,
            target,
            AgentRequest::AwaitIncoming {
                name: name.to_string(),
                timeout_ms: u64::try_from(await_timeout.as_millis()).unwrap_or(u64::MAX),
                pools: pools.clone(),
            },
            await_timeout,
        ));
        let mut sending = Box::pin(self.call(state, source, outgoing, timeout));
        let mut awaited = None;
        let sent = loop {
            tokio::select! {
                sent = &mut sending => break sent,
                answer = &mut awaiting, if awaited.is_none() => awaited = Some(answer),
            }
        };
        let report = match sent {
            Ok(report @ AgentAnswer::Migrated { .. }) => report,
            other => {
                // The source runs the guest again (its driver resumed it); the destination
                // never got the whole state. Stop waiting for it and discard it.
                drop(awaiting);
                discard_destination().await;
                let error = match other {
                    Ok(AgentAnswer::Failed { error, .. }) => error,
                    Ok(other) => format!("unexpected answer {other:?}"),
                    Err(error) => error.to_string(),
                };
                return Err(format!("source {source}: {error}"));
            }
        };
        steps.mark("transfer");
        let awaited = match awaited {
            Some(answer) => answer,
            None => awaiting.await,
        };
        if let Err(error) = expect_done(awaited) {
            // The destination never ran the guest: discard it before the source resumes, so
            // the guest never runs twice.
            discard_destination().await;
            let aborted = expect_done(
                self.call(
                    state,
                    source,
                    AgentRequest::AbortOutgoing {
                        name: name.to_string(),
                        pools: pools.clone(),
                    },
                    timeout,
                )
                .await,
            );
            return Err(match aborted {
                Ok(()) => {
                    format!("destination {target} did not take over ({error}); source resumed")
                }
                Err(abort) => format!(
                    "destination {target} did not take over ({error}) and the source could not resume: {abort}"
                ),
            });
        }
        steps.mark("destination running");
        Ok(report)
    }

    /// The leader's fencing pass, run on its own fast tick so that no slow resource
    /// operation delays the fencing of a dead host.
    pub async fn fence_once(&self) {
        if !self.replica.status().is_leader {
            return;
        }
        if let Ok(state) = self.state().await {
            self.note_self_fencing(&state, &self.local_name, self.watchdog_timeout_ms)
                .await;
            self.note_capacity(&state, &self.local_name, &self.capacity)
                .await;
            self.fence_pass(&state).await;
            self.probe_returning(&state).await;
        }
    }

    /// Commits the capacity a node declares when it differs from the record (the leader
    /// calls this for its own node and for every heartbeat's declaration).
    pub async fn note_capacity(
        &self,
        state: &ClusterState,
        name: &str,
        capacity: &BTreeMap<String, u64>,
    ) {
        let Some(node) = state.nodes.values().find(|node| node.name.as_str() == name) else {
            return;
        };
        if capacity.is_empty() || node.capacity == *capacity {
            return;
        }
        if let Err(error) = self
            .commit_command(Command::DeclareCapacity {
                name: name.to_string(),
                capacity: capacity.clone(),
            })
            .await
        {
            tracing::debug!(node = %name, %error, "capacity declaration not committed");
        }
    }

    /// Commits what a node declares about its watchdog when it differs from the record
    /// (the leader calls this for its own node and for every heartbeat's declaration).
    pub async fn note_self_fencing(
        &self,
        state: &ClusterState,
        name: &str,
        watchdog_timeout_ms: Option<u64>,
    ) {
        use hafen_model::fencing::SelfFencing;
        let declared = watchdog_timeout_ms.map(|watchdog_timeout_ms| SelfFencing {
            watchdog_timeout_ms,
        });
        let Some(node) = state.nodes.values().find(|node| node.name.as_str() == name) else {
            return;
        };
        if node.self_fencing == declared {
            return;
        }
        if let Err(error) = self
            .commit_command(Command::DeclareSelfFencing {
                name: name.to_string(),
                self_fencing: declared,
            })
            .await
        {
            tracing::debug!(node = %name, %error, "watchdog declaration not committed");
        }
    }

    /// The local replica's state, without a leadership round (for cheap checks).
    pub fn local_state(&self) -> Arc<ClusterState> {
        self.replica.shared_local()
    }

    /// One pass of the leader's reconciliation: settle steps a previous leader left in
    /// flight and monitor running resources (each in its own task, holding the resource's
    /// slot, so a hung host delays nothing else), then carry out the scheduler's plan.
    pub async fn reconcile_once(self: &Arc<Self>) {
        if !self.replica.status().is_leader {
            return;
        }
        let Ok(state) = self.state().await else {
            return;
        };
        // Planned first: a monitor spawned below holds its resource's slot for a moment,
        // and a planned action finding the slot taken would wait for the next pass, where
        // the next monitor would take it again. Resources the plan acts on are not
        // monitored in this pass (settling a step in flight still goes first).
        let plan = match self.plan(&state) {
            Ok(plan) => plan,
            Err(error) => {
                tracing::warn!(%error, "no plan");
                return;
            }
        };
        self.log_pending(&plan.pending);
        // Only actions tried now: one backing off after a failure keeps its monitor.
        let planned: BTreeSet<&str> = plan
            .actions
            .iter()
            .map(|action| action.resource.as_str())
            .filter(|name| !self.backing_off(name))
            .collect();
        let alive = self.alive_nodes(&state);
        for name in state.config.resources.keys() {
            if Self::is_clone(&state, name)
                || self.busy.lock().expect("busy lock poisoned").contains(name)
            {
                continue;
            }
            let runtime = state.runtime.get(name).cloned().unwrap_or_default();
            let settle = matches!(
                runtime.phase,
                Phase::Starting | Phase::Stopping | Phase::Migrating { .. }
            );
            let monitor = matches!(
                (&runtime.phase, &runtime.host),
                (Phase::Running, Some(host)) if alive.contains(host)
            ) && !planned.contains(name.as_str())
                && self.monitor_due(&state, name, name);
            if !settle && !monitor {
                continue;
            }
            // Each takes the resource's slot itself; a planned action holding it wins.
            let this = self.clone();
            let state = state.clone();
            let name = name.clone();
            tokio::spawn(async move {
                let result = match (&runtime.phase, &runtime.host) {
                    (Phase::Running, Some(host)) => {
                        this.check_running(&state, &name, host, &runtime).await
                    }
                    _ => this.settle(&state, &name, &runtime).await,
                };
                if let Err(error) = result {
                    tracing::info!(resource = %name, %error, "reconciliation step failed");
                }
            });
        }
        self.monitor_instances(&state, &alive);
        let limits = hafen_controller::execution::Limits {
            parallel: usize::try_from(state.config.integer("start-parallelism")).unwrap_or(1),
            migrations_per_host: usize::try_from(state.config.integer("migration-limit"))
                .unwrap_or(1),
        };
        self.execute(&state, plan.actions, limits).await;
    }

    /// Carries out a plan through [`hafen_controller::execution::Execution`]: each action
    /// once its `after` dependencies succeeded, at most `limits.parallel` at a time and at
    /// most `limits.migrations_per_host` live migrations involving any one host (counting
    /// an operator's migrations under way). An action whose dependency failed is skipped
    /// (the next pass re-plans).
    async fn execute(
        &self,
        planned: &ClusterState,
        actions: Vec<hafen_scheduler::Action>,
        limits: hafen_controller::execution::Limits,
    ) {
        use futures::StreamExt;
        // A step that follows one of its own resource's steps (a cold move split into a stop
        // and a start) finds the resource changed by that step, as planned.
        let follows_own: BTreeSet<u32> = actions
            .iter()
            .filter(|action| {
                actions.iter().any(|other| {
                    other.resource == action.resource && action.after.contains(&other.id)
                })
            })
            .map(|action| action.id)
            .collect();
        let under_way =
            planned
                .runtime
                .values()
                .filter_map(|runtime| match (&runtime.phase, &runtime.host) {
                    (Phase::Migrating { to }, Some(from)) => Some((from.as_str(), to.as_str())),
                    _ => None,
                });
        let in_plan: BTreeSet<String> = actions
            .iter()
            .map(|action| action.resource.clone())
            .collect();
        let mut execution = hafen_controller::execution::Execution::new(actions, limits, under_way);
        // Read by running moves and restarts between their stop and their start.
        let aborted = AtomicBool::new(false);
        let mut running = futures::stream::FuturesUnordered::new();
        let mut applied = self.replica.subscribe_applied();
        applied.borrow_and_update();
        loop {
            let step = execution.next(|_| true);
            for action in step.skipped {
                tracing::info!(%action, "skipped: a step it depends on failed");
            }
            for action in step.launch {
                let own_step_before = follows_own.contains(&action.id);
                let aborted = &aborted;
                running.push(async move {
                    let ok = self
                        .carry_out(planned, &action, own_step_before, aborted)
                        .await;
                    (action.id, ok)
                });
            }
            tokio::select! {
                finished = running.next() => {
                    let Some((id, ok)) = finished else {
                        break;
                    };
                    execution.finished(id, ok);
                }
                changed = applied.changed(), if !aborted.load(Ordering::Relaxed) => {
                    let now = self.local_state();
                    if changed.is_err() || Self::plan_outdated(planned, &now, &in_plan) {
                        aborted.store(true, Ordering::Relaxed);
                        let dropped = execution.abort();
                        if !dropped.is_empty() {
                            tracing::info!(
                                dropped = dropped.len(),
                                "the rest of the plan is dropped: something outside it changed; planning afresh"
                            );
                        }
                    }
                }
            }
        }
    }

    /// Logs each resource the scheduler cannot place, once per reason (why a resource does
    /// not run shows in the log without a log line every pass).
    fn log_pending(&self, pending: &[hafen_scheduler::Pending]) {
        let now: BTreeMap<String, String> = pending
            .iter()
            .map(|pending| (pending.resource.clone(), pending.reason.clone()))
            .collect();
        let mut last = self.last_pending.lock().expect("lock poisoned");
        for (resource, reason) in &now {
            if last.get(resource) != Some(reason) {
                tracing::info!(%resource, %reason, "not placed");
            }
        }
        *last = now;
    }

    /// Whether `name` is the `then` of a mandatory ordering or follows another member of
    /// its group: it cannot start before those run.
    fn waits_for_others(state: &ClusterState, name: &str) -> bool {
        let config = &state.config;
        config.orderings.values().any(|ordering| {
            ordering.then == name && ordering.kind == hafen_model::resource::OrderingKind::Mandatory
        }) || config.groups.values().any(|group| {
            group
                .members
                .iter()
                .position(|member| member == name)
                .is_some_and(|position| position > 0)
        })
    }

    /// Whether a committed change outside the plan's own resources (a host suspected,
    /// fenced or put in standby, the configuration, another resource failing) makes the
    /// rest of a plan made from `planned` stale, as an unexpected event aborts Pacemaker's
    /// transition.
    fn plan_outdated(
        planned: &ClusterState,
        now: &ClusterState,
        in_plan: &BTreeSet<String>,
    ) -> bool {
        now.epoch != planned.epoch
            || now.nodes != planned.nodes
            || now
                .runtime
                .iter()
                .filter(|(name, _)| !in_plan.contains(*name))
                .any(|(name, runtime)| planned.runtime.get(name) != Some(runtime))
            || planned
                .runtime
                .keys()
                .any(|name| !in_plan.contains(name) && !now.runtime.contains_key(name))
    }

    /// One planned action, made from the state `planned` (and after a step of the same
    /// resource if `own_step_before`); false when it failed or could not be tried now. A
    /// move or restart whose plan is `aborted` after its stop does not start again: the
    /// start would be a new step of a stale plan.
    async fn carry_out(
        &self,
        planned: &ClusterState,
        action: &hafen_scheduler::Action,
        own_step_before: bool,
        aborted: &AtomicBool,
    ) -> bool {
        let name = action.resource.clone();
        if self.backing_off(&name) {
            return false;
        }
        if Self::is_clone(planned, &name) {
            if self
                .busy
                .lock()
                .expect("busy lock poisoned")
                .contains(&name)
            {
                return false;
            }
            tracing::info!(%action, "carrying out");
            return self.carry_out_on_instance(action).await;
        }
        // The slot is taken first and never waited for, and the plan is carried out only if
        // neither the configuration nor the resource changed since it was made: an operation
        // that held the slot in between (a failed migration withdrawing its move, say) may
        // have made it stale. A later pass plans afresh.
        let Ok(_slot) = self.claim(&name) else {
            return false;
        };
        let now = self.local_state();
        if now.epoch != planned.epoch
            || (!own_step_before && now.runtime.get(&name) != planned.runtime.get(&name))
        {
            tracing::debug!(%action, "skipped: the resource changed since the plan was made");
            return false;
        }
        tracing::info!(%action, "carrying out");
        let result = match action.kind.clone() {
            hafen_scheduler::ActionKind::Start { host } => {
                self.start_claimed(&name, Some(host)).await.map(|_| ())
            }
            hafen_scheduler::ActionKind::Stop { .. } => self.stop_claimed(&name).await,
            hafen_scheduler::ActionKind::Restart { host }
            | hafen_scheduler::ActionKind::Move { to: host, .. } => {
                match self.stop_claimed(&name).await {
                    Ok(()) if aborted.load(Ordering::Relaxed) => {
                        tracing::info!(%action, "stopped; not started again: the plan was dropped");
                        return false;
                    }
                    Ok(()) => self.start_claimed(&name, Some(host)).await.map(|_| ()),
                    Err(error) => Err(error),
                }
            }
            hafen_scheduler::ActionKind::Migrate { to, .. } => {
                let bandwidth = 1024 * 1024 * 1024;
                self.migrate_claimed(&name, Some(&to), bandwidth, Vec::new())
                    .await
                    .map(|_| ())
            }
            hafen_scheduler::ActionKind::Promote { .. }
            | hafen_scheduler::ActionKind::Demote { .. } => Ok(()),
        };
        match result {
            Ok(()) => true,
            Err(error) => {
                self.attempted(&name);
                tracing::info!(resource = %name, %error, "planned action failed");
                false
            }
        }
    }

    /// Suspects members the leader no longer hears from, fences unclean ones through their
    /// devices (committing the confirmation before anything of theirs starts elsewhere), and
    /// lets fenced members that answer again rejoin clean. Two members without a witness
    /// never fence each other automatically (no fence race): status says so.
    async fn fence_pass(&self, state: &ClusterState) {
        use hafen_model::fencing::Fencing;
        // stonith-enabled=false: nobody is suspected or fenced, so nothing is recovered either
        // (unlike Pacemaker, hafen never recovers without fencing).
        if matches!(
            state.config.property("stonith-enabled"),
            Ok(hafen_model::PropertyValue::Bool(false))
        ) {
            return;
        }
        let alive = self.alive_nodes(state);
        let members: Vec<&hafen_model::NodeRecord> = state
            .nodes
            .values()
            .filter(|node| node.role == NodeRole::Member)
            .collect();
        let witnesses = state
            .nodes
            .values()
            .filter(|node| node.role == NodeRole::Witness)
            .count();
        use hafen_controller::FencingMethod;
        use hafen_controller::fencing::{FencingPolicy, MemberCase, Standing, Verdict, judge};
        let policy = FencingPolicy {
            two_without_witness: members.len() == 2 && witnesses == 0,
            unsafe_recovery: matches!(
                state.config.property("unsafe-recovery-without-fencing"),
                Ok(hafen_model::PropertyValue::Bool(true))
            ),
        };
        let voters = self.replica.status().voters;
        let alive_voters = state
            .nodes
            .values()
            .filter(|node| voters.contains(&node.node_id) && alive.contains(node.name.as_str()))
            .count();
        for node in members.iter().copied() {
            let name = node.name.to_string();
            let watchdog = Duration::from_millis(
                node.self_fencing
                    .map_or(0, |declared| declared.watchdog_timeout_ms),
            );
            let method = if !state.config.fence_devices.is_empty() {
                FencingMethod::Device
            } else if node.self_fencing.is_some() {
                FencingMethod::SelfFence
            } else {
                FencingMethod::None
            };
            let case = MemberCase {
                standing: match node.fencing {
                    Fencing::None => Standing::Clean,
                    Fencing::Unclean { .. } => Standing::Unclean,
                    Fencing::Fenced { .. } => Standing::Fenced,
                },
                alive: alive.contains(&name),
                method,
                lease_certainly_lapsed: self.liveness.certainly_lapsed(
                    node.node_id,
                    Instant::now(),
                    watchdog,
                ),
                quorum_without: hafen_controller::fencing::majority_without(
                    alive_voters
                        - usize::from(alive.contains(&name) && voters.contains(&node.node_id)),
                    voters.len(),
                ),
            };
            let result = match judge(&name, &case, &policy) {
                Verdict::Nothing => Ok(()),
                Verdict::Refuse(reason) => {
                    // `status` says why from the state; the log says it once a pass.
                    tracing::debug!(node = %name, %reason, "no automatic recovery");
                    Ok(())
                }
                Verdict::Suspect => {
                    self.commit_command(Command::HostSuspected { name: name.clone() })
                        .await
                }
                Verdict::Clear => {
                    self.commit_command(Command::HostRejoined { name: name.clone() })
                        .await
                }
                Verdict::ConfirmUnsafe => {
                    tracing::error!(node = %name, "UNSAFE: recovering without fencing (unsafe-recovery-without-fencing=true)");
                    self.commit_command(Command::HostFenced {
                        name: name.clone(),
                        how: "NOT fenced: unsafe-recovery-without-fencing".to_string(),
                    })
                    .await
                }
                // No device, but the node self-fences: its lease certainly lapsed and its
                // watchdog had time to reset it, so it runs nothing any more.
                Verdict::ConfirmLeaseExpired => {
                    self.commit_command(Command::HostFenced {
                        name: name.clone(),
                        how: format!(
                            "lease certainly lapsed (self-fenced; watchdog {} ms)",
                            watchdog.as_millis()
                        ),
                    })
                    .await
                }
                Verdict::FenceByDevice => {
                    let key = format!("fence:{name}");
                    if self.backing_off(&key) {
                        continue;
                    }
                    self.attempted(&key);
                    self.fence_host(state, &name).await.map(|_| ())
                }
                Verdict::Rejoin => {
                    // It starts clean: the probe of a returning member (`probe_returning`)
                    // stops whatever its agents still report active there; until then it
                    // takes no work.
                    self.rejoined_unprobed
                        .lock()
                        .expect("lock poisoned")
                        .insert(name.clone());
                    self.commit_command(Command::HostRejoined { name: name.clone() })
                        .await
                }
            };
            if let Err(error) = result {
                tracing::warn!(node = %name, %error, "fencing step failed");
            }
        }
    }

    async fn commit_command(&self, command: Command) -> Result<(), OrchestratorError> {
        self.propose(command).await.map(|_| ())
    }

    /// Powers `name` off through the configured devices (each device a level, tried in
    /// order) and commits the confirmation. Returns how it was fenced.
    pub async fn fence_host(
        &self,
        state: &ClusterState,
        name: &str,
    ) -> Result<String, OrchestratorError> {
        use hafen_driver_api::fence::{FenceDevice, FenceLevel, Fencer, PowerAction};
        if state.config.fence_devices.is_empty() {
            return Err(OrchestratorError::Conflict(format!(
                "no fence device is configured: confirm with `hafen node confirm-fenced {name}` once {name} is certainly off"
            )));
        }
        let devices: BTreeMap<String, FenceDevice> = state
            .config
            .fence_devices
            .values()
            .map(|config| (config.name.clone(), fence_device(config)))
            .collect();
        let levels: Vec<FenceLevel> = devices
            .keys()
            .map(|device| FenceLevel::new(&[device.as_str()]))
            .collect();
        // Only the quorate side fences (I3): a deposed leader that has not noticed yet must
        // not power anybody off.
        if !self
            .replica
            .confirm_leadership(Instant::now(), Duration::from_secs(1))
            .await
        {
            return Err(OrchestratorError::Unavailable(format!(
                "not fencing {name}: this node's leadership is not confirmed by a quorum"
            )));
        }
        let outcome = self
            .fence
            .fence(&devices, &levels, name, PowerAction::Off)
            .await
            .map_err(|error| {
                OrchestratorError::Failed(format!("fencing {name} failed: {error}"))
            })?;
        let how = format!("device level {}", outcome.level + 1);
        self.commit_command(Command::HostFenced {
            name: name.to_string(),
            how: how.clone(),
        })
        .await?;
        Ok(how)
    }

    /// Asks a device whether `node` is powered on (`fence-device test`); changes nothing.
    pub async fn test_fence_device(
        &self,
        state: &ClusterState,
        device: &str,
        node: &str,
    ) -> Result<String, OrchestratorError> {
        use hafen_driver_api::fence::Fencer;
        let config = state.config.fence_devices.get(device).ok_or_else(|| {
            OrchestratorError::NotFound(format!("no fence device named {device}"))
        })?;
        if !state.nodes.keys().any(|name| name.as_str() == node) {
            return Err(OrchestratorError::NotFound(format!("no node named {node}")));
        }
        let power = self
            .fence
            .status(&fence_device(config), node)
            .await
            .map_err(|error| {
                OrchestratorError::Failed(format!(
                    "fence device {device} cannot tell the power of {node}: {error}"
                ))
            })?;
        Ok(power.to_string())
    }

    /// Checks a device's parameters against its agent's meta-data.
    pub async fn check_fence_device(
        &self,
        config: &hafen_model::fencing::FenceDeviceConfig,
    ) -> Result<(), OrchestratorError> {
        use hafen_driver_api::fence::Fencer;
        self.fence
            .check_device(&fence_device(config))
            .await
            .map(|_| ())
            .map_err(|error| OrchestratorError::Invalid(error.to_string()))
    }

    /// A running VM whose process vanished is marked failed (and restarted by the next pass).
    /// Whether a running resource's monitor is due (its interval passed since the last
    /// one); VMs are checked every second. Marks it as checked when due.
    fn monitor_due(&self, state: &ClusterState, name: &str, key: &str) -> bool {
        let interval = match state
            .config
            .resources
            .get(name)
            .map(|resource| &resource.kind)
        {
            Some(ResourceKind::Ocf(ocf)) if ocf.monitor_interval_ms > 0 => {
                Duration::from_millis(ocf.monitor_interval_ms)
            }
            _ => VM_MONITOR_INTERVAL,
        };
        let now = Instant::now();
        let mut last = self.last_monitor.lock().expect("lock poisoned");
        if last
            .get(key)
            .is_some_and(|at| now.duration_since(*at) < interval)
        {
            return false;
        }
        last.insert(key.to_string(), now);
        true
    }

    async fn check_running(
        &self,
        state: &ClusterState,
        name: &str,
        host: &str,
        runtime: &ResourceState,
    ) -> Result<(), OrchestratorError> {
        let _slot = self.claim(name)?;
        let request = Self::status_request(state, name)?;
        let answer = self
            .call(state, host, request, Duration::from_secs(30))
            .await?;
        let failure = match &answer {
            answer if matches!(answer.state(), Some("running" | "paused" | "promoted")) => None,
            AgentAnswer::State {
                state: found,
                message,
                reaction,
            } => Some((
                format!("found {found} by the monitor: {message}"),
                *reaction,
            )),
            AgentAnswer::Vm { state: found, .. } => {
                Some((format!("found {found} by the monitor"), None))
            }
            AgentAnswer::Failed { error, reaction } => Some((error.clone(), *reaction)),
            other => Some((format!("unexpected answer {other:?}"), None)),
        };
        if let Some((error, reaction)) = failure {
            self.commit(Transition {
                resource: name.to_string(),
                generation: runtime.generation,
                phase: Phase::Failed,
                host: Some(host.to_string()),
                new_assignment: false,
                error: Some(error),
                reaction,
            })
            .await?;
        }
        Ok(())
    }

    async fn is_running(&self, state: &ClusterState, name: &str, host: &str) -> bool {
        let Ok(request) = Self::status_request(state, name) else {
            return false;
        };
        matches!(
            self.call(state, host, request, Duration::from_secs(30)).await,
            Ok(answer) if answer.state() == Some("running")
        )
    }

    /// The hand-over of a migration did not happen: a destination still waiting for it goes.
    async fn end_abandoned_destination(&self, state: &ClusterState, name: &str, to: &str) {
        let Ok(request) = Self::status_request(state, name) else {
            return;
        };
        if !matches!(
            self.call(state, to, request, SETTLE_TIMEOUT).await,
            Ok(answer) if answer.state() == Some("incoming")
        ) {
            return;
        }
        let kill = AgentRequest::Kill {
            name: name.to_string(),
            pools: state.config.pools.clone(),
        };
        if let Err(error) = self.call(state, to, kill, SETTLE_TIMEOUT).await {
            tracing::warn!(vm = %name, host = %to, %error, "could not end an abandoned migration destination");
        }
    }

    /// Finds out where a step left in flight by a previous leader ended, and commits it.
    async fn settle(
        &self,
        state: &ClusterState,
        name: &str,
        runtime: &ResourceState,
    ) -> Result<(), OrchestratorError> {
        let _slot = self.claim(name)?;
        let (phase, host, new_assignment) = match &runtime.phase {
            Phase::Migrating { to } if self.is_running(state, name, to).await => {
                (Phase::Running, Some(to.clone()), true)
            }
            phase => {
                if let Phase::Migrating { to } = phase {
                    self.end_abandoned_destination(state, name, to).await;
                }
                match &runtime.host {
                    Some(host) if self.is_running(state, name, host).await => {
                        (Phase::Running, Some(host.clone()), false)
                    }
                    Some(host) => (Phase::Failed, Some(host.clone()), false),
                    None => (Phase::Stopped, None, false),
                }
            }
        };
        self.commit(Transition {
            resource: name.to_string(),
            generation: runtime.generation,
            phase,
            host,
            new_assignment,
            error: Some("settled after a leader change".to_string()),
            reaction: None,
        })
        .await
        .map(|_| ())
    }
}

/// The driver's view of a configured fence device.
fn fence_device(
    config: &hafen_model::fencing::FenceDeviceConfig,
) -> hafen_driver_api::fence::FenceDevice {
    let mut device = hafen_driver_api::fence::FenceDevice::new(&config.name, &config.agent);
    device.parameters = config.parameters.clone();
    device.secret_parameters = config.secret_parameters.clone();
    device.host_map = config.host_map.clone();
    device
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running_on(host: &str) -> ResourceState {
        ResourceState {
            phase: Phase::Running,
            host: Some(host.to_string()),
            ..ResourceState::default()
        }
    }

    #[test]
    fn only_a_change_outside_the_plan_outdates_it() {
        let mut planned = ClusterState::default();
        planned
            .runtime
            .insert("in-plan".into(), ResourceState::default());
        planned.runtime.insert("other".into(), running_on("h1"));
        let in_plan = BTreeSet::from(["in-plan".to_string()]);
        let mut now = planned.clone();
        now.runtime.insert("in-plan".into(), running_on("h2"));
        assert!(
            !Orchestrator::plan_outdated(&planned, &now, &in_plan),
            "the plan's own steps"
        );
        let mut failed = now.clone();
        failed.runtime.get_mut("other").expect("inserted").phase = Phase::Failed;
        assert!(Orchestrator::plan_outdated(&planned, &failed, &in_plan));
        let mut removed = now.clone();
        removed.runtime.remove("other");
        assert!(Orchestrator::plan_outdated(&planned, &removed, &in_plan));
        let mut reconfigured = now.clone();
        reconfigured.epoch += 1;
        assert!(Orchestrator::plan_outdated(
            &planned,
            &reconfigured,
            &in_plan
        ));
    }
}
