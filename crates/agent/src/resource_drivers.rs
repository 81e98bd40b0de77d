//! The resource-agent classes this node runs, behind one [`ResourceAgent`]: each operation goes to the driver of the resource's class (`ocf:` to `driver-ocf`, `systemd:` to `driver-systemd`).

use hafen_driver_api::resource::{
    AgentMetadata, AgentRef, ListAgentsError, MetadataError, Notification, OperationError,
    OperationOptions, OperationOutcome, ResourceAgent, ResourceInstance,
};
use hafen_driver_ocf::OcfDriver;
use hafen_driver_systemd::SystemdDriver;

pub(crate) struct ResourceDrivers {
    pub(crate) ocf: OcfDriver,
    pub(crate) systemd: SystemdDriver,
}

/// Awaits `$call` with `$driver` bound to the driver of `$agent`'s class.
macro_rules! by_class {
    ($drivers:expr, $agent:expr, |$driver:ident| $call:expr) => {
        match $agent {
            AgentRef::Ocf { .. } => {
                let $driver = &$drivers.ocf;
                $call.await
            }
            AgentRef::Systemd { .. } => {
                let $driver = &$drivers.systemd;
                $call.await
            }
        }
    };
}

impl ResourceAgent for ResourceDrivers {
    async fn start(
        &self,
        resource: &ResourceInstance,
        options: &OperationOptions,
    ) -> Result<OperationOutcome, OperationError> {
        by_class!(self, &resource.agent, |driver| driver
            .start(resource, options))
    }

    async fn stop(
        &self,
        resource: &ResourceInstance,
        options: &OperationOptions,
    ) -> Result<OperationOutcome, OperationError> {
        by_class!(self, &resource.agent, |driver| driver
            .stop(resource, options))
    }

    async fn monitor(
        &self,
        resource: &ResourceInstance,
        options: &OperationOptions,
    ) -> Result<OperationOutcome, OperationError> {
        by_class!(self, &resource.agent, |driver| driver
            .monitor(resource, options))
    }

    async fn promote(
        &self,
        resource: &ResourceInstance,
        options: &OperationOptions,
    ) -> Result<OperationOutcome, OperationError> {
        by_class!(self, &resource.agent, |driver| driver
            .promote(resource, options))
    }

    async fn demote(
        &self,
        resource: &ResourceInstance,
        options: &OperationOptions,
    ) -> Result<OperationOutcome, OperationError> {
        by_class!(self, &resource.agent, |driver| driver
            .demote(resource, options))
    }

    async fn notify(
        &self,
        resource: &ResourceInstance,
        notification: &Notification,
        options: &OperationOptions,
    ) -> Result<OperationOutcome, OperationError> {
        by_class!(self, &resource.agent, |driver| driver.notify(
            resource,
            notification,
            options
        ))
    }

    async fn migrate_to(
        &self,
        resource: &ResourceInstance,
        target_node: &str,
        options: &OperationOptions,
    ) -> Result<OperationOutcome, OperationError> {
        by_class!(self, &resource.agent, |driver| driver.migrate_to(
            resource,
            target_node,
            options
        ))
    }

    async fn migrate_from(
        &self,
        resource: &ResourceInstance,
        source_node: &str,
        options: &OperationOptions,
    ) -> Result<OperationOutcome, OperationError> {
        by_class!(self, &resource.agent, |driver| driver.migrate_from(
            resource,
            source_node,
            options
        ))
    }

    async fn reload(
        &self,
        resource: &ResourceInstance,
        options: &OperationOptions,
    ) -> Result<OperationOutcome, OperationError> {
        by_class!(self, &resource.agent, |driver| driver
            .reload(resource, options))
    }

    async fn validate_all(
        &self,
        resource: &ResourceInstance,
        options: &OperationOptions,
    ) -> Result<OperationOutcome, OperationError> {
        by_class!(self, &resource.agent, |driver| driver
            .validate_all(resource, options))
    }

    async fn meta_data(&self, agent: &AgentRef) -> Result<AgentMetadata, MetadataError> {
        by_class!(self, agent, |driver| driver.meta_data(agent))
    }

    /// OCF agents, then systemd units (none where systemd is not running).
    async fn list_agents(&self) -> Result<Vec<AgentRef>, ListAgentsError> {
        let mut agents = self.ocf.list_agents().await?;
        agents.extend(self.systemd.list_agents().await?);
        agents.sort();
        Ok(agents)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hafen_driver_api::resource::check_configuration;

    fn drivers(dir: &std::path::Path) -> ResourceDrivers {
        let mut ocf = hafen_driver_ocf::OcfConfig::new(dir.join("state"), "node1");
        ocf.ocf_root = dir.join("ocf");
        let mut systemd = hafen_driver_systemd::SystemdConfig::new("node1");
        systemd.booted_marker = dir.join("no-systemd-here");
        ResourceDrivers {
            ocf: OcfDriver::new(ocf),
            systemd: SystemdDriver::new(systemd),
        }
    }

    // Proves each class reaches its own driver: a systemd unit gets the systemd driver's
    // refusal (no systemd here), an OCF agent the OCF driver's "not installed".
    #[tokio::test]
    async fn each_class_goes_to_its_driver() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("ocf/resource.d/heartbeat")).unwrap();
        let drivers = drivers(dir.path());
        let unit = ResourceInstance::new("svc", "systemd:cron".parse().unwrap());
        let error = check_configuration(&drivers, &unit)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("node node1") && error.contains("systemd is not running"),
            "{error}"
        );
        let ocf = ResourceInstance::new("web", "ocf:heartbeat:Dummy".parse().unwrap());
        let options = OperationOptions::with_timeout_ms(1000);
        let outcome = drivers.start(&ocf, &options).await.unwrap();
        assert!(
            outcome.message().contains("not installed at"),
            "{}",
            outcome.message()
        );
        assert!(drivers.list_agents().await.unwrap().is_empty());
    }
}
