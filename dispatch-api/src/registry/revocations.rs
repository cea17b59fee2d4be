//! The certificate deny list: a fingerprint revoked through the admin API, or a key denied
//! (every certificate of a stolen private key), effective on the next request of every
//! replica.

use sqlx::Row;

use super::change::try_out;
use super::notice::Notice;
use super::write::{announce, now};
use super::{Change, Intent, Registry, RegistryError, RegistrySnapshot};
use crate::identity::{Fingerprint, SpkiHash, VerifiedCertificate};
use crate::storage::recorder::{AuditEvent, AuditKind};
use crate::storage::{StorageError, on_backend};

/// What an operator puts on the deny list: one certificate, or a key (every certificate of it).
#[derive(Debug, Clone, Copy)]
enum Denied {
    Certificate(Fingerprint),
    Key(SpkiHash),
}

impl Denied {
    /// Whether it would take the certificate the operator is using right now.
    fn takes(self, certificate: &VerifiedCertificate) -> bool {
        match self {
            Self::Certificate(fingerprint) => certificate.fingerprints().any(|f| *f == fingerprint),
            Self::Key(key) => certificate.leaf.spki == key,
        }
    }

    /// `snapshot` with it on the deny list.
    fn applied_to(self, snapshot: &RegistrySnapshot) -> RegistrySnapshot {
        match self {
            Self::Certificate(fingerprint) => snapshot.with_revoked(fingerprint),
            Self::Key(key) => snapshot.with_denied_keys([key]),
        }
    }

    fn text(self) -> String {
        match self {
            Self::Certificate(fingerprint) => fingerprint.to_string(),
            Self::Key(key) => key.to_string(),
        }
    }

    /// Its audit reason, its row (value, reason, by, at), and what the other replicas hear.
    fn stored_as(self) -> (&'static str, &'static str, Notice) {
        match self {
            Self::Certificate(fingerprint) => (
                "certificate_revoked",
                "INSERT INTO revoked_certificates (fingerprint, reason, revoked_by, revoked_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (fingerprint) DO NOTHING",
                Notice::Revoked(fingerprint),
            ),
            // Rare, and urgent: the other replicas read the whole registry.
            Self::Key(_) => (
                "key_denied",
                "INSERT INTO denied_keys (spki_sha256, reason, denied_by, denied_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (spki_sha256) DO NOTHING",
                Notice::All,
            ),
        }
    }
}

impl Registry {
    /// Adds a certificate to the deny list; effective on the next request.
    pub async fn revoke(
        &self,
        fingerprint: Fingerprint,
        change: Change<'_>,
    ) -> Result<bool, RegistryError> {
        self.deny(Denied::Certificate(fingerprint), change).await
    }

    /// Puts a key on the deny list: every certificate whose public key it is, whatever its
    /// fingerprint (a renewal that reused a stolen key), is refused from the next request on.
    pub async fn deny_key(&self, key: SpkiHash, change: Change<'_>) -> Result<bool, RegistryError> {
        self.deny(Denied::Key(key), change).await
    }

    /// Puts `denied` on the deny list, unless it would take the operator's own certificate
    /// (or the tryout refuses it); whether it was not there yet.
    async fn deny(&self, denied: Denied, change: Change<'_>) -> Result<bool, RegistryError> {
        if let Some((certificate, _)) = change.operator
            && denied.takes(certificate)
        {
            // The certificate of the operator's chain it names, or the leaf of the denied key.
            let fingerprint = match denied {
                Denied::Certificate(fingerprint) => fingerprint,
                Denied::Key(_) => certificate.leaf.fingerprint,
            };
            return Err(RegistryError::OwnCertificate {
                fingerprint: fingerprint.to_string(),
            });
        }
        let _guard = self.writes.lock().await;
        let mut tx = self.begin_checked_write().await?;
        if let Some(tryout) = &change.tryout {
            let snapshot = self.snapshot.load_full();
            let will_be = denied.applied_to(&snapshot);
            try_out(tryout, snapshot, will_be, Intent::Revocation).await?;
        }
        let (reason, insert, notice) = denied.stored_as();
        let mut event = AuditEvent::new(AuditKind::AdminChange, reason);
        event.actor = Some(change.actor.to_owned());
        event.after = Some(denied.text());
        event.detail = serde_json::json!({ "note": change.reason });
        let added = async {
            let added = on_backend!(&mut tx, tx => sqlx::query(insert)
                .bind(denied.text())
                .bind(change.reason)
                .bind(change.actor)
                .bind(now())
                .execute(&mut **tx)
                .await?
                .rows_affected())
                == 1;
            event.insert(&mut tx).await?;
            if added {
                announce(&mut tx, notice).await?;
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(added)
        }
        .await
        .map_err(StorageError::database)?;
        let _update = self.updates.lock().await;
        self.publish(denied.applied_to(&self.snapshot()));
        Ok(added)
    }

    /// Whether this key is on the deny list as this replica knows it.
    pub fn key_denied(&self, key: &SpkiHash) -> bool {
        self.snapshot().denied_keys.contains(key)
    }

    /// Every chain stored as presented (the latest per client, whenever seen), for finding
    /// the keys a CRL revokes for keyCompromise (`tls::watch`).
    pub async fn presented_chains(&self) -> Result<Vec<Vec<Vec<u8>>>, StorageError> {
        crate::storage::live_certificates(&self.pool, 0, 0).await
    }

    pub async fn revocations(&self) -> Result<Vec<dispatch_types::Revocation>, StorageError> {
        on_backend!(&self.pool, pool => {
            let rows = sqlx::query(
                "SELECT fingerprint, reason, revoked_by, revoked_at FROM revoked_certificates ORDER BY revoked_at",
            )
            .fetch_all(pool)
            .await
            .map_err(StorageError::database)?;
            rows.iter()
                .map(|row| {
                    Ok(dispatch_types::Revocation {
                        fingerprint: Some(row.try_get("fingerprint")?),
                        spki_sha256: None,
                        reason: row.try_get("reason")?,
                        revoked_by: row.try_get("revoked_by")?,
                        revoked_at: row.try_get("revoked_at")?,
                    })
                })
                .chain(
                    sqlx::query(
                        "SELECT spki_sha256, reason, denied_by, denied_at FROM denied_keys ORDER BY denied_at",
                    )
                    .fetch_all(pool)
                    .await
                    .map_err(StorageError::database)?
                    .iter()
                    .map(|row| {
                        Ok(dispatch_types::Revocation {
                            fingerprint: None,
                            spki_sha256: Some(row.try_get("spki_sha256")?),
                            reason: row.try_get("reason")?,
                            revoked_by: row.try_get("denied_by")?,
                            revoked_at: row.try_get("denied_at")?,
                        })
                    }),
                )
                .collect::<Result<_, sqlx::Error>>()
                .map_err(StorageError::database)
        })
    }
}
