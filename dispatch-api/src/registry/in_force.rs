//! The guards in force as the request path reads them, from memory: the reopenings of reverted
//! guards and the watching guards, which every replica rereads about once a second (and at
//! once after its own revert or mode change).

use std::sync::Arc;

use super::Registry;
use super::reopening::{Reopening, reopening_of, watch_of};
use super::tally::Watch;
use super::write::now;
use crate::storage::{StorageError, on_backend};

impl Registry {
    /// The reopening of `client` in force, if any: the request path's read, no database.
    pub fn reopening(&self, client: &str) -> Option<Reopening> {
        self.reopenings.load().get(client).cloned()
    }

    /// The watching guard of `client`, as last reread: the request path's read, no database.
    pub fn watch(&self, client: &str) -> Option<Arc<Watch>> {
        self.watches.load().get(client).cloned()
    }

    /// Rereads the guards in force: the reopenings, and the watching guards (every replica,
    /// about once a second, and after its own revert or mode change).
    pub async fn refresh_guards_in_force(&self) -> Result<(), StorageError> {
        let rows: Vec<(String, Option<String>, String, Option<i64>)> =
            on_backend!(self.pool(), pool => sqlx::query_as(
                "SELECT client, retired_method, reopened_networks, reopened_until FROM mode_guards \
                 WHERE state = 'reverted' AND reopened_until > $1",
            )
            .bind(now())
            .fetch_all(pool)
            .await)
            .map_err(StorageError::database)?;
        let reopenings = rows
            .into_iter()
            .filter_map(|(client, method, networks, until)| {
                Some((client, reopening_of(method, networks, until)?))
            })
            .collect();
        let watching: Vec<(String, i64, i64, Option<String>, String)> =
            on_backend!(self.pool(), pool => sqlx::query_as(
                "SELECT client, started_at, watch_until, retired_method, known_networks \
                 FROM mode_guards WHERE state = 'watching'",
            )
            .fetch_all(pool)
            .await)
            .map_err(StorageError::database)?;
        let watches = watching
            .into_iter()
            .map(|(client, started_at, watch_until, retired, known)| {
                (
                    client,
                    Arc::new(watch_of(started_at, watch_until, retired, &known)),
                )
            })
            .collect();
        self.reopenings.store(Arc::new(reopenings));
        self.watches.store(Arc::new(watches));
        Ok(())
    }
}
