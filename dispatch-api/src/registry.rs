//! Registered clients: their migration mode, scopes, certificate bindings and API key hashes.
//!
//! The database is the source of truth; the request path reads an immutable
//! [`RegistrySnapshot`] swapped atomically after every admin write, so authentication never
//! waits on the database. On PostgreSQL, replicas hear each other's writes ([`follow_changes`]).

mod binding;
mod bootstrap;
mod change;
mod compact;
mod error;
mod follow;
mod guard;
mod guard_start;
mod guard_watch;
mod in_force;
mod keys;
mod notice;
mod read;
mod readiness;
mod register;
mod renewal;
mod reopening;
mod revocations;
mod snapshot;
mod store;
mod tally;
mod write;

use std::collections::BTreeSet;
use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

pub use binding::{CertBinding, CertBindingSpec, Kind, Name};
pub(crate) use binding::{Verdict, first_overlap};
pub use bootstrap::{BootstrapClient, BootstrapError, BootstrapFile};
pub use change::{Change, Intent, Tryout};
pub use dispatch_types::{MigrationMode, Scope};
pub use error::RegistryError;
pub use follow::follow_changes;
pub use guard::{GuardEnd, GuardTick, GuardView};
pub use guard_start::GuardStart;
pub use guard_watch::watch_guards;
pub use keys::Rotation;
pub use readiness::{Gap, readiness_gaps};
pub use renewal::{RenewalState, pin_breaks_at_renewal, renewal_state};
pub use reopening::Reopening;
pub use snapshot::{CertMatchFailure, RegistrySnapshot};
pub use store::Registry;
pub use tally::{FlipEvidence, FlipTally};

/// A client's registered name: 1 to 64 of `A-Z a-z 0-9 . _ -`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ClientName(String);

impl ClientName {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() || text.len() > 64 {
            return Err("a client name has 1 to 64 characters".into());
        }
        if !text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(format!(
                "client name `{text}` may only use A-Z a-z 0-9 . _ -"
            ));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ClientName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl<'de> Deserialize<'de> for ClientName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// SHA-256 of an API key. Keys are long random values, so a fast hash is the right tool (a
/// password hash would only slow every request); the raw key is never stored.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ApiKeyHash([u8; 32]);

impl ApiKeyHash {
    pub fn of(key: &SecretString) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, key.expose_secret().as_bytes());
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(digest.as_ref());
        Self(bytes)
    }

    pub fn parse_hex(text: &str) -> Result<Self, String> {
        let bytes =
            hex::decode(text.trim()).map_err(|_| "an API key hash is 64 hex digits".to_owned())?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "an API key hash is 64 hex digits".to_owned())?;
        Ok(Self(bytes))
    }

    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }

    /// Constant-time equality: the lookup is by hash, and the final comparison leaks nothing
    /// about how much of it matched.
    pub fn matches(&self, other: &ApiKeyHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    /// The key's id: the first 12 hex digits of its hash. Names a key in reports, logs and the
    /// audit log; says nothing about the key itself.
    pub fn id(self) -> String {
        hex::encode(&self.0[..6])
    }
}

/// One of a client's API keys: the current one, or the one a rotation replaced, valid until the
/// end of its overlap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiKey {
    pub hash: ApiKeyHash,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds from which it is refused (`key_expired`); `None`: until it is replaced.
    pub expires_at: Option<i64>,
    /// Unix seconds: when a rotation replaced it; `None`: the client's current key.
    pub replaced_at: Option<i64>,
}

impl ApiKey {
    pub fn new(hash: ApiKeyHash, created_at: i64) -> Self {
        Self {
            hash,
            created_at,
            expires_at: None,
            replaced_at: None,
        }
    }

    pub fn expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }
}

/// The most keys a client may have that are not expired: the current one and, during a
/// rotation's overlap, the one it replaced (as AWS IAM allows two).
pub const MAX_LIVE_KEYS: usize = 2;

impl fmt::Debug for ApiKeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKeyHash(..)")
    }
}

/// Makes a new API key: 32 random bytes from the OS, hex, with a prefix that secret scanners and
/// people recognise.
pub fn generate_api_key() -> SecretString {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's random source failed");
    SecretString::from(format!("dk_{}", hex::encode(bytes)))
}

/// A registered client as the request path sees it.
#[derive(Clone, Debug)]
pub struct Client {
    pub name: ClientName,
    pub mode: MigrationMode,
    pub scopes: BTreeSet<Scope>,
    pub disabled: bool,
    pub bindings: Vec<CertBinding>,
    /// Newest first: the current key, then the one a rotation with an overlap replaced (kept
    /// after it expires, until the next rotation, so that its use is told `key_expired`).
    pub api_keys: Vec<ApiKey>,
}

impl Client {
    /// The key the last rotation issued, if any.
    pub fn current_key(&self) -> Option<&ApiKey> {
        self.api_keys
            .first()
            .filter(|key| key.replaced_at.is_none())
    }

    /// The key of this client whose hash this is (compared in constant time).
    pub fn key(&self, hash: &ApiKeyHash) -> Option<&ApiKey> {
        self.api_keys.iter().find(|key| key.hash.matches(hash))
    }

    /// Whether a key of this client is not expired at `now`.
    pub fn has_live_key(&self, now: i64) -> bool {
        self.api_keys.iter().any(|key| !key.expired(now))
    }

    /// Whether this client can reach `/admin`: enabled, with the `admin` scope, and able to
    /// authenticate by certificate (not in `api_key` mode, with a binding). Admin never takes a
    /// key, so this is the only way in.
    pub fn administers(&self) -> bool {
        !self.disabled
            && self.scopes.contains(&Scope::Admin)
            && self.mode != MigrationMode::ApiKey
            && !self.bindings.is_empty()
    }
}

/// Whether changing `before` into `after` would leave nobody able to administer: `before`
/// could, `after` cannot, and no other client of `clients` can.
pub fn locks_out<'a>(
    before: &Client,
    after: &Client,
    mut clients: impl Iterator<Item = &'a Client>,
) -> bool {
    before.administers()
        && !after.administers()
        && !clients.any(|c| c.name != before.name && c.administers())
}

#[cfg(test)]
mod tests;
