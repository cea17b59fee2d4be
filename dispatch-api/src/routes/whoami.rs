//! `GET /api/whoami`: how the server sees the caller. The first thing to run when something fails.

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::policy::Authenticated;
use crate::state::AppState;

pub async fn whoami(
    Authenticated(principal): Authenticated,
    state: web::Data<AppState>,
) -> HttpResponse {
    let client = &principal.client;
    let certificate = principal.certificate.as_ref().map(|cert| {
        json!({
            "subject": cert.subject.as_str(),
            "issuer": cert.issuer.as_str(),
            "common_names": cert.common_names,
            "spiffe_ids": cert.spiffe_ids,
            "dns_names": cert.dns_names,
            "serial": cert.serial,
            "fingerprint_sha256": cert.fingerprint.to_string(),
            "not_after": super::rfc3339(cert.not_after.unix_timestamp()),
            "seconds_until_expiry": (cert.not_after - time::OffsetDateTime::now_utc()).whole_seconds(),
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
