//! What went wrong, one enum for the whole tool, apart from both the settings and the admin
//! client so that each can name it without the other.

/// What went wrong, each with the exit code scripts can tell apart.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// Settings or files: exit code 2.
    #[error("{0}")]
    Config(String),
    /// The server answered with a refusal or an error (its problem document): exit code 3.
    #[error("{status}: {detail}")]
    Refused {
        status: u16,
        kind: String,
        detail: String,
    },
    /// The server could not be reached, or the TLS handshake failed: exit code 4.
    #[error("{0}")]
    Unreachable(String),
}

impl CtlError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) => 2,
            Self::Refused { .. } => 3,
            Self::Unreachable(_) => 4,
        }
    }
}
