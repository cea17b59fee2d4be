//! `dispatchctl status`: one row per client from `/admin/clients` (the client's mode, scopes,
//! key and certificate use in the evidence window with their last-seen times, the expiry of its
//! last certificate) joined with `/admin/migration` (readiness and why not).

use std::collections::BTreeSet;

use dispatch_types::{
    ClientList, GuardReport, KeyView, MigrationMode, MigrationReport, Renewal, RenewalState,
    Revocation, Scope,
};
use serde::Serialize;

/// One client's row of the status table, as `--json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub name: String,
    pub mode: MigrationMode,
    pub disabled: bool,
    pub scopes: BTreeSet<Scope>,
    pub key_requests: i64,
    pub key_last_seen: Option<String>,
    pub certificate_requests: i64,
    pub certificate_last_seen: Option<String>,
    pub certificate_not_after: Option<String>,
    /// `None`: the client is not in the report (registered between the two reads).
    pub ready_for_mtls: Option<bool>,
    pub not_ready_because: Vec<String>,
    pub guard: Option<GuardReport>,
    pub renewal: Option<Renewal>,
}

/// The rows of the status table: each client joined with its row of the migration report.
pub fn rows(clients: &ClientList, migration: &MigrationReport) -> Vec<Row> {
    clients
        .clients
        .iter()
        .map(|client| {
            let ready = migration.clients.iter().find(|row| row.name == client.name);
            let usage = &client.usage;
            Row {
                name: client.name.clone(),
                mode: client.mode,
                disabled: client.disabled,
                scopes: client.scopes.clone(),
                key_requests: usage.api_key.requests_in_window,
                key_last_seen: usage.api_key.last_seen.clone(),
                certificate_requests: usage.certificate.requests_in_window,
                certificate_last_seen: usage.certificate.last_seen.clone(),
                certificate_not_after: usage.certificate.last_certificate_not_after.clone(),
                ready_for_mtls: ready.map(|row| row.ready_for_mtls),
                not_ready_because: ready
                    .map(|row| row.not_ready_because.clone())
                    .unwrap_or_default(),
                guard: ready.and_then(|row| row.guard.clone()),
                renewal: client.renewal.clone(),
            }
        })
        .collect()
}

/// ANSI colours, only on a terminal (and never with `NO_COLOR`).
#[derive(Clone, Copy)]
pub struct Paint(pub bool);

impl Paint {
    fn wrap(self, code: &str, text: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
    pub fn green(self, text: &str) -> String {
        self.wrap("32", text)
    }
    pub fn red(self, text: &str) -> String {
        self.wrap("31", text)
    }
    pub fn yellow(self, text: &str) -> String {
        self.wrap("33", text)
    }
}

/// An optional value as a cell: `-` for none.
fn or_dash(value: Option<&str>) -> String {
    value.unwrap_or("-").to_owned()
}

/// A row's cells, in the table's columns.
fn cells(row: &Row) -> [String; 9] {
    let mode = if row.disabled {
        format!("{} (disabled)", row.mode.as_str())
    } else {
        row.mode.as_str().to_owned()
    };
    let ready = if row.mode == MigrationMode::Mtls {
        "done".to_owned()
    } else if row.ready_for_mtls == Some(true) {
        "yes".to_owned()
    } else if row.not_ready_because.is_empty() {
        "no: -".to_owned()
    } else {
        format!("no: {}", row.not_ready_because.join("; "))
    };
    let scopes: Vec<&str> = row.scopes.iter().map(|s| s.as_str()).collect();
    [
        row.name.clone(),
        mode,
        if scopes.is_empty() {
            "-".into()
        } else {
            scopes.join(",")
        },
        row.key_requests.to_string(),
        or_dash(row.key_last_seen.as_deref()),
        row.certificate_requests.to_string(),
        or_dash(row.certificate_last_seen.as_deref()),
        or_dash(row.certificate_not_after.as_deref()),
        ready,
    ]
}

/// The table people read. Colour marks readiness; the columns line up on the plain text.
pub fn table(rows: &[Row], migration: &MigrationReport, paint: Paint) -> String {
    let header = [
        "CLIENT",
        "MODE",
        "SCOPES",
        "KEY USE",
        "KEY LAST",
        "CERT USE",
        "CERT LAST",
        "CERT EXPIRES",
        "READY",
    ];
    let cells: Vec<[String; 9]> = rows.iter().map(cells).collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            cells
                .iter()
                .map(|c| c[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        cells
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                if i + 1 == cells.len() {
                    cell.clone()
                } else {
                    format!("{cell:width$}", width = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut out = line(&header.map(str::to_owned)) + "\n";
    for row in &cells {
        let mut row = row.clone();
        let ready = row[8].clone();
        row[8] = match ready.as_str() {
            "done" | "yes" => paint.green(&ready),
            _ => paint.yellow(&ready),
        };
        // Only the last column is coloured: it is not padded, so the escapes move nothing.
        out += &line(&row);
        out += "\n";
    }
    for row in rows {
        if let Some(guard) = &row.guard {
            let line = guard_line(&row.name, guard);
            let line = match guard.state.as_str() {
                "reverted" | "kept" => paint.red(&line),
                "watching" => paint.yellow(&line),
                _ => line,
            };
            out += &line;
            out += "\n";
        }
    }
    for row in rows {
        if let Some(line) = row
            .renewal
            .as_ref()
            .and_then(|r| renewal_line(&row.name, r))
        {
            out += &paint.yellow(&line);
            out += "\n";
        }
    }
    out += &footer(migration, paint);
    out
}

/// The last line: whether the listener can require certificates, and what it does now.
fn footer(migration: &MigrationReport, paint: Paint) -> String {
    let required = if migration.ready_for_required_client_auth {
        paint.green("every client is on mtls: the listener can require certificates")
    } else {
        paint.red(&format!(
            "not on mtls yet: {}",
            migration.not_on_mtls.join(",")
        ))
    };
    let client_auth = match migration.listener_client_auth {
        dispatch_types::ClientAuth::Optional => "optional",
        dispatch_types::ClientAuth::Required => "required",
    };
    format!("listener client_auth: {client_auth}; {required}\n")
}

/// A client's renewal health when it needs attention (due, not renewed, expired, or a pin its
/// next renewal breaks), in words.
pub fn renewal_line(client: &str, renewal: &Renewal) -> Option<String> {
    let newest = or_dash(renewal.newest_not_after.as_deref());
    let state = match renewal.state {
        RenewalState::Current if !renewal.pin_breaks_at_renewal => return None,
        RenewalState::Current => "current",
        RenewalState::Due => "due",
        RenewalState::NotRenewed => "NOT RENEWED",
        RenewalState::Expired => "EXPIRED, not renewed",
    };
    let pinned = if renewal.pin_breaks_at_renewal {
        "; PINNED to fingerprints: its next renewal is refused"
    } else {
        ""
    };
    Some(format!(
        "renewal {client}: {state}: newest certificate until {newest} ({} s left of {} s){pinned}",
        renewal.seconds_left, renewal.lifetime_secs
    ))
}

/// The outcome of `client`'s latest flip guard, in words.
pub fn guard_line(client: &str, guard: &GuardReport) -> String {
    let change = format!("guard {client}: {} -> {}", guard.from, guard.to);
    let ended_at = or_dash(guard.ended_at.as_deref());
    let because = or_dash(guard.because.as_deref());
    match guard.state.as_str() {
        "watching" => format!(
            "{change} watching until {}: {} of {} refusals",
            or_dash(guard.watch_until.as_deref()),
            guard.refusals,
            guard.max_refusals
        ),
        "reverted" => match &guard.reopened {
            Some(reopened) => format!(
                "{change} reverted at {ended_at} because {because}: {} re-admitted from {} only, \
                 until {}",
                reopened.method.as_str(),
                reopened
                    .networks
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
                or_dash(reopened.until.as_deref())
            ),
            None => format!("{change} reverted at {ended_at} because {because}"),
        },
        "kept" => format!(
            "{change} reached its threshold at {ended_at} ({because}) but was kept: reverting \
             would lock every operator out"
        ),
        "confirmed" => format!("{change} confirmed at {ended_at}"),
        "cancelled" => format!("{change} cancelled at {ended_at} by a mode change"),
        other => format!("{change} {other}"),
    }
}

/// A client's API keys (`api_keys` of the admin API): id, state, when made, until when valid,
/// how often and when last used.
pub fn keys_table(keys: &[KeyView]) -> String {
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|key| {
            vec![
                key.id.clone(),
                key.state.as_str().to_owned(),
                or_dash(key.created_at.as_deref()),
                or_dash(key.expires_at.as_deref()),
                key.use_count.to_string(),
                or_dash(key.last_used_at.as_deref()),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "no API key\n".into();
    }
    columns(
        &["ID", "STATE", "CREATED", "EXPIRES", "USES", "LAST USED"],
        rows,
    )
}

/// The certificate deny list (`GET /admin/revocations`), one row per fingerprint or key.
pub fn revocations_table(revocations: &[Revocation]) -> String {
    let rows: Vec<Vec<String>> = revocations
        .iter()
        .map(|entry| {
            vec![
                match &entry.spki_sha256 {
                    Some(key) => format!("key {key}"),
                    None => or_dash(entry.fingerprint.as_deref()),
                },
                dispatch_types::rfc3339(entry.revoked_at)
                    .unwrap_or_else(|| entry.revoked_at.to_string()),
                entry.revoked_by.clone(),
                entry.reason.clone(),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "no certificate is revoked by fingerprint, and no key is denied\n".into();
    }
    columns(&["FINGERPRINT", "REVOKED", "BY", "REASON"], rows)
}

/// Rows under a header, each column as wide as its widest cell.
fn columns(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let all: Vec<Vec<String>> = std::iter::once(header.iter().map(|h| h.to_string()).collect())
        .chain(rows)
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| all.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    all.iter()
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:width$}"))
                .collect();
            cells.join("  ").trim_end().to_owned() + "\n"
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use dispatch_types::{
        ClientAuth, ClientView, KeyState, MethodUse, MigrationRow, Reopened, Usage,
    };

    use super::*;

    /// A client with `key` and `certificate` requests in the window (and its last
    /// certificate's notAfter), as `/admin/clients` shows it.
    pub(crate) fn client(
        name: &str,
        mode: MigrationMode,
        key: i64,
        certificate: i64,
        not_after: Option<&str>,
    ) -> ClientView {
        ClientView {
            name: name.into(),
            mode,
            scopes: BTreeSet::new(),
            disabled: false,
            has_api_key: key > 0,
            api_keys: vec![],
            bindings: vec![],
            renewal: None,
            usage: Usage {
                api_key: MethodUse {
                    requests_in_window: key,
                    ..MethodUse::default()
                },
                certificate: MethodUse {
                    requests_in_window: certificate,
                    last_certificate_not_after: not_after.map(str::to_owned),
                    ..MethodUse::default()
                },
            },
        }
    }

    /// A migration report whose rows say `not_ready` of each client named (empty: ready).
    pub(crate) fn report(rows: &[(&str, &[&str])], not_on_mtls: &[&str]) -> MigrationReport {
        MigrationReport {
            window_secs: 86_400,
            quiet_period_secs: 3600,
            clients: rows
                .iter()
                .map(|(name, gaps)| MigrationRow {
                    name: (*name).into(),
                    mode: MigrationMode::Dual,
                    disabled: false,
                    usage: Usage::default(),
                    api_keys: vec![],
                    guard: None,
                    ready_for_mtls: gaps.is_empty(),
                    not_ready_because: gaps.iter().map(|g| (*g).to_owned()).collect(),
                })
                .collect(),
            all_clients_mtls: not_on_mtls.is_empty(),
            not_on_mtls: not_on_mtls.iter().map(|n| (*n).to_owned()).collect(),
            listener_client_auth: ClientAuth::Optional,
            ready_for_required_client_auth: not_on_mtls.is_empty(),
        }
    }

    #[test]
    fn each_guard_state_reads_as_a_sentence() {
        let with = |state: &str| {
            let guard = GuardReport {
                state: state.into(),
                from: "dual".into(),
                to: "mtls".into(),
                started_at: None,
                watch_until: Some("2026-12-06T01:15:00Z".into()),
                max_refusals: 5,
                refusals: 2,
                ended_at: Some("2026-12-06T01:05:00Z".into()),
                because: Some("5 refusals (key_retired 5) from 10.0.0.0/24".into()),
                evidence: Default::default(),
                retired_method: None,
                known_networks: BTreeSet::new(),
                reopened: Some(Reopened {
                    method: dispatch_types::AuthMethod::ApiKey,
                    networks: ["10.0.0.0/24".to_owned()].into(),
                    until: Some("2026-12-06T02:15:00Z".into()),
                }),
            };
            guard_line("route-worker", &guard)
        };
        assert_eq!(
            with("watching"),
            "guard route-worker: dual -> mtls watching until 2026-12-06T01:15:00Z: 2 of 5 refusals"
        );
        assert_eq!(
            with("reverted"),
            "guard route-worker: dual -> mtls reverted at 2026-12-06T01:05:00Z because 5 refusals (key_retired 5) from 10.0.0.0/24: api_key re-admitted from 10.0.0.0/24 only, until 2026-12-06T02:15:00Z"
        );
        assert!(with("kept").contains("but was kept: reverting would lock every operator out"));
        assert_eq!(
            with("confirmed"),
            "guard route-worker: dual -> mtls confirmed at 2026-12-06T01:05:00Z"
        );
        assert!(with("cancelled").contains("cancelled at"));
    }

    #[test]
    fn a_renewal_that_needs_attention_reads_as_a_line_and_a_current_one_as_none() {
        let renewal = |state| Renewal {
            state,
            newest_not_after: Some("2026-12-07T22:00:00Z".into()),
            seconds_left: 5,
            lifetime_secs: 90,
            pin_breaks_at_renewal: false,
        };
        assert_eq!(renewal_line("w", &renewal(RenewalState::Current)), None);
        let pinned = Renewal {
            pin_breaks_at_renewal: true,
            ..renewal(RenewalState::Current)
        };
        assert_eq!(
            renewal_line("w", &pinned).unwrap(),
            "renewal w: current: newest certificate until 2026-12-07T22:00:00Z (5 s left of 90 s); PINNED to fingerprints: its next renewal is refused"
        );
        assert_eq!(
            renewal_line("w", &renewal(RenewalState::NotRenewed)).unwrap(),
            "renewal w: NOT RENEWED: newest certificate until 2026-12-07T22:00:00Z (5 s left of 90 s)"
        );
        assert!(
            renewal_line("w", &renewal(RenewalState::Due))
                .unwrap()
                .contains(": due:")
        );
        assert!(
            renewal_line("w", &renewal(RenewalState::Expired))
                .unwrap()
                .contains("EXPIRED")
        );
    }

    #[test]
    fn the_keys_table_shows_each_key_in_its_state() {
        let keys = [
            KeyView {
                id: "0a1b2c3d4e5f".into(),
                state: KeyState::Current,
                created_at: Some("2026-12-06T00:00:00Z".into()),
                expires_at: None,
                use_count: 0,
                last_used_at: None,
            },
            KeyView {
                id: "ffeeddccbbaa".into(),
                state: KeyState::Overlap,
                created_at: Some("2026-11-01T00:00:00Z".into()),
                expires_at: Some("2026-12-07T00:00:00Z".into()),
                use_count: 1234,
                last_used_at: Some("2026-12-06T00:05:00Z".into()),
            },
        ];
        let table = keys_table(&keys);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(
            lines[0].starts_with("ID            STATE    CREATED"),
            "{table}"
        );
        assert!(
            lines[1].starts_with("0a1b2c3d4e5f  current  2026-12-06T00:00:00Z  -"),
            "{table}"
        );
        assert!(
            lines[2].contains("overlap") && lines[2].contains("1234"),
            "{table}"
        );
        assert!(lines[2].ends_with("2026-12-06T00:05:00Z"), "{table}");
        assert_eq!(keys_table(&[]), "no API key\n");
    }

    fn inputs() -> (ClientList, MigrationReport) {
        let mut worker = client(
            "route-worker",
            MigrationMode::Dual,
            3,
            1,
            Some("2026-11-24T00:00:00Z"),
        );
        worker.scopes = [Scope::PlansSubmit].into();
        worker.usage.api_key.last_seen = Some("2026-11-23T00:00:00Z".into());
        worker.usage.certificate.last_seen = Some("2026-11-23T00:01:00Z".into());
        let mut operator = client("operator", MigrationMode::Mtls, 0, 9, None);
        operator.scopes = [Scope::Admin].into();
        let migration = report(
            &[
                (
                    "route-worker",
                    &["its API key was used within the last 3600 s"],
                ),
                ("operator", &[]),
            ],
            &["route-worker"],
        );
        (
            ClientList {
                clients: vec![worker, operator],
            },
            migration,
        )
    }

    #[test]
    fn rows_join_each_clients_use_with_its_readiness() {
        let (clients, migration) = inputs();
        let rows = rows(&clients, &migration);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].name, "route-worker");
        assert_eq!(rows[0].key_requests, 3);
        assert_eq!(
            rows[0].certificate_not_after.as_deref(),
            Some("2026-11-24T00:00:00Z")
        );
        assert_eq!(rows[0].ready_for_mtls, Some(false));
        assert_eq!(rows[1].ready_for_mtls, Some(true));
        // A client registered between the two reads is in no row of the report.
        let late = super::rows(&clients, &report(&[], &[]));
        assert_eq!(late[0].ready_for_mtls, None);
    }

    #[test]
    fn the_table_lines_up_says_why_a_client_is_not_ready_and_what_blocks_required() {
        let (clients, migration) = inputs();
        let table = table(&rows(&clients, &migration), &migration, Paint(false));
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("CLIENT"), "{table}");
        assert!(lines[1].starts_with("route-worker  dual"), "{table}");
        assert!(
            lines[1].ends_with("no: its API key was used within the last 3600 s"),
            "{table}"
        );
        assert!(lines[2].starts_with("operator      mtls"), "{table}");
        assert!(lines[2].ends_with("done"), "{table}");
        assert_eq!(
            lines[0].find("MODE"),
            lines[1].find("dual"),
            "columns line up: {table}"
        );
        assert!(
            lines[3].contains("not on mtls yet: route-worker"),
            "{table}"
        );
        let coloured = super::table(&rows(&clients, &migration), &migration, Paint(true));
        assert!(coloured.contains("\x1b[32mdone\x1b[0m"));
    }

    #[test]
    fn the_deny_list_is_a_table_with_times_in_rfc_3339() {
        let list = [Revocation {
            fingerprint: Some("ab12".into()),
            spki_sha256: None,
            revoked_at: 1_780_000_000,
            revoked_by: "operator".into(),
            reason: "key leaked".into(),
        }];
        let table = revocations_table(&list);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2, "{table}");
        assert!(lines[0].starts_with("FINGERPRINT  REVOKED"), "{table}");
        assert!(lines[1].starts_with("ab12         2026-05-28T"), "{table}");
        assert!(lines[1].ends_with("operator  key leaked"), "{table}");
        assert_eq!(
            revocations_table(&[]),
            "no certificate is revoked by fingerprint, and no key is denied\n"
        );
    }
}
