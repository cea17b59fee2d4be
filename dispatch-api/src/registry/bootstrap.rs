//! The checked-in clients file: registers clients that are absent at start-up and never touches
//! one that exists, so a restart cannot undo an operator's flip.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::identity::IssuerIndex;

use super::{
    ApiKeyHash, CertBinding, CertBindingSpec, Client, ClientName, MigrationMode, Registry,
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
        let absent = self
            .clients
            .iter()
            .filter(|entry| snapshot.client(&entry.name).is_none())
            .map(|entry| entry.to_client(path, secrets_dir))
            .collect::<Result<Vec<_>, _>>()?;
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
            api_key,
        })
    }
}
