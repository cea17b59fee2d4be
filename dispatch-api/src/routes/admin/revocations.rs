//! The certificate deny list, by fingerprint or by key, effective on the next request.

use std::sync::Arc;

use actix_web::{HttpResponse, web};

use super::{AdminChange, required_reason};
use crate::auth::tryout::LiveCertificates;
use crate::error::ApiError;
use crate::identity::{Fingerprint, SpkiHash};
use crate::policy::Operator;
use crate::routes::endpoint::Endpoint;
use crate::state::AppState;
use dispatch_types::{RevocationAdded, Revocations, Revoke};

/// Adds a certificate fingerprint, or a key (every certificate of it), to the deny list,
/// effective on the next request.
#[utoipa::path(
    post,
    path = "/admin/revocations",
    tag = "admin",
    request_body = Revoke,
    responses(
        (status = 200, description = "on the deny list from the next request on (201; 200 if it was already)", body = RevocationAdded),
        (status = 400, description = "malformed request (a missing `reason`, say)", body = crate::error::Problem, content_type = "application/problem+json")
    ),
    security(("mutual_tls" = []))
)]
pub async fn revoke_certificate(
    admin: AdminChange,
    body: web::Json<Revoke>,
) -> Result<HttpResponse, ApiError> {
    let reason = required_reason(&body.reason)?;
    // Keeping certificates out is what a revocation is for: only the operator's own is tried.
    let own = LiveCertificates::new(
        admin.material.trust.clone(),
        admin.principal.certificate.clone(),
        [],
        time::OffsetDateTime::now_utc(),
    );
    let change = admin.change(reason, Some(Arc::new(own)));
    let state = &admin.state;
    let (added, answer) = match (&body.fingerprint, &body.spki_sha256) {
        (Some(fingerprint), None) => {
            let fingerprint = Fingerprint::parse(fingerprint).map_err(ApiError::BadRequest)?;
            let added = state.registry.revoke(fingerprint, change).await?;
            (
                added,
                RevocationAdded {
                    fingerprint: Some(fingerprint.to_string()),
                    spki_sha256: None,
                    revoked: true,
                },
            )
        }
        (None, Some(key)) => {
            let key = SpkiHash::parse(key).map_err(ApiError::BadRequest)?;
            let added = state.registry.deny_key(key, change).await?;
            tracing::warn!(spki_sha256 = %key, actor = admin.actor, "a key was put on the deny list");
            (
                added,
                RevocationAdded {
                    fingerprint: None,
                    spki_sha256: Some(key.to_string()),
                    revoked: true,
                },
            )
        }
        _ => {
            return Err(ApiError::BadRequest(
                "name exactly one of `fingerprint` (a certificate) and `spki_sha256` (a key: \
                 every certificate of it)"
                    .into(),
            ));
        }
    };
    let status = if added {
        actix_web::http::StatusCode::CREATED
    } else {
        actix_web::http::StatusCode::OK
    };
    Ok(HttpResponse::build(status).json(answer))
}

#[utoipa::path(
    get,
    path = "/admin/revocations",
    tag = "admin",
    responses(
        (status = 200, description = "the deny list", body = Revocations)
    ),
    security(("mutual_tls" = []))
)]
pub async fn list_revocations(
    _: Operator,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let revocations = state.registry.revocations().await?;
    Ok(HttpResponse::Ok().json(Revocations { revocations }))
}

/// This module's routes (see `routes::endpoint`).
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::of::<__path_list_revocations, _, _>(list_revocations),
        Endpoint::of::<__path_revoke_certificate, _, _>(revoke_certificate),
    ]
}
