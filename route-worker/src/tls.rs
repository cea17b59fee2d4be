//! The worker's rustls client: trusts ONLY the configured internal CA, keeps hostname
//! verification, presents its certificate when configured. There is no way to turn verification
//! off, not even for tests (tests trust their generated CA).

use std::path::Path;
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::configuration::ClientTlsSettings;
use crate::error::WorkerError;

fn certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, WorkerError> {
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

pub fn client_config(settings: &ClientTlsSettings) -> Result<ClientConfig, WorkerError> {
    let mut roots = RootCertStore::empty();
    for ca in certificates(&settings.ca_file, "the CA bundle")? {
        roots.add(ca).map_err(|e| {
            WorkerError::Config(format!(
                "the CA bundle `{}`: {e}",
                settings.ca_file.display()
            ))
        })?;
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| WorkerError::Config(format!("TLS setup: {e}")))?
            .with_root_certificates(roots);
    let mut config = match (&settings.cert_file, &settings.key_file) {
        (Some(cert_file), Some(key_file)) => {
            let chain = certificates(cert_file, "the client certificate")?;
            warn_if_expiring(&chain[0], cert_file);
            let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| {
                WorkerError::Config(format!(
                    "cannot read the client key `{}`: {e}",
                    key_file.display()
                ))
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                WorkerError::Config(format!(
                    "the client key `{}` does not fit the certificate `{}`: {e}",
                    key_file.display(),
                    cert_file.display()
                ))
            })?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(WorkerError::Config(
                "set both tls.cert_file and tls.key_file, or neither".into(),
            ));
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Warns when our own certificate has expired or expires within a week: the server would
/// refuse it, and the sentence here is easier to act on than a handshake alert.
fn warn_if_expiring(leaf: &CertificateDer<'_>, path: &Path) {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let Ok((_, cert)) = X509Certificate::from_der(leaf) else {
        return;
    };
    let left =
        cert.validity().not_after.timestamp() - time::OffsetDateTime::now_utc().unix_timestamp();
    if left <= 0 {
        tracing::warn!(file = %path.display(), "our client certificate has EXPIRED: the server will refuse it; renew it");
    } else if left < 7 * 24 * 3600 {
        tracing::warn!(file = %path.display(), seconds_left = left, "our client certificate expires within a week; renew it");
    }
}
