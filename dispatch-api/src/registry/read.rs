//! Loading the registry's tables into a [`RegistrySnapshot`].

use std::collections::{HashMap, HashSet};

use futures_util::TryStreamExt as _;
use sqlx::Row;

use super::{
    ApiKey, ApiKeyHash, CertBinding, CertBindingSpec, Client, ClientName, MigrationMode,
    RegistrySnapshot, Scope,
};
use crate::identity::Fingerprint;
use crate::storage::{Db, on_backend};

/// Reads every table into a fresh snapshot. Rows that no longer parse (edited by hand, say) are
/// skipped with an error in the log rather than taking the service down.
pub(super) async fn read_snapshot(pool: &Db) -> Result<RegistrySnapshot, sqlx::Error> {
    let clients = read_clients(pool, None).await?;
    let revoked = read_revoked(pool).await?;
    Ok(RegistrySnapshot::new(clients, revoked))
}

/// The deny list.
async fn read_revoked(pool: &Db) -> Result<HashSet<Fingerprint>, sqlx::Error> {
    let texts: Vec<String> = on_backend!(pool, pool => {
        sqlx::query_scalar("SELECT fingerprint FROM revoked_certificates")
            .fetch_all(pool)
            .await?
    });
    Ok(texts
        .iter()
        .filter_map(|text| Fingerprint::parse(text).ok())
        .collect())
}

/// The client named `name` as stored, if it is (and parses).
pub(super) async fn read_client(
    pool: &Db,
    name: &ClientName,
) -> Result<Option<Client>, sqlx::Error> {
    Ok(read_clients(pool, Some(name)).await?.pop())
}

/// Every client, or only the one named `only`, with its bindings and key. Rows are read as a
/// stream, one at a time: whole tables in memory at once (`fetch_all`) set start-up's peak
/// memory at a million clients.
async fn read_clients(pool: &Db, only: Option<&ClientName>) -> Result<Vec<Client>, sqlx::Error> {
    // Two forms of each query rather than `$1 IS NULL OR client = $1`, which SQLite cannot
    // answer from the index: one client is read by its key, not by a scan of a million.
    let only = only.map(ClientName::as_str);
    on_backend!(pool, pool => {
        let select = |all: &'static str, one: &'static str| match only {
            Some(name) => sqlx::query(one).bind(name),
            None => sqlx::query(all),
        };
        let mut bindings: HashMap<String, Vec<CertBinding>> = HashMap::new();
        let mut rows = select(
            "SELECT client, issuer, issuer_spki_sha256, subject_cn, spiffe_id, fingerprints FROM cert_bindings ORDER BY id",
            "SELECT client, issuer, issuer_spki_sha256, subject_cn, spiffe_id, fingerprints FROM cert_bindings WHERE client = $1 ORDER BY id",
        )
        .fetch(pool);
        while let Some(row) = rows.try_next().await? {
            let client: String = row.try_get("client")?;
            let fingerprints: String = row.try_get("fingerprints")?;
            let spec = CertBindingSpec {
                issuer: row.try_get("issuer")?,
                issuer_spki_sha256: row.try_get("issuer_spki_sha256")?,
                subject_cn: row.try_get("subject_cn")?,
                spiffe_id: row.try_get("spiffe_id")?,
                fingerprints: fingerprints.split_whitespace().map(str::to_owned).collect(),
            };
            match CertBinding::parse(&spec) {
                Ok(binding) => bindings.entry(client).or_default().push(binding),
                Err(error) => tracing::error!(
                    client,
                    error,
                    "skipping a stored certificate binding that does not parse"
                ),
            }
        }
        // The current key first, then the replaced ones, the latest replaced first: as
        // `Client::api_keys` holds them.
        let mut keys: HashMap<String, Vec<ApiKey>> = HashMap::new();
        let mut rows = select(
            "SELECT client, key_sha256, created_at, expires_at, replaced_at FROM api_keys \
             ORDER BY replaced_at IS NOT NULL, replaced_at DESC, created_at DESC, key_sha256",
            "SELECT client, key_sha256, created_at, expires_at, replaced_at FROM api_keys \
             WHERE client = $1 \
             ORDER BY replaced_at IS NOT NULL, replaced_at DESC, created_at DESC, key_sha256",
        )
        .fetch(pool);
        while let Some(row) = rows.try_next().await? {
            let client: String = row.try_get("client")?;
            let hash: String = row.try_get("key_sha256")?;
            match ApiKeyHash::parse_hex(&hash) {
                Ok(hash) => {
                    keys.entry(client).or_default().push(ApiKey {
                        hash,
                        created_at: row.try_get("created_at")?,
                        expires_at: row.try_get("expires_at")?,
                        replaced_at: row.try_get("replaced_at")?,
                    });
                }
                Err(error) => tracing::error!(
                    client,
                    error,
                    "skipping a stored API key hash that does not parse"
                ),
            }
        }
        let mut clients = Vec::new();
        let mut rows = select(
            "SELECT name, mode, scopes, disabled FROM clients",
            "SELECT name, mode, scopes, disabled FROM clients WHERE name = $1",
        )
        .fetch(pool);
        while let Some(row) = rows.try_next().await? {
            let name: String = row.try_get("name")?;
            let mode: String = row.try_get("mode")?;
            let scopes: String = row.try_get("scopes")?;
            let parsed = ClientName::parse(&name).and_then(|client_name| {
                Ok(Client {
                    mode: MigrationMode::parse(&mode)?,
                    scopes: scopes
                        .split_whitespace()
                        .map(Scope::parse)
                        .collect::<Result<_, _>>()?,
                    disabled: row.try_get("disabled").unwrap_or(true),
                    bindings: bindings.remove(&name).unwrap_or_default(),
                    api_keys: keys.remove(&name).unwrap_or_default(),
                    name: client_name,
                })
            });
            match parsed {
                Ok(client) => clients.push(client),
                Err(error) => tracing::error!(
                    client = name,
                    error,
                    "skipping a stored client that does not parse"
                ),
            }
        }
        Ok(clients)
    })
}
