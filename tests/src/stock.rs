//! Stock clients against a running app: curl (HTTP/2 and HTTP/1.1, as Debian ships it),
//! Python's httpx over python3-h2, and Go's net/http (standard library only, Debian's
//! golang-go). Each runs a batch of requests in one process, so HTTP/2 requests share a
//! connection as they would in a real client, and reports each exchange: the status, the
//! problem `type`, and the client's own error if the answer did not arrive whole.
//!
//! The clients verify the server against the test CA; none is told to skip verification.
//! A missing client is a failure, never a skip: CI installs curl, python3-h2, python3-httpx
//! and golang-go.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::app::TestApp;
use crate::pki::Identity;

/// One request of a batch.
#[derive(Debug, Clone)]
pub struct StockRequest {
    pub method: &'static str,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl StockRequest {
    pub fn new(method: &'static str, path: &str, body: String) -> Self {
        Self {
            method,
            path: path.to_owned(),
            headers: vec![],
            body,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// What a stock client saw of one exchange.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub status: u16,
    /// curl's exit code for the transfer, or Python's exception; `None` when it went well.
    pub error: Option<String>,
    pub http_version: String,
    /// The problem document's `type`, when the answer had one.
    pub problem_type: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    CurlHttp2,
    CurlHttp1,
    PythonHttp2,
    PythonHttp1,
    GoHttp2,
    GoHttp1,
}

pub const EVERY_CLIENT: [Client; 6] = [
    Client::CurlHttp2,
    Client::CurlHttp1,
    Client::PythonHttp2,
    Client::PythonHttp1,
    Client::GoHttp2,
    Client::GoHttp1,
];

impl Client {
    /// The HTTP version each client reports when it spoke what it was asked to.
    pub fn http_version(self) -> &'static str {
        match self {
            Client::CurlHttp2 => "2",
            Client::CurlHttp1 => "1.1",
            Client::PythonHttp2 => "HTTP/2",
            Client::PythonHttp1 => "HTTP/1.1",
            Client::GoHttp2 => "HTTP/2.0",
            Client::GoHttp1 => "HTTP/1.1",
        }
    }
}

/// The Python with Debian's packages (python3-h2, python3-httpx): not a pyenv or venv one.
const SYSTEM_PYTHON: &str = "/usr/bin/python3";

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("clients")
        .join(name)
}

/// Runs `requests` through `client` against `app`, presenting `identity` if given.
pub async fn run(
    app: &TestApp,
    client: Client,
    identity: Option<&Identity>,
    requests: &[StockRequest],
) -> Vec<Seen> {
    let dir = tempfile::tempdir().unwrap();
    let base = format!("https://localhost:{}", app.https_port);
    let seen = match client {
        Client::CurlHttp2 | Client::CurlHttp1 => {
            curl(dir.path(), &base, app, client, identity, requests).await
        }
        Client::PythonHttp2 | Client::PythonHttp1 | Client::GoHttp2 | Client::GoHttp1 => {
            scripted(dir.path(), &base, app, client, identity, requests).await
        }
    };
    assert_eq!(
        seen.len(),
        requests.len(),
        "{client:?} reported every request"
    );
    seen
}

/// A value in a curl config file: quoted, with `\` and `"` escaped.
fn quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

async fn curl(
    dir: &Path,
    base: &str,
    app: &TestApp,
    client: Client,
    identity: Option<&Identity>,
    requests: &[StockRequest],
) -> Vec<Seen> {
    let mut config = String::new();
    for (i, request) in requests.iter().enumerate() {
        if i > 0 {
            config.push_str("next\n");
        }
        config.push_str(&format!(
            "url = {}\n",
            quoted(&format!("{base}{}", request.path))
        ));
        config.push_str(&format!("request = {}\n", quoted(request.method)));
        config.push_str(if client == Client::CurlHttp2 {
            "http2\n"
        } else {
            "http1.1\n"
        });
        config.push_str(&format!(
            "cacert = {}\n",
            quoted(&app.pki.ca_file.display().to_string())
        ));
        if let Some(identity) = identity {
            config.push_str(&format!(
                "cert = {}\nkey = {}\n",
                quoted(&identity.cert_file.display().to_string()),
                quoted(&identity.key_file.display().to_string())
            ));
        }
        for (name, value) in &request.headers {
            config.push_str(&format!(
                "header = {}\n",
                quoted(&format!("{name}: {value}"))
            ));
        }
        if !request.body.is_empty() {
            let file = dir.join(format!("body-{i}"));
            std::fs::write(&file, &request.body).unwrap();
            config.push_str(&format!(
                "data-binary = {}\n",
                quoted(&format!("@{}", file.display()))
            ));
        }
        let output = dir.join(format!("answer-{i}"));
        config.push_str(&format!(
            "silent\nshow-error\noutput = {}\nmax-time = 30\n",
            quoted(&output.display().to_string())
        ));
        config.push_str("write-out = \"%{http_code} %{exitcode} %{http_version}\\n\"\n");
    }
    let config_file = dir.join("curl.config");
    std::fs::write(&config_file, config).unwrap();
    let output = tokio::process::Command::new("curl")
        .arg("--config")
        .arg(&config_file)
        .output()
        .await
        .expect("curl runs (CI installs it)");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .enumerate()
        .map(|(i, line)| {
            let answer = std::fs::read(dir.join(format!("answer-{i}"))).unwrap_or_default();
            let problem_type = serde_json::from_slice::<Value>(&answer)
                .ok()
                .and_then(|v| v["type"].as_str().map(str::to_owned));
            let mut parts = line.split(' ');
            let status = parts.next().unwrap_or("0").parse().unwrap_or(0);
            let exit = parts.next().unwrap_or("?");
            Seen {
                status,
                error: (exit != "0").then(|| {
                    format!(
                        "curl exit code {exit}: {}",
                        String::from_utf8_lossy(&output.stderr).trim()
                    )
                }),
                http_version: parts.next().unwrap_or_default().to_owned(),
                problem_type,
            }
        })
        .collect()
}

/// The Python and the Go client: one program each, reading the batch from a JSON file and
/// printing a JSON line per request (`clients/refusals.py`, `clients/refusals.go`).
async fn scripted(
    dir: &Path,
    base: &str,
    app: &TestApp,
    client: Client,
    identity: Option<&Identity>,
    requests: &[StockRequest],
) -> Vec<Seen> {
    let batch: Vec<Value> = requests
        .iter()
        .map(|r| {
            json!({
                "method": r.method,
                "path": r.path,
                "headers": r.headers.iter()
                    .map(|(name, value)| (name.clone(), Value::String(value.clone())))
                    .collect::<serde_json::Map<_, _>>(),
                "body": r.body,
            })
        })
        .collect();
    let requests_file = dir.join("requests.json");
    std::fs::write(&requests_file, serde_json::to_vec(&batch).unwrap()).unwrap();
    let mut command = match client {
        Client::GoHttp2 | Client::GoHttp1 => tokio::process::Command::new(go_client().await),
        _ => {
            let mut python = tokio::process::Command::new(SYSTEM_PYTHON);
            python.arg(script("refusals.py"));
            python
        }
    };
    // Go's flag package takes one dash or two; Python's argparse, two.
    command.arg(match client {
        Client::PythonHttp2 | Client::GoHttp2 => "--http2",
        _ => "--http1",
    });
    command.arg("--ca").arg(&app.pki.ca_file);
    if let Some(identity) = identity {
        command
            .arg("--cert")
            .arg(&identity.cert_file)
            .arg("--key")
            .arg(&identity.key_file);
    }
    let output = command
        .arg(base)
        .arg(&requests_file)
        .output()
        .await
        .unwrap_or_else(|error| panic!("the {client:?} client runs: {error}"));
    assert!(
        output.status.success(),
        "the {client:?} client ran: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let seen: Value = serde_json::from_str(line).unwrap();
            Seen {
                status: seen["status"].as_u64().unwrap_or(0) as u16,
                error: seen["error"].as_str().map(str::to_owned),
                http_version: seen["http_version"].as_str().unwrap_or_default().to_owned(),
                problem_type: seen["type"].as_str().map(str::to_owned),
            }
        })
        .collect()
}

/// The Go client, built once per version of its source (`go build` from Debian's golang-go):
/// under the system's temp dir, keyed by the source's hash, behind a file lock so that the test
/// processes running at once build it once between them.
async fn go_client() -> PathBuf {
    tokio::task::spawn_blocking(|| {
        let source = script("refusals.go");
        let text = std::fs::read(&source).expect("tests/clients/refusals.go");
        let digest = hex::encode(&ring::digest::digest(&ring::digest::SHA256, &text).as_ref()[..8]);
        let dir = std::env::temp_dir().join(format!("dispatch-e2e-go-client-{digest}"));
        std::fs::create_dir_all(&dir).unwrap();
        let binary = dir.join("refusals");
        let lock = std::fs::File::create(dir.join("lock")).unwrap();
        lock.lock().unwrap();
        if !binary.exists() {
            let built = dir.join("refusals.building");
            let output = std::process::Command::new("go")
                .arg("build")
                .arg("-o")
                .arg(&built)
                .arg(&source)
                .current_dir(&dir)
                // A cache of its own unless GOCACHE is set: Go's default is under $HOME, which
                // a bare CI runner may not have.
                .env(
                    "GOCACHE",
                    std::env::var_os("GOCACHE")
                        .map(PathBuf::from)
                        .unwrap_or_else(|| std::env::temp_dir().join("dispatch-e2e-go-cache")),
                )
                .output()
                .expect("go runs (scripts/prerequisites installs Debian's golang-go)");
            assert!(
                output.status.success(),
                "go build {}: {}",
                source.display(),
                String::from_utf8_lossy(&output.stderr)
            );
            std::fs::rename(&built, &binary).unwrap();
        }
        binary
    })
    .await
    .unwrap()
}
