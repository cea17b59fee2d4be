//! What the operator reads: the migration report, the audit log and the refusal counts.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use super::{keys_view, not_ready_for_mtls, usage, usage_view};
use crate::error::ApiError;
use crate::policy::Operator;
use crate::registry::{GuardView, MigrationMode};
use crate::routes::endpoint::Endpoint;
use crate::routes::rfc3339;
use crate::state::AppState;
use crate::storage;
use dispatch_types::{
    AuditLog, GuardEvidence, GuardReport, MigrationReport, MigrationRow, Refusals, Reopened,
};

/// Per client: mode, use of each method over the window, readiness for `mtls`; and whether
/// every client is on `mtls`, so that the listener can require certificates.
#[utoipa::path(
    get,
    path = "/admin/migration",
    tag = "admin",
    responses(
        (status = 200, description = "per client: mode, use per method, readiness and why not; whether the listener can require certificates", body = MigrationReport)
    ),
    security(("mutual_tls" = []))
)]
pub async fn migration_report(
    _: Operator,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let usage = usage(&state).await?;
    let guards: BTreeMap<String, GuardView> = state
        .registry
        .guards()
        .await?
        .into_iter()
        .map(|guard| (guard.client.clone(), guard))
        .collect();
    let snapshot = state.registry.snapshot();
    let mut clients: Vec<_> = snapshot.clients().collect();
    clients.sort_by(|a, b| a.name.cmp(&b.name));
    // Every client counts for switching the listener to `required`, disabled ones too:
    // re-enabling one that is not on mtls would otherwise cut it off without warning.
    let not_on_mtls: Vec<&str> = clients
        .iter()
        .filter(|c| c.mode != MigrationMode::Mtls)
        .map(|c| c.name.as_str())
        .collect();
    let all_mtls = not_on_mtls.is_empty();
    let rows = clients
        .iter()
        .map(|c| {
            let u = usage.get(c.name.as_str());
            let gaps = if c.mode == MigrationMode::Mtls {
                vec![]
            } else {
                not_ready_for_mtls(u, &state)
            };
            MigrationRow {
                name: c.name.to_string(),
                mode: c.mode,
                disabled: c.disabled,
                usage: usage_view(u),
                api_keys: keys_view(c, u),
                guard: guards.get(c.name.as_str()).map(guard_view),
                ready_for_mtls: gaps.is_empty(),
                not_ready_because: gaps,
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(MigrationReport {
        window_secs: state.migration.evidence_window_secs,
        quiet_period_secs: state.migration.quiet_period_secs,
        clients: rows,
        all_clients_mtls: all_mtls,
        not_on_mtls: not_on_mtls.into_iter().map(str::to_owned).collect(),
        listener_client_auth: state.client_auth,
        ready_for_required_client_auth: all_mtls,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    client: Option<String>,
    limit: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/admin/audit",
    tag = "admin",
    params(("client" = Option<String>, Query, description = "one client only"), ("limit" = Option<i64>, Query, description = "1 to 1000, default 100")),
    responses(
        (status = 200, description = "refusals of known clients, alerts and admin changes, newest first", body = AuditLog)
    ),
    security(("mutual_tls" = []))
)]
pub async fn list_audit(
    _: Operator,
    query: web::Query<AuditQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.recorder.flush().await;
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let events = storage::list_audit(&state.pool, query.client.as_deref(), limit).await?;
    Ok(HttpResponse::Ok().json(AuditLog { events }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefusalQuery {
    reason: Option<String>,
    limit: Option<i64>,
}

/// Refusals of callers the service cannot name (no credentials, unknown keys, unbound
/// certificates), counted per hour, reason and source, the most recently seen first; each with
/// what the last one showed (path, issuer, subject).
#[utoipa::path(
    get,
    path = "/admin/refusals",
    tag = "admin",
    params(("reason" = Option<String>, Query, description = "one reason code only"), ("limit" = Option<i64>, Query, description = "1 to 1000, default 100")),
    responses(
        (status = 200, description = "refusals of callers without a name, counted per hour, reason and source", body = Refusals)
    ),
    security(("mutual_tls" = []))
)]
pub async fn list_refusals(
    _: Operator,
    query: web::Query<RefusalQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.recorder.flush().await;
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let refusals =
        storage::list_refusal_counts(&state.pool, query.reason.as_deref(), limit).await?;
    Ok(HttpResponse::Ok().json(Refusals { refusals }))
}

/// A client's latest flip guard, as the report shows it.
fn guard_view(guard: &GuardView) -> GuardReport {
    let evidence = &guard.evidence;
    GuardReport {
        state: guard.state.clone(),
        from: guard.from.clone(),
        to: guard.to.clone(),
        started_at: rfc3339(guard.started_at),
        watch_until: rfc3339(guard.watch_until),
        max_refusals: guard.max_refusals,
        refusals: guard.refusals,
        ended_at: guard.ended_at.and_then(rfc3339),
        because: (guard.refusals > 0).then(|| evidence.because()),
        evidence: GuardEvidence {
            by_reason: evidence.by_reason.clone(),
            networks: evidence.networks.clone(),
            first_seen: evidence.first_seen,
            last_seen: evidence.last_seen,
        },
        retired_method: guard.retired_method,
        known_networks: guard.known_networks.clone(),
        reopened: guard.reopened.as_ref().map(|reopened| Reopened {
            method: reopened.method,
            networks: reopened.networks.clone(),
            until: rfc3339(reopened.until),
        }),
    }
}

/// This module's routes (see `routes::endpoint`).
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::of::<__path_migration_report, _, _>(migration_report),
        Endpoint::of::<__path_list_audit, _, _>(list_audit),
        Endpoint::of::<__path_list_refusals, _, _>(list_refusals),
    ]
}
