//! The end-to-end harness: a generated PKI written to a temp dir (so the real file-loading path
//! runs), dispatch-api built with `Application::build` on port 0 with SQLite in a temp file, and
//! a small HTTP/1.1 client over rustls that controls exactly which connection each request uses.
//! No test disables certificate verification: clients trust the generated CA.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use devpki::{CertificateAuthority, LeafSpec, Usage};
use dispatch_api::configuration::{
    BootstrapSettings, ClientAuth, DatabaseSettings, LimitSettings, MigrationSettings,
    ServerSettings, Settings, TelemetrySettings, TlsSettings,
};
use dispatch_api::startup::Application;
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

pub use devpki;

pub mod process;

/// A client certificate and key, in memory and on disk.
#[derive(Clone)]
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: Arc<PrivateKeyDer<'static>>,
    pub fingerprint: String,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// Three CAs: the dev CA and a second one are in the server's client CA bundle; the third is
/// trusted by nobody.
pub struct TestPki {
    pub dir: PathBuf,
    pub ca: CertificateAuthority,
    pub second_ca: CertificateAuthority,
    pub untrusted_ca: CertificateAuthority,
    pub ca_file: PathBuf,
    pub client_ca_bundle: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    counter: std::sync::atomic::AtomicUsize,
}

impl TestPki {
    pub fn new(dir: &Path) -> Self {
        let ca = CertificateAuthority::dev(Duration::days(2)).expect("dev CA");
        let second_ca = CertificateAuthority::new("Partner CA", "Partner", Duration::days(2))
            .expect("second CA");
        let untrusted_ca =
            CertificateAuthority::new("Dispatch Dev Internal CA", "Impostor", Duration::days(2))
                .expect("untrusted CA");
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, &ca.cert_pem).unwrap();
        let client_ca_bundle = dir.join("client-ca-bundle.pem");
        std::fs::write(
            &client_ca_bundle,
            format!("{}{}", ca.cert_pem, second_ca.cert_pem),
        )
        .unwrap();
        let server = ca.issue(&LeafSpec::server(Duration::days(1))).unwrap();
        let server_cert = dir.join("server.pem");
        let server_key = dir.join("server.key");
        std::fs::write(&server_cert, &server.cert_pem).unwrap();
        std::fs::write(&server_key, &server.key_pem).unwrap();
        Self {
            dir: dir.to_owned(),
            ca,
            second_ca,
            untrusted_ca,
            ca_file,
            client_ca_bundle,
            server_cert,
            server_key,
            counter: Default::default(),
        }
    }

    /// Issues a certificate from `ca` and writes it to the PKI directory.
    pub fn issue(&self, ca: &CertificateAuthority, spec: &LeafSpec) -> Identity {
        let issued = ca.issue(spec).expect("issue certificate");
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let cert_file = self.dir.join(format!("{}-{n}.pem", spec.common_name));
        let key_file = self.dir.join(format!("{}-{n}.key", spec.common_name));
        devpki::write_file(&cert_file, &issued.cert_pem, false, true).unwrap();
        devpki::write_file(&key_file, &issued.key_pem, true, true).unwrap();
        Identity {
            chain: vec![CertificateDer::from(issued.der.clone())],
            key: Arc::new(PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap()),
            fingerprint: devpki::sha256_hex(&issued.der),
            cert_file,
            key_file,
        }
    }

    /// A workload certificate (CN and SPIFFE ID) from the dev CA.
    pub fn workload(&self, name: &str) -> Identity {
        self.issue(&self.ca, &LeafSpec::workload(name, Duration::hours(1)))
    }

    pub fn operator(&self) -> Identity {
        self.issue(
            &self.ca,
            &LeafSpec::new("operator", Usage::Client, Duration::hours(1)),
        )
    }
}

/// The clients every test app starts with (bootstrap file), and their API keys.
pub const CLIENTS: &str = r#"
[[clients]]
name = "route-worker"
mode = "dual"
scopes = ["plans:submit"]
api_key_sha256 = "{route-worker}"
[[clients.bindings]]
issuer = "CN=Dispatch Dev Internal CA, O=Dispatch Dev"
spiffe_id = "spiffe://dispatch.internal/route-worker"

[[clients]]
name = "key-only"
mode = "api_key"
scopes = ["plans:submit"]
api_key_sha256 = "{key-only}"
[[clients.bindings]]
issuer = "CN=Dispatch Dev Internal CA, O=Dispatch Dev"
subject_cn = "key-only"

[[clients]]
name = "retired"
mode = "mtls"
scopes = ["plans:submit"]
api_key_sha256 = "{retired}"
[[clients.bindings]]
issuer = "CN=Dispatch Dev Internal CA, O=Dispatch Dev"
subject_cn = "retired"

[[clients]]
name = "no-scope"
mode = "dual"
scopes = []
api_key_sha256 = "{no-scope}"
[[clients.bindings]]
issuer = "CN=Dispatch Dev Internal CA, O=Dispatch Dev"
subject_cn = "no-scope"

[[clients]]
name = "operator"
mode = "mtls"
scopes = ["admin"]
[[clients.bindings]]
issuer = "CN=Dispatch Dev Internal CA, O=Dispatch Dev"
subject_cn = "operator"
"#;

pub const KEYED_CLIENTS: [&str; 4] = ["route-worker", "key-only", "retired", "no-scope"];

/// A running dispatch-api.
pub struct TestApp {
    pub https_port: u16,
    pub ops_port: u16,
    pub settings: Settings,
    pub pki: Arc<TestPki>,
    pub keys: HashMap<&'static str, String>,
    pub operator: Identity,
    pub state: actix_web::web::Data<dispatch_api::startup::AppState>,
    handles: Vec<actix_web::dev::ServerHandle>,
    task: Option<tokio::task::JoinHandle<io::Result<()>>>,
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
        },
        database: DatabaseSettings {
            path: dir.join("dispatch.db"),
            busy_timeout_ms: 5000,
            max_connections: 4,
            max_size_bytes: None,
            synchronous: Default::default(),
        },
        bootstrap: BootstrapSettings {
            clients_file: Some(dir.join("clients.toml")),
            secrets_dir: None,
        },
        migration: MigrationSettings::default(),
        limits: LimitSettings {
            max_body_bytes: 64 * 1024,
            max_header_bytes: 16 * 1024,
            max_stops: 50,
            record_queue: 10_000,
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
        let settings = test_settings(dir.path(), &pki);
        Self {
            settings,
            pki,
            keys,
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

    /// Writes a client's API key to a file (as a mounted secret) and returns its path.
    pub fn key_file(&self, client: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{client}.api-key"));
        devpki::write_file(&path, &self.keys[client], true, true).unwrap();
        path
    }

    pub async fn start(self) -> TestApp {
        let operator = self.pki.operator();
        start(self.settings, self.pki, self.keys, operator, self.dir).await
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
        handles,
        task: Some(task),
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

    /// The reason codes of refusals in the audit log, newest first.
    pub async fn refusal_reasons(&self) -> Vec<String> {
        self.audit(None)
            .await
            .iter()
            .filter(|e| e["kind"] == "auth_refused")
            .filter_map(|e| e["reason"].as_str().map(str::to_owned))
            .collect()
    }

    /// Asserts that the newest refusal in the audit log has this reason.
    pub async fn assert_last_refusal(&self, reason: &str) {
        let reasons = self.refusal_reasons().await;
        assert_eq!(
            reasons.first().map(String::as_str),
            Some(reason),
            "refusals: {reasons:?}"
        );
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
        sqlx_count(&self.state.pool, "SELECT COUNT(*) FROM plans").await
    }
}

async fn sqlx_count(pool: &dispatch_api::storage::Pool, query: &'static str) -> i64 {
    dispatch_api::storage::scalar(pool, query)
        .await
        .expect("count query")
}

/// An HTTP/1.1 request.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: &'static str,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn new(method: &'static str, path: &str) -> Self {
        Self {
            method,
            path: path.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
    pub fn get(path: &str) -> Self {
        Self::new("GET", path)
    }
    pub fn post(path: &str) -> Self {
        Self::new("POST", path)
    }
    pub fn put(path: &str) -> Self {
        Self::new("PUT", path)
    }
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
    pub fn api_key(self, key: &str) -> Self {
        self.header("X-Api-Key", key)
    }
    pub fn json(self, value: &Value) -> Self {
        self.raw_body("application/json", value.to_string().into_bytes())
    }
    pub fn raw_body(mut self, content_type: &str, body: Vec<u8>) -> Self {
        self.headers
            .push(("Content-Type".into(), content_type.to_owned()));
        self.body = body;
        self
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// Asserts an RFC 9457 problem with this status and type suffix.
    pub fn assert_problem(&self, status: u16, kind: &str) {
        assert_eq!(self.status, status, "body: {}", self.text());
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "body: {}",
            self.text()
        );
        let body = self.json();
        assert_eq!(
            body["type"],
            format!("urn:dispatch-api:problem:{kind}"),
            "body: {body}"
        );
        assert_eq!(body["status"], status);
    }
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// One connection; requests on it reuse it (keep-alive).
pub struct Connection {
    stream: Box<dyn Stream>,
    buffer: Vec<u8>,
    /// SHA-256 of the certificate the server presented (TLS connections).
    pub server_fingerprint: Option<String>,
    /// Whether the TLS session was resumed rather than fully negotiated.
    pub resumed: bool,
}

pub fn client_config(ca_file: &Path, identity: Option<&Identity>) -> ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
    match identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    }
}

/// A plain-HTTP GET on an operations listener.
pub async fn ops_get(port: u16, path: &str) -> Response {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("ops listener");
    let mut connection = Connection {
        stream: Box::new(stream),
        buffer: Vec::new(),
        server_fingerprint: None,
        resumed: false,
    };
    connection
        .send(Request::get(path))
        .await
        .expect("ops request")
}

pub async fn connect(
    port: u16,
    ca_file: &Path,
    identity: Option<&Identity>,
    server_name: &str,
) -> io::Result<Connection> {
    connect_with(
        port,
        Arc::new(client_config(ca_file, identity)),
        server_name,
    )
    .await
}

/// Connects with a given client configuration (sharing one lets sessions resume).
pub async fn connect_with(
    port: u16,
    config: Arc<ClientConfig>,
    server_name: &str,
) -> io::Result<Connection> {
    let connector = TlsConnector::from(config);
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let name = ServerName::try_from(server_name.to_owned()).map_err(io::Error::other)?;
    let tls: TlsStream<TcpStream> = connector.connect(name, tcp).await?;
    let session = tls.get_ref().1;
    let server_fingerprint = session
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| devpki::sha256_hex(c));
    let resumed = session.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    Ok(Connection {
        stream: Box::new(tls),
        buffer: Vec::new(),
        server_fingerprint,
        resumed,
    })
}

/// Replaces a file the way secret mounts do: write beside it, then rename over it.
pub fn replace_file(path: &Path, contents: &[u8]) {
    let temporary = path.with_extension("tmp-replace");
    std::fs::write(&temporary, contents).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

impl Connection {
    pub async fn send(&mut self, request: Request) -> io::Result<Response> {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n",
            request.method,
            request.path,
            request.body.len()
        );
        for (name, value) in &request.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&request.body);
        self.stream.write_all(&bytes).await?;
        self.stream.flush().await?;
        self.read_response().await
    }

    async fn read_response(&mut self) -> io::Result<Response> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut parsed = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head_len) =
                parsed.parse(&self.buffer).map_err(io::Error::other)?
            {
                let status = parsed.code.unwrap_or(0);
                let headers: Vec<(String, String)> = parsed
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_owned(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                let length: usize = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                while self.buffer.len() < head_len + length {
                    self.fill().await?;
                }
                let body = self.buffer[head_len..head_len + length].to_vec();
                self.buffer.drain(..head_len + length);
                return Ok(Response {
                    status,
                    headers,
                    body,
                });
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed by the server",
            ));
        }
        self.buffer.extend_from_slice(&chunk[..n]);
        Ok(())
    }
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

/// An identity from PEM files on disk (as a person would have them).
pub fn identity_from_files(cert_file: &Path, key_file: &Path) -> Identity {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key_file).unwrap();
    Identity {
        fingerprint: devpki::sha256_hex(&chain[0]),
        chain,
        key: Arc::new(key),
        cert_file: cert_file.to_owned(),
        key_file: key_file.to_owned(),
    }
}

/// A free port on 127.0.0.1 (bound, read, released) for a server that starts later.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An identity from PEM text.
pub fn identity_from_pem(cert_pem: &str, key_pem: &str) -> Identity {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    Identity {
        fingerprint: devpki::sha256_hex(&chain[0]),
        key: Arc::new(PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap()),
        chain,
        cert_file: PathBuf::new(),
        key_file: PathBuf::new(),
    }
}

/// Packs a certificate and key into a PKCS#12 file with OpenSSL (as many teams hold them).
pub fn write_pkcs12(cert_file: &Path, key_file: &Path, out: &Path, password: &str) {
    let status = std::process::Command::new("openssl")
        .args(["pkcs12", "-export", "-in"])
        .arg(cert_file)
        .arg("-inkey")
        .arg(key_file)
        .arg("-out")
        .arg(out)
        .args(["-passout", &format!("pass:{password}")])
        .status()
        .expect("openssl is installed");
    assert!(status.success(), "openssl pkcs12 -export");
}
