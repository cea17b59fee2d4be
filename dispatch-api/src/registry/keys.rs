//! API-key writes: a rotation with its overlap, and removal. The rotation's rule
//! ([`plan_rotation`]) is a pure function of the client and the clock.

use super::change::Update;
use super::write::now;
use super::{
    ApiKey, ApiKeyHash, Change, Client, ClientName, MAX_LIVE_KEYS, Registry, RegistryError,
};
use crate::storage::{Tx, on_backend};

impl Registry {
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
}

impl Registry {
    /// Ends one key of a client at once, by its id (a leaked key): from now on it is refused as
    /// `key_expired`, and the client's other key, if any, stays as it was. Unknown ids, and keys
    /// already ended, are [`RegistryError::KeyNotFound`].
    pub async fn end_api_key(
        &self,
        name: &ClientName,
        key_id: &str,
        change: Change<'_>,
    ) -> Result<(), RegistryError> {
        let at = now();
        let ended = std::cell::Cell::new(None);
        // A key changes nothing a certificate proves: nothing to try.
        self.update_client(
            name,
            Update {
                event: "api_key_ended",
                intent: None,
            },
            change,
            |_, client| {
                ended.set(Some(end_key(client, key_id, at)?));
                Ok(())
            },
            |before, after| (describe_keys(before, at), describe_keys(after, at)),
            async |tx| {
                let Some(hash) = ended.get() else {
                    return Ok(());
                };
                on_backend!(&mut *tx, tx => sqlx::query(
                    "UPDATE api_keys SET expires_at = $1, \
                     replaced_at = CASE WHEN replaced_at IS NULL THEN $1 ELSE replaced_at END \
                     WHERE key_sha256 = $2",
                )
                .bind(at)
                .bind(hash.to_hex())
                .execute(&mut **tx)
                .await
                .map(|_| ()))
            },
        )
        .await
        .map(|_| ())
    }
}

/// `client`'s key `key_id` ended at `now` (pure): it expires now, and is no longer the current
/// key; the other keys are untouched. A key already expired, or no key of that id, is
/// [`RegistryError::KeyNotFound`].
pub(super) fn end_key(
    client: &mut Client,
    key_id: &str,
    now: i64,
) -> Result<ApiKeyHash, RegistryError> {
    let key = client
        .api_keys
        .iter_mut()
        .find(|key| key.hash.id() == key_id && !key.expired(now))
        .ok_or_else(|| RegistryError::KeyNotFound {
            client: client.name.to_string(),
            key_id: key_id.to_owned(),
        })?;
    key.expires_at = Some(now);
    key.replaced_at.get_or_insert(now);
    Ok(key.hash)
}

pub(super) async fn insert_api_key(
    tx: &mut Tx,
    client: &ClientName,
    key: ApiKey,
) -> Result<(), sqlx::Error> {
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
