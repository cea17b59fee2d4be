//! `GET /api/whoami`: how the server sees the caller. The first thing to run when something fails.

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::policy::Authenticated;
use crate::routes::endpoint::Endpoint;
use crate::state::AppState;

#[utoipa::path(
    get,
    path = "/api/whoami",
    tag = "identity",
    responses(
        (status = 200, description = "how the server sees the caller: client, method, mode, scopes, certificate and issuer key", body = Object),
        (status = 401, description = "not authenticated (the problem's `reason` says why, for callers we know)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "authenticated, but this client may not do this (`policy_denied`, `client_disabled`)", body = crate::error::Problem, content_type = "application/problem+json")
    ),
    security(("mutual_tls" = []), ("api_key" = []))
)]
pub async fn whoami(
    Authenticated(principal): Authenticated,
    state: web::Data<AppState>,
) -> HttpResponse {
    let client = &principal.client;
    let certificate = principal.certificate.as_ref().map(|verified| {
        let cert = &verified.leaf;
        json!({
            "subject": cert.subject.as_str(),
            "issuer": cert.issuer.as_str(),
            // Paste into a binding's issuer_spki_sha256 to pin the key that signed this leaf.
            "issuer_spki_sha256": verified.issuer_spki,
            "common_names": cert.common_names,
            "uri_sans": cert.uri_sans,
            "spiffe_ids": cert.spiffe_ids,
            "dns_names": cert.dns_names,
            "serial": cert.serial,
            "fingerprint_sha256": cert.fingerprint.to_string(),
            "chain_fingerprints_sha256": verified.fingerprints().map(ToString::to_string).collect::<Vec<_>>(),
            "not_after": super::rfc3339(cert.not_after.unix_timestamp()),
            // The earliest notAfter of the path: when this identity stops being accepted.
            "valid_until": super::rfc3339(verified.not_after.unix_timestamp()),
            "seconds_until_expiry": (verified.not_after - time::OffsetDateTime::now_utc()).whole_seconds(),
        })
    });
    HttpResponse::Ok().json(json!({
        "client": client.name.as_str(),
        "method": principal.method,
        "mode": client.mode,
        "scopes": client.scopes,
        "certificate": certificate,
        "listener_client_auth": format!("{:?}", state.settings.tls.client_auth).to_lowercase(),
    }))
}

/// This module's routes (see `routes::endpoint`).
pub fn endpoints() -> Vec<Endpoint> {
    vec![Endpoint::of::<__path_whoami, _, _>(whoami)]
}
