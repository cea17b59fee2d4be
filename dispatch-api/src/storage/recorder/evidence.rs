//! The certificates clients present, as evidence for the tryout (`auth::tryout`): every
//! distinct one, not only the last, and not only those that authenticated. A certificate
//! refused for its client's mode, for a disabled client, or as matching two clients still
//! belongs to the client (or clients) its bindings name; a registry change must not capture it
//! meanwhile. Each is kept (`presented_certificates`) until it expires, bounded per client.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::CertificateSeen;
use crate::identity::Fingerprint;

/// A certificate a client presented, and when it last did: a row of `presented_certificates`.
#[derive(Debug, Clone)]
pub(super) struct Presented {
    pub(super) fingerprint: Fingerprint,
    pub(super) last_seen: i64,
    /// Unix seconds: the earliest notAfter of its verified path; it is evidence until then.
    pub(super) not_after: i64,
    pub(super) chain: Arc<[Vec<u8>]>,
}

/// Certificates a registry change is tried against, at most, per client: the latest it
/// presented. A client renewing its instances one by one presents two or three at a time; each
/// tried costs a chain verification on every admin change. The rest are pruned hourly.
pub const LIVE_PER_CLIENT: usize = 8;

/// Distinct certificates one usage row keeps between two writes (half a second apart): a
/// client's instances present a few at a time; past this many, the rest are noted by their
/// next request after the write.
pub(super) const MAX_PRESENTED: usize = 16;

/// Clients whose refused certificates are kept between two writes, at most. Only registered
/// clients get here (an unknown certificate names nobody), so the registry bounds it already;
/// this bounds a registry of millions too.
const MAX_REFUSED_CLIENTS: usize = 4096;

pub(super) fn note_presented(presented: &mut Vec<Presented>, seen: &CertificateSeen, at: i64) {
    if let Some(known) = presented
        .iter_mut()
        .find(|p| p.fingerprint == seen.fingerprint)
    {
        known.last_seen = known.last_seen.max(at);
    } else if presented.len() < MAX_PRESENTED {
        presented.push(Presented {
            fingerprint: seen.fingerprint,
            last_seen: at,
            not_after: seen.not_after,
            chain: seen.chain.clone(),
        });
    }
}

/// Certificates presented and refused, by the client their bindings name, not yet written:
/// no usage (the request was refused), only evidence.
pub(super) type RefusedByClient = BTreeMap<String, Vec<Presented>>;

pub(super) fn note_refused(
    refused: &mut RefusedByClient,
    client: &str,
    seen: &CertificateSeen,
    at: i64,
) {
    if let Some(presented) = refused.get_mut(client) {
        note_presented(presented, seen, at);
    } else if refused.len() < MAX_REFUSED_CLIENTS {
        let mut presented = Vec::new();
        note_presented(&mut presented, seen, at);
        refused.insert(client.to_owned(), presented);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::SpkiHash;

    fn seen(fingerprint: u8) -> CertificateSeen {
        CertificateSeen {
            fingerprint: Fingerprint::of_der(&[fingerprint]),
            not_after: 1_000 + i64::from(fingerprint),
            issuer_spki: SpkiHash::of_der(b"ca"),
            chain: Arc::new([vec![fingerprint]]),
        }
    }

    #[test]
    fn refused_certificates_are_kept_per_client_once_each_with_their_expiry_and_bounded() {
        let mut refused = RefusedByClient::new();
        note_refused(&mut refused, "a", &seen(1), 10);
        note_refused(&mut refused, "a", &seen(1), 12);
        note_refused(&mut refused, "b", &seen(1), 11);
        assert_eq!(refused["a"].len(), 1);
        assert_eq!(refused["a"][0].last_seen, 12);
        assert_eq!(refused["a"][0].not_after, 1_001);
        assert_eq!(refused["b"].len(), 1);
        for n in 0..2 * MAX_PRESENTED as u8 {
            note_refused(&mut refused, "a", &seen(n), 13);
        }
        assert_eq!(refused["a"].len(), MAX_PRESENTED);
        for n in 0..MAX_REFUSED_CLIENTS + 10 {
            note_refused(&mut refused, &format!("c{n}"), &seen(1), 14);
        }
        assert_eq!(refused.len(), MAX_REFUSED_CLIENTS);
    }
}
