//! The certificate deny list, effective on the next request.

use super::*;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Revoke {
    fingerprint: String,
    reason: String,
}

/// Adds a certificate fingerprint to the deny list, effective on the next request.
#[utoipa::path(
    post,
    path = "/admin/revocations",
    tag = "admin",
    request_body = Revoke,
    responses(
        (status = 200, description = "on the deny list from the next request on (201; 200 if it was already)", body = Object),
        (status = 400, description = "malformed request (a missing `reason`, say)", body = crate::error::Problem, content_type = "application/problem+json")
    ),
    security(("mutual_tls" = []))
)]
pub async fn revoke_certificate(
    Operator(principal): Operator,
    body: web::Json<Revoke>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let fingerprint = Fingerprint::parse(&body.fingerprint).map_err(ApiError::BadRequest)?;
    let reason = required_reason(&body.reason)?;
    let actor = actor(&principal);
    let material = arc_swap::Guard::into_inner(state.tls.material());
    // Keeping certificates out is what a revocation is for: only the operator's own is tried.
    let own = LiveCertificates::new(
        material.trust.clone(),
        principal.certificate.clone(),
        [],
        time::OffsetDateTime::now_utc(),
    );
    let added = state
        .registry
        .revoke(
            fingerprint,
            change(&actor, reason, &principal, &material, Some(&own)),
        )
        .await?;
    let status = if added {
        actix_web::http::StatusCode::CREATED
    } else {
        actix_web::http::StatusCode::OK
    };
    Ok(HttpResponse::build(status).json(json!({ "fingerprint": fingerprint, "revoked": true })))
}

#[utoipa::path(
    get,
    path = "/admin/revocations",
    tag = "admin",
    responses(
        (status = 200, description = "the deny list", body = Object)
    ),
    security(("mutual_tls" = []))
)]
pub async fn list_revocations(
    _: Operator,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(json!({ "revocations": state.registry.revocations().await? })))
}
