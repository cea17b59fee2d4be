//! The migration from the README, end to end, with both binaries as processes.

use std::path::Path;

use e2e::process::{ServerProcess, dev_pki_server};
use e2e::worker::{WorkerConfig, run_worker, write_stops};
use e2e::{Connection, Identity, Request, connect};
use serde_json::{Value, json};

struct Operator {
    identity: Identity,
    ca_file: std::path::PathBuf,
}

impl Operator {
    fn new(pki: &Path) -> Self {
        let identity =
            e2e::identity_from_files(&pki.join("operator.pem"), &pki.join("operator.key"));
        Self {
            identity,
            ca_file: pki.join("ca.pem"),
        }
    }

    async fn call(&self, port: u16, request: Request) -> (u16, Value) {
        let mut connection: Connection =
            connect(port, &self.ca_file, Some(&self.identity), "localhost")
                .await
                .unwrap();
        let response = connection.send(request).await.unwrap();
        let body = if response.body.is_empty() {
            Value::Null
        } else {
            response.json()
        };
        (response.status, body)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migration_walkthrough_from_key_to_required_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, config) = dev_pki_server(dir.path());
    let server = ServerProcess::start(&config, &[]);
    let url = format!("https://localhost:{}", server.https_port);
    let stops = write_stops(dir.path(), "stops.csv");
    let stops = stops.to_str().unwrap();
    let operator = Operator::new(&pki);

    let mut key_only =
        WorkerConfig::new(url.clone(), &pki.join("ca.pem"), &dir.path().join("inbox"));
    key_only.api_key_file = Some(pki.join("route-worker.api-key"));
    let mut with_cert = key_only.clone();
    with_cert.cert = Some((pki.join("route-worker.pem"), pki.join("route-worker.key")));
    let cert_only = WorkerConfig {
        api_key_file: None,
        ..with_cert.clone()
    };

    // 1. route-worker submits with its key; the client starts in api_key mode.
    let run = run_worker(&key_only.write(dir.path()), &["submit", stops]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout.matches("accepted").count(),
        2,
        "one plan per team: {run:?}"
    );
    let (_, client) = operator
        .call(
            server.https_port,
            Request::get("/admin/clients/route-worker"),
        )
        .await;
    assert_eq!(client["mode"], "api_key");

    // 2. The operator moves it to dual.
    let (status, body) = operator
        .call(
            server.https_port,
            Request::put("/admin/clients/route-worker/mode")
                .json(&json!({"mode": "dual", "reason": "certificate issued"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // 3. The worker gets its certificate and submits over mTLS (still sending its key).
    let whoami = run_worker(&with_cert.write(dir.path()), &["whoami"]);
    assert_eq!(whoami.code, 0, "{whoami:?}");
    let seen: Value = serde_json::from_str(&whoami.stdout).unwrap();
    assert_eq!(
        (seen["client"].as_str(), seen["method"].as_str()),
        (Some("route-worker"), Some("certificate"))
    );
    let run = run_worker(&with_cert.write(dir.path()), &["submit", stops]);
    assert_eq!(run.code, 0, "{run:?}");

    // 4. The migration report shows it ready once its key has been quiet for the quiet period
    // (1 s in this test's config): until then it says the key is still in use.
    let mut waited = 0;
    let report = loop {
        let (_, report) = operator
            .call(server.https_port, Request::get("/admin/migration"))
            .await;
        if e2e::migration_row(&report, "route-worker")["ready_for_mtls"] == true {
            break report;
        }
        let because = e2e::migration_row(&report, "route-worker")["not_ready_because"].to_string();
        assert!(because.contains("API key was used"), "{report}");
        waited += 1;
        assert!(waited <= 30, "never ready: {report}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(report["all_clients_mtls"], false);

    // 5. The operator moves it to mtls.
    let (status, body) = operator
        .call(
            server.https_port,
            Request::put("/admin/clients/route-worker/mode")
                .json(&json!({"mode": "mtls", "reason": "key retired"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // 6. The old key is refused as key_retired, while the worker with its certificate works.
    let run = run_worker(&key_only.write(dir.path()), &["submit", stops]);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        run.stderr
            .contains("API key is retired: configure the client certificate"),
        "{run:?}"
    );
    let (_, audit) = operator
        .call(
            server.https_port,
            Request::get("/admin/audit?client=route-worker"),
        )
        .await;
    assert!(
        audit["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["reason"] == "key_retired"),
        "{audit}"
    );
    let run = run_worker(&with_cert.write(dir.path()), &["submit", stops]);
    assert_eq!(run.code, 0, "{run:?}");

    // 7. Every client is mtls: the listener goes to required.
    let (_, report) = operator
        .call(server.https_port, Request::get("/admin/migration"))
        .await;
    assert_eq!(report["all_clients_mtls"], true, "{report}");
    assert_eq!(server.stop().code(), Some(0));
    let server = ServerProcess::start(&config, &[("DISPATCH_TLS__CLIENT_AUTH", "required".into())]);
    let url = format!("https://localhost:{}", server.https_port);
    let run = run_worker(
        &WorkerConfig {
            url: url.clone(),
            ..cert_only.clone()
        }
        .write(dir.path()),
        &["submit", stops],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let run = run_worker(
        &WorkerConfig {
            url,
            ..key_only.clone()
        }
        .write(dir.path()),
        &["submit", stops],
    );
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        run.stderr.contains("requires a client certificate"),
        "{run:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_key_never_appears_in_the_workers_or_the_servers_logs() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, config) = dev_pki_server(dir.path());
    let key = std::fs::read_to_string(pki.join("route-worker.api-key")).unwrap();
    let server = ServerProcess::start(&config, &[]);
    let url = format!("https://localhost:{}", server.https_port);
    let stops = write_stops(dir.path(), "stops.csv");
    let mut worker = WorkerConfig::new(url, &pki.join("ca.pem"), &dir.path().join("inbox"));
    worker.api_key_file = Some(pki.join("route-worker.api-key"));
    let mut runs = vec![run_worker(
        &worker.write(dir.path()),
        &["submit", stops.to_str().unwrap()],
    )];
    // A refusal too: flip to mtls (forced), then the key is retired.
    let operator = Operator::new(&pki);
    let flip = json!({"mode": "mtls", "reason": "test", "force": true});
    assert_eq!(
        operator
            .call(
                server.https_port,
                Request::put("/admin/clients/route-worker/mode").json(&flip)
            )
            .await
            .0,
        200
    );
    runs.push(run_worker(
        &worker.write(dir.path()),
        &["submit", stops.to_str().unwrap()],
    ));
    runs.push(run_worker(&worker.write(dir.path()), &["whoami"]));
    assert_eq!(runs.iter().map(|r| r.code).collect::<Vec<_>>(), [0, 3, 3]);
    let server_logs = server.logs.text();
    assert!(
        server_logs.contains("key_retired"),
        "the refusal is logged:\n{server_logs}"
    );
    for text in runs
        .iter()
        .flat_map(|r| [&r.stdout, &r.stderr])
        .chain([&server_logs])
    {
        assert!(
            !text.contains(key.trim()),
            "the API key leaked into a log:\n{text}"
        );
        assert!(
            !text.contains("PRIVATE KEY"),
            "key material leaked into a log"
        );
    }
}
