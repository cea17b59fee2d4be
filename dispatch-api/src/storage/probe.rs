//! Whether the database takes writes, as `/readyz` asks it: [`probe_writable`] takes a write
//! transaction (SQLite) or a round trip (PostgreSQL) and a pool connection shared with plan
//! writes, so [`WritableProbe`] answers from a result at most [`PROBE_EVERY`] old, with one probe
//! in flight: however many callers hammer the unauthenticated ops listener, the service pays at
//! most one probe a second.

use std::time::{Duration, Instant};

use super::{Backend, Db, StorageError};

/// How old a probe result `/readyz` answers from may be, at most.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);

/// How long a probe may take before it counts as failed (SQLite's busy timeout is 5 s by
/// default; a probe past this is a database that cannot take writes in time anyway).
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Whether a write could happen now. SQLite: takes the write lock (`BEGIN IMMEDIATE`) and lets
/// it go, failing when the file is locked by someone else, read-only, or gone (waits at most the
/// busy timeout). PostgreSQL: the server answers and is not a read-only standby.
pub async fn probe_writable(db: &Db) -> Result<(), StorageError> {
    async {
        match db {
            Backend::Sqlite(pool) => {
                let mut connection = pool.acquire().await?;
                sqlx::query("BEGIN IMMEDIATE")
                    .execute(&mut *connection)
                    .await?;
                sqlx::query("ROLLBACK").execute(&mut *connection).await?;
            }
            Backend::Postgres(pool) => {
                let read_only: String = sqlx::query_scalar("SHOW transaction_read_only")
                    .fetch_one(pool)
                    .await?;
                if read_only != "off" {
                    return Err(sqlx::Error::Protocol(
                        "the PostgreSQL server is read-only (a standby?)".into(),
                    ));
                }
            }
        }
        Ok(())
    }
    .await
    .map_err(StorageError::database)
}

/// The last probe's result and when it was taken; the lock is held over a probe, so callers
/// that come meanwhile wait for its result instead of probing again.
#[derive(Default)]
pub struct WritableProbe {
    last: tokio::sync::Mutex<Option<(Instant, bool)>>,
}

impl WritableProbe {
    /// Whether the database takes writes: a success at most [`PROBE_EVERY`] old, or the
    /// result of a probe that ended while this caller waited for it (a failure is never
    /// answered to a caller that came after it: a database that came back is seen at once),
    /// else a probe of its own. The second value says whether this call probed.
    pub async fn check(&self, db: &Db) -> (bool, bool) {
        let arrived = Instant::now();
        let mut last = self.last.lock().await;
        if let Some((at, writable)) = *last
            && (at >= arrived || (writable && at.elapsed() < PROBE_EVERY))
        {
            return (writable, false);
        }
        // Bounded: a server that drops packets must not hold every /readyz caller (and the ops
        // listener's connections, /healthz's too) for as long as TCP retries.
        let writable = tokio::time::timeout(PROBE_TIMEOUT, probe_writable(db))
            .await
            .is_ok_and(|probed| probed.is_ok());
        *last = Some((Instant::now(), writable));
        (writable, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn callers_within_a_second_share_one_probe_and_a_later_one_probes_again() {
        let dir = tempfile::tempdir().unwrap();
        let settings = crate::configuration::DatabaseSettings {
            path: dir.path().join("probe.db"),
            ..Default::default()
        };
        let location = crate::storage::Location::of(&settings).unwrap();
        let pool = crate::storage::connect(&settings, &location).await.unwrap();
        let probe = std::sync::Arc::new(WritableProbe::default());
        let calls: Vec<_> = (0..20)
            .map(|_| {
                let (probe, pool) = (probe.clone(), pool.clone());
                tokio::spawn(async move { probe.check(&pool).await })
            })
            .collect();
        let mut probed = 0;
        for call in calls {
            let (writable, did) = call.await.unwrap();
            assert!(writable);
            probed += usize::from(did);
        }
        assert_eq!(probed, 1, "one probe for twenty callers");
        // Past PROBE_EVERY, the next caller probes again.
        *probe.last.lock().await = Some((Instant::now() - PROBE_EVERY, true));
        assert_eq!(probe.check(&pool).await, (true, true));
        assert_eq!(probe.check(&pool).await, (true, false));
        // A failure is answered only to the callers that waited for it: one that comes after
        // it probes again, however recent it is.
        *probe.last.lock().await = Some((Instant::now(), false));
        assert_eq!(probe.check(&pool).await, (true, true));
        // One that waited for a probe gets that probe's result, failed or not.
        let held = probe.last.lock().await;
        let waiting = {
            let (probe, pool) = (probe.clone(), pool.clone());
            tokio::spawn(async move { probe.check(&pool).await })
        };
        tokio::task::yield_now().await;
        let mut held = held;
        *held = Some((Instant::now() + std::time::Duration::from_secs(1), false));
        drop(held);
        assert_eq!(waiting.await.unwrap(), (false, false));
    }
}
