//! Durations as operators type them: `90` (seconds), `90s`, `15m`, `12h`, `7d`.

/// Seconds in `text`; the error says what is accepted.
pub fn parse_secs(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let per_unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => 0,
    };
    number
        .parse::<u64>()
        .ok()
        .filter(|_| per_unit > 0)
        .and_then(|n| n.checked_mul(per_unit))
        .ok_or_else(|| {
            format!(
                "`{text}` is not a duration: write seconds, or a number with s, m, h or d (15m, 1d)"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::parse_secs;

    #[test]
    fn durations_in_seconds_minutes_hours_and_days() {
        for (text, secs) in [
            ("0", 0),
            ("90", 90),
            ("90s", 90),
            ("15m", 900),
            ("12h", 43_200),
            ("7d", 604_800),
        ] {
            assert_eq!(parse_secs(text), Ok(secs), "{text}");
        }
    }

    #[test]
    fn anything_else_is_refused_saying_what_is_accepted() {
        for text in [
            "",
            "m",
            "15x",
            "1.5h",
            "-1",
            "15 m",
            "99999999999999999999d",
        ] {
            let error = parse_secs(text).unwrap_err();
            assert!(error.contains("not a duration"), "{text}: {error}");
        }
    }
}
