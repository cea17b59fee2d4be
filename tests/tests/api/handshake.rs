//! Certificates that must not complete a handshake. In optional mode a MISSING certificate
//! passes; an invalid PRESENTED one aborts the handshake (no fallback to a key).

use e2e::devpki::{LeafSpec, Usage};
use e2e::{Identity, Request, TestApp, spawn_app};
use time::{Duration, OffsetDateTime};

/// Sends a request with `identity` and its key (to prove there is no fallback) and returns the
/// client-side error.
async fn refused_handshake(app: &TestApp, identity: &Identity) -> String {
    let request = Request::get("/api/whoami").api_key(app.key("route-worker"));
    // TLS 1.3: the client finishes first; the server's alert arrives on the first read, so
    // the error may come from either.
    let error = app
        .request(Some(identity), request)
        .await
        .expect_err("the handshake must fail");
    error.to_string()
}

async fn assert_handshake_failure_counted(app: &TestApp, kind: &str) {
    let sample = format!("dispatch_tls_handshake_failures_total{{kind=\"{kind}\"}}");
    assert_eq!(app.metric(&sample).await, 1.0, "{sample}");
}

#[tokio::test]
async fn certificate_from_an_untrusted_ca_fails_the_handshake() {
    let app = spawn_app().await;
    // Same subject names as the dev CA and route-worker: only the signature tells them apart.
    let spec = LeafSpec::workload("route-worker", Duration::hours(1));
    let impostor = app.pki.issue(&app.pki.untrusted_ca, &spec);
    let error = refused_handshake(&app, &impostor).await;
    assert!(error.contains("UnknownCA"), "{error}");
    assert_handshake_failure_counted(&app, "untrusted_issuer").await;
    assert_eq!(app.plan_count().await, 0);
}

#[tokio::test]
async fn expired_client_certificate_fails_the_handshake() {
    let app = spawn_app().await;
    let mut spec = LeafSpec::workload("route-worker", Duration::hours(1));
    spec.not_before = OffsetDateTime::now_utc() - Duration::days(2);
    spec.not_after = OffsetDateTime::now_utc() - Duration::days(1);
    let expired = app.pki.issue(&app.pki.ca, &spec);
    let error = refused_handshake(&app, &expired).await;
    assert!(error.contains("CertificateExpired"), "{error}");
    assert_handshake_failure_counted(&app, "expired").await;
}

#[tokio::test]
async fn not_yet_valid_client_certificate_fails_the_handshake() {
    let app = spawn_app().await;
    let mut spec = LeafSpec::workload("route-worker", Duration::hours(1));
    spec.not_before = OffsetDateTime::now_utc() + Duration::hours(1);
    spec.not_after = OffsetDateTime::now_utc() + Duration::days(1);
    let early = app.pki.issue(&app.pki.ca, &spec);
    let error = refused_handshake(&app, &early).await;
    assert!(error.contains("CertificateExpired"), "{error}");
    assert_handshake_failure_counted(&app, "not_yet_valid").await;
}

#[tokio::test]
async fn certificate_without_the_client_auth_usage_fails_the_handshake() {
    let app = spawn_app().await;
    let mut spec = LeafSpec::workload("route-worker", Duration::hours(1));
    spec.usage = Usage::Server;
    let server_only = app.pki.issue(&app.pki.ca, &spec);
    let error = refused_handshake(&app, &server_only).await;
    assert!(error.contains("UnsupportedCertificate"), "{error}");
    assert_handshake_failure_counted(&app, "wrong_key_usage").await;
}
