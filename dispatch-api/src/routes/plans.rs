//! `POST /api/dispatch-plans` and `GET /api/dispatch-plans/{id}`.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;

use crate::error::ApiError;
use crate::plans::{NewPlan, Plan, PlanRequest, SubmitOutcome};
use crate::policy::PlanSubmitter;
use crate::routes::endpoint::Endpoint;
use crate::state::AppState;

pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// Validates, stores durably, and only then answers 202. A repeated `Idempotency-Key` with the
/// same plan returns the first plan's id and stores nothing; with another plan it is refused.
#[utoipa::path(
    post,
    path = "/api/dispatch-plans",
    tag = "plans",
    request_body = crate::plans::PlanRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "repeating a plan with the same key returns the stored one")),
    responses(
        (status = 202, description = "stored durably, then acknowledged; `Location` names it", body = Accepted),
        (status = 400, description = "malformed request (a missing `reason`, say)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "not authenticated (the problem's `reason` says why, for callers we know)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "authenticated, but this client may not do this (`policy_denied`, `client_disabled`)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 408, description = "the body stopped arriving", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "body too large", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 415, description = "not application/json", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid plan (`errors` point at the fields) or idempotency key reused", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "storage unavailable; retry after Retry-After", body = crate::error::Problem, content_type = "application/problem+json")
    ),
    security(("mutual_tls" = []), ("api_key" = []))
)]
pub async fn submit_plan(
    PlanSubmitter(principal): PlanSubmitter,
    request: HttpRequest,
    body: web::Json<PlanRequest>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let idempotency_key = idempotency_key(&request)?;
    let plan = Plan::parse(body.into_inner(), state.plan_limits).map_err(ApiError::InvalidPlan)?;
    let outcome = state
        .plans
        .submit(NewPlan::new(
            principal.client.name.clone(),
            principal.method,
            plan,
            idempotency_key,
        ))
        .await?;
    let (id, replayed) = match outcome {
        SubmitOutcome::Created(id) => (id, false),
        SubmitOutcome::Replayed(id) => (id, true),
        SubmitOutcome::KeyReused => return Err(ApiError::IdempotencyKeyReused),
    };
    let location = format!("/api/dispatch-plans/{id}");
    let body = Accepted {
        id,
        location: &location,
        replayed,
        status: "accepted",
    };
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, location.as_str()))
        .json(body))
}

/// The answer to a stored plan, serialized straight from this (no `serde_json::Value` map
/// built and dropped for every plan); fields in the order the map's keys had.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Accepted<'a> {
    #[schema(value_type = String)]
    id: uuid::Uuid,
    /// The plan's own path.
    location: &'a str,
    /// Whether an earlier request with the same `Idempotency-Key` stored it.
    replayed: bool,
    /// `accepted`.
    status: &'static str,
}

fn idempotency_key(request: &HttpRequest) -> Result<Option<String>, ApiError> {
    let mut values = request.headers().get_all(IDEMPOTENCY_KEY_HEADER);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::BadRequest(
            "send one Idempotency-Key header, not several".into(),
        ));
    }
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .ok_or_else(|| {
            ApiError::BadRequest("Idempotency-Key must be 1 to 255 visible ASCII characters".into())
        })?;
    Ok(Some(key.to_owned()))
}

/// A plan, for the client that submitted it. Another client gets the same 404 as for a plan
/// that does not exist, so ids reveal nothing.
#[utoipa::path(
    get,
    path = "/api/dispatch-plans/{id}",
    tag = "plans",
    params(("id" = String, Path, description = "the plan's id")),
    responses(
        (status = 200, description = "the stored plan", body = crate::plans::StoredPlan),
        (status = 401, description = "not authenticated (the problem's `reason` says why, for callers we know)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "authenticated, but this client may not do this (`policy_denied`, `client_disabled`)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such plan", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "storage unavailable; retry after Retry-After", body = crate::error::Problem, content_type = "application/problem+json")
    ),
    security(("mutual_tls" = []), ("api_key" = []))
)]
pub async fn get_plan(
    PlanSubmitter(principal): PlanSubmitter,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = uuid::Uuid::parse_str(&id).map_err(|_| ApiError::NotFound)?;
    let plan = state
        .plans
        .get(id, &principal.client.name)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(plan))
}

/// This module's routes (see `routes::endpoint`).
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::of::<__path_submit_plan, _, _>(submit_plan),
        Endpoint::of::<__path_get_plan, _, _>(get_plan),
    ]
}
