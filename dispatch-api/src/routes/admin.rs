//! The admin API under `/admin`. Every handler takes [`Operator`]: scope `admin` over a client
//! certificate. Every change is audited with actor, reason, before and after.
//!
//! - `GET  /admin/clients`                      list clients with mode, bindings, last use
//! - `POST /admin/clients`                      register a client (optionally issue a key)
//! - `GET  /admin/clients/{name}`               one client
//! - `PUT  /admin/clients/{name}/mode`          set the migration mode (`reason`, `force`)
//! - `PUT  /admin/clients/{name}/disabled`      disable or enable a client
//! - `POST /admin/clients/{name}/api-key`       rotate the key (returned once)
//! - `DELETE /admin/clients/{name}/api-key`     remove the key
//! - `GET|POST /admin/revocations`              the certificate deny list
//! - `GET  /admin/migration`                    the migration report
//! - `GET  /admin/audit?client=&limit=`         refusals, alerts and admin changes

use std::collections::{BTreeMap, BTreeSet};

use actix_web::{HttpResponse, web};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::configuration::ClientAuth;
use crate::error::ApiError;
use crate::identity::{AuthMethod, Fingerprint, Principal};
use crate::policy::Operator;
use crate::registry::{
    ApiKeyHash, CertBinding, CertBindingSpec, Change, Client, ClientName, MigrationMode,
    RegistryError, Scope, generate_api_key,
};
use crate::startup::AppState;
use crate::storage::{self, MethodUsage};

impl From<RegistryError> for ApiError {
    fn from(error: RegistryError) -> Self {
        match error {
            RegistryError::NotFound(_) => ApiError::NotFound,
            RegistryError::AlreadyExists(name) => ApiError::Conflict {
                kind: "client-exists",
                title: "Client already registered",
                detail: format!("a client named `{name}` is already registered"),
            },
            RegistryError::Storage(e) => e.into(),
        }
    }
}

/// The operator's name for the audit log: the client name and the certificate subject.
fn actor(principal: &Principal) -> String {
    match &principal.certificate {
        Some(cert) => format!("{} ({})", principal.client.name, cert.subject),
        None => principal.client.name.to_string(),
    }
}

fn client_name(path: &str) -> Result<ClientName, ApiError> {
    ClientName::parse(path).map_err(|_| ApiError::NotFound)
}

fn required_reason(reason: &str) -> Result<&str, ApiError> {
    let reason = reason.trim();
    if reason.is_empty() || reason.len() > 500 {
        return Err(ApiError::BadRequest(
            "`reason` is required (1 to 500 characters): it goes into the audit log".into(),
        ));
    }
    Ok(reason)
}

type Usage = BTreeMap<&'static str, MethodUsage>;

fn client_view(client: &Client, usage: Option<&Usage>) -> Value {
    json!({
        "name": client.name.as_str(),
        "mode": client.mode,
        "scopes": client.scopes,
        "disabled": client.disabled,
        "has_api_key": client.api_key.is_some(),
        "bindings": client.bindings,
        "usage": usage_view(usage),
    })
}

fn usage_view(usage: Option<&Usage>) -> Value {
    let method = |m: AuthMethod| {
        let u = usage
            .and_then(|u| u.get(m.as_str()))
            .cloned()
            .unwrap_or_default();
        json!({
            "requests_in_window": u.requests_in_window,
            "last_seen": u.last_seen.and_then(super::rfc3339),
            "last_certificate_fingerprint": u.last_certificate_fingerprint,
            "last_certificate_not_after": u.last_certificate_not_after.and_then(super::rfc3339),
        })
    };
    json!({ "api_key": method(AuthMethod::ApiKey), "certificate": method(AuthMethod::Certificate) })
}

async fn usage(state: &AppState) -> Result<BTreeMap<String, Usage>, ApiError> {
    // Usage is buffered; write what is pending so the answer includes the latest requests.
    state.recorder.flush().await;
    Ok(storage::usage_by_client(&state.pool, state.evidence_since()).await?)
}

pub async fn list_clients(
    _: Operator,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let usage = usage(&state).await?;
    let snapshot = state.registry.snapshot();
    let mut clients: Vec<_> = snapshot.clients().collect();
    clients.sort_by(|a, b| a.name.cmp(&b.name));
    let views: Vec<Value> = clients
        .iter()
        .map(|c| client_view(c, usage.get(c.name.as_str())))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "clients": views })))
}

pub async fn get_client(
    _: Operator,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = client_name(&name)?;
    let usage = usage(&state).await?;
    let client = state
        .registry
        .snapshot()
        .client(&name)
        .cloned()
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(client_view(&client, usage.get(name.as_str()))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterClient {
    name: String,
    mode: MigrationMode,
    #[serde(default)]
    scopes: BTreeSet<Scope>,
    #[serde(default)]
    bindings: Vec<CertBindingSpec>,
    /// Issue an API key now (returned once in the response).
    #[serde(default)]
    issue_api_key: bool,
    reason: String,
}

pub async fn register_client(
    Operator(principal): Operator,
    body: web::Json<RegisterClient>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = ClientName::parse(&body.name).map_err(ApiError::BadRequest)?;
    let reason = required_reason(&body.reason)?;
    let bindings = body
        .bindings
        .iter()
        .map(CertBinding::parse)
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::BadRequest)?;
    let key = body.issue_api_key.then(generate_api_key);
    let client = Client {
        name,
        mode: body.mode,
        scopes: body.scopes.clone(),
        disabled: false,
        bindings,
        api_key: key.as_ref().map(ApiKeyHash::of),
    };
    let actor = actor(&principal);
    if !state
        .registry
        .register(
            &client,
            Some(Change {
                actor: &actor,
                reason,
            }),
        )
        .await?
    {
        return Err(RegistryError::AlreadyExists(client.name.to_string()).into());
    }
    let mut view = client_view(&client, None);
    if let Some(key) = key {
        view["api_key"] = json!(key.expose_secret());
        view["api_key_note"] = json!("shown once; only its SHA-256 is stored");
    }
    Ok(HttpResponse::Created()
        .insert_header(("location", format!("/admin/clients/{}", client.name)))
        .json(view))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetMode {
    mode: MigrationMode,
    reason: String,
    /// Move to `mtls` without recent certificate evidence.
    #[serde(default)]
    force: bool,
}

/// Moving to `mtls` is refused (409) unless the client made a certificate-authenticated request
/// within the evidence window, so nobody is cut off by surprise. Moving back is always allowed.
pub async fn set_mode(
    Operator(principal): Operator,
    name: web::Path<String>,
    body: web::Json<SetMode>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = client_name(&name)?;
    let reason = required_reason(&body.reason)?;
    if state.registry.snapshot().client(&name).is_none() {
        return Err(ApiError::NotFound);
    }
    if body.mode == MigrationMode::Mtls && !body.force {
        let usage = usage(&state).await?;
        if !ready_for_mtls(usage.get(name.as_str()), state.evidence_since()) {
            return Err(ApiError::Conflict {
                kind: "migration-not-ready",
                title: "No recent certificate use",
                detail: format!(
                    "`{name}` has made no certificate-authenticated request in the last {} seconds; \
                     moving it to mtls now could cut it off. Deploy its certificate, check \
                     /admin/migration, or set \"force\": true",
                    state.settings.migration.evidence_window_secs
                ),
            });
        }
    }
    let actor = actor(&principal);
    let change_reason = if body.force {
        format!("{reason} (forced)")
    } else {
        reason.to_owned()
    };
    let before = state
        .registry
        .set_mode(
            &name,
            body.mode,
            Change {
                actor: &actor,
                reason: &change_reason,
            },
        )
        .await?;
    tracing::info!(client = %name, before = before.as_str(), after = body.mode.as_str(), actor, "migration mode changed");
    Ok(HttpResponse::Ok()
        .json(json!({ "client": name.as_str(), "before": before, "after": body.mode })))
}

fn ready_for_mtls(usage: Option<&Usage>, since: i64) -> bool {
    usage
        .and_then(|u| u.get(AuthMethod::Certificate.as_str()))
        .and_then(|u| u.last_seen)
        .is_some_and(|seen| seen >= since)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetDisabled {
    disabled: bool,
    reason: String,
}

pub async fn set_disabled(
    Operator(principal): Operator,
    name: web::Path<String>,
    body: web::Json<SetDisabled>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = client_name(&name)?;
    let reason = required_reason(&body.reason)?;
    let actor = actor(&principal);
    state
        .registry
        .set_disabled(
            &name,
            body.disabled,
            Change {
                actor: &actor,
                reason,
            },
        )
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "client": name.as_str(), "disabled": body.disabled })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyChange {
    reason: String,
}

/// Issues a new key, replacing the old one at once. The key is in this response only.
pub async fn rotate_api_key(
    Operator(principal): Operator,
    name: web::Path<String>,
    body: web::Json<KeyChange>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = client_name(&name)?;
    let reason = required_reason(&body.reason)?;
    let key = generate_api_key();
    let actor = actor(&principal);
    state
        .registry
        .set_api_key(
            &name,
            Some(ApiKeyHash::of(&key)),
            Change {
                actor: &actor,
                reason,
            },
        )
        .await?;
    Ok(HttpResponse::Ok().json(json!({
        "client": name.as_str(),
        "api_key": key.expose_secret(),
        "api_key_note": "shown once; only its SHA-256 is stored",
    })))
}

pub async fn remove_api_key(
    Operator(principal): Operator,
    name: web::Path<String>,
    body: web::Json<KeyChange>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = client_name(&name)?;
    let reason = required_reason(&body.reason)?;
    let actor = actor(&principal);
    state
        .registry
        .set_api_key(
            &name,
            None,
            Change {
                actor: &actor,
                reason,
            },
        )
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "client": name.as_str(), "has_api_key": false })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revoke {
    fingerprint: String,
    reason: String,
}

/// Adds a certificate fingerprint to the deny list, effective on the next request.
pub async fn revoke_certificate(
    Operator(principal): Operator,
    body: web::Json<Revoke>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let fingerprint = Fingerprint::parse(&body.fingerprint).map_err(ApiError::BadRequest)?;
    let reason = required_reason(&body.reason)?;
    let actor = actor(&principal);
    let added = state
        .registry
        .revoke(
            fingerprint,
            Change {
                actor: &actor,
                reason,
            },
        )
        .await?;
    let status = if added {
        actix_web::http::StatusCode::CREATED
    } else {
        actix_web::http::StatusCode::OK
    };
    Ok(HttpResponse::build(status).json(json!({ "fingerprint": fingerprint, "revoked": true })))
}

pub async fn list_revocations(
    _: Operator,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(json!({ "revocations": state.registry.revocations().await? })))
}

/// Per client: mode, use of each method over the window, readiness for `mtls`; and whether
/// every client is on `mtls`, so that the listener can require certificates.
pub async fn migration_report(
    _: Operator,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let usage = usage(&state).await?;
    let since = state.evidence_since();
    let snapshot = state.registry.snapshot();
    let mut clients: Vec<_> = snapshot.clients().collect();
    clients.sort_by(|a, b| a.name.cmp(&b.name));
    let active: Vec<_> = clients.iter().filter(|c| !c.disabled).collect();
    let all_mtls = active.iter().all(|c| c.mode == MigrationMode::Mtls);
    let rows: Vec<Value> = clients
        .iter()
        .map(|c| {
            let u = usage.get(c.name.as_str());
            json!({
                "name": c.name.as_str(),
                "mode": c.mode,
                "disabled": c.disabled,
                "usage": usage_view(u),
                "ready_for_mtls": c.mode == MigrationMode::Mtls || ready_for_mtls(u, since),
            })
        })
        .collect();
    let client_auth = state.settings.tls.client_auth;
    Ok(HttpResponse::Ok().json(json!({
        "window_secs": state.settings.migration.evidence_window_secs,
        "clients": rows,
        "all_clients_mtls": all_mtls,
        "listener_client_auth": if client_auth == ClientAuth::Required { "required" } else { "optional" },
        "ready_for_required_client_auth": all_mtls,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    client: Option<String>,
    limit: Option<i64>,
}

pub async fn list_audit(
    _: Operator,
    query: web::Query<AuditQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.recorder.flush().await;
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let events = storage::list_audit(&state.pool, query.client.as_deref(), limit).await?;
    let events: Vec<Value> = events
        .into_iter()
        .map(|e| {
            let mut v = serde_json::to_value(&e).unwrap_or_default();
            v["at"] = json!(super::rfc3339(e.at));
            v
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "events": events })))
}
