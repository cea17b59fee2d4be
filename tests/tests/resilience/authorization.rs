//! Every route × every kind of principal × every migration mode of route-worker, checked
//! against the policy, so no route is reachable by a principal that should not reach it. The
//! principals include clients that hold more than one credential or scope: an admin client in
//! `dual` mode (its key must never reach `/admin`), a client with both scopes, a disabled admin.

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

/// What the policy sees of an authenticated principal.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Who {
    plans: bool,
    admin: bool,
    over_certificate: bool,
}

const fn who(plans: bool, admin: bool, over_certificate: bool) -> Who {
    Who {
        plans,
        admin,
        over_certificate,
    }
}

enum Credential {
    Nothing,
    Key(String),
    Cert(Identity),
}

struct Principal {
    name: &'static str,
    credential: Credential,
    /// What the policy says this principal is, given route-worker's mode; or, when it is not
    /// authenticated, the reason code its 401 carries (none for a stranger).
    oracle: fn(&str) -> Result<Who, Option<&'static str>>,
}

/// The key id the route walk names: no key's (its 404 is still past the policy).
const PLACEHOLDER_KEY_ID: &str = "000000000000";

/// The client every `{name}` of the walk names: one of its own, none of the principals, so
/// that what the walk does to it (its mode, keys, bindings, disabling it) changes no principal.
const WALK_TARGET: &str = "walk-target";

/// The value the walk puts in each path parameter.
fn path_value(parameter: &str) -> &'static str {
    match parameter {
        "name" => WALK_TARGET,
        "key_id" => PLACEHOLDER_KEY_ID,
        "id" => "00000000-0000-4000-8000-000000000000",
        other => {
            panic!("the walk has no value for the path parameter `{other}`: add it to `path_value`")
        }
    }
}

/// `path` (as documented: `/admin/clients/{name}/mode`) with the walk's value in each parameter.
fn walked_path(path: &str) -> String {
    let mut walked = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').expect("a closed parameter") + open;
        walked += &rest[..open];
        walked += path_value(&rest[open + 1..close]);
        rest = &rest[close + 1..];
    }
    walked + rest
}

fn method(name: &str) -> &'static str {
    match name {
        "get" => "GET",
        "post" => "POST",
        "put" => "PUT",
        "delete" => "DELETE",
        "patch" => "PATCH",
        other => panic!("a method the walk does not know: {other}"),
    }
}

/// One step of the walk: a route's method, the path requested, the body sent, and the
/// permission its tag asks for.
type Step = (&'static str, String, Option<serde_json::Value>, Permission);

/// The walk: every route of the HTTPS listener the OpenAPI document documents (generated from
/// the route table the listener serves), requested at its path with the walk's parameters and
/// with the example its request type documents, so a new route is walked without a line here.
async fn routes(app: &TestApp) -> Vec<Step> {
    let document = app.ops_get("/openapi.json").await.json();
    let mut walk = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        if !(path.starts_with("/api/") || path.starts_with("/admin/")) {
            continue;
        }
        for (name, operation) in item.as_object().unwrap() {
            let permission = match operation["tags"][0].as_str() {
                Some("plans") => Permission::SubmitPlans,
                Some("identity") => Permission::Identify,
                Some("admin") => Permission::Administer,
                other => panic!("{name} {path}: no permission for the tag {other:?}"),
            };
            let request_body = &operation["requestBody"];
            let body = request_body["content"]["application/json"]["schema"]["$ref"]
                .as_str()
                .map(|reference| {
                    let schema = reference.trim_start_matches("#/components/schemas/");
                    let example = &document["components"]["schemas"][schema]["examples"][0];
                    assert!(
                        example.is_object(),
                        "{name} {path}: its request `{schema}` documents no example \
                         (`#[schema(examples(...))]`), which the walk sends"
                    );
                    example.clone()
                });
            assert!(
                request_body.is_null() || body.is_some(),
                "{name} {path}: a request body that is not a named JSON schema, which the walk \
                 cannot send: {request_body}"
            );
            walk.push((method(name), walked_path(path), body, permission));
        }
    }
    assert!(walk.len() >= 16, "{walk:?}");
    walk
}

/// The clients of the extra principals, registered through the admin API: an admin client in
/// `dual` mode with a key, a client with both scopes in `dual` mode with a key, and a disabled
/// admin client; and the walk's target, with a key. Returns the principals' keys.
async fn register_multi_credential_clients(app: &TestApp) -> [String; 2] {
    let target = json!({
        "name": WALK_TARGET,
        "mode": "api_key",
        "scopes": ["plans:submit"],
        "issue_api_key": true,
        "reason": "authz walk",
    });
    let response = app
        .admin(Request::post("/admin/clients").json(&target))
        .await;
    assert_eq!(response.status, 201, "{}", response.text());
    let mut keys = Vec::new();
    for (name, scopes) in [
        ("deputy", json!(["admin"])),
        ("all-rounder", json!(["plans:submit", "admin"])),
    ] {
        let response = app
            .admin(Request::post("/admin/clients").json(&json!({
                "name": name,
                "mode": "dual",
                "scopes": scopes,
                "bindings": [{ "issuer": e2e::devpki::DEV_CA_SUBJECT, "subject_cn": name }],
                "issue_api_key": true,
                "reason": "authz walk",
            })))
            .await;
        assert_eq!(response.status, 201, "{}", response.text());
        keys.push(response.json()["api_key"].as_str().unwrap().to_owned());
    }
    let response = app
        .admin(Request::post("/admin/clients").json(&json!({
            "name": "retired-admin",
            "mode": "mtls",
            "scopes": ["admin"],
            "bindings": [{ "issuer": e2e::devpki::DEV_CA_SUBJECT, "subject_cn": "retired-admin" }],
            "reason": "authz walk",
        })))
        .await;
    assert_eq!(response.status, 201, "{}", response.text());
    let disable = json!({ "disabled": true, "reason": "authz walk" });
    let response = app
        .admin(Request::put("/admin/clients/retired-admin/disabled").json(&disable))
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    [keys.remove(0), keys.remove(0)]
}

fn principals(app: &TestApp, [deputy_key, all_rounder_key]: [String; 2]) -> Vec<Principal> {
    let partner_spec = LeafSpec::workload("route-worker", Duration::hours(1));
    // The partner CA (trusted) signs an intermediate that copies the dev CA's name exactly.
    let forged_operator = app.pki.issue_under(
        &app.pki.forged_intermediate(),
        &LeafSpec::new("operator", Usage::Client, Duration::hours(1)),
    );
    // CN no-scope and route-worker's SPIFFE ID: two clients at once.
    let mut both_spec = LeafSpec::workload("no-scope", Duration::hours(1));
    both_spec.uris = vec!["spiffe://dispatch.internal/route-worker".into()];
    vec![
        Principal {
            name: "nothing",
            credential: Credential::Nothing,
            oracle: |_| Err(None),
        },
        Principal {
            name: "route-worker key",
            credential: Credential::Key(app.key("route-worker").into()),
            oracle: |mode| match mode {
                "mtls" => Err(Some("key_retired")),
                _ => Ok(who(true, false, false)),
            },
        },
        Principal {
            name: "route-worker certificate",
            credential: Credential::Cert(app.pki.workload("route-worker")),
            oracle: |mode| match mode {
                "api_key" => Err(Some("method_not_allowed")),
                _ => Ok(who(true, false, true)),
            },
        },
        Principal {
            name: "retired key",
            credential: Credential::Key(app.key("retired").into()),
            oracle: |_| Err(Some("key_retired")),
        },
        Principal {
            name: "unknown key",
            credential: Credential::Key(e2e::devpki::generate_api_key().unwrap()),
            oracle: |_| Err(None),
        },
        Principal {
            name: "no-scope certificate",
            credential: Credential::Cert(app.pki.issue(
                &app.pki.ca,
                &LeafSpec::new("no-scope", Usage::Client, Duration::hours(1)),
            )),
            oracle: |_| Ok(who(false, false, true)),
        },
        Principal {
            name: "unregistered certificate",
            credential: Credential::Cert(app.pki.workload("stranger")),
            oracle: |_| Err(Some("cert_unmapped")),
        },
        Principal {
            name: "partner-CA certificate with route-worker's name",
            credential: Credential::Cert(app.pki.issue(&app.pki.second_ca, &partner_spec)),
            oracle: |_| Err(Some("issuer_not_allowed")),
        },
        Principal {
            name: "operator's name under a partner intermediate copying the dev CA's name",
            credential: Credential::Cert(forged_operator),
            oracle: |_| Err(Some("issuer_not_allowed")),
        },
        Principal {
            name: "certificate naming two clients",
            credential: Credential::Cert(app.pki.issue(&app.pki.ca, &both_spec)),
            oracle: |_| Err(Some("cert_ambiguous")),
        },
        Principal {
            name: "operator certificate",
            credential: Credential::Cert(app.operator.clone()),
            oracle: |_| Ok(who(false, true, true)),
        },
        Principal {
            name: "admin client's key",
            credential: Credential::Key(deputy_key),
            oracle: |_| Ok(who(false, true, false)),
        },
        Principal {
            name: "admin client's certificate",
            credential: Credential::Cert(app.pki.workload("deputy")),
            oracle: |_| Ok(who(false, true, true)),
        },
        Principal {
            name: "plans and admin client's key",
            credential: Credential::Key(all_rounder_key),
            oracle: |_| Ok(who(true, true, false)),
        },
        Principal {
            name: "plans and admin client's certificate",
            credential: Credential::Cert(app.pki.workload("all-rounder")),
            oracle: |_| Ok(who(true, true, true)),
        },
        Principal {
            name: "disabled admin client's certificate",
            credential: Credential::Cert(app.pki.workload("retired-admin")),
            // Authenticated, then refused as disabled (403) on every route.
            oracle: |_| Ok(who(false, false, true)),
        },
    ]
}

fn permitted(who: Who, permission: Permission) -> bool {
    match permission {
        Permission::Identify => true,
        Permission::SubmitPlans => who.plans,
        Permission::Administer => who.admin && who.over_certificate,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_every_principal_as_the_policy_says_in_every_mode() {
    let app = spawn_app().await;
    let keys = register_multi_credential_clients(&app).await;
    let principals = principals(&app, keys);
    let walk = routes(&app).await;
    let mut checked = 0;
    for mode in ["api_key", "dual", "mtls"] {
        let flip = json!({ "mode": mode, "reason": "authz walk", "force": true });
        assert_eq!(
            app.admin(Request::put("/admin/clients/route-worker/mode").json(&flip))
                .await
                .status,
            200
        );
        for (method, path, body, permission) in walk.clone() {
            for principal in &principals {
                let mut request = Request::new(method, &path);
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
                let response = app.request(identity, request).await.unwrap();
                let status = response.status;
                let disabled = principal.name.starts_with("disabled");
                let expected = match (principal.oracle)(mode) {
                    Err(reason) => {
                        if status == 401 {
                            assert_eq!(
                                response.json()["reason"].as_str(),
                                reason,
                                "{method} {path} as {} in mode {mode}",
                                principal.name
                            );
                        }
                        "401"
                    }
                    Ok(_) if disabled => "403",
                    Ok(who) if permitted(who, permission) => "allowed",
                    Ok(_) => "403",
                };
                let actual = match status {
                    401 => "401",
                    403 => "403",
                    // Past the policy, but the example itself refused: the walk would not be
                    // reaching the route's work.
                    400 | 415 | 422 => panic!(
                        "{method} {path} as {}: the example is refused ({status}): {}",
                        principal.name,
                        response.text()
                    ),
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
    assert_eq!(checked, 3 * walk.len() * principals.len());
}

/// The admin API is for certificates only: an admin-scoped client that still holds a valid key
/// (mode `dual`) is refused with that key on every admin route, as `policy_denied`, and served
/// on the same routes with its certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_clients_valid_key_is_refused_on_every_admin_route_and_its_certificate_is_served()
{
    let app = spawn_app().await;
    let [deputy_key, _] = register_multi_credential_clients(&app).await;
    let deputy = app.pki.workload("deputy");
    let admin_routes: Vec<_> = routes(&app)
        .await
        .into_iter()
        .filter(|(.., permission)| *permission == Permission::Administer)
        .collect();
    assert!(admin_routes.len() >= 9);
    for (method, path, body, _) in &admin_routes {
        // Ending a key is served only for a live one: the target holds one before each route
        // (one it was given, or another), and the walk's placeholder id becomes its id.
        let key_id = live_key_id(&app).await;
        let path = match path.strip_suffix(PLACEHOLDER_KEY_ID) {
            Some(prefix) => format!("{prefix}{key_id}"),
            None => path.to_string(),
        };
        let request = || {
            let request = Request::new(method, &path);
            match body {
                Some(body) => request.json(body),
                None => request,
            }
        };
        let refused = app
            .request(None, request().api_key(&deputy_key))
            .await
            .unwrap();
        refused.assert_problem(403, "forbidden");
        assert_eq!(
            refused.json()["reason"],
            "policy_denied",
            "{method} {path} with the admin client's key"
        );
        let served = app.request(Some(&deputy), request()).await.unwrap();
        assert!(
            served.status < 400,
            "{method} {path} with the admin client's certificate: {} {}",
            served.status,
            served.text()
        );
    }
    // Each refusal is in the audit log under the client's name.
    let audit = app.audit(Some("deputy")).await;
    let denied = audit
        .iter()
        .filter(|event| event["reason"] == "policy_denied")
        .count();
    assert_eq!(denied, admin_routes.len(), "{audit:#?}");
}

/// The id of a live key of the walk's target, issued (with no overlap) when it holds none.
async fn live_key_id(app: &TestApp) -> String {
    let target = format!("/admin/clients/{WALK_TARGET}");
    let live = |client: &serde_json::Value| {
        client["api_keys"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|key| key["state"] != "expired")
            .map(|key| key["id"].as_str().unwrap().to_owned())
    };
    if let Some(id) = live(&app.admin(Request::get(&target)).await.json()) {
        return id;
    }
    let rotation = json!({ "reason": "authz walk", "overlap_secs": 0 });
    let issued = app
        .admin(Request::post(&format!("{target}/api-key")).json(&rotation))
        .await;
    assert_eq!(issued.status, 200, "{}", issued.text());
    live(&app.admin(Request::get(&target)).await.json()).expect("the key just issued")
}
