//! The recorder's writer task: on each tick it takes what the request path added up, and the
//! audit events queued, and writes them as one batch (`batch.rs`); it prunes old rows hourly
//! (`prune.rs`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::batch::Batch;
use super::prune::prune;
use super::{
    AUDIT_SHARE_OF_CAP, Record, RecorderSettings, RefusalBook, RefusedByClient, UsageTotalsByKey,
};
use crate::storage::Db;
use crate::telemetry::Metrics;

/// What the request path adds up in memory and the writer takes.
pub(super) struct Totals {
    pub(super) usage: Arc<Mutex<UsageTotalsByKey>>,
    pub(super) refusals: Arc<Mutex<RefusalBook>>,
    pub(super) refused_certificates: Arc<Mutex<RefusedByClient>>,
    pub(super) queued_bytes: Arc<AtomicUsize>,
}

pub(super) async fn write_loop(
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
        drop(book);
        let mut refused = totals
            .refused_certificates
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        std::mem::swap(&mut batch.refused_certificates, &mut refused);
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
            _ = prune_tick.tick() => {
                prune(&pool, settings.retention, settings.live_window).await;
            }
        }
        if batch.len() >= settings.batch {
            batch.write(&pool, &metrics).await;
        }
    }
}
