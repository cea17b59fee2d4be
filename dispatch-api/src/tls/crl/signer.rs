//! The CRLs of one signing key combined as they apply: per scope, the newest complete CRL and
//! the newest delta on top of it; and what they say of one certificate.

use std::collections::HashSet;
use std::path::PathBuf;

use time::OffsetDateTime;

use super::{Crl, Entry, Scope};
use crate::identity::CertificateScope;

/// One scope's revocation list as it applies: a complete CRL, merged with its newest delta.
#[derive(Debug)]
struct Effective {
    scope: Scope,
    revoked: HashSet<Vec<u8>>,
    /// Of those, the ones revoked for keyCompromise.
    compromised: HashSet<Vec<u8>>,
    /// The files it was made of and their nextUpdate: past any of them, the status is stale.
    sources: Vec<(PathBuf, Option<OffsetDateTime>)>,
}

/// Why a certificate's status by its signer's CRLs is not "good".
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::tls) enum CrlVerdict {
    Revoked,
    Expired {
        crl: PathBuf,
        next_update: OffsetDateTime,
    },
    /// The key has CRLs, but none covers this certificate (or they could not be combined).
    NotCovered,
}

/// What the CRLs of one signing key say. No CRL at all: the key is not checked.
#[derive(Debug, Default)]
pub(in crate::tls) struct SignerCrls {
    lists: Vec<Effective>,
    /// The CRLs of this key could not be combined (a delta without its base): nothing is good.
    unusable: bool,
}

impl SignerCrls {
    /// Combines the CRLs of one key: per scope, the newest complete CRL and the newest delta
    /// on top of it. Errors name the file at fault.
    pub fn combine(crls: &[&Crl]) -> Result<Self, (PathBuf, String)> {
        let mut complete: Vec<&Crl> = Vec::new();
        for crl in crls.iter().filter(|c| !c.is_delta()) {
            match complete.iter_mut().find(|c| c.scope == crl.scope) {
                Some(chosen) if crl.recency() > chosen.recency() => *chosen = crl,
                Some(_) => {}
                None => complete.push(crl),
            }
        }
        let mut deltas: Vec<Option<&Crl>> = vec![None; complete.len()];
        for delta in crls.iter().filter(|c| c.is_delta()) {
            let fail = |detail: String| Err((delta.path.clone(), detail));
            let Some(index) = complete.iter().position(|c| c.scope == delta.scope) else {
                return fail(
                    "it is a delta CRL, and the complete CRL it builds on (same CA, same scope) is not loaded: add it to tls.crl_files".into(),
                );
            };
            let base = complete[index];
            let (Some(base_number), Some(wanted), Some(number)) =
                (&base.number, &delta.delta_of, &delta.number)
            else {
                return fail(format!(
                    "it is a delta CRL, and the complete CRL `{}` carries no CRL Number to apply it to",
                    base.path.display()
                ));
            };
            if wanted > base_number {
                return fail(format!(
                    "it is a delta CRL on complete CRL number {wanted}, newer than the one loaded (`{}`, number {base_number}): load that complete CRL",
                    base.path.display()
                ));
            }
            // A delta no newer than the complete CRL is already part of it.
            let newer = number > base_number
                && deltas[index].is_none_or(|chosen| chosen.number.as_ref() < Some(number));
            if newer {
                deltas[index] = Some(delta);
            }
        }
        let lists = complete
            .into_iter()
            .zip(deltas)
            .map(|(base, delta)| {
                let mut revoked: HashSet<Vec<u8>> = base.revoked().cloned().collect();
                let mut compromised: HashSet<Vec<u8>> = base.compromised().cloned().collect();
                let mut sources = vec![(base.path.clone(), base.next_update)];
                if let Some(delta) = delta {
                    revoked.extend(delta.revoked().cloned());
                    compromised.extend(delta.compromised().cloned());
                    for (serial, entry) in &delta.entries {
                        if *entry == Entry::Removed {
                            revoked.remove(serial);
                            compromised.remove(serial);
                        }
                    }
                    sources.push((delta.path.clone(), delta.next_update));
                }
                Effective {
                    scope: base.scope.clone(),
                    revoked,
                    compromised,
                    sources,
                }
            })
            .collect();
        Ok(Self {
            lists,
            unusable: false,
        })
    }

    /// CRLs of a key that cannot be combined: every certificate it signed has unknown status.
    pub fn unusable() -> Self {
        Self {
            lists: Vec::new(),
            unusable: true,
        }
    }

    /// Whether a CRL that covers the certificate with this serial and scope revokes it for
    /// keyCompromise (whatever the CRL's nextUpdate: a stolen key stays stolen).
    pub fn key_compromised(&self, serial: &[u8], cert: &CertificateScope) -> bool {
        self.lists
            .iter()
            .any(|list| list.scope.covers(cert) && list.compromised.contains(serial))
    }

    /// The status of the certificate with this serial and scope at `now`.
    pub fn status(
        &self,
        serial: &[u8],
        cert: &CertificateScope,
        now: OffsetDateTime,
    ) -> Result<(), CrlVerdict> {
        if self.unusable {
            return Err(CrlVerdict::NotCovered);
        }
        if self.lists.is_empty() {
            return Ok(());
        }
        let mut covered = false;
        for list in self.lists.iter().filter(|l| l.scope.covers(cert)) {
            covered = true;
            for (crl, next_update) in &list.sources {
                if let Some(next_update) = next_update.filter(|next| *next < now) {
                    return Err(CrlVerdict::Expired {
                        crl: crl.clone(),
                        next_update,
                    });
                }
            }
            if list.revoked.contains(serial) {
                return Err(CrlVerdict::Revoked);
            }
        }
        if covered {
            Ok(())
        } else {
            Err(CrlVerdict::NotCovered)
        }
    }
}
