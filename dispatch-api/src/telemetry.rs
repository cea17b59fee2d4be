//! Logs (`tracing`, JSON in containers) and Prometheus metrics: how they are written and
//! exposed. What is recorded about each request is decided in `audit`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tracing_subscriber::EnvFilter;

mod labels;
mod metrics;

pub use metrics::Metrics;

use crate::configuration::{LogFormat, TelemetrySettings};

/// Keep it until the process ends: dropping it writes out the log lines still buffered.
pub type LogGuard = tracing_appender::non_blocking::WorkerGuard;

/// Lines the log writer dropped because its sink was slower than the service (the first
/// subscriber installed in this process).
static DROPPED_LINES: OnceLock<tracing_appender::non_blocking::ErrorCounter> = OnceLock::new();

/// Installs the global subscriber. Safe to call more than once (later calls do nothing), so
/// tests that build several apps in one process can all call it.
///
/// Lines are formatted on the request's thread and written to stderr by a background thread,
/// many at a time, so a request never waits for a write. Lossy: if stderr stalls (a full pipe,
/// a stuck log shipper), up to `telemetry.log_buffer_lines` wait and the rest are dropped and
/// counted (`dispatch_log_lines_dropped_total`), so a slow sink costs log lines, never
/// requests. Who called is in the audit log and the metrics either way.
pub fn init(settings: &TelemetrySettings) -> LogGuard {
    let filter = EnvFilter::try_new(&settings.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(settings.log_buffer_lines.max(1))
        .thread_name("log-writer")
        .finish(std::io::BufWriter::new(std::io::stderr()));
    let _ = DROPPED_LINES.set(writer.error_counter());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = match settings.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    guard
}

/// The most bytes of caller-chosen text (a path, a certificate subject) kept in an audit row or
/// a log line.
pub const MAX_TEXT: usize = 256;

/// `text` cut to at most [`MAX_TEXT`] bytes on a character boundary, marked with `…` when cut.
pub fn clip(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= MAX_TEXT {
        return text.into();
    }
    let mut end = MAX_TEXT - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end]).into()
}

/// A budget of log lines per second, shared by all workers.
pub struct LogBudget {
    per_second: u64,
    second: AtomicI64,
    used: AtomicU64,
    suppressed: AtomicU64,
}

impl LogBudget {
    pub const fn new(per_second: u64) -> Self {
        Self {
            per_second,
            second: AtomicI64::new(i64::MIN),
            used: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Whether a line may be written in `second` (unix seconds); if so, how many were
    /// suppressed since the last line written.
    pub fn take(&self, second: i64) -> Option<u64> {
        if self.second.swap(second, Ordering::Relaxed) != second {
            self.used.store(0, Ordering::Relaxed);
        }
        if self.used.fetch_add(1, Ordering::Relaxed) < self.per_second {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// One [`LogBudget`] per key (a handshake failure's kind, a client's name), so that one noisy
/// source does not silence the others. Keys beyond [`Self::MAX_KEYS`] share one budget: the
/// table is bounded whoever sends what.
pub struct LogBudgets {
    per_second: u64,
    budgets: Mutex<HashMap<String, Arc<LogBudget>>>,
    overflow: LogBudget,
}

impl LogBudgets {
    pub const MAX_KEYS: usize = 1024;

    pub fn new(per_second: u64) -> Self {
        Self {
            per_second,
            budgets: Mutex::new(HashMap::new()),
            overflow: LogBudget::new(per_second),
        }
    }

    /// [`LogBudget::take`] on `key`'s budget.
    pub fn take(&self, key: &str, second: i64) -> Option<u64> {
        let budget = {
            let mut budgets = self.budgets.lock().unwrap_or_else(|e| e.into_inner());
            match budgets.get(key) {
                Some(budget) => Some(budget.clone()),
                None if budgets.len() < Self::MAX_KEYS => {
                    let budget = Arc::new(LogBudget::new(self.per_second));
                    budgets.insert(key.to_owned(), budget.clone());
                    Some(budget)
                }
                None => None,
            }
        };
        match budget {
            Some(budget) => budget.take(second),
            None => self.overflow.take(second),
        }
    }
}

/// Now, in unix seconds: the clock log budgets count in.
pub fn this_second() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// An error and its causes, `outer: cause: cause`, for a log line or a start-up message.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_has_its_own_log_budget_and_keys_past_the_bound_share_one() {
        let budgets = LogBudgets::new(1);
        assert_eq!(budgets.take("expired", 10), Some(0));
        assert_eq!(budgets.take("expired", 10), None);
        // Another kind is not silenced by the first.
        assert_eq!(budgets.take("untrusted_issuer", 10), Some(0));
        assert_eq!(budgets.take("expired", 11), Some(1));
        for n in 2..LogBudgets::MAX_KEYS {
            assert_eq!(budgets.take(&format!("k{n}"), 10), Some(0), "k{n}");
        }
        assert_eq!(budgets.budgets.lock().unwrap().len(), LogBudgets::MAX_KEYS);
        // Past the bound: one shared budget, and the table does not grow.
        assert_eq!(budgets.take("late-1", 10), Some(0));
        assert_eq!(budgets.take("late-2", 10), None);
        assert_eq!(budgets.budgets.lock().unwrap().len(), LogBudgets::MAX_KEYS);
        assert_eq!(budgets.take("expired", 11), None, "its own budget, still");
    }

    #[test]
    fn the_clock_of_log_budgets_is_unix_seconds() {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        assert!((this_second() - now).abs() <= 1);
    }
}
