//! The database through sqlx: SQLite (one file, the default) or PostgreSQL (shared by several
//! replicas). Here: the pool and transaction of either dialect and the storage errors. Opening
//! it (the pool, embedded migrations per dialect) is in `open`, fault bookkeeping in
//! [`file_faults`], the read queries the admin API needs in `reads`. Writes live next to what
//! they write (plans, registry, recorder).
//!
//! Both dialects run the same SQL text where they can (`$1` placeholders, `ON CONFLICT`,
//! `CAST(... AS BIGINT)`): [`on_backend!`] compiles one query body once per driver, so a query
//! cannot drift between them. The few statements that differ are written twice, side by side.

pub mod file_faults;
mod open;
mod probe;
mod reads;
pub mod recorder;
pub mod writer_lock;

pub use open::{Location, OpenError, connect, connection_pragmas};
pub use probe::WritableProbe;
pub use reads::{
    KeyUse, MethodUsage, UsageByClient, list_audit, list_refusal_counts, live_certificates,
    newest_certificates, usage_by_client,
};

use std::sync::Arc;

use sqlx::{PgPool, Postgres, Sqlite, SqlitePool, Transaction};

/// One of each dialect: a pool, a transaction. Code that differs per dialect matches on it;
/// code that does not runs through [`on_backend!`].
#[derive(Clone, Debug)]
pub enum Backend<S, P> {
    Sqlite(S),
    Postgres(P),
}

/// The service's database.
pub type Db = Backend<SqlitePool, PgPool>;
/// A transaction on it.
pub type Tx = Backend<Transaction<'static, Sqlite>, Transaction<'static, Postgres>>;

/// Runs `$body` with `$name` bound to the dialect's value, compiled once per dialect.
macro_rules! on_backend {
    ($value:expr, $name:ident => $body:expr) => {
        match $value {
            $crate::storage::Backend::Sqlite($name) => $body,
            $crate::storage::Backend::Postgres($name) => $body,
        }
    };
}
pub(crate) use on_backend;

impl Db {
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Backend::Sqlite(pool) => Backend::Sqlite(pool.begin().await?),
            Backend::Postgres(pool) => Backend::Postgres(pool.begin().await?),
        })
    }

    /// The SQLite pool, where the database is SQLite (its file-level checks).
    pub fn sqlite(&self) -> Option<&SqlitePool> {
        match self {
            Backend::Sqlite(pool) => Some(pool),
            Backend::Postgres(_) => None,
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Backend::Postgres(_))
    }
}

impl Tx {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        on_backend!(self, tx => tx.commit().await)
    }
}

/// A storage failure while serving. Cheap to clone so that one failed group commit can answer
/// every waiter.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    #[error("database: {0}")]
    Database(Arc<sqlx::Error>),
    /// A SQLite connection of dispatch-api's own (rusqlite) failed: the plan writer's, or the
    /// registry's whole read.
    #[error("database: {0}")]
    Sqlite(Arc<rusqlite::Error>),
    #[error("the plan writer has stopped")]
    WriterStopped,
    #[error("the registry's read was stopped: the service is shutting down")]
    ReadStopped,
    #[error("a stored {0} could not be read")]
    Corrupt(&'static str),
    /// PostgreSQL: the registry was last confirmed current this many seconds ago, past
    /// `registry.max_staleness_secs` (the database cannot be reached).
    #[error(
        "the registry was last confirmed current {0} s ago (past registry.max_staleness_secs): \
         changes made through other replicas may be unheard"
    )]
    RegistryStale(i64),
}

impl StorageError {
    /// Wraps a failed sqlx call, and notes it in [`file_faults`] if the file system is at
    /// fault, so that the pool replaces its connections. Deliberately not a `From`: the note is
    /// a side effect, and every call that can fail says that it takes it.
    pub fn database(error: sqlx::Error) -> Self {
        file_faults::note(&error);
        Self::Database(Arc::new(error))
    }
}

/// SQLite's `PRAGMA integrity_check`: "ok" for a sound database file.
pub async fn integrity_check(pool: &SqlitePool) -> Result<String, StorageError> {
    sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(pool)
        .await
        .map_err(StorageError::database)
}
