//! Where fence agents live: `fence_*` executables in the agent directories (`/usr/sbin` for Debian's `fence-agents`), and the scan behind `hafen fence-device agents`.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use hafen_driver_api::fence::ListFenceAgentsError;

/// Every fence agent's name starts with this (the fence-agents project's convention and
/// what Pacemaker's stonith lists).
pub(crate) const AGENT_PREFIX: &str = "fence_";

/// A name usable as one path component that names a fence agent.
pub(crate) fn is_agent_name(name: &str) -> bool {
    name.len() > AGENT_PREFIX.len()
        && name.starts_with(AGENT_PREFIX)
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '+' | '-'))
}

/// A regular file (symlinks followed) with an execute bit.
pub(crate) fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
}

/// The first directory holding the agent as an executable; `None` when none does. The
/// name must have passed [`is_agent_name`].
pub(crate) fn find_agent(agent_dirs: &[PathBuf], agent: &str) -> Option<PathBuf> {
    agent_dirs
        .iter()
        .map(|directory| directory.join(agent))
        .find(|path| is_executable(path))
}

/// Every executable `fence_*` in the directories, sorted and without duplicates. A
/// directory that does not exist holds no agents; any other read error is reported.
pub(crate) fn list_agents(agent_dirs: &[PathBuf]) -> Result<Vec<String>, ListFenceAgentsError> {
    let mut agents = BTreeSet::new();
    for directory in agent_dirs {
        let io_error = |source: std::io::Error| ListFenceAgentsError::Io {
            path: directory.display().to_string(),
            reason: source.to_string(),
        };
        let entries = match std::fs::read_dir(directory) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(io_error(error)),
        };
        for entry in entries {
            let name = entry.map_err(io_error)?.file_name();
            let Some(name) = name.to_str().filter(|name| is_agent_name(name)) else {
                continue;
            };
            if is_executable(&directory.join(name)) {
                agents.insert(name.to_owned());
            }
        }
    }
    Ok(agents.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_names_cannot_escape_the_directory() {
        assert!(is_agent_name("fence_ipmilan"));
        assert!(is_agent_name("fence_hafen_netns"));
        for bad in [
            "fence_",
            "ipmilan",
            "fence_../../bin/sh",
            "fence_a/b",
            "fence_a b",
            "",
        ] {
            assert!(!is_agent_name(bad), "{bad}");
        }
    }
}
