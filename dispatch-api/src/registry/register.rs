//! Registration: one client through the admin API, or a clients file's worth at start-up,
//! each added only when absent and never overwriting what is registered.

use std::collections::BTreeSet;

use super::change::try_out;
use super::keys::insert_api_key;
use super::notice::Notice;
use super::write::{announce, insert_binding, now, scopes_text};
use super::{Change, Client, ClientName, Intent, Registry, RegistryError, RegistrySnapshot};
use crate::identity::IssuerIndex;
use crate::storage::recorder::{AuditEvent, AuditKind};
use crate::storage::{StorageError, Tx, on_backend};

impl Registry {
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
        let tx = self.begin_checked_write().await?;
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
        if let Some(tryout) = change.as_ref().and_then(|c| c.tryout.as_ref()) {
            try_out(tryout, self.snapshot.load_full(), will_be, Intent::Register).await?;
        } else {
            drop(will_be);
        }
        let added = self
            .insert_absent(tx, clients, change.as_ref())
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
            self.publish(next);
        } else {
            // Another writer of the database got there first: read what is stored.
            self.refresh().await?;
        }
        Ok(added.len())
    }

    /// The write of `register_all`, in its transaction: every absent client with its bindings,
    /// key and audit event. Returns the names added.
    async fn insert_absent(
        &self,
        mut tx: Tx,
        clients: &[Client],
        change: Option<&Change<'_>>,
    ) -> Result<BTreeSet<ClientName>, sqlx::Error> {
        let now = now();
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
}
