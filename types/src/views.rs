//! What the admin API shows of clients: one client with its keys, bindings and use, and the
//! migration report (readiness for `mtls` and the latest flip guard of each).
//!
//! Times are RFC 3339 text (`None`: never, or not known).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{AuthMethod, CertBindingSpec, ClientAuth, KeyView, MigrationMode, Scope};

/// One method's use by one client: requests within the evidence window, all replicas together,
/// and what the last one showed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub struct MethodUse {
    pub requests_in_window: i64,
    /// The last use ever.
    pub last_seen: Option<String>,
    /// `certificate` only: the last certificate presented.
    pub last_certificate_fingerprint: Option<String>,
    pub last_certificate_not_after: Option<String>,
    /// The key of the CA that signed it (for a binding's `issuer_spki_sha256`).
    pub last_certificate_issuer_spki_sha256: Option<String>,
}

/// A client's use of each method.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub struct Usage {
    pub api_key: MethodUse,
    pub certificate: MethodUse,
}

/// Whether a client's certificates are being renewed, judged on the newest any of its
/// instances presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RenewalState {
    /// More than a third of its lifetime left.
    Current,
    /// A third or less left and no successor seen yet: a renewal should be under way.
    Due,
    /// Within `migration.renewal_warning_secs` of its end and still no successor: the renewal
    /// has stopped somewhere, and the client is about to be refused.
    NotRenewed,
    /// Past its end, and no successor seen.
    Expired,
}

impl RenewalState {
    /// As the answers write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Current => "current",
            Self::Due => "due",
            Self::NotRenewed => "not_renewed",
            Self::Expired => "expired",
        }
    }
}

/// A client's renewal health.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub struct Renewal {
    pub state: RenewalState,
    /// The newest certificate's notAfter (RFC 3339) and the seconds it has left (negative once
    /// past).
    pub newest_not_after: Option<String>,
    pub seconds_left: i64,
    /// Its lifetime: short-lived certificates are renewed, not pinned.
    pub lifetime_secs: i64,
    /// A binding of this client pins certificate fingerprints while its certificates are
    /// short-lived (10 days or less): its next renewal is refused until it is pinned too.
    #[serde(default)]
    pub pin_breaks_at_renewal: bool,
}

/// One client as `GET /admin/clients/{name}` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub struct ClientView {
    pub name: String,
    pub mode: MigrationMode,
    pub scopes: BTreeSet<Scope>,
    pub disabled: bool,
    /// Whether a key of it is still valid.
    pub has_api_key: bool,
    pub api_keys: Vec<KeyView>,
    /// As written.
    pub bindings: Vec<CertBindingSpec>,
    pub usage: Usage,
    /// Once it presented a certificate.
    pub renewal: Option<Renewal>,
}

/// The answer to `GET /admin/clients`: every client, by name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub struct ClientList {
    pub clients: Vec<ClientView>,
}

/// The answer to `POST /admin/clients`: the client, and a key issued with it (in this answer
/// only).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub struct Registered {
    #[serde(flatten)]
    pub client: ClientView,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_note: Option<String>,
}

/// The refusals a guarded flip caused, as counted so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub struct GuardEvidence {
    /// Refusals by reason code.
    pub by_reason: BTreeMap<String, i64>,
    /// The source networks they came from (a /24, or a /64).
    pub networks: BTreeSet<String>,
    /// Unix seconds.
    pub first_seen: Option<i64>,
    pub last_seen: Option<i64>,
}

/// Once a guard reverted: the retired method re-admitted from these networks only, until when.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub struct Reopened {
    pub method: AuthMethod,
    pub networks: BTreeSet<String>,
    pub until: Option<String>,
}

/// A client's latest flip guard: what it watches (the method its flip retired, the networks
/// that used it before), its state (`watching`, `confirmed`, `reverted`, `cancelled`; `kept` in
/// rows of an earlier version), its refusals and, once it ended, when and why.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub struct GuardReport {
    pub state: String,
    /// The modes of the flip.
    pub from: String,
    pub to: String,
    pub started_at: Option<String>,
    pub watch_until: Option<String>,
    pub max_refusals: i64,
    pub refusals: i64,
    pub ended_at: Option<String>,
    /// Once it counted a refusal: the refusals in words.
    pub because: Option<String>,
    pub evidence: GuardEvidence,
    /// The method the flip retired (`None`: none, and no refusal counts).
    pub retired_method: Option<AuthMethod>,
    /// The networks that used it within the evidence window before the flip.
    pub known_networks: BTreeSet<String>,
    pub reopened: Option<Reopened>,
}

/// One client in the migration report.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub struct MigrationRow {
    pub name: String,
    pub mode: MigrationMode,
    pub disabled: bool,
    pub usage: Usage,
    pub api_keys: Vec<KeyView>,
    pub guard: Option<GuardReport>,
    pub ready_for_mtls: bool,
    /// What it still lacks for `mtls`, in words (empty when ready).
    pub not_ready_because: Vec<String>,
}

/// The answer to `GET /admin/migration`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub struct MigrationReport {
    /// `migration.evidence_window_secs`.
    pub window_secs: u64,
    /// `migration.quiet_period_secs`.
    pub quiet_period_secs: u64,
    pub clients: Vec<MigrationRow>,
    pub all_clients_mtls: bool,
    /// Every client not on `mtls`, disabled ones too (re-enabled, they would be cut off).
    pub not_on_mtls: Vec<String>,
    pub listener_client_auth: ClientAuth,
    pub ready_for_required_client_auth: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renewal_state_reads_as_it_is_written() {
        for state in [
            RenewalState::Current,
            RenewalState::Due,
            RenewalState::NotRenewed,
            RenewalState::Expired,
        ] {
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
        }
    }
}
