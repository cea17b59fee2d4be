//! [`ApiError`], the one error type of the HTTP surface: the web layer's mapping of every domain
//! error (each domain module keeps its own error type) to an RFC 9457
//! `application/problem+json` response with a stable `type`, in one place.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::auth::{ReasonCode, Refusal};
use crate::plans::FieldError;
use crate::registry::RegistryError;
use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("refused: {}", .0.reason.as_str())]
    Refused(Box<Refusal>),
    #[error("the plan is invalid")]
    InvalidPlan(Vec<FieldError>),
    #[error("the request is malformed: {0}")]
    BadRequest(String),
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the client sent no more of the request body within {secs} s")]
    BodyTimeout { secs: u64 },
    #[error("the request body must be application/json")]
    UnsupportedMediaType,
    #[error("the request headers are larger than {limit} bytes")]
    HeadersTooLarge { limit: usize },
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{detail}")]
    Conflict {
        kind: &'static str,
        title: &'static str,
        detail: String,
    },
    #[error("the idempotency key was already used for a different request")]
    IdempotencyKeyReused,
    #[error("storage is unavailable")]
    Unavailable(#[source] StorageError),
    /// A request that proved nothing, past the share such requests get (`precedence`).
    #[error(
        "too many requests without a certificate or a valid key from your network; retry after \
         {retry_after_secs} s, or present a client certificate or an X-Api-Key"
    )]
    Busy { retry_after_secs: u64 },
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn refused(reason: ReasonCode) -> Self {
        Self::Refused(Box::new(Refusal {
            reason,
            client: None,
            method: None,
            detail: serde_json::json!({}),
            readmits: None,
            evidence: None,
        }))
    }

    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            Self::Refused(refusal) => Some(refusal),
            _ => None,
        }
    }

    /// The stable problem `type` suffix and its title.
    fn kind(&self) -> (&'static str, &'static str) {
        match self {
            Self::Refused(r) if r.reason.status() == StatusCode::FORBIDDEN => {
                ("forbidden", "Forbidden")
            }
            Self::Refused(_) => ("unauthenticated", "Not authenticated"),
            Self::InvalidPlan(_) => ("invalid-plan", "The plan is invalid"),
            Self::BadRequest(_) => ("malformed-request", "The request is malformed"),
            Self::PayloadTooLarge { .. } => ("payload-too-large", "The request body is too large"),
            Self::BodyTimeout { .. } => ("body-timeout", "The request body did not arrive in time"),
            Self::UnsupportedMediaType => ("unsupported-media-type", "Unsupported media type"),
            Self::HeadersTooLarge { .. } => ("headers-too-large", "Request headers too large"),
            Self::NotFound => ("not-found", "Not found"),
            Self::MethodNotAllowed => ("method-not-allowed", "Method not allowed"),
            Self::Conflict { kind, title, .. } => (kind, title),
            Self::IdempotencyKeyReused => ("idempotency-key-reused", "Idempotency key reused"),
            Self::Unavailable(_) => ("unavailable", "Service unavailable"),
            Self::Busy { .. } => ("busy", "Busy with callers that proved who they are"),
            Self::Internal(_) => ("internal", "Internal error"),
        }
    }

    /// What the caller may learn of why it was refused. A stranger (no credentials, an unknown
    /// key) learns nothing beyond 401. A caller holding a key we issued or a certificate from our
    /// CA gets the code, so a worker can say "your key is retired: configure the certificate"
    /// instead of "401"; the full detail stays in the operator's audit log.
    fn caller_reason(&self) -> Option<&'static str> {
        match self {
            Self::Refused(r)
                if !matches!(r.reason, ReasonCode::NoCredentials | ReasonCode::KeyInvalid) =>
            {
                Some(r.reason.as_str())
            }
            _ => None,
        }
    }

    fn public_detail(&self) -> Option<String> {
        match self {
            Self::Refused(r) if r.reason.status() == StatusCode::FORBIDDEN => {
                Some("this client may not perform this request".into())
            }
            Self::Refused(_) => Some(
                "present a client certificate or an X-Api-Key that this service accepts for your client".into(),
            ),
            // Internal causes stay in the log.
            Self::Unavailable(_) => Some("storage is unavailable; retry later".into()),
            Self::Internal(_) => None,
            other => Some(other.to_string()),
        }
    }
}

/// The RFC 9457 body of every error answer (`application/problem+json`).
#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    /// The refusal's reason code, for callers that proved possession of something we issued
    /// (a key we know, a certificate from our CA); never for a stranger (see `caller_reason`).
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [FieldError]>,
}

pub const PROBLEM_TYPE_PREFIX: &str = "urn:dispatch-api:problem:";

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Refused(r) => r.reason.status(),
            Self::InvalidPlan(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable(_) | Self::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let (kind, title) = self.kind();
        let problem = Problem {
            kind: format!("{PROBLEM_TYPE_PREFIX}{kind}"),
            title,
            status: status.as_u16(),
            detail: self.public_detail(),
            reason: self.caller_reason(),
            errors: match self {
                Self::InvalidPlan(errors) => Some(errors),
                _ => None,
            },
        };
        let mut response = HttpResponse::build(status);
        response.insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        ));
        match self {
            Self::Unavailable(_) => {
                response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
            }
            Self::Busy { retry_after_secs } => {
                response.insert_header((header::RETRY_AFTER, *retry_after_secs));
            }
            _ => {}
        }
        response.body(serde_json::to_string(&problem).unwrap_or_default())
    }
}

impl From<StorageError> for ApiError {
    fn from(error: StorageError) -> Self {
        Self::Unavailable(error)
    }
}

impl From<RegistryError> for ApiError {
    fn from(error: RegistryError) -> Self {
        match error {
            RegistryError::NotFound(_) | RegistryError::KeyNotFound { .. } => ApiError::NotFound,
            RegistryError::AlreadyExists(name) => ApiError::Conflict {
                kind: "client-exists",
                title: "Client already registered",
                detail: format!("a client named `{name}` is already registered"),
            },
            RegistryError::BindingConflict { .. } => ApiError::Conflict {
                kind: "binding-conflict",
                title: "Certificate binding overlaps another client's",
                detail: error.to_string(),
            },
            RegistryError::OverlapRunning { .. } => ApiError::Conflict {
                kind: "key-overlap-running",
                title: "An earlier rotation's overlap is still running",
                detail: error.to_string(),
            },
            RegistryError::AmbiguousIssuer { .. } => ApiError::Conflict {
                kind: "ambiguous-issuer",
                title: "Issuer stands for more than one CA key",
                detail: error.to_string(),
            },
            RegistryError::CapturesLiveCertificate { .. }
            | RegistryError::CutsOffLiveCertificate { .. } => ApiError::Conflict {
                kind: "binding-conflict",
                title: "The change would take a live certificate from its client",
                detail: error.to_string(),
            },
            RegistryError::CapturesOwnCertificate { .. } => ApiError::Conflict {
                kind: "last-admin",
                title: "The certificate you are using",
                detail: error.to_string(),
            },
            RegistryError::LastAdmin { .. } => ApiError::Conflict {
                kind: "last-admin",
                title: "The last way into /admin",
                detail: error.to_string(),
            },
            RegistryError::OwnCertificate { .. } => ApiError::Conflict {
                kind: "last-admin",
                title: "The certificate you are using",
                detail: error.to_string(),
            },
            RegistryError::TryoutStopped => {
                ApiError::Internal(RegistryError::TryoutStopped.to_string())
            }
            RegistryError::Storage(e) => e.into(),
        }
    }
}
