//! The worker's rustls client: trusts ONLY the configured internal CA, keeps hostname
//! verification, presents its certificate when configured. There is no way to turn verification
//! off, not even for tests (tests trust their generated CA).
//!
//! The client certificate is reloaded when its files change (short-lived certificates renewed
//! by cert-manager, step-ca or SPIRE): new connections present the new one. A broken or expired
//! replacement keeps the old certificate and is logged.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::client::{ClientSessionMemoryCache, ResolvesClientCert, Resumption};
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, SignatureScheme};

use crate::configuration::ClientTlsSettings;
use crate::error::WorkerError;

mod files;

#[cfg(test)]
use files::not_after;
use files::{IdentityFiles, certificates};

const SESSION_CACHE_SIZE: usize = 64;

/// The client configuration for the connections of the certificate in use now: `base` with a
/// TLS session cache of its own. A resumed session carries the identity it was made with, and a
/// connection of the previous certificate can still be handed tickets after a renewal (they
/// arrive after its handshake, on the connection, whenever the server sends them): kept in that
/// connection's own cache, none of them is ever offered by a connection of the renewed one.
pub fn for_this_certificate(base: &ClientConfig) -> ClientConfig {
    let mut config = base.clone();
    config.resumption =
        Resumption::store(Arc::new(ClientSessionMemoryCache::new(SESSION_CACHE_SIZE)));
    config
}

/// Where our certificate stands against the expiry warning window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Expired,
    Soon { seconds_left: i64 },
    Fine,
}

fn expiry(not_after: i64, now: i64, warning_window_secs: i64) -> Expiry {
    let seconds_left = not_after - now;
    if seconds_left <= 0 {
        Expiry::Expired
    } else if seconds_left < warning_window_secs {
        Expiry::Soon { seconds_left }
    } else {
        Expiry::Fine
    }
}

/// This worker's certificate, swappable while connections are made.
pub struct ClientIdentity {
    files: IdentityFiles,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
    not_after: std::sync::atomic::AtomicI64,
    /// How many times it was replaced: the HTTP client drops its connections and its TLS
    /// sessions when it changes (see [`for_this_certificate`]).
    generation: std::sync::atomic::AtomicU64,
    seen: Mutex<Vec<u8>>,
    warning_window_secs: i64,
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientIdentity({})", self.files.describe())
    }
}

impl ClientIdentity {
    fn load(
        files: IdentityFiles,
        provider: Arc<CryptoProvider>,
        warning_days: u64,
    ) -> Result<Arc<Self>, WorkerError> {
        let seen = files.digest();
        let (key, not_after) = files.load(&provider)?;
        let identity = Arc::new(Self {
            files,
            provider,
            current: ArcSwap::from_pointee(key),
            not_after: not_after.into(),
            generation: 0.into(),
            seen: Mutex::new(seen),
            warning_window_secs: warning_days as i64 * 86_400,
        });
        identity.warn_if_expiring();
        Ok(identity)
    }

    /// The certificate presented on new connections: its SHA-256 fingerprint (hex) and notAfter
    /// (RFC 3339).
    pub fn presenting(&self) -> Option<(String, String)> {
        let current = self.current.load();
        let leaf = current.cert.first()?;
        let fingerprint = hex::encode(ring::digest::digest(&ring::digest::SHA256, leaf));
        let not_after = time::OffsetDateTime::from_unix_timestamp(
            self.not_after.load(std::sync::atomic::Ordering::Relaxed),
        )
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()?;
        Some((fingerprint, not_after))
    }

    /// How many times the certificate was replaced since start.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Loads the files again if they changed. A broken or expired replacement is logged and the
    /// current certificate stays.
    pub fn reload_if_changed(&self) {
        let digest = self.files.digest();
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if *seen == digest {
                return;
            }
            *seen = digest;
        }
        match self.files.load(&self.provider) {
            Ok((_, not_after)) if not_after <= time::OffsetDateTime::now_utc().unix_timestamp() => {
                tracing::error!(
                    files = self.files.describe(),
                    "the renewed client certificate has already expired; keeping the current one"
                );
            }
            Ok((key, not_after)) => {
                self.current.store(Arc::new(key));
                self.generation
                    .fetch_add(1, std::sync::atomic::Ordering::Release);
                self.not_after
                    .store(not_after, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(
                    files = self.files.describe(),
                    "client certificate reloaded; new connections present it"
                );
                self.warn_if_expiring();
            }
            Err(error) => {
                tracing::error!(error = %error, "the client certificate files changed but cannot be used; keeping the current certificate");
            }
        }
    }

    /// Warns when our certificate has expired or is inside the warning window: the server would
    /// refuse it, and this sentence is easier to act on than a handshake alert.
    pub fn warn_if_expiring(&self) -> Expiry {
        let state = expiry(
            self.not_after.load(std::sync::atomic::Ordering::Relaxed),
            time::OffsetDateTime::now_utc().unix_timestamp(),
            self.warning_window_secs,
        );
        match state {
            Expiry::Expired => tracing::warn!(
                files = self.files.describe(),
                "our client certificate has EXPIRED: the server will refuse it; renew it"
            ),
            Expiry::Soon { seconds_left } => tracing::warn!(
                files = self.files.describe(),
                seconds_left,
                "our client certificate expires soon; renew it"
            ),
            Expiry::Fine => {}
        }
        state
    }

    /// Checks for renewed files every `interval` (and warns about expiry once a day), forever.
    pub async fn watch(self: Arc<Self>, interval: Duration) {
        let mut since_warning = Duration::ZERO;
        loop {
            actix_rt::time::sleep(interval).await;
            self.reload_if_changed();
            since_warning += interval;
            if since_warning >= Duration::from_secs(86_400) {
                self.warn_if_expiring();
                since_warning = Duration::ZERO;
            }
        }
    }
}

impl ResolvesClientCert for ClientIdentity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The client configuration, and this worker's identity when it has one (to watch for renewal).
pub fn client_config(
    settings: &ClientTlsSettings,
) -> Result<(ClientConfig, Option<Arc<ClientIdentity>>), WorkerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in certificates(&settings.ca_file, "the CA bundle")? {
        roots.add(ca).map_err(|e| {
            WorkerError::Config(format!(
                "the CA bundle `{}`: {e}",
                settings.ca_file.display()
            ))
        })?;
    }
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| WorkerError::Config(format!("TLS setup: {e}")))?
        .with_root_certificates(roots);
    let (mut config, identity) = match IdentityFiles::from_settings(settings)? {
        Some(files) => {
            let identity = ClientIdentity::load(files, provider, settings.expiry_warning_days)?;
            (
                builder.with_client_cert_resolver(identity.clone()),
                Some(identity),
            )
        }
        None => (builder.with_no_client_auth(), None),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // No session cache of its own: connections are made from `for_this_certificate`'s, one per
    // certificate. A client made from this one by mistake costs full handshakes, never a
    // session of an earlier certificate resumed.
    config.resumption = Resumption::disabled();
    Ok((config, identity))
}

#[cfg(test)]
mod tests {
    use devpki::{CertificateAuthority, LeafSpec};

    use super::*;
    use std::path::{Path, PathBuf};

    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

    fn ca() -> CertificateAuthority {
        CertificateAuthority::new("Worker Test CA", "Test", time::Duration::days(1)).unwrap()
    }

    /// Writes a fresh route-worker certificate of `ca` (valid for `lifetime`) over the pair.
    fn write_pair(
        ca: &CertificateAuthority,
        dir: &Path,
        lifetime: time::Duration,
    ) -> (PathBuf, PathBuf, Vec<u8>) {
        let mut spec = LeafSpec::workload("route-worker", time::Duration::hours(1));
        spec.not_after = time::OffsetDateTime::now_utc() + lifetime;
        let issued = ca.issue(&spec).unwrap();
        let (cert, key) = (dir.join("worker.pem"), dir.join("worker.key"));
        std::fs::write(&cert, &issued.cert_pem).unwrap();
        std::fs::write(&key, &issued.key_pem).unwrap();
        (cert, key, issued.der)
    }

    fn presented(identity: &ClientIdentity) -> Vec<u8> {
        identity.resolve(&[], &[]).unwrap().cert[0].to_vec()
    }

    #[test]
    fn the_identity_files_are_a_pem_pair_a_pkcs12_pair_or_none() {
        let path = |p: &str| Some(PathBuf::from(p));
        let settings = |cert, key, p12, password| ClientTlsSettings {
            cert_file: cert,
            key_file: key,
            pkcs12_file: p12,
            pkcs12_password_file: password,
            ..ClientTlsSettings::default()
        };
        assert!(matches!(
            IdentityFiles::from_settings(&settings(None, None, None, None)),
            Ok(None)
        ));
        let pem = IdentityFiles::from_settings(&settings(path("c"), path("k"), None, None));
        assert!(matches!(pem, Ok(Some(IdentityFiles::Pem { .. }))));
        assert_eq!(pem.unwrap().unwrap().describe(), "`c` and `k`");
        let p12 = IdentityFiles::from_settings(&settings(None, None, path("f"), path("p")));
        assert!(matches!(p12, Ok(Some(IdentityFiles::Pkcs12 { .. }))));
        assert_eq!(p12.unwrap().unwrap().describe(), "`f` and `p`");
        for half in [
            settings(path("c"), None, None, None),
            settings(None, path("k"), None, None),
            settings(path("c"), path("k"), path("f"), path("p")),
            settings(None, None, path("f"), None),
        ] {
            assert!(matches!(
                IdentityFiles::from_settings(&half),
                Err(WorkerError::Config(_))
            ));
        }
    }

    #[test]
    fn certificate_files_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, _) = write_pair(&ca(), dir.path(), time::Duration::hours(1));
        assert_eq!(certificates(&cert, "x").unwrap().len(), 1);
        let Err(WorkerError::Config(none)) = certificates(&key, "the client certificate") else {
            panic!("a key file holds no certificate")
        };
        assert!(none.contains("holds no certificate"), "{none}");
        let Err(WorkerError::Config(missing)) = certificates(&dir.path().join("no"), "x") else {
            panic!("a missing file is an error")
        };
        assert!(missing.contains("cannot read"), "{missing}");
    }

    #[test]
    fn not_after_is_read_from_the_leaf() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, _, der) = write_pair(&ca(), dir.path(), time::Duration::hours(3));
        let expected = x509_parser::parse_x509_certificate(&der)
            .unwrap()
            .1
            .validity()
            .not_after
            .timestamp();
        assert_eq!(not_after(&CertificateDer::from(der)), Some(expected));
        assert_eq!(not_after(&CertificateDer::from(vec![1, 2, 3])), None);
        assert!(std::fs::metadata(cert).is_ok());
    }

    #[test]
    fn a_renewed_certificate_is_presented_and_counted_as_a_new_generation_but_a_broken_or_expired_one_is_not()
     {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca();
        let (cert, key, first) = write_pair(&ca, dir.path(), time::Duration::hours(1));
        let files = IdentityFiles::Pem {
            cert: cert.clone(),
            key,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let identity = ClientIdentity::load(files.clone(), provider, 14).unwrap();
        assert!(identity.has_certs());
        assert_eq!(presented(&identity), first);
        assert_eq!(identity.generation(), 0);
        assert!(format!("{identity:?}").contains("worker.pem"));

        // Unchanged files: nothing happens.
        identity.reload_if_changed();
        assert_eq!(identity.generation(), 0);

        // Renewed: presented from now on, in a generation of its own.
        let before = files.digest();
        let (_, _, second) = write_pair(&ca, dir.path(), time::Duration::hours(2));
        assert_ne!(files.digest(), before);
        identity.reload_if_changed();
        assert_eq!(presented(&identity), second);
        assert_eq!(identity.generation(), 1);

        // Broken: the current one stays.
        std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nbroken\n").unwrap();
        identity.reload_if_changed();
        assert_eq!(presented(&identity), second);
        assert_eq!(identity.generation(), 1);

        // Already expired: the current one stays.
        write_pair(&ca, dir.path(), time::Duration::seconds(-60));
        identity.reload_if_changed();
        assert_eq!(presented(&identity), second);
        assert_eq!(identity.generation(), 1);
    }

    #[test]
    fn expiry_is_judged_against_the_warning_window() {
        let day = 86_400;
        for (not_after, expected) in [
            (1_000 - 1, Expiry::Expired),
            (1_000, Expiry::Expired),
            (1_001, Expiry::Soon { seconds_left: 1 }),
            (
                1_000 + day - 1,
                Expiry::Soon {
                    seconds_left: day - 1,
                },
            ),
            (1_000 + day, Expiry::Fine),
        ] {
            assert_eq!(expiry(not_after, 1_000, day), expected, "{not_after}");
        }
    }

    #[test]
    fn the_loaded_identity_reports_where_it_stands() {
        let ca = ca();
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, der) = write_pair(&ca, dir.path(), time::Duration::hours(1));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let load = |days| {
            let files = IdentityFiles::Pem {
                cert: cert.clone(),
                key: key.clone(),
            };
            ClientIdentity::load(files, provider.clone(), days).unwrap()
        };
        assert_eq!(load(0).warn_if_expiring(), Expiry::Fine);
        assert!(matches!(
            load(1).warn_if_expiring(),
            Expiry::Soon { seconds_left } if seconds_left > 3_500 && seconds_left <= 3_600
        ));
        // What `whoami` shows as presented: this certificate, to the second.
        let (fingerprint, not_after) = load(0).presenting().unwrap();
        assert_eq!(fingerprint, devpki::sha256_hex(&der));
        let expected = super::not_after(&CertificateDer::from(der)).unwrap();
        let shown =
            time::OffsetDateTime::parse(&not_after, &time::format_description::well_known::Rfc3339)
                .unwrap();
        assert_eq!(shown.unix_timestamp(), expected);
    }

    /// One full TLS exchange in memory between `client` and `server`: how it ended.
    fn handshake(
        client: &Arc<ClientConfig>,
        server: &Arc<rustls::ServerConfig>,
    ) -> rustls::HandshakeKind {
        let name = ServerName::try_from("localhost").unwrap();
        let mut client = rustls::ClientConnection::new(client.clone(), name).unwrap();
        let mut server = rustls::ServerConnection::new(server.clone()).unwrap();
        loop {
            let mut to_server = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut to_server).unwrap();
            }
            let mut to_client = Vec::new();
            let mut input = &to_server[..];
            while !input.is_empty() {
                server.read_tls(&mut input).unwrap();
                server.process_new_packets().unwrap();
            }
            while server.wants_write() {
                server.write_tls(&mut to_client).unwrap();
            }
            let mut input = &to_client[..];
            while !input.is_empty() {
                client.read_tls(&mut input).unwrap();
                client.process_new_packets().unwrap();
            }
            if to_server.is_empty() && to_client.is_empty() {
                return client.handshake_kind().unwrap();
            }
        }
    }

    /// A connection of the previous certificate may be handed tickets after the renewal: in
    /// its own cache, never resumed by a connection of the renewed certificate (which would
    /// present the previous identity again).
    #[test]
    fn each_certificates_connections_resume_only_their_own_sessions_in_tls13_and_tls12() {
        use rustls::HandshakeKind::{Full, Resumed};
        let ca = ca();
        let issued = ca
            .issue(&LeafSpec::server(time::Duration::hours(1)))
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let server = rustls::ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&[version])
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(
                    vec![CertificateDer::from(issued.der.clone())],
                    PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap(),
                )
                .unwrap();
            // The worker's own configuration, as DispatchClient gets it.
            let dir = tempfile::tempdir().unwrap();
            let ca_file = dir.path().join("ca.pem");
            std::fs::write(&ca_file, &ca.cert_pem).unwrap();
            let settings = ClientTlsSettings {
                ca_file,
                ..Default::default()
            };
            let (base, _) = client_config(&settings).unwrap();
            let server = Arc::new(server);
            // Made from the base itself by mistake, a client would resume nothing.
            let unsessioned = Arc::new(base.clone());
            let kinds = [
                handshake(&unsessioned, &server),
                handshake(&unsessioned, &server),
            ];
            assert_eq!(kinds, [Full, Full], "{version:?}");
            let previous = Arc::new(for_this_certificate(&base));
            assert_eq!(handshake(&previous, &server), Full, "{version:?}");
            let renewed = Arc::new(for_this_certificate(&base));
            assert_eq!(
                handshake(&renewed, &server),
                Full,
                "{version:?}: the renewed certificate's first connection resumed a session of the previous one"
            );
            assert_eq!(handshake(&renewed, &server), Resumed, "{version:?}");
            assert_eq!(handshake(&previous, &server), Resumed, "{version:?}");
        }
    }
}
