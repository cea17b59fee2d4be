//! Opening the database at start-up: where settings say it is ([`Location`]), the pool of its
//! dialect with its pragmas or session settings, and the embedded migrations.

use std::path::PathBuf;
use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{PgPool, SqlitePool};

use super::{Backend, Db, StorageError, file_faults};
use crate::configuration::{DatabaseSettings, Durability};

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

#[cfg(test)]
mod tests {
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
