//! A PKI made by the `openssl` command, as a real CA's tooling writes it: RSA keys, `openssl ca`
//! CRLs with CRL numbers, delta CRLs, Issuing Distribution Points, CRL Distribution Points in
//! certificates. rcgen cannot make delta CRLs, and nothing the server does may depend on how
//! rcgen writes things. For tests only: it needs the `openssl` binary and panics without it.

use std::path::{Path, PathBuf};
use std::process::Command;

use time::OffsetDateTime;

/// A CA whose key and certificate openssl made, in a directory of its own.
pub struct OpensslCa {
    pub dir: PathBuf,
    /// The subject as openssl takes it (`/O=Acme/CN=Acme Root`).
    pub subject: String,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

/// A certificate openssl made, with its key.
pub struct OpensslCert {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

impl OpensslCert {
    pub fn cert_pem(&self) -> String {
        read(&self.cert_path)
    }

    pub fn key_pem(&self) -> String {
        read(&self.key_path)
    }

    pub fn der(&self) -> Vec<u8> {
        pem_der(&self.cert_pem())
    }
}

/// One CRL to write: which certificates it lists (each with an `openssl ca -crl_reason`), its
/// CRL number, extra lines for its extension section (a Delta CRL Indicator, an Issuing
/// Distribution Point, ...), and its thisUpdate when not now.
#[derive(Default)]
pub struct CrlSpec<'a> {
    pub revoked: Vec<(&'a OpensslCert, &'a str)>,
    pub number: u64,
    pub extensions: &'a str,
    pub this_update: Option<OffsetDateTime>,
}

/// The Delta CRL Indicator (RFC 5280 §5.2.4) as an extension line: a delta on `base`.
pub fn delta_of(base: u64) -> String {
    format!("2.5.29.27 = critical,ASN1:INTEGER:{base}\n")
}

/// Runs openssl in `dir`; panics with its error output when it fails.
pub fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command is installed");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The DER of the first PEM block of `pem`.
pub fn pem_der(pem: &str) -> Vec<u8> {
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("a PEM block");
    parsed.contents
}

const CA_EXTENSIONS: &str = "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n";
const CLIENT_EXTENSIONS: &str = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nauthorityKeyIdentifier=keyid\n";

fn unique(dir: &Path, stem: &str) -> PathBuf {
    let mut n = 0;
    loop {
        let candidate = dir.join(format!("{stem}-{n}"));
        if std::fs::create_dir(&candidate).is_ok() {
            return candidate;
        }
        n += 1;
    }
}

impl OpensslCa {
    /// A self-signed root CA (RSA 2048, valid two days) under `parent_dir`.
    pub fn root(parent_dir: &Path, subject: &str) -> Self {
        let dir = unique(parent_dir, "ca");
        std::fs::write(dir.join("ca.cnf"), format!("[ext]\n{CA_EXTENSIONS}")).unwrap();
        openssl(
            &dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                subject,
                "-config",
                "ca.cnf",
                "-extensions",
                "ext",
            ],
        );
        Self::at(dir, subject)
    }

    fn at(dir: PathBuf, subject: &str) -> Self {
        Self {
            cert_path: dir.join("ca.pem"),
            key_path: dir.join("ca.key"),
            subject: subject.to_owned(),
            dir,
        }
    }

    pub fn cert_pem(&self) -> String {
        read(&self.cert_path)
    }

    /// The same root CA renewed: a new self-signed certificate of the same name and key.
    pub fn renewed(&self) -> OpensslCa {
        let dir = unique(&self.dir, "renewed");
        std::fs::copy(&self.key_path, dir.join("ca.key")).unwrap();
        std::fs::write(dir.join("ca.cnf"), format!("[ext]\n{CA_EXTENSIONS}")).unwrap();
        openssl(
            &dir,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "3",
                "-subj",
                &self.subject,
                "-config",
                "ca.cnf",
                "-extensions",
                "ext",
            ],
        );
        Self::at(dir, &self.subject)
    }

    /// This (intermediate) CA's key certified again by `parent` for `days` (0: expired a second
    /// later): the same subject and key, a new serial and validity, as a CA's renewal without a
    /// re-key issues it.
    pub fn renewed_by(&self, parent: &OpensslCa, days: u32) -> OpensslCa {
        let dir = unique(&parent.dir, "renewed");
        std::fs::copy(&self.key_path, dir.join("ca.key")).unwrap();
        std::fs::write(dir.join("ext.cnf"), format!("[ext]\n{CA_EXTENSIONS}")).unwrap();
        openssl(
            &dir,
            &[
                "req",
                "-new",
                "-key",
                "ca.key",
                "-out",
                "req.csr",
                "-subj",
                &self.subject,
            ],
        );
        parent.certify(&dir, "ca.pem", days);
        Self::at(dir, &self.subject)
    }

    /// This CA's certificate as one to list in its issuer's CRL.
    pub fn as_cert(&self) -> OpensslCert {
        OpensslCert {
            cert_path: self.cert_path.clone(),
            key_path: self.key_path.clone(),
        }
    }

    pub fn cert_der(&self) -> Vec<u8> {
        pem_der(&self.cert_pem())
    }

    /// Certifies `dir/req.csr` with this CA for `days`, with the extensions of `dir/ext.cnf`
    /// and a random serial, into `dir/out`.
    fn certify(&self, dir: &Path, out: &str, days: u32) {
        let ca_cert = self.cert_path.to_string_lossy().into_owned();
        let ca_key = self.key_path.to_string_lossy().into_owned();
        let days = days.to_string();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "req.csr",
                "-CA",
                &ca_cert,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-CAserial",
                "serial",
                "-days",
                &days,
                "-extfile",
                "ext.cnf",
                "-extensions",
                "ext",
                "-out",
                out,
            ],
        );
    }

    /// Signs a new key (RSA 2048) with this CA, for one day, with these extension lines.
    pub fn sign(&self, subject: &str, extensions: &str) -> OpensslCert {
        let dir = unique(&self.dir, "issued");
        std::fs::write(dir.join("ext.cnf"), format!("[ext]\n{extensions}")).unwrap();
        openssl(
            &dir,
            &[
                "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out",
                "req.csr", "-subj", subject,
            ],
        );
        self.certify(&dir, "cert.pem", 1);
        OpensslCert {
            cert_path: dir.join("cert.pem"),
            key_path: dir.join("key.pem"),
        }
    }

    /// A new certificate for the key of `issued`, as a renewal that reuses its key makes one
    /// (certbot's `--reuse-key`): the same subject and extensions, another serial.
    pub fn renewed_client(&self, issued: &OpensslCert, subject: &str, extra: &str) -> OpensslCert {
        let dir = unique(&self.dir, "renewed");
        std::fs::write(
            dir.join("ext.cnf"),
            format!("[ext]\n{CLIENT_EXTENSIONS}{extra}"),
        )
        .unwrap();
        let key = issued.key_path.to_string_lossy().into_owned();
        openssl(
            &dir,
            &[
                "req", "-new", "-key", &key, "-out", "req.csr", "-subj", subject,
            ],
        );
        self.certify(&dir, "cert.pem", 1);
        std::fs::copy(&issued.key_path, dir.join("key.pem")).unwrap();
        OpensslCert {
            cert_path: dir.join("cert.pem"),
            key_path: dir.join("key.pem"),
        }
    }

    /// An intermediate CA signed by this one, with these extra extension lines.
    pub fn intermediate(&self, subject: &str, extra: &str) -> OpensslCa {
        let issued = self.sign(subject, &format!("{CA_EXTENSIONS}{extra}"));
        let dir = issued.cert_path.parent().unwrap().to_owned();
        std::fs::rename(&issued.cert_path, dir.join("ca.pem")).unwrap();
        std::fs::rename(&issued.key_path, dir.join("ca.key")).unwrap();
        Self::at(dir, subject)
    }

    /// A client certificate (clientAuth) with this subject and extra extension lines (a SAN,
    /// CRL Distribution Points, ...).
    pub fn client(&self, subject: &str, extra: &str) -> OpensslCert {
        self.sign(subject, &format!("{CLIENT_EXTENSIONS}{extra}"))
    }

    /// A CRL of this CA (PEM), written by `openssl ca -gencrl` from a database of its own.
    pub fn crl(&self, spec: &CrlSpec<'_>) -> String {
        let dir = unique(&self.dir, "crl");
        std::fs::write(dir.join("index.txt"), "").unwrap();
        std::fs::write(dir.join("crlnumber"), format!("{:02X}\n", spec.number)).unwrap();
        let config = format!(
            "[ca]\ndefault_ca = this_ca\n[this_ca]\ndatabase = index.txt\ncrlnumber = crlnumber\n\
             certificate = {}\nprivate_key = {}\ndefault_md = sha256\ndefault_crl_days = 1\n\
             crl_extensions = crl_ext\n[crl_ext]\nauthorityKeyIdentifier=keyid\n{}",
            self.cert_path.display(),
            self.key_path.display(),
            spec.extensions,
        );
        std::fs::write(dir.join("ca.cnf"), config).unwrap();
        for (cert, reason) in &spec.revoked {
            let path = cert.cert_path.to_string_lossy().into_owned();
            openssl(
                &dir,
                &[
                    "ca",
                    "-config",
                    "ca.cnf",
                    "-revoke",
                    &path,
                    "-crl_reason",
                    reason,
                ],
            );
        }
        let mut args = vec!["ca", "-config", "ca.cnf", "-gencrl", "-out", "crl.pem"];
        let last_update = spec.this_update.map(|at| {
            let format = time::macros::format_description!(
                "[year repr:last_two][month][day][hour][minute][second]Z"
            );
            at.format(&format).expect("a UTCTime")
        });
        if let Some(at) = &last_update {
            args.extend(["-crl_lastupdate", at]);
        }
        openssl(&dir, &args);
        read(&dir.join("crl.pem"))
    }
}
