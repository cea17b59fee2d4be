//! Guarded flips. A mode change with a [`FlipGuard`](crate::configuration::FlipGuard) is
//! watched: every replica counts the refusals of that client the flip may have caused
//! (`key_retired`, `method_not_allowed`) in memory ([`super::FlipTally`]), each with its time
//! and source network, judged by the guard's rule ([`judge`]) as it comes and again about once
//! a second against the stored guard; those that count are added to the guard's row
//! ([`Registry::add_flip_refusals`]).
//!
//! A guard serves the instances the evidence shows were live, never a thief: when it starts, it
//! notes the method the flip retires and the networks that used it within the evidence window
//! before the flip (`credential_networks`). Only refusals of that method from those networks,
//! after the guard started and before its watch ends, count; the same credential from any other
//! network is an alert (`retired_credential_unknown_source`), never a reason to reopen.
//!
//! At `max_refusals` the guard reverts, scoped: the client stays in the mode the operator set,
//! and the retired method is re-admitted from the networks whose refusals reverted it only, for
//! the rest of the watch plus [`REOPEN_GRACE_SECS`] ([`Reopening`]), `mode_reverted` in the
//! audit log with the evidence. A guard that runs out first records `mode_confirmed`
//! ([`Registry::end_due_guards`]), once every replica's late tick has had [`SETTLE_SECS`] to
//! land; a manual mode change cancels a watching guard and ends a reopening. Each ending is a
//! conditional update of the row still `watching`, inside the client's row lock: of two
//! replicas, exactly one reverts or confirms.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;
use sqlx::Row;

use super::reopening::{Reopening, reopening_of, watch_of};
use super::tally::{FlipEvidence, Judged, Tallied, Watch, judge, reached};
use super::write::{lock_client_row, now};
use super::{ClientName, Registry, RegistryError};
use crate::identity::AuthMethod;
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
    /// The method the flip retired (`None`: it retired none, and no refusal counts).
    pub retired_method: Option<AuthMethod>,
    /// The networks that used it within the evidence window before the flip: only refusals
    /// from these count.
    pub known_networks: BTreeSet<String>,
    /// Once reverted: the retired method re-admitted from these networks only, until when.
    pub reopened: Option<Reopening>,
}

/// How long after a reverted guard's watch its reopening lasts: time for the operator to give
/// the instance it kept working its certificate (or to choose the old mode for good).
pub const REOPEN_GRACE_SECS: i64 = 3600;

/// How long past its watch a guard waits before it is confirmed: every replica's tick (about
/// once a second) adds the refusals it saw within the watch first, so a late tick loses nothing.
pub const SETTLE_SECS: i64 = 3;

/// What one tick did with one client's refusals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuardTick {
    pub end: Option<GuardEnd>,
    /// Refusals of the retired credential from networks that never used it before the flip,
    /// by network, the most first: alerts (the guard task writes them through the recorder).
    pub unknown_sources: Vec<(String, i64)>,
}

/// What a tick did to one guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardEnd {
    Reverted {
        client: String,
        because: String,
        reopened: Reopening,
    },
    Confirmed {
        client: String,
    },
}

impl Registry {
    /// Judges the refusals a replica saw against `client`'s watching guard: those that count
    /// are added to it, and at its threshold it reverts, scoped (see the module's comment);
    /// those of the retired credential from unknown networks are written as alerts.
    pub async fn add_flip_refusals(
        &self,
        client: &str,
        tallied: &Tallied,
    ) -> Result<GuardTick, RegistryError> {
        let Ok(name) = ClientName::parse(client) else {
            return Ok(GuardTick::default());
        };
        // Most refused clients have no guard (a stale instance still sending its key long after
        // the move): a read, not a write transaction every second, tells.
        let Some(watch) = self.watching(&name).await? else {
            return Ok(GuardTick::default());
        };
        let (counted, unknown_sources) = sort_refusals(&watch, tallied);
        // Nothing counts: no transaction (a thief's refusals cost the database nothing).
        if counted.total() == 0 {
            return Ok(GuardTick {
                end: None,
                unknown_sources,
            });
        }
        let _guard = self.writes.lock().await;
        let at = now();
        let end = async {
            let mut tx = self.pool().begin().await?;
            lock_client_row(&mut tx, &name).await?;
            // A write first: on SQLite a transaction that read before writing cannot wait for
            // the write lock (it would fail at once, busy), one that writes first can. The
            // refusals were judged against the watch by their own time: a tick that comes late
            // still adds them, as long as the guard was not confirmed meanwhile.
            let row = on_backend!(&mut tx, tx => sqlx::query(
                "UPDATE mode_guards SET refusals = refusals + $1 \
                 WHERE client = $2 AND state = 'watching' AND started_at = $3 \
                 RETURNING to_mode, max_refusals, refusals, evidence",
            )
            .bind(counted.total())
            .bind(name.as_str())
            .bind(watch.started_at)
            .fetch_optional(&mut **tx)
            .await
            .and_then(|row| row.map(|row| Ok::<_, sqlx::Error>((
                row.try_get::<String, _>("to_mode")?,
                row.try_get::<i64, _>("max_refusals")?,
                row.try_get::<i64, _>("refusals")?,
                row.try_get::<String, _>("evidence")?,
            ))).transpose()))?;
            let Some((to, max_refusals, refusals, evidence)) = row else {
                return Ok(None);
            };
            let mut evidence: FlipEvidence = serde_json::from_str(&evidence).unwrap_or_default();
            evidence.merge(&counted);
            let evidence_text = serde_json::to_string(&evidence).unwrap_or_default();
            let reopened = match watch.retired {
                Some(method) if reached(refusals, max_refusals) => Some(Reopening {
                    method,
                    networks: evidence.networks.clone(),
                    until: watch.watch_until.saturating_add(REOPEN_GRACE_SECS),
                }),
                _ => None,
            };
            let Some(reopened) = reopened else {
                set_guard(&mut tx, &name, "watching", refusals, &evidence_text, None).await?;
                tx.commit().await?;
                return Ok(None);
            };
            let row = CountedRow {
                to,
                max_refusals,
                refusals,
                evidence,
            };
            let end = revert(&mut tx, &name, row, reopened, at).await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(Some(end))
        }
        .await
        .map_err(StorageError::database)?;
        // The reopening is committed: it is reported even if this replica's reread fails (every
        // replica rereads the reopenings at its next tick).
        if end.is_some()
            && let Err(error) = self.refresh_guards_in_force().await
        {
            tracing::error!(client, error = %error, "reading the reopenings after a revert failed");
        }
        Ok(GuardTick {
            end,
            unknown_sources,
        })
    }

    /// What `name`'s watching guard holds to judge refusals by; `None` without one.
    async fn watching(&self, name: &ClientName) -> Result<Option<Watch>, RegistryError> {
        let watch: Option<(i64, i64, Option<String>, String)> =
            on_backend!(self.pool(), pool => sqlx::query_as(
                "SELECT started_at, watch_until, retired_method, known_networks FROM mode_guards \
                 WHERE client = $1 AND state = 'watching'",
            )
            .bind(name.as_str())
            .fetch_optional(pool)
            .await)
            .map_err(StorageError::database)?;
        Ok(watch.map(|(started_at, watch_until, retired, known)| {
            watch_of(started_at, watch_until, retired, &known)
        }))
    }
}

impl Registry {
    /// Ends every guard whose watch is over without reaching its threshold: `mode_confirmed`.
    pub async fn end_due_guards(&self) -> Result<Vec<GuardEnd>, RegistryError> {
        let at = now();
        let confirmed = async {
            let mut tx = self.pool().begin().await?;
            // Conditional: of two replicas, the one whose update changed the row confirms.
            let rows: Vec<(String, String, i64)> = on_backend!(&mut tx, tx => sqlx::query(
                "UPDATE mode_guards SET state = 'confirmed', ended_at = $1 \
                 WHERE state = 'watching' AND watch_until <= $2 \
                 RETURNING client, to_mode, refusals",
            )
            .bind(at)
            .bind(at - SETTLE_SECS)
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
                 refusals, ended_at, evidence, retired_method, known_networks, \
                 reopened_networks, reopened_until FROM mode_guards ORDER BY client",
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
                retired_method: row
                    .try_get::<Option<String>, _>("retired_method")?
                    .and_then(|m| AuthMethod::parse(&m)),
                known_networks: serde_json::from_str(&row.try_get::<String, _>("known_networks")?)
                    .unwrap_or_default(),
                reopened: reopening_of(
                    row.try_get("retired_method")?,
                    row.try_get("reopened_networks")?,
                    row.try_get("reopened_until")?,
                ),
            })).collect())
            .map_err(StorageError::database)
        })
    }
}

/// A watching guard's row with this tick's refusals added.
struct CountedRow {
    /// The mode the flip moved to.
    to: String,
    max_refusals: i64,
    refusals: i64,
    evidence: FlipEvidence,
}

/// A guard's threshold reached: the guard ends `reverted`, its reopening is stored (the retired
/// method re-admitted from the networks its refusals came from, until when), and the audit log
/// says why.
async fn revert(
    tx: &mut Tx,
    name: &ClientName,
    row: CountedRow,
    reopened: Reopening,
    at: i64,
) -> Result<GuardEnd, sqlx::Error> {
    let CountedRow {
        to,
        max_refusals,
        refusals,
        evidence,
    } = row;
    let evidence_text = serde_json::to_string(&evidence).unwrap_or_default();
    let because = evidence.because();
    set_guard(tx, name, "reverted", refusals, &evidence_text, Some(at)).await?;
    on_backend!(&mut *tx, tx => sqlx::query(
        "UPDATE mode_guards SET reopened_networks = $1, reopened_until = $2 WHERE client = $3",
    )
    .bind(serde_json::to_string(&reopened.networks).unwrap_or_default())
    .bind(reopened.until)
    .bind(name.as_str())
    .execute(&mut **tx)
    .await
    .map(|_| ()))?;
    let mut event = AuditEvent::new(AuditKind::AdminChange, "mode_reverted");
    event.client = Some(name.to_string());
    event.actor = Some("dispatch-api (flip guard)".into());
    event.method = Some(reopened.method);
    event.before = Some(to.clone());
    event.after = Some(format!(
        "{to}, {} re-admitted from {}",
        reopened.method.as_str(),
        reopened
            .networks
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    ));
    event.detail = serde_json::json!({
        "because": because,
        "max_refusals": max_refusals,
        "evidence": evidence,
        "reopened": reopened,
    });
    event.insert(tx).await?;
    Ok(GuardEnd::Reverted {
        client: name.to_string(),
        because,
        reopened,
    })
}

/// The refusals of a tally that count toward `watch`, and the refusals of the retired credential
/// per network that did not use it before the flip, the most first (an alert names the
/// busiest). Judged at count time already, against this replica's copy of the guard.
fn sort_refusals(watch: &Watch, tallied: &Tallied) -> (FlipEvidence, Vec<(String, i64)>) {
    let mut counted = FlipEvidence::default();
    let mut unknown: HashMap<String, i64> = tallied.unknown.clone().into_iter().collect();
    for (refusal, count) in &tallied.seen {
        match judge(watch, refusal) {
            Judged::Counts => counted.add_many(
                refusal.reason,
                Some(refusal.network.clone()),
                refusal.at,
                *count,
            ),
            Judged::UnknownSource => *unknown.entry(refusal.network.clone()).or_default() += count,
            Judged::Ignored => {}
        }
    }
    let mut unknown_sources: Vec<(String, i64)> = unknown.into_iter().collect();
    unknown_sources.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    (counted, unknown_sources)
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
