//! Clients: list, read, register, and the operator's switches (mode, disabled).

use super::*;

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
            state.tls.material().trust.issuers(),
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

pub(super) fn ready_for_mtls(usage: Option<&Usage>, since: i64) -> bool {
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
