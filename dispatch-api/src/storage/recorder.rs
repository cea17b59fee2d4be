//! Usage and audit records, buffered and written in batches.
//!
//! The request path never waits for the database. Usage is added up in memory under a short
//! lock (one entry per client, method and hour, so it is bounded by the registry) and taken by
//! the writer task on its tick: no message, no thread wake-up per request. Refusals of callers
//! we cannot name are added up the same way, per reason, source and hour (bounded: past
//! [`MAX_REFUSAL_SOURCES`] new sources share one `other` entry), so a flood of anonymous
//! requests costs a counter, not a row each. Audit events are `try_send`ed into a queue bounded
//! in count and in bytes; those that do not fit are counted as dropped.
//!
//! The space the audit log takes is bounded three ways: old rows are pruned
//! ([`RecorderSettings::retention`]); under a database size cap, audit rows stop being written
//! once the file reaches [`AUDIT_SHARE_OF_CAP`] of it, so the rest stays for plans; and the
//! counted refusals above.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Backend, Db, Tx, on_backend};
use serde::Serialize;
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
    /// The SHA-256 (hex) of the key it was authenticated with: each key counts its own use.
    pub key_sha256: Option<String>,
}

/// The certificate a request was authenticated with, as the migration report shows it.
#[derive(Debug, Clone)]
pub struct CertificateSeen {
    pub fingerprint: Fingerprint,
    /// Unix seconds: when the identity stops being accepted (the earliest notAfter of its path).
    pub not_after: i64,
    /// The key of the CA that signed it.
    pub issuer_spki: SpkiHash,
    /// The chain presented (leaf first, DER), stored as the client's live certificate.
    pub chain: Arc<[Vec<u8>]>,
}

/// A presented chain as stored: each certificate's DER in hex, space-separated.
pub fn chain_text(chain: &[Vec<u8>]) -> String {
    chain.iter().map(hex::encode).collect::<Vec<_>>().join(" ")
}

/// A stored chain read back; `None` when it is not what [`chain_text`] writes.
pub fn chain_from_text(text: &str) -> Option<Vec<Vec<u8>>> {
    let chain = text
        .split(' ')
        .map(|der| hex::decode(der).ok().filter(|der| !der.is_empty()))
        .collect::<Option<Vec<_>>>()?;
    (!chain.is_empty()).then_some(chain)
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

/// A refusal of a caller we cannot name (no credentials, an unknown key, a certificate no
/// client is bound to): added up, not written one by one.
#[derive(Debug, Clone)]
pub struct RefusalSeen {
    pub reason: &'static str,
    /// The client the refusal names, or the caller's network (`203.0.113.0/24`, `/64` for IPv6).
    pub source: String,
    pub at: i64,
    /// What the last one of the hour showed (path, issuer, ...), already clipped.
    pub detail: serde_json::Value,
}

/// One line a second says the audit queue is full: a flood fills it with every request.
static DROP_LINES: crate::telemetry::LogBudget = crate::telemetry::LogBudget::new(1);

/// New (reason, source) pairs beyond this many in one hour share one `other` entry: anonymous
/// callers from many networks cannot add rows without bound.
pub const MAX_REFUSAL_SOURCES: usize = 4096;

/// Under `database.max_size_bytes`, audit rows are written only while the file is below this
/// share of the cap (in tenths): the last tenth is kept for plans.
pub const AUDIT_SHARE_OF_CAP: i64 = 9;

/// Audit rows written between two checks of the file's size under a cap.
const AUDIT_CHUNK: usize = 16;

impl AuditEvent {
    /// Roughly what the event holds in memory and on disk, for the queue's byte bound.
    fn weight(&self) -> usize {
        let text = |t: &Option<String>| t.as_ref().map_or(0, String::len);
        64 + self.reason.len()
            + text(&self.client)
            + text(&self.actor)
            + text(&self.before)
            + text(&self.after)
            + self.detail.to_string().len()
    }

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
    pub async fn insert(&self, tx: &mut Tx) -> Result<(), sqlx::Error> {
        on_backend!(tx, tx => sqlx::query(
            "INSERT INTO audit_events (at, kind, reason, client, actor, method, before, after, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
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
        .execute(&mut **tx)
        .await
        .map(|_| ()))?;
        Ok(())
    }
}

enum Record {
    Audit(AuditEvent, usize),
    Flush(oneshot::Sender<()>),
}

/// The sending side, cheap to clone into every worker.
#[derive(Clone)]
pub struct Recorder {
    queue: mpsc::Sender<Record>,
    queued_bytes: Arc<AtomicUsize>,
    max_queued_bytes: usize,
    usage: Arc<Mutex<UsageTotalsByKey>>,
    refusals: Arc<Mutex<RefusalBook>>,
    metrics: Arc<Metrics>,
}

/// The counted refusals not yet written, and the (reason, source) pairs seen this hour (kept
/// across writes, so the bound holds per hour, not per write).
#[derive(Default)]
struct RefusalBook {
    totals: RefusalTotalsByKey,
    hour: i64,
    sources: HashSet<(&'static str, String)>,
}

type UsageTotalsByKey = HashMap<(String, AuthMethod, i64), UsageTotals>;
type RefusalTotalsByKey = HashMap<(&'static str, String, i64), RefusalTotals>;

pub struct RecorderSettings {
    /// Audit events queued, at most.
    pub queue: usize,
    /// And at most this many bytes of them.
    pub queue_bytes: usize,
    pub batch: usize,
    pub interval: Duration,
    /// Audit rows and refusal counts older than this are deleted (checked hourly, and at start).
    pub retention: Option<Duration>,
    /// `database.max_size_bytes`, if set: audit rows keep out of its last tenth.
    pub max_database_bytes: Option<u64>,
}

impl Recorder {
    /// Starts the writer task; it stops after a final flush once every `Recorder` is dropped.
    pub fn start(
        pool: Db,
        settings: RecorderSettings,
        metrics: Arc<Metrics>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (queue, receiver) = mpsc::channel(settings.queue.max(1));
        let usage = Arc::new(Mutex::new(HashMap::new()));
        let refusals = Arc::new(Mutex::new(RefusalBook::default()));
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let max_queued_bytes = settings.queue_bytes;
        let handle = tokio::spawn(write_loop(
            pool,
            receiver,
            Totals {
                usage: usage.clone(),
                refusals: refusals.clone(),
                queued_bytes: queued_bytes.clone(),
            },
            settings,
            metrics.clone(),
        ));
        (
            Self {
                queue,
                queued_bytes,
                max_queued_bytes,
                usage,
                refusals,
                metrics,
            },
            handle,
        )
    }

    /// Adds one refusal of a caller we cannot name to its hour's count.
    pub fn refusal(&self, seen: RefusalSeen) {
        let mut book = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        add_refusal(&mut book, seen);
    }

    pub fn usage(&self, event: UsageEvent) {
        let mut usage = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        add_usage(&mut usage, event);
    }

    pub fn audit(&self, event: AuditEvent) {
        let weight = event.weight();
        let queued = self.queued_bytes.fetch_add(weight, Ordering::Relaxed);
        if queued + weight > self.max_queued_bytes
            || self.queue.try_send(Record::Audit(event, weight)).is_err()
        {
            self.queued_bytes.fetch_sub(weight, Ordering::Relaxed);
            self.metrics.recorder_dropped.inc();
            if let Some(suppressed) = DROP_LINES.take(crate::telemetry::this_second()) {
                tracing::warn!(
                    suppressed,
                    "audit queue full: a record was dropped (see dispatch_recorder_dropped_total)"
                );
            }
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

/// What the request path adds up in memory and the writer takes.
struct Totals {
    usage: Arc<Mutex<UsageTotalsByKey>>,
    refusals: Arc<Mutex<RefusalBook>>,
    queued_bytes: Arc<AtomicUsize>,
}

async fn write_loop(
    pool: Db,
    mut queue: mpsc::Receiver<Record>,
    totals: Totals,
    settings: RecorderSettings,
    metrics: Arc<Metrics>,
) {
    let mut batch = Batch {
        // The cap is SQLite's page count: PostgreSQL's space is its operator's to manage.
        audit_page_limit: settings
            .max_database_bytes
            .filter(|_| !pool.is_postgres())
            .map(|bytes| (bytes / 4096) as i64 * AUDIT_SHARE_OF_CAP / 10),
        ..Batch::default()
    };
    let mut tick = tokio::time::interval(settings.interval);
    let mut prune_tick = tokio::time::interval(Duration::from_secs(3600));
    let take_usage = |batch: &mut Batch| {
        let mut usage = totals.usage.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::swap(&mut batch.usage, &mut usage);
        drop(usage);
        let mut book = totals.refusals.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::swap(&mut batch.refusals, &mut book.totals);
    };
    loop {
        tokio::select! {
            record = queue.recv() => match record {
                Some(Record::Audit(event, weight)) => {
                    totals.queued_bytes.fetch_sub(weight, Ordering::Relaxed);
                    batch.audit.push(event);
                }
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
            _ = prune_tick.tick(), if settings.retention.is_some() => {
                if let Some(retention) = settings.retention {
                    prune(&pool, retention).await;
                }
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
    if let Some(key) = event.key_sha256 {
        let (count, last) = totals.keys.entry(key).or_insert((0, event.at));
        *count += 1;
        *last = (*last).max(event.at);
    }
}

/// Deletes audit rows and refusal counts older than `retention`, a few thousand rows per short
/// transaction, so that a large backlog never holds SQLite's write lock long enough to delay
/// plans.
async fn prune(pool: &Db, retention: Duration) {
    const BATCH: i64 = 5000;
    let before = time::OffsetDateTime::now_utc().unix_timestamp() - retention.as_secs() as i64;
    let mut pruned = 0;
    // The same statements but for the row's address: SQLite's rowid, PostgreSQL's ctid.
    let row_address = match pool {
        Backend::Sqlite(_) => "rowid",
        Backend::Postgres(_) => "ctid",
    };
    for (table, column) in [("audit_events", "at"), ("refusal_counts", "last_seen")] {
        let statement = format!(
            "DELETE FROM {table} WHERE {row_address} IN \
             (SELECT {row_address} FROM {table} WHERE {column} < $1 LIMIT $2)"
        );
        loop {
            // The names are this function's constants, not input.
            let statement = sqlx::AssertSqlSafe(statement.as_str());
            let deleted = on_backend!(pool, pool => sqlx::query(statement)
                .bind(before)
                .bind(BATCH)
                .execute(pool)
                .await
                .map(|done| done.rows_affected()));
            match deleted {
                Ok(rows) if rows > 0 => {
                    pruned += rows;
                    tokio::task::yield_now().await;
                }
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(error = %error, "pruning old audit rows failed; retried in an hour");
                    return;
                }
            }
        }
    }
    if pruned > 0 {
        tracing::info!(rows = pruned, "pruned audit rows past audit.retention_days");
    }
}

fn add_refusal(book: &mut RefusalBook, seen: RefusalSeen) {
    let hour = seen.at - seen.at.rem_euclid(3600);
    if hour != book.hour {
        book.hour = hour;
        book.sources.clear();
    }
    let mut source = seen.source;
    if !book.sources.contains(&(seen.reason, source.clone())) {
        if book.sources.len() >= MAX_REFUSAL_SOURCES {
            source = "other".to_owned();
        } else {
            book.sources.insert((seen.reason, source.clone()));
        }
    }
    let totals = book
        .totals
        .entry((seen.reason, source, hour))
        .or_insert(RefusalTotals {
            first_seen: seen.at,
            ..RefusalTotals::default()
        });
    totals.count += 1;
    totals.first_seen = totals.first_seen.min(seen.at);
    totals.last_seen = totals.last_seen.max(seen.at);
    totals.last_detail = seen.detail;
}

#[derive(Default)]
struct RefusalTotals {
    count: i64,
    first_seen: i64,
    last_seen: i64,
    last_detail: serde_json::Value,
}

#[derive(Default)]
struct UsageTotals {
    count: i64,
    first_seen: i64,
    last_seen: i64,
    certificate: Option<CertificateSeen>,
    /// By key (SHA-256 hex): requests and the last one.
    keys: BTreeMap<String, (i64, i64)>,
}

#[derive(Default)]
struct Batch {
    usage: UsageTotalsByKey,
    /// The certificate whose chain each usage row (client, hour) already holds, kept across
    /// writes: a chain is a few KiB, written once per row and certificate, not on every tick.
    chains_written: HashMap<(String, i64), Fingerprint>,
    refusals: RefusalTotalsByKey,
    audit: Vec<AuditEvent>,
    /// Pages the database may have before audit rows stop being written (see
    /// [`AUDIT_SHARE_OF_CAP`]).
    audit_page_limit: Option<i64>,
}

impl Batch {
    fn len(&self) -> usize {
        self.usage.len() + self.refusals.len() + self.audit.len()
    }

    async fn write(&mut self, pool: &Db, metrics: &Metrics) {
        if self.len() == 0 {
            return;
        }
        for ((client, _, _), totals) in &self.usage {
            if let Some(seen) = &totals.certificate {
                metrics.record_client_certificate(client, seen.not_after);
            }
        }
        let records = self.len() as u64;
        let written = self.try_write(pool).await;
        if written.is_ok() {
            self.note_chains_written();
        }
        match written {
            Ok(0) => {}
            Ok(held_back) => {
                metrics.recorder_dropped.inc_by(held_back as u64);
                tracing::error!(
                    dropped = held_back,
                    "the database is near database.max_size_bytes: audit rows and refusal counts \
                     are not written, the rest is kept for plans (prune the audit log or raise \
                     the cap)"
                );
            }
            Err(error) => {
                crate::storage::file_faults::note(&error);
                // Usage and audit records are best effort by design; a lost batch is counted.
                metrics.recorder_dropped.inc_by(records);
                tracing::error!(error = %error, records, "writing usage and audit records failed; they were dropped");
            }
        }
        self.usage.clear();
        self.refusals.clear();
        self.audit.clear();
    }

    /// Remembers the chains this batch wrote, and forgets rows of past hours.
    fn note_chains_written(&mut self) {
        for ((client, method, hour), totals) in &self.usage {
            if let (AuthMethod::Certificate, Some(seen)) = (method, &totals.certificate) {
                self.chains_written
                    .insert((client.clone(), *hour), seen.fingerprint);
            }
        }
        if let Some(newest) = self.chains_written.keys().map(|(_, hour)| *hour).max() {
            self.chains_written.retain(|(_, hour), _| *hour >= newest);
        }
    }

    /// The chain to write into a usage row: none when the row holds this certificate's already.
    fn chain_to_write(&self, client: &str, hour: i64, totals: &UsageTotals) -> Option<String> {
        let seen = totals.certificate.as_ref()?;
        let written = self.chains_written.get(&(client.to_owned(), hour));
        (written != Some(&seen.fingerprint)).then(|| chain_text(&seen.chain))
    }

    /// Writes the batch; returns how many refusal counts and audit rows were held back by the
    /// size cap.
    async fn try_write(&self, pool: &Db) -> Result<usize, sqlx::Error> {
        let mut tx = pool.begin().await?;
        // In key order: replicas writing the same rows then lock them in the same order, never
        // in a cycle (PostgreSQL would abort one batch as a deadlock).
        let mut usage: Vec<_> = self.usage.iter().collect();
        usage.sort_by(|(a, _), (b, _)| (&a.0, a.1.as_str(), a.2).cmp(&(&b.0, b.1.as_str(), b.2)));
        for ((client, method, hour), totals) in usage {
            on_backend!(&mut tx, tx => sqlx::query(
                "INSERT INTO client_usage (client, method, hour, request_count, first_seen, last_seen, \
                 last_cert_fingerprint, last_cert_not_after, last_cert_issuer_spki, last_cert_chain) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (client, method, hour) DO UPDATE SET \
                 request_count = client_usage.request_count + excluded.request_count, \
                 first_seen = CASE WHEN excluded.first_seen < client_usage.first_seen \
                   THEN excluded.first_seen ELSE client_usage.first_seen END, \
                 last_seen = CASE WHEN excluded.last_seen > client_usage.last_seen \
                   THEN excluded.last_seen ELSE client_usage.last_seen END, \
                 last_cert_fingerprint = coalesce(excluded.last_cert_fingerprint, client_usage.last_cert_fingerprint), \
                 last_cert_not_after = coalesce(excluded.last_cert_not_after, client_usage.last_cert_not_after), \
                 last_cert_issuer_spki = coalesce(excluded.last_cert_issuer_spki, client_usage.last_cert_issuer_spki), \
                 last_cert_chain = coalesce(excluded.last_cert_chain, client_usage.last_cert_chain)",
            )
            .bind(client)
            .bind(method.as_str())
            .bind(hour)
            .bind(totals.count)
            .bind(totals.first_seen)
            .bind(totals.last_seen)
            .bind(totals.certificate.as_ref().map(|c| c.fingerprint.to_string()))
            .bind(totals.certificate.as_ref().map(|c| c.not_after))
            .bind(totals.certificate.as_ref().map(|c| c.issuer_spki.to_string()))
            .bind(self.chain_to_write(client, *hour, totals))
            .execute(&mut **tx)
            .await
            .map(|_| ()))?;
        }
        // Each key's use, added up over the batch and written in key order after the usage rows,
        // so that two replicas' batches lock key rows in one order (never a deadlock).
        let mut keys: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
        for totals in self.usage.values() {
            for (key, (count, last)) in &totals.keys {
                let entry = keys.entry(key.as_str()).or_insert((0, *last));
                entry.0 += count;
                entry.1 = entry.1.max(*last);
            }
        }
        for (key, (count, last)) in keys {
            on_backend!(&mut tx, tx => sqlx::query(
                "UPDATE api_keys SET use_count = use_count + $1, \
                 last_used_at = CASE WHEN last_used_at IS NULL OR last_used_at < $2 \
                   THEN $2 ELSE last_used_at END \
                 WHERE key_sha256 = $3",
            )
            .bind(count)
            .bind(last)
            .bind(key)
            .execute(&mut **tx)
            .await
            .map(|_| ()))?;
        }
        // Under a size cap, refusal counts and audit rows are written in small chunks, each only
        // while the file's used pages are below their share of the cap: the overshoot is one
        // chunk, well inside the tenth kept for plans. Freed pages count as free.
        let mut written = 0;
        let mut refusals: Vec<_> = self.refusals.iter().collect();
        refusals.sort_by_key(|(key, _)| *key);
        let mut room = true;
        for chunk in refusals.chunks(AUDIT_CHUNK) {
            room = room && self.below_audit_limit(&mut tx).await?;
            if !room {
                break;
            }
            for ((reason, source, hour), totals) in chunk {
                on_backend!(&mut tx, tx => sqlx::query(
                    "INSERT INTO refusal_counts (hour, reason, source, count, first_seen, last_seen, last_detail) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (hour, reason, source) DO UPDATE SET \
                     count = refusal_counts.count + excluded.count, \
                     first_seen = CASE WHEN excluded.first_seen < refusal_counts.first_seen \
                       THEN excluded.first_seen ELSE refusal_counts.first_seen END, \
                     last_seen = CASE WHEN excluded.last_seen > refusal_counts.last_seen \
                       THEN excluded.last_seen ELSE refusal_counts.last_seen END, \
                     last_detail = excluded.last_detail",
                )
                .bind(hour)
                .bind(reason)
                .bind(source)
                .bind(totals.count)
                .bind(totals.first_seen)
                .bind(totals.last_seen)
                .bind(totals.last_detail.to_string())
                .execute(&mut **tx)
                .await
                .map(|_| ()))?;
            }
            written += chunk.len();
        }
        for chunk in self.audit.chunks(AUDIT_CHUNK) {
            room = room && self.below_audit_limit(&mut tx).await?;
            if !room {
                break;
            }
            for event in chunk {
                event.insert(&mut tx).await?;
            }
            written += chunk.len();
        }
        let held_back = self.refusals.len() + self.audit.len() - written;
        tx.commit().await?;
        Ok(held_back)
    }

    /// Whether the database's used pages are below the audit share of the size cap (always,
    /// without a cap).
    async fn below_audit_limit(&self, tx: &mut Tx) -> Result<bool, sqlx::Error> {
        let (Some(limit), Backend::Sqlite(tx)) = (self.audit_page_limit, tx) else {
            return Ok(true);
        };
        let used: i64 = sqlx::query_scalar(
            "SELECT page_count - freelist_count FROM pragma_page_count(), pragma_freelist_count()",
        )
        .fetch_one(&mut **tx)
        .await?;
        Ok(used < limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(detail_bytes: usize) -> AuditEvent {
        let mut event = AuditEvent::new(AuditKind::Alert, "test");
        event.detail = serde_json::json!({ "path": "p".repeat(detail_bytes) });
        event
    }

    #[tokio::test]
    async fn the_audit_queue_is_bounded_in_bytes_and_drops_are_counted() {
        let pool = Backend::Sqlite(sqlx::SqlitePool::connect("sqlite::memory:").await.unwrap());
        let metrics = Arc::new(Metrics::new());
        let (recorder, _writer) = Recorder::start(
            pool,
            RecorderSettings {
                queue: 1000,
                queue_bytes: 10_000,
                batch: 512,
                interval: Duration::from_secs(3600),
                retention: None,
                max_database_bytes: None,
            },
            metrics.clone(),
        );
        recorder.audit(event(1_000));
        assert_eq!(metrics.recorder_dropped.get(), 0);
        recorder.audit(event(20_000));
        assert_eq!(
            metrics.recorder_dropped.get(),
            1,
            "larger than the whole bound"
        );
    }

    #[test]
    fn a_chain_is_written_once_per_usage_row_and_certificate() {
        let seen = |fingerprint: &[u8]| UsageTotals {
            count: 1,
            certificate: Some(CertificateSeen {
                fingerprint: Fingerprint::of_der(fingerprint),
                not_after: 0,
                issuer_spki: SpkiHash::of_der(b"ca"),
                chain: Arc::from(vec![fingerprint.to_vec()]),
            }),
            ..UsageTotals::default()
        };
        let mut batch = Batch::default();
        let key = |hour| ("w".to_owned(), AuthMethod::Certificate, hour);
        batch.usage.insert(key(3600), seen(b"a"));
        assert!(batch.chain_to_write("w", 3600, &seen(b"a")).is_some());
        batch.note_chains_written();
        assert_eq!(
            batch.chain_to_write("w", 3600, &seen(b"a")),
            None,
            "written"
        );
        // Another certificate, or the same one in the next hour's row: written again.
        assert_eq!(
            batch.chain_to_write("w", 3600, &seen(b"b")),
            Some(chain_text(&[b"b".to_vec()]))
        );
        assert!(batch.chain_to_write("w", 7200, &seen(b"a")).is_some());
        assert!(batch.chain_to_write("x", 3600, &seen(b"a")).is_some());
        assert_eq!(
            batch.chain_to_write("w", 3600, &UsageTotals::default()),
            None
        );
        // Rows of past hours are forgotten once a newer hour is written.
        batch.usage.clear();
        batch.usage.insert(key(7200), seen(b"a"));
        batch.note_chains_written();
        assert_eq!(batch.chains_written.len(), 1);
        assert!(batch.chain_to_write("w", 3600, &seen(b"a")).is_some());
    }

    #[test]
    fn refusals_add_up_per_reason_source_and_hour_and_new_sources_past_the_hours_bound_share_one() {
        let mut book = RefusalBook::default();
        let seen = |source: &str, at: i64| RefusalSeen {
            reason: "no_credentials",
            source: source.to_owned(),
            at,
            detail: serde_json::json!({ "path": format!("/{at}") }),
        };
        add_refusal(&mut book, seen("10.0.0.0/24", 7_200));
        add_refusal(&mut book, seen("10.0.0.0/24", 7_300));
        let first = &book.totals[&("no_credentials", "10.0.0.0/24".to_owned(), 7_200)];
        assert_eq!(
            (first.count, first.first_seen, first.last_seen),
            (2, 7_200, 7_300)
        );
        assert_eq!(first.last_detail["path"], "/7300");
        for i in 0..MAX_REFUSAL_SOURCES {
            add_refusal(&mut book, seen(&format!("net-{i}"), 7_200));
        }
        // The writer takes the totals; the hour's sources stay, so the bound holds across writes.
        let written = std::mem::take(&mut book.totals);
        assert_eq!(
            written.len(),
            MAX_REFUSAL_SOURCES + 1,
            "the bound, and `other`"
        );
        assert_eq!(
            written[&("no_credentials", "other".to_owned(), 7_200)].count,
            1
        );
        add_refusal(&mut book, seen("net-new", 7_201));
        assert!(
            book.totals
                .contains_key(&("no_credentials", "other".to_owned(), 7_200))
        );
        // A source already counted this hour keeps its own entry.
        add_refusal(&mut book, seen("10.0.0.0/24", 7_202));
        assert!(
            book.totals
                .contains_key(&("no_credentials", "10.0.0.0/24".to_owned(), 7_200))
        );
        // A new hour starts a new bound.
        add_refusal(&mut book, seen("net-next-hour", 10_800));
        assert!(
            book.totals
                .contains_key(&("no_credentials", "net-next-hour".to_owned(), 10_800))
        );
    }
}
