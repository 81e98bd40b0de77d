//! The state machine: a [`ClusterState`] in memory, persisted as checksummed snapshots in the data file.
//!
//! After a restart the last snapshot is loaded and openraft re-applies the committed log
//! entries after it, so the in-memory state never needs a write per command.

use crate::db::{self, DataFile, KEY_SNAPSHOT, SNAPSHOT, StoreError};
use crate::{PeerNode, TypeConfig};
use hafen_model::{ApplyResult, ClusterState, Outcome};
use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, Entry, EntryPayload, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use std::io::Cursor;
use std::sync::{Arc, RwLock};
use tokio::sync::watch;

type Result<T> = std::result::Result<T, StorageError<u64>>;

/// What the state machine holds: the cluster state plus openraft's bookkeeping.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StateMachineData {
    pub last_applied: Option<LogId<u64>>,
    pub last_membership: StoredMembership<u64, PeerNode>,
    /// Copy-on-write: a reader takes the current state by reference count, and an apply
    /// copies it only while such a reader still holds it.
    pub state: Arc<ClusterState>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<u64, PeerNode>,
    data: Vec<u8>,
}

/// The state-machine half of the storage.
#[derive(Debug, Clone)]
pub struct StateMachineStore {
    file: DataFile,
    data: Arc<RwLock<StateMachineData>>,
    /// Bumped after every apply, so watchers (status --watch, the reconciler) wake up.
    applied: Arc<watch::Sender<u64>>,
    snapshot_counter: Arc<std::sync::atomic::AtomicU64>,
}

fn snapshot_read_error(error: impl std::error::Error + 'static) -> StorageError<u64> {
    StorageIOError::read_snapshot(None, AnyError::new(&error)).into()
}

fn snapshot_write_error(error: impl std::error::Error + 'static) -> StorageError<u64> {
    StorageIOError::write_snapshot(None, AnyError::new(&error)).into()
}

impl StateMachineStore {
    /// Loads the last snapshot of the data file, or an empty state.
    pub(crate) fn load(file: DataFile) -> std::result::Result<Self, StoreError> {
        let stored = read_snapshot(&file)?;
        let data = match &stored {
            Some(snapshot) => serde_json::from_slice(&snapshot.data)
                .map_err(|error| file.corrupted(format!("snapshot: {error}")))?,
            None => StateMachineData::default(),
        };
        let (applied, _) = watch::channel(0);
        Ok(Self {
            file,
            data: Arc::new(RwLock::new(data)),
            applied: Arc::new(applied),
            snapshot_counter: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        })
    }

    /// Reads the current state (possibly behind the leader; see `Replica::read` for linearizable reads).
    pub fn with_state<T>(&self, read: impl FnOnce(&StateMachineData) -> T) -> T {
        read(&self.data.read().expect("state machine lock poisoned"))
    }

    /// A receiver that changes whenever an entry is applied.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    fn persist(&self, stored: &StoredSnapshot) -> std::result::Result<(), StoreError> {
        let bytes = serde_json::to_vec(stored).map_err(|e| self.file.corrupted(e.to_string()))?;
        let write = self
            .file
            .db
            .begin_write()
            .map_err(|e| self.file.corrupted(e.to_string()))?;
        {
            let mut table = write
                .open_table(SNAPSHOT)
                .map_err(|e| self.file.corrupted(e.to_string()))?;
            table
                .insert(KEY_SNAPSHOT, db::seal(&bytes).as_slice())
                .map_err(|e| self.file.corrupted(e.to_string()))?;
        }
        write
            .commit()
            .map_err(|e| self.file.corrupted(e.to_string()))
    }
}

fn read_snapshot(file: &DataFile) -> std::result::Result<Option<StoredSnapshot>, StoreError> {
    use redb::ReadableDatabase;
    let read = file
        .db
        .begin_read()
        .map_err(|e| file.corrupted(e.to_string()))?;
    let table = match read.open_table(SNAPSHOT) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(error) => return Err(file.corrupted(error.to_string())),
    };
    let Some(value) = table
        .get(KEY_SNAPSHOT)
        .map_err(|e| file.corrupted(e.to_string()))?
    else {
        return Ok(None);
    };
    let payload = db::unseal(value.value())
        .map_err(|detail| file.corrupted(format!("snapshot: {detail}")))?;
    serde_json::from_slice(&payload)
        .map(Some)
        .map_err(|error| file.corrupted(format!("snapshot: {error}")))
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>> {
        let (data, last_applied, last_membership) = {
            let guard = self.data.read().expect("state machine lock poisoned");
            let bytes = serde_json::to_vec(&*guard).map_err(snapshot_write_error)?;
            (bytes, guard.last_applied, guard.last_membership.clone())
        };
        let counter = self
            .snapshot_counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let snapshot_id = match last_applied {
            Some(log_id) => format!(
                "{}-{}-{}-{counter}",
                log_id.leader_id,
                log_id.index,
                data.len()
            ),
            None => format!("empty-{counter}"),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership,
            snapshot_id,
        };
        let stored = StoredSnapshot { meta, data };
        let this = self.clone();
        let stored = tokio::task::spawn_blocking(move || this.persist(&stored).map(|()| stored))
            .await
            .map_err(snapshot_write_error)?
            .map_err(snapshot_write_error)?;
        Ok(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, PeerNode>)> {
        let guard = self.data.read().expect("state machine lock poisoned");
        Ok((guard.last_applied, guard.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ApplyResult>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut results = Vec::new();
        {
            let mut guard = self.data.write().expect("state machine lock poisoned");
            for entry in entries {
                guard.last_applied = Some(entry.log_id);
                let result = match entry.payload {
                    EntryPayload::Blank => Ok(Outcome::Done),
                    EntryPayload::Normal(envelope) => {
                        Arc::make_mut(&mut guard.state).apply(&envelope)
                    }
                    EntryPayload::Membership(membership) => {
                        guard.last_membership =
                            StoredMembership::new(Some(entry.log_id), membership);
                        Ok(Outcome::Done)
                    }
                };
                results.push(result);
            }
        }
        self.applied.send_modify(|count| *count += 1);
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, PeerNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<()> {
        let bytes = snapshot.into_inner();
        let mut data: StateMachineData =
            serde_json::from_slice(&bytes).map_err(snapshot_read_error)?;
        // The snapshot's metadata is authoritative for what it covers.
        data.last_applied = meta.last_log_id;
        data.last_membership = meta.last_membership.clone();
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: bytes,
        };
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.persist(&stored))
            .await
            .map_err(snapshot_write_error)?
            .map_err(snapshot_write_error)?;
        *self.data.write().expect("state machine lock poisoned") = data;
        self.applied.send_modify(|count| *count += 1);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>> {
        let stored = read_snapshot(&self.file).map_err(snapshot_read_error)?;
        Ok(stored.map(|stored| Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        }))
    }
}
