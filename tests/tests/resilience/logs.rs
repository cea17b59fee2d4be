//! Logs under hostile load: every line anyone can repeat at will has a budget, the line after a
//! busy spell saying how many were suppressed, and a log sink that stops reading never stops
//! requests (the writer drops lines and counts them).

use std::io::BufRead;
use std::path::Path;
use std::time::Duration;

use e2e::devpki::{CertificateAuthority, LeafSpec};
use e2e::http::{connect, ops_get};
use e2e::process::ServerProcess;
use e2e::{Request, identity_from_files, identity_from_pem};
use serde_json::{Value, json};

/// The JSON log lines with this message.
fn lines_saying(server: &ServerProcess, message: &str) -> Vec<Value> {
    server
        .logs
        .text()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["message"] == message)
        .collect()
}

/// After `events` events, the last one a second after the others: every event is either a
/// line or counted in the `suppressed=` of the next line written, so the lines and what they
/// say was suppressed add up to the events; at most `per_second` lines were written in any
/// one second of the `seconds` the burst took; and the budget did suppress some (in whichever
/// second of the burst passed it: on a loaded machine the burst's last second may not).
fn budgeted(server: &ServerProcess, message: &str, events: usize, per_second: u64, seconds: u64) {
    let lines = lines_saying(server, message);
    let suppressed: Vec<u64> = lines
        .iter()
        .map(|line| {
            line["suppressed"]
                .as_u64()
                .expect("suppressed= on every line")
        })
        .collect();
    let accounted = lines.len() as u64 + suppressed.iter().sum::<u64>();
    assert_eq!(accounted, events as u64, "{lines:?}");
    assert!(
        lines.len() as u64 <= (seconds + 1) * per_second + 1,
        "{} lines in about {seconds} s",
        lines.len()
    );
    assert!(
        suppressed.iter().any(|n| *n > 0),
        "a line after a second over the budget says what it suppressed: {lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_failure_lines_are_budgeted_per_kind_with_a_suppressed_count() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, config) = e2e::process::dev_pki_server(dir.path());
    let server = ServerProcess::start(&config, &[]);
    let stranger = CertificateAuthority::new("Stranger CA", "X", time::Duration::days(1)).unwrap();
    let issued = stranger
        .issue(&LeafSpec::workload(
            "route-worker",
            time::Duration::hours(1),
        ))
        .unwrap();
    let untrusted = identity_from_pem(&issued.cert_pem, &issued.key_pem);
    let ca = pki.join("ca.pem");
    let fail = || async {
        let connected = connect(server.https_port, &ca, Some(&untrusted), "localhost").await;
        if let Ok(mut connection) = connected {
            // TLS 1.3: the refusal arrives with the first read.
            assert!(connection.send(Request::get("/api/whoami")).await.is_err());
        }
    };
    const REPEAT: usize = 150;
    let burst = std::time::Instant::now();
    for _ in 0..REPEAT {
        fail().await;
    }
    let seconds = burst.elapsed().as_secs() + 1;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    fail().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    budgeted(
        &server,
        "client certificate refused in the TLS handshake",
        REPEAT + 1,
        10,
        seconds,
    );
    let metrics = ops_get(server.ops_port, "/metrics").await.text();
    assert!(
        metrics.contains(&format!(
            "dispatch_tls_handshake_failures_total{{kind=\"untrusted_issuer\"}} {}",
            REPEAT + 1
        )),
        "every failure is still counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_lines_of_a_retired_key_are_budgeted_per_client_with_a_suppressed_count() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, config) = e2e::process::dev_pki_server(dir.path());
    let server = ServerProcess::start(&config, &[]);
    let ca = pki.join("ca.pem");
    let operator = identity_from_files(&pki.join("operator.pem"), &pki.join("operator.key"));
    let mut admin = connect(server.https_port, &ca, Some(&operator), "localhost")
        .await
        .unwrap();
    let flip = admin
        .send(
            Request::put("/admin/clients/route-worker/mode")
                .json(&json!({"mode": "mtls", "reason": "retire the key", "force": true})),
        )
        .await
        .unwrap();
    assert_eq!(flip.status, 200, "{}", flip.text());
    let key = std::fs::read_to_string(pki.join("route-worker.api-key")).unwrap();
    let mut keyed = connect(server.https_port, &ca, None, "localhost")
        .await
        .unwrap();
    let whoami = Request::get("/api/whoami").api_key(key.trim());
    const REPEAT: usize = 100;
    let burst = std::time::Instant::now();
    for _ in 0..REPEAT {
        assert_eq!(keyed.send(whoami.clone()).await.unwrap().status, 401);
    }
    let seconds = burst.elapsed().as_secs() + 1;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(keyed.send(whoami).await.unwrap().status, 401);
    tokio::time::sleep(Duration::from_millis(300)).await;
    budgeted(
        &server,
        "ALERT: a retired or ended API key was used",
        REPEAT + 1,
        5,
        seconds,
    );
}

/// Starts dispatch-api whose stderr nobody reads once it has said where it listens: a log
/// shipper that hung. Returns the process, the pipe (kept open, unread) and the ports.
#[expect(
    clippy::zombie_processes,
    reason = "the child is returned; the test kills and waits for it"
)]
fn start_with_a_stuck_log_sink(
    config: &Path,
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStderr>,
    u16,
    u16,
) {
    let mut child = std::process::Command::new(e2e::process::binary("dispatch-api"))
        .env("DISPATCH_CONFIG_DIR", config)
        .env("DISPATCH_ENV", "local")
        .env("DISPATCH_TELEMETRY__FORMAT", "json")
        .env("DISPATCH_TELEMETRY__LOG_BUFFER_LINES", "64")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("dispatch-api starts");
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        if stderr.read_line(&mut line).unwrap_or(0) == 0 {
            let _ = child.kill();
            let _ = child.wait();
            panic!("dispatch-api exited before it listened");
        }
        if line.contains("dispatch-api listening") {
            let json: Value = serde_json::from_str(&line).unwrap();
            let port = |key: &str| json[key].as_u64().unwrap() as u16;
            return (child, stderr, port("https_port"), port("ops_port"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_sink_that_stops_reading_does_not_stop_requests() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, config) = e2e::process::dev_pki_server(dir.path());
    let (mut child, _unread, https_port, ops_port) = start_with_a_stuck_log_sink(&config);
    let key = std::fs::read_to_string(pki.join("route-worker.api-key")).unwrap();
    let ca = pki.join("ca.pem");
    let served = tokio::time::timeout(Duration::from_secs(60), async {
        let mut connection = connect(https_port, &ca, None, "localhost").await.unwrap();
        // Each answered request writes a line (debug filter: more): far more than a pipe
        // (64 KiB) and the writer's 64 lines hold.
        for n in 0..2000 {
            let response = connection
                .send(Request::get("/api/whoami").api_key(key.trim()))
                .await
                .unwrap();
            assert_eq!(response.status, 200, "request {n}");
        }
    })
    .await;
    assert!(served.is_ok(), "requests stalled behind the log sink");
    let metrics = ops_get(ops_port, "/metrics").await.text();
    let dropped: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("dispatch_log_lines_dropped_total "))
        .expect("the dropped-lines counter is exported")
        .parse()
        .unwrap();
    assert!(dropped > 0.0, "{dropped}");
    let _ = child.kill();
    let _ = child.wait();
}
