//! Guarded flips: a mode change that causes `max_refusals` refusals within its watch is put
//! back by the service itself, with the evidence in the audit log; one that runs out cleanly
//! is confirmed; a manual mode change cancels it; the default guard of the settings applies
//! and `force` does not skip it.

use std::time::Duration;

use e2e::{Request, TestApp, plan, spawn_app, spawn_app_with, submit};
use serde_json::{Value, json};

async fn flip(app: &TestApp, body: Value) -> e2e::Response {
    app.admin(Request::put("/admin/clients/route-worker/mode").json(&body))
        .await
}

/// Polls the migration report (every 100 ms, at most 10 s) until route-worker's guard is in
/// `state` (and, once reverted, the client back in the guard's `from` mode: the row is written
/// just before the registry reloads the client); returns its row.
async fn until_guard(app: &TestApp, state: &str) -> Value {
    for _ in 0..100 {
        let row = app.migration_row("route-worker").await;
        let settled = state != "reverted" || row["mode"] == row["guard"]["from"];
        if row["guard"]["state"] == state && settled {
            return row;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the guard never became {state}: {}",
        app.migration_row("route-worker").await
    );
}

async fn by_key(app: &TestApp, route: &str) -> e2e::Response {
    app.request(
        None,
        submit(&plan(route, 1)).api_key(app.key("route-worker")),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guarded_flip_that_causes_max_refusals_is_reverted_with_its_evidence() {
    let app = spawn_app().await;
    let guard = json!({ "watch_secs": 600, "max_refusals": 3 });
    let flipped = flip(
        &app,
        json!({ "mode": "mtls", "reason": "cutover", "force": true, "guard": guard }),
    )
    .await;
    assert_eq!(flipped.status, 200, "{}", flipped.text());
    assert_eq!(flipped.json()["guard"], guard);
    let watching = until_guard(&app, "watching").await;
    assert_eq!(watching["guard"]["max_refusals"], 3);
    // A stale instance still sending the key.
    for i in 0..3 {
        let refused = by_key(&app, &format!("r-{i}")).await;
        assert_eq!(refused.json()["reason"], "key_retired");
    }
    let row = until_guard(&app, "reverted").await;
    assert_eq!(row["mode"], "dual");
    let because = row["guard"]["because"].as_str().unwrap();
    assert!(
        because.contains("key_retired 3") && because.contains("127.0.0.0/24"),
        "{because}"
    );
    // The key works again.
    assert_eq!(by_key(&app, "after").await.status, 202);
    let audit = app.audit(Some("route-worker")).await;
    let reverted = audit
        .iter()
        .find(|e| e["reason"] == "mode_reverted")
        .expect("a mode_reverted row");
    assert_eq!(reverted["before"], "mtls");
    assert_eq!(reverted["after"], "dual");
    assert_eq!(
        reverted["detail"]["evidence"]["by_reason"]["key_retired"],
        3
    );
    assert!(reverted["detail"]["evidence"]["first_seen"].is_i64());
    assert_eq!(app.metric("dispatch_flips_reverted_total").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guarded_flip_that_runs_out_cleanly_is_confirmed() {
    let app = spawn_app().await;
    let flipped = flip(
        &app,
        json!({ "mode": "mtls", "reason": "cutover", "force": true,
                "guard": { "watch_secs": 1, "max_refusals": 3 } }),
    )
    .await;
    assert_eq!(flipped.status, 200);
    // Two refusals: fewer than the threshold.
    for i in 0..2 {
        assert_eq!(by_key(&app, &format!("r-{i}")).await.status, 401);
    }
    let row = until_guard(&app, "confirmed").await;
    assert_eq!(row["mode"], "mtls");
    let audit = app.audit(Some("route-worker")).await;
    assert!(
        audit.iter().any(|e| e["reason"] == "mode_confirmed"),
        "{audit:?}"
    );
    assert!(!audit.iter().any(|e| e["reason"] == "mode_reverted"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_mode_change_cancels_a_running_guard() {
    let app = spawn_app().await;
    let guarded = json!({ "mode": "mtls", "reason": "cutover", "force": true,
                          "guard": { "watch_secs": 600, "max_refusals": 2 } });
    assert_eq!(flip(&app, guarded).await.status, 200);
    until_guard(&app, "watching").await;
    // The operator decides: mtls for good, no guard.
    let decided = json!({ "mode": "mtls", "reason": "decided", "force": true });
    assert_eq!(flip(&app, decided).await.status, 200);
    until_guard(&app, "cancelled").await;
    for i in 0..3 {
        assert_eq!(by_key(&app, &format!("r-{i}")).await.status, 401);
    }
    // Past two ticks of the guard task, nothing was reverted.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let row = app.migration_row("route-worker").await;
    assert_eq!(row["mode"], "mtls");
    assert_eq!(row["guard"]["state"], "cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_guard_of_the_settings_applies_and_force_does_not_skip_it() {
    let app = spawn_app_with(|s| {
        s.migration.default_guard = Some(dispatch_api::configuration::FlipGuard {
            watch_secs: 600,
            max_refusals: 2,
        });
    })
    .await;
    let flipped = flip(
        &app,
        json!({ "mode": "mtls", "reason": "cutover", "force": true }),
    )
    .await;
    assert_eq!(flipped.status, 200);
    assert_eq!(flipped.json()["guard"]["max_refusals"], 2);
    for i in 0..2 {
        assert_eq!(by_key(&app, &format!("r-{i}")).await.status, 401);
    }
    let row = until_guard(&app, "reverted").await;
    assert_eq!(row["mode"], "dual");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_that_could_never_watch_or_revert_is_a_400_and_changes_nothing() {
    let app = spawn_app().await;
    for guard in [
        json!({ "watch_secs": 0, "max_refusals": 3 }),
        json!({ "watch_secs": 60, "max_refusals": 0 }),
        json!({ "watch_secs": 60 }),
    ] {
        let refused = flip(
            &app,
            json!({ "mode": "mtls", "reason": "cutover", "force": true, "guard": guard }),
        )
        .await;
        assert_eq!(refused.status, 400, "{guard}: {}", refused.text());
    }
    assert_eq!(app.migration_row("route-worker").await["mode"], "dual");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_of_other_clients_or_other_reasons_do_not_count_against_a_guard() {
    let app = spawn_app().await;
    let guarded = json!({ "mode": "mtls", "reason": "cutover", "force": true,
                          "guard": { "watch_secs": 600, "max_refusals": 1 } });
    assert_eq!(flip(&app, guarded).await.status, 200);
    // Another client's refusals, and anonymous ones.
    let other = app
        .request(None, submit(&plan("x", 1)).api_key(app.key("retired")))
        .await
        .unwrap();
    assert_eq!(other.status, 401);
    let anonymous = app.request(None, submit(&plan("y", 1))).await.unwrap();
    assert_eq!(anonymous.status, 401);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let row = app.migration_row("route-worker").await;
    assert_eq!(row["guard"]["state"], "watching");
    assert_eq!(row["guard"]["refusals"], 0);
    assert_eq!(row["mode"], "mtls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setting_the_mode_a_client_is_already_in_starts_no_guard() {
    let app = spawn_app().await;
    let same = flip(
        &app,
        json!({ "mode": "dual", "reason": "no-op", "guard": { "watch_secs": 600, "max_refusals": 1 } }),
    )
    .await;
    assert_eq!(same.status, 200, "{}", same.text());
    assert_eq!(same.json()["guard"], Value::Null);
    assert_eq!(
        app.migration_row("route-worker").await["guard"],
        Value::Null
    );
}
