//! The registry and the snapshot the request path reads, and its writes of a client's mode,
//! state and bindings. Registration, keys and revocations have files of their own; what every
//! write shares (the row lock, the announcement to the other replicas) is in `write`.

use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};

use super::change::{Update, try_out};
use super::guard_start::GuardStart;
use super::notice::Notice;
use super::read::{read_client, read_snapshot};
use super::write::{announce, insert_binding, lock_client_row, lock_registry, now};
use super::{
    CertBinding, Change, Client, ClientName, Intent, MigrationMode, RegistryError,
    RegistrySnapshot, Verdict, locks_out,
};
use crate::identity::{Fingerprint, IssuerIndex};
use crate::storage::recorder::{AuditEvent, AuditKind};
use crate::storage::{Db, StorageError, Tx, on_backend};

pub struct Registry {
    pub(super) pool: Db,
    pub(super) snapshot: ArcSwap<RegistrySnapshot>,
    /// Serialises admin writes so that each snapshot swap follows its own write.
    pub(super) writes: tokio::sync::Mutex<()>,
    /// Serialises every change of the snapshot (read the database, make the next snapshot from
    /// the current one, store it): an admin write and the follower applying another replica's
    /// change must not both start from the same snapshot, or the later store would drop the
    /// earlier change. Held over the read, so one that starts later also reads later.
    pub(super) updates: tokio::sync::Mutex<()>,
    /// The reopenings of reverted guards in force, by client (see `guard`): read on the request
    /// path, reread about once a second.
    pub(super) reopenings: ArcSwap<std::collections::HashMap<String, super::Reopening>>,
    /// The watching guards, by client, as last reread: the request path judges a refusal
    /// against its client's at once (see `FlipTally::count`).
    pub(super) watches: ArcSwap<std::collections::HashMap<String, Arc<super::tally::Watch>>>,
    /// Unix seconds: when the snapshot was last confirmed to reflect the stored registry (read
    /// whole, or the stored version found heard); see `follow`.
    pub(super) confirmed_at: std::sync::atomic::AtomicI64,
    /// The registry version the snapshot is known to reflect (the follower's, on PostgreSQL;
    /// -1 until it knows): a checked write whose lock finds a newer stored version reads the
    /// whole registry first (`begin_checked_write`).
    pub(super) reflects: std::sync::atomic::AtomicI64,
}

/// Whether `after` (the operator's own client as the change would leave it) no longer lets the
/// operator's certificate in as an administrator, while no other client can administer: a
/// binding that no longer names the certificate, say, which `locks_out` cannot see.
fn takes_own_way_in(snapshot: &RegistrySnapshot, change: &Change<'_>, after: &Client) -> bool {
    let Some((certificate, issuers)) = change.operator else {
        return false;
    };
    let own = snapshot
        .client_for_certificate(certificate, issuers)
        .is_ok_and(|client| client.name == after.name);
    if !own {
        return false;
    }
    let still_in = after.administers()
        && after
            .bindings
            .iter()
            .any(|b| b.judge(certificate, issuers) == Verdict::Matches);
    !still_in
        && !snapshot
            .clients()
            .any(|c| c.name != after.name && c.administers())
}

impl Registry {
    pub async fn load(pool: Db) -> Result<Self, StorageError> {
        let snapshot = read_snapshot(&pool).await?;
        Ok(Self {
            pool,
            snapshot: ArcSwap::from_pointee(snapshot),
            writes: tokio::sync::Mutex::new(()),
            updates: tokio::sync::Mutex::new(()),
            reopenings: ArcSwap::default(),
            watches: ArcSwap::default(),
            confirmed_at: std::sync::atomic::AtomicI64::new(now()),
            reflects: std::sync::atomic::AtomicI64::new(-1),
        })
    }

    /// Notes that the snapshot reflects the stored registry at `version`.
    pub(super) fn note_reflects(&self, version: i64) {
        self.reflects
            .store(version, std::sync::atomic::Ordering::Relaxed);
    }

    /// Begins a registry write that checks the registry before it writes (the last-admin rule,
    /// overlaps, the tryout). On PostgreSQL the transaction first takes the registry's advisory
    /// lock, so the checked writes of every replica take turns, and the snapshot is brought up
    /// to the version stored under that lock when it lags (another replica's change not heard
    /// yet): two replicas can then never each pass a check that their two changes together
    /// break (each disabling one of the last two admins, say).
    pub(super) async fn begin_checked_write(&self) -> Result<Tx, StorageError> {
        let mut tx = self.pool.begin().await.map_err(StorageError::database)?;
        let stored = lock_registry(&mut tx)
            .await
            .map_err(StorageError::database)?;
        if let Some(stored) = stored
            && stored != self.reflects.load(std::sync::atomic::Ordering::Relaxed)
        {
            self.refresh().await?;
            self.note_reflects(stored);
        }
        Ok(tx)
    }

    /// Notes that the snapshot reflects the stored registry now.
    pub(super) fn confirm_current(&self) {
        self.confirmed_at
            .store(now(), std::sync::atomic::Ordering::Relaxed);
    }

    /// How long, at `now` (unix seconds), since the snapshot was last confirmed current;
    /// `None` on SQLite, where this process is the only writer and always current.
    pub fn unconfirmed_for(&self, now: i64) -> Option<i64> {
        self.pool
            .is_postgres()
            .then(|| now - self.confirmed_at.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// The current view: a cheap atomic load, no lock, no database.
    pub fn snapshot(&self) -> Guard<Arc<RegistrySnapshot>> {
        self.snapshot.load()
    }

    /// Makes `next` the current view, its base rebuilt first if the changes since have outgrown
    /// it (`RegistrySnapshot::settled`): every snapshot published goes through here, none made
    /// only to try a change does.
    pub(super) fn publish(&self, next: RegistrySnapshot) {
        self.snapshot.store(Arc::new(next.settled()));
    }

    /// Reads every table into a new snapshot.
    pub(super) async fn refresh(&self) -> Result<(), StorageError> {
        let _update = self.updates.lock().await;
        self.publish(read_snapshot(&self.pool).await?);
        Ok(())
    }

    /// Reads one client as stored into the snapshot: a change costs the same whatever the
    /// number of clients (no full read; the base is rebuilt once per n/8 changes, see
    /// `RegistrySnapshot::settled`).
    pub(super) async fn reload_client(&self, name: &ClientName) -> Result<(), StorageError> {
        let _update = self.updates.lock().await;
        let stored = read_client(&self.pool, name)
            .await
            .map_err(StorageError::database)?;
        self.publish(self.snapshot().with_client(name, stored));
        // A change of the client (a mode change made on another replica, say) may have ended
        // its reopening: none is applied again until the next reread finds it still stored.
        if self.reopenings.load().contains_key(name.as_str()) {
            self.reopenings.rcu(|reopenings| {
                let mut without = (**reopenings).clone();
                without.remove(name.as_str());
                without
            });
        }
        Ok(())
    }

    /// Puts `fingerprint` on the snapshot's deny list (revoked here, or by another replica).
    pub(super) async fn note_revoked(&self, fingerprint: Fingerprint) {
        let _update = self.updates.lock().await;
        self.publish(self.snapshot().with_revoked(fingerprint));
    }

    pub(super) fn pool(&self) -> &Db {
        &self.pool
    }

    /// Sets a client's mode. A watching guard of the client is cancelled; with `guard`, the
    /// change is watched (see `guard`).
    pub async fn set_mode(
        &self,
        name: &ClientName,
        mode: MigrationMode,
        guard: Option<GuardStart>,
        change: Change<'_>,
    ) -> Result<MigrationMode, RegistryError> {
        let was = std::cell::Cell::new(mode);
        let before = self.update_client(
            name,
            Update {
                event: "mode_changed",
                intent: Some(Intent::Switch(name)),
            },
            change,
            |_, client| {
                was.set(client.mode);
                client.mode = mode;
                Ok(())
            },
            |before, after| {
                (
                    before.mode.as_str().to_owned(),
                    after.mode.as_str().to_owned(),
                )
            },
            async |tx| {
                let at = now();
                on_backend!(&mut *tx, tx => sqlx::query("UPDATE clients SET mode = $1, updated_at = $2 WHERE name = $3")
                    .bind(mode.as_str())
                    .bind(at)
                    .bind(name.as_str())
                    .execute(&mut **tx)
                    .await
                    .map(|_| ()))?;
                super::guard_start::replace_guard(tx, name, (was.get(), mode), guard, at).await
            },
        )
        .await?;
        // The change ended any reopening of the client: this replica stops admitting it now
        // (the others at their next guard tick, within a second).
        if let Err(error) = self.refresh_guards_in_force().await {
            tracing::error!(client = %name, error = %error, "reading the reopenings after a mode change failed");
        }
        Ok(before.mode)
    }

    pub async fn set_disabled(
        &self,
        name: &ClientName,
        disabled: bool,
        change: Change<'_>,
    ) -> Result<(), RegistryError> {
        let describe = |d: bool| if d { "disabled" } else { "enabled" }.to_owned();
        self.update_client(
            name,
            Update {
                event: "client_disabled_changed",
                intent: Some(Intent::Switch(name)),
            },
            change,
            |_, client| {
                client.disabled = disabled;
                Ok(())
            },
            |before, after| (describe(before.disabled), describe(after.disabled)),
            async |tx| {
                on_backend!(tx, tx => sqlx::query("UPDATE clients SET disabled = $1, updated_at = $2 WHERE name = $3")
                    .bind(disabled)
                    .bind(now())
                    .bind(name.as_str())
                    .execute(&mut **tx)
                    .await
                    .map(|_| ()))
            },
        )
        .await
        .map(|_| ())
    }

    /// Replaces a client's certificate bindings. Refused when a binding's issuer is ambiguous,
    /// when one overlaps another client's, or when it would lock every operator out.
    pub async fn set_bindings(
        &self,
        name: &ClientName,
        bindings: Vec<CertBinding>,
        change: Change<'_>,
        issuers: &IssuerIndex,
        force: bool,
    ) -> Result<(), RegistryError> {
        let describe = |bindings: &[CertBinding]| {
            serde_json::to_string(
                &bindings
                    .iter()
                    .map(CertBinding::to_spec)
                    .collect::<Vec<_>>(),
            )
            .unwrap_or_default()
        };
        let written = bindings.clone();
        let checked = bindings.clone();
        self.update_client(
            name,
            Update {
                event: "bindings_changed",
                intent: Some(Intent::Bindings {
                    client: name,
                    force,
                }),
            },
            change,
            |snapshot, client| {
                for (index, binding) in checked.iter().enumerate() {
                    binding.check_issuer(issuers).map_err(|detail| {
                        RegistryError::AmbiguousIssuer {
                            client: name.to_string(),
                            detail,
                        }
                    })?;
                    let other = snapshot
                        .overlapping(name, binding)
                        .map(ClientName::to_string)
                        .or_else(|| checked[..index].contains(binding).then(|| name.to_string()));
                    if let Some(other) = other {
                        return Err(RegistryError::BindingConflict {
                            client: name.to_string(),
                            other,
                        });
                    }
                }
                client.bindings = bindings;
                Ok(())
            },
            |before, after| (describe(&before.bindings), describe(&after.bindings)),
            async |tx| {
                on_backend!(&mut *tx, tx => sqlx::query("DELETE FROM cert_bindings WHERE client = $1")
                    .bind(name.as_str())
                    .execute(&mut **tx)
                    .await
                    .map(|_| ()))?;
                for binding in &written {
                    insert_binding(tx, name, binding).await?;
                }
                Ok(())
            },
        )
        .await
        .map(|_| ())
    }

    /// One admin change to an existing client, with its audit event, in one transaction.
    /// `apply` checks the change against the current snapshot and makes the client as it will
    /// be, to describe the change and to refuse one that would lock every operator out.
    pub(super) async fn update_client(
        &self,
        name: &ClientName,
        Update {
            event: reason,
            intent,
        }: Update<'_>,
        change: Change<'_>,
        apply: impl FnOnce(&RegistrySnapshot, &mut Client) -> Result<(), RegistryError>,
        describe: impl FnOnce(&Client, &Client) -> (String, String),
        write: impl AsyncFnOnce(&mut Tx) -> Result<(), sqlx::Error>,
    ) -> Result<Client, RegistryError> {
        let _guard = self.writes.lock().await;
        let mut tx = self.begin_checked_write().await?;
        // Judge against the client as stored, not as an earlier failed reload left it.
        self.reload_client(name).await?;
        let snapshot = self.snapshot.load_full();
        let before = snapshot
            .client(name)
            .map(|c| Client::clone(c))
            .ok_or_else(|| RegistryError::NotFound(name.to_string()))?;
        let mut after = before.clone();
        apply(&snapshot, &mut after)?;
        if locks_out(&before, &after, snapshot.clients().map(|c| &**c))
            || takes_own_way_in(&snapshot, &change, &after)
        {
            return Err(RegistryError::LastAdmin {
                client: name.to_string(),
            });
        }
        if let (Some(tryout), Some(intent)) = (&change.tryout, intent) {
            let will_be = snapshot.with_client(name, Some(after.clone()));
            try_out(tryout, snapshot, will_be, intent).await?;
        } else {
            drop(snapshot);
        }
        let (was, will_be) = describe(&before, &after);
        let mut event = AuditEvent::new(AuditKind::AdminChange, reason);
        event.client = Some(name.to_string());
        event.actor = Some(change.actor.to_owned());
        event.before = Some(was);
        event.after = Some(will_be);
        event.detail = serde_json::json!({ "note": change.reason });
        async {
            lock_client_row(&mut tx, name).await?;
            write(&mut tx).await?;
            event.insert(&mut tx).await?;
            announce(&mut tx, Notice::Client(name.clone())).await?;
            tx.commit().await
        }
        .await
        .map_err(StorageError::database)?;
        self.reload_client(name).await?;
        Ok(before)
    }
}
