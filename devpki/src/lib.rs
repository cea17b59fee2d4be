//! A development PKI made with rcgen: an internal CA, leaf certificates for the server, the
//! route-worker and the operator, and an API key. For local runs, tests and the compose demo.
//! Production uses the team's CA (step-ca, SPIRE, cert-manager), never this.
#![forbid(unsafe_code)]

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

/// The trust domain of the dev SPIFFE IDs.
pub const TRUST_DOMAIN: &str = "dispatch.internal";
/// The dev CA's subject, as bindings in `config/clients.toml` name it.
pub const DEV_CA_SUBJECT: &str = "CN=Dispatch Dev Internal CA, O=Dispatch Dev";

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("`{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{}` exists; pass --force to overwrite", .0.display())]
    Exists(PathBuf),
    #[error("the operating system's random source failed")]
    Random,
}

/// What a certificate may be used for (its extended key usage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Server,
    Client,
    /// No EKU at all (accepted for any purpose by webpki).
    Unrestricted,
}

/// A leaf certificate to issue.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    pub common_name: String,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub uris: Vec<String>,
    pub usage: Usage,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl LeafSpec {
    /// A certificate valid from a minute ago for `lifetime`.
    pub fn new(common_name: &str, usage: Usage, lifetime: Duration) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            common_name: common_name.to_owned(),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            uris: Vec::new(),
            usage,
            not_before: now - Duration::minutes(1),
            not_after: now + lifetime,
        }
    }

    /// The dispatch-api server certificate: serverAuth, names `dispatch-api`, `localhost`, 127.0.0.1.
    pub fn server(lifetime: Duration) -> Self {
        let mut spec = Self::new("dispatch-api", Usage::Server, lifetime);
        spec.dns_names = vec!["dispatch-api".into(), "localhost".into()];
        spec.ip_addresses = vec![IpAddr::from([127, 0, 0, 1])];
        spec
    }

    /// A workload client certificate: clientAuth, CN and SPIFFE ID `spiffe://dispatch.internal/<name>`.
    pub fn workload(name: &str, lifetime: Duration) -> Self {
        let mut spec = Self::new(name, Usage::Client, lifetime);
        spec.uris = vec![format!("spiffe://{TRUST_DOMAIN}/{name}")];
        spec
    }
}

/// A PEM certificate and its PEM private key.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
    /// The serial number, for revocation lists.
    pub serial: Vec<u8>,
}

/// A certificate authority that can issue leaves.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
    pub key_pem: String,
}

fn random_serial() -> Result<SerialNumber, PkiError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| PkiError::Random)?;
    bytes[0] &= 0x7f; // a positive INTEGER
    Ok(SerialNumber::from_slice(&bytes))
}

impl CertificateAuthority {
    /// A new self-signed root with the given subject CN and organisation.
    pub fn new(
        common_name: &str,
        organization: &str,
        lifetime: Duration,
    ) -> Result<Self, PkiError> {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, organization);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = OffsetDateTime::now_utc() - Duration::minutes(1);
        params.not_after = OffsetDateTime::now_utc() + lifetime;
        params.serial_number = Some(random_serial()?);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// The dev CA (`CN=Dispatch Dev Internal CA, O=Dispatch Dev`).
    pub fn dev(lifetime: Duration) -> Result<Self, PkiError> {
        Self::new("Dispatch Dev Internal CA", "Dispatch Dev", lifetime)
    }

    /// A CA from its PEM certificate and key, to issue more leaves.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        Ok(Self {
            issuer,
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
        })
    }

    pub fn issue(&self, spec: &LeafSpec) -> Result<Issued, PkiError> {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, spec.common_name.as_str());
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match spec.usage {
            Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Usage::Unrestricted => vec![],
        };
        let mut sans = Vec::new();
        for dns in &spec.dns_names {
            sans.push(SanType::DnsName(dns.as_str().try_into()?));
        }
        for ip in &spec.ip_addresses {
            sans.push(SanType::IpAddress(*ip));
        }
        for uri in &spec.uris {
            sans.push(SanType::URI(uri.as_str().try_into()?));
        }
        params.subject_alt_names = sans;
        params.not_before = spec.not_before;
        params.not_after = spec.not_after;
        let serial = random_serial()?;
        params.serial_number = Some(serial.clone());
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
            serial: serial.to_bytes(),
        })
    }

    /// A CRL (PEM) revoking the certificates with these serial numbers, valid for `lifetime`.
    pub fn revocation_list(
        &self,
        revoked_serials: &[Vec<u8>],
        lifetime: Duration,
    ) -> Result<String, PkiError> {
        let now = OffsetDateTime::now_utc();
        let params = rcgen::CertificateRevocationListParams {
            this_update: now - Duration::minutes(1),
            next_update: now + lifetime,
            crl_number: random_serial()?,
            issuing_distribution_point: None,
            revoked_certs: revoked_serials
                .iter()
                .map(|serial| rcgen::RevokedCertParams {
                    serial_number: SerialNumber::from_slice(serial),
                    revocation_time: now - Duration::minutes(1),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer)?.pem()?)
    }
}

/// Makes an API key: 32 random bytes as hex behind a recognisable prefix.
pub fn generate_api_key() -> Result<String, PkiError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| PkiError::Random)?;
    Ok(format!("dk_{}", hex::encode(bytes)))
}

/// The SHA-256 of a key, in hex, as the server stores it.
pub fn api_key_sha256(key: &str) -> String {
    sha256_hex(key.as_bytes())
}

/// The SHA-256 of any bytes, in hex (a certificate's DER gives its fingerprint).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

/// Writes a file; private material (`secret = true`) gets mode 0600 from the moment it exists.
pub fn write_file(
    path: &Path,
    contents: &str,
    secret: bool,
    overwrite: bool,
) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        path: path.to_owned(),
        source,
    };
    if path.exists() && !overwrite {
        return Err(PkiError::Exists(path.to_owned()));
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut file = options.open(path).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // `mode` applies only when the file is created; tighten an existing one too.
        file.set_permissions(fs::Permissions::from_mode(if secret {
            0o600
        } else {
            0o644
        }))
        .map_err(io)?;
    }
    file.write_all(contents.as_bytes()).map_err(io)
}

/// The files of a dev PKI directory.
pub struct DevPkiLayout {
    pub dir: PathBuf,
}

impl DevPkiLayout {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    pub fn cert(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pem"))
    }
    pub fn key(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
    }
    pub fn api_key(&self, client: &str) -> PathBuf {
        self.dir.join(format!("{client}.api-key"))
    }
    pub fn api_key_sha256(&self, client: &str) -> PathBuf {
        self.dir.join(format!("{client}.api-key.sha256"))
    }
}

/// The leaves of the dev PKI: (file name, spec).
pub fn dev_leaves(lifetime: Duration) -> Vec<(&'static str, LeafSpec)> {
    vec![
        ("dispatch-api", LeafSpec::server(lifetime)),
        ("route-worker", LeafSpec::workload("route-worker", lifetime)),
        (
            "operator",
            LeafSpec::new("operator", Usage::Client, lifetime),
        ),
    ]
}

pub struct InitOptions {
    pub lifetime: Duration,
    pub ca_lifetime: Duration,
    pub overwrite: bool,
}

/// Writes (or, with `reissue_only`, refreshes the leaves of) a dev PKI into `dir`. Returns the
/// files written.
pub fn write_dev_pki(
    dir: &Path,
    options: &InitOptions,
    reissue_only: bool,
) -> Result<Vec<PathBuf>, PkiError> {
    fs::create_dir_all(dir).map_err(|source| PkiError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let layout = DevPkiLayout::new(dir);
    let mut written = Vec::new();
    let ca = if reissue_only {
        let read = |path: PathBuf| {
            fs::read_to_string(&path).map_err(|source| PkiError::Io { path, source })
        };
        CertificateAuthority::from_pem(&read(layout.ca_cert())?, &read(layout.ca_key())?)?
    } else {
        let ca = CertificateAuthority::dev(options.ca_lifetime)?;
        write_file(&layout.ca_cert(), &ca.cert_pem, false, options.overwrite)?;
        write_file(&layout.ca_key(), &ca.key_pem, true, options.overwrite)?;
        written.extend([layout.ca_cert(), layout.ca_key()]);
        ca
    };
    let overwrite = options.overwrite || reissue_only;
    for (name, spec) in dev_leaves(options.lifetime) {
        let issued = ca.issue(&spec)?;
        write_file(&layout.cert(name), &issued.cert_pem, false, overwrite)?;
        write_file(&layout.key(name), &issued.key_pem, true, overwrite)?;
        written.extend([layout.cert(name), layout.key(name)]);
    }
    if !reissue_only {
        let key = generate_api_key()?;
        write_file(
            &layout.api_key("route-worker"),
            &key,
            true,
            options.overwrite,
        )?;
        write_file(
            &layout.api_key_sha256("route-worker"),
            &api_key_sha256(&key),
            false,
            options.overwrite,
        )?;
        written.extend([
            layout.api_key("route-worker"),
            layout.api_key_sha256("route-worker"),
        ]);
    }
    Ok(written)
}

/// Reissues the leaf certificates from the CA named `ca` (`ca` or `ca-next`) of `dir`.
pub fn reissue_leaves(
    dir: &Path,
    ca: &str,
    options: &InitOptions,
) -> Result<Vec<PathBuf>, PkiError> {
    let read =
        |path: PathBuf| fs::read_to_string(&path).map_err(|source| PkiError::Io { path, source });
    let authority = CertificateAuthority::from_pem(
        &read(dir.join(format!("{ca}.pem")))?,
        &read(dir.join(format!("{ca}.key")))?,
    )?;
    let layout = DevPkiLayout::new(dir);
    let mut written = Vec::new();
    for (name, spec) in dev_leaves(options.lifetime) {
        let issued = authority.issue(&spec)?;
        write_file(&layout.cert(name), &issued.cert_pem, false, true)?;
        write_file(&layout.key(name), &issued.key_pem, true, true)?;
        written.extend([layout.cert(name), layout.key(name)]);
    }
    Ok(written)
}

/// Writes a CRL from the dev CA of `dir` revoking the certificates in `revoke` plus `random`
/// random serials.
pub fn write_crl(
    dir: &Path,
    revoke: &[PathBuf],
    random: usize,
    lifetime: Duration,
    out: &Path,
) -> Result<(), PkiError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let read = |path: &Path| {
        fs::read(path).map_err(|source| PkiError::Io {
            path: path.to_owned(),
            source,
        })
    };
    let ca = CertificateAuthority::from_pem(
        &String::from_utf8_lossy(&read(&dir.join("ca.pem"))?),
        &String::from_utf8_lossy(&read(&dir.join("ca.key"))?),
    )?;
    let mut serials = Vec::with_capacity(revoke.len() + random);
    for path in revoke {
        let pem = read(path)?;
        let (_, block) = x509_parser::pem::parse_x509_pem(&pem).map_err(|e| PkiError::Io {
            path: path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let (_, cert) = X509Certificate::from_der(&block.contents).map_err(|e| PkiError::Io {
            path: path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        serials.push(cert.raw_serial().to_vec());
    }
    for _ in 0..random {
        serials.push(random_serial()?.to_bytes());
    }
    write_file(out, &ca.revocation_list(&serials, lifetime)?, false, true)
}

/// Writes the next dev CA (same name, new key) as `ca-next.pem`/`ca-next.key`.
pub fn write_next_ca(dir: &Path, lifetime: Duration) -> Result<Vec<PathBuf>, PkiError> {
    let ca = CertificateAuthority::dev(lifetime)?;
    let (cert, key) = (dir.join("ca-next.pem"), dir.join("ca-next.key"));
    write_file(&cert, &ca.cert_pem, false, false)?;
    write_file(&key, &ca.key_pem, true, false)?;
    Ok(vec![cert, key])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_keys_are_written_owner_only() {
        let dir = tempfile_dir();
        let options = InitOptions {
            lifetime: Duration::days(1),
            ca_lifetime: Duration::days(2),
            overwrite: false,
        };
        write_dev_pki(&dir, &options, false).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for name in [
                "ca.key",
                "dispatch-api.key",
                "route-worker.key",
                "operator.key",
                "route-worker.api-key",
            ] {
                let mode = fs::metadata(dir.join(name)).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{name}");
            }
        }
        // A second init refuses to overwrite; a reissue keeps the CA and replaces the leaves.
        assert!(matches!(
            write_dev_pki(&dir, &options, false),
            Err(PkiError::Exists(_))
        ));
        let ca_before = fs::read_to_string(dir.join("ca.pem")).unwrap();
        let leaf_before = fs::read_to_string(dir.join("route-worker.pem")).unwrap();
        write_dev_pki(&dir, &options, true).unwrap();
        assert_eq!(ca_before, fs::read_to_string(dir.join("ca.pem")).unwrap());
        assert_ne!(
            leaf_before,
            fs::read_to_string(dir.join("route-worker.pem")).unwrap()
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_api_key_file_matches_its_hash_file() {
        let key = generate_api_key().unwrap();
        assert!(key.starts_with("dk_") && key.len() == 67);
        assert_eq!(api_key_sha256(&key).len(), 64);
        assert_ne!(
            api_key_sha256(&key),
            api_key_sha256(&generate_api_key().unwrap())
        );
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("devpki-test-{}", generate_api_key().unwrap()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}
