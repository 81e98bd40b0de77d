//! The `dir` storage pool: volumes are qcow2 or raw files in one directory (local, or the same shared path on every host), managed with `qemu-img`.
//!
//! A volume `NAME` is the file `NAME.qcow2` or `NAME.raw`, so the format is visible in the
//! name and a volume name is unique across formats. Linked clones reference their base
//! by file name only, so the pool works wherever the directory is mounted. "In use" is
//! QEMU's own image lock: `qemu-img` refuses to open an image a running VM has open.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use hafen_driver_api::storage::{
    CloneVolumeError, CreateVolume, CreateVolumeError, DeleteVolumeError, ListVolumesError,
    PoolError, ResizeVolumeError, StoragePool, VolumeFormat, VolumeInfo, validate_volume_name,
};
use serde::Deserialize;
use tokio::process::Command;

/// Default bound on one `qemu-img` run; a full copy of a large image is the slow case.
pub const DEFAULT_QEMU_IMG_TIMEOUT_MS: u64 = 600_000;

#[derive(Debug, Clone)]
pub struct DirPool {
    name: String,
    directory: PathBuf,
    qemu_img: PathBuf,
    timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NewPoolError {
    #[error("storage pool name {name:?} is invalid")]
    InvalidName { name: String },
    #[error("storage pool directory {path:?} is unusable: {reason}")]
    Directory { path: PathBuf, reason: String },
    #[error("qemu-img ({binary:?}) is not installed (apt-get install qemu-utils)")]
    QemuImgMissing { binary: PathBuf },
}

/// What `qemu-img info --output=json` says about one image.
#[derive(Debug, Deserialize)]
struct ImageInfo {
    #[serde(rename = "virtual-size")]
    virtual_size: u64,
    #[serde(rename = "backing-filename")]
    backing_filename: Option<String>,
}

/// The outcome of one `qemu-img` run that exited non-zero.
#[derive(Debug)]
struct ToolFailure {
    message: String,
    locked: bool,
}

enum RunError {
    Pool(PoolError),
    Tool(ToolFailure),
}

impl DirPool {
    /// A pool over an existing directory. `qemu_img` is looked up in `PATH` unless it is
    /// a path.
    pub fn new(name: &str, directory: &Path, qemu_img: &Path) -> Result<DirPool, NewPoolError> {
        if name.is_empty()
            || !name
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b"-_.".contains(&byte))
        {
            return Err(NewPoolError::InvalidName {
                name: name.to_string(),
            });
        }
        if !directory.is_dir() {
            return Err(NewPoolError::Directory {
                path: directory.to_path_buf(),
                reason: "not a directory".to_string(),
            });
        }
        let qemu_img =
            crate::probe::find_binary(qemu_img).ok_or_else(|| NewPoolError::QemuImgMissing {
                binary: qemu_img.to_path_buf(),
            })?;
        Ok(DirPool {
            name: name.to_string(),
            directory: directory.to_path_buf(),
            qemu_img,
            timeout: Duration::from_millis(DEFAULT_QEMU_IMG_TIMEOUT_MS),
        })
    }

    pub fn with_timeout(mut self, timeout: Duration) -> DirPool {
        self.timeout = timeout;
        self
    }

    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// The file and format of volume `name`, if it exists.
    pub fn find_volume(&self, name: &str) -> Option<(PathBuf, VolumeFormat)> {
        validate_volume_name(name).ok()?;
        [VolumeFormat::Qcow2, VolumeFormat::Raw]
            .into_iter()
            .map(|format| (self.volume_path(name, format), format))
            .find(|(path, _)| path.is_file())
    }

    fn volume_path(&self, name: &str, format: VolumeFormat) -> PathBuf {
        self.directory.join(format!("{name}.{}", format.as_str()))
    }

    fn pool_failure(&self, what: &str, reason: String) -> PoolError {
        PoolError::Failed {
            pool: self.name.clone(),
            what: what.to_string(),
            reason,
        }
    }

    /// Runs `qemu-img` with a timeout (the child dies with the timeout) and returns
    /// its stdout.
    async fn run(&self, what: &str, arguments: &[&std::ffi::OsStr]) -> Result<Vec<u8>, RunError> {
        let child = Command::new(&self.qemu_img)
            .args(arguments)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| {
                RunError::Pool(self.pool_failure(what, format!("cannot run qemu-img: {error}")))
            })?;
        let output = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| {
                RunError::Pool(PoolError::Timeout {
                    pool: self.name.clone(),
                    what: what.to_string(),
                    timeout_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
                })
            })?
            .map_err(|error| RunError::Pool(self.pool_failure(what, error.to_string())))?;
        if output.status.success() {
            return Ok(output.stdout);
        }
        let message = String::from_utf8_lossy(&output.stderr).trim().to_string();
        Err(RunError::Tool(ToolFailure {
            locked: crate::is_lock_failure(&message),
            message,
        }))
    }

    /// Like [`Self::run`] for steps where a tool failure is just a pool failure.
    async fn run_plain(
        &self,
        what: &str,
        arguments: &[&std::ffi::OsStr],
    ) -> Result<Vec<u8>, PoolError> {
        self.run(what, arguments)
            .await
            .map_err(|error| match error {
                RunError::Pool(error) => error,
                RunError::Tool(failure) => self.pool_failure(what, failure.message),
            })
    }

    /// Image facts, read with `-U` so it works while a VM has the image open.
    async fn image_info(&self, path: &Path, format: VolumeFormat) -> Result<ImageInfo, PoolError> {
        let stdout = self
            .run_plain(
                "qemu-img info",
                &[
                    "info".as_ref(),
                    "-U".as_ref(),
                    "--output=json".as_ref(),
                    "-f".as_ref(),
                    format.as_str().as_ref(),
                    path.as_os_str(),
                ],
            )
            .await?;
        serde_json::from_slice(&stdout).map_err(|error| {
            self.pool_failure("qemu-img info", format!("unexpected output: {error}"))
        })
    }

    async fn volume_info(&self, name: &str) -> Result<Option<VolumeInfo>, PoolError> {
        let Some((path, format)) = self.find_volume(name) else {
            return Ok(None);
        };
        let info = self.image_info(&path, format).await?;
        Ok(Some(VolumeInfo {
            name: name.to_string(),
            format,
            size_bytes: info.virtual_size,
            backing_volume: info.backing_filename.as_deref().map(volume_name_of_file),
        }))
    }

    /// Whether a process holds the image open for writing: opening it without `-U`
    /// fails exactly then.
    async fn in_use(&self, path: &Path, format: VolumeFormat) -> Result<bool, PoolError> {
        let result = self
            .run(
                "qemu-img info",
                &[
                    "info".as_ref(),
                    "-f".as_ref(),
                    format.as_str().as_ref(),
                    path.as_os_str(),
                ],
            )
            .await;
        match result {
            Ok(_) => Ok(false),
            Err(RunError::Tool(failure)) if failure.locked => Ok(true),
            Err(RunError::Tool(failure)) => {
                Err(self.pool_failure("qemu-img info", failure.message))
            }
            Err(RunError::Pool(error)) => Err(error),
        }
    }

    fn exists_any_format(&self, name: &str) -> bool {
        self.find_volume(name).is_some()
    }

    async fn listed(&self) -> Result<Vec<VolumeInfo>, PoolError> {
        let entries = std::fs::read_dir(&self.directory)
            .map_err(|error| self.pool_failure("list", error.to_string()))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|error| self.pool_failure("list", error.to_string()))?;
            let file_name = entry.file_name().to_string_lossy().into_owned();
            let Some((name, extension)) = file_name.rsplit_once('.') else {
                continue;
            };
            if matches!(extension, "qcow2" | "raw") && validate_volume_name(name).is_ok() {
                names.push(name.to_string());
            }
        }
        names.sort();
        names.dedup();
        let mut volumes = Vec::with_capacity(names.len());
        for name in names {
            // A file deleted between the directory scan and now is simply gone.
            if let Some(info) = self.volume_info(&name).await? {
                volumes.push(info);
            }
        }
        Ok(volumes)
    }

    async fn clone_into(
        &self,
        source: &str,
        name: &str,
        target_format: VolumeFormat,
        arguments: impl FnOnce(&Path, VolumeFormat, &Path) -> Vec<std::ffi::OsString>,
        what: &str,
    ) -> Result<VolumeInfo, CloneVolumeError> {
        validate_volume_name(name)?;
        let (source_path, source_format) =
            self.find_volume(source)
                .ok_or_else(|| CloneVolumeError::SourceMissing {
                    name: source.to_string(),
                })?;
        if self.exists_any_format(name) {
            return Err(CloneVolumeError::AlreadyExists {
                name: name.to_string(),
            });
        }
        let temporary = self.directory.join(format!(".{name}.partial"));
        let arguments = arguments(&source_path, source_format, &temporary);
        let arguments: Vec<&std::ffi::OsStr> = arguments
            .iter()
            .map(|argument| argument.as_os_str())
            .collect();
        let result = self.run_plain(what, &arguments).await;
        if let Err(error) = result {
            let _ = std::fs::remove_file(&temporary);
            return Err(error.into());
        }
        Ok(self.finish_partial(&temporary, name, target_format).await?)
    }

    /// Moves a finished `.partial` file into place (so no half-written volume is ever
    /// listed) and reads it back.
    async fn finish_partial(
        &self,
        temporary: &Path,
        name: &str,
        format: VolumeFormat,
    ) -> Result<VolumeInfo, PoolError> {
        let target = self.volume_path(name, format);
        std::fs::rename(temporary, &target)
            .map_err(|error| self.pool_failure("rename", error.to_string()))?;
        self.volume_info(name)
            .await?
            .ok_or_else(|| self.pool_failure("create", format!("volume {name} vanished")))
    }
}

fn volume_name_of_file(file_name: &str) -> String {
    let base = Path::new(file_name)
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| file_name.to_string());
    base.strip_suffix(".qcow2")
        .or_else(|| base.strip_suffix(".raw"))
        .unwrap_or(&base)
        .to_string()
}

impl StoragePool for DirPool {
    fn name(&self) -> &str {
        &self.name
    }

    async fn create(&self, request: CreateVolume<'_>) -> Result<VolumeInfo, CreateVolumeError> {
        validate_volume_name(request.name)?;
        if request.size_bytes == 0 {
            return Err(CreateVolumeError::ZeroSize);
        }
        if self.exists_any_format(request.name) {
            return Err(CreateVolumeError::AlreadyExists {
                name: request.name.to_string(),
            });
        }
        let temporary = self.directory.join(format!(".{}.partial", request.name));
        let size = request.size_bytes.to_string();
        let result = self
            .run_plain(
                "qemu-img create",
                &[
                    "create".as_ref(),
                    "-q".as_ref(),
                    "-f".as_ref(),
                    request.format.as_str().as_ref(),
                    temporary.as_os_str(),
                    size.as_ref(),
                ],
            )
            .await;
        if let Err(error) = result {
            let _ = std::fs::remove_file(&temporary);
            return Err(error.into());
        }
        Ok(self
            .finish_partial(&temporary, request.name, request.format)
            .await?)
    }

    async fn clone_linked(&self, base: &str, name: &str) -> Result<VolumeInfo, CloneVolumeError> {
        self.clone_into(
            base,
            name,
            VolumeFormat::Qcow2,
            |source, format, target| {
                // The backing file is named relative to the pool directory.
                let backing = source
                    .file_name()
                    .map(|file| file.to_os_string())
                    .unwrap_or_default();
                vec![
                    "create".into(),
                    "-q".into(),
                    "-f".into(),
                    "qcow2".into(),
                    "-F".into(),
                    format.as_str().into(),
                    "-b".into(),
                    backing,
                    target.as_os_str().to_os_string(),
                ]
            },
            "qemu-img create (linked clone)",
        )
        .await
    }

    async fn copy_full(
        &self,
        source: &str,
        name: &str,
        format: VolumeFormat,
    ) -> Result<VolumeInfo, CloneVolumeError> {
        self.clone_into(
            source,
            name,
            format,
            |source, source_format, target| {
                vec![
                    "convert".into(),
                    "-q".into(),
                    "-f".into(),
                    source_format.as_str().into(),
                    "-O".into(),
                    format.as_str().into(),
                    source.as_os_str().to_os_string(),
                    target.as_os_str().to_os_string(),
                ]
            },
            "qemu-img convert",
        )
        .await
    }

    async fn resize(&self, name: &str, size_bytes: u64) -> Result<VolumeInfo, ResizeVolumeError> {
        let not_found = || ResizeVolumeError::NotFound {
            name: name.to_string(),
        };
        let (path, format) = self.find_volume(name).ok_or_else(not_found)?;
        let current = self.image_info(&path, format).await?.virtual_size;
        if size_bytes < current {
            return Err(ResizeVolumeError::Shrink {
                name: name.to_string(),
                current_bytes: current,
                requested_bytes: size_bytes,
            });
        }
        let size = size_bytes.to_string();
        let result = self
            .run(
                "qemu-img resize",
                &[
                    "resize".as_ref(),
                    "-q".as_ref(),
                    "-f".as_ref(),
                    format.as_str().as_ref(),
                    path.as_os_str(),
                    size.as_ref(),
                ],
            )
            .await;
        match result {
            Ok(_) => {}
            Err(RunError::Tool(failure)) if failure.locked => {
                return Err(ResizeVolumeError::InUse {
                    name: name.to_string(),
                });
            }
            Err(RunError::Tool(failure)) => {
                return Err(self.pool_failure("qemu-img resize", failure.message).into());
            }
            Err(RunError::Pool(error)) => return Err(error.into()),
        }
        self.volume_info(name).await?.ok_or_else(not_found)
    }

    async fn delete(&self, name: &str) -> Result<(), DeleteVolumeError> {
        let (path, format) = self
            .find_volume(name)
            .ok_or_else(|| DeleteVolumeError::NotFound {
                name: name.to_string(),
            })?;
        if self.in_use(&path, format).await? {
            return Err(DeleteVolumeError::InUse {
                name: name.to_string(),
            });
        }
        let clones: Vec<String> = self
            .listed()
            .await?
            .into_iter()
            .filter(|volume| volume.backing_volume.as_deref() == Some(name))
            .map(|volume| volume.name)
            .collect();
        if !clones.is_empty() {
            return Err(DeleteVolumeError::HasClones {
                name: name.to_string(),
                clones,
            });
        }
        std::fs::remove_file(&path)
            .map_err(|error| self.pool_failure("delete", error.to_string()))?;
        Ok(())
    }

    async fn list(&self) -> Result<Vec<VolumeInfo>, ListVolumesError> {
        Ok(self.listed().await?)
    }
}
