//! Assignment: every scheduling unit gets its host(s), in priority order, its primaries and
//! mandatory `first`s before it, the way Pacemaker allocates resources.
//!
//! Scores are sparse: a unit's contributions name only the hosts they touch (plus uniform
//! contributions for every host). Hosts nothing touched all share one score, so the best of
//! them is the first suitable host of an index ordered by the placement strategy's
//! tie-breaks. That keeps one unit's assignment near O(contributions + log hosts) instead
//! of O(hosts).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use crate::cluster::{ALL_HOSTS, Cluster, HostId, ResourceId, UnitId, UnitKind};
use crate::plan::{Contribution as ShownContribution, HostExplanation};
use crate::score::{Score, ScoreSum};
use crate::view::{HostState, PlacementStrategy, Role, TargetRole};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Placed {
    pub host: HostId,
    pub promoted: bool,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct UnitResult {
    /// Primitives and groups: at most one entry. Clones: one per instance (hosts repeat when
    /// `node_max` > 1).
    pub hosts: Vec<Placed>,
    /// Groups: how many members (a prefix) run; primitives and clones: 1 when placed.
    pub members_running: u32,
    /// Score of the chosen host (primitives and groups).
    pub score: Score,
    /// Why the unit, or the members after `members_running`, do not run.
    pub reason: Option<String>,
    /// Why the unit leaves a host it is active on.
    pub leave_reasons: Vec<(HostId, String)>,
    /// Promotable clones: why the promoted instance is where it is.
    pub promotion_reason: Option<String>,
}

impl UnitResult {
    pub fn leave_reason(&self, host: HostId) -> Option<&str> {
        self.leave_reasons
            .iter()
            .find(|(id, _)| *id == host)
            .map(|(_, reason)| reason.as_str())
    }
}

#[derive(Clone, Debug)]
enum Source {
    Location(u32),
    Stickiness(ResourceId),
    FailCount(ResourceId),
    Domain(ResourceId),
    Colocation(u32),
    PrimaryNotRunning(u32),
    Influence(u32),
    OptIn,
    PromotionScore(ResourceId),
    PromotedStickiness(ResourceId),
    Blocked(String),
}

#[derive(Clone, Debug)]
struct Contribution {
    host: HostId,
    score: Score,
    source: Source,
}

struct Restriction {
    source: Source,
    hosts: Vec<HostId>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Waiting,
    Assigning,
    Done,
}

struct HostLoad {
    count: u32,
    used: Vec<u64>,
}

/// Per-clone state while its instances are placed.
struct CloneSlots {
    placed: Vec<u32>,
    active_left: Vec<u32>,
    node_max: u32,
    stickiness: Score,
}

type RankKey = (Reverse<Score>, u8, i64, u32, u8, HostId);

pub(crate) struct Assigner<'c, 'v> {
    cluster: &'c Cluster<'v>,
    strategy: PlacementStrategy,
    /// What is assigned so far: capacity checks use this.
    loads: Vec<HostLoad>,
    /// What is assigned plus what still runs and has not been assigned yet: tie-breaks use
    /// this, so a resource placed early does not pile onto a host whose residents will stay.
    expected: Vec<HostLoad>,
    index: BTreeSet<(i64, u32, HostId)>,
    pub results: Vec<UnitResult>,
    progress: Vec<Stage>,
    sums: Vec<ScoreSum>,
    is_touched: Vec<bool>,
    touched: Vec<HostId>,
    uniform: ScoreSum,
    contributions: Vec<Contribution>,
    restrictions: Vec<Restriction>,
    pub scores: Option<BTreeMap<String, BTreeMap<String, Score>>>,
    trace_unit: Option<UnitId>,
    pub trace: Vec<HostExplanation>,
}

impl<'c, 'v> Assigner<'c, 'v> {
    pub fn new(cluster: &'c Cluster<'v>, include_scores: bool, trace_unit: Option<UnitId>) -> Self {
        let host_count = cluster.hosts.len();
        let keys = cluster.utilization_keys.len();
        let mut assigner = Assigner {
            cluster,
            strategy: cluster.options.placement_strategy,
            loads: (0..host_count)
                .map(|_| HostLoad {
                    count: 0,
                    used: vec![0; keys],
                })
                .collect(),
            expected: (0..host_count)
                .map(|_| HostLoad {
                    count: 0,
                    used: vec![0; keys],
                })
                .collect(),
            index: BTreeSet::new(),
            results: vec![UnitResult::default(); cluster.units.len()],
            progress: vec![Stage::Waiting; cluster.units.len()],
            sums: vec![ScoreSum::default(); host_count],
            is_touched: vec![false; host_count],
            touched: Vec::new(),
            uniform: ScoreSum::default(),
            contributions: Vec::new(),
            restrictions: Vec::new(),
            scores: include_scores.then(BTreeMap::new),
            trace_unit,
            trace: Vec::new(),
        };
        for host in 0..host_count as HostId {
            if cluster.hosts[host as usize].eligible() {
                assigner.index.insert(assigner.index_key(host));
            }
        }
        assigner
    }

    pub fn run(&mut self) {
        let cluster = self.cluster;
        self.keep_fixed();
        for unit in cluster.units.iter().filter(|unit| !unit.fixed) {
            for &resource in unit.resources() {
                self.reserve(resource, true);
            }
        }
        for &unit in &cluster.unit_order {
            self.assign_tree(unit);
        }
    }

    /// Fixed units and fixed clone instances keep what they have, and occupy capacity before
    /// anything is placed.
    fn keep_fixed(&mut self) {
        let cluster = self.cluster;
        for (unit_id, unit) in cluster.units.iter().enumerate() {
            let fixed_instances: Vec<(ResourceId, Placed)> = unit
                .resources()
                .iter()
                .flat_map(|&resource| {
                    cluster
                        .resource(resource)
                        .active
                        .iter()
                        .filter_map(move |instance| {
                            let host_state = cluster.hosts[instance.host as usize].state;
                            let pinned =
                                matches!(host_state, HostState::Maintenance | HostState::Unclean);
                            (unit.fixed || pinned).then_some((
                                resource,
                                Placed {
                                    host: instance.host,
                                    promoted: instance.promoted,
                                },
                            ))
                        })
                })
                .collect();
            for (resource, placed) in &fixed_instances {
                self.charge(placed.host, *resource);
                self.expect(placed.host, *resource, true);
            }
            if unit.fixed {
                let result = &mut self.results[unit_id];
                let mut hosts: Vec<Placed> =
                    fixed_instances.iter().map(|(_, placed)| *placed).collect();
                if unit.clone_info().is_none() {
                    hosts.sort_by_key(|placed| placed.host);
                    hosts.dedup_by_key(|placed| placed.host);
                }
                result.members_running = if hosts.is_empty() {
                    0
                } else {
                    unit.resources().len() as u32
                };
                result.hosts = hosts;
                self.progress[unit_id] = Stage::Done;
                if self.scores.is_some() || self.trace_unit == Some(unit_id as UnitId) {
                    let members = unit.resources();
                    self.collect(unit_id as UnitId, members, false);
                    self.record(unit_id as UnitId, &[]);
                }
            }
        }
    }

    /// Assigns `root` after everything it depends on, without recursion (dependency chains
    /// can be as long as the resource list).
    fn assign_tree(&mut self, root: UnitId) {
        if self.progress[root as usize] != Stage::Waiting {
            return;
        }
        self.progress[root as usize] = Stage::Assigning;
        let mut stack = vec![root];
        while let Some(&unit) = stack.last() {
            if let Some(next) = self.next_prerequisite(unit) {
                self.progress[next as usize] = Stage::Assigning;
                stack.push(next);
                continue;
            }
            stack.pop();
            self.assign(unit);
            self.progress[unit as usize] = Stage::Done;
        }
    }

    fn next_prerequisite(&self, unit: UnitId) -> Option<UnitId> {
        let cluster = self.cluster;
        let info = cluster.unit(unit);
        let primaries = info
            .as_dependent
            .iter()
            .map(|&index| cluster.colocations[index as usize].primary);
        let firsts = info.resources().iter().flat_map(|&resource| {
            cluster.orderings_by_then[resource as usize]
                .iter()
                .filter_map(|&index| {
                    let ordering = &cluster.orderings[index as usize];
                    (!ordering.internal && ordering.kind == crate::view::OrderingKind::Mandatory)
                        .then_some(ordering.first_unit)
                })
        });
        primaries
            .chain(firsts)
            .find(|&other| other != unit && self.progress[other as usize] == Stage::Waiting)
    }

    fn assign(&mut self, unit: UnitId) {
        let cluster = self.cluster;
        match &cluster.unit(unit).kind {
            UnitKind::Primitive(_) | UnitKind::Group(_) => self.assign_members(unit),
            UnitKind::Clone(_) => self.assign_clone(unit),
        }
    }

    /// Why `resource` cannot run at all, whatever the host.
    fn blocker(&self, resource: ResourceId) -> Option<String> {
        let cluster = self.cluster;
        let info = cluster.resource(resource);
        if info.view.target_role == TargetRole::Stopped {
            return Some("target-role is Stopped".to_string());
        }
        if let Some(max_relocate) = info.view.max_relocate
            && info.banned.len() as u64 > u64::from(max_relocate)
        {
            return Some(format!(
                "max_relocate {max_relocate} exceeded: failed on {} hosts",
                info.banned.len()
            ));
        }
        for &index in &cluster.orderings_by_then[resource as usize] {
            let ordering = &cluster.orderings[index as usize];
            if ordering.internal || ordering.kind != crate::view::OrderingKind::Mandatory {
                continue;
            }
            if !self.first_runs(index) {
                let first: Vec<&str> = ordering
                    .first
                    .iter()
                    .map(|&id| cluster.resource(id).name)
                    .collect();
                return Some(format!(
                    "ordering {}: {} does not run",
                    ordering.id,
                    first.join(", ")
                ));
            }
        }
        None
    }

    /// Blocked whatever happens to other resources: target-role or max_relocate.
    fn never_runs(&self, resource: ResourceId) -> bool {
        let info = self.cluster.resource(resource);
        info.view.target_role == TargetRole::Stopped
            || info
                .view
                .max_relocate
                .is_some_and(|max_relocate| info.banned.len() as u64 > u64::from(max_relocate))
    }

    fn first_runs(&self, ordering: u32) -> bool {
        let cluster = self.cluster;
        let ordering = &cluster.orderings[ordering as usize];
        if self.progress[ordering.first_unit as usize] == Stage::Assigning {
            // An ordering loop: assume the first runs rather than stop both.
            return true;
        }
        ordering
            .first
            .iter()
            .all(|&resource| self.resource_runs(resource) && !self.not_yet_running(resource))
    }

    /// Active only where a start or stop of it is under way or where the host is unclean.
    fn awaits_outcome(&self, resource: ResourceId) -> bool {
        let cluster = self.cluster;
        let active = &cluster.resource(resource).active;
        !active.is_empty()
            && active.iter().all(|instance| {
                instance.pending
                    || cluster.hosts[instance.host as usize].state == HostState::Unclean
            })
    }

    /// Placed only where a start or stop of it is under way, or where the host is unclean:
    /// what is ordered after it waits. Pacemaker's semantics: an operation in flight has not
    /// ended yet, and what sits on an unclean host is not known to run (its stop is implied by
    /// the fence to come), however long fencing takes.
    fn not_yet_running(&self, resource: ResourceId) -> bool {
        let cluster = self.cluster;
        let info = cluster.resource(resource);
        let result = &self.results[info.unit as usize];
        !result.hosts.is_empty()
            && result.hosts.iter().all(|placed| {
                cluster.hosts[placed.host as usize].state == HostState::Unclean
                    || info
                        .active
                        .iter()
                        .any(|instance| instance.host == placed.host && instance.pending)
            })
    }

    pub fn resource_runs(&self, resource: ResourceId) -> bool {
        let info = self.cluster.resource(resource);
        if self.cluster.unit(info.unit).fixed {
            return !info.active.is_empty();
        }
        let result = &self.results[info.unit as usize];
        !result.hosts.is_empty() && info.member_position < result.members_running
    }

    fn assign_members(&mut self, unit: UnitId) {
        let cluster = self.cluster;
        let members = cluster.unit(unit).resources();
        for &member in members {
            self.reserve(member, false);
        }
        let mut wanted = 0;
        let mut reason = None;
        for (position, &member) in members.iter().enumerate() {
            if let Some(blocked) = self.blocker(member) {
                reason = Some(blocked);
                break;
            }
            wanted += 1;
            // The members after one whose start or stop is under way (or whose host is
            // unclean) wait until it runs, as what a mandatory ordering puts after it does.
            if position + 1 < members.len() && self.awaits_outcome(member) {
                reason = Some(format!(
                    "group: {} does not run yet",
                    cluster.resource(member).name
                ));
                break;
            }
        }
        let mut count = wanted;
        while count > 0 {
            let chosen = self.collect_and_choose(unit, &members[..count]);
            if let Some((host, score)) = chosen {
                self.place_members(unit, &members[..count], host, score);
                self.results[unit as usize].reason = reason;
                return;
            }
            let need = self.need(&members[..count]);
            reason = Some(self.why_nowhere(&need));
            count -= 1;
        }
        if self.scores.is_some() || self.trace_unit == Some(unit) {
            self.collect(unit, &members[..1], false);
            self.record(unit, &[]);
        }
        self.results[unit as usize].reason = reason;
    }

    /// Collects the unit's contributions and chooses a host; when the preferences merged
    /// from dependents leave no host at all, they are dropped (as Pacemaker does).
    fn collect_and_choose(
        &mut self,
        unit: UnitId,
        members: &[ResourceId],
    ) -> Option<(HostId, Score)> {
        let cluster = self.cluster;
        let need = self.need(members);
        let mut preferred: Vec<HostId> = members
            .iter()
            .flat_map(|&member| {
                cluster
                    .resource(member)
                    .active
                    .iter()
                    .map(|instance| instance.host)
            })
            .collect();
        preferred.sort_unstable();
        preferred.dedup();
        let merged = self.collect(unit, members, true);
        let sticky = members
            .iter()
            .any(|&member| cluster.resource(member).stickiness > Score::ZERO);
        let chosen = self.choose(&need, None, &preferred, sticky);
        if chosen.is_some() || !merged {
            return chosen;
        }
        self.collect(unit, members, false);
        self.choose(&need, None, &preferred, sticky)
    }

    fn place_members(&mut self, unit: UnitId, members: &[ResourceId], host: HostId, score: Score) {
        let cluster = self.cluster;
        let need = self.need(members);
        let mut leave_reasons = Vec::new();
        for &member in members {
            for instance in &cluster.resource(member).active {
                if instance.host != host
                    && !leave_reasons.iter().any(|(id, _)| *id == instance.host)
                {
                    let reason = self.verdict(instance.host, Some((host, score)), &need, "");
                    leave_reasons.push((instance.host, reason));
                }
            }
        }
        self.record(unit, &need);
        for &member in members {
            self.charge(host, member);
            self.expect(host, member, true);
        }
        let result = &mut self.results[unit as usize];
        result.hosts = vec![Placed {
            host,
            promoted: false,
        }];
        result.members_running = members.len() as u32;
        result.score = score;
        result.leave_reasons = leave_reasons;
    }

    fn assign_clone(&mut self, unit: UnitId) {
        let cluster = self.cluster;
        let info = cluster.unit(unit);
        let Some(clone) = info.clone_info() else {
            return;
        };
        let resource = clone.resource;
        let members = std::slice::from_ref(&resource);
        let resource_info = cluster.resource(resource);
        let host_count = cluster.hosts.len();
        let mut slots = CloneSlots {
            placed: vec![0; host_count],
            active_left: vec![0; host_count],
            node_max: clone.node_max,
            stickiness: resource_info.stickiness,
        };
        self.reserve(resource, false);
        let mut hosts = Vec::new();
        for instance in &resource_info.active {
            let state = cluster.hosts[instance.host as usize].state;
            if matches!(state, HostState::Maintenance | HostState::Unclean) {
                slots.placed[instance.host as usize] += 1;
                hosts.push(Placed {
                    host: instance.host,
                    promoted: instance.promoted,
                });
            } else {
                slots.active_left[instance.host as usize] += 1;
            }
        }
        if let Some(blocked) = self.blocker(resource) {
            self.results[unit as usize].reason = Some(blocked);
            self.results[unit as usize].hosts = hosts;
            if self.scores.is_some() || self.trace_unit == Some(unit) {
                self.collect(unit, members, false);
                self.record(unit, &[]);
            }
            return;
        }
        let need = self.need(members);
        let mut nowhere = None;
        let mut merged = self.collect(unit, members, true);
        for instance in &resource_info.active {
            self.touch(instance.host);
        }
        for placed in &hosts {
            self.touch(placed.host);
        }
        while (hosts.len() as u64) < u64::from(clone.max) {
            let mut chosen = self.choose(&need, Some(&slots), &[], slots.stickiness > Score::ZERO);
            if chosen.is_none() && merged && hosts.is_empty() {
                // The dependents' preferences leave no host: place without them.
                merged = false;
                self.collect(unit, members, false);
                for instance in &resource_info.active {
                    self.touch(instance.host);
                }
                chosen = self.choose(&need, Some(&slots), &[], slots.stickiness > Score::ZERO);
            }
            match chosen {
                Some((host, _)) => {
                    self.touch(host);
                    slots.placed[host as usize] += 1;
                    if slots.active_left[host as usize] > 0 {
                        slots.active_left[host as usize] -= 1;
                    }
                    self.charge(host, resource);
                    self.expect(host, resource, true);
                    hosts.push(Placed {
                        host,
                        promoted: false,
                    });
                }
                None => {
                    if hosts.is_empty() {
                        nowhere = Some(self.why_nowhere(&need));
                    }
                    break;
                }
            }
        }
        // Scratch still holds the unit's scores: explain why surplus instances stop.
        let mut leave_reasons = Vec::new();
        for instance in &resource_info.active {
            let host = instance.host;
            if slots.active_left[host as usize] > 0
                && !leave_reasons.iter().any(|(id, _)| *id == host)
            {
                let fallback = format!("clone-max {} is reached on better hosts", clone.max);
                leave_reasons.push((host, self.verdict(host, None, &need, &fallback)));
            }
        }
        self.record(unit, &need);
        hosts.sort_by_key(|placed| (placed.host, Reverse(placed.promoted)));
        let result = &mut self.results[unit as usize];
        result.members_running = u32::from(!hosts.is_empty());
        result.hosts = hosts;
        result.reason = nowhere;
        result.leave_reasons = leave_reasons;
        if clone.promotable {
            self.promote(unit);
        }
    }

    /// Chooses the promoted instances of a promotable clone among its placed instances.
    fn promote(&mut self, unit: UnitId) {
        let cluster = self.cluster;
        let info = cluster.unit(unit);
        let Some(clone) = info.clone_info() else {
            return;
        };
        let resource = cluster.resource(clone.resource);
        self.reset_scratch();
        let mut candidates: Vec<HostId> = self.results[unit as usize]
            .hosts
            .iter()
            .map(|placed| placed.host)
            .collect();
        candidates.dedup();
        for &host in &candidates {
            let score = resource
                .promotion_scores
                .iter()
                .find(|(id, _)| *id == host)
                .map_or(Score::ZERO, |(_, score)| *score);
            self.push(host, score, Source::PromotionScore(clone.resource));
            let promoted_here = resource
                .active
                .iter()
                .any(|instance| instance.host == host && instance.promoted && !instance.failed);
            if promoted_here {
                self.push(
                    host,
                    resource.stickiness,
                    Source::PromotedStickiness(clone.resource),
                );
            }
        }
        for &location in &info.promotion_locations {
            for &(host, score) in &cluster.locations[location as usize].matches {
                self.push(host, score, Source::Location(location));
            }
        }
        for &index in &info.as_dependent {
            let colocation = &cluster.colocations[index as usize];
            if colocation.dependent_role != Role::Promoted {
                continue;
            }
            self.push_colocation(index);
        }
        if resource.view.target_role == TargetRole::Unpromoted {
            self.push(
                ALL_HOSTS,
                Score::MINUS_INFINITY,
                Source::Blocked("target-role is Unpromoted".to_string()),
            );
        }
        let allowed = self.allowed();
        let mut ranked: Vec<(Reverse<Score>, HostId)> = candidates
            .iter()
            .filter(|host| {
                allowed
                    .as_ref()
                    .is_none_or(|allowed| allowed.binary_search(host).is_ok())
            })
            .map(|&host| (Reverse(self.host_score(host)), host))
            .filter(|(Reverse(score), _)| *score >= Score::ZERO)
            .collect();
        ranked.sort();
        let kept_promoted = self.results[unit as usize]
            .hosts
            .iter()
            .filter(|placed| placed.promoted)
            .count();
        ranked.truncate((clone.promoted_max as usize).saturating_sub(kept_promoted));
        let result = &mut self.results[unit as usize];
        let mut best = Vec::new();
        for &(Reverse(score), host) in &ranked {
            if let Some(placed) = result.hosts.iter_mut().find(|placed| placed.host == host) {
                placed.promoted = true;
            }
            best.push(format!("{} ({score})", cluster.host_name(host)));
        }
        if !best.is_empty() {
            result.promotion_reason = Some(format!("best promotion score: {}", best.join(", ")));
        }
        if ranked.is_empty() {
            result.promotion_reason =
                Some(if resource.view.target_role == TargetRole::Unpromoted {
                    "target-role is Unpromoted".to_string()
                } else {
                    "no instance can be promoted".to_string()
                });
        }
        if self.scores.is_some() {
            let row: BTreeMap<String, Score> = candidates
                .iter()
                .map(|&host| {
                    (
                        cluster.host_name(host).to_string(),
                        self.shown_score(&allowed, host),
                    )
                })
                .collect();
            if let Some(scores) = self.scores.as_mut() {
                scores.insert(format!("{}#promotion", info.name), row);
            }
        }
    }

    fn reset_scratch(&mut self) {
        for &host in &self.touched {
            self.sums[host as usize] = ScoreSum::default();
            self.is_touched[host as usize] = false;
        }
        self.touched.clear();
        self.uniform = ScoreSum::default();
        self.contributions.clear();
        self.restrictions.clear();
    }

    fn touch(&mut self, host: HostId) {
        if !self.is_touched[host as usize] {
            self.is_touched[host as usize] = true;
            self.touched.push(host);
        }
    }

    fn push(&mut self, host: HostId, score: Score, source: Source) {
        if host == ALL_HOSTS {
            self.uniform.add(score);
        } else {
            self.touch(host);
            self.sums[host as usize].add(score);
        }
        self.contributions.push(Contribution {
            host,
            score,
            source,
        });
    }

    fn restrict(&mut self, hosts: Vec<HostId>, source: Source) {
        self.restrictions.push(Restriction { source, hosts });
    }

    /// Gathers the unit's contributions into the scratch sums. Returns whether preferences of
    /// dependents were merged in.
    fn collect(&mut self, unit: UnitId, members: &[ResourceId], merge_dependents: bool) -> bool {
        let cluster = self.cluster;
        let info = cluster.unit(unit);
        let is_clone = info.clone_info().is_some();
        self.reset_scratch();
        for &member in members {
            if let Some(blocked) = self.blocker(member) {
                self.push(ALL_HOSTS, Score::MINUS_INFINITY, Source::Blocked(blocked));
            }
        }
        let mut enabled = Vec::new();
        for &location in &info.locations {
            for &(host, score) in &cluster.locations[location as usize].matches {
                self.push(host, score, Source::Location(location));
                enabled.push(host);
            }
        }
        if !cluster.options.symmetric {
            enabled.sort_unstable();
            enabled.dedup();
            self.restrict(enabled, Source::OptIn);
        }
        for &member in members {
            self.push_resource_preferences(member, !is_clone, None);
        }
        for &index in &info.as_dependent {
            let colocation = &cluster.colocations[index as usize];
            if is_clone && colocation.dependent_role == Role::Promoted {
                continue;
            }
            self.push_colocation(index);
        }
        if !merge_dependents {
            return false;
        }
        let mut merged = false;
        for &index in &info.as_primary {
            let colocation = &cluster.colocations[index as usize];
            let dependent = cluster.unit(colocation.dependent);
            let eligible = colocation.influence
                && colocation.score != Score::ZERO
                && colocation.dependent_role == Role::Started
                && colocation.primary_role == Role::Started
                && dependent.clone_info().is_none()
                && !dependent.fixed
                && self.progress[colocation.dependent as usize] != Stage::Done
                // A dependent that will not run has no say.
                && dependent.resources().first().is_some_and(|&first| !self.never_runs(first));
            if !eligible {
                continue;
            }
            merged = true;
            for &location in &dependent.locations {
                for &(host, score) in &cluster.locations[location as usize].matches {
                    self.push_merged(host, score, index);
                }
            }
            // Only the dependent's static preferences pass to the primary. Its stickiness
            // (and nofailback) depend on where it runs now, which this very plan may change;
            // passing them on would let the primary follow a host the dependent is about to
            // leave, and come back on the next run. Pacemaker passes them; hafen wants a
            // plan that is stable once applied.
            for &member in dependent.resources() {
                self.push_resource_preferences(member, false, Some(index));
            }
        }
        merged
    }

    /// Stickiness, fail-count bans and failover domain of one resource; `via` marks them
    /// as a dependent's preferences merged through that colocation.
    fn push_resource_preferences(
        &mut self,
        resource: ResourceId,
        stickiness: bool,
        via: Option<u32>,
    ) {
        let cluster = self.cluster;
        let info = cluster.resource(resource);
        let add = |assigner: &mut Self, host: HostId, score: Score, source: Source| match via {
            Some(colocation) => assigner.push_merged(host, score, colocation),
            None => assigner.push(host, score, source),
        };
        for instance in &info.active {
            if stickiness && info.stickiness != Score::ZERO {
                add(
                    self,
                    instance.host,
                    info.stickiness,
                    Source::Stickiness(resource),
                );
            } else if via.is_none() {
                self.touch(instance.host);
            }
        }
        for &host in &info.banned {
            add(
                self,
                host,
                Score::MINUS_INFINITY,
                Source::FailCount(resource),
            );
        }
        if let Some(domain) = info.domain {
            let domain_info = &cluster.domains[domain as usize];
            // nofailback: wherever it already runs on a member counts as the best member.
            for &(host, score) in &domain_info.members {
                let holds = domain_info.nofailback
                    && via.is_none()
                    && info.active.iter().any(|instance| instance.host == host);
                let score = if holds { domain_info.best_score } else { score };
                add(self, host, score, Source::Domain(resource));
            }
            if domain_info.restricted && via.is_none() {
                let hosts = domain_info.members.iter().map(|(host, _)| *host).collect();
                self.restrict(hosts, Source::Domain(resource));
            }
        }
    }

    fn push_merged(&mut self, host: HostId, score: Score, colocation: u32) {
        let factor = self.cluster.colocations[colocation as usize].score;
        let scaled = if score.is_infinity() || score.is_minus_infinity() {
            // Only a mandatory colocation carries the dependent's infinities to the primary.
            if !factor.is_infinity() {
                return;
            }
            score
        } else {
            score.scaled(factor)
        };
        if scaled != Score::ZERO {
            self.push(host, scaled, Source::Influence(colocation));
        }
    }

    fn push_colocation(&mut self, index: u32) {
        let cluster = self.cluster;
        let colocation = &cluster.colocations[index as usize];
        if self.progress[colocation.primary as usize] == Stage::Assigning {
            // A colocation loop: the primary is placed after this unit, so this side of the
            // loop cannot follow it.
            return;
        }
        let hosts = self.primary_hosts(colocation.primary, colocation.primary_role);
        if colocation.score.is_infinity() {
            if hosts.is_empty() {
                self.push(
                    ALL_HOSTS,
                    Score::MINUS_INFINITY,
                    Source::PrimaryNotRunning(index),
                );
            } else {
                self.restrict(hosts, Source::Colocation(index));
            }
        } else {
            for host in hosts {
                self.push(host, colocation.score, Source::Colocation(index));
            }
        }
    }

    /// Hosts where the unit runs in `role`, sorted.
    pub fn primary_hosts(&self, unit: UnitId, role: Role) -> Vec<HostId> {
        let mut hosts: Vec<HostId> = self.results[unit as usize]
            .hosts
            .iter()
            .filter(|placed| match role {
                Role::Started => true,
                Role::Promoted => placed.promoted,
                Role::Unpromoted => !placed.promoted,
            })
            .map(|placed| placed.host)
            .collect();
        hosts.sort_unstable();
        hosts.dedup();
        hosts
    }

    fn allowed(&self) -> Option<Vec<HostId>> {
        let mut restrictions = self.restrictions.iter();
        let mut allowed = restrictions.next()?.hosts.clone();
        for restriction in restrictions {
            allowed.retain(|host| restriction.hosts.binary_search(host).is_ok());
        }
        Some(allowed)
    }

    fn host_score_of(&self, host: HostId) -> Score {
        let mut sum = self.uniform;
        sum.merge(self.sums[host as usize]);
        sum.total()
    }

    /// The score of `host` for the collected unit, -INFINITY where it may not run.
    fn host_score(&self, host: HostId) -> Score {
        if !self.cluster.hosts[host as usize].eligible() {
            return Score::MINUS_INFINITY;
        }
        self.host_score_of(host)
    }

    fn need(&self, members: &[ResourceId]) -> Vec<(u16, u64)> {
        let cluster = self.cluster;
        if let [member] = members {
            return cluster.resource(*member).utilization.clone();
        }
        let mut need: Vec<(u16, u64)> = Vec::new();
        for &member in members {
            for &(key, amount) in &cluster.resource(member).utilization {
                match need.iter_mut().find(|(existing, _)| *existing == key) {
                    Some((_, total)) => *total = total.saturating_add(amount),
                    None => need.push((key, amount)),
                }
            }
        }
        need.sort_unstable();
        need
    }

    fn capacity_enforced(&self) -> bool {
        self.strategy != PlacementStrategy::Default
    }

    fn fits(&self, host: HostId, need: &[(u16, u64)]) -> bool {
        if !self.capacity_enforced() {
            return true;
        }
        let capacity = &self.cluster.hosts[host as usize].capacity;
        let used = &self.loads[host as usize].used;
        need.iter().all(|&(key, amount)| {
            capacity[key as usize].saturating_sub(used[key as usize]) >= amount
        })
    }

    fn index_key(&self, host: HostId) -> (i64, u32, HostId) {
        let load = &self.expected[host as usize];
        match self.strategy {
            PlacementStrategy::Default | PlacementStrategy::Utilization => (0, load.count, host),
            PlacementStrategy::Balanced => (-self.free_capacity(host), load.count, host),
            PlacementStrategy::Minimal => (0, 0, host),
        }
    }

    /// Free capacity as the sum over keys of the free fraction in millionths: a total order
    /// standing in for Pacemaker's pairwise "more free on more keys" comparison.
    fn free_capacity(&self, host: HostId) -> i64 {
        let capacity = &self.cluster.hosts[host as usize].capacity;
        let used = &self.expected[host as usize].used;
        capacity
            .iter()
            .zip(used)
            .filter(|(capacity, _)| **capacity > 0)
            .map(|(&capacity, &used)| {
                let free = i128::from(capacity.saturating_sub(used));
                (free * 1_000_000 / i128::from(capacity)) as i64
            })
            .sum()
    }

    fn charge(&mut self, host: HostId, resource: ResourceId) {
        let cluster = self.cluster;
        let load = &mut self.loads[host as usize];
        load.count += 1;
        for &(key, amount) in &cluster.resource(resource).utilization {
            load.used[key as usize] = load.used[key as usize].saturating_add(amount);
        }
    }

    /// Adds `resource` to (or removes it from) the expected load of `host`, keeping the
    /// index in step.
    fn expect(&mut self, host: HostId, resource: ResourceId, add: bool) {
        let cluster = self.cluster;
        let indexed = cluster.hosts[host as usize].eligible();
        if indexed {
            let key = self.index_key(host);
            self.index.remove(&key);
        }
        let load = &mut self.expected[host as usize];
        load.count = if add {
            load.count + 1
        } else {
            load.count.saturating_sub(1)
        };
        for &(key, amount) in &cluster.resource(resource).utilization {
            let used = &mut load.used[key as usize];
            *used = if add {
                used.saturating_add(amount)
            } else {
                used.saturating_sub(amount)
            };
        }
        if indexed {
            let key = self.index_key(host);
            self.index.insert(key);
        }
    }

    /// Reserves (or releases) the expected load of a not yet assigned resource where it runs.
    fn reserve(&mut self, resource: ResourceId, add: bool) {
        let cluster = self.cluster;
        for instance in &cluster.resource(resource).active {
            if cluster.hosts[instance.host as usize].eligible() {
                self.expect(instance.host, resource, add);
            }
        }
    }

    /// Pacemaker's node order: score, then the strategy's load criteria, then the current
    /// host, then the name. One addition: a current host the resource is sticky to wins a
    /// score tie before load does. Stickiness normally makes that tie impossible, but at
    /// ±INFINITY it is absorbed, and the load criteria (which change as things move) would
    /// then move the resource back and forth between runs.
    fn rank(&self, host: HostId, score: Score, preferred: bool, sticky: bool) -> RankKey {
        let (free, count, _) = self.index_key(host);
        let kept = u8::from(!(preferred && sticky));
        let preferred = u8::from(!preferred || self.strategy == PlacementStrategy::Minimal);
        (Reverse(score), kept, free, count, preferred, host)
    }

    /// The best host for the collected unit, or `None` when none can take it.
    fn choose(
        &self,
        need: &[(u16, u64)],
        slots: Option<&CloneSlots>,
        preferred_hosts: &[HostId],
        sticky: bool,
    ) -> Option<(HostId, Score)> {
        let cluster = self.cluster;
        let mut best: Option<(RankKey, HostId, Score)> = None;
        let consider = |host: HostId, best: &mut Option<(RankKey, HostId, Score)>| {
            if !cluster.hosts[host as usize].eligible() || !self.fits(host, need) {
                return;
            }
            let mut score = self.host_score_of(host);
            let mut preferred = false;
            if let Some(slots) = slots {
                if slots.placed[host as usize] >= slots.node_max {
                    return;
                }
                if slots.active_left[host as usize] > 0 {
                    score = score + slots.stickiness;
                    preferred = true;
                }
            } else {
                preferred = preferred_hosts.contains(&host);
            }
            if score.is_minus_infinity() {
                return;
            }
            let key = self.rank(host, score, preferred, sticky);
            if best.as_ref().is_none_or(|(best_key, _, _)| key < *best_key) {
                *best = Some((key, host, score));
            }
        };
        if let Some(allowed) = self.allowed() {
            for host in allowed {
                consider(host, &mut best);
            }
            return best.map(|(_, host, score)| (host, score));
        }
        for &host in &self.touched {
            consider(host, &mut best);
        }
        let uniform = self.uniform.total();
        if !uniform.is_minus_infinity() {
            let untouched = self
                .index
                .iter()
                .map(|&(_, _, host)| host)
                .find(|&host| !self.is_touched[host as usize] && self.fits(host, need));
            if let Some(host) = untouched {
                consider(host, &mut best);
            }
        }
        best.map(|(_, host, score)| (host, score))
    }

    /// Why the collected unit does not take (or leaves) `host`.
    fn verdict(
        &self,
        host: HostId,
        chosen: Option<(HostId, Score)>,
        need: &[(u16, u64)],
        fallback: &str,
    ) -> String {
        let cluster = self.cluster;
        let name = cluster.host_name(host);
        let state = cluster.hosts[host as usize].state;
        if state != HostState::Online {
            return format!("host {name} is {}", state.name());
        }
        if let Some(restriction) = self
            .restrictions
            .iter()
            .find(|r| r.hosts.binary_search(&host).is_err())
        {
            return format!(
                "{name} is excluded by {}",
                self.describe(&restriction.source, host)
            );
        }
        let score = self.host_score_of(host);
        if score.is_minus_infinity() {
            return format!("{name} is banned: {}", self.minus_infinity_sources(host));
        }
        if !self.fits(host, need) {
            return format!(
                "not enough capacity on {name}: {}",
                self.shortfall(host, need)
            );
        }
        match chosen {
            Some((other, other_score)) => {
                format!(
                    "{} scores {other_score}, {name} scores {score}",
                    cluster.host_name(other)
                )
            }
            None if !fallback.is_empty() => fallback.to_string(),
            None => format!("{name} scores {score}"),
        }
    }

    fn minus_infinity_sources(&self, host: HostId) -> String {
        let sources: Vec<String> = self
            .contributions
            .iter()
            .filter(|c| (c.host == host || c.host == ALL_HOSTS) && c.score.is_minus_infinity())
            .map(|c| self.describe(&c.source, host))
            .collect();
        if sources.is_empty() {
            "-INFINITY".to_string()
        } else {
            sources.join("; ")
        }
    }

    fn shortfall(&self, host: HostId, need: &[(u16, u64)]) -> String {
        let cluster = self.cluster;
        let capacity = &cluster.hosts[host as usize].capacity;
        let used = &self.loads[host as usize].used;
        need.iter()
            .filter(|&&(key, amount)| {
                capacity[key as usize].saturating_sub(used[key as usize]) < amount
            })
            .map(|&(key, amount)| {
                format!(
                    "{} needs {amount}, {} free",
                    cluster.utilization_keys[key as usize],
                    capacity[key as usize].saturating_sub(used[key as usize])
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Why the collected unit has no host at all.
    fn why_nowhere(&self, need: &[(u16, u64)]) -> String {
        let cluster = self.cluster;
        if self.uniform.is_minus_infinity() {
            let sources: Vec<String> = self
                .contributions
                .iter()
                .filter(|c| c.host == ALL_HOSTS && c.score.is_minus_infinity())
                .map(|c| self.describe(&c.source, ALL_HOSTS))
                .collect();
            if !sources.is_empty() {
                return sources.join("; ");
            }
            return "every host scores -INFINITY".to_string();
        }
        let candidates: Vec<HostId> = match self.allowed() {
            Some(allowed) => allowed,
            None => (0..cluster.hosts.len() as HostId).collect(),
        };
        let eligible: Vec<HostId> = candidates
            .into_iter()
            .filter(|&host| cluster.hosts[host as usize].eligible())
            .collect();
        if eligible.is_empty() {
            if let Some(restriction) = self.restrictions.first() {
                return format!(
                    "no online host allowed by {}",
                    self.describe(&restriction.source, ALL_HOSTS)
                );
            }
            return "no host is online".to_string();
        }
        let banned = eligible
            .iter()
            .filter(|&&host| self.host_score_of(host).is_minus_infinity())
            .count();
        let full = eligible
            .iter()
            .filter(|&&host| {
                !self.host_score_of(host).is_minus_infinity() && !self.fits(host, need)
            })
            .count();
        let mut parts = Vec::new();
        if banned > 0 {
            let mut sources: Vec<String> = eligible
                .iter()
                .filter(|&&host| self.host_score_of(host).is_minus_infinity())
                .map(|&host| self.minus_infinity_sources(host))
                .collect();
            sources.sort();
            sources.dedup();
            sources.truncate(3);
            parts.push(format!("{banned} banned ({})", sources.join("; ")));
        }
        if full > 0 {
            let wanted: Vec<String> = need
                .iter()
                .map(|&(key, amount)| {
                    format!("{}={amount}", cluster.utilization_keys[key as usize])
                })
                .collect();
            parts.push(format!("{full} without capacity for {}", wanted.join(" ")));
        }
        format!(
            "no host can run it: of {} online hosts allowed, {}",
            eligible.len(),
            parts.join(", ")
        )
    }

    fn describe(&self, source: &Source, host: HostId) -> String {
        let cluster = self.cluster;
        let resource_name = |resource: &ResourceId| cluster.resource(*resource).name;
        match source {
            Source::Location(index) => {
                format!("location {}", cluster.locations[*index as usize].id)
            }
            Source::Stickiness(resource) => {
                format!("resource-stickiness of {}", resource_name(resource))
            }
            Source::FailCount(resource) => {
                let info = cluster.resource(*resource);
                format!(
                    "fail count {} of {} reached migration-threshold {}",
                    if host == ALL_HOSTS {
                        0
                    } else {
                        info.fail_count_on(host)
                    },
                    info.name,
                    info.threshold.unwrap_or(0)
                )
            }
            Source::Domain(resource) => {
                let info = cluster.resource(*resource);
                let domain = info
                    .domain
                    .map_or("", |domain| cluster.domains[domain as usize].name);
                format!("failover domain {domain} of {}", info.name)
            }
            Source::Colocation(index) => {
                let colocation = &cluster.colocations[*index as usize];
                format!(
                    "colocation {} with {}",
                    colocation.id,
                    cluster.unit(colocation.primary).name
                )
            }
            Source::PrimaryNotRunning(index) => {
                let colocation = &cluster.colocations[*index as usize];
                format!(
                    "colocation {}: {} does not run",
                    colocation.id,
                    cluster.unit(colocation.primary).name
                )
            }
            Source::Influence(index) => {
                let colocation = &cluster.colocations[*index as usize];
                format!(
                    "colocation {}: preferences of dependent {}",
                    colocation.id,
                    cluster.unit(colocation.dependent).name
                )
            }
            Source::OptIn => {
                "symmetric cluster is off and no location enables the host".to_string()
            }
            Source::PromotionScore(resource) => {
                format!("promotion score of {}", resource_name(resource))
            }
            Source::PromotedStickiness(resource) => {
                format!(
                    "resource-stickiness of promoted {}",
                    resource_name(resource)
                )
            }
            Source::Blocked(text) => text.clone(),
        }
    }

    fn shown_score(&self, allowed: &Option<Vec<HostId>>, host: HostId) -> Score {
        if allowed
            .as_ref()
            .is_some_and(|allowed| allowed.binary_search(&host).is_err())
        {
            return Score::MINUS_INFINITY;
        }
        self.host_score(host)
    }

    /// Stores the collected unit's score row (and its explanation when traced).
    fn record(&mut self, unit: UnitId, need: &[(u16, u64)]) {
        let cluster = self.cluster;
        let allowed = self.allowed();
        let row: Option<BTreeMap<String, Score>> = self.scores.is_some().then(|| {
            (0..cluster.hosts.len() as HostId)
                .map(|host| {
                    (
                        cluster.host_name(host).to_string(),
                        self.shown_score(&allowed, host),
                    )
                })
                .collect()
        });
        if let (Some(scores), Some(row)) = (self.scores.as_mut(), row) {
            scores.insert(cluster.unit(unit).name.to_string(), row);
        }
        if self.trace_unit != Some(unit) {
            return;
        }
        self.trace = (0..cluster.hosts.len() as HostId)
            .map(|host| {
                let mut contributions: Vec<ShownContribution> = self
                    .contributions
                    .iter()
                    .filter(|c| c.host == host || c.host == ALL_HOSTS)
                    .map(|c| ShownContribution {
                        score: c.score,
                        source: self.describe(&c.source, host),
                    })
                    .collect();
                contributions.sort_by(|a, b| a.source.cmp(&b.source).then(a.score.cmp(&b.score)));
                let mut notes = Vec::new();
                let state = cluster.hosts[host as usize].state;
                if state != HostState::Online {
                    notes.push(format!("host is {}: takes no resources", state.name()));
                }
                for restriction in &self.restrictions {
                    if restriction.hosts.binary_search(&host).is_err() {
                        notes.push(format!(
                            "excluded by {}",
                            self.describe(&restriction.source, host)
                        ));
                    }
                }
                if !self.fits(host, need) {
                    notes.push(format!(
                        "not enough capacity: {}",
                        self.shortfall(host, need)
                    ));
                }
                HostExplanation {
                    host: cluster.host_name(host).to_string(),
                    score: self.shown_score(&allowed, host),
                    contributions,
                    notes,
                }
            })
            .collect();
    }
}
