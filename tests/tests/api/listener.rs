//! The listener as a whole: required client certificates, restarts, problem+json everywhere.

use dispatch_api::configuration::ClientAuth;
use e2e::{Request, plan, spawn_app, spawn_app_with, submit};

#[tokio::test]
async fn required_client_auth_refuses_a_handshake_without_a_certificate() {
    let app = spawn_app_with(|s| s.tls.client_auth = ClientAuth::Required).await;
    let outcome = match app.connect(None).await {
        Ok(mut connection) => connection
            .send(submit(&plan("r-1", 1)).api_key(app.key("route-worker")))
            .await
            .map(|r| r.status),
        Err(error) => Err(error),
    };
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
