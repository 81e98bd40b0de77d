//! The on-disk data file: one redb database with a format version and a checksum on every value.
//!
//! redb keeps the file structurally consistent across crashes, but it does not checksum
//! values, so each value carries its own SHA-256 prefix and the whole file is verified
//! when it is opened: a corrupted byte is refused with the file's name, never reset.

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const DATA_FILE_NAME: &str = "state.redb";
/// The layout this build writes and reads; anything else is refused.
pub const FORMAT_VERSION: u64 = 1;

pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub(crate) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
pub(crate) const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");

pub(crate) const KEY_FORMAT: &str = "format_version";
pub(crate) const KEY_VOTE: &str = "vote";
pub(crate) const KEY_COMMITTED: &str = "committed";
pub(crate) const KEY_PURGED: &str = "last_purged";
pub(crate) const KEY_SNAPSHOT: &str = "current";

const CHECKSUM_BYTES: usize = 8;

/// Why the data file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "data file {path} is corrupted: {detail}; refusing to start (restore it from a peer by removing the node and joining it again)"
    )]
    Corrupted { path: PathBuf, detail: String },
    #[error(
        "data file {path} has format version {found}, this build reads version {FORMAT_VERSION}; refusing to start"
    )]
    UnknownFormat { path: PathBuf, found: u64 },
    #[error("data file {path} is in use by another process")]
    InUse { path: PathBuf },
    #[error("cannot open data file {path}: {detail}")]
    Io { path: PathBuf, detail: String },
}

/// The shared handle of the data file.
#[derive(Clone)]
pub struct DataFile {
    pub(crate) db: Arc<Database>,
    pub(crate) path: Arc<PathBuf>,
}

impl std::fmt::Debug for DataFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DataFile({})", self.path.display())
    }
}

impl DataFile {
    /// Opens the data file, creating it in an empty directory, and verifies every value.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join(DATA_FILE_NAME);
        let io = |detail: String| StoreError::Io {
            path: path.clone(),
            detail,
        };
        std::fs::create_dir_all(data_dir).map_err(|error| io(error.to_string()))?;
        let existed = path.exists();
        // redb asserts on some corruptions in debug builds; a panic is still a corrupted file.
        let opened = std::panic::catch_unwind(|| Database::create(&path)).map_err(|panic| {
            StoreError::Corrupted {
                path: path.clone(),
                detail: panic_text(&panic),
            }
        })?;
        let db = opened.map_err(|error| match error {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse { path: path.clone() },
            redb::DatabaseError::Storage(redb::StorageError::Io(error)) => io(error.to_string()),
            other => StoreError::Corrupted {
                path: path.clone(),
                detail: other.to_string(),
            },
        })?;
        let file = DataFile {
            db: Arc::new(db),
            path: Arc::new(path),
        };
        let verified =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| file.verify(existed)));
        match verified {
            Ok(result) => result?,
            Err(panic) => return Err(file.corrupted(panic_text(&panic))),
        }
        Ok(file)
    }

    pub(crate) fn corrupted(&self, detail: impl Into<String>) -> StoreError {
        StoreError::Corrupted {
            path: self.path.to_path_buf(),
            detail: detail.into(),
        }
    }

    /// Checks the format version and every checksum; writes the version into a new file.
    fn verify(&self, existed: bool) -> Result<(), StoreError> {
        let read = self
            .db
            .begin_read()
            .map_err(|e| self.corrupted(e.to_string()))?;
        let format = match read.open_table(META) {
            Ok(meta) => {
                for entry in meta.iter().map_err(|e| self.corrupted(e.to_string()))? {
                    let (key, value) = entry.map_err(|e| self.corrupted(e.to_string()))?;
                    unseal(value.value()).map_err(|detail| {
                        self.corrupted(format!("meta {}: {detail}", key.value()))
                    })?;
                }
                match meta
                    .get(KEY_FORMAT)
                    .map_err(|e| self.corrupted(e.to_string()))?
                {
                    Some(value) => Some(
                        decode_u64(&unseal(value.value()).map_err(|d| self.corrupted(d))?)
                            .map_err(|d| self.corrupted(d))?,
                    ),
                    None => None,
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(error) => return Err(self.corrupted(error.to_string())),
        };
        match format {
            Some(FORMAT_VERSION) => {}
            Some(found) => {
                return Err(StoreError::UnknownFormat {
                    path: self.path.to_path_buf(),
                    found,
                });
            }
            None if existed && self.has_any_table(&read)? => {
                return Err(self.corrupted("the format version record is missing"));
            }
            None => {
                drop(read);
                self.put_meta(KEY_FORMAT, &FORMAT_VERSION.to_le_bytes(), true)?;
                return Ok(());
            }
        }
        for table in [LOG] {
            if let Ok(log) = read.open_table(table) {
                for entry in log.iter().map_err(|e| self.corrupted(e.to_string()))? {
                    let (index, value) = entry.map_err(|e| self.corrupted(e.to_string()))?;
                    unseal(value.value()).map_err(|detail| {
                        self.corrupted(format!("log entry {}: {detail}", index.value()))
                    })?;
                }
            }
        }
        if let Ok(snapshot) = read.open_table(SNAPSHOT) {
            for entry in snapshot.iter().map_err(|e| self.corrupted(e.to_string()))? {
                let (_, value) = entry.map_err(|e| self.corrupted(e.to_string()))?;
                unseal(value.value())
                    .map_err(|detail| self.corrupted(format!("snapshot: {detail}")))?;
            }
        }
        Ok(())
    }

    fn has_any_table(&self, read: &redb::ReadTransaction) -> Result<bool, StoreError> {
        let tables = read
            .list_tables()
            .map_err(|e| self.corrupted(e.to_string()))?;
        Ok(tables.count() > 0)
    }

    pub(crate) fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let read = self
            .db
            .begin_read()
            .map_err(|e| self.corrupted(e.to_string()))?;
        let meta = match read.open_table(META) {
            Ok(meta) => meta,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(error) => return Err(self.corrupted(error.to_string())),
        };
        let value = meta.get(key).map_err(|e| self.corrupted(e.to_string()))?;
        match value {
            Some(value) => {
                Ok(Some(unseal(value.value()).map_err(|detail| {
                    self.corrupted(format!("meta {key}: {detail}"))
                })?))
            }
            None => Ok(None),
        }
    }

    pub(crate) fn put_meta(
        &self,
        key: &str,
        value: &[u8],
        durable: bool,
    ) -> Result<(), StoreError> {
        let mut write = self
            .db
            .begin_write()
            .map_err(|e| self.corrupted(e.to_string()))?;
        if !durable {
            write
                .set_durability(redb::Durability::None)
                .map_err(|e| self.corrupted(e.to_string()))?;
        }
        {
            let mut meta = write
                .open_table(META)
                .map_err(|e| self.corrupted(e.to_string()))?;
            meta.insert(key, seal(value).as_slice())
                .map_err(|e| self.corrupted(e.to_string()))?;
        }
        write.commit().map_err(|e| self.corrupted(e.to_string()))
    }
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        text.to_string()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "the storage engine failed an internal consistency check".to_string()
    }
}

/// Prefixes `payload` with the first bytes of its SHA-256.
pub(crate) fn seal(payload: &[u8]) -> Vec<u8> {
    let digest = Sha256::digest(payload);
    let mut sealed = Vec::with_capacity(CHECKSUM_BYTES + payload.len());
    sealed.extend_from_slice(&digest[..CHECKSUM_BYTES]);
    sealed.extend_from_slice(payload);
    sealed
}

/// Checks and strips the checksum added by [`seal`].
pub(crate) fn unseal(sealed: &[u8]) -> Result<Vec<u8>, String> {
    if sealed.len() < CHECKSUM_BYTES {
        return Err("value shorter than its checksum".to_string());
    }
    let (checksum, payload) = sealed.split_at(CHECKSUM_BYTES);
    let digest = Sha256::digest(payload);
    if checksum != &digest[..CHECKSUM_BYTES] {
        return Err("checksum mismatch".to_string());
    }
    Ok(payload.to_vec())
}

pub(crate) fn decode_u64(bytes: &[u8]) -> Result<u64, String> {
    let array: [u8; 8] = bytes
        .try_into()
        .map_err(|_| format!("expected 8 bytes, found {}", bytes.len()))?;
    Ok(u64::from_le_bytes(array))
}
