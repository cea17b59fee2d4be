//! The worker's own certificate over ACME, from a real ACME CA: Debian's pebble, validating
//! http-01 against the worker's own responder through pebble-challtestsrv's DNS. dispatch-api
//! binds it by its DNS name (a `dns_name` binding under pebble's intermediate). And Debian's
//! `lego` as a stock ACME client whose certificate is bound the same way.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::pebble::Pebble;
use e2e::worker::{
    WorkerConfig, WorkerProcess, run_worker_async, stops_file, wait_for_file, write_stops,
};
use e2e::{PreparedApp, Request, TestApp, identity_from_files};
use serde_json::json;

const NAME: &str = "worker.dispatch.internal";

/// dispatch-api trusting pebble's root (and its intermediate) beside the dev CAs.
async fn app_trusting(pebble: &Pebble) -> TestApp {
    let mut prepared = PreparedApp::new();
    let (root, intermediate) = pebble.issuer_chain();
    let bundle = prepared.dir().join("client-ca-bundle-with-pebble.pem");
    let existing = std::fs::read_to_string(&prepared.settings.tls.client_ca_file).unwrap();
    std::fs::write(&bundle, format!("{existing}{root}{intermediate}")).unwrap();
    prepared.settings.tls.client_ca_file = bundle;
    prepared.start().await
}

/// Registers `client`, bound by `name` under pebble's intermediate, in `mode`.
async fn register(app: &TestApp, pebble: &Pebble, client: &str, name: &str, mode: &str) {
    let body = json!({
        "name": client, "mode": mode, "scopes": ["plans:submit"], "reason": "acme test",
        "bindings": [{"issuer": pebble.issuer_name(), "dns_name": name}],
    });
    let answer = app.admin(Request::post("/admin/clients").json(&body)).await;
    assert_eq!(answer.status, 201, "{}", answer.text());
}

/// route-worker on ACME: pebble's directory, its http-01 port, a state dir under `dir`.
fn acme_worker(app: &TestApp, pebble: &Pebble, dir: &Path, renew_before_secs: u64) -> WorkerConfig {
    let inbox = dir.join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let mut worker = app.worker_config(&inbox);
    worker.keep_alive_secs = 2;
    worker.tls_extra = format!(
        "reload_interval_secs = 1\n[tls.acme]\ndirectory_url = \"{}\"\nca_file = \"{}\"\n\
         dns_names = [\"{NAME}\"]\nhttp01_listen = \"127.0.0.1:{}\"\nstate_dir = \"{}\"\n\
         renew_before_secs = {renew_before_secs}\n",
        pebble.directory_url,
        pebble.tls_root.display(),
        pebble.http01_port,
        dir.join("acme-state").display(),
    );
    worker
}

/// Waits (up to `secs`) until `logs` hold `text` `times` times.
async fn wait_for_count(process: &WorkerProcess, text: &str, times: usize, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while process.logs.text().matches(text).count() < times {
        assert!(
            Instant::now() < deadline,
            "`{text}` not seen {times} times within {secs} s; worker logs:\n{}",
            process.logs.text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_gets_its_certificate_from_pebble_over_http01_and_is_bound_by_its_dns_name() {
    let dir = tempfile::tempdir().unwrap();
    let pebble = Pebble::start(dir.path(), 3600);
    let app = app_trusting(&pebble).await;
    register(&app, &pebble, "acme-worker", NAME, "mtls").await;
    let config = acme_worker(&app, &pebble, dir.path(), 0).write(dir.path());
    let stops = write_stops(dir.path(), "stops.csv");

    let run = run_worker_async(&config, &["submit", stops.to_str().unwrap()]).await;
    assert_eq!(run.code, 0, "{run:?}\npebble:\n{}", pebble.logs.text());
    assert_eq!(app.plan_count().await, 2, "two teams, two plans");

    // The stored certificate is used again (no new order), and the server sees what the worker
    // says it presents.
    let run = run_worker_async(&config, &["whoami"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let me: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(me["client"], "acme-worker");
    assert_eq!(me["method"], "certificate");
    assert_eq!(me["certificate"]["dns_names"], json!([NAME]));
    assert_eq!(
        me["presenting"]["fingerprint_sha256"],
        me["certificate"]["fingerprint_sha256"]
    );
    assert_eq!(
        app.last_certificate_fingerprint("acme-worker")
            .await
            .as_deref(),
        me["certificate"]["fingerprint_sha256"].as_str()
    );
    let identity = dir.path().join("acme-state/identity.pem");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for file in [&identity, &dir.path().join("acme-state/account.json")] {
            let mode = std::fs::metadata(file).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{} is private", file.display());
        }
    }
    let orders = pebble.logs.text().matches("Issued certificate").count();
    assert_eq!(
        orders,
        1,
        "one certificate for both runs:\n{}",
        pebble.logs.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_keeps_submitting_across_two_renewals_of_90_second_certificates_with_nothing_refused()
 {
    let dir = tempfile::tempdir().unwrap();
    let pebble = Pebble::start(dir.path(), 90);
    let app = app_trusting(&pebble).await;
    register(&app, &pebble, "acme-worker", NAME, "dual").await;
    let worker = acme_worker(&app, &pebble, dir.path(), 0);
    let inbox = worker.input_dir.clone();
    let process = WorkerProcess::start(&worker.write(dir.path()), &["run"]);
    process.wait_for_log("watching for stop files").await;
    let first = loop_until_renewed(&app, &process, &inbox, 2).await;

    // Every plan dropped in was accepted: none refused, none retried to failure, none lost.
    let failed: Vec<PathBuf> = std::fs::read_dir(inbox.join("failed"))
        .map(|dir| dir.map(|entry| entry.unwrap().path()).collect())
        .unwrap_or_default();
    assert!(failed.is_empty(), "{failed:?}\n{}", process.logs.text());
    assert_eq!(app.plan_count().await, first.dropped as i64);
    let refusals: Vec<_> = app
        .audit(Some("acme-worker"))
        .await
        .into_iter()
        .filter(|event| event["kind"] == "auth_refused")
        .collect();
    assert!(refusals.is_empty(), "{refusals:?}");
    let now = app.last_certificate_fingerprint("acme-worker").await;
    assert_ne!(
        now, first.fingerprint,
        "the server saw the renewed certificate"
    );
    assert!(
        !process
            .logs
            .text()
            .contains("renewing the certificate over ACME failed"),
        "{}",
        process.logs.text()
    );
    assert_eq!(process.stop(), Some(0));
}

/// What [`loop_until_renewed`] saw.
struct Fed {
    dropped: usize,
    fingerprint: Option<String>,
}

/// Drops a stops file every second until the worker has renewed `renewals` times, moving the
/// client to `mtls` once its first plan is in; then waits for every file to be done.
async fn loop_until_renewed(
    app: &TestApp,
    process: &WorkerProcess,
    inbox: &Path,
    renewals: usize,
) -> Fed {
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut dropped = 0;
    let mut fingerprint = None;
    while process
        .logs
        .text()
        .matches("renewed the certificate over ACME")
        .count()
        < renewals
    {
        assert!(
            Instant::now() < deadline,
            "no {renewals} renewals:\n{}",
            process.logs.text()
        );
        let name = format!("{dropped}.json");
        stops_file(inbox, &name, 52.0 + dropped as f64 / 1000.0);
        dropped += 1;
        if dropped == 1 {
            wait_for_file(&inbox.join("done/0.json"), &process.logs).await;
            fingerprint = app.last_certificate_fingerprint("acme-worker").await;
            // A renewed certificate after the flip is still this client's.
            let flip = json!({"mode": "mtls", "reason": "acme test"});
            let answer = app
                .admin(Request::put("/admin/clients/acme-worker/mode").json(&flip))
                .await;
            assert_eq!(answer.status, 200, "{}", answer.text());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for n in 0..dropped {
        wait_for_file(&inbox.join(format!("done/{n}.json")), &process.logs).await;
    }
    Fed {
        dropped,
        fingerprint,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_ca_is_stopped_the_worker_keeps_its_certificate_warns_and_renews_once_it_is_back()
{
    let dir = tempfile::tempdir().unwrap();
    let pebble = Pebble::start(dir.path(), 90);
    let app = app_trusting(&pebble).await;
    register(&app, &pebble, "acme-worker", NAME, "mtls").await;
    // Renewal due 60 s before the end: 30 s after issuance.
    let worker = acme_worker(&app, &pebble, dir.path(), 60);
    let inbox = worker.input_dir.clone();
    let process = WorkerProcess::start(&worker.write(dir.path()), &["run"]);
    process.wait_for_log("watching for stop files").await;
    pebble.pause();

    wait_for_count(&process, "renewing the certificate over ACME failed", 1, 90).await;
    assert!(
        process.logs.text().contains("seconds_left"),
        "the warning says how long the certificate has left:\n{}",
        process.logs.text()
    );
    // Meanwhile the current certificate still works.
    stops_file(&inbox, "while-down.json", 52.0);
    wait_for_file(&inbox.join("done/while-down.json"), &process.logs).await;

    pebble.resume();
    wait_for_count(&process, "renewed the certificate over ACME", 1, 60).await;
    tokio::time::sleep(Duration::from_secs(3)).await; // reloaded; the pooled connection idles out
    stops_file(&inbox, "after.json", 52.5);
    wait_for_file(&inbox.join("done/after.json"), &process.logs).await;
    assert_eq!(app.plan_count().await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_lego_got_from_pebble_is_bound_by_its_dns_name() {
    let dir = tempfile::tempdir().unwrap();
    let pebble = Pebble::start(dir.path(), 3600);
    let app = app_trusting(&pebble).await;
    let name = "lego.dispatch.internal";
    register(&app, &pebble, "lego-client", name, "mtls").await;
    let lego_dir = dir.path().join("lego");
    let output = Command::new("timeout")
        .arg("120")
        .arg("lego")
        .args(["--server", &pebble.directory_url])
        .args(["--email", "ops@dispatch.internal", "--accept-tos"])
        .arg("--path")
        .arg(&lego_dir)
        .args(["--domains", name, "--http"])
        .args(["--http.port", &format!("127.0.0.1:{}", pebble.http01_port)])
        .arg("run")
        .env("LEGO_CA_CERTIFICATES", &pebble.tls_root)
        .output()
        .expect("lego (Debian's `lego` package; scripts/prerequisites)");
    assert!(
        output.status.success(),
        "lego:\n{}\npebble:\n{}",
        String::from_utf8_lossy(&output.stderr),
        pebble.logs.text()
    );
    let certificates = lego_dir.join("certificates");
    let identity = identity_from_files(
        &certificates.join(format!("{name}.crt")),
        &certificates.join(format!("{name}.key")),
    );
    let answer = app
        .request(Some(&identity), Request::get("/api/whoami"))
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["client"], "lego-client");
    assert_eq!(answer.json()["certificate"]["dns_names"], json!([name]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_window_the_ca_suggests_is_followed_long_before_a_third_of_the_lifetime_is_left()
{
    let dir = tempfile::tempdir().unwrap();
    // Hour-long certificates: by its own rule the worker would renew in 40 minutes.
    let pebble = Pebble::start(dir.path(), 3600);
    let now = time::OffsetDateTime::now_utc();
    // Past the certificate's first minute, which no window moves a renewal into.
    let window = (
        now + time::Duration::seconds(70),
        now + time::Duration::seconds(75),
    );
    let ari = pebble.with_renewal_info(window).await;
    let app = app_trusting(&pebble).await;
    register(&app, &pebble, "acme-worker", NAME, "mtls").await;
    let mut worker = acme_worker(&app, &pebble, dir.path(), 0);
    worker.tls_extra = worker
        .tls_extra
        .replace(&pebble.directory_url, &ari.directory_url);
    let inbox = worker.input_dir.clone();
    let process = WorkerProcess::start(&worker.write(dir.path()), &["run"]);
    process.wait_for_log("watching for stop files").await;
    wait_for_count(&process, "the ACME server suggests when to renew", 1, 30).await;
    wait_for_count(&process, "renewed the certificate over ACME", 1, 120).await;
    assert!(
        time::OffsetDateTime::now_utc() >= window.0,
        "renewed within the window, not before it"
    );
    // The renewed certificate is this client's.
    stops_file(&inbox, "renewed.json", 52.0);
    wait_for_file(&inbox.join("done/renewed.json"), &process.logs).await;
    // It asked about the certificate it held, then about the renewed one.
    let deadline = Instant::now() + Duration::from_secs(30);
    while ari.asked().len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let asked = ari.asked();
    assert!(
        asked.len() == 2 && asked.iter().all(|id| id.contains('.')),
        "{asked:?}"
    );
    assert_eq!(
        process
            .logs
            .text()
            .matches("renewed the certificate over ACME")
            .count(),
        1,
        "the renewed certificate's own window is an hour on: {}",
        process.logs.text()
    );
    assert_eq!(process.stop(), Some(0));
}
