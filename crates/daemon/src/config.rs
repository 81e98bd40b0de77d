//! The daemon's TOML configuration: parsed strictly, every refusal naming the key.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Why a configuration file is refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {detail}")]
    Read { path: String, detail: String },
    #[error("config file {path}: {detail}")]
    Parse { path: String, detail: String },
    #[error("config file {path}: key `{key}`: {reason}")]
    BadValue {
        path: String,
        key: String,
        reason: String,
    },
}

/// A node's configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The node's name: a DNS label, unique in the cluster.
    pub node_name: String,
    /// Where the HTTPS listener binds, `ip:port`.
    pub listen: SocketAddr,
    /// Where peers and clients reach this node; defaults to `listen` (which must then be a concrete ip).
    pub advertise: Option<SocketAddr>,
    /// Holds the replicated state and the node's certificates.
    pub data_dir: PathBuf,
    /// `member` (default) or `witness`; only read by `cluster init` and `cluster join`.
    #[serde(default = "default_role")]
    pub role: String,
    /// Where fence agents (`fence_*`) are looked up, in order.
    #[serde(default = "default_fence_agent_dirs")]
    pub fence_agent_dirs: Vec<PathBuf>,
    /// A watchdog device (`/dev/watchdog`) petted while this node holds its lease, so a hung
    /// host whose agent cannot self-fence is reset by the watchdog. Unset: no watchdog.
    #[serde(default)]
    pub watchdog_device: Option<PathBuf>,
    /// The watchdog's reset timeout, as the device is set up (softdog's default is 60 s).
    /// The leader counts this node fenced once its lease certainly lapsed plus this long.
    #[serde(default = "default_watchdog_timeout_ms")]
    pub watchdog_timeout_ms: u64,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub log: LogConfig,
}

fn default_fence_agent_dirs() -> Vec<PathBuf> {
    vec![PathBuf::from("/usr/sbin")]
}

fn default_watchdog_timeout_ms() -> u64 {
    60_000
}

fn default_role() -> String {
    "member".to_string()
}

/// Failure-detection and consensus timing.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// How often the node agent heartbeats to the leader.
    pub heartbeat_interval_ms: u64,
    /// After this long without a heartbeat the leader considers a node gone.
    pub node_timeout_ms: u64,
    /// How long an acknowledged heartbeat lets the agent run managed resources, from the
    /// moment it was sent. It outlasts a leader change, so losing the leader does not make
    /// every host self-fence.
    pub lease_ms: u64,
    /// Raft leader heartbeat to followers.
    pub raft_heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        let raft = hafen_store::RaftTiming::default();
        Self {
            heartbeat_interval_ms: 200,
            node_timeout_ms: 1000,
            lease_ms: 3000,
            raft_heartbeat_ms: raft.heartbeat_interval_ms,
            election_timeout_min_ms: raft.election_timeout_min_ms,
            election_timeout_max_ms: raft.election_timeout_max_ms,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter such as `info` or `hafen=debug,openraft=warn`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info,openraft=warn".to_string(),
        }
    }
}

impl NodeConfig {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.display().to_string(),
            detail: error.to_string(),
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        let config: NodeConfig = toml::from_str(text).map_err(|error| ConfigError::Parse {
            path: path.to_string(),
            detail: error.to_string().trim().replace('\n', " "),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &str) -> Result<(), ConfigError> {
        let bad = |key: &str, reason: String| ConfigError::BadValue {
            path: path.to_string(),
            key: key.to_string(),
            reason,
        };
        hafen_model::NodeName::new(self.node_name.clone())
            .map_err(|error| bad("node_name", error.to_string()))?;
        if self.advertise.is_none() && self.listen.ip().is_unspecified() {
            return Err(bad(
                "advertise",
                format!(
                    "required when listen is {} (peers need a concrete address)",
                    self.listen
                ),
            ));
        }
        if let Some(advertise) = self.advertise
            && (advertise.ip().is_unspecified() || advertise.port() == 0)
        {
            return Err(bad(
                "advertise",
                format!("{advertise} is not a reachable address"),
            ));
        }
        if self.listen.port() == 0 {
            return Err(bad("listen", "a fixed port is required".to_string()));
        }
        if !self.data_dir.is_absolute() {
            return Err(bad(
                "data_dir",
                format!("{} must be an absolute path", self.data_dir.display()),
            ));
        }
        self.role
            .parse::<hafen_model::NodeRole>()
            .map_err(|error| bad("role", error))?;
        let t = &self.timeouts;
        if !(20..=10_000).contains(&t.heartbeat_interval_ms) {
            return Err(bad(
                "timeouts.heartbeat_interval_ms",
                "must be between 20 and 10000".to_string(),
            ));
        }
        if t.node_timeout_ms < 2 * t.heartbeat_interval_ms {
            return Err(bad(
                "timeouts.node_timeout_ms",
                format!(
                    "must be at least twice heartbeat_interval_ms ({})",
                    2 * t.heartbeat_interval_ms
                ),
            ));
        }
        if !(10..=5_000).contains(&t.raft_heartbeat_ms) {
            return Err(bad(
                "timeouts.raft_heartbeat_ms",
                "must be between 10 and 5000".to_string(),
            ));
        }
        if t.election_timeout_min_ms <= t.raft_heartbeat_ms {
            return Err(bad(
                "timeouts.election_timeout_min_ms",
                "must be greater than raft_heartbeat_ms".to_string(),
            ));
        }
        if t.election_timeout_max_ms <= t.election_timeout_min_ms {
            return Err(bad(
                "timeouts.election_timeout_max_ms",
                "must be greater than election_timeout_min_ms".to_string(),
            ));
        }
        if t.lease_ms < t.node_timeout_ms + t.election_timeout_max_ms {
            return Err(bad(
                "timeouts.lease_ms",
                format!(
                    "must be at least node_timeout_ms + election_timeout_max_ms ({}), or a leader change makes every host self-fence",
                    t.node_timeout_ms + t.election_timeout_max_ms
                ),
            ));
        }
        if self
            .watchdog_device
            .as_ref()
            .is_some_and(|device| !device.is_absolute())
        {
            return Err(bad(
                "watchdog_device",
                "must be an absolute path such as /dev/watchdog".to_string(),
            ));
        }
        if !(100..=600_000).contains(&self.watchdog_timeout_ms) {
            return Err(bad(
                "watchdog_timeout_ms",
                "must be between 100 and 600000".to_string(),
            ));
        }
        Ok(())
    }

    /// The address peers and clients use.
    pub fn advertise_address(&self) -> SocketAddr {
        self.advertise.unwrap_or(self.listen)
    }

    pub fn raft_timing(&self) -> hafen_store::RaftTiming {
        hafen_store::RaftTiming {
            heartbeat_interval_ms: self.timeouts.raft_heartbeat_ms,
            election_timeout_min_ms: self.timeouts.election_timeout_min_ms,
            election_timeout_max_ms: self.timeouts.election_timeout_max_ms,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
node_name = "alpha"
listen = "127.0.0.1:7001"
data_dir = "/var/lib/hafen"
"#;

    #[test]
    fn a_minimal_config_parses_with_defaults() {
        let config = NodeConfig::parse(GOOD, "test.toml").unwrap();
        assert_eq!(config.timeouts.node_timeout_ms, 1000);
        assert_eq!(config.advertise_address().port(), 7001);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_naming_the_key() {
        let cases = [
            (format!("{GOOD}colour = \"red\"\n"), "colour"),
            (GOOD.replace("alpha", "Alpha"), "node_name"),
            (GOOD.replace("127.0.0.1:7001", "nowhere"), "listen"),
            (GOOD.replace("/var/lib/hafen", "relative"), "data_dir"),
            (
                format!("{GOOD}[timeouts]\nnode_timeout_ms = 100\n"),
                "timeouts.node_timeout_ms",
            ),
            (
                format!("{GOOD}[timeouts]\nheartbeat_ms = 100\n"),
                "heartbeat_ms",
            ),
            (format!("{GOOD}role = \"boss\"\n"), "role"),
            (
                format!("{GOOD}[timeouts]\nlease_ms = 1000\n"),
                "timeouts.lease_ms",
            ),
            (
                format!("{GOOD}watchdog_device = \"watchdog\"\n"),
                "watchdog_device",
            ),
        ];
        for (text, key) in cases {
            let error = NodeConfig::parse(&text, "test.toml")
                .unwrap_err()
                .to_string();
            assert!(error.contains(key), "expected {key} in: {error}");
            assert!(error.contains("test.toml"), "{error}");
        }
    }
}
