//! The shipped alert rules and dashboard: the rules pass promtool's own unit tests, and every
//! metric the rules and the dashboard query is one the server really exports.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use e2e::{Request, plan, spawn_app, submit};

fn ops_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops")
}

fn promtool(args: &[&str]) -> std::process::Output {
    std::process::Command::new("promtool")
        .args(args)
        .current_dir(ops_dir().join("prometheus"))
        .output()
        .expect("promtool runs (CI installs Debian's prometheus package)")
}

#[test]
fn the_alert_rules_pass_promtool_check_and_their_unit_tests() {
    for args in [
        &["check", "rules", "alerts.yml"][..],
        &["test", "rules", "alerts.test.yml"][..],
    ] {
        let output = promtool(args);
        assert!(
            output.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Every `dispatch_...` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("dispatch_") {
        let start = i + at;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(text.len(), |n| start + n);
        if boundary {
            names.insert(text[start..end].to_owned());
        }
        i = end;
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_alerts_and_the_dashboard_query_is_exported_by_the_server() {
    let app = spawn_app().await;
    // Traffic that makes every family appear: a plan, a refusal, a refused handshake, a key
    // with a lifetime, a client certificate.
    let rotated = app
        .admin(
            Request::post("/admin/clients/key-only/api-key")
                .json(&serde_json::json!({ "reason": "yearly", "expires_in_secs": 86_400 })),
        )
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.text());
    let key = app.key("route-worker").to_owned();
    assert_eq!(
        app.request(None, submit(&plan("metrics", 1)).api_key(&key))
            .await
            .unwrap()
            .status,
        202
    );
    let anonymous = app
        .request(None, Request::get("/api/whoami"))
        .await
        .unwrap();
    assert_eq!(anonymous.status, 401);
    let stranger = app.pki.issue(
        &app.pki.untrusted_ca,
        &e2e::devpki::LeafSpec::workload("stranger", time::Duration::hours(1)),
    );
    assert!(
        app.request(Some(&stranger), Request::get("/api/whoami"))
            .await
            .is_err()
    );
    // A client certificate: its renewal health (written with the usage, flushed here).
    let worker = app.pki.workload("route-worker");
    let whoami = app
        .request(Some(&worker), Request::get("/api/whoami"))
        .await
        .unwrap();
    assert_eq!(whoami.status, 200, "{}", whoami.text());
    app.state.recorder.flush().await;
    let exported: BTreeSet<String> = app
        .ops_get("/metrics")
        .await
        .text()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect();
    let rules = std::fs::read_to_string(ops_dir().join("prometheus/alerts.yml")).unwrap();
    let dashboard =
        std::fs::read_to_string(ops_dir().join("grafana/dispatch-migration.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let expressions: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .collect();
    assert!(expressions.len() >= 5, "{expressions:?}");
    let mut queried = metric_names(&rules);
    for expression in &expressions {
        queried.extend(metric_names(expression));
    }
    assert!(queried.len() >= 5, "{queried:?}");
    let missing: Vec<&String> = queried.iter().filter(|m| !exported.contains(*m)).collect();
    assert!(
        missing.is_empty(),
        "queried but not exported: {missing:?}; exported: {exported:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operations_listener_serves_the_checked_in_openapi_document() {
    let app = spawn_app().await;
    let served = app.ops_get("/openapi.json").await;
    assert_eq!(served.status, 200);
    let checked_in = std::fs::read_to_string(ops_dir().join("../openapi.json")).unwrap();
    assert_eq!(served.text(), checked_in);
}

/// The nice value of each thread of this process (field 19 of `/proc/self/task/*/stat`).
fn thread_nice_values() -> Vec<i32> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("stat")).ok())
        .filter_map(|stat| {
            // The fields after the command name, which may hold spaces, in parentheses.
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            fields.get(16)?.parse().ok()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operations_listener_runs_on_a_thread_of_the_lowest_cpu_priority_and_the_rest_do_not() {
    let app = spawn_app().await;
    assert_eq!(app.ops_get("/healthz").await.status, 200);
    let nice = thread_nice_values();
    assert_eq!(
        nice.iter().filter(|n| **n == 19).count(),
        1,
        "one thread, the operations listener's: {nice:?}"
    );
    assert!(nice.iter().any(|n| *n != 19), "{nice:?}");
}
