//! What each [`Transition`] does to the committed state: the reference the daemon's state
//! machine follows, and what the simulator's modelled log applies.
//!
//! Every transition states what it expects (a generation, a phase, a fencing state); when the
//! state differs it is rejected whole, so a stale leader's or a repeated proposal is harmless.

use thiserror::Error;

use crate::types::{
    Assignment, ClusterSnapshot, FAIL_COUNT_INFINITY, FencingState, HostRole, Phase,
    ResourceRecord, Severity, Transition,
};

/// Why a transition was not applied (an operating condition, not a bug: the proposer was
/// stale or raced another proposal).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum Rejection {
    #[error("unknown host {0:?}")]
    UnknownHost(String),
    #[error("unknown resource {0:?}")]
    UnknownResource(String),
    #[error("host {host:?} is {state}, expected {expected}")]
    HostState {
        host: String,
        state: String,
        expected: &'static str,
    },
    #[error("resource {resource:?} has no assignment on {host:?} with generation {generation}")]
    NoSuchAssignment {
        resource: String,
        host: String,
        generation: u64,
    },
    #[error("resource {resource:?} on {host:?} is {phase}, expected {expected}")]
    Phase {
        resource: String,
        host: String,
        phase: &'static str,
        expected: &'static str,
    },
    #[error("resource {resource:?} expected generation {expected}, committed is {committed}")]
    Generation {
        resource: String,
        expected: u64,
        committed: u64,
    },
    #[error("resource {resource:?} is already active (single active, I1)")]
    AlreadyActive { resource: String },
    #[error("resource {resource:?} does not fit on {host:?} (capacity, I5)")]
    Capacity { resource: String, host: String },
}

/// Applies `transition` to `state` whole, or rejects it and changes nothing.
pub fn apply_transition(
    state: &mut ClusterSnapshot,
    transition: &Transition,
) -> Result<(), Rejection> {
    match transition {
        Transition::HostSuspected { host, reason } => {
            let record = host_mut(state, host)?;
            if record.fencing != FencingState::None {
                return Err(host_state(
                    record.name.clone(),
                    &record.fencing,
                    "not suspected",
                ));
            }
            record.fencing = FencingState::Unclean {
                reason: reason.clone(),
            };
        }
        Transition::HostFenced { host, how } => {
            let record = host_mut(state, host)?;
            if !matches!(record.fencing, FencingState::Unclean { .. }) {
                return Err(host_state(record.name.clone(), &record.fencing, "unclean"));
            }
            record.fencing = FencingState::Fenced { how: *how };
            drop_assignments_on(state, host);
        }
        Transition::HostRejoined { host } => {
            // Fenced: it starts clean. Unclean: it answered again before any fence was
            // confirmed, so nothing of it was recovered elsewhere.
            let record = host_mut(state, host)?;
            if matches!(record.fencing, FencingState::None) {
                return Err(host_state(
                    record.name.clone(),
                    &record.fencing,
                    "fenced or unclean",
                ));
            }
            record.fencing = FencingState::None;
        }
        Transition::SetHostMode { host, mode } => host_mut(state, host)?.mode = *mode,
        Transition::Assign {
            resource,
            host,
            generation,
        } => assign(state, resource, host, *generation)?,
        Transition::Started {
            resource,
            host,
            generation,
        } => {
            let assignment = assignment_mut(state, resource, host, *generation)?;
            expect_phase(resource, assignment, &[Phase::Starting], "starting")?;
            assignment.phase = Phase::Running;
        }
        Transition::StopRequested {
            resource,
            host,
            generation,
        } => {
            let assignment = assignment_mut(state, resource, host, *generation)?;
            if matches!(
                assignment.phase,
                Phase::MigratingTo { .. } | Phase::MigratingFrom { .. }
            ) {
                return Err(phase_error(resource, assignment, "not migrating"));
            }
            assignment.phase = Phase::Stopping;
        }
        Transition::Stopped {
            resource,
            host,
            generation,
        } => {
            let assignment = assignment_mut(state, resource, host, *generation)?;
            expect_phase(
                resource,
                assignment,
                &[Phase::Stopping, Phase::Starting],
                "stopping or starting",
            )?;
            resource_mut(state, resource)?
                .assignments
                .retain(|assignment| assignment.host != *host);
        }
        Transition::Failed {
            resource,
            host,
            generation,
            severity,
            at_ms,
        } => {
            let assignment = assignment_mut(state, resource, host, *generation)?;
            if matches!(
                assignment.phase,
                Phase::MigratingTo { .. } | Phase::MigratingFrom { .. } | Phase::Stopping
            ) {
                return Err(phase_error(
                    resource,
                    assignment,
                    "not migrating or stopping",
                ));
            }
            assignment.phase = Phase::Failed;
            let members: Vec<String> = state
                .hosts
                .iter()
                .filter(|record| record.role == HostRole::Member)
                .map(|record| record.name.clone())
                .collect();
            let record = resource_mut(state, resource)?;
            count_failure(record, host, *severity, *at_ms, &members);
        }
        Transition::MigrationRequested {
            resource,
            from,
            to,
            generation,
        } => migration_requested(state, resource, from, to, *generation)?,
        Transition::MigrationSucceeded {
            resource,
            from,
            to,
            generation,
        } => {
            let record = resource_mut(state, resource)?;
            expect_migration(record, from, to, *generation)?;
            record
                .assignments
                .retain(|assignment| assignment.host != *from);
            let destination = assignment_mut(state, resource, to, *generation)?;
            destination.phase = Phase::Running;
        }
        Transition::MigrationFailed {
            resource,
            from,
            to,
            generation,
            at_ms,
        } => {
            let record = resource_mut(state, resource)?;
            expect_migration(record, from, to, *generation)?;
            record
                .assignments
                .retain(|assignment| assignment.host != *to);
            for assignment in &mut record.assignments {
                assignment.phase = Phase::Running;
            }
            count_failure(record, to, Severity::Soft, *at_ms, &[]);
        }
        Transition::MigrationAborted { resource } => {
            let record = resource_mut(state, resource)?;
            let mut found = false;
            for assignment in &mut record.assignments {
                if matches!(
                    assignment.phase,
                    Phase::MigratingTo { .. } | Phase::MigratingFrom { .. }
                ) {
                    assignment.phase = Phase::Stopping;
                    found = true;
                }
            }
            if !found {
                return Err(Rejection::Phase {
                    resource: resource.clone(),
                    host: String::new(),
                    phase: "not migrating",
                    expected: "migrating",
                });
            }
        }
        Transition::SetPromoted {
            resource,
            host,
            generation,
            promoted,
        } => {
            let assignment = assignment_mut(state, resource, host, *generation)?;
            expect_phase(resource, assignment, &[Phase::Running], "running")?;
            assignment.promoted = *promoted;
        }
        Transition::CleanupResource { resource, host } => {
            let record = resource_mut(state, resource)?;
            match host {
                Some(host) => {
                    record.config.fail_counts.remove(host);
                }
                None => record.config.fail_counts.clear(),
            }
        }
    }
    Ok(())
}

fn assign(
    state: &mut ClusterSnapshot,
    resource: &str,
    host: &str,
    generation: u64,
) -> Result<(), Rejection> {
    let cloned = state.is_cloned(resource);
    let host_record = state
        .host(host)
        .ok_or_else(|| Rejection::UnknownHost(host.to_string()))?;
    check_host_takes_work(host_record)?;
    let record = state
        .resource(resource)
        .ok_or_else(|| Rejection::UnknownResource(resource.to_string()))?;
    check_generation(record, generation)?;
    if record.assignment_on(host).is_some() || (!cloned && !record.assignments.is_empty()) {
        return Err(Rejection::AlreadyActive {
            resource: resource.to_string(),
        });
    }
    if !state.fits(record, host_record) {
        return Err(Rejection::Capacity {
            resource: resource.to_string(),
            host: host.to_string(),
        });
    }
    let record = resource_mut(state, resource)?;
    record.generation = generation;
    record.assignments.push(Assignment {
        host: host.to_string(),
        generation,
        phase: Phase::Starting,
        promoted: false,
    });
    Ok(())
}

fn migration_requested(
    state: &mut ClusterSnapshot,
    resource: &str,
    from: &str,
    to: &str,
    generation: u64,
) -> Result<(), Rejection> {
    let host_record = state
        .host(to)
        .ok_or_else(|| Rejection::UnknownHost(to.to_string()))?;
    check_host_takes_work(host_record)?;
    let record = state
        .resource(resource)
        .ok_or_else(|| Rejection::UnknownResource(resource.to_string()))?;
    check_generation(record, generation)?;
    if record.assignments.len() != 1 || record.assignments[0].host != from {
        return Err(Rejection::AlreadyActive {
            resource: resource.to_string(),
        });
    }
    if record.assignments[0].phase != Phase::Running {
        return Err(phase_error(resource, &record.assignments[0], "running"));
    }
    if !state.fits(record, host_record) {
        return Err(Rejection::Capacity {
            resource: resource.to_string(),
            host: to.to_string(),
        });
    }
    let record = resource_mut(state, resource)?;
    record.generation = generation;
    record.assignments[0].phase = Phase::MigratingTo {
        host: to.to_string(),
    };
    record.assignments.push(Assignment {
        host: to.to_string(),
        generation,
        phase: Phase::MigratingFrom {
            host: from.to_string(),
        },
        promoted: false,
    });
    Ok(())
}

fn check_host_takes_work(host: &crate::types::HostRecord) -> Result<(), Rejection> {
    if host.role != HostRole::Member
        || host.fencing != FencingState::None
        || host.mode != crate::types::HostMode::Online
    {
        return Err(Rejection::HostState {
            host: host.name.clone(),
            state: format!("{:?} {:?} {:?}", host.role, host.mode, host.fencing),
            expected: "an online member",
        });
    }
    Ok(())
}

fn check_generation(record: &ResourceRecord, generation: u64) -> Result<(), Rejection> {
    if generation != record.generation + 1 {
        return Err(Rejection::Generation {
            resource: record.config.name.clone(),
            expected: generation.saturating_sub(1),
            committed: record.generation,
        });
    }
    Ok(())
}

fn expect_migration(
    record: &ResourceRecord,
    from: &str,
    to: &str,
    generation: u64,
) -> Result<(), Rejection> {
    let source = record.assignment_on(from).is_some_and(|assignment| {
        assignment.phase
            == Phase::MigratingTo {
                host: to.to_string(),
            }
    });
    let destination = record.assignment_on(to).is_some_and(|assignment| {
        assignment.generation == generation
            && assignment.phase
                == Phase::MigratingFrom {
                    host: from.to_string(),
                }
    });
    if source && destination {
        Ok(())
    } else {
        Err(Rejection::NoSuchAssignment {
            resource: record.config.name.clone(),
            host: to.to_string(),
            generation,
        })
    }
}

/// Drops every assignment on a fenced host. A migration half left on another host is in an
/// unknown state: it is stopped (and restarted by the next plan).
fn drop_assignments_on(state: &mut ClusterSnapshot, host: &str) {
    for record in &mut state.resources {
        let before = record.assignments.len();
        record
            .assignments
            .retain(|assignment| assignment.host != host);
        if record.assignments.len() == before {
            continue;
        }
        for assignment in &mut record.assignments {
            if matches!(
                assignment.phase,
                Phase::MigratingTo { .. } | Phase::MigratingFrom { .. }
            ) {
                assignment.phase = Phase::Stopping;
            }
        }
    }
}

fn count_failure(
    record: &mut ResourceRecord,
    host: &str,
    severity: Severity,
    at_ms: u64,
    members: &[String],
) {
    let mut bump = |host: &str, infinite: bool| {
        let count = record
            .config
            .fail_counts
            .entry(host.to_string())
            .or_default();
        count.count = if infinite {
            FAIL_COUNT_INFINITY
        } else {
            count.count.saturating_add(1)
        };
        count.last_failure_ms = at_ms;
    };
    match severity {
        Severity::Soft => bump(host, false),
        Severity::Hard => bump(host, true),
        Severity::Fatal => {
            bump(host, true);
            for member in members {
                bump(member, true);
            }
        }
    }
}

fn host_mut<'a>(
    state: &'a mut ClusterSnapshot,
    host: &str,
) -> Result<&'a mut crate::types::HostRecord, Rejection> {
    state
        .hosts
        .iter_mut()
        .find(|record| record.name == host)
        .ok_or_else(|| Rejection::UnknownHost(host.to_string()))
}

fn resource_mut<'a>(
    state: &'a mut ClusterSnapshot,
    resource: &str,
) -> Result<&'a mut ResourceRecord, Rejection> {
    state
        .resources
        .iter_mut()
        .find(|record| record.config.name == resource)
        .ok_or_else(|| Rejection::UnknownResource(resource.to_string()))
}

fn assignment_mut<'a>(
    state: &'a mut ClusterSnapshot,
    resource: &str,
    host: &str,
    generation: u64,
) -> Result<&'a mut Assignment, Rejection> {
    resource_mut(state, resource)?
        .assignments
        .iter_mut()
        .find(|assignment| assignment.host == host && assignment.generation == generation)
        .ok_or_else(|| Rejection::NoSuchAssignment {
            resource: resource.to_string(),
            host: host.to_string(),
            generation,
        })
}

fn expect_phase(
    resource: &str,
    assignment: &Assignment,
    phases: &[Phase],
    expected: &'static str,
) -> Result<(), Rejection> {
    if phases.contains(&assignment.phase) {
        Ok(())
    } else {
        Err(phase_error(resource, assignment, expected))
    }
}

fn phase_error(resource: &str, assignment: &Assignment, expected: &'static str) -> Rejection {
    Rejection::Phase {
        resource: resource.to_string(),
        host: assignment.host.clone(),
        phase: assignment.phase.name(),
        expected,
    }
}

fn host_state(host: String, fencing: &FencingState, expected: &'static str) -> Rejection {
    let state = match fencing {
        FencingState::None => "not suspected",
        FencingState::Unclean { .. } => "unclean",
        FencingState::Fenced { .. } => "fenced",
    };
    Rejection::HostState {
        host,
        state: state.to_string(),
        expected,
    }
}
