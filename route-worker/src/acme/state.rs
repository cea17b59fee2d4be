//! What ACME keeps in `state_dir`: the account's credentials (`account.json`) and the
//! certificate with its key (`identity.pem`), each replaced atomically (written to a temporary
//! file, synced, renamed), readable by this user only.

use std::io::Write;
use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The certificate held: its validity and fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub not_before: i64,
    pub not_after: i64,
    pub fingerprint: [u8; 32],
}

impl Held {
    /// A number from 0 to 1 of this certificate's own (from its fingerprint): where in a window
    /// it renews, the same however often the window is asked for, another for each replica's.
    pub fn jitter(&self) -> f64 {
        let mut first = [0u8; 8];
        first.copy_from_slice(&self.fingerprint[..8]);
        u64::from_be_bytes(first) as f64 / u64::MAX as f64
    }
}

/// Names as compared: lower case, sorted.
pub fn sorted_names(names: &[String]) -> Vec<String> {
    let mut names: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
    names.sort();
    names
}

/// The DNS names (dNSName SANs) of the certificate in `path`, sorted.
pub fn held_names(path: &Path) -> Vec<String> {
    match CertificateDer::pem_file_iter(path)
        .ok()
        .and_then(|mut i| i.next())
    {
        Some(Ok(leaf)) => leaf_names(&leaf),
        _ => Vec::new(),
    }
}

fn leaf_names(leaf: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let Ok((_, cert)) = X509Certificate::from_der(leaf) else {
        return Vec::new();
    };
    let mut names: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::DNSName(dns) => Some(dns.to_ascii_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

impl Held {
    pub fn fingerprint_hex(&self) -> String {
        hex::encode(self.fingerprint)
    }
}

/// Creates `dir` (0700 on Unix) if it is not there.
pub fn prepare(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Replaces `path` with `bytes` at once: a reader sees the old file or the new one, never half.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    // A new file of a name of its own: never one already there (a link planted beside, or a
    // file with other permissions), never another writer's.
    let temporary = path.with_extension(format!("partial-{:016x}", fastrand::u64(..)));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&temporary)?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written?;
    if let Some(dir) = path.parent() {
        // The rename itself, durable.
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The certificate in `path` as ACME Renewal Information names it (RFC 9773 §4.1: its
/// authority key identifier and its serial), if it has an authority key identifier.
pub fn held_identifier(path: &Path) -> Option<instant_acme::CertificateIdentifier<'static>> {
    use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};
    let leaf = CertificateDer::pem_file_iter(path).ok()?.next()?.ok()?;
    let (_, cert) = X509Certificate::from_der(&leaf).ok()?;
    let authority_key =
        cert.iter_extensions()
            .find_map(|extension| match extension.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(aki) => aki.key_identifier.as_ref(),
                _ => None,
            })?;
    let identifier = instant_acme::CertificateIdentifier::new(
        rustls_pki_types::Der::from_slice(authority_key.0),
        rustls_pki_types::Der::from_slice(cert.tbs_certificate.raw_serial()),
    );
    Some(identifier.into_owned())
}

/// The certificate in `path` (the first of its chain), if there is one that parses.
pub fn held(path: &Path) -> Option<Held> {
    let leaf = CertificateDer::pem_file_iter(path).ok()?.next()?.ok()?;
    describe(&leaf)
}

fn describe(leaf: &CertificateDer<'_>) -> Option<Held> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(leaf).ok()?;
    let digest = ring::digest::digest(&ring::digest::SHA256, leaf);
    Some(Held {
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        fingerprint: digest.as_ref().try_into().ok()?,
    })
}

/// Stores a newly issued chain with its key as one file, after checking that the key is the
/// certificate's, that it names exactly `dns_names` and that it is valid now: a renewal replaces
/// both at once, and nothing broken (or not what was ordered) replaces a good pair.
pub fn store_identity(
    path: &Path,
    key_pem: &str,
    chain_pem: &str,
    dns_names: &[String],
) -> Result<Held, String> {
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the issued chain cannot be read: {e}"))?;
    let leaf = chain.first().ok_or("the CA issued an empty chain")?;
    let held = describe(leaf).ok_or("the issued certificate cannot be parsed")?;
    if leaf_names(leaf) != sorted_names(dns_names) {
        return Err(format!(
            "the CA issued a certificate for {:?}, not for {dns_names:?}",
            leaf_names(leaf)
        ));
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if now >= held.not_after || now < held.not_before - 300 {
        return Err("the CA issued a certificate that is not valid now".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| format!("the certificate's key cannot be read: {e}"))?;
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(chain, key, &provider)
        .map_err(|e| format!("the issued certificate is not for this key: {e}"))?;
    write_private(path, format!("{key_pem}{chain_pem}").as_bytes())
        .map_err(|e| format!("cannot store `{}`: {e}", path.display()))?;
    Ok(held)
}

#[cfg(test)]
mod tests {
    use devpki::{CertificateAuthority, LeafSpec, Usage};

    use super::*;

    fn ca() -> CertificateAuthority {
        CertificateAuthority::new("ACME Test CA", "Test", time::Duration::days(1)).unwrap()
    }

    /// What the tests order: one name.
    fn names() -> Vec<String> {
        vec!["worker.internal".into()]
    }

    /// A certificate for `worker.internal` whose CN is `name` (the key tells them apart).
    fn issued(ca: &CertificateAuthority, name: &str) -> (String, String) {
        let mut spec = LeafSpec::new(name, Usage::Client, time::Duration::hours(1));
        spec.dns_names = names();
        let leaf = ca.issue(&spec).unwrap();
        (leaf.key_pem, leaf.cert_pem)
    }

    #[test]
    fn an_issued_pair_is_stored_as_one_private_file_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.pem");
        let ca = ca();
        let (key, chain) = issued(&ca, "worker.internal");
        let held = store_identity(&path, &key, &chain, &names()).unwrap();
        assert_eq!(super::held(&path), Some(held));
        assert!(held.not_after > held.not_before);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!path.with_extension("partial").exists());
    }

    #[test]
    fn the_stored_certificates_dns_names_are_read_sorted_and_in_lower_case() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.pem");
        assert!(held_names(&path).is_empty(), "no file, no names");
        let mut spec = LeafSpec::new("worker", Usage::Client, time::Duration::hours(1));
        spec.dns_names = vec!["b.internal".into(), "A.internal".into()];
        let leaf = ca().issue(&spec).unwrap();
        store_identity(
            &path,
            &leaf.key_pem,
            &leaf.cert_pem,
            &["B.internal".into(), "a.internal".into()],
        )
        .unwrap();
        assert_eq!(held_names(&path), ["a.internal", "b.internal"]);
    }

    #[test]
    fn a_certificate_that_is_not_for_the_key_never_replaces_the_stored_pair() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.pem");
        let ca = ca();
        let (key, chain) = issued(&ca, "worker.internal");
        let stored = store_identity(&path, &key, &chain, &names()).unwrap();
        let (other_key, _) = issued(&ca, "other.internal");
        let error = store_identity(&path, &other_key, &chain, &names()).unwrap_err();
        assert!(error.contains("not for this key"), "{error}");
        assert!(store_identity(&path, &key, "", &names()).is_err());
        // Not what was ordered: other names.
        let error = store_identity(&path, &key, &chain, &["x.internal".into()]).unwrap_err();
        assert!(error.contains("not for [\"x.internal\"]"), "{error}");
        assert_eq!(super::held(&path), Some(stored));
    }
}
