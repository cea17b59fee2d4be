//! A migration that cannot lock anyone out: the last way into /admin is kept, bindings can be
//! fixed, readiness for mtls means the whole fleet moved, and the switch to `required` counts
//! disabled clients.

use e2e::{Request, plan, spawn_app, spawn_app_with, submit};
use serde_json::{Value, json};

const DEV_CA: &str = "CN=Dispatch Dev Internal CA, O=Dispatch Dev";

async fn put(app: &e2e::TestApp, path: &str, body: Value) -> e2e::Response {
    app.admin(Request::put(path).json(&body)).await
}

#[tokio::test]
async fn moving_the_last_admin_client_to_api_key_is_refused_as_last_admin() {
    let app = spawn_app().await;
    let response = put(
        &app,
        "/admin/clients/operator/mode",
        json!({"mode": "api_key", "reason": "oops"}),
    )
    .await;
    response.assert_problem(409, "last-admin");
    assert!(
        response
            .text()
            .contains("`operator` is the last client that can reach /admin")
    );
    // Still in.
    assert_eq!(app.admin(Request::get("/admin/clients")).await.status, 200);
}

#[tokio::test]
async fn disabling_the_last_admin_client_is_refused_as_last_admin() {
    let app = spawn_app().await;
    put(
        &app,
        "/admin/clients/operator/disabled",
        json!({"disabled": true, "reason": "oops"}),
    )
    .await
    .assert_problem(409, "last-admin");
    assert_eq!(app.admin(Request::get("/admin/clients")).await.status, 200);
}

#[tokio::test]
async fn removing_the_last_admin_clients_bindings_is_refused_as_last_admin() {
    let app = spawn_app().await;
    put(
        &app,
        "/admin/clients/operator/bindings",
        json!({"bindings": [], "reason": "oops"}),
    )
    .await
    .assert_problem(409, "last-admin");
    assert_eq!(app.admin(Request::get("/admin/clients")).await.status, 200);
}

#[tokio::test]
async fn with_a_second_admin_reachable_by_certificate_the_first_can_be_disabled() {
    let app = spawn_app().await;
    let register = json!({
        "name": "deputy",
        "mode": "mtls",
        "scopes": ["admin"],
        "bindings": [{"issuer": DEV_CA, "subject_cn": "deputy"}],
        "reason": "a second operator",
    });
    assert_eq!(
        app.admin(Request::post("/admin/clients").json(&register))
            .await
            .status,
        201
    );
    let response = put(
        &app,
        "/admin/clients/operator/disabled",
        json!({"disabled": true, "reason": "handing over"}),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.text());
    // The deputy can undo it: the way in was kept.
    let deputy = app.pki.issue(
        &app.pki.ca,
        &e2e::devpki::LeafSpec::new(
            "deputy",
            e2e::devpki::Usage::Client,
            time::Duration::hours(1),
        ),
    );
    let undo = app
        .request(
            Some(&deputy),
            Request::put("/admin/clients/operator/disabled")
                .json(&json!({"disabled": false, "reason": "back"})),
        )
        .await
        .unwrap();
    assert_eq!(undo.status, 200, "{}", undo.text());
}

#[tokio::test]
async fn bindings_can_be_replaced_and_the_change_is_audited_and_applies_at_once() {
    let app = spawn_app().await;
    // key-only is bound by CN `key-only`; its new certificate names `key-only-2`.
    let renamed = app.pki.issue(
        &app.pki.ca,
        &e2e::devpki::LeafSpec::new(
            "key-only-2",
            e2e::devpki::Usage::Client,
            time::Duration::hours(1),
        ),
    );
    let before = app
        .request(Some(&renamed), Request::get("/api/whoami"))
        .await
        .unwrap();
    assert_eq!(before.status, 401);
    app.assert_last_refusal("cert_unmapped").await;
    let response = put(
        &app,
        "/admin/clients/key-only/bindings",
        json!({"bindings": [{"issuer": DEV_CA, "subject_cn": "key-only-2"}], "reason": "renamed certificate"}),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["bindings"][0]["subject_cn"], "key-only-2");
    // key-only is in api_key mode: its certificate is known now, and refused for the mode.
    let after = app
        .request(Some(&renamed), Request::get("/api/whoami"))
        .await
        .unwrap();
    assert_eq!(after.status, 401);
    app.assert_last_refusal("method_not_allowed").await;
    let change = app
        .audit(Some("key-only"))
        .await
        .into_iter()
        .find(|e| e["reason"] == "bindings_changed")
        .expect("audited");
    assert!(
        change["before"].as_str().unwrap().contains("\"key-only\""),
        "{change}"
    );
    assert!(
        change["after"].as_str().unwrap().contains("key-only-2"),
        "{change}"
    );
    assert_eq!(change["detail"]["note"], "renamed certificate");
}

#[tokio::test]
async fn a_binding_that_overlaps_another_clients_is_refused_with_409() {
    let app = spawn_app().await;
    put(
        &app,
        "/admin/clients/key-only/bindings",
        json!({"bindings": [{"issuer": DEV_CA, "subject_cn": "no-scope"}], "reason": "typo"}),
    )
    .await
    .assert_problem(409, "binding-conflict");
}

#[tokio::test]
async fn one_certificate_request_does_not_make_ready_a_client_that_still_uses_its_key() {
    let app = spawn_app_with(|s| s.migration.quiet_period_secs = 3600).await;
    let key = app.key("route-worker").to_owned();
    // Nine instances still send the key; one has its certificate.
    let keyed = app
        .request(None, submit(&plan("by-key", 1)).api_key(&key))
        .await
        .unwrap();
    assert_eq!(keyed.status, 202);
    let worker = app.pki.workload("route-worker");
    let by_cert = app
        .request(Some(&worker), submit(&plan("by-cert", 1)))
        .await
        .unwrap();
    assert_eq!(by_cert.status, 202);
    let row = app.migration_row("route-worker").await;
    assert_eq!(row["ready_for_mtls"], false, "{row}");
    let because = row["not_ready_because"].to_string();
    assert!(
        because.contains("API key was used within the last 3600 s"),
        "{row}"
    );
    let flip = put(
        &app,
        "/admin/clients/route-worker/mode",
        json!({"mode": "mtls", "reason": "too early"}),
    )
    .await;
    flip.assert_problem(409, "migration-not-ready");
    assert!(flip.text().contains("API key was used"), "{}", flip.text());
}

#[tokio::test]
async fn the_report_says_which_evidence_is_missing() {
    let app = spawn_app().await;
    let row = app.migration_row("no-scope").await;
    assert_eq!(row["ready_for_mtls"], false);
    assert!(
        row["not_ready_because"][0]
            .as_str()
            .unwrap()
            .contains("no certificate-authenticated request"),
        "{row}"
    );
}

#[tokio::test]
async fn a_disabled_client_not_on_mtls_blocks_the_switch_to_required() {
    let app = spawn_app().await;
    for name in ["route-worker", "no-scope"] {
        let flip = json!({"mode": "mtls", "reason": "end state", "force": true});
        assert_eq!(
            put(&app, &format!("/admin/clients/{name}/mode"), flip)
                .await
                .status,
            200
        );
    }
    // key-only stays on api_key, disabled: re-enabling it later would cut it off.
    assert_eq!(
        put(
            &app,
            "/admin/clients/key-only/disabled",
            json!({"disabled": true, "reason": "unused"})
        )
        .await
        .status,
        200
    );
    let report = app.admin(Request::get("/admin/migration")).await.json();
    assert_eq!(report["ready_for_required_client_auth"], false, "{report}");
    assert_eq!(report["not_on_mtls"], json!(["key-only"]));
}

#[test]
fn a_clients_file_that_differs_from_the_stored_client_is_logged_naming_the_fields() {
    use e2e::process::{ServerProcess, shipped_clients_file, write_server_config};
    let dir = tempfile::tempdir().unwrap();
    let (pki, _) = e2e::process::dev_pki_server(dir.path());
    let clients = dir.path().join("clients.toml");
    let shipped = std::fs::read_to_string(shipped_clients_file()).unwrap();
    std::fs::write(&clients, &shipped).unwrap();
    let config = write_server_config(dir.path(), &pki, &clients);
    let first = ServerProcess::start(&config, &[]);
    assert!(
        !first
            .logs
            .text()
            .contains("differs from the registered client")
    );
    first.stop();
    // The operator edits the file: a new scope and a fixed binding for route-worker.
    let edited = shipped
        .replacen(
            "scopes = [\"plans:submit\"]",
            "scopes = [\"plans:submit\", \"admin\"]",
            1,
        )
        .replacen(
            "spiffe_id = \"spiffe://dispatch.internal/route-worker\"",
            "subject_cn = \"route-worker\"",
            1,
        );
    assert_ne!(edited, shipped);
    std::fs::write(&clients, edited).unwrap();
    let second = ServerProcess::start(&config, &[]);
    second.wait_for_log("differs from the registered client");
    let logs = second.logs.text();
    let line = logs
        .lines()
        .find(|l| l.contains("differs from the registered client"))
        .unwrap();
    assert!(line.contains("route-worker"), "{line}");
    assert!(line.contains("scopes, bindings"), "{line}");
    assert!(
        !logs.contains("registered clients from the bootstrap file"),
        "nothing was applied"
    );
    second.stop();
}

#[tokio::test]
async fn rebinding_the_operators_own_client_so_its_certificate_no_longer_matches_is_refused_as_last_admin()
 {
    let app = spawn_app().await;
    // A typo: the binding stays, but no longer names the operator's certificate.
    let response = put(
        &app,
        "/admin/clients/operator/bindings",
        json!({"bindings": [{"issuer": DEV_CA, "subject_cn": "operater"}], "reason": "typo"}),
    )
    .await;
    response.assert_problem(409, "last-admin");
    assert_eq!(app.admin(Request::get("/admin/clients")).await.status, 200);
    // A rebinding that still names the operator's certificate is fine.
    let kept = put(
        &app,
        "/admin/clients/operator/bindings",
        json!({"bindings": [{"issuer": DEV_CA, "subject_cn": "operator"}], "reason": "same"}),
    )
    .await;
    assert_eq!(kept.status, 200, "{}", kept.text());
}

#[tokio::test]
async fn revoking_a_certificate_of_the_operators_own_chain_is_refused_as_last_admin() {
    let app = spawn_app().await;
    let ca_fingerprint = e2e::devpki::sha256_hex(&app.pki.ca.cert_der());
    for fingerprint in [app.operator.fingerprint.clone(), ca_fingerprint] {
        let response = app
            .admin(
                Request::post("/admin/revocations")
                    .json(&json!({"fingerprint": fingerprint, "reason": "oops"})),
            )
            .await;
        response.assert_problem(409, "last-admin");
        assert!(
            response.text().contains("the chain you are using"),
            "{}",
            response.text()
        );
    }
    assert_eq!(app.admin(Request::get("/admin/clients")).await.status, 200);
}
