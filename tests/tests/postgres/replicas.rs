//! Two dispatch-api replicas on one PostgreSQL database, as behind a TCP load balancer: what
//! one replica is told, the other acts on.

use std::time::{Duration, Instant};

use e2e::app::{PreparedApp, TestApp, plan, submit};
use e2e::http::Request;
use e2e::postgres::TestPostgres;
use serde_json::json;

/// How soon a change made through one replica must be acted on by the other.
const PROPAGATION: Duration = Duration::from_secs(1);

async fn two_replicas(server: &TestPostgres) -> (TestApp, TestApp) {
    let prepared = PreparedApp::new().on_postgres(server);
    let b = prepared.replica();
    (prepared.start().await, b.start().await)
}

/// Registering `copycat` through `app`, a CN binding that also names route-worker's
/// certificate (bound by its SPIFFE ID), is 409 naming that certificate.
async fn copycat_is_refused_through(app: &TestApp, worker: &e2e::Identity) {
    let copycat = json!({
        "name": "copycat",
        "mode": "dual",
        "scopes": ["plans:submit"],
        "bindings": [{ "issuer": "CN=Dispatch Dev Internal CA, O=Dispatch Dev", "subject_cn": "route-worker" }],
        "reason": "a new worker",
    });
    let response = app
        .admin(Request::post("/admin/clients").json(&copycat))
        .await;
    response.assert_problem(409, "binding-conflict");
    assert!(
        response.text().contains(&worker.fingerprint),
        "{}",
        response.text()
    );
}

/// Sends `request` on `connection` (one keep-alive connection) until the answer's status is
/// `status`; returns how long that took, or panics past twice the allowed propagation time.
async fn until_status(
    connection: &mut e2e::http::Connection,
    request: &Request,
    status: u16,
) -> Duration {
    let start = Instant::now();
    loop {
        let response = connection.send(request.clone()).await.unwrap();
        if response.status == status {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < 2 * PROPAGATION,
            "still {} after {:?}: {}",
            response.status,
            start.elapsed(),
            response.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_flip_through_one_replica_refuses_the_key_on_the_others_open_connection_within_a_second()
{
    let server = TestPostgres::start();
    let (a, b) = two_replicas(&server).await;
    let request = submit(&plan("r-1", 1)).api_key(b.key("route-worker"));
    let mut on_b = b.connect(None).await.unwrap();
    assert_eq!(on_b.send(request.clone()).await.unwrap().status, 202);
    // The certificate evidence the flip needs, through A.
    let worker = a.pki.workload("route-worker");
    assert_eq!(
        a.request(Some(&worker), submit(&plan("r-2", 1)))
            .await
            .unwrap()
            .status,
        202
    );
    let flip = json!({ "mode": "mtls", "reason": "certificate deployed" });
    let response = a
        .admin(Request::put("/admin/clients/route-worker/mode").json(&flip))
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let took = until_status(&mut on_b, &request, 401).await;
    assert!(took < PROPAGATION, "B refused the key after {took:?}");
    let client = b.admin(Request::get("/admin/clients/route-worker")).await;
    assert_eq!(client.json()["mode"], "mtls");
}

#[tokio::test]
async fn a_revocation_through_one_replica_refuses_the_certificate_on_the_other_within_a_second() {
    let server = TestPostgres::start();
    let (a, b) = two_replicas(&server).await;
    let worker = a.pki.workload("route-worker");
    let mut on_a = a.connect(Some(&worker)).await.unwrap();
    let request = Request::get("/api/whoami");
    assert_eq!(on_a.send(request.clone()).await.unwrap().status, 200);
    let revoke = json!({ "fingerprint": worker.fingerprint, "reason": "laptop stolen" });
    let response = b
        .admin(Request::post("/admin/revocations").json(&revoke))
        .await;
    assert_eq!(response.status, 201, "{}", response.text());
    let took = until_status(&mut on_a, &request, 401).await;
    assert!(
        took < PROPAGATION,
        "A refused the certificate after {took:?}"
    );
}

#[tokio::test]
async fn a_new_api_key_set_through_one_replica_is_accepted_by_the_other_and_the_old_refused() {
    let server = TestPostgres::start();
    let (a, b) = two_replicas(&server).await;
    let response = a
        .admin(
            Request::post("/admin/clients/key-only/api-key")
                .json(&json!({ "reason": "rotation", "overlap_secs": 0 })),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let new_key = response.json()["api_key"].as_str().unwrap().to_owned();
    let mut on_b = b.connect(None).await.unwrap();
    let with_new = submit(&plan("r-1", 1)).api_key(&new_key);
    let took = until_status(&mut on_b, &with_new, 202).await;
    assert!(took < PROPAGATION, "B took the new key after {took:?}");
    let with_old = submit(&plan("r-2", 1)).api_key(b.key("key-only"));
    assert_eq!(on_b.send(with_old).await.unwrap().status, 401);
}

#[tokio::test]
async fn the_same_idempotency_key_sent_to_two_replicas_at_once_is_stored_once() {
    let server = TestPostgres::start();
    let (a, b) = two_replicas(&server).await;
    for attempt in 0..20 {
        let request = submit(&plan(&format!("r-{attempt}"), 2))
            .header("Idempotency-Key", &format!("plan-{attempt}"))
            .api_key(a.key("route-worker"));
        let (on_a, on_b) = tokio::join!(
            a.request(None, request.clone()),
            b.request(None, request.clone())
        );
        let (on_a, on_b) = (on_a.unwrap(), on_b.unwrap());
        assert_eq!((on_a.status, on_b.status), (202, 202), "{}", on_b.text());
        assert_eq!(on_a.json()["id"], on_b.json()["id"], "attempt {attempt}");
        let replays = [&on_a, &on_b]
            .iter()
            .filter(|r| r.json()["replayed"] == true)
            .count();
        assert_eq!(replays, 1, "one stored, one replayed: attempt {attempt}");
    }
    assert_eq!(a.plan_count().await, 20);
}

#[tokio::test]
async fn a_plan_stored_through_one_replica_is_read_through_the_other() {
    let server = TestPostgres::start();
    let (a, b) = two_replicas(&server).await;
    let key = a.key("route-worker");
    let stored = a
        .request(None, submit(&plan("r-1", 3)).api_key(key))
        .await
        .unwrap();
    assert_eq!(stored.status, 202);
    let id = stored.json()["id"].as_str().unwrap().to_owned();
    let read = b
        .request(
            None,
            Request::get(&format!("/api/dispatch-plans/{id}")).api_key(key),
        )
        .await
        .unwrap();
    assert_eq!(read.status, 200, "{}", read.text());
    assert_eq!(read.json()["plan"]["route_id"], "r-1");
}

#[tokio::test]
async fn usage_through_both_replicas_adds_up_in_the_migration_report() {
    let server = TestPostgres::start();
    let (a, b) = two_replicas(&server).await;
    let key = a.key("route-worker");
    for app in [&a, &a, &b] {
        let response = app
            .request(None, submit(&plan("r-1", 1)).api_key(key))
            .await
            .unwrap();
        assert_eq!(response.status, 202);
    }
    // Each replica's report flushes only its own buffer: flush B's first.
    b.state.recorder.flush().await;
    let row = a.migration_row("route-worker").await;
    assert_eq!(row["usage"]["api_key"]["requests_in_window"], 3, "{row}");
}

#[tokio::test]
async fn a_change_whose_notice_was_lost_is_read_at_the_version_check() {
    let server = TestPostgres::start();
    let (a, b) = two_replicas(&server).await;
    // B's follower is listening (it heard this), so only its version check can catch what follows.
    let disable = json!({ "disabled": true, "reason": "before the silent change" });
    a.admin(Request::put("/admin/clients/key-only/disabled").json(&disable))
        .await;
    let mut on_b = b.connect(None).await.unwrap();
    let keyed = submit(&plan("r-0", 1)).api_key(b.key("key-only"));
    until_status(&mut on_b, &keyed, 403).await;
    let request = submit(&plan("r-1", 1)).api_key(b.key("route-worker"));
    assert_eq!(on_b.send(request.clone()).await.unwrap().status, 202);
    // A change stored with its version bumped but no NOTIFY: as if the notice were lost.
    let pool = sqlx::PgPool::connect(&server.url()).await.unwrap();
    for statement in [
        "UPDATE clients SET mode = 'mtls' WHERE name = 'route-worker'",
        "UPDATE registry_version SET version = version + 1",
    ] {
        sqlx::query(statement).execute(&pool).await.unwrap();
    }
    // Two checks 2 s apart: seen unheard at one, read in full at the next.
    let start = Instant::now();
    loop {
        let response = on_b.send(request.clone()).await.unwrap();
        if response.status == 401 {
            break;
        }
        assert_eq!(response.status, 202);
        assert!(
            start.elapsed() < Duration::from_secs(8),
            "B never read the change"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn disabling_a_client_through_one_replica_refuses_it_on_the_other_within_a_second() {
    let server = TestPostgres::start();
    let (a, b) = two_replicas(&server).await;
    let request = submit(&plan("r-1", 1)).api_key(b.key("key-only"));
    let mut on_b = b.connect(None).await.unwrap();
    assert_eq!(on_b.send(request.clone()).await.unwrap().status, 202);
    let disable = json!({ "disabled": true, "reason": "incident" });
    let response = a
        .admin(Request::put("/admin/clients/key-only/disabled").json(&disable))
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let took = until_status(&mut on_b, &request, 403).await;
    assert!(took < PROPAGATION, "B refused the client after {took:?}");
}

#[tokio::test]
async fn a_binding_changed_through_one_replica_stops_naming_the_certificate_on_the_other_within_a_second()
 {
    let server = TestPostgres::start();
    let (a, b) = two_replicas(&server).await;
    let worker = b.pki.workload("route-worker");
    let mut on_b = b.connect(Some(&worker)).await.unwrap();
    let request = Request::get("/api/whoami");
    let named = on_b.send(request.clone()).await.unwrap();
    assert_eq!(named.json()["client"], "route-worker");
    // It no longer names the certificate route-worker showed B: forced, as a client about to
    // get a new certificate is (unforced, a replica that has seen B's usage refuses it).
    let rebind = json!({
        "bindings": [{ "issuer": "CN=Dispatch Dev Internal CA, O=Dispatch Dev", "subject_cn": "route-worker-2" }],
        "reason": "new certificate naming",
        "force": true,
    });
    let response = a
        .admin(Request::put("/admin/clients/route-worker/bindings").json(&rebind))
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let took = until_status(&mut on_b, &request, 401).await;
    assert!(took < PROPAGATION, "B stopped naming it after {took:?}");
}

#[tokio::test]
async fn the_same_idempotency_key_sent_twice_at_once_to_one_replica_is_stored_once() {
    let server = TestPostgres::start();
    let (a, _b) = two_replicas(&server).await;
    // Both may land in one group commit: one statement inserts the first and skips the second.
    for attempt in 0..20 {
        let request = submit(&plan(&format!("r-{attempt}"), 2))
            .header("Idempotency-Key", &format!("twice-{attempt}"))
            .api_key(a.key("route-worker"));
        let (first, second) = tokio::join!(
            a.request(None, request.clone()),
            a.request(None, request.clone())
        );
        let (first, second) = (first.unwrap(), second.unwrap());
        assert_eq!((first.status, second.status), (202, 202));
        assert_eq!(first.json()["id"], second.json()["id"], "attempt {attempt}");
    }
    assert_eq!(a.plan_count().await, 20);
}

#[tokio::test]
async fn a_registration_through_one_replica_cannot_capture_a_certificate_live_on_the_other() {
    let server = TestPostgres::start();
    let (a, b) = two_replicas(&server).await;
    // route-worker (bound by its SPIFFE ID) shows its certificate, which carries the CN
    // `route-worker` too, to A only.
    let worker = a.pki.workload("route-worker");
    let mut on_a = a.connect(Some(&worker)).await.unwrap();
    let whoami = Request::get("/api/whoami");
    assert_eq!(on_a.send(whoami.clone()).await.unwrap().status, 200);
    a.state.recorder.flush().await;
    copycat_is_refused_through(&b, &worker).await;
    // The same through B's rebinding of another client.
    let rebind = json!({
        "bindings": [{ "issuer": "CN=Dispatch Dev Internal CA, O=Dispatch Dev", "subject_cn": "route-worker" }],
        "reason": "typo",
        "force": true,
    });
    b.admin(Request::put("/admin/clients/key-only/bindings").json(&rebind))
        .await
        .assert_problem(409, "binding-conflict");
    assert_eq!(on_a.send(whoami).await.unwrap().status, 200);
}

#[tokio::test]
async fn two_replicas_replacing_one_clients_bindings_at_once_end_with_one_set() {
    let server = TestPostgres::start();
    let (a, b) = two_replicas(&server).await;
    let db = sqlx::PgPool::connect(&server.url()).await.unwrap();
    let rebind = |cn: String| {
        Request::put("/admin/clients/key-only/bindings").json(&json!({
            "bindings": [{ "issuer": "CN=Dispatch Dev Internal CA, O=Dispatch Dev", "subject_cn": cn }],
            "reason": "a race",
        }))
    };
    // Without a lock on the client's row, READ COMMITTED lets both DELETEs run before either
    // INSERT commits: the union of both sets. A few rounds make that race likely.
    for round in 0..12 {
        let (on_a, on_b) = tokio::join!(
            a.admin(rebind(format!("race-a-{round}"))),
            b.admin(rebind(format!("race-b-{round}")))
        );
        assert_eq!(on_a.status, 200, "{}", on_a.text());
        assert_eq!(on_b.status, 200, "{}", on_b.text());
        let stored: Vec<String> =
            sqlx::query_scalar("SELECT subject_cn FROM cert_bindings WHERE client = 'key-only'")
                .fetch_all(&db)
                .await
                .unwrap();
        assert_eq!(stored.len(), 1, "round {round}: {stored:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guarded_flip_counts_the_refusals_of_both_replicas_and_is_reverted_once() {
    let server = TestPostgres::start();
    let (a, b) = two_replicas(&server).await;
    // The key in use from 127.0.0.0/24 before the flip, through replica b: the evidence a guard
    // started on a reads.
    let used = b
        .request(
            None,
            submit(&plan("before", 1)).api_key(b.key("route-worker")),
        )
        .await
        .unwrap();
    assert_eq!(used.status, 202);
    b.audit(Some("route-worker")).await;
    let flipped = a
        .admin(
            Request::put("/admin/clients/route-worker/mode").json(&json!({
                "mode": "mtls", "reason": "cutover", "force": true,
                "guard": { "watch_secs": 600, "max_refusals": 4 },
            })),
        )
        .await;
    assert_eq!(flipped.status, 200, "{}", flipped.text());
    // Each replica sees two refusals: neither alone reaches four.
    for (replica, name) in [(&a, "a"), (&b, "b")] {
        let mut connection = replica.connect(None).await.unwrap();
        let key = replica.key("route-worker");
        let refused =
            until_status(&mut connection, &submit(&plan(name, 1)).api_key(key), 401).await;
        assert!(refused < PROPAGATION * 5);
        let again = connection
            .send(submit(&plan(&format!("{name}-2"), 1)).api_key(key))
            .await
            .unwrap();
        assert_eq!(again.status, 401);
    }
    // Reverted (the key requests below would be refused, and counted, until then)...
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.migration_row("route-worker").await["guard"]["state"] != "reverted" {
        assert!(Instant::now() < deadline, "never reverted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // ...for 127.0.0.0/24 on both replicas: the key is accepted again from there, while the
    // mode the operator set stands.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut attempt = 0;
    loop {
        let (on_a, on_b) = (
            a.migration_row("route-worker").await,
            b.migration_row("route-worker").await,
        );
        let mut accepted = 0;
        for replica in [&a, &b] {
            attempt += 1;
            let answer = replica
                .request(
                    None,
                    submit(&plan(&format!("after-{attempt}"), 1))
                        .api_key(replica.key("route-worker")),
                )
                .await
                .unwrap();
            accepted += usize::from(answer.status == 202);
        }
        if on_a["guard"]["state"] == "reverted" && accepted == 2 {
            assert_eq!(on_a["guard"]["refusals"], 4);
            assert_eq!(
                (&on_a["mode"], &on_b["mode"]),
                (&json!("mtls"), &json!("mtls"))
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not reverted on both: {on_a} / {on_b}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reverted = a
        .audit(Some("route-worker"))
        .await
        .into_iter()
        .filter(|e| e["reason"] == "mode_reverted")
        .count();
    assert_eq!(reverted, 1, "exactly one replica reverted the flip");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_compromise_in_a_crl_denies_the_key_on_both_replicas_for_its_renewal_too() {
    use e2e::devpki::openssl::{CrlSpec, OpensslCa};
    let server = TestPostgres::start();
    let mut prepared = PreparedApp::new().on_postgres(&server);
    let root = OpensslCa::root(prepared.dir(), "/O=Acme/CN=Acme Root");
    let stolen = root.client("/O=Acme/CN=acme-a", "");
    let renewed = root.renewed_client(&stolen, "/O=Acme/CN=acme-a", "");
    let bundle = prepared.dir().join("bundle-with-acme.pem");
    let pem = std::fs::read_to_string(&prepared.pki.client_ca_bundle).unwrap() + &root.cert_pem();
    std::fs::write(&bundle, pem).unwrap();
    prepared.settings.tls.client_ca_file = bundle;
    let crls = prepared.dir().join("root.crl.pem");
    let empty = root.crl(&CrlSpec {
        number: 1,
        ..CrlSpec::default()
    });
    std::fs::write(&crls, empty).unwrap();
    prepared.settings.tls.crl_files = vec![crls.clone()];
    let b = prepared.replica();
    let (a, b) = (prepared.start().await, b.start().await);
    let registered = a
        .admin(Request::post("/admin/clients").json(&json!({
            "name": "acme-a",
            "mode": "mtls",
            "scopes": ["plans:submit"],
            "bindings": [{ "issuer": "O=Acme, CN=Acme Root", "subject_cn": "acme-a" }],
            "reason": "a client of another CA",
        })))
        .await;
    assert_eq!(registered.status, 201, "{}", registered.text());
    // The certificate was presented to replica A while good; the renewal of its key is in use
    // on replica B.
    let stolen_id = e2e::identity_from_files(&stolen.cert_path, &stolen.key_path);
    let renewed_id = e2e::identity_from_files(&renewed.cert_path, &renewed.key_path);
    let whoami = Request::get("/api/whoami");
    let seen = a.request(Some(&stolen_id), whoami.clone()).await.unwrap();
    assert_eq!(seen.status, 200, "{}", seen.text());
    a.audit(None).await;
    let mut on_b = b.connect(Some(&renewed_id)).await.unwrap();
    assert_eq!(on_b.send(whoami.clone()).await.unwrap().status, 200);
    let revoking = root.crl(&CrlSpec {
        revoked: vec![(&stolen, "keyCompromise")],
        number: 2,
        ..CrlSpec::default()
    });
    e2e::replace_file(&crls, revoking.as_bytes());
    // Both replicas reload the CRL (polled) and find the key; B refuses the renewal on its
    // open connection.
    let deadline = Instant::now() + Duration::from_secs(15);
    let refused = loop {
        let response = on_b.send(whoami.clone()).await.unwrap();
        if response.status == 401 {
            break response;
        }
        assert!(Instant::now() < deadline, "{}", response.text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(refused.json()["reason"], "cert_revoked");
    let renewed_on_a = a.request(Some(&renewed_id), whoami).await.unwrap();
    assert_eq!(renewed_on_a.json()["reason"], "cert_revoked");
    // One row, however many replicas found it.
    let list = a.admin(Request::get("/admin/revocations")).await.json();
    let keys = list["revocations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry.get("spki_sha256").is_some())
        .count();
    assert_eq!(keys, 1, "{list}");
}

#[tokio::test]
async fn a_certificate_refused_for_its_clients_mode_on_one_replica_cannot_be_captured_through_the_other_past_the_window()
 {
    let server = TestPostgres::start();
    let (a, b) = two_replicas(&server).await;
    let flip = json!({ "mode": "api_key", "reason": "certificates on hold", "force": true });
    let flipped = a
        .admin(Request::put("/admin/clients/route-worker/mode").json(&flip))
        .await;
    assert_eq!(flipped.status, 200, "{}", flipped.text());
    // Refused on A for its client's mode: still route-worker's certificate.
    let worker = a.pki.workload("route-worker");
    let refused = a
        .request(Some(&worker), Request::get("/api/whoami"))
        .await
        .unwrap();
    assert_eq!(refused.json()["reason"], "method_not_allowed");
    a.state.recorder.flush().await;
    // Last presented a month ago, valid still (a weekly job's).
    let month_ago = time::OffsetDateTime::now_utc().unix_timestamp() - 30 * 86_400;
    let dispatch_api::storage::Backend::Postgres(pool) = &a.state.pool else {
        unreachable!("on PostgreSQL");
    };
    let moved = sqlx::query(
        "UPDATE presented_certificates SET last_seen = $1 WHERE client = 'route-worker'",
    )
    .bind(month_ago)
    .execute(pool)
    .await
    .unwrap();
    assert_eq!(moved.rows_affected(), 1);
    copycat_is_refused_through(&b, &worker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_each_disabling_one_of_two_admins_at_once_never_lock_the_operator_out() {
    let server = TestPostgres::start();
    let (a, b) = two_replicas(&server).await;
    let deputy = json!({
        "name": "deputy",
        "mode": "mtls",
        "scopes": ["admin"],
        "bindings": [{ "issuer": "CN=Dispatch Dev Internal CA, O=Dispatch Dev", "subject_cn": "deputy" }],
        "reason": "a second operator",
    });
    let registered = a.admin(Request::post("/admin/clients").json(&deputy)).await;
    assert_eq!(registered.status, 201, "{}", registered.text());
    let deputy_id = b.pki.workload("deputy");
    // B knows the deputy (and serves it) before the race starts.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answer = b
            .request(Some(&deputy_id), Request::get("/admin/clients"))
            .await
            .unwrap();
        if answer.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "{}", answer.text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Each replica alone would allow its change: the other admin is still there. Together
    // they would leave nobody.
    let disable = |client: &str| {
        Request::put(&format!("/admin/clients/{client}/disabled"))
            .json(&json!({ "disabled": true, "reason": "handing over" }))
    };
    let (on_a, on_b) = tokio::join!(
        a.request(Some(&a.operator), disable("deputy")),
        b.request(Some(&deputy_id), disable("operator")),
    );
    let (on_a, on_b) = (on_a.unwrap(), on_b.unwrap());
    assert!(
        !(on_a.status == 200 && on_b.status == 200),
        "both passed: {} / {}",
        on_a.text(),
        on_b.text()
    );
    // Exactly one of the two still administers, through either replica (once both replicas
    // heard the change that passed).
    let deadline = Instant::now() + 2 * PROPAGATION;
    loop {
        let mut admins = 0;
        for app in [&a, &b] {
            for id in [&a.operator, &deputy_id] {
                let answer = app
                    .request(Some(id), Request::get("/admin/clients"))
                    .await
                    .unwrap();
                admins += usize::from(answer.status == 200);
            }
        }
        if admins == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{admins} of 4 admin answers: A: {} / B: {}",
            on_a.text(),
            on_b.text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
