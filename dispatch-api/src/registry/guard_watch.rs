//! The guard task: about once a second, every replica judges its tally against the guards,
//! ends the due ones and rereads the reopenings in force, and raises what it found as alerts.

use super::guard::{GuardEnd, GuardTick};
use super::{FlipTally, Registry};

/// How often a replica adds what it counted to the guards and ends those that are due.
const TICK: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs for the life of the process: about once a second, judges this replica's tally against
/// the guards, ends the due ones and rereads the reopenings in force; a reverted flip is counted
/// in `dispatch_flips_reverted_total` and a retired credential from an unknown network in
/// `dispatch_retired_credential_unknown_source_total`, each logged as an alert.
pub async fn watch_guards(
    registry: std::sync::Arc<Registry>,
    tally: std::sync::Arc<FlipTally>,
    metrics: std::sync::Arc<crate::telemetry::Metrics>,
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
                    for (network, refusals) in unknown_sources {
                        metrics.retired_credential_unknown_source(refusals as u64);
                        tracing::warn!(
                            alert = "retired_credential_unknown_source",
                            client,
                            network,
                            refusals,
                            "ALERT: the credential a guarded flip retired was sent from a network \
                             that did not use it before the flip (a leaked or stolen credential?); \
                             it does not count toward the guard"
                        );
                    }
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
        if let Err(error) = registry.refresh_reopenings().await {
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
