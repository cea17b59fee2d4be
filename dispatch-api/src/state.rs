//! [`AppState`]: what every handler and middleware can reach, built once by `startup`.

use std::sync::Arc;

use time::OffsetDateTime;

use crate::configuration::{ClientAuth, LimitSettings, MigrationSettings};
use crate::plans::{PlanLimits, PlanStore};
use crate::registry::Registry;
use crate::storage::Db;
use crate::storage::recorder::Recorder;
use crate::telemetry::Metrics;
use crate::tls::ReloadableTls;

pub struct AppState {
    /// The migration's rules: evidence window, quiet period, default guard, key overlap.
    pub migration: MigrationSettings,
    /// What the middleware holds each request to (headers, bodies, drains).
    pub limits: LimitSettings,
    /// `tls.client_auth`, as the migration report and `whoami` show it.
    pub client_auth: ClientAuth,
    /// `tls.max_connection_age_secs`: a connection older is closed after its current answer.
    pub max_connection_age_secs: u64,
    /// `registry.max_staleness_secs`: a registry not confirmed current for longer judges nobody.
    pub max_staleness_secs: u64,
    pub registry: Arc<Registry>,
    pub plans: PlanStore,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub pool: Db,
    pub plan_limits: PlanLimits,
    pub tls: Arc<ReloadableTls>,
    /// SQLite: whether this process lost its file to another one (`/readyz`).
    pub database_lock_lost: crate::storage::writer_lock::LockLost,
    /// The share of requests that proved nothing.
    pub precedence: Arc<crate::precedence::Precedence>,
    /// Refusals guarded flips may have caused, until the guard task adds them up.
    pub flip_tally: Arc<crate::registry::FlipTally>,
    /// `/readyz`'s database probe, at most one a second.
    pub readiness: crate::storage::WritableProbe,
}

impl AppState {
    /// The start of the migration evidence window, in unix seconds.
    pub fn evidence_since(&self) -> i64 {
        OffsetDateTime::now_utc().unix_timestamp() - self.migration.evidence_window_secs as i64
    }

    /// Since when a client must not have used its API key to be ready for `mtls`.
    pub fn quiet_since(&self) -> i64 {
        OffsetDateTime::now_utc().unix_timestamp() - self.migration.quiet_period_secs as i64
    }
}
