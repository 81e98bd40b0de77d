//! The OCF driver: runs OCF resource agents (`ocf:<provider>:<type>` under `OCF_ROOT`) as the OCF standard and Pacemaker do; the only crate that knows OCF conventions.
//!
//! [`OcfDriver`] implements the port's [`ResourceAgent`]. Every operation runs the agent
//! with a clean environment (`environment`), in its own process group with a deadline
//! and bounded output (`process`), and classifies its return code (`classify`).
//! Meta-data XML is parsed in `metadata` and agents are found in `catalog`.

mod catalog;
mod classify;
mod environment;
mod metadata;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use hafen_driver_api::resource::{
    Action, AgentMetadata, AgentRef, AgentResult, CapturedOutput, ListAgentsError, MetadataError,
    Notification, OperationError, OperationOptions, OperationOutcome, ResourceAgent,
    ResourceInstance, Termination,
};

pub use classify::{EXIT_REASON_PREFIX, classify_exit_code};
pub use metadata::parse_duration_ms;

use environment::{Environment, Invocation};
use hafen_process::{ProcessLimits, ProcessSpec, RunError};

/// Runs agents at [`AGENT_NICENESS`].
const NICE: &str = "/usr/bin/nice";
const AGENT_NICENESS: &str = "10";

/// Where Debian, Pacemaker and the resource-agents project install agents.
pub const DEFAULT_OCF_ROOT: &str = "/usr/lib/ocf";

#[derive(Debug, Clone)]
pub struct OcfConfig {
    pub ocf_root: PathBuf,
    /// Agents' state files (`HA_RSCTMP`, `HA_VARRUN`); created when missing. The daemon
    /// uses a directory under /run so state does not survive a reboot, like Pacemaker.
    pub state_dir: PathBuf,
    /// This host's name, passed as `CRM_meta_on_node` and as the migration source/target.
    pub node_name: String,
    /// `PATH` for agents (they get no other variable from the daemon's environment).
    pub path: String,
    /// Per stream and operation; beyond it the middle of the output is dropped.
    pub output_limit_bytes: usize,
    /// Meta-data must fit whole (IPaddr2's is about 10 KiB).
    pub meta_data_output_limit_bytes: usize,
    pub meta_data_timeout_ms: u64,
    /// Between SIGTERM and SIGKILL of a timed-out agent's process group.
    pub kill_grace_ms: u64,
    /// How long output is still read after the agent exited.
    pub output_drain_ms: u64,
}

impl OcfConfig {
    pub fn new(state_dir: PathBuf, node_name: &str) -> OcfConfig {
        OcfConfig {
            ocf_root: PathBuf::from(DEFAULT_OCF_ROOT),
            state_dir,
            node_name: node_name.to_owned(),
            path: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
            output_limit_bytes: 64 * 1024,
            meta_data_output_limit_bytes: 1024 * 1024,
            meta_data_timeout_ms: 30_000,
            kill_grace_ms: 5_000,
            output_drain_ms: 1_000,
        }
    }
}

/// Runs OCF agents on this host. Cheap to clone; holds no state between operations (the
/// agents keep theirs under `state_dir`).
#[derive(Debug, Clone)]
pub struct OcfDriver {
    config: Arc<OcfConfig>,
}

/// One agent invocation, before it runs.
struct Run<'a> {
    agent: &'a AgentRef,
    action: Action,
    action_name: &'a str,
    environment: Environment,
    limits: ProcessLimits,
}

impl OcfDriver {
    pub fn new(config: OcfConfig) -> OcfDriver {
        OcfDriver {
            config: Arc::new(config),
        }
    }

    pub fn config(&self) -> &OcfConfig {
        &self.config
    }

    fn limits(&self, timeout_ms: u64, output_limit_bytes: usize) -> ProcessLimits {
        ProcessLimits {
            timeout_ms,
            kill_grace_ms: self.config.kill_grace_ms,
            output_limit_bytes,
            output_drain_ms: self.config.output_drain_ms,
        }
    }

    /// A resource operation with extra variables (notification, migration).
    async fn operate(
        &self,
        resource: &ResourceInstance,
        action: Action,
        action_name: &str,
        options: &OperationOptions,
        extra: Environment,
    ) -> Result<OperationOutcome, OperationError> {
        let AgentRef::Ocf {
            provider,
            agent_type,
        } = &resource.agent
        else {
            return Err(OperationError::UnsupportedAgent {
                agent: resource.agent.clone(),
            });
        };
        let invocation = Invocation {
            instance: &resource.name,
            provider,
            agent_type,
            action_name,
            timeout_ms: options.timeout_ms,
            interval_ms: if action == Action::Monitor {
                options.interval_ms
            } else {
                0
            },
            depth: options.depth,
        };
        let mut environment =
            environment::operation_environment(&self.config, &invocation, resource, options)?;
        environment.extend(extra);
        self.execute(Run {
            agent: &resource.agent,
            action,
            action_name,
            environment,
            limits: self.limits(options.timeout_ms, self.config.output_limit_bytes),
        })
        .await
    }

    async fn execute(&self, run: Run<'_>) -> Result<OperationOutcome, OperationError> {
        let AgentRef::Ocf {
            provider,
            agent_type,
        } = run.agent
        else {
            return Err(OperationError::UnsupportedAgent {
                agent: run.agent.clone(),
            });
        };
        let program = catalog::agent_path(&self.config.ocf_root, provider, agent_type);
        if !catalog::is_executable(&program) {
            return Ok(not_installed(run.agent, run.action, &program));
        }
        let state_dir = &self.config.state_dir;
        tokio::fs::create_dir_all(state_dir)
            .await
            .map_err(|source| OperationError::StateDirectory {
                path: state_dir.display().to_string(),
                source,
            })?;
        let environment: Vec<(String, String)> = run.environment.into_iter().collect();
        // Agents run at a lower CPU priority than the cluster daemon (through coreutils'
        // `nice`, which execs the agent in place): hundreds of monitors on a busy host must
        // not delay its heartbeats into a false suspicion (corosync runs at realtime
        // priority for the same reason).
        let agent_path = program.to_string_lossy().to_string();
        let spec = ProcessSpec {
            program: std::path::Path::new(NICE),
            arguments: &["-n", AGENT_NICENESS, &agent_path, run.action_name],
            input: None,
            environment: &environment,
            working_directory: state_dir,
            limits: run.limits,
        };
        let finished = hafen_process::run(spec)
            .await
            .map_err(|error| match error {
                RunError::Spawn(source) => OperationError::Spawn {
                    agent: run.agent.clone(),
                    action: run.action,
                    source,
                },
                RunError::Unkillable => OperationError::Unkillable {
                    agent: run.agent.clone(),
                    action: run.action,
                },
            })?;
        Ok(OperationOutcome {
            action: run.action,
            result: classify::classify(finished.termination),
            termination: finished.termination,
            exit_reason: classify::exit_reason(&finished.stderr.text),
            stdout: finished.stdout,
            stderr: finished.stderr,
            duration_ms: finished.duration_ms,
        })
    }
}

/// Pacemaker answers "not installed" (a hard error; a stopped resource for a probe) when
/// the agent is missing, without running anything.
fn not_installed(agent: &AgentRef, action: Action, program: &std::path::Path) -> OperationOutcome {
    OperationOutcome {
        action,
        result: AgentResult::NotInstalled,
        termination: Termination::NotExecuted,
        exit_reason: Some(format!(
            "agent {agent} is not installed at {}",
            program.display()
        )),
        stdout: CapturedOutput::default(),
        stderr: CapturedOutput::default(),
        duration_ms: 0,
    }
}

fn remaining_ms(options: &OperationOptions, started: Instant) -> u64 {
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    options.timeout_ms.saturating_sub(elapsed_ms)
}

impl ResourceAgent for OcfDriver {
    async fn start(
        &self,
        resource: &ResourceInstance,
        options: &OperationOptions,
    ) -> Result<OperationOutcome, OperationError> {
        self.operate(
            resource,
            Action::Start,
            "start",
            options,
            Environment::new(),
        )
        .await
    }

    async fn stop(
        &self,
        resource: &ResourceInstance,
        options: &OperationOptions,
    ) -> Result<OperationOutcome, OperationError> {
        self.operate(resource, Action::Stop, "stop", options, Environment::new())
            .await
    }

    async fn monitor(
        &self,
        resource: &ResourceInstance,
        options: &OperationOptions,
    ) -> Result<OperationOutcome, OperationError> {
        self.operate(
            resource,
            Action::Monitor,
            "monitor",
            options,
            Environment::new(),
        )
        .await
    }

    async fn promote(
        &self,
        resource: &ResourceInstance,
        options: &OperationOptions,
    ) -> Result<OperationOutcome, OperationError> {
        self.operate(
            resource,
            Action::Promote,
            "promote",
            options,
            Environment::new(),
        )
        .await
    }

    async fn demote(
        &self,
        resource: &ResourceInstance,
        options: &OperationOptions,
    ) -> Result<OperationOutcome, OperationError> {
        self.operate(
            resource,
            Action::Demote,
            "demote",
            options,
            Environment::new(),
        )
        .await
    }

    async fn notify(
        &self,
        resource: &ResourceInstance,
        notification: &Notification,
        options: &OperationOptions,
    ) -> Result<OperationOutcome, OperationError> {
        let extra = environment::notification_environment(notification);
        self.operate(resource, Action::Notify, "notify", options, extra)
            .await
    }

    async fn migrate_to(
        &self,
        resource: &ResourceInstance,
        target_node: &str,
        options: &OperationOptions,
    ) -> Result<OperationOutcome, OperationError> {
        let extra = environment::migration_environment(&self.config.node_name, target_node);
        self.operate(resource, Action::MigrateTo, "migrate_to", options, extra)
            .await
    }

    async fn migrate_from(
        &self,
        resource: &ResourceInstance,
        source_node: &str,
        options: &OperationOptions,
    ) -> Result<OperationOutcome, OperationError> {
        let extra = environment::migration_environment(source_node, &self.config.node_name);
        self.operate(
            resource,
            Action::MigrateFrom,
            "migrate_from",
            options,
            extra,
        )
        .await
    }

    /// OCF 1.1's `reload-agent`; an agent that does not implement it (exit 3) gets OCF
    /// 1.0's `reload` within what is left of the timeout, as Pacemaker falls back.
    async fn reload(
        &self,
        resource: &ResourceInstance,
        options: &OperationOptions,
    ) -> Result<OperationOutcome, OperationError> {
        let started = Instant::now();
        let outcome = self
            .operate(
                resource,
                Action::Reload,
                "reload-agent",
                options,
                Environment::new(),
            )
            .await?;
        if outcome.result != AgentResult::Unimplemented {
            return Ok(outcome);
        }
        let mut legacy_options = options.clone();
        legacy_options.timeout_ms = remaining_ms(options, started);
        self.operate(
            resource,
            Action::Reload,
            "reload",
            &legacy_options,
            Environment::new(),
        )
        .await
    }

    async fn validate_all(
        &self,
        resource: &ResourceInstance,
        options: &OperationOptions,
    ) -> Result<OperationOutcome, OperationError> {
        self.operate(
            resource,
            Action::ValidateAll,
            "validate-all",
            options,
            Environment::new(),
        )
        .await
    }

    async fn meta_data(&self, agent: &AgentRef) -> Result<AgentMetadata, MetadataError> {
        let AgentRef::Ocf {
            provider,
            agent_type,
        } = agent
        else {
            return Err(OperationError::UnsupportedAgent {
                agent: agent.clone(),
            }
            .into());
        };
        // Pacemaker names the instance after the type for meta-data; agents interpolate
        // it into defaults such as Dummy's state file.
        let invocation = Invocation {
            instance: agent_type,
            provider,
            agent_type,
            action_name: "meta-data",
            timeout_ms: self.config.meta_data_timeout_ms,
            interval_ms: 0,
            depth: 0,
        };
        let outcome = self
            .execute(Run {
                agent,
                action: Action::MetaData,
                action_name: "meta-data",
                environment: environment::base_environment(&self.config, &invocation),
                limits: self.limits(
                    self.config.meta_data_timeout_ms,
                    self.config.meta_data_output_limit_bytes,
                ),
            })
            .await?;
        if outcome.result != AgentResult::Success {
            return Err(MetadataError::Failed {
                agent: agent.clone(),
                message: outcome.message(),
            });
        }
        if outcome.stdout.omitted_bytes > 0 {
            return Err(MetadataError::Malformed {
                agent: agent.clone(),
                reason: format!(
                    "output exceeds {} bytes",
                    self.config.meta_data_output_limit_bytes
                ),
            });
        }
        metadata::parse_metadata(agent, &outcome.stdout.text).map_err(|reason| {
            MetadataError::Malformed {
                agent: agent.clone(),
                reason,
            }
        })
    }

    async fn list_agents(&self) -> Result<Vec<AgentRef>, ListAgentsError> {
        let ocf_root = self.config.ocf_root.clone();
        // A directory scan is blocking file I/O; keep it off the async threads.
        match tokio::task::spawn_blocking(move || catalog::list_agents(&ocf_root)).await {
            Ok(listed) => listed,
            Err(join_error) => Err(ListAgentsError::Io {
                path: self.config.ocf_root.display().to_string(),
                source: std::io::Error::other(join_error.to_string()),
            }),
        }
    }
}
