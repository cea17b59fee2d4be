//! The worker's one error type. Every variant carries a sentence an operator can act on, and
//! maps to an exit code that tells configuration errors, refusals and transient failures apart.

use std::process::ExitCode;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Settings, files, input: fix the configuration. Exit code 2.
    #[error("{0}")]
    Config(String),
    /// The server (or the TLS handshake) said no; retrying will not help. Exit code 3.
    #[error("{0}")]
    Refused(String),
    /// The server could not be reached or answered 429/5xx until the attempts ran out. Exit code 4.
    #[error("{0}")]
    Transient(String),
}

impl WorkerError {
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Self::Config(_) => 2,
            Self::Refused(_) => 3,
            Self::Transient(_) => 4,
        })
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_))
    }
}

impl From<crate::routing::InputError> for WorkerError {
    fn from(e: crate::routing::InputError) -> Self {
        Self::Config(e.to_string())
    }
}
