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

use super::{Db, Tx, on_backend};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::identity::{AuthMethod, Fingerprint, SpkiHash};
use crate::telemetry::Metrics;
use writer::{Totals, write_loop};

mod batch;
mod chain;
mod evidence;
mod prune;
mod writer;

pub use chain::{chain_from_text, chain_text};
pub use evidence::{
    LIVE_INSTANCES_PER_CLIENT, LIVE_PER_CLIENT, LIVE_PER_INSTANCE, live_rank, ranked_instances,
};
use evidence::{Presented, RefusedByClient, note_presented, note_refused};

/// One authenticated request, for the migration report.
#[derive(Debug, Clone)]
pub struct UsageEvent {
    pub client: String,
    pub method: AuthMethod,
    pub at: i64,
    pub certificate: Option<CertificateSeen>,
    /// The SHA-256 (hex) of the key it was authenticated with: each key counts its own use.
    pub key_sha256: Option<String>,
    /// The caller's network (`identity::source_network`): a guard retiring the method counts it.
    pub network: String,
}

/// The certificate a request was authenticated with, as the migration report shows it.
#[derive(Debug, Clone)]
pub struct CertificateSeen {
    pub fingerprint: Fingerprint,
    /// Unix seconds: when the identity stops being accepted (the earliest notAfter of its path).
    pub not_after: i64,
    /// The key of the CA that signed it.
    pub issuer_spki: SpkiHash,
    /// The chain presented (leaf first, DER), stored as one of the client's live certificates.
    pub chain: Arc<[Vec<u8>]>,
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
    /// Certificates refused for their client's mode, a disabled client, or as ambiguous: kept
    /// as evidence for the tryout (`evidence`), though no usage.
    refused_certificates: Arc<Mutex<RefusedByClient>>,
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
    /// Presented certificates not seen for this long and expired (or of unknown expiry) are
    /// deleted (checked hourly, and at start): `migration.evidence_window_secs`.
    pub live_window: Duration,
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
        let refused_certificates = Arc::new(Mutex::new(RefusedByClient::new()));
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let max_queued_bytes = settings.queue_bytes;
        let handle = tokio::spawn(write_loop(
            pool,
            receiver,
            Totals {
                usage: usage.clone(),
                refusals: refusals.clone(),
                refused_certificates: refused_certificates.clone(),
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
                refused_certificates,
                metrics,
            },
            handle,
        )
    }

    /// Keeps a certificate that was refused but that `client`'s bindings name (its mode, a
    /// disabled client, or one of two clients it matches) as that client's evidence.
    pub fn refused_certificate(
        &self,
        client: &str,
        seen: &CertificateSeen,
        network: &str,
        at: i64,
    ) {
        let mut refused = self
            .refused_certificates
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        note_refused(&mut refused, client, seen, network, at);
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
    if let Some(seen) = event.certificate {
        note_presented(&mut totals.presented, &seen, &event.network, event.at);
        totals.certificate = Some(seen);
    }
    if let Some(key) = event.key_sha256 {
        let (count, last) = totals.keys.entry(key).or_insert((0, event.at));
        *count += 1;
        *last = (*last).max(event.at);
    }
    if let Some(last) = totals.networks.get_mut(&event.network) {
        *last = (*last).max(event.at);
    } else if totals.networks.len() < MAX_NETWORKS {
        totals.networks.insert(event.network, event.at);
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
    /// Every distinct certificate of these requests, not only the last (a client's instances
    /// may present different ones, as during a renewal): each is a live certificate.
    presented: Vec<Presented>,
    /// By key (SHA-256 hex): requests and the last one.
    keys: BTreeMap<String, (i64, i64)>,
    /// The networks these requests came from, and when each last did (at most
    /// [`MAX_NETWORKS`] between two writes; the rest are noted by their next request after it).
    networks: BTreeMap<String, i64>,
}

/// Distinct networks one usage row keeps between two writes (half a second apart).
const MAX_NETWORKS: usize = 16;

/// Networks kept per client and method in `credential_networks` (the latest), pruned hourly.
pub const NETWORKS_PER_CLIENT: usize = 64;

#[cfg(test)]
mod tests {
    use super::evidence::MAX_PRESENTED;
    use super::*;
    use crate::storage::Backend;

    #[test]
    fn every_distinct_certificate_a_client_presents_is_kept_not_only_the_last_up_to_the_bound() {
        let presented = |certificate: &[u8], at| UsageEvent {
            client: "w".into(),
            method: AuthMethod::Certificate,
            at,
            certificate: Some(CertificateSeen {
                fingerprint: Fingerprint::of_der(certificate),
                not_after: 0,
                issuer_spki: SpkiHash::of_der(b"ca"),
                chain: Arc::from(vec![certificate.to_vec()]),
            }),
            key_sha256: None,
            network: "10.0.0.0/24".into(),
        };
        let mut usage = UsageTotalsByKey::new();
        // Two instances of one client, one still on the certificate before a renewal.
        add_usage(&mut usage, presented(b"old", 7200));
        add_usage(&mut usage, presented(b"new", 7201));
        add_usage(&mut usage, presented(b"old", 7202));
        add_usage(&mut usage, presented(b"new", 7203));
        let row = ("w".to_owned(), AuthMethod::Certificate, 7200);
        let totals = &usage[&row];
        assert_eq!(
            totals.certificate.as_ref().map(|c| c.fingerprint),
            Some(Fingerprint::of_der(b"new")),
            "the usage row shows the last"
        );
        let seen: Vec<_> = totals
            .presented
            .iter()
            .map(|p| (p.fingerprint, p.last_seen, p.chain.to_vec()))
            .collect();
        assert_eq!(
            seen,
            [
                (Fingerprint::of_der(b"old"), 7202, vec![b"old".to_vec()]),
                (Fingerprint::of_der(b"new"), 7203, vec![b"new".to_vec()]),
            ]
        );
        for n in 0..2 * MAX_PRESENTED {
            add_usage(&mut usage, presented(format!("c{n}").as_bytes(), 7204));
        }
        assert_eq!(usage[&row].presented.len(), MAX_PRESENTED);
    }

    #[test]
    fn each_network_a_client_used_a_method_from_is_kept_with_its_last_use_up_to_the_bound() {
        let used = |network: String, at| UsageEvent {
            client: "w".into(),
            method: AuthMethod::ApiKey,
            at,
            certificate: None,
            key_sha256: None,
            network,
        };
        let mut usage = UsageTotalsByKey::new();
        add_usage(&mut usage, used("10.0.0.0/24".into(), 7200));
        add_usage(&mut usage, used("10.0.1.0/24".into(), 7201));
        add_usage(&mut usage, used("10.0.0.0/24".into(), 7203));
        add_usage(&mut usage, used("10.0.0.0/24".into(), 7202));
        let row = ("w".to_owned(), AuthMethod::ApiKey, 7200);
        let networks: Vec<_> = usage[&row]
            .networks
            .iter()
            .map(|(n, at)| (n.as_str(), *at))
            .collect();
        assert_eq!(networks, [("10.0.0.0/24", 7203), ("10.0.1.0/24", 7201)]);
        for n in 0..2 * MAX_NETWORKS {
            add_usage(&mut usage, used(format!("192.0.{n}.0/24"), 7204));
        }
        assert_eq!(usage[&row].networks.len(), MAX_NETWORKS);
    }

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
                live_window: Duration::from_secs(86_400),
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
