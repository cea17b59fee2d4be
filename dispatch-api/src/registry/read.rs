//! Loading the registry's tables into a [`RegistrySnapshot`].
//!
//! The rows become clients in an `Assembly` (`read/rows.rs`), whichever driver reads them: sqlx
//! for one client and for PostgreSQL (here), and, for the whole registry on SQLite, a
//! connection of its own (`read/sqlite.rs`), which reads a million clients in a fraction of the
//! time sqlx's worker thread takes to hand over three million rows one by one.

mod rows;
mod sqlite;

use std::collections::HashSet;

use futures_util::TryStreamExt as _;
use sqlx::Row;

use rows::{
    Assembly, BINDINGS, BINDINGS_OF, CLIENT, CLIENTS, KEYS, KEYS_OF, REVOKED, binding_spec, revoked,
};

use super::{Client, ClientName, RegistrySnapshot};
use crate::identity::{Fingerprint, SpkiHash};
use crate::storage::{Backend, Db, StorageError, on_backend};

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
            let spec = binding_spec(
                row.try_get("issuer")?,
                row.try_get("issuer_spki_sha256")?,
                row.try_get("fingerprints")?,
                |column| row.try_get(column),
            )?;
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
