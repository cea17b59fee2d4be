//! A verified path's standing after the handshake: why it is no longer good enough
//! ([`PathFailure`], checked on every request), and the digest that finds the path verified for
//! a presented chain.

use std::path::PathBuf;

use rustls_pki_types::UnixTime;
use time::OffsetDateTime;

use crate::identity::{Fingerprint, SpkiHash};

/// Why a path is not (or no longer) good enough, beyond what webpki checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathFailure {
    /// A certificate of the path (or a CA of the bundle above its anchor) is listed in the CRL
    /// of the key that signed it.
    Revoked { fingerprint: Fingerprint },
    /// A CRL of a key of the path is past its nextUpdate: fail closed until it is renewed.
    CrlExpired {
        crl: PathBuf,
        next_update: OffsetDateTime,
    },
    /// The key that signed this certificate has CRLs, but none that covers it (a partition
    /// that is not loaded): its status is unknown, which is not "good".
    StatusUnknown { fingerprint: Fingerprint },
    /// A certificate of the anchor's key, or of a CA key of the bundle above it, is on the deny
    /// list (the registry's revoked fingerprints).
    Denied { fingerprint: Fingerprint },
    /// The path's anchor is no longer a CA of the bundle (removed since the handshake).
    AnchorRemoved { anchor: SpkiHash },
    /// The path's anchor is outside its validity.
    AnchorExpired {
        anchor: SpkiHash,
        not_after: OffsetDateTime,
    },
}

impl PathFailure {
    pub(super) fn to_webpki(&self, now: UnixTime) -> webpki::Error {
        match self {
            Self::Revoked { .. } | Self::Denied { .. } => webpki::Error::CertRevoked,
            Self::CrlExpired { next_update, .. } => webpki::Error::CrlExpired {
                time: now,
                next_update: unix_time(*next_update),
            },
            Self::StatusUnknown { .. } => webpki::Error::UnknownRevocationStatus,
            Self::AnchorRemoved { .. } => webpki::Error::UnknownIssuer,
            Self::AnchorExpired { not_after, .. } => webpki::Error::CertExpired {
                time: now,
                not_after: unix_time(*not_after),
            },
        }
    }
}

pub(super) fn unix_time(at: OffsetDateTime) -> UnixTime {
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        at.unix_timestamp().max(0).unsigned_abs(),
    ))
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
