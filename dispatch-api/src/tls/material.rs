//! What the listener's TLS is made of, read from files in one go: the server's chain and key
//! (PEM or PKCS#12), the client CA bundle and the CRLs. Every failure names the file at fault;
//! a reload that fails keeps the old material (see [`super::ReloadableTls::reload`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::Error as RustlsError;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

use super::error::MaterialError;
use super::trust::Trust;
use crate::configuration::TlsSettings;
use crate::identity::PeerCertificate;

/// Private key material must be readable by its owner only; anything else is worth a warning
/// that names the file (the service still starts: the mount may be outside its control).
fn warn_if_exposed(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(metadata) = std::fs::metadata(path)
            && metadata.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                file = %path.display(),
                mode = format!("{:o}", metadata.permissions().mode() & 0o777),
                "private key material is readable by group or others; chmod 600 it"
            );
        }
    }
}

fn read_file(path: &Path, what: &'static str) -> Result<Vec<u8>, MaterialError> {
    std::fs::read(path).map_err(|source| MaterialError::File {
        path: path.to_owned(),
        what,
        source,
    })
}

fn pem_error(path: &Path, what: &'static str, detail: impl std::fmt::Display) -> MaterialError {
    MaterialError::Pem {
        path: path.to_owned(),
        what,
        detail: detail.to_string(),
    }
}

/// Reads every certificate of a PEM file, naming the file on any failure.
fn load_certificates(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, MaterialError> {
    let bytes = read_file(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, what, e))?;
    if certs.is_empty() {
        return Err(pem_error(path, what, "no CERTIFICATE block found"));
    }
    Ok(certs)
}

/// Every CRL of the files, PEM or DER, each with the file it came from (parsed in `Trust`).
fn load_crls(paths: &[PathBuf]) -> Result<Vec<(PathBuf, Vec<u8>)>, MaterialError> {
    const WHAT: &str = "certificate revocation list";
    let mut crls = Vec::new();
    for path in paths {
        let bytes = read_file(path, WHAT)?;
        if bytes.starts_with(b"-----BEGIN") {
            let parsed = CertificateRevocationListDer::pem_slice_iter(&bytes)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| pem_error(path, WHAT, e))?;
            if parsed.is_empty() {
                return Err(pem_error(path, WHAT, "no X509 CRL block found"));
            }
            crls.extend(parsed.into_iter().map(|crl| (path.clone(), crl.to_vec())));
        } else {
            crls.push((path.clone(), bytes));
        }
    }
    Ok(crls)
}

/// The server's chain and key, and the files they came from (for error messages).
struct ServerKey {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_path: PathBuf,
    key_path: PathBuf,
}

/// The server's certificate chain and key, from PEM files or a PKCS#12 file.
fn load_server_key(settings: &TlsSettings) -> Result<ServerKey, MaterialError> {
    match (
        &settings.cert_file,
        &settings.key_file,
        &settings.pkcs12_file,
    ) {
        (Some(cert_file), Some(key_file), None) => {
            let chain = load_certificates(cert_file, "server certificate")?;
            warn_if_exposed(key_file);
            let bytes = read_file(key_file, "server private key")?;
            let key = PrivateKeyDer::from_pem_slice(&bytes)
                .map_err(|e| pem_error(key_file, "server private key", e))?;
            Ok(ServerKey {
                chain,
                key,
                cert_path: cert_file.clone(),
                key_path: key_file.clone(),
            })
        }
        (None, None, Some(p12)) => load_pkcs12(settings, p12),
        _ => Err(MaterialError::Settings(
            "set tls.cert_file and tls.key_file (PEM), or tls.pkcs12_file and tls.pkcs12_password_file",
        )),
    }
}

fn load_pkcs12(settings: &TlsSettings, p12: &Path) -> Result<ServerKey, MaterialError> {
    const WHAT: &str = "server PKCS#12 file";
    let password_file = settings
        .pkcs12_password_file
        .as_ref()
        .ok_or(MaterialError::Settings(
            "tls.pkcs12_file needs tls.pkcs12_password_file (a file holding the password)",
        ))?;
    let password = std::fs::read_to_string(password_file)
        .map(|p| SecretString::from(p.trim_end_matches(['\n', '\r']).to_owned()))
        .map_err(|source| MaterialError::File {
            path: password_file.clone(),
            what: "PKCS#12 password file",
            source,
        })?;
    warn_if_exposed(p12);
    warn_if_exposed(password_file);
    let bytes = read_file(p12, WHAT)?;
    let (chain, key) =
        dispatch_tls::pkcs12_identity(&bytes, password.expose_secret()).map_err(|e| {
            pem_error(
                p12,
                WHAT,
                format!("{e} (the password from `{}`)", password_file.display()),
            )
        })?;
    Ok(ServerKey {
        chain,
        key,
        cert_path: p12.to_owned(),
        key_path: p12.to_owned(),
    })
}

/// Everything the listener's TLS is made of, loaded and checked together.
pub struct TlsMaterial {
    pub key: Arc<CertifiedKey>,
    pub server_not_after: OffsetDateTime,
    pub server_subject: String,
    /// The client CA bundle and CRLs: who can complete a handshake, and as whom.
    pub trust: Arc<Trust>,
    /// Digest of the CA bundle and CRL bytes: a change means a change of trust.
    pub(super) trust_digest: Vec<u8>,
}

impl TlsMaterial {
    pub fn load(
        settings: &TlsSettings,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Self, MaterialError> {
        let ServerKey {
            chain,
            key,
            cert_path,
            key_path,
        } = load_server_key(settings)?;
        let leaf = PeerCertificate::from_der(&chain[0])
            .map_err(|detail| pem_error(&cert_path, "server certificate", detail))?;
        if leaf.not_after <= OffsetDateTime::now_utc() {
            return Err(MaterialError::CertificateExpired {
                path: cert_path,
                not_after: leaf.not_after.to_string(),
            });
        }
        let key = CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
            RustlsError::InconsistentKeys(_) => MaterialError::KeyMismatch {
                cert: cert_path.clone(),
                key: key_path.clone(),
            },
            other => pem_error(&key_path, "server private key", other),
        })?;

        let ca_path = &settings.client_ca_file;
        let ca_certs = load_certificates(ca_path, "client CA bundle")?;
        let crls = load_crls(&settings.crl_files)?;
        let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
        ca_certs.iter().for_each(|c| digest.update(c));
        crls.iter().for_each(|(_, c)| digest.update(c));
        let trust = Trust::load(
            ca_path,
            &ca_certs,
            crls,
            provider.signature_verification_algorithms,
        )?;
        Ok(Self {
            key: Arc::new(key),
            server_not_after: leaf.not_after,
            server_subject: leaf.subject.to_string(),
            trust: Arc::new(trust),
            trust_digest: digest.finish().as_ref().to_vec(),
        })
    }
}

/// SHA-256 over the path and contents of every TLS file (missing files count as empty), so a
/// Kubernetes symlink swap, an in-place rewrite or a new file all count as a change.
pub(super) fn files_digest(settings: &TlsSettings) -> Vec<u8> {
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    for path in settings.files() {
        digest.update(path.as_os_str().as_encoded_bytes());
        digest.update(&std::fs::read(path).unwrap_or_default());
    }
    digest.finish().as_ref().to_vec()
}
