//! Every route × every kind of principal × every migration mode of route-worker, checked
//! against the policy, so no route is reachable by a principal that should not reach it.

use e2e::devpki::{LeafSpec, Usage};
use e2e::{Identity, Request, TestApp, spawn_app};
use serde_json::json;
use time::Duration;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Permission {
    Identify,
    SubmitPlans,
    Administer,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Scope {
    None,
    Plans,
    Admin,
}

enum Credential {
    Nothing,
    Key(String),
    Cert(Identity),
}

struct Principal {
    name: &'static str,
    credential: Credential,
    /// What the policy says this principal is, given route-worker's mode: None = not
    /// authenticated; Some((scope, over a certificate)).
    oracle: fn(&str) -> Option<(Scope, bool)>,
}

fn routes() -> Vec<(
    &'static str,
    &'static str,
    Option<serde_json::Value>,
    Permission,
)> {
    vec![
        (
            "POST",
            "/api/dispatch-plans",
            Some(e2e::plan("authz", 2)),
            Permission::SubmitPlans,
        ),
        (
            "GET",
            "/api/dispatch-plans/00000000-0000-4000-8000-000000000000",
            None,
            Permission::SubmitPlans,
        ),
        ("GET", "/api/whoami", None, Permission::Identify),
        ("GET", "/admin/clients", None, Permission::Administer),
        (
            "GET",
            "/admin/clients/route-worker",
            None,
            Permission::Administer,
        ),
        ("GET", "/admin/migration", None, Permission::Administer),
        ("GET", "/admin/audit", None, Permission::Administer),
        ("GET", "/admin/revocations", None, Permission::Administer),
        (
            "POST",
            "/admin/revocations",
            Some(json!({"fingerprint": "00".repeat(32), "reason": "authz walk"})),
            Permission::Administer,
        ),
        (
            "PUT",
            "/admin/clients/key-only/disabled",
            Some(json!({"disabled": false, "reason": "authz walk"})),
            Permission::Administer,
        ),
        (
            "PUT",
            "/admin/clients/no-scope/mode",
            Some(json!({"mode": "dual", "reason": "authz walk"})),
            Permission::Administer,
        ),
        (
            "POST",
            "/admin/clients/no-scope/api-key",
            Some(json!({"reason": "authz walk"})),
            Permission::Administer,
        ),
    ]
}

fn principals(app: &TestApp) -> Vec<Principal> {
    let partner_spec = LeafSpec::workload("route-worker", Duration::hours(1));
    vec![
        Principal {
            name: "nothing",
            credential: Credential::Nothing,
            oracle: |_| None,
        },
        Principal {
            name: "route-worker key",
            credential: Credential::Key(app.key("route-worker").into()),
            oracle: |mode| (mode != "mtls").then_some((Scope::Plans, false)),
        },
        Principal {
            name: "route-worker certificate",
            credential: Credential::Cert(app.pki.workload("route-worker")),
            oracle: |mode| (mode != "api_key").then_some((Scope::Plans, true)),
        },
        Principal {
            name: "retired key",
            credential: Credential::Key(app.key("retired").into()),
            oracle: |_| None,
        },
        Principal {
            name: "unknown key",
            credential: Credential::Key(e2e::devpki::generate_api_key().unwrap()),
            oracle: |_| None,
        },
        Principal {
            name: "no-scope certificate",
            credential: Credential::Cert(app.pki.issue(
                &app.pki.ca,
                &LeafSpec::new("no-scope", Usage::Client, Duration::hours(1)),
            )),
            oracle: |_| Some((Scope::None, true)),
        },
        Principal {
            name: "unregistered certificate",
            credential: Credential::Cert(app.pki.workload("stranger")),
            oracle: |_| None,
        },
        Principal {
            name: "partner-CA certificate with route-worker's name",
            credential: Credential::Cert(app.pki.issue(&app.pki.second_ca, &partner_spec)),
            oracle: |_| None,
        },
        Principal {
            name: "operator certificate",
            credential: Credential::Cert(app.operator.clone()),
            oracle: |_| Some((Scope::Admin, true)),
        },
    ]
}

fn permitted(identity: (Scope, bool), permission: Permission) -> bool {
    match permission {
        Permission::Identify => true,
        Permission::SubmitPlans => identity.0 == Scope::Plans,
        Permission::Administer => identity.0 == Scope::Admin && identity.1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_every_principal_as_the_policy_says_in_every_mode() {
    let app = spawn_app().await;
    let principals = principals(&app);
    let mut checked = 0;
    for mode in ["api_key", "dual", "mtls"] {
        let flip = json!({ "mode": mode, "reason": "authz walk", "force": true });
        assert_eq!(
            app.admin(Request::put("/admin/clients/route-worker/mode").json(&flip))
                .await
                .status,
            200
        );
        for (method, path, body, permission) in routes() {
            for principal in &principals {
                let mut request = Request::new(method, path);
                if let Some(body) = &body {
                    request = request.json(body);
                }
                let identity = match &principal.credential {
                    Credential::Nothing => None,
                    Credential::Key(key) => {
                        request = request.api_key(key);
                        None
                    }
                    Credential::Cert(cert) => Some(cert),
                };
                let status = app.request(identity, request).await.unwrap().status;
                let expected = match (principal.oracle)(mode) {
                    None => "401",
                    Some(who) if permitted(who, permission) => "allowed",
                    Some(_) => "403",
                };
                let actual = match status {
                    401 => "401",
                    403 => "403",
                    _ => "allowed",
                };
                assert_eq!(
                    actual, expected,
                    "{method} {path} as {} in mode {mode}: status {status}",
                    principal.name
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 3 * routes().len() * principals.len());
}
