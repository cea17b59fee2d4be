//! Guarded flips. A mode change with a [`FlipGuard`] is watched: every replica counts the
//! refusals of that client the flip causes (`key_retired`, `method_not_allowed`) in memory
//! ([`FlipTally`]) and adds them to the guard's row about once a second
//! ([`Registry::add_flip_refusals`]). At `max_refusals` within `watch_secs` the client goes back
//! to its previous mode, `mode_reverted` in the audit log with the evidence; a guard that runs
//! out first records `mode_confirmed` ([`Registry::end_due_guards`]); a manual mode change
//! cancels it. Each ending is a conditional update of the row still `watching`, inside the
//! client's row lock: of two replicas, exactly one reverts or confirms.

use serde::Serialize;
use sqlx::Row;

use super::follow::Notice;
use super::tally::{FlipEvidence, FlipTally, reached};
use super::write::{announce, lock_client_row, now};
use super::{ClientName, MigrationMode, Registry, RegistryError, locks_out};
use crate::configuration::FlipGuard;
use crate::storage::recorder::{AuditEvent, AuditKind};
use crate::storage::{StorageError, Tx, on_backend};

/// A client's latest guard, as the migration report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct GuardView {
    pub client: String,
    pub from: String,
    pub to: String,
    pub state: String,
    pub started_at: i64,
    pub watch_until: i64,
    pub max_refusals: i64,
    pub refusals: i64,
    pub ended_at: Option<i64>,
    pub evidence: FlipEvidence,
}

/// What a tick did to one guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardEnd {
    Reverted {
        client: String,
        because: String,
    },
    /// The threshold was reached, but putting the client back would have locked every
    /// operator out of /admin: the flip stays, and says so.
    Kept {
        client: String,
        because: String,
    },
    Confirmed {
        client: String,
    },
}

impl Registry {
    /// Adds the refusals a replica saw to `client`'s watching guard; reverts the flip when they
    /// reach its threshold. `None` when nothing ended.
    pub async fn add_flip_refusals(
        &self,
        client: &str,
        seen: &FlipEvidence,
    ) -> Result<Option<GuardEnd>, RegistryError> {
        let Ok(name) = ClientName::parse(client) else {
            return Ok(None);
        };
        // Most refused clients have no guard (a stale instance still sending its key long after
        // the move): a read, not a write transaction every second, tells.
        let watched: Option<String> = on_backend!(self.pool(), pool => sqlx::query_scalar(
            "SELECT client FROM mode_guards WHERE client = $1 AND state = 'watching'",
        )
        .bind(name.as_str())
        .fetch_optional(pool)
        .await)
        .map_err(StorageError::database)?;
        if watched.is_none() {
            return Ok(None);
        }
        let _guard = self.writes.lock().await;
        let at = now();
        let ended = async {
            let mut tx = self.pool().begin().await?;
            lock_client_row(&mut tx, &name).await?;
            // A write first: on SQLite a transaction that read before writing cannot wait for
            // the write lock (it would fail at once, busy), one that writes first can.
            let row = on_backend!(&mut tx, tx => sqlx::query(
                "UPDATE mode_guards SET refusals = refusals + $1 \
                 WHERE client = $2 AND state = 'watching' AND watch_until > $3 \
                 RETURNING from_mode, to_mode, max_refusals, refusals, evidence",
            )
            .bind(seen.total())
            .bind(name.as_str())
            .bind(at)
            .fetch_optional(&mut **tx)
            .await
            .and_then(|row| row.map(|row| Ok::<_, sqlx::Error>((
                row.try_get::<String, _>("from_mode")?,
                row.try_get::<String, _>("to_mode")?,
                row.try_get::<i64, _>("max_refusals")?,
                row.try_get::<i64, _>("refusals")?,
                row.try_get::<String, _>("evidence")?,
            ))).transpose()))?;
            let Some((from, to, max_refusals, refusals, evidence)) = row else {
                return Ok(None);
            };
            let mut evidence: FlipEvidence = serde_json::from_str(&evidence).unwrap_or_default();
            evidence.merge(seen);
            let evidence_text = serde_json::to_string(&evidence).unwrap_or_default();
            let ended = if reached(refusals, max_refusals) {
                let because = evidence.because();
                let keeps_admin = self.revert_keeps_an_admin(&name, &from);
                let state = if keeps_admin { "reverted" } else { "kept" };
                set_guard(&mut tx, &name, state, refusals, &evidence_text, Some(at)).await?;
                let mut event = AuditEvent::new(
                    AuditKind::AdminChange,
                    if keeps_admin {
                        "mode_reverted"
                    } else {
                        "mode_revert_refused"
                    },
                );
                event.client = Some(name.to_string());
                event.actor = Some("dispatch-api (flip guard)".into());
                event.before = Some(to.clone());
                event.after = Some(if keeps_admin {
                    from.clone()
                } else {
                    to.clone()
                });
                event.detail = serde_json::json!({
                    "because": because,
                    "max_refusals": max_refusals,
                    "evidence": evidence,
                });
                if keeps_admin {
                    on_backend!(&mut tx, tx => sqlx::query(
                        "UPDATE clients SET mode = $1, updated_at = $2 WHERE name = $3",
                    )
                    .bind(&from)
                    .bind(at)
                    .bind(name.as_str())
                    .execute(&mut **tx)
                    .await
                    .map(|_| ()))?;
                }
                event.insert(&mut tx).await?;
                announce(&mut tx, Notice::Client(name.clone())).await?;
                Some(if keeps_admin {
                    GuardEnd::Reverted {
                        client: name.to_string(),
                        because,
                    }
                } else {
                    GuardEnd::Kept {
                        client: name.to_string(),
                        because,
                    }
                })
            } else {
                set_guard(&mut tx, &name, "watching", refusals, &evidence_text, None).await?;
                None
            };
            tx.commit().await?;
            Ok::<_, sqlx::Error>(ended)
        }
        .await
        .map_err(StorageError::database)?;
        // The end is committed: it is reported even if this replica's reload fails (the
        // follower reads the client again on the announcement, or at its periodic read).
        if ended.is_some()
            && let Err(error) = self.reload_client(&name).await
        {
            tracing::error!(client, error = %error, "reloading a client after its flip guard ended failed");
        }
        Ok(ended)
    }

    /// Whether putting `name` back in `from` leaves some client able to reach /admin.
    fn revert_keeps_an_admin(&self, name: &ClientName, from: &str) -> bool {
        let snapshot = self.snapshot();
        let (Some(before), Ok(mode)) = (snapshot.client(name), MigrationMode::parse(from)) else {
            return true;
        };
        let mut after = (**before).clone();
        after.mode = mode;
        !locks_out(before, &after, snapshot.clients().map(|c| &**c))
    }

    /// Ends every guard whose watch is over without reaching its threshold: `mode_confirmed`.
    pub async fn end_due_guards(&self) -> Result<Vec<GuardEnd>, RegistryError> {
        let at = now();
        let confirmed = async {
            let mut tx = self.pool().begin().await?;
            // Conditional: of two replicas, the one whose update changed the row confirms.
            let rows: Vec<(String, String, i64)> = on_backend!(&mut tx, tx => sqlx::query(
                "UPDATE mode_guards SET state = 'confirmed', ended_at = $1 \
                 WHERE state = 'watching' AND watch_until <= $1 \
                 RETURNING client, to_mode, refusals",
            )
            .bind(at)
            .fetch_all(&mut **tx)
            .await
            .and_then(|rows| rows.iter().map(|row| Ok((
                row.try_get("client")?,
                row.try_get("to_mode")?,
                row.try_get("refusals")?,
            ))).collect::<Result<Vec<_>, sqlx::Error>>()))?;
            for (client, to, refusals) in &rows {
                let mut event = AuditEvent::new(AuditKind::AdminChange, "mode_confirmed");
                event.client = Some(client.clone());
                event.actor = Some("dispatch-api (flip guard)".into());
                event.before = Some(to.clone());
                event.after = Some(to.clone());
                event.detail = serde_json::json!({ "refusals": refusals });
                event.insert(&mut tx).await?;
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(rows)
        }
        .await
        .map_err(StorageError::database)?;
        Ok(confirmed
            .into_iter()
            .map(|(client, _, _)| GuardEnd::Confirmed { client })
            .collect())
    }

    /// Every client's latest guard.
    pub async fn guards(&self) -> Result<Vec<GuardView>, StorageError> {
        on_backend!(self.pool(), pool => {
            sqlx::query(
                "SELECT client, from_mode, to_mode, state, started_at, watch_until, max_refusals, \
                 refusals, ended_at, evidence FROM mode_guards ORDER BY client",
            )
            .fetch_all(pool)
            .await
            .and_then(|rows| rows.iter().map(|row| Ok(GuardView {
                client: row.try_get("client")?,
                from: row.try_get("from_mode")?,
                to: row.try_get("to_mode")?,
                state: row.try_get("state")?,
                started_at: row.try_get("started_at")?,
                watch_until: row.try_get("watch_until")?,
                max_refusals: row.try_get("max_refusals")?,
                refusals: row.try_get("refusals")?,
                ended_at: row.try_get("ended_at")?,
                evidence: serde_json::from_str(&row.try_get::<String, _>("evidence")?)
                    .unwrap_or_default(),
            })).collect())
            .map_err(StorageError::database)
        })
    }
}

async fn set_guard(
    tx: &mut Tx,
    name: &ClientName,
    state: &str,
    refusals: i64,
    evidence: &str,
    ended_at: Option<i64>,
) -> Result<(), sqlx::Error> {
    on_backend!(tx, tx => sqlx::query(
        "UPDATE mode_guards SET state = $1, refusals = $2, evidence = $3, ended_at = $4 \
         WHERE client = $5 AND state = 'watching'",
    )
    .bind(state)
    .bind(refusals)
    .bind(evidence)
    .bind(ended_at)
    .bind(name.as_str())
    .execute(&mut **tx)
    .await
    .map(|_| ()))
}

/// In a mode change's transaction: a watching guard of `name` is cancelled (the operator
/// decided), and with `guard` a new one starts, watching the change from `from` to `to`.
pub(super) async fn replace_guard(
    tx: &mut Tx,
    name: &ClientName,
    (from, to): (MigrationMode, MigrationMode),
    guard: Option<FlipGuard>,
    at: i64,
) -> Result<(), sqlx::Error> {
    on_backend!(&mut *tx, tx => sqlx::query(
        "UPDATE mode_guards SET state = 'cancelled', ended_at = $1 \
         WHERE client = $2 AND state = 'watching'",
    )
    .bind(at)
    .bind(name.as_str())
    .execute(&mut **tx)
    .await
    .map(|_| ()))?;
    let Some(guard) = guard else {
        return Ok(());
    };
    on_backend!(tx, tx => sqlx::query(
        "INSERT INTO mode_guards (client, from_mode, to_mode, started_at, watch_until, \
         max_refusals, refusals, state, ended_at, evidence) \
         VALUES ($1, $2, $3, $4, $5, $6, 0, 'watching', NULL, '{}') \
         ON CONFLICT (client) DO UPDATE SET from_mode = excluded.from_mode, \
         to_mode = excluded.to_mode, started_at = excluded.started_at, \
         watch_until = excluded.watch_until, max_refusals = excluded.max_refusals, \
         refusals = 0, state = 'watching', ended_at = NULL, evidence = '{}'",
    )
    .bind(name.as_str())
    .bind(from.as_str())
    .bind(to.as_str())
    .bind(at)
    .bind(at.saturating_add_unsigned(guard.watch_secs))
    .bind(i64::from(guard.max_refusals))
    .execute(&mut **tx)
    .await
    .map(|_| ()))
}

/// How often a replica adds what it counted to the guards and ends those that are due.
const TICK: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs for the life of the process: about once a second, adds this replica's tally to the
/// guards and ends the due ones; a reverted flip is counted in
/// `dispatch_flips_reverted_total` and logged as an alert.
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
        for (client, seen) in tally.take() {
            match registry.add_flip_refusals(&client, &seen).await {
                Ok(end) => ends.extend(end),
                Err(error) => {
                    tally.restore(client, &seen);
                    failed = Some(error);
                }
            }
        }
        match registry.end_due_guards().await {
            Ok(confirmed) => ends.extend(confirmed),
            Err(error) => failed = Some(error),
        }
        for end in ends {
            match end {
                GuardEnd::Reverted { client, because } => {
                    metrics.flip_reverted();
                    tracing::warn!(
                        client,
                        because,
                        "ALERT: a guarded flip was reverted: the client is back in its previous mode"
                    );
                }
                GuardEnd::Kept { client, because } => {
                    metrics.flip_reverted();
                    tracing::error!(
                        client,
                        because,
                        "ALERT: a guarded flip reached its threshold, but reverting it would lock every operator out of /admin: it stays"
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
