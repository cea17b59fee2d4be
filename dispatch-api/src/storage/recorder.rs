//! Usage and audit records, buffered and written in batches.
//!
//! The request path never waits for the database. Usage is added up in memory under a short
//! lock (one entry per client, method and hour, so it is bounded by the registry) and taken by
//! the writer task on its tick: no message, no thread wake-up per request. Audit events are
//! `try_send`ed into a bounded queue; those that do not fit are counted as dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use sqlx::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use crate::identity::{AuthMethod, Fingerprint, SpkiHash};
use crate::telemetry::Metrics;

/// One authenticated request, for the migration report.
#[derive(Debug, Clone)]
pub struct UsageEvent {
    pub client: String,
    pub method: AuthMethod,
    pub at: i64,
    pub certificate: Option<CertificateSeen>,
}

/// The certificate a request was authenticated with, as the migration report shows it.
#[derive(Debug, Clone, Copy)]
pub struct CertificateSeen {
    pub fingerprint: Fingerprint,
    /// Unix seconds: when the identity stops being accepted (the earliest notAfter of its path).
    pub not_after: i64,
    /// The key of the CA that signed it.
    pub issuer_spki: SpkiHash,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    AuthRefused,
    Alert,
    AdminChange,
}

impl AuditKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthRefused => "auth_refused",
            Self::Alert => "alert",
            Self::AdminChange => "admin_change",
        }
    }
}

/// A refusal, an alert or an admin change.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub at: i64,
    pub kind: AuditKind,
    pub reason: String,
    pub client: Option<String>,
    pub actor: Option<String>,
    pub method: Option<AuthMethod>,
    pub before: Option<String>,
    pub after: Option<String>,
    pub detail: serde_json::Value,
}

impl AuditEvent {
    pub fn new(kind: AuditKind, reason: impl Into<String>) -> Self {
        Self {
            at: time::OffsetDateTime::now_utc().unix_timestamp(),
            kind,
            reason: reason.into(),
            client: None,
            actor: None,
            method: None,
            before: None,
            after: None,
            detail: serde_json::json!({}),
        }
    }

    /// Writes the event inside the caller's transaction (used for admin changes, which must be
    /// recorded together with the change itself).
    pub async fn insert(&self, conn: &mut sqlx::SqliteConnection) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO audit_events (at, kind, reason, client, actor, method, before, after, detail) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(self.at)
        .bind(self.kind.as_str())
        .bind(&self.reason)
        .bind(self.client.as_deref())
        .bind(self.actor.as_deref())
        .bind(self.method.map(AuthMethod::as_str))
        .bind(self.before.as_deref())
        .bind(self.after.as_deref())
        .bind(self.detail.to_string())
        .execute(conn)
        .await?;
        Ok(())
    }
}

enum Record {
    Audit(AuditEvent),
    Flush(oneshot::Sender<()>),
}

/// The sending side, cheap to clone into every worker.
#[derive(Clone)]
pub struct Recorder {
    queue: mpsc::Sender<Record>,
    usage: Arc<Mutex<UsageTotalsByKey>>,
    metrics: Arc<Metrics>,
}

type UsageTotalsByKey = HashMap<(String, AuthMethod, i64), UsageTotals>;

pub struct RecorderSettings {
    pub queue: usize,
    pub batch: usize,
    pub interval: Duration,
}

impl Recorder {
    /// Starts the writer task; it stops after a final flush once every `Recorder` is dropped.
    pub fn start(
        pool: SqlitePool,
        settings: RecorderSettings,
        metrics: Arc<Metrics>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (queue, receiver) = mpsc::channel(settings.queue);
        let usage = Arc::new(Mutex::new(HashMap::new()));
        let handle = tokio::spawn(write_loop(
            pool,
            receiver,
            usage.clone(),
            settings,
            metrics.clone(),
        ));
        (
            Self {
                queue,
                usage,
                metrics,
            },
            handle,
        )
    }

    pub fn usage(&self, event: UsageEvent) {
        let mut usage = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        add_usage(&mut usage, event);
    }

    pub fn audit(&self, event: AuditEvent) {
        self.offer(Record::Audit(event));
    }

    fn offer(&self, record: Record) {
        if self.queue.try_send(record).is_err() {
            self.metrics.recorder_dropped.inc();
            tracing::warn!(
                "usage/audit queue full: a record was dropped (see recorder_dropped_total)"
            );
        }
    }

    /// Waits until everything queued before this call is written.
    pub async fn flush(&self) {
        let (done, written) = oneshot::channel();
        if self.queue.send(Record::Flush(done)).await.is_ok() {
            let _ = written.await;
        }
    }
}

async fn write_loop(
    pool: SqlitePool,
    mut queue: mpsc::Receiver<Record>,
    usage: Arc<Mutex<UsageTotalsByKey>>,
    settings: RecorderSettings,
    metrics: Arc<Metrics>,
) {
    let mut batch = Batch::default();
    let mut tick = tokio::time::interval(settings.interval);
    let take_usage = |batch: &mut Batch| {
        let mut usage = usage.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::swap(&mut batch.usage, &mut usage);
    };
    loop {
        tokio::select! {
            record = queue.recv() => match record {
                Some(Record::Audit(event)) => batch.audit.push(event),
                Some(Record::Flush(done)) => {
                    take_usage(&mut batch);
                    batch.write(&pool, &metrics).await;
                    let _ = done.send(());
                }
                None => {
                    take_usage(&mut batch);
                    batch.write(&pool, &metrics).await;
                    return;
                }
            },
            _ = tick.tick() => {
                take_usage(&mut batch);
                batch.write(&pool, &metrics).await;
            }
        }
        if batch.len() >= settings.batch {
            batch.write(&pool, &metrics).await;
        }
    }
}

fn add_usage(usage: &mut UsageTotalsByKey, event: UsageEvent) {
    let hour = event.at - event.at.rem_euclid(3600);
    let totals = usage
        .entry((event.client, event.method, hour))
        .or_insert(UsageTotals {
            first_seen: event.at,
            ..UsageTotals::default()
        });
    totals.count += 1;
    totals.first_seen = totals.first_seen.min(event.at);
    totals.last_seen = totals.last_seen.max(event.at);
    if event.certificate.is_some() {
        totals.certificate = event.certificate;
    }
}

#[derive(Default)]
struct UsageTotals {
    count: i64,
    first_seen: i64,
    last_seen: i64,
    certificate: Option<CertificateSeen>,
}

#[derive(Default)]
struct Batch {
    usage: UsageTotalsByKey,
    audit: Vec<AuditEvent>,
}

impl Batch {
    fn len(&self) -> usize {
        self.usage.len() + self.audit.len()
    }

    async fn write(&mut self, pool: &SqlitePool, metrics: &Metrics) {
        if self.len() == 0 {
            return;
        }
        for ((client, _, _), totals) in &self.usage {
            if let Some(seen) = totals.certificate {
                metrics.record_client_certificate(client, seen.not_after);
            }
        }
        let records = self.len() as u64;
        if let Err(error) = self.try_write(pool).await {
            crate::storage::file_faults::note(&error);
            // Usage and audit records are best effort by design; a lost batch is counted.
            metrics.recorder_dropped.inc_by(records);
            tracing::error!(error = %error, records, "writing usage and audit records failed; they were dropped");
        }
        self.usage.clear();
        self.audit.clear();
    }

    async fn try_write(&self, pool: &SqlitePool) -> Result<(), sqlx::Error> {
        let mut tx = pool.begin().await?;
        for ((client, method, hour), totals) in &self.usage {
            sqlx::query(
                "INSERT INTO client_usage (client, method, hour, request_count, first_seen, last_seen, \
                 last_cert_fingerprint, last_cert_not_after, last_cert_issuer_spki) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (client, method, hour) DO UPDATE SET \
                 request_count = request_count + excluded.request_count, \
                 first_seen = min(first_seen, excluded.first_seen), \
                 last_seen = max(last_seen, excluded.last_seen), \
                 last_cert_fingerprint = coalesce(excluded.last_cert_fingerprint, last_cert_fingerprint), \
                 last_cert_not_after = coalesce(excluded.last_cert_not_after, last_cert_not_after), \
                 last_cert_issuer_spki = coalesce(excluded.last_cert_issuer_spki, last_cert_issuer_spki)",
            )
            .bind(client)
            .bind(method.as_str())
            .bind(hour)
            .bind(totals.count)
            .bind(totals.first_seen)
            .bind(totals.last_seen)
            .bind(totals.certificate.map(|c| c.fingerprint.to_string()))
            .bind(totals.certificate.map(|c| c.not_after))
            .bind(totals.certificate.map(|c| c.issuer_spki.to_string()))
            .execute(&mut *tx)
            .await?;
        }
        for event in &self.audit {
            event.insert(&mut tx).await?;
        }
        tx.commit().await
    }
}
