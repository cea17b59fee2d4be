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
use super::path::chain_key;
use crate::configuration::ClientAuth;
use crate::identity::PeerCertificate;
use crate::telemetry::{LogBudgets, this_second};

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
            CertificateError::Other(other) if other.0.downcast_ref::<ChainTooLong>().is_some() => {
                "chain_too_long"
            }
            _ => "invalid_certificate",
        },
        _ => "other",
    }
}

/// Handshake-failure log lines per second and kind: anyone can fail handshakes as fast as the
/// CPU allows, and each one is counted in `dispatch_tls_handshake_failures_total` anyway.
pub const HANDSHAKE_LINES_PER_SECOND: u64 = 10;

static HANDSHAKE_LINES: std::sync::LazyLock<LogBudgets> =
    std::sync::LazyLock::new(|| LogBudgets::new(HANDSHAKE_LINES_PER_SECOND));

/// A client chain longer than `tls.max_client_chain`, refused before any signature is checked.
#[derive(Debug, thiserror::Error)]
#[error("the client presented {presented} certificates; tls.max_client_chain allows {limit}")]
pub struct ChainTooLong {
    pub presented: usize,
    pub limit: usize,
}

/// Refuses a chain of more than `limit` certificates (the leaf and the intermediates sent).
pub(super) fn check_chain_length(
    intermediates: &[CertificateDer<'_>],
    limit: usize,
) -> Result<(), RustlsError> {
    let presented = 1 + intermediates.len();
    if presented > limit {
        return Err(RustlsError::InvalidCertificate(CertificateError::Other(
            rustls::OtherError(Arc::new(ChainTooLong { presented, limit })),
        )));
    }
    Ok(())
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
        if let Err(error) = check_chain_length(intermediates, self.0.settings.max_client_chain) {
            self.0
                .metrics
                .handshake_failure(handshake_failure_kind(&error));
            if let Some(suppressed) = HANDSHAKE_LINES.take("chain_too_long", this_second()) {
                tracing::warn!(
                    kind = "chain_too_long",
                    error = %error,
                    suppressed,
                    "client certificate refused in the TLS handshake"
                );
            }
            return Err(error);
        }
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
                if let Some(suppressed) = HANDSHAKE_LINES.take(kind, this_second()) {
                    let presented = PeerCertificate::from_der(end_entity).ok();
                    tracing::warn!(
                        kind,
                        error = %error,
                        subject = presented
                            .as_ref()
                            .map(|c| crate::telemetry::clip(&c.subject.to_string()).into_owned()),
                        issuer = presented
                            .as_ref()
                            .map(|c| crate::telemetry::clip(&c.issuer.to_string()).into_owned()),
                        fingerprint = presented.as_ref().map(|c| c.fingerprint.to_string()),
                        suppressed,
                        "client certificate refused in the TLS handshake"
                    );
                }
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

#[cfg(test)]
mod tests {
    use super::super::testing::{CA, leaf};
    use super::*;
    use crate::configuration::TlsSettings;
    use crate::telemetry::Metrics;

    #[test]
    fn a_chain_longer_than_the_limit_is_refused_as_chain_too_long() {
        let certificate = CertificateDer::from(vec![0u8]);
        for (intermediates, limit, refused) in
            [(0, 1, false), (3, 4, false), (4, 4, true), (1, 1, true)]
        {
            let chain = vec![certificate.clone(); intermediates];
            let outcome = check_chain_length(&chain, limit);
            assert_eq!(
                outcome.is_err(),
                refused,
                "{intermediates} intermediates, limit {limit}"
            );
            if let Err(error) = outcome {
                assert_eq!(handshake_failure_kind(&error), "chain_too_long");
                let RustlsError::InvalidCertificate(CertificateError::Other(other)) = &error else {
                    panic!("{error:?}")
                };
                let expected = format!("presented {} certificates", intermediates + 1);
                assert!(other.0.to_string().contains(&expected), "{other:?}");
            }
        }
        let other = RustlsError::InvalidCertificate(CertificateError::Other(rustls::OtherError(
            Arc::new(std::io::Error::other("x")),
        )));
        assert_eq!(handshake_failure_kind(&other), "invalid_certificate");
    }

    /// A verifier over real files (the test CA as the bundle), with this client-auth mode.
    fn verifier(client_auth: ClientAuth) -> (tempfile::TempDir, CurrentVerifier) {
        let dir = tempfile::tempdir().unwrap();
        let server = CA
            .issue(&devpki::LeafSpec::server(time::Duration::hours(1)))
            .unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let settings = TlsSettings {
            cert_file: Some(write("server.pem", &server.cert_pem)),
            key_file: Some(write("server.key", &server.key_pem)),
            client_ca_file: write("ca.pem", &CA.cert_pem),
            client_auth,
            ..TlsSettings::default()
        };
        let tls = ReloadableTls::load(&settings, Arc::new(Metrics::new())).unwrap();
        (dir, CurrentVerifier(tls))
    }

    #[test]
    fn the_verifier_asks_every_client_and_requires_a_certificate_only_when_configured() {
        let (_dir, optional) = verifier(ClientAuth::Optional);
        assert!(optional.offer_client_auth());
        assert!(!optional.client_auth_mandatory());
        let (_dir, required) = verifier(ClientAuth::Required);
        assert!(required.client_auth_mandatory());
        assert!(required.root_hint_subjects().is_empty());
        assert_eq!(
            required.supported_verify_schemes(),
            super::super::provider()
                .signature_verification_algorithms
                .supported_schemes()
        );
        assert!(!required.supported_verify_schemes().is_empty());
        assert_eq!(format!("{required:?}"), "CurrentVerifier");
    }

    #[test]
    fn a_verified_chain_is_remembered_for_on_connect_and_a_refused_one_is_counted() {
        let (_dir, verifier) = verifier(ClientAuth::Optional);
        let issued = leaf(&CA, "w", &[]);
        let der = CertificateDer::from(issued.der.clone());
        verifier
            .verify_client_cert(&der, &[], UnixTime::now())
            .unwrap();
        let trust = verifier.0.material().trust.clone();
        let remembered = trust
            .recall(&chain_key(&issued.der, &[] as &[Vec<u8>]))
            .unwrap();
        assert_eq!(remembered.leaf.common_names, ["w"]);
        let stranger =
            devpki::CertificateAuthority::new("Stranger", "X", time::Duration::days(1)).unwrap();
        let refused = leaf(&stranger, "w", &[]);
        let error = verifier
            .verify_client_cert(&CertificateDer::from(refused.der), &[], UnixTime::now())
            .unwrap_err();
        assert_eq!(handshake_failure_kind(&error), "untrusted_issuer");
        let text = verifier.0.metrics.encode();
        assert!(
            text.contains("dispatch_tls_handshake_failures_total{kind=\"untrusted_issuer\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn every_handshake_failure_has_its_stable_kind() {
        use CertificateError as C;
        let when = UnixTime::now();
        let table: Vec<(RustlsError, &str)> = vec![
            (C::UnknownIssuer.into(), "untrusted_issuer"),
            (C::Expired.into(), "expired"),
            (
                C::ExpiredContext {
                    time: when,
                    not_after: when,
                }
                .into(),
                "expired",
            ),
            (C::NotValidYet.into(), "not_yet_valid"),
            (
                C::NotValidYetContext {
                    time: when,
                    not_before: when,
                }
                .into(),
                "not_yet_valid",
            ),
            (C::InvalidPurpose.into(), "wrong_key_usage"),
            (C::Revoked.into(), "revoked"),
            (
                C::UnknownRevocationStatus.into(),
                "unknown_revocation_status",
            ),
            (C::ExpiredRevocationList.into(), "expired_crl"),
            (
                C::ExpiredRevocationListContext {
                    time: when,
                    next_update: when,
                }
                .into(),
                "expired_crl",
            ),
            (C::BadSignature.into(), "bad_signature"),
            (C::BadEncoding.into(), "bad_encoding"),
            (C::NotValidForName.into(), "invalid_certificate"),
            (RustlsError::DecryptError, "other"),
        ];
        for (error, kind) in table {
            assert_eq!(handshake_failure_kind(&error), kind, "{error:?}");
        }
    }

    #[test]
    fn webpki_refusals_map_to_the_certificate_errors_rustls_would_send() {
        use webpki::Error as E;
        let when = UnixTime::now();
        let kinds = [
            (E::BadDer, "bad_encoding"),
            (E::BadDerTime, "bad_encoding"),
            (
                E::CertNotValidYet {
                    time: when,
                    not_before: when,
                },
                "not_yet_valid",
            ),
            (
                E::CertExpired {
                    time: when,
                    not_after: when,
                },
                "expired",
            ),
            (E::InvalidCertValidity, "expired"),
            (E::UnknownIssuer, "untrusted_issuer"),
            (E::CertRevoked, "revoked"),
            (
                E::CrlExpired {
                    time: when,
                    next_update: when,
                },
                "expired_crl",
            ),
            (E::InvalidSignatureForPublicKey, "bad_signature"),
            (E::CaUsedAsEndEntity, "invalid_certificate"),
        ];
        for (error, kind) in kinds {
            let mapped = rustls_error(error.clone());
            assert_eq!(
                handshake_failure_kind(&mapped),
                kind,
                "{error:?} -> {mapped:?}"
            );
        }
        #[allow(deprecated)]
        let eku = rustls_error(E::RequiredEkuNotFound);
        assert_eq!(handshake_failure_kind(&eku), "wrong_key_usage");
        assert!(matches!(
            rustls_error(E::TrailingData(webpki::DerTypeId::Certificate)),
            RustlsError::InvalidCertificate(CertificateError::BadEncoding)
        ));
    }
}
