//! How a change made through one replica reaches the others (PostgreSQL only: SQLite has one
//! process).
//!
//! Every registry write bumps `registry_version` and, in the same transaction, NOTIFYs
//! [`CHANNEL`] with the new version and what changed ([`Notice`], `write::announce`). Each replica's follower
//! LISTENs and applies a notice to its snapshot as the writing replica does: one client read by
//! its key, or one fingerprint added to the deny list. PostgreSQL delivers notices after the
//! commit and in commit order, so within a second of a flip the next request on every replica
//! is judged by the new mode, keep-alive connections included (each request reads the snapshot).
//!
//! A notice can be lost: the listening connection drops, or the follower falls behind. So:
//! - after (re)connecting, the follower reads the whole registry, because it heard nothing
//!   while it was away;
//! - a gap in the versions it hears means one was missed: it reads the whole registry;
//! - every [`POLL`] it reads the stored version; a version newer than what it has heard, and
//!   still newer at the next poll (not just in flight), makes it read the whole registry.
//!
//! Each poll that finds the stored version heard, and each whole read, confirms the snapshot
//! current. A replica cut off from the database confirms nothing: past
//! `registry.max_staleness_secs` it answers authenticated requests 503 and is not ready
//! (`Registry::unconfirmed_for`), so a key removed, a revocation or a flip made through another
//! replica meanwhile cannot go unheard for longer.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;

use super::Registry;
use super::notice::{CHANNEL, Notice};
use crate::storage::Backend;

/// How often the stored version is compared with what was heard.
pub const POLL: Duration = Duration::from_secs(2);
/// How long to wait before trying the database again.
const RETRY: Duration = Duration::from_secs(1);

/// What the follower does with a notice of `version`, having heard up to `heard`.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Apply the notice on its own.
    Apply,
    /// Read the whole registry: a version was skipped, or the notice needs it.
    ReadAll,
    /// Already reflected (an older notice, after a full read).
    Ignore,
}

/// The follower's rule for one notice, pure for its decision table.
pub fn step(heard: i64, version: i64, notice: Option<&Notice>) -> Step {
    match notice {
        _ if version <= heard => Step::Ignore,
        None | Some(Notice::All) => Step::ReadAll,
        Some(_) if version > heard + 1 => Step::ReadAll,
        Some(_) => Step::Apply,
    }
}

/// The periodic version check, pure for its decision table: given the version heard, the one
/// stored, and the stored version the last check found unheard, whether to read everything now
/// and what to remember for the next check. A version still unheard one check after it was
/// first seen was lost, not in flight.
pub fn check(heard: i64, stored: i64, behind: Option<i64>) -> (bool, Option<i64>) {
    if stored <= heard {
        (false, None)
    } else if behind.is_some_and(|earlier| heard < earlier) {
        (true, None)
    } else {
        (false, Some(stored))
    }
}

/// Follows other replicas' changes until the process ends. Does nothing on SQLite.
pub async fn follow_changes(registry: Arc<Registry>) {
    let Backend::Postgres(pool) = registry.pool().clone() else {
        return;
    };
    let mut follower = Follower {
        registry,
        pool,
        heard: 0,
    };
    loop {
        let Some(listener) = follower.listen().await else {
            tokio::time::sleep(RETRY).await;
            continue;
        };
        follower.follow(listener).await;
        tracing::warn!("lost the registry change notifications; reconnecting");
    }
}

struct Follower {
    registry: Arc<Registry>,
    pool: PgPool,
    /// The newest version this replica's snapshot reflects.
    heard: i64,
}

impl Follower {
    /// LISTENs, then reads everything (what changed while nobody listened).
    async fn listen(&mut self) -> Option<PgListener> {
        let mut listener = PgListener::connect_with(&self.pool)
            .await
            .inspect_err(|error| tracing::warn!(%error, "cannot listen for registry changes"))
            .ok()?;
        listener
            .listen(CHANNEL)
            .await
            .inspect_err(|error| tracing::warn!(%error, "cannot listen for registry changes"))
            .ok()?;
        self.read_all().await.then_some(listener)
    }

    /// Applies notices until the connection drops.
    async fn follow(&mut self, mut listener: PgListener) {
        let mut poll = tokio::time::interval(POLL);
        // A stored version newer than what was heard, at the last poll.
        let mut behind: Option<i64> = None;
        loop {
            tokio::select! {
                received = listener.try_recv() => match received {
                    Ok(Some(notification)) => self.hear(notification.payload()).await,
                    Ok(None) | Err(_) => return,
                },
                _ = poll.tick() => {
                    let Ok(stored) = self.stored_version().await else { continue };
                    if stored < self.heard {
                        // The stored version went back (a restored backup, a failover): later
                        // notices would look old and be ignored. Listen anew and read it all.
                        tracing::warn!(stored, heard = self.heard, "the stored registry version went back; listening anew and reading the whole registry");
                        return;
                    }
                    if stored == self.heard {
                        self.registry.confirm_current();
                    }
                    let (read_all, next) = check(self.heard, stored, behind);
                    behind = next;
                    if read_all {
                        // The listening connection may be dead without a reset (a dropped
                        // idle connection): listen anew, which reads the whole registry.
                        tracing::warn!(stored, heard = self.heard, "a registry change was not heard of; listening anew and reading the whole registry");
                        return;
                    }
                }
            }
        }
    }

    async fn hear(&mut self, payload: &str) {
        let parsed = Notice::parse(payload);
        let version = parsed.as_ref().map_or(i64::MAX, |(version, _)| *version);
        let notice = parsed.map(|(_, notice)| notice);
        let applied = match (step(self.heard, version, notice.as_ref()), notice) {
            (Step::Ignore, _) => return,
            (Step::Apply, Some(Notice::Client(name))) => self.registry.reload_client(&name).await,
            (Step::Apply, Some(Notice::Revoked(fingerprint))) => {
                self.registry.note_revoked(fingerprint).await;
                Ok(())
            }
            // `step` reads everything for `all` and for what does not parse.
            _ => {
                self.read_all().await;
                return;
            }
        };
        match applied {
            Ok(()) => {
                self.heard = version;
                self.registry.note_reflects(version);
            }
            Err(error) => {
                tracing::warn!(%error, "applying a registry change failed; reading the whole registry");
                self.read_all().await;
            }
        }
    }

    /// Reads the stored version, then everything: the snapshot reflects at least that version.
    /// Returns whether it worked.
    async fn read_all(&mut self) -> bool {
        let Ok(version) = self.stored_version().await else {
            return false;
        };
        match self.registry.refresh().await {
            Ok(()) => {
                // Not the larger of the two: a stored version that went back (a restored
                // backup, a failover) must not make every later notice look old.
                self.heard = version;
                self.registry.note_reflects(version);
                self.registry.confirm_current();
                true
            }
            Err(error) => {
                tracing::warn!(%error, "reading the registry failed");
                false
            }
        }
    }

    async fn stored_version(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT version FROM registry_version WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .inspect_err(|error| tracing::warn!(%error, "reading the registry version failed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::ClientName;

    #[test]
    fn a_version_still_unheard_at_the_next_check_makes_the_follower_read_everything() {
        let table = [
            // (heard, stored, behind, read all, remember)
            (5, 5, None, false, None),
            (5, 5, Some(5), false, None),
            (5, 6, None, false, Some(6)),
            // Heard meanwhile, newer ones in flight: remember those, read nothing.
            (6, 8, Some(6), false, Some(8)),
            // Still not heard one check later: lost.
            (5, 6, Some(6), true, None),
            (5, 9, Some(6), true, None),
        ];
        for (heard, stored, behind, read_all, remember) in table {
            assert_eq!(
                check(heard, stored, behind),
                (read_all, remember),
                "{heard} {stored} {behind:?}"
            );
        }
    }

    fn client(name: &str) -> Notice {
        Notice::Client(ClientName::parse(name).unwrap())
    }

    #[test]
    fn the_follower_applies_the_next_version_and_reads_everything_after_a_gap() {
        let table = [
            // (heard, version, notice, step)
            (4, 5, Some(client("a")), Step::Apply),
            (4, 6, Some(client("a")), Step::ReadAll),
            (4, 4, Some(client("a")), Step::Ignore),
            (4, 3, Some(client("a")), Step::Ignore),
            (4, 5, Some(Notice::All), Step::ReadAll),
            (4, 5, None, Step::ReadAll),
            (0, 1, Some(client("a")), Step::Apply),
        ];
        for (heard, version, notice, expected) in table {
            assert_eq!(
                step(heard, version, notice.as_ref()),
                expected,
                "{heard} {version} {notice:?}"
            );
        }
    }
}
