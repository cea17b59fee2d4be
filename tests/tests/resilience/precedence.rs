//! Requests that proved nothing get a bounded share (`limits.unproven`): past the rate they
//! wait their turn, past the longest wait or the connection caps they get 503 `busy` with
//! Retry-After; certificate and valid-key clients are never counted nor held.

use std::time::Duration;

use dispatch_api::configuration::UnprovenSettings;
use e2e::{Request, TestApp, plan, spawn_app_with, submit};

const PLANS: &str = "/api/dispatch-plans";

async fn app_with(unproven: UnprovenSettings) -> TestApp {
    spawn_app_with(move |s| s.limits.unproven = unproven).await
}

fn unproven(rate: u32, max_wait_ms: u64, network_connections: usize) -> UnprovenSettings {
    UnprovenSettings {
        requests_per_sec: 0,
        network_requests_per_sec: rate,
        max_wait_ms,
        max_connections: 0,
        network_max_connections: network_connections,
    }
}

async fn outcome(app: &TestApp, outcome: &str) -> f64 {
    app.metric(&format!(
        "dispatch_unproven_requests_total{{outcome=\"{outcome}\"}}"
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unproven_requests_past_the_network_rate_wait_their_turn_and_are_answered() {
    // One a second: each request after the first waits for its turn (unless answering one
    // took a whole second).
    let app = app_with(unproven(1, 10_000, 0)).await;
    let mut connection = app.connect(None).await.unwrap();
    for _ in 0..3 {
        let response = connection.send(Request::get(PLANS)).await.unwrap();
        response.assert_problem(401, "unauthenticated");
    }
    assert_eq!(outcome(&app, "now").await, 1.0);
    assert_eq!(outcome(&app, "waited").await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unproven_requests_whose_turn_is_past_max_wait_get_503_busy_with_retry_after() {
    // One a second and no wait at all: the second request, sent at once, is shed.
    let app = app_with(unproven(1, 0, 0)).await;
    let mut connection = app.connect(None).await.unwrap();
    let first = connection.send(Request::get(PLANS)).await.unwrap();
    first.assert_problem(401, "unauthenticated");
    let shed = connection.send(Request::get(PLANS)).await.unwrap();
    shed.assert_problem(503, "busy");
    assert_eq!(shed.header("retry-after"), Some("1"));
    // A rate refusal keeps the connection: the next turn comes on it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let later = connection.send(Request::get(PLANS)).await.unwrap();
    later.assert_problem(401, "unauthenticated");
    assert_eq!(outcome(&app, "shed_rate").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_past_the_unproven_connection_cap_gets_503_busy_and_is_closed() {
    let app = app_with(unproven(0, 0, 2)).await;
    let mut counted = Vec::new();
    for _ in 0..2 {
        let mut connection = app.connect(None).await.unwrap();
        let response = connection.send(Request::get(PLANS)).await.unwrap();
        response.assert_problem(401, "unauthenticated");
        counted.push(connection);
    }
    let mut third = app.connect(None).await.unwrap();
    let response = third.send(Request::get(PLANS)).await.unwrap();
    response.assert_problem(503, "busy");
    assert_eq!(response.header("connection"), Some("close"));
    assert!(third.closed_within(Duration::from_secs(5)).await);
    assert_eq!(outcome(&app, "shed_connections").await, 1.0);
    // A counted connection that closes gives its slot back.
    drop(counted.pop());
    let mut answered = false;
    for _ in 0..50 {
        let mut connection = app.connect(None).await.unwrap();
        if connection.send(Request::get(PLANS)).await.unwrap().status == 401 {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered, "a slot came back within 5 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_and_valid_key_clients_are_never_held_by_the_unproven_caps() {
    // One unproven connection at most, one answer a second, no wait.
    let app = app_with(unproven(1, 0, 1)).await;
    let mut stranger = app.connect(None).await.unwrap();
    let response = stranger.send(Request::get(PLANS)).await.unwrap();
    response.assert_problem(401, "unauthenticated");
    let response = stranger.send(Request::get(PLANS)).await.unwrap();
    response.assert_problem(503, "busy");
    let before = outcome(&app, "now").await + outcome(&app, "shed_rate").await;
    // A key client on new connections, and a certificate client, while the caps are full.
    let worker = app.pki.workload("route-worker");
    for i in 0..5 {
        let by_key = app
            .request(
                None,
                submit(&plan(&format!("k-{i}"), 1)).api_key(app.key("route-worker")),
            )
            .await
            .unwrap();
        assert_eq!(by_key.status, 202, "{}", by_key.text());
        let by_certificate = app
            .request(Some(&worker), submit(&plan(&format!("c-{i}"), 1)))
            .await
            .unwrap();
        assert_eq!(by_certificate.status, 202, "{}", by_certificate.text());
    }
    let after = outcome(&app, "now").await
        + outcome(&app, "shed_rate").await
        + outcome(&app, "shed_connections").await
        + outcome(&app, "waited").await;
    assert_eq!(after, before);
    assert_eq!(app.plan_count().await, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_clients_connection_that_once_proved_something_is_not_counted_against_the_cap() {
    let app = app_with(unproven(0, 0, 1)).await;
    let mut stranger = app.connect(None).await.unwrap();
    stranger
        .send(Request::get(PLANS))
        .await
        .unwrap()
        .assert_problem(401, "unauthenticated");
    // A key client's connection: proven by its first request; a later mistake on it (no key)
    // is answered as a refusal, not as a connection past the cap.
    let mut keyed = app.connect(None).await.unwrap();
    let response = keyed
        .send(submit(&plan("k-1", 1)).api_key(app.key("route-worker")))
        .await
        .unwrap();
    assert_eq!(response.status, 202);
    keyed
        .send(Request::get(PLANS))
        .await
        .unwrap()
        .assert_problem(401, "unauthenticated");
    assert_eq!(outcome(&app, "shed_connections").await, 0.0);
}
