//! What the service remembers of each request, once it has been answered: the migration
//! evidence (which method each client really used), refusals and alerts for the audit log,
//! request and refusal metrics, and one structured log line. Called by the request observer
//! (`routes::middleware::observe_request`); writes go through the buffered [`Recorder`].

use serde_json::json;
use time::OffsetDateTime;

use crate::auth::{Principal, ReasonCode, Refusal};
use crate::storage::recorder::{AuditEvent, AuditKind, CertificateSeen, Recorder, UsageEvent};
use crate::telemetry::Metrics;

/// The parts of a request and its answer that are logged beside the caller.
pub struct Exchange<'a> {
    pub http_method: &'a str,
    pub path: &'a str,
    pub peer: Option<String>,
    pub status: u16,
    pub elapsed_ms: f64,
    /// The cause of a server-side failure (5xx), for the log only.
    pub failure: Option<String>,
}

/// How a request ended, as a metric label.
fn outcome(refused: bool, status: u16) -> &'static str {
    if refused {
        "refused"
    } else if status >= 500 {
        "error"
    } else if status >= 400 {
        "invalid"
    } else {
        "ok"
    }
}

/// Records one answered request: who (the principal, or what the refusal knows of the caller),
/// how it ended, and for the migration report which method the client used.
pub fn record(
    recorder: &Recorder,
    metrics: &Metrics,
    principal: Option<&Principal>,
    refusal: Option<&Refusal>,
    exchange: &Exchange<'_>,
) {
    let client = principal
        .map(|p| p.client.name.to_string())
        .or_else(|| refusal.and_then(|r| r.client.clone()));
    let method = principal
        .map(|p| p.method)
        .or_else(|| refusal.and_then(|r| r.method));
    let outcome = outcome(refusal.is_some(), exchange.status);
    let reason = refusal.map(|r| r.reason.as_str());
    let method_label = method.map(|m| m.as_str()).unwrap_or("none");
    metrics.request(client.as_deref().unwrap_or("-"), method_label, outcome);

    if let Some(principal) = principal {
        record_evidence(recorder, principal);
    }
    if let Some(refusal) = refusal {
        metrics.refusal(refusal.reason.as_str());
        let mut event = AuditEvent::new(AuditKind::AuthRefused, refusal.reason.as_str());
        event.client = refusal.client.clone();
        event.method = refusal.method;
        let mut detail = refusal.detail.clone();
        detail["path"] = json!(exchange.path);
        detail["peer"] = json!(exchange.peer);
        event.detail = detail;
        recorder.audit(event);
    }
    let Exchange {
        http_method,
        path,
        peer,
        status,
        elapsed_ms,
        failure,
    } = exchange;
    if refusal.is_some_and(|r| r.reason == ReasonCode::KeyRetired) {
        // A retired key in use may be a leaked key.
        tracing::warn!(
            alert = "retired_key_used",
            reason,
            client,
            http.method = http_method,
            path,
            peer,
            status,
            "ALERT: a retired API key was used"
        );
    } else if refusal.is_some() {
        tracing::warn!(
            client,
            auth = method_label,
            outcome,
            reason,
            http.method = http_method,
            path,
            peer,
            status,
            elapsed_ms,
            "request refused"
        );
    } else if let Some(failure) = failure {
        tracing::error!(
            client,
            auth = method_label,
            outcome,
            error = failure,
            http.method = http_method,
            path,
            status,
            elapsed_ms,
            "request failed"
        );
    } else {
        tracing::info!(
            client,
            auth = method_label,
            outcome,
            http.method = http_method,
            path,
            status,
            elapsed_ms,
            "request"
        );
    }
}

/// Evidence for the migration report: which method this client really used, with the
/// certificate it showed; and an alert if an `mtls` client still sends its retired key.
fn record_evidence(recorder: &Recorder, principal: &Principal) {
    recorder.usage(UsageEvent {
        client: principal.client.name.to_string(),
        method: principal.method,
        at: OffsetDateTime::now_utc().unix_timestamp(),
        certificate: principal.certificate.as_ref().map(|c| CertificateSeen {
            fingerprint: c.leaf.fingerprint,
            not_after: c.not_after.unix_timestamp(),
            issuer_spki: c.issuer_spki,
        }),
    });
    if principal.retired_key_presented {
        tracing::warn!(client = %principal.client.name, "an mtls client sent its retired API key beside its certificate");
        let mut event = AuditEvent::new(AuditKind::Alert, "retired_key_sent_with_certificate");
        event.client = Some(principal.client.name.to_string());
        event.method = Some(principal.method);
        recorder.audit(event);
    }
}
