//! Plan intake: bad input gets a clear problem and nothing is stored; idempotency.

use e2e::{Request, TestApp, plan, spawn_app, submit};
use serde_json::json;

async fn submit_as_worker(app: &TestApp, request: Request) -> e2e::Response {
    app.request(None, request.api_key(app.key("route-worker")))
        .await
        .unwrap()
}

#[tokio::test]
async fn malformed_json_is_a_400_problem_and_nothing_is_stored() {
    let app = spawn_app().await;
    let request = Request::post("/api/dispatch-plans")
        .raw_body("application/json", b"{\"route_id\": ".to_vec());
    submit_as_worker(&app, request)
        .await
        .assert_problem(400, "malformed-request");
    assert_eq!(app.plan_count().await, 0);
}

#[tokio::test]
async fn unknown_field_is_a_400_problem_naming_it_and_nothing_is_stored() {
    let app = spawn_app().await;
    let mut body = plan("r-1", 1);
    body["priority"] = json!("high");
    let response = submit_as_worker(&app, submit(&body)).await;
    response.assert_problem(400, "malformed-request");
    assert!(
        response.json()["detail"]
            .as_str()
            .unwrap()
            .contains("priority"),
        "{}",
        response.text()
    );
    assert_eq!(app.plan_count().await, 0);
}

#[tokio::test]
async fn oversized_body_is_a_413_problem_and_nothing_is_stored() {
    let app = spawn_app().await;
    let mut body = plan("r-1", 1);
    body["team"] = json!("x".repeat(128 * 1024));
    submit_as_worker(&app, submit(&body))
        .await
        .assert_problem(413, "payload-too-large");
    assert_eq!(app.plan_count().await, 0);
}

#[tokio::test]
async fn too_many_stops_is_a_422_problem_and_nothing_is_stored() {
    let app = spawn_app().await;
    let max = app.settings.limits.max_stops;
    let response = submit_as_worker(&app, submit(&plan("r-1", max + 1))).await;
    response.assert_problem(422, "invalid-plan");
    assert_eq!(response.json()["errors"][0]["pointer"], "/stops");
    assert_eq!(app.plan_count().await, 0);
}

#[tokio::test]
async fn latitude_out_of_range_is_a_422_problem_naming_the_stop_and_nothing_is_stored() {
    let app = spawn_app().await;
    let mut body = plan("r-1", 3);
    body["stops"][2]["latitude"] = json!(90.5);
    let response = submit_as_worker(&app, submit(&body)).await;
    response.assert_problem(422, "invalid-plan");
    assert_eq!(response.json()["errors"][0]["pointer"], "/stops/2/latitude");
    assert_eq!(app.plan_count().await, 0);
}

#[tokio::test]
async fn wrong_content_type_is_a_415_problem() {
    let app = spawn_app().await;
    let request = Request::post("/api/dispatch-plans")
        .raw_body("text/plain", plan("r-1", 1).to_string().into_bytes());
    submit_as_worker(&app, request)
        .await
        .assert_problem(415, "unsupported-media-type");
    assert_eq!(app.plan_count().await, 0);
}

#[tokio::test]
async fn the_same_idempotency_key_twice_stores_one_plan() {
    let app = spawn_app().await;
    let request = submit(&plan("r-1", 2)).header("Idempotency-Key", "plan-r-1-attempt");
    let first = submit_as_worker(&app, request.clone()).await;
    let second = submit_as_worker(&app, request).await;
    assert_eq!((first.status, second.status), (202, 202));
    assert_eq!(first.json()["id"], second.json()["id"]);
    assert_eq!(second.json()["replayed"], true);
    assert_eq!(app.plan_count().await, 1);
}

#[tokio::test]
async fn the_same_idempotency_key_with_another_body_is_refused() {
    let app = spawn_app().await;
    let first = submit_as_worker(
        &app,
        submit(&plan("r-1", 2)).header("Idempotency-Key", "k-1"),
    )
    .await;
    assert_eq!(first.status, 202);
    let second = submit_as_worker(
        &app,
        submit(&plan("r-2", 2)).header("Idempotency-Key", "k-1"),
    )
    .await;
    second.assert_problem(422, "idempotency-key-reused");
    assert_eq!(app.plan_count().await, 1);
}

#[tokio::test]
async fn the_same_idempotency_key_from_another_client_is_a_separate_plan() {
    let app = spawn_app().await;
    let request = submit(&plan("r-1", 2)).header("Idempotency-Key", "shared");
    let a = app
        .request(None, request.clone().api_key(app.key("route-worker")))
        .await
        .unwrap();
    let b = app
        .request(None, request.api_key(app.key("key-only")))
        .await
        .unwrap();
    assert_eq!((a.status, b.status), (202, 202));
    assert_ne!(a.json()["id"], b.json()["id"]);
    assert_eq!(app.plan_count().await, 2);
}

#[tokio::test]
async fn concurrent_plans_are_all_stored() {
    let app = std::sync::Arc::new(spawn_app().await);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let request = submit(&plan(&format!("r-{i}"), 5)).api_key(app.key("route-worker"));
            app.request(None, request).await.unwrap().status
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 202);
    }
    assert_eq!(app.plan_count().await, 40);
}
