//! What the service remembers of each request, once it has been answered: the migration
//! evidence (which method each client really used), refusals and alerts for the audit log,
//! request and refusal metrics, and one structured log line. Called by the request observer
//! (`routes::middleware::observe_request`); writes go through the buffered [`Recorder`].
//!
//! What a request can make the service keep is bounded: refusals of callers we cannot name are
//! counted per hour rather than written one by one ([`is_counted`]); request text (the path)
//! is clipped to [`MAX_TEXT`] bytes in audit rows and logs; refusal log lines are rate-limited,
//! each line that follows a quiet spell saying how many were suppressed.

use std::net::IpAddr;

use serde_json::json;
use time::OffsetDateTime;

use crate::auth::{Principal, ReasonCode, Refusal};
use crate::identity::VerifiedCertificate;
use crate::registry::{ApiKeyHash, Client};
use crate::storage::recorder::{
    AuditEvent, AuditKind, CertificateSeen, Recorder, RefusalSeen, UsageEvent,
};
use crate::telemetry::{LogBudget, LogBudgets, Metrics, this_second};
pub use crate::telemetry::{MAX_TEXT, clip};

/// Refusal log lines per second, at most; the rest are counted and reported by the next line.
pub const REFUSAL_LINES_PER_SECOND: u64 = 20;

/// The parts of a request and its answer that are logged beside the caller.
pub struct Exchange<'a> {
    pub http_method: &'a str,
    pub path: &'a str,
    pub peer: Option<IpAddr>,
    pub status: u16,
    pub elapsed_ms: f64,
    /// The cause of a server-side failure (5xx), for the log only.
    pub failure: Option<String>,
}

/// Refusals of callers we cannot name: added up per hour, reason and source, not a row each,
/// so that anonymous traffic cannot grow the database. Refusals of known clients (a retired
/// key, a credential mismatch, a disabled client, ...) stay individual rows: they are alerts.
pub fn is_counted(reason: ReasonCode) -> bool {
    matches!(
        reason,
        ReasonCode::NoCredentials
            | ReasonCode::KeyInvalid
            | ReasonCode::CertUnmapped
            | ReasonCode::IssuerNotAllowed
    )
}

pub use crate::identity::source_network as network;

static REFUSAL_LINES: LogBudget = LogBudget::new(REFUSAL_LINES_PER_SECOND);

/// Alert lines per second and client: a holder of a retired key can send thousands a second,
/// and each is counted in the metrics and the audit log anyway.
pub const ALERT_LINES_PER_SECOND: u64 = 5;

static ALERT_LINES: std::sync::LazyLock<LogBudgets> =
    std::sync::LazyLock::new(|| LogBudgets::new(ALERT_LINES_PER_SECOND));

/// Lines of server-side failures (5xx) per second: a failing database fails every request.
static FAILURE_LINES: LogBudget = LogBudget::new(REFUSAL_LINES_PER_SECOND);

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
        .map(|p| p.client.name.as_str())
        .or_else(|| refusal.and_then(|r| r.client.as_deref()));
    let method = principal
        .map(|p| p.method)
        .or_else(|| refusal.and_then(|r| r.method));
    let outcome = outcome(refusal.is_some(), exchange.status);
    let method_label = method.map(|m| m.as_str()).unwrap_or("none");
    metrics.request(client.unwrap_or("-"), method_label, outcome);

    if let Some(principal) = principal {
        record_evidence(recorder, metrics, principal, exchange.peer);
    }
    let path = clip(exchange.path);
    if let Some(refusal) = refusal {
        remember_refusal(recorder, metrics, refusal, exchange, &path);
    }
    log_line(refusal, client, method_label, outcome, exchange, &path);
}

/// A refusal counted in metrics, and kept: added up (callers without a name), or as an audit
/// row (known clients), with the certificate it showed for each client it could have been.
fn remember_refusal(
    recorder: &Recorder,
    metrics: &Metrics,
    refusal: &Refusal,
    exchange: &Exchange<'_>,
    path: &str,
) {
    let peer = || exchange.peer.map(|ip| ip.to_string());
    metrics.refusal(refusal.reason.as_str());
    let mut detail = refusal.detail.clone();
    detail["path"] = json!(path);
    detail["peer"] = json!(peer());
    if is_counted(refusal.reason) {
        recorder.refusal(RefusalSeen {
            reason: refusal.reason.as_str(),
            source: refusal
                .client
                .clone()
                .unwrap_or_else(|| network(exchange.peer)),
            at: OffsetDateTime::now_utc().unix_timestamp(),
            detail,
        });
    } else {
        let mut event = AuditEvent::new(AuditKind::AuthRefused, refusal.reason.as_str());
        event.client = refusal.client.clone();
        event.method = refusal.method;
        event.detail = detail;
        recorder.audit(event);
    }
    if let Some(refused) = &refusal.evidence {
        let seen = certificate_seen(&refused.certificate);
        let at = OffsetDateTime::now_utc().unix_timestamp();
        let network = network(exchange.peer);
        for client in &refused.clients {
            recorder.refused_certificate(client, &seen, &network, at);
        }
    }
}

/// The request's log line: an alert for a retired or ended key, a warning for a refusal, an
/// error for a failure, else one line per request; refusals and failures within a budget per
/// second (what they left out is counted in the next one's `suppressed`).
fn log_line(
    refusal: Option<&Refusal>,
    client: Option<&str>,
    method_label: &str,
    outcome: &str,
    exchange: &Exchange<'_>,
    path: &str,
) {
    let reason = refusal.map(|r| r.reason.as_str());
    // Only refusals name the peer: no string for it on every answered request.
    let peer = || exchange.peer.map(|ip| ip.to_string());
    let Exchange {
        http_method,
        status,
        elapsed_ms,
        failure,
        ..
    } = exchange;
    if let Some(alert) = refusal.and_then(|r| match r.reason {
        ReasonCode::KeyRetired => Some("retired_key_used"),
        ReasonCode::KeyExpired => Some("expired_key_used"),
        _ => None,
    }) {
        // A retired key, or one that ended (its overlap, its lifetime, or ended by an operator
        // as leaked), in use may be a leaked key.
        if let Some(suppressed) = ALERT_LINES.take(client.unwrap_or("-"), this_second()) {
            tracing::warn!(
                alert,
                reason,
                client,
                http.method = http_method,
                path,
                peer = peer(),
                status,
                suppressed,
                "ALERT: a retired or ended API key was used"
            );
        }
    } else if refusal.is_some() {
        if let Some(suppressed) = REFUSAL_LINES.take(this_second()) {
            tracing::warn!(
                client,
                auth = method_label,
                outcome,
                reason,
                http.method = http_method,
                path,
                peer = peer(),
                status,
                elapsed_ms,
                suppressed,
                "request refused"
            );
        }
    } else if let Some(failure) = failure {
        if let Some(suppressed) = FAILURE_LINES.take(this_second()) {
            tracing::error!(
                client,
                auth = method_label,
                outcome,
                error = failure,
                http.method = http_method,
                path,
                status,
                elapsed_ms,
                suppressed,
                "request failed"
            );
        }
    } else if *status < 400 {
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
    } else if let Some(suppressed) = REFUSAL_LINES.take(this_second()) {
        // 4xx that are not refusals (404, 405, 413, ...): anyone can cause them, so they share
        // the refusals' budget.
        tracing::info!(
            client,
            auth = method_label,
            outcome,
            http.method = http_method,
            path,
            status,
            elapsed_ms,
            suppressed,
            "request"
        );
    }
}

/// Whether a request authenticated by `key` came in the last tenth of that key's overlap: the
/// key a rotation replaced, still in use close to its end, so that an instance nobody has
/// moved to the new key is about to fail.
pub fn late_in_overlap(client: &Client, key: &ApiKeyHash, now: i64) -> bool {
    let Some(used) = client.key(key) else {
        return false;
    };
    let (Some(replaced), Some(ends)) = (used.replaced_at, used.expires_at) else {
        return false;
    };
    let overlap = ends - replaced;
    overlap > 0 && now < ends && now >= ends - overlap / 10
}

/// Evidence for the migration report: which method this client really used, with the
/// certificate it showed; and an alert if an `mtls` client still sends its retired key, or a
/// client still sends the key a rotation replaced late in its overlap.
fn record_evidence(
    recorder: &Recorder,
    metrics: &Metrics,
    principal: &Principal,
    peer: Option<IpAddr>,
) {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    if let Some(key) = &principal.key
        && late_in_overlap(&principal.client, key, now)
    {
        let client = principal.client.name.as_str();
        metrics.old_key_late_use();
        if let Some(suppressed) = ALERT_LINES.take(client, this_second()) {
            tracing::warn!(
                client,
                key_id = key.id(),
                suppressed,
                "a client still uses the API key its last rotation replaced, in the last tenth \
                 of the overlap: an instance has not been given the new key"
            );
        }
        let mut event = AuditEvent::new(AuditKind::Alert, "old_key_used_late_in_overlap");
        event.client = Some(client.to_owned());
        event.method = Some(principal.method);
        event.detail = json!({ "key_id": key.id() });
        recorder.audit(event);
    }
    recorder.usage(UsageEvent {
        client: principal.client.name.to_string(),
        method: principal.method,
        at: OffsetDateTime::now_utc().unix_timestamp(),
        certificate: principal.certificate.as_deref().map(certificate_seen),
        key_sha256: principal.key.map(|key| key.to_hex()),
        network: network(peer),
    });
    if principal.retired_key_presented {
        let client = principal.client.name.as_str();
        if let Some(suppressed) = ALERT_LINES.take(client, this_second()) {
            tracing::warn!(
                client,
                suppressed,
                "an mtls client sent its retired API key beside its certificate"
            );
        }
        let mut event = AuditEvent::new(AuditKind::Alert, "retired_key_sent_with_certificate");
        event.client = Some(principal.client.name.to_string());
        event.method = Some(principal.method);
        recorder.audit(event);
    }
}

/// A verified certificate as the recorder keeps it.
fn certificate_seen(certificate: &VerifiedCertificate) -> CertificateSeen {
    CertificateSeen {
        fingerprint: certificate.leaf.fingerprint,
        not_after: certificate.not_after.unix_timestamp(),
        issuer_spki: certificate.issuer_spki,
        chain: certificate.presented.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_of_callers_we_cannot_name_are_counted_and_those_of_known_clients_are_rows() {
        use ReasonCode::*;
        let table = [
            (NoCredentials, true),
            (KeyInvalid, true),
            (CertUnmapped, true),
            (IssuerNotAllowed, true),
            (KeyRetired, false),
            (KeyExpired, false),
            (MethodNotAllowed, false),
            (CertAmbiguous, false),
            (CertExpired, false),
            (CertUnreadable, false),
            (CertRevoked, false),
            (CredentialMismatch, false),
            (ClientDisabled, false),
            (PolicyDenied, false),
        ];
        for (reason, counted) in table {
            assert_eq!(is_counted(reason), counted, "{reason:?}");
        }
    }

    #[test]
    fn request_text_is_clipped_to_256_bytes_on_a_character_boundary() {
        assert_eq!(clip("/api/whoami"), "/api/whoami");
        let exact = "a".repeat(MAX_TEXT);
        assert_eq!(clip(&exact), exact.as_str());
        let long = "b".repeat(MAX_TEXT + 1);
        let clipped = clip(&long);
        assert_eq!(clipped.len(), MAX_TEXT);
        assert!(clipped.ends_with('…'));
        // Multi-byte characters are never split.
        let wide = "é".repeat(MAX_TEXT);
        let clipped = clip(&wide);
        assert!(clipped.len() <= MAX_TEXT && clipped.len() > MAX_TEXT - 4);
        assert!(clipped.ends_with("é…"));
    }

    #[test]
    fn an_anonymous_caller_counts_by_its_network() {
        let v4: IpAddr = "203.0.113.77".parse().unwrap();
        assert_eq!(network(Some(v4)), "203.0.113.0/24");
        let v6: IpAddr = "2001:db8:aa:bb:1:2:3:4".parse().unwrap();
        assert_eq!(network(Some(v6)), "2001:db8:aa:bb::/64");
        assert_eq!(network(None), "unknown");
        // An IPv4 caller on a dual-stack listener: its own /24.
        let mapped: IpAddr = "::ffff:203.0.113.9".parse().unwrap();
        assert_eq!(network(Some(mapped)), "203.0.113.0/24");
    }

    #[test]
    fn the_log_budget_allows_so_many_lines_a_second_and_reports_what_it_suppressed() {
        let budget = LogBudget::new(2);
        assert_eq!(budget.take(100), Some(0));
        assert_eq!(budget.take(100), Some(0));
        assert_eq!(budget.take(100), None);
        assert_eq!(budget.take(100), None);
        // A new second: the first line says two were suppressed.
        assert_eq!(budget.take(101), Some(2));
        assert_eq!(budget.take(101), Some(0));
        assert_eq!(budget.take(101), None);
        assert_eq!(budget.take(102), Some(1));
    }

    fn client_with(keys: Vec<crate::registry::ApiKey>) -> Client {
        Client {
            name: crate::registry::ClientName::parse("w").unwrap(),
            mode: crate::registry::MigrationMode::Dual,
            scopes: Default::default(),
            disabled: false,
            bindings: vec![],
            api_keys: keys,
        }
    }

    fn hash(n: u8) -> ApiKeyHash {
        ApiKeyHash::parse_hex(&format!("{n:064x}")).unwrap()
    }

    #[test]
    fn the_replaced_key_is_late_in_the_last_tenth_of_its_overlap_only() {
        use crate::registry::ApiKey;
        // Rotated at 1000 with an overlap of 1000 s: the old key is valid until 2000.
        let old = ApiKey {
            hash: hash(1),
            created_at: 0,
            expires_at: Some(2000),
            replaced_at: Some(1000),
        };
        let client = client_with(vec![ApiKey::new(hash(2), 1000), old]);
        for (now, late) in [
            (1000, false),
            (1899, false),
            (1900, true),
            (1999, true),
            // Past its end it is refused (key_expired), not late.
            (2000, false),
        ] {
            assert_eq!(late_in_overlap(&client, &hash(1), now), late, "at {now}");
        }
        // The current key is never late, even with a lifetime of its own.
        let expiring = client_with(vec![ApiKey {
            hash: hash(2),
            created_at: 1000,
            expires_at: Some(2000),
            replaced_at: None,
        }]);
        assert!(!late_in_overlap(&expiring, &hash(2), 1950));
        assert!(!late_in_overlap(&client, &hash(2), 1950));
        // A key the client does not hold.
        assert!(!late_in_overlap(&client, &hash(3), 1950));
    }
}
