//! The scheduler's output: an ordered plan of actions with reasons, the score table, and
//! what applying a plan does to a view.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::score::Score;
use crate::view::{ClusterView, Instance};

/// What to do, in an order that respects every ordering constraint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Executable in list order; [`Action::after`] gives the real dependencies, so a runtime
    /// may run independent actions in parallel.
    pub actions: Vec<Action>,
    /// Resources that should run but will not (or cannot be touched yet), with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<Pending>,
    /// Allocation score of every resource (group, clone) on every host, when requested.
    /// Promotable clones add a row `NAME#promotion` with the promotion scores.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scores: BTreeMap<String, BTreeMap<String, Score>>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    /// Position in [`Plan::actions`].
    pub id: u32,
    /// The primitive resource acted on (for a clone: the cloned primitive).
    pub resource: String,
    #[serde(flatten)]
    pub kind: ActionKind,
    pub reason: String,
    /// Actions that must have finished before this one starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ActionKind {
    Start {
        host: String,
    },
    Stop {
        host: String,
    },
    /// Stop then start on the same host (recovery of a failure, or a restart of something
    /// this resource is ordered after).
    Restart {
        host: String,
    },
    /// Stop on `from`, then start on `to` (a cold move).
    Move {
        from: String,
        to: String,
    },
    /// Live migration: the resource keeps running while it moves.
    Migrate {
        from: String,
        to: String,
    },
    Promote {
        host: String,
    },
    Demote {
        host: String,
    },
}

impl ActionKind {
    pub fn verb(&self) -> &'static str {
        match self {
            ActionKind::Start { .. } => "start",
            ActionKind::Stop { .. } => "stop",
            ActionKind::Restart { .. } => "restart",
            ActionKind::Move { .. } => "move",
            ActionKind::Migrate { .. } => "migrate",
            ActionKind::Promote { .. } => "promote",
            ActionKind::Demote { .. } => "demote",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "#{} {} {} ",
            self.id,
            self.kind.verb(),
            self.resource
        )?;
        match &self.kind {
            ActionKind::Start { host }
            | ActionKind::Stop { host }
            | ActionKind::Restart { host }
            | ActionKind::Promote { host }
            | ActionKind::Demote { host } => write!(formatter, "on {host}")?,
            ActionKind::Move { from, to } | ActionKind::Migrate { from, to } => {
                write!(formatter, "{from} -> {to}")?;
            }
        }
        if !self.after.is_empty() {
            let after: Vec<String> = self.after.iter().map(|id| format!("#{id}")).collect();
            write!(formatter, " after {}", after.join(","))?;
        }
        write!(formatter, ": {}", self.reason)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub resource: String,
    pub reason: String,
}

impl fmt::Display for Pending {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}: {}", self.resource, self.reason)
    }
}

/// The view after every action of `plan` succeeded: what the controller would observe.
///
/// Instances on fenced or offline hosts are dropped first (they are known to be stopped).
/// Unknown resources in actions are ignored; the plan came from this view.
pub fn apply_plan(view: &ClusterView, plan: &Plan) -> ClusterView {
    let mut after = view.clone();
    let down_hosts: Vec<&str> = view
        .hosts
        .iter()
        .filter(|host| !host.state.may_run_resources())
        .map(|host| host.name.as_str())
        .collect();
    let mut by_name: BTreeMap<String, usize> = BTreeMap::new();
    for (position, resource) in after.resources.iter_mut().enumerate() {
        resource
            .instances
            .retain(|instance| !down_hosts.contains(&instance.host.as_str()));
        by_name.insert(resource.name.clone(), position);
    }
    for action in &plan.actions {
        let Some(&position) = by_name.get(&action.resource) else {
            continue;
        };
        apply_action(&mut after.resources[position].instances, &action.kind);
    }
    for resource in &mut after.resources {
        resource.instances.sort();
    }
    after
}

fn apply_action(instances: &mut Vec<Instance>, kind: &ActionKind) {
    let find = |instances: &mut Vec<Instance>, host: &str| -> Option<usize> {
        instances.iter().position(|instance| instance.host == host)
    };
    match kind {
        ActionKind::Start { host } => instances.push(Instance::on(host.clone())),
        ActionKind::Stop { host } => {
            if let Some(position) = find(instances, host) {
                instances.remove(position);
            }
        }
        ActionKind::Restart { host } => {
            if let Some(position) = find(instances, host) {
                instances[position] = Instance::on(host.clone());
            }
        }
        ActionKind::Move { from, to } | ActionKind::Migrate { from, to } => {
            if let Some(position) = find(instances, from) {
                instances[position] = Instance::on(to.clone());
            }
        }
        ActionKind::Promote { host } => {
            if let Some(position) = find(instances, host) {
                instances[position].promoted = true;
            }
        }
        ActionKind::Demote { host } => {
            if let Some(position) = find(instances, host) {
                instances[position].promoted = false;
            }
        }
    }
}

/// Why a resource scores what it does on each host (`hafen explain RESOURCE`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// The resource asked about.
    pub resource: String,
    /// The scheduling unit it belongs to (itself, its group or its clone).
    pub unit: String,
    /// Hosts the unit is placed on by this run (empty: it does not run).
    pub placed_on: Vec<String>,
    /// One line on the outcome.
    pub summary: String,
    /// Every host, by name.
    pub hosts: Vec<HostExplanation>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostExplanation {
    pub host: String,
    pub score: Score,
    /// What adds up to `score`.
    pub contributions: Vec<Contribution>,
    /// Facts that exclude the host regardless of score (state, capacity, restrictions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    pub score: Score,
    /// The constraint or rule, for example `location loc-db-1` or `resource-stickiness`.
    pub source: String,
}

impl fmt::Display for Explanation {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            formatter,
            "{} (unit {}): {}",
            self.resource, self.unit, self.summary
        )?;
        for host in &self.hosts {
            writeln!(
                formatter,
                "  {:<24} {:>10}",
                host.host,
                host.score.to_string()
            )?;
            for contribution in &host.contributions {
                writeln!(
                    formatter,
                    "  {:<24} {:>10}  {}",
                    "",
                    contribution.score.to_string(),
                    contribution.source
                )?;
            }
            for note in &host.notes {
                writeln!(formatter, "  {:<24} {:>10}  {}", "", "", note)?;
            }
        }
        Ok(())
    }
}
