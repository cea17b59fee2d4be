//! How a guard starts, in the mode change's own transaction: it notes the method the flip
//! retires and the networks that used it within the evidence window before the flip (the only
//! networks whose refusals will count), and replaces the client's latest guard.

use std::collections::BTreeSet;

use super::tally::retired_by;
use super::{ClientName, MigrationMode};
use crate::configuration::FlipGuard;
use crate::identity::AuthMethod;
use crate::storage::{Tx, on_backend};

/// Known networks a guard notes, at most (the latest): enough for a fleet across many subnets.
pub const KNOWN_NETWORKS_KEPT: i64 = 64;

/// A guard as a mode change starts it: the operator's guard, and how far back the networks that
/// used the retired method are read (`migration.evidence_window_secs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardStart {
    pub guard: FlipGuard,
    pub evidence_window_secs: u64,
}

/// In a mode change's transaction: a watching guard of `name` is cancelled and a reopening in
/// force ends (the operator decided), and with `start` a new guard watches the change from
/// `from` to `to`, noting the method it retires and the networks that used it within the
/// evidence window before `at`.
pub(super) async fn replace_guard(
    tx: &mut Tx,
    name: &ClientName,
    (from, to): (MigrationMode, MigrationMode),
    start: Option<GuardStart>,
    at: i64,
) -> Result<(), sqlx::Error> {
    on_backend!(&mut *tx, tx => sqlx::query(
        "UPDATE mode_guards SET state = CASE WHEN state = 'watching' THEN 'cancelled' ELSE state END, \
         ended_at = CASE WHEN state = 'watching' THEN $1 ELSE ended_at END, \
         reopened_until = CASE WHEN reopened_until > $1 THEN $1 ELSE reopened_until END \
         WHERE client = $2 AND (state = 'watching' OR reopened_until > $1)",
    )
    .bind(at)
    .bind(name.as_str())
    .execute(&mut **tx)
    .await
    .map(|_| ()))?;
    let Some(GuardStart {
        guard,
        evidence_window_secs,
    }) = start
    else {
        return Ok(());
    };
    let retired = retired_by(from, to);
    let known_networks: Vec<String> = match retired {
        Some(method) => on_backend!(&mut *tx, tx => sqlx::query_scalar(
            "SELECT network FROM credential_networks \
             WHERE client = $1 AND method = $2 AND last_seen >= $3 \
             ORDER BY last_seen DESC, network LIMIT $4",
        )
        .bind(name.as_str())
        .bind(method.as_str())
        .bind(at.saturating_sub_unsigned(evidence_window_secs))
        .bind(KNOWN_NETWORKS_KEPT)
        .fetch_all(&mut **tx)
        .await)?,
        None => Vec::new(),
    };
    let known_networks: BTreeSet<String> = known_networks.into_iter().collect();
    on_backend!(tx, tx => sqlx::query(
        "INSERT INTO mode_guards (client, from_mode, to_mode, started_at, watch_until, \
         max_refusals, refusals, state, ended_at, evidence, retired_method, known_networks, \
         reopened_networks, reopened_until) \
         VALUES ($1, $2, $3, $4, $5, $6, 0, 'watching', NULL, '{}', $7, $8, '[]', NULL) \
         ON CONFLICT (client) DO UPDATE SET from_mode = excluded.from_mode, \
         to_mode = excluded.to_mode, started_at = excluded.started_at, \
         watch_until = excluded.watch_until, max_refusals = excluded.max_refusals, \
         refusals = 0, state = 'watching', ended_at = NULL, evidence = '{}', \
         retired_method = excluded.retired_method, known_networks = excluded.known_networks, \
         reopened_networks = '[]', reopened_until = NULL",
    )
    .bind(name.as_str())
    .bind(from.as_str())
    .bind(to.as_str())
    .bind(at)
    .bind(at.saturating_add_unsigned(guard.watch_secs))
    .bind(i64::from(guard.max_refusals))
    .bind(retired.map(AuthMethod::as_str))
    .bind(serde_json::to_string(&known_networks).unwrap_or_default())
    .execute(&mut **tx)
    .await
    .map(|_| ()))
}
