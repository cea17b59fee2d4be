//! The OpenAPI 3.1 document of both listeners, generated from the handlers' annotations: the
//! paths are those of [`routes::endpoints`](super::endpoints), the routes the listeners serve. Served
//! at `/openapi.json` on the operations listener and checked in as `openapi.json`: the test
//! `the_checked_in_openapi_document_is_the_generated_one` fails when they differ
//! (`UPDATE_OPENAPI=1` rewrites the file).

use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "dispatch-api",
        description = "Route plans over one HTTPS listener that serves API-key and mutual-TLS clients side by side, \
                       and the admin API that moves each client from its key to its certificate. Errors are \
                       RFC 9457 problem documents with stable `type` values (`urn:dispatch-api:problem:...`). \
                       The operations listener (plain HTTP, bound to 127.0.0.1 by default) serves /healthz, /readyz, \
                       /metrics and this document."
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "plans", description = "route plans: stored durably before 202"),
        (name = "identity", description = "how the server sees the caller"),
        (name = "admin", description = "the operator's API: admin scope, over a client certificate only"),
        (name = "operations", description = "the operations listener"),
    )
)]
pub struct ApiDoc;

/// The two ways in: a client certificate (mutual TLS) and, during the migration, an API key.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "mutual_tls",
            SecurityScheme::MutualTls {
                description: Some(
                    "a client certificate bound to one registered client (admin: the only way)"
                        .into(),
                ),
                extensions: None,
            },
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Api-Key",
                "a client's API key, while the client is in api_key or dual mode",
            ))),
        );
    }
}

/// The answers every admin route can give whatever it does (401 without the operator's
/// certificate, 403 for any other caller, 503 when storage fails): added here once rather
/// than written into each handler's annotation.
struct AdminErrors;

impl Modify for AdminErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let problem = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/problem+json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/admin/") {
                continue;
            }
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                let responses = &mut operation.responses.responses;
                for (status, description) in [
                    ("401", "no operator certificate"),
                    (
                        "403",
                        "not an admin client over a certificate (a key never works here)",
                    ),
                    ("503", "storage unavailable; retry after Retry-After"),
                ] {
                    responses
                        .entry(status.to_owned())
                        .or_insert_with(|| problem(description).into());
                }
            }
        }
    }
}

/// The document as served and checked in: every endpoint's operation, then the answers every
/// admin route shares.
pub fn document() -> String {
    let mut api = ApiDoc::openapi();
    for endpoint in super::endpoints() {
        endpoint.document(&mut api);
    }
    AdminErrors.modify(&mut api);
    api.to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
        + "\n"
}

/// `GET /openapi.json` on the operations listener.
pub async fn serve() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok()
        .content_type("application/json")
        .body(document())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checked_in_openapi_document_is_the_generated_one() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi.json");
        let generated = document();
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "openapi.json differs from the handlers' annotations: run \
             `UPDATE_OPENAPI=1 cargo test -p dispatch-api openapi` and commit the file"
        );
    }

    #[test]
    fn every_route_is_documented_once_at_its_path_with_each_of_its_methods() {
        let document: serde_json::Value = serde_json::from_str(&document()).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        let endpoints = super::super::endpoints();
        for endpoint in &endpoints {
            for method in &endpoint.methods {
                let method = serde_json::to_value(method).unwrap();
                let method = method.as_str().unwrap().to_owned();
                assert!(
                    seen.insert((endpoint.path.clone(), method.clone())),
                    "two handlers claim {method} {}",
                    endpoint.path
                );
                let operation = &document["paths"][&endpoint.path][&method];
                assert!(
                    operation.is_object(),
                    "{method} {} undocumented",
                    endpoint.path
                );
            }
        }
        // Both listeners' routes, the document's paths no more.
        assert!(seen.len() >= 20, "{seen:?}");
        let documented: usize = document["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|item| item.as_object().unwrap().len())
            .sum();
        assert_eq!(documented, seen.len());
    }

    /// A JSON answer with a type of its own is one a client can read by type (dispatchctl does,
    /// through dispatch-types); `Object` would say nothing of its fields.
    #[test]
    fn every_json_success_answer_is_a_named_type() {
        let document: serde_json::Value = serde_json::from_str(&document()).unwrap();
        let mut answers = 0;
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                for (status, response) in operation["responses"].as_object().unwrap() {
                    let Some(json) = response["content"].get("application/json") else {
                        continue;
                    };
                    if !status.starts_with('2') {
                        continue;
                    }
                    answers += 1;
                    let schema = &json["schema"]["$ref"];
                    assert!(
                        schema
                            .as_str()
                            .is_some_and(|s| s.starts_with("#/components/schemas/")),
                        "{method} {path} {status}: {}",
                        json["schema"]
                    );
                }
            }
        }
        assert!(answers >= 15, "{answers}");
    }
}
