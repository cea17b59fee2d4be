//! Trust at its edges, with certificates and CRLs made by openssl as a real CA's tooling makes
//! them: a delta CRL beside its base, a bundle holding a root and its issuing CA (the path ends
//! at the issuing CA), a root on the deny list, and a CA taken out of the bundle while its
//! clients' connections are open (HTTP/1.1 and HTTP/2); and a leaf bound by its dNSName.

use std::path::PathBuf;

use e2e::devpki::openssl::{CrlSpec, OpensslCa, OpensslCert, delta_of};
use e2e::devpki::{LeafSpec, Usage};
use e2e::http::connect_h2;
use e2e::{Identity, PreparedApp, Request, TestApp, replace_file};
use serde_json::json;
use time::Duration;

const RELOADED: &str = "dispatch_tls_reloads_total{outcome=\"ok\"}";

/// The test bundle (dev CA and partner CA) with these openssl CAs added, as the app's bundle.
fn bundle_with(prepared: &mut PreparedApp, cas: &[&OpensslCa]) -> PathBuf {
    let mut bundle = std::fs::read_to_string(&prepared.pki.client_ca_bundle).unwrap();
    for ca in cas {
        bundle.push_str(&ca.cert_pem());
    }
    let path = prepared.dir().join("bundle-with-acme.pem");
    std::fs::write(&path, bundle).unwrap();
    prepared.settings.tls.client_ca_file = path.clone();
    path
}

fn crl_file(prepared: &PreparedApp, name: &str, pem: &str) -> PathBuf {
    let path = prepared.dir().join(name);
    std::fs::write(&path, pem).unwrap();
    path
}

/// Registers `name` in mTLS mode, bound to its CN under the CA of this (openssl) subject.
async fn register(app: &TestApp, name: &str, issuer: &str) {
    let response = app
        .admin(Request::post("/admin/clients").json(&json!({
            "name": name,
            "mode": "mtls",
            "scopes": ["plans:submit"],
            "bindings": [{ "issuer": issuer, "subject_cn": name }],
            "reason": "a client of another CA",
        })))
        .await;
    assert_eq!(response.status, 201, "{}", response.text());
}

fn identity(cert: &OpensslCert) -> Identity {
    e2e::identity_from_files(&cert.cert_path, &cert.key_path)
}

async fn whoami_status(app: &TestApp, id: &Identity) -> Result<u16, String> {
    app.request(Some(id), Request::get("/api/whoami"))
        .await
        .map(|response| response.status)
        .map_err(|error| error.to_string())
}

#[tokio::test]
async fn a_base_crl_with_an_empty_delta_crl_keeps_the_bases_revocation() {
    let mut prepared = PreparedApp::new();
    let root = OpensslCa::root(prepared.dir(), "/O=Acme/CN=Acme Root");
    let (revoked, kept) = (
        root.client("/O=Acme/CN=acme-a", ""),
        root.client("/O=Acme/CN=acme-b", ""),
    );
    bundle_with(&mut prepared, &[&root]);
    let base = root.crl(&CrlSpec {
        revoked: vec![(&revoked, "keyCompromise")],
        number: 1,
        this_update: Some(time::OffsetDateTime::now_utc() - Duration::hours(1)),
        ..CrlSpec::default()
    });
    // What AD CS publishes between base CRLs: later thisUpdate, nothing new.
    let delta = root.crl(&CrlSpec {
        number: 2,
        extensions: &delta_of(1),
        ..CrlSpec::default()
    });
    prepared.settings.tls.crl_files = vec![
        crl_file(&prepared, "base.crl.pem", &base),
        crl_file(&prepared, "delta.crl.pem", &delta),
    ];
    let app = prepared.start().await;
    register(&app, "acme-a", "O=Acme, CN=Acme Root").await;
    register(&app, "acme-b", "O=Acme, CN=Acme Root").await;
    assert_eq!(whoami_status(&app, &identity(&kept)).await, Ok(200));
    let refused = whoami_status(&app, &identity(&revoked)).await.unwrap_err();
    assert!(refused.contains("CertificateRevoked"), "{refused}");
    // Stock clients see the same: curl and httpx, over HTTP/2 and HTTP/1.1, refused in the
    // handshake with the revoked leaf, answered with the other.
    let whoami = [e2e::stock::StockRequest::new(
        "GET",
        "/api/whoami",
        String::new(),
    )];
    for client in e2e::stock::EVERY_CLIENT {
        let refused = e2e::stock::run(&app, client, Some(&identity(&revoked)), &whoami).await;
        assert!(
            refused[0].error.is_some() && refused[0].status == 0,
            "{client:?}: {refused:?}"
        );
        let served = e2e::stock::run(&app, client, Some(&identity(&kept)), &whoami).await;
        assert_eq!(served[0].status, 200, "{client:?}: {served:?}");
    }
}

#[tokio::test]
async fn a_delta_crl_whose_base_is_not_loaded_stops_start_up_naming_the_file() {
    let mut prepared = PreparedApp::new();
    let root = OpensslCa::root(prepared.dir(), "/O=Acme/CN=Acme Root");
    bundle_with(&mut prepared, &[&root]);
    let delta = root.crl(&CrlSpec {
        number: 2,
        extensions: &delta_of(1),
        ..CrlSpec::default()
    });
    prepared.settings.tls.crl_files = vec![crl_file(&prepared, "lonely-delta.crl.pem", &delta)];
    let Err(error) = dispatch_api::startup::Application::build(prepared.settings.clone()).await
    else {
        panic!("a delta CRL alone is refused at start-up");
    };
    let message = format!("{error:#}");
    assert!(message.contains("lonely-delta.crl.pem"), "{message}");
    assert!(message.contains("delta CRL"), "{message}");
}

/// A root and its issuing CA, both in the bundle, a client under the issuing CA, and the root's
/// CRL file (empty at start).
struct RootAndIssuing {
    app: TestApp,
    root: OpensslCa,
    issuing: OpensslCa,
    leaf: Identity,
    root_crl: PathBuf,
}

async fn root_and_issuing() -> RootAndIssuing {
    let mut prepared = PreparedApp::new();
    let root = OpensslCa::root(prepared.dir(), "/O=Acme/CN=Acme Root");
    let issuing = root.intermediate("/O=Acme/CN=Acme Issuing CA", "");
    let leaf = identity(&issuing.client("/O=Acme/CN=acme-worker", ""));
    bundle_with(&mut prepared, &[&root, &issuing]);
    let empty = root.crl(&CrlSpec {
        number: 1,
        ..CrlSpec::default()
    });
    let root_crl = crl_file(&prepared, "root.crl.pem", &empty);
    prepared.settings.tls.crl_files = vec![root_crl.clone()];
    let app = prepared.start().await;
    register(&app, "acme-worker", "O=Acme, CN=Acme Issuing CA").await;
    RootAndIssuing {
        app,
        root,
        issuing,
        leaf,
        root_crl,
    }
}

#[tokio::test]
async fn a_roots_crl_revoking_an_issuing_ca_of_the_bundle_refuses_its_leaf_on_an_open_connection_and_at_the_handshake()
 {
    let pki = root_and_issuing().await;
    let app = &pki.app;
    let mut open = app.connect(Some(&pki.leaf)).await.unwrap();
    let whoami = open.send(Request::get("/api/whoami")).await.unwrap();
    assert_eq!(whoami.status, 200, "{}", whoami.text());
    let revokes = pki.root.crl(&CrlSpec {
        revoked: vec![(&pki.issuing.as_cert(), "cACompromise")],
        number: 2,
        ..CrlSpec::default()
    });
    replace_file(&pki.root_crl, revokes.as_bytes());
    app.wait_for_metric(RELOADED, 1.0).await;
    let response = open.send(Request::get("/api/whoami")).await.unwrap();
    assert_eq!(response.status, 401, "{}", response.text());
    app.assert_last_refusal("cert_revoked").await;
    let refused = whoami_status(app, &pki.leaf).await.unwrap_err();
    assert!(refused.contains("CertificateRevoked"), "{refused}");
}

#[tokio::test]
async fn a_deny_listed_root_refuses_the_leaves_of_its_issuing_ca_in_the_bundle() {
    let pki = root_and_issuing().await;
    let app = &pki.app;
    let mut open = app.connect(Some(&pki.leaf)).await.unwrap();
    assert_eq!(
        open.send(Request::get("/api/whoami")).await.unwrap().status,
        200
    );
    let denied = app
        .admin(Request::post("/admin/revocations").json(&json!({
            "fingerprint": e2e::devpki::sha256_hex(&pki.root.cert_der()),
            "reason": "root key compromised",
        })))
        .await;
    assert_eq!(denied.status, 201, "{}", denied.text());
    let response = open.send(Request::get("/api/whoami")).await.unwrap();
    assert_eq!(response.status, 401, "{}", response.text());
    app.assert_last_refusal("cert_revoked").await;
    assert_eq!(whoami_status(app, &pki.leaf).await, Ok(401));
    app.assert_last_refusal("cert_revoked").await;
}

#[tokio::test]
async fn a_ca_removed_from_the_bundle_refuses_its_open_http1_and_http2_connections_next_request() {
    let app = PreparedApp::new().start().await;
    register(&app, "partner", "CN=Partner CA, O=Partner").await;
    let partner = app.pki.issue(
        &app.pki.second_ca,
        &LeafSpec::new("partner", Usage::Client, Duration::hours(1)),
    );
    let mut http1 = app.connect(Some(&partner)).await.unwrap();
    assert_eq!(
        http1
            .send(Request::get("/api/whoami"))
            .await
            .unwrap()
            .status,
        200
    );
    let (http2, _connection) = connect_h2(app.https_port, &app.pki.ca_file, Some(&partner))
        .await
        .unwrap();
    let whoami = || {
        http::Request::builder()
            .uri("https://localhost/api/whoami")
            .body(())
            .unwrap()
    };
    let h2_status = |request| {
        let send = http2.clone();
        async move {
            let mut send = send.ready().await.unwrap();
            let (response, _) = send.send_request(request, true).unwrap();
            response.await.unwrap().status().as_u16()
        }
    };
    assert_eq!(h2_status(whoami()).await, 200);
    // The partner CA leaves the bundle; the dev CA stays (the operator's).
    replace_file(&app.pki.client_ca_bundle, app.pki.ca.cert_pem.as_bytes());
    app.wait_for_metric(RELOADED, 1.0).await;
    let response = http1.send(Request::get("/api/whoami")).await.unwrap();
    assert_eq!(response.status, 401, "{}", response.text());
    app.assert_last_refusal("issuer_not_allowed").await;
    assert_eq!(h2_status(whoami()).await, 401);
    app.assert_last_refusal("issuer_not_allowed").await;
    // New handshakes fail; the operator's still work.
    let refused = whoami_status(&app, &partner).await.unwrap_err();
    assert!(refused.contains("UnknownCA"), "{refused}");
    assert_eq!(whoami_status(&app, &app.operator).await, Ok(200));
}

#[tokio::test]
async fn an_issuing_ca_renewed_on_its_key_still_serves_its_leaves_once_the_root_revokes_the_old_certificate_as_superseded()
 {
    let mut prepared = PreparedApp::new();
    let root = OpensslCa::root(prepared.dir(), "/O=Acme/CN=Acme Root");
    let issuing = root.intermediate("/O=Acme/CN=Acme Issuing", "");
    let renewed = issuing.renewed_by(&root, 1);
    // The renewed certificate appended after the old one, as an operator adds it to a bundle.
    bundle_with(&mut prepared, &[&issuing, &renewed, &root]);
    let old = issuing.as_cert();
    let superseded = root.crl(&CrlSpec {
        revoked: vec![(&old, "superseded")],
        number: 1,
        ..CrlSpec::default()
    });
    prepared.settings.tls.crl_files = vec![crl_file(&prepared, "root.crl.pem", &superseded)];
    let app = prepared.start().await;
    register(&app, "acme-a", "O=Acme, CN=Acme Issuing").await;
    let leaf = identity(&issuing.client("/O=Acme/CN=acme-a", ""));
    assert_eq!(whoami_status(&app, &leaf).await, Ok(200));
    // Stock clients too, over HTTP/2 and HTTP/1.1.
    let whoami = [e2e::stock::StockRequest::new(
        "GET",
        "/api/whoami",
        String::new(),
    )];
    for client in e2e::stock::EVERY_CLIENT {
        let served = e2e::stock::run(&app, client, Some(&leaf), &whoami).await;
        assert_eq!(served[0].status, 200, "{client:?}: {served:?}");
    }
}

/// The SHA-256 of a certificate's SubjectPublicKeyInfo, as the operator's openssl prints it.
fn spki_sha256(cert: &OpensslCert) -> String {
    let dir = cert.cert_path.parent().unwrap();
    let cert_path = cert.cert_path.to_string_lossy().into_owned();
    e2e::devpki::openssl::openssl(
        dir,
        &[
            "x509", "-in", &cert_path, "-noout", "-pubkey", "-out", "pub.pem",
        ],
    );
    e2e::devpki::openssl::openssl(
        dir,
        &[
            "pkey", "-pubin", "-in", "pub.pem", "-outform", "der", "-out", "pub.der",
        ],
    );
    e2e::devpki::sha256_hex(&std::fs::read(dir.join("pub.der")).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_key_takes_every_certificate_of_it_renewals_that_reused_it_included_at_once() {
    let mut prepared = PreparedApp::new();
    let root = OpensslCa::root(prepared.dir(), "/O=Acme/CN=Acme Root");
    let stolen = root.client("/O=Acme/CN=acme-a", "");
    // The thief's copy of the key got a renewal that reused it (certbot --reuse-key).
    let renewed = root.renewed_client(&stolen, "/O=Acme/CN=acme-a", "");
    assert_ne!(stolen.der(), renewed.der());
    let other = root.client("/O=Acme/CN=acme-b", "");
    bundle_with(&mut prepared, &[&root]);
    let app = prepared.start().await;
    for name in ["acme-a", "acme-b"] {
        register(&app, name, "O=Acme, CN=Acme Root").await;
    }
    let (stolen_id, renewed_id) = (identity(&stolen), identity(&renewed));
    // A connection open before the denial, and the renewal, both served.
    let mut open = app.connect(Some(&stolen_id)).await.unwrap();
    assert_eq!(
        open.send(Request::get("/api/whoami")).await.unwrap().status,
        200
    );
    assert_eq!(whoami_status(&app, &renewed_id).await, Ok(200));
    let key = spki_sha256(&stolen);
    assert_eq!(key, spki_sha256(&renewed));
    let denied = app
        .admin(Request::post("/admin/revocations").json(&json!({
            "spki_sha256": key, "reason": "private key stolen",
        })))
        .await;
    assert_eq!(denied.status, 201, "{}", denied.text());
    // Every certificate of the key, at once, the open connection's next request too.
    let refused = open.send(Request::get("/api/whoami")).await.unwrap();
    refused.assert_problem(401, "unauthenticated");
    assert_eq!(refused.json()["reason"], "cert_revoked");
    let renewed_refused = app
        .request(Some(&renewed_id), Request::get("/api/whoami"))
        .await
        .unwrap();
    assert_eq!(renewed_refused.json()["reason"], "cert_revoked");
    // Another key of the same CA and name space is untouched.
    assert_eq!(whoami_status(&app, &identity(&other)).await, Ok(200));
    // The deny list shows the key; the audit log the change.
    let list = app.admin(Request::get("/admin/revocations")).await.json();
    assert!(
        list["revocations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|entry| entry["spki_sha256"] == key.as_str()),
        "{list}"
    );
    let audit = app.audit(None).await;
    assert!(
        audit.iter().any(|e| e["reason"] == "key_denied"),
        "{audit:?}"
    );
    // Naming both, or neither, is a 400.
    for body in [
        json!({ "reason": "x" }),
        json!({ "spki_sha256": key, "fingerprint": "00".repeat(32), "reason": "x" }),
    ] {
        let refused = app
            .admin(Request::post("/admin/revocations").json(&body))
            .await;
        assert_eq!(refused.status, 400, "{body}");
    }
}

#[tokio::test]
async fn denying_the_key_of_the_operators_own_certificate_is_refused() {
    let app = e2e::spawn_app().await;
    let own = app.operator.chain[0].as_ref().to_vec();
    let parsed = dispatch_api::identity::PeerCertificate::from_der(&own).unwrap();
    let refused = app
        .admin(Request::post("/admin/revocations").json(&json!({
            "spki_sha256": parsed.spki.to_string(), "reason": "oops",
        })))
        .await;
    assert_eq!(refused.status, 409, "{}", refused.text());
    assert_eq!(app.admin(Request::get("/admin/clients")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_of_an_issuing_ca_rekeyed_outside_the_bundle_is_refused_and_its_crl_is_left_out_alone()
 {
    let mut prepared = PreparedApp::new();
    let root = OpensslCa::root(prepared.dir(), "/O=Acme/CN=Acme Root");
    let issuing = root.intermediate("/O=Acme/CN=Acme Issuing CA", "");
    // The issuing CA re-keyed under its name; nobody added its new certificate to the bundle.
    let rekeyed = root.intermediate("/O=Acme/CN=Acme Issuing CA", "");
    bundle_with(&mut prepared, &[&root, &issuing]);
    let issuing_crl = issuing.crl(&CrlSpec {
        number: 1,
        ..CrlSpec::default()
    });
    let crls = crl_file(&prepared, "crls.pem", &issuing_crl);
    prepared.settings.tls.crl_files = vec![crls.clone()];
    let app = prepared.start().await;
    register(&app, "acme-worker", "O=Acme, CN=Acme Issuing CA").await;
    let old = identity(&issuing.client("/O=Acme/CN=acme-worker", ""));
    assert_eq!(whoami_status(&app, &old).await, Ok(200));
    // The new key's leaf, sent with the re-keyed CA's certificate: the name has CRLs, this key
    // has none the service can check, so its status is unknown, not good (the TLS alert:
    // certificate_unknown).
    let leaf = rekeyed.client("/O=Acme/CN=acme-worker", "");
    let chain = prepared_chain(&leaf, &rekeyed);
    let new = e2e::identity_from_files(&chain, &leaf.key_path);
    let refused = whoami_status(&app, &new).await.unwrap_err();
    assert!(refused.contains("CertificateUnknown"), "{refused}");
    let whoami = [e2e::stock::StockRequest::new(
        "GET",
        "/api/whoami",
        String::new(),
    )];
    for client in e2e::stock::EVERY_CLIENT {
        let answers = e2e::stock::run(&app, client, Some(&new), &whoami).await;
        assert!(
            answers[0].error.is_some() && answers[0].status == 0,
            "{client:?}: {answers:?}"
        );
    }
    // One reload brings the re-keyed CA's CRL and a root CRL that revokes another leaf: the
    // first is left out, named, and the second applies.
    let revoked = root.client("/O=Acme/CN=acme-root-leaf", "");
    register(&app, "acme-root-leaf", "O=Acme, CN=Acme Root").await;
    assert_eq!(whoami_status(&app, &identity(&revoked)).await, Ok(200));
    let rekeyed_crl = rekeyed.crl(&CrlSpec {
        number: 1,
        ..CrlSpec::default()
    });
    let root_crl = root.crl(&CrlSpec {
        revoked: vec![(&revoked, "keyCompromise")],
        number: 1,
        ..CrlSpec::default()
    });
    replace_file(
        &crls,
        format!("{issuing_crl}{rekeyed_crl}{root_crl}").as_bytes(),
    );
    app.wait_for_metric(RELOADED, 1.0).await;
    app.wait_for_metric("dispatch_crls_refused", 1.0).await;
    let refused = whoami_status(&app, &identity(&revoked)).await.unwrap_err();
    assert!(refused.contains("CertificateRevoked"), "{refused}");
    let still = whoami_status(&app, &new).await.unwrap_err();
    assert!(still.contains("CertificateUnknown"), "{still}");
    assert_eq!(whoami_status(&app, &old).await, Ok(200));
    // The operator adds the new certificate: its CRL is taken and its leaves pass the
    // handshake. (Two CAs of one name now: the binding needs the issuer's key pinned before
    // it names either, as the service warns.)
    let bundle = prepared_bundle_plus(&app, &rekeyed);
    replace_file(&bundle.0, bundle.1.as_bytes());
    app.wait_for_metric(RELOADED, 2.0).await;
    assert_eq!(app.metric("dispatch_crls_refused").await, 0.0);
    let answer = app
        .request(Some(&new), Request::get("/api/whoami"))
        .await
        .unwrap();
    assert_eq!(
        answer.json()["reason"],
        "issuer_not_allowed",
        "{}",
        answer.text()
    );
}

/// A PEM file of `leaf` followed by `ca`'s certificate, as a client sends its chain.
fn prepared_chain(leaf: &OpensslCert, ca: &OpensslCa) -> PathBuf {
    let path = leaf.cert_path.with_file_name("chain.pem");
    let pem = std::fs::read_to_string(&leaf.cert_path).unwrap() + &ca.cert_pem();
    std::fs::write(&path, pem).unwrap();
    path
}

/// The app's client CA bundle with `ca` added: the file and its new contents.
fn prepared_bundle_plus(app: &TestApp, ca: &OpensslCa) -> (PathBuf, String) {
    let path = app.settings.tls.client_ca_file.clone();
    let pem = std::fs::read_to_string(&path).unwrap() + &ca.cert_pem();
    (path, pem)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crl_revoking_a_certificate_for_key_compromise_takes_every_certificate_of_its_key_at_once()
 {
    let mut prepared = PreparedApp::new();
    let root = OpensslCa::root(prepared.dir(), "/O=Acme/CN=Acme Root");
    let stolen = root.client("/O=Acme/CN=acme-a", "");
    // The thief's copy of the key got a renewal that reused it (certbot --reuse-key).
    let renewed = root.renewed_client(&stolen, "/O=Acme/CN=acme-a", "");
    // Another client's certificate revoked as superseded: its key is not stolen.
    let superseded = root.client("/O=Acme/CN=acme-b", "");
    let successor = root.renewed_client(&superseded, "/O=Acme/CN=acme-b", "");
    bundle_with(&mut prepared, &[&root]);
    let crls = crl_file(
        &prepared,
        "root.crl.pem",
        &root.crl(&CrlSpec {
            number: 1,
            ..CrlSpec::default()
        }),
    );
    prepared.settings.tls.crl_files = vec![crls.clone()];
    let app = prepared.start().await;
    for name in ["acme-a", "acme-b"] {
        register(&app, name, "O=Acme, CN=Acme Root").await;
    }
    // Both certificates were presented while good (the service keeps them as evidence), and a
    // connection with the renewal is open.
    for cert in [&stolen, &superseded] {
        assert_eq!(whoami_status(&app, &identity(cert)).await, Ok(200));
    }
    app.audit(None).await;
    let renewed_id = identity(&renewed);
    let mut open = app.connect(Some(&renewed_id)).await.unwrap();
    assert_eq!(
        open.send(Request::get("/api/whoami")).await.unwrap().status,
        200
    );
    replace_file(
        &crls,
        root.crl(&CrlSpec {
            revoked: vec![(&stolen, "keyCompromise"), (&superseded, "superseded")],
            number: 2,
            ..CrlSpec::default()
        })
        .as_bytes(),
    );
    app.wait_for_metric(RELOADED, 1.0).await;
    // The key goes on the deny list after the reload: the open connection's next request and
    // a new one with the renewal are refused as cert_revoked.
    let key = spki_sha256(&stolen);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let list = app.admin(Request::get("/admin/revocations")).await.json();
        let denied = list["revocations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|entry| entry["spki_sha256"] == key.as_str());
        if denied {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{list}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let refused = open.send(Request::get("/api/whoami")).await.unwrap();
    refused.assert_problem(401, "unauthenticated");
    assert_eq!(refused.json()["reason"], "cert_revoked");
    let whoami = [e2e::stock::StockRequest::new(
        "GET",
        "/api/whoami",
        String::new(),
    )];
    for client in e2e::stock::EVERY_CLIENT {
        let answers = e2e::stock::run(&app, client, Some(&renewed_id), &whoami).await;
        assert_eq!(answers[0].status, 401, "{client:?}: {answers:?}");
    }
    // The superseded certificate's key is not stolen: its successor is served.
    assert_eq!(whoami_status(&app, &identity(&successor)).await, Ok(200));
    let audit = app.audit(None).await;
    assert!(
        audit
            .iter()
            .any(|e| e["reason"] == "key_denied" && e["actor"] == "crl"),
        "{audit:?}"
    );
}

/// A leaf made by openssl naming its workload by dNSName, as ACME CAs and cert-manager issue
/// them: bound by `dns_name`, compared case-insensitively, whatever its CN, for curl over
/// HTTP/2 too; a leaf carrying the name only in its CN is not (the binding reads the SAN).
#[tokio::test]
async fn an_openssl_made_leaf_is_bound_by_its_dns_name_san_and_a_cn_alone_is_not() {
    let mut prepared = PreparedApp::new();
    let root = OpensslCa::root(prepared.dir(), "/O=Acme/CN=Acme Root");
    let named = root.client(
        "/O=Acme/CN=something-else",
        "subjectAltName=DNS:other.acme.internal,DNS:Worker.Acme.Internal\n",
    );
    let cn_only = root.client("/O=Acme/CN=worker.acme.internal", "");
    bundle_with(&mut prepared, &[&root]);
    let app = prepared.start().await;
    let response = app
        .admin(Request::post("/admin/clients").json(&json!({
            "name": "acme-worker",
            "mode": "mtls",
            "scopes": ["plans:submit"],
            "bindings": [{ "issuer": "O=Acme, CN=Acme Root", "dns_name": "worker.acme.internal" }],
            "reason": "bound by its DNS name",
        })))
        .await;
    assert_eq!(response.status, 201, "{}", response.text());
    let served = app
        .request(Some(&identity(&named)), Request::get("/api/whoami"))
        .await
        .unwrap();
    assert_eq!(served.status, 200, "{}", served.text());
    assert_eq!(served.json()["client"], "acme-worker");
    let whoami = [e2e::stock::StockRequest::new(
        "GET",
        "/api/whoami",
        String::new(),
    )];
    let answers = e2e::stock::run(
        &app,
        e2e::stock::Client::CurlHttp2,
        Some(&identity(&named)),
        &whoami,
    )
    .await;
    assert_eq!(answers[0].status, 200, "{answers:?}");
    let refused = app
        .request(Some(&identity(&cn_only)), Request::get("/api/whoami"))
        .await
        .unwrap();
    assert_eq!(refused.status, 401, "{}", refused.text());
    assert_eq!(refused.json()["reason"], "cert_unmapped");
}
