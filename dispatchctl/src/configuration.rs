//! dispatchctl settings: a TOML file (`--config`, or `dispatchctl.toml` in the working
//! directory when present), then `DISPATCHCTL_<SECTION>__<KEY>` environment variables, then
//! flags. Like route-worker: the server's URL and the CA are required; the operator's
//! certificate and key are files, never arguments holding secrets.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::CtlError;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub server: ServerSettings,
    pub tls: TlsSettings,
    pub check: CheckSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// dispatch-api's HTTPS base URL, e.g. `https://dispatch-api:8443`.
    pub url: String,
    /// The operations listener (plain HTTP, `/metrics`), e.g. `http://127.0.0.1:9090`; optional:
    /// `check` reads recorder drops and handshake failures there.
    pub ops_url: Option<String>,
    pub timeout_secs: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            url: String::new(),
            ops_url: None,
            timeout_secs: 10,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// The internal CA bundle: the only roots trusted for the server.
    pub ca_file: PathBuf,
    /// The operator's certificate and key (a client with the `admin` scope).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckSettings {
    /// Certificates expiring within this many days fail `check`.
    pub warning_days: u64,
}

impl Default for CheckSettings {
    fn default() -> Self {
        Self { warning_days: 14 }
    }
}

impl Settings {
    /// Loads `file` (or `./dispatchctl.toml` if present), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, CtlError> {
        let mut builder = config::Config::builder();
        match file {
            Some(path) => {
                builder = builder.add_source(config::File::from(path.to_owned()).required(true))
            }
            None => {
                builder = builder.add_source(config::File::with_name("dispatchctl").required(false))
            }
        }
        let settings: Settings = builder
            .add_source(
                config::Environment::with_prefix("DISPATCHCTL")
                    .prefix_separator("_")
                    .separator("__"),
            )
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| CtlError::Config(format!("settings: {e}")))?;
        Ok(settings)
    }

    /// Refuses settings that cannot work, naming the key.
    pub fn validate(&self) -> Result<(), CtlError> {
        if self.server.url.is_empty() {
            return Err(CtlError::Config(
                "server.url is not set (DISPATCHCTL_SERVER__URL or --url)".into(),
            ));
        }
        if !self.server.url.starts_with("https://") {
            return Err(CtlError::Config(format!(
                "server.url `{}` must be https://",
                self.server.url
            )));
        }
        if self.tls.ca_file.as_os_str().is_empty() {
            return Err(CtlError::Config(
                "tls.ca_file is not set (DISPATCHCTL_TLS__CA_FILE or --ca): the server is always verified"
                    .into(),
            ));
        }
        if self.tls.cert_file.is_none() || self.tls.key_file.is_none() {
            return Err(CtlError::Config(
                "tls.cert_file and tls.key_file must name the operator's certificate and key: \
                 the admin API takes no API key"
                    .into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Settings {
        Settings {
            server: ServerSettings {
                url: "https://dispatch:8443".into(),
                ..Default::default()
            },
            tls: TlsSettings {
                ca_file: "ca.pem".into(),
                cert_file: Some("op.pem".into()),
                key_file: Some("op.key".into()),
            },
            check: CheckSettings::default(),
        }
    }

    #[test]
    fn settings_without_url_ca_or_operator_certificate_are_refused_naming_the_key() {
        assert!(valid().validate().is_ok());
        type Change = fn(&mut Settings);
        let cases: [(Change, &str); 4] = [
            (|s| s.server.url.clear(), "server.url is not set"),
            (|s| s.server.url = "http://x".into(), "must be https://"),
            (|s| s.tls.ca_file = PathBuf::new(), "tls.ca_file is not set"),
            (|s| s.tls.key_file = None, "tls.cert_file and tls.key_file"),
        ];
        for (change, expected) in cases {
            let mut settings = valid();
            change(&mut settings);
            let error = settings.validate().unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
    }
}
