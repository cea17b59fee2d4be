//! API keys and files written with the right permissions (private keys owner-only).

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::PkiError;

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

/// SHA-256 of a certificate's SubjectPublicKeyInfo, hex: what a binding's
/// `issuer_spki_sha256` pins (`openssl x509 -noout -pubkey | openssl pkey -pubin -outform der
/// | sha256sum` prints the same).
pub fn spki_sha256(cert_der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    Some(sha256_hex(cert.public_key().raw))
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
