//! A development PKI made with rcgen: an internal CA, leaf certificates for the server, the
//! route-worker and the operator, and an API key. For local runs, tests and the compose demo.
//! Production uses the team's CA (step-ca, SPIRE, cert-manager), never this.
#![forbid(unsafe_code)]

mod authority;
mod dev;
mod files;
pub mod openssl;

pub use authority::{CertificateAuthority, Issued, LeafSpec, PkiError, Usage};
pub use dev::{
    DevPkiLayout, InitOptions, dev_leaves, reissue_leaves, write_crl, write_dev_pki, write_next_ca,
};
pub use files::{api_key_sha256, generate_api_key, sha256_hex, spki_sha256, write_file};

/// The trust domain of the dev SPIFFE IDs.
pub const TRUST_DOMAIN: &str = "dispatch.internal";
/// The dev CA's subject, as bindings in `config/clients.toml` name it.
pub const DEV_CA_SUBJECT: &str = "CN=Dispatch Dev Internal CA, O=Dispatch Dev";

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::PathBuf;

    use time::Duration;

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
