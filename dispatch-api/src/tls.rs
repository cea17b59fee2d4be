//! rustls for the one HTTPS listener: the server certificate, the client CA bundle and CRLs, a
//! client verifier that logs and counts why handshakes fail, and `on_connect`, which parses the
//! peer's leaf certificate once per connection.

use std::any::Any;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use actix_tls::accept::rustls_0_23::TlsStream;
use actix_web::dev::Extensions;
use actix_web::rt::net::TcpStream;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error as TlsError, RootCertStore,
    ServerConfig, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use time::OffsetDateTime;

use crate::configuration::{ClientAuth, TlsSettings};
use crate::error::StartupError;
use crate::identity::{ConnectionIdentity, PeerCertificate};
use crate::telemetry::Metrics;

/// The one crypto provider of the workspace (ring), passed explicitly everywhere.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads every certificate of a PEM file, naming the file on any failure.
pub fn load_certificates(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, StartupError> {
    read_file(path, what)?;
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| StartupError::Pem {
            path: path.to_owned(),
            what,
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(StartupError::Pem {
            path: path.to_owned(),
            what,
            detail: "no CERTIFICATE block found".into(),
        });
    }
    Ok(certs)
}

fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, StartupError> {
    const WHAT: &str = "server private key";
    read_file(path, WHAT)?;
    PrivateKeyDer::from_pem_file(path).map_err(|e| StartupError::Pem {
        path: path.to_owned(),
        what: WHAT,
        detail: e.to_string(),
    })
}

fn load_crls(
    paths: &[std::path::PathBuf],
) -> Result<Vec<CertificateRevocationListDer<'static>>, StartupError> {
    const WHAT: &str = "certificate revocation list";
    let mut crls = Vec::new();
    for path in paths {
        let bytes = read_file(path, WHAT)?;
        if bytes.starts_with(b"-----BEGIN") {
            for crl in CertificateRevocationListDer::pem_slice_iter(&bytes) {
                crls.push(crl.map_err(|e| StartupError::Pem {
                    path: path.clone(),
                    what: WHAT,
                    detail: e.to_string(),
                })?);
            }
        } else {
            crls.push(CertificateRevocationListDer::from(bytes));
        }
    }
    Ok(crls)
}

fn read_file(path: &Path, what: &'static str) -> Result<Vec<u8>, StartupError> {
    std::fs::read(path).map_err(|source| StartupError::File {
        path: path.to_owned(),
        what,
        source,
    })
}

/// The loaded server identity, with what operators and `/metrics` want to know about it.
pub struct ServerIdentity {
    pub key: Arc<CertifiedKey>,
    pub not_after: OffsetDateTime,
}

impl ServerIdentity {
    pub fn load(settings: &TlsSettings, provider: &CryptoProvider) -> Result<Self, StartupError> {
        let chain = load_certificates(&settings.cert_file, "server certificate")?;
        let key = load_private_key(&settings.key_file)?;
        let leaf = PeerCertificate::from_der(&chain[0]).map_err(|detail| StartupError::Pem {
            path: settings.cert_file.clone(),
            what: "server certificate",
            detail,
        })?;
        if leaf.not_after <= OffsetDateTime::now_utc() {
            return Err(StartupError::CertificateExpired {
                path: settings.cert_file.clone(),
                not_after: leaf.not_after.to_string(),
            });
        }
        let key = CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
            TlsError::InconsistentKeys(_) => StartupError::KeyMismatch {
                cert: settings.cert_file.clone(),
                key: settings.key_file.clone(),
            },
            other => StartupError::Pem {
                path: settings.key_file.clone(),
                what: "server private key",
                detail: other.to_string(),
            },
        })?;
        Ok(Self {
            key: Arc::new(key),
            not_after: leaf.not_after,
        })
    }
}

/// Serves the one loaded certificate whatever name the client asked for.
#[derive(Debug)]
struct SingleCertificate(Arc<CertifiedKey>);

impl ResolvesServerCert for SingleCertificate {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// Builds the listener's rustls configuration: TLS 1.3 and 1.2, HTTP/2 and HTTP/1.1 (ALPN is set
/// by actix), client certificates checked against the CA bundle and CRLs.
pub fn server_config(
    settings: &TlsSettings,
    identity: &ServerIdentity,
    metrics: Arc<Metrics>,
) -> Result<ServerConfig, StartupError> {
    let provider = provider();
    let mut roots = RootCertStore::empty();
    for ca in load_certificates(&settings.client_ca_file, "client CA bundle")? {
        roots.add(ca).map_err(|e| StartupError::Pem {
            path: settings.client_ca_file.clone(),
            what: "client CA bundle",
            detail: e.to_string(),
        })?;
    }
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .with_crls(load_crls(&settings.crl_files)?);
    if settings.client_auth == ClientAuth::Optional {
        // A missing certificate passes the handshake (API-key clients); a presented certificate
        // that fails verification still aborts it. There is no fallback from a bad certificate.
        builder = builder.allow_unauthenticated();
    }
    let verifier = builder.build().map_err(|e| {
        StartupError::Tls(format!(
            "client verifier from `{}`: {e}",
            settings.client_ca_file.display()
        ))
    })?;
    let verifier = Arc::new(AuditingVerifier {
        inner: verifier,
        metrics,
    });
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| StartupError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(SingleCertificate(identity.key.clone())));
    Ok(config)
}

/// Wraps the webpki verifier so that every refused client certificate is logged with its
/// reason and counted: rustls itself says nothing useful about why a handshake failed.
struct AuditingVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    metrics: Arc<Metrics>,
}

impl fmt::Debug for AuditingVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditingVerifier").finish_non_exhaustive()
    }
}

/// A stable name for why a client certificate failed verification.
pub fn handshake_failure_kind(error: &TlsError) -> &'static str {
    match error {
        TlsError::InvalidCertificate(cert_error) => match cert_error {
            CertificateError::UnknownIssuer => "untrusted_issuer",
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => "expired",
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "not_yet_valid"
            }
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                "wrong_key_usage"
            }
            CertificateError::Revoked => "revoked",
            CertificateError::UnknownRevocationStatus => "unknown_revocation_status",
            CertificateError::ExpiredRevocationList
            | CertificateError::ExpiredRevocationListContext { .. } => "expired_crl",
            CertificateError::BadSignature => "bad_signature",
            CertificateError::BadEncoding => "bad_encoding",
            _ => "invalid_certificate",
        },
        _ => "other",
    }
}

impl ClientCertVerifier for AuditingVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, TlsError> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)
            .inspect_err(|error| {
                let kind = handshake_failure_kind(error);
                self.metrics.handshake_failure(kind);
                let presented = PeerCertificate::from_der(end_entity).ok();
                tracing::warn!(
                    kind,
                    error = %error,
                    subject = presented.as_ref().map(|c| c.subject.to_string()),
                    issuer = presented.as_ref().map(|c| c.issuer.to_string()),
                    fingerprint = presented.as_ref().map(|c| c.fingerprint.to_string()),
                    "client certificate refused in the TLS handshake"
                );
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, TlsError> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, TlsError> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `HttpServer::on_connect`: stores what the TLS layer proved about the peer in connection data.
/// The leaf is the FIRST certificate of the peer chain.
pub fn record_peer_identity(connection: &dyn Any, data: &mut Extensions) {
    let Some(tls) = connection.downcast_ref::<TlsStream<TcpStream>>() else {
        return;
    };
    let identity = match tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
    {
        None => ConnectionIdentity::Anonymous,
        Some(leaf) => match PeerCertificate::from_der(leaf) {
            Ok(cert) => ConnectionIdentity::Certificate(Arc::new(cert)),
            Err(reason) => ConnectionIdentity::Unreadable(reason),
        },
    };
    data.insert(identity);
}
