//! From assignment to plan: the steps each resource needs, the restarts that orderings
//! imply, and a dependency graph that orders the steps.
//!
//! Restarts, moves and migrations are single actions where nothing has to happen between
//! their stop and start halves. When orderings need something in between (a dependent
//! stopped first, a host's capacity freed first), the graph has a cycle through the
//! compound action; such actions are split into a stop and a start and the graph rebuilt.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::assign::Assigner;
use crate::cluster::{Cluster, HostId, ResourceId, UnitKind};
use crate::error::ScheduleError;
use crate::plan::{Action, ActionKind, Pending};
use crate::view::{HostState, OrderingKind, PlacementStrategy};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StepKind {
    Start(HostId),
    Stop(HostId),
    Restart(HostId),
    Move(HostId, HostId),
    Migrate(HostId, HostId),
    Promote(HostId),
    Demote(HostId),
}

impl StepKind {
    /// Output order among independent actions: free resources before taking them.
    fn class(self) -> u8 {
        match self {
            StepKind::Demote(_) => 0,
            StepKind::Stop(_) => 1,
            StepKind::Migrate(..) => 2,
            StepKind::Move(..) => 3,
            StepKind::Restart(_) => 4,
            StepKind::Start(_) => 5,
            StepKind::Promote(_) => 6,
        }
    }

    /// The host this step starts the resource on.
    fn start_host(self) -> Option<HostId> {
        match self {
            StepKind::Start(host) | StepKind::Restart(host) => Some(host),
            StepKind::Move(_, to) | StepKind::Migrate(_, to) => Some(to),
            _ => None,
        }
    }

    /// The host this step stops the resource on.
    fn stop_host(self) -> Option<HostId> {
        match self {
            StepKind::Stop(host) | StepKind::Restart(host) => Some(host),
            StepKind::Move(from, _) | StepKind::Migrate(from, _) => Some(from),
            _ => None,
        }
    }

    fn is_compound(self) -> bool {
        matches!(
            self,
            StepKind::Restart(_) | StepKind::Move(..) | StepKind::Migrate(..)
        )
    }
}

#[derive(Clone, Debug)]
struct Step {
    resource: ResourceId,
    kind: StepKind,
    reason: String,
}

/// The ordered actions and the pending list for an assignment.
pub(crate) fn build(
    cluster: &Cluster,
    assigner: &Assigner,
) -> Result<(Vec<Action>, Vec<Pending>), ScheduleError> {
    let mut steps = Vec::new();
    for (unit, info) in cluster.units.iter().enumerate() {
        if info.fixed {
            continue;
        }
        match &info.kind {
            UnitKind::Primitive(_) | UnitKind::Group(_) => {
                for &resource in info.resources() {
                    primitive_steps(cluster, assigner, unit, resource, &mut steps);
                }
            }
            UnitKind::Clone(clone) => {
                clone_steps(cluster, assigner, unit, clone.resource, &mut steps)
            }
        }
    }
    propagate_restarts(cluster, assigner, &mut steps);
    let actions = order(cluster, steps)?;
    Ok((actions, pending(cluster, assigner)))
}

fn host_name<'v>(cluster: &Cluster<'v>, host: HostId) -> &'v str {
    cluster.host_name(host)
}

fn failure_text(cluster: &Cluster, resource: ResourceId, host: HostId) -> String {
    let info = cluster.resource(resource);
    let count = info.fail_count_on(host);
    if count == 0 {
        return format!("failed on {}", host_name(cluster, host));
    }
    match info.threshold {
        Some(threshold) => format!(
            "failed on {} (fail count {count} of migration-threshold {threshold})",
            host_name(cluster, host)
        ),
        None => format!(
            "failed on {} (fail count {count})",
            host_name(cluster, host)
        ),
    }
}

fn primitive_steps(
    cluster: &Cluster,
    assigner: &Assigner,
    unit: usize,
    resource: ResourceId,
    steps: &mut Vec<Step>,
) {
    let info = cluster.resource(resource);
    let result = &assigner.results[unit];
    let target = (info.member_position < result.members_running)
        .then(|| result.hosts.first().map(|placed| placed.host))
        .flatten();
    let mut push = |kind: StepKind, reason: String| {
        steps.push(Step {
            resource,
            kind,
            reason,
        })
    };
    let stopped_reason = || {
        result
            .reason
            .clone()
            .unwrap_or_else(|| "cannot run".to_string())
    };
    match (info.active.as_slice(), target) {
        ([], None) => {}
        ([], Some(host)) => {
            let reason = match info.lost_on.first() {
                Some(&lost) => format!(
                    "recovering from {} host {}; {} has the best score ({})",
                    cluster.hosts[lost as usize].state.name(),
                    host_name(cluster, lost),
                    host_name(cluster, host),
                    result.score
                ),
                None => format!(
                    "not running; {} has the best score ({})",
                    host_name(cluster, host),
                    result.score
                ),
            };
            push(StepKind::Start(host), reason);
        }
        (active, None) => {
            for instance in active {
                push(StepKind::Stop(instance.host), stopped_reason());
            }
        }
        ([instance], Some(host)) if instance.host == host => {
            if instance.failed {
                push(
                    StepKind::Restart(host),
                    failure_text(cluster, resource, host),
                );
            }
        }
        ([instance], Some(host)) => {
            let leave = result
                .leave_reason(instance.host)
                .unwrap_or("a better host is available")
                .to_string();
            let source_alive = cluster.hosts[instance.host as usize].state == HostState::Online
                || cluster.hosts[instance.host as usize].state == HostState::Standby;
            if instance.failed {
                let reason = format!(
                    "{}; {leave}",
                    failure_text(cluster, resource, instance.host)
                );
                push(StepKind::Move(instance.host, host), reason);
            } else if info.view.allow_migrate && source_alive {
                push(StepKind::Migrate(instance.host, host), leave);
            } else {
                push(StepKind::Move(instance.host, host), leave);
            }
        }
        (active, Some(host)) => {
            let mut kept = false;
            for instance in active {
                if instance.host == host && !kept {
                    kept = true;
                    if instance.failed {
                        push(
                            StepKind::Restart(host),
                            failure_text(cluster, resource, host),
                        );
                    }
                } else {
                    push(
                        StepKind::Stop(instance.host),
                        "active on more than one host".to_string(),
                    );
                }
            }
            if !kept {
                let reason = format!(
                    "active on more than one host; {} has the best score",
                    host_name(cluster, host)
                );
                push(StepKind::Start(host), reason);
            }
        }
    }
}

fn clone_steps(
    cluster: &Cluster,
    assigner: &Assigner,
    unit: usize,
    resource: ResourceId,
    steps: &mut Vec<Step>,
) {
    let info = cluster.resource(resource);
    let result = &assigner.results[unit];
    let mut hosts: BTreeSet<HostId> = result.hosts.iter().map(|placed| placed.host).collect();
    hosts.extend(info.active.iter().map(|instance| instance.host));
    let promotion = result.promotion_reason.clone().unwrap_or_default();
    for host in hosts {
        let wanted = result
            .hosts
            .iter()
            .filter(|placed| placed.host == host)
            .count();
        let promoted_wanted = result
            .hosts
            .iter()
            .filter(|placed| placed.host == host && placed.promoted)
            .count();
        let mut active: Vec<_> = info
            .active
            .iter()
            .filter(|instance| instance.host == host)
            .copied()
            .collect();
        // Keep healthy instances first; failed ones are the first to go.
        active.sort_by_key(|instance| (instance.failed, !instance.promoted));
        let kept = wanted.min(active.len());
        let mut promoted_kept = 0;
        let leave = result
            .leave_reason(host)
            .or(result.reason.as_deref())
            .unwrap_or("not needed")
            .to_string();
        let mut push = |kind: StepKind, reason: String| {
            steps.push(Step {
                resource,
                kind,
                reason,
            })
        };
        for (position, instance) in active.iter().enumerate() {
            if position < kept {
                if instance.failed {
                    push(
                        StepKind::Restart(host),
                        failure_text(cluster, resource, host),
                    );
                } else if instance.promoted {
                    if promoted_kept < promoted_wanted {
                        promoted_kept += 1;
                    } else {
                        push(
                            StepKind::Demote(host),
                            format!("promotion moves: {promotion}"),
                        );
                    }
                }
            } else {
                if instance.promoted && !instance.failed {
                    push(StepKind::Demote(host), format!("stopping: {leave}"));
                }
                let reason = if instance.failed {
                    failure_text(cluster, resource, host)
                } else {
                    leave.clone()
                };
                push(StepKind::Stop(host), reason);
            }
        }
        for _ in kept..wanted {
            push(
                StepKind::Start(host),
                format!("clone instance placed on {}", host_name(cluster, host)),
            );
        }
        for _ in promoted_kept..promoted_wanted {
            push(StepKind::Promote(host), promotion.clone());
        }
    }
}

/// A mandatory, symmetrical ordering restarts `then` when `first` stops and starts again
/// (restart, move or migration) while `then` stays. For a clone `first`, only `then`s on the
/// hosts where an instance restarts or stops are affected.
fn propagate_restarts(cluster: &Cluster, assigner: &Assigner, steps: &mut Vec<Step>) {
    let mut by_resource: BTreeMap<ResourceId, Vec<usize>> = BTreeMap::new();
    for (index, step) in steps.iter().enumerate() {
        by_resource.entry(step.resource).or_default().push(index);
    }
    let is_clone = |resource: ResourceId| {
        cluster
            .unit(cluster.resource(resource).unit)
            .clone_info()
            .is_some()
    };
    // `None`: every host.
    let mut queue: VecDeque<(ResourceId, Option<BTreeSet<HostId>>)> = VecDeque::new();
    for (&resource, indices) in &by_resource {
        let kinds = indices.iter().map(|&index| steps[index].kind);
        if is_clone(resource) {
            let hosts: BTreeSet<HostId> = kinds
                .filter_map(|kind| match kind {
                    StepKind::Restart(host) | StepKind::Stop(host) => Some(host),
                    _ => None,
                })
                .collect();
            if !hosts.is_empty() {
                queue.push_back((resource, Some(hosts)));
            }
        } else if indices.iter().any(|&index| steps[index].kind.is_compound()) {
            queue.push_back((resource, None));
        }
    }
    while let Some((first, scope)) = queue.pop_front() {
        for &index in &cluster.orderings_by_first[first as usize] {
            let ordering = &cluster.orderings[index as usize];
            if ordering.kind != OrderingKind::Mandatory || !ordering.symmetrical {
                continue;
            }
            for &then in &ordering.then {
                let then_info = cluster.resource(then);
                let unit = cluster.unit(then_info.unit);
                if unit.fixed || by_resource.contains_key(&then) {
                    continue;
                }
                let covered =
                    |host: HostId| scope.as_ref().is_none_or(|hosts| hosts.contains(&host));
                let reason = format!(
                    "{} restarts and {} is ordered after it ({})",
                    cluster.resource(first).name,
                    then_info.name,
                    ordering.id
                );
                let restarted: BTreeSet<HostId> = then_info
                    .active
                    .iter()
                    .filter(|instance| !instance.failed && covered(instance.host))
                    .filter(|instance| assigner_keeps(cluster, assigner, then, instance.host))
                    .map(|instance| instance.host)
                    .collect();
                if restarted.is_empty() {
                    continue;
                }
                let mut indices = Vec::new();
                let then_result = &assigner.results[then_info.unit as usize];
                for &host in &restarted {
                    indices.push(steps.len());
                    steps.push(Step {
                        resource: then,
                        kind: StepKind::Restart(host),
                        reason: reason.clone(),
                    });
                    // A restarted instance comes back unpromoted.
                    if then_result
                        .hosts
                        .iter()
                        .any(|placed| placed.host == host && placed.promoted)
                    {
                        indices.push(steps.len());
                        let reason = format!("promoted again after its restart ({})", ordering.id);
                        steps.push(Step {
                            resource: then,
                            kind: StepKind::Promote(host),
                            reason,
                        });
                    }
                }
                by_resource.insert(then, indices);
                let scope = if is_clone(then) {
                    Some(restarted)
                } else {
                    None
                };
                queue.push_back((then, scope));
            }
        }
    }
}

/// Whether the assignment keeps `resource` running on `host`.
fn assigner_keeps(
    cluster: &Cluster,
    assigner: &Assigner,
    resource: ResourceId,
    host: HostId,
) -> bool {
    let info = cluster.resource(resource);
    let result = &assigner.results[info.unit as usize];
    info.member_position < result.members_running
        && result.hosts.iter().any(|placed| placed.host == host)
}

struct Graph {
    succs: Vec<Vec<u32>>,
    preds: Vec<Vec<u32>>,
    real: usize,
}

impl Graph {
    fn new(real: usize) -> Graph {
        Graph {
            succs: vec![Vec::new(); real],
            preds: vec![Vec::new(); real],
            real,
        }
    }

    fn edge(&mut self, from: u32, to: u32) {
        if from != to {
            self.succs[from as usize].push(to);
            self.preds[to as usize].push(from);
        }
    }

    /// A node every `before` precedes and that precedes every `after`, instead of
    /// `before.len() * after.len()` edges.
    fn join(&mut self, before: &[u32], after: &[u32]) {
        if before.is_empty() || after.is_empty() {
            return;
        }
        let pseudo = self.succs.len() as u32;
        self.succs.push(Vec::new());
        self.preds.push(Vec::new());
        for &node in before {
            self.edge(node, pseudo);
        }
        for &node in after {
            self.edge(pseudo, node);
        }
    }
}

fn build_graph(cluster: &Cluster, steps: &[Step]) -> Graph {
    let mut graph = Graph::new(steps.len());
    let mut by_resource: BTreeMap<ResourceId, Vec<u32>> = BTreeMap::new();
    for (index, step) in steps.iter().enumerate() {
        by_resource
            .entry(step.resource)
            .or_default()
            .push(index as u32);
    }
    for (&resource, nodes) in &by_resource {
        let is_clone = cluster
            .unit(cluster.resource(resource).unit)
            .clone_info()
            .is_some();
        for &x in nodes {
            for &y in nodes {
                let (a, b) = (steps[x as usize].kind, steps[y as usize].kind);
                let before = match (a, b) {
                    (StepKind::Demote(host), other) => {
                        other.stop_host() == Some(host) || matches!(other, StepKind::Promote(_))
                    }
                    // Single active (I1): the old copy stops before a new one starts.
                    (StepKind::Stop(from), StepKind::Start(to)) => !is_clone || from == to,
                    (first, StepKind::Promote(host)) => first.start_host() == Some(host),
                    _ => false,
                };
                if before {
                    graph.edge(x, y);
                }
            }
        }
    }
    let nodes_of = |resources: &[ResourceId], phase: fn(StepKind) -> Option<HostId>| -> Vec<u32> {
        resources
            .iter()
            .filter_map(|resource| by_resource.get(resource))
            .flatten()
            .copied()
            .filter(|&node| phase(steps[node as usize].kind).is_some())
            .collect()
    };
    for ordering in &cluster.orderings {
        if !ordering
            .first
            .iter()
            .chain(&ordering.then)
            .any(|resource| by_resource.contains_key(resource))
        {
            continue;
        }
        let first_starts = nodes_of(&ordering.first, StepKind::start_host);
        let then_starts = nodes_of(&ordering.then, StepKind::start_host);
        graph.join(&first_starts, &then_starts);
        if ordering.symmetrical {
            let then_stops = nodes_of(&ordering.then, StepKind::stop_host);
            let first_stops = nodes_of(&ordering.first, StepKind::stop_host);
            graph.join(&then_stops, &first_stops);
        }
    }
    if cluster.options.placement_strategy != PlacementStrategy::Default {
        // Capacity a host gains by a stop is used by starts there only once it is free.
        let mut per_host: BTreeMap<HostId, (Vec<u32>, Vec<u32>)> = BTreeMap::new();
        for (index, step) in steps.iter().enumerate() {
            if cluster.resource(step.resource).utilization.is_empty()
                || matches!(step.kind, StepKind::Restart(_))
            {
                continue;
            }
            if let Some(host) = step.kind.stop_host() {
                per_host.entry(host).or_default().0.push(index as u32);
            }
            if let Some(host) = step.kind.start_host() {
                per_host.entry(host).or_default().1.push(index as u32);
            }
        }
        for (leaving, arriving) in per_host.values() {
            graph.join(leaving, arriving);
        }
    }
    graph
}

fn order(cluster: &Cluster, mut steps: Vec<Step>) -> Result<Vec<Action>, ScheduleError> {
    loop {
        let graph = build_graph(cluster, &steps);
        let components = match topological(cluster, &graph, &steps) {
            Ok(actions) => return Ok(actions),
            Err(components) => components,
        };
        let mut split = BTreeSet::new();
        for component in &components {
            match split_choice(cluster, &steps, graph.real, component) {
                Some(node) => {
                    split.insert(node);
                }
                None => {
                    let names: BTreeSet<&str> = component
                        .iter()
                        .filter(|&&node| (node as usize) < graph.real)
                        .map(|&node| cluster.resource(steps[node as usize].resource).name)
                        .collect();
                    return Err(ScheduleError::OrderingLoop(
                        names.into_iter().collect::<Vec<_>>().join(", "),
                    ));
                }
            }
        }
        steps = split_steps(steps, &split);
    }
}

/// The one compound step of a cycle to split: restarts before moves before live migrations
/// (a migration is worth keeping), and the step of a resource that is only `then` inside
/// the cycle (the end of a chain), so a chain unwinds from its end and its head stays whole.
fn split_choice(
    cluster: &Cluster,
    steps: &[Step],
    real: usize,
    component: &[u32],
) -> Option<usize> {
    let in_component: BTreeSet<ResourceId> = component
        .iter()
        .filter(|&&node| (node as usize) < real)
        .map(|&node| steps[node as usize].resource)
        .collect();
    let is_first_here = |resource: ResourceId| {
        cluster.orderings_by_first[resource as usize]
            .iter()
            .any(|&index| {
                cluster.orderings[index as usize]
                    .then
                    .iter()
                    .any(|then| *then != resource && in_component.contains(then))
            })
    };
    component
        .iter()
        .map(|&node| node as usize)
        .filter(|&node| node < real && steps[node].kind.is_compound())
        .min_by_key(|&node| {
            let kind_rank = match steps[node].kind {
                StepKind::Restart(_) => 0,
                StepKind::Move(..) => 1,
                _ => 2,
            };
            let resource = steps[node].resource;
            (
                kind_rank,
                is_first_here(resource),
                std::cmp::Reverse(resource),
                node,
            )
        })
}

fn split_steps(steps: Vec<Step>, split: &BTreeSet<usize>) -> Vec<Step> {
    let mut result = Vec::with_capacity(steps.len() + split.len());
    for (index, step) in steps.into_iter().enumerate() {
        if !split.contains(&index) {
            result.push(step);
            continue;
        }
        let (from, to, reason) = match step.kind {
            StepKind::Restart(host) => (host, host, step.reason),
            StepKind::Move(from, to) => (from, to, step.reason),
            StepKind::Migrate(from, to) => (
                from,
                to,
                format!(
                    "{}; cold move: orderings rule out a live migration",
                    step.reason
                ),
            ),
            _ => unreachable!("only compound steps are split"),
        };
        result.push(Step {
            resource: step.resource,
            kind: StepKind::Stop(from),
            reason: reason.clone(),
        });
        result.push(Step {
            resource: step.resource,
            kind: StepKind::Start(to),
            reason,
        });
    }
    result
}

/// Kahn's algorithm with a deterministic choice among ready steps. On a cycle, returns the
/// cycles (strongly connected components).
fn topological(
    cluster: &Cluster,
    graph: &Graph,
    steps: &[Step],
) -> Result<Vec<Action>, Vec<Vec<u32>>> {
    let total = graph.succs.len();
    let mut waiting: Vec<u32> = graph.preds.iter().map(|preds| preds.len() as u32).collect();
    let mut ready: BTreeSet<(u8, ResourceId, u32)> = BTreeSet::new();
    let mut pseudo_ready: Vec<u32> = Vec::new();
    let mut ids: Vec<u32> = vec![u32::MAX; total];
    let mut resolved: Vec<Vec<u32>> = vec![Vec::new(); total];
    let enqueue =
        |node: u32, ready: &mut BTreeSet<(u8, ResourceId, u32)>, pseudo_ready: &mut Vec<u32>| {
            if (node as usize) < graph.real {
                let step = &steps[node as usize];
                ready.insert((step.kind.class(), step.resource, node));
            } else {
                pseudo_ready.push(node);
            }
        };
    for node in 0..total as u32 {
        if waiting[node as usize] == 0 {
            enqueue(node, &mut ready, &mut pseudo_ready);
        }
    }
    let mut actions = Vec::with_capacity(graph.real);
    let mut done = 0;
    loop {
        let node = match pseudo_ready.pop() {
            Some(node) => node,
            None => match ready.pop_first() {
                Some((_, _, node)) => node,
                None => break,
            },
        };
        done += 1;
        let mut after: Vec<u32> = Vec::new();
        for &pred in &graph.preds[node as usize] {
            if (pred as usize) < graph.real {
                after.push(ids[pred as usize]);
            } else {
                after.extend_from_slice(&resolved[pred as usize]);
            }
        }
        after.sort_unstable();
        after.dedup();
        if (node as usize) < graph.real {
            let id = actions.len() as u32;
            ids[node as usize] = id;
            actions.push(to_action(cluster, &steps[node as usize], id, after));
        } else {
            resolved[node as usize] = after;
        }
        for &next in &graph.succs[node as usize] {
            waiting[next as usize] -= 1;
            if waiting[next as usize] == 0 {
                enqueue(next, &mut ready, &mut pseudo_ready);
            }
        }
    }
    if done == total {
        return Ok(actions);
    }
    let left: Vec<bool> = waiting.iter().map(|count| *count > 0).collect();
    Err(cyclic_nodes(graph, &left))
}

/// The cycles among `left`: strongly connected components with more than one node
/// (Tarjan's algorithm, iterative).
fn cyclic_nodes(graph: &Graph, left: &[bool]) -> Vec<Vec<u32>> {
    let total = graph.succs.len();
    let mut index_of = vec![u32::MAX; total];
    let mut low = vec![0u32; total];
    let mut on_stack = vec![false; total];
    let mut stack: Vec<u32> = Vec::new();
    let mut next_index = 0u32;
    let mut cyclic = Vec::new();
    for start in 0..total as u32 {
        if !left[start as usize] || index_of[start as usize] != u32::MAX {
            continue;
        }
        let mut calls: Vec<(u32, usize)> = vec![(start, 0)];
        index_of[start as usize] = next_index;
        low[start as usize] = next_index;
        next_index += 1;
        stack.push(start);
        on_stack[start as usize] = true;
        while let Some(&(node, position)) = calls.last() {
            let successors = &graph.succs[node as usize];
            if position < successors.len() {
                if let Some(call) = calls.last_mut() {
                    call.1 += 1;
                }
                let next = successors[position];
                if !left[next as usize] {
                    continue;
                }
                if index_of[next as usize] == u32::MAX {
                    index_of[next as usize] = next_index;
                    low[next as usize] = next_index;
                    next_index += 1;
                    stack.push(next);
                    on_stack[next as usize] = true;
                    calls.push((next, 0));
                } else if on_stack[next as usize] {
                    low[node as usize] = low[node as usize].min(index_of[next as usize]);
                }
                continue;
            }
            calls.pop();
            if let Some(&(parent, _)) = calls.last() {
                low[parent as usize] = low[parent as usize].min(low[node as usize]);
            }
            if low[node as usize] == index_of[node as usize] {
                let mut component = Vec::new();
                while let Some(member) = stack.pop() {
                    on_stack[member as usize] = false;
                    component.push(member);
                    if member == node {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort_unstable();
                    cyclic.push(component);
                }
            }
        }
    }
    cyclic.sort_unstable();
    cyclic
}

fn to_action(cluster: &Cluster, step: &Step, id: u32, after: Vec<u32>) -> Action {
    let name = |host: HostId| host_name(cluster, host).to_string();
    let kind = match step.kind {
        StepKind::Start(host) => ActionKind::Start { host: name(host) },
        StepKind::Stop(host) => ActionKind::Stop { host: name(host) },
        StepKind::Restart(host) => ActionKind::Restart { host: name(host) },
        StepKind::Move(from, to) => ActionKind::Move {
            from: name(from),
            to: name(to),
        },
        StepKind::Migrate(from, to) => ActionKind::Migrate {
            from: name(from),
            to: name(to),
        },
        StepKind::Promote(host) => ActionKind::Promote { host: name(host) },
        StepKind::Demote(host) => ActionKind::Demote { host: name(host) },
    };
    Action {
        id,
        resource: cluster.resource(step.resource).name.to_string(),
        kind,
        reason: step.reason.clone(),
        after,
    }
}

fn pending(cluster: &Cluster, assigner: &Assigner) -> Vec<Pending> {
    let mut pending = Vec::new();
    for (id, info) in cluster.resources.iter().enumerate() {
        let unclean = info
            .active
            .iter()
            .find(|instance| cluster.hosts[instance.host as usize].state == HostState::Unclean);
        if let Some(instance) = unclean {
            pending.push(Pending {
                resource: info.name.to_string(),
                reason: format!(
                    "host {} is unclean: waiting for fencing",
                    host_name(cluster, instance.host)
                ),
            });
            continue;
        }
        let unit = cluster.unit(info.unit);
        if unit.fixed || !info.wants_to_run() || assigner.resource_runs(id as ResourceId) {
            continue;
        }
        let reason = assigner.results[info.unit as usize]
            .reason
            .clone()
            .unwrap_or_else(|| "cannot run".to_string());
        pending.push(Pending {
            resource: info.name.to_string(),
            reason,
        });
    }
    pending
}
