//! The admin API under `/admin`. Every handler takes [`Operator`] (scope `admin` over a client
//! certificate), a change through [`AdminChange`], which requires it. Every change is audited
//! with actor, reason, before and after.
//!
//! The routes are in each sub-resource's `endpoints()`: clients.rs (registration, one client,
//! its mode, disabled flag and bindings), keys.rs (rotation, one key ended, every key removed),
//! revocations.rs (the certificate deny list), reports.rs (the migration report, the audit log,
//! counted refusals of callers without a name). docs/api.md describes each.
//!
//! A change that would leave no client able to reach `/admin` (enabled, `admin` scope, a
//! certificate binding, not in `api_key` mode) is refused with 409 `last-admin`.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::web;

use crate::auth::Principal;
use crate::auth::tryout::LiveCertificates;
use crate::error::ApiError;
use crate::identity::AuthMethod;
use crate::policy::Operator;
use crate::registry::{
    ApiKey, CertBinding, Change, Client, ClientName, Gap, Tryout, pin_breaks_at_renewal,
    readiness_gaps, renewal_state,
};
use crate::routes::endpoint::Endpoint;
use crate::state::AppState;
use crate::storage::{self, MethodUsage};
use crate::tls::TlsMaterial;
use dispatch_types::{ClientView, KeyState, KeyView, MethodUse, Renewal, Usage as UsageView};

pub(crate) mod clients;
pub(crate) mod keys;
pub(crate) mod reports;
pub(crate) mod revocations;

/// What a change to one client may be refused with before any refusal of its own (documented
/// once, for each such route): a malformed body, or no such client.
#[derive(utoipa::IntoResponses)]
#[expect(
    dead_code,
    reason = "the document's only: these answers are made by ApiError"
)]
pub(crate) enum ChangeRefused {
    #[response(
        status = 400,
        description = "malformed request (a missing `reason`, say)",
        content_type = "application/problem+json"
    )]
    Malformed(crate::error::Problem<'static>),
    #[response(
        status = 404,
        description = "no such client",
        content_type = "application/problem+json"
    )]
    NoSuchClient(crate::error::Problem<'static>),
}

/// Every admin route, each defined beside its handler.
pub fn endpoints() -> Vec<Endpoint> {
    [
        clients::endpoints(),
        keys::endpoints(),
        revocations::endpoints(),
        reports::endpoints(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// What every admin change needs before its own rule, taken from the request before its body:
/// the operator (scope `admin` over a certificate, as [`Operator`] requires), who the audit log
/// records, the TLS material the change is checked against, the service, and the client the
/// path names. A handler takes it with its body and gives the reason and, where the change is
/// tried, the certificates in use.
pub(crate) struct AdminChange {
    pub principal: Principal,
    pub actor: String,
    pub material: Arc<TlsMaterial>,
    pub state: web::Data<AppState>,
    /// The `{name}` of the path, as sent.
    name: Option<String>,
}

impl actix_web::FromRequest for AdminChange {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(
        request: &actix_web::HttpRequest,
        payload: &mut actix_web::dev::Payload,
    ) -> Self::Future {
        let mut admin = || {
            let Operator(principal) = Operator::from_request(request, payload).into_inner()?;
            let state = request
                .app_data::<web::Data<AppState>>()
                .cloned()
                .ok_or_else(|| ApiError::Internal("no application state".into()))?;
            Ok(Self {
                actor: actor(&principal),
                material: arc_swap::Guard::into_inner(state.tls.material()),
                principal,
                state,
                name: request.match_info().get("name").map(str::to_owned),
            })
        };
        std::future::ready(admin())
    }
}

impl AdminChange {
    /// The client the path names: 404 for a name no client could have.
    pub fn client(&self) -> Result<ClientName, ApiError> {
        client_name(self.name.as_deref().unwrap_or_default())
    }

    /// The certificates in use, to try the change against ([`live_certificates`]).
    pub async fn live(&self) -> Result<Arc<LiveCertificates>, ApiError> {
        live_certificates(&self.state, &self.principal, &self.material).await
    }

    /// The change, for `reason`, tried against `live` if given.
    pub fn change<'a>(
        &'a self,
        reason: &'a str,
        live: Option<Arc<LiveCertificates>>,
    ) -> Change<'a> {
        change(&self.actor, reason, &self.principal, &self.material, live)
    }
}

/// An admin change by this operator: who, why, and the certificate they are using, so that no
/// change can take the operator's own way in while leaving no other.
fn change<'a>(
    actor: &'a str,
    reason: &'a str,
    principal: &'a Principal,
    material: &'a TlsMaterial,
    live: Option<Arc<LiveCertificates>>,
) -> Change<'a> {
    Change {
        actor,
        reason,
        operator: principal
            .certificate
            .as_deref()
            .map(|certificate| (certificate, material.trust.issuers())),
        tryout: live.map(|live| live as Arc<dyn Tryout>),
    }
}

/// The certificates in use that a change is tried against before it is made: the operator's
/// own and each client's still valid (or seen within the evidence window), the latest of each
/// of its instances (pending usage written first, so a request just answered counts).
async fn live_certificates(
    state: &AppState,
    principal: &Principal,
    material: &TlsMaterial,
) -> Result<Arc<LiveCertificates>, ApiError> {
    state.recorder.flush().await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let presented = storage::live_certificates(&state.pool, state.evidence_since(), now).await?;
    // Each chain is verified again (signatures, a few tens of microseconds each): with tens of
    // thousands of certificate clients, on a blocking thread, not the worker's event loop that
    // serves other connections.
    let (trust, operator) = (material.trust.clone(), principal.certificate.clone());
    web::block(move || {
        Arc::new(LiveCertificates::new(
            trust,
            operator,
            presented,
            time::OffsetDateTime::now_utc(),
        ))
    })
    .await
    .map_err(|_| ApiError::Internal("verifying the live certificates stopped".into()))
}

/// The operator's name for the audit log: the client name and the certificate subject.
pub(crate) fn actor(principal: &Principal) -> String {
    match &principal.certificate {
        Some(cert) => format!("{} ({})", principal.client.name, cert.leaf.subject),
        None => principal.client.name.to_string(),
    }
}

pub(crate) fn client_name(path: &str) -> Result<ClientName, ApiError> {
    ClientName::parse(path).map_err(|_| ApiError::NotFound)
}

pub(crate) fn required_reason(reason: &str) -> Result<&str, ApiError> {
    let reason = reason.trim();
    if reason.is_empty() || reason.len() > 500 {
        return Err(ApiError::BadRequest(
            "`reason` is required (1 to 500 characters): it goes into the audit log".into(),
        ));
    }
    Ok(reason)
}

pub(crate) type Usage = BTreeMap<&'static str, MethodUsage>;

/// What a client still lacks before `mtls` can be switched on without cutting it off (empty:
/// ready), in words: the rule is `registry::readiness_gaps`.
pub(crate) fn not_ready_for_mtls(usage: Option<&Usage>, state: &AppState) -> Vec<String> {
    let last = |method: AuthMethod| {
        usage
            .and_then(|u| u.get(method.as_str()))
            .and_then(|u| u.last_seen)
    };
    let migration = &state.migration;
    let quiet_since = (migration.quiet_period_secs > 0).then(|| state.quiet_since());
    readiness_gaps(
        last(AuthMethod::Certificate),
        last(AuthMethod::ApiKey),
        state.evidence_since(),
        quiet_since,
    )
    .into_iter()
    .map(|gap| match gap {
        Gap::NoCertificateEvidence => format!(
            "no certificate-authenticated request in the last {} s",
            migration.evidence_window_secs
        ),
        Gap::KeyInUse { last_at } => format!(
            "its API key was used within the last {} s (last at {})",
            migration.quiet_period_secs,
            crate::routes::rfc3339(last_at).unwrap_or_default()
        ),
    })
    .collect()
}

pub(crate) fn client_view(
    client: &Client,
    usage: Option<&Usage>,
    renewal: Option<Renewal>,
) -> ClientView {
    ClientView {
        renewal,
        name: client.name.to_string(),
        mode: client.mode,
        scopes: client.scopes.clone(),
        disabled: client.disabled,
        has_api_key: client.has_live_key(now_unix()),
        api_keys: keys_view(client, usage),
        bindings: client.bindings.iter().map(CertBinding::to_spec).collect(),
        usage: usage_view(usage),
    }
}

pub(crate) fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A client's keys: id (a prefix of the key's hash, not of the key), when made, until when
/// valid, and whether it is the current key, one in a rotation's overlap, or expired.
pub(crate) fn keys_view(client: &Client, usage: Option<&Usage>) -> Vec<KeyView> {
    let now = now_unix();
    let key_use = |key: &ApiKey| {
        usage
            .and_then(|u| u.get(AuthMethod::ApiKey.as_str()))
            .and_then(|u| u.keys.get(&key.hash.to_hex()))
            .copied()
            .unwrap_or_default()
    };
    client
        .api_keys
        .iter()
        .map(|key| KeyView {
            id: key.hash.id(),
            state: match (key.expired(now), key.replaced_at) {
                (true, _) => KeyState::Expired,
                (false, None) => KeyState::Current,
                (false, Some(_)) => KeyState::Overlap,
            },
            created_at: crate::routes::rfc3339(key.created_at),
            expires_at: key.expires_at.and_then(crate::routes::rfc3339),
            use_count: key_use(key).use_count,
            last_used_at: key_use(key).last_used_at.and_then(crate::routes::rfc3339),
        })
        .collect()
}

pub(crate) fn usage_view(usage: Option<&Usage>) -> UsageView {
    let method = |m: AuthMethod| {
        let u = usage
            .and_then(|u| u.get(m.as_str()))
            .cloned()
            .unwrap_or_default();
        MethodUse {
            requests_in_window: u.requests_in_window,
            last_seen: u.last_seen.and_then(crate::routes::rfc3339),
            last_certificate_fingerprint: u.last_certificate_fingerprint,
            last_certificate_not_after: u
                .last_certificate_not_after
                .and_then(crate::routes::rfc3339),
            last_certificate_issuer_spki_sha256: u.last_certificate_issuer_spki_sha256,
        }
    };
    UsageView {
        api_key: method(AuthMethod::ApiKey),
        certificate: method(AuthMethod::Certificate),
    }
}

/// A client's renewal health from its newest certificate (`storage::newest_certificates`).
pub(crate) fn renewal_view(
    client: &Client,
    newest: Option<&(i64, i64)>,
    state: &AppState,
) -> Option<Renewal> {
    let &(not_before, not_after) = newest?;
    let now = now_unix();
    // A binding by name and issuer alone takes the renewals whatever the others pin.
    let pinned =
        !client.bindings.is_empty() && client.bindings.iter().all(|b| !b.fingerprints.is_empty());
    Some(Renewal {
        state: renewal_state(
            not_before,
            not_after,
            now,
            state.migration.renewal_warning_secs,
        ),
        newest_not_after: crate::routes::rfc3339(not_after),
        seconds_left: not_after - now,
        lifetime_secs: not_after - not_before,
        pin_breaks_at_renewal: pin_breaks_at_renewal(pinned, not_after - not_before),
    })
}

pub(crate) async fn usage(state: &AppState) -> Result<BTreeMap<String, Usage>, ApiError> {
    // Usage is buffered; write what is pending so the answer includes the latest requests.
    state.recorder.flush().await;
    Ok(storage::usage_by_client(&state.pool, state.evidence_since()).await?)
}
