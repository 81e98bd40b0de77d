//! The environment an OCF agent runs in: the standard's variables, the resource's parameters as `OCF_RESKEY_*`, and the `CRM_meta` values Pacemaker passes and agents read.
//!
//! The agent gets only this environment (not the daemon's), so a stray `OCF_RESKEY_*` in
//! the daemon's environment cannot leak into an operation.

use std::collections::BTreeMap;

use hafen_driver_api::resource::{
    Notification, NotifyOperation, NotifyPeer, NotifyTiming, OperationError, OperationOptions,
    ResourceInstance,
};

use crate::OcfConfig;
use crate::classify::EXIT_REASON_PREFIX;

/// The OCF resource agent API version this driver speaks.
const API_VERSION_MAJOR: &str = "1";
const API_VERSION_MINOR: &str = "1";

/// What one invocation needs beyond the driver's configuration.
pub(crate) struct Invocation<'a> {
    /// `OCF_RESOURCE_INSTANCE`.
    pub instance: &'a str,
    pub provider: &'a str,
    pub agent_type: &'a str,
    /// The action argument (`monitor`, `reload-agent`), also `CRM_meta_name`.
    pub action_name: &'a str,
    pub timeout_ms: u64,
    pub interval_ms: u64,
    pub depth: u32,
}

pub(crate) type Environment = BTreeMap<String, String>;

/// The variables every invocation gets, meta-data included.
pub(crate) fn base_environment(config: &OcfConfig, invocation: &Invocation<'_>) -> Environment {
    let state_dir = config.state_dir.to_string_lossy().into_owned();
    let mut environment = Environment::new();
    let mut set = |name: &str, value: String| {
        environment.insert(name.to_owned(), value);
    };
    set("PATH", config.path.clone());
    set("OCF_ROOT", config.ocf_root.to_string_lossy().into_owned());
    set("OCF_RA_VERSION_MAJOR", API_VERSION_MAJOR.to_owned());
    set("OCF_RA_VERSION_MINOR", API_VERSION_MINOR.to_owned());
    set("OCF_RESOURCE_INSTANCE", invocation.instance.to_owned());
    set("OCF_RESOURCE_TYPE", invocation.agent_type.to_owned());
    set("OCF_RESOURCE_PROVIDER", invocation.provider.to_owned());
    set("OCF_EXIT_REASON_PREFIX", EXIT_REASON_PREFIX.to_owned());
    // Agents keep their state files under these; the caller's state directory keeps
    // tests and several daemons on one machine apart.
    set("HA_RSCTMP", state_dir.clone());
    set("HA_VARRUN", state_dir);
    // The shell library then logs to stderr, which is captured for the event.
    set("HA_LOGFACILITY", "none".to_owned());
    set(
        "OCF_RESKEY_CRM_meta_name",
        invocation.action_name.to_owned(),
    );
    set(
        "OCF_RESKEY_CRM_meta_timeout",
        invocation.timeout_ms.to_string(),
    );
    set(
        "OCF_RESKEY_CRM_meta_interval",
        invocation.interval_ms.to_string(),
    );
    set("OCF_RESKEY_CRM_meta_on_node", config.node_name.clone());
    if invocation.depth > 0 {
        set("OCF_CHECK_LEVEL", invocation.depth.to_string());
    }
    environment
}

/// The full environment of a resource operation.
pub(crate) fn operation_environment(
    config: &OcfConfig,
    invocation: &Invocation<'_>,
    resource: &ResourceInstance,
    options: &OperationOptions,
) -> Result<Environment, OperationError> {
    let mut environment = Environment::new();
    for (name, value) in &resource.parameters {
        if !is_parameter_name(name) {
            return Err(OperationError::InvalidParameterName {
                resource: resource.name.clone(),
                name: name.clone(),
            });
        }
        check_value(resource, name, value)?;
        environment.insert(format!("OCF_RESKEY_{name}"), value.clone());
    }
    for (name, value) in &options.meta_attributes {
        if !is_meta_attribute_name(name) {
            return Err(OperationError::InvalidParameterName {
                resource: resource.name.clone(),
                name: name.clone(),
            });
        }
        check_value(resource, name, value)?;
        environment.insert(meta_variable(name), value.clone());
    }
    // The driver's own values come last so a parameter cannot override them.
    environment.extend(base_environment(config, invocation));
    Ok(environment)
}

/// `CRM_meta` names are the meta-attribute names with `-` turned into `_`, as Pacemaker
/// writes them (`clone-max` -> `OCF_RESKEY_CRM_meta_clone_max`).
pub(crate) fn meta_variable(name: &str) -> String {
    format!("OCF_RESKEY_CRM_meta_{}", name.replace('-', "_"))
}

pub(crate) fn migration_environment(source_node: &str, target_node: &str) -> Environment {
    Environment::from([
        (meta_variable("migrate_source"), source_node.to_owned()),
        (meta_variable("migrate_target"), target_node.to_owned()),
    ])
}

/// The notification variables Pacemaker sets for clone notifications, including the
/// `master`/`slave` spellings older agents still read.
pub(crate) fn notification_environment(notification: &Notification) -> Environment {
    let timing = match notification.timing {
        NotifyTiming::Pre => "pre",
        NotifyTiming::Post => "post",
    };
    let operation = match notification.operation {
        NotifyOperation::Start => "start",
        NotifyOperation::Stop => "stop",
        NotifyOperation::Promote => "promote",
        NotifyOperation::Demote => "demote",
    };
    let mut environment = Environment::from([
        (meta_variable("notify_type"), timing.to_owned()),
        (meta_variable("notify_operation"), operation.to_owned()),
    ]);
    let lists: [(&[&str], &[NotifyPeer]); 8] = [
        (&["start"], &notification.start),
        (&["stop"], &notification.stop),
        (&["promote"], &notification.promote),
        (&["demote"], &notification.demote),
        (&["active"], &notification.active),
        (&["inactive"], &notification.inactive),
        (&["promoted", "master"], &notification.promoted),
        (&["unpromoted", "slave"], &notification.unpromoted),
    ];
    for (names, peers) in lists {
        let instances = peers
            .iter()
            .map(|peer| peer.instance.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let nodes = peers
            .iter()
            .map(|peer| peer.node.as_deref().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(" ");
        for name in names {
            environment.insert(
                meta_variable(&format!("notify_{name}_resource")),
                instances.clone(),
            );
            environment.insert(
                meta_variable(&format!("notify_{name}_uname")),
                nodes.clone(),
            );
        }
    }
    environment
}

/// Parameter names become shell variable names, so only letters, digits and `_`.
fn is_parameter_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_meta_attribute_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn check_value(resource: &ResourceInstance, name: &str, value: &str) -> Result<(), OperationError> {
    if value.contains('\0') {
        return Err(OperationError::InvalidParameterValue {
            resource: resource.name.clone(),
            name: name.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hafen_driver_api::resource::AgentRef;

    fn invocation() -> Invocation<'static> {
        Invocation {
            instance: "web",
            provider: "heartbeat",
            agent_type: "Dummy",
            action_name: "monitor",
            timeout_ms: 20_000,
            interval_ms: 10_000,
            depth: 0,
        }
    }

    // Proves a parameter cannot shadow the driver's own variables.
    #[test]
    fn driver_values_override_parameters() {
        let config = OcfConfig::new("/tmp/state".into(), "node-a");
        let agent = AgentRef::ocf("heartbeat", "Dummy").unwrap();
        let resource = ResourceInstance::new("web", agent).with_parameter("CRM_meta_timeout", "1");
        let options =
            OperationOptions::with_timeout_ms(20_000).with_meta_attribute("clone-max", "2");
        let environment =
            operation_environment(&config, &invocation(), &resource, &options).unwrap();
        assert_eq!(environment["OCF_RESKEY_CRM_meta_timeout"], "20000");
        assert_eq!(environment["OCF_RESKEY_CRM_meta_interval"], "10000");
        assert_eq!(environment["OCF_RESKEY_CRM_meta_clone_max"], "2");
        assert_eq!(environment["HA_RSCTMP"], "/tmp/state");
    }

    #[test]
    fn parameter_names_that_are_not_shell_names_are_refused() {
        let config = OcfConfig::new("/tmp/state".into(), "node-a");
        let agent = AgentRef::ocf("heartbeat", "Dummy").unwrap();
        let resource = ResourceInstance::new("web", agent).with_parameter("PATH=x", "1");
        let options = OperationOptions::with_timeout_ms(1_000);
        let error = operation_environment(&config, &invocation(), &resource, &options).unwrap_err();
        assert!(error.to_string().contains("PATH=x"), "{error}");
    }

    #[test]
    fn notification_lists_pair_instances_with_nodes() {
        let mut notification = Notification::new(NotifyTiming::Pre, NotifyOperation::Promote);
        notification.promote.push(NotifyPeer {
            instance: "db:0".to_owned(),
            node: Some("node-a".to_owned()),
        });
        notification.promoted.push(NotifyPeer {
            instance: "db:1".to_owned(),
            node: Some("node-b".to_owned()),
        });
        let environment = notification_environment(&notification);
        assert_eq!(environment["OCF_RESKEY_CRM_meta_notify_type"], "pre");
        assert_eq!(
            environment["OCF_RESKEY_CRM_meta_notify_promote_uname"],
            "node-a"
        );
        assert_eq!(
            environment["OCF_RESKEY_CRM_meta_notify_master_resource"],
            "db:1"
        );
        assert_eq!(environment["OCF_RESKEY_CRM_meta_notify_stop_resource"], "");
    }
}
