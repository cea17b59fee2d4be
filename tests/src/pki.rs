//! The generated PKI: three CAs and a server certificate written to a temp dir, identities
//! issued on demand, and identities read back from PEM files or text.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use devpki::{CertificateAuthority, LeafSpec, Usage};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::Duration;

/// A client certificate and key, in memory and on disk.
#[derive(Clone)]
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: Arc<PrivateKeyDer<'static>>,
    pub fingerprint: String,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// Three CAs: the dev CA and a second one are in the server's client CA bundle; the third is
/// trusted by nobody.
pub struct TestPki {
    pub dir: PathBuf,
    pub ca: CertificateAuthority,
    pub second_ca: CertificateAuthority,
    pub untrusted_ca: CertificateAuthority,
    pub ca_file: PathBuf,
    pub client_ca_bundle: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    counter: AtomicUsize,
}

impl TestPki {
    pub fn new(dir: &Path) -> Self {
        let ca = CertificateAuthority::dev(Duration::days(2)).expect("dev CA");
        let second_ca = CertificateAuthority::new("Partner CA", "Partner", Duration::days(2))
            .expect("second CA");
        let untrusted_ca =
            CertificateAuthority::new("Dispatch Dev Internal CA", "Impostor", Duration::days(2))
                .expect("untrusted CA");
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, &ca.cert_pem).unwrap();
        let client_ca_bundle = dir.join("client-ca-bundle.pem");
        std::fs::write(
            &client_ca_bundle,
            format!("{}{}", ca.cert_pem, second_ca.cert_pem),
        )
        .unwrap();
        let server = ca.issue(&LeafSpec::server(Duration::days(1))).unwrap();
        let server_cert = dir.join("server.pem");
        let server_key = dir.join("server.key");
        std::fs::write(&server_cert, &server.cert_pem).unwrap();
        std::fs::write(&server_key, &server.key_pem).unwrap();
        Self {
            dir: dir.to_owned(),
            ca,
            second_ca,
            untrusted_ca,
            ca_file,
            client_ca_bundle,
            server_cert,
            server_key,
            counter: Default::default(),
        }
    }

    /// Issues a certificate from `ca` and writes it to the PKI directory.
    pub fn issue(&self, ca: &CertificateAuthority, spec: &LeafSpec) -> Identity {
        let issued = ca.issue(spec).expect("issue certificate");
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let cert_file = self.dir.join(format!("{}-{n}.pem", spec.common_name));
        let key_file = self.dir.join(format!("{}-{n}.key", spec.common_name));
        devpki::write_file(&cert_file, &issued.cert_pem, false, true).unwrap();
        devpki::write_file(&key_file, &issued.key_pem, true, true).unwrap();
        Identity {
            chain: vec![CertificateDer::from(issued.der.clone())],
            key: Arc::new(PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap()),
            fingerprint: devpki::sha256_hex(&issued.der),
            cert_file,
            key_file,
        }
    }

    /// A workload certificate (CN and SPIFFE ID) from the dev CA.
    pub fn workload(&self, name: &str) -> Identity {
        self.issue(&self.ca, &LeafSpec::workload(name, Duration::hours(1)))
    }

    /// An intermediate under the second (partner) CA, trusted because that CA is in the
    /// bundle, whose name copies the dev CA's exactly: what a forger would make.
    pub fn forged_intermediate(&self) -> CertificateAuthority {
        self.second_ca
            .intermediate(
                "Dispatch Dev Internal CA",
                "Dispatch Dev",
                Duration::days(1),
            )
            .expect("forged intermediate")
    }

    /// A leaf of `ca` followed in its chain by `ca`'s own certificate (an intermediate).
    pub fn issue_under(&self, ca: &CertificateAuthority, spec: &LeafSpec) -> Identity {
        let mut id = self.issue(ca, spec);
        id.chain.push(CertificateDer::from(ca.cert_der()));
        id
    }

    pub fn operator(&self) -> Identity {
        self.issue(
            &self.ca,
            &LeafSpec::new("operator", Usage::Client, Duration::hours(1)),
        )
    }
}

/// An identity from PEM files on disk (as a person would have them).
pub fn identity_from_files(cert_file: &Path, key_file: &Path) -> Identity {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key_file).unwrap();
    Identity {
        fingerprint: devpki::sha256_hex(&chain[0]),
        chain,
        key: Arc::new(key),
        cert_file: cert_file.to_owned(),
        key_file: key_file.to_owned(),
    }
}

/// An identity from PEM text.
pub fn identity_from_pem(cert_pem: &str, key_pem: &str) -> Identity {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    Identity {
        fingerprint: devpki::sha256_hex(&chain[0]),
        key: Arc::new(PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap()),
        chain,
        cert_file: PathBuf::new(),
        key_file: PathBuf::new(),
    }
}

/// Packs a certificate and key into a PKCS#12 file with OpenSSL (as many teams hold them).
/// A TLS server configuration (no client authentication) presenting the chain in `cert_file`
/// with the key in `key_file`: for the tests' own HTTPS servers, standing in for another.
pub fn server_tls(cert_file: &Path, key_file: &Path) -> Arc<rustls::ServerConfig> {
    let chain = CertificateDer::pem_file_iter(cert_file)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key_file).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    Arc::new(config)
}

pub fn write_pkcs12(cert_file: &Path, key_file: &Path, out: &Path, password: &str) {
    let status = std::process::Command::new("openssl")
        .args(["pkcs12", "-export", "-in"])
        .arg(cert_file)
        .arg("-inkey")
        .arg(key_file)
        .arg("-out")
        .arg(out)
        .args(["-passout", &format!("pass:{password}")])
        .status()
        .expect("openssl is installed");
    assert!(status.success(), "openssl pkcs12 -export");
}

/// Replaces a file the way secret mounts do: write beside it, then rename over it.
pub fn replace_file(path: &Path, contents: &[u8]) {
    let temporary = path.with_extension("tmp-replace");
    std::fs::write(&temporary, contents).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}
