//! Validation of configured pools, templates and resources: every refusal names the field.

use crate::config::{ClusterConfig, ConfigError};
use crate::names::NodeName;
use crate::resource::{
    ColocationConstraint, GroupConfig, LocationConstraint, OrderingConstraint, PoolConfig,
    ResourceConfig, ResourceKind, TemplateConfig, VmBoot, VmConfig,
};

fn invalid(message: String) -> ConfigError {
    ConfigError::Invalid(message)
}

/// Resource, pool, template and volume names follow node-name rules (they become file and process names).
pub fn name(what: &str, value: &str) -> Result<(), ConfigError> {
    NodeName::new(value.to_string())
        .map(|_| ())
        .map_err(|error| invalid(format!("{what}: {error}")))
}

fn absolute_path(what: &str, path: &str) -> Result<(), ConfigError> {
    if !path.starts_with('/') || path.contains("..") || path.chars().any(char::is_control) {
        return Err(invalid(format!(
            "{what} {path:?} must be an absolute path without '..'"
        )));
    }
    Ok(())
}

pub fn pool(pool: &PoolConfig) -> Result<(), ConfigError> {
    name("pool name", &pool.name)?;
    if pool.kind != "dir" {
        return Err(invalid(format!(
            "pool {}: kind {:?} is not supported (only dir)",
            pool.name, pool.kind
        )));
    }
    absolute_path(&format!("pool {} path", pool.name), &pool.path)
}

fn boot(what: &str, boot: &VmBoot) -> Result<(), ConfigError> {
    if let VmBoot::Kernel {
        kernel,
        initrd,
        cmdline,
    } = boot
    {
        absolute_path(&format!("{what} kernel"), kernel)?;
        if let Some(initrd) = initrd {
            absolute_path(&format!("{what} initrd"), initrd)?;
        }
        if cmdline.len() > 2048 || cmdline.chars().any(char::is_control) {
            return Err(invalid(format!(
                "{what} kernel command line must be at most 2048 printable characters"
            )));
        }
    }
    Ok(())
}

pub fn template(config: &ClusterConfig, template: &TemplateConfig) -> Result<(), ConfigError> {
    name("template name", &template.name)?;
    let what = format!("template {}", template.name);
    if !config.pools.contains_key(&template.pool) {
        return Err(ConfigError::NotFound(format!(
            "{what}: unknown pool {:?}",
            template.pool
        )));
    }
    if let Some(base) = &template.base_volume {
        name(&format!("{what} base volume"), base)?;
    }
    if template.disk_size_mib == 0 || template.disk_size_mib > 16 * 1024 * 1024 {
        return Err(invalid(format!(
            "{what}: disk_size_mib must be between 1 and 16777216"
        )));
    }
    memory_and_cpus(&what, template.memory_mib, template.vcpus)?;
    bridge(&what, &template.bridge)?;
    boot(&what, &template.boot)
}

fn memory_and_cpus(what: &str, memory_mib: u64, vcpus: u32) -> Result<(), ConfigError> {
    if !(32..=4 * 1024 * 1024).contains(&memory_mib) {
        return Err(invalid(format!(
            "{what}: memory_mib {memory_mib} must be between 32 and 4194304"
        )));
    }
    if !(1..=256).contains(&vcpus) {
        return Err(invalid(format!(
            "{what}: vcpus {vcpus} must be between 1 and 256"
        )));
    }
    Ok(())
}

fn bridge(what: &str, bridge: &str) -> Result<(), ConfigError> {
    let valid = !bridge.is_empty()
        && bridge.len() <= 15
        && bridge
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if !valid {
        return Err(invalid(format!(
            "{what}: bridge {bridge:?} is not a valid interface name"
        )));
    }
    Ok(())
}

fn mac(what: &str, mac: &str) -> Result<(), ConfigError> {
    let parts: Vec<&str> = mac.split(':').collect();
    let valid = parts.len() == 6
        && parts
            .iter()
            .all(|part| part.len() == 2 && part.chars().all(|c| c.is_ascii_hexdigit()))
        && u8::from_str_radix(parts[0], 16).is_ok_and(|first| first & 1 == 0);
    if !valid {
        return Err(invalid(format!(
            "{what}: mac {mac:?} is not a unicast MAC address"
        )));
    }
    Ok(())
}

fn vm(config: &ClusterConfig, what: &str, vm: &VmConfig) -> Result<(), ConfigError> {
    memory_and_cpus(what, vm.memory_mib, vm.vcpus)?;
    let uuid_ok = vm.uuid.len() == 36
        && vm.uuid.char_indices().all(|(index, c)| {
            if [8, 13, 18, 23].contains(&index) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    if !uuid_ok {
        return Err(invalid(format!(
            "{what}: uuid {:?} is not 8-4-4-4-12 hex",
            vm.uuid
        )));
    }
    for disk in &vm.disks {
        if !config.pools.contains_key(&disk.pool) {
            return Err(ConfigError::NotFound(format!(
                "{what}: unknown pool {:?}",
                disk.pool
            )));
        }
        name(&format!("{what} volume"), &disk.volume)?;
        if disk.format != "qcow2" && disk.format != "raw" {
            return Err(invalid(format!(
                "{what}: disk format {:?} must be qcow2 or raw",
                disk.format
            )));
        }
        if let Some(user) = config.volume_in_use(&disk.pool, &disk.volume) {
            return Err(ConfigError::Conflict(format!(
                "{what}: volume {}/{} is already used by {user}",
                disk.pool, disk.volume
            )));
        }
    }
    for nic in &vm.nics {
        mac(what, &nic.mac)?;
        bridge(what, &nic.bridge)?;
    }
    if vm.disks.is_empty() && matches!(vm.boot, VmBoot::Disk) {
        return Err(invalid(format!("{what}: boots from disk but has no disk")));
    }
    boot(what, &vm.boot)
}

fn ocf_resource(what: &str, ocf: &crate::resource::OcfResourceConfig) -> Result<(), ConfigError> {
    let word = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
            && !part.starts_with('.')
    };
    let parts: Vec<&str> = ocf.agent.split(':').collect();
    let is_ocf = parts.len() == 3 && parts[0] == "ocf" && word(parts[1]) && word(parts[2]);
    // A unit name as systemd allows it (`getty@tty1`, `foo\x2dbar.mount`), never a path.
    let is_systemd = ocf.agent.strip_prefix("systemd:").is_some_and(|unit| {
        !unit.is_empty()
            && !unit.starts_with('.')
            && unit.chars().all(|c| c.is_ascii_graphic() && c != '/')
    });
    if !(is_ocf || is_systemd) {
        return Err(invalid(format!(
            "{what}: agent {:?} is neither ocf:<provider>:<type> nor systemd:<unit>",
            ocf.agent
        )));
    }
    for (key, value) in &ocf.parameters {
        let key_ok = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !key_ok || value.chars().any(|c| c == '\0' || c == '\n') {
            return Err(invalid(format!("{what}: parameter {key:?} is malformed")));
        }
    }
    if !(1_000..=86_400_000).contains(&ocf.monitor_interval_ms) {
        return Err(invalid(format!(
            "{what}: monitor interval must be between 1 s and 24 h"
        )));
    }
    if !(1_000..=3_600_000).contains(&ocf.operation_timeout_ms) {
        return Err(invalid(format!(
            "{what}: operation timeout must be between 1 s and 1 h"
        )));
    }
    Ok(())
}

pub fn resource(config: &ClusterConfig, resource: &ResourceConfig) -> Result<(), ConfigError> {
    name("resource name", &resource.name)?;
    let what = format!("{} {}", resource.kind.name(), resource.name);
    if let Some(host) = &resource.preferred_host {
        name(&format!("{what} preferred host"), host)?;
    }
    if let Some(clone) = &resource.clone {
        if matches!(resource.kind, ResourceKind::Vm(_)) {
            return Err(invalid(format!(
                "{what}: a VM cannot be cloned (it would run twice)"
            )));
        }
        if clone.max == Some(0) || clone.node_max != 1 || !(1..=64).contains(&clone.promoted_max) {
            return Err(invalid(format!(
                "{what}: clone-max must be at least 1, clone-node-max 1 and promoted-max between 1 and 64"
            )));
        }
    }
    match &resource.kind {
        ResourceKind::Vm(config_vm) => vm(config, &what, config_vm),
        ResourceKind::Ocf(ocf) => ocf_resource(&what, ocf),
    }
}

/// ±INFINITY in scores.
pub const INFINITY: i64 = 1_000_000;

pub fn constraint(
    config: &ClusterConfig,
    constraint: &LocationConstraint,
) -> Result<(), ConfigError> {
    constraint_id(&constraint.id)?;
    constrained_resource(config, &constraint.id, &constraint.resource)?;
    name(
        &format!("constraint {} host", constraint.id),
        &constraint.host,
    )?;
    constraint_score(&constraint.id, constraint.score)
}

pub fn colocation(
    config: &ClusterConfig,
    constraint: &ColocationConstraint,
) -> Result<(), ConfigError> {
    constraint_id(&constraint.id)?;
    constrained_resource(config, &constraint.id, &constraint.resource)?;
    constrained_resource(config, &constraint.id, &constraint.with)?;
    if constraint.resource == constraint.with {
        return Err(invalid(format!(
            "constraint {}: {} cannot be colocated with itself",
            constraint.id, constraint.resource
        )));
    }
    constraint_score(&constraint.id, constraint.score)
}

pub fn ordering(
    config: &ClusterConfig,
    constraint: &OrderingConstraint,
) -> Result<(), ConfigError> {
    constraint_id(&constraint.id)?;
    constrained_resource(config, &constraint.id, &constraint.first)?;
    constrained_resource(config, &constraint.id, &constraint.then)?;
    if constraint.first == constraint.then {
        return Err(invalid(format!(
            "constraint {}: {} cannot be ordered after itself",
            constraint.id, constraint.first
        )));
    }
    Ok(())
}

pub fn group(config: &ClusterConfig, group: &GroupConfig) -> Result<(), ConfigError> {
    name("group name", &group.name)?;
    if config.resources.contains_key(&group.name) {
        return Err(ConfigError::Conflict(format!(
            "group {}: a resource has that name",
            group.name
        )));
    }
    if group.members.is_empty() {
        return Err(invalid(format!(
            "group {} needs at least one member",
            group.name
        )));
    }
    for (index, member) in group.members.iter().enumerate() {
        let Some(resource) = config.resources.get(member) else {
            return Err(ConfigError::NotFound(format!(
                "group {}: no resource named {member}",
                group.name
            )));
        };
        if resource.clone.is_some() {
            return Err(invalid(format!(
                "group {}: {member} is a clone; clones are not grouped",
                group.name
            )));
        }
        if group.members[..index].contains(member) {
            return Err(invalid(format!(
                "group {}: {member} is listed twice",
                group.name
            )));
        }
        if let Some(other) = config
            .groups
            .values()
            .find(|other| other.name != group.name && other.members.contains(member))
        {
            return Err(ConfigError::Conflict(format!(
                "group {}: {member} is a member of group {} already",
                group.name, other.name
            )));
        }
    }
    Ok(())
}

fn constraint_id(id: &str) -> Result<(), ConfigError> {
    let valid_id = !id.is_empty()
        && id.len() <= 100
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if !valid_id {
        return Err(invalid(format!(
            "constraint id {id:?} must be 1-100 letters, digits, '-', '_' or '.'"
        )));
    }
    Ok(())
}

fn constrained_resource(
    config: &ClusterConfig,
    id: &str,
    resource: &str,
) -> Result<(), ConfigError> {
    if !config.resources.contains_key(resource) {
        return Err(ConfigError::NotFound(format!(
            "constraint {id}: no resource named {resource}"
        )));
    }
    Ok(())
}

fn constraint_score(id: &str, score: i64) -> Result<(), ConfigError> {
    if !(-INFINITY..=INFINITY).contains(&score) {
        return Err(invalid(format!(
            "constraint {id}: score {score} must be between -INFINITY and INFINITY"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{OcfResourceConfig, TargetRole};

    fn agent_resource(agent: &str) -> ResourceConfig {
        ResourceConfig {
            name: "svc".to_string(),
            kind: ResourceKind::Ocf(OcfResourceConfig {
                agent: agent.to_string(),
                parameters: Default::default(),
                monitor_interval_ms: 10_000,
                operation_timeout_ms: 20_000,
            }),
            target_role: TargetRole::Stopped,
            priority: 0,
            preferred_host: None,
            clone: None,
            meta: Default::default(),
        }
    }

    #[test]
    fn clones_of_vms_and_empty_clones_are_refused() {
        let config = ClusterConfig::default();
        let mut clone = agent_resource("ocf:pacemaker:Stateful");
        clone.clone = Some(crate::resource::CloneConfig {
            max: Some(0),
            node_max: 1,
            promotable: true,
            promoted_max: 1,
        });
        let error = resource(&config, &clone).unwrap_err().to_string();
        assert!(error.contains("clone-max"), "{error}");
        clone.clone = Some(crate::resource::CloneConfig {
            max: None,
            node_max: 1,
            promotable: true,
            promoted_max: 1,
        });
        resource(&config, &clone).unwrap();
    }

    // Proves both agent classes are accepted and anything else, or a unit name that could
    // be a path, is refused naming the agent.
    #[test]
    fn resource_agents_are_ocf_or_systemd() {
        let config = ClusterConfig::default();
        for agent in [
            "ocf:heartbeat:Dummy",
            "systemd:cron",
            "systemd:getty@tty1.service",
        ] {
            resource(&config, &agent_resource(agent)).unwrap();
        }
        for agent in [
            "lsb:cron",
            "ocf:heartbeat",
            "systemd:",
            "systemd:../x",
            "systemd:.x",
        ] {
            let error = resource(&config, &agent_resource(agent)).unwrap_err();
            assert!(error.to_string().contains(agent), "{error}");
        }
    }
}
