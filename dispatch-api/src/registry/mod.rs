//! Registered clients: their migration mode, scopes, certificate bindings and API key hashes.
//!
//! SQLite is the source of truth; the request path reads an immutable [`RegistrySnapshot`]
//! swapped atomically after every admin write, so authentication never waits on the database.

mod bootstrap;
mod read;
mod snapshot;
mod store;

use std::collections::BTreeSet;
use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

pub use bootstrap::{BootstrapClient, BootstrapError, BootstrapFile};
pub use snapshot::{CertMatchFailure, RegistrySnapshot};
pub use store::{Change, Registry, RegistryError};

use crate::identity::{DistinguishedName, Fingerprint, PeerCertificate, SpiffeId};

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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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

/// How a certificate is tied to a client. A name (subject CN or SPIFFE URI SAN) must come with
/// the issuer expected to have signed it; pinned fingerprints narrow it to exact certificates.
/// Binding by issuer plus name, rather than by fingerprint alone, lets a certificate be renewed
/// without re-registering the client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CertBinding {
    pub issuer: Option<DistinguishedName>,
    pub subject_cn: Option<String>,
    pub spiffe_id: Option<SpiffeId>,
    pub fingerprints: Vec<Fingerprint>,
}

/// A binding as written in the bootstrap file or sent to the admin API.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CertBindingSpec {
    pub issuer: Option<String>,
    pub subject_cn: Option<String>,
    pub spiffe_id: Option<String>,
    #[serde(default)]
    pub fingerprints: Vec<String>,
}

impl CertBinding {
    pub fn parse(spec: &CertBindingSpec) -> Result<Self, String> {
        let issuer = spec
            .issuer
            .as_deref()
            .map(DistinguishedName::parse)
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
        Ok(Self {
            issuer,
            subject_cn,
            spiffe_id,
            fingerprints,
        })
    }

    pub fn to_spec(&self) -> CertBindingSpec {
        CertBindingSpec {
            issuer: self.issuer.as_ref().map(|i| i.as_str().to_owned()),
            subject_cn: self.subject_cn.clone(),
            spiffe_id: self.spiffe_id.as_ref().map(|s| s.as_str().to_owned()),
            fingerprints: self.fingerprints.iter().map(|f| f.to_string()).collect(),
        }
    }

    fn names(&self, cert: &PeerCertificate) -> bool {
        let by_cn = self
            .subject_cn
            .as_ref()
            .is_some_and(|cn| cert.common_names.iter().any(|c| c == cn));
        let by_spiffe = self
            .spiffe_id
            .as_ref()
            .is_some_and(|id| cert.spiffe_ids.contains(id));
        let by_pin_only = self.subject_cn.is_none()
            && self.spiffe_id.is_none()
            && self.fingerprints.contains(&cert.fingerprint);
        by_cn || by_spiffe || by_pin_only
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
}

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
    pub api_key: Option<ApiKeyHash>,
}

#[cfg(test)]
mod tests;
