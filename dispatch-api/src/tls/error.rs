//! Why TLS material could not be loaded, apart from both the files (`material`) and the trust
//! (`trust`) that fail with it, so that neither has to import the other for it.

use std::path::PathBuf;

use rustls::Error as RustlsError;

/// Why TLS material could not be loaded. Each variant names the file or setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum MaterialError {
    #[error("configuration: {0}")]
    Settings(&'static str),
    #[error("{what} `{}`", path.display())]
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
    #[error("TLS setup")]
    Rustls(#[source] RustlsError),
}
