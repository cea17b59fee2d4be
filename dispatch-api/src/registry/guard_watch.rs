//! The guard task: about once a second, every replica judges its tally against the guards,
//! ends the due ones, rereads the guards in force (watching guards and reopenings), and raises
//! what it found as alerts.

use super::guard::{GuardEnd, GuardTick};
use super::{FlipTally, Registry};
use crate::storage::recorder::{AuditEvent, AuditKind, Recorder};

/// Networks one `retired_credential_unknown_source` alert names, at most (the busiest).
const ALERT_NETWORKS: usize = 16;

/// Alert lines per second and client for unknown sources: the audit row says the rest.
static UNKNOWN_SOURCE_LINES: std::sync::LazyLock<crate::telemetry::LogBudgets> =
    std::sync::LazyLock::new(|| crate::telemetry::LogBudgets::new(1));

/// One alert per client and tick for the refusals of a retired credential from unknown
/// networks (`unknown`, the busiest first): an audit row through the recorder (its queue and
/// the database's size cap bound it), a metric and a budgeted log line, however many networks
/// a thief sends from.
fn alert_unknown_sources(
    recorder: &Recorder,
    metrics: &crate::telemetry::Metrics,
    client: &str,
    unknown: &[(String, i64)],
) {
    if unknown.is_empty() {
        return;
    }
    let refusals: i64 = unknown.iter().map(|(_, count)| count).sum();
    metrics.retired_credential_unknown_source(refusals as u64);
    let named: Vec<_> = unknown
        .iter()
        .take(ALERT_NETWORKS)
        .map(|(network, count)| serde_json::json!({ "network": network, "refusals": count }))
        .collect();
    let mut event = AuditEvent::new(AuditKind::Alert, "retired_credential_unknown_source");
    event.client = Some(client.to_owned());
    event.detail = serde_json::json!({
        "refusals": refusals,
        "networks": named,
        "networks_seen": unknown.len(),
        "why": "the credential a guarded flip retired, sent from networks that did not use it \
                before the flip: it never counts toward the guard",
    });
    recorder.audit(event);
    if let Some(suppressed) = UNKNOWN_SOURCE_LINES.take(client, crate::telemetry::this_second()) {
        tracing::warn!(
            alert = "retired_credential_unknown_source",
            client,
            refusals,
            networks = unknown.len(),
            busiest = %unknown[0].0,
            suppressed,
            "ALERT: the credential a guarded flip retired was sent from networks that did not \
             use it before the flip (a leaked or stolen credential?); it does not count toward \
             the guard"
        );
    }
}

/// How often a replica adds what it counted to the guards and ends those that are due.
const TICK: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs for the life of the process: about once a second, judges this replica's tally against
/// the guards, ends the due ones and rereads the guards in force; a reverted flip is counted
/// in `dispatch_flips_reverted_total` and a retired credential from an unknown network in
/// `dispatch_retired_credential_unknown_source_total`, each logged as an alert.
pub async fn watch_guards(
    registry: std::sync::Arc<Registry>,
    tally: std::sync::Arc<FlipTally>,
    metrics: std::sync::Arc<crate::telemetry::Metrics>,
    recorder: Recorder,
) {
    static FAILURES: crate::telemetry::LogBudget = crate::telemetry::LogBudget::new(1);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut ends = Vec::new();
        let mut failed = None;
        for (client, tallied) in tally.take() {
            match registry.add_flip_refusals(&client, &tallied).await {
                Ok(GuardTick {
                    end,
                    unknown_sources,
                }) => {
                    ends.extend(end);
                    alert_unknown_sources(&recorder, &metrics, &client, &unknown_sources);
                }
                Err(error) => {
                    tally.restore(client, tallied);
                    failed = Some(error);
                }
            }
        }
        match registry.end_due_guards().await {
            Ok(confirmed) => ends.extend(confirmed),
            Err(error) => failed = Some(error),
        }
        if let Err(error) = registry.refresh_guards_in_force().await {
            failed = Some(error.into());
        }
        for end in ends {
            match end {
                GuardEnd::Reverted {
                    client,
                    because,
                    reopened,
                } => {
                    metrics.flip_reverted();
                    tracing::warn!(
                        client,
                        because,
                        method = reopened.method.as_str(),
                        networks = ?reopened.networks,
                        until = reopened.until,
                        "ALERT: a guarded flip was reverted for the networks whose instances it cut \
                         off: the retired method is re-admitted from those networks only, for a \
                         bounded time"
                    );
                }
                GuardEnd::Confirmed { client } => {
                    tracing::info!(client, "a guarded flip ran out cleanly: confirmed");
                }
            }
        }
        if let Some(error) = failed
            && let Some(suppressed) = FAILURES.take(crate::telemetry::this_second())
        {
            tracing::error!(error = %error, suppressed, "checking the flip guards failed; retrying");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::storage::recorder::RecorderSettings;

    #[tokio::test]
    async fn refusals_from_unknown_networks_are_one_alert_naming_the_busiest_and_a_metric() {
        let dir = tempfile::tempdir().unwrap();
        let settings = crate::configuration::DatabaseSettings {
            path: dir.path().join("alerts.db"),
            ..Default::default()
        };
        let location = crate::storage::Location::of(&settings).unwrap();
        let pool = crate::storage::connect(&settings, &location).await.unwrap();
        let metrics = Arc::new(crate::telemetry::Metrics::new());
        let (recorder, _writer) = Recorder::start(
            pool.clone(),
            RecorderSettings {
                queue: 100,
                queue_bytes: 1 << 20,
                batch: 100,
                interval: Duration::from_secs(3600),
                retention: None,
                live_window: Duration::from_secs(86_400),
                max_database_bytes: None,
            },
            metrics.clone(),
        );
        // Nothing from unknown networks: nothing said.
        alert_unknown_sources(&recorder, &metrics, "w", &[]);
        let unknown: Vec<(String, i64)> = (0..20)
            .map(|n| (format!("2001:db8:{n:x}::/64"), 40 - n))
            .collect();
        alert_unknown_sources(&recorder, &metrics, "w", &unknown);
        recorder.flush().await;
        let crate::storage::Backend::Sqlite(sqlite) = &pool else {
            unreachable!("the unit tests run on SQLite")
        };
        let rows: Vec<(String, String, Option<String>)> =
            sqlx::query_as("SELECT kind, detail, client FROM audit_events")
                .fetch_all(sqlite)
                .await
                .unwrap();
        assert_eq!(
            rows.len(),
            1,
            "one alert for the tick, however many networks"
        );
        let (kind, detail, client) = &rows[0];
        assert_eq!((kind.as_str(), client.as_deref()), ("alert", Some("w")));
        let detail: serde_json::Value = serde_json::from_str(detail).unwrap();
        let total: i64 = unknown.iter().map(|(_, n)| n).sum();
        assert_eq!(detail["refusals"], total);
        assert_eq!(detail["networks_seen"], 20);
        let named = detail["networks"].as_array().unwrap();
        assert_eq!(named.len(), ALERT_NETWORKS);
        assert_eq!(named[0]["network"], "2001:db8:0::/64");
        assert_eq!(named[0]["refusals"], 40);
        assert!(
            metrics.encode().contains(&format!(
                "dispatch_retired_credential_unknown_source_total {total}"
            )),
            "{}",
            metrics.encode()
        );
    }
}
