//! The middleware of the HTTPS listener, outermost first: the request body's bounds (read
//! timeout, drain before the answer), the header-size limit, the request observer (audit,
//! metrics, log line), and authentication on the `/api` and `/admin` scopes.
//! `require_principal`, `observe_request` and `reject_oversized_headers` are thin adapters
//! from actix to the modules that decide (`auth`, `audit`, the limits). Two decide here, where
//! what they decide about is: `bound_request_body` (how long an unread body is drained before
//! an answer) and `give_precedence` (whether a request that proved nothing waits, is shed, or
//! closes its connection, by `precedence`'s admission).

use crate::telemetry::LogBudget;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, web};

use super::body::{BodyOutcome, WatchedBody};
use crate::audit::{self, Exchange};
use crate::auth::{Principal, authenticate};
use crate::error::ApiError;
use crate::identity::ConnectionIdentity;
use crate::precedence::{Admission, Cap, ConnectionMark, Network};
use crate::state::AppState;
use crate::storage::StorageError;
use crate::telemetry;
use crate::tls::{ConnectionOpened, connection_value};

/// How long an HTTP/2 body none of which has arrived is waited for once the answer is ready:
/// a client that sends one sends it right behind its headers.
const BODY_START_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Outermost: the handlers read the body through a [`WatchedBody`] (a read timeout between
/// chunks), and once the answer is ready, the unread rest of the body is drained (HTTP/1.1:
/// within `limits.drain_bytes` and `limits.drain_secs`; HTTP/2: within `drain_secs`) so the
/// client receives the answer whole (see `routes::body`). Past the bound, an HTTP/1.1
/// connection is closed after the answer.
pub async fn bound_request_body(
    mut request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let Some(state) = request.app_data::<web::Data<AppState>>().cloned() else {
        return next.call(request).await;
    };
    let limits = &state.limits;
    let body = WatchedBody::new(
        request.take_payload(),
        std::time::Duration::from_secs(limits.body_timeout_secs),
    );
    // HTTP/2 paces the client by flow control, and a stream reset after an early answer is what
    // stock clients lose the answer to (curl 7.88: error 92; httpx: a hang): read the rest within
    // the time bound whatever its size. HTTP/1.1 has no such pacing: the byte bound holds too.
    // An HTTP/2 stream none of whose body arrives within `BODY_START_GRACE` of the answer is
    // not waited for: it ends after the answer (RST_STREAM(NO_ERROR)) instead of holding its
    // slot of `limits.http2_max_concurrent_streams` for `drain_secs`. Not at once: curl 7.88
    // loses the answer to that reset when its body is merely still on the way (error 92).
    let http2 = request.version() == actix_web::http::Version::HTTP_2;
    let max_bytes = if http2 {
        usize::MAX
    } else {
        limits.drain_bytes
    };
    request.set_payload(body.payload());
    let mut response = next.call(request).await?;
    // Shed over HTTP/1.1: answered cheaply, a body that is not already over left unread (the
    // connection then closes after the answer).
    let (max_bytes, within) = if !http2 && response.response().extensions().contains::<Shed>() {
        (0, std::time::Duration::ZERO)
    } else {
        (max_bytes, std::time::Duration::from_secs(limits.drain_secs))
    };
    let (outcome, discarded) = body
        .drain(max_bytes, within, http2.then_some(BODY_START_GRACE))
        .await;
    let label = match outcome {
        BodyOutcome::Ended if discarded > 0 => Some("drained"),
        BodyOutcome::Ended => None,
        BodyOutcome::TimedOut => Some("timed_out"),
        BodyOutcome::Cut => Some("cut"),
        BodyOutcome::NotStarted => Some("not_started"),
    };
    if let Some(label) = label {
        state.metrics.request_body_unread(label);
    }
    if outcome != BodyOutcome::Ended {
        response
            .response_mut()
            .head_mut()
            .set_connection_type(actix_web::http::ConnectionType::Close);
    }
    Ok(response)
}

/// actix bounds the request head it will buffer; this bounds what the API accepts
/// (`limits.max_header_bytes`), as a 431 problem.
pub async fn reject_oversized_headers(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let limit = request
        .app_data::<web::Data<AppState>>()
        .map(|state| state.limits.max_header_bytes)
        .unwrap_or(usize::MAX);
    let size: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if size > limit {
        // Anyone can send these: a budget of lines, as for refusals.
        static LINES: LogBudget = LogBudget::new(crate::audit::REFUSAL_LINES_PER_SECOND);
        if let Some(suppressed) = LINES.take(crate::telemetry::this_second()) {
            tracing::warn!(
                size,
                limit,
                suppressed,
                path = %crate::telemetry::clip(request.path()),
                "request headers too large"
            );
        }
        return Ok(request
            .error_response(ApiError::HeadersTooLarge { limit })
            .map_into_right_body());
    }
    next.call(request)
        .await
        .map(ServiceResponse::map_into_left_body)
}

/// Around the whole API: once a request is answered, [`audit::record`] remembers it.
pub async fn observe_request(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let state = request.app_data::<web::Data<AppState>>().cloned();
    let http_method = request.method().to_string();
    let path = request.path().to_owned();
    let peer = request.peer_addr().map(|a| a.ip());
    let response = next.call(request).await?;
    let Some(state) = state else {
        return Ok(response);
    };
    let status = response.status();
    let principal = response.request().extensions().get::<Principal>().cloned();
    let error = response
        .response()
        .error()
        .and_then(|e| e.as_error::<ApiError>());
    let refusal = error.and_then(ApiError::refusal);
    let failure = error
        .filter(|_| status.is_server_error())
        .map(|e| telemetry::error_chain(e));
    audit::record(
        &state.recorder,
        &state.metrics,
        principal.as_ref(),
        refusal,
        &Exchange {
            http_method: &http_method,
            path: &path,
            peer,
            status: status.as_u16(),
            elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
            failure,
        },
    );
    // A known client's refusal that a flip may have caused, for the flip guards.
    if let Some(refusal) = refusal
        && let (Some(client), Some(method)) = (refusal.client.as_deref(), refusal.method)
    {
        state.flip_tally.count(
            client,
            refusal.reason.as_str(),
            method,
            audit::network(peer),
            time::OffsetDateTime::now_utc().unix_timestamp(),
            state.registry.watch(client).as_deref(),
        );
    }
    Ok(response)
}

/// On every authenticated scope: puts the [`Principal`] into the request, or answers with the
/// refusal. A refusal by the client's mode alone is let in when a reverted guard's reopening
/// admits its method from the caller's network (`registry::Reopening`): the one exception a
/// guard makes, for the instances the evidence shows were live.
pub async fn require_principal(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(state) = request.app_data::<web::Data<AppState>>() else {
        return Ok(request
            .error_response(ApiError::Internal("application state missing".into()))
            .map_into_right_body());
    };
    // A replica cut off from the database may have missed a key removed, a revocation or a
    // flip made elsewhere: past the bound it judges nobody.
    let now = time::OffsetDateTime::now_utc();
    if let Some(secs) = state.registry.unconfirmed_for(now.unix_timestamp())
        && secs > state.max_staleness_secs as i64
    {
        return Ok(request
            .error_response(ApiError::Unavailable(StorageError::RegistryStale(secs)))
            .map_into_right_body());
    }
    let connection =
        connection_value::<ConnectionIdentity>(&request).unwrap_or(ConnectionIdentity::Anonymous);
    let outcome = authenticate(
        &state.registry.snapshot(),
        &state.tls.material().trust,
        &connection,
        request.headers(),
        now,
    );
    let outcome = outcome.or_else(|mut refusal| match refusal.readmits.take() {
        Some(principal) if reopened_for(state, &principal, &request) => Ok(*principal),
        _ => Err(refusal),
    });
    match outcome {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.call(request)
                .await
                .map(ServiceResponse::map_into_left_body)
        }
        Err(refusal) => Ok(request
            .error_response(ApiError::Refused(refusal))
            .map_into_right_body()),
    }
}

/// Whether a reverted guard's reopening lets `principal` in from the request's network.
fn reopened_for(state: &AppState, principal: &Principal, request: &ServiceRequest) -> bool {
    state
        .registry
        .reopening(principal.client.name.as_str())
        .is_some_and(|reopening| {
            reopening.admits(
                principal.method,
                &audit::network(request.peer_addr().map(|a| a.ip())),
                time::OffsetDateTime::now_utc().unix_timestamp(),
            )
        })
}

/// Requests that proved nothing get their bounded share (see `precedence`): once the answer
/// is ready (a 401, or a 404 outside the authenticated scopes; the body not yet read), it waits
/// its turn within `limits.unproven`'s rates, or is replaced by a 503 with Retry-After when the
/// turn is too far away or the connection past the caps (HTTP/1.1: the connection then closed,
/// and the body not drained). A request on a connection with a certificate, or one that
/// authenticated or was refused as a known client, is never counted nor held. A request that
/// authenticated also lifts what its HTTP/2 connection was held to while it proved nothing (a
/// small flow-control window, two streams at a time).
pub async fn give_precedence(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let state = request.app_data::<web::Data<AppState>>().cloned();
    let certificate = matches!(
        connection_value::<ConnectionIdentity>(&request),
        Some(ConnectionIdentity::Certificate(_))
    );
    let mark = connection_value::<ConnectionMark>(&request);
    let response = next.call(request).await?;
    let authenticated = response.request().extensions().contains::<Principal>();
    if let Some(mark) = mark.as_ref().filter(|_| authenticated) {
        // Its HTTP/2 connection is no longer held as unproven (`listener::http2`), whatever
        // it connected with.
        mark.authenticated();
    }
    let (Some(state), Some(mark), false) = (state, mark, certificate) else {
        return Ok(response.map_into_left_body());
    };
    let known = authenticated
        || response
            .response()
            .error()
            .and_then(|e| e.as_error::<ApiError>())
            .and_then(ApiError::refusal)
            .is_some_and(|refusal| refusal.client.is_some());
    if known {
        mark.prove();
        return Ok(response.map_into_left_body());
    }
    let Some(peer) = response.request().peer_addr() else {
        return Ok(response.map_into_left_body());
    };
    let network = Network::of(peer.ip());
    let admission = if mark.unproven(&state.precedence, network) {
        state.precedence.admit(network, std::time::Instant::now())
    } else {
        Admission::Shed {
            cap: Cap::Connections,
            retry_after: std::time::Duration::from_secs(1),
        }
    };
    match admission {
        Admission::Now => state.metrics.unproven_request("now"),
        Admission::After(wait) => {
            state.metrics.unproven_request("waited");
            tokio::time::sleep(wait).await;
        }
        Admission::Shed { cap, retry_after } => {
            state
                .metrics
                .unproven_request(&format!("shed_{}", cap.as_str()));
            let error = ApiError::Busy {
                retry_after_secs: retry_after.as_secs_f64().ceil().max(1.0) as u64,
            };
            let (request, _) = response.into_parts();
            let mut shed = ServiceResponse::from_err(error, request);
            shed.response_mut().extensions_mut().insert(Shed(cap));
            if cap == Cap::Connections {
                shed.response_mut()
                    .head_mut()
                    .set_connection_type(actix_web::http::ConnectionType::Close);
            }
            return Ok(shed.map_into_right_body());
        }
    }
    Ok(response.map_into_left_body())
}

/// On a response `give_precedence` shed: its request's body is not drained.
#[derive(Debug, Clone, Copy)]
pub struct Shed(pub Cap);

/// Past `tls.max_connection_age_secs`, an HTTP/1.1 connection is closed after its current
/// response (`Connection: close`), so that every client eventually does a full handshake
/// against the current trust. HTTP/2 connections get a GOAWAY from `listener` instead.
pub async fn close_aged_connections(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let max_age = request
        .app_data::<web::Data<AppState>>()
        .map_or(0, |state| state.max_connection_age_secs);
    let aged = max_age > 0
        && connection_value::<ConnectionOpened>(&request)
            .is_some_and(|opened| opened.0.elapsed() >= std::time::Duration::from_secs(max_age));
    let mut response = next.call(request).await?;
    if aged {
        response
            .response_mut()
            .head_mut()
            .set_connection_type(actix_web::http::ConnectionType::Close);
    }
    Ok(response)
}
