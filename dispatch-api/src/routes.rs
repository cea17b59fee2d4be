//! HTTP handlers, one file per resource, each with its routes (`endpoints()`, see
//! [`endpoint`]); the middleware; and the HTTPS listener's routes ([`api_routes`]), which
//! `startup` mounts.

pub mod admin;
pub mod body;
pub mod endpoint;
pub mod middleware;
pub mod openapi;
pub mod ops;
pub mod plans;
pub mod whoami;

use actix_web::middleware::from_fn;
use actix_web::{HttpResponse, web};

use crate::error::ApiError;
use endpoint::Endpoint;

/// Unknown paths: a problem+json 404 (never the framework's plain text).
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

/// Known paths with a method they do not serve.
pub async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}

pub use dispatch_types::rfc3339;

/// JSON bodies: bounded, and every failure a problem response.
pub fn json_config(limit: usize, body_timeout_secs: u64) -> web::JsonConfig {
    use actix_web::error::JsonPayloadError;
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(move |error, _| {
            match error {
                JsonPayloadError::Overflow { limit }
                | JsonPayloadError::OverflowKnownLength { limit, .. } => {
                    ApiError::PayloadTooLarge { limit }
                }
                JsonPayloadError::ContentType => ApiError::UnsupportedMediaType,
                JsonPayloadError::Payload(e) if body::is_timeout(&e) => ApiError::BodyTimeout {
                    secs: body_timeout_secs,
                },
                JsonPayloadError::Deserialize(e) => {
                    ApiError::BadRequest(format!("the body is not a valid plan: {e}"))
                }
                other => ApiError::BadRequest(other.to_string()),
            }
            .into()
        })
}

/// The HTTPS routes: `/api` and `/admin`, each behind `require_principal`, each handler stating
/// its policy through its extractor (`policy`). Every route is an [`Endpoint`] of its module.
pub fn api_routes(config: &mut web::ServiceConfig) {
    config
        .service(scope(
            "/api",
            &[plans::endpoints(), whoami::endpoints()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>(),
        ))
        .service(scope("/admin", &admin::endpoints()));
}

/// Every route of the HTTPS listener, then the documented ones of the operations listener:
/// what the OpenAPI document documents.
pub fn endpoints() -> Vec<Endpoint> {
    [
        plans::endpoints(),
        whoami::endpoints(),
        admin::endpoints(),
        ops::endpoints(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The endpoints under `prefix`, authenticated; a path outside them is a 404 problem, a known
/// path with another method a 405 problem.
fn scope(prefix: &str, endpoints: &[Endpoint]) -> impl actix_web::dev::HttpServiceFactory + use<> {
    let scope = web::scope(prefix).wrap(from_fn(middleware::require_principal));
    endpoint::resources(prefix, endpoints, || web::to(method_not_allowed))
        .fold(scope, |scope, resource| scope.service(resource))
        .default_service(web::to(not_found))
}
