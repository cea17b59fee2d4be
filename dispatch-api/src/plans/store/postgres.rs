//! The PostgreSQL writer: one task per replica commits the plans waiting together.

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::NewPlan;
use super::SubmitOutcome;
use super::group::{Job, MAX_GROUP, WriteHealth, answer, earlier_outcome};
use crate::storage::StorageError;

/// The PostgreSQL writer: takes every job waiting, commits them in one transaction, answers.
pub(super) async fn write_to_postgres(
    pool: PgPool,
    mut jobs: mpsc::Receiver<Job>,
    health: Arc<WriteHealth>,
    timeout: std::time::Duration,
) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while jobs.recv_many(&mut group, MAX_GROUP).await > 0 {
        // Bounded: on a network that drops packets rather than refusing them, a group would
        // otherwise wait for TCP to give up (minutes) with every later plan behind it. A group
        // cut off here may have committed: its callers get 503, and a retry with the same
        // Idempotency-Key is answered with the stored plan.
        let written = tokio::time::timeout(timeout, write_group_to_postgres(&pool, &group))
            .await
            .unwrap_or_else(|_| {
                Err(sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "storing the plans took longer than twice database.busy_timeout_ms",
                )))
            });
        answer(&mut group, written, &health, StorageError::database);
    }
}

/// The whole group in one statement (one round trip, however many plans): each column bound as
/// an array and unnested by the server. A plan whose key is taken is not inserted and not
/// returned.
const INSERT_PLANS_PG: &str = "INSERT INTO plans (id, client, auth_method, route_id, team, \
     planned_date, stop_count, body, idempotency_key, request_sha256, received_at) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
       $6::text[], $7::bigint[], $8::text[], $9::text[], $10::text[], $11::bigint[]) \
     ON CONFLICT (client, idempotency_key) DO NOTHING RETURNING id";

/// The plans holding the keys of those that were not inserted.
const FIND_EARLIER_PG: &str = "SELECT client, idempotency_key, id, request_sha256 FROM plans \
     WHERE (client, idempotency_key) IN (SELECT * FROM UNNEST($1::text[], $2::text[]))";

async fn write_group_to_postgres(
    pool: &PgPool,
    group: &[Job],
) -> Result<Vec<SubmitOutcome>, sqlx::Error> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    // In key order: two replicas' groups that share keys then wait on each other's keys in the
    // same order, never in a cycle (a deadlock would fail both groups).
    let mut order: Vec<usize> = (0..group.len()).collect();
    order.sort_by(|&a, &b| {
        let key = |i: usize| {
            (
                group[i].plan.client.as_str(),
                &group[i].plan.idempotency_key,
            )
        };
        key(a).cmp(&key(b))
    });
    let plans: Vec<&NewPlan> = order.iter().map(|&i| &group[i].plan).collect();
    let ids: Vec<Uuid> = plans.iter().map(|_| Uuid::now_v7()).collect();
    let column = |f: fn(&NewPlan) -> String| plans.iter().map(|p| f(p)).collect::<Vec<_>>();
    let mut tx = pool.begin().await?;
    let inserted: Vec<String> = sqlx::query_scalar(INSERT_PLANS_PG)
        .bind(ids.iter().map(Uuid::to_string).collect::<Vec<_>>())
        .bind(column(|p| p.client.to_string()))
        .bind(column(|p| p.method.as_str().to_owned()))
        .bind(column(|p| p.route_id.clone()))
        .bind(column(|p| p.team.clone()))
        .bind(column(|p| p.planned_date.to_string()))
        .bind(plans.iter().map(|p| p.stop_count).collect::<Vec<_>>())
        .bind(column(|p| p.body.clone()))
        .bind(
            plans
                .iter()
                .map(|p| p.idempotency_key.clone())
                .collect::<Vec<_>>(),
        )
        .bind(column(|p| p.request_sha256.clone()))
        .bind(vec![now; plans.len()])
        .fetch_all(&mut *tx)
        .await?;
    let inserted: std::collections::HashSet<String> = inserted.into_iter().collect();
    // The keys taken, by this group or by a commit of any replica: whose plan holds each.
    let taken: Vec<&NewPlan> = plans
        .iter()
        .zip(&ids)
        .filter(|(_, id)| !inserted.contains(&id.to_string()))
        .map(|(plan, _)| *plan)
        .collect();
    let mut earlier = std::collections::HashMap::new();
    if !taken.is_empty() {
        let rows: Vec<(String, String, String, String)> = sqlx::query_as(FIND_EARLIER_PG)
            .bind(
                taken
                    .iter()
                    .map(|p| p.client.to_string())
                    .collect::<Vec<_>>(),
            )
            .bind(
                taken
                    .iter()
                    .map(|p| p.idempotency_key.clone())
                    .collect::<Vec<_>>(),
            )
            .fetch_all(&mut *tx)
            .await?;
        for (client, key, id, hash) in rows {
            earlier.insert((client, key), (id, hash));
        }
    }
    let mut outcomes = vec![SubmitOutcome::KeyReused; group.len()];
    for ((&index, plan), id) in order.iter().zip(&plans).zip(&ids) {
        outcomes[index] = if inserted.contains(&id.to_string()) {
            SubmitOutcome::Created(*id)
        } else {
            let key = (
                plan.client.to_string(),
                plan.idempotency_key.clone().unwrap_or_default(),
            );
            let (id, hash) = earlier.get(&key).ok_or_else(|| {
                sqlx::Error::Protocol(format!("no plan holds the idempotency key of {key:?}"))
            })?;
            earlier_outcome(id, hash, plan).map_err(|e| sqlx::Error::Decode(Box::new(e)))?
        };
    }
    tx.commit().await?;
    Ok(outcomes)
}
