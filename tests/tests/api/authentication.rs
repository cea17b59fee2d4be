use e2e::{Request, plan, spawn_app, submit};

#[tokio::test]
async fn valid_route_worker_certificate_is_accepted_and_the_plan_stored() {
    let app = spawn_app().await;
    let worker = app.pki.workload("route-worker");
    let response = app
        .request(Some(&worker), submit(&plan("r-1", 3)))
        .await
        .unwrap();
    assert_eq!(response.status, 202, "{}", response.text());
    let id = response.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        response.header("location"),
        Some(format!("/api/dispatch-plans/{id}").as_str())
    );
    assert_eq!(app.plan_count().await, 1);
    // Stored with the client and method that submitted it, readable by that client.
    let stored = app
        .request(
            Some(&worker),
            Request::get(&format!("/api/dispatch-plans/{id}")),
        )
        .await
        .unwrap();
    assert_eq!(stored.status, 200);
    assert_eq!(stored.json()["client"], "route-worker");
    assert_eq!(stored.json()["auth_method"], "certificate");
    assert_eq!(stored.json()["plan"]["stops"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn no_certificate_and_no_key_is_401_no_credentials() {
    let app = spawn_app().await;
    let response = app.request(None, submit(&plan("r-1", 1))).await.unwrap();
    response.assert_problem(401, "unauthenticated");
    app.assert_last_refusal("no_credentials").await;
    assert_eq!(app.plan_count().await, 0);
}

#[tokio::test]
async fn valid_key_of_an_api_key_mode_client_is_accepted() {
    let app = spawn_app().await;
    let response = app
        .request(None, submit(&plan("r-1", 1)).api_key(app.key("key-only")))
        .await
        .unwrap();
    assert_eq!(response.status, 202, "{}", response.text());
    assert_eq!(app.plan_count().await, 1);
}

#[tokio::test]
async fn valid_key_of_a_dual_mode_client_is_accepted() {
    let app = spawn_app().await;
    let response = app
        .request(
            None,
            submit(&plan("r-1", 1)).api_key(app.key("route-worker")),
        )
        .await
        .unwrap();
    assert_eq!(response.status, 202, "{}", response.text());
    let whoami = app
        .request(
            None,
            Request::get("/api/whoami").api_key(app.key("route-worker")),
        )
        .await
        .unwrap();
    assert_eq!(whoami.json()["method"], "api_key");
    assert_eq!(whoami.json()["mode"], "dual");
}

#[tokio::test]
async fn key_of_an_mtls_client_is_401_key_retired() {
    let app = spawn_app().await;
    let response = app
        .request(None, submit(&plan("r-1", 1)).api_key(app.key("retired")))
        .await
        .unwrap();
    response.assert_problem(401, "unauthenticated");
    app.assert_last_refusal("key_retired").await;
    assert_eq!(app.plan_count().await, 0);
    assert_eq!(
        app.metric("dispatch_auth_refusals_total{reason=\"key_retired\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn unknown_key_is_401_key_invalid() {
    let app = spawn_app().await;
    let unknown = e2e::devpki::generate_api_key().unwrap();
    let response = app
        .request(None, submit(&plan("r-1", 1)).api_key(&unknown))
        .await
        .unwrap();
    response.assert_problem(401, "unauthenticated");
    app.assert_last_refusal("key_invalid").await;
    // The refusal names neither the key nor anything that would reconstruct it.
    let events = app.audit(None).await;
    assert!(!events.iter().any(|e| e.to_string().contains(&unknown)));
    let counts = app.refusal_counts().await;
    assert!(
        counts.iter().any(|c| c["reason"] == "key_invalid"),
        "{counts:?}"
    );
    assert!(!counts.iter().any(|c| c.to_string().contains(&unknown)));
}

#[tokio::test]
async fn two_api_key_headers_are_key_invalid() {
    let app = spawn_app().await;
    let request = submit(&plan("r-1", 1))
        .api_key(app.key("key-only"))
        .api_key(app.key("key-only"));
    app.request(None, request)
        .await
        .unwrap()
        .assert_problem(401, "unauthenticated");
    app.assert_last_refusal("key_invalid").await;
}

#[tokio::test]
async fn a_key_in_the_query_string_is_never_read() {
    let app = spawn_app().await;
    let path = format!(
        "/api/whoami?api_key={}&x-api-key={}",
        app.key("key-only"),
        app.key("key-only")
    );
    app.request(None, Request::get(&path))
        .await
        .unwrap()
        .assert_problem(401, "unauthenticated");
    app.assert_last_refusal("no_credentials").await;
}

#[tokio::test]
async fn trusted_certificate_with_an_unregistered_name_is_cert_unmapped() {
    let app = spawn_app().await;
    let stranger = app.pki.workload("stranger");
    let response = app
        .request(Some(&stranger), submit(&plan("r-1", 1)))
        .await
        .unwrap();
    response.assert_problem(401, "unauthenticated");
    app.assert_last_refusal("cert_unmapped").await;
    assert_eq!(app.plan_count().await, 0);
}

#[tokio::test]
async fn certificate_from_a_second_ca_in_the_bundle_that_the_binding_does_not_name_is_issuer_not_allowed()
 {
    let app = spawn_app().await;
    // Same SPIFFE ID and CN as route-worker, but signed by the partner CA, which the bundle
    // trusts for the handshake and route-worker's binding does not name.
    let spec = e2e::devpki::LeafSpec::workload("route-worker", time::Duration::hours(1));
    let impostor = app.pki.issue(&app.pki.second_ca, &spec);
    let response = app
        .request(Some(&impostor), submit(&plan("r-1", 1)))
        .await
        .unwrap();
    response.assert_problem(401, "unauthenticated");
    app.assert_last_refusal("issuer_not_allowed").await;
}

#[tokio::test]
async fn certificate_of_one_client_with_the_key_of_another_is_credential_mismatch() {
    let app = spawn_app().await;
    let worker = app.pki.workload("route-worker");
    let request = submit(&plan("r-1", 1)).api_key(app.key("key-only"));
    app.request(Some(&worker), request)
        .await
        .unwrap()
        .assert_problem(401, "unauthenticated");
    app.assert_last_refusal("credential_mismatch").await;
    assert_eq!(app.plan_count().await, 0);
}

#[tokio::test]
async fn certificate_and_own_key_together_authenticate_by_certificate() {
    let app = spawn_app().await;
    let worker = app.pki.workload("route-worker");
    let whoami = app
        .request(
            Some(&worker),
            Request::get("/api/whoami").api_key(app.key("route-worker")),
        )
        .await
        .unwrap();
    assert_eq!(whoami.status, 200);
    assert_eq!(whoami.json()["method"], "certificate");
    assert_eq!(
        whoami.json()["certificate"]["spiffe_ids"][0],
        "spiffe://dispatch.internal/route-worker"
    );
    assert_eq!(
        whoami.json()["certificate"]["fingerprint_sha256"],
        worker.fingerprint
    );
}

#[tokio::test]
async fn certificate_of_an_api_key_mode_client_is_method_not_allowed() {
    let app = spawn_app().await;
    let cert = app.pki.workload("key-only");
    app.request(Some(&cert), submit(&plan("r-1", 1)))
        .await
        .unwrap()
        .assert_problem(401, "unauthenticated");
    app.assert_last_refusal("method_not_allowed").await;
}

#[tokio::test]
async fn authenticated_client_without_plans_submit_is_403_policy_denied() {
    let app = spawn_app().await;
    let response = app
        .request(None, submit(&plan("r-1", 1)).api_key(app.key("no-scope")))
        .await
        .unwrap();
    response.assert_problem(403, "forbidden");
    app.assert_last_refusal("policy_denied").await;
    // It is still authenticated: whoami answers.
    let whoami = app
        .request(
            None,
            Request::get("/api/whoami").api_key(app.key("no-scope")),
        )
        .await
        .unwrap();
    assert_eq!(whoami.json()["client"], "no-scope");
}

#[tokio::test]
async fn another_clients_plan_is_not_found() {
    let app = spawn_app().await;
    let created = app
        .request(None, submit(&plan("r-1", 1)).api_key(app.key("key-only")))
        .await
        .unwrap();
    let location = created.header("location").unwrap().to_owned();
    let other = app
        .request(
            None,
            Request::get(&location).api_key(app.key("route-worker")),
        )
        .await
        .unwrap();
    other.assert_problem(404, "not-found");
    let own = app
        .request(None, Request::get(&location).api_key(app.key("key-only")))
        .await
        .unwrap();
    assert_eq!(own.status, 200);
}

#[tokio::test]
async fn disabled_client_is_403_client_disabled() {
    let app = spawn_app().await;
    let response = app
        .admin(
            Request::put("/admin/clients/key-only/disabled")
                .json(&serde_json::json!({"disabled": true, "reason": "test"})),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    app.request(None, submit(&plan("r-1", 1)).api_key(app.key("key-only")))
        .await
        .unwrap()
        .assert_problem(403, "forbidden");
    app.assert_last_refusal("client_disabled").await;
}

#[tokio::test]
async fn revoked_fingerprint_is_refused_on_the_next_request() {
    let app = spawn_app().await;
    let worker = app.pki.workload("route-worker");
    let mut connection = app.connect(Some(&worker)).await.unwrap();
    assert_eq!(
        connection
            .send(Request::get("/api/whoami"))
            .await
            .unwrap()
            .status,
        200
    );
    let revoke =
        serde_json::json!({ "fingerprint": worker.fingerprint, "reason": "laptop stolen" });
    assert_eq!(
        app.admin(Request::post("/admin/revocations").json(&revoke))
            .await
            .status,
        201
    );
    // Same keep-alive connection, next request: refused.
    let response = connection.send(submit(&plan("r-1", 1))).await.unwrap();
    response.assert_problem(401, "unauthenticated");
    app.assert_last_refusal("cert_revoked").await;
    assert_eq!(app.plan_count().await, 0);
}
