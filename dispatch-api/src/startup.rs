//! Builds the application: storage, registry, TLS, and the two listeners. Tests call
//! [`Application::build`] too, on port 0, so they run exactly what `main` runs.

use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::web;

use crate::configuration::{ConfigError, Settings};
use crate::listener::ListenerSettings;
use crate::plans::{PlanLimits, PlanStore};
use crate::registry::{BootstrapError, BootstrapFile, Registry};
use crate::state::AppState;
use crate::storage::OpenError;
use crate::storage::recorder::{Recorder, RecorderSettings};
use crate::telemetry::Metrics;
use crate::tls::MaterialError;
use crate::{storage, tls};

mod listeners;

use listeners::{bind, serve_https, serve_ops};

/// Why the service could not start. Each variant names the file or setting at fault; `main`
/// prints the whole chain of causes.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Settings(#[from] ConfigError),
    #[error(transparent)]
    Tls(#[from] MaterialError),
    #[error(transparent)]
    Database(#[from] OpenError),
    #[error("bootstrap clients file")]
    Bootstrap(#[from] BootstrapError),
    /// Registered bindings whose issuer the client CA bundle (`tls.client_ca_file`) leaves
    /// ambiguous: they could never match, so the service does not start with them.
    #[error("certificate bindings against `{}`: {}", ca_file.display(), problems.join("; "))]
    AmbiguousIssuers {
        ca_file: std::path::PathBuf,
        problems: Vec<String>,
    },
    #[error("cannot listen on {address}")]
    Bind {
        address: String,
        #[source]
        source: std::io::Error,
    },
}

pub struct Application {
    https_port: u16,
    ops_port: u16,
    https: Server,
    ops: Server,
    state: web::Data<AppState>,
    recorder_task: tokio::task::JoinHandle<()>,
    tls_watch: tokio::task::JoinHandle<()>,
    /// Other replicas' registry changes (PostgreSQL); ends at once on SQLite.
    registry_follower: tokio::task::JoinHandle<()>,
    guard_watch: tokio::task::JoinHandle<()>,
    /// The SQLite file is this process's while it runs: the lock, kept on the file at its path
    /// (taken again after a remount); released when the app is dropped.
    writer_lock: Option<WriterLock>,
}

/// Plans waiting for the writer, at most: a plan is acknowledged only once stored, so past this
/// a caller waits for room and none is dropped. The writer commits what is queued together, so
/// a few thousand absorb a burst while a commit is on disk.
const PLAN_QUEUE: usize = 4096;

/// Records the recorder holds before it writes them without waiting for its interval: a burst
/// of refusals is written in transactions of about this size, not held until the next tick.
const RECORDER_BATCH: usize = 512;

/// How often the recorder writes what it holds: usage is summed per client in between, so a
/// busy client costs one row update per interval. Readers that need the latest (the migration
/// report, a change's tryout) flush first.
const RECORDER_INTERVAL: Duration = Duration::from_millis(500);

/// How often the SQLite file's lock is checked to be still this process's, at its path (a file
/// replaced or remounted under a running process).
const WRITER_LOCK_CHECK: Duration = Duration::from_secs(1);

/// The SQLite file's lock and the task that keeps it.
type WriterLock = (
    Arc<storage::writer_lock::WriterLock>,
    tokio::task::JoinHandle<()>,
);

impl Application {
    /// Builds the service in the order its failures are most likely: TLS material, then the
    /// database and the registry, then the listeners. The longer steps are functions below.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let settings = Arc::new(settings);
        let metrics = Arc::new(Metrics::new());
        // TLS material first: a bad certificate file is the most likely start-up error.
        let reloadable_tls = tls::ReloadableTls::load(&settings.tls, metrics.clone())?;
        let tls_config = reloadable_tls.server_config()?;

        let location = storage::Location::of(&settings.database)?;
        let writer_lock = claim_database(&location)?;
        let pool = storage::connect(&settings.database, &location).await?;
        let registry = open_registry(&settings, &pool, location, &reloadable_tls).await?;
        let (recorder, recorder_task) = start_recorder(&settings, &pool, metrics.clone());
        let state = web::Data::new(AppState {
            plans: PlanStore::start(&settings.database, pool.clone(), PLAN_QUEUE)?,
            registry: Arc::new(registry),
            recorder,
            metrics,
            pool,
            plan_limits: PlanLimits {
                max_stops: settings.limits.max_stops,
            },
            tls: reloadable_tls.clone(),
            database_lock_lost: writer_lock
                .as_ref()
                .map(|(lock, _)| lock.lost())
                .unwrap_or_default(),
            precedence: crate::precedence::Precedence::new(settings.limits.unproven.clone()),
            flip_tally: Arc::default(),
            readiness: Default::default(),
            migration: settings.migration.clone(),
            limits: settings.limits.clone(),
            client_auth: settings.tls.client_auth,
            max_connection_age_secs: settings.tls.max_connection_age_secs,
            max_staleness_secs: settings.registry.max_staleness_secs,
        });

        let https_socket = bind(format!("{}:{}", settings.server.host, settings.server.port))?;
        let https_port = https_socket.port;
        let https = serve_https(
            https_socket,
            tls_config,
            &reloadable_tls,
            &state,
            ListenerSettings::of(&settings),
        )?;
        let ops_socket = bind(format!(
            "{}:{}",
            settings.server.ops_host, settings.server.ops_port
        ))?;
        let ops_port = ops_socket.port;
        let ops = serve_ops(ops_socket, &state, settings.server.shutdown_grace_secs)?;
        tracing::info!(
            https_port,
            ops_port,
            client_auth = ?settings.tls.client_auth,
            server_certificate_not_after = %reloadable_tls.material().server_not_after,
            "dispatch-api listening"
        );

        let tls_watch = tokio::spawn(tls::watch(reloadable_tls, state.registry.clone()));
        let registry_follower =
            tokio::spawn(crate::registry::follow_changes(state.registry.clone()));
        let guard_watch = tokio::spawn(crate::registry::watch_guards(
            state.registry.clone(),
            state.flip_tally.clone(),
            state.metrics.clone(),
            state.recorder.clone(),
        ));
        Ok(Self {
            https_port,
            ops_port,
            https,
            ops,
            state,
            recorder_task,
            tls_watch,
            registry_follower,
            guard_watch,
            writer_lock,
        })
    }

    pub fn https_port(&self) -> u16 {
        self.https_port
    }

    pub fn ops_port(&self) -> u16 {
        self.ops_port
    }

    /// Handles of both listeners (HTTPS, operations), to stop them from outside.
    pub fn handles(&self) -> [ServerHandle; 2] {
        [self.https.handle(), self.ops.handle()]
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Serves until both listeners stop (SIGTERM/SIGINT, or a handle), then writes the buffered
    /// usage and audit records.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let https_handle = self.https.handle();
        let ops_handle = self.ops.handle();
        let mut https = Some(tokio::spawn(self.https));
        let mut ops = Some(tokio::spawn(self.ops));
        // Signals are ours, not actix's: with two servers, actix would stop the whole runtime
        // as soon as the first (idle) one had stopped, cutting off requests still in flight on
        // the other. On SIGTERM/SIGINT (or when either listener stops) the HTTPS listener stops
        // gracefully first, letting in-flight requests finish within the grace period, then
        // the operations listener; both are awaited to the end.
        tokio::select! {
            _ = shutdown_signal() => tracing::info!("shutting down gracefully"),
            _ = async { https.as_mut().expect("spawned").await } => https = None,
            _ = async { ops.as_mut().expect("spawned").await } => ops = None,
        }
        https_handle.stop(true).await;
        if let Some(task) = https {
            let _ = task.await;
        }
        ops_handle.stop(true).await;
        if let Some(task) = ops {
            let _ = task.await;
        }
        // No request is in flight any more: write what is buffered, then stop the writer (other
        // holders of the state, such as tests, may keep the queue itself open).
        self.state.recorder.flush().await;
        self.recorder_task.abort();
        self.tls_watch.abort();
        self.registry_follower.abort();
        self.guard_watch.abort();
        if let Some((_, follow)) = &self.writer_lock {
            follow.abort();
        }
        tracing::info!("dispatch-api stopped");
        Ok(())
    }
}

/// The SQLite file becomes this process's while it runs (a second process on it would never
/// hear of this one's changes): the lock, and the task that keeps it on the file at its path.
/// PostgreSQL has no such lock: replicas share it.
fn claim_database(location: &storage::Location) -> Result<Option<WriterLock>, StartupError> {
    Ok(match location {
        storage::Location::Sqlite(path) => {
            let lock = Arc::new(storage::writer_lock::claim(path)?);
            let follow = tokio::spawn(storage::writer_lock::WriterLock::follow(
                Arc::downgrade(&lock),
                WRITER_LOCK_CHECK,
            ));
            Some((lock, follow))
        }
        storage::Location::Postgres(_) => None,
    })
}

/// The registry as stored, the clients file applied (only clients that are absent), and no
/// binding whose issuer the CA bundle leaves ambiguous: such a binding could never match.
async fn open_registry(
    settings: &Settings,
    pool: &storage::Db,
    location: storage::Location,
    tls: &tls::ReloadableTls,
) -> Result<Registry, StartupError> {
    let registry = Registry::load(pool.clone())
        .await
        .map_err(|source| OpenError::Registry { location, source })?;
    // An Arc of the material, not arc-swap's guard: it is held across the bootstrap's awaits.
    let material = arc_swap::Guard::into_inner(tls.material());
    let issuers = material.trust.issuers();
    if let Some(path) = &settings.bootstrap.clients_file {
        BootstrapFile::read(path)?
            .apply(
                path,
                settings.bootstrap.secrets_dir.as_deref(),
                &registry,
                issuers,
            )
            .await?;
    }
    let problems = registry.snapshot().ambiguous_issuers(issuers);
    if !problems.is_empty() {
        return Err(StartupError::AmbiguousIssuers {
            ca_file: settings.tls.client_ca_file.clone(),
            problems,
        });
    }
    Ok(registry)
}

/// The usage and audit recorder and its writer task.
fn start_recorder(
    settings: &Settings,
    pool: &storage::Db,
    metrics: Arc<Metrics>,
) -> (Recorder, tokio::task::JoinHandle<()>) {
    Recorder::start(
        pool.clone(),
        RecorderSettings {
            queue: settings.limits.record_queue,
            queue_bytes: settings.limits.record_queue_bytes,
            batch: RECORDER_BATCH,
            interval: RECORDER_INTERVAL,
            retention: (settings.audit.retention_days > 0)
                .then(|| Duration::from_secs(settings.audit.retention_days * 86_400)),
            live_window: Duration::from_secs(settings.migration.evidence_window_secs),
            max_database_bytes: settings.database.max_size_bytes,
        },
        metrics,
    )
}

/// SIGTERM or SIGINT.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
