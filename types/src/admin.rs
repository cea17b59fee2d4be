//! The admin API's requests, and the answers of its changes. Each request type carries an
//! example: the OpenAPI document shows it, and the route walk of the authorization tests sends
//! it, so a new route is walked with no line of its own there.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{CertBindingSpec, MigrationMode, Scope};

/// A guarded flip: for `watch_secs` after a mode change, the refusals it causes that client
/// (`key_retired`, `method_not_allowed`) from networks that used the retired method before the
/// change are counted, all replicas together; at `max_refusals` that method is re-admitted
/// from those networks only, for the rest of the watch and an hour (the mode stays).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlipGuard {
    pub watch_secs: u64,
    pub max_refusals: u32,
}

impl FlipGuard {
    /// Refuses a guard that could never watch or never revert, saying why.
    pub fn check(&self) -> Result<(), String> {
        if self.watch_secs == 0 || self.watch_secs > 7 * 86_400 {
            return Err("guard.watch_secs must be between 1 and 604800 (7 days)".into());
        }
        if self.max_refusals == 0 {
            return Err("guard.max_refusals must be at least 1".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({
    "name": "billing-exporter", "mode": "api_key", "scopes": ["plans:submit"],
    "issue_api_key": true, "reason": "CHG-1042: billing exporter goes live",
})))]
pub struct RegisterClient {
    pub name: String,
    pub mode: MigrationMode,
    #[serde(default)]
    pub scopes: BTreeSet<Scope>,
    #[serde(default)]
    pub bindings: Vec<CertBindingSpec>,
    /// Issue an API key now (returned once in the response).
    #[serde(default)]
    pub issue_api_key: bool,
    /// With `issue_api_key`: the key's lifetime; default: until it is replaced.
    pub api_key_expires_in_secs: Option<u64>,
    pub reason: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"mode": "dual", "reason": "CHG-1043: certificate deployed"})))]
pub struct SetMode {
    pub mode: MigrationMode,
    pub reason: String,
    /// Move to `mtls` without recent certificate evidence.
    #[serde(default)]
    pub force: bool,
    /// Watch the change: at `max_refusals` refusals it causes within `watch_secs` from networks
    /// that used the retired method before the change, that method is re-admitted from those
    /// networks only, for the rest of the watch and an hour. Default `migration.default_guard`.
    pub guard: Option<FlipGuard>,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"disabled": true, "reason": "INC-77: paused while investigated"})))]
pub struct SetDisabled {
    pub disabled: bool,
    pub reason: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({
    "bindings": [{
        "issuer": "CN=Dispatch Dev Internal CA, O=Dispatch Dev",
        "dns_name": "billing.dispatch.internal",
    }],
    "reason": "CHG-1044: bound by its ACME name",
})))]
pub struct SetBindings {
    pub bindings: Vec<CertBindingSpec>,
    pub reason: String,
    /// Replace them even though a live certificate of the client would no longer match (it is
    /// about to get a new one). Never lets a change capture another client's certificate.
    #[serde(default)]
    pub force: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"reason": "INC-78: the key leaked"})))]
pub struct KeyChange {
    pub reason: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"reason": "CHG-1045: quarterly rotation", "overlap_secs": 86400})))]
pub struct KeyRotation {
    pub reason: String,
    /// How long the key being replaced stays valid (then `key_expired`); default
    /// `migration.key_overlap_secs`; 0: it goes at once.
    pub overlap_secs: Option<u64>,
    /// The new key's own lifetime; default: until it is replaced.
    pub expires_in_secs: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({
    "fingerprint": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "reason": "INC-79: the laptop holding it was stolen",
})))]
pub struct Revoke {
    /// A certificate's SHA-256 fingerprint: that certificate.
    pub fingerprint: Option<String>,
    /// A key's SHA-256 of its SubjectPublicKeyInfo: every certificate of that key (a stolen
    /// private key). Exactly one of the two.
    pub spki_sha256: Option<String>,
    pub reason: String,
}

/// The answer to `PUT /admin/clients/{name}/mode`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub struct ModeChanged {
    pub client: String,
    pub before: MigrationMode,
    pub after: MigrationMode,
    /// The guard watching the change, if any.
    pub guard: Option<FlipGuard>,
}

/// The answer to `PUT /admin/clients/{name}/disabled`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub struct DisabledChanged {
    pub client: String,
    pub disabled: bool,
}

/// Where a key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    /// The client's key.
    Current,
    /// Replaced by a rotation, valid until the overlap ends.
    Overlap,
    /// Past its expiry: refused as `key_expired`.
    Expired,
}

impl KeyState {
    /// As the answers write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Current => "current",
            Self::Overlap => "overlap",
            Self::Expired => "expired",
        }
    }
}

/// One API key of a client (never the key: its id, the first 12 hex digits of its SHA-256).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub struct KeyView {
    pub id: String,
    pub state: KeyState,
    /// RFC 3339.
    pub created_at: Option<String>,
    pub expires_at: Option<String>,
    pub use_count: i64,
    pub last_used_at: Option<String>,
}

/// The answer to `POST /admin/clients/{name}/api-key`: the new key, in this answer only.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub struct KeyRotated {
    pub client: String,
    pub api_key: String,
    pub api_key_id: String,
    pub api_key_note: String,
    /// The client's keys as the rotation left them.
    pub api_keys: Option<Vec<KeyView>>,
}

/// The answer to `DELETE /admin/clients/{name}/api-key`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub struct KeysRemoved {
    pub client: String,
    pub has_api_key: bool,
}

/// The answer to `DELETE /admin/clients/{name}/api-keys/{key_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub struct KeyEnded {
    pub client: String,
    pub ended: String,
    /// The client's keys as they are now.
    pub api_keys: Option<Vec<KeyView>>,
}

/// The answer to `POST /admin/revocations`: what is on the deny list (201 added, 200 already).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub struct RevocationAdded {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spki_sha256: Option<String>,
    pub revoked: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_state_reads_as_it_is_written() {
        for state in [KeyState::Current, KeyState::Overlap, KeyState::Expired] {
            let written = serde_json::to_value(state).unwrap();
            assert_eq!(written, state.as_str(), "{state:?}");
        }
    }

    /// The example the OpenAPI document shows for `T` (its schema's first `examples`).
    fn example_of<T: utoipa::PartialSchema>() -> serde_json::Value {
        let schema = serde_json::to_value(T::schema()).unwrap();
        assert!(schema["examples"][0].is_object(), "no example: {schema}");
        schema["examples"][0].clone()
    }

    fn reads_as<T: utoipa::PartialSchema + serde::de::DeserializeOwned>() {
        let example = example_of::<T>();
        if let Err(error) = serde_json::from_value::<T>(example.clone()) {
            panic!("the example {example} is not a valid request: {error}");
        }
    }

    #[test]
    fn every_requests_example_is_a_request_the_server_reads() {
        reads_as::<RegisterClient>();
        reads_as::<SetMode>();
        reads_as::<SetDisabled>();
        reads_as::<SetBindings>();
        reads_as::<KeyChange>();
        reads_as::<KeyRotation>();
        reads_as::<Revoke>();
    }

    #[test]
    fn a_guard_that_could_never_watch_or_never_revert_is_refused() {
        let guard = |watch_secs, max_refusals| FlipGuard {
            watch_secs,
            max_refusals,
        };
        assert!(guard(1, 1).check().is_ok());
        assert!(guard(7 * 86_400, 5).check().is_ok());
        assert!(guard(0, 1).check().is_err());
        assert!(guard(7 * 86_400 + 1, 1).check().is_err());
        assert!(guard(60, 0).check().is_err());
    }
}
