//! Who the client CA bundle and the CRLs trust, as one value swapped with the rest of the
//! material: path verification (webpki) that KEEPS the verified path, and revocation of every
//! certificate of that path by the CRL of the key that signed it.
//!
//! Why not rustls' `WebPkiClientVerifier`: it answers only yes or no, so nothing downstream
//! could know which CA signed the leaf (bindings matched the printed issuer, which any CA in
//! the bundle can copy), and webpki picks a CRL by its issuer's NAME, so two CAs of one name (a
//! rollover) could not each have a CRL. Here a CRL belongs to the key whose signature it
//! carries, and the same check runs in the handshake and again on every request (a CRL loaded
//! while a connection is open applies to its next request).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use time::OffsetDateTime;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::material::MaterialError;
use crate::identity::{
    ChainLink, DistinguishedName, Fingerprint, IssuerIndex, PeerCertificate, SpkiHash,
    VerifiedCertificate,
};

/// Verified paths remembered between the handshake and `on_connect` (and for resumptions).
const RECENT_PATHS: usize = 4096;

/// A CA of the client bundle.
#[derive(Debug, Clone)]
pub struct BundleCa {
    pub subject: DistinguishedName,
    pub spki: SpkiHash,
    pub fingerprint: Fingerprint,
    pub not_after: OffsetDateTime,
    /// The SubjectPublicKeyInfo as DER, to check the signatures of this CA's CRLs.
    spki_der: Vec<u8>,
}

/// A certificate revocation list as loaded.
#[derive(Debug)]
struct Crl {
    path: PathBuf,
    issuer: DistinguishedName,
    der: Vec<u8>,
    revoked: HashSet<Vec<u8>>,
    this_update: i64,
    next_update: Option<OffsetDateTime>,
}

/// Why a path is not (or no longer) good enough.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevocationFailure {
    /// A certificate of the path is listed in the CRL of the key that signed it.
    Revoked { fingerprint: Fingerprint },
    /// The CRL of a key of the path is past its nextUpdate: fail closed until it is renewed.
    CrlExpired {
        crl: PathBuf,
        next_update: OffsetDateTime,
    },
}

impl RevocationFailure {
    fn to_webpki(&self, now: UnixTime) -> webpki::Error {
        match self {
            Self::Revoked { .. } => webpki::Error::CertRevoked,
            Self::CrlExpired { next_update, .. } => webpki::Error::CrlExpired {
                time: now,
                next_update: unix_time(*next_update),
            },
        }
    }
}

pub(super) fn unix_time(at: OffsetDateTime) -> UnixTime {
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        at.unix_timestamp().max(0).unsigned_abs(),
    ))
}

/// The trust of the listener: CA bundle, CRLs and what was verified under them.
pub struct Trust {
    cas: Vec<BundleCa>,
    /// The same CAs as webpki takes them, in the same order as `cas`.
    anchors: Vec<TrustAnchor<'static>>,
    issuers: IssuerIndex,
    crls: Vec<Crl>,
    algorithms: WebPkiSupportedAlgorithms,
    /// The CRL of each signing key (index into `crls`), or none; keys outside the bundle
    /// (intermediates) are looked up when first seen.
    crl_of_signer: RwLock<HashMap<SpkiHash, Option<usize>>>,
    /// Paths verified in recent handshakes, by a digest of the presented chain.
    recent: Mutex<HashMap<[u8; 32], Arc<VerifiedCertificate>>>,
}

impl Trust {
    /// Loads the bundle and the CRLs. A CRL must be signed by a CA of the bundle that bears
    /// its issuer's name, or (for an intermediate's CRL) name no CA of the bundle at all.
    pub fn load(
        ca_path: &Path,
        ca_certs: &[CertificateDer<'static>],
        crls: Vec<(PathBuf, Vec<u8>)>,
        algorithms: WebPkiSupportedAlgorithms,
    ) -> Result<Self, MaterialError> {
        const WHAT: &str = "client CA bundle";
        let fail = |detail: String| MaterialError::Pem {
            path: ca_path.to_owned(),
            what: WHAT,
            detail,
        };
        let mut cas = Vec::new();
        let mut anchors = Vec::new();
        for der in ca_certs {
            let info = PeerCertificate::from_der(der).map_err(&fail)?;
            let anchor = webpki::anchor_from_trusted_cert(der)
                .map_err(|e| fail(format!("`{}` is not a usable CA: {e}", info.subject)))?
                .to_owned();
            // The whole SPKI SEQUENCE (a trust anchor keeps only its contents).
            let spki_der = webpki::EndEntityCert::try_from(der)
                .map_err(|e| fail(format!("`{}` is not a usable CA: {e}", info.subject)))?
                .subject_public_key_info()
                .to_vec();
            cas.push(BundleCa {
                subject: info.subject,
                spki: SpkiHash::of_der(&spki_der),
                fingerprint: info.fingerprint,
                not_after: info.not_after,
                spki_der,
            });
            anchors.push(anchor);
        }
        let issuers = IssuerIndex::new(cas.iter().map(|ca| (ca.subject.clone(), ca.spki)));
        let mut trust = Self {
            anchors,
            cas,
            issuers,
            crls: Vec::new(),
            algorithms,
            crl_of_signer: RwLock::new(HashMap::new()),
            recent: Mutex::new(HashMap::new()),
        };
        for (path, der) in crls {
            trust.add_crl(path, der)?;
        }
        Ok(trust)
    }

    /// A trust with no CA and no CRL: no certificate verifies under it (for fuzzing and tests
    /// of the paths that involve no certificate).
    pub fn empty() -> Self {
        Self {
            cas: Vec::new(),
            anchors: Vec::new(),
            issuers: IssuerIndex::default(),
            crls: Vec::new(),
            algorithms: super::provider().signature_verification_algorithms,
            crl_of_signer: RwLock::new(HashMap::new()),
            recent: Mutex::new(HashMap::new()),
        }
    }

    fn add_crl(&mut self, path: PathBuf, der: Vec<u8>) -> Result<(), MaterialError> {
        const WHAT: &str = "certificate revocation list";
        let fail = |detail: String| MaterialError::Pem {
            path: path.clone(),
            what: WHAT,
            detail,
        };
        let (_, crl) =
            CertificateRevocationList::from_der(&der).map_err(|e| fail(e.to_string()))?;
        let issuer = DistinguishedName::from_x509(crl.issuer());
        let loaded = Crl {
            path: path.clone(),
            revoked: crl
                .iter_revoked_certificates()
                .map(|r| r.raw_serial().to_vec())
                .collect(),
            this_update: crl.last_update().timestamp(),
            next_update: crl
                .next_update()
                .and_then(|t| OffsetDateTime::from_unix_timestamp(t.timestamp()).ok()),
            issuer: issuer.clone(),
            der: der.clone(),
        };
        let index = self.crls.len();
        let named: Vec<&BundleCa> = self.cas.iter().filter(|ca| ca.subject == issuer).collect();
        let signers: Vec<SpkiHash> = named
            .iter()
            .filter(|ca| crl_signed_by(&crl, &ca.spki_der))
            .map(|ca| ca.spki)
            .collect();
        if !named.is_empty() && signers.is_empty() {
            return Err(fail(format!(
                "it names `{issuer}` as its issuer, but no CA of that name in the bundle signed it"
            )));
        }
        let mut by_signer = self
            .crl_of_signer
            .write()
            .unwrap_or_else(|e| e.into_inner());
        for spki in signers {
            // Two CRLs of one CA: the newer one counts.
            let newer = match by_signer.get(&spki) {
                Some(Some(other)) => self.crls[*other].this_update < loaded.this_update,
                _ => true,
            };
            if newer {
                by_signer.insert(spki, Some(index));
            }
        }
        drop(by_signer);
        self.crls.push(loaded);
        Ok(())
    }

    /// The CAs of the bundle.
    pub fn cas(&self) -> &[BundleCa] {
        &self.cas
    }

    /// The bundle's CAs by name, for matching bindings.
    pub fn issuers(&self) -> &IssuerIndex {
        &self.issuers
    }

    /// Verifies a presented chain at `now` for client authentication and returns the path:
    /// chain to an anchor of the bundle, validity, clientAuth EKU (webpki), and revocation of
    /// every certificate of the path (here).
    pub fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<Arc<VerifiedCertificate>, webpki::Error> {
        let leaf = PeerCertificate::from_der(end_entity).map_err(|_| webpki::Error::BadDer)?;
        let cert = webpki::EndEntityCert::try_from(end_entity)?;
        let found = std::cell::RefCell::new(None);
        let at = OffsetDateTime::from_unix_timestamp(now.as_secs().try_into().unwrap_or(i64::MAX))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        // Called by webpki for each candidate path; the first one that passes is the one.
        let check = |path: &webpki::VerifiedPath<'_>| {
            let verified = self.describe(path, &leaf)?;
            self.check_revocation(&verified, at)
                .map_err(|failure| failure.to_webpki(now))?;
            *found.borrow_mut() = Some(verified);
            Ok(())
        };
        cert.verify_for_usage(
            self.algorithms.all,
            &self.anchors,
            intermediates,
            now,
            webpki::KeyUsage::client_auth(),
            None,
            Some(&check),
        )?;
        let verified = found.into_inner().ok_or(webpki::Error::UnknownIssuer)?;
        Ok(Arc::new(verified))
    }

    /// The path as data: each certificate with the key that signed it (the next certificate
    /// up the path; the anchor for the last one).
    fn describe(
        &self,
        path: &webpki::VerifiedPath<'_>,
        leaf: &PeerCertificate,
    ) -> Result<VerifiedCertificate, webpki::Error> {
        // webpki hands back one of our own anchors.
        let anchor = self
            .anchors
            .iter()
            .position(|a| std::ptr::eq(a, path.anchor()))
            .map(|index| &self.cas[index])
            .ok_or(webpki::Error::UnknownIssuer)?;
        let intermediates = path
            .intermediate_certificates()
            .map(|cert| {
                PeerCertificate::from_der(&cert.der())
                    .map(|parsed| (cert, parsed))
                    .map_err(|_| webpki::Error::BadDer)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let signers = intermediates
            .iter()
            .map(|(cert, _)| cert.subject_public_key_info().as_ref().to_vec())
            .chain(std::iter::once(anchor.spki_der.clone()));
        let certs = std::iter::once((&**path.end_entity(), leaf))
            .chain(intermediates.iter().map(|(cert, parsed)| (*cert, parsed)));
        let links: Vec<ChainLink> = certs
            .zip(signers)
            .map(|((cert, parsed), signer)| ChainLink {
                fingerprint: parsed.fingerprint,
                serial: cert.serial().to_vec(),
                issuer: parsed.issuer.clone(),
                signer_spki: SpkiHash::of_der(&signer),
                signer_spki_der: signer.into(),
            })
            .collect();
        let parsed = || std::iter::once(leaf).chain(intermediates.iter().map(|(_, p)| p));
        Ok(VerifiedCertificate {
            issuer_spki: links[0].signer_spki,
            leaf: leaf.clone(),
            links,
            anchor: anchor.fingerprint,
            not_before: parsed()
                .map(|c| c.not_before)
                .max()
                .unwrap_or(leaf.not_before),
            not_after: parsed()
                .map(|c| c.not_after)
                .min()
                .unwrap_or(leaf.not_after),
        })
    }

    /// Checks every certificate of a verified path against the CRL of the key that signed it.
    /// A key with no CRL is not checked (unknown status is allowed); an expired CRL fails
    /// closed, as nginx does: renew CRLs before their nextUpdate.
    pub fn check_revocation(
        &self,
        verified: &VerifiedCertificate,
        now: OffsetDateTime,
    ) -> Result<(), RevocationFailure> {
        if self.crls.is_empty() {
            return Ok(());
        }
        for link in &verified.links {
            let Some(index) = self.crl_of(link) else {
                continue;
            };
            let crl = &self.crls[index];
            if let Some(next_update) = crl.next_update.filter(|next| *next < now) {
                return Err(RevocationFailure::CrlExpired {
                    crl: crl.path.clone(),
                    next_update,
                });
            }
            if crl.revoked.contains(&link.serial) {
                return Err(RevocationFailure::Revoked {
                    fingerprint: link.fingerprint,
                });
            }
        }
        Ok(())
    }

    /// The CRL of the key that signed `link`: known for the bundle's CAs, looked up (by name,
    /// then by signature) and remembered for other keys.
    fn crl_of(&self, link: &ChainLink) -> Option<usize> {
        if let Some(known) = self
            .crl_of_signer
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&link.signer_spki)
        {
            return *known;
        }
        // Only keys outside the bundle get here: the bundle's were settled at load.
        let named_in_bundle = !self.issuers.keys_named(&link.issuer).is_empty();
        let found = (!named_in_bundle)
            .then(|| {
                self.crls
                    .iter()
                    .enumerate()
                    .filter(|(_, crl)| crl.issuer == link.issuer)
                    .filter(|(_, crl)| {
                        CertificateRevocationList::from_der(&crl.der)
                            .is_ok_and(|(_, parsed)| crl_signed_by(&parsed, &link.signer_spki_der))
                    })
                    .max_by_key(|(_, crl)| crl.this_update)
                    .map(|(index, _)| index)
            })
            .flatten();
        self.crl_of_signer
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(link.signer_spki, found);
        found
    }

    /// Remembers a path verified in a handshake, for `on_connect` to pick up.
    pub fn remember(&self, key: [u8; 32], verified: Arc<VerifiedCertificate>) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() >= RECENT_PATHS {
            recent.clear();
        }
        recent.insert(key, verified);
    }

    /// A path verified in a recent handshake with this trust, if any.
    pub fn recall(&self, key: &[u8; 32]) -> Option<Arc<VerifiedCertificate>> {
        self.recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }
}

/// A digest of a presented chain (leaf and intermediates, in order), to find its verified path.
pub fn chain_key(end_entity: &[u8], intermediates: &[impl AsRef<[u8]>]) -> [u8; 32] {
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    for der in std::iter::once(end_entity).chain(intermediates.iter().map(AsRef::as_ref)) {
        digest.update(&(der.len() as u64).to_be_bytes());
        digest.update(der);
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(digest.finish().as_ref());
    key
}

fn crl_signed_by(crl: &CertificateRevocationList<'_>, spki_der: &[u8]) -> bool {
    SubjectPublicKeyInfo::from_der(spki_der)
        .is_ok_and(|(_, spki)| crl.verify_signature(&spki).is_ok())
}

#[cfg(test)]
mod tests {
    use devpki::CertificateAuthority;

    use super::super::testing::{CA, leaf, trust, verified};
    use super::*;

    #[test]
    fn the_verified_path_names_the_key_that_signed_each_certificate() {
        let intermediate = CA
            .intermediate("Issuing CA", "Test", time::Duration::days(1))
            .unwrap();
        let bundle = trust(&[&CA], &[]);
        let issued = leaf(&intermediate, "w", &[]);
        let path = verified(&bundle, &issued, &[&intermediate]).unwrap();
        assert_eq!(path.links.len(), 2);
        assert_eq!(path.links[0].fingerprint, Fingerprint::of_der(&issued.der));
        assert_eq!(
            path.links[1].fingerprint,
            Fingerprint::of_der(&intermediate.cert_der())
        );
        assert_eq!(path.links[1].signer_spki, bundle.cas()[0].spki);
        assert_eq!(path.issuer_spki, path.links[0].signer_spki);
        assert_ne!(path.issuer_spki, bundle.cas()[0].spki);
        assert_eq!(path.anchor, bundle.cas()[0].fingerprint);
        assert_eq!(path.fingerprints().count(), 3);
    }

    #[test]
    fn an_intermediate_in_its_roots_crl_takes_all_its_leaves_with_it() {
        let intermediate = CA
            .intermediate("Issuing CA", "Test", time::Duration::days(1))
            .unwrap();
        let serial = x509_parser::parse_x509_certificate(&intermediate.cert_der())
            .unwrap()
            .1
            .raw_serial()
            .to_vec();
        let crl = CA
            .revocation_list(&[serial], time::Duration::days(1))
            .unwrap();
        let issued = leaf(&intermediate, "w", &[]);
        let before = trust(&[&CA], &[]);
        let path = verified(&before, &issued, &[&intermediate]).unwrap();
        let after = trust(&[&CA], &[crl]);
        assert_eq!(
            verified(&after, &issued, &[&intermediate]).unwrap_err(),
            webpki::Error::CertRevoked
        );
        // And on a connection verified before the CRL was loaded.
        assert_eq!(
            after.check_revocation(&path, OffsetDateTime::now_utc()),
            Err(RevocationFailure::Revoked {
                fingerprint: Fingerprint::of_der(&intermediate.cert_der())
            })
        );
    }

    #[test]
    fn a_leaf_in_its_intermediates_crl_is_revoked() {
        let intermediate = CA
            .intermediate("Issuing CA", "Test", time::Duration::days(1))
            .unwrap();
        let revoked = leaf(&intermediate, "w", &[]);
        let kept = leaf(&intermediate, "x", &[]);
        let crl = intermediate
            .revocation_list(
                std::slice::from_ref(&revoked.serial),
                time::Duration::days(1),
            )
            .unwrap();
        let bundle = trust(&[&CA], &[crl]);
        assert_eq!(
            verified(&bundle, &revoked, &[&intermediate]).unwrap_err(),
            webpki::Error::CertRevoked
        );
        assert!(verified(&bundle, &kept, &[&intermediate]).is_ok());
    }

    #[test]
    fn two_same_named_cas_each_get_their_own_crl() {
        let twin = CertificateAuthority::new("Test CA", "Test", time::Duration::days(1)).unwrap();
        let (ca_revoked, ca_kept) = (leaf(&CA, "a", &[]), leaf(&CA, "b", &[]));
        let (twin_revoked, twin_kept) = (leaf(&twin, "c", &[]), leaf(&twin, "d", &[]));
        let crls = [
            CA.revocation_list(
                std::slice::from_ref(&ca_revoked.serial),
                time::Duration::days(1),
            )
            .unwrap(),
            twin.revocation_list(
                std::slice::from_ref(&twin_revoked.serial),
                time::Duration::days(1),
            )
            .unwrap(),
        ];
        // In either order of the bundle and of the CRLs.
        for (cas, crls) in [
            (vec![&*CA, &twin], crls.to_vec()),
            (vec![&twin, &*CA], crls.iter().rev().cloned().collect()),
        ] {
            let bundle = trust(&cas, &crls);
            assert!(verified(&bundle, &ca_kept, &[]).is_ok());
            assert!(verified(&bundle, &twin_kept, &[]).is_ok());
            assert_eq!(
                verified(&bundle, &ca_revoked, &[]).unwrap_err(),
                webpki::Error::CertRevoked
            );
            assert_eq!(
                verified(&bundle, &twin_revoked, &[]).unwrap_err(),
                webpki::Error::CertRevoked
            );
        }
    }

    #[test]
    fn a_crl_that_no_ca_of_its_issuers_name_signed_is_refused_at_load() {
        let twin = CertificateAuthority::new("Test CA", "Test", time::Duration::days(1)).unwrap();
        let crl = twin.revocation_list(&[], time::Duration::days(1)).unwrap();
        let der = {
            use rustls_pki_types::CertificateRevocationListDer;
            use rustls_pki_types::pem::PemObject;
            CertificateRevocationListDer::from_pem_slice(crl.as_bytes())
                .unwrap()
                .to_vec()
        };
        let Err(error) = Trust::load(
            Path::new("bundle.pem"),
            &[CertificateDer::from(CA.cert_der())],
            vec![("twin.crl".into(), der)],
            super::super::provider().signature_verification_algorithms,
        ) else {
            panic!("a CRL no CA of its issuer's name signed is refused");
        };
        let message = error.to_string();
        assert!(message.contains("twin.crl"), "{message}");
        assert!(message.contains("no CA of that name"), "{message}");
    }

    #[test]
    fn of_two_crls_of_one_ca_the_newer_counts_and_on_a_tie_the_first() {
        let (x, y) = (leaf(&CA, "x", &[]), leaf(&CA, "y", &[]));
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let crl = |serial: &[u8], this_update| {
            CA.revocation_list_between(
                &[serial.to_vec()],
                this_update,
                now + time::Duration::days(1),
            )
            .unwrap()
        };
        let older = crl(&x.serial, now - time::Duration::hours(2));
        let newer = crl(&y.serial, now - time::Duration::hours(1));
        for crls in [
            [older.clone(), newer.clone()],
            [newer.clone(), older.clone()],
        ] {
            let bundle = trust(&[&CA], &crls);
            assert!(
                verified(&bundle, &x, &[]).is_ok(),
                "the older CRL does not count"
            );
            assert_eq!(
                verified(&bundle, &y, &[]).unwrap_err(),
                webpki::Error::CertRevoked
            );
        }
        let tie = crl(&y.serial, now - time::Duration::hours(2));
        let bundle = trust(&[&CA], &[older, tie]);
        assert_eq!(
            verified(&bundle, &x, &[]).unwrap_err(),
            webpki::Error::CertRevoked
        );
        assert!(verified(&bundle, &y, &[]).is_ok());
    }

    #[test]
    fn a_crl_is_good_up_to_its_next_update_and_not_a_second_longer() {
        let issued = leaf(&CA, "w", &[]);
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let next_update = now + time::Duration::hours(1);
        let crl = CA
            .revocation_list_between(&[], now - time::Duration::minutes(1), next_update)
            .unwrap();
        let bundle = trust(&[&CA], &[crl]);
        let path = verified(&bundle, &issued, &[]).unwrap();
        assert!(bundle.check_revocation(&path, next_update).is_ok());
        assert_eq!(
            bundle.check_revocation(&path, next_update + time::Duration::seconds(1)),
            Err(RevocationFailure::CrlExpired {
                crl: "test.crl".into(),
                next_update
            })
        );
    }

    #[test]
    fn an_expired_crl_fails_closed_for_the_certificates_its_ca_signed() {
        let issued = leaf(&CA, "w", &[]);
        let crl = CA.revocation_list(&[], time::Duration::days(1)).unwrap();
        let bundle = trust(&[&CA], &[crl]);
        let path = verified(&bundle, &issued, &[]).unwrap();
        assert!(matches!(
            bundle.check_revocation(&path, OffsetDateTime::now_utc() + time::Duration::days(2)),
            Err(RevocationFailure::CrlExpired { .. })
        ));
        assert!(
            bundle
                .check_revocation(&path, OffsetDateTime::now_utc())
                .is_ok()
        );
    }

    #[test]
    fn a_chain_from_outside_the_bundle_or_for_the_wrong_purpose_is_refused() {
        let stranger = CertificateAuthority::new("Stranger", "X", time::Duration::days(1)).unwrap();
        let bundle = trust(&[&CA], &[]);
        assert_eq!(
            verified(&bundle, &leaf(&stranger, "w", &[]), &[]).unwrap_err(),
            webpki::Error::UnknownIssuer
        );
        let server = CA
            .issue(&devpki::LeafSpec::server(time::Duration::hours(1)))
            .unwrap();
        assert!(verified(&bundle, &server, &[]).is_err());
    }

    #[test]
    fn verified_paths_are_remembered_by_the_chain_presented() {
        let bundle = trust(&[&CA], &[]);
        let issued = leaf(&CA, "w", &[]);
        let path = verified(&bundle, &issued, &[]).unwrap();
        let key = chain_key(&issued.der, &[] as &[Vec<u8>]);
        assert!(bundle.recall(&key).is_none());
        bundle.remember([0; 32], path.clone());
        bundle.remember(key, path.clone());
        assert!(bundle.recall(&[0; 32]).is_some(), "both are remembered");
        assert_eq!(
            bundle.recall(&key).unwrap().leaf.fingerprint,
            path.leaf.fingerprint
        );
        assert_ne!(
            key,
            chain_key(&issued.der, std::slice::from_ref(&issued.der))
        );
        // Bounded: when full, it starts over (a miss costs a verification in on_connect).
        for n in 0..RECENT_PATHS {
            let mut other = [1; 32];
            other[..8].copy_from_slice(&(n as u64).to_be_bytes());
            bundle.remember(other, path.clone());
        }
        assert!(bundle.recall(&key).is_none());
        assert!(bundle.recent.lock().unwrap().len() < RECENT_PATHS);
    }
}
