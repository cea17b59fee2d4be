//! Key rotation with an overlap: the old key keeps working until the overlap ends, then is
//! refused as `key_expired` (audited); a second rotation waits for the first overlap; each
//! key's use is its own; one key can be ended at once by its id (a leak during an overlap),
//! keeping the other.

use std::time::Duration;

use e2e::{Request, TestApp, plan, spawn_app, spawn_app_with, submit};
use serde_json::{Value, json};

async fn rotate(app: &TestApp, body: Value) -> e2e::Response {
    app.admin(Request::post("/admin/clients/key-only/api-key").json(&body))
        .await
}

async fn submit_with(app: &TestApp, key: &str, route: &str) -> e2e::Response {
    app.request(None, submit(&plan(route, 1)).api_key(key))
        .await
        .unwrap()
}

async fn keys(app: &TestApp) -> Vec<Value> {
    app.admin(Request::get("/admin/clients/key-only"))
        .await
        .json()["api_keys"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_the_overlap_both_keys_work_and_after_it_the_old_one_is_key_expired() {
    let app = spawn_app().await;
    let old_key = app.key("key-only").to_owned();
    let rotated = rotate(&app, json!({ "reason": "yearly", "overlap_secs": 4 })).await;
    assert_eq!(rotated.status, 200, "{}", rotated.text());
    let new_key = rotated.json()["api_key"].as_str().unwrap().to_owned();
    assert_eq!(submit_with(&app, &old_key, "r-old").await.status, 202);
    assert_eq!(submit_with(&app, &new_key, "r-new").await.status, 202);
    let states: Vec<Value> = keys(&app)
        .await
        .iter()
        .map(|k| k["state"].clone())
        .collect();
    assert_eq!(states, [json!("current"), json!("overlap")]);
    // Past the overlap (4 s; checked every 200 ms for at most 20 s).
    let mut refused = None;
    for _ in 0..100 {
        let answer = submit_with(&app, &old_key, "r-late").await;
        if answer.status != 202 {
            refused = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let refused = refused.expect("the old key refused once its overlap ended");
    refused.assert_problem(401, "unauthenticated");
    // The caller proved it holds a key we issued: it is told why.
    assert_eq!(refused.json()["reason"], "key_expired");
    app.assert_last_refusal("key_expired").await;
    let audit = app.audit(Some("key-only")).await;
    assert!(
        audit.iter().any(|e| e["reason"] == "key_expired"),
        "{audit:?}"
    );
    assert_eq!(submit_with(&app, &new_key, "r-new-2").await.status, 202);
    let states: Vec<Value> = keys(&app)
        .await
        .iter()
        .map(|k| k["state"].clone())
        .collect();
    assert_eq!(states, [json!("current"), json!("expired")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_while_an_overlap_runs_is_refused_409_naming_the_old_key() {
    let app = spawn_app().await;
    let first = rotate(&app, json!({ "reason": "one", "overlap_secs": 3600 })).await;
    assert_eq!(first.status, 200);
    let old_id = first.json()["api_keys"][1]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let second = rotate(&app, json!({ "reason": "two", "overlap_secs": 3600 })).await;
    second.assert_problem(409, "key-overlap-running");
    assert!(second.json()["detail"].as_str().unwrap().contains(&old_id));
    // The first rotation's keys both still work.
    let new_key = first.json()["api_key"].as_str().unwrap().to_owned();
    assert_eq!(submit_with(&app, &new_key, "r-1").await.status, 202);
    assert_eq!(
        submit_with(&app, app.key("key-only"), "r-2").await.status,
        202
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_overlap_secs_the_overlap_is_migration_key_overlap_secs() {
    let app = spawn_app_with(|s| s.migration.key_overlap_secs = 7200).await;
    let rotated = rotate(&app, json!({ "reason": "yearly" })).await;
    assert_eq!(rotated.status, 200);
    let keys = rotated.json()["api_keys"].as_array().unwrap().clone();
    let created = time::OffsetDateTime::parse(
        keys[0]["created_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let until = time::OffsetDateTime::parse(
        keys[1]["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!((until - created).whole_seconds(), 7200);
    assert_eq!(
        submit_with(&app, app.key("key-only"), "r-1").await.status,
        202
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_key_counts_its_own_use() {
    let app = spawn_app().await;
    let rotated = rotate(&app, json!({ "reason": "yearly", "overlap_secs": 3600 })).await;
    let new_key = rotated.json()["api_key"].as_str().unwrap().to_owned();
    for route in ["a", "b"] {
        assert_eq!(
            submit_with(&app, app.key("key-only"), route).await.status,
            202
        );
    }
    assert_eq!(submit_with(&app, &new_key, "c").await.status, 202);
    let keys = keys(&app).await;
    assert_eq!(keys[0]["use_count"], 1, "{keys:?}");
    assert_eq!(keys[1]["use_count"], 2, "{keys:?}");
    assert!(
        keys.iter().all(|k| k["last_used_at"].is_string()),
        "{keys:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_with_its_own_lifetime_expires_after_it() {
    let app = spawn_app().await;
    let rotated = rotate(
        &app,
        json!({ "reason": "short-lived", "overlap_secs": 0, "expires_in_secs": 1 }),
    )
    .await;
    let new_key = rotated.json()["api_key"].as_str().unwrap().to_owned();
    assert!(rotated.json()["api_keys"][0]["expires_at"].is_string());
    let mut expired = false;
    for _ in 0..50 {
        if submit_with(&app, &new_key, "r").await.status == 401 {
            expired = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(expired, "refused within 5 s of its 1 s lifetime");
    app.assert_last_refusal("key_expired").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_issued_at_registration_may_carry_a_lifetime_and_key_expiries_are_exported() {
    let app = spawn_app().await;
    let registered = app
        .admin(Request::post("/admin/clients").json(&json!({
            "name": "billing",
            "mode": "api_key",
            "scopes": ["plans:submit"],
            "issue_api_key": true,
            "api_key_expires_in_secs": 3600,
            "reason": "new service",
        })))
        .await;
    assert_eq!(registered.status, 201, "{}", registered.text());
    let key_id = registered.json()["api_keys"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(registered.json()["api_keys"][0]["expires_at"].is_string());
    let metrics = app.ops_get("/metrics").await.text();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("dispatch_api_key_expiry_seconds") && l.contains(&key_id))
        .unwrap_or_else(|| panic!("no expiry of key {key_id}:\n{metrics}"));
    assert!(
        line.contains("client=\"billing\"") && line.contains("state=\"current\""),
        "{line}"
    );
    let seconds: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((3500.0..=3600.0).contains(&seconds), "{line}");
    // A rotation's replaced key is exported as `overlap`; keys without an expiry are not.
    let rotated = rotate(&app, json!({ "reason": "yearly", "overlap_secs": 600 })).await;
    let old_id = rotated.json()["api_keys"][1]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let metrics = app.ops_get("/metrics").await.text();
    assert!(
        metrics
            .lines()
            .any(|l| l.contains(&old_id) && l.contains("state=\"overlap\"")),
        "{metrics}"
    );
    let new_id = rotated.json()["api_key_id"].as_str().unwrap().to_owned();
    assert!(!metrics.contains(&new_id), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_would_expire_at_once_is_refused_400_and_nothing_changes() {
    let app = spawn_app().await;
    let refused = rotate(
        &app,
        json!({ "reason": "oops", "overlap_secs": 0, "expires_in_secs": 0 }),
    )
    .await;
    refused.assert_problem(400, "malformed-request");
    assert_eq!(
        submit_with(&app, app.key("key-only"), "r").await.status,
        202
    );
    let registered = app
        .admin(Request::post("/admin/clients").json(&json!({
            "name": "billing", "mode": "api_key", "scopes": ["plans:submit"],
            "issue_api_key": true, "api_key_expires_in_secs": 0, "reason": "new",
        })))
        .await;
    registered.assert_problem(400, "malformed-request");
}

async fn end_key(app: &TestApp, key_id: &str) -> e2e::Response {
    app.admin(
        Request::new(
            "DELETE",
            &format!("/admin/clients/key-only/api-keys/{key_id}"),
        )
        .json(&json!({ "reason": "leaked" })),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_leaked_during_an_overlap_is_ended_at_once_by_its_id_and_the_other_keeps_working() {
    let app = spawn_app().await;
    let leaked = app.key("key-only").to_owned();
    let rotated = rotate(&app, json!({ "reason": "yearly", "overlap_secs": 86_400 })).await;
    assert_eq!(rotated.status, 200, "{}", rotated.text());
    let new_key = rotated.json()["api_key"].as_str().unwrap().to_owned();
    // A second rotation cannot end the leaked key while its overlap runs...
    assert_eq!(rotate(&app, json!({ "reason": "leak" })).await.status, 409);
    let leaked_id = keys(&app).await[1]["id"].as_str().unwrap().to_owned();
    // ...ending it by its id does, at once.
    let ended = end_key(&app, &leaked_id).await;
    assert_eq!(ended.status, 200, "{}", ended.text());
    assert_eq!(ended.json()["ended"], leaked_id);
    let refused = submit_with(&app, &leaked, "r-leaked").await;
    refused.assert_problem(401, "unauthenticated");
    assert_eq!(refused.json()["reason"], "key_expired");
    assert_eq!(submit_with(&app, &new_key, "r-new").await.status, 202);
    let states: Vec<Value> = keys(&app)
        .await
        .iter()
        .map(|k| k["state"].clone())
        .collect();
    assert_eq!(states, [json!("current"), json!("expired")]);
    let audit = app.audit(Some("key-only")).await;
    let change = audit
        .iter()
        .find(|e| e["reason"] == "api_key_ended")
        .expect("an api_key_ended row");
    assert_eq!(change["detail"]["note"], "leaked");
    assert!(audit.iter().any(|e| e["reason"] == "key_expired"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_a_key_that_is_not_there_is_404_and_ending_it_twice_too() {
    let app = spawn_app().await;
    assert_eq!(end_key(&app, "000000000000").await.status, 404);
    let unknown_client = app
        .admin(
            Request::new("DELETE", "/admin/clients/nobody/api-keys/000000000000")
                .json(&json!({ "reason": "leaked" })),
        )
        .await;
    assert_eq!(unknown_client.status, 404);
    let id = keys(&app).await[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(end_key(&app, &id).await.status, 200);
    assert_eq!(end_key(&app, &id).await.status, 404);
    // Its only key ended: the client's key is refused as key_expired.
    let refused = submit_with(&app, app.key("key-only"), "r").await;
    assert_eq!(refused.json()["reason"], "key_expired");
    let missing_reason = app
        .admin(
            Request::new("DELETE", &format!("/admin/clients/key-only/api-keys/{id}"))
                .json(&json!({})),
        )
        .await;
    assert_eq!(missing_reason.status, 400);
}
