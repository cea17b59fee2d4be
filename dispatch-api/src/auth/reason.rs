//! The stable reason codes of refusals, and the status each is answered with.

use actix_web::http::StatusCode;
use serde::Serialize;

/// Why a request was refused by authentication or authorization. The code is stable: it is
/// used in the audit log, in `tracing` fields and as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    NoCredentials,
    KeyInvalid,
    KeyRetired,
    /// A key of the client, past its expiry (the end of a rotation's overlap, or its own).
    KeyExpired,
    MethodNotAllowed,
    CertUnmapped,
    IssuerNotAllowed,
    CertAmbiguous,
    CertExpired,
    CertUnreadable,
    CertRevoked,
    CredentialMismatch,
    ClientDisabled,
    PolicyDenied,
}

impl ReasonCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoCredentials => "no_credentials",
            Self::KeyInvalid => "key_invalid",
            Self::KeyRetired => "key_retired",
            Self::KeyExpired => "key_expired",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::CertUnmapped => "cert_unmapped",
            Self::IssuerNotAllowed => "issuer_not_allowed",
            Self::CertAmbiguous => "cert_ambiguous",
            Self::CertExpired => "cert_expired",
            Self::CertUnreadable => "cert_unreadable",
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
