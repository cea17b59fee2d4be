//! Settings: defaults, partial sections, the log format, required keys.

use super::*;

/// The two settings without a default, then `rest`.
const REQUIRED: &str = "[server]\nurl = 'https://localhost:1'\n[tls]\nca_file = 'ca.pem'\n";

/// Loads `toml` as `route-worker.toml`, with `env` as the only ROUTE_WORKER_* variables.
fn load(toml: &str, env: &[(&str, &str)]) -> Result<WorkerSettings, WorkerError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("route-worker.toml"), toml).unwrap();
    let env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    WorkerSettings::load_with_env(dir.path(), Some(env))
}

fn config_error(result: Result<WorkerSettings, WorkerError>) -> String {
    match result {
        Err(WorkerError::Config(message)) => message,
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

#[test]
fn only_the_url_and_the_ca_file_are_needed_everything_else_has_a_default() {
    let settings = load(REQUIRED, &[]).unwrap();
    assert_eq!(settings.server.url, "https://localhost:1");
    assert_eq!(settings.server.request_timeout_secs, 10);
    assert_eq!(settings.server.keep_alive_secs, 15);
    assert_eq!(settings.tls.ca_file, Path::new("ca.pem"));
    assert!(settings.tls.cert_file.is_none() && settings.tls.pkcs12_file.is_none());
    assert_eq!(settings.tls.reload_interval_secs, 5);
    assert_eq!(settings.tls.expiry_warning_days, 14);
    assert!(settings.auth.api_key_file.is_none());
    assert_eq!(settings.input.dir, Path::new("data/inbox"));
    assert_eq!(settings.retry.max_attempts, 8);
    assert_eq!(settings.telemetry.format, LogFormat::Pretty);
    assert_eq!(settings.telemetry.filter, "info");
}

#[test]
fn a_partial_retry_section_keeps_the_other_defaults() {
    let settings = load(&format!("{REQUIRED}[retry]\nmax_attempts = 3\n"), &[]).unwrap();
    assert_eq!(settings.retry.max_attempts, 3);
    assert_eq!(settings.retry.initial_backoff_ms, 250);
    assert_eq!(settings.retry.max_backoff_ms, 10_000);
}

#[test]
fn a_partial_input_section_keeps_the_other_defaults() {
    let settings = load(&format!("{REQUIRED}[input]\ndir = '/srv/inbox'\n"), &[]).unwrap();
    assert_eq!(settings.input.dir, Path::new("/srv/inbox"));
    assert_eq!(settings.input.poll_interval_secs, 5);
    assert_eq!(settings.input.days_ahead, 1);
}

#[test]
fn a_partial_server_section_keeps_the_other_defaults() {
    let settings = load(
        "[server]\nurl = 'https://localhost:1'\nkeep_alive_secs = 2\n[tls]\nca_file = 'ca.pem'\n",
        &[],
    )
    .unwrap();
    assert_eq!(settings.server.keep_alive_secs, 2);
    assert_eq!(settings.server.request_timeout_secs, 10);
}

#[test]
fn a_partial_tls_section_keeps_the_other_defaults() {
    let settings = load(&format!("{REQUIRED}reload_interval_secs = 0\n"), &[]).unwrap();
    assert_eq!(settings.tls.reload_interval_secs, 0);
    assert_eq!(settings.tls.expiry_warning_days, 14);
}

#[test]
fn a_partial_telemetry_section_keeps_the_other_defaults() {
    let settings = load(&format!("{REQUIRED}[telemetry]\nfilter = 'debug'\n"), &[]).unwrap();
    assert_eq!(settings.telemetry.filter, "debug");
    assert_eq!(settings.telemetry.format, LogFormat::Pretty);
}

#[test]
fn telemetry_format_json_loads_from_the_file_and_from_the_environment() {
    let settings = load(&format!("{REQUIRED}[telemetry]\nformat = 'json'\n"), &[]).unwrap();
    assert_eq!(settings.telemetry.format, LogFormat::Json);
    assert_eq!(settings.telemetry.filter, "info");
    let settings = load(REQUIRED, &[("ROUTE_WORKER_TELEMETRY__FORMAT", "json")]).unwrap();
    assert_eq!(settings.telemetry.format, LogFormat::Json);
    let settings = load(
        &format!("{REQUIRED}[telemetry]\nformat = 'json'\n"),
        &[("ROUTE_WORKER_TELEMETRY__FORMAT", "pretty")],
    )
    .unwrap();
    assert_eq!(settings.telemetry.format, LogFormat::Pretty);
}

#[test]
fn an_unknown_log_format_is_refused_naming_the_key() {
    let error = config_error(load(
        &format!("{REQUIRED}[telemetry]\nformat = 'yaml'\n"),
        &[],
    ));
    assert!(error.contains("yaml"), "{error}");
    assert!(error.contains("telemetry.format"), "{error}");
}

#[test]
fn the_old_telemetry_json_switch_is_refused_naming_format() {
    for result in [
        load(&format!("{REQUIRED}[telemetry]\njson = true\n"), &[]),
        load(REQUIRED, &[("ROUTE_WORKER_TELEMETRY__JSON", "true")]),
    ] {
        let error = config_error(result);
        assert!(error.contains("unknown field `json`"), "{error}");
        assert!(error.contains("`format`"), "{error}");
    }
}

#[test]
fn a_missing_server_url_is_refused_by_name() {
    for toml in [
        "[tls]\nca_file = 'ca.pem'\n",
        "[server]\nkeep_alive_secs = 2\n[tls]\nca_file = 'ca.pem'\n",
    ] {
        let error = config_error(load(toml, &[]));
        assert!(error.contains("server.url is required"), "{error}");
        assert!(error.contains("ROUTE_WORKER_SERVER__URL"), "{error}");
    }
    let error = config_error(load(REQUIRED, &[("ROUTE_WORKER_SERVER__URL", "")]));
    assert!(error.contains("server.url is required"), "{error}");
}

#[test]
fn a_missing_ca_file_is_refused_by_name() {
    for toml in [
        "[server]\nurl = 'https://localhost:1'\n",
        "[server]\nurl = 'https://localhost:1'\n[tls]\nreload_interval_secs = 1\n",
    ] {
        let error = config_error(load(toml, &[]));
        assert!(error.contains("tls.ca_file is required"), "{error}");
        assert!(error.contains("ROUTE_WORKER_TLS__CA_FILE"), "{error}");
    }
}

#[test]
fn the_url_and_the_ca_file_can_come_from_the_environment_alone() {
    let settings = load(
        "",
        &[
            ("ROUTE_WORKER_SERVER__URL", "https://dispatch-api:8443"),
            ("ROUTE_WORKER_TLS__CA_FILE", "/run/secrets/worker/ca.pem"),
        ],
    )
    .unwrap();
    assert_eq!(settings.server.url, "https://dispatch-api:8443");
    assert_eq!(
        settings.tls.ca_file,
        Path::new("/run/secrets/worker/ca.pem")
    );
    assert_eq!(settings.retry.max_attempts, 8);
}

#[test]
fn unknown_keys_in_a_section_are_still_refused() {
    let error = config_error(load(&format!("{REQUIRED}[retry]\nmax_atempts = 3\n"), &[]));
    assert!(error.contains("max_atempts"), "{error}");
}

#[test]
fn the_shipped_route_worker_toml_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    let settings = WorkerSettings::load_with_env(&dir, Some(config::Map::new())).unwrap();
    assert_eq!(settings.server.url, "https://localhost:8443");
    assert_eq!(settings.tls.ca_file, Path::new(".dev-pki/ca.pem"));
    assert_eq!(settings.telemetry.format, LogFormat::Pretty);
}

#[test]
fn empty_paths_from_the_environment_mean_unset() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("route-worker.toml"),
        "[server]\nurl = 'https://localhost:1'\n[tls]\nca_file = 'ca.pem'\ncert_file = ''\nkey_file = ''\n[auth]\napi_key_file = ''\n",
    )
    .unwrap();
    let settings = WorkerSettings::load(dir.path()).unwrap();
    assert!(settings.tls.cert_file.is_none() && settings.tls.key_file.is_none());
    assert!(settings.auth.api_key_file.is_none());
}

#[test]
fn the_api_key_is_never_shown_by_debug() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("key"), "dk_supersecretvalue\n").unwrap();
    std::fs::write(
        dir.path().join("route-worker.toml"),
        format!("[server]\nurl = 'https://localhost:1'\n[tls]\nca_file = 'ca.pem'\n[auth]\napi_key_file = '{}'\n", dir.path().join("key").display()),
    )
    .unwrap();
    let settings = WorkerSettings::load(dir.path()).unwrap();
    let key = settings.api_key().unwrap().unwrap();
    assert!(!format!("{settings:?} {key:?}").contains("supersecret"));
}

#[test]
fn a_replaced_api_key_file_is_sent_from_the_next_request_and_a_broken_one_keeps_the_key() {
    use secrecy::ExposeSecret;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key");
    std::fs::write(&path, "dk_old\n").unwrap();
    let file = ApiKeyFile::open(&path).unwrap();
    assert_eq!(file.current().expose_secret(), "dk_old");
    // Replaced in place (a new file renamed over it, as a secrets agent does).
    std::fs::write(dir.path().join("key.new"), "dk_rotated_key\n").unwrap();
    std::fs::rename(dir.path().join("key.new"), &path).unwrap();
    assert_eq!(file.current().expose_secret(), "dk_rotated_key");
    // Emptied, then gone: the key in use stays.
    std::fs::write(&path, "").unwrap();
    assert_eq!(file.current().expose_secret(), "dk_rotated_key");
    std::fs::remove_file(&path).unwrap();
    assert_eq!(file.current().expose_secret(), "dk_rotated_key");
    // Back, with a third key.
    std::fs::write(&path, "dk_third\n").unwrap();
    assert_eq!(file.current().expose_secret(), "dk_third");
}

#[test]
fn an_api_key_file_that_cannot_be_read_at_start_is_a_configuration_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing");
    let error = ApiKeyFile::open(&path).err().expect("no such file");
    assert!(error.to_string().contains("missing"), "{error}");
    std::fs::write(&path, "  \n").unwrap();
    let error = ApiKeyFile::open(&path).err().expect("empty");
    assert!(error.to_string().contains("is empty"), "{error}");
}

const ACME: &str = "[tls.acme]\ndirectory_url = 'https://ca.internal:9000/acme/directory'\n\
                    ca_file = 'acme-root.pem'\ndns_names = ['worker.dispatch.internal']\n\
                    state_dir = '/var/lib/route-worker/acme'\n";

#[test]
fn acme_takes_the_identity_and_defaults_its_listener_and_renewal() {
    let settings = load(&format!("{REQUIRED}{ACME}"), &[]).unwrap();
    let acme = settings.tls.acme.as_ref().unwrap();
    assert_eq!(acme.http01_listen, "0.0.0.0:80");
    assert_eq!(acme.renew_before_secs, 0);
    let identity = Path::new("/var/lib/route-worker/acme/identity.pem");
    assert_eq!(settings.tls.cert_file.as_deref(), Some(identity));
    assert_eq!(settings.tls.key_file.as_deref(), Some(identity));
    // ACME warns when it cannot renew; the fixed window would warn at every renewal.
    assert_eq!(settings.tls.expiry_warning_days, 0);
}

#[test]
fn acme_is_set_from_the_environment_with_names_separated_by_commas() {
    let settings = load(
        REQUIRED,
        &[
            (
                "ROUTE_WORKER_TLS__ACME__DIRECTORY_URL",
                "https://ca:14000/dir",
            ),
            ("ROUTE_WORKER_TLS__ACME__CA_FILE", "/run/acme-root.pem"),
            ("ROUTE_WORKER_TLS__ACME__DNS_NAMES", "a.internal,b.internal"),
            ("ROUTE_WORKER_TLS__ACME__HTTP01_LISTEN", "127.0.0.1:5002"),
            ("ROUTE_WORKER_TLS__ACME__STATE_DIR", "/state"),
        ],
    )
    .unwrap();
    let acme = settings.tls.acme.unwrap();
    assert_eq!(acme.dns_names, ["a.internal", "b.internal"]);
    assert_eq!(acme.http01_listen, "127.0.0.1:5002");
    assert_eq!(acme.ca_file, Path::new("/run/acme-root.pem"));
}

#[test]
fn acme_without_a_required_key_is_refused_naming_it() {
    for key in ["directory_url", "ca_file", "dns_names", "state_dir"] {
        let partial: String = ACME
            .lines()
            .filter(|line| !line.starts_with(key))
            .map(|line| format!("{line}\n"))
            .collect();
        let error = config_error(load(&format!("{REQUIRED}{partial}"), &[]));
        assert!(
            error.contains(&format!("tls.acme.{key} is required")),
            "{key}: {error}"
        );
    }
}

#[test]
fn acme_refuses_plain_http_wildcards_certificate_files_beside_it_and_no_reloading() {
    let plain = ACME.replace("https://ca.internal", "http://ca.internal");
    assert!(config_error(load(&format!("{REQUIRED}{plain}"), &[])).contains("must be https://"));
    let wildcard = ACME.replace("'worker.dispatch.internal'", "'*.dispatch.internal'");
    assert!(config_error(load(&format!("{REQUIRED}{wildcard}"), &[])).contains("no wildcards"));
    let both = format!("{REQUIRED}cert_file = 'w.pem'\nkey_file = 'w.key'\n{ACME}");
    assert!(config_error(load(&both, &[])).contains("leave tls.cert_file"));
    let never_reloaded = format!("{REQUIRED}reload_interval_secs = 0\n{ACME}");
    assert!(config_error(load(&never_reloaded, &[])).contains("must not be 0"));
}
