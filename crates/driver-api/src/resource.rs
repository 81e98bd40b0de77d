//! The resource-agent port: the [`ResourceAgent`] trait every adapter (OCF, systemd, fakes) implements, its plain types, the classification of results into Pacemaker's reactions, parameter validation against an agent's meta-data, and a shared conformance suite.
//!
//! Nothing here knows a wire or file format: numeric exit codes, environment variables and
//! XML belong to the adapters (`driver-ocf` is the only crate that knows OCF conventions).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Which agent runs a resource: `ocf:<provider>:<type>` or `systemd:<unit>`.
///
/// Parsing refuses anything that could escape the agent directory (`/`, `..`, hidden
/// names), because adapters turn these parts into paths.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum AgentRef {
    Ocf {
        provider: String,
        agent_type: String,
    },
    Systemd {
        unit: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentRefError {
    #[error(
        "agent reference {text:?} has no known class (expected ocf:PROVIDER:TYPE or systemd:UNIT)"
    )]
    UnknownClass { text: String },
    #[error("agent reference {text:?} must have the form ocf:PROVIDER:TYPE")]
    MalformedOcf { text: String },
    #[error("agent reference {text:?} has an invalid {part} {value:?}")]
    InvalidPart {
        text: String,
        part: &'static str,
        value: String,
    },
}

impl AgentRef {
    pub fn ocf(provider: &str, agent_type: &str) -> Result<AgentRef, AgentRefError> {
        format!("ocf:{provider}:{agent_type}").parse()
    }

    pub fn class(&self) -> &'static str {
        match self {
            AgentRef::Ocf { .. } => "ocf",
            AgentRef::Systemd { .. } => "systemd",
        }
    }
}

impl FromStr for AgentRef {
    type Err = AgentRefError;

    fn from_str(text: &str) -> Result<AgentRef, AgentRefError> {
        let invalid = |part: &'static str, value: &str| AgentRefError::InvalidPart {
            text: text.to_owned(),
            part,
            value: value.to_owned(),
        };
        if let Some(rest) = text.strip_prefix("ocf:") {
            let Some((provider, agent_type)) = rest.split_once(':') else {
                return Err(AgentRefError::MalformedOcf {
                    text: text.to_owned(),
                });
            };
            if !is_safe_name(provider) {
                return Err(invalid("provider", provider));
            }
            if !is_safe_name(agent_type) {
                return Err(invalid("type", agent_type));
            }
            return Ok(AgentRef::Ocf {
                provider: provider.to_owned(),
                agent_type: agent_type.to_owned(),
            });
        }
        if let Some(unit) = text.strip_prefix("systemd:") {
            let valid = !unit.is_empty()
                && !unit.starts_with('.')
                && unit.chars().all(|c| c.is_ascii_graphic() && c != '/');
            if !valid {
                return Err(invalid("unit", unit));
            }
            return Ok(AgentRef::Systemd {
                unit: unit.to_owned(),
            });
        }
        Err(AgentRefError::UnknownClass {
            text: text.to_owned(),
        })
    }
}

/// A name usable as one path component: ASCII letters, digits, `_ . + -`, not hidden.
fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '+' | '-'))
}

impl fmt::Display for AgentRef {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentRef::Ocf {
                provider,
                agent_type,
            } => write!(formatter, "ocf:{provider}:{agent_type}"),
            AgentRef::Systemd { unit } => write!(formatter, "systemd:{unit}"),
        }
    }
}

impl TryFrom<String> for AgentRef {
    type Error = AgentRefError;
    fn try_from(text: String) -> Result<AgentRef, AgentRefError> {
        text.parse()
    }
}

impl From<AgentRef> for String {
    fn from(agent: AgentRef) -> String {
        agent.to_string()
    }
}

/// The operations an agent performs. `Display` gives the operation names Pacemaker users
/// know from `op` definitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Start,
    Stop,
    Monitor,
    Promote,
    Demote,
    Notify,
    MigrateTo,
    MigrateFrom,
    Reload,
    MetaData,
    ValidateAll,
}

impl Action {
    pub const ALL: [Action; 11] = [
        Action::Start,
        Action::Stop,
        Action::Monitor,
        Action::Promote,
        Action::Demote,
        Action::Notify,
        Action::MigrateTo,
        Action::MigrateFrom,
        Action::Reload,
        Action::MetaData,
        Action::ValidateAll,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Monitor => "monitor",
            Action::Promote => "promote",
            Action::Demote => "demote",
            Action::Notify => "notify",
            Action::MigrateTo => "migrate_to",
            Action::MigrateFrom => "migrate_from",
            Action::Reload => "reload",
            Action::MetaData => "meta-data",
            Action::ValidateAll => "validate-all",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// One configured resource as the agent sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceInstance {
    /// The instance name handed to the agent (`web`, or `db:1` for a clone instance).
    pub name: String,
    pub agent: AgentRef,
    /// The agent's own parameters (`ip=192.0.2.10`), validated against its meta-data.
    pub parameters: BTreeMap<String, String>,
}

impl ResourceInstance {
    pub fn new(name: &str, agent: AgentRef) -> ResourceInstance {
        ResourceInstance {
            name: name.to_owned(),
            agent,
            parameters: BTreeMap::new(),
        }
    }

    pub fn with_parameter(mut self, name: &str, value: &str) -> ResourceInstance {
        self.parameters.insert(name.to_owned(), value.to_owned());
        self
    }
}

/// How one operation is run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationOptions {
    /// The agent is killed (its whole process group) when this runs out.
    pub timeout_ms: u64,
    /// The monitor's recurrence; 0 for a one-shot (a probe). Agents read it, e.g. to do
    /// extra work on probes.
    pub interval_ms: u64,
    /// Monitor depth (OCF check level); 0 is the basic check.
    pub depth: u32,
    /// Resource meta-attributes the agent may read (`clone-max`, `notify`,
    /// `globally-unique`, ...), by their configured names.
    pub meta_attributes: BTreeMap<String, String>,
}

impl OperationOptions {
    pub fn with_timeout_ms(timeout_ms: u64) -> OperationOptions {
        OperationOptions {
            timeout_ms,
            interval_ms: 0,
            depth: 0,
            meta_attributes: BTreeMap::new(),
        }
    }

    pub fn with_interval_ms(mut self, interval_ms: u64) -> OperationOptions {
        self.interval_ms = interval_ms;
        self
    }

    pub fn with_meta_attribute(mut self, name: &str, value: &str) -> OperationOptions {
        self.meta_attributes
            .insert(name.to_owned(), value.to_owned());
        self
    }
}

/// What a clone's `notify` operation tells an instance about its peers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub timing: NotifyTiming,
    pub operation: NotifyOperation,
    /// Instances about to be (pre) or just (post) started, stopped, promoted, demoted.
    pub start: Vec<NotifyPeer>,
    pub stop: Vec<NotifyPeer>,
    pub promote: Vec<NotifyPeer>,
    pub demote: Vec<NotifyPeer>,
    /// The state before the transition.
    pub active: Vec<NotifyPeer>,
    pub inactive: Vec<NotifyPeer>,
    pub promoted: Vec<NotifyPeer>,
    pub unpromoted: Vec<NotifyPeer>,
}

impl Notification {
    pub fn new(timing: NotifyTiming, operation: NotifyOperation) -> Notification {
        Notification {
            timing,
            operation,
            start: Vec::new(),
            stop: Vec::new(),
            promote: Vec::new(),
            demote: Vec::new(),
            active: Vec::new(),
            inactive: Vec::new(),
            promoted: Vec::new(),
            unpromoted: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyTiming {
    Pre,
    Post,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyOperation {
    Start,
    Stop,
    Promote,
    Demote,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyPeer {
    /// Clone instance name (`db:0`).
    pub instance: String,
    /// Where it runs; `None` for inactive instances.
    pub node: Option<String>,
}

/// An agent's answer, classified. Adapters map their native codes onto this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentResult {
    Success,
    GenericError,
    InvalidArguments,
    Unimplemented,
    InsufficientPrivilege,
    NotInstalled,
    NotConfigured,
    NotRunning,
    RunningPromoted,
    FailedPromoted,
    /// Running, but a failure is more likely than usual (OCF 1.1).
    Degraded,
    DegradedPromoted,
    /// Killed by a signal or an answer outside the standard.
    Error,
    TimedOut,
}

/// The recovery Pacemaker applies to a failed operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reaction {
    /// A transient error: recover in place (restart) or move, within the failure limits.
    Soft,
    /// An error specific to this host: move elsewhere and ban the resource from this host.
    Hard,
    /// An error common to every host (bad configuration): stop it everywhere, start nowhere.
    Fatal,
}

/// What a one-shot monitor (probe) says about where a resource runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunningState {
    Stopped,
    Started,
    Promoted,
    /// Active, but failed (needs recovery, hence a stop).
    Failed,
    /// The agent could not tell; treat as possibly active.
    Unknown,
}

impl AgentResult {
    /// The reaction this result calls for when it is not the expected one. An expected
    /// result is never a failure (`Degraded` counts as `Success`, `DegradedPromoted` as
    /// `RunningPromoted`); an unexpected success or state report is a soft failure, as in
    /// Pacemaker.
    pub fn reaction_against(self, expected: AgentResult) -> Option<Reaction> {
        let normalized = match self {
            AgentResult::Degraded => AgentResult::Success,
            AgentResult::DegradedPromoted => AgentResult::RunningPromoted,
            other => other,
        };
        if self == expected || normalized == expected {
            return None;
        }
        Some(self.failure_reaction())
    }

    /// The reaction for this result as a failure.
    pub fn failure_reaction(self) -> Reaction {
        match self {
            AgentResult::InvalidArguments
            | AgentResult::Unimplemented
            | AgentResult::InsufficientPrivilege
            | AgentResult::NotInstalled => Reaction::Hard,
            AgentResult::NotConfigured => Reaction::Fatal,
            AgentResult::Success
            | AgentResult::GenericError
            | AgentResult::NotRunning
            | AgentResult::RunningPromoted
            | AgentResult::FailedPromoted
            | AgentResult::Degraded
            | AgentResult::DegradedPromoted
            | AgentResult::Error
            | AgentResult::TimedOut => Reaction::Soft,
        }
    }

    /// The state a probe learns. `NotInstalled` means stopped: the resource cannot run
    /// where its agent is missing (Pacemaker reads a probe's "not installed" the same way).
    pub fn running_state(self) -> RunningState {
        match self {
            AgentResult::Success | AgentResult::Degraded => RunningState::Started,
            AgentResult::RunningPromoted | AgentResult::DegradedPromoted => RunningState::Promoted,
            AgentResult::NotRunning | AgentResult::NotInstalled => RunningState::Stopped,
            AgentResult::FailedPromoted | AgentResult::GenericError => RunningState::Failed,
            _ => RunningState::Unknown,
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            AgentResult::Success => "success",
            AgentResult::GenericError => "generic error",
            AgentResult::InvalidArguments => "invalid arguments",
            AgentResult::Unimplemented => "unimplemented action",
            AgentResult::InsufficientPrivilege => "insufficient privilege",
            AgentResult::NotInstalled => "not installed",
            AgentResult::NotConfigured => "not configured",
            AgentResult::NotRunning => "not running",
            AgentResult::RunningPromoted => "running promoted",
            AgentResult::FailedPromoted => "failed promoted",
            AgentResult::Degraded => "running degraded",
            AgentResult::DegradedPromoted => "running promoted degraded",
            AgentResult::Error => "error",
            AgentResult::TimedOut => "timed out",
        }
    }
}

impl fmt::Display for AgentResult {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.description())
    }
}

impl fmt::Display for Reaction {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Reaction::Soft => "soft (recover)",
            Reaction::Hard => "hard (ban from this host)",
            Reaction::Fatal => "fatal (stop everywhere)",
        })
    }
}

/// How the agent's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Termination {
    Exited {
        code: i32,
    },
    Signaled {
        signal: i32,
    },
    /// Killed (with its process group) after its timeout.
    TimedOut {
        timeout_ms: u64,
    },
    /// Never started, e.g. because the agent is not installed.
    NotExecuted,
}

impl fmt::Display for Termination {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Termination::Exited { code } => write!(formatter, "exit code {code}"),
            Termination::Signaled { signal } => write!(formatter, "killed by signal {signal}"),
            Termination::TimedOut { timeout_ms } => {
                write!(formatter, "killed after {timeout_ms} ms")
            }
            Termination::NotExecuted => formatter.write_str("not executed"),
        }
    }
}

/// Output of one stream, bounded by the adapter (head and tail kept, middle dropped).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapturedOutput {
    pub text: String,
    /// Bytes the agent wrote that are not in `text`.
    pub omitted_bytes: u64,
}

/// The result of one operation, with what is needed for its event message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationOutcome {
    pub action: Action,
    pub result: AgentResult,
    pub termination: Termination,
    /// The agent's own one-line explanation, when it gave one.
    pub exit_reason: Option<String>,
    pub stdout: CapturedOutput,
    pub stderr: CapturedOutput,
    pub duration_ms: u64,
}

impl OperationOutcome {
    pub fn reaction_against(&self, expected: AgentResult) -> Option<Reaction> {
        self.result.reaction_against(expected)
    }

    /// One line for an event: `monitor: not running (exit code 7): <reason>`, the reason
    /// being the agent's exit reason, else the last line it wrote to stderr.
    pub fn message(&self) -> String {
        let mut message = format!("{}: {} ({})", self.action, self.result, self.termination);
        let detail = self
            .exit_reason
            .clone()
            .or_else(|| last_line(&self.stderr.text));
        if let Some(detail) = detail {
            message.push_str(": ");
            message.push_str(&detail);
        }
        message
    }
}

impl fmt::Display for OperationOutcome {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.message())
    }
}

fn last_line(text: &str) -> Option<String> {
    const LIMIT_CHARS: usize = 200;
    let line = text
        .lines()
        .rev()
        .map(str::trim)
        .find(|line| !line.is_empty())?;
    Some(line.chars().take(LIMIT_CHARS).collect())
}

/// An operation that could not be run at all (as opposed to an agent that answered with
/// a failure, which is an [`OperationOutcome`]).
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    #[error("resource {resource}: parameter name {name:?} cannot be passed to an agent")]
    InvalidParameterName { resource: String, name: String },
    #[error("resource {resource}: value of {name:?} contains a NUL byte")]
    InvalidParameterValue { resource: String, name: String },
    #[error("agent {agent} is not handled by this driver")]
    UnsupportedAgent { agent: AgentRef },
    /// The agent's class cannot run on this host at all (`systemd:` where systemd is not
    /// the service manager).
    #[error("node {node} cannot run {agent}: {reason}")]
    ClassUnavailable {
        node: String,
        agent: AgentRef,
        reason: String,
    },
    #[error("cannot run {action} of agent {agent}: {source}")]
    Spawn {
        agent: AgentRef,
        action: Action,
        #[source]
        source: std::io::Error,
    },
    #[error("state directory {path} is unusable: {source}")]
    StateDirectory {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{action} of agent {agent} did not end after it was killed")]
    Unkillable { agent: AgentRef, action: Action },
}

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error(transparent)]
    Operation(#[from] OperationError),
    #[error("meta-data of agent {agent} failed: {message}")]
    Failed { agent: AgentRef, message: String },
    #[error("meta-data of agent {agent} is malformed: {reason}")]
    Malformed { agent: AgentRef, reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum ListAgentsError {
    #[error("cannot read agent directory {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot list agents with {command}: {reason}")]
    Command { command: String, reason: String },
}

/// What an agent declares about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentMetadata {
    pub agent: AgentRef,
    /// The agent's own version, when declared.
    pub version: Option<String>,
    pub short_description: String,
    pub long_description: String,
    pub parameters: Vec<ParameterSpec>,
    pub actions: Vec<ActionSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParameterSpec {
    pub name: String,
    pub required: bool,
    /// No two resources of this agent may share the value.
    pub unique: bool,
    /// A change can be applied by `reload` instead of a restart.
    pub reloadable: bool,
    pub deprecated: bool,
    pub parameter_type: ParameterType,
    pub default: Option<String>,
    pub short_description: String,
    pub long_description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParameterType {
    String,
    Integer,
    Boolean,
    /// One of the listed values.
    Select {
        values: Vec<String>,
    },
    /// A type this port does not check (agents use `time`, `port`, ...).
    Other {
        name: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionSpec {
    /// The action as the agent names it.
    pub name: String,
    /// The operation it implements, when it is one this port knows.
    pub action: Option<Action>,
    pub timeout_ms: Option<u64>,
    pub interval_ms: Option<u64>,
    pub depth: Option<u32>,
    pub role: Option<ActionRole>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionRole {
    Promoted,
    Unpromoted,
}

impl AgentMetadata {
    pub fn parameter(&self, name: &str) -> Option<&ParameterSpec> {
        self.parameters
            .iter()
            .find(|parameter| parameter.name == name)
    }

    pub fn supports(&self, action: Action) -> bool {
        self.actions.iter().any(|spec| spec.action == Some(action))
    }

    /// The agent's advised timeout for an action (the first declaration wins).
    pub fn default_timeout_ms(&self, action: Action) -> Option<u64> {
        self.actions
            .iter()
            .filter(|spec| spec.action == Some(action))
            .find_map(|spec| spec.timeout_ms)
    }

    /// The agent's advised recurring monitor for a role (`None` role: not role-specific).
    pub fn default_monitor(&self, role: Option<ActionRole>) -> Option<&ActionSpec> {
        let monitors = || {
            self.actions.iter().filter(|spec| {
                spec.action == Some(Action::Monitor) && spec.interval_ms.unwrap_or(0) > 0
            })
        };
        monitors()
            .find(|spec| spec.role == role)
            .or_else(|| monitors().find(|spec| spec.role.is_none()))
    }

    /// Checks a resource's parameters against the declared ones: every parameter known,
    /// every required one present, integers and booleans well-formed, selections
    /// allowed. All problems are reported, each naming its parameter.
    pub fn validate_parameters(
        &self,
        parameters: &BTreeMap<String, String>,
    ) -> Result<(), ParameterErrors> {
        let mut errors = Vec::new();
        for (name, value) in parameters {
            let Some(spec) = self.parameter(name) else {
                errors.push(ParameterError::Unknown {
                    name: name.clone(),
                    agent: self.agent.clone(),
                });
                continue;
            };
            if let Some(error) = check_value(spec, value) {
                errors.push(error);
            }
        }
        for spec in self.parameters.iter().filter(|spec| spec.required) {
            if !parameters.contains_key(&spec.name) {
                errors.push(ParameterError::MissingRequired {
                    name: spec.name.clone(),
                    agent: self.agent.clone(),
                });
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ParameterErrors(errors))
        }
    }
}

fn check_value(spec: &ParameterSpec, value: &str) -> Option<ParameterError> {
    let name = spec.name.clone();
    let value_owned = value.to_owned();
    match &spec.parameter_type {
        ParameterType::Integer if value.trim().parse::<i64>().is_err() => {
            Some(ParameterError::NotInteger {
                name,
                value: value_owned,
            })
        }
        ParameterType::Boolean if parse_boolean(value).is_none() => {
            Some(ParameterError::NotBoolean {
                name,
                value: value_owned,
            })
        }
        ParameterType::Select { values } if !values.iter().any(|allowed| allowed == value) => {
            Some(ParameterError::NotAllowed {
                name,
                value: value_owned,
                allowed: values.join(", "),
            })
        }
        _ => None,
    }
}

/// Booleans as Pacemaker reads them (`crm_is_true`): yes/no, true/false, on/off, y/n, 1/0.
pub fn parse_boolean(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "yes" | "y" | "true" | "on" => Some(true),
        "0" | "no" | "n" | "false" | "off" => Some(false),
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParameterError {
    #[error("unknown parameter {name:?} for agent {agent}")]
    Unknown { name: String, agent: AgentRef },
    #[error("missing required parameter {name:?} for agent {agent}")]
    MissingRequired { name: String, agent: AgentRef },
    #[error("parameter {name:?} must be an integer, not {value:?}")]
    NotInteger { name: String, value: String },
    #[error(
        "parameter {name:?} must be a boolean (true/false, yes/no, on/off, 1/0), not {value:?}"
    )]
    NotBoolean { name: String, value: String },
    #[error("parameter {name:?} must be one of {allowed}, not {value:?}")]
    NotAllowed {
        name: String,
        value: String,
        allowed: String,
    },
}

impl ParameterError {
    pub fn parameter(&self) -> &str {
        match self {
            ParameterError::Unknown { name, .. }
            | ParameterError::MissingRequired { name, .. }
            | ParameterError::NotInteger { name, .. }
            | ParameterError::NotBoolean { name, .. }
            | ParameterError::NotAllowed { name, .. } => name,
        }
    }
}

/// Every problem found in one resource's parameters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", join_errors(.0))]
pub struct ParameterErrors(pub Vec<ParameterError>);

fn join_errors(errors: &[ParameterError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigurationError {
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error("resource {resource}: {errors}")]
    Parameters {
        resource: String,
        errors: ParameterErrors,
    },
}

/// Runs resource agents on this host. Every operation is bounded by its timeout; a
/// failure the agent reports is an `Ok` outcome, `Err` means the agent could not be run.
pub trait ResourceAgent: Send + Sync {
    fn start(
        &self,
        resource: &ResourceInstance,
        options: &OperationOptions,
    ) -> impl Future<Output = Result<OperationOutcome, OperationError>> + Send;

    fn stop(
        &self,
        resource: &ResourceInstance,
        options: &OperationOptions,
    ) -> impl Future<Output = Result<OperationOutcome, OperationError>> + Send;

    /// A recurring check when `options.interval_ms > 0`, a probe when 0.
    fn monitor(
        &self,
        resource: &ResourceInstance,
        options: &OperationOptions,
    ) -> impl Future<Output = Result<OperationOutcome, OperationError>> + Send;

    fn promote(
        &self,
        resource: &ResourceInstance,
        options: &OperationOptions,
    ) -> impl Future<Output = Result<OperationOutcome, OperationError>> + Send;

    fn demote(
        &self,
        resource: &ResourceInstance,
        options: &OperationOptions,
    ) -> impl Future<Output = Result<OperationOutcome, OperationError>> + Send;

    fn notify(
        &self,
        resource: &ResourceInstance,
        notification: &Notification,
        options: &OperationOptions,
    ) -> impl Future<Output = Result<OperationOutcome, OperationError>> + Send;

    /// Runs on the source host; the adapter knows its own host name.
    fn migrate_to(
        &self,
        resource: &ResourceInstance,
        target_node: &str,
        options: &OperationOptions,
    ) -> impl Future<Output = Result<OperationOutcome, OperationError>> + Send;

    /// Runs on the target host after `migrate_to` succeeded on the source.
    fn migrate_from(
        &self,
        resource: &ResourceInstance,
        source_node: &str,
        options: &OperationOptions,
    ) -> impl Future<Output = Result<OperationOutcome, OperationError>> + Send;

    /// Applies changed reloadable parameters without a restart.
    fn reload(
        &self,
        resource: &ResourceInstance,
        options: &OperationOptions,
    ) -> impl Future<Output = Result<OperationOutcome, OperationError>> + Send;

    fn validate_all(
        &self,
        resource: &ResourceInstance,
        options: &OperationOptions,
    ) -> impl Future<Output = Result<OperationOutcome, OperationError>> + Send;

    fn meta_data(
        &self,
        agent: &AgentRef,
    ) -> impl Future<Output = Result<AgentMetadata, MetadataError>> + Send;

    /// Every agent this adapter can run on this host, sorted.
    fn list_agents(&self) -> impl Future<Output = Result<Vec<AgentRef>, ListAgentsError>> + Send;

    /// One-shot monitor: where does the resource run already?
    fn probe(
        &self,
        resource: &ResourceInstance,
        timeout_ms: u64,
    ) -> impl Future<Output = Result<OperationOutcome, OperationError>> + Send {
        async move {
            let options = OperationOptions::with_timeout_ms(timeout_ms);
            self.monitor(resource, &options).await
        }
    }
}

/// Refuses a resource whose parameters violate its agent's meta-data, before anything is
/// changed; returns the meta-data for default timeouts.
pub async fn check_configuration<A: ResourceAgent>(
    agent: &A,
    resource: &ResourceInstance,
) -> Result<AgentMetadata, ConfigurationError> {
    let metadata = agent.meta_data(&resource.agent).await?;
    metadata
        .validate_parameters(&resource.parameters)
        .map_err(|errors| ConfigurationError::Parameters {
            resource: resource.name.clone(),
            errors,
        })?;
    Ok(metadata)
}

/// The shared test suite: every [`ResourceAgent`] implementation runs these against its
/// stateless test resource (like `ocf:heartbeat:Dummy`) and a promotable one (like
/// `ocf:pacemaker:Stateful`).
pub mod conformance {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("conformance step {step:?} failed: {detail}")]
    pub struct ConformanceError {
        pub step: &'static str,
        pub detail: String,
    }

    fn fail(step: &'static str, detail: impl fmt::Display) -> ConformanceError {
        ConformanceError {
            step,
            detail: detail.to_string(),
        }
    }

    async fn expect(
        step: &'static str,
        operation: impl Future<Output = Result<OperationOutcome, OperationError>>,
        expected: AgentResult,
    ) -> Result<OperationOutcome, ConformanceError> {
        let outcome = operation.await.map_err(|error| fail(step, error))?;
        if outcome.reaction_against(expected).is_some() {
            return Err(fail(
                step,
                format!("expected {expected}, got {}", outcome.message()),
            ));
        }
        Ok(outcome)
    }

    /// Probe stopped, start, monitor running, start again (idempotent), stop, stop again
    /// (idempotent), monitor stopped. The resource must be stopped before.
    pub async fn check_lifecycle<A: ResourceAgent>(
        agent: &A,
        resource: &ResourceInstance,
        options: &OperationOptions,
    ) -> Result<(), ConformanceError> {
        let probe = agent.probe(resource, options.timeout_ms);
        let probed = expect("probe before start", probe, AgentResult::NotRunning).await?;
        if probed.result.running_state() != RunningState::Stopped {
            return Err(fail("probe before start", "probe does not report stopped"));
        }
        let monitor_options = options.clone().with_interval_ms(10_000);
        expect(
            "start",
            agent.start(resource, options),
            AgentResult::Success,
        )
        .await?;
        let monitored = agent.monitor(resource, &monitor_options);
        expect("monitor after start", monitored, AgentResult::Success).await?;
        expect(
            "start when started",
            agent.start(resource, options),
            AgentResult::Success,
        )
        .await?;
        expect("stop", agent.stop(resource, options), AgentResult::Success).await?;
        expect(
            "stop when stopped",
            agent.stop(resource, options),
            AgentResult::Success,
        )
        .await?;
        let monitored = agent.monitor(resource, &monitor_options);
        expect("monitor after stop", monitored, AgentResult::NotRunning).await?;
        Ok(())
    }

    /// Start, promote, monitor promoted, demote, monitor unpromoted, stop, monitor stopped.
    pub async fn check_promotable<A: ResourceAgent>(
        agent: &A,
        resource: &ResourceInstance,
        options: &OperationOptions,
    ) -> Result<(), ConformanceError> {
        let monitor_options = options.clone().with_interval_ms(10_000);
        expect(
            "start",
            agent.start(resource, options),
            AgentResult::Success,
        )
        .await?;
        let monitored = agent.monitor(resource, &monitor_options);
        expect("monitor unpromoted", monitored, AgentResult::Success).await?;
        expect(
            "promote",
            agent.promote(resource, options),
            AgentResult::Success,
        )
        .await?;
        let monitored = agent.monitor(resource, &monitor_options);
        expect("monitor promoted", monitored, AgentResult::RunningPromoted).await?;
        let probed = agent.probe(resource, options.timeout_ms);
        let probed = expect("probe promoted", probed, AgentResult::RunningPromoted).await?;
        if probed.result.running_state() != RunningState::Promoted {
            return Err(fail("probe promoted", "probe does not report promoted"));
        }
        expect(
            "demote",
            agent.demote(resource, options),
            AgentResult::Success,
        )
        .await?;
        let monitored = agent.monitor(resource, &monitor_options);
        expect("monitor after demote", monitored, AgentResult::Success).await?;
        expect("stop", agent.stop(resource, options), AgentResult::Success).await?;
        let monitored = agent.monitor(resource, &monitor_options);
        expect("monitor after stop", monitored, AgentResult::NotRunning).await?;
        Ok(())
    }

    /// The agent is listed, its meta-data declares start, stop and monitor with unique
    /// parameter names, and parameter validation refuses an unknown parameter by name.
    pub async fn check_meta_data<A: ResourceAgent>(
        agent: &A,
        agent_ref: &AgentRef,
    ) -> Result<(), ConformanceError> {
        let listed = agent
            .list_agents()
            .await
            .map_err(|error| fail("list agents", error))?;
        if !listed.contains(agent_ref) {
            return Err(fail("list agents", format!("{agent_ref} is not listed")));
        }
        let metadata = agent
            .meta_data(agent_ref)
            .await
            .map_err(|error| fail("meta-data", error))?;
        for action in [Action::Start, Action::Stop, Action::Monitor] {
            if !metadata.supports(action) {
                return Err(fail(
                    "meta-data",
                    format!("action {action} is not declared"),
                ));
            }
        }
        let mut names = BTreeSet::new();
        if let Some(duplicate) = metadata
            .parameters
            .iter()
            .find(|spec| !names.insert(&spec.name))
        {
            return Err(fail(
                "meta-data",
                format!("parameter {:?} is declared twice", duplicate.name),
            ));
        }
        let bogus_name = "hafen_conformance_no_such_parameter";
        let bogus = BTreeMap::from([(bogus_name.to_owned(), "1".to_owned())]);
        let refused = metadata
            .validate_parameters(&bogus)
            .err()
            .unwrap_or(ParameterErrors(Vec::new()));
        if !refused
            .0
            .iter()
            .any(|error| error.parameter() == bogus_name)
        {
            return Err(fail(
                "validate parameters",
                "an unknown parameter was not refused by name",
            ));
        }
        Ok(())
    }
}
