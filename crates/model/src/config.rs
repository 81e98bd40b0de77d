//! The versioned cluster configuration: what operators declare (properties, pools, templates, resources, constraints).
//!
//! Membership (nodes, tokens, credentials) is deliberately not part of it: rolling the
//! configuration back must never evict a host or revive a used join token.

use crate::property::{self, PropertyError, PropertyValue};
use crate::resource::{
    ColocationConstraint, GroupConfig, LocationConstraint, OrderingConstraint, PoolConfig,
    ResourceConfig, ResourceKind, TargetRole, TemplateConfig, VmBoot,
};
use crate::validate::name;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The declarative configuration, versioned by the state's epoch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterConfig {
    /// Properties set explicitly; a missing key means its default.
    pub properties: BTreeMap<String, PropertyValue>,
    #[serde(default)]
    pub pools: BTreeMap<String, PoolConfig>,
    #[serde(default)]
    pub templates: BTreeMap<String, TemplateConfig>,
    #[serde(default)]
    pub resources: BTreeMap<String, ResourceConfig>,
    /// Location constraints by id.
    #[serde(default)]
    pub constraints: BTreeMap<String, LocationConstraint>,
    /// Colocation constraints by id (ids are unique across every kind).
    #[serde(default)]
    pub colocations: BTreeMap<String, ColocationConstraint>,
    /// Ordering constraints by id.
    #[serde(default)]
    pub orderings: BTreeMap<String, OrderingConstraint>,
    /// Groups by name.
    #[serde(default)]
    pub groups: BTreeMap<String, GroupConfig>,
    #[serde(default)]
    pub fence_devices: BTreeMap<String, crate::fencing::FenceDeviceConfig>,
}

/// Why a configuration change is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Property(#[from] PropertyError),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
}

/// One validated change of the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ConfigChange {
    SetProperty {
        key: String,
        value: String,
    },
    UnsetProperty {
        key: String,
    },
    DefinePool {
        pool: PoolConfig,
    },
    DefineTemplate {
        template: TemplateConfig,
    },
    AddResource {
        resource: ResourceConfig,
    },
    RemoveResource {
        name: String,
    },
    SetTargetRole {
        name: String,
        role: TargetRole,
    },
    /// Sets (`Some`) or unsets (`None`) meta-attributes of a resource, all or none.
    SetMeta {
        name: String,
        values: BTreeMap<String, Option<String>>,
    },
    /// Adds a location constraint, replacing one with the same id.
    SetConstraint {
        constraint: LocationConstraint,
    },
    /// Adds a colocation constraint, replacing one with the same id.
    SetColocation {
        constraint: ColocationConstraint,
    },
    /// Adds an ordering constraint, replacing one with the same id.
    SetOrdering {
        constraint: OrderingConstraint,
    },
    /// Removes a constraint of any kind.
    RemoveConstraint {
        id: String,
    },
    /// Defines a group, replacing one with the same name.
    SetGroup {
        group: GroupConfig,
    },
    /// Removes a group (its members stay, ungrouped).
    RemoveGroup {
        name: String,
    },
    SetFenceDevice {
        device: crate::fencing::FenceDeviceConfig,
    },
    RemoveFenceDevice {
        name: String,
    },
}

impl ConfigChange {
    /// A one-line description for history listings.
    pub fn summary(&self) -> String {
        match self {
            ConfigChange::SetProperty { key, value } => format!("set {key}={value}"),
            ConfigChange::UnsetProperty { key } => format!("unset {key}"),
            ConfigChange::DefinePool { pool } => format!("define pool {}", pool.name),
            ConfigChange::DefineTemplate { template } => {
                format!("define template {}", template.name)
            }
            ConfigChange::AddResource { resource } => {
                format!("add {} {}", resource.kind.name(), resource.name)
            }
            ConfigChange::RemoveResource { name } => format!("remove resource {name}"),
            ConfigChange::SetTargetRole { name, role } => {
                format!("set target-role of {name} to {role:?}")
            }
            ConfigChange::SetMeta { name, values } => {
                let listed: Vec<String> = values
                    .iter()
                    .map(|(key, value)| match value {
                        Some(value) => format!("{key}={value}"),
                        None => format!("{key} unset"),
                    })
                    .collect();
                format!("meta of {name}: {}", listed.join(", "))
            }
            ConfigChange::SetConstraint { constraint } => format!(
                "constraint {}: {} on {} scores {}",
                constraint.id, constraint.resource, constraint.host, constraint.score
            ),
            ConfigChange::SetColocation { constraint } => format!(
                "constraint {}: {} with {} scores {}",
                constraint.id, constraint.resource, constraint.with, constraint.score
            ),
            ConfigChange::SetOrdering { constraint } => format!(
                "constraint {}: {} then {} ({:?}{})",
                constraint.id,
                constraint.first,
                constraint.then,
                constraint.kind,
                if constraint.symmetrical {
                    ""
                } else {
                    ", asymmetrical"
                }
            ),
            ConfigChange::RemoveConstraint { id } => format!("remove constraint {id}"),
            ConfigChange::SetGroup { group } => {
                format!("group {}: {}", group.name, group.members.join(", "))
            }
            ConfigChange::RemoveGroup { name } => format!("remove group {name}"),
            ConfigChange::SetFenceDevice { device } => {
                format!("fence device {} ({})", device.name, device.agent)
            }
            ConfigChange::RemoveFenceDevice { name } => format!("remove fence device {name}"),
        }
    }
}

impl ClusterConfig {
    /// Constraint ids are unique across kinds: `id` may be (re)set as a `kind` constraint
    /// only if no constraint of another kind has it.
    fn constraint_id_free(&self, id: &str, kind: &str) -> Result<(), ConfigError> {
        let taken_by = if kind != "location" && self.constraints.contains_key(id) {
            Some("a location")
        } else if kind != "colocation" && self.colocations.contains_key(id) {
            Some("a colocation")
        } else if kind != "order" && self.orderings.contains_key(id) {
            Some("an order")
        } else {
            None
        };
        match taken_by {
            Some(other) => Err(ConfigError::Conflict(format!(
                "constraint id {id} is taken by {other} constraint"
            ))),
            None => Ok(()),
        }
    }

    /// The effective value of a property: the one set, else its default.
    pub fn property(&self, key: &str) -> Result<PropertyValue, PropertyError> {
        let def = property::lookup(key)?;
        Ok(self
            .properties
            .get(key)
            .cloned()
            .unwrap_or_else(|| property::default_value(def)))
    }

    /// The effective value of an integer property (panics on a non-integer key: that is a bug).
    pub fn integer(&self, key: &str) -> i64 {
        match self.property(key) {
            Ok(PropertyValue::Integer(value)) => value,
            other => panic!("property {key} is not an integer: {other:?}"),
        }
    }

    /// The configuration with `change` applied, or the reason it is refused.
    pub fn with_change(&self, change: &ConfigChange) -> Result<ClusterConfig, ConfigError> {
        let mut next = self.clone();
        match change {
            ConfigChange::SetProperty { key, value } => {
                let parsed = property::parse(key, value)?;
                next.properties.insert(key.clone(), parsed);
            }
            ConfigChange::UnsetProperty { key } => {
                property::lookup(key)?;
                next.properties.remove(key);
            }
            ConfigChange::DefinePool { pool } => {
                crate::validate::pool(pool)?;
                next.pools.insert(pool.name.clone(), pool.clone());
            }
            ConfigChange::DefineTemplate { template } => {
                crate::validate::template(self, template)?;
                next.templates
                    .insert(template.name.clone(), template.clone());
            }
            ConfigChange::AddResource { resource } => {
                if self.groups.contains_key(&resource.name) {
                    return Err(ConfigError::Conflict(format!(
                        "a group named {} exists already",
                        resource.name
                    )));
                }
                if self.resources.contains_key(&resource.name) {
                    return Err(ConfigError::Conflict(format!(
                        "a resource named {} exists already",
                        resource.name
                    )));
                }
                crate::validate::resource(self, resource)?;
                next.resources
                    .insert(resource.name.clone(), resource.clone());
            }
            ConfigChange::RemoveResource { name } => {
                if next.resources.remove(name).is_none() {
                    return Err(ConfigError::NotFound(format!("no resource named {name}")));
                }
                // A constraint of a deleted resource would dangle: it goes with it.
                next.constraints
                    .retain(|_, constraint| constraint.resource != *name);
                next.colocations.retain(|_, constraint| {
                    constraint.resource != *name && constraint.with != *name
                });
                next.orderings
                    .retain(|_, constraint| constraint.first != *name && constraint.then != *name);
                for group in next.groups.values_mut() {
                    group.members.retain(|member| member != name);
                }
                next.groups.retain(|_, group| !group.members.is_empty());
            }
            ConfigChange::SetConstraint { constraint } => {
                crate::validate::constraint(self, constraint)?;
                self.constraint_id_free(&constraint.id, "location")?;
                next.constraints
                    .insert(constraint.id.clone(), constraint.clone());
            }
            ConfigChange::SetColocation { constraint } => {
                crate::validate::colocation(self, constraint)?;
                self.constraint_id_free(&constraint.id, "colocation")?;
                next.colocations
                    .insert(constraint.id.clone(), constraint.clone());
            }
            ConfigChange::SetOrdering { constraint } => {
                crate::validate::ordering(self, constraint)?;
                self.constraint_id_free(&constraint.id, "order")?;
                next.orderings
                    .insert(constraint.id.clone(), constraint.clone());
            }
            ConfigChange::SetGroup { group } => {
                crate::validate::group(self, group)?;
                next.groups.insert(group.name.clone(), group.clone());
            }
            ConfigChange::RemoveGroup { name } => {
                if next.groups.remove(name).is_none() {
                    return Err(ConfigError::NotFound(format!("no group named {name}")));
                }
            }
            ConfigChange::RemoveConstraint { id } => {
                let removed = next.constraints.remove(id).is_some()
                    || next.colocations.remove(id).is_some()
                    || next.orderings.remove(id).is_some();
                if !removed {
                    return Err(ConfigError::NotFound(format!("no constraint with id {id}")));
                }
            }
            ConfigChange::SetFenceDevice { device } => {
                name("fence device name", &device.name)?;
                let agent_ok = device.agent.starts_with("fence_")
                    && device.agent.len() <= 64
                    && device
                        .agent
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if !agent_ok {
                    return Err(ConfigError::Invalid(format!(
                        "fence device {}: agent {:?} must be a fence_* program name",
                        device.name, device.agent
                    )));
                }
                next.fence_devices
                    .insert(device.name.clone(), device.clone());
            }
            ConfigChange::RemoveFenceDevice { name: device } => {
                if next.fence_devices.remove(device).is_none() {
                    return Err(ConfigError::NotFound(format!(
                        "no fence device named {device}"
                    )));
                }
            }
            ConfigChange::SetTargetRole { name, role } => {
                let Some(resource) = next.resources.get_mut(name) else {
                    return Err(ConfigError::NotFound(format!("no resource named {name}")));
                };
                resource.target_role = *role;
            }
            ConfigChange::SetMeta { name, values } => {
                let Some(resource) = next.resources.get_mut(name) else {
                    return Err(ConfigError::NotFound(format!("no resource named {name}")));
                };
                if values.is_empty() {
                    return Err(ConfigError::Invalid(format!(
                        "{name}: no meta-attribute given"
                    )));
                }
                for (key, value) in values {
                    resource
                        .meta
                        .set(key, value.as_deref())
                        .map_err(|reason| ConfigError::Invalid(format!("{name}: {reason}")))?;
                }
            }
        }
        Ok(next)
    }

    /// Whether a volume of `pool` is used by any VM's disks.
    pub fn volume_in_use(&self, pool: &str, volume: &str) -> Option<&str> {
        self.resources
            .values()
            .find_map(|resource| match &resource.kind {
                ResourceKind::Vm(vm) => vm
                    .disks
                    .iter()
                    .any(|disk| disk.pool == pool && disk.volume == volume)
                    .then_some(resource.name.as_str()),
                ResourceKind::Ocf(_) => None,
            })
    }

    /// Files a VM boots from, for existence checks outside the pure core.
    pub fn boot_files(boot: &VmBoot) -> Vec<&str> {
        match boot {
            VmBoot::Disk => Vec::new(),
            VmBoot::Kernel { kernel, initrd, .. } => {
                let mut files = vec![kernel.as_str()];
                files.extend(initrd.as_deref());
                files
            }
        }
    }

    /// Flattens the configuration to `path -> value` lines, the unit of `config diff`.
    pub fn flatten(&self) -> BTreeMap<String, String> {
        let value = serde_json::to_value(self).expect("configuration serializes");
        let mut lines = BTreeMap::new();
        flatten_into(&mut lines, String::new(), &value);
        lines
    }
}

fn flatten_into(lines: &mut BTreeMap<String, String>, prefix: String, value: &serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, child) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten_into(lines, path, child);
            }
        }
        serde_json::Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                flatten_into(lines, format!("{prefix}[{index}]"), child);
            }
        }
        serde_json::Value::String(text) => {
            lines.insert(prefix, text.clone());
        }
        other => {
            lines.insert(prefix, other.to_string());
        }
    }
}

/// One line of a configuration diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffLine {
    pub path: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// What changed between two configurations, path by path in sorted order.
pub fn diff(before: &ClusterConfig, after: &ClusterConfig) -> Vec<DiffLine> {
    let left = before.flatten();
    let right = after.flatten();
    let mut paths: Vec<&String> = left.keys().chain(right.keys()).collect();
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .filter(|path| left.get(*path) != right.get(*path))
        .map(|path| DiffLine {
            path: path.clone(),
            before: left.get(path).cloned(),
            after: right.get(path).cloned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::OrderingKind;

    fn dummy(name: &str) -> ConfigChange {
        ConfigChange::AddResource {
            resource: crate::resource::test_agent_resource(name, "ocf:heartbeat:Dummy"),
        }
    }

    fn order(id: &str, first: &str, then: &str) -> ConfigChange {
        ConfigChange::SetOrdering {
            constraint: OrderingConstraint {
                id: id.to_string(),
                first: first.to_string(),
                then: then.to_string(),
                kind: OrderingKind::Mandatory,
                symmetrical: true,
            },
        }
    }

    fn colocate(id: &str, resource: &str, with: &str, score: i64) -> ConfigChange {
        ConfigChange::SetColocation {
            constraint: ColocationConstraint {
                id: id.to_string(),
                resource: resource.to_string(),
                with: with.to_string(),
                score,
            },
        }
    }

    #[test]
    fn colocations_and_orderings_are_validated_share_ids_and_go_with_their_resources() {
        let mut config = ClusterConfig::default();
        for change in [dummy("db"), dummy("web"), dummy("cache")] {
            config = config.with_change(&change).unwrap();
        }
        config = config
            .with_change(&order("db-then-web", "db", "web"))
            .unwrap();
        config = config
            .with_change(&colocate("web-with-db", "web", "db", INFINITY_SCORE))
            .unwrap();
        config = config
            .with_change(&colocate("cache-with-db", "cache", "db", 500))
            .unwrap();
        for (bad, says) in [
            (order("x", "db", "nothing"), "no resource named nothing"),
            (order("x", "db", "db"), "ordered after itself"),
            (colocate("x", "web", "web", 10), "colocated with itself"),
            (
                colocate("x", "web", "db", 2_000_000),
                "between -INFINITY and INFINITY",
            ),
            (
                colocate("db-then-web", "web", "db", 10),
                "taken by an order constraint",
            ),
            (order("bad id", "db", "web"), "constraint id"),
        ] {
            let error = config.with_change(&bad).unwrap_err().to_string();
            assert!(error.contains(says), "{error}");
        }
        // A resource's constraints go with it; a constraint of any kind is removed by id.
        let without_db = config
            .with_change(&ConfigChange::RemoveResource { name: "db".into() })
            .unwrap();
        assert!(without_db.orderings.is_empty() && without_db.colocations.is_empty());
        let without_order = config
            .with_change(&ConfigChange::RemoveConstraint {
                id: "db-then-web".into(),
            })
            .unwrap();
        assert!(without_order.orderings.is_empty());
        assert_eq!(without_order.colocations.len(), 2);
        // The scheduler sees them.
        let state = crate::ClusterState {
            config,
            ..crate::ClusterState::default()
        };
        let view = crate::placement::scheduler_view(&state, &Default::default(), 0);
        assert_eq!(view.constraints.orderings.len(), 1);
        assert_eq!(view.constraints.orderings[0].then, "web");
        let colocation = &view.constraints.colocations[1];
        assert_eq!(
            (colocation.dependent.as_str(), colocation.primary.as_str()),
            ("web", "db")
        );
        assert_eq!(
            colocation.score,
            hafen_scheduler::Score::new(INFINITY_SCORE)
        );
    }

    const INFINITY_SCORE: i64 = crate::validate::INFINITY;

    fn group(name: &str, members: &[&str]) -> ConfigChange {
        ConfigChange::SetGroup {
            group: GroupConfig {
                name: name.to_string(),
                members: members.iter().map(|member| member.to_string()).collect(),
            },
        }
    }

    // Proves meta-attributes are set and unset all or none, refuse unknown keys and bad
    // values naming them, and reach the scheduler.
    #[test]
    fn meta_attributes_apply_all_or_none_and_reach_the_scheduler() {
        let mut config = ClusterConfig::default().with_change(&dummy("db")).unwrap();
        let meta = |pairs: &[(&str, Option<&str>)]| ConfigChange::SetMeta {
            name: "db".into(),
            values: pairs
                .iter()
                .map(|(key, value)| (key.to_string(), value.map(str::to_string)))
                .collect(),
        };
        config = config
            .with_change(&meta(&[
                ("resource-stickiness", Some("INFINITY")),
                ("migration-threshold", Some("1")),
            ]))
            .unwrap();
        for (bad, says) in [
            (
                meta(&[("resource-stickiness", Some("5")), ("colour", Some("red"))]),
                "colour",
            ),
            (
                meta(&[("migration-threshold", Some("0"))]),
                "migration-threshold",
            ),
            (
                meta(&[("resource-stickiness", Some("lots"))]),
                "resource-stickiness",
            ),
            (meta(&[]), "no meta-attribute"),
        ] {
            let error = config.with_change(&bad).unwrap_err().to_string();
            assert!(error.contains(says), "{error}");
        }
        let state = crate::ClusterState {
            config: config.clone(),
            ..crate::ClusterState::default()
        };
        let view = crate::placement::scheduler_view(&state, &Default::default(), 0);
        assert_eq!(
            view.resources[0].stickiness,
            Some(hafen_scheduler::Score::new(1_000_000))
        );
        assert_eq!(view.resources[0].migration_threshold, Some(1));
        let unset = config
            .with_change(&meta(&[("resource-stickiness", None)]))
            .unwrap();
        assert_eq!(unset.resources["db"].meta.stickiness, None);
        assert_eq!(unset.resources["db"].meta.migration_threshold, Some(1));
    }

    #[test]
    fn groups_are_validated_and_lose_removed_members() {
        let mut config = ClusterConfig::default();
        for change in [dummy("ip"), dummy("app"), dummy("db")] {
            config = config.with_change(&change).unwrap();
        }
        config = config.with_change(&group("svc", &["ip", "app"])).unwrap();
        for (bad, says) in [
            (group("other", &["app"]), "member of group svc"),
            (group("other", &["nothing"]), "no resource named nothing"),
            (group("other", &["db", "db"]), "listed twice"),
            (group("other", &[]), "at least one member"),
            (group("db", &["ip"]), "a resource has that name"),
            (dummy("svc"), "a group named svc exists"),
        ] {
            let error = config.with_change(&bad).unwrap_err().to_string();
            assert!(error.contains(says), "{error}");
        }
        // Redefining a group may reorder or extend it.
        config = config
            .with_change(&group("svc", &["ip", "db", "app"]))
            .unwrap();
        let view = crate::placement::scheduler_view(
            &crate::ClusterState {
                config: config.clone(),
                ..crate::ClusterState::default()
            },
            &Default::default(),
            0,
        );
        assert_eq!(view.groups[0].members, ["ip", "db", "app"]);
        for member in ["db", "ip", "app"] {
            config = config
                .with_change(&ConfigChange::RemoveResource {
                    name: member.into(),
                })
                .unwrap();
        }
        assert!(config.groups.is_empty(), "an empty group goes");
    }

    #[test]
    fn diff_names_each_changed_path_once() {
        let base = ClusterConfig::default();
        let changed = base
            .with_change(&ConfigChange::SetProperty {
                key: "migration-limit".into(),
                value: "4".into(),
            })
            .unwrap();
        let lines = diff(&base, &changed);
        assert_eq!(
            lines,
            vec![DiffLine {
                path: "properties.migration-limit".into(),
                before: None,
                after: Some("4".into())
            }]
        );
        assert!(diff(&changed, &changed).is_empty());
    }
}
