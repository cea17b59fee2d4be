//! Whether a verified path still stands, on every request and in the handshake: its anchor in
//! the bundle and valid, every certificate of the path unrevoked by the CRLs of the key that
//! signed it, and the anchor's key standing, up through the CAs of the bundle above it.

use std::sync::Arc;

use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::SubjectPublicKeyInfo;

use super::Trust;
use crate::identity::{
    ChainLink, DistinguishedName, Fingerprint, PeerCertificate, SpkiHash, VerifiedCertificate,
};
use crate::tls::bundle::Certified;
use crate::tls::crl::{Crl, CrlVerdict, SignerCrls};
use crate::tls::path::PathFailure;

/// Keys followed up from a path's anchor, at most: deeper than any real CA hierarchy.
const MAX_LINEAGE: usize = 8;

impl Trust {
    /// The fingerprints of the CAs of the bundle above the path's anchor, up to its root,
    /// following each key's first certificate in the bundle.
    #[cfg(test)]
    pub fn cas_above(&self, verified: &VerifiedCertificate) -> Vec<Fingerprint> {
        let mut above = Vec::new();
        let mut key = verified.anchor_spki;
        while let Some(link) = self.first_of(&key).and_then(|c| c.signed.as_ref()) {
            let parent = link.signer_spki;
            let Some(first) = self.first_of(&parent) else {
                break;
            };
            if above.contains(&first.fingerprint) {
                break;
            }
            above.push(first.fingerprint);
            key = parent;
        }
        above
    }

    /// Whether the first certificate of the path's anchor's key was signed by a CA of the bundle.
    #[cfg(test)]
    pub fn anchor_signed_in_bundle(&self, verified: &VerifiedCertificate) -> bool {
        self.first_of(&verified.anchor_spki)
            .is_some_and(|c| c.signed.is_some())
    }

    #[cfg(test)]
    fn first_of(&self, key: &SpkiHash) -> Option<&Certified> {
        self.lineage
            .get(key)
            .and_then(|certified| certified.first())
    }

    /// What the bundle, the CRLs and the deny list say of a verified path now, beyond webpki:
    /// its anchor is still a CA of this bundle and valid, no certificate of the path is revoked
    /// by the CRLs of the key that signed it, and the anchor's key stands ([`Self::key_stands`]:
    /// the CRLs and `denied`, the registry's deny list, reach every CA of the bundle above it).
    /// A key with no CRL is not checked (unknown status is allowed); an expired CRL fails
    /// closed, as nginx does: renew CRLs before their nextUpdate.
    pub fn check_path(
        &self,
        verified: &VerifiedCertificate,
        now: OffsetDateTime,
        denied: impl Fn(&Fingerprint) -> bool,
    ) -> Result<(), PathFailure> {
        // The certificates of the anchor's key (several when a CA was renewed); no allocation:
        // this runs on every request.
        let same_key = self
            .lineage
            .get(&verified.anchor_spki)
            .map_or(&[][..], Vec::as_slice);
        let Some(not_after) = same_key.iter().map(|ca| ca.not_after).max() else {
            return Err(PathFailure::AnchorRemoved {
                anchor: verified.anchor_spki,
            });
        };
        if !same_key
            .iter()
            .any(|ca| ca.not_before <= now && now <= ca.not_after)
        {
            return Err(PathFailure::AnchorExpired {
                anchor: verified.anchor_spki,
                not_after,
            });
        }
        for link in &verified.links {
            self.link_status(link, now)?;
        }
        let mut below = [verified.anchor_spki; MAX_LINEAGE];
        self.key_stands(verified.anchor_spki, now, &denied, &mut below, 0)
    }

    /// Whether a key of the bundle's CAs stands at `now`. No certificate of it is `denied` (one
    /// takes the whole key: fail closed), and one of its certificates stands: valid now (when
    /// none is, the CA as a whole is past its validity, and all are weighed), and either signed
    /// by no CA of the bundle, or not revoked by the CRLs of the key that signed it, which
    /// itself stands. When none stands, the first one's failure, in bundle order. `below` holds
    /// the keys already on the way up (a loop of cross-signatures ends there).
    fn key_stands(
        &self,
        key: SpkiHash,
        now: OffsetDateTime,
        denied: &impl Fn(&Fingerprint) -> bool,
        below: &mut [SpkiHash; MAX_LINEAGE],
        depth: usize,
    ) -> Result<(), PathFailure> {
        let certified = self.lineage.get(&key).map_or(&[][..], Vec::as_slice);
        if let Some(denied) = certified.iter().find(|c| denied(&c.fingerprint)) {
            return Err(PathFailure::Denied {
                fingerprint: denied.fingerprint,
            });
        }
        below[depth] = key;
        let valid = |c: &&Certified| c.not_before <= now && now <= c.not_after;
        let any_valid = certified.iter().any(|c| valid(&c));
        let mut failure = None;
        for certificate in certified.iter().filter(|c| !any_valid || valid(c)) {
            let Some(link) = &certificate.signed else {
                return Ok(());
            };
            let parent = &link.signer_spki;
            let stands = self.link_status(link, now).and_then(|()| {
                if depth + 1 == MAX_LINEAGE || below[..=depth].contains(parent) {
                    Ok(())
                } else {
                    self.key_stands(*parent, now, denied, below, depth + 1)
                }
            });
            match stands {
                Ok(()) => return Ok(()),
                Err(error) => {
                    failure.get_or_insert(error);
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// Whether a CRL of the key that signed the leaf of `chain` (DER, leaf first, as a client
    /// presented it) revokes that leaf for keyCompromise: then its public key is stolen, and
    /// every certificate of it must go (the caller puts the key on the deny list). The signer
    /// is a CA of the bundle or a certificate of the chain, of the leaf's issuer name, whose
    /// key verifies the leaf's signature: no path is verified (the leaf is revoked, and may
    /// have expired).
    pub fn compromised_key(&self, chain: &[Vec<u8>]) -> Option<PeerCertificate> {
        if self.crls.is_empty() {
            return None;
        }
        let leaf_der = chain.first()?;
        let (_, cert) = X509Certificate::from_der(leaf_der).ok()?;
        let issuer = DistinguishedName::from_x509(cert.issuer());
        let bundled = self
            .cas
            .iter()
            .filter(|ca| ca.subject == issuer)
            .map(|ca| ca.spki_der.clone());
        let sent = chain.iter().skip(1).filter_map(|der| {
            let (_, ca) = X509Certificate::from_der(der).ok()?;
            (DistinguishedName::from_x509(ca.subject()) == issuer)
                .then(|| ca.public_key().raw.to_vec())
        });
        let signer = bundled.chain(sent).find(|spki| {
            SubjectPublicKeyInfo::from_der(spki)
                .is_ok_and(|(_, key)| cert.verify_signature(Some(&key)).is_ok())
        })?;
        let leaf = PeerCertificate::from_der(leaf_der).ok()?;
        let link = ChainLink {
            fingerprint: leaf.fingerprint,
            serial: cert.raw_serial().to_vec(),
            issuer,
            signer_spki: SpkiHash::of_der(&signer),
            signer_spki_der: signer.into(),
            scope: leaf.crl_scope.clone(),
        };
        self.crls_of(&link)
            .key_compromised(&link.serial, &link.scope)
            .then_some(leaf)
    }

    /// `link`'s status in the CRLs of the key that signed it (good when there are no CRLs).
    fn link_status(&self, link: &ChainLink, now: OffsetDateTime) -> Result<(), PathFailure> {
        if self.crls.is_empty() {
            return Ok(());
        }
        self.crls_of(link)
            .status(&link.serial, &link.scope, now)
            .map_err(|verdict| match verdict {
                CrlVerdict::Revoked => PathFailure::Revoked {
                    fingerprint: link.fingerprint,
                },
                CrlVerdict::Expired { crl, next_update } => {
                    PathFailure::CrlExpired { crl, next_update }
                }
                CrlVerdict::NotCovered => PathFailure::StatusUnknown {
                    fingerprint: link.fingerprint,
                },
            })
    }

    /// The CRLs of the key that signed `link`: known for the bundle's CAs, looked up (by name,
    /// then by signature) and remembered for other keys.
    fn crls_of(&self, link: &ChainLink) -> Arc<SignerCrls> {
        if let Some(known) = self
            .crls_of_signer
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&link.signer_spki)
        {
            return known.clone();
        }
        // Only keys outside the bundle get here: the bundle's were settled at load.
        let named_in_bundle = !self.issuers.keys_named(&link.issuer).is_empty();
        let found = if named_in_bundle {
            // A key under the name of a CA of the bundle, but not its key: that CA re-keyed.
            // Its CRLs were refused at load (`bundle::crls_of_bundle`); where the name has any
            // CRL at all, what this key signed has unknown status, never "good".
            if self.crls.iter().any(|crl| crl.issuer == link.issuer) {
                SignerCrls::unusable()
            } else {
                SignerCrls::default()
            }
        } else {
            let signed: Vec<&Crl> = self
                .crls
                .iter()
                .filter(|crl| crl.issuer == link.issuer && crl.signed_by(&link.signer_spki_der))
                .collect();
            // The CRLs of one name combined at load; a subset of them (those of this key) that
            // does not is no status at all.
            SignerCrls::combine(&signed).unwrap_or_else(|_| SignerCrls::unusable())
        };
        let found = Arc::new(found);
        self.crls_of_signer
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(link.signer_spki, found.clone());
        found
    }
}
