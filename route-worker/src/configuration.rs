//! route-worker settings: `config/route-worker.toml`, then `ROUTE_WORKER_<SECTION>__<KEY>`
//! environment variables. Secrets are read from files named here, never from arguments.

use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Deserialize;

use crate::error::WorkerError;

// No `deny_unknown_fields` at the top: `ROUTE_WORKER_CONFIG_DIR` shares the prefix.
#[derive(Debug, Clone, Deserialize)]
pub struct WorkerSettings {
    pub server: ServerSettings,
    pub tls: ClientTlsSettings,
    #[serde(default)]
    pub auth: AuthSettings,
    #[serde(default)]
    pub input: InputSettings,
    #[serde(default)]
    pub retry: RetrySettings,
    #[serde(default)]
    pub telemetry: TelemetrySettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Base URL of dispatch-api, e.g. `https://dispatch-api:8443`. Its host is the name the
    /// server certificate must carry.
    pub url: String,
    #[serde(default = "default_timeout")]
    pub request_timeout_secs: u64,
    /// How long an idle connection is kept for reuse. A renewed certificate is presented on the
    /// next new connection, so this also bounds how long the old one stays in use.
    #[serde(default = "default_keep_alive")]
    pub keep_alive_secs: u64,
}

fn default_keep_alive() -> u64 {
    15
}

fn default_timeout() -> u64 {
    10
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTlsSettings {
    /// The internal CA bundle: the ONLY roots trusted for the server (no system roots).
    pub ca_file: PathBuf,
    /// This worker's certificate chain (PEM); with `key_file`, presented to the server.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// PKCS#12 (`.pfx`/`.p12`) with this worker's key and chain, instead of the PEM files.
    #[serde(default)]
    pub pkcs12_file: Option<PathBuf>,
    /// A file holding the PKCS#12 password.
    #[serde(default)]
    pub pkcs12_password_file: Option<PathBuf>,
    /// How often the certificate files are checked for renewal (0: never).
    #[serde(default = "default_reload_interval")]
    pub reload_interval_secs: u64,
    /// Warn when this worker's certificate expires within this many days.
    #[serde(default = "default_expiry_warning_days")]
    pub expiry_warning_days: u64,
}

fn default_reload_interval() -> u64 {
    5
}

fn default_expiry_warning_days() -> u64 {
    14
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// A file holding the API key (sent as `X-Api-Key`, during `api_key` and `dual`).
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSettings {
    /// `run` watches this directory for `*.json` and `*.csv` stop files.
    pub dir: PathBuf,
    pub poll_interval_secs: u64,
    /// Plans are dated this many days from today.
    pub days_ahead: i64,
}

impl Default for InputSettings {
    fn default() -> Self {
        Self {
            dir: "data/inbox".into(),
            poll_interval_secs: 5,
            days_ahead: 1,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySettings {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            initial_backoff_ms: 250,
            max_backoff_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    #[serde(default)]
    pub json: bool,
    #[serde(default = "default_filter")]
    pub filter: String,
}

fn default_filter() -> String {
    "info".into()
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            json: false,
            filter: default_filter(),
        }
    }
}

impl WorkerSettings {
    pub fn load(config_dir: &Path) -> Result<Self, WorkerError> {
        let file = config_dir.join("route-worker.toml");
        let mut settings: Self = config::Config::builder()
            .add_source(config::File::from(file.clone()).required(false))
            .add_source(
                config::Environment::with_prefix("ROUTE_WORKER")
                    .prefix_separator("_")
                    .separator("__")
                    .try_parsing(true),
            )
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(|e| {
                WorkerError::Config(format!(
                    "settings (`{}` and ROUTE_WORKER_* variables): {e}",
                    file.display()
                ))
            })?;
        // An empty path (`ROUTE_WORKER_TLS__CERT_FILE=` in a compose file) means "not set".
        for path in [
            &mut settings.tls.cert_file,
            &mut settings.tls.key_file,
            &mut settings.tls.pkcs12_file,
            &mut settings.tls.pkcs12_password_file,
            &mut settings.auth.api_key_file,
        ] {
            if path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                *path = None;
            }
        }
        Ok(settings)
    }

    /// Reads the API key file, if configured.
    pub fn api_key(&self) -> Result<Option<SecretString>, WorkerError> {
        let Some(path) = &self.auth.api_key_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            WorkerError::Config(format!(
                "cannot read the API key file `{}`: {e}",
                path.display()
            ))
        })?;
        let key = text.trim();
        if key.is_empty() {
            return Err(WorkerError::Config(format!(
                "the API key file `{}` is empty",
                path.display()
            )));
        }
        Ok(Some(SecretString::from(key.to_owned())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_paths_from_the_environment_mean_unset() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("route-worker.toml"),
            "[server]\nurl = 'https://localhost:1'\n[tls]\nca_file = 'ca.pem'\ncert_file = ''\nkey_file = ''\n[auth]\napi_key_file = ''\n",
        )
        .unwrap();
        let settings = WorkerSettings::load(dir.path()).unwrap();
        assert!(settings.tls.cert_file.is_none() && settings.tls.key_file.is_none());
        assert!(settings.auth.api_key_file.is_none());
    }

    #[test]
    fn the_api_key_is_never_shown_by_debug() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("key"), "dk_supersecretvalue\n").unwrap();
        std::fs::write(
            dir.path().join("route-worker.toml"),
            format!("[server]\nurl = 'https://localhost:1'\n[tls]\nca_file = 'ca.pem'\n[auth]\napi_key_file = '{}'\n", dir.path().join("key").display()),
        )
        .unwrap();
        let settings = WorkerSettings::load(dir.path()).unwrap();
        let key = settings.api_key().unwrap().unwrap();
        assert!(!format!("{settings:?} {key:?}").contains("supersecret"));
    }
}
