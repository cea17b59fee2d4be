//! Who can complete a handshake: the client certificate verifier of the listener.
//!
//! [`CurrentVerifier`] verifies with the current material (`trust`: webpki's chain to the client
//! CA bundle, validity and clientAuth EKU, then CRLs for every certificate of the path) and
//! logs and counts every refusal with a stable kind: rustls itself says nothing useful about
//! why a handshake failed.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error as RustlsError,
    SignatureScheme,
};
use rustls_pki_types::{CertificateDer, UnixTime};

use super::ReloadableTls;
use super::trust::chain_key;
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

/// rustls' error for a webpki refusal, as rustls' own verifier maps it (so the TLS alert a
/// client sees is the usual one: unknown_ca, certificate_expired, certificate_revoked, ...).
pub(super) fn rustls_error(error: webpki::Error) -> RustlsError {
    use webpki::Error as E;
    let certificate = match error {
        E::BadDer | E::BadDerTime | E::TrailingData(_) => CertificateError::BadEncoding,
        E::CertNotValidYet { time, not_before } => {
            CertificateError::NotValidYetContext { time, not_before }
        }
        E::CertExpired { time, not_after } => CertificateError::ExpiredContext { time, not_after },
        E::InvalidCertValidity => CertificateError::Expired,
        E::UnknownIssuer => CertificateError::UnknownIssuer,
        E::CertRevoked => CertificateError::Revoked,
        E::CrlExpired { time, next_update } => {
            CertificateError::ExpiredRevocationListContext { time, next_update }
        }
        E::InvalidSignatureForPublicKey => CertificateError::BadSignature,
        #[allow(deprecated)]
        E::RequiredEkuNotFound | E::RequiredEkuNotFoundContext(_) => {
            CertificateError::InvalidPurpose
        }
        other => CertificateError::Other(rustls::OtherError(Arc::new(other))),
    };
    RustlsError::InvalidCertificate(certificate)
}

/// Verifies client certificates with the current material, and remembers each verified path
/// for `on_connect` (see `super::record_peer_identity`).
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

    /// `optional`: a missing certificate passes the handshake (API-key clients); a presented
    /// certificate that fails verification still aborts it: no fallback to a key.
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
        let trust = self.0.material.load().trust.clone();
        match trust.verify(end_entity, intermediates, now) {
            Ok(verified) => {
                trust.remember(chain_key(end_entity, intermediates), verified);
                Ok(ClientCertVerified::assertion())
            }
            Err(error) => {
                let error = rustls_error(error);
                let kind = handshake_failure_kind(&error);
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
                Err(error)
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, RustlsError> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, RustlsError> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0
            .provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
