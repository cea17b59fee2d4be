//! The operations listener (plain HTTP, 127.0.0.1 by default): probes and scrapers need no
//! client certificate.
//!
//! - `GET /healthz`  the process is up
//! - `GET /readyz`   the database answers and the server certificate is loaded and unexpired
//! - `GET /metrics`  Prometheus text

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::startup::AppState;
use crate::storage;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let database = storage::ping(&state.pool).await;
    let seconds_left = (state.server_not_after - time::OffsetDateTime::now_utc()).whole_seconds();
    let certificate_ok = seconds_left > 0;
    let ready = database.is_ok() && certificate_ok;
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "database": if database.is_ok() { "ok" } else { "unavailable" },
        "server_certificate": if certificate_ok { "ok" } else { "expired" },
    });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let seconds_left = (state.server_not_after - time::OffsetDateTime::now_utc()).whole_seconds();
    state.metrics.set_server_certificate_expiry(seconds_left);
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(state.metrics.encode())
}
