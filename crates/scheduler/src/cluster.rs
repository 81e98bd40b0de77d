//! The view turned into validated, indexed tables: hosts, resources and scheduling units
//! sorted by name (so every index order is a name order), constraints resolved to indices.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::error::ScheduleError;
use crate::score::{Score, ScoreSum};
use crate::view::{
    BooleanOperation, ClusterOptions, ClusterView, Expression, Host, HostState, Operation,
    OrderingKind, Resource, Role, Rule, TargetRole,
};

pub(crate) type HostId = u32;
pub(crate) type ResourceId = u32;
pub(crate) type UnitId = u32;

/// A contribution that applies to every host.
pub(crate) const ALL_HOSTS: HostId = u32::MAX;

/// Score of a failover-domain member per priority rank: larger than any sensible stickiness,
/// so a resource fails back to a better member unless the domain says `nofailback`.
pub(crate) const DOMAIN_RANK_SCORE: i64 = 1000;

pub(crate) struct HostInfo<'v> {
    pub name: &'v str,
    pub state: HostState,
    /// Indexed by utilization key.
    pub capacity: Vec<u64>,
}

impl HostInfo<'_> {
    /// Whether the host may receive resources.
    pub fn eligible(&self) -> bool {
        self.state == HostState::Online
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct ActiveInstance {
    pub host: HostId,
    pub promoted: bool,
    pub failed: bool,
    pub pending: bool,
}

pub(crate) struct ResourceInfo<'v> {
    pub view: &'v Resource,
    pub name: &'v str,
    pub unit: UnitId,
    /// Position inside its group (0 outside groups).
    pub member_position: u32,
    pub stickiness: Score,
    pub threshold: Option<u32>,
    pub utilization: Vec<(u16, u64)>,
    /// Instances on hosts that may run resources, sorted by host.
    pub active: Vec<ActiveInstance>,
    /// Hosts (fenced or offline) the resource was active on: it is known stopped there.
    pub lost_on: Vec<HostId>,
    pub managed: bool,
    /// Failures that still count (after failure-timeout), by host.
    pub fail_counts: Vec<(HostId, u32)>,
    /// Hosts where the fail count reached the migration threshold.
    pub banned: Vec<HostId>,
    pub domain: Option<u32>,
    pub promotion_scores: Vec<(HostId, Score)>,
}

impl ResourceInfo<'_> {
    pub fn wants_to_run(&self) -> bool {
        self.view.target_role != TargetRole::Stopped
    }

    pub fn fail_count_on(&self, host: HostId) -> u32 {
        self.fail_counts
            .iter()
            .find(|(id, _)| *id == host)
            .map_or(0, |(_, count)| *count)
    }
}

pub(crate) struct CloneInfo {
    pub resource: ResourceId,
    pub max: u32,
    pub node_max: u32,
    pub promotable: bool,
    pub promoted_max: u32,
}

pub(crate) enum UnitKind {
    Primitive(ResourceId),
    Group(Vec<ResourceId>),
    Clone(CloneInfo),
}

pub(crate) struct UnitInfo<'v> {
    pub name: &'v str,
    pub kind: UnitKind,
    pub priority: i64,
    /// Left exactly as observed: unmanaged, or on a maintenance or unclean host.
    pub fixed: bool,
    /// Location constraints for placement (role Started), by index.
    pub locations: Vec<u32>,
    /// Location constraints with role Promoted.
    pub promotion_locations: Vec<u32>,
    /// Colocations where this unit is the dependent, sorted by primary.
    pub as_dependent: Vec<u32>,
    /// Colocations where this unit is the primary, sorted by dependent.
    pub as_primary: Vec<u32>,
}

impl UnitInfo<'_> {
    pub fn resources(&self) -> &[ResourceId] {
        match &self.kind {
            UnitKind::Primitive(resource) => std::slice::from_ref(resource),
            UnitKind::Group(members) => members,
            UnitKind::Clone(clone) => std::slice::from_ref(&clone.resource),
        }
    }

    pub fn clone_info(&self) -> Option<&CloneInfo> {
        match &self.kind {
            UnitKind::Clone(clone) => Some(clone),
            _ => None,
        }
    }
}

pub(crate) struct LocationInfo<'v> {
    pub id: &'v str,
    /// Hosts the constraint applies to, with its score there (rules already evaluated).
    pub matches: Vec<(HostId, Score)>,
}

pub(crate) struct ColocationInfo {
    pub id: String,
    pub dependent: UnitId,
    pub primary: UnitId,
    pub score: Score,
    pub dependent_role: Role,
    pub primary_role: Role,
    pub influence: bool,
}

pub(crate) struct OrderingInfo {
    pub id: String,
    pub first: Vec<ResourceId>,
    pub then: Vec<ResourceId>,
    pub first_unit: UnitId,
    pub kind: OrderingKind,
    pub symmetrical: bool,
    /// Implied by a group: runnability is handled by the group itself.
    pub internal: bool,
}

pub(crate) struct DomainInfo<'v> {
    pub name: &'v str,
    /// Member hosts with the score membership gives them, sorted by host.
    pub members: Vec<(HostId, Score)>,
    pub best_score: Score,
    pub restricted: bool,
    pub nofailback: bool,
}

pub(crate) struct Cluster<'v> {
    pub options: &'v ClusterOptions,
    pub hosts: Vec<HostInfo<'v>>,
    pub host_ids: HashMap<&'v str, HostId>,
    pub resources: Vec<ResourceInfo<'v>>,
    pub resource_ids: HashMap<&'v str, ResourceId>,
    pub units: Vec<UnitInfo<'v>>,
    /// Every resource, group and clone name to its unit (group members to their group).
    pub unit_ids: HashMap<&'v str, UnitId>,
    /// Units in assignment order: priority descending, then name.
    pub unit_order: Vec<UnitId>,
    pub locations: Vec<LocationInfo<'v>>,
    pub colocations: Vec<ColocationInfo>,
    pub orderings: Vec<OrderingInfo>,
    /// Per resource: orderings where it is `then`.
    pub orderings_by_then: Vec<Vec<u32>>,
    /// Per resource: orderings where it is `first`.
    pub orderings_by_first: Vec<Vec<u32>>,
    pub domains: Vec<DomainInfo<'v>>,
    pub utilization_keys: Vec<&'v str>,
}

impl<'v> Cluster<'v> {
    pub fn build(view: &'v ClusterView, now_ms: u64) -> Result<Cluster<'v>, ScheduleError> {
        let options = &view.options;
        let utilization_keys = utilization_keys(view);
        let hosts = build_hosts(view, &utilization_keys)?;
        let host_ids: HashMap<&str, HostId> = hosts
            .iter()
            .enumerate()
            .map(|(id, host)| (host.name, id as HostId))
            .collect();
        let host_views: Vec<&Host> = {
            let mut sorted: Vec<&Host> = view.hosts.iter().collect();
            sorted.sort_by(|a, b| a.name.cmp(&b.name));
            sorted
        };

        let mut views: Vec<&Resource> = view.resources.iter().collect();
        views.sort_by(|a, b| a.name.cmp(&b.name));
        let mut resource_ids = HashMap::with_capacity(views.len());
        for (id, resource) in views.iter().enumerate() {
            if resource_ids
                .insert(resource.name.as_str(), id as ResourceId)
                .is_some()
            {
                return Err(ScheduleError::DuplicateName(resource.name.clone()));
            }
        }
        let domains = build_domains(view, &host_ids)?;
        let domain_ids: HashMap<&str, u32> = domains
            .iter()
            .enumerate()
            .map(|(id, domain)| (domain.name, id as u32))
            .collect();

        let mut resources = Vec::with_capacity(views.len());
        for resource in &views {
            resources.push(build_resource(
                resource,
                options,
                now_ms,
                &host_ids,
                &hosts,
                &domain_ids,
                &utilization_keys,
            )?);
        }

        let mut builder = UnitBuilder {
            resources: &mut resources,
            resource_ids: &resource_ids,
        };
        let (units, unit_ids) = builder.build(view, host_views.len() as u32)?;

        let mut cluster = Cluster {
            options,
            hosts,
            host_ids,
            resources,
            resource_ids,
            units,
            unit_ids,
            unit_order: Vec::new(),
            locations: Vec::new(),
            colocations: Vec::new(),
            orderings: Vec::new(),
            orderings_by_then: Vec::new(),
            orderings_by_first: Vec::new(),
            domains,
            utilization_keys,
        };
        cluster.mark_fixed();
        cluster.add_locations(view, &host_views)?;
        cluster.add_colocations(view)?;
        cluster.add_orderings(view)?;
        let mut order: Vec<UnitId> = (0..cluster.units.len() as UnitId).collect();
        order.sort_by_key(|&unit| {
            (
                std::cmp::Reverse(cluster.units[unit as usize].priority),
                unit,
            )
        });
        cluster.unit_order = order;
        Ok(cluster)
    }

    pub fn unit(&self, unit: UnitId) -> &UnitInfo<'v> {
        &self.units[unit as usize]
    }

    pub fn resource(&self, resource: ResourceId) -> &ResourceInfo<'v> {
        &self.resources[resource as usize]
    }

    pub fn host_name(&self, host: HostId) -> &'v str {
        self.hosts[host as usize].name
    }

    fn mark_fixed(&mut self) {
        for unit in &mut self.units {
            let fixed = match &unit.kind {
                UnitKind::Clone(clone) => !self.resources[clone.resource as usize].managed,
                _ => unit.resources().iter().any(|&resource| {
                    let resource = &self.resources[resource as usize];
                    !resource.managed
                        || resource.active.iter().any(|instance| {
                            matches!(
                                self.hosts[instance.host as usize].state,
                                HostState::Maintenance | HostState::Unclean
                            )
                        })
                }),
            };
            unit.fixed = fixed;
        }
    }

    fn resolve_unit(&self, owner: &str, name: &str) -> Result<UnitId, ScheduleError> {
        self.unit_ids
            .get(name)
            .copied()
            .ok_or_else(|| ScheduleError::UnknownResource {
                owner: owner.to_string(),
                name: name.to_string(),
            })
    }

    /// The primitives an ordering endpoint stands for.
    fn resolve_resources(&self, owner: &str, name: &str) -> Result<Vec<ResourceId>, ScheduleError> {
        if let Some(&resource) = self.resource_ids.get(name) {
            return Ok(vec![resource]);
        }
        let unit = self.resolve_unit(owner, name)?;
        Ok(self.unit(unit).resources().to_vec())
    }

    fn add_locations(
        &mut self,
        view: &'v ClusterView,
        host_views: &[&'v Host],
    ) -> Result<(), ScheduleError> {
        let mut locations: Vec<(&'v crate::view::Location, UnitId)> = Vec::new();
        for location in &view.constraints.locations {
            let owner = format!("location constraint {:?}", location.id);
            let unit = self.resolve_unit(&owner, &location.resource)?;
            locations.push((location, unit));
        }
        locations.sort_by(|(a, unit_a), (b, unit_b)| (unit_a, &a.id).cmp(&(unit_b, &b.id)));
        for (location, unit) in locations {
            let matches = match (&location.host, location.score, location.rules.is_empty()) {
                (Some(host), Some(score), true) => {
                    let owner = format!("location constraint {:?}", location.id);
                    let host = *self.host_ids.get(host.as_str()).ok_or_else(|| {
                        ScheduleError::UnknownHost {
                            owner,
                            host: host.clone(),
                        }
                    })?;
                    vec![(host, score)]
                }
                (None, None, false) => rule_matches(&location.id, &location.rules, host_views)?,
                _ => return Err(ScheduleError::InvalidLocation(location.id.clone())),
            };
            let index = self.locations.len() as u32;
            self.locations.push(LocationInfo {
                id: &location.id,
                matches,
            });
            let unit = &mut self.units[unit as usize];
            match location.role {
                Role::Promoted => unit.promotion_locations.push(index),
                Role::Started | Role::Unpromoted => unit.locations.push(index),
            }
        }
        Ok(())
    }

    fn add_colocations(&mut self, view: &ClusterView) -> Result<(), ScheduleError> {
        let mut colocations = Vec::new();
        for colocation in &view.constraints.colocations {
            let owner = format!("colocation {:?}", colocation.id);
            colocations.push(ColocationInfo {
                id: colocation.id.clone(),
                dependent: self.resolve_unit(&owner, &colocation.dependent)?,
                primary: self.resolve_unit(&owner, &colocation.primary)?,
                score: colocation.score,
                dependent_role: colocation.dependent_role,
                primary_role: colocation.primary_role,
                influence: colocation.influence,
            });
        }
        for set in &view.constraints.colocation_sets {
            if set.resources.len() < 2 {
                return Err(ScheduleError::ShortSet(set.id.clone()));
            }
            let owner = format!("colocation set {:?}", set.id);
            for pair in set.resources.windows(2) {
                colocations.push(ColocationInfo {
                    id: set.id.clone(),
                    dependent: self.resolve_unit(&owner, &pair[1])?,
                    primary: self.resolve_unit(&owner, &pair[0])?,
                    score: set.score,
                    dependent_role: Role::Started,
                    primary_role: Role::Started,
                    influence: true,
                });
            }
        }
        // A unit colocated with itself (a group member with its group) says nothing.
        colocations.retain(|colocation| colocation.dependent != colocation.primary);
        colocations.sort_by(|a, b| {
            (a.dependent, a.primary, &a.id, a.score).cmp(&(b.dependent, b.primary, &b.id, b.score))
        });
        for (index, colocation) in colocations.iter().enumerate() {
            self.units[colocation.dependent as usize]
                .as_dependent
                .push(index as u32);
            self.units[colocation.primary as usize]
                .as_primary
                .push(index as u32);
        }
        for unit in &mut self.units {
            unit.as_primary
                .sort_by_key(|&index| (colocations[index as usize].dependent, index));
        }
        self.colocations = colocations;
        Ok(())
    }

    fn add_orderings(&mut self, view: &ClusterView) -> Result<(), ScheduleError> {
        let mut orderings = Vec::new();
        for ordering in &view.constraints.orderings {
            let owner = format!("ordering {:?}", ordering.id);
            orderings.push(OrderingInfo {
                id: ordering.id.clone(),
                first: self.resolve_resources(&owner, &ordering.first)?,
                then: self.resolve_resources(&owner, &ordering.then)?,
                first_unit: self.resolve_unit(&owner, &ordering.first)?,
                kind: ordering.kind,
                symmetrical: ordering.symmetrical,
                internal: false,
            });
        }
        for set in &view.constraints.ordering_sets {
            if set.resources.len() < 2 {
                return Err(ScheduleError::ShortSet(set.id.clone()));
            }
            let owner = format!("ordering set {:?}", set.id);
            for pair in set.resources.windows(2) {
                orderings.push(OrderingInfo {
                    id: set.id.clone(),
                    first: self.resolve_resources(&owner, &pair[0])?,
                    then: self.resolve_resources(&owner, &pair[1])?,
                    first_unit: self.resolve_unit(&owner, &pair[0])?,
                    kind: set.kind,
                    symmetrical: set.symmetrical,
                    internal: false,
                });
            }
        }
        for unit in &self.units {
            if let UnitKind::Group(members) = &unit.kind {
                for pair in members.windows(2) {
                    orderings.push(OrderingInfo {
                        id: format!("group {}", unit.name),
                        first: vec![pair[0]],
                        then: vec![pair[1]],
                        first_unit: self.resources[pair[0] as usize].unit,
                        kind: OrderingKind::Mandatory,
                        symmetrical: true,
                        internal: true,
                    });
                }
            }
        }
        orderings.sort_by(|a, b| {
            (&a.then, &a.first, &a.id, a.internal).cmp(&(&b.then, &b.first, &b.id, b.internal))
        });
        let mut by_then = vec![Vec::new(); self.resources.len()];
        let mut by_first = vec![Vec::new(); self.resources.len()];
        for (index, ordering) in orderings.iter().enumerate() {
            for &resource in &ordering.then {
                by_then[resource as usize].push(index as u32);
            }
            for &resource in &ordering.first {
                by_first[resource as usize].push(index as u32);
            }
        }
        self.orderings = orderings;
        self.orderings_by_then = by_then;
        self.orderings_by_first = by_first;
        Ok(())
    }
}

fn utilization_keys(view: &ClusterView) -> Vec<&str> {
    let mut keys = BTreeSet::new();
    for host in &view.hosts {
        keys.extend(host.capacity.keys().map(String::as_str));
    }
    for resource in &view.resources {
        keys.extend(resource.utilization.keys().map(String::as_str));
    }
    keys.into_iter().collect()
}

fn key_index(keys: &[&str], key: &str) -> u16 {
    // Every key was collected from the view, so the search cannot miss.
    keys.binary_search(&key).unwrap_or(0) as u16
}

fn build_hosts<'v>(
    view: &'v ClusterView,
    keys: &[&str],
) -> Result<Vec<HostInfo<'v>>, ScheduleError> {
    let mut hosts: Vec<HostInfo> = view
        .hosts
        .iter()
        .map(|host| {
            let mut capacity = vec![0; keys.len()];
            for (key, amount) in &host.capacity {
                capacity[key_index(keys, key) as usize] = *amount;
            }
            HostInfo {
                name: &host.name,
                state: host.state,
                capacity,
            }
        })
        .collect();
    hosts.sort_by(|a, b| a.name.cmp(b.name));
    for pair in hosts.windows(2) {
        if pair[0].name == pair[1].name {
            return Err(ScheduleError::DuplicateHost(pair[0].name.to_string()));
        }
    }
    Ok(hosts)
}

fn build_domains<'v>(
    view: &'v ClusterView,
    host_ids: &HashMap<&str, HostId>,
) -> Result<Vec<DomainInfo<'v>>, ScheduleError> {
    let mut domains = Vec::new();
    for domain in &view.failover_domains {
        // Ranks, not raw priorities, so any priority numbering gives the same steps.
        let priorities: BTreeSet<u32> = domain.hosts.values().copied().collect();
        let rank_score = |priority: u32| -> Score {
            if !domain.ordered {
                return Score::new(DOMAIN_RANK_SCORE);
            }
            let rank = priorities.iter().position(|p| *p == priority).unwrap_or(0) as i64;
            Score::new(DOMAIN_RANK_SCORE * (rank + 1))
        };
        let mut members = Vec::new();
        for (host, priority) in &domain.hosts {
            let id = *host_ids
                .get(host.as_str())
                .ok_or_else(|| ScheduleError::UnknownHost {
                    owner: format!("failover domain {:?}", domain.name),
                    host: host.clone(),
                })?;
            members.push((id, rank_score(*priority)));
        }
        members.sort();
        let best_score = members
            .iter()
            .map(|(_, score)| *score)
            .max()
            .unwrap_or_default();
        domains.push(DomainInfo {
            name: &domain.name,
            members,
            best_score,
            restricted: domain.restricted,
            nofailback: domain.nofailback,
        });
    }
    domains.sort_by(|a, b| a.name.cmp(b.name));
    for pair in domains.windows(2) {
        if pair[0].name == pair[1].name {
            return Err(ScheduleError::DuplicateName(pair[0].name.to_string()));
        }
    }
    Ok(domains)
}

fn build_resource<'v>(
    resource: &'v Resource,
    options: &ClusterOptions,
    now_ms: u64,
    host_ids: &HashMap<&str, HostId>,
    hosts: &[HostInfo],
    domain_ids: &HashMap<&str, u32>,
    keys: &[&str],
) -> Result<ResourceInfo<'v>, ScheduleError> {
    let mut active = Vec::with_capacity(resource.instances.len());
    let mut lost_on = Vec::new();
    for instance in &resource.instances {
        let host = *host_ids.get(instance.host.as_str()).ok_or_else(|| {
            ScheduleError::UnknownInstanceHost {
                resource: resource.name.clone(),
                host: instance.host.clone(),
            }
        })?;
        if hosts[host as usize].state.may_run_resources() {
            active.push(ActiveInstance {
                host,
                promoted: instance.promoted,
                failed: instance.failed,
                pending: instance.pending,
            });
        } else {
            lost_on.push(host);
        }
    }
    active.sort_by_key(|instance| (instance.host, instance.promoted, instance.failed));
    lost_on.sort_unstable();
    lost_on.dedup();

    let threshold = resource
        .migration_threshold
        .or(resource
            .max_restart
            .map(|restarts| restarts.saturating_add(1)))
        .or(options.default_migration_threshold)
        .filter(|threshold| *threshold > 0);
    let mut fail_counts = Vec::new();
    for (host, fail_count) in &resource.fail_counts {
        // Fail counts of hosts that left the configuration no longer matter.
        let Some(&host) = host_ids.get(host.as_str()) else {
            continue;
        };
        let expired = resource.failure_timeout_ms.is_some_and(|timeout_ms| {
            timeout_ms > 0 && now_ms >= fail_count.last_failure_ms.saturating_add(timeout_ms)
        });
        if !expired && fail_count.count > 0 {
            fail_counts.push((host, fail_count.count));
        }
    }
    fail_counts.sort_unstable();
    let banned = match threshold {
        Some(threshold) => fail_counts
            .iter()
            .filter(|(_, count)| *count >= threshold)
            .map(|(host, _)| *host)
            .collect(),
        None => Vec::new(),
    };
    let domain = match &resource.failover_domain {
        Some(name) => Some(*domain_ids.get(name.as_str()).ok_or_else(|| {
            ScheduleError::UnknownFailoverDomain {
                resource: resource.name.clone(),
                domain: name.clone(),
            }
        })?),
        None => None,
    };
    let mut promotion_scores: Vec<(HostId, Score)> = resource
        .promotion_scores
        .iter()
        .filter_map(|(host, score)| host_ids.get(host.as_str()).map(|id| (*id, *score)))
        .collect();
    promotion_scores.sort_unstable();
    let mut utilization: Vec<(u16, u64)> = resource
        .utilization
        .iter()
        .filter(|(_, amount)| **amount > 0)
        .map(|(key, amount)| (key_index(keys, key), *amount))
        .collect();
    utilization.sort_unstable();
    Ok(ResourceInfo {
        view: resource,
        name: &resource.name,
        unit: 0,
        member_position: 0,
        stickiness: resource.stickiness.unwrap_or(options.default_stickiness),
        threshold,
        utilization,
        active,
        lost_on,
        managed: resource.managed && !options.maintenance_mode,
        fail_counts,
        banned,
        domain,
        promotion_scores,
    })
}

struct UnitBuilder<'a, 'v> {
    resources: &'a mut Vec<ResourceInfo<'v>>,
    resource_ids: &'a HashMap<&'v str, ResourceId>,
}

impl<'v> UnitBuilder<'_, 'v> {
    fn build(
        &mut self,
        view: &'v ClusterView,
        host_count: u32,
    ) -> Result<(Vec<UnitInfo<'v>>, HashMap<&'v str, UnitId>), ScheduleError> {
        let mut parent: BTreeMap<ResourceId, &'v str> = BTreeMap::new();
        let mut claim = |resource: ResourceId, owner: &'v str, names: &[ResourceInfo]| {
            if let Some(first) = parent.insert(resource, owner) {
                return Err(ScheduleError::SharedMember {
                    resource: names[resource as usize].name.to_string(),
                    first: first.to_string(),
                    second: owner.to_string(),
                });
            }
            Ok(())
        };
        let mut specs: Vec<(&'v str, UnitKind)> = Vec::new();
        for group in &view.groups {
            if group.members.is_empty() {
                return Err(ScheduleError::EmptyGroup(group.name.clone()));
            }
            let mut members = Vec::new();
            for member in &group.members {
                let id = self.lookup(&format!("group {:?}", group.name), member)?;
                claim(id, &group.name, self.resources)?;
                members.push(id);
            }
            specs.push((&group.name, UnitKind::Group(members)));
        }
        for clone in &view.clones {
            if clone.node_max == 0 || clone.promoted_max == 0 {
                return Err(ScheduleError::ZeroCloneLimit(clone.name.clone()));
            }
            let resource = self.lookup(&format!("clone {:?}", clone.name), &clone.resource)?;
            claim(resource, &clone.name, self.resources)?;
            let max = clone
                .max
                .unwrap_or(host_count.saturating_mul(clone.node_max));
            specs.push((
                &clone.name,
                UnitKind::Clone(CloneInfo {
                    resource,
                    max,
                    node_max: clone.node_max,
                    promotable: clone.promotable,
                    promoted_max: clone.promoted_max,
                }),
            ));
        }
        for (id, resource) in self.resources.iter().enumerate() {
            if !parent.contains_key(&(id as ResourceId)) {
                specs.push((resource.name, UnitKind::Primitive(id as ResourceId)));
            }
        }
        specs.sort_by(|a, b| a.0.cmp(b.0));
        let mut unit_ids: HashMap<&'v str, UnitId> = HashMap::with_capacity(specs.len() * 2);
        let mut units = Vec::with_capacity(specs.len());
        for (id, (name, kind)) in specs.into_iter().enumerate() {
            let id = id as UnitId;
            if unit_ids.insert(name, id).is_some() {
                return Err(ScheduleError::DuplicateName(name.to_string()));
            }
            let mut priority = i64::MIN;
            let members: Vec<ResourceId> = match &kind {
                UnitKind::Primitive(resource) => vec![*resource],
                UnitKind::Group(members) => members.clone(),
                UnitKind::Clone(clone) => vec![clone.resource],
            };
            for (position, &member) in members.iter().enumerate() {
                let resource = &mut self.resources[member as usize];
                resource.unit = id;
                resource.member_position = position as u32;
                priority = priority.max(resource.view.priority);
            }
            units.push(UnitInfo {
                name,
                kind,
                priority,
                fixed: false,
                locations: Vec::new(),
                promotion_locations: Vec::new(),
                as_dependent: Vec::new(),
                as_primary: Vec::new(),
            });
        }
        // Constraints may name a member of a group or the primitive of a clone.
        for resource in self.resources.iter() {
            match unit_ids.get(resource.name) {
                Some(&unit) if unit == resource.unit => {}
                Some(_) => return Err(ScheduleError::DuplicateName(resource.name.to_string())),
                None => {
                    unit_ids.insert(resource.name, resource.unit);
                }
            }
        }
        Ok((units, unit_ids))
    }

    fn lookup(&self, owner: &str, name: &str) -> Result<ResourceId, ScheduleError> {
        self.resource_ids
            .get(name)
            .copied()
            .ok_or_else(|| ScheduleError::UnknownResource {
                owner: owner.to_string(),
                name: name.to_string(),
            })
    }
}

/// Every host where a rule of the location matches, with the summed score of its matching
/// rules.
fn rule_matches(
    id: &str,
    rules: &[Rule],
    hosts: &[&Host],
) -> Result<Vec<(HostId, Score)>, ScheduleError> {
    let mut matches = Vec::new();
    for (host_id, host) in hosts.iter().enumerate() {
        let mut sum = ScoreSum::default();
        let mut matched = false;
        for rule in rules {
            let score = match (rule.score, &rule.score_attribute) {
                (Some(score), _) => Some(score),
                (None, Some(attribute)) => host
                    .attributes
                    .get(attribute)
                    .and_then(|value| value.trim().parse::<Score>().ok()),
                (None, None) => return Err(ScheduleError::RuleWithoutScore(id.to_string())),
            };
            let Some(score) = score else { continue };
            if rule_holds(rule, host) {
                sum.add(score);
                matched = true;
            }
        }
        if matched {
            matches.push((host_id as HostId, sum.total()));
        }
    }
    Ok(matches)
}

impl std::str::FromStr for Score {
    type Err = std::num::ParseIntError;

    fn from_str(text: &str) -> Result<Score, Self::Err> {
        match text {
            "INFINITY" | "+INFINITY" => Ok(Score::INFINITY),
            "-INFINITY" => Ok(Score::MINUS_INFINITY),
            other => other.parse::<i64>().map(Score::new),
        }
    }
}

fn rule_holds(rule: &Rule, host: &Host) -> bool {
    let mut results = rule
        .expressions
        .iter()
        .map(|expression| expression_holds(expression, host));
    match rule.boolean {
        BooleanOperation::And => results.all(|holds| holds),
        BooleanOperation::Or => results.any(|holds| holds),
    }
}

fn expression_holds(expression: &Expression, host: &Host) -> bool {
    let actual = if expression.attribute == "#uname" {
        Some(host.name.as_str())
    } else {
        host.attributes
            .get(&expression.attribute)
            .map(String::as_str)
    };
    let wanted = expression.value.as_deref().unwrap_or("");
    let ordering = |actual: &str| -> std::cmp::Ordering {
        match (actual.trim().parse::<f64>(), wanted.trim().parse::<f64>()) {
            (Ok(left), Ok(right)) => left
                .partial_cmp(&right)
                .unwrap_or(std::cmp::Ordering::Equal),
            _ => actual.cmp(wanted),
        }
    };
    use std::cmp::Ordering::{Equal, Greater, Less};
    match (expression.operation, actual) {
        (Operation::Defined, actual) => actual.is_some(),
        (Operation::NotDefined, actual) => actual.is_none(),
        // Pacemaker: an undefined attribute differs from every value.
        (Operation::Ne, None) => true,
        (_, None) => false,
        (Operation::Eq, Some(actual)) => ordering(actual) == Equal,
        (Operation::Ne, Some(actual)) => ordering(actual) != Equal,
        (Operation::Lt, Some(actual)) => ordering(actual) == Less,
        (Operation::Gt, Some(actual)) => ordering(actual) == Greater,
        (Operation::Lte, Some(actual)) => ordering(actual) != Greater,
        (Operation::Gte, Some(actual)) => ordering(actual) != Less,
    }
}
