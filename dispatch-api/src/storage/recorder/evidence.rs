//! The certificates clients present, as evidence for the tryout (`auth::tryout`): every
//! distinct one, not only the last, and not only those that authenticated. A certificate
//! refused for its client's mode, for a disabled client, or as matching two clients still
//! belongs to the client (or clients) its bindings name; a registry change must not capture it
//! meanwhile. Each is kept (`presented_certificates`) until it expires, with the network it was
//! last presented from and the names it carries: what tells one instance of a client from
//! another, so that the tryout reads the newest certificates of each instance however often
//! another renews (see [`ranked_instances`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::CertificateSeen;
use crate::identity::{Fingerprint, PeerCertificate};

/// A certificate a client presented, and when it last did: a row of `presented_certificates`.
#[derive(Debug, Clone)]
pub(super) struct Presented {
    pub(super) fingerprint: Fingerprint,
    pub(super) last_seen: i64,
    /// Unix seconds: the earliest notAfter of its verified path; it is evidence until then.
    pub(super) not_after: i64,
    pub(super) chain: Arc<[Vec<u8>]>,
    /// The network it was last presented from (`identity::source_network`).
    pub(super) network: String,
}

/// Instances of a client whose certificates a registry change is tried against, at most: the
/// newest certificates of each (an instance: a source network and the names its certificate
/// carries, with its issuer; see [`LIVE_PER_INSTANCE`]), the most recently seen instances
/// first. An instance renewing every few minutes adds one certificate after another, each
/// replacing an earlier one as its evidence, so it never crowds the others out. Each tried
/// costs a chain verification on every admin change; what no tryout reads is pruned hourly.
pub const LIVE_INSTANCES_PER_CLIENT: usize = 16;

/// Certificates of one instance a registry change is tried against: its newest two by last
/// sight, so that during a swap (new connections on the renewed certificate, a connection in
/// flight still on the last) and after a rollback both are live.
pub const LIVE_PER_INSTANCE: usize = 2;

/// Certificates of each client a registry change is tried against whatever their instance:
/// the ones it presented last. With the instances' own, no rule of before is lost: replicas
/// behind one network address and one name count as one instance, and their last eight stay.
pub const LIVE_PER_CLIENT: usize = 8;

/// The rows of `presented_certificates` that `filter` (an SQL condition) keeps, each with
/// `per_instance` (its rank among its instance's certificates, the most recently seen first),
/// `instance_rank` (its instance's rank among the client's, by their latest sight) and
/// `per_client` (its rank among all the client's certificates, the most recently seen first):
/// the live certificates are those within [`LIVE_PER_INSTANCE`] of one of the client's latest
/// [`LIVE_INSTANCES_PER_CLIENT`] instances, or within its latest [`LIVE_PER_CLIENT`]; pruning
/// deletes the others. An instance is a source network and the names its certificate carries
/// with its issuer; a row of before those columns is an instance of its own.
pub fn ranked_instances(filter: &str) -> String {
    format!(
        "WITH instances AS (\
           SELECT client, fingerprint, chain, COALESCE(network, '') AS network, \
             COALESCE(names, fingerprint) AS names, \
             ROW_NUMBER() OVER (PARTITION BY client, network, COALESCE(names, fingerprint) \
               ORDER BY last_seen DESC, fingerprint) AS per_instance, \
             MAX(last_seen) OVER (PARTITION BY client, network, COALESCE(names, fingerprint)) \
               AS instance_seen, \
             ROW_NUMBER() OVER (PARTITION BY client ORDER BY last_seen DESC, fingerprint) \
               AS per_client \
           FROM presented_certificates WHERE {filter}), \
         ranked AS (\
           SELECT client, fingerprint, chain, per_instance, per_client, \
             DENSE_RANK() OVER (PARTITION BY client \
               ORDER BY instance_seen DESC, network, names) AS instance_rank \
           FROM instances) "
    )
}

/// The condition on `ranked` ([`ranked_instances`]) of a live certificate, with `$a`, `$b` and
/// `$c` bound to [`LIVE_PER_INSTANCE`], [`LIVE_INSTANCES_PER_CLIENT`] and [`LIVE_PER_CLIENT`].
pub fn live_rank(a: &str, b: &str, c: &str) -> String {
    format!("((per_instance <= {a} AND instance_rank <= {b}) OR per_client <= {c})")
}

/// Distinct certificates one usage row keeps between two writes (half a second apart): a
/// client's instances present a few at a time; past this many, the rest are noted by their
/// next request after the write.
pub(super) const MAX_PRESENTED: usize = 16;

/// Clients whose refused certificates are kept between two writes, at most. Only registered
/// clients get here (an unknown certificate names nobody), so the registry bounds it already;
/// this bounds a registry of millions too.
const MAX_REFUSED_CLIENTS: usize = 4096;

/// The names a certificate carries (its issuer, then its CNs, DNS names and URIs, sorted), which
/// with its source network tell one instance of a client from another: a renewal keeps them,
/// another instance elsewhere (or with names of its own) has others. Empty for a leaf that does not parse.
pub(super) fn instance_names(chain: &[Vec<u8>]) -> String {
    let Some(leaf) = chain
        .first()
        .and_then(|der| PeerCertificate::from_der(der).ok())
    else {
        return String::new();
    };
    let mut names: Vec<&str> = (leaf.common_names.iter())
        .chain(&leaf.dns_names)
        .chain(&leaf.uri_sans)
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    names.dedup();
    // The issuer too: an instance moved to another CA under the same names is another instance
    // until the old one's certificate is gone.
    let mut joined = format!("{}|{}", leaf.issuer.as_str(), names.join(","));
    // A bound on the column: the names of one instance, not a list of thousands.
    if joined.len() > MAX_NAMES_BYTES {
        let mut end = MAX_NAMES_BYTES;
        while !joined.is_char_boundary(end) {
            end -= 1;
        }
        joined.truncate(end);
    }
    joined
}

/// The notBefore (unix seconds) of a chain's leaf, if it parses.
pub(super) fn leaf_not_before(chain: &[Vec<u8>]) -> Option<i64> {
    let leaf = PeerCertificate::from_der(chain.first()?).ok()?;
    Some(leaf.not_before.unix_timestamp())
}

/// Bytes of [`instance_names`] kept, at most.
const MAX_NAMES_BYTES: usize = 1024;

pub(super) fn note_presented(
    presented: &mut Vec<Presented>,
    seen: &CertificateSeen,
    network: &str,
    at: i64,
) {
    if let Some(known) = presented
        .iter_mut()
        .find(|p| p.fingerprint == seen.fingerprint)
    {
        if at >= known.last_seen {
            known.last_seen = at;
            if known.network != network {
                network.clone_into(&mut known.network);
            }
        }
    } else if presented.len() < MAX_PRESENTED {
        presented.push(Presented {
            fingerprint: seen.fingerprint,
            last_seen: at,
            not_after: seen.not_after,
            chain: seen.chain.clone(),
            network: network.to_owned(),
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
    network: &str,
    at: i64,
) {
    if let Some(presented) = refused.get_mut(client) {
        note_presented(presented, seen, network, at);
    } else if refused.len() < MAX_REFUSED_CLIENTS {
        let mut presented = Vec::new();
        note_presented(&mut presented, seen, network, at);
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
        note_refused(&mut refused, "a", &seen(1), "10.0.1.0/24", 10);
        note_refused(&mut refused, "a", &seen(1), "10.0.2.0/24", 12);
        note_refused(&mut refused, "a", &seen(1), "10.0.3.0/24", 11);
        note_refused(&mut refused, "b", &seen(1), "10.0.1.0/24", 11);
        assert_eq!(refused["a"].len(), 1);
        assert_eq!(refused["a"][0].last_seen, 12);
        // Where it was last seen from, not where a late-written earlier sight was.
        assert_eq!(refused["a"][0].network, "10.0.2.0/24");
        assert_eq!(refused["a"][0].not_after, 1_001);
        assert_eq!(refused["b"].len(), 1);
        for n in 0..2 * MAX_PRESENTED as u8 {
            note_refused(&mut refused, "a", &seen(n), "10.0.1.0/24", 13);
        }
        assert_eq!(refused["a"].len(), MAX_PRESENTED);
        for n in 0..MAX_REFUSED_CLIENTS + 10 {
            note_refused(&mut refused, &format!("c{n}"), &seen(1), "10.0.1.0/24", 14);
        }
        assert_eq!(refused.len(), MAX_REFUSED_CLIENTS);
    }
}
