//! What `systemctl` prints and what it means for the port: unit names, `show` properties, unit states as results, `list-unit-files` lines, a unit's meta-data.

use std::collections::BTreeMap;

use hafen_driver_api::resource::{Action, ActionSpec, AgentMetadata, AgentRef, AgentResult};

/// The unit types systemd knows. A name without one of these suffixes is a service, as in
/// Pacemaker: `systemd:cron` is `cron.service`.
const UNIT_TYPES: &[&str] = &[
    "service",
    "socket",
    "device",
    "mount",
    "automount",
    "swap",
    "target",
    "path",
    "timer",
    "slice",
    "scope",
];

/// The `show` argument every status query uses.
pub(crate) const STATUS_PROPERTIES: &str = "--property=LoadState,ActiveState,SubState,Description";

pub(crate) fn unit_name(unit: &str) -> String {
    match unit.rsplit_once('.') {
        Some((_, suffix)) if UNIT_TYPES.contains(&suffix) => unit.to_owned(),
        _ => format!("{unit}.service"),
    }
}

/// A unit as `systemctl show` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UnitStatus {
    pub unit: String,
    /// `loaded`, `not-found`, `masked`, `bad-setting`, `error`.
    pub load_state: String,
    /// `active`, `reloading`, `inactive`, `failed`, `activating`, `deactivating`, ...
    pub active_state: String,
    pub sub_state: String,
    pub description: String,
}

/// `Key=Value` lines; the value may contain `=`.
fn parse_properties(text: &str) -> BTreeMap<&str, &str> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.trim(), value.trim()))
        .collect()
}

pub(crate) fn parse_status(unit: &str, text: &str) -> Result<UnitStatus, String> {
    let properties = parse_properties(text);
    let property = |name: &str| {
        properties
            .get(name)
            .map(|value| (*value).to_owned())
            .ok_or_else(|| format!("systemctl show printed no {name} for {unit}"))
    };
    Ok(UnitStatus {
        unit: unit.to_owned(),
        load_state: property("LoadState")?,
        active_state: property("ActiveState")?,
        sub_state: property("SubState").unwrap_or_default(),
        description: property("Description").unwrap_or_default(),
    })
}

/// What a unit's state says, or that it is still changing and worth asking again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activity {
    Settled(AgentResult),
    Changing,
}

impl UnitStatus {
    pub(crate) fn is_loaded(&self) -> bool {
        self.load_state == "loaded"
    }

    /// The state a monitor reports: active (or reloading) is running, inactive is not
    /// running, failed is an error (it needs a stop before it can run again); a unit that
    /// is not loaded (not found, masked, broken) is not installed.
    pub(crate) fn activity(&self) -> Activity {
        if !self.is_loaded() {
            return Activity::Settled(AgentResult::NotInstalled);
        }
        match self.active_state.as_str() {
            "active" | "reloading" => Activity::Settled(AgentResult::Success),
            "inactive" => Activity::Settled(AgentResult::NotRunning),
            "failed" => Activity::Settled(AgentResult::GenericError),
            "activating" | "deactivating" | "refreshing" | "maintenance" => Activity::Changing,
            _ => Activity::Settled(AgentResult::Error),
        }
    }

    /// `cron.service is inactive (dead)`, or why it cannot run at all.
    pub(crate) fn describe(&self) -> String {
        if self.is_loaded() {
            format!(
                "{} is {} ({})",
                self.unit, self.active_state, self.sub_state
            )
        } else {
            format!(
                "{} is not installed (LoadState={})",
                self.unit, self.load_state
            )
        }
    }
}

/// The result of a settled operation. A start succeeds only when the unit ended active. A
/// stop succeeds when the unit is not running, including a unit that does not exist here
/// (nothing of it can run); a failed unit counts as stopped, the caller resets it first.
pub(crate) fn result_of(action: Action, observed: AgentResult) -> AgentResult {
    match (action, observed) {
        (Action::Start, AgentResult::Success | AgentResult::NotInstalled) => observed,
        (Action::Start, _) => AgentResult::GenericError,
        (
            Action::Stop,
            AgentResult::NotRunning | AgentResult::NotInstalled | AgentResult::GenericError,
        ) => AgentResult::Success,
        (Action::Stop, AgentResult::Success) => AgentResult::GenericError,
        (_, observed) => observed,
    }
}

/// Services that can be resources, from `systemctl list-unit-files --type=service
/// --no-legend` lines (`cron.service enabled enabled`): templates (`getty@.service`) need
/// an instance and masked units cannot start, so both are left out. Sorted.
pub(crate) fn parse_unit_files(text: &str) -> Vec<AgentRef> {
    let mut agents: Vec<AgentRef> = text
        .lines()
        .filter_map(|line| {
            let mut columns = line.split_whitespace();
            let name = columns.next()?;
            let state = columns.next().unwrap_or("");
            let service = name.strip_suffix(".service")?;
            if service.ends_with('@') || state.starts_with("masked") {
                return None;
            }
            format!("systemd:{service}").parse().ok()
        })
        .collect();
    agents.sort();
    agents.dedup();
    agents
}

/// Pacemaker's meta-data for systemd units: no parameters, start and stop with a 100 s
/// timeout, a monitor every 60 s.
pub(crate) fn unit_metadata(agent: &AgentRef, status: &UnitStatus) -> AgentMetadata {
    let action = |action: Action, timeout_ms: u64, interval_ms: Option<u64>| ActionSpec {
        name: action.name().to_owned(),
        action: Some(action),
        timeout_ms: Some(timeout_ms),
        interval_ms,
        depth: None,
        role: None,
    };
    AgentMetadata {
        agent: agent.clone(),
        version: None,
        short_description: if status.description.is_empty() {
            status.unit.clone()
        } else {
            status.description.clone()
        },
        long_description: format!(
            "systemd unit {}, started, stopped and monitored through systemctl; it takes no parameters",
            status.unit
        ),
        parameters: Vec::new(),
        actions: vec![
            action(Action::Start, 100_000, None),
            action(Action::Stop, 100_000, None),
            action(Action::Monitor, 100_000, Some(60_000)),
            action(Action::MetaData, 5_000, None),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(load_state: &str, active_state: &str, sub_state: &str) -> UnitStatus {
        UnitStatus {
            unit: "cron.service".to_owned(),
            load_state: load_state.to_owned(),
            active_state: active_state.to_owned(),
            sub_state: sub_state.to_owned(),
            description: String::new(),
        }
    }

    #[test]
    fn a_bare_name_is_a_service() {
        assert_eq!(unit_name("cron"), "cron.service");
        assert_eq!(unit_name("cron.service"), "cron.service");
        assert_eq!(unit_name("nfs.mount"), "nfs.mount");
        assert_eq!(unit_name("getty@tty1"), "getty@tty1.service");
        assert_eq!(unit_name("my.app"), "my.app.service");
    }

    // Proves `show` output is read by key, in any order, with `=` inside values.
    #[test]
    fn show_output_is_parsed_by_property() {
        let text = "ActiveState=inactive\nSubState=dead\nDescription=Regular background program processing daemon=cron\nLoadState=loaded\n";
        let parsed = parse_status("cron.service", text).unwrap();
        assert_eq!(parsed.load_state, "loaded");
        assert_eq!(parsed.active_state, "inactive");
        assert_eq!(
            parsed.description,
            "Regular background program processing daemon=cron"
        );
        assert_eq!(parsed.describe(), "cron.service is inactive (dead)");
        let error = parse_status("cron.service", "SubState=dead\n").unwrap_err();
        assert!(error.contains("LoadState"), "{error}");
    }

    #[test]
    fn unit_states_map_to_monitor_results() {
        let cases = [
            (
                status("loaded", "active", "running"),
                Activity::Settled(AgentResult::Success),
            ),
            (
                status("loaded", "reloading", "reload"),
                Activity::Settled(AgentResult::Success),
            ),
            (
                status("loaded", "inactive", "dead"),
                Activity::Settled(AgentResult::NotRunning),
            ),
            (
                status("loaded", "failed", "failed"),
                Activity::Settled(AgentResult::GenericError),
            ),
            (
                status("loaded", "activating", "start-pre"),
                Activity::Changing,
            ),
            (
                status("loaded", "deactivating", "stop-sigterm"),
                Activity::Changing,
            ),
            (
                status("not-found", "inactive", "dead"),
                Activity::Settled(AgentResult::NotInstalled),
            ),
            (
                status("masked", "inactive", "dead"),
                Activity::Settled(AgentResult::NotInstalled),
            ),
            (
                status("loaded", "bogus", "x"),
                Activity::Settled(AgentResult::Error),
            ),
        ];
        for (unit, expected) in cases {
            assert_eq!(unit.activity(), expected, "{unit:?}");
        }
        assert_eq!(
            status("not-found", "inactive", "dead").describe(),
            "cron.service is not installed (LoadState=not-found)"
        );
    }

    #[test]
    fn starts_must_end_active_and_stops_must_end_inactive() {
        use AgentResult::*;
        assert_eq!(result_of(Action::Start, Success), Success);
        assert_eq!(result_of(Action::Start, NotRunning), GenericError);
        assert_eq!(result_of(Action::Start, GenericError), GenericError);
        assert_eq!(result_of(Action::Start, NotInstalled), NotInstalled);
        assert_eq!(result_of(Action::Stop, NotRunning), Success);
        assert_eq!(result_of(Action::Stop, NotInstalled), Success);
        assert_eq!(result_of(Action::Stop, GenericError), Success);
        assert_eq!(result_of(Action::Stop, Success), GenericError);
        assert_eq!(result_of(Action::Monitor, NotRunning), NotRunning);
        assert_eq!(result_of(Action::Monitor, GenericError), GenericError);
    }

    #[test]
    fn unit_files_list_startable_services() {
        let text = "apt-daily.service                      static   -\n\
                    autovt@.service                        alias    -\n\
                    console-getty.service                  disabled disabled\n\
                    cron.service                           enabled  enabled\n\
                    dbus.socket                            static   -\n\
                    hidden.service                         masked   enabled\n\
                    cron.service                           enabled  enabled\n\
                    \n";
        let agents: Vec<String> = parse_unit_files(text)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            agents,
            ["systemd:apt-daily", "systemd:console-getty", "systemd:cron"]
        );
    }

    #[test]
    fn metadata_declares_no_parameters_and_the_basic_actions() {
        let agent: AgentRef = "systemd:cron".parse().unwrap();
        let mut unit = status("loaded", "inactive", "dead");
        unit.description = "Regular background program processing daemon".to_owned();
        let metadata = unit_metadata(&agent, &unit);
        assert!(metadata.parameters.is_empty());
        assert_eq!(
            metadata.short_description,
            "Regular background program processing daemon"
        );
        for action in [Action::Start, Action::Stop, Action::Monitor] {
            assert!(metadata.supports(action), "{action}");
        }
        assert_eq!(metadata.default_timeout_ms(Action::Start), Some(100_000));
        let bogus = BTreeMap::from([("port".to_owned(), "80".to_owned())]);
        let errors = metadata.validate_parameters(&bogus).unwrap_err();
        assert!(errors.to_string().contains("\"port\""), "{errors}");
    }
}
