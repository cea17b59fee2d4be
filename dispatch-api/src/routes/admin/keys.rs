//! A client's API key: rotate (the new key is in the response only; the old one stays valid for
//! an overlap), end one key at once by its id (a leak), or remove them all.

use actix_web::{HttpResponse, web};
use secrecy::ExposeSecret;

use super::{AdminChange, keys_view, required_reason, usage};
use crate::error::ApiError;
use crate::registry::{ApiKeyHash, ClientName, Rotation, generate_api_key};
use crate::routes::endpoint::Endpoint;
use crate::state::AppState;
use dispatch_types::{KeyChange, KeyEnded, KeyRotated, KeyRotation, KeyView, KeysRemoved};

/// Issues a new key. The key it replaces stays valid for the overlap, so every instance holding
/// it keeps working while the new one is deployed. The key is in this response only.
#[utoipa::path(
    post,
    path = "/admin/clients/{name}/api-key",
    tag = "admin",
    request_body = KeyRotation,
    params(("name" = String, Path, description = "the client's name")),
    responses(
        (status = 200, description = "the new key, in this answer only", body = KeyRotated),
        super::ChangeRefused,
        (status = 409, description = "an earlier rotation's overlap is still running (`key-overlap-running`)", body = crate::error::Problem, content_type = "application/problem+json")
    ),
    security(("mutual_tls" = []))
)]
pub async fn rotate_api_key(
    admin: AdminChange,
    body: web::Json<KeyRotation>,
) -> Result<HttpResponse, ApiError> {
    let name = admin.client()?;
    let reason = required_reason(&body.reason)?;
    let state = &admin.state;
    if body.expires_in_secs == Some(0) {
        return Err(ApiError::BadRequest(
            "`expires_in_secs` must be at least 1: a key that expires at once would cut the client off".into(),
        ));
    }
    let key = generate_api_key();
    let hash = ApiKeyHash::of(&key);
    let rotation = Rotation {
        key: hash,
        overlap_secs: body
            .overlap_secs
            .unwrap_or(state.migration.key_overlap_secs),
        expires_in_secs: body.expires_in_secs,
    };
    state
        .registry
        .rotate_api_key(&name, rotation, admin.change(reason, None))
        .await?;
    Ok(HttpResponse::Ok().json(KeyRotated {
        client: name.to_string(),
        api_key: key.expose_secret().to_owned(),
        api_key_id: hash.id(),
        api_key_note: "shown once; only its SHA-256 is stored".into(),
        api_keys: keys_now(state, &name).await,
    }))
}

#[utoipa::path(
    delete,
    path = "/admin/clients/{name}/api-key",
    tag = "admin",
    request_body = KeyChange,
    params(("name" = String, Path, description = "the client's name")),
    responses(
        (status = 200, description = "removed", body = KeysRemoved),
        super::ChangeRefused
    ),
    security(("mutual_tls" = []))
)]
pub async fn remove_api_key(
    admin: AdminChange,
    body: web::Json<KeyChange>,
) -> Result<HttpResponse, ApiError> {
    let name = admin.client()?;
    let reason = required_reason(&body.reason)?;
    let change = admin.change(reason, None);
    admin.state.registry.remove_api_keys(&name, change).await?;
    Ok(HttpResponse::Ok().json(KeysRemoved {
        client: name.to_string(),
        has_api_key: false,
    }))
}

/// Ends one key of a client at once, by its id (the `id` of `api_keys` in `GET
/// /admin/clients/{name}`, the first 12 hex digits of its SHA-256): a leaked key, say, in the
/// middle of a rotation's overlap. The client's other key stays as it was; the ended one is
/// refused as `key_expired` from now on, on every replica, and its use is an alert.
#[utoipa::path(
    delete,
    path = "/admin/clients/{name}/api-keys/{key_id}",
    tag = "admin",
    request_body = KeyChange,
    params(
        ("name" = String, Path, description = "the client's name"),
        ("key_id" = String, Path, description = "the key's id: the first 12 hex digits of its SHA-256"),
    ),
    responses(
        (status = 200, description = "ended: the client's keys as they are now", body = KeyEnded),
        (status = 400, description = "malformed request (a missing `reason`, say)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such client, or no live key of it with that id", body = crate::error::Problem, content_type = "application/problem+json")
    ),
    security(("mutual_tls" = []))
)]
pub async fn end_api_key(
    admin: AdminChange,
    path: web::Path<(String, String)>,
    body: web::Json<KeyChange>,
) -> Result<HttpResponse, ApiError> {
    let (_, key_id) = path.into_inner();
    let name = admin.client()?;
    let reason = required_reason(&body.reason)?;
    let change = admin.change(reason, None);
    admin
        .state
        .registry
        .end_api_key(&name, &key_id, change)
        .await?;
    tracing::warn!(client = %name, key_id, actor = admin.actor, "an API key was ended at once");
    Ok(HttpResponse::Ok().json(KeyEnded {
        client: name.to_string(),
        ended: key_id,
        api_keys: keys_now(&admin.state, &name).await,
    }))
}

/// The client's keys as a change left them, for its answer. The change is stored: a failing
/// usage read leaves each key's use out rather than keeping the answer from its caller.
async fn keys_now(state: &AppState, name: &ClientName) -> Option<Vec<KeyView>> {
    let client = state.registry.snapshot().client(name).cloned()?;
    let usage = usage(state).await.unwrap_or_default();
    Some(keys_view(&client, usage.get(name.as_str())))
}

/// This module's routes (see `routes::endpoint`).
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::of::<__path_rotate_api_key, _, _>(rotate_api_key),
        Endpoint::of::<__path_remove_api_key, _, _>(remove_api_key),
        Endpoint::of::<__path_end_api_key, _, _>(end_api_key),
    ]
}
