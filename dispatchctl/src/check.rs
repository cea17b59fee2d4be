//! `dispatchctl check`: a preflight of the live service, as Linkerd's `linkerd check` does it:
//! each check printed with ✓ or ✗, exit 0 only when none failed. The checks are a pure function
//! of what the service reports, so they are tested as a table.
//!
//! Checked: the server's certificate chain and each CA of the bundle are not expiring within
//! the warning window; each client's last certificate neither; with `ops_url`, the recorder has
//! dropped nothing (and handshake failures by kind are shown). The migration's own state
//! (clients still using keys, whether the listener can require certificates) is shown for
//! information, and checked with `--required` (before switching `client_auth` to `required`).

use dispatch_types::{ClientList, MigrationReport, RenewalState};

/// One line of the report: `ok` is `None` for information that is not a check.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub ok: Option<bool>,
    pub text: String,
}

impl Check {
    fn pass(text: String) -> Self {
        Self {
            ok: Some(true),
            text,
        }
    }
    fn fail(text: String) -> Self {
        Self {
            ok: Some(false),
            text,
        }
    }
    fn info(text: String) -> Self {
        Self { ok: None, text }
    }
}

/// What `check` looked at.
pub struct Observed<'a> {
    pub now: i64,
    pub warning_days: u64,
    /// (subject, notAfter) of the server's chain, leaf first.
    pub server_chain: Vec<(String, i64)>,
    /// (subject, notAfter) of each CA in `tls.ca_file`.
    pub cas: Vec<(String, i64)>,
    /// `/admin/clients`.
    pub clients: &'a ClientList,
    /// `/admin/migration`.
    pub migration: &'a MigrationReport,
    /// `/metrics` of the operations listener, when `server.ops_url` is set.
    pub metrics: Option<&'a str>,
    /// `--required`: the migration must be complete.
    pub required: bool,
}

fn days_left(now: i64, not_after: i64) -> i64 {
    (not_after - now).div_euclid(86_400)
}

fn expiry(what: &str, now: i64, not_after: i64, warning_days: u64) -> Check {
    let left = not_after - now;
    if left <= 0 {
        Check::fail(format!("{what} has expired"))
    } else if left < warning_days as i64 * 86_400 {
        Check::fail(format!(
            "{what} expires in {} days (within the {warning_days}-day window): renew it",
            days_left(now, not_after)
        ))
    } else {
        Check::pass(format!(
            "{what} is valid for {} more days",
            days_left(now, not_after)
        ))
    }
}

/// The value of a metric sample in Prometheus text, summed over label sets.
fn metric_sum<'m>(metrics: &'m str, name: &str) -> (f64, Vec<(&'m str, f64)>) {
    let mut total = 0.0;
    let mut parts = Vec::new();
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (labels, value) = match rest.strip_prefix('{') {
            Some(labelled) => match labelled.split_once("} ") {
                Some((labels, value)) => (labels, value),
                None => continue,
            },
            None => match rest.strip_prefix(' ') {
                Some(value) => ("", value),
                None => continue,
            },
        };
        if let Ok(value) = value.trim().parse::<f64>() {
            total += value;
            parts.push((labels, value));
        }
    }
    (total, parts)
}

pub fn checks(seen: &Observed<'_>) -> Vec<Check> {
    let mut out = certificates(seen);
    out.extend(renewals(seen));
    out.extend(migration(seen));
    out.extend(match seen.metrics {
        None => vec![Check::info(
            "server.ops_url is not set: recorder drops and handshake failures not read".into(),
        )],
        Some(metrics) => from_metrics(metrics),
    });
    out
}

/// The server's chain, each CA of the bundle, and each client's last certificate: none expired
/// or inside the warning window.
fn certificates(seen: &Observed<'_>) -> Vec<Check> {
    let server = seen
        .server_chain
        .iter()
        .enumerate()
        .map(|(i, (subject, not_after))| {
            let what = if i == 0 {
                format!("the server certificate ({subject})")
            } else {
                format!("the server's intermediate CA ({subject})")
            };
            (what, *not_after)
        });
    let cas = seen
        .cas
        .iter()
        .map(|(subject, not_after)| (format!("the CA {subject}"), *not_after));
    let clients = seen.clients.clients.iter().filter_map(|client| {
        let not_after = client
            .usage
            .certificate
            .last_certificate_not_after
            .as_deref()?;
        let not_after =
            time::OffsetDateTime::parse(not_after, &time::format_description::well_known::Rfc3339)
                .ok()?;
        Some((
            format!("{}'s last certificate", client.name),
            not_after.unix_timestamp(),
        ))
    });
    server
        .chain(cas)
        .chain(clients)
        .map(|(what, not_after)| expiry(&what, seen.now, not_after, seen.warning_days))
        .collect()
}

/// Whether each client's certificates are being renewed (judged by the server on the newest one
/// any of its instances presented): one not renewed fails, one due is shown; so fails a client
/// pinned to fingerprints of short-lived certificates, which refuses its own next renewal.
fn renewals(seen: &Observed<'_>) -> Vec<Check> {
    let mut out = Vec::new();
    for client in &seen.clients.clients {
        let Some(renewal) = &client.renewal else {
            continue;
        };
        if renewal.pin_breaks_at_renewal {
            out.push(Check::fail(format!(
                "{} pins certificate fingerprints but its certificates live {} s: its next \
                 renewal is refused; bind it by name (dns_name, subject_cn or spiffe_id) and \
                 issuer instead",
                client.name, renewal.lifetime_secs
            )));
        }
        let newest = renewal.newest_not_after.as_deref().unwrap_or("-");
        let text = |what: &str| {
            format!(
                "{}'s newest certificate (until {newest}) {what}",
                client.name
            )
        };
        match renewal.state {
            RenewalState::Current => {}
            RenewalState::Due => out.push(Check::info(text(&format!(
                "is due for renewal: {} s left, no successor seen yet",
                renewal.seconds_left
            )))),
            RenewalState::NotRenewed => out.push(Check::fail(text(&format!(
                "has {} s left and no successor has been seen: its renewal has stopped",
                renewal.seconds_left
            )))),
            RenewalState::Expired => out.push(Check::fail(text(
                "has expired and no successor has been seen: its renewal has stopped",
            ))),
        }
    }
    out
}

/// Clients still using keys, and whether the listener can require certificates: information,
/// or failures with `--required`.
fn migration(seen: &Observed<'_>) -> Vec<Check> {
    let unless_required = |text: String| {
        if seen.required {
            Check::fail(text)
        } else {
            Check::info(text)
        }
    };
    let keyed: Vec<&str> = seen
        .clients
        .clients
        .iter()
        .filter(|c| c.usage.api_key.requests_in_window > 0)
        .map(|c| c.name.as_str())
        .collect();
    let keys = if keyed.is_empty() {
        Check::pass("no client used an API key in the evidence window".into())
    } else {
        unless_required(format!(
            "clients still using API keys: {}",
            keyed.join(", ")
        ))
    };
    let switch = if seen.migration.ready_for_required_client_auth {
        Check::pass("every client is on mtls: the listener can require certificates".into())
    } else {
        unless_required(format!(
            "the listener cannot require certificates yet: not on mtls: {}",
            seen.migration.not_on_mtls.join(", ")
        ))
    };
    vec![keys, switch]
}

/// What the operations listener's `/metrics` says: recorder drops fail, handshake failures by
/// kind are shown.
fn from_metrics(metrics: &str) -> Vec<Check> {
    let (dropped, samples) = metric_sum(metrics, "dispatch_recorder_dropped_total");
    let recorder = if samples.is_empty() {
        Check::fail(
            "dispatch_recorder_dropped_total is not in /metrics: is server.ops_url \
             dispatch-api's operations listener?"
                .into(),
        )
    } else if dropped == 0.0 {
        Check::pass("the recorder has dropped no usage or audit record".into())
    } else {
        Check::fail(format!(
            "the recorder dropped {dropped} usage or audit records (queue full, database \
             failing or near its size cap)"
        ))
    };
    let (failures, kinds) = metric_sum(metrics, "dispatch_tls_handshake_failures_total");
    let kinds: Vec<String> = kinds
        .iter()
        .map(|(labels, n)| {
            format!(
                "{} {n}",
                labels.trim_start_matches("kind=").trim_matches('"')
            )
        })
        .collect();
    let handshakes = Check::info(if failures == 0.0 {
        "no client certificate refused in a handshake since the server started".into()
    } else {
        format!(
            "client certificates refused in handshakes since the server started: {}",
            kinds.join(", ")
        )
    });
    vec![recorder, handshakes]
}

#[cfg(test)]
mod tests {
    use dispatch_types::MigrationMode;

    use super::*;
    use crate::status::tests::{client, report};

    const NOW: i64 = 1_000_000_000;
    const DAY: i64 = 86_400;

    fn observed<'a>(
        clients: &'a ClientList,
        migration: &'a MigrationReport,
        metrics: Option<&'a str>,
    ) -> Observed<'a> {
        Observed {
            now: NOW,
            warning_days: 14,
            server_chain: vec![("CN=dispatch-api".into(), NOW + 90 * DAY)],
            cas: vec![("CN=Dev CA".into(), NOW + 365 * DAY)],
            clients,
            migration,
            metrics,
            required: false,
        }
    }

    fn failed(checks: &[Check]) -> Vec<String> {
        checks
            .iter()
            .filter(|c| c.ok == Some(false))
            .map(|c| c.text.clone())
            .collect()
    }

    #[test]
    fn a_healthy_service_mid_migration_passes_and_shows_the_migration_as_information() {
        let clients = ClientList {
            clients: vec![client("w", MigrationMode::Dual, 2, 0, None)],
        };
        let migration = report(&[], &["w"]);
        let checks = checks(&observed(&clients, &migration, None));
        assert!(failed(&checks).is_empty(), "{checks:?}");
        assert!(
            checks
                .iter()
                .any(|c| c.ok.is_none() && c.text == "clients still using API keys: w")
        );
        assert!(
            checks
                .iter()
                .any(|c| c.ok.is_none() && c.text.contains("not on mtls: w"))
        );
        // With --required the same state fails.
        let mut strict = observed(&clients, &migration, None);
        strict.required = true;
        assert_eq!(failed(&super::checks(&strict)).len(), 2);
    }

    #[test]
    fn certificates_expired_or_inside_the_window_fail_and_name_themselves() {
        let clients = ClientList {
            clients: vec![client(
                "w",
                MigrationMode::Mtls,
                0,
                1,
                Some("2001-09-09T01:46:40Z"),
            )],
        };
        let migration = report(&[], &[]);
        let mut seen = observed(&clients, &migration, None);
        seen.server_chain = vec![("CN=dispatch-api".into(), NOW + 3 * DAY)];
        seen.cas = vec![
            ("CN=Old CA".into(), NOW - 1),
            ("CN=New CA".into(), NOW + 14 * DAY),
        ];
        let failures = failed(&checks(&seen));
        assert_eq!(
            failures,
            [
                "the server certificate (CN=dispatch-api) expires in 3 days (within the 14-day window): renew it",
                "the CA CN=Old CA has expired",
                "w's last certificate has expired",
            ],
            "the CA with exactly 14 days left passes"
        );
    }

    #[test]
    fn a_client_whose_newest_certificate_is_not_renewed_fails_and_one_due_is_shown() {
        let renewal = |state, seconds_left| {
            Some(dispatch_types::Renewal {
                state,
                newest_not_after: Some("2026-12-07T22:00:00Z".into()),
                seconds_left,
                lifetime_secs: 90,
                pin_breaks_at_renewal: false,
            })
        };
        let mut current = client("current", MigrationMode::Mtls, 0, 1, None);
        current.renewal = renewal(RenewalState::Current, 80);
        let mut due = client("due", MigrationMode::Mtls, 0, 1, None);
        due.renewal = renewal(RenewalState::Due, 25);
        let mut stopped = client("stopped", MigrationMode::Mtls, 0, 1, None);
        stopped.renewal = renewal(RenewalState::NotRenewed, 5);
        let mut expired = client("expired", MigrationMode::Mtls, 0, 1, None);
        expired.renewal = renewal(RenewalState::Expired, -5);
        let clients = ClientList {
            clients: vec![current, due, stopped, expired],
        };
        let migration = report(&[], &[]);
        let checks = checks(&observed(&clients, &migration, None));
        assert_eq!(
            failed(&checks),
            [
                "stopped's newest certificate (until 2026-12-07T22:00:00Z) has 5 s left and no successor has been seen: its renewal has stopped",
                "expired's newest certificate (until 2026-12-07T22:00:00Z) has expired and no successor has been seen: its renewal has stopped",
            ]
        );
        assert!(
            checks
                .iter()
                .any(|c| c.ok.is_none() && c.text.starts_with("due's newest certificate")),
            "{checks:?}"
        );
        assert!(!checks.iter().any(|c| c.text.starts_with("current's")));
    }

    #[test]
    fn a_client_pinned_to_fingerprints_of_short_lived_certificates_fails() {
        let mut pinned = client("pinned", MigrationMode::Mtls, 0, 1, None);
        pinned.renewal = Some(dispatch_types::Renewal {
            state: RenewalState::Current,
            newest_not_after: Some("2026-12-07T22:00:00Z".into()),
            seconds_left: 80,
            lifetime_secs: 90,
            pin_breaks_at_renewal: true,
        });
        let clients = ClientList {
            clients: vec![pinned],
        };
        let migration = report(&[], &[]);
        assert_eq!(
            failed(&checks(&observed(&clients, &migration, None))),
            [
                "pinned pins certificate fingerprints but its certificates live 90 s: its next renewal is refused; bind it by name (dns_name, subject_cn or spiffe_id) and issuer instead"
            ]
        );
    }

    #[test]
    fn recorder_drops_fail_and_handshake_failures_are_shown_by_kind() {
        let clients = ClientList { clients: vec![] };
        let migration = report(&[], &[]);
        let metrics = "# HELP x\ndispatch_recorder_dropped_total 3\n\
                       dispatch_tls_handshake_failures_total{kind=\"expired\"} 2\n\
                       dispatch_tls_handshake_failures_total{kind=\"untrusted_issuer\"} 1\n";
        let checks = checks(&observed(&clients, &migration, Some(metrics)));
        assert_eq!(failed(&checks).len(), 1);
        assert!(failed(&checks)[0].contains("dropped 3"));
        assert!(
            checks
                .iter()
                .any(|c| c.text.ends_with("expired 2, untrusted_issuer 1")),
            "{checks:?}"
        );
        let quiet = "dispatch_recorder_dropped_total 0\n";
        assert!(failed(&super::checks(&observed(&clients, &migration, Some(quiet)))).is_empty());
        // Metrics from something else: the check cannot pass by not finding its metric.
        let elsewhere = "go_goroutines 12\n";
        let checks = super::checks(&observed(&clients, &migration, Some(elsewhere)));
        assert!(
            failed(&checks)[0].contains("is not in /metrics"),
            "{checks:?}"
        );
    }
}
