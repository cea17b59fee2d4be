//! Whether a client's certificates are being renewed: judged on the newest certificate any of
//! its instances presented (the latest notAfter). A successor is due once a third of its
//! lifetime is left (what ACME clients, cert-manager and step-ca's renewers aim for); if none
//! has been seen when it is within `migration.renewal_warning_secs` of its end, the renewal has
//! stopped somewhere, and the client is about to be refused. Pure, for its decision table; the
//! admin API shows it, dispatchctl's `status` and `check` read it.

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
}
