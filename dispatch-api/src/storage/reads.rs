//! The read queries the admin API and the migration report need: audit rows, refusal counts,
//! usage per client and method, and the certificates clients presented lately.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::Row;

use dispatch_types::{AuditEntry, RefusalCount, rfc3339};

use super::{Db, StorageError, on_backend, recorder};
use crate::identity::AuthMethod;

/// The most recently seen refusal counts first, optionally of one reason.
pub async fn list_refusal_counts(
    db: &Db,
    reason: Option<&str>,
    limit: i64,
) -> Result<Vec<RefusalCount>, StorageError> {
    on_backend!(db, pool => {
        let rows = sqlx::query(
            "SELECT hour, reason, source, count, first_seen, last_seen, last_detail FROM refusal_counts \
             WHERE ($1 IS NULL OR reason = $1) ORDER BY last_seen DESC, hour DESC LIMIT $2",
        )
        .bind(reason)
        .bind(limit)
        .fetch_all(pool)
        .await
        .map_err(StorageError::database)?;
        rows.into_iter()
            .map(|row| {
                let detail: String = row.try_get("last_detail")?;
                Ok(RefusalCount {
                    hour: rfc3339(row.try_get("hour")?),
                    reason: row.try_get("reason")?,
                    source: row.try_get("source")?,
                    count: row.try_get("count")?,
                    first_seen: rfc3339(row.try_get("first_seen")?),
                    last_seen: rfc3339(row.try_get("last_seen")?),
                    last_detail: serde_json::from_str(&detail).unwrap_or_default(),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StorageError::database)
    })
}

/// The newest audit events first, optionally for one client.
pub async fn list_audit(
    db: &Db,
    client: Option<&str>,
    limit: i64,
) -> Result<Vec<AuditEntry>, StorageError> {
    on_backend!(db, pool => {
        let rows = sqlx::query(
            "SELECT id, at, kind, reason, client, actor, method, before, after, detail FROM audit_events \
             WHERE ($1 IS NULL OR client = $1) ORDER BY id DESC LIMIT $2",
        )
        .bind(client)
        .bind(limit)
        .fetch_all(pool)
        .await
        .map_err(StorageError::database)?;
        rows.into_iter()
            .map(|row| {
                let detail: String = row.try_get("detail")?;
                Ok(AuditEntry {
                    id: row.try_get("id")?,
                    at: rfc3339(row.try_get("at")?),
                    kind: row.try_get("kind")?,
                    reason: row.try_get("reason")?,
                    client: row.try_get("client")?,
                    actor: row.try_get("actor")?,
                    method: row.try_get("method")?,
                    before: row.try_get("before")?,
                    after: row.try_get("after")?,
                    detail: serde_json::from_str(&detail).unwrap_or_default(),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StorageError::database)
    })
}

/// How one client used one method.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MethodUsage {
    /// Requests within the report window.
    pub requests_in_window: i64,
    /// Last use ever (unix seconds).
    pub last_seen: Option<i64>,
    pub last_certificate_fingerprint: Option<String>,
    pub last_certificate_not_after: Option<i64>,
    /// The key of the CA that signed the last certificate (for `issuer_spki_sha256`).
    pub last_certificate_issuer_spki_sha256: Option<String>,
    /// `api_key` only: each key's own use, by the key's SHA-256 (hex).
    pub keys: BTreeMap<String, KeyUse>,
}

/// One API key's use, all replicas together.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct KeyUse {
    pub use_count: i64,
    /// Unix seconds.
    pub last_used_at: Option<i64>,
}

/// Per client name, per method name.
pub type UsageByClient = BTreeMap<String, BTreeMap<&'static str, MethodUsage>>;

/// Usage per client and method; `since` bounds the windowed counts. Every replica's counts
/// are rows of the same table, so they add up here.
pub async fn usage_by_client(db: &Db, since: i64) -> Result<UsageByClient, StorageError> {
    let read: Result<UsageByClient, sqlx::Error> = async {
        on_backend!(db, pool => {
            let rows = sqlx::query(
                "SELECT client, method, \
                   CAST(SUM(CASE WHEN last_seen >= $1 THEN request_count ELSE 0 END) AS BIGINT) AS in_window, \
                   MAX(last_seen) AS last_seen FROM client_usage GROUP BY client, method",
            )
            .bind(since)
            .fetch_all(pool)
            .await?;
            let mut usage = UsageByClient::new();
            for row in rows {
                let method: String = row.try_get("method")?;
                let Some(method) = AuthMethod::parse(&method) else {
                    continue;
                };
                usage.entry(row.try_get("client")?).or_default().insert(
                    method.as_str(),
                    MethodUsage {
                        requests_in_window: row.try_get("in_window")?,
                        last_seen: row.try_get("last_seen")?,
                        ..MethodUsage::default()
                    },
                );
            }
            // The certificate last seen from each client (for its expiry).
            let certs = sqlx::query(
                "SELECT client, last_cert_fingerprint, last_cert_not_after, last_cert_issuer_spki \
                 FROM client_usage u \
                 WHERE method = 'certificate' AND last_cert_fingerprint IS NOT NULL AND last_seen = \
                   (SELECT MAX(last_seen) FROM client_usage v WHERE v.client = u.client AND v.method = 'certificate')",
            )
            .fetch_all(pool)
            .await?;
            for row in certs {
                let client: String = row.try_get("client")?;
                if let Some(entry) = usage
                    .get_mut(&client)
                    .and_then(|m| m.get_mut("certificate"))
                {
                    entry.last_certificate_fingerprint = row.try_get("last_cert_fingerprint")?;
                    entry.last_certificate_not_after = row.try_get("last_cert_not_after")?;
                    entry.last_certificate_issuer_spki_sha256 = row.try_get("last_cert_issuer_spki")?;
                }
            }
            let keys = sqlx::query("SELECT client, key_sha256, use_count, last_used_at FROM api_keys")
                .fetch_all(pool)
                .await?;
            for row in keys {
                let client: String = row.try_get("client")?;
                usage
                    .entry(client)
                    .or_default()
                    .entry(AuthMethod::ApiKey.as_str())
                    .or_default()
                    .keys
                    .insert(
                        row.try_get("key_sha256")?,
                        KeyUse {
                            use_count: row.try_get("use_count")?,
                            last_used_at: row.try_get("last_used_at")?,
                        },
                    );
            }
            Ok(usage)
        })
    }
    .await;
    read.map_err(StorageError::database)
}

/// Each client's newest certificate (the latest notAfter any of its instances presented): its
/// leaf's notBefore and the notAfter of its path, by client (`client`'s alone if given), for
/// its renewal health.
pub async fn newest_certificates(
    db: &Db,
    client: Option<&str>,
) -> Result<BTreeMap<String, (i64, i64)>, StorageError> {
    let read: Result<Vec<(String, String, i64)>, sqlx::Error> = async {
        on_backend!(db, pool => {
            sqlx::query_as(
                "SELECT client, chain, not_after FROM \
                   (SELECT client, chain, not_after, ROW_NUMBER() OVER \
                     (PARTITION BY client ORDER BY not_after DESC, last_seen DESC) AS newest \
                    FROM presented_certificates \
                    WHERE not_after IS NOT NULL AND ($1 IS NULL OR client = $1)) AS ranked \
                 WHERE newest = 1",
            )
            .bind(client)
            .fetch_all(pool)
            .await
        })
    }
    .await;
    let rows = read.map_err(StorageError::database)?;
    Ok(rows
        .into_iter()
        .filter_map(|(client, chain, not_after)| {
            let chain = recorder::chain_from_text(&chain)?;
            let leaf = crate::identity::PeerCertificate::from_der(chain.first()?).ok()?;
            Some((client, (leaf.not_before.unix_timestamp(), not_after)))
        })
        .collect())
}

/// The chains each client presented (leaf first, DER) that are still valid at `now` (unix
/// seconds), or were last presented since `since` (rows of before the expiry was stored), of
/// each of its instances the latest [`recorder::LIVE_PER_INSTANCE`], of its latest
/// [`recorder::LIVE_INSTANCES_PER_CLIENT`] instances, and its latest
/// [`recorder::LIVE_PER_CLIENT`] whatever their instance, whichever replica saw them: the live
/// certificates a registry change is tried against. Every instance, however often another one
/// renews; not only its last certificate: while an instance moves to a renewed certificate, a
/// change that keeps the old one out cuts off its connections still on it. And until it
/// expires, not only within the evidence window: a weekly job's certificate is live between its
/// runs.
pub async fn live_certificates(
    db: &Db,
    since: i64,
    now: i64,
) -> Result<Vec<Vec<Vec<u8>>>, StorageError> {
    let statement = format!(
        "{}SELECT chain FROM ranked WHERE {}",
        recorder::ranked_instances("last_seen >= $1 OR not_after >= $3"),
        recorder::live_rank("$2", "$4", "$5")
    );
    let read: Result<_, sqlx::Error> = async {
        on_backend!(db, pool => {
            // The statement is this module's text, not input.
            let texts: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(statement.as_str()))
            .bind(since)
            .bind(recorder::LIVE_PER_INSTANCE as i64)
            .bind(now)
            .bind(recorder::LIVE_INSTANCES_PER_CLIENT as i64)
            .bind(recorder::LIVE_PER_CLIENT as i64)
            .fetch_all(pool)
            .await?;
            Ok(texts
                .iter()
                .filter_map(|text| recorder::chain_from_text(text))
                .collect())
        })
    }
    .await;
    read.map_err(StorageError::database)
}
