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
