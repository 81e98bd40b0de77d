//! hafen's placement scheduler: a pure function from a cluster view and a request to a plan.
//!
//! The semantics are Pacemaker's (scores with ±INFINITY, location, colocation and ordering
//! constraints, groups, clones, promotable clones, stickiness, utilization and placement
//! strategies, migration-threshold, failure-timeout, target-role, unmanaged resources,
//! standby and maintenance hosts), with rgmanager/Proxmox failover domains, `max_restart` and
//! `max_relocate` as sugar on top. No I/O, no clock, no randomness: the same view and
//! request always give the same plan, whatever the order of the view's lists.
//!
//! - [`schedule`]: the plan (ordered actions with reasons and dependencies), the resources
//!   that cannot run, and optionally the score of every resource on every host.
//! - [`explain`]: the per-host scores of one resource and what contributes to them.
//! - [`apply_plan`]: the view after a plan fully succeeded (for simulators and tests).

mod actions;
mod assign;
mod cluster;
mod error;
mod plan;
mod score;
mod view;

pub use error::{ExplainError, ScheduleError};
pub use plan::{
    Action, ActionKind, Contribution, Explanation, HostExplanation, Pending, Plan, apply_plan,
};
pub use score::{INFINITY, Score, ScoreSum};
pub use view::{
    BooleanOperation, ClusterOptions, ClusterView, Colocation, ColocationSet, Constraints,
    Expression, FailCount, FailoverDomain, Group, Host, HostState, Instance, Location, Operation,
    Ordering, OrderingKind, OrderingSet, PlacementStrategy, Request, Resource, ResourceClone, Role,
    Rule, TargetRole,
};

use assign::Assigner;
use cluster::Cluster;

/// Plans the cluster: where every resource should run and the actions that get it there.
pub fn schedule(view: &ClusterView, request: &Request) -> Result<Plan, ScheduleError> {
    let cluster = Cluster::build(view, request.now_ms)?;
    let mut assigner = Assigner::new(&cluster, request.include_scores, None);
    assigner.run();
    let (actions, pending) = actions::build(&cluster, &assigner)?;
    Ok(Plan {
        actions,
        pending,
        scores: assigner.scores.take().unwrap_or_default(),
    })
}

/// Why `resource` (a primitive, group or clone; a group member or cloned primitive explains
/// its group or clone) scores what it does on every host, as part of a full run.
pub fn explain(
    view: &ClusterView,
    request: &Request,
    resource: &str,
) -> Result<Explanation, ExplainError> {
    let cluster = Cluster::build(view, request.now_ms)?;
    let unit = *cluster
        .unit_ids
        .get(resource)
        .ok_or_else(|| ExplainError::UnknownResource(resource.to_string()))?;
    let mut assigner = Assigner::new(&cluster, false, Some(unit));
    assigner.run();
    let result = &assigner.results[unit as usize];
    let mut placed_on: Vec<String> = result
        .hosts
        .iter()
        .map(|placed| {
            let name = cluster.host_name(placed.host);
            if placed.promoted {
                format!("{name} (promoted)")
            } else {
                name.to_string()
            }
        })
        .collect();
    placed_on.dedup();
    let info = cluster.unit(unit);
    let summary = if info.fixed {
        "left as it is (unmanaged, or on a maintenance or unclean host)".to_string()
    } else if placed_on.is_empty() {
        format!(
            "does not run: {}",
            result
                .reason
                .clone()
                .unwrap_or_else(|| "cannot run".to_string())
        )
    } else {
        match &result.reason {
            Some(reason) => format!("runs on {} (partly: {reason})", placed_on.join(", ")),
            None => format!("runs on {}", placed_on.join(", ")),
        }
    };
    Ok(Explanation {
        resource: resource.to_string(),
        unit: info.name.to_string(),
        placed_on,
        summary,
        hosts: assigner.trace,
    })
}
