//! HTTP handlers, one file per resource, the middleware, and the routing table of the HTTPS
//! listener ([`api_routes`]); `startup` mounts it.

pub mod admin;
pub mod body;
pub mod middleware;
pub mod openapi;
pub mod ops;
pub mod plans;
pub mod whoami;

use actix_web::middleware::from_fn;
use actix_web::{HttpResponse, web};

use crate::error::ApiError;

/// Unknown paths: a problem+json 404 (never the framework's plain text).
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

/// Known paths with a method they do not serve.
pub async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}

/// `time` values rendered for people and JSON: RFC 3339, UTC.
pub fn rfc3339(unix: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
}

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

/// The HTTPS routes. Everything here is behind `require_principal`; each handler states its
/// policy through its extractor (`policy`).
pub fn api_routes(config: &mut web::ServiceConfig) {
    let not_allowed = || web::to(method_not_allowed);
    config
        .service(
            web::scope("/api")
                .wrap(from_fn(middleware::require_principal))
                .service(
                    web::resource("/dispatch-plans")
                        .route(web::post().to(plans::submit_plan))
                        .default_service(not_allowed()),
                )
                .service(
                    web::resource("/dispatch-plans/{id}")
                        .route(web::get().to(plans::get_plan))
                        .default_service(not_allowed()),
                )
                .service(
                    web::resource("/whoami")
                        .route(web::get().to(whoami::whoami))
                        .default_service(not_allowed()),
                )
                .default_service(web::to(not_found)),
        )
        .service(
            web::scope("/admin")
                .wrap(from_fn(middleware::require_principal))
                .service(
                    web::resource("/clients")
                        .route(web::get().to(admin::list_clients))
                        .route(web::post().to(admin::register_client))
                        .default_service(not_allowed()),
                )
                .service(
                    web::resource("/clients/{name}")
                        .route(web::get().to(admin::get_client))
                        .default_service(not_allowed()),
                )
                .service(
                    web::resource("/clients/{name}/mode")
                        .route(web::put().to(admin::set_mode))
                        .default_service(not_allowed()),
                )
                .service(
                    web::resource("/clients/{name}/disabled")
                        .route(web::put().to(admin::set_disabled))
                        .default_service(not_allowed()),
                )
                .service(
                    web::resource("/clients/{name}/bindings")
                        .route(web::put().to(admin::set_bindings))
                        .default_service(not_allowed()),
                )
                .service(
                    web::resource("/clients/{name}/api-key")
                        .route(web::post().to(admin::rotate_api_key))
                        .route(web::delete().to(admin::remove_api_key))
                        .default_service(not_allowed()),
                )
                .service(
                    web::resource("/clients/{name}/api-keys/{key_id}")
                        .route(web::delete().to(admin::end_api_key))
                        .default_service(not_allowed()),
                )
                .service(
                    web::resource("/revocations")
                        .route(web::get().to(admin::list_revocations))
                        .route(web::post().to(admin::revoke_certificate))
                        .default_service(not_allowed()),
                )
                .service(
                    web::resource("/migration")
                        .route(web::get().to(admin::migration_report))
                        .default_service(not_allowed()),
                )
                .service(
                    web::resource("/audit")
                        .route(web::get().to(admin::list_audit))
                        .default_service(not_allowed()),
                )
                .service(
                    web::resource("/refusals")
                        .route(web::get().to(admin::list_refusals))
                        .default_service(not_allowed()),
                )
                .default_service(web::to(not_found)),
        );
}
