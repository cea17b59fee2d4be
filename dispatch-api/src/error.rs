//! Errors. [`ApiError`] is the one error type of the HTTP surface; it maps, in one place, to an
//! RFC 9457 `application/problem+json` response with a stable `type`. [`StartupError`] names the
//! file or setting at fault so an operator can fix it without reading code.

use std::path::PathBuf;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::plans::FieldError;

/// Why a request was refused by authentication or authorization. The code is stable: it is
/// used in the audit log, in `tracing` fields and as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    NoCredentials,
    KeyInvalid,
    KeyRetired,
    MethodNotAllowed,
    CertUnmapped,
    IssuerNotAllowed,
    CertRevoked,
    CredentialMismatch,
    ClientDisabled,
    PolicyDenied,
}

impl ReasonCode {
    pub const ALL: [ReasonCode; 10] = [
        Self::NoCredentials,
        Self::KeyInvalid,
        Self::KeyRetired,
        Self::MethodNotAllowed,
        Self::CertUnmapped,
        Self::IssuerNotAllowed,
        Self::CertRevoked,
        Self::CredentialMismatch,
        Self::ClientDisabled,
        Self::PolicyDenied,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoCredentials => "no_credentials",
            Self::KeyInvalid => "key_invalid",
            Self::KeyRetired => "key_retired",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::CertUnmapped => "cert_unmapped",
            Self::IssuerNotAllowed => "issuer_not_allowed",
            Self::CertRevoked => "cert_revoked",
            Self::CredentialMismatch => "credential_mismatch",
            Self::ClientDisabled => "client_disabled",
            Self::PolicyDenied => "policy_denied",
        }
    }

    /// 401 when we do not accept who the caller claims to be, 403 when we do but it may not.
    pub fn status(self) -> StatusCode {
        match self {
            Self::ClientDisabled | Self::PolicyDenied => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

/// A refusal with what is known of the caller, for the audit log. The caller sees only the
/// coarse problem type; the reason and the detail go to the operator.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub reason: ReasonCode,
    pub client: Option<String>,
    pub method: Option<crate::identity::AuthMethod>,
    pub detail: serde_json::Value,
}

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
    #[error("storage is unavailable: {0}")]
    Unavailable(#[source] StorageError),
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
            Self::UnsupportedMediaType => ("unsupported-media-type", "Unsupported media type"),
            Self::HeadersTooLarge { .. } => ("headers-too-large", "Request headers too large"),
            Self::NotFound => ("not-found", "Not found"),
            Self::MethodNotAllowed => ("method-not-allowed", "Method not allowed"),
            Self::Conflict { kind, title, .. } => (kind, title),
            Self::IdempotencyKeyReused => ("idempotency-key-reused", "Idempotency key reused"),
            Self::Unavailable(_) => ("unavailable", "Service unavailable"),
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

/// The RFC 9457 body.
#[derive(Serialize)]
struct Problem<'a> {
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
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
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
        if matches!(self, Self::Unavailable(_)) {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
        }
        response.body(serde_json::to_string(&problem).unwrap_or_default())
    }
}

/// A storage failure. Cheap to clone so that one failed group commit can answer every waiter.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    #[error("database: {0}")]
    Database(Arc<sqlx::Error>),
    /// The plan writer's own connection (rusqlite) failed.
    #[error("database: {0}")]
    Write(Arc<String>),
    #[error("the plan writer has stopped")]
    WriterStopped,
    #[error("a stored {0} could not be read")]
    Corrupt(&'static str),
}

impl From<sqlx::Error> for StorageError {
    fn from(error: sqlx::Error) -> Self {
        crate::storage::file_faults::note(&error);
        Self::Database(Arc::new(error))
    }
}

impl From<StorageError> for ApiError {
    fn from(error: StorageError) -> Self {
        tracing::error!(error = %error, "storage error");
        Self::Unavailable(error)
    }
}

/// Why the service could not start. Each variant names the file or setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("configuration: {0}")]
    Settings(String),
    #[error("{what} `{}`: {source}", path.display())]
    File {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} `{}`: {detail}", path.display())]
    Pem {
        path: PathBuf,
        what: &'static str,
        detail: String,
    },
    #[error("the private key `{}` does not match the certificate `{}`", key.display(), cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("the server certificate `{}` expired at {not_after}", path.display())]
    CertificateExpired { path: PathBuf, not_after: String },
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("database `{}`: {detail}", path.display())]
    Database { path: PathBuf, detail: String },
    #[error("bootstrap clients file: {0}")]
    Bootstrap(#[from] crate::registry::BootstrapError),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: String,
        #[source]
        source: std::io::Error,
    },
}
