//! The fence driver: runs standard fence agents (Debian's `fence-agents`, `fence_hafen_netns`) with their stdin `key=value` protocol, as Pacemaker's stonith does; the only crate that knows the fence-agent protocol.
//!
//! [`FenceDriver`] implements the port's [`Fencer`]. Every agent run gets its arguments
//! on stdin (`protocol`), runs in its own process group with a deadline and bounded
//! output (`process`), and has its exit code classified (`protocol`). A power-off is
//! retried with back-off and only succeeds once a `status` confirms the host is off.
//! Metadata XML is parsed in `metadata`, agents are found in `catalog`. Secrets never
//! reach a log line, an error or captured output: only names are logged, and the
//! device's secret values are scrubbed from everything the agent printed.

mod catalog;
mod metadata;
mod protocol;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hafen_driver_api::fence::{
    AgentRun, AgentVerdict, FenceAction, FenceAgentMetadata, FenceDevice, FenceError,
    FenceMetadataError, FenceOutcome, Fencer, ListFenceAgentsError, PowerAction, PowerState,
};
use hafen_driver_api::resource::{CapturedOutput, Termination};

use hafen_process::{ProcessLimits, ProcessSpec, RunError};

/// Where Debian's `fence-agents` installs its agents.
pub const DEFAULT_AGENT_DIR: &str = "/usr/sbin";

#[derive(Debug, Clone)]
pub struct FenceConfig {
    /// Searched in order for `fence_*` executables.
    pub agent_dirs: Vec<PathBuf>,
    /// `PATH` for agents (they get no other variable from the daemon's environment).
    pub path: String,
    /// Per stream and run; beyond it the middle of the output is dropped.
    pub output_limit_bytes: usize,
    /// Metadata must fit whole (fence_ipmilan's is about 10 KiB).
    pub metadata_output_limit_bytes: usize,
    pub metadata_timeout_ms: u64,
    /// Between SIGTERM and SIGKILL of a timed-out agent's process group.
    pub kill_grace_ms: u64,
    /// How long output is still read after the agent exited.
    pub output_drain_ms: u64,
}

impl Default for FenceConfig {
    fn default() -> FenceConfig {
        FenceConfig {
            agent_dirs: vec![PathBuf::from(DEFAULT_AGENT_DIR)],
            path: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
            output_limit_bytes: 64 * 1024,
            metadata_output_limit_bytes: 1024 * 1024,
            metadata_timeout_ms: 30_000,
            kill_grace_ms: 2_000,
            output_drain_ms: 1_000,
        }
    }
}

impl FenceConfig {
    pub fn with_agent_dirs(agent_dirs: Vec<PathBuf>) -> FenceConfig {
        FenceConfig {
            agent_dirs,
            ..FenceConfig::default()
        }
    }
}

/// Runs fence agents on this host. Cheap to clone; holds no state between operations.
#[derive(Debug, Clone)]
pub struct FenceDriver {
    config: Arc<FenceConfig>,
}

/// One agent run, before it runs.
struct Invocation<'a> {
    device: &'a FenceDevice,
    action: FenceAction,
    target: Option<&'a str>,
    attempt: u32,
}

/// How one attempt of a power action ended when the agent could be run.
enum AttemptEnd {
    Succeeded,
    /// The attempt failed; the next one may succeed.
    Failed(String),
}

impl FenceDriver {
    pub fn new(config: FenceConfig) -> FenceDriver {
        FenceDriver {
            config: Arc::new(config),
        }
    }

    pub fn config(&self) -> &FenceConfig {
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

    fn environment(&self) -> Vec<(String, String)> {
        vec![("PATH".to_owned(), self.config.path.clone())]
    }

    fn agent_path(&self, device: &FenceDevice) -> Result<PathBuf, FenceError> {
        if !catalog::is_agent_name(&device.agent) {
            return Err(FenceError::InvalidAgentName {
                device: device.name.clone(),
                agent: device.agent.clone(),
            });
        }
        catalog::find_agent(&self.config.agent_dirs, &device.agent).ok_or_else(|| {
            FenceError::AgentNotInstalled {
                device: device.name.clone(),
                agent: device.agent.clone(),
                path: self.searched_dirs(),
            }
        })
    }

    fn searched_dirs(&self) -> String {
        self.config
            .agent_dirs
            .iter()
            .map(|directory| directory.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    }

    /// Runs the agent once; `Err` only when it could not be run at all.
    async fn run_agent(&self, invocation: Invocation<'_>) -> Result<AgentRun, FenceError> {
        let Invocation {
            device,
            action,
            target,
            attempt,
        } = invocation;
        let program = self.agent_path(device)?;
        let input = protocol::agent_input(device, action, target)?;
        let timeout_ms = match action {
            FenceAction::Off | FenceAction::On | FenceAction::Reboot => {
                device.timeouts.power_timeout_ms
            }
            _ => device.timeouts.status_timeout_ms,
        };
        let environment = self.environment();
        let spec = ProcessSpec {
            program: &program,
            arguments: &[],
            input: Some(input),
            environment: &environment,
            working_directory: std::path::Path::new("/"),
            limits: self.limits(timeout_ms, self.config.output_limit_bytes),
        };
        let finished = hafen_process::run(spec)
            .await
            .map_err(|error| match error {
                RunError::Spawn(source) => FenceError::Spawn {
                    device: device.name.clone(),
                    agent: device.agent.clone(),
                    action,
                    reason: source.to_string(),
                },
                RunError::Unkillable => FenceError::Unkillable {
                    device: device.name.clone(),
                    agent: device.agent.clone(),
                    action,
                },
            })?;
        let stderr = scrub(device, finished.stderr);
        let run = AgentRun {
            action,
            attempt,
            verdict: protocol::classify(action, finished.termination),
            termination: finished.termination,
            reason: protocol::failure_reason(&stderr.text),
            stdout: scrub(device, finished.stdout),
            stderr,
            duration_ms: finished.duration_ms,
        };
        tracing::info!(
            device = %device.name,
            agent = %device.agent,
            %action,
            target = target.unwrap_or("-"),
            attempt,
            verdict = ?run.verdict,
            termination = %run.termination,
            duration_ms = run.duration_ms,
            "fence agent finished"
        );
        Ok(run)
    }

    /// One attempt of `off` (agent off, then status must say off) or `on`.
    async fn attempt(
        &self,
        device: &FenceDevice,
        target: &str,
        action: PowerAction,
        attempt: u32,
        runs: &mut Vec<AgentRun>,
    ) -> Result<AttemptEnd, FenceError> {
        let invocation = |action| Invocation {
            device,
            action,
            target: Some(target),
            attempt,
        };
        let power = self.run_agent(invocation(action.fence_action())).await?;
        let power_message = power.message();
        let power_verdict = power.verdict;
        runs.push(power);
        if power_verdict != AgentVerdict::Success {
            return Ok(AttemptEnd::Failed(power_message));
        }
        if action != PowerAction::Off {
            return Ok(AttemptEnd::Succeeded);
        }
        // Agents (and devices) have reported success for an `off` that did not happen:
        // only the status check makes it a fence.
        let status = self.run_agent(invocation(FenceAction::Status)).await?;
        let end = match status.verdict {
            AgentVerdict::PoweredOff => AttemptEnd::Succeeded,
            AgentVerdict::PoweredOn => AttemptEnd::Failed(format!(
                "the agent reported off but status says the host is on: {}",
                status.message()
            )),
            _ => AttemptEnd::Failed(format!(
                "status after off could not confirm the host is off: {}",
                status.message()
            )),
        };
        runs.push(status);
        Ok(end)
    }

    /// `off` or `on` with the device's retries and back-off.
    async fn power_with_retries(
        &self,
        device: &FenceDevice,
        target: &str,
        action: PowerAction,
        runs: &mut Vec<AgentRun>,
    ) -> Result<(), FenceError> {
        let attempts = device.retries.retries.saturating_add(1);
        let mut last = String::new();
        for attempt in 1..=attempts {
            let pause_ms = device.retries.backoff_ms(attempt - 1);
            if pause_ms > 0 {
                tokio::time::sleep(Duration::from_millis(pause_ms)).await;
            }
            match self.attempt(device, target, action, attempt, runs).await? {
                AttemptEnd::Succeeded => return Ok(()),
                AttemptEnd::Failed(reason) => {
                    tracing::warn!(
                        device = %device.name,
                        %action,
                        target,
                        attempt,
                        attempts,
                        reason = %reason,
                        "fence attempt failed"
                    );
                    last = reason;
                }
            }
        }
        Err(FenceError::Failed {
            device: device.name.clone(),
            target: target.to_owned(),
            action: action.fence_action(),
            attempts,
            last,
            runs: std::mem::take(runs),
        })
    }

    /// A run that must succeed once (monitor, list): its failure is the error.
    async fn run_once(
        &self,
        device: &FenceDevice,
        action: FenceAction,
        target: Option<&str>,
    ) -> Result<AgentRun, FenceError> {
        let invocation = Invocation {
            device,
            action,
            target,
            attempt: 1,
        };
        let run = self.run_agent(invocation).await?;
        match (action, run.verdict) {
            (FenceAction::Status, AgentVerdict::PoweredOn | AgentVerdict::PoweredOff)
            | (_, AgentVerdict::Success) => Ok(run),
            _ => Err(FenceError::Failed {
                device: device.name.clone(),
                target: target.unwrap_or("-").to_owned(),
                action,
                attempts: 1,
                last: run.message(),
                runs: vec![run],
            }),
        }
    }
}

fn scrub(device: &FenceDevice, output: CapturedOutput) -> CapturedOutput {
    CapturedOutput {
        text: device.scrub(&output.text),
        omitted_bytes: output.omitted_bytes,
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl Fencer for FenceDriver {
    async fn power(
        &self,
        device: &FenceDevice,
        target: &str,
        action: PowerAction,
    ) -> Result<FenceOutcome, FenceError> {
        let started = Instant::now();
        let mut runs = Vec::new();
        let first = if action == PowerAction::Reboot {
            PowerAction::Off
        } else {
            action
        };
        self.power_with_retries(device, target, first, &mut runs)
            .await?;
        let mut power_on_failure = None;
        if action == PowerAction::Reboot {
            // Confirmed off, so fenced: a host that does not come back is reported, not
            // counted as a failed fence.
            let mut on_runs = Vec::new();
            let on = self
                .power_with_retries(device, target, PowerAction::On, &mut on_runs)
                .await;
            runs.append(&mut on_runs);
            if let Err(error) = on {
                if let FenceError::Failed { runs: failed, .. } = &error {
                    runs.extend(failed.iter().cloned());
                }
                power_on_failure = Some(error.to_string());
            }
        }
        tracing::info!(
            device = %device.name,
            %action,
            target,
            "fence action succeeded"
        );
        Ok(FenceOutcome {
            device: device.name.clone(),
            target: target.to_owned(),
            action,
            runs,
            power_on_failure,
            duration_ms: elapsed_ms(started),
        })
    }

    async fn status(&self, device: &FenceDevice, target: &str) -> Result<PowerState, FenceError> {
        let run = self
            .run_once(device, FenceAction::Status, Some(target))
            .await?;
        Ok(if run.verdict == AgentVerdict::PoweredOff {
            PowerState::Off
        } else {
            PowerState::On
        })
    }

    async fn monitor(&self, device: &FenceDevice) -> Result<(), FenceError> {
        self.run_once(device, FenceAction::Monitor, None).await?;
        Ok(())
    }

    async fn list(&self, device: &FenceDevice) -> Result<Vec<String>, FenceError> {
        let run = self.run_once(device, FenceAction::List, None).await?;
        Ok(protocol::parse_list(&run.stdout.text))
    }

    async fn metadata(&self, agent: &str) -> Result<FenceAgentMetadata, FenceMetadataError> {
        // A device with no parameters: metadata needs nothing but the action.
        let device = FenceDevice::new(agent, agent);
        let program = self.agent_path(&device).map_err(|error| match error {
            FenceError::AgentNotInstalled { path, .. } => FenceMetadataError::AgentNotInstalled {
                agent: agent.to_owned(),
                path,
            },
            _ => FenceMetadataError::InvalidAgentName {
                agent: agent.to_owned(),
            },
        })?;
        let failed = |reason: String| FenceMetadataError::Failed {
            agent: agent.to_owned(),
            reason,
        };
        let input = protocol::agent_input(&device, FenceAction::Metadata, None)
            .map_err(|error| failed(error.to_string()))?;
        let environment = self.environment();
        let spec = ProcessSpec {
            program: &program,
            arguments: &[],
            input: Some(input),
            environment: &environment,
            working_directory: std::path::Path::new("/"),
            limits: self.limits(
                self.config.metadata_timeout_ms,
                self.config.metadata_output_limit_bytes,
            ),
        };
        let finished = hafen_process::run(spec)
            .await
            .map_err(|error| match error {
                RunError::Spawn(source) => failed(source.to_string()),
                RunError::Unkillable => {
                    failed("the agent did not end after it was killed".to_owned())
                }
            })?;
        if finished.termination != (Termination::Exited { code: 0 }) {
            let run = AgentRun {
                action: FenceAction::Metadata,
                attempt: 1,
                verdict: protocol::classify(FenceAction::Metadata, finished.termination),
                termination: finished.termination,
                reason: protocol::failure_reason(&finished.stderr.text),
                stdout: finished.stdout,
                stderr: finished.stderr,
                duration_ms: finished.duration_ms,
            };
            return Err(failed(run.message()));
        }
        let malformed = |reason: String| FenceMetadataError::Malformed {
            agent: agent.to_owned(),
            reason,
        };
        if finished.stdout.omitted_bytes > 0 {
            return Err(malformed(format!(
                "it exceeds {} bytes",
                self.config.metadata_output_limit_bytes
            )));
        }
        metadata::parse_metadata(agent, &finished.stdout.text).map_err(malformed)
    }

    async fn list_agents(&self) -> Result<Vec<String>, ListFenceAgentsError> {
        let agent_dirs = self.config.agent_dirs.clone();
        tokio::task::spawn_blocking(move || catalog::list_agents(&agent_dirs))
            .await
            .unwrap_or_else(|error| {
                Err(ListFenceAgentsError::Io {
                    path: "(agent directories)".to_owned(),
                    reason: error.to_string(),
                })
            })
    }
}
