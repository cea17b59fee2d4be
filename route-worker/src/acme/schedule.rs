//! When this worker renews and retries: pure rules with their decision tables, for
//! [`super::Acme`] to follow.

use std::time::Duration;

/// How long one attempt (account, order, validation, issuance) may take: a minute, or half the
/// time the current certificate has left (10 s at least), so that a CA that stopped answering
/// is given up on, and tried again, while the certificate is still good.
pub fn attempt_timeout(seconds_left: i64) -> Duration {
    Duration::from_secs((seconds_left / 2).clamp(10, 60) as u64)
}

/// When to renew a certificate valid from `not_before` to `not_after`: `renew_before` seconds
/// before it expires (0: when a third of its lifetime is left), earlier by up to a tenth of
/// that, as `jitter` (0 to 1) says, so that replicas started together do not renew together.
pub fn renewal_at(not_before: i64, not_after: i64, renew_before: u64, jitter: f64) -> i64 {
    let lifetime = (not_after - not_before).max(0);
    let before = match renew_before {
        0 => lifetime / 3,
        secs => i64::try_from(secs).unwrap_or(i64::MAX).min(lifetime),
    };
    let spread = (before as f64 / 10.0 * jitter.clamp(0.0, 1.0)) as i64;
    not_after - before - spread
}

/// When to renew a certificate valid from `not_before` to `not_after`: at the point `jitter` (0
/// to 1) of the CA's suggested `window` (RFC 9773 §4.2: a point in the past means at once),
/// where the CA offers one that ends before the certificate does, at `own` (see [`renewal_at`])
/// otherwise. A window's point is held out of the certificate's last tenth (a minute at least:
/// attempts need time) and out of its first minute (a CA that answers "now" for every
/// certificate would otherwise be asked for one after another).
pub fn renewal_time(
    own: i64,
    (not_before, not_after): (i64, i64),
    window: Option<(i64, i64)>,
    jitter: f64,
) -> i64 {
    match window {
        Some((start, end)) if start <= end && end <= not_after => {
            let point = start + ((end - start) as f64 * jitter.clamp(0.0, 1.0)) as i64;
            let latest = not_after - ((not_after - not_before) / 10).max(60);
            point.min(latest).max(not_before + 60)
        }
        _ => own,
    }
}

/// How long to wait before asking the CA for its window again: its `Retry-After`, held between a
/// minute and a day (RFC 9773 §4.3.2).
pub fn ask_again_in(retry_after_secs: u64) -> i64 {
    retry_after_secs.clamp(60, 86_400) as i64
}

/// How long to wait after a failed attempt: doubling from a second, and never more than a
/// quarter of the time the current certificate has left (nor a minute), so that attempts grow
/// more frequent as the end nears.
pub fn retry_delay(failures: u32, seconds_left: i64) -> Duration {
    let doubling = 1u64 << failures.min(6);
    let bound = (seconds_left / 4).clamp(1, 60) as u64;
    Duration::from_secs(doubling.min(bound))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_a_third_of_the_lifetime_before_the_end_or_as_set_earlier_by_a_tenth_at_most()
    {
        // A 90-second certificate: 30 s before its end, up to 3 s earlier.
        assert_eq!(renewal_at(1000, 1090, 0, 0.0), 1060);
        assert_eq!(renewal_at(1000, 1090, 0, 1.0), 1057);
        assert_eq!(renewal_at(1000, 1090, 0, 0.5), 1059);
        // Set explicitly, and never before the certificate began.
        assert_eq!(renewal_at(1000, 1090, 20, 0.0), 1070);
        assert_eq!(renewal_at(1000, 1090, 500, 0.0), 1000);
        // Jitter outside 0..1 is held to it.
        assert_eq!(renewal_at(1000, 1090, 0, 7.0), 1057);
        // A certificate whose end is before its start: due at its end.
        assert_eq!(renewal_at(1090, 1000, 0, 0.0), 1000);
    }

    #[test]
    fn a_suggested_window_decides_when_it_ends_before_the_certificate_does() {
        // A certificate from 1000 to 4600 (its last tenth from 4240), the own rule at 3400.
        // (window, jitter, renewal)
        type Case = (Option<(i64, i64)>, f64, i64);
        let table: [Case; 10] = [
            (None, 0.5, 3400),
            // A point of the window, the same for the same jitter however often it is asked.
            (Some((3000, 3100)), 0.0, 3000),
            (Some((3000, 3100)), 0.5, 3050),
            (Some((3000, 3100)), 1.0, 3100),
            // Earlier than the own rule too (a revocation ahead): followed, and a window in
            // the past gives a point in the past, renewed at once.
            (Some((1500, 4000)), 0.2, 2000),
            // Never in the first minute, nor in the last tenth.
            (Some((1000, 1010)), 0.5, 1060),
            (Some((4300, 4500)), 0.5, 4240),
            // Ending after the certificate, or upside down: the own rule.
            (Some((4000, 5000)), 0.5, 3400),
            (Some((3100, 3000)), 0.5, 3400),
            // Jitter outside 0..1 is held to it.
            (Some((3000, 3100)), 7.0, 3100),
        ];
        for (window, jitter, at) in table {
            assert_eq!(
                renewal_time(3400, (1000, 4600), window, jitter),
                at,
                "{window:?} {jitter}"
            );
        }
        // A 90-second certificate: its first minute outweighs its last tenth.
        assert_eq!(
            renewal_time(1060, (1000, 1090), Some((1000, 1001)), 0.0),
            1060
        );
    }

    #[test]
    fn the_window_is_asked_for_again_after_retry_after_between_a_minute_and_a_day() {
        assert_eq!(ask_again_in(0), 60);
        assert_eq!(ask_again_in(60), 60);
        assert_eq!(ask_again_in(21_600), 21_600);
        assert_eq!(ask_again_in(86_400), 86_400);
        assert_eq!(ask_again_in(1_000_000), 86_400);
    }

    #[test]
    fn an_attempt_gets_half_the_time_left_between_ten_seconds_and_a_minute() {
        assert_eq!(attempt_timeout(i64::MAX), Duration::from_secs(60));
        assert_eq!(attempt_timeout(121), Duration::from_secs(60));
        assert_eq!(attempt_timeout(60), Duration::from_secs(30));
        assert_eq!(attempt_timeout(12), Duration::from_secs(10));
        assert_eq!(attempt_timeout(-5), Duration::from_secs(10));
    }

    #[test]
    fn retries_double_from_a_second_but_stay_within_a_quarter_of_the_time_left_and_a_minute() {
        assert_eq!(retry_delay(0, 3600), Duration::from_secs(1));
        assert_eq!(retry_delay(1, 3600), Duration::from_secs(2));
        assert_eq!(retry_delay(5, 3600), Duration::from_secs(32));
        assert_eq!(retry_delay(6, 3600), Duration::from_secs(60));
        assert_eq!(retry_delay(40, 3600), Duration::from_secs(60));
        assert_eq!(retry_delay(5, 20), Duration::from_secs(5));
        assert_eq!(retry_delay(5, 0), Duration::from_secs(1));
    }
}
