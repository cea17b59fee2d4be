//! `GET /api/whoami`: how the server sees the caller. The first thing to run when something fails.

use actix_web::{HttpResponse, web};
use dispatch_types::{CertificateSeen, Whoami};

use crate::policy::Authenticated;
use crate::routes::endpoint::Endpoint;
use crate::state::AppState;

#[utoipa::path(
    get,
    path = "/api/whoami",
    tag = "identity",
    responses(
        (status = 200, description = "how the server sees the caller: client, method, mode, scopes, certificate and issuer key", body = Whoami),
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
        CertificateSeen {
            subject: cert.subject.as_str().to_owned(),
            issuer: cert.issuer.as_str().to_owned(),
            issuer_spki_sha256: verified.issuer_spki.to_string(),
            common_names: cert.common_names.clone(),
            uri_sans: cert.uri_sans.clone(),
            spiffe_ids: cert
                .spiffe_ids
                .iter()
                .map(|id| id.as_str().to_owned())
                .collect(),
            dns_names: cert.dns_names.clone(),
            serial: cert.serial.clone(),
            fingerprint_sha256: cert.fingerprint.to_string(),
            chain_fingerprints_sha256: verified.fingerprints().map(ToString::to_string).collect(),
            not_after: super::rfc3339(cert.not_after.unix_timestamp()),
            valid_until: super::rfc3339(verified.not_after.unix_timestamp()),
            seconds_until_expiry: (verified.not_after - time::OffsetDateTime::now_utc())
                .whole_seconds(),
        }
    });
    HttpResponse::Ok().json(Whoami {
        client: client.name.to_string(),
        method: principal.method,
        mode: client.mode,
        scopes: client.scopes.clone(),
        certificate,
        listener_client_auth: state.client_auth,
    })
}

/// This module's routes (see `routes::endpoint`).
pub fn endpoints() -> Vec<Endpoint> {
    vec![Endpoint::of::<__path_whoami, _, _>(whoami)]
}
