//! The fence port: the [`Fencer`] trait every fence adapter (standard fence agents, fakes) implements, its plain types (devices, actions, topologies, outcomes), parameter validation against an agent's metadata, topology execution, and a shared conformance suite.
//!
//! Nothing here knows the fence-agent protocol: stdin lines, exit codes and metadata XML
//! belong to `driver-fence`. Secrets (passwords) are plain strings in a device's
//! parameters because the agents need them, but every `Debug`, `Display` and error of
//! this module prints them as [`REDACTED`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::resource::{CapturedOutput, Termination};

/// What every redacted value is printed as.
pub const REDACTED: &str = "<redacted>";

/// Parameter names whose values are secret on every device, whatever `secret_parameters`
/// says, because the standard agents use them for credentials (`password`, `passwd`,
/// `snmp_priv_passwd`, ...). A name containing one of these is secret.
pub const ALWAYS_SECRET_NAME_PARTS: [&str; 2] = ["passw", "secret"];

/// A value that must never be printed: `Debug` and `Display` show [`REDACTED`]. Use
/// [`Secret::expose`] only where the value leaves the process for its rightful user.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(REDACTED)
    }
}

/// The actions of the fence-agent standard. `Display` gives the names agents take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FenceAction {
    Off,
    On,
    Reboot,
    Status,
    Monitor,
    List,
    Metadata,
}

impl FenceAction {
    pub const ALL: [FenceAction; 7] = [
        FenceAction::Off,
        FenceAction::On,
        FenceAction::Reboot,
        FenceAction::Status,
        FenceAction::Monitor,
        FenceAction::List,
        FenceAction::Metadata,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FenceAction::Off => "off",
            FenceAction::On => "on",
            FenceAction::Reboot => "reboot",
            FenceAction::Status => "status",
            FenceAction::Monitor => "monitor",
            FenceAction::List => "list",
            FenceAction::Metadata => "metadata",
        }
    }

    /// Whether the action is aimed at one host (and so takes its plug).
    pub fn targets_host(self) -> bool {
        matches!(
            self,
            FenceAction::Off | FenceAction::On | FenceAction::Reboot | FenceAction::Status
        )
    }
}

impl fmt::Display for FenceAction {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// What fencing a host asks of a device.
///
/// `Reboot` is performed as off, a status check confirming off, then on: the fence is
/// confirmed by the status check, so a host that fails to come back on is still fenced
/// (the outcome says so). This is also how Pacemaker reboots through a topology level of
/// several devices (all off, then all on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerAction {
    Off,
    On,
    Reboot,
}

impl PowerAction {
    pub fn fence_action(self) -> FenceAction {
        match self {
            PowerAction::Off => FenceAction::Off,
            PowerAction::On => FenceAction::On,
            PowerAction::Reboot => FenceAction::Reboot,
        }
    }

    /// Whether success means the host was confirmed off (and so counts as fenced).
    pub fn confirms_off(self) -> bool {
        matches!(self, PowerAction::Off | PowerAction::Reboot)
    }
}

impl fmt::Display for PowerAction {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fence_action().fmt(formatter)
    }
}

/// Per-attempt limits of one device; the agent's process group is killed when one runs
/// out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceTimeouts {
    /// `off`, `on` (Pacemaker's `pcmk_off_timeout`; its default `stonith-timeout` is 60 s).
    pub power_timeout_ms: u64,
    /// `status`, `monitor` and `list`.
    pub status_timeout_ms: u64,
}

impl Default for FenceTimeouts {
    fn default() -> FenceTimeouts {
        FenceTimeouts {
            power_timeout_ms: 60_000,
            status_timeout_ms: 20_000,
        }
    }
}

/// How a power action is retried: `retries` more attempts after the first, the pause
/// before each doubling from `retry_backoff_ms` up to `retry_backoff_limit_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceRetries {
    /// Pacemaker's `pcmk_off_retries` defaults to 2.
    pub retries: u32,
    pub retry_backoff_ms: u64,
    pub retry_backoff_limit_ms: u64,
}

impl Default for FenceRetries {
    fn default() -> FenceRetries {
        FenceRetries {
            retries: 2,
            retry_backoff_ms: 500,
            retry_backoff_limit_ms: 5_000,
        }
    }
}

impl FenceRetries {
    /// The pause before attempt `attempt` (0 is the first attempt, which has none).
    pub fn backoff_ms(&self, attempt: u32) -> u64 {
        if attempt == 0 {
            return 0;
        }
        let doublings = (attempt - 1).min(32);
        self.retry_backoff_ms
            .saturating_mul(1_u64 << doublings)
            .min(self.retry_backoff_limit_ms)
    }
}

/// How the target host is named to the agent.
pub const DEFAULT_HOST_ARGUMENT: &str = "plug";

/// One configured fence device (Pacemaker's stonith resource).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceDevice {
    pub name: String,
    /// The agent's executable name, e.g. `fence_ipmilan`.
    pub agent: String,
    /// The agent's own parameters (`ip`, `username`, `password`, ...), validated against
    /// its metadata. Never contains `action`: the driver sets it.
    pub parameters: BTreeMap<String, String>,
    /// Names whose values are secrets, beyond [`ALWAYS_SECRET_NAME_PARTS`].
    pub secret_parameters: BTreeSet<String>,
    /// Host name -> the plug (port, VM name, outlet) the device knows it by
    /// (`pcmk_host_map`). A host missing here is passed under its own name.
    pub host_map: BTreeMap<String, String>,
    /// The parameter the plug is passed as (`pcmk_host_argument`): `plug` (default),
    /// `port` for old agents, or `none` for devices that fence one fixed host.
    pub host_argument: String,
    pub timeouts: FenceTimeouts,
    pub retries: FenceRetries,
}

impl FenceDevice {
    pub fn new(name: &str, agent: &str) -> FenceDevice {
        FenceDevice {
            name: name.to_owned(),
            agent: agent.to_owned(),
            parameters: BTreeMap::new(),
            secret_parameters: BTreeSet::new(),
            host_map: BTreeMap::new(),
            host_argument: DEFAULT_HOST_ARGUMENT.to_owned(),
            timeouts: FenceTimeouts::default(),
            retries: FenceRetries::default(),
        }
    }

    pub fn with_parameter(mut self, name: &str, value: &str) -> FenceDevice {
        self.parameters.insert(name.to_owned(), value.to_owned());
        self
    }

    /// Sets a parameter and marks it secret.
    pub fn with_secret_parameter(mut self, name: &str, value: &Secret) -> FenceDevice {
        self.parameters
            .insert(name.to_owned(), value.expose().to_owned());
        self.secret_parameters.insert(name.to_owned());
        self
    }

    pub fn with_host(mut self, host: &str, plug: &str) -> FenceDevice {
        self.host_map.insert(host.to_owned(), plug.to_owned());
        self
    }

    pub fn with_timeouts(mut self, timeouts: FenceTimeouts) -> FenceDevice {
        self.timeouts = timeouts;
        self
    }

    pub fn with_retries(mut self, retries: FenceRetries) -> FenceDevice {
        self.retries = retries;
        self
    }

    pub fn is_secret(&self, name: &str) -> bool {
        let lowercase = name.to_ascii_lowercase();
        self.secret_parameters.contains(name)
            || ALWAYS_SECRET_NAME_PARTS
                .iter()
                .any(|part| lowercase.contains(part))
    }

    /// The plug the device knows `host` by.
    pub fn plug_for<'a>(&'a self, host: &'a str) -> &'a str {
        self.host_map.get(host).map_or(host, String::as_str)
    }

    /// Whether the plug is passed at all.
    pub fn passes_host(&self) -> bool {
        self.host_argument != "none"
    }

    /// The parameters with every secret value replaced by [`REDACTED`]: what status
    /// output, events and `fence-device list` may show.
    pub fn redacted_parameters(&self) -> BTreeMap<String, String> {
        self.parameters
            .iter()
            .map(|(name, value)| {
                let shown = if self.is_secret(name) {
                    REDACTED.to_owned()
                } else {
                    value.clone()
                };
                (name.clone(), shown)
            })
            .collect()
    }

    /// The secret values, for scrubbing them from text the agent printed.
    pub fn secret_values(&self) -> Vec<Secret> {
        self.parameters
            .iter()
            .filter(|(name, value)| self.is_secret(name) && !value.is_empty())
            .map(|(_, value)| Secret::new(value.clone()))
            .collect()
    }

    /// Replaces every secret value of this device in `text` by [`REDACTED`].
    pub fn scrub(&self, text: &str) -> String {
        scrub_secrets(text, &self.secret_values())
    }
}

/// Replaces every occurrence of each secret in `text` by [`REDACTED`], longest first so
/// a secret containing another is removed whole.
pub fn scrub_secrets(text: &str, secrets: &[Secret]) -> String {
    let mut values: Vec<&str> = secrets
        .iter()
        .map(Secret::expose)
        .filter(|value| !value.is_empty())
        .collect();
    values.sort_by_key(|value| std::cmp::Reverse(value.len()));
    let mut scrubbed = text.to_owned();
    for value in values {
        if scrubbed.contains(value) {
            scrubbed = scrubbed.replace(value, REDACTED);
        }
    }
    scrubbed
}

impl fmt::Debug for FenceDevice {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("FenceDevice")
            .field("name", &self.name)
            .field("agent", &self.agent)
            .field("parameters", &self.redacted_parameters())
            .field("secret_parameters", &self.secret_parameters)
            .field("host_map", &self.host_map)
            .field("host_argument", &self.host_argument)
            .field("timeouts", &self.timeouts)
            .field("retries", &self.retries)
            .finish()
    }
}

/// One level of a topology: every device must succeed for the level to fence the host
/// (two power supplies, two switches).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceLevel {
    /// Device names, used in this order.
    pub devices: Vec<String>,
}

impl FenceLevel {
    pub fn new(devices: &[&str]) -> FenceLevel {
        FenceLevel {
            devices: devices.iter().map(|name| (*name).to_owned()).collect(),
        }
    }
}

/// Per host, the levels tried in order; the first level that succeeds confirms the fence.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceTopology {
    pub levels: BTreeMap<String, Vec<FenceLevel>>,
}

impl FenceTopology {
    pub fn with_level(mut self, host: &str, level: FenceLevel) -> FenceTopology {
        self.levels.entry(host.to_owned()).or_default().push(level);
        self
    }

    pub fn levels_for(&self, host: &str) -> &[FenceLevel] {
        self.levels.get(host).map_or(&[], Vec::as_slice)
    }
}

/// A power state a `status` reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerState {
    On,
    Off,
}

impl fmt::Display for PowerState {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            PowerState::On => "on",
            PowerState::Off => "off",
        })
    }
}

/// How one agent run ended, as the adapter classified it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentVerdict {
    Success,
    /// `status` only: the agent reported the host on / off.
    PoweredOn,
    PoweredOff,
    Failed,
    TimedOut,
}

/// One agent run within a fence operation. Captured output has the device's secrets
/// scrubbed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRun {
    pub action: FenceAction,
    /// 1-based attempt of the operation this run belongs to.
    pub attempt: u32,
    pub verdict: AgentVerdict,
    pub termination: Termination,
    /// The agent's own explanation, as the adapter found it in its output.
    pub reason: Option<String>,
    pub stdout: CapturedOutput,
    pub stderr: CapturedOutput,
    pub duration_ms: u64,
}

impl AgentRun {
    /// One line for an event: `off (attempt 2): failed (exit code 1): <reason>`, the
    /// reason being the agent's own, else its last line of stderr (or stdout).
    pub fn message(&self) -> String {
        let verdict = match self.verdict {
            AgentVerdict::Success => "success",
            AgentVerdict::PoweredOn => "host is on",
            AgentVerdict::PoweredOff => "host is off",
            AgentVerdict::Failed => "failed",
            AgentVerdict::TimedOut => "timed out",
        };
        let mut message = format!(
            "{} (attempt {}): {verdict} ({})",
            self.action, self.attempt, self.termination
        );
        let detail = self
            .reason
            .clone()
            .or_else(|| last_line(&self.stderr.text))
            .or_else(|| last_line(&self.stdout.text));
        if let Some(line) = detail {
            message.push_str(": ");
            message.push_str(&line);
        }
        message
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

/// A power action that succeeded: for `off` and `reboot`, the host was confirmed off by a
/// `status` after the agent's `off`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceOutcome {
    pub device: String,
    pub target: String,
    pub action: PowerAction,
    /// Every agent run, in order (failed attempts included).
    pub runs: Vec<AgentRun>,
    /// `reboot` only: the host was confirmed off but `on` failed (it stays fenced).
    pub power_on_failure: Option<String>,
    pub duration_ms: u64,
}

impl FenceOutcome {
    pub fn confirmed_off(&self) -> bool {
        self.action.confirms_off()
    }
}

/// Why a device operation did not succeed. Messages name the device, the action and the
/// target; they never contain parameter values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FenceError {
    #[error("device {device}: fence agent name {agent:?} is not a fence agent (fence_NAME)")]
    InvalidAgentName { device: String, agent: String },
    #[error("device {device}: fence agent {agent} is not installed at {path}")]
    AgentNotInstalled {
        device: String,
        agent: String,
        path: String,
    },
    #[error("device {device}: parameter name {name:?} cannot be passed to a fence agent")]
    InvalidParameterName { device: String, name: String },
    #[error("device {device}: value of parameter {name:?} contains a line break or NUL byte")]
    InvalidParameterValue { device: String, name: String },
    #[error(
        "device {device}: parameter \"action\" is set by the driver and must not be configured"
    )]
    ActionParameter { device: String },
    #[error("device {device}: cannot run {action} of fence agent {agent}: {reason}")]
    Spawn {
        device: String,
        agent: String,
        action: FenceAction,
        reason: String,
    },
    #[error("device {device}: {action} of fence agent {agent} did not end after it was killed")]
    Unkillable {
        device: String,
        agent: String,
        action: FenceAction,
    },
    /// Every attempt failed; `runs` holds them all, the message the last.
    #[error("device {device} could not {action} host {target} after {attempts} attempts: {last}")]
    Failed {
        device: String,
        target: String,
        action: FenceAction,
        attempts: u32,
        last: String,
        runs: Vec<AgentRun>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FenceMetadataError {
    #[error("fence agent name {agent:?} is not a fence agent (fence_NAME)")]
    InvalidAgentName { agent: String },
    #[error("fence agent {agent} is not installed at {path}")]
    AgentNotInstalled { agent: String, path: String },
    #[error("metadata of fence agent {agent} failed: {reason}")]
    Failed { agent: String, reason: String },
    #[error("metadata of fence agent {agent} is malformed: {reason}")]
    Malformed { agent: String, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListFenceAgentsError {
    #[error("cannot read fence agent directory {path}: {reason}")]
    Io { path: String, reason: String },
}

/// What a fence agent declares about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceAgentMetadata {
    pub agent: String,
    pub short_description: String,
    pub long_description: String,
    pub parameters: Vec<FenceParameterSpec>,
    /// Action names as the agent declares them (`on`, `off`, `reboot`, `status`, ...).
    pub actions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceParameterSpec {
    pub name: String,
    pub required: bool,
    /// Kept for old configurations; its replacement names it in `obsoletes`.
    pub deprecated: bool,
    /// The deprecated parameter this one replaces (`ip` obsoletes `ipaddr`).
    pub obsoletes: Option<String>,
    /// `string`, `integer`, `boolean`, `select`, `second`, ...
    pub content_type: String,
    pub default: Option<String>,
    pub short_description: String,
}

/// Parameters the driver passes itself; a device never needs to configure them.
pub const DRIVER_PARAMETERS: [&str; 4] = ["action", "plug", "port", "nodename"];

impl FenceAgentMetadata {
    pub fn parameter(&self, name: &str) -> Option<&FenceParameterSpec> {
        self.parameters
            .iter()
            .find(|parameter| parameter.name == name)
    }

    pub fn supports(&self, action: FenceAction) -> bool {
        self.actions.iter().any(|name| name == action.name())
    }

    /// Checks a device's parameters against the declared ones: `action` not configured,
    /// every name known, every required one present. A required parameter counts as
    /// present when its deprecated or replacing twin is given (`ipaddr` for `ip`), and
    /// the host argument (`plug`/`port`) is the driver's to pass. All problems are
    /// reported, each naming its parameter, never a value.
    pub fn validate_device(&self, device: &FenceDevice) -> Result<(), DeviceValidationError> {
        let mut problems = Vec::new();
        if device.parameters.contains_key("action") {
            problems.push(ParameterProblem::DriverOwned {
                name: "action".to_owned(),
            });
        }
        for name in device.parameters.keys().filter(|name| *name != "action") {
            if self.parameter(name).is_none() {
                problems.push(ParameterProblem::Unknown { name: name.clone() });
            }
        }
        let given = |name: &str| device.parameters.contains_key(name);
        for spec in self.parameters.iter().filter(|spec| spec.required) {
            let twin_given = self.parameters.iter().any(|other| {
                (other.obsoletes.as_deref() == Some(spec.name.as_str()) && given(&other.name))
                    || (spec.obsoletes.as_deref() == Some(other.name.as_str())
                        && given(&other.name))
            });
            let driver_owned = DRIVER_PARAMETERS.contains(&spec.name.as_str());
            // A deprecated required parameter is satisfied by its replacement, which is
            // itself checked.
            let replaced = spec.deprecated
                && self
                    .parameters
                    .iter()
                    .any(|other| other.obsoletes.as_deref() == Some(spec.name.as_str()));
            if !given(&spec.name) && !twin_given && !driver_owned && !replaced {
                problems.push(ParameterProblem::MissingRequired {
                    name: spec.name.clone(),
                });
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(DeviceValidationError {
                device: device.name.clone(),
                agent: self.agent.clone(),
                problems,
            })
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParameterProblem {
    #[error("unknown parameter {name:?}")]
    Unknown { name: String },
    #[error("missing required parameter {name:?}")]
    MissingRequired { name: String },
    #[error("parameter {name:?} is set by the driver and must not be configured")]
    DriverOwned { name: String },
}

impl ParameterProblem {
    pub fn parameter(&self) -> &str {
        match self {
            ParameterProblem::Unknown { name }
            | ParameterProblem::MissingRequired { name }
            | ParameterProblem::DriverOwned { name } => name,
        }
    }
}

/// Every problem of one device's parameters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("device {device} (fence agent {agent}): {}", join_problems(.problems))]
pub struct DeviceValidationError {
    pub device: String,
    pub agent: String,
    pub problems: Vec<ParameterProblem>,
}

fn join_problems(problems: &[ParameterProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceCheckError {
    #[error(transparent)]
    Metadata(#[from] FenceMetadataError),
    #[error(transparent)]
    Parameters(#[from] DeviceValidationError),
}

/// Runs fence agents from this host. Every agent run is bounded by the device's timeouts
/// and every operation by its retries: nothing here waits forever.
pub trait Fencer: Send + Sync {
    /// Performs a power action on `target` with the device's retries. `Ok` for `off`
    /// and `reboot` means the host was confirmed off by a `status` after `off`.
    fn power(
        &self,
        device: &FenceDevice,
        target: &str,
        action: PowerAction,
    ) -> impl Future<Output = Result<FenceOutcome, FenceError>> + Send;

    /// One `status` of `target` (no retries).
    fn status(
        &self,
        device: &FenceDevice,
        target: &str,
    ) -> impl Future<Output = Result<PowerState, FenceError>> + Send;

    /// Whether the device itself answers (`monitor`).
    fn monitor(&self, device: &FenceDevice) -> impl Future<Output = Result<(), FenceError>> + Send;

    /// The plugs the device knows (`list`), sorted.
    fn list(
        &self,
        device: &FenceDevice,
    ) -> impl Future<Output = Result<Vec<String>, FenceError>> + Send;

    fn metadata(
        &self,
        agent: &str,
    ) -> impl Future<Output = Result<FenceAgentMetadata, FenceMetadataError>> + Send;

    /// Every fence agent this host can run, sorted.
    fn list_agents(&self)
    -> impl Future<Output = Result<Vec<String>, ListFenceAgentsError>> + Send;

    /// Refuses a device whose parameters violate its agent's metadata (run when a device
    /// is configured, before anything is stored).
    fn check_device(
        &self,
        device: &FenceDevice,
    ) -> impl Future<Output = Result<FenceAgentMetadata, DeviceCheckError>> + Send {
        async move {
            let metadata = self.metadata(&device.agent).await?;
            metadata.validate_device(device)?;
            Ok(metadata)
        }
    }

    /// Fences `target` through its topology: see [`fence_with_topology`].
    fn fence(
        &self,
        devices: &BTreeMap<String, FenceDevice>,
        levels: &[FenceLevel],
        target: &str,
        action: PowerAction,
    ) -> impl Future<Output = Result<TopologyOutcome, TopologyError>> + Send
    where
        Self: Sized,
    {
        fence_with_topology(self, devices, levels, target, action)
    }
}

/// The level that fenced a host and what each of its devices did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopologyOutcome {
    pub target: String,
    /// 0-based index into the host's levels.
    pub level: usize,
    pub outcomes: Vec<FenceOutcome>,
    /// Why earlier levels failed, in order.
    pub failed_levels: Vec<LevelFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LevelFailure {
    pub level: usize,
    pub device: String,
    pub reason: String,
}

impl fmt::Display for LevelFailure {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "level {} device {}: {}",
            self.level + 1,
            self.device,
            self.reason
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    #[error("host {target} has no fence level configured")]
    NoLevels { target: String },
    #[error("every fence level of host {target} failed: {}", join_failures(.failures))]
    AllLevelsFailed {
        target: String,
        failures: Vec<LevelFailure>,
    },
}

fn join_failures(failures: &[LevelFailure]) -> String {
    failures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Tries the levels in order; a level succeeds only if every device of it succeeds, and
/// the first level that succeeds confirms the fence. Devices of a level run one after the
/// other; for `reboot` every device of the level is turned off (and confirmed off) before
/// any is turned on again, so a host with two power supplies really loses power.
pub async fn fence_with_topology<F: Fencer>(
    fencer: &F,
    devices: &BTreeMap<String, FenceDevice>,
    levels: &[FenceLevel],
    target: &str,
    action: PowerAction,
) -> Result<TopologyOutcome, TopologyError> {
    if levels.is_empty() {
        return Err(TopologyError::NoLevels {
            target: target.to_owned(),
        });
    }
    let mut failed_levels = Vec::new();
    for (index, level) in levels.iter().enumerate() {
        match run_level(fencer, devices, level, index, target, action).await {
            Ok(outcomes) => {
                return Ok(TopologyOutcome {
                    target: target.to_owned(),
                    level: index,
                    outcomes,
                    failed_levels,
                });
            }
            Err(failure) => failed_levels.push(failure),
        }
    }
    Err(TopologyError::AllLevelsFailed {
        target: target.to_owned(),
        failures: failed_levels,
    })
}

async fn run_level<F: Fencer>(
    fencer: &F,
    devices: &BTreeMap<String, FenceDevice>,
    level: &FenceLevel,
    index: usize,
    target: &str,
    action: PowerAction,
) -> Result<Vec<FenceOutcome>, LevelFailure> {
    let failure = |device: &str, reason: String| LevelFailure {
        level: index,
        device: device.to_owned(),
        reason,
    };
    if level.devices.is_empty() {
        return Err(failure("(none)", "the level has no devices".to_owned()));
    }
    let mut resolved = Vec::new();
    for name in &level.devices {
        let device = devices
            .get(name)
            .ok_or_else(|| failure(name, "no such device is configured".to_owned()))?;
        resolved.push(device);
    }
    let first_pass = if action == PowerAction::Reboot {
        PowerAction::Off
    } else {
        action
    };
    let mut outcomes = Vec::new();
    for device in &resolved {
        let outcome = fencer
            .power(device, target, first_pass)
            .await
            .map_err(|error| failure(&device.name, error.to_string()))?;
        outcomes.push(outcome);
    }
    if action == PowerAction::Reboot {
        // The host is confirmed off: a failing `on` is recorded, not a failed fence.
        for (device, outcome) in resolved.iter().zip(outcomes.iter_mut()) {
            outcome.action = PowerAction::Reboot;
            if let Err(error) = fencer.power(device, target, PowerAction::On).await {
                outcome.power_on_failure = Some(error.to_string());
            }
        }
    }
    Ok(outcomes)
}

/// The shared test suite: every [`Fencer`] implementation runs these against a device it
/// can really power off (for `driver-fence`: `fence_hafen_netns` and a namespace) and one
/// that always fails.
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

    /// The agent is listed, its metadata declares off, on, status and monitor with unique
    /// parameter names, validation refuses an unknown parameter and `action` by name, and
    /// a valid device passes.
    pub async fn check_metadata<F: Fencer>(
        fencer: &F,
        valid_device: &FenceDevice,
    ) -> Result<(), ConformanceError> {
        let agent = &valid_device.agent;
        let listed = fencer
            .list_agents()
            .await
            .map_err(|error| fail("list agents", error))?;
        if !listed.contains(agent) {
            return Err(fail("list agents", format!("{agent} is not listed")));
        }
        let metadata = fencer
            .metadata(agent)
            .await
            .map_err(|error| fail("metadata", error))?;
        for action in [
            FenceAction::Off,
            FenceAction::On,
            FenceAction::Status,
            FenceAction::Monitor,
        ] {
            if !metadata.supports(action) {
                return Err(fail("metadata", format!("action {action} is not declared")));
            }
        }
        let mut names = BTreeSet::new();
        if let Some(duplicate) = metadata
            .parameters
            .iter()
            .find(|spec| !names.insert(&spec.name))
        {
            return Err(fail(
                "metadata",
                format!("parameter {:?} is declared twice", duplicate.name),
            ));
        }
        fencer
            .check_device(valid_device)
            .await
            .map_err(|error| fail("check valid device", error))?;
        let bogus_name = "hafen_conformance_no_such_parameter";
        let bogus = valid_device
            .clone()
            .with_parameter(bogus_name, "1")
            .with_parameter("action", "reboot");
        let problems = match fencer.check_device(&bogus).await {
            Err(DeviceCheckError::Parameters(error)) => error.problems,
            other => {
                return Err(fail(
                    "validate parameters",
                    format!("expected a parameter error, got {other:?}"),
                ));
            }
        };
        for name in [bogus_name, "action"] {
            if !problems.iter().any(|problem| problem.parameter() == name) {
                return Err(fail(
                    "validate parameters",
                    format!("parameter {name:?} was not refused by name"),
                ));
            }
        }
        Ok(())
    }

    /// The target runs (status on), `off` succeeds and is confirmed, status says off, a
    /// second `off` succeeds too (fencing is idempotent). The target must be on before.
    pub async fn check_power_off<F: Fencer>(
        fencer: &F,
        device: &FenceDevice,
        target: &str,
    ) -> Result<(), ConformanceError> {
        fencer
            .monitor(device)
            .await
            .map_err(|error| fail("monitor", error))?;
        let before = fencer
            .status(device, target)
            .await
            .map_err(|error| fail("status before off", error))?;
        if before != PowerState::On {
            return Err(fail("status before off", "the target is not on"));
        }
        let outcome = fencer
            .power(device, target, PowerAction::Off)
            .await
            .map_err(|error| fail("off", error))?;
        if !outcome.confirmed_off() || outcome.target != target {
            return Err(fail("off", format!("unexpected outcome {outcome:?}")));
        }
        let after = fencer
            .status(device, target)
            .await
            .map_err(|error| fail("status after off", error))?;
        if after != PowerState::Off {
            return Err(fail("status after off", "the target is still on"));
        }
        fencer
            .power(device, target, PowerAction::Off)
            .await
            .map_err(|error| fail("off when off", error))?;
        Ok(())
    }

    /// A device that cannot fence fails with every attempt recorded, and neither the
    /// error, its `Debug`, nor the device's `Debug` contains a secret value.
    pub async fn check_failure_keeps_secrets<F: Fencer>(
        fencer: &F,
        failing_device: &FenceDevice,
        target: &str,
    ) -> Result<(), ConformanceError> {
        let secrets = failing_device.secret_values();
        if secrets.is_empty() {
            return Err(fail("setup", "the failing device has no secret parameter"));
        }
        let error = match fencer.power(failing_device, target, PowerAction::Off).await {
            Ok(outcome) => return Err(fail("off", format!("unexpected success {outcome:?}"))),
            Err(error) => error,
        };
        if let FenceError::Failed { attempts, runs, .. } = &error {
            let expected = failing_device.retries.retries + 1;
            if *attempts != expected || runs.is_empty() {
                return Err(fail(
                    "off",
                    format!("expected {expected} attempts, got {attempts}"),
                ));
            }
        }
        let texts = [
            error.to_string(),
            format!("{error:?}"),
            format!("{failing_device:?}"),
        ];
        for text in &texts {
            if secrets.iter().any(|secret| text.contains(secret.expose())) {
                return Err(fail("secrets", "a secret value appears in driver output"));
            }
        }
        Ok(())
    }

    /// A topology whose first level fails and whose second level succeeds fences the
    /// target at the second level and records the first failure.
    pub async fn check_topology<F: Fencer>(
        fencer: &F,
        failing_device: &FenceDevice,
        working_device: &FenceDevice,
        target: &str,
    ) -> Result<(), ConformanceError> {
        let devices = BTreeMap::from([
            (failing_device.name.clone(), failing_device.clone()),
            (working_device.name.clone(), working_device.clone()),
        ]);
        let levels = [
            FenceLevel::new(&[&failing_device.name]),
            FenceLevel::new(&[&working_device.name]),
        ];
        let outcome = fencer
            .fence(&devices, &levels, target, PowerAction::Off)
            .await
            .map_err(|error| fail("topology", error))?;
        if outcome.level != 1 || outcome.failed_levels.len() != 1 {
            return Err(fail(
                "topology",
                format!("expected level 2 to confirm, got {outcome:?}"),
            ));
        }
        let none = fencer.fence(&devices, &[], target, PowerAction::Off).await;
        if !matches!(none, Err(TopologyError::NoLevels { .. })) {
            return Err(fail("topology", "an empty topology did not fail"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves a device's Debug and redacted view hide secrets, both declared and well known.
    #[test]
    fn device_debug_hides_secret_values() {
        let device = FenceDevice::new("ipmi-a", "fence_ipmilan")
            .with_parameter("ip", "192.0.2.1")
            .with_parameter("passwd", "old-hunter2")
            .with_secret_parameter("community", &Secret::new("snmp-hunter2"));
        let text = format!("{device:?} {:?}", device.redacted_parameters());
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("192.0.2.1"));
        assert_eq!(format!("{}", Secret::new("x")), REDACTED);
        assert_eq!(
            device.scrub("login with old-hunter2 and snmp-hunter2"),
            "login with <redacted> and <redacted>"
        );
    }

    #[test]
    fn backoff_doubles_up_to_its_limit() {
        let retries = FenceRetries {
            retries: 5,
            retry_backoff_ms: 100,
            retry_backoff_limit_ms: 350,
        };
        let pauses: Vec<u64> = (0..5).map(|attempt| retries.backoff_ms(attempt)).collect();
        assert_eq!(pauses, [0, 100, 200, 350, 350]);
    }

    fn spec(
        name: &str,
        required: bool,
        deprecated: bool,
        obsoletes: Option<&str>,
    ) -> FenceParameterSpec {
        FenceParameterSpec {
            name: name.to_owned(),
            required,
            deprecated,
            obsoletes: obsoletes.map(str::to_owned),
            content_type: "string".to_owned(),
            default: None,
            short_description: String::new(),
        }
    }

    // Proves required parameters are satisfied by their deprecated twins, the driver's
    // own parameters are never required, and every problem names its parameter.
    #[test]
    fn validation_understands_deprecated_twins() {
        let metadata = FenceAgentMetadata {
            agent: "fence_test".to_owned(),
            short_description: String::new(),
            long_description: String::new(),
            parameters: vec![
                spec("action", true, false, None),
                spec("ip", true, false, Some("ipaddr")),
                spec("ipaddr", true, true, None),
                spec("login", true, true, None),
                spec("username", false, false, Some("login")),
                spec("port", true, true, None),
            ],
            actions: vec!["off".to_owned()],
        };
        let old_style = FenceDevice::new("a", "fence_test")
            .with_parameter("ipaddr", "192.0.2.1")
            .with_parameter("login", "admin");
        assert_eq!(metadata.validate_device(&old_style), Ok(()));
        let new_style = FenceDevice::new("a", "fence_test")
            .with_parameter("ip", "192.0.2.1")
            .with_parameter("username", "admin");
        assert_eq!(metadata.validate_device(&new_style), Ok(()));
        let broken = FenceDevice::new("a", "fence_test")
            .with_parameter("bogus", "1")
            .with_parameter("action", "off");
        let error = metadata.validate_device(&broken).unwrap_err();
        let names: Vec<&str> = error
            .problems
            .iter()
            .map(ParameterProblem::parameter)
            .collect();
        assert_eq!(names, ["action", "bogus", "ip"]);
        assert!(
            error
                .to_string()
                .contains("missing required parameter \"ip\"")
        );
    }
}
