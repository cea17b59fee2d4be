//! The database through sqlx: SQLite (one file, the default) or PostgreSQL (shared by several
//! replicas). The connection pool, embedded migrations per dialect, the storage errors and their
//! fault bookkeeping, and the read queries the admin API needs. Writes live next to what they
//! write (plans, registry, recorder).
//!
//! Both dialects run the same SQL text where they can (`$1` placeholders, `ON CONFLICT`,
//! `CAST(... AS BIGINT)`): [`on_backend!`] compiles one query body once per driver, so a query
//! cannot drift between them. The few statements that differ are written twice, side by side.

pub mod recorder;
pub mod writer_lock;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{PgPool, Postgres, Row, Sqlite, SqlitePool, Transaction};

use crate::configuration::{DatabaseSettings, Durability};
use crate::identity::AuthMethod;

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

/// Where the database is, as settings name it: the SQLite file, or the PostgreSQL server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Location {
    /// From `database.url`, else `database.path`. A PostgreSQL URL must not hold a password
    /// (it would end up in logs and process listings): it comes from `database.password_file`.
    pub fn of(settings: &DatabaseSettings) -> Result<Self, OpenError> {
        let Some(url) = settings.url.as_deref() else {
            return Self::sqlite(settings, settings.path.clone());
        };
        let invalid = |reason: &str| OpenError::Url {
            reason: reason.to_owned(),
        };
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(invalid("`sqlite://` names no file"));
            }
            return Self::sqlite(settings, path.into());
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url)
                .map_err(|e| invalid(&format!("not a PostgreSQL URL: {e}")))?;
            let userinfo = url.split_once("://").map_or("", |(_, rest)| {
                rest.split_once('@').map_or("", |(userinfo, _)| userinfo)
            });
            if settings.max_size_bytes.is_some() {
                return Err(invalid(
                    "names PostgreSQL, but database.max_size_bytes caps a SQLite file: cap the \
                     space in PostgreSQL instead and remove it",
                ));
            }
            let query = url.split_once('?').map_or("", |(_, query)| query);
            let password_parameter = query
                .split('&')
                .any(|pair| pair.split('=').next() == Some("password"));
            if userinfo.contains(':') || password_parameter {
                return Err(invalid(
                    "holds a password; put it in the file database.password_file names",
                ));
            }
            return Ok(Self::Postgres(format!(
                "postgres://{}@{}:{}/{}",
                options.get_username(),
                options.get_host(),
                options.get_port(),
                options.get_database().unwrap_or(options.get_username()),
            )));
        }
        Err(invalid("is neither sqlite://PATH nor postgres://..."))
    }

    /// A SQLite file; a password file would be a PostgreSQL URL that did not take effect (an
    /// unquoted `&` in a shell, say), so it stops start-up rather than running on SQLite.
    fn sqlite(settings: &DatabaseSettings, path: PathBuf) -> Result<Self, OpenError> {
        if settings.password_file.is_some() {
            return Err(OpenError::Url {
                reason: "is not a PostgreSQL URL, but database.password_file is set: is \
                         DISPATCH_DATABASE__URL missing or cut short?"
                    .to_owned(),
            });
        }
        Ok(Self::Sqlite(path))
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "{}", path.display()),
            Self::Postgres(server) => f.write_str(server),
        }
    }
}

/// A storage failure while serving. Cheap to clone so that one failed group commit can answer
/// every waiter.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    #[error("database: {0}")]
    Database(Arc<sqlx::Error>),
    /// The plan writer's own connection (rusqlite) failed.
    #[error("database: {0}")]
    Write(Arc<rusqlite::Error>),
    #[error("the plan writer has stopped")]
    WriterStopped,
    #[error("a stored {0} could not be read")]
    Corrupt(&'static str),
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

/// Why the database could not be opened at start-up; each variant names the database (the
/// file, or the PostgreSQL server without its password).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("database.url {reason}")]
    Url { reason: String },
    #[error("database.password_file `{}`", path.display())]
    PasswordFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("database directory `{}`", path.display())]
    Directory {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("database `{}`: making it readable by this user only (0600)", path.display())]
    Permissions {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "database `{}` is in use by another dispatch-api{}: SQLite serves one process, which would \
         not hear of another's changes (a revocation made through one would not reach the other). \
         Stop the other one first, or give several replicas one PostgreSQL database (database.url)",
        database.display(),
        holder.map(|pid| format!(" (pid {pid}, as its lock file says; in a container, a pid of that container)")).unwrap_or_default()
    )]
    InUse {
        database: PathBuf,
        holder: Option<u32>,
    },
    #[error("database lock file `{}`", path.display())]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("database `{location}`")]
    Connect {
        location: Location,
        #[source]
        source: sqlx::Error,
    },
    #[error("database `{location}`: applying the migrations")]
    Migrate {
        location: Location,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error("database `{location}`: opening the plan writer's connection")]
    Writer {
        location: Location,
        #[source]
        source: rusqlite::Error,
    },
    #[error("database `{location}`: starting the plan writer")]
    WriterThread {
        location: Location,
        #[source]
        source: std::io::Error,
    },
    #[error("database `{location}`: reading the client registry")]
    Registry {
        location: Location,
        #[source]
        source: StorageError,
    },
}

/// Opens the database at `location` (from [`Location::of`] the settings) and applies the
/// embedded migrations of its dialect.
pub async fn connect(settings: &DatabaseSettings, location: &Location) -> Result<Db, OpenError> {
    match location {
        Location::Sqlite(path) => connect_sqlite(settings, path).await.map(Backend::Sqlite),
        Location::Postgres(_) => connect_postgres(settings, location.clone())
            .await
            .map(Backend::Postgres),
    }
}

/// PostgreSQL: `synchronous_commit = on` on every connection whatever the server's default, so a
/// commit (and the 202 that follows it) is on the server's disk. sqlx's migrator holds an
/// advisory lock while it migrates, so replicas starting at once apply each migration once.
async fn connect_postgres(
    settings: &DatabaseSettings,
    location: Location,
) -> Result<PgPool, OpenError> {
    let url = settings.url.as_deref().unwrap_or_default();
    let mut options = PgConnectOptions::from_str(url)
        .map_err(|source| OpenError::Connect {
            location: location.clone(),
            source,
        })?
        .options([("synchronous_commit", "on")])
        .application_name("dispatch-api");
    if let Some(path) = &settings.password_file {
        let password = std::fs::read_to_string(path).map_err(|source| OpenError::PasswordFile {
            path: path.clone(),
            source,
        })?;
        options = options.password(password.trim_end_matches(['\n', '\r']));
    }
    let pool = PgPoolOptions::new()
        // One more than asked: the registry follower's LISTEN connection holds one for good.
        .max_connections(settings.max_connections + 1)
        .acquire_timeout(settings.busy_timeout())
        .connect_with(options)
        .await
        .map_err(|source| OpenError::Connect {
            location: location.clone(),
            source,
        })?;
    sqlx::migrate!("../migrations/postgres")
        .run(&pool)
        .await
        .map_err(|source| OpenError::Migrate { location, source })?;
    Ok(pool)
}

/// Opens (creating if needed) the SQLite file and applies the embedded migrations.
///
/// WAL with `synchronous = FULL` by default: a commit is on disk before a plan is acknowledged,
/// which keeps acknowledged plans across a process crash and a power loss (`normal`: across a
/// process crash only). Group commit keeps this cheap.
async fn connect_sqlite(
    settings: &DatabaseSettings,
    path: &std::path::Path,
) -> Result<SqlitePool, OpenError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| OpenError::Directory {
            path: parent.to_owned(),
            source,
        })?;
    }
    owner_only(path).map_err(|source| OpenError::Permissions {
        path: path.to_owned(),
        source,
    })?;
    let location = Location::Sqlite(path.to_owned());
    let connect_failed = |source| OpenError::Connect {
        location: location.clone(),
        source,
    };
    let mut options = SqliteConnectOptions::from_str("sqlite:")
        .map_err(connect_failed)?
        .filename(path)
        .create_if_missing(true)
        .busy_timeout(settings.busy_timeout());
    for (name, value) in connection_pragmas(settings) {
        options = options.pragma(name, value);
    }
    let pool = SqlitePoolOptions::new()
        .max_connections(settings.max_connections)
        .before_acquire(|_connection, meta| {
            Box::pin(async move { Ok(!file_faults::opened_before_last(meta.age)) })
        })
        .connect_with(options)
        .await
        .map_err(connect_failed)?;
    sqlx::migrate!("../migrations/sqlite")
        .run(&pool)
        .await
        .map_err(|source| OpenError::Migrate {
            location: location.clone(),
            source,
        })?;
    Ok(pool)
}

/// Creates the database file readable and writable by this user only, or narrows an existing
/// one to that: it holds API-key hashes and the audit log. SQLite gives its WAL and shared-memory
/// files the database file's permissions, so they follow.
fn owner_only(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    let mode = file.metadata()?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(mode & 0o700))?;
        tracing::warn!(
            path = %path.display(),
            was = format!("{mode:o}"),
            "the database was readable by others; narrowed it to its owner"
        );
    }
    // WAL and shared-memory files an older version left behind keep their own permissions.
    for suffix in ["-wal", "-shm"] {
        let companion = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
        if let Ok(metadata) = std::fs::metadata(&companion) {
            let mode = metadata.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                std::fs::set_permissions(
                    &companion,
                    std::fs::Permissions::from_mode(mode & 0o700),
                )?;
            }
        }
    }
    Ok(())
}

/// The pragmas of every connection, the pool's and the plan writer's, so both write with the
/// same durability and the same size cap.
pub fn connection_pragmas(settings: &DatabaseSettings) -> Vec<(&'static str, String)> {
    let synchronous = match settings.synchronous {
        Durability::Full => "full",
        Durability::Normal => "normal",
    };
    let mut pragmas = vec![
        ("journal_mode", "wal".to_owned()),
        ("synchronous", synchronous.to_owned()),
        ("foreign_keys", "on".to_owned()),
    ];
    if let Some(bytes) = settings.max_size_bytes {
        // SQLite's default page size is 4096 bytes.
        pragmas.push(("max_page_count", (bytes / 4096).max(1).to_string()));
    }
    pragmas
}

/// Recovery from file-system faults without a restart.
///
/// When the database's file system fails (an I/O error, the kernel remounting it read-only, the
/// file gone), an open connection keeps its file descriptors on the failed file system for good:
/// even after an operator repairs and remounts it, such a connection would go on failing, or
/// read a stale copy. So every such error is noted here, and the pool closes each connection
/// opened before the last fault when it is next acquired; its replacement opens the file as it
/// is now. Process-wide: the service has one database.
pub mod file_faults {
    use std::sync::LazyLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);
    /// Nanoseconds after `EPOCH` of the last fault, plus one; 0: none yet.
    static LAST_FAULT: AtomicU64 = AtomicU64::new(0);

    /// SQLite's primary result codes that mean the file, not the statement, is at fault.
    const SQLITE_READONLY: i32 = 8;
    const SQLITE_IOERR: i32 = 10;
    const SQLITE_CANTOPEN: i32 = 14;

    fn now() -> u64 {
        EPOCH.elapsed().as_nanos() as u64
    }

    /// Notes `error` if it is a file-system fault.
    pub fn note(error: &sqlx::Error) {
        match error {
            sqlx::Error::Io(_) => {
                LAST_FAULT.store(now() + 1, Ordering::Relaxed);
            }
            sqlx::Error::Database(error) => {
                note_code(error.code().and_then(|code| code.parse().ok()));
            }
            _ => {}
        }
    }

    /// Notes a fault if SQLite's (extended) result `code` is one; returns whether it was.
    pub fn note_code(code: Option<i32>) -> bool {
        let fault = code.is_some_and(|code| {
            matches!(
                code & 0xff,
                SQLITE_READONLY | SQLITE_IOERR | SQLITE_CANTOPEN
            )
        });
        if fault {
            LAST_FAULT.store(now() + 1, Ordering::Relaxed);
        }
        fault
    }

    /// Whether a connection of this age was opened before the last fault.
    pub fn opened_before_last(age: Duration) -> bool {
        let fault = LAST_FAULT.load(Ordering::Relaxed);
        fault != 0 && now().saturating_sub(age.as_nanos() as u64) < fault
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn io_readonly_and_cantopen_are_file_faults_that_recycle_older_connections() {
            // Extended codes: SQLITE_IOERR_FSYNC (1034), SQLITE_READONLY_DBMOVED (1032).
            for code in [10, 1034, 8, 1032, 14] {
                assert!(note_code(Some(code)), "{code}");
            }
            // SQLITE_BUSY, SQLITE_LOCKED, SQLITE_FULL, SQLITE_CONSTRAINT_UNIQUE, none.
            for code in [Some(5), Some(6), Some(13), Some(2067), None] {
                assert!(!note_code(code), "{code:?}");
            }
            // Connections opened before the last fault are recycled, later ones kept.
            note_code(Some(10));
            std::thread::sleep(Duration::from_millis(5));
            assert!(opened_before_last(Duration::from_secs(3600)));
            assert!(!opened_before_last(Duration::from_millis(1)));
        }
    }
}

/// Whether a write could happen now. SQLite: takes the write lock (`BEGIN IMMEDIATE`) and lets
/// it go, failing when the file is locked by someone else, read-only, or gone (waits at most the
/// busy timeout). PostgreSQL: the server answers and is not a read-only standby.
pub async fn probe_writable(db: &Db) -> Result<(), StorageError> {
    async {
        match db {
            Backend::Sqlite(pool) => {
                let mut connection = pool.acquire().await?;
                sqlx::query("BEGIN IMMEDIATE")
                    .execute(&mut *connection)
                    .await?;
                sqlx::query("ROLLBACK").execute(&mut *connection).await?;
            }
            Backend::Postgres(pool) => {
                let read_only: String = sqlx::query_scalar("SHOW transaction_read_only")
                    .fetch_one(pool)
                    .await?;
                if read_only != "off" {
                    return Err(sqlx::Error::Protocol(
                        "the PostgreSQL server is read-only (a standby?)".into(),
                    ));
                }
            }
        }
        Ok(())
    }
    .await
    .map_err(StorageError::database)
}

/// SQLite's `PRAGMA integrity_check`: "ok" for a sound database file.
pub async fn integrity_check(pool: &SqlitePool) -> Result<String, StorageError> {
    sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(pool)
        .await
        .map_err(StorageError::database)
}

#[derive(Debug, Serialize)]
pub struct AuditRecord {
    pub id: i64,
    pub at: i64,
    pub kind: String,
    pub reason: String,
    pub client: Option<String>,
    pub actor: Option<String>,
    pub method: Option<String>,
    pub before: Option<String>,
    pub after: Option<String>,
    pub detail: serde_json::Value,
}

/// Refusals of callers the service cannot name, counted per hour, reason and source.
#[derive(Debug, Serialize)]
pub struct RefusalCount {
    pub hour: i64,
    pub reason: String,
    pub source: String,
    pub count: i64,
    pub first_seen: i64,
    pub last_seen: i64,
    pub last_detail: serde_json::Value,
}

/// The most recently seen refusal counts first, optionally of one reason.
pub async fn list_refusal_counts(
    db: &Db,
    reason: Option<&str>,
    limit: i64,
) -> Result<Vec<RefusalCount>, StorageError> {
    on_backend!(db, pool => {
        let rows = sqlx::query(
            "SELECT hour, reason, source, count, first_seen, last_seen, last_detail FROM refusal_counts \
             WHERE ($1 IS NULL OR reason = $1) ORDER BY last_seen DESC, hour DESC LIMIT $2",
        )
        .bind(reason)
        .bind(limit)
        .fetch_all(pool)
        .await
        .map_err(StorageError::database)?;
        rows.into_iter()
            .map(|row| {
                let detail: String = row.try_get("last_detail")?;
                Ok(RefusalCount {
                    hour: row.try_get("hour")?,
                    reason: row.try_get("reason")?,
                    source: row.try_get("source")?,
                    count: row.try_get("count")?,
                    first_seen: row.try_get("first_seen")?,
                    last_seen: row.try_get("last_seen")?,
                    last_detail: serde_json::from_str(&detail).unwrap_or_default(),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StorageError::database)
    })
}

/// The newest audit events first, optionally for one client.
pub async fn list_audit(
    db: &Db,
    client: Option<&str>,
    limit: i64,
) -> Result<Vec<AuditRecord>, StorageError> {
    on_backend!(db, pool => {
        let rows = sqlx::query(
            "SELECT id, at, kind, reason, client, actor, method, before, after, detail FROM audit_events \
             WHERE ($1 IS NULL OR client = $1) ORDER BY id DESC LIMIT $2",
        )
        .bind(client)
        .bind(limit)
        .fetch_all(pool)
        .await
        .map_err(StorageError::database)?;
        rows.into_iter()
            .map(|row| {
                let detail: String = row.try_get("detail")?;
                Ok(AuditRecord {
                    id: row.try_get("id")?,
                    at: row.try_get("at")?,
                    kind: row.try_get("kind")?,
                    reason: row.try_get("reason")?,
                    client: row.try_get("client")?,
                    actor: row.try_get("actor")?,
                    method: row.try_get("method")?,
                    before: row.try_get("before")?,
                    after: row.try_get("after")?,
                    detail: serde_json::from_str(&detail).unwrap_or_default(),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StorageError::database)
    })
}

/// How one client used one method.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MethodUsage {
    /// Requests within the report window.
    pub requests_in_window: i64,
    /// Last use ever (unix seconds).
    pub last_seen: Option<i64>,
    pub last_certificate_fingerprint: Option<String>,
    pub last_certificate_not_after: Option<i64>,
    /// The key of the CA that signed the last certificate (for `issuer_spki_sha256`).
    pub last_certificate_issuer_spki_sha256: Option<String>,
    /// `api_key` only: each key's own use, by the key's SHA-256 (hex).
    pub keys: BTreeMap<String, KeyUse>,
}

/// One API key's use, all replicas together.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct KeyUse {
    pub use_count: i64,
    /// Unix seconds.
    pub last_used_at: Option<i64>,
}

/// Per client name, per method name.
pub type UsageByClient = BTreeMap<String, BTreeMap<&'static str, MethodUsage>>;

/// Usage per client and method; `since` bounds the windowed counts. Every replica's counts
/// are rows of the same table, so they add up here.
pub async fn usage_by_client(db: &Db, since: i64) -> Result<UsageByClient, StorageError> {
    let read: Result<UsageByClient, sqlx::Error> = async {
        on_backend!(db, pool => {
            let rows = sqlx::query(
                "SELECT client, method, \
                   CAST(SUM(CASE WHEN last_seen >= $1 THEN request_count ELSE 0 END) AS BIGINT) AS in_window, \
                   MAX(last_seen) AS last_seen FROM client_usage GROUP BY client, method",
            )
            .bind(since)
            .fetch_all(pool)
            .await?;
            let mut usage = UsageByClient::new();
            for row in rows {
                let method: String = row.try_get("method")?;
                let Some(method) = AuthMethod::parse(&method) else {
                    continue;
                };
                usage.entry(row.try_get("client")?).or_default().insert(
                    method.as_str(),
                    MethodUsage {
                        requests_in_window: row.try_get("in_window")?,
                        last_seen: row.try_get("last_seen")?,
                        ..MethodUsage::default()
                    },
                );
            }
            // The certificate last seen from each client (for its expiry).
            let certs = sqlx::query(
                "SELECT client, last_cert_fingerprint, last_cert_not_after, last_cert_issuer_spki \
                 FROM client_usage u \
                 WHERE method = 'certificate' AND last_cert_fingerprint IS NOT NULL AND last_seen = \
                   (SELECT MAX(last_seen) FROM client_usage v WHERE v.client = u.client AND v.method = 'certificate')",
            )
            .fetch_all(pool)
            .await?;
            for row in certs {
                let client: String = row.try_get("client")?;
                if let Some(entry) = usage
                    .get_mut(&client)
                    .and_then(|m| m.get_mut("certificate"))
                {
                    entry.last_certificate_fingerprint = row.try_get("last_cert_fingerprint")?;
                    entry.last_certificate_not_after = row.try_get("last_cert_not_after")?;
                    entry.last_certificate_issuer_spki_sha256 = row.try_get("last_cert_issuer_spki")?;
                }
            }
            let keys = sqlx::query("SELECT client, key_sha256, use_count, last_used_at FROM api_keys")
                .fetch_all(pool)
                .await?;
            for row in keys {
                let client: String = row.try_get("client")?;
                usage
                    .entry(client)
                    .or_default()
                    .entry(AuthMethod::ApiKey.as_str())
                    .or_default()
                    .keys
                    .insert(
                        row.try_get("key_sha256")?,
                        KeyUse {
                            use_count: row.try_get("use_count")?,
                            last_used_at: row.try_get("last_used_at")?,
                        },
                    );
            }
            Ok(usage)
        })
    }
    .await;
    read.map_err(StorageError::database)
}

/// The chain each client last presented (leaf first, DER), among those seen since `since`
/// (unix seconds): the live certificates a registry change is tried against. One per client,
/// the latest, whichever replica saw it.
pub async fn live_certificates(db: &Db, since: i64) -> Result<Vec<Vec<Vec<u8>>>, StorageError> {
    let read: Result<_, sqlx::Error> = async {
        on_backend!(db, pool => {
            let rows = sqlx::query(
                "SELECT client, last_seen, last_cert_chain FROM client_usage \
                 WHERE method = 'certificate' AND last_seen >= $1 AND last_cert_chain IS NOT NULL",
            )
            .bind(since)
            .fetch_all(pool)
            .await?;
            let mut live: BTreeMap<String, (i64, Vec<Vec<u8>>)> = BTreeMap::new();
            for row in rows {
                let seen: i64 = row.try_get("last_seen")?;
                let text: String = row.try_get("last_cert_chain")?;
                let Some(chain) = recorder::chain_from_text(&text) else {
                    continue;
                };
                let client: String = row.try_get("client")?;
                if live.get(&client).is_none_or(|(latest, _)| *latest < seen) {
                    live.insert(client, (seen, chain));
                }
            }
            Ok(live.into_values().map(|(_, chain)| chain).collect())
        })
    }
    .await;
    read.map_err(StorageError::database)
}

#[cfg(test)]
mod location_tests {
    use super::*;

    fn location(url: Option<&str>, max_size_bytes: Option<u64>) -> Result<Location, String> {
        let settings = DatabaseSettings {
            url: url.map(str::to_owned),
            max_size_bytes,
            ..DatabaseSettings::default()
        };
        Location::of(&settings).map_err(|e| e.to_string())
    }

    #[test]
    fn a_password_file_without_a_postgres_url_is_a_start_up_error() {
        for url in [None, Some("sqlite://x.db")] {
            let settings = DatabaseSettings {
                url: url.map(str::to_owned),
                password_file: Some("/run/secrets/db/password".into()),
                ..DatabaseSettings::default()
            };
            let error = Location::of(&settings).unwrap_err().to_string();
            assert!(error.contains("password_file"), "{url:?}: {error}");
        }
        let settings = DatabaseSettings {
            url: Some("postgres://dispatch@db/plans".into()),
            password_file: Some("/run/secrets/db/password".into()),
            ..DatabaseSettings::default()
        };
        assert!(Location::of(&settings).is_ok());
    }

    #[test]
    fn the_url_names_a_sqlite_file_or_a_postgres_server_without_its_password() {
        let postgres = |s: &str| Ok(Location::Postgres(s.to_owned()));
        type Row<'a> = (Option<&'a str>, Option<u64>, Result<Location, String>);
        let table: [Row; 6] = [
            (None, None, Ok(Location::Sqlite("data/dispatch.db".into()))),
            (
                None,
                Some(1 << 20),
                Ok(Location::Sqlite("data/dispatch.db".into())),
            ),
            (
                Some("sqlite://x/y.db"),
                None,
                Ok(Location::Sqlite("x/y.db".into())),
            ),
            (
                Some("postgres://dispatch@db:6543/plans"),
                None,
                postgres("postgres://dispatch@db:6543/plans"),
            ),
            (
                Some("postgresql://dispatch@db/plans?sslmode=require"),
                None,
                postgres("postgres://dispatch@db:5432/plans"),
            ),
            (
                Some("postgres://dispatch@db"),
                None,
                postgres("postgres://dispatch@db:5432/dispatch"),
            ),
        ];
        for (url, cap, expected) in table {
            assert_eq!(location(url, cap), expected, "{url:?}");
        }
    }

    #[test]
    fn a_password_in_the_url_a_size_cap_on_postgres_and_other_schemes_are_start_up_errors() {
        for (url, cap, says) in [
            (
                "postgres://dispatch:hunter2@db/plans",
                None,
                "password_file",
            ),
            (
                "postgres://dispatch@db/plans",
                Some(1 << 20),
                "max_size_bytes",
            ),
            ("sqlite://", None, "names no file"),
            ("mysql://dispatch@db/plans", None, "neither"),
            ("data/dispatch.db", None, "neither"),
        ] {
            let error = location(Some(url), cap).unwrap_err();
            assert!(error.starts_with("database.url"), "{error}");
            assert!(error.contains(says), "{url}: {error}");
            assert!(!error.contains("hunter2"), "{error}");
        }
    }
}
