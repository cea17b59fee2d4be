//! The client CA bundle as loaded: each CA with its key, the CRLs of each key combined, and
//! what of the bundle stands above each CA (its "ancestry": the root speaks for the issuing CA
//! beside it in the bundle, whether or not a path went through the root).

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

/// The CRLs of each key of the bundle, combined; and a check that the CRLs of every other
/// issuer (intermediates outside the bundle) combine too, so a delta without its base is
/// refused at load whoever issued it.
pub(super) fn crls_of_bundle(
    cas: &[BundleCa],
    crls: &[Crl],
) -> Result<HashMap<SpkiHash, Arc<SignerCrls>>, MaterialError> {
    let mut by_signer: HashMap<SpkiHash, Vec<&Crl>> = HashMap::new();
    let mut by_outside_name: HashMap<&DistinguishedName, Vec<&Crl>> = HashMap::new();
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
            return Err(crl_error(
                &crl.path,
                format!(
                    "it names `{}` as its issuer, but no CA of that name in the bundle signed it",
                    crl.issuer
                ),
            ));
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
    Ok(combined)
}

/// What of the bundle stands above one certificate of one of its CAs.
#[derive(Debug)]
pub(super) struct Ancestry {
    /// That certificate's validity: outside it, what stands above it speaks for nobody.
    pub(super) not_before: OffsetDateTime,
    pub(super) not_after: OffsetDateTime,
    /// The CA as signed by its parent, then the parent as signed by its own, ...
    pub(super) links: Vec<ChainLink>,
    /// The parents' fingerprints, up to the root.
    pub(super) above: Vec<Fingerprint>,
}

/// For each key of the bundle's CAs, what stands above each of its certificates: the CAs of
/// the bundle that signed it, up to a self-signed root (its parent is a CA of the bundle whose
/// name is its issuer and whose key verifies its signature). A key has several certificates
/// when its CA was renewed without a new key: each brings its own ancestry, and the key stands
/// while one of them does (its root revoking the old certificate as superseded, as CAs do on
/// renewal, leaves the renewed one standing). In bundle order.
pub(super) fn ancestry(
    cas: &[BundleCa],
    ders: &[CertificateDer<'_>],
) -> HashMap<SpkiHash, Vec<Ancestry>> {
    let parsed: Vec<Option<X509Certificate<'_>>> = ders
        .iter()
        .map(|der| X509Certificate::from_der(der).ok().map(|(_, cert)| cert))
        .collect();
    let parent_of = |index: usize| -> Option<usize> {
        let cert = parsed[index].as_ref()?;
        let issuer = DistinguishedName::from_x509(cert.issuer());
        (0..cas.len()).find(|&other| {
            let ca = &cas[other];
            other != index
                && ca.subject == issuer
                && ca.spki != cas[index].spki
                && SubjectPublicKeyInfo::from_der(&ca.spki_der)
                    .is_ok_and(|(_, spki)| cert.verify_signature(Some(&spki)).is_ok())
        })
    };
    let mut ancestry = HashMap::new();
    for start in 0..cas.len() {
        let mut found = Ancestry {
            not_before: cas[start].not_before,
            not_after: cas[start].not_after,
            links: Vec::new(),
            above: Vec::new(),
        };
        let mut seen = HashSet::from([start]);
        let mut current = start;
        while let Some(parent) = parent_of(current) {
            let Some(cert) = parsed[current].as_ref() else {
                break;
            };
            found.above.push(cas[parent].fingerprint);
            found.links.push(ChainLink {
                fingerprint: cas[current].fingerprint,
                serial: cert.raw_serial().to_vec(),
                issuer: DistinguishedName::from_x509(cert.issuer()),
                signer_spki: cas[parent].spki,
                signer_spki_der: cas[parent].spki_der.clone().into(),
                scope: CertificateScope::of(cert),
            });
            if !seen.insert(parent) {
                break;
            }
            current = parent;
        }
        ancestry
            .entry(cas[start].spki)
            .or_insert_with(Vec::new)
            .push(found);
    }
    ancestry
}
