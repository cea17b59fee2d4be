//! PostgreSQL faults: the server stopped under a running replica, and a replica killed under
//! load.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::app::{PreparedApp, TestApp, plan, submit};
use e2e::http::{Request, connect};
use e2e::postgres::TestPostgres;
use e2e::process::ServerProcess;

/// A replica on `server` that gives up on the database after 1 s (the test default is 5 s).
async fn replica(server: &TestPostgres) -> TestApp {
    let mut prepared = PreparedApp::new().on_postgres(server);
    prepared.settings.database.busy_timeout_ms = 1000;
    prepared.start().await
}

/// Runs a blocking `pg_ctl` call off the runtime the app's tasks run on.
async fn blocking(server: &Arc<TestPostgres>, call: fn(&TestPostgres)) {
    let server = server.clone();
    tokio::task::spawn_blocking(move || call(&server))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_database_stopped_a_plan_is_503_with_retry_after_and_readyz_fails_then_202_without_a_restart()
 {
    let server = Arc::new(TestPostgres::start());
    let app = replica(&server).await;
    let key = app.key("route-worker").to_owned();
    let submit_one = |n: usize| submit(&plan(&format!("r-{n}"), 1)).api_key(&key);
    assert_eq!(app.request(None, submit_one(0)).await.unwrap().status, 202);
    blocking(&server, TestPostgres::stop).await;

    let refused = app.request(None, submit_one(1)).await.unwrap();
    refused.assert_problem(503, "unavailable");
    assert!(refused.header("retry-after").is_some(), "Retry-After");
    let ready = app.ops_get("/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.text());

    blocking(&server, TestPostgres::start_again).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 2;
    loop {
        let response = app.request(None, submit_one(n)).await.unwrap();
        if response.status == 202 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {} after the database came back",
            response.status
        );
        n += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(app.ops_get("/readyz").await.status, 200);
    assert_eq!(
        app.plan_count().await,
        2,
        "the first plan and the one after recovery"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_database_stopped_the_registry_snapshot_still_authenticates_and_admin_changes_are_503()
 {
    let server = Arc::new(TestPostgres::start());
    let app = replica(&server).await;
    let worker = app.pki.workload("route-worker");
    blocking(&server, TestPostgres::stop).await;
    // Who the caller is comes from the snapshot in memory: no database needed.
    let whoami = app
        .request(Some(&worker), Request::get("/api/whoami"))
        .await
        .unwrap();
    assert_eq!(whoami.status, 200, "{}", whoami.text());
    assert_eq!(whoami.json()["client"], "route-worker");
    let wrong_key = app
        .request(None, Request::get("/api/whoami").api_key("not-a-key"))
        .await
        .unwrap();
    wrong_key.assert_problem(401, "unauthenticated");
    // A change cannot be stored, so it is refused, not half made.
    let flip = serde_json::json!({ "mode": "api_key", "reason": "outage drill" });
    let response = app
        .admin(Request::put("/admin/clients/route-worker/mode").json(&flip))
        .await;
    response.assert_problem(503, "unavailable");
    blocking(&server, TestPostgres::start_again).await;
    let client = app.admin(Request::get("/admin/clients/route-worker")).await;
    assert_eq!(
        client.json()["mode"],
        "dual",
        "the refused flip was not made"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_sigkilled_under_load_loses_no_acknowledged_plan() {
    let server = TestPostgres::start();
    let dir = tempfile::tempdir().unwrap();
    let (pki, config) = e2e::process::dev_pki_server(dir.path());
    let key = std::fs::read_to_string(pki.join("route-worker.api-key")).unwrap();
    let key = key.trim().to_owned();
    let ca = pki.join("ca.pem");
    let env = [("DISPATCH_DATABASE__URL", server.url())];
    let doomed = ServerProcess::start(&config, &env);
    let survivor = ServerProcess::start(&config, &env);
    let acknowledged: Arc<Mutex<Vec<(String, usize)>>> = Arc::default();
    let mut clients = Vec::new();
    for (client, port) in [doomed.https_port, survivor.https_port, doomed.https_port]
        .into_iter()
        .enumerate()
    {
        let (key, ca, acknowledged) = (key.clone(), ca.clone(), acknowledged.clone());
        clients.push(tokio::spawn(async move {
            // Bounded: 300 plans per client; stops at the first failure (the kill).
            for n in 0..300 {
                let stops = 1 + (n % 7);
                let request = submit(&plan(&format!("c{client}-{n}"), stops)).api_key(&key);
                let Ok(mut connection) = connect(port, &ca, None, "localhost").await else {
                    break;
                };
                match connection.send(request).await {
                    Ok(response) if response.status == 202 => {
                        let id = response.json()["id"].as_str().unwrap().to_owned();
                        acknowledged.lock().unwrap().push((id, stops));
                    }
                    _ => break,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    doomed.kill();
    for client in clients {
        client.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > 10,
        "the load ran ({} plans)",
        acknowledged.len()
    );
    e2e::process::assert_acknowledged_plans_stored(survivor.https_port, &ca, &key, &acknowledged)
        .await;
    assert_eq!(survivor.stop().code(), Some(0));
}

#[tokio::test]
async fn a_replica_reads_the_database_password_from_its_file_and_no_error_shows_it() {
    let password = "correct-horse-battery-staple";
    let server = TestPostgres::start_with(Some(password));
    let prepared = PreparedApp::new().on_postgres(&server);
    let file = prepared.dir().join("db-password");
    // As a mounted secret usually is: one line, ending in a newline.
    std::fs::write(&file, format!("{password}\n")).unwrap();
    let mut wrong = prepared.settings.clone();
    let mut settings = prepared.settings.clone();
    settings.database.password_file = Some(file.clone());

    // Without the file, and with a wrong password: start-up fails, naming the server only.
    for (case, password_file) in [("no password", None), ("a wrong one", Some("not-it"))] {
        wrong.database.password_file = password_file.map(|text| {
            let path = prepared.dir().join("wrong-password");
            std::fs::write(&path, text).unwrap();
            path
        });
        let error = match dispatch_api::startup::Application::build(wrong.clone()).await {
            Ok(_) => panic!("{case}: started"),
            Err(error) => format!("{error} / {error:?}"),
        };
        assert!(
            error.contains(&format!("127.0.0.1:{}", server.port)),
            "{case}: {error}"
        );
        assert!(!error.contains(password), "{case}: {error}");
    }

    let mut prepared = prepared;
    prepared.settings = settings;
    let app = prepared.start().await;
    let response = app
        .request(
            None,
            submit(&plan("r-1", 1)).api_key(app.key("route-worker")),
        )
        .await
        .unwrap();
    assert_eq!(response.status, 202);
}

/// Polls `whoami` with route-worker's key (every 200 ms, at most `within`) until it answers
/// `status`; returns that answer.
async fn until_whoami(app: &TestApp, status: u16, within: Duration) -> e2e::http::Response {
    let deadline = Instant::now() + within;
    loop {
        let answer = app
            .request(
                None,
                Request::get("/api/whoami").api_key(app.key("route-worker")),
            )
            .await
            .unwrap();
        if answer.status == status {
            return answer;
        }
        assert!(
            Instant::now() < deadline,
            "whoami still {} after {within:?}: {}",
            answer.status,
            answer.text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_off_from_its_database_judges_nobody_past_max_staleness_and_recovers_without_a_restart()
 {
    let server = Arc::new(TestPostgres::start());
    let mut prepared = PreparedApp::new().on_postgres(&server);
    prepared.settings.database.busy_timeout_ms = 1000;
    prepared.settings.registry.max_staleness_secs = 5;
    let app = prepared.start().await;
    until_whoami(&app, 200, Duration::from_secs(5)).await;
    // Cut off: the registry it holds may miss a key removed or a revocation made elsewhere.
    blocking(&server, TestPostgres::stop).await;
    let refused = until_whoami(&app, 503, Duration::from_secs(20)).await;
    refused.assert_problem(503, "unavailable");
    assert!(refused.header("retry-after").is_some(), "Retry-After");
    let ready = app.ops_get("/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert_eq!(ready.json()["registry"], "stale");
    // Back: the follower reads the registry again and judges as before, no restart.
    blocking(&server, TestPostgres::start_again).await;
    until_whoami(&app, 200, Duration::from_secs(30)).await;
    let ready = app.ops_get("/readyz").await;
    assert_eq!(ready.json()["registry"], "current", "{}", ready.text());
}
