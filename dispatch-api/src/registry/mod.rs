//! Registered clients: their migration mode, scopes, certificate bindings and API key hashes.
//!
//! The database is the source of truth; the request path reads an immutable
//! [`RegistrySnapshot`] swapped atomically after every admin write, so authentication never
//! waits on the database. On PostgreSQL, replicas hear each other's writes ([`follow_changes`]).

mod bootstrap;
mod follow;
mod guard;
mod read;
mod snapshot;
mod store;

use std::collections::BTreeSet;
use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

pub use bootstrap::{BootstrapClient, BootstrapError, BootstrapFile};
pub use follow::follow_changes;
pub use guard::{FlipEvidence, FlipTally, GuardEnd, GuardView, watch_guards};
pub use snapshot::{CertMatchFailure, RegistrySnapshot};
pub use store::{Change, Intent, Registry, RegistryError, Rotation, Tryout};

use crate::identity::{
    DistinguishedName, Fingerprint, IssuerIndex, SpiffeId, SpkiHash, VerifiedCertificate,
};

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

/// Where a client is in its move from the shared key to mTLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MigrationMode {
    /// Only the API key is accepted (the starting point).
    ApiKey,
    /// Key or certificate: the transition.
    Dual,
    /// Certificate only; the key is retired and any use of it is an alert.
    Mtls,
}

impl MigrationMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApiKey => "api_key",
            Self::Dual => "dual",
            Self::Mtls => "mtls",
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "api_key" => Ok(Self::ApiKey),
            "dual" => Ok(Self::Dual),
            "mtls" => Ok(Self::Mtls),
            other => Err(format!("`{other}` is not a mode (api_key, dual, mtls)")),
        }
    }
}

/// A permission a client holds.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
pub enum Scope {
    #[serde(rename = "plans:submit")]
    PlansSubmit,
    #[serde(rename = "admin")]
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PlansSubmit => "plans:submit",
            Self::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "plans:submit" => Ok(Self::PlansSubmit),
            "admin" => Ok(Self::Admin),
            other => Err(format!("`{other}` is not a scope (plans:submit, admin)")),
        }
    }
}

/// How a certificate is tied to a client. A name (subject CN, SPIFFE URI SAN, or both, which
/// must then both match) comes with the issuer expected to have signed it; pinned fingerprints
/// narrow it to exact certificates. Binding by issuer plus name, rather than by fingerprint
/// alone, lets a certificate be renewed without re-registering the client.
///
/// The issuer is matched against the verified path, never against printed text: the leaf's
/// issuer name as encoded (RDN by RDN) AND the key that signed it, which is `issuer_spki` when
/// pinned, otherwise the key of the one CA of the bundle with that name (or, for an
/// intermediate outside the bundle, whatever the bundle's only CA signed). A name that could
/// stand for more than one key is ambiguous and refused: see [`CertBinding::check_issuer`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CertBinding {
    pub issuer: Option<DistinguishedName>,
    #[serde(rename = "issuer_spki_sha256")]
    pub issuer_spki: Option<SpkiHash>,
    pub subject_cn: Option<String>,
    pub spiffe_id: Option<SpiffeId>,
    pub fingerprints: Vec<Fingerprint>,
}

/// A binding as written in the bootstrap file or sent to the admin API.
#[derive(Clone, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CertBindingSpec {
    pub issuer: Option<String>,
    pub issuer_spki_sha256: Option<String>,
    pub subject_cn: Option<String>,
    pub spiffe_id: Option<String>,
    #[serde(default)]
    pub fingerprints: Vec<String>,
}

/// How one binding judges one verified certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The binding does not name this certificate.
    NoMatch,
    /// It names it and everything holds.
    Matches,
    /// It names one of several CNs or URI SANs of the certificate: which name is meant?
    Ambiguous,
    /// It names the certificate but expects another issuer (name or key).
    WrongIssuer,
}

impl CertBinding {
    pub fn parse(spec: &CertBindingSpec) -> Result<Self, String> {
        let issuer = spec
            .issuer
            .as_deref()
            .map(DistinguishedName::parse)
            .transpose()?;
        let issuer_spki = spec
            .issuer_spki_sha256
            .as_deref()
            .map(SpkiHash::parse)
            .transpose()?;
        let spiffe_id = spec.spiffe_id.as_deref().map(SpiffeId::parse).transpose()?;
        let subject_cn = spec.subject_cn.as_ref().map(|cn| cn.trim().to_owned());
        if subject_cn.as_deref() == Some("") {
            return Err("subject_cn is empty".into());
        }
        let fingerprints = spec
            .fingerprints
            .iter()
            .map(|f| Fingerprint::parse(f))
            .collect::<Result<Vec<_>, _>>()?;
        let names_a_subject = subject_cn.is_some() || spiffe_id.is_some();
        if !names_a_subject && fingerprints.is_empty() {
            return Err("a binding needs a subject_cn, a spiffe_id or pinned fingerprints".into());
        }
        if names_a_subject && issuer.is_none() {
            // A name alone would let any CA in the bundle mint this client's identity.
            return Err("a binding by subject_cn or spiffe_id needs the expected issuer".into());
        }
        if issuer_spki.is_some() && issuer.is_none() {
            return Err("issuer_spki_sha256 pins the key of the issuer: set issuer too".into());
        }
        Ok(Self {
            issuer,
            issuer_spki,
            subject_cn,
            spiffe_id,
            fingerprints,
        })
    }

    pub fn to_spec(&self) -> CertBindingSpec {
        CertBindingSpec {
            issuer: self.issuer.as_ref().map(|i| i.as_str().to_owned()),
            issuer_spki_sha256: self.issuer_spki.map(|k| k.to_string()),
            subject_cn: self.subject_cn.clone(),
            spiffe_id: self.spiffe_id.as_ref().map(|s| s.as_str().to_owned()),
            fingerprints: self.fingerprints.iter().map(|f| f.to_string()).collect(),
        }
    }

    fn names_a_subject(&self) -> bool {
        self.subject_cn.is_some() || self.spiffe_id.is_some()
    }

    /// Judges a verified certificate. A CN binding needs the subject's only CN, a SPIFFE
    /// binding the certificate's only URI SAN (as X.509-SVID requires); a binding with both
    /// needs both.
    pub(crate) fn judge(&self, cert: &VerifiedCertificate, issuers: &IssuerIndex) -> Verdict {
        let leaf = &cert.leaf;
        if self.names_a_subject() {
            let cn_named = self
                .subject_cn
                .as_ref()
                .is_none_or(|cn| leaf.common_names.contains(cn));
            let id_named = self
                .spiffe_id
                .as_ref()
                .is_none_or(|id| leaf.uri_sans.iter().any(|uri| uri == id.as_str()));
            if !(cn_named && id_named) {
                return Verdict::NoMatch;
            }
            let cn_unique = self.subject_cn.is_none() || leaf.common_names.len() == 1;
            let id_unique = self.spiffe_id.is_none() || leaf.uri_sans.len() == 1;
            if !(cn_unique && id_unique) {
                return Verdict::Ambiguous;
            }
        }
        // Pins (a pin-only binding has nothing else) narrow it to exact certificates; a
        // certificate they exclude is not named by this binding, whatever its issuer.
        if !self.fingerprints.is_empty() && !self.fingerprints.contains(&leaf.fingerprint) {
            return Verdict::NoMatch;
        }
        if let Some(issuer) = &self.issuer
            && !self.issuer_signed(issuer, cert, issuers)
        {
            return Verdict::WrongIssuer;
        }
        Verdict::Matches
    }

    /// Whether the CA that signed the leaf in the verified path is this binding's issuer.
    fn issuer_signed(
        &self,
        issuer: &DistinguishedName,
        cert: &VerifiedCertificate,
        issuers: &IssuerIndex,
    ) -> bool {
        if cert.leaf.issuer != *issuer {
            return false;
        }
        match (self.issuer_spki, issuers.keys_named(issuer)) {
            (Some(pin), _) => cert.issuer_spki == pin,
            (None, [only]) => cert.issuer_spki == *only,
            // An intermediate outside the bundle: its path can only end at the bundle's one CA.
            (None, []) => issuers.ca_count() == 1,
            // Several CAs of this name: refused at start-up and registration; never matches.
            (None, _) => false,
        }
    }

    /// Refuses an issuer that could stand for more than one key: two CAs of the bundle with
    /// that name, or a name outside a bundle of several CAs (any of which could sign an
    /// intermediate that bears it), unless the key is pinned with `issuer_spki_sha256`.
    pub fn check_issuer(&self, issuers: &IssuerIndex) -> Result<(), String> {
        let Some(issuer) = &self.issuer else {
            return Ok(());
        };
        if self.issuer_spki.is_some() {
            return Ok(());
        }
        if let Some(meant) = issuers.reordered(issuer).filter(|meant| *meant != issuer) {
            return Err(format!(
                "the issuer `{issuer}` names no CA of the client CA bundle; `{meant}` is one: names compare attribute by attribute in the order the certificate encodes them (as `openssl x509 -noout -issuer` and /api/whoami print them)"
            ));
        }
        match issuers.keys_named(issuer) {
            [_] => Ok(()),
            [] if issuers.ca_count() <= 1 => Ok(()),
            [] => Err(format!(
                "the issuer `{issuer}` is not a CA of the client CA bundle, which holds {} CAs: any of them could sign an intermediate of that name. Pin the issuing CA's key with issuer_spki_sha256",
                issuers.ca_count()
            )),
            keys => Err(format!(
                "the issuer `{issuer}` is ambiguous: {} CAs of the client CA bundle bear that name (SPKI SHA-256 {}). Pin one with issuer_spki_sha256",
                keys.len(),
                keys.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" and ")
            )),
        }
    }

    /// Whether one certificate could be named by both bindings: the same CN or the same
    /// SPIFFE ID from the same issuer (unless their pins tell them apart), or the same pinned
    /// certificate. Two clients must never hold overlapping bindings.
    pub fn overlaps(&self, other: &CertBinding) -> bool {
        let pins_apart = !self.fingerprints.is_empty()
            && !other.fingerprints.is_empty()
            && !self
                .fingerprints
                .iter()
                .any(|f| other.fingerprints.contains(f));
        if pins_apart {
            return false;
        }
        if !self.names_a_subject() || !other.names_a_subject() {
            // A pinned certificate against a binding that pins it too.
            return !self.fingerprints.is_empty() && !other.fingerprints.is_empty();
        }
        let keys_apart =
            matches!((self.issuer_spki, other.issuer_spki), (Some(a), Some(b)) if a != b);
        let same_name = self.subject_cn.is_some() && self.subject_cn == other.subject_cn
            || self.spiffe_id.is_some() && self.spiffe_id == other.spiffe_id;
        self.issuer == other.issuer && !keys_apart && same_name
    }
}

/// The first of `clients`, other than `client`, with a binding that overlaps `binding`.
fn first_overlap<'a>(
    clients: impl IntoIterator<Item = &'a Client>,
    client: &ClientName,
    binding: &CertBinding,
) -> Option<&'a ClientName> {
    clients
        .into_iter()
        .filter(|other| other.name != *client)
        .find(|other| other.bindings.iter().any(|b| b.overlaps(binding)))
        .map(|other| &other.name)
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
