//! A bad start-up setting makes the real binary exit non-zero with a message that names the
//! file or setting at fault.

use std::path::Path;
use std::process::Command;

use devpki::{CertificateAuthority, LeafSpec};
use time::Duration;

/// Writes a config dir whose TLS paths point into `dir`, and returns it.
fn config_dir(dir: &Path) -> std::path::PathBuf {
    let ca = CertificateAuthority::dev(Duration::days(1)).unwrap();
    let server = ca.issue(&LeafSpec::server(Duration::days(1))).unwrap();
    let other = ca.issue(&LeafSpec::server(Duration::days(1))).unwrap();
    std::fs::write(dir.join("ca.pem"), &ca.cert_pem).unwrap();
    std::fs::write(dir.join("server.pem"), &server.cert_pem).unwrap();
    std::fs::write(dir.join("server.key"), &server.key_pem).unwrap();
    std::fs::write(dir.join("other.key"), &other.key_pem).unwrap();
    let config = dir.join("config");
    std::fs::create_dir_all(&config).unwrap();
    let base = format!(
        r#"
[server]
host = "127.0.0.1"
port = 0
ops_port = 0
[tls]
cert_file = "{d}/server.pem"
key_file = "{d}/server.key"
client_ca_file = "{d}/ca.pem"
client_auth = "optional"
[database]
path = "{d}/dispatch.db"
"#,
        d = dir.display()
    );
    std::fs::write(config.join("base.toml"), base).unwrap();
    config
}

fn run_with(dir: &Path, env: &[(&str, String)]) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dispatch-api"));
    command
        .env("DISPATCH_CONFIG_DIR", config_dir(dir))
        .env("DISPATCH_ENV", "local");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("run dispatch-api");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn missing_certificate_file_exits_non_zero_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.pem");
    let (code, stderr) = run_with(
        dir.path(),
        &[("DISPATCH_TLS__CERT_FILE", missing.display().to_string())],
    );
    assert_ne!(code, 0);
    assert!(
        stderr.contains("server certificate") && stderr.contains(&missing.display().to_string()),
        "{stderr}"
    );
}

#[test]
fn key_not_matching_the_certificate_exits_non_zero_naming_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let wrong_key = dir.path().join("other.key");
    let (code, stderr) = run_with(
        dir.path(),
        &[("DISPATCH_TLS__KEY_FILE", wrong_key.display().to_string())],
    );
    assert_ne!(code, 0);
    assert!(
        stderr.contains("does not match")
            && stderr.contains("other.key")
            && stderr.contains("server.pem"),
        "{stderr}"
    );
}

#[test]
fn unreadable_ca_bundle_exits_non_zero_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("garbage.pem");
    std::fs::write(&not_pem, "this is not a certificate").unwrap();
    let (code, stderr) = run_with(
        dir.path(),
        &[(
            "DISPATCH_TLS__CLIENT_CA_FILE",
            not_pem.display().to_string(),
        )],
    );
    assert_ne!(code, 0);
    assert!(
        stderr.contains("client CA bundle") && stderr.contains("garbage.pem"),
        "{stderr}"
    );
}

#[test]
fn invalid_setting_value_exits_non_zero_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr) = run_with(
        dir.path(),
        &[("DISPATCH_TLS__CLIENT_AUTH", "sometimes".into())],
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("client_auth"), "{stderr}");
}

#[test]
fn expired_server_certificate_exits_non_zero_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_dir(dir.path());
    let ca = CertificateAuthority::dev(Duration::days(1)).unwrap();
    let mut spec = LeafSpec::server(Duration::days(1));
    spec.not_before = time::OffsetDateTime::now_utc() - Duration::days(3);
    spec.not_after = time::OffsetDateTime::now_utc() - Duration::days(1);
    let expired = ca.issue(&spec).unwrap();
    std::fs::write(dir.path().join("expired.pem"), &expired.cert_pem).unwrap();
    std::fs::write(dir.path().join("expired.key"), &expired.key_pem).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_dispatch-api"))
        .env("DISPATCH_CONFIG_DIR", config)
        .env("DISPATCH_TLS__CERT_FILE", dir.path().join("expired.pem"))
        .env("DISPATCH_TLS__KEY_FILE", dir.path().join("expired.key"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_ne!(output.status.code(), Some(0));
    assert!(
        stderr.contains("expired") && stderr.contains("expired.pem"),
        "{stderr}"
    );
}
