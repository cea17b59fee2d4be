//! The client CA bundle as loaded: each CA with its key, the CRLs of each key combined, and
//! which CA of the bundle signed each of its certificates (its "lineage": the root speaks for
//! the issuing CA beside it in the bundle, whether or not a path went through the root).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::SubjectPublicKeyInfo;

use super::crl::{Crl, SignerCrls};
use super::error::MaterialError;
use crate::identity::{CertificateScope, ChainLink, DistinguishedName, Fingerprint, SpkiHash};

/// A CA of the client bundle.
#[derive(Debug, Clone)]
pub struct BundleCa {
    pub subject: DistinguishedName,
    pub spki: SpkiHash,
    pub fingerprint: Fingerprint,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// The SubjectPublicKeyInfo as DER, to check the signatures of this CA's CRLs.
    pub(super) spki_der: Vec<u8>,
}

pub(super) fn crl_error(path: &Path, detail: String) -> MaterialError {
    MaterialError::Pem {
        path: path.to_owned(),
        what: "certificate revocation list",
        detail,
    }
}

/// The CRLs of each key of the bundle, combined, and the CRLs refused on their own; and a
/// check that the CRLs of every other issuer (intermediates outside the bundle) combine too,
/// so a delta without its base is refused at load whoever issued it.
///
/// A CRL under the name of a CA of the bundle that no CA of that name signed comes from a key
/// outside the bundle: a CA re-keyed under its old name, whose new certificate nobody added.
/// That CRL cannot be checked, so it is refused, naming the certificate to add; the other CRLs
/// still apply, and what that key signed has unknown status (`Trust::crls_of`), so refusing
/// the CRL revokes nothing and admits nothing.
pub(super) fn crls_of_bundle(cas: &[BundleCa], crls: &[Crl]) -> Result<BundleCrls, MaterialError> {
    let mut by_signer: HashMap<SpkiHash, Vec<&Crl>> = HashMap::new();
    let mut by_outside_name: HashMap<&DistinguishedName, Vec<&Crl>> = HashMap::new();
    let mut refused = Vec::new();
    for crl in crls {
        let named: Vec<&BundleCa> = cas.iter().filter(|ca| ca.subject == crl.issuer).collect();
        if named.is_empty() {
            by_outside_name.entry(&crl.issuer).or_default().push(crl);
            continue;
        }
        let signers: HashSet<SpkiHash> = named
            .iter()
            .filter(|ca| crl.signed_by(&ca.spki_der))
            .map(|ca| ca.spki)
            .collect();
        if signers.is_empty() {
            let key = crl.authority_key_id.as_deref().map_or_else(
                || "its key".to_owned(),
                |id| format!("the key with identifier {}", colon_hex(id)),
            );
            refused.push(crl_error(
                &crl.path,
                format!(
                    "it names `{}` as its issuer, but no CA of that name in the bundle signed it: \
                     add to tls.client_ca_file the certificate of `{}` for {key} (the CA was \
                     re-keyed); until then the certificates that key signed are refused as of \
                     unknown status",
                    crl.issuer, crl.issuer
                ),
            ));
            continue;
        }
        for spki in signers {
            by_signer.entry(spki).or_default().push(crl);
        }
    }
    for crls in by_outside_name.values() {
        SignerCrls::combine(crls).map_err(|(path, detail)| crl_error(&path, detail))?;
    }
    let mut combined = HashMap::new();
    for ca in cas {
        let crls = by_signer.get(&ca.spki).map_or(&[][..], Vec::as_slice);
        let crls = SignerCrls::combine(crls).map_err(|(path, detail)| crl_error(&path, detail))?;
        combined.insert(ca.spki, Arc::new(crls));
    }
    Ok(BundleCrls {
        by_signer: combined,
        refused,
    })
}

/// The CRLs of a load: combined per key of the bundle, and the ones left out with why.
pub(super) struct BundleCrls {
    pub(super) by_signer: HashMap<SpkiHash, Arc<SignerCrls>>,
    pub(super) refused: Vec<MaterialError>,
}

/// A key identifier as operators read it in `openssl x509 -text` (`AB:CD:...`).
fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// One certificate of a CA of the bundle, with what of the bundle signed it.
#[derive(Debug)]
pub(super) struct Certified {
    pub(super) fingerprint: Fingerprint,
    pub(super) not_before: OffsetDateTime,
    pub(super) not_after: OffsetDateTime,
    /// The certificate as a CA of the bundle signed it (`signer_spki` is that CA's key); none
    /// for a self-signed root, or a CA whose issuer is not in the bundle.
    pub(super) signed: Option<ChainLink>,
}

/// For each key of the bundle's CAs, its certificates in bundle order, each with the CA of the
/// bundle that signed it: a CA of the bundle whose name is its issuer and whose key verifies
/// its signature. A key has several certificates when its CA was renewed without a new key,
/// or cross-signed; `Trust::check_path` decides whether the key stands from all of them.
pub(super) fn lineage(
    cas: &[BundleCa],
    ders: &[CertificateDer<'_>],
) -> HashMap<SpkiHash, Vec<Certified>> {
    let parsed: Vec<Option<X509Certificate<'_>>> = ders
        .iter()
        .map(|der| X509Certificate::from_der(der).ok().map(|(_, cert)| cert))
        .collect();
    // Any CA of the parent's key: its certificates share the key, so the signature and the
    // link are the same whichever is found.
    let parent_of = |index: usize| -> Option<usize> {
        let cert = parsed[index].as_ref()?;
        let issuer = DistinguishedName::from_x509(cert.issuer());
        (0..cas.len()).find(|&other| {
            let ca = &cas[other];
            ca.subject == issuer
                && ca.spki != cas[index].spki
                && SubjectPublicKeyInfo::from_der(&ca.spki_der)
                    .is_ok_and(|(_, spki)| cert.verify_signature(Some(&spki)).is_ok())
        })
    };
    let mut lineage: HashMap<SpkiHash, Vec<Certified>> = HashMap::new();
    for (index, ca) in cas.iter().enumerate() {
        let signed = parent_of(index)
            .zip(parsed[index].as_ref())
            .map(|(parent, cert)| {
                let parent = &cas[parent];
                ChainLink {
                    fingerprint: ca.fingerprint,
                    serial: cert.raw_serial().to_vec(),
                    issuer: DistinguishedName::from_x509(cert.issuer()),
                    signer_spki: parent.spki,
                    signer_spki_der: parent.spki_der.clone().into(),
                    scope: CertificateScope::of(cert),
                }
            });
        lineage.entry(ca.spki).or_default().push(Certified {
            fingerprint: ca.fingerprint,
            not_before: ca.not_before,
            not_after: ca.not_after,
            signed,
        });
    }
    lineage
}
