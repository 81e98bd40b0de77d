//! Clones and promotable clones: the scheduler places instances per host; each instance
//! is started, stopped, promoted, demoted and monitored on its own, under its own slot
//! (`NAME@HOST`), and committed as an `InstanceTransition`.

use super::{Orchestrator, OrchestratorError};
use crate::protocol::{AgentAnswer, AgentRequest};
use hafen_model::resource::{
    FailureReaction, InstanceState, InstanceTransition, OcfResourceConfig, Phase, ResourceKind,
};
use hafen_model::{ClusterState, Command};
use std::sync::Arc;
use std::time::Duration;

/// What is done to one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum InstanceOp {
    Start,
    Stop,
    Promote,
    Demote,
}

fn slot_key(name: &str, host: &str) -> String {
    format!("{name}@{host}")
}

fn ocf_of(state: &ClusterState, name: &str) -> Result<OcfResourceConfig, OrchestratorError> {
    match state
        .config
        .resources
        .get(name)
        .map(|resource| &resource.kind)
    {
        Some(ResourceKind::Ocf(ocf)) => Ok(ocf.clone()),
        Some(ResourceKind::Vm(_)) => Err(OrchestratorError::Invalid(format!(
            "{name} is a VM; VMs are never cloned"
        ))),
        None => Err(OrchestratorError::NotFound(format!(
            "no resource named {name}"
        ))),
    }
}

impl Orchestrator {
    pub(super) fn is_clone(state: &ClusterState, name: &str) -> bool {
        state
            .config
            .resources
            .get(name)
            .is_some_and(|resource| resource.clone.is_some())
    }

    async fn commit_instance(
        &self,
        name: &str,
        host: &str,
        phase: Phase,
        promoted: bool,
        error: Option<String>,
        reaction: Option<FailureReaction>,
    ) -> Result<(), OrchestratorError> {
        self.propose(Command::InstanceTransition {
            transition: InstanceTransition {
                resource: name.to_string(),
                host: host.to_string(),
                phase,
                promoted,
                error,
                reaction,
            },
        })
        .await
        .map(|_| ())
    }

    /// Carries out one operation on the instance of `name` on `host` and commits the
    /// outcome; a failure is committed with the agent's reaction and returned.
    pub(super) async fn instance_op(
        &self,
        name: &str,
        host: &str,
        op: InstanceOp,
    ) -> Result<(), OrchestratorError> {
        // Queued: a monitor of the instance may hold its slot for a moment.
        let _slot = self.claim_queued(&slot_key(name, host)).await?;
        let state = self.state().await?;
        let ocf = ocf_of(&state, name)?;
        let runtime = state.runtime.get(name).cloned().unwrap_or_default();
        let present = runtime.instances.get(host);
        // What this was asked for may be done already by an operation that held the slot
        // meanwhile (an operator's `stop` and the reconciler's plan both demote and stop a
        // clone's instances): doing it again would fail on an instance no longer there.
        let done = match op {
            InstanceOp::Start => present.is_some_and(|instance| instance.phase == Phase::Running),
            InstanceOp::Stop => present.is_none_or(|instance| instance.phase == Phase::Stopped),
            InstanceOp::Promote => present
                .is_some_and(|instance| instance.phase == Phase::Running && instance.promoted),
            InstanceOp::Demote => present.is_none_or(|instance| !instance.promoted),
        };
        if done {
            return Ok(());
        }
        let current = present.cloned().unwrap_or_default();
        let request = match op {
            InstanceOp::Start => AgentRequest::OcfStart {
                name: name.to_string(),
                generation: runtime.generation,
                ocf: ocf.clone(),
            },
            InstanceOp::Stop => AgentRequest::OcfStop {
                name: name.to_string(),
                ocf: ocf.clone(),
            },
            InstanceOp::Promote => AgentRequest::OcfPromote {
                name: name.to_string(),
                ocf: ocf.clone(),
            },
            InstanceOp::Demote => AgentRequest::OcfDemote {
                name: name.to_string(),
                ocf: ocf.clone(),
            },
        };
        match op {
            InstanceOp::Start => {
                self.commit_instance(name, host, Phase::Starting, false, None, None)
                    .await?
            }
            InstanceOp::Stop => {
                self.commit_instance(name, host, Phase::Stopping, current.promoted, None, None)
                    .await?
            }
            InstanceOp::Promote | InstanceOp::Demote => {}
        }
        let timeout = Duration::from_millis(ocf.operation_timeout_ms);
        let (wanted, phase, promoted) = match op {
            InstanceOp::Start => ("running", Phase::Running, false),
            InstanceOp::Stop => ("stopped", Phase::Stopped, false),
            InstanceOp::Promote => ("promoted", Phase::Running, true),
            InstanceOp::Demote => ("running", Phase::Running, false),
        };
        let failure = match self.call(&state, host, request, timeout).await {
            Ok(answer) if answer.state() == Some(wanted) => None,
            Ok(AgentAnswer::Failed { error, reaction }) => Some((error, reaction)),
            Ok(other) => Some((
                format!("{op:?} answered {}", other.state().unwrap_or("nothing")),
                None,
            )),
            Err(error) => Some((error.to_string(), None)),
        };
        match failure {
            None => {
                self.commit_instance(name, host, phase, promoted, None, None)
                    .await
            }
            Some((error, reaction)) => {
                let error = format!("{} failed: {error}", op_name(op));
                self.commit_instance(
                    name,
                    host,
                    Phase::Failed,
                    current.promoted,
                    Some(error.clone()),
                    reaction,
                )
                .await?;
                Err(OrchestratorError::Failed(format!(
                    "{name} on {host}: {error}"
                )))
            }
        }
    }

    /// Monitors a running instance, or settles one a previous leader left starting or
    /// stopping: the agent's answer says what it is now.
    pub(super) async fn check_instance(
        self: &Arc<Self>,
        state: &ClusterState,
        name: &str,
        host: &str,
        instance: &InstanceState,
    ) -> Result<(), OrchestratorError> {
        let _slot = self.claim(&slot_key(name, host))?;
        let ocf = ocf_of(state, name)?;
        let request = AgentRequest::OcfMonitor {
            name: name.to_string(),
            ocf: ocf.clone(),
            probe: instance.phase != Phase::Running,
        };
        let answer = self
            .call(
                state,
                host,
                request,
                Duration::from_millis(ocf.operation_timeout_ms),
            )
            .await?;
        let found = answer.state().unwrap_or("unknown").to_string();
        let reaction = match &answer {
            AgentAnswer::State { reaction, .. } | AgentAnswer::Failed { reaction, .. } => *reaction,
            _ => None,
        };
        match (&instance.phase, found.as_str()) {
            (Phase::Running, "running") if !instance.promoted => Ok(()),
            (Phase::Running, "promoted") if instance.promoted => Ok(()),
            (Phase::Starting | Phase::Stopping, "running" | "promoted") => {
                self.commit_instance(name, host, Phase::Running, found == "promoted", None, None)
                    .await
            }
            (Phase::Starting | Phase::Stopping, "stopped") => {
                self.commit_instance(name, host, Phase::Stopped, false, None, None)
                    .await
            }
            _ => {
                let message = match &answer {
                    AgentAnswer::State { message, .. } => message.clone(),
                    AgentAnswer::Failed { error, .. } => error.clone(),
                    _ => String::new(),
                };
                self.commit_instance(
                    name,
                    host,
                    Phase::Failed,
                    instance.promoted,
                    Some(format!("found {found} by the monitor: {message}")),
                    reaction,
                )
                .await
            }
        }
    }

    /// Spawns the monitors that are due for the instances of every clone.
    pub(super) fn monitor_instances(
        self: &Arc<Self>,
        state: &Arc<ClusterState>,
        alive: &std::collections::BTreeSet<String>,
    ) {
        for (name, runtime) in &state.runtime {
            if !Self::is_clone(state, name) {
                continue;
            }
            for (host, instance) in &runtime.instances {
                let due = match instance.phase {
                    Phase::Running => {
                        alive.contains(host) && self.monitor_due(state, name, &slot_key(name, host))
                    }
                    Phase::Starting | Phase::Stopping => alive.contains(host),
                    _ => false,
                };
                if !due
                    || self
                        .busy
                        .lock()
                        .expect("busy lock poisoned")
                        .contains(&slot_key(name, host))
                {
                    continue;
                }
                let this = self.clone();
                let state = state.clone();
                let (name, host, instance) = (name.clone(), host.clone(), instance.clone());
                tokio::spawn(async move {
                    if let Err(error) = this.check_instance(&state, &name, &host, &instance).await {
                        tracing::info!(resource = %name, %host, %error, "instance check failed");
                    }
                });
            }
        }
    }
}

fn op_name(op: InstanceOp) -> &'static str {
    match op {
        InstanceOp::Start => "start",
        InstanceOp::Stop => "stop",
        InstanceOp::Promote => "promote",
        InstanceOp::Demote => "demote",
    }
}

impl Orchestrator {
    /// One planned action on a clone instance; false when it failed.
    pub(super) async fn carry_out_on_instance(&self, action: &hafen_scheduler::Action) -> bool {
        use hafen_scheduler::ActionKind;
        let name = action.resource.as_str();
        let result = match &action.kind {
            ActionKind::Start { host } => self.instance_op(name, host, InstanceOp::Start).await,
            ActionKind::Stop { host } => self.instance_op(name, host, InstanceOp::Stop).await,
            ActionKind::Promote { host } => self.instance_op(name, host, InstanceOp::Promote).await,
            ActionKind::Demote { host } => self.instance_op(name, host, InstanceOp::Demote).await,
            ActionKind::Restart { host } => {
                match self.instance_op(name, host, InstanceOp::Stop).await {
                    Ok(()) => self.instance_op(name, host, InstanceOp::Start).await,
                    Err(error) => Err(error),
                }
            }
            ActionKind::Move { from, to } | ActionKind::Migrate { from, to } => {
                match self.instance_op(name, from, InstanceOp::Stop).await {
                    Ok(()) => self.instance_op(name, to, InstanceOp::Start).await,
                    Err(error) => Err(error),
                }
            }
        };
        match result {
            Ok(()) => true,
            Err(error) => {
                self.attempted(name);
                tracing::info!(resource = %name, %error, "planned instance action failed");
                false
            }
        }
    }
}

impl Orchestrator {
    /// Stops every instance of a clone (demoting a promoted one first), in parallel.
    pub(super) async fn stop_instances(
        &self,
        state: &ClusterState,
        name: &str,
    ) -> Result<(), OrchestratorError> {
        let runtime = state.runtime.get(name).cloned().unwrap_or_default();
        let stops = runtime.instances.iter().map(|(host, instance)| async move {
            if instance.promoted && instance.phase == Phase::Running {
                self.instance_op(name, host, InstanceOp::Demote).await?;
            }
            self.instance_op(name, host, InstanceOp::Stop).await
        });
        for result in futures::future::join_all(stops).await {
            result?;
        }
        Ok(())
    }
}

impl Orchestrator {
    /// Probes every member that joined or came back (answers again after it stopped
    /// answering, for instance after it was fenced) during this leader's term, once; not
    /// the members alive when the term began (nothing changed for them).
    pub(super) async fn probe_returning(&self, state: &ClusterState) {
        let term = self.replica.status().term;
        let alive = self.alive_nodes(state);
        let returning: Vec<String> = {
            let mut seen = self.seen_alive.lock().expect("lock poisoned");
            if seen.0 != term {
                *seen = (term, alive.clone());
                return;
            }
            seen.1.retain(|host| alive.contains(host));
            // A member that rejoined and is still unprobed is probed whether or not this
            // leader saw it come back: a leader elected after its return counted it as seen
            // at the start of its term, and the member took no work ever after (CI).
            let unprobed = self
                .rejoined_unprobed
                .lock()
                .expect("lock poisoned")
                .clone();
            alive
                .iter()
                .filter(|host| !seen.1.contains(*host) || unprobed.contains(*host))
                .cloned()
                .collect()
        };
        for host in returning {
            let member = state.nodes.values().any(|node| {
                node.name.as_str() == host
                    && node.role == hafen_model::NodeRole::Member
                    && matches!(node.fencing, hafen_model::fencing::Fencing::None)
            });
            if !member {
                continue;
            }
            self.stop_unassigned_copies(state, &host).await;
            self.rejoined_unprobed
                .lock()
                .expect("lock poisoned")
                .remove(&host);
            self.seen_alive
                .lock()
                .expect("lock poisoned")
                .1
                .insert(host);
        }
    }

    /// Probes every agent resource on `host` and stops what runs there without being
    /// assigned there (demoting a promoted copy first): state a fenced host's agents left
    /// on its disk, or a copy started by hand while the host was away (I1).
    pub(super) async fn stop_unassigned_copies(&self, state: &ClusterState, host: &str) {
        let parallelism = usize::try_from(state.config.integer("start-parallelism")).unwrap_or(1);
        let permits = &tokio::sync::Semaphore::new(parallelism.max(1));
        let probes = state.config.resources.iter().filter_map(|(name, resource)| {
            let ResourceKind::Ocf(ocf) = &resource.kind else {
                return None;
            };
            Some(async move {
                let Ok(_permit) = permits.acquire().await else {
                    return;
                };
                let key = if resource.clone.is_some() {
                    slot_key(name, host)
                } else {
                    name.clone()
                };
                let Ok(_slot) = self.claim_queued(&key).await else {
                    return;
                };
                let timeout = Duration::from_millis(ocf.operation_timeout_ms);
                let probe = AgentRequest::OcfMonitor {
                    name: name.clone(),
                    ocf: ocf.clone(),
                    probe: true,
                };
                let found = match self.call(state, host, probe, timeout).await {
                    Ok(answer) => answer.state().unwrap_or("unknown").to_string(),
                    Err(error) => {
                        tracing::warn!(resource = %name, %host, %error, "probe after rejoin failed");
                        return;
                    }
                };
                let runtime = state.runtime.get(name).cloned().unwrap_or_default();
                let assigned = if resource.clone.is_some() {
                    runtime.instances.contains_key(host)
                } else {
                    runtime.host.as_deref() == Some(host) && runtime.phase != Phase::Stopped
                };
                if found == "stopped" || assigned {
                    return;
                }
                tracing::warn!(resource = %name, %host, %found, "a rejoined host still reports it active; stopping it there");
                if found == "promoted" {
                    let demote = AgentRequest::OcfDemote {
                        name: name.clone(),
                        ocf: ocf.clone(),
                    };
                    let _ = self.call(state, host, demote, timeout).await;
                }
                let stop = AgentRequest::OcfStop {
                    name: name.clone(),
                    ocf: ocf.clone(),
                };
                if let Ok(AgentAnswer::Failed { error, .. }) | Err(OrchestratorError::Failed(error)) =
                    self.call(state, host, stop, timeout).await
                {
                    tracing::error!(resource = %name, %host, %error, "could not stop a stale copy on a rejoined host");
                }
            })
        });
        futures::future::join_all(probes).await;
    }
}
