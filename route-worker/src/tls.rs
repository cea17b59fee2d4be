//! The worker's rustls client: trusts ONLY the configured internal CA, keeps hostname
//! verification, presents its certificate when configured. There is no way to turn verification
//! off, not even for tests (tests trust their generated CA).
//!
//! The client certificate is reloaded when its files change (short-lived certificates renewed
//! by cert-manager, step-ca or SPIRE): new connections present the new one. A broken or expired
//! replacement keeps the old certificate and is logged.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::NamedGroup;
use rustls::client::{
    ClientSessionMemoryCache, ClientSessionStore, ResolvesClientCert, Resumption,
    Tls12ClientSessionValue, Tls13ClientSessionValue,
};
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, SignatureScheme};
use rustls_pki_types::ServerName;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use secrecy::{ExposeSecret, SecretString};

use crate::configuration::ClientTlsSettings;
use crate::error::WorkerError;

fn certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, WorkerError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            WorkerError::Config(format!("cannot read {what} `{}`: {e}", path.display()))
        })?;
    if certs.is_empty() {
        return Err(WorkerError::Config(format!(
            "{what} `{}` holds no certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// Where this worker's identity comes from.
#[derive(Clone)]
enum IdentityFiles {
    Pem { cert: PathBuf, key: PathBuf },
    Pkcs12 { file: PathBuf, password: PathBuf },
}

impl IdentityFiles {
    fn from_settings(settings: &ClientTlsSettings) -> Result<Option<Self>, WorkerError> {
        match (&settings.cert_file, &settings.key_file, &settings.pkcs12_file, &settings.pkcs12_password_file) {
            (None, None, None, None) => Ok(None),
            (Some(cert), Some(key), None, None) => Ok(Some(Self::Pem { cert: cert.clone(), key: key.clone() })),
            (None, None, Some(file), Some(password)) => Ok(Some(Self::Pkcs12 { file: file.clone(), password: password.clone() })),
            _ => Err(WorkerError::Config(
                "set tls.cert_file and tls.key_file, or tls.pkcs12_file and tls.pkcs12_password_file, or none".into(),
            )),
        }
    }

    fn paths(&self) -> [&Path; 2] {
        match self {
            Self::Pem { cert, key } => [cert, key],
            Self::Pkcs12 { file, password } => [file, password],
        }
    }

    fn describe(&self) -> String {
        self.paths()
            .iter()
            .map(|p| format!("`{}`", p.display()))
            .collect::<Vec<_>>()
            .join(" and ")
    }

    fn digest(&self) -> Vec<u8> {
        let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
        for path in self.paths() {
            digest.update(&std::fs::read(path).unwrap_or_default());
        }
        digest.finish().as_ref().to_vec()
    }

    fn load(&self, provider: &CryptoProvider) -> Result<(CertifiedKey, i64), WorkerError> {
        let (chain, key) = match self {
            Self::Pem { cert, key } => {
                let chain = certificates(cert, "the client certificate")?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                    WorkerError::Config(format!(
                        "cannot read the client key `{}`: {e}",
                        key.display()
                    ))
                })?;
                (chain, key)
            }
            Self::Pkcs12 { file, password } => {
                let secret = std::fs::read_to_string(password)
                    .map(|p| SecretString::from(p.trim_end_matches(['\n', '\r']).to_owned()))
                    .map_err(|e| {
                        WorkerError::Config(format!(
                            "cannot read the PKCS#12 password file `{}`: {e}",
                            password.display()
                        ))
                    })?;
                let bytes = std::fs::read(file).map_err(|e| {
                    WorkerError::Config(format!(
                        "cannot read the PKCS#12 file `{}`: {e}",
                        file.display()
                    ))
                })?;
                let store = p12_keystore::KeyStore::from_pkcs12(
                    &bytes,
                    secret.expose_secret(),
                    p12_keystore::Pkcs12ImportPolicy::Strict,
                )
                .map_err(|e| {
                    WorkerError::Config(format!(
                        "cannot open `{}` with the password from `{}`: {e}",
                        file.display(),
                        password.display()
                    ))
                })?;
                let (_, entry) = store.private_key_chain().ok_or_else(|| {
                    WorkerError::Config(format!(
                        "`{}` holds no key with a certificate",
                        file.display()
                    ))
                })?;
                let chain: Vec<CertificateDer<'static>> = entry
                    .certs()
                    .iter()
                    .map(|c| CertificateDer::from(c.as_der().to_vec()))
                    .collect();
                let key = PrivateKeyDer::try_from(entry.key().as_der().to_vec())
                    .map_err(|e| WorkerError::Config(format!("`{}`: {e}", file.display())))?;
                (chain, key)
            }
        };
        let not_after = not_after(&chain[0]).ok_or_else(|| {
            WorkerError::Config(format!(
                "{}: the certificate cannot be parsed",
                self.describe()
            ))
        })?;
        let certified = CertifiedKey::from_der(chain, key, provider).map_err(|e| {
            WorkerError::Config(format!(
                "{}: the key does not fit the certificate: {e}",
                self.describe()
            ))
        })?;
        Ok((certified, not_after))
    }
}

fn not_after(leaf: &CertificateDer<'_>) -> Option<i64> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    X509Certificate::from_der(leaf)
        .ok()
        .map(|(_, cert)| cert.validity().not_after.timestamp())
}

/// The TLS session cache, emptied when our certificate changes: a resumed session carries the
/// identity it was made with, so without this the server would keep seeing the old certificate.
#[derive(Debug)]
struct SessionsOfThisIdentity(ArcSwap<ClientSessionMemoryCache>);

const SESSION_CACHE_SIZE: usize = 64;

impl SessionsOfThisIdentity {
    fn new() -> Self {
        Self(ArcSwap::from_pointee(ClientSessionMemoryCache::new(
            SESSION_CACHE_SIZE,
        )))
    }

    fn forget(&self) {
        self.0
            .store(Arc::new(ClientSessionMemoryCache::new(SESSION_CACHE_SIZE)));
    }
}

impl ClientSessionStore for SessionsOfThisIdentity {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.0.load().set_kx_hint(server_name, group)
    }
    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.0.load().kx_hint(server_name)
    }
    fn set_tls12_session(&self, server_name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.0.load().set_tls12_session(server_name, value)
    }
    fn tls12_session(&self, server_name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.0.load().tls12_session(server_name)
    }
    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.0.load().remove_tls12_session(server_name)
    }
    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        self.0.load().insert_tls13_ticket(server_name, value)
    }
    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<Tls13ClientSessionValue> {
        self.0.load().take_tls13_ticket(server_name)
    }
}

/// This worker's certificate, swappable while connections are made.
pub struct ClientIdentity {
    sessions: Arc<SessionsOfThisIdentity>,
    files: IdentityFiles,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
    not_after: std::sync::atomic::AtomicI64,
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
            sessions: Arc::new(SessionsOfThisIdentity::new()),
            files,
            provider,
            current: ArcSwap::from_pointee(key),
            not_after: not_after.into(),
            seen: Mutex::new(seen),
            warning_window_secs: warning_days as i64 * 86_400,
        });
        identity.warn_if_expiring();
        Ok(identity)
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
                self.sessions.forget();
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
    pub fn warn_if_expiring(&self) {
        let left = self.not_after.load(std::sync::atomic::Ordering::Relaxed)
            - time::OffsetDateTime::now_utc().unix_timestamp();
        if left <= 0 {
            tracing::warn!(
                files = self.files.describe(),
                "our client certificate has EXPIRED: the server will refuse it; renew it"
            );
        } else if left < self.warning_window_secs {
            tracing::warn!(
                files = self.files.describe(),
                seconds_left = left,
                "our client certificate expires soon; renew it"
            );
        }
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
            let mut config = builder.with_client_cert_resolver(identity.clone());
            config.resumption = Resumption::store(identity.sessions.clone());
            (config, Some(identity))
        }
        None => (builder.with_no_client_auth(), None),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((config, identity))
}
