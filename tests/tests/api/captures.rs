//! A registry change is tried against the certificates in use before it is made: no
//! registration or rebinding may capture another client's live certificate, or the operator's
//! own, and `force` never lets it.

use e2e::{Request, TestApp, spawn_app};
use serde_json::{Value, json};

const DEV_CA: &str = "CN=Dispatch Dev Internal CA, O=Dispatch Dev";

async fn register(app: &TestApp, body: Value) -> e2e::Response {
    app.admin(Request::post("/admin/clients").json(&body)).await
}

/// route-worker (bound by its SPIFFE ID) presents its certificate, which also carries the CN
/// `route-worker`: from now on it is a live certificate.
async fn route_worker_is_live(app: &TestApp) -> e2e::Identity {
    let worker = app.pki.workload("route-worker");
    let whoami = app
        .request(Some(&worker), Request::get("/api/whoami"))
        .await
        .unwrap();
    assert_eq!(whoami.status, 200, "{}", whoami.text());
    assert_eq!(whoami.json()["client"], "route-worker");
    worker
}

async fn still_served_as(app: &TestApp, id: &e2e::Identity, client: &str) {
    let whoami = app
        .request(Some(id), Request::get("/api/whoami"))
        .await
        .unwrap();
    assert_eq!(whoami.status, 200, "{}", whoami.text());
    assert_eq!(whoami.json()["client"], client);
}

#[tokio::test]
async fn a_pin_only_registration_of_the_operators_fingerprint_is_409_and_the_operator_still_administers()
 {
    let app = spawn_app().await;
    let response = register(
        &app,
        json!({
            "name": "thief",
            "mode": "mtls",
            "scopes": ["plans:submit"],
            "bindings": [{ "fingerprints": [app.operator.fingerprint] }],
            "reason": "pasted from /api/whoami",
        }),
    )
    .await;
    response.assert_problem(409, "last-admin");
    let detail = response.json()["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains(&app.operator.fingerprint), "{detail}");
    assert_eq!(
        app.admin(Request::get("/admin/clients")).await.status,
        200,
        "the operator still administers"
    );
    assert_eq!(
        app.admin(Request::get("/admin/clients/thief")).await.status,
        404,
        "nothing was registered"
    );
}

#[tokio::test]
async fn a_cn_registration_over_a_spiffe_bound_clients_live_certificate_is_409_and_that_client_is_still_served()
 {
    let app = spawn_app().await;
    let worker = route_worker_is_live(&app).await;
    let response = register(
        &app,
        json!({
            "name": "copycat",
            "mode": "dual",
            "scopes": ["plans:submit"],
            "bindings": [{ "issuer": DEV_CA, "subject_cn": "route-worker" }],
            "reason": "a new worker",
        }),
    )
    .await;
    response.assert_problem(409, "binding-conflict");
    let detail = response.json()["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains("`route-worker`"), "{detail}");
    assert!(detail.contains(&worker.fingerprint), "{detail}");
    still_served_as(&app, &worker, "route-worker").await;
}

#[tokio::test]
async fn rebinding_another_client_onto_a_live_certificate_is_409_even_when_forced() {
    let app = spawn_app().await;
    let worker = route_worker_is_live(&app).await;
    for force in [false, true] {
        let response = app
            .admin(
                Request::put("/admin/clients/key-only/bindings").json(&json!({
                    "bindings": [{ "issuer": DEV_CA, "subject_cn": "route-worker" }],
                    "reason": "typo",
                    "force": force,
                })),
            )
            .await;
        response.assert_problem(409, "binding-conflict");
        assert!(
            response.json()["detail"]
                .as_str()
                .unwrap()
                .contains(&worker.fingerprint),
            "{}",
            response.text()
        );
    }
    still_served_as(&app, &worker, "route-worker").await;
}

#[tokio::test]
async fn rebinding_a_client_away_from_its_own_live_certificate_is_409_unless_forced() {
    let app = spawn_app().await;
    let worker = route_worker_is_live(&app).await;
    let moved = |force: bool| {
        Request::put("/admin/clients/route-worker/bindings").json(&json!({
            "bindings": [{ "issuer": DEV_CA, "spiffe_id": "spiffe://dispatch.internal/route-worker-v2" }],
            "reason": "moving to a new identity",
            "force": force,
        }))
    };
    let refused = app.admin(moved(false)).await;
    refused.assert_problem(409, "binding-conflict");
    assert!(refused.json()["detail"].as_str().unwrap().contains("force"));
    still_served_as(&app, &worker, "route-worker").await;
    let forced = app.admin(moved(true)).await;
    assert_eq!(forced.status, 200, "{}", forced.text());
    let after = app
        .request(Some(&worker), Request::get("/api/whoami"))
        .await
        .unwrap();
    assert_eq!(after.status, 401, "{}", after.text());
}

#[tokio::test]
async fn pinning_a_client_to_its_renewed_certificate_is_409_while_an_instance_still_presents_the_old_one()
 {
    let app = spawn_app().await;
    // A renewal under way: one instance still on the old certificate, the other already on the
    // renewed one, which is the last route-worker presented.
    let old = route_worker_is_live(&app).await;
    let renewed = route_worker_is_live(&app).await;
    assert_ne!(old.fingerprint, renewed.fingerprint);
    let pinned = |force: bool| {
        Request::put("/admin/clients/route-worker/bindings").json(&json!({
            "bindings": [{
                "issuer": DEV_CA,
                "spiffe_id": "spiffe://dispatch.internal/route-worker",
                "fingerprints": [renewed.fingerprint],
            }],
            "reason": "pin the renewed certificate",
            "force": force,
        }))
    };
    let refused = app.admin(pinned(false)).await;
    refused.assert_problem(409, "binding-conflict");
    let detail = refused.json()["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains("route-worker"), "{detail}");
    still_served_as(&app, &old, "route-worker").await;
    still_served_as(&app, &renewed, "route-worker").await;
    // Keeping the old certificate out on purpose is what `force` is for.
    let forced = app.admin(pinned(true)).await;
    assert_eq!(forced.status, 200, "{}", forced.text());
    still_served_as(&app, &renewed, "route-worker").await;
    let after = app
        .request(Some(&old), Request::get("/api/whoami"))
        .await
        .unwrap();
    assert_eq!(after.status, 401, "{}", after.text());
}

/// route-worker presents its certificate with curl (HTTP/2) and gets `reason`: refused, but
/// the certificate is still route-worker's by its bindings.
async fn route_worker_refused_with_curl(app: &TestApp, reason: &str) -> e2e::Identity {
    let worker = app.pki.workload("route-worker");
    let whoami = [e2e::stock::StockRequest::new(
        "GET",
        "/api/whoami",
        String::new(),
    )];
    let answers = e2e::stock::run(app, e2e::stock::Client::CurlHttp2, Some(&worker), &whoami).await;
    assert!(
        answers[0].status == 401 || answers[0].status == 403,
        "{answers:?}"
    );
    app.assert_last_refusal(reason).await;
    worker
}

/// Registering `copycat` (a CN binding that names route-worker's certificate too) is 409,
/// naming that certificate.
async fn copycat_is_refused_naming(app: &TestApp, worker: &e2e::Identity) {
    let response = register(app, copycat()).await;
    response.assert_problem(409, "binding-conflict");
    let detail = response.json()["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains(&worker.fingerprint), "{detail}");
}

fn copycat() -> Value {
    json!({
        "name": "copycat",
        "mode": "dual",
        "scopes": ["plans:submit"],
        "bindings": [{ "issuer": DEV_CA, "subject_cn": "route-worker" }],
        "reason": "a new worker",
    })
}

#[tokio::test]
async fn a_registration_capturing_a_certificate_refused_for_its_clients_api_key_mode_is_409() {
    let app = spawn_app().await;
    let flip = json!({ "mode": "api_key", "reason": "certificates on hold", "force": true });
    let flipped = app
        .admin(Request::put("/admin/clients/route-worker/mode").json(&flip))
        .await;
    assert_eq!(flipped.status, 200, "{}", flipped.text());
    let worker = route_worker_refused_with_curl(&app, "method_not_allowed").await;
    copycat_is_refused_naming(&app, &worker).await;
    // Back in dual, it is route-worker's still, not ambiguous.
    let back = json!({ "mode": "dual", "reason": "certificates back", "force": true });
    let flipped = app
        .admin(Request::put("/admin/clients/route-worker/mode").json(&back))
        .await;
    assert_eq!(flipped.status, 200, "{}", flipped.text());
    still_served_as(&app, &worker, "route-worker").await;
}

#[tokio::test]
async fn a_registration_capturing_a_certificate_of_a_disabled_client_is_409() {
    let app = spawn_app().await;
    let disabled = app
        .admin(
            Request::put("/admin/clients/route-worker/disabled")
                .json(&json!({ "disabled": true, "reason": "paused" })),
        )
        .await;
    assert_eq!(disabled.status, 200, "{}", disabled.text());
    let worker = route_worker_refused_with_curl(&app, "client_disabled").await;
    copycat_is_refused_naming(&app, &worker).await;
}

#[tokio::test]
async fn a_certificate_presented_before_the_evidence_window_is_live_until_it_expires() {
    let app = spawn_app().await;
    let worker = route_worker_is_live(&app).await;
    app.state.recorder.flush().await;
    // A weekly job: its last run was long before the evidence window, its certificate is
    // still valid.
    let month_ago = time::OffsetDateTime::now_utc().unix_timestamp() - 30 * 86_400;
    const BACK: &str =
        "UPDATE presented_certificates SET last_seen = $1 WHERE client = 'route-worker'";
    let moved = match &app.state.pool {
        dispatch_api::storage::Backend::Sqlite(pool) => sqlx::query(BACK)
            .bind(month_ago)
            .execute(pool)
            .await
            .unwrap()
            .rows_affected(),
        dispatch_api::storage::Backend::Postgres(pool) => sqlx::query(BACK)
            .bind(month_ago)
            .execute(pool)
            .await
            .unwrap()
            .rows_affected(),
    };
    assert_eq!(moved, 1);
    copycat_is_refused_naming(&app, &worker).await;
}

#[tokio::test]
async fn dropping_the_binding_of_an_instance_behind_another_instances_many_renewals_is_409() {
    let app = spawn_app().await;
    let spiffe = "spiffe://dispatch.internal/route-worker";
    let bindings = |issuers: &[&str]| {
        let bindings: Vec<Value> = issuers
            .iter()
            .map(|issuer| json!({ "issuer": issuer, "spiffe_id": spiffe }))
            .collect();
        Request::put("/admin/clients/route-worker/bindings").json(&json!({
            "bindings": bindings,
            "reason": "one instance on the partner CA",
        }))
    };
    let partner = "CN=Partner CA, O=Partner";
    let added = app.admin(bindings(&[DEV_CA, partner])).await;
    assert_eq!(added.status, 200, "{}", added.text());
    // One instance, on another network, with its certificate from the partner CA...
    let elsewhere = app.pki.issue(
        &app.pki.second_ca,
        &e2e::devpki::LeafSpec::workload("route-worker", time::Duration::hours(1)),
    );
    let source = std::net::IpAddr::from([127, 0, 2, 1]);
    let seen = app
        .request_from(source, Some(&elsewhere), Request::get("/api/whoami"))
        .await
        .unwrap();
    assert_eq!(seen.json()["client"], "route-worker", "{}", seen.text());
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    // ... and another renewing ten times since (short-lived certificates, ACME).
    for _ in 0..10 {
        route_worker_is_live(&app).await;
    }
    // Dropping the partner CA's binding would cut that instance off: its certificate is still
    // evidence, however many certificates the other instance went through meanwhile.
    let dropped = app.admin(bindings(&[DEV_CA])).await;
    dropped.assert_problem(409, "binding-conflict");
    let detail = dropped.json()["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains(&elsewhere.fingerprint), "{detail}");
    let still = app
        .request_from(source, Some(&elsewhere), Request::get("/api/whoami"))
        .await
        .unwrap();
    assert_eq!(still.json()["client"], "route-worker", "{}", still.text());
}
