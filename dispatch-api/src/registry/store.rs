//! The registry's tables and the snapshot the request path reads.

use std::collections::BTreeSet;
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use sqlx::Row;

use super::Verdict;
use super::follow::Notice;
use super::read::{read_client, read_snapshot};
use super::{
    ApiKey, ApiKeyHash, CertBinding, Client, ClientName, MAX_LIVE_KEYS, MigrationMode,
    RegistrySnapshot, Scope, locks_out,
};
use crate::configuration::FlipGuard;
use crate::identity::{Fingerprint, IssuerIndex, VerifiedCertificate};
use crate::storage::recorder::{AuditEvent, AuditKind};
use crate::storage::{Backend, Db, StorageError, Tx, on_backend};

/// Why a registry write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("no client is registered as `{0}`")]
    NotFound(String),
    #[error("a client named `{0}` is already registered")]
    AlreadyExists(String),
    /// A binding of `client` would name certificates that `other` is bound to already.
    #[error(
        "a certificate binding of `{client}` overlaps one of `{other}`: one certificate would name both"
    )]
    BindingConflict { client: String, other: String },
    /// A binding's issuer could stand for more than one CA key.
    #[error("client `{client}`: {detail}")]
    AmbiguousIssuer { client: String, detail: String },
    /// The change would leave no enabled client with the `admin` scope that can authenticate by
    /// certificate: nobody could reach `/admin` again.
    #[error(
        "`{client}` is the last client that can reach /admin (enabled, admin scope, a certificate \
         binding, not in api_key mode); this change would lock every operator out. Give another \
         client that access first"
    )]
    LastAdmin { client: String },
    /// A rotation while the key an earlier one replaced is still valid: a client has at most
    /// two live keys.
    #[error(
        "`{client}` already has two live keys: `{key_id}`, replaced by the last rotation, is \
         valid until {until} (unix seconds). Wait for it to expire, or remove the keys first"
    )]
    OverlapRunning {
        client: String,
        key_id: String,
        until: i64,
    },
    /// The change would let a certificate a client presented within the evidence window in as
    /// another client, or make it ambiguous: an outage of `owner` caused by one admin call.
    #[error(
        "this change would capture the live certificate of `{owner}` ({certificate}): {outcome}. \
         Bind the client you are changing to something that certificate does not carry (another \
         CN, SPIFFE ID, issuer key or pin)"
    )]
    CapturesLiveCertificate {
        owner: String,
        certificate: String,
        outcome: String,
    },
    /// The change would let the operator's own certificate in as another client, or make it
    /// ambiguous: the operator would be locked out by their own call.
    #[error(
        "this change would capture the certificate you are using, {certificate} (now `{owner}`): \
         {outcome}, and you would be locked out of /admin. Bind the client you are changing to \
         something that certificate does not carry"
    )]
    CapturesOwnCertificate {
        owner: String,
        certificate: String,
        outcome: String,
    },
    /// The change would keep out the certificate `client` presented within the evidence window.
    #[error(
        "`{client}` presented {certificate} recently; after this change it would be refused \
         ({outcome}). Keep a binding that names it until the client has its new certificate, or \
         set \"force\": true"
    )]
    CutsOffLiveCertificate {
        client: String,
        certificate: String,
        outcome: String,
    },
    /// A revocation of a certificate of the chain the operator is using right now.
    #[error(
        "`{fingerprint}` is a certificate of the chain you are using: revoking it would lock you \
         out (and, for a CA, every client it issued). Revoke it with another operator's certificate"
    )]
    OwnCertificate { fingerprint: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

pub struct Registry {
    pool: Db,
    snapshot: ArcSwap<RegistrySnapshot>,
    /// Serialises admin writes so that each snapshot swap follows its own write.
    pub(super) writes: tokio::sync::Mutex<()>,
    /// Serialises every change of the snapshot (read the database, make the next snapshot from
    /// the current one, store it): an admin write and the follower applying another replica's
    /// change must not both start from the same snapshot, or the later store would drop the
    /// earlier change. Held over the read, so one that starts later also reads later.
    updates: tokio::sync::Mutex<()>,
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

async fn insert_binding(
    tx: &mut Tx,
    client: &ClientName,
    binding: &CertBinding,
) -> Result<(), sqlx::Error> {
    on_backend!(tx, tx => sqlx::query(
        "INSERT INTO cert_bindings (client, issuer, issuer_spki_sha256, subject_cn, spiffe_id, fingerprints) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(client.as_str())
    .bind(binding.issuer.as_ref().map(|i| i.as_str().to_owned()))
    .bind(binding.issuer_spki.map(|k| k.to_string()))
    .bind(binding.subject_cn.as_deref())
    .bind(binding.spiffe_id.as_ref().map(|s| s.as_str().to_owned()))
    .bind(
        binding
            .fingerprints
            .iter()
            .map(Fingerprint::to_string)
            .collect::<Vec<_>>()
            .join(" "),
    )
    .execute(&mut **tx)
    .await
    .map(|_| ()))
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
                .bind(super::follow::CHANNEL)
                .bind(notice.payload(version))
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(())
}

/// Who made an admin change and why: recorded with the change.
pub struct Change<'a> {
    pub actor: &'a str,
    pub reason: &'a str,
    /// The operator's verified certificate and the issuers it was judged against, when the
    /// change comes through the admin API: a change that would take the operator's own way in
    /// (and leave no other) is refused.
    pub operator: Option<(&'a VerifiedCertificate, &'a IssuerIndex)>,
    /// The live certificates the change is tried against before it is made (the admin API's
    /// changes; `auth::tryout`). Bootstrap has none.
    pub tryout: Option<&'a dyn Tryout>,
}

/// What a change means to do, for [`Tryout::check`]: which client it is about, and whether
/// keeping that client's own certificate out is its purpose.
#[derive(Debug, Clone, Copy)]
pub enum Intent<'a> {
    /// New clients: they can only capture, never cut off.
    Register,
    /// New bindings: keeping the client's own live certificate out is a mistake unless forced.
    Bindings { client: &'a ClientName, force: bool },
    /// A mode change or a disable: keeping the client's own certificate out may be the point.
    Switch(&'a ClientName),
    /// A deny-list entry: keeping certificates out is the point.
    Revocation,
}

/// What an update of one client is: its audit event's reason, and what it means to do (for the
/// tryout; `None`: nothing a certificate proves changes).
struct Update<'a> {
    event: &'a str,
    intent: Option<Intent<'a>>,
}

/// A registry change tried against live certificates before it is made: the registry as it is
/// and as it would be, and what the change means to do. Implemented above the registry, where
/// authentication is (`auth::tryout`), and called under the registry's write lock so that
/// nothing this process does changes between the try and the write. (Another replica's write to
/// another client can: the checks see this replica's snapshot, as the README says of all
/// admin checks on PostgreSQL.)
pub trait Tryout: Sync {
    fn check(
        &self,
        now: &RegistrySnapshot,
        will_be: &RegistrySnapshot,
        intent: Intent<'_>,
    ) -> Result<(), RegistryError>;
}

impl Registry {
    pub async fn load(pool: Db) -> Result<Self, StorageError> {
        let snapshot = read_snapshot(&pool).await.map_err(StorageError::database)?;
        Ok(Self {
            pool,
            snapshot: ArcSwap::from_pointee(snapshot),
            writes: tokio::sync::Mutex::new(()),
            updates: tokio::sync::Mutex::new(()),
        })
    }

    /// The current view: a cheap atomic load, no lock, no database.
    pub fn snapshot(&self) -> Guard<Arc<RegistrySnapshot>> {
        self.snapshot.load()
    }

    /// Reads every table into a new snapshot.
    pub(super) async fn refresh(&self) -> Result<(), StorageError> {
        let _update = self.updates.lock().await;
        let snapshot = read_snapshot(&self.pool)
            .await
            .map_err(StorageError::database)?;
        self.snapshot.store(Arc::new(snapshot));
        Ok(())
    }

    /// Reads one client as stored into the snapshot: a change costs the same whatever the
    /// number of clients (no full read, no rebuild).
    pub(super) async fn reload_client(&self, name: &ClientName) -> Result<(), StorageError> {
        let _update = self.updates.lock().await;
        let stored = read_client(&self.pool, name)
            .await
            .map_err(StorageError::database)?;
        let next = self.snapshot().with_client(name, stored);
        self.snapshot.store(Arc::new(next));
        Ok(())
    }

    /// Puts `fingerprint` on the snapshot's deny list (revoked here, or by another replica).
    pub(super) async fn note_revoked(&self, fingerprint: Fingerprint) {
        let _update = self.updates.lock().await;
        let next = self.snapshot().with_revoked(fingerprint);
        self.snapshot.store(Arc::new(next));
    }

    pub(super) fn pool(&self) -> &Db {
        &self.pool
    }

    /// Registers a client unless one of that name exists; returns whether it was added.
    pub async fn register(
        &self,
        client: &Client,
        change: Option<Change<'_>>,
        issuers: &IssuerIndex,
    ) -> Result<bool, RegistryError> {
        Ok(self
            .register_all(std::slice::from_ref(client), change, issuers)
            .await?
            == 1)
    }

    /// Registers every client that does not exist yet, in one transaction with one snapshot
    /// swap (bootstrap files may hold many); returns how many were added. Bootstrap calls this
    /// with `change = None`; it never overwrites, so a restart cannot undo an operator's flip.
    ///
    /// Refused as a whole when a binding's issuer is ambiguous under `issuers` (the current
    /// client CA bundle), or when a binding overlaps another client's, registered or new.
    pub async fn register_all(
        &self,
        clients: &[Client],
        change: Option<Change<'_>>,
        issuers: &IssuerIndex,
    ) -> Result<usize, RegistryError> {
        let _guard = self.writes.lock().await;
        // The registry as it will be, grown one client at a time, so that each new client is
        // checked against those registered and those before it in `clients`, through the
        // indexes (a bootstrap file may hold a million).
        let mut will_be = RegistrySnapshot::clone(&self.snapshot());
        let mut absent = 0;
        for client in clients {
            if will_be.client(&client.name).is_some() {
                continue;
            }
            for binding in &client.bindings {
                binding
                    .check_issuer(issuers)
                    .map_err(|detail| RegistryError::AmbiguousIssuer {
                        client: client.name.to_string(),
                        detail,
                    })?;
                if let Some(other) = will_be.overlapping(&client.name, binding) {
                    return Err(RegistryError::BindingConflict {
                        client: client.name.to_string(),
                        other: other.to_string(),
                    });
                }
            }
            will_be = will_be.with_client(&client.name, Some(client.clone()));
            absent += 1;
        }
        if let Some(tryout) = change.as_ref().and_then(|c| c.tryout) {
            tryout.check(&self.snapshot(), &will_be, Intent::Register)?;
        }
        drop(will_be);
        let added = self
            .insert_absent(clients, change.as_ref())
            .await
            .map_err(StorageError::database)?;
        if added.len() == absent {
            // What was added, onto the snapshot as it is now (the follower may have applied
            // other replicas' changes meanwhile), not onto the one checked above.
            let _update = self.updates.lock().await;
            let mut next = RegistrySnapshot::clone(&self.snapshot());
            let mut added = added.clone();
            // The first of each name, as `insert_absent` stored it.
            for client in clients {
                if added.remove(&client.name) {
                    next = next.with_client(&client.name, Some(client.clone()));
                }
            }
            self.snapshot.store(Arc::new(next));
        } else {
            // Another writer of the database got there first: read what is stored.
            self.refresh().await?;
        }
        Ok(added.len())
    }

    /// The write of `register_all`, in one transaction: every absent client with its bindings,
    /// key and audit event. Returns the names added.
    async fn insert_absent(
        &self,
        clients: &[Client],
        change: Option<&Change<'_>>,
    ) -> Result<BTreeSet<ClientName>, sqlx::Error> {
        let now = now();
        let mut tx = self.pool.begin().await?;
        let mut added = Vec::new();
        for client in clients {
            let inserted = on_backend!(&mut tx, tx => sqlx::query(
                "INSERT INTO clients (name, mode, scopes, disabled, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING",
            )
            .bind(client.name.as_str())
            .bind(client.mode.as_str())
            .bind(scopes_text(&client.scopes))
            .bind(client.disabled)
            .bind(now)
            .bind(now)
            .execute(&mut **tx)
            .await?
            .rows_affected())
                == 1;
            if !inserted {
                continue;
            }
            added.push(&client.name);
            for binding in &client.bindings {
                insert_binding(&mut tx, &client.name, binding).await?;
            }
            for key in &client.api_keys {
                insert_api_key(&mut tx, &client.name, *key).await?;
            }
            let mut event = AuditEvent::new(AuditKind::AdminChange, "client_registered");
            event.client = Some(client.name.to_string());
            event.after = Some(client.mode.as_str().to_owned());
            match change {
                Some(change) => {
                    event.actor = Some(change.actor.to_owned());
                    event.detail = serde_json::json!({ "note": change.reason });
                }
                None => event.actor = Some("bootstrap".into()),
            }
            event.insert(&mut tx).await?;
        }
        match added.as_slice() {
            [] => {}
            [one] => announce(&mut tx, Notice::Client((*one).clone())).await?,
            _ => announce(&mut tx, Notice::All).await?,
        }
        tx.commit().await?;
        Ok(added.into_iter().cloned().collect())
    }

    /// Sets a client's mode; returns the mode before. Takes effect on the next request.
    /// Sets a client's mode. A watching guard of the client is cancelled; with `guard`, the
    /// change is watched (see `guard`).
    pub async fn set_mode(
        &self,
        name: &ClientName,
        mode: MigrationMode,
        guard: Option<FlipGuard>,
        change: Change<'_>,
    ) -> Result<MigrationMode, RegistryError> {
        let was = std::cell::Cell::new(mode);
        self.update_client(
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
                super::guard::replace_guard(tx, name, (was.get(), mode), guard, at).await
            },
        )
        .await
        .map(|before| before.mode)
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

    /// Issues a client's new key. With an overlap, the key it replaces stays valid for
    /// `overlap_secs` more (then `key_expired`); without, it goes at once. Refused while an
    /// earlier rotation's overlap is still running: a client has at most [`MAX_LIVE_KEYS`].
    pub async fn rotate_api_key(
        &self,
        name: &ClientName,
        rotation: Rotation,
        change: Change<'_>,
    ) -> Result<(), RegistryError> {
        let at = now();
        let planned = std::cell::RefCell::new(KeyWrites::default());
        // A key changes nothing a certificate proves: nothing to try.
        self.update_client(
            name,
            Update {
                event: "api_key_rotated",
                intent: None,
            },
            change,
            |_, client| {
                *planned.borrow_mut() = plan_rotation(client, &rotation, at)?;
                Ok(())
            },
            |before, after| (describe_keys(before, at), describe_keys(after, at)),
            async |tx| {
                let planned = planned.take();
                for hash in planned.removed {
                    on_backend!(&mut *tx, tx => sqlx::query("DELETE FROM api_keys WHERE key_sha256 = $1")
                        .bind(hash.to_hex())
                        .execute(&mut **tx)
                        .await
                        .map(|_| ()))?;
                }
                if let Some((hash, until)) = planned.retiring {
                    on_backend!(&mut *tx, tx => sqlx::query(
                        "UPDATE api_keys SET expires_at = $1, replaced_at = $2 WHERE key_sha256 = $3",
                    )
                        .bind(until)
                        .bind(at)
                        .bind(hash.to_hex())
                        .execute(&mut **tx)
                        .await
                        .map(|_| ()))?;
                }
                if let Some(key) = planned.issued {
                    insert_api_key(tx, name, key).await?;
                }
                Ok(())
            },
        )
        .await
        .map(|_| ())
    }

    /// Removes every key of a client, the one in an overlap included.
    pub async fn remove_api_keys(
        &self,
        name: &ClientName,
        change: Change<'_>,
    ) -> Result<(), RegistryError> {
        let at = now();
        // A key changes nothing a certificate proves: nothing to try.
        self.update_client(
            name,
            Update {
                event: "api_key_removed",
                intent: None,
            },
            change,
            |_, client| {
                client.api_keys.clear();
                Ok(())
            },
            |before, after| (describe_keys(before, at), describe_keys(after, at)),
            async |tx| {
                on_backend!(&mut *tx, tx => sqlx::query("DELETE FROM api_keys WHERE client = $1")
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
    async fn update_client(
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
        // Judge against the client as stored, not as an earlier failed reload left it.
        self.reload_client(name).await?;
        let snapshot = self.snapshot();
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
        if let (Some(tryout), Some(intent)) = (change.tryout, intent) {
            let will_be = snapshot.with_client(name, Some(after.clone()));
            tryout.check(&snapshot, &will_be, intent)?;
        }
        drop(snapshot);
        let (was, will_be) = describe(&before, &after);
        let mut event = AuditEvent::new(AuditKind::AdminChange, reason);
        event.client = Some(name.to_string());
        event.actor = Some(change.actor.to_owned());
        event.before = Some(was);
        event.after = Some(will_be);
        event.detail = serde_json::json!({ "note": change.reason });
        async {
            let mut tx = self.pool.begin().await?;
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

    /// Adds a certificate to the deny list; effective on the next request.
    pub async fn revoke(
        &self,
        fingerprint: Fingerprint,
        change: Change<'_>,
    ) -> Result<bool, RegistryError> {
        if let Some((certificate, _)) = change.operator
            && certificate.fingerprints().any(|f| *f == fingerprint)
        {
            return Err(RegistryError::OwnCertificate {
                fingerprint: fingerprint.to_string(),
            });
        }
        let _guard = self.writes.lock().await;
        if let Some(tryout) = change.tryout {
            let snapshot = self.snapshot();
            tryout.check(
                &snapshot,
                &snapshot.with_revoked(fingerprint),
                Intent::Revocation,
            )?;
        }
        let mut event = AuditEvent::new(AuditKind::AdminChange, "certificate_revoked");
        event.actor = Some(change.actor.to_owned());
        event.after = Some(fingerprint.to_string());
        event.detail = serde_json::json!({ "note": change.reason });
        let added = async {
            let mut tx = self.pool.begin().await?;
            let added = on_backend!(&mut tx, tx => sqlx::query(
                "INSERT INTO revoked_certificates (fingerprint, reason, revoked_by, revoked_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (fingerprint) DO NOTHING",
            )
            .bind(fingerprint.to_string())
            .bind(change.reason)
            .bind(change.actor)
            .bind(now())
            .execute(&mut **tx)
            .await?
            .rows_affected())
                == 1;
            event.insert(&mut tx).await?;
            if added {
                announce(&mut tx, Notice::Revoked(fingerprint)).await?;
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(added)
        }
        .await
        .map_err(StorageError::database)?;
        self.note_revoked(fingerprint).await;
        Ok(added)
    }

    pub async fn revocations(&self) -> Result<Vec<serde_json::Value>, StorageError> {
        on_backend!(&self.pool, pool => {
            let rows = sqlx::query(
                "SELECT fingerprint, reason, revoked_by, revoked_at FROM revoked_certificates ORDER BY revoked_at",
            )
            .fetch_all(pool)
            .await
            .map_err(StorageError::database)?;
            rows.iter()
                .map(|row| {
                    Ok(serde_json::json!({
                        "fingerprint": row.try_get::<String, _>("fingerprint")?,
                        "reason": row.try_get::<String, _>("reason")?,
                        "revoked_by": row.try_get::<String, _>("revoked_by")?,
                        "revoked_at": row.try_get::<i64, _>("revoked_at")?,
                    }))
                })
                .collect::<Result<_, sqlx::Error>>()
                .map_err(StorageError::database)
        })
    }
}

async fn insert_api_key(tx: &mut Tx, client: &ClientName, key: ApiKey) -> Result<(), sqlx::Error> {
    on_backend!(tx, tx => sqlx::query(
        "INSERT INTO api_keys (client, key_sha256, created_at, expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(client.as_str())
    .bind(key.hash.to_hex())
    .bind(key.created_at)
    .bind(key.expires_at)
    .execute(&mut **tx)
    .await
    .map(|_| ()))
}

/// A rotation as asked for.
#[derive(Debug, Clone, Copy)]
pub struct Rotation {
    /// The new key's hash.
    pub key: ApiKeyHash,
    /// How long the key it replaces stays valid; 0: it goes at once.
    pub overlap_secs: u64,
    /// The new key's own lifetime; `None`: until it is replaced.
    pub expires_in_secs: Option<u64>,
}

/// The rows a rotation changes.
#[derive(Debug, Default)]
pub(super) struct KeyWrites {
    pub(super) removed: Vec<ApiKeyHash>,
    /// The replaced key and the end of its overlap.
    pub(super) retiring: Option<(ApiKeyHash, i64)>,
    pub(super) issued: Option<ApiKey>,
}

/// A rotation applied to `client`'s keys at `now` (pure): expired keys go, the current one
/// goes or retires at the end of the overlap (never later than it would have expired anyway),
/// the new one comes first. Refused while another key is live beside the current one.
pub(super) fn plan_rotation(
    client: &mut Client,
    rotation: &Rotation,
    now: i64,
) -> Result<KeyWrites, RegistryError> {
    let mut writes = KeyWrites::default();
    let live = client
        .api_keys
        .iter()
        .filter(|key| !key.expired(now))
        .count();
    if live >= MAX_LIVE_KEYS {
        let retiring = client.api_keys.iter().skip(1).find(|key| !key.expired(now));
        return Err(RegistryError::OverlapRunning {
            client: client.name.to_string(),
            key_id: retiring.map(|key| key.hash.id()).unwrap_or_default(),
            until: retiring.and_then(|key| key.expires_at).unwrap_or(now),
        });
    }
    let (expired, mut kept): (Vec<ApiKey>, Vec<ApiKey>) =
        client.api_keys.iter().partition(|key| key.expired(now));
    writes.removed.extend(expired.iter().map(|key| key.hash));
    if let Some(current) = kept.first_mut() {
        let until = now.saturating_add_unsigned(rotation.overlap_secs);
        if rotation.overlap_secs == 0 {
            writes.removed.push(current.hash);
            kept.clear();
        } else {
            let until = current.expires_at.map_or(until, |at| at.min(until));
            current.expires_at = Some(until);
            current.replaced_at = Some(now);
            writes.retiring = Some((current.hash, until));
        }
    }
    let issued = ApiKey {
        hash: rotation.key,
        created_at: now,
        expires_at: rotation
            .expires_in_secs
            .map(|secs| now.saturating_add_unsigned(secs)),
        replaced_at: None,
    };
    writes.issued = Some(issued);
    client.api_keys = std::iter::once(issued).chain(kept).collect();
    Ok(writes)
}

/// A client's keys for the audit log: each key's id and until when it is valid.
pub(super) fn describe_keys(client: &Client, now: i64) -> String {
    if client.api_keys.is_empty() {
        return "no key".into();
    }
    let keys: Vec<String> = client
        .api_keys
        .iter()
        .map(|key| match key.expires_at {
            None => format!("key {}", key.hash.id()),
            Some(at) if at <= now => format!("key {} (expired)", key.hash.id()),
            Some(at) => format!("key {} (until {at})", key.hash.id()),
        })
        .collect();
    keys.join(", ")
}

pub(super) fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn scopes_text(scopes: &BTreeSet<Scope>) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}
