//! Property tests over generated clusters: the plan is deterministic, independent of input
//! order and stable once applied; it never overfills a host, never breaks a mandatory
//! constraint, and never sends anything to a host that is not online.
//!
//! proptest draws only sizes and a seed; a small deterministic generator builds the cluster
//! from them. A failure therefore prints a replayable `(hosts, resources, seed)` (proptest
//! shows the minimal failing input), and no regression files are written.

use std::collections::{BTreeMap, BTreeSet};

use hafen_scheduler::{
    ClusterView, Colocation, Expression, FailCount, FailoverDomain, Group, Host, HostState,
    Instance, Location, Operation, Ordering, OrderingKind, PlacementStrategy, Plan, Request,
    Resource, ResourceClone, Role, Rule, Score, TargetRole, apply_plan, schedule,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError};

/// splitmix64: tiny, deterministic, good enough to spread test cases.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut value = self.0;
        value = (value ^ (value >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        value = (value ^ (value >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        value ^ (value >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 { 0 } else { self.next() % bound }
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

fn host_name(index: usize) -> String {
    format!("h{index:02}")
}

fn random_score(random: &mut Random) -> Score {
    *random.pick(&[
        Score::INFINITY,
        Score::MINUS_INFINITY,
        Score::new(100),
        Score::new(-100),
        Score::new(5000),
    ])
}

/// Builds a cluster from a seed. Resources the scheduler must leave alone (unmanaged, or
/// on maintenance/unclean hosts) use no capacity, so the capacity check holds for the rest.
fn generate(host_count: usize, resource_count: usize, seed: u64) -> ClusterView {
    let mut random = Random(seed);
    let mut view = ClusterView::default();
    view.options.placement_strategy = *random.pick(&[
        PlacementStrategy::Balanced,
        PlacementStrategy::Utilization,
        PlacementStrategy::Minimal,
        PlacementStrategy::Default,
    ]);
    view.options.symmetric = !random.chance(10);
    for index in 0..host_count {
        let state = if random.chance(70) {
            HostState::Online
        } else {
            *random.pick(&[
                HostState::Standby,
                HostState::Maintenance,
                HostState::Unclean,
                HostState::Fenced,
                HostState::Offline,
            ])
        };
        let mut host = Host {
            name: host_name(index),
            state,
            ..Host::default()
        };
        host.attributes
            .insert("rack".to_string(), random.pick(&["a", "b"]).to_string());
        host.capacity
            .insert("cpu".to_string(), 4 + random.below(12));
        host.capacity
            .insert("memory".to_string(), 4096 + 1024 * random.below(12));
        view.hosts.push(host);
    }
    for index in 0..resource_count {
        let mut resource = Resource::new(format!("r{index:02}"));
        if random.chance(80) {
            resource
                .utilization
                .insert("cpu".to_string(), 1 + random.below(4));
            resource
                .utilization
                .insert("memory".to_string(), 512 * (1 + random.below(6)));
        }
        if host_count > 0 && random.chance(60) {
            let host = random.below(host_count as u64) as usize;
            let mut instance = Instance::on(host_name(host));
            instance.failed = random.chance(10);
            resource.instances.push(instance);
            if random.chance(3) {
                resource
                    .instances
                    .push(Instance::on(host_name((host + 1) % host_count)));
                resource.instances.dedup_by(|a, b| a.host == b.host);
            }
        }
        if random.chance(50) {
            resource.stickiness = Some(Score::new(1 + random.below(200) as i64));
        }
        resource.allow_migrate = random.chance(50);
        if random.chance(10) {
            resource.target_role = TargetRole::Stopped;
        }
        resource.managed = !random.chance(5);
        resource.priority = random.below(3) as i64;
        if host_count > 0 && random.chance(15) {
            let host = host_name(random.below(host_count as u64) as usize);
            let count = 1 + random.below(3) as u32;
            resource.fail_counts.insert(
                host,
                FailCount {
                    count,
                    last_failure_ms: random.below(2000),
                },
            );
            resource.migration_threshold = Some(1 + random.below(3) as u32);
            if random.chance(50) {
                resource.failure_timeout_ms = Some(500 + random.below(1000));
            }
            if random.chance(30) {
                resource.max_relocate = Some(random.below(2) as u32);
            }
        }
        view.resources.push(resource);
    }
    add_structure(&mut view, &mut random);
    let units = all_units(&view);
    let fixed: BTreeSet<String> = fixed_units(&view, &units)
        .iter()
        .flat_map(|unit| unit_resources(&view, unit))
        .collect();
    for resource in &mut view.resources {
        if fixed.contains(&resource.name) {
            resource.utilization.clear();
        }
    }
    view
}

/// Groups, clones, failover domains and constraints. Colocations and orderings always point
/// from a later unit to an earlier one, so dependencies never loop.
fn add_structure(view: &mut ClusterView, random: &mut Random) {
    let names: Vec<String> = view
        .resources
        .iter()
        .map(|resource| resource.name.clone())
        .collect();
    let mut units: Vec<String> = Vec::new();
    let mut promotable: BTreeSet<String> = BTreeSet::new();
    let mut index = 0;
    while index < names.len() {
        if index + 1 < names.len() && random.chance(15) {
            let size = (2 + random.below(2) as usize).min(names.len() - index);
            let name = format!("g{index:02}");
            view.groups.push(Group {
                name: name.clone(),
                members: names[index..index + size].to_vec(),
            });
            units.push(name);
            index += size;
        } else if random.chance(10) {
            let name = format!("c{index:02}");
            let is_promotable = random.chance(50);
            let clone = ResourceClone {
                name: name.clone(),
                resource: names[index].clone(),
                max: random.chance(50).then(|| 1 + random.below(3) as u32),
                node_max: 1 + random.below(2) as u32,
                promotable: is_promotable,
                promoted_max: 1,
            };
            let resource = &mut view.resources[index];
            if let Some(first) = resource.instances.first().cloned() {
                resource.instances = vec![Instance {
                    promoted: is_promotable && random.chance(50),
                    ..first
                }];
            }
            if is_promotable {
                promotable.insert(name.clone());
                for host in &view.hosts {
                    if random.chance(50) {
                        resource
                            .promotion_scores
                            .insert(host.name.clone(), Score::new(random.below(20) as i64));
                    }
                }
            }
            view.clones.push(clone);
            units.push(name);
            index += 1;
        } else {
            units.push(names[index].clone());
            index += 1;
        }
    }
    if !view.hosts.is_empty() && random.chance(30) {
        let mut domain = FailoverDomain {
            name: "domain".to_string(),
            ordered: random.chance(50),
            restricted: random.chance(50),
            nofailback: random.chance(50),
            ..FailoverDomain::default()
        };
        for host in &view.hosts {
            if random.chance(50) {
                domain
                    .hosts
                    .insert(host.name.clone(), random.below(3) as u32);
            }
        }
        view.failover_domains.push(domain);
        for resource in &mut view.resources {
            if random.chance(20) {
                resource.failover_domain = Some("domain".to_string());
            }
        }
    }
    let location_count = random.below(units.len() as u64 / 3 + 2);
    for number in 0..location_count {
        if units.is_empty() || view.hosts.is_empty() {
            break;
        }
        let unit = random.pick(&units).clone();
        let mut location = Location {
            id: format!("location-{number}"),
            resource: unit.clone(),
            ..Location::default()
        };
        if random.chance(30) {
            location.rules.push(Rule {
                score: Some(random_score(random)),
                expressions: vec![Expression {
                    attribute: "rack".to_string(),
                    operation: Operation::Eq,
                    value: Some("a".to_string()),
                }],
                ..Rule::default()
            });
        } else {
            location.host = Some(random.pick(&view.hosts).name.clone());
            location.score = Some(random_score(random));
        }
        if promotable.contains(&unit) && random.chance(50) {
            location.role = Role::Promoted;
        }
        view.constraints.locations.push(location);
    }
    let pair_count = random.below(units.len() as u64 / 2 + 1);
    for number in 0..pair_count {
        if units.len() < 2 {
            break;
        }
        let later = 1 + random.below(units.len() as u64 - 1) as usize;
        let earlier = random.below(later as u64) as usize;
        if random.chance(50) {
            let primary = units[earlier].clone();
            let primary_role = if promotable.contains(&primary) && random.chance(50) {
                Role::Promoted
            } else {
                Role::Started
            };
            view.constraints.colocations.push(Colocation {
                id: format!("colocation-{number}"),
                dependent: units[later].clone(),
                primary,
                score: random_score(random),
                dependent_role: Role::Started,
                primary_role,
                influence: random.chance(80),
            });
        } else {
            view.constraints.orderings.push(Ordering {
                id: format!("ordering-{number}"),
                first: units[earlier].clone(),
                then: units[later].clone(),
                kind: if random.chance(70) {
                    OrderingKind::Mandatory
                } else {
                    OrderingKind::Optional
                },
                symmetrical: random.chance(80),
            });
        }
    }
}

/// The same cluster with every list in another order.
fn shuffled(view: &ClusterView, seed: u64) -> ClusterView {
    fn shuffle<T>(items: &mut [T], random: &mut Random) {
        for index in (1..items.len()).rev() {
            let other = random.below(index as u64 + 1) as usize;
            items.swap(index, other);
        }
    }
    let mut random = Random(seed ^ 0x5EED);
    let mut view = view.clone();
    shuffle(&mut view.hosts, &mut random);
    shuffle(&mut view.resources, &mut random);
    for resource in &mut view.resources {
        shuffle(&mut resource.instances, &mut random);
    }
    shuffle(&mut view.groups, &mut random);
    shuffle(&mut view.clones, &mut random);
    shuffle(&mut view.failover_domains, &mut random);
    shuffle(&mut view.constraints.locations, &mut random);
    shuffle(&mut view.constraints.colocations, &mut random);
    shuffle(&mut view.constraints.orderings, &mut random);
    view
}

/// Where each unit (primitive, group, clone) runs in `view`: its hosts, and its promoted
/// hosts.
struct Placement {
    hosts: BTreeMap<String, Vec<String>>,
    promoted: BTreeMap<String, Vec<String>>,
}

fn unit_resources(view: &ClusterView, unit: &str) -> Vec<String> {
    if let Some(group) = view.groups.iter().find(|group| group.name == unit) {
        return group.members.clone();
    }
    if let Some(clone) = view.clones.iter().find(|clone| clone.name == unit) {
        return vec![clone.resource.clone()];
    }
    vec![unit.to_string()]
}

fn placement(view: &ClusterView, units: &[String]) -> Placement {
    let mut hosts = BTreeMap::new();
    let mut promoted = BTreeMap::new();
    for unit in units {
        let mut unit_hosts = Vec::new();
        let mut unit_promoted = Vec::new();
        for name in unit_resources(view, unit) {
            if let Some(resource) = view.resources.iter().find(|resource| resource.name == name) {
                for instance in &resource.instances {
                    unit_hosts.push(instance.host.clone());
                    if instance.promoted {
                        unit_promoted.push(instance.host.clone());
                    }
                }
            }
        }
        hosts.insert(unit.clone(), unit_hosts);
        promoted.insert(unit.clone(), unit_promoted);
    }
    Placement { hosts, promoted }
}

/// Units the scheduler must not touch: unmanaged, or with an instance on a maintenance or
/// unclean host.
fn fixed_units(view: &ClusterView, units: &[String]) -> BTreeSet<String> {
    let state = |name: &str| {
        view.hosts
            .iter()
            .find(|host| host.name == name)
            .map(|host| host.state)
    };
    units
        .iter()
        .filter(|unit| {
            unit_resources(view, unit).iter().any(|name| {
                view.resources
                    .iter()
                    .find(|resource| &resource.name == name)
                    .is_some_and(|resource| {
                        !resource.managed
                            || resource.instances.iter().any(|instance| {
                                matches!(
                                    state(&instance.host),
                                    Some(HostState::Maintenance | HostState::Unclean)
                                )
                            })
                    })
            })
        })
        .cloned()
        .collect()
}

fn all_units(view: &ClusterView) -> Vec<String> {
    let mut members: BTreeSet<&str> = BTreeSet::new();
    let mut units = Vec::new();
    for group in &view.groups {
        members.extend(group.members.iter().map(String::as_str));
        units.push(group.name.clone());
    }
    for clone in &view.clones {
        members.insert(&clone.resource);
        units.push(clone.name.clone());
    }
    for resource in &view.resources {
        if !members.contains(resource.name.as_str()) {
            units.push(resource.name.clone());
        }
    }
    units
}

fn check(view: &ClusterView) -> Result<(), TestCaseError> {
    let request = Request {
        now_ms: 1500,
        include_scores: true,
    };
    let plan: Plan =
        schedule(view, &request).map_err(|error| TestCaseError::fail(error.to_string()))?;

    // Same input, same plan.
    let again = schedule(view, &request).map_err(|error| TestCaseError::fail(error.to_string()))?;
    prop_assert_eq!(&plan, &again);

    // Input order does not matter.
    let reordered = schedule(&shuffled(view, 7), &request)
        .map_err(|error| TestCaseError::fail(error.to_string()))?;
    prop_assert_eq!(&plan, &reordered, "shuffled input gave another plan");

    // Applying the plan and planning again does nothing.
    let after = apply_plan(view, &plan);
    let replan =
        schedule(&after, &request).map_err(|error| TestCaseError::fail(error.to_string()))?;
    let replan_text: Vec<String> = replan.actions.iter().map(ToString::to_string).collect();
    let plan_text: Vec<String> = plan.actions.iter().map(ToString::to_string).collect();
    prop_assert!(
        replan.actions.is_empty(),
        "re-plan acts: {:?}\nafter plan {:?}",
        replan_text,
        plan_text
    );

    check_capacity(view, &after)?;
    check_hosts_taking_nothing(view, &after)?;
    check_mandatory(view, &after)?;
    Ok(())
}

fn check_capacity(view: &ClusterView, after: &ClusterView) -> Result<(), TestCaseError> {
    if view.options.placement_strategy == PlacementStrategy::Default {
        return Ok(());
    }
    let mut used: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for resource in &after.resources {
        for instance in &resource.instances {
            for (key, amount) in &resource.utilization {
                *used
                    .entry((instance.host.as_str(), key.as_str()))
                    .or_default() += amount;
            }
        }
    }
    for ((host, key), amount) in used {
        let capacity = view
            .hosts
            .iter()
            .find(|candidate| candidate.name == host)
            .and_then(|candidate| candidate.capacity.get(key))
            .copied()
            .unwrap_or(0);
        prop_assert!(
            amount <= capacity,
            "{} uses {} {} of {}",
            host,
            amount,
            key,
            capacity
        );
    }
    Ok(())
}

fn check_hosts_taking_nothing(
    view: &ClusterView,
    after: &ClusterView,
) -> Result<(), TestCaseError> {
    for resource in &after.resources {
        let before = view
            .resources
            .iter()
            .find(|candidate| candidate.name == resource.name);
        for instance in &resource.instances {
            let host = view
                .hosts
                .iter()
                .find(|host| host.name == instance.host)
                .map(|host| host.state);
            let was_there = before
                .is_some_and(|before| before.instances.iter().any(|old| old.host == instance.host));
            match host {
                Some(HostState::Online) => {}
                Some(HostState::Standby) => {
                    prop_assert!(
                        was_there && (!resource.managed || fixed_somehow(view, &resource.name)),
                        "{} still on standby host {}",
                        resource.name,
                        instance.host
                    );
                }
                Some(HostState::Maintenance | HostState::Unclean) => {
                    prop_assert!(
                        was_there,
                        "{} placed on non-online host {}",
                        resource.name,
                        instance.host
                    );
                }
                _ => prop_assert!(false, "{} on down host {}", resource.name, instance.host),
            }
        }
    }
    Ok(())
}

fn fixed_somehow(view: &ClusterView, resource: &str) -> bool {
    let units = all_units(view);
    let fixed = fixed_units(view, &units);
    units.iter().any(|unit| {
        fixed.contains(unit)
            && unit_resources(view, unit)
                .iter()
                .any(|name| name == resource)
    })
}

fn check_mandatory(view: &ClusterView, after: &ClusterView) -> Result<(), TestCaseError> {
    let units = all_units(view);
    let fixed = fixed_units(view, &units);
    let placed = placement(after, &units);
    let running = |unit: &str| {
        placed
            .hosts
            .get(unit)
            .is_some_and(|hosts| !hosts.is_empty())
    };
    for colocation in &view.constraints.colocations {
        if fixed.contains(&colocation.dependent) {
            continue;
        }
        let dependent = &placed.hosts[&colocation.dependent];
        let primary = match colocation.primary_role {
            Role::Promoted => &placed.promoted[&colocation.primary],
            _ => &placed.hosts[&colocation.primary],
        };
        if colocation.score.is_infinity() {
            for host in dependent {
                prop_assert!(
                    primary.contains(host),
                    "{} breaks {}: {} not with {:?}",
                    colocation.dependent,
                    colocation.id,
                    host,
                    primary
                );
            }
        }
        if colocation.score.is_minus_infinity() {
            for host in dependent {
                prop_assert!(
                    !primary.contains(host),
                    "{} breaks {} on {}",
                    colocation.dependent,
                    colocation.id,
                    host
                );
            }
        }
    }
    for location in &view.constraints.locations {
        if fixed.contains(&location.resource) {
            continue;
        }
        let banned_hosts: Vec<&str> = match (&location.host, location.score) {
            (Some(host), Some(score)) if score.is_minus_infinity() => vec![host.as_str()],
            (None, None)
                if location
                    .rules
                    .iter()
                    .any(|rule| rule.score.is_some_and(Score::is_minus_infinity)) =>
            {
                view.hosts
                    .iter()
                    .filter(|host| host.attributes.get("rack").is_some_and(|rack| rack == "a"))
                    .map(|host| host.name.as_str())
                    .collect()
            }
            _ => Vec::new(),
        };
        let hosts = match location.role {
            Role::Promoted => &placed.promoted[&location.resource],
            _ => &placed.hosts[&location.resource],
        };
        for banned in banned_hosts {
            prop_assert!(
                !hosts.iter().any(|host| host == banned),
                "{} breaks {} on {}",
                location.resource,
                location.id,
                banned
            );
        }
    }
    for ordering in &view.constraints.orderings {
        if ordering.kind != OrderingKind::Mandatory || fixed.contains(&ordering.then) {
            continue;
        }
        if running(&ordering.then) {
            let first_runs = unit_resources(view, &ordering.first).iter().all(|name| {
                after
                    .resources
                    .iter()
                    .any(|resource| &resource.name == name && !resource.instances.is_empty())
            });
            prop_assert!(
                first_runs,
                "{} runs but {} does not ({})",
                ordering.then,
                ordering.first,
                ordering.id
            );
        }
    }
    for group in &view.groups {
        if fixed.contains(&group.name) {
            continue;
        }
        let hosts: BTreeSet<&String> = placed.hosts[&group.name].iter().collect();
        prop_assert!(
            hosts.len() <= 1,
            "group {} is split over {:?}",
            group.name,
            hosts
        );
    }
    for clone in &view.clones {
        if fixed.contains(&clone.name) {
            continue;
        }
        let hosts = &placed.hosts[&clone.name];
        if let Some(max) = clone.max {
            prop_assert!(
                hosts.len() as u32 <= max,
                "clone {} has {} instances",
                clone.name,
                hosts.len()
            );
        }
        for host in hosts {
            let count = hosts.iter().filter(|other| *other == host).count() as u32;
            prop_assert!(
                count <= clone.node_max,
                "clone {} has {} instances on {}",
                clone.name,
                count,
                host
            );
        }
        prop_assert!(placed.promoted[&clone.name].len() as u32 <= clone.promoted_max);
    }
    for resource in &after.resources {
        let in_clone = view
            .clones
            .iter()
            .any(|clone| clone.resource == resource.name);
        if !in_clone && !fixed_somehow(view, &resource.name) {
            prop_assert!(
                resource.instances.len() <= 1,
                "{} active on {:?}",
                resource.name,
                resource.instances
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(Config { cases: 400, failure_persistence: None, ..Config::default() })]

    /// Every property at once on one generated cluster.
    #[test]
    fn plans_hold_their_properties(hosts in 1usize..8, resources in 0usize..30, seed in any::<u64>()) {
        check(&generate(hosts, resources, seed))?;
    }
}

/// Replays one case printed by a failure: `HAFEN_PROPTEST_CASE=hosts,resources,seed`.
#[test]
fn replay_case_from_environment() {
    let Ok(case) = std::env::var("HAFEN_PROPTEST_CASE") else {
        return;
    };
    let parts: Vec<u64> = case
        .split(',')
        .map(|part| part.trim().parse().expect("a number"))
        .collect();
    let view = generate(parts[0] as usize, parts[1] as usize, parts[2]);
    println!(
        "{}",
        serde_json::to_string_pretty(&view).unwrap_or_default()
    );
    if let Ok(plan) = schedule(
        &view,
        &Request {
            now_ms: 1500,
            include_scores: false,
        },
    ) {
        plan.actions.iter().for_each(|action| println!("{action}"));
        plan.pending
            .iter()
            .for_each(|pending| println!("pending {pending}"));
        if let Ok(name) = std::env::var("HAFEN_EXPLAIN") {
            let request = Request {
                now_ms: 1500,
                include_scores: false,
            };
            if let Ok(explanation) = hafen_scheduler::explain(&view, &request, &name) {
                println!("{explanation}");
            }
            if let Ok(explanation) =
                hafen_scheduler::explain(&apply_plan(&view, &plan), &request, &name)
            {
                println!("after: {explanation}");
            }
        }
        for resource in &apply_plan(&view, &plan).resources {
            println!(
                "after {} {:?} {:?} managed={}",
                resource.name, resource.instances, resource.utilization, resource.managed
            );
        }
    }
    if let Err(error) = check(&view) {
        panic!("{error}");
    }
}
