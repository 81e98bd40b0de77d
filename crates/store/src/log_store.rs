//! The Raft log on redb: entries by index, vote, committed and purged markers, each value checksummed.

use crate::TypeConfig;
use crate::db::{self, DataFile, KEY_COMMITTED, KEY_PURGED, KEY_VOTE, LOG, StoreError};
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, Entry, LogId, LogState, RaftLogReader, StorageError, StorageIOError, Vote,
};
use redb::{ReadableDatabase, ReadableTable};
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

type Result<T> = std::result::Result<T, StorageError<u64>>;

/// The log half of the storage; cheap to clone (the reader is a clone).
#[derive(Debug, Clone)]
pub struct LogStore {
    file: DataFile,
}

fn read_error(error: StoreError) -> StorageError<u64> {
    StorageIOError::read_logs(AnyError::new(&error)).into()
}

fn write_error(error: StoreError) -> StorageError<u64> {
    StorageIOError::write_logs(AnyError::new(&error)).into()
}

impl LogStore {
    pub(crate) fn new(file: DataFile) -> Self {
        Self { file }
    }

    fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> std::result::Result<Option<T>, StoreError> {
        match self.file.get_meta(key)? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|error| self.file.corrupted(format!("meta {key}: {error}"))),
            None => Ok(None),
        }
    }

    fn entries(
        &self,
        start: u64,
        end: Bound<u64>,
    ) -> std::result::Result<Vec<Entry<TypeConfig>>, StoreError> {
        let file = &self.file;
        let corrupt = |e: &dyn std::fmt::Display| file.corrupted(e.to_string());
        let read = file.db.begin_read().map_err(|e| corrupt(&e))?;
        let log = match read.open_table(LOG) {
            Ok(log) => log,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(error) => return Err(corrupt(&error)),
        };
        let mut entries = Vec::new();
        for item in log
            .range((Bound::Included(start), end))
            .map_err(|e| corrupt(&e))?
        {
            let (index, value) = item.map_err(|e| corrupt(&e))?;
            let payload = db::unseal(value.value()).map_err(|detail| {
                file.corrupted(format!("log entry {}: {detail}", index.value()))
            })?;
            let entry: Entry<TypeConfig> = serde_json::from_slice(&payload)
                .map_err(|error| file.corrupted(format!("log entry {}: {error}", index.value())))?;
            entries.push(entry);
        }
        Ok(entries)
    }

    fn last_entry_id(&self) -> std::result::Result<Option<LogId<u64>>, StoreError> {
        let file = &self.file;
        let corrupt = |e: &dyn std::fmt::Display| file.corrupted(e.to_string());
        let read = file.db.begin_read().map_err(|e| corrupt(&e))?;
        let log = match read.open_table(LOG) {
            Ok(log) => log,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(error) => return Err(corrupt(&error)),
        };
        let Some((index, value)) = log.last().map_err(|e| corrupt(&e))? else {
            return Ok(None);
        };
        let payload = db::unseal(value.value())
            .map_err(|detail| file.corrupted(format!("log entry {}: {detail}", index.value())))?;
        let entry: Entry<TypeConfig> = serde_json::from_slice(&payload)
            .map_err(|error| file.corrupted(format!("log entry {}: {error}", index.value())))?;
        Ok(Some(entry.log_id))
    }

    /// Runs a write transaction on a blocking thread so fsync never stalls the async runtime.
    async fn write<F>(&self, apply: F) -> std::result::Result<(), StoreError>
    where
        F: FnOnce(&redb::WriteTransaction) -> std::result::Result<(), String> + Send + 'static,
    {
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || {
            let write = file
                .db
                .begin_write()
                .map_err(|e| file.corrupted(e.to_string()))?;
            apply(&write).map_err(|detail| file.corrupted(detail))?;
            write.commit().map_err(|e| file.corrupted(e.to_string()))
        })
        .await
        .map_err(|error| StoreError::Io {
            path: self.file.path.to_path_buf(),
            detail: format!("storage writer thread failed: {error}"),
        })?
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>> {
        let start = match range.start_bound() {
            Bound::Included(start) => *start,
            Bound::Excluded(start) => start + 1,
            Bound::Unbounded => 0,
        };
        let end = range.end_bound().cloned();
        self.entries(start, end).map_err(read_error)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>> {
        let last_purged: Option<LogId<u64>> = self.read_json(KEY_PURGED).map_err(read_error)?;
        let last_log_id = self.last_entry_id().map_err(read_error)?.or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<()> {
        let bytes =
            serde_json::to_vec(vote).map_err(|e| StorageIOError::write_vote(AnyError::new(&e)))?;
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || file.put_meta(KEY_VOTE, &bytes, true))
            .await
            .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)))?
            .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>> {
        self.read_json(KEY_VOTE)
            .map_err(|e| StorageIOError::read_vote(AnyError::new(&e)).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> Result<()> {
        let bytes =
            serde_json::to_vec(&committed).map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
        // The committed marker only speeds up re-applying after a restart; it may lag, so
        // it rides on the next durable commit instead of paying an fsync of its own.
        self.file
            .put_meta(KEY_COMMITTED, &bytes, false)
            .map_err(|e| StorageIOError::write(AnyError::new(&e)).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>> {
        Ok(self
            .read_json::<Option<LogId<u64>>>(KEY_COMMITTED)
            .map_err(read_error)?
            .flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut rows = Vec::new();
        for entry in entries {
            let payload = serde_json::to_vec(&entry)
                .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
            rows.push((entry.log_id.index, db::seal(&payload)));
        }
        let result = self
            .write(move |write| {
                let mut log = write.open_table(LOG).map_err(|e| e.to_string())?;
                for (index, value) in &rows {
                    log.insert(*index, value.as_slice())
                        .map_err(|e| e.to_string())?;
                }
                Ok(())
            })
            .await;
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(error) => {
                callback.log_io_completed(Err(std::io::Error::other(error.to_string())));
                Err(write_error(error))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<()> {
        self.write(move |write| {
            let mut log = write.open_table(LOG).map_err(|e| e.to_string())?;
            log.retain_in(log_id.index.., |_, _| false)
                .map_err(|e| e.to_string())?;
            Ok(())
        })
        .await
        .map_err(write_error)
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<()> {
        let marker = serde_json::to_vec(&log_id)
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        self.write(move |write| {
            let mut meta = write.open_table(db::META).map_err(|e| e.to_string())?;
            meta.insert(KEY_PURGED, db::seal(&marker).as_slice())
                .map_err(|e| e.to_string())?;
            let mut log = write.open_table(LOG).map_err(|e| e.to_string())?;
            log.retain_in(..=log_id.index, |_, _| false)
                .map_err(|e| e.to_string())?;
            Ok(())
        })
        .await
        .map_err(write_error)
    }
}
