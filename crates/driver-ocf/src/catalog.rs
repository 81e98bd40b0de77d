//! Where agents live: `OCF_ROOT/resource.d/<provider>/<type>`, and the scan behind `hafen agent list`.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use hafen_driver_api::resource::{AgentRef, ListAgentsError};

pub(crate) fn agent_path(ocf_root: &Path, provider: &str, agent_type: &str) -> PathBuf {
    ocf_root.join("resource.d").join(provider).join(agent_type)
}

/// A regular file (symlinks followed) with an execute bit.
pub(crate) fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
}

/// Every executable agent, sorted. Hidden files (the shell library's `.ocf-*` links) and
/// names that cannot form an agent reference are skipped.
pub(crate) fn list_agents(ocf_root: &Path) -> Result<Vec<AgentRef>, ListAgentsError> {
    let providers_dir = ocf_root.join("resource.d");
    let mut agents = BTreeSet::new();
    for provider in read_dir(&providers_dir)? {
        let provider_dir = providers_dir.join(&provider);
        if !provider_dir.is_dir() {
            continue;
        }
        for agent_type in read_dir(&provider_dir)? {
            if !is_executable(&provider_dir.join(&agent_type)) {
                continue;
            }
            if let Ok(agent) = AgentRef::ocf(&provider, &agent_type) {
                agents.insert(agent);
            }
        }
    }
    Ok(agents.into_iter().collect())
}

fn read_dir(path: &Path) -> Result<Vec<String>, ListAgentsError> {
    let io_error = |source| ListAgentsError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io_error)? {
        let name = entry.map_err(io_error)?.file_name();
        if let Some(name) = name.to_str().filter(|name| !name.starts_with('.')) {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}
