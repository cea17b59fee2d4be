//! What every registry write shares: the row lock taken first, the rows of a binding, and the
//! announcement to the other replicas, all inside the write's own transaction.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use super::notice::Notice;
use super::{CertBinding, ClientName, Kind, Scope};
use crate::identity::Fingerprint;
use crate::storage::{Backend, Tx, on_backend};

/// Locks the client's row for the rest of the transaction, before anything of it is replaced.
/// On PostgreSQL, two replicas changing one client at once then take turns: the second one's
/// DELETE runs after the first committed and sees its rows, so the result is one change or the
/// other, never the union of two binding sets or two keys. (SQLite has one writer per file.)
pub(super) async fn lock_client_row(tx: &mut Tx, name: &ClientName) -> Result<(), sqlx::Error> {
    if let Backend::Postgres(tx) = tx {
        sqlx::query("SELECT name FROM clients WHERE name = $1 FOR UPDATE")
            .bind(name.as_str())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// An arbitrary key of the advisory lock every replica's checked registry writes take (see
/// `Registry::begin_checked_write`): "dispatch" in ASCII, so an operator reading `pg_locks`
/// can tell it.
const REGISTRY_LOCK: i64 = 0x6469_7370_6174_6368;

/// On PostgreSQL, takes the registry's advisory lock for the rest of the transaction (replicas'
/// checked writes take turns), then reads the stored registry version: what the checks made
/// under the lock must see. `None` on SQLite, where one process writes a file and its own
/// mutex orders its writes.
pub(super) async fn lock_registry(tx: &mut Tx) -> Result<Option<i64>, sqlx::Error> {
    let Backend::Postgres(tx) = tx else {
        return Ok(None);
    };
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(REGISTRY_LOCK)
        .execute(&mut **tx)
        .await?;
    let version = sqlx::query_scalar("SELECT version FROM registry_version WHERE id = 1")
        .fetch_one(&mut **tx)
        .await?;
    Ok(Some(version))
}

pub(super) async fn insert_binding(
    tx: &mut Tx,
    client: &ClientName,
    binding: &CertBinding,
) -> Result<(), sqlx::Error> {
    static INSERT: LazyLock<String> = LazyLock::new(|| {
        let names = (0..Kind::ALL.len()).map(|at| format!("${}", at + 5));
        format!(
            "INSERT INTO cert_bindings (client, issuer, issuer_spki_sha256, fingerprints, {}) \
             VALUES ($1, $2, $3, $4, {})",
            Kind::columns(),
            names.collect::<Vec<_>>().join(", ")
        )
    });
    on_backend!(tx, tx => {
        let mut insert = sqlx::query(INSERT.as_str())
            .bind(client.as_str())
            .bind(binding.issuer.as_ref().map(|i| i.as_str().to_owned()))
            .bind(binding.issuer_spki.as_ref().map(|k| k.to_string()))
            .bind(
                binding
                    .fingerprints
                    .iter()
                    .map(Fingerprint::to_string)
                    .collect::<Vec<_>>()
                    .join(" "),
            );
        for kind in Kind::ALL {
            insert = insert.bind(binding.name(kind).map(str::to_owned));
        }
        insert.execute(&mut **tx).await.map(|_| ())
    })
}

/// Records that the registry changed, in the change's own transaction: the version every
/// replica compares its snapshot with, and on PostgreSQL a NOTIFY that the other replicas'
/// followers hear when the transaction commits (never before, never for a rolled-back change).
pub(super) async fn announce(tx: &mut Tx, notice: Notice) -> Result<(), sqlx::Error> {
    const BUMP: &str =
        "UPDATE registry_version SET version = version + 1 WHERE id = 1 RETURNING version";
    match tx {
        Backend::Sqlite(tx) => {
            sqlx::query(BUMP).execute(&mut **tx).await?;
        }
        Backend::Postgres(tx) => {
            let version: i64 = sqlx::query_scalar(BUMP).fetch_one(&mut **tx).await?;
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(super::notice::CHANNEL)
                .bind(notice.payload(version))
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(())
}

pub(super) fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

pub(super) fn scopes_text(scopes: &BTreeSet<Scope>) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}
