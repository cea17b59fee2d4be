//! route-worker settings: `config/route-worker.toml`, then `ROUTE_WORKER_<SECTION>__<KEY>`
//! environment variables. Secrets are read from files named here, never from arguments.
//!
//! Every default is in the section's `Default` impl, and every section is `#[serde(default)]`:
//! a partial section keeps the defaults of the keys it leaves out. `server.url` and
//! `tls.ca_file` have no default; [`WorkerSettings::load`] refuses to start without them.

use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Deserialize;

use crate::error::WorkerError;

// No `deny_unknown_fields` at the top: `ROUTE_WORKER_CONFIG_DIR` shares the prefix.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct WorkerSettings {
    pub server: ServerSettings,
    pub tls: ClientTlsSettings,
    pub auth: AuthSettings,
    pub input: InputSettings,
    pub retry: RetrySettings,
    pub telemetry: TelemetrySettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Base URL of dispatch-api, e.g. `https://dispatch-api:8443`. Its host is the name the
    /// server certificate must carry. Required: empty means "not set", refused by `load`.
    pub url: String,
    pub request_timeout_secs: u64,
    /// How long an idle connection is kept for reuse. A renewed certificate is presented on the
    /// next new connection, so this also bounds how long the old one stays in use.
    pub keep_alive_secs: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            url: String::new(),
            request_timeout_secs: 10,
            keep_alive_secs: 15,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientTlsSettings {
    /// The internal CA bundle: the ONLY roots trusted for the server (no system roots).
    /// Required: empty means "not set", refused by `load`.
    pub ca_file: PathBuf,
    /// This worker's certificate chain (PEM); with `key_file`, presented to the server.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// PKCS#12 (`.pfx`/`.p12`) with this worker's key and chain, instead of the PEM files.
    pub pkcs12_file: Option<PathBuf>,
    /// A file holding the PKCS#12 password.
    pub pkcs12_password_file: Option<PathBuf>,
    /// How often the certificate files are checked for renewal (0: never).
    pub reload_interval_secs: u64,
    /// Warn when this worker's certificate expires within this many days.
    pub expiry_warning_days: u64,
    /// Get and renew this worker's certificate over ACME instead of reading `cert_file`.
    pub acme: Option<AcmeSettings>,
}

/// `[tls.acme]`: the worker's certificate from an ACME CA (RFC 8555: step-ca, Vault PKI,
/// cert-manager's issuers; pebble in tests), obtained at start unless a stored one is still
/// good, and renewed before it expires.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AcmeSettings {
    /// The ACME server's directory, e.g. `https://step-ca:9000/acme/acme/directory`.
    pub directory_url: String,
    /// The root the ACME server's own TLS certificate chains to: the only one trusted for it.
    pub ca_file: PathBuf,
    /// The names to ask for (dNSName SANs); dispatch-api binds the worker by one of them.
    pub dns_names: Vec<String>,
    /// Where this worker answers http-01 challenges itself: the CA connects to port 80 of each
    /// name, so this is where that port leads.
    pub http01_listen: String,
    /// The account key, and the certificate with its key (`identity.pem`), written atomically,
    /// readable by this user only.
    pub state_dir: PathBuf,
    /// Renew when this many seconds of the certificate are left (less a random tenth, so that
    /// replicas do not all renew at once); 0: when a third of its lifetime is left.
    pub renew_before_secs: u64,
}

impl Default for AcmeSettings {
    fn default() -> Self {
        Self {
            directory_url: String::new(),
            ca_file: PathBuf::new(),
            dns_names: Vec::new(),
            http01_listen: "0.0.0.0:80".into(),
            state_dir: PathBuf::new(),
            renew_before_secs: 0,
        }
    }
}

impl AcmeSettings {
    /// The file holding the certificate chain and its key, one file so that a renewal replaces
    /// both at once.
    pub fn identity_file(&self) -> PathBuf {
        self.state_dir.join("identity.pem")
    }

    /// Refuses what cannot work, naming the key.
    fn check(&self) -> Result<(), String> {
        let missing = [
            ("directory_url", self.directory_url.is_empty()),
            ("ca_file", self.ca_file.as_os_str().is_empty()),
            ("dns_names", self.dns_names.is_empty()),
            ("state_dir", self.state_dir.as_os_str().is_empty()),
            ("http01_listen", self.http01_listen.is_empty()),
        ];
        if let Some((key, _)) = missing.iter().find(|(_, missing)| *missing) {
            return Err(format!("tls.acme.{key} is required with [tls.acme]"));
        }
        if !self.directory_url.starts_with("https://") {
            return Err(
                "tls.acme.directory_url must be https://: the ACME server is authenticated by TLS"
                    .into(),
            );
        }
        if let Some(name) = self
            .dns_names
            .iter()
            .find(|n| n.contains('*') || n.trim().is_empty())
        {
            return Err(format!(
                "tls.acme.dns_names: `{name}` is not a name this worker can prove over http-01 (no wildcards)"
            ));
        }
        Ok(())
    }
}

impl Default for ClientTlsSettings {
    fn default() -> Self {
        Self {
            ca_file: PathBuf::new(),
            cert_file: None,
            key_file: None,
            pkcs12_file: None,
            pkcs12_password_file: None,
            reload_interval_secs: 5,
            expiry_warning_days: 14,
            acme: None,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// A file holding the API key (sent as `X-Api-Key`, during `api_key` and `dual`).
    pub api_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
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
#[serde(default, deny_unknown_fields)]
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

/// How log lines are written to stderr: `pretty` (for people) or `json` (one object a line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `route_worker=debug,info`.
    pub filter: String,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            format: LogFormat::default(),
            filter: "info".into(),
        }
    }
}

impl WorkerSettings {
    pub fn load(config_dir: &Path) -> Result<Self, WorkerError> {
        Self::load_with_env(config_dir, None)
    }

    /// [`Self::load`] with `env` in place of the process environment (`None`: the real one).
    fn load_with_env(
        config_dir: &Path,
        env: Option<config::Map<String, String>>,
    ) -> Result<Self, WorkerError> {
        let file = config_dir.join("route-worker.toml");
        let mut settings: Self = config::Config::builder()
            .add_source(config::File::from(file.clone()).required(false))
            .add_source(
                config::Environment::with_prefix("ROUTE_WORKER")
                    .prefix_separator("_")
                    .separator("__")
                    .try_parsing(true)
                    .list_separator(",")
                    .with_list_parse_key("tls.acme.dns_names")
                    .source(env),
            )
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(|e| {
                WorkerError::Config(format!(
                    "settings (`{}` and ROUTE_WORKER_* variables): {e}",
                    file.display()
                ))
            })?;
        // The settings without a default: refused here, by name, rather than failing later.
        if settings.server.url.is_empty() {
            return Err(WorkerError::Config(format!(
                "server.url is required: the base URL of dispatch-api, e.g. `https://dispatch-api:8443` \
                 (set it in `{}` or ROUTE_WORKER_SERVER__URL)",
                file.display()
            )));
        }
        if settings.tls.ca_file.as_os_str().is_empty() {
            return Err(WorkerError::Config(format!(
                "tls.ca_file is required: the internal CA bundle that issued dispatch-api's certificate \
                 (set it in `{}` or ROUTE_WORKER_TLS__CA_FILE)",
                file.display()
            )));
        }
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
        if let Some(acme) = &settings.tls.acme {
            acme.check().map_err(WorkerError::Config)?;
            if settings.tls.cert_file.is_some() || settings.tls.pkcs12_file.is_some() {
                return Err(WorkerError::Config(
                    "[tls.acme] gets this worker's certificate: leave tls.cert_file and tls.pkcs12_file unset".into(),
                ));
            }
            // The identity is ACME's file, reloaded when a renewal replaces it. Expiry is
            // ACME's to warn about: it renews long before a day is left, and says so when it
            // cannot.
            if settings.tls.reload_interval_secs == 0 {
                return Err(WorkerError::Config(
                    "[tls.acme] renews the certificate file: tls.reload_interval_secs must not be 0, or renewals are never presented".into(),
                ));
            }
            settings.tls.cert_file = Some(acme.identity_file());
            settings.tls.key_file = Some(acme.identity_file());
            settings.tls.expiry_warning_days = 0;
        }
        Ok(settings)
    }

    /// Reads the API key file, if configured.
    pub fn api_key(&self) -> Result<Option<SecretString>, WorkerError> {
        self.auth
            .api_key_file
            .as_deref()
            .map(read_api_key)
            .transpose()
    }

    /// The API key file, if configured, read now and re-read whenever it changes.
    pub fn api_key_file(&self) -> Result<Option<ApiKeyFile>, WorkerError> {
        self.auth
            .api_key_file
            .as_deref()
            .map(ApiKeyFile::open)
            .transpose()
    }
}

fn read_api_key(path: &Path) -> Result<SecretString, WorkerError> {
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
    Ok(SecretString::from(key.to_owned()))
}

/// What identifies one version of a file: its modification time and length.
type Version = Option<(std::time::SystemTime, u64)>;

fn version(path: &Path) -> Version {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}

/// The API key file, followed: a rotation is "rotate with an overlap, replace the secret file"
/// and the next request sends the new key, with no restart (a Kubernetes Secret replaced in
/// place, a file rewritten by a secrets agent). A file that cannot be read, or is empty, keeps
/// the key in use and says so once per version of the file.
pub struct ApiKeyFile {
    path: PathBuf,
    state: std::sync::Mutex<(Version, SecretString)>,
}

impl ApiKeyFile {
    pub fn open(path: &Path) -> Result<Self, WorkerError> {
        let seen = version(path);
        let key = read_api_key(path)?;
        Ok(Self {
            path: path.to_owned(),
            state: std::sync::Mutex::new((seen, key)),
        })
    }

    /// The key to send now: the file's, re-read if it changed since it was last read.
    pub fn current(&self) -> SecretString {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = version(&self.path);
        if now != state.0 {
            state.0 = now;
            match read_api_key(&self.path) {
                Ok(key) => {
                    state.1 = key;
                    tracing::info!(file = %self.path.display(), "API key file changed: the new key is sent from now on");
                }
                Err(error) => tracing::warn!(%error, "keeping the API key in use"),
            }
        }
        state.1.clone()
    }
}

#[cfg(test)]
mod tests;
