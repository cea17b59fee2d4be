//! The operations listener (plain HTTP, 127.0.0.1 by default): probes and scrapers need no
//! client certificate.
//!
//! - `GET /healthz`  the process is up
//! - `GET /readyz`   the database takes writes and the server certificate is unexpired
//! - `GET /metrics`  Prometheus text
//!
//! It is unauthenticated, so what it can cost is bounded: at most `OPS_MAX_CONNECTIONS`
//! connections (`startup`), a thread of lower CPU priority, and [`ANSWERS_PER_SEC`] answers a
//! second, each request waiting its turn ([`Pace`]): probes and scrapers need a few a second,
//! and a client hammering /readyz or /metrics cannot take the CPU that plans need.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::routes::endpoint::Endpoint;
use crate::state::AppState;

/// Answers the operations listener gives a second, at most, all callers together.
pub const ANSWERS_PER_SEC: u32 = 1000;

/// The turns of the operations listener's requests, one every 1/[`ANSWERS_PER_SEC`] s. A
/// request waits for its turn; since the listener holds at most 64 connections, each with one
/// request at a time, no turn is more than 64 ms away (a probe's timeout is seconds).
#[derive(Debug, Default)]
pub struct Pace(Mutex<Option<Instant>>);

impl Pace {
    /// How long the request arriving at `now` waits for its turn.
    pub fn turn(&self, now: Instant) -> Duration {
        let mut next = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let slot = next.map_or(now, |next| next.max(now));
        *next = Some(slot + Duration::from_secs(1) / ANSWERS_PER_SEC);
        slot - now
    }
}

/// The nice value of the operations listener's thread (0 is the default, 19 the lowest).
const NICE: i32 = 19;

/// Lowers the CPU priority of the calling thread, the listener's one worker: it yields the CPU
/// to the HTTPS workers when both want it. Probes and scrapers still get every answer, only
/// later under load; an unauthenticated client hammering /readyz or /metrics cannot take the
/// CPU that plans need (bench: figure 1 beside 50 probe connections). On Linux the nice value
/// is the calling thread's alone.
pub fn lower_thread_priority() {
    if let Err(error) = rustix::process::setpriority_process(None, NICE) {
        tracing::warn!(%error, "the operations listener's thread keeps the default CPU priority");
    }
}

/// Middleware of the operations listener: each request waits its turn ([`Pace`]).
pub async fn paced(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if let Some(pace) = request.app_data::<web::Data<Pace>>() {
        let wait = pace.turn(Instant::now());
        if !wait.is_zero() {
            actix_rt::time::sleep(wait).await;
        }
    }
    next.call(request).await
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "the process is up (always 200 while it serves)"))
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses((status = 200, description = "200 when the database takes writes and TLS material is loaded; 503 with the reason otherwise"))
)]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    // The probe sees locks and lost files; a recent failed plan write also covers a full
    // database, which a probe that writes nothing cannot see. Anyone who reaches the ops
    // listener can ask: the probe's result is at most a second old, one probe in flight.
    let (writable, probed) = state.readiness.check(&state.pool).await;
    if probed {
        state.metrics.readiness_probe();
    }
    let database = match writable {
        _ if state.database_lock_lost.get() => {
            Err("its lock file was replaced and another dispatch-api holds it: stop one of them")
        }
        true if state.plans.health().failing_within(10) => Err("recent plan writes failed"),
        true => Ok(()),
        false => Err("unavailable"),
    };
    let now = time::OffsetDateTime::now_utc();
    let certificate_ok = state.tls.material().server_not_after > now;
    // PostgreSQL: a registry not confirmed current within the bound judges nobody.
    let registry_current = state
        .registry
        .unconfirmed_for(now.unix_timestamp())
        .is_none_or(|secs| secs <= state.max_staleness_secs as i64);
    let ready = database.is_ok() && certificate_ok && registry_current;
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "database": database.err().unwrap_or("writable"),
        "server_certificate": if certificate_ok { "ok" } else { "expired" },
        "registry": if registry_current { "current" } else { "stale" },
    });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus metrics (OpenMetrics text)"))
)]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    state.tls.publish_expiry();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let snapshot = state.registry.snapshot();
    state
        .metrics
        .set_api_key_expiries(snapshot.clients().flat_map(|client| {
            client.api_keys.iter().filter_map(move |key| {
                let left = key.expires_at? - now;
                // An expired key is refused already: key_expired says so, not this gauge.
                let state = if key.replaced_at.is_some() {
                    "overlap"
                } else {
                    "current"
                };
                (left > 0).then(|| (client.name.to_string(), key.hash.id(), state, left))
            })
        }));
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(state.metrics.encode())
}

/// `dispatch-api healthcheck`: asks this instance's own `/readyz` over plain HTTP and succeeds
/// on 200. For container health checks on images without curl.
pub fn probe_readiness(settings: &crate::configuration::ServerSettings) -> Result<(), String> {
    use std::io::{Read, Write};
    let host = match settings.ops_host.as_str() {
        "0.0.0.0" | "::" | "[::]" => "127.0.0.1",
        other => other,
    };
    let address = format!("{host}:{}", settings.ops_port);
    let timeout = std::time::Duration::from_secs(3);
    let socket = std::net::ToSocketAddrs::to_socket_addrs(&address)
        .map_err(|e| format!("{address}: {e}"))?
        .next()
        .ok_or_else(|| format!("{address}: no address"))?;
    let mut stream = std::net::TcpStream::connect_timeout(&socket, timeout)
        .map_err(|e| format!("{address}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(
            format!("GET /readyz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .map_err(|e| format!("{address}: {e}"))?;
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status_line = response.lines().next().unwrap_or_default();
    if status_line.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else {
        Err(format!(
            "/readyz on {address} answered `{status_line}`: {}",
            response.rsplit("\r\n\r\n").next().unwrap_or_default()
        ))
    }
}

/// The operations listener's documented routes (see `routes::endpoint`).
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::of::<__path_healthz, _, _>(healthz),
        Endpoint::of::<__path_readyz, _, _>(readyz),
        Endpoint::of::<__path_metrics, _, _>(metrics),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_of_one_instant_take_turns_and_one_after_a_quiet_spell_waits_for_none() {
        let pace = Pace::default();
        let start = Instant::now();
        let step = Duration::from_secs(1) / ANSWERS_PER_SEC;
        let waits: Vec<Duration> = (0..4).map(|_| pace.turn(start)).collect();
        assert_eq!(waits, [Duration::ZERO, step, 2 * step, 3 * step]);
        // Half a step later, the next turn is three and a half steps away.
        assert_eq!(pace.turn(start + step / 2), 4 * step - step / 2);
        // After a quiet second, no wait, and the turns start from then.
        let later = start + Duration::from_secs(1);
        assert_eq!(pace.turn(later), Duration::ZERO);
        assert_eq!(pace.turn(later), step);
    }
}
