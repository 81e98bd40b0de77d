//! The fence-agent protocol: the `key=value` lines an agent reads on stdin (as Pacemaker's stonith writes them), the meaning of its exit codes, and its `list` output.

use hafen_driver_api::fence::{AgentVerdict, FenceAction, FenceDevice, FenceError};
use hafen_driver_api::resource::Termination;

/// `status` exit code for a host that is off (0 is on, anything else a failure).
pub(crate) const STATUS_OFF_EXIT_CODE: i32 = 2;

/// The agent's stdin for one action: `action=`, every device parameter, then the target
/// as the device's host argument (unless the device sets it itself or takes none) and as
/// `nodename` (Pacemaker passes both; fence-agents ignores `nodename` when unused).
///
/// A line break in a value would smuggle in another argument, so it is refused, as are
/// names that are not plain words. The result holds secrets: it is never logged.
pub(crate) fn agent_input(
    device: &FenceDevice,
    action: FenceAction,
    target: Option<&str>,
) -> Result<Vec<u8>, FenceError> {
    let mut lines = vec![("action".to_owned(), action.name().to_owned())];
    for (name, value) in &device.parameters {
        if name == "action" {
            return Err(FenceError::ActionParameter {
                device: device.name.clone(),
            });
        }
        lines.push((name.clone(), value.clone()));
    }
    if let Some(target) = target.filter(|_| action.targets_host()) {
        let host_argument = &device.host_argument;
        if device.passes_host() && !device.parameters.contains_key(host_argument) {
            lines.push((host_argument.clone(), device.plug_for(target).to_owned()));
        }
        if !device.parameters.contains_key("nodename") {
            lines.push(("nodename".to_owned(), target.to_owned()));
        }
    }
    let mut input = String::new();
    for (name, value) in lines {
        if !is_parameter_name(&name) {
            return Err(FenceError::InvalidParameterName {
                device: device.name.clone(),
                name,
            });
        }
        if value.contains(['\n', '\r', '\0']) {
            return Err(FenceError::InvalidParameterValue {
                device: device.name.clone(),
                name,
            });
        }
        input.push_str(&name);
        input.push('=');
        input.push_str(&value);
        input.push('\n');
    }
    Ok(input.into_bytes())
}

fn is_parameter_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
}

/// What an agent's ending means for an action.
pub(crate) fn classify(action: FenceAction, termination: Termination) -> AgentVerdict {
    match (action, termination) {
        (_, Termination::TimedOut { .. }) => AgentVerdict::TimedOut,
        (FenceAction::Status, Termination::Exited { code: 0 }) => AgentVerdict::PoweredOn,
        (FenceAction::Status, Termination::Exited { code }) if code == STATUS_OFF_EXIT_CODE => {
            AgentVerdict::PoweredOff
        }
        (_, Termination::Exited { code: 0 }) => AgentVerdict::Success,
        _ => AgentVerdict::Failed,
    }
}

/// The agent's explanation of a failure: fence-agents logs `<timestamp> ERROR: Failed:
/// <reason>` and then a usage hint, and Python may warn about deprecations first, so the
/// last line that is neither is the reason, without its timestamp and level.
pub(crate) fn failure_reason(stderr: &str) -> Option<String> {
    const LIMIT_CHARS: usize = 300;
    let line = stderr.lines().rev().map(str::trim).find(|line| {
        !line.is_empty()
            && !line.contains("Please use '-h' for usage")
            && !line.contains("DeprecationWarning")
            && !line.starts_with("from ")
    })?;
    let line = strip_timestamp(line);
    let line = line.strip_prefix("ERROR: ").unwrap_or(line);
    Some(line.chars().take(LIMIT_CHARS).collect())
}

/// Removes a leading `2024-01-31 12:00:00,123 ` (Python's logging format).
fn strip_timestamp(line: &str) -> &str {
    let bytes = line.as_bytes();
    let looks_like_timestamp = bytes.len() > 24
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes[10] == b' '
        && bytes[13] == b':'
        && bytes[..4].iter().all(u8::is_ascii_digit);
    if !looks_like_timestamp {
        return line;
    }
    line.split_once(' ')
        .and_then(|(_, rest)| rest.split_once(' '))
        .map_or(line, |(_, rest)| rest)
}

/// `list` prints one plug a line, optionally followed by `,alias`.
pub(crate) fn parse_list(stdout: &str) -> Vec<String> {
    let mut plugs: Vec<String> = stdout
        .lines()
        .filter_map(|line| line.split(',').next())
        .map(str::trim)
        .filter(|plug| !plug.is_empty())
        .map(str::to_owned)
        .collect();
    plugs.sort();
    plugs.dedup();
    plugs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(input: Vec<u8>) -> String {
        String::from_utf8(input).unwrap()
    }

    // Proves the stdin lines Pacemaker writes: action first, parameters sorted, the
    // plug from the host map, nodename; status/off take the plug, monitor does not.
    #[test]
    fn input_carries_action_parameters_and_plug() {
        let device = FenceDevice::new("ipmi", "fence_ipmilan")
            .with_parameter("ip", "192.0.2.1")
            .with_parameter("username", "admin")
            .with_host("node-b", "vm-b");
        let off = text(agent_input(&device, FenceAction::Off, Some("node-b")).unwrap());
        assert_eq!(
            off,
            "action=off\nip=192.0.2.1\nusername=admin\nplug=vm-b\nnodename=node-b\n"
        );
        let monitor = text(agent_input(&device, FenceAction::Monitor, Some("node-b")).unwrap());
        assert_eq!(monitor, "action=monitor\nip=192.0.2.1\nusername=admin\n");
        let mut old = device.clone();
        old.host_argument = "port".to_owned();
        let status = text(agent_input(&old, FenceAction::Status, Some("node-c")).unwrap());
        assert!(status.contains("\nport=node-c\n"), "{status}");
    }

    // Proves a value cannot inject a second argument and names stay plain words.
    #[test]
    fn input_refuses_injection() {
        let injected = FenceDevice::new("d", "fence_x").with_parameter("ip", "a\naction=on");
        assert!(matches!(
            agent_input(&injected, FenceAction::Off, Some("h")),
            Err(FenceError::InvalidParameterValue { name, .. }) if name == "ip"
        ));
        let bad_name = FenceDevice::new("d", "fence_x").with_parameter("a=b", "1");
        assert!(matches!(
            agent_input(&bad_name, FenceAction::Off, Some("h")),
            Err(FenceError::InvalidParameterName { .. })
        ));
        let bad_plug = FenceDevice::new("d", "fence_x");
        assert!(agent_input(&bad_plug, FenceAction::Off, Some("h\naction=on")).is_err());
        let action = FenceDevice::new("d", "fence_x").with_parameter("action", "on");
        assert!(matches!(
            agent_input(&action, FenceAction::Off, Some("h")),
            Err(FenceError::ActionParameter { .. })
        ));
    }

    #[test]
    fn exit_codes_classify_per_action() {
        let exited = |code| Termination::Exited { code };
        assert_eq!(
            classify(FenceAction::Status, exited(0)),
            AgentVerdict::PoweredOn
        );
        assert_eq!(
            classify(FenceAction::Status, exited(2)),
            AgentVerdict::PoweredOff
        );
        assert_eq!(
            classify(FenceAction::Status, exited(1)),
            AgentVerdict::Failed
        );
        assert_eq!(classify(FenceAction::Off, exited(0)), AgentVerdict::Success);
        assert_eq!(classify(FenceAction::Off, exited(2)), AgentVerdict::Failed);
        let killed = Termination::TimedOut { timeout_ms: 5 };
        assert_eq!(classify(FenceAction::Off, killed), AgentVerdict::TimedOut);
    }

    #[test]
    fn failure_reason_skips_usage_hints_and_timestamps() {
        let stderr = "/usr/sbin/fence_ipmilan:5: DeprecationWarning: 'pipes' is deprecated\n  from pipes import quote\n2026-11-22 02:18:29,489 ERROR: Failed: connection refused\n\n2026-11-22 02:18:29,489 ERROR: Please use '-h' for usage\n";
        assert_eq!(
            failure_reason(stderr).as_deref(),
            Some("Failed: connection refused")
        );
        assert_eq!(
            failure_reason("plain words\n").as_deref(),
            Some("plain words")
        );
        assert_eq!(failure_reason("\n"), None);
    }

    #[test]
    fn list_takes_plugs_before_aliases() {
        assert_eq!(
            parse_list("vm-b,alias b\n\nvm-a\n vm-a \n"),
            ["vm-a", "vm-b"]
        );
    }
}
