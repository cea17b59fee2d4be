//! Certificate lifecycle without restarts: rotation, CA rollover, CRLs, broken files,
//! resumption after a trust change, expiry gauges, readiness, PKCS#12.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration as StdDuration;

use e2e::devpki::{CertificateAuthority, LeafSpec};
use e2e::{
    PreparedApp, Request, TestApp, client_config, connect, connect_with, replace_file, spawn_app,
};
use time::Duration;

const RELOADED: &str = "dispatch_tls_reloads_total{outcome=\"ok\"}";
const REJECTED: &str = "dispatch_tls_reloads_total{outcome=\"rejected\"}";

/// Writes a new server certificate and key over the served ones (key first, as a rotation tool
/// might: the pair is inconsistent for a moment, which must not take the old one out of service).
fn rotate_server_certificate(app: &TestApp, ca: &CertificateAuthority) -> String {
    let issued = ca.issue(&LeafSpec::server(Duration::days(1))).unwrap();
    replace_file(&app.pki.server_key, issued.key_pem.as_bytes());
    replace_file(&app.pki.server_cert, issued.cert_pem.as_bytes());
    e2e::devpki::sha256_hex(&issued.der)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_certificate_replaced_under_load_fails_no_request_and_new_handshakes_present_it() {
    let app = Arc::new(spawn_app().await);
    let old = app.connect(None).await.unwrap().server_fingerprint.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = Vec::new();
    for _ in 0..2 {
        let (app, stop, sent, failed) = (app.clone(), stop.clone(), sent.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            // A new connection (and full handshake) per request, bounded in count and time.
            for _ in 0..2000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let request = Request::get("/api/whoami").api_key(app.key("route-worker"));
                let ok = matches!(app.request(None, request).await, Ok(r) if r.status == 200);
                sent.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(StdDuration::from_millis(500)).await;
    let new = rotate_server_certificate(&app, &app.pki.ca);
    app.wait_for_metric(RELOADED, 1.0).await;
    tokio::time::sleep(StdDuration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    assert!(sent.load(Ordering::Relaxed) > 20, "the load ran");
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no request failed during the rotation"
    );
    let presented = app.connect(None).await.unwrap().server_fingerprint.unwrap();
    assert_ne!(presented, old);
    assert_eq!(presented, new);
}

#[tokio::test]
async fn ca_rollover_without_a_restart() {
    // The next CA has a name of its own (as `devpki next-ca` makes it) and a new key; the
    // client is bound to both CAs for the overlap.
    let prepared = PreparedApp::new();
    let next_ca = CertificateAuthority::new(
        "Dispatch Dev Internal CA 2",
        "Dispatch Dev",
        Duration::days(2),
    )
    .unwrap();
    let mut clients = std::fs::read_to_string(prepared.clients_file()).unwrap();
    clients.push_str(
        "\n[[clients]]\nname = \"rolling\"\nmode = \"mtls\"\nscopes = [\"plans:submit\"]\n\
         [[clients.bindings]]\nissuer = \"CN=Dispatch Dev Internal CA, O=Dispatch Dev\"\nsubject_cn = \"rolling\"\n\
         [[clients.bindings]]\nissuer = \"CN=Dispatch Dev Internal CA 2, O=Dispatch Dev\"\nsubject_cn = \"rolling\"\n",
    );
    std::fs::write(prepared.clients_file(), clients).unwrap();
    let bundle =
        |cas: &[&CertificateAuthority]| cas.iter().map(|c| c.cert_pem.clone()).collect::<String>();
    // A binding may name the new CA once the bundle holds it (with several CAs in the bundle,
    // a name that is not one of them could be an intermediate of any: refused).
    std::fs::write(
        &prepared.pki.client_ca_bundle,
        bundle(&[&prepared.pki.ca, &next_ca]),
    )
    .unwrap();
    let app = prepared.start().await;
    let spec = LeafSpec::new("rolling", e2e::devpki::Usage::Client, Duration::hours(1));
    let old_cert = app.pki.issue(&app.pki.ca, &spec);
    let new_cert = app.pki.issue(&next_ca, &spec);
    for cert in [&old_cert, &new_cert] {
        let response = app
            .request(Some(cert), Request::get("/api/whoami"))
            .await
            .unwrap();
        assert_eq!(
            response.json()["client"],
            "rolling",
            "both CAs trusted during the overlap"
        );
    }
    // Clients have moved to the new CA: retire the old one.
    replace_file(&app.pki.client_ca_bundle, bundle(&[&next_ca]).as_bytes());
    app.wait_for_metric(RELOADED, 1.0).await;
    assert_eq!(
        app.request(Some(&new_cert), Request::get("/api/whoami"))
            .await
            .unwrap()
            .status,
        200
    );
    let refused = app
        .request(Some(&old_cert), Request::get("/api/whoami"))
        .await;
    let error = refused
        .expect_err("the retired CA's certificates are refused")
        .to_string();
    assert!(
        error.contains("UnknownCA") || error.contains("DecryptError"),
        "{error}"
    );
}

#[tokio::test]
async fn a_crl_that_revokes_route_workers_certificate_refuses_its_new_connections_only() {
    let mut prepared = PreparedApp::new();
    let crl_file = prepared.with_empty_crl();
    let spec = LeafSpec::workload("route-worker", Duration::hours(1));
    let issued = prepared.pki.ca.issue(&spec).unwrap();
    let app = prepared.start().await;
    let worker = e2e::identity_from_pem(&issued.cert_pem, &issued.key_pem);
    assert_eq!(
        app.request(Some(&worker), Request::get("/api/whoami"))
            .await
            .unwrap()
            .status,
        200
    );

    replace_file(
        &crl_file,
        app.pki
            .ca
            .revocation_list(std::slice::from_ref(&issued.serial), Duration::days(1))
            .unwrap()
            .as_bytes(),
    );
    app.wait_for_metric(RELOADED, 1.0).await;
    let refused = app
        .request(Some(&worker), Request::get("/api/whoami"))
        .await;
    assert!(
        refused
            .unwrap_err()
            .to_string()
            .contains("CertificateRevoked")
    );
    assert_eq!(
        app.metric("dispatch_tls_handshake_failures_total{kind=\"revoked\"}")
            .await,
        1.0
    );
    // Another client's certificate from the same CA keeps working.
    assert_eq!(
        app.request(Some(&app.operator), Request::get("/admin/clients"))
            .await
            .unwrap()
            .status,
        200
    );
}

#[tokio::test]
async fn a_broken_replacement_keeps_the_old_certificate_serving_and_a_later_good_one_is_used() {
    let app = spawn_app().await;
    let old = app.connect(None).await.unwrap().server_fingerprint.unwrap();
    replace_file(
        &app.pki.server_cert,
        b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n",
    );
    app.wait_for_metric(REJECTED, 1.0).await;
    let still = app.connect(None).await.unwrap();
    assert_eq!(still.server_fingerprint.as_deref(), Some(old.as_str()));
    // A certificate that does not match the key is refused too.
    let mismatched = app
        .pki
        .ca
        .issue(&LeafSpec::server(Duration::days(1)))
        .unwrap();
    replace_file(&app.pki.server_cert, mismatched.cert_pem.as_bytes());
    app.wait_for_metric(REJECTED, 2.0).await;
    assert_eq!(
        app.connect(None)
            .await
            .unwrap()
            .server_fingerprint
            .as_deref(),
        Some(old.as_str())
    );
    // Then a good pair is picked up.
    let new = rotate_server_certificate(&app, &app.pki.ca);
    app.wait_for_metric(RELOADED, 1.0).await;
    assert_eq!(
        app.connect(None).await.unwrap().server_fingerprint,
        Some(new)
    );
}

#[tokio::test]
async fn an_expired_replacement_keeps_the_old_certificate() {
    let app = spawn_app().await;
    let old = app.connect(None).await.unwrap().server_fingerprint.unwrap();
    let mut spec = LeafSpec::server(Duration::days(1));
    spec.not_before = time::OffsetDateTime::now_utc() - Duration::days(3);
    spec.not_after = time::OffsetDateTime::now_utc() - Duration::days(1);
    let expired = app.pki.ca.issue(&spec).unwrap();
    replace_file(&app.pki.server_key, expired.key_pem.as_bytes());
    replace_file(&app.pki.server_cert, expired.cert_pem.as_bytes());
    app.wait_for_metric(REJECTED, 1.0).await;
    tokio::time::sleep(StdDuration::from_millis(1500)).await;
    assert_eq!(
        app.connect(None).await.unwrap().server_fingerprint,
        Some(old)
    );
}

#[tokio::test]
async fn resumption_after_a_trust_change_does_not_let_a_now_untrusted_certificate_through() {
    let app = spawn_app().await;
    let partner = app.pki.issue(
        &app.pki.second_ca,
        &LeafSpec::new("partner", e2e::devpki::Usage::Client, Duration::hours(1)),
    );
    let config = Arc::new(client_config(&app.pki.ca_file, Some(&partner)));
    let mut first = connect_with(app.https_port, config.clone(), "localhost")
        .await
        .unwrap();
    first.send(Request::get("/api/whoami")).await.unwrap();
    let mut second = connect_with(app.https_port, config.clone(), "localhost")
        .await
        .unwrap();
    second.send(Request::get("/api/whoami")).await.unwrap();
    assert!(
        second.resumed,
        "control: without a trust change the session resumes"
    );
    assert_eq!(
        app.metric("dispatch_tls_handshakes_total{kind=\"resumed\"}")
            .await,
        1.0,
        "the server counts the resumed handshake"
    );

    // The partner CA leaves the bundle.
    replace_file(&app.pki.client_ca_bundle, app.pki.ca.cert_pem.as_bytes());
    app.wait_for_metric(RELOADED, 1.0).await;
    let third = match connect_with(app.https_port, config, "localhost").await {
        Ok(mut connection) => {
            let resumed = connection.resumed;
            connection
                .send(Request::get("/api/whoami"))
                .await
                .map(|r| (resumed, r.status))
        }
        Err(e) => Err(e),
    };
    let error = third.expect_err("the old session must not resume into the new trust");
    assert!(error.to_string().contains("UnknownCA"), "{error}");
}

#[tokio::test]
async fn expiry_gauges_show_the_lifetimes_of_known_certificates() {
    let app = spawn_app().await;
    // Server: 1 day; CAs: 2 days; route-worker's certificate: 1 hour.
    let worker = app.pki.workload("route-worker");
    assert_eq!(
        app.request(Some(&worker), Request::get("/api/whoami"))
            .await
            .unwrap()
            .status,
        200
    );
    app.state.recorder.flush().await;
    let close = |value: f64, expected: i64| (value - expected as f64).abs() < 120.0;
    let server = app
        .metric("dispatch_certificate_expiry_seconds{kind=\"server\",name=\"CN=dispatch-api\"}")
        .await;
    assert!(close(server, 86_400), "server: {server}");
    let ca = app
        .metric("dispatch_certificate_expiry_seconds{kind=\"client_ca\",name=\"CN=Dispatch Dev Internal CA, O=Dispatch Dev\"}")
        .await;
    assert!(close(ca, 2 * 86_400), "ca: {ca}");
    let partner = app.metric("dispatch_certificate_expiry_seconds{kind=\"client_ca\",name=\"CN=Partner CA, O=Partner\"}").await;
    assert!(close(partner, 2 * 86_400), "partner ca: {partner}");
    let client = app
        .metric("dispatch_certificate_expiry_seconds{kind=\"client\",name=\"route-worker\"}")
        .await;
    assert!(close(client, 3_600), "route-worker: {client}");
    // The migration report shows the client's certificate expiry too.
    let row = app.migration_row("route-worker").await;
    assert!(
        row["usage"]["certificate"]["last_certificate_not_after"].is_string(),
        "{row}"
    );
    // And the key of the CA that signed it, to paste into a binding's issuer_spki_sha256.
    assert_eq!(
        row["usage"]["certificate"]["last_certificate_issuer_spki_sha256"],
        e2e::devpki::spki_sha256(&app.pki.ca.cert_der()).unwrap(),
        "{row}"
    );
}

#[tokio::test]
async fn readyz_fails_once_the_server_certificate_has_expired() {
    let mut prepared = PreparedApp::new();
    let mut spec = LeafSpec::server(Duration::days(1));
    spec.not_after = time::OffsetDateTime::now_utc() + Duration::seconds(3);
    let short = prepared.pki.issue(&prepared.pki.ca, &spec);
    prepared.settings.tls.cert_file = Some(short.cert_file);
    prepared.settings.tls.key_file = Some(short.key_file);
    let app = prepared.start().await;
    assert_eq!(app.ops_get("/readyz").await.status, 200);
    tokio::time::sleep(StdDuration::from_secs(4)).await;
    let ready = app.ops_get("/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert_eq!(ready.json()["server_certificate"], "expired");
}

fn pkcs12(app_dir: &std::path::Path, pki: &e2e::TestPki, password: &str) -> std::path::PathBuf {
    let out = app_dir.join("server.pfx");
    e2e::write_pkcs12(&pki.server_cert, &pki.server_key, &out, password);
    out
}

#[tokio::test]
async fn a_pfx_server_certificate_with_a_password_file_starts_the_server() {
    let mut prepared = PreparedApp::new();
    let pfx = pkcs12(prepared.dir(), &prepared.pki, "s3cret pass");
    let password_file = prepared.dir().join("pfx-password");
    std::fs::write(&password_file, "s3cret pass\n").unwrap();
    let expected = e2e::devpki::sha256_hex(
        &std::fs::read(&prepared.pki.server_cert)
            .map(|pem| pem_der(&pem))
            .unwrap(),
    );
    prepared.settings.tls.cert_file = None;
    prepared.settings.tls.key_file = None;
    prepared.settings.tls.pkcs12_file = Some(pfx);
    prepared.settings.tls.pkcs12_password_file = Some(password_file);
    let app = prepared.start().await;
    let connection = app.connect(None).await.unwrap();
    assert_eq!(connection.server_fingerprint, Some(expected));
}

#[tokio::test]
async fn a_pfx_with_the_wrong_password_fails_start_up_naming_the_files() {
    let mut prepared = PreparedApp::new();
    let pfx = pkcs12(prepared.dir(), &prepared.pki, "right");
    let password_file = prepared.dir().join("pfx-password");
    std::fs::write(&password_file, "wrong").unwrap();
    prepared.settings.tls.cert_file = None;
    prepared.settings.tls.key_file = None;
    prepared.settings.tls.pkcs12_file = Some(pfx);
    prepared.settings.tls.pkcs12_password_file = Some(password_file);
    let error = dispatch_api::startup::Application::build(prepared.settings.clone())
        .await
        .err()
        .expect("start-up fails");
    let message = error.to_string();
    assert!(
        message.contains("server.pfx") && message.contains("pfx-password"),
        "{message}"
    );
    assert!(
        !message.contains("wrong"),
        "the password itself is never shown: {message}"
    );
}

fn pem_der(pem: &[u8]) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_slice(pem)
        .unwrap()
        .to_vec()
}

/// The real binary, as an operator runs it: SIGHUP reloads at once (polling is off here), and a
/// broken file is logged with its name while the old certificate keeps serving.
#[tokio::test]
async fn sighup_reloads_at_once_and_a_broken_file_is_logged_by_name() {
    use e2e::process::ServerProcess;
    let dir = tempfile::tempdir().unwrap();
    let (pki, config) = e2e::process::dev_pki_server(dir.path());
    let server = ServerProcess::start(
        &config,
        &[("DISPATCH_TLS__RELOAD_INTERVAL_SECS", "0".into())],
    );
    let ca_file = pki.join("ca.pem");
    let fingerprint = async || {
        connect(server.https_port, &ca_file, None, "localhost")
            .await
            .unwrap()
            .server_fingerprint
    };
    let old = fingerprint().await;

    // A broken certificate file, then SIGHUP: logged by name, the old certificate stays.
    let cert_file = pki.join("dispatch-api.pem");
    replace_file(
        &cert_file,
        b"-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n",
    );
    server.signal("HUP");
    server.wait_for_log("cannot be used");
    let logs = server.logs.text();
    let line = logs.lines().find(|l| l.contains("cannot be used")).unwrap();
    assert!(
        line.contains("dispatch-api.pem") && line.contains("ERROR"),
        "{line}"
    );
    assert_eq!(fingerprint().await, old);

    // A good certificate, then SIGHUP: served at once.
    let ca = CertificateAuthority::from_pem(
        &std::fs::read_to_string(&ca_file).unwrap(),
        &std::fs::read_to_string(pki.join("ca.key")).unwrap(),
    )
    .unwrap();
    let issued = ca.issue(&LeafSpec::server(Duration::days(1))).unwrap();
    replace_file(&pki.join("dispatch-api.key"), issued.key_pem.as_bytes());
    replace_file(&cert_file, issued.cert_pem.as_bytes());
    server.signal("HUP");
    server.wait_for_log("TLS material reloaded");
    assert_eq!(
        fingerprint().await,
        Some(e2e::devpki::sha256_hex(&issued.der))
    );
}

#[tokio::test]
async fn with_session_resumption_off_every_connection_is_a_full_handshake() {
    let app = e2e::spawn_app_with(|s| s.tls.session_resumption = false).await;
    let config = Arc::new(client_config(&app.pki.ca_file, None));
    for _ in 0..3 {
        let mut connection = connect_with(app.https_port, config.clone(), "localhost")
            .await
            .unwrap();
        let response = connection
            .send(Request::get("/api/whoami").api_key(app.key("route-worker")))
            .await
            .unwrap();
        assert_eq!(response.status, 200);
        assert!(!connection.resumed);
    }
}
