//! Who the client CA bundle and the CRLs trust, as one value swapped with the rest of the
//! material: path verification (webpki) that KEEPS the verified path, and revocation of every
//! certificate of that path by the CRLs of the key that signed it (`crl`: complete, delta and
//! partitioned CRLs as RFC 5280 means them).
//!
//! Why not rustls' `WebPkiClientVerifier`: it answers only yes or no, so nothing downstream
//! could know which CA signed the leaf (bindings matched the printed issuer, which any CA in
//! the bundle can copy), and webpki picks a CRL by its issuer's NAME, so two CAs of one name (a
//! rollover) could not each have a CRL. Here a CRL belongs to the key whose signature it
//! carries, and the same check runs in the handshake and again on every request (a CRL loaded
//! while a connection is open applies to its next request).
//!
//! A path ends at whichever CA of the bundle webpki reached first, often an issuing CA that
//! sits in the bundle beside its root. The root still speaks for it: each CA of the bundle
//! that another CA of the bundle signed carries that link (its "lineage", settled at load), so
//! the root's CRL and the deny list reach it whether or not the path went through the root.
//! A key stands while one of its certificates does, up to the root: a CA renewed without a new
//! key, whose old certificate its parent revoked as superseded, stands by the renewed one, at
//! every level. A certificate of a key on the deny list takes the whole key with it.
//! On every request the path's anchor must also still be a CA of the current bundle, by key,
//! and within its validity: removing a CA takes its open connections with it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use time::OffsetDateTime;

use super::bundle::{BundleCa, Certified, crl_error, crls_of_bundle, lineage};
use super::crl::{Crl, SignerCrls};
use super::error::MaterialError;
use super::path::unix_time;
use crate::identity::{ChainLink, IssuerIndex, PeerCertificate, SpkiHash, VerifiedCertificate};

mod standing;

/// Verified paths remembered between the handshake and `on_connect` (and for resumptions).
const RECENT_PATHS: usize = 4096;

/// Verified paths remembered between two tryouts of registry changes (every live certificate,
/// verified again): apart from the handshakes' ones, so that a tryout over tens of thousands of
/// clients' certificates never clears what handshakes remember.
const TRIED_PATHS: usize = 65_536;

/// Verified paths by a digest of the presented chain, at most `bound` (when full, it starts
/// over: a miss costs one verification).
#[derive(Debug, Default)]
struct PathCache(Mutex<HashMap<[u8; 32], Arc<VerifiedCertificate>>>);

impl PathCache {
    fn remember(&self, key: [u8; 32], verified: Arc<VerifiedCertificate>, bound: usize) {
        let mut paths = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if paths.len() >= bound {
            paths.clear();
        }
        paths.insert(key, verified);
    }

    fn recall(&self, key: &[u8; 32]) -> Option<Arc<VerifiedCertificate>> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }
}

/// The trust of the listener: CA bundle, CRLs and what was verified under them.
pub struct Trust {
    cas: Vec<BundleCa>,
    /// The same CAs as webpki takes them, in the same order as `cas`.
    anchors: Vec<TrustAnchor<'static>>,
    issuers: IssuerIndex,
    /// Each key of the bundle's CAs: its certificates and what of the bundle signed each.
    lineage: HashMap<SpkiHash, Vec<Certified>>,
    crls: Vec<Crl>,
    /// CRLs left out of this load, each with why (signed by a key outside the bundle): logged
    /// and counted by the reload, while the other CRLs apply.
    refused_crls: Vec<MaterialError>,
    algorithms: WebPkiSupportedAlgorithms,
    /// The CRLs of each signing key, combined; keys outside the bundle (intermediates) are
    /// looked up when first seen.
    crls_of_signer: RwLock<HashMap<SpkiHash, Arc<SignerCrls>>>,
    /// Paths verified in recent handshakes, by a digest of the presented chain.
    recent: PathCache,
    /// Paths the tryouts of registry changes verified again.
    tried: PathCache,
}

impl Trust {
    /// Loads the bundle and the CRLs. A CRL must be signed by a CA of the bundle that bears
    /// its issuer's name, or (for an intermediate's CRL) name no CA of the bundle at all; one
    /// that is neither is left out ([`Self::refused_crls`]). The CRLs of one issuer must
    /// combine (`crl::SignerCrls::combine`).
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
                not_before: info.not_before,
                not_after: info.not_after,
                spki_der,
            });
            anchors.push(anchor);
        }
        let issuers = IssuerIndex::new(cas.iter().map(|ca| (ca.subject.clone(), ca.spki)));
        let lineage = lineage(&cas, ca_certs);
        let crls = crls
            .into_iter()
            .map(|(path, der)| {
                Crl::parse(path.clone(), der).map_err(|detail| crl_error(&path, detail))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let combined = crls_of_bundle(&cas, &crls)?;
        Ok(Self {
            refused_crls: combined.refused,
            anchors,
            cas,
            issuers,
            lineage,
            crls,
            algorithms,
            crls_of_signer: RwLock::new(combined.by_signer),
            recent: PathCache::default(),
            tried: PathCache::default(),
        })
    }

    /// A trust with no CA and no CRL: no certificate verifies under it (for fuzzing and tests
    /// of the paths that involve no certificate).
    pub fn empty() -> Self {
        Self {
            cas: Vec::new(),
            anchors: Vec::new(),
            issuers: IssuerIndex::default(),
            lineage: HashMap::new(),
            crls: Vec::new(),
            refused_crls: Vec::new(),
            algorithms: super::provider().signature_verification_algorithms,
            crls_of_signer: RwLock::new(HashMap::new()),
            recent: PathCache::default(),
            tried: PathCache::default(),
        }
    }

    /// The CAs of the bundle.
    pub fn cas(&self) -> &[BundleCa] {
        &self.cas
    }

    /// The CRLs this load left out, each with why and the file it came from.
    pub fn refused_crls(&self) -> &[MaterialError] {
        &self.refused_crls
    }

    /// The bundle's CAs by name, for matching bindings.
    pub fn issuers(&self) -> &IssuerIndex {
        &self.issuers
    }

    /// Verifies a presented chain at `now` for client authentication and returns the path:
    /// chain to an anchor of the bundle, validity, clientAuth EKU (webpki), and revocation of
    /// every certificate of the path and of the CAs above its anchor (here).
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
            // The deny list is the registry's: every request checks it (`auth`).
            self.check_path(&verified, at, |_| false)
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
        let mut verified = found.into_inner().ok_or(webpki::Error::UnknownIssuer)?;
        verified.presented = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|der| der.to_vec())
            .collect();
        Ok(Arc::new(verified))
    }

    /// Verifies a chain again at a time inside its leaf's validity: a resumed session's, or a
    /// chain stored as a client's live certificate. Whether it is still valid now is decided per
    /// request (`auth::authenticate`), not here; trust, revocation and the anchor are checked
    /// as in the handshake.
    pub fn verify_within_validity(
        &self,
        leaf: &PeerCertificate,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: OffsetDateTime,
    ) -> Result<Arc<VerifiedCertificate>, webpki::Error> {
        let at = now.clamp(leaf.not_before, leaf.not_after);
        self.verify(end_entity, intermediates, unix_time(at))
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
                scope: parsed.crl_scope.clone(),
            })
            .collect();
        let parsed = || std::iter::once(leaf).chain(intermediates.iter().map(|(_, p)| p));
        Ok(VerifiedCertificate {
            issuer_spki: links[0].signer_spki,
            leaf: leaf.clone(),
            links,
            anchor: anchor.fingerprint,
            anchor_spki: anchor.spki,
            not_before: parsed()
                .map(|c| c.not_before)
                .max()
                .unwrap_or(leaf.not_before),
            not_after: parsed()
                .map(|c| c.not_after)
                .min()
                .unwrap_or(leaf.not_after),
            presented: Arc::new([]),
        })
    }

    /// Remembers a path verified in a handshake, for `on_connect` to pick up.
    pub fn remember(&self, key: [u8; 32], verified: Arc<VerifiedCertificate>) {
        self.recent.remember(key, verified, RECENT_PATHS);
    }

    /// A path verified in a recent handshake with this trust, if any.
    pub fn recall(&self, key: &[u8; 32]) -> Option<Arc<VerifiedCertificate>> {
        self.recent.recall(key)
    }

    /// Remembers a path a tryout verified again, for the next tryout under this trust (never
    /// in the handshakes' paths).
    pub fn remember_tried(&self, key: [u8; 32], verified: Arc<VerifiedCertificate>) {
        self.tried.remember(key, verified, TRIED_PATHS);
    }

    /// A path verified with this trust in a recent handshake or tryout, if any.
    pub fn recall_tried(&self, key: &[u8; 32]) -> Option<Arc<VerifiedCertificate>> {
        self.recall(key).or_else(|| self.tried.recall(key))
    }
}

#[cfg(test)]
mod tests {
    use devpki::CertificateAuthority;

    use devpki::openssl::{CrlSpec, OpensslCa, OpensslCert, delta_of};

    use super::super::path::{PathFailure, chain_key};
    use super::super::testing::{CA, leaf, openssl_trust, openssl_verified, trust, verified};
    use super::*;
    use crate::identity::Fingerprint;

    /// An openssl root CA in a temp dir (kept for the test's life) and two of its clients.
    struct Pki {
        _dir: tempfile::TempDir,
        root: OpensslCa,
    }

    fn pki() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let root = OpensslCa::root(dir.path(), "/O=Acme/CN=Acme Root");
        Pki { _dir: dir, root }
    }

    fn client(ca: &OpensslCa, cn: &str) -> OpensslCert {
        ca.client(&format!("/O=Acme/CN={cn}"), "")
    }

    /// A CRL of `ca` revoking `revoked` (keyCompromise), numbered `number`, with these
    /// extension lines.
    fn crl(ca: &OpensslCa, revoked: &[&OpensslCert], number: u64, extensions: &str) -> String {
        ca.crl(&CrlSpec {
            revoked: revoked.iter().map(|c| (*c, "keyCompromise")).collect(),
            number,
            extensions,
            ..CrlSpec::default()
        })
    }

    /// A CRL of `ca` revoking these CAs' certificates as superseded (as a CA does on renewal).
    fn superseding(ca: &OpensslCa, revoked: &[&OpensslCa]) -> String {
        let certificates: Vec<OpensslCert> = revoked.iter().map(|ca| ca.as_cert()).collect();
        ca.crl(&CrlSpec {
            revoked: certificates.iter().map(|c| (c, "superseded")).collect(),
            number: 1,
            ..CrlSpec::default()
        })
    }

    /// A complete CRL of `ca` numbered `number` that puts `held` on hold.
    fn hold(ca: &OpensslCa, held: &OpensslCert, number: u64) -> String {
        ca.crl(&CrlSpec {
            revoked: vec![(held, "certificateHold")],
            number,
            ..CrlSpec::default()
        })
    }

    /// A delta CRL of `ca` on complete CRL 1, numbered `number`, that lifts `held`'s hold.
    fn release(ca: &OpensslCa, held: &OpensslCert, number: u64) -> String {
        ca.crl(&CrlSpec {
            revoked: vec![(held, "removeFromCRL")],
            number,
            extensions: &delta_of(1),
            ..CrlSpec::default()
        })
    }

    fn load_error(cas: &[&OpensslCa], crls: &[(&str, &str)]) -> String {
        match openssl_trust(cas, crls) {
            Ok(_) => panic!("the CRLs load"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn a_base_crl_with_an_empty_delta_keeps_the_bases_revocation() {
        let pki = pki();
        let (revoked, kept) = (client(&pki.root, "a"), client(&pki.root, "b"));
        let base = crl(&pki.root, &[&revoked], 1, "");
        let delta = crl(&pki.root, &[], 2, &delta_of(1));
        for crls in [
            [("base.crl", &*base), ("delta.crl", &*delta)],
            [("delta.crl", &*delta), ("base.crl", &*base)],
        ] {
            let bundle = openssl_trust(&[&pki.root], &crls).unwrap();
            assert_eq!(
                openssl_verified(&bundle, &revoked, &[]).unwrap_err(),
                webpki::Error::CertRevoked
            );
            assert!(openssl_verified(&bundle, &kept, &[]).is_ok());
        }
    }

    #[test]
    fn a_delta_crl_adds_its_revocations_to_its_base() {
        let pki = pki();
        let (revoked, kept) = (client(&pki.root, "a"), client(&pki.root, "b"));
        let base = crl(&pki.root, &[], 1, "");
        let delta = crl(&pki.root, &[&revoked], 2, &delta_of(1));
        let bundle =
            openssl_trust(&[&pki.root], &[("base.crl", &base), ("delta.crl", &delta)]).unwrap();
        assert_eq!(
            openssl_verified(&bundle, &revoked, &[]).unwrap_err(),
            webpki::Error::CertRevoked
        );
        assert!(openssl_verified(&bundle, &kept, &[]).is_ok());
    }

    #[test]
    fn a_delta_entry_marked_remove_from_crl_releases_a_held_certificate() {
        let pki = pki();
        let (held, revoked) = (client(&pki.root, "a"), client(&pki.root, "b"));
        let base = pki.root.crl(&CrlSpec {
            revoked: vec![(&held, "certificateHold"), (&revoked, "keyCompromise")],
            number: 1,
            ..CrlSpec::default()
        });
        let delta = pki.root.crl(&CrlSpec {
            revoked: vec![(&held, "removeFromCRL")],
            number: 2,
            extensions: &delta_of(1),
            ..CrlSpec::default()
        });
        let bundle =
            openssl_trust(&[&pki.root], &[("base.crl", &base), ("delta.crl", &delta)]).unwrap();
        assert!(openssl_verified(&bundle, &held, &[]).is_ok());
        assert_eq!(
            openssl_verified(&bundle, &revoked, &[]).unwrap_err(),
            webpki::Error::CertRevoked
        );
        // Without the delta, the hold stands.
        let base_only = openssl_trust(&[&pki.root], &[("base.crl", &base)]).unwrap();
        assert_eq!(
            openssl_verified(&base_only, &held, &[]).unwrap_err(),
            webpki::Error::CertRevoked
        );
    }

    #[test]
    fn a_delta_crl_without_its_base_is_refused_at_load_naming_the_file() {
        let pki = pki();
        let delta = crl(&pki.root, &[], 2, &delta_of(1));
        let message = load_error(&[&pki.root], &[("delta.crl", &delta)]);
        assert!(message.contains("delta.crl"), "{message}");
        assert!(message.contains("delta CRL"), "{message}");
        // Also for an intermediate's CRLs, whose key the bundle does not hold.
        let intermediate = pki.root.intermediate("/O=Acme/CN=Acme Issuing", "");
        let delta = crl(&intermediate, &[], 2, &delta_of(1));
        let message = load_error(&[&pki.root], &[("issuing-delta.crl", &delta)]);
        assert!(message.contains("issuing-delta.crl"), "{message}");
    }

    #[test]
    fn a_delta_crl_on_a_newer_base_than_the_one_loaded_is_refused_at_load() {
        let pki = pki();
        let base = crl(&pki.root, &[], 1, "");
        let delta = crl(&pki.root, &[], 3, &delta_of(2));
        let message = load_error(&[&pki.root], &[("base.crl", &base), ("delta.crl", &delta)]);
        assert!(message.contains("delta.crl"), "{message}");
        assert!(message.contains("base.crl"), "{message}");
        // On the base it names (or an older one), it applies.
        let delta = crl(&pki.root, &[], 3, &delta_of(1));
        assert!(openssl_trust(&[&pki.root], &[("base.crl", &base), ("delta.crl", &delta)]).is_ok());
    }

    #[test]
    fn a_delta_crl_no_newer_than_the_complete_crl_is_already_in_it_and_left_out() {
        let pki = pki();
        let held = client(&pki.root, "a");
        let (base, stale) = (hold(&pki.root, &held, 3), release(&pki.root, &held, 2));
        let bundle =
            openssl_trust(&[&pki.root], &[("base.crl", &base), ("delta.crl", &stale)]).unwrap();
        assert_eq!(
            openssl_verified(&bundle, &held, &[]).unwrap_err(),
            webpki::Error::CertRevoked
        );
        // Of two deltas on one base, the higher number counts.
        let base = crl(&pki.root, &[], 1, "");
        let adds = crl(&pki.root, &[&held], 2, &delta_of(1));
        let newer = crl(&pki.root, &[], 3, &delta_of(1));
        for crls in [
            [("base.crl", &*base), ("2.crl", &*adds), ("3.crl", &*newer)],
            [("base.crl", &*base), ("3.crl", &*newer), ("2.crl", &*adds)],
        ] {
            let bundle = openssl_trust(&[&pki.root], &crls).unwrap();
            assert!(openssl_verified(&bundle, &held, &[]).is_ok());
        }
    }

    #[test]
    fn a_delta_numbered_like_its_complete_crl_is_not_newer_and_of_two_alike_the_first_counts() {
        let pki = pki();
        let held = client(&pki.root, "a");
        let hold = |number| hold(&pki.root, &held, number);
        let release = |number| release(&pki.root, &held, number);
        let (base, same_number) = (hold(2), release(2));
        let bundle = openssl_trust(
            &[&pki.root],
            &[("base.crl", &base), ("delta.crl", &same_number)],
        )
        .unwrap();
        assert_eq!(
            openssl_verified(&bundle, &held, &[]).unwrap_err(),
            webpki::Error::CertRevoked
        );
        // Two deltas of one number on one base: the first loaded counts.
        let base = hold(1);
        let (releases, keeps) = (release(2), crl(&pki.root, &[], 2, &delta_of(1)));
        let bundle = openssl_trust(
            &[&pki.root],
            &[("base.crl", &base), ("a.crl", &releases), ("b.crl", &keeps)],
        )
        .unwrap();
        assert!(openssl_verified(&bundle, &held, &[]).is_ok());
        let bundle = openssl_trust(
            &[&pki.root],
            &[("base.crl", &base), ("b.crl", &keeps), ("a.crl", &releases)],
        )
        .unwrap();
        assert_eq!(
            openssl_verified(&bundle, &held, &[]).unwrap_err(),
            webpki::Error::CertRevoked
        );
    }

    #[test]
    fn crls_of_one_name_that_do_not_combine_for_the_key_that_signed_them_give_no_status() {
        // Two issuing CAs of one name (a rollover), outside the bundle: the old one signed the
        // complete CRL, the new one a delta on it. Loaded by name they combine; for the new
        // key alone the delta has no base, so its leaves have no known status.
        let pki = pki();
        let old = pki.root.intermediate("/O=Acme/CN=Acme Issuing", "");
        let new = pki.root.intermediate("/O=Acme/CN=Acme Issuing", "");
        let base = crl(&old, &[], 1, "");
        let delta = crl(&new, &[], 2, &delta_of(1));
        let bundle =
            openssl_trust(&[&pki.root], &[("base.crl", &base), ("delta.crl", &delta)]).unwrap();
        assert!(openssl_verified(&bundle, &client(&old, "o"), &[&old]).is_ok());
        assert_eq!(
            openssl_verified(&bundle, &client(&new, "n"), &[&new]).unwrap_err(),
            webpki::Error::UnknownRevocationStatus
        );
    }

    #[test]
    fn a_newer_crl_by_number_wins_over_a_later_this_update_with_a_lower_number() {
        let pki = pki();
        let (x, y) = (client(&pki.root, "x"), client(&pki.root, "y"));
        let now = OffsetDateTime::now_utc();
        let numbered = |revoked: &OpensslCert, number, age: time::Duration| {
            pki.root.crl(&CrlSpec {
                revoked: vec![(revoked, "keyCompromise")],
                number,
                this_update: Some(now - age),
                ..CrlSpec::default()
            })
        };
        let higher_number = numbered(&x, 5, time::Duration::hours(2));
        let later_date = numbered(&y, 4, time::Duration::hours(1));
        for crls in [
            [("5.crl", &*higher_number), ("4.crl", &*later_date)],
            [("4.crl", &*later_date), ("5.crl", &*higher_number)],
        ] {
            let bundle = openssl_trust(&[&pki.root], &crls).unwrap();
            assert_eq!(
                openssl_verified(&bundle, &x, &[]).unwrap_err(),
                webpki::Error::CertRevoked
            );
            assert!(
                openssl_verified(&bundle, &y, &[]).is_ok(),
                "CRL 4 does not count"
            );
        }
    }

    #[test]
    fn a_partitioned_crl_covers_only_the_certificates_of_its_partition() {
        let pki = pki();
        let point = |n| format!("crlDistributionPoints=URI:http://crl.acme.test/{n}.crl\n");
        let in_one = pki.root.client("/O=Acme/CN=one", &point(1));
        let in_two = pki.root.client("/O=Acme/CN=two", &point(2));
        let partition = |n, revoked: &[&OpensslCert]| {
            crl(
                &pki.root,
                revoked,
                1,
                &format!(
                    "issuingDistributionPoint=critical,@idp\n[idp]\nfullname=URI:http://crl.acme.test/{n}.crl\n"
                ),
            )
        };
        let one = partition(1, &[&in_one]);
        let bundle = openssl_trust(&[&pki.root], &[("1.crl", &one)]).unwrap();
        assert_eq!(
            openssl_verified(&bundle, &in_one, &[]).unwrap_err(),
            webpki::Error::CertRevoked
        );
        // No CRL of the root covers partition 2: unknown, not good.
        assert_eq!(
            openssl_verified(&bundle, &in_two, &[]).unwrap_err(),
            webpki::Error::UnknownRevocationStatus
        );
        // A revocation in partition 1's CRL does not reach partition 2 (and the other way).
        let two = partition(2, &[&in_one]);
        let bundle = openssl_trust(&[&pki.root], &[("1.crl", &one), ("2.crl", &two)]).unwrap();
        assert!(openssl_verified(&bundle, &in_two, &[]).is_ok());
        let bundle = openssl_trust(&[&pki.root], &[("2.crl", &two)]).unwrap();
        assert_eq!(
            openssl_verified(&bundle, &in_one, &[]).unwrap_err(),
            webpki::Error::UnknownRevocationStatus
        );
    }

    #[test]
    fn a_user_certificates_only_crl_does_not_speak_for_the_cas_below() {
        let pki = pki();
        let intermediate = pki.root.intermediate("/O=Acme/CN=Acme Issuing", "");
        let leaf = client(&intermediate, "w");
        let direct = client(&pki.root, "d");
        let users = crl(
            &pki.root,
            &[&direct],
            1,
            "issuingDistributionPoint=critical,@idp\n[idp]\nonlyuser=TRUE\n",
        );
        let bundle = openssl_trust(&[&pki.root], &[("users.crl", &users)]).unwrap();
        assert_eq!(
            openssl_verified(&bundle, &direct, &[]).unwrap_err(),
            webpki::Error::CertRevoked
        );
        assert_eq!(
            openssl_verified(&bundle, &leaf, &[&intermediate]).unwrap_err(),
            webpki::Error::UnknownRevocationStatus
        );
        let cas = crl(
            &pki.root,
            &[],
            1,
            "issuingDistributionPoint=critical,@idp\n[idp]\nonlyCA=TRUE\n",
        );
        let bundle =
            openssl_trust(&[&pki.root], &[("users.crl", &users), ("cas.crl", &cas)]).unwrap();
        assert!(openssl_verified(&bundle, &leaf, &[&intermediate]).is_ok());
    }

    #[test]
    fn crls_this_service_cannot_apply_completely_are_refused_at_load_naming_file_and_extension() {
        let pki = pki();
        let idp = |line: &str| format!("issuingDistributionPoint=critical,@idp\n[idp]\n{line}\n");
        for (extensions, expected) in [
            (idp("onlysomereasons=keyCompromise"), "onlySomeReasons"),
            (idp("indirectCRL=TRUE"), "indirectCRL"),
            (idp("onlyAA=TRUE"), "onlyContainsAttributeCerts"),
            (
                "1.3.6.1.4.1.55555.1 = critical,ASN1:NULL\n".to_owned(),
                "1.3.6.1.4.1.55555.1",
            ),
        ] {
            let odd = crl(&pki.root, &[], 1, &extensions);
            let message = load_error(&[&pki.root], &[("odd.crl", &odd)]);
            assert!(message.contains("odd.crl"), "{message}");
            assert!(message.contains(expected), "{expected}: {message}");
        }
        // An unknown extension that is not critical is read past.
        let fine = crl(&pki.root, &[], 1, "1.3.6.1.4.1.55555.1 = ASN1:NULL\n");
        assert!(openssl_trust(&[&pki.root], &[("fine.crl", &fine)]).is_ok());
    }

    #[test]
    fn a_roots_crl_revoking_an_intermediate_of_the_bundle_refuses_its_leaves_though_the_path_ends_at_it()
     {
        let pki = pki();
        let intermediate = pki.root.intermediate("/O=Acme/CN=Acme Issuing", "");
        let leaf = client(&intermediate, "w");
        let revokes = crl(&pki.root, &[&intermediate.as_cert()], 1, "");
        let before = openssl_trust(&[&pki.root, &intermediate], &[]).unwrap();
        let path = openssl_verified(&before, &leaf, &[]).unwrap();
        assert_eq!(path.anchor, Fingerprint::of_der(&intermediate.cert_der()));
        assert!(before.anchor_signed_in_bundle(&path));
        assert_eq!(
            before.cas_above(&path),
            [Fingerprint::of_der(&pki.root.cert_der())]
        );
        // In either order of the bundle, with or without the intermediate sent.
        for cas in [[&pki.root, &intermediate], [&intermediate, &pki.root]] {
            let after = openssl_trust(&cas, &[("root.crl", &revokes)]).unwrap();
            for sent in [&[][..], &[&intermediate][..]] {
                assert_eq!(
                    openssl_verified(&after, &leaf, sent).unwrap_err(),
                    webpki::Error::CertRevoked
                );
            }
            // And on a connection verified before the CRL came.
            assert_eq!(
                after.check_path(&path, OffsetDateTime::now_utc(), |_| false),
                Err(PathFailure::Revoked {
                    fingerprint: Fingerprint::of_der(&intermediate.cert_der())
                })
            );
        }
    }

    #[test]
    fn the_ancestry_of_a_ca_reaches_through_every_ca_of_the_bundle_up_to_the_root() {
        let pki = pki();
        let middle = pki.root.intermediate("/O=Acme/CN=Acme Policy", "");
        let issuing = middle.intermediate("/O=Acme/CN=Acme Issuing", "");
        let leaf = client(&issuing, "w");
        let bundle = openssl_trust(&[&issuing, &middle, &pki.root], &[]).unwrap();
        let path = openssl_verified(&bundle, &leaf, &[]).unwrap();
        assert_eq!(
            bundle.cas_above(&path),
            [
                Fingerprint::of_der(&middle.cert_der()),
                Fingerprint::of_der(&pki.root.cert_der())
            ]
        );
        // The root's CRL revoking the middle CA takes the issuing CA's leaves with it.
        let revokes = crl(&pki.root, &[&middle.as_cert()], 1, "");
        let after =
            openssl_trust(&[&issuing, &middle, &pki.root], &[("root.crl", &revokes)]).unwrap();
        assert_eq!(
            after.check_path(&path, OffsetDateTime::now_utc(), |_| false),
            Err(PathFailure::Revoked {
                fingerprint: Fingerprint::of_der(&middle.cert_der())
            })
        );
    }

    #[test]
    fn a_root_is_nobodys_ancestor_and_an_unrelated_ca_of_the_bundle_is_not_an_ancestor() {
        let pki = pki();
        let other = OpensslCa::root(&pki.root.dir, "/O=Acme/CN=Acme Issuing");
        let leaf = client(&other, "w");
        let bundle = openssl_trust(&[&pki.root, &other], &[]).unwrap();
        let path = openssl_verified(&bundle, &leaf, &[]).unwrap();
        assert!(!bundle.anchor_signed_in_bundle(&path));
        assert!(bundle.cas_above(&path).is_empty());
        let direct = openssl_verified(&bundle, &client(&pki.root, "d"), &[]).unwrap();
        assert!(!bundle.anchor_signed_in_bundle(&direct));
    }

    #[test]
    fn a_renewed_root_is_the_same_anchor_and_not_the_parent_of_its_twin() {
        let pki = pki();
        let renewed = pki.root.renewed();
        assert_ne!(renewed.cert_der(), pki.root.cert_der());
        let leaf = client(&pki.root, "w");
        let both = openssl_trust(&[&pki.root, &renewed], &[]).unwrap();
        let path = openssl_verified(&both, &leaf, &[]).unwrap();
        assert!(
            both.cas_above(&path).is_empty(),
            "{:?}",
            both.cas_above(&path)
        );
        assert!(!both.anchor_signed_in_bundle(&path));
        // Either certificate of the key keeps a path verified under the other.
        let now = OffsetDateTime::now_utc();
        assert!(
            openssl_trust(&[&renewed], &[])
                .unwrap()
                .check_path(&path, now, |_| false)
                .is_ok()
        );
        assert!(
            openssl_trust(&[&pki.root], &[])
                .unwrap()
                .check_path(&path, now, |_| false)
                .is_ok()
        );
    }

    #[test]
    fn an_intermediate_renewed_on_its_key_stands_while_one_of_its_certificates_is_unrevoked() {
        let pki = pki();
        let old = pki.root.intermediate("/O=Acme/CN=Acme Issuing", "");
        let renewed = old.renewed_by(&pki.root, 1);
        assert_ne!(old.cert_der(), renewed.cert_der());
        let leaf = client(&old, "w");
        let now = OffsetDateTime::now_utc();
        let revoking = |revoked: &[&OpensslCa]| superseding(&pki.root, revoked);
        // The root revokes the old certificate as superseded, as CAs do on renewal: whichever
        // of the two comes first in the bundle, the key stands by the renewed one, in the
        // handshake and on every request.
        let superseded = revoking(&[&old]);
        for order in [[&old, &renewed, &pki.root], [&renewed, &old, &pki.root]] {
            let bundle = openssl_trust(&order, &[("root.crl", &superseded)]).unwrap();
            let path = openssl_verified(&bundle, &leaf, &[]).unwrap();
            assert_eq!(bundle.check_path(&path, now, |_| false), Ok(()));
        }
        // The renewed one revoked instead: the old one still stands.
        let bundle = openssl_trust(
            &[&old, &renewed, &pki.root],
            &[("root.crl", &revoking(&[&renewed]))],
        )
        .unwrap();
        assert!(openssl_verified(&bundle, &leaf, &[]).is_ok());
        // Both revoked: the key stands by neither, and the first one's revocation is named.
        let both = openssl_trust(
            &[&old, &renewed, &pki.root],
            &[("root.crl", &revoking(&[&old, &renewed]))],
        )
        .unwrap();
        assert_eq!(
            openssl_verified(&both, &leaf, &[]).unwrap_err(),
            webpki::Error::CertRevoked
        );
        let before = openssl_trust(&[&old, &renewed, &pki.root], &[]).unwrap();
        let path = openssl_verified(&before, &leaf, &[]).unwrap();
        assert_eq!(
            both.check_path(&path, now, |_| false),
            Err(PathFailure::Revoked {
                fingerprint: Fingerprint::of_der(&old.cert_der())
            })
        );
        // The deny list reaches the root above both.
        let root = Fingerprint::of_der(&pki.root.cert_der());
        assert_eq!(
            before.check_path(&path, now, |ca| *ca == root),
            Err(PathFailure::Denied { fingerprint: root })
        );
    }

    #[test]
    fn an_expired_certificate_of_a_renewed_key_does_not_keep_it_standing_once_the_valid_one_is_revoked()
     {
        let pki = pki();
        let current = pki.root.intermediate("/O=Acme/CN=Acme Issuing", "");
        // An earlier certificate of the same key, past its notAfter and never revoked: CAs
        // drop expired certificates from their CRLs.
        let expired = current.renewed_by(&pki.root, 0);
        let leaf = client(&current, "w");
        let before = openssl_trust(&[&current, &pki.root], &[]).unwrap();
        let path = openssl_verified(&before, &leaf, &[]).unwrap();
        let revoked = crl(&pki.root, &[&current.as_cert()], 1, "");
        let bundle =
            openssl_trust(&[&expired, &current, &pki.root], &[("root.crl", &revoked)]).unwrap();
        let later = OffsetDateTime::now_utc() + time::Duration::minutes(1);
        assert_eq!(
            bundle.check_path(&path, later, |_| false),
            Err(PathFailure::Revoked {
                fingerprint: Fingerprint::of_der(&current.cert_der())
            })
        );
    }

    #[test]
    fn a_ca_renewed_on_its_key_above_the_anchor_stands_by_its_renewed_certificate_and_falls_with_it()
     {
        let pki = pki();
        let middle = pki.root.intermediate("/O=Acme/CN=Acme Policy", "");
        let issuing = middle.intermediate("/O=Acme/CN=Acme Issuing", "");
        let renewed = middle.renewed_by(&pki.root, 1);
        let leaf = client(&issuing, "w");
        let now = OffsetDateTime::now_utc();
        let cas = [&issuing, &middle, &renewed, &pki.root];
        // The root revokes the middle CA's old certificate as superseded: its key stands by
        // the renewed one, so the issuing CA below it does too.
        let superseded =
            openssl_trust(&cas, &[("root.crl", &superseding(&pki.root, &[&middle]))]).unwrap();
        let path = openssl_verified(&superseded, &leaf, &[]).unwrap();
        assert_eq!(path.anchor, Fingerprint::of_der(&issuing.cert_der()));
        assert_eq!(superseded.check_path(&path, now, |_| false), Ok(()));
        // Both revoked: the issuing CA's leaves fall with the middle CA's key.
        let both = openssl_trust(
            &cas,
            &[("root.crl", &superseding(&pki.root, &[&middle, &renewed]))],
        )
        .unwrap();
        assert_eq!(
            both.check_path(&path, now, |_| false),
            Err(PathFailure::Revoked {
                fingerprint: Fingerprint::of_der(&middle.cert_der())
            })
        );
        // An expired, never-revoked certificate of the middle key, first in the bundle, keeps
        // nothing standing once the valid one is revoked.
        let expired = middle.renewed_by(&pki.root, 0);
        let stale = openssl_trust(
            &[&issuing, &expired, &middle, &pki.root],
            &[("root.crl", &superseding(&pki.root, &[&middle]))],
        )
        .unwrap();
        let later = now + time::Duration::minutes(1);
        assert_eq!(
            stale.check_path(&path, later, |_| false),
            Err(PathFailure::Revoked {
                fingerprint: Fingerprint::of_der(&middle.cert_der())
            })
        );
        // One certificate of the middle key on the deny list takes the key, whichever is first.
        let denied = Fingerprint::of_der(&renewed.cert_der());
        for order in [cas, [&issuing, &renewed, &middle, &pki.root]] {
            assert_eq!(
                openssl_trust(&order, &[])
                    .unwrap()
                    .check_path(&path, now, |ca| *ca == denied),
                Err(PathFailure::Denied {
                    fingerprint: denied
                })
            );
        }
    }

    #[test]
    fn a_bundle_deeper_than_the_lineage_followed_is_checked_up_to_that_depth_without_failing() {
        let pki = pki();
        // Ten CAs in a line below the root, the leaf under the last: past the eight keys
        // followed up from the anchor, what is above is not weighed (no real hierarchy is that
        // deep), and nothing overflows.
        let mut line = vec![pki.root.intermediate("/O=Acme/CN=Acme 0", "")];
        for n in 1..10 {
            let next = line[n - 1].intermediate(&format!("/O=Acme/CN=Acme {n}"), "");
            line.push(next);
        }
        let leaf = client(&line[9], "w");
        let mut cas: Vec<&OpensslCa> = line.iter().rev().collect();
        cas.push(&pki.root);
        let bundle = openssl_trust(&cas, &[]).unwrap();
        let path = openssl_verified(&bundle, &leaf, &[]).unwrap();
        assert_eq!(path.anchor, Fingerprint::of_der(&line[9].cert_der()));
        assert_eq!(bundle.cas_above(&path).len(), 10);
        assert_eq!(
            bundle.check_path(&path, OffsetDateTime::now_utc(), |_| false),
            Ok(())
        );
        // The root, ten keys up, is past it: even on the deny list it is not weighed.
        let root = Fingerprint::of_der(&pki.root.cert_der());
        assert_eq!(
            bundle.check_path(&path, OffsetDateTime::now_utc(), |ca| *ca == root),
            Ok(())
        );
        // Within the depth followed, a denied CA still refuses.
        let denied = Fingerprint::of_der(&line[5].cert_der());
        assert_eq!(
            bundle.check_path(&path, OffsetDateTime::now_utc(), |ca| *ca == denied),
            Err(PathFailure::Denied {
                fingerprint: denied
            })
        );
    }

    #[test]
    fn a_path_whose_anchor_left_the_bundle_is_refused_on_its_next_check() {
        let partner =
            CertificateAuthority::new("Partner CA", "Test", time::Duration::days(1)).unwrap();
        let issued = leaf(&partner, "w", &[]);
        let both = trust(&[&CA, &partner], &[]);
        let path = verified(&both, &issued, &[]).unwrap();
        let now = OffsetDateTime::now_utc();
        assert!(both.check_path(&path, now, |_| false).is_ok());
        assert_eq!(
            trust(&[&CA], &[]).check_path(&path, now, |_| false),
            Err(PathFailure::AnchorRemoved {
                anchor: path.anchor_spki
            })
        );
        // Wherever it stands in the bundle.
        assert!(
            trust(&[&partner, &CA], &[])
                .check_path(&path, now, |_| false)
                .is_ok()
        );
    }

    #[test]
    fn a_path_whose_anchor_expired_is_refused_on_its_next_check() {
        let issued = leaf(&CA, "w", &[]);
        let bundle = trust(&[&CA], &[]);
        let path = verified(&bundle, &issued, &[]).unwrap();
        let not_after = bundle.cas()[0].not_after;
        assert!(bundle.check_path(&path, not_after, |_| false).is_ok());
        assert_eq!(
            bundle.check_path(&path, not_after + time::Duration::seconds(1), |_| false),
            Err(PathFailure::AnchorExpired {
                anchor: path.anchor_spki,
                not_after
            })
        );
        let not_before = bundle.cas()[0].not_before;
        assert!(bundle.check_path(&path, not_before, |_| false).is_ok());
        assert!(
            bundle
                .check_path(&path, not_before - time::Duration::seconds(1), |_| false)
                .is_err()
        );
    }

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
            after.check_path(&path, OffsetDateTime::now_utc(), |_| false),
            Err(PathFailure::Revoked {
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
    fn a_crl_that_no_ca_of_its_issuers_name_signed_is_refused_alone_naming_the_ca_to_add() {
        // The bundle's issuing CA was re-keyed under its name; the new certificate was not
        // added. Its CRL is refused (the other CRLs of the load apply), and the error names
        // the CA and the key to add.
        let pki = pki();
        let bundled = pki.root.intermediate("/O=Acme/CN=Acme Issuing", "");
        let rekeyed = pki.root.intermediate("/O=Acme/CN=Acme Issuing", "");
        let revoked = client(&pki.root, "revoked-by-the-root");
        let roots = crl(&pki.root, &[&revoked], 1, "");
        let outside = crl(&rekeyed, &[], 1, "");
        let bundle = openssl_trust(
            &[&pki.root, &bundled],
            &[("root.crl", &roots), ("rekeyed.crl", &outside)],
        )
        .unwrap();
        let [refused] = bundle.refused_crls() else {
            panic!("one CRL refused: {:?}", bundle.refused_crls());
        };
        let message = refused.to_string();
        assert!(message.contains("rekeyed.crl"), "{message}");
        assert!(message.contains("no CA of that name"), "{message}");
        assert!(message.contains("CN=Acme Issuing"), "{message}");
        assert!(message.contains("tls.client_ca_file"), "{message}");
        // The key identifier as `openssl x509 -text` prints it: AB:CD:...
        let identifier = message
            .split("key with identifier ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_default();
        assert!(
            identifier.len() > 20
                && identifier
                    .split(':')
                    .all(|byte| { byte.len() == 2 && byte.chars().all(|c| c.is_ascii_hexdigit()) }),
            "{message}"
        );
        assert_eq!(
            openssl_verified(&bundle, &revoked, &[]).unwrap_err(),
            webpki::Error::CertRevoked,
            "the root's CRL of the same load applies"
        );
    }

    #[test]
    fn a_certificate_revoked_for_key_compromise_names_its_key_and_other_reasons_do_not() {
        let pki = pki();
        let issuing = pki.root.intermediate("/O=Acme/CN=Acme Issuing", "");
        let stolen = client(&pki.root, "stolen");
        let renewed = pki.root.renewed_client(&stolen, "/O=Acme/CN=stolen", "");
        let superseded = client(&pki.root, "superseded");
        let below = client(&issuing, "below");
        let roots = pki.root.crl(&CrlSpec {
            revoked: vec![(&stolen, "keyCompromise"), (&superseded, "superseded")],
            number: 1,
            ..CrlSpec::default()
        });
        let issuings = crl(&issuing, &[&below], 1, "");
        // The issuing CA is outside the bundle: its CRL is found by the chain sent.
        let bundle = openssl_trust(
            &[&pki.root],
            &[("root.crl", &roots), ("issuing.crl", &issuings)],
        )
        .unwrap();
        let chain = |cert: &OpensslCert, cas: &[&OpensslCa]| -> Vec<Vec<u8>> {
            std::iter::once(cert.der())
                .chain(cas.iter().map(|ca| ca.cert_der()))
                .collect()
        };
        let found = bundle.compromised_key(&chain(&stolen, &[])).unwrap();
        assert_eq!(
            found.fingerprint,
            PeerCertificate::from_der(&stolen.der())
                .unwrap()
                .fingerprint
        );
        let renewed_key = PeerCertificate::from_der(&renewed.der()).unwrap().spki;
        assert_eq!(found.spki, renewed_key, "the key the renewal reused");
        assert!(bundle.compromised_key(&chain(&renewed, &[])).is_none());
        assert!(bundle.compromised_key(&chain(&superseded, &[])).is_none());
        assert!(
            bundle
                .compromised_key(&chain(&below, &[&issuing]))
                .is_some()
        );
        assert!(
            bundle.compromised_key(&chain(&below, &[])).is_none(),
            "without the chain, the signer outside the bundle is not known"
        );
        let no_crls = openssl_trust(&[&pki.root], &[]).unwrap();
        assert!(no_crls.compromised_key(&chain(&stolen, &[])).is_none());
    }

    #[test]
    fn a_leaf_of_a_rekeyed_ca_outside_the_bundle_under_a_name_with_crls_has_unknown_status() {
        let pki = pki();
        let bundled = pki.root.intermediate("/O=Acme/CN=Acme Issuing", "");
        let rekeyed = pki.root.intermediate("/O=Acme/CN=Acme Issuing", "");
        let leaf = client(&rekeyed, "a");
        let bundled_crl = crl(&bundled, &[], 1, "");
        let rekeyed_crl = crl(&rekeyed, &[], 1, "");
        // The name has CRLs (of the bundled key, or refused ones of the new key): the new
        // key's leaves are not "good" for lack of a CRL of their own.
        for crls in [
            vec![("bundled.crl", &*bundled_crl)],
            vec![("rekeyed.crl", &*rekeyed_crl)],
            vec![
                ("bundled.crl", &*bundled_crl),
                ("rekeyed.crl", &*rekeyed_crl),
            ],
        ] {
            let bundle = openssl_trust(&[&pki.root, &bundled], &crls).unwrap();
            assert_eq!(
                openssl_verified(&bundle, &leaf, &[&rekeyed]).unwrap_err(),
                webpki::Error::UnknownRevocationStatus,
                "{crls:?}"
            );
            assert!(openssl_verified(&bundle, &client(&bundled, "b"), &[]).is_ok());
        }
        // No CRL of that name at all: unknown status is allowed, as for any key without CRLs.
        let root_only = crl(&pki.root, &[], 1, "");
        let bundle = openssl_trust(&[&pki.root, &bundled], &[("root.crl", &root_only)]).unwrap();
        assert!(openssl_verified(&bundle, &leaf, &[&rekeyed]).is_ok());
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
        assert!(bundle.check_path(&path, next_update, |_| false).is_ok());
        assert_eq!(
            bundle.check_path(&path, next_update + time::Duration::seconds(1), |_| false),
            Err(PathFailure::CrlExpired {
                crl: "test.crl".into(),
                next_update
            })
        );
    }

    #[test]
    fn an_expired_crl_fails_closed_for_the_certificates_its_ca_signed() {
        let issued = leaf(&CA, "w", &[]);
        let crl = CA.revocation_list(&[], time::Duration::hours(1)).unwrap();
        let bundle = trust(&[&CA], &[crl]);
        let path = verified(&bundle, &issued, &[]).unwrap();
        assert!(matches!(
            bundle.check_path(
                &path,
                OffsetDateTime::now_utc() + time::Duration::hours(2),
                |_| false
            ),
            Err(PathFailure::CrlExpired { .. })
        ));
        assert!(
            bundle
                .check_path(&path, OffsetDateTime::now_utc(), |_| false)
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
        assert!(bundle.recent.0.lock().unwrap().len() < RECENT_PATHS);
    }
}
