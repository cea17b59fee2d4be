//! What the service recorded and how it sees a caller: the audit log, the counted refusals of
//! callers without a name, the deny list, and `whoami`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{AuthMethod, ClientAuth, MigrationMode, Scope};

/// One audit event: a refusal of a known client, an alert, or an admin change.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    /// RFC 3339.
    pub at: Option<String>,
    /// `auth_refused`, `alert` or `admin_change`.
    pub kind: String,
    /// A reason code, or the operator's reason for a change.
    pub reason: String,
    pub client: Option<String>,
    /// Who made a change: the operator's client and certificate subject.
    pub actor: Option<String>,
    pub method: Option<String>,
    pub before: Option<String>,
    pub after: Option<String>,
    /// What else the event knew (free-form, by kind).
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// The answer to `GET /admin/audit`, newest first.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, ToSchema)]
pub struct AuditLog {
    pub events: Vec<AuditEntry>,
}

/// Refusals of callers the service cannot name, counted per hour, reason and source.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, ToSchema)]
pub struct RefusalCount {
    /// The hour, RFC 3339.
    pub hour: Option<String>,
    pub reason: String,
    /// The caller's network (`203.0.113.0/24`, a /64 for IPv6).
    pub source: String,
    pub count: i64,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    /// What the last one showed (path, issuer, subject), clipped.
    #[schema(value_type = Object)]
    pub last_detail: serde_json::Value,
}

/// The answer to `GET /admin/refusals`, the most recently seen first.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, ToSchema)]
pub struct Refusals {
    pub refusals: Vec<RefusalCount>,
}

/// One entry of the deny list: a certificate by its fingerprint, or a key (every certificate of
/// it) by its SPKI's SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub struct Revocation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spki_sha256: Option<String>,
    pub reason: String,
    pub revoked_by: String,
    /// Unix seconds.
    pub revoked_at: i64,
}

/// The answer to `GET /admin/revocations`: certificates first, then keys, each oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub struct Revocations {
    pub revocations: Vec<Revocation>,
}

/// The verified certificate a caller presented, as `whoami` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub struct CertificateSeen {
    pub subject: String,
    pub issuer: String,
    /// Paste into a binding's `issuer_spki_sha256` to pin the key that signed this leaf.
    pub issuer_spki_sha256: String,
    pub common_names: Vec<String>,
    pub uri_sans: Vec<String>,
    pub spiffe_ids: Vec<String>,
    pub dns_names: Vec<String>,
    pub serial: String,
    pub fingerprint_sha256: String,
    /// The leaf's first, then each certificate up to the trusted root.
    pub chain_fingerprints_sha256: Vec<String>,
    pub not_after: Option<String>,
    /// The earliest notAfter of the path: when this identity stops being accepted.
    pub valid_until: Option<String>,
    pub seconds_until_expiry: i64,
}

/// The answer to `GET /api/whoami`: how the server sees the caller.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub struct Whoami {
    pub client: String,
    pub method: AuthMethod,
    pub mode: MigrationMode,
    pub scopes: std::collections::BTreeSet<Scope>,
    pub certificate: Option<CertificateSeen>,
    pub listener_client_auth: ClientAuth,
}
