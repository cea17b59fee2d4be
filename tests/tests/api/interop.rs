//! Certificates made by OpenSSL, not rcgen: RSA keys, an intermediate CA, chains sent with and
//! without the intermediate. Nothing in the server may depend on how rcgen writes certificates.

use std::path::Path;

use e2e::devpki::openssl::openssl;
use e2e::{PreparedApp, Request, connect, identity_from_files};

/// root (RSA) → intermediate (RSA) → server and client leaves (RSA), written into `dir`.
fn openssl_pki(dir: &Path) {
    std::fs::write(
        dir.join("ext.cnf"),
        "[ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n\
         [server]\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n\
         [client]\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nsubjectAltName=URI:spiffe://acme.internal/billing\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "root.key",
            "-out",
            "root.pem",
            "-days",
            "2",
            "-subj",
            "/O=Acme/CN=Acme Root",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    let issue = |name: &str, subject: &str, issuer: &str, section: &str| {
        openssl(
            dir,
            &[
                "req",
                "-new",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                subject,
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                &format!("{issuer}.pem"),
                "-CAkey",
                &format!("{issuer}.key"),
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                "1",
                "-sha256",
                "-extfile",
                "ext.cnf",
                "-extensions",
                section,
            ],
        );
    };
    issue("intermediate", "/O=Acme/CN=Acme Intermediate", "root", "ca");
    issue(
        "server",
        "/O=Acme/CN=dispatch-api",
        "intermediate",
        "server",
    );
    issue(
        "client",
        "/O=Acme/OU=Billing/CN=billing-rsa",
        "intermediate",
        "client",
    );
    // The server presents its chain; the server key as traditional PKCS#1 ("BEGIN RSA PRIVATE KEY").
    let chain = std::fs::read_to_string(dir.join("server.pem")).unwrap()
        + &std::fs::read_to_string(dir.join("intermediate.pem")).unwrap();
    std::fs::write(dir.join("server-chain.pem"), chain).unwrap();
    openssl(
        dir,
        &[
            "rsa",
            "-in",
            "server.key",
            "-traditional",
            "-out",
            "server-pkcs1.key",
        ],
    );
    let chain = std::fs::read_to_string(dir.join("client.pem")).unwrap()
        + &std::fs::read_to_string(dir.join("intermediate.pem")).unwrap();
    std::fs::write(dir.join("client-chain.pem"), chain).unwrap();
}

async fn openssl_app() -> (e2e::TestApp, std::path::PathBuf) {
    let mut prepared = PreparedApp::new();
    let pki = prepared.dir().join("openssl");
    std::fs::create_dir_all(&pki).unwrap();
    openssl_pki(&pki);
    prepared.settings.tls.cert_file = Some(pki.join("server-chain.pem"));
    prepared.settings.tls.key_file = Some(pki.join("server-pkcs1.key"));
    prepared.settings.tls.client_ca_file = pki.join("root.pem");
    let mut clients = std::fs::read_to_string(prepared.clients_file()).unwrap();
    // The issuer written as OpenSSL prints it (`openssl x509 -noout -issuer`).
    clients.push_str(
        "\n[[clients]]\nname = \"billing\"\nmode = \"mtls\"\nscopes = [\"plans:submit\"]\n\
         [[clients.bindings]]\nissuer = \"O = Acme, CN = Acme Intermediate\"\nspiffe_id = \"spiffe://acme.internal/billing\"\n",
    );
    std::fs::write(prepared.clients_file(), clients).unwrap();
    (prepared.start().await, pki)
}

#[tokio::test]
async fn rsa_certificates_with_an_intermediate_sent_in_the_chain_authenticate() {
    let (app, pki) = openssl_app().await;
    let client = identity_from_files(&pki.join("client-chain.pem"), &pki.join("client.key"));
    assert_eq!(client.chain.len(), 2, "leaf and intermediate");
    let mut connection = connect(
        app.https_port,
        &pki.join("root.pem"),
        Some(&client),
        "localhost",
    )
    .await
    .unwrap();
    let whoami = connection.send(Request::get("/api/whoami")).await.unwrap();
    assert_eq!(whoami.status, 200, "{}", whoami.text());
    let body = whoami.json();
    assert_eq!(body["client"], "billing");
    // The leaf (first certificate), not the intermediate, is the identity.
    assert_eq!(
        body["certificate"]["subject"],
        "O=Acme, OU=Billing, CN=billing-rsa"
    );
    let plan = connection
        .send(e2e::submit(&e2e::plan("rsa-1", 2)))
        .await
        .unwrap();
    assert_eq!(plan.status, 202, "{}", plan.text());
}

#[tokio::test]
async fn a_client_chain_without_its_intermediate_fails_the_handshake_when_only_the_root_is_trusted()
{
    let (app, pki) = openssl_app().await;
    let leaf_only = identity_from_files(&pki.join("client.pem"), &pki.join("client.key"));
    let outcome = match connect(
        app.https_port,
        &pki.join("root.pem"),
        Some(&leaf_only),
        "localhost",
    )
    .await
    {
        Ok(mut connection) => connection
            .send(Request::get("/api/whoami"))
            .await
            .map(|r| r.status),
        Err(error) => Err(error),
    };
    let error = outcome.expect_err("the intermediate is missing");
    assert!(error.to_string().contains("UnknownCA"), "{error}");
    assert_eq!(
        app.metric("dispatch_tls_handshake_failures_total{kind=\"untrusted_issuer\"}")
            .await,
        1.0
    );
}
