//! The dev PKI's layout on disk and what the `devpki` commands write into it.

use std::fs;
use std::path::{Path, PathBuf};

use time::Duration;

use crate::authority::random_serial;
use crate::{
    CertificateAuthority, LeafSpec, PkiError, Usage, api_key_sha256, generate_api_key, write_file,
};

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
    // A name of its own: two CAs of one name in a bundle leave every binding that names it
    // ambiguous (dispatch-api refuses them unless the key is pinned).
    let now = time::OffsetDateTime::now_utc();
    let name = format!(
        "Dispatch Dev Internal CA {:04}-{:02}-{:02}T{:02}{:02}{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    let ca = CertificateAuthority::new(&name, "Dispatch Dev", lifetime)?;
    let (cert, key) = (dir.join("ca-next.pem"), dir.join("ca-next.key"));
    write_file(&cert, &ca.cert_pem, false, false)?;
    write_file(&key, &ca.key_pem, true, false)?;
    Ok(vec![cert, key])
}
