//! Typed settings, layered: `config/base.toml`, then `config/{environment}.toml`, then
//! environment variables `DISPATCH_<SECTION>__<KEY>` (for example `DISPATCH_TLS__CLIENT_AUTH`).
//! Every section's defaults are its `Default` impl and nowhere else (the limits and migration
//! sections are in `configuration/`); the files set what differs. Everything is checked at
//! start-up; a wrong value names its key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod limits;
mod migration;

pub use dispatch_types::ClientAuth;
pub use limits::{LimitSettings, UnprovenSettings};
pub use migration::{AuditSettings, FlipGuard, MigrationSettings};

/// The environment whose file may be absent: `local` runs on `base.toml` alone.
pub const DEFAULT_ENVIRONMENT: &str = "local";

/// Why the settings could not be loaded; each variant names the file or key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "configuration: the settings file `{}` does not exist (set DISPATCH_CONFIG_DIR to the config directory)",
        path.display()
    )]
    MissingBase { path: PathBuf },
    #[error(
        "configuration: DISPATCH_ENV is `{environment}` but `{}` does not exist (a typo would silently run on base settings)",
        path.display()
    )]
    UnknownEnvironment { environment: String, path: PathBuf },
    #[error("configuration: {0}")]
    Invalid(#[from] config::ConfigError),
    #[error("configuration: `{0}` must be set")]
    Missing(&'static str),
    #[error("configuration: `{key}` {rule}")]
    OutOfRange {
        key: &'static str,
        rule: &'static str,
    },
}

/// How current each replica's in-memory registry must be.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrySettings {
    /// PostgreSQL: a replica that has not confirmed its registry current (the stored version
    /// read and reflected) for this long answers authenticated requests 503 and is not ready,
    /// until it has: a key removed, a revocation or a flip made through another replica must
    /// not go unheard for longer. SQLite has one process, always current.
    pub max_staleness_secs: u64,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        Self {
            max_staleness_secs: 30,
        }
    }
}

// No `deny_unknown_fields` at the top: `DISPATCH_CONFIG_DIR` and `DISPATCH_ENV` share the prefix.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub server: ServerSettings,
    pub tls: TlsSettings,
    pub database: DatabaseSettings,
    pub bootstrap: BootstrapSettings,
    pub migration: MigrationSettings,
    pub registry: RegistrySettings,
    pub audit: AuditSettings,
    pub limits: LimitSettings,
    pub telemetry: TelemetrySettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address of the HTTPS listener.
    pub host: String,
    pub port: u16,
    /// Address of the plain-HTTP operations listener (/healthz, /readyz, /metrics).
    pub ops_host: String,
    pub ops_port: u16,
    /// Worker threads; the number of cores when unset.
    pub workers: Option<usize>,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub shutdown_grace_secs: u64,
    /// Connections per worker thread; more wait in the accept queue.
    pub max_connections: usize,
    /// A TLS handshake must complete within this (a silent or byte-at-a-time client is cut off).
    pub tls_handshake_timeout_ms: u64,
    /// A request's head must arrive within this after the connection is ready.
    pub client_request_timeout_ms: u64,
    /// Idle keep-alive connections are closed after this.
    pub keep_alive_secs: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8443,
            ops_host: "127.0.0.1".into(),
            ops_port: 9090,
            workers: None,
            shutdown_grace_secs: 10,
            max_connections: 10_000,
            tls_handshake_timeout_ms: 3_000,
            client_request_timeout_ms: 5_000,
            keep_alive_secs: 5,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM: the server certificate, then any intermediates. Or use `pkcs12_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM: the server's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// PKCS#12 (`.pfx`/`.p12`) holding the server key and chain, instead of the two PEM files.
    pub pkcs12_file: Option<PathBuf>,
    /// A file holding the PKCS#12 password (never the password itself in settings).
    pub pkcs12_password_file: Option<PathBuf>,
    /// PEM: the CAs whose client certificates may complete a handshake (one or several).
    /// Required: empty means unset.
    pub client_ca_file: PathBuf,
    pub client_auth: ClientAuth,
    /// CRLs (PEM or DER), each applied to the certificates its signing key issued: checked in
    /// the handshake and again on every request.
    pub crl_files: Vec<PathBuf>,
    /// How often the files above are checked for changes (0: only on SIGHUP).
    pub reload_interval_secs: u64,
    /// Certificates expiring within this many days are warned about, once a day.
    pub expiry_warning_days: u64,
    /// TLS session resumption (stateless tickets and a session cache; both renewed on any trust
    /// change).
    pub session_resumption: bool,
    /// A connection older than this is closed gracefully (HTTP/1.1 `Connection: close` after
    /// its current response, HTTP/2 GOAWAY once no stream has been in flight for 10 s), so
    /// that every client eventually does a full handshake against the current trust. 0: no
    /// limit.
    pub max_connection_age_secs: u64,
    /// The most certificates a client may present (its own and the intermediates it sends).
    /// A longer chain is refused before any signature is checked (handshake failure kind
    /// `chain_too_long`), so that a stranger cannot make each handshake spend webpki's whole
    /// signature budget.
    pub max_client_chain: usize,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            cert_file: None,
            key_file: None,
            pkcs12_file: None,
            pkcs12_password_file: None,
            client_ca_file: PathBuf::new(),
            client_auth: ClientAuth::Optional,
            crl_files: Vec::new(),
            reload_interval_secs: 5,
            expiry_warning_days: 14,
            session_resumption: true,
            max_connection_age_secs: 3600,
            max_client_chain: 4,
        }
    }
}

impl TlsSettings {
    /// Every file the TLS material is made of, for change detection.
    pub fn files(&self) -> Vec<&Path> {
        let mut files: Vec<&Path> = [
            &self.cert_file,
            &self.key_file,
            &self.pkcs12_file,
            &self.pkcs12_password_file,
        ]
        .into_iter()
        .flatten()
        .map(PathBuf::as_path)
        .collect();
        files.push(&self.client_ca_file);
        files.extend(self.crl_files.iter().map(PathBuf::as_path));
        files
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// The SQLite file, when `url` is not set.
    pub path: PathBuf,
    /// `sqlite://PATH` (the same as `path`) or `postgres://USER@HOST:PORT/DATABASE` for a
    /// PostgreSQL server that several replicas share. The password never goes here: see
    /// `password_file`.
    pub url: Option<String>,
    /// PostgreSQL: the file holding the password (a mounted secret), read at start.
    pub password_file: Option<PathBuf>,
    pub busy_timeout_ms: u64,
    pub max_connections: u32,
    /// A cap on the database file's size: past it, writes fail (503) instead of filling the disk.
    pub max_size_bytes: Option<u64>,
    /// When a commit is on disk: `full` (default) fsyncs every commit, so an acknowledged plan
    /// survives a process crash AND a power loss; `normal` (WAL) survives a process crash, but
    /// the last commits before a power loss may be lost. Group commit amortises either.
    pub synchronous: Durability,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            path: "data/dispatch.db".into(),
            url: None,
            password_file: None,
            busy_timeout_ms: 5_000,
            max_connections: 4,
            max_size_bytes: None,
            synchronous: Durability::Full,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    #[default]
    Full,
    Normal,
}

impl DatabaseSettings {
    pub fn busy_timeout(&self) -> Duration {
        Duration::from_millis(self.busy_timeout_ms)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BootstrapSettings {
    /// Clients registered at start-up when absent; existing clients are never overwritten.
    pub clients_file: Option<PathBuf>,
    /// Where `api_key_sha256_file` entries of the clients file are looked up.
    pub secrets_dir: Option<PathBuf>,
}

/// How log lines are written: for people, or one JSON object per line (containers). Spelled
/// the same in both applications (`telemetry.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `dispatch_api=debug,info`.
    pub filter: String,
    /// Log lines waiting for a slow log sink, at most; past it lines are dropped and counted
    /// (`dispatch_log_lines_dropped_total`), never waited for.
    pub log_buffer_lines: usize,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            format: LogFormat::default(),
            filter: "info".into(),
            log_buffer_lines: 65_536,
        }
    }
}

impl Settings {
    /// Loads `base.toml` and `{environment}.toml` from `config_dir`, then `DISPATCH_*` variables.
    /// The environment's file must exist unless it is [`DEFAULT_ENVIRONMENT`].
    pub fn load(config_dir: &Path, environment: &str) -> Result<Self, ConfigError> {
        let base = config_dir.join("base.toml");
        if !base.is_file() {
            return Err(ConfigError::MissingBase { path: base });
        }
        let environment_file = config_dir.join(format!("{environment}.toml"));
        if environment != DEFAULT_ENVIRONMENT && !environment_file.is_file() {
            return Err(ConfigError::UnknownEnvironment {
                environment: environment.to_owned(),
                path: environment_file,
            });
        }
        let settings: Self = config::Config::builder()
            .add_source(config::File::from(base))
            .add_source(config::File::from(environment_file).required(false))
            .add_source(
                config::Environment::with_prefix("DISPATCH")
                    .prefix_separator("_")
                    .separator("__")
                    .try_parsing(true)
                    .list_separator(",")
                    .with_list_parse_key("tls.crl_files"),
            )
            .build()?
            .try_deserialize()?;
        if settings.tls.client_ca_file.as_os_str().is_empty() {
            return Err(ConfigError::Missing("tls.client_ca_file"));
        }
        settings.check_ranges()?;
        Ok(settings)
    }

    /// Values that parse but cannot work, refused naming the key.
    pub fn check_ranges(&self) -> Result<(), ConfigError> {
        let out = |key, rule| Err(ConfigError::OutOfRange { key, rule });
        if self.limits.body_timeout_secs == 0 {
            return out(
                "limits.body_timeout_secs",
                "must be at least 1 (every body would time out)",
            );
        }
        if self.tls.max_client_chain == 0 {
            return out(
                "tls.max_client_chain",
                "must be at least 1 (no client certificate could pass)",
            );
        }
        if self.migration.quiet_period_secs > self.migration.evidence_window_secs {
            return out(
                "migration.quiet_period_secs",
                "must not exceed migration.evidence_window_secs (key use older than the window is not read)",
            );
        }
        if !(5..=86_400).contains(&self.registry.max_staleness_secs) {
            return out(
                "registry.max_staleness_secs",
                "must be between 5 (more than two of the follower's 2 s version checks) and 86400",
            );
        }
        if let Some(guard) = &self.migration.default_guard
            && guard.check().is_err()
        {
            return out(
                "migration.default_guard",
                "watch_secs must be between 1 and 604800 and max_refusals at least 1",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(
        base: &str,
        files: &[(&str, &str)],
        environment: &str,
    ) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("base.toml"), base).unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        Settings::load(dir.path(), environment)
    }

    const MINIMAL: &str = "[tls]\nclient_ca_file = \"ca.pem\"\n";

    #[test]
    fn values_that_cannot_work_are_refused_naming_the_key() {
        for (section, key) in [
            (
                "[limits]\nbody_timeout_secs = 0\n",
                "limits.body_timeout_secs",
            ),
            ("[tls]\nmax_client_chain = 0\n", "tls.max_client_chain"),
            (
                "[migration]\nevidence_window_secs = 60\nquiet_period_secs = 61\n",
                "migration.quiet_period_secs",
            ),
            (
                "[migration.default_guard]\nwatch_secs = 0\nmax_refusals = 5\n",
                "migration.default_guard",
            ),
            (
                "[migration.default_guard]\nwatch_secs = 900\nmax_refusals = 0\n",
                "migration.default_guard",
            ),
            (
                "[registry]\nmax_staleness_secs = 4\n",
                "registry.max_staleness_secs",
            ),
            (
                "[registry]\nmax_staleness_secs = 86401\n",
                "registry.max_staleness_secs",
            ),
        ] {
            let text = format!("{MINIMAL}{section}").replace(
                "[tls]\nclient_ca_file = \"ca.pem\"\n[tls]\n",
                "[tls]\nclient_ca_file = \"ca.pem\"\n",
            );
            let error = load(&text, &[], "local").unwrap_err().to_string();
            assert!(error.contains(key), "{error}");
        }
        assert!(load(MINIMAL, &[], "local").is_ok());
    }

    #[test]
    fn a_minimal_file_loads_every_default() {
        let settings = load(MINIMAL, &[], "local").unwrap();
        assert_eq!(settings.server.port, ServerSettings::default().port);
        assert_eq!(settings.database.path, DatabaseSettings::default().path);
        assert_eq!(
            settings.limits.max_stops,
            LimitSettings::default().max_stops
        );
        assert_eq!(settings.tls.reload_interval_secs, 5);
        assert!(settings.tls.session_resumption);
    }

    #[test]
    fn a_partial_limits_section_keeps_the_other_defaults() {
        let settings = load(&format!("{MINIMAL}[limits]\nmax_stops = 7\n"), &[], "local").unwrap();
        assert_eq!(settings.limits.max_stops, 7);
        assert_eq!(
            settings.limits.max_body_bytes,
            LimitSettings::default().max_body_bytes
        );
        assert_eq!(
            settings.limits.record_queue,
            LimitSettings::default().record_queue
        );
    }

    #[test]
    fn a_partial_migration_section_keeps_the_other_defaults() {
        // The section exists with no key set: every field keeps its default.
        let settings = load(&format!("{MINIMAL}[migration]\n"), &[], "local").unwrap();
        assert_eq!(settings.migration.evidence_window_secs, 86_400);
        let settings = load(
            &format!("{MINIMAL}[migration]\nevidence_window_secs = 60\nquiet_period_secs = 30\n"),
            &[],
            "local",
        )
        .unwrap();
        assert_eq!(settings.migration.evidence_window_secs, 60);
    }

    #[test]
    fn partial_server_database_and_telemetry_sections_keep_the_other_defaults() {
        let text = format!(
            "{MINIMAL}[server]\nport = 1\n[database]\nmax_connections = 2\n[telemetry]\nformat = \"json\"\n"
        );
        let settings = load(&text, &[], "local").unwrap();
        assert_eq!(settings.server.port, 1);
        assert_eq!(settings.server.ops_port, ServerSettings::default().ops_port);
        assert_eq!(settings.database.max_connections, 2);
        assert_eq!(settings.database.path, DatabaseSettings::default().path);
        assert_eq!(settings.telemetry.format, LogFormat::Json);
        assert_eq!(settings.telemetry.filter, "info");
    }

    #[test]
    fn an_unknown_environment_is_an_error_naming_its_file() {
        let error = load(MINIMAL, &[], "prodution").unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(error, ConfigError::UnknownEnvironment { .. }),
            "{message}"
        );
        assert!(
            message.contains("prodution") && message.contains("prodution.toml"),
            "{message}"
        );
    }

    #[test]
    fn the_default_environment_may_have_no_file_and_others_need_theirs() {
        assert!(load(MINIMAL, &[], DEFAULT_ENVIRONMENT).is_ok());
        let settings = load(
            MINIMAL,
            &[("staging.toml", "[server]\nport = 2\n")],
            "staging",
        )
        .unwrap();
        assert_eq!(settings.server.port, 2);
    }

    #[test]
    fn a_missing_client_ca_file_names_the_key() {
        let error = load("[server]\nport = 1\n", &[], "local").unwrap_err();
        assert!(error.to_string().contains("tls.client_ca_file"), "{error}");
    }

    #[test]
    fn an_unknown_key_names_it() {
        let error = load(&format!("{MINIMAL}[limits]\nmax_stop = 7\n"), &[], "local").unwrap_err();
        assert!(error.to_string().contains("max_stop"), "{error}");
    }
}
