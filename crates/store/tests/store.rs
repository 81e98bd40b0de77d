//! Storage tests: openraft's conformance suite on our redb store, plus restart, corruption and format checks.

use hafen_model::{Command, Envelope};
use hafen_store::{DATA_FILE_NAME, LogStore, StateMachineStore, StoreError};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{Entry, EntryPayload, LogId, RaftLogReader, StorageError};

struct RedbBuilder;

impl StoreBuilder<hafen_store::TypeConfig, LogStore, StateMachineStore, tempfile::TempDir>
    for RedbBuilder
{
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (log, state_machine) = hafen_store::open(dir.path()).expect("fresh data file opens");
        Ok((dir, log, state_machine))
    }
}

/// Proves our storage meets openraft's contract by running its own conformance suite.
#[test]
fn openraft_storage_conformance_suite_passes() {
    if let Err(error) = Suite::test_all(RedbBuilder) {
        panic!("openraft's storage suite failed: {error}");
    }
}

fn noop_entry(index: u64) -> Entry<hafen_store::TypeConfig> {
    Entry {
        log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Envelope {
            request_id: format!("marker-request-{index}"),
            now_ms: 0,
            command: Command::Noop,
        }),
    }
}

async fn write_entries(dir: &std::path::Path, count: u64) {
    let (mut log, _) = hafen_store::open(dir).unwrap();
    let entries: Vec<_> = (1..=count).map(noop_entry).collect();
    log.blocking_append(entries).await.unwrap();
}

/// Entries written before a restart are read back after it.
#[tokio::test]
async fn entries_survive_reopening_the_data_file() {
    let dir = tempfile::tempdir().unwrap();
    write_entries(dir.path(), 5).await;
    let (mut log, _) = hafen_store::open(dir.path()).unwrap();
    let entries = log.try_get_log_entries(1..=5).await.unwrap();
    assert_eq!(entries.len(), 5);
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id.map(|id| id.index), Some(5));
}

/// One flipped byte inside a stored value makes the node refuse to open the file, naming it.
#[tokio::test]
async fn a_corrupted_byte_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_entries(dir.path(), 3).await;
    let path = dir.path().join(DATA_FILE_NAME);
    let mut bytes = std::fs::read(&path).unwrap();
    let marker = b"marker-request-2";
    let position = bytes
        .windows(marker.len())
        .position(|window| window == marker)
        .expect("the entry is stored in the file");
    bytes[position + 3] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let error = hafen_store::open(dir.path()).unwrap_err();
    assert!(matches!(error, StoreError::Corrupted { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    // The file is not reset: the damaged entry is still there for an operator to inspect.
    let after = std::fs::read(&path).unwrap();
    assert!(after.len() >= bytes.len(), "the data file shrank");
    let damaged = &bytes[position..position + marker.len()];
    assert!(
        after.windows(damaged.len()).any(|window| window == damaged),
        "the damaged entry was removed"
    );
}

/// A data file of another format version is refused, never rewritten.
#[tokio::test]
async fn an_unknown_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_entries(dir.path(), 1).await;
    {
        let db = redb::Database::create(dir.path().join(DATA_FILE_NAME)).unwrap();
        let write = db.begin_write().unwrap();
        {
            let mut meta = write
                .open_table(redb::TableDefinition::<&str, &[u8]>::new("meta"))
                .unwrap();
            // A correctly checksummed record of version 99.
            let payload = 99u64.to_le_bytes();
            let digest = <sha2::Sha256 as sha2::Digest>::digest(payload);
            let mut sealed = digest[..8].to_vec();
            sealed.extend_from_slice(&payload);
            meta.insert("format_version", sealed.as_slice()).unwrap();
        }
        write.commit().unwrap();
    }
    let error = hafen_store::open(dir.path()).unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, StoreError::UnknownFormat { found: 99, .. }),
        "{message}"
    );
    assert!(message.contains(DATA_FILE_NAME), "{message}");
}

/// A state machine snapshot is persisted and loaded back after a restart.
#[tokio::test]
async fn the_state_machine_reloads_its_last_snapshot() {
    use openraft::RaftSnapshotBuilder;
    let dir = tempfile::tempdir().unwrap();
    {
        let (_, mut state_machine) = hafen_store::open(dir.path()).unwrap();
        state_machine
            .apply(vec![noop_entry(1), noop_entry(2)])
            .await
            .unwrap();
        let mut builder = state_machine.get_snapshot_builder().await;
        builder.build_snapshot().await.unwrap();
    }
    let (_, mut state_machine) = hafen_store::open(dir.path()).unwrap();
    let (applied, _) = state_machine.applied_state().await.unwrap();
    assert_eq!(applied.map(|id| id.index), Some(2));
}
