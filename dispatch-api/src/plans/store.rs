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

use sqlx::Row;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::Plan;
use crate::configuration::DatabaseSettings;
use crate::identity::AuthMethod;
use crate::registry::ClientName;
use crate::storage::{Backend, Db, Location, OpenError, StorageError, on_backend};
use group::Job;
use sqlite::Writer;

mod group;
mod postgres;
mod sqlite;

pub use group::WriteHealth;

/// A plan as the writer stores it: its row's columns, nothing more. The plan itself is dropped
/// where it was parsed, on the request's thread: freed on the writer's thread, each of its
/// allocations (one per stop) would go back to another thread's arena under that arena's lock
/// (4 % of figure 1's samples, docs/performance.md).
pub struct NewPlan {
    pub client: ClientName,
    pub method: AuthMethod,
    pub idempotency_key: Option<String>,
    route_id: String,
    team: String,
    planned_date: time::Date,
    stop_count: i64,
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
        let Plan {
            route_id,
            team,
            planned_date,
            stops,
        } = plan;
        Self {
            client,
            method,
            idempotency_key,
            route_id: route_id.into_string(),
            team: team.into_string(),
            planned_date,
            stop_count: stops.len() as i64,
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

#[derive(Clone)]
pub struct PlanStore {
    jobs: mpsc::Sender<Job>,
    pool: Db,
    health: Arc<WriteHealth>,
}

/// A stored plan as `GET /api/dispatch-plans/{id}` answers it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct StoredPlan {
    #[schema(value_type = String)]
    pub id: Uuid,
    pub client: String,
    /// How the request that submitted it authenticated.
    pub auth_method: String,
    /// Unix seconds.
    pub received_at: i64,
    /// The plan as stored (its stops and legs, as submitted).
    #[schema(value_type = Object)]
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
                tokio::spawn(postgres::write_to_postgres(
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
