//! The listener as a whole: required client certificates, restarts, problem+json everywhere.

use dispatch_api::configuration::ClientAuth;
use e2e::{Request, plan, spawn_app, spawn_app_with, submit};

#[tokio::test]
async fn required_client_auth_refuses_a_handshake_without_a_certificate() {
    let app = spawn_app_with(|s| s.tls.client_auth = ClientAuth::Required).await;
    let outcome = app
        .request(
            None,
            submit(&plan("r-1", 1)).api_key(app.key("route-worker")),
        )
        .await;
    let error = outcome.expect_err("no certificate, no handshake");
    assert!(error.to_string().contains("CertificateRequired"), "{error}");
    // The certificate path still works.
    let worker = app.pki.workload("route-worker");
    assert_eq!(
        app.request(Some(&worker), submit(&plan("r-1", 1)))
            .await
            .unwrap()
            .status,
        202
    );
    assert_eq!(app.plan_count().await, 1);
}

#[tokio::test]
async fn a_flip_survives_a_restart() {
    let app = spawn_app().await;
    let flip = serde_json::json!({ "mode": "mtls", "reason": "migrated", "force": true });
    assert_eq!(
        app.admin(Request::put("/admin/clients/route-worker/mode").json(&flip))
            .await
            .status,
        200
    );
    let app = app.restart().await;
    // The bootstrap file still says `dual`; the database wins.
    let client = app.admin(Request::get("/admin/clients/route-worker")).await;
    assert_eq!(client.json()["mode"], "mtls");
    let response = app
        .request(
            None,
            submit(&plan("r-1", 1)).api_key(app.key("route-worker")),
        )
        .await
        .unwrap();
    response.assert_problem(401, "unauthenticated");
    app.assert_last_refusal("key_retired").await;
}

#[tokio::test]
async fn unknown_path_is_a_problem_json_404() {
    let app = spawn_app().await;
    let response = app
        .request(
            None,
            Request::get("/nothing-here").api_key(app.key("route-worker")),
        )
        .await
        .unwrap();
    response.assert_problem(404, "not-found");
    let response = app
        .request(
            None,
            Request::get("/api/nothing-here").api_key(app.key("route-worker")),
        )
        .await
        .unwrap();
    response.assert_problem(404, "not-found");
}

#[tokio::test]
async fn wrong_method_is_a_problem_json_405() {
    let app = spawn_app().await;
    let response = app
        .request(
            None,
            Request::get("/api/dispatch-plans").api_key(app.key("route-worker")),
        )
        .await
        .unwrap();
    response.assert_problem(405, "method-not-allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_hammered_by_anyone_costs_the_database_at_most_one_probe_a_second() {
    let app = spawn_app().await;
    let probes = || app.metric("dispatch_readiness_probes_total");
    let before = probes().await;
    let started = std::time::Instant::now();
    // 50 callers at once, with curl (HTTP/1.1, as probes and scrapers send it) and ours.
    let ours: Vec<_> = (0..40)
        .map(|_| {
            let port = app.ops_port;
            tokio::spawn(async move { e2e::ops_get(port, "/readyz").await.status })
        })
        .collect();
    let curl = tokio::process::Command::new("curl")
        .args(["-sS", "-w", "%{http_code}\n", "--parallel"])
        .args((0..10).flat_map(|_| {
            [
                "-o".to_owned(),
                "/dev/null".to_owned(),
                format!("http://127.0.0.1:{}/readyz", app.ops_port),
            ]
        }))
        .output()
        .await
        .expect("curl runs");
    for call in ours {
        assert_eq!(call.await.unwrap(), 200);
    }
    let codes = String::from_utf8_lossy(&curl.stdout).to_string();
    assert_eq!(codes.lines().filter(|c| *c == "200").count(), 10, "{codes}");
    let seconds = started.elapsed().as_secs_f64().ceil();
    let probed = probes().await - before;
    assert!(
        probed >= 1.0 && probed <= seconds + 1.0,
        "{probed} probes for 50 calls in {seconds} s"
    );
}

#[tokio::test]
async fn ops_listener_serves_health_readiness_and_metrics_without_a_certificate() {
    let app = spawn_app().await;
    assert_eq!(app.ops_get("/healthz").await.status, 200);
    let ready = app.ops_get("/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(ready.json()["database"], "writable");
    app.request(None, submit(&plan("r-1", 1)).api_key(app.key("key-only")))
        .await
        .unwrap();
    let metrics = app.ops_get("/metrics").await.text();
    assert!(
        metrics.contains(
            "dispatch_requests_total{client=\"key-only\",method=\"api_key\",outcome=\"ok\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        app.metric("dispatch_certificate_expiry_seconds{kind=\"server\",name=\"CN=dispatch-api\"}")
            .await
            > 3600.0
    );
}

#[tokio::test]
async fn tls_1_2_clients_and_http_2_negotiation_are_both_served() {
    use std::sync::Arc;

    use rustls_pki_types::pem::PemObject;
    let app = spawn_app().await;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(&app.pki.ca_file).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls12 = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut connection = e2e::connect_with(app.https_port, Arc::new(tls12), "localhost")
        .await
        .unwrap();
    let response = connection
        .send(Request::get("/api/whoami").api_key(app.key("route-worker")))
        .await
        .unwrap();
    assert_eq!(response.status, 200, "TLS 1.2");

    let mut h2 = e2e::client_config(&app.pki.ca_file, None);
    h2.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", app.https_port))
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(h2))
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "HTTP/2 is offered by ALPN"
    );
}

/// Nagle's algorithm is off on every accepted connection, as nginx and HAProxy have it. With it
/// on, an answer written while the session tickets sent just before are still unacknowledged
/// waits for the client's delayed ACK (40 ms on Linux): every one-request connection (curl,
/// an admin call) took 40 ms more than it should. Read from the in-process server's own socket.
#[tokio::test]
async fn accepted_connections_have_nagle_off_so_answers_are_not_held_for_a_delayed_ack() {
    let app = spawn_app().await;
    let worker = app.pki.workload("route-worker");
    let mut connection = app.connect(Some(&worker)).await.unwrap();
    let response = connection.send(Request::get("/api/whoami")).await.unwrap();
    assert_eq!(response.status, 200);
    let accepted = accepted_sockets(app.https_port);
    assert_eq!(accepted.len(), 1, "one accepted connection: {accepted:?}");
    assert!(
        accepted.iter().all(|&nodelay| nodelay),
        "TCP_NODELAY on each: {accepted:?}"
    );
}

/// TCP_NODELAY of each connected socket of this process whose local port is `port` (the
/// server's side of its accepted connections; the listening socket has no peer).
fn accepted_sockets(port: u16) -> Vec<bool> {
    use std::os::fd::{BorrowedFd, RawFd};
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
        let entry = entry.unwrap();
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<RawFd>().ok())
        else {
            continue;
        };
        if !is_socket {
            continue;
        }
        // SAFETY: the descriptor is open (listed just now) and only borrowed for two
        // getsockopt calls; the server owns it and this test closes nothing.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&fd);
        let local = socket.local_addr().ok().and_then(|a| a.as_socket());
        if local.is_some_and(|a| a.port() == port) && socket.peer_addr().is_ok() {
            found.push(socket.tcp_nodelay().unwrap());
        }
    }
    found
}
