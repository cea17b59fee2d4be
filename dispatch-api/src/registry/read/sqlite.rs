//! The whole registry read from its SQLite file over a connection of its own (rusqlite), on a
//! blocking thread, in one read transaction.
//!
//! sqlx hands each row from its worker thread to the task over a channel of 50: at a million
//! clients (three million rows) start-up spent most of its time in those hand-overs, a core
//! idle for a third of it. Here the rows are read where they are assembled.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::types::Type;
use rusqlite::{Connection, OpenFlags, Row};
use sqlx::SqlitePool;
use tokio::task::JoinError;

use super::rows::{Assembly, BINDINGS, CLIENTS, KEYS, REVOKED, binding_spec, revoked};
use crate::identity::Fingerprint;
use crate::registry::Client;
use crate::storage::{StorageError, file_faults};

/// How long the read waits for a lock: only a WAL recovery or checkpoint holds one against a
/// reader, briefly. (Not `database.busy_timeout_ms`: the pool's options do not give it back,
/// and a reader in WAL mode does not wait on writers.)
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The database's file, if it has one a second connection can open (not an in-memory one).
pub(super) fn file_of(pool: &SqlitePool) -> Option<PathBuf> {
    let path = pool.connect_options().get_filename().to_owned();
    path.is_file().then_some(path)
}

pub(super) async fn read_all(
    path: PathBuf,
) -> Result<(Vec<Client>, HashSet<Fingerprint>), StorageError> {
    let read = finished(tokio::task::spawn_blocking(move || read_file(&path)).await)?;
    read.map_err(failed)
}

/// The read's outcome once its blocking task has ended.
fn finished<T>(joined: Result<T, JoinError>) -> Result<T, StorageError> {
    match joined {
        Ok(read) => Ok(read),
        Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        // The runtime is shutting down: nobody waits for this snapshot.
        Err(_) => Err(StorageError::ReadStopped),
    }
}

/// The storage error for a failed read, noting a file-system fault as the plan writer does: the
/// pool then replaces its connections opened before it.
fn failed(error: rusqlite::Error) -> StorageError {
    file_faults::note_code(error.sqlite_error().map(|e| e.extended_code));
    StorageError::Sqlite(Arc::new(error))
}

fn read_file(path: &Path) -> rusqlite::Result<(Vec<Client>, HashSet<Fingerprint>)> {
    let mut connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    // One snapshot of the three tables: a key or binding written between two of the reads
    // cannot arrive without its client.
    let transaction = connection.transaction()?;
    let mut assembly = Assembly::default();
    let mut clients = transaction.prepare(CLIENTS)?;
    let mut rows = clients.query([])?;
    while let Some(row) = rows.next()? {
        assembly.client(
            text(row, 0)?,
            text(row, 1)?,
            text(row, 2)?,
            row.get(3).unwrap_or(true),
        );
    }
    assembly.index();
    let mut bindings = transaction.prepare(&BINDINGS)?;
    let mut rows = bindings.query([])?;
    while let Some(row) = rows.next()? {
        let spec = binding_spec(row.get(1)?, row.get(2)?, text(row, 3)?, |column| {
            row.get(column)
        })?;
        assembly.binding(text(row, 0)?, spec);
    }
    let mut keys = transaction.prepare(KEYS)?;
    let mut rows = keys.query([])?;
    while let Some(row) = rows.next()? {
        assembly.key(
            text(row, 0)?,
            text(row, 1)?,
            row.get(2)?,
            row.get(3)?,
            row.get(4)?,
        );
    }
    let mut fingerprints = transaction.prepare(REVOKED)?;
    let texts: Vec<String> = fingerprints
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    Ok((assembly.finish(), revoked(texts.iter().map(String::as_str))))
}

/// A text column, borrowed from the row (no copy of each of three million values).
fn text<'r>(row: &'r Row<'_>, column: usize) -> rusqlite::Result<&'r str> {
    row.get_ref(column)?.as_str().map_err(|error| {
        rusqlite::Error::FromSqlConversionFailure(column, Type::Text, Box::new(error))
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn a_read_failing_on_a_file_system_fault_is_noted_so_the_pool_replaces_its_connections() {
        let opened = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        // SQLITE_IOERR_READ (266).
        let io = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(266), None);
        assert!(matches!(failed(io), StorageError::Sqlite(_)));
        assert!(
            file_faults::opened_before_last(opened.elapsed()),
            "a connection opened before the fault is replaced"
        );
    }

    #[tokio::test]
    async fn file_of_names_a_database_file_and_nothing_for_one_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.path().join("registry.db"))
            .create_if_missing(true);
        let file = SqlitePool::connect_with(options).await.unwrap();
        assert!(file_of(&file).is_some_and(|path| path.ends_with("registry.db")));
        let memory = SqlitePool::connect("sqlite::memory:").await.unwrap();
        assert_eq!(file_of(&memory), None);
    }

    #[tokio::test]
    async fn a_read_stopped_with_the_runtime_answers_read_stopped_not_a_panic() {
        let task = tokio::spawn(std::future::pending::<()>());
        task.abort();
        let cancelled = task.await;
        assert!(matches!(
            finished(cancelled),
            Err(StorageError::ReadStopped)
        ));
        assert!(matches!(finished(Ok(7)), Ok(7)));
    }
}
