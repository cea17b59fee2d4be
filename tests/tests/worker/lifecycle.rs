//! The worker's credential lifecycle: certificate renewal and API key rotation without a
//! restart, PKCS#12, graceful stop.

use std::path::{Path, PathBuf};
use std::time::Duration as StdDuration;

use e2e::devpki::LeafSpec;
use e2e::pki::Identity;
use e2e::worker::{WorkerProcess, stops_file, wait_for_file};
use e2e::{Request, TestApp, replace_file, spawn_app, spawn_app_with};
use time::Duration;

/// route-worker running over `dir/inbox`, presenting `first` copied into files of its own
/// (looked at for a renewal every second), its connections kept for `keep_alive_secs`.
struct OnFiles {
    inbox: PathBuf,
    cert_file: PathBuf,
    key_file: PathBuf,
    process: WorkerProcess,
}

async fn worker_on_files(
    app: &TestApp,
    dir: &Path,
    first: &Identity,
    keep_alive_secs: u64,
) -> OnFiles {
    let inbox = dir.join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let cert_file = dir.join("route-worker.pem");
    let key_file = dir.join("route-worker.key");
    std::fs::copy(&first.cert_file, &cert_file).unwrap();
    std::fs::copy(&first.key_file, &key_file).unwrap();
    let mut worker = app.worker_config(&inbox);
    worker.cert = Some((cert_file.clone(), key_file.clone()));
    worker.tls_extra = "reload_interval_secs = 1".into();
    worker.keep_alive_secs = keep_alive_secs;
    let process = WorkerProcess::start(&worker.write(dir), &["run"]);
    process.wait_for_log("watching for stop files").await;
    OnFiles {
        inbox,
        cert_file,
        key_file,
        process,
    }
}

/// A five-minute certificate of route-worker.
fn short_lived(app: &TestApp) -> Identity {
    app.pki.issue(
        &app.pki.ca,
        &LeafSpec::workload("route-worker", Duration::minutes(5)),
    )
}

/// A renewal: new files in place (key first, then certificate), as a renewing agent writes them.
fn renew(app: &TestApp, cert_file: &Path, key_file: &Path) -> Identity {
    let second = short_lived(app);
    replace_file(key_file, &std::fs::read(&second.key_file).unwrap());
    replace_file(cert_file, &std::fs::read(&second.cert_file).unwrap());
    second
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_picks_up_its_renewed_certificate_without_a_restart() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    // Short-lived certificates, as cert-manager or SPIRE would issue them.
    let first = short_lived(&app);
    let OnFiles {
        inbox,
        cert_file,
        key_file,
        process,
    } = worker_on_files(&app, dir.path(), &first, 1).await;

    stops_file(&inbox, "one.json", 52.0);
    wait_for_file(&inbox.join("done/one.json"), &process.logs).await;
    assert_eq!(
        app.last_certificate_fingerprint("route-worker").await,
        Some(first.fingerprint.clone())
    );

    let second = renew(&app, &cert_file, &key_file);
    let deadline = std::time::Instant::now() + StdDuration::from_secs(15);
    while !process.logs.text().contains("client certificate reloaded") {
        assert!(
            std::time::Instant::now() < deadline,
            "no reload:\n{}",
            process.logs.text()
        );
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    tokio::time::sleep(StdDuration::from_millis(1500)).await; // the pooled connection idles out
    stops_file(&inbox, "two.json", 52.5);
    wait_for_file(&inbox.join("done/two.json"), &process.logs).await;
    assert_eq!(
        app.last_certificate_fingerprint("route-worker").await,
        Some(second.fingerprint.clone()),
        "first was {}; worker logs:\n{}",
        first.fingerprint,
        process.logs.text()
    );
    assert_eq!(process.stop(), Some(0), "SIGTERM stops the worker cleanly");
    assert_eq!(app.plan_count().await, 2);
}

/// A connection keeps the certificate it was made with: one kept busy never idles out, and the
/// server would refuse it once that certificate ends. The next request after a renewal goes on
/// a new connection, presenting the renewed certificate, however alive the old one is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_after_a_renewal_presents_the_renewed_certificate_though_the_old_connection_lives_on()
 {
    // The server keeps an idle connection for two minutes, the worker for one: the first
    // plan's connection is still open when the second plan goes.
    let app = spawn_app_with(|settings| settings.server.keep_alive_secs = 120).await;
    let dir = tempfile::tempdir().unwrap();
    let first = short_lived(&app);
    let OnFiles {
        inbox,
        cert_file,
        key_file,
        process,
    } = worker_on_files(&app, dir.path(), &first, 60).await;
    stops_file(&inbox, "one.json", 52.0);
    wait_for_file(&inbox.join("done/one.json"), &process.logs).await;

    let second = renew(&app, &cert_file, &key_file);
    process.wait_for_log("client certificate reloaded").await;
    stops_file(&inbox, "two.json", 52.5);
    wait_for_file(&inbox.join("done/two.json"), &process.logs).await;
    assert_eq!(
        app.last_certificate_fingerprint("route-worker").await,
        Some(second.fingerprint.clone()),
        "first was {}",
        first.fingerprint
    );
    assert_eq!(process.stop(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_sends_its_rotated_api_key_once_the_key_file_is_replaced_without_a_restart() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let key_file = dir.path().join("key-only.api-key");
    std::fs::write(&key_file, app.key("key-only")).unwrap();
    let mut worker = app.worker_config(&inbox);
    worker.api_key_file = Some(key_file.clone());
    let process = WorkerProcess::start(&worker.write(dir.path()), &["run"]);
    process.wait_for_log("watching for stop files").await;
    stops_file(&inbox, "one.json", 52.0);
    wait_for_file(&inbox.join("done/one.json"), &process.logs).await;

    // Rotated with no overlap, so the old key is refused from now on: only the new file's key
    // can get the next plan in.
    let rotated = app
        .admin(
            Request::post("/admin/clients/key-only/api-key")
                .json(&serde_json::json!({ "reason": "yearly", "overlap_secs": 0 })),
        )
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.text());
    let new_key = rotated.json()["api_key"].as_str().unwrap().to_owned();
    replace_file(&key_file, new_key.as_bytes());
    stops_file(&inbox, "two.json", 52.5);
    wait_for_file(&inbox.join("done/two.json"), &process.logs).await;
    assert!(process.logs.text().contains("API key file changed"));
    assert!(
        !process.logs.text().contains(&new_key),
        "the key is never logged"
    );
    assert_eq!(process.stop(), Some(0));
    assert_eq!(app.plan_count().await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_renewal_keeps_the_workers_current_certificate() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let first = app.pki.workload("route-worker");
    let OnFiles {
        inbox,
        cert_file,
        process,
        ..
    } = worker_on_files(&app, dir.path(), &first, 1).await;
    // A renewal that half-arrived: a new certificate with the old key.
    let other = app.pki.workload("route-worker");
    replace_file(&cert_file, &std::fs::read(&other.cert_file).unwrap());
    let deadline = std::time::Instant::now() + StdDuration::from_secs(15);
    while !process
        .logs
        .text()
        .contains("cannot be used; keeping the current certificate")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no error logged:\n{}",
            process.logs.text()
        );
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    stops_file(&inbox, "one.json", 52.0);
    wait_for_file(&inbox.join("done/one.json"), &process.logs).await;
    assert_eq!(
        app.last_certificate_fingerprint("route-worker").await,
        Some(first.fingerprint.clone())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_accepts_a_pkcs12_certificate() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let cert = app.pki.workload("route-worker");
    let pfx = dir.path().join("route-worker.p12");
    e2e::write_pkcs12(&cert.cert_file, &cert.key_file, &pfx, "worker-pass");
    let password = dir.path().join("p12-password");
    std::fs::write(&password, "worker-pass").unwrap();
    let mut worker = app.worker_config(dir.path());
    worker.tls_extra = format!(
        "pkcs12_file = \"{}\"\npkcs12_password_file = \"{}\"",
        pfx.display(),
        password.display()
    );
    let run = e2e::worker::run_worker_async(&worker.write(dir.path()), &["whoami"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let seen: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(seen["certificate"]["fingerprint_sha256"], cert.fingerprint);
}
