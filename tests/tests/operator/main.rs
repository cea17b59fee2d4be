//! dispatchctl against the real server (in process, port 0, the generated PKI), as an operator
//! would drive it: the status table, each switch, keys, bindings, revocations, the audit log
//! and the preflight check; and that it never talks to a server it cannot verify.

mod docs;
mod observability;

use std::path::Path;

use e2e::{Request, TestApp, plan, spawn_app, submit};
use serde_json::Value;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs dispatchctl with the operator's certificate and the test CA, configured through the
/// environment as a deployment would.
async fn ctl(app: &TestApp, args: &[&str]) -> Run {
    ctl_with(app, &app.pki.ca_file, args).await
}

async fn ctl_with(app: &TestApp, ca: &Path, args: &[&str]) -> Run {
    let output = tokio::process::Command::new(e2e::process::binary("dispatchctl"))
        .args(args)
        .env(
            "DISPATCHCTL_SERVER__URL",
            format!("https://localhost:{}", app.https_port),
        )
        .env(
            "DISPATCHCTL_SERVER__OPS_URL",
            format!("http://127.0.0.1:{}", app.ops_port),
        )
        .env("DISPATCHCTL_TLS__CA_FILE", ca)
        .env("DISPATCHCTL_TLS__CERT_FILE", &app.operator.cert_file)
        .env("DISPATCHCTL_TLS__KEY_FILE", &app.operator.key_file)
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("dispatchctl runs (scripts/test builds it)");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_every_client_with_mode_key_use_and_why_it_is_not_ready() {
    let app = spawn_app().await;
    let key = app.key("route-worker").to_owned();
    assert_eq!(
        app.request(None, submit(&plan("by-key", 1)).api_key(&key))
            .await
            .unwrap()
            .status,
        202
    );
    let run = ctl(&app, &["status"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let row = run
        .stdout
        .lines()
        .find(|l| l.starts_with("route-worker "))
        .expect("a row per client");
    assert!(row.contains("dual"), "{row}");
    assert!(
        row.contains("no: no certificate-authenticated request"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("operator ") && l.ends_with("done"))
    );
    assert!(run.stdout.contains("not on mtls yet: "), "{}", run.stdout);

    let json = ctl(&app, &["status", "--json"]).await;
    assert_eq!(json.code, 0, "{}", json.stderr);
    let parsed: Value = serde_json::from_str(&json.stdout).unwrap();
    let worker = parsed["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "route-worker")
        .unwrap();
    assert_eq!(worker["key_requests"], 1);
    assert_eq!(worker["ready_for_mtls"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mode_flips_a_client_and_the_audit_log_shows_the_reason() {
    let app = spawn_app().await;
    let run = ctl(
        &app,
        &["mode", "key-only", "dual", "--reason", "certificate issued"],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout.trim(), "key-only: api_key -> dual");
    let audit = ctl(&app, &["audit", "--client", "key-only"]).await;
    assert_eq!(audit.code, 0, "{}", audit.stderr);
    let line = audit
        .stdout
        .lines()
        .find(|l| l.contains("mode_changed"))
        .expect("the change is in the audit log");
    assert!(line.contains("api_key -> dual"), "{line}");
    assert!(line.contains("note=\"certificate issued\""), "{line}");
    assert!(line.contains("actor=operator"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_change_prints_the_servers_reason_and_exits_3() {
    let app = spawn_app().await;
    let run = ctl(&app, &["mode", "no-scope", "mtls", "--reason", "too early"]).await;
    assert_eq!(run.code, 3, "{}", run.stdout);
    assert!(
        run.stderr.contains("409: migration-not-ready")
            && run.stderr.contains("no certificate-authenticated request"),
        "{}",
        run.stderr
    );
    let locked = ctl(&app, &["disable", "operator", "--reason", "oops"]).await;
    assert_eq!(locked.code, 3);
    assert!(
        locked.stderr.contains("409: last-admin"),
        "{}",
        locked.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_and_enable_switch_a_client_off_and_on() {
    let app = spawn_app().await;
    let key = app.key("key-only").to_owned();
    let run = ctl(&app, &["disable", "key-only", "--reason", "incident"]).await;
    assert_eq!((run.code, run.stdout.trim()), (0, "key-only: disabled"));
    let refused = app
        .request(None, Request::get("/api/whoami").api_key(&key))
        .await
        .unwrap();
    assert_eq!(refused.status, 403);
    let run = ctl(&app, &["enable", "key-only", "--reason", "resolved"]).await;
    assert_eq!((run.code, run.stdout.trim()), (0, "key-only: enabled"));
    let served = app
        .request(None, Request::get("/api/whoami").api_key(&key))
        .await
        .unwrap();
    assert_eq!(served.status, 200);
}

/// `dispatchctl key rotate key-only` with this `--overlap`: the new key, and the run.
async fn rotate_key_only(app: &TestApp, overlap: &str) -> (String, Run) {
    let args = [
        "key",
        "rotate",
        "key-only",
        "--reason",
        "yearly",
        "--overlap",
        overlap,
    ];
    let run = ctl(app, &args).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    (run.stdout.trim().to_owned(), run)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotate_prints_the_new_key_once_and_key_delete_retires_it() {
    let app = spawn_app().await;
    let (new_key, run) = rotate_key_only(&app, "0").await;
    assert!(new_key.starts_with("dk_"), "{new_key}");
    assert!(run.stderr.contains("shown once"));
    let served = app
        .request(None, Request::get("/api/whoami").api_key(&new_key))
        .await
        .unwrap();
    assert_eq!(served.status, 200);
    let old = app
        .request(
            None,
            Request::get("/api/whoami").api_key(app.key("key-only")),
        )
        .await
        .unwrap();
    assert_eq!(old.status, 401);
    let run = ctl(
        &app,
        &[
            "key",
            "delete",
            "key-only",
            "--reason",
            "on certificates now",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let gone = app
        .request(None, Request::get("/api/whoami").api_key(&new_key))
        .await
        .unwrap();
    assert_eq!(gone.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bindings_are_shown_and_replaced() {
    let app = spawn_app().await;
    let shown = ctl(&app, &["bindings", "key-only"]).await;
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    let bindings: Value = serde_json::from_str(&shown.stdout).unwrap();
    assert_eq!(bindings[0]["subject_cn"], "key-only");
    let set = r#"[{"issuer": "CN=Dispatch Dev Internal CA, O=Dispatch Dev", "subject_cn": "key-only-2"}]"#;
    let run = ctl(
        &app,
        &[
            "bindings",
            "key-only",
            "--set",
            set,
            "--reason",
            "new certificate name",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let replaced: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(replaced[0]["subject_cn"], "key-only-2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binding_that_would_capture_a_live_certificate_is_refused_naming_its_client_and_the_certificate()
 {
    let app = spawn_app().await;
    let worker = app.pki.workload("route-worker");
    let whoami = app
        .request(Some(&worker), e2e::Request::get("/api/whoami"))
        .await
        .unwrap();
    assert_eq!(whoami.status, 200);
    // route-worker is bound by its SPIFFE ID; its certificate carries the CN too.
    let set = r#"[{"issuer": "CN=Dispatch Dev Internal CA, O=Dispatch Dev", "subject_cn": "route-worker"}]"#;
    let run = ctl(
        &app,
        &[
            "bindings", "key-only", "--set", set, "--reason", "typo", "--force",
        ],
    )
    .await;
    assert_eq!(run.code, 3, "{}", run.stdout);
    for expected in [
        "409: binding-conflict",
        "`route-worker`",
        worker.fingerprint.as_str(),
        "cert_ambiguous",
    ] {
        assert!(run.stderr.contains(expected), "{expected}: {}", run.stderr);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_denies_a_certificate_on_its_next_request() {
    let app = spawn_app().await;
    let worker = app.pki.workload("route-worker");
    let run = ctl(
        &app,
        &["revoke", &worker.fingerprint, "--reason", "key leaked"],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let refused = app
        .request(Some(&worker), Request::get("/api/whoami"))
        .await
        .unwrap();
    assert_eq!(refused.status, 401);
    app.assert_last_refusal("cert_revoked").await;
    let listed = ctl(&app, &["revocations", "--json"]).await;
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    let listed: Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(listed["revocations"][0]["fingerprint"], worker.fingerprint);
    assert_eq!(listed["revocations"][0]["reason"], "key leaked");
    // Without --json, a table: a header, then the fingerprint with its reason on one line.
    let table = ctl(&app, &["revocations"]).await;
    assert_eq!(table.code, 0, "{}", table.stderr);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(lines[0].starts_with("FINGERPRINT"), "{}", table.stdout);
    assert!(
        lines[1].starts_with(&worker.fingerprint) && lines[1].ends_with("key leaked"),
        "{}",
        table.stdout
    );
}

/// `dispatchctl clients add NAME` in mode mtls with scope plans:submit, bound to the dev CA
/// and `name_flag` (`--cn X`, `--dns X`, ...): the registration's answer.
async fn add_mtls_client(app: &TestApp, name: &str, name_flag: [&str; 2]) -> Value {
    let mut args = vec![
        "clients",
        "add",
        name,
        "--mode",
        "mtls",
        "--scope",
        "plans:submit",
    ];
    args.extend(["--issuer", "CN=Dispatch Dev Internal CA, O=Dispatch Dev"]);
    args.extend(name_flag);
    args.extend(["--reason", "a new caller"]);
    let run = ctl(app, &args).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    serde_json::from_str(&run.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_add_binds_the_issuer_and_cn_given_as_flags_and_the_certificate_gets_in() {
    let app = spawn_app().await;
    let answer = add_mtls_client(&app, "billing", ["--cn", "billing"]).await;
    assert_eq!(
        answer["bindings"][0]["issuer"],
        "CN=Dispatch Dev Internal CA, O=Dispatch Dev"
    );
    assert_eq!(answer["bindings"][0]["subject_cn"], "billing");
    let certificate = app.pki.workload("billing");
    let whoami = app
        .request(Some(&certificate), Request::get("/api/whoami"))
        .await
        .unwrap();
    assert_eq!(whoami.json()["client"], "billing", "{}", whoami.text());
    // A CN without its issuer is refused before anything is sent (exit code 2).
    let refused = ctl(
        &app,
        &["clients", "add", "other", "--cn", "other", "--reason", "r"],
    )
    .await;
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("need --issuer"),
        "{}",
        refused.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_are_printed_for_bash_zsh_and_fish_without_a_server() {
    for shell in ["bash", "zsh", "fish"] {
        let output = tokio::process::Command::new(e2e::process::binary("dispatchctl"))
            .args(["completions", shell])
            .env_remove("DISPATCHCTL_SERVER__URL")
            .output()
            .await
            .expect("dispatchctl runs");
        assert!(output.status.success(), "{shell}: {output:?}");
        let script = String::from_utf8_lossy(&output.stdout);
        for word in ["dispatchctl", "revocations", "rotate"] {
            assert!(script.contains(word), "{shell}: no `{word}` in\n{script}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_adds_a_client_with_its_bindings_and_prints_an_issued_key_once() {
    let app = spawn_app().await;
    let binding =
        r#"{"issuer": "CN=Dispatch Dev Internal CA, O=Dispatch Dev", "subject_cn": "billing"}"#;
    let run = ctl(
        &app,
        &[
            "register",
            "billing",
            "--mode",
            "dual",
            "--scope",
            "plans:submit",
            "--binding",
            binding,
            "--issue-key",
            "--reason",
            "a new caller",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let answer: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(answer["mode"], "dual");
    assert_eq!(answer["bindings"][0]["subject_cn"], "billing");
    let key = answer["api_key"]
        .as_str()
        .expect("the key, once")
        .to_owned();
    // Both ways in work: the key, and a certificate the binding names.
    let whoami = app
        .request(None, Request::get("/api/whoami").api_key(&key))
        .await
        .unwrap();
    assert_eq!(whoami.json()["client"], "billing", "{}", whoami.text());
    let certificate = app.pki.workload("billing");
    let whoami = app
        .request(Some(&certificate), Request::get("/api/whoami"))
        .await
        .unwrap();
    assert_eq!(whoami.json()["client"], "billing", "{}", whoami.text());
    // A second registration of the name is refused with the server's reason.
    let again = ctl(&app, &["register", "billing", "--reason", "twice"]).await;
    assert_eq!(again.code, 3);
    assert!(
        again.stderr.contains("409: client-exists"),
        "{}",
        again.stderr
    );
    let malformed = ctl(
        &app,
        &["register", "x", "--binding", "{not json", "--reason", "r"],
    )
    .await;
    assert_eq!(malformed.code, 2, "{}", malformed.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_on_a_healthy_service_and_fails_naming_what_expires_within_the_window() {
    let app = spawn_app().await;
    // The test PKI's certificates live a day or two: with no warning window they pass...
    let run = ctl(&app, &["check", "--warning-days", "0"]).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("✓ the server certificate (CN=dispatch-api"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("✓ the recorder has dropped no"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.ends_with("all checks passed\n"),
        "{}",
        run.stdout
    );
    // ...and the default window of 14 days catches them.
    let strict = ctl(&app, &["check"]).await;
    assert_eq!(strict.code, 1, "{}", strict.stdout);
    assert!(
        strict.stdout.lines().any(
            |l| l.starts_with("✗ the server certificate (CN=dispatch-api")
                && l.contains("renew it")
        ),
        "{}",
        strict.stdout
    );
    // Before the switch to `required`: the migration must be complete.
    let required = ctl(&app, &["check", "--required", "--warning-days", "0"]).await;
    assert_eq!(required.code, 1, "{}", required.stdout);
    assert!(
        required
            .stdout
            .contains("✗ the listener cannot require certificates yet: not on mtls: "),
        "{}",
        required.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_the_configured_ca_did_not_sign_is_never_talked_to() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other-ca.pem");
    std::fs::write(&other, &app.pki.untrusted_ca.cert_pem).unwrap();
    let run = ctl_with(&app, &other, &["status"]).await;
    assert_eq!(run.code, 4, "{}", run.stdout);
    assert!(
        run.stderr.to_lowercase().contains("unknown issuer")
            || run.stderr.contains("UnknownIssuer"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_without_the_operators_certificate_are_refused_with_exit_code_2() {
    let app = spawn_app().await;
    let output = tokio::process::Command::new(e2e::process::binary("dispatchctl"))
        .arg("status")
        .env(
            "DISPATCHCTL_SERVER__URL",
            format!("https://localhost:{}", app.https_port),
        )
        .env("DISPATCHCTL_TLS__CA_FILE", &app.pki.ca_file)
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("tls.cert_file and tls.key_file"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_follow_prints_changes_as_they_happen() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let app = spawn_app().await;
    let mut follower = tokio::process::Command::new(e2e::process::binary("dispatchctl"))
        .args(["audit", "--follow"])
        .env(
            "DISPATCHCTL_SERVER__URL",
            format!("https://localhost:{}", app.https_port),
        )
        .env("DISPATCHCTL_TLS__CA_FILE", &app.pki.ca_file)
        .env("DISPATCHCTL_TLS__CERT_FILE", &app.operator.cert_file)
        .env("DISPATCHCTL_TLS__KEY_FILE", &app.operator.key_file)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follower.stdout.take().unwrap()).lines();
    // Once it is following, an operator changes something.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let run = ctl(
        &app,
        &["mode", "no-scope", "api_key", "--reason", "followed"],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let seen = tokio::time::timeout(std::time::Duration::from_secs(15), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("mode_changed") && line.contains("note=\"followed\"") {
                return line;
            }
        }
        panic!("the follower stopped")
    })
    .await
    .expect("the change is printed within 15 s");
    assert!(seen.contains("client=no-scope"), "{seen}");
    follower.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_revoke_ends_the_leaked_key_by_its_id_at_once_and_keeps_the_other() {
    let app = spawn_app().await;
    let (new_key, _) = rotate_key_only(&app, "1d").await;
    let list = ctl(&app, &["key", "list", "key-only"]).await;
    let old_line = list.stdout.lines().find(|l| l.contains("overlap")).unwrap();
    let old_id = old_line.split_whitespace().next().unwrap().to_owned();
    // Without the id, nothing is sent.
    let no_id = ctl(&app, &["key", "revoke", "key-only", "--reason", "leaked"]).await;
    assert_ne!(no_id.code, 0);
    assert!(
        no_id.stderr.contains("needs the key's id"),
        "{}",
        no_id.stderr
    );
    let run = ctl(
        &app,
        &["key", "revoke", "key-only", &old_id, "--reason", "leaked"],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains(&format!("API key {old_id} ended now")),
        "{}",
        run.stdout
    );
    let old = app
        .request(
            None,
            Request::get("/api/whoami").api_key(app.key("key-only")),
        )
        .await
        .unwrap();
    assert_eq!(old.json()["reason"], "key_expired");
    let served = app
        .request(None, Request::get("/api/whoami").api_key(&new_key))
        .await
        .unwrap();
    assert_eq!(served.status, 200);
    // An id that names no live key: the server's 404, exit code 3.
    let again = ctl(
        &app,
        &["key", "revoke", "key-only", &old_id, "--reason", "leaked"],
    )
    .await;
    assert_eq!(again.code, 3, "{}", again.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotate_with_an_overlap_keeps_the_old_key_and_key_list_shows_both() {
    let app = spawn_app().await;
    let (new_key, _) = rotate_key_only(&app, "1d").await;
    for key in [new_key.as_str(), app.key("key-only")] {
        let served = app
            .request(None, Request::get("/api/whoami").api_key(key))
            .await
            .unwrap();
        assert_eq!(served.status, 200);
    }
    let list = ctl(&app, &["key", "list", "key-only"]).await;
    assert_eq!(list.code, 0, "{}", list.stderr);
    let lines: Vec<&str> = list.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", list.stdout);
    assert!(lines[0].starts_with("ID"), "{}", list.stdout);
    assert!(lines[1].contains("current"), "{}", list.stdout);
    assert!(lines[2].contains("overlap"), "{}", list.stdout);
    assert!(!list.stdout.contains(&new_key));
    // A second rotation waits for the overlap: the server's reason, exit code 3.
    let again = ctl(&app, &["key", "rotate", "key-only", "--reason", "again"]).await;
    assert_eq!(again.code, 3, "{}", again.stderr);
    assert!(again.stderr.contains("two live keys"), "{}", again.stderr);
    // A duration dispatchctl cannot read is refused before anything is sent.
    let bad = ctl(
        &app,
        &[
            "key",
            "rotate",
            "key-only",
            "--reason",
            "x",
            "--overlap",
            "soon",
        ],
    )
    .await;
    assert_ne!(bad.code, 0);
    assert!(bad.stderr.contains("not a duration"), "{}", bad.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mode_with_a_guard_says_so_and_status_shows_the_guard_watching() {
    let app = spawn_app().await;
    let args = [
        "mode",
        "route-worker",
        "mtls",
        "--reason",
        "cutover",
        "--force",
        "--guard",
        "10m",
        "--max-refusals",
        "2",
    ];
    let run = ctl(&app, &args).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("route-worker: dual -> mtls"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("guarded: at 2 refusals it causes"),
        "{}",
        run.stdout
    );
    let status = ctl(&app, &["status"]).await;
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(
        status
            .stdout
            .contains("guard route-worker: dual -> mtls watching until")
            && status.stdout.contains("0 of 2 refusals"),
        "{}",
        status.stdout
    );
    // A guard needs its threshold.
    let half = ctl(
        &app,
        &[
            "mode",
            "route-worker",
            "dual",
            "--reason",
            "x",
            "--guard",
            "10m",
        ],
    )
    .await;
    assert_ne!(half.code, 0);
    assert!(half.stderr.contains("--max-refusals"), "{}", half.stderr);
}

/// A binding by DNS name (`clients add --dns`), as an ACME CA names a workload: a certificate
/// that carries that dNSName SAN, among others and in any case, gets in as the client, over
/// curl too; one that names the host only in its CN, or names another host, is `cert_unmapped`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_add_dns_binds_a_dns_name_and_a_certificate_carrying_it_gets_in_whatever_its_other_names()
 {
    let app = spawn_app().await;
    let answer = add_mtls_client(&app, "billing-job", ["--dns", "billing.dispatch.internal"]).await;
    assert_eq!(
        answer["bindings"][0]["dns_name"],
        "billing.dispatch.internal"
    );
    let issue = |cn: &str, names: &[&str]| {
        let mut spec = e2e::devpki::LeafSpec::workload(cn, time::Duration::hours(1));
        spec.dns_names = names.iter().map(|n| (*n).to_owned()).collect();
        app.pki.issue(&app.pki.ca, &spec)
    };
    let renewed = issue(
        "Billing.Dispatch.Internal",
        &["Billing.Dispatch.Internal", "billing-2.dispatch.internal"],
    );
    let whoami = app
        .request(Some(&renewed), Request::get("/api/whoami"))
        .await
        .unwrap();
    assert_eq!(whoami.json()["client"], "billing-job", "{}", whoami.text());
    let request = [e2e::stock::StockRequest::new(
        "GET",
        "/api/whoami",
        String::new(),
    )];
    let seen = e2e::stock::run(
        &app,
        e2e::stock::Client::CurlHttp2,
        Some(&renewed),
        &request,
    )
    .await;
    assert_eq!(seen[0].status, 200, "{seen:?}");
    for stranger in [
        issue("billing.dispatch.internal", &[]),
        issue(
            "x",
            &[
                "billing.dispatch.internal.evil",
                "evil.billing.dispatch.internal",
            ],
        ),
    ] {
        let refused = app
            .request(Some(&stranger), Request::get("/api/whoami"))
            .await
            .unwrap();
        assert_eq!(refused.status, 401, "{}", refused.text());
        assert_eq!(refused.json()["reason"], "cert_unmapped");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_status_catch_a_client_whose_newest_certificate_is_not_being_renewed() {
    let app = e2e::spawn_app_with(|settings| settings.migration.renewal_warning_secs = 600).await;
    // route-worker's only certificate has five minutes left, inside the ten-minute warning.
    let stale = app.pki.issue(
        &app.pki.ca,
        &e2e::devpki::LeafSpec::workload("route-worker", time::Duration::minutes(5)),
    );
    let seen = app
        .request(Some(&stale), Request::get("/api/whoami"))
        .await
        .unwrap();
    assert_eq!(seen.status, 200, "{}", seen.text());
    let run = ctl(&app, &["check", "--warning-days", "0"]).await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout.lines().any(
            |line| line.starts_with("✗ route-worker's newest certificate")
                && line.ends_with("no successor has been seen: its renewal has stopped")
        ),
        "{}",
        run.stdout
    );
    let status = ctl(&app, &["status"]).await;
    assert!(
        status.stdout.contains("renewal route-worker: NOT RENEWED"),
        "{}",
        status.stdout
    );
    // A successor from any instance: renewed, and the check passes again.
    let renewed = app.pki.workload("route-worker");
    let seen = app
        .request(Some(&renewed), Request::get("/api/whoami"))
        .await
        .unwrap();
    assert_eq!(seen.status, 200, "{}", seen.text());
    let run = ctl(&app, &["check", "--warning-days", "0"]).await;
    assert_eq!(run.code, 0, "{}", run.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_status_and_the_admin_answer_warn_of_a_fingerprint_pin_on_short_lived_certificates() {
    let app = spawn_app().await;
    // route-worker renews daily (as an internal ACME CA would have it), and is pinned to today's.
    let daily = app.pki.issue(
        &app.pki.ca,
        &e2e::devpki::LeafSpec::workload("route-worker", time::Duration::days(1)),
    );
    let seen = app
        .request(Some(&daily), Request::get("/api/whoami"))
        .await
        .unwrap();
    assert_eq!(seen.status, 200, "{}", seen.text());
    let bind = |fingerprints: Vec<&str>| {
        Request::put("/admin/clients/route-worker/bindings").json(&serde_json::json!({
            "bindings": [{
                "issuer": "CN=Dispatch Dev Internal CA, O=Dispatch Dev",
                "subject_cn": "route-worker",
                "fingerprints": fingerprints,
            }],
            "reason": "pin test",
        }))
    };
    let pinned = app.admin(bind(vec![&daily.fingerprint])).await;
    assert_eq!(pinned.status, 200, "{}", pinned.text());
    assert_eq!(
        pinned.json()["renewal"]["pin_breaks_at_renewal"],
        true,
        "the answer to the pin warns: {}",
        pinned.text()
    );
    let run = ctl(&app, &["check", "--warning-days", "0"]).await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout.lines().any(|line| line
            .starts_with("✗ route-worker pins certificate fingerprints but its certificates live")),
        "{}",
        run.stdout
    );
    let status = ctl(&app, &["status"]).await;
    assert!(
        status
            .stdout
            .contains("PINNED to fingerprints: its next renewal is refused"),
        "{}",
        status.stdout
    );
    // Beside a binding by name and issuer alone, which takes the renewals: no warning.
    let beside = app
        .admin(
            Request::put("/admin/clients/route-worker/bindings").json(&serde_json::json!({
                "bindings": [
                    {
                        "issuer": "CN=Dispatch Dev Internal CA, O=Dispatch Dev",
                        "subject_cn": "route-worker",
                        "fingerprints": [daily.fingerprint],
                    },
                    {
                        "issuer": "CN=Dispatch Dev Internal CA, O=Dispatch Dev",
                        "spiffe_id": "spiffe://dispatch.internal/route-worker",
                    },
                ],
                "reason": "pin test",
            })),
        )
        .await;
    assert_eq!(beside.status, 200, "{}", beside.text());
    assert_eq!(beside.json()["renewal"]["pin_breaks_at_renewal"], false);
    // Bound by name and issuer alone: renewals are this client's, and the check passes.
    let unpinned = app.admin(bind(vec![])).await;
    assert_eq!(unpinned.status, 200, "{}", unpinned.text());
    assert_eq!(unpinned.json()["renewal"]["pin_breaks_at_renewal"], false);
    let run = ctl(&app, &["check", "--warning-days", "0"]).await;
    assert_eq!(run.code, 0, "{}", run.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fingerprint_pin_on_long_lived_certificates_is_a_planned_rotation_and_not_warned_about() {
    let app = spawn_app().await;
    let yearly = app.pki.issue(
        &app.pki.ca,
        &e2e::devpki::LeafSpec::workload("route-worker", time::Duration::days(365)),
    );
    let seen = app
        .request(Some(&yearly), Request::get("/api/whoami"))
        .await
        .unwrap();
    assert_eq!(seen.status, 200, "{}", seen.text());
    let pinned = app
        .admin(
            Request::put("/admin/clients/route-worker/bindings").json(&serde_json::json!({
                "bindings": [{
                    "issuer": "CN=Dispatch Dev Internal CA, O=Dispatch Dev",
                    "subject_cn": "route-worker",
                    "fingerprints": [yearly.fingerprint],
                }],
                "reason": "pin test",
            })),
        )
        .await;
    assert_eq!(pinned.status, 200, "{}", pinned.text());
    assert_eq!(pinned.json()["renewal"]["pin_breaks_at_renewal"], false);
    let run = ctl(&app, &["check", "--warning-days", "0"]).await;
    assert_eq!(run.code, 0, "{}", run.stdout);
}
