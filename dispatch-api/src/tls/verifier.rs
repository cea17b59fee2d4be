//! Who can complete a handshake: the client certificate verifier of the listener.
//!
//! [`CurrentVerifier`] verifies with the current material (rustls/webpki: chain to the client
//! CA bundle, validity, clientAuth EKU, CRLs) and logs and counts every refusal with a stable
//! kind: rustls itself says nothing useful about why a handshake failed.

use std::fmt;
use std::sync::Arc;

use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error as RustlsError,
    SignatureScheme,
};
use rustls_pki_types::{CertificateDer, UnixTime};

use super::ReloadableTls;
use crate::configuration::ClientAuth;
use crate::identity::PeerCertificate;

/// A stable name for why a client certificate failed verification.
pub fn handshake_failure_kind(error: &RustlsError) -> &'static str {
    match error {
        RustlsError::InvalidCertificate(cert_error) => match cert_error {
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

/// Verifies client certificates with the current material.
pub(super) struct CurrentVerifier(pub(super) Arc<ReloadableTls>);

impl fmt::Debug for CurrentVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CurrentVerifier")
    }
}

impl ClientCertVerifier for CurrentVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.0.settings.client_auth == ClientAuth::Required
    }

    /// No CA names are hinted: the bundle can change at run time and this must return a
    /// borrowed slice. An empty list tells clients to send whatever certificate they have.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, RustlsError> {
        let material = self.0.material.load();
        material
            .verifier
            .verify_client_cert(end_entity, intermediates, now)
            .inspect_err(|error| {
                let kind = handshake_failure_kind(error);
                self.0.metrics.handshake_failure(kind);
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
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, RustlsError> {
        self.0
            .material
            .load()
            .verifier
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, RustlsError> {
        self.0
            .material
            .load()
            .verifier
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.material.load().verifier.supported_verify_schemes()
    }
}
