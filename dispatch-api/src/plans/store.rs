//! Durable plan storage with group commit.
//!
//! SQLite: one writer thread owns every plan write and its own connection (rusqlite, prepared
//! statements kept). It takes all plans waiting at that moment, stores them in ONE transaction
//! and answers each caller only after the commit, so every 202 stands for a committed row while
//! many concurrent plans share one fsync. A plain thread rather than sqlx's pool: sqlx sends each
//! statement to its own worker thread and back, two thread switches per plan, which measured as
//! the largest cost of a plan submission (see docs/performance.md).
//!
//! PostgreSQL: one writer task per replica does the same with a pooled connection, so each
//! replica commits its waiting plans together. An `Idempotency-Key` is unique in the table, so
//! the same plan sent to two replicas at once is stored once: the second insert waits for the
//! first's commit, finds the key taken, and answers with the first plan's id.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use sqlx::{PgPool, Row};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::Plan;
use crate::configuration::DatabaseSettings;
use crate::identity::AuthMethod;
use crate::registry::ClientName;
use crate::storage::{Backend, Db, Location, OpenError, StorageError, on_backend};
use sqlite::Writer;

mod sqlite;

/// How many waiting plans one transaction takes at most.
const MAX_GROUP: usize = 256;

pub struct NewPlan {
    pub client: ClientName,
    pub method: AuthMethod,
    pub plan: Plan,
    pub idempotency_key: Option<String>,
    /// The validated plan as stored (JSON), serialised once.
    body: String,
    /// SHA-256 of `body`, to tell a retry from a different request under the same key.
    request_sha256: String,
}

impl NewPlan {
    pub fn new(
        client: ClientName,
        method: AuthMethod,
        plan: Plan,
        idempotency_key: Option<String>,
    ) -> Self {
        // A plan of validated domain types always serialises, as UTF-8. Sized for the usual
        // plan up front: grown from serde_json's 128 bytes, a plan of 20 stops took four
        // reallocations.
        let mut body = Vec::with_capacity(128 + 96 * plan.stops.len());
        let body = match serde_json::to_writer(&mut body, &plan) {
            Ok(()) => String::from_utf8(body).unwrap_or_default(),
            Err(_) => String::new(),
        };
        let request_sha256 =
            hex::encode(ring::digest::digest(&ring::digest::SHA256, body.as_bytes()));
        Self {
            client,
            method,
            plan,
            idempotency_key,
            body,
            request_sha256,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitOutcome {
    Created(Uuid),
    /// The same idempotency key and body were seen before: this is the first plan's id.
    Replayed(Uuid),
    /// The idempotency key was used before for a different body.
    KeyReused,
}

struct Job {
    plan: NewPlan,
    reply: oneshot::Sender<Result<SubmitOutcome, StorageError>>,
}

#[derive(Clone)]
pub struct PlanStore {
    jobs: mpsc::Sender<Job>,
    pool: Db,
    health: Arc<WriteHealth>,
}

/// When the last plan write failed (unix seconds; 0 once a write succeeds again).
#[derive(Default)]
pub struct WriteHealth(AtomicI64);

impl WriteHealth {
    /// Whether a write failed within `window` seconds and none has succeeded since. Readiness
    /// uses this for faults its own probe cannot see (a full database): bounded in time, so a
    /// probe-driven load balancer still lets a retry through to find out whether it cleared.
    pub fn failing_within(&self, window: i64) -> bool {
        let failed_at = self.0.load(Ordering::Relaxed);
        failed_at != 0 && time::OffsetDateTime::now_utc().unix_timestamp() - failed_at < window
    }
}

#[derive(Debug, serde::Serialize)]
pub struct StoredPlan {
    pub id: Uuid,
    pub client: String,
    pub auth_method: String,
    pub received_at: i64,
    pub plan: serde_json::Value,
}

impl PlanStore {
    /// Starts the writer: on SQLite a thread with its own connection, on PostgreSQL a task on
    /// the pool. Reads go through `pool`.
    pub fn start(settings: &DatabaseSettings, pool: Db, queue: usize) -> Result<Self, OpenError> {
        let (jobs, receiver) = mpsc::channel(queue);
        let health = Arc::new(WriteHealth::default());
        let writer_health = health.clone();
        match &pool {
            Backend::Sqlite(sqlite) => {
                // The writer opens the file the pool opened.
                let path = sqlite.connect_options().get_filename().to_owned();
                let location = Location::Sqlite(path.clone());
                let writer = Writer::open(settings, path).map_err(|source| OpenError::Writer {
                    location: location.clone(),
                    source,
                })?;
                std::thread::Builder::new()
                    .name("plan-writer".into())
                    .spawn(move || writer.run(receiver, &writer_health))
                    .map_err(|source| OpenError::WriterThread { location, source })?;
            }
            Backend::Postgres(pool) => {
                tokio::spawn(write_to_postgres(
                    pool.clone(),
                    receiver,
                    writer_health,
                    2 * settings.busy_timeout(),
                ));
            }
        }
        Ok(Self { jobs, pool, health })
    }

    pub fn health(&self) -> &WriteHealth {
        &self.health
    }

    /// Stores a plan and returns once it is committed (or refused).
    pub async fn submit(&self, plan: NewPlan) -> Result<SubmitOutcome, StorageError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { plan, reply })
            .await
            .map_err(|_| StorageError::WriterStopped)?;
        answer.await.map_err(|_| StorageError::WriterStopped)?
    }

    /// A plan, if it exists and was submitted by `client`.
    pub async fn get(
        &self,
        id: Uuid,
        client: &ClientName,
    ) -> Result<Option<StoredPlan>, StorageError> {
        on_backend!(&self.pool, pool => {
            let row = sqlx::query(
                "SELECT client, auth_method, received_at, body FROM plans WHERE id = $1 AND client = $2",
            )
            .bind(id.to_string())
            .bind(client.as_str())
            .fetch_optional(pool)
            .await
            .map_err(StorageError::database)?;
            row.map(|row| {
                let body: String = row.try_get("body")?;
                Ok(StoredPlan {
                    id,
                    client: row.try_get("client")?,
                    auth_method: row.try_get("auth_method")?,
                    received_at: row.try_get("received_at")?,
                    plan: serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
                })
            })
            .transpose()
            .map_err(StorageError::database)
        })
    }
}

/// Answers every job of a group with its outcome, or all with the group's error.
fn answer<E>(
    group: &mut Vec<Job>,
    written: Result<Vec<SubmitOutcome>, E>,
    health: &WriteHealth,
    error: impl FnOnce(E) -> StorageError,
) {
    match written {
        Ok(outcomes) => {
            health.0.store(0, Ordering::Relaxed);
            for (job, outcome) in group.drain(..).zip(outcomes) {
                let _ = job.reply.send(Ok(outcome));
            }
        }
        Err(failure) => {
            health.0.store(
                time::OffsetDateTime::now_utc().unix_timestamp(),
                Ordering::Relaxed,
            );
            let error = error(failure);
            tracing::error!(error = %error, plans = group.len(), "storing plans failed; nothing was acknowledged");
            for job in group.drain(..) {
                let _ = job.reply.send(Err(error.clone()));
            }
        }
    }
}

/// The PostgreSQL writer: takes every job waiting, commits them in one transaction, answers.
async fn write_to_postgres(
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
        .bind(column(|p| p.plan.route_id.as_str().to_owned()))
        .bind(column(|p| p.plan.team.as_str().to_owned()))
        .bind(column(|p| p.plan.planned_date.to_string()))
        .bind(
            plans
                .iter()
                .map(|p| p.plan.stops.len() as i64)
                .collect::<Vec<_>>(),
        )
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

/// The answer to a plan whose idempotency key an earlier plan holds: a replay of that plan when
/// the bodies are the same, a refusal when they differ.
fn earlier_outcome(id: &str, hash: &str, plan: &NewPlan) -> Result<SubmitOutcome, uuid::Error> {
    Ok(if hash == plan.request_sha256 {
        SubmitOutcome::Replayed(Uuid::parse_str(id)?)
    } else {
        SubmitOutcome::KeyReused
    })
}
