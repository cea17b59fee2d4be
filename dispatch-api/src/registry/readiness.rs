//! Whether a client is ready for `mtls`: what it still lacks before its key path can close
//! without cutting it off. A rule of the migration, pure for its decision table; the admin API
//! words it (`routes::admin::not_ready_for_mtls`), the report and the flip check use it.

/// One thing a client still lacks before `mtls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gap {
    /// No certificate-authenticated request since the evidence window began.
    NoCertificateEvidence,
    /// Its API key was used within the quiet period, last at `last_at` (Unix seconds).
    KeyInUse { last_at: i64 },
}

/// The gaps (none: ready) of a client whose last certificate-authenticated and last
/// key-authenticated requests were at `last_certificate` and `last_key`, with the evidence
/// window begun at `evidence_since` and the quiet period, if there is one, at `quiet_since`.
pub fn readiness_gaps(
    last_certificate: Option<i64>,
    last_key: Option<i64>,
    evidence_since: i64,
    quiet_since: Option<i64>,
) -> Vec<Gap> {
    let mut gaps = Vec::new();
    if last_certificate.is_none_or(|seen| seen < evidence_since) {
        gaps.push(Gap::NoCertificateEvidence);
    }
    if let (Some(since), Some(last_at)) = (quiet_since, last_key)
        && last_at >= since
    {
        gaps.push(Gap::KeyInUse { last_at });
    }
    gaps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_for_mtls_needs_certificate_evidence_and_a_quiet_key() {
        use Gap::{KeyInUse, NoCertificateEvidence as NoEvidence};
        // now = 1000: evidence since 900, quiet since 990 (None: no quiet period).
        // (last certificate, last key, quiet since, gaps)
        type Row = (Option<i64>, Option<i64>, Option<i64>, &'static [Gap]);
        let table: [Row; 9] = [
            (Some(950), None, Some(990), &[]),
            (Some(900), Some(989), Some(990), &[]),
            (Some(899), None, Some(990), &[NoEvidence]),
            (None, None, Some(990), &[NoEvidence]),
            (
                Some(995),
                Some(990),
                Some(990),
                &[KeyInUse { last_at: 990 }],
            ),
            (
                None,
                Some(999),
                Some(990),
                &[NoEvidence, KeyInUse { last_at: 999 }],
            ),
            // No quiet period: only the evidence is asked for.
            (Some(950), Some(999), None, &[]),
            (None, Some(999), None, &[NoEvidence]),
            (
                Some(900),
                Some(1000),
                Some(1000),
                &[KeyInUse { last_at: 1000 }],
            ),
        ];
        for (certificate, key, quiet_since, gaps) in table {
            assert_eq!(
                readiness_gaps(certificate, key, 900, quiet_since),
                gaps,
                "{certificate:?} {key:?} {quiet_since:?}"
            );
        }
    }
}
