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
