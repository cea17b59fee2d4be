//! Clients: list, read, register, and the operator's switches (mode, disabled, bindings).

use actix_web::{HttpResponse, web};
use secrecy::ExposeSecret;

use super::{
    AdminChange, client_name, client_view, not_ready_for_mtls, now_unix, renewal_view,
    required_reason, usage,
};
use crate::error::ApiError;
use crate::policy::Operator;
use crate::registry::{
    ApiKey, ApiKeyHash, CertBinding, Client, ClientName, MigrationMode, RegistryError,
    generate_api_key,
};
use crate::routes::endpoint::Endpoint;
use crate::state::AppState;
use crate::storage;
use dispatch_types::{
    ClientList, ClientView, DisabledChanged, ModeChanged, RegisterClient, Registered, SetBindings,
    SetDisabled, SetMode,
};

#[utoipa::path(
    get,
    path = "/admin/clients",
    tag = "admin",
    responses(
        (status = 200, description = "every client with mode, scopes, bindings and use", body = ClientList)
    ),
    security(("mutual_tls" = []))
)]
pub async fn list_clients(
    _: Operator,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let usage = usage(&state).await?;
    let newest = storage::newest_certificates(&state.pool, None).await?;
    let snapshot = state.registry.snapshot();
    let mut clients: Vec<_> = snapshot.clients().collect();
    clients.sort_by(|a, b| a.name.cmp(&b.name));
    let clients = clients
        .iter()
        .map(|c| {
            let name = c.name.as_str();
            let renewal = renewal_view(c, newest.get(name), &state);
            client_view(c, usage.get(name), renewal)
        })
        .collect();
    Ok(HttpResponse::Ok().json(ClientList { clients }))
}

#[utoipa::path(
    get,
    path = "/admin/clients/{name}",
    tag = "admin",
    params(("name" = String, Path, description = "the client's name")),
    responses(
        (status = 200, description = "one client", body = ClientView),
        (status = 404, description = "no such client", body = crate::error::Problem, content_type = "application/problem+json")
    ),
    security(("mutual_tls" = []))
)]
pub async fn get_client(
    _: Operator,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = client_name(&name)?;
    Ok(HttpResponse::Ok().json(shown(&state, &name).await?))
}

#[utoipa::path(
    post,
    path = "/admin/clients",
    tag = "admin",
    request_body = RegisterClient,
    responses(
        (status = 201, description = "registered (201); an issued key is in this answer only", body = Registered),
        (status = 400, description = "malformed request (a missing `reason`, say)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`client-exists`, `binding-conflict` (an overlap, or a live certificate it would capture: the detail names its client and the certificate), `ambiguous-issuer` or `last-admin` (it would capture the certificate you are using)", body = crate::error::Problem, content_type = "application/problem+json")
    ),
    security(("mutual_tls" = []))
)]
pub async fn register_client(
    admin: AdminChange,
    body: web::Json<RegisterClient>,
) -> Result<HttpResponse, ApiError> {
    let name = ClientName::parse(&body.name).map_err(ApiError::BadRequest)?;
    let reason = required_reason(&body.reason)?;
    let bindings = body
        .bindings
        .iter()
        .map(CertBinding::parse)
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::BadRequest)?;
    if body.api_key_expires_in_secs == Some(0) {
        return Err(ApiError::BadRequest(
            "`api_key_expires_in_secs` must be at least 1: a key that expires at once is no key"
                .into(),
        ));
    }
    let key = body.issue_api_key.then(generate_api_key);
    let client = Client {
        name,
        mode: body.mode,
        scopes: body.scopes.clone(),
        disabled: false,
        bindings,
        api_keys: key
            .as_ref()
            .map(|key| {
                let now = now_unix();
                vec![ApiKey {
                    expires_at: body
                        .api_key_expires_in_secs
                        .map(|secs| now.saturating_add_unsigned(secs)),
                    ..ApiKey::new(ApiKeyHash::of(key), now)
                }]
            })
            .unwrap_or_default(),
    };
    let live = admin.live().await?;
    let change = admin.change(reason, Some(live));
    let issuers = admin.material.trust.issuers();
    if !admin
        .state
        .registry
        .register(&client, Some(change), issuers)
        .await?
    {
        return Err(RegistryError::AlreadyExists(client.name.to_string()).into());
    }
    let view = Registered {
        client: client_view(&client, None, None),
        api_key_note: key
            .is_some()
            .then(|| "shown once; only its SHA-256 is stored".into()),
        api_key: key.map(|key| key.expose_secret().to_owned()),
    };
    Ok(HttpResponse::Created()
        .insert_header(("location", format!("/admin/clients/{}", client.name)))
        .json(view))
}

/// Moving to `mtls` is refused (409) unless the client is ready: a certificate-authenticated
/// request within the evidence window and its key unused for the quiet period, so nobody is cut
/// off by surprise. Moving back is always allowed; no move may lock every operator out.
#[utoipa::path(
    put,
    path = "/admin/clients/{name}/mode",
    tag = "admin",
    request_body = SetMode,
    params(("name" = String, Path, description = "the client's name")),
    responses(
        (status = 200, description = "the mode before and after, and the guard watching the change", body = ModeChanged),
        super::ChangeRefused,
        (status = 409, description = "`migration-not-ready` (the detail says what is missing), `binding-conflict` (it would keep out another client's live certificate) or `last-admin`", body = crate::error::Problem, content_type = "application/problem+json")
    ),
    security(("mutual_tls" = []))
)]
pub async fn set_mode(
    admin: AdminChange,
    body: web::Json<SetMode>,
) -> Result<HttpResponse, ApiError> {
    let name = admin.client()?;
    let reason = required_reason(&body.reason)?;
    let state = &admin.state;
    let Some(current) = state.registry.snapshot().client(&name).map(|c| c.mode) else {
        return Err(ApiError::NotFound);
    };
    if body.mode == MigrationMode::Mtls && !body.force {
        let usage = usage(state).await?;
        let missing = not_ready_for_mtls(usage.get(name.as_str()), state);
        if !missing.is_empty() {
            return Err(ApiError::Conflict {
                kind: "migration-not-ready",
                title: "Not ready for mtls",
                detail: format!(
                    "`{name}`: {}; moving it to mtls now could cut it off. Deploy its \
                     certificate everywhere, check /admin/migration, or set \"force\": true",
                    missing.join("; ")
                ),
            });
        }
    }
    let change_reason = if body.force {
        format!("{reason} (forced)")
    } else {
        reason.to_owned()
    };
    // `force` skips the readiness check, never the guard. Setting the mode a client is already
    // in changes nothing to watch (and still cancels a running guard).
    let guard = body
        .guard
        .or(state.migration.default_guard)
        .filter(|_| current != body.mode);
    if let Some(guard) = &guard {
        guard.check().map_err(ApiError::BadRequest)?;
    }
    // A guard notes the networks that used the method it retires: the uses still buffered in
    // the recorder are written first, so a flip right after a use still knows its network.
    if guard.is_some() {
        state.recorder.flush().await;
    }
    let live = admin.live().await?;
    let before = state
        .registry
        .set_mode(
            &name,
            body.mode,
            guard.map(|guard| crate::registry::GuardStart {
                guard,
                evidence_window_secs: state.migration.evidence_window_secs,
            }),
            admin.change(&change_reason, Some(live)),
        )
        .await?;
    tracing::info!(client = %name, before = before.as_str(), after = body.mode.as_str(), actor = admin.actor, guarded = guard.is_some(), "migration mode changed");
    Ok(HttpResponse::Ok().json(ModeChanged {
        client: name.to_string(),
        before,
        after: body.mode,
        guard,
    }))
}

#[utoipa::path(
    put,
    path = "/admin/clients/{name}/disabled",
    tag = "admin",
    request_body = SetDisabled,
    params(("name" = String, Path, description = "the client's name")),
    responses(
        (status = 200, description = "the client's flag as it is now", body = DisabledChanged),
        super::ChangeRefused,
        (status = 409, description = "`last-admin` or `binding-conflict` (it would keep out another client's live certificate)", body = crate::error::Problem, content_type = "application/problem+json")
    ),
    security(("mutual_tls" = []))
)]
pub async fn set_disabled(
    admin: AdminChange,
    body: web::Json<SetDisabled>,
) -> Result<HttpResponse, ApiError> {
    let name = admin.client()?;
    let reason = required_reason(&body.reason)?;
    let live = admin.live().await?;
    let change = admin.change(reason, Some(live));
    let registry = &admin.state.registry;
    registry.set_disabled(&name, body.disabled, change).await?;
    Ok(HttpResponse::Ok().json(DisabledChanged {
        client: name.to_string(),
        disabled: body.disabled,
    }))
}

/// Replaces a client's certificate bindings (to fix an issuer, pin an issuer key, or move a
/// client to a new CA). Refused like registration when a binding is ambiguous or overlaps
/// another client's (409), and when it would leave no way into /admin (409 `last-admin`).
#[utoipa::path(
    put,
    path = "/admin/clients/{name}/bindings",
    tag = "admin",
    request_body = SetBindings,
    params(("name" = String, Path, description = "the client's name")),
    responses(
        (status = 200, description = "the client with its new bindings", body = ClientView),
        super::ChangeRefused,
        (status = 409, description = "`binding-conflict` (an overlap; a live certificate of another client it would capture; or this client's own live certificate it would no longer name, which `force` overrides), `ambiguous-issuer` or `last-admin`", body = crate::error::Problem, content_type = "application/problem+json")
    ),
    security(("mutual_tls" = []))
)]
pub async fn set_bindings(
    admin: AdminChange,
    body: web::Json<SetBindings>,
) -> Result<HttpResponse, ApiError> {
    let name = admin.client()?;
    let reason = required_reason(&body.reason)?;
    let bindings = body
        .bindings
        .iter()
        .map(CertBinding::parse)
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::BadRequest)?;
    let live = admin.live().await?;
    let change = admin.change(reason, Some(live));
    let (state, issuers) = (&admin.state, admin.material.trust.issuers());
    state
        .registry
        .set_bindings(&name, bindings, change, issuers, body.force)
        .await?;
    Ok(HttpResponse::Ok().json(shown(state, &name).await?))
}

/// One client as it is now, with its use.
async fn shown(state: &AppState, name: &ClientName) -> Result<ClientView, ApiError> {
    let usage = usage(state).await?;
    let newest = storage::newest_certificates(&state.pool, Some(name.as_str())).await?;
    let client = state
        .registry
        .snapshot()
        .client(name)
        .cloned()
        .ok_or(ApiError::NotFound)?;
    let renewal = renewal_view(&client, newest.get(name.as_str()), state);
    Ok(client_view(&client, usage.get(name.as_str()), renewal))
}

/// This module's routes (see `routes::endpoint`).
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::of::<__path_list_clients, _, _>(list_clients),
        Endpoint::of::<__path_register_client, _, _>(register_client),
        Endpoint::of::<__path_get_client, _, _>(get_client),
        Endpoint::of::<__path_set_mode, _, _>(set_mode),
        Endpoint::of::<__path_set_disabled, _, _>(set_disabled),
        Endpoint::of::<__path_set_bindings, _, _>(set_bindings),
    ]
}
