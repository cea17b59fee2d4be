//! The certificate deny list, effective on the next request.

use super::*;

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
