//! Retries: connection failures and 5xx are retried with the same Idempotency-Key, so a plan
//! arrives exactly once; 4xx is never retried.

use std::sync::{Arc, Mutex};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use e2e::worker::{WorkerConfig, run_worker_async, write_stops};
use e2e::{PreparedApp, TestPki, free_port};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_down_at_first_then_up_the_plan_arrives_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut prepared = PreparedApp::new();
    prepared.settings.server.port = port;
    let mut worker = WorkerConfig::new(
        format!("https://localhost:{port}"),
        &prepared.pki.ca_file,
        dir.path(),
    );
    worker.api_key_file = Some(prepared.key_file("route-worker"));
    worker.max_attempts = 60;
    worker.max_backoff_ms = 300;
    let stops = write_stops(dir.path(), "stops.csv");
    let config = worker.write(dir.path());
    let run = tokio::spawn(async move {
        run_worker_async(&config, &["submit", stops.to_str().unwrap()]).await
    });
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(
        !run.is_finished(),
        "the worker is still retrying while the server is down"
    );
    let app = prepared.start().await;
    let run = run.await.unwrap();
    assert_eq!(run.code, 0, "{run:?}");
    // The retries are logged with the reason. Which reason the OS gives varies: "connection
    // refused" from 127.0.0.1, "cannot assign requested address" from ::1 where the loopback
    // has no IPv6 (a container), so the sentence, not the errno text, is asserted.
    assert!(
        run.stderr.contains("retrying")
            && run.stderr.contains("cannot connect to https://localhost"),
        "the retries were logged: {run:?}"
    );
    assert_eq!(
        app.plan_count().await,
        2,
        "one plan per team, each exactly once"
    );
}

/// What the faulty server records (idempotency keys seen) and still has to answer (statuses).
type Script = (Arc<Mutex<Vec<String>>>, Arc<Mutex<Vec<u16>>>);

/// A stand-in for dispatch-api that fails on purpose: answers `statuses` in turn (then 202) and
/// records every request's Idempotency-Key. It serves the test PKI's server certificate, so the
/// worker verifies it as it would the real server.
struct FaultyServer {
    port: u16,
    keys: Arc<Mutex<Vec<String>>>,
    handle: actix_web::dev::ServerHandle,
}

impl FaultyServer {
    fn start(pki: &TestPki, statuses: Vec<u16>) -> Self {
        let config = e2e::server_tls(&pki.server_cert, &pki.server_key);
        let keys = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(statuses));
        let state = (keys.clone(), script);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = HttpServer::new(move || {
            App::new().app_data(web::Data::new(state.clone())).default_service(web::to(
                |request: HttpRequest, state: web::Data<Script>| async move {
                    let key = request.headers().get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
                    state.0.lock().unwrap().push(key);
                    let mut script = state.1.lock().unwrap();
                    let status = if script.is_empty() { 202 } else { script.remove(0) };
                    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                        .content_type("application/json")
                        .body(r#"{"id":"00000000-0000-0000-0000-000000000001","status":"accepted"}"#)
                },
            ))
        })
        .workers(1)
        .listen_rustls_0_23(listener, Arc::unwrap_or_clone(config))
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self { port, keys, handle }
    }

    fn keys(&self) -> Vec<String> {
        self.keys.lock().unwrap().clone()
    }
}

fn one_team_stops(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("one-team.json");
    std::fs::write(&path, r#"[{"id":"a","team":"north","latitude":52.0,"longitude":4.0},{"id":"b","team":"north","latitude":52.1,"longitude":4.1}]"#).unwrap();
    path
}

/// Runs `route-worker submit` once against a faulty server answering `statuses` in turn.
async fn submit_against(
    statuses: Vec<u16>,
    max_attempts: u32,
) -> (e2e::worker::WorkerRun, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let server = FaultyServer::start(&pki, statuses);
    let key = dir.path().join("key");
    std::fs::write(&key, "dk_test").unwrap();
    let mut worker = WorkerConfig::new(
        format!("https://localhost:{}", server.port),
        &pki.ca_file,
        dir.path(),
    );
    worker.api_key_file = Some(key);
    worker.max_attempts = max_attempts;
    let stops = one_team_stops(dir.path());
    let run = run_worker_async(
        &worker.write(dir.path()),
        &["submit", stops.to_str().unwrap()],
    )
    .await;
    let keys = server.keys();
    server.handle.stop(false).await;
    (run, keys)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_is_retried_with_the_same_idempotency_key_and_the_plan_arrives_once() {
    let (run, keys) = submit_against(vec![503, 503], 4).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(keys.len(), 3, "two 503s, then accepted: {keys:?}");
    assert!(
        keys.iter().all(|k| k == &keys[0] && k.starts_with("rw-")),
        "one idempotency key: {keys:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_is_not_retried() {
    let (run, keys) = submit_against(vec![400], 5).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert_eq!(keys.len(), 1, "exactly one attempt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_503s_give_up_with_exit_code_4() {
    let (run, keys) = submit_against(vec![503; 10], 3).await;
    assert_eq!(run.code, 4, "{run:?}");
    assert!(run.stderr.contains("gave up after 3 attempts"), "{run:?}");
    assert_eq!(keys.len(), 3);
}
