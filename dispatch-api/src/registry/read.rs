//! Loading the registry's tables into a [`RegistrySnapshot`].
//!
//! The rows become clients in an [`Assembly`], whichever driver reads them: sqlx for one
//! client and for PostgreSQL, and, for the whole registry on SQLite, a connection of its own
//! (`read/sqlite.rs`), which reads a million clients in a fraction of the time sqlx's worker
//! thread takes to hand over three million rows one by one.

mod sqlite;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock};

use futures_util::TryStreamExt as _;
use sqlx::Row;

use super::compact::NamePositions;
use super::{
    ApiKey, ApiKeyHash, CertBinding, CertBindingSpec, Client, ClientName, Kind, MigrationMode,
    RegistrySnapshot, Scope,
};
use crate::identity::{DistinguishedName, Fingerprint, SpkiHash};
use crate::storage::{Backend, Db, StorageError, on_backend};

const CLIENTS: &str = "SELECT name, mode, scopes, disabled FROM clients";
const CLIENT: &str = "SELECT name, mode, scopes, disabled FROM clients WHERE name = $1";
// A binding's names, one column per kind, after the columns every binding has.
static BINDINGS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT client, issuer, issuer_spki_sha256, fingerprints, {} FROM cert_bindings ORDER BY id",
        Kind::columns()
    )
});
static BINDINGS_OF: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT client, issuer, issuer_spki_sha256, fingerprints, {} FROM cert_bindings \
         WHERE client = $1 ORDER BY id",
        Kind::columns()
    )
});
// The current key first, then the replaced ones, the latest replaced first: as
// `Client::api_keys` holds them.
const KEYS: &str = "SELECT client, key_sha256, created_at, expires_at, replaced_at FROM api_keys \
     ORDER BY replaced_at IS NOT NULL, replaced_at DESC, created_at DESC, key_sha256";
const KEYS_OF: &str = "SELECT client, key_sha256, created_at, expires_at, replaced_at \
     FROM api_keys WHERE client = $1 \
     ORDER BY replaced_at IS NOT NULL, replaced_at DESC, created_at DESC, key_sha256";
const REVOKED: &str = "SELECT fingerprint FROM revoked_certificates";
const DENIED_KEYS: &str = "SELECT spki_sha256 FROM denied_keys";

/// Reads every table into a fresh snapshot. Rows that no longer parse (edited by hand, say) are
/// skipped with an error in the log rather than taking the service down.
pub(super) async fn read_snapshot(pool: &Db) -> Result<RegistrySnapshot, StorageError> {
    let file = match pool {
        Backend::Sqlite(sqlite) => sqlite::file_of(sqlite),
        Backend::Postgres(_) => None,
    };
    let (clients, revoked) = match file {
        Some(path) => sqlite::read_all(path).await?,
        // PostgreSQL, or SQLite in memory (some tests): no file for a second connection.
        None => {
            let clients = read_clients(pool, None)
                .await
                .map_err(StorageError::database)?;
            (
                clients,
                read_revoked(pool).await.map_err(StorageError::database)?,
            )
        }
    };
    // A few rows at most (keys denied as stolen): through sqlx whichever driver read the rest.
    let denied: Vec<String> = on_backend!(pool, pool => {
        sqlx::query_scalar(DENIED_KEYS).fetch_all(pool).await
    })
    .map_err(StorageError::database)?;
    Ok(RegistrySnapshot::new(clients, revoked)
        .with_denied_keys(denied.iter().filter_map(|text| SpkiHash::parse(text).ok())))
}

/// The deny list.
async fn read_revoked(pool: &Db) -> Result<HashSet<Fingerprint>, sqlx::Error> {
    let texts: Vec<String> = on_backend!(pool, pool => {
        sqlx::query_scalar(REVOKED).fetch_all(pool).await?
    });
    Ok(revoked(texts.iter().map(String::as_str)))
}

fn revoked<'a>(texts: impl Iterator<Item = &'a str>) -> HashSet<Fingerprint> {
    texts
        .filter_map(|text| Fingerprint::parse(text).ok())
        .collect()
}

/// The client named `name` as stored, if it is (and parses).
pub(super) async fn read_client(
    pool: &Db,
    name: &ClientName,
) -> Result<Option<Client>, sqlx::Error> {
    Ok(read_clients(pool, Some(name)).await?.pop())
}

/// Every client, or only the one named `only`, with its bindings and keys, read through sqlx
/// as streams, one row at a time.
async fn read_clients(pool: &Db, only: Option<&ClientName>) -> Result<Vec<Client>, sqlx::Error> {
    // Two forms of each query rather than `$1 IS NULL OR client = $1`, which SQLite cannot
    // answer from the index: one client is read by its key, not by a scan of a million.
    let only = only.map(ClientName::as_str);
    on_backend!(pool, pool => {
        let select = |all: &'static str, one: &'static str| match only {
            Some(name) => sqlx::query(one).bind(name),
            None => sqlx::query(all),
        };
        let mut assembly = Assembly::default();
        let mut rows = select(CLIENTS, CLIENT).fetch(pool);
        while let Some(row) = rows.try_next().await? {
            assembly.client(
                row.try_get("name")?,
                row.try_get("mode")?,
                row.try_get("scopes")?,
                row.try_get("disabled").unwrap_or(true),
            );
        }
        drop(rows);
        assembly.index();
        let mut rows = select(&BINDINGS, &BINDINGS_OF).fetch(pool);
        while let Some(row) = rows.try_next().await? {
            let fingerprints: &str = row.try_get("fingerprints")?;
            let mut spec = CertBindingSpec {
                issuer: row.try_get("issuer")?,
                issuer_spki_sha256: row.try_get("issuer_spki_sha256")?,
                fingerprints: fingerprints.split_whitespace().map(str::to_owned).collect(),
                ..CertBindingSpec::default()
            };
            for kind in Kind::ALL {
                *kind.in_spec_mut(&mut spec) = row.try_get(kind.field())?;
            }
            assembly.binding(row.try_get("client")?, spec);
        }
        drop(rows);
        let mut rows = select(KEYS, KEYS_OF).fetch(pool);
        while let Some(row) = rows.try_next().await? {
            assembly.key(
                row.try_get("client")?,
                row.try_get("key_sha256")?,
                row.try_get("created_at")?,
                row.try_get("expires_at")?,
                row.try_get("replaced_at")?,
            );
        }
        Ok(assembly.finish())
    })
}

/// Clients made from their rows: the clients' own first, then their bindings and keys.
///
/// Each binding and key row goes straight onto its client, found through a table of
/// positions (4 bytes a client), so nothing but the clients themselves is held: at a million
/// clients, maps of rows by client name cost as much as the registry. Each client's lists
/// are allocated to fit: a `Vec` grows to four at its first push, and four bindings and four
/// keys for the usual one of each waste about 770 bytes a client.
/// Each distinct issuer name is parsed once and shared by every binding that names it.
#[derive(Default)]
struct Assembly {
    clients: Vec<Client>,
    /// Positions in `clients` by name; filled once every client is read.
    positions: NamePositions,
    issuers: HashMap<String, Arc<DistinguishedName>>,
}

impl Assembly {
    fn client(&mut self, name: &str, mode: &str, scopes: &str, disabled: bool) {
        let parsed = ClientName::parse(name).and_then(|client_name| {
            Ok(Client {
                mode: MigrationMode::parse(mode)?,
                scopes: scopes
                    .split_whitespace()
                    .map(Scope::parse)
                    .collect::<Result<_, _>>()?,
                disabled,
                bindings: Vec::new(),
                api_keys: Vec::new(),
                name: client_name,
            })
        });
        match parsed {
            Ok(client) => self.clients.push(client),
            Err(error) => tracing::error!(
                client = name,
                error,
                "skipping a stored client that does not parse"
            ),
        }
    }

    /// Between the clients and their bindings: files each client's position by its name.
    fn index(&mut self) {
        self.positions = NamePositions::of(&self.clients);
    }

    /// The client named `name`; none for a row of a client that did not parse, which goes with it.
    fn named(&mut self, name: &str) -> Option<&mut Client> {
        let at = self.positions.find(&self.clients, name)?;
        Some(&mut self.clients[at])
    }

    fn binding(&mut self, client: &str, spec: CertBindingSpec) {
        let issuers = &mut self.issuers;
        let parsed = CertBinding::parse_with(&spec, |text| {
            if let Some(issuer) = issuers.get(text) {
                return Ok(issuer.clone());
            }
            let issuer = Arc::new(DistinguishedName::parse(text)?);
            issuers.insert(text.to_owned(), issuer.clone());
            Ok(issuer)
        });
        match parsed {
            Ok(binding) => {
                if let Some(named) = self.named(client) {
                    push_fitted(&mut named.bindings, binding);
                }
            }
            Err(error) => tracing::error!(
                client,
                error,
                "skipping a stored certificate binding that does not parse"
            ),
        }
    }

    fn key(
        &mut self,
        client: &str,
        hash: &str,
        created_at: i64,
        expires_at: Option<i64>,
        replaced_at: Option<i64>,
    ) {
        match ApiKeyHash::parse_hex(hash) {
            Ok(hash) => {
                if let Some(named) = self.named(client) {
                    push_fitted(
                        &mut named.api_keys,
                        ApiKey {
                            hash,
                            created_at,
                            expires_at,
                            replaced_at,
                        },
                    );
                }
            }
            Err(error) => tracing::error!(
                client,
                error,
                "skipping a stored API key hash that does not parse"
            ),
        }
    }

    fn finish(mut self) -> Vec<Client> {
        for client in &mut self.clients {
            // Only the few with more than two of either were grown past their length.
            client.bindings.shrink_to_fit();
            client.api_keys.shrink_to_fit();
        }
        self.clients
    }
}

/// Pushes `item` onto `list`, growing it by one for the first two (as most clients have) and
/// by doubling after that, so a client with many bindings or keys is read in linear time.
/// `Assembly::finish` trims what doubling left over.
fn push_fitted<T>(list: &mut Vec<T>, item: T) {
    if list.len() < 2 {
        list.reserve_exact(1);
    }
    list.push(item);
}
