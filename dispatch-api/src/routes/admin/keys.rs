//! A client's API key: rotate (the new key is in the response only) or remove.

use super::*;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyChange {
    reason: String,
}

/// Issues a new key, replacing the old one at once. The key is in this response only.
#[utoipa::path(
    post,
    path = "/admin/clients/{name}/api-key",
    tag = "admin",
    request_body = KeyChange,
    params(("name" = String, Path, description = "the client's name")),
    responses(
        (status = 200, description = "the new key, in this answer only", body = Object),
        (status = 400, description = "malformed request (a missing `reason`, say)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such client", body = crate::error::Problem, content_type = "application/problem+json")
    ),
    security(("mutual_tls" = []))
)]
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
    let material = arc_swap::Guard::into_inner(state.tls.material());
    state
        .registry
        .set_api_key(
            &name,
            Some(ApiKeyHash::of(&key)),
            change(&actor, reason, &principal, &material, None),
        )
        .await?;
    Ok(HttpResponse::Ok().json(json!({
        "client": name.as_str(),
        "api_key": key.expose_secret(),
        "api_key_note": "shown once; only its SHA-256 is stored",
    })))
}

#[utoipa::path(
    delete,
    path = "/admin/clients/{name}/api-key",
    tag = "admin",
    request_body = KeyChange,
    params(("name" = String, Path, description = "the client's name")),
    responses(
        (status = 200, description = "removed", body = Object),
        (status = 400, description = "malformed request (a missing `reason`, say)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such client", body = crate::error::Problem, content_type = "application/problem+json")
    ),
    security(("mutual_tls" = []))
)]
pub async fn remove_api_key(
    Operator(principal): Operator,
    name: web::Path<String>,
    body: web::Json<KeyChange>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = client_name(&name)?;
    let reason = required_reason(&body.reason)?;
    let actor = actor(&principal);
    let material = arc_swap::Guard::into_inner(state.tls.material());
    state
        .registry
        .set_api_key(
            &name,
            None,
            change(&actor, reason, &principal, &material, None),
        )
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "client": name.as_str(), "has_api_key": false })))
}
