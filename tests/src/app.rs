//! dispatch-api in process: built with `Application::build` on port 0 with SQLite in a temp
//! file and the generated PKI, plus the requests and admin reads tests make of it.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dispatch_api::configuration::{
    BootstrapSettings, ClientAuth, DatabaseSettings, LimitSettings, MigrationSettings,
    ServerSettings, Settings, TelemetrySettings, TlsSettings, UnprovenSettings,
};
use dispatch_api::startup::Application;
use dispatch_api::storage::Backend;
use serde_json::Value;

use crate::http::{Connection, Request, Response, connect, ops_get};
use crate::pki::{Identity, TestPki};
use crate::worker::WorkerConfig;

/// The clients every test app starts with (bootstrap file), and their API keys.
pub const CLIENTS: &str = include_str!("clients.toml");

pub const KEYED_CLIENTS: [&str; 4] = ["route-worker", "key-only", "retired", "no-scope"];

/// A running dispatch-api.
pub struct TestApp {
    pub https_port: u16,
    pub ops_port: u16,
    pub settings: Settings,
    pub pki: Arc<TestPki>,
    pub keys: HashMap<&'static str, String>,
    pub operator: Identity,
    pub state: actix_web::web::Data<dispatch_api::state::AppState>,
    /// Refusal counters by reason as `assert_last_refusal` last read them.
    refusals_seen: std::sync::Mutex<HashMap<String, f64>>,
    handles: Vec<actix_web::dev::ServerHandle>,
    task: Option<tokio::task::JoinHandle<io::Result<()>>>,
    /// The PostgreSQL server of this app, when it runs on one of its own.
    _postgres: Option<Arc<crate::postgres::TestPostgres>>,
    _dir: Arc<tempfile::TempDir>,
}

pub fn test_settings(dir: &Path, pki: &TestPki) -> Settings {
    Settings {
        server: ServerSettings {
            host: "127.0.0.1".into(),
            port: 0,
            ops_host: "127.0.0.1".into(),
            ops_port: 0,
            workers: Some(1),
            shutdown_grace_secs: 1,
            max_connections: 1000,
            tls_handshake_timeout_ms: 3000,
            client_request_timeout_ms: 5000,
            keep_alive_secs: 5,
        },
        tls: TlsSettings {
            cert_file: Some(pki.server_cert.clone()),
            key_file: Some(pki.server_key.clone()),
            pkcs12_file: None,
            pkcs12_password_file: None,
            reload_interval_secs: 1,
            expiry_warning_days: 14,
            session_resumption: true,
            client_ca_file: pki.client_ca_bundle.clone(),
            client_auth: ClientAuth::Optional,
            crl_files: vec![],
            max_connection_age_secs: 3600,
            max_client_chain: 4,
        },
        database: DatabaseSettings {
            path: dir.join("dispatch.db"),
            url: None,
            password_file: None,
            busy_timeout_ms: 5000,
            max_connections: 4,
            max_size_bytes: None,
            synchronous: Default::default(),
        },
        bootstrap: BootstrapSettings {
            clients_file: Some(dir.join("clients.toml")),
            secrets_dir: None,
        },
        // No quiet period unless a test is about it: most tests flip a client right after it
        // used its key.
        migration: MigrationSettings {
            quiet_period_secs: 0,
            ..MigrationSettings::default()
        },
        registry: Default::default(),
        audit: Default::default(),
        limits: LimitSettings {
            max_body_bytes: 64 * 1024,
            max_header_bytes: 16 * 1024,
            max_stops: 50,
            record_queue: 10_000,
            // Off unless a test is about them: every anonymous request of the suite comes from
            // 127.0.0.1, one network.
            unproven: UnprovenSettings {
                requests_per_sec: 0,
                network_requests_per_sec: 0,
                max_connections: 0,
                network_max_connections: 0,
                ..UnprovenSettings::default()
            },
            ..LimitSettings::default()
        },
        telemetry: TelemetrySettings::default(),
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts an app after `customize` has adjusted the default test settings.
pub async fn spawn_app_with(customize: impl FnOnce(&mut Settings)) -> TestApp {
    let mut prepared = PreparedApp::new();
    customize(&mut prepared.settings);
    prepared.start().await
}

/// Everything a test app needs, made before it starts: so a test can hand out the PKI and the
/// keys first (a worker that starts before its server, say).
pub struct PreparedApp {
    pub settings: Settings,
    pub pki: Arc<TestPki>,
    pub keys: HashMap<&'static str, String>,
    postgres: Option<Arc<crate::postgres::TestPostgres>>,
    dir: Arc<tempfile::TempDir>,
}

impl PreparedApp {
    pub fn new() -> Self {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        let pki = Arc::new(TestPki::new(dir.path()));
        let mut clients = CLIENTS.to_owned();
        let mut keys = HashMap::new();
        for name in KEYED_CLIENTS {
            let key = devpki::generate_api_key().unwrap();
            clients = clients.replace(&format!("{{{name}}}"), &devpki::api_key_sha256(&key));
            keys.insert(name, key);
        }
        std::fs::write(dir.path().join("clients.toml"), clients).unwrap();
        let mut settings = test_settings(dir.path(), &pki);
        // The whole suite runs on PostgreSQL with E2E_DATABASE=postgres: a server of its own
        // for each app (scripts/test runs the API suite both ways).
        let postgres = (std::env::var("E2E_DATABASE").as_deref() == Ok("postgres")).then(|| {
            let server = crate::postgres::TestPostgres::start();
            settings.database.url = Some(server.url());
            Arc::new(server)
        });
        Self {
            settings,
            pki,
            keys,
            postgres,
            dir,
        }
    }

    /// The bootstrap clients file the app will read (tests may append clients to it).
    pub fn clients_file(&self) -> PathBuf {
        self.dir.path().join("clients.toml")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts with an empty CRL of the dev CA (so that tests can swap in one that revokes);
    /// returns the file.
    pub fn with_empty_crl(&mut self) -> PathBuf {
        let crl_file = self.dir().join("dev-ca.crl.pem");
        let crl = self
            .pki
            .ca
            .revocation_list(&[], time::Duration::days(1))
            .unwrap();
        std::fs::write(&crl_file, crl).unwrap();
        self.settings.tls.crl_files = vec![crl_file.clone()];
        crl_file
    }

    /// Writes a client's API key to a file (as a mounted secret) and returns its path.
    pub fn key_file(&self, client: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{client}.api-key"));
        devpki::write_file(&path, &self.keys[client], true, true).unwrap();
        path
    }

    /// Uses the PostgreSQL `server` instead of a SQLite file.
    pub fn on_postgres(mut self, server: &crate::postgres::TestPostgres) -> Self {
        self.settings.database.url = Some(server.url());
        self
    }

    /// Another replica of this app: the same PKI, keys, files and settings, so the same
    /// database when that is PostgreSQL (its own ports).
    pub fn replica(&self) -> Self {
        Self {
            settings: self.settings.clone(),
            pki: self.pki.clone(),
            keys: self.keys.clone(),
            postgres: self.postgres.clone(),
            dir: self.dir.clone(),
        }
    }

    pub async fn start(self) -> TestApp {
        let operator = self.pki.operator();
        start(
            self.settings,
            self.pki,
            self.keys,
            operator,
            self.postgres,
            self.dir,
        )
        .await
    }
}

impl Default for PreparedApp {
    fn default() -> Self {
        Self::new()
    }
}

async fn start(
    settings: Settings,
    pki: Arc<TestPki>,
    keys: HashMap<&'static str, String>,
    operator: Identity,
    postgres: Option<Arc<crate::postgres::TestPostgres>>,
    dir: Arc<tempfile::TempDir>,
) -> TestApp {
    let app = Application::build(settings.clone())
        .await
        .expect("the app starts");
    let handles = app.handles().to_vec();
    let state = app.state();
    let (https_port, ops_port) = (app.https_port(), app.ops_port());
    let task = tokio::spawn(app.run_until_stopped());
    TestApp {
        https_port,
        ops_port,
        settings,
        pki,
        keys,
        operator,
        state,
        refusals_seen: Default::default(),
        handles,
        task: Some(task),
        _postgres: postgres,
        _dir: dir,
    }
}

impl TestApp {
    /// Stops the app gracefully (flushing its records) and starts it again on the same
    /// database and files.
    pub async fn restart(mut self) -> TestApp {
        self.stop().await;
        let mut settings = self.settings.clone();
        settings.server.port = 0;
        start(
            settings,
            self.pki.clone(),
            self.keys.clone(),
            self.operator.clone(),
            self._postgres.clone(),
            self._dir.clone(),
        )
        .await
    }

    pub async fn stop(&mut self) {
        for handle in &self.handles {
            handle.stop(true).await;
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    pub fn key(&self, client: &str) -> &str {
        &self.keys[client]
    }

    /// Writes a client's API key to a file (as a mounted secret) and returns its path.
    pub fn key_file(&self, client: &str) -> PathBuf {
        let path = self._dir.path().join(format!("{client}.api-key"));
        devpki::write_file(&path, &self.keys[client], true, true).unwrap();
        path
    }

    /// Opens a new TLS connection, presenting `identity` if given. Trusts only the test CA.
    pub async fn connect(&self, identity: Option<&Identity>) -> io::Result<Connection> {
        connect(self.https_port, &self.pki.ca_file, identity, "localhost").await
    }

    /// One request on a fresh connection.
    pub async fn request(
        &self,
        identity: Option<&Identity>,
        request: Request,
    ) -> io::Result<Response> {
        self.connect(identity).await?.send(request).await
    }

    /// One request on a fresh connection from `source` (another loopback address: another
    /// network as the server sees it).
    pub async fn request_from(
        &self,
        source: std::net::IpAddr,
        identity: Option<&Identity>,
        request: Request,
    ) -> io::Result<Response> {
        crate::http::connect_from(source, self.https_port, &self.pki.ca_file, identity)
            .await?
            .send(request)
            .await
    }

    /// A request as the operator (admin API), panicking on transport errors.
    pub async fn admin(&self, request: Request) -> Response {
        self.request(Some(&self.operator), request)
            .await
            .expect("admin request")
    }

    /// The newest audit events (read through the admin API, which flushes the buffer first).
    pub async fn audit(&self, client: Option<&str>) -> Vec<Value> {
        let path = match client {
            Some(c) => format!("/admin/audit?client={c}&limit=1000"),
            None => "/admin/audit?limit=1000".into(),
        };
        let response = self.admin(Request::get(&path)).await;
        assert_eq!(response.status, 200, "audit: {}", response.text());
        response.json()["events"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The reason codes of refusals in the audit log (refusals of known clients), newest first.
    pub async fn refusal_reasons(&self) -> Vec<String> {
        self.audit(None)
            .await
            .iter()
            .filter(|e| e["kind"] == "auth_refused")
            .filter_map(|e| e["reason"].as_str().map(str::to_owned))
            .collect()
    }

    /// The counted refusals (of callers the service cannot name), most recently seen first.
    pub async fn refusal_counts(&self) -> Vec<Value> {
        let response = self.admin(Request::get("/admin/refusals?limit=1000")).await;
        assert_eq!(response.status, 200, "refusals: {}", response.text());
        response.json()["refusals"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Asserts that every refusal since the last call (or since the start) had this reason code:
    /// at least one, and none of another reason. Read from `dispatch_auth_refusals_total`, which
    /// covers counted and individual refusals alike and is updated before the answer is sent.
    pub async fn assert_last_refusal(&self, reason: &str) {
        let text = self.ops_get("/metrics").await.text();
        let now: HashMap<String, f64> = text
            .lines()
            .filter_map(|line| line.strip_prefix("dispatch_auth_refusals_total{reason=\""))
            .filter_map(|rest| {
                let (name, value) = rest.split_once("\"} ")?;
                Some((name.to_owned(), value.trim().parse().ok()?))
            })
            .collect();
        let mut seen = self.refusals_seen.lock().unwrap();
        let increased: Vec<&String> = now
            .iter()
            .filter(|(name, count)| seen.get(*name).copied().unwrap_or(0.0) < **count)
            .map(|(name, _)| name)
            .collect();
        assert!(
            increased.len() == 1 && increased[0] == reason,
            "expected only `{reason}` refusals; refused since the last check: {increased:?}"
        );
        *seen = now;
    }

    /// A plain-HTTP GET on the operations listener.
    pub async fn ops_get(&self, path: &str) -> Response {
        ops_get(self.ops_port, path).await
    }

    /// The value of one metric sample from `/metrics` (0 when absent).
    pub async fn metric(&self, sample: &str) -> f64 {
        let text = self.ops_get("/metrics").await.text();
        text.lines()
            .find_map(|line| {
                line.strip_prefix(sample)
                    .and_then(|rest| rest.trim().parse().ok())
            })
            .unwrap_or(0.0)
    }

    /// Waits (up to 15 s) until a metric sample reaches `at_least`.
    pub async fn wait_for_metric(&self, sample: &str, at_least: f64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let value = self.metric(sample).await;
            if value >= at_least {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{sample} stayed at {value}, expected {at_least}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    pub async fn plan_count(&self) -> i64 {
        const COUNT: &str = "SELECT COUNT(*) FROM plans";
        match &self.state.pool {
            Backend::Sqlite(pool) => sqlx::query_scalar(COUNT).fetch_one(pool).await,
            Backend::Postgres(pool) => sqlx::query_scalar(COUNT).fetch_one(pool).await,
        }
        .expect("count query")
    }

    /// A client's row in the migration report (`/admin/migration`).
    pub async fn migration_row(&self, client: &str) -> Value {
        let report = self.admin(Request::get("/admin/migration")).await.json();
        migration_row(&report, client)
    }

    /// route-worker settings for this app: its URL, the test CA and `input_dir` (no credential).
    /// The fingerprint of the last certificate `client` presented, as the admin API shows it.
    pub async fn last_certificate_fingerprint(&self, client: &str) -> Option<String> {
        let view = self
            .admin(Request::get(&format!("/admin/clients/{client}")))
            .await
            .json();
        view["usage"]["certificate"]["last_certificate_fingerprint"]
            .as_str()
            .map(str::to_owned)
    }

    pub fn worker_config(&self, input_dir: &Path) -> WorkerConfig {
        WorkerConfig::new(
            format!("https://localhost:{}", self.https_port),
            &self.pki.ca_file,
            input_dir,
        )
    }
}

/// A client's row in a migration report (`/admin/migration` JSON); panics when it is missing.
pub fn migration_row(report: &Value, client: &str) -> Value {
    report["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == client)
        .unwrap_or_else(|| panic!("no row for {client} in the migration report: {report}"))
        .clone()
}

/// A valid plan with `stops` stops.
pub fn plan(route_id: &str, stops: usize) -> Value {
    let stops: Vec<Value> = (0..stops)
        .map(|i| {
            serde_json::json!({
                "id": format!("stop-{i}"),
                "latitude": 52.0 + i as f64 * 0.01,
                "longitude": 4.0 + i as f64 * 0.01,
            })
        })
        .collect();
    serde_json::json!({ "route_id": route_id, "team": "north", "planned_date": "2026-11-23", "stops": stops })
}

/// POST a plan.
pub fn submit(plan: &Value) -> Request {
    Request::post("/api/dispatch-plans").json(plan)
}
