//! The data directory: the node's identity, its certificates, and the pending bootstrap of a new cluster.
//!
//! Layout: `node.json` (who this node is), `tls/` (CA, certificate, key), `state.redb`
//! (the replicated state), and `bootstrap.json` while a fresh cluster's first command
//! has not been committed yet.

use hafen_model::Envelope;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const NODE_FILE: &str = "node.json";
pub const BOOTSTRAP_FILE: &str = "bootstrap.json";
pub const TLS_DIR: &str = "tls";
/// The layout version of `node.json`; anything else is refused.
pub const NODE_FILE_VERSION: u32 = 1;

/// Why the data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error(
        "data directory {0} is not initialized: run `hafen cluster init` (first node) or `hafen cluster join` (other nodes) with this config first"
    )]
    NotInitialized(String),
    #[error("data directory {0} already belongs to a cluster; refusing to overwrite it")]
    AlreadyInitialized(String),
    #[error("{path} is corrupted or from another version: {detail}")]
    Corrupted { path: String, detail: String },
    #[error("cannot access {path}: {detail}")]
    Io { path: String, detail: String },
}

/// Who this node is; written once by init or join.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeIdentity {
    pub version: u32,
    pub node_id: u64,
    pub name: String,
    pub cluster_name: String,
}

/// A data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    pub path: PathBuf,
}

impl DataDir {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
        }
    }

    pub fn tls_dir(&self) -> PathBuf {
        self.path.join(TLS_DIR)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn is_initialized(&self) -> bool {
        self.file(NODE_FILE).exists()
    }

    /// Refuses to initialize a directory that already holds a node.
    pub fn ensure_fresh(&self) -> Result<(), DataDirError> {
        if self.is_initialized() || self.file(hafen_store::DATA_FILE_NAME).exists() {
            return Err(DataDirError::AlreadyInitialized(
                self.path.display().to_string(),
            ));
        }
        Ok(())
    }

    pub fn load_identity(&self) -> Result<NodeIdentity, DataDirError> {
        let path = self.file(NODE_FILE);
        if !path.exists() {
            return Err(DataDirError::NotInitialized(
                self.path.display().to_string(),
            ));
        }
        let identity: NodeIdentity = read_json(&path)?;
        if identity.version != NODE_FILE_VERSION {
            return Err(DataDirError::Corrupted {
                path: path.display().to_string(),
                detail: format!(
                    "layout version {} is not {NODE_FILE_VERSION}, the one this build reads",
                    identity.version
                ),
            });
        }
        Ok(identity)
    }

    pub fn save_identity(&self, identity: &NodeIdentity) -> Result<(), DataDirError> {
        write_json(&self.file(NODE_FILE), identity)
    }

    pub fn pending_bootstrap(&self) -> Result<Option<Envelope>, DataDirError> {
        let path = self.file(BOOTSTRAP_FILE);
        if !path.exists() {
            return Ok(None);
        }
        read_json(&path).map(Some)
    }

    pub fn save_bootstrap(&self, envelope: &Envelope) -> Result<(), DataDirError> {
        write_json(&self.file(BOOTSTRAP_FILE), envelope)
    }

    pub fn clear_bootstrap(&self) -> Result<(), DataDirError> {
        let path = self.file(BOOTSTRAP_FILE);
        std::fs::remove_file(&path).map_err(|error| DataDirError::Io {
            path: path.display().to_string(),
            detail: error.to_string(),
        })
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, DataDirError> {
    let text = std::fs::read_to_string(path).map_err(|error| DataDirError::Io {
        path: path.display().to_string(),
        detail: error.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|error| DataDirError::Corrupted {
        path: path.display().to_string(),
        detail: error.to_string(),
    })
}

/// Writes atomically (temporary file, fsync, rename) with owner-only permissions.
fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), DataDirError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |error: std::io::Error| DataDirError::Io {
        path: path.display().to_string(),
        detail: error.to_string(),
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(io)?;
    file.write_all(
        serde_json::to_string_pretty(value)
            .expect("serializes")
            .as_bytes(),
    )
    .map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&temporary, path).map_err(io)
}
