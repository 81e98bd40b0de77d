//! OCF return codes and exit reasons: how an agent's exit maps onto the port's classified results.

use hafen_driver_api::resource::{AgentResult, Termination};

/// The prefix of the line an agent writes to stderr to explain its exit (OCF 1.1,
/// `ocf_exit_reason` in the shell library); handed to agents as `OCF_EXIT_REASON_PREFIX`.
pub const EXIT_REASON_PREFIX: &str = "ocf-exit-reason:";

const EXIT_REASON_LIMIT_CHARS: usize = 512;

/// The OCF return codes 0-9 and OCF 1.1's 190/191; anything else is an error.
pub fn classify_exit_code(code: i32) -> AgentResult {
    match code {
        0 => AgentResult::Success,
        1 => AgentResult::GenericError,
        2 => AgentResult::InvalidArguments,
        3 => AgentResult::Unimplemented,
        4 => AgentResult::InsufficientPrivilege,
        5 => AgentResult::NotInstalled,
        6 => AgentResult::NotConfigured,
        7 => AgentResult::NotRunning,
        8 => AgentResult::RunningPromoted,
        9 => AgentResult::FailedPromoted,
        190 => AgentResult::Degraded,
        191 => AgentResult::DegradedPromoted,
        _ => AgentResult::Error,
    }
}

pub(crate) fn classify(termination: Termination) -> AgentResult {
    match termination {
        Termination::Exited { code } => classify_exit_code(code),
        Termination::Signaled { .. } => AgentResult::Error,
        Termination::TimedOut { .. } => AgentResult::TimedOut,
        Termination::NotExecuted => AgentResult::NotInstalled,
    }
}

/// The last exit reason in the agent's stderr (Pacemaker also takes the last), on one
/// line, without control characters, bounded.
pub(crate) fn exit_reason(stderr: &str) -> Option<String> {
    let start = stderr.rfind(EXIT_REASON_PREFIX)? + EXIT_REASON_PREFIX.len();
    let line = stderr[start..].lines().next().unwrap_or("");
    let reason: String = line
        .trim()
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(EXIT_REASON_LIMIT_CHARS)
        .collect();
    if reason.is_empty() {
        None
    } else {
        Some(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_exit_reason_wins() {
        let stderr =
            "noise\nocf-exit-reason:first\nmore\nocf-exit-reason: second \x07bell\ntrailing\n";
        assert_eq!(exit_reason(stderr).as_deref(), Some("second ?bell"));
        assert_eq!(exit_reason("nothing here"), None);
        assert_eq!(exit_reason("ocf-exit-reason:\n"), None);
    }

    #[test]
    fn codes_outside_the_standard_are_errors() {
        assert_eq!(classify_exit_code(10), AgentResult::Error);
        assert_eq!(classify_exit_code(137), AgentResult::Error);
        assert_eq!(classify_exit_code(-1), AgentResult::Error);
        assert_eq!(
            classify(Termination::Signaled { signal: 9 }),
            AgentResult::Error
        );
    }
}
