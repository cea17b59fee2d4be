//! What both plan writers share: a plan waiting its turn ([`Job`]), how many one transaction
//! takes, how a group's callers are answered (and the write health that answer keeps), and the
//! answer to a plan whose idempotency key an earlier plan holds.

use std::sync::atomic::{AtomicI64, Ordering};

use tokio::sync::oneshot;
use uuid::Uuid;

use super::{NewPlan, SubmitOutcome};
use crate::storage::StorageError;

/// How many waiting plans one transaction takes at most.
pub(super) const MAX_GROUP: usize = 256;

/// A plan waiting for its writer, and where its outcome goes.
pub(super) struct Job {
    pub(super) plan: NewPlan,
    pub(super) reply: oneshot::Sender<Result<SubmitOutcome, StorageError>>,
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

/// Answers every job of a group with its outcome, or all with the group's error.
pub(super) fn answer<E>(
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

/// The answer to a plan whose idempotency key an earlier plan holds: a replay of that plan when
/// the bodies are the same, a refusal when they differ.
pub(super) fn earlier_outcome(
    id: &str,
    hash: &str,
    plan: &NewPlan,
) -> Result<SubmitOutcome, uuid::Error> {
    Ok(if hash == plan.request_sha256 {
        SubmitOutcome::Replayed(Uuid::parse_str(id)?)
    } else {
        SubmitOutcome::KeyReused
    })
}
