//! The replicated state as the scheduler sees it: hosts with their states, resources with their instances.

use crate::property::PropertyValue;
use crate::resource::{Phase, ResourceKind, TargetRole};
use crate::state::{ClusterState, NodeMode, NodeRole};
use hafen_scheduler::{
    ClusterOptions, ClusterView, Constraints, FailCount, Host, HostState, Instance, Location,
    PlacementStrategy, Resource, Score,
};
use std::collections::BTreeSet;

/// The score of a VM's preferred host (`vm create --host`): enough to win against default
/// stickiness, so a VM returns home when its host comes back, unless stickiness says stay.
pub const PREFERRED_HOST_SCORE: i64 = 100;

/// The capacity of a node that has not declared one: large enough for anything.
const UNDECLARED: u64 = 1 << 40;

/// Builds the scheduler's view. `alive` are the nodes the leader hears from; a member it does
/// not hear from is `unclean`, so its resources are neither touched nor started elsewhere
/// until it is fenced (I2). Witnesses are not hosts: they run nothing.
pub fn scheduler_view(state: &ClusterState, alive: &BTreeSet<String>, now_ms: u64) -> ClusterView {
    let config = &state.config;
    let placement_strategy = match config.property("placement-strategy") {
        Ok(PropertyValue::Text(text)) if text == "default" => PlacementStrategy::Default,
        Ok(PropertyValue::Text(text)) if text == "utilization" => PlacementStrategy::Utilization,
        Ok(PropertyValue::Text(text)) if text == "minimal" => PlacementStrategy::Minimal,
        _ => PlacementStrategy::Balanced,
    };
    let options = ClusterOptions {
        placement_strategy,
        default_stickiness: Score::new(config.integer("default-resource-stickiness")),
        symmetric: !matches!(
            config.property("symmetric-cluster"),
            Ok(PropertyValue::Bool(false))
        ),
        maintenance_mode: matches!(
            config.property("maintenance-mode"),
            Ok(PropertyValue::Bool(true))
        ),
        default_migration_threshold: Some(3),
    };
    let hosts = state
        .nodes
        .values()
        .filter(|node| node.role == NodeRole::Member)
        .map(|node| Host {
            name: node.name.to_string(),
            state: match (alive.contains(node.name.as_str()), node.mode) {
                _ if matches!(node.fencing, crate::fencing::Fencing::Fenced { .. }) => {
                    HostState::Fenced
                }
                _ if matches!(node.fencing, crate::fencing::Fencing::Unclean { .. }) => {
                    HostState::Unclean
                }
                (false, _) => HostState::Unclean,
                (true, NodeMode::Online) => HostState::Online,
                (true, NodeMode::Standby) => HostState::Standby,
                (true, NodeMode::Maintenance) => HostState::Maintenance,
            },
            // Not declared yet (a node of an older version, a heartbeat still to come): no
            // limit, rather than nothing fitting.
            capacity: if node.capacity.is_empty() {
                [("cpu", UNDECLARED), ("memory", UNDECLARED)]
                    .into_iter()
                    .map(|(key, value)| (key.to_string(), value))
                    .collect()
            } else {
                node.capacity.clone()
            },
            ..Host::default()
        })
        .collect();
    let mut locations = Vec::new();
    let mut clones = Vec::new();
    let resources = config
        .resources
        .values()
        .map(|resource| {
            let runtime = state
                .runtime
                .get(&resource.name)
                .cloned()
                .unwrap_or_default();
            if let Some(host) = &resource.preferred_host {
                locations.push(Location {
                    id: format!("{}-prefers-{host}", resource.name),
                    resource: resource.name.clone(),
                    host: Some(host.clone()),
                    score: Some(Score::new(PREFERRED_HOST_SCORE)),
                    ..Location::default()
                });
            }
            let instances = if resource.clone.is_some() {
                runtime
                    .instances
                    .iter()
                    .filter(|(_, instance)| instance.phase != Phase::Stopped)
                    .map(|(host, instance)| Instance {
                        host: host.clone(),
                        promoted: instance.promoted,
                        failed: instance.phase == Phase::Failed,
                        pending: matches!(instance.phase, Phase::Starting | Phase::Stopping),
                    })
                    .collect()
            } else {
                match (&runtime.phase, &runtime.host) {
                    (Phase::Stopped, _) | (_, None) => Vec::new(),
                    (Phase::Failed, Some(host)) => vec![Instance {
                        host: host.clone(),
                        failed: true,
                        ..Instance::default()
                    }],
                    (Phase::Starting | Phase::Stopping, Some(host)) => vec![Instance {
                        host: host.clone(),
                        pending: true,
                        ..Instance::default()
                    }],
                    (_, Some(host)) => vec![Instance::on(host.clone())],
                }
            };
            if let Some(clone) = resource.clone {
                clones.push(hafen_scheduler::ResourceClone {
                    name: format!("{}-clone", resource.name),
                    resource: resource.name.clone(),
                    max: clone.max,
                    node_max: clone.node_max,
                    promotable: clone.promotable,
                    promoted_max: clone.promoted_max,
                });
            }
            let mut scheduled = Resource::new(resource.name.clone());
            scheduled.kind = resource.kind.name().to_string();
            scheduled.instances = instances;
            scheduled.target_role = match resource.target_role {
                TargetRole::Started => hafen_scheduler::TargetRole::Started,
                TargetRole::Stopped => hafen_scheduler::TargetRole::Stopped,
            };
            scheduled.priority = resource.priority;
            scheduled.allow_migrate = matches!(resource.kind, ResourceKind::Vm(_));
            scheduled.stickiness = resource.meta.stickiness.map(Score::new);
            scheduled.migration_threshold = resource.meta.migration_threshold;
            if let ResourceKind::Vm(vm) = &resource.kind {
                scheduled.utilization = [
                    ("cpu".to_string(), u64::from(vm.vcpus)),
                    ("memory".to_string(), vm.memory_mib),
                ]
                .into();
            }
            scheduled.fail_counts = runtime
                .fail_counts
                .iter()
                .map(|(host, count)| {
                    (
                        host.clone(),
                        FailCount {
                            count: *count,
                            last_failure_ms: 0,
                        },
                    )
                })
                .collect();
            scheduled
        })
        .collect();
    for constraint in config.constraints.values() {
        if constraint
            .expires_ms
            .is_some_and(|expires_ms| expires_ms <= now_ms)
        {
            continue;
        }
        locations.push(Location {
            id: constraint.id.clone(),
            resource: constraint.resource.clone(),
            host: Some(constraint.host.clone()),
            score: Some(Score::new(constraint.score)),
            ..Location::default()
        });
    }
    let colocations = config
        .colocations
        .values()
        .map(|constraint| hafen_scheduler::Colocation {
            id: constraint.id.clone(),
            dependent: constraint.resource.clone(),
            primary: constraint.with.clone(),
            score: Score::new(constraint.score),
            dependent_role: hafen_scheduler::Role::default(),
            primary_role: hafen_scheduler::Role::default(),
            influence: true,
        })
        .collect();
    let orderings = config
        .orderings
        .values()
        .map(|constraint| hafen_scheduler::Ordering {
            id: constraint.id.clone(),
            first: constraint.first.clone(),
            then: constraint.then.clone(),
            kind: match constraint.kind {
                crate::resource::OrderingKind::Mandatory => {
                    hafen_scheduler::OrderingKind::Mandatory
                }
                crate::resource::OrderingKind::Optional => hafen_scheduler::OrderingKind::Optional,
            },
            symmetrical: constraint.symmetrical,
        })
        .collect();
    let groups = config
        .groups
        .values()
        .map(|group| hafen_scheduler::Group {
            name: group.name.clone(),
            members: group.members.clone(),
        })
        .collect();
    ClusterView {
        options,
        hosts,
        resources,
        clones,
        groups,
        constraints: Constraints {
            locations,
            colocations,
            orderings,
            ..Constraints::default()
        },
        ..ClusterView::default()
    }
}

/// An online member (or witness) record for tests.
#[cfg(test)]
fn test_node(id: u64, name: &str, role: NodeRole) -> (crate::NodeName, crate::NodeRecord) {
    let key = crate::NodeName::new(name).unwrap();
    let record = crate::NodeRecord {
        name: key.clone(),
        node_id: id,
        address: format!("127.0.0.1:{}", 7000 + id),
        role,
        joined_ms: 0,
        mode: NodeMode::Online,
        fencing: crate::fencing::Fencing::None,
        self_fencing: None,
        capacity: Default::default(),
    };
    (key, record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unheard_member_is_unclean_and_a_witness_is_no_host() {
        let mut state = ClusterState::default();
        for (id, name, role) in [
            (1, "alpha", NodeRole::Member),
            (2, "beta", NodeRole::Member),
            (3, "gamma", NodeRole::Witness),
        ] {
            let (key, record) = test_node(id, name, role);
            state.nodes.insert(key, record);
        }
        let alive: BTreeSet<String> = ["alpha".to_string()].into();
        let view = scheduler_view(&state, &alive, 0);
        let states: Vec<(String, HostState)> = view
            .hosts
            .iter()
            .map(|host| (host.name.clone(), host.state))
            .collect();
        assert_eq!(
            states,
            vec![
                ("alpha".into(), HostState::Online),
                ("beta".into(), HostState::Unclean)
            ]
        );
    }
}

#[cfg(test)]
mod clone_tests {
    use super::*;
    use crate::resource::{CloneConfig, InstanceState, OcfResourceConfig, ResourceConfig};

    #[test]
    fn a_returning_host_gets_a_clone_instance() {
        let mut state = ClusterState::default();
        for (id, name) in [(1, "node1"), (2, "node2"), (3, "node3")] {
            let (key, record) = test_node(id, name, NodeRole::Member);
            state.nodes.insert(key, record);
        }
        state.config.resources.insert(
            "db".into(),
            ResourceConfig {
                name: "db".into(),
                kind: ResourceKind::Ocf(OcfResourceConfig {
                    agent: "ocf:pacemaker:Stateful".into(),
                    parameters: Default::default(),
                    monitor_interval_ms: 1000,
                    operation_timeout_ms: 20_000,
                }),
                target_role: TargetRole::Started,
                priority: 0,
                preferred_host: None,
                clone: Some(CloneConfig {
                    max: None,
                    node_max: 1,
                    promotable: true,
                    promoted_max: 1,
                }),
                meta: Default::default(),
            },
        );
        let runtime = state.runtime.entry("db".into()).or_default();
        runtime.phase = Phase::Running;
        runtime.fail_counts.insert("node1".into(), 1);
        runtime.instances.insert(
            "node2".into(),
            InstanceState {
                phase: Phase::Running,
                promoted: true,
            },
        );
        runtime.instances.insert(
            "node3".into(),
            InstanceState {
                phase: Phase::Running,
                promoted: false,
            },
        );
        let alive: BTreeSet<String> = ["node1", "node2", "node3"]
            .iter()
            .map(|name| name.to_string())
            .collect();
        let view = scheduler_view(&state, &alive, 0);
        let plan = hafen_scheduler::schedule(
            &view,
            &hafen_scheduler::Request {
                now_ms: 0,
                include_scores: true,
            },
        )
        .unwrap();
        println!("{}", serde_json::to_string_pretty(&plan).unwrap());
        assert!(
            plan.actions
                .iter()
                .any(|action| action.to_string().contains("node1")),
            "{plan:?}"
        );
    }

    // Proves VMs carry their vCPUs and memory as utilization and a declared capacity limits
    // what a host takes, while a host that declared nothing sets no limit.
    #[test]
    fn vms_use_declared_capacity_and_undeclared_hosts_set_no_limit() {
        let mut state = ClusterState::default();
        for (id, name) in [(1, "alpha"), (2, "beta")] {
            let (key, record) = test_node(id, name, NodeRole::Member);
            state.nodes.insert(key, record);
        }
        state
            .nodes
            .values_mut()
            .find(|node| node.name.as_str() == "alpha")
            .unwrap()
            .capacity = [("cpu".to_string(), 2), ("memory".to_string(), 1024)].into();
        let vm = crate::resource::VmConfig {
            uuid: "00000000-0000-0000-0000-000000000001".into(),
            vcpus: 2,
            memory_mib: 768,
            machine: "pc".into(),
            cpu_model: "host".into(),
            disks: Vec::new(),
            nics: Vec::new(),
            boot: crate::resource::VmBoot::Disk,
            address: None,
        };
        for name in ["vm1", "vm2"] {
            state.config.resources.insert(
                name.into(),
                crate::resource::ResourceConfig {
                    name: name.into(),
                    kind: ResourceKind::Vm(crate::resource::VmConfig {
                        uuid: format!("{name}-uuid"),
                        ..vm.clone()
                    }),
                    target_role: TargetRole::Started,
                    priority: 0,
                    preferred_host: Some("alpha".into()),
                    clone: None,
                    meta: Default::default(),
                },
            );
        }
        let alive: BTreeSet<String> = ["alpha".to_string(), "beta".to_string()].into();
        let view = scheduler_view(&state, &alive, 0);
        assert_eq!(view.resources[0].utilization["memory"], 768);
        assert_eq!(view.resources[0].utilization["cpu"], 2);
        assert_eq!(view.hosts[0].capacity["memory"], 1024);
        assert!(view.hosts[1].capacity["memory"] >= UNDECLARED);
        // Both prefer alpha; only one fits there, the other goes to beta.
        let plan = hafen_scheduler::schedule(&view, &hafen_scheduler::Request::default()).unwrap();
        let hosts: BTreeSet<String> = plan
            .actions
            .iter()
            .filter_map(|action| match &action.kind {
                hafen_scheduler::ActionKind::Start { host } => Some(host.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            hosts,
            BTreeSet::from(["alpha".to_string(), "beta".to_string()])
        );
    }
}
