//! Where this worker's identity comes from (a PEM pair, or a PKCS#12 file and its password),
//! how it is read into what rustls presents, and how a change of its files is noticed.

use std::path::{Path, PathBuf};

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use secrecy::{ExposeSecret, SecretString};

use crate::configuration::ClientTlsSettings;
use crate::error::WorkerError;

pub(super) fn certificates(
    path: &Path,
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, WorkerError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            WorkerError::Config(format!("cannot read {what} `{}`: {e}", path.display()))
        })?;
    if certs.is_empty() {
        return Err(WorkerError::Config(format!(
            "{what} `{}` holds no certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// Where this worker's identity comes from.
#[derive(Clone)]
pub(super) enum IdentityFiles {
    Pem { cert: PathBuf, key: PathBuf },
    Pkcs12 { file: PathBuf, password: PathBuf },
}

impl IdentityFiles {
    pub(super) fn from_settings(settings: &ClientTlsSettings) -> Result<Option<Self>, WorkerError> {
        match (&settings.cert_file, &settings.key_file, &settings.pkcs12_file, &settings.pkcs12_password_file) {
            (None, None, None, None) => Ok(None),
            (Some(cert), Some(key), None, None) => Ok(Some(Self::Pem { cert: cert.clone(), key: key.clone() })),
            (None, None, Some(file), Some(password)) => Ok(Some(Self::Pkcs12 { file: file.clone(), password: password.clone() })),
            _ => Err(WorkerError::Config(
                "set tls.cert_file and tls.key_file, or tls.pkcs12_file and tls.pkcs12_password_file, or none".into(),
            )),
        }
    }

    pub(super) fn paths(&self) -> [&Path; 2] {
        match self {
            Self::Pem { cert, key } => [cert, key],
            Self::Pkcs12 { file, password } => [file, password],
        }
    }

    pub(super) fn describe(&self) -> String {
        self.paths()
            .iter()
            .map(|p| format!("`{}`", p.display()))
            .collect::<Vec<_>>()
            .join(" and ")
    }

    pub(super) fn digest(&self) -> Vec<u8> {
        let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
        for path in self.paths() {
            digest.update(&std::fs::read(path).unwrap_or_default());
        }
        digest.finish().as_ref().to_vec()
    }

    pub(super) fn load(
        &self,
        provider: &CryptoProvider,
    ) -> Result<(CertifiedKey, i64), WorkerError> {
        let (chain, key) = match self {
            Self::Pem { cert, key } => {
                let chain = certificates(cert, "the client certificate")?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                    WorkerError::Config(format!(
                        "cannot read the client key `{}`: {e}",
                        key.display()
                    ))
                })?;
                (chain, key)
            }
            Self::Pkcs12 { file, password } => {
                let secret = std::fs::read_to_string(password)
                    .map(|p| SecretString::from(p.trim_end_matches(['\n', '\r']).to_owned()))
                    .map_err(|e| {
                        WorkerError::Config(format!(
                            "cannot read the PKCS#12 password file `{}`: {e}",
                            password.display()
                        ))
                    })?;
                let bytes = std::fs::read(file).map_err(|e| {
                    WorkerError::Config(format!(
                        "cannot read the PKCS#12 file `{}`: {e}",
                        file.display()
                    ))
                })?;
                dispatch_tls::pkcs12_identity(&bytes, secret.expose_secret()).map_err(|e| {
                    WorkerError::Config(format!(
                        "`{}`: {e} (the password from `{}`)",
                        file.display(),
                        password.display()
                    ))
                })?
            }
        };
        let not_after = not_after(&chain[0]).ok_or_else(|| {
            WorkerError::Config(format!(
                "{}: the certificate cannot be parsed",
                self.describe()
            ))
        })?;
        let certified = CertifiedKey::from_der(chain, key, provider).map_err(|e| {
            WorkerError::Config(format!(
                "{}: the key does not fit the certificate: {e}",
                self.describe()
            ))
        })?;
        Ok((certified, not_after))
    }
}

pub(super) fn not_after(leaf: &CertificateDer<'_>) -> Option<i64> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    X509Certificate::from_der(leaf)
        .ok()
        .map(|(_, cert)| cert.validity().not_after.timestamp())
}
