//! The recorder's hourly pruning: audit rows and refusal counts past `audit.retention_days`,
//! and presented certificates no tryout reads any more.

use std::time::Duration;

use super::{
    LIVE_INSTANCES_PER_CLIENT, LIVE_PER_CLIENT, LIVE_PER_INSTANCE, NETWORKS_PER_CLIENT, live_rank,
    ranked_instances,
};
use crate::storage::{Backend, Db, on_backend};

/// Deletes audit rows and refusal counts older than `retention` (if set), and presented
/// certificates not seen within `live_window` and expired (or of unknown expiry), or that no
/// tryout reads any more (see [`keep_live_instances`]), a few thousand rows per short
/// transaction, so that a large backlog never holds SQLite's write lock long enough to delay
/// plans.
pub(super) async fn prune(pool: &Db, retention: Option<Duration>, live_window: Duration) {
    const BATCH: i64 = 5000;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let before = |age: Duration| now - age.as_secs() as i64;
    // A presented certificate is live while valid or seen within the window (`live_certificates`):
    // it goes once both are past, that is when this expression is below `now - window`. (It is
    // `not_after - window` where the certificate outlives its last sight by more than the
    // window, `last_seen` otherwise.)
    let window = live_window.as_secs() as i64;
    let presented_age = format!(
        "CASE WHEN not_after IS NOT NULL AND not_after >= last_seen + {window} \
         THEN not_after - {window} ELSE last_seen END"
    );
    // Each table with the setting its rows' age comes from, for the log.
    let mut tables = vec![
        (
            "presented_certificates",
            presented_age.as_str(),
            before(live_window),
            "migration.evidence_window_secs and the certificate's expiry",
        ),
        (
            "credential_networks",
            "last_seen",
            before(live_window),
            "migration.evidence_window_secs",
        ),
    ];
    if let Some(retention) = retention {
        for (table, column) in [("audit_events", "at"), ("refusal_counts", "last_seen")] {
            tables.push((table, column, before(retention), "audit.retention_days"));
        }
    }
    // The same statements but for the row's address: SQLite's rowid, PostgreSQL's ctid. On
    // PostgreSQL, rows another transaction holds (a usage write upserting the same presented
    // certificate) are skipped, not waited for in ctid order, which could deadlock with it.
    let (row_address, unlocked) = match pool {
        Backend::Sqlite(_) => ("rowid", ""),
        Backend::Postgres(_) => ("ctid", " FOR UPDATE SKIP LOCKED"),
    };
    for (table, column, before, setting) in tables {
        let mut pruned = 0;
        let statement = format!(
            "DELETE FROM {table} WHERE {row_address} IN \
             (SELECT {row_address} FROM {table} WHERE {column} < $1 LIMIT $2{unlocked})"
        );
        loop {
            // The names are this function's constants, not input.
            let statement = sqlx::AssertSqlSafe(statement.as_str());
            let deleted = on_backend!(pool, pool => sqlx::query(statement)
                .bind(before)
                .bind(BATCH)
                .execute(pool)
                .await
                .map(|done| done.rows_affected()));
            match deleted {
                Ok(rows) if rows > 0 => {
                    pruned += rows;
                    tokio::task::yield_now().await;
                }
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(table, error = %error, "pruning old rows failed; retried in an hour");
                    return;
                }
            }
        }
        if pruned > 0 {
            tracing::info!(table, rows = pruned, "pruned rows older than {setting}");
        }
    }
    keep_live_instances(pool).await;
    // Each client and method's networks past its latest NETWORKS_PER_CLIENT: a leaked key
    // used from many networks adds a row each.
    keep_latest(
        pool,
        "credential_networks",
        "client, method",
        "network",
        NETWORKS_PER_CLIENT,
    )
    .await;
}

/// Deletes each client's certificates that are neither among the latest [`LIVE_PER_INSTANCE`]
/// of one of its latest [`LIVE_INSTANCES_PER_CLIENT`] instances nor among its latest
/// [`LIVE_PER_CLIENT`]: an instance renewing every few minutes adds a row each time, and the
/// one before it is no longer evidence.
async fn keep_live_instances(pool: &Db) {
    let statement = format!(
        "{}DELETE FROM presented_certificates WHERE (client, fingerprint) IN \
         (SELECT client, fingerprint FROM ranked WHERE NOT {})",
        ranked_instances("TRUE"),
        live_rank("$1", "$2", "$3")
    );
    // The statement is this module's text, not input.
    let statement = sqlx::AssertSqlSafe(statement.as_str());
    let deleted = on_backend!(pool, pool => sqlx::query(statement)
        .bind(LIVE_PER_INSTANCE as i64)
        .bind(LIVE_INSTANCES_PER_CLIENT as i64)
        .bind(LIVE_PER_CLIENT as i64)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()));
    let kept = format!(
        "each instance's latest {LIVE_PER_INSTANCE} of each client's latest \
         {LIVE_INSTANCES_PER_CLIENT} instances, and each client's latest {LIVE_PER_CLIENT}"
    );
    log_pruned("presented_certificates", deleted, &kept);
}

/// Deletes the rows of `table` past the latest `keep` (by `last_seen`, then `key`) of each
/// `group` of columns.
async fn keep_latest(pool: &Db, table: &str, group: &str, key: &str, keep: usize) {
    let statement = format!(
        "DELETE FROM {table} WHERE ({group}, {key}) IN \
         (SELECT {group}, {key} FROM \
           (SELECT {group}, {key}, ROW_NUMBER() OVER \
             (PARTITION BY {group} ORDER BY last_seen DESC, {key}) AS latest \
            FROM {table}) AS ranked \
          WHERE latest > $1)"
    );
    // The names are this module's constants, not input.
    let statement = sqlx::AssertSqlSafe(statement.as_str());
    let deleted = on_backend!(pool, pool => sqlx::query(statement)
        .bind(keep as i64)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()));
    log_pruned(
        table,
        deleted,
        &format!("the latest {keep} of each {group}"),
    );
}

/// What a pruning of `table` past what it `kept` did: rows deleted, or why none were.
fn log_pruned(table: &str, deleted: Result<u64, sqlx::Error>, kept: &str) {
    match deleted {
        Ok(0) => {}
        Ok(rows) => tracing::info!(table, rows, "pruned rows past {kept}"),
        Err(error) => {
            tracing::warn!(table, error = %error, "pruning old rows failed; retried in an hour")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn presented_certificates_past_the_window_and_expired_or_past_their_instances_latest_are_pruned()
     {
        let dir = tempfile::tempdir().unwrap();
        let settings = crate::configuration::DatabaseSettings {
            path: dir.path().join("presented.db"),
            ..Default::default()
        };
        let location = crate::storage::Location::of(&settings).unwrap();
        let pool = crate::storage::connect(&settings, &location).await.unwrap();
        let Backend::Sqlite(sqlite) = &pool else {
            unreachable!("the unit tests run on SQLite")
        };
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let fingerprint = |n: i64| format!("{n:064x}");
        let placed = |client: &'static str, n: i64, last_seen: i64, network: String| {
            sqlx::query(
                "INSERT INTO presented_certificates (client, fingerprint, chain, last_seen, network, names) \
                 VALUES ($1, $2, 'ab', $3, $4, 'worker.internal')",
            )
            .bind(client)
            .bind(fingerprint(n))
            .bind(last_seen)
            .bind(network)
            .execute(sqlite)
        };
        let insert = |client: &'static str, n: i64, last_seen: i64, not_after: Option<i64>| {
            sqlx::query(
                "INSERT INTO presented_certificates (client, fingerprint, chain, last_seen, not_after) \
                 VALUES ($1, $2, 'ab', $3, $4)",
            )
            .bind(client)
            .bind(fingerprint(n))
            .bind(last_seen)
            .bind(not_after)
            .execute(sqlite)
        };
        // One instance renewing ten times: the client's latest eight stay (its own latest two
        // among them).
        for n in 0..10 {
            placed("renewing", n, now - n, "10.0.1.0/24".into())
                .await
                .unwrap();
        }
        // Twenty instances, one certificate each: the sixteen seen last stay.
        for n in 0..20 {
            placed("spread", n, now - n, format!("10.0.{n}.0/24"))
                .await
                .unwrap();
        }
        // Rows of before the instance columns: each an instance of its own.
        for n in 0..3 {
            insert("legacy", n, now - n, None).await.unwrap();
        }
        insert("stale", 0, now - 7200, None).await.unwrap();
        insert("fresh", 0, now - 60, None).await.unwrap();
        // Seen a week ago, valid for another week (a weekly job): kept. Seen a week ago and
        // expired an hour ago, or a second ago: gone. Seen a minute ago, expired: kept (the
        // window keeps it, as before).
        let week = 7 * 86_400;
        insert("weekly", 0, now - week, Some(now + week))
            .await
            .unwrap();
        insert("expired", 0, now - week, Some(now - 3600))
            .await
            .unwrap();
        insert("expired", 1, now - week, Some(now - 1))
            .await
            .unwrap();
        insert("recent", 0, now - 60, Some(now - 3600))
            .await
            .unwrap();
        prune(&pool, None, Duration::from_secs(3600)).await;
        let left: Vec<(String, String)> = sqlx::query_as(
            "SELECT client, fingerprint FROM presented_certificates ORDER BY client, fingerprint",
        )
        .fetch_all(sqlite)
        .await
        .unwrap();
        let of = |client: &str| -> Vec<String> {
            left.iter()
                .filter(|(c, _)| c == client)
                .map(|(_, f)| f.clone())
                .collect()
        };
        assert_eq!(
            of("renewing"),
            (0..LIVE_PER_CLIENT as i64)
                .map(fingerprint)
                .collect::<Vec<_>>(),
            "a client's latest eight"
        );
        assert_eq!(
            of("spread"),
            (0..LIVE_INSTANCES_PER_CLIENT as i64)
                .map(fingerprint)
                .collect::<Vec<_>>(),
            "a client's latest sixteen instances (its latest eight among them)"
        );
        assert_eq!(of("legacy").len(), 3);
        assert_eq!(of("fresh"), [fingerprint(0)]);
        assert!(of("stale").is_empty(), "not seen within the window");
        assert_eq!(
            of("weekly"),
            [fingerprint(0)],
            "valid: evidence until it expires"
        );
        assert!(
            of("expired").is_empty(),
            "expired and not seen within the window"
        );
        assert_eq!(of("recent"), [fingerprint(0)]);
    }
}
