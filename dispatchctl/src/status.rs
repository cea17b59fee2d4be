//! `dispatchctl status`: one row per client from `/admin/clients` (the client's mode, scopes,
//! key and certificate use in the evidence window with their last-seen times, the expiry of its
//! last certificate) joined with `/admin/migration` (readiness and why not).

use serde_json::{Value, json};

/// The rows of the status table, as `--json` prints them.
pub fn rows(clients: &Value, migration: &Value) -> Vec<Value> {
    let readiness = |name: &str| {
        migration["clients"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|row| row["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    clients["clients"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|client| {
            let name = client["name"].as_str().unwrap_or_default();
            let ready = readiness(name);
            let usage = &client["usage"];
            json!({
                "name": name,
                "mode": client["mode"],
                "disabled": client["disabled"],
                "scopes": client["scopes"],
                "key_requests": usage["api_key"]["requests_in_window"],
                "key_last_seen": usage["api_key"]["last_seen"],
                "certificate_requests": usage["certificate"]["requests_in_window"],
                "certificate_last_seen": usage["certificate"]["last_seen"],
                "certificate_not_after": usage["certificate"]["last_certificate_not_after"],
                "ready_for_mtls": ready["ready_for_mtls"],
                "not_ready_because": ready["not_ready_because"],
                "guard": ready["guard"],
            })
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

fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// The table people read. Colour marks readiness; the columns line up on the plain text.
pub fn table(rows: &[Value], migration: &Value, paint: Paint) -> String {
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
    let cells: Vec<[String; 9]> = rows
        .iter()
        .map(|row| {
            let mode = if row["disabled"] == true {
                format!("{} (disabled)", text(&row["mode"]))
            } else {
                text(&row["mode"])
            };
            let ready = if row["mode"] == "mtls" {
                "done".to_owned()
            } else if row["ready_for_mtls"] == true {
                "yes".to_owned()
            } else {
                format!("no: {}", text(&row["not_ready_because"]).replace(",", "; "))
            };
            [
                text(&row["name"]),
                mode,
                text(&row["scopes"]),
                text(&row["key_requests"]),
                text(&row["key_last_seen"]),
                text(&row["certificate_requests"]),
                text(&row["certificate_last_seen"]),
                text(&row["certificate_not_after"]),
                ready,
            ]
        })
        .collect();
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
        if let Some(line) = guard_line(row) {
            let line = match row["guard"]["state"].as_str() {
                Some("reverted" | "kept") => paint.red(&line),
                Some("watching") => paint.yellow(&line),
                _ => line,
            };
            out += &line;
            out += "\n";
        }
    }
    let required = if migration["ready_for_required_client_auth"] == true {
        paint.green("every client is on mtls: the listener can require certificates")
    } else {
        paint.red(&format!(
            "not on mtls yet: {}",
            text(&migration["not_on_mtls"])
        ))
    };
    out += &format!(
        "listener client_auth: {}; {required}\n",
        text(&migration["listener_client_auth"])
    );
    out
}

/// The outcome of a client's latest flip guard, in words; `None` without one.
pub fn guard_line(row: &Value) -> Option<String> {
    let guard = row.get("guard").filter(|g| g.is_object())?;
    let change = format!(
        "guard {}: {} -> {}",
        text(&row["name"]),
        text(&guard["from"]),
        text(&guard["to"])
    );
    Some(match guard["state"].as_str().unwrap_or_default() {
        "watching" => format!(
            "{change} watching until {}: {} of {} refusals",
            text(&guard["watch_until"]),
            text(&guard["refusals"]),
            text(&guard["max_refusals"])
        ),
        "reverted" => {
            let reopened = &guard["reopened"];
            let networks: Vec<String> = reopened["networks"]
                .as_array()
                .map(|n| n.iter().map(text).collect())
                .unwrap_or_default();
            format!(
                "{change} reverted at {} because {}: {} re-admitted from {} only, until {}",
                text(&guard["ended_at"]),
                text(&guard["because"]),
                text(&reopened["method"]),
                networks.join(", "),
                text(&reopened["until"])
            )
        }
        "kept" => format!(
            "{change} reached its threshold at {} ({}) but was kept: reverting would lock every operator out",
            text(&guard["ended_at"]),
            text(&guard["because"])
        ),
        "confirmed" => format!("{change} confirmed at {}", text(&guard["ended_at"])),
        "cancelled" => format!(
            "{change} cancelled at {} by a mode change",
            text(&guard["ended_at"])
        ),
        other => format!("{change} {other}"),
    })
}

/// A client's API keys (`api_keys` of the admin API): id, state, when made, until when valid,
/// how often and when last used.
pub fn keys_table(keys: &Value) -> String {
    let rows: Vec<Vec<String>> = keys
        .as_array()
        .into_iter()
        .flatten()
        .map(|key| {
            [
                "id",
                "state",
                "created_at",
                "expires_at",
                "use_count",
                "last_used_at",
            ]
            .map(|field| text(&key[field]))
            .to_vec()
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

/// The certificate deny list (`GET /admin/revocations`), one row per fingerprint.
pub fn revocations_table(revocations: &Value) -> String {
    let rows: Vec<Vec<String>> = revocations
        .as_array()
        .into_iter()
        .flatten()
        .map(|entry| {
            vec![
                match entry["spki_sha256"].as_str() {
                    Some(key) => format!("key {key}"),
                    None => text(&entry["fingerprint"]),
                },
                at(&entry["revoked_at"]),
                text(&entry["revoked_by"]),
                text(&entry["reason"]),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "no certificate is revoked by fingerprint, and no key is denied\n".into();
    }
    columns(&["FINGERPRINT", "REVOKED", "BY", "REASON"], rows)
}

/// A Unix time in seconds as RFC 3339 (UTC); anything else as it is.
fn at(value: &Value) -> String {
    value
        .as_i64()
        .and_then(|secs| time::OffsetDateTime::from_unix_timestamp(secs).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| text(value))
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
mod tests {
    use super::*;

    #[test]
    fn each_guard_state_reads_as_a_sentence() {
        let row = |guard: Value| json!({"name": "route-worker", "guard": guard});
        let base = json!({"from": "dual", "to": "mtls", "watch_until": "2026-12-06T01:15:00Z",
                          "max_refusals": 5, "refusals": 2, "ended_at": "2026-12-06T01:05:00Z",
                          "because": "5 refusals (key_retired 5) from 10.0.0.0/24",
                          "reopened": {"method": "api_key", "networks": ["10.0.0.0/24"],
                                       "until": "2026-12-06T02:15:00Z"}});
        let with = |state: &str| {
            let mut guard = base.clone();
            guard["state"] = json!(state);
            guard_line(&row(guard)).unwrap()
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
        assert_eq!(guard_line(&json!({"name": "x", "guard": null})), None);
        assert_eq!(guard_line(&json!({"name": "x"})), None);
    }

    #[test]
    fn the_keys_table_shows_each_key_in_its_state() {
        let keys = json!([
            {"id": "0a1b2c3d4e5f", "state": "current", "created_at": "2026-12-06T00:00:00Z",
             "expires_at": null, "use_count": 0, "last_used_at": null},
            {"id": "ffeeddccbbaa", "state": "overlap", "created_at": "2026-11-01T00:00:00Z",
             "expires_at": "2026-12-07T00:00:00Z", "use_count": 1234,
             "last_used_at": "2026-12-06T00:05:00Z"},
        ]);
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
        assert_eq!(keys_table(&json!([])), "no API key\n");
    }

    fn inputs() -> (Value, Value) {
        let clients = json!({"clients": [
            {"name": "route-worker", "mode": "dual", "disabled": false, "scopes": ["plans:submit"],
             "usage": {"api_key": {"requests_in_window": 3, "last_seen": "2026-11-23T00:00:00Z"},
                       "certificate": {"requests_in_window": 1, "last_seen": "2026-11-23T00:01:00Z",
                                       "last_certificate_not_after": "2026-11-24T00:00:00Z"}}},
            {"name": "operator", "mode": "mtls", "disabled": false, "scopes": ["admin"],
             "usage": {"api_key": {"requests_in_window": 0}, "certificate": {"requests_in_window": 9}}},
        ]});
        let migration = json!({
            "clients": [
                {"name": "route-worker", "ready_for_mtls": false,
                 "not_ready_because": ["its API key was used within the last 3600 s"]},
                {"name": "operator", "ready_for_mtls": true, "not_ready_because": []},
            ],
            "not_on_mtls": ["route-worker"],
            "ready_for_required_client_auth": false,
            "listener_client_auth": "optional",
        });
        (clients, migration)
    }

    #[test]
    fn rows_join_each_clients_use_with_its_readiness() {
        let (clients, migration) = inputs();
        let rows = rows(&clients, &migration);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["name"], "route-worker");
        assert_eq!(rows[0]["key_requests"], 3);
        assert_eq!(rows[0]["certificate_not_after"], "2026-11-24T00:00:00Z");
        assert_eq!(rows[0]["ready_for_mtls"], false);
        assert_eq!(rows[1]["ready_for_mtls"], true);
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
        let list = json!([{"fingerprint": "ab12", "revoked_at": 1_780_000_000_i64,
                           "revoked_by": "operator", "reason": "key leaked"}]);
        let table = revocations_table(&list);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2, "{table}");
        assert!(lines[0].starts_with("FINGERPRINT  REVOKED"), "{table}");
        assert!(lines[1].starts_with("ab12         2026-05-28T"), "{table}");
        assert!(lines[1].ends_with("operator  key leaked"), "{table}");
        assert_eq!(
            revocations_table(&json!([])),
            "no certificate is revoked by fingerprint, and no key is denied\n"
        );
    }
}
