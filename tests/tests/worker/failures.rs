//! TLS and authentication failures, each with the sentence and exit code an operator acts on.

use e2e::devpki::{LeafSpec, Usage};
use e2e::worker::{WorkerConfig, run_worker_async, write_stops};
use e2e::{PreparedApp, spawn_app};
use time::{Duration, OffsetDateTime};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_server_identity_is_refused_with_the_names_the_certificate_carries() {
    let mut spec = LeafSpec::new("dispatch-api", Usage::Server, Duration::hours(1));
    spec.dns_names = vec!["dispatch-api.internal".into()];
    let mut prepared = PreparedApp::new();
    let issued = prepared.pki.issue(&prepared.pki.ca, &spec);
    prepared.settings.tls.cert_file = Some(issued.cert_file);
    prepared.settings.tls.key_file = Some(issued.key_file);
    let app = prepared.start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut worker = app.worker_config(dir.path());
    let worker_cert = app.pki.workload("route-worker");
    worker.cert = Some((worker_cert.cert_file, worker_cert.key_file));
    let run = run_worker_async(&worker.write(dir.path()), &["whoami"]).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        run.stderr
            .contains("the server's certificate is not valid for localhost (it names"),
        "{run:?}"
    );
    assert!(run.stderr.contains("dispatch-api.internal"), "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_certificate_from_another_ca_is_refused() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let other_ca = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca, &app.pki.untrusted_ca.cert_pem).unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, app.key("route-worker")).unwrap();
    let mut worker = app.worker_config(dir.path());
    worker.ca_file = other_ca;
    worker.api_key_file = Some(key);
    let run = run_worker_async(&worker.write(dir.path()), &["whoami"]).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        run.stderr
            .contains("the server's certificate was not issued by the configured CA"),
        "{run:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workers_expired_certificate_is_refused_with_exit_code_3() {
    let app = spawn_app().await;
    let mut spec = LeafSpec::workload("route-worker", Duration::hours(1));
    spec.not_before = OffsetDateTime::now_utc() - Duration::days(2);
    spec.not_after = OffsetDateTime::now_utc() - Duration::days(1);
    let expired = app.pki.issue(&app.pki.ca, &spec);
    let dir = tempfile::tempdir().unwrap();
    let mut worker = app.worker_config(dir.path());
    worker.cert = Some((expired.cert_file, expired.key_file));
    let stops = write_stops(dir.path(), "stops.csv");
    let run = run_worker_async(
        &worker.write(dir.path()),
        &["submit", stops.to_str().unwrap()],
    )
    .await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        run.stderr
            .contains("the server refused our certificate (expired? revoked? wrong CA?)"),
        "{run:?}"
    );
    assert!(
        run.stderr.contains("EXPIRED"),
        "the worker also says its own certificate expired: {run:?}"
    );
    assert_eq!(app.plan_count().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retired_key_is_refused_and_not_retried() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, app.key("retired")).unwrap();
    let mut worker = app.worker_config(dir.path());
    worker.api_key_file = Some(key);
    worker.max_attempts = 5;
    let stops = write_stops(dir.path(), "stops.csv");
    let run = run_worker_async(
        &worker.write(dir.path()),
        &["submit", stops.to_str().unwrap()],
    )
    .await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        run.stderr
            .contains("API key is retired: configure the client certificate"),
        "{run:?}"
    );
    let refusals = app.refusal_reasons().await;
    assert_eq!(refusals, ["key_retired"], "exactly one attempt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unregistered_certificate_gets_the_register_sentence() {
    let app = spawn_app().await;
    let stranger = app.pki.workload("stranger");
    let dir = tempfile::tempdir().unwrap();
    let mut worker = app.worker_config(dir.path());
    worker.cert = Some((stranger.cert_file, stranger.key_file));
    let run = run_worker_async(&worker.write(dir.path()), &["whoami"]).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        run.stderr
            .contains("does not recognise this certificate: register its subject or SPIFFE ID"),
        "{run:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_api_key_file_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut worker = WorkerConfig::new(
        "https://localhost:1".into(),
        &dir.path().join("ca.pem"),
        dir.path(),
    );
    worker.api_key_file = Some(dir.path().join("no-such-key"));
    std::fs::write(
        dir.path().join("ca.pem"),
        e2e::devpki::CertificateAuthority::dev(Duration::days(1))
            .unwrap()
            .cert_pem,
    )
    .unwrap();
    let run = run_worker_async(&worker.write(dir.path()), &["whoami"]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("no-such-key"), "{run:?}");
}

/// An HTTPS server (the test CA's server certificate) that answers every request with
/// `307 Temporary Redirect` to `location`; returns its port.
async fn redirecting_server(app: &e2e::TestApp, location: String) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = e2e::server_tls(
        &app.settings.tls.cert_file.clone().unwrap(),
        &app.settings.tls.key_file.clone().unwrap(),
    );
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let location = location.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && tls.read(&mut byte).await.unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let answer = format!(
                    "HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_never_followed_and_its_location_is_named() {
    let app = spawn_app().await;
    // The redirect points at the real server: following it would succeed (and carry the key).
    let target = format!("https://localhost:{}/api/whoami", app.https_port);
    let port = redirecting_server(&app, target.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, app.key("route-worker")).unwrap();
    let mut worker = app.worker_config(dir.path());
    worker.url = format!("https://localhost:{port}");
    worker.api_key_file = Some(key);
    let run = run_worker_async(&worker.write(dir.path()), &["whoami"]).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        run.stderr.contains(&format!(
            "307 Temporary Redirect to {target}: route-worker follows no redirect"
        )),
        "{run:?}"
    );
    assert_eq!(
        app.metric(
            "dispatch_requests_total{client=\"route-worker\",method=\"api_key\",outcome=\"ok\"}"
        )
        .await,
        0.0,
        "nothing reached the real server"
    );
}
