//! Whether a client's certificates are being renewed: judged on the newest certificate any of
//! its instances presented (the latest notAfter). A successor is due once a third of its
//! lifetime is left (what ACME clients, cert-manager and step-ca's renewers aim for); if none
//! has been seen when it is within `migration.renewal_warning_secs` of its end, the renewal has
//! stopped somewhere, and the client is about to be refused. Pure, for its decision table; the
//! admin API shows it, dispatchctl's `status` and `check` read it.
//!
//! A client pinned to certificate fingerprints whose certificates are short-lived is warned
//! about too: each renewal brings a certificate the pin does not name, refused until the
//! operator pins it, so the pin turns every renewal into an outage.

pub use dispatch_types::RenewalState;

/// The state of a client whose newest certificate is valid from `not_before` to `not_after`,
/// at `now`, warning `warning_secs` before its end (0: a tenth of its lifetime before).
pub fn renewal_state(not_before: i64, not_after: i64, now: i64, warning_secs: u64) -> RenewalState {
    let left = not_after - now;
    let lifetime = (not_after - not_before).max(0);
    let warning = match warning_secs {
        0 => lifetime / 10,
        secs => i64::try_from(secs).unwrap_or(i64::MAX),
    };
    if left <= 0 {
        RenewalState::Expired
    } else if left <= warning {
        RenewalState::NotRenewed
    } else if left <= lifetime / 3 {
        RenewalState::Due
    } else {
        RenewalState::Current
    }
}

/// The longest lifetime still "short-lived": Let's Encrypt's short-lived profile is 6 days,
/// step-ca's default a day, an internal ACME CA's often hours; a pin on 90-day certificates is
/// a rotation the operator plans, one on these is an outage every few days.
pub const SHORT_LIVED_SECS: i64 = 10 * 24 * 3600;

/// Whether a client whose every binding pins certificate fingerprints (`pinned`) will refuse its
/// own next certificate: its newest one lives `lifetime_secs`, short enough to be renewed, not
/// re-pinned.
pub fn pin_breaks_at_renewal(pinned: bool, lifetime_secs: i64) -> bool {
    pinned && lifetime_secs <= SHORT_LIVED_SECS
}

#[cfg(test)]
mod tests {
    use super::*;
    use RenewalState::*;

    #[test]
    fn renewal_is_due_at_a_third_left_and_not_renewed_within_the_warning() {
        // A 90-second certificate from 1000 to 1090, a 20-second warning.
        // (now, warning, state)
        let table: [(i64, u64, RenewalState); 9] = [
            (1000, 20, Current),
            (1059, 20, Current),
            (1060, 20, Due),
            (1069, 20, Due),
            (1070, 20, NotRenewed),
            (1089, 20, NotRenewed),
            (1090, 20, Expired),
            (2000, 20, Expired),
            // The warning wider than a third: not renewed from then on.
            (1001, 100, NotRenewed),
        ];
        for (now, warning, state) in table {
            assert_eq!(renewal_state(1000, 1090, now, warning), state, "at {now}");
        }
        // No warning set: a tenth of the lifetime.
        assert_eq!(renewal_state(1000, 1090, 1080, 0), Due);
        assert_eq!(renewal_state(1000, 1090, 1081, 0), NotRenewed);
        // A certificate whose end is before its start: expired at its end.
        assert_eq!(renewal_state(1090, 1000, 999, 0), Current);
        assert_eq!(renewal_state(1090, 1000, 1000, 0), Expired);
    }

    #[test]
    fn a_fingerprint_pin_breaks_at_renewal_only_on_short_lived_certificates() {
        // (pinned, lifetime, warned)
        let day = 24 * 3600;
        let table = [
            (true, 90, true),
            (true, day, true),
            (true, 6 * day, true),
            (true, 10 * day, true),
            (true, 10 * day + 1, false),
            (true, 45 * day, false),
            (true, SHORT_LIVED_SECS, true),
            (true, SHORT_LIVED_SECS + 1, false),
            (true, 90 * day, false),
            (false, 90, false),
            (false, 90 * day, false),
        ];
        for (pinned, lifetime, warned) in table {
            assert_eq!(
                pin_breaks_at_renewal(pinned, lifetime),
                warned,
                "{pinned} {lifetime}"
            );
        }
    }
}
