//! Refusals cost bounded space: anonymous ones are counted, not written one by one; request
//! text is clipped; old audit rows are pruned; and audit rows never take the space a database
//! size cap keeps for plans.

use e2e::{PreparedApp, Request, plan, spawn_app, spawn_app_with, submit};
use serde_json::Value;

use crate::open_database;

async fn page_count(app: &e2e::TestApp) -> i64 {
    let pool = open_database(&app.settings.database.path).await;
    sqlx::query_scalar("SELECT page_count FROM pragma_page_count()")
        .fetch_one(&pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_refusals_with_long_paths_are_counted_not_written_one_by_one() {
    let app = spawn_app().await;
    let long_path = format!("/api/{}", "A".repeat(8 * 1024));
    // Settle the start-up writes, then measure.
    let _ = app.refusal_counts().await;
    let pages_before = page_count(&app).await;
    let mut connection = app.connect(None).await.unwrap();
    for _ in 0..500 {
        let response = connection.send(Request::get(&long_path)).await.unwrap();
        assert_eq!(response.status, 401);
    }
    let counts = app.refusal_counts().await;
    let anonymous: Vec<_> = counts
        .iter()
        .filter(|c| c["reason"] == "no_credentials")
        .collect();
    // One count per hour and network (two if the run crossed the top of an hour).
    assert!(
        (1..=2).contains(&anonymous.len()),
        "one count per hour and network: {counts:?}"
    );
    let total: i64 = anonymous.iter().map(|c| c["count"].as_i64().unwrap()).sum();
    assert_eq!(total, 500);
    assert!(anonymous.iter().all(|c| c["source"] == "127.0.0.0/24"));
    let path = anonymous[0]["last_detail"]["path"].as_str().unwrap();
    assert!(path.len() <= 256 && path.ends_with('…'), "{path}");
    assert!(
        app.refusal_reasons().await.is_empty(),
        "no audit row per anonymous refusal"
    );
    let grown = page_count(&app).await - pages_before;
    assert!(
        grown < 8,
        "the database grew by {grown} pages for 500 refusals of 8 KiB paths"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_clients_refusal_is_an_individual_audit_row_with_its_path_clipped() {
    let app = spawn_app().await;
    let long_path = format!("/api/{}", "B".repeat(8 * 1024));
    let response = app
        .request(None, Request::get(&long_path).api_key(app.key("retired")))
        .await
        .unwrap();
    assert_eq!(response.status, 401);
    let events = app.audit(Some("retired")).await;
    let refusal = events
        .iter()
        .find(|e| e["reason"] == "key_retired")
        .expect("a row of its own");
    let path = refusal["detail"]["path"].as_str().unwrap();
    assert!(path.len() <= 256 && path.starts_with("/api/BBB"), "{path}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_rows_and_refusal_counts_older_than_the_retention_are_pruned() {
    let mut prepared = PreparedApp::new();
    prepared.settings.audit.retention_days = 30;
    let app = prepared.start().await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let pool = open_database(&app.settings.database.path).await;
    for (reason, days) in [("old", 31), ("recent", 29)] {
        let at = now - days * 86_400;
        sqlx::query("INSERT INTO audit_events (at, kind, reason) VALUES (?, 'alert', ?)")
            .bind(at)
            .bind(reason)
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO refusal_counts (hour, reason, source, count, first_seen, last_seen) \
             VALUES (?, ?, 'x', 1, ?, ?)",
        )
        .bind(at - at % 3600)
        .bind(reason)
        .bind(at)
        .bind(at)
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;
    // Pruning runs at start, then hourly.
    let app = app.restart().await;
    let reasons: Vec<String> = app
        .audit(None)
        .await
        .iter()
        .filter_map(|e| e["reason"].as_str().map(str::to_owned))
        .collect();
    assert!(reasons.contains(&"recent".to_owned()), "{reasons:?}");
    assert!(!reasons.contains(&"old".to_owned()), "{reasons:?}");
    let counted: Vec<Value> = app.refusal_counts().await;
    assert!(
        counted.iter().any(|c| c["reason"] == "recent"),
        "{counted:?}"
    );
    assert!(!counted.iter().any(|c| c["reason"] == "old"), "{counted:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_rows_never_take_the_space_a_size_cap_keeps_for_plans() {
    let app = spawn_app_with(|s| s.database.max_size_bytes = Some(400 * 1024)).await;
    let key = app.key("retired").to_owned();
    // A known client's refusals are individual rows: far more of them than the cap could hold.
    let long_path = format!("/api/{}", "C".repeat(250));
    let mut connection = app.connect(None).await.unwrap();
    for i in 0..3_000 {
        let response = connection
            .send(Request::get(&long_path).api_key(&key))
            .await
            .unwrap();
        assert_eq!(response.status, 401, "request {i}");
    }
    let _ = app.audit(None).await; // flushes the recorder
    assert!(
        app.metric("dispatch_recorder_dropped_total").await > 0.0,
        "audit rows past nine tenths of the cap are dropped and counted"
    );
    // The file stopped growing at nine tenths of the cap (give or take one chunk of rows)...
    let cap_pages = 400 * 1024 / 4096;
    let pages = page_count(&app).await;
    assert!(
        pages <= cap_pages * 9 / 10 + 4,
        "{pages} pages of {cap_pages}: audit rows went past nine tenths of the cap"
    );
    // ...so the last tenth takes plans: three of 50 stops (about 4 KiB each).
    for i in 0..3 {
        let response = app
            .request(
                None,
                submit(&plan(&format!("after-the-flood-{i}"), 50)).api_key(app.key("route-worker")),
            )
            .await
            .unwrap();
        assert_eq!(response.status, 202, "plan {i}: {}", response.text());
    }
}
