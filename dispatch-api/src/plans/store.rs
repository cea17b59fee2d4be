//! Durable plan storage with group commit.
//!
//! One writer task owns every plan write. It takes all plans waiting at that moment, stores them
//! in ONE transaction and answers each caller only after the commit, so every 202 stands for a
//! committed row while many concurrent plans share one fsync.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use sqlx::{Row, SqlitePool};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::Plan;
use crate::error::StorageError;
use crate::identity::AuthMethod;
use crate::registry::ClientName;

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
        // A plan of validated domain types always serialises.
        let body = serde_json::to_string(&plan).unwrap_or_default();
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

#[derive(Debug, PartialEq, Eq)]
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
    pool: SqlitePool,
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
    /// Starts the writer task on the current runtime.
    pub fn start(pool: SqlitePool, queue: usize) -> Self {
        let (jobs, receiver) = mpsc::channel(queue);
        let health = Arc::new(WriteHealth::default());
        tokio::spawn(write_loop(pool.clone(), receiver, health.clone()));
        Self { jobs, pool, health }
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
        let row = sqlx::query(
            "SELECT client, auth_method, received_at, body FROM plans WHERE id = ? AND client = ?",
        )
        .bind(id.to_string())
        .bind(client.as_str())
        .fetch_optional(&self.pool)
        .await?;
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
    }
}

async fn write_loop(pool: SqlitePool, mut jobs: mpsc::Receiver<Job>, health: Arc<WriteHealth>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while jobs.recv_many(&mut group, MAX_GROUP).await > 0 {
        match write_group(&pool, &group).await {
            Ok(outcomes) => {
                health.0.store(0, Ordering::Relaxed);
                for (job, outcome) in group.drain(..).zip(outcomes) {
                    let _ = job.reply.send(Ok(outcome));
                }
            }
            Err(error) => {
                health.0.store(
                    time::OffsetDateTime::now_utc().unix_timestamp(),
                    Ordering::Relaxed,
                );
                tracing::error!(error = %error, plans = group.len(), "storing plans failed; nothing was acknowledged");
                for job in group.drain(..) {
                    let _ = job.reply.send(Err(error.clone()));
                }
            }
        }
    }
}

async fn write_group(pool: &SqlitePool, group: &[Job]) -> Result<Vec<SubmitOutcome>, StorageError> {
    let mut tx = pool.begin().await?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut outcomes = Vec::with_capacity(group.len());
    for Job { plan, .. } in group {
        if let Some(key) = &plan.idempotency_key {
            let earlier = sqlx::query(
                "SELECT id, request_sha256 FROM plans WHERE client = ? AND idempotency_key = ?",
            )
            .bind(plan.client.as_str())
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = earlier {
                let id: String = row.try_get("id")?;
                let hash: String = row.try_get("request_sha256")?;
                outcomes.push(if hash == plan.request_sha256 {
                    SubmitOutcome::Replayed(
                        Uuid::parse_str(&id).map_err(|_| StorageError::Corrupt("plan id"))?,
                    )
                } else {
                    SubmitOutcome::KeyReused
                });
                continue;
            }
        }
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO plans (id, client, auth_method, route_id, team, planned_date, stop_count, \
             body, idempotency_key, request_sha256, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id.to_string())
        .bind(plan.client.as_str())
        .bind(plan.method.as_str())
        .bind(plan.plan.route_id.as_str())
        .bind(plan.plan.team.as_str())
        .bind(plan.plan.planned_date.to_string())
        .bind(plan.plan.stops.len() as i64)
        .bind(&plan.body)
        .bind(plan.idempotency_key.as_deref())
        .bind(&plan.request_sha256)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        outcomes.push(SubmitOutcome::Created(id));
    }
    tx.commit().await?;
    Ok(outcomes)
}
