//! Guarded flips: a mode change that causes `max_refusals` refusals within its watch, from
//! networks that used the retired credential before the flip, is reverted by the service
//! itself for those networks only, with the evidence in the audit log; the same credential from
//! any other network never counts and is an alert; refusals from before the flip never count;
//! one that runs out cleanly is confirmed; a manual mode change cancels it; the default guard of
//! the settings applies and `force` does not skip it.
//!
//! "Another network" is another loopback source address (127.77.0.1: 127.77.0.0/24 to the
//! server), where no instance of the client ever ran.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use e2e::{Request, TestApp, plan, spawn_app, spawn_app_with, submit};
use serde_json::{Value, json};

async fn flip(app: &TestApp, body: Value) -> e2e::Response {
    app.admin(Request::put("/admin/clients/route-worker/mode").json(&body))
        .await
}

/// Where the thief sends from: a network no instance of route-worker ever used.
const ELSEWHERE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 77, 0, 1));

/// Polls the migration report (every 100 ms, at most 10 s) until route-worker's guard is in
/// `state`; returns its row.
async fn until_guard(app: &TestApp, state: &str) -> Value {
    for _ in 0..100 {
        let row = app.migration_row("route-worker").await;
        if row["guard"]["state"] == state {
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

async fn by_key_from(app: &TestApp, source: IpAddr, route: &str) -> e2e::Response {
    app.request_from(
        source,
        None,
        submit(&plan(route, 1)).api_key(app.key("route-worker")),
    )
    .await
    .unwrap()
}

/// The key accepted from 127.0.0.1 before the flip: the evidence that an instance runs there.
async fn key_used_here(app: &TestApp) {
    assert_eq!(by_key(app, "before-the-flip").await.status, 202);
}

/// Polls (every 100 ms, at most 5 s) until the key is accepted from 127.0.0.1 again: the
/// reopening reaches the request path just after the guard's row says reverted.
async fn until_key_accepted(app: &TestApp) -> e2e::Response {
    for i in 0..50 {
        let answer = by_key(app, &format!("after-{i}")).await;
        if answer.status == 202 {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the key was never accepted again from the network the revert reopened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guarded_flip_that_causes_max_refusals_from_a_known_network_reopens_the_key_there_only() {
    let app = spawn_app().await;
    key_used_here(&app).await;
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
    assert_eq!(watching["guard"]["retired_method"], "api_key");
    assert_eq!(watching["guard"]["known_networks"], json!(["127.0.0.0/24"]));
    // A stale instance still sending the key.
    for i in 0..3 {
        let refused = by_key(&app, &format!("r-{i}")).await;
        assert_eq!(refused.json()["reason"], "key_retired");
    }
    let row = until_guard(&app, "reverted").await;
    // The operator's mode stands; the key is re-admitted from the stale instance's network.
    assert_eq!(row["mode"], "mtls");
    let because = row["guard"]["because"].as_str().unwrap();
    assert!(
        because.contains("key_retired 3") && because.contains("127.0.0.0/24"),
        "{because}"
    );
    assert_eq!(row["guard"]["reopened"]["method"], "api_key");
    assert_eq!(
        row["guard"]["reopened"]["networks"],
        json!(["127.0.0.0/24"])
    );
    assert!(row["guard"]["reopened"]["until"].is_string());
    until_key_accepted(&app).await;
    // The same key from any other network is still retired.
    let elsewhere = by_key_from(&app, ELSEWHERE, "thief").await;
    assert_eq!(elsewhere.status, 401);
    assert_eq!(elsewhere.json()["reason"], "key_retired");
    let audit = app.audit(Some("route-worker")).await;
    let reverted = audit
        .iter()
        .find(|e| e["reason"] == "mode_reverted")
        .expect("a mode_reverted row");
    assert_eq!(reverted["before"], "mtls");
    assert_eq!(
        reverted["detail"]["reopened"]["networks"],
        json!(["127.0.0.0/24"])
    );
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
    key_used_here(&app).await;
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
    key_used_here(&app).await;
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
    key_used_here(&app).await;
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
    assert_eq!(row["mode"], "mtls");
    until_key_accepted(&app).await;
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
    key_used_here(&app).await;
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

/// curl (HTTP/2 and HTTP/1.1, as Debian ships it) sending route-worker's key from `source`,
/// verifying the server against the test CA; the status of each request.
fn curl_key_from(app: &TestApp, source: IpAddr, http: &str, n: usize) -> Vec<u16> {
    (0..n)
        .map(|i| {
            let out = std::process::Command::new("curl")
                .args([
                    "-sS",
                    http,
                    "--cacert",
                    app.pki.ca_file.to_str().unwrap(),
                    "--interface",
                    &source.to_string(),
                    "--resolve",
                    &format!("localhost:{}:127.0.0.1", app.https_port),
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "-H",
                    &format!("x-api-key: {}", app.key("route-worker")),
                    "-H",
                    "content-type: application/json",
                    "--data",
                    &plan(&format!("curl-{i}"), 1).to_string(),
                    &format!("https://localhost:{}/api/plans", app.https_port),
                ])
                .output()
                .expect("curl runs");
            String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaked_key_sent_from_another_network_never_reverts_a_guarded_flip_and_is_an_alert() {
    let app = spawn_app().await;
    key_used_here(&app).await;
    let guarded = json!({ "mode": "mtls", "reason": "key leaked", "force": true,
                          "guard": { "watch_secs": 600, "max_refusals": 2 } });
    assert_eq!(flip(&app, guarded).await.status, 200);
    until_guard(&app, "watching").await;
    // The thief, from a network where no instance ever ran, with stock clients and ours.
    let mut statuses = curl_key_from(&app, ELSEWHERE, "--http2", 3);
    statuses.extend(curl_key_from(&app, ELSEWHERE, "--http1.1", 3));
    for i in 0..4 {
        statuses.push(
            by_key_from(&app, ELSEWHERE, &format!("thief-{i}"))
                .await
                .status,
        );
    }
    assert_eq!(statuses, [401; 10]);
    // Past two ticks of the guard task, nothing was reverted and nothing counted.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let row = app.migration_row("route-worker").await;
    assert_eq!(row["mode"], "mtls");
    assert_eq!(row["guard"]["state"], "watching");
    assert_eq!(row["guard"]["refusals"], 0);
    assert_eq!(row["guard"]["reopened"], Value::Null);
    assert_eq!(
        by_key_from(&app, ELSEWHERE, "thief-again").await.status,
        401
    );
    app.wait_for_metric("dispatch_retired_credential_unknown_source_total", 11.0)
        .await;
    let audit = app.audit(Some("route-worker")).await;
    let alerts: Vec<&Value> = audit
        .iter()
        .filter(|e| e["reason"] == "retired_credential_unknown_source")
        .collect();
    assert!(!alerts.is_empty(), "{audit:?}");
    // One row a tick, naming the networks (here one) with their counts.
    assert!(
        alerts.iter().all(|e| e["kind"] == "alert"
            && e["detail"]["networks"][0]["network"] == "127.77.0.0/24"
            && e["detail"]["networks_seen"] == 1),
        "{alerts:?}"
    );
    let total: i64 = alerts
        .iter()
        .map(|e| e["detail"]["refusals"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 11);
    assert_eq!(app.metric("dispatch_flips_reverted_total").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_from_before_a_flip_never_revert_the_flip_that_cures_them() {
    let app = spawn_app().await;
    let worker = app.pki.workload("route-worker");
    let to_api_key = json!({ "mode": "api_key", "reason": "back to keys", "force": true });
    assert_eq!(flip(&app, to_api_key).await.status, 200);
    // Instances that already present certificates are refused for the mode...
    for i in 0..3 {
        let refused = app
            .request(Some(&worker), submit(&plan(&format!("c-{i}"), 1)))
            .await
            .unwrap();
        assert_eq!(refused.json()["reason"], "method_not_allowed");
    }
    // ...and the flip to dual, within the same second, is what cures them.
    let guarded = json!({ "mode": "dual", "reason": "certificates issued",
                          "guard": { "watch_secs": 600, "max_refusals": 1 } });
    let flipped = flip(&app, guarded).await;
    assert_eq!(flipped.status, 200, "{}", flipped.text());
    let accepted = app
        .request(Some(&worker), submit(&plan("cured", 1)))
        .await
        .unwrap();
    assert_eq!(accepted.status, 202);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let row = app.migration_row("route-worker").await;
    assert_eq!(row["mode"], "dual");
    assert_eq!(row["guard"]["state"], "watching");
    assert_eq!(row["guard"]["refusals"], 0);
    assert_eq!(row["guard"]["retired_method"], Value::Null);
}
