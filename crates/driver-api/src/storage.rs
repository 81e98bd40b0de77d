//! The storage port: the [`StoragePool`] trait every pool kind (the `dir` pool of `driver-qemu`, the fake) implements, its plain types and one error enum per operation.
//!
//! A pool holds named volumes. Templates are volumes too: a linked clone keeps its base as
//! a backing file, so a base with clones cannot be deleted; neither can a volume a running
//! VM has open.

use std::future::Future;

use serde::{Deserialize, Serialize};

pub mod conformance;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VolumeFormat {
    Qcow2,
    Raw,
}

impl VolumeFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeFormat::Qcow2 => "qcow2",
            VolumeFormat::Raw => "raw",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeInfo {
    pub name: String,
    pub format: VolumeFormat,
    /// The size the guest sees.
    pub size_bytes: u64,
    /// The base of a linked clone.
    pub backing_volume: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateVolume<'a> {
    pub name: &'a str,
    pub format: VolumeFormat,
    pub size_bytes: u64,
}

/// Volume names become file names: lowercase letters, digits, `-`, `_`, `.`, not starting
/// with `.`, at most 128 bytes.
pub fn validate_volume_name(name: &str) -> Result<(), InvalidVolumeName> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name.bytes().all(|byte| {
            byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"-_.".contains(&byte)
        });
    if valid {
        Ok(())
    } else {
        Err(InvalidVolumeName {
            name: name.to_string(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "volume name {name:?} is invalid (1-128 of a-z, 0-9, '-', '_', '.', not starting with '.')"
)]
pub struct InvalidVolumeName {
    pub name: String,
}

/// Failures of the pool's backing store or tools, shared by every operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("storage pool {pool}: {what} failed: {reason}")]
    Failed {
        pool: String,
        what: String,
        reason: String,
    },
    #[error("storage pool {pool}: {what} did not finish within {timeout_ms} ms")]
    Timeout {
        pool: String,
        what: String,
        timeout_ms: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreateVolumeError {
    #[error(transparent)]
    InvalidName(#[from] InvalidVolumeName),
    #[error("volume {name} already exists")]
    AlreadyExists { name: String },
    #[error("volume size is zero")]
    ZeroSize,
    #[error(transparent)]
    Pool(#[from] PoolError),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloneVolumeError {
    #[error(transparent)]
    InvalidName(#[from] InvalidVolumeName),
    #[error("volume {name} already exists")]
    AlreadyExists { name: String },
    #[error("source volume {name} does not exist")]
    SourceMissing { name: String },
    #[error(transparent)]
    Pool(#[from] PoolError),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResizeVolumeError {
    #[error("volume {name} does not exist")]
    NotFound { name: String },
    #[error(
        "volume {name} is {current_bytes} bytes; shrinking to {requested_bytes} would lose data"
    )]
    Shrink {
        name: String,
        current_bytes: u64,
        requested_bytes: u64,
    },
    #[error("volume {name} is in use by a running vm")]
    InUse { name: String },
    #[error(transparent)]
    Pool(#[from] PoolError),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeleteVolumeError {
    #[error("volume {name} does not exist")]
    NotFound { name: String },
    #[error("volume {name} is in use by a running vm")]
    InUse { name: String },
    #[error("volume {name} is the base of linked clones {clones:?}")]
    HasClones { name: String, clones: Vec<String> },
    #[error(transparent)]
    Pool(#[from] PoolError),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListVolumesError {
    #[error(transparent)]
    Pool(#[from] PoolError),
}

/// One storage pool. Every method is bounded by the pool's own timeouts.
pub trait StoragePool: Send + Sync {
    fn name(&self) -> &str;

    fn create(
        &self,
        request: CreateVolume<'_>,
    ) -> impl Future<Output = Result<VolumeInfo, CreateVolumeError>> + Send;

    /// A qcow2 volume `name` whose backing file is `base` (copy on write).
    fn clone_linked(
        &self,
        base: &str,
        name: &str,
    ) -> impl Future<Output = Result<VolumeInfo, CloneVolumeError>> + Send;

    /// An independent copy of `source` (its backing chain flattened) in `format`.
    fn copy_full(
        &self,
        source: &str,
        name: &str,
        format: VolumeFormat,
    ) -> impl Future<Output = Result<VolumeInfo, CloneVolumeError>> + Send;

    /// Grows a volume; shrinking is refused.
    fn resize(
        &self,
        name: &str,
        size_bytes: u64,
    ) -> impl Future<Output = Result<VolumeInfo, ResizeVolumeError>> + Send;

    /// Deletes a volume that no running VM uses and no clone is based on.
    fn delete(&self, name: &str) -> impl Future<Output = Result<(), DeleteVolumeError>> + Send;

    /// Every volume, sorted by name.
    fn list(&self) -> impl Future<Output = Result<Vec<VolumeInfo>, ListVolumesError>> + Send;
}
