//! The admin API: who may call it, the flip to mtls and its evidence rule, keys, the report.

use e2e::{Request, plan, spawn_app, submit};
use serde_json::json;

#[tokio::test]
async fn admin_call_with_an_api_key_is_refused() {
    let app = spawn_app().await;
    let response = app
        .request(
            None,
            Request::get("/admin/clients").api_key(app.key("route-worker")),
        )
        .await
        .unwrap();
    response.assert_problem(403, "forbidden");
    app.assert_last_refusal("policy_denied").await;
}

#[tokio::test]
async fn admin_call_with_route_workers_certificate_is_403() {
    let app = spawn_app().await;
    let worker = app.pki.workload("route-worker");
    let response = app
        .request(Some(&worker), Request::get("/admin/clients"))
        .await
        .unwrap();
    response.assert_problem(403, "forbidden");
    app.assert_last_refusal("policy_denied").await;
}

#[tokio::test]
async fn admin_call_with_the_operator_certificate_is_200() {
    let app = spawn_app().await;
    let response = app.admin(Request::get("/admin/clients")).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let names: Vec<_> = response.json()["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(
        names,
        [
            "key-only",
            "no-scope",
            "operator",
            "retired",
            "route-worker"
        ]
    );
}

#[tokio::test]
async fn flip_to_mtls_without_certificate_evidence_is_409() {
    let app = spawn_app().await;
    app.request(
        None,
        submit(&plan("r-1", 1)).api_key(app.key("route-worker")),
    )
    .await
    .unwrap();
    let flip = json!({ "mode": "mtls", "reason": "migration" });
    let response = app
        .admin(Request::put("/admin/clients/route-worker/mode").json(&flip))
        .await;
    response.assert_problem(409, "migration-not-ready");
    let client = app.admin(Request::get("/admin/clients/route-worker")).await;
    assert_eq!(client.json()["mode"], "dual");
}

#[tokio::test]
async fn flip_to_mtls_after_a_certificate_request_is_200_and_audited() {
    let app = spawn_app().await;
    let worker = app.pki.workload("route-worker");
    assert_eq!(
        app.request(Some(&worker), submit(&plan("r-1", 1)))
            .await
            .unwrap()
            .status,
        202
    );
    let row = app.migration_row("route-worker").await;
    assert_eq!(row["ready_for_mtls"], true, "{row}");
    assert_eq!(row["usage"]["certificate"]["requests_in_window"], 1);
    let flip = json!({ "mode": "mtls", "reason": "certificate deployed" });
    let response = app
        .admin(Request::put("/admin/clients/route-worker/mode").json(&flip))
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["before"], "dual");
    let change = app
        .audit(Some("route-worker"))
        .await
        .into_iter()
        .find(|e| e["reason"] == "mode_changed")
        .unwrap();
    assert_eq!(
        (change["before"].as_str(), change["after"].as_str()),
        (Some("dual"), Some("mtls"))
    );
    assert!(change["actor"].as_str().unwrap().starts_with("operator"));
    assert_eq!(change["detail"]["note"], "certificate deployed");
}

#[tokio::test]
async fn forced_flip_needs_no_evidence() {
    let app = spawn_app().await;
    let flip = json!({ "mode": "mtls", "reason": "decommissioned key", "force": true });
    assert_eq!(
        app.admin(Request::put("/admin/clients/key-only/mode").json(&flip))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn flip_without_a_reason_is_400() {
    let app = spawn_app().await;
    let flip = json!({ "mode": "dual", "reason": " " });
    app.admin(Request::put("/admin/clients/key-only/mode").json(&flip))
        .await
        .assert_problem(400, "malformed-request");
}

#[tokio::test]
async fn after_the_flip_the_key_is_refused_on_the_next_request_of_the_same_keep_alive_connection() {
    let app = spawn_app().await;
    let mut connection = app.connect(None).await.unwrap();
    let first = connection
        .send(submit(&plan("r-1", 1)).api_key(app.key("route-worker")))
        .await
        .unwrap();
    assert_eq!(first.status, 202);
    let flip = json!({ "mode": "mtls", "reason": "cutover", "force": true });
    assert_eq!(
        app.admin(Request::put("/admin/clients/route-worker/mode").json(&flip))
            .await
            .status,
        200
    );
    let second = connection
        .send(submit(&plan("r-2", 1)).api_key(app.key("route-worker")))
        .await
        .unwrap();
    second.assert_problem(401, "unauthenticated");
    app.assert_last_refusal("key_retired").await;
    assert_eq!(app.plan_count().await, 1);
}

#[tokio::test]
async fn moving_back_from_mtls_is_always_allowed() {
    let app = spawn_app().await;
    let back = json!({ "mode": "dual", "reason": "rollback" });
    assert_eq!(
        app.admin(Request::put("/admin/clients/retired/mode").json(&back))
            .await
            .status,
        200
    );
    let response = app
        .request(None, submit(&plan("r-1", 1)).api_key(app.key("retired")))
        .await
        .unwrap();
    assert_eq!(response.status, 202);
}

#[tokio::test]
async fn rotating_a_key_without_overlap_returns_it_once_and_retires_the_old_one_at_once() {
    let app = spawn_app().await;
    let rotate = app
        .admin(
            Request::post("/admin/clients/key-only/api-key")
                .json(&json!({ "reason": "rotation", "overlap_secs": 0 })),
        )
        .await;
    assert_eq!(rotate.status, 200, "{}", rotate.text());
    let new_key = rotate.json()["api_key"].as_str().unwrap().to_owned();
    let old = app
        .request(None, submit(&plan("r-1", 1)).api_key(app.key("key-only")))
        .await
        .unwrap();
    old.assert_problem(401, "unauthenticated");
    let new = app
        .request(None, submit(&plan("r-1", 1)).api_key(&new_key))
        .await
        .unwrap();
    assert_eq!(new.status, 202);
    // The key is never shown again.
    let client = app
        .admin(Request::get("/admin/clients/key-only"))
        .await
        .text();
    assert!(!client.contains(&new_key));
    let removed = app
        .admin(
            Request::new("DELETE", "/admin/clients/key-only/api-key")
                .json(&json!({ "reason": "done" })),
        )
        .await;
    assert_eq!(removed.status, 200);
    app.request(None, submit(&plan("r-1", 1)).api_key(&new_key))
        .await
        .unwrap()
        .assert_problem(401, "unauthenticated");
    app.assert_last_refusal("key_invalid").await;
}

#[tokio::test]
async fn registering_a_client_binds_its_certificate() {
    let app = spawn_app().await;
    let mut register = json!({
        "name": "billing",
        "mode": "dual",
        "scopes": ["plans:submit"],
        "bindings": [{ "issuer": "O=Dispatch Dev,CN=Dispatch Dev Internal CA", "subject_cn": "billing" }],
        "issue_api_key": true,
        "reason": "new service",
    });
    // Names compare RDN by RDN in the encoded order: the reversed spelling is another name, and
    // the refusal says which CA of the bundle was probably meant.
    let reversed = app
        .admin(Request::post("/admin/clients").json(&register))
        .await;
    reversed.assert_problem(409, "ambiguous-issuer");
    assert!(
        reversed
            .text()
            .contains("CN=Dispatch Dev Internal CA, O=Dispatch Dev"),
        "{}",
        reversed.text()
    );
    register["bindings"][0]["issuer"] = json!("cn = Dispatch Dev Internal CA ,o=Dispatch Dev");
    let response = app
        .admin(Request::post("/admin/clients").json(&register))
        .await;
    assert_eq!(response.status, 201, "{}", response.text());
    let key = response.json()["api_key"].as_str().unwrap().to_owned();
    assert_eq!(
        app.request(None, submit(&plan("r-1", 1)).api_key(&key))
            .await
            .unwrap()
            .status,
        202
    );
    let cert = app.pki.workload("billing");
    let whoami = app
        .request(Some(&cert), Request::get("/api/whoami"))
        .await
        .unwrap();
    assert_eq!(whoami.json()["client"], "billing");
    let again = app
        .admin(Request::post("/admin/clients").json(&register))
        .await;
    again.assert_problem(409, "client-exists");
}

#[tokio::test]
async fn migration_report_says_when_every_client_is_mtls() {
    let app = spawn_app().await;
    let report = app.admin(Request::get("/admin/migration")).await.json();
    assert_eq!(report["all_clients_mtls"], false);
    for name in ["route-worker", "key-only", "no-scope"] {
        let flip = json!({ "mode": "mtls", "reason": "end state", "force": true });
        assert_eq!(
            app.admin(Request::put(&format!("/admin/clients/{name}/mode")).json(&flip))
                .await
                .status,
            200
        );
    }
    let report = app.admin(Request::get("/admin/migration")).await.json();
    assert_eq!(report["all_clients_mtls"], true, "{report}");
    assert_eq!(report["ready_for_required_client_auth"], true);
}
