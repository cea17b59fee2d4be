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

#[tokio::test]
async fn a_chain_longer_than_max_client_chain_is_refused_before_any_signature_is_checked() {
    let app = spawn_app().await;
    // The dev CA -> four intermediates -> a leaf: five certificates presented, one too many.
    let mut cas = vec![];
    let mut issuer = app
        .pki
        .ca
        .intermediate("Level 1", "Dispatch Dev", Duration::days(1))
        .unwrap();
    for level in 2..=4 {
        let next = issuer
            .intermediate(&format!("Level {level}"), "Dispatch Dev", Duration::days(1))
            .unwrap();
        cas.push(issuer);
        issuer = next;
    }
    cas.push(issuer);
    let mut identity = app.pki.issue(
        cas.last().unwrap(),
        &LeafSpec::workload("deep", Duration::hours(1)),
    );
    for ca in cas.iter().rev() {
        identity.chain.push(ca.cert_der().into());
    }
    assert_eq!(identity.chain.len(), 5);
    refused_handshake(&app, &identity).await;
    assert_handshake_failure_counted(&app, "chain_too_long").await;

    // Four certificates (the leaf of level 3 and its three intermediates) are within the bound:
    // the handshake completes and the request is judged (no client is bound to it).
    let mut within = app
        .pki
        .issue(&cas[2], &LeafSpec::workload("deep", Duration::hours(1)));
    for ca in cas[..3].iter().rev() {
        within.chain.push(ca.cert_der().into());
    }
    assert_eq!(within.chain.len(), 4);
    let response = app
        .request(Some(&within), Request::get("/api/whoami"))
        .await
        .unwrap();
    assert_eq!(response.status, 401, "{}", response.text());
    app.assert_last_refusal("cert_unmapped").await;
}
