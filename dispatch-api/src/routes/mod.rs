//! HTTP handlers, one file per resource. Routing itself is in `startup`.

pub mod admin;
pub mod ops;
pub mod plans;
pub mod whoami;

use actix_web::HttpResponse;

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
