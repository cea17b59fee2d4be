//! Secrets hygiene at run time.

use e2e::process::ServerProcess;

#[test]
fn a_private_key_readable_by_others_is_warned_about_by_name() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (pki, config) = e2e::process::dev_pki_server(dir.path());
    let key = pki.join("dispatch-api.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let server = ServerProcess::start(&config, &[]);
    server.wait_for_log("readable by group or others");
    let logs = server.logs.text();
    let line = logs
        .lines()
        .find(|l| l.contains("readable by group or others"))
        .unwrap();
    assert!(
        line.contains("dispatch-api.key") && line.contains("644"),
        "{line}"
    );
    assert!(
        !logs.contains("PRIVATE KEY"),
        "the key itself is never logged"
    );
}

#[test]
fn owner_only_private_keys_start_without_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let (_, config) = e2e::process::dev_pki_server(dir.path());
    let server = ServerProcess::start(&config, &[]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!server.logs.text().contains("readable by group or others"));
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_and_its_wal_and_shared_memory_files_are_readable_by_their_owner_only() {
    let app = e2e::spawn_app().await;
    let response = app
        .request(
            None,
            e2e::submit(&e2e::plan("owner-only", 2)).api_key(app.key("route-worker")),
        )
        .await
        .unwrap();
    assert_eq!(response.status, 202);
    let database = app.settings.database.path.clone();
    for suffix in ["", "-wal", "-shm"] {
        let file = std::path::PathBuf::from(format!("{}{suffix}", database.display()));
        assert!(file.exists(), "{}", file.display());
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_readable_by_others_is_narrowed_to_its_owner_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let prepared = e2e::PreparedApp::new();
    let database = prepared.settings.database.path.clone();
    std::fs::write(&database, b"").unwrap();
    std::fs::set_permissions(&database, std::fs::Permissions::from_mode(0o644)).unwrap();
    let app = prepared.start().await;
    assert_eq!(mode(&app.settings.database.path), 0o600);
}
