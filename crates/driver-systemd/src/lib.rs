//! The systemd driver: runs `systemd:<unit>` resources through `systemctl` as Pacemaker's systemd class does; the only crate that speaks to systemd.
//!
//! [`SystemdDriver`] implements the port's [`ResourceAgent`]. A start is `systemctl start`
//! and then `systemctl show` until the unit is active or has settled otherwise, a stop
//! likewise until it is inactive, a monitor reads the unit's state (active: running,
//! inactive: not running, failed: error), all within the operation's timeout; every
//! `systemctl` runs with a deadline through `process`. Units take no parameters. Where
//! systemd is not the service manager (no `/run/systemd/system`, `sd_booted()`), every
//! operation and the meta-data fail naming the node, and no unit is listed.

mod systemctl;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hafen_driver_api::resource::{
    Action, AgentMetadata, AgentRef, AgentResult, CapturedOutput, ListAgentsError, MetadataError,
    Notification, OperationError, OperationOptions, OperationOutcome, ResourceAgent,
    ResourceInstance, Termination,
};
use hafen_process::{Finished, ProcessLimits, ProcessSpec, RunError};
use tokio::time::Instant;

use systemctl::{Activity, STATUS_PROPERTIES, UnitStatus};

/// Exists exactly when systemd runs as the service manager (what `sd_booted()` checks).
pub const BOOTED_MARKER: &str = "/run/systemd/system";

#[derive(Debug, Clone)]
pub struct SystemdConfig {
    /// This host's name, for errors.
    pub node_name: String,
    /// The `systemctl` program, looked up in `path` unless absolute.
    pub systemctl: PathBuf,
    pub booted_marker: PathBuf,
    /// `PATH` for `systemctl` (it gets no other variable from the daemon's environment).
    pub path: String,
    /// Between two `systemctl show` while a unit is still activating or deactivating.
    pub poll_interval_ms: u64,
    /// Deadline of the meta-data query and the unit listing.
    pub query_timeout_ms: u64,
    pub kill_grace_ms: u64,
    pub output_limit_bytes: usize,
    pub output_drain_ms: u64,
}

impl SystemdConfig {
    pub fn new(node_name: &str) -> SystemdConfig {
        SystemdConfig {
            node_name: node_name.to_owned(),
            systemctl: PathBuf::from("systemctl"),
            booted_marker: PathBuf::from(BOOTED_MARKER),
            path: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
            poll_interval_ms: 100,
            query_timeout_ms: 30_000,
            kill_grace_ms: 5_000,
            output_limit_bytes: 64 * 1024,
            output_drain_ms: 1_000,
        }
    }
}

/// Runs systemd units on this host. Cheap to clone; holds no state (systemd keeps it).
#[derive(Debug, Clone)]
pub struct SystemdDriver {
    config: Arc<SystemdConfig>,
}

/// What the status queries of one operation ended with.
enum Observation {
    Settled(UnitStatus, Finished),
    /// The deadline passed while the unit was still changing (or `systemctl` hung).
    TimedOut,
    /// `systemctl show` failed or printed no state.
    Unreadable {
        finished: Finished,
        reason: String,
    },
}

impl SystemdDriver {
    pub fn new(config: SystemdConfig) -> SystemdDriver {
        SystemdDriver {
            config: Arc::new(config),
        }
    }

    pub fn config(&self) -> &SystemdConfig {
        &self.config
    }

    pub fn systemd_running(&self) -> bool {
        self.config.booted_marker.is_dir()
    }

    /// The unit behind a `systemd:` reference on a host where systemd runs.
    fn unit_of(&self, agent: &AgentRef) -> Result<String, OperationError> {
        let AgentRef::Systemd { unit } = agent else {
            return Err(OperationError::UnsupportedAgent {
                agent: agent.clone(),
            });
        };
        if !self.systemd_running() {
            return Err(OperationError::ClassUnavailable {
                node: self.config.node_name.clone(),
                agent: agent.clone(),
                reason: format!(
                    "systemd is not running ({} does not exist)",
                    self.config.booted_marker.display()
                ),
            });
        }
        Ok(systemctl::unit_name(unit))
    }

    /// One `systemctl` call, killed at the deadline.
    async fn systemctl(&self, arguments: &[&str], deadline: Instant) -> Result<Finished, RunError> {
        let mut all_arguments = vec!["--no-pager", "--no-ask-password"];
        all_arguments.extend_from_slice(arguments);
        let environment = [
            ("PATH".to_owned(), self.config.path.clone()),
            ("LC_ALL".to_owned(), "C".to_owned()),
        ];
        let timeout_ms = u64::try_from(
            deadline
                .saturating_duration_since(Instant::now())
                .as_millis(),
        )
        .unwrap_or(u64::MAX);
        hafen_process::run(ProcessSpec {
            program: &self.config.systemctl,
            arguments: &all_arguments,
            input: None,
            environment: &environment,
            working_directory: std::path::Path::new("/"),
            limits: ProcessLimits {
                timeout_ms,
                kill_grace_ms: self.config.kill_grace_ms,
                output_limit_bytes: self.config.output_limit_bytes,
                output_drain_ms: self.config.output_drain_ms,
            },
        })
        .await
    }

    async fn operation_call(
        &self,
        agent: &AgentRef,
        action: Action,
        arguments: &[&str],
        deadline: Instant,
    ) -> Result<Finished, OperationError> {
        self.systemctl(arguments, deadline)
            .await
            .map_err(|error| match error {
                RunError::Spawn(source) => OperationError::Spawn {
                    agent: agent.clone(),
                    action,
                    source,
                },
                RunError::Unkillable => OperationError::Unkillable {
                    agent: agent.clone(),
                    action,
                },
            })
    }

    /// Asks for the unit's state until it stops changing or the deadline passes.
    async fn observe(
        &self,
        agent: &AgentRef,
        action: Action,
        unit: &str,
        deadline: Instant,
    ) -> Result<Observation, OperationError> {
        let poll_interval = Duration::from_millis(self.config.poll_interval_ms);
        loop {
            let arguments = ["show", STATUS_PROPERTIES, "--", unit];
            let finished = self
                .operation_call(agent, action, &arguments, deadline)
                .await?;
            match finished.termination {
                Termination::TimedOut { .. } => return Ok(Observation::TimedOut),
                Termination::Exited { code: 0 } => {}
                termination => {
                    let reason = last_line(&finished.stderr.text)
                        .unwrap_or_else(|| format!("systemctl show ended with {termination}"));
                    return Ok(Observation::Unreadable { finished, reason });
                }
            }
            let status = match systemctl::parse_status(unit, &finished.stdout.text) {
                Ok(status) => status,
                Err(reason) => return Ok(Observation::Unreadable { finished, reason }),
            };
            if status.activity() != Activity::Changing {
                return Ok(Observation::Settled(status, finished));
            }
            if Instant::now() + poll_interval >= deadline {
                return Ok(Observation::TimedOut);
            }
            tokio::time::sleep(poll_interval).await;
        }
    }

    /// Start, stop or monitor: the command (if any), then the unit's settled state.
    async fn operate(
        &self,
        resource: &ResourceInstance,
        action: Action,
        options: &OperationOptions,
    ) -> Result<OperationOutcome, OperationError> {
        let agent = &resource.agent;
        let unit = self.unit_of(agent)?;
        let started = Instant::now();
        let deadline = started + Duration::from_millis(options.timeout_ms);
        let timed_out = || timed_out_outcome(action, options, started);
        // The command's own output explains a failed job ("Job for x failed because ...").
        let mut command = None;
        if let Some(verb) = verb(action) {
            let finished = self
                .operation_call(agent, action, &[verb, "--", &unit], deadline)
                .await?;
            if let Termination::TimedOut { .. } = finished.termination {
                return Ok(timed_out());
            }
            command = Some(finished);
        }
        let (status, shown) = match self.observe(agent, action, &unit, deadline).await? {
            Observation::Settled(status, shown) => (status, shown),
            Observation::TimedOut => return Ok(timed_out()),
            Observation::Unreadable { finished, reason } => {
                return Ok(outcome(
                    action,
                    AgentResult::Error,
                    finished,
                    reason,
                    started,
                ));
            }
        };
        if action == Action::Stop && status.active_state == "failed" {
            return self.reset_failed(agent, &status, deadline, started).await;
        }
        let Activity::Settled(observed) = status.activity() else {
            return Ok(timed_out());
        };
        let result = systemctl::result_of(action, observed);
        let mut reason = status.describe();
        if action != Action::Monitor {
            reason = format!("{reason} after {action}");
        }
        let finished = match command {
            Some(finished) if result != AgentResult::Success => finished,
            _ => shown,
        };
        Ok(outcome(action, result, finished, reason, started))
    }

    /// A unit that failed is stopped, but stays `failed` (a monitor error) until reset.
    async fn reset_failed(
        &self,
        agent: &AgentRef,
        status: &UnitStatus,
        deadline: Instant,
        started: Instant,
    ) -> Result<OperationOutcome, OperationError> {
        let arguments = ["reset-failed", "--", status.unit.as_str()];
        let finished = self
            .operation_call(agent, Action::Stop, &arguments, deadline)
            .await?;
        let (result, reason) = match finished.termination {
            Termination::Exited { code: 0 } => (
                AgentResult::Success,
                format!("{} had failed; its failed state was reset", status.unit),
            ),
            Termination::TimedOut { .. } => (
                AgentResult::TimedOut,
                format!("{} had failed; reset-failed did not end", status.unit),
            ),
            _ => (
                AgentResult::GenericError,
                format!("{} had failed and could not be reset", status.unit),
            ),
        };
        Ok(outcome(Action::Stop, result, finished, reason, started))
    }

    /// Systemd units have no promotion, notification, migration or reload.
    fn unimplemented(
        &self,
        resource: &ResourceInstance,
        action: Action,
    ) -> Result<OperationOutcome, OperationError> {
        let unit = self.unit_of(&resource.agent)?;
        Ok(OperationOutcome {
            action,
            result: AgentResult::Unimplemented,
            termination: Termination::NotExecuted,
            exit_reason: Some(format!("systemd unit {unit} has no {action} action")),
            stdout: CapturedOutput::default(),
            stderr: CapturedOutput::default(),
            duration_ms: 0,
        })
    }
}

fn verb(action: Action) -> Option<&'static str> {
    match action {
        Action::Start => Some("start"),
        Action::Stop => Some("stop"),
        _ => None,
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn outcome(
    action: Action,
    result: AgentResult,
    finished: Finished,
    reason: String,
    started: Instant,
) -> OperationOutcome {
    OperationOutcome {
        action,
        result,
        termination: finished.termination,
        exit_reason: Some(reason),
        stdout: finished.stdout,
        stderr: finished.stderr,
        duration_ms: elapsed_ms(started),
    }
}

fn timed_out_outcome(
    action: Action,
    options: &OperationOptions,
    started: Instant,
) -> OperationOutcome {
    OperationOutcome {
        action,
        result: AgentResult::TimedOut,
        termination: Termination::TimedOut {
            timeout_ms: options.timeout_ms,
        },
        exit_reason: Some(format!(
            "the unit did not settle within {} ms",
            options.timeout_ms
        )),
        stdout: CapturedOutput::default(),
        stderr: CapturedOutput::default(),
        duration_ms: elapsed_ms(started),
    }
}

fn last_line(text: &str) -> Option<String> {
    text.lines()
        .rev()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .map(str::to_owned)
}

impl ResourceAgent for SystemdDriver {
    async fn start(
        &self,
        resource: &ResourceInstance,
        options: &OperationOptions,
    ) -> Result<OperationOutcome, OperationError> {
        self.operate(resource, Action::Start, options).await
    }

    async fn stop(
        &self,
        resource: &ResourceInstance,
        options: &OperationOptions,
    ) -> Result<OperationOutcome, OperationError> {
        self.operate(resource, Action::Stop, options).await
    }

    async fn monitor(
        &self,
        resource: &ResourceInstance,
        options: &OperationOptions,
    ) -> Result<OperationOutcome, OperationError> {
        self.operate(resource, Action::Monitor, options).await
    }

    async fn promote(
        &self,
        resource: &ResourceInstance,
        _options: &OperationOptions,
    ) -> Result<OperationOutcome, OperationError> {
        self.unimplemented(resource, Action::Promote)
    }

    async fn demote(
        &self,
        resource: &ResourceInstance,
        _options: &OperationOptions,
    ) -> Result<OperationOutcome, OperationError> {
        self.unimplemented(resource, Action::Demote)
    }

    async fn notify(
        &self,
        resource: &ResourceInstance,
        _notification: &Notification,
        _options: &OperationOptions,
    ) -> Result<OperationOutcome, OperationError> {
        self.unimplemented(resource, Action::Notify)
    }

    async fn migrate_to(
        &self,
        resource: &ResourceInstance,
        _target_node: &str,
        _options: &OperationOptions,
    ) -> Result<OperationOutcome, OperationError> {
        self.unimplemented(resource, Action::MigrateTo)
    }

    async fn migrate_from(
        &self,
        resource: &ResourceInstance,
        _source_node: &str,
        _options: &OperationOptions,
    ) -> Result<OperationOutcome, OperationError> {
        self.unimplemented(resource, Action::MigrateFrom)
    }

    async fn reload(
        &self,
        resource: &ResourceInstance,
        _options: &OperationOptions,
    ) -> Result<OperationOutcome, OperationError> {
        self.unimplemented(resource, Action::Reload)
    }

    /// The unit must be known to systemd here (there are no parameters to check).
    async fn validate_all(
        &self,
        resource: &ResourceInstance,
        options: &OperationOptions,
    ) -> Result<OperationOutcome, OperationError> {
        let mut outcome = self.operate(resource, Action::Monitor, options).await?;
        outcome.action = Action::ValidateAll;
        if !matches!(
            outcome.result,
            AgentResult::NotInstalled | AgentResult::Error | AgentResult::TimedOut
        ) {
            outcome.result = AgentResult::Success;
        }
        Ok(outcome)
    }

    /// A minimal description for a unit systemd knows here; "not installed" otherwise.
    async fn meta_data(&self, agent: &AgentRef) -> Result<AgentMetadata, MetadataError> {
        let unit = self.unit_of(agent)?;
        let deadline = Instant::now() + Duration::from_millis(self.config.query_timeout_ms);
        let failed = |message: String| MetadataError::Failed {
            agent: agent.clone(),
            message,
        };
        let status = match self
            .observe(agent, Action::MetaData, &unit, deadline)
            .await?
        {
            Observation::Settled(status, _) => status,
            Observation::TimedOut => {
                return Err(failed(format!(
                    "systemctl show {unit} did not answer within {} ms",
                    self.config.query_timeout_ms
                )));
            }
            Observation::Unreadable { reason, .. } => return Err(failed(reason)),
        };
        if !status.is_loaded() {
            return Err(failed(format!(
                "{} on node {}",
                status.describe(),
                self.config.node_name
            )));
        }
        Ok(systemctl::unit_metadata(agent, &status))
    }

    /// The services systemd has unit files for; none where systemd is not running (that is
    /// not an error: such a host simply has no systemd agents).
    async fn list_agents(&self) -> Result<Vec<AgentRef>, ListAgentsError> {
        if !self.systemd_running() {
            return Ok(Vec::new());
        }
        let command = "systemctl list-unit-files --type=service";
        let deadline = Instant::now() + Duration::from_millis(self.config.query_timeout_ms);
        let arguments = ["list-unit-files", "--type=service", "--no-legend"];
        let failed = |reason: String| ListAgentsError::Command {
            command: command.to_owned(),
            reason,
        };
        let finished = self
            .systemctl(&arguments, deadline)
            .await
            .map_err(|error| {
                failed(match error {
                    RunError::Spawn(source) => source.to_string(),
                    RunError::Unkillable => "it could not be killed".to_owned(),
                })
            })?;
        if finished.termination != (Termination::Exited { code: 0 }) {
            let detail = last_line(&finished.stderr.text).unwrap_or_default();
            return Err(failed(format!("{} {detail}", finished.termination)));
        }
        Ok(systemctl::parse_unit_files(&finished.stdout.text))
    }
}
