//! The checked-in clients file: registers clients that are absent at start-up and never touches
//! one that exists, so a restart cannot undo an operator's flip.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::identity::IssuerIndex;

use super::{
    ApiKey, ApiKeyHash, CertBinding, CertBindingSpec, Client, ClientName, MigrationMode, Registry,
    RegistryError, Scope,
};

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("cannot read `{}`", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{}` is not a valid clients file: {detail}", path.display())]
    Parse { path: PathBuf, detail: String },
    #[error("`{}`, client `{client}`: {detail}", path.display())]
    Client {
        path: PathBuf,
        client: String,
        detail: String,
    },
    #[error("registering clients failed")]
    Registry(#[from] RegistryError),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapFile {
    #[serde(default)]
    pub clients: Vec<BootstrapClient>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapClient {
    pub name: ClientName,
    pub mode: MigrationMode,
    #[serde(default)]
    pub scopes: BTreeSet<Scope>,
    #[serde(default)]
    pub bindings: Vec<CertBindingSpec>,
    /// The key's SHA-256 in hex (never the key itself).
    pub api_key_sha256: Option<String>,
    /// Or a file holding it, relative to `bootstrap.secrets_dir`.
    pub api_key_sha256_file: Option<PathBuf>,
}

impl BootstrapFile {
    pub fn read(path: &Path) -> Result<Self, BootstrapError> {
        let text = std::fs::read_to_string(path).map_err(|source| BootstrapError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| BootstrapError::Parse {
            path: path.to_owned(),
            detail: e.to_string(),
        })
    }

    /// Registers every absent client; returns the names added.
    pub async fn apply(
        &self,
        path: &Path,
        secrets_dir: Option<&Path>,
        registry: &Registry,
        issuers: &IssuerIndex,
    ) -> Result<Vec<ClientName>, BootstrapError> {
        let snapshot = registry.snapshot();
        let mut absent = Vec::new();
        for entry in &self.clients {
            let Some(stored) = snapshot.client(&entry.name) else {
                absent.push(entry.to_client(path, secrets_dir)?);
                continue;
            };
            // An entry of a registered client is only compared: an unreadable one (a secrets
            // file since removed, say) does not stop the start.
            match entry.to_client(path, secrets_dir) {
                Err(error) => tracing::warn!(
                    error = %error,
                    "cannot compare the clients file with the registered client"
                ),
                Ok(wanted) => {
                    let fields = differing_fields(stored, &wanted);
                    if !fields.is_empty() {
                        tracing::warn!(
                            file = %path.display(),
                            client = %entry.name,
                            fields = fields.join(", "),
                            "the clients file differs from the registered client; the file is \
                             not applied to existing clients: change them through the admin API"
                        );
                    }
                }
            }
        }
        drop(snapshot);
        registry.register_all(&absent, None, issuers).await?;
        let added: Vec<ClientName> = absent.into_iter().map(|c| c.name).collect();
        if !added.is_empty() {
            tracing::info!(
                clients = added.len(),
                "registered clients from the bootstrap file"
            );
        }
        Ok(added)
    }
}

/// The fields in which a clients-file entry differs from the stored client. The migration mode
/// and the disabled switch are left out: the operator changes them through the admin API on
/// purpose, so the file's first value is expected to be stale.
pub fn differing_fields(stored: &Client, file: &Client) -> Vec<&'static str> {
    let mut fields = Vec::new();
    if stored.scopes != file.scopes {
        fields.push("scopes");
    }
    if stored.bindings != file.bindings {
        fields.push("bindings");
    }
    if stored.current_key().map(|key| key.hash) != file.current_key().map(|key| key.hash) {
        fields.push("api_key_sha256");
    }
    fields
}

impl BootstrapClient {
    fn to_client(&self, path: &Path, secrets_dir: Option<&Path>) -> Result<Client, BootstrapError> {
        let fail = |detail: String| BootstrapError::Client {
            path: path.to_owned(),
            client: self.name.to_string(),
            detail,
        };
        let bindings = self
            .bindings
            .iter()
            .map(CertBinding::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(fail)?;
        let hash_text = match (&self.api_key_sha256, &self.api_key_sha256_file) {
            (Some(_), Some(_)) => {
                return Err(fail(
                    "set api_key_sha256 or api_key_sha256_file, not both".into(),
                ));
            }
            (Some(hash), None) => Some(hash.clone()),
            (None, Some(file)) => {
                let file = secrets_dir
                    .map(|dir| dir.join(file))
                    .unwrap_or_else(|| file.clone());
                let text = std::fs::read_to_string(&file).map_err(|e| {
                    fail(format!(
                        "cannot read api_key_sha256_file `{}`: {e}",
                        file.display()
                    ))
                })?;
                Some(text)
            }
            (None, None) => None,
        };
        let api_key = hash_text
            .map(|text| ApiKeyHash::parse_hex(text.trim()))
            .transpose()
            .map_err(fail)?;
        Ok(Client {
            name: self.name.clone(),
            mode: self.mode,
            scopes: self.scopes.clone(),
            disabled: false,
            bindings,
            api_keys: api_key
                .map(|hash| {
                    vec![ApiKey::new(
                        hash,
                        time::OffsetDateTime::now_utc().unix_timestamp(),
                    )]
                })
                .unwrap_or_default(),
        })
    }
}
