//! The SQLite plan writer: one thread, its own connection (rusqlite, prepared statements
//! kept), every plan waiting at that moment in ONE transaction, each caller answered after the
//! commit.

use std::sync::Arc;

use rusqlite::{OptionalExtension, params};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::SubmitOutcome;
use super::group::{Job, MAX_GROUP, WriteHealth, answer, earlier_outcome};
use crate::configuration::DatabaseSettings;
use crate::storage::{self, StorageError, file_faults};

/// The writer thread's state: its settings and, while it works, its connection. After a
/// file-system fault the connection is dropped and the next group opens a new one, which sees
/// the file system as it is then (repaired and remounted, say).
pub(super) struct Writer {
    settings: DatabaseSettings,
    path: std::path::PathBuf,
    connection: Option<rusqlite::Connection>,
}

const FIND_EARLIER: &str =
    "SELECT id, request_sha256 FROM plans WHERE client = ?1 AND idempotency_key = ?2";
const INSERT_PLAN: &str = "INSERT INTO plans (id, client, auth_method, route_id, team, \
     planned_date, stop_count, body, idempotency_key, request_sha256, received_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";

impl Writer {
    pub(super) fn open(
        settings: &DatabaseSettings,
        path: std::path::PathBuf,
    ) -> Result<Self, rusqlite::Error> {
        let mut writer = Self {
            settings: settings.clone(),
            path,
            connection: None,
        };
        writer.connection()?;
        Ok(writer)
    }

    /// The open connection, opening one with the pool's pragmas if needed.
    fn connection(&mut self) -> Result<&mut rusqlite::Connection, rusqlite::Error> {
        if self.connection.is_none() {
            let connection = rusqlite::Connection::open(&self.path)?;
            connection.busy_timeout(self.settings.busy_timeout())?;
            for (name, value) in storage::connection_pragmas(&self.settings) {
                connection.pragma_update(None, name, value)?;
            }
            self.connection = Some(connection);
        }
        Ok(self.connection.as_mut().expect("opened above"))
    }

    pub(super) fn run(mut self, mut jobs: mpsc::Receiver<Job>, health: &WriteHealth) {
        let mut group = Vec::with_capacity(MAX_GROUP);
        while let Some(job) = jobs.blocking_recv() {
            group.push(job);
            while group.len() < MAX_GROUP {
                match jobs.try_recv() {
                    Ok(job) => group.push(job),
                    Err(_) => break,
                }
            }
            let written = self.write_group(&group);
            if let Err(error) = &written
                && file_faults::note_code(error.sqlite_error().map(|e| e.extended_code))
            {
                self.connection = None;
            }
            answer(&mut group, written, health, |error| {
                StorageError::Sqlite(Arc::new(error))
            });
        }
    }

    fn write_group(&mut self, group: &[Job]) -> Result<Vec<SubmitOutcome>, rusqlite::Error> {
        let connection = self.connection()?;
        // IMMEDIATE: the write lock first (waiting up to the busy timeout). A deferred
        // transaction that reads an idempotency key and then writes fails at once with
        // SQLITE_BUSY_SNAPSHOT if another connection (the recorder, an admin change) committed
        // in between, and the busy timeout does not apply to that.
        let tx = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut outcomes = Vec::with_capacity(group.len());
        {
            let mut find_earlier = tx.prepare_cached(FIND_EARLIER)?;
            let mut insert = tx.prepare_cached(INSERT_PLAN)?;
            for Job { plan, .. } in group {
                if let Some(key) = &plan.idempotency_key {
                    let earlier = find_earlier
                        .query_row(params![plan.client.as_str(), key], |row| {
                            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                        })
                        .optional()?;
                    if let Some((id, hash)) = earlier {
                        outcomes.push(earlier_outcome(&id, &hash, plan).map_err(|e| {
                            rusqlite::Error::FromSqlConversionFailure(
                                0,
                                rusqlite::types::Type::Text,
                                Box::new(e),
                            )
                        })?);
                        continue;
                    }
                }
                // Time-ordered ids: new rows go to the end of the primary-key index, so
                // inserting stays cheap however many plans are stored.
                let id = Uuid::now_v7();
                insert.execute(params![
                    id.to_string(),
                    plan.client.as_str(),
                    plan.method.as_str(),
                    plan.route_id,
                    plan.team,
                    plan.planned_date.to_string(),
                    plan.stop_count,
                    plan.body,
                    plan.idempotency_key,
                    plan.request_sha256,
                    now,
                ])?;
                outcomes.push(SubmitOutcome::Created(id));
            }
        }
        tx.commit()?;
        Ok(outcomes)
    }
}
