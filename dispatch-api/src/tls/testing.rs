//! Real certificates for unit tests: a CA made with devpki, the `Trust` of a bundle, and leaves
//! verified by it, so that decision tables run on verified paths and not on hand-made values.

use std::sync::{Arc, LazyLock};

use devpki::{CertificateAuthority, Issued, LeafSpec};
use rustls_pki_types::{CertificateDer, UnixTime};

use super::Trust;
use crate::identity::VerifiedCertificate;

/// The test CA's subject, as bindings write it.
pub const TEST_CA: &str = "CN=Test CA, O=Test";

/// One CA for the whole test binary (making keys is slow in debug builds).
pub static CA: LazyLock<CertificateAuthority> = LazyLock::new(|| {
    CertificateAuthority::new("Test CA", "Test", time::Duration::days(1)).unwrap()
});

/// The trust of a bundle of these CAs (DER), with these CRLs (a file name and its DER each).
fn load(
    cas: impl IntoIterator<Item = Vec<u8>>,
    crls: impl IntoIterator<Item = (String, Vec<u8>)>,
) -> Result<Trust, super::MaterialError> {
    let certs: Vec<CertificateDer<'static>> = cas.into_iter().map(CertificateDer::from).collect();
    Trust::load(
        std::path::Path::new("bundle.pem"),
        &certs,
        crls.into_iter()
            .map(|(name, der)| (name.into(), der))
            .collect(),
        super::provider().signature_verification_algorithms,
    )
}

/// The trust of a bundle of these CAs, with these CRLs (PEM).
pub fn trust(cas: &[&CertificateAuthority], crls: &[String]) -> Trust {
    load(
        cas.iter().map(|ca| ca.cert_der()),
        crls.iter()
            .map(|pem| ("test.crl".to_owned(), devpki::openssl::pem_der(pem))),
    )
    .unwrap()
}

/// A client leaf of `ca` with this CN and these URI SANs.
pub fn leaf(ca: &CertificateAuthority, cn: &str, uris: &[&str]) -> Issued {
    let mut spec = LeafSpec::workload(cn, time::Duration::hours(1));
    spec.uris = uris.iter().map(|u| (*u).to_owned()).collect();
    ca.issue(&spec).unwrap()
}

/// `leaf` verified by `trust` now, with these intermediates (leaf-most first).
pub fn verified(
    trust: &Trust,
    leaf: &Issued,
    intermediates: &[&CertificateAuthority],
) -> Result<Arc<VerifiedCertificate>, webpki::Error> {
    let chain: Vec<CertificateDer<'static>> = intermediates
        .iter()
        .map(|ca| CertificateDer::from(ca.cert_der()))
        .collect();
    trust.verify(
        &CertificateDer::from(leaf.der.clone()),
        &chain,
        UnixTime::now(),
    )
}

/// The trust of a bundle of openssl-made CAs with these CRLs (PEM), or why it does not load.
pub fn openssl_trust(
    cas: &[&devpki::openssl::OpensslCa],
    crls: &[(&str, &str)],
) -> Result<Trust, super::MaterialError> {
    load(
        cas.iter().map(|ca| ca.cert_der()),
        crls.iter()
            .map(|(name, pem)| ((*name).to_owned(), devpki::openssl::pem_der(pem))),
    )
}

/// An openssl-made leaf verified by `trust` now, sent with these intermediates.
pub fn openssl_verified(
    trust: &Trust,
    leaf: &devpki::openssl::OpensslCert,
    intermediates: &[&devpki::openssl::OpensslCa],
) -> Result<Arc<VerifiedCertificate>, webpki::Error> {
    let chain: Vec<CertificateDer<'static>> = intermediates
        .iter()
        .map(|ca| CertificateDer::from(ca.cert_der()))
        .collect();
    trust.verify(&CertificateDer::from(leaf.der()), &chain, UnixTime::now())
}
