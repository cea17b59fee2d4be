//! Storage faults: plan submission answers 503 with Retry-After (never 202), readiness turns
//! not-ready, buffered records are dropped and counted rather than piling up, and the service
//! recovers without a restart. Graceful shutdown flushes what is buffered.

use e2e::process::ServerProcess;
use e2e::{Request, plan, spawn_app_with, submit};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_locked_by_another_process_gives_503_then_recovers_without_a_restart() {
    let app = spawn_app_with(|s| {
        s.database.busy_timeout_ms = 200;
        s.limits.record_queue = 8;
    })
    .await;
    let other = crate::open_database(&app.settings.database.path).await;
    let mut lock = other.acquire().await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut *lock)
        .await
        .unwrap();

    let response = app
        .request(
            None,
            submit(&plan("r-1", 2)).api_key(app.key("route-worker")),
        )
        .await
        .unwrap();
    response.assert_problem(503, "unavailable");
    assert!(
        response.header("retry-after").is_some(),
        "503 carries Retry-After"
    );
    let ready = app.ops_get("/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert_eq!(ready.json()["database"], "unavailable");
    // Refusals are audited through the bounded buffer: with the database locked they are
    // dropped and counted, not kept without bound.
    for _ in 0..20 {
        app.request(None, Request::get("/api/whoami"))
            .await
            .unwrap();
    }
    app.wait_for_metric("dispatch_recorder_dropped_total", 1.0)
        .await;

    sqlx::query("ROLLBACK").execute(&mut *lock).await.unwrap();
    drop(lock);
    let response = app
        .request(
            None,
            submit(&plan("r-1", 2)).api_key(app.key("route-worker")),
        )
        .await
        .unwrap();
    assert_eq!(response.status, 202, "{}", response.text());
    assert_eq!(app.ops_get("/readyz").await.status, 200);
    assert_eq!(
        app.plan_count().await,
        1,
        "the refused submission stored nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_0_and_flushes_buffered_audit_records() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, config) = e2e::process::dev_pki_server(dir.path());
    let server = ServerProcess::start(&config, &[]);
    let ca = pki.join("ca.pem");
    // A refusal, buffered in memory for up to half a second...
    let response = e2e::connect(server.https_port, &ca, None, "localhost")
        .await
        .unwrap()
        .send(Request::get("/api/whoami"))
        .await
        .unwrap();
    assert_eq!(response.status, 401);
    // ...and SIGTERM at once.
    assert_eq!(server.stop().code(), Some(0), "graceful shutdown exits 0");
    let pool = crate::open_database(&dir.path().join("dispatch.db")).await;
    // An anonymous refusal is counted (not a row of its own); the count is written at exit.
    let refusals: i64 = sqlx::query_scalar(
        "SELECT COALESCE(SUM(count), 0) FROM refusal_counts WHERE reason = 'no_credentials'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(refusals, 1, "the buffered refusal was written before exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_database_gives_503_never_202_and_recovers_when_space_is_freed() {
    let app = spawn_app_with(|s| s.database.max_size_bytes = Some(400 * 1024)).await;
    let key = app.key("route-worker").to_owned();
    // Fill it (bounded): plans of 50 stops until the first refusal.
    let mut accepted = 0;
    let refusal = loop {
        assert!(accepted < 2_000, "the cap never bit");
        let response = app
            .request(
                None,
                submit(&plan(&format!("fill-{accepted}"), 50)).api_key(&key),
            )
            .await
            .unwrap();
        if response.status != 202 {
            break response;
        }
        accepted += 1;
    };
    refusal.assert_problem(503, "unavailable");
    assert!(refusal.header("retry-after").is_some());
    let ready = app.ops_get("/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert_eq!(ready.json()["database"], "recent plan writes failed");
    assert_eq!(
        app.plan_count().await,
        accepted,
        "every 202 is stored, nothing else"
    );

    // Space is freed (an operator archives old plans): the next plan is taken, no restart.
    let other = crate::open_database(&app.settings.database.path).await;
    sqlx::query("DELETE FROM plans WHERE route_id LIKE 'fill-1%'")
        .execute(&other)
        .await
        .unwrap();
    let response = app
        .request(None, submit(&plan("after", 50)).api_key(&key))
        .await
        .unwrap();
    assert_eq!(response.status, 202, "{}", response.text());
    assert_eq!(app.ops_get("/readyz").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_flight_plan_finishes_during_graceful_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, config) = e2e::process::dev_pki_server(dir.path());
    let server = ServerProcess::start(
        &config,
        &[("DISPATCH_DATABASE__BUSY_TIMEOUT_MS", "5000".into())],
    );
    let key = std::fs::read_to_string(pki.join("route-worker.api-key")).unwrap();
    let database = crate::open_database(&dir.path().join("dispatch.db")).await;
    // Hold the write lock so the plan is in flight (waiting on the database) when SIGTERM comes.
    let mut lock = database.acquire().await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let port = server.https_port;
    let ca = pki.join("ca.pem");
    let in_flight = tokio::spawn(async move {
        let mut connection = e2e::connect(port, &ca, None, "localhost").await.unwrap();
        connection
            .send(submit(&plan("in-flight", 3)).api_key(key.trim()))
            .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    server.signal("TERM");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    sqlx::query("ROLLBACK").execute(&mut *lock).await.unwrap();
    drop(lock);
    let response = in_flight.await.unwrap().unwrap_or_else(|e| {
        panic!(
            "the in-flight request is answered: {e}\n{}",
            server.logs.text()
        )
    });
    assert_eq!(response.status, 202, "{}", response.text());
    assert_eq!(server.stop().code(), Some(0));
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM plans WHERE route_id = 'in-flight'")
        .fetch_one(&database)
        .await
        .unwrap();
    assert_eq!(stored, 1, "the acknowledged plan is stored");
}

#[test]
fn a_second_process_on_one_sqlite_file_stops_at_start_up_naming_it_and_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let (_pki, config) = e2e::process::dev_pki_server(dir.path());
    let first = ServerProcess::start(&config, &[]);
    let second = std::process::Command::new(e2e::process::binary("dispatch-api"))
        .env("DISPATCH_CONFIG_DIR", &config)
        .env("DISPATCH_ENV", "local")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("dispatch-api runs");
    assert!(!second.status.success(), "the second one does not start");
    let stderr = String::from_utf8_lossy(&second.stderr);
    let database = dir.path().join("dispatch.db");
    for expected in [
        database.display().to_string(),
        format!("pid {}", first.pid()),
        "PostgreSQL".to_owned(),
    ] {
        assert!(stderr.contains(&expected), "{expected}: {stderr}");
    }
    // The first one serves on, and once it stops the file is free again.
    assert_eq!(first.stop().code(), Some(0));
    let again = ServerProcess::start(&config, &[]);
    drop(again);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_file_taken_by_another_process_makes_readyz_fail_until_it_is_free_again() {
    use dispatch_api::storage::writer_lock;
    let app = spawn_app_with(|_| {}).await;
    let database = app.settings.database.path.clone();
    assert_eq!(app.ops_get("/readyz").await.status, 200);
    // Someone deletes the lock file, and another dispatch-api takes the new one.
    std::fs::remove_file(writer_lock::lock_path(&database)).unwrap();
    let other = writer_lock::claim(&database).unwrap();
    let ready = readyz_until(&app, 503).await;
    assert!(
        ready.text().contains("another dispatch-api holds it"),
        "{}",
        ready.text()
    );
    drop(other);
    readyz_until(&app, 200).await;
}

/// `/readyz` until it answers `status` (the lock is looked at every second); panics after 5 s.
async fn readyz_until(app: &e2e::TestApp, status: u16) -> e2e::Response {
    for _ in 0..50 {
        let ready = app.ops_get("/readyz").await;
        if ready.status == status {
            return ready;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("/readyz never answered {status}");
}
