//! The certificate deny list: a fingerprint revoked through the admin API, or a key denied
//! (every certificate of a stolen private key), effective on the next request of every
//! replica.

use sqlx::Row;

use super::follow::Notice;
use super::write::{announce, now};
use super::{Change, Intent, Registry, RegistryError};
use crate::identity::{Fingerprint, SpkiHash};
use crate::storage::recorder::{AuditEvent, AuditKind};
use crate::storage::{StorageError, on_backend};

impl Registry {
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

    /// Puts a key on the deny list: every certificate whose public key it is, whatever its
    /// fingerprint (a renewal that reused a stolen key), is refused from the next request on.
    /// Refused for the key of the operator's own certificate.
    pub async fn deny_key(&self, key: SpkiHash, change: Change<'_>) -> Result<bool, RegistryError> {
        if let Some((certificate, _)) = change.operator
            && certificate.leaf.spki == key
        {
            return Err(RegistryError::OwnCertificate {
                fingerprint: certificate.leaf.fingerprint.to_string(),
            });
        }
        let _guard = self.writes.lock().await;
        if let Some(tryout) = change.tryout {
            let snapshot = self.snapshot();
            tryout.check(
                &snapshot,
                &snapshot.with_denied_keys([key]),
                Intent::Revocation,
            )?;
        }
        let mut event = AuditEvent::new(AuditKind::AdminChange, "key_denied");
        event.actor = Some(change.actor.to_owned());
        event.after = Some(key.to_string());
        event.detail = serde_json::json!({ "note": change.reason });
        let added = async {
            let mut tx = self.pool.begin().await?;
            let added = on_backend!(&mut tx, tx => sqlx::query(
                "INSERT INTO denied_keys (spki_sha256, reason, denied_by, denied_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (spki_sha256) DO NOTHING",
            )
            .bind(key.to_string())
            .bind(change.reason)
            .bind(change.actor)
            .bind(now())
            .execute(&mut **tx)
            .await?
            .rows_affected())
                == 1;
            event.insert(&mut tx).await?;
            if added {
                // Rare, and urgent: the other replicas read the whole registry.
                announce(&mut tx, Notice::All).await?;
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(added)
        }
        .await
        .map_err(StorageError::database)?;
        let _update = self.updates.lock().await;
        self.publish(self.snapshot().with_denied_keys([key]));
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
                .chain(
                    sqlx::query(
                        "SELECT spki_sha256, reason, denied_by, denied_at FROM denied_keys ORDER BY denied_at",
                    )
                    .fetch_all(pool)
                    .await
                    .map_err(StorageError::database)?
                    .iter()
                    .map(|row| {
                        Ok(serde_json::json!({
                            "spki_sha256": row.try_get::<String, _>("spki_sha256")?,
                            "reason": row.try_get::<String, _>("reason")?,
                            "revoked_by": row.try_get::<String, _>("denied_by")?,
                            "revoked_at": row.try_get::<i64, _>("denied_at")?,
                        }))
                    }),
                )
                .collect::<Result<_, sqlx::Error>>()
                .map_err(StorageError::database)
        })
    }
}
