//! Typed settings, layered: `config/base.toml`, then `config/{environment}.toml`, then
//! environment variables `DISPATCH_<SECTION>__<KEY>` (for example `DISPATCH_TLS__CLIENT_AUTH`).
//! Everything is checked at start-up; a wrong value names its key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::StartupError;

// No `deny_unknown_fields` at the top: `DISPATCH_CONFIG_DIR` and `DISPATCH_ENV` share the prefix.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub server: ServerSettings,
    pub tls: TlsSettings,
    pub database: DatabaseSettings,
    #[serde(default)]
    pub bootstrap: BootstrapSettings,
    #[serde(default)]
    pub migration: MigrationSettings,
    #[serde(default)]
    pub limits: LimitSettings,
    #[serde(default)]
    pub telemetry: TelemetrySettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Address of the HTTPS listener.
    pub host: String,
    pub port: u16,
    /// Address of the plain-HTTP operations listener (/healthz, /readyz, /metrics).
    #[serde(default = "default_ops_host")]
    pub ops_host: String,
    #[serde(default)]
    pub ops_port: u16,
    /// Worker threads; the number of cores when unset.
    #[serde(default)]
    pub workers: Option<usize>,
    /// How long in-flight requests may take to finish after SIGTERM.
    #[serde(default = "default_grace")]
    pub shutdown_grace_secs: u64,
    /// Connections per worker thread; more wait in the accept queue.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A TLS handshake must complete within this (a silent or byte-at-a-time client is cut off).
    #[serde(default = "default_handshake_timeout")]
    pub tls_handshake_timeout_ms: u64,
    /// A request's head must arrive within this after the connection is ready.
    #[serde(default = "default_request_timeout")]
    pub client_request_timeout_ms: u64,
    /// Idle keep-alive connections are closed after this.
    #[serde(default = "default_keep_alive")]
    pub keep_alive_secs: u64,
}

fn default_max_connections() -> usize {
    10_000
}

fn default_handshake_timeout() -> u64 {
    3_000
}

fn default_request_timeout() -> u64 {
    5_000
}

fn default_keep_alive() -> u64 {
    5
}

fn default_ops_host() -> String {
    "127.0.0.1".into()
}

fn default_grace() -> u64 {
    10
}

/// Whether the listener asks for, or insists on, a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// Key clients and certificate clients side by side (the migration).
    Optional,
    /// Every connection must present a valid certificate (the end state).
    Required,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM: the server certificate, then any intermediates. Or use `pkcs12_file`.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM: the server's private key (PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// PKCS#12 (`.pfx`/`.p12`) holding the server key and chain, instead of the two PEM files.
    #[serde(default)]
    pub pkcs12_file: Option<PathBuf>,
    /// A file holding the PKCS#12 password (never the password itself in settings).
    #[serde(default)]
    pub pkcs12_password_file: Option<PathBuf>,
    /// PEM: the CAs whose client certificates may complete a handshake (one or several).
    pub client_ca_file: PathBuf,
    pub client_auth: ClientAuth,
    /// CRLs (PEM or DER) checked in the handshake.
    #[serde(default)]
    pub crl_files: Vec<PathBuf>,
    /// How often the files above are checked for changes (0: only on SIGHUP).
    #[serde(default = "default_reload_interval")]
    pub reload_interval_secs: u64,
    /// Certificates expiring within this many days are warned about, once a day.
    #[serde(default = "default_expiry_warning_days")]
    pub expiry_warning_days: u64,
    /// TLS session resumption (stateless tickets and a session cache; both renewed on any trust
    /// change).
    #[serde(default = "default_true")]
    pub session_resumption: bool,
}

fn default_true() -> bool {
    true
}

fn default_reload_interval() -> u64 {
    5
}

fn default_expiry_warning_days() -> u64 {
    14
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
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub path: PathBuf,
    #[serde(default = "default_busy_timeout")]
    pub busy_timeout_ms: u64,
    #[serde(default = "default_pool_size")]
    pub max_connections: u32,
    /// A cap on the database file's size: past it, writes fail (503) instead of filling the disk.
    #[serde(default)]
    pub max_size_bytes: Option<u64>,
    /// When a commit is on disk: `full` (default) fsyncs every commit, so an acknowledged plan
    /// survives a process crash AND a power loss; `normal` (WAL) survives a process crash, but
    /// the last commits before a power loss may be lost. Group commit amortises either.
    #[serde(default)]
    pub synchronous: Durability,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    #[default]
    Full,
    Normal,
}

fn default_busy_timeout() -> u64 {
    5_000
}

fn default_pool_size() -> u32 {
    4
}

impl DatabaseSettings {
    pub fn busy_timeout(&self) -> Duration {
        Duration::from_millis(self.busy_timeout_ms)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapSettings {
    /// Clients registered at start-up when absent; existing clients are never overwritten.
    pub clients_file: Option<PathBuf>,
    /// Where `api_key_sha256_file` entries of the clients file are looked up.
    pub secrets_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationSettings {
    /// A move to `mtls` needs a certificate-authenticated request within this window.
    pub evidence_window_secs: u64,
}

impl Default for MigrationSettings {
    fn default() -> Self {
        Self {
            evidence_window_secs: 24 * 3600,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    pub max_body_bytes: usize,
    /// All request header names and values together.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    pub max_stops: usize,
    /// Usage/audit records held in memory before new ones are dropped (and counted).
    pub record_queue: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 256 * 1024,
            max_header_bytes: default_max_header_bytes(),
            max_stops: 500,
            record_queue: 65_536,
        }
    }
}

fn default_max_header_bytes() -> usize {
    16 * 1024
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    #[serde(default)]
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `dispatch_api=debug,info`.
    #[serde(default = "default_filter")]
    pub filter: String,
}

fn default_filter() -> String {
    "info".into()
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            format: LogFormat::default(),
            filter: default_filter(),
        }
    }
}

impl Settings {
    /// Loads `base.toml` and `{environment}.toml` from `config_dir`, then `DISPATCH_*` variables.
    pub fn load(config_dir: &Path, environment: &str) -> Result<Self, StartupError> {
        let base = config_dir.join("base.toml");
        if !base.is_file() {
            return Err(StartupError::Settings(format!(
                "the settings file `{}` does not exist (set DISPATCH_CONFIG_DIR to the config directory)",
                base.display()
            )));
        }
        config::Config::builder()
            .add_source(config::File::from(base))
            .add_source(
                config::File::from(config_dir.join(format!("{environment}.toml"))).required(false),
            )
            .add_source(
                config::Environment::with_prefix("DISPATCH")
                    .prefix_separator("_")
                    .separator("__")
                    .try_parsing(true)
                    .list_separator(",")
                    .with_list_parse_key("tls.crl_files"),
            )
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(|e| StartupError::Settings(e.to_string()))
    }
}
